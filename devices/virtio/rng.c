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
};

static int fill(struct virtio_rng *rng, struct virtq *q, uint32_t len)
{
        uint8_t buf[4096];
        uint32_t done = 0;

        while (done < len) {
                uint32_t n = len - done < sizeof(buf) ? len - done : (uint32_t)sizeof(buf);
                ssize_t got = getrandom(buf, n, 0);

                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        rng->stats.host_errors++;
                        return -EIO;
                }
                if (virtq_chain_write(q, &rng->chain, done, buf, (uint32_t)got) != got)
                        return -EFAULT;
                done += (uint32_t)got;
        }
        return 0;
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
        if (rng->vd.vqs[0].ready && !rng->vd.vqs[0].broken)
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
