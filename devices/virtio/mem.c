#include "mem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "common/util.h"

/* virtio 1.2, 5.15.4 (little-endian, as the host is). */
struct virtio_mem_cfg_space {
        uint64_t block_size;
        uint16_t node_id;
        uint8_t padding[6];
        uint64_t addr;
        uint64_t region_size;
        uint64_t usable_region_size;
        uint64_t plugged_size;
        uint64_t requested_size;
};

struct virtio_mem_req {
        uint16_t type;
        uint16_t padding[3];
        uint64_t addr;
        uint16_t nb_blocks;
        uint16_t padding2[3];
};

struct virtio_mem {
        struct virtio_device vd;
        char name[16];
        uint8_t *host;
        uint64_t nr_blocks;
        uint64_t *plugged; /* one bit per block */
        struct virtio_mem_cfg_space cfg;
        struct virtio_mem_stats stats;
        struct virtq_chain chain;
};

_Static_assert(sizeof(struct virtio_mem_req) == VIRTIO_MEM_REQ_SIZE, "virtio_mem_req");
_Static_assert(sizeof(struct virtio_mem_cfg_space) == 56, "virtio_mem_config");

static bool is_plugged(const struct virtio_mem *m, uint64_t b)
{
        return m->plugged[b / 64] & (1ull << (b % 64));
}

/* Blocks [first, first + n) plugged or not; MADV_DONTNEED gives unplugged ones back. */
static void set_range(struct virtio_mem *m, uint64_t first, uint64_t n, bool plug)
{
        for (uint64_t b = first; b < first + n; b++) {
                if (plug)
                        m->plugged[b / 64] |= 1ull << (b % 64);
                else
                        m->plugged[b / 64] &= ~(1ull << (b % 64));
        }
        if (!plug &&
            madvise(m->host + first * m->cfg.block_size, n * m->cfg.block_size, MADV_DONTNEED))
                LOG_ERROR("%s: madvise: %s", m->name, strerror(errno));
        if (plug)
                m->cfg.plugged_size += n * m->cfg.block_size;
        else
                m->cfg.plugged_size -= n * m->cfg.block_size;
}

/* The range's first block and count, or false when it is not a block-aligned range of at
 * least one block inside the usable region. */
static bool range_ok(const struct virtio_mem *m, uint64_t addr, uint16_t nb, uint64_t *first)
{
        uint64_t off = addr - m->cfg.addr;

        if (nb == 0 || addr < m->cfg.addr || off % m->cfg.block_size)
                return false;
        *first = off / m->cfg.block_size;
        return *first < m->nr_blocks && nb <= m->nr_blocks - *first;
}

/* Counts the plugged blocks of a valid range. */
static uint64_t count_plugged(const struct virtio_mem *m, uint64_t first, uint64_t n)
{
        uint64_t k = 0;

        for (uint64_t b = first; b < first + n; b++)
                k += is_plugged(m, b);
        return k;
}

/* A request's response type (and state for STATE). */
static uint16_t handle(struct virtio_mem *m, const struct virtio_mem_req *req, uint16_t *state)
{
        uint64_t first = 0, k, bytes = (uint64_t)req->nb_blocks * m->cfg.block_size;
        bool valid = range_ok(m, req->addr, req->nb_blocks, &first);

        switch (req->type) {
        case VIRTIO_MEM_REQ_PLUG:
                if (valid && m->cfg.plugged_size + bytes > m->cfg.requested_size)
                        return VIRTIO_MEM_RESP_NACK;
                if (!valid || count_plugged(m, first, req->nb_blocks))
                        return VIRTIO_MEM_RESP_ERROR;
                set_range(m, first, req->nb_blocks, true);
                m->stats.plugs++;
                return VIRTIO_MEM_RESP_ACK;
        case VIRTIO_MEM_REQ_UNPLUG:
                if (valid && m->cfg.plugged_size - bytes < m->cfg.requested_size &&
                    count_plugged(m, first, req->nb_blocks) == req->nb_blocks)
                        return VIRTIO_MEM_RESP_NACK;
                if (!valid || count_plugged(m, first, req->nb_blocks) != req->nb_blocks)
                        return VIRTIO_MEM_RESP_ERROR;
                set_range(m, first, req->nb_blocks, false);
                m->stats.unplugs++;
                return VIRTIO_MEM_RESP_ACK;
        case VIRTIO_MEM_REQ_UNPLUG_ALL:
                for (uint64_t b = 0; b < m->nr_blocks; b++)
                        if (is_plugged(m, b))
                                set_range(m, b, 1, false);
                m->stats.unplug_alls++;
                return VIRTIO_MEM_RESP_ACK;
        case VIRTIO_MEM_REQ_STATE:
                if (!valid)
                        return VIRTIO_MEM_RESP_ERROR;
                k = count_plugged(m, first, req->nb_blocks);
                *state = k == req->nb_blocks ? VIRTIO_MEM_STATE_PLUGGED
                         : k == 0            ? VIRTIO_MEM_STATE_UNPLUGGED
                                             : VIRTIO_MEM_STATE_MIXED;
                m->stats.states++;
                return VIRTIO_MEM_RESP_ACK;
        }
        return VIRTIO_MEM_RESP_ERROR;
}

/* One chain: the response written, or a negative errno (nothing written). */
static int request(struct virtio_mem *m, struct virtq *q, uint32_t *written)
{
        const struct virtq_chain *c = &m->chain;
        struct virtio_mem_req req;
        uint8_t resp[VIRTIO_MEM_RESP_SIZE] = {0};
        uint16_t type, state = 0;
        long n;

        *written = 0;
        if (c->readable != sizeof(req) || c->writable < sizeof(resp))
                return -EINVAL;
        n = virtq_chain_read(q, c, 0, &req, sizeof(req));
        if (n != (long)sizeof(req))
                return n < 0 ? (int)n : -EFAULT;
        type = handle(m, &req, &state);
        if (type == VIRTIO_MEM_RESP_NACK)
                m->stats.nacks++;
        if (type == VIRTIO_MEM_RESP_ERROR)
                m->stats.errors++;
        memcpy(resp, &type, 2);
        memcpy(resp + 8, &state, 2);
        n = virtq_chain_write(q, c, 0, resp, sizeof(resp));
        if (n != (long)sizeof(resp))
                return n < 0 ? (int)n : -EFAULT;
        *written = sizeof(resp);
        return 0;
}

/* Caller holds vd.lock. */
static void process(struct virtio_mem *m)
{
        struct virtq *q = &m->vd.vqs[0];
        bool used = false;
        enum virtq_pop_result r;

        do {
                while ((r = virtq_pop(q, &m->chain)) != VIRTQ_EMPTY) {
                        uint32_t len = 0;

                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r != VIRTQ_CHAIN || request(m, q, &len))
                                m->stats.bad_requests++;
                        m->stats.requests++;
                        if (virtq_push(q, m->chain.head, len))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
        if (q->broken)
                virtio_needs_reset(&m->vd);
        else if (used)
                virtio_signal_used(&m->vd, 0);
}

static void mem_notify(struct virtio_device *vd, unsigned q)
{
        (void)q;
        process(vd->priv);
}

static void mem_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_mem *m = vd->priv;

        virtio_config_copy(&m->cfg, sizeof(m->cfg), off, data, len);
}

/* Snapshots: the device section is versioned (1). It holds the configuration the driver
 * sees (addr, sizes: the block and region sizes are checked against this device's) and
 * the plugged-block bitmap; the queue is the transport's. The plugged blocks' contents go
 * into the memory file (vmm/snapshot.c), loaded by the VMM after this restore. */
#define MEM_STATE_VERSION 1

static void mem_save(struct virtio_device *vd, struct snapbuf_writer *w)
{
        struct virtio_mem *m = vd->priv;

        snapbuf_put_u32(w, MEM_STATE_VERSION);
        snapbuf_put_u64(w, m->cfg.block_size);
        snapbuf_put_u64(w, m->cfg.region_size);
        snapbuf_put_u64(w, m->cfg.addr);
        snapbuf_put_u64(w, m->cfg.requested_size);
        snapbuf_put_u64(w, m->cfg.plugged_size);
        for (uint64_t i = 0; i < (m->nr_blocks + 63) / 64; i++)
                snapbuf_put_u64(w, m->plugged[i]);
}

static int mem_restore(struct virtio_device *vd, struct snapbuf_reader *r)
{
        struct virtio_mem *m = vd->priv;
        uint64_t words = (m->nr_blocks + 63) / 64, k = 0;
        uint32_t version = snapbuf_get_u32(r, "virtio-mem state version");
        uint64_t bs = snapbuf_get_u64(r, "virtio-mem block size");
        uint64_t region = snapbuf_get_u64(r, "virtio-mem region size");
        uint64_t addr = snapbuf_get_u64(r, "virtio-mem address");
        uint64_t requested = snapbuf_get_u64(r, "virtio-mem requested size");
        uint64_t plugged = snapbuf_get_u64(r, "virtio-mem plugged size");
        uint64_t *map;

        if (!snapbuf_ok(r))
                return -EINVAL;
        if (version != MEM_STATE_VERSION)
                return snapbuf_fail(r, "virtio-mem", "unknown device state version"), -EINVAL;
        if (bs != m->cfg.block_size || region != m->cfg.region_size ||
            (m->cfg.addr && addr != m->cfg.addr))
                return snapbuf_fail(r, "virtio-mem", "a region of another shape or place"), -EINVAL;
        if (requested > region || requested % bs)
                return snapbuf_fail(r, "virtio-mem", "an impossible requested size"), -EINVAL;
        map = calloc(words, sizeof(uint64_t));
        if (!map)
                return snapbuf_fail(r, "virtio-mem", "out of memory"), -EINVAL;
        for (uint64_t i = 0; i < words; i++) {
                map[i] = snapbuf_get_u64(r, "virtio-mem plugged blocks");
                k += (uint64_t)__builtin_popcountll(map[i]);
        }
        /* Bits past the last block, or a plugged size the bitmap does not add up to. */
        if (snapbuf_ok(r) &&
            ((m->nr_blocks % 64 && map[words - 1] >> (m->nr_blocks % 64)) || k * bs != plugged))
                snapbuf_fail(r, "virtio-mem", "plugged blocks that do not match the plugged size");
        if (!snapbuf_ok(r)) {
                free(map);
                return -EINVAL;
        }
        free(m->plugged);
        m->plugged = map;
        m->cfg.addr = addr;
        m->cfg.requested_size = requested;
        m->cfg.plugged_size = plugged;
        return 0;
}

static const struct virtio_device_ops mem_ops = {
    .config_read = mem_config_read,
    .notify = mem_notify,
    .save = mem_save,
    .restore = mem_restore,
};

int virtio_mem_create(const struct virtio_mem_config *cfg, struct error *err,
                      struct virtio_mem **out)
{
        struct virtio_mem *m;
        void *host;

        if (!cfg->block_size || (cfg->block_size & (cfg->block_size - 1)) || !cfg->region_size ||
            cfg->region_size % cfg->block_size || cfg->region_size / cfg->block_size > (1ull << 24))
                return error_set(err, -EINVAL,
                                 "%s: a region of %" PRIu64 " bytes in blocks of %" PRIu64 " bytes",
                                 cfg->name, cfg->region_size, cfg->block_size);
        m = calloc(1, sizeof(*m));
        if (!m)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(m->name, sizeof(m->name), "%s", cfg->name);
        m->nr_blocks = cfg->region_size / cfg->block_size;
        m->plugged = calloc((m->nr_blocks + 63) / 64, sizeof(uint64_t));
        host = mmap(NULL, cfg->region_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (!m->plugged || host == MAP_FAILED) {
                free(m->plugged);
                free(m);
                return error_set(err, -ENOMEM, "%s: %" PRIu64 " bytes of hotpluggable memory: %s",
                                 cfg->name, cfg->region_size, strerror(ENOMEM));
        }
        m->host = host;
        m->cfg.block_size = cfg->block_size;
        m->cfg.region_size = m->cfg.usable_region_size = cfg->region_size;
        m->vd = (struct virtio_device){
            .name = m->name,
            .device_id = VIRTIO_ID_MEM,
            .nr_queues = 1,
            .queue_max = VIRTIO_MEM_QUEUE_SIZE,
            .config_len = sizeof(m->cfg),
            .ops = &mem_ops,
            .priv = m,
        };
        virtio_device_init(&m->vd);
        *out = m;
        return 0;
}

void virtio_mem_destroy(struct virtio_mem *m)
{
        if (!m)
                return;
        munmap(m->host, m->cfg.region_size);
        free(m->plugged);
        virtio_device_fini(&m->vd);
        free(m);
}

struct virtio_device *virtio_mem_device(struct virtio_mem *m)
{
        return &m->vd;
}

void *virtio_mem_host(const struct virtio_mem *m)
{
        return m->host;
}

void virtio_mem_set_addr(struct virtio_mem *m, uint64_t gpa)
{
        pthread_mutex_lock(&m->vd.lock);
        m->cfg.addr = gpa;
        pthread_mutex_unlock(&m->vd.lock);
}

void virtio_mem_set_requested(struct virtio_mem *m, uint64_t bytes)
{
        pthread_mutex_lock(&m->vd.lock);
        if (m->cfg.requested_size != bytes) {
                m->cfg.requested_size = bytes;
                virtio_signal_config(&m->vd);
        }
        pthread_mutex_unlock(&m->vd.lock);
}

void virtio_mem_layout(const struct virtio_mem *m, struct virtio_mem_layout *out)
{
        *out = (struct virtio_mem_layout){.host = m->host,
                                          .block_size = m->cfg.block_size,
                                          .nr_blocks = m->nr_blocks,
                                          .plugged = m->plugged};
}

void virtio_mem_get_stats(struct virtio_mem *m, struct virtio_mem_stats *out)
{
        pthread_mutex_lock(&m->vd.lock);
        *out = m->stats;
        out->plugged_size = m->cfg.plugged_size;
        out->requested_size = m->cfg.requested_size;
        pthread_mutex_unlock(&m->vd.lock);
}
