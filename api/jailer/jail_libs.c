#include "jail_libs.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail_fs.h"

#define LIST_MAX (64 * 1024) /* a loader's --list output larger than this is refused */

int jail_libs_interp(int fd, char *out, size_t size, struct error *err)
{
        Elf64_Ehdr eh;

        out[0] = '\0';
        if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
            memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
                return error_config(err, "not an ELF executable");
        if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
            (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
                return error_config(err, "not a 64-bit little-endian ELF executable");
        if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum >= PN_XNUM)
                return error_config(err, "malformed ELF program headers");
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                uint64_t at = eh.e_phoff + (uint64_t)i * sizeof(ph);

                if (at < eh.e_phoff || at > INT64_MAX ||
                    pread(fd, &ph, sizeof(ph), (off_t)at) != (ssize_t)sizeof(ph))
                        return error_config(err, "malformed ELF program headers");
                if (ph.p_type != PT_INTERP)
                        continue;
                if (ph.p_filesz < 2 || ph.p_filesz > size || ph.p_offset > INT64_MAX ||
                    pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
                    out[ph.p_filesz - 1] != '\0' || strlen(out) != ph.p_filesz - 1 ||
                    out[0] != '/') {
                        out[0] = '\0';
                        return error_config(err, "malformed ELF program interpreter");
                }
                return 0;
        }
        return 0;
}

/* Absolute, no empty, "." or ".." component, not "/" itself. */
static bool normalised(const char *p)
{
        if (p[0] != '/' || !p[1])
                return false;
        for (const char *c = p; *c; c++) {
                if (*c != '/')
                        continue;
                if (c[1] == '/' || !c[1])
                        return false;
                if (c[1] == '.' && (c[2] == '/' || !c[2]))
                        return false;
                if (c[1] == '.' && c[2] == '.' && (c[3] == '/' || !c[3]))
                        return false;
        }
        return true;
}

static int add_path(const char **paths, int n, size_t max, const char *p, struct error *err)
{
        if (!normalised(p) || strlen(p) >= 4096)
                return error_set(err, -EINVAL, "the loader printed an unusable path '%.200s'", p);
        for (int i = 0; i < n; i++)
                if (strcmp(paths[i], p) == 0)
                        return n;
        if ((size_t)n >= max)
                return error_set(err, -E2BIG, "more than %zu shared objects", max);
        paths[n] = p;
        return n + 1;
}

int jail_libs_parse_list(char *text, const char **paths, size_t max, struct error *err)
{
        char *save = NULL;
        int n = 0;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *arrow, *path, *paren;

                line += strspn(line, " \t");
                arrow = strstr(line, " => ");
                path = arrow ? arrow + 4 : line;
                if (arrow && strncmp(path, "not found", 9) == 0)
                        return error_config(err, "the dynamic loader cannot find %.*s",
                                            (int)(arrow - line), line);
                if (path[0] != '/')
                        continue; /* linux-vdso.so.1 (0x...): the kernel's, no file */
                paren = strstr(path, " (");
                if (paren)
                        *paren = '\0';
                n = add_path(paths, n, max, path, err);
                if (n < 0)
                        return n;
        }
        return n;
}

/* Runs `interp --list exec` with an empty environment; its standard output in *out. */
static int run_list(const char *interp, const char *exec, char **out, struct error *err)
{
        char *argv[] = {(char *)interp, "--list", (char *)exec, NULL};
        char *envp[] = {NULL};
        posix_spawn_file_actions_t fa;
        size_t len = 0;
        char *buf;
        int p[2];
        pid_t pid;
        int status;
        int r;

        buf = malloc(LIST_MAX + 1);
        if (!buf)
                return error_set(err, -ENOMEM, "out of memory");
        if (pipe2(p, O_CLOEXEC) != 0) {
                free(buf);
                return error_set(err, -errno, "pipe: %s", strerror(errno));
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        r = posix_spawn(&pid, interp, &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (r) {
                close(p[0]);
                free(buf);
                return error_set(err, -r, "running %s: %s", interp, strerror(r));
        }
        for (;;) {
                ssize_t n = read(p[0], buf + len, LIST_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (len == LIST_MAX)
                        break;
        }
        close(p[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        buf[len] = '\0';
        if (len == LIST_MAX) {
                free(buf);
                return error_set(err, -E2BIG, "%s --list printed more than %d bytes", interp,
                                 LIST_MAX);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                free(buf);
                return error_config(err,
                                    "%s --list %s failed (status 0x%x): the loader cannot "
                                    "resolve the exec file's libraries",
                                    interp, exec, (unsigned)status);
        }
        *out = buf;
        return 0;
}

/* One object at its host path, placed at the same path beneath root_fd. */
static int place(const char *path, int root_fd, const char *shown_root, bool *linked,
                 struct error *err)
{
        const char *base = strrchr(path, '/') + 1;
        size_t dlen = (size_t)(base - path); /* "/dir/" */
        int dfd = root_fd;
        int src;
        int r;

        if (dlen > 1) {
                char dir[4096]; /* "dir", relative to the jail's root */
                memcpy(dir, path + 1, dlen - 2);
                dir[dlen - 2] = '\0';
                dfd = jail_fs_mkdirs(root_fd, dir, 0755, shown_root, err);
                if (dfd < 0)
                        return dfd;
        }
        src = open(path, O_RDONLY | O_CLOEXEC);
        if (src < 0) {
                r = error_set(err, -errno, "%s: %s", path, strerror(errno));
        } else {
                r = jail_fs_link_or_copy(src, dfd, base, linked, err);
                if (r)
                        error_prefix(err, "%s", path);
                close(src);
        }
        if (dfd != root_fd)
                close(dfd);
        return r;
}

int jail_libs_install(const char *interp, const char *exec_path, int root_fd,
                      const char *shown_root, int *nr_linked, struct error *err)
{
        const char *paths[JAIL_LIBS_MAX];
        char *text = NULL;
        int n, r;

        *nr_linked = 0;
        if (!interp[0])
                return 0;
        r = run_list(interp, exec_path, &text, err);
        if (r)
                return r;
        n = jail_libs_parse_list(text, paths, JAIL_LIBS_MAX, err);
        if (n >= 0)
                n = add_path(paths, n, JAIL_LIBS_MAX, interp, err); /* listed, but be sure */
        for (int i = 0; i < n && !r; i++) {
                bool linked;
                r = place(paths[i], root_fd, shown_root, &linked, err);
                *nr_linked += linked;
        }
        free(text);
        return n < 0 ? n : r ? r : n;
}
