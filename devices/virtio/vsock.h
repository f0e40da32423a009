/*
 * virtio-vsock with Firecracker's Unix-socket backend. Guest CID >= 3, host CID 2.
 * Host -> guest: a host program connects to uds_path and sends "CONNECT <port>\n"; once the
 * guest accepts, the VMM answers "OK <host_port>\n" and relays the stream. Guest -> host: the
 * VMM connects to "<uds_path>_<port>" for the guest's destination port, or answers RST when
 * nothing listens there. Credit-based flow control (buf_alloc / fwd_cnt, CREDIT_REQUEST /
 * CREDIT_UPDATE) both ways; RST for unknown connections. Queues: 0 rx, 1 tx, 2 event.
 */
#ifndef DEVICES_VIRTIO_VSOCK_H
#define DEVICES_VIRTIO_VSOCK_H

#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "virtio.h"

#define VIRTIO_VSOCK_QUEUE_SIZE 256
#define VIRTIO_VSOCK_HOST_CID   2

struct virtio_vsock_config {
        const char *name; /* "vsock0" */
        uint64_t guest_cid;
        const char *uds_path; /* the VMM creates and listens on it */
        struct event_loop *loop;
};

struct virtio_vsock_stats {
        uint64_t rx_packets_count, tx_packets_count;
        uint64_t rx_bytes_count, tx_bytes_count;
        uint64_t conns_added, conns_killed, conns_removed;
        uint64_t rst_sent;
        uint64_t bad_packets;
};

struct virtio_vsock;

int virtio_vsock_create(const struct virtio_vsock_config *cfg, struct error *err,
                        struct virtio_vsock **out) MUST_CHECK;
/* Closes every connection and removes uds_path. */
void virtio_vsock_destroy(struct virtio_vsock *vs);
struct virtio_device *virtio_vsock_device(struct virtio_vsock *vs);
void virtio_vsock_get_stats(struct virtio_vsock *vs, struct virtio_vsock_stats *out);

#endif
