/*
 * The probe's run: entry from boot/entry.S, the result protocol and shutdown.
 *
 * Output protocol (README.md): `probe: start NAME via PATH` first, `probe: ok NAME` or
 * `probe: fail NAME REASON` last, then a reset.
 */
#ifndef PROBE_PROBE_H
#define PROBE_PROBE_H

#include <stdint.h>

#include "print.h"

/* Called once on the BSP by boot/entry.S in long mode on the probe's own stack and page
 * tables; path is BOOT_PATH_*, info the hvm_start_info or boot_params address. */
_Noreturn void probe_main(unsigned path, uint64_t info);

/* Called by boot/entry.S on each application processor; index counts APs from 0. */
_Noreturn void probe_ap_main(unsigned index);

/* Prints `probe: fail NAME REASON` (REASON formatted, newlines flattened) and resets. */
_Noreturn void probe_fail(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Same, without taking the console lock (exception handlers). */
_Noreturn void probe_fail_unlocked(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Resets the machine: i8042 reset, then the ACPI FADT reset register, then a triple fault. */
_Noreturn void probe_shutdown(void);

/* Set by an SMP-capable scenario: the function each AP runs after it reached long mode. */
typedef void (*probe_ap_fn)(unsigned index);
void probe_set_ap_fn(probe_ap_fn fn);

#endif
