/*
 * sandbox_gen: the seccomp filters' rules, compiled at build time (vmm/sandbox.h).
 *
 * A build tool, never part of the VMM: it turns the rules below into one BPF program per
 * thread role with libseccomp and writes them, with the names of the system calls (for
 * the SIGSYS handler's message), as C arrays that vmm/sandbox.c embeds. The VMM itself
 * neither links libseccomp nor compiles anything at start: confining a thread is two
 * system calls on a constant program (Firecracker's approach, with its seccompiler).
 *
 * Each program is written twice: as is, and with the calls the sanitizer runtimes make
 * (sanitizer_calls); the compiler that builds sandbox.c picks the one its build needs.
 *
 *   sandbox_gen OUTPUT     (written to a temporary next to OUTPUT, then renamed)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/membarrier.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "common/util.h"
#include "vmm/sandbox.h"

#define ROLE(r)   (1u << (r))
#define VMM       ROLE(SANDBOX_ROLE_VMM)
#define API       ROLE(SANDBOX_ROLE_API)
#define VCPU      ROLE(SANDBOX_ROLE_VCPU)
#define UFFD      ROLE(SANDBOX_ROLE_UFFD)
#define ALL_ROLES (VMM | API | VCPU | UFFD)

/* Calls allowed whatever their arguments. */
static const struct {
        int nr;
        unsigned roles;
} plain_calls[] = {
    /* Every thread: the C library's basics (malloc, locks, clocks, sleeping, a thread's own
     * exit), logging, the SIGSYS handler's own write and exit_group, returning from the
     * SIGPIPE counter, and pthread_kill (getpid + tgkill: the VMM kicks vCPUs, a vCPU kicks
     * itself to complete an exit). */
    {SCMP_SYS(read), ALL_ROLES},
    {SCMP_SYS(write), ALL_ROLES},
    {SCMP_SYS(close), ALL_ROLES},
    {SCMP_SYS(futex), ALL_ROLES},
    {SCMP_SYS(brk), ALL_ROLES},
    {SCMP_SYS(munmap), ALL_ROLES},
    {SCMP_SYS(mremap), ALL_ROLES},
    {SCMP_SYS(madvise), ALL_ROLES}, /* malloc trims with MADV_DONTNEED; the balloon too */
    {SCMP_SYS(clock_gettime), ALL_ROLES},
    {SCMP_SYS(clock_nanosleep), ALL_ROLES},
    {SCMP_SYS(nanosleep), ALL_ROLES},
    {SCMP_SYS(sched_yield), ALL_ROLES},
    {SCMP_SYS(gettid), ALL_ROLES},
    {SCMP_SYS(getpid), ALL_ROLES},
    {SCMP_SYS(tgkill), ALL_ROLES},
    {SCMP_SYS(rt_sigprocmask), ALL_ROLES},
    {SCMP_SYS(rt_sigreturn), ALL_ROLES},
    {SCMP_SYS(restart_syscall), ALL_ROLES},
    {SCMP_SYS(rt_sigtimedwait), VCPU}, /* draining the kick signal */
    /* The watcher of a Uffd backend's page-fault handler (vmm/uffd_peer.c): it waits on the
     * handler's pidfd, its connection and a stop eventfd, and when the handler is gone
     * logs, stops the VM (the kicks above) or ends the process. Its filter is the basics
     * above and this. */
    {SCMP_SYS(ppoll), UFFD},
    {SCMP_SYS(exit), ALL_ROLES},
    {SCMP_SYS(exit_group), ALL_ROLES},
    /* The VMM thread: its event loop (epoll, eventfds, timerfds, signalfd), runtime updates
     * (PATCH drive opens a new backing file), snapshots and memory dumps (files written, the
     * pagemap read), the end of the process (joining threads, removing the API socket). */
    {SCMP_SYS(epoll_wait), VMM | API},
    {SCMP_SYS(epoll_pwait), VMM | API},
    {SCMP_SYS(lseek), VMM},
    {SCMP_SYS(ftruncate), VMM},
    {SCMP_SYS(openat), VMM},
    {SCMP_SYS(fstat), VMM},
    {SCMP_SYS(newfstatat), VMM},
    {SCMP_SYS(unlink), VMM},
    {SCMP_SYS(unlinkat), VMM},
    {SCMP_SYS(rename), VMM},
    {SCMP_SYS(link), VMM}, /* a snapshot keeps the old memory file while it replaces it */
    {SCMP_SYS(linkat), VMM},
    {SCMP_SYS(readlink), VMM}, /* a snapshot's target named by a symbolic link */
    {SCMP_SYS(readlinkat), VMM},
    {SCMP_SYS(mincore), VMM}, /* debug level: the startup line's guest RAM resident */
    {SCMP_SYS(io_uring_register), VMM},
    /* The API thread (api/server.c): epoll, accepting, recv and send on its connections,
     * the eventfds; nothing else (no fcntl: accept4 makes the sockets non-blocking). */
    {SCMP_SYS(accept4), VMM | API},
    /* Devices at work: on the VMM thread (ioeventfds, back-end events), and on a vCPU
     * thread whenever a register write runs a device there: activation (DRIVER_OK looks at
     * every queue), a reset (in-flight io_uring requests cancelled and waited for, vsock
     * connections shut down, timers disarmed) and a queue notification KVM's ioeventfd did
     * not take (another width). Block files, io_uring, the TAP, vsock's Unix sockets (a
     * guest's connection request connects), rate-limiter and balloon timers, getrandom. */
    {SCMP_SYS(epoll_ctl), VMM | API | VCPU},
    {SCMP_SYS(readv), VMM | VCPU},
    {SCMP_SYS(writev), VMM | VCPU},
    {SCMP_SYS(pread64), VMM | VCPU},
    {SCMP_SYS(pwrite64), VMM | VCPU},
    {SCMP_SYS(preadv), VMM | VCPU},
    {SCMP_SYS(pwritev), VMM | VCPU},
    {SCMP_SYS(fsync), VMM | VCPU},
    {SCMP_SYS(fdatasync), VMM | VCPU},
    {SCMP_SYS(fallocate), VMM | VCPU},
    {SCMP_SYS(timerfd_settime), VMM | VCPU},
    {SCMP_SYS(timerfd_gettime), VMM | VCPU},
    {SCMP_SYS(getrandom), VMM | VCPU},
    {SCMP_SYS(io_uring_enter), VMM | VCPU},
    {SCMP_SYS(connect), VMM | VCPU},
    {SCMP_SYS(sendmsg), VMM | VCPU},
    {SCMP_SYS(sendto), VMM | API | VCPU},
    {SCMP_SYS(recvmsg), VMM | VCPU},
    {SCMP_SYS(recvfrom), VMM | API | VCPU},
    {SCMP_SYS(shutdown), VMM | VCPU},
    {SCMP_SYS(getsockopt), VMM | VCPU},
};

/* ioctl requests, per role. */
static const struct {
        unsigned long req;
        unsigned roles;
} ioctls[] = {
    /* A vCPU thread: running the guest, logging a fatal exit's registers, the confidential
     * platform's guest-virtual translation, and interrupts raised by devices it emulates
     * (the serial port, the i8042). */
    {KVM_RUN, VCPU},
    {KVM_SET_SIGNAL_MASK, VCPU},
    {KVM_GET_REGS, VCPU | VMM},
    {KVM_GET_SREGS, VCPU | VMM},
    {KVM_TRANSLATE, VCPU},
    {KVM_IRQ_LINE, VCPU | VMM},
    /* The TAP's offloads follow the features the guest accepted (virtio-net's activation,
     * a register write on a vCPU; a restored device's on the VMM thread). */
    {TUNSETOFFLOAD, VCPU | VMM},
    /* The VMM thread: snapshots (a paused VM's vCPU and VM state, the dirty log), a new
     * backing file's size (PATCH drive on a block device), the terminal restored at exit. */
    {KVM_CHECK_EXTENSION, VMM},
    {KVM_GET_DIRTY_LOG, VMM},
    {KVM_GET_CPUID2, VMM},
    {KVM_GET_MP_STATE, VMM},
    {KVM_GET_FPU, VMM},
    {KVM_GET_XSAVE, VMM},
    {KVM_GET_XSAVE2, VMM},
    {KVM_GET_XCRS, VMM},
    {KVM_GET_DEBUGREGS, VMM},
    {KVM_GET_LAPIC, VMM},
    {KVM_GET_VCPU_EVENTS, VMM},
    {KVM_GET_MSRS, VMM},
    {KVM_GET_TSC_KHZ, VMM},
    {KVM_GET_IRQCHIP, VMM},
    {KVM_GET_PIT2, VMM},
    {KVM_GET_CLOCK, VMM},
    {BLKGETSIZE64, VMM},
    {TCGETS, VMM},
    {TCSETS, VMM},
};

/* fcntl commands: file status flags (O_NONBLOCK), close-on-exec, and duplicating with it. */
static const struct {
        int cmd;
        unsigned roles;
} fcntls[] = {
    {F_GETFL, VMM}, {F_SETFL, VMM}, {F_GETFD, VMM}, {F_SETFD, VMM}, {F_DUPFD_CLOEXEC, VMM},
};

/* membarrier: the memory-ownership tracker's transitions (memory/ownership.c), made by
 * vCPUs (a protected guest's page-state changes) and by the VMM thread; its first use
 * queries and registers. */
static const int membarrier_cmds[] = {
    MEMBARRIER_CMD_QUERY,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
    MEMBARRIER_CMD_PRIVATE_EXPEDITED,
};
#define MEMBARRIER_ROLES (VMM | VCPU)

/* Sanitizer runtimes make calls of their own on any thread: a thread's alternate signal
 * stack set up and torn down, the leak check at exit (a tracer cloned from the exiting
 * thread stops the world with ptrace, reading /proc/self/task), reports (the symbolizer
 * is spawned, /proc/self/maps read, the time taken with the gettimeofday system call, not
 * the vDSO, and isatty(2) for colours: ioctl TCGETS, in add_rules). Only in the sanitizer
 * variant of each program, which only a sanitizer build embeds (sandbox.c): a release
 * build never has them. */
static const int sanitizer_calls[] = {
    SCMP_SYS(sigaltstack),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigtimedwait),
    SCMP_SYS(clone),
    SCMP_SYS(clone3),
    SCMP_SYS(ptrace),
    SCMP_SYS(prctl),
    SCMP_SYS(wait4),
    SCMP_SYS(waitid),
    SCMP_SYS(kill),
    SCMP_SYS(getppid),
    SCMP_SYS(openat),
    SCMP_SYS(open),
    SCMP_SYS(getdents64),
    SCMP_SYS(getdents),
    SCMP_SYS(fork),
    SCMP_SYS(readlink),
    SCMP_SYS(readlinkat),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(stat),
    SCMP_SYS(lstat),
    SCMP_SYS(pipe2),
    SCMP_SYS(pipe),
    SCMP_SYS(dup2),
    SCMP_SYS(dup3),
    SCMP_SYS(execve),
    SCMP_SYS(lseek),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(getrlimit),
    SCMP_SYS(prlimit64),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq),
    SCMP_SYS(uname),
    SCMP_SYS(gettimeofday),
};

static int allow(scmp_filter_ctx ctx, int nr, unsigned n, const struct scmp_arg_cmp *cmp)
{
        return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
}

static int add_rules(scmp_filter_ctx ctx, enum sandbox_role role, bool sanitizer)
{
        unsigned me = ROLE(role);
        int r = 0;

        for (size_t i = 0; !r && i < ARRAY_SIZE(plain_calls); i++)
                if (plain_calls[i].roles & me)
                        r = allow(ctx, plain_calls[i].nr, 0, NULL);
        for (size_t i = 0; !r && i < ARRAY_SIZE(ioctls); i++)
                if (ioctls[i].roles & me) {
                        /* The request is an unsigned int in the kernel: compare 32 bits. */
                        struct scmp_arg_cmp c =
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, (uint32_t)ioctls[i].req);
                        r = allow(ctx, SCMP_SYS(ioctl), 1, &c);
                }
        for (size_t i = 0; !r && i < ARRAY_SIZE(fcntls); i++)
                if (fcntls[i].roles & me) {
                        struct scmp_arg_cmp c =
                            SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)fcntls[i].cmd, 0);
                        r = allow(ctx, SCMP_SYS(fcntl), 1, &c);
                }
        for (size_t i = 0; !r && (MEMBARRIER_ROLES & me) && i < ARRAY_SIZE(membarrier_cmds); i++) {
                struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)membarrier_cmds[i], 0);
                r = allow(ctx, SCMP_SYS(membarrier), 1, &c);
        }
        if (!r && (role == SANDBOX_ROLE_VMM || role == SANDBOX_ROLE_VCPU)) {
                /* vsock's connections to the host's Unix sockets; nothing else. */
                struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0);
                r = allow(ctx, SCMP_SYS(socket), 1, &c);
        }
        if (!r) {
                /* Memory, never executable: malloc's arenas and thread stacks, guest memory
                 * granules a protected guest takes back (PROT_NONE) or gives (RW). */
                struct scmp_arg_cmp c = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
                r = allow(ctx, SCMP_SYS(mmap), 1, &c);
                if (!r)
                        r = allow(ctx, SCMP_SYS(mprotect), 1, &c);
        }
        for (size_t i = 0; !r && sanitizer && i < ARRAY_SIZE(sanitizer_calls); i++)
                r = allow(ctx, sanitizer_calls[i], 0, NULL);
        if (!r && sanitizer) {
                struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TCGETS);
                r = allow(ctx, SCMP_SYS(ioctl), 1, &c);
        }
        return r;
}

/* libseccomp 2.5 exports BPF only to a file descriptor: through a memfd into memory. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_filter **prog, unsigned *len)
{
        int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
        off_t size;
        int r;

        if (fd < 0)
                return -errno;
        r = seccomp_export_bpf(ctx, fd);
        if (!r) {
                size = lseek(fd, 0, SEEK_END);
                if (size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
                    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
                        r = -E2BIG;
        }
        if (!r && !(*prog = malloc((size_t)size)))
                r = -ENOMEM;
        if (!r && pread(fd, *prog, (size_t)size, 0) != size) {
                r = -EIO;
                free(*prog);
        }
        if (!r)
                *len = (unsigned)(size / (off_t)sizeof(struct sock_filter));
        close(fd);
        return r;
}

static int build(enum sandbox_role role, bool sanitizer, struct sock_filter **prog, unsigned *len)
{
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
        int r;

        if (!ctx)
                return -ENOMEM;
        /* A call through another ABI (int 0x80, x32) traps and is reported like any other. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
        if (!r)
                r = add_rules(ctx, role, sanitizer);
        if (!r)
                r = export_bpf(ctx, prog, len);
        seccomp_release(ctx);
        return r;
}

/* The roles as the generated source names them (sandbox.c, which has the names, embeds what
 * this program writes, so it cannot be linked here). */
static const struct {
        const char *id, *name;
} roles[SANDBOX_ROLE_COUNT] = {
    [SANDBOX_ROLE_VMM] = {"SANDBOX_ROLE_VMM", "vmm"},
    [SANDBOX_ROLE_API] = {"SANDBOX_ROLE_API", "api"},
    [SANDBOX_ROLE_VCPU] = {"SANDBOX_ROLE_VCPU", "vcpu"},
    [SANDBOX_ROLE_UFFD] = {"SANDBOX_ROLE_UFFD", "uffd"},
};

/* Names for the numbers below this (the handler prints a number past it without one). */
#define NAMED_SYSCALLS 512

/* One variant's programs: an array per role, then the table sandbox.c reads. */
static int write_programs(FILE *f, bool sanitizer)
{
        const char *suffix = sanitizer ? "_sanitizer" : "";

        for (int role = 0; role < SANDBOX_ROLE_COUNT; role++) {
                struct sock_filter *prog = NULL;
                unsigned len = 0;
                int r = build((enum sandbox_role)role, sanitizer, &prog, &len);

                if (r) {
                        fprintf(stderr, "sandbox_gen: cannot compile the %s filter: %s\n",
                                roles[role].name, strerror(-r));
                        return r;
                }
                fprintf(f, "static const struct sock_filter filter_%s%s[%u] = {\n",
                        roles[role].name, suffix, len);
                for (unsigned i = 0; i < len; i++)
                        fprintf(f, "    {0x%04x, %u, %u, 0x%08x},\n", prog[i].code, prog[i].jt,
                                prog[i].jf, prog[i].k);
                fprintf(f, "};\n\n");
                free(prog);
        }
        fprintf(f, "static const struct sandbox_program programs[SANDBOX_ROLE_COUNT] = {\n");
        for (int role = 0; role < SANDBOX_ROLE_COUNT; role++)
                fprintf(f, "    [%s] = {filter_%s%s, ARRAY_SIZE(filter_%s%s)},\n", roles[role].id,
                        roles[role].name, suffix, roles[role].name, suffix);
        fprintf(f, "};\n");
        return 0;
}

int main(int argc, char **argv)
{
        const struct scmp_version *v = seccomp_version();
        char tmp[4096];
        FILE *f;
        int r;

        if (argc != 2 || snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= (int)sizeof(tmp)) {
                fprintf(stderr, "usage: sandbox_gen OUTPUT\n");
                return 2;
        }
        f = fopen(tmp, "w");
        if (!f) {
                fprintf(stderr, "sandbox_gen: %s: %s\n", tmp, strerror(errno));
                return 1;
        }
        fprintf(f,
                "/* Generated at build time by sandbox_gen (vmm/sandbox_gen.c, libseccomp "
                "%u.%u.%u): the\n * seccomp filters' BPF programs and the system calls' names. "
                "Do not edit. */\n\n",
                v->major, v->minor, v->micro);
        fprintf(f, "#ifdef SANDBOX_SANITIZER_CALLS\n\n");
        r = write_programs(f, true);
        if (!r) {
                fprintf(f, "\n#else\n\n");
                r = write_programs(f, false);
        }
        if (!r) {
                fprintf(f, "\n#endif\n\n");
                fprintf(f, "static const char *const syscall_names[] = {\n");
                for (int nr = 0; nr < NAMED_SYSCALLS; nr++) {
                        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

                        if (name)
                                fprintf(f, "    [%d] = \"%s\",\n", nr, name);
                        free(name);
                }
                fprintf(f, "};\n");
        }
        if (fclose(f) && !r)
                r = -errno;
        if (!r && rename(tmp, argv[1]))
                r = -errno;
        if (r) {
                fprintf(stderr, "sandbox_gen: %s: %s\n", argv[1], strerror(-r));
                unlink(tmp);
                return 1;
        }
        return 0;
}
