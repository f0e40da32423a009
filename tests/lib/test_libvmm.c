/*
 * libvmm through its public header only (linked against libvmm.so), with the probe guest:
 * error codes and messages (per thread), phase rules, life-cycle events, several VMs at
 * once with calls from several threads, wait/exit fd, metrics, Full and Diff snapshots
 * merged and restored, the load refused after configuring, destroying a running VM, a
 * restore served by a page-fault handler (examples/uffd_handler) and that handler's death,
 * the balloon's free page reporting configured through the JSON, the metadata service's data
 * store and its configuration.
 *
 * Needs /dev/kvm: run by tests/kvm/test_libvmm.py (which skips, or fails in CI, without it).
 * Arguments: probe_vm_args (the probe, a scratch directory, the tests to run).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cmocka.h>

#include "libvmm.h"
#include "probe_vm.h"

static const char *dir;

static void *other_thread_error(void *arg)
{
        (void)arg;
        assert_int_equal(libvmm_create("{\"machine-config\": 7}", NULL, &(struct libvmm *){0}),
                         -EINVAL);
        return strdup(libvmm_last_error());
}

static void test_errors(void **state)
{
        struct libvmm *vm;
        struct guest g;
        struct libvmm_options o = guest_options(&g, "errors");
        pthread_t t;
        char *theirs;

        (void)state;
        guest_init(&g);
        assert_int_equal(libvmm_create("{not json", NULL, &vm), -EINVAL);
        assert_true(strlen(libvmm_last_error()) > 0);
        assert_int_equal(libvmm_create("{\"machine-config\": {\"vcpu_count\": 0, "
                                       "\"mem_size_mib\": 64}}",
                                       NULL, &vm),
                         -EINVAL);
        assert_non_null(strstr(libvmm_last_error(), "vCPUs"));
        assert_int_equal(libvmm_create("{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": "
                                       "\"/nonexistent\", \"is_root_device\": true, "
                                       "\"is_read_only\": true}], \"bogus\": 1}",
                                       NULL, &vm),
                         -EINVAL);
        assert_non_null(strstr(libvmm_last_error(), "bogus"));
        /* A message belongs to the thread that got it. */
        pthread_create(&t, NULL, other_thread_error, NULL);
        pthread_join(t, (void **)&theirs);
        assert_non_null(strstr(theirs, "machine-config"));
        assert_non_null(strstr(libvmm_last_error(), "bogus"));
        free(theirs);
        /* Phases: Firecracker's wording, -EPERM. */
        assert_int_equal(libvmm_create("{}", &o, &vm), 0);
        assert_int_equal(libvmm_pause(vm), -EPERM);
        assert_string_equal(libvmm_last_error(),
                            "The requested operation is not supported before starting the "
                            "microVM.");
        assert_int_equal(libvmm_start(vm), -EINVAL);
        assert_non_null(strstr(libvmm_last_error(), "without kernel configuration"));
        assert_int_equal(libvmm_wait_exit(vm, 10, NULL), -ETIMEDOUT);
        libvmm_destroy(vm); /* never started */
        assert_int_equal(g.events[LIBVMM_EVENT_STARTED], 0);
}

struct poker {
        struct libvmm *vm;
        unsigned calls;
};

static void *poke(void *arg)
{
        struct poker *p = arg;

        for (unsigned i = 0; i < 50; i++) {
                struct libvmm_info info;
                char *json = NULL;

                assert_int_equal(libvmm_info(p->vm, &info), 0);
                assert_int_equal(info.state, LIBVMM_RUNNING);
                assert_int_equal(libvmm_metrics(p->vm, &json), 0);
                assert_non_null(strstr(json, "\"vcpu\""));
                libvmm_free(json);
                p->calls += 2;
        }
        return NULL;
}

static void test_several_vms_and_threads(void **state)
{
        struct guest g[3];
        struct libvmm *vm[3];
        struct poker pk[4];
        pthread_t t[4];
        struct libvmm_info info;
        struct pollfd pfd;
        char id[16];

        (void)state;
        for (int i = 0; i < 3; i++) {
                snprintf(id, sizeof(id), "multi%d", i);
                vm[i] = idle_vm(&g[i], id, false, NULL);
        }
        for (int i = 0; i < 4; i++) {
                pk[i] = (struct poker){.vm = vm[i % 3]};
                pthread_create(&t[i], NULL, poke, &pk[i]);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(pk[i].calls, 100);
        }
        assert_int_equal(libvmm_info(vm[0], &info), 0);
        assert_true(info.first_exit_ns > 0);
        /* Pause and resume one: the others are not affected; events arrive. */
        assert_int_equal(libvmm_pause(vm[1]), 0);
        assert_int_equal(libvmm_info(vm[1], &info), 0);
        assert_int_equal(info.state, LIBVMM_PAUSED);
        assert_int_equal(libvmm_resume(vm[1]), 0);
        assert_int_equal(g[1].events[LIBVMM_EVENT_PAUSED], 1);
        assert_int_equal(g[1].events[LIBVMM_EVENT_RESUMED], 1);
        assert_int_equal(g[1].events[LIBVMM_EVENT_STARTED], 1);
        /* The exit fd becomes readable when the guest ends the VM. */
        pfd = (struct pollfd){.fd = libvmm_exit_fd(vm[2]), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 0), 0);
        assert_int_equal(libvmm_send_ctrl_alt_del(vm[2]), 0);
        assert_int_equal(poll(&pfd, 1, 30000), 1);
        assert_int_equal(libvmm_info(vm[2], &info), 0);
        assert_int_equal(info.state, LIBVMM_EXITED);
        libvmm_destroy(vm[2]);
        end_vm(vm[0], &g[0]);
        /* Destroying a VM that still runs stops it. */
        libvmm_destroy(vm[1]);
}

static void test_snapshots(void **state)
{
        struct guest g, r1, r2;
        struct libvmm *vm, *a, *b;
        char full_s[512], full_m[512], diff_s[512], diff_m[512], params[1400];
        struct libvmm_options o;

        (void)state;
        snprintf(full_s, sizeof(full_s), "%s/lib-full.state", dir);
        snprintf(full_m, sizeof(full_m), "%s/lib-full.mem", dir);
        snprintf(diff_s, sizeof(diff_s), "%s/lib-diff.state", dir);
        snprintf(diff_m, sizeof(diff_m), "%s/lib-diff.mem", dir);
        vm = idle_vm(&g, "snap", true, NULL);
        assert_int_equal(libvmm_snapshot(vm, full_s, full_m, false), -EPERM);
        assert_non_null(strstr(libvmm_last_error(), "not paused"));
        assert_int_equal(libvmm_pause(vm), 0);
        assert_int_equal(libvmm_snapshot(vm, full_s, full_m, false), 0);
        assert_int_equal(libvmm_resume(vm), 0);
        assert_int_equal(libvmm_pause(vm), 0);
        assert_int_equal(libvmm_snapshot(vm, diff_s, diff_m, true), 0);
        libvmm_destroy(vm);
        assert_int_equal(libvmm_merge_memory(full_m, "/nonexistent"), -EINVAL);
        assert_int_equal(libvmm_merge_memory(full_m, diff_m), 0);

        /* Restoring with a machine configured is refused, with the API's message. */
        snprintf(params, sizeof(params),
                 "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\", \"resume_vm\": true}",
                 diff_s, full_m);
        assert_int_equal(libvmm_restore(params,
                                        "{\"machine-config\": {\"vcpu_count\": 1, "
                                        "\"mem_size_mib\": 64}}",
                                        NULL, &a),
                         -EPERM);
        assert_non_null(strstr(libvmm_last_error(), "after configuring boot-specific"));
        assert_int_equal(libvmm_restore("{\"snapshot_path\": \"/nonexistent\", "
                                        "\"mem_file_path\": \"/x\"}",
                                        NULL, NULL, &a),
                         -EINVAL);
        assert_non_null(strstr(libvmm_last_error(), "Cannot load the snapshot"));
        /* Twice from the same files, both run. */
        guest_init(&r1);
        guest_init(&r2);
        o = guest_options(&r1, "restored1");
        assert_int_equal(libvmm_restore(params, "{\"logger\": {\"level\": \"Warning\"}}", &o, &a),
                         0);
        o = guest_options(&r2, "restored2");
        assert_int_equal(libvmm_restore(params, NULL, &o, &b), 0);
        assert_int_equal(r1.events[LIBVMM_EVENT_STARTED], 1);
        end_vm(a, &r1);
        end_vm(b, &r2);
        unlink(full_s);
        unlink(full_m);
        unlink(diff_s);
        unlink(diff_m);
}

/* The Uffd backend through libvmm_restore (the same JSON as the API), served by
 * examples/uffd_handler (next to this program's build directory); a handler that dies
 * while a vCPU waits for a page ends the VM with exit code 1 (the library never ends the
 * process), and nothing hangs. */
static void handler_path(char *buf, size_t cap)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;

        assert_true(n > 0);
        self[n] = '\0';
        for (int up = 0; up < 3; up++) { /* build/tests/lib/test_libvmm -> build */
                slash = strrchr(self, '/');
                assert_non_null(slash);
                *slash = '\0';
        }
        snprintf(buf, cap, "%s/examples/uffd_handler", self);
}

static pid_t start_handler(const char *sock, const char *mem)
{
        char handler[4200];
        pid_t pid;

        handler_path(handler, sizeof(handler));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                execl(handler, handler, sock, mem, (char *)NULL);
                _exit(127);
        }
        while (access(sock, F_OK)) /* the watchdog ends a handler that never listens */
                usleep(10000);
        return pid;
}

/* Until a fault waits on this process's userfaultfd (readable: a page asked for and not
 * served; the handler is stopped, so it stays readable), or at most 10 s. */
static void wait_page_fault_pending(void)
{
        char link[64], target[64];
        int uffd = -1;

        for (int fd = 0; fd < 1024 && uffd < 0; fd++) {
                ssize_t n;

                snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
                n = readlink(link, target, sizeof(target) - 1);
                if (n <= 0)
                        continue;
                target[n] = '\0';
                if (strstr(target, "userfaultfd"))
                        uffd = fd;
        }
        assert_true(uffd >= 0);
        /* Not an assertion: the kill follows either way, only its order is made likely. */
        (void)poll(&(struct pollfd){.fd = uffd, .events = POLLIN}, 1, 10000);
}

static void test_uffd_restore(void **state)
{
        char st[512], mem[512], sock[512], params[1400];
        struct guest g, r1, r2;
        struct libvmm *vm, *a, *b;
        struct libvmm_options o;
        int code = -1, status;
        pid_t h;

        (void)state;
        snprintf(st, sizeof(st), "%s/lib-uffd.state", dir);
        snprintf(mem, sizeof(mem), "%s/lib-uffd.mem", dir);
        snprintf(sock, sizeof(sock), "%s/lib-uffd.sock", dir);
        vm = idle_vm(&g, "uffd", false, NULL);
        assert_int_equal(libvmm_pause(vm), 0);
        assert_int_equal(libvmm_snapshot(vm, st, mem, false), 0);
        libvmm_destroy(vm);
        h = start_handler(sock, mem);
        snprintf(params, sizeof(params),
                 "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
                 "\"backend_path\": \"%s\"}, \"resume_vm\": true}",
                 st, sock);
        guest_init(&r1);
        o = guest_options(&r1, "uffd1");
        if (libvmm_restore(params, NULL, &o, &a))
                fail_msg("restore: %s", libvmm_last_error());
        end_vm(a, &r1);
        /* Paused this time; the handler stops answering, the vCPU waits for a page, the
         * handler dies: the VM ends as an error. */
        snprintf(params, sizeof(params),
                 "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
                 "\"backend_path\": \"%s\"}}",
                 st, sock);
        guest_init(&r2);
        o = guest_options(&r2, "uffd2");
        assert_int_equal(libvmm_restore(params, NULL, &o, &b), 0);
        assert_int_equal(kill(h, SIGSTOP), 0);
        /* Stopped for sure (it reads no fault once the vCPU runs: the fault stays pending). */
        assert_int_equal(waitpid(h, &status, WUNTRACED), h);
        assert_true(WIFSTOPPED(status));
        assert_int_equal(libvmm_resume(b), 0);
        /* The handler is killed only once the vCPU waits for a page inside KVM: the case
         * that hung (about every other run, depending on whether the kick came first),
         * when the kick alone was relied on to free it. */
        wait_page_fault_pending();
        assert_int_equal(libvmm_wait_exit(b, 0, &code), -ETIMEDOUT);
        assert_int_equal(kill(h, SIGKILL), 0);
        assert_int_equal(waitpid(h, &status, 0), h);
        assert_int_equal(libvmm_wait_exit(b, -1, &code), 0);
        assert_int_equal(code, 1);
        libvmm_destroy(b);
        assert_int_equal(guest_events(&r2, LIBVMM_EVENT_EXITED), 1);
        assert_int_equal(r2.exit_code, 1);
        unlink(st);
        unlink(mem);
        unlink(sock);
}

/* The metadata service's store: the API's semantics through the library. */
static void test_mmds(void **state)
{
        struct guest g;
        struct libvmm_options o = guest_options(&g, "mmds");
        struct libvmm *vm;
        char *json;

        (void)state;
        guest_init(&g);
        if (libvmm_create(probe_config("idle", false, NULL), &o, &vm))
                fail_msg("create: %s", libvmm_last_error());
        assert_int_equal(libvmm_mmds_get(vm, &json), 0);
        assert_string_equal(json, "{}");
        libvmm_free(json);
        assert_int_equal(libvmm_mmds_patch(vm, "{\"a\": 1}"), -ENODATA);
        assert_non_null(strstr(libvmm_last_error(), "not initialized"));
        assert_int_equal(libvmm_mmds_put(vm, "{\"b\": {\"c\": 1}, \"a\": 12345678901234567890}"),
                         0);
        assert_int_equal(libvmm_mmds_patch(vm, "{\"b\": {\"c\": null, \"d\": \"x\"}}"), 0);
        assert_int_equal(libvmm_mmds_put(vm, "{"), -EINVAL);
        assert_int_equal(libvmm_start(vm), 0);
        guest_wait_for(&g, "probe: idle ready");
        assert_int_equal(libvmm_mmds_get(vm, &json), 0);
        assert_string_equal(json, "{\"a\":12345678901234567890,\"b\":{\"d\":\"x\"}}");
        libvmm_free(json);
        libvmm_destroy(vm);
}

/* Makes a persistent TAP, or deletes it (persist false). Left down: the guest's frames for
 * other addresses fail there with EIO, counted by the device, and nothing of the host's
 * reaches the guest. */
static void tap_persist(const char *name, bool persist)
{
        struct ifreq ifr = {0};
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

        if (fd < 0)
                fail_msg("/dev/net/tun: %s (the test needs root)", strerror(errno));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &ifr) || ioctl(fd, TUNSETPERSIST, persist ? 1 : 0))
                fail_msg("TAP %s: %s", name, strerror(errno));
        close(fd);
}

/* The service configured by the library's JSON ("network-interfaces", "mmds-config": V2 at
 * another address) and its store by libvmm_mmds_put: the probe's mmds scenario reaches it,
 * is refused without a token and answered with one; the refusals of a bad mmds-config are
 * Firecracker's, as -EINVAL. */
static void test_mmds_config(void **state)
{
        struct guest g;
        struct libvmm_options o = guest_options(&g, "mmds-config");
        struct libvmm *vm;
        char tap[IFNAMSIZ], extra[512], *json = NULL;
        int code = -1;

        (void)state;
        assert_int_equal(libvmm_create(probe_config("mmds", false,
                                                    "\"mmds-config\": {\"network_interfaces\": "
                                                    "[\"eth0\"]}"),
                                       NULL, &vm),
                         -EINVAL);
        assert_string_equal(libvmm_last_error(),
                            "mmds-config: MMMDS config error: The list of network interface "
                            "IDs provided "
                            "contains at least one ID that does not correspond to any existing "
                            "network interface.");
        snprintf(tap, sizeof(tap), "lvmm%d", (int)getpid() % 100000);
        snprintf(extra, sizeof(extra),
                 "\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"%s\"}], "
                 "\"mmds-config\": {\"network_interfaces\": [\"eth0\"], \"version\": \"V2\", "
                 "\"ipv4_address\": \"%s\"}",
                 tap, "10.0.0.1");
        assert_int_equal(libvmm_create(probe_config("mmds", false, extra), NULL, &vm), -EINVAL);
        assert_string_equal(libvmm_last_error(),
                            "mmds-config: MMMDS config error: The MMDS IPv4 address is not "
                            "link local.");

        tap_persist(tap, true);
        snprintf(extra, sizeof(extra),
                 "\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"%s\"}], "
                 "\"mmds-config\": {\"network_interfaces\": [\"eth0\"], \"version\": \"V2\", "
                 "\"ipv4_address\": \"%s\"}",
                 tap, "169.254.170.2");
        guest_init(&g);
        if (libvmm_create(probe_config("mmds probe.mmds_ip=169.254.170.2", false, extra), &o, &vm))
                fail_msg("create: %s", libvmm_last_error());
        assert_int_equal(
            libvmm_mmds_put(vm, "{\"latest\": {\"meta-data\": {\"ami-id\": \"ami-probe\"}}}"), 0);
        assert_int_equal(libvmm_start(vm), 0);
        assert_int_equal(libvmm_wait_exit(vm, -1, &code), 0);
        guest_wait_for(&g, "probe: ok mmds");
        assert_int_equal(code, 0);
        assert_int_equal(libvmm_metrics(vm, &json), 0);
        if (!strstr(json, "\"rx_no_token\":1,") || !strstr(json, "\"connections_created\":1,"))
                fail_msg("metrics: %s", json);
        libvmm_free(json);
        libvmm_destroy(vm); /* the console callbacks are over: g.out is complete */
        tap_persist(tap, false);
        assert_non_null(strstr(g.out, "probe: mmds service 169.254.170.2\n"));
        assert_non_null(strstr(g.out, "probe: mmds GET ami-id without a token: 401 No MMDS "
                                      "token provided."));
        assert_non_null(
            strstr(g.out, "probe: mmds GET ami-id with the token as JSON: 200 \"ami-probe\"\n"));
        assert_non_null(strstr(g.out, "probe: mmds GET ami-id with a bad token: 401 MMDS token "
                                      "not valid.\n"));
}

/* The balloon's free page reporting from the library's JSON: the probe reports the 8 MiB it
 * wrote, and the balloon metrics count them. */
static void test_balloon_free_page_reporting(void **state)
{
        struct guest g;
        struct libvmm_options o = guest_options(&g, "freepage");
        struct libvmm *vm;
        char *json = NULL;

        (void)state;
        guest_init(&g);
        if (libvmm_create(probe_config("freepage-idle probe.fp_mib=8", false,
                                       "\"balloon\": {\"amount_mib\": 0, \"deflate_on_oom\": "
                                       "false, \"free_page_reporting\": true}"),
                          &o, &vm))
                fail_msg("create: %s", libvmm_last_error());
        assert_int_equal(libvmm_start(vm), 0);
        guest_wait_for(&g, "probe: freepage-idle ready");
        assert_int_equal(libvmm_metrics(vm, &json), 0);
        if (!strstr(json, "\"free_page_report_freed\":8388608"))
                fail_msg("metrics: %s", json);
        libvmm_free(json);
        libvmm_destroy(vm);
}

/* A guest that ends its own VM while it has two vCPUs: the vCPU that ends it stops the
 * other, whose thread libvmm started while the first already ran the guest (no confinement
 * holds them). Under ThreadSanitizer this was a data race on the second vCPU's `started`
 * (issue 20 item 6), reported in every run of these rounds before the fix. */
static void test_guest_ends_two_vcpu_vm(void **state)
{
        char config[1024];

        (void)state;
        snprintf(config, sizeof(config),
                 "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": "
                 "\"console=ttyS0 probe=hello\"}, \"machine-config\": {\"vcpu_count\": 2, "
                 "\"mem_size_mib\": 64}}",
                 probe_kernel);
        probe_vm_watchdog("test_guest_ends_two_vcpu_vm", 120);
        for (int i = 0; i < 10; i++) {
                struct guest g;
                struct libvmm_options o = guest_options(&g, "smp-end");
                struct libvmm *vm;
                int code = -1;

                guest_init(&g);
                if (libvmm_create(config, &o, &vm))
                        fail_msg("create: %s", libvmm_last_error());
                assert_int_equal(libvmm_start(vm), 0);
                assert_int_equal(libvmm_wait_exit(vm, -1, &code), 0);
                assert_int_equal(code, 0);
                guest_wait_for(&g, "probe: ok hello");
                libvmm_destroy(vm);
        }
        probe_vm_watchdog("", 0);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_several_vms_and_threads),
            cmocka_unit_test(test_snapshots),
            cmocka_unit_test(test_uffd_restore),
            cmocka_unit_test(test_mmds),
            cmocka_unit_test(test_mmds_config),
            cmocka_unit_test(test_balloon_free_page_reporting),
            cmocka_unit_test(test_guest_ends_two_vcpu_vm),
        };

        if (probe_vm_args(argc, argv, &dir))
                return 2;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
