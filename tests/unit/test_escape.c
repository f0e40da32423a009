/*
 * User strings in one-line output (common/escape.h): control characters escaped, only whole
 * escapes written when the text is cut, escaping idempotent; error messages and log lines
 * made from a path with a newline stay one line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/escape.h"
#include "common/log.h"

static void test_escape_controls(void **state)
{
        char buf[64], again[64];

        (void)state;
        assert_int_equal(escape_controls(buf, sizeof(buf), "a\nb\rc\td\x01\x7f\\é"),
                         strlen("a\\nb\\rc\\td\\x01\\x7f\\é"));
        assert_string_equal(buf, "a\\nb\\rc\\td\\x01\\x7f\\é");
        assert_true(escape_needed("x\ny"));
        assert_false(escape_needed(buf));
        /* Idempotent: a message escaped when made passes a sink that escapes again. */
        escape_controls(again, sizeof(again), buf);
        assert_string_equal(again, buf);
        /* Cut short: never half an escape. */
        assert_int_equal(escape_controls(buf, 5, "ab\ncd"), 6);
        assert_string_equal(buf, "ab\\n");
        assert_int_equal(escape_controls(buf, 4, "ab\ncd"), 6);
        assert_string_equal(buf, "ab");
        assert_int_equal(escape_controls(NULL, 0, "\x02"), 4);
}

static void test_error_message_is_one_line(void **state)
{
        struct error err = {0};

        (void)state;
        error_config(&err, "drive '%s': No such file", "/x\n2026-01-01 [forged:main:ERROR] boom");
        assert_null(strchr(err.msg, '\n'));
        assert_non_null(strstr(err.msg, "/x\\n2026-01-01 [forged"));
        error_prefix(&err, "drive '%s'", "a\rb");
        assert_null(strchr(err.msg, '\r'));
        assert_non_null(strstr(err.msg, "drive 'a\\rb': drive '/x\\n"));
}

static char captured[2048];
static unsigned lines;

static void capture(void *opaque, enum log_level level, const char *line, size_t len)
{
        (void)opaque;
        (void)level;
        snprintf(captured, sizeof(captured), "%.*s", (int)len, line);
        lines++;
}

static void test_log_line_is_one_line(void **state)
{
        (void)state;
        log_set_sink(capture, NULL);
        log_set_instance_id("vm\n1");
        LOG_INFO("snapshot %s loaded", "/s\nfake line");
        log_set_sink(NULL, NULL);
        log_set_instance_id("anonymous-instance");
        assert_int_equal(lines, 1);
        /* Only the line's own terminator. */
        assert_ptr_equal(strchr(captured, '\n'), captured + strlen(captured) - 1);
        assert_non_null(strstr(captured, "[vm\\n1:"));
        assert_non_null(strstr(captured, "snapshot /s\\nfake line loaded\n"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_escape_controls),
            cmocka_unit_test(test_error_message_is_one_line),
            cmocka_unit_test(test_log_line_is_one_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
