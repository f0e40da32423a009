/* A VM's logger settings (PUT /logger, --log-path, --level, the config file's logger): its
 * log context's file output, level and what its lines show. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fdio.h"
#include "common/log.h"
#include "controller_priv.h"

/* The file output: a sink of the VM's log context. The context serialises its lines, so
 * the fd and the torn state need no lock of their own; a new file gets a new object, swapped
 * in by log_context_set_sink (which waits for the line being written to the old one). */
struct controller_log_file {
        int fd;
        bool torn; /* the last line went out only in part */
        atomic_uint_fast64_t *missed;
};

static void log_file_sink(void *opaque, enum log_level level, const char *line, size_t len)
{
        struct controller_log_file *f = opaque;

        (void)level;
        /* A line cut short (a full disk, a full pipe) is ended before the next one. */
        if (fd_write_line(f->fd, &f->torn, line, len) != (ssize_t)len)
                atomic_fetch_add(f->missed, 1);
}

static void log_file_free(struct controller_log_file *f)
{
        if (f) {
                close(f->fd);
                free(f);
        }
}

int controller_log_apply(struct controller *c, const struct vmm_logger_config *l, struct error *err)
{
        if (l->log_path) {
                struct controller_log_file *f = malloc(sizeof(*f)), *old = c->log_file;

                if (!f)
                        return error_set(err, -ENOMEM, "out of memory");
                f->fd = vmm_open_output("log", l->log_path, err);
                if (f->fd < 0) {
                        int r = f->fd;

                        free(f);
                        return r;
                }
                f->torn = false;
                f->missed = &c->log_missed;
                log_context_set_sink(&c->log, log_file_sink, f);
                c->log_file = f;
                log_file_free(old);
        }
        if (l->has_level)
                log_context_set_level(&c->log, l->level);
        if (l->has_show_level)
                log_context_set_show_level(&c->log, l->show_level);
        if (l->has_show_log_origin)
                log_context_set_show_origin(&c->log, l->show_log_origin);
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
        if (c->log_file) {
                log_context_set_sink(&c->log, NULL, NULL);
                log_file_free(c->log_file);
                c->log_file = NULL;
        }
}
