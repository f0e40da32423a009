/*
 * libvmm's threading contract (libvmm.h: THREADS, CALLBACKS, THE END OF A VM, DESTROY),
 * through its public header with the probe guest:
 *
 * - callbacks of two VMs calling into each other's VM at the same time, and into their own;
 *   libvmm_wait_exit and libvmm_destroy on a callback's own VM refused with -EDEADLK;
 * - an ended VM: pause, resume, snapshot and Ctrl-Alt-Del refused, no event after EXITED,
 *   the EXITED callback before the exit fd and before libvmm_wait_exit returns, the console
 *   output complete by then;
 * - libvmm_destroy waking a libvmm_wait_exit(vm, -1) waiter with -ESHUTDOWN;
 * - libvmm_destroy beside threads calling into the VM in a loop (a metrics scraper beside a
 *   teardown): every scraper ends on -ESHUTDOWN, nothing is used after it was freed (the
 *   AddressSanitizer build runs this too).
 *
 * Every loop is bounded by a count or by an event the test causes; a test that hangs is
 * ended by the watchdog. Arguments: probe_vm_args (the probe, a scratch directory, the
 * tests to run).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "libvmm.h"
#include "probe_vm.h"

#define WATCHDOG_S   120
#define MSG_SHUTDOWN "The microVM is shutting down."

static const char *dir;

/* ---- callbacks calling into VMs ---- */

/* Two VMs whose PAUSED callbacks meet (both run at once), then each calls into the other VM
 * and into its own. */
struct pair {
        struct libvmm *vm[2];
        struct guest g[2];
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned arrived;
        int other_rc[2], own_rc[2], wait_rc[2], destroy_err[2];
};

static struct pair pair;

static void pair_on_event(struct guest *g, enum libvmm_event ev)
{
        int me = g == &pair.g[1];
        struct libvmm_info info;
        unsigned target;

        if (ev != LIBVMM_EVENT_PAUSED)
                return;
        pthread_mutex_lock(&pair.lock);
        target = 2 * ((pair.arrived / 2) + 1);
        pair.arrived++;
        pthread_cond_broadcast(&pair.cond);
        while (pair.arrived < target)
                pthread_cond_wait(&pair.cond, &pair.lock);
        pthread_mutex_unlock(&pair.lock);
        /* Both callbacks are running now: each VM's callback waits for the other VM. */
        pair.other_rc[me] = libvmm_info(pair.vm[!me], &info);
        pair.own_rc[me] = libvmm_info(pair.vm[me], &info);
        pair.wait_rc[me] = libvmm_wait_exit(pair.vm[me], -1, NULL);
        libvmm_destroy(pair.vm[me]); /* refused: the VM stays */
        pair.destroy_err[me] = strstr(libvmm_last_error(), "own callback") != NULL;
}

static void *pause_one(void *arg)
{
        return (void *)(intptr_t)libvmm_pause(arg);
}

static void test_callbacks_call_into_vms(void **state)
{
        char id[16];
        void *rc[2];
        pthread_t t[2];

        (void)state;
        probe_vm_watchdog("test_callbacks_call_into_vms", WATCHDOG_S);
        memset(&pair, 0, sizeof(pair));
        pthread_mutex_init(&pair.lock, NULL);
        pthread_cond_init(&pair.cond, NULL);
        for (int i = 0; i < 2; i++) {
                snprintf(id, sizeof(id), "cross%d", i);
                pair.vm[i] = idle_vm(&pair.g[i], id, false, NULL);
                pair.g[i].on_event = pair_on_event;
        }
        for (int round = 0; round < 2; round++) {
                for (int i = 0; i < 2; i++)
                        pthread_create(&t[i], NULL, pause_one, pair.vm[i]);
                for (int i = 0; i < 2; i++) {
                        pthread_join(t[i], &rc[i]);
                        assert_int_equal((intptr_t)rc[i], 0);
                        /* The pause returned after its PAUSED callback, which did it all. */
                        assert_int_equal(guest_events(&pair.g[i], LIBVMM_EVENT_PAUSED), round + 1);
                        assert_int_equal(pair.other_rc[i], 0);
                        assert_int_equal(pair.own_rc[i], 0);
                        assert_int_equal(pair.wait_rc[i], -EDEADLK);
                        assert_true(pair.destroy_err[i]);
                }
                for (int i = 0; i < 2; i++)
                        assert_int_equal(libvmm_resume(pair.vm[i]), 0);
        }
        for (int i = 0; i < 2; i++)
                end_vm(pair.vm[i], &pair.g[i]);
        probe_vm_watchdog("", 0);
}

/* ---- an ended VM ---- */

struct ending {
        struct guest g;
        struct libvmm *vm;
        atomic_bool waiter_returned;
        int waiter_rc, waiter_code;
        unsigned exited_seen_by_waiter;
        /* What the EXITED callback saw. */
        int fd_ready, waiter_had_returned;
        bool output_complete;
};

static struct ending ending;

static void ending_on_event(struct guest *g, enum libvmm_event ev)
{
        struct pollfd pfd = {.fd = libvmm_exit_fd(ending.vm), .events = POLLIN};

        if (ev != LIBVMM_EVENT_EXITED)
                return;
        ending.fd_ready = poll(&pfd, 1, 0);
        ending.waiter_had_returned = atomic_load(&ending.waiter_returned);
        pthread_mutex_lock(&g->lock);
        ending.output_complete = strstr(g->out, "probe: ok idle") != NULL;
        pthread_mutex_unlock(&g->lock);
}

static void *wait_for_the_end(void *arg)
{
        (void)arg;
        ending.waiter_rc = libvmm_wait_exit(ending.vm, -1, &ending.waiter_code);
        ending.exited_seen_by_waiter = guest_events(&ending.g, LIBVMM_EVENT_EXITED);
        atomic_store(&ending.waiter_returned, true);
        return NULL;
}

static void expect_ended(int rc)
{
        assert_int_equal(rc, -EPERM);
        assert_non_null(strstr(libvmm_last_error(), "after the guest ended the microVM"));
}

static void test_ended_vm(void **state)
{
        struct libvmm_info info;
        struct pollfd pfd;
        char *json = NULL, snap_s[512], snap_m[512];
        pthread_t t;

        (void)state;
        probe_vm_watchdog("test_ended_vm", WATCHDOG_S);
        memset(&ending, 0, sizeof(ending));
        ending.vm = idle_vm(&ending.g, "ending", false, NULL);
        ending.g.on_event = ending_on_event;
        pthread_create(&t, NULL, wait_for_the_end, NULL);
        assert_int_equal(libvmm_send_ctrl_alt_del(ending.vm), 0);
        pthread_join(t, NULL);
        assert_int_equal(ending.waiter_rc, 0);
        assert_int_equal(ending.waiter_code, 0);
        /* EXITED first (with the whole console output), then the fd, then the wait. */
        assert_int_equal(ending.exited_seen_by_waiter, 1);
        assert_true(ending.output_complete);
        assert_int_equal(ending.fd_ready, 0);
        assert_false(ending.waiter_had_returned);
        pfd = (struct pollfd){.fd = libvmm_exit_fd(ending.vm), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 0), 1);

        /* What acts on the guest is refused; what reads the VM still answers. */
        snprintf(snap_s, sizeof(snap_s), "%s/ended.state", dir);
        snprintf(snap_m, sizeof(snap_m), "%s/ended.mem", dir);
        expect_ended(libvmm_pause(ending.vm));
        expect_ended(libvmm_resume(ending.vm));
        expect_ended(libvmm_snapshot(ending.vm, snap_s, snap_m, false));
        expect_ended(libvmm_send_ctrl_alt_del(ending.vm));
        assert_int_equal(access(snap_s, F_OK), -1);
        assert_int_equal(libvmm_info(ending.vm, &info), 0);
        assert_int_equal(info.state, LIBVMM_EXITED);
        assert_int_equal(libvmm_metrics(ending.vm, &json), 0);
        libvmm_free(json);
        assert_int_equal(libvmm_wait_exit(ending.vm, 0, NULL), 0);
        libvmm_destroy(ending.vm);
        /* STARTED, EXITED: nothing after the end. */
        assert_int_equal(ending.g.nr_events, 2);
        assert_int_equal(ending.g.order[0], LIBVMM_EVENT_STARTED);
        assert_int_equal(ending.g.order[1], LIBVMM_EVENT_EXITED);
        probe_vm_watchdog("", 0);
}

/* ---- destroy beside a waiter ---- */

struct waiter {
        struct libvmm *vm;
        atomic_int tid;
        int rc;
        char msg[256];
};

static void *wait_forever(void *arg)
{
        struct waiter *w = arg;

        atomic_store(&w->tid, (int)syscall(SYS_gettid));
        w->rc = libvmm_wait_exit(w->vm, -1, NULL);
        snprintf(w->msg, sizeof(w->msg), "%s", libvmm_last_error());
        return NULL;
}

/* Whether the thread sleeps (S): after announcing itself, the waiter only sleeps inside
 * libvmm_wait_exit. */
static bool sleeping(int tid)
{
        char path[64], buf[512], *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
        f = fopen(path, "r");
        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && p[2] == 'S';
}

static void test_destroy_wakes_waiters(void **state)
{
        struct waiter w = {0};
        struct guest g;
        pthread_t t;

        (void)state;
        probe_vm_watchdog("test_destroy_wakes_waiters", WATCHDOG_S);
        w.vm = idle_vm(&g, "waited", false, NULL);
        pthread_create(&t, NULL, wait_forever, &w);
        while (!atomic_load(&w.tid) || !sleeping(atomic_load(&w.tid)))
                sched_yield();
        libvmm_destroy(w.vm); /* the guest still runs: only the destroy ends the wait */
        pthread_join(t, NULL);
        assert_int_equal(w.rc, -ESHUTDOWN);
        assert_string_equal(w.msg, MSG_SHUTDOWN);
        assert_int_equal(g.events[LIBVMM_EVENT_EXITED], 0);
        probe_vm_watchdog("", 0);
}

/* ---- destroy beside calls ---- */

#define ROUNDS   4
#define SCRAPERS 3
#define WARM     10   /* calls each scraper has made before the teardown */
#define LATE     2000 /* calls each scraper makes after its first refused one */

struct scrape_round {
        struct libvmm *vm;
        char id[16];
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned warm, stopped;
        bool destroy_logged;
};

struct scraper {
        struct scrape_round *round;
        unsigned calls;
        int rc, late_rc; /* the first refusal; the first late call not refused alike */
        char msg[256];
};

static _Atomic(struct scrape_round *) current_round;

/*
 * The destroy logs its start in the VM's context once no call is under way; it cannot return
 * before this sink does. Holding it until every scraper has stopped keeps the scrapers from
 * calling a freed VM, as the contract asks, while each of them goes on calling into the VM
 * being destroyed for a while, as a scraper that learns of the teardown late would. Nothing
 * else logs meanwhile: refused calls do not, and the idle guest is halted.
 */
static void hold_destroy(void *opaque, const char *line, size_t len)
{
        struct scrape_round *r = atomic_load(&current_round);
        char needle[64];

        (void)opaque;
        if (!r)
                return;
        snprintf(needle, sizeof(needle), "[%s:", r->id);
        if (!memmem(line, len, needle, strlen(needle)) ||
            !memmem(line, len, "the microVM is being destroyed", 30))
                return;
        pthread_mutex_lock(&r->lock);
        r->destroy_logged = true;
        while (r->stopped < SCRAPERS)
                pthread_cond_wait(&r->cond, &r->lock);
        pthread_mutex_unlock(&r->lock);
}

static int scrape_once(struct scraper *s)
{
        struct libvmm_info info;
        char *json = NULL;
        int rc =
            s->calls & 1 ? libvmm_metrics(s->round->vm, &json) : libvmm_info(s->round->vm, &info);

        libvmm_free(json);
        return rc;
}

static void *scrape(void *arg)
{
        struct scraper *s = arg;
        struct scrape_round *r = s->round;

        for (;;) {
                s->rc = scrape_once(s);
                if (s->rc)
                        break;
                if (++s->calls == WARM) {
                        pthread_mutex_lock(&r->lock);
                        r->warm++;
                        pthread_cond_broadcast(&r->cond);
                        pthread_mutex_unlock(&r->lock);
                }
        }
        snprintf(s->msg, sizeof(s->msg), "%s", libvmm_last_error());
        for (unsigned i = 0; i < LATE && !s->late_rc; i++) {
                int rc = scrape_once(s);

                if (rc != -ESHUTDOWN)
                        s->late_rc = rc ? rc : 1;
                sched_yield(); /* spread over the teardown */
        }
        pthread_mutex_lock(&r->lock);
        r->stopped++;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

static void test_destroy_beside_calls(void **state)
{
        struct scraper s[SCRAPERS];
        struct scrape_round r;
        pthread_t t[SCRAPERS];
        struct guest g;

        (void)state;
        probe_vm_watchdog("test_destroy_beside_calls", WATCHDOG_S);
        assert_int_equal(libvmm_set_log("Info", hold_destroy, NULL), 0);
        for (int round = 0; round < ROUNDS; round++) {
                memset(&r, 0, sizeof(r));
                pthread_mutex_init(&r.lock, NULL);
                pthread_cond_init(&r.cond, NULL);
                snprintf(r.id, sizeof(r.id), "scraped%d", round);
                r.vm = idle_vm(&g, r.id, false, NULL);
                atomic_store(&current_round, &r);
                for (int i = 0; i < SCRAPERS; i++) {
                        s[i] = (struct scraper){.round = &r};
                        pthread_create(&t[i], NULL, scrape, &s[i]);
                }
                pthread_mutex_lock(&r.lock);
                while (r.warm < SCRAPERS)
                        pthread_cond_wait(&r.cond, &r.lock);
                pthread_mutex_unlock(&r.lock);
                libvmm_destroy(r.vm); /* while the scrapers call */
                for (int i = 0; i < SCRAPERS; i++) {
                        pthread_join(t[i], NULL);
                        assert_true(s[i].calls >= WARM);
                        assert_int_equal(s[i].rc, -ESHUTDOWN);
                        assert_string_equal(s[i].msg, MSG_SHUTDOWN);
                        assert_int_equal(s[i].late_rc, 0);
                }
                assert_true(r.destroy_logged);
                atomic_store(&current_round, NULL);
                pthread_mutex_destroy(&r.lock);
                pthread_cond_destroy(&r.cond);
        }
        assert_int_equal(libvmm_set_log("Warning", NULL, NULL), 0);
        probe_vm_watchdog("", 0);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_callbacks_call_into_vms),
            cmocka_unit_test(test_ended_vm),
            cmocka_unit_test(test_destroy_wakes_waiters),
            cmocka_unit_test(test_destroy_beside_calls),
        };

        if (probe_vm_args(argc, argv, &dir))
                return 2;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
