/*
 * An embedder of libvmm: starts N probe VMs concurrently (one thread each), snapshots the
 * first one, restores that snapshot twice into two new VMs, then ends every VM with
 * Ctrl-Alt-Del and prints what each took.
 *
 *     embed KERNEL [N] [DIR]
 *
 * KERNEL is the probe guest (build/tests/guest/probe.elf); it runs its `idle` scenario,
 * which prints "probe: idle ready" and waits for Ctrl-Alt-Del. DIR (default /tmp) receives
 * the snapshot files. Only libvmm.h is used.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libvmm.h"

#define MAX_VMS 32

struct guest {
        char name[32];
        struct libvmm *vm;
        /* Console: lines are matched as they arrive (on the VM's callback thread), timings
         * taken there. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char line[256];
        size_t len;
        bool ready, said_goodbye;
        double t0, created, first_output, ready_at, restored;
        int exit_code;
        const char *kernel;
        int err;
};

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_console(void *opaque, const char *data, size_t len)
{
        struct guest *g = opaque;

        pthread_mutex_lock(&g->lock);
        if (!g->first_output)
                g->first_output = now_ms();
        for (size_t i = 0; i < len; i++) {
                if (data[i] != '\n') {
                        if (g->len + 1 < sizeof(g->line))
                                g->line[g->len++] = data[i];
                        continue;
                }
                g->line[g->len] = '\0';
                g->len = 0;
                if (strcmp(g->line, "probe: idle ready") == 0) {
                        g->ready = true;
                        g->ready_at = now_ms();
                }
                if (strcmp(g->line, "probe: ok idle") == 0)
                        g->said_goodbye = true;
                pthread_cond_broadcast(&g->cond);
        }
        pthread_mutex_unlock(&g->lock);
}

static struct libvmm_options options_for(struct guest *g)
{
        struct libvmm_options o = LIBVMM_OPTIONS_INIT;

        o.id = g->name;
        o.console = on_console;
        o.opaque = g;
        return o;
}

static int wait_ready(struct guest *g)
{
        struct timespec deadline;
        int r = 0;

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 30;
        pthread_mutex_lock(&g->lock);
        while (!g->ready && r == 0)
                r = pthread_cond_timedwait(&g->cond, &g->lock, &deadline);
        pthread_mutex_unlock(&g->lock);
        return g->ready ? 0 : -ETIMEDOUT;
}

/* One thread per VM: create, start, wait for the probe to be ready. */
static void *boot(void *arg)
{
        struct guest *g = arg;
        struct libvmm_options o = options_for(g);
        char config[1024];

        snprintf(config, sizeof(config),
                 "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": "
                 "\"console=ttyS0 probe=idle\"}, \"machine-config\": {\"vcpu_count\": 1, "
                 "\"mem_size_mib\": 64}}",
                 g->kernel);
        g->t0 = now_ms();
        g->err = libvmm_create(config, &o, &g->vm);
        if (g->err) {
                fprintf(stderr, "%s: create: %s\n", g->name, libvmm_last_error());
                return NULL;
        }
        g->created = now_ms();
        g->err = libvmm_start(g->vm);
        if (g->err) {
                fprintf(stderr, "%s: start: %s\n", g->name, libvmm_last_error());
                return NULL;
        }
        g->err = wait_ready(g);
        if (g->err)
                fprintf(stderr, "%s: the probe never got ready\n", g->name);
        return NULL;
}

static void guest_init(struct guest *g, const char *name, const char *kernel)
{
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", name);
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        g->kernel = kernel;
        g->exit_code = -1;
}

int main(int argc, char **argv)
{
        struct guest guests[MAX_VMS + 2];
        pthread_t threads[MAX_VMS];
        const char *dir = argc > 3 ? argv[3] : "/tmp";
        int n = argc > 2 ? atoi(argv[2]) : 4, failures = 0;
        char state[512], mem[512], params[1200];
        double t, snap_ms;

        if (argc < 2 || n < 1 || n > MAX_VMS) {
                fprintf(stderr, "usage: %s KERNEL [N (1..%d)] [DIR]\n", argv[0], MAX_VMS);
                return 2;
        }
        libvmm_set_log("Warning", NULL, NULL);

        /* N VMs booting concurrently, one thread each. */
        for (int i = 0; i < n; i++) {
                char name[32];

                snprintf(name, sizeof(name), "vm%d", i);
                guest_init(&guests[i], name, argv[1]);
                pthread_create(&threads[i], NULL, boot, &guests[i]);
        }
        for (int i = 0; i < n; i++) {
                pthread_join(threads[i], NULL);
                if (guests[i].err)
                        return 1;
        }

        /* Snapshot the first one (paused), then restore it twice. */
        snprintf(state, sizeof(state), "%s/embed-%d.state", dir, (int)getpid());
        snprintf(mem, sizeof(mem), "%s/embed-%d.mem", dir, (int)getpid());
        t = now_ms();
        if (libvmm_pause(guests[0].vm) || libvmm_snapshot(guests[0].vm, state, mem, false) ||
            libvmm_resume(guests[0].vm)) {
                fprintf(stderr, "snapshot: %s\n", libvmm_last_error());
                return 1;
        }
        snap_ms = now_ms() - t;
        snprintf(params, sizeof(params),
                 "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\", \"resume_vm\": true}",
                 state, mem);
        for (int i = 0; i < 2; i++) {
                struct guest *g = &guests[n + i];
                char name[32];
                struct libvmm_options o;

                snprintf(name, sizeof(name), "restored%d", i);
                guest_init(g, name, argv[1]);
                g->ready = true; /* it was ready when the snapshot was taken */
                o = options_for(g);
                g->t0 = now_ms();
                if (libvmm_restore(params, NULL, &o, &g->vm)) {
                        fprintf(stderr, "%s: restore: %s\n", name, libvmm_last_error());
                        return 1;
                }
                g->restored = now_ms();
        }

        /* Ctrl-Alt-Del to everyone; the probe answers and resets its machine. */
        for (int i = 0; i < n + 2; i++) {
                if (libvmm_send_ctrl_alt_del(guests[i].vm)) {
                        fprintf(stderr, "%s: %s\n", guests[i].name, libvmm_last_error());
                        failures++;
                }
        }
        for (int i = 0; i < n + 2; i++) {
                struct guest *g = &guests[i];

                if (libvmm_wait_exit(g->vm, 30000, &g->exit_code) || g->exit_code != 0 ||
                    !g->said_goodbye) {
                        fprintf(stderr, "%s: did not end cleanly (exit %d): %s\n", g->name,
                                g->exit_code, libvmm_last_error());
                        failures++;
                }
        }

        printf("%-10s %-8s %12s %14s %12s %6s\n", "vm", "how", "create ms", "1st output ms",
               "ready ms", "exit");
        for (int i = 0; i < n + 2; i++) {
                struct guest *g = &guests[i];

                if (i < n)
                        printf("%-10s %-8s %12.2f %14.2f %12.2f %6d\n", g->name, "boot",
                               g->created - g->t0, g->first_output - g->t0, g->ready_at - g->t0,
                               g->exit_code);
                else
                        printf("%-10s %-8s %12.2f %14s %12s %6d\n", g->name, "restore",
                               g->restored - g->t0, "-", "-", g->exit_code);
        }
        printf("snapshot of vm0 (pause + Full snapshot + resume): %.2f ms\n", snap_ms);
        for (int i = 0; i < n + 2; i++)
                libvmm_destroy(guests[i].vm);
        remove(state);
        remove(mem);
        printf("%s\n", failures ? "FAILED" : "ok");
        return failures ? 1 : 0;
}
