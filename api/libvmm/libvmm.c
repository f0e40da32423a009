/*
 * libvmm.h on top of the controller (vmm/controller.h): each VM is a controller and an event
 * loop on a thread of its own; every call is a controller request submitted to its queue
 * and waited for, so the library goes through exactly the code (phases, validation,
 * messages) the REST API does.
 */
#include "libvmm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

struct libvmm {
        struct libvmm_options opts;
        char id[65];
        struct event_loop *loop;
        struct controller *ctl;
        pthread_t thread;
        bool thread_started;
        int wake_fd;                /* ends the VM thread's loop */
        atomic_bool stopping;       /* set before wake_fd is written */
        int exit_fd;                /* readable once the guest ended the VM */
        int console_rd, console_wr; /* the console callback's pipe (-1: none) */
        int null_fd;                /* console output with neither fd nor callback */

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool exited;
        int exit_code;
};

static _Thread_local char last_error[sizeof(((struct error *)0)->msg)];

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

static void emit(struct libvmm *vm, enum libvmm_event ev, int code)
{
        if (vm->opts.event)
                vm->opts.event(vm->opts.opaque, ev, code);
}

/* ---- the VM thread ---- */

static void on_exit_cb(void *opaque, int exit_code)
{
        struct libvmm *vm = opaque;
        uint64_t one = 1;

        pthread_mutex_lock(&vm->lock);
        vm->exited = true;
        vm->exit_code = exit_code;
        pthread_cond_broadcast(&vm->cond);
        pthread_mutex_unlock(&vm->lock);
        if (write(vm->exit_fd, &one, sizeof(one)) < 0) {
                /* an eventfd write cannot fail here */
        }
        emit(vm, LIBVMM_EVENT_EXITED, exit_code);
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

static void on_console(void *opaque, uint32_t events)
{
        struct libvmm *vm = opaque;
        char buf[4096];
        ssize_t n;

        (void)events;
        while ((n = read(vm->console_rd, buf, sizeof(buf))) > 0)
                vm->opts.console(vm->opts.opaque, buf, (size_t)n);
}

static void *vm_thread(void *arg)
{
        struct libvmm *vm = arg;
        char name[16];

        snprintf(name, sizeof(name), "vmm-%.11s", vm->id);
        log_set_thread_name(name);
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
        struct libvmm *vm;
};

static void call_done(struct controller_request *req)
{
        struct call *c = req->opaque;
        struct libvmm *vm = c->vm;

        if (!req->reply.status) {
                switch (controller_action_event(req->action)) {
                case CONTROLLER_EVENT_STARTED:
                        emit(vm,
                             req->reply.state == CONTROLLER_PAUSED ? LIBVMM_EVENT_PAUSED
                                                                   : LIBVMM_EVENT_STARTED,
                             0);
                        break;
                case CONTROLLER_EVENT_PAUSED:
                        emit(vm, LIBVMM_EVENT_PAUSED, 0);
                        break;
                case CONTROLLER_EVENT_RESUMED:
                        emit(vm, LIBVMM_EVENT_RESUMED, 0);
                        break;
                default:
                        break;
                }
        }
        pthread_mutex_lock(&c->lock);
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
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
}

/* Runs the request on the VM's thread and waits; the reply stays in c->req. */
static int call_run(struct call *c)
{
        int r;

        if (!c->vm || !c->vm->ctl)
                r = fail(-EINVAL, "no such VM");
        else if (controller_submit(c->vm->ctl, &c->req))
                r = fail(-ESHUTDOWN, "The microVM is shutting down.");
        else {
                pthread_mutex_lock(&c->lock);
                while (!c->done)
                        pthread_cond_wait(&c->cond, &c->lock);
                pthread_mutex_unlock(&c->lock);
                r = c->req.reply.status;
                if (r)
                        fail(r, "%s", c->req.reply.err.msg);
        }
        return r;
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
        int r;

        if (!vm)
                return fail(-EINVAL, "no such VM");
        call_init(&c, vm, action);
        r = call_run(&c);
        call_clear(&c);
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
        return event_loop_add(vm->loop, vm->console_rd, EPOLLIN, on_console, vm);
}

static void vm_free(struct libvmm *vm)
{
        if (vm->loop) {
                if (vm->console_rd >= 0)
                        event_loop_remove(vm->loop, vm->console_rd);
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
        vm->console_rd = vm->console_wr = vm->null_fd = -1;
        pthread_mutex_init(&vm->lock, NULL);
        pthread_cond_init(&vm->cond, NULL);
        if (vm->wake_fd < 0 || vm->exit_fd < 0 || event_loop_create(&vm->loop)) {
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
        /* The VM's thread, and the vCPU threads it starts, inherit this mask: a write to a
         * closed pipe or socket fails with EPIPE there instead of killing the process. */
        sigemptyset(&block);
        sigaddset(&block, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        r = pthread_create(&vm->thread, NULL, vm_thread, vm);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
                controller_close(vm->ctl);
                controller_destroy(vm->ctl);
                vm_free(vm);
                return fail(-r, "cannot start the VM thread: %s", strerror(r));
        }
        vm->thread_started = true;
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

        if (!vm)
                return fail(-EINVAL, "no such VM");
        if (!state_path || !mem_path)
                return fail(-EINVAL, "libvmm_snapshot: a state path and a memory path are needed");
        call_init(&c, vm, VMM_SNAPSHOT_CREATE);
        c.req.u.snapshot_create.snapshot_path = dup_path(state_path);
        c.req.u.snapshot_create.mem_file_path = dup_path(mem_path);
        c.req.u.snapshot_create.diff = diff;
        if (!c.req.u.snapshot_create.snapshot_path || !c.req.u.snapshot_create.mem_file_path)
                r = fail(-ENOMEM, "out of memory");
        else
                r = call_run(&c);
        call_clear(&c);
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
        int r = 0;

        if (!vm)
                return fail(-EINVAL, "no such VM");
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
        while (!vm->exited && r == 0) {
                if (timeout_ms < 0)
                        pthread_cond_wait(&vm->cond, &vm->lock);
                else
                        r = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
        }
        if (vm->exited && exit_code)
                *exit_code = vm->exit_code;
        r = vm->exited ? 0 : -ETIMEDOUT;
        pthread_mutex_unlock(&vm->lock);
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

        if (!vm || !info)
                return fail(-EINVAL, "no such VM");
        call_init(&c, vm, VMM_GET_INSTANCE_INFO);
        r = call_run(&c);
        if (!r) {
                info->state = c.req.reply.state == CONTROLLER_RUNNING  ? LIBVMM_RUNNING
                              : c.req.reply.state == CONTROLLER_PAUSED ? LIBVMM_PAUSED
                                                                       : LIBVMM_NOT_STARTED;
                info->first_exit_ns = c.req.reply.first_exit_ns;
        }
        pthread_mutex_lock(&vm->lock);
        if (vm->exited)
                info->state = LIBVMM_EXITED;
        pthread_mutex_unlock(&vm->lock);
        call_clear(&c);
        return r;
}

int libvmm_metrics(struct libvmm *vm, char **json)
{
        struct call c;
        int r;

        if (!vm || !json)
                return fail(-EINVAL, "no such VM");
        call_init(&c, vm, VMM_GET_METRICS);
        r = call_run(&c);
        if (!r) {
                *json = c.req.reply.metrics;
                c.req.reply.metrics = NULL;
        }
        call_clear(&c);
        return r;
}

void libvmm_free(void *p)
{
        free(p);
}

void libvmm_destroy(struct libvmm *vm)
{
        uint64_t one = 1;

        if (!vm)
                return;
        if (vm->thread_started) {
                atomic_store(&vm->stopping, true);
                if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
                        /* an eventfd write cannot fail here */
                }
                pthread_join(vm->thread, NULL);
        }
        vm_free(vm);
}

/* ---- the logger ---- */

static void (*log_user)(void *opaque, const char *line, size_t len);

static void log_adapter(void *opaque, enum log_level level, const char *line, size_t len)
{
        (void)level;
        log_user(opaque, line, len);
}

int libvmm_set_log(const char *level, void (*sink)(void *opaque, const char *line, size_t len),
                   void *opaque)
{
        enum log_level l;

        if (level) {
                if (log_level_parse(level, &l))
                        return fail(-EINVAL, "unknown log level '%s'", level);
                log_set_level(l);
        }
        log_set_sink(NULL, NULL);
        log_user = sink;
        if (sink)
                log_set_sink(log_adapter, opaque);
        return 0;
}
