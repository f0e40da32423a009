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
#include "netdev.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"

#define ETHERTYPE 0x88b5
#define OTHER_MAX 64 /* frames of other ethertypes tolerated */

static const uint16_t sizes[] = {60, 128, 600, 1000, 1514};
#define NET_FRAMES (sizeof(sizes) / sizeof(sizes[0]))

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
        struct netdev *n = netdev_open(vctx_get(bi), "net");
        struct virtio_dev *d = n->d;
        unsigned others = 0;

        print("probe: net mac %02x:%02x:%02x:%02x:%02x:%02x%s mrg_rxbuf %u", n->mac[0], n->mac[1],
              n->mac[2], n->mac[3], n->mac[4], n->mac[5],
              (d->features & VBIT(NET_F_MAC)) ? "" : " (own)", n->mrg ? 1u : 0u);
        if (d->features & VBIT(NET_F_STATUS))
                print(" link %s", (virtio_cfg16(d, 6) & 1) ? "up" : "down");
        if (d->features & VBIT(NET_F_MTU))
                print(" mtu %u", virtio_cfg16(d, 10));
        print("\n");

        for (unsigned k = 0; k < NET_FRAMES; k++) {
                uint32_t got;
                unsigned nbufs;

                build(n, k, sizes[k]);
                netdev_send(n, sizes[k]);
                for (;;) {
                        got = netdev_receive(n, &nbufs);
                        if (got >= ETH_HDR && load_le16(n->got + 12) == 0xb588)
                                break;
                        if (++others > OTHER_MAX)
                                probe_fail("net: %u frames that are not echoes", others);
                }
                if (got != sizes[k] || memcmp(n->got, n->mac, 6) != 0 ||
                    memcmp(n->got + ETH_HDR, n->frame + ETH_HDR, sizes[k] - ETH_HDR) != 0)
                        probe_fail("net: frame %u came back as %u bytes, not its echo", k, got);
                print("probe: net frame %u: %u bytes sent, echoed in %u buffer%s\n", k, sizes[k],
                      nbufs, nbufs == 1 ? "" : "s");
        }
        print("probe: net %u frames echoed\n", (unsigned)NET_FRAMES);
        netdev_close(n);
}
