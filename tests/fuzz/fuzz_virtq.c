/*
 * Split-virtqueue chain walking (devices/virtio/virtq.c) against a guest that writes
 * anything anywhere: rings, descriptor tables (direct and indirect), ring indices, and on a
 * protected VM which granules are private. Checked against a model after every call:
 *
 *  - a popped chain lists at most `size` buffers, readable ones first, each non-empty and
 *    inside guest RAM, and its byte counts are the sums of its buffers;
 *  - chain reads and writes move exactly the bytes a reference copy (through guest_mem)
 *    says, or fail with -EACCES exactly when a touched granule is private, and then move
 *    nothing;
 *  - pins describe exactly the requested range and are released by unpin (a transition to
 *    private would wait forever otherwise);
 *  - nothing the device writes lands in a private granule (their contents are compared
 *    with a shadow copy that only the guest's own writes update).
 *
 * Input: a header (queue size, ring addresses, features, protected or not), then
 * operations (see the switch in LLVMFuzzerTestOneInput).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtq.h"
#include "fuzz_common.h"
#include "memory/ownership.h"

#define HOLE_START MiB(1)
#define HOLE_END   GiB(4)
#define HIGH_SIZE  KiB(64)
#define MEM_SIZE   (HOLE_START + HIGH_SIZE)
#define MAX_OPS    256
#define PATTERN    0xa5

static struct guest_mem *mem;
static struct virtq_chain chain;
static uint8_t buf[2][VIRTQ_MAX_SIZE * 64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct guest_mem_spec spec = {
            .size = MEM_SIZE, .hole_start = HOLE_START, .hole_end = HOLE_END};
        struct error err = {0};

        (void)argc;
        (void)argv;
        fz_quiet_log();
        if (guest_mem_create(&spec, &err, &mem))
                abort();
        return 0;
}

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_virtq: %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* A guest address: mostly in low RAM, sometimes in the high region or anywhere. */
static gpa_t addr(struct fz *f)
{
        uint8_t sel = fz_u8(f);
        uint32_t v = fz_u32(f);

        if (sel < 200)
                return v % HOLE_START;
        if (sel < 230)
                return HOLE_END + v % HIGH_SIZE;
        if (sel < 240)
                return HOLE_START - (v & 0xff); /* straddling the end of low RAM */
        return fz_u64(f);
}

static uint32_t length(struct fz *f)
{
        uint8_t sel = fz_u8(f);

        if (sel < 128)
                return fz_u8(f);
        if (sel < 240)
                return fz_u16(f);
        return fz_u32(f);
}

/* ---- the model ---- */

#define NR_GRANULES (MEM_SIZE / OWNERSHIP_GRANULE)

struct model {
        struct ownership *own; /* NULL: an ordinary VM */
        uint8_t private_[NR_GRANULES];
        uint8_t shadow[NR_GRANULES][OWNERSHIP_GRANULE]; /* a private granule's contents */
};

static struct model m;

static gpa_t granule_gpa(unsigned i)
{
        gpa_t g = (gpa_t)i * OWNERSHIP_GRANULE;

        return g < HOLE_START ? g : HOLE_END + (g - HOLE_START);
}

static unsigned nr_granules(void)
{
        return (unsigned)NR_GRANULES;
}

static int granule_of(gpa_t a)
{
        if (a < HOLE_START)
                return (int)(a / OWNERSHIP_GRANULE);
        if (a >= HOLE_END && a - HOLE_END < HIGH_SIZE)
                return (int)((HOLE_START + (a - HOLE_END)) / OWNERSHIP_GRANULE);
        return -1;
}

/* The guest writes its memory, private granules included (their shadow follows). */
static void guest_write(gpa_t a, const void *p, size_t len)
{
        gpa_t end;

        if (guest_mem_write(mem, a, p, len) || !len || !range_end(a, len - 1, &end))
                return;
        for (gpa_t g = align_down(a, OWNERSHIP_GRANULE); g <= end; g += OWNERSHIP_GRANULE) {
                int i = granule_of(g);

                if (i >= 0 && m.private_[i])
                        CHECK(guest_mem_read(mem, g, m.shadow[i], OWNERSHIP_GRANULE) == 0);
        }
}

static void write16(gpa_t a, uint16_t v)
{
        uint8_t b[2];

        put_le16(b, v);
        guest_write(a, b, 2);
}

/* The host side never changes a private granule. */
static void check_private(const struct model *mo)
{
        static uint8_t page[OWNERSHIP_GRANULE];

        for (unsigned i = 0; mo->own && i < nr_granules(); i++) {
                if (!mo->private_[i])
                        continue;
                CHECK(guest_mem_read(mem, granule_gpa(i), page, sizeof(page)) == 0);
                CHECK(memcmp(page, mo->shadow[i], sizeof(page)) == 0);
        }
}

static void set_private(struct model *mo, unsigned i, bool priv)
{
        gpa_t g = granule_gpa(i);

        if (priv) {
                CHECK(ownership_make_private(mo->own, g, OWNERSHIP_GRANULE) == 0);
                CHECK(guest_mem_fill(mem, g, PATTERN, OWNERSHIP_GRANULE) == 0);
                memset(mo->shadow[i], PATTERN, OWNERSHIP_GRANULE);
        } else {
                check_private(mo);
                CHECK(ownership_make_shared(mo->own, g, OWNERSHIP_GRANULE) == 0);
        }
        mo->private_[i] = priv;
}

static void check_chain(const struct virtq *q, const struct virtq_chain *c)
{
        uint64_t r = 0, w = 0;
        bool seen_write = false;

        CHECK(c->head < q->size);
        CHECK(c->nr_segs <= q->size);
        for (unsigned i = 0; i < c->nr_segs; i++) {
                const struct virtq_seg *s = &c->segs[i];

                CHECK(s->len > 0);
                CHECK(guest_mem_contains(mem, s->addr, s->len));
                if (s->write)
                        seen_write = true;
                else
                        CHECK(!seen_write);
                *(s->write ? &w : &r) += s->len;
        }
        CHECK(r == c->readable && w == c->writable);
}

/* Calls piece(ctx, gpa, done, n) for each guest piece of [off, off+len) of one part of the
 * chain (its readable or its writable buffers), clipped at the end of the part; done is
 * the offset of the piece within the range. Stops early when piece returns false (NULL: no
 * calls). Returns the bytes covered. */
static uint32_t range_walk(const struct virtq_chain *c, bool write, uint32_t off, uint32_t len,
                           bool (*piece)(void *ctx, gpa_t gpa, uint32_t done, uint32_t n),
                           void *ctx)
{
        uint32_t done = 0;

        for (unsigned i = 0; i < c->nr_segs && done < len; i++) {
                const struct virtq_seg *s = &c->segs[i];
                uint32_t n;

                if (s->write != write)
                        continue;
                if (off >= s->len) {
                        off -= s->len;
                        continue;
                }
                n = s->len - off < len - done ? s->len - off : len - done;
                if (piece && !piece(ctx, s->addr + off, done, n))
                        break;
                done += n;
                off = 0;
        }
        return done;
}

static bool private_piece(void *ctx, gpa_t gpa, uint32_t done, uint32_t n)
{
        const struct model *mo = ctx;

        (void)done;
        return !ownership_any_private(mo->own, gpa, n); /* the first private one answers */
}

/* What [off, off+len) of one part of the chain covers: the bytes it should move and
 * whether a granule it touches is private. */
static uint32_t range_expect(const struct model *mo, const struct virtq_chain *c, bool write,
                             uint32_t off, uint32_t len, bool *priv)
{
        uint32_t all = range_walk(c, write, off, len, NULL, NULL);

        *priv = mo->own && range_walk(c, write, off, len, private_piece, (void *)mo) < all;
        return all;
}

struct copy_ctx {
        uint8_t *ref;
        bool to_guest;
};

static bool copy_piece(void *ctx, gpa_t gpa, uint32_t done, uint32_t n)
{
        struct copy_ctx *cc = ctx;

        if (cc->to_guest)
                CHECK(guest_mem_write(mem, gpa, cc->ref + done, n) == 0);
        else
                CHECK(guest_mem_read(mem, gpa, cc->ref + done, n) == 0);
        return true;
}

/* The same range copied through guest_mem (the trusted path), to or from ref. */
static void range_copy(const struct virtq_chain *c, bool write, uint32_t off, uint8_t *ref,
                       uint32_t len, bool to_guest)
{
        struct copy_ctx cc = {ref, to_guest};

        range_walk(c, write, off, len, copy_piece, &cc);
}

struct overlap_ctx {
        struct {
                gpa_t a;
                uint32_t n;
        } r[64];
        unsigned nr;
        bool found;
};

static bool overlap_piece(void *ctx, gpa_t gpa, uint32_t done, uint32_t n)
{
        struct overlap_ctx *o = ctx;

        (void)done;
        if (o->nr == ARRAY_SIZE(o->r)) {
                o->found = true; /* too many to compare: assume the worst */
                return false;
        }
        for (unsigned k = 0; k < o->nr; k++)
                if (ranges_overlap(o->r[k].a, o->r[k].n, gpa, n)) {
                        o->found = true;
                        return false;
                }
        o->r[o->nr].a = gpa;
        o->r[o->nr++].n = n;
        return true;
}

/* Whether two buffers of the range overlap in guest memory (then the last write wins and
 * the bytes read back differ from those written: legitimate). */
static bool range_self_overlaps(const struct virtq_chain *c, bool write, uint32_t off, uint32_t len)
{
        struct overlap_ctx o = {.nr = 0, .found = false};

        range_walk(c, write, off, len, overlap_piece, &o);
        return o.found;
}

static void op_copy(struct model *mo, struct virtq *q, bool have_chain, struct fz *f, bool write)
{
        uint32_t off = length(f), len = length(f) % sizeof(buf[0]), expect;
        bool priv;
        long r;

        if (!have_chain)
                return;
        expect = range_expect(mo, &chain, write, off, len, &priv);
        if (write) {
                for (uint32_t i = 0; i < len; i++)
                        buf[0][i] = (uint8_t)(i * 7 + off);
                range_copy(&chain, true, off, buf[1], expect, false); /* the bytes before */
                r = virtq_chain_write(q, &chain, off, buf[0], len);
                if (priv) {
                        /* All or nothing: the range is as it was. */
                        CHECK(r == -EACCES);
                        range_copy(&chain, true, off, buf[0], expect, false);
                        CHECK(memcmp(buf[0], buf[1], expect) == 0);
                        return;
                }
                CHECK(r == (long)expect);
                if (range_self_overlaps(&chain, true, off, expect))
                        return;
                range_copy(&chain, true, off, buf[1], expect, false);
                for (uint32_t i = 0; i < expect; i++)
                        CHECK(buf[1][i] == (uint8_t)(i * 7 + off));
        } else {
                range_copy(&chain, false, off, buf[1], priv ? 0 : expect, false);
                r = virtq_chain_read(q, &chain, off, buf[0], len);
                if (priv) {
                        CHECK(r == -EACCES);
                        return;
                }
                CHECK(r == (long)expect);
                CHECK(memcmp(buf[0], buf[1], expect) == 0);
        }
}

static void op_pin(struct model *mo, struct virtq *q, bool have_chain, struct fz *f)
{
        static struct iovec iov[VIRTQ_MAX_SIZE];
        bool write = fz_bool(f), priv;
        uint32_t off = length(f), len = length(f), expect, total = 0;
        int max = (int)fz_below(f, VIRTQ_MAX_SIZE) + 1;
        int n;

        if (!have_chain)
                return;
        expect = range_expect(mo, &chain, write, off, len, &priv);
        n = virtq_chain_pin(q, &chain, write, off, len, iov, max);
        if (n == -E2BIG)
                return;
        if (priv) {
                CHECK(n == -EACCES);
                return;
        }
        CHECK(n >= 0 && n <= max);
        for (int i = 0; i < n; i++)
                total += (uint32_t)iov[i].iov_len;
        CHECK(total == expect);
        /* Host pointers stay valid and hold the guest's bytes until unpinned (compared for
         * ranges that fit the reference buffers: a chain can describe far more). */
        if (expect > sizeof(buf[0])) {
                virtq_chain_unpin(q, &chain, write, off, len);
                return;
        }
        for (int i = 0, at = 0; i < n; at += (int)iov[i].iov_len, i++)
                memcpy(buf[0] + at, iov[i].iov_base, iov[i].iov_len);
        range_copy(&chain, write, off, buf[1], expect, false);
        CHECK(memcmp(buf[0], buf[1], expect) == 0);
        virtq_chain_unpin(q, &chain, write, off, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct virtq q;
        struct hostmem *hm;
        struct fz f;
        bool have_chain = false;
        uint16_t avail_idx = 0;
        unsigned ops = 0;
        uint8_t flags;

        fz_init(&f, data, size);
        m.own = NULL;
        memset(m.private_, 0, sizeof(m.private_));
        CHECK(guest_mem_fill(mem, 0, 0, HOLE_START) == 0);
        CHECK(guest_mem_fill(mem, HOLE_END, 0, HIGH_SIZE) == 0);
        CHECK(hostmem_create(mem, "fuzz", &hm) == 0);
        flags = fz_u8(&f);
        if (flags & 1) {
                CHECK(ownership_create(mem, false, &m.own) == 0);
                hostmem_set_ownership(hm, m.own);
        }
        virtq_reset(&q);
        q.size = (flags & 2) ? fz_u16(&f) : (uint16_t)(1u << fz_below(&f, 11));
        q.desc = (flags & 4) ? addr(&f) : 0x1000;
        q.avail = (flags & 4) ? addr(&f) : 0x5000;
        q.used = (flags & 4) ? addr(&f) : 0x6000;
        if (virtq_check_config(&q, VIRTQ_MAX_SIZE, hm))
                goto out;
        q.ready = true;
        virtq_start(&q, hm, flags & 8, flags & 16);

        while (!fz_empty(&f) && ops++ < MAX_OPS) {
                switch (fz_u8(&f) % 14) {
                case 0: { /* a descriptor */
                        uint8_t d[16];
                        gpa_t table = fz_bool(&f) ? q.desc : addr(&f);

                        put_le64(d, addr(&f));
                        put_le32(d + 8, length(&f));
                        put_le16(d + 12, fz_u8(&f) & 7);
                        put_le16(d + 14, fz_u16(&f) % (q.size + 1u));
                        guest_write(table + 16ull * fz_below(&f, q.size + 1u), d, 16);
                        break;
                }
                case 1: /* publish a head */
                        write16(q.avail + 4 + 2ull * (avail_idx % q.size), fz_u16(&f) % q.size);
                        write16(q.avail + 2, ++avail_idx);
                        break;
                case 2: /* any avail index, any ring entry */
                        avail_idx = fz_u16(&f);
                        write16(q.avail + 2, avail_idx);
                        break;
                case 3: { /* raw bytes anywhere */
                        size_t len;
                        gpa_t a = addr(&f);
                        const uint8_t *b = fz_bytes(&f, 4096, &len);

                        guest_write(a, b, len);
                        break;
                }
                case 4: {
                        enum virtq_pop_result r = virtq_pop(&q, &chain);

                        have_chain = r == VIRTQ_CHAIN;
                        if (r == VIRTQ_CHAIN)
                                check_chain(&q, &chain);
                        else if (r == VIRTQ_BAD_CHAIN)
                                CHECK(chain.head < q.size);
                        else if (r == VIRTQ_BROKEN)
                                CHECK(q.broken);
                        break;
                }
                case 5:
                        if (have_chain && fz_bool(&f)) {
                                virtq_unpop(&q);
                                have_chain = false;
                        }
                        break;
                case 6:
                        (void)virtq_push(&q, fz_bool(&f) && have_chain ? chain.head : fz_u16(&f),
                                         length(&f));
                        break;
                case 7:
                        op_copy(&m, &q, have_chain, &f, false);
                        break;
                case 8:
                        op_copy(&m, &q, have_chain, &f, true);
                        break;
                case 9:
                        op_pin(&m, &q, have_chain, &f);
                        break;
                case 10:
                        (void)virtq_arm(&q);
                        break;
                case 11:
                        (void)virtq_should_signal(&q);
                        break;
                case 12: /* the guest shares or unshares a granule */
                        if (m.own) {
                                unsigned g = fz_below(&f, nr_granules());
                                set_private(&m, g, !m.private_[g]);
                        }
                        break;
                case 13: /* the used event / avail flags */
                        write16(fz_bool(&f) ? q.avail : q.avail + 4 + 2ull * q.size, fz_u16(&f));
                        break;
                }
        }
        check_private(&m);
out:
        hostmem_destroy(hm);
        ownership_destroy(m.own);
        return 0;
}
