/*
 * Guests for the fault-injection tests (tests/kvm/test_faults.py): they keep doing I/O when
 * the host side fails underneath and report what the device answered, so the test can tell
 * that the guest saw the failure and that the VMM survived it.
 *
 * `blk-stream`: on the first writable virtio-blk drive, round r writes sectors
 * [r * span, (r + 1) * span) (probe.span=S, default 16) with "BSTR", le32 r, le32 sector,
 * and r & 0xff as the sector's last byte, then FLUSH when the device offers it. Per round:
 *   probe: blk-stream round R flushed        write and flush ok (nothing else is reported
 *                                            as durable)
 *   probe: blk-stream round R written        write ok, no FLUSH offered
 *   probe: blk-stream round R write ioerr    the device failed the write (also unsupp/bad)
 *   probe: blk-stream round R flush ioerr    the write was taken, the flush failed
 * and at the end (the disk is full, or probe.rounds=N rounds were done)
 *   probe: blk-stream R rounds: F flushed, W written, E write errors, X flush errors
 * Without probe.rounds it streams until the end of the disk.
 *
 * `net-stream`: sends broadcast frames of ethertype 0x88b5 ("PROBE-NET-STREAM", le32
 * counter) one at a time and reads the link status after each completion. It stops when the
 * device reports the link down (a configuration change: the TAP went away) or after
 * probe.frames=N frames:
 *   probe: net-stream link up, sending
 *   probe: net-stream link down after N frames   |   probe: net-stream sent N frames
 * Each transmitted chain must come back from the device, link or no link.
 */
#include "alloc.h"
#include "cmdline.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define SECTOR       512u
#define BLK_F_RO     5
#define BLK_F_FLUSH  9
#define BLK_T_OUT    1
#define BLK_T_FLUSH  4
#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define DEFAULT_SPAN 16u
#define MAX_SPAN     128u

static uint64_t option(const struct boot_info *bi, const char *key, uint64_t dflt)
{
        size_t len;
        const char *v = cmdline_find(bi->cmdline, key, &len);
        uint64_t n;

        if (!v)
                return dflt;
        if (!str_parse_u64(v, len, 10, &n))
                probe_fail("%s: not a number", key);
        return n;
}

struct stream_blk {
        struct virtio_dev *d;
        struct virtq q;
        struct {
                uint32_t type, reserved;
                uint64_t sector;
        } * hdr;
        uint8_t *status;
};

static uint8_t blk_request(struct stream_blk *b, uint32_t type, uint64_t sector, void *data,
                           uint32_t len)
{
        struct vbuf v[3];
        unsigned n = 0;

        b->hdr->type = type;
        b->hdr->reserved = 0;
        b->hdr->sector = sector;
        *b->status = 0xff;
        v[n++] = (struct vbuf){b->hdr, sizeof(*b->hdr), false};
        if (len)
                v[n++] = (struct vbuf){data, len, false};
        v[n++] = (struct vbuf){b->status, 1, true};
        virtq_call(&b->q, v, n, true);
        return *b->status;
}

static const char *blk_status(uint8_t s)
{
        return s == BLK_S_IOERR ? "ioerr" : s == 2 ? "unsupp" : "bad";
}

void scenario_blk_stream(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct stream_blk *b = alloc_zeroed(sizeof(*b), 64);
        uint64_t span = option(bi, "probe.span", DEFAULT_SPAN),
                 rounds = option(bi, "probe.rounds", 0);
        uint64_t capacity, r, flushed = 0, written = 0, werr = 0, ferr = 0;
        struct virtio_dev *d = NULL;
        uint8_t *buf;
        bool flush;

        if (span == 0 || span > MAX_SPAN)
                probe_fail("probe.span must be 1 to %u sectors", MAX_SPAN);
        for (unsigned n = 0; (d = virtio_find(c->devs, c->count, VID_BLOCK, n)); n++) {
                b->d = d;
                vctx_mode(c, d, true);
                virtio_bring_up(d, vctx_ring_features(c) | VBIT(BLK_F_RO) | VBIT(BLK_F_FLUSH),
                                &b->q, 1, 16);
                if (!(d->features & VBIT(BLK_F_RO)))
                        break;
                virtio_reset(d);
                virtio_irq_disable(d);
        }
        if (!d)
                probe_fail("no writable virtio-blk device");
        vctx_print_mode("blk-stream", d);
        b->hdr = alloc_zeroed(sizeof(*b->hdr), 16);
        b->status = alloc_zeroed(1, 1);
        buf = alloc_mem(span * SECTOR, 4096);
        capacity = virtio_cfg64(d, 0);
        flush = d->features & VBIT(BLK_F_FLUSH);
        print("probe: blk-stream capacity %llu sectors span %llu flush %u\n", U64(capacity),
              U64(span), flush ? 1u : 0u);
        for (r = 0; (!rounds || r < rounds) && (r + 1) * span <= capacity; r++) {
                uint8_t st;

                for (uint64_t i = 0; i < span; i++) {
                        uint8_t *p = buf + i * SECTOR;
                        uint32_t round = (uint32_t)r, sector = (uint32_t)(r * span + i);

                        memset(p, (uint8_t)(0x40 + (r & 0x3f)), SECTOR);
                        memcpy(p, "BSTR", 4);
                        memcpy(p + 4, &round, 4);
                        memcpy(p + 8, &sector, 4);
                        p[SECTOR - 1] = (uint8_t)r;
                }
                st = blk_request(b, BLK_T_OUT, r * span, buf, (uint32_t)(span * SECTOR));
                if (st != BLK_S_OK) {
                        werr++;
                        print("probe: blk-stream round %llu write %s\n", U64(r), blk_status(st));
                        continue;
                }
                if (!flush) {
                        written++;
                        print("probe: blk-stream round %llu written\n", U64(r));
                        continue;
                }
                st = blk_request(b, BLK_T_FLUSH, 0, NULL, 0);
                if (st != BLK_S_OK) {
                        ferr++;
                        print("probe: blk-stream round %llu flush %s\n", U64(r), blk_status(st));
                        continue;
                }
                flushed++;
                print("probe: blk-stream round %llu flushed\n", U64(r));
        }
        print("probe: blk-stream %llu rounds: %llu flushed, %llu written, %llu write errors, "
              "%llu flush errors\n",
              U64(r), U64(flushed), U64(written), U64(werr), U64(ferr));
        virtio_reset(d);
        virtio_irq_disable(d);
}

#define NET_F_STATUS   16
#define NET_HDR        12
#define NET_FRAME      128
#define NET_LINK_UP    1
#define NET_CFG_STATUS 6
#define NET_ETHERTYPE  0x88b5

void scenario_net_stream(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct virtio_dev *d = vctx_need(c, VID_NET, 0, "virtio-net");
        uint64_t frames = option(bi, "probe.frames", 0), sent = 0;
        uint8_t *hdr = alloc_zeroed(NET_HDR, 16), *frame = alloc_zeroed(NET_FRAME, 64);
        struct virtq qs[2];

        vctx_mode(c, d, true);
        virtio_bring_up(d, vctx_ring_features(c) | VBIT(NET_F_STATUS), qs, 2, 16);
        vctx_print_mode("net-stream", d);
        if (!(d->features & VBIT(NET_F_STATUS)))
                probe_fail("net-stream: the device does not report its link status");
        if (!(virtio_cfg16(d, NET_CFG_STATUS) & NET_LINK_UP))
                probe_fail("net-stream: the link is down from the start");
        memset(frame, 0xff, 6);
        frame[12] = NET_ETHERTYPE >> 8;
        frame[13] = NET_ETHERTYPE & 0xff;
        memcpy(frame + 14, "PROBE-NET-STREAM", 16);
        print("probe: net-stream link up, sending\n");
        while (!frames || sent < frames) {
                uint32_t n = (uint32_t)sent;
                struct vbuf v[2] = {{hdr, NET_HDR, false}, {frame, NET_FRAME, false}};

                memcpy(frame + 30, &n, 4);
                virtq_call(&qs[1], v, 2, true);
                sent++;
                if (!(virtio_cfg16(d, NET_CFG_STATUS) & NET_LINK_UP)) {
                        print("probe: net-stream link down after %llu frames\n", U64(sent));
                        break;
                }
        }
        if (frames && sent == frames)
                print("probe: net-stream sent %llu frames\n", U64(sent));
        virtio_reset(d);
        virtio_irq_disable(d);
}
