#include "log.h"

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

struct logger {
        _Atomic int level;
        atomic_bool show_level;
        atomic_bool show_origin;
        pthread_mutex_t lock; /* guards sink and instance id */
        log_sink_fn sink;
        void *sink_opaque;
        char instance_id[64];
        atomic_uint_fast64_t lost;
};

static struct logger logger = {
    .level = LOG_LEVEL_INFO,
    .show_level = true,
    .show_origin = true,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .instance_id = "anonymous-instance",
};

static _Thread_local char thread_name[16] = "main";

void log_set_level(enum log_level level)
{
        atomic_store(&logger.level, (int)level);
}

enum log_level log_get_level(void)
{
        return (enum log_level)atomic_load(&logger.level);
}

bool log_enabled(enum log_level level)
{
        return level != LOG_LEVEL_OFF && (int)level <= atomic_load(&logger.level);
}

void log_set_sink(log_sink_fn fn, void *opaque)
{
        pthread_mutex_lock(&logger.lock);
        logger.sink = fn;
        logger.sink_opaque = opaque;
        pthread_mutex_unlock(&logger.lock);
}

void log_set_instance_id(const char *id)
{
        pthread_mutex_lock(&logger.lock);
        snprintf(logger.instance_id, sizeof(logger.instance_id), "%s", id);
        pthread_mutex_unlock(&logger.lock);
}

void log_set_show_level(bool on)
{
        atomic_store(&logger.show_level, on);
}

void log_set_show_origin(bool on)
{
        atomic_store(&logger.show_origin, on);
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

uint64_t log_lost_count(void)
{
        return atomic_load(&logger.lost);
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

static void default_sink(enum log_level level, const char *line, size_t len)
{
        (void)level;
        if (fd_write_all(STDERR_FILENO, line, len))
                atomic_fetch_add(&logger.lost, 1);
}

static void log_vwrite(enum log_level level, const char *file, int line, const char *fmt,
                       va_list ap)
{
        char buf[1024];
        struct timespec ts;
        struct tm tm;
        size_t n;
        int r;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        pthread_mutex_lock(&logger.lock);
        r = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec, logger.instance_id, thread_name);
        n = r < 0 ? 0 : (size_t)r;
        if (atomic_load(&logger.show_level) && n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s", level_name(level));
        if (atomic_load(&logger.show_origin) && n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s:%d", basename_of(file), line);
        if (n < sizeof(buf))
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "] ");
        if (n < sizeof(buf)) {
                r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
                n += r < 0 ? 0 : (size_t)r;
        }
        if (n >= sizeof(buf) - 1)
                n = sizeof(buf) - 2; /* truncated: keep the line terminated */
        buf[n++] = '\n';
        if (logger.sink)
                logger.sink(logger.sink_opaque, level, buf, n);
        else
                default_sink(level, buf, n);
        pthread_mutex_unlock(&logger.lock);
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
                atomic_fetch_add(&logger.lost, 1);
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
