/*
 * The VM's virtio devices: one table built from the configuration, in Firecracker's attach
 * order (drives with the root drive first, network interfaces, vsock, balloon, entropy).
 * Device n sits in virtio-mmio slot n (0xc0001000 + n * 0x1000) on GSI 5 + n; the same order
 * feeds the ACPI DSDT, the MPTable and the kernel command line.
 *
 * Models are created first (they need no KVM: a bad drive path or TAP name is reported like
 * any other configuration error), then attached: MMIO window, irqfd, one ioeventfd per queue.
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include "arch/x86/platform.h"
#include "common/error.h"
#include "common/event_loop.h"
#include "config.h"
#include "devices/bus.h"
#include "kvm.h"
#include "memory/guest_mem.h"

struct vm_devices;

/* Adds one virtio-mmio slot per configured device to the platform description. */
int vm_devices_describe(const struct vmm_config *cfg, struct platform_desc *desc,
                        struct error *err) MUST_CHECK;

/* Appends what the devices need on the kernel command line (root=...). */
int vm_devices_cmdline(const struct vmm_config *cfg, char *cmdline, size_t cap,
                       struct error *err) MUST_CHECK;

int vm_devices_create(const struct vmm_config *cfg, struct guest_mem *mem, struct event_loop *loop,
                      struct error *err, struct vm_devices **out) MUST_CHECK;
int vm_devices_attach(struct vm_devices *d, struct kvm *kvm, struct bus *mmio,
                      struct error *err) MUST_CHECK;
/* Resets every device (stopping backends) and frees everything. */
void vm_devices_destroy(struct vm_devices *d);

#endif
