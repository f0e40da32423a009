/*
 * The logger: leveled, printf-checked text lines, one write per line.
 *
 * The logger is the one deliberately process-wide object (like Firecracker's LOGGER): every
 * VM in a process logs through it, so lines carry the instance id and thread name. The sink
 * is replaceable so tests can capture output. Guest-triggered messages go through
 * LOG_GUEST(), which is rate limited per owner (each device holds its own struct ratelimit)
 * so a hostile guest cannot flood the log.
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_OFF, LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* A sink receives one formatted line (with trailing newline). */
typedef void (*log_sink_fn)(void *opaque, enum log_level level, const char *line, size_t len);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);
/* NULL restores the default sink (stderr). */
void log_set_sink(log_sink_fn fn, void *opaque);
void log_set_instance_id(const char *id);
void log_set_show_level(bool on);
void log_set_show_origin(bool on);
/* Names the calling thread in log lines ("main", "vcpu0", "api"). */
void log_set_thread_name(const char *name);
/* Parses "Error", "Warning", "Info", "Debug", "Off" (any case, as Firecracker's API does). */
int log_level_parse(const char *s, enum log_level *out);
/* Lines dropped because the sink failed or the guest channel was rate limited. */
uint64_t log_lost_count(void);

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_ERROR(...) log_write(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_WARN(...)  log_write(LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_INFO(...)  log_write(LOG_LEVEL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_DEBUG(...)                                                                             \
        do {                                                                                       \
                if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
                        log_write(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__);               \
        } while (0)

/*
 * Token bucket for guest-triggered messages: at most `burst` lines per `interval_ns`; the
 * next line after a suppressed stretch says how many were dropped.
 */
struct ratelimit {
        pthread_mutex_t lock; /* devices log from several vCPU threads */
        uint64_t interval_ns;
        uint32_t burst;
        uint32_t printed;
        uint64_t window_start_ns;
        uint64_t suppressed;
};

#define RATELIMIT_INIT                                                                             \
        {                                                                                          \
                .lock = PTHREAD_MUTEX_INITIALIZER, .interval_ns = 1000000000ull, .burst = 10       \
        }

/* For ratelimits embedded in heap objects. */
void ratelimit_init(struct ratelimit *rl, uint64_t interval_ns, uint32_t burst);

void log_guest(struct ratelimit *rl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_GUEST(rl, ...) log_guest((rl), __FILE__, __LINE__, __VA_ARGS__)

#endif
