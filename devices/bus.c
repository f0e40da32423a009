#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct bus {
        const char *name;
        struct bus_window *wins; /* sorted by base, non-overlapping */
        unsigned nr, cap;
        atomic_uint_fast64_t unhandled;
        struct ratelimit rl;
};

int bus_create(const char *name, struct bus **out)
{
        struct bus *bus = calloc(1, sizeof(*bus));
        if (!bus)
                return -ENOMEM;
        bus->name = name;
        ratelimit_init(&bus->rl, 1000000000ull, 5);
        *out = bus;
        return 0;
}

void bus_destroy(struct bus *bus)
{
        if (!bus)
                return;
        free(bus->wins);
        free(bus);
}

int bus_register(struct bus *bus, const struct bus_window *win, struct error *err)
{
        uint64_t end;
        unsigned pos = 0;

        if (!win->len || !range_end(win->base, win->len, &end))
                return error_set(err, -EINVAL, "%s: invalid window for %s at 0x%llx+0x%llx",
                                 bus->name, win->name, (unsigned long long)win->base,
                                 (unsigned long long)win->len);
        for (unsigned i = 0; i < bus->nr; i++) {
                const struct bus_window *w = &bus->wins[i];
                if (ranges_overlap(win->base, win->len, w->base, w->len))
                        return error_set(err, -EEXIST,
                                         "%s: %s at 0x%llx+0x%llx overlaps %s at 0x%llx+0x%llx",
                                         bus->name, win->name, (unsigned long long)win->base,
                                         (unsigned long long)win->len, w->name,
                                         (unsigned long long)w->base, (unsigned long long)w->len);
                if (w->base < win->base)
                        pos = i + 1;
        }
        if (bus->nr == bus->cap) {
                unsigned cap = bus->cap ? bus->cap * 2 : 8;
                struct bus_window *n = realloc(bus->wins, cap * sizeof(*n));
                if (!n)
                        return error_set(err, -ENOMEM, "out of memory");
                bus->wins = n;
                bus->cap = cap;
        }
        memmove(&bus->wins[pos + 1], &bus->wins[pos], (bus->nr - pos) * sizeof(*bus->wins));
        bus->wins[pos] = *win;
        bus->nr++;
        return 0;
}

static const struct bus_window *lookup(const struct bus *bus, uint64_t addr, uint32_t len)
{
        unsigned lo = 0, hi = bus->nr;

        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;
                const struct bus_window *w = &bus->wins[mid];
                if (addr < w->base)
                        hi = mid;
                else if (addr - w->base >= w->len)
                        lo = mid + 1;
                else
                        /* The whole access must fit: a straddling access is unhandled. */
                        return len <= w->len - (addr - w->base) ? w : NULL;
        }
        return NULL;
}

static void count_unhandled(struct bus *bus, const char *dir, uint64_t addr, uint32_t len)
{
        atomic_fetch_add(&bus->unhandled, 1);
        /* Guests probe absent hardware routinely (Linux writes port 0x80 as a delay), so
         * this is debug output, not a guest error. */
        if (log_enabled(LOG_LEVEL_DEBUG))
                LOG_GUEST(&bus->rl, "%s: unhandled %s of %u bytes at 0x%llx", bus->name, dir, len,
                          (unsigned long long)addr);
}

bool bus_read(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
        const struct bus_window *w = lookup(bus, addr, len);

        if (!w || !w->ops->read) {
                memset(data, 0xff, len);
                count_unhandled(bus, "read", addr, len);
                return false;
        }
        w->ops->read(w->opaque, addr - w->base, data, len);
        return true;
}

bool bus_write(struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
        const struct bus_window *w = lookup(bus, addr, len);

        if (!w || !w->ops->write) {
                count_unhandled(bus, "write", addr, len);
                return false;
        }
        w->ops->write(w->opaque, addr - w->base, data, len);
        return true;
}

uint64_t bus_unhandled_count(const struct bus *bus)
{
        return atomic_load(&((struct bus *)bus)->unhandled);
}

unsigned bus_window_count(const struct bus *bus)
{
        return bus->nr;
}

const struct bus_window *bus_window_at(const struct bus *bus, unsigned i)
{
        return i < bus->nr ? &bus->wins[i] : NULL;
}
