/*
 * Seccomp filters per thread role, Firecracker's model: the VMM thread (the event loop and
 * the control plane), the API thread, each vCPU thread and the watcher of a Uffd memory
 * backend's page-fault handler (vmm/uffd_peer.h) get a filter of their own that
 * allows only the system calls that role makes, and for ioctl, fcntl, socket, mmap,
 * mprotect and membarrier only the argument values it uses.
 *
 * The rules live in vmm/sandbox_gen.c, a build tool that compiles them with libseccomp into
 * one BPF program per role; the executable embeds the programs (and the system calls'
 * names), so it neither links libseccomp nor compiles anything at start, and confining a
 * thread (sandbox_apply) is two system calls that allocate nothing. A forbidden call traps
 * (SECCOMP_RET_TRAP): the SIGSYS handler counts it (sandbox_fault_count), writes one line
 * to stderr with async-signal-safe write(2),
 *
 *   seccomp: thread role "vcpu" made forbidden syscall 121 (getpgid); exiting with 148
 *
 * followed by a line with the call's arguments, and ends the process with _exit(148) (the
 * one exit() below api/main.c: nothing else can be done safely in the trapped thread).
 *
 * Process-wide state, by the nature of seccomp and signals: the SIGSYS handler, the fault
 * counter and the one sandbox that is armed (its syscall names, for the message). Filters
 * are inherited by threads the confined thread creates afterwards and can never be
 * removed. A library embedding the VMM never calls this: only the executable does.
 *
 * Sanitizer builds (ASan, UBSan, LSan) allow, in every role, the calls their runtimes make
 * on any thread (the leak check at exit stops the world with clone and ptrace; reports run
 * the symbolizer): see sanitizer_calls in sandbox.c.
 */
#ifndef VMM_SANDBOX_H
#define VMM_SANDBOX_H

#include <stdint.h>

#include "common/util.h"

#define SANDBOX_EXIT_CODE 148 /* Firecracker's exit code for a seccomp violation */

enum sandbox_role {
        SANDBOX_ROLE_VMM,  /* the VMM thread once the VM is built: event loop, devices */
        SANDBOX_ROLE_API,  /* the REST API thread */
        SANDBOX_ROLE_VCPU, /* a vCPU thread: KVM_RUN and the exits it handles */
        SANDBOX_ROLE_UFFD, /* the watcher of a Uffd backend's page-fault handler */
        SANDBOX_ROLE_COUNT
};

/* "vmm", "api", "vcpu", "uffd"; NULL for anything else. */
const char *sandbox_role_name(enum sandbox_role role);
/* The role named so, or -EINVAL. */
int sandbox_role_parse(const char *name, enum sandbox_role *out) MUST_CHECK;

struct sandbox;

/* The handle of the embedded filters: always 0 (the programs are constants). Makes the C library do
 * now what it would do lazily on a confined thread (read the time zone; one malloc arena, whose
 * growing and shrinking needs no file). */
int sandbox_create(struct sandbox **out) MUST_CHECK;
/* Releases the handle (nothing is allocated; the kernel keeps its own copy of installed
 * filters). */
void sandbox_destroy(struct sandbox *sb);

/* Confines the calling thread with role's filter (after installing the SIGSYS handler and
 * setting no_new_privs), irrevocably. 0 or -errno. */
int sandbox_apply(struct sandbox *sb, enum sandbox_role role) MUST_CHECK;

/* The role's compiled filter: its BPF instructions (struct sock_filter, 8 bytes each). */
const void *sandbox_program(const struct sandbox *sb, enum sandbox_role role, unsigned *len);

/* Forbidden calls trapped so far in this process (seccomp.num_faults). The process ends at
 * the first, so this is 0 or, briefly, 1. */
uint64_t sandbox_fault_count(void);

#endif
