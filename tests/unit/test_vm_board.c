/*
 * The board (vmm/vm_board.h) without KVM: every device's window and GSI for a configuration
 * with every kind of device. The layout is pinned -- the addresses and GSIs the VMM has
 * always given (virtio-mmio slot n at 0xc0001000 + n * 0x1000 on GSI 5 + n, in the order
 * drives, network interfaces, vsock, balloon, entropy; with or without the boot timer; the
 * VM generation ID after them, at the first window of the other devices' range) --
 * because a snapshot is restored by building the board again from its configuration: a
 * change here moves devices under restored guests.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "vmm/vm_board.h"

static void add_drive(struct vmm_config *c, const char *id, bool root)
{
        struct vmm_drive d = {.is_root_device = root};
        struct error err = {0};

        assert_int_equal(vmm_config_set_str(&d.drive_id, id), 0);
        assert_int_equal(vmm_config_set_str(&d.path_on_host, "/dev/null"), 0);
        assert_int_equal(vmm_config_put_drive(c, &d, &err), 0);
}

static void add_net(struct vmm_config *c, const char *id, const char *tap)
{
        struct vmm_net n = {0};
        struct error err = {0};

        assert_int_equal(vmm_config_set_str(&n.iface_id, id), 0);
        assert_int_equal(vmm_config_set_str(&n.host_dev_name, tap), 0);
        assert_int_equal(vmm_config_put_net(c, &n, &err), 0);
}

/* Two drives (the root one given second), two interfaces, vsock, balloon, entropy. */
static void every_kind(struct vmm_config *c)
{
        vmm_config_init(c);
        c->machine.vcpu_count = 2;
        add_drive(c, "data", false);
        add_drive(c, "root", true);
        add_net(c, "eth0", "tap0");
        add_net(c, "eth1", "tap1");
        c->vsock.present = true;
        c->vsock.guest_cid = 3;
        c->balloon.present = true;
        c->entropy.present = true;
}

static void expect(const struct vm_board *b, enum vm_board_role role, unsigned index,
                   const char *name, enum platform_dev_kind kind, uint64_t base, uint64_t len,
                   uint32_t gsi)
{
        const struct platform_dev *d = vm_board_find(b, role, index);

        assert_non_null(d);
        assert_string_equal(d->name, name);
        assert_int_equal(d->kind, kind);
        assert_int_equal(d->base, base);
        assert_int_equal(d->len, len);
        if (platform_dev_has_gsi(d))
                assert_int_equal(d->gsi, gsi);
}

static void expect_virtio(const struct vm_board *b, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                char name[16];

                snprintf(name, sizeof(name), "VR%02u", i);
                expect(b, VM_BOARD_VIRTIO, i, name, PLATFORM_DEV_VIRTIO_MMIO,
                       0xc0001000 + i * 0x1000ull, 0x1000, 5 + i);
        }
        assert_null(vm_board_find(b, VM_BOARD_VIRTIO, n));
}

static void test_layout_every_kind(void **state)
{
        struct vmm_config c;
        struct vm_board *b = malloc(sizeof(*b));
        struct error err = {0};

        (void)state;
        every_kind(&c);
        c.boot_timer = true;
        c.confidential.platform = CC_PLATFORM_S390_PV;
        assert_int_equal(vm_board_build(&c, b, &err), 0);
        assert_int_equal(b->desc.nr_vcpus, 2);
        assert_int_equal(b->desc.nr_devs, 5 + 7 + 1);
        expect(b, VM_BOARD_SERIAL, 0, "COM1", PLATFORM_DEV_SERIAL, 0x3f8, 8, 4);
        expect(b, VM_BOARD_I8042, 0, "PS2K", PLATFORM_DEV_I8042, 0x60, 5, 1);
        expect(b, VM_BOARD_ACPI_SLEEP, 0, "SLPR", PLATFORM_DEV_ACPI_SLEEP, 0x600, 2, 0);
        expect(b, VM_BOARD_BOOT_TIMER, 0, "BTMR", PLATFORM_DEV_MMIO_OTHER, 0xc0000000, 0x1000, 0);
        expect(b, VM_BOARD_CALLWIN, 0, "CCPW", PLATFORM_DEV_ACPI_MMIO, 0xc0080000, 0x1000, 0);
        expect_virtio(b, 7);
        expect(b, VM_BOARD_VMGENID, 0, "VGEN", PLATFORM_DEV_VMGENID, 0xc0100000, 0x1000, 12);
        /* Slot order: the root drive (put first by the configuration), the other drive, ... */
        assert_string_equal(c.drives[0].drive_id, "root");
        vmm_config_free(&c);
        free(b);
}

/* Without the boot timer the virtio-mmio slots stay where they were (not at 0xc0000000). */
static void test_layout_without_boot_timer(void **state)
{
        struct vmm_config c;
        struct vm_board *b = malloc(sizeof(*b));
        struct error err = {0};

        (void)state;
        every_kind(&c);
        assert_int_equal(vm_board_build(&c, b, &err), 0);
        assert_int_equal(b->desc.nr_devs, 3 + 7 + 1);
        assert_null(vm_board_find(b, VM_BOARD_BOOT_TIMER, 0));
        assert_null(vm_board_find(b, VM_BOARD_CALLWIN, 0));
        expect_virtio(b, 7);
        expect(b, VM_BOARD_VMGENID, 0, "VGEN", PLATFORM_DEV_VMGENID, 0xc0100000, 0x1000, 12);
        vmm_config_free(&c);
        free(b);
}

static void add_pmem(struct vmm_config *c, const char *id, uint64_t window)
{
        struct vmm_pmem p = {.window_size = window};
        struct error err = {0};

        assert_int_equal(vmm_config_set_str(&p.id, id), 0);
        assert_int_equal(vmm_config_set_str(&p.path_on_host, "/dev/null"), 0);
        assert_int_equal(vmm_config_put_pmem(c, &p, &err), 0);
}

/* pmem devices take the virtio-mmio slots after every other device (older snapshots keep
 * theirs), and their windows sit past the end of RAM, 2 MiB aligned, in configuration
 * order: from 4 GiB while RAM fits below the hole, from 4 GiB plus what RAM puts above it
 * otherwise. */
static void test_pmem_windows_past_ram(void **state)
{
        static const struct {
                uint64_t mib, first;
        } cases[] = {
            {128, 0x100000000ull},
            {3072, 0x100000000ull},
            {4097, 0x140000000ull + (2ull << 20)}, /* 1 GiB + 1 MiB above: aligned up */
        };
        struct vm_board *b = malloc(sizeof(*b));
        struct error err = {0};

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct vmm_config c;

                every_kind(&c);
                c.machine.mem_size_mib = cases[i].mib;
                add_pmem(&c, "rootfs", 6ull << 20);
                add_pmem(&c, "data", 2ull << 20);
                assert_int_equal(vm_board_build(&c, b, &err), 0);
                expect_virtio(b, 9);
                expect(b, VM_BOARD_PMEM, 0, "PM00", PLATFORM_DEV_MEMORY, cases[i].first, 6ull << 20,
                       0);
                expect(b, VM_BOARD_PMEM, 1, "PM01", PLATFORM_DEV_MEMORY,
                       cases[i].first + (6ull << 20), 2ull << 20, 0);
                vmm_config_free(&c);
        }
        free(b);
}

/* The virtio-mem region: its slot after the pmem devices', its window after their windows,
 * aligned to its slot size. */
static void test_hotplug_region_after_pmem(void **state)
{
        struct vm_board *b = malloc(sizeof(*b));
        struct error err = {0};
        struct vmm_config c;

        (void)state;
        every_kind(&c);
        add_pmem(&c, "rootfs", 6ull << 20);
        c.hotplug = (struct vmm_memory_hotplug){
            .present = true, .total_size_mib = 512, .slot_size_mib = 256, .block_size_mib = 2};
        assert_int_equal(vm_board_build(&c, b, &err), 0);
        expect_virtio(b, 9);
        expect(b, VM_BOARD_PMEM, 0, "PM00", PLATFORM_DEV_MEMORY, 0x100000000ull, 6ull << 20, 0);
        expect(b, VM_BOARD_HOTPLUG, 0, "HPMM", PLATFORM_DEV_MEMORY, 0x110000000ull, 512ull << 20,
               0);
        vmm_config_free(&c);
        free(b);
}

/* The i8042's two windows are its data and command ports, in that order (vm.c gives them
 * their handlers in this order). */
static void test_i8042_windows(void **state)
{
        struct vmm_config c;
        struct vm_board *b = malloc(sizeof(*b));
        struct platform_window w[PLATFORM_MAX_WINDOWS];
        struct error err = {0};

        (void)state;
        vmm_config_init(&c);
        assert_int_equal(vm_board_build(&c, b, &err), 0);
        assert_int_equal(platform_dev_windows(vm_board_find(b, VM_BOARD_I8042, 0), w), 2);
        assert_int_equal(w[0].space, PLATFORM_PIO);
        assert_int_equal(w[0].base, X86_I8042_DATA_PORT);
        assert_int_equal(w[0].len, 1);
        assert_int_equal(w[1].base, X86_I8042_CMD_PORT);
        assert_int_equal(w[1].len, 1);
        assert_int_equal(platform_dev_windows(vm_board_find(b, VM_BOARD_SERIAL, 0), w), 1);
        assert_int_equal(w[0].base, X86_COM1_PORT);
        vmm_config_free(&c);
        free(b);
}

/* 19 virtio devices take GSIs 5..23; a 20th finds none (the configuration's own check says
 * so first; the board refuses on its own too). The VM generation ID gives way: 18 devices
 * leave it GSI 23, 19 leave it none, and the board has none rather than failing. */
static void test_gsis_run_out(void **state)
{
        struct vmm_config c;
        struct vm_board *b = malloc(sizeof(*b));
        struct error err = {0};

        (void)state;
        vmm_config_init(&c);
        for (unsigned i = 0; i < 19; i++) {
                char id[8];

                snprintf(id, sizeof(id), "d%u", i);
                add_drive(&c, id, false);
                if (i == 17) {
                        assert_int_equal(vm_board_build(&c, b, &err), 0);
                        expect(b, VM_BOARD_VMGENID, 0, "VGEN", PLATFORM_DEV_VMGENID, 0xc0100000,
                               0x1000, 23);
                }
        }
        assert_int_equal(vm_board_build(&c, b, &err), 0);
        expect_virtio(b, 19);
        assert_null(vm_board_find(b, VM_BOARD_VMGENID, 0));
        c.entropy.present = true;
        assert_int_equal(vm_board_build(&c, b, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "every GSI from 5 to 23 is taken"));
        vmm_config_free(&c);
        free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_layout_every_kind),
            cmocka_unit_test(test_layout_without_boot_timer),
            cmocka_unit_test(test_i8042_windows),
            cmocka_unit_test(test_pmem_windows_past_ram),
            cmocka_unit_test(test_hotplug_region_after_pmem),
            cmocka_unit_test(test_gsis_run_out),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
