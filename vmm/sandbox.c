#include "sandbox.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/util.h"

/* The programs are constants (sandbox_filters.inc): the handle only marks a process whose
 * threads are to be confined (main.c's --no-seccomp passes none). */
struct sandbox {
        char unused;
};

static struct sandbox the_sandbox;

static atomic_uint_fast64_t faults;
/* The role of the calling thread's filter; -1: none of ours. */
static _Thread_local int thread_role = -1;

static const char *const role_names[SANDBOX_ROLE_COUNT] = {
    [SANDBOX_ROLE_VMM] = "vmm",
    [SANDBOX_ROLE_API] = "api",
    [SANDBOX_ROLE_VCPU] = "vcpu",
    [SANDBOX_ROLE_UFFD] = "uffd",
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

/* ---- the programs ---- */

/* Sanitizer runtimes make calls of their own on any thread (vmm/sandbox_gen.c lists them):
 * their builds embed the variant of each program that allows them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZER_CALLS 1
#elif defined(__has_feature)
/* clang 14 defines no __SANITIZE_THREAD__. */
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) ||             \
    __has_feature(thread_sanitizer)
#define SANDBOX_SANITIZER_CALLS 1
#endif
#endif

#ifdef SANDBOX_SANITIZER_CALLS
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
#endif

struct sandbox_program {
        const struct sock_filter *insns;
        unsigned len;
};

/* programs[role] and syscall_names[nr], written by sandbox_gen at build time. */
#include "sandbox_filters.inc"

int sandbox_create(struct sandbox **out)
{
        /* What the C library does once, lazily, on whichever thread first needs it, happens
         * now: the time zone (read from /etc/localtime by the first gmtime_r, which may be a
         * log line on a confined thread). */
        tzset();
#ifdef SANDBOX_SANITIZER_CALLS
        sanitizer_prepare();
#endif
        /* One malloc arena: another thread's arena shrinking its heap reads
         * /proc/sys/vm/overcommit_memory the first time (and creating one may read
         * /sys/devices/system/cpu/online); the main arena grows and shrinks with brk alone.
         * The VMM's threads allocate little, so sharing it costs nothing measurable. */
        mallopt(M_ARENA_MAX, 1);
        *out = &the_sandbox;
        return 0;
}

void sandbox_destroy(struct sandbox *sb)
{
        (void)sb; /* nothing was allocated */
}

const void *sandbox_program(const struct sandbox *sb, enum sandbox_role role, unsigned *len)
{
        (void)sb;
        if ((unsigned)role >= SANDBOX_ROLE_COUNT)
                return NULL;
        *len = programs[role].len;
        return programs[role].insns;
}

static const char *syscall_name(int nr)
{
        return nr >= 0 && (size_t)nr < ARRAY_SIZE(syscall_names) ? syscall_names[nr] : NULL;
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

/* fd_write_all is async-signal-safe; nothing can be done about a failure here. */
static void put_line(const struct line *l)
{
        (void)fd_write_all(STDERR_FILENO, l->buf, l->n);
}

/* Async-signal-safe only: counts, writes two lines, ends the process. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
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
        put_str(&l, syscall_name(nr) ? syscall_name(nr) : "?");
        put_str(&l, "); exiting with 148\n");
        put_line(&l);
        /* Which argument a filter refused (an ioctl request, an fcntl command). */
        l.n = 0;
        put_str(&l, "seccomp: arguments");
        for (size_t i = 0; i < ARRAY_SIZE(arg_regs); i++) {
                put_str(&l, i ? ", " : " ");
                put_num(&l, (uint64_t)uc->uc_mcontext.gregs[arg_regs[i]], 16);
        }
        put_str(&l, "\n");
        put_line(&l);
        _exit(SANDBOX_EXIT_CODE);
}

int sandbox_apply(struct sandbox *sb, enum sandbox_role role)
{
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
        struct sock_fprog prog;

        if ((unsigned)role >= SANDBOX_ROLE_COUNT)
                return -EINVAL;
        (void)sb;
        prog.len = (unsigned short)programs[role].len;
        /* The kernel copies the program and never writes to it. */
        prog.filter = (struct sock_filter *)programs[role].insns;
        /* The handler is process-wide; every thread's trap lands there. */
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL))
                return -errno;
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
