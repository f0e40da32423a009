/*
 * The tiny guest: a PVH ELF whose first instruction asks the i8042 to pulse the CPU reset
 * line (`out 0x64` of 0xfe), which ends `vmm` (exit 0) and is the exit bench/bare-kvm runs
 * to. What follows ends QEMU's microvm machine, which has no i8042: a triple fault (an
 * empty IDT, then an invalid opcode), which `-no-reboot` turns into an exit.
 *
 * Entered in 32-bit protected mode with paging off (PVH), at pvh_entry: the probe's PVH note
 * (tests/guest/boot/pvh_note.S) is linked in.
 */
        .text
        .code32
        .globl pvh_entry
pvh_entry:
        movb $0xfe, %al
        outb %al, $0x64
        lidt empty_idt
        ud2

        .p2align 3
empty_idt:
        .word 0
        .long 0

        .section .note.GNU-stack, "", @progbits
