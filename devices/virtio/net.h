/*
 * virtio-net on a TAP interface (/dev/net/tun, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with the
 * 12-byte virtio_net_hdr_v1). Offloads follow the negotiated features: TUNSETOFFLOAD with
 * TUN_F_CSUM / TSO4 / TSO6 from GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6; HOST_* features let
 * the guest hand over unsegmented packets; MRG_RXBUF merges receive buffers. Guest MAC
 * (VIRTIO_NET_F_MAC) and MTU (VIRTIO_NET_F_MTU) when configured; rx and tx rate limiters.
 * Queues: 0 receive, 1 transmit.
 */
#ifndef DEVICES_VIRTIO_NET_H
#define DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "devices/rate_limiter.h"
#include "virtio.h"

#define VIRTIO_NET_QUEUE_SIZE 256

struct virtio_net_config {
        const char *name;     /* "net0" */
        const char *tap_name; /* existing TAP interface on the host */
        bool has_mac;
        uint8_t mac[6];
        uint16_t mtu; /* 0: not advertised */
        const struct rate_limiter_config *rx_limit;
        const struct rate_limiter_config *tx_limit;
        struct event_loop *loop;
};

struct virtio_net_stats {
        uint64_t rx_packets_count, rx_bytes_count, tx_packets_count, tx_bytes_count;
        uint64_t rx_dropped; /* frames the guest had no buffers for after a wait */
        uint64_t tx_malformed;
        uint64_t tap_read_fails, tap_write_fails;
        uint64_t rx_rate_limited, tx_rate_limited;
};

struct virtio_net;

/* Opens the TAP; a missing interface or no permission is an ERROR_CONFIG error. */
int virtio_net_create(const struct virtio_net_config *cfg, struct error *err,
                      struct virtio_net **out) MUST_CHECK;
void virtio_net_destroy(struct virtio_net *net);
struct virtio_device *virtio_net_device(struct virtio_net *net);
void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *out);

/* PATCH /network-interfaces/{id} after boot: replace the limiters (NULL: unlimited). */
void virtio_net_set_rate_limiters(struct virtio_net *net, const struct rate_limiter_config *rx,
                                  const struct rate_limiter_config *tx);

#endif
