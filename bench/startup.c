/*
 * bench/startup: how fast the VMM gets a guest running and what it costs in memory.
 *
 * For N runs of the probe guest's `hello` scenario it measures, from just before exec:
 *   - wall time to the first guest exit (the probe's first instruction is an OUT to port
 *     0x80, so this is exec -> first guest instruction, as the VMM timestamps it), and the
 *     VMM's process CPU time at that moment;
 *   - wall time to the first byte on the guest serial console, for the VMM and, side by
 *     side in the same run, for QEMU's microvm machine booting the same probe (if QEMU is
 *     installed);
 *   - the VMM's resident memory beyond guest RAM (RSS minus resident guest pages).
 * Medians are printed with the ratio QEMU/VMM, and the targets from the issue.
 *
 *   bench/startup [BUILD_DIR] [RUNS]
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 200

struct sample {
        double first_exit_ms, cpu_ms, first_byte_ms, overhead_kib, main_ms, main_cpu_ms;
};

static double now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double median(double *v, int n)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
}

/* Runs argv with stdout and stderr captured; returns 0 and fills the sample. */
static int run_once(char *const argv[], struct sample *s, char *errbuf, size_t errcap)
{
        int out[2], err[2];
        size_t elen = 0;
        pid_t pid;
        double t0;
        int status;
        bool out_open = true, err_open = true;

        if (pipe(out) || pipe(err))
                return -errno;
        t0 = now_ms();
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                dup2(out[1], STDOUT_FILENO);
                dup2(err[1], STDERR_FILENO);
                close(out[0]);
                close(err[0]);
                execv(argv[0], argv);
                _exit(127);
        }
        close(out[1]);
        close(err[1]);
        s->first_byte_ms = -1;
        while (out_open || err_open) {
                struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
                char buf[4096];
                ssize_t n;

                if (poll(p, 2, 20000) <= 0)
                        break;
                if (out_open && (p[0].revents & (POLLIN | POLLHUP))) {
                        n = read(out[0], buf, sizeof(buf));
                        if (n > 0 && s->first_byte_ms < 0)
                                s->first_byte_ms = now_ms() - t0;
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
                }
        }
        errbuf[elen] = '\0';
        close(out[0]);
        close(err[0]);
        waitpid(pid, &status, 0);
        s->first_exit_ms = s->cpu_ms = s->overhead_kib = -1;
        {
                const char *line = strstr(errbuf, "startup: first guest exit at monotonic ");
                unsigned long long mono, cpu, rss, guest, over, mmono, mcpu;
                if (line && sscanf(line,
                                   "startup: first guest exit at monotonic %llu ns, process cpu "
                                   "%llu ns; rss %llu KiB, guest ram resident %llu KiB, vmm "
                                   "overhead %llu KiB; main at monotonic %llu ns, process cpu "
                                   "%llu ns",
                                   &mono, &cpu, &rss, &guest, &over, &mmono, &mcpu) == 7) {
                        s->first_exit_ms = mono / 1e6 - t0;
                        s->cpu_ms = cpu / 1e6;
                        s->overhead_kib = (double)over;
                        s->main_ms = mmono / 1e6 - t0;
                        s->main_cpu_ms = mcpu / 1e6;
                }
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool have_qemu(void)
{
        return access("/usr/bin/qemu-system-x86_64", X_OK) == 0 && access("/dev/kvm", W_OK) == 0;
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        int runs = argc > 2 ? atoi(argv[2]) : 20;
        static char errbuf[1 << 16];
        char vmm[512], probe[512];
        double ex[MAX_RUNS], cpu[MAX_RUNS], fb[MAX_RUNS], ov[MAX_RUNS], qfb[MAX_RUNS];
        double mw[MAX_RUNS], mc[MAX_RUNS], floor_ms[MAX_RUNS];
        int n = 0, qn = 0;

        if (runs < 1 || runs > MAX_RUNS)
                runs = 20;
        snprintf(vmm, sizeof(vmm), "%s/vmm", build);
        snprintf(probe, sizeof(probe), "%s/tests/guest/probe.elf", build);
        char *vargv[] = {vmm,       "--kernel", probe, "--cmdline", "probe=hello", "--no-serial-in",
                         "--level", "debug",    NULL};
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
                         probe,
                         "-append",
                         "probe=hello",
                         NULL};

        for (int i = 0; i < runs; i++) {
                struct sample s;
                int rc = run_once(vargv, &s, errbuf, sizeof(errbuf) - 1);
                if (rc != 0 || s.first_exit_ms < 0) {
                        fprintf(stderr, "bench/startup: vmm run %d failed (rc %d):\n%s\n", i, rc,
                                errbuf);
                        return 1;
                }
                ex[n] = s.first_exit_ms;
                cpu[n] = s.cpu_ms;
                fb[n] = s.first_byte_ms;
                ov[n] = s.overhead_kib;
                mw[n] = s.main_ms;
                mc[n] = s.main_cpu_ms;
                /* The spawn floor: the same exec of the same binary doing nothing. */
                char *fargv[] = {vmm, "--version", NULL};
                double f0 = now_ms();
                rc = run_once(fargv, &s, errbuf, sizeof(errbuf) - 1);
                floor_ms[n] = now_ms() - f0;
                n++;
                if (have_qemu()) {
                        rc = run_once(qargv, &s, errbuf, sizeof(errbuf) - 1);
                        if (rc == 0 && s.first_byte_ms >= 0)
                                qfb[qn++] = s.first_byte_ms;
                }
        }

        double m_ex = median(ex, n), m_cpu = median(cpu, n), m_fb = median(fb, n);
        double m_ov = median(ov, n), m_mw = median(mw, n), m_mc = median(mc, n);
        double m_floor = median(floor_ms, n);
        printf("bench/startup: probe.elf 'hello', 1 vCPU, 128 MiB, median of %d runs\n", n);
        printf("  vmm  exec -> first guest instruction (wall)   %8.2f ms   (target < 2 ms)\n",
               m_ex);
        printf("  vmm  process CPU time at that point           %8.2f ms   (target < 2 ms; "
               "Firecracker: 8 CPU ms to API-ready)\n",
               m_cpu);
        printf("       of which exec -> main (loader, libc)     %8.2f ms wall, %.2f ms CPU\n", m_mw,
               m_mc);
        printf("       and main -> first guest instruction      %8.2f ms wall, %.2f ms CPU\n",
               m_ex - m_mw, m_cpu - m_mc);
        printf("  spawn floor: fork+exec+exit of `vmm --version` %7.2f ms\n", m_floor);
        printf("  vmm  resident memory beyond guest RAM         %8.2f MiB  (target < 2 MiB; "
               "Firecracker: 5 MiB)\n",
               m_ov / 1024);
        printf("  vmm  exec -> first serial byte                %8.2f ms\n", m_fb);
        if (qn) {
                double m_q = median(qfb, qn);
                printf("  qemu exec -> first serial byte (microvm)      %8.2f ms\n", m_q);
                printf("  ratio qemu/vmm, first serial byte            %8.1fx\n", m_q / m_fb);
        } else {
                printf("  qemu microvm: not measured (qemu-system-x86_64 or /dev/kvm missing)\n");
        }
        return 0;
}
