/*
 * bench/fanout: N clones of one snapshot restored at once, the way a serverless platform
 * starts functions (issue 14), side by side with N cold boots of the same guest in the same
 * run.
 *
 *     build/bench/fanout [BUILD_DIR] [ROUNDS]      (defaults: build, 1)
 *
 * The guest is the probe's `clone` scenario (128 MiB, a 16 MiB working set written at
 * boot, no devices but COM1). One snapshot of it is taken once, after it is ready. Then,
 * for N = 1, 4 and 16 and for each way to start a clone:
 *   cold  `vmm --kernel probe.elf ...` boots it (and writes the working set);
 *   File  `vmm --api-sock` and PUT /snapshot/load of the memory file (mapped privately);
 *   Uffd  the same with mem_backend Uffd, every clone served by one examples/uffd_handler;
 * N processes are started at once (one thread each), and each is timed from its exec to
 * the guest's first answer: `ping` written to its console (as soon as the load answered,
 * or when the cold guest says it is ready) until `probe: clone pong` comes back, after the
 * guest read its whole working set. Medians and p99 over every clone of ROUNDS x (16 / N)
 * rounds (at least 4 samples), and, once all N answered, the memory the clones hold: the
 * sum of their guest RAM mappings' proportional set size (PSS: a page shared by k
 * processes counts 1/k in each) against N x 128 MiB, and the sum of the processes' whole
 * PSS. The memory file lies where the snapshot was written (its pages in the page cache).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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

#include "bench.h"

#define MEM_MIB   128
#define TOUCH_MIB 16
#define MAX_N     16
#define MAX_SAMP  512

enum mode { COLD, FILE_BACKEND, UFFD_BACKEND, NMODES };
static const char *const mode_name[NMODES] = {"cold", "File", "Uffd"};

/* The programs (under BUILD_DIR) and the scratch directory (under /tmp: short). */
static char vmm[PATH_MAX + 32], probe[PATH_MAX + 32], handler[PATH_MAX + 32], dir[32];

struct clone {
        enum mode mode;
        unsigned index;
        pid_t pid;
        int in, out; /* the guest's console: our ends */
        double answer_ms;
        bool ok;
        char err[160];
};

/* ---- processes and their consoles ---- */

static pid_t spawn(char *const argv[], int *in, int *out, const char *log)
{
        int i[2], o[2];
        pid_t pid;

        if (pipe2(i, O_CLOEXEC) || pipe2(o, O_CLOEXEC))
                return -1;
        pid = fork();
        if (pid == 0) {
                int e = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

                dup2(i[0], 0);
                dup2(o[1], 1);
                if (e >= 0)
                        dup2(e, 2);
                execv(argv[0], argv);
                _exit(127);
        }
        close(i[0]);
        close(o[1]);
        *in = i[1];
        *out = o[0];
        return pid;
}

/* Reads the console until a line starting with `want`; false at its end. */
static bool wait_line(int fd, const char *want)
{
        char line[512];
        size_t len = 0;
        char c;

        for (;;) {
                ssize_t n = read(fd, &c, 1);

                if (n <= 0)
                        return false;
                if (c != '\n') {
                        if (len + 1 < sizeof(line))
                                line[len++] = c;
                        continue;
                }
                line[len] = '\0';
                len = 0;
                if (!strncmp(line, want, strlen(want)))
                        return true;
        }
}

static bool say(int fd, const char *s)
{
        return write(fd, s, strlen(s)) == (ssize_t)strlen(s);
}

/* ---- the API: one request per connection ---- */

static int api(const char *sock, const char *method, const char *path, const char *body)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char req[2048], resp[512];
        int fd, status = -1;
        ssize_t n;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, strlen(body), body);
        if (write(fd, req, (size_t)n) == n && (n = read(fd, resp, sizeof(resp) - 1)) > 12) {
                resp[n] = '\0';
                status = atoi(resp + 9);
        }
        close(fd);
        return status;
}

/* Waits for the API socket to accept (the process is up). */
static bool wait_api(const char *sock, pid_t pid)
{
        for (int i = 0; i < 20000; i++) {
                if (api(sock, "GET", "/", "") == 200)
                        return true;
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return false;
                usleep(200);
        }
        return false;
}

/* ---- one clone ---- */

static void *run_clone(void *arg)
{
        struct clone *c = arg;
        char sock[96], id[32], log[96], body[256], cmdline[128];
        double t0 = bench_now_ms();

        snprintf(id, sizeof(id), "c%u", c->index);
        snprintf(log, sizeof(log), "%s/%s.err", dir, id);
        snprintf(sock, sizeof(sock), "%s/%s.sock", dir, id);
        if (c->mode == COLD) {
                snprintf(cmdline, sizeof(cmdline), "console=ttyS0 probe=clone probe.touch_mib=%d",
                         TOUCH_MIB);
                char mem[16];
                snprintf(mem, sizeof(mem), "%d", MEM_MIB);
                char *argv[] = {vmm,     "--kernel", probe,  "--cmdline", cmdline,
                                "--mem", mem,        "--id", id,          NULL};
                c->pid = spawn(argv, &c->in, &c->out, log);
                if (c->pid < 0 || !wait_line(c->out, "probe: clone ready")) {
                        snprintf(c->err, sizeof(c->err), "no ready line (%.96s)", log);
                        return NULL;
                }
        } else {
                unlink(sock);
                char *argv[] = {vmm, "--api-sock", sock, "--id", id, NULL};
                c->pid = spawn(argv, &c->in, &c->out, log);
                if (c->pid < 0 || !wait_api(sock, c->pid)) {
                        snprintf(c->err, sizeof(c->err), "no API socket (%.96s)", log);
                        return NULL;
                }
                snprintf(body, sizeof(body),
                         "{\"snapshot_path\": \"%s/state\", \"mem_backend\": {\"backend_type\": "
                         "\"%s\", \"backend_path\": \"%s/%s\"}, \"resume_vm\": true}",
                         dir, c->mode == FILE_BACKEND ? "File" : "Uffd", dir,
                         c->mode == FILE_BACKEND ? "mem" : "uffd.sock");
                if (api(sock, "PUT", "/snapshot/load", body) != 204) {
                        snprintf(c->err, sizeof(c->err), "the load failed (%.96s)", log);
                        return NULL;
                }
        }
        if (!say(c->in, "ping\n") || !wait_line(c->out, "probe: clone pong")) {
                snprintf(c->err, sizeof(c->err), "no pong (%.96s)", log);
                return NULL;
        }
        c->answer_ms = bench_now_ms() - t0;
        c->ok = true;
        return NULL;
}

static void end_clone(struct clone *c)
{
        if (c->pid > 0) {
                if (!say(c->in, "quit\n") || waitpid(c->pid, NULL, 0) != c->pid) {
                        kill(c->pid, SIGKILL);
                        waitpid(c->pid, NULL, 0);
                }
        }
        if (c->pid > 0) {
                close(c->in);
                close(c->out);
        }
}

/* PSS in KiB of pid: the guest RAM mapping's (the one of MEM_MIB MiB), and the whole
 * process's. */
static void pss_kib(pid_t pid, long *ram, long *total)
{
        char path[64], line[512];
        unsigned long lo, hi;
        bool in_ram = false;
        FILE *f;
        long v;

        snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
                    strchr(line, '-') < strchr(line, ' '))
                        in_ram = hi - lo == (unsigned long)MEM_MIB << 20;
                else if (sscanf(line, "Pss: %ld kB", &v) == 1) {
                        *total += v;
                        if (in_ram)
                                *ram += v;
                }
        }
        fclose(f);
}

/* ---- the snapshot and the handler ---- */

static int make_snapshot(void)
{
        char sock[96], body[256], boot[PATH_MAX + 200], log[96];
        int in, out, ok;
        pid_t pid;

        snprintf(sock, sizeof(sock), "%s/src.sock", dir);
        snprintf(log, sizeof(log), "%s/src.err", dir);
        char *argv[] = {vmm, "--api-sock", sock, "--id", "source", NULL};
        pid = spawn(argv, &in, &out, log);
        if (pid < 0 || !wait_api(sock, pid))
                return -1;
        snprintf(boot, sizeof(boot),
                 "{\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0 probe=clone "
                 "probe.touch_mib=%d\"}",
                 probe, TOUCH_MIB);
        snprintf(body, sizeof(body), "{\"vcpu_count\": 1, \"mem_size_mib\": %d}", MEM_MIB);
        ok = api(sock, "PUT", "/boot-source", boot) == 204 &&
             api(sock, "PUT", "/machine-config", body) == 204 &&
             api(sock, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}") == 204 &&
             wait_line(out, "probe: clone ready") &&
             api(sock, "PATCH", "/vm", "{\"state\": \"Paused\"}") == 204;
        snprintf(body, sizeof(body),
                 "{\"snapshot_path\": \"%s/state\", \"mem_file_path\": \"%s/mem\"}", dir, dir);
        ok = ok && api(sock, "PUT", "/snapshot/create", body) == 204;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(in);
        close(out);
        return ok ? 0 : -1;
}

static pid_t start_handler(void)
{
        char sock[96], mem[96], log[96];
        int in, out;
        pid_t pid;

        snprintf(sock, sizeof(sock), "%s/uffd.sock", dir);
        snprintf(mem, sizeof(mem), "%s/mem", dir);
        snprintf(log, sizeof(log), "%s/uffd_handler.err", dir);
        unlink(sock);
        char *argv[] = {handler, sock, mem, NULL};
        pid = spawn(argv, &in, &out, log);
        for (int i = 0; pid > 0 && i < 5000 && access(sock, F_OK); i++)
                usleep(1000);
        close(in);
        close(out);
        return pid > 0 && !access(sock, F_OK) ? pid : -1;
}

/* ---- a row ---- */

struct row {
        double samples[MAX_SAMP];
        int n;
        long ram_pss, total_pss; /* KiB, summed over one round's clones */
        int failures;
};

static void round_of(enum mode m, unsigned n, struct row *r)
{
        static struct clone clones[MAX_N];
        pthread_t threads[MAX_N];
        pid_t h = -1;
        long ram = 0, total = 0;

        if (m == UFFD_BACKEND && (h = start_handler()) < 0) {
                fprintf(stderr, "fanout: the handler did not start\n");
                r->failures += (int)n;
                return;
        }
        memset(clones, 0, sizeof(clones));
        for (unsigned i = 0; i < n; i++) {
                clones[i] = (struct clone){.mode = m, .index = i};
                pthread_create(&threads[i], NULL, run_clone, &clones[i]);
        }
        for (unsigned i = 0; i < n; i++)
                pthread_join(threads[i], NULL);
        for (unsigned i = 0; i < n; i++) {
                if (clones[i].ok && r->n < MAX_SAMP)
                        r->samples[r->n++] = clones[i].answer_ms;
                else if (!clones[i].ok) {
                        r->failures++;
                        fprintf(stderr, "fanout: %s clone %u: %s\n", mode_name[m], i,
                                clones[i].err);
                }
                if (clones[i].pid > 0)
                        pss_kib(clones[i].pid, &ram, &total);
        }
        r->ram_pss = ram;
        r->total_pss = total;
        for (unsigned i = 0; i < n; i++)
                end_clone(&clones[i]);
        if (h > 0) {
                kill(h, SIGTERM);
                waitpid(h, NULL, 0);
        }
}

/* What this program made in dir, and dir. */
static void remove_files(void)
{
        static const char *const names[] = {"state",   "mem",       "src.sock",
                                            "src.err", "uffd.sock", "uffd_handler.err"};
        char path[96];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                unlink(path);
        }
        for (unsigned i = 0; i < MAX_N; i++) {
                snprintf(path, sizeof(path), "%s/c%u.err", dir, i);
                unlink(path);
                snprintf(path, sizeof(path), "%s/c%u.sock", dir, i);
                unlink(path);
        }
        rmdir(dir);
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        int rounds = argc > 2 ? atoi(argv[2]) : 1;
        static const unsigned ns[] = {1, 4, 16};
        static struct row rows[3][NMODES];
        char tmpl[] = "/tmp/fanout.XXXXXX", build_dir[PATH_MAX];
        double cold_median[3] = {0};
        int failures = 0;

        signal(SIGPIPE, SIG_IGN);
        if (rounds < 1 || rounds > 20) {
                fprintf(stderr, "usage: fanout [BUILD_DIR] [ROUNDS 1..20]\n");
                return 2;
        }
        if (!realpath(build, build_dir)) {
                perror(build);
                return 1;
        }
        snprintf(vmm, sizeof(vmm), "%s/vmm", build_dir);
        snprintf(probe, sizeof(probe), "%s/tests/guest/probe.elf", build_dir);
        snprintf(handler, sizeof(handler), "%s/examples/uffd_handler", build_dir);
        if (!mkdtemp(tmpl)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(dir, sizeof(dir), "%s", tmpl);
        if (make_snapshot()) {
                fprintf(stderr, "fanout: the snapshot could not be made (logs in %s)\n", dir);
                return 1;
        }
        for (unsigned k = 0; k < 3; k++) {
                unsigned n = ns[k], per = (MAX_N / n) * (unsigned)rounds;

                if (per * n < 4)
                        per = (4 + n - 1) / n;
                for (int m = 0; m < NMODES; m++)
                        for (unsigned rd = 0; rd < per; rd++)
                                round_of((enum mode)m, n, &rows[k][m]);
        }
        printf("fan-out: %d MiB probe `clone` guest, %d MiB working set read by the first "
               "answer; %d round(s)\n",
               MEM_MIB, TOUCH_MIB, rounds);
        printf("%-3s %-5s %7s %12s %10s %9s %17s %12s %16s\n", "N", "mode", "samples",
               "median (ms)", "p99 (ms)", "vs cold", "guest RAM PSS", "N x guest", "process PSS");
        for (unsigned k = 0; k < 3; k++) {
                for (int m = 0; m < NMODES; m++) {
                        struct row *r = &rows[k][m];
                        double med, p99;

                        failures += r->failures;
                        if (!r->n) {
                                printf("%-3u %-5s   (no sample: %d failures)\n", ns[k],
                                       mode_name[m], r->failures);
                                continue;
                        }
                        med = bench_quantile(r->samples, r->n, 0.50);
                        p99 = bench_quantile(r->samples, r->n, 0.99);
                        if (m == COLD)
                                cold_median[k] = med;
                        printf(
                            "%-3u %-5s %7d %12.1f %10.1f %8.2fx %13.1f MiB %8u MiB %12.1f MiB%s\n",
                            ns[k], mode_name[m], r->n, med, p99,
                            cold_median[k] ? med / cold_median[k] : 0.0, (double)r->ram_pss / 1024,
                            ns[k] * MEM_MIB, (double)r->total_pss / 1024,
                            r->failures ? "  (failures)" : "");
                }
        }
        printf("(PSS: the last round's clones, measured once all had answered)\n");
        if (failures) {
                printf("failures: the files are kept in %s\n", dir);
                return 1;
        }
        remove_files();
        return 0;
}
