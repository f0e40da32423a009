/*
 * The VM generation ID (Microsoft's "Virtual Machine Generation ID", as QEMU and Firecracker
 * 1.8+ provide it): 16 random bytes the guest reads at the address the DSDT's ADDR gives, a
 * new value on every snapshot restore, and an interrupt (the Generic Event Device's, whose
 * _EVT notifies the id's ACPI device) telling the guest to read it again. Linux's vmgenid
 * driver then mixes the new id into its RNG (add_vmfork_randomness), so clones of one
 * snapshot stop sharing their random streams.
 *
 * The id is served from an MMIO window (read-only; writes are ignored) rather than written
 * into guest RAM: a restore then never writes the memory file's pages, which clones share
 * and a Uffd handler serves, and the id is never part of a snapshot (each restore draws a
 * new one anyway). Reads come from vCPU threads; a new generation is drawn while the vCPUs
 * do not run (at creation and at restore, before they start).
 */
#ifndef DEVICES_VMGENID_H
#define DEVICES_VMGENID_H

#include <stdint.h>

#include "bus.h"
#include "common/error.h"
#include "irq.h"

#define VMGENID_LEN 16

struct vmgenid;

/* Draws the first generation (getrandom); irq is the Generic Event Device's line. */
int vmgenid_create(struct irq_line irq, struct error *err, struct vmgenid **out) MUST_CHECK;
void vmgenid_destroy(struct vmgenid *v);
const struct bus_ops *vmgenid_bus_ops(void);
/* A restore: draws a new id and raises the interrupt (an edge) so the guest reads it. */
int vmgenid_new_generation(struct vmgenid *v, struct error *err) MUST_CHECK;
/* The current id (for the log and tests). */
void vmgenid_get(const struct vmgenid *v, uint8_t id[VMGENID_LEN]);

#endif
