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
#include "devices/mmds/mmds.h"
#include "devices/rate_limiter.h"
#include "virtio.h"

#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_RXQ        0
#define VIRTIO_NET_TXQ        1

/* Feature bits (virtio 1.2, 5.1.3). */
#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU        3
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN  9
#define VIRTIO_NET_F_GUEST_UFO  10
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_HOST_ECN   13
#define VIRTIO_NET_F_HOST_UFO   14
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16

/* Configuration space: mac[6], le16 status, le16 max_virtqueue_pairs, le16 mtu. */
#define VIRTIO_NET_CFG_MAC       0
#define VIRTIO_NET_CFG_STATUS    6
#define VIRTIO_NET_CFG_MAX_PAIRS 8
#define VIRTIO_NET_CFG_MTU       10
#define VIRTIO_NET_CONFIG_LEN    12
#define VIRTIO_NET_S_LINK_UP     1

/* struct virtio_net_hdr_v1: u8 flags, u8 gso_type, le16 hdr_len, le16 gso_size,
 * le16 csum_start, le16 csum_offset, le16 num_buffers. It precedes every frame. */
#define VIRTIO_NET_HDR_LEN          12
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE     0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_UDP      3
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN      0x80
/* The largest header + frame either way: a 64 KiB GSO frame with its headers. */
#define VIRTIO_NET_MAX_BUFFER 65562

struct virtio_net_config {
        const char *name;     /* "net0" */
        const char *tap_name; /* existing TAP interface on the host */
        bool has_mac;
        uint8_t mac[6];
        uint16_t mtu; /* 0: not advertised */
        const struct rate_limiter_config *rx_limit;
        const struct rate_limiter_config *tx_limit;
        struct event_loop *loop;
        /* The metadata service this interface answers for (NULL: none) at mmds_ipv4 (host
         * byte order): ARP and TCP to that address go to it (devices/mmds/mmds_stack.h). */
        struct mmds *mmds;
        uint32_t mmds_ipv4;
};

/* Byte counts are frame bytes, without the virtio-net header. */
struct virtio_net_stats {
        uint64_t rx_packets_count, rx_bytes_count, tx_packets_count, tx_bytes_count;
        /* Frames read from the TAP and not delivered: too large for the guest's buffers,
         * refused by guest memory, beyond the MTU, or pending at a reset. A frame waiting
         * for rx buffers is held (the TAP is not read meanwhile), not dropped. */
        uint64_t rx_dropped;
        uint64_t rx_malformed; /* rx chains returned unused (malformed, too short) */
        uint64_t tx_malformed; /* tx chains not sent: malformed, bad header, memory refused */
        uint64_t tx_dropped;   /* tx frames discarded because the TAP is gone */
        uint64_t tap_read_fails, tap_write_fails;
        uint64_t tap_gone; /* 1 once the TAP interface disappeared */
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
