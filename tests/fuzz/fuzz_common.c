#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

/* Newer than Debian 12's kernel headers (Landlock ABI 3, Linux 6.2). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ull << 14)
#endif

uint8_t fz_u8(struct fz *f)
{
        uint8_t v = 0;

        fz_copy(f, &v, 1);
        return v;
}

uint16_t fz_u16(struct fz *f)
{
        uint8_t b[2];

        fz_copy(f, b, sizeof(b));
        return (uint16_t)(b[0] | b[1] << 8);
}

uint32_t fz_u32(struct fz *f)
{
        uint8_t b[4];

        fz_copy(f, b, sizeof(b));
        return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint64_t fz_u64(struct fz *f)
{
        uint64_t lo = fz_u32(f);

        return lo | (uint64_t)fz_u32(f) << 32;
}

uint32_t fz_below(struct fz *f, uint32_t n)
{
        if (n == 0)
                return 0;
        if (n <= 256)
                return fz_u8(f) % n;
        if (n <= 65536)
                return fz_u16(f) % n;
        return fz_u32(f) % n;
}

const uint8_t *fz_bytes(struct fz *f, size_t max, size_t *len)
{
        size_t want = max < 256 ? fz_u8(f) : fz_u16(f);
        const uint8_t *p = f->p;

        if (want > max)
                want %= max + 1;
        if (want > f->n)
                want = f->n;
        f->p += want;
        f->n -= want;
        *len = want;
        return p;
}

void fz_copy(struct fz *f, void *out, size_t len)
{
        size_t n = len < f->n ? len : f->n;

        memcpy(out, f->p, n);
        memset((uint8_t *)out + n, 0, len - n);
        f->p += n;
        f->n -= n;
}

static void null_sink(void *opaque, enum log_level level, const char *line, size_t len)
{
        (void)opaque;
        (void)level;
        (void)line;
        (void)len;
}

void fz_quiet_log(void)
{
        const char *keep = getenv("VMM_FUZZ_LOG");

        if (keep) {
                /* Debugging a target: keep the lines ("debug": all of them). */
                if (strcmp(keep, "debug") == 0)
                        log_set_level(LOG_LEVEL_DEBUG);
                return;
        }
        log_set_level(LOG_LEVEL_INFO);
        log_set_sink(null_sink, NULL);
}

/* ---- the sandbox ---- */

#define MAX_WRITABLE 64

static char scratch[PATH_MAX];
static char **volatile sandbox_argv; /* the rewritten argv (kept reachable: not a leak) */
static const char *writable[MAX_WRITABLE];
static unsigned nr_writable;

static void allow(const char *dir)
{
        if (!dir || strcmp(dir, "/") == 0) {
                fprintf(stderr, "fuzz sandbox: not making / writable\n");
                return;
        }
        if (nr_writable < MAX_WRITABLE)
                writable[nr_writable++] = dir;
}

static char *absolute(const char *cwd, const char *path)
{
        char *out;

        if (path[0] == '/')
                return strdup(path);
        if (asprintf(&out, "%s/%s", cwd, path) < 0)
                return NULL;
        return out;
}

static char *dir_of(const char *abs)
{
        char *d = strdup(abs);
        char *slash = d ? strrchr(d, '/') : NULL;

        if (slash)
                *(slash == d ? slash + 1 : slash) = '\0';
        return d;
}

/* Flags whose value is a path libFuzzer opens after LLVMFuzzerInitialize (so after the
 * working directory changed); those it writes are also made writable. */
static const struct {
        const char *flag;
        bool written;
} path_flags[] = {
    {"-artifact_prefix=", true},
    {"-exact_artifact_path=", true},
    {"-merge_control_file=", true},
    {"-features_dir=", true},
    {"-dict=", false},
    {"-stop_file=", false},
    {"-mutation_graph_file=", true},
};

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        remove(path);
        return 0;
}

static int remove_child(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        if (ftw->level > 0)
                remove(path);
        return 0;
}

void fz_scratch_clean(void)
{
        if (scratch[0])
                nftw(scratch, remove_child, 16, FTW_DEPTH | FTW_PHYS);
}

/* The sandbox forbids removing the scratch directory itself, and a crashing target never
 * runs exit handlers: a child made before the sandbox removes it once the target is gone
 * (its end of a pipe reads EOF). */
static void remove_scratch_later(void)
{
        int p[2];
        char c;

        if (pipe2(p, O_CLOEXEC))
                return;
        switch (fork()) {
        case -1:
                close(p[0]);
                close(p[1]);
                return;
        case 0:
                close(p[1]);
                while (read(p[0], &c, 1) > 0)
                        ;
                nftw(scratch, remove_one, 16, FTW_DEPTH | FTW_PHYS);
                _exit(0);
        default:
                close(p[0]); /* p[1] stays open until the target ends */
                return;
        }
}

static int landlock(void)
{
        uint64_t handled = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                           LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                           LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                           LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                           LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        struct landlock_ruleset_attr attr;
        int rs, fd;

        if (abi < 1)
                return -1;
        if (abi >= 2)
                handled |= LANDLOCK_ACCESS_FS_REFER;
        if (abi >= 3)
                handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
        attr = (struct landlock_ruleset_attr){.handled_access_fs = handled};
        rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
        if (rs < 0)
                return -1;
        for (unsigned i = 0; i < nr_writable; i++) {
                struct landlock_path_beneath_attr pb = {.allowed_access = handled};

                fd = open(writable[i], O_PATH | O_CLOEXEC);
                if (fd < 0)
                        continue;
                pb.parent_fd = fd;
                if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0))
                        fprintf(stderr, "fuzz sandbox: cannot allow %s: %s\n", writable[i],
                                strerror(errno));
                close(fd);
        }
        /* Writes to /dev/null (a file: only file rights). */
        fd = open("/dev/null", O_PATH | O_CLOEXEC);
        if (fd >= 0) {
                struct landlock_path_beneath_attr pb = {
                    .allowed_access = LANDLOCK_ACCESS_FS_WRITE_FILE, .parent_fd = fd};
                syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
                close(fd);
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_landlock_restrict_self, rs, 0)) {
                close(rs);
                return -1;
        }
        close(rs);
        return 0;
}

const char *fz_sandbox(int *argc, char ***argv)
{
        static char cwd[PATH_MAX];
        const char *tmp = getenv("TMPDIR");
        bool have_artifact_prefix = false;
        char **out;
        int n = 0;

        if (scratch[0])
                return scratch;
        if (!getcwd(cwd, sizeof(cwd)) ||
            snprintf(scratch, sizeof(scratch), "%s/vmm-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp") >=
                (int)sizeof(scratch) ||
            !mkdtemp(scratch)) {
                perror("fuzz sandbox");
                exit(1);
        }
        remove_scratch_later();
        allow(scratch);
        out = sandbox_argv = calloc((size_t)*argc + 2, sizeof(*out));
        if (!out)
                exit(1);
        for (int i = 0; i < *argc; i++) {
                char *a = (*argv)[i];
                bool done = false;

                if (i == 0 || a[0] != '-') {
                        struct stat st;

                        if (i > 0) {
                                a = absolute(cwd, a);
                                if (a && stat(a, &st) == 0 && S_ISDIR(st.st_mode))
                                        allow(a);
                        }
                        out[n++] = a;
                        continue;
                }
                for (size_t k = 0; k < sizeof(path_flags) / sizeof(path_flags[0]) && !done; k++) {
                        size_t fl = strlen(path_flags[k].flag);
                        char *v, *arg;

                        if (strncmp(a, path_flags[k].flag, fl) != 0)
                                continue;
                        done = true;
                        v = absolute(cwd, a + fl);
                        if (!v || asprintf(&arg, "%s%s", path_flags[k].flag, v) < 0)
                                exit(1);
                        if (path_flags[k].written)
                                allow(dir_of(v));
                        if (k == 0)
                                have_artifact_prefix = true;
                        free(v);
                        a = arg;
                }
                out[n++] = a;
        }
        if (!have_artifact_prefix) {
                /* Crash reproducers still land where libFuzzer would put them. */
                if (asprintf(&out[n], "-artifact_prefix=%s/", cwd) < 0)
                        exit(1);
                n++;
                allow(cwd);
        }
        out[n] = NULL;
        *argc = n;
        *argv = out;
        if (chdir(scratch)) {
                perror("fuzz sandbox: chdir");
                exit(1);
        }
        if (landlock()) {
                if (!getenv("VMM_FUZZ_UNSANDBOXED")) {
                        fprintf(stderr,
                                "fuzz sandbox: Landlock is not available (%s); this target's "
                                "inputs name host paths it may create or write. Set "
                                "VMM_FUZZ_UNSANDBOXED=1 to run it anyway.\n",
                                strerror(errno));
                        exit(1);
                }
                fprintf(stderr, "fuzz sandbox: running WITHOUT Landlock\n");
        }
        return scratch;
}
