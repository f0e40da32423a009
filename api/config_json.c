#include "config_json.h"

#include "common/file.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "json_read.h"
#include "cpu_template_json.h"
#include "json_serde.h"

/* ---- the bodies' shapes: Firecracker's Rust structs, field by field, in their order ---- */

/* A refusal of the request as Firecracker's checks after serde's, or of something we do not
 * build: the message is the whole answer (no serde prefix), see api_parse_command_text. A
 * configuration error (ERROR_CONFIG: a config file saying so exits with 152). */
static int refuse(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(struct error *err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        error_setv(err, API_PARSE_REFUSED, fmt, ap);
        va_end(ap);
        if (err)
                err->kind = ERROR_CONFIG;
        return API_PARSE_REFUSED;
}

#define FIELD(n, s, f)                                                                             \
        {                                                                                          \
                .name = (n), .shape = &(s), .flags = (f)                                           \
        }
#define END_OF_FIELDS                                                                              \
        {                                                                                          \
                .name = NULL                                                                       \
        }
#define STRUCT(n, fs)                                                                              \
        {                                                                                          \
                .kind = JSON_STRUCT, .name = (n), .fields = (fs)                                   \
        }
#define OPEN_STRUCT(n, fs)                                                                         \
        {                                                                                          \
                .kind = JSON_STRUCT, .name = (n), .fields = (fs), .allow_unknown = true            \
        }
#define ENUM(vs)                                                                                   \
        {                                                                                          \
                .kind = JSON_ENUM, .variants = (vs)                                                \
        }
#define OPT JSON_OPTION
#define DEF JSON_DEFAULT

static const struct json_shape t_bool = {.kind = JSON_BOOL};
static const struct json_shape t_string = {.kind = JSON_STRING};
static const struct json_shape t_path = {.kind = JSON_PATH};
static const struct json_shape t_u8 = {.kind = JSON_U8};
static const struct json_shape t_u16 = {.kind = JSON_U16};
static const struct json_shape t_u32 = {.kind = JSON_U32};
static const struct json_shape t_u64 = {.kind = JSON_U64};
static const struct json_shape t_usize = {.kind = JSON_USIZE};
static const struct json_shape t_value = {.kind = JSON_VALUE};
static const struct json_shape t_string_map = {.kind = JSON_STRING_MAP};

/* Our extension on every device object: "default", "required" or "off" (absent: default). */
static const char *const ap_values[] = {"default", "required", "off", NULL};
static const struct json_shape t_access_platform = ENUM(ap_values);
#define ACCESS_PLATFORM FIELD("access_platform", t_access_platform, OPT | DEF)

/* TokenBucketConfig: no deny_unknown_fields in Firecracker, so unknown fields pass. */
static const struct json_field bucket_fields[] = {
    FIELD("size", t_u64, 0),
    FIELD("one_time_burst", t_u64, OPT),
    FIELD("refill_time", t_u64, 0),
    END_OF_FIELDS,
};
static const struct json_shape t_bucket = OPEN_STRUCT("TokenBucketConfig", bucket_fields);

static const struct json_field rate_limiter_fields[] = {
    FIELD("bandwidth", t_bucket, OPT),
    FIELD("ops", t_bucket, OPT),
    END_OF_FIELDS,
};
static const struct json_shape t_rate_limiter = STRUCT("RateLimiterConfig", rate_limiter_fields);

static const struct json_field boot_fields[] = {
    FIELD("kernel_image_path", t_string, 0),
    FIELD("initrd_path", t_string, OPT),
    FIELD("boot_args", t_string, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_boot = STRUCT("BootSourceConfig", boot_fields);

/* x86_64's StaticCpuTemplate and HugePageConfig, in declaration order. */
static const char *const cpu_template_values[] = {"C3", "T2", "T2S", "None", "T2CL", "T2A", NULL};
#define CPU_TEMPLATE_NONE 3
static const struct json_shape t_cpu_template = ENUM(cpu_template_values);
static const char *const huge_page_values[] = {"None", "Transparent", "2M", NULL};
#define HUGE_PAGES_TRANSPARENT 1
#define HUGE_PAGES_2M          2
static const struct json_shape t_huge_pages = ENUM(huge_page_values);

static const struct json_field put_machine_fields[] = {
    FIELD("vcpu_count", t_u8, 0),
    FIELD("mem_size_mib", t_usize, 0),
    FIELD("smt", t_bool, DEF),
    FIELD("cpu_template", t_cpu_template, OPT | DEF),
    FIELD("track_dirty_pages", t_bool, DEF),
    FIELD("huge_pages", t_huge_pages, DEF),
    FIELD("cpu_hide", t_string, OPT | DEF), /* ours */
    FIELD("pit", t_bool, DEF),              /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_put_machine = STRUCT("MachineConfig", put_machine_fields);

static const struct json_field patch_machine_fields[] = {
    FIELD("vcpu_count", t_u8, OPT | DEF),
    FIELD("mem_size_mib", t_usize, OPT | DEF),
    FIELD("smt", t_bool, OPT | DEF),
    FIELD("cpu_template", t_cpu_template, OPT | DEF),
    FIELD("track_dirty_pages", t_bool, OPT | DEF),
    FIELD("huge_pages", t_huge_pages, OPT | DEF),
    FIELD("cpu_hide", t_string, OPT | DEF), /* ours */
    FIELD("pit", t_bool, OPT | DEF),        /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_machine =
    STRUCT("MachineConfigUpdate", patch_machine_fields);

static const char *const cache_values[] = {"Unsafe", "Writeback", NULL};
static const struct json_shape t_cache_type = ENUM(cache_values);
static const char *const engine_values[] = {"Async", "Sync", NULL};
#define IO_ENGINE_ASYNC 0
static const struct json_shape t_io_engine = ENUM(engine_values);

static const struct json_field put_drive_fields[] = {
    FIELD("drive_id", t_string, 0),
    FIELD("partuuid", t_string, OPT),
    FIELD("is_root_device", t_bool, 0),
    FIELD("cache_type", t_cache_type, DEF),
    FIELD("is_read_only", t_bool, OPT),
    FIELD("path_on_host", t_string, OPT),
    FIELD("rate_limiter", t_rate_limiter, OPT),
    FIELD("io_engine", t_io_engine, OPT),
    FIELD("socket", t_string, OPT),
    ACCESS_PLATFORM, /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_put_drive = STRUCT("BlockDeviceConfig", put_drive_fields);

static const struct json_field patch_drive_fields[] = {
    FIELD("drive_id", t_string, 0),
    FIELD("path_on_host", t_string, OPT),
    FIELD("rate_limiter", t_rate_limiter, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_drive =
    STRUCT("BlockDeviceUpdateConfig", patch_drive_fields);

/* Firecracker's PmemConfig and PmemDeviceUpdateConfig. */
static const struct json_field put_pmem_fields[] = {
    FIELD("id", t_string, 0),
    FIELD("path_on_host", t_string, 0),
    FIELD("root_device", t_bool, DEF),
    FIELD("read_only", t_bool, DEF),
    FIELD("rate_limiter", t_rate_limiter, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_put_pmem = STRUCT("PmemConfig", put_pmem_fields);

static const struct json_field patch_pmem_fields[] = {
    FIELD("id", t_string, 0),
    FIELD("rate_limiter", t_rate_limiter, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_pmem =
    STRUCT("PmemDeviceUpdateConfig", patch_pmem_fields);

/* Firecracker's MemoryHotplugConfig and MemoryHotplugSizeUpdate. */
static const struct json_field put_hotplug_fields[] = {
    FIELD("total_size_mib", t_u32, 0),
    FIELD("block_size_mib", t_u32, DEF),
    FIELD("slot_size_mib", t_u32, DEF),
    END_OF_FIELDS,
};
static const struct json_shape shape_put_memory_hotplug =
    STRUCT("MemoryHotplugConfig", put_hotplug_fields);

static const struct json_field patch_hotplug_fields[] = {
    FIELD("requested_size_mib", t_u32, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_memory_hotplug =
    STRUCT("MemoryHotplugSizeUpdate", patch_hotplug_fields);

/* Firecracker's MacAddr: six ':'-separated pairs of hex digits (u8::from_str_radix, which
 * takes a leading '+' too). */
static const char *check_mac(const char *s)
{
        uint8_t mac[6];

        return vmm_parse_mac(s, mac) ? "The provided MAC address is invalid." : NULL;
}
static const struct json_shape t_mac = {.kind = JSON_STRING, .check = check_mac};

static const struct json_field put_net_fields[] = {
    FIELD("iface_id", t_string, 0),
    FIELD("host_dev_name", t_string, 0),
    FIELD("guest_mac", t_mac, OPT),
    FIELD("mtu", t_u16, OPT),
    FIELD("rx_rate_limiter", t_rate_limiter, OPT),
    FIELD("tx_rate_limiter", t_rate_limiter, OPT),
    ACCESS_PLATFORM, /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_put_net = STRUCT("NetworkInterfaceConfig", put_net_fields);

static const struct json_field patch_net_fields[] = {
    FIELD("iface_id", t_string, 0),
    FIELD("rx_rate_limiter", t_rate_limiter, OPT),
    FIELD("tx_rate_limiter", t_rate_limiter, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_net =
    STRUCT("NetworkInterfaceUpdateConfig", patch_net_fields);

static const struct json_field vsock_fields[] = {
    FIELD("vsock_id", t_string, OPT | DEF),
    FIELD("guest_cid", t_u32, 0),
    FIELD("uds_path", t_string, 0),
    ACCESS_PLATFORM, /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_vsock = STRUCT("VsockDeviceConfig", vsock_fields);

static const struct json_field entropy_fields[] = {
    FIELD("rate_limiter", t_rate_limiter, OPT),
    ACCESS_PLATFORM, /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_entropy = STRUCT("EntropyDeviceConfig", entropy_fields);

static const struct json_field serial_fields[] = {
    FIELD("serial_out_path", t_path, OPT),
    FIELD("rate_limiter", t_bucket, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_serial = STRUCT("SerialConfig", serial_fields);

/* Firecracker's MmdsConfig: ipv4_address an Ipv4Addr (its FromStr: four decimal octets, no
 * leading zero). */
static const char *check_ipv4(const char *s)
{
        uint32_t v;

        return api_parse_ipv4(s, &v) ? "invalid IP address syntax" : NULL;
}
static const struct json_shape t_ipv4 = {.kind = JSON_STRING, .check = check_ipv4};
static const char *const mmds_versions[] = {"V1", "V2", NULL};
static const struct json_shape t_mmds_version = ENUM(mmds_versions);
static const struct json_shape t_strings = {.kind = JSON_SEQ, .item = &t_string};
static const struct json_field mmds_config_fields[] = {
    FIELD("version", t_mmds_version, DEF),
    FIELD("network_interfaces", t_strings, 0),
    FIELD("ipv4_address", t_ipv4, OPT | DEF),
    FIELD("imds_compat", t_bool, DEF),
    END_OF_FIELDS,
};
static const struct json_shape shape_mmds_config = STRUCT("MmdsConfig", mmds_config_fields);

/* PUT and PATCH /mmds: any JSON value (serde's Value), its syntax checked here; the router
 * hands the store the text itself (take_body_text). */
static const struct json_shape shape_unread = {.kind = JSON_IGNORED};

static const struct json_field put_balloon_fields[] = {
    FIELD("amount_mib", t_u32, 0),
    FIELD("deflate_on_oom", t_bool, 0),
    FIELD("stats_polling_interval_s", t_u16, DEF),
    FIELD("free_page_hinting", t_bool, DEF),
    FIELD("free_page_reporting", t_bool, DEF),
    ACCESS_PLATFORM, /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_put_balloon =
    STRUCT("BalloonDeviceConfig", put_balloon_fields);

static const struct json_field patch_balloon_fields[] = {
    FIELD("amount_mib", t_u32, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_balloon =
    STRUCT("BalloonUpdateConfig", patch_balloon_fields);

static const struct json_field patch_balloon_stats_fields[] = {
    FIELD("stats_polling_interval_s", t_u16, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_patch_balloon_stats =
    STRUCT("BalloonUpdateStatsConfig", patch_balloon_stats_fields);

/* Firecracker's StartHintingCmd (no deny_unknown_fields): acknowledge_on_stop defaults to
 * true, as does a missing body. */
static const struct json_field hinting_start_fields[] = {
    FIELD("acknowledge_on_stop", t_bool, DEF),
    END_OF_FIELDS,
};
static const struct json_shape shape_hinting_start =
    OPEN_STRUCT("StartHintingCmd", hinting_start_fields);

/* Firecracker's LevelFilter: a string read case-insensitively ("warn" and "warning"). */
static const char *check_level(const char *s)
{
        enum log_level l;

        return log_level_parse(s, &l) ? "Invalid LevelFilter" : NULL;
}
static const struct json_shape t_level = {.kind = JSON_STRING, .check = check_level};

static const struct json_field logger_fields[] = {
    FIELD("log_path", t_path, OPT),   FIELD("level", t_level, OPT),
    FIELD("show_level", t_bool, OPT), FIELD("show_log_origin", t_bool, OPT),
    FIELD("module", t_string, OPT),   END_OF_FIELDS,
};
static const struct json_shape shape_logger = STRUCT("LoggerConfig", logger_fields);

/* MetricsConfig: no deny_unknown_fields in Firecracker. */
static const struct json_field metrics_fields[] = {
    FIELD("metrics_path", t_path, 0),
    FIELD("emit_id", t_bool, DEF),
    FIELD("properties", t_string_map, OPT | DEF),
    END_OF_FIELDS,
};
static const struct json_shape shape_metrics = OPEN_STRUCT("MetricsConfig", metrics_fields);

/* x86_64's ActionType. */
static const char *const action_values[] = {"FlushMetrics", "InstanceStart", "SendCtrlAltDel",
                                            NULL};
static const struct json_shape t_action = ENUM(action_values);
static const struct json_field actions_fields[] = {
    FIELD("action_type", t_action, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_actions = STRUCT("ActionBody", actions_fields);

static const char *const vm_state_values[] = {"Paused", "Resumed", NULL};
static const struct json_shape t_vm_state = ENUM(vm_state_values);
static const struct json_field vm_fields[] = {
    FIELD("state", t_vm_state, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_vm = STRUCT("Vm", vm_fields);

static const char *const snapshot_type_values[] = {"Diff", "Full", NULL};
#define SNAPSHOT_DIFF 0
static const struct json_shape t_snapshot_type = ENUM(snapshot_type_values);
static const struct json_field snapshot_create_fields[] = {
    FIELD("snapshot_type", t_snapshot_type, DEF),
    FIELD("snapshot_path", t_path, 0),
    FIELD("mem_file_path", t_path, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_snapshot_create =
    STRUCT("CreateSnapshotParams", snapshot_create_fields);

static const char *const mem_backend_values[] = {"File", "Uffd", NULL};
#define MEM_BACKEND_UFFD 1
static const struct json_shape t_mem_backend_type = ENUM(mem_backend_values);
static const struct json_field mem_backend_fields[] = {
    FIELD("backend_path", t_path, 0),
    FIELD("backend_type", t_mem_backend_type, 0),
    END_OF_FIELDS,
};
static const struct json_shape t_mem_backend = STRUCT("MemBackendConfig", mem_backend_fields);

/* NetworkOverride and VsockOverride: no deny_unknown_fields in Firecracker. */
static const struct json_field net_override_fields[] = {
    FIELD("iface_id", t_string, 0),
    FIELD("host_dev_name", t_string, 0),
    END_OF_FIELDS,
};
static const struct json_shape t_net_override = OPEN_STRUCT("NetworkOverride", net_override_fields);
static const struct json_shape t_net_overrides = {.kind = JSON_SEQ, .item = &t_net_override};
/* Ours: another backing file per drive on a load. Unknown fields are refused (a misspelt
 * "path" would otherwise leave the drive on its saved file). */
static const struct json_field drive_override_fields[] = {
    FIELD("drive_id", t_string, 0),
    FIELD("path_on_host", t_string, 0),
    END_OF_FIELDS,
};
static const struct json_shape t_drive_override = STRUCT("DriveOverride", drive_override_fields);
static const struct json_shape t_drive_overrides = {.kind = JSON_SEQ, .item = &t_drive_override};
static const struct json_field vsock_override_fields[] = {
    FIELD("uds_path", t_string, 0),
    END_OF_FIELDS,
};
static const struct json_shape t_vsock_override =
    OPEN_STRUCT("VsockOverride", vsock_override_fields);

static const char *const load_huge_values[] = {"Snapshot", "None", "Transparent", "2M", NULL};
#define LOAD_HUGE_NONE        1
#define LOAD_HUGE_TRANSPARENT 2
#define LOAD_HUGE_2M          3
static const struct json_shape t_load_huge = ENUM(load_huge_values);

static const struct json_field snapshot_load_fields[] = {
    FIELD("snapshot_path", t_path, 0),
    FIELD("mem_file_path", t_path, OPT),
    FIELD("mem_backend", t_mem_backend, OPT),
    FIELD("enable_diff_snapshots", t_bool, DEF),
    FIELD("track_dirty_pages", t_bool, DEF),
    FIELD("resume_vm", t_bool, DEF),
    FIELD("network_overrides", t_net_overrides, DEF),
    FIELD("vsock_override", t_vsock_override, OPT),
    FIELD("clock_realtime", t_bool, DEF),
    FIELD("huge_pages", t_load_huge, DEF),
    FIELD("drive_overrides", t_drive_overrides, DEF), /* ours */
    END_OF_FIELDS,
};
static const struct json_shape shape_snapshot_load =
    STRUCT("LoadSnapshotConfig", snapshot_load_fields);

/* Ours. */
static const char *const platform_values[] = {"none", "sev", "pef", "s390-pv", NULL};
static const struct json_shape t_platform = ENUM(platform_values);
static const struct json_field confidential_fields[] = {
    FIELD("platform", t_platform, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_confidential =
    STRUCT("ConfidentialConfig", confidential_fields);

static const struct json_field memory_dump_fields[] = {
    FIELD("mem_file_path", t_path, 0),
    END_OF_FIELDS,
};
static const struct json_shape shape_memory_dump = STRUCT("MemoryDumpConfig", memory_dump_fields);

/* ---- shared pieces ---- */

static void get_bucket(const cJSON *j, struct token_bucket_config *b)
{
        memset(b, 0, sizeof(*b));
        json_get_uint(j, "size", &b->size);
        json_get_uint(j, "one_time_burst", &b->one_time_burst);
        json_get_uint(j, "refill_time", &b->refill_time_ms);
}

/* An optional RateLimiterConfig field as an update: *has tells whether it was given. */
static void get_rate_limiter(const cJSON *j, const char *name, bool *has,
                             struct vmm_rate_limiter_update *u)
{
        const cJSON *f = json_field(j, name), *b;

        memset(u, 0, sizeof(*u));
        *has = f != NULL;
        if (!f)
                return;
        if ((b = json_field(f, "bandwidth"))) {
                u->has_bandwidth = true;
                get_bucket(b, &u->cfg.bandwidth);
        }
        if ((b = json_field(f, "ops"))) {
                u->has_ops = true;
                get_bucket(b, &u->cfg.ops);
        }
}

/* PUT semantics: a limiter that is given replaces everything (missing buckets unlimited). */
static void get_put_rate_limiter(const cJSON *j, const char *name, struct vmm_rate_limiter *out)
{
        struct vmm_rate_limiter_update u;
        bool has;

        get_rate_limiter(j, name, &has, &u);
        memset(out, 0, sizeof(*out));
        if (has)
                vmm_rate_limiter_from_update(out, &u);
}

static enum vmm_access_platform get_access_platform(const cJSON *j)
{
        int v = 0;

        json_get_enum(j, "access_platform", ap_values, &v);
        return (enum vmm_access_platform)v;
}

static void add_access_platform(cJSON *o, enum vmm_access_platform ap)
{
        if (ap != VMM_AP_DEFAULT)
                cJSON_AddStringToObject(o, "access_platform", vmm_access_platform_name(ap));
}

/* ---- request bodies ---- */

int api_parse_memory_dump(const cJSON *j, char **path, struct error *err)
{
        *path = NULL;
        return json_get_string(j, "mem_file_path", path, err);
}

cJSON *api_json_memory(uint64_t address, const uint8_t *data, size_t len)
{
        static const char digits[] = "0123456789abcdef";
        cJSON *j = cJSON_CreateObject();
        char *hex = malloc(len * 2 + 1);

        if (!j || !hex) {
                free(hex);
                cJSON_Delete(j);
                return NULL;
        }
        for (size_t i = 0; i < len; i++) {
                hex[2 * i] = digits[data[i] >> 4];
                hex[2 * i + 1] = digits[data[i] & 15];
        }
        hex[len * 2] = '\0';
        json_add_uint(j, "address", address);
        json_add_uint(j, "length", len);
        cJSON_AddStringToObject(j, "data", hex);
        free(hex);
        return j;
}

int api_parse_confidential(const cJSON *j, struct vmm_confidential *out, struct error *err)
{
        int v = 0;

        (void)err;
        memset(out, 0, sizeof(*out));
        json_get_enum(j, "platform", platform_values, &v);
        out->platform = (enum cc_platform)v;
        return 0;
}

int api_parse_boot_source(const cJSON *j, struct vmm_boot_source *out, struct error *err)
{
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "kernel_image_path", &out->kernel_image_path, err);
        if (!r)
                r = json_get_string(j, "initrd_path", &out->initrd_path, err);
        if (!r)
                r = json_get_string(j, "boot_args", &out->boot_args, err);
        return r;
}

int api_parse_machine(const cJSON *j, bool put, struct vmm_machine_update *u, char **cpu_hide,
                      bool *cpu_template_given, struct error *err)
{
        uint64_t v;
        int huge = 0, tmpl = CPU_TEMPLATE_NONE;
        int r = 0;

        memset(u, 0, sizeof(*u));
        u->has_vcpu_count = json_get_uint(j, "vcpu_count", &v);
        if (u->has_vcpu_count)
                u->vcpu_count = (unsigned)v;
        u->has_mem_size_mib = json_get_uint(j, "mem_size_mib", &u->mem_size_mib);
        u->has_smt = json_get_bool(j, "smt", &u->smt);
        u->has_track_dirty_pages = json_get_bool(j, "track_dirty_pages", &u->track_dirty_pages);
        u->has_huge_pages = json_get_enum(j, "huge_pages", huge_page_values, &huge);
        u->huge_pages = huge == HUGE_PAGES_2M;
        /* Deprecated in Firecracker (the request is answered with "Deprecation: true"). A
         * static template's content is read by the command's parser (machine_template). */
        u->has_cpu_template = json_get_enum(j, "cpu_template", cpu_template_values, &tmpl);
        if (u->has_cpu_template)
                u->cpu_template = cpu_template_values[tmpl];
        *cpu_template_given = u->has_cpu_template;
        u->has_pit = json_get_bool(j, "pit", &u->pit);
        if (json_field(j, "cpu_hide")) {
                r = json_get_string(j, "cpu_hide", cpu_hide, err);
                u->has_cpu_hide = true;
        }
        if (!r && !put && !u->has_vcpu_count && !u->has_mem_size_mib && !u->has_smt &&
            !u->has_track_dirty_pages && !u->has_huge_pages && !u->has_cpu_template &&
            !u->has_pit && !u->has_cpu_hide)
                r = refuse(err, "Empty PATCH request.");
        if (!r && huge == HUGE_PAGES_TRANSPARENT)
                r = refuse(err, "huge_pages \"Transparent\" is not implemented yet: use \"None\" "
                                "or \"2M\"");
        if (!r && put) {
                /* PUT: every optional field not given goes back to its default. */
                u->has_smt = u->has_track_dirty_pages = u->has_huge_pages = true;
                u->has_cpu_hide = u->has_pit = true;
        }
        return r;
}

int api_parse_drive(const cJSON *j, struct vmm_drive *out, struct error *err)
{
        int cache = 0, engine = 1;
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "drive_id", &out->drive_id, err);
        if (!r)
                r = json_get_string(j, "partuuid", &out->partuuid, err);
        json_get_bool(j, "is_root_device", &out->is_root_device);
        json_get_enum(j, "cache_type", cache_values, &cache);
        out->cache_type = cache == 1 ? VMM_CACHE_WRITEBACK : VMM_CACHE_UNSAFE;
        json_get_bool(j, "is_read_only", &out->is_read_only);
        if (!r)
                r = json_get_string(j, "path_on_host", &out->path_on_host, err);
        get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter);
        json_get_enum(j, "io_engine", engine_values, &engine);
        out->io_engine = engine == IO_ENGINE_ASYNC ? VMM_IO_ASYNC : VMM_IO_SYNC;
        out->access_platform = get_access_platform(j);
        if (!r && json_field(j, "socket"))
                r = refuse(err, "vhost-user block devices (field `socket`) are not implemented "
                                "yet");
        if (r)
                vmm_drive_free(out);
        return r;
}

int api_parse_pmem(const cJSON *j, struct vmm_pmem *out, struct error *err)
{
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "id", &out->id, err);
        if (!r)
                r = json_get_string(j, "path_on_host", &out->path_on_host, err);
        json_get_bool(j, "root_device", &out->root_device);
        json_get_bool(j, "read_only", &out->read_only);
        get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter);
        if (r)
                vmm_pmem_free(out);
        return r;
}

int api_parse_drive_update(const cJSON *j, struct vmm_drive_update *out, struct error *err)
{
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "drive_id", &out->drive_id, err);
        if (!r)
                r = json_get_string(j, "path_on_host", &out->path_on_host, err);
        get_rate_limiter(j, "rate_limiter", &out->has_rate_limiter, &out->rate_limiter);
        if (r) {
                free(out->drive_id);
                free(out->path_on_host);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

int api_parse_net(const cJSON *j, struct vmm_net *out, struct error *err)
{
        const cJSON *mac = json_field(j, "guest_mac");
        uint64_t mtu = 0;
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "iface_id", &out->iface_id, err);
        if (!r)
                r = json_get_string(j, "host_dev_name", &out->host_dev_name, err);
        /* The shape checked the address (check_mac). */
        if (mac && cJSON_IsString(mac))
                out->has_mac = vmm_parse_mac(mac->valuestring, out->guest_mac) == 0;
        /* Firecracker checks the MTU when it creates the device. */
        if (json_get_uint(j, "mtu", &mtu) && !r && (mtu < 68 || mtu > 65535))
                r = refuse(err,
                           "Network config error: Could not create the network device: MTU %llu "
                           "is out of range [68, 65535]",
                           (unsigned long long)mtu);
        out->mtu = (uint16_t)mtu;
        get_put_rate_limiter(j, "rx_rate_limiter", &out->rx_rate_limiter);
        get_put_rate_limiter(j, "tx_rate_limiter", &out->tx_rate_limiter);
        out->access_platform = get_access_platform(j);
        if (r)
                vmm_net_free(out);
        return r;
}

int api_parse_net_update(const cJSON *j, struct vmm_net_update *out, struct error *err)
{
        int r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "iface_id", &out->iface_id, err);
        get_rate_limiter(j, "rx_rate_limiter", &out->has_rx, &out->rx);
        get_rate_limiter(j, "tx_rate_limiter", &out->has_tx, &out->tx);
        if (r) {
                free(out->iface_id);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

int api_parse_vsock(const cJSON *j, struct vmm_vsock *out, struct error *err)
{
        uint64_t cid = 0;
        int r;

        memset(out, 0, sizeof(*out));
        json_get_uint(j, "guest_cid", &cid);
        out->guest_cid = (uint32_t)cid;
        r = json_get_string(j, "uds_path", &out->uds_path, err);
        if (!r)
                r = json_get_string(j, "vsock_id", &out->vsock_id, err);
        out->access_platform = get_access_platform(j);
        out->present = true;
        if (r) {
                free(out->uds_path);
                free(out->vsock_id);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

int api_parse_snapshot_create(const cJSON *j, struct vmm_snapshot_create *out, struct error *err)
{
        int type = 1, r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "mem_file_path", &out->mem_file_path, err);
        if (!r)
                r = json_get_string(j, "snapshot_path", &out->snapshot_path, err);
        json_get_enum(j, "snapshot_type", snapshot_type_values, &type);
        out->diff = type == SNAPSHOT_DIFF;
        if (r) {
                free(out->mem_file_path);
                free(out->snapshot_path);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

/* network_overrides, drive_overrides: sequences of {id_key, value_key} objects. */
static int get_overrides(const cJSON *j, const char *field, const char *id_key,
                         const char *value_key, unsigned max, struct vmm_override *out,
                         unsigned *count, struct error *err)
{
        const cJSON *a = json_field(j, field), *item;
        int r = 0;

        if (!a)
                return 0;
        cJSON_ArrayForEach(item, a)
        {
                unsigned i = *count;

                if (i == max)
                        return refuse(err, "%s: more than %u entries (this VMM's most)", field,
                                      max);
                (*count)++;
                r = json_get_string(item, id_key, &out[i].id, err);
                if (!r)
                        r = json_get_string(item, value_key, &out[i].value, err);
                if (r)
                        return r;
        }
        return 0;
}

int api_parse_snapshot_load(const cJSON *j, struct vmm_snapshot_load *out, bool *deprecated,
                            struct error *err)
{
        const cJSON *backend = json_field(j, "mem_backend"), *vsock;
        bool diff = false, track = false, has_mem;
        int hp = 0, kind = 0;
        int r;

        memset(out, 0, sizeof(*out));
        has_mem = json_field(j, "mem_file_path") != NULL;
        /* Firecracker's checks after serde's (SerdeJson errors without a position). */
        if (has_mem && backend)
                return error_config(err, "too many fields: either `mem_backend` or "
                                         "`mem_file_path` exclusively is required");
        if (!has_mem && !backend)
                return error_config(err, "missing field: either `mem_backend` or "
                                         "`mem_file_path` is required");
        r = json_get_string(j, "snapshot_path", &out->snapshot_path, err);
        if (!r)
                r = json_get_string(j, "mem_file_path", &out->mem_file_path, err);
        if (!r && backend) {
                r = json_get_string(backend, "backend_path", &out->mem_file_path, err);
                json_get_enum(backend, "backend_type", mem_backend_values, &kind);
        }
        json_get_bool(j, "enable_diff_snapshots", &diff);
        json_get_bool(j, "track_dirty_pages", &track);
        out->track_dirty_pages = diff || track;
        *deprecated = has_mem || diff;
        json_get_bool(j, "resume_vm", &out->resume_vm);
        json_get_bool(j, "clock_realtime", &out->clock_realtime);
        if (!r)
                r = get_overrides(j, "network_overrides", "iface_id", "host_dev_name", VMM_MAX_NETS,
                                  out->net_overrides, &out->nr_net_overrides, err);
        if (!r)
                r = get_overrides(j, "drive_overrides", "drive_id", "path_on_host", VMM_MAX_DRIVES,
                                  out->drive_overrides, &out->nr_drive_overrides, err);
        vsock = json_field(j, "vsock_override");
        if (!r && vsock)
                r = json_get_string(vsock, "uds_path", &out->vsock_uds_path, err);
        json_get_enum(j, "huge_pages", load_huge_values, &hp);
        out->mem_uffd = kind == MEM_BACKEND_UFFD;
        out->huge_pages_none = hp == LOAD_HUGE_NONE;
        out->huge_pages_2m = hp == LOAD_HUGE_2M;
        /* "2M": anonymous hugetlbfs memory, which only a page-fault handler can fill;
         * "Transparent": not a machine setting this VMM has. */
        if (!r && (hp == LOAD_HUGE_TRANSPARENT || (hp == LOAD_HUGE_2M && !out->mem_uffd)))
                r = refuse(err, "huge_pages `%s` is not supported on a snapshot load %s",
                           load_huge_values[hp],
                           hp == LOAD_HUGE_TRANSPARENT
                               ? "(use `None`, `Snapshot` or, with the Uffd memory backend, `2M`)"
                               : "from a memory file (a memory file backs the memory; use `None` "
                                 "or `Snapshot`, or the Uffd memory backend)");
        if (r)
                vmm_snapshot_load_free(out);
        return r;
}

int api_parse_entropy(const cJSON *j, struct vmm_entropy *out, struct error *err)
{
        (void)err;
        memset(out, 0, sizeof(*out));
        get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter);
        out->access_platform = get_access_platform(j);
        out->present = true;
        return 0;
}

int api_parse_serial(const cJSON *j, struct vmm_serial *out, struct error *err)
{
        const cJSON *b = json_field(j, "rate_limiter");
        int r = json_get_string(j, "serial_out_path", &out->out_path, err);

        if (!r && b && !cJSON_IsNull(b)) {
                get_bucket(b, &out->rate_limiter.cfg.bandwidth);
                out->rate_limiter.present = true;
        }
        return r;
}

int api_parse_ipv4(const char *s, uint32_t *out)
{
        uint32_t v = 0;

        for (int i = 0; i < 4; i++) {
                unsigned octet = 0, digits = 0;

                if (i && *s++ != '.')
                        return -EINVAL;
                while (*s >= '0' && *s <= '9' && digits < 4) {
                        octet = octet * 10 + (unsigned)(*s++ - '0');
                        digits++;
                }
                /* No leading zero (Rust refuses "01"), at most 255. */
                if (!digits || digits > 3 || octet > 255 || (digits > 1 && s[-(int)digits] == '0'))
                        return -EINVAL;
                v = v << 8 | octet;
        }
        if (*s)
                return -EINVAL;
        *out = v;
        return 0;
}

int api_parse_mmds_config(const cJSON *j, struct vmm_mmds_config_request *out, struct error *err)
{
        const cJSON *list = json_field(j, "network_interfaces"), *item;
        char *addr = NULL;
        int version = 0;
        int r;

        out->cfg = (struct vmm_mmds_config){.ipv4 = MMDS_DEFAULT_IPV4};
        json_get_enum(j, "version", mmds_versions, &version);
        json_get_bool(j, "imds_compat", &out->cfg.imds_compat);
        r = json_get_string(j, "ipv4_address", &addr, err);
        if (!r && addr && api_parse_ipv4(addr, &out->cfg.ipv4))
                r = error_config(err, "invalid IP address syntax");
        free(addr);
        if (r)
                return r;
        out->cfg.version = version == 1 ? MMDS_V2 : MMDS_V1;
        out->ifaces = calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof(*out->ifaces));
        if (!out->ifaces)
                return error_set(err, -ENOMEM, "out of memory");
        cJSON_ArrayForEach(item, list)
        {
                if (!(out->ifaces[out->nr_ifaces] = strdup(item->valuestring)))
                        return error_set(err, -ENOMEM, "out of memory");
                out->nr_ifaces++;
        }
        return 0;
}

int api_parse_balloon(const cJSON *j, struct vmm_balloon *out, struct error *err)
{
        uint64_t v = 0;

        (void)err;
        memset(out, 0, sizeof(*out));
        json_get_uint(j, "amount_mib", &v);
        out->amount_mib = (uint32_t)v;
        json_get_bool(j, "deflate_on_oom", &out->deflate_on_oom);
        v = 0;
        json_get_uint(j, "stats_polling_interval_s", &v);
        out->stats_polling_interval_s = (uint32_t)v;
        json_get_bool(j, "free_page_hinting", &out->free_page_hinting);
        json_get_bool(j, "free_page_reporting", &out->free_page_reporting);
        out->access_platform = get_access_platform(j);
        out->present = true;
        return 0;
}

int api_parse_balloon_update(const cJSON *j, uint32_t *amount_mib, struct error *err)
{
        uint64_t v = 0;

        (void)err;
        json_get_uint(j, "amount_mib", &v);
        *amount_mib = (uint32_t)v;
        return 0;
}

int api_parse_balloon_stats_update(const cJSON *j, uint32_t *interval_s, struct error *err)
{
        uint64_t v = 0;

        (void)err;
        json_get_uint(j, "stats_polling_interval_s", &v);
        *interval_s = (uint32_t)v;
        return 0;
}

int api_parse_balloon_hinting_start(const cJSON *j, bool *ack_on_stop, struct error *err)
{
        (void)err;
        *ack_on_stop = true;
        if (j)
                json_get_bool(j, "acknowledge_on_stop", ack_on_stop);
        return 0;
}

int api_parse_logger(const cJSON *j, struct vmm_logger_config *out, struct error *err)
{
        const cJSON *level = json_field(j, "level");
        int r;

        memset(out, 0, sizeof(*out));
        if (json_field(j, "module"))
                return refuse(err, "log filtering by module (field `module`) is not implemented "
                                   "yet");
        r = json_get_string(j, "log_path", &out->log_path, err);
        /* The shape checked the name (check_level). */
        out->has_level =
            level && cJSON_IsString(level) && log_level_parse(level->valuestring, &out->level) == 0;
        out->has_show_level = json_get_bool(j, "show_level", &out->show_level);
        out->has_show_log_origin = json_get_bool(j, "show_log_origin", &out->show_log_origin);
        out->present = true;
        if (r)
                vmm_logger_config_free(out);
        return r;
}

int api_parse_metrics(const cJSON *j, struct vmm_metrics_config *out, struct error *err)
{
        const cJSON *props, *p;
        int n, r;

        memset(out, 0, sizeof(*out));
        r = json_get_string(j, "metrics_path", &out->metrics_path, err);
        json_get_bool(j, "emit_id", &out->emit_id);
        props = json_field(j, "properties");
        n = props ? cJSON_GetArraySize(props) : 0;
        if (!r && n) {
                out->properties = calloc((size_t)n, sizeof(*out->properties));
                if (!out->properties)
                        r = error_set(err, -ENOMEM, "out of memory");
        }
        /* The shape kept one value per key (the last), as Firecracker's BTreeMap does. */
        for (p = props ? props->child : NULL; !r && p; p = p->next) {
                struct vmm_metrics_property *kv = &out->properties[out->nr_properties];

                kv->key = strdup(p->string);
                kv->value = strdup(p->valuestring);
                out->nr_properties++;
                if (!kv->key || !kv->value)
                        r = error_set(err, -ENOMEM, "out of memory");
        }
        out->present = true;
        if (r)
                vmm_metrics_config_free(out);
        return r;
}

int api_parse_action(const cJSON *j, enum vmm_action *out, struct error *err)
{
        static const enum vmm_action actions[] = {VMM_FLUSH_METRICS, VMM_INSTANCE_START,
                                                  VMM_SEND_CTRL_ALT_DEL};
        int v = 1;

        (void)err;
        json_get_enum(j, "action_type", action_values, &v);
        *out = actions[v];
        return 0;
}

int api_parse_vm_state(const cJSON *j, enum vmm_action *out, struct error *err)
{
        int v = 0;

        (void)err;
        json_get_enum(j, "state", vm_state_values, &v);
        *out = v == 0 ? VMM_PAUSE : VMM_RESUME;
        return 0;
}

/* ---- command bodies (the PARSE column of vmm/controller_actions.def) ---- */

typedef int (*parse_fn)(const cJSON *j, struct controller_request *req, const char **body_id,
                        struct error *err);

/* machine-config's cpu_template: a static template's content is read here, from the
 * built-in data, so the controller gets it whole ("None": no data, the template dropped). */
static int machine_template(struct controller_request *req, struct error *err)
{
        const char *name = req->u.machine.update.cpu_template;
        int r;

        if (!req->u.machine.update.has_cpu_template || strcmp(name, "None") == 0)
                return 0;
        snprintf(req->u.machine.cpu_template, sizeof(req->u.machine.cpu_template), "%s", name);
        r = api_static_cpu_template(name, &req->u.machine.cpu_template_data, err);
        return r == -ENOENT ? error_config(err, "Invalid static CPU template: %s", name) : r;
}

static int parse_put_machine(const cJSON *j, struct controller_request *req, const char **body_id,
                             struct error *err)
{
        bool tmpl = false;
        int r = api_parse_machine(j, true, &req->u.machine.update, &req->u.machine.cpu_hide, &tmpl,
                                  err);

        (void)body_id;
        if (tmpl)
                req->deprecation = "PUT /machine-config: cpu_template field is deprecated.";
        return r ? r : machine_template(req, err);
}

static int parse_patch_machine(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        bool tmpl = false;
        int r = api_parse_machine(j, false, &req->u.machine.update, &req->u.machine.cpu_hide, &tmpl,
                                  err);

        (void)body_id;
        if (tmpl)
                req->deprecation = "PATCH /machine-config: cpu_template field is deprecated.";
        return r ? r : machine_template(req, err);
}

static int parse_vm(const cJSON *j, struct controller_request *req, const char **body_id,
                    struct error *err)
{
        (void)body_id;
        return api_parse_vm_state(j, &req->action, err);
}

static int parse_actions(const cJSON *j, struct controller_request *req, const char **body_id,
                         struct error *err)
{
        (void)body_id;
        return api_parse_action(j, &req->action, err);
}

static int parse_boot(const cJSON *j, struct controller_request *req, const char **body_id,
                      struct error *err)
{
        (void)body_id;
        return api_parse_boot_source(j, &req->u.boot, err);
}

static int parse_put_drive(const cJSON *j, struct controller_request *req, const char **body_id,
                           struct error *err)
{
        int r = api_parse_drive(j, &req->u.drive, err);

        *body_id = req->u.drive.drive_id;
        return r;
}

static int parse_patch_drive(const cJSON *j, struct controller_request *req, const char **body_id,
                             struct error *err)
{
        int r = api_parse_drive_update(j, &req->u.drive_update, err);

        *body_id = req->u.drive_update.drive_id;
        return r;
}

static int parse_put_pmem(const cJSON *j, struct controller_request *req, const char **body_id,
                          struct error *err)
{
        int r = api_parse_pmem(j, &req->u.pmem, err);

        *body_id = req->u.pmem.id;
        return r;
}

static int parse_patch_pmem(const cJSON *j, struct controller_request *req, const char **body_id,
                            struct error *err)
{
        struct vmm_pmem_update *u = &req->u.pmem_update;
        int r;

        memset(u, 0, sizeof(*u));
        r = json_get_string(j, "id", &u->id, err);
        get_rate_limiter(j, "rate_limiter", &u->has_rate_limiter, &u->rate_limiter);
        *body_id = u->id;
        return r;
}

static int parse_put_memory_hotplug(const cJSON *j, struct controller_request *req,
                                    const char **body_id, struct error *err)
{
        struct vmm_memory_hotplug *h = &req->u.hotplug;

        (void)body_id;
        (void)err;
        memset(h, 0, sizeof(*h));
        h->slot_size_mib = 128; /* Firecracker's defaults */
        h->block_size_mib = 2;
        json_get_uint(j, "total_size_mib", &h->total_size_mib);
        json_get_uint(j, "slot_size_mib", &h->slot_size_mib);
        json_get_uint(j, "block_size_mib", &h->block_size_mib);
        return 0;
}

static int parse_patch_memory_hotplug(const cJSON *j, struct controller_request *req,
                                      const char **body_id, struct error *err)
{
        (void)body_id;
        (void)err;
        req->u.hotplug_requested_mib = 0;
        json_get_uint(j, "requested_size_mib", &req->u.hotplug_requested_mib);
        return 0;
}

static int parse_put_net(const cJSON *j, struct controller_request *req, const char **body_id,
                         struct error *err)
{
        int r = api_parse_net(j, &req->u.net, err);

        *body_id = req->u.net.iface_id;
        return r;
}

static int parse_patch_net(const cJSON *j, struct controller_request *req, const char **body_id,
                           struct error *err)
{
        int r = api_parse_net_update(j, &req->u.net_update, err);

        *body_id = req->u.net_update.iface_id;
        return r;
}

static int parse_vsock(const cJSON *j, struct controller_request *req, const char **body_id,
                       struct error *err)
{
        int r = api_parse_vsock(j, &req->u.vsock, err);

        (void)body_id;
        if (!r && req->u.vsock.vsock_id)
                req->deprecation = "PUT /vsock: vsock_id field is deprecated.";
        return r;
}

static int parse_entropy(const cJSON *j, struct controller_request *req, const char **body_id,
                         struct error *err)
{
        (void)body_id;
        return api_parse_entropy(j, &req->u.entropy, err);
}

static int parse_confidential(const cJSON *j, struct controller_request *req, const char **body_id,
                              struct error *err)
{
        (void)body_id;
        return api_parse_confidential(j, &req->u.confidential, err);
}

/* PUT /cpu-config: Firecracker's custom CPU template (api/cpu_template_json.h). */
#define shape_cpu_config api_cpu_template_shape
static int parse_cpu_config(const cJSON *j, struct controller_request *req, const char **body_id,
                            struct error *err)
{
        (void)body_id;
        req->u.cpu_config = malloc(sizeof(*req->u.cpu_config));
        if (!req->u.cpu_config)
                return error_set(err, -ENOMEM, "out of memory");
        return api_parse_cpu_template(j, req->u.cpu_config, err);
}

static int parse_memory_dump(const cJSON *j, struct controller_request *req, const char **body_id,
                             struct error *err)
{
        (void)body_id;
        return api_parse_memory_dump(j, &req->u.memory_dump_path, err);
}

static int parse_serial(const cJSON *j, struct controller_request *req, const char **body_id,
                        struct error *err)
{
        (void)body_id;
        return api_parse_serial(j, &req->u.serial, err);
}

static int parse_mmds_config(const cJSON *j, struct controller_request *req, const char **body_id,
                             struct error *err)
{
        (void)body_id;
        return api_parse_mmds_config(j, &req->u.mmds_config, err);
}

/* A body read elsewhere or not at all: the MMDS store takes any JSON value (Firecracker's
 * serde Value), which the router hands over as its text (api_route) so the store keeps it
 * exactly; the hinting stop ignores its body. */
static int parse_unread(const cJSON *j, struct controller_request *req, const char **body_id,
                        struct error *err)
{
        (void)j;
        (void)req;
        (void)body_id;
        (void)err;
        return 0;
}

static int parse_put_balloon(const cJSON *j, struct controller_request *req, const char **body_id,
                             struct error *err)
{
        (void)body_id;
        return api_parse_balloon(j, &req->u.balloon, err);
}

static int parse_patch_balloon(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        (void)body_id;
        return api_parse_balloon_update(j, &req->u.balloon_amount_mib, err);
}

static int parse_patch_balloon_stats(const cJSON *j, struct controller_request *req,
                                     const char **body_id, struct error *err)
{
        (void)body_id;
        return api_parse_balloon_stats_update(j, &req->u.balloon_stats_interval_s, err);
}

static int parse_snapshot_create(const cJSON *j, struct controller_request *req,
                                 const char **body_id, struct error *err)
{
        (void)body_id;
        return api_parse_snapshot_create(j, &req->u.snapshot_create, err);
}

static int parse_snapshot_load(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        bool deprecated = false;
        int r = api_parse_snapshot_load(j, &req->u.snapshot_load, &deprecated, err);

        (void)body_id;
        if (!r && deprecated)
                req->deprecation = "PUT /snapshot/load: mem_file_path and enable_diff_snapshots "
                                   "fields are deprecated.";
        return r;
}

static int parse_logger(const cJSON *j, struct controller_request *req, const char **body_id,
                        struct error *err)
{
        (void)body_id;
        return api_parse_logger(j, &req->u.logger, err);
}

static int parse_metrics(const cJSON *j, struct controller_request *req, const char **body_id,
                         struct error *err)
{
        (void)body_id;
        return api_parse_metrics(j, &req->u.metrics, err);
}

static int parse_hinting_start(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        (void)body_id;
        return api_parse_balloon_hinting_start(j, &req->u.balloon_ack_on_stop, err);
}

/* PATCH /balloon/hinting/stop: Firecracker never reads its body. */
static const struct json_shape shape_hinting_stop = {.kind = JSON_IGNORED};

static int parse_hinting_stop(const cJSON *j, struct controller_request *req, const char **body_id,
                              struct error *err)
{
        (void)j;
        (void)req;
        (void)body_id;
        (void)err;
        return 0;
}

#define parse_none NULL
#define shape_none (*(const struct json_shape *)NULL)
#define X(NAME, PHASE, CONFIGURES, HANDLER, CLEAR, EVENT, METHOD, PATH, PARSE, METRIC)             \
        [VMM_##NAME] = {parse_##PARSE, &shape_##PARSE},

static const struct {
        parse_fn parse;
        const struct json_shape *shape;
} command_bodies[VMM_ACTION_COUNT] = {
#include "vmm/controller_actions.def"
};

#undef X
#undef shape_none
#undef parse_none

bool api_command_has_body(int action)
{
        return action >= 0 && action < VMM_ACTION_COUNT && command_bodies[action].parse;
}

bool api_command_body_optional(int action)
{
        return api_command_has_body(action) &&
               (command_bodies[action].parse == parse_hinting_start ||
                command_bodies[action].parse == parse_hinting_stop);
}

bool api_command_body_ignored(int action)
{
        return api_command_has_body(action) && command_bodies[action].parse == parse_hinting_stop;
}

int api_parse_command(const cJSON *j, struct controller_request *req, const char **body_id,
                      struct error *err)
{
        *body_id = NULL;
        if (!api_command_has_body(req->action))
                return error_set(err, -ENOSYS, "internal: command %d has no body",
                                 (int)req->action);
        return command_bodies[req->action].parse(j, req, body_id, err);
}

int api_parse_command_text(const char *text, size_t len, struct controller_request *req,
                           const char **body_id, struct error *err)
{
        cJSON *j;
        int r;

        *body_id = NULL;
        if (!api_command_has_body(req->action))
                return error_set(err, -ENOSYS, "internal: command %d has no body",
                                 (int)req->action);
        r = json_serde_parse(text, len, command_bodies[req->action].shape, &j, err);
        if (r)
                return r;
        r = api_parse_command(j, req, body_id, err);
        cJSON_Delete(j);
        return r;
}

/* ---- structures -> JSON (Firecracker's serialisation: every Option field, null or not) ---- */

static void add_string_or_null(cJSON *o, const char *name, const char *v)
{
        if (v)
                cJSON_AddStringToObject(o, name, v);
        else
                cJSON_AddNullToObject(o, name);
}

/* Firecracker's TokenBucket::new: a bucket of size 0 or refill time 0 (or one whose refill
 * time in ns does not fit 64 bits) limits nothing and is not there. */
static bool bucket_active(const struct token_bucket_config *b)
{
        return b->size && b->refill_time_ms && b->refill_time_ms <= UINT64_MAX / 1000000;
}

static cJSON *bucket_json(const struct token_bucket_config *b)
{
        cJSON *o;

        if (!bucket_active(b))
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        json_add_uint(o, "size", b->size);
        if (b->one_time_burst)
                json_add_uint(o, "one_time_burst", b->one_time_burst);
        else
                cJSON_AddNullToObject(o, "one_time_burst");
        json_add_uint(o, "refill_time", b->refill_time_ms);
        return o;
}

/* RateLimiterConfig::into_option: null unless a bucket limits something. */
static void add_rate_limiter(cJSON *o, const char *name, const struct vmm_rate_limiter *rl)
{
        cJSON *l;

        if (!rl->present || (!bucket_active(&rl->cfg.bandwidth) && !bucket_active(&rl->cfg.ops))) {
                cJSON_AddNullToObject(o, name);
                return;
        }
        l = cJSON_AddObjectToObject(o, name);
        if (!l)
                return;
        cJSON_AddItemToObject(l, "bandwidth", bucket_json(&rl->cfg.bandwidth));
        cJSON_AddItemToObject(l, "ops", bucket_json(&rl->cfg.ops));
}

/* Firecracker's MachineConfig; its cpu_template (a static template's name, else left out)
 * after smt. */
static cJSON *machine_json(const struct vmm_machine_config *m, const char *static_template)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "vcpu_count", m->vcpu_count);
        json_add_uint(o, "mem_size_mib", m->mem_size_mib);
        cJSON_AddBoolToObject(o, "smt", m->smt);
        if (static_template && static_template[0])
                cJSON_AddStringToObject(o, "cpu_template", static_template);
        cJSON_AddBoolToObject(o, "track_dirty_pages", m->track_dirty_pages);
        cJSON_AddStringToObject(o, "huge_pages", m->huge_pages ? "2M" : "None");
        if (m->cpu_hide && *m->cpu_hide)
                cJSON_AddStringToObject(o, "cpu_hide", m->cpu_hide);
        if (m->pit) /* our extension, shown only when on (Firecracker's answer otherwise) */
                cJSON_AddBoolToObject(o, "pit", true);
        return o;
}

cJSON *api_json_machine(const struct vmm_machine_config *m)
{
        return machine_json(m, NULL);
}

cJSON *api_json_machine_config(const struct vmm_config *cfg)
{
        /* A custom template shows in GET /vm/config's "cpu-config", not here. */
        return machine_json(&cfg->machine, cfg->cpu.static_template);
}

cJSON *api_json_balloon(const struct vmm_balloon *b)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "amount_mib", b->amount_mib);
        cJSON_AddBoolToObject(o, "deflate_on_oom", b->deflate_on_oom);
        json_add_uint(o, "stats_polling_interval_s", b->stats_polling_interval_s);
        cJSON_AddBoolToObject(o, "free_page_hinting", b->free_page_hinting);
        cJSON_AddBoolToObject(o, "free_page_reporting", b->free_page_reporting);
        add_access_platform(o, b->access_platform);
        return o;
}

cJSON *api_json_balloon_hinting(const struct virtio_balloon_hinting *h)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "host_cmd", h->host_cmd);
        /* Firecracker's HintingStatus: an Option, null until the guest sent a command. */
        if (h->has_guest_cmd)
                json_add_uint(o, "guest_cmd", h->guest_cmd);
        else
                cJSON_AddNullToObject(o, "guest_cmd");
        return o;
}

cJSON *api_json_balloon_stats(const struct virtio_balloon_stats *s)
{
        /* virtio-balloon statistics tags 0..15 (virtio 1.2, 5.5.6.3), Firecracker's names. */
        static const char *const tags[16] = {
            "swap_in",          "swap_out",    "major_faults",
            "minor_faults",     "free_memory", "total_memory",
            "available_memory", "disk_caches", "hugetlb_allocations",
            "hugetlb_failures", "oom_kill",    "alloc_stall",
            "async_scan",       "direct_scan", "async_reclaim",
            "direct_reclaim",
        };
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "target_pages", s->target_pages);
        json_add_uint(o, "actual_pages", s->actual_pages);
        /* 4 KiB pages: 256 to the MiB. */
        json_add_uint(o, "target_mib", s->target_pages >> 8);
        json_add_uint(o, "actual_mib", s->actual_pages >> 8);
        for (unsigned t = 0; t < 16; t++)
                if (s->guest.valid & (1u << t))
                        json_add_uint(o, tags[t], s->guest.values[t]);
        return o;
}

/* Firecracker's BootSourceConfig, its Default when nothing was configured (an empty kernel
 * path: the config file reads that back as no boot source). */
static cJSON *boot_json(const struct vmm_boot_source *b)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "kernel_image_path",
                                b->kernel_image_path ? b->kernel_image_path : "");
        add_string_or_null(o, "initrd_path", b->initrd_path);
        add_string_or_null(o, "boot_args", b->boot_args);
        return o;
}

static cJSON *drive_json(const struct vmm_drive *d)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "drive_id", d->drive_id);
        add_string_or_null(o, "partuuid", d->partuuid);
        cJSON_AddBoolToObject(o, "is_root_device", d->is_root_device);
        cJSON_AddStringToObject(o, "cache_type",
                                d->cache_type == VMM_CACHE_WRITEBACK ? "Writeback" : "Unsafe");
        cJSON_AddBoolToObject(o, "is_read_only", d->is_read_only);
        add_string_or_null(o, "path_on_host", d->path_on_host);
        add_rate_limiter(o, "rate_limiter", &d->rate_limiter);
        cJSON_AddStringToObject(o, "io_engine", d->io_engine == VMM_IO_ASYNC ? "Async" : "Sync");
        cJSON_AddNullToObject(o, "socket"); /* vhost-user: not implemented */
        add_access_platform(o, d->access_platform);
        return o;
}

static cJSON *pmem_json(const struct vmm_pmem *p)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "id", p->id ? p->id : "");
        cJSON_AddStringToObject(o, "path_on_host", p->path_on_host ? p->path_on_host : "");
        cJSON_AddBoolToObject(o, "root_device", p->root_device);
        cJSON_AddBoolToObject(o, "read_only", p->read_only);
        add_rate_limiter(o, "rate_limiter", &p->rate_limiter);
        return o;
}

cJSON *api_json_memory_hotplug(const struct vmm_memory_hotplug *h, uint64_t plugged_mib)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "total_size_mib", h->total_size_mib);
        json_add_uint(o, "slot_size_mib", h->slot_size_mib);
        json_add_uint(o, "block_size_mib", h->block_size_mib);
        if (plugged_mib != UINT64_MAX) {
                json_add_uint(o, "plugged_size_mib", plugged_mib);
                json_add_uint(o, "requested_size_mib", h->requested_size_mib);
        }
        return o;
}

static cJSON *net_json(const struct vmm_net *n)
{
        cJSON *o = cJSON_CreateObject();
        char mac[18];

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "iface_id", n->iface_id);
        cJSON_AddStringToObject(o, "host_dev_name", n->host_dev_name ? n->host_dev_name : "");
        if (n->has_mac) {
                snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
                         n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
                         n->guest_mac[5]);
                cJSON_AddStringToObject(o, "guest_mac", mac);
        } else {
                cJSON_AddNullToObject(o, "guest_mac");
        }
        if (n->mtu)
                json_add_uint(o, "mtu", n->mtu);
        else
                cJSON_AddNullToObject(o, "mtu");
        add_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter);
        add_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter);
        add_access_platform(o, n->access_platform);
        return o;
}

static cJSON *vsock_json(const struct vmm_vsock *v)
{
        cJSON *o;

        if (!v->present)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        /* Firecracker never reports the deprecated vsock_id. */
        json_add_uint(o, "guest_cid", v->guest_cid);
        cJSON_AddStringToObject(o, "uds_path", v->uds_path ? v->uds_path : "");
        add_access_platform(o, v->access_platform);
        return o;
}

static cJSON *entropy_json(const struct vmm_entropy *e)
{
        cJSON *o;

        if (!e->present)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        add_rate_limiter(o, "rate_limiter", &e->rate_limiter);
        add_access_platform(o, e->access_platform);
        return o;
}

/* Firecracker's MmdsConfig as GET /vm/config shows it: null unless an interface answers. */
static cJSON *mmds_config_json(const struct vmm_config *cfg)
{
        cJSON *o, *a;
        char addr[16];

        if (!vmm_config_mmds_active(cfg))
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "version", cfg->mmds.version == MMDS_V2 ? "V2" : "V1");
        a = cJSON_AddArrayToObject(o, "network_interfaces");
        for (unsigned i = 0; a && i < cfg->nr_nets; i++)
                if (cfg->nets[i].mmds)
                        cJSON_AddItemToArray(a, cJSON_CreateString(cfg->nets[i].iface_id));
        snprintf(addr, sizeof(addr), "%u.%u.%u.%u", cfg->mmds.ipv4 >> 24,
                 (cfg->mmds.ipv4 >> 16) & 0xff, (cfg->mmds.ipv4 >> 8) & 0xff,
                 cfg->mmds.ipv4 & 0xff);
        cJSON_AddStringToObject(o, "ipv4_address", addr);
        cJSON_AddBoolToObject(o, "imds_compat", cfg->mmds.imds_compat);
        return o;
}

/*
 * Firecracker's VmmConfig as GET /vm/config serialises it, key for key and in its order.
 * logger and metrics are always null there (the process's outputs are not part of the
 * machine); cpu-config is null there too, ours shows a custom template. pmem is always a
 * list, memory-hotplug null until configured. The serial output is not reported (Firecracker
 * skips it). Ours: "confidential", on a protected VM only.
 */
cJSON *api_json_vm_config(const struct vmm_config *cfg)
{
        cJSON *o = cJSON_CreateObject(), *a, *x;

        if (!o)
                return NULL;
        cJSON_AddItemToObject(o, "balloon",
                              cfg->balloon.present ? api_json_balloon(&cfg->balloon)
                                                   : cJSON_CreateNull());
        a = cJSON_AddArrayToObject(o, "drives");
        for (unsigned i = 0; a && i < cfg->nr_drives; i++)
                cJSON_AddItemToArray(a, drive_json(&cfg->drives[i]));
        cJSON_AddItemToObject(o, "boot-source", boot_json(&cfg->boot));
        /* Ours beside Firecracker's null: a custom template (PUT /cpu-config, the file's
         * cpu-config) is reported; a static one is machine-config's cpu_template. */
        if (cfg->cpu.tmpl && !cfg->cpu.static_template[0])
                cJSON_AddItemToObject(o, "cpu-config", api_json_cpu_template(cfg->cpu.tmpl));
        else
                cJSON_AddNullToObject(o, "cpu-config");
        cJSON_AddNullToObject(o, "logger");
        cJSON_AddItemToObject(o, "machine-config", api_json_machine_config(cfg));
        cJSON_AddNullToObject(o, "metrics");
        cJSON_AddItemToObject(o, "mmds-config", mmds_config_json(cfg));
        a = cJSON_AddArrayToObject(o, "network-interfaces");
        for (unsigned i = 0; a && i < cfg->nr_nets; i++)
                cJSON_AddItemToArray(a, net_json(&cfg->nets[i]));
        cJSON_AddItemToObject(o, "vsock", vsock_json(&cfg->vsock));
        cJSON_AddItemToObject(o, "entropy", entropy_json(&cfg->entropy));
        /* Firecracker's: always, after entropy. */
        a = cJSON_AddArrayToObject(o, "pmem");
        for (unsigned i = 0; a && i < cfg->nr_pmems; i++)
                cJSON_AddItemToArray(a, pmem_json(&cfg->pmems[i]));
        cJSON_AddItemToObject(o, "memory-hotplug",
                              cfg->hotplug.present
                                  ? api_json_memory_hotplug(&cfg->hotplug, UINT64_MAX)
                                  : cJSON_CreateNull());
        if (cfg->confidential.platform != CC_PLATFORM_NONE) {
                x = cJSON_AddObjectToObject(o, "confidential");
                if (x)
                        cJSON_AddStringToObject(x, "platform",
                                                cc_platform_name(cfg->confidential.platform));
        }
        return o;
}

/* ---- the config file ---- */

static const struct json_shape t_drives = {.kind = JSON_SEQ, .item = &shape_put_drive};
static const struct json_shape t_nets = {.kind = JSON_SEQ, .item = &shape_put_net};
static const struct json_shape t_pmems = {.kind = JSON_SEQ, .item = &shape_put_pmem};

/* GET /vm/config's keys, each section the body of its command; ours: "serial" (PUT
 * /serial's body, which Firecracker's file ignores) and "confidential". */
static const struct json_field vmm_config_fields[] = {
    FIELD("balloon", shape_put_balloon, OPT),
    FIELD("drives", t_drives, OPT),
    FIELD("boot-source", shape_boot, OPT),
    FIELD("cpu-config", t_value, OPT), /* a path; ours: the template (apply_cpu_config) */
    FIELD("logger", shape_logger, OPT),
    FIELD("machine-config", shape_put_machine, OPT),
    FIELD("metrics", shape_metrics, OPT),
    FIELD("mmds-config", shape_mmds_config, OPT),
    FIELD("network-interfaces", t_nets, OPT),
    FIELD("vsock", shape_vsock, OPT),
    FIELD("entropy", shape_entropy, OPT),
    FIELD("pmem", t_pmems, OPT),
    FIELD("memory-hotplug", shape_put_memory_hotplug, OPT),
    FIELD("serial", shape_serial, OPT),
    FIELD("confidential", shape_confidential, OPT),
    END_OF_FIELDS,
};
static const struct json_shape shape_vmm_config = STRUCT("VmmConfig", vmm_config_fields);

/* Names the section an error came from; returns r. */
static int fail_in(struct error *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_in(struct error *err, int r, const char *fmt, ...)
{
        char where[64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(where, sizeof(where), fmt, ap);
        va_end(ap);
        error_prefix(err, "%s", where);
        return r;
}

/* The config file's sections, in the order they are applied: each is the body of one API
 * command (a list: one command per element), applied as the API applies it before the start. */
static const struct {
        const char *key;
        enum vmm_action action;
        bool list;
} sections[] = {
    {"boot-source", VMM_PUT_BOOT_SOURCE, false},
    {"machine-config", VMM_PUT_MACHINE_CONFIG, false},
    {"cpu-config", VMM_PUT_CPU_CONFIG, false},
    {"drives", VMM_PUT_DRIVE, true},
    {"network-interfaces", VMM_PUT_NET, true},
    {"mmds-config", VMM_PUT_MMDS_CONFIG, false},
    {"pmem", VMM_PUT_PMEM, true},
    {"memory-hotplug", VMM_PUT_MEMORY_HOTPLUG, false},
    {"vsock", VMM_PUT_VSOCK, false},
    {"balloon", VMM_PUT_BALLOON, false},
    {"confidential", VMM_PUT_CONFIDENTIAL, false},
    {"entropy", VMM_PUT_ENTROPY, false},
    {"logger", VMM_PUT_LOGGER, false},
    {"metrics", VMM_PUT_METRICS, false},
    {"serial", VMM_PUT_SERIAL, false},
};

/* One command's body: parsed by the API's parser, then controller_edit, the path every
 * configuration command of the API takes (files checked, the whole configuration validated
 * against this host), so a mistake is refused here with the API's message. */
static int apply_command(const cJSON *body, enum vmm_action action, struct vmm_config *cfg,
                         const struct vmm_host_limits *limits, struct error *err)
{
        struct controller_request req;
        const char *body_id;
        int r;

        controller_request_init(&req, action);
        r = api_parse_command(body, &req, &body_id, err);
        if (!r)
                r = controller_edit(cfg, limits, &req, err);
        controller_request_clear(&req);
        return r;
}

/* GET /vm/config writes Firecracker's default boot source (an empty kernel path) when none
 * was configured: read back, that is no boot source. */
static bool empty_boot_source(const cJSON *f)
{
        const cJSON *k = json_field(f, "kernel_image_path");

        return k && cJSON_IsString(k) && !k->valuestring[0] && !json_field(f, "initrd_path") &&
               !json_field(f, "boot_args");
}

/* The config file's "cpu-config" as Firecracker has it: the path of a file holding the
 * custom template; ours, an object in its place is the template itself. Either is read by
 * the body reader with PUT /cpu-config's shape (the object as its text again). */
static int apply_cpu_config(const cJSON *f, struct vmm_config *cfg,
                            const struct vmm_host_limits *limits, struct error *err)
{
        struct controller_request req;
        char *text = NULL;
        int r;

        if (!cJSON_IsString(f) && !cJSON_IsObject(f))
                return error_config(err,
                                    "invalid type: %s, expected a path string or a CPU "
                                    "template object",
                                    json_type_name(f));
        controller_request_init(&req, VMM_PUT_CPU_CONFIG);
        req.u.cpu_config = malloc(sizeof(*req.u.cpu_config));
        if (!req.u.cpu_config)
                r = error_set(err, -ENOMEM, "out of memory");
        else if (cJSON_IsString(f))
                r = api_load_cpu_template(f->valuestring, req.u.cpu_config, err);
        else if (!(text = cJSON_PrintUnformatted(f)))
                r = error_set(err, -ENOMEM, "out of memory");
        else
                r = api_parse_cpu_template_text(text, strlen(text), req.u.cpu_config, err);
        free(text);
        if (!r)
                r = controller_edit(cfg, limits, &req, err);
        controller_request_clear(&req);
        return r;
}

static int parse_sections(const cJSON *root, struct vmm_config *cfg, struct error *err)
{
        struct vmm_host_limits limits;
        const cJSON *f, *item;
        int r;

        vmm_host_limits_get(&limits, 0);
        for (size_t s = 0; s < ARRAY_SIZE(sections); s++) {
                unsigned i = 0;

                if (!(f = json_field(root, sections[s].key)))
                        continue;
                if (sections[s].action == VMM_PUT_BOOT_SOURCE && empty_boot_source(f))
                        continue;
                if (sections[s].action == VMM_PUT_CPU_CONFIG && cJSON_IsNull(f))
                        continue;
                if (sections[s].action == VMM_PUT_CPU_CONFIG) {
                        r = apply_cpu_config(f, cfg, &limits, err);
                        if (r)
                                return fail_in(err, r, "%s", sections[s].key);
                        continue;
                }
                if (!sections[s].list) {
                        r = apply_command(f, sections[s].action, cfg, &limits, err);
                        if (r)
                                return fail_in(err, r, "%s", sections[s].key);
                        continue;
                }
                cJSON_ArrayForEach(item, f)
                {
                        r = apply_command(item, sections[s].action, cfg, &limits, err);
                        if (r)
                                return fail_in(err, r, "%s[%u]", sections[s].key, i);
                        i++;
                }
        }
        return 0;
}

int api_config_parse(const char *text, size_t len, struct vmm_config *cfg, struct error *err)
{
        char where[128];
        cJSON *root;
        int r;

        vmm_config_init(cfg);
        r = json_serde_parse_at(text, len, &shape_vmm_config, &root, where, sizeof(where), err);
        if (r) {
                if (where[0])
                        error_prefix(err, "%s", where);
                return r;
        }
        r = parse_sections(root, cfg, err);
        cJSON_Delete(root);
        return r;
}

int api_config_load_file(const char *path, struct vmm_config *cfg, struct error *err)
{
        char *text;
        size_t len;
        int r;

        vmm_config_init(cfg);
        r = file_read_all("config file", path, 16u << 20, &text, &len, err);
        if (r)
                return r;
        r = api_config_parse(text, len, cfg, err);
        free(text);
        if (r)
                error_prefix(err, "config file '%s'", path);
        return r;
}
