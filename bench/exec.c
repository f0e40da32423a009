/*
 * bench/exec: what an exec costs, side by side: runs each command in turn, N rounds
 * (fork, exec, wait; stdin and output on /dev/null), and prints each one's median wall time and CPU
 * time (the child's user + system). Used to weigh a library's cost at VM start: link a
 * do-nothing program with and without it, or compare two builds' `vmm --version`.
 *
 *   bench/exec N "CMD [ARGS]" ...      (up to 16 commands, 16 words each)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_CMDS  16
#define MAX_WORDS 16

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
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (!wall || !cpu || null_fd < 0)
                return 1;
        for (int r = 0; r < rounds; r++) {
                for (int c = 0; c < cmds; c++) {
                        int st = bench_run(words[c], null_fd, &wall[c * rounds + r],
                                           &cpu[c * rounds + r]);

                        if (st < 0 || st == 127) {
                                fprintf(stderr, "bench/exec: '%s' failed\n", argv[2 + c]);
                                return 1;
                        }
                }
        }
        printf("%d rounds, medians (fork + exec + exit, as the parent sees it):\n", rounds);
        for (int c = 0; c < cmds; c++)
                printf("  %-48s wall %7.3f ms   CPU %7.3f ms\n", argv[2 + c],
                       bench_median(wall + c * rounds, rounds),
                       bench_median(cpu + c * rounds, rounds));
        return 0;
}
