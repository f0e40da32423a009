/*
 * Interrupt and exception entry stubs: one 16-byte stub per vector (so the IDT builder can
 * compute addresses instead of keeping a table) pushes a dummy error code where the CPU does
 * not push one, then the vector, and joins isr_common, which saves every general register as a
 * struct isr_frame (lib/idt.h) and calls isr_dispatch(frame).
 */
        .section .text
        .code64

        .p2align 4
        .globl isr_stubs
isr_stubs:
        .set vec, 0
        .rept 256
        .p2align 4
        /* Vectors for which the CPU pushes an error code: #DF #TS #NP #SS #GP #PF #AC #CP
         * #VC #SX. */
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || \
            (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq $0
        .endif
        pushq $vec
        jmp isr_common
        .set vec, vec + 1
        .endr

isr_common:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %rbp
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        /* The CPU aligned rsp to 16 before its 5-word frame; with 2 + 15 words pushed here
         * rsp is 16-byte aligned again, as the C ABI wants at the call. */
        movq %rsp, %rdi
        cld
        call isr_dispatch
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rbp
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        addq $16, %rsp /* vector and error code */
        iretq

        .section .note.GNU-stack, "", @progbits
