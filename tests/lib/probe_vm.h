/*
 * The probe guest through libvmm's public header, for the library's test programs: what a
 * VM's callbacks saw (console output, events in order), options that record into it, the
 * probe's configuration, waits on its console.
 *
 * Every wait here is unbounded on purpose: a test that hangs is ended by the watchdog
 * (probe_vm_watchdog), so no assertion depends on how fast the machine is.
 */
#ifndef TESTS_LIB_PROBE_VM_H
#define TESTS_LIB_PROBE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "libvmm.h"

#define PROBE_VM_MAX_EVENTS 32

struct guest {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char out[16384]; /* the console output so far */
        size_t len;
        unsigned events[LIBVMM_EVENT_EXITED + 1];
        enum libvmm_event order[PROBE_VM_MAX_EVENTS]; /* every event, as delivered */
        unsigned nr_events;
        int exit_code;
        /* Called (with the guest unlocked) after an event was recorded; may be NULL. */
        void (*on_event)(struct guest *g, enum libvmm_event ev);
        void *user;
};

/* The probe's kernel (argv[1] of the test programs). */
extern const char *probe_kernel;

void guest_init(struct guest *g);
/* Options whose console and event callbacks record into g. */
struct libvmm_options guest_options(struct guest *g, const char *id);
/* Waits until the console output holds needle. */
void guest_wait_for(struct guest *g, const char *needle);
/* A copy of what g recorded, taken under its lock. */
unsigned guest_events(struct guest *g, enum libvmm_event ev);

/* The probe running scenario, one vCPU, 64 MiB, dirty pages tracked or not; extra (NULL:
 * none) is more members of the configuration ("\"logger\": {...}"). */
const char *probe_config(const char *scenario, bool track_dirty, const char *extra);
/* Initialises g, creates and starts the idle probe, waits until it is ready. */
struct libvmm *idle_vm(struct guest *g, const char *id, bool track_dirty, const char *extra);
/* Ctrl-Alt-Del, the exit (code 0) and the probe's goodbye, then destroy. */
void end_vm(struct libvmm *vm, struct guest *g);

/* The test programs' command line: PROBE_KERNEL DIR [TEST_PATTERN] (cmocka's filter). Sets
 * probe_kernel and *dir, the logger at Warning to stderr; 0, or 2 after a usage message. */
int probe_vm_args(int argc, char **argv, const char **dir);

/* Kills the process with a message after `seconds` unless called again (0: off): a hang
 * fails the test that hangs, named. */
void probe_vm_watchdog(const char *test, unsigned seconds);

#endif
