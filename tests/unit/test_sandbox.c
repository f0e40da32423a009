/*
 * The seccomp filters (vmm/sandbox.h) without KVM: every role has its program (compiled at
 * build time, embedded); in a forked child confined with a role, the calls and argument values that
 * role uses go through and the others end the child with 148 and the one-line report.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/sandbox.h"

static struct sandbox *sb;

static int setup(void **state)
{
        (void)state;
        return sandbox_create(&sb);
}

static int teardown(void **state)
{
        (void)state;
        sandbox_destroy(sb);
        return 0;
}

struct outcome {
        int code;       /* exit code, or -signal */
        char err[8192]; /* room for a sanitizer stack trace */
};

/* Runs fn in a child confined with role; its stderr is captured. */
static struct outcome confined(enum sandbox_role role, void (*fn)(void))
{
        struct outcome o = {.code = -1};
        int p[2], status;
        size_t n = 0;
        ssize_t got;
        pid_t pid;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                dup2(p[1], STDERR_FILENO);
                if (sandbox_apply(sb, role))
                        _exit(99);
                fn();
                _exit(0);
        }
        close(p[1]);
        while ((got = read(p[0], o.err + n, sizeof(o.err) - 1 - n)) > 0)
                n += (size_t)got;
        close(p[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        return o;
}

static void assert_fault(struct outcome o, const char *role, int nr, const char *name)
{
        char line[200];

        snprintf(line, sizeof(line),
                 "seccomp: thread role \"%s\" made forbidden syscall %d (%s); exiting with 148\n",
                 role, nr, name);
        assert_int_equal(o.code, SANDBOX_EXIT_CODE);
        assert_true(strncmp(o.err, line, strlen(line)) == 0);
        assert_non_null(strstr(o.err, "seccomp: arguments 0x"));
}

static void test_every_role_has_a_program(void **state)
{
        unsigned len[SANDBOX_ROLE_COUNT];
        const void *prog[SANDBOX_ROLE_COUNT];

        (void)state;
        for (int r = 0; r < SANDBOX_ROLE_COUNT; r++) {
                prog[r] = sandbox_program(sb, (enum sandbox_role)r, &len[r]);
                assert_non_null(prog[r]);
                assert_true(len[r] > 10);
        }
        /* Three different filters, the VMM's the largest. */
        assert_true(len[SANDBOX_ROLE_VMM] > len[SANDBOX_ROLE_VCPU]);
        assert_true(len[SANDBOX_ROLE_VMM] > len[SANDBOX_ROLE_API]);
        assert_null(sandbox_program(sb, SANDBOX_ROLE_COUNT, &len[0]));
}

static void test_role_names(void **state)
{
        enum sandbox_role r;

        (void)state;
        assert_string_equal(sandbox_role_name(SANDBOX_ROLE_VMM), "vmm");
        assert_string_equal(sandbox_role_name(SANDBOX_ROLE_API), "api");
        assert_string_equal(sandbox_role_name(SANDBOX_ROLE_VCPU), "vcpu");
        assert_null(sandbox_role_name(SANDBOX_ROLE_COUNT));
        assert_int_equal(sandbox_role_parse("vcpu", &r), 0);
        assert_int_equal(r, SANDBOX_ROLE_VCPU);
        assert_int_equal(sandbox_role_parse("io", &r), -EINVAL);
        assert_int_equal(sandbox_role_parse(NULL, &r), -EINVAL);
}

static void call_getpgid(void)
{
        syscall(SYS_getpgid, 0);
}

static void test_forbidden_call_in_each_role(void **state)
{
        (void)state;
        assert_fault(confined(SANDBOX_ROLE_VMM, call_getpgid), "vmm", SYS_getpgid, "getpgid");
        assert_fault(confined(SANDBOX_ROLE_API, call_getpgid), "api", SYS_getpgid, "getpgid");
        assert_fault(confined(SANDBOX_ROLE_VCPU, call_getpgid), "vcpu", SYS_getpgid, "getpgid");
}

/* What every role does: memory, time, locks' futex, logging, pthread_kill's calls. */
static void everyday_calls(void)
{
        struct timespec ts, nap = {0, 1000};
        void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED || mprotect(p, 4096, PROT_READ) || munmap(p, 1 << 20))
                _exit(2);
        free(malloc(1 << 22));
        clock_gettime(CLOCK_MONOTONIC, &ts);
        nanosleep(&nap, NULL);
        if (getpid() <= 0 || write(STDERR_FILENO, "", 0) != 0)
                _exit(3);
}

static void test_everyday_calls_go_through(void **state)
{
        (void)state;
        for (int r = 0; r < SANDBOX_ROLE_COUNT; r++)
                assert_int_equal(confined((enum sandbox_role)r, everyday_calls).code, 0);
}

static void map_executable(void)
{
        mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void test_no_executable_memory(void **state)
{
        (void)state;
        assert_fault(confined(SANDBOX_ROLE_VMM, map_executable), "vmm", SYS_mmap, "mmap");
        assert_fault(confined(SANDBOX_ROLE_VCPU, map_executable), "vcpu", SYS_mmap, "mmap");
}

static void vcpu_ioctls(void)
{
        /* Allowed requests reach the kernel (and fail there: no such descriptor). */
        if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF)
                _exit(2);
        if (ioctl(-1, KVM_GET_REGS, NULL) != -1 || errno != EBADF)
                _exit(3);
}

static void terminal_ioctl(void)
{
        struct termios t = {0};

        ioctl(-1, TCSETS, &t);
}

static void test_vcpu_ioctl_requests(void **state)
{
        (void)state;
        assert_int_equal(confined(SANDBOX_ROLE_VCPU, vcpu_ioctls).code, 0);
        assert_fault(confined(SANDBOX_ROLE_VCPU, terminal_ioctl), "vcpu", SYS_ioctl, "ioctl");
        /* The VMM thread restores the terminal at exit. */
        assert_int_equal(confined(SANDBOX_ROLE_VMM, terminal_ioctl).code, 0);
}

static void unix_socket(void)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                _exit(2);
        close(fd);
}

static void inet_socket(void)
{
        socket(AF_INET, SOCK_STREAM, 0);
}

static void test_vmm_sockets_are_unix_only(void **state)
{
        (void)state;
        assert_int_equal(confined(SANDBOX_ROLE_VMM, unix_socket).code, 0);
        assert_fault(confined(SANDBOX_ROLE_VMM, inet_socket), "vmm", SYS_socket, "socket");
        /* The API thread only accepts on the socket made before it was confined. */
        assert_fault(confined(SANDBOX_ROLE_API, unix_socket), "api", SYS_socket, "socket");
}

static void fcntl_flags(void)
{
        int fl = fcntl(STDERR_FILENO, F_GETFL);

        if (fl < 0 || fcntl(STDERR_FILENO, F_SETFL, fl) || fcntl(STDERR_FILENO, F_GETFD) < 0)
                _exit(2);
}

static void fcntl_owner(void)
{
        fcntl(STDERR_FILENO, F_SETOWN, getpid());
}

static void test_fcntl_commands(void **state)
{
        (void)state;
        assert_int_equal(confined(SANDBOX_ROLE_VMM, fcntl_flags).code, 0);
        /* The API server's sockets are non-blocking from accept4 on. */
        assert_fault(confined(SANDBOX_ROLE_API, fcntl_flags), "api", SYS_fcntl, "fcntl");
        assert_fault(confined(SANDBOX_ROLE_VMM, fcntl_owner), "vmm", SYS_fcntl, "fcntl");
        assert_fault(confined(SANDBOX_ROLE_VCPU, fcntl_flags), "vcpu", SYS_fcntl, "fcntl");
}

static int pair[2] = {-1, -1};

static void api_socket_calls(void)
{
        char c = 'x';

        if (send(pair[0], &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1 ||
            recv(pair[1], &c, 1, MSG_DONTWAIT) != 1)
                _exit(2);
}

static void api_poll(void)
{
        struct pollfd p = {.fd = pair[0], .events = POLLIN};

        poll(&p, 1, 0);
}

static void api_shutdown(void)
{
        shutdown(pair[0], SHUT_WR);
}

/* The API thread makes only the calls of its server (api/server.c): send and recv on its
 * connections, not what libmicrohttpd needed besides. */
static void test_api_role_is_the_servers(void **state)
{
        (void)state;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        assert_int_equal(confined(SANDBOX_ROLE_API, api_socket_calls).code, 0);
        assert_fault(confined(SANDBOX_ROLE_API, api_poll), "api", SYS_poll, "poll");
        assert_fault(confined(SANDBOX_ROLE_API, api_shutdown), "api", SYS_shutdown, "shutdown");
        assert_int_equal(confined(SANDBOX_ROLE_VMM, api_shutdown).code, 0);
        close(pair[0]);
        close(pair[1]);
}

static void membarrier_private(void)
{
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) < 0)
                _exit(2);
}

static void membarrier_global(void)
{
        syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
}

static void test_membarrier_commands(void **state)
{
        (void)state;
        assert_int_equal(confined(SANDBOX_ROLE_VCPU, membarrier_private).code, 0);
        assert_int_equal(confined(SANDBOX_ROLE_VMM, membarrier_private).code, 0);
        assert_fault(confined(SANDBOX_ROLE_VCPU, membarrier_global), "vcpu", SYS_membarrier,
                     "membarrier");
        assert_fault(confined(SANDBOX_ROLE_API, membarrier_private), "api", SYS_membarrier,
                     "membarrier");
}

static void remove_file(void)
{
        unlink("/nonexistent/seccomp-test");
}

static void test_only_the_vmm_thread_touches_files(void **state)
{
        (void)state;
        assert_int_equal(confined(SANDBOX_ROLE_VMM, remove_file).code, 0);
        assert_fault(confined(SANDBOX_ROLE_API, remove_file), "api", SYS_unlink, "unlink");
        assert_fault(confined(SANDBOX_ROLE_VCPU, remove_file), "vcpu", SYS_unlink, "unlink");
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) ||             \
    __has_feature(thread_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif

#ifdef SANITIZER_BUILD
#include <sanitizer/common_interface_defs.h>

/* What a report does: symbolize (the symbolizer sandbox_create started), take the time
 * (the gettimeofday system call), look whether stderr is a terminal. */
static void sanitizer_stack_trace(void)
{
        struct termios t;

        /* To the captured stderr even when *SAN_OPTIONS has a log_path. */
        __sanitizer_set_report_fd((void *)(uintptr_t)STDERR_FILENO);
        __sanitizer_print_stack_trace();
        if (syscall(SYS_gettimeofday, &(struct timeval){0}, NULL))
                _exit(2);
        ioctl(STDERR_FILENO, TCGETS, &t);
}

static void test_sanitizer_runtime_calls(void **state)
{
        (void)state;
        /* A report from a confined thread comes out whole, symbolized (the caller's frame
         * by name), in every role. */
        for (int r = 0; r < SANDBOX_ROLE_COUNT; r++) {
                struct outcome o = confined((enum sandbox_role)r, sanitizer_stack_trace);

                if (o.code != 0 || !strstr(o.err, " sanitizer_stack_trace "))
                        fail_msg("role %d: exit %d\n%s", r, o.code, o.err);
        }
}
#else
static void gettimeofday_syscall(void)
{
        syscall(SYS_gettimeofday, &(struct timeval){0}, NULL);
}

static void test_sanitizer_runtime_calls(void **state)
{
        (void)state;
        /* What only a sanitizer runtime calls is refused in a release build. */
        assert_fault(confined(SANDBOX_ROLE_VCPU, gettimeofday_syscall), "vcpu", SYS_gettimeofday,
                     "gettimeofday");
}
#endif

static void test_no_fault_in_this_process(void **state)
{
        (void)state;
        /* The children trapped, not this process. */
        assert_int_equal(sandbox_fault_count(), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_role_has_a_program),
            cmocka_unit_test(test_role_names),
            cmocka_unit_test(test_forbidden_call_in_each_role),
            cmocka_unit_test(test_everyday_calls_go_through),
            cmocka_unit_test(test_no_executable_memory),
            cmocka_unit_test(test_vcpu_ioctl_requests),
            cmocka_unit_test(test_vmm_sockets_are_unix_only),
            cmocka_unit_test(test_fcntl_commands),
            cmocka_unit_test(test_api_role_is_the_servers),
            cmocka_unit_test(test_membarrier_commands),
            cmocka_unit_test(test_only_the_vmm_thread_touches_files),
            cmocka_unit_test(test_sanitizer_runtime_calls),
            cmocka_unit_test(test_no_fault_in_this_process),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
