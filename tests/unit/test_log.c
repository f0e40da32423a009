/*
 * common/log.c: the process's settings and a VM's context (common/log.h). A thread bound to
 * a context logs with the context's instance id and whatever the context sets (its sink, its
 * level, its format), the process's otherwise; a context never changes the process's
 * settings nor another context's; a thread bound to no VM is not affected by any context.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"

/* What a sink received. */
struct sink {
        char text[4096];
        unsigned lines;
};

static void sink_line(void *opaque, enum log_level level, const char *line, size_t len)
{
        struct sink *s = opaque;
        size_t have = strlen(s->text);

        (void)level;
        if (have + len < sizeof(s->text)) {
                memcpy(s->text + have, line, len);
                s->text[have + len] = '\0';
        }
        s->lines++;
}

static struct sink process;

static int setup(void **state)
{
        (void)state;
        memset(&process, 0, sizeof(process));
        log_set_sink(sink_line, &process);
        log_set_level(LOG_LEVEL_INFO);
        log_set_show_level(true);
        log_set_show_origin(false);
        log_set_instance_id("proc");
        log_bind(NULL);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        log_bind(NULL);
        log_set_sink(NULL, NULL);
        return 0;
}

static void test_unbound_thread_uses_the_process_settings(void **state)
{
        (void)state;
        LOG_INFO("hello %d", 1);
        LOG_DEBUG("not at Info");
        assert_non_null(strstr(process.text, "[proc:main:INFO] hello 1\n"));
        assert_int_equal(process.lines, 1);
}

static void test_context_without_settings_falls_back(void **state)
{
        struct log_context vm;

        (void)state;
        log_context_init(&vm, "vm1");
        assert_null(log_bind(&vm));
        assert_ptr_equal(log_bound(), &vm);
        log_set_thread_name("vcpu0");
        LOG_INFO("from the vm");
        LOG_DEBUG("not at Info");
        log_set_thread_name("main");
        /* The process's sink, level and format, the VM's id. */
        assert_non_null(strstr(process.text, "[vm1:vcpu0:INFO] from the vm\n"));
        assert_int_equal(process.lines, 1);
        log_context_destroy(&vm);
        /* Destroying the context the caller is bound to unbinds it. */
        assert_null(log_bound());
}

static void test_context_settings_are_its_own(void **state)
{
        struct log_context a, b;
        struct sink own = {0};

        (void)state;
        log_context_init(&a, "a");
        log_context_init(&b, "b");
        log_context_set_sink(&a, sink_line, &own);
        log_context_set_level(&a, LOG_LEVEL_DEBUG);
        log_context_set_show_level(&a, false);
        log_bind(&a);
        assert_true(log_enabled(LOG_LEVEL_DEBUG));
        LOG_DEBUG("a debug");
        log_bind(&b);
        assert_false(log_enabled(LOG_LEVEL_DEBUG));
        LOG_DEBUG("b debug");
        LOG_INFO("b info");
        log_bind(NULL);
        LOG_INFO("process info");
        /* a's lines in a's sink, at a's level, in a's format; nothing else there. */
        assert_string_equal(own.text + strcspn(own.text, "["), "[a:main] a debug\n");
        assert_int_equal(own.lines, 1);
        /* b and the process: untouched by a. */
        assert_non_null(strstr(process.text, "[b:main:INFO] b info\n"));
        assert_non_null(strstr(process.text, "[proc:main:INFO] process info\n"));
        assert_null(strstr(process.text, "debug"));
        assert_int_equal(log_get_level(), LOG_LEVEL_INFO);
        /* Without its sink, a's lines go to the process's sink again. */
        log_context_set_sink(&a, NULL, NULL);
        log_bind(&a);
        LOG_INFO("a again");
        log_bind(NULL);
        assert_non_null(strstr(process.text, "[a:main] a again\n"));
        assert_int_equal(own.lines, 1);
        log_context_destroy(&a);
        log_context_destroy(&b);
}

/* A thread bound to a context; the binding is the thread's own. */
static void *bound_thread(void *arg)
{
        log_bind(arg);
        log_set_thread_name("other");
        LOG_INFO("from the other thread");
        return NULL;
}

static void test_binding_is_per_thread(void **state)
{
        struct log_context vm;
        pthread_t t;

        (void)state;
        log_context_init(&vm, "vmt");
        pthread_create(&t, NULL, bound_thread, &vm);
        pthread_join(t, NULL);
        LOG_INFO("from main");
        assert_non_null(strstr(process.text, "[vmt:other:INFO] from the other thread\n"));
        assert_non_null(strstr(process.text, "[proc:main:INFO] from main\n"));
        log_context_destroy(&vm);
}

static void test_guest_lines_lost_count_in_their_context(void **state)
{
        struct ratelimit rl;
        struct log_context vm;

        (void)state;
        ratelimit_init(&rl, 1000000000000ull, 2);
        log_context_init(&vm, "guest");
        log_bind(&vm);
        for (int i = 0; i < 5; i++)
                LOG_GUEST(&rl, "guest says %d", i);
        log_bind(NULL);
        assert_int_equal(log_context_lost(&vm), 3);
        assert_int_equal(log_lost_count(), 0);
        log_context_destroy(&vm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_unbound_thread_uses_the_process_settings, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_context_without_settings_falls_back, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_context_settings_are_its_own, setup, teardown),
            cmocka_unit_test_setup_teardown(test_binding_is_per_thread, setup, teardown),
            cmocka_unit_test_setup_teardown(test_guest_lines_lost_count_in_their_context, setup,
                                            teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
