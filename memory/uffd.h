/*
 * Guest memory whose pages another process provides: a userfaultfd (Linux's
 * Documentation/admin-guide/mm/userfaultfd.rst) with every RAM region of a guest_mem
 * registered in "missing" mode, for the Uffd memory backend of a snapshot load
 * (Firecracker's, docs/snapshots.md). The first touch of a page that is not present -- by
 * a vCPU inside KVM_RUN, by the VMM, or by the kernel copying for a system call -- waits
 * until the page-fault handler that holds the userfaultfd fills it (UFFDIO_COPY or
 * UFFDIO_ZEROPAGE).
 *
 * The userfaultfd also reports UFFD_EVENT_REMOVE (UFFD_FEATURE_EVENT_REMOVE) when the VMM
 * gives pages back with madvise(MADV_DONTNEED) -- the balloon -- so the handler knows to
 * serve those pages as zeros afterwards instead of from the memory file. Such an madvise
 * waits until the handler has read the event.
 */
#ifndef MEMORY_UFFD_H
#define MEMORY_UFFD_H

#include "common/error.h"
#include "common/util.h"
#include "guest_mem.h"

/*
 * A new userfaultfd (close-on-exec, non-blocking, as Firecracker's) with every region of
 * mem registered for missing pages: the userfaultfd(2) system call, or, where that is not
 * allowed to this process (it needs CAP_SYS_PTRACE unless vm.unprivileged_userfaultfd is
 * 1: a jailed VMM), /dev/userfaultfd. Returns the descriptor, or a negative errno with a
 * message naming what is missing. mem must not have been touched yet (a page already
 * present never faults).
 */
int uffd_register_guest_mem(const struct guest_mem *mem, struct error *err) MUST_CHECK;

#endif
