#include "ownership.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct own_region {
        gpa_t gpa;
        uint64_t granules;
        uint64_t first; /* index of its first granule in the map */
};

struct ownership {
        unsigned nr_regions;
        struct own_region regions[GUEST_MEM_MAX_REGIONS];
        uint64_t granules;
        _Atomic uint64_t *bits; /* 1 = private */
        _Atomic uint32_t *pins; /* host accesses under way, per granule */
        pthread_mutex_t lock;   /* serialises transitions */
        pthread_cond_t unpinned;
        atomic_uint waiters; /* transitions waiting for pins to drain */
        atomic_uint_fast64_t generation;
        atomic_uint_fast64_t nr_private;
};

int ownership_create(const struct guest_mem *mem, bool all_private, struct ownership **out)
{
        struct ownership *o = calloc(1, sizeof(*o));
        uint64_t words;

        if (!o)
                return -ENOMEM;
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region r = guest_mem_region_get(mem, i);
                o->regions[i] = (struct own_region){
                    .gpa = r.gpa, .granules = r.size / OWNERSHIP_GRANULE, .first = o->granules};
                o->granules += r.size / OWNERSHIP_GRANULE;
        }
        o->nr_regions = guest_mem_region_count(mem);
        words = (o->granules + 63) / 64;
        /* calloc of large arrays maps zero pages: only touched parts become resident. */
        o->bits = calloc(words, sizeof(*o->bits));
        o->pins = calloc(o->granules, sizeof(*o->pins));
        if (!o->bits || !o->pins) {
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
        free((void *)o->bits);
        free((void *)o->pins);
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

static bool bit(const struct ownership *o, uint64_t g)
{
        return (atomic_load_explicit(&o->bits[g / 64], memory_order_acquire) >> (g % 64)) & 1;
}

/* Whether any granule in [first, first+count) is private; whole words at a time. */
static bool any_set(const struct ownership *o, uint64_t first, uint64_t count)
{
        uint64_t g = first, end = first + count;

        while (g < end) {
                if (g % 64 == 0 && end - g >= 64) {
                        if (atomic_load_explicit(&o->bits[g / 64], memory_order_acquire))
                                return true;
                        g += 64;
                } else {
                        if (bit(o, g))
                                return true;
                        g++;
                }
        }
        return false;
}

bool ownership_is_shared(const struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        return granule_span(o, gpa, len, &first, &count) && !any_set(o, first, count);
}

bool ownership_any_private(const struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        return granule_span(o, gpa, len, &first, &count) && any_set(o, first, count);
}

static void unpin_span(struct ownership *o, uint64_t first, uint64_t count)
{
        bool drained = false;

        for (uint64_t g = first; g < first + count; g++)
                if (atomic_fetch_sub(&o->pins[g], 1) == 1)
                        drained = true;
        if (drained && atomic_load(&o->waiters)) {
                pthread_mutex_lock(&o->lock);
                pthread_cond_broadcast(&o->unpinned);
                pthread_mutex_unlock(&o->lock);
        }
}

int ownership_pin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (!granule_span(o, gpa, len, &first, &count))
                return -EFAULT;
        /* Register first, check second; a transition flips bits first, checks pins second
         * (all sequentially consistent), so one of the two always sees the other. */
        for (uint64_t g = first; g < first + count; g++)
                atomic_fetch_add(&o->pins[g], 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (any_set(o, first, count)) {
                unpin_span(o, first, count);
                return -EACCES;
        }
        return 0;
}

void ownership_unpin(struct ownership *o, gpa_t gpa, uint64_t len)
{
        uint64_t first, count;

        if (granule_span(o, gpa, len, &first, &count))
                unpin_span(o, first, count);
}

static bool pinned(struct ownership *o, uint64_t first, uint64_t count)
{
        for (uint64_t g = first; g < first + count; g++)
                if (atomic_load(&o->pins[g]))
                        return true;
        return false;
}

/* Sets or clears the bits of [first, first+count); returns how many changed. */
static uint64_t flip(struct ownership *o, uint64_t first, uint64_t count, bool private_)
{
        uint64_t changed = 0;

        for (uint64_t g = first; g < first + count; g++) {
                uint64_t mask = 1ull << (g % 64);
                uint64_t old = private_ ? atomic_fetch_or(&o->bits[g / 64], mask)
                                        : atomic_fetch_and(&o->bits[g / 64], ~mask);
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
                atomic_fetch_add(&o->waiters, 1);
                while (pinned(o, first, count)) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 1000000;
                        if (ts.tv_nsec >= 1000000000) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000;
                        }
                        pthread_cond_timedwait(&o->unpinned, &o->lock, &ts);
                }
                atomic_fetch_sub(&o->waiters, 1);
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
