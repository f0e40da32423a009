#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/util.h"

/* The names the handler prints (resolved when the filters are built: libseccomp's resolver
 * allocates, so it cannot run in a signal handler). Numbers past this print without one. */
#define NAMED_SYSCALLS 512

struct sandbox {
        struct sock_filter *prog[SANDBOX_ROLE_COUNT];
        unsigned len[SANDBOX_ROLE_COUNT];
        char *names[NAMED_SYSCALLS];
};

static _Atomic(const struct sandbox *) armed;
static atomic_uint_fast64_t faults;
/* The role of the calling thread's filter; -1: none of ours. */
static _Thread_local int thread_role = -1;

static const char *const role_names[SANDBOX_ROLE_COUNT] = {
    [SANDBOX_ROLE_VMM] = "vmm",
    [SANDBOX_ROLE_API] = "api",
    [SANDBOX_ROLE_VCPU] = "vcpu",
};

const char *sandbox_role_name(enum sandbox_role role)
{
        return (unsigned)role < SANDBOX_ROLE_COUNT ? role_names[role] : NULL;
}

int sandbox_role_parse(const char *name, enum sandbox_role *out)
{
        for (int r = 0; r < SANDBOX_ROLE_COUNT; r++)
                if (name && strcmp(name, role_names[r]) == 0) {
                        *out = (enum sandbox_role)r;
                        return 0;
                }
        return -EINVAL;
}

uint64_t sandbox_fault_count(void)
{
        return atomic_load(&faults);
}

/* ---- the rules ---- */

#define ROLE(r)   (1u << (r))
#define VMM       ROLE(SANDBOX_ROLE_VMM)
#define API       ROLE(SANDBOX_ROLE_API)
#define VCPU      ROLE(SANDBOX_ROLE_VCPU)
#define ALL_ROLES (VMM | API | VCPU)

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
    {SCMP_SYS(exit), ALL_ROLES},
    {SCMP_SYS(exit_group), ALL_ROLES},
    /* The VMM thread: its event loop (epoll, eventfds, timerfds, signalfd), runtime updates
     * (PATCH drive opens a new backing file), snapshots and memory dumps (files written, the
     * pagemap read), the end of the process (joining threads, removing the API socket). */
    {SCMP_SYS(epoll_wait), VMM | API},
    {SCMP_SYS(epoll_pwait), VMM | API},
    {SCMP_SYS(poll), API},
    {SCMP_SYS(ppoll), API},
    {SCMP_SYS(lseek), VMM},
    {SCMP_SYS(ftruncate), VMM},
    {SCMP_SYS(openat), VMM},
    {SCMP_SYS(fstat), VMM},
    {SCMP_SYS(newfstatat), VMM},
    {SCMP_SYS(unlink), VMM},
    {SCMP_SYS(unlinkat), VMM},
    {SCMP_SYS(rename), VMM},
    {SCMP_SYS(mincore), VMM}, /* debug level: the startup line's guest RAM resident */
    {SCMP_SYS(io_uring_register), VMM},
    {SCMP_SYS(accept4), VMM | API},
    /* Devices at work: on the VMM thread (ioeventfds, back-end events), and on a vCPU
     * thread whenever a register write runs a device there: activation (DRIVER_OK looks at
     * every queue), a reset (in-flight io_uring requests cancelled and waited for, vsock
     * connections shut down, timers disarmed) and a queue notification KVM's ioeventfd did
     * not take (another width). Block files, io_uring, the TAP, vsock's Unix sockets (a
     * guest's connection request connects), rate-limiter and balloon timers, getrandom. */
    {SCMP_SYS(epoll_ctl), VMM | API | VCPU},
    {SCMP_SYS(readv), VMM | VCPU},
    {SCMP_SYS(writev), VMM | API | VCPU},
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
    {SCMP_SYS(sendmsg), VMM | API | VCPU},
    {SCMP_SYS(sendto), VMM | API | VCPU},
    {SCMP_SYS(recvmsg), VMM | API | VCPU},
    {SCMP_SYS(recvfrom), VMM | API | VCPU},
    {SCMP_SYS(shutdown), VMM | API | VCPU},
    {SCMP_SYS(getsockopt), VMM | API | VCPU},
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
    {F_GETFL, VMM | API}, {F_SETFL, VMM | API},   {F_GETFD, VMM | API},
    {F_SETFD, VMM | API}, {F_DUPFD_CLOEXEC, VMM},
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
 * is spawned, /proc/self/maps read, the time taken with the gettimeofday system call,
 * isatty(2) for colours). Test builds only: a release build never has them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
/* clang 14 defines no __SANITIZE_THREAD__. */
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) ||             \
    __has_feature(thread_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifdef SANITIZER_BUILD
#include <sanitizer/common_interface_defs.h>

/* clang's runtimes symbolize reports with an llvm-symbolizer child process, started at the
 * first report: forked from a confined thread, it would inherit the filter and die at its
 * first system call. Symbolizing once now (a function name and line: an address alone is
 * not looked up) starts it while nothing is confined. */
static void sanitizer_prepare(void)
{
        char buf[128];

        __sanitizer_symbolize_pc(__builtin_return_address(0), "%F %L", buf, sizeof(buf));
}

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
#endif

static int allow(scmp_filter_ctx ctx, int nr, unsigned n, const struct scmp_arg_cmp *cmp)
{
        return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
}

/* The comparisons spell out datum_b (unused by SCMP_CMP_EQ) for clang's
 * -Wmissing-field-initializers. */
static int add_rules(scmp_filter_ctx ctx, enum sandbox_role role)
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
        if (!r && role != SANDBOX_ROLE_API) {
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
#ifdef SANITIZER_BUILD
        for (size_t i = 0; !r && i < ARRAY_SIZE(sanitizer_calls); i++)
                r = allow(ctx, sanitizer_calls[i], 0, NULL);
        if (!r) {
                struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TCGETS);
                r = allow(ctx, SCMP_SYS(ioctl), 1, &c);
        }
#endif
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

static int build(enum sandbox_role role, struct sock_filter **prog, unsigned *len)
{
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
        int r;

        if (!ctx)
                return -ENOMEM;
        /* A call through another ABI (int 0x80, x32) traps and is reported like any other. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
        if (!r)
                r = add_rules(ctx, role);
        if (!r)
                r = export_bpf(ctx, prog, len);
        seccomp_release(ctx);
        return r;
}

int sandbox_create(struct sandbox **out)
{
        struct sandbox *sb = calloc(1, sizeof(*sb));
        int r = 0;

        if (!sb)
                return -ENOMEM;
        /* What the C library does once, lazily, on whichever thread first needs it, happens
         * now: the time zone (read from /etc/localtime by the first gmtime_r, which may be a
         * log line on a confined thread). */
        tzset();
#ifdef SANITIZER_BUILD
        sanitizer_prepare();
#endif
        /* One malloc arena: another thread's arena shrinking its heap reads
         * /proc/sys/vm/overcommit_memory the first time (and creating one may read
         * /sys/devices/system/cpu/online); the main arena grows and shrinks with brk alone.
         * The VMM's threads allocate little, so sharing it costs nothing measurable. */
        mallopt(M_ARENA_MAX, 1);
        for (int role = 0; !r && role < SANDBOX_ROLE_COUNT; role++)
                r = build((enum sandbox_role)role, &sb->prog[role], &sb->len[role]);
        for (int nr = 0; !r && nr < NAMED_SYSCALLS; nr++)
                sb->names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (r) {
                sandbox_destroy(sb);
                return r;
        }
        *out = sb;
        return 0;
}

void sandbox_destroy(struct sandbox *sb)
{
        const struct sandbox *expected = sb;

        if (!sb)
                return;
        atomic_compare_exchange_strong(&armed, &expected, NULL);
        for (int role = 0; role < SANDBOX_ROLE_COUNT; role++)
                free(sb->prog[role]);
        for (int nr = 0; nr < NAMED_SYSCALLS; nr++)
                free(sb->names[nr]);
        free(sb);
}

const void *sandbox_program(const struct sandbox *sb, enum sandbox_role role, unsigned *len)
{
        if ((unsigned)role >= SANDBOX_ROLE_COUNT)
                return NULL;
        *len = sb->len[role];
        return sb->prog[role];
}

/* ---- the trap ---- */

struct line {
        char buf[320];
        size_t n;
};

static void put_str(struct line *l, const char *s)
{
        while (s && *s && l->n < sizeof(l->buf) - 1)
                l->buf[l->n++] = *s++;
}

static void put_num(struct line *l, uint64_t v, unsigned base)
{
        char digits[24];
        int i = 0;

        if (base == 16)
                put_str(l, "0x");
        do {
                digits[i++] = "0123456789abcdef"[v % base];
                v /= base;
        } while (v);
        while (i && l->n < sizeof(l->buf) - 1)
                l->buf[l->n++] = digits[--i];
}

static void write_all(const struct line *l)
{
        size_t off = 0;

        while (off < l->n) {
                ssize_t w = write(STDERR_FILENO, l->buf + off, l->n - off);
                if (w <= 0 && errno != EINTR)
                        return;
                if (w > 0)
                        off += (size_t)w;
        }
}

/* Async-signal-safe only: counts, writes two lines, ends the process. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
        const struct sandbox *sb = atomic_load(&armed);
        const ucontext_t *uc = ctx;
        int nr = si->si_syscall;
        int role = thread_role;
        struct line l = {.n = 0};
        static const int arg_regs[] = {REG_RDI, REG_RSI, REG_RDX, REG_R10, REG_R8, REG_R9};

        (void)sig;
        atomic_fetch_add(&faults, 1);
        put_str(&l, "seccomp: thread role \"");
        put_str(&l, role >= 0 ? role_names[role] : "unknown");
        put_str(&l, "\" made forbidden syscall ");
        put_num(&l, (uint64_t)(unsigned)nr, 10);
        put_str(&l, " (");
        put_str(&l, sb && nr >= 0 && nr < NAMED_SYSCALLS && sb->names[nr] ? sb->names[nr] : "?");
        put_str(&l, "); exiting with 148\n");
        write_all(&l);
        /* Which argument a filter refused (an ioctl request, an fcntl command). */
        l.n = 0;
        put_str(&l, "seccomp: arguments");
        for (size_t i = 0; i < ARRAY_SIZE(arg_regs); i++) {
                put_str(&l, i ? ", " : " ");
                put_num(&l, (uint64_t)uc->uc_mcontext.gregs[arg_regs[i]], 16);
        }
        put_str(&l, "\n");
        write_all(&l);
        _exit(SANDBOX_EXIT_CODE);
}

int sandbox_apply(struct sandbox *sb, enum sandbox_role role)
{
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
        struct sock_fprog prog;

        if ((unsigned)role >= SANDBOX_ROLE_COUNT)
                return -EINVAL;
        prog.len = (unsigned short)sb->len[role];
        prog.filter = sb->prog[role];
        /* The handler is process-wide; every thread's trap lands there. */
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL))
                return -errno;
        atomic_store(&armed, sb);
        /* Without CAP_SYS_ADMIN a filter needs no_new_privs; with it, it does no harm. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
                return -errno;
        thread_role = (int)role;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
                thread_role = -1;
                return -errno;
        }
        return 0;
}
