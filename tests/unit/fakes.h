/*
 * Test doubles shared by the unit tests: an interrupt line that records every level it is
 * given, an output sink that captures bytes, and a log sink that captures lines.
 *
 * The library vmm_test_fakes (tests/unit/CMakeLists.txt): it links vmm_devices for
 * devices/irq.h (header-only), so any unit test can link it.
 */
#ifndef TESTS_UNIT_FAKES_H
#define TESTS_UNIT_FAKES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "devices/irq.h"
#include "memory/guest_mem.h"

#define FAKE_IRQ_MAX_EVENTS 256

/* Records each call to the line's set(): the sequence of levels, in order. */
struct fake_irq {
        bool level;
        unsigned nr_events;
        bool events[FAKE_IRQ_MAX_EVENTS];
        unsigned raises; /* calls with level true */
};

void fake_irq_init(struct fake_irq *f);
struct irq_line fake_irq_line(struct fake_irq *f);
/* Forgets the recorded events (keeps the current level). */
void fake_irq_clear_events(struct fake_irq *f);

/* Captures bytes written by a device's output callback. */
struct out_capture {
        uint8_t buf[4096];
        size_t len;
        unsigned calls;
};

void out_capture_fn(void *opaque, const uint8_t *buf, size_t len);

/* Captures log lines while installed with log_capture_start. */
#define LOG_CAPTURE_LINES 32
struct log_capture {
        unsigned nr;
        enum log_level levels[LOG_CAPTURE_LINES];
        char lines[LOG_CAPTURE_LINES][1024];
};

void log_capture_start(struct log_capture *c);
void log_capture_stop(void);
/* Index of the first captured line containing needle, or -1. */
int log_capture_find(const struct log_capture *c, const char *needle);

/* Guest memory for a test (fails the test if it cannot be created). */
struct guest_mem *test_mem_new(uint64_t size, gpa_t hole_start, gpa_t hole_end);

#endif
