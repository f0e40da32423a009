/*
 * The logger: leveled, printf-checked text lines, one write per line.
 *
 * Two layers of settings, so that several VMs in one process (libvmm) are told apart and
 * never undo each other's settings:
 *
 * - The process's: a sink (stderr unless replaced: an embedder's libvmm_set_log, a test's
 *   capture), a level, whether lines show their level and origin, the instance id of lines
 *   from threads that belong to no VM, and the count of lines lost there. This is the only
 *   process-wide logging state, like Firecracker's LOGGER; it changes only when its owner
 *   (the executable's main, the embedder, a test) says so, never because a VM comes or goes.
 * - A VM's context (struct log_context, one per controller): the VM's instance id and what
 *   its "logger" configuration set (a log file as its sink, a level, what lines show); a
 *   setting it leaves unset is the process's. The threads that work for a VM (its VMM
 *   thread, its vCPU threads, the executable's API thread) are bound to its context
 *   (log_bind), so their lines read "[<instance id>:<thread>...]" and follow that VM's
 *   settings only. The context's owner destroys it after every thread bound to it ended or
 *   unbound.
 *
 * Lines for one sink are serialised (a sink is called for one whole line at a time, under
 * the lock of the context that owns it), and replacing a sink waits for the line being
 * written, so the old sink's opaque may be freed once log_set_sink returns. Guest-triggered
 * messages go through LOG_GUEST(), which is rate limited per owner (each device holds its
 * own struct ratelimit) so a hostile guest cannot flood the log.
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_OFF, LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* A sink receives one formatted line (with trailing newline). */
typedef void (*log_sink_fn)(void *opaque, enum log_level level, const char *line, size_t len);

/* A VM's logging context (see above). Its members are the logger's. */
struct log_context {
        pthread_mutex_t lock;                /* serialises the lines written to sink; guards sink */
        char instance_id[65];                /* fixed at log_context_init */
        _Atomic int level;                   /* enum log_level, or -1: the process's */
        _Atomic int show_level, show_origin; /* 0 / 1, or -1: the process's */
        log_sink_fn sink;                    /* NULL: the process's sink */
        void *sink_opaque;
        atomic_uint_fast64_t lost;
};

/* ---- the process's settings ---- */

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* NULL restores the default sink (stderr). */
void log_set_sink(log_sink_fn fn, void *opaque);
/* The instance id of lines from threads bound to no VM. */
void log_set_instance_id(const char *id);
void log_set_show_level(bool on);
void log_set_show_origin(bool on);
/* Lines of threads bound to no VM dropped because the sink failed or the guest channel was
 * rate limited. */
uint64_t log_lost_count(void);

/* ---- a VM's context ---- */

/* Every setting unset (the process's), no sink of its own. */
void log_context_init(struct log_context *ctx, const char *instance_id);
/* No thread may be bound to ctx any more, but the caller (which is unbound here). */
void log_context_destroy(struct log_context *ctx);
/* NULL: the process's sink again. Waits for a line being written to the old sink. */
void log_context_set_sink(struct log_context *ctx, log_sink_fn fn, void *opaque);
void log_context_set_level(struct log_context *ctx, enum log_level level);
void log_context_set_show_level(struct log_context *ctx, bool on);
void log_context_set_show_origin(struct log_context *ctx, bool on);
/* The context's lines dropped (failed sink, rate-limited guest messages). */
uint64_t log_context_lost(struct log_context *ctx);

/* Binds the calling thread to ctx (NULL: to no VM); returns the previous binding. */
struct log_context *log_bind(struct log_context *ctx);
/* The calling thread's binding: non-NULL on a thread that works for a VM. */
struct log_context *log_bound(void);

/* ---- lines ---- */

/* Whether a line of this level is written for the calling thread (its VM's level, or the
 * process's). */
bool log_enabled(enum log_level level);
/* Names the calling thread in log lines ("main", "vcpu0", "api"). */
void log_set_thread_name(const char *name);
/* Parses "Error", "Warning", "Info", "Debug", "Off" (any case, as Firecracker's API does). */
int log_level_parse(const char *s, enum log_level *out);

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
