/*
 * The VM's virtio devices: one table built from the configuration, in one order, written
 * once (configured() in vm_devices.c): the drives (the root drive first:
 * vmm_config_put_drive keeps it there, so it is /dev/vda), the network interfaces, vsock,
 * balloon, entropy, then the pmem devices and virtio-mem (last: older snapshots keep their
 * slots). Firecracker
 * attaches its balloon before the drives; this order is older than snapshots, which record it (one
 * VDEV section per device, in order), so it stays. Device n is the board's virtio-mmio slot n
 * (VM_BOARD_VIRTIO, vm_board.h): its window and GSI are allocated there, in this order, and the
 * ACPI DSDT, the MPTable and the kernel command line describe them from there.
 *
 * Models are created first (they need no KVM: a bad drive path or TAP name is reported like
 * any other configuration error), then attached where the board placed them: MMIO window,
 * irqfd, one ioeventfd per queue.
 */
#ifndef VMM_VM_DEVICES_H
#define VMM_VM_DEVICES_H

#include "arch/x86/platform.h"
#include "common/error.h"
#include "common/event_loop.h"
#include "config.h"
#include "devices/bus.h"
#include "devices/virtio/balloon.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/mem.h"
#include "devices/virtio/net.h"
#include "devices/virtio/pmem.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "kvm/kvm.h"
#include "memory/guest_mem.h"
#include "memory/hostmem.h"
#include "memory/ownership.h"
#include "vm_board.h"

struct vm_devices;

/* Adds one virtio-mmio slot per configured device to the board (allocated, in order). */
int vm_devices_describe(const struct vmm_config *cfg, struct vm_board *b,
                        struct error *err) MUST_CHECK;

/* Appends what the devices need on the kernel command line: root=/dev/vda (or
 * root=PARTUUID=...) for a root drive, root=/dev/pmemN for a root pmem device (N: its place
 * among the pmem devices, which the guest numbers in slot order), with ro or rw. */
int vm_devices_cmdline(const struct vmm_config *cfg, char *cmdline, size_t cap,
                       struct error *err) MUST_CHECK;

/* own: the protected VM's ownership map (NULL for an ordinary VM): every device accessor
 * checks it at each access. mmds: the metadata service the interfaces flagged for it answer
 * for (NULL: none). */
int vm_devices_create(const struct vmm_config *cfg, struct guest_mem *mem, struct ownership *own,
                      struct event_loop *loop, struct mmds *mmds, struct error *err,
                      struct vm_devices **out) MUST_CHECK;
/* Attaches device `index` at its board entry dev (window and GSI). */
int vm_devices_attach(struct vm_devices *d, unsigned index, const struct platform_dev *dev,
                      struct kvm *kvm, struct bus *mmio, struct error *err) MUST_CHECK;
/* Maps every virtio-pmem window into the guest where the board placed it (VM_BOARD_PMEM): a
 * KVM memory slot over the device's host mapping, read-only (KVM_MEM_READONLY) for a
 * read-only device, and tells the device its start; and the virtio-mem region
 * (VM_BOARD_HOTPLUG), one slot over the device's memory. */
int vm_devices_map_windows(struct vm_devices *d, const struct vm_board *b, struct kvm *kvm,
                           struct error *err) MUST_CHECK;
/* Resets every device (stopping backends) and frees everything. */
void vm_devices_destroy(struct vm_devices *d);

/* Snapshots (the VMM thread, vCPUs paused): one SNAPSHOT_TAG_VDEV section per device in
 * slot order (kind, id, the transport's record). restore checks that each section is the
 * device in that slot (kind and id) and restores it; errors are ERROR_CONFIG with the
 * reader's message ("a snapshot of a different machine"). */
void vm_devices_save(struct vm_devices *d, struct snapbuf_writer *w);
int vm_devices_restore(struct vm_devices *d, struct snapbuf_reader *r,
                       struct error *err) MUST_CHECK;

/* ---- metrics and runtime updates (the VMM thread) ---- */

enum vm_device_kind {
        VM_DEVICE_BLOCK,
        VM_DEVICE_NET,
        VM_DEVICE_VSOCK,
        VM_DEVICE_BALLOON,
        VM_DEVICE_ENTROPY,
        VM_DEVICE_PMEM,
        VM_DEVICE_MEM,
};

/* One device's counters: the model's and its transport's. */
struct vm_device_stats {
        enum vm_device_kind kind;
        char id[65]; /* drive_id or iface_id; "" for the single vsock/balloon/entropy */
        struct virtio_mmio_stats transport;
        struct hostmem_stats mem; /* refused guest-memory accesses (CC-7 violations) */
        union {
                struct virtio_blk_stats blk;
                struct virtio_net_stats net;
                struct virtio_vsock_stats vsock;
                struct virtio_balloon_stats balloon;
                struct virtio_rng_stats rng;
                struct virtio_pmem_stats pmem;
                struct virtio_mem_stats mem;
        } u;
};

unsigned vm_devices_count(const struct vm_devices *d);
void vm_devices_get_stats(struct vm_devices *d, unsigned i, struct vm_device_stats *out);

/* PATCH /drives/{id}: a new backing file (path may be NULL) and/or rate limiter (NULL: keep;
 * a limiter that is not present: unlimited). -ENOENT when no such drive is attached. */
int vm_devices_update_drive(struct vm_devices *d, const char *drive_id, const char *path,
                            const struct vmm_rate_limiter *limit, struct error *err) MUST_CHECK;
/* PATCH /network-interfaces/{id}: both limiters as they must now be (the caller merges the
 * update into the configuration first; a limiter that is not present: unlimited). */
int vm_devices_update_net(struct vm_devices *d, const char *iface_id,
                          const struct vmm_rate_limiter *rx, const struct vmm_rate_limiter *tx,
                          struct error *err) MUST_CHECK;
/* PATCH /pmem/{id}: the limiter as it must now be. -ENOENT when no such pmem is attached. */
int vm_devices_update_pmem(struct vm_devices *d, const char *id,
                           const struct vmm_rate_limiter *limit) MUST_CHECK;
/* The virtio-mem model, or NULL when the VM has none. */
struct virtio_mem *vm_devices_mem(struct vm_devices *d);
/* The balloon model, or NULL when the VM has none. */
struct virtio_balloon *vm_devices_balloon(struct vm_devices *d);

#endif
