/*
 * The Uffd backend's two host-side halves without a VM: guest memory registered with a
 * userfaultfd (memory/uffd.h) whose missing pages a page-fault handler fills, and the
 * handshake with that handler and the watch on it (vmm/uffd_peer.h).
 *
 * The handler here is a child process (fork): it listens, receives the message and the
 * userfaultfd, answers the faults the parent's reads cause, and exits when told to.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory/guest_mem.h"
#include "memory/uffd.h"
#include "vmm/uffd_peer.h"

#define LOW  (16ull << 20) /* a small 32-bit hole, so the RAM has two regions */
#define HOLE (32ull << 20)
#define SIZE (24ull << 20)

static struct guest_mem *two_regions(unsigned flags)
{
        struct guest_mem_spec spec = {
            .size = SIZE, .hole_start = LOW, .hole_end = HOLE, .flags = flags};
        struct error err = {0};
        struct guest_mem *mem;

        if (guest_mem_create(&spec, &err, &mem))
                fail_msg("%s", err.msg);
        return mem;
}

/* Firecracker 1.17's GuestRegionUffdMapping list, in its field order, compact. */
static void test_message(void **state)
{
        struct guest_mem *mem = two_regions(GUEST_MEM_USERFAULT);
        struct guest_mem_region r0 = guest_mem_region_get(mem, 0),
                                r1 = guest_mem_region_get(mem, 1);
        char want[512], got[512];
        int n;

        (void)state;
        snprintf(want, sizeof(want),
                 "[{\"base_host_virt_addr\":%llu,\"size\":16777216,\"offset\":0,"
                 "\"page_size\":4096,\"page_size_kib\":4096},"
                 "{\"base_host_virt_addr\":%llu,\"size\":8388608,\"offset\":16777216,"
                 "\"page_size\":4096,\"page_size_kib\":4096}]",
                 (unsigned long long)(uintptr_t)r0.host, (unsigned long long)(uintptr_t)r1.host);
        n = uffd_peer_message(mem, got, sizeof(got));
        assert_int_equal(n, (int)strlen(want));
        assert_string_equal(got, want);
        assert_int_equal(uffd_peer_message(mem, got, 100), -ENOSPC);
        assert_true(guest_mem_userfault(mem));
        guest_mem_destroy(mem);
}

/* ---- a handler in a child process ---- */

struct child {
        pid_t pid;
        int ctl; /* parent's end: a byte tells the child to exit */
};

/* Serves faults from a fixed pattern (each page's first byte = its page number + 1) until
 * the control socket says to stop; then exits with 0. */
static void serve(int conn, int ctl)
{
        char buf[1024], cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        static uint8_t page[4096];
        unsigned long long base0, base1;
        int uffd = -1;
        ssize_t n = recvmsg(conn, &mh, 0);

        if (n <= 0 || !CMSG_FIRSTHDR(&mh))
                _exit(10);
        buf[n] = '\0';
        memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        if (sscanf(buf, "[{\"base_host_virt_addr\":%llu,%*[^{]{\"base_host_virt_addr\":%llu",
                   &base0, &base1) != 2)
                _exit(11);
        for (;;) {
                struct pollfd fds[2] = {{.fd = uffd, .events = POLLIN},
                                        {.fd = ctl, .events = POLLIN}};
                struct uffd_msg m;

                if (poll(fds, 2, -1) < 0)
                        _exit(12);
                if (fds[1].revents)
                        _exit(0);
                if (read(uffd, &m, sizeof(m)) != sizeof(m) || m.event != UFFD_EVENT_PAGEFAULT)
                        continue;
                uint64_t a = m.arg.pagefault.address & ~4095ull;
                uint64_t off = a >= base1 ? LOW + (a - base1) : a - base0;
                page[0] = (uint8_t)(off / 4096 + 1);
                struct uffdio_copy c = {.dst = a, .src = (uintptr_t)page, .len = 4096};
                ioctl(uffd, UFFDIO_COPY, &c);
        }
}

static struct child start_handler(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int ctl[2], l;
        struct child c;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, ctl), 0);
        strcpy(sa.sun_path, path);
        unlink(path);
        l = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(l >= 0);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        c.pid = fork();
        assert_true(c.pid >= 0);
        if (c.pid == 0) {
                /* The child listens: SO_PEERCRED names the listening process. */
                int conn;

                close(ctl[0]);
                if (listen(l, 1))
                        _exit(13);
                if (write(ctl[1], "L", 1) != 1)
                        _exit(14);
                conn = accept(l, NULL, NULL);
                if (conn < 0)
                        _exit(15);
                serve(conn, ctl[1]);
        }
        close(l);
        close(ctl[1]);
        c.ctl = ctl[0];
        char b;
        assert_int_equal(read(c.ctl, &b, 1), 1); /* listening */
        return c;
}

static struct {
        /* Atomic: the test checks it is still 0 while the handler lives, and the peer's
         * watcher thread may be writing it then (msg is read only after the pipe said so). */
        _Atomic int calls;
        char msg[512];
        int pipe[2];
} gone_seen;

static void on_gone(void *opaque, const char *msg)
{
        (void)opaque;
        gone_seen.calls++;
        snprintf(gone_seen.msg, sizeof(gone_seen.msg), "%s", msg);
        if (write(gone_seen.pipe[1], "g", 1) != 1)
                abort();
}

/* The whole exchange: registration, the message with the descriptor, faults on both
 * regions answered, the handler's exit reported once (and only after it). */
static void test_handshake_faults_and_gone(void **state)
{
        struct guest_mem *mem = two_regions(GUEST_MEM_USERFAULT);
        char path[] = "/tmp/test_uffd_peer.XXXXXX", sock[64];
        struct error err = {0};
        struct uffd_peer *peer;
        struct child c;
        uint8_t v0, v1;
        int uffd, status;
        char b;

        (void)state;
        assert_non_null(mkdtemp(path));
        snprintf(sock, sizeof(sock), "%s/h.sock", path);
        assert_int_equal(pipe(gone_seen.pipe), 0);
        c = start_handler(sock);
        uffd = uffd_register_guest_mem(mem, &err);
        if (uffd < 0)
                fail_msg("%s", err.msg);
        struct uffd_peer_params p = {.path = sock, .mem = mem, .uffd = uffd, .on_gone = on_gone};
        if (uffd_peer_connect(&p, &err, &peer))
                fail_msg("%s", err.msg);
        /* Pages of both regions, filled by the handler: their first byte is the page number
         * in the memory file's layout, plus one. */
        assert_int_equal(guest_mem_read(mem, 5 * 4096, &v0, 1), 0);
        assert_int_equal(guest_mem_read(mem, HOLE + 2 * 4096, &v1, 1), 0);
        assert_int_equal(v0, 6);
        assert_int_equal(v1, (uint8_t)(LOW / 4096 + 3));
        assert_int_equal(gone_seen.calls, 0);
        /* The handler exits: reported once, naming the socket and the pid. */
        assert_int_equal(write(c.ctl, "x", 1), 1);
        assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(read(gone_seen.pipe[0], &b, 1), 1);
        char want[256];
        snprintf(want, sizeof(want),
                 "the page-fault handler of the Uffd memory backend '%s' (pid %d) exited: guest "
                 "memory can no longer be served",
                 sock, (int)c.pid);
        assert_string_equal(gone_seen.msg, want);
        uffd_peer_destroy(peer);
        assert_int_equal(gone_seen.calls, 1);
        guest_mem_destroy(mem);
        close(c.ctl);
        close(gone_seen.pipe[0]);
        close(gone_seen.pipe[1]);
        unlink(sock);
        rmdir(path);
}

/* Refused before anything is sent, with the socket named; the descriptor is closed. */
static void test_refusals(void **state)
{
        struct guest_mem *mem = two_regions(GUEST_MEM_USERFAULT);
        char longpath[200];
        struct error err = {0};
        struct uffd_peer *peer = NULL;
        int uffd = uffd_register_guest_mem(mem, &err);
        struct uffd_peer_params p = {
            .path = "/nonexistent/h.sock", .mem = mem, .uffd = uffd, .on_gone = on_gone};

        (void)state;
        assert_true(uffd >= 0);
        assert_int_equal(uffd_peer_connect(&p, &err, &peer), -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_string_equal(err.msg, "cannot connect to the page-fault handler's socket "
                                     "'/nonexistent/h.sock': No such file or directory");
        assert_int_equal(fcntl(uffd, F_GETFD), -1); /* closed */
        memset(longpath, 'a', sizeof(longpath) - 1);
        longpath[sizeof(longpath) - 1] = '\0';
        p.path = longpath;
        p.uffd = uffd_register_guest_mem(mem, &err);
        error_clear(&err);
        assert_int_equal(uffd_peer_connect(&p, &err, &peer), -EINVAL);
        assert_non_null(strstr(err.msg, "is too long (a Unix socket's path has 1 to 107 bytes)"));
        assert_null(peer);
        guest_mem_destroy(mem);
}

/* A page already present never faults: registration needs untouched memory, and guest_mem
 * does not touch it. A file-backed guest_mem cannot be a userfault one. */
static void test_guest_mem_flags(void **state)
{
        struct guest_mem_spec spec = {.size = SIZE,
                                      .hole_start = LOW,
                                      .hole_end = HOLE,
                                      .flags = GUEST_MEM_USERFAULT | GUEST_MEM_FILE,
                                      .file = 0};
        struct error err = {0};
        struct guest_mem *mem;

        (void)state;
        assert_int_equal(guest_mem_create(&spec, &err, &mem), -EINVAL);
        mem = two_regions(0);
        assert_false(guest_mem_userfault(mem));
        assert_int_equal(guest_mem_page_size(mem), 4096);
        guest_mem_destroy(mem);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_message),
            cmocka_unit_test(test_handshake_faults_and_gone),
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_guest_mem_flags),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
