#include "idt.h"

#include <stddef.h>

#include "apic.h"
#include "cpu.h"
#include "print.h"
#include "probe.h"
#include "boot.h"

#define IDT_VECTORS       256
#define ISR_STUB_SIZE     16
#define GATE_INTERRUPT    0x8e /* present, DPL 0, 64-bit interrupt gate (IF cleared on entry) */
#define EXCEPTION_VECTORS 32

struct idt_gate {
        uint16_t offset_lo;
        uint16_t selector;
        uint8_t ist;
        uint8_t type;
        uint16_t offset_mid;
        uint32_t offset_hi;
        uint32_t reserved;
} __attribute__((packed));

struct idt_ptr {
        uint16_t limit;
        uint64_t base;
} __attribute__((packed));

extern const char isr_stubs[];

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));
static isr_handler handlers[IDT_VECTORS];

void idt_load(void)
{
        struct idt_ptr p = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};

        __asm__ __volatile__("lidt %0" : : "m"(p) : "memory");
}

void idt_init(void)
{
        for (unsigned v = 0; v < IDT_VECTORS; v++) {
                uint64_t a = (uint64_t)(uintptr_t)(isr_stubs + v * ISR_STUB_SIZE);

                idt[v] = (struct idt_gate){
                    .offset_lo = (uint16_t)a,
                    .selector = PROBE_CS64,
                    .type = GATE_INTERRUPT,
                    .offset_mid = (uint16_t)(a >> 16),
                    .offset_hi = (uint32_t)(a >> 32),
                };
        }
        idt_load();
}

void idt_set_handler(uint8_t vector, isr_handler fn)
{
        handlers[vector] = fn;
}

void idt_load_empty(void)
{
        struct idt_ptr p = {0, 0};

        __asm__ __volatile__("lidt %0" : : "m"(p) : "memory");
}

void isr_dispatch(struct isr_frame *f);

void isr_dispatch(struct isr_frame *f)
{
        if (f->vector < EXCEPTION_VECTORS) {
                /* Unlocked: the fault may have hit while this CPU held the console lock. */
                print_unlocked("probe: exception %u error 0x%llx cr2 0x%llx rsp 0x%llx\n",
                               (unsigned)f->vector, U64(f->error), U64(cpu_read_cr2()),
                               U64(f->rsp));
                probe_fail_unlocked("exception %u rip=0x%llx", (unsigned)f->vector, U64(f->rip));
        }
        if (f->vector == APIC_SPURIOUS_VECTOR)
                return; /* a spurious interrupt must not be acknowledged */
        if (!handlers[f->vector])
                probe_fail("unexpected interrupt %u", (unsigned)f->vector);
        handlers[f->vector](f);
        lapic_eoi();
}
