#include "netdev.h"

#include "alloc.h"
#include "cmdline.h"
#include "probe.h"
#include "str.h"

static void post_rx(struct netdev *n, unsigned i)
{
        struct vbuf b = {n->bufs + (uint64_t)i * n->buf_size, n->buf_size, true};
        int head = virtq_add(&n->rx, &b, 1, false);

        if (head < 0)
                probe_fail("net rx ring full");
        n->buf_of[head] = (uint8_t)i;
}

static uint16_t rx_one(struct netdev *n, uint8_t **data, uint32_t *len)
{
        uint16_t head;

        if (!virtq_wait(&n->rx, &head, len, VIRTIO_WAIT_TSC))
                probe_fail("net: nothing received (status 0x%x)", virtio_status(n->d));
        *data = n->bufs + (uint64_t)n->buf_of[head] * n->buf_size;
        return n->buf_of[head];
}

uint32_t netdev_receive(struct netdev *n, unsigned *nbufs)
{
        uint8_t *data;
        uint32_t len, total;
        unsigned idx = rx_one(n, &data, &len), count;

        if (len < NET_HDR)
                probe_fail("net: rx buffer of %u bytes, no header", len);
        count = n->mrg ? load_le16(data + 10) : 1;
        if (count == 0 || count > RX_BUFS)
                probe_fail("net: num_buffers %u", count);
        total = len - NET_HDR;
        if (total > ETH_MAX)
                probe_fail("net: %u bytes in one buffer", total);
        memcpy(n->got, data + NET_HDR, total);
        post_rx(n, idx);
        for (unsigned i = 1; i < count; i++) {
                idx = rx_one(n, &data, &len);
                if (total + len > ETH_MAX)
                        probe_fail("net: merged frame longer than %u bytes", ETH_MAX);
                memcpy(n->got + total, data, len);
                total += len;
                post_rx(n, idx);
        }
        virtq_kick(&n->rx);
        *nbufs = count;
        return total;
}

void netdev_send(struct netdev *n, uint32_t len)
{
        struct vbuf tx[2] = {{n->hdr, NET_HDR, false}, {n->frame, len, false}};

        virtq_call(&n->tx, tx, 2, true);
}

struct netdev *netdev_open(struct vctx *c, const char *who)
{
        struct netdev *n = alloc_zeroed(sizeof(*n), 64);
        struct virtio_dev *d = vctx_need(c, VID_NET, 0, "virtio-net");
        struct virtq qs[2];
        uint64_t wanted =
            vctx_ring_features(c) | VBIT(NET_F_MAC) | VBIT(NET_F_MTU) | VBIT(NET_F_STATUS);
        size_t len;
        const char *mrg = cmdline_find(c->bi->cmdline, "probe.mrg", &len);

        if (!(mrg && len == 1 && mrg[0] == '0'))
                wanted |= VBIT(NET_F_MRG_RXBUF);
        n->d = d;
        vctx_mode(c, d, true);
        virtio_bring_up(d, wanted, qs, 2, NET_QSIZE);
        n->rx = qs[0];
        n->tx = qs[1];
        vctx_print_mode(who, d);
        n->mrg = d->features & VBIT(NET_F_MRG_RXBUF);
        if (d->features & VBIT(NET_F_MAC)) {
                for (unsigned i = 0; i < 6; i++)
                        n->mac[i] = virtio_cfg8(d, i);
        } else {
                static const uint8_t local[6] = {0x02, 0, 0, 0, 0, 1};
                memcpy(n->mac, local, 6);
        }
        n->buf_size = n->mrg ? MRG_BUF : FULL_BUF;
        n->bufs = alloc_mem((uint64_t)RX_BUFS * n->buf_size, 4096);
        n->hdr = alloc_zeroed(NET_HDR, 16);
        n->frame = alloc_mem(ETH_MAX, 64);
        n->got = alloc_mem(ETH_MAX, 64);
        for (unsigned i = 0; i < RX_BUFS; i++)
                post_rx(n, i);
        virtq_kick(&n->rx);
        return n;
}

void netdev_close(struct netdev *n)
{
        vctx_check_irqs(n->d);
        virtio_reset(n->d);
        virtio_irq_disable(n->d);
}
