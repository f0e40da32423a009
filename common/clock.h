/* The one way the VMM reads a clock: nanoseconds of a POSIX clock as one 64-bit number. */
#ifndef COMMON_CLOCK_H
#define COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC for durations and deadlines, CLOCK_PROCESS_CPUTIME_ID for CPU time. */
static inline uint64_t clock_ns(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
