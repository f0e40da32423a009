/*
 * virtio-vsock's packet codec: the 44-byte header (virtio 1.2, 5.10.6; the field layout is
 * in vsock.h) to and from host-order fields. Pure: no device, no guest memory.
 */
#ifndef DEVICES_VIRTIO_VSOCK_PKT_H
#define DEVICES_VIRTIO_VSOCK_PKT_H

#include <stdint.h>

struct vsock_pkt {
        uint64_t src_cid, dst_cid;
        uint32_t src_port, dst_port, len;
        uint16_t type, op;
        uint32_t flags, buf_alloc, fwd_cnt;
};

/* b holds VIRTIO_VSOCK_HDR_LEN bytes. Every value is accepted: the caller checks them. */
void vsock_pkt_parse(const uint8_t *b, struct vsock_pkt *p);
/* Writes VIRTIO_VSOCK_HDR_LEN bytes to b. */
void vsock_pkt_build(uint8_t *b, const struct vsock_pkt *p);

#endif
