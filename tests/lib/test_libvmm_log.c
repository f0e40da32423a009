/*
 * libvmm's logger (libvmm.h: PROCESS-WIDE STATE, libvmm_set_log), through its public header
 * with the probe guest:
 *
 * - a VM's "logger" section applies to that VM only: its file gets its lines (at its level,
 *   in its format), the embedder's sink keeps every other VM's, during that VM's life and
 *   after it was destroyed; every line names its VM and thread ("[id:vcpu0...");
 * - libvmm_set_log racing itself while VMs log: each line reaches one of the sinks, with
 *   that sink's own opaque, and none goes to stderr meanwhile;
 * - a log sink that calls into libvmm from the VMM's threads gets -EDEADLK.
 *
 * Arguments: probe_vm_args (the probe, a scratch directory, the tests to run).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "libvmm.h"
#include "probe_vm.h"

#define WATCHDOG_S 120

static const char *dir;

/* Runs the probe's hello scenario (it resets the machine at once) to its end. */
static void hello(const char *id, const char *extra)
{
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;
        struct libvmm *vm;
        int code = -1;

        o.id = id;
        if (libvmm_create(probe_config("hello", false, extra), &o, &vm))
                fail_msg("create %s: %s", id, libvmm_last_error());
        assert_int_equal(libvmm_start(vm), 0);
        assert_int_equal(libvmm_wait_exit(vm, -1, &code), 0);
        assert_int_equal(code, 0);
        libvmm_destroy(vm);
}

/* ---- the embedder's sink ---- */

struct capture {
        pthread_mutex_t lock;
        char text[1 << 16];
        size_t len;
};

static void capture_line(void *opaque, const char *line, size_t len)
{
        struct capture *c = opaque;

        pthread_mutex_lock(&c->lock);
        if (c->len + len < sizeof(c->text)) {
                memcpy(c->text + c->len, line, len);
                c->len += len;
                c->text[c->len] = '\0';
        }
        pthread_mutex_unlock(&c->lock);
}

static char *read_file(const char *path)
{
        static char buf[1 << 16];
        FILE *f = fopen(path, "r");
        size_t n;

        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
}

/* Whether some line of text holds both a and b. */
static bool line_with(const char *text, const char *a, const char *b)
{
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                const char *end = strchr(l, '\n');
                const char *pa = strstr(l, a), *pb = strstr(l, b);

                if (pa && pb && (!end || (pa < end && pb < end)))
                        return true;
        }
        return false;
}

static void test_vm_logger_is_the_vms(void **state)
{
        static struct capture cap = {.lock = PTHREAD_MUTEX_INITIALIZER};
        char path[512], extra[800];
        struct libvmm_options oa = LIBVMM_OPTIONS_INIT, ob = LIBVMM_OPTIONS_INIT;
        struct libvmm *a, *b;
        const char *file;
        int code;

        (void)state;
        probe_vm_watchdog("test_vm_logger_is_the_vms", WATCHDOG_S);
        assert_int_equal(libvmm_set_log("Info", capture_line, &cap), 0);
        snprintf(path, sizeof(path), "%s/logA.log", dir);
        snprintf(extra, sizeof(extra),
                 "\"logger\": {\"log_path\": \"%s\", \"level\": \"Debug\", \"show_level\": "
                 "false}",
                 path);
        /* A logs to its own file at its own level; B has no logger section: both at once. */
        oa.id = "logA";
        ob.id = "logB";
        if (libvmm_create(probe_config("hello", false, extra), &oa, &a))
                fail_msg("create: %s", libvmm_last_error());
        if (libvmm_create(probe_config("hello", false, NULL), &ob, &b))
                fail_msg("create: %s", libvmm_last_error());
        assert_int_equal(libvmm_start(a), 0);
        assert_int_equal(libvmm_start(b), 0);
        assert_int_equal(libvmm_wait_exit(a, -1, &code), 0);
        assert_int_equal(libvmm_wait_exit(b, -1, &code), 0);
        libvmm_destroy(a);
        /* A is gone: its logger section did not take the embedder's sink with it. */
        hello("logC", NULL);
        libvmm_destroy(b);
        assert_int_equal(libvmm_set_log("Warning", NULL, NULL), 0);

        file = read_file(path);
        /* A's file: A's lines only, from its VM thread and its vCPU, Debug ones included,
         * without the level (its show_level). */
        assert_true(line_with(file, "[logA:vmm:", "microVM started"));
        assert_true(line_with(file, "[logA:vcpu0:", "guest requested a reset"));
        assert_true(line_with(file, "[logA:vcpu0:", "unhandled write"));
        assert_null(strstr(file, ":INFO:"));
        assert_null(strstr(file, "[logB:"));
        assert_null(strstr(file, "[logC:"));
        /* The embedder's sink: B's and C's lines, each naming its VM and thread, at the
         * process's level (no Debug-only line) and format. */
        assert_true(line_with(cap.text, "[logB:vmm:INFO:", "microVM started"));
        assert_true(line_with(cap.text, "[logB:vcpu0:INFO:", "guest requested a reset"));
        assert_true(line_with(cap.text, "[logC:vmm:INFO:", "microVM started"));
        assert_true(line_with(cap.text, "[logC:vcpu0:INFO:", "guest requested a reset"));
        assert_true(line_with(cap.text, "[logC:", "the microVM is being destroyed"));
        assert_null(strstr(cap.text, "[logA:"));
        assert_null(strstr(cap.text, "unhandled"));
        assert_null(strstr(cap.text, "anonymous-instance"));
        unlink(path);
        probe_vm_watchdog("", 0);
}

/* ---- libvmm_set_log against itself ---- */

#define RACE_VMS 6

struct racer {
        int tag;
        atomic_uint lines, mismatched;
};

static struct racer racer[2];
static atomic_bool race_done;

static void racer_line(struct racer *expected, void *opaque)
{
        atomic_fetch_add(&expected->lines, 1);
        if (opaque != expected)
                atomic_fetch_add(&expected->mismatched, 1);
}

static void sink_a(void *opaque, const char *line, size_t len)
{
        (void)line;
        (void)len;
        racer_line(&racer[0], opaque);
}

static void sink_b(void *opaque, const char *line, size_t len)
{
        (void)line;
        (void)len;
        racer_line(&racer[1], opaque);
}

static void *set_log_again_and_again(void *arg)
{
        struct racer *r = arg;

        while (!atomic_load(&race_done))
                if (libvmm_set_log("Info", r == &racer[0] ? sink_a : sink_b, r))
                        return (void *)1;
        return NULL;
}

static void test_set_log_races_itself(void **state)
{
        char path[512];
        pthread_t t[2];
        struct stat st;
        void *rc;
        int err_fd, saved;

        (void)state;
        probe_vm_watchdog("test_set_log_races_itself", WATCHDOG_S);
        /* Whatever reaches stderr meanwhile lands in this file. */
        snprintf(path, sizeof(path), "%s/stderr.txt", dir);
        err_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(err_fd >= 0);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        dup2(err_fd, STDERR_FILENO);
        assert_int_equal(libvmm_set_log("Info", sink_a, &racer[0]), 0);
        atomic_store(&race_done, false);
        for (int i = 0; i < 2; i++)
                pthread_create(&t[i], NULL, set_log_again_and_again, &racer[i]);
        /* The VMs log from their threads while the sinks change under them. */
        for (int i = 0; i < RACE_VMS; i++)
                hello("racing", NULL);
        atomic_store(&race_done, true);
        for (int i = 0; i < 2; i++) {
                pthread_join(t[i], &rc);
                assert_null(rc);
        }
        libvmm_set_log("Warning", NULL, NULL);
        dup2(saved, STDERR_FILENO);
        close(saved);
        assert_int_equal(fstat(err_fd, &st), 0);
        close(err_fd);
        if (st.st_size)
                fail_msg("lines went to stderr while the sink changed: %s", read_file(path));
        unlink(path);
        /* Each VM wrote three lines at least (started, the reset, destroyed). */
        assert_true(atomic_load(&racer[0].lines) + atomic_load(&racer[1].lines) >= 3 * RACE_VMS);
        assert_int_equal(atomic_load(&racer[0].mismatched), 0);
        assert_int_equal(atomic_load(&racer[1].mismatched), 0);
        probe_vm_watchdog("", 0);
}

/* ---- a sink calling libvmm ---- */

static _Atomic(struct libvmm *) sink_target;
static atomic_int sink_rc_vmm = 1, sink_rc_vcpu = 1;

static void calling_sink(void *opaque, const char *line, size_t len)
{
        struct libvmm *vm = atomic_load(&sink_target);
        struct libvmm_info info;
        atomic_int *rc = NULL;

        (void)opaque;
        if (!vm)
                return;
        if (memmem(line, len, "[sinkcall:vmm:", 14) && memmem(line, len, "microVM started", 15))
                rc = &sink_rc_vmm;
        else if (memmem(line, len, "[sinkcall:vcpu0:", 16) && memmem(line, len, "reset", 5))
                rc = &sink_rc_vcpu;
        if (rc)
                atomic_store(rc, libvmm_info(vm, &info));
}

static void test_sink_calling_libvmm(void **state)
{
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;
        struct libvmm *vm;
        int code;

        (void)state;
        probe_vm_watchdog("test_sink_calling_libvmm", WATCHDOG_S);
        assert_int_equal(libvmm_set_log("Info", calling_sink, NULL), 0);
        o.id = "sinkcall";
        if (libvmm_create(probe_config("hello", false, NULL), &o, &vm))
                fail_msg("create: %s", libvmm_last_error());
        atomic_store(&sink_target, vm);
        assert_int_equal(libvmm_start(vm), 0);
        assert_int_equal(libvmm_wait_exit(vm, -1, &code), 0);
        atomic_store(&sink_target, NULL);
        libvmm_destroy(vm);
        assert_int_equal(libvmm_set_log("Warning", NULL, NULL), 0);
        /* On the VM thread the call would wait for its own queue, on a vCPU for the VM. */
        assert_int_equal(atomic_load(&sink_rc_vmm), -EDEADLK);
        assert_int_equal(atomic_load(&sink_rc_vcpu), -EDEADLK);
        probe_vm_watchdog("", 0);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_vm_logger_is_the_vms),
            cmocka_unit_test(test_set_log_races_itself),
            cmocka_unit_test(test_sink_calling_libvmm),
        };

        if (probe_vm_args(argc, argv, &dir))
                return 2;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
