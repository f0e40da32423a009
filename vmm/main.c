/*
 * The vmm process: parse the command line, validate the configuration, build the VM, run
 * the event loop until the guest or a signal ends it. Only this file calls exit().
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/event_loop.h"
#include "kvm.h"
#include "vm.h"

#define EXIT_OK         0
#define EXIT_ERROR      1
#define EXIT_BAD_CONFIG 152
#define EXIT_BAD_ARGS   153

struct run_state {
        bool done;
        int exit_code;
        int sigfd;
        struct vm *vm;
};

static uint64_t clock_ns(clockid_t id)
{
        struct timespec ts;
        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_vm_stop(void *opaque, int exit_code)
{
        struct run_state *st = opaque;

        st->done = true;
        st->exit_code = exit_code;
}

static void on_signal(void *opaque, uint32_t events)
{
        struct run_state *st = opaque;
        struct signalfd_siginfo si;

        (void)events;
        if (read(st->sigfd, &si, sizeof(si)) != sizeof(si))
                return;
        LOG_INFO("received signal %u (%s), shutting down", si.ssi_signo,
                 strsignal((int)si.ssi_signo));
        st->done = true;
        st->exit_code = EXIT_OK;
}

/* Interactive consoles get keys as typed (no line editing, no local echo); Ctrl-C still
 * stops the VMM. */
static bool terminal_raw(struct termios *saved)
{
        struct termios t;

        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, saved))
                return false;
        t = *saved;
        t.c_lflag &= (tcflag_t) ~(ICANON | ECHO | ECHONL | IEXTEN);
        t.c_iflag &= (tcflag_t) ~(IXON | ICRNL);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        return tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
}

static int exit_code_for(const struct error *err)
{
        return err->kind == ERROR_CONFIG ? EXIT_BAD_CONFIG : EXIT_ERROR;
}

static int run_vm(const struct cli_opts *o, uint64_t start_ns, uint64_t start_cpu_ns)
{
        struct run_state st = {.sigfd = -1};
        struct event_loop *loop = NULL;
        struct error err = {0};
        struct termios saved;
        bool raw = false;
        sigset_t sigs;
        int r;

        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        if (event_loop_create(&loop)) {
                LOG_ERROR("cannot create the event loop");
                return EXIT_ERROR;
        }
        st.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
        if (st.sigfd < 0 || event_loop_add(loop, st.sigfd, EPOLLIN, on_signal, &st)) {
                LOG_ERROR("cannot watch signals: %s", strerror(errno));
                event_loop_destroy(loop);
                return EXIT_ERROR;
        }

        struct vm_params params = {
            .cfg = &o->cfg,
            .loop = loop,
            .console_in_fd = o->cfg.serial_in ? STDIN_FILENO : -1,
            .console_out_fd = STDOUT_FILENO,
            .start_ns = start_ns,
            .start_cpu_ns = start_cpu_ns,
            .on_stop = on_vm_stop,
            .opaque = &st,
        };
        r = vm_create(&params, &err, &st.vm);
        if (r) {
                LOG_ERROR("%s", err.msg);
                st.exit_code = exit_code_for(&err);
                goto out;
        }
        if (o->cfg.serial_in)
                raw = terminal_raw(&saved);
        r = vm_start(st.vm, &err);
        if (r) {
                LOG_ERROR("%s", err.msg);
                st.exit_code = EXIT_ERROR;
                goto out;
        }
        while (!st.done) {
                r = event_loop_run_once(loop, 100);
                if (r < 0) {
                        LOG_ERROR("event loop: %s", strerror(-r));
                        st.exit_code = EXIT_ERROR;
                        break;
                }
        }
        vm_log_startup_stats(st.vm);
out:
        vm_destroy(st.vm);
        if (raw)
                tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        event_loop_destroy(loop);
        close(st.sigfd);
        return st.exit_code;
}

int main(int argc, char **argv)
{
        uint64_t start_ns = clock_ns(CLOCK_MONOTONIC);
        uint64_t start_cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        struct vmm_host_limits limits;
        struct error err = {0};
        struct cli_opts o;
        int code;

        if (cli_parse(argc, argv, &o, &err)) {
                fprintf(stderr, "vmm: %s\nTry 'vmm --help' for more information.\n", err.msg);
                cli_opts_free(&o);
                /* Well-formed arguments describing an impossible machine (two root drives)
                 * are a bad configuration, not bad arguments. */
                return err.kind == ERROR_CONFIG ? EXIT_BAD_CONFIG : EXIT_BAD_ARGS;
        }
        if (o.help || o.version) {
                fputs(o.help ? cli_usage() : "vmm " VMM_VERSION "\n", stdout);
                cli_opts_free(&o);
                return EXIT_OK;
        }
        if (o.level_set)
                log_set_level(o.level);
        if (o.instance_id)
                log_set_instance_id(o.instance_id);

        /* The vCPU limit is KVM's; it is checked again against the real KVM in vm_create. */
        vmm_host_limits_get(&limits, 0);
        if (vmm_config_validate(&o.cfg, &limits, &err)) {
                LOG_ERROR("%s", err.msg);
                cli_opts_free(&o);
                return EXIT_BAD_CONFIG;
        }
        if (o.dump_platform_dir) {
                code =
                    vm_dump_platform(&o.cfg, o.dump_platform_dir, &err) ? EXIT_BAD_CONFIG : EXIT_OK;
                if (code)
                        LOG_ERROR("%s", err.msg);
                cli_opts_free(&o);
                return code;
        }
        if (!o.cfg.boot.kernel_image_path) {
                LOG_ERROR("no kernel image was given (--kernel FILE)");
                cli_opts_free(&o);
                return EXIT_BAD_ARGS;
        }
        code = run_vm(&o, start_ns, start_cpu_ns);
        cli_opts_free(&o);
        return code;
}
