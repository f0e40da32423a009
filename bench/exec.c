/*
 * bench/exec: what an exec costs, side by side: runs each command in turn, N rounds
 * (fork, exec, wait; output to /dev/null), and prints each one's median wall time and CPU
 * time (the child's user + system). Used to weigh a library's cost at VM start: link a
 * do-nothing program with and without it, or compare two builds' `vmm --version`.
 *
 *   bench/exec N "CMD [ARGS]" ...      (up to 16 commands, 16 words each)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS  16
#define MAX_WORDS 16

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
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
        char *words[MAX_CMDS][MAX_WORDS + 1] = {{0}};
        int rounds = argc > 1 ? atoi(argv[1]) : 0, cmds = argc - 2, null_fd;
        double *wall, *cpu;

        if (rounds <= 0 || cmds < 1 || cmds > MAX_CMDS) {
                fprintf(stderr, "usage: bench/exec N \"CMD [ARGS]\" ... (1 to %d commands)\n",
                        MAX_CMDS);
                return 2;
        }
        for (int c = 0; c < cmds; c++) {
                char *save = NULL, *s = strdup(argv[2 + c]);
                int w = 0;

                for (char *t = strtok_r(s, " ", &save); t && w < MAX_WORDS;
                     t = strtok_r(NULL, " ", &save))
                        words[c][w++] = t;
                if (!w) {
                        fprintf(stderr, "bench/exec: an empty command\n");
                        return 2;
                }
        }
        wall = calloc((size_t)(rounds * cmds), sizeof(*wall));
        cpu = calloc((size_t)(rounds * cmds), sizeof(*cpu));
        null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (!wall || !cpu || null_fd < 0)
                return 1;
        for (int r = 0; r < rounds; r++) {
                for (int c = 0; c < cmds; c++) {
                        double t0 = now_ms();
                        struct rusage ru;
                        int status;
                        pid_t pid = fork();

                        if (pid < 0)
                                return 1;
                        if (pid == 0) {
                                dup2(null_fd, STDOUT_FILENO);
                                dup2(null_fd, STDERR_FILENO);
                                execv(words[c][0], words[c]);
                                _exit(127);
                        }
                        if (wait4(pid, &status, 0, &ru) != pid)
                                return 1;
                        if (!WIFEXITED(status) || WEXITSTATUS(status) == 127) {
                                fprintf(stderr, "bench/exec: '%s' failed\n", argv[2 + c]);
                                return 1;
                        }
                        wall[c * rounds + r] = now_ms() - t0;
                        cpu[c * rounds + r] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                                              (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
                }
        }
        printf("%d rounds, medians (fork + exec + exit, as the parent sees it):\n", rounds);
        for (int c = 0; c < cmds; c++)
                printf("  %-48s wall %7.3f ms   CPU %7.3f ms\n", argv[2 + c],
                       median(wall + c * rounds, rounds), median(cpu + c * rounds, rounds));
        return 0;
}
