/*
 * Device state across a snapshot, without KVM: each device is saved, a new one is created
 * from the same configuration over the same guest memory (as a restored process does), the
 * state is restored and the driver carries on where it was.
 *
 * virtio: the transport's registers and queue positions (a request after the restore lands
 * in the next used slot), a running device is reactivated and a request that was published
 * but not processed before the snapshot is processed after it, a pending interrupt status
 * is signalled again, a device of another kind or configured differently is refused, and
 * every bit flip or truncation of the record is refused or harmless; vsock sends
 * TRANSPORT_RESET; balloon keeps its target, `actual` and statistics settings. The UART
 * keeps its registers, FIFO and interrupt level; the i8042 its output buffer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio/balloon.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM (4u << 20)

/* ---- virtio-rng: the transport and queues ---- */

struct rngfx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_rng *rng;
        struct virtio_mmio *t;
        struct vdriver d;
};

static void rng_attach(struct rngfx *f)
{
        struct error err = {0};
        struct virtio_rng_config c = {.name = "entropy0", .loop = f->loop};

        assert_int_equal(virtio_rng_create(&c, &err, &f->rng), 0);
        struct virtio_mmio_config mc = {
            .vdev = virtio_rng_device(f->rng), .mem = f->hm, .irq = vdrv_irq_line(&f->d)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
}

static void rng_detach(struct rngfx *f)
{
        virtio_mmio_destroy(f->t);
        virtio_rng_destroy(f->rng);
}

static void rng_setup(struct rngfx *f)
{
        memset(f, 0, sizeof(*f));
        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(hostmem_create(f->mem, "rng", &f->hm), 0);
        assert_int_equal(event_loop_create(&f->loop), 0);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        rng_attach(f);
}

static void rng_teardown(struct rngfx *f)
{
        rng_detach(f);
        event_loop_destroy(f->loop);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
}

static uint16_t rng_request(struct rngfx *f, gpa_t buf)
{
        struct vdrv_buf b = {.addr = buf, .len = 32, .write = true};

        return vdrv_add(&f->d, 0, &b, 1);
}

/* Saves the transport, replaces the device by a fresh one and restores into it. */
static int rng_replace(struct rngfx *f, struct snapbuf_writer *w, struct error *why)
{
        struct snapbuf_reader r;
        int ret;

        rng_detach(f);
        rng_attach(f);
        snapbuf_reader_init(&r, w->data, w->len);
        ret = virtio_mmio_restore(f->t, &r);
        if (!ret && !snapbuf_expect_end(&r, "transport"))
                ret = -EINVAL;
        if (ret && why)
                snprintf(why->msg, sizeof(why->msg), "%s", r.err);
        return ret;
}

static void test_virtio_queues_continue(void **state)
{
        struct rngfx f;
        struct snapbuf_writer w;
        uint16_t id, head;
        uint32_t len;
        gpa_t buf;

        (void)state;
        rng_setup(&f);
        vdrv_bring_up(&f.d, ~0ull, 1, 16);
        buf = vdrv_alloc(&f.d, 32, 8);
        for (unsigned i = 0; i < 3; i++) {
                head = rng_request(&f, buf);
                vdrv_kick(&f.d, 0);
                assert_true(vdrv_get_used(&f.d, 0, &id, &len));
                assert_int_equal(id, head);
        }
        /* A request published but not notified when the snapshot is taken. */
        head = rng_request(&f, buf);
        snapbuf_writer_init(&w);
        virtio_mmio_save(f.t, &w);
        assert_false(w.failed);
        assert_int_equal(rng_replace(&f, &w, NULL), 0);
        assert_int_equal(vdrv_read32(&f.d, VIRTIO_MMIO_STATUS),
                         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                             VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        /* The restore processed it (no notification needed), in used slot 3. */
        assert_true(vdrv_get_used(&f.d, 0, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 32);
        assert_int_equal(f.d.q[0].used_seen, 4);
        /* And the queue goes on. */
        head = rng_request(&f, buf);
        vdrv_kick(&f.d, 0);
        assert_true(vdrv_get_used(&f.d, 0, &id, &len));
        assert_int_equal(id, head);
        snapbuf_writer_free(&w);
        rng_teardown(&f);
}

static void test_virtio_pending_interrupt_signalled_again(void **state)
{
        struct rngfx f;
        struct snapbuf_writer w;
        unsigned irqs;

        (void)state;
        rng_setup(&f);
        vdrv_bring_up(&f.d, ~0ull, 1, 16);
        rng_request(&f, vdrv_alloc(&f.d, 32, 8));
        vdrv_kick(&f.d, 0);
        /* The driver has not acknowledged: InterruptStatus is still set. */
        assert_int_equal(vdrv_read32(&f.d, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
        snapbuf_writer_init(&w);
        virtio_mmio_save(f.t, &w);
        irqs = f.d.irqs;
        assert_int_equal(rng_replace(&f, &w, NULL), 0);
        assert_true(f.d.irqs > irqs);
        assert_int_equal(vdrv_read32(&f.d, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
        snapbuf_writer_free(&w);
        rng_teardown(&f);
}

static void test_virtio_other_device_refused(void **state)
{
        struct rngfx f;
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct virtio_blk *blk;
        struct virtio_mmio *t;
        struct error err = {0};
        char path[] = "/tmp/test_device_snapshot.XXXXXX";
        int fd = mkstemp(path);

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 1 << 20), 0);
        close(fd);
        rng_setup(&f);
        vdrv_bring_up(&f.d, ~0ull, 1, 16);
        snapbuf_writer_init(&w);
        virtio_mmio_save(f.t, &w);
        struct virtio_blk_config bc = {.name = "block0", .path = path, .loop = f.loop};
        assert_int_equal(virtio_blk_create(&bc, &err, &blk), 0);
        struct virtio_mmio_config mc = {
            .vdev = virtio_blk_device(blk), .mem = f.hm, .irq = vdrv_irq_line(&f.d)};
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(t, &r), -EINVAL);
        assert_non_null(strstr(r.err, "a different kind of device"));
        assert_int_equal(virtio_mmio_status(t), 0); /* left reset */
        virtio_mmio_destroy(t);
        virtio_blk_destroy(blk);
        /* The same kind, configured differently: other features. */
        bc.read_only = true;
        assert_int_equal(virtio_blk_create(&bc, &err, &blk), 0);
        mc.vdev = virtio_blk_device(blk);
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        vdrv_attach(&f.d, t);
        {
                struct snapbuf_writer w2;
                struct virtio_blk *rw;
                struct virtio_mmio *t2;

                bc.read_only = false;
                assert_int_equal(virtio_blk_create(&bc, &err, &rw), 0);
                mc.vdev = virtio_blk_device(rw);
                assert_int_equal(virtio_mmio_create(&mc, &t2), 0);
                snapbuf_writer_init(&w2);
                virtio_mmio_save(t2, &w2);
                snapbuf_reader_init(&r, w2.data, w2.len);
                assert_int_equal(virtio_mmio_restore(t, &r), -EINVAL);
                assert_non_null(strstr(r.err, "offers other features"));
                snapbuf_writer_free(&w2);
                virtio_mmio_destroy(t2);
                virtio_blk_destroy(rw);
        }
        vdrv_attach(&f.d, f.t);
        virtio_mmio_destroy(t);
        virtio_blk_destroy(blk);
        unlink(path);
        snapbuf_writer_free(&w);
        rng_teardown(&f);
}

static void test_virtio_damaged_records(void **state)
{
        struct rngfx f;
        struct snapbuf_writer w;
        struct snapbuf_reader r;

        (void)state;
        rng_setup(&f);
        vdrv_bring_up(&f.d, ~0ull, 1, 16);
        rng_request(&f, vdrv_alloc(&f.d, 32, 8));
        vdrv_kick(&f.d, 0);
        snapbuf_writer_init(&w);
        virtio_mmio_save(f.t, &w);
        log_set_level(LOG_LEVEL_ERROR); /* broken rings are expected: no warnings */
        for (size_t n = 0; n < w.len; n++) {
                uint8_t *copy = malloc(n ? n : 1);

                memcpy(copy, w.data, n);
                snapbuf_reader_init(&r, copy, n);
                assert_int_equal(virtio_mmio_restore(f.t, &r), -EINVAL);
                assert_int_equal(virtio_mmio_status(f.t), 0);
                free(copy);
        }
        for (size_t i = 0; i < w.len; i++) {
                for (unsigned bit = 0; bit < 8; bit += 3) {
                        uint8_t *copy = malloc(w.len);

                        memcpy(copy, w.data, w.len);
                        copy[i] ^= (uint8_t)(1u << bit);
                        snapbuf_reader_init(&r, copy, w.len);
                        /* Accepted or refused, never harmful (the sanitizers watch). */
                        int ret = virtio_mmio_restore(f.t, &r);

                        assert_true(ret == 0 || ret == -EINVAL);
                        free(copy);
                }
        }
        log_set_level(LOG_LEVEL_INFO);
        snapbuf_writer_free(&w);
        rng_teardown(&f);
}

/* ---- vsock: TRANSPORT_RESET after a restore ---- */

static void test_vsock_transport_reset(void **state)
{
        struct guest_mem *mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        struct event_loop *loop;
        struct hostmem *hm;
        struct virtio_vsock *vs;
        struct virtio_mmio *t;
        struct vdriver d;
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct error err = {0};
        char dir[] = "/tmp/test_vsock_snap.XXXXXX", uds[64];
        uint32_t event = 0xffffffff;
        uint16_t id, head;
        uint32_t len;
        gpa_t ev;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(uds, sizeof(uds), "%s/v.sock", dir);
        assert_int_equal(hostmem_create(mem, "vsock", &hm), 0);
        assert_int_equal(event_loop_create(&loop), 0);
        struct virtio_vsock_config c = {
            .name = "vsock0", .guest_cid = 3, .uds_path = uds, .loop = loop};
        assert_int_equal(virtio_vsock_create(&c, &err, &vs), 0);
        vdrv_init(&d, mem, 0x10000, MEM);
        struct virtio_mmio_config mc = {
            .vdev = virtio_vsock_device(vs), .mem = hm, .irq = vdrv_irq_line(&d)};
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        vdrv_attach(&d, t);
        vdrv_bring_up(&d, ~0ull, 3, 16);
        ev = vdrv_alloc(&d, 8, 8);
        struct vdrv_buf b = {.addr = ev, .len = 8, .write = true};
        head = vdrv_add(&d, VIRTIO_VSOCK_EVQ, &b, 1);
        vdrv_kick(&d, VIRTIO_VSOCK_EVQ);
        assert_false(vdrv_get_used(&d, VIRTIO_VSOCK_EVQ, &id, &len)); /* no event yet */
        snapbuf_writer_init(&w);
        virtio_mmio_save(t, &w);
        virtio_mmio_destroy(t);
        virtio_vsock_destroy(vs);

        assert_int_equal(virtio_vsock_create(&c, &err, &vs), 0);
        mc.vdev = virtio_vsock_device(vs);
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        vdrv_attach(&d, t);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(t, &r), 0);
        assert_true(vdrv_get_used(&d, VIRTIO_VSOCK_EVQ, &id, &len));
        assert_int_equal(id, head);
        assert_int_equal(len, 4);
        vdrv_mem_read(&d, ev, &event, 4);
        assert_int_equal(event, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
        /* Only once. */
        head = vdrv_add(&d, VIRTIO_VSOCK_EVQ, &b, 1);
        vdrv_kick(&d, VIRTIO_VSOCK_EVQ);
        assert_false(vdrv_get_used(&d, VIRTIO_VSOCK_EVQ, &id, &len));
        snapbuf_writer_free(&w);
        virtio_mmio_destroy(t);
        virtio_vsock_destroy(vs);
        event_loop_destroy(loop);
        hostmem_destroy(hm);
        guest_mem_destroy(mem);
        rmdir(dir);
}

/* ---- balloon ---- */

static void test_balloon_keeps_target_and_actual(void **state)
{
        struct guest_mem *mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        struct event_loop *loop;
        struct hostmem *hm;
        struct virtio_balloon *b;
        struct virtio_mmio *t;
        struct vdriver d;
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct virtio_balloon_stats st;
        struct error err = {0};
        uint32_t actual = 77, v;

        (void)state;
        assert_int_equal(hostmem_create(mem, "balloon", &hm), 0);
        assert_int_equal(event_loop_create(&loop), 0);
        struct virtio_balloon_config c = {
            .name = "balloon0", .amount_mib = 2, .stats_polling_interval_s = 1, .loop = loop};
        assert_int_equal(virtio_balloon_create(&c, &err, &b), 0);
        vdrv_init(&d, mem, 0x10000, MEM);
        struct virtio_mmio_config mc = {
            .vdev = virtio_balloon_device(b), .mem = hm, .irq = vdrv_irq_line(&d)};
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        vdrv_attach(&d, t);
        vdrv_bring_up(&d, ~0ull, 3, 16);
        virtio_balloon_set_target(b, 3); /* a PATCH /balloon after the start */
        virtio_mmio_bus_ops()->write(t, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&actual, 4);
        snapbuf_writer_init(&w);
        virtio_mmio_save(t, &w);
        virtio_mmio_destroy(t);
        virtio_balloon_destroy(b);

        assert_int_equal(virtio_balloon_create(&c, &err, &b), 0);
        mc.vdev = virtio_balloon_device(b);
        assert_int_equal(virtio_mmio_create(&mc, &t), 0);
        vdrv_attach(&d, t);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(virtio_mmio_restore(t, &r), 0);
        virtio_balloon_get_stats(b, &st);
        assert_int_equal(st.target_pages, 3 * 256);
        assert_int_equal(st.actual_pages, 77);
        vdrv_read_config(&d, 0, &v, 4);
        assert_int_equal(v, 3 * 256);
        snapbuf_writer_free(&w);
        virtio_mmio_destroy(t);
        virtio_balloon_destroy(b);
        event_loop_destroy(loop);
        hostmem_destroy(hm);
        guest_mem_destroy(mem);
}

/* ---- the UART and the i8042 ---- */

static uint8_t serial_in(struct serial *s, uint64_t reg)
{
        uint8_t v = 0;

        serial_bus_ops()->read(s, reg, &v, 1);
        return v;
}

static void serial_out(struct serial *s, uint64_t reg, uint8_t v)
{
        serial_bus_ops()->write(s, reg, &v, 1);
}

static void test_serial_round_trip(void **state)
{
        struct fake_irq irq_a, irq_b;
        struct out_capture out = {0};
        struct serial *a, *b;
        struct snapbuf_writer w;
        struct snapbuf_reader r;

        (void)state;
        fake_irq_init(&irq_a);
        fake_irq_init(&irq_b);
        struct serial_config ca = {
            .irq = fake_irq_line(&irq_a), .out = out_capture_fn, .opaque = &out};
        struct serial_config cb = {
            .irq = fake_irq_line(&irq_b), .out = out_capture_fn, .opaque = &out};
        assert_int_equal(serial_create(&ca, &a), 0);
        assert_int_equal(serial_create(&cb, &b), 0);
        serial_out(a, 3, 0x1b); /* LCR */
        serial_out(a, 7, 0x5c); /* scratch */
        serial_out(a, 1, 0x01); /* IER: received data */
        assert_int_equal(serial_rx_push(a, (const uint8_t *)"abc", 3), 3);
        assert_true(irq_a.level);
        snapbuf_writer_init(&w);
        serial_save(a, &w);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(serial_restore(b, &r), 0);
        assert_true(snapbuf_expect_end(&r, "serial"));
        assert_true(irq_b.level); /* the interrupt line is driven to the saved level */
        assert_int_equal(serial_in(b, 3), 0x1b);
        assert_int_equal(serial_in(b, 7), 0x5c);
        assert_int_equal(serial_in(b, 1), 0x01);
        assert_int_equal(serial_in(b, 0), 'a');
        assert_int_equal(serial_in(b, 0), 'b');
        assert_int_equal(serial_in(b, 0), 'c');
        assert_false(serial_in(b, 5) & 1); /* FIFO empty */
        /* A FIFO longer than the chip's is refused, the device unchanged. */
        w.data[10] = 65;
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(serial_restore(b, &r), -EINVAL);
        assert_int_equal(serial_in(b, 7), 0x5c);
        snapbuf_writer_free(&w);
        serial_destroy(a);
        serial_destroy(b);
}

static void test_i8042_round_trip(void **state)
{
        struct fake_irq irq;
        struct i8042 *a, *b;
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        uint8_t seq_a[16], seq_b[16];
        unsigned n = 0;

        (void)state;
        fake_irq_init(&irq);
        struct i8042_config c = {.kbd_irq = fake_irq_line(&irq)};
        assert_int_equal(i8042_create(&c, &a), 0);
        assert_int_equal(i8042_create(&c, &b), 0);
        assert_int_equal(i8042_send_ctrl_alt_del(a), 0);
        snapbuf_writer_init(&w);
        i8042_save(a, &w);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(i8042_restore(b, &r), 0);
        for (;;) {
                uint8_t st = 0;

                i8042_cmd_ops()->read(a, 0, &st, 1);
                if (!(st & 1))
                        break;
                i8042_data_ops()->read(a, 0, &seq_a[n], 1);
                i8042_data_ops()->read(b, 0, &seq_b[n], 1);
                n++;
        }
        assert_true(n >= 6);
        assert_memory_equal(seq_a, seq_b, n);
        snapbuf_writer_free(&w);
        i8042_destroy(a);
        i8042_destroy(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_virtio_queues_continue),
            cmocka_unit_test(test_virtio_pending_interrupt_signalled_again),
            cmocka_unit_test(test_virtio_other_device_refused),
            cmocka_unit_test(test_virtio_damaged_records),
            cmocka_unit_test(test_vsock_transport_reset),
            cmocka_unit_test(test_balloon_keeps_target_and_actual),
            cmocka_unit_test(test_serial_round_trip),
            cmocka_unit_test(test_i8042_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
