#include "balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/log.h"

enum { INFLATEQ = 0, DEFLATEQ = 1, STATSQ = 2 };

#define CONFIG_LEN        8 /* le32 num_pages, le32 actual */
#define CONFIG_ACTUAL     4
#define STAT_SIZE         10  /* le16 tag, le64 val (packed) */
#define STATS_MAX_ENTRIES 256 /* parsed per buffer at most (Linux sends 16) */
#define PAGES_PER_MIB     (MiB(1) / VIRTIO_BALLOON_PAGE_SIZE)

struct virtio_balloon {
        struct virtio_device vd;
        char name[16];
        struct event_loop *loop;
        int timer_fd; /* -1: no statistics queue */
        uint32_t interval_s;
        uint32_t num_pages; /* configuration space, host order */
        uint32_t actual;
        bool active;     /* DRIVER_OK seen, no reset since */
        bool stats_held; /* the driver's statistics buffer waits in stats_head */
        uint16_t stats_head;
        struct virtio_balloon_stats stats;
        struct ratelimit rl;
        struct virtq_chain chain;
};

/* ---- configuration space ---- */

static void balloon_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_balloon *b = vd->priv;
        uint8_t cfg[CONFIG_LEN];

        put_le32(cfg, b->num_pages);
        put_le32(cfg + CONFIG_ACTUAL, b->actual);
        virtio_config_copy(cfg, sizeof(cfg), off, data, len);
}

/* Only `actual` is the driver's to write; num_pages belongs to the device. */
static void balloon_config_write(struct virtio_device *vd, uint32_t off, const uint8_t *data,
                                 uint32_t len)
{
        struct virtio_balloon *b = vd->priv;
        uint8_t actual[4];

        if (off < CONFIG_ACTUAL || off > CONFIG_LEN || len > CONFIG_LEN - off) {
                b->stats.bad_requests++;
                LOG_GUEST(&b->rl, "%s: configuration write outside `actual` (offset %u, %u bytes)",
                          b->name, off, len);
                return;
        }
        put_le32(actual, b->actual);
        memcpy(actual + (off - CONFIG_ACTUAL), data, len);
        b->actual = get_le32(actual);
}

/* ---- statistics timer ---- */

static void timer_set(struct virtio_balloon *b, uint32_t seconds)
{
        struct itimerspec its = {.it_interval = {.tv_sec = seconds},
                                 .it_value = {.tv_sec = seconds}};

        if (b->timer_fd >= 0 && timerfd_settime(b->timer_fd, 0, &its, NULL))
                LOG_ERROR("%s: statistics timer: %s", b->name, strerror(errno));
}

static bool stats_running(const struct virtio_balloon *b)
{
        const struct virtq *q = &b->vd.vqs[STATSQ];

        return b->active && b->timer_fd >= 0 &&
               virtio_has_feature(&b->vd, VIRTIO_BALLOON_F_STATS_VQ) && virtq_live(q);
}

/* Hands the held statistics buffer back so that the driver refills it. Caller holds the
 * lock. */
static void stats_complete(struct virtio_balloon *b)
{
        struct virtq *q = &b->vd.vqs[STATSQ];

        if (!b->stats_held || !stats_running(b))
                return;
        b->stats_held = false;
        if (virtq_push(q, b->stats_head, 0))
                virtio_needs_reset(&b->vd);
        else
                virtio_signal_used(&b->vd, STATSQ);
}

static void on_timer(void *opaque, uint32_t events)
{
        struct virtio_balloon *b = opaque;
        uint64_t expirations;

        (void)events;
        /* Drain the expiration count, or the level-triggered loop calls us again. */
        if (read(b->timer_fd, &expirations, sizeof(expirations)) != sizeof(expirations))
                return;
        pthread_mutex_lock(&b->vd.lock);
        stats_complete(b);
        pthread_mutex_unlock(&b->vd.lock);
}

/* ---- queues ---- */

/* Releases [gpa, gpa+len) (whole pages the accessor accepted one by one). A run the
 * accessor refuses as a whole (ownership changed meanwhile, two regions) is retried page by
 * page so that only the refused pages are lost. */
static void release(struct virtio_balloon *b, gpa_t gpa, uint64_t len)
{
        if (len == 0)
                return;
        if (hostmem_discard(b->vd.mem, gpa, len) == 0) {
                b->stats.released_bytes += len;
                return;
        }
        if (len == VIRTIO_BALLOON_PAGE_SIZE) {
                b->stats.invalid_pfns++;
                return;
        }
        for (uint64_t off = 0; off < len; off += VIRTIO_BALLOON_PAGE_SIZE)
                release(b, gpa + off, VIRTIO_BALLOON_PAGE_SIZE);
}

/* Reads the request's PFNs and releases the valid ones, coalescing consecutive pages into
 * one discard. Returns false when the request is malformed. */
static bool inflate(struct virtio_balloon *b, struct virtq *q)
{
        uint32_t len = b->chain.readable, nr = len / 4;
        uint64_t invalid = b->stats.invalid_pfns;
        gpa_t run = 0;
        uint64_t run_len = 0;
        uint8_t buf[1024];

        if (b->chain.writable || len % 4 || nr > VIRTIO_BALLOON_MAX_PFNS_PER_REQUEST)
                return false;
        for (uint32_t off = 0; off < len; off += (uint32_t)sizeof(buf)) {
                uint32_t n = len - off < sizeof(buf) ? len - off : (uint32_t)sizeof(buf);

                if (virtq_chain_read(q, &b->chain, off, buf, n) != n) {
                        release(b, run, run_len);
                        return false;
                }
                for (uint32_t i = 0; i < n; i += 4) {
                        gpa_t gpa = (gpa_t)get_le32(buf + i) * VIRTIO_BALLOON_PAGE_SIZE;

                        if (!hostmem_check(b->vd.mem, gpa, VIRTIO_BALLOON_PAGE_SIZE)) {
                                b->stats.invalid_pfns++;
                                continue;
                        }
                        if (run_len && gpa == run + run_len) {
                                run_len += VIRTIO_BALLOON_PAGE_SIZE;
                                continue;
                        }
                        release(b, run, run_len);
                        run = gpa;
                        run_len = VIRTIO_BALLOON_PAGE_SIZE;
                }
        }
        release(b, run, run_len);
        if (b->stats.invalid_pfns != invalid)
                LOG_GUEST(&b->rl,
                          "%s: %llu inflated PFNs not releasable (outside guest RAM) ignored",
                          b->name, (unsigned long long)(b->stats.invalid_pfns - invalid));
        return true;
}

/* Nothing to do on the host: a released page comes back zero-filled when touched. */
static bool deflate(struct virtio_balloon *b)
{
        uint32_t len = b->chain.readable;

        return !b->chain.writable && len % 4 == 0 && len / 4 <= VIRTIO_BALLOON_MAX_PFNS_PER_REQUEST;
}

/* Caller holds the lock. */
static void process_pages(struct virtio_balloon *b, unsigned qi)
{
        struct virtq *q = &b->vd.vqs[qi];
        enum virtq_pop_result r;
        bool used = false;

        do {
                while ((r = virtq_pop(q, &b->chain)) != VIRTQ_EMPTY) {
                        bool ok;

                        if (r == VIRTQ_BROKEN)
                                break;
                        ok = r == VIRTQ_CHAIN && (qi == INFLATEQ ? inflate(b, q) : deflate(b));
                        if (!ok) {
                                b->stats.bad_requests++;
                                LOG_GUEST(&b->rl, "%s: malformed %s request", b->name,
                                          qi == INFLATEQ ? "inflate" : "deflate");
                        }
                        if (qi == INFLATEQ)
                                b->stats.inflate_count++;
                        else
                                b->stats.deflate_count++;
                        if (virtq_push(q, b->chain.head, 0))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
        if (q->broken)
                virtio_needs_reset(&b->vd);
        else if (used)
                virtio_signal_used(&b->vd, qi);
}

/* Records the tag/value pairs of the buffer just received (a fresh snapshot). */
static void parse_stats(struct virtio_balloon *b, struct virtq *q)
{
        struct virtio_balloon_guest_stats g = {0};
        uint32_t nr = b->chain.readable / STAT_SIZE;
        uint8_t e[STAT_SIZE];

        if (nr > STATS_MAX_ENTRIES)
                nr = STATS_MAX_ENTRIES;
        for (uint32_t i = 0; i < nr; i++) {
                uint16_t tag;

                if (virtq_chain_read(q, &b->chain, i * STAT_SIZE, e, sizeof(e)) != sizeof(e)) {
                        b->stats.bad_requests++;
                        return;
                }
                tag = get_le16(e);
                if (tag >= VIRTIO_BALLOON_S_NR)
                        continue;
                g.values[tag] = get_le64(e + 2);
                g.valid |= 1u << tag;
        }
        b->stats.guest = g;
        b->stats.stats_updates_count++;
}

/* The driver posts one buffer and gets it back at the next tick. Caller holds the lock. */
static void process_stats(struct virtio_balloon *b)
{
        struct virtq *q = &b->vd.vqs[STATSQ];
        enum virtq_pop_result r;
        bool used = false;

        do {
                while (!q->broken && (r = virtq_pop(q, &b->chain)) != VIRTQ_EMPTY) {
                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_BAD_CHAIN) {
                                b->stats.bad_requests++;
                                used |= virtq_push(q, b->chain.head, 0) == 0;
                                continue;
                        }
                        if (b->stats_held) {
                                /* Only one buffer is expected: return the older one. */
                                LOG_GUEST(&b->rl, "%s: a second statistics buffer", b->name);
                                used |= virtq_push(q, b->stats_head, 0) == 0;
                        }
                        parse_stats(b, q);
                        b->stats_held = true;
                        b->stats_head = b->chain.head;
                }
        } while (!q->broken && virtq_arm(q));
        if (q->broken) {
                b->stats_held = false;
                virtio_needs_reset(&b->vd);
        } else if (used) {
                virtio_signal_used(&b->vd, STATSQ);
        }
}

static void balloon_notify(struct virtio_device *vd, unsigned q)
{
        struct virtio_balloon *b = vd->priv;

        if (q == STATSQ) {
                if (stats_running(b))
                        process_stats(b);
                return;
        }
        process_pages(b, q);
}

static int balloon_activate(struct virtio_device *vd)
{
        struct virtio_balloon *b = vd->priv;

        b->active = true;
        /* Linux primes the statistics queue and kicks it before DRIVER_OK, a notification
         * the transport drops: look at every queue once now. */
        for (unsigned q = INFLATEQ; q <= DEFLATEQ; q++)
                if (vd->vqs[q].ready)
                        process_pages(b, q);
        if (stats_running(b)) {
                process_stats(b);
                timer_set(b, b->interval_s);
        }
        return 0;
}

static void balloon_reset(struct virtio_device *vd)
{
        struct virtio_balloon *b = vd->priv;

        b->active = false;
        b->stats_held = false;
        b->actual = 0; /* a reset guest holds no balloon pages */
        timer_set(b, 0);
}

/* Snapshots: the target, the driver's `actual`, the statistics interval, the statistics
 * buffer the device holds (its chain was popped: it must come back after a restore) and the
 * latest statistics. */
static void balloon_save(struct virtio_device *vd, struct snapbuf_writer *w)
{
        struct virtio_balloon *b = vd->priv;

        snapbuf_put_u32(w, b->num_pages);
        snapbuf_put_u32(w, b->actual);
        snapbuf_put_u32(w, b->interval_s);
        snapbuf_put_bool(w, b->stats_held);
        snapbuf_put_u16(w, b->stats_head);
        snapbuf_put_u32(w, b->stats.guest.valid);
        for (unsigned i = 0; i < VIRTIO_BALLOON_S_NR; i++)
                snapbuf_put_u64(w, b->stats.guest.values[i]);
}

static int balloon_restore(struct virtio_device *vd, struct snapbuf_reader *r)
{
        struct virtio_balloon *b = vd->priv;
        struct virtio_balloon_guest_stats g;
        uint32_t num_pages = snapbuf_get_u32(r, "balloon num_pages");
        uint32_t actual = snapbuf_get_u32(r, "balloon actual");
        uint32_t interval = snapbuf_get_u32(r, "balloon statistics interval");
        bool held = snapbuf_get_bool(r, "balloon statistics buffer held");
        uint16_t head = snapbuf_get_u16(r, "balloon statistics buffer");

        g.valid = snapbuf_get_u32(r, "balloon statistics");
        for (unsigned i = 0; i < VIRTIO_BALLOON_S_NR; i++)
                g.values[i] = snapbuf_get_u64(r, "balloon statistics");
        if (!snapbuf_ok(r))
                return -EINVAL;
        if ((interval == 0) != (b->timer_fd < 0))
                return snapbuf_fail(r, "balloon", "statistics configured differently"), -EINVAL;
        if (held && (vd->nr_queues <= STATSQ || head >= vd->vqs[STATSQ].size))
                return snapbuf_fail(r, "balloon", "impossible statistics buffer"), -EINVAL;
        b->num_pages = num_pages;
        b->actual = actual;
        b->interval_s = interval;
        b->stats_held = held;
        b->stats_head = head;
        b->stats.guest = g;
        return 0;
}

static const struct virtio_device_ops balloon_ops = {
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .activate = balloon_activate,
    .reset = balloon_reset,
    .notify = balloon_notify,
    .save = balloon_save,
    .restore = balloon_restore,
};

/* ---- API ---- */

static uint32_t mib_to_pages(uint32_t mib)
{
        uint64_t pages = (uint64_t)mib * PAGES_PER_MIB;

        return pages > UINT32_MAX ? UINT32_MAX : (uint32_t)pages;
}

int virtio_balloon_create(const struct virtio_balloon_config *cfg, struct error *err,
                          struct virtio_balloon **out)
{
        struct virtio_balloon *b = calloc(1, sizeof(*b));
        bool stats = cfg->stats_polling_interval_s > 0;
        int r;

        if (!b)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(b->name, sizeof(b->name), "%s", cfg->name);
        b->loop = cfg->loop;
        b->timer_fd = -1;
        b->interval_s = cfg->stats_polling_interval_s;
        b->num_pages = mib_to_pages(cfg->amount_mib);
        ratelimit_init(&b->rl, 1000000000ull, 10);
        b->vd = (struct virtio_device){
            .name = b->name,
            .device_id = VIRTIO_ID_BALLOON,
            .nr_queues = stats ? 3 : 2,
            .queue_max = VIRTIO_BALLOON_QUEUE_SIZE,
            .features = (stats ? VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ) : 0) |
                        (cfg->deflate_on_oom ? VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) : 0),
            .config_len = CONFIG_LEN,
            .ops = &balloon_ops,
            .priv = b,
        };
        virtio_device_init(&b->vd);
        if (stats) {
                if (!cfg->loop) {
                        free(b);
                        return error_config(err, "%s: statistics need an event loop", cfg->name);
                }
                b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
                if (b->timer_fd < 0) {
                        r = -errno;
                        free(b);
                        return error_set(err, r, "%s: timerfd: %s", cfg->name, strerror(-r));
                }
                r = event_loop_add(cfg->loop, b->timer_fd, EPOLLIN, on_timer, b);
                if (r) {
                        close(b->timer_fd);
                        free(b);
                        return error_set(err, r, "%s: event loop: %s", cfg->name, strerror(-r));
                }
        }
        *out = b;
        return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
        if (!b)
                return;
        if (b->timer_fd >= 0) {
                event_loop_remove(b->loop, b->timer_fd);
                close(b->timer_fd);
        }
        virtio_device_fini(&b->vd);
        free(b);
}

struct virtio_device *virtio_balloon_device(struct virtio_balloon *b)
{
        return &b->vd;
}

void virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib)
{
        pthread_mutex_lock(&b->vd.lock);
        b->num_pages = mib_to_pages(amount_mib);
        if (b->vd.tops)
                virtio_signal_config(&b->vd);
        pthread_mutex_unlock(&b->vd.lock);
}

int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint32_t seconds)
{
        int r = 0;

        pthread_mutex_lock(&b->vd.lock);
        if (seconds == b->interval_s)
                goto out;
        if (b->interval_s == 0 || seconds == 0) {
                r = -EINVAL; /* statistics cannot be turned on or off after creation */
                goto out;
        }
        b->interval_s = seconds;
        if (stats_running(b)) {
                stats_complete(b);
                timer_set(b, seconds);
        }
out:
        pthread_mutex_unlock(&b->vd.lock);
        return r;
}

void virtio_balloon_get_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out)
{
        pthread_mutex_lock(&b->vd.lock);
        *out = b->stats;
        out->target_pages = b->num_pages;
        out->actual_pages = b->actual;
        pthread_mutex_unlock(&b->vd.lock);
}
