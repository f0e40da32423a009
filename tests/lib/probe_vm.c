#include "probe_vm.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

const char *probe_kernel;

static void on_console(void *opaque, const char *data, size_t len)
{
        struct guest *g = opaque;

        pthread_mutex_lock(&g->lock);
        if (g->len + len < sizeof(g->out)) {
                memcpy(g->out + g->len, data, len);
                g->len += len;
                g->out[g->len] = '\0';
        }
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

static void on_event(void *opaque, enum libvmm_event ev, int code)
{
        struct guest *g = opaque;

        pthread_mutex_lock(&g->lock);
        g->events[ev]++;
        if (g->nr_events < PROBE_VM_MAX_EVENTS)
                g->order[g->nr_events++] = ev;
        if (ev == LIBVMM_EVENT_EXITED)
                g->exit_code = code;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
        if (g->on_event)
                g->on_event(g, ev);
}

void guest_init(struct guest *g)
{
        memset(g, 0, sizeof(*g));
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        g->exit_code = -1;
}

struct libvmm_options guest_options(struct guest *g, const char *id)
{
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;

        o.id = id;
        o.console = on_console;
        o.event = on_event;
        o.opaque = g;
        return o;
}

void guest_wait_for(struct guest *g, const char *needle)
{
        pthread_mutex_lock(&g->lock);
        while (!strstr(g->out, needle))
                pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
}

unsigned guest_events(struct guest *g, enum libvmm_event ev)
{
        unsigned n;

        pthread_mutex_lock(&g->lock);
        n = g->events[ev];
        pthread_mutex_unlock(&g->lock);
        return n;
}

const char *probe_config(const char *scenario, bool track_dirty, const char *extra)
{
        static _Thread_local char buf[2048];

        snprintf(buf, sizeof(buf),
                 "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": "
                 "\"console=ttyS0 probe=%s\"}, \"machine-config\": {\"vcpu_count\": 1, "
                 "\"mem_size_mib\": 64, \"track_dirty_pages\": %s}%s%s}",
                 probe_kernel, scenario, track_dirty ? "true" : "false", extra ? ", " : "",
                 extra ? extra : "");
        return buf;
}

struct libvmm *idle_vm(struct guest *g, const char *id, bool track_dirty, const char *extra)
{
        struct libvmm_options o = guest_options(g, id);
        struct libvmm *vm;

        guest_init(g);
        if (libvmm_create(probe_config("idle", track_dirty, extra), &o, &vm))
                fail_msg("create: %s", libvmm_last_error());
        assert_int_equal(libvmm_start(vm), 0);
        guest_wait_for(g, "probe: idle ready");
        return vm;
}

void end_vm(struct libvmm *vm, struct guest *g)
{
        int code = -1;

        assert_int_equal(libvmm_send_ctrl_alt_del(vm), 0);
        assert_int_equal(libvmm_wait_exit(vm, -1, &code), 0);
        assert_int_equal(code, 0);
        /* The guest's last output is delivered before its EXITED event. */
        assert_non_null(strstr(g->out, "probe: ok idle"));
        libvmm_destroy(vm);
        assert_int_equal(g->events[LIBVMM_EVENT_EXITED], 1);
        assert_int_equal(g->exit_code, 0);
}

int probe_vm_args(int argc, char **argv, const char **dir)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s PROBE_KERNEL DIR [TEST_PATTERN]\n", argv[0]);
                return 2;
        }
        probe_kernel = argv[1];
        *dir = argv[2];
        if (argc > 3)
                cmocka_set_test_filter(argv[3]);
        setvbuf(stdout, NULL, _IOLBF, 0); /* each test's name is out before it can hang */
        libvmm_set_log("Warning", NULL, NULL);
        return 0;
}

static const char *watched;

static void on_alarm(int sig)
{
        static const char msg[] = "watchdog: the test hangs: ";

        (void)sig;
        /* Best effort: the exit status says it anyway. */
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) > 0 &&
            write(STDERR_FILENO, watched, strlen(watched)) > 0)
                (void)!write(STDERR_FILENO, "\n", 1);
        _exit(3);
}

void probe_vm_watchdog(const char *test, unsigned seconds)
{
        struct sigaction sa = {.sa_handler = on_alarm};

        watched = test;
        sigaction(SIGALRM, &sa, NULL);
        alarm(seconds);
}
