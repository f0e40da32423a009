/*
 * The VM generation ID device (devices/vmgenid.h) on its own: the guest reads the 16-byte id
 * (any access width, at any offset), zeros past it, cannot write it; a new generation is a
 * new id and one edge on the event device's line; a fresh device draws its own id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/vmgenid.h"
#include "fakes.h"

static void read_all(struct vmgenid *v, uint8_t out[32], uint32_t width)
{
        const struct bus_ops *ops = vmgenid_bus_ops();

        for (uint32_t off = 0; off < 32; off += width)
                ops->read(v, off, out + off, width);
}

static void test_reads_and_writes(void **state)
{
        struct fake_irq irq;
        struct vmgenid *v;
        struct error err = {0};
        uint8_t id[VMGENID_LEN], by1[32], by8[32], zero[16] = {0};
        const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};

        (void)state;
        fake_irq_init(&irq);
        assert_int_equal(vmgenid_create(fake_irq_line(&irq), &err, &v), 0);
        vmgenid_get(v, id);
        assert_memory_not_equal(id, zero, sizeof(id));
        read_all(v, by1, 1);
        read_all(v, by8, 8);
        assert_memory_equal(by1, id, VMGENID_LEN);
        assert_memory_equal(by8, id, VMGENID_LEN);
        assert_memory_equal(by1 + 16, zero, 16);
        assert_memory_equal(by8 + 16, zero, 16);
        vmgenid_bus_ops()->write(v, 0, junk, sizeof(junk));
        read_all(v, by8, 8);
        assert_memory_equal(by8, id, VMGENID_LEN);
        assert_int_equal(irq.nr_events, 0); /* no interrupt at creation */
        vmgenid_destroy(v);
}

static void test_new_generation(void **state)
{
        struct fake_irq irq;
        struct vmgenid *v, *w;
        struct error err = {0};
        uint8_t a[VMGENID_LEN], b[VMGENID_LEN], c[VMGENID_LEN], seen[32];

        (void)state;
        fake_irq_init(&irq);
        assert_int_equal(vmgenid_create(fake_irq_line(&irq), &err, &v), 0);
        assert_int_equal(vmgenid_create((struct irq_line){0}, &err, &w), 0);
        vmgenid_get(v, a);
        vmgenid_get(w, c);
        assert_memory_not_equal(a, c, VMGENID_LEN);
        assert_int_equal(vmgenid_new_generation(v, &err), 0);
        vmgenid_get(v, b);
        assert_memory_not_equal(a, b, VMGENID_LEN);
        read_all(v, seen, 4);
        assert_memory_equal(seen, b, VMGENID_LEN);
        /* One edge: raised, then lowered. */
        assert_int_equal(irq.nr_events, 2);
        assert_true(irq.events[0]);
        assert_false(irq.events[1]);
        assert_int_equal(irq.raises, 1);
        vmgenid_destroy(v);
        vmgenid_destroy(w);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_reads_and_writes),
            cmocka_unit_test(test_new_generation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
