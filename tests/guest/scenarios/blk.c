/*
 * `blk`: virtio-blk end to end, in interrupt mode by default. The test hands over a disk
 * image whose 512-byte sector i starts with "SECT" and le32 i and ends with the byte
 * (i & 0xff) (README.md), and optionally a second, read-only drive with the same layout.
 *
 * On the first writable drive: capacity; read sectors 0-7 in one request; write sectors 8-9
 * ("WRIT", le32 i, ..., 0xa5 at the end) and read them back; FLUSH, GET_ID (compared with
 * probe.blk_id=), WRITE_ZEROES on 10-11 and DISCARD on 12-13 when offered; a read past the
 * end (IOERR) and an unknown request type (UNSUPP). On the read-only drive: a read works, a
 * write fails with IOERR and leaves the sector as it was.
 */
#include "alloc.h"
#include "cmdline.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define SECTOR 512u

#define BLK_F_SIZE_MAX     1
#define BLK_F_SEG_MAX      2
#define BLK_F_RO           5
#define BLK_F_BLK_SIZE     6
#define BLK_F_FLUSH        9
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14

#define BLK_T_IN           0
#define BLK_T_OUT          1
#define BLK_T_FLUSH        4
#define BLK_T_GET_ID       8
#define BLK_T_DISCARD      11
#define BLK_T_WRITE_ZEROES 13
#define BLK_T_BOGUS        0x7f

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2
#define BLK_S_UNSET  0xff

#define BLK_ID_BYTES 20

struct blk_hdr {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
};

struct blk_range {
        uint64_t sector;
        uint32_t num_sectors;
        uint32_t flags;
};

struct blkdev {
        struct virtio_dev *dev;
        struct virtq q;
        unsigned n; /* blkN in the transcript */
        uint64_t capacity;
        struct blk_hdr *hdr;
        uint8_t *status;
};

static const char *status_name(uint8_t s)
{
        switch (s) {
        case BLK_S_OK:
                return "ok";
        case BLK_S_IOERR:
                return "ioerr";
        case BLK_S_UNSUPP:
                return "unsupp";
        case BLK_S_UNSET:
                return "unset";
        default:
                return "bad";
        }
}

/* One request: header, data (split in two buffers when it is 1 KiB or more, to make a
 * longer chain), status. dev_writes: the device writes the data (IN, GET_ID). */
static uint8_t request(struct blkdev *b, uint32_t type, uint64_t sector, void *data, uint32_t len,
                       bool dev_writes)
{
        struct vbuf v[4];
        unsigned n = 0;

        b->hdr->type = type;
        b->hdr->reserved = 0;
        b->hdr->sector = sector;
        *b->status = BLK_S_UNSET;
        v[n++] = (struct vbuf){b->hdr, sizeof(*b->hdr), false};
        if (len >= 2 * SECTOR) {
                v[n++] = (struct vbuf){data, len / 2, dev_writes};
                v[n++] = (struct vbuf){(uint8_t *)data + len / 2, len - len / 2, dev_writes};
        } else if (len) {
                v[n++] = (struct vbuf){data, len, dev_writes};
        }
        v[n++] = (struct vbuf){b->status, 1, true};
        virtq_call(&b->q, v, n, true);
        return *b->status;
}

static void expect(struct blkdev *b, const char *what, uint8_t got, uint8_t want)
{
        if (got != want)
                probe_fail("blk%u %s: status %s (0x%x), %s expected", b->n, what, status_name(got),
                           got, status_name(want));
}

static void fill_sector(uint8_t *p, const char *tag, uint32_t i, uint8_t last)
{
        memcpy(p, tag, 4);
        memcpy(p + 4, &i, 4);
        p[SECTOR - 1] = last;
}

static bool sector_is(const uint8_t *p, const char *tag, uint32_t i, uint8_t last)
{
        return memcmp(p, tag, 4) == 0 && load_le32(p + 4) == i && p[SECTOR - 1] == last;
}

static void check_sectors(struct blkdev *b, const uint8_t *buf, uint32_t first, uint32_t count,
                          const char *tag, uint8_t last_xor)
{
        for (uint32_t i = 0; i < count; i++) {
                const uint8_t *p = buf + (uint64_t)i * SECTOR;

                if (!sector_is(p, tag, first + i, (uint8_t)((first + i) ^ last_xor)))
                        probe_fail("blk%u sector %u: unexpected content %02x %02x %02x %02x", b->n,
                                   first + i, p[0], p[1], p[2], p[3]);
        }
}

static void open_blk(struct vctx *c, struct blkdev *b, struct virtio_dev *d, unsigned n)
{
        uint64_t wanted = vctx_ring_features(c) | VBIT(BLK_F_SIZE_MAX) | VBIT(BLK_F_SEG_MAX) |
                          VBIT(BLK_F_RO) | VBIT(BLK_F_BLK_SIZE) | VBIT(BLK_F_FLUSH) |
                          VBIT(BLK_F_DISCARD) | VBIT(BLK_F_WRITE_ZEROES);
        char who[8] = "blk0";

        who[3] = (char)('0' + n);
        b->dev = d;
        b->n = n;
        b->hdr = alloc_zeroed(sizeof(*b->hdr), 16);
        b->status = alloc_zeroed(1, 1);
        vctx_mode(c, d, true);
        virtio_bring_up(d, wanted, &b->q, 1, 16);
        vctx_print_mode(who, d);
        b->capacity = virtio_cfg64(d, 0);
        print("probe: blk%u capacity %llu sectors ro %u flush %u discard %u write-zeroes %u\n", n,
              U64(b->capacity), (d->features & VBIT(BLK_F_RO)) ? 1u : 0u,
              (d->features & VBIT(BLK_F_FLUSH)) ? 1u : 0u,
              (d->features & VBIT(BLK_F_DISCARD)) ? 1u : 0u,
              (d->features & VBIT(BLK_F_WRITE_ZEROES)) ? 1u : 0u);
}

static void zero_range(struct blkdev *b, uint32_t type, const char *name, uint64_t first,
                       uint8_t *buf)
{
        struct blk_range *r = alloc_zeroed(sizeof(*r), 16);

        r->sector = first;
        r->num_sectors = 2;
        r->flags = 0;
        expect(b, name, request(b, type, 0, r, sizeof(*r), false), BLK_S_OK);
        memset(buf, 0x5a, 2 * SECTOR);
        expect(b, "read", request(b, BLK_T_IN, first, buf, 2 * SECTOR, true), BLK_S_OK);
        if (type == BLK_T_WRITE_ZEROES) {
                if (!all_zero(buf, 2 * SECTOR))
                        probe_fail("blk%u sectors %llu-%llu not zero after WRITE_ZEROES", b->n,
                                   U64(first), U64(first + 1));
                print("probe: blk%u %s sectors %llu-%llu ok\n", b->n, name, U64(first),
                      U64(first + 1));
        } else {
                /* DISCARD promises nothing about the contents: report what happened. */
                print("probe: blk%u %s sectors %llu-%llu ok (%s)\n", b->n, name, U64(first),
                      U64(first + 1), all_zero(buf, 2 * SECTOR) ? "reads zeros" : "data kept");
        }
}

static void test_rw(struct vctx *c, struct blkdev *b)
{
        struct virtio_dev *d = b->dev;
        uint8_t *buf = alloc_mem(8 * SECTOR, 4096);
        uint8_t *wbuf = alloc_mem(2 * SECTOR, 4096);
        char *id = alloc_zeroed(BLK_ID_BYTES + 1, 16);
        const char *want_id;
        size_t want_len;

        if (b->capacity < 16)
                probe_fail("blk%u: %llu sectors, the scenario needs 16", b->n, U64(b->capacity));
        memset(buf, 0, 8 * SECTOR);
        expect(b, "read", request(b, BLK_T_IN, 0, buf, 8 * SECTOR, true), BLK_S_OK);
        check_sectors(b, buf, 0, 8, "SECT", 0);
        print("probe: blk%u read sectors 0-7 ok\n", b->n);

        for (uint32_t i = 0; i < 2; i++)
                fill_sector(wbuf + i * SECTOR, "WRIT", 8 + i, (uint8_t)((8 + i) ^ 0xa5));
        expect(b, "write", request(b, BLK_T_OUT, 8, wbuf, 2 * SECTOR, false), BLK_S_OK);
        print("probe: blk%u wrote sectors 8-9\n", b->n);
        memset(buf, 0, 2 * SECTOR);
        expect(b, "read", request(b, BLK_T_IN, 8, buf, 2 * SECTOR, true), BLK_S_OK);
        check_sectors(b, buf, 8, 2, "WRIT", 0xa5);
        print("probe: blk%u read back sectors 8-9 ok\n", b->n);

        if (d->features & VBIT(BLK_F_FLUSH)) {
                expect(b, "flush", request(b, BLK_T_FLUSH, 0, NULL, 0, false), BLK_S_OK);
                print("probe: blk%u flush ok\n", b->n);
        } else {
                print("probe: blk%u flush not offered\n", b->n);
        }

        expect(b, "get-id", request(b, BLK_T_GET_ID, 0, id, BLK_ID_BYTES, true), BLK_S_OK);
        print("probe: blk%u id \"%s\"\n", b->n, id);
        want_id = cmdline_find(c->bi->cmdline, "probe.blk_id", &want_len);
        if (want_id && (want_len > BLK_ID_BYTES || str_nlen(id, BLK_ID_BYTES) != want_len ||
                        memcmp(id, want_id, want_len) != 0))
                probe_fail("blk%u id \"%s\" is not probe.blk_id", b->n, id);

        if (d->features & VBIT(BLK_F_WRITE_ZEROES))
                zero_range(b, BLK_T_WRITE_ZEROES, "write-zeroes", 10, buf);
        if (d->features & VBIT(BLK_F_DISCARD))
                zero_range(b, BLK_T_DISCARD, "discard", 12, buf);

        expect(b, "read past the end", request(b, BLK_T_IN, b->capacity, buf, SECTOR, true),
               BLK_S_IOERR);
        print("probe: blk%u read past the end: ioerr\n", b->n);
        expect(b, "unknown request type", request(b, BLK_T_BOGUS, 0, NULL, 0, false), BLK_S_UNSUPP);
        print("probe: blk%u unknown request type: unsupp\n", b->n);
}

static void test_ro(struct blkdev *b)
{
        uint8_t *buf = alloc_mem(SECTOR, 4096);
        uint8_t *wbuf = alloc_mem(SECTOR, 4096);

        if (!(b->dev->features & VBIT(BLK_F_RO)))
                probe_fail("blk%u: the read-only drive does not offer VIRTIO_BLK_F_RO", b->n);
        memset(buf, 0, SECTOR);
        expect(b, "read", request(b, BLK_T_IN, 1, buf, SECTOR, true), BLK_S_OK);
        check_sectors(b, buf, 1, 1, "SECT", 0);
        print("probe: blk%u read sector 1 ok\n", b->n);
        fill_sector(wbuf, "WRIT", 1, 0xee);
        expect(b, "write to a read-only drive", request(b, BLK_T_OUT, 1, wbuf, SECTOR, false),
               BLK_S_IOERR);
        print("probe: blk%u write refused: ioerr\n", b->n);
        memset(buf, 0, SECTOR);
        expect(b, "read", request(b, BLK_T_IN, 1, buf, SECTOR, true), BLK_S_OK);
        check_sectors(b, buf, 1, 1, "SECT", 0);
        print("probe: blk%u sector 1 unchanged\n", b->n);
}

void scenario_blk(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct blkdev *drv = alloc_zeroed(2 * sizeof(*drv), 64);
        struct blkdev *rw = NULL, *ro = NULL;
        struct virtio_dev *d;
        unsigned n = 0;

        vctx_need(c, VID_BLOCK, 0, "virtio-blk");
        /* The first two drives, whatever their order: one writable, one read-only. */
        while (n < 2 && (d = virtio_find(c->devs, c->count, VID_BLOCK, n))) {
                open_blk(c, &drv[n], d, n);
                if (d->features & VBIT(BLK_F_RO)) {
                        if (!ro)
                                ro = &drv[n];
                } else if (!rw) {
                        rw = &drv[n];
                }
                n++;
        }
        if (!rw)
                probe_fail("no writable virtio-blk device");
        test_rw(c, rw);
        vctx_check_irqs(rw->dev);
        if (ro) {
                test_ro(ro);
                vctx_check_irqs(ro->dev);
        } else {
                print("probe: blk no read-only drive\n");
        }
        for (unsigned i = 0; i < n; i++) {
                virtio_reset(drv[i].dev);
                virtio_irq_disable(drv[i].dev);
        }
}
