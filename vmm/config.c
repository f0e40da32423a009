#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/platform.h"

/* Guest RAM must cover the boot structures below 1 MiB and leave room for a kernel. */
#define MIN_MEM_MIB 2

void vmm_config_init(struct vmm_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->machine.vcpu_count = VMM_DEFAULT_VCPUS;
        cfg->machine.mem_size_mib = VMM_DEFAULT_MEM_MIB;
        cfg->serial_in = true;
}

void vmm_config_free(struct vmm_config *cfg)
{
        free(cfg->boot.kernel_image_path);
        free(cfg->boot.initrd_path);
        free(cfg->boot.boot_args);
        free(cfg->machine.cpu_hide);
        free(cfg->serial_out_path);
        memset(cfg, 0, sizeof(*cfg));
}

int vmm_config_set_str(char **field, const char *value)
{
        char *copy = NULL;

        if (value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*field);
        *field = copy;
        return 0;
}

int vmm_config_validate(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                        struct error *err)
{
        const struct vmm_machine_config *m = &cfg->machine;
        unsigned max_vcpus = PLATFORM_MAX_VCPUS;
        struct x86_cpuid_mask mask;
        uint64_t max_mib;
        int r;

        if (limits && limits->max_vcpus && limits->max_vcpus < max_vcpus)
                max_vcpus = limits->max_vcpus;
        if (m->vcpu_count == 0 || m->vcpu_count > max_vcpus)
                return error_config(err, "vcpu count %u is out of range (1..%u)", m->vcpu_count,
                                    max_vcpus);
        if (m->mem_size_mib < MIN_MEM_MIB)
                return error_config(err, "memory size %llu MiB is too small (minimum %d MiB)",
                                    (unsigned long long)m->mem_size_mib, MIN_MEM_MIB);
        /* Guest RAM above 4 GiB plus the hole must stay within 46-bit guest physical space. */
        max_mib = (1ull << 46) >> 20;
        if (limits && limits->max_mem_mib && limits->max_mem_mib < max_mib)
                max_mib = limits->max_mem_mib;
        if (m->mem_size_mib > max_mib)
                return error_config(
                    err, "memory size %llu MiB exceeds what this host allows (%llu MiB)",
                    (unsigned long long)m->mem_size_mib, (unsigned long long)max_mib);
        if (m->huge_pages && (m->mem_size_mib % 2))
                return error_config(err,
                                    "memory size %llu MiB is not a multiple of the 2 MiB huge "
                                    "page size",
                                    (unsigned long long)m->mem_size_mib);
        r = x86_cpuid_parse_hide(m->cpu_hide, &mask, err);
        if (r) {
                if (err)
                        err->kind = ERROR_CONFIG;
                return r;
        }
        if (cfg->boot.boot_args && strlen(cfg->boot.boot_args) + 1 > X86_CMDLINE_MAX)
                return error_config(err,
                                    "kernel command line is %zu bytes; the limit is %llu bytes",
                                    strlen(cfg->boot.boot_args), X86_CMDLINE_MAX - 1);
        return 0;
}

void vmm_host_limits_get(struct vmm_host_limits *out, unsigned kvm_max_vcpus)
{
        struct sysinfo si;

        out->max_vcpus = kvm_max_vcpus;
        out->max_mem_mib = 0;
        if (sysinfo(&si) == 0)
                out->max_mem_mib = ((uint64_t)si.totalram * si.mem_unit) >> 20;
}
