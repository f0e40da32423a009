/*
 * The vmm process: parse the command line (and the config file), validate the
 * configuration, then run the VMM thread's event loop with a controller (vmm/controller.h)
 * and, with --api-sock, the REST API server (api/server.h) until the guest or a signal ends
 * it. Only this file calls exit().
 *
 * Modes: a kernel on the command line or a config file boots at once (the API, if any, then
 * serves the runtime calls); with only --api-sock the VMM waits for its configuration and
 * PUT /actions InstanceStart.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "api/server.h"
#include "cli.h"
#include "common/clock.h"
#include "common/event_loop.h"
#include "common/file.h"
#include "common/log.h"
#include "vmm/controller.h"
#include "vmm/sandbox.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

#define EXIT_OK         0
#define EXIT_ERROR      1
#define EXIT_BAD_CONFIG 152
#define EXIT_BAD_ARGS   153

struct run_state {
        bool done;
        int exit_code;
        int sigfd;
};

/* Counted for the metrics' "signals" group. */
static struct controller_signal_counts signal_counts;

/* How the process's threads are confined (vmm/sandbox.h). */
struct confinement {
        struct sandbox *sandbox; /* NULL: --no-seccomp */
        const char *violation;   /* --seccomp-test-violation: the role that misbehaves */
};

static enum sandbox_role sandbox_role_of(enum vmm_thread_role role)
{
        switch (role) {
        case VMM_THREAD_API:
                return SANDBOX_ROLE_API;
        case VMM_THREAD_VCPU:
                return SANDBOX_ROLE_VCPU;
        case VMM_THREAD_UFFD:
                return SANDBOX_ROLE_UFFD;
        default:
                return SANDBOX_ROLE_VMM;
        }
}

/* The controller's thread_init hook: the role's filter, then (tests) the forbidden call
 * that must end the process. */
static int confine_thread(void *opaque, enum vmm_thread_role role)
{
        struct confinement *conf = opaque;
        enum sandbox_role sr = sandbox_role_of(role);
        int r = conf->sandbox ? sandbox_apply(conf->sandbox, sr) : 0;

        if (!r && conf->violation && strcmp(conf->violation, sandbox_role_name(sr)) == 0) {
                LOG_WARN("seccomp test: thread role \"%s\" makes a forbidden system call "
                         "(getpgid)",
                         conf->violation);
                syscall(SYS_getpgid, 0);
                LOG_WARN("seccomp test: the call went through (no filter)");
        }
        return r;
}

static void on_exit_request(void *opaque, int exit_code)
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
        if (si.ssi_signo == SIGHUP)
                atomic_fetch_add(&signal_counts.sighup, 1);
        LOG_INFO("received signal %u (%s), shutting down", si.ssi_signo,
                 strsignal((int)si.ssi_signo));
        st->done = true;
        st->exit_code = EXIT_OK;
}

/* The signals that stop the VMM cleanly (exit 0). main blocks them before anything else,
 * so no moment of the startup is left to their default action (the process killed) and
 * every thread inherits the block; run()'s signalfd takes them once the event loop runs,
 * including any that arrived during the startup. */
static void stop_signals(sigset_t *set)
{
        sigemptyset(set);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGHUP);
}

/* A write to a pipe or socket whose reader is gone fails with EPIPE; the signal is only
 * counted. */
static void on_sigpipe(int sig)
{
        (void)sig;
        atomic_fetch_add(&signal_counts.sigpipe, 1);
}

/* Guest memory mapped from a snapshot's memory file that was truncated under it: a copy the
 * VMM checked resumes with an error (guest_mem_copy_checked); a device touching the page for
 * the guest ends the process, naming the file, as the guest touching it does. Any other
 * SIGBUS too ends it with a line. */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
        static const char other[] = "vmm: SIGBUS outside guest memory; exiting\n";
        char msg[512];
        size_t n;

        (void)sig;
        (void)uc;
        n = vm_sigbus_message(si->si_addr, msg, sizeof(msg)); /* or resumes a checked copy */
        atomic_fetch_add(&signal_counts.sigbus, 1);
        if (write(STDERR_FILENO, n ? msg : other, n ? n : sizeof(other) - 1) < 0)
                n = 0;
        _exit(EXIT_ERROR);
}

/* The Uffd backend's page-fault handler is gone (the message is logged): the process ends
 * at once, from the watcher's thread, as when a memory file is truncated under the guest
 * -- any other thread may be waiting for a page nobody will fill, so nothing waits for
 * them. */
static void on_memory_lost(void *opaque, const char *msg)
{
        (void)opaque;
        (void)msg;
        _exit(EXIT_ERROR);
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

static int run(struct cli_opts *o, struct confinement *conf, bool boot_now, uint64_t start_ns,
               uint64_t start_cpu_ns)
{
        struct run_state st = {.sigfd = -1};
        struct event_loop *loop = NULL;
        struct controller *ctl = NULL;
        struct api_server *api = NULL;
        struct error err = {0};
        struct sigaction sa = {.sa_handler = on_sigpipe};
        struct sigaction bus = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
        struct termios saved;
        bool raw = false;
        sigset_t sigs;
        int r;

        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
        sigemptyset(&bus.sa_mask);
        sigaction(SIGBUS, &bus, NULL);
        stop_signals(&sigs); /* blocked since main's start */
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

        struct controller_params params = {
            .loop = loop,
            .instance_id = o->instance_id,
            .console_in_fd = o->cfg.serial_in ? STDIN_FILENO : -1,
            .console_out_fd = STDOUT_FILENO,
            .process_start_ns = start_ns,
            .process_start_cpu_ns = start_cpu_ns,
            .signals = &signal_counts,
            .on_exit = on_exit_request,
            .on_memory_lost = on_memory_lost,
            .opaque = &st,
            .thread_init = confine_thread,
            .thread_opaque = conf,
            .seccomp_faults = sandbox_fault_count,
            /* Firecracker's default store limit is the API's body limit. */
            .mmds_size_limit = o->mmds_size_limit ? o->mmds_size_limit : o->max_payload,
        };
        char *metadata = NULL;

        if (o->metadata) {
                r = file_read_all("--metadata", o->metadata, 16u << 20, &metadata,
                                  &params.metadata_len, &err);
                if (r) {
                        LOG_ERROR("%s", err.msg);
                        st.exit_code = exit_code_for(&err);
                        goto out;
                }
                params.metadata = metadata;
        }
        r = controller_create(&params, &o->cfg, &err, &ctl);
        free(metadata);
        if (r) {
                LOG_ERROR("%s", err.msg);
                st.exit_code = exit_code_for(&err);
                goto out;
        }
        /* This thread runs the VM: its lines follow the VM's logger settings. */
        controller_bind_thread(ctl);
        if (o->api_sock) {
                r = api_server_start(o->api_sock, ctl, o->max_payload, &err, &api);
                if (r) {
                        LOG_ERROR("%s", err.msg);
                        st.exit_code = EXIT_ERROR;
                        goto out;
                }
                /* bench/startup's exec -> API accepting (Firecracker's "API-ready"). */
                LOG_DEBUG("startup: API accepting at monotonic %llu ns, process cpu %llu ns; "
                          "main at monotonic %llu ns, process cpu %llu ns",
                          (unsigned long long)clock_ns(CLOCK_MONOTONIC),
                          (unsigned long long)clock_ns(CLOCK_PROCESS_CPUTIME_ID),
                          (unsigned long long)start_ns, (unsigned long long)start_cpu_ns);
        }
        if (boot_now) {
                /* The boot timer counts from the process start for command-line boots. */
                r = controller_start(ctl, start_ns, start_cpu_ns, &err);
                if (r) {
                        LOG_ERROR("%s", err.msg);
                        st.exit_code = exit_code_for(&err);
                        goto out;
                }
        }
        if (params.console_in_fd >= 0)
                raw = terminal_raw(&saved);
        while (!st.done) {
                r = event_loop_run_once(loop, 100);
                if (r < 0) {
                        LOG_ERROR("event loop: %s", strerror(-r));
                        st.exit_code = EXIT_ERROR;
                        break;
                }
        }
        controller_log_startup_stats(ctl);
out:
        /* Answer whatever is queued, then stop the API thread, then the VM. */
        if (ctl)
                controller_close(ctl);
        api_server_stop(api);
        controller_destroy(ctl);
        if (raw)
                tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        event_loop_destroy(loop);
        close(st.sigfd);
        return st.exit_code;
}

/* --config-file: the machine from the file, the process options from the command line. */
static int load_config_file(struct cli_opts *o, struct error *err)
{
        struct vmm_config file;
        int r;

        if (o->machine_option)
                return error_set(err, -EINVAL,
                                 "--%s cannot be combined with --config-file (the machine comes "
                                 "from the file)",
                                 o->machine_option);
        r = api_config_load_file(o->config_file, &file, err);
        if (!r && cli_apply_process_options(o, &file))
                r = error_set(err, -ENOMEM, "out of memory");
        if (r) {
                vmm_config_free(&file);
                return r;
        }
        vmm_config_free(&o->cfg);
        o->cfg = file;
        return 0;
}

static int check_modes(const struct cli_opts *o, struct error *err)
{
        if (o->no_api && o->api_sock)
                return error_set(err, -EINVAL, "--no-api and --api-sock exclude each other");
        if (!o->cfg.boot.kernel_image_path && !o->api_sock)
                return error_set(err, -EINVAL,
                                 "no kernel image was given (--kernel FILE or --config-file FILE; "
                                 "or --api-sock PATH to configure the VM through the API)");
        return 0;
}

int main(int argc, char **argv)
{
        uint64_t start_ns = clock_ns(CLOCK_MONOTONIC);
        uint64_t start_cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        struct vmm_host_limits limits;
        struct confinement conf = {0};
        struct error err = {0};
        struct cli_opts o;
        sigset_t stop, mask;
        bool boot_now;
        int code;

        stop_signals(&stop);
        pthread_sigmask(SIG_BLOCK, &stop, &mask);
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
        if (o.describe_snapshot || o.merge_base) {
                /* One-shot tools on possibly large files: a stop signal ends them at once. */
                pthread_sigmask(SIG_SETMASK, &mask, NULL);
                if (o.describe_snapshot)
                        code = snapshot_describe(o.describe_snapshot, stdout, &err);
                else
                        code = snapshot_merge_memory(o.merge_base, o.merge_diff, &err);
                if (code)
                        fprintf(stderr, "vmm: %s\n", err.msg);
                cli_opts_free(&o);
                return code ? (err.kind == ERROR_CONFIG ? EXIT_BAD_CONFIG : EXIT_ERROR) : EXIT_OK;
        }
        if (o.level_set)
                log_set_level(o.level);
        if (o.instance_id)
                log_set_instance_id(o.instance_id);
        if (o.config_file && load_config_file(&o, &err)) {
                LOG_ERROR("%s", err.msg);
                cli_opts_free(&o);
                return err.kind == ERROR_CONFIG ? EXIT_BAD_CONFIG : EXIT_BAD_ARGS;
        }

        /* The vCPU limit is KVM's; it is checked again against the real KVM in vm_create. */
        vmm_host_limits_get(&limits, 0);
        if (vmm_config_validate(&o.cfg, &limits, &err) ||
            vmm_config_check_memory(&o.cfg, &limits, &err)) {
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
        if (check_modes(&o, &err)) {
                LOG_ERROR("%s", err.msg);
                cli_opts_free(&o);
                return EXIT_BAD_ARGS;
        }
        boot_now = o.cfg.boot.kernel_image_path != NULL;
        /* Every thread role gets its filter before the guest runs (vm_start, the API
         * thread's start); built here, while the process may still do anything. */
        conf.violation = o.seccomp_test_violation;
        if (o.no_seccomp) {
                LOG_WARN("seccomp filtering is disabled (--no-seccomp): no thread is confined");
        } else {
                code = sandbox_create(&conf.sandbox);
                if (code) {
                        LOG_ERROR("cannot build the seccomp filters: %s", strerror(-code));
                        cli_opts_free(&o);
                        return EXIT_ERROR;
                }
        }
        code = run(&o, &conf, boot_now, start_ns, start_cpu_ns);
        /* Every thread that could trap has been joined. */
        sandbox_destroy(conf.sandbox);
        cli_opts_free(&o);
        return code;
}
