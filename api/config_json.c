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

#include "json_read.h"
#include "cpu_template_json.h"

#define FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- shared pieces ---- */

/* TokenBucket: size and refill_time required, one_time_burst optional. */
static int parse_bucket(const cJSON *j, struct token_bucket_config *b, struct error *err)
{
        int r = json_check_object(j, FIELDS("size", "one_time_burst", "refill_time"), err);

        memset(b, 0, sizeof(*b));
        if (!r)
                r = json_get_uint(j, "size", true, 0, UINT64_MAX, NULL, &b->size, err);
        if (!r)
                r = json_get_uint(j, "one_time_burst", false, 0, UINT64_MAX, NULL,
                                  &b->one_time_burst, err);
        if (!r)
                r = json_get_uint(j, "refill_time", true, 0, UINT64_MAX, NULL, &b->refill_time_ms,
                                  err);
        return r;
}

/* RateLimiter: optional "bandwidth" and "ops" buckets. */
static int parse_rate_limiter(const cJSON *j, struct vmm_rate_limiter_update *u, struct error *err)
{
        const cJSON *b = NULL, *o = NULL;
        int r = json_check_object(j, FIELDS("bandwidth", "ops"), err);

        memset(u, 0, sizeof(*u));
        if (!r)
                r = json_get_object(j, "bandwidth", false, &b, err);
        if (!r && b) {
                u->has_bandwidth = true;
                r = parse_bucket(b, &u->cfg.bandwidth, err);
                if (r)
                        error_prefix(err, "bandwidth");
        }
        if (!r)
                r = json_get_object(j, "ops", false, &o, err);
        if (!r && o) {
                u->has_ops = true;
                r = parse_bucket(o, &u->cfg.ops, err);
                if (r)
                        error_prefix(err, "ops");
        }
        return r;
}

/* An optional rate limiter field: *has tells whether it was given. */
static int get_rate_limiter(const cJSON *j, const char *name, bool *has,
                            struct vmm_rate_limiter_update *u, struct error *err)
{
        const cJSON *f = NULL;
        int r = json_get_object(j, name, false, &f, err);

        *has = false;
        if (r || !f)
                return r;
        *has = true;
        r = parse_rate_limiter(f, u, err);
        if (r)
                error_prefix(err, "%s", name);
        return r;
}

/* PUT semantics: a limiter that is given replaces everything (missing buckets unlimited). */
static int get_put_rate_limiter(const cJSON *j, const char *name, struct vmm_rate_limiter *out,
                                struct error *err)
{
        struct vmm_rate_limiter_update u;
        bool has;
        int r = get_rate_limiter(j, name, &has, &u, err);

        memset(out, 0, sizeof(*out));
        if (!r && has)
                vmm_rate_limiter_from_update(out, &u);
        return r;
}

static int get_u32(const cJSON *j, const char *name, bool required, uint32_t min, bool *present,
                   uint32_t *out, struct error *err)
{
        uint64_t v = 0;
        int r = json_get_uint(j, name, required, min, UINT32_MAX, present, &v, err);

        if (!r && (!present || *present))
                *out = (uint32_t)v;
        return r;
}

/* ---- request bodies ---- */

/* Our extension on every device object: "default", "required" or "off" (absent: default). */
static const char *const ap_values[] = {"default", "required", "off", NULL};

static int get_access_platform(const cJSON *j, enum vmm_access_platform *out, struct error *err)
{
        int v = 0;
        bool present;
        int r = json_get_enum(j, "access_platform", false, ap_values, false, &present, &v, err);

        *out = (enum vmm_access_platform)v;
        return r;
}

static void add_access_platform(cJSON *o, enum vmm_access_platform ap)
{
        if (ap != VMM_AP_DEFAULT)
                cJSON_AddStringToObject(o, "access_platform", vmm_access_platform_name(ap));
}

static const char *const platform_values[] = {"none", "sev", "pef", "s390-pv", NULL};

int api_parse_memory_dump(const cJSON *j, char **path, struct error *err)
{
        int r = json_check_object(j, FIELDS("mem_file_path"), err);

        *path = NULL;
        return r ? r : json_get_string(j, "mem_file_path", true, path, err);
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
        bool present;
        int r = json_check_object(j, FIELDS("platform"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_enum(j, "platform", true, platform_values, false, &present, &v, err);
        out->platform = (enum cc_platform)v;
        return r;
}

int api_parse_boot_source(const cJSON *j, struct vmm_boot_source *out, struct error *err)
{
        int r = json_check_object(j, FIELDS("kernel_image_path", "initrd_path", "boot_args"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "kernel_image_path", true, &out->kernel_image_path, err);
        if (!r)
                r = json_get_string(j, "initrd_path", false, &out->initrd_path, err);
        if (!r)
                r = json_get_string(j, "boot_args", false, &out->boot_args, err);
        return r;
}

static const char *const huge_page_values[] = {"None", "2M", "Transparent", NULL};
static const char *const cpu_template_values[] = {"None", "C3",  "T2",   "T2S",
                                                  "T2CL", "T2A", "V1N1", NULL};

int api_parse_machine(const cJSON *j, bool put, struct vmm_machine_update *u, char **cpu_hide,
                      struct error *err)
{
        uint64_t v;
        int huge = 0, tmpl = 0;
        int r = json_check_object(j,
                                  FIELDS("vcpu_count", "mem_size_mib", "smt", "track_dirty_pages",
                                         "huge_pages", "cpu_template", "cpu_hide", "pit"),
                                  err);

        memset(u, 0, sizeof(*u));
        if (!r)
                r = json_get_uint(j, "vcpu_count", put, 1, UINT32_MAX, &u->has_vcpu_count, &v, err);
        if (!r && u->has_vcpu_count)
                u->vcpu_count = (unsigned)v;
        if (!r)
                r = json_get_uint(j, "mem_size_mib", put, 0, UINT64_MAX, &u->has_mem_size_mib,
                                  &u->mem_size_mib, err);
        if (!r)
                r = json_get_bool(j, "smt", false, &u->has_smt, &u->smt, err);
        if (!r)
                r = json_get_bool(j, "track_dirty_pages", false, &u->has_track_dirty_pages,
                                  &u->track_dirty_pages, err);
        if (!r)
                r = json_get_enum(j, "huge_pages", false, huge_page_values, false,
                                  &u->has_huge_pages, &huge, err);
        if (!r && huge == 2)
                r = error_config(err, "huge_pages \"Transparent\" is not implemented yet: use "
                                      "\"None\" or \"2M\"");
        u->huge_pages = huge == 1;
        if (!r)
                r = json_get_enum(j, "cpu_template", false, cpu_template_values, false,
                                  &u->has_cpu_template, &tmpl, err);
        /* V1N1 is aarch64's: Firecracker refuses it on x86_64 with this message. */
        if (!r && u->has_cpu_template && !x86_static_template_known(cpu_template_values[tmpl]) &&
            tmpl != 0)
                r = error_config(err, "Invalid static CPU template: %s", cpu_template_values[tmpl]);
        if (!r && u->has_cpu_template)
                u->cpu_template = cpu_template_values[tmpl];
        if (!r)
                r = json_get_bool(j, "pit", false, &u->has_pit, &u->pit, err);
        if (!r && json_field(j, "cpu_hide")) {
                r = json_get_string(j, "cpu_hide", false, cpu_hide, err);
                u->has_cpu_hide = true;
        }
        if (!r && put) {
                /* PUT: every optional field not given goes back to its default. */
                u->has_smt = u->has_track_dirty_pages = u->has_huge_pages = true;
                u->has_cpu_hide = u->has_pit = true;
        }
        return r;
}

static const char *const cache_values[] = {"Unsafe", "Writeback", NULL};
static const char *const engine_values[] = {"Sync", "Async", NULL};

int api_parse_drive(const cJSON *j, struct vmm_drive *out, struct error *err)
{
        int cache = 0, engine = 0;
        bool present;
        int r = json_check_object(j,
                                  FIELDS("drive_id", "partuuid", "is_root_device", "cache_type",
                                         "is_read_only", "path_on_host", "rate_limiter",
                                         "io_engine", "socket", "access_platform"),
                                  err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "drive_id", true, &out->drive_id, err);
        if (!r)
                r = json_get_string(j, "partuuid", false, &out->partuuid, err);
        if (!r)
                r = json_get_bool(j, "is_root_device", true, NULL, &out->is_root_device, err);
        if (!r)
                r = json_get_enum(j, "cache_type", false, cache_values, false, &present, &cache,
                                  err);
        out->cache_type = cache == 1 ? VMM_CACHE_WRITEBACK : VMM_CACHE_UNSAFE;
        if (!r && json_field(j, "socket"))
                r = error_config(err, "vhost-user block devices (field `socket`) are not "
                                      "implemented yet");
        if (!r)
                r = json_get_bool(j, "is_read_only", false, &present, &out->is_read_only, err);
        if (!r)
                r = json_get_string(j, "path_on_host", true, &out->path_on_host, err);
        if (!r)
                r = get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter, err);
        if (!r)
                r = json_get_enum(j, "io_engine", false, engine_values, false, &present, &engine,
                                  err);
        out->io_engine = engine == 1 ? VMM_IO_ASYNC : VMM_IO_SYNC;
        if (!r)
                r = get_access_platform(j, &out->access_platform, err);
        if (r)
                vmm_drive_free(out);
        return r;
}

int api_parse_pmem(const cJSON *j, struct vmm_pmem *out, struct error *err)
{
        int r = json_check_object(
            j, FIELDS("id", "path_on_host", "root_device", "read_only", "rate_limiter"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "id", true, &out->id, err);
        if (!r)
                r = json_get_string(j, "path_on_host", true, &out->path_on_host, err);
        if (!r)
                r = json_get_bool(j, "root_device", false, NULL, &out->root_device, err);
        if (!r)
                r = json_get_bool(j, "read_only", false, NULL, &out->read_only, err);
        if (!r)
                r = get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter, err);
        if (r)
                vmm_pmem_free(out);
        return r;
}

int api_parse_drive_update(const cJSON *j, struct vmm_drive_update *out, struct error *err)
{
        int r = json_check_object(j, FIELDS("drive_id", "path_on_host", "rate_limiter"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "drive_id", true, &out->drive_id, err);
        if (!r)
                r = json_get_string(j, "path_on_host", false, &out->path_on_host, err);
        if (!r)
                r = get_rate_limiter(j, "rate_limiter", &out->has_rate_limiter, &out->rate_limiter,
                                     err);
        if (r) {
                free(out->drive_id);
                free(out->path_on_host);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

int api_parse_net(const cJSON *j, struct vmm_net *out, struct error *err)
{
        char *mac = NULL;
        uint64_t mtu = 0;
        bool has_mtu = false;
        int r = json_check_object(j,
                                  FIELDS("iface_id", "host_dev_name", "guest_mac", "mtu",
                                         "rx_rate_limiter", "tx_rate_limiter", "access_platform"),
                                  err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "iface_id", true, &out->iface_id, err);
        if (!r)
                r = json_get_string(j, "host_dev_name", true, &out->host_dev_name, err);
        if (!r)
                r = json_get_string(j, "guest_mac", false, &mac, err);
        if (!r && mac) {
                if (vmm_parse_mac(mac, out->guest_mac))
                        r = error_config(err,
                                         "field `guest_mac`: invalid value: \"%s\", expected a "
                                         "MAC address of the form aa:bb:cc:dd:ee:ff",
                                         mac);
                out->has_mac = true;
        }
        if (!r)
                r = json_get_uint(j, "mtu", false, 68, 65535, &has_mtu, &mtu, err);
        out->mtu = (uint16_t)mtu;
        if (!r)
                r = get_put_rate_limiter(j, "rx_rate_limiter", &out->rx_rate_limiter, err);
        if (!r)
                r = get_put_rate_limiter(j, "tx_rate_limiter", &out->tx_rate_limiter, err);
        if (!r)
                r = get_access_platform(j, &out->access_platform, err);
        free(mac);
        if (r)
                vmm_net_free(out);
        return r;
}

int api_parse_net_update(const cJSON *j, struct vmm_net_update *out, struct error *err)
{
        int r = json_check_object(j, FIELDS("iface_id", "rx_rate_limiter", "tx_rate_limiter"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "iface_id", true, &out->iface_id, err);
        if (!r)
                r = get_rate_limiter(j, "rx_rate_limiter", &out->has_rx, &out->rx, err);
        if (!r)
                r = get_rate_limiter(j, "tx_rate_limiter", &out->has_tx, &out->tx, err);
        if (r) {
                free(out->iface_id);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

int api_parse_vsock(const cJSON *j, struct vmm_vsock *out, struct error *err)
{
        int r = json_check_object(j, FIELDS("guest_cid", "uds_path", "vsock_id", "access_platform"),
                                  err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = get_u32(j, "guest_cid", true, 3, NULL, &out->guest_cid, err);
        if (!r)
                r = json_get_string(j, "uds_path", true, &out->uds_path, err);
        if (!r)
                r = json_get_string(j, "vsock_id", false, &out->vsock_id, err);
        if (!r)
                r = get_access_platform(j, &out->access_platform, err);
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
        static const char *const types[] = {"Full", "Diff", NULL};
        int type = 0;
        int r =
            json_check_object(j, FIELDS("mem_file_path", "snapshot_path", "snapshot_type"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "mem_file_path", true, &out->mem_file_path, err);
        if (!r)
                r = json_get_string(j, "snapshot_path", true, &out->snapshot_path, err);
        if (!r)
                r = json_get_enum(j, "snapshot_type", false, types, false, NULL, &type, err);
        out->diff = type == 1;
        if (r) {
                free(out->mem_file_path);
                free(out->snapshot_path);
                memset(out, 0, sizeof(*out));
        }
        return r;
}

static int get_mem_backend(const cJSON *j, struct vmm_snapshot_load *out, struct error *err)
{
        static const char *const kinds[] = {"File", "Uffd", NULL};
        const cJSON *b = NULL;
        int kind = 0, r;

        r = json_get_object(j, "mem_backend", false, &b, err);
        if (r || !b)
                return r;
        r = json_check_object(b, FIELDS("backend_type", "backend_path"), err);
        if (!r)
                r = json_get_enum(b, "backend_type", true, kinds, false, NULL, &kind, err);
        if (!r)
                r = json_get_string(b, "backend_path", true, &out->mem_file_path, err);
        out->mem_uffd = kind == 1;
        if (r)
                error_prefix(err, "mem_backend");
        return r;
}

/* network_overrides, drive_overrides: sequences of {id_key, value_key} objects (item names
 * the object for messages, as serde's struct names). */
static int get_overrides(const cJSON *j, const char *field, const char *item_name,
                         const char *id_key, const char *value_key, unsigned max,
                         struct vmm_override *out, unsigned *count, struct error *err)
{
        const cJSON *a = json_field(j, field), *item;
        unsigned i = 0;
        int r = 0;

        if (!a)
                return 0;
        if (!cJSON_IsArray(a))
                return error_config(err, "field `%s`: invalid type: %s, expected a sequence", field,
                                    json_type_name(a));
        cJSON_ArrayForEach(item, a)
        {
                if (i == max)
                        return error_config(err, "field `%s`: more than %u entries", field, max);
                if (!cJSON_IsObject(item))
                        r = error_config(err, "invalid type: %s, expected struct %s",
                                         json_type_name(item), item_name);
                if (!r)
                        r = json_check_object(item, (const char *const[]){id_key, value_key, NULL},
                                              err);
                if (!r)
                        r = json_get_string(item, id_key, true, &out[i].id, err);
                if (!r)
                        r = json_get_string(item, value_key, true, &out[i].value, err);
                *count = ++i;
                if (r) {
                        error_prefix(err, "%s[%u]", field, i - 1);
                        return r;
                }
        }
        return 0;
}

int api_parse_snapshot_load(const cJSON *j, struct vmm_snapshot_load *out, struct error *err)
{
        static const char *const huge[] = {"Snapshot", "None", "Transparent", "2M", NULL};
        const cJSON *vsock = NULL;
        bool diff = false, track = false, has_mem = false;
        int hp = 0;
        int r = json_check_object(j,
                                  FIELDS("snapshot_path", "mem_file_path", "mem_backend",
                                         "enable_diff_snapshots", "track_dirty_pages", "resume_vm",
                                         "network_overrides", "drive_overrides", "vsock_override",
                                         "clock_realtime", "huge_pages"),
                                  err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "snapshot_path", true, &out->snapshot_path, err);
        if (!r)
                r = json_get_string(j, "mem_file_path", false, &out->mem_file_path, err);
        has_mem = out->mem_file_path != NULL;
        if (!r && has_mem && json_field(j, "mem_backend"))
                r = error_config(err, "too many fields: either `mem_backend` or "
                                      "`mem_file_path` exclusively.");
        if (!r)
                r = get_mem_backend(j, out, err);
        if (!r && !out->mem_file_path)
                r = error_config(err, "missing field: either `mem_backend` or `mem_file_path` "
                                      "is required.");
        if (!r)
                r = json_get_bool(j, "enable_diff_snapshots", false, NULL, &diff, err);
        if (!r)
                r = json_get_bool(j, "track_dirty_pages", false, NULL, &track, err);
        out->track_dirty_pages = diff || track;
        if (!r)
                r = json_get_bool(j, "resume_vm", false, NULL, &out->resume_vm, err);
        if (!r)
                r = json_get_bool(j, "clock_realtime", false, NULL, &out->clock_realtime, err);
        if (!r)
                r = get_overrides(j, "network_overrides", "NetworkOverride", "iface_id",
                                  "host_dev_name", VMM_MAX_NETS, out->net_overrides,
                                  &out->nr_net_overrides, err);
        if (!r)
                r = get_overrides(j, "drive_overrides", "DriveOverride", "drive_id", "path_on_host",
                                  VMM_MAX_DRIVES, out->drive_overrides, &out->nr_drive_overrides,
                                  err);
        if (!r)
                r = json_get_object(j, "vsock_override", false, &vsock, err);
        if (!r && vsock) {
                r = json_check_object(vsock, FIELDS("uds_path"), err);
                if (!r)
                        r = json_get_string(vsock, "uds_path", true, &out->vsock_uds_path, err);
                if (r)
                        error_prefix(err, "vsock_override");
        }
        if (!r)
                r = json_get_enum(j, "huge_pages", false, huge, false, NULL, &hp, err);
        /* "2M": anonymous hugetlbfs memory, which only a page-fault handler can fill;
         * "Transparent": not a machine setting this VMM has. */
        if (!r && (hp == 2 || (hp == 3 && !out->mem_uffd)))
                r = error_config(err,
                                 "field `huge_pages`: `%s` is not supported on a snapshot "
                                 "load %s",
                                 huge[hp],
                                 hp == 2 ? "(use `None`, `Snapshot` or, with the Uffd memory "
                                           "backend, `2M`)"
                                         : "from a memory file (a memory file backs the memory; "
                                           "use `None` or `Snapshot`, or the Uffd memory "
                                           "backend)");
        out->huge_pages_none = hp == 1;
        out->huge_pages_2m = hp == 3;
        if (r)
                vmm_snapshot_load_free(out);
        return r;
}

int api_parse_entropy(const cJSON *j, struct vmm_entropy *out, struct error *err)
{
        int r = json_check_object(j, FIELDS("rate_limiter", "access_platform"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = get_put_rate_limiter(j, "rate_limiter", &out->rate_limiter, err);
        if (!r)
                r = get_access_platform(j, &out->access_platform, err);
        out->present = true;
        return r;
}

int api_parse_serial(const cJSON *j, char **serial_out_path, struct error *err)
{
        int r = json_check_object(j, FIELDS("serial_out_path", "rate_limiter"), err);

        if (!r && json_field(j, "rate_limiter"))
                r = error_config(err, "serial output rate limiting (field `rate_limiter`) is not "
                                      "implemented yet");
        if (!r)
                r = json_get_string(j, "serial_out_path", false, serial_out_path, err);
        return r;
}

int api_parse_balloon(const cJSON *j, struct vmm_balloon *out, struct error *err)
{
        bool present;
        int r =
            json_check_object(j,
                              FIELDS("amount_mib", "deflate_on_oom", "stats_polling_interval_s",
                                     "free_page_hinting", "free_page_reporting", "access_platform"),
                              err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = get_u32(j, "amount_mib", true, 0, NULL, &out->amount_mib, err);
        if (!r)
                r = json_get_bool(j, "deflate_on_oom", true, NULL, &out->deflate_on_oom, err);
        if (!r)
                r = get_u32(j, "stats_polling_interval_s", false, 0, &present,
                            &out->stats_polling_interval_s, err);
        if (!r)
                r = json_get_bool(j, "free_page_hinting", false, &present, &out->free_page_hinting,
                                  err);
        if (!r)
                r = json_get_bool(j, "free_page_reporting", false, &present,
                                  &out->free_page_reporting, err);
        if (!r)
                r = get_access_platform(j, &out->access_platform, err);
        out->present = true;
        return r;
}

int api_parse_balloon_update(const cJSON *j, uint32_t *amount_mib, struct error *err)
{
        int r = json_check_object(j, FIELDS("amount_mib"), err);

        return r ? r : get_u32(j, "amount_mib", true, 0, NULL, amount_mib, err);
}

int api_parse_balloon_stats_update(const cJSON *j, uint32_t *interval_s, struct error *err)
{
        int r = json_check_object(j, FIELDS("stats_polling_interval_s"), err);

        return r ? r : get_u32(j, "stats_polling_interval_s", true, 0, NULL, interval_s, err);
}

/* Firecracker's BalloonStartCmd; acknowledge_on_stop defaults to true, as does the whole
 * body. */
int api_parse_balloon_hinting_start(const cJSON *j, bool *ack_on_stop, struct error *err)
{
        int r;

        *ack_on_stop = true;
        if (!j)
                return 0;
        r = json_check_object(j, FIELDS("acknowledge_on_stop"), err);
        return r ? r : json_get_bool(j, "acknowledge_on_stop", false, NULL, ack_on_stop, err);
}

static const char *const level_values[] = {"Off",   "Error", "Warning", "Info",
                                           "Debug", "Trace", NULL};

int api_parse_logger(const cJSON *j, struct vmm_logger_config *out, struct error *err)
{
        int level = 0;
        int r = json_check_object(
            j, FIELDS("log_path", "level", "show_level", "show_log_origin", "module"), err);

        memset(out, 0, sizeof(*out));
        if (!r && json_field(j, "module"))
                r = error_config(err, "log filtering by module (field `module`) is not "
                                      "implemented yet");
        if (!r)
                r = json_get_string(j, "log_path", false, &out->log_path, err);
        /* Firecracker: the level names are case-insensitive. */
        if (!r)
                r = json_get_enum(j, "level", false, level_values, true, &out->has_level, &level,
                                  err);
        if (!r && out->has_level && log_level_parse(level_values[level], &out->level))
                r = error_config(err, "field `level`: unknown level");
        if (!r)
                r = json_get_bool(j, "show_level", false, &out->has_show_level, &out->show_level,
                                  err);
        if (!r)
                r = json_get_bool(j, "show_log_origin", false, &out->has_show_log_origin,
                                  &out->show_log_origin, err);
        out->present = true;
        if (r)
                vmm_logger_config_free(out);
        return r;
}

int api_parse_metrics(const cJSON *j, struct vmm_metrics_config *out, struct error *err)
{
        const cJSON *props = NULL, *p;
        bool present;
        int n = 0;
        int r = json_check_object(j, FIELDS("metrics_path", "emit_id", "properties"), err);

        memset(out, 0, sizeof(*out));
        if (!r)
                r = json_get_string(j, "metrics_path", true, &out->metrics_path, err);
        if (!r)
                r = json_get_bool(j, "emit_id", false, &present, &out->emit_id, err);
        if (!r)
                r = json_get_object(j, "properties", false, &props, err);
        if (!r && props) {
                n = cJSON_GetArraySize(props);
                out->properties = n ? calloc((size_t)n, sizeof(*out->properties)) : NULL;
                if (n && !out->properties)
                        r = error_set(err, -ENOMEM, "out of memory");
        }
        for (p = props ? props->child : NULL; !r && p; p = p->next) {
                struct vmm_metrics_property *kv = &out->properties[out->nr_properties];

                if (!cJSON_IsString(p)) {
                        r = error_config(err,
                                         "field `properties`: invalid type for `%s`: %s, "
                                         "expected a string",
                                         p->string, json_type_name(p));
                        break;
                }
                for (unsigned i = 0; i < out->nr_properties; i++)
                        if (strcmp(out->properties[i].key, p->string) == 0)
                                r = error_config(err, "field `properties`: duplicate key `%s`",
                                                 p->string);
                if (r)
                        break;
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
        static const char *const values[] = {"FlushMetrics", "InstanceStart", "SendCtrlAltDel",
                                             NULL};
        static const enum vmm_action actions[] = {VMM_FLUSH_METRICS, VMM_INSTANCE_START,
                                                  VMM_SEND_CTRL_ALT_DEL};
        int v = 0;
        int r = json_check_object(j, FIELDS("action_type"), err);

        if (!r)
                r = json_get_enum(j, "action_type", true, values, false, NULL, &v, err);
        if (!r)
                *out = actions[v];
        return r;
}

int api_parse_vm_state(const cJSON *j, enum vmm_action *out, struct error *err)
{
        static const char *const values[] = {"Paused", "Resumed", NULL};
        int v = 0;
        int r = json_check_object(j, FIELDS("state"), err);

        if (!r)
                r = json_get_enum(j, "state", true, values, false, NULL, &v, err);
        if (!r)
                *out = v == 0 ? VMM_PAUSE : VMM_RESUME;
        return r;
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
        int r = api_parse_machine(j, true, &req->u.machine.update, &req->u.machine.cpu_hide, err);

        (void)body_id;
        return r ? r : machine_template(req, err);
}

static int parse_patch_machine(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        int r = api_parse_machine(j, false, &req->u.machine.update, &req->u.machine.cpu_hide, err);

        (void)body_id;
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
        int r = json_check_object(j, FIELDS("id", "rate_limiter"), err);

        memset(u, 0, sizeof(*u));
        if (!r)
                r = json_get_string(j, "id", true, &u->id, err);
        if (!r)
                r = get_rate_limiter(j, "rate_limiter", &u->has_rate_limiter, &u->rate_limiter,
                                     err);
        *body_id = u->id;
        return r;
}

static int parse_put_memory_hotplug(const cJSON *j, struct controller_request *req,
                                    const char **body_id, struct error *err)
{
        struct vmm_memory_hotplug *h = &req->u.hotplug;
        int r =
            json_check_object(j, FIELDS("total_size_mib", "slot_size_mib", "block_size_mib"), err);

        (void)body_id;
        memset(h, 0, sizeof(*h));
        h->slot_size_mib = 128; /* Firecracker's defaults */
        h->block_size_mib = 2;
        if (!r)
                r = json_get_uint(j, "total_size_mib", true, 0, UINT32_MAX, NULL,
                                  &h->total_size_mib, err);
        if (!r)
                r = json_get_uint(j, "slot_size_mib", false, 128, UINT32_MAX, NULL,
                                  &h->slot_size_mib, err);
        if (!r)
                r = json_get_uint(j, "block_size_mib", false, 2, UINT32_MAX, NULL,
                                  &h->block_size_mib, err);
        return r;
}

static int parse_patch_memory_hotplug(const cJSON *j, struct controller_request *req,
                                      const char **body_id, struct error *err)
{
        int r = json_check_object(j, FIELDS("requested_size_mib"), err);

        (void)body_id;
        if (!r)
                r = json_get_uint(j, "requested_size_mib", true, 0, UINT32_MAX, NULL,
                                  &req->u.hotplug_requested_mib, err);
        return r;
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
        (void)body_id;
        return api_parse_vsock(j, &req->u.vsock, err);
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
        return api_parse_serial(j, &req->u.serial_out_path, err);
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

static int parse_hinting_start(const cJSON *j, struct controller_request *req, const char **body_id,
                               struct error *err)
{
        (void)body_id;
        return api_parse_balloon_hinting_start(j, &req->u.balloon_ack_on_stop, err);
}

static int parse_hinting_stop(const cJSON *j, struct controller_request *req, const char **body_id,
                              struct error *err)
{
        (void)j;
        (void)req;
        (void)body_id;
        (void)err;
        return 0;
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
        (void)body_id;
        return api_parse_snapshot_load(j, &req->u.snapshot_load, err);
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

#define parse_none NULL
#define X(NAME, PHASE, CONFIGURES, HANDLER, CLEAR, EVENT, METHOD, PATH, PARSE, METRIC)             \
        [VMM_##NAME] = parse_##PARSE,

static const parse_fn command_parsers[VMM_ACTION_COUNT] = {
#include "vmm/controller_actions.def"
};

#undef X
#undef parse_none

bool api_command_has_body(int action)
{
        return action >= 0 && action < VMM_ACTION_COUNT && command_parsers[action];
}

bool api_command_body_optional(int action)
{
        return action == VMM_START_BALLOON_HINTING || action == VMM_STOP_BALLOON_HINTING;
}

bool api_command_body_ignored(int action)
{
        return action == VMM_STOP_BALLOON_HINTING;
}

int api_parse_command(const cJSON *j, struct controller_request *req, const char **body_id,
                      struct error *err)
{
        *body_id = NULL;
        if (!api_command_has_body(req->action))
                return error_set(err, -ENOSYS, "internal: command %d has no body",
                                 (int)req->action);
        return command_parsers[req->action](j, req, body_id, err);
}

/* ---- structures -> JSON ---- */

static void add_string(cJSON *o, const char *name, const char *v)
{
        if (v)
                cJSON_AddStringToObject(o, name, v);
}

static cJSON *bucket_json(const struct token_bucket_config *b)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "size", b->size);
        json_add_uint(o, "one_time_burst", b->one_time_burst);
        json_add_uint(o, "refill_time", b->refill_time_ms);
        return o;
}

static bool bucket_set(const struct token_bucket_config *b)
{
        return b->size || b->one_time_burst || b->refill_time_ms;
}

static void add_rate_limiter(cJSON *o, const char *name, const struct vmm_rate_limiter *rl)
{
        cJSON *l;

        if (!rl->present)
                return;
        l = cJSON_AddObjectToObject(o, name);
        if (!l)
                return;
        if (bucket_set(&rl->cfg.bandwidth))
                cJSON_AddItemToObject(l, "bandwidth", bucket_json(&rl->cfg.bandwidth));
        if (bucket_set(&rl->cfg.ops))
                cJSON_AddItemToObject(l, "ops", bucket_json(&rl->cfg.ops));
}

cJSON *api_json_machine(const struct vmm_machine_config *m)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        json_add_uint(o, "vcpu_count", m->vcpu_count);
        json_add_uint(o, "mem_size_mib", m->mem_size_mib);
        cJSON_AddBoolToObject(o, "smt", m->smt);
        cJSON_AddBoolToObject(o, "track_dirty_pages", m->track_dirty_pages);
        cJSON_AddStringToObject(o, "huge_pages", m->huge_pages ? "2M" : "None");
        if (m->cpu_hide && *m->cpu_hide)
                cJSON_AddStringToObject(o, "cpu_hide", m->cpu_hide);
        if (m->pit) /* our extension, shown only when on (Firecracker's answer otherwise) */
                cJSON_AddBoolToObject(o, "pit", true);
        return o;
}

cJSON *api_json_machine_config(const struct vmm_config *cfg)
{
        cJSON *o = api_json_machine(&cfg->machine);

        /* A custom template shows in GET /vm/config's "cpu-config", not here. */
        if (o && cfg->cpu.static_template[0])
                cJSON_AddStringToObject(o, "cpu_template", cfg->cpu.static_template);
        return o;
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
        if (h->has_guest_cmd)
                json_add_uint(o, "guest_cmd", h->guest_cmd);
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

static cJSON *boot_json(const struct vmm_boot_source *b)
{
        cJSON *o;

        if (!b->kernel_image_path)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        add_string(o, "kernel_image_path", b->kernel_image_path);
        add_string(o, "initrd_path", b->initrd_path);
        add_string(o, "boot_args", b->boot_args);
        return o;
}

static cJSON *drive_json(const struct vmm_drive *d)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        add_string(o, "drive_id", d->drive_id);
        add_string(o, "partuuid", d->partuuid);
        cJSON_AddBoolToObject(o, "is_root_device", d->is_root_device);
        cJSON_AddStringToObject(o, "cache_type",
                                d->cache_type == VMM_CACHE_WRITEBACK ? "Writeback" : "Unsafe");
        cJSON_AddBoolToObject(o, "is_read_only", d->is_read_only);
        add_string(o, "path_on_host", d->path_on_host);
        add_rate_limiter(o, "rate_limiter", &d->rate_limiter);
        cJSON_AddStringToObject(o, "io_engine", d->io_engine == VMM_IO_ASYNC ? "Async" : "Sync");
        add_access_platform(o, d->access_platform);
        return o;
}

static cJSON *pmem_json(const struct vmm_pmem *p)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        add_string(o, "id", p->id);
        add_string(o, "path_on_host", p->path_on_host);
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
        add_string(o, "iface_id", n->iface_id);
        add_string(o, "host_dev_name", n->host_dev_name);
        if (n->has_mac) {
                snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
                         n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
                         n->guest_mac[5]);
                cJSON_AddStringToObject(o, "guest_mac", mac);
        }
        if (n->mtu)
                json_add_uint(o, "mtu", n->mtu);
        add_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter);
        add_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter);
        add_access_platform(o, n->access_platform);
        return o;
}

static const char *level_name(enum log_level l)
{
        switch (l) {
        case LOG_LEVEL_ERROR:
                return "Error";
        case LOG_LEVEL_WARN:
                return "Warning";
        case LOG_LEVEL_INFO:
                return "Info";
        case LOG_LEVEL_DEBUG:
                return "Debug";
        default:
                return "Off";
        }
}

static cJSON *logger_json(const struct vmm_logger_config *l)
{
        cJSON *o;

        if (!l->present)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        add_string(o, "log_path", l->log_path);
        if (l->has_level)
                cJSON_AddStringToObject(o, "level", level_name(l->level));
        if (l->has_show_level)
                cJSON_AddBoolToObject(o, "show_level", l->show_level);
        if (l->has_show_log_origin)
                cJSON_AddBoolToObject(o, "show_log_origin", l->show_log_origin);
        return o;
}

static cJSON *metrics_json(const struct vmm_metrics_config *m)
{
        cJSON *o, *p;

        if (!m->present)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        add_string(o, "metrics_path", m->metrics_path);
        if (m->emit_id)
                cJSON_AddTrueToObject(o, "emit_id");
        if (m->nr_properties) {
                p = cJSON_AddObjectToObject(o, "properties");
                for (unsigned i = 0; p && i < m->nr_properties; i++)
                        cJSON_AddStringToObject(p, m->properties[i].key, m->properties[i].value);
        }
        return o;
}

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
        cJSON_AddItemToObject(o, "logger", logger_json(&cfg->logger));
        cJSON_AddItemToObject(o, "machine-config", api_json_machine_config(cfg));
        /* A custom template (PUT /cpu-config); a static one is machine-config's cpu_template. */
        if (cfg->cpu.tmpl && !cfg->cpu.static_template[0])
                cJSON_AddItemToObject(o, "cpu-config", api_json_cpu_template(cfg->cpu.tmpl));
        cJSON_AddItemToObject(o, "metrics", metrics_json(&cfg->metrics));
        cJSON_AddNullToObject(o, "mmds-config");
        a = cJSON_AddArrayToObject(o, "network-interfaces");
        for (unsigned i = 0; a && i < cfg->nr_nets; i++)
                cJSON_AddItemToArray(a, net_json(&cfg->nets[i]));
        if (cfg->vsock.present) {
                x = cJSON_AddObjectToObject(o, "vsock");
                if (x) {
                        json_add_uint(x, "guest_cid", cfg->vsock.guest_cid);
                        add_string(x, "uds_path", cfg->vsock.uds_path);
                        add_string(x, "vsock_id", cfg->vsock.vsock_id);
                        add_access_platform(x, cfg->vsock.access_platform);
                }
        } else {
                cJSON_AddNullToObject(o, "vsock");
        }
        if (cfg->entropy.present) {
                x = cJSON_AddObjectToObject(o, "entropy");
                if (x) {
                        add_rate_limiter(x, "rate_limiter", &cfg->entropy.rate_limiter);
                        add_access_platform(x, cfg->entropy.access_platform);
                }
        } else {
                cJSON_AddNullToObject(o, "entropy");
        }
        /* Firecracker's: always, after entropy. */
        a = cJSON_AddArrayToObject(o, "pmem");
        for (unsigned i = 0; a && i < cfg->nr_pmems; i++)
                cJSON_AddItemToArray(a, pmem_json(&cfg->pmems[i]));
        cJSON_AddItemToObject(o, "memory-hotplug",
                              cfg->hotplug.present
                                  ? api_json_memory_hotplug(&cfg->hotplug, UINT64_MAX)
                                  : cJSON_CreateNull());
        /* Ours, when set (an ordinary VM answers exactly as Firecracker): the platform. */
        if (cfg->confidential.platform != CC_PLATFORM_NONE) {
                x = cJSON_AddObjectToObject(o, "confidential");
                if (x)
                        cJSON_AddStringToObject(x, "platform",
                                                cc_platform_name(cfg->confidential.platform));
        }
        /* Not in Firecracker's document (it has PUT /serial only): ours, when set. */
        if (cfg->serial_out_path) {
                x = cJSON_AddObjectToObject(o, "serial");
                if (x)
                        add_string(x, "serial_out_path", cfg->serial_out_path);
        }
        return o;
}

/* ---- the config file ---- */

cJSON *api_json_parse(const char *text, size_t len, struct error *err)
{
        const char *end = NULL;
        cJSON *j;

        /* cJSON stops at a NUL: a body with one inside is not one JSON value. */
        if (memchr(text, '\0', len)) {
                error_config(err, "the body contains a NUL byte");
                return NULL;
        }
        /* Nor may a string hold one: "\u0000" would end its C string early, and what is
         * after it (".ro" of a path, the rest of an id) would be dropped unseen. */
        for (size_t i = 0; i + 1 < len; i++) {
                if (text[i] != '\\')
                        continue;
                if (text[i + 1] == 'u' && i + 6 <= len && memcmp(text + i + 2, "0000", 4) == 0) {
                        error_config(err, "a string holds an escaped NUL (u0000) at byte %zu", i);
                        return NULL;
                }
                i++; /* the escaped character: "\\u0000" is a backslash and "u0000" */
        }
        j = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (!j) {
                size_t at = end && end >= text ? (size_t)(end - text) : 0;
                error_config(err, "malformed JSON at byte %zu", at);
                return NULL;
        }
        for (const char *p = end; p < text + len; p++) {
                if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                        error_config(err, "trailing characters after the JSON value at byte %zu",
                                     (size_t)(p - text));
                        cJSON_Delete(j);
                        return NULL;
                }
        }
        return j;
}

/* A section that may be absent or null; anything else is not implemented yet. */
static int not_implemented_section(const cJSON *root, const char *key, struct error *err)
{
        const cJSON *f = json_field(root, key);

        if (!f || (cJSON_IsArray(f) && !f->child))
                return 0;
        return error_config(err, "\"%s\" is not implemented yet", key);
}

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

/* The config file's "cpu-config" as Firecracker has it: the path of a file holding the
 * custom template (an object in its place is taken as the template itself). */
static int apply_template_file(const char *path, struct vmm_config *cfg,
                               const struct vmm_host_limits *limits, struct error *err)
{
        struct controller_request req;
        int r;

        controller_request_init(&req, VMM_PUT_CPU_CONFIG);
        req.u.cpu_config = malloc(sizeof(*req.u.cpu_config));
        r = req.u.cpu_config ? api_load_cpu_template(path, req.u.cpu_config, err)
                             : error_set(err, -ENOMEM, "out of memory");
        if (!r)
                r = controller_edit(cfg, limits, &req, err);
        controller_request_clear(&req);
        return r;
}

static int parse_sections(const cJSON *root, struct vmm_config *cfg, struct error *err)
{
        struct vmm_host_limits limits;
        const cJSON *f, *item;
        int r = json_check_object(root,
                                  FIELDS("boot-source", "machine-config", "drives",
                                         "network-interfaces", "vsock", "balloon", "entropy",
                                         "logger", "metrics", "serial", "mmds-config", "cpu-config",
                                         "pmem", "memory-hotplug", "confidential"),
                                  err);

        if (!r)
                r = not_implemented_section(root, "mmds-config", err);
        if (r)
                return r;
        vmm_host_limits_get(&limits, 0);
        for (size_t s = 0; s < ARRAY_SIZE(sections); s++) {
                unsigned i = 0;

                if (!(f = json_field(root, sections[s].key)))
                        continue;
                if (sections[s].action == VMM_PUT_CPU_CONFIG && cJSON_IsNull(f))
                        continue;
                if (sections[s].action == VMM_PUT_CPU_CONFIG && cJSON_IsString(f)) {
                        r = apply_template_file(f->valuestring, cfg, &limits, err);
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
                if (!cJSON_IsArray(f))
                        return error_config(err, "%s: invalid type: %s, expected an array",
                                            sections[s].key, json_type_name(f));
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
        cJSON *root;
        int r;

        vmm_config_init(cfg);
        root = api_json_parse(text, len, err);
        if (!root)
                return -EINVAL;
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
