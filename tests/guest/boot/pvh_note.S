/*
 * The Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen"): its presence tells a
 * loader to start the image through PVH at pvh_entry. Linked only into probe.elf, so
 * probe-nopvh.elf takes the 64-bit Linux boot protocol path.
 *
 * The value is 8 bytes like Linux's (readers take 4 or 8), and the note is 4-byte aligned
 * because QEMU pads the name to the segment's alignment, which is only right for 4.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

        .section .note.Xen, "a", @note
        .p2align 2
        .long 2f - 1f  /* namesz */
        .long 4f - 3f  /* descsz */
        .long XEN_ELFNOTE_PHYS32_ENTRY
1:      .asciz "Xen"
2:      .p2align 2
3:      .quad pvh_entry
4:      .p2align 2

        .section .note.GNU-stack, "", @progbits
