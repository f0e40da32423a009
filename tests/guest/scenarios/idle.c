/*
 * idle: a guest that stays up for the control-plane tests. It routes the keyboard (ISA IRQ 1)
 * through the IOAPIC, enables interrupts, prints `probe: idle ready` and halts until the
 * i8042 delivers Ctrl+Alt+Del (the VMM's SendCtrlAltDel action); then it prints
 * `probe: ctrl-alt-del` and returns, so the run ends with `probe: ok idle` and a reset.
 *
 * Scancodes are decoded in set 1 when the controller translates (the default; the guest
 * reads the configuration byte to know) and in set 2 otherwise.
 */
#include "scenarios.h"

#include <stdbool.h>

#include "apic.h"
#include "arch/x86/layout.h"
#include "cpu.h"
#include "idt.h"
#include "io.h"
#include "probe.h"

#define KBD_VECTOR 0x21

#define I8042_STATUS_OBF 0x01
#define I8042_READ_CTR   0x20
#define I8042_CTR_XLATE  0x40
#define I8042_DRAIN_MAX  64
#define I8042_WAIT_SPINS 100000

/* Make codes (set 1; set 2 in brackets): Left Ctrl 0x1d [0x14], Left Alt 0x38 [0x11],
 * Delete E0 0x53 [E0 0x71]. Set 1 breaks set bit 7; set 2 breaks are prefixed by F0. */
#define SET1_CTRL  0x1d
#define SET1_ALT   0x38
#define SET1_DEL   0x53
#define SET2_CTRL  0x14
#define SET2_ALT   0x11
#define SET2_DEL   0x71
#define SC_EXTEND  0xe0
#define SET2_BREAK 0xf0

static bool set2;
static bool extended, released, ctrl, alt;
static volatile uint32_t cad_seen;

static void key_byte(uint8_t b)
{
        bool ext, brk;
        uint8_t code;

        if (b == SC_EXTEND) {
                extended = true;
                return;
        }
        if (set2 && b == SET2_BREAK) {
                released = true;
                return;
        }
        ext = extended;
        extended = false;
        if (set2) {
                brk = released;
                released = false;
                code = b;
        } else {
                brk = (b & 0x80) != 0;
                code = b & 0x7f;
        }
        /* Either Ctrl or Alt key (the right ones are the extended codes). */
        if (code == (set2 ? SET2_CTRL : SET1_CTRL))
                ctrl = !brk;
        else if (code == (set2 ? SET2_ALT : SET1_ALT))
                alt = !brk;
        else if (ext && !brk && code == (set2 ? SET2_DEL : SET1_DEL) && ctrl && alt)
                cad_seen = 1;
}

static void kbd_isr(struct isr_frame *f)
{
        (void)f;
        for (unsigned i = 0; i < I8042_DRAIN_MAX && (inb(X86_I8042_CMD_PORT) & I8042_STATUS_OBF);
             i++)
                key_byte(inb(X86_I8042_DATA_PORT));
}

/* Reads the controller configuration byte by polling (interrupts are still off). */
static uint8_t read_ctr(void)
{
        outb(X86_I8042_CMD_PORT, I8042_READ_CTR);
        for (unsigned i = 0; i < I8042_WAIT_SPINS; i++)
                if (inb(X86_I8042_CMD_PORT) & I8042_STATUS_OBF)
                        return inb(X86_I8042_DATA_PORT);
        probe_fail("the i8042 does not answer the read-configuration command");
}

void scenario_idle(const struct boot_info *bi)
{
        struct acpi_madt madt;
        struct ioapic_pin kbd;
        uint8_t ctr;

        scenario_madt(bi, &madt);
        apic_init(madt.lapic_addr);
        idt_set_handler(KBD_VECTOR, kbd_isr);
        ctr = read_ctr();
        set2 = !(ctr & I8042_CTR_XLATE);
        for (unsigned i = 0; i < I8042_DRAIN_MAX && (inb(X86_I8042_CMD_PORT) & I8042_STATUS_OBF);
             i++)
                (void)inb(X86_I8042_DATA_PORT);
        kbd = scenario_route_isa_irq(&madt, X86_I8042_IRQ, KBD_VECTOR);
        cpu_sti();
        print("probe: idle ready\n");
        for (;;) {
                cpu_cli();
                if (cad_seen)
                        break;
                cpu_sti_hlt();
        }
        ioapic_mask(kbd.ioapic, kbd.pin);
        print("probe: ctrl-alt-del\n");
}
