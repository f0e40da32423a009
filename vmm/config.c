#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/layout.h"
#include "arch/x86/platform.h"
#include "devices/virtio/pmem.h"

/* Guest RAM must cover the boot structures below 1 MiB and leave room for a kernel. */
#define MIN_MEM_MIB 2

void vmm_config_init(struct vmm_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->machine.vcpu_count = VMM_DEFAULT_VCPUS;
        cfg->machine.mem_size_mib = VMM_DEFAULT_MEM_MIB;
        cfg->serial_in = true;
        cfg->mmds.ipv4 = MMDS_DEFAULT_IPV4;
}

bool vmm_config_mmds_active(const struct vmm_config *cfg)
{
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                if (cfg->nets[i].mmds)
                        return true;
        return false;
}

bool vmm_mmds_ipv4_valid(uint32_t ipv4)
{
        uint8_t third = (uint8_t)(ipv4 >> 8);

        return (ipv4 >> 16) == 0xa9fe && third != 0 && third != 255;
}

void vmm_drive_free(struct vmm_drive *d)
{
        free(d->drive_id);
        free(d->path_on_host);
        free(d->partuuid);
        memset(d, 0, sizeof(*d));
}

void vmm_net_free(struct vmm_net *n)
{
        free(n->iface_id);
        free(n->host_dev_name);
        memset(n, 0, sizeof(*n));
}

void vmm_pmem_free(struct vmm_pmem *p)
{
        free(p->id);
        free(p->path_on_host);
        memset(p, 0, sizeof(*p));
}

void vmm_config_free(struct vmm_config *cfg)
{
        for (unsigned i = 0; i < cfg->nr_pmems; i++)
                vmm_pmem_free(&cfg->pmems[i]);
        for (unsigned i = 0; i < cfg->nr_drives; i++)
                vmm_drive_free(&cfg->drives[i]);
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                vmm_net_free(&cfg->nets[i]);
        free(cfg->vsock.uds_path);
        free(cfg->vsock.vsock_id);
        free(cfg->boot.kernel_image_path);
        free(cfg->boot.initrd_path);
        free(cfg->boot.boot_args);
        free(cfg->machine.cpu_hide);
        free(cfg->cpu.tmpl);
        free(cfg->serial_out_path);
        vmm_logger_config_free(&cfg->logger);
        vmm_metrics_config_free(&cfg->metrics);
        memset(cfg, 0, sizeof(*cfg));
}

void vmm_logger_config_free(struct vmm_logger_config *l)
{
        free(l->log_path);
        memset(l, 0, sizeof(*l));
}

void vmm_metrics_config_free(struct vmm_metrics_config *m)
{
        for (unsigned i = 0; i < m->nr_properties; i++) {
                free(m->properties[i].key);
                free(m->properties[i].value);
        }
        free(m->properties);
        free(m->metrics_path);
        memset(m, 0, sizeof(*m));
}

/* Replaces *s (a borrowed pointer copied by a struct assignment) with its own copy. */
static bool dup_in_place(char **s)
{
        if (!*s)
                return true;
        *s = strdup(*s);
        return *s != NULL;
}

static char *dup_or_null(const char *s, bool *ok)
{
        char *d = s ? strdup(s) : NULL;

        if (s && !d)
                *ok = false;
        return d;
}

int vmm_metrics_config_copy(struct vmm_metrics_config *dst, const struct vmm_metrics_config *src)
{
        bool ok = true;

        *dst = *src;
        dst->metrics_path = dup_or_null(src->metrics_path, &ok);
        dst->properties = NULL;
        dst->nr_properties = 0;
        if (src->nr_properties) {
                dst->properties = calloc(src->nr_properties, sizeof(*dst->properties));
                if (dst->properties)
                        dst->nr_properties = src->nr_properties;
                else
                        ok = false;
        }
        for (unsigned i = 0; i < dst->nr_properties; i++) {
                dst->properties[i].key = dup_or_null(src->properties[i].key, &ok);
                dst->properties[i].value = dup_or_null(src->properties[i].value, &ok);
        }
        if (!ok) {
                vmm_metrics_config_free(dst);
                return -ENOMEM;
        }
        return 0;
}

int vmm_config_copy(struct vmm_config *dst, const struct vmm_config *src)
{
        bool ok = true;

        /* Copy the scalars, then give every string pointer its own copy; a failed strdup
         * leaves NULL, so the copy can always be freed. */
        *dst = *src;
        ok &= dup_in_place(&dst->boot.kernel_image_path);
        ok &= dup_in_place(&dst->boot.initrd_path);
        ok &= dup_in_place(&dst->boot.boot_args);
        ok &= dup_in_place(&dst->machine.cpu_hide);
        if (src->cpu.tmpl) {
                dst->cpu.tmpl = malloc(sizeof(*dst->cpu.tmpl));
                if (dst->cpu.tmpl)
                        *dst->cpu.tmpl = *src->cpu.tmpl;
                else
                        ok = false;
        }
        for (unsigned i = 0; i < dst->nr_drives; i++) {
                ok &= dup_in_place(&dst->drives[i].drive_id);
                ok &= dup_in_place(&dst->drives[i].path_on_host);
                ok &= dup_in_place(&dst->drives[i].partuuid);
        }
        for (unsigned i = 0; i < dst->nr_nets; i++) {
                ok &= dup_in_place(&dst->nets[i].iface_id);
                ok &= dup_in_place(&dst->nets[i].host_dev_name);
        }
        for (unsigned i = 0; i < dst->nr_pmems; i++) {
                ok &= dup_in_place(&dst->pmems[i].id);
                ok &= dup_in_place(&dst->pmems[i].path_on_host);
        }
        ok &= dup_in_place(&dst->vsock.uds_path);
        ok &= dup_in_place(&dst->vsock.vsock_id);
        ok &= dup_in_place(&dst->serial_out_path);
        ok &= dup_in_place(&dst->logger.log_path);
        if (vmm_metrics_config_copy(&dst->metrics, &src->metrics))
                ok = false; /* dst->metrics is empty then */
        if (!ok) {
                vmm_config_free(dst);
                return -ENOMEM;
        }
        return 0;
}

int vmm_config_set_cpu_template(struct vmm_config *cfg, const char *static_template,
                                const struct x86_cpu_template *tmpl)
{
        struct x86_cpu_template *copy = NULL;

        if (tmpl) {
                copy = malloc(sizeof(*copy));
                if (!copy)
                        return -ENOMEM;
                *copy = *tmpl;
        }
        free(cfg->cpu.tmpl);
        cfg->cpu.tmpl = copy;
        snprintf(cfg->cpu.static_template, sizeof(cfg->cpu.static_template), "%s",
                 copy && static_template ? static_template : "");
        return 0;
}

int vmm_config_apply_machine(struct vmm_config *cfg, const struct vmm_machine_update *u,
                             const struct vmm_host_limits *limits, struct error *err)
{
        struct vmm_machine_config m = cfg->machine;
        struct vmm_machine_config old = cfg->machine;
        struct vmm_cpu_config old_cpu = cfg->cpu;
        char *hide = NULL;
        int r;

        if (u->has_vcpu_count)
                m.vcpu_count = u->vcpu_count;
        if (u->has_mem_size_mib)
                m.mem_size_mib = u->mem_size_mib;
        if (u->has_smt)
                m.smt = u->smt;
        if (u->has_track_dirty_pages)
                m.track_dirty_pages = u->track_dirty_pages;
        if (u->has_huge_pages)
                m.huge_pages = u->huge_pages;
        if (u->has_pit)
                m.pit = u->pit;
        if (u->has_cpu_hide) {
                if (u->cpu_hide && *u->cpu_hide) {
                        hide = strdup(u->cpu_hide);
                        if (!hide)
                                return error_set(err, -ENOMEM, "out of memory");
                }
                m.cpu_hide = hide;
        }
        if (u->has_cpu_template) {
                cfg->cpu.tmpl = NULL;
                if (vmm_config_set_cpu_template(cfg, u->cpu_template, u->cpu_template_data)) {
                        cfg->cpu = old_cpu;
                        free(hide);
                        return error_set(err, -ENOMEM, "out of memory");
                }
        }
        /* Validate the whole configuration with the new machine (a balloon must still fit,
         * for example), then keep it or put the old one back. */
        cfg->machine = m;
        r = vmm_config_validate(cfg, limits, err);
        if (r) {
                if (u->has_cpu_template)
                        free(cfg->cpu.tmpl);
                cfg->cpu = old_cpu;
                cfg->machine = old;
                free(hide);
                return r;
        }
        if (u->has_cpu_hide)
                free(old.cpu_hide);
        if (u->has_cpu_template)
                free(old_cpu.tmpl);
        return 0;
}

void vmm_rate_limiter_from_update(struct vmm_rate_limiter *dst,
                                  const struct vmm_rate_limiter_update *u)
{
        memset(dst, 0, sizeof(*dst));
        dst->present = true;
        if (u->has_bandwidth)
                dst->cfg.bandwidth = u->cfg.bandwidth;
        if (u->has_ops)
                dst->cfg.ops = u->cfg.ops;
}

void vmm_rate_limiter_merge(struct vmm_rate_limiter *dst, const struct vmm_rate_limiter_update *u)
{
        if (!dst->present)
                memset(&dst->cfg, 0, sizeof(dst->cfg));
        dst->present = true;
        if (u->has_bandwidth)
                dst->cfg.bandwidth = u->cfg.bandwidth;
        if (u->has_ops)
                dst->cfg.ops = u->cfg.ops;
}

int vmm_open_output(const char *what, const char *path, struct error *err)
{
        return file_open(what, path, O_WRONLY | O_APPEND | O_CREAT, 0644,
                         FILE_REGULAR | FILE_FIFO | FILE_CHAR, err);
}

int vmm_check_file(const char *what, const char *path, bool write, unsigned kinds, int *os_errno,
                   struct error *err)
{
        int fd = file_open_os(what, path, write ? O_RDWR : O_RDONLY, 0, kinds, os_errno, err);

        if (fd < 0)
                return fd;
        close(fd);
        return 0;
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

bool vmm_valid_id(const char *id)
{
        size_t n = id ? strlen(id) : 0;

        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)id[i]) && id[i] != '_')
                        return false;
        return true;
}

int vmm_parse_mac(const char *s, uint8_t mac[6])
{
        unsigned v[6];
        char tail;

        if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
                                      &v[4], &v[5], &tail) != 6)
                return -EINVAL;
        for (unsigned i = 0; i < 6; i++) {
                if (!isxdigit((unsigned char)s[i * 3]) || !isxdigit((unsigned char)s[i * 3 + 1]))
                        return -EINVAL;
                mac[i] = (uint8_t)v[i];
        }
        return 0;
}

unsigned vmm_config_virtio_count(const struct vmm_config *cfg)
{
        return cfg->nr_drives + cfg->nr_nets + cfg->vsock.present + cfg->balloon.present +
               cfg->entropy.present + cfg->nr_pmems + cfg->hotplug.present;
}

int vmm_config_put_drive(struct vmm_config *cfg, struct vmm_drive *d, struct error *err)
{
        unsigned i;

        if (!vmm_valid_id(d->drive_id))
                return error_config(err,
                                    "drive id '%s' is invalid: use 1 to 64 letters, digits "
                                    "or '_'",
                                    d->drive_id ? d->drive_id : "");
        for (i = 0; i < cfg->nr_drives; i++)
                if (strcmp(cfg->drives[i].drive_id, d->drive_id) == 0)
                        break;
        if (i == cfg->nr_drives && i == VMM_MAX_DRIVES)
                return error_config(err, "too many drives (at most %d)", VMM_MAX_DRIVES);
        /* Firecracker's check and words: another drive is the root one. */
        if (d->is_root_device)
                for (unsigned j = 0; j < cfg->nr_pmems; j++)
                        if (cfg->pmems[j].root_device)
                                return error_config(err,
                                                    "drive '%s' cannot be the root device: pmem "
                                                    "'%s' already is",
                                                    d->drive_id, cfg->pmems[j].id);
        if (d->is_root_device)
                for (unsigned j = 0; j < cfg->nr_drives; j++)
                        if (j != i && cfg->drives[j].is_root_device)
                                return error_config(err, "A root block device already exists!");
        if (i < cfg->nr_drives) {
                vmm_drive_free(&cfg->drives[i]);
                memmove(&cfg->drives[i], &cfg->drives[i + 1],
                        (cfg->nr_drives - i - 1) * sizeof(cfg->drives[0]));
                cfg->nr_drives--;
        }
        /* The root drive is attached first, so it becomes /dev/vda. */
        if (d->is_root_device) {
                memmove(&cfg->drives[1], &cfg->drives[0], cfg->nr_drives * sizeof(cfg->drives[0]));
                cfg->drives[0] = *d;
        } else {
                cfg->drives[cfg->nr_drives] = *d;
        }
        cfg->nr_drives++;
        memset(d, 0, sizeof(*d));
        return 0;
}

int vmm_config_put_pmem(struct vmm_config *cfg, struct vmm_pmem *p, struct error *err)
{
        unsigned i;

        if (!vmm_valid_id(p->id))
                return error_config(err,
                                    "pmem id '%s' is invalid: use 1 to 64 letters, digits or '_'",
                                    p->id ? p->id : "");
        for (i = 0; i < cfg->nr_pmems; i++)
                if (strcmp(cfg->pmems[i].id, p->id) == 0)
                        break;
        if (i == cfg->nr_pmems && i == VMM_MAX_PMEMS)
                return error_config(err, "too many pmem devices (at most %d)", VMM_MAX_PMEMS);
        if (p->root_device) {
                for (unsigned j = 0; j < cfg->nr_drives; j++)
                        if (cfg->drives[j].is_root_device)
                                return error_config(err, "Attempt to add pmem as a root device "
                                                         "while the root device defined as a "
                                                         "block device");
                for (unsigned j = 0; j < cfg->nr_pmems; j++)
                        if (j != i && cfg->pmems[j].root_device)
                                return error_config(err, "A root pmem device already exist");
        }
        if (i < cfg->nr_pmems)
                vmm_pmem_free(&cfg->pmems[i]);
        else
                cfg->nr_pmems++;
        cfg->pmems[i] = *p;
        memset(p, 0, sizeof(*p));
        return 0;
}

int vmm_pmem_measure(struct vmm_pmem *p, struct error *err)
{
        struct stat st;
        int os_errno;
        int r =
            vmm_check_file("pmem", p->path_on_host, !p->read_only, FILE_REGULAR, &os_errno, err);

        if (r) {
                error_prefix(err, "pmem '%s'", p->id ? p->id : "");
                return r;
        }
        if (stat(p->path_on_host, &st))
                return error_config(err, "pmem '%s': '%s': %s", p->id ? p->id : "", p->path_on_host,
                                    strerror(errno));
        /* Firecracker's words (its device refuses the file when it is created). */
        if (st.st_size == 0)
                return error_config(err, "Error backing file size is 0");
        if (!align_up_checked((uint64_t)st.st_size, VIRTIO_PMEM_ALIGN, &p->window_size))
                return error_config(err, "pmem '%s': '%s' is too large", p->id ? p->id : "",
                                    p->path_on_host);
        return 0;
}

int vmm_check_memory_hotplug(const struct vmm_memory_hotplug *h, struct error *err)
{
        uint64_t b = h->block_size_mib, s = h->slot_size_mib, t = h->total_size_mib;

        if (b < 2 || (b & (b - 1)))
                return error_config(err,
                                    "memory hotplug: block_size_mib %llu is not a power of "
                                    "two of at least 2",
                                    (unsigned long long)b);
        if (s < 128 || s % b)
                return error_config(err,
                                    "memory hotplug: slot_size_mib %llu is not a multiple of "
                                    "block_size_mib %llu of at least 128",
                                    (unsigned long long)s, (unsigned long long)b);
        if (t == 0 || t % s || t > VMM_HOTPLUG_MAX_MIB)
                return error_config(err,
                                    "memory hotplug: total_size_mib %llu is not a multiple "
                                    "of slot_size_mib %llu from %llu to %llu",
                                    (unsigned long long)t, (unsigned long long)s,
                                    (unsigned long long)s, VMM_HOTPLUG_MAX_MIB);
        return 0;
}

int vmm_config_put_net(struct vmm_config *cfg, struct vmm_net *n, struct error *err)
{
        unsigned i;

        if (!vmm_valid_id(n->iface_id))
                return error_config(err,
                                    "network interface id '%s' is invalid: use 1 to 64 "
                                    "letters, digits or '_'",
                                    n->iface_id ? n->iface_id : "");
        for (i = 0; i < cfg->nr_nets; i++)
                if (strcmp(cfg->nets[i].iface_id, n->iface_id) == 0)
                        break;
        if (i == cfg->nr_nets && i == VMM_MAX_NETS)
                return error_config(err, "too many network interfaces (at most %d)", VMM_MAX_NETS);
        for (unsigned j = 0; j < cfg->nr_nets; j++) {
                if (j == i)
                        continue;
                if (n->host_dev_name && cfg->nets[j].host_dev_name &&
                    strcmp(n->host_dev_name, cfg->nets[j].host_dev_name) == 0)
                        return error_config(err,
                                            "host device '%s' is already used by interface "
                                            "'%s'",
                                            n->host_dev_name, cfg->nets[j].iface_id);
                if (n->has_mac && cfg->nets[j].has_mac &&
                    memcmp(n->guest_mac, cfg->nets[j].guest_mac, 6) == 0)
                        return error_config(err,
                                            "guest MAC address is already used by interface "
                                            "'%s'",
                                            cfg->nets[j].iface_id);
        }
        if (i < cfg->nr_nets)
                vmm_net_free(&cfg->nets[i]);
        else
                cfg->nr_nets++;
        cfg->nets[i] = *n;
        memset(n, 0, sizeof(*n));
        return 0;
}

/* What a sockaddr_un can hold, minus "_<port>" for guest-initiated connections. */
#define VSOCK_UDS_MAX (108 - 1 - 11)

bool vmm_access_platform_on(const struct vmm_config *cfg, enum vmm_access_platform ap)
{
        if (ap == VMM_AP_OFF)
                return false;
        return ap == VMM_AP_REQUIRED || cfg->confidential.platform != CC_PLATFORM_NONE;
}

static const char *const ap_names[] = {"default", "required", "off"};

int vmm_access_platform_parse(const char *s, enum vmm_access_platform *out)
{
        for (unsigned i = 0; i < ARRAY_SIZE(ap_names); i++) {
                if (strcmp(s, ap_names[i]) == 0) {
                        *out = (enum vmm_access_platform)i;
                        return 0;
                }
        }
        return -EINVAL;
}

const char *vmm_access_platform_name(enum vmm_access_platform ap)
{
        return (unsigned)ap < ARRAY_SIZE(ap_names) ? ap_names[ap] : "default";
}

struct ap_dev {
        const char *kind, *id;
        enum vmm_access_platform ap;
        bool present;
};

int vmm_config_check_balloon_target(const struct vmm_config *cfg, uint32_t amount_mib,
                                    struct error *err)
{
        if (cfg->confidential.platform == CC_PLATFORM_NONE || !amount_mib)
                return 0;
        return error_config(err,
                            "balloon inflation (amount_mib %u) is refused on a protected (%s) "
                            "VM: the host may not take its memory (CC-13)",
                            amount_mib, cc_platform_name(cfg->confidential.platform));
}

/* Combinations a protected VM cannot have, refused before anything is built (CC-10,
 * CC-13): nothing is silently overridden. */
static int validate_confidential(const struct vmm_config *cfg, struct error *err)
{
        const char *p = cc_platform_name(cfg->confidential.platform);
        struct ap_dev devs[VMM_MAX_VIRTIO_DEVICES + 4];
        unsigned n = 0;
        int r;

        if (cfg->confidential.platform == CC_PLATFORM_NONE)
                return 0;
        /* CC-15: a pmem window is guest-physical memory backed by a host file, outside the
         * ownership map: private (sev) it would be the file's bytes through the VM's key,
         * garbage to the guest and to every other VM sharing the file; shared, the host could
         * change a DAX filesystem under the guest at any moment; secure memory (pef,
         * s390-pv) is the ultravisor's, never a host file's page cache. */
        /* CC-16: hotplugged memory would join guest RAM outside the ownership map, which is
         * sized to RAM at creation; a protected guest's memory is accepted (validated) by the
         * platform once, at launch. */
        if (cfg->hotplug.present)
                return error_config(err,
                                    "memory hotplug (virtio-mem) cannot be used on a protected "
                                    "(%s) VM: its ownership map covers the RAM it was launched "
                                    "with (CC-16)",
                                    p);
        if (cfg->nr_pmems)
                return error_config(err,
                                    "pmem '%s' cannot be attached to a protected (%s) VM: its "
                                    "window maps a host file into guest memory, which the "
                                    "guest can neither keep private nor trust (CC-15); use a "
                                    "drive",
                                    cfg->pmems[0].id, p);
        for (unsigned i = 0; i < cfg->nr_drives; i++)
                devs[n++] = (struct ap_dev){"drive", cfg->drives[i].drive_id,
                                            cfg->drives[i].access_platform, true};
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                devs[n++] = (struct ap_dev){"network interface", cfg->nets[i].iface_id,
                                            cfg->nets[i].access_platform, true};
        devs[n++] =
            (struct ap_dev){"vsock", "vsock", cfg->vsock.access_platform, cfg->vsock.present};
        devs[n++] = (struct ap_dev){"balloon", "balloon", cfg->balloon.access_platform,
                                    cfg->balloon.present};
        devs[n++] = (struct ap_dev){"entropy", "entropy", cfg->entropy.access_platform,
                                    cfg->entropy.present};
        for (unsigned i = 0; i < n; i++)
                if (devs[i].present && devs[i].ap == VMM_AP_OFF)
                        return error_config(err,
                                            "%s '%s' has access_platform off, but a protected "
                                            "(%s) VM's devices must use "
                                            "VIRTIO_F_ACCESS_PLATFORM (CC-10)",
                                            devs[i].kind, devs[i].id, p);
        r = cfg->balloon.present
                ? vmm_config_check_balloon_target(cfg, cfg->balloon.amount_mib, err)
                : 0;
        if (r)
                return r;
        if (cfg->machine.huge_pages && cfg->confidential.platform != CC_PLATFORM_SEV)
                return error_config(
                    err,
                    "huge pages cannot back a %s VM: its ultravisor model pages "
                    "out %s granules",
                    p, cfg->confidential.platform == CC_PLATFORM_PEF ? "64 KiB" : "4 KiB");
        return 0;
}

static int validate_devices(const struct vmm_config *cfg, struct error *err)
{
        unsigned n = vmm_config_virtio_count(cfg);

        if (n > VMM_MAX_VIRTIO_DEVICES)
                return error_config(err,
                                    "%u virtio devices configured; at most %d fit the GSIs "
                                    "5..23",
                                    n, VMM_MAX_VIRTIO_DEVICES);
        for (unsigned i = 0; i < cfg->nr_drives; i++)
                if (!cfg->drives[i].path_on_host || !*cfg->drives[i].path_on_host)
                        return error_config(err, "drive '%s' has no path_on_host",
                                            cfg->drives[i].drive_id);
        for (unsigned i = 0; i < cfg->nr_pmems; i++)
                if (!cfg->pmems[i].path_on_host || !*cfg->pmems[i].path_on_host)
                        return error_config(err, "pmem '%s' has no path_on_host", cfg->pmems[i].id);
        for (unsigned i = 0; i < cfg->nr_nets; i++) {
                const char *tap = cfg->nets[i].host_dev_name;
                if (!tap || !*tap || strlen(tap) >= 16)
                        return error_config(err,
                                            "network interface '%s' needs a host_dev_name "
                                            "of 1 to 15 characters",
                                            cfg->nets[i].iface_id);
        }
        if (cfg->vsock.present) {
                if (cfg->vsock.guest_cid < 3 || cfg->vsock.guest_cid == UINT32_MAX)
                        return error_config(err,
                                            "vsock guest CID %u is invalid: it must be at "
                                            "least 3 (0-2 are reserved) and below "
                                            "4294967295",
                                            cfg->vsock.guest_cid);
                if (!cfg->vsock.uds_path || !*cfg->vsock.uds_path ||
                    strlen(cfg->vsock.uds_path) > VSOCK_UDS_MAX)
                        return error_config(err, "vsock uds_path must be 1 to %d characters",
                                            VSOCK_UDS_MAX);
        }
        if (!vmm_balloon_fits(cfg))
                return error_config(err,
                                    "balloon size %u MiB exceeds the guest memory of %llu "
                                    "MiB",
                                    cfg->balloon.amount_mib,
                                    (unsigned long long)cfg->machine.mem_size_mib);
        return 0;
}

bool vmm_balloon_fits(const struct vmm_config *cfg)
{
        return !cfg->balloon.present || cfg->balloon.amount_mib <= cfg->machine.mem_size_mib;
}

int vmm_config_validate(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                        struct error *err)
{
        const struct vmm_machine_config *m = &cfg->machine;
        unsigned max_vcpus = PLATFORM_MAX_VCPUS;
        struct x86_cpuid_mask mask;
        int r;

        if (limits && limits->max_vcpus && limits->max_vcpus < max_vcpus)
                max_vcpus = limits->max_vcpus;
        /* Firecracker's rule and words (its limit is 32; ours the platform's): with SMT, two
         * threads to a core, so 1 or an even number. */
        if (m->vcpu_count == 0 || m->vcpu_count > max_vcpus ||
            (m->smt && m->vcpu_count > 1 && m->vcpu_count % 2))
                return error_config(err,
                                    "The number of vCPUs must be greater than 0, less than %u and "
                                    "must be 1 or an even number if SMT is enabled.",
                                    max_vcpus);
        if (m->mem_size_mib == 0 || (m->huge_pages && (m->mem_size_mib % 2)))
                return error_config(err, "The memory size (MiB) is either 0, or not a multiple of "
                                         "the configured page size.");
        if (m->mem_size_mib < MIN_MEM_MIB)
                return error_config(err, "memory size %llu MiB is too small (minimum %d MiB)",
                                    (unsigned long long)m->mem_size_mib, MIN_MEM_MIB);
        r = x86_cpuid_parse_hide(m->cpu_hide, &mask, err);
        if (!r && cfg->cpu.tmpl)
                r = x86_cpu_template_check_hide(cfg->cpu.tmpl, &mask, err);
        if (r) {
                if (err)
                        err->kind = ERROR_CONFIG;
                return r;
        }
        r = validate_devices(cfg, err);
        if (!r)
                r = validate_confidential(cfg, err);
        if (r)
                return r;
        if (cfg->boot.boot_args && strlen(cfg->boot.boot_args) + 1 > X86_CMDLINE_MAX)
                return error_config(err,
                                    "kernel command line is %zu bytes; the limit is %llu bytes",
                                    strlen(cfg->boot.boot_args), X86_CMDLINE_MAX - 1);
        return 0;
}

int vmm_config_check_memory(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                            struct error *err)
{
        uint64_t mib = cfg->machine.mem_size_mib;
        /* Guest RAM above 4 GiB plus the hole must stay within 46-bit guest physical space. */
        uint64_t max_mib = (1ull << 46) >> 20;

        if (limits && limits->max_mem_mib && limits->max_mem_mib < max_mib)
                max_mib = limits->max_mem_mib;
        if (mib > max_mib)
                return error_config(err,
                                    "memory size %llu MiB exceeds what this host allows (%llu "
                                    "MiB)",
                                    (unsigned long long)mib, (unsigned long long)max_mib);
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
