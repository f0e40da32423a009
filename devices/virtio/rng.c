#include "rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>

#include "common/log.h"

struct virtio_rng {
        struct virtio_device vd;
        char name[16];
        struct rate_limiter *limiter; /* NULL: unlimited */
        struct event_loop *loop;
        struct virtio_rng_stats stats;
        struct virtq_chain chain;
        struct iovec iov[VIRTIO_RNG_QUEUE_SIZE]; /* the pinned buffers of the chain */
};

/* Fills [0, len) of the chain's writable buffers straight from getrandom. Every buffer is
 * checked and held (shared, on a protected VM) before the first byte lands, so a request
 * naming any private or non-RAM byte fails with nothing written (CC-4) and none of its
 * buffers can turn private meanwhile (CC-6). */
static int fill(struct virtio_rng *rng, struct virtq *q, uint32_t len)
{
        int n = virtq_chain_pin(q, &rng->chain, true, 0, len, rng->iov, (int)ARRAY_SIZE(rng->iov));
        int r = 0;

        if (n < 0)
                return n;
        for (int i = 0; i < n && !r; i++) {
                uint8_t *p = rng->iov[i].iov_base;
                size_t left = rng->iov[i].iov_len;

                while (left) {
                        ssize_t got = getrandom(p, left, 0);

                        if (got < 0 && errno == EINTR)
                                continue;
                        if (got <= 0) {
                                rng->stats.host_errors++;
                                r = -EIO;
                                break;
                        }
                        p += got;
                        left -= (size_t)got;
                }
        }
        virtq_chain_unpin(q, &rng->chain, true, 0, len);
        return r;
}

/* Caller holds vd.lock. */
static void process(struct virtio_rng *rng)
{
        struct virtq *q = &rng->vd.vqs[0];
        bool used = false;
        enum virtq_pop_result r;

        do {
                while ((r = virtq_pop(q, &rng->chain)) != VIRTQ_EMPTY) {
                        uint32_t len = 0;

                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_CHAIN) {
                                len = rng->chain.writable < VIRTIO_RNG_MAX_REQUEST
                                          ? rng->chain.writable
                                          : VIRTIO_RNG_MAX_REQUEST;
                                if (rng->limiter && !rate_limiter_consume(rng->limiter, len, 1)) {
                                        virtq_unpop(q);
                                        rng->stats.rate_limited++;
                                        goto out; /* the limiter's timer resumes us */
                                }
                                if (fill(rng, q, len)) {
                                        len = 0;
                                        rng->stats.bad_requests++;
                                } else {
                                        rng->stats.bytes += len;
                                }
                        } else {
                                rng->stats.bad_requests++;
                        }
                        rng->stats.requests++;
                        if (virtq_push(q, rng->chain.head, len))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
out:
        if (q->broken)
                virtio_needs_reset(&rng->vd);
        else if (used)
                virtio_signal_used(&rng->vd, 0);
}

static void rng_notify(struct virtio_device *vd, unsigned q)
{
        (void)q;
        process(vd->priv);
}

static void on_limiter(void *opaque, uint32_t events)
{
        struct virtio_rng *rng = opaque;

        (void)events;
        pthread_mutex_lock(&rng->vd.lock);
        rate_limiter_timer_fired(rng->limiter);
        if (virtq_live(&rng->vd.vqs[0]))
                process(rng);
        pthread_mutex_unlock(&rng->vd.lock);
}

static const struct virtio_device_ops rng_ops = {
    .notify = rng_notify,
};

int virtio_rng_create(const struct virtio_rng_config *cfg, struct error *err,
                      struct virtio_rng **out)
{
        struct virtio_rng *rng = calloc(1, sizeof(*rng));
        int r;

        if (!rng)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(rng->name, sizeof(rng->name), "%s", cfg->name);
        rng->loop = cfg->loop;
        rng->vd = (struct virtio_device){
            .name = rng->name,
            .device_id = VIRTIO_ID_RNG,
            .nr_queues = 1,
            .queue_max = VIRTIO_RNG_QUEUE_SIZE,
            .ops = &rng_ops,
            .priv = rng,
        };
        virtio_device_init(&rng->vd);
        if (cfg->limit) {
                r = rate_limiter_create(cfg->limit, NULL, NULL, &rng->limiter);
                if (!r)
                        r = event_loop_add(cfg->loop, rate_limiter_fd(rng->limiter), EPOLLIN,
                                           on_limiter, rng);
                if (r) {
                        virtio_rng_destroy(rng);
                        return error_set(err, r, "%s: rate limiter: %s", cfg->name, strerror(-r));
                }
        }
        *out = rng;
        return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
        if (!rng)
                return;
        if (rng->limiter) {
                event_loop_remove(rng->loop, rate_limiter_fd(rng->limiter));
                rate_limiter_destroy(rng->limiter);
        }
        virtio_device_fini(&rng->vd);
        free(rng);
}

struct virtio_device *virtio_rng_device(struct virtio_rng *rng)
{
        return &rng->vd;
}

void virtio_rng_get_stats(struct virtio_rng *rng, struct virtio_rng_stats *out)
{
        pthread_mutex_lock(&rng->vd.lock);
        *out = rng->stats;
        pthread_mutex_unlock(&rng->vd.lock);
}
