/*
 * libvmm.h on top of the controller (vmm/controller.h): each VM is a controller and an event
 * loop on a thread of its own (the VM thread); every call is a controller request submitted to
 * its queue and waited for, so the library goes through exactly the code (phases, validation,
 * messages) the REST API does.
 *
 * The VM thread never runs the embedder's code, so it never waits for anything but its own
 * vCPUs: console output and life-cycle events go through a queue to a second thread (the
 * callback thread, there when the embedder gave a callback), which delivers them in order.
 * A callback may then call into any VM, its own included, and no two threads can wait for
 * each other's queues. Calls and libvmm_destroy meet at an in-call counter: destroy refuses
 * new calls, wakes the waiters, and frees nothing while a call is under way.
 */
#include "libvmm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "common/clock.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "vmm/controller.h"
#include "vmm/snapshot.h"

#define CONSOLE_BACKLOG (1 << 20)
#define MSG_SHUTDOWN    "The microVM is shutting down."

/* A life-cycle event on its way to the event callback. */
struct event {
        enum libvmm_event ev;
        int code;
        uint64_t seq; /* 1, 2, ...: the order of delivery */
        struct event *next;
};

struct libvmm {
        struct libvmm_options opts;
        char id[65];
        struct event_loop *loop;
        struct controller *ctl;
        pthread_t thread; /* the VM thread */
        bool thread_started;
        int wake_fd;                /* ends the VM thread's loop */
        atomic_bool stopping;       /* set before wake_fd is written */
        int exit_fd;                /* readable once EXITED was delivered */
        int console_rd, console_wr; /* the console callback's pipe (-1: none) */
        int null_fd;                /* console output with neither fd nor callback */

        /* The callback thread (with a console or an event callback only). */
        pthread_t cb_thread;
        bool cb_started;
        int cb_fd; /* eventfd: events were queued, or the thread should end */

        /* Calls under way (see enter), and the destroy that waits for them. */
        atomic_uint calls;
        atomic_bool destroying;

        pthread_mutex_t lock; /* guards what follows; cond: any change of it, or destroying */
        pthread_cond_t cond;
        struct event *head, *tail; /* posted, not delivered yet */
        uint64_t posted, delivered;
        bool cb_stop;
        bool ended;  /* the guest ended the VM (libvmm_info's EXITED) */
        bool exited; /* ... and EXITED was delivered (libvmm_wait_exit) */
        int exit_code;
        struct event exit_event; /* EXITED, allocated with the VM: it is never lost */
};

static _Thread_local char last_error[sizeof(((struct error *)0)->msg)];
/* On a callback thread: the VM whose callbacks it runs. */
static _Thread_local struct libvmm *callback_of;

const char *libvmm_last_error(void)
{
        return last_error;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
        return code;
}

/* Logs one line in the VM's log context (its id, its logger settings) from any thread. */
#define VM_LOG(vm, LOG_MACRO, ...)                                                                 \
        do {                                                                                       \
                struct log_context *prev_ = log_bind(controller_log((vm)->ctl));                   \
                LOG_MACRO(__VA_ARGS__);                                                            \
                log_bind(prev_);                                                                   \
        } while (0)

static void eventfd_signal(int fd)
{
        uint64_t one = 1;

        if (write(fd, &one, sizeof(one)) < 0) {
                /* an eventfd write cannot fail here */
        }
}

/* ---- calls under way ---- */

/* Under the lock: libvmm_destroy, which checks the count under it, cannot free the VM before
 * this unlock. */
static void leave(struct libvmm *vm)
{
        pthread_mutex_lock(&vm->lock);
        if (atomic_fetch_sub(&vm->calls, 1) == 1 && atomic_load(&vm->destroying))
                pthread_cond_broadcast(&vm->cond);
        pthread_mutex_unlock(&vm->lock);
}

/*
 * Every call on a VM is counted while it runs, so that libvmm_destroy can wait for it. The
 * threads the VMM runs itself (VM and vCPU threads, the only ones bound to a VM's log
 * context) reach the library only through the embedder's log sink: a call from there would
 * wait for a queue its own thread serves, or for its own VM's vCPUs.
 */
static int enter(struct libvmm *vm)
{
        if (!vm)
                return fail(-EINVAL, "no such VM");
        if (log_bound())
                return fail(-EDEADLK, "libvmm cannot be called from the VMM's own threads "
                                      "(a log sink): the call would wait for itself");
        atomic_fetch_add(&vm->calls, 1);
        if (atomic_load(&vm->destroying)) {
                leave(vm);
                return fail(-ESHUTDOWN, MSG_SHUTDOWN);
        }
        return 0;
}

/* ---- events and console output, in order, on the callback thread ---- */

#define CONSOLE_CHUNK 4096

/* Hands up to max bytes of console output to the callback (SIZE_MAX: all there is). */
static void console_drain(struct libvmm *vm, size_t max)
{
        char buf[CONSOLE_CHUNK];
        ssize_t n;

        if (vm->console_rd < 0)
                return;
        for (size_t done = 0; done < max; done += (size_t)n) {
                n = read(vm->console_rd, buf, sizeof(buf));
                if (n <= 0)
                        return;
                vm->opts.console(vm->opts.opaque, buf, (size_t)n);
        }
}

/* EXITED: the callback first, then the exit fd, then libvmm_wait_exit's waiters. */
static void deliver(struct libvmm *vm, struct event *e)
{
        bool exited = e->ev == LIBVMM_EVENT_EXITED;

        /* The guest's last output comes before its end (its vCPUs are stopped: it is all
         * in the pipe). */
        if (exited)
                console_drain(vm, SIZE_MAX);
        if (vm->opts.event)
                vm->opts.event(vm->opts.opaque, e->ev, e->code);
        if (exited)
                eventfd_signal(vm->exit_fd);
        pthread_mutex_lock(&vm->lock);
        vm->delivered = e->seq;
        if (exited) {
                vm->exited = true;
                vm->exit_code = e->code;
        }
        pthread_cond_broadcast(&vm->cond);
        pthread_mutex_unlock(&vm->lock);
        if (e != &vm->exit_event)
                free(e);
}

static void deliver_queued(struct libvmm *vm)
{
        struct event *e;

        for (;;) {
                pthread_mutex_lock(&vm->lock);
                e = vm->head;
                if (e) {
                        vm->head = e->next;
                        if (!vm->head)
                                vm->tail = NULL;
                }
                pthread_mutex_unlock(&vm->lock);
                if (!e)
                        return;
                deliver(vm, e);
        }
}

/* VM thread: queues e; returns its sequence number. Without a callback thread there is no
 * callback to run: the bookkeeping is done at once. */
static uint64_t post(struct libvmm *vm, struct event *e)
{
        uint64_t seq;

        pthread_mutex_lock(&vm->lock);
        seq = e->seq = ++vm->posted;
        e->next = NULL;
        if (vm->tail)
                vm->tail->next = e;
        else
                vm->head = e;
        vm->tail = e;
        pthread_mutex_unlock(&vm->lock);
        if (vm->cb_started)
                eventfd_signal(vm->cb_fd);
        else
                deliver_queued(vm);
        return seq;
}

static void *callback_thread(void *arg)
{
        struct libvmm *vm = arg;
        struct pollfd pfd[2] = {{.fd = vm->cb_fd, .events = POLLIN},
                                {.fd = vm->console_rd, .events = POLLIN}};
        char name[16];
        uint64_t v;
        bool stop = false;

        callback_of = vm;
        snprintf(name, sizeof(name), "cb-%.12s", vm->id);
        log_set_thread_name("callbacks");
        pthread_setname_np(pthread_self(), name);
        while (!stop) {
                /* Only EINTR or a transient ENOMEM: look again. */
                (void)poll(pfd, 2, -1);
                /* A chatty guest does not hold up the events: a bounded share each round. */
                console_drain(vm, 16 * CONSOLE_CHUNK);
                if (read(vm->cb_fd, &v, sizeof(v)) < 0) {
                        /* EAGAIN: nothing posted */
                }
                deliver_queued(vm);
                pthread_mutex_lock(&vm->lock);
                stop = vm->cb_stop && !vm->head;
                pthread_mutex_unlock(&vm->lock);
        }
        console_drain(vm, SIZE_MAX); /* the VM thread has ended: this is all there is */
        return NULL;
}

static void callback_thread_stop(struct libvmm *vm)
{
        if (!vm->cb_started)
                return;
        pthread_mutex_lock(&vm->lock);
        vm->cb_stop = true;
        pthread_mutex_unlock(&vm->lock);
        eventfd_signal(vm->cb_fd);
        pthread_join(vm->cb_thread, NULL);
        vm->cb_started = false;
}

/* ---- the VM thread ---- */

static void on_exit_cb(void *opaque, int exit_code)
{
        struct libvmm *vm = opaque;

        pthread_mutex_lock(&vm->lock);
        vm->ended = true;
        pthread_mutex_unlock(&vm->lock);
        vm->exit_event.ev = LIBVMM_EVENT_EXITED;
        vm->exit_event.code = exit_code;
        post(vm, &vm->exit_event);
}

static void on_wake(void *opaque, uint32_t events)
{
        struct libvmm *vm = opaque;
        uint64_t v;

        (void)events;
        if (read(vm->wake_fd, &v, sizeof(v)) < 0) {
                /* EAGAIN: already drained */
        }
}

static void *vm_thread(void *arg)
{
        struct libvmm *vm = arg;
        char name[16];

        controller_bind_thread(vm->ctl);
        snprintf(name, sizeof(name), "vmm-%.11s", vm->id);
        log_set_thread_name("vmm");
        pthread_setname_np(pthread_self(), name);
        while (!atomic_load(&vm->stopping))
                if (event_loop_run_once(vm->loop, -1) < 0)
                        break;
        /* The controller belongs to this thread: answer what is queued, stop the VM. */
        controller_close(vm->ctl);
        controller_destroy(vm->ctl);
        vm->ctl = NULL;
        return NULL;
}

/* ---- calls ---- */

struct call {
        struct controller_request req;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        uint64_t event_seq; /* the event the call caused (0: none) */
        struct libvmm *vm;
};

static enum libvmm_event event_of(const struct controller_request *req)
{
        switch (controller_action_event(req->action)) {
        case CONTROLLER_EVENT_STARTED:
                return req->reply.state == CONTROLLER_PAUSED ? LIBVMM_EVENT_PAUSED
                                                             : LIBVMM_EVENT_STARTED;
        case CONTROLLER_EVENT_PAUSED:
                return LIBVMM_EVENT_PAUSED;
        case CONTROLLER_EVENT_RESUMED:
                return LIBVMM_EVENT_RESUMED;
        default:
                return 0;
        }
}

/* VM thread: the request was executed. */
static void call_done(struct controller_request *req)
{
        struct call *c = req->opaque;
        /* Without an event callback there is nothing to deliver, nor to wait for. */
        enum libvmm_event ev = req->reply.status || !c->vm->opts.event ? 0 : event_of(req);
        uint64_t seq = 0;

        if (ev) {
                struct event *e = calloc(1, sizeof(*e));

                if (e) {
                        e->ev = ev;
                        seq = post(c->vm, e);
                } else {
                        LOG_ERROR("out of memory: life-cycle event %d not delivered", (int)ev);
                }
        }
        pthread_mutex_lock(&c->lock);
        c->event_seq = seq;
        c->done = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

static void call_init(struct call *c, struct libvmm *vm, enum vmm_action action)
{
        controller_request_init(&c->req, action);
        c->req.done = call_done;
        c->req.opaque = c;
        c->vm = vm;
        c->done = false;
        c->event_seq = 0;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
}

/*
 * Runs the request on the VM's thread and waits; the reply stays in c->req. The event the
 * call caused has been delivered when it returns, unless it is called from a callback: a
 * callback thread cannot wait for itself, and two callback threads waiting for each other's
 * deliveries would wait forever. Its event follows, in order.
 */
static int call_run(struct call *c)
{
        struct libvmm *vm = c->vm;
        int r;

        if (controller_submit(vm->ctl, &c->req))
                return fail(-ESHUTDOWN, MSG_SHUTDOWN);
        pthread_mutex_lock(&c->lock);
        while (!c->done)
                pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
        if (c->event_seq && !callback_of) {
                pthread_mutex_lock(&vm->lock);
                while (vm->delivered < c->event_seq)
                        pthread_cond_wait(&vm->cond, &vm->lock);
                pthread_mutex_unlock(&vm->lock);
        }
        r = c->req.reply.status;
        return r ? fail(r, "%s", c->req.reply.err.msg) : 0;
}

static void call_clear(struct call *c)
{
        controller_request_clear(&c->req);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
}

static int simple(struct libvmm *vm, enum vmm_action action)
{
        struct call c;
        int r = enter(vm);

        if (r)
                return r;
        call_init(&c, vm, action);
        r = call_run(&c);
        call_clear(&c);
        leave(vm);
        return r;
}

/* ---- creation ---- */

static int open_console(struct libvmm *vm)
{
        int fds[2];

        vm->console_rd = vm->console_wr = vm->null_fd = -1;
        if (vm->opts.console_fd >= 0)
                return 0;
        if (!vm->opts.console) {
                vm->null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
                return vm->null_fd < 0 ? -errno : 0;
        }
        /* Non-blocking both ways: a vCPU writing the console never waits for the callback
         * (it would hold up a pause); what does not fit in the backlog is dropped. */
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK))
                return -errno;
        fcntl(fds[1], F_SETPIPE_SZ, CONSOLE_BACKLOG);
        vm->console_rd = fds[0];
        vm->console_wr = fds[1];
        return 0;
}

static void vm_free(struct libvmm *vm)
{
        if (vm->loop) {
                if (vm->wake_fd >= 0)
                        event_loop_remove(vm->loop, vm->wake_fd);
                event_loop_destroy(vm->loop);
        }
        if (vm->console_rd >= 0)
                close(vm->console_rd);
        if (vm->console_wr >= 0)
                close(vm->console_wr);
        if (vm->null_fd >= 0)
                close(vm->null_fd);
        if (vm->wake_fd >= 0)
                close(vm->wake_fd);
        if (vm->exit_fd >= 0)
                close(vm->exit_fd);
        if (vm->cb_fd >= 0)
                close(vm->cb_fd);
        pthread_mutex_destroy(&vm->lock);
        pthread_cond_destroy(&vm->cond);
        free(vm);
}

/* A VM around cfg (taken over): the controller and its thread, nothing started. */
static int vm_new(struct vmm_config *cfg, const struct libvmm_options *opts, struct libvmm **out)
{
        static const struct libvmm_options defaults = LIBVMM_OPTIONS_INIT;
        struct libvmm *vm = calloc(1, sizeof(*vm));
        struct error err = {0};
        sigset_t block, old;
        int r;

        if (!vm) {
                vmm_config_free(cfg);
                return fail(-ENOMEM, "out of memory");
        }
        vm->opts = opts ? *opts : defaults;
        snprintf(vm->id, sizeof(vm->id), "%s", vm->opts.id ? vm->opts.id : "libvmm");
        vm->opts.id = vm->id;
        vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->cb_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->console_rd = vm->console_wr = vm->null_fd = -1;
        pthread_mutex_init(&vm->lock, NULL);
        pthread_cond_init(&vm->cond, NULL);
        if (vm->wake_fd < 0 || vm->exit_fd < 0 || vm->cb_fd < 0 || event_loop_create(&vm->loop)) {
                vmm_config_free(cfg);
                vm_free(vm);
                return fail(-ENOMEM, "cannot create the VM's event loop");
        }
        r = event_loop_add(vm->loop, vm->wake_fd, EPOLLIN, on_wake, vm);
        if (!r)
                r = open_console(vm);
        if (r) {
                vmm_config_free(cfg);
                vm_free(vm);
                return fail(r, "console: %s", strerror(-r));
        }
        /* The console output is ours, not the configuration's. */
        cfg->serial_in = vm->opts.console_in_fd >= 0;
        struct controller_params params = {
            .loop = vm->loop,
            .instance_id = vm->id,
            .kvm_path = vm->opts.kvm_path,
            .console_in_fd = vm->opts.console_in_fd,
            .console_out_fd = vm->opts.console_fd >= 0 ? vm->opts.console_fd
                              : vm->console_wr >= 0    ? vm->console_wr
                                                       : vm->null_fd,
            .process_start_ns = clock_ns(CLOCK_MONOTONIC),
            .process_start_cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID),
            .on_exit = on_exit_cb,
            .opaque = vm,
        };
        r = controller_create(&params, cfg, &err, &vm->ctl);
        vmm_config_free(cfg);
        if (r) {
                vm_free(vm);
                return fail(r, "%s", err.msg);
        }
        /* The library's threads (the VM's, the vCPU threads it starts, the callback thread)
         * inherit this mask: a write to a closed pipe or socket fails with EPIPE there
         * instead of killing the process. */
        sigemptyset(&block);
        sigaddset(&block, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        r = 0;
        if (vm->opts.console || vm->opts.event) {
                r = pthread_create(&vm->cb_thread, NULL, callback_thread, vm);
                vm->cb_started = r == 0;
        }
        if (!r) {
                r = pthread_create(&vm->thread, NULL, vm_thread, vm);
                vm->thread_started = r == 0;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                callback_thread_stop(vm);
                controller_close(vm->ctl);
                controller_destroy(vm->ctl);
                vm_free(vm);
                return fail(-r, "cannot start the VM's threads: %s", strerror(r));
        }
        *out = vm;
        return 0;
}

int libvmm_create(const char *config_json, const struct libvmm_options *opts, struct libvmm **out)
{
        struct vmm_config cfg;
        struct error err = {0};

        last_error[0] = '\0';
        if (!config_json || !out)
                return fail(-EINVAL, "libvmm_create: no configuration");
        if (api_config_parse(config_json, strlen(config_json), &cfg, &err)) {
                vmm_config_free(&cfg);
                return fail(-EINVAL, "%s", err.msg);
        }
        return vm_new(&cfg, opts, out);
}

int libvmm_restore(const char *load_params_json, const char *config_json,
                   const struct libvmm_options *opts, struct libvmm **out)
{
        struct vmm_config cfg;
        struct error err = {0};
        struct libvmm *vm;
        struct call c;
        const char *body_id;
        int r;

        last_error[0] = '\0';
        if (!load_params_json || !out)
                return fail(-EINVAL, "libvmm_restore: no snapshot");
        if (config_json) {
                if (api_config_parse(config_json, strlen(config_json), &cfg, &err)) {
                        vmm_config_free(&cfg);
                        return fail(-EINVAL, "%s", err.msg);
                }
        } else {
                vmm_config_init(&cfg);
        }
        r = vm_new(&cfg, opts, &vm);
        if (r)
                return r;
        call_init(&c, vm, VMM_SNAPSHOT_LOAD);
        r = api_parse_command_text(load_params_json, strlen(load_params_json), &c.req, &body_id,
                                   &err);
        if (r)
                r = fail(-EINVAL, "snapshot load parameters: %s", err.msg);
        else
                r = call_run(&c);
        call_clear(&c);
        if (r) {
                char msg[sizeof(last_error)];

                memcpy(msg, last_error, sizeof(msg));
                libvmm_destroy(vm);
                memcpy(last_error, msg, sizeof(msg));
                return r;
        }
        *out = vm;
        return 0;
}

/* ---- life cycle ---- */

int libvmm_start(struct libvmm *vm)
{
        return simple(vm, VMM_INSTANCE_START);
}

int libvmm_pause(struct libvmm *vm)
{
        return simple(vm, VMM_PAUSE);
}

int libvmm_resume(struct libvmm *vm)
{
        return simple(vm, VMM_RESUME);
}

int libvmm_send_ctrl_alt_del(struct libvmm *vm)
{
        return simple(vm, VMM_SEND_CTRL_ALT_DEL);
}

static char *dup_path(const char *p)
{
        return p ? strdup(p) : NULL;
}

int libvmm_snapshot(struct libvmm *vm, const char *state_path, const char *mem_path, bool diff)
{
        struct call c;
        int r;

        if (!state_path || !mem_path)
                return fail(-EINVAL, "libvmm_snapshot: a state path and a memory path are needed");
        r = enter(vm);
        if (r)
                return r;
        call_init(&c, vm, VMM_SNAPSHOT_CREATE);
        c.req.u.snapshot_create.snapshot_path = dup_path(state_path);
        c.req.u.snapshot_create.mem_file_path = dup_path(mem_path);
        c.req.u.snapshot_create.diff = diff;
        if (!c.req.u.snapshot_create.snapshot_path || !c.req.u.snapshot_create.mem_file_path)
                r = fail(-ENOMEM, "out of memory");
        else
                r = call_run(&c);
        call_clear(&c);
        leave(vm);
        return r;
}

int libvmm_merge_memory(const char *base_mem_path, const char *diff_mem_path)
{
        struct error err = {0};
        int r = snapshot_merge_memory(base_mem_path, diff_mem_path, &err);

        return r ? fail(r, "%s", err.msg) : 0;
}

int libvmm_wait_exit(struct libvmm *vm, int timeout_ms, int *exit_code)
{
        struct timespec deadline;
        int r = enter(vm);

        if (r)
                return r;
        if (callback_of == vm) {
                leave(vm);
                return fail(-EDEADLK, "libvmm_wait_exit: called from a callback of the same VM, "
                                      "whose exit is delivered on that thread");
        }
        clock_gettime(CLOCK_REALTIME, &deadline);
        if (timeout_ms >= 0) {
                deadline.tv_sec += timeout_ms / 1000;
                deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
                if (deadline.tv_nsec >= 1000000000L) {
                        deadline.tv_sec++;
                        deadline.tv_nsec -= 1000000000L;
                }
        }
        pthread_mutex_lock(&vm->lock);
        while (!vm->exited && !atomic_load(&vm->destroying) && r == 0) {
                if (timeout_ms < 0)
                        pthread_cond_wait(&vm->cond, &vm->lock);
                else
                        r = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
        }
        if (vm->exited && exit_code)
                *exit_code = vm->exit_code;
        r = vm->exited ? 0 : atomic_load(&vm->destroying) ? -ESHUTDOWN : -ETIMEDOUT;
        pthread_mutex_unlock(&vm->lock);
        leave(vm);
        if (r == -ESHUTDOWN)
                return fail(r, MSG_SHUTDOWN);
        return r ? fail(r, "the guest is still running") : 0;
}

int libvmm_exit_fd(struct libvmm *vm)
{
        return vm ? vm->exit_fd : -1;
}

int libvmm_info(struct libvmm *vm, struct libvmm_info *info)
{
        struct call c;
        int r;

        if (!info)
                return fail(-EINVAL, "libvmm_info: no place for the answer");
        r = enter(vm);
        if (r)
                return r;
        call_init(&c, vm, VMM_GET_INSTANCE_INFO);
        r = call_run(&c);
        if (!r) {
                info->state = c.req.reply.state == CONTROLLER_RUNNING  ? LIBVMM_RUNNING
                              : c.req.reply.state == CONTROLLER_PAUSED ? LIBVMM_PAUSED
                                                                       : LIBVMM_NOT_STARTED;
                info->first_exit_ns = c.req.reply.first_exit_ns;
                /* Set on the VM thread before it executed this request, if at all. */
                pthread_mutex_lock(&vm->lock);
                if (vm->ended)
                        info->state = LIBVMM_EXITED;
                pthread_mutex_unlock(&vm->lock);
        }
        call_clear(&c);
        leave(vm);
        return r;
}

int libvmm_metrics(struct libvmm *vm, char **json)
{
        struct call c;
        int r;

        if (!json)
                return fail(-EINVAL, "libvmm_metrics: no place for the answer");
        r = enter(vm);
        if (r)
                return r;
        call_init(&c, vm, VMM_GET_METRICS);
        r = call_run(&c);
        if (!r) {
                *json = c.req.reply.metrics;
                c.req.reply.metrics = NULL;
        }
        call_clear(&c);
        leave(vm);
        return r;
}

static int mmds_write(struct libvmm *vm, enum vmm_action action, const char *json)
{
        struct call c;
        int r;

        if (!vm || !json)
                return fail(-EINVAL, "no such VM");
        call_init(&c, vm, action);
        c.req.u.mmds_data.json = strdup(json);
        c.req.u.mmds_data.len = strlen(json);
        r = c.req.u.mmds_data.json ? call_run(&c) : fail(-ENOMEM, "out of memory");
        call_clear(&c);
        return r;
}

int libvmm_mmds_put(struct libvmm *vm, const char *json)
{
        return mmds_write(vm, VMM_PUT_MMDS, json);
}

int libvmm_mmds_patch(struct libvmm *vm, const char *json)
{
        return mmds_write(vm, VMM_PATCH_MMDS, json);
}

int libvmm_mmds_get(struct libvmm *vm, char **json)
{
        struct call c;
        int r;

        if (!vm || !json)
                return fail(-EINVAL, "no such VM");
        call_init(&c, vm, VMM_GET_MMDS);
        r = call_run(&c);
        if (!r) {
                *json = c.req.reply.mmds;
                c.req.reply.mmds = NULL;
        }
        call_clear(&c);
        return r;
}

void libvmm_free(void *p)
{
        free(p);
}

/* Waits until no call is under way (vm->lock held). */
static void wait_calls(struct libvmm *vm)
{
        while (atomic_load(&vm->calls))
                pthread_cond_wait(&vm->cond, &vm->lock);
}

void libvmm_destroy(struct libvmm *vm)
{
        if (!vm)
                return;
        if (callback_of == vm || log_bound()) {
                fail(-EDEADLK, "libvmm_destroy: called from the VM's own callback or from a "
                               "thread of the VMM; the VM is left as it is");
                /* Not from a log sink: the logger is busy with its line. */
                if (!log_bound())
                        VM_LOG(vm, LOG_ERROR, "%s", last_error);
                return;
        }
        /* New calls fail from now on; libvmm_wait_exit's waiters wake up; the calls under
         * way finish (the VM and its callback thread still serve them). */
        atomic_store(&vm->destroying, true);
        pthread_mutex_lock(&vm->lock);
        pthread_cond_broadcast(&vm->cond);
        wait_calls(vm);
        pthread_mutex_unlock(&vm->lock);
        VM_LOG(vm, LOG_INFO, "the microVM is being destroyed");
        if (vm->thread_started) {
                atomic_store(&vm->stopping, true);
                eventfd_signal(vm->wake_fd);
                pthread_join(vm->thread, NULL);
        }
        /* Whatever the VM thread queued before it ended is delivered. */
        callback_thread_stop(vm);
        /* A call that began meanwhile saw destroying: wait until it let go of the VM. */
        pthread_mutex_lock(&vm->lock);
        wait_calls(vm);
        pthread_mutex_unlock(&vm->lock);
        vm_free(vm);
}

/* ---- the logger ---- */

/* The embedder's sink, and its opaque: swapped as one (libvmm_set_log). */
struct user_sink {
        void (*fn)(void *opaque, const char *line, size_t len);
        void *opaque;
};

static pthread_mutex_t user_sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct user_sink *user_sink; /* the one installed (NULL: stderr) */

static void user_sink_write(void *opaque, enum log_level level, const char *line, size_t len)
{
        const struct user_sink *s = opaque;

        (void)level;
        s->fn(s->opaque, line, len);
}

int libvmm_set_log(const char *level, void (*sink)(void *opaque, const char *line, size_t len),
                   void *opaque)
{
        struct user_sink *s = NULL, *old;
        enum log_level l = LOG_LEVEL_INFO;

        if (level && log_level_parse(level, &l))
                return fail(-EINVAL, "unknown log level '%s'", level);
        if (sink) {
                s = malloc(sizeof(*s));
                if (!s)
                        return fail(-ENOMEM, "out of memory");
                s->fn = sink;
                s->opaque = opaque;
        }
        /* One change at a time; the logger swaps the sink and its opaque together and waits
         * for a line being written to the old one, which can then be freed. */
        pthread_mutex_lock(&user_sink_lock);
        if (level)
                log_set_level(l);
        log_set_sink(s ? user_sink_write : NULL, s);
        old = user_sink;
        user_sink = s;
        pthread_mutex_unlock(&user_sink_lock);
        free(old);
        return 0;
}
