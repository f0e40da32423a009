/*
 * Application-processor start-up code. scenarios/smp.c copies the bytes between
 * ap_trampoline_start and ap_trampoline_end to a page below 1 MiB and sends STARTUP IPIs with
 * that page's number as vector: the AP begins here in real mode with CS = page << 8, IP = 0.
 * It loads the probe's GDT, enters 32-bit protected mode and jumps to ap_entry32
 * (boot/entry.S), which continues with the BSP's page tables into long mode.
 *
 * Position independent within its page: data is addressed relative to CS (copied to DS);
 * the far jump and the GDT base are absolute addresses in the probe image.
 * It lives in .rodata because this copy is never executed in place.
 */
#include "boot.h"

        .section .rodata, "a"
        .code16
        .globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
        cli
        movw %cs, %ax
        movw %ax, %ds
        /* The operand-size prefix makes lgdt take a full 32-bit base. */
        lgdtl ap_gdt_ptr - ap_trampoline_start
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $PROBE_CS32, $ap_entry32

        .p2align 2
ap_gdt_ptr:
        .word gdt_limit
        .long gdt
ap_trampoline_end:

        .section .note.GNU-stack, "", @progbits
