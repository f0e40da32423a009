#include "jail_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail_fs.h"

int jail_cgroup_find_v2(const char *mounts_path, char *out, size_t size, struct error *err)
{
        struct mntent ent;
        char buf[4096];
        FILE *f = setmntent(mounts_path, "re");
        int r = -ENOENT;

        if (!f)
                return error_set(err, -errno, "%s: %s", mounts_path, strerror(errno));
        while (getmntent_r(f, &ent, buf, sizeof(buf))) {
                if (strcmp(ent.mnt_type, "cgroup2") != 0)
                        continue;
                if (strlen(ent.mnt_dir) >= size) {
                        r = error_set(err, -ENAMETOOLONG, "cgroup2 mount point too long");
                        break;
                }
                strcpy(out, ent.mnt_dir);
                r = 0;
                break;
        }
        endmntent(f);
        if (r == -ENOENT)
                r = error_config(err, "no cgroup v2 hierarchy is mounted (no cgroup2 line in %s)",
                                 mounts_path);
        return r;
}

/* Reads a small cgroupfs file beneath dfd into buf (NUL-terminated, trailing newline cut). */
static int read_text(int dfd, const char *name, char *buf, size_t size)
{
        int fd = jail_fs_openat(dfd, name, O_RDONLY, 0);
        ssize_t n;

        if (fd < 0)
                return fd;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -errno;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                n--;
        buf[n] = '\0';
        return 0;
}

/* One write of text to an existing file dfd/name (cgroupfs takes a value per write). */
static int write_text(int dfd, const char *name, const char *text, const char *shown,
                      struct error *err)
{
        size_t len = strlen(text);
        ssize_t n;
        int fd = jail_fs_openat(dfd, name, O_WRONLY, 0);

        if (fd == -ENOENT)
                return error_config(err, "cgroup file %s/%s does not exist", shown, name);
        if (fd < 0)
                return error_set(err, fd, "%s/%s: %s", shown, name, strerror(-fd));
        n = write(fd, text, len);
        if (n < 0) {
                int e = errno;
                close(fd);
                if (e == EINVAL || e == ERANGE || e == EOVERFLOW || e == ENOENT)
                        return error_config(err, "%s/%s: the kernel refused '%.*s': %s", shown,
                                            name, (int)strcspn(text, "\n"), text, strerror(e));
                return error_set(err, -e, "writing '%.*s' to %s/%s: %s", (int)strcspn(text, "\n"),
                                 text, shown, name, strerror(e));
        }
        close(fd);
        if ((size_t)n != len)
                return error_set(err, -EIO, "%s/%s: short write", shown, name);
        return 0;
}

static bool has_word(const char *list, const char *word)
{
        size_t wl = strlen(word);

        for (const char *p = list; *p;) {
                size_t l = strcspn(p, " \n");
                if (l == wl && memcmp(p, word, wl) == 0)
                        return true;
                p += l;
                p += strspn(p, " \n");
        }
        return false;
}

static int open_mount(const char *mount, struct error *err)
{
        int fd = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return error_set(err, -errno, "cgroup v2 mount %s: %s", mount, strerror(errno));
        return fd;
}

int jail_cgroup_check(const char *mount, const struct jail_cgroup_setting *s, size_t n,
                      struct error *err)
{
        char list[4096];
        int mfd = open_mount(mount, err);
        int r;

        if (mfd < 0)
                return mfd;
        r = read_text(mfd, "cgroup.controllers", list, sizeof(list));
        close(mfd);
        if (r)
                return error_set(err, r, "%s/cgroup.controllers: %s", mount, strerror(-r));
        for (size_t i = 0; i < n; i++)
                if (!has_word(list, s[i].controller))
                        return error_config(err,
                                            "--cgroup %s: controller '%s' is not available in the "
                                            "cgroup v2 hierarchy %s (its cgroup.controllers: "
                                            "\"%s\")",
                                            s[i].file, s[i].controller, mount, list);
        return 0;
}

/* "+controller" into dfd's cgroup.subtree_control, once per distinct controller. */
static int enable_controllers(int dfd, const char *shown, const struct jail_cgroup_setting *s,
                              size_t n, struct error *err)
{
        for (size_t i = 0; i < n; i++) {
                char word[JAIL_CGROUP_FILE_MAX + 2];
                bool seen = false;
                int r;

                for (size_t j = 0; j < i && !seen; j++)
                        seen = strcmp(s[j].controller, s[i].controller) == 0;
                if (seen)
                        continue;
                snprintf(word, sizeof(word), "+%s", s[i].controller);
                r = write_text(dfd, "cgroup.subtree_control", word, shown, err);
                if (r)
                        return r;
        }
        return 0;
}

/* Opens (creating it) the cgroup dfd/name, extending shown. */
static int enter(int dfd, const char *name, char *shown, size_t size, struct error *err)
{
        size_t l = strlen(shown);
        int fd;

        snprintf(shown + l, size - l, "/%s", name);
        if (mkdirat(dfd, name, 0755) != 0 && errno != EEXIST)
                return error_set(err, -errno, "creating cgroup %s: %s", shown, strerror(errno));
        fd = jail_fs_openat(dfd, name, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return error_set(err, fd, "cgroup %s: %s", shown, strerror(-fd));
        return fd;
}

int jail_cgroup_setup(const char *mount, const char *parent, const char *id,
                      const struct jail_cgroup_setting *s, size_t n, pid_t pid, struct error *err)
{
        char shown[PATH_MAX];
        char comp[256];
        char pidtext[32];
        const char *p = parent;
        int fd = open_mount(mount, err);
        int r = 0;

        if (fd < 0)
                return fd;
        snprintf(shown, sizeof(shown), "%s", mount);
        /* The mount and every cgroup of <parent> hand the controllers down. */
        while (!r && *p) {
                size_t len = strcspn(p, "/");
                int next;

                r = enable_controllers(fd, shown, s, n, err);
                if (r)
                        break;
                if (len >= sizeof(comp)) {
                        r = error_set(err, -ENAMETOOLONG, "--parent-cgroup component too long");
                        break;
                }
                memcpy(comp, p, len);
                comp[len] = '\0';
                next = enter(fd, comp, shown, sizeof(shown), err);
                close(fd);
                if (next < 0)
                        return next;
                fd = next;
                p += len;
                p += *p == '/';
        }
        if (!r)
                r = enable_controllers(fd, shown, s, n, err);
        if (!r) {
                int leaf = enter(fd, id, shown, sizeof(shown), err);
                close(fd);
                if (leaf < 0)
                        return leaf;
                fd = leaf;
        }
        for (size_t i = 0; i < n && !r; i++) {
                char line[JAIL_CGROUP_VALUE_MAX + 2];
                snprintf(line, sizeof(line), "%s\n", s[i].value);
                r = write_text(fd, s[i].file, line, shown, err);
        }
        if (!r) {
                snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
                r = write_text(fd, "cgroup.procs", pidtext, shown, err);
        }
        close(fd);
        return r;
}

int jail_cgroup_join_parent(const char *mount, const char *parent, pid_t pid, struct error *err)
{
        char shown[PATH_MAX];
        char pidtext[32];
        int mfd = open_mount(mount, err);
        int fd, r;

        if (mfd < 0)
                return mfd;
        snprintf(shown, sizeof(shown), "%s/%s", mount, parent);
        fd = jail_fs_openat(mfd, parent, O_RDONLY | O_DIRECTORY, 0);
        close(mfd);
        if (fd == -ENOENT)
                return 0; /* Firecracker's rule: no such cgroup, no move */
        if (fd < 0)
                return error_set(err, fd, "cgroup %s: %s", shown, strerror(-fd));
        snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
        r = write_text(fd, "cgroup.procs", pidtext, shown, err);
        close(fd);
        if (r) {
                error_prefix(err, "moving the jailer into cgroup %s", shown);
                /* Firecracker's hint: a cgroup with domain controllers in its subtree_control
                 * takes no processes (the "no internal process" rule). */
                if (err) {
                        size_t l = strlen(err->msg);
                        snprintf(err->msg + l, sizeof(err->msg) - l,
                                 " (to create a child cgroup under it instead, pass --cgroup "
                                 "settings)");
                }
                return r;
        }
        return 1;
}
