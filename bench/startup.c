/*
 * bench/startup: how fast the VMM gets a guest running and what it costs in memory.
 *
 * For N runs of the probe guest's `hello` scenario it measures, from just before exec:
 *   - wall time to the first guest exit (the probe's first instruction is an OUT to port
 *     0x80, so this is exec -> first guest instruction, as the VMM timestamps it), and the
 *     VMM's process CPU time at that moment;
 *   - wall and CPU time to the API socket accepting (`vmm --api-sock`, nothing configured:
 *     the VMM timestamps the moment its server listens, confined; the benchmark then checks
 *     that `GET /` is answered);
 *   - wall time to the first byte on the guest serial console, for the VMM and, side by
 *     side in the same run, for QEMU's microvm machine booting the same probe (if QEMU is
 *     installed);
 *   - the VMM's resident memory beyond guest RAM (RSS minus resident guest pages).
 * Medians are printed with the quartiles of the wall times (how noisy the run was), the
 * ratio QEMU/VMM, and issue 13's targets. With more than one build directory, each build's
 * runs alternate with the others' in the same rounds (before and after a change).
 *
 *   bench/startup [BUILD_DIR] [RUNS] [BUILD_DIR...]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_RUNS   200
#define MAX_BUILDS 4

/* Issue 13's targets. */
#define TARGET_FIRST_INSN_MS 1.5
#define TARGET_API_CPU_MS    1.5
#define TARGET_OVERHEAD_MIB  2.5

struct sample {
        double first_exit_ms, cpu_ms, first_byte_ms, overhead_kib, main_ms, main_cpu_ms;
        double api_ms, api_cpu_ms;
};

struct build {
        const char *dir;
        char vmm[512], probe[512];
        double ex[MAX_RUNS], cpu[MAX_RUNS], fb[MAX_RUNS], ov[MAX_RUNS], mw[MAX_RUNS], mc[MAX_RUNS],
            floor_ms[MAX_RUNS], api[MAX_RUNS], api_cpu[MAX_RUNS];
        double guest_ms[MAX_RUNS], guest_cpu_ms[MAX_RUNS]; /* main -> first instruction */
};

/* Scans the VMM's log for the startup lines (vmm/vm.c, api/main.c); t0 is the fork. */
static void parse_log(const char *log, double t0, struct sample *s)
{
        const char *line = strstr(log, "startup: first guest exit at monotonic ");
        unsigned long long mono, cpu, rss, guest, over, mmono, mcpu;

        if (line && sscanf(line,
                           "startup: first guest exit at monotonic %llu ns, process cpu %llu ns; "
                           "rss %llu KiB, guest ram resident %llu KiB, vmm overhead %llu KiB; "
                           "main at monotonic %llu ns, process cpu %llu ns",
                           &mono, &cpu, &rss, &guest, &over, &mmono, &mcpu) == 7) {
                s->first_exit_ms = mono / 1e6 - t0;
                s->cpu_ms = cpu / 1e6;
                s->overhead_kib = (double)over;
                s->main_ms = mmono / 1e6 - t0;
                s->main_cpu_ms = mcpu / 1e6;
        }
        line = strstr(log, "startup: API accepting at monotonic ");
        if (line && sscanf(line, "startup: API accepting at monotonic %llu ns, process cpu %llu ns",
                           &mono, &cpu) == 2) {
                s->api_ms = mono / 1e6 - t0;
                s->api_cpu_ms = cpu / 1e6;
        }
}

/* Answers whether a `GET /` on the API socket at path gets a 200. */
static bool api_answers(const char *path)
{
        static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[256] = "";
        bool ok = false;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1)
                ok = read(fd, buf, sizeof(buf) - 1) > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

/*
 * Runs argv with stdout and stderr captured and fills the sample; returns the exit status.
 * With api_path, once the API startup line is in the log, checks that the API answers and
 * stops the VMM with SIGTERM.
 */
static int run_once(char *const argv[], const char *api_path, struct sample *s, char *errbuf,
                    size_t errcap)
{
        int out[2], err[2];
        size_t elen = 0;
        pid_t pid;
        double t0;
        int status;
        bool out_open = true, err_open = true, stopped = false;

        memset(s, 0, sizeof(*s));
        s->first_exit_ms = s->cpu_ms = s->overhead_kib = s->api_ms = s->first_byte_ms = -1;
        if (pipe(out) || pipe(err))
                return -errno;
        t0 = bench_now_ms();
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null_fd = open("/dev/null", O_RDONLY);

                dup2(null_fd, STDIN_FILENO);
                dup2(out[1], STDOUT_FILENO);
                dup2(err[1], STDERR_FILENO);
                close(out[0]);
                close(err[0]);
                execv(argv[0], argv);
                _exit(127);
        }
        close(out[1]);
        close(err[1]);
        while (out_open || err_open) {
                struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
                char buf[4096];
                ssize_t n;

                if (poll(p, 2, 20000) <= 0)
                        break;
                if (out_open && (p[0].revents & (POLLIN | POLLHUP))) {
                        n = read(out[0], buf, sizeof(buf));
                        if (n > 0 && s->first_byte_ms < 0)
                                s->first_byte_ms = bench_now_ms() - t0;
                        if (n <= 0)
                                out_open = false;
                }
                if (err_open && (p[1].revents & (POLLIN | POLLHUP))) {
                        n = read(err[0], buf, sizeof(buf));
                        if (n <= 0)
                                err_open = false;
                        else if (elen + (size_t)n < errcap) {
                                memcpy(errbuf + elen, buf, (size_t)n);
                                elen += (size_t)n;
                        }
                        errbuf[elen] = '\0';
                        if (api_path && !stopped && strstr(errbuf, "startup: API accepting")) {
                                if (!api_answers(api_path))
                                        s->api_ms = -2; /* listening, but not answering */
                                kill(pid, SIGTERM);
                                stopped = true;
                        }
                }
        }
        errbuf[elen] = '\0';
        close(out[0]);
        close(err[0]);
        if (api_path && !stopped)
                kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        if (s->api_ms != -2)
                parse_log(errbuf, t0, s);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool have_qemu(void)
{
        return access("/usr/bin/qemu-system-x86_64", X_OK) == 0 && access("/dev/kvm", W_OK) == 0;
}

/* One row: the median of each build's values, "(q1-q3)" of the first build's if asked. */
static void row(const char *what, struct build *b, int nb, int n, size_t field, double scale,
                const char *unit, bool quartiles, const char *note)
{
        printf("  %-44s", what);
        for (int i = 0; i < nb; i++) {
                double *v = (double *)((char *)&b[i] + field);

                printf(" %9.2f %-3s", bench_median(v, n) * scale, unit);
                if (quartiles)
                        printf(" (%.2f-%.2f)", bench_quantile(v, n, 0.25) * scale,
                               bench_quantile(v, n, 0.75) * scale);
        }
        printf("%s\n", note);
}

int main(int argc, char **argv)
{
        static struct build builds[MAX_BUILDS];
        static char errbuf[1 << 16];
        static char sock_dir[] = "/tmp/bench-startup-XXXXXX";
        char sock[512];
        double qfb[MAX_RUNS], load0 = bench_loadavg();
        int runs = argc > 2 ? atoi(argv[2]) : 20, nb = 0, qn = 0;

        builds[nb++].dir = argc > 1 ? argv[1] : "build";
        for (int i = 3; i < argc && nb < MAX_BUILDS; i++)
                builds[nb++].dir = argv[i];
        if (runs < 1 || runs > MAX_RUNS)
                runs = 20;
        if (!mkdtemp(sock_dir)) {
                perror("bench/startup: mkdtemp");
                return 1;
        }
        snprintf(sock, sizeof(sock), "%s/api.sock", sock_dir);
        for (int b = 0; b < nb; b++) {
                snprintf(builds[b].vmm, sizeof(builds[b].vmm), "%s/vmm", builds[b].dir);
                snprintf(builds[b].probe, sizeof(builds[b].probe), "%s/tests/guest/probe.elf",
                         builds[0].dir);
        }
        char *qargv[] = {"/usr/bin/qemu-system-x86_64",
                         "-M",
                         "microvm",
                         "-enable-kvm",
                         "-cpu",
                         "host,-arch-capabilities",
                         "-m",
                         "128",
                         "-nodefaults",
                         "-no-user-config",
                         "-nographic",
                         "-no-reboot",
                         "-serial",
                         "stdio",
                         "-kernel",
                         builds[0].probe,
                         "-append",
                         "probe=hello",
                         NULL};

        for (int i = 0; i < runs; i++) {
                for (int k = 0; k < nb; k++) {
                        struct build *b = &builds[(i + k) % nb];
                        char *vargv[] = {b->vmm,      "--kernel",    b->probe,
                                         "--cmdline", "probe=hello", "--no-serial-in",
                                         "--level",   "debug",       NULL};
                        char *aargv[] = {b->vmm, "--api-sock", sock, "--level", "debug", NULL};
                        char *fargv[] = {b->vmm, "--version", NULL};
                        struct sample s;
                        int rc = run_once(vargv, NULL, &s, errbuf, sizeof(errbuf) - 1);

                        if (rc != 0 || s.first_exit_ms < 0) {
                                fprintf(stderr, "bench/startup: %s run %d failed (rc %d):\n%s\n",
                                        b->vmm, i, rc, errbuf);
                                return 1;
                        }
                        b->ex[i] = s.first_exit_ms;
                        b->cpu[i] = s.cpu_ms;
                        b->fb[i] = s.first_byte_ms;
                        b->ov[i] = s.overhead_kib;
                        b->mw[i] = s.main_ms;
                        b->mc[i] = s.main_cpu_ms;
                        b->guest_ms[i] = s.first_exit_ms - s.main_ms;
                        b->guest_cpu_ms[i] = s.cpu_ms - s.main_cpu_ms;
                        rc = run_once(aargv, sock, &s, errbuf, sizeof(errbuf) - 1);
                        if (rc != 0 || s.api_ms < 0) {
                                fprintf(stderr,
                                        "bench/startup: %s --api-sock run %d failed (rc %d%s):\n"
                                        "%s\n",
                                        b->vmm, i, rc, s.api_ms == -2 ? ", GET / not answered" : "",
                                        errbuf);
                                return 1;
                        }
                        b->api[i] = s.api_ms;
                        b->api_cpu[i] = s.api_cpu_ms;
                        /* The spawn floor: the same exec of the same binary doing nothing. */
                        double f0 = bench_now_ms();
                        run_once(fargv, NULL, &s, errbuf, sizeof(errbuf) - 1);
                        b->floor_ms[i] = bench_now_ms() - f0;
                }
                if (have_qemu()) {
                        struct sample s;
                        int rc = run_once(qargv, NULL, &s, errbuf, sizeof(errbuf) - 1);

                        if (rc == 0 && s.first_byte_ms >= 0)
                                qfb[qn++] = s.first_byte_ms;
                }
        }
        rmdir(sock_dir);

        printf("bench/startup: probe.elf 'hello', 1 vCPU, 128 MiB, median (quartiles) of %d "
               "runs, load average %.1f then %.1f\n",
               runs, load0, bench_loadavg());
        printf("  %-44s", "build");
        for (int b = 0; b < nb; b++)
                printf(" %-28s", builds[b].dir);
        printf("\n");
        row("exec -> first guest instruction (wall)", builds, nb, runs, offsetof(struct build, ex),
            1, "ms", true, "   target <= 1.5 ms");
        row("process CPU at that point", builds, nb, runs, offsetof(struct build, cpu), 1, "ms",
            false, "");
        row("of which exec -> main (wall)", builds, nb, runs, offsetof(struct build, mw), 1, "ms",
            false, "");
        row("of which exec -> main (CPU)", builds, nb, runs, offsetof(struct build, mc), 1, "ms",
            false, "");
        row("and main -> first guest instruction (wall)", builds, nb, runs,
            offsetof(struct build, guest_ms), 1, "ms", false, "");
        row("and main -> first guest instruction (CPU)", builds, nb, runs,
            offsetof(struct build, guest_cpu_ms), 1, "ms", false, "");
        row("exec -> API socket accepting (wall)", builds, nb, runs, offsetof(struct build, api), 1,
            "ms", true, "");
        row("exec -> API socket accepting (CPU)", builds, nb, runs, offsetof(struct build, api_cpu),
            1, "ms", false, "   target <= 1.5 ms (Firecracker: 8 CPU ms)");
        row("spawn floor: `vmm --version` (wall)", builds, nb, runs,
            offsetof(struct build, floor_ms), 1, "ms", false, "");
        row("resident memory beyond guest RAM", builds, nb, runs, offsetof(struct build, ov),
            1.0 / 1024, "MiB", false, "   target <= 2.5 MiB");
        row("exec -> first serial byte (wall)", builds, nb, runs, offsetof(struct build, fb), 1,
            "ms", false, "");
        for (int b = 0; b < nb; b++) {
                double m_ex = bench_median(builds[b].ex, runs);
                double m_api = bench_median(builds[b].api_cpu, runs);
                double m_ov = bench_median(builds[b].ov, runs) / 1024;

                printf("  %s: first instruction %s, API CPU %s, memory %s\n", builds[b].dir,
                       m_ex <= TARGET_FIRST_INSN_MS ? "met" : "NOT met",
                       m_api <= TARGET_API_CPU_MS ? "met" : "NOT met",
                       m_ov <= TARGET_OVERHEAD_MIB ? "met" : "NOT met");
        }
        if (qn) {
                double m_q = bench_median(qfb, qn);

                printf("  qemu exec -> first serial byte (microvm)     %9.2f ms\n", m_q);
                for (int b = 0; b < nb; b++)
                        printf("  ratio qemu/vmm (%s), first serial byte  %6.1fx\n", builds[b].dir,
                               m_q / bench_median(builds[b].fb, runs));
        } else {
                printf("  qemu microvm: not measured (qemu-system-x86_64 or /dev/kvm missing)\n");
        }
        return 0;
}
