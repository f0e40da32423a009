/*
 * virtio-blk (virtio 1.2, section 5.2): the queue, the engines and the device's life cycle.
 * Each request moves through the state machine of blk_req.c (blk_req_begin, then
 * blk_req_advance for each host I/O step); finish() writes the status byte, releases the
 * pins and returns the chain. The sync engine runs the steps inline; the io_uring engine
 * keeps up to a queue's worth of requests in flight across notifications, and a reset
 * cancels them and waits, so nothing reaches guest memory afterwards.
 *
 * Guest memory: data buffers are pinned only for the duration of the I/O (CC-6), and the
 * status byte is checked before any data moves, so a request whose status byte is refused
 * writes nothing into the guest (CC-4); every access is checked when it happens.
 */
#include "blk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "blk_backend.h"
#include "blk_req.h"
#include "common/log.h"

/* ---- request slots and pins ---- */

static struct blk_req *get_req(struct virtio_blk *blk)
{
        struct blk_req *req = blk->free;

        blk->free = req->next_free;
        return req;
}

static void put_req(struct virtio_blk *blk, struct blk_req *req)
{
        req->next_free = blk->free;
        blk->free = req;
}

/* The I/O is over: no host pointer outlives it (CC-6). */
static void unpin_data(struct virtio_blk *blk, struct blk_req *req)
{
        /* After a reset the queue is zeroed (its accessor too): unpin through the device's. */
        struct virtq tmp = {.mem = blk->vd.mem};
        struct virtq *q = blk_queue(blk)->mem ? blk_queue(blk) : &tmp;

        if (!req->data_pinned)
                return;
        if (req->pin_single)
                hostmem_unpin(blk->vd.mem, req->pin_gpa, req->pin_len);
        else
                virtq_chain_unpin(q, &req->chain, req->data_write, req->pin_off, req->pin_len);
        req->data_pinned = false;
}

/* Drops a request without touching guest memory (reset, broken ring). */
static void release(struct virtio_blk *blk, struct blk_req *req)
{
        unpin_data(blk, req);
        put_req(blk, req);
}

static void account(struct virtio_blk *blk, const struct blk_req *req)
{
        struct virtio_blk_stats *s = &blk->stats;

        if (req->status == VIRTIO_BLK_S_IOERR) {
                s->io_errors++;
                return;
        }
        if (req->status == VIRTIO_BLK_S_UNSUPP) {
                s->unsupported++;
                return;
        }
        switch (req->type) {
        case VIRTIO_BLK_T_IN:
                s->read_count++;
                s->read_bytes += req->len;
                break;
        case VIRTIO_BLK_T_OUT:
                s->write_count++;
                s->write_bytes += req->len;
                break;
        case VIRTIO_BLK_T_FLUSH:
                s->flush_count++;
                break;
        case VIRTIO_BLK_T_GET_ID:
                s->get_id_count++;
                break;
        case VIRTIO_BLK_T_DISCARD:
                s->discard_count++;
                break;
        case VIRTIO_BLK_T_WRITE_ZEROES:
                s->write_zeroes_count++;
                break;
        }
}

/* Writes the status byte and returns the chain; used length = data + status. */
static void finish(struct virtio_blk *blk, struct blk_req *req)
{
        struct virtq *q = blk_queue(blk);
        uint32_t used_len = 0;

        if (!virtq_live(q)) {
                release(blk, req);
                return;
        }
        unpin_data(blk, req);
        if (req->status_ok) {
                /* Checked again now: ownership may have changed during the I/O (CC-6). */
                if (hostmem_write(q->mem, req->status_gpa, &req->status, 1) == 0) {
                        used_len = req->written + 1;
                        account(blk, req);
                } else {
                        blk->stats.bad_requests++;
                }
        }
        if (virtq_push(q, req->chain.head, used_len) == 0)
                blk->used = true;
        put_req(blk, req);
}

/* ---- engines ---- */

static void on_cqe(void *opaque, void *tag, long res);

/* False when the kernel took nothing (the steps stay queued for the next try). */
static bool submit(struct virtio_blk *blk)
{
        int r = blk_uring_submit(blk->uring);

        if (r < 0) {
                LOG_GUEST(&blk->rl, "%s: io_uring submit: %s (retried later)", blk->name,
                          strerror(-r));
                return false;
        }
        blk->queued = false;
        return true;
}

/* Runs (sync) or queues (io_uring) req->io; a sync request is finished on return. */
static void issue(struct virtio_blk *blk, struct blk_req *req)
{
        if (!blk->uring) {
                while (
                    !blk_req_advance(blk, req, blk->bops->run(blk->bops_opaque, blk->fd, &req->io)))
                        ;
                finish(blk, req);
                return;
        }
        uint64_t delay =
            blk->bops->async_delay_ns ? blk->bops->async_delay_ns(blk->bops_opaque, &req->io) : 0;
        int r = blk_uring_queue(blk->uring, blk->fd, &req->io, delay, req);

        if (r == -EBUSY && submit(blk)) /* never with one step per slot; but never spin */
                r = blk_uring_queue(blk->uring, blk->fd, &req->io, delay, req);
        if (r) {
                LOG_GUEST(&blk->rl, "%s: io_uring queue full", blk->name);
                req->status = VIRTIO_BLK_S_IOERR;
                finish(blk, req);
                return;
        }
        blk->in_flight++;
        blk->queued = true;
}

static void on_cqe(void *opaque, void *tag, long res)
{
        struct virtio_blk *blk = opaque;
        struct blk_req *req = tag;

        blk->in_flight--;
        if (blk->discarding) {
                release(blk, req);
                return;
        }
        if (blk->bops->async_result)
                res = blk->bops->async_result(blk->bops_opaque, &req->io, res);
        if (blk_req_advance(blk, req, res))
                finish(blk, req);
        else
                issue(blk, req);
}

/* Waits for every in-flight step. discard (reset): the requests are dropped, nothing is
 * written to guest memory and the kernel is asked to cancel what it can; otherwise they run
 * to completion. */
static void drain(struct virtio_blk *blk, bool discard)
{
        if (!blk->uring || !blk->in_flight)
                return;
        if (blk->queued)
                submit(blk);
        if (discard) {
                blk->discarding = true;
                blk_uring_cancel_all(blk->uring);
        }
        while (blk->in_flight) {
                blk_uring_reap(blk->uring, true, on_cqe, blk);
                if (blk->queued)
                        submit(blk);
        }
        blk->discarding = false;
}

/* ---- queue processing ---- */

static void start(struct virtio_blk *blk, struct blk_req *req, bool *limited)
{
        struct virtq *q = blk_queue(blk);
        struct virtq_chain *c = &req->chain;
        const struct virtq_seg *first = &c->segs[0], *last;
        uint8_t hdr[HDR_LEN];
        uint64_t sector = 0, bytes = 0;
        bool have_hdr;
        int st;

        req->status = VIRTIO_BLK_S_OK;
        req->status_ok = req->data_pinned = false;
        req->written = 0;
        req->len = req->done = 0;
        req->type = 0;
        /* The header usually sits in the first buffer: one checked read. */
        if (c->nr_segs && !first->write && first->len >= HDR_LEN)
                have_hdr = hostmem_read(q->mem, first->addr, hdr, HDR_LEN) == 0;
        else
                have_hdr = virtq_chain_read(q, c, 0, hdr, HDR_LEN) == HDR_LEN;
        if (have_hdr) {
                req->type = get_le32(hdr);
                sector = get_le64(hdr + 8);
                if (req->type == VIRTIO_BLK_T_IN && c->writable)
                        bytes = c->writable - 1;
                else if (req->type == VIRTIO_BLK_T_OUT)
                        bytes = c->readable - HDR_LEN;
                if (!rate_limiter_consume(blk->limiter, bytes, 1)) {
                        virtq_unpop(q);
                        put_req(blk, req);
                        blk->stats.rate_limited++;
                        *limited = true;
                        return;
                }
        }
        /* The status byte is the last byte of the last buffer (writable ones come last, and
         * empty ones are not listed); without one the request completes with nothing
         * written. Checking it first means no data moves when guest memory refuses it
         * (CC-4); the write itself is checked again (CC-6). */
        last = c->writable ? &c->segs[c->nr_segs - 1] : NULL;
        if (!last || !hostmem_check(q->mem, last->addr + last->len - 1, 1)) {
                blk->stats.bad_requests++;
                blk_guest_error(blk, req, "no usable status byte");
                finish(blk, req);
                return;
        }
        req->status_ok = true;
        req->status_gpa = last->addr + last->len - 1;
        if (!have_hdr) { /* too short, or refused */
                blk->stats.bad_requests++;
                req->status = VIRTIO_BLK_S_IOERR;
                finish(blk, req);
                return;
        }
        st = blk_req_begin(blk, req, sector);
        if (st >= 0) {
                req->status = (uint8_t)st;
                finish(blk, req);
                return;
        }
        issue(blk, req);
}

/* Pops and starts requests while slots and the rate limiter allow; true when it stopped
 * because the ring is empty (or broken). */
static bool pop_all(struct virtio_blk *blk)
{
        struct virtq *q = blk_queue(blk);
        bool limited = false, looked = false;

        while (blk->free && !limited && !rate_limiter_blocked(blk->limiter)) {
                struct blk_req *req;
                enum virtq_pop_result r;

                /* What the ring showed is used up: run() looks again through virtq_arm
                 * (before it stops, whenever it is not stalled), so one more pop would only
                 * read the avail index twice. */
                if (looked && virtq_seen_pending(q) == 0)
                        return true;
                looked = true;
                req = get_req(blk);
                r = virtq_pop(q, &req->chain);

                if (r == VIRTQ_EMPTY || r == VIRTQ_BROKEN) {
                        put_req(blk, req);
                        return true;
                }
                if (r == VIRTQ_BAD_CHAIN) {
                        blk->stats.bad_requests++;
                        LOG_GUEST(&blk->rl, "%s: malformed descriptor chain (head %u)", blk->name,
                                  req->chain.head);
                        if (virtq_push(q, req->chain.head, 0) == 0)
                                blk->used = true;
                        put_req(blk, req);
                        continue;
                }
                start(blk, req, &limited);
        }
        return false;
}

static bool stalled(const struct virtio_blk *blk)
{
        return !blk->free || rate_limiter_blocked(blk->limiter);
}

static bool running(struct virtio_blk *blk)
{
        return virtq_live(blk_queue(blk));
}

/* Caller holds vd.lock. */
static void run(struct virtio_blk *blk)
{
        struct virtq *q = blk_queue(blk);
        bool more, empty = false;

        do {
                more = false;
                /* Completions free slots and may queue the next steps of their requests. */
                if (blk->in_flight && blk_uring_reap(blk->uring, false, on_cqe, blk))
                        more = true;
                if (!empty && running(blk))
                        empty = pop_all(blk);
                /* What completed inline is reaped right away. */
                if (blk->queued && submit(blk))
                        more = true;
                if (!more && running(blk) && !stalled(blk)) {
                        /* EVENT_IDX: ask for a notification, then look once more. */
                        more = virtq_arm(q);
                        empty = !more;
                }
        } while (more);
        if (q->ready && q->broken)
                virtio_needs_reset(&blk->vd);
        else if (blk->used && q->ready)
                virtio_signal_used(&blk->vd, 0);
        blk->used = false;
}

/* ---- virtio ops and event-loop callbacks ---- */

static void blk_notify(struct virtio_device *vd, unsigned q)
{
        (void)q;
        run(vd->priv);
}

static void blk_reset(struct virtio_device *vd)
{
        struct virtio_blk *blk = vd->priv;

        drain(blk, true);
        blk->used = false;
}

static void blk_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_blk *blk = vd->priv;
        uint8_t cfg[VIRTIO_BLK_CFG_LEN] = {0};

        put_le64(cfg + VIRTIO_BLK_CFG_CAPACITY, blk->capacity >> SECTOR_SHIFT);
        put_le32(cfg + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_QUEUE_SIZE - 2);
        put_le32(cfg + VIRTIO_BLK_CFG_BLK_SIZE, SECTOR);
        if (!blk->read_only) {
                put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, MAX_DWZ_SECT);
                put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, MAX_DWZ_SEGS);
                put_le32(cfg + VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT, DISCARD_ALIGN_SECT);
                put_le32(cfg + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS, MAX_DWZ_SECT);
                put_le32(cfg + VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG, MAX_DWZ_SEGS);
                cfg[VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
        }
        virtio_config_copy(cfg, sizeof(cfg), off, data, len);
}

/* Snapshots: requests in flight complete first (their status and used entries land in
 * guest memory before it is saved); nothing else is the device's own (the backing file is
 * named by the configuration, the rate limiter starts full again). */
static void blk_save(struct virtio_device *vd, struct snapbuf_writer *w)
{
        struct virtio_blk *blk = vd->priv;

        (void)w;
        drain(blk, false);
        if (blk->used && blk_queue(blk)->ready)
                virtio_signal_used(vd, 0);
        blk->used = false;
}

static const struct virtio_device_ops blk_ops = {
    .config_read = blk_config_read,
    .reset = blk_reset,
    .notify = blk_notify,
    .save = blk_save,
};

static void on_uring(void *opaque, uint32_t events)
{
        struct virtio_blk *blk = opaque;

        (void)events;
        blk_uring_clear_event(blk->uring);
        pthread_mutex_lock(&blk->vd.lock);
        run(blk);
        pthread_mutex_unlock(&blk->vd.lock);
}

static void on_limiter(void *opaque, uint32_t events)
{
        struct virtio_blk *blk = opaque;

        (void)events;
        pthread_mutex_lock(&blk->vd.lock);
        rate_limiter_timer_fired(blk->limiter);
        run(blk);
        pthread_mutex_unlock(&blk->vd.lock);
}

/* ---- life cycle and API ---- */

static uint64_t features_of(const struct virtio_blk_config *cfg)
{
        uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE);

        if (cfg->read_only)
                f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
        else
                f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
        if (cfg->cache == VIRTIO_BLK_CACHE_WRITEBACK)
                f |= VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
        return f;
}

static int setup_engine(struct virtio_blk *blk, const struct virtio_blk_config *cfg,
                        struct error *err)
{
        static const struct rate_limiter_config unlimited;
        int r;

        blk->nr_reqs = cfg->engine == VIRTIO_BLK_ENGINE_IO_URING ? VIRTIO_BLK_QUEUE_SIZE : 1;
        blk->reqs = calloc(blk->nr_reqs, sizeof(*blk->reqs));
        if (!blk->reqs)
                return error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = blk->nr_reqs; i-- > 0;)
                put_req(blk, &blk->reqs[i]);
        r = rate_limiter_create(cfg->limit ? cfg->limit : &unlimited, NULL, NULL, &blk->limiter);
        if (!r)
                r = event_loop_add(cfg->loop, rate_limiter_fd(blk->limiter), EPOLLIN, on_limiter,
                                   blk);
        if (r)
                return error_set(err, r, "%s: rate limiter: %s", cfg->name, strerror(-r));
        blk->limiter_registered = true;
        if (cfg->engine != VIRTIO_BLK_ENGINE_IO_URING)
                return 0;
        r = blk_uring_create(VIRTIO_BLK_QUEUE_SIZE, &blk->uring);
        if (!r)
                r = event_loop_add(cfg->loop, blk_uring_fd(blk->uring), EPOLLIN, on_uring, blk);
        if (r)
                return error_set(err, r, "%s: io_uring: %s", cfg->name, strerror(-r));
        blk->uring_registered = true;
        return 0;
}

int virtio_blk_create(const struct virtio_blk_config *cfg, struct error *err,
                      struct virtio_blk **out)
{
        struct virtio_blk *blk;
        int r;

        if (!cfg->loop)
                return error_set(err, -EINVAL, "%s: no event loop", cfg->name);
        blk = calloc(1, sizeof(*blk));
        if (!blk)
                return error_set(err, -ENOMEM, "out of memory");
        blk->fd = -1;
        snprintf(blk->name, sizeof(blk->name), "%s", cfg->name);
        if (cfg->drive_id) /* zero-padded, not terminated when 20 bytes long */
                memcpy(blk->id, cfg->drive_id, strnlen(cfg->drive_id, sizeof(blk->id)));
        blk->read_only = cfg->read_only;
        blk->cache = cfg->cache;
        blk->loop = cfg->loop;
        blk->bops = &blk_file_backend;
        ratelimit_init(&blk->rl, 1000000000ull, 10);
        blk->vd = (struct virtio_device){
            .name = blk->name,
            .device_id = VIRTIO_ID_BLOCK,
            .nr_queues = 1,
            .queue_max = VIRTIO_BLK_QUEUE_SIZE,
            .features = features_of(cfg),
            .config_len = VIRTIO_BLK_CFG_LEN,
            .ops = &blk_ops,
            .priv = blk,
        };
        virtio_device_init(&blk->vd);
        r = blk_file_open(blk->name, cfg->path, cfg->read_only, err, &blk->fd, &blk->capacity);
        if (!r)
                r = setup_engine(blk, cfg, err);
        if (r) {
                virtio_blk_destroy(blk);
                return r;
        }
        *out = blk;
        return 0;
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
        if (!blk)
                return;
        if (blk->uring) {
                /* The transport reset the device already; this only matters if it never
                 * had one. */
                drain(blk, true);
                if (blk->uring_registered)
                        event_loop_remove(blk->loop, blk_uring_fd(blk->uring));
                blk_uring_destroy(blk->uring);
        }
        if (blk->limiter) {
                if (blk->limiter_registered)
                        event_loop_remove(blk->loop, rate_limiter_fd(blk->limiter));
                rate_limiter_destroy(blk->limiter);
        }
        if (blk->fd >= 0)
                close(blk->fd);
        free(blk->reqs);
        virtio_device_fini(&blk->vd);
        free(blk);
}

struct virtio_device *virtio_blk_device(struct virtio_blk *blk)
{
        return &blk->vd;
}

void virtio_blk_get_stats(struct virtio_blk *blk, struct virtio_blk_stats *out)
{
        pthread_mutex_lock(&blk->vd.lock);
        *out = blk->stats;
        pthread_mutex_unlock(&blk->vd.lock);
}

void virtio_blk_reap(struct virtio_blk *blk)
{
        pthread_mutex_lock(&blk->vd.lock);
        if (blk->in_flight)
                run(blk);
        pthread_mutex_unlock(&blk->vd.lock);
}

int virtio_blk_set_path(struct virtio_blk *blk, const char *path, struct error *err)
{
        uint64_t size;
        int fd, old, r;

        r = blk_file_open(blk->name, path, blk->read_only, err, &fd, &size);
        if (r)
                return r;
        pthread_mutex_lock(&blk->vd.lock);
        /* Requests already started finish on the old file. */
        drain(blk, false);
        old = blk->fd;
        blk->fd = fd;
        blk->capacity = size;
        if (blk->used && blk_queue(blk)->ready)
                virtio_signal_used(&blk->vd, 0);
        blk->used = false;
        virtio_signal_config(&blk->vd);
        /* Slots freed by the drain: let the event loop pick up waiting requests. */
        if (blk->uring && running(blk))
                blk_uring_poke(blk->uring);
        pthread_mutex_unlock(&blk->vd.lock);
        close(old);
        return 0;
}

void virtio_blk_set_rate_limiter(struct virtio_blk *blk, const struct rate_limiter_config *limit)
{
        static const struct rate_limiter_config unlimited;

        pthread_mutex_lock(&blk->vd.lock);
        /* A refusal still waiting keeps its timer armed, so processing resumes by itself. */
        rate_limiter_update(blk->limiter, limit ? limit : &unlimited);
        pthread_mutex_unlock(&blk->vd.lock);
}

void virtio_blk_set_backend(struct virtio_blk *blk, const struct blk_backend_ops *ops, void *opaque)
{
        blk->bops = ops ? ops : &blk_file_backend;
        blk->bops_opaque = ops ? opaque : NULL;
}
