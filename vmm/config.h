/*
 * The machine configuration: one object filled by the CLI, the config file and the API,
 * and one validation path for all three.
 */
#ifndef VMM_CONFIG_H
#define VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/cc/cc.h"
#include "arch/x86/cpu_template.h"
#include "common/error.h"
#include "common/file.h"
#include "common/log.h"
#include "common/util.h"
#include "devices/mmds/mmds.h"
#include "devices/rate_limiter.h"

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
        bool huge_pages;        /* back guest RAM with 2 MiB hugetlbfs pages */
        char *cpu_hide;         /* comma-separated CPUID feature names; NULL: none */
        bool smt;               /* two threads per core in the guest's CPU topology */
        bool track_dirty_pages; /* accepted and reported; used by snapshots (later) */
        bool pit;               /* the in-kernel i8254 PIT; off by default (docs/running.md) */
};

/*
 * The guest CPU's template (docs/cpu-templates.md): one of Firecracker's static templates by
 * name (machine-config's deprecated cpu_template) or a custom template (PUT /cpu-config, the
 * config file's "cpu-config"). Whichever was set last is the one applied, as in Firecracker.
 */
struct vmm_cpu_config {
        char static_template[8];       /* "T2A", ...; "" for a custom template or none */
        struct x86_cpu_template *tmpl; /* NULL: none (owned) */
};

/* Firecracker's drive object ("drives" in the config file, PUT /drives/{id}). */
enum vmm_cache_type { VMM_CACHE_UNSAFE, VMM_CACHE_WRITEBACK };
enum vmm_io_engine { VMM_IO_SYNC, VMM_IO_ASYNC };

/*
 * VIRTIO_F_ACCESS_PLATFORM per device (docs/confidential.md, CC-1/CC-9/CC-10): by default a
 * device of a protected VM requires it and others do not offer it; "required" imposes it on
 * an unprotected VM (a platform-originated restriction); "off" never offers it, which a
 * protected VM refuses at configuration time.
 */
enum vmm_access_platform { VMM_AP_DEFAULT = 0, VMM_AP_REQUIRED, VMM_AP_OFF };

struct vmm_confidential {
        enum cc_platform platform; /* CC_PLATFORM_NONE: an ordinary VM */
};

struct vmm_rate_limiter {
        bool present;
        struct rate_limiter_config cfg;
};

struct vmm_drive {
        char *drive_id;
        char *path_on_host;
        bool is_root_device;
        bool is_read_only;
        char *partuuid; /* NULL: root=/dev/vda */
        enum vmm_cache_type cache_type;
        enum vmm_io_engine io_engine; /* Async = io_uring */
        struct vmm_rate_limiter rate_limiter;
        enum vmm_access_platform access_platform;
};

struct vmm_net {
        char *iface_id;
        char *host_dev_name; /* TAP interface */
        bool has_mac;
        uint8_t guest_mac[6];
        uint16_t mtu; /* 0: not advertised */
        struct vmm_rate_limiter rx_rate_limiter;
        struct vmm_rate_limiter tx_rate_limiter;
        enum vmm_access_platform access_platform;
        bool mmds; /* answers for the metadata service (PUT /mmds/config's network_interfaces) */
};

struct vmm_vsock {
        bool present;
        uint32_t guest_cid;
        char *uds_path;
        char *vsock_id;
        enum vmm_access_platform access_platform;
};

/* Firecracker's pmem object ("pmem" in the config file, PUT /pmem/{id}): a virtio-pmem
 * device whose window maps path_on_host into guest-physical space. */
struct vmm_pmem {
        char *id;
        char *path_on_host;
        bool root_device; /* root=/dev/pmem0 */
        bool read_only;
        struct vmm_rate_limiter rate_limiter; /* FLUSH requests */
        /* Not the user's: the window's size (the file's, rounded up to 2 MiB), taken when the
         * device is configured, so the board places windows from the configuration alone and
         * a restored VM gets the layout it was saved with (a file whose size changed since
         * is refused at the start). */
        uint64_t window_size;
};

/* Firecracker's MemoryHotplugConfig ("memory-hotplug" in the config file, PUT
 * /hotplug/memory): a virtio-mem device and its region past RAM. */
struct vmm_memory_hotplug {
        bool present;
        uint64_t total_size_mib;     /* the region: a multiple of slot_size_mib */
        uint64_t slot_size_mib;      /* at least 128, a multiple of block_size_mib */
        uint64_t block_size_mib;     /* a power of two, at least 2 */
        uint64_t requested_size_mib; /* PATCH /hotplug/memory: what the guest should plug */
};
#define VMM_HOTPLUG_MAX_MIB (1ull << 20) /* 1 TiB */

struct vmm_balloon {
        bool present;
        uint32_t amount_mib;
        bool deflate_on_oom;
        uint32_t stats_polling_interval_s; /* 0: no statistics queue */
        bool free_page_reporting;
        bool free_page_hinting;
        enum vmm_access_platform access_platform;
};

struct vmm_entropy {
        bool present;
        struct vmm_rate_limiter rate_limiter;
        enum vmm_access_platform access_platform;
};

/* Firecracker's MmdsConfig (PUT /mmds/config, "mmds-config"); the interfaces it lists are
 * the network interfaces whose `mmds` flag is set (a PUT of an interface clears its flag, as
 * Firecracker's new device has no MMDS stack). */
struct vmm_mmds_config {
        bool present;
        enum mmds_version version;
        bool imds_compat;
        uint32_t ipv4; /* host byte order; MMDS_DEFAULT_IPV4 unless given */
};

/* Firecracker's logger object (PUT /logger, "logger" in the config file, --log-path ...):
 * only the fields given are applied; the others keep the logger's current setting. */
struct vmm_logger_config {
        bool present;
        char *log_path; /* NULL: stderr */
        bool has_level;
        enum log_level level;
        bool has_show_level;
        bool show_level;
        bool has_show_log_origin;
        bool show_log_origin;
};

struct vmm_metrics_property {
        char *key;
        char *value;
};

/* Firecracker's metrics object (PUT /metrics, "metrics", --metrics-path). */
struct vmm_metrics_config {
        bool present;
        char *metrics_path;
        bool emit_id; /* a top-level "id" field on every line */
        unsigned nr_properties;
        struct vmm_metrics_property *properties; /* a top-level "properties" object */
};

/* virtio-mmio devices get GSIs 5..23: 19 slots. */
#define VMM_MAX_VIRTIO_DEVICES 19
#define VMM_MAX_DRIVES         VMM_MAX_VIRTIO_DEVICES
#define VMM_MAX_NETS           VMM_MAX_VIRTIO_DEVICES
#define VMM_MAX_PMEMS          VMM_MAX_VIRTIO_DEVICES

struct vmm_config {
        struct vmm_boot_source boot;
        struct vmm_machine_config machine;
        unsigned nr_drives;
        struct vmm_drive drives[VMM_MAX_DRIVES];
        unsigned nr_nets;
        struct vmm_net nets[VMM_MAX_NETS];
        unsigned nr_pmems;
        struct vmm_pmem pmems[VMM_MAX_PMEMS]; /* in the order they were first configured */
        struct vmm_memory_hotplug hotplug;
        struct vmm_vsock vsock;
        struct vmm_balloon balloon;
        struct vmm_entropy entropy;
        struct vmm_confidential confidential;
        struct vmm_mmds_config mmds;
        struct vmm_cpu_config cpu;
        char *serial_out_path; /* NULL: the VMM's stdout */
        /* PUT /serial's rate_limiter (Firecracker's TokenBucket, in .cfg.bandwidth): output
         * beyond it is dropped and counted (uart.rate_limiter_dropped_bytes). */
        struct vmm_rate_limiter serial_rate_limiter;
        bool serial_in;  /* feed the VMM's stdin to the guest's COM1 */
        bool boot_timer; /* map the boot-timer device at 0xc0000000 */
        struct vmm_logger_config logger;
        struct vmm_metrics_config metrics;
};

/* Whether a device with this setting uses VIRTIO_F_ACCESS_PLATFORM on this VM. */
bool vmm_access_platform_on(const struct vmm_config *cfg, enum vmm_access_platform ap);
/* "default" / "required" / "off" */
int vmm_access_platform_parse(const char *s, enum vmm_access_platform *out);
const char *vmm_access_platform_name(enum vmm_access_platform ap);

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
 * feature list), as Firecracker checks a configuration request (the vCPU count and the
 * memory size in its words). Errors are ERROR_CONFIG with one precise message. limits may be
 * NULL. Whether this host can hold the memory is vmm_config_check_memory's. */
int vmm_config_validate(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                        struct error *err) MUST_CHECK;
/* Whether the guest memory fits this host (its RAM, the 46-bit guest physical space): for a
 * start, not for a configuration request (Firecracker accepts any size there and fails to
 * map it at InstanceStart). ERROR_CONFIG. */
int vmm_config_check_memory(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                            struct error *err) MUST_CHECK;
/* Whether the balloon (if any) is no larger than the guest memory. */
bool vmm_balloon_fits(const struct vmm_config *cfg);

/* A balloon target of amount_mib for cfg's VM: inflation of a protected VM is refused
 * (CC-13), before the start (PUT /balloon, the config file) and after it (PATCH /balloon). */
int vmm_config_check_balloon_target(const struct vmm_config *cfg, uint32_t amount_mib,
                                    struct error *err) MUST_CHECK;

/* Adds or replaces (same drive_id / iface_id) a device entry, taking ownership of its
 * strings. Root drives go first, like Firecracker orders them. */
int vmm_config_put_drive(struct vmm_config *cfg, struct vmm_drive *drive,
                         struct error *err) MUST_CHECK;
int vmm_config_put_net(struct vmm_config *cfg, struct vmm_net *net, struct error *err) MUST_CHECK;
void vmm_drive_free(struct vmm_drive *d);
void vmm_net_free(struct vmm_net *n);
/* Adds or replaces (same id, keeping its place: /dev/pmemN follow the order of first
 * configuration, as Firecracker's) a pmem device, taking ownership of its strings. One root
 * device at most, and not beside a root drive (Firecracker's messages). */
int vmm_config_put_pmem(struct vmm_config *cfg, struct vmm_pmem *p, struct error *err) MUST_CHECK;
void vmm_pmem_free(struct vmm_pmem *p);
/* Checks p's file as the device will open it (vmm_check_file) and records its window size
 * (window_size): the API's PUT, the config file and --pmem all go through it. */
int vmm_pmem_measure(struct vmm_pmem *p, struct error *err) MUST_CHECK;

/* Checks a PUT /hotplug/memory (ERROR_CONFIG). */
int vmm_check_memory_hotplug(const struct vmm_memory_hotplug *h, struct error *err) MUST_CHECK;

/* Number of virtio-mmio devices the configuration attaches. */
unsigned vmm_config_virtio_count(const struct vmm_config *cfg);

/* "aa:bb:cc:dd:ee:ff" -> 6 bytes; -EINVAL on anything else. */
int vmm_parse_mac(const char *s, uint8_t mac[6]);
/* Ids in paths and bodies: 1..64 characters, alphanumeric and '_' (Firecracker's rule). */
bool vmm_valid_id(const char *id);

/* Whether the metadata service answers on some interface (GET /vm/config shows its
 * "mmds-config" then). */
bool vmm_config_mmds_active(const struct vmm_config *cfg);
/* RFC 3927's link-local addresses as Firecracker takes them for the MMDS: 169.254.1.0 to
 * 169.254.254.255 (host byte order). */
bool vmm_mmds_ipv4_valid(uint32_t ipv4);

/* Deep copy: dst (uninitialised) gets its own strings. -ENOMEM leaves dst freed. */
int vmm_config_copy(struct vmm_config *dst, const struct vmm_config *src) MUST_CHECK;

/* A PUT or PATCH of the machine configuration: fields whose has_ flag is false keep their
 * current value. cpu_hide is borrowed. */
struct vmm_machine_update {
        bool has_vcpu_count;
        unsigned vcpu_count;
        bool has_mem_size_mib;
        uint64_t mem_size_mib;
        bool has_smt;
        bool smt;
        bool has_track_dirty_pages;
        bool track_dirty_pages;
        bool has_huge_pages;
        bool huge_pages;
        bool has_cpu_hide;
        const char *cpu_hide; /* NULL or "": none */
        /* cpu_template given: the static template of that name, whose content is
         * cpu_template_data; "None" (data NULL) drops any template, a custom one too. */
        bool has_cpu_template;
        const char *cpu_template;
        const struct x86_cpu_template *cpu_template_data; /* copied */
        bool has_pit;
        bool pit;
};

/* Makes tmpl (copied; NULL: none) the configuration's template: a static one named
 * static_template, or a custom one (static_template NULL). */
int vmm_config_set_cpu_template(struct vmm_config *cfg, const char *static_template,
                                const struct x86_cpu_template *tmpl) MUST_CHECK;

/* Applies the update and validates the whole configuration (vmm_config_validate); on an
 * error cfg is unchanged. */
int vmm_config_apply_machine(struct vmm_config *cfg, const struct vmm_machine_update *u,
                             const struct vmm_host_limits *limits, struct error *err) MUST_CHECK;

/* A rate limiter as an update: buckets not given keep their current value (PATCH), or are
 * unlimited when the limiter is replaced (PUT, see vmm_rate_limiter_from_update). */
struct vmm_rate_limiter_update {
        bool has_bandwidth;
        bool has_ops;
        struct rate_limiter_config cfg;
};
void vmm_rate_limiter_from_update(struct vmm_rate_limiter *dst,
                                  const struct vmm_rate_limiter_update *u);
void vmm_rate_limiter_merge(struct vmm_rate_limiter *dst, const struct vmm_rate_limiter_update *u);

/* Checks that a file the VM will open at start can be opened now (read-only, or read-write
 * when write is set) and is one of kinds (common/file.h), so an API PUT reports a bad path
 * at once. ERROR_CONFIG; *os_errno as file_open_os. */
int vmm_check_file(const char *what, const char *path, bool write, unsigned kinds, int *os_errno,
                   struct error *err) MUST_CHECK;

/* Opens a log or metrics destination for writing (file_open): a regular file appended to and
 * created when missing, a named pipe read-write and non-blocking (the open neither waits for
 * nor needs a reader), or a character device. Returns the fd or a negative errno
 * (ERROR_CONFIG). */
int vmm_open_output(const char *what, const char *path, struct error *err) MUST_CHECK;

void vmm_logger_config_free(struct vmm_logger_config *l);
void vmm_metrics_config_free(struct vmm_metrics_config *m);
int vmm_metrics_config_copy(struct vmm_metrics_config *dst,
                            const struct vmm_metrics_config *src) MUST_CHECK;

/* Limits of this host: total RAM, and the vCPU limit of the KVM at kvm_path (the platform
 * limit alone when KVM cannot be opened). */
void vmm_host_limits_get(struct vmm_host_limits *out, unsigned kvm_max_vcpus);

#endif
