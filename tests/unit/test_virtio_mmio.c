/* The virtio-mmio transport against a hostile driver, with a fake device model that
 * completes every chain and records what the transport asked of it. Registers are driven
 * through the bus ops the way guest MMIO accesses reach them; interrupts are counted on a
 * fake irq line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/mmio.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM        MiB(4)
#define HOLE_START 0xc0000000ull
#define HOLE_END   0x100000000ull
#define FAKE_ID    42
#define FAKE_QMAX  64
#define FAKE_NRQ   2
#define FAKE_FEAT  (VIRTIO_BIT(0) | VIRTIO_BIT(3)) /* two device-specific bits */

#define S_ACK  VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV  VIRTIO_STATUS_DRIVER
#define S_FOK  VIRTIO_STATUS_FEATURES_OK
#define S_DOK  VIRTIO_STATUS_DRIVER_OK
#define S_NR   VIRTIO_STATUS_DEVICE_NEEDS_RESET
#define S_FAIL VIRTIO_STATUS_FAILED

/* ---- the fake device model ---- */

struct fake_dev {
        struct virtio_device vd;
        uint8_t config[16];
        unsigned notifies[VIRTIO_MAX_QUEUES], activates, resets, features_ok_calls;
        unsigned config_writes;
        unsigned chains, bad_chains;
        int activate_result;
        bool refuse_features;
        uint64_t acked_at_activate;
        struct virtq_chain chain;
};

static void fake_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct fake_dev *fd = vd->priv;

        virtio_config_copy(fd->config, sizeof(fd->config), off, data, len);
}

static void fake_config_write(struct virtio_device *vd, uint32_t off, const uint8_t *data,
                              uint32_t len)
{
        struct fake_dev *fd = vd->priv;

        fd->config_writes++;
        if (off < sizeof(fd->config) && len <= sizeof(fd->config) - off)
                memcpy(fd->config + off, data, len);
}

static bool fake_features_ok(struct virtio_device *vd)
{
        struct fake_dev *fd = vd->priv;

        fd->features_ok_calls++;
        return !fd->refuse_features;
}

static int fake_activate(struct virtio_device *vd)
{
        struct fake_dev *fd = vd->priv;

        fd->activates++;
        fd->acked_at_activate = vd->acked_features;
        return fd->activate_result;
}

static void fake_reset(struct virtio_device *vd)
{
        struct fake_dev *fd = vd->priv;

        fd->resets++;
}

/* Completes every chain with its writable length (as a real device does: pop until empty,
 * re-arm, look again); a broken ring asks for a reset. */
static void fake_notify(struct virtio_device *vd, unsigned qi)
{
        struct fake_dev *fd = vd->priv;
        struct virtq *q = &vd->vqs[qi];
        enum virtq_pop_result r;
        bool used = false;

        fd->notifies[qi]++;
        do {
                while ((r = virtq_pop(q, &fd->chain)) != VIRTQ_EMPTY && r != VIRTQ_BROKEN) {
                        if (r == VIRTQ_CHAIN)
                                fd->chains++;
                        else
                                fd->bad_chains++;
                        if (virtq_push(q, fd->chain.head,
                                       r == VIRTQ_CHAIN ? fd->chain.writable : 0))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
        if (q->broken)
                virtio_needs_reset(vd);
        else if (used)
                virtio_signal_used(vd, qi);
}

static const struct virtio_device_ops fake_ops = {
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .features_ok = fake_features_ok,
    .activate = fake_activate,
    .reset = fake_reset,
    .notify = fake_notify,
};

/* ---- fixture ---- */

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct fake_dev dev;
        struct fake_irq irq;
        struct virtio_mmio *t;
        struct vdriver d;
};

static void create_transport(struct fx *f, const struct virtio_mmio_config *extra)
{
        struct virtio_mmio_config mc = {0};

        if (extra)
                mc = *extra;
        mc.vdev = &f->dev.vd;
        mc.mem = f->hm;
        mc.irq = fake_irq_line(&f->irq);
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        f->mem = test_mem_new(MEM, HOLE_START, HOLE_END);
        assert_int_equal(hostmem_create(f->mem, "fake", &f->hm), 0);
        f->dev.vd = (struct virtio_device){
            .name = "fake0",
            .device_id = FAKE_ID,
            .nr_queues = FAKE_NRQ,
            .queue_max = FAKE_QMAX,
            .features = FAKE_FEAT,
            .config_len = sizeof(f->dev.config),
            .ops = &fake_ops,
            .priv = &f->dev,
        };
        virtio_device_init(&f->dev.vd);
        for (unsigned i = 0; i < sizeof(f->dev.config); i++)
                f->dev.config[i] = (uint8_t)(0x10 + i);
        fake_irq_init(&f->irq);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        create_transport(f, NULL);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        virtio_mmio_destroy(f->t);
        virtio_device_fini(&f->dev.vd);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static uint32_t rd(struct fx *f, uint32_t off)
{
        return vdrv_read32(&f->d, off);
}

static void wr(struct fx *f, uint32_t off, uint32_t v)
{
        vdrv_write32(&f->d, off, v);
}

static uint32_t status(struct fx *f)
{
        return rd(f, VIRTIO_MMIO_STATUS);
}

static struct virtio_mmio_stats stats(struct fx *f)
{
        struct virtio_mmio_stats s;

        virtio_mmio_get_stats(f->t, &s);
        return s;
}

static void driver_features(struct fx *f, uint64_t feat)
{
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat);
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> 32));
}

/* Status ACK | DRIVER, features written, FEATURES_OK requested: returns the status. */
static uint32_t negotiate(struct fx *f, uint64_t feat)
{
        return vdrv_negotiate(&f->d, feat);
}

static void set64(struct fx *f, uint32_t lo, uint64_t v)
{
        wr(f, lo, (uint32_t)v);
        wr(f, lo + 4, (uint32_t)(v >> 32));
}

/* Programs queue q (size, areas) without setting it ready. */
static void program_queue(struct fx *f, unsigned q, uint32_t size, gpa_t desc, gpa_t avail,
                          gpa_t used)
{
        wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
        wr(f, VIRTIO_MMIO_QUEUE_NUM, size);
        set64(f, VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
        set64(f, VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail);
        set64(f, VIRTIO_MMIO_QUEUE_DEVICE_LOW, used);
}

static const uint64_t V1 = VIRTIO_BIT(VIRTIO_F_VERSION_1);

/* Negotiated, both queues of 16 entries ready, DRIVER_OK. */
static void bring_up(struct fx *f, uint64_t feat)
{
        assert_true(negotiate(f, feat) & S_FOK);
        for (unsigned q = 0; q < FAKE_NRQ; q++)
                assert_true(vdrv_setup_queue(&f->d, q, 16));
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
}

/* ---- register map ---- */

static void test_register_map(void **state)
{
        struct fx *f = *state;

        assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
        assert_int_equal(rd(f, VIRTIO_MMIO_VERSION_REG), 2);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), FAKE_ID);
        assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID_REG), VIRTIO_MMIO_VENDOR_ID);
        assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), FAKE_QMAX);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_RESET), 0);
        /* No shared memory regions: length and base read as all ones, whatever SHMSel. */
        for (uint32_t sel = 0; sel < 3; sel++) {
                wr(f, VIRTIO_MMIO_SHM_SEL, sel);
                assert_int_equal(rd(f, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
                assert_int_equal(rd(f, VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffffu);
                assert_int_equal(rd(f, VIRTIO_MMIO_SHM_BASE_LOW), 0xffffffffu);
                assert_int_equal(rd(f, VIRTIO_MMIO_SHM_BASE_HIGH), 0xffffffffu);
        }
        assert_int_equal(stats(f).register_errors, 0);
        /* Legacy registers (GuestPageSize, QueueAlign, QueuePFN) do not exist. */
        assert_int_equal(rd(f, 0x028), 0);
        assert_int_equal(rd(f, 0x03c), 0);
        assert_int_equal(rd(f, 0x040), 0);
        assert_int_equal(stats(f).register_errors, 3);
}

static void test_write_only_and_read_only_registers(void **state)
{
        struct fx *f = *state;

        /* Write-only registers read as 0 and count. */
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NOTIFY), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_ACK), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_DRIVER_FEATURES), 0);
        assert_int_equal(stats(f).register_errors, 4);
        /* Read-only registers ignore writes. */
        wr(f, VIRTIO_MMIO_MAGIC_VALUE, 0);
        wr(f, VIRTIO_MMIO_DEVICE_ID, 7);
        wr(f, VIRTIO_MMIO_QUEUE_NUM_MAX, 1024);
        wr(f, VIRTIO_MMIO_INTERRUPT_STATUS, 3);
        wr(f, VIRTIO_MMIO_CONFIG_GENERATION, 9);
        wr(f, VIRTIO_MMIO_DEVICE_FEATURES, 0xffffffff);
        assert_int_equal(stats(f).register_errors, 10);
        assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), FAKE_ID);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), FAKE_QMAX);
        assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
}

static void test_register_access_width(void **state)
{
        struct fx *f = *state;
        const struct bus_ops *ops = virtio_mmio_bus_ops();
        uint8_t b[8];

        /* Only aligned 32-bit accesses reach registers; the rest read 0 and count. */
        for (uint32_t len = 1; len <= 8; len *= 2) {
                if (len == 4)
                        continue;
                memset(b, 0xaa, sizeof(b));
                ops->read(f->t, VIRTIO_MMIO_MAGIC_VALUE, b, len);
                for (uint32_t i = 0; i < len; i++)
                        assert_int_equal(b[i], 0);
        }
        memset(b, 0xaa, sizeof(b));
        ops->read(f->t, VIRTIO_MMIO_MAGIC_VALUE + 2, b, 4);
        assert_int_equal(get_le32(b), 0);
        assert_int_equal(stats(f).register_errors, 4);
        /* A byte write of ACKNOWLEDGE to Status, a 16-bit one, a misaligned 32-bit one. */
        b[0] = S_ACK;
        b[1] = 0;
        ops->write(f->t, VIRTIO_MMIO_STATUS, b, 1);
        ops->write(f->t, VIRTIO_MMIO_STATUS, b, 2);
        put_le32(b, S_ACK << 8);
        ops->write(f->t, VIRTIO_MMIO_STATUS - 1, b, 4);
        put_le64(b, S_ACK);
        ops->write(f->t, VIRTIO_MMIO_STATUS, b, 8);
        assert_int_equal(status(f), 0);
        assert_int_equal(stats(f).register_errors, 8);
}

/* ---- features ---- */

static void test_device_features_words(void **state)
{
        struct fx *f = *state;
        uint64_t feat;

        wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES),
                         (uint32_t)(FAKE_FEAT | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
                                    VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)));
        wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 is bit 32 */
        for (uint32_t sel = 2; sel < 5; sel++) {
                wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
                assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
        }
        wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);

        /* A transport without EVENT_IDX/INDIRECT, offering ACCESS_PLATFORM. */
        virtio_mmio_destroy(f->t);
        struct virtio_mmio_config mc = {.no_event_idx = true,
                                        .no_indirect = true,
                                        .extra_features = VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM)};
        create_transport(f, &mc);
        feat = vdrv_device_features(&f->d);
        assert_int_equal(feat, FAKE_FEAT | V1 | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM));
        /* ACCESS_PLATFORM is bit 1 of the second word (docs/confidential.md, "virtio facts"). */
        wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 3);
}

static void test_driver_features_only_in_driver_stage(void **state)
{
        struct fx *f = *state;
        uint64_t errors;

        /* Before DRIVER: not latched (FEATURES_OK then fails for lack of VERSION_1). */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        errors = stats(f).register_errors;
        driver_features(f, V1);
        assert_int_equal(stats(f).register_errors, errors + 2);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        assert_int_equal(stats(f).features_refused, 1);

        /* In DRIVER (after a reset: the refusal stays until one): latched. */
        wr(f, VIRTIO_MMIO_STATUS, 0);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        driver_features(f, V1 | VIRTIO_BIT(0));
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK);
        assert_int_equal(f->dev.vd.acked_features, V1 | VIRTIO_BIT(0));

        /* After FEATURES_OK: refused, the accepted set does not change. */
        errors = stats(f).register_errors;
        driver_features(f, V1 | VIRTIO_BIT(3));
        assert_int_equal(stats(f).register_errors, errors + 2);
        assert_true(vdrv_setup_queue(&f->d, 0, 8));
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        assert_int_equal(f->dev.acked_at_activate, V1 | VIRTIO_BIT(0));

        /* Selecting a word beyond bit 63: a non-zero value is refused. */
        wr(f, VIRTIO_MMIO_STATUS, 0);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        errors = stats(f).register_errors;
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
        assert_int_equal(stats(f).register_errors, errors);
        wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 1);
        assert_int_equal(stats(f).register_errors, errors + 1);
}

static void test_features_ok_refused_unoffered(void **state)
{
        struct fx *f = *state;

        /* Bit 5 was never offered. */
        assert_int_equal(negotiate(f, V1 | VIRTIO_BIT(5)), S_ACK | S_DRV);
        assert_int_equal(stats(f).features_refused, 1);
        assert_int_equal(f->dev.vd.acked_features, 0);
        /* Nor was a bit in the second word. */
        assert_int_equal(negotiate(f, V1 | VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM)), S_ACK | S_DRV);
        /* FEATURES_OK and DRIVER_OK in one write: both refused. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        /* DRIVER_OK cannot follow a refused FEATURES_OK. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        assert_int_equal(f->dev.activates, 0);
        /* Every offered bit at once is fine. */
        assert_true(negotiate(f, vdrv_device_features(&f->d)) & S_FOK);
}

static void test_features_ok_refused_without_version_1(void **state)
{
        struct fx *f = *state;

        assert_int_equal(negotiate(f, 0), S_ACK | S_DRV);
        assert_int_equal(negotiate(f, FAKE_FEAT | VIRTIO_BIT(VIRTIO_F_EVENT_IDX)), S_ACK | S_DRV);
        assert_int_equal(stats(f).features_refused, 2);
        assert_int_equal(f->dev.features_ok_calls, 0);
        assert_int_equal(negotiate(f, V1), S_ACK | S_DRV | S_FOK);
        assert_int_equal(f->dev.features_ok_calls, 1);
}

/* CC-2: after a refused FEATURES_OK, acceptable features do not help until a reset. */
static void test_cc2_refusal_holds_until_reset(void **state)
{
        struct fx *f = *state;

        assert_int_equal(negotiate(f, 0), S_ACK | S_DRV);
        driver_features(f, V1);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        assert_int_equal(stats(f).features_refused, 3);
        assert_int_equal(f->dev.features_ok_calls, 0);
        assert_int_equal(f->dev.activates, 0);
        /* A reset clears it. */
        assert_int_equal(negotiate(f, V1), S_ACK | S_DRV | S_FOK);
        assert_int_equal(f->dev.features_ok_calls, 1);
}

/* CC-2: a feature the transport requires (ACCESS_PLATFORM) must be accepted. */
static void test_cc2_required_feature_not_accepted(void **state)
{
        struct fx *f = *state;
        const uint64_t ap = VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);

        virtio_mmio_destroy(f->t);
        struct virtio_mmio_config mc = {.extra_features = ap, .required_features = ap};
        create_transport(f, &mc);
        assert_int_equal(negotiate(f, V1), S_ACK | S_DRV);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        assert_int_equal(f->dev.activates, 0);
        assert_int_equal(negotiate(f, ap), S_ACK | S_DRV); /* VERSION_1 still required */
        assert_int_equal(negotiate(f, V1 | ap), S_ACK | S_DRV | S_FOK);
}

static void test_device_refuses_feature_combination(void **state)
{
        struct fx *f = *state;

        f->dev.refuse_features = true;
        assert_int_equal(negotiate(f, V1), S_ACK | S_DRV);
        assert_int_equal(f->dev.features_ok_calls, 1);
        assert_int_equal(f->dev.vd.acked_features, 0);
        f->dev.refuse_features = false;
        assert_int_equal(negotiate(f, V1), S_ACK | S_DRV | S_FOK);
}

/* ---- status ---- */

static void test_status_order(void **state)
{
        struct fx *f = *state;

        /* Each bit needs its predecessor. */
        wr(f, VIRTIO_MMIO_STATUS, S_DRV);
        assert_int_equal(status(f), 0);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_FOK);
        assert_int_equal(status(f), S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DOK);
        assert_int_equal(status(f), S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        driver_features(f, V1);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        assert_int_equal(f->dev.activates, 0);
        assert_int_equal(stats(f).register_errors, 4);
        /* The driver cannot set DEVICE_NEEDS_RESET, nor write beyond 8 bits. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_NR);
        assert_int_equal(status(f), S_ACK | S_DRV);
        wr(f, VIRTIO_MMIO_STATUS, 0x100 | S_ACK | S_DRV | S_FOK);
        assert_int_equal(status(f), S_ACK | S_DRV);
        /* Bits cannot be removed except by a reset. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_FOK);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK);
        assert_int_equal(f->dev.resets, 0);
        /* FAILED can always be added; it stops everything. */
        assert_true(vdrv_setup_queue(&f->d, 0, 8));
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_FAIL);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_FAIL);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_FAIL | S_DOK);
        assert_int_equal(f->dev.activates, 0);
        virtio_mmio_notify(f->t, 0);
        assert_int_equal(f->dev.notifies[0], 0);
}

static void test_reset_clears_everything(void **state)
{
        struct fx *f = *state;

        bring_up(f, V1 | VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
        struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 16, 8), .len = 16, .write = true};
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
        wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);

        unsigned resets = f->dev.resets;
        wr(f, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(f->dev.resets, resets + 1);
        assert_int_equal(status(f), 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert_int_equal(f->dev.vd.acked_features, 0);
        for (unsigned q = 0; q < FAKE_NRQ; q++) {
                wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
                assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
                assert_int_equal(f->dev.vd.vqs[q].size, 0);
                assert_int_equal(f->dev.vd.vqs[q].desc, 0);
                assert_int_equal(f->dev.vd.vqs[q].used_idx, 0);
        }
        /* DeviceFeaturesSel is back to 0: the low word. */
        assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES),
                         (uint32_t)(FAKE_FEAT | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
                                    VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)));
        /* The old queue configuration is forgotten: QueueReady without programming fails. */
        assert_true(negotiate(f, V1) & S_FOK);
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        /* And the device comes back up from scratch. */
        bring_up(f, V1);
        assert_int_equal(f->dev.activates, 2);
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->dev.chains, 2);
}

static void test_activate_failure_needs_reset(void **state)
{
        struct fx *f = *state;

        f->dev.activate_result = -EIO;
        assert_true(negotiate(f, V1) & S_FOK);
        assert_true(vdrv_setup_queue(&f->d, 0, 8));
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
        assert_int_equal(stats(f).needs_reset, 1);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        virtio_mmio_notify(f->t, 0);
        assert_int_equal(f->dev.notifies[0], 0);
}

/* ---- queue registers ---- */

static void test_queue_registers_outside_setup_ignored(void **state)
{
        struct fx *f = *state;
        struct virtq *q0 = &f->dev.vd.vqs[0];

        /* Before FEATURES_OK. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        program_queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(q0->size, 0);
        assert_int_equal(q0->desc, 0);
        assert_false(q0->ready);
        assert_int_equal(stats(f).register_errors, 8);

        /* In setup, but while the queue is ready: only QueueReady may change. */
        driver_features(f, V1);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        program_queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
        program_queue(f, 0, 4, 0x20000, 0x21000, 0x22000);
        assert_int_equal(q0->size, 8);
        assert_int_equal(q0->desc, 0x10000);
        assert_int_equal(q0->avail, 0x11000);
        assert_int_equal(q0->used, 0x12000);
        /* QueueReady = 0 is allowed before DRIVER_OK, then the queue can be reprogrammed. */
        wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        program_queue(f, 0, 4, 0x20000, 0x21000, 0x22000);
        assert_int_equal(q0->desc, 0x20000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);

        /* After DRIVER_OK: nothing changes, not even QueueReady. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        uint64_t errors = stats(f).register_errors;
        wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
        program_queue(f, 1, 8, 0x30000, 0x31000, 0x32000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_int_equal(f->dev.vd.vqs[1].desc, 0);
        assert_int_equal(stats(f).register_errors, errors + 9);
}

static void test_queue_ready_refused(void **state)
{
        struct fx *f = *state;
        const struct {
                uint32_t size;
                uint64_t desc, avail, used;
        } bad[] = {
            {0, 0x10000, 0x11000, 0x12000},                /* size 0 */
            {FAKE_QMAX * 2, 0x10000, 0x11000, 0x12000},    /* larger than QueueNumMax */
            {0x10000, 0x10000, 0x11000, 0x12000},          /* does not fit 16 bits */
            {24, 0x10000, 0x11000, 0x12000},               /* not a power of two */
            {8, 0x10008, 0x11000, 0x12000},                /* descriptors not 16-aligned */
            {8, 0x10000, 0x11001, 0x12000},                /* avail not 2-aligned */
            {8, 0x10000, 0x11000, 0x12002},                /* used not 4-aligned */
            {8, MEM, 0x11000, 0x12000},                    /* descriptors past RAM */
            {8, 0x10000, MEM - 8, 0x12000},                /* avail straddles the end of RAM */
            {8, 0x10000, 0x11000, HOLE_START},             /* used in the MMIO hole */
            {8, 0x10000 | (1ull << 32), 0x11000, 0x12000}, /* high address bits */
            {8, 0x10000, 0x11000, 0xfffffffffffff000ull},  /* wraps */
        };

        assert_true(negotiate(f, V1) & S_FOK);
        for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
                program_queue(f, 0, bad[i].size, bad[i].desc, bad[i].avail, bad[i].used);
                wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
                assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        }
        assert_int_equal(stats(f).queue_ready_refused, ARRAY_SIZE(bad));
        /* An impossible QueueNum leaves no usable size behind (not the previous one). */
        program_queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_NUM, 0x10008);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        /* QueueReady accepts only 0 and 1. */
        program_queue(f, 0, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 2);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
        /* The largest size is fine. */
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
        program_queue(f, 1, FAKE_QMAX, 0x20000, 0x21000, 0x22000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
}

static void test_nonexistent_queue(void **state)
{
        struct fx *f = *state;
        uint64_t errors;

        assert_true(negotiate(f, V1) & S_FOK);
        for (uint32_t q = FAKE_NRQ; q < FAKE_NRQ + 3; q++) {
                wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
                assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
                assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        }
        wr(f, VIRTIO_MMIO_QUEUE_SEL, 0xffffffff);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        errors = stats(f).register_errors;
        program_queue(f, 0xffffffff, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_int_equal(stats(f).register_errors, errors + 8);
        /* Just past the device's queues (the transport has room for more). */
        program_queue(f, FAKE_NRQ, 8, 0x10000, 0x11000, 0x12000);
        wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_int_equal(stats(f).register_errors, errors + 16);
        for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
                assert_int_equal(f->dev.vd.vqs[q].size, 0);
}

/* ---- notifications ---- */

static void test_notify_not_running_ignored(void **state)
{
        struct fx *f = *state;
        struct virtio_mmio_stats s;

        /* Before DRIVER_OK, even for a ready queue. */
        assert_true(negotiate(f, V1) & S_FOK);
        assert_true(vdrv_setup_queue(&f->d, 0, 8));
        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        virtio_mmio_notify(f->t, 0);
        assert_int_equal(f->dev.notifies[0], 0);
        /* After DRIVER_OK: queue 1 is not ready, 2 and beyond do not exist. */
        assert_true(vdrv_driver_ok(&f->d) & S_DOK);
        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, FAKE_NRQ);
        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
        virtio_mmio_notify(f->t, 1);
        virtio_mmio_notify(f->t, VIRTIO_MAX_QUEUES);
        assert_int_equal(f->dev.notifies[1], 0);
        s = stats(f);
        assert_int_equal(s.notifies, 7);
        assert_int_equal(s.register_errors, 7);
        /* The ready queue is notified both ways. */
        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        virtio_mmio_notify(f->t, 0);
        assert_int_equal(f->dev.notifies[0], 2);
        assert_int_equal(stats(f).register_errors, 7);
        assert_int_equal(f->irq.raises, 0);
}

static void test_notify_storm(void **state)
{
        struct fx *f = *state;

        bring_up(f, V1 | VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
        for (int i = 0; i < 10000; i++) {
                if (i & 1)
                        wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
                else
                        virtio_mmio_notify(f->t, 0);
        }
        assert_int_equal(f->dev.notifies[0], 10000);
        assert_int_equal(stats(f).notifies, 10000);
        assert_int_equal(f->dev.chains + f->dev.bad_chains, 0);
        assert_int_equal(f->irq.raises, 0);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_DOK);
        /* Still works afterwards. */
        struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8, .write = true};
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->dev.chains, 1);
        assert_int_equal(f->irq.raises, 1);
}

/* ---- interrupts ---- */

static void test_used_interrupt_and_ack(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        bring_up(f, V1);
        struct vdrv_buf b[2] = {{.addr = vdrv_alloc(&f->d, 8, 8), .len = 8},
                                {.addr = vdrv_alloc(&f->d, 32, 8), .len = 32, .write = true}};
        uint16_t head = vdrv_add(&f->d, 1, b, 2);
        vdrv_kick(&f->d, 1);
        assert_true(vdrv_get_used(&f->d, 1, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 32);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(f->irq.level, false); /* an edge */
        assert_int_equal(stats(f).interrupts, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        /* A config change on top; ACK clears only the bits written. */
        virtio_signal_config(&f->dev.vd);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS),
                         VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
        wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0xfffffffc);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert_int_equal(f->irq.raises, 2);
}

static void test_event_idx_through_transport(void **state)
{
        struct fx *f = *state;
        struct vdrv_queue *vq = &f->d.q[0];
        uint8_t ev[2];

        bring_up(f, V1 | VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
        struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8, .write = true};
        /* used_event = 0: interrupt for the first completion only. */
        put_le16(ev, 0);
        vdrv_mem_write(&f->d, vq->avail + 4 + 2ull * vq->size, ev, 2);
        for (int i = 0; i < 3; i++) {
                vdrv_add(&f->d, 0, &b, 1);
                vdrv_kick(&f->d, 0);
        }
        assert_int_equal(f->dev.chains, 3);
        assert_int_equal(f->irq.raises, 1);
        /* The device asked to hear about avail index 3 (avail_event in the used ring). */
        vdrv_mem_read(&f->d, vq->used + 4 + 8ull * vq->size, ev, 2);
        assert_int_equal(get_le16(ev), 3);
        /* used_event = 4: the completion of entry 4 (the fifth) interrupts. */
        put_le16(ev, 4);
        vdrv_mem_write(&f->d, vq->avail + 4 + 2ull * vq->size, ev, 2);
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->irq.raises, 1);
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->irq.raises, 2);
}

static void test_no_interrupt_flag_through_transport(void **state)
{
        struct fx *f = *state;
        uint8_t fl[2];

        bring_up(f, V1);
        struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8, .write = true};
        put_le16(fl, VIRTQ_AVAIL_F_NO_INTERRUPT);
        vdrv_mem_write(&f->d, f->d.q[0].avail, fl, 2);
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->dev.chains, 1);
        assert_int_equal(f->irq.raises, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        put_le16(fl, 0);
        vdrv_mem_write(&f->d, f->d.q[0].avail, fl, 2);
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_int_equal(f->irq.raises, 1);
}

static void test_config_change(void **state)
{
        struct fx *f = *state;

        /* Before DRIVER_OK: the generation moves, no interrupt. */
        virtio_signal_config(&f->dev.vd);
        assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 1);
        assert_int_equal(f->irq.raises, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        bring_up(f, V1);
        virtio_signal_config(&f->dev.vd);
        assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 2);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        /* A reset does not move the generation backwards. */
        wr(f, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 2);
}

static void test_device_needs_reset(void **state)
{
        struct fx *f = *state;

        /* Before DRIVER_OK: the status bit, no interrupt. */
        assert_true(negotiate(f, V1) & S_FOK);
        virtio_needs_reset(&f->dev.vd);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_NR);
        assert_int_equal(f->irq.raises, 0);
        wr(f, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(status(f), 0);

        /* A broken ring while running: the bit and a configuration interrupt, once. */
        bring_up(f, V1);
        uint8_t idx[2];
        put_le16(idx, 100); /* far more than the 16-entry ring holds */
        vdrv_mem_write(&f->d, f->d.q[0].avail + 2, idx, 2);
        vdrv_kick(&f->d, 0);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        assert_int_equal(stats(f).needs_reset, 2);
        virtio_needs_reset(&f->dev.vd);
        assert_int_equal(f->irq.raises, 1);
        assert_int_equal(stats(f).needs_reset, 2);
        /* Notifications stop reaching the device; the driver may not clear the bit. */
        vdrv_kick(&f->d, 1);
        assert_int_equal(f->dev.notifies[1], 0);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_DOK | S_NR);
        /* Only a reset clears it. */
        wr(f, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(status(f), 0);
        bring_up(f, V1);
        assert_int_equal(status(f), S_ACK | S_DRV | S_FOK | S_DOK);
}

/* ---- device configuration space ---- */

static void test_config_read_widths(void **state)
{
        struct fx *f = *state;
        const struct bus_ops *ops = virtio_mmio_bus_ops();
        uint8_t b[8];

        ops->read(f->t, VIRTIO_MMIO_CONFIG + 3, b, 1);
        assert_int_equal(b[0], 0x13);
        ops->read(f->t, VIRTIO_MMIO_CONFIG + 2, b, 2);
        assert_int_equal(get_le16(b), 0x1312);
        ops->read(f->t, VIRTIO_MMIO_CONFIG + 4, b, 4);
        assert_int_equal(get_le32(b), 0x17161514);
        ops->read(f->t, VIRTIO_MMIO_CONFIG + 8, b, 8);
        assert_int_equal(get_le64(b), 0x1f1e1d1c1b1a1918ull);
        /* Partly and wholly past the space: zeros. */
        ops->read(f->t, VIRTIO_MMIO_CONFIG + 12, b, 8);
        assert_int_equal(get_le64(b), 0x1f1e1d1cull);
        memset(b, 0xaa, sizeof(b));
        ops->read(f->t, VIRTIO_MMIO_CONFIG + 0x100, b, 4);
        assert_int_equal(get_le32(b), 0);
        ops->read(f->t, VIRTIO_MMIO_SIZE - 4, b, 4);
        assert_int_equal(get_le32(b), 0);
        /* Config reads are not register accesses. */
        assert_int_equal(stats(f).register_errors, 0);
}

static void test_config_write_needs_driver(void **state)
{
        struct fx *f = *state;
        const struct bus_ops *ops = virtio_mmio_bus_ops();
        uint8_t v[4] = {1, 2, 3, 4};

        ops->write(f->t, VIRTIO_MMIO_CONFIG, v, 4);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK);
        ops->write(f->t, VIRTIO_MMIO_CONFIG, v, 4);
        assert_int_equal(f->dev.config_writes, 0);
        assert_int_equal(f->dev.config[0], 0x10);
        assert_int_equal(stats(f).register_errors, 2);
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        ops->write(f->t, VIRTIO_MMIO_CONFIG + 2, v, 2);
        assert_int_equal(f->dev.config_writes, 1);
        assert_int_equal(f->dev.config[2], 1);
        assert_int_equal(f->dev.config[3], 2);
        /* After FAILED: refused again. */
        wr(f, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FAIL);
        ops->write(f->t, VIRTIO_MMIO_CONFIG, v, 4);
        assert_int_equal(f->dev.config_writes, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_register_map, setup, teardown),
            cmocka_unit_test_setup_teardown(test_write_only_and_read_only_registers, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_register_access_width, setup, teardown),
            cmocka_unit_test_setup_teardown(test_device_features_words, setup, teardown),
            cmocka_unit_test_setup_teardown(test_driver_features_only_in_driver_stage, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_features_ok_refused_unoffered, setup, teardown),
            cmocka_unit_test_setup_teardown(test_cc2_refusal_holds_until_reset, setup, teardown),
            cmocka_unit_test_setup_teardown(test_features_ok_refused_without_version_1, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_cc2_required_feature_not_accepted, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_device_refuses_feature_combination, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_status_order, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reset_clears_everything, setup, teardown),
            cmocka_unit_test_setup_teardown(test_activate_failure_needs_reset, setup, teardown),
            cmocka_unit_test_setup_teardown(test_queue_registers_outside_setup_ignored, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_queue_ready_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_nonexistent_queue, setup, teardown),
            cmocka_unit_test_setup_teardown(test_notify_not_running_ignored, setup, teardown),
            cmocka_unit_test_setup_teardown(test_notify_storm, setup, teardown),
            cmocka_unit_test_setup_teardown(test_used_interrupt_and_ack, setup, teardown),
            cmocka_unit_test_setup_teardown(test_event_idx_through_transport, setup, teardown),
            cmocka_unit_test_setup_teardown(test_no_interrupt_flag_through_transport, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_config_change, setup, teardown),
            cmocka_unit_test_setup_teardown(test_device_needs_reset, setup, teardown),
            cmocka_unit_test_setup_teardown(test_config_read_widths, setup, teardown),
            cmocka_unit_test_setup_teardown(test_config_write_needs_driver, setup, teardown),
        };
        log_set_level(LOG_LEVEL_ERROR); /* the guest-error lines are expected here */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
