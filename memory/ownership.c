#include "ownership.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct own_region {
        gpa_t gpa;
        uint64_t granules;
        uint64_t first; /* index of its first granule in the map */
        uint64_t bytes; /* granules * OWNERSHIP_GRANULE */
};

struct ownership {
        struct ownership_head_ head; /* first: the inline fast path reads it (ownership.h) */
        unsigned nr_regions;
        struct own_region regions[GUEST_MEM_MAX_REGIONS];
        uint64_t granules;
        pthread_mutex_t lock; /* serialises transitions */
        pthread_cond_t unpinned;
        atomic_uint_fast64_t generation;
        atomic_uint_fast64_t nr_private;
        void (*progress)(void *opaque); /* ownership_set_progress */
        void *progress_opaque;
};

/* ---- short accesses: per-thread slots (ownership.h) ---- */

#define ACCESS_SLOTS 256

static struct ownership_slot_ slots[ACCESS_SLOTS];
static atomic_uint slots_used; /* high-water mark: the slots a transition looks at */
_Thread_local struct ownership_slot_ *ownership_my_slot_;
static _Thread_local bool no_slot;
static atomic_bool asymmetric; /* membarrier registered: threads get slots */
static pthread_key_t slot_key;
static bool slot_key_ok;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void release_slot(void *p)
{
        struct ownership_slot_ *slot = p;

        atomic_store(&slot->in_use, false);
}

static void slots_init(void)
{
        long q = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

        if (q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
            syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
                atomic_store(&asymmetric, true);
        slot_key_ok = pthread_key_create(&slot_key, release_slot) == 0;
}

/* This thread's slot, taken on its first short access and given back when it exits; NULL
 * when all are taken, or without membarrier (the access then falls back to a pin). */
static struct ownership_slot_ *thread_slot(void)
{
        if (ownership_my_slot_ || no_slot || !slot_key_ok ||
            !atomic_load_explicit(&asymmetric, memory_order_relaxed))
                return ownership_my_slot_;
        for (unsigned i = 0; i < ACCESS_SLOTS; i++) {
                bool free_ = false;

                if (atomic_load_explicit(&slots[i].in_use, memory_order_relaxed) ||
                    !atomic_compare_exchange_strong(&slots[i].in_use, &free_, true))
                        continue;
                if (pthread_setspecific(slot_key, &slots[i])) {
                        atomic_store(&slots[i].in_use, false);
                        break;
                }
                for (unsigned hw = atomic_load(&slots_used); hw < i + 1;)
                        if (atomic_compare_exchange_weak(&slots_used, &hw, i + 1))
                                break;
                ownership_my_slot_ = &slots[i];
                return ownership_my_slot_;
        }
        no_slot = true;
        return NULL;
}

/* A transition to private: once the bits are flipped, every short access to o that could
 * have missed them is waited for. The membarrier orders every thread's slot announcement
 * and bit check against our flip (the accessor side is only a compiler barrier). */
static void wait_short_accesses(struct ownership *o)
{
        unsigned n;

        /* Without membarrier no thread has a slot: every short access is a pin. */
        if (!atomic_load(&asymmetric))
                return;
        if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)) {
                /* Registered, so this cannot fail; if it did, an access could slip past the
                 * transition: stop rather than risk it. */
                perror("ownership: membarrier");
                abort();
        }
        n = atomic_load(&slots_used);
        for (unsigned i = 0; i < n; i++) {
                struct ownership_slot_ *slot = &slots[i];
                uint64_t v = atomic_load_explicit(&slot->seq, memory_order_acquire);

                if (!(v & 1) || atomic_load_explicit(&slot->map, memory_order_relaxed) != o)
                        continue;
                /* Any change of seq ends that access (a later one saw the flipped bits). */
                while (atomic_load_explicit(&slot->seq, memory_order_acquire) == v)
                        sched_yield();
        }
}

int ownership_create(const struct guest_mem *mem, bool all_private, struct ownership **out)
{
        struct ownership *o = calloc(1, sizeof(*o));
        uint64_t words;

        pthread_once(&slots_once, slots_init);
        if (!o)
                return -ENOMEM;
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region r = guest_mem_region_get(mem, i);
                o->regions[i] =
                    (struct own_region){.gpa = r.gpa,
                                        .granules = r.size / OWNERSHIP_GRANULE,
                                        .first = o->granules,
                                        .bytes = r.size / OWNERSHIP_GRANULE * OWNERSHIP_GRANULE};
                o->granules += r.size / OWNERSHIP_GRANULE;
        }
        o->nr_regions = guest_mem_region_count(mem);
        if (o->nr_regions) { /* (calloc left bytes 0 otherwise: no access is quick) */
                o->head.gpa = o->regions[0].gpa;
                o->head.bytes = o->regions[0].bytes;
        }
        words = (o->granules + 63) / 64;
        /* calloc of large arrays maps zero pages: only touched parts become resident. */
        o->head.bits = calloc(words, sizeof(*o->head.bits));
        o->head.pins = calloc(o->granules, sizeof(*o->head.pins));
        if (!o->head.bits || !o->head.pins) {
                ownership_destroy(o);
                return -ENOMEM;
        }
        pthread_mutex_init(&o->lock, NULL);
        pthread_cond_init(&o->unpinned, NULL);
        if (all_private && ownership_set_all(o, true)) {
                ownership_destroy(o);
                return -ENOMEM;
        }
        *out = o;
        return 0;
}

void ownership_destroy(struct ownership *o)
{
        if (!o)
                return;
        free((void *)o->head.bits);
        free((void *)o->head.pins);
        pthread_mutex_destroy(&o->lock);
        pthread_cond_destroy(&o->unpinned);
        free(o);
}

/* Granule indices [*first, *first + *count) covering [gpa, gpa+len); false if not RAM. */
static bool granule_span(const struct ownership *o, gpa_t gpa, uint64_t len, uint64_t *first,
                         uint64_t *count)
{
        uint64_t end;

        if (!range_end(gpa, len, &end))
                return false;
        /* The first region (its granules come first) without the loop: data buffers. */
        if (gpa >= o->head.gpa && end - o->head.gpa <= o->head.bytes) {
                *first = (gpa - o->head.gpa) / OWNERSHIP_GRANULE;
                *count = len ? (end - 1 - o->head.gpa) / OWNERSHIP_GRANULE - *first + 1 : 0;
                return true;
        }
        for (unsigned i = 0; i < o->nr_regions; i++) {
                const struct own_region *r = &o->regions[i];
                uint64_t rend = r->gpa + r->granules * OWNERSHIP_GRANULE;
                if (gpa < r->gpa || end > rend)
                        continue;
                *first = r->first + (gpa - r->gpa) / OWNERSHIP_GRANULE;
                *count = len ? (end - 1 - r->gpa) / OWNERSHIP_GRANULE + r->first - *first + 1 : 0;
                return true;
        }
        return false;
}

/* The common case of granule_span: [gpa, gpa+len) inside one granule of the first region
 * (ring areas, a status byte, a page-aligned 4 KiB buffer), whose index is *g. */
static inline bool one_granule(const struct ownership *o, gpa_t gpa, uint64_t len, uint64_t *g)
{
        return ownership_one_granule_(&o->head, gpa, len, g);
}

static bool bit(const struct ownership *o, uint64_t g)
{
        /* seq_cst: a pin's increment and this load need no fence between them (below). */
        return ownership_bit_(&o->head, g);
}

/* Whether any granule in [first, first+count) is private; a word of the map at a time. */
static bool any_set(const struct ownership *o, uint64_t first, uint64_t count)
{
        uint64_t g = first, end = first + count;

        while (g < end) {
                uint64_t lo = g % 64, n = 64 - lo < end - g ? 64 - lo : end - g;
                uint64_t mask = (n == 64 ? ~0ull : (1ull << n) - 1) << lo;

                /* seq_cst, as bit(). */
                if (atomic_load_explicit(&o->head.bits[g / 64], memory_order_seq_cst) & mask)
                        return true;
                g += n;
        }
        return false;
}

bool ownership_is_shared(const struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (one_granule(o, gpa, len, &first))
                return !bit(o, first);
        return granule_span(o, gpa, len, &first, &count) && !any_set(o, first, count);
}

bool ownership_any_private(const struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (one_granule(o, gpa, len, &first))
                return bit(o, first);
        return granule_span(o, gpa, len, &first, &count) && any_set(o, first, count);
}

static inline void unpin_span(struct ownership *o, uint64_t first, uint64_t count)
{
        bool drained = false;

        for (uint64_t g = first; g < first + count; g++)
                if (atomic_fetch_sub(&o->head.pins[g], 1) == 1)
                        drained = true;
        if (drained && atomic_load(&o->head.waiters))
                ownership_wake_(o);
}

void ownership_wake_(struct ownership *o)
{
        pthread_mutex_lock(&o->lock);
        pthread_cond_broadcast(&o->unpinned);
        pthread_mutex_unlock(&o->lock);
}

static inline int pin_span(struct ownership *o, uint64_t first, uint64_t count)
{
        /* Register first, check second; a transition flips bits first, checks pins second,
         * so one of the two always sees the other: the increments and the bit loads are
         * sequentially consistent (the transition has a fence between its two steps). */
        for (uint64_t g = first; g < first + count; g++)
                atomic_fetch_add(&o->head.pins[g], 1);
        if (count == 1 ? bit(o, first) : any_set(o, first, count)) {
                unpin_span(o, first, count);
                return -EACCES;
        }
        return 0;
}

int ownership_pin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (one_granule(o, gpa, len, &first))
                return pin_span(o, first, 1);
        if (!granule_span(o, gpa, len, &first, &count))
                return -EFAULT;
        return pin_span(o, first, count);
}

/* Announces a short access in slot, then checks [first, first+count): the transition flips
 * bits, makes every thread pass a barrier, then looks at the slots. (ownership.h's inline
 * fast path does the same for one granule.) */
static int announce_and_check(struct ownership *o, struct ownership_slot_ *slot, uint64_t first,
                              uint64_t count)
{
        uint64_t v = atomic_load_explicit(&slot->seq, memory_order_relaxed);

        atomic_store_explicit(&slot->map, o, memory_order_relaxed);
        atomic_store_explicit(&slot->seq, v + 1, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst);
        if (any_set(o, first, count)) {
                atomic_store_explicit(&slot->seq, v + 2, memory_order_release);
                return -EACCES;
        }
        return 0;
}

/* Everything but the inline common case (ownership_quick_begin) as well: ranges over
 * several granules or in another region, non-RAM, a thread without a slot yet. */
int ownership_access_begin(struct ownership *o, gpa_t gpa, uint64_t len, struct ownership_access *a)
{
        struct ownership_quick q;
        struct ownership_slot_ *slot;
        int r = ownership_quick_begin(o, gpa, len, &q);

        if (r == 0) {
                a->slot = q.slot;
                a->ended = q.ended;
                return 0;
        }
        if (r < 0)
                return r;
        a->slot = NULL;
        if (!granule_span(o, gpa, len, &a->first, &a->count))
                return -EFAULT;
        slot = thread_slot();
        if (!slot)
                return pin_span(o, a->first, a->count);
        r = announce_and_check(o, slot, a->first, a->count);
        if (r == 0) {
                a->slot = slot;
                a->ended = atomic_load_explicit(&slot->seq, memory_order_relaxed) + 1;
        }
        return r;
}

void ownership_access_end(struct ownership *o, struct ownership_access *a)
{
        if (a->slot)
                ownership_quick_end(&(struct ownership_quick){.slot = a->slot, .ended = a->ended});
        else
                unpin_span(o, a->first, a->count);
}

void ownership_unpin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (one_granule(o, gpa, len, &first))
                unpin_span(o, first, 1);
        else if (granule_span(o, gpa, len, &first, &count))
                unpin_span(o, first, count);
}

static bool pinned(struct ownership *o, uint64_t first, uint64_t count)
{
        for (uint64_t g = first; g < first + count; g++)
                if (atomic_load(&o->head.pins[g]))
                        return true;
        return false;
}

/* Sets or clears the bits of [first, first+count); returns how many changed. */
static uint64_t flip(struct ownership *o, uint64_t first, uint64_t count, bool private_)
{
        uint64_t changed = 0;

        for (uint64_t g = first; g < first + count; g++) {
                uint64_t mask = 1ull << (g % 64);
                uint64_t old = private_ ? atomic_fetch_or(&o->head.bits[g / 64], mask)
                                        : atomic_fetch_and(&o->head.bits[g / 64], ~mask);
                if (!!(old & mask) != private_)
                        changed++;
        }
        return changed;
}

static int transition(struct ownership *o, uint64_t first, uint64_t count, bool private_)
{
        uint64_t changed;

        pthread_mutex_lock(&o->lock);
        changed = flip(o, first, count, private_);
        atomic_thread_fence(memory_order_seq_cst);
        if (private_) {
                atomic_fetch_add(&o->nr_private, changed);
                /* Accesses that started before the flip finish on shared memory. */
                wait_short_accesses(o);
                atomic_fetch_add(&o->head.waiters, 1);
                while (pinned(o, first, count)) {
                        struct timespec ts;

                        if (o->progress) {
                                pthread_mutex_unlock(&o->lock);
                                o->progress(o->progress_opaque);
                                pthread_mutex_lock(&o->lock);
                                if (!pinned(o, first, count))
                                        break;
                        }
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 1000000;
                        if (ts.tv_nsec >= 1000000000) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000;
                        }
                        pthread_cond_timedwait(&o->unpinned, &o->lock, &ts);
                }
                atomic_fetch_sub(&o->head.waiters, 1);
        } else {
                atomic_fetch_sub(&o->nr_private, changed);
        }
        atomic_fetch_add(&o->generation, 1);
        pthread_mutex_unlock(&o->lock);
        return 0;
}

static int checked_span(const struct ownership *o, gpa_t gpa, uint64_t len, uint64_t *first,
                        uint64_t *count)
{
        if (len == 0 || !is_aligned(gpa, OWNERSHIP_GRANULE) || !is_aligned(len, OWNERSHIP_GRANULE))
                return -EINVAL;
        return granule_span(o, gpa, len, first, count) ? 0 : -EFAULT;
}

int ownership_make_private(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;
        int r = checked_span(o, gpa, len, &first, &count);

        return r ? r : transition(o, first, count, true);
}

int ownership_make_shared(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;
        int r = checked_span(o, gpa, len, &first, &count);

        return r ? r : transition(o, first, count, false);
}

int ownership_set_all(struct ownership *o, bool private_)
{
        for (unsigned i = 0; i < o->nr_regions; i++) {
                int r = transition(o, o->regions[i].first, o->regions[i].granules, private_);
                if (r)
                        return r;
        }
        return 0;
}

void ownership_set_progress(struct ownership *o, void (*progress)(void *opaque), void *opaque)
{
        o->progress = progress;
        o->progress_opaque = opaque;
}

uint64_t ownership_generation(const struct ownership *o)
{
        return atomic_load(&((struct ownership *)o)->generation);
}

uint64_t ownership_private_granules(const struct ownership *o)
{
        return atomic_load(&((struct ownership *)o)->nr_private);
}

uint64_t ownership_granules(const struct ownership *o)
{
        return o->granules;
}

int ownership_for_each_private(const struct ownership *o,
                               int (*fn)(void *opaque, gpa_t gpa, uint64_t len), void *opaque)
{
        for (unsigned i = 0; i < o->nr_regions; i++) {
                const struct own_region *r = &o->regions[i];
                uint64_t g = 0;

                while (g < r->granules) {
                        uint64_t start;
                        int ret;

                        if (!bit(o, r->first + g)) {
                                g++;
                                continue;
                        }
                        start = g;
                        while (g < r->granules && bit(o, r->first + g))
                                g++;
                        ret = fn(opaque, r->gpa + start * OWNERSHIP_GRANULE,
                                 (g - start) * OWNERSHIP_GRANULE);
                        if (ret)
                                return ret;
                }
        }
        return 0;
}
