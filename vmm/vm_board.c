#include "vm_board.h"

#include <string.h>

#include "arch/cc/cc.h"
#include "arch/x86/layout.h"
#include "vm_devices.h"

/* Placed by convention: the ISA ports and IRQs every x86 guest probes. */
static const struct {
        enum vm_board_role role;
        struct platform_dev dev;
} board_isa[] = {
    {VM_BOARD_SERIAL,
     {.name = "COM1",
      .kind = PLATFORM_DEV_SERIAL,
      .base = X86_COM1_PORT,
      .len = 8,
      .gsi = X86_COM1_IRQ}},
    {VM_BOARD_I8042,
     {.name = "PS2K",
      .kind = PLATFORM_DEV_I8042,
      .base = X86_I8042_DATA_PORT,
      .len = 5,
      .gsi = X86_I8042_IRQ}},
    /* Linux's poweroff: the FADT's sleep registers and the DSDT's \_S5 come from this entry. */
    {VM_BOARD_ACPI_SLEEP,
     {.name = "SLPR", .kind = PLATFORM_DEV_ACPI_SLEEP, .base = X86_ACPI_SLEEP_PORT, .len = 2}},
};

int vm_board_add(struct vm_board *b, enum vm_board_role role, unsigned index,
                 struct platform_dev *dev, bool alloc, struct error *err)
{
        unsigned i = b->desc.nr_devs;
        int r =
            alloc ? platform_alloc_dev(&b->desc, dev, err) : platform_add_dev(&b->desc, dev, err);

        if (!r)
                b->roles[i] = (struct vm_board_dev){.role = role, .index = index};
        return r;
}

int vm_board_build(const struct vmm_config *cfg, struct vm_board *b, struct error *err)
{
        uint64_t ram = cfg->machine.mem_size_mib << 20;
        struct platform_dev dev;
        int r = 0;

        memset(b, 0, sizeof(*b));
        b->desc.nr_vcpus = cfg->machine.vcpu_count;
        /* guest_mem's layout: RAM past the hole's start continues at its end. */
        b->desc.ram_end =
            X86_MMIO_HOLE_END + (ram > X86_MMIO_HOLE_START ? ram - X86_MMIO_HOLE_START : 0);
        for (size_t i = 0; !r && i < ARRAY_SIZE(board_isa); i++) {
                dev = board_isa[i].dev;
                r = vm_board_add(b, board_isa[i].role, 0, &dev, false, err);
        }
        /* Guests write to it blind (Firecracker's convention): a fixed address. */
        if (!r && cfg->boot_timer) {
                dev = (struct platform_dev){.name = "BTMR",
                                            .kind = PLATFORM_DEV_MMIO_OTHER,
                                            .base = X86_BOOT_TIMER_ADDR,
                                            .len = X86_BOOT_TIMER_LEN};
                r = vm_board_add(b, VM_BOARD_BOOT_TIMER, 0, &dev, false, err);
        }
        if (!r && cc_describe_callwin(cfg->confidential.platform, &dev))
                r = vm_board_add(b, VM_BOARD_CALLWIN, 0, &dev, false, err);
        if (!r)
                r = vm_devices_describe(cfg, b, err);
        /* After the virtio slots, so that adding it moved none of theirs (the layout of
         * snapshots saved before it existed). */
        if (!r && platform_has_free_gsi(&b->desc)) {
                dev = (struct platform_dev){
                    .name = "VGEN", .kind = PLATFORM_DEV_VMGENID, .len = X86_PAGE_SIZE};
                r = vm_board_add(b, VM_BOARD_VMGENID, 0, &dev, true, err);
        }
        return r;
}

const struct platform_dev *vm_board_find(const struct vm_board *b, enum vm_board_role role,
                                         unsigned index)
{
        for (unsigned i = 0; i < b->desc.nr_devs; i++)
                if (b->roles[i].role == role && b->roles[i].index == index)
                        return &b->desc.devs[i];
        return NULL;
}
