#include "vsock_pkt.h"

#include "common/util.h"

void vsock_pkt_parse(const uint8_t *b, struct vsock_pkt *p)
{
        p->src_cid = get_le64(b);
        p->dst_cid = get_le64(b + 8);
        p->src_port = get_le32(b + 16);
        p->dst_port = get_le32(b + 20);
        p->len = get_le32(b + 24);
        p->type = get_le16(b + 28);
        p->op = get_le16(b + 30);
        p->flags = get_le32(b + 32);
        p->buf_alloc = get_le32(b + 36);
        p->fwd_cnt = get_le32(b + 40);
}

void vsock_pkt_build(uint8_t *b, const struct vsock_pkt *p)
{
        put_le64(b, p->src_cid);
        put_le64(b + 8, p->dst_cid);
        put_le32(b + 16, p->src_port);
        put_le32(b + 20, p->dst_port);
        put_le32(b + 24, p->len);
        put_le16(b + 28, p->type);
        put_le16(b + 30, p->op);
        put_le32(b + 32, p->flags);
        put_le32(b + 36, p->buf_alloc);
        put_le32(b + 40, p->fwd_cnt);
}
