#include "vcpu.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvm/kvm_vcpu.h"
#include "common/log.h"

enum vcpu_request { REQ_RUN, REQ_PAUSE, REQ_STOP };

struct vcpu {
        unsigned index;
        int fd;
        struct kvm_run *run;
        size_t run_size;
        struct vcpu_env env;
        struct vcpu_stats stats;

        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Written under lock only (see "The kick protocol" below); the thread reads it
         * without the lock before each KVM_RUN. */
        _Atomic int request;
        /* The thread exists and may be kicked (guarded by lock): set once vcpu_start has
         * it, cleared by vcpu_stop before the join, so no kick ever targets a joined thread. */
        bool started;
        bool parked;    /* guarded by lock */
        bool exited;    /* guarded by lock */
        bool init_done; /* env.thread_init has run; guarded by lock */
        int init_err;
        /* The last KVM_RUN returned an exit whose completion (an I/O read's data, the rest of
         * a string I/O) KVM only performs on the next KVM_RUN: the vCPU thread's own. */
        bool needs_completion;
        bool immediate_exit; /* KVM_CAP_IMMEDIATE_EXIT */
};

int vcpu_kick_signal(void)
{
        return SIGRTMIN;
}

int vcpu_create(struct kvm *kvm, unsigned index, const struct vcpu_env *env, struct error *err,
                struct vcpu **out)
{
        struct vcpu *v = calloc(1, sizeof(*v));
        int r;

        if (!v)
                return error_set(err, -ENOMEM, "out of memory");
        r = kvm_create_vcpu(kvm, index, &v->fd, &v->run, err);
        if (r) {
                free(v);
                return r;
        }
        v->index = index;
        v->immediate_exit = kvm_check_extension(kvm->sys_fd, KVM_CAP_IMMEDIATE_EXIT) > 0;
        v->run_size = (size_t)kvm->run_size;
        v->env = *env;
        pthread_mutex_init(&v->lock, NULL);
        pthread_cond_init(&v->cond, NULL);
        atomic_store(&v->request, REQ_RUN);
        *out = v;
        return 0;
}

void vcpu_destroy(struct vcpu *v)
{
        if (!v)
                return;
        vcpu_stop(v);
        munmap(v->run, v->run_size);
        close(v->fd);
        pthread_mutex_destroy(&v->lock);
        pthread_cond_destroy(&v->cond);
        free(v);
}

int vcpu_fd(const struct vcpu *v)
{
        return v->fd;
}

unsigned vcpu_index(const struct vcpu *v)
{
        return v->index;
}

struct vcpu_stats *vcpu_stats(struct vcpu *v)
{
        return &v->stats;
}

static uint64_t clock_ns(clockid_t id)
{
        struct timespec ts;
        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The kick protocol: how a request (pause, stop) reaches a thread that may be inside
 * KVM_RUN, where only a signal gets it out.
 *
 * The kick signal is blocked on the vCPU thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK),
 * so a kick sent at any other time stays pending, and a KVM_RUN entered with it pending
 * returns EINTR at once. Kicks are consumed only by drain_kicks. Hence the two rules:
 *
 *  - The requester stores the request, then kicks (both under lock, so `started` and
 *    `parked` are stable and the thread cannot be joined meanwhile). It skips the kick
 *    when the thread is parked: the parked loop re-reads the request under the lock before
 *    it leaves.
 *  - The thread reads the request only after its last drain before KVM_RUN: drain, then
 *    read. A request stored after that read was kicked after the drain, so its kick is
 *    pending at KVM_RUN's entry; a request stored before it is seen by the read.
 *
 * The interleavings, for a request R stored at time s and kicked at k > s (under lock):
 *  - s before the thread's read: the read sees R (pause parks, stop ends the thread).
 *  - s after the read, the thread not yet in KVM_RUN: the kick is pending (nothing drains
 *    between the read and KVM_RUN), KVM_RUN returns EINTR, the thread drains and reads R.
 *  - s after the read, the thread inside KVM_RUN: the kick interrupts it, same as above.
 *  - the thread is parked: R is a stop (a pause of a parked vCPU changes nothing); the
 *    broadcast wakes it and the parked loop reads R under the lock.
 *  - the thread has just left the parked loop (it saw RUN under the lock and unlocked):
 *    it drains, which may eat R's kick, and then reads the request again before KVM_RUN
 *    (wait_runnable loops), which sees R. (Draining before that read, and reading once
 *    more after it, is the fix of issue 20's lost wakeup: the kick was drained after the
 *    last read, and a guest in hlt never left KVM_RUN.)
 *  - the thread is not started yet (vcpu_start has not published `started`): the
 *    requester does not kick; vcpu_start kicks once it publishes `started` if the request
 *    is no longer RUN, which is after s (both under lock), so the kick is pending at the
 *    thread's next KVM_RUN.
 * Stale kicks (a kick whose request the thread already saw) cost one EINTR at most.
 *
 * Requests: RUN -> PAUSE (vcpu_pause, only from RUN), PAUSE -> RUN (vcpu_resume), anything
 * -> STOP (vcpu_request_stop), and STOP is final: a pause never turns a stop back into
 * something the thread would park on.
 */
static void kick_locked(struct vcpu *v)
{
        if (v->started && !v->parked && !v->exited)
                pthread_kill(v->thread, vcpu_kick_signal());
}

static void request_stop_locked(struct vcpu *v)
{
        atomic_store(&v->request, REQ_STOP);
        kick_locked(v);
        pthread_cond_broadcast(&v->cond);
}

static void drain_kicks(void)
{
        struct timespec zero = {0, 0};
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, vcpu_kick_signal());
        while (sigtimedwait(&set, NULL, &zero) > 0)
                ;
}

static bool handle_exit(struct vcpu *v);

/*
 * Before parking: KVM finishes an exit (stores an I/O read's data into the registers,
 * advances past the instruction, goes on with a string I/O) only inside the next KVM_RUN.
 * Until then the registers are not the guest's real state, so a paused vCPU would be saved
 * mid-instruction. A KVM_RUN with immediate_exit (or with the kick signal pending on older
 * kernels) completes it and returns without running a guest instruction; a string I/O may
 * first need more exits, which are handled as usual.
 */
static void complete_pending(struct vcpu *v)
{
        if (!v->needs_completion)
                return;
        v->needs_completion = false;
        if (v->immediate_exit)
                v->run->immediate_exit = 1;
        for (unsigned i = 0; i < 1024; i++) {
                if (!v->immediate_exit)
                        pthread_kill(pthread_self(), vcpu_kick_signal());
                if (kvm_vcpu_run(v->fd) < 0)
                        break; /* EINTR: everything is complete */
                if (!handle_exit(v))
                        break;
        }
        v->run->immediate_exit = 0;
        drain_kicks();
}

/* Called before each KVM_RUN, after the last drain (the kick protocol above): parks while
 * paused; returns false when the thread must end. */
static bool wait_runnable(struct vcpu *v)
{
        for (;;) {
                int req = atomic_load(&v->request);

                if (req == REQ_RUN)
                        return true;
                if (req == REQ_STOP)
                        return false;
                complete_pending(v);
                pthread_mutex_lock(&v->lock);
                while (atomic_load(&v->request) == REQ_PAUSE) {
                        if (!v->parked) {
                                v->parked = true;
                                pthread_cond_broadcast(&v->cond);
                        }
                        pthread_cond_wait(&v->cond, &v->lock);
                }
                v->parked = false;
                pthread_mutex_unlock(&v->lock);
                /* Kicks sent before now are stale, but one may belong to a pause stored
                 * since the unlock: drop them all, then read the request again. */
                drain_kicks();
        }
}

static void log_fatal_state(struct vcpu *v, const char *what)
{
        struct kvm_regs regs;
        struct kvm_sregs sregs;

        if (kvm_vcpu_get_regs(v->fd, &regs) || kvm_vcpu_get_sregs(v->fd, &sregs)) {
                LOG_ERROR("vcpu%u: %s", v->index, what);
                return;
        }
        LOG_ERROR("vcpu%u: %s at rip=0x%llx rsp=0x%llx cr0=0x%llx cr3=0x%llx cr4=0x%llx "
                  "efer=0x%llx cs=0x%x",
                  v->index, what, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
                  (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
                  (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer, sregs.cs.selector);
}

static void handle_io(struct vcpu *v)
{
        struct kvm_run *run = v->run;
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        bool out = run->io.direction == KVM_EXIT_IO_OUT;

        atomic_fetch_add(out ? &v->stats.exit_io_out : &v->stats.exit_io_in, 1);
        /* String I/O (rep outsb/insb) hands over `count` items in one exit. */
        for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
                if (out)
                        bus_write(v->env.pio, run->io.port, data, run->io.size);
                else
                        bus_read(v->env.pio, run->io.port, data, run->io.size);
        }
}

static void handle_mmio(struct vcpu *v)
{
        struct kvm_run *run = v->run;
        uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;

        if (run->mmio.is_write) {
                atomic_fetch_add(&v->stats.exit_mmio_write, 1);
                bus_write(v->env.mmio, run->mmio.phys_addr, run->mmio.data, len);
        } else {
                atomic_fetch_add(&v->stats.exit_mmio_read, 1);
                bus_read(v->env.mmio, run->mmio.phys_addr, run->mmio.data, len);
        }
}

/* Returns false when the vCPU must stop running the guest. */
static bool platform_exit(struct vcpu *v)
{
        return v->env.platform_exit &&
               v->env.platform_exit(v->env.platform_opaque, v->index, v->fd, v->run);
}

static bool platform_fault(struct vcpu *v)
{
        return v->env.platform_fault && v->env.platform_fault(v->env.platform_opaque, v->fd);
}

static bool handle_exit(struct vcpu *v)
{
        struct kvm_run *run = v->run;
        char what[160];

        switch (run->exit_reason) {
        case KVM_EXIT_X86_RDMSR:
        case KVM_EXIT_X86_WRMSR:
                /* Only intercepted MSRs exit; one nobody serves faults like a missing MSR. */
                if (!platform_exit(v))
                        run->msr.error = 1;
                return true;
        case KVM_EXIT_HYPERCALL:
                if (!platform_exit(v))
                        run->hypercall.ret = (uint64_t)-1000; /* -KVM_ENOSYS */
                return true;
        case KVM_EXIT_IO:
                handle_io(v);
                return true;
        case KVM_EXIT_MMIO:
                if (!platform_exit(v))
                        handle_mmio(v);
                return true;
        case KVM_EXIT_INTR:
                return true;
        case KVM_EXIT_HLT:
                LOG_INFO("vcpu%u: halted", v->index);
                v->env.request_stop(v->env.opaque, v->index, VCPU_STOP_SHUTDOWN);
                return false;
        case KVM_EXIT_SHUTDOWN:
                LOG_INFO("vcpu%u: triple fault (KVM_EXIT_SHUTDOWN): treating as a guest reset",
                         v->index);
                v->env.request_stop(v->env.opaque, v->index, VCPU_STOP_RESET);
                return false;
        case KVM_EXIT_SYSTEM_EVENT:
                LOG_INFO("vcpu%u: system event %u", v->index, run->system_event.type);
                v->env.request_stop(
                    v->env.opaque, v->index,
                    run->system_event.type == KVM_SYSTEM_EVENT_CRASH   ? VCPU_STOP_ERROR
                    : run->system_event.type == KVM_SYSTEM_EVENT_RESET ? VCPU_STOP_RESET
                                                                       : VCPU_STOP_SHUTDOWN);
                return false;
        case KVM_EXIT_FAIL_ENTRY:
                snprintf(what, sizeof(what), "KVM_EXIT_FAIL_ENTRY (hardware reason 0x%llx)",
                         (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
                break;
        case KVM_EXIT_INTERNAL_ERROR:
                /* A fetch from a page the platform took from the guest: bring it back. */
                if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && platform_fault(v))
                        return true;
                snprintf(what, sizeof(what),
                         "KVM_EXIT_INTERNAL_ERROR suberror %u%s (the guest ran an instruction "
                         "KVM cannot emulate)",
                         run->internal.suberror,
                         run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                             ? " (emulation failure)"
                             : "");
                break;
        default:
                snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
                break;
        }
        atomic_fetch_add(&v->stats.failures, 1);
        log_fatal_state(v, what);
        v->env.request_stop(v->env.opaque, v->index, VCPU_STOP_ERROR);
        return false;
}

static int set_signal_mask(struct vcpu *v)
{
        sigset_t cur;

        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        sigdelset(&cur, vcpu_kick_signal());
        return kvm_vcpu_set_signal_mask(v->fd, &cur);
}

static void record_first_exit(struct vcpu *v)
{
        if (atomic_load(&v->stats.first_exit_ns))
                return;
        atomic_store(&v->stats.first_exit_cpu_ns, clock_ns(CLOCK_PROCESS_CPUTIME_ID));
        atomic_store(&v->stats.first_exit_ns, clock_ns(CLOCK_MONOTONIC));
}

static void *vcpu_thread(void *arg)
{
        struct vcpu *v = arg;
        char name[16];
        unsigned backoff_us = 0;
        int r;

        snprintf(name, sizeof(name), "vcpu%u", v->index);
        log_set_thread_name(name);
        pthread_setname_np(pthread_self(), name);
        if (v->env.thread_init) {
                r = v->env.thread_init(v->env.opaque, v->index);
                pthread_mutex_lock(&v->lock);
                v->init_err = r;
                v->init_done = true;
                pthread_cond_broadcast(&v->cond);
                pthread_mutex_unlock(&v->lock);
                if (r)
                        goto out; /* vcpu_start reports it */
        }
        r = set_signal_mask(v);
        if (r) {
                LOG_ERROR("vcpu%u: KVM_SET_SIGNAL_MASK: %s", v->index, strerror(-r));
                v->env.request_stop(v->env.opaque, v->index, VCPU_STOP_ERROR);
                goto out;
        }
        while (wait_runnable(v)) {
                if (kvm_vcpu_run(v->fd) < 0) {
                        v->needs_completion = false; /* entering completed the last exit */
                        if (errno == EINTR) {
                                drain_kicks();
                                continue;
                        }
                        if (errno == EAGAIN) {
                                /* An AP waiting for INIT/SIPI: software KVM backends return
                                 * EAGAIN instead of blocking. Back off so the poll does not
                                 * steal the CPU from vCPUs doing work. */
                                backoff_us = backoff_us ? backoff_us * 2 : 50;
                                if (backoff_us > 5000)
                                        backoff_us = 5000;
                                usleep(backoff_us);
                                continue;
                        }
                        /* Hardware KVM reports a guest touch of a paged-out page so. */
                        if (errno == EFAULT && platform_fault(v))
                                continue;
                        atomic_fetch_add(&v->stats.failures, 1);
                        LOG_ERROR("vcpu%u: KVM_RUN: %s", v->index, strerror(errno));
                        v->env.request_stop(v->env.opaque, v->index, VCPU_STOP_ERROR);
                        break;
                }
                backoff_us = 0;
                record_first_exit(v);
                v->needs_completion = true;
                if (!handle_exit(v))
                        break;
        }
out:
        pthread_mutex_lock(&v->lock);
        v->exited = true;
        pthread_cond_broadcast(&v->cond);
        pthread_mutex_unlock(&v->lock);
        return NULL;
}

int vcpu_start(struct vcpu *v, bool paused, struct error *err)
{
        sigset_t block, old;
        int r;

        /* A restored vCPU parks before its first KVM_RUN until the VM is resumed. */
        if (paused)
                atomic_store(&v->request, REQ_PAUSE);
        /* The thread inherits this mask: the kick signal stays blocked outside KVM_RUN. */
        sigemptyset(&block);
        sigaddset(&block, vcpu_kick_signal());
        pthread_sigmask(SIG_BLOCK, &block, &old);
        r = pthread_create(&v->thread, NULL, vcpu_thread, v);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r)
                return error_set(err, -r, "cannot start vcpu%u thread: %s", v->index, strerror(r));
        if (v->env.thread_init) {
                pthread_mutex_lock(&v->lock);
                while (!v->init_done)
                        pthread_cond_wait(&v->cond, &v->lock);
                r = v->init_err;
                pthread_mutex_unlock(&v->lock);
                if (r) {
                        pthread_join(v->thread, NULL);
                        return error_set(err, r, "vcpu%u: cannot confine its thread: %s", v->index,
                                         strerror(-r));
                }
        }
        /* The thread may already run the guest (unconfined, not paused) and another vCPU may
         * have asked it to stop while it could not be kicked yet: kick for that request. */
        pthread_mutex_lock(&v->lock);
        v->started = true;
        if (atomic_load(&v->request) != REQ_RUN)
                kick_locked(v);
        pthread_mutex_unlock(&v->lock);
        return 0;
}

void vcpu_pause(struct vcpu *v)
{
        pthread_mutex_lock(&v->lock);
        if (v->started) {
                int expected = REQ_RUN;

                if (atomic_compare_exchange_strong(&v->request, &expected, REQ_PAUSE))
                        kick_locked(v);
                while (!v->parked && !v->exited)
                        pthread_cond_wait(&v->cond, &v->lock);
        }
        pthread_mutex_unlock(&v->lock);
}

void vcpu_resume(struct vcpu *v)
{
        int expected = REQ_PAUSE;

        pthread_mutex_lock(&v->lock);
        atomic_compare_exchange_strong(&v->request, &expected, REQ_RUN);
        pthread_cond_broadcast(&v->cond);
        pthread_mutex_unlock(&v->lock);
}

void vcpu_request_stop(struct vcpu *v)
{
        pthread_mutex_lock(&v->lock);
        request_stop_locked(v);
        pthread_mutex_unlock(&v->lock);
}

void vcpu_stop(struct vcpu *v)
{
        pthread_mutex_lock(&v->lock);
        if (!v->started) {
                pthread_mutex_unlock(&v->lock);
                return;
        }
        request_stop_locked(v);
        /* From here on nobody kicks the thread: it is about to be joined. */
        v->started = false;
        pthread_mutex_unlock(&v->lock);
        pthread_join(v->thread, NULL);
}
