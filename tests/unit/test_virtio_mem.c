/* virtio-mem through the in-process driver over a fake guest memory: the configuration, the
 * requested size as a configuration change, PLUG/UNPLUG/UNPLUG_ALL/STATE with their ACK,
 * NACK and ERROR answers, unplugged blocks given back (they read zeros when plugged again),
 * malformed requests completing with nothing written; the device state through a snapshot
 * round trip (plugged blocks, sizes, the queue), and states it cannot have refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/mem.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM    (4u << 20)
#define BLOCK  (2ull << 20)
#define REGION (8 * BLOCK)
#define ADDR   0x100000000ull

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct virtio_mem *m;
        struct virtio_mmio *t;
        struct vdriver d;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};
        struct virtio_mem_config c = {.name = "mem0", .region_size = REGION, .block_size = BLOCK};

        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(hostmem_create(f->mem, "mem", &f->hm), 0);
        assert_int_equal(virtio_mem_create(&c, &err, &f->m), 0);
        virtio_mem_set_addr(f->m, ADDR);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        struct virtio_mmio_config mc = {
            .vdev = virtio_mem_device(f->m), .mem = f->hm, .irq = vdrv_irq_line(&f->d)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        vdrv_bring_up(&f->d, ~0ull, 1, 16);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        virtio_mmio_destroy(f->t);
        virtio_mem_destroy(f->m);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

static uint64_t cfg64(struct fx *f, uint32_t off)
{
        uint64_t v;

        vdrv_read_config(&f->d, off, &v, 8);
        return v;
}

/* One request; returns the response type (0xffff: nothing written), *state for STATE. */
static uint16_t call(struct fx *f, uint16_t type, uint64_t addr, uint16_t n, uint16_t *state,
                     uint32_t req_len, uint32_t resp_len)
{
        uint8_t req[VIRTIO_MEM_REQ_SIZE] = {0}, resp[16];
        gpa_t r = vdrv_alloc(&f->d, 64, 8);
        struct vdrv_buf b[2] = {{r, req_len, false}, {r + 32, resp_len, true}};
        uint16_t id, t;
        uint32_t len;

        memcpy(req, &type, 2);
        memcpy(req + 8, &addr, 8);
        memcpy(req + 16, &n, 2);
        memset(resp, 0xff, sizeof(resp));
        vdrv_mem_write(&f->d, r, req, sizeof(req));
        vdrv_mem_write(&f->d, r + 32, resp, sizeof(resp));
        vdrv_add(&f->d, 0, b, 2);
        vdrv_kick(&f->d, 0);
        assert_true(vdrv_get_used(&f->d, 0, &id, &len));
        vdrv_mem_read(&f->d, r + 32, resp, sizeof(resp));
        memcpy(&t, resp, 2);
        if (state)
                memcpy(state, resp + 8, 2);
        assert_int_equal(len, t == 0xffff ? 0 : VIRTIO_MEM_RESP_SIZE);
        return t;
}

static uint16_t req(struct fx *f, uint16_t type, uint64_t addr, uint16_t n)
{
        return call(f, type, addr, n, NULL, VIRTIO_MEM_REQ_SIZE, VIRTIO_MEM_RESP_SIZE);
}

static void test_configuration_and_requested_size(void **state)
{
        struct fx *f = *state;
        unsigned irqs = f->d.irqs;

        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_DEVICE_ID), 24);
        assert_int_equal(cfg64(f, 0), BLOCK);
        assert_int_equal(cfg64(f, 16), ADDR);
        assert_int_equal(cfg64(f, 24), REGION);
        assert_int_equal(cfg64(f, 32), REGION);
        assert_int_equal(cfg64(f, 40), 0);
        assert_int_equal(cfg64(f, 48), 0);
        virtio_mem_set_requested(f->m, 3 * BLOCK);
        assert_int_equal(cfg64(f, 48), 3 * BLOCK);
        assert_true(f->d.irqs > irqs); /* a configuration change */
}

static void test_plug_unplug_state(void **state)
{
        struct fx *f = *state;
        uint8_t *host = virtio_mem_host(f->m);
        struct virtio_mem_stats st;
        uint16_t s;

        /* Nothing requested: a plug would pass the requested size. */
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR, 1), VIRTIO_MEM_RESP_NACK);
        virtio_mem_set_requested(f->m, 3 * BLOCK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR, 2), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(cfg64(f, 40), 2 * BLOCK);
        /* Already plugged, unaligned, outside, empty: ERROR. */
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + BLOCK, 1), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 4096, 1), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + REGION, 1), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR - BLOCK, 1), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 7 * BLOCK, 2), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 2 * BLOCK, 0), VIRTIO_MEM_RESP_ERROR);
        /* Past the request: NACK. */
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 4 * BLOCK, 2), VIRTIO_MEM_RESP_NACK);
        assert_int_equal(call(f, VIRTIO_MEM_REQ_STATE, ADDR, 2, &s, VIRTIO_MEM_REQ_SIZE, 10),
                         VIRTIO_MEM_RESP_ACK);
        assert_int_equal(s, VIRTIO_MEM_STATE_PLUGGED);
        call(f, VIRTIO_MEM_REQ_STATE, ADDR, 8, &s, VIRTIO_MEM_REQ_SIZE, 10);
        assert_int_equal(s, VIRTIO_MEM_STATE_MIXED);
        call(f, VIRTIO_MEM_REQ_STATE, ADDR + 2 * BLOCK, 6, &s, VIRTIO_MEM_REQ_SIZE, 10);
        assert_int_equal(s, VIRTIO_MEM_STATE_UNPLUGGED);
        /* The guest's writes land in the host's memory; unplugging gives it back. */
        host[BLOCK + 8] = 0x5a;
        /* Unplugging below the request: NACK; not all plugged: ERROR. */
        assert_int_equal(req(f, VIRTIO_MEM_REQ_UNPLUG, ADDR + BLOCK, 1), VIRTIO_MEM_RESP_NACK);
        virtio_mem_set_requested(f->m, BLOCK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_UNPLUG, ADDR + BLOCK, 2), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_UNPLUG, ADDR + BLOCK, 1), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(host[BLOCK + 8], 0);
        assert_int_equal(cfg64(f, 40), BLOCK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(cfg64(f, 40), 0);
        virtio_mem_get_stats(f->m, &st);
        assert_int_equal(st.plugs, 1);
        assert_int_equal(st.unplugs, 1);
        assert_int_equal(st.unplug_alls, 1);
        assert_int_equal(st.nacks, 3);
        assert_int_equal(st.errors, 7);
        assert_int_equal(st.bad_requests, 0);
        assert_int_equal(st.plugged_size, 0);
}

static void test_malformed_requests_write_nothing(void **state)
{
        struct fx *f = *state;
        struct virtio_mem_stats st;

        virtio_mem_set_requested(f->m, BLOCK);
        assert_int_equal(call(f, VIRTIO_MEM_REQ_PLUG, ADDR, 1, NULL, 16, 10), 0xffff);
        assert_int_equal(call(f, VIRTIO_MEM_REQ_PLUG, ADDR, 1, NULL, VIRTIO_MEM_REQ_SIZE, 8),
                         0xffff);
        assert_int_equal(call(f, 9, ADDR, 1, NULL, VIRTIO_MEM_REQ_SIZE, 10), VIRTIO_MEM_RESP_ERROR);
        virtio_mem_get_stats(f->m, &st);
        assert_int_equal(st.bad_requests, 2);
        assert_int_equal(st.plugged_size, 0);
        /* The device carries on. */
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR, 1), VIRTIO_MEM_RESP_ACK);
}

static void test_impossible_regions_refused(void **state)
{
        static const struct virtio_mem_config bad[] = {
            {"mem0", 0, BLOCK},
            {"mem0", REGION, 3 << 20},
            {"mem0", REGION + 4096, BLOCK},
            {"mem0", REGION, 0},
        };
        struct virtio_mem *m = NULL;

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct error err = {0};

                assert_int_equal(virtio_mem_create(&bad[i], &err, &m), -EINVAL);
                assert_non_null(strstr(err.msg, "mem0: a region of"));
        }
        assert_null(m);
}

/* ---- snapshots ---- */

/* Saves the transport and device; the fixture gets a fresh device of region `region` with
 * the state restored: 0 or the restore's error (its message in msg). */
static int save_and_restore(struct fx *f, uint64_t region, void (*edit)(struct snapbuf_writer *),
                            char *msg, size_t cap)
{
        struct virtio_mem_config c = {.name = "mem0", .region_size = region, .block_size = BLOCK};
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct error err = {0};
        int ret;

        snapbuf_writer_init(&w);
        virtio_mmio_save(f->t, &w);
        if (edit)
                edit(&w);
        virtio_mmio_destroy(f->t);
        virtio_mem_destroy(f->m);
        assert_int_equal(virtio_mem_create(&c, &err, &f->m), 0);
        virtio_mem_set_addr(f->m, ADDR);
        struct virtio_mmio_config mc = {
            .vdev = virtio_mem_device(f->m), .mem = f->hm, .irq = vdrv_irq_line(&f->d)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        snapbuf_reader_init(&r, w.data, w.len);
        ret = virtio_mmio_restore(f->t, &r);
        if (msg)
                snprintf(msg, cap, "%s", r.err);
        snapbuf_writer_free(&w);
        return ret;
}

static void plug_three_of_four(struct fx *f)
{
        virtio_mem_set_requested(f->m, 4 * BLOCK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR, 2), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 5 * BLOCK, 1), VIRTIO_MEM_RESP_ACK);
}

/* The plugged blocks, the sizes and the queue survive: the guest goes on where it was. */
static void test_snapshot_round_trip(void **state)
{
        struct fx *f = *state;
        struct virtio_mem_layout l;
        uint16_t s;

        plug_three_of_four(f);
        assert_int_equal(save_and_restore(f, REGION, NULL, NULL, 0), 0);
        assert_int_equal(cfg64(f, 16), ADDR);
        assert_int_equal(cfg64(f, 40), 3 * BLOCK);
        assert_int_equal(cfg64(f, 48), 4 * BLOCK);
        virtio_mem_layout(f->m, &l);
        assert_int_equal(l.nr_blocks, 8);
        assert_int_equal(l.block_size, BLOCK);
        assert_int_equal(l.plugged[0], 0x23); /* blocks 0, 1 and 5 */
        /* The queue goes on from where it was (the driver's next request is answered). */
        call(f, VIRTIO_MEM_REQ_STATE, ADDR, 2, &s, VIRTIO_MEM_REQ_SIZE, 10);
        assert_int_equal(s, VIRTIO_MEM_STATE_PLUGGED);
        call(f, VIRTIO_MEM_REQ_STATE, ADDR + 2 * BLOCK, 3, &s, VIRTIO_MEM_REQ_SIZE, 10);
        assert_int_equal(s, VIRTIO_MEM_STATE_UNPLUGGED);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 5 * BLOCK, 1), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 2 * BLOCK, 1), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(req(f, VIRTIO_MEM_REQ_PLUG, ADDR + 3 * BLOCK, 1), VIRTIO_MEM_RESP_NACK);
        assert_int_equal(cfg64(f, 40), 4 * BLOCK);
}

/* The device section's body: version, block size, region size, addr, requested, plugged,
 * then the bitmap. Offsets past the 16-byte section header of the model's section, which
 * the transport's record opens with. */
#define STATE_AT(field) (16 + 4 + 8 * (field))

static void bad_version(struct snapbuf_writer *w)
{
        w->data[16] = 9;
}

static void bad_plugged_size(struct snapbuf_writer *w)
{
        put_le64(w->data + STATE_AT(4), 2 * BLOCK);
}

static void bits_past_the_region(struct snapbuf_writer *w)
{
        w->data[STATE_AT(5) + 1] |= 1; /* block 8 of 8 */
        put_le64(w->data + STATE_AT(4), 4 * BLOCK);
}

static void bad_requested(struct snapbuf_writer *w)
{
        put_le64(w->data + STATE_AT(3), REGION + BLOCK);
}

/* States this device cannot have are refused by name. */
static void test_snapshot_refusals(void **state)
{
        struct fx *f = *state;
        static const struct {
                void (*edit)(struct snapbuf_writer *);
                uint64_t region;
                const char *msg;
        } cases[] = {
            {bad_version, REGION, "unknown device state version"},
            {NULL, 2 * REGION, "a region of another shape or place"},
            {bad_plugged_size, REGION, "plugged blocks that do not match the plugged size"},
            {bits_past_the_region, REGION, "plugged blocks that do not match the plugged size"},
            {bad_requested, REGION, "an impossible requested size"},
        };
        char msg[256];

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                if (i) { /* a fresh fixture for each case */
                        teardown(state);
                        setup(state);
                        f = *state;
                }
                plug_three_of_four(f);
                assert_int_equal(
                    save_and_restore(f, cases[i].region, cases[i].edit, msg, sizeof(msg)), -EINVAL);
                assert_non_null(strstr(msg, cases[i].msg));
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_configuration_and_requested_size, setup, teardown),
            cmocka_unit_test_setup_teardown(test_plug_unplug_state, setup, teardown),
            cmocka_unit_test_setup_teardown(test_malformed_requests_write_nothing, setup, teardown),
            cmocka_unit_test(test_impossible_regions_refused),
            cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_snapshot_refusals, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
