/* virtio-rng through the in-process driver: buffers come back full of random bytes, the
 * rate limiter pauses processing, malformed chains complete with length 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/rng.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM (4u << 20)

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_rng *rng;
        struct virtio_mmio *t;
        struct vdriver d;
};

static int setup_with(void **state, const struct rate_limiter_config *limit)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};

        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(hostmem_create(f->mem, "rng", &f->hm), 0);
        assert_int_equal(event_loop_create(&f->loop), 0);
        struct virtio_rng_config c = {.name = "entropy0", .limit = limit, .loop = f->loop};
        assert_int_equal(virtio_rng_create(&c, &err, &f->rng), 0);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        struct virtio_mmio_config mc = {
            .vdev = virtio_rng_device(f->rng), .mem = f->hm, .irq = vdrv_irq_line(&f->d)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        *state = f;
        return 0;
}

static int setup(void **state)
{
        return setup_with(state, NULL);
}

static int teardown(void **state)
{
        struct fx *f = *state;

        virtio_mmio_destroy(f->t);
        virtio_rng_destroy(f->rng);
        event_loop_destroy(f->loop);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static void test_identity_and_features(void **state)
{
        struct fx *f = *state;

        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_VERSION_REG), 2);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
        assert_true(vdrv_device_features(&f->d) & VIRTIO_BIT(VIRTIO_F_VERSION_1));
}

static void test_fills_buffers(void **state)
{
        struct fx *f = *state;
        uint8_t out[300], zero[300] = {0};
        uint16_t id;
        uint32_t len;

        vdrv_bring_up(&f->d, ~0ull, 1, 16);
        gpa_t buf = vdrv_alloc(&f->d, sizeof(out), 8);
        struct vdrv_buf b = {.addr = buf, .len = sizeof(out), .write = true};
        uint16_t head = vdrv_add(&f->d, 0, &b, 1);
        unsigned irqs = f->d.irqs;

        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, sizeof(out));
        vdrv_mem_read(&f->d, buf, out, sizeof(out));
        assert_memory_not_equal(out, zero, sizeof(out));
        assert_true(f->d.irqs > irqs);

        struct virtio_rng_stats st;
        virtio_rng_get_stats(f->rng, &st);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.bytes, sizeof(out));
}

static void test_readable_only_chain_gets_nothing(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        vdrv_bring_up(&f->d, ~0ull, 1, 16);
        struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 64, 8), .len = 64, .write = false};
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(len, 0);
}

static void test_buffer_outside_ram_fails_request(void **state)
{
        struct fx *f = *state;
        uint16_t id;
        uint32_t len;

        vdrv_bring_up(&f->d, ~0ull, 1, 16);
        struct vdrv_buf b = {.addr = 0xd0000000ull, .len = 64, .write = true};
        vdrv_add(&f->d, 0, &b, 1);
        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(len, 0);
        struct virtio_rng_stats st;
        virtio_rng_get_stats(f->rng, &st);
        assert_int_equal(st.bad_requests, 1);
        /* The device keeps working. */
        struct vdrv_buf ok = {.addr = vdrv_alloc(&f->d, 16, 8), .len = 16, .write = true};
        vdrv_add(&f->d, 0, &ok, 1);
        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(len, 16);
}

/* One request per second: the second waits for the limiter's timer. */
static const struct rate_limiter_config one_per_second = {
    .ops = {.size = 1, .refill_time_ms = 1000}};

static int setup_limited(void **state)
{
        return setup_with(state, &one_per_second);
}

static void test_rate_limited(void **state)
{
        struct fx *f = *state;
        struct virtio_rng_stats st;
        uint16_t id;
        uint32_t len;

        vdrv_bring_up(&f->d, ~0ull, 1, 16);
        for (int i = 0; i < 2; i++) {
                struct vdrv_buf b = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8, .write = true};
                vdrv_add(&f->d, 0, &b, 1);
        }
        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_false(vdrv_get_used(&f->d, 0, &id, &len));
        virtio_rng_get_stats(f->rng, &st);
        assert_int_equal(st.rate_limited, 1);
        /* The limiter's timer fires through the event loop after about a second. */
        assert_int_equal(event_loop_run_once(f->loop, 3000), 1);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(len, 8);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_identity_and_features, setup, teardown),
            cmocka_unit_test_setup_teardown(test_fills_buffers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_readable_only_chain_gets_nothing, setup, teardown),
            cmocka_unit_test_setup_teardown(test_buffer_outside_ram_fails_request, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rate_limited, setup_limited, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
