/*
 * The interrupt descriptor table. Every vector has a stub (boot/isr.S). Exceptions (0-31)
 * end the run with `probe: fail NAME exception VEC rip=0x...`; other vectors go to the
 * handler registered for them, followed by a local APIC EOI (except for the spurious vector).
 * An interrupt with no handler is a failure too.
 */
#ifndef PROBE_IDT_H
#define PROBE_IDT_H

#include <stdint.h>

struct isr_frame {
        uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
        uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
        uint64_t vector, error;
        uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

typedef void (*isr_handler)(struct isr_frame *frame);

/* Fills the IDT and loads it on this CPU (the BSP, once). */
void idt_init(void);
/* Loads the already filled IDT (APs). */
void idt_load(void);
void idt_set_handler(uint8_t vector, isr_handler fn);
/* Loads a zero-limit IDT: the next exception cannot be delivered and triple-faults. */
void idt_load_empty(void);

#endif
