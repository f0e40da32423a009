#include "virtio_harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OPS      512
#define MAX_SEGS     8
#define NR_GRANULES  (VH_MEM_SIZE / OWNERSHIP_GRANULE)
#define PATTERN      0x5a
#define TRANSITION_S 5 /* a transition to private waits for pins: longer is a device bug */

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "virtio harness: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static struct event_loop *loop;

/* Private granules and the contents only the guest may change. */
static bool private_[NR_GRANULES];
static uint8_t shadow[NR_GRANULES][OWNERSHIP_GRANULE];

/* ---- guest memory ---- */

static gpa_t granule_gpa(unsigned i)
{
        gpa_t g = (gpa_t)i * OWNERSHIP_GRANULE;

        return g < VH_LOW_END ? g : VH_HIGH_START + (g - VH_LOW_END);
}

static int granule_of(gpa_t a)
{
        if (a < VH_LOW_END)
                return (int)(a / OWNERSHIP_GRANULE);
        if (a >= VH_HIGH_START && a - VH_HIGH_START < VH_HIGH_SIZE)
                return (int)((VH_LOW_END + (a - VH_HIGH_START)) / OWNERSHIP_GRANULE);
        return -1;
}

static void check_private(struct vh *h)
{
        static uint8_t page[OWNERSHIP_GRANULE];

        for (unsigned i = 0; h->own && i < NR_GRANULES; i++) {
                if (!private_[i])
                        continue;
                CHECK(guest_mem_read(h->mem, granule_gpa(i), page, sizeof(page)) == 0);
                if (memcmp(page, shadow[i], sizeof(page))) {
                        fprintf(stderr, "virtio harness: %s wrote into private granule 0x%llx\n",
                                h->dev->name, (unsigned long long)granule_gpa(i));
                        abort();
                }
        }
}

/* The guest itself wrote memory (through the test driver): private contents follow. */
static void resync_private(struct vh *h)
{
        for (unsigned i = 0; h->own && i < NR_GRANULES; i++)
                if (private_[i])
                        CHECK(guest_mem_read(h->mem, granule_gpa(i), shadow[i],
                                             OWNERSHIP_GRANULE) == 0);
}

void vh_guest_write(struct vh *h, gpa_t a, const void *p, size_t len)
{
        gpa_t end;

        if (guest_mem_write(h->mem, a, p, len) || !len || !h->own || !range_end(a, len - 1, &end))
                return;
        for (gpa_t g = align_down(a, OWNERSHIP_GRANULE); g <= end; g += OWNERSHIP_GRANULE) {
                int i = granule_of(g);

                if (i >= 0 && private_[i])
                        CHECK(guest_mem_read(h->mem, g, shadow[i], OWNERSHIP_GRANULE) == 0);
        }
}

static void w16(struct vh *h, gpa_t a, uint16_t v)
{
        uint8_t b[2];

        put_le16(b, v);
        vh_guest_write(h, a, b, 2);
}

gpa_t vh_alloc(struct vh *h, uint32_t len)
{
        gpa_t a;

        if (len > VH_BUF_END - VH_BUF_START)
                len = (uint32_t)(VH_BUF_END - VH_BUF_START);
        if (h->buf_next + len > VH_BUF_END)
                h->buf_next = VH_BUF_START;
        a = h->buf_next;
        h->buf_next = (h->buf_next + len + 15) & ~15ull;
        return a;
}

struct event_loop *vh_event_loop(void)
{
        if (!loop && event_loop_create(&loop))
                abort();
        return loop;
}

void vh_loop(struct vh *h)
{
        for (int i = 0; i < 16 && event_loop_run_once(h->loop, 0) > 0; i++)
                ;
}

/* ---- decoding ---- */

static gpa_t dec_addr(struct vh *h, struct fz *f, uint32_t len)
{
        uint8_t sel = fz_u8(f);
        uint32_t v = fz_u32(f);

        if (sel < 160)
                return vh_alloc(h, len);
        if (sel < 200)
                return VH_BUF_START + v % (VH_BUF_END - VH_BUF_START);
        if (sel < 220)
                return v % VH_LOW_END; /* anywhere low, rings included */
        if (sel < 235)
                return VH_HIGH_START + v % VH_HIGH_SIZE;
        if (sel < 245)
                return VH_LOW_END - (v & 0xfff); /* straddling the end of low RAM */
        return fz_u64(f);
}

static uint32_t dec_len(struct fz *f)
{
        uint8_t sel = fz_u8(f);

        if (sel < 96)
                return fz_u8(f);
        if (sel < 224)
                return fz_u16(f) % 8193;
        if (sel < 250)
                return fz_u32(f) % (128u << 10);
        return fz_u32(f);
}

/* ---- the driver ---- */

static const struct bus_ops *ops(void)
{
        return virtio_mmio_bus_ops();
}

static void reg_write(struct vh *h, uint32_t off, uint32_t v)
{
        uint8_t b[4];

        put_le32(b, v);
        ops()->write(h->t, off, b, 4);
}

static void bring_up(struct vh *h, uint64_t want, const uint8_t *qexp)
{
        uint64_t f = vdrv_device_features(&h->d) & want;
        uint8_t st;

        /* Usually the features a driver cannot do without; bit 63 leaves them out. */
        if (!(want >> 63)) {
                f |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
                if (h->own)
                        f |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
        }
        check_private(h);
        st = vdrv_negotiate(&h->d, f);
        memset(h->ready, 0, sizeof(h->ready));
        if (st & VIRTIO_STATUS_FEATURES_OK) {
                for (unsigned q = 0; q < h->dev->nr_queues; q++)
                        if (!(qexp[q] & 0x80))
                                h->ready[q] =
                                    vdrv_setup_queue(&h->d, q, (uint16_t)(1u << (qexp[q] % 11)));
                resync_private(h); /* the driver zeroed its rings */
                vdrv_driver_ok(&h->d);
        }
}

static void restart_driver(struct vh *h)
{
        vdrv_init(&h->d, h->mem, VH_RING_START, VH_RING_END);
        vdrv_attach(&h->d, h->t);
}

/* A chain of up to MAX_SEGS buffers, possibly through an indirect table. */
static void op_chain(struct vh *h, struct fz *f)
{
        unsigned q = fz_below(f, h->dev->nr_queues), n = 1 + fz_below(f, MAX_SEGS);
        uint8_t mode = fz_u8(f);
        bool indirect = mode & 1, kick = !(mode & 2);
        struct vdrv_queue *vq = &h->d.q[q];
        uint8_t desc[MAX_SEGS][16];
        uint16_t head;

        if (!h->ready[q])
                return;
        for (unsigned i = 0; i < n; i++) {
                uint8_t seg = fz_u8(f);
                uint32_t len = dec_len(f);
                bool write = seg & 1;
                gpa_t a = dec_addr(h, f, len);
                size_t cl;
                const uint8_t *content = write ? NULL : fz_bytes(f, 4096, &cl);

                if (content)
                        vh_guest_write(h, a, content, cl < len ? cl : len);
                put_le64(desc[i], a);
                put_le32(desc[i] + 8, len);
                put_le16(desc[i] + 12, (uint16_t)((i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
                                                  (write ? VIRTQ_DESC_F_WRITE : 0)));
                put_le16(desc[i] + 14, 0);
        }
        head = vq->next_desc;
        if (indirect) {
                gpa_t table = vh_alloc(h, 16 * n);
                uint8_t d[16];

                for (unsigned i = 0; i < n; i++) {
                        put_le16(desc[i] + 14, (uint16_t)(i + 1));
                        vh_guest_write(h, table + 16ull * i, desc[i], 16);
                }
                put_le64(d, table);
                put_le32(d + 8, 16 * n);
                put_le16(d + 12, VIRTQ_DESC_F_INDIRECT);
                put_le16(d + 14, 0);
                vh_guest_write(h, vq->desc + 16ull * head, d, 16);
                vq->next_desc = (uint16_t)((head + 1) % vq->size);
        } else {
                for (unsigned i = 0; i < n; i++) {
                        uint16_t idx = (uint16_t)((head + i) % vq->size);

                        put_le16(desc[i] + 14, (uint16_t)((head + i + 1) % vq->size));
                        vh_guest_write(h, vq->desc + 16ull * idx, desc[i], 16);
                }
                vq->next_desc = (uint16_t)((head + n) % vq->size);
        }
        w16(h, vq->avail + 4 + 2ull * (vq->avail_idx % vq->size), head);
        vq->avail_idx++;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        w16(h, vq->avail + 2, vq->avail_idx);
        if (kick)
                virtio_mmio_notify(h->t, q);
}

static void op_desc(struct vh *h, struct fz *f)
{
        unsigned q = fz_below(f, h->dev->nr_queues);
        struct vdrv_queue *vq = &h->d.q[q];
        uint32_t len;
        uint8_t d[16];

        if (!h->ready[q])
                return;
        len = dec_len(f);
        put_le64(d, dec_addr(h, f, len));
        put_le32(d + 8, len);
        put_le16(d + 12, fz_u8(f) & 7);
        put_le16(d + 14, fz_u16(f) % (vq->size + 1u));
        vh_guest_write(h, vq->desc + 16ull * fz_below(f, vq->size), d, 16);
}

/* The driver collects used elements (nothing is asserted about them: the guest may have
 * scribbled over its own used ring). Only where the device uses the rings the driver set
 * up: raw register writes (a reset, a queue reprogrammed behind the driver's back) can leave
 * the two disagreeing. */
static void op_used(struct vh *h)
{
        for (unsigned q = 0; q < h->dev->nr_queues; q++) {
                const struct virtq *dq = &h->vd->vqs[q];
                uint16_t id;
                uint32_t len;

                if (!h->ready[q] || !dq->ready || dq->size != h->d.q[q].size ||
                    dq->used != h->d.q[q].used || dq->avail != h->d.q[q].avail)
                        continue;
                for (unsigned i = 0; i < h->d.q[q].size; i++) {
                        if (!vdrv_get_used(&h->d, q, &id, &len))
                                break;
                }
        }
}

struct transition {
        struct ownership *own;
        gpa_t gpa;
        uint64_t len;
        atomic_bool done;
};

static void *make_private(void *opaque)
{
        struct transition *t = opaque;

        CHECK(ownership_make_private(t->own, t->gpa, t->len) == 0);
        atomic_store(&t->done, true);
        return NULL;
}

/* The guest converts granules. A conversion to private waits until the host has released
 * its pins on them: the device's event loop keeps running meanwhile (the VMM thread does
 * while a vCPU converts), and a device that never lets go is a bug. */
static void op_convert(struct vh *h, struct fz *f)
{
        unsigned first = fz_below(f, NR_GRANULES), n = 1 + fz_below(f, 8);
        bool priv = fz_bool(f);
        struct transition t = {.own = h->own};
        struct timespec start, now;
        pthread_t th;

        if (!h->own)
                return;
        if (first + n > NR_GRANULES)
                n = NR_GRANULES - first;
        /* The conversion covers one region: granules of the low and high RAM are not
         * contiguous guest addresses. */
        if (granule_gpa(first) < VH_LOW_END && granule_gpa(first + n - 1) >= VH_LOW_END)
                n = (unsigned)(VH_LOW_END / OWNERSHIP_GRANULE) - first;
        t.gpa = granule_gpa(first);
        t.len = n * OWNERSHIP_GRANULE;
        check_private(h);
        if (!priv) {
                CHECK(ownership_make_shared(h->own, t.gpa, t.len) == 0);
                for (unsigned i = first; i < first + n; i++)
                        private_[i] = false;
                return;
        }
        CHECK(pthread_create(&th, NULL, make_private, &t) == 0);
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (!atomic_load(&t.done)) {
                event_loop_run_once(h->loop, 1);
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - start.tv_sec > TRANSITION_S) {
                        fprintf(stderr,
                                "virtio harness: %s holds guest memory: a conversion "
                                "to private waited %d s\n",
                                h->dev->name, TRANSITION_S);
                        abort();
                }
        }
        pthread_join(th, NULL);
        /* Private now: the guest puts its secret there. */
        for (unsigned i = first; i < first + n; i++) {
                private_[i] = true;
                memset(shadow[i], PATTERN, OWNERSHIP_GRANULE);
                CHECK(guest_mem_write(h->mem, granule_gpa(i), shadow[i], OWNERSHIP_GRANULE) == 0);
        }
}

static void op_mmio(struct vh *h, struct fz *f, bool write)
{
        static const uint32_t lens[] = {4, 1, 2, 8};
        uint32_t off = fz_u16(f) % 0x200;
        uint8_t sel = fz_u8(f), b[8];
        uint32_t len = sel < 192 ? 4 : lens[sel % 4];
        uint64_t v = fz_u64(f);

        /* Mostly aligned registers. */
        if (off < VIRTIO_MMIO_CONFIG && sel < 224)
                off &= ~3u;
        put_le64(b, v);
        if (write)
                ops()->write(h->t, off, b, len);
        else
                ops()->read(h->t, off, b, len);
}

int vh_run(const struct vh_device *dev, const uint8_t *data, size_t size)
{
        struct guest_mem_spec spec = {
            .size = VH_MEM_SIZE, .hole_start = VH_LOW_END, .hole_end = VH_HIGH_START};
        struct virtio_mmio_config mc = {0};
        struct error err = {0};
        struct vh h = {.dev = dev};
        uint8_t qexp[VIRTIO_MAX_QUEUES];
        uint8_t mode;
        uint64_t want;
        unsigned nops = 0;
        struct fz f;

        fz_init(&f, data, size);
        mode = fz_u8(&f);
        want = fz_u64(&f);
        for (unsigned q = 0; q < dev->nr_queues; q++)
                qexp[q] = fz_u8(&f);
        h.loop = vh_event_loop();
        h.buf_next = VH_BUF_START;
        memset(private_, 0, sizeof(private_));
        CHECK(guest_mem_create(&spec, &err, &h.mem) == 0);
        CHECK(hostmem_create(h.mem, dev->name, &h.hm) == 0);
        if (mode & 2) {
                CHECK(ownership_create(h.mem, false, &h.own) == 0);
                hostmem_set_ownership(h.hm, h.own);
        }
        h.vd = dev->create(&h, &f);
        if (!h.vd)
                goto out;
        mc.vdev = h.vd;
        mc.mem = h.hm;
        restart_driver(&h);
        mc.irq = vdrv_irq_line(&h.d);
        mc.extra_features = dev->extra_features;
        if (h.own || (mode & 16)) {
                mc.extra_features |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
                if (h.own)
                        mc.required_features |= VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
        }
        mc.no_event_idx = mode & 4;
        mc.no_indirect = mode & 8;
        CHECK(virtio_mmio_create(&mc, &h.t) == 0);
        h.d.t = h.t;
        if (mode & 1)
                bring_up(&h, want, qexp);

        while (!fz_empty(&f) && nops++ < MAX_OPS) {
                switch (fz_u8(&f) % 16) {
                case 0:
                        op_mmio(&h, &f, true);
                        break;
                case 1:
                        op_mmio(&h, &f, false);
                        break;
                case 2: {
                        unsigned q = fz_below(&f, dev->nr_queues + 1);
                        uint16_t qs = (uint16_t)(1u << fz_below(&f, 11));

                        check_private(&h);
                        /* The test driver's ring heap is bump-allocated: room or nothing. */
                        if (h.d.heap + 26ull * qs + 64 > h.d.heap_end)
                                break;
                        if (q < VIRTIO_MAX_QUEUES) {
                                bool ok = vdrv_setup_queue(&h.d, q, qs);
                                if (q < dev->nr_queues)
                                        h.ready[q] = ok;
                        }
                        resync_private(&h);
                        break;
                }
                case 3:
                case 4:
                        op_chain(&h, &f);
                        break;
                case 5:
                        op_desc(&h, &f);
                        break;
                case 6: { /* a raw avail entry and index */
                        unsigned q = fz_below(&f, dev->nr_queues);
                        struct vdrv_queue *vq = &h.d.q[q];
                        uint16_t v = fz_u16(&f);

                        if (!h.ready[q])
                                break;
                        if (fz_bool(&f)) {
                                w16(&h, vq->avail + 4 + 2ull * (vq->avail_idx % vq->size), v);
                                vq->avail_idx++;
                        } else {
                                vq->avail_idx = v;
                        }
                        w16(&h, vq->avail + 2, vq->avail_idx);
                        break;
                }
                case 7:
                        virtio_mmio_notify(h.t, fz_below(&f, VIRTIO_MAX_QUEUES));
                        break;
                case 8:
                        vh_loop(&h);
                        break;
                case 9:
                case 10:
                        if (dev->op)
                                dev->op(&h, &f);
                        break;
                case 11: {
                        uint64_t w = fz_u64(&f);

                        for (unsigned q = 0; q < dev->nr_queues; q++)
                                qexp[q] = fz_u8(&f);
                        reg_write(&h, VIRTIO_MMIO_STATUS, 0);
                        restart_driver(&h);
                        bring_up(&h, w, qexp);
                        break;
                }
                case 12:
                        op_convert(&h, &f);
                        break;
                case 13: {
                        size_t len;
                        gpa_t a = dec_addr(&h, &f, 512);
                        const uint8_t *b = fz_bytes(&f, 512, &len);

                        vh_guest_write(&h, a, b, len);
                        break;
                }
                case 14:
                        op_used(&h);
                        break;
                case 15: /* the avail flags / used_event field, for interrupt suppression */
                {
                        unsigned q = fz_below(&f, dev->nr_queues);
                        struct vdrv_queue *vq = &h.d.q[q];

                        if (h.ready[q])
                                w16(&h, fz_bool(&f) ? vq->avail : vq->avail + 4 + 2ull * vq->size,
                                    fz_u16(&f));
                        break;
                }
                }
        }
        vh_loop(&h);
        op_used(&h);
        check_private(&h);
        virtio_mmio_destroy(h.t);
        check_private(&h);
        dev->destroy(&h);
out:
        hostmem_destroy(h.hm);
        ownership_destroy(h.own);
        guest_mem_destroy(h.mem);
        return 0;
}
