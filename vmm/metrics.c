#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"

/* The previous value of one counter, keyed "group.name": the value in the last line that
 * was written, and the one in the line being written (kept only if it gets out, so that
 * the increments of a line lost to a full disk are reported by the next one). */
struct prev_value {
        char *key;
        uint64_t value;
        uint64_t pending;
        bool has_pending;
};

struct metrics {
        struct event_loop *loop;
        metrics_collect_fn collect;
        void *opaque;
        bool configured;
        int fd;
        int timer_fd;
        struct vmm_metrics_config cfg;
        char *instance_id;
        struct prev_value *prev;
        size_t nr_prev, cap_prev;
        uint64_t missed;
        bool torn; /* the last line went out only in part (a full disk): end it first */
};

struct metrics_writer {
        struct metrics *m;
        char *buf;
        size_t len, cap;
        bool oom;
        char group[128];
        bool group_open;
        bool group_empty;
        bool absolute; /* counters as totals, the previous values untouched */
};

/* ---- the line buffer ---- */

static void put(struct metrics_writer *w, const char *s, size_t n)
{
        if (w->oom)
                return;
        if (w->len + n + 1 > w->cap) {
                size_t cap = w->cap ? w->cap : 4096;
                char *b;

                while (w->len + n + 1 > cap)
                        cap *= 2;
                b = realloc(w->buf, cap);
                if (!b) {
                        w->oom = true;
                        return;
                }
                w->buf = b;
                w->cap = cap;
        }
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = '\0';
}

static void puts_(struct metrics_writer *w, const char *s)
{
        put(w, s, strlen(s));
}

static void putf(struct metrics_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void putf(struct metrics_writer *w, const char *fmt, ...)
{
        char tmp[256];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n > 0)
                put(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string literal. */
static void put_string(struct metrics_writer *w, const char *s)
{
        puts_(w, "\"");
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '"' || c == '\\') {
                        char esc[2] = {'\\', (char)c};
                        put(w, esc, 2);
                } else if (c < 0x20) {
                        putf(w, "\\u%04x", c);
                } else {
                        put(w, (const char *)&c, 1);
                }
        }
        puts_(w, "\"");
}

/* ---- groups and values ---- */

static void end_group(struct metrics_writer *w)
{
        if (w->group_open)
                puts_(w, "}");
        w->group_open = false;
}

void metrics_group(struct metrics_writer *w, const char *fmt, ...)
{
        va_list ap;

        end_group(w);
        va_start(ap, fmt);
        vsnprintf(w->group, sizeof(w->group), fmt, ap);
        va_end(ap);
        puts_(w, ",");
        put_string(w, w->group);
        puts_(w, ":{");
        w->group_open = true;
        w->group_empty = true;
}

static void put_value(struct metrics_writer *w, const char *name, uint64_t value)
{
        if (!w->group_empty)
                puts_(w, ",");
        w->group_empty = false;
        put_string(w, name);
        putf(w, ":%llu", (unsigned long long)value);
}

static struct prev_value *find_prev(struct metrics *m, const char *key)
{
        for (size_t i = 0; i < m->nr_prev; i++)
                if (strcmp(m->prev[i].key, key) == 0)
                        return &m->prev[i];
        if (m->nr_prev == m->cap_prev) {
                size_t cap = m->cap_prev ? m->cap_prev * 2 : 256;
                struct prev_value *p = realloc(m->prev, cap * sizeof(*p));

                if (!p)
                        return NULL;
                m->prev = p;
                m->cap_prev = cap;
        }
        m->prev[m->nr_prev].key = strdup(key);
        if (!m->prev[m->nr_prev].key)
                return NULL;
        m->prev[m->nr_prev].value = 0;
        m->prev[m->nr_prev].has_pending = false;
        return &m->prev[m->nr_prev++];
}

void metrics_counter(struct metrics_writer *w, const char *name, uint64_t value)
{
        char key[256];
        struct prev_value *p;
        uint64_t delta = value;

        if (w->absolute) {
                put_value(w, name, value);
                return;
        }
        snprintf(key, sizeof(key), "%s.%s", w->group, name);
        p = find_prev(w->m, key);
        if (p) {
                /* A counter that went backwards (a device that was replaced) restarts. */
                delta = value >= p->value ? value - p->value : value;
                p->pending = value;
                p->has_pending = true;
        }
        put_value(w, name, delta);
}

void metrics_store(struct metrics_writer *w, const char *name, uint64_t value)
{
        put_value(w, name, value);
}

/* ---- Firecracker's names ---- */

void metrics_put_vm(struct metrics_writer *w, const struct vm_stats *st)
{
        static const struct vm_stats zero;

        if (!st)
                st = &zero;
        metrics_group(w, "vcpu");
        metrics_counter(w, "exit_io_in", st->exit_io_in);
        metrics_counter(w, "exit_io_out", st->exit_io_out);
        metrics_counter(w, "exit_mmio_read", st->exit_mmio_read);
        metrics_counter(w, "exit_mmio_write", st->exit_mmio_write);
        metrics_counter(w, "failures", st->failures);
        /* Firecracker's uart: read_count / write_count are bytes through RBR / THR. */
        metrics_group(w, "uart");
        metrics_counter(w, "read_count", st->serial.rx_bytes);
        metrics_counter(w, "write_count", st->serial.tx_bytes);
        metrics_counter(w, "missed_read_count", st->serial.missed_read_count);
        metrics_counter(w, "rate_limiter_dropped_bytes", st->serial.rate_limiter_dropped_bytes);
        metrics_group(w, "i8042");
        metrics_counter(w, "reset_count", st->i8042_resets);
        metrics_group(w, "vmm");
        metrics_store(w, "panic_count", 0);
        metrics_counter(w, "unhandled_pio_count", st->pio_unhandled);
        metrics_counter(w, "unhandled_mmio_count", st->mmio_unhandled);
        /* Ours: the confidential platform's activity (all 0 on an ordinary VM). */
        metrics_group(w, "confidential");
        metrics_store(w, "platform", st->cc_platform);
        metrics_store(w, "secure", st->cc.secure);
        metrics_counter(w, "platform_calls", st->cc.calls);
        metrics_counter(w, "failed_platform_calls", st->cc.failed_calls);
        metrics_counter(w, "shared_granules", st->cc.shared);
        metrics_counter(w, "unshared_granules", st->cc.unshared);
        metrics_counter(w, "secure_transitions", st->cc.secure_transitions);
        metrics_counter(w, "page_outs", st->cc.page_outs);
        metrics_counter(w, "page_ins", st->cc.page_ins);
        metrics_counter(w, "host_private_reads", st->cc.host_private_reads);
}

/* A device counter: its name and where it sits in the stats struct. */
struct field {
        const char *name;
        size_t off;
        uint8_t size; /* 4 or 8 */
        bool store;
};

#define F(type, member, name)                                                                      \
        {                                                                                          \
                name, offsetof(type, member), sizeof(((type *)0)->member), false                   \
        }
#define S(type, member, name)                                                                      \
        {                                                                                          \
                name, offsetof(type, member), sizeof(((type *)0)->member), true                    \
        }

static const struct field transport_fields[] = {
    F(struct virtio_mmio_stats, register_errors, "cfg_fails"),
    F(struct virtio_mmio_stats, needs_reset, "activate_fails"),
    F(struct virtio_mmio_stats, notifies, "queue_event_count"),
    F(struct virtio_mmio_stats, interrupts, "interrupt_count"),
};

/* Every device's refused guest-memory accesses (CC-7: per device and, summed, per VM). */
static const struct field mem_fields[] = {
    F(struct hostmem_stats, violations, "access_violations"),
    F(struct hostmem_stats, faults, "guest_memory_faults"),
};

static const struct field blk_fields[] = {
    F(struct virtio_blk_stats, read_count, "read_count"),
    F(struct virtio_blk_stats, write_count, "write_count"),
    F(struct virtio_blk_stats, flush_count, "flush_count"),
    F(struct virtio_blk_stats, get_id_count, "get_id_count"),
    F(struct virtio_blk_stats, discard_count, "discard_count"),
    F(struct virtio_blk_stats, write_zeroes_count, "write_zeroes_count"),
    F(struct virtio_blk_stats, read_bytes, "read_bytes"),
    F(struct virtio_blk_stats, write_bytes, "write_bytes"),
    F(struct virtio_blk_stats, io_errors, "execute_fails"),
    F(struct virtio_blk_stats, unsupported, "unsupported_count"),
    F(struct virtio_blk_stats, bad_requests, "invalid_reqs_count"),
    F(struct virtio_blk_stats, rate_limited, "rate_limiter_throttled_events"),
};

static const struct field net_fields[] = {
    F(struct virtio_net_stats, rx_bytes_count, "rx_bytes_count"),
    F(struct virtio_net_stats, rx_packets_count, "rx_packets_count"),
    F(struct virtio_net_stats, tx_bytes_count, "tx_bytes_count"),
    F(struct virtio_net_stats, tx_packets_count, "tx_packets_count"),
    F(struct virtio_net_stats, rx_dropped, "rx_dropped_count"),
    F(struct virtio_net_stats, tx_dropped, "tx_dropped_count"),
    F(struct virtio_net_stats, tx_malformed, "tx_malformed_frames"),
    F(struct virtio_net_stats, tap_read_fails, "tap_read_fails"),
    F(struct virtio_net_stats, tap_write_fails, "tap_write_fails"),
    F(struct virtio_net_stats, rx_rate_limited, "rx_rate_limiter_throttled"),
    F(struct virtio_net_stats, tx_rate_limited, "tx_rate_limiter_throttled"),
};

static const struct field vsock_fields[] = {
    F(struct virtio_vsock_stats, rx_bytes_count, "rx_bytes_count"),
    F(struct virtio_vsock_stats, tx_bytes_count, "tx_bytes_count"),
    F(struct virtio_vsock_stats, rx_packets_count, "rx_packets_count"),
    F(struct virtio_vsock_stats, tx_packets_count, "tx_packets_count"),
    F(struct virtio_vsock_stats, conns_added, "conns_added"),
    F(struct virtio_vsock_stats, conns_killed, "conns_killed"),
    F(struct virtio_vsock_stats, conns_removed, "conns_removed"),
    F(struct virtio_vsock_stats, rst_sent, "rst_sent"),
    F(struct virtio_vsock_stats, bad_packets, "bad_packets"),
    F(struct virtio_vsock_stats, rx_dropped_closing, "rx_dropped_closing"),
};

static const struct field balloon_fields[] = {
    F(struct virtio_balloon_stats, inflate_count, "inflate_count"),
    F(struct virtio_balloon_stats, deflate_count, "deflate_count"),
    F(struct virtio_balloon_stats, stats_updates_count, "stats_updates_count"),
    F(struct virtio_balloon_stats, released_bytes, "released_bytes"),
    F(struct virtio_balloon_stats, bad_requests, "event_fails"),
    F(struct virtio_balloon_stats, report_count, "free_page_report_count"),
    F(struct virtio_balloon_stats, report_freed, "free_page_report_freed"),
    F(struct virtio_balloon_stats, report_fails, "free_page_report_fails"),
    F(struct virtio_balloon_stats, report_kept, "free_page_report_kept"),
    F(struct virtio_balloon_stats, hint_count, "free_page_hint_count"),
    F(struct virtio_balloon_stats, hint_freed, "free_page_hint_freed"),
    F(struct virtio_balloon_stats, hint_fails, "free_page_hint_fails"),
    F(struct virtio_balloon_stats, hint_ignored, "free_page_hint_ignored"),
    S(struct virtio_balloon_stats, target_pages, "target_pages"),
    S(struct virtio_balloon_stats, actual_pages, "actual_pages"),
};

static const struct field rng_fields[] = {
    F(struct virtio_rng_stats, requests, "entropy_event_count"),
    F(struct virtio_rng_stats, bytes, "entropy_bytes"),
    F(struct virtio_rng_stats, rate_limited, "entropy_rate_limiter_throttled"),
    F(struct virtio_rng_stats, bad_requests, "entropy_event_fails"),
    F(struct virtio_rng_stats, host_errors, "host_rng_fails"),
};

/* Firecracker's pmem group (event_fails, queue_event_count), then ours. */
static const struct field pmem_fields[] = {
    F(struct virtio_pmem_stats, bad_requests, "event_fails"),
    F(struct virtio_pmem_stats, requests, "queue_event_count"),
    F(struct virtio_pmem_stats, flushes, "flush_count"),
    F(struct virtio_pmem_stats, flush_errors, "flush_fails"),
    F(struct virtio_pmem_stats, rate_limited, "rate_limiter_throttled_events"),
};

/* Ours (Firecracker's virtio-mem metrics are not in its document). */
static const struct field hotplug_fields[] = {
    F(struct virtio_mem_stats, plugs, "plug_count"),
    F(struct virtio_mem_stats, unplugs, "unplug_count"),
    F(struct virtio_mem_stats, unplug_alls, "unplug_all_count"),
    F(struct virtio_mem_stats, states, "state_count"),
    F(struct virtio_mem_stats, nacks, "nack_count"),
    F(struct virtio_mem_stats, errors, "error_count"),
    F(struct virtio_mem_stats, bad_requests, "event_fails"),
    S(struct virtio_mem_stats, plugged_size, "plugged_bytes"),
    S(struct virtio_mem_stats, requested_size, "requested_bytes"),
};

#undef F
#undef S

static const struct {
        enum vm_device_kind kind;
        const char *group;
        const struct field *fields;
        size_t nr;
} device_kinds[] = {
    {VM_DEVICE_BLOCK, "block", blk_fields, ARRAY_SIZE(blk_fields)},
    {VM_DEVICE_NET, "net", net_fields, ARRAY_SIZE(net_fields)},
    {VM_DEVICE_VSOCK, "vsock", vsock_fields, ARRAY_SIZE(vsock_fields)},
    {VM_DEVICE_BALLOON, "balloon", balloon_fields, ARRAY_SIZE(balloon_fields)},
    {VM_DEVICE_ENTROPY, "entropy", rng_fields, ARRAY_SIZE(rng_fields)},
    {VM_DEVICE_PMEM, "pmem", pmem_fields, ARRAY_SIZE(pmem_fields)},
    {VM_DEVICE_MEM, "memory_hotplug", hotplug_fields, ARRAY_SIZE(hotplug_fields)},
};

static uint64_t field_value(const void *base, const struct field *f)
{
        const uint8_t *p = (const uint8_t *)base + f->off;

        if (f->size == 4) {
                uint32_t v;
                memcpy(&v, p, 4);
                return v;
        }
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

/* One group: the fields of every device of kind k (all of them: the aggregate; one: a
 * per-device group), summed. */
static void put_fields(struct metrics_writer *w, const struct vm_device_stats *devs, unsigned n,
                       size_t k)
{
        for (size_t pass = 0; pass < 3; pass++) {
                const struct field *fields = pass == 2   ? device_kinds[k].fields
                                             : pass == 1 ? mem_fields
                                                         : transport_fields;
                size_t nr = pass == 2   ? device_kinds[k].nr
                            : pass == 1 ? ARRAY_SIZE(mem_fields)
                                        : ARRAY_SIZE(transport_fields);

                for (size_t f = 0; f < nr; f++) {
                        uint64_t sum = 0;

                        for (unsigned i = 0; i < n; i++) {
                                const void *base = pass == 2   ? (const void *)&devs[i].u
                                                   : pass == 1 ? (const void *)&devs[i].mem
                                                               : (const void *)&devs[i].transport;
                                if (devs[i].kind != device_kinds[k].kind)
                                        continue;
                                sum += field_value(base, &fields[f]);
                        }
                        if (fields[f].store)
                                metrics_store(w, fields[f].name, sum);
                        else
                                metrics_counter(w, fields[f].name, sum);
                }
        }
}

void metrics_put_devices(struct metrics_writer *w, const struct vm_device_stats *devs, unsigned n)
{
        uint64_t violations = 0;

        for (size_t k = 0; k < ARRAY_SIZE(device_kinds); k++) {
                metrics_group(w, "%s", device_kinds[k].group);
                put_fields(w, devs, n, k);
        }
        for (unsigned i = 0; i < n; i++)
                violations += devs[i].mem.violations;
        metrics_group(w, "confidential_devices");
        metrics_counter(w, "access_violations", violations);
        /* Per-device groups, "<group>_<id>", for the kinds that have ids (Firecracker's). */
        for (unsigned i = 0; i < n; i++) {
                if (devs[i].kind != VM_DEVICE_BLOCK && devs[i].kind != VM_DEVICE_NET &&
                    devs[i].kind != VM_DEVICE_PMEM)
                        continue;
                for (size_t k = 0; k < ARRAY_SIZE(device_kinds); k++) {
                        if (device_kinds[k].kind != devs[i].kind)
                                continue;
                        metrics_group(w, "%s_%s", device_kinds[k].group, devs[i].id);
                        put_fields(w, &devs[i], 1, k);
                }
        }
}

/* ---- the destination ---- */

static void on_timer(void *opaque, uint32_t events)
{
        struct metrics *m = opaque;
        struct error err = {0};
        uint64_t n;

        (void)events;
        if (read(m->timer_fd, &n, sizeof(n)) != sizeof(n))
                return;
        if (metrics_flush(m, &err))
                LOG_WARN("metrics: %s", err.msg);
}

int metrics_create(struct event_loop *loop, metrics_collect_fn collect, void *opaque,
                   struct metrics **out)
{
        struct metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->collect = collect;
        m->opaque = opaque;
        m->fd = -1;
        m->timer_fd = -1;
        *out = m;
        return 0;
}

void metrics_destroy(struct metrics *m)
{
        if (!m)
                return;
        if (m->timer_fd >= 0) {
                event_loop_remove(m->loop, m->timer_fd);
                close(m->timer_fd);
        }
        if (m->fd >= 0)
                close(m->fd);
        for (size_t i = 0; i < m->nr_prev; i++)
                free(m->prev[i].key);
        free(m->prev);
        free(m->instance_id);
        vmm_metrics_config_free(&m->cfg);
        free(m);
}

bool metrics_configured(const struct metrics *m)
{
        return m->configured;
}

uint64_t metrics_missed_count(const struct metrics *m)
{
        return m->missed;
}

int metrics_configure(struct metrics *m, const struct vmm_metrics_config *cfg,
                      const char *instance_id, struct error *err)
{
        struct itimerspec its = {.it_interval = {METRICS_PERIOD_S, 0},
                                 .it_value = {METRICS_PERIOD_S, 0}};
        int fd, r;

        if (m->configured)
                return error_set(err, -EALREADY, "Reinitialization of metrics not allowed.");
        fd = vmm_open_output("metrics", cfg->metrics_path, err);
        if (fd < 0)
                return fd;
        m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (m->timer_fd < 0 || timerfd_settime(m->timer_fd, 0, &its, NULL)) {
                r = error_set(err, -errno, "metrics timer: %s", strerror(errno));
                goto fail;
        }
        r = event_loop_add(m->loop, m->timer_fd, EPOLLIN, on_timer, m);
        if (r) {
                error_set(err, r, "metrics timer: %s", strerror(-r));
                goto fail;
        }
        if (vmm_metrics_config_copy(&m->cfg, cfg) ||
            (instance_id && !(m->instance_id = strdup(instance_id)))) {
                event_loop_remove(m->loop, m->timer_fd);
                r = error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        m->fd = fd;
        m->configured = true;
        return 0;
fail:
        close(fd);
        if (m->timer_fd >= 0)
                close(m->timer_fd);
        m->timer_fd = -1;
        return r;
}

/* The counters move on only with a line that was written. */
static void commit_counters(struct metrics *m, bool written)
{
        for (size_t i = 0; i < m->nr_prev; i++) {
                if (written && m->prev[i].has_pending)
                        m->prev[i].value = m->prev[i].pending;
                m->prev[i].has_pending = false;
        }
}

int metrics_flush(struct metrics *m, struct error *err)
{
        struct metrics_writer w = {.m = m};
        struct timespec ts;
        ssize_t n;
        int r = 0;

        if (!m->configured)
                return 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        putf(&w, "{\"utc_timestamp_ms\":%llu",
             (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000);
        if (m->cfg.emit_id) {
                puts_(&w, ",\"id\":");
                put_string(&w, m->instance_id ? m->instance_id : "anonymous-instance");
        }
        if (m->cfg.nr_properties) {
                puts_(&w, ",\"properties\":{");
                for (unsigned i = 0; i < m->cfg.nr_properties; i++) {
                        if (i)
                                puts_(&w, ",");
                        put_string(&w, m->cfg.properties[i].key);
                        puts_(&w, ":");
                        put_string(&w, m->cfg.properties[i].value);
                }
                puts_(&w, "}");
        }
        m->collect(m->opaque, &w);
        end_group(&w);
        puts_(&w, "}\n");
        if (w.oom) {
                m->missed++;
                commit_counters(m, false);
                free(w.buf);
                return error_set(err, -ENOMEM, "metrics: out of memory");
        }
        /* A line written in part (the disk filled up in the middle of it) is ended before
         * the next one, which would otherwise be glued to it and unreadable too. */
        n = fd_write_line(m->fd, &m->torn, w.buf, w.len);
        commit_counters(m, n == (ssize_t)w.len);
        if (n != (ssize_t)w.len) {
                m->missed++;
                r = error_set(err, n < 0 ? (int)n : -EAGAIN, "metrics: cannot write to '%s': %s",
                              m->cfg.metrics_path, n < 0 ? strerror((int)-n) : "short write");
        }
        free(w.buf);
        return r;
}

int metrics_read(struct metrics *m, char **json)
{
        struct metrics_writer w = {.m = m, .absolute = true};
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        putf(&w, "{\"utc_timestamp_ms\":%llu",
             (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000);
        m->collect(m->opaque, &w);
        end_group(&w);
        puts_(&w, "}");
        if (w.oom) {
                free(w.buf);
                return -ENOMEM;
        }
        *json = w.buf;
        return 0;
}
