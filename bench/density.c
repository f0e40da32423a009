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

static int start(struct guest *g, unsigned i, const char *balloon, unsigned touched_mib)
{
        char cmdline[256], mem[16];
        int out[2];

        snprintf(g->sock, sizeof(g->sock), "%s/guest%u.sock", dir, i);
        unlink(g->sock);
        snprintf(cmdline, sizeof(cmdline), "console=ttyS0 probe=freepage-idle probe.fp_mib=%u",
                 touched_mib);
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
                execl(vmm, vmm, "--kernel", probe, "--cmdline", cmdline, "--mem", mem, "--balloon",
                      balloon, "--api-sock", g->sock, "--no-serial-in", "--level", "Error",
                      (char *)NULL);
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

static int measure(const char *name, const char *balloon, bool hint, unsigned n,
                   unsigned touched_mib, struct result *res)
{
        static struct guest g[MAX_GUESTS];
        unsigned long long rss = 0, pss = 0;
        double t0 = now_ms();
        int r = 0;

        memset(g, 0, sizeof(g));
        for (unsigned i = 0; i < n && !r; i++)
                r = start(&g[i], i, balloon, touched_mib);
        if (!r)
                r = wait_all(g, n, READY);
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

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
        unsigned touched = argc > 3 ? (unsigned)atoi(argv[3]) : 32;
        struct result res[3];
        static const struct {
                const char *name, *balloon;
                bool hint;
        } modes[] = {
            {"none", "0", false},
            {"reporting", "0,free-page-reporting", false},
            {"hinting", "0,free-page-hinting", true},
        };

        if (n < 1 || n > MAX_GUESTS || touched < 1 || touched > GUEST_MIB - 16) {
                fprintf(stderr, "usage: %s [BUILD_DIR] [N 1..%d] [TOUCHED_MIB 1..%d]\n", argv[0],
                        MAX_GUESTS, GUEST_MIB - 16);
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
        for (unsigned m = 0; m < 3; m++)
                if (measure(modes[m].name, modes[m].balloon, modes[m].hint, n, touched, &res[m])) {
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
        return 0;
}
