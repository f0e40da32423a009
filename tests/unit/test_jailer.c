/*
 * The jailer's modules (api/jailer/) without root: every argument rule of Firecracker's
 * command line and each refusal's message; the jail's file helpers never follow a link or
 * write through a planted link; the loader-listing parser and the PT_INTERP reader on good
 * and malformed input; the cgroup v2 placement against a mock hierarchy (files in a
 * temporary directory, as cgroupfs shows them).
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/jailer/jail_args.h"
#include "api/jailer/jail_cgroup.h"
#include "api/jailer/jail_fs.h"
#include "api/jailer/jail_libs.h"

/* ---- helpers ---- */

static char tmpdir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
        (void)st;
        (void)flag;
        (void)f;
        return remove(p);
}

static int setup_tmp(void **state)
{
        (void)state;
        strcpy(tmpdir, "/tmp/test_jailer.XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
        (void)state;
        return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_of(char *out, size_t size, const char *rel)
{
        snprintf(out, size, "%s/%s", tmpdir, rel);
}

static void write_file(const char *rel, const char *text)
{
        char p[512];
        FILE *f;

        path_of(p, sizeof(p), rel);
        f = fopen(p, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static char *read_file(const char *rel)
{
        static char buf[4096];
        char p[512];
        size_t n;
        FILE *f;

        path_of(p, sizeof(p), rel);
        f = fopen(p, "r");
        if (!f)
                return NULL;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static void make_dir(const char *rel)
{
        char p[512];

        path_of(p, sizeof(p), rel);
        assert_int_equal(mkdir(p, 0755), 0);
}

static int open_tmp(void)
{
        int fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        return fd;
}

/* ---- arguments ---- */

/* Parses a NULL-terminated list after argv[0]; returns the result, message in err. */
static int parse(struct jail_args *a, struct error *err, ...)
{
        char *argv[64] = {"jailer"};
        int argc = 1;
        va_list ap;

        va_start(ap, err);
        for (char *s; (s = va_arg(ap, char *)) != NULL;)
                argv[argc++] = s;
        va_end(ap);
        error_clear(err);
        static char *keep[64];
        memcpy(keep, argv, sizeof(keep)); /* vmm_args point into argv: keep it alive */
        return jail_args_parse(a, argc, keep, err);
}

#define REQUIRED "--id", "vm-1", "--exec-file", "/usr/bin/vmm", "--uid", "123", "--gid", "100"

static void test_args_minimal_defaults(void **state)
{
        struct jail_args a;
        struct error err;

        (void)state;
        assert_int_equal(parse(&a, &err, REQUIRED, NULL), 0);
        assert_string_equal(a.id, "vm-1");
        assert_string_equal(a.exec_file, "/usr/bin/vmm");
        assert_int_equal(a.uid, 123);
        assert_int_equal(a.gid, 100);
        assert_string_equal(a.chroot_base, "/srv/jailer");
        assert_null(a.netns);
        assert_false(a.daemonize);
        assert_false(a.new_pid_ns);
        assert_int_equal(a.cgroup_version, 1);
        assert_null(a.parent_cgroup);
        assert_int_equal(a.nr_cgroups, 0);
        assert_false(a.has_fsize);
        assert_int_equal(a.no_file, 2048);
        assert_int_equal(a.nr_vmm_args, 0);
        jail_args_free(&a);
}

static void test_args_every_option(void **state)
{
        struct jail_args a;
        struct error err;

        (void)state;
        assert_int_equal(parse(&a, &err, "--daemonize", REQUIRED, "--chroot-base-dir", "/jails",
                               "--netns", "/var/run/netns/n1", "--new-pid-ns", "--cgroup-version",
                               "2", "--cgroup", "pids.max=64", "--cgroup",
                               "io.max=8:16 rbps=2097152", "--parent-cgroup", "all/uvms",
                               "--resource-limit", "fsize=250000000", "--resource-limit",
                               "no-file=1024", "--resource-limit", "no-file=512", "--",
                               "--api-sock", "/run/api.sock", "--", "x", NULL),
                         0);
        assert_string_equal(a.chroot_base, "/jails");
        assert_string_equal(a.netns, "/var/run/netns/n1");
        assert_true(a.daemonize);
        assert_true(a.new_pid_ns);
        assert_int_equal(a.cgroup_version, 2);
        assert_string_equal(a.parent_cgroup, "all/uvms");
        assert_int_equal(a.nr_cgroups, 2);
        assert_string_equal(a.cgroups[0].file, "pids.max");
        assert_string_equal(a.cgroups[0].controller, "pids");
        assert_string_equal(a.cgroups[0].value, "64");
        /* Split at the first '=': io.max's value keeps its own. */
        assert_string_equal(a.cgroups[1].file, "io.max");
        assert_string_equal(a.cgroups[1].controller, "io");
        assert_string_equal(a.cgroups[1].value, "8:16 rbps=2097152");
        assert_true(a.has_fsize);
        assert_int_equal(a.fsize, 250000000);
        assert_int_equal(a.no_file, 512); /* the last one wins, as Firecracker's */
        /* Everything after the first -- is the VMM's, a second -- included. */
        assert_int_equal(a.nr_vmm_args, 4);
        assert_string_equal(a.vmm_args[0], "--api-sock");
        assert_string_equal(a.vmm_args[1], "/run/api.sock");
        assert_string_equal(a.vmm_args[2], "--");
        assert_string_equal(a.vmm_args[3], "x");
        jail_args_free(&a);
}

static void test_args_help_and_version_win(void **state)
{
        struct jail_args a;
        struct error err;

        (void)state;
        assert_int_equal(parse(&a, &err, "--bogus", "--help", NULL), 0);
        assert_true(a.help);
        jail_args_free(&a);
        assert_int_equal(parse(&a, &err, "-h", NULL), 0);
        assert_true(a.help);
        jail_args_free(&a);
        assert_int_equal(parse(&a, &err, "--id", "?", "--version", NULL), 0);
        assert_true(a.version);
        jail_args_free(&a);
        /* After --, they are the VMM's. */
        assert_int_equal(parse(&a, &err, REQUIRED, "--", "--help", NULL), 0);
        assert_false(a.help);
        jail_args_free(&a);
}

struct refusal {
        const char *args[12];
        const char *message;
};

static void test_args_refusals(void **state)
{
        static const struct refusal cases[] = {
            {{"--exec-file", "/v", "--uid", "1", "--gid", "1"}, "--id is required"},
            {{"--id", "a", "--uid", "1", "--gid", "1"}, "--exec-file is required"},
            {{"--id", "a", "--exec-file", "/v", "--gid", "1"}, "--uid is required"},
            {{"--id", "a", "--exec-file", "/v", "--uid", "1"}, "--gid is required"},
            {{REQUIRED, "--id", "b"}, "--id was given more than once"},
            {{REQUIRED, "--daemonize", "--daemonize"}, "--daemonize was given more than once"},
            {{REQUIRED, "--bogus"}, "unknown option '--bogus'"},
            {{REQUIRED, "--netns=/x"}, "give the value as the next argument"},
            {{REQUIRED, "stray"}, "unexpected argument 'stray'"},
            {{REQUIRED, "--netns"}, "--netns needs a value"},
            {{REQUIRED, "--netns", "--daemonize"}, "--netns needs a value"},
            {{REQUIRED, "--netns", "--"}, "--netns needs a value"},
            {{REQUIRED, "--netns", ""}, "--netns: empty path"},
            {{REQUIRED, "--chroot-base-dir", ""}, "--chroot-base-dir: empty path"},
            {{"--id", "a", "--exec-file", "", "--uid", "1", "--gid", "1"},
             "--exec-file: empty path"},
            {{"--id", "a_b", "--exec-file", "/v", "--uid", "1", "--gid", "1"},
             "invalid character '_' (0x5f) at position 1"},
            {{"--id", "", "--exec-file", "/v", "--uid", "1", "--gid", "1"},
             "has 0 characters; an id has 1 to 64"},
            {{"--id", "a", "--exec-file", "/v", "--uid", "-1", "--gid", "1"},
             "--uid: '-1' is not a decimal number"},
            {{"--id", "a", "--exec-file", "/v", "--uid", "4294967295", "--gid", "1"},
             "--uid: 4294967295 is out of range"},
            {{"--id", "a", "--exec-file", "/v", "--uid", "1", "--gid", "99999999999"},
             "--gid: 99999999999 is out of range"},
            {{"--id", "a", "--exec-file", "/v", "--uid", "1", "--gid", "12a"},
             "--gid: '12a' is not a decimal number"},
            {{REQUIRED, "--cgroup-version", "3"}, "'3' is not a cgroup version (1 or 2)"},
            {{REQUIRED, "--cgroup-version", "v2"}, "'v2' is not a cgroup version"},
            {{REQUIRED, "--cgroup", "pids.max=64"},
             "only cgroup v2 is supported; give --cgroup-version 2"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "pids.max"}, "expected FILE=VALUE"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "=5"}, "expected FILE=VALUE"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "pids.max="}, "empty value"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "../pids.max=1"}, "no paths"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "a/pids.max=1"}, "no paths"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "max=1"}, "CONTROLLER.NAME"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", ".max=1"}, "CONTROLLER.NAME"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "pids.=1"}, "CONTROLLER.NAME"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "Pids.max=1"},
             "'Pids' is not a controller name"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "cgroup.procs=1"},
             "the cgroup core files (cgroup.*) are not settings"},
            {{REQUIRED, "--cgroup-version", "2", "--cgroup", "pids.max=6\n4"},
             "control character in the value"},
            {{REQUIRED, "--parent-cgroup", "/abs"}, "must be relative"},
            {{REQUIRED, "--parent-cgroup", "a/../b"}, "may not be empty, '.' or '..'"},
            {{REQUIRED, "--parent-cgroup", "a//b"}, "may not be empty, '.' or '..'"},
            {{REQUIRED, "--parent-cgroup", "a/"}, "may not be empty, '.' or '..'"},
            {{REQUIRED, "--parent-cgroup", "."}, "may not be empty, '.' or '..'"},
            {{REQUIRED, "--parent-cgroup", "a\tb"}, "control character"},
            {{REQUIRED, "--resource-limit", "fsize"}, "expected RESOURCE=VALUE"},
            {{REQUIRED, "--resource-limit", "=5"}, "expected RESOURCE=VALUE"},
            {{REQUIRED, "--resource-limit", "nofile=5"}, "unknown resource 'nofile'"},
            {{REQUIRED, "--resource-limit", "fsize=-1"}, "'-1' is not a decimal number"},
            {{REQUIRED, "--resource-limit", "fsize=18446744073709551616"},
             "is not a decimal number"},
            {{REQUIRED, "--resource-limit", "no-file=1k"}, "'1k' is not a decimal number"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *argv[16] = {"jailer"};
                struct jail_args a;
                struct error err = {0};
                int argc = 1;

                for (int k = 0; k < 12 && cases[i].args[k]; k++)
                        argv[argc++] = (char *)cases[i].args[k];
                if (jail_args_parse(&a, argc, argv, &err) != -EINVAL ||
                    !strstr(err.msg, cases[i].message))
                        fail_msg("case %zu: expected '%s', got '%s'", i, cases[i].message, err.msg);
                jail_args_free(&a);
        }
}

static void test_id_rules(void **state)
{
        char long_id[80];

        (void)state;
        assert_int_equal(jail_args_check_id("551e7604-e35c-42b3-b825-416853441234", NULL), 0);
        assert_int_equal(jail_args_check_id("a", NULL), 0);
        memset(long_id, 'a', 64);
        long_id[64] = '\0';
        assert_int_equal(jail_args_check_id(long_id, NULL), 0);
        long_id[64] = 'a';
        long_id[65] = '\0';
        assert_int_equal(jail_args_check_id(long_id, NULL), -EINVAL);
        assert_int_equal(jail_args_check_id("", NULL), -EINVAL);
        /* No path characters, no dots (a jail folder), no non-ASCII, no spaces. */
        const char *bad[] = {"a/b", "..", "a.b", "a b", "caf\xc3\xa9", "a\n", "a:b", "a_b"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(jail_args_check_id(bad[i], NULL), -EINVAL);
}

static void test_id_numbers(void **state)
{
        uint32_t v;

        (void)state;
        assert_int_equal(jail_args_parse_id_number("uid", "0", &v, NULL), 0);
        assert_int_equal(v, 0);
        assert_int_equal(jail_args_parse_id_number("uid", "4294967294", &v, NULL), 0);
        assert_int_equal(v, 4294967294u);
        const char *bad[] = {"", "4294967295", "+1", " 1", "1 ", "0x10", "-0"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(jail_args_parse_id_number("uid", bad[i], &v, NULL), -EINVAL);
}

static void test_parent_cgroup_rules(void **state)
{
        (void)state;
        assert_int_equal(jail_args_check_parent_cgroup("vmm", NULL), 0);
        assert_int_equal(jail_args_check_parent_cgroup("all_uvms/external_uvms", NULL), 0);
        assert_int_equal(jail_args_check_parent_cgroup("a.b/c..d", NULL), 0);
        const char *bad[] = {"", "/", "/a", "a/", "a//b", ".", "..", "a/.", "./a", "a/../b"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(jail_args_check_parent_cgroup(bad[i], NULL), -EINVAL);
}

/* ---- jail files ---- */

static void test_mkdirs_exact_modes_and_no_links(void **state)
{
        struct error err = {0};
        struct stat st;
        char p[512];
        int dfd = open_tmp();
        int fd;

        (void)state;
        umask(022);
        fd = jail_fs_mkdirs(dfd, "a/b/c", 0751, tmpdir, &err);
        assert_true(fd >= 0);
        close(fd);
        path_of(p, sizeof(p), "a/b/c");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0751);
        /* Again: the existing directories are opened, nothing fails. */
        fd = jail_fs_mkdirs(dfd, "a/b/c", 0751, tmpdir, &err);
        assert_true(fd >= 0);
        close(fd);

        /* A link on the way, to outside or to inside, is refused; its target untouched. */
        make_dir("outside");
        path_of(p, sizeof(p), "outside");
        assert_int_equal(symlinkat(p, dfd, "a/out"), 0);
        assert_int_equal(symlinkat("b", dfd, "a/in"), 0);
        error_clear(&err);
        assert_int_equal(jail_fs_mkdirs(dfd, "a/out/x", 0755, "/jail", &err), -ELOOP);
        assert_non_null(strstr(err.msg, "/jail/a/out: a symbolic link"));
        error_clear(&err);
        assert_int_equal(jail_fs_mkdirs(dfd, "a/in/y", 0755, "/jail", &err), -ELOOP);
        path_of(p, sizeof(p), "outside/x");
        assert_int_equal(access(p, F_OK), -1);
        path_of(p, sizeof(p), "a/b/y");
        assert_int_equal(access(p, F_OK), -1);
        /* No way up or out by name either. */
        error_clear(&err);
        assert_int_equal(jail_fs_mkdirs(dfd, "a/../x", 0755, "/jail", &err), -EINVAL);
        assert_int_equal(jail_fs_mkdirs(dfd, "/abs", 0755, "/jail", &err), -EINVAL);
        assert_int_equal(jail_fs_mkdirs(dfd, "a//b", 0755, "/jail", &err), -EINVAL);
        assert_int_equal(jail_fs_openat(dfd, "../x", O_RDONLY, 0), -EXDEV);
        close(dfd);
}

static void test_copy_never_writes_through_links(void **state)
{
        struct error err = {0};
        struct stat st;
        char p[512];
        int dfd, src;

        (void)state;
        write_file("victim", "host data");
        write_file("src", "the vmm");
        make_dir("jail");
        path_of(p, sizeof(p), "jail");
        dfd = open(p, O_RDONLY | O_DIRECTORY);
        path_of(p, sizeof(p), "victim");
        assert_int_equal(symlinkat(p, dfd, "vmm"), 0);
        assert_int_equal(linkat(AT_FDCWD, p, dfd, "vmm2", 0), 0);
        path_of(p, sizeof(p), "src");
        src = open(p, O_RDONLY);

        assert_int_equal(jail_fs_copy(src, dfd, "vmm", 0750, (uid_t)-1, (gid_t)-1, &err), 0);
        assert_int_equal(jail_fs_copy(src, dfd, "vmm2", 0750, (uid_t)-1, (gid_t)-1, &err), 0);
        assert_string_equal(read_file("victim"), "host data");
        assert_string_equal(read_file("jail/vmm"), "the vmm");
        assert_string_equal(read_file("jail/vmm2"), "the vmm");
        assert_int_equal(fstatat(dfd, "vmm", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0750);
        path_of(p, sizeof(p), "victim");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_nlink, 1); /* the planted link was replaced, not written */
        close(src);
        close(dfd);
}

/* Entries of a directory, "." and ".." aside. */
static int count_entries(const char *rel)
{
        struct dirent *e;
        char p[512];
        DIR *d;
        int n = 0;

        path_of(p, sizeof(p), rel);
        d = opendir(p);
        assert_non_null(d);
        while ((e = readdir(d)) != NULL)
                n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
        return n;
}

static void test_link_or_copy(void **state)
{
        struct error err = {0};
        struct stat a, b;
        bool linked;
        char p[512];
        int dfd, src;

        (void)state;
        write_file("lib.so", "code");
        make_dir("j");
        path_of(p, sizeof(p), "j");
        dfd = open(p, O_RDONLY | O_DIRECTORY);
        path_of(p, sizeof(p), "lib.so");
        src = open(p, O_RDONLY);
        assert_int_equal(jail_fs_link_or_copy(src, dfd, "lib.so", &linked, &err), 0);
        assert_true(linked);
        assert_int_equal(fstat(src, &a), 0);
        assert_int_equal(fstatat(dfd, "lib.so", &b, 0), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        /* Again: already that inode, nothing to do, no temporary left behind. */
        assert_int_equal(jail_fs_link_or_copy(src, dfd, "lib.so", &linked, &err), 0);
        assert_int_equal(count_entries("j"), 1);
        close(src);
        close(dfd);
}

/* ---- the loader's list and PT_INTERP ---- */

static void test_parse_list(void **state)
{
        char text[] = "\tlinux-vdso.so.1 (0x00007ffc5a9f2000)\n"
                      "\tlibfdt.so.1 => /lib/x86_64-linux-gnu/libfdt.so.1 (0x00007f0f1c9e0000)\n"
                      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f1c800000)\n"
                      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f0f1ca2f000)\n"
                      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f1c800000)\n";
        const char *paths[8];
        struct error err = {0};

        (void)state;
        assert_int_equal(jail_libs_parse_list(text, paths, 8, &err), 3);
        assert_string_equal(paths[0], "/lib/x86_64-linux-gnu/libfdt.so.1");
        assert_string_equal(paths[1], "/lib/x86_64-linux-gnu/libc.so.6");
        assert_string_equal(paths[2], "/lib64/ld-linux-x86-64.so.2");

        char missing[] = "\tlibgone.so.3 => not found\n";
        assert_int_equal(jail_libs_parse_list(missing, paths, 8, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "cannot find libgone.so.3"));

        char odd[] = "\tlibx.so => /lib/../etc/libx.so (0x1)\n";
        error_clear(&err);
        assert_true(jail_libs_parse_list(odd, paths, 8, &err) < 0);
        assert_non_null(strstr(err.msg, "unusable path"));

        char many[] = "/a/1\n/a/2\n/a/3\n";
        error_clear(&err);
        assert_int_equal(jail_libs_parse_list(many, paths, 2, &err), -E2BIG);
}

struct elf_image {
        Elf64_Ehdr eh;
        Elf64_Phdr ph;
        char data[64];
};

/* An ELF64 header with one program header of type, whose data is payload. */
static int elf_file(const char *rel, uint32_t type, const void *payload, size_t len)
{
        struct elf_image img;
        char p[512];
        int fd;

        memset(&img, 0, sizeof(img));
        memcpy(img.eh.e_ident, ELFMAG, SELFMAG);
        img.eh.e_ident[EI_CLASS] = ELFCLASS64;
        img.eh.e_ident[EI_DATA] = ELFDATA2LSB;
        img.eh.e_type = ET_DYN;
        img.eh.e_phoff = offsetof(struct elf_image, ph);
        img.eh.e_phentsize = sizeof(Elf64_Phdr);
        img.eh.e_phnum = 1;
        img.ph.p_type = type;
        img.ph.p_offset = offsetof(struct elf_image, data);
        img.ph.p_filesz = len;
        memcpy(img.data, payload, len);
        path_of(p, sizeof(p), rel);
        fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
        assert_int_equal(write(fd, &img, sizeof(img)), (ssize_t)sizeof(img));
        return fd;
}

static void test_interp(void **state)
{
        struct error err = {0};
        char out[256];
        int fd;

        (void)state;
        fd = elf_file("dyn", PT_INTERP, "/lib/ld.so", 11);
        assert_int_equal(jail_libs_interp(fd, out, sizeof(out), &err), 0);
        assert_string_equal(out, "/lib/ld.so");
        close(fd);

        fd = elf_file("static", PT_LOAD, "", 0);
        assert_int_equal(jail_libs_interp(fd, out, sizeof(out), &err), 0);
        assert_string_equal(out, "");
        close(fd);

        /* Not NUL-terminated, relative, longer than the buffer, embedded NUL. */
        const struct {
                const char *data;
                size_t len;
        } bad[] = {{"/lib/ld.so", 10}, {"lib/ld.so", 10}, {"/lib/ld\0so", 11}};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                error_clear(&err);
                fd = elf_file("bad", PT_INTERP, bad[i].data, bad[i].len);
                assert_int_equal(jail_libs_interp(fd, out, sizeof(out), &err), -EINVAL);
                assert_string_equal(err.msg, "malformed ELF program interpreter");
                close(fd);
        }
        error_clear(&err);
        fd = elf_file("long", PT_INTERP, "/lib/ld.so", 11);
        assert_int_equal(jail_libs_interp(fd, out, 8, &err), -EINVAL);
        close(fd);

        write_file("script", "#!/bin/sh\necho hi\n");
        char p[512];
        path_of(p, sizeof(p), "script");
        fd = open(p, O_RDONLY);
        error_clear(&err);
        assert_int_equal(jail_libs_interp(fd, out, sizeof(out), &err), -EINVAL);
        assert_string_equal(err.msg, "not an ELF executable");
        assert_int_equal(err.kind, ERROR_CONFIG);
        close(fd);
}

/* ---- cgroup v2 against a mock hierarchy ---- */

static void mock_hierarchy(void)
{
        char mounts[1024];
        char p[512];

        make_dir("cg");
        write_file("cg/cgroup.controllers", "cpuset cpu io memory pids\n");
        write_file("cg/cgroup.subtree_control", "");
        path_of(p, sizeof(p), "cg");
        snprintf(mounts, sizeof(mounts),
                 "proc /proc proc rw 0 0\n"
                 "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
                 "cgroup2 %s cgroup2 rw,nsdelegate 0 0\n"
                 "cgroup2 /elsewhere cgroup2 rw 0 0\n",
                 p);
        write_file("mounts", mounts);
}

static void test_cgroup_find_v2(void **state)
{
        struct error err = {0};
        char mount[512], p[512];

        (void)state;
        mock_hierarchy();
        path_of(p, sizeof(p), "mounts");
        assert_int_equal(jail_cgroup_find_v2(p, mount, sizeof(mount), &err), 0);
        path_of(p, sizeof(p), "cg");
        assert_string_equal(mount, p); /* the first cgroup2 line */

        write_file("mounts2", "cgroup2 /sys/fs/cgroup\\040x cgroup2 rw 0 0\n");
        path_of(p, sizeof(p), "mounts2");
        assert_int_equal(jail_cgroup_find_v2(p, mount, sizeof(mount), &err), 0);
        assert_string_equal(mount, "/sys/fs/cgroup x");

        write_file("mounts3", "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n");
        path_of(p, sizeof(p), "mounts3");
        assert_int_equal(jail_cgroup_find_v2(p, mount, sizeof(mount), &err), -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, "no cgroup v2 hierarchy is mounted"));
}

static void settings(struct jail_args *a, const char *s1, const char *s2)
{
        struct error err = {0};
        char *argv[] = {"jailer",   REQUIRED,   "--cgroup-version", "2",
                        "--cgroup", (char *)s1, "--cgroup",         (char *)s2};
        assert_int_equal(jail_args_parse(a, (int)(sizeof(argv) / sizeof(argv[0])), argv, &err), 0);
        assert_int_equal(a->nr_cgroups, 2);
}

static void test_cgroup_setup_writes_in_order(void **state)
{
        struct jail_args a;
        struct error err = {0};
        char cg[512];

        (void)state;
        mock_hierarchy();
        /* cgroupfs shows a cgroup's files once it exists; the mock has them beforehand. */
        make_dir("cg/uvms");
        write_file("cg/uvms/cgroup.subtree_control", "");
        make_dir("cg/uvms/vm-1");
        write_file("cg/uvms/vm-1/pids.max", "");
        write_file("cg/uvms/vm-1/memory.max", "");
        write_file("cg/uvms/vm-1/cgroup.procs", "");
        settings(&a, "pids.max=64", "memory.max=268435456");
        path_of(cg, sizeof(cg), "cg");
        assert_int_equal(jail_cgroup_check(cg, a.cgroups, a.nr_cgroups, &err), 0);
        assert_int_equal(jail_cgroup_setup(cg, "uvms", "vm-1", a.cgroups, a.nr_cgroups, 4242, &err),
                         0);
        /* One write per controller and level (the mock keeps the last one). */
        assert_string_equal(read_file("cg/cgroup.subtree_control"), "+memory");
        assert_string_equal(read_file("cg/uvms/cgroup.subtree_control"), "+memory");
        assert_string_equal(read_file("cg/uvms/vm-1/pids.max"), "64\n");
        assert_string_equal(read_file("cg/uvms/vm-1/memory.max"), "268435456\n");
        assert_string_equal(read_file("cg/uvms/vm-1/cgroup.procs"), "4242\n");
        jail_args_free(&a);
}

static void test_cgroup_refusals(void **state)
{
        struct jail_args a;
        struct error err = {0};
        char cg[512];

        (void)state;
        mock_hierarchy();
        path_of(cg, sizeof(cg), "cg");
        settings(&a, "pids.max=64", "hugetlb.2MB.max=0");
        assert_int_equal(jail_cgroup_check(cg, a.cgroups, a.nr_cgroups, &err), -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, "controller 'hugetlb' is not available"));
        jail_args_free(&a);

        /* A file the controller does not have: refused, nothing created in cgroupfs. */
        error_clear(&err);
        make_dir("cg/p");
        write_file("cg/p/cgroup.subtree_control", "");
        make_dir("cg/p/vm-2");
        write_file("cg/p/vm-2/pids.max", "");
        settings(&a, "pids.max=64", "pids.maxx=1");
        assert_int_equal(jail_cgroup_setup(cg, "p", "vm-2", a.cgroups, a.nr_cgroups, 1, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "/p/vm-2/pids.maxx does not exist"));
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_string_equal(read_file("cg/p/vm-2/pids.max"), "64\n");
        assert_null(read_file("cg/p/vm-2/pids.maxx"));
        jail_args_free(&a);

        /* A link in the hierarchy is not followed. */
        error_clear(&err);
        char p[512];
        path_of(p, sizeof(p), "cg/q");
        make_dir("target");
        path_of(cg, sizeof(cg), "target");
        assert_int_equal(symlink(cg, p), 0);
        path_of(cg, sizeof(cg), "cg");
        settings(&a, "pids.max=64", "pids.max=65");
        assert_int_equal(jail_cgroup_setup(cg, "q", "vm-3", a.cgroups, a.nr_cgroups, 1, &err),
                         -ELOOP);
        assert_int_equal(count_entries("target"), 0);
        jail_args_free(&a);
}

static void test_cgroup_join_parent(void **state)
{
        struct error err = {0};
        char cg[512];

        (void)state;
        mock_hierarchy();
        path_of(cg, sizeof(cg), "cg");
        /* No such cgroup: nothing to do (Firecracker's rule). */
        assert_int_equal(jail_cgroup_join_parent(cg, "absent/p", 77, &err), 0);
        make_dir("cg/pre");
        write_file("cg/pre/cgroup.procs", "");
        assert_int_equal(jail_cgroup_join_parent(cg, "pre", 77, &err), 1);
        assert_string_equal(read_file("cg/pre/cgroup.procs"), "77\n");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_args_minimal_defaults),
            cmocka_unit_test(test_args_every_option),
            cmocka_unit_test(test_args_help_and_version_win),
            cmocka_unit_test(test_args_refusals),
            cmocka_unit_test(test_id_rules),
            cmocka_unit_test(test_id_numbers),
            cmocka_unit_test(test_parent_cgroup_rules),
            cmocka_unit_test_setup_teardown(test_mkdirs_exact_modes_and_no_links, setup_tmp,
                                            teardown_tmp),
            cmocka_unit_test_setup_teardown(test_copy_never_writes_through_links, setup_tmp,
                                            teardown_tmp),
            cmocka_unit_test_setup_teardown(test_link_or_copy, setup_tmp, teardown_tmp),
            cmocka_unit_test(test_parse_list),
            cmocka_unit_test_setup_teardown(test_interp, setup_tmp, teardown_tmp),
            cmocka_unit_test_setup_teardown(test_cgroup_find_v2, setup_tmp, teardown_tmp),
            cmocka_unit_test_setup_teardown(test_cgroup_setup_writes_in_order, setup_tmp,
                                            teardown_tmp),
            cmocka_unit_test_setup_teardown(test_cgroup_refusals, setup_tmp, teardown_tmp),
            cmocka_unit_test_setup_teardown(test_cgroup_join_parent, setup_tmp, teardown_tmp),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
