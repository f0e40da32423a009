/*
 * common/fdio.c against a scripted file descriptor: write() and pwrite() are replaced in this
 * program (the library's calls bind to these), so short writes, writes that make no progress
 * with errno unset, EINTR and errors happen exactly when a test says.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fdio.h"

#define FAKE_FD 1000

/* The fake file: what reached it, and how each next call behaves. */
static struct {
        uint8_t data[256];
        size_t len;      /* bytes written (or the highest offset, for pwrite) */
        size_t per_call; /* at most this much per call (0: all) */
        int script[8];   /* per call: 0 normal, 'Z' return 0, 'I' EINTR, or an errno to fail with */
        unsigned call;
} fake;

static void fake_reset(size_t per_call)
{
        memset(&fake, 0, sizeof(fake));
        fake.per_call = per_call;
}

static ssize_t fake_io(const void *buf, size_t len, off_t off)
{
        int what = fake.call < 8 ? fake.script[fake.call] : 0;

        fake.call++;
        if (what == 'Z') {
                errno = 0; /* a write that takes nothing and reports nothing */
                return 0;
        }
        if (what) {
                errno = what == 'I' ? EINTR : what;
                return -1;
        }
        if (fake.per_call && len > fake.per_call)
                len = fake.per_call;
        if (off < 0)
                off = (off_t)fake.len;
        assert_true((size_t)off + len <= sizeof(fake.data));
        memcpy(fake.data + off, buf, len);
        if ((size_t)off + len > fake.len)
                fake.len = (size_t)off + len;
        return (ssize_t)len;
}

ssize_t write(int fd, const void *buf, size_t len);
ssize_t pwrite(int fd, const void *buf, size_t len, off_t off);

ssize_t write(int fd, const void *buf, size_t len)
{
        return fd == FAKE_FD ? fake_io(buf, len, -1) : syscall(SYS_write, fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
        return fd == FAKE_FD ? fake_io(buf, len, off) : syscall(SYS_pwrite64, fd, buf, len, off);
}

static void test_write_all_goes_on_after_short_writes(void **state)
{
        (void)state;
        fake_reset(3);
        fake.script[1] = 'I'; /* an EINTR in the middle */
        assert_int_equal(fd_write_all(FAKE_FD, "hello, world", 12), 0);
        assert_int_equal(fake.len, 12);
        assert_memory_equal(fake.data, "hello, world", 12);
}

/* A write that makes no progress and leaves errno 0 is an error, not a success (the memory
 * dump used to answer 204 over a truncated file). */
static void test_write_all_no_progress_is_an_error(void **state)
{
        (void)state;
        fake_reset(4);
        fake.script[1] = 'Z';
        assert_int_equal(fd_write_all(FAKE_FD, "hello, world", 12), -EIO);
        assert_int_equal(fake.len, 4);
        fake_reset(0);
        fake.script[0] = ENOSPC;
        assert_int_equal(fd_write_all(FAKE_FD, "x", 1), -ENOSPC);
}

static void test_pwrite_all_moves_its_offset(void **state)
{
        (void)state;
        fake_reset(2);
        assert_int_equal(fd_pwrite_all(FAKE_FD, "abcde", 5, 10), 0);
        assert_int_equal(fake.len, 15);
        assert_memory_equal(fake.data + 10, "abcde", 5);
        fake_reset(2);
        fake.script[1] = 'Z';
        assert_int_equal(fd_pwrite_all(FAKE_FD, "abcde", 5, 0), -EIO);
        assert_int_equal(fd_pwrite_all(FAKE_FD, "a", 1, -1), -EINVAL);
}

static void test_write_line_ends_a_torn_line_first(void **state)
{
        bool torn = false;

        (void)state;
        fake_reset(4);
        /* Cut short: the bytes that went out, and the line is torn. */
        assert_int_equal(fd_write_line(FAKE_FD, &torn, "first line\n", 11), 4);
        assert_true(torn);
        /* The next line comes after a newline that ends the torn one. */
        fake.per_call = 0;
        assert_int_equal(fd_write_line(FAKE_FD, &torn, "second\n", 7), 7);
        assert_false(torn);
        assert_int_equal(fake.len, 12);
        assert_memory_equal(fake.data, "firs\nsecond\n", 12);
        /* One write per line: no retry after a short write. */
        fake.per_call = 2;
        fake.call = 0;
        assert_int_equal(fd_write_line(FAKE_FD, &torn, "abc\n", 4), 2);
        assert_int_equal(fake.call, 1);
        assert_true(torn);
        /* The newline cannot go out: an error, the line stays torn and nothing else is
         * written; a write that makes no progress is -EIO, never a stale errno. */
        fake.call = 0;
        fake.script[0] = EAGAIN;
        assert_int_equal(fd_write_line(FAKE_FD, &torn, "next\n", 5), -EAGAIN);
        assert_true(torn);
        assert_int_equal(fake.call, 1);
        fake.call = 0;
        fake.script[0] = 'Z';
        assert_int_equal(fd_write_line(FAKE_FD, &torn, "next\n", 5), -EIO);
        assert_true(torn);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_write_all_goes_on_after_short_writes),
            cmocka_unit_test(test_write_all_no_progress_is_an_error),
            cmocka_unit_test(test_pwrite_all_moves_its_offset),
            cmocka_unit_test(test_write_line_ends_a_torn_line_first),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
