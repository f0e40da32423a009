/*
 * bench/snapshot: snapshot create and restore latency for 128 MiB and 1 GiB guests, and the
 * restored VM's time to its first guest instruction, side by side with a cold boot of the
 * same probe in the same run. In process, through libvmm (the path a serverless platform
 * keeping a pool of snapshots takes).
 *
 *     build/bench/snapshot [BUILD_DIR] [RUNS]
 *
 * Per size and run: a cold boot of the probe's `heartbeat` scenario (create, start, first
 * vCPU exit: its entry's `out 0x80` is the first instruction), a pause, a Full snapshot to a
 * tmpfs-or-/tmp directory, then a restore in the same process (libvmm_restore, Paused), a
 * resume and the restored vCPU's first exit (the heartbeat loop writes port 0x80 every
 * round, so that is within a few instructions of running). Medians and minima of RUNS runs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libvmm.h"

#define MAX_RUNS 100

enum { COLD_FIRST, COLD_READY, PAUSE, SNAP, RESTORE, RESUME, RESTORE_FIRST, TO_RUNNING, NCOL };

static const char *const col_name[NCOL] = {
    "boot: 1st instr",
    "boot: ready",
    "pause",
    "snapshot create",
    "restore (load)",
    "resume",
    "restored: 1st instr after resume",
    "restore to running",
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct console {
        volatile int ready;
        volatile uint64_t ready_ns;
        char line[128];
        size_t len;
};

static void on_console(void *opaque, const char *data, size_t len)
{
        struct console *c = opaque;

        for (size_t i = 0; i < len; i++) {
                if (data[i] != '\n') {
                        if (c->len + 1 < sizeof(c->line))
                                c->line[c->len++] = data[i];
                        continue;
                }
                c->line[c->len] = '\0';
                c->len = 0;
                if (!strcmp(c->line, "probe: heartbeat ready")) {
                        c->ready_ns = now_ns();
                        __atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
                }
        }
}

/* The first vCPU exit after t0, waiting up to 10 s. */
static uint64_t first_exit(struct libvmm *vm)
{
        struct libvmm_info info = {0};

        for (int i = 0; i < 100000; i++) {
                if (libvmm_info(vm, &info) == 0 && info.first_exit_ns)
                        return info.first_exit_ns;
                usleep(100);
        }
        return 0;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static int one_run(const char *kernel, unsigned mib, const char *dir, double *out,
                   long long *mem_disk)
{
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;
        struct console con = {0}, con2 = {0};
        struct libvmm *vm, *rv;
        char cfg[PATH_MAX + 512], state[PATH_MAX], mem[PATH_MAX], params[3 * PATH_MAX];
        uint64_t t0, t1, first;
        struct stat st;
        int code;

        snprintf(state, sizeof(state), "%s/bench-snapshot-%d.state", dir, (int)getpid());
        snprintf(mem, sizeof(mem), "%s/bench-snapshot-%d.mem", dir, (int)getpid());
        snprintf(cfg, sizeof(cfg),
                 "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": "
                 "\"console=ttyS0 probe=heartbeat\"}, \"machine-config\": {\"vcpu_count\": 1, "
                 "\"mem_size_mib\": %u}}",
                 kernel, mib);
        o.console = on_console;
        o.opaque = &con;
        /* Cold boot. */
        t0 = now_ns();
        if (libvmm_create(cfg, &o, &vm) || libvmm_start(vm))
                goto fail;
        first = first_exit(vm);
        for (int i = 0; !__atomic_load_n(&con.ready, __ATOMIC_ACQUIRE); i++) {
                if (i > 200000 || libvmm_wait_exit(vm, 0, &code) == 0) {
                        fprintf(stderr, "bench/snapshot: the probe never said "
                                        "\"probe: heartbeat ready\" (an old probe build?)\n");
                        libvmm_destroy(vm);
                        return -1;
                }
                usleep(50);
        }
        out[COLD_FIRST] = (double)(first - t0) / 1e6;
        out[COLD_READY] = (double)(con.ready_ns - t0) / 1e6;
        /* Snapshot. */
        t0 = now_ns();
        if (libvmm_pause(vm))
                goto fail;
        t1 = now_ns();
        if (libvmm_snapshot(vm, state, mem, false))
                goto fail;
        out[PAUSE] = (double)(t1 - t0) / 1e6;
        out[SNAP] = (double)(now_ns() - t1) / 1e6;
        libvmm_destroy(vm);
        if (stat(mem, &st) == 0)
                *mem_disk = (long long)st.st_blocks * 512;
        /* Restore, resume, first instruction. */
        snprintf(params, sizeof(params), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}",
                 state, mem);
        o.opaque = &con2;
        t0 = now_ns();
        if (libvmm_restore(params, NULL, &o, &rv))
                goto fail;
        t1 = now_ns();
        if (libvmm_resume(rv))
                goto fail;
        out[RESTORE] = (double)(t1 - t0) / 1e6;
        out[RESUME] = (double)(now_ns() - t1) / 1e6;
        first = first_exit(rv);
        if (!first)
                goto fail;
        out[RESTORE_FIRST] = (double)(first - t1) / 1e6;
        out[TO_RUNNING] = (double)(first - t0) / 1e6;
        /* The restored heartbeat would end on console input; destroying it is enough. */
        libvmm_destroy(rv);
        unlink(state);
        unlink(mem);
        return 0;
fail:
        fprintf(stderr, "bench/snapshot: %s\n", libvmm_last_error());
        unlink(state);
        unlink(mem);
        return -1;
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        int runs = argc > 2 ? atoi(argv[2]) : 10;
        static const unsigned sizes[] = {128, 1024};
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        char kernel[PATH_MAX];
        static double v[2][NCOL][MAX_RUNS];
        long long disk[2] = {0};

        if (runs < 1 || runs > MAX_RUNS) {
                fprintf(stderr, "usage: %s [BUILD_DIR] [RUNS (1..%d)]\n", argv[0], MAX_RUNS);
                return 2;
        }
        snprintf(kernel, sizeof(kernel), "%s/tests/guest/probe.elf", build);
        if (access(kernel, R_OK)) {
                fprintf(stderr, "bench/snapshot: no probe at %s: %s\n", kernel, strerror(errno));
                return 1;
        }
        libvmm_set_log("Warning", NULL, NULL);
        for (int r = 0; r < runs; r++) {
                for (unsigned s = 0; s < 2; s++) {
                        double out[NCOL];

                        if (one_run(kernel, sizes[s], dir, out, &disk[s]))
                                return 1;
                        for (int c = 0; c < NCOL; c++)
                                v[s][c][r] = out[c];
                }
        }
        printf("%d runs per size, one process (libvmm), snapshot files in %s; milliseconds, "
               "median (min)\n",
               runs, dir);
        printf("%-34s %20s %20s\n", "", "128 MiB", "1 GiB");
        for (int c = 0; c < NCOL; c++) {
                printf("%-34s", col_name[c]);
                for (unsigned s = 0; s < 2; s++) {
                        qsort(v[s][c], (size_t)runs, sizeof(double), cmp);
                        printf(" %11.3f (%6.3f)", v[s][c][runs / 2], v[s][c][0]);
                }
                printf("\n");
        }
        printf("%-34s %17lld KiB %17lld KiB\n", "memory file on disk", disk[0] >> 10,
               disk[1] >> 10);
        for (unsigned sz = 0; sz < 2; sz++)
                printf("%s: restore to running %.3f ms; a cold boot takes %.3f ms to its first "
                       "instruction (%.1fx) and %.3f ms to where the snapshot was taken, ready "
                       "(%.1fx)\n",
                       sz ? "1 GiB" : "128 MiB", v[sz][TO_RUNNING][runs / 2],
                       v[sz][COLD_FIRST][runs / 2],
                       v[sz][COLD_FIRST][runs / 2] / v[sz][TO_RUNNING][runs / 2],
                       v[sz][COLD_READY][runs / 2],
                       v[sz][COLD_READY][runs / 2] / v[sz][TO_RUNNING][runs / 2]);
        printf("target, 128 MiB restore to running under 5 ms (median): %s\n",
               v[0][TO_RUNNING][runs / 2] < 5.0 ? "met" : "NOT met");
        return 0;
}
