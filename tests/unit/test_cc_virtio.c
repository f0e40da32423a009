/* The confidential rules at the virtio transport: a real virtio-rng device behind its
 * virtio-mmio transport, driven by tests/support/vdriver the way guest MMIO accesses and
 * ring writes reach them, with a real ownership map (or, for CC-9, the platform models of
 * arch/cc). The driver's own accesses go through guest_mem (it is the guest); the device's
 * through its hostmem accessor.
 *
 * Memory layout of the protected fixture: the driver's shared heap [HEAP, SHARED_END), the
 * rest of RAM private (SEV-like: everything private, the guest shared its DMA area). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/cc/cc.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/rng.h"
#include "fakes.h"
#include "memory/hostmem.h"
#include "memory/ownership.h"
#include "vdriver.h"

#define MEM        (4u << 20)
#define HOLE_START 0xc0000000ull
#define HOLE_END   0x100000000ull
#define G          4096ull
#define HEAP       0x10000ull
#define SHARED_END 0x200000ull /* [HEAP, SHARED_END) shared, the rest private */
#define PRIV       0x300000ull /* private pages the tests point the device at */
#define QSIZE      16

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK
#define S_NR  VIRTIO_STATUS_DEVICE_NEEDS_RESET

static const uint64_t V1 = VIRTIO_BIT(VIRTIO_F_VERSION_1);
static const uint64_t AP = VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);

/* One device: model, accessor, transport, driver. */
struct dev {
        struct hostmem *hm;
        struct virtio_rng *rng;
        struct virtio_mmio *t;
        struct vdriver d;
        struct fake_irq irq;
};

struct fx {
        struct guest_mem *mem;
        struct ownership *own; /* NULL: no ownership map */
        struct cc *cc;         /* CC-9 guest-originated fixtures */
        struct dev a, b;
};

enum mode {
        PROTECTED,     /* ownership map, ACCESS_PLATFORM offered and required */
        PLATFORM_ONLY, /* access_platform: required on an ordinary VM: no map */
        OFFERED_ONLY,  /* ACCESS_PLATFORM offered, not required (CC-11) */
        GUEST_PEF,     /* the pef model owns the map (starts all shared) */
        GUEST_S390,    /* the s390-pv model */
};

static void dev_open(struct fx *f, struct dev *v, const char *name, enum mode m, gpa_t heap)
{
        struct virtio_rng_config rc = {.name = name};
        struct error err = {0};
        struct virtio_mmio_config mc = {0};

        assert_int_equal(hostmem_create(f->mem, name, &v->hm), 0);
        if (f->own)
                hostmem_set_ownership(v->hm, f->own);
        if (virtio_rng_create(&rc, &err, &v->rng))
                fail_msg("virtio_rng_create: %s", err.msg);
        fake_irq_init(&v->irq);
        vdrv_init(&v->d, f->mem, heap, heap + 0x80000);
        mc.vdev = virtio_rng_device(v->rng);
        mc.mem = v->hm;
        mc.irq = fake_irq_line(&v->irq);
        mc.extra_features = AP; /* every mode here offers it */
        if (m != OFFERED_ONLY)
                mc.required_features = AP;
        assert_int_equal(virtio_mmio_create(&mc, &v->t), 0);
        vdrv_attach(&v->d, v->t);
}

static void dev_close(struct dev *v)
{
        virtio_mmio_destroy(v->t);
        virtio_rng_destroy(v->rng);
        hostmem_destroy(v->hm);
}

static struct fx *fx_new(enum mode m)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};

        f->mem = test_mem_new(MEM, HOLE_START, HOLE_END);
        if (m == PROTECTED) {
                assert_int_equal(ownership_create(f->mem, true, &f->own), 0);
                assert_int_equal(ownership_make_shared(f->own, 0, SHARED_END), 0);
        } else if (m == GUEST_PEF || m == GUEST_S390) {
                struct cc_config c = {.platform =
                                          m == GUEST_PEF ? CC_PLATFORM_PEF : CC_PLATFORM_S390_PV};
                assert_int_equal(cc_create(&c, f->mem, &err, &f->cc), 0);
                f->own = cc_ownership(f->cc);
        }
        dev_open(f, &f->a, "entropy0", m, HEAP);
        dev_open(f, &f->b, "entropy1", m, HEAP + 0x80000);
        return f;
}

static int setup_protected(void **state)
{
        *state = fx_new(PROTECTED);
        return 0;
}

static int setup_platform_only(void **state)
{
        *state = fx_new(PLATFORM_ONLY);
        return 0;
}

static int setup_offered_only(void **state)
{
        *state = fx_new(OFFERED_ONLY);
        return 0;
}

static int setup_pef(void **state)
{
        *state = fx_new(GUEST_PEF);
        return 0;
}

static int setup_s390(void **state)
{
        *state = fx_new(GUEST_S390);
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        dev_close(&f->a);
        dev_close(&f->b);
        if (f->cc)
                cc_destroy(f->cc); /* owns the map */
        else
                ownership_destroy(f->own);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

/* ---- helpers ---- */

static uint32_t rd(struct dev *v, uint32_t off)
{
        return vdrv_read32(&v->d, off);
}

static void wr(struct dev *v, uint32_t off, uint32_t val)
{
        vdrv_write32(&v->d, off, val);
}

static uint8_t status(struct dev *v)
{
        return (uint8_t)rd(v, VIRTIO_MMIO_STATUS);
}

static void set64(struct dev *v, uint32_t lo, uint64_t val)
{
        wr(v, lo, (uint32_t)val);
        wr(v, lo + 4, (uint32_t)(val >> 32));
}

/* Queue 0 at chosen addresses (size QSIZE), QueueReady = 1; returns QueueReady read back.
 * The driver's view (d.q[0]) follows, so vdrv_add and vdrv_get_used use these rings. */
static bool queue_at(struct dev *v, gpa_t desc, gpa_t avail, gpa_t used)
{
        struct vdrv_queue *q = &v->d.q[0];

        memset(q, 0, sizeof(*q));
        q->size = QSIZE;
        q->desc = desc;
        q->avail = avail;
        q->used = used;
        assert_int_equal(guest_mem_fill(v->d.mem, desc, 0, 16 * QSIZE), 0);
        assert_int_equal(guest_mem_fill(v->d.mem, avail, 0, 6 + 2 * QSIZE), 0);
        assert_int_equal(guest_mem_fill(v->d.mem, used, 0, 6 + 8 * QSIZE), 0);
        wr(v, VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(v, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
        set64(v, VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
        set64(v, VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail);
        set64(v, VIRTIO_MMIO_QUEUE_DEVICE_LOW, used);
        wr(v, VIRTIO_MMIO_QUEUE_READY, 1);
        return rd(v, VIRTIO_MMIO_QUEUE_READY) == 1;
}

/* Rings on one fresh page of the driver's heap. */
static gpa_t rings_page(struct dev *v)
{
        return vdrv_alloc(&v->d, G, G);
}

static bool queue_on_page(struct dev *v, gpa_t page)
{
        return queue_at(v, page, page + 16 * QSIZE, page + 1024);
}

/* Negotiated (features), queue 0 on a fresh heap page, DRIVER_OK: asserts it all worked. */
static gpa_t up(struct dev *v, uint64_t features)
{
        gpa_t page = rings_page(v);

        assert_int_equal(vdrv_negotiate(&v->d, features), S_ACK | S_DRV | S_FOK);
        assert_true(queue_on_page(v, page));
        assert_int_equal(vdrv_driver_ok(&v->d), S_ACK | S_DRV | S_FOK | S_DOK);
        return page;
}

static void fill(struct fx *f, gpa_t a, uint8_t byte, uint64_t len)
{
        assert_int_equal(guest_mem_fill(f->mem, a, byte, len), 0);
}

/* Whether [a, a+len) still holds `byte` everywhere (read as the guest). */
static bool holds(struct fx *f, gpa_t a, uint8_t byte, uint64_t len)
{
        uint8_t *b = malloc(len);
        bool same = true;

        assert_int_equal(guest_mem_read(f->mem, a, b, len), 0);
        for (uint64_t i = 0; i < len && same; i++)
                same = b[i] == byte;
        free(b);
        return same;
}

/* One request of n writable buffers; returns the used length (or -1 when none came back). */
static long request(struct dev *v, const struct vdrv_buf *bufs, unsigned n)
{
        uint16_t head = vdrv_add(&v->d, 0, bufs, n), id;
        uint32_t len;

        vdrv_kick(&v->d, 0);
        if (!vdrv_get_used(&v->d, 0, &id, &len))
                return -1;
        assert_int_equal(id, head);
        return len;
}

static uint64_t violations(struct dev *v)
{
        struct hostmem_stats s;

        hostmem_get_stats(v->hm, &s);
        return s.violations;
}

static struct virtio_rng_stats rng_stats(struct dev *v)
{
        struct virtio_rng_stats s;

        virtio_rng_get_stats(v->rng, &s);
        return s;
}

static bool works(struct fx *f, struct dev *v)
{
        gpa_t buf = vdrv_alloc(&v->d, 64, 64);
        struct vdrv_buf b = {buf, 64, true};

        fill(f, buf, 0, 64);
        return request(v, &b, 1) == 64 && !holds(f, buf, 0, 64);
}

/* ---- CC-1 ---- */

/* A protected VM's device offers VERSION_1 and ACCESS_PLATFORM, is a version-2 transport,
 * and has no legacy registers (GuestPageSize, QueueAlign, QueuePFN). */
static void test_cc1_offers_version_1_and_access_platform_never_legacy(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        struct virtio_mmio_stats st0, st1;

        assert_int_equal(rd(v, VIRTIO_MMIO_VERSION_REG), 2);
        assert_true((vdrv_device_features(&v->d) & (V1 | AP)) == (V1 | AP));
        wr(v, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_int_equal(rd(v, VIRTIO_MMIO_DEVICE_FEATURES) & 3, 3); /* bits 32 and 33 */
        virtio_mmio_get_stats(v->t, &st0);
        for (uint32_t off = 0x028; off <= 0x040; off += 0x014) { /* 0x028, 0x03c */
                wr(v, off, 4096);
                assert_int_equal(rd(v, off), 0);
        }
        wr(v, 0x040, 0x123); /* QueuePFN */
        assert_int_equal(rd(v, 0x040), 0);
        virtio_mmio_get_stats(v->t, &st1);
        assert_int_equal(st1.register_errors - st0.register_errors, 6);
        /* A legacy driver (no VERSION_1) gets nowhere. */
        assert_int_equal(vdrv_negotiate(&v->d, AP), S_ACK | S_DRV);
}

/* ---- CC-2 ---- */

/* In the refused state nothing the driver does makes the device touch guest memory: the
 * rings hold a published request over a shared buffer, the buffer stays as it was. */
static void refused_state_touches_nothing(struct fx *f, struct dev *v, uint64_t features)
{
        gpa_t page = rings_page(v), buf = vdrv_alloc(&v->d, 64, 64);
        struct vdrv_buf b = {buf, 64, true};
        uint16_t id;
        uint32_t len;

        assert_int_equal(vdrv_negotiate(&v->d, features), S_ACK | S_DRV); /* no FEATURES_OK */
        assert_false(queue_on_page(v, page));                             /* no queue */
        wr(v, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_int_equal(status(v), S_ACK | S_DRV); /* no DRIVER_OK */
        wr(v, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_DOK);
        assert_int_equal(status(v), S_ACK | S_DRV);
        /* A request published on those rings anyway, and notified both ways. */
        fill(f, buf, 0x5a, 64);
        vdrv_add(&v->d, 0, &b, 1);
        vdrv_kick(&v->d, 0);
        wr(v, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_false(vdrv_get_used(&v->d, 0, &id, &len));
        assert_true(holds(f, buf, 0x5a, 64));
        assert_int_equal(rng_stats(v).requests, 0);
        assert_int_equal(virtio_rng_device(v->rng)->acked_features, 0);
        /* After a reset the device works. */
        wr(v, VIRTIO_MMIO_STATUS, 0);
        up(v, V1 | AP);
        assert_true(works(f, v));
}

static void test_cc2_no_features_ok_without_access_platform(void **state)
{
        struct fx *f = *state;

        refused_state_touches_nothing(f, &f->a, V1);
}

static void test_cc2_no_features_ok_without_version_1(void **state)
{
        struct fx *f = *state;

        refused_state_touches_nothing(f, &f->a, AP);
}

/* ---- CC-3 / CC-4 ---- */

/* Every device access is checked when it happens: a private buffer, a private indirect
 * table, a private descriptor table after the queue started. */
static void test_cc3_private_buffer_and_indirect_table_refused(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        gpa_t shared = vdrv_alloc(&v->d, 256, 64), table = PRIV + G;
        uint8_t desc[16];

        up(v, V1 | AP | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
        fill(f, PRIV, 0x77, G);
        fill(f, shared, 0x5a, 256);
        struct vdrv_buf b[2] = {{shared, 256, true}, {PRIV, 256, true}};
        assert_int_equal(request(v, b, 2), 0);
        assert_true(holds(f, shared, 0x5a, 256));
        assert_true(holds(f, PRIV, 0x77, G));
        assert_int_equal(violations(v), 1);
        /* An indirect table in private memory that names a shared buffer. */
        put_le64(desc, shared);
        put_le32(desc + 8, 256);
        put_le16(desc + 12, VIRTQ_DESC_F_WRITE);
        put_le16(desc + 14, 0);
        assert_int_equal(guest_mem_write(f->mem, table, desc, 16), 0);
        struct vdrv_buf ind = {table, 16, false};
        uint16_t head = vdrv_add(&v->d, 0, &ind, 1), id;
        uint8_t raw[16];
        uint32_t len;
        assert_int_equal(guest_mem_read(f->mem, v->d.q[0].desc + 16ull * head, raw, 16), 0);
        put_le16(raw + 12, VIRTQ_DESC_F_INDIRECT);
        assert_int_equal(guest_mem_write(f->mem, v->d.q[0].desc + 16ull * head, raw, 16), 0);
        vdrv_kick(&v->d, 0);
        assert_true(vdrv_get_used(&v->d, 0, &id, &len));
        assert_int_equal(len, 0);
        assert_true(holds(f, shared, 0x5a, 256));
        assert_int_equal(violations(v), 2);
        assert_false(status(v) & S_NR);
        assert_true(works(f, v));
}

/* CC-4: a request that touches a private byte fails as a whole, also when it is longer than
 * the device's own copy buffer: nothing lands in its shared buffers. */
static void test_cc4_no_partial_write_to_shared_buffers(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        gpa_t shared = vdrv_alloc(&v->d, 3 * G, G);

        up(v, V1 | AP);
        fill(f, shared, 0x5a, 3 * G);
        fill(f, PRIV, 0x77, G);
        struct vdrv_buf b[2] = {{shared, 3 * G, true}, {PRIV, 64, true}};
        assert_int_equal(request(v, b, 2), 0);
        assert_true(holds(f, shared, 0x5a, 3 * G));
        assert_true(holds(f, PRIV, 0x77, G));
        assert_int_equal(rng_stats(v).bad_requests, 1);
        assert_true(works(f, v));
}

/* CC-4: a private ring: DEVICE_NEEDS_RESET and a configuration interrupt; the other device
 * goes on; after a reset over shared rings the device works again. */
static void test_cc4_private_ring_needs_reset_other_device_unaffected(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;

        assert_int_equal(ownership_make_shared(f->own, PRIV, G), 0);
        assert_int_equal(vdrv_negotiate(&v->d, V1 | AP), S_ACK | S_DRV | S_FOK);
        assert_true(queue_on_page(v, PRIV));
        assert_int_equal(vdrv_driver_ok(&v->d), S_ACK | S_DRV | S_FOK | S_DOK);
        up(&f->b, V1 | AP);
        assert_true(works(f, v));
        assert_int_equal(ownership_make_private(f->own, PRIV, G), 0);
        unsigned irqs = v->irq.raises;
        gpa_t buf = vdrv_alloc(&v->d, 64, 64);
        struct vdrv_buf b = {buf, 64, true};
        assert_int_equal(request(v, &b, 1), -1);
        assert_true(status(v) & S_NR);
        assert_int_equal(rd(v, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG,
                         VIRTIO_MMIO_INT_CONFIG);
        assert_true(v->irq.raises > irqs);
        assert_int_equal(violations(v), 1);
        /* The other device is unaffected, counts nothing. */
        assert_true(works(f, &f->b));
        assert_int_equal(violations(&f->b), 0);
        /* A reset, rings in shared memory: back in service. */
        wr(v, VIRTIO_MMIO_STATUS, 0);
        up(v, V1 | AP);
        assert_true(works(f, v));
}

/* ---- CC-5 ---- */

/* QueueReady = 1 is refused while any byte of the descriptor table, the avail ring or the
 * used ring is private, including an area that only straddles into a private granule; each
 * refusal is counted (CC-7). */
static void test_cc5_queue_ready_refused_over_private_rings(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        gpa_t s = rings_page(v), edge = SHARED_END - 16 * QSIZE + 16;

        assert_int_equal(vdrv_negotiate(&v->d, V1 | AP), S_ACK | S_DRV | S_FOK);
        assert_false(queue_at(v, PRIV, s + 512, s + 1024));    /* descriptors */
        assert_false(queue_at(v, s, PRIV + 512, s + 1024));    /* avail */
        assert_false(queue_at(v, s, s + 512, PRIV + 1024));    /* used */
        assert_false(queue_at(v, edge, s + 512, s + 1024));    /* straddles */
        assert_false(queue_at(v, s, s + 512, SHARED_END - 8)); /* straddles */
        assert_int_equal(rd(v, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_int_equal(violations(v), 5);
        assert_true(queue_at(v, s, s + 512, s + 1024));
        assert_int_equal(vdrv_driver_ok(&v->d), S_ACK | S_DRV | S_FOK | S_DOK);
        assert_true(works(f, v));
}

/* ---- CC-6 ---- */

/* No earlier check survives a transition: rings that were shared when QueueReady was
 * accepted are checked again at each access. Shared again before the access: it works. */
static void test_cc6_rings_checked_at_each_access(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        gpa_t page = PRIV + 2 * G, buf = vdrv_alloc(&v->d, 64, 64);
        struct vdrv_buf b = {buf, 64, true};

        assert_int_equal(ownership_make_shared(f->own, page, G), 0);
        assert_int_equal(vdrv_negotiate(&v->d, V1 | AP), S_ACK | S_DRV | S_FOK);
        assert_true(queue_on_page(v, page));
        assert_int_equal(vdrv_driver_ok(&v->d), S_ACK | S_DRV | S_FOK | S_DOK);
        /* Private and shared again between the check and the access: it is the state at
         * the access that counts. */
        assert_int_equal(ownership_make_private(f->own, page, G), 0);
        assert_int_equal(ownership_make_shared(f->own, page, G), 0);
        assert_int_equal(request(v, &b, 1), 64);
        /* A buffer shared when the request was published, private when the device runs it. */
        uint16_t head = vdrv_add(&v->d, 0, &b, 1), id;
        uint32_t len;
        fill(f, buf, 0x5a, 64);
        assert_int_equal(ownership_make_private(f->own, buf & ~(G - 1), G), 0);
        vdrv_kick(&v->d, 0);
        assert_true(vdrv_get_used(&v->d, 0, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 0);
        assert_true(holds(f, buf, 0x5a, 64));
        assert_int_equal(ownership_make_shared(f->own, buf & ~(G - 1), G), 0);
        /* The ring itself private under the running device. */
        assert_int_equal(ownership_make_private(f->own, page, G), 0);
        assert_int_equal(request(v, &b, 1), -1);
        assert_true(status(v) & S_NR);
}

/* ---- CC-7 ---- */

/* Violations are counted per device accessor, one per refused access. */
static void test_cc7_violations_counted_per_device(void **state)
{
        struct fx *f = *state;
        struct vdrv_buf b = {PRIV, 64, true};

        up(&f->a, V1 | AP);
        up(&f->b, V1 | AP);
        assert_int_equal(request(&f->a, &b, 1), 0);
        assert_int_equal(request(&f->a, &b, 1), 0);
        assert_int_equal(request(&f->b, &b, 1), 0);
        assert_int_equal(violations(&f->a), 2);
        assert_int_equal(violations(&f->b), 1);
        assert_int_equal(rng_stats(&f->a).bad_requests, 2);
}

/* ---- CC-9 ---- */

/* Platform-originated (access_platform: required on an ordinary VM, no ownership map):
 * CC-1 and CC-2 hold, and once ACCESS_PLATFORM is accepted all of RAM is usable. */
static void test_cc9_platform_originated_without_an_ownership_map(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        struct vdrv_buf b = {PRIV, 64, true};

        assert_true((vdrv_device_features(&v->d) & (V1 | AP)) == (V1 | AP));
        assert_int_equal(vdrv_negotiate(&v->d, V1), S_ACK | S_DRV);
        assert_int_equal(vdrv_negotiate(&v->d, AP), S_ACK | S_DRV);
        wr(v, VIRTIO_MMIO_STATUS, 0);
        up(v, V1 | AP);
        fill(f, PRIV, 0, 64);
        assert_int_equal(request(v, &b, 1), 64);
        assert_false(holds(f, PRIV, 0, 64));
        assert_int_equal(violations(v), 0);
}

static void win(struct cc *cc, uint64_t off, uint64_t v)
{
        uint8_t b[8];

        put_le64(b, v);
        cc_callwin_write(cc, off, b, 8);
}

static uint64_t win_ret(struct cc *cc)
{
        uint8_t b[8];

        cc_callwin_read(cc, CC_CALLWIN_REG_RET0, b, 8);
        return get_le64(b);
}

/* The guest's transition, as the probe makes it: UV_ESM with the model's blob, or the PV
 * IPL with a Secure Execution header (placed in guest RAM at `at`). */
static void go_secure(struct fx *f, gpa_t at)
{
        if (cc_platform_of(f->cc) == CC_PLATFORM_PEF) {
                uint8_t blob[12] = {'C', 'V', 'M', 'M', 'E', 'S', 'M', 0, 1, 0, 0, 0};
                assert_int_equal(guest_mem_write(f->mem, at, blob, sizeof(blob)), 0);
                win(f->cc, CC_CALLWIN_REG_ARG0, UV_ESM);
                win(f->cc, CC_CALLWIN_REG_ARG1, at);
                win(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_POWER_UCALL);
                assert_int_equal(win_ret(f->cc), U_SUCCESS);
        } else {
                assert_int_equal(guest_mem_write(f->mem, at, S390_SE_MAGIC, 8), 0);
                win(f->cc, CC_CALLWIN_REG_ARG0, DIAG308_PV_IPL);
                win(f->cc, CC_CALLWIN_REG_ARG1, at);
                win(f->cc, CC_CALLWIN_REG_CALL, CC_CALL_S390_DIAG308);
                assert_int_equal(win_ret(f->cc), DIAG308_RC_OK);
        }
        assert_true(cc_secure(f->cc));
}

/* Guest-originated (pef, s390-pv): ACCESS_PLATFORM offered and required from boot, the
 * device works from ordinary memory until the transition; a request published before the
 * transition and notified after it is not served (the ring is private now: CC-3/CC-4), and
 * the device needs a reset; the other device, idle meanwhile, refuses private buffers. */
static void test_cc9_guest_originated_enforced_from_the_transition(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        gpa_t buf = vdrv_alloc(&v->d, 64, 64), other = vdrv_alloc(&f->b.d, 64, 64);
        struct vdrv_buf b = {buf, 64, true}, ob = {other, 64, true};
        uint16_t id;
        uint32_t len;

        assert_true((vdrv_device_features(&v->d) & (V1 | AP)) == (V1 | AP));
        assert_int_equal(vdrv_negotiate(&v->d, V1), S_ACK | S_DRV); /* CC-2 before, too */
        wr(v, VIRTIO_MMIO_STATUS, 0);
        up(v, V1 | AP);
        up(&f->b, V1 | AP);
        assert_true(works(f, v));
        fill(f, buf, 0x5a, 64);
        vdrv_add(&v->d, 0, &b, 1);
        go_secure(f, PRIV);
        vdrv_kick(&v->d, 0);
        assert_false(vdrv_get_used(&v->d, 0, &id, &len));
        assert_true(status(v) & S_NR);
        assert_true(holds(f, buf, 0x5a, 64));
        assert_int_equal(violations(v), 1);
        /* The second device's rings are private as well: its next request is refused. */
        assert_int_equal(request(&f->b, &ob, 1), -1);
        assert_true(status(&f->b) & S_NR);
}

/* ---- CC-11 ---- */

/* The DMA mode (ACCESS_PLATFORM accepted or not) is fixed while DRIVER_OK is set: driver
 * features cannot be rewritten, FEATURES_OK cannot be renegotiated and status bits cannot be
 * dropped; a reset is the only way to change it. */
static void test_cc11_dma_mode_fixed_while_driver_ok(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;
        struct virtio_device *vd = virtio_rng_device(v->rng);

        up(v, V1 | AP);
        assert_true(vd->acked_features & AP);
        wr(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(v, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 only: ACCESS_PLATFORM dropped */
        wr(v, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        wr(v, VIRTIO_MMIO_STATUS, S_ACK | S_DRV | S_FOK);
        wr(v, VIRTIO_MMIO_STATUS, S_ACK | S_DRV);
        assert_int_equal(status(v), S_ACK | S_DRV | S_FOK | S_DOK);
        assert_true(vd->acked_features & AP);
        assert_true(works(f, v));
        /* A reset, then the other mode. */
        wr(v, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(vd->acked_features, 0);
        up(v, V1);
        assert_false(vd->acked_features & AP);
        wr(v, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(v, VIRTIO_MMIO_DRIVER_FEATURES, 3); /* and back: refused as well */
        assert_false(vd->acked_features & AP);
        assert_true(works(f, v));
}

/* On a protected VM the only mode is ACCESS_PLATFORM: a reset does not open another. */
static void test_cc11_protected_vm_has_one_dma_mode(void **state)
{
        struct fx *f = *state;
        struct dev *v = &f->a;

        up(v, V1 | AP);
        wr(v, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(vdrv_negotiate(&v->d, V1), S_ACK | S_DRV);
        assert_int_equal(vdrv_negotiate(&v->d, V1 | AP), S_ACK | S_DRV | S_FOK);
}

#define P(fn)  cmocka_unit_test_setup_teardown(fn, setup_protected, teardown)
#define PO(fn) cmocka_unit_test_setup_teardown(fn, setup_platform_only, teardown)
#define OO(fn) cmocka_unit_test_setup_teardown(fn, setup_offered_only, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
            P(test_cc1_offers_version_1_and_access_platform_never_legacy),
            PO(test_cc1_offers_version_1_and_access_platform_never_legacy),
            P(test_cc2_no_features_ok_without_access_platform),
            P(test_cc2_no_features_ok_without_version_1),
            PO(test_cc2_no_features_ok_without_access_platform),
            P(test_cc3_private_buffer_and_indirect_table_refused),
            P(test_cc4_no_partial_write_to_shared_buffers),
            P(test_cc4_private_ring_needs_reset_other_device_unaffected),
            P(test_cc5_queue_ready_refused_over_private_rings),
            P(test_cc6_rings_checked_at_each_access),
            P(test_cc7_violations_counted_per_device),
            PO(test_cc9_platform_originated_without_an_ownership_map),
            cmocka_unit_test_setup_teardown(test_cc9_guest_originated_enforced_from_the_transition,
                                            setup_pef, teardown),
            cmocka_unit_test_setup_teardown(test_cc9_guest_originated_enforced_from_the_transition,
                                            setup_s390, teardown),
            OO(test_cc11_dma_mode_fixed_while_driver_ok),
            P(test_cc11_protected_vm_has_one_dma_mode),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
