/*
 * The jailer: Firecracker's jailer for vmm (docs/jailer.md). Run as root, it builds the jail
 * <chroot-base-dir>/<exec file name>/<id>/root, places the VMM (an own copy) and, for a
 * dynamically linked VMM, its loader and libraries there, joins the network namespace, sets
 * the resource limits, joins the cgroup, enters a new mount namespace and pivots into the
 * jail, creates /dev/kvm, /dev/net/tun, /dev/urandom and /dev/userfaultfd owned by uid:gid,
 * optionally detaches and/or starts a new PID namespace, drops to uid:gid with no
 * supplementary groups and execs `/<exec file name> --id ID [args after --]` with an empty
 * environment and only descriptors 0-2.
 *
 * It links only common/ (never the VMM core). Only this file exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/error.h"
#include "jail_args.h"
#include "jail_cgroup.h"
#include "jail_fs.h"
#include "jail_libs.h"

#define EXIT_OK         0
#define EXIT_ERROR      1
#define EXIT_BAD_CONFIG 152
#define EXIT_BAD_ARGS   153

/* The kernel's fixed device numbers (Documentation/admin-guide/devices.txt); userfaultfd's
 * misc minor is dynamic and read from /proc/misc. */
#define MISC_MAJOR    10
#define KVM_MINOR     232
#define TUN_MINOR     200
#define MEM_MAJOR     1
#define URANDOM_MINOR 9

#if defined(__SANITIZE_ADDRESS__)
#define JAIL_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JAIL_SANITIZER_BUILD 1
#endif
#endif

struct jail {
        struct jail_args a;
        char exec_path[PATH_MAX]; /* the exec file, resolved */
        const char *exec_name;    /* its last component: the jail's folder and the VMM's name */
        char base[PATH_MAX];      /* --chroot-base-dir, resolved */
        char root[PATH_MAX];      /* <base>/<exec name>/<id>/root */
        char pid_name[NAME_MAX + 1];
        char interp[PATH_MAX]; /* the exec file's PT_INTERP; "" when static */
        int exec_fd;
        int root_fd;
        int pid_fd;
        int null_fd;
        bool pid_claimed; /* this process created the pid file and removes it on failure */
        int uffd_minor;   /* -1: no userfaultfd device on this host */
        char *env[4];     /* the VMM's environment (empty but in sanitizer builds), NULL-ended */
        mode_t umask;     /* the caller's, restored for the VMM */
};

static int fail_kind(struct error *err, int e)
{
        if (e == -ELOOP || e == -EXDEV || e == -ENOTDIR)
                err->kind = ERROR_CONFIG; /* a link or a file where the jail needs a dir */
        return e;
}

/* Firecracker's first step: no descriptor but 0, 1 and 2 survives from the caller. */
static int close_inherited(struct error *err)
{
        if (close_range(3, ~0U, 0) != 0)
                return error_set(err, -errno,
                                 "close_range: %s (the jailer needs Linux 5.9 or "
                                 "later)",
                                 strerror(errno));
        return 0;
}

/* The VMM gets an empty environment (Firecracker clears it). A sanitizer build keeps the
 * sanitizers' options (CI's abort_on_error and the like). */
static void take_environment(struct jail *j)
{
#ifdef JAIL_SANITIZER_BUILD
        static const char *const kept[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
        size_t n = 0;

        for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
                const char *v = getenv(kept[i]);
                char *s;
                if (v && asprintf(&s, "%s=%s", kept[i], v) > 0)
                        j->env[n++] = s;
        }
#else
        (void)j;
#endif
        clearenv();
}

/*
 * The sanitizer runtimes read their options (/proc/self/environ), the executable's name and
 * LeakSanitizer's thread list at exit from /proc, which a jail has not: a sanitizer build (a
 * test build, never a release) mounts a procfs at the jail's /proc, showing the PID
 * namespace of the process that mounts it. Release builds leave the jail without /proc, as
 * Firecracker's jailer does.
 */
static int sanitizer_proc(struct error *err)
{
#ifdef JAIL_SANITIZER_BUILD
        if (mkdir("/proc", 0555) != 0 && errno != EEXIST)
                return error_set(err, -errno, "mkdir /proc: %s", strerror(errno));
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
                return error_set(err, -errno, "mounting /proc: %s", strerror(errno));
#else
        (void)err;
#endif
        return 0;
}

static int misc_minor(const char *name)
{
        FILE *f = fopen("/proc/misc", "re");
        char line[128], dev[64];
        unsigned minor;
        int r = -1;

        if (!f)
                return -1;
        while (r < 0 && fgets(line, sizeof(line), f))
                if (sscanf(line, "%u %63s", &minor, dev) == 2 && strcmp(dev, name) == 0)
                        r = (int)minor;
        fclose(f);
        return r;
}

static int resolve_inputs(struct jail *j, struct error *err)
{
        struct jail_args *a = &j->a;
        struct stat st;
        int n;

        if (!realpath(a->exec_file, j->exec_path))
                return error_config(err, "--exec-file %s: %s", a->exec_file, strerror(errno));
        j->exec_fd = open(j->exec_path, O_RDONLY | O_CLOEXEC);
        if (j->exec_fd < 0)
                return error_config(err, "--exec-file %s: %s", j->exec_path, strerror(errno));
        if (fstat(j->exec_fd, &st) != 0 || !S_ISREG(st.st_mode))
                return error_config(err, "--exec-file %s: not a regular file", j->exec_path);
        if (!(st.st_mode & 0111)) /* the copy keeps the mode: it would not run */
                return error_config(err, "--exec-file %s: not executable (mode %04o)", j->exec_path,
                                    (unsigned)(st.st_mode & 07777));
        j->exec_name = strrchr(j->exec_path, '/') + 1;
        if (jail_libs_interp(j->exec_fd, j->interp, sizeof(j->interp), err)) {
                error_prefix(err, "--exec-file %s", j->exec_path);
                return -EINVAL;
        }
        if (!realpath(a->chroot_base, j->base))
                return error_config(err, "--chroot-base-dir %s: %s", a->chroot_base,
                                    strerror(errno));
        if (stat(j->base, &st) != 0 || !S_ISDIR(st.st_mode))
                return error_config(err, "--chroot-base-dir %s: not a directory", j->base);
        n = snprintf(j->root, sizeof(j->root), "%s/%s/%s/root", strcmp(j->base, "/") ? j->base : "",
                     j->exec_name, a->id);
        if (n < 0 || (size_t)n >= sizeof(j->root))
                return error_config(err, "the jail's path is too long");
        n = snprintf(j->pid_name, sizeof(j->pid_name), "%s.pid", j->exec_name);
        if (n < 0 || (size_t)n >= sizeof(j->pid_name))
                return error_config(err, "--exec-file %s: name too long", j->exec_path);
        if (!a->parent_cgroup) {
                a->parent_cgroup = j->exec_name;
                if ((a->nr_cgroups || a->cgroup_version == 2) &&
                    jail_args_check_parent_cgroup(a->parent_cgroup, err)) {
                        error_prefix(err, "the default --parent-cgroup (the exec file's name)");
                        err->kind = ERROR_CONFIG;
                        return -EINVAL;
                }
        }
        return 0;
}

/* <base>/<exec>/<id>/root, the claim on the id, the VMM and what it loads. */
static int build_jail(struct jail *j, struct error *err)
{
        char rel[PATH_MAX];
        struct statvfs vfs;
        struct stat st;
        int base_fd, nr_linked, r;

        base_fd = open(j->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (base_fd < 0)
                return error_config(err, "--chroot-base-dir %s: %s", j->base, strerror(errno));
        snprintf(rel, sizeof(rel), "%s/%s/root", j->exec_name, j->a.id);
        j->root_fd = jail_fs_mkdirs(base_fd, rel, 0755, j->base, err);
        close(base_fd);
        if (j->root_fd < 0)
                return fail_kind(err, j->root_fd);
        if (fstatvfs(j->root_fd, &vfs) == 0 && (vfs.f_flag & ST_NODEV))
                return error_config(err,
                                    "%s is on a file system mounted nodev: the VMM could not "
                                    "open the jail's /dev/kvm; choose another --chroot-base-dir",
                                    j->root);

        /* The pid file claims the id: created exclusively before anything else is placed,
         * so a second jailer with this id is refused before it touches the jail. */
        j->pid_fd = jail_fs_openat(j->root_fd, j->pid_name, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (j->pid_fd == -EEXIST)
                return error_config(err,
                                    "id '%s' is in use: %s/%s exists (a jailer already ran with "
                                    "this id; remove %s/%s/%s once its VMM has ended)",
                                    j->a.id, j->root, j->pid_name, j->base, j->exec_name, j->a.id);
        if (j->pid_fd < 0)
                return fail_kind(err, error_set(err, j->pid_fd, "%s/%s: %s", j->root, j->pid_name,
                                                strerror(-j->pid_fd)));
        j->pid_claimed = true;

        /* An own copy, as Firecracker makes: the VMM shares no file pages with other jails. */
        if (fstat(j->exec_fd, &st) != 0)
                return error_set(err, -errno, "fstat %s: %s", j->exec_path, strerror(errno));
        r = jail_fs_copy(j->exec_fd, j->root_fd, j->exec_name, st.st_mode & 0777, j->a.uid,
                         j->a.gid, err);
        if (r) {
                error_prefix(err, "copying %s into %s", j->exec_path, j->root);
                return fail_kind(err, r);
        }
        r = jail_libs_install(j->interp, j->exec_path, j->root_fd, j->root, &nr_linked, err);
        if (r < 0) {
                error_prefix(err, "--exec-file %s", j->exec_path);
                return fail_kind(err, r);
        }
        j->uffd_minor = misc_minor("userfaultfd");
        return 0;
}

static int join_netns(const char *path, struct error *err)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return error_config(err, "--netns %s: %s", path, strerror(errno));
        if (setns(fd, CLONE_NEWNET) != 0) {
                int e = errno;
                close(fd);
                if (e == EINVAL)
                        return error_config(err, "--netns %s: not a network namespace", path);
                return error_set(err, -e, "--netns %s: setns: %s", path, strerror(e));
        }
        close(fd);
        return 0;
}

static int set_limits(const struct jail_args *a, struct error *err)
{
        struct rlimit rl = {.rlim_cur = a->no_file, .rlim_max = a->no_file};

        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                return error_config(err,
                                    "--resource-limit no-file=%llu: %s (the kernel's most is "
                                    "/proc/sys/fs/nr_open)",
                                    (unsigned long long)a->no_file, strerror(errno));
        if (a->has_fsize) {
                rl.rlim_cur = rl.rlim_max = a->fsize;
                if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
                        return error_config(err, "--resource-limit fsize=%llu: %s",
                                            (unsigned long long)a->fsize, strerror(errno));
        }
        return 0;
}

static int join_cgroup(const struct jail_args *a, struct error *err)
{
        char mount[PATH_MAX];
        int r;

        if (!a->nr_cgroups && a->cgroup_version != 2)
                return 0;
        r = jail_cgroup_find_v2("/proc/mounts", mount, sizeof(mount), err);
        if (r)
                return r;
        if (!a->nr_cgroups) {
                r = jail_cgroup_join_parent(mount, a->parent_cgroup, getpid(), err);
                return r < 0 ? r : 0;
        }
        r = jail_cgroup_check(mount, a->cgroups, a->nr_cgroups, err);
        if (!r)
                r = jail_cgroup_setup(mount, a->parent_cgroup, a->id, a->cgroups, a->nr_cgroups,
                                      getpid(), err);
        return r;
}

/* A private mount namespace whose root is the jail (pivot_root, the old root detached). */
static int enter_jail(struct jail *j, struct error *err)
{
        struct stat want, got;

        if (fstat(j->root_fd, &want) != 0)
                return error_set(err, -errno, "fstat %s: %s", j->root, strerror(errno));
        if (unshare(CLONE_NEWNS) != 0)
                return error_set(err, -errno, "unshare(CLONE_NEWNS): %s", strerror(errno));
        /* Nothing mounted from here on reaches the host's namespace. */
        if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0)
                return error_set(err, -errno, "making / a slave mount: %s", strerror(errno));
        /* pivot_root needs the new root to be a mount point. */
        if (mount(j->root, j->root, NULL, MS_BIND | MS_REC, NULL) != 0)
                return error_set(err, -errno, "bind-mounting %s: %s", j->root, strerror(errno));
        if (chdir(j->root) != 0)
                return error_set(err, -errno, "chdir %s: %s", j->root, strerror(errno));
        /* The path was built from checked components; make sure it still names the jail. */
        if (stat(".", &got) != 0 || got.st_dev != want.st_dev || got.st_ino != want.st_ino)
                return error_set(err, -EXDEV, "%s changed while the jail was built", j->root);
        /* The old root is stacked on "." and detached at once: no directory is needed. */
        if (syscall(SYS_pivot_root, ".", ".") != 0)
                return error_set(err, -errno, "pivot_root %s: %s", j->root, strerror(errno));
        if (umount2(".", MNT_DETACH) != 0)
                return error_set(err, -errno, "detaching the old root: %s", strerror(errno));
        if (chroot(".") != 0 || chdir("/") != 0)
                return error_set(err, -errno, "chroot: %s", strerror(errno));
        return sanitizer_proc(err);
}

/* dfd (a directory of the jail) becomes uid:gid's, mode 0700 (Firecracker's). */
static int own_dir(int dfd, const char *shown, const struct jail_args *a, struct error *err)
{
        if (fchmod(dfd, 0700) != 0 || fchown(dfd, a->uid, a->gid) != 0)
                return error_set(err, -errno, "%s: %s", shown, strerror(errno));
        return 0;
}

/* The character device dfd/name, uid:gid's, mode 0600; through a temporary and a rename,
 * so one left by an earlier run is replaced. */
static int make_node(int dfd, const char *shown, const char *name, unsigned major, unsigned minor,
                     const struct jail_args *a, struct error *err)
{
        char tmp[256];
        int r = 0;

        jail_fs_temp_name(name, tmp, sizeof(tmp));
        if (mknodat(dfd, tmp, S_IFCHR | 0600, makedev(major, minor)) != 0)
                return error_set(err, -errno, "mknod %s/%s: %s", shown, name, strerror(errno));
        if (fchownat(dfd, tmp, a->uid, a->gid, AT_SYMLINK_NOFOLLOW) != 0)
                r = error_set(err, -errno, "chown %s/%s: %s", shown, name, strerror(errno));
        else if (renameat(dfd, tmp, dfd, name) != 0)
                r = error_set(err, -errno, "%s/%s: %s", shown, name, strerror(errno));
        if (r)
                unlinkat(dfd, tmp, 0);
        return r;
}

/* Inside the jail: / /dev /dev/net /run owned by uid:gid, and the device nodes. */
static int furnish_jail(struct jail *j, struct error *err)
{
        const struct jail_args *a = &j->a;
        int root, dev = -1, net = -1, run = -1;
        int r;

        root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return error_set(err, -errno, "/: %s", strerror(errno));
        r = own_dir(root, "/", a, err);
        if (!r && (dev = jail_fs_mkdirs(root, "dev", 0700, "", err)) < 0)
                r = fail_kind(err, dev);
        if (!r && (net = jail_fs_mkdirs(dev, "net", 0700, "/dev", err)) < 0)
                r = fail_kind(err, net);
        if (!r && (run = jail_fs_mkdirs(root, "run", 0700, "", err)) < 0)
                r = fail_kind(err, run);
        if (!r)
                r = own_dir(dev, "/dev", a, err);
        if (!r)
                r = own_dir(net, "/dev/net", a, err);
        if (!r)
                r = own_dir(run, "/run", a, err);
        if (!r)
                r = make_node(dev, "/dev", "kvm", MISC_MAJOR, KVM_MINOR, a, err);
        if (!r)
                r = make_node(net, "/dev/net", "tun", MISC_MAJOR, TUN_MINOR, a, err);
        if (!r && j->uffd_minor >= 0)
                r = make_node(dev, "/dev", "userfaultfd", MISC_MAJOR, (unsigned)j->uffd_minor, a,
                              err);
        if (!r) {
                /* Firecracker's too, and like it only a warning: the VMM reads getrandom(2). */
                struct error warn = {0};
                if (make_node(dev, "/dev", "urandom", MEM_MAJOR, URANDOM_MINOR, a, &warn))
                        fprintf(stderr, "jailer: warning: %s\n", warn.msg);
        }
        close(root);
        if (dev >= 0)
                close(dev);
        if (net >= 0)
                close(net);
        if (run >= 0)
                close(run);
        return r;
}

/* Firecracker's double fork: a new session, no controlling terminal, stdio on /dev/null. */
static int daemonize(struct jail *j, struct error *err)
{
        pid_t pid = fork();

        if (pid < 0)
                return error_set(err, -errno, "fork: %s", strerror(errno));
        if (pid > 0)
                _exit(EXIT_OK);
        if (setsid() < 0)
                return error_set(err, -errno, "setsid: %s", strerror(errno));
        pid = fork();
        if (pid < 0)
                return error_set(err, -errno, "fork: %s", strerror(errno));
        if (pid > 0)
                _exit(EXIT_OK);
        if (dup2(j->null_fd, 0) < 0 || dup2(j->null_fd, 1) < 0 || dup2(j->null_fd, 2) < 0)
                return error_set(err, -errno, "dup2 /dev/null: %s", strerror(errno));
        close(j->null_fd);
        j->null_fd = -1;
        return 0;
}

static int write_pid(struct jail *j, pid_t pid, struct error *err)
{
        int r = dprintf(j->pid_fd, "%d", (int)pid) > 0 ? 0 : -EIO;

        close(j->pid_fd);
        j->pid_fd = -1;
        if (r)
                return error_set(err, r, "writing /%s", j->pid_name);
        return 0;
}

/* Drops to uid:gid and execs the VMM; returns only on failure. */
static int exec_vmm(struct jail *j, struct error *err)
{
        const struct jail_args *a = &j->a;
        char path[NAME_MAX + 2];
        char **argv = calloc((size_t)a->nr_vmm_args + 4, sizeof(*argv));
        int n = 0;

        if (!argv)
                return error_set(err, -ENOMEM, "out of memory");
        snprintf(path, sizeof(path), "/%s", j->exec_name);
        argv[n++] = path;
        argv[n++] = "--id";
        argv[n++] = (char *)a->id;
        for (int i = 0; i < a->nr_vmm_args; i++)
                argv[n++] = a->vmm_args[i];
        if (setgroups(0, NULL) != 0 || setresgid(a->gid, a->gid, a->gid) != 0 ||
            setresuid(a->uid, a->uid, a->uid) != 0) {
                free(argv);
                return error_set(err, -errno, "dropping to uid %u gid %u: %s", (unsigned)a->uid,
                                 (unsigned)a->gid, strerror(errno));
        }
        umask(j->umask);
        /* Every descriptor but 0-2 is close-on-exec already; this covers any a library opened
         * without the flag. */
        (void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        execve(path, argv, j->env);
        free(argv);
        return error_set(err, -errno, "exec %s (in the jail %s): %s", path, j->root,
                         strerror(errno));
}

/* The VMM: this process (its pid in the pid file), or with --new-pid-ns pid 1 of a new PID
 * namespace, whose host pid the parent records before it exits. */
static int launch(struct jail *j, struct error *err)
{
        bool leader;
        pid_t pid;

        if (!j->a.new_pid_ns) {
                int r = write_pid(j, getpid(), err);
                return r ? r : exec_vmm(j, err);
        }
        /* The child leaves the jailer's session if the jailer leads it, so the jailer's exit
         * does not hang up the VMM (Firecracker's rule). */
        leader = !j->a.daemonize && getsid(0) == getpid();
        if (unshare(CLONE_NEWPID) != 0)
                return error_set(err, -errno, "unshare(CLONE_NEWPID): %s", strerror(errno));
        pid = fork();
        if (pid < 0)
                return error_set(err, -errno, "fork: %s", strerror(errno));
        if (pid == 0) {
                close(j->pid_fd);
                j->pid_fd = -1;
                if (leader && setsid() < 0)
                        return error_set(err, -errno, "setsid: %s", strerror(errno));
                if (sanitizer_proc(err)) /* this namespace's pids, over the jailer's */
                        return -EIO;
                return exec_vmm(j, err);
        }
        if (write_pid(j, pid, err)) {
                kill(pid, SIGKILL);
                return -EIO;
        }
        _exit(EXIT_OK);
}

static int fail(struct jail *j, const struct error *err)
{
        fprintf(stderr, "jailer: %s\n", err->msg[0] ? err->msg : "failed");
        if (j->pid_claimed && j->root_fd >= 0)
                unlinkat(j->root_fd, j->pid_name, 0); /* ours: the id is free again */
        return err->kind == ERROR_CONFIG ? EXIT_BAD_CONFIG : EXIT_ERROR;
}

/* What main holds when it returns (the descriptors are the process's: exit closes them). */
static int finish(struct jail *j, int code)
{
        jail_args_free(&j->a);
        for (size_t i = 0; i < sizeof(j->env) / sizeof(j->env[0]); i++)
                free(j->env[i]);
        return code;
}

int main(int argc, char **argv)
{
        struct jail j = {.exec_fd = -1, .root_fd = -1, .pid_fd = -1, .null_fd = -1};
        struct error err = {0};
        int r;

        r = close_inherited(&err);
        take_environment(&j);
        /* Modes below are exact; the VMM gets the caller's umask back. */
        j.umask = umask(0);
        if (r)
                return finish(&j, fail(&j, &err));
        if (jail_args_parse(&j.a, argc, argv, &err) != 0) {
                fprintf(stderr, "jailer: %s\n", err.msg);
                return finish(&j, EXIT_BAD_ARGS);
        }
        if (j.a.help) {
                fputs(jail_args_usage(), stdout);
                return finish(&j, EXIT_OK);
        }
        if (j.a.version) {
                printf("jailer v%s\n", JAILER_VERSION);
                return finish(&j, EXIT_OK);
        }
        r = resolve_inputs(&j, &err);
        if (!r)
                r = build_jail(&j, &err);
        if (!r && j.a.netns)
                r = join_netns(j.a.netns, &err);
        if (!r)
                r = set_limits(&j.a, &err);
        if (!r)
                r = join_cgroup(&j.a, &err);
        if (!r && j.a.daemonize) {
                /* Opened before the pivot: the jail has no /dev/null. */
                j.null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (j.null_fd < 0)
                        r = error_set(&err, -errno, "/dev/null: %s", strerror(errno));
        }
        if (!r)
                r = enter_jail(&j, &err);
        if (!r)
                r = furnish_jail(&j, &err);
        if (!r && j.a.daemonize)
                r = daemonize(&j, &err);
        if (!r)
                r = launch(&j, &err);
        return finish(&j, fail(&j, &err));
}
