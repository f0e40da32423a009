#include "pmem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "common/util.h"

struct virtio_pmem_cfg_space {
        uint64_t start;
        uint64_t size;
};

struct virtio_pmem {
        struct virtio_device vd;
        char name[16];
        int fd;
        bool read_only;
        uint64_t file_size;
        uint64_t size; /* the window: file_size rounded up to VIRTIO_PMEM_ALIGN */
        uint8_t *host; /* size bytes: the file (MAP_SHARED), then the anonymous tail */
        struct virtio_pmem_cfg_space cfg; /* little-endian, as the host is */
        struct rate_limiter *limiter;
        struct event_loop *loop;
        bool limiter_registered;
        struct virtio_pmem_stats stats;
        struct virtq_chain chain;
};

/* The file's data reaches its storage. A read-only device has nothing to write back. */
static int flush(struct virtio_pmem *p)
{
        if (p->read_only)
                return 0;
        while (fsync(p->fd))
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* One chain: its status (written back), or a negative errno when the chain is not a
 * request (nothing is written then). */
static int handle(struct virtio_pmem *p, struct virtq *q, uint32_t *written)
{
        const struct virtq_chain *c = &p->chain;
        uint32_t type, status;
        long n;
        int r;

        *written = 0;
        /* Exactly the request (4 readable bytes) and the response (4 writable bytes). */
        if (c->readable != sizeof(type) || c->writable != sizeof(status))
                return -EINVAL;
        n = virtq_chain_read(q, c, 0, &type, sizeof(type));
        if (n != (long)sizeof(type))
                return n < 0 ? (int)n : -EFAULT;
        if (type != VIRTIO_PMEM_REQ_FLUSH)
                return -EINVAL;
        r = flush(p);
        if (r) {
                p->stats.flush_errors++;
                LOG_ERROR("%s: fsync: %s", p->name, strerror(-r));
        }
        status = r ? VIRTIO_PMEM_RESP_EIO : VIRTIO_PMEM_RESP_OK;
        n = virtq_chain_write(q, c, 0, &status, sizeof(status));
        if (n != (long)sizeof(status))
                return n < 0 ? (int)n : -EFAULT;
        if (!r)
                p->stats.flushes++;
        *written = sizeof(status);
        return 0;
}

/* Caller holds vd.lock. */
static void process(struct virtio_pmem *p)
{
        struct virtq *q = &p->vd.vqs[0];
        bool used = false;
        enum virtq_pop_result r;

        do {
                while ((r = virtq_pop(q, &p->chain)) != VIRTQ_EMPTY) {
                        uint32_t len = 0;

                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_CHAIN && !rate_limiter_consume(p->limiter, 0, 1)) {
                                virtq_unpop(q);
                                p->stats.rate_limited++;
                                goto out; /* the limiter's timer resumes us */
                        }
                        if (r != VIRTQ_CHAIN || handle(p, q, &len))
                                p->stats.bad_requests++;
                        p->stats.requests++;
                        if (virtq_push(q, p->chain.head, len))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
out:
        if (q->broken)
                virtio_needs_reset(&p->vd);
        else if (used)
                virtio_signal_used(&p->vd, 0);
}

static void pmem_notify(struct virtio_device *vd, unsigned q)
{
        (void)q;
        process(vd->priv);
}

static void pmem_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_pmem *p = vd->priv;

        virtio_config_copy(&p->cfg, sizeof(p->cfg), off, data, len);
}

static void on_limiter(void *opaque, uint32_t events)
{
        struct virtio_pmem *p = opaque;

        (void)events;
        pthread_mutex_lock(&p->vd.lock);
        rate_limiter_timer_fired(p->limiter);
        if (virtq_live(&p->vd.vqs[0]))
                process(p);
        pthread_mutex_unlock(&p->vd.lock);
}

static const struct virtio_device_ops pmem_ops = {
    .config_read = pmem_config_read,
    .notify = pmem_notify,
};

/* Maps the window: an anonymous reservation of its whole size, the file over its start. */
static int map_window(struct virtio_pmem *p, const char *path, struct error *err)
{
        int prot = PROT_READ | (p->read_only ? 0 : PROT_WRITE);
        void *base, *file;

        base = mmap(NULL, p->size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED)
                return error_set(err, -errno, "pmem '%s': mmap of %" PRIu64 " bytes: %s", path,
                                 p->size, strerror(errno));
        file = mmap(base, p->file_size, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, p->fd, 0);
        if (file == MAP_FAILED) {
                int e = errno;

                munmap(base, p->size);
                return error_set(err, -e, "pmem '%s': mmap: %s", path, strerror(e));
        }
        p->host = base;
        return 0;
}

int virtio_pmem_create(const struct virtio_pmem_config *cfg, struct error *err,
                       struct virtio_pmem **out)
{
        static const struct rate_limiter_config unlimited;
        struct virtio_pmem *p = calloc(1, sizeof(*p));
        struct stat st;
        int r;

        if (!p)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(p->name, sizeof(p->name), "%s", cfg->name);
        p->fd = -1;
        p->read_only = cfg->read_only;
        p->loop = cfg->loop;
        p->vd = (struct virtio_device){
            .name = p->name,
            .device_id = VIRTIO_ID_PMEM,
            .nr_queues = 1,
            .queue_max = VIRTIO_PMEM_QUEUE_SIZE,
            .config_len = sizeof(p->cfg),
            .ops = &pmem_ops,
            .priv = p,
        };
        virtio_device_init(&p->vd);
        r = file_open("pmem backing file", cfg->path, cfg->read_only ? O_RDONLY : O_RDWR, 0,
                      FILE_REGULAR, err);
        if (r < 0)
                goto fail;
        p->fd = r;
        r = 0;
        if (fstat(p->fd, &st)) {
                r = error_set(err, -errno, "pmem '%s': %s", cfg->path, strerror(errno));
                goto fail;
        }
        if (st.st_size == 0) {
                r = error_config(err, "Error backing file size is 0");
                goto fail;
        }
        p->file_size = (uint64_t)st.st_size;
        if (!align_up_checked(p->file_size, VIRTIO_PMEM_ALIGN, &p->size) ||
            p->size > SIZE_MAX / 2) {
                r = error_config(err, "pmem '%s': %" PRIu64 " bytes do not fit a window", cfg->path,
                                 p->file_size);
                goto fail;
        }
        p->cfg.size = p->size;
        r = map_window(p, cfg->path, err);
        if (r)
                goto fail;
        r = rate_limiter_create(cfg->limit ? cfg->limit : &unlimited, NULL, NULL, &p->limiter);
        if (!r) {
                r = event_loop_add(cfg->loop, rate_limiter_fd(p->limiter), EPOLLIN, on_limiter, p);
                p->limiter_registered = r == 0;
        }
        if (r) {
                error_set(err, r, "%s: rate limiter: %s", cfg->name, strerror(-r));
                goto fail;
        }
        *out = p;
        return 0;
fail:
        virtio_pmem_destroy(p);
        return r;
}

void virtio_pmem_destroy(struct virtio_pmem *p)
{
        if (!p)
                return;
        if (p->limiter) {
                if (p->limiter_registered)
                        event_loop_remove(p->loop, rate_limiter_fd(p->limiter));
                rate_limiter_destroy(p->limiter);
        }
        if (p->host)
                munmap(p->host, p->size);
        if (p->fd >= 0)
                close(p->fd);
        virtio_device_fini(&p->vd);
        free(p);
}

struct virtio_device *virtio_pmem_device(struct virtio_pmem *p)
{
        return &p->vd;
}

uint64_t virtio_pmem_size(const struct virtio_pmem *p)
{
        return p->size;
}

void *virtio_pmem_host(const struct virtio_pmem *p)
{
        return p->host;
}

bool virtio_pmem_read_only(const struct virtio_pmem *p)
{
        return p->read_only;
}

void virtio_pmem_set_start(struct virtio_pmem *p, uint64_t gpa)
{
        pthread_mutex_lock(&p->vd.lock);
        p->cfg.start = gpa;
        pthread_mutex_unlock(&p->vd.lock);
}

void virtio_pmem_get_stats(struct virtio_pmem *p, struct virtio_pmem_stats *out)
{
        pthread_mutex_lock(&p->vd.lock);
        *out = p->stats;
        pthread_mutex_unlock(&p->vd.lock);
}

void virtio_pmem_set_rate_limiter(struct virtio_pmem *p, const struct rate_limiter_config *limit)
{
        static const struct rate_limiter_config unlimited;

        pthread_mutex_lock(&p->vd.lock);
        /* A refusal still waiting keeps its timer armed, so processing resumes by itself. */
        rate_limiter_update(p->limiter, limit ? limit : &unlimited);
        pthread_mutex_unlock(&p->vd.lock);
}
