#include "virtq.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define DESC_SIZE 16
/* Split ring layout: avail = flags, idx, ring[size], used_event; used = flags, idx,
 * ring[size] of {id, len}, avail_event. */
#define AVAIL_IDX(q)        ((q)->avail + 2)
#define AVAIL_RING(q, i)    ((q)->avail + 4 + 2ull * (i))
#define AVAIL_USED_EVENT(q) ((q)->avail + 4 + 2ull * (q)->size)
#define USED_IDX(q)         ((q)->used + 2)
#define USED_RING(q, i)     ((q)->used + 4 + 8ull * (i))
#define USED_AVAIL_EVENT(q) ((q)->used + 4 + 8ull * (q)->size)

void virtq_reset(struct virtq *q)
{
        memset(q, 0, sizeof(*q));
}

static uint64_t desc_bytes(uint16_t size)
{
        return (uint64_t)DESC_SIZE * size;
}

static uint64_t avail_bytes(uint16_t size)
{
        return 6 + 2ull * size;
}

static uint64_t used_bytes(uint16_t size)
{
        return 6 + 8ull * size;
}

const char *virtq_check_config(const struct virtq *q, uint16_t max, struct hostmem *mem)
{
        if (q->size == 0 || q->size > max)
                return "queue size out of range";
        if (q->size & (q->size - 1))
                return "queue size is not a power of two";
        if (!is_aligned(q->desc, 16) || !is_aligned(q->avail, 2) || !is_aligned(q->used, 4))
                return "misaligned ring area";
        if (!hostmem_check(mem, q->desc, desc_bytes(q->size)))
                return "descriptor table outside accessible guest RAM";
        if (!hostmem_check(mem, q->avail, avail_bytes(q->size)))
                return "available ring outside accessible guest RAM";
        if (!hostmem_check(mem, q->used, used_bytes(q->size)))
                return "used ring outside accessible guest RAM";
        return NULL;
}

void virtq_start(struct virtq *q, struct hostmem *mem, bool event_idx, bool indirect)
{
        q->mem = mem;
        q->event_idx = event_idx;
        q->indirect = indirect;
        q->broken = false;
        q->last_avail = q->avail_seen = 0;
        q->used_idx = 0;
        q->signalled_valid = false;
}

bool virtq_live(const struct virtq *q)
{
        return q->ready && q->mem && !q->broken;
}

static enum virtq_pop_result broken(struct virtq *q)
{
        q->broken = true;
        return VIRTQ_BROKEN;
}

static enum virtq_pop_result bad(struct virtq *q)
{
        q->bad_chains++;
        return VIRTQ_BAD_CHAIN;
}

struct desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
};

/* Descriptors are copied in a few at a time: a chain usually sits in consecutive entries
 * (an indirect table always, and a driver's free list hands chains of one length back in
 * order), so one checked copy usually serves the whole chain. */
#define DESC_BATCH 4

struct desc_cache {
        gpa_t table;
        uint32_t first, n; /* the copy holds entries [first, first + n) of table */
        uint8_t raw[DESC_BATCH * DESC_SIZE];
};

static int read_desc(struct virtq *q, struct desc_cache *dc, gpa_t table, uint32_t table_size,
                     uint16_t i, struct desc *d)
{
        const uint8_t *raw;

        if (dc->table != table || i < dc->first || i - dc->first >= dc->n) {
                gpa_t at = table + (uint64_t)DESC_SIZE * i;
                /* Entry i and those after it in the table, up to the end of its granule: a
                 * granule is shared or private as a whole, so this copy is refused exactly
                 * when one of entry i alone would be, and no violation is counted for
                 * entries the chain does not use. (An unaligned indirect table's entry may
                 * straddle two granules: then it is copied alone, as before.) */
                uint32_t n = (uint32_t)((OWNERSHIP_GRANULE - at % OWNERSHIP_GRANULE) / DESC_SIZE);
                int r;

                if (n > table_size - i)
                        n = table_size - i;
                if (n > DESC_BATCH)
                        n = DESC_BATCH;
                if (n == 0)
                        n = 1;
                dc->n = 0;
                r = hostmem_read(q->mem, at, dc->raw, (size_t)n * DESC_SIZE);
                if (r)
                        return r;
                dc->table = table;
                dc->first = i;
                dc->n = n;
        }
        raw = dc->raw + (size_t)(i - dc->first) * DESC_SIZE;
        d->addr = get_le64(raw);
        d->len = get_le32(raw + 8);
        d->flags = get_le16(raw + 12);
        d->next = get_le16(raw + 14);
        return 0;
}

/* Appends one buffer; false when the chain is malformed. */
static bool add_seg(struct virtq *q, struct virtq_chain *c, const struct desc *d)
{
        bool write = d->flags & VIRTQ_DESC_F_WRITE;
        uint32_t *total = write ? &c->writable : &c->readable;
        uint64_t end;

        /* Readable buffers first, then writable ones (2.7.4.2). */
        if (!write && c->writable)
                return false;
        /* RAM bounds only: ownership is checked when the buffer is accessed, so a request
         * naming a private buffer fails with the device's error status (CC-4) instead of
         * looking malformed. */
        if (!range_end(d->addr, d->len, &end) || !hostmem_in_ram(q->mem, d->addr, d->len))
                return false;
        if (__builtin_add_overflow(*total, d->len, total))
                return false;
        if (d->len == 0)
                return true;
        c->segs[c->nr_segs++] = (struct virtq_seg){.addr = d->addr, .len = d->len, .write = write};
        return true;
}

/* Walks the chain at c->head; every step is bounded by the queue size. */
static enum virtq_pop_result walk(struct virtq *q, struct virtq_chain *c)
{
        gpa_t table = q->desc;
        uint32_t table_size = q->size;
        bool in_indirect = false;
        unsigned steps = 0;
        uint16_t i = c->head;
        struct desc_cache dc = {.n = 0};
        struct desc d;

        for (;;) {
                if (++steps > q->size)
                        return bad(q); /* a loop, or longer than the queue allows */
                if (read_desc(q, &dc, table, table_size, i, &d))
                        return in_indirect ? bad(q) : broken(q);
                if (d.flags & VIRTQ_DESC_F_INDIRECT) {
                        if (!q->indirect || in_indirect || (d.flags & VIRTQ_DESC_F_NEXT) ||
                            d.len == 0 || d.len % DESC_SIZE || d.len / DESC_SIZE > q->size ||
                            !hostmem_in_ram(q->mem, d.addr, d.len))
                                return bad(q);
                        table = d.addr;
                        table_size = d.len / DESC_SIZE;
                        in_indirect = true;
                        /* The pointer to the table is no buffer: only buffers count
                         * towards the queue size (and the capacity of c->segs). */
                        steps--;
                        i = 0;
                        continue;
                }
                if (!add_seg(q, c, &d))
                        return bad(q);
                if (!(d.flags & VIRTQ_DESC_F_NEXT))
                        return VIRTQ_CHAIN;
                if (d.next >= table_size)
                        return bad(q);
                i = d.next;
        }
}

uint16_t virtq_seen_pending(const struct virtq *q)
{
        return (uint16_t)(q->avail_seen - q->last_avail);
}

enum virtq_pop_result virtq_pop(struct virtq *q, struct virtq_chain *c)
{
        uint16_t avail_idx, head, pending = virtq_seen_pending(q);

        if (!virtq_live(q))
                return VIRTQ_EMPTY;
        /* The entries up to the index read last time are published already: only when they
         * are used up is the index read again. (More than the ring holds cannot have been
         * seen: the index was refused then. It is read again all the same.) */
        if (pending == 0 || pending > q->size) {
                if (hostmem_load16(q->mem, AVAIL_IDX(q), &avail_idx))
                        return broken(q);
                if ((uint16_t)(avail_idx - q->last_avail) > q->size)
                        return broken(q); /* the driver claims more buffers than the ring holds */
                if (avail_idx == q->last_avail)
                        return VIRTQ_EMPTY;
                q->avail_seen = avail_idx;
        }
        /* The ring entry is read after the index that published it. */
        atomic_thread_fence(memory_order_acquire);
        if (hostmem_load16(q->mem, AVAIL_RING(q, q->last_avail % q->size), &head))
                return broken(q);
        if (head >= q->size)
                return broken(q); /* cannot even be returned through the used ring */
        q->last_avail++;
        c->head = head;
        c->nr_segs = 0;
        c->readable = c->writable = 0;
        return walk(q, c);
}

void virtq_unpop(struct virtq *q)
{
        q->last_avail--;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
        uint8_t elem[8];

        if (!virtq_live(q))
                return -EFAULT;
        put_le32(elem, head);
        put_le32(elem + 4, len);
        if (hostmem_write(q->mem, USED_RING(q, q->used_idx % q->size), elem, sizeof(elem))) {
                q->broken = true;
                return -EFAULT;
        }
        /* The element must be visible before the index that publishes it. */
        atomic_thread_fence(memory_order_release);
        if (hostmem_store16(q->mem, USED_IDX(q), (uint16_t)(q->used_idx + 1))) {
                q->broken = true;
                return -EFAULT;
        }
        q->used_idx++;
        return 0;
}

bool virtq_arm(struct virtq *q)
{
        uint16_t avail_idx;

        if (!virtq_live(q))
                return false;
        if (q->event_idx && hostmem_store16(q->mem, USED_AVAIL_EVENT(q), q->last_avail)) {
                q->broken = true;
                return false;
        }
        /* Publish avail_event before looking again, or a notification can be lost. */
        atomic_thread_fence(memory_order_seq_cst);
        if (hostmem_load16(q->mem, AVAIL_IDX(q), &avail_idx)) {
                q->broken = true;
                return false;
        }
        /* What it shows saves the next pop a read (an impossible index is left to that pop,
         * which reads it again and finds the ring broken). */
        if ((uint16_t)(avail_idx - q->last_avail) <= q->size)
                q->avail_seen = avail_idx;
        return avail_idx != q->last_avail;
}

bool virtq_should_signal(struct virtq *q)
{
        uint16_t flags, used_event, old = q->signalled_used, new = q->used_idx;
        bool valid = q->signalled_valid;

        if (!virtq_live(q))
                return false;
        /* The used index must be visible before the driver's wishes are read. */
        atomic_thread_fence(memory_order_seq_cst);
        if (!q->event_idx) {
                if (hostmem_load16(q->mem, q->avail, &flags)) {
                        q->broken = true;
                        return false;
                }
                if (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) {
                        q->notify_suppressed++;
                        return false;
                }
                return true;
        }
        if (hostmem_load16(q->mem, AVAIL_USED_EVENT(q), &used_event)) {
                q->broken = true; /* the ring itself became inaccessible */
                return false;
        }
        q->signalled_used = new;
        q->signalled_valid = true;
        /* vring_need_event(): interrupt when used_event lies in (old, new]. */
        if (!valid || (uint16_t)(new - used_event - 1) < (uint16_t)(new - old))
                return true;
        q->notify_suppressed++;
        return false;
}

/* Visits the bytes [off, off+len) of the readable or writable part, segment by segment. */
typedef int (*seg_fn)(struct virtq *q, gpa_t addr, uint32_t len, void *ctx);

static long for_range(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                      uint32_t len, seg_fn fn, void *ctx)
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
                n = s->len - off;
                if (n > len - done)
                        n = len - done;
                int r = fn(q, s->addr + off, n, ctx);
                if (r)
                        return r;
                done += n;
                off = 0;
        }
        return done;
}

/* Copies go through pinned spans: every segment of the range is checked (and, on a
 * protected VM, held shared) before the first byte moves, so a copy is all or nothing
 * (CC-4) and no transition can land in the middle of it (CC-6). */
#define COPY_STACK_IOV 64

static long copy_range(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                       uint8_t *buf, uint32_t len)
{
        struct iovec stack_iov[COPY_STACK_IOV], *iov = stack_iov;
        uint32_t done = 0;
        int n = virtq_chain_pin(q, c, write, off, len, iov, COPY_STACK_IOV);

        /* Only a copy spanning more segments than the stack holds needs the heap. */
        if (n == -E2BIG) {
                iov = malloc(c->nr_segs * sizeof(*iov));
                if (!iov)
                        return -ENOMEM;
                n = virtq_chain_pin(q, c, write, off, len, iov, (int)c->nr_segs);
        }
        for (int i = 0; i < n; i++) {
                if (write)
                        memcpy(iov[i].iov_base, buf + done, iov[i].iov_len);
                else
                        memcpy(buf + done, iov[i].iov_base, iov[i].iov_len);
                done += (uint32_t)iov[i].iov_len;
        }
        if (n > 0)
                virtq_chain_unpin(q, c, write, off, done);
        if (iov != stack_iov)
                free(iov);
        return n < 0 ? (long)n : (long)done;
}

long virtq_chain_read(struct virtq *q, const struct virtq_chain *c, uint32_t off, void *buf,
                      uint32_t len)
{
        return copy_range(q, c, false, off, buf, len);
}

long virtq_chain_write(struct virtq *q, const struct virtq_chain *c, uint32_t off, const void *buf,
                       uint32_t len)
{
        return copy_range(q, c, true, off, (uint8_t *)buf, len);
}

struct pin_ctx {
        struct iovec *iov;
        int n, max;
};

static int pin_one(struct virtq *q, gpa_t addr, uint32_t len, void *ctx)
{
        struct pin_ctx *pc = ctx;

        if (pc->n == pc->max)
                return -E2BIG;
        int r = hostmem_pin(q->mem, addr, len, &pc->iov[pc->n]);

        if (r)
                return r; /* -EFAULT not RAM, -EACCES private */
        pc->n++;
        return 0;
}

static int unpin_one(struct virtq *q, gpa_t addr, uint32_t len, void *ctx)
{
        (void)ctx;
        hostmem_unpin(q->mem, addr, len);
        return 0;
}

int virtq_chain_pin(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                    uint32_t len, struct iovec *iov, int max)
{
        struct pin_ctx pc = {.iov = iov, .max = max};
        long r = for_range(q, c, write, off, len, pin_one, &pc);

        if (r < 0) {
                /* Release what was pinned before the failure. */
                uint32_t pinned = 0;
                for (int i = 0; i < pc.n; i++)
                        pinned += (uint32_t)iov[i].iov_len;
                for_range(q, c, write, off, pinned, unpin_one, NULL);
                return (int)r;
        }
        return pc.n;
}

void virtq_chain_unpin(struct virtq *q, const struct virtq_chain *c, bool write, uint32_t off,
                       uint32_t len)
{
        for_range(q, c, write, off, len, unpin_one, NULL);
}

/* ---- snapshots ---- */

void virtq_save(const struct virtq *q, struct snapbuf_writer *w)
{
        snapbuf_put_u16(w, q->size);
        snapbuf_put_bool(w, q->ready);
        snapbuf_put_u64(w, q->desc);
        snapbuf_put_u64(w, q->avail);
        snapbuf_put_u64(w, q->used);
        snapbuf_put_bool(w, q->mem != NULL);
        snapbuf_put_bool(w, q->event_idx);
        snapbuf_put_bool(w, q->indirect);
        snapbuf_put_bool(w, q->broken);
        snapbuf_put_u16(w, q->last_avail);
        snapbuf_put_u16(w, q->used_idx);
        snapbuf_put_u16(w, q->signalled_used);
        snapbuf_put_bool(w, q->signalled_valid);
}

bool virtq_restore(struct virtq *q, struct snapbuf_reader *r, uint16_t max, struct hostmem *mem,
                   bool running)
{
        struct virtq v = {0};
        const char *why;
        bool started;

        v.size = snapbuf_get_u16(r, "queue size");
        v.ready = snapbuf_get_bool(r, "queue ready");
        v.desc = snapbuf_get_u64(r, "queue descriptor area");
        v.avail = snapbuf_get_u64(r, "queue driver area");
        v.used = snapbuf_get_u64(r, "queue device area");
        started = snapbuf_get_bool(r, "queue started");
        v.event_idx = snapbuf_get_bool(r, "queue event_idx");
        v.indirect = snapbuf_get_bool(r, "queue indirect");
        v.broken = snapbuf_get_bool(r, "queue broken");
        v.last_avail = snapbuf_get_u16(r, "queue last_avail");
        v.avail_seen = v.last_avail; /* the next pop reads the index */
        v.used_idx = snapbuf_get_u16(r, "queue used_idx");
        v.signalled_used = snapbuf_get_u16(r, "queue signalled_used");
        v.signalled_valid = snapbuf_get_bool(r, "queue signalled_valid");
        if (!snapbuf_ok(r))
                return false;
        if (v.size > max || (v.size & (v.size - 1)))
                return snapbuf_fail(r, "queue size", "not a power of two the device accepts");
        if (v.ready && (why = virtq_check_config(&v, max, mem)) != NULL)
                return snapbuf_fail(r, "queue", why);
        /* A running device started every queue that was ready at DRIVER_OK, and a queue
         * cannot become ready later. */
        if (started != (running && v.ready))
                return snapbuf_fail(r, "queue", "started state inconsistent with the device's");
        if (started)
                v.mem = mem;
        *q = v;
        return true;
}
