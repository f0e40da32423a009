/*
 * Opening and replacing users' files (common/file.h): a FIFO is refused at once, never
 * waited on (the test would hang), or, for an output, opened without a reader; regular files
 * come back blocking; a device node is never opened nor replaced; a replacement follows a
 * symbolic link, leaves the old file intact until the rename and removes only its own
 * temporary file.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/file.h"

static char dir[] = "/tmp/test_file.XXXXXX";

static char paths[8][256];

/* A path in the test's directory; slot names which buffer holds it. */
static const char *path(unsigned slot, const char *name)
{
        snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", dir, name);
        return paths[slot];
}

static void expect_refused(const char *p, int flags, unsigned kinds, const char *needle)
{
        struct error err = {0};

        assert_true(file_open("thing", p, flags, 0644, kinds, &err) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle))
                fail_msg("'%s' lacks '%s'", err.msg, needle);
}

static void test_open_kinds(void **state)
{
        struct error err = {0};
        const char *fifo = path(0, "fifo"), *reg = path(1, "reg");
        int fd;

        (void)state;
        assert_int_equal(mkfifo(fifo, 0600), 0);
        /* Read or write, with no peer: refused at once, not waited on. */
        expect_refused(fifo, O_RDONLY, FILE_REGULAR, "thing '/tmp/test_file.");
        expect_refused(fifo, O_RDONLY, FILE_REGULAR, "it is a FIFO");
        expect_refused(fifo, O_WRONLY | O_CREAT, FILE_REGULAR, "it is a FIFO");
        expect_refused(fifo, O_RDWR, FILE_REGULAR | FILE_BLOCK,
                       "is not a regular file or a block device: it is a FIFO");
        expect_refused(dir, O_RDONLY, FILE_REGULAR, "it is a directory");
        expect_refused("/dev/zero", O_RDONLY, FILE_REGULAR, "it is a character device");
        expect_refused(path(2, "none"), O_RDONLY, FILE_REGULAR, "No such file or directory");
        expect_refused("", O_RDONLY, FILE_REGULAR, "the path is empty");
        /* An output may be a FIFO: opened read-write (no reader needed), non-blocking. */
        fd = file_open("log", fifo, O_WRONLY | O_APPEND, 0, FILE_REGULAR | FILE_FIFO, &err);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
        close(fd);
        /* A regular file is created and left blocking (io_uring would fail with EAGAIN). */
        fd = file_open("out", reg, O_WRONLY | O_CREAT, 0600, FILE_REGULAR, &err);
        assert_true(fd >= 0);
        assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        unlink(fifo);
        unlink(reg);
}

static void write_file(const char *p, const char *text)
{
        FILE *f = fopen(p, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void expect_content(const char *p, const char *text)
{
        char buf[64] = {0};
        FILE *f = fopen(p, "r");

        assert_non_null(f);
        assert_true(fread(buf, 1, sizeof(buf) - 1, f) <= sizeof(buf));
        fclose(f);
        assert_string_equal(buf, text);
}

static unsigned count_entries(void)
{
        char cmd[300], out[32] = {0};
        FILE *p;

        snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
        p = popen(cmd, "r");
        assert_non_null(fgets(out, sizeof(out), p));
        pclose(p);
        return (unsigned)atoi(out);
}

static void test_replace(void **state)
{
        struct file_replace a, b;
        struct error err = {0};
        const char *target = path(0, "target"), *link = path(1, "link"), *node = path(2, "node");
        const char *theirs = path(3, "target.tmp-x5");
        struct stat st;

        (void)state;
        write_file(target, "old");
        assert_int_equal(symlink("target", link), 0);
        /* Through the link: the temporary file goes next to the target. */
        assert_int_equal(file_replace_begin(&a, "file", link, "x1", 0600, &err), 0);
        assert_string_equal(a.target, target);
        assert_int_equal(write(a.fd, "new", 3), 3);
        assert_int_equal(file_replace_sync(&a, "file", &err), 0);
        expect_content(target, "old"); /* nothing changed before the rename */
        assert_int_equal(file_replace_commit(&a, "file", &err), 0);
        file_replace_end(&a);
        expect_content(target, "new");
        assert_int_equal(lstat(link, &st), 0);
        assert_true(S_ISLNK(st.st_mode)); /* the user's link is still a link */
        /* Abandoned: the old file stays, the temporary file goes. */
        assert_int_equal(file_replace_begin(&a, "file", target, "x2", 0600, &err), 0);
        assert_int_equal(write(a.fd, "lost", 4), 4);
        file_replace_end(&a);
        expect_content(target, "new");
        assert_int_equal(count_entries(), 2);
        /* The same file by two names, and a device node: refused, nothing created. */
        assert_int_equal(file_replace_begin(&a, "a", link, "x3", 0600, &err), 0);
        assert_int_equal(file_replace_begin(&b, "b", target, "x3b", 0600, &err), 0);
        assert_true(file_replace_same_target(&a, &b));
        file_replace_end(&a);
        file_replace_end(&b);
        /* Root: a node of its own (the refusal must not remove it); others: /dev/null. */
        if (geteuid() == 0)
                assert_int_equal(mknod(node, S_IFCHR | 0600, makedev(1, 3)), 0);
        else
                node = "/dev/null";
        assert_int_equal(file_replace_begin(&a, "file", node, "x4", 0600, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not a regular file: it is a character device"));
        assert_int_equal(stat(node, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(count_entries(), geteuid() == 0 ? 3 : 2);
        /* A temporary file already there is not ours: left alone. */
        error_clear(&err);
        write_file(theirs, "theirs");
        assert_int_equal(file_replace_begin(&a, "file", target, "x5", 0600, &err), -EINVAL);
        expect_content(theirs, "theirs");
        unlink(theirs);
        if (geteuid() == 0)
                unlink(node);
        unlink(link);
        unlink(target);
}

static int setup(void **state)
{
        (void)state;
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        (void)state;
        return rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_open_kinds),
            cmocka_unit_test(test_replace),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
