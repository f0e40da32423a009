/* The logger's file output (PUT /logger's log_path, --log-path, the config file's logger). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "controller_priv.h"

static void log_file_sink(void *opaque, enum log_level level, const char *line, size_t len)
{
        struct controller *c = opaque;

        (void)level;
        /* A line cut short (a full disk, a full pipe) is ended before the next one. */
        if (fd_write_line(atomic_load(&c->log_fd), &c->log_torn, line, len) != (ssize_t)len)
                atomic_fetch_add(&c->log_missed, 1);
}

int controller_log_apply(struct controller *c, const struct vmm_logger_config *l, struct error *err)
{
        if (l->log_path) {
                int fd = vmm_open_output("log", l->log_path, err);
                int old;

                if (fd < 0)
                        return fd;
                /* Detach the sink first: log_set_sink waits for a line being written. */
                log_set_sink(NULL, NULL);
                old = atomic_exchange(&c->log_fd, fd);
                c->log_torn = false; /* a new file (the sink is detached meanwhile) */
                if (old >= 0)
                        close(old);
                log_set_sink(log_file_sink, c);
        }
        if (l->has_level)
                log_set_level(l->level);
        if (l->has_show_level)
                log_set_show_level(l->show_level);
        if (l->has_show_log_origin)
                log_set_show_origin(l->show_log_origin);
        return 0;
}

int controller_log_merge(struct vmm_logger_config *dst, struct vmm_logger_config *src)
{
        dst->present = true;
        if (src->log_path) {
                free(dst->log_path);
                dst->log_path = src->log_path;
                src->log_path = NULL;
        }
        if (src->has_level) {
                dst->has_level = true;
                dst->level = src->level;
        }
        if (src->has_show_level) {
                dst->has_show_level = true;
                dst->show_level = src->show_level;
        }
        if (src->has_show_log_origin) {
                dst->has_show_log_origin = true;
                dst->show_log_origin = src->show_log_origin;
        }
        return 0;
}

void controller_log_close(struct controller *c)
{
        int fd = atomic_load(&c->log_fd);

        if (fd >= 0) {
                log_set_sink(NULL, NULL);
                close(fd);
        }
}
