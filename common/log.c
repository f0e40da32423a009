#include "log.h"

#include "escape.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fdio.h"

/* The process's settings: a context whose every setting is set; its instance id may change
 * (under its lock). */
static struct log_context root = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .instance_id = "anonymous-instance",
    .level = LOG_LEVEL_INFO,
    .show_level = 1,
    .show_origin = 1,
};

static _Thread_local char thread_name[16] = "main";
static _Thread_local struct log_context *bound;

/* ---- settings ---- */

void log_context_init(struct log_context *ctx, const char *instance_id)
{
        memset(ctx, 0, sizeof(*ctx));
        pthread_mutex_init(&ctx->lock, NULL);
        escape_controls(ctx->instance_id, sizeof(ctx->instance_id), instance_id);
        atomic_init(&ctx->level, -1);
        atomic_init(&ctx->show_level, -1);
        atomic_init(&ctx->show_origin, -1);
        atomic_init(&ctx->lost, 0);
}

void log_context_destroy(struct log_context *ctx)
{
        if (bound == ctx)
                bound = NULL;
        pthread_mutex_destroy(&ctx->lock);
}

void log_context_set_sink(struct log_context *ctx, log_sink_fn fn, void *opaque)
{
        pthread_mutex_lock(&ctx->lock);
        ctx->sink = fn;
        ctx->sink_opaque = opaque;
        pthread_mutex_unlock(&ctx->lock);
}

void log_context_set_level(struct log_context *ctx, enum log_level level)
{
        atomic_store(&ctx->level, (int)level);
}

void log_context_set_show_level(struct log_context *ctx, bool on)
{
        atomic_store(&ctx->show_level, on);
}

void log_context_set_show_origin(struct log_context *ctx, bool on)
{
        atomic_store(&ctx->show_origin, on);
}

uint64_t log_context_lost(struct log_context *ctx)
{
        return atomic_load(&ctx->lost);
}

void log_set_level(enum log_level level)
{
        log_context_set_level(&root, level);
}

enum log_level log_get_level(void)
{
        return (enum log_level)atomic_load(&root.level);
}

void log_set_sink(log_sink_fn fn, void *opaque)
{
        log_context_set_sink(&root, fn, opaque);
}

void log_set_instance_id(const char *id)
{
        pthread_mutex_lock(&root.lock);
        escape_controls(root.instance_id, sizeof(root.instance_id), id);
        pthread_mutex_unlock(&root.lock);
}

void log_set_show_level(bool on)
{
        log_context_set_show_level(&root, on);
}

void log_set_show_origin(bool on)
{
        log_context_set_show_origin(&root, on);
}

uint64_t log_lost_count(void)
{
        return log_context_lost(&root);
}

struct log_context *log_bind(struct log_context *ctx)
{
        struct log_context *prev = bound;

        bound = ctx;
        return prev;
}

struct log_context *log_bound(void)
{
        return bound;
}

/* The calling thread's context: its VM's, or the process's. */
static struct log_context *current(void)
{
        return bound ? bound : &root;
}

/* A setting of the context, or the process's where the context leaves it unset. */
static int setting(_Atomic int *own, _Atomic int *process)
{
        int v = atomic_load(own);

        return v >= 0 ? v : atomic_load(process);
}

bool log_enabled(enum log_level level)
{
        struct log_context *ctx = current();

        return level != LOG_LEVEL_OFF && (int)level <= setting(&ctx->level, &root.level);
}

void log_set_thread_name(const char *name)
{
        snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int log_level_parse(const char *s, enum log_level *out)
{
        static const struct {
                const char *name;
                enum log_level level;
        } names[] = {
            {"off", LOG_LEVEL_OFF},     {"error", LOG_LEVEL_ERROR}, {"warning", LOG_LEVEL_WARN},
            {"warn", LOG_LEVEL_WARN},   {"info", LOG_LEVEL_INFO},   {"debug", LOG_LEVEL_DEBUG},
            {"trace", LOG_LEVEL_DEBUG},
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcasecmp(s, names[i].name) == 0) {
                        *out = names[i].level;
                        return 0;
                }
        }
        return -EINVAL;
}

static const char *level_name(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:
                return "ERROR";
        case LOG_LEVEL_WARN:
                return "WARN";
        case LOG_LEVEL_INFO:
                return "INFO";
        case LOG_LEVEL_DEBUG:
                return "DEBUG";
        default:
                return "OFF";
        }
}

static const char *basename_of(const char *path)
{
        const char *slash = strrchr(path, '/');
        return slash ? slash + 1 : path;
}

/* One line to ctx's sink; a context without a sink of its own hands it to the process's,
 * whose default is stderr. Lost lines are counted in ctx (the line's own context). */
static void emit(struct log_context *ctx, struct log_context *owner, enum log_level level,
                 const char *line, size_t len)
{
        pthread_mutex_lock(&ctx->lock);
        if (ctx->sink)
                ctx->sink(ctx->sink_opaque, level, line, len);
        else if (ctx != &root)
                emit(&root, owner, level, line, len);
        else if (fd_write_all(STDERR_FILENO, line, len))
                atomic_fetch_add(&owner->lost, 1);
        pthread_mutex_unlock(&ctx->lock);
}

static void log_vwrite(enum log_level level, const char *file, int line, const char *fmt,
                       va_list ap)
{
        struct log_context *ctx = current();
        char buf[1024], msg[1024], id[sizeof(root.instance_id)];
        struct timespec ts;
        struct tm tm;
        size_t n;
        int r;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        if (ctx == &root) {
                pthread_mutex_lock(&root.lock);
                memcpy(id, root.instance_id, sizeof(id));
                pthread_mutex_unlock(&root.lock);
        } else {
                memcpy(id, ctx->instance_id, sizeof(id));
        }
        r = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec, id, thread_name);
        n = r < 0 ? 0 : (size_t)r;
        if (setting(&ctx->show_level, &root.show_level) && n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s", level_name(level));
        if (setting(&ctx->show_origin, &root.show_origin) && n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s:%d", basename_of(file), line);
        if (n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "] ");
        if (n < sizeof(buf)) {
                /* User strings in the message (paths, ids) cannot start a forged line. */
                vsnprintf(msg, sizeof(msg), fmt, ap);
                escape_controls(buf + n, sizeof(buf) - n, msg);
                n += strlen(buf + n);
        }
        if (n >= sizeof(buf) - 1)
                n = sizeof(buf) - 2; /* truncated: keep the line terminated */
        buf[n++] = '\n';
        emit(ctx, ctx, level, buf, n);
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
        va_list ap;

        if (!log_enabled(level))
                return;
        va_start(ap, fmt);
        log_vwrite(level, file, line, fmt, ap);
        va_end(ap);
}

void log_guest(struct ratelimit *rl, const char *file, int line, const char *fmt, ...)
{
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        va_list ap;

        if (!log_enabled(LOG_LEVEL_WARN))
                return;
        pthread_mutex_lock(&rl->lock);
        if (now - rl->window_start_ns >= rl->interval_ns) {
                if (rl->suppressed)
                        log_write(LOG_LEVEL_WARN, file, line,
                                  "guest error messages suppressed: %llu",
                                  (unsigned long long)rl->suppressed);
                rl->window_start_ns = now;
                rl->printed = 0;
                rl->suppressed = 0;
        }
        if (rl->printed >= rl->burst) {
                rl->suppressed++;
                atomic_fetch_add(&current()->lost, 1);
                pthread_mutex_unlock(&rl->lock);
                return;
        }
        rl->printed++;
        pthread_mutex_unlock(&rl->lock);
        va_start(ap, fmt);
        log_vwrite(LOG_LEVEL_WARN, file, line, fmt, ap);
        va_end(ap);
}

void ratelimit_init(struct ratelimit *rl, uint64_t interval_ns, uint32_t burst)
{
        memset(rl, 0, sizeof(*rl));
        pthread_mutex_init(&rl->lock, NULL);
        rl->interval_ns = interval_ns;
        rl->burst = burst;
}
