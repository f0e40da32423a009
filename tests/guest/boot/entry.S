/*
 * The probe's entry points and its switch to long mode.
 *
 * Image layout (linked at 1 MiB; boot/probe.ld asserts the offsets):
 *   +0x000 linux32_entry  32-bit Linux boot protocol entry (code32_start), esi = boot_params
 *   +0x010 image header   read by tools/mkbzimage.c
 *   +0x040 pvh_entry      PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), ebx = hvm_start_info
 *   +0x200 linux64_entry  64-bit Linux boot protocol entry and ELF e_entry, rsi = boot_params
 *
 * Every entry's first I/O is `outb 0x01 -> port 0x80` within its first two instructions: the
 * VMM's benchmark times the first guest instruction by it.
 *
 * None of the boot protocols promises a zeroed .bss (a bzImage loader copies only the file)
 * or page tables beyond 1 GiB, so each path clears .bss and builds the probe's own identity
 * map of 0-4 GiB with 2 MiB pages, cache-disabled from 0xC0000000 up (the MMIO hole), before
 * any C code runs.
 */
#include "bootinfo.h"
#include "boot.h"

#define CR0_PE     0x00000001
#define CR0_PG     0x80000000
#define CR4_PAE    0x00000020
#define MSR_EFER   0xc0000080
#define EFER_LME   0x00000100
#define PTE_P      0x001
#define PTE_RW     0x002
#define PTE_PWT    0x008
#define PTE_PCD    0x010
#define PTE_PS     0x080
#define PD_ENTRIES 2048 /* 4 page directories of 512 x 2 MiB */
#define PD_MMIO    1536 /* 0xC0000000 / 2 MiB: the first uncached entry */

#define BSP_STACK_SIZE 16384
#define AP_STACK_SIZE  8192

/*
 * Fills the page tables, which .bss clearing has zeroed. Written once for both the 32-bit and
 * the 64-bit entry: \idx is %ecx or %rcx, the only register-width difference.
 */
.macro fill_page_tables idx
        movl $(pdpt + PTE_P + PTE_RW), pml4
        movl $(pd + 0x0000 + PTE_P + PTE_RW), pdpt
        movl $(pd + 0x1000 + PTE_P + PTE_RW), pdpt + 8
        movl $(pd + 0x2000 + PTE_P + PTE_RW), pdpt + 16
        movl $(pd + 0x3000 + PTE_P + PTE_RW), pdpt + 24
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $21, %eax
        orl $(PTE_P + PTE_RW + PTE_PS), %eax
        cmpl $PD_MMIO, %ecx
        jb 2f
        orl $(PTE_PCD + PTE_PWT), %eax
2:      movl %eax, pd(, \idx, 8) /* the high half stays 0: everything is below 4 GiB */
        incl %ecx
        cmpl $PD_ENTRIES, %ecx
        jb 1b
.endm

        .section .text.head, "ax"
        .code32
        .globl linux32_entry
linux32_entry:
        movb $1, %al
        outb %al, $0x80
        movl %esi, %ebx
        movl $BOOT_PATH_LINUX32, %ebp
        jmp entry32

        .org 0x10
        /* Image header for tools/mkbzimage.c: the file and memory footprints come from the
         * linker script, so the bzImage's syssize and init_size cannot drift from the link. */
        .globl probe_image_header
probe_image_header:
        .ascii "PROBEIMG"
        .long __image_start                /* load (link) address */
        .long __probe_load_size            /* bytes of the flat binary */
        .long __probe_mem_size             /* bytes from the load address to the end of .bss */
        .long linux64_entry - linux32_entry /* must be 0x200 */
        .long pvh_entry - linux32_entry

        .org 0x40
        .globl pvh_entry
pvh_entry:
        movb $1, %al
        outb %al, $0x80
        movl $BOOT_PATH_PVH, %ebp
        /* fall through, ebx = hvm_start_info */

/* 32-bit protected mode, paging off, flat segments; ebx = boot structure, ebp = path. */
entry32:
        cli
        cld
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        shrl $2, %ecx
        xorl %eax, %eax
        rep stosl
        movl %ebx, boot_info_addr
        movl %ebp, boot_path

        /* The loader's GDT may sit anywhere, even where the probe will write: use ours. */
        lgdt gdt_ptr
        ljmp $PROBE_CS32, $1f
1:      movl $PROBE_DS, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl %eax, %fs
        movl %eax, %gs

        fill_page_tables %ecx
        xorl %edi, %edi /* BSP */
        jmp enter_long_mode

/*
 * 32-bit protected mode with our GDT loaded and page tables built -> long mode.
 * edi: 0 on the BSP, 1 on an AP. Shared by the PVH and 32-bit entries and by AP start-up.
 */
        .globl enter_long_mode
enter_long_mode:
        movl %cr4, %eax
        orl $CR4_PAE, %eax
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl $MSR_EFER, %ecx
        rdmsr
        orl $EFER_LME, %eax
        wrmsr
        movl %cr0, %eax
        orl $(CR0_PG + CR0_PE), %eax
        movl %eax, %cr0
        ljmp $PROBE_CS64, $long_mode

/* AP start-up continues here from the real-mode trampoline (boot/trampoline.S), which
 * loaded our GDT and set CR0.PE. */
        .globl ap_entry32
ap_entry32:
        movl $PROBE_DS, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl $1, %edi
        jmp enter_long_mode

        .code64
        .org 0x200
        .globl linux64_entry
linux64_entry:
        movb $1, %al
        outb %al, $0x80
        cli
        cld
        movq %rsi, %rbx
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        shrl $3, %ecx
        xorl %eax, %eax
        rep stosq
        movq %rbx, boot_info_addr
        movl $BOOT_PATH_LINUX64, boot_path

        /* The loader's map covers only the first GiB (enough for the image itself): switch
         * to ours before touching anything else. */
        fill_page_tables %rcx
        movl $pml4, %eax
        movq %rax, %cr3
        lgdt gdt_ptr
        /* Reload CS from our GDT with a far return (there is no 64-bit far jump to an
         * immediate), landing on the common long-mode path as the BSP. */
        xorl %edi, %edi
        pushq $PROBE_CS64
        pushq $long_mode
        lretq

/* Long mode with our GDT and page tables; edi: 0 on the BSP, 1 on an AP. */
long_mode:
        movl $PROBE_DS, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        xorl %eax, %eax
        movl %eax, %fs
        movl %eax, %gs
        testl %edi, %edi
        jnz ap_long_mode

        movq $(bsp_stack + BSP_STACK_SIZE), %rsp
        xorl %ebp, %ebp
        movl boot_path, %edi
        movq boot_info_addr, %rsi
        call probe_main
        jmp park

ap_long_mode:
        /* Each AP takes the next stack; one beyond the supply parks without touching
         * memory. */
        movl $1, %eax
        lock xaddl %eax, ap_next_stack
        cmpl $PROBE_MAX_APS, %eax
        jae park
        movl %eax, %edi /* AP index, the argument of probe_ap_main */
        leal 1(%rax), %eax
        imull $AP_STACK_SIZE, %eax
        leaq ap_stacks(%rax), %rsp
        xorl %ebp, %ebp
        call probe_ap_main
park:
        cli
        hlt
        jmp park

        .section .data
        .p2align 3
        .globl boot_info_addr, boot_path
boot_info_addr:
        .quad 0
boot_path:
        .long 0
ap_next_stack:
        .long 0

        /* Descriptors carry the accessed bit already, so loading them does not write
         * the table. */
        .p2align 4
        .globl gdt, gdt_limit
gdt:
        .quad 0
        .quad 0x00af9b000000ffff /* PROBE_CS64: 64-bit code */
        .quad 0x00cf93000000ffff /* PROBE_DS: flat data */
        .quad 0x00cf9b000000ffff /* PROBE_CS32: flat 32-bit code */
gdt_end:
        .set gdt_limit, gdt_end - gdt - 1 /* for boot/trampoline.S */

        /* lgdt reads a 4-byte base in 32-bit code and an 8-byte one in 64-bit code: both
         * see this descriptor right. */
        .p2align 3
        .globl gdt_ptr
gdt_ptr:
        .word gdt_limit
        .quad gdt

        .section .bss
        .p2align 12
pml4:
        .skip 4096
pdpt:
        .skip 4096
pd:
        .skip 4096 * 4
        .p2align 4
bsp_stack:
        .skip BSP_STACK_SIZE
ap_stacks:
        .skip AP_STACK_SIZE * PROBE_MAX_APS

        .section .note.GNU-stack, "", @progbits
