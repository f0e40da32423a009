/*
 * What the benchmarks that time processes share: a monotonic clock in milliseconds, medians
 * and quartiles, the machine's load (to say how noisy a run was), and one fork + exec + wait
 * of a command with its wall and CPU time as the parent sees them.
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline double bench_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

/* The q-quantile (0..1, nearest rank) of v[0..n); sorts v. */
static inline double bench_quantile(double *v, int n, double q)
{
        if (n <= 0)
                return 0;
        qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
        return v[(int)(q * (n - 1) + 0.5)];
}

/* The median of v[0..n); sorts v. */
static inline double bench_median(double *v, int n)
{
        if (n <= 0)
                return 0;
        qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The 1-minute load average, or -1. */
static inline double bench_loadavg(void)
{
        double l = -1;
        FILE *f = fopen("/proc/loadavg", "re");

        if (f) {
                if (fscanf(f, "%lf", &l) != 1)
                        l = -1;
                fclose(f);
        }
        return l;
}

/*
 * Forks, execs argv with stdin, stdout and stderr on null_fd, and reaps it: *wall_ms from
 * before the fork to after the wait, *cpu_ms the child's user + system time (all its
 * threads). Returns the exit status (127: the exec failed), or -1 if killed by a signal or
 * the fork failed.
 */
static inline int bench_run(char *const argv[], int null_fd, double *wall_ms, double *cpu_ms)
{
        double t0 = bench_now_ms();
        struct rusage ru;
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return -1;
        if (pid == 0) {
                dup2(null_fd, STDIN_FILENO);
                dup2(null_fd, STDOUT_FILENO);
                dup2(null_fd, STDERR_FILENO);
                execv(argv[0], argv);
                _exit(127);
        }
        if (wait4(pid, &status, 0, &ru) != pid)
                return -1;
        *wall_ms = bench_now_ms() - t0;
        *cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
