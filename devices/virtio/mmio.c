#include "mmio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct virtio_mmio {
        struct virtio_device *vd;
        struct virtio_mmio_config cfg;
        uint64_t offered; /* device features | transport features */
        uint32_t device_features_sel;
        uint32_t driver_features_sel;
        uint64_t driver_features;
        uint32_t queue_sel;
        uint32_t shm_sel;
        uint32_t interrupt_status;
        uint32_t config_generation;
        uint8_t status;
        /* A refused FEATURES_OK stays refused until reset (CC-2: the device is unusable
         * until the driver starts over, not merely until it writes better features). */
        bool features_refused;
        struct virtio_mmio_stats stats;
        struct ratelimit rl;
};

static const struct virtio_transport_ops transport_ops;

int virtio_mmio_create(const struct virtio_mmio_config *cfg, struct virtio_mmio **out)
{
        struct virtio_device *vd = cfg->vdev;
        struct virtio_mmio *t;

        if (vd->nr_queues == 0 || vd->nr_queues > VIRTIO_MAX_QUEUES || vd->queue_max == 0 ||
            vd->queue_max > VIRTQ_MAX_SIZE || (vd->queue_max & (vd->queue_max - 1)))
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->vd = vd;
        t->cfg = *cfg;
        t->offered = vd->features | cfg->extra_features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
        if (!cfg->no_event_idx)
                t->offered |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
        if (!cfg->no_indirect)
                t->offered |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
        t->cfg.required_features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
        ratelimit_init(&t->rl, 1000000000ull, 10);
        pthread_mutex_lock(&vd->lock);
        vd->mem = cfg->mem;
        vd->tops = &transport_ops;
        vd->transport = t;
        vd->acked_features = 0;
        for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
                virtq_reset(&vd->vqs[i]);
        pthread_mutex_unlock(&vd->lock);
        *out = t;
        return 0;
}

/* Caller holds vd->lock. */
static void device_reset(struct virtio_mmio *t)
{
        struct virtio_device *vd = t->vd;

        /* The device first, while its queues still know their memory: it may have pins to
         * release. */
        if (vd->ops->reset)
                vd->ops->reset(vd);
        for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
                virtq_reset(&vd->vqs[i]);
        vd->acked_features = 0;
        t->driver_features = 0;
        t->device_features_sel = t->driver_features_sel = 0;
        t->queue_sel = t->shm_sel = 0;
        t->interrupt_status = 0;
        t->status = 0;
        t->features_refused = false;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
        if (!t)
                return;
        pthread_mutex_lock(&t->vd->lock);
        device_reset(t);
        t->vd->tops = NULL;
        t->vd->transport = NULL;
        pthread_mutex_unlock(&t->vd->lock);
        free(t);
}

static void guest_error(struct virtio_mmio *t, const char *what, uint64_t off, uint32_t v)
{
        t->stats.register_errors++;
        LOG_GUEST(&t->rl, "%s: %s (offset 0x%llx, value 0x%x, status 0x%x)", t->vd->name, what,
                  (unsigned long long)off, v, t->status);
}

static void interrupt(struct virtio_mmio *t, uint32_t why)
{
        t->interrupt_status |= why;
        t->stats.interrupts++;
        irq_line_pulse(&t->cfg.irq);
}

static void tr_signal_used(void *transport, unsigned q)
{
        struct virtio_mmio *t = transport;

        if (q < t->vd->nr_queues && virtq_should_signal(&t->vd->vqs[q]))
                interrupt(t, VIRTIO_MMIO_INT_VRING);
}

static void tr_signal_config(void *transport)
{
        struct virtio_mmio *t = transport;

        t->config_generation++;
        if (t->status & VIRTIO_STATUS_DRIVER_OK)
                interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

static void tr_needs_reset(void *transport)
{
        struct virtio_mmio *t = transport;

        if (t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
                return;
        t->stats.needs_reset++;
        t->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
        LOG_GUEST(&t->rl, "%s: device needs reset (a ring became unusable)", t->vd->name);
        /* The driver learns it through a configuration change notification (2.1.2). */
        if (t->status & VIRTIO_STATUS_DRIVER_OK)
                interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

static const struct virtio_transport_ops transport_ops = {
    .signal_used = tr_signal_used,
    .signal_config = tr_signal_config,
    .needs_reset = tr_needs_reset,
};

static bool operational(const struct virtio_mmio *t)
{
        return (t->status & VIRTIO_STATUS_DRIVER_OK) &&
               !(t->status & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

/* Queue registers may change between FEATURES_OK and DRIVER_OK (Firecracker's rule). */
static struct virtq *setup_queue(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
        struct virtq *q;

        if ((t->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |
                          VIRTIO_STATUS_FAILED)) != VIRTIO_STATUS_FEATURES_OK) {
                guest_error(t, "queue register written outside queue setup", off, v);
                return NULL;
        }
        if (t->queue_sel >= t->vd->nr_queues) {
                guest_error(t, "queue register written for a queue that does not exist", off, v);
                return NULL;
        }
        q = &t->vd->vqs[t->queue_sel];
        if (q->ready && off != VIRTIO_MMIO_QUEUE_READY) {
                guest_error(t, "queue register written while the queue is ready", off, v);
                return NULL;
        }
        return q;
}

static void set_low(gpa_t *a, uint32_t v)
{
        *a = (*a & 0xffffffff00000000ull) | v;
}

static void set_high(gpa_t *a, uint32_t v)
{
        *a = (*a & 0xffffffffull) | ((uint64_t)v << 32);
}

static void queue_ready(struct virtio_mmio *t, struct virtq *q, uint32_t v)
{
        const char *why;

        if (v == 0) {
                q->ready = false;
                return;
        }
        if (v != 1) {
                guest_error(t, "QueueReady accepts only 0 and 1", VIRTIO_MMIO_QUEUE_READY, v);
                return;
        }
        why = virtq_check_config(q, t->vd->queue_max, t->cfg.mem);
        if (why) {
                t->stats.queue_ready_refused++;
                guest_error(t, why, VIRTIO_MMIO_QUEUE_READY, q->size);
                return; /* QueueReady reads back 0 */
        }
        q->ready = true;
}

static bool features_acceptable(struct virtio_mmio *t)
{
        struct virtio_device *vd = t->vd;
        uint64_t f = t->driver_features;

        if (f & ~t->offered)
                return false;
        if ((t->cfg.required_features & f) != t->cfg.required_features)
                return false;
        vd->acked_features = f;
        if (vd->ops->features_ok && !vd->ops->features_ok(vd)) {
                vd->acked_features = 0;
                return false;
        }
        return true;
}

static void driver_ok(struct virtio_mmio *t)
{
        struct virtio_device *vd = t->vd;
        bool event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
        bool indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
        int r;

        for (unsigned i = 0; i < vd->nr_queues; i++)
                if (vd->vqs[i].ready)
                        virtq_start(&vd->vqs[i], t->cfg.mem, event_idx, indirect);
        r = vd->ops->activate ? vd->ops->activate(vd) : 0;
        if (r) {
                LOG_WARN("%s: activation failed: %s", vd->name, strerror(-r));
                tr_needs_reset(t);
        }
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
        uint8_t old = t->status;
        uint8_t new = (uint8_t)((v & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) |
                                (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
        uint8_t added = (uint8_t)(new & ~old);

        if (v == 0) {
                device_reset(t);
                return;
        }
        if (v > 0xff || (old & ~new)) {
                guest_error(t, "status bits can only be added (write 0 to reset)",
                            VIRTIO_MMIO_STATUS, v);
                return;
        }
        if (((new &VIRTIO_STATUS_DRIVER) && !(new &VIRTIO_STATUS_ACKNOWLEDGE)) ||
            ((new &VIRTIO_STATUS_FEATURES_OK) && !(new &VIRTIO_STATUS_DRIVER)) ||
            ((new &VIRTIO_STATUS_DRIVER_OK) && !(new &VIRTIO_STATUS_FEATURES_OK))) {
                guest_error(t, "status bits set out of order", VIRTIO_MMIO_STATUS, v);
                return;
        }
        if ((added & VIRTIO_STATUS_FEATURES_OK) &&
            (t->features_refused || !features_acceptable(t))) {
                /* 3.1.1: the device leaves FEATURES_OK clear; DRIVER_OK cannot follow. */
                t->features_refused = true;
                t->stats.features_refused++;
                guest_error(t, "driver features refused", VIRTIO_MMIO_STATUS,
                            (uint32_t)t->driver_features);
                new &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
                added &= (uint8_t) ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        }
        t->status = new;
        if ((added & VIRTIO_STATUS_DRIVER_OK) && !(new &VIRTIO_STATUS_FAILED))
                driver_ok(t);
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
        struct virtio_device *vd = t->vd;
        const struct virtq *q = t->queue_sel < vd->nr_queues ? &vd->vqs[t->queue_sel] : NULL;

        switch (off) {
        case VIRTIO_MMIO_MAGIC_VALUE:
                return VIRTIO_MMIO_MAGIC;
        case VIRTIO_MMIO_VERSION_REG:
                return VIRTIO_MMIO_VERSION;
        case VIRTIO_MMIO_DEVICE_ID:
                return vd->device_id;
        case VIRTIO_MMIO_VENDOR_ID_REG:
                return VIRTIO_MMIO_VENDOR_ID;
        case VIRTIO_MMIO_DEVICE_FEATURES:
                return t->device_features_sel == 0   ? (uint32_t)t->offered
                       : t->device_features_sel == 1 ? (uint32_t)(t->offered >> 32)
                                                     : 0;
        case VIRTIO_MMIO_QUEUE_NUM_MAX:
                return q ? vd->queue_max : 0;
        case VIRTIO_MMIO_QUEUE_READY:
                return q ? q->ready : 0;
        case VIRTIO_MMIO_INTERRUPT_STATUS:
                return t->interrupt_status;
        case VIRTIO_MMIO_STATUS:
                return t->status;
        case VIRTIO_MMIO_SHM_LEN_LOW:
        case VIRTIO_MMIO_SHM_LEN_HIGH:
        case VIRTIO_MMIO_SHM_BASE_LOW:
        case VIRTIO_MMIO_SHM_BASE_HIGH:
                return 0xffffffff; /* no shared memory regions */
        case VIRTIO_MMIO_QUEUE_RESET:
                return 0;
        case VIRTIO_MMIO_CONFIG_GENERATION:
                return t->config_generation;
        default:
                guest_error(t, "read of a write-only or unknown register", off, 0);
                return 0;
        }
}

static void write_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
        struct virtio_device *vd = t->vd;
        struct virtq *q;

        switch (off) {
        case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
                t->device_features_sel = v;
                return;
        case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
                t->driver_features_sel = v;
                return;
        case VIRTIO_MMIO_DRIVER_FEATURES:
                if ((t->status & (VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                                  VIRTIO_STATUS_FAILED)) != VIRTIO_STATUS_DRIVER) {
                        guest_error(t, "driver features written outside negotiation", off, v);
                        return;
                }
                if (t->driver_features_sel == 0)
                        t->driver_features = (t->driver_features & ~0xffffffffull) | v;
                else if (t->driver_features_sel == 1)
                        t->driver_features =
                            (t->driver_features & 0xffffffffull) | ((uint64_t)v << 32);
                else if (v)
                        guest_error(t, "driver features beyond bit 63", off, v);
                return;
        case VIRTIO_MMIO_QUEUE_SEL:
                t->queue_sel = v;
                return;
        case VIRTIO_MMIO_QUEUE_NUM:
                if ((q = setup_queue(t, off, v)) != NULL) {
                        if (v > 0xffff) {
                                guest_error(t, "queue size too large", off, v);
                                q->size = 0; /* QueueReady must not accept an older size */
                        } else {
                                q->size = (uint16_t)v;
                        }
                }
                return;
        case VIRTIO_MMIO_QUEUE_READY:
                if ((q = setup_queue(t, off, v)) != NULL)
                        queue_ready(t, q, v);
                return;
        case VIRTIO_MMIO_QUEUE_DESC_LOW:
        case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
                if ((q = setup_queue(t, off, v)) == NULL)
                        return;
                if (off == VIRTIO_MMIO_QUEUE_DESC_LOW)
                        set_low(&q->desc, v);
                else if (off == VIRTIO_MMIO_QUEUE_DESC_HIGH)
                        set_high(&q->desc, v);
                else if (off == VIRTIO_MMIO_QUEUE_DRIVER_LOW)
                        set_low(&q->avail, v);
                else if (off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH)
                        set_high(&q->avail, v);
                else if (off == VIRTIO_MMIO_QUEUE_DEVICE_LOW)
                        set_low(&q->used, v);
                else
                        set_high(&q->used, v);
                return;
        case VIRTIO_MMIO_QUEUE_NOTIFY:
                t->stats.notifies++;
                if (!operational(t) || v >= vd->nr_queues || !vd->vqs[v].ready) {
                        guest_error(t, "notification for a queue that is not running", off, v);
                        return;
                }
                vd->ops->notify(vd, v);
                return;
        case VIRTIO_MMIO_INTERRUPT_ACK:
                t->interrupt_status &= ~v;
                return;
        case VIRTIO_MMIO_STATUS:
                write_status(t, v);
                return;
        case VIRTIO_MMIO_SHM_SEL:
                t->shm_sel = v;
                return;
        default:
                guest_error(t, "write to a read-only or unknown register", off, v);
                return;
        }
}

static void mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        struct virtio_device *vd = t->vd;

        memset(data, 0, len);
        pthread_mutex_lock(&vd->lock);
        if (off >= VIRTIO_MMIO_CONFIG) {
                if (vd->ops->config_read)
                        vd->ops->config_read(vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
        } else if (len != 4 || (off & 3)) {
                guest_error(t, "register read that is not 32-bit and aligned", off, len);
        } else {
                put_le32(data, read_reg(t, off));
        }
        pthread_mutex_unlock(&vd->lock);
}

static void mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        struct virtio_device *vd = t->vd;

        pthread_mutex_lock(&vd->lock);
        if (off >= VIRTIO_MMIO_CONFIG) {
                if ((t->status & (VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FAILED)) !=
                    VIRTIO_STATUS_DRIVER)
                        guest_error(t, "configuration written before DRIVER or after FAILED", off,
                                    len);
                else if (vd->ops->config_write)
                        vd->ops->config_write(vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
        } else if (len != 4 || (off & 3)) {
                guest_error(t, "register write that is not 32-bit and aligned", off, len);
        } else {
                write_reg(t, off, get_le32(data));
        }
        pthread_mutex_unlock(&vd->lock);
}

const struct bus_ops *virtio_mmio_bus_ops(void)
{
        static const struct bus_ops ops = {.read = mmio_read, .write = mmio_write};
        return &ops;
}

void virtio_mmio_notify(struct virtio_mmio *t, unsigned q)
{
        struct virtio_device *vd = t->vd;

        pthread_mutex_lock(&vd->lock);
        t->stats.notifies++;
        if (operational(t) && q < vd->nr_queues && vd->vqs[q].ready)
                vd->ops->notify(vd, q);
        else
                guest_error(t, "notification for a queue that is not running",
                            VIRTIO_MMIO_QUEUE_NOTIFY, q);
        pthread_mutex_unlock(&vd->lock);
}

uint8_t virtio_mmio_status(struct virtio_mmio *t)
{
        uint8_t s;

        pthread_mutex_lock(&t->vd->lock);
        s = t->status;
        pthread_mutex_unlock(&t->vd->lock);
        return s;
}

void virtio_mmio_get_stats(struct virtio_mmio *t, struct virtio_mmio_stats *out)
{
        pthread_mutex_lock(&t->vd->lock);
        *out = t->stats;
        pthread_mutex_unlock(&t->vd->lock);
}

struct virtio_device *virtio_mmio_device(struct virtio_mmio *t)
{
        return t->vd;
}

/* ---- snapshots ---- */

#define MMIO_STATE_VERSION 2

void virtio_mmio_save(struct virtio_mmio *t, struct snapbuf_writer *w)
{
        struct virtio_device *vd = t->vd;
        size_t dev;

        pthread_mutex_lock(&vd->lock);
        /* The model first: finishing its in-flight work moves the rings. */
        dev = snapbuf_begin_section(w, SNAPBUF_TAG('V', 'D', 'E', 'V'));
        if (vd->ops->save)
                vd->ops->save(vd, w);
        snapbuf_end_section(w, dev);
        snapbuf_put_u32(w, MMIO_STATE_VERSION);
        snapbuf_put_u32(w, vd->device_id);
        snapbuf_put_u32(w, vd->nr_queues);
        snapbuf_put_u64(w, t->offered);
        snapbuf_put_u8(w, t->status);
        snapbuf_put_u8(w, t->features_refused);
        snapbuf_put_u32(w, t->device_features_sel);
        snapbuf_put_u32(w, t->driver_features_sel);
        snapbuf_put_u64(w, t->driver_features);
        snapbuf_put_u64(w, vd->acked_features);
        snapbuf_put_u32(w, t->queue_sel);
        snapbuf_put_u32(w, t->shm_sel);
        snapbuf_put_u32(w, t->interrupt_status);
        snapbuf_put_u32(w, t->config_generation);
        for (unsigned i = 0; i < vd->nr_queues; i++)
                virtq_save(&vd->vqs[i], w);
        pthread_mutex_unlock(&vd->lock);
}

/* The status bits a driver can have set, in a legal order (write_status's rules). */
static bool status_consistent(uint8_t s)
{
        if ((s & VIRTIO_STATUS_DRIVER) && !(s & VIRTIO_STATUS_ACKNOWLEDGE))
                return false;
        if ((s & VIRTIO_STATUS_FEATURES_OK) && !(s & VIRTIO_STATUS_DRIVER))
                return false;
        if ((s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_FEATURES_OK))
                return false;
        return (s & ~(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |
                      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET |
                      VIRTIO_STATUS_FAILED)) == 0;
}

static bool restore_registers(struct virtio_mmio *t, struct snapbuf_reader *r)
{
        struct virtio_device *vd = t->vd;
        uint32_t version = snapbuf_get_u32(r, "virtio-mmio state version");
        uint32_t id = snapbuf_get_u32(r, "virtio device id");
        uint32_t nq = snapbuf_get_u32(r, "virtio queue count");
        uint64_t offered = snapbuf_get_u64(r, "virtio offered features");
        bool running;

        t->status = snapbuf_get_u8(r, "virtio status");
        uint8_t refused = snapbuf_get_u8(r, "virtio FEATURES_OK refused");
        t->device_features_sel = snapbuf_get_u32(r, "virtio DeviceFeaturesSel");
        t->driver_features_sel = snapbuf_get_u32(r, "virtio DriverFeaturesSel");
        t->driver_features = snapbuf_get_u64(r, "virtio DriverFeatures");
        vd->acked_features = snapbuf_get_u64(r, "virtio acknowledged features");
        t->queue_sel = snapbuf_get_u32(r, "virtio QueueSel");
        t->shm_sel = snapbuf_get_u32(r, "virtio SHMSel");
        t->interrupt_status = snapbuf_get_u32(r, "virtio InterruptStatus");
        t->config_generation = snapbuf_get_u32(r, "virtio ConfigGeneration");
        if (!snapbuf_ok(r))
                return false;
        if (version != MMIO_STATE_VERSION)
                return snapbuf_fail(r, vd->name, "unknown virtio-mmio state version");
        if (id != vd->device_id || nq != vd->nr_queues)
                return snapbuf_fail(r, vd->name, "a different kind of device in this slot");
        if (offered != t->offered)
                return snapbuf_fail(r, vd->name,
                                    "the device now offers other features (configured "
                                    "differently than when the snapshot was taken)");
        if (refused > 1 || (refused && (t->status & VIRTIO_STATUS_FEATURES_OK)))
                return snapbuf_fail(r, vd->name, "impossible transport registers");
        t->features_refused = refused;
        if (!status_consistent(t->status) ||
            (t->interrupt_status & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)))
                return snapbuf_fail(r, vd->name, "impossible transport registers");
        if (t->status & VIRTIO_STATUS_FEATURES_OK) {
                if ((vd->acked_features & ~t->offered) ||
                    (vd->acked_features & t->cfg.required_features) != t->cfg.required_features)
                        return snapbuf_fail(r, vd->name, "acknowledged features not offered");
        } else if (vd->acked_features) {
                return snapbuf_fail(r, vd->name, "features acknowledged without FEATURES_OK");
        }
        running = (t->status & VIRTIO_STATUS_DRIVER_OK) != 0;
        for (unsigned i = 0; i < vd->nr_queues; i++)
                if (!virtq_restore(&vd->vqs[i], r, vd->queue_max, t->cfg.mem, running))
                        return false;
        return true;
}

int virtio_mmio_restore(struct virtio_mmio *t, struct snapbuf_reader *r)
{
        struct virtio_device *vd = t->vd;
        struct snapbuf_reader dev;
        int ret = 0;

        pthread_mutex_lock(&vd->lock);
        device_reset(t);
        snapbuf_get_section(r, SNAPBUF_TAG('V', 'D', 'E', 'V'), &dev, vd->name);
        if (!restore_registers(t, r))
                ret = -EINVAL;
        if (!ret && vd->ops->restore)
                ret = vd->ops->restore(vd, &dev) ? -EINVAL : 0;
        if (!ret && !snapbuf_expect_end(&dev, vd->name))
                ret = -EINVAL;
        snapbuf_merge(r, &dev);
        if (ret) {
                device_reset(t);
                pthread_mutex_unlock(&vd->lock);
                return ret;
        }
        if (operational(t)) {
                int r2 = vd->ops->activate ? vd->ops->activate(vd) : 0;

                if (r2) {
                        LOG_WARN("%s: activation after restore failed: %s", vd->name,
                                 strerror(-r2));
                        tr_needs_reset(t);
                } else {
                        for (unsigned q = 0; q < vd->nr_queues; q++)
                                if (vd->vqs[q].ready && operational(t))
                                        vd->ops->notify(vd, q);
                }
        }
        /* An interrupt raised just before the snapshot may not have reached the guest. */
        if (t->interrupt_status)
                irq_line_pulse(&t->cfg.irq);
        pthread_mutex_unlock(&vd->lock);
        return 0;
}
