#include "balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/log.h"

enum { INFLATEQ = 0, DEFLATEQ = 1 };

/* What a queue index is for, once the driver's features are known (queue_role). */
enum role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_HINT, ROLE_REPORT };

#define CONFIG_LEN        8  /* le32 num_pages, le32 actual */
#define CONFIG_LEN_FREE   16 /* + le32 free_page_hint_cmd_id, le32 poison_val */
#define CONFIG_ACTUAL     4
#define CONFIG_CMD_ID     8
#define CONFIG_POISON     12
#define STAT_SIZE         10  /* le16 tag, le64 val (packed) */
#define STATS_MAX_ENTRIES 256 /* parsed per buffer at most (Linux sends 16) */
#define PAGES_PER_MIB     (MiB(1) / VIRTIO_BALLOON_PAGE_SIZE)
/* Private granules of reported or hinted ranges retried one by one per request, at most
 * (the bound inflation has): a guest reporting gigabytes of private memory gets them
 * counted as failed instead of keeping the device busy. */
#define GRANULE_RETRIES VIRTIO_BALLOON_MAX_PFNS_PER_REQUEST

struct virtio_balloon {
        struct virtio_device vd;
        char name[16];
        struct event_loop *loop;
        int timer_fd; /* -1: no statistics queue */
        uint32_t interval_s;
        uint32_t num_pages; /* configuration space, host order */
        uint32_t actual;
        uint32_t poison_val;
        bool active;     /* DRIVER_OK seen, no reset since */
        bool stats_held; /* the driver's statistics buffer waits in stats_head */
        uint16_t stats_head;
        /* Queue index of each optional queue the driver negotiated, or -1 (set_roles). */
        int qi_stats, qi_hint, qi_report;
        /* Free page hinting. */
        uint32_t cmd_id;      /* free_page_hint_cmd_id: the host's command */
        uint32_t last_cmd_id; /* the last run's id; the next one follows it */
        bool has_guest_cmd;
        uint32_t guest_cmd;    /* the last id the guest sent: the run its hints belong to */
        bool ack_on_stop;      /* write DONE when the guest sends STOP */
        bool done_on_restore;  /* a restored run was ended: signal DONE at activation */
        uint64_t retries_left; /* GRANULE_RETRIES for the request being processed */
        struct virtio_balloon_stats stats;
        struct ratelimit rl;
        struct virtq_chain chain;
};

static bool offers(const struct virtio_balloon *b, unsigned bit)
{
        return (b->vd.features & VIRTIO_BIT(bit)) != 0;
}

/* Queue indices follow the negotiated features (virtio 1.2, 5.5.2; Linux's find_vqs): the
 * optional queues take the next index in the order statistics, free page, reporting, and a
 * queue whose feature was declined takes none. */
static void set_roles(struct virtio_balloon *b)
{
        int next = DEFLATEQ + 1;

        b->qi_stats = b->qi_hint = b->qi_report = -1;
        if (virtio_has_feature(&b->vd, VIRTIO_BALLOON_F_STATS_VQ))
                b->qi_stats = next++;
        if (virtio_has_feature(&b->vd, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
                b->qi_hint = next++;
        if (virtio_has_feature(&b->vd, VIRTIO_BALLOON_F_PAGE_REPORTING))
                b->qi_report = next++;
}

static enum role queue_role(const struct virtio_balloon *b, unsigned q)
{
        if (q == INFLATEQ)
                return ROLE_INFLATE;
        if (q == DEFLATEQ)
                return ROLE_DEFLATE;
        if ((int)q == b->qi_stats)
                return ROLE_STATS;
        if ((int)q == b->qi_hint)
                return ROLE_HINT;
        if ((int)q == b->qi_report)
                return ROLE_REPORT;
        return ROLE_NONE;
}

/* ---- configuration space ---- */

static void balloon_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_balloon *b = vd->priv;
        uint8_t cfg[CONFIG_LEN_FREE];

        put_le32(cfg, b->num_pages);
        put_le32(cfg + CONFIG_ACTUAL, b->actual);
        put_le32(cfg + CONFIG_CMD_ID, b->cmd_id);
        put_le32(cfg + CONFIG_POISON, b->poison_val);
        virtio_config_copy(cfg, vd->config_len, off, data, len);
}

/* The driver's fields: `actual` always; poison_val when PAGE_POISON is offered, and only
 * before DRIVER_OK (5.5.6.7: the driver must not change it while the device runs).
 * num_pages and free_page_hint_cmd_id belong to the device. */
static void balloon_config_write(struct virtio_device *vd, uint32_t off, const uint8_t *data,
                                 uint32_t len)
{
        struct virtio_balloon *b = vd->priv;
        uint32_t *field = NULL;
        uint32_t start = 0;
        uint8_t v[4];

        if (off >= CONFIG_ACTUAL && off < CONFIG_CMD_ID && len <= CONFIG_CMD_ID - off) {
                field = &b->actual;
                start = CONFIG_ACTUAL;
        } else if (off >= CONFIG_POISON && off < CONFIG_LEN_FREE && len <= CONFIG_LEN_FREE - off &&
                   offers(b, VIRTIO_BALLOON_F_PAGE_POISON) && !b->active) {
                field = &b->poison_val;
                start = CONFIG_POISON;
        }
        if (!field) {
                b->stats.bad_requests++;
                LOG_GUEST(&b->rl,
                          "%s: configuration write the driver may not make (offset %u, %u bytes)",
                          b->name, off, len);
                return;
        }
        put_le32(v, *field);
        memcpy(v + (off - start), data, len);
        *field = get_le32(v);
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
        return b->active && b->timer_fd >= 0 && b->qi_stats >= 0 &&
               virtq_live(&b->vd.vqs[b->qi_stats]);
}

/* Hands the held statistics buffer back so that the driver refills it. Caller holds the
 * lock. */
static void stats_complete(struct virtio_balloon *b)
{
        struct virtq *q;

        if (!b->stats_held || !stats_running(b))
                return;
        q = &b->vd.vqs[b->qi_stats];
        b->stats_held = false;
        if (virtq_push(q, b->stats_head, 0))
                virtio_needs_reset(&b->vd);
        else
                virtio_signal_used(&b->vd, (unsigned)b->qi_stats);
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

/* Releases [gpa, gpa+len) (whole 4 KiB pages) and returns the bytes released. A range the
 * accessor refuses as a whole because part of it is private (or, for inflation, lies in two
 * regions) is retried page by page, while retries are left for this request, so that only
 * the refused pages are lost; *refused counts them (a range not retried counts as one). */
static uint64_t discard(struct virtio_balloon *b, gpa_t gpa, uint64_t len, uint64_t *refused)
{
        uint64_t done = 0;
        int r;

        if (len == 0)
                return 0;
        r = hostmem_discard(b->vd.mem, gpa, len);
        if (r == 0)
                return len;
        if (len == VIRTIO_BALLOON_PAGE_SIZE || (r != -EACCES && r != -EFAULT) ||
            len / VIRTIO_BALLOON_PAGE_SIZE > b->retries_left) {
                (*refused)++;
                return 0;
        }
        b->retries_left -= len / VIRTIO_BALLOON_PAGE_SIZE;
        for (uint64_t off = 0; off < len; off += VIRTIO_BALLOON_PAGE_SIZE)
                done += discard(b, gpa + off, VIRTIO_BALLOON_PAGE_SIZE, refused);
        return done;
}

static void release(struct virtio_balloon *b, gpa_t gpa, uint64_t len)
{
        b->stats.released_bytes += discard(b, gpa, len, &b->stats.invalid_pfns);
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
        b->retries_left = GRANULE_RETRIES;
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

/* ---- free page reporting and hinting ---- */

/* Whether reported pages may be discarded: with PAGE_POISON negotiated the guest expects
 * them to keep poison_val (5.5.6.8), which a discard gives only for 0 over anonymous
 * memory. */
static bool report_may_discard(const struct virtio_balloon *b)
{
        return !virtio_has_feature(&b->vd, VIRTIO_BALLOON_F_PAGE_POISON) ||
               (b->poison_val == 0 && hostmem_discard_reads_zero(b->vd.mem));
}

/* Discards one reported or hinted range: whole 4 KiB pages only (an unaligned range is a
 * failure, not rounded). The descriptor checks already put the range inside one RAM
 * region. Adds to *freed and *fails. */
static void discard_range(struct virtio_balloon *b, const struct virtq_seg *seg, uint64_t *freed,
                          uint64_t *fails)
{
        uint64_t refused = 0;

        if (seg->len == 0 || !is_aligned(seg->addr, VIRTIO_BALLOON_PAGE_SIZE) ||
            !is_aligned(seg->len, VIRTIO_BALLOON_PAGE_SIZE)) {
                (*fails)++;
                LOG_GUEST(&b->rl, "%s: free range 0x%llx+0x%x is not made of whole pages", b->name,
                          (unsigned long long)seg->addr, seg->len);
                return;
        }
        *freed += discard(b, seg->addr, seg->len, &refused);
        if (refused) {
                *fails += refused;
                LOG_GUEST(&b->rl, "%s: %llu pages of free range 0x%llx+0x%x not released", b->name,
                          (unsigned long long)refused, (unsigned long long)seg->addr, seg->len);
        }
}

/* A reporting request: every segment (the driver makes them device-writable, but the
 * direction means nothing here) is a free range, discarded before the request is used. */
static bool report(struct virtio_balloon *b)
{
        bool may = report_may_discard(b);

        b->retries_left = GRANULE_RETRIES;
        for (unsigned i = 0; i < b->chain.nr_segs; i++) {
                b->stats.report_count++;
                if (may)
                        discard_range(b, &b->chain.segs[i], &b->stats.report_freed,
                                      &b->stats.report_fails);
                else
                        b->stats.report_kept++;
        }
        return true;
}

static bool hinting_run(uint32_t cmd)
{
        return cmd != VIRTIO_BALLOON_CMD_ID_STOP && cmd != VIRTIO_BALLOON_CMD_ID_DONE;
}

/* Sets free_page_hint_cmd_id and tells the driver. */
static void set_cmd_id(struct virtio_balloon *b, uint32_t cmd)
{
        b->cmd_id = cmd;
        virtio_signal_config(&b->vd);
}

/* A command id from the guest (an output buffer). Returns false when it is not one a
 * driver may send (DONE is the device's). Sets *stop on the guest's STOP. */
static bool guest_command(struct virtio_balloon *b, uint32_t cmd, bool *stop)
{
        if (cmd == VIRTIO_BALLOON_CMD_ID_DONE)
                return false;
        /* Only the STOP that ends the host's current round completes it: a STOP closing an
         * earlier round (Linux stops one when it sees a new id, then starts the new one)
         * must not end the new round before it began. */
        if (cmd == VIRTIO_BALLOON_CMD_ID_STOP && b->has_guest_cmd && b->guest_cmd == b->cmd_id)
                *stop = true;
        b->has_guest_cmd = true;
        b->guest_cmd = cmd;
        if (hinting_run(cmd) && cmd != b->cmd_id)
                LOG_GUEST(&b->rl, "%s: hints for command %u while the host's is %u are ignored",
                          b->name, cmd, b->cmd_id);
        return true;
}

/*
 * A free page queue request: output buffers of 4 bytes carry command ids, input buffers
 * are hints. A hint is discarded only while the host runs a round (cmd_id not STOP or
 * DONE) and the guest's last id is that round's: hints of an earlier round, sent before
 * any id, or after the guest's STOP are ignored (5.5.6.6: the device must ignore pages
 * provided with an id that does not match). Returns false when the request is malformed
 * (its hints are still handled).
 */
static bool hint(struct virtio_balloon *b, struct virtq *q, bool *stop)
{
        uint32_t off = 0;
        bool ok = true;

        b->retries_left = GRANULE_RETRIES;
        for (unsigned i = 0; i < b->chain.nr_segs; i++) {
                const struct virtq_seg *seg = &b->chain.segs[i];
                uint8_t v[4];

                if (!seg->write) {
                        if (seg->len != 4 || virtq_chain_read(q, &b->chain, off, v, 4) != 4 ||
                            !guest_command(b, get_le32(v), stop))
                                ok = false;
                        off += seg->len;
                        continue;
                }
                b->stats.hint_count++;
                if (hinting_run(b->cmd_id) && b->has_guest_cmd && b->guest_cmd == b->cmd_id)
                        discard_range(b, seg, &b->stats.hint_freed, &b->stats.hint_fails);
                else
                        b->stats.hint_ignored++;
        }
        return ok;
}

/* ---- queues ---- */

/* Every request on a page queue (inflate, deflate, reporting, free page hints) is used
 * with nothing written, once handled. Caller holds the lock. */
static void process_pages(struct virtio_balloon *b, unsigned qi, enum role role)
{
        static const char *const what[] = {[ROLE_INFLATE] = "inflate",
                                           [ROLE_DEFLATE] = "deflate",
                                           [ROLE_HINT] = "free page hint",
                                           [ROLE_REPORT] = "free page report"};
        struct virtq *q = &b->vd.vqs[qi];
        enum virtq_pop_result r;
        bool used = false, stop = false;

        do {
                while ((r = virtq_pop(q, &b->chain)) != VIRTQ_EMPTY) {
                        bool ok = false;

                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_CHAIN) {
                                if (role == ROLE_INFLATE)
                                        ok = inflate(b, q);
                                else if (role == ROLE_DEFLATE)
                                        ok = deflate(b);
                                else if (role == ROLE_HINT)
                                        ok = hint(b, q, &stop);
                                else
                                        ok = report(b);
                        }
                        if (!ok) {
                                b->stats.bad_requests++;
                                LOG_GUEST(&b->rl, "%s: malformed %s request", b->name, what[role]);
                        }
                        if (role == ROLE_INFLATE)
                                b->stats.inflate_count++;
                        else if (role == ROLE_DEFLATE)
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
        /* The guest finished its round: the hinted pages are its again. */
        if (stop && b->ack_on_stop && hinting_run(b->cmd_id))
                set_cmd_id(b, VIRTIO_BALLOON_CMD_ID_DONE);
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
        unsigned qi = (unsigned)b->qi_stats;
        struct virtq *q = &b->vd.vqs[qi];
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
                virtio_signal_used(&b->vd, qi);
        }
}

static void balloon_notify(struct virtio_device *vd, unsigned q)
{
        struct virtio_balloon *b = vd->priv;
        enum role role = queue_role(b, q);

        if (role == ROLE_STATS) {
                if (stats_running(b))
                        process_stats(b);
        } else if (role != ROLE_NONE) {
                process_pages(b, q, role);
        } else {
                b->stats.bad_requests++;
                LOG_GUEST(&b->rl, "%s: notification for queue %u, which no negotiated feature has",
                          b->name, q);
        }
}

static int balloon_activate(struct virtio_device *vd)
{
        struct virtio_balloon *b = vd->priv;

        b->active = true;
        set_roles(b);
        /* Linux primes the statistics queue and kicks it before DRIVER_OK, a notification
         * the transport drops: look at every queue once now. */
        for (unsigned q = 0; q < vd->nr_queues; q++) {
                enum role role = queue_role(b, q);

                if (role != ROLE_NONE && role != ROLE_STATS && vd->vqs[q].ready)
                        process_pages(b, q, role);
        }
        if (stats_running(b)) {
                process_stats(b);
                timer_set(b, b->interval_s);
        }
        if (b->done_on_restore) {
                b->done_on_restore = false;
                virtio_signal_config(vd);
        }
        return 0;
}

/* A reset guest holds no balloon pages and no hinted ones; its next driver starts over. */
static void balloon_reset(struct virtio_device *vd)
{
        struct virtio_balloon *b = vd->priv;

        b->active = false;
        b->stats_held = false;
        b->actual = 0;
        b->poison_val = 0;
        b->cmd_id = VIRTIO_BALLOON_CMD_ID_STOP;
        b->has_guest_cmd = false;
        b->guest_cmd = 0;
        b->ack_on_stop = false;
        b->done_on_restore = false;
        b->qi_stats = b->qi_hint = b->qi_report = -1;
        timer_set(b, 0);
}

/* Snapshots: the device section is versioned. Version 2: the target, the driver's
 * `actual`, the statistics interval, the statistics buffer the device holds (its chain was
 * popped: it must come back after a restore), the latest statistics, poison_val and the
 * hinting state. Version 1 (before reporting and hinting) had no version field and is not
 * read. A restored run in progress is ended: free_page_hint_cmd_id reads DONE and the
 * device signals the change when it runs again, so the guest takes its hinted pages back
 * (Firecracker does the same). */
#define BALLOON_STATE_VERSION 2

static void balloon_save(struct virtio_device *vd, struct snapbuf_writer *w)
{
        struct virtio_balloon *b = vd->priv;

        snapbuf_put_u32(w, BALLOON_STATE_VERSION);
        snapbuf_put_u32(w, b->num_pages);
        snapbuf_put_u32(w, b->actual);
        snapbuf_put_u32(w, b->interval_s);
        snapbuf_put_bool(w, b->stats_held);
        snapbuf_put_u16(w, b->stats_head);
        snapbuf_put_u32(w, b->stats.guest.valid);
        for (unsigned i = 0; i < VIRTIO_BALLOON_S_NR; i++)
                snapbuf_put_u64(w, b->stats.guest.values[i]);
        snapbuf_put_u32(w, b->poison_val);
        snapbuf_put_u32(w, b->cmd_id);
        snapbuf_put_u32(w, b->last_cmd_id);
        snapbuf_put_bool(w, b->has_guest_cmd);
        snapbuf_put_u32(w, b->guest_cmd);
        snapbuf_put_bool(w, b->ack_on_stop);
}

static int balloon_restore(struct virtio_device *vd, struct snapbuf_reader *r)
{
        struct virtio_balloon *b = vd->priv;
        struct virtio_balloon_guest_stats g;
        uint32_t version = snapbuf_get_u32(r, "balloon state version");
        uint32_t num_pages = snapbuf_get_u32(r, "balloon num_pages");
        uint32_t actual = snapbuf_get_u32(r, "balloon actual");
        uint32_t interval = snapbuf_get_u32(r, "balloon statistics interval");
        bool held = snapbuf_get_bool(r, "balloon statistics buffer held");
        uint16_t head = snapbuf_get_u16(r, "balloon statistics buffer");
        uint32_t poison, cmd_id, last_cmd_id, guest_cmd;
        bool has_guest_cmd, ack;

        g.valid = snapbuf_get_u32(r, "balloon statistics");
        for (unsigned i = 0; i < VIRTIO_BALLOON_S_NR; i++)
                g.values[i] = snapbuf_get_u64(r, "balloon statistics");
        poison = snapbuf_get_u32(r, "balloon poison_val");
        cmd_id = snapbuf_get_u32(r, "balloon free_page_hint_cmd_id");
        last_cmd_id = snapbuf_get_u32(r, "balloon last hinting command");
        has_guest_cmd = snapbuf_get_bool(r, "balloon guest command seen");
        guest_cmd = snapbuf_get_u32(r, "balloon guest command");
        ack = snapbuf_get_bool(r, "balloon acknowledge_on_stop");
        if (!snapbuf_ok(r))
                return -EINVAL;
        if (version != BALLOON_STATE_VERSION)
                return snapbuf_fail(r, "balloon", "unknown device state version"), -EINVAL;
        if ((interval == 0) != (b->timer_fd < 0))
                return snapbuf_fail(r, "balloon", "statistics configured differently"), -EINVAL;
        set_roles(b); /* the transport restored the negotiated features first */
        if (held && (b->qi_stats < 0 || head >= vd->vqs[b->qi_stats].size))
                return snapbuf_fail(r, "balloon", "impossible statistics buffer"), -EINVAL;
        if ((poison && !offers(b, VIRTIO_BALLOON_F_PAGE_POISON)) ||
            ((cmd_id || last_cmd_id || has_guest_cmd || ack) &&
             !offers(b, VIRTIO_BALLOON_F_FREE_PAGE_HINT)))
                return snapbuf_fail(r, "balloon", "free page state the device cannot have"),
                       -EINVAL;
        b->num_pages = num_pages;
        b->actual = actual;
        b->interval_s = interval;
        b->stats_held = held;
        b->stats_head = head;
        b->stats.guest = g;
        b->poison_val = poison;
        b->cmd_id = hinting_run(cmd_id) ? VIRTIO_BALLOON_CMD_ID_DONE : cmd_id;
        b->last_cmd_id = last_cmd_id;
        b->has_guest_cmd = has_guest_cmd;
        b->guest_cmd = guest_cmd;
        b->ack_on_stop = ack;
        b->done_on_restore = hinting_run(cmd_id);
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
        bool hints = cfg->free_page_hinting, reports = cfg->free_page_reporting;
        int r;

        if (!b)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(b->name, sizeof(b->name), "%s", cfg->name);
        b->loop = cfg->loop;
        b->timer_fd = -1;
        b->interval_s = cfg->stats_polling_interval_s;
        b->num_pages = mib_to_pages(cfg->amount_mib);
        b->qi_stats = b->qi_hint = b->qi_report = -1;
        ratelimit_init(&b->rl, 1000000000ull, 10);
        b->vd = (struct virtio_device){
            .name = b->name,
            .device_id = VIRTIO_ID_BALLOON,
            .nr_queues = 2u + stats + hints + reports,
            .queue_max = VIRTIO_BALLOON_QUEUE_SIZE,
            /* PAGE_POISON goes with reporting: a Linux guest that poisons or zeroes free
             * pages declines reporting unless it can tell the device so. */
            .features = (stats ? VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ) : 0) |
                        (cfg->deflate_on_oom ? VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) : 0) |
                        (hints ? VIRTIO_BIT(VIRTIO_BALLOON_F_FREE_PAGE_HINT) : 0) |
                        (reports ? VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_REPORTING) |
                                       VIRTIO_BIT(VIRTIO_BALLOON_F_PAGE_POISON)
                                 : 0),
            .config_len = hints || reports ? CONFIG_LEN_FREE : CONFIG_LEN,
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

int virtio_balloon_hinting_start(struct virtio_balloon *b, bool acknowledge_on_stop)
{
        int r = 0;

        pthread_mutex_lock(&b->vd.lock);
        if (!offers(b, VIRTIO_BALLOON_F_FREE_PAGE_HINT)) {
                r = -EOPNOTSUPP;
        } else if (!b->active) {
                r = -ENODEV;
        } else if (b->qi_hint < 0) {
                r = -EPROTO;
        } else {
                /* The next id, never STOP or DONE: an id is not reused before the guest
                 * stopped the round that had it (5.5.6.6), and ids only repeat after 2^32
                 * runs. */
                uint32_t id = b->last_cmd_id + 1;

                if (!hinting_run(id))
                        id = VIRTIO_BALLOON_CMD_ID_DONE + 1;
                b->last_cmd_id = id;
                b->ack_on_stop = acknowledge_on_stop;
                set_cmd_id(b, id);
        }
        pthread_mutex_unlock(&b->vd.lock);
        return r;
}

int virtio_balloon_hinting_stop(struct virtio_balloon *b)
{
        int r = 0;

        pthread_mutex_lock(&b->vd.lock);
        if (!offers(b, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
                r = -EOPNOTSUPP;
        else if (!b->active)
                r = -ENODEV;
        else
                set_cmd_id(b, VIRTIO_BALLOON_CMD_ID_DONE);
        pthread_mutex_unlock(&b->vd.lock);
        return r;
}

int virtio_balloon_hinting_status(struct virtio_balloon *b, struct virtio_balloon_hinting *out)
{
        int r = 0;

        pthread_mutex_lock(&b->vd.lock);
        if (!offers(b, VIRTIO_BALLOON_F_FREE_PAGE_HINT)) {
                r = -EOPNOTSUPP;
        } else {
                out->host_cmd = b->cmd_id;
                out->has_guest_cmd = b->has_guest_cmd;
                out->guest_cmd = b->guest_cmd;
        }
        pthread_mutex_unlock(&b->vd.lock);
        return r;
}
