/*
 * The ownership map of a confidential VM: for every 4 KiB granule of guest RAM, whether it
 * is SHARED (the host and its devices may touch it) or PRIVATE (only the guest and the
 * trusted platform may). It is the single source of truth for "may the host touch this
 * byte" (docs/confidential.md, "The model").
 *
 * Queries are lock-free (one bit per granule in atomic words). Transitions are serialised.
 * Host accesses register themselves for their duration: a transition to PRIVATE first flips
 * the bits, so accesses that start afterwards are refused, then waits until the accesses
 * already under way have finished. Accesses never wait, so a device holding a long pin (an
 * asynchronous disk read) cannot deadlock a transition, and a transition never lands in the
 * middle of a host access (CC-3, CC-6).
 *
 * Two kinds of registration:
 *  - pins (ownership_pin/unpin): per-granule counters, for accesses that outlive the call
 *    (zero-copy I/O); a transition waits only for pins on its own range;
 *  - short accesses (ownership_access_begin/end): a copy the calling thread finishes before
 *    it does anything else; it announces itself in a per-thread slot with plain stores, no
 *    atomic read-modify-write, and the rare transition to PRIVATE pays instead: it forces a
 *    memory barrier on every thread of the process (membarrier(2), private expedited) before
 *    it looks at the slots, and waits for the short accesses to its map then under way. This
 *    is what keeps a protected VM's devices within a few percent of an ordinary VM's. Where
 *    membarrier is unavailable a short access is a pin instead (a seccomp filter must allow
 *    membarrier).
 */
#ifndef MEMORY_OWNERSHIP_H
#define MEMORY_OWNERSHIP_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "guest_mem.h"

#define OWNERSHIP_GRANULE 4096ull

struct ownership;

/* all_private: the state at VM start (SEV launches with every granule private). */
int ownership_create(const struct guest_mem *mem, bool all_private,
                     struct ownership **out) MUST_CHECK;
void ownership_destroy(struct ownership *o);

/* True when [gpa, gpa+len) is guest RAM and every granule it touches is shared. */
bool ownership_is_shared(const struct ownership *o, gpa_t gpa, uint64_t len);
/* True when some granule of the range is private (false for non-RAM ranges). */
bool ownership_any_private(const struct ownership *o, gpa_t gpa, uint64_t len);

/* Registers a host access to [gpa, gpa+len) and checks it: 0 when the whole range is
 * shared RAM (the caller may touch it until ownership_unpin), -EACCES when a granule is
 * private, -EFAULT when the range is not RAM (nothing stays registered on failure). */
int ownership_pin(struct ownership *o, gpa_t gpa, uint64_t len) MUST_CHECK;
void ownership_unpin(struct ownership *o, gpa_t gpa, uint64_t len);

/* A short access to [gpa, gpa+len): the same checks and results as ownership_pin; on 0 the
 * caller touches the range and then calls ownership_access_end(o, a), on the same thread and
 * before any other short access of that thread (they do not nest). */
struct ownership_access {
        struct ownership_slot_ *slot; /* the thread's slot announcing it; NULL: it is a pin */
        uint64_t ended;               /* the slot's seq once it has ended */
        uint64_t first, count;        /* a pin's granules */
};
int ownership_access_begin(struct ownership *o, gpa_t gpa, uint64_t len,
                           struct ownership_access *a) MUST_CHECK;
void ownership_access_end(struct ownership *o, struct ownership_access *a);

/* Transitions of granule-aligned ranges of guest RAM (-EINVAL when misaligned or empty,
 * -EFAULT when not RAM; nothing changes on error). Making a range private returns once no
 * host access is under way on it. */
int ownership_make_private(struct ownership *o, gpa_t gpa, uint64_t len) MUST_CHECK;
int ownership_make_shared(struct ownership *o, gpa_t gpa, uint64_t len) MUST_CHECK;
int ownership_set_all(struct ownership *o, bool private_) MUST_CHECK;

/* What a transition to private calls while it waits for pins (about every millisecond,
 * holding no lock of the map): it lets the waiting thread complete the I/O that holds them
 * itself, so the transition never depends on a thread that may be waiting for it (the VMM
 * thread reaps io_uring completions, and may be pausing or stopping this very vCPU). NULL:
 * just wait. Set before any transition can run and cleared after the last. */
void ownership_set_progress(struct ownership *o, void (*progress)(void *opaque), void *opaque);

/*
 * The common case of a short access, inline: a range inside one granule of the map's first
 * region, on a thread that has its slot. memory/hostmem begins and ends one for every ring
 * index, descriptor and header a device touches, and two calls per access cost more than
 * the check itself. It is the protocol described above, not another one: the slot
 * announcement, then the bit. ownership_quick_begin returns 0 when the access has begun
 * (end it with ownership_quick_end, under the same rules as ownership_access_end), -EACCES
 * when it is refused, and 1, having done nothing, when the range is not the common case
 * (several granules, another region, non-RAM) or the thread has no slot yet: then the caller
 * uses ownership_access_begin. Nothing outside memory/ownership.{c,h} reads the names
 * ending in an underscore.
 */
struct ownership_slot_ {
        atomic_bool in_use;              /* owned by a thread */
        _Atomic(struct ownership *) map; /* the map of the access under way */
        atomic_uint_fast64_t seq;        /* odd while an access is under way */
} __attribute__((aligned(64)));

/* The first member of struct ownership: what the inline paths read (all but waiters fixed
 * at creation). */
struct ownership_head_ {
        gpa_t gpa;              /* the first region: its address, */
        uint64_t bytes;         /* its whole granules in bytes (its granules come first) */
        _Atomic uint64_t *bits; /* the map: 1 = private */
        _Atomic uint32_t *pins; /* host accesses under way, per granule */
        atomic_uint waiters;    /* transitions waiting for pins to drain */
};

extern _Thread_local struct ownership_slot_ *ownership_my_slot_;
void ownership_wake_(struct ownership *o); /* a pin drained while transitions wait */

/* Whether [gpa, gpa+len) lies inside one granule of the first region, and which. (A gpa
 * below the region wraps off past h->bytes; len 0 wraps len - 1.) */
static inline bool ownership_one_granule_(const struct ownership_head_ *h, gpa_t gpa, uint64_t len,
                                          uint64_t *g)
{
        uint64_t off = gpa - h->gpa;

        if (__builtin_expect(
                off >= h->bytes || len - 1 >= OWNERSHIP_GRANULE - off % OWNERSHIP_GRANULE, 0))
                return false;
        *g = off / OWNERSHIP_GRANULE;
        return true;
}

static inline bool ownership_bit_(const struct ownership_head_ *h, uint64_t g)
{
        /* seq_cst: a pin's increment and this load need no fence between them. */
        return (atomic_load_explicit(&h->bits[g / 64], memory_order_seq_cst) >> (g % 64)) & 1;
}

struct ownership_quick {
        struct ownership_slot_ *slot; /* the thread's slot, announcing the access */
        uint64_t ended;               /* its seq once the access has ended */
};

static inline int ownership_quick_begin(struct ownership *o, gpa_t gpa, uint64_t len,
                                        struct ownership_quick *q)
{
        const struct ownership_head_ *h = (const struct ownership_head_ *)(const void *)o;
        struct ownership_slot_ *slot = ownership_my_slot_;
        uint64_t g, v;

        if (__builtin_expect(!slot, 0) || !ownership_one_granule_(h, gpa, len, &g))
                return 1;
        /* Announce (the map, then seq odd), then check: a transition flips the bits, makes
         * every thread pass a barrier (a thread has a slot only where that barrier exists),
         * then looks at the slots. */
        v = atomic_load_explicit(&slot->seq, memory_order_relaxed);
        atomic_store_explicit(&slot->map, o, memory_order_relaxed);
        atomic_store_explicit(&slot->seq, v + 1, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst);
        if (__builtin_expect(ownership_bit_(h, g), 0)) {
                atomic_store_explicit(&slot->seq, v + 2, memory_order_release);
                return -EACCES;
        }
        q->slot = slot;
        q->ended = v + 2;
        return 0;
}

static inline void ownership_quick_end(const struct ownership_quick *q)
{
        /* Release: the access happens before a waiting transition sees it ended. */
        atomic_store_explicit(&q->slot->seq, q->ended, memory_order_release);
}

/* The common case of ownership_pin and ownership_unpin, inline (hostmem_pin/unpin): one
 * granule of the first region, the same registration (its counter, then its bit). Both
 * return 1, having done nothing, for any other range. */
static inline int ownership_quick_unpin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        struct ownership_head_ *h = (struct ownership_head_ *)(void *)o;
        uint64_t g;

        if (!ownership_one_granule_(h, gpa, len, &g))
                return 1;
        if (atomic_fetch_sub(&h->pins[g], 1) == 1 && atomic_load(&h->waiters))
                ownership_wake_(o);
        return 0;
}

static inline int ownership_quick_pin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        struct ownership_head_ *h = (struct ownership_head_ *)(void *)o;
        uint64_t g;

        if (!ownership_one_granule_(h, gpa, len, &g))
                return 1;
        /* Register first, check second (ownership.c, pin_span). */
        atomic_fetch_add(&h->pins[g], 1);
        if (__builtin_expect(ownership_bit_(h, g), 0)) {
                (void)ownership_quick_unpin(o, gpa, len);
                return -EACCES;
        }
        return 0;
}

/* ownership_is_shared's common case (one granule of the first region: a status byte),
 * inline: 1 shared, 0 private, -1 for any other range (then ask ownership_is_shared). */
static inline int ownership_quick_is_shared(const struct ownership *o, gpa_t gpa, uint64_t len)
{
        const struct ownership_head_ *h = (const struct ownership_head_ *)(const void *)o;
        uint64_t g;

        if (!ownership_one_granule_(h, gpa, len, &g))
                return -1;
        return !ownership_bit_(h, g);
}

/* Counters: transitions so far (bumps on every change), private granules now. */
uint64_t ownership_generation(const struct ownership *o);
uint64_t ownership_private_granules(const struct ownership *o);
uint64_t ownership_granules(const struct ownership *o);

/* Calls fn for each maximal run of private granules, in address order (for dumps and
 * platform models). Stops early and returns fn's value when it is non-zero. */
int ownership_for_each_private(const struct ownership *o,
                               int (*fn)(void *opaque, gpa_t gpa, uint64_t len), void *opaque);

#endif
