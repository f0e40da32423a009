/*
 * The machine configuration: one object filled by the CLI, the config file and the API,
 * and one validation path for all three.
 */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

#define VMM_DEFAULT_VCPUS   1
#define VMM_DEFAULT_MEM_MIB 128
/* Firecracker's default, plus the serial console: both Linux and the probe guest use it. */
#define VMM_DEFAULT_CMDLINE                                                                        \
        "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd"

struct vmm_boot_source {
        char *kernel_image_path;
        char *initrd_path; /* NULL: none */
        char *boot_args;   /* NULL: VMM_DEFAULT_CMDLINE */
};

struct vmm_machine_config {
        unsigned vcpu_count;
        uint64_t mem_size_mib;
        bool huge_pages; /* back guest RAM with 2 MiB hugetlbfs pages */
        char *cpu_hide;  /* comma-separated CPUID feature names; NULL: none */
};

struct vmm_config {
        struct vmm_boot_source boot;
        struct vmm_machine_config machine;
        char *serial_out_path; /* NULL: the VMM's stdout */
        bool serial_in;        /* feed the VMM's stdin to the guest's COM1 */
        bool boot_timer;       /* map the boot-timer device at 0xc0000000 */
};

/* Limits of the host the configuration is checked against. */
struct vmm_host_limits {
        unsigned max_vcpus;
        uint64_t max_mem_mib;
};

void vmm_config_init(struct vmm_config *cfg);
void vmm_config_free(struct vmm_config *cfg);

/* Replaces a string field with a copy of value (NULL clears it). */
int vmm_config_set_str(char **field, const char *value) MUST_CHECK;

/* Checks everything that can be checked without building the VM (sizes, counts, the CPU
 * feature list). Errors are ERROR_CONFIG with one precise message. limits may be NULL. */
int vmm_config_validate(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                        struct error *err) MUST_CHECK;

/* Limits of this host: total RAM, and the vCPU limit of the KVM at kvm_path (the platform
 * limit alone when KVM cannot be opened). */
void vmm_host_limits_get(struct vmm_host_limits *out, unsigned kvm_max_vcpus);

#endif
