#include "fakes.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void fake_irq_set(void *opaque, bool level)
{
        struct fake_irq *f = opaque;

        f->level = level;
        if (level)
                f->raises++;
        if (f->nr_events < FAKE_IRQ_MAX_EVENTS)
                f->events[f->nr_events] = level;
        f->nr_events++;
}

void fake_irq_init(struct fake_irq *f)
{
        memset(f, 0, sizeof(*f));
}

struct irq_line fake_irq_line(struct fake_irq *f)
{
        return (struct irq_line){.set = fake_irq_set, .opaque = f};
}

void fake_irq_clear_events(struct fake_irq *f)
{
        f->nr_events = 0;
        f->raises = 0;
}

void out_capture_fn(void *opaque, const uint8_t *buf, size_t len)
{
        struct out_capture *c = opaque;
        size_t n = len;

        if (n > sizeof(c->buf) - c->len)
                n = sizeof(c->buf) - c->len;
        memcpy(c->buf + c->len, buf, n);
        c->len += n;
        c->calls++;
}

static void log_capture_sink(void *opaque, enum log_level level, const char *line, size_t len)
{
        struct log_capture *c = opaque;
        size_t n = len < sizeof(c->lines[0]) - 1 ? len : sizeof(c->lines[0]) - 1;

        if (c->nr >= LOG_CAPTURE_LINES)
                return;
        memcpy(c->lines[c->nr], line, n);
        c->lines[c->nr][n] = '\0';
        c->levels[c->nr] = level;
        c->nr++;
}

void log_capture_start(struct log_capture *c)
{
        memset(c, 0, sizeof(*c));
        log_set_sink(log_capture_sink, c);
}

void log_capture_stop(void)
{
        log_set_sink(NULL, NULL);
}

int log_capture_find(const struct log_capture *c, const char *needle)
{
        for (unsigned i = 0; i < c->nr; i++)
                if (strstr(c->lines[i], needle))
                        return (int)i;
        return -1;
}

struct guest_mem *test_mem_new(uint64_t size, gpa_t hole_start, gpa_t hole_end)
{
        struct guest_mem_spec spec = {.size = size, .hole_start = hole_start, .hole_end = hole_end};
        struct error err = {0};
        struct guest_mem *mem = NULL;

        if (guest_mem_create(&spec, &err, &mem))
                fail_msg("guest_mem_create: %s", err.msg);
        return mem;
}
