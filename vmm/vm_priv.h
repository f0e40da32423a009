/*
 * The VM's insides, shared by vm.c (composition, life cycle) and vm_snapshot.c (saving and
 * restoring). Nothing outside vmm/vm*.c includes this.
 */
#ifndef VMM_VM_PRIV_H
#define VMM_VM_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>

#include "arch/x86/cpu_template.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/loader.h"
#include "devices/boot_timer.h"
#include "devices/vmgenid.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "memory/hostmem.h"
#include "vm_board.h"
#include "vm_devices.h"
#include "kvm/kvm.h"
#include "vcpu.h"
#include "vm.h"
#include "uffd_peer.h"

/* A device's interrupt line into the in-kernel irqchip. */
struct gsi_line {
        struct kvm *kvm;
        uint32_t gsi;
};

struct vm {
        struct vm_params params;
        struct kvm *kvm;
        struct guest_mem *mem;
        struct bus *pio, *mmio;
        struct serial *serial;
        struct i8042 *i8042;
        struct acpi_sleep *acpi_sleep;
        struct boot_timer *boot_timer;
        struct vmgenid *vmgenid; /* NULL when the board has none */
        struct vm_devices *devices;
        struct cc *cc;          /* the confidential platform; NULL for an ordinary VM */
        struct vm_board *board; /* where every device is (vm_board.h) */
        struct gsi_line com1_line, kbd_line, vmgenid_line;
        struct x86_cpuid_mask cpuid_hide;
        /* The CPU configuration (template, and at a snapshot the resulting CPUID and MSRs):
         * the configuration's at a boot, the snapshot's after a restore. */
        struct x86_cpu_record *cpu;
        struct kvm_cpuid2 *cpuid; /* KVM's table with the template applied (a boot) */
        struct x86_kernel kernel;
        unsigned nr_vcpus;
        struct vcpu **vcpus;

        int console_out_fd;
        bool own_console_out;
        int console_in_fd;
        bool console_in_polling;
        int rx_space_fd;         /* eventfd: the serial FIFO has room again */
        int stop_fd;             /* eventfd: a vCPU ended the VM */
        _Atomic int stop_reason; /* -1 while running */
        bool started;
        bool restored; /* built from a snapshot: the vCPUs start parked */
        /* The memory id the dirty log counts from (a Diff's parent): the last snapshot's,
         * or the memory file's the VM was restored from; 0: the boot. */
        uint64_t mem_base;
        char *mem_file;              /* the memory file the RAM is mapped from (NULL: anonymous) */
        struct uffd_peer *uffd_peer; /* the page-fault handler serving the RAM (Uffd) */
        atomic_bool mem_lost;        /* that handler is gone */
        atomic_bool stoppable;       /* every vCPU thread started: request_stop may run */
};

/* vm.c: whether the memory file the RAM is mapped from was truncated under the mapping (the
 * pages past its end are gone: touching them faults); says so in err (naming the file) when
 * it was. */
bool vm_mem_file_truncated(struct vm *vm, struct error *err);

/* vm_snapshot.c: the restore half of vm_create, once the board exists and the vCPUs are
 * created: the irqchip and PIT, every vCPU, the clock, the legacy devices, then the virtio
 * devices (which may run again at once). */
int vm_restore_state(struct vm *vm, const struct vm_restore *rs, struct error *err) MUST_CHECK;
/* vm_snapshot.c: checks the memory file against the snapshot and maps it; with the Uffd
 * backend, maps anonymous memory registered with a new userfaultfd (*uffd, else -1). */
int vm_restore_memory(const struct vm_restore *rs, const struct guest_mem_spec *spec,
                      struct error *err, struct guest_mem **out, int *uffd) MUST_CHECK;

#endif
