/*
 * virtio-vsock with Firecracker's Unix-socket backend. Guest CID >= 3, host CID 2.
 * Host -> guest: a host program connects to uds_path and sends "CONNECT <port>\n"; once the
 * guest accepts, the VMM answers "OK <host_port>\n" and relays the stream. Guest -> host: the
 * VMM connects to "<uds_path>_<port>" for the guest's destination port, or answers RST when
 * nothing listens there. Credit-based flow control (buf_alloc / fwd_cnt, CREDIT_REQUEST /
 * CREDIT_UPDATE) both ways; RST for unknown connections. Queues: 0 rx, 1 tx, 2 event.
 *
 * Snapshots: connections are not saved; a restored device sends the guest
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (in its first event buffer) so that it drops them, as
 * Firecracker does.
 */
#ifndef DEVICES_VIRTIO_VSOCK_H
#define DEVICES_VIRTIO_VSOCK_H

#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "virtio.h"

#define VIRTIO_VSOCK_QUEUE_SIZE 256
#define VIRTIO_VSOCK_HOST_CID   2
#define VIRTIO_VSOCK_RXQ        0
#define VIRTIO_VSOCK_TXQ        1
#define VIRTIO_VSOCK_EVQ        2

#define VIRTIO_VSOCK_F_STREAM 0 /* feature bit */

/* Packet header (virtio 1.2, 5.10.6): le64 src_cid, le64 dst_cid, le32 src_port,
 * le32 dst_port, le32 len, le16 type, le16 op, le32 flags, le32 buf_alloc, le32 fwd_cnt. */
#define VIRTIO_VSOCK_HDR_LEN           44
#define VIRTIO_VSOCK_TYPE_STREAM       1
#define VIRTIO_VSOCK_OP_REQUEST        1
#define VIRTIO_VSOCK_OP_RESPONSE       2
#define VIRTIO_VSOCK_OP_RST            3
#define VIRTIO_VSOCK_OP_SHUTDOWN       4
#define VIRTIO_VSOCK_OP_RW             5
#define VIRTIO_VSOCK_OP_CREDIT_UPDATE  6
#define VIRTIO_VSOCK_OP_CREDIT_REQUEST 7
#define VIRTIO_VSOCK_SHUTDOWN_RCV      1
#define VIRTIO_VSOCK_SHUTDOWN_SEND     2
/* struct virtio_vsock_event { le32 id; } on the event queue. */
#define VIRTIO_VSOCK_EVENT_TRANSPORT_RESET 0

/* Limits. A connection buffers at most VIRTIO_VSOCK_BUF_ALLOC bytes from the guest that its
 * socket has not taken yet: the buf_alloc it advertises, allocated only while needed. Bytes
 * toward the guest are read from the socket straight into rx buffers, never buffered. So the
 * device holds at most MAX_CONNS * BUF_ALLOC (64 MiB) of guest data. */
#define VIRTIO_VSOCK_MAX_CONNS      1024
#define VIRTIO_VSOCK_BUF_ALLOC      (64u << 10)
#define VIRTIO_VSOCK_MAX_PKT        (64u << 10) /* payload of one packet, either way */
#define VIRTIO_VSOCK_TIMEOUT_MS     2000 /* the guest's answer to a REQUEST or final SHUTDOWN */
#define VIRTIO_VSOCK_HOST_PORT_BASE (1u << 30) /* ports of host-initiated connections */

struct virtio_vsock_config {
        const char *name; /* "vsock0" */
        uint64_t guest_cid;
        /* The VMM creates and listens on it. A stale socket there (nobody listening) is
         * replaced; a live one, or anything that is not a socket, is a configuration error. */
        const char *uds_path;
        struct event_loop *loop;
};

/* rx: toward the guest, tx: from it; byte counts are stream payload. conns_added counts
 * connections established, conns_removed those that ended (any way), conns_killed those the
 * device reset (errors, timeouts, protocol violations, a host peer that vanished). */
struct virtio_vsock_stats {
        uint64_t rx_packets_count, tx_packets_count;
        uint64_t rx_bytes_count, tx_bytes_count;
        uint64_t conns_added, conns_killed, conns_removed;
        uint64_t conns_refused; /* host clients closed: bad CONNECT line, too many connections */
        uint64_t rst_sent;
        uint64_t bad_packets;        /* malformed chains and headers, wrong CIDs, credit overruns */
        uint64_t rx_dropped_closing; /* guest data that crossed the host's final SHUTDOWN */
};

struct virtio_vsock;

/* Binds and listens on uds_path at once: the event loop must not run before the transport
 * is created (it initialises vd->lock, which the device's callbacks take). */
int virtio_vsock_create(const struct virtio_vsock_config *cfg, struct error *err,
                        struct virtio_vsock **out) MUST_CHECK;
/* Closes every connection and removes uds_path (if it is still the socket it created). */
void virtio_vsock_destroy(struct virtio_vsock *vs);
struct virtio_device *virtio_vsock_device(struct virtio_vsock *vs);
void virtio_vsock_get_stats(struct virtio_vsock *vs, struct virtio_vsock_stats *out);

#endif
