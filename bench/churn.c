/*
 * bench/churn: microVMs created, booted to the probe's first output and destroyed per
 * second per core, through libvmm in one process (Firecracker publishes 5 microVMs per host
 * core per second).
 *
 *     build/bench/churn [BUILD_DIR] [SECONDS] [THREADS]
 *
 * THREADS workers (default: one per online CPU) each loop for SECONDS (default 10): create a
 * VM of the probe's `hello` scenario (1 vCPU, 128 MiB), start it, wait for its first console
 * byte, destroy it. Prints the rate, the rate per core, and the latency of one cycle.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libvmm.h"

#define MAX_SAMPLES 100000

static char config[PATH_MAX + 512];
static double deadline;
static atomic_uint done_count, failures;
static double samples[MAX_SAMPLES];
static atomic_uint nr_samples;
/* Summed phase times (ms): create, start, first byte, destroy. */
static double phase[4];
static pthread_mutex_t phase_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct first_byte {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool seen;
};

static void on_console(void *opaque, const char *data, size_t len)
{
        struct first_byte *f = opaque;

        (void)data;
        if (!len)
                return;
        pthread_mutex_lock(&f->lock);
        f->seen = true;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void *worker(void *arg)
{
        struct first_byte f;
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;

        (void)arg;
        pthread_mutex_init(&f.lock, NULL);
        pthread_cond_init(&f.cond, NULL);
        o.console = on_console;
        o.opaque = &f;
        while (now_s() < deadline) {
                struct timespec limit;
                struct libvmm *vm;
                double t0 = now_s();
                unsigned n;

                double t1, t2, t3;

                f.seen = false;
                if (libvmm_create(config, &o, &vm) || ((t1 = now_s()), libvmm_start(vm))) {
                        fprintf(stderr, "bench/churn: %s\n", libvmm_last_error());
                        atomic_fetch_add(&failures, 1);
                        return NULL;
                }
                t2 = now_s();
                clock_gettime(CLOCK_REALTIME, &limit);
                limit.tv_sec += 10;
                pthread_mutex_lock(&f.lock);
                while (!f.seen)
                        if (pthread_cond_timedwait(&f.cond, &f.lock, &limit))
                                break;
                pthread_mutex_unlock(&f.lock);
                t3 = now_s();
                libvmm_destroy(vm);
                if (!f.seen) {
                        atomic_fetch_add(&failures, 1);
                        continue;
                }
                atomic_fetch_add(&done_count, 1);
                pthread_mutex_lock(&phase_lock);
                phase[0] += (t1 - t0) * 1e3;
                phase[1] += (t2 - t1) * 1e3;
                phase[2] += (t3 - t2) * 1e3;
                phase[3] += (now_s() - t3) * 1e3;
                pthread_mutex_unlock(&phase_lock);
                n = atomic_fetch_add(&nr_samples, 1);
                if (n < MAX_SAMPLES)
                        samples[n] = (now_s() - t0) * 1e3;
        }
        return NULL;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        const char *build = argc > 1 ? argv[1] : "build";
        double seconds = argc > 2 ? atof(argv[2]) : 10;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int threads = argc > 3 ? atoi(argv[3]) : (int)cores;
        pthread_t t[256];
        double start, elapsed;
        unsigned n;

        if (seconds <= 0 || threads < 1 || threads > 256) {
                fprintf(stderr, "usage: %s [BUILD_DIR] [SECONDS] [THREADS (1..256)]\n", argv[0]);
                return 2;
        }
        snprintf(config, sizeof(config),
                 "{\"boot-source\": {\"kernel_image_path\": \"%s/tests/guest/probe.elf\", "
                 "\"boot_args\": \"console=ttyS0 probe=hello\"}, \"machine-config\": "
                 "{\"vcpu_count\": 1, \"mem_size_mib\": 128}}",
                 build);
        libvmm_set_log("Error", NULL, NULL);
        start = now_s();
        deadline = start + seconds;
        for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
        elapsed = now_s() - start;
        n = atomic_load(&nr_samples);
        if (n > MAX_SAMPLES)
                n = MAX_SAMPLES;
        qsort(samples, n, sizeof(double), cmp);
        printf("%d threads, %.1f s, %ld online CPUs: %u microVMs created, booted to the first "
               "console byte and destroyed (%u failures)\n",
               threads, elapsed, cores, atomic_load(&done_count), atomic_load(&failures));
        printf("  %.1f microVMs/s, %.1f per core per second (Firecracker's published figure: 5)\n",
               atomic_load(&done_count) / elapsed,
               atomic_load(&done_count) / elapsed / (double)cores);
        if (n) {
                printf("  one cycle: p50 %.1f ms, p90 %.1f ms, max %.1f ms\n", samples[n / 2],
                       samples[n * 9 / 10], samples[n - 1]);
                printf("  mean per phase: create %.2f ms, start %.2f ms, start to first byte "
                       "%.2f ms, destroy %.2f ms\n",
                       phase[0] / n, phase[1] / n, phase[2] / n, phase[3] / n);
        }
        return atomic_load(&failures) ? 1 : 0;
}
