/*
 * bench/tiny: what `vmm` costs to start and stop a VM against the floor KVM sets, in one run
 * (issue 13's targets). Every round runs, in an order that rotates from round to round:
 *
 *   - `vmm --kernel tiny.elf --mem 128` of each BUILD_DIR given (two builds compare side by
 *     side: before and after a change), the tiny guest (bench/tiny_guest.S) ending it at its
 *     first instruction;
 *   - bench/bare-kvm in its four variants (no irqchip; KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2;
 *     KVM_CREATE_IRQCHIP alone; KVM_CAP_SPLIT_IRQCHIP), the least a process must do to run
 *     that instruction;
 *   - QEMU's microvm machine booting the same guest (if qemu-system-x86_64 is installed).
 *
 * It prints each one's median wall time (fork to reaped, as the parent sees it) and CPU time
 * (user + system of all its threads), the quartiles of the wall time (how noisy the run
 * was: this machine is shared), and the ratios against the targets, for each vmm.
 *
 *   bench/tiny [-r RUNS] [BUILD_DIR...]      (default: 30 runs of ./build)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAX_BUILDS 4
#define MAX_ROWS   (MAX_BUILDS + 5)
#define MAX_RUNS   1000
#define QEMU       "/usr/bin/qemu-system-x86_64"

/* Issue 13's targets. */
#define TARGET_CPU_VS_BARE  1.5
#define TARGET_WALL_VS_BARE 3.0
#define TARGET_WALL_VS_QEMU 0.25

struct row {
        char label[160];
        char *argv[24];
        double wall[MAX_RUNS], cpu[MAX_RUNS];
        double m_wall, m_cpu, q1_wall, q3_wall;
};

static struct row rows[MAX_ROWS];

static void verdict(const char *what, double ratio, double target, const char *unit)
{
        printf("  %-34s %7.2f%s  (target <= %.2f%s: %s)\n", what, ratio, unit, target, unit,
               ratio <= target ? "met" : "NOT met");
}

int main(int argc, char **argv)
{
        static char vmm[MAX_BUILDS][512], tiny[512], bare[512];
        const char *builds[MAX_BUILDS];
        int runs = 30, nb = 0, nr = 0, bare_row, qemu_row = -1, null_fd;
        double load0 = bench_loadavg(), load1;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
                        runs = atoi(argv[++i]);
                else if (argv[i][0] == '-' || nb == MAX_BUILDS) {
                        fprintf(stderr, "usage: bench/tiny [-r RUNS] [BUILD_DIR...] (at most %d)\n",
                                MAX_BUILDS);
                        return 2;
                } else
                        builds[nb++] = argv[i];
        }
        if (!nb)
                builds[nb++] = "build";
        if (runs < 1 || runs > MAX_RUNS)
                runs = 30;
        /* The guest and the bare program of the first build serve every row. */
        snprintf(tiny, sizeof(tiny), "%s/bench/tiny.elf", builds[0]);
        snprintf(bare, sizeof(bare), "%s/bench/bare-kvm", builds[0]);
        for (int b = 0; b < nb; b++) {
                struct row *r = &rows[nr++];

                snprintf(vmm[b], sizeof(vmm[b]), "%s/vmm", builds[b]);
                snprintf(r->label, sizeof(r->label), "vmm (%s)", builds[b]);
                char *v[] = {vmm[b], "--kernel", tiny, "--mem", "128", NULL};
                memcpy(r->argv, v, sizeof(v));
        }
        bare_row = nr;
        static const char *modes[] = {"plain", "irqchip", "irqchip-nopit", "split"};
        static const char *mode_labels[] = {"bare KVM program", "bare + IRQCHIP + PIT2",
                                            "bare + IRQCHIP (no PIT)", "bare + SPLIT_IRQCHIP"};
        for (int m = 0; m < 4; m++) {
                struct row *r = &rows[nr++];

                snprintf(r->label, sizeof(r->label), "%s", mode_labels[m]);
                char *v[] = {bare, (char *)modes[m], NULL};
                memcpy(r->argv, v, sizeof(v));
        }
        if (access(QEMU, X_OK) == 0) {
                struct row *r = &rows[qemu_row = nr++];

                snprintf(r->label, sizeof(r->label), "QEMU microvm");
                char *v[] = {QEMU,          "-M",
                             "microvm",     "-enable-kvm",
                             "-cpu",        "host,-arch-capabilities",
                             "-m",          "128",
                             "-nodefaults", "-no-user-config",
                             "-nographic",  "-no-reboot",
                             "-kernel",     tiny,
                             NULL};
                memcpy(r->argv, v, sizeof(v));
        }
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0 || access(tiny, R_OK) || access(bare, X_OK)) {
                fprintf(stderr, "bench/tiny: %s or %s is missing (build the project first)\n", tiny,
                        bare);
                return 1;
        }
        for (int i = 0; i < runs; i++) {
                for (int k = 0; k < nr; k++) {
                        struct row *r = &rows[(i + k) % nr];
                        int st = bench_run(r->argv, null_fd, &r->wall[i], &r->cpu[i]);

                        if (st != 0) {
                                fprintf(stderr, "bench/tiny: '%s' failed (status %d)\n", r->label,
                                        st);
                                return 1;
                        }
                }
        }
        load1 = bench_loadavg();
        printf("tiny guest (`out 0x64` at its first instruction), 1 vCPU, 128 MiB: %d rounds, "
               "load average %.1f then %.1f\n",
               runs, load0, load1);
        printf("  %-34s %10s %10s %22s\n", "fork + exec + exit, median", "wall", "CPU",
               "wall quartiles");
        for (int k = 0; k < nr; k++) {
                struct row *r = &rows[k];

                r->m_cpu = bench_median(r->cpu, runs);
                r->m_wall = bench_median(r->wall, runs);
                r->q1_wall = bench_quantile(r->wall, runs, 0.25);
                r->q3_wall = bench_quantile(r->wall, runs, 0.75);
                printf("  %-34s %7.3f ms %7.3f ms %9.3f - %7.3f ms\n", r->label, r->m_wall,
                       r->m_cpu, r->q1_wall, r->q3_wall);
        }
        for (int b = 0; b < nb; b++) {
                const struct row *v = &rows[b], *bk = &rows[bare_row];

                printf("%s:\n", v->label);
                verdict("CPU vs the bare KVM program", v->m_cpu / bk->m_cpu, TARGET_CPU_VS_BARE,
                        "x");
                verdict("wall vs the bare KVM program", v->m_wall / bk->m_wall, TARGET_WALL_VS_BARE,
                        "x");
                if (qemu_row >= 0)
                        verdict("wall vs QEMU microvm", v->m_wall / rows[qemu_row].m_wall,
                                TARGET_WALL_VS_QEMU, "");
                else
                        printf("  wall vs QEMU microvm: not measured (%s missing)\n", QEMU);
        }
        return 0;
}
