/*
 * bench/density: host memory for N idle guests, side by side in one run.
 *
 *     build/bench/density [BUILD_DIR] [N] [TOUCHED_MIB]
 *
 * The balloon's free page reporting and hinting: N `vmm` processes (default 8) each boot
 * the probe's `freepage-idle` scenario with 64 MiB of RAM: the guest writes TOUCHED_MIB
 * (default 32) of memory, as a workload that has since freed it would leave it, and idles.
 * Three ways, one after the other:
 *
 *   none       a balloon without free page features: the freed memory stays resident;
 *   reporting  free_page_reporting: the guest reports the memory before it says ready;
 *   hinting    free_page_hinting: once every guest is ready, the host starts a hinting run
 *              in each (PATCH /balloon/hinting/start) and waits for the guests' answers.
 *
 * For each: the summed resident memory (VmRSS) and proportional set size (Pss of
 * smaps_rollup) of the N processes once every guest is idle, per guest, and against `none`.
 *
 * Then storage sharing: an image of IMAGE_MIB (default 16) of random bytes, read whole by
 * each of the N guests (64 MiB of RAM each), two ways:
 *
 *   pmem   one read-only virtio-pmem image shared by all (`--pmem path=IMAGE,ro`); the
 *          probe's `pmem-idle` reads a word of every page of the window: the guests' pages
 *          are the host's page cache of the one file, mapped N times (PSS splits them);
 *   block  N copies of the image on read-only virtio-blk drives; the probe's `blk-cache`
 *          reads each whole drive into guest RAM (what a guest's page cache would hold).
 *
 * For each: the summed PSS of the N processes, the host page cache the image files hold
 * (mincore; the files are dropped from the cache first), and the host memory they cost
 * together: for pmem the cache is what the guests map, already in their PSS, so PSS alone;
 * for block the guests' copies are their own RAM, and the host's cache of each copy comes
 * on top.
 *
 *     build/bench/density [BUILD_DIR] [N] [TOUCHED_MIB] [IMAGE_MIB]
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_GUESTS 64
#define GUEST_MIB  64
#define TIMEOUT_MS 120000
#define READY      "probe: freepage-idle ready\n"
#define HINTED     "probe: freepage-idle hinted"

struct guest {
        pid_t pid;
        int out; /* the guest console (the VMM's stdout) */
        char buf[8192];
        size_t len;
        char sock[108]; /* sun_path */
};

static char vmm[PATH_MAX], probe[PATH_MAX], dir[64];

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Starts guest i: the probe with cmdline, and one device option (`--balloon SPEC`, ...). */
static int start(struct guest *g, unsigned i, const char *cmdline, const char *opt,
                 const char *opt_arg)
{
        char mem[16];
        int out[2];

        snprintf(g->sock, sizeof(g->sock), "%s/guest%u.sock", dir, i);
        unlink(g->sock);
        snprintf(mem, sizeof(mem), "%u", GUEST_MIB);
        if (pipe(out))
                return -errno;
        g->len = 0;
        g->pid = fork();
        if (g->pid < 0)
                return -errno;
        if (g->pid == 0) {
                int null = open("/dev/null", O_RDWR);

                dup2(null, 0);
                dup2(out[1], 1);
                dup2(null, 2);
                execl(vmm, vmm, "--kernel", probe, "--cmdline", cmdline, "--mem", mem, opt, opt_arg,
                      "--api-sock", g->sock, "--no-serial-in", "--level", "Error", (char *)NULL);
                _exit(127);
        }
        close(out[1]);
        g->out = out[0];
        return 0;
}

/* Reads the consoles until every guest printed needle (or one ends, or the time is up). */
static int wait_all(struct guest *g, unsigned n, const char *needle)
{
        double deadline = now_ms() + TIMEOUT_MS;

        for (;;) {
                struct pollfd p[MAX_GUESTS];
                unsigned waiting = 0;

                for (unsigned i = 0; i < n; i++) {
                        g[i].buf[g[i].len] = '\0';
                        if (!strstr(g[i].buf, needle))
                                p[waiting++] = (struct pollfd){.fd = g[i].out, .events = POLLIN};
                }
                if (!waiting)
                        return 0;
                if (now_ms() > deadline || poll(p, waiting, 1000) < 0)
                        return -ETIMEDOUT;
                for (unsigned k = 0; k < waiting; k++) {
                        struct guest *x = NULL;
                        ssize_t r;

                        if (!(p[k].revents & (POLLIN | POLLHUP)))
                                continue;
                        for (unsigned i = 0; i < n; i++)
                                if (g[i].out == p[k].fd)
                                        x = &g[i];
                        if (x->len + 1 >= sizeof(x->buf))
                                x->len = 0; /* only the latest output matters */
                        r = read(x->out, x->buf + x->len, sizeof(x->buf) - 1 - x->len);
                        if (r <= 0) {
                                fprintf(stderr, "density: guest %d ended: %.*s\n", (int)x->pid,
                                        (int)x->len, x->buf);
                                return -EPIPE;
                        }
                        x->len += (size_t)r;
                }
        }
}

/* PATCH /balloon/hinting/start with no body (acknowledge_on_stop: true); 0 on a 204. */
static int start_hinting(const struct guest *g)
{
        static const char req[] = "PATCH /balloon/hinting/start HTTP/1.1\r\nHost: localhost\r\n"
                                  "Content-Length: 0\r\n\r\n";
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        char answer[512];
        ssize_t r;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", g->sock);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
            write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
                close(fd);
                return -errno;
        }
        r = read(fd, answer, sizeof(answer) - 1);
        close(fd);
        if (r <= 0)
                return -EIO;
        answer[r] = '\0';
        if (strncmp(answer, "HTTP/1.1 204", 12) != 0) {
                fprintf(stderr, "density: hinting start answered: %s\n", answer);
                return -EIO;
        }
        return 0;
}

/* A "Key:   N kB" line of a /proc file, in KiB (0 when absent). */
static unsigned long long proc_kib(pid_t pid, const char *file, const char *key)
{
        char path[64], line[256];
        unsigned long long v = 0;
        size_t klen = strlen(key);
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
                        v = strtoull(line + klen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static void stop_all(struct guest *g, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                if (g[i].pid > 0) {
                        kill(g[i].pid, SIGKILL);
                        waitpid(g[i].pid, NULL, 0);
                        close(g[i].out);
                        unlink(g[i].sock);
                }
                g[i].pid = 0;
        }
}

struct result {
        const char *name;
        double rss_mib, pss_mib, seconds;
};

/* Starts n guests (guest i with optargs[i]), waits for ready in each (and a hinting run
 * when hint), then sums their RSS and PSS. */
static int measure(const char *name, const char *cmdline, const char *opt,
                   const char *const *optargs, const char *ready, bool hint, unsigned n,
                   struct result *res)
{
        static struct guest g[MAX_GUESTS];
        unsigned long long rss = 0, pss = 0;
        double t0 = now_ms();
        int r = 0;

        memset(g, 0, sizeof(g));
        for (unsigned i = 0; i < n && !r; i++)
                r = start(&g[i], i, cmdline, opt, optargs[i]);
        if (!r)
                r = wait_all(g, n, ready);
        for (unsigned i = 0; hint && i < n && !r; i++)
                r = start_hinting(&g[i]);
        if (!r && hint)
                r = wait_all(g, n, HINTED);
        if (!r) {
                for (unsigned i = 0; i < n; i++) {
                        rss += proc_kib(g[i].pid, "status", "VmRSS");
                        pss += proc_kib(g[i].pid, "smaps_rollup", "Pss");
                }
                *res = (struct result){name, (double)rss / 1024, (double)pss / 1024,
                                       (now_ms() - t0) / 1e3};
        } else {
                fprintf(stderr, "density: %s: %s\n", name, strerror(-r));
        }
        stop_all(g, n);
        return r;
}

/* ---- storage sharing ---- */

/* path: mib MiB of random bytes (a copy of from when given), dropped from the page cache. */
static int make_image(const char *path, unsigned mib, const char *from)
{
        static char buf[1 << 20];
        int in = from ? open(from, O_RDONLY | O_CLOEXEC) : open("/dev/urandom", O_RDONLY);
        int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int r = in < 0 || out < 0 ? -errno : 0;

        for (unsigned i = 0; !r && i < mib; i++) {
                size_t got = 0;

                while (!r && got < sizeof(buf)) {
                        ssize_t k = read(in, buf + got, sizeof(buf) - got);

                        r = k > 0 ? 0 : k == 0 ? -EIO : -errno;
                        got += k > 0 ? (size_t)k : 0;
                }
                if (!r && write(out, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
                        r = -EIO;
        }
        if (!r && (fsync(out) || posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED)))
                r = -errno;
        if (in >= 0)
                close(in);
        if (out >= 0)
                close(out);
        return r;
}

/* The bytes of path in the host's page cache. */
static unsigned long long cached_kib(const char *path)
{
        unsigned long long pages = 0;
        struct stat st;
        unsigned char *vec;
        void *p;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) || st.st_size == 0) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return 0;
        vec = malloc(((size_t)st.st_size + 4095) / 4096);
        if (vec && mincore(p, (size_t)st.st_size, vec) == 0)
                for (size_t i = 0; i < ((size_t)st.st_size + 4095) / 4096; i++)
                        pages += vec[i] & 1;
        free(vec);
        munmap(p, (size_t)st.st_size);
        return pages * 4;
}

static void drop_cache(const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd >= 0) {
                posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
                close(fd);
        }
}

struct storage_result {
        double pss_mib, cache_mib, host_mib, seconds;
};

static int storage(unsigned n, unsigned image_mib, struct storage_result res[2])
{
        static char paths[MAX_GUESTS][96], args[MAX_GUESTS][128];
        const char *optargs[MAX_GUESTS];
        char image[96];
        struct result pm, bl;
        unsigned long long cache = 0;
        int r;

        snprintf(image, sizeof(image), "%s/image", dir);
        r = make_image(image, image_mib, NULL);
        for (unsigned i = 0; !r && i < n; i++) {
                snprintf(paths[i], sizeof(paths[i]), "%s/copy%u", dir, i);
                r = make_image(paths[i], image_mib, image);
        }
        if (r) {
                fprintf(stderr, "density: images: %s\n", strerror(-r));
                goto out;
        }
        drop_cache(image);
        for (unsigned i = 0; i < n; i++) {
                snprintf(args[i], sizeof(args[i]), "path=%.95s,ro", image);
                optargs[i] = args[i];
        }
        r = measure("pmem", "console=ttyS0 probe=pmem-idle", "--pmem", optargs,
                    "probe: pmem-idle ready", false, n, &pm);
        /* measure() ended the guests: what they left in the cache is what they read. */
        if (!r) {
                cache = cached_kib(image);
                res[0] = (struct storage_result){pm.pss_mib, (double)cache / 1024, pm.pss_mib,
                                                 pm.seconds};
        }
        for (unsigned i = 0; !r && i < n; i++) {
                snprintf(args[i], sizeof(args[i]), "path=%.95s,ro", paths[i]);
                optargs[i] = args[i];
        }
        if (!r)
                r = measure("block", "console=ttyS0 probe=blk-cache", "--drive", optargs,
                            "probe: blk-cache ready", false, n, &bl);
        if (!r) {
                cache = 0;
                for (unsigned i = 0; i < n; i++)
                        cache += cached_kib(paths[i]);
                res[1] = (struct storage_result){bl.pss_mib, (double)cache / 1024,
                                                 bl.pss_mib + (double)cache / 1024, bl.seconds};
        }
out:
        unlink(image);
        for (unsigned i = 0; i < n; i++)
                unlink(paths[i]);
        return r;
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
        unsigned touched = argc > 3 ? (unsigned)atoi(argv[3]) : 32;
        unsigned image_mib = argc > 4 ? (unsigned)atoi(argv[4]) : 16;
        struct result res[3];
        struct storage_result st[2] = {0};
        static const struct {
                const char *name, *balloon;
                bool hint;
        } modes[] = {
            {"none", "0", false},
            {"reporting", "0,free-page-reporting", false},
            {"hinting", "0,free-page-hinting", true},
        };
        char cmdline[128];

        if (n < 1 || n > MAX_GUESTS || touched < 1 || touched > GUEST_MIB - 16 || image_mib < 1 ||
            image_mib > (GUEST_MIB - 16) / 2) {
                fprintf(stderr,
                        "usage: %s [BUILD_DIR] [N 1..%d] [TOUCHED_MIB 1..%d] [IMAGE_MIB 1..%d]\n",
                        argv[0], MAX_GUESTS, GUEST_MIB - 16, (GUEST_MIB - 16) / 2);
                return 2;
        }
        snprintf(vmm, sizeof(vmm), "%s/vmm", build);
        snprintf(probe, sizeof(probe), "%s/tests/guest/probe.elf", build);
        if (access(vmm, X_OK) || access(probe, R_OK)) {
                fprintf(stderr, "density: %s or %s missing (build first)\n", vmm, probe);
                return 1;
        }
        snprintf(dir, sizeof(dir), "/tmp/vmm-density.XXXXXX");
        if (!mkdtemp(dir)) {
                perror("density: mkdtemp");
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        snprintf(cmdline, sizeof(cmdline), "console=ttyS0 probe=freepage-idle probe.fp_mib=%u",
                 touched);
        for (unsigned m = 0; m < 3; m++) {
                const char *optargs[MAX_GUESTS];

                for (unsigned i = 0; i < n; i++)
                        optargs[i] = modes[m].balloon;
                if (measure(modes[m].name, cmdline, "--balloon", optargs, READY, modes[m].hint, n,
                            &res[m])) {
                        rmdir(dir);
                        return 1;
                }
        }
        if (storage(n, image_mib, st)) {
                rmdir(dir);
                return 1;
        }
        rmdir(dir);
        printf("%u idle probe guests (%u MiB of RAM each), each wrote %u MiB it no longer uses:\n",
               n, GUEST_MIB, touched);
        printf("  %-10s %12s %12s %12s %10s %8s\n", "balloon", "RSS total", "per guest",
               "PSS total", "vs none", "time");
        for (unsigned m = 0; m < 3; m++)
                printf("  %-10s %8.1f MiB %8.1f MiB %8.1f MiB %9.2fx %6.1f s\n", res[m].name,
                       res[m].rss_mib, res[m].rss_mib / n, res[m].pss_mib,
                       res[m].rss_mib / res[0].rss_mib, res[m].seconds);
        printf("  given back per guest: reporting %.1f MiB, hinting %.1f MiB (of %u written)\n",
               (res[0].rss_mib - res[1].rss_mib) / n, (res[0].rss_mib - res[2].rss_mib) / n,
               touched);
        printf("%u probe guests (%u MiB of RAM each), each reading a whole %u MiB image:\n", n,
               GUEST_MIB, image_mib);
        printf("  %-22s %12s %12s %14s %12s %8s\n", "image", "PSS total", "page cache",
               "host memory", "per guest", "time");
        for (unsigned m = 0; m < 2; m++)
                printf("  %-22s %8.1f MiB %8.1f MiB %10.1f MiB %8.1f MiB %6.1f s\n",
                       m ? "block: N copies" : "pmem: one, read-only", st[m].pss_mib,
                       st[m].cache_mib, st[m].host_mib, st[m].host_mib / n, st[m].seconds);
        printf("  pmem saves %.1f MiB per guest (%.2fx the host memory of block)\n",
               (st[1].host_mib - st[0].host_mib) / n, st[0].host_mib / st[1].host_mib);
        return 0;
}
