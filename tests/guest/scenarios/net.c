/*
 * `net`: virtio-net through the VMM's TAP, against a host peer that echoes frames (the KVM
 * test runs one on the TAP inside a private network namespace). Interrupt mode by default.
 *
 * The guest sends NET_FRAMES Ethernet frames (broadcast destination, its MAC as source,
 * ethertype 0x88b5, payload "PROBE-NET" + frame number + a pattern) of growing sizes up to a
 * full 1514-byte frame, one at a time, and waits for each to come back with the same
 * ethertype and payload, addressed to its MAC. Frames of other ethertypes are dropped.
 * With VIRTIO_NET_F_MRG_RXBUF (negotiated unless probe.mrg=0) receive buffers are 512 bytes
 * and a full frame spreads over three of them (num_buffers); without it each buffer holds
 * a whole frame (1526 bytes with the 12-byte header).
 */
#include "alloc.h"
#include "cmdline.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define NET_F_MTU       3
#define NET_F_MAC       5
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS    16

#define NET_HDR   12
#define ETH_HDR   14
#define ETH_MAX   1514
#define ETHERTYPE 0x88b5
#define MRG_BUF   512
#define FULL_BUF  (NET_HDR + ETH_MAX)
#define RX_BUFS   12
#define QSIZE     16
#define OTHER_MAX 64 /* frames of other ethertypes tolerated */

static const uint16_t sizes[] = {60, 128, 600, 1000, 1514};
#define NET_FRAMES (sizeof(sizes) / sizeof(sizes[0]))

struct netdev {
        struct virtio_dev *d;
        struct virtq rx, tx;
        bool mrg;
        uint8_t mac[6];
        uint32_t buf_size;
        uint8_t *bufs;         /* RX_BUFS buffers of buf_size */
        uint8_t buf_of[QSIZE]; /* rx head -> buffer index */
        uint8_t *hdr;          /* tx header, zeros */
        uint8_t *frame;        /* tx frame */
        uint8_t *got;          /* reassembled rx frame */
        unsigned others;
};

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

/* Receives one frame (reassembling merged buffers); returns its length, *nbufs buffers. */
static uint32_t receive(struct netdev *n, unsigned *nbufs)
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

static void build(struct netdev *n, unsigned k, uint16_t size)
{
        uint8_t *f = n->frame;

        memset(f, 0xff, 6);
        memcpy(f + 6, n->mac, 6);
        f[12] = ETHERTYPE >> 8;
        f[13] = ETHERTYPE & 0xff;
        memcpy(f + ETH_HDR, "PROBE-NET", 9);
        f[ETH_HDR + 9] = (uint8_t)k;
        for (uint32_t j = ETH_HDR + 10; j < size; j++)
                f[j] = (uint8_t)(k * 7 + j);
}

void scenario_net(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct netdev *n = alloc_zeroed(sizeof(*n), 64);
        struct virtio_dev *d = vctx_need(c, VID_NET, 0, "virtio-net");
        struct virtq qs[2];
        uint64_t wanted =
            vctx_ring_features(c) | VBIT(NET_F_MAC) | VBIT(NET_F_MTU) | VBIT(NET_F_STATUS);
        size_t len;
        const char *mrg = cmdline_find(bi->cmdline, "probe.mrg", &len);

        if (!(mrg && len == 1 && mrg[0] == '0'))
                wanted |= VBIT(NET_F_MRG_RXBUF);
        n->d = d;
        vctx_mode(c, d, true);
        virtio_bring_up(d, wanted, qs, 2, QSIZE);
        n->rx = qs[0];
        n->tx = qs[1];
        vctx_print_mode("net", d);
        n->mrg = d->features & VBIT(NET_F_MRG_RXBUF);
        if (d->features & VBIT(NET_F_MAC)) {
                for (unsigned i = 0; i < 6; i++)
                        n->mac[i] = virtio_cfg8(d, i);
        } else {
                static const uint8_t local[6] = {0x02, 0, 0, 0, 0, 1};
                memcpy(n->mac, local, 6);
        }
        print("probe: net mac %02x:%02x:%02x:%02x:%02x:%02x%s mrg_rxbuf %u", n->mac[0], n->mac[1],
              n->mac[2], n->mac[3], n->mac[4], n->mac[5],
              (d->features & VBIT(NET_F_MAC)) ? "" : " (own)", n->mrg ? 1u : 0u);
        if (d->features & VBIT(NET_F_STATUS))
                print(" link %s", (virtio_cfg16(d, 6) & 1) ? "up" : "down");
        if (d->features & VBIT(NET_F_MTU))
                print(" mtu %u", virtio_cfg16(d, 10));
        print("\n");

        n->buf_size = n->mrg ? MRG_BUF : FULL_BUF;
        n->bufs = alloc_mem((uint64_t)RX_BUFS * n->buf_size, 4096);
        n->hdr = alloc_zeroed(NET_HDR, 16);
        n->frame = alloc_mem(ETH_MAX, 64);
        n->got = alloc_mem(ETH_MAX, 64);
        for (unsigned i = 0; i < RX_BUFS; i++)
                post_rx(n, i);
        virtq_kick(&n->rx);

        for (unsigned k = 0; k < NET_FRAMES; k++) {
                struct vbuf tx[2] = {{n->hdr, NET_HDR, false}, {n->frame, sizes[k], false}};
                uint32_t got;
                unsigned nbufs;

                build(n, k, sizes[k]);
                virtq_call(&n->tx, tx, 2, true);
                for (;;) {
                        got = receive(n, &nbufs);
                        if (got >= ETH_HDR && load_le16(n->got + 12) == 0xb588)
                                break;
                        if (++n->others > OTHER_MAX)
                                probe_fail("net: %u frames that are not echoes", n->others);
                }
                if (got != sizes[k] || memcmp(n->got, n->mac, 6) != 0 ||
                    memcmp(n->got + ETH_HDR, n->frame + ETH_HDR, sizes[k] - ETH_HDR) != 0)
                        probe_fail("net: frame %u came back as %u bytes, not its echo", k, got);
                print("probe: net frame %u: %u bytes sent, echoed in %u buffer%s\n", k, sizes[k],
                      nbufs, nbufs == 1 ? "" : "s");
        }
        print("probe: net %u frames echoed\n", (unsigned)NET_FRAMES);
        vctx_check_irqs(d);
        virtio_reset(d);
        virtio_irq_disable(d);
}
