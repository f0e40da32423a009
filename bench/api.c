/*
 * bench/api: the REST API's round-trip latency against the floor of this machine.
 *
 * It starts `vmm --api-sock` (waiting for its configuration, no guest) and, on one
 * keep-alive connection, times N `PUT /machine-config` round trips (request written ->
 * whole 204 answer read): HTTP parsing and JSON on the API thread, the command queued to
 * the VMM thread, executed there, answered. In the same run it times N round trips of the
 * same bytes through a bare Unix-socket echo server (a thread doing read -> write), the
 * cost of any request/answer exchange between two threads here. It prints p50, p99 and
 * max of both, and the ratios (aim: API p99 under 5x the echo's).
 *
 *   bench/api [BUILD_DIR] [N]        (defaults: build, 10000)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fdio.h"

#define WARMUP 1000

static const char body[] = "{\"vcpu_count\": 2, \"mem_size_mib\": 256}";

static double now_us(void)
{
        return (double)clock_ns(CLOCK_MONOTONIC) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double percentile(double *v, int n, double p)
{
        int i = (int)(p / 100.0 * (n - 1) + 0.5);
        return v[i < n ? i : n - 1];
}

static int connect_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -1;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return fd;
        if (fd >= 0)
                close(fd);
        return -1;
}

/* Reads one HTTP answer (headers, then Content-Length bytes); returns its status or -1. */
static int read_answer(int fd)
{
        char buf[4096];
        size_t len = 0;
        char *end = NULL;
        long clen = 0;
        int status;

        while (!end) {
                ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (r <= 0)
                        return -1;
                len += (size_t)r;
                buf[len] = '\0';
                end = strstr(buf, "\r\n\r\n");
                if (!end && len == sizeof(buf) - 1)
                        return -1;
        }
        if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
                return -1;
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl && cl < end)
                clen = strtol(cl + 17, NULL, 10);
        size_t have = len - (size_t)(end + 4 - buf);
        while ((long)have < clen) {
                ssize_t r = read(fd, buf, sizeof(buf));
                if (r <= 0)
                        return -1;
                have += (size_t)r;
        }
        return status;
}

/* ---- the echo server: one thread, read -> write until the peer closes ---- */

static void *echo_thread(void *arg)
{
        int lfd = *(int *)arg;
        int fd = accept(lfd, NULL, NULL);
        char buf[4096];
        ssize_t n;

        while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
                if (fd_write_all(fd, buf, (size_t)n))
                        break;
        if (fd >= 0)
                close(fd);
        return NULL;
}

static bool read_exact(int fd, char *buf, size_t n)
{
        while (n) {
                ssize_t r = read(fd, buf, n);
                if (r <= 0)
                        return false;
                buf += r;
                n -= (size_t)r;
        }
        return true;
}

static int bench_echo(const char *dir, const char *msg, size_t len, double *lat, int n)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[4096];
        pthread_t t;
        int lfd, fd;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/echo.sock", dir);
        unlink(sa.sun_path);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1))
                return -1;
        pthread_create(&t, NULL, echo_thread, &lfd);
        fd = connect_unix(sa.sun_path);
        if (fd < 0)
                return -1;
        for (int i = -WARMUP; i < n; i++) {
                double t0 = now_us();
                if (fd_write_all(fd, msg, len) || !read_exact(fd, buf, len))
                        return -1;
                if (i >= 0)
                        lat[i] = now_us() - t0;
        }
        close(fd);
        pthread_join(t, NULL);
        close(lfd);
        unlink(sa.sun_path);
        return 0;
}

/* ---- the API ---- */

static pid_t start_vmm(const char *build, const char *sock)
{
        char vmm[4096];
        pid_t pid;

        snprintf(vmm, sizeof(vmm), "%s/vmm", build);
        pid = fork();
        if (pid == 0) {
                freopen("/dev/null", "w", stdout);
                execl(vmm, vmm, "--api-sock", sock, "--level", "Warning", (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 1000; i++) {
                int fd = connect_unix(sock);
                if (fd >= 0) {
                        close(fd);
                        return pid;
                }
                usleep(10000);
        }
        kill(pid, SIGKILL);
        return -1;
}

static int bench_api(const char *sock, const char *req, size_t len, double *lat, int n)
{
        int fd = connect_unix(sock);

        if (fd < 0)
                return -1;
        for (int i = -WARMUP; i < n; i++) {
                double t0 = now_us();
                int status;

                if (fd_write_all(fd, req, len))
                        return -1;
                status = read_answer(fd);
                if (status != 204) {
                        fprintf(stderr, "api: PUT /machine-config answered %d\n", status);
                        return -1;
                }
                if (i >= 0)
                        lat[i] = now_us() - t0;
        }
        close(fd);
        return 0;
}

static void report(const char *name, double *lat, int n, double *p50, double *p99)
{
        double sum = 0;

        for (int i = 0; i < n; i++)
                sum += lat[i];
        qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
        *p50 = percentile(lat, n, 50);
        *p99 = percentile(lat, n, 99);
        printf("  %-28s p50 %7.1f us   p99 %7.1f us   max %8.1f us   mean %7.1f us\n", name, *p50,
               *p99, lat[n - 1], sum / n);
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        int n = argc > 2 ? atoi(argv[2]) : 10000;
        char dir[] = "/tmp/bench_api_XXXXXX";
        char sock[4200], req[512];
        double *api_lat, *echo_lat, a50, a99, e50, e99;
        size_t len;
        pid_t pid;
        int status, r;

        if (n < 100)
                n = 100;
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        len = (size_t)snprintf(req, sizeof(req),
                               "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\n"
                               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                               strlen(body), body);
        api_lat = calloc((size_t)n, sizeof(double));
        echo_lat = calloc((size_t)n, sizeof(double));
        snprintf(sock, sizeof(sock), "%s/api.sock", dir);
        pid = start_vmm(build, sock);
        if (pid < 0) {
                fprintf(stderr, "api: cannot start %s/vmm --api-sock\n", build);
                return 1;
        }
        /* Interleaved halves, so a machine-wide hiccup lands on both. */
        r = bench_echo(dir, req, len, echo_lat, n / 2);
        if (!r)
                r = bench_api(sock, req, len, api_lat, n / 2);
        if (!r)
                r = bench_echo(dir, req, len, echo_lat + n / 2, n - n / 2);
        if (!r)
                r = bench_api(sock, req, len, api_lat + n / 2, n - n / 2);
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        rmdir(dir);
        if (r) {
                fprintf(stderr, "api: a round trip failed\n");
                return 1;
        }
        printf("%d round trips each (%zu-byte request), one keep-alive connection:\n", n, len);
        report("PUT /machine-config (API)", api_lat, n, &a50, &a99);
        report("Unix-socket echo", echo_lat, n, &e50, &e99);
        printf("  ratio API/echo: p50 %.1fx, p99 %.1fx (aim: p99 under 5x)\n", a50 / e50,
               a99 / e99);
        free(api_lat);
        free(echo_lat);
        return 0;
}
