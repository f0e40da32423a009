#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpu_state.h"
#include "common/escape.h"
#include "common/fdio.h"
#include "common/log.h"
#include "kvm/kvm.h"
#include "vm_devices.h"

#define INFO_VERSION 1
/* 2: the balloon's free page reporting and hinting; 3: pmem and memory hotplug; 4: the
 * metadata service's settings. 2 and 3 are still read (without what came later). */
#define CONF_VERSION 4
#define MAX_STR      4096 /* paths, ids, command lines */

const char *snapshot_type_name(enum snapshot_type t)
{
        return t == SNAPSHOT_DIFF ? "Diff" : "Full";
}

/* ---- the container ---- */

static int write_state_fd(int fd, const struct snapbuf_writer *payload)
{
        uint8_t hdr[SNAPSHOT_HEADER_LEN] = {0};
        int r;

        if (payload->failed)
                return -ENOMEM;
        memcpy(hdr, SNAPSHOT_MAGIC, 8);
        put_le32(hdr + 8, SNAPSHOT_VERSION);
        put_le32(hdr + 12, SNAPSHOT_HEADER_LEN);
        put_le64(hdr + 16, payload->len);
        put_le64(hdr + 24, snapbuf_crc64(0, payload->data, payload->len));
        r = fd_pwrite_all(fd, hdr, sizeof(hdr), 0);
        if (!r)
                r = fd_pwrite_all(fd, payload->data, payload->len, sizeof(hdr));
        return r;
}

static void id_hex(uint64_t id, char buf[17])
{
        snprintf(buf, 17, "%016llx", (unsigned long long)id);
}

int snapshot_write_state(const char *path, const struct snapbuf_writer *payload, struct error *err)
{
        struct file_replace fr;
        char suffix[17];
        int r;

        id_hex(snapshot_new_id(), suffix);
        r = file_replace_begin(&fr, "snapshot state file", path, suffix, 0600, err);
        if (r)
                return r;
        r = write_state_fd(fr.fd, payload);
        if (r)
                r = error_set(err, r, "snapshot state file '%s': %s", path, strerror(-r));
        if (!r)
                r = file_replace_sync(&fr, "snapshot state file", err);
        if (!r)
                r = file_replace_commit(&fr, "snapshot state file", err);
        file_replace_end(&fr);
        return r;
}

int snapshot_read_state(const char *path, uint8_t **payload, size_t *len, struct error *err)
{
        uint8_t hdr[SNAPSHOT_HEADER_LEN];
        uint64_t plen;
        struct stat st;
        uint8_t *buf;
        ssize_t n;
        int fd;

        *payload = NULL;
        *len = 0;
        fd = file_open("snapshot state file", path, O_RDONLY, 0, FILE_REGULAR, err);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st)) {
                close(fd);
                return error_set(err, -errno, "snapshot state file '%s': %s", path,
                                 strerror(errno));
        }
        n = pread(fd, hdr, sizeof(hdr), 0);
        if (n >= 8 && memcmp(hdr, SNAPSHOT_MAGIC, 8) != 0) {
                close(fd);
                return error_config(err, "'%s' is not a snapshot state file (bad magic)", path);
        }
        if (n < 0 || (size_t)n < sizeof(hdr)) {
                close(fd);
                return error_config(err, "snapshot state file '%s' is truncated (%lld bytes)", path,
                                    (long long)st.st_size);
        }
        if (get_le32(hdr + 8) != SNAPSHOT_VERSION) {
                uint32_t v = get_le32(hdr + 8);

                close(fd);
                /* Version 3 added the CPU configuration (CPUC), which a load checks. */
                return error_config(err,
                                    "snapshot state file '%s' has format version %u; this VMM "
                                    "reads version %u (%s)",
                                    path, v, SNAPSHOT_VERSION,
                                    v < SNAPSHOT_VERSION ? "an older vmm wrote it: take the "
                                                           "snapshot again with this one"
                                                         : "a newer vmm wrote it");
        }
        plen = get_le64(hdr + 16);
        if (get_le32(hdr + 12) != SNAPSHOT_HEADER_LEN || get_le64(hdr + 32) != 0 ||
            plen > SNAPSHOT_MAX_PAYLOAD) {
                close(fd);
                return error_config(err, "snapshot state file '%s' has a corrupted header", path);
        }
        if ((uint64_t)st.st_size != SNAPSHOT_HEADER_LEN + plen) {
                close(fd);
                return error_config(
                    err,
                    "snapshot state file '%s' is %s (%lld bytes, the header says "
                    "%llu)",
                    path,
                    (uint64_t)st.st_size < SNAPSHOT_HEADER_LEN + plen ? "truncated" : "corrupted",
                    (long long)st.st_size, (unsigned long long)(SNAPSHOT_HEADER_LEN + plen));
        }
        buf = malloc(plen ? plen : 1);
        if (!buf) {
                close(fd);
                return error_set(err, -ENOMEM, "out of memory");
        }
        n = plen ? pread(fd, buf, plen, SNAPSHOT_HEADER_LEN) : 0;
        close(fd);
        if (n < 0 || (uint64_t)n != plen) {
                free(buf);
                return error_config(err, "snapshot state file '%s' is truncated", path);
        }
        if (snapbuf_crc64(0, buf, plen) != get_le64(hdr + 24)) {
                free(buf);
                return error_config(
                    err, "snapshot state file '%s' is corrupted (checksum mismatch)", path);
        }
        *payload = buf;
        *len = plen;
        return 0;
}

/* ---- INFO ---- */

void snapshot_info_save(struct snapbuf_writer *w, const struct snapshot_info *info)
{
        snapbuf_put_u32(w, INFO_VERSION);
        snapbuf_put_str(w, info->vmm_version);
        snapbuf_put_str(w, info->arch);
        snapbuf_put_u8(w, (uint8_t)info->type);
        snapbuf_put_u64(w, info->created_ns);
        snapbuf_put_str(w, info->cpu_vendor);
        snapbuf_put_u64(w, info->mem_bytes);
        snapbuf_put_u8(w, (uint8_t)info->mem.kind);
        snapbuf_put_u64(w, info->mem.id);
        snapbuf_put_u64(w, info->mem.parent);
        snapbuf_put_u32(w, info->nr_regions);
        for (unsigned i = 0; i < info->nr_regions; i++) {
                snapbuf_put_u64(w, info->regions[i].gpa);
                snapbuf_put_u64(w, info->regions[i].size);
                snapbuf_put_u64(w, info->regions[i].offset);
        }
        snapbuf_put_u32(w, info->nr_vcpus);
        snapbuf_put_u32(w, info->nr_devices);
}

static void get_fixed_str(struct snapbuf_reader *r, char *dst, size_t cap, const char *what)
{
        char *s = NULL;

        dst[0] = '\0';
        if (snapbuf_get_str(r, (uint32_t)cap - 1, &s, what) && s)
                snprintf(dst, cap, "%s", s);
        free(s);
}

bool snapshot_info_load(struct snapbuf_reader *r, struct snapshot_info *info)
{
        uint32_t version = snapbuf_get_u32(r, "INFO version");
        uint8_t type, mem_kind;

        memset(info, 0, sizeof(*info));
        if (snapbuf_ok(r) && version != INFO_VERSION)
                return snapbuf_fail(r, "INFO", "unknown version");
        get_fixed_str(r, info->vmm_version, sizeof(info->vmm_version), "VMM version");
        get_fixed_str(r, info->arch, sizeof(info->arch), "architecture");
        type = snapbuf_get_u8(r, "snapshot type");
        info->created_ns = snapbuf_get_u64(r, "creation time");
        get_fixed_str(r, info->cpu_vendor, sizeof(info->cpu_vendor), "CPU vendor");
        info->mem_bytes = snapbuf_get_u64(r, "memory size");
        mem_kind = snapbuf_get_u8(r, "memory file kind");
        info->mem.id = snapbuf_get_u64(r, "memory file id");
        info->mem.parent = snapbuf_get_u64(r, "memory file parent");
        info->mem.ram_bytes = info->mem_bytes;
        info->nr_regions = snapbuf_get_count(r, GUEST_MEM_MAX_REGIONS, "memory regions");
        for (unsigned i = 0; i < info->nr_regions; i++) {
                info->regions[i].gpa = snapbuf_get_u64(r, "region address");
                info->regions[i].size = snapbuf_get_u64(r, "region size");
                info->regions[i].offset = snapbuf_get_u64(r, "region offset");
        }
        info->nr_vcpus = snapbuf_get_count(r, 1024, "vCPU count");
        info->nr_devices = snapbuf_get_count(r, VMM_MAX_VIRTIO_DEVICES, "device count");
        if (snapbuf_ok(r) && type > SNAPSHOT_DIFF)
                return snapbuf_fail(r, "snapshot type", "unknown");
        if (snapbuf_ok(r) && mem_kind > SNAPSHOT_DIFF)
                return snapbuf_fail(r, "memory file kind", "unknown");
        if (snapbuf_ok(r) && !info->mem.id)
                return snapbuf_fail(r, "memory file id", "0");
        info->type = (enum snapshot_type)type;
        info->mem.kind = (enum snapshot_type)mem_kind;
        return snapbuf_expect_end(r, "INFO");
}

/* ---- CONF ---- */

static void put_limiter(struct snapbuf_writer *w, const struct vmm_rate_limiter *l)
{
        const struct token_bucket_config *b[2] = {&l->cfg.bandwidth, &l->cfg.ops};

        snapbuf_put_bool(w, l->present);
        for (unsigned i = 0; i < 2; i++) {
                snapbuf_put_u64(w, b[i]->size);
                snapbuf_put_u64(w, b[i]->one_time_burst);
                snapbuf_put_u64(w, b[i]->refill_time_ms);
        }
}

static void get_limiter(struct snapbuf_reader *r, struct vmm_rate_limiter *l)
{
        struct token_bucket_config *b[2] = {&l->cfg.bandwidth, &l->cfg.ops};

        l->present = snapbuf_get_bool(r, "rate limiter");
        for (unsigned i = 0; i < 2; i++) {
                b[i]->size = snapbuf_get_u64(r, "token bucket size");
                b[i]->one_time_burst = snapbuf_get_u64(r, "token bucket burst");
                b[i]->refill_time_ms = snapbuf_get_u64(r, "token bucket refill time");
        }
}

/* The metadata service's settings, as Firecracker keeps them (version, imds_compat, the
 * address and the interfaces; never the data store). */
static void put_mmds(struct snapbuf_writer *w, const struct vmm_config *cfg)
{
        uint32_t ifaces = 0;

        for (unsigned i = 0; i < cfg->nr_nets; i++)
                if (cfg->nets[i].mmds)
                        ifaces |= 1u << i;
        snapbuf_put_bool(w, cfg->mmds.present);
        snapbuf_put_u8(w, (uint8_t)cfg->mmds.version);
        snapbuf_put_bool(w, cfg->mmds.imds_compat);
        snapbuf_put_u32(w, cfg->mmds.ipv4);
        snapbuf_put_u32(w, ifaces);
}

void snapshot_config_save(struct snapbuf_writer *w, const struct vmm_config *cfg)
{
        snapbuf_put_u32(w, CONF_VERSION);
        snapbuf_put_str(w, cfg->boot.kernel_image_path);
        snapbuf_put_str(w, cfg->boot.initrd_path);
        snapbuf_put_str(w, cfg->boot.boot_args);
        snapbuf_put_u32(w, cfg->machine.vcpu_count);
        snapbuf_put_u64(w, cfg->machine.mem_size_mib);
        snapbuf_put_bool(w, cfg->machine.huge_pages);
        snapbuf_put_str(w, cfg->machine.cpu_hide);
        snapbuf_put_bool(w, cfg->machine.smt);
        snapbuf_put_bool(w, cfg->machine.track_dirty_pages);
        snapbuf_put_u32(w, cfg->nr_drives);
        for (unsigned i = 0; i < cfg->nr_drives; i++) {
                const struct vmm_drive *d = &cfg->drives[i];

                snapbuf_put_str(w, d->drive_id);
                snapbuf_put_str(w, d->path_on_host);
                snapbuf_put_bool(w, d->is_root_device);
                snapbuf_put_bool(w, d->is_read_only);
                snapbuf_put_str(w, d->partuuid);
                snapbuf_put_u8(w, (uint8_t)d->cache_type);
                snapbuf_put_u8(w, (uint8_t)d->io_engine);
                put_limiter(w, &d->rate_limiter);
                snapbuf_put_u8(w, (uint8_t)d->access_platform);
        }
        snapbuf_put_u32(w, cfg->nr_nets);
        for (unsigned i = 0; i < cfg->nr_nets; i++) {
                const struct vmm_net *n = &cfg->nets[i];

                snapbuf_put_str(w, n->iface_id);
                snapbuf_put_str(w, n->host_dev_name);
                snapbuf_put_bool(w, n->has_mac);
                snapbuf_put_bytes(w, n->guest_mac, 6);
                snapbuf_put_u16(w, n->mtu);
                put_limiter(w, &n->rx_rate_limiter);
                put_limiter(w, &n->tx_rate_limiter);
                snapbuf_put_u8(w, (uint8_t)n->access_platform);
        }
        snapbuf_put_bool(w, cfg->vsock.present);
        snapbuf_put_u32(w, cfg->vsock.guest_cid);
        snapbuf_put_str(w, cfg->vsock.uds_path);
        snapbuf_put_str(w, cfg->vsock.vsock_id);
        snapbuf_put_u8(w, (uint8_t)cfg->vsock.access_platform);
        snapbuf_put_bool(w, cfg->balloon.present);
        snapbuf_put_u32(w, cfg->balloon.amount_mib);
        snapbuf_put_bool(w, cfg->balloon.deflate_on_oom);
        snapbuf_put_u32(w, cfg->balloon.stats_polling_interval_s);
        snapbuf_put_bool(w, cfg->balloon.free_page_reporting);
        snapbuf_put_bool(w, cfg->balloon.free_page_hinting);
        snapbuf_put_u8(w, (uint8_t)cfg->balloon.access_platform);
        snapbuf_put_bool(w, cfg->entropy.present);
        put_limiter(w, &cfg->entropy.rate_limiter);
        snapbuf_put_u8(w, (uint8_t)cfg->entropy.access_platform);
        snapbuf_put_u8(w, (uint8_t)cfg->confidential.platform);
        snapbuf_put_bool(w, cfg->boot_timer);
        snapbuf_put_u32(w, cfg->nr_pmems);
        for (unsigned i = 0; i < cfg->nr_pmems; i++) {
                const struct vmm_pmem *p = &cfg->pmems[i];

                snapbuf_put_str(w, p->id);
                snapbuf_put_str(w, p->path_on_host);
                snapbuf_put_bool(w, p->root_device);
                snapbuf_put_bool(w, p->read_only);
                put_limiter(w, &p->rate_limiter);
                snapbuf_put_u64(w, p->window_size);
        }
        snapbuf_put_bool(w, cfg->hotplug.present);
        snapbuf_put_u64(w, cfg->hotplug.total_size_mib);
        snapbuf_put_u64(w, cfg->hotplug.slot_size_mib);
        snapbuf_put_u64(w, cfg->hotplug.block_size_mib);
        snapbuf_put_u64(w, cfg->hotplug.requested_size_mib);
        put_mmds(w, cfg);
}

static enum vmm_access_platform get_ap(struct snapbuf_reader *r)
{
        uint8_t v = snapbuf_get_u8(r, "access_platform");

        if (v > VMM_AP_OFF)
                snapbuf_fail(r, "access_platform", "unknown value");
        return (enum vmm_access_platform)v;
}

static uint8_t get_enum(struct snapbuf_reader *r, uint8_t max, const char *what)
{
        uint8_t v = snapbuf_get_u8(r, what);

        if (v > max)
                snapbuf_fail(r, what, "unknown value");
        return v;
}

static void get_mmds(struct snapbuf_reader *r, struct vmm_config *cfg)
{
        uint32_t ifaces;

        cfg->mmds.present = snapbuf_get_bool(r, "mmds");
        cfg->mmds.version = get_enum(r, MMDS_V2, "mmds version");
        cfg->mmds.imds_compat = snapbuf_get_bool(r, "imds_compat");
        cfg->mmds.ipv4 = snapbuf_get_u32(r, "mmds ipv4_address");
        ifaces = snapbuf_get_u32(r, "mmds network_interfaces");
        if (snapbuf_ok(r) && ((ifaces >> cfg->nr_nets) || (ifaces && !cfg->mmds.present) ||
                              !vmm_mmds_ipv4_valid(cfg->mmds.ipv4)))
                snapbuf_fail(r, "mmds", "inconsistent settings");
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                cfg->nets[i].mmds = ifaces >> i & 1;
}

bool snapshot_config_load(struct snapbuf_reader *r, struct vmm_config *cfg)
{
        uint32_t version = snapbuf_get_u32(r, "CONF version");

        vmm_config_init(cfg);
        if (snapbuf_ok(r) && (version < 2 || version > CONF_VERSION))
                return snapbuf_fail(r, "CONF", "unknown version");
        snapbuf_get_str(r, MAX_STR, &cfg->boot.kernel_image_path, "kernel path");
        snapbuf_get_str(r, MAX_STR, &cfg->boot.initrd_path, "initrd path");
        snapbuf_get_str(r, MAX_STR, &cfg->boot.boot_args, "boot arguments");
        cfg->machine.vcpu_count = snapbuf_get_u32(r, "vcpu_count");
        cfg->machine.mem_size_mib = snapbuf_get_u64(r, "mem_size_mib");
        cfg->machine.huge_pages = snapbuf_get_bool(r, "huge_pages");
        snapbuf_get_str(r, MAX_STR, &cfg->machine.cpu_hide, "cpu_hide");
        cfg->machine.smt = snapbuf_get_bool(r, "smt");
        cfg->machine.track_dirty_pages = snapbuf_get_bool(r, "track_dirty_pages");
        cfg->nr_drives = snapbuf_get_count(r, VMM_MAX_DRIVES, "drive count");
        for (unsigned i = 0; i < cfg->nr_drives; i++) {
                struct vmm_drive *d = &cfg->drives[i];

                snapbuf_get_str(r, 64, &d->drive_id, "drive_id");
                snapbuf_get_str(r, MAX_STR, &d->path_on_host, "path_on_host");
                d->is_root_device = snapbuf_get_bool(r, "is_root_device");
                d->is_read_only = snapbuf_get_bool(r, "is_read_only");
                snapbuf_get_str(r, 64, &d->partuuid, "partuuid");
                d->cache_type = get_enum(r, VMM_CACHE_WRITEBACK, "cache_type");
                d->io_engine = get_enum(r, VMM_IO_ASYNC, "io_engine");
                get_limiter(r, &d->rate_limiter);
                d->access_platform = get_ap(r);
                if (snapbuf_ok(r) && (!d->drive_id || !d->path_on_host))
                        snapbuf_fail(r, "drive", "without an id or a path");
        }
        cfg->nr_nets = snapbuf_get_count(r, VMM_MAX_NETS, "network interface count");
        for (unsigned i = 0; i < cfg->nr_nets; i++) {
                struct vmm_net *n = &cfg->nets[i];

                snapbuf_get_str(r, 64, &n->iface_id, "iface_id");
                snapbuf_get_str(r, 64, &n->host_dev_name, "host_dev_name");
                n->has_mac = snapbuf_get_bool(r, "guest_mac");
                snapbuf_get_bytes(r, n->guest_mac, 6, "guest_mac");
                n->mtu = snapbuf_get_u16(r, "mtu");
                get_limiter(r, &n->rx_rate_limiter);
                get_limiter(r, &n->tx_rate_limiter);
                n->access_platform = get_ap(r);
                if (snapbuf_ok(r) && (!n->iface_id || !n->host_dev_name))
                        snapbuf_fail(r, "network interface", "without an id or a TAP");
        }
        cfg->vsock.present = snapbuf_get_bool(r, "vsock");
        cfg->vsock.guest_cid = snapbuf_get_u32(r, "guest_cid");
        snapbuf_get_str(r, MAX_STR, &cfg->vsock.uds_path, "uds_path");
        snapbuf_get_str(r, 64, &cfg->vsock.vsock_id, "vsock_id");
        cfg->vsock.access_platform = get_ap(r);
        cfg->balloon.present = snapbuf_get_bool(r, "balloon");
        cfg->balloon.amount_mib = snapbuf_get_u32(r, "amount_mib");
        cfg->balloon.deflate_on_oom = snapbuf_get_bool(r, "deflate_on_oom");
        cfg->balloon.stats_polling_interval_s = snapbuf_get_u32(r, "stats_polling_interval_s");
        cfg->balloon.free_page_reporting = snapbuf_get_bool(r, "free_page_reporting");
        cfg->balloon.free_page_hinting = snapbuf_get_bool(r, "free_page_hinting");
        cfg->balloon.access_platform = get_ap(r);
        cfg->entropy.present = snapbuf_get_bool(r, "entropy");
        get_limiter(r, &cfg->entropy.rate_limiter);
        cfg->entropy.access_platform = get_ap(r);
        cfg->confidential.platform = get_enum(r, CC_PLATFORM_S390_PV, "confidential platform");
        cfg->boot_timer = snapbuf_get_bool(r, "boot timer");
        cfg->nr_pmems = version >= 3 ? snapbuf_get_count(r, VMM_MAX_PMEMS, "pmem count") : 0;
        for (unsigned i = 0; i < cfg->nr_pmems; i++) {
                struct vmm_pmem *p = &cfg->pmems[i];

                snapbuf_get_str(r, 64, &p->id, "pmem id");
                snapbuf_get_str(r, MAX_STR, &p->path_on_host, "pmem path_on_host");
                p->root_device = snapbuf_get_bool(r, "root_device");
                p->read_only = snapbuf_get_bool(r, "read_only");
                get_limiter(r, &p->rate_limiter);
                p->window_size = snapbuf_get_u64(r, "pmem window size");
                if (snapbuf_ok(r) && (!p->id || !p->path_on_host || !p->window_size ||
                                      p->window_size % VIRTIO_PMEM_ALIGN))
                        snapbuf_fail(r, "pmem", "without an id, a path or a window");
        }
        if (version >= 3) {
                struct error err = {0};

                cfg->hotplug.present = snapbuf_get_bool(r, "memory hotplug");
                cfg->hotplug.total_size_mib = snapbuf_get_u64(r, "total_size_mib");
                cfg->hotplug.slot_size_mib = snapbuf_get_u64(r, "slot_size_mib");
                cfg->hotplug.block_size_mib = snapbuf_get_u64(r, "block_size_mib");
                cfg->hotplug.requested_size_mib = snapbuf_get_u64(r, "requested_size_mib");
                if (snapbuf_ok(r) && cfg->hotplug.present &&
                    (vmm_check_memory_hotplug(&cfg->hotplug, &err) ||
                     cfg->hotplug.requested_size_mib > cfg->hotplug.total_size_mib))
                        snapbuf_fail(r, "memory hotplug", "an impossible configuration");
        }
        if (version >= 4)
                get_mmds(r, cfg);
        if (snapbuf_ok(r) && cfg->vsock.present && !cfg->vsock.uds_path)
                snapbuf_fail(r, "vsock", "without a uds_path");
        return snapbuf_expect_end(r, "CONF");
}

/* ---- the memory file ---- */

static bool page_zero(const uint8_t *p)
{
        const uint64_t *w = (const uint64_t *)p;

        for (size_t i = 0; i < GUEST_MEM_PAGE / 8; i++)
                if (w[i])
                        return false;
        return true;
}

/* Pages that can hold data: present or swapped (pagemap), or, over a memory file, in one of
 * its data ranges. Everything else is a page never touched, zero. */
struct page_probe {
        int pagemap; /* -1: unknown, every page is a candidate */
        int file;
        off_t data_start, data_end; /* the file's current data range (cached) */
};

static bool file_has_data(struct page_probe *pp, off_t off)
{
        if (pp->file < 0)
                return false;
        if (off >= pp->data_start && off < pp->data_end)
                return true;
        if (off < pp->data_start && pp->data_end)
                return false;
        pp->data_start = lseek(pp->file, off, SEEK_DATA);
        if (pp->data_start < 0) {
                pp->data_start = pp->data_end = (off_t)INT64_MAX; /* no data after off */
                return false;
        }
        pp->data_end = lseek(pp->file, pp->data_start, SEEK_HOLE);
        if (pp->data_end < 0)
                pp->data_end = (off_t)INT64_MAX;
        return off >= pp->data_start && off < pp->data_end;
}

static int write_run(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
        while (len) {
                size_t n = len > (1u << 30) ? (1u << 30) : (size_t)len;
                int r = fd_pwrite_all(fd, p, n, (off_t)off);
                if (r)
                        return r;
                p += n;
                off += n;
                len -= n;
        }
        return 0;
}

static int write_full(const struct guest_mem *mem, int fd)
{
        struct page_probe pp = {.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC),
                                .file = guest_mem_backing_file(mem)};
        uint64_t entries[512], page[GUEST_MEM_PAGE / 8];
        int r = 0;

        for (unsigned i = 0; !r && i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(mem, i);
                uint64_t run_start = 0, run_len = 0;

                for (uint64_t off = 0; !r && off < reg.size; off += GUEST_MEM_PAGE) {
                        uint64_t k = (off / GUEST_MEM_PAGE) % 512;
                        const uint8_t *p = reg.host + off;
                        bool data;

                        if (k == 0 && pp.pagemap >= 0) {
                                off_t at = (off_t)((uintptr_t)p / GUEST_MEM_PAGE * 8);
                                ssize_t n = pread(pp.pagemap, entries, sizeof(entries), at);
                                if (n <= 0) {
                                        close(pp.pagemap);
                                        pp.pagemap = -1;
                                } else if ((size_t)n < sizeof(entries)) {
                                        memset((uint8_t *)entries + n, 0xff,
                                               sizeof(entries) - (size_t)n);
                                }
                        }
                        /* A page a page-fault handler has not filled yet is not
                         * present, and not zero: reading it has the handler fill it. */
                        data = pp.pagemap < 0 || (entries[k] & (3ull << 62)) ||
                               guest_mem_userfault(mem) ||
                               file_has_data(&pp, (off_t)(reg.offset + off));
                        /* Over a memory file, a page can be gone (truncated): look at a
                         * checked copy. */
                        if (data && pp.file >= 0) {
                                r = guest_mem_copy_checked(page, p, 0, GUEST_MEM_PAGE);
                                if (r)
                                        break;
                        }
                        if (data && !page_zero(pp.file >= 0 ? (const uint8_t *)page : p)) {
                                if (!run_len)
                                        run_start = off;
                                run_len += GUEST_MEM_PAGE;
                                continue;
                        }
                        if (run_len)
                                r = write_run(fd, reg.host + run_start, run_len,
                                              reg.offset + run_start);
                        run_len = 0;
                }
                if (!r && run_len)
                        r = write_run(fd, reg.host + run_start, run_len, reg.offset + run_start);
        }
        if (pp.pagemap >= 0)
                close(pp.pagemap);
        return r;
}

static int write_diff(const struct guest_mem *mem, int fd, const uint64_t *dirty)
{
        for (unsigned i = 0; i < guest_mem_region_count(mem); i++) {
                struct guest_mem_region reg = guest_mem_region_get(mem, i);
                uint64_t first = reg.offset / GUEST_MEM_PAGE, pages = reg.size / GUEST_MEM_PAGE;
                uint64_t run = 0, run_len = 0;

                for (uint64_t p = 0; p <= pages; p++) {
                        uint64_t b = first + p;
                        bool set = p < pages && (dirty[b / 64] >> (b % 64)) & 1;
                        int r;

                        if (set) {
                                if (!run_len)
                                        run = p;
                                run_len++;
                                continue;
                        }
                        if (!run_len)
                                continue;
                        r = write_run(fd, reg.host + run * GUEST_MEM_PAGE, run_len * GUEST_MEM_PAGE,
                                      reg.offset + run * GUEST_MEM_PAGE);
                        if (r)
                                return r;
                        run_len = 0;
                }
        }
        return 0;
}

uint64_t snapshot_new_id(void)
{
        uint64_t id = 0;

        while (!id) {
                if (getrandom(&id, sizeof(id), 0) != sizeof(id)) {
                        struct timespec ts;

                        /* No entropy yet (early boot): unique enough for a fingerprint. */
                        clock_gettime(CLOCK_REALTIME, &ts);
                        id = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
                             ((uint64_t)getpid() << 48);
                }
        }
        return id;
}

/* The trailer's format: 2 added the hotplug region's size (at 40); 1 is still read (no
 * region). */
#define MEM_TRAILER_VERSION 2

static void trailer_encode(const struct snapshot_mem_id *id, uint8_t t[SNAPSHOT_MEM_TRAILER_LEN])
{
        memset(t, 0, SNAPSHOT_MEM_TRAILER_LEN);
        memcpy(t, SNAPSHOT_MEM_MAGIC, 8);
        put_le32(t + 8, MEM_TRAILER_VERSION);
        put_le32(t + 12, (uint32_t)id->kind);
        put_le64(t + 16, id->ram_bytes);
        put_le64(t + 24, id->id);
        put_le64(t + 32, id->parent);
        put_le64(t + 40, id->hotplug_bytes);
}

static int write_trailer(int fd, const struct snapshot_mem_id *id)
{
        uint8_t t[SNAPSHOT_MEM_TRAILER_LEN];

        trailer_encode(id, t);
        return fd_pwrite_all(fd, t, sizeof(t), (off_t)(id->ram_bytes + id->hotplug_bytes));
}

static bool block_plugged(const struct virtio_mem_layout *hp, uint64_t b)
{
        return (hp->plugged[b / 64] >> (b % 64)) & 1;
}

/* The plugged blocks, each where the region puts it after RAM (unplugged: holes). */
static int write_hotplug(const struct virtio_mem_layout *hp, int fd, uint64_t at)
{
        int r = 0;

        for (uint64_t b = 0; !r && b < hp->nr_blocks; b++)
                if (block_plugged(hp, b))
                        r = write_run(fd, hp->host + b * hp->block_size, hp->block_size,
                                      at + b * hp->block_size);
        return r;
}

int snapshot_write_memory(const struct guest_mem *mem, int fd, const uint64_t *dirty,
                          const struct virtio_mem_layout *hp, const struct snapshot_mem_id *id)
{
        uint64_t ram = guest_mem_size(mem);
        int r;

        if ((hp ? hp->nr_blocks * hp->block_size : 0) != id->hotplug_bytes || (hp && dirty))
                return -EINVAL;
        r = ftruncate(fd, (off_t)(ram + id->hotplug_bytes + SNAPSHOT_MEM_TRAILER_LEN)) ? -errno : 0;
        if (!r)
                r = dirty ? write_diff(mem, fd, dirty) : write_full(mem, fd);
        if (!r && hp)
                r = write_hotplug(hp, fd, ram);
        if (!r)
                r = write_trailer(fd, id);
        return r;
}

int snapshot_read_hotplug(int fd, const struct snapshot_mem_id *id,
                          const struct virtio_mem_layout *hp)
{
        if (id->hotplug_bytes != hp->nr_blocks * hp->block_size)
                return -EINVAL;
        for (uint64_t b = 0; b < hp->nr_blocks; b++) {
                uint64_t done = 0;

                if (!block_plugged(hp, b))
                        continue;
                while (done < hp->block_size) {
                        ssize_t n =
                            pread(fd, hp->host + b * hp->block_size + done, hp->block_size - done,
                                  (off_t)(id->ram_bytes + b * hp->block_size + done));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return -errno;
                        if (n == 0)
                                return -EIO;
                        done += (uint64_t)n;
                }
        }
        return 0;
}

int snapshot_read_mem_id(int fd, struct snapshot_mem_id *out)
{
        uint8_t t[48];
        uint64_t hotplug, data;
        uint32_t version;
        struct stat st;
        ssize_t n;

        memset(out, 0, sizeof(*out));
        if (fstat(fd, &st))
                return -errno;
        if (st.st_size < (off_t)SNAPSHOT_MEM_TRAILER_LEN)
                return -EINVAL;
        n = pread(fd, t, sizeof(t), st.st_size - SNAPSHOT_MEM_TRAILER_LEN);
        if (n < 0)
                return -errno;
        if ((size_t)n < sizeof(t) || memcmp(t, SNAPSHOT_MEM_MAGIC, 8) != 0)
                return -EINVAL;
        version = get_le32(t + 8);
        /* What the trailer says comes before it: RAM, then (2) the hotplug region. */
        hotplug = version == 2 ? get_le64(t + 40) : 0;
        data = (uint64_t)st.st_size - SNAPSHOT_MEM_TRAILER_LEN;
        if ((version != 1 && version != 2) || get_le32(t + 12) > SNAPSHOT_DIFF ||
            !get_le64(t + 24) || get_le64(t + 16) > data || hotplug != data - get_le64(t + 16))
                return -EINVAL;
        out->kind = (enum snapshot_type)get_le32(t + 12);
        out->ram_bytes = get_le64(t + 16);
        out->hotplug_bytes = hotplug;
        out->id = get_le64(t + 24);
        out->parent = get_le64(t + 32);
        return 0;
}

/* "PATH.ID.keep": where a create keeps the memory file of id while it replaces PATH. */
static char *keep_name(const char *path, uint64_t id)
{
        size_t n = strlen(path) + 32;
        char *k = malloc(n);

        if (k)
                snprintf(k, n, "%s.%016llx.keep", path, (unsigned long long)id);
        return k;
}

static void describe_mem_id(const struct snapshot_mem_id *m, char *buf, size_t cap)
{
        if (m->kind == SNAPSHOT_DIFF)
                snprintf(buf, cap, "Diff %016llx over %016llx", (unsigned long long)m->id,
                         (unsigned long long)m->parent);
        else
                snprintf(buf, cap, "%016llx", (unsigned long long)m->id);
}

/* Whether fd is the memory file info needs; the refusal's message otherwise. */
static int check_memory(int fd, const char *path, const struct snapshot_info *info,
                        struct snapshot_mem_id *got, struct error *err)
{
        struct stat st;
        char have[64], want[64];
        int r = snapshot_read_mem_id(fd, got);

        if (r == -EINVAL) {
                fstat(fd, &st);
                if (st.st_size == 0)
                        return error_config(err,
                                            "snapshot memory file '%s' is empty: not a snapshot "
                                            "memory file",
                                            path);
                return error_config(err,
                                    "snapshot memory file '%s' (%lld bytes) is not a snapshot "
                                    "memory file, or it was truncated (it has no trailer)",
                                    path, (long long)st.st_size);
        }
        if (r)
                return error_config(err, "snapshot memory file '%s': %s", path, strerror(-r));
        if (got->ram_bytes != info->mem_bytes)
                return error_config(err,
                                    "snapshot memory file '%s' holds %llu bytes of guest memory; "
                                    "this snapshot's is %llu bytes: the memory file of another "
                                    "snapshot",
                                    path, (unsigned long long)got->ram_bytes,
                                    (unsigned long long)info->mem_bytes);
        if (got->kind == SNAPSHOT_DIFF && got->id == info->mem.id)
                return error_config(err,
                                    "snapshot memory file '%s' is a Diff that was not merged: "
                                    "merge it over the memory file of the snapshot it follows "
                                    "(vmm --base-file BASE --diff-file '%s') and load BASE",
                                    path, path);
        if (got->id != info->mem.id || got->kind != SNAPSHOT_FULL) {
                describe_mem_id(got, have, sizeof(have));
                describe_mem_id(&info->mem, want, sizeof(want));
                return error_config(err,
                                    "snapshot memory file '%s' belongs to another snapshot (its "
                                    "memory is %s; this state file's is %s)",
                                    path, have, want);
        }
        return 0;
}

int snapshot_open_memory(const char *path, const struct snapshot_info *info, struct error *err)
{
        const char *what = "snapshot memory file";
        struct snapshot_mem_id got;
        struct error kerr = {0};
        char *target, *keep;
        int fd, kfd, r, e;

        fd = file_open(what, path, O_RDONLY, 0, FILE_REGULAR, err);
        if (fd < 0)
                return fd;
        r = check_memory(fd, path, info, &got, err);
        if (!r)
                return fd;
        close(fd);
        /* A create killed between its two renames left the old state file with the new
         * memory file, and kept the old memory file beside it. */
        if (got.id == info->mem.id || !got.id)
                return r;
        target = file_resolve(path, &e);
        keep = target ? keep_name(target, info->mem.id) : NULL;
        free(target);
        if (!keep)
                return r;
        kfd = file_open(what, keep, O_RDONLY, 0, FILE_REGULAR, &kerr);
        if (kfd >= 0 && check_memory(kfd, keep, info, &got, &kerr) == 0) {
                LOG_WARN("snapshot memory file '%s' belongs to a newer snapshot; this snapshot's "
                         "is '%s', kept by a snapshot create that did not finish",
                         path, keep);
                free(keep);
                error_clear(err);
                return kfd;
        }
        if (kfd >= 0)
                close(kfd);
        free(keep);
        return r;
}

/* Copies the data ranges of dfd in [0, end) to bfd. */
static int copy_data(int dfd, int bfd, off_t end, const char *diff, const char *base,
                     struct error *err)
{
        uint8_t *buf = malloc(1u << 20);
        off_t off = 0, stop;
        int r = 0;

        if (!buf)
                return error_set(err, -ENOMEM, "out of memory");
        while (!r && off < end) {
                off = lseek(dfd, off, SEEK_DATA);
                if (off < 0 || off >= end)
                        break; /* ENXIO: no more data */
                stop = lseek(dfd, off, SEEK_HOLE);
                if (stop < 0 || stop > end)
                        stop = end;
                while (!r && off < stop) {
                        size_t n =
                            stop - off > (off_t)(1u << 20) ? (1u << 20) : (size_t)(stop - off);
                        ssize_t got = pread(dfd, buf, n, off);

                        if (got <= 0) {
                                r = got < 0 ? -errno : -EIO;
                                error_set(err, r, "reading '%s': %s", diff, strerror(-r));
                                break;
                        }
                        r = fd_pwrite_all(bfd, buf, (size_t)got, off);
                        if (r)
                                error_set(err, r, "writing '%s': %s", base, strerror(-r));
                        off += got;
                }
        }
        free(buf);
        return r;
}

int snapshot_merge_memory(const char *base, const char *diff, struct error *err)
{
        struct snapshot_mem_id b, d;
        int bfd, dfd, r;

        bfd = file_open("base memory file", base, O_RDWR, 0, FILE_REGULAR, err);
        if (bfd < 0)
                return bfd;
        dfd = file_open("diff memory file", diff, O_RDONLY, 0, FILE_REGULAR, err);
        if (dfd < 0) {
                close(bfd);
                return dfd;
        }
        r = snapshot_read_mem_id(bfd, &b);
        if (r)
                r = error_config(err, "base memory file '%s' is not a snapshot memory file%s%s",
                                 base, r == -EINVAL ? "" : ": ", r == -EINVAL ? "" : strerror(-r));
        if (!r && (r = snapshot_read_mem_id(dfd, &d)) != 0)
                r = error_config(err, "diff memory file '%s' is not a snapshot memory file%s%s",
                                 diff, r == -EINVAL ? "" : ": ", r == -EINVAL ? "" : strerror(-r));
        if (!r && d.kind != SNAPSHOT_DIFF)
                r = error_config(err, "diff memory file '%s' is a complete memory file, not a Diff",
                                 diff);
        if (!r && b.kind != SNAPSHOT_FULL)
                r = error_config(err,
                                 "base memory file '%s' is itself a Diff that was not merged: "
                                 "merge it over its own base first",
                                 base);
        if (!r && (b.ram_bytes != d.ram_bytes || b.hotplug_bytes != d.hotplug_bytes))
                r = error_config(err,
                                 "the diff memory file '%s' and the base '%s' differ in size: not "
                                 "snapshots of the same VM",
                                 diff, base);
        if (!r && d.parent != b.id)
                r = error_config(err,
                                 "the diff memory file '%s' goes over memory %016llx; the base "
                                 "'%s' is %016llx: merge each Diff over the memory file of the "
                                 "snapshot it follows, in the order they were taken",
                                 diff, (unsigned long long)d.parent, base,
                                 (unsigned long long)b.id);
        if (!r)
                r = copy_data(dfd, bfd, (off_t)d.ram_bytes, diff, base, err);
        /* base now holds the Diff snapshot's whole memory. */
        d.kind = SNAPSHOT_FULL;
        if (!r && (r = write_trailer(bfd, &d)) != 0)
                error_set(err, r, "writing '%s': %s", base, strerror(-r));
        if (!r && fsync(bfd))
                r = error_set(err, -errno, "writing '%s': %s", base, strerror(errno));
        close(bfd);
        close(dfd);
        return r;
}

/* ---- writing a snapshot's files ---- */

int snapshot_files_begin(struct snapshot_files *f, const char *state_path, const char *mem_path,
                         int restored_from, uint64_t id, struct error *err)
{
        struct stat st;
        char suffix[24];
        int r;

        memset(f, 0, sizeof(*f));
        f->state.fd = f->mem.fd = -1;
        f->id = id;
        id_hex(id, suffix);
        r = file_replace_begin(&f->mem, "snapshot memory file", mem_path, suffix, 0600, err);
        if (r)
                return r;
        /* Another suffix: the two may be one path (refused below, once both are known). */
        strcat(suffix, ".s");
        r = file_replace_begin(&f->state, "snapshot state file", state_path, suffix, 0600, err);
        if (!r && file_replace_same_target(&f->state, &f->mem))
                r = error_config(err,
                                 "snapshot_path and mem_file_path name the same file '%s': a "
                                 "snapshot needs two files",
                                 mem_path);
        if (!r && restored_from >= 0 && f->mem.target_exists && fstat(restored_from, &st) == 0 &&
            st.st_dev == f->mem.target_dev && st.st_ino == f->mem.target_ino)
                r = error_config(err,
                                 "mem_file_path '%s' is the memory file this VM was restored "
                                 "from, which still backs its memory: write the snapshot to "
                                 "another file",
                                 mem_path);
        if (r)
                snapshot_files_end(f);
        return r;
}

static void step(struct snapshot_files *f, unsigned n)
{
        if (f->step_hook)
                f->step_hook(n);
}

/* Keeps the memory file now at the target under a second name, so it can be put back (and
 * found by its state file's load) until the new state file is in place. */
static int keep_old_memory(struct snapshot_files *f, struct error *err)
{
        struct snapshot_mem_id old;
        struct stat a, b;
        int fd;

        if (!f->mem.target_exists)
                return 0;
        fd = file_open("snapshot memory file", f->mem.target, O_RDONLY, 0, FILE_REGULAR, err);
        if (fd < 0)
                return fd;
        /* Named after its own id (a state file's load looks there), or ours when it is no
         * memory file at all (then no state file can want it, but a failure puts it back). */
        if (snapshot_read_mem_id(fd, &old))
                old.id = f->id;
        close(fd);
        f->keep = keep_name(f->mem.target, old.id);
        if (!f->keep)
                return error_set(err, -ENOMEM, "out of memory");
        if (link(f->mem.target, f->keep) == 0)
                return 0;
        /* Left by an earlier create killed at this point: the same file, ours to reuse. */
        if (errno == EEXIST && stat(f->mem.target, &a) == 0 && stat(f->keep, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                return 0;
        if (errno == EEXIST)
                return error_config(err,
                                    "'%s' is in the way (the copy an interrupted snapshot create "
                                    "kept of an old memory file): move it away",
                                    f->keep);
        /* A file system without hard links: no copy to fall back on. */
        LOG_WARN("snapshot memory file '%s': cannot keep the old file while the new one goes "
                 "in (%s); a failure now loses it",
                 f->mem.target, strerror(errno));
        free(f->keep);
        f->keep = NULL;
        return 0;
}

int snapshot_files_commit(struct snapshot_files *f, const struct snapbuf_writer *payload,
                          struct error *err)
{
        int r = write_state_fd(f->state.fd, payload);

        if (r)
                return error_set(err, r, "snapshot state file '%s': %s", f->state.target,
                                 strerror(-r));
        r = file_replace_sync(&f->mem, "snapshot memory file", err);
        if (!r)
                r = file_replace_sync(&f->state, "snapshot state file", err);
        step(f, 1);
        if (!r)
                r = keep_old_memory(f, err);
        step(f, 2);
        if (!r)
                r = file_replace_commit(&f->mem, "snapshot memory file", err);
        step(f, 3);
        if (!r)
                r = file_replace_commit(&f->state, "snapshot state file", err);
        step(f, 4);
        /* The new memory file went in but the old state file is still in place (tmp is
         * cleared by the rename): the old memory file goes back. */
        if (r && !f->mem.tmp && f->state.tmp && f->keep && rename(f->keep, f->mem.target) == 0) {
                free(f->keep);
                f->keep = NULL;
        }
        return r;
}

void snapshot_files_end(struct snapshot_files *f)
{
        if (f->keep)
                unlink(f->keep);
        free(f->keep);
        f->keep = NULL;
        file_replace_end(&f->state);
        file_replace_end(&f->mem);
}

/* ---- --describe-snapshot ---- */

/* fprintf for the description: the state file's strings (paths, ids, versions) are anyone's,
 * so every control character in them is escaped; only a line's own final newline stays. */
static void outf(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(FILE *out, const char *fmt, ...)
{
        char *raw = NULL, *safe;
        bool nl;
        size_t n;
        va_list ap;
        int len;

        va_start(ap, fmt);
        len = vasprintf(&raw, fmt, ap);
        va_end(ap);
        if (len < 0)
                return;
        nl = len > 0 && raw[len - 1] == '\n';
        if (nl)
                raw[len - 1] = '\0';
        n = escape_controls(NULL, 0, raw) + 1;
        safe = malloc(n);
        if (safe) {
                escape_controls(safe, n, raw);
                fprintf(out, "%s%s", safe, nl ? "\n" : "");
        }
        free(safe);
        free(raw);
}

static const char *kind_name(uint32_t kind)
{
        switch (kind) {
        case VM_DEVICE_BLOCK:
                return "block";
        case VM_DEVICE_NET:
                return "net";
        case VM_DEVICE_VSOCK:
                return "vsock";
        case VM_DEVICE_BALLOON:
                return "balloon";
        case VM_DEVICE_ENTROPY:
                return "entropy";
        case VM_DEVICE_PMEM:
                return "pmem";
        default:
                return "?";
        }
}

static void describe_config(FILE *out, const struct vmm_config *c)
{
        outf(out, "machine: %u vCPU(s), %llu MiB%s%s%s, track_dirty_pages %s\n",
             c->machine.vcpu_count, (unsigned long long)c->machine.mem_size_mib,
             c->machine.huge_pages ? ", 2 MiB huge pages" : "",
             c->machine.cpu_hide ? ", cpu_hide " : "",
             c->machine.cpu_hide ? c->machine.cpu_hide : "",
             c->machine.track_dirty_pages ? "on" : "off");
        outf(out, "kernel: %s\n", c->boot.kernel_image_path ? c->boot.kernel_image_path : "(none)");
        for (unsigned i = 0; i < c->nr_drives; i++)
                outf(out, "drive %s: %s%s%s\n", c->drives[i].drive_id, c->drives[i].path_on_host,
                     c->drives[i].is_read_only ? " (read-only)" : "",
                     c->drives[i].is_root_device ? " (root)" : "");
        for (unsigned i = 0; i < c->nr_nets; i++)
                outf(out, "network interface %s: TAP %s\n", c->nets[i].iface_id,
                     c->nets[i].host_dev_name);
        if (c->vsock.present)
                outf(out, "vsock: guest CID %u, %s\n", c->vsock.guest_cid, c->vsock.uds_path);
        if (c->balloon.present)
                outf(out, "balloon: %u MiB, statistics every %u s%s%s\n", c->balloon.amount_mib,
                     c->balloon.stats_polling_interval_s,
                     c->balloon.free_page_reporting ? ", free page reporting" : "",
                     c->balloon.free_page_hinting ? ", free page hinting" : "");
        if (c->entropy.present)
                outf(out, "entropy: yes\n");
        for (unsigned i = 0; i < c->nr_pmems; i++)
                outf(out, "pmem %s: %s, a window of %llu MiB%s%s\n", c->pmems[i].id,
                     c->pmems[i].path_on_host, (unsigned long long)(c->pmems[i].window_size >> 20),
                     c->pmems[i].read_only ? " (read-only)" : "",
                     c->pmems[i].root_device ? " (root)" : "");
}

static void describe_cpu(FILE *out, const struct x86_cpu_record *c)
{
        if (c->static_template[0])
                outf(out, "CPU template: %s (static)", c->static_template);
        else if (c->has_template)
                outf(out, "CPU template: custom (%u CPUID leaves, %u MSRs, %u KVM capabilities)",
                     c->tmpl.nr_cpuid, c->tmpl.nr_msrs, c->tmpl.nr_caps);
        else
                outf(out, "CPU template: none");
        outf(out, "; vCPU 0's CPUID: %u entries", c->nr_cpuid);
        for (unsigned i = 0; i < c->nr_msrs; i++)
                outf(out, "%s 0x%x = 0x%llx", i ? "," : "; MSRs:", c->msrs[i].index,
                     (unsigned long long)c->msrs[i].value);
        outf(out, "\n");
}

static void describe_device(FILE *out, struct snapbuf_reader *dev)
{
        uint32_t kind = snapbuf_get_u32(dev, "device kind");
        char *id = NULL;
        struct snapbuf_reader model;
        uint8_t status;

        snapbuf_get_str(dev, 64, &id, "device id");
        snapbuf_get_section(dev, SNAPBUF_TAG('V', 'D', 'E', 'V'), &model, "device model");
        snapbuf_get_u32(dev, "transport version");
        snapbuf_get_u32(dev, "device id");
        snapbuf_get_u32(dev, "queue count");
        snapbuf_get_u64(dev, "offered features");
        status = snapbuf_get_u8(dev, "status");
        if (snapbuf_ok(dev))
                outf(out, "device %s%s%s: status 0x%02x%s, %zu bytes of device state\n",
                     kind_name(kind), id && *id ? " " : "", id ? id : "", status,
                     (status & 4) ? " (driver running)" : "", model.len);
        free(id);
}

int snapshot_describe(const char *path, FILE *out, struct error *err)
{
        struct snapbuf_reader r, sec;
        struct snapshot_info info;
        struct vmm_config cfg;
        uint8_t *payload;
        size_t len;
        time_t secs;
        struct tm tm;
        char when[64], mem_id[64];
        int ret;

        ret = snapshot_read_state(path, &payload, &len, err);
        if (ret)
                return ret;
        snapbuf_reader_init(&r, payload, len);
        if (snapbuf_get_section(&r, SNAPSHOT_TAG_INFO, &sec, "INFO") &&
            !snapshot_info_load(&sec, &info))
                snapbuf_merge(&r, &sec);
        if (!snapbuf_ok(&r)) {
                ret = error_config(err, "snapshot state file '%s': %s", path, r.err);
                goto out;
        }
        secs = (time_t)(info.created_ns / 1000000000ull);
        gmtime_r(&secs, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        outf(out, "state file: %s\n", path);
        outf(out, "format version: %u\n", SNAPSHOT_VERSION);
        outf(out, "snapshot type: %s\n", snapshot_type_name(info.type));
        outf(out, "created: %s by vmm %s (%s, %s host)\n", when, info.vmm_version, info.arch,
             info.cpu_vendor);
        describe_mem_id(&info.mem, mem_id, sizeof(mem_id));
        outf(out, "memory file: %s%s\n", mem_id,
             info.mem.kind == SNAPSHOT_DIFF ? " (merge it over its base before a load)" : "");
        outf(out, "memory: %llu bytes in %u region(s)", (unsigned long long)info.mem_bytes,
             info.nr_regions);
        for (unsigned i = 0; i < info.nr_regions; i++)
                outf(out, "%s 0x%llx+0x%llx", i ? "," : ":",
                     (unsigned long long)info.regions[i].gpa,
                     (unsigned long long)info.regions[i].size);
        outf(out, "\n");
        if (snapbuf_get_section(&r, SNAPSHOT_TAG_CONF, &sec, "CONF")) {
                if (snapshot_config_load(&sec, &cfg))
                        describe_config(out, &cfg);
                snapbuf_merge(&r, &sec);
                vmm_config_free(&cfg);
        }
        if (snapbuf_ok(&r) && snapbuf_get_section(&r, SNAPSHOT_TAG_CPUC, &sec, "CPUC")) {
                struct x86_cpu_record *cpu = calloc(1, sizeof(*cpu));

                if (!cpu) {
                        ret = error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
                if (x86_cpu_record_load(&sec, cpu))
                        describe_cpu(out, cpu);
                snapbuf_merge(&r, &sec);
                free(cpu);
        }
        snapbuf_get_section(&r, SNAPSHOT_TAG_KVM, &sec, "KVM");
        outf(out, "%s: %zu bytes\n",
             kvm_vm_state_has_pit(&sec) ? "irqchip, PIT and clock" : "irqchip and clock (no PIT)",
             sec.len);
        for (unsigned i = 0; snapbuf_ok(&r) && i < info.nr_vcpus; i++) {
                struct x86_cpu_state_summary s = {0};

                if (!snapbuf_get_section(&r, SNAPSHOT_TAG_VCPU, &sec, "VCPU"))
                        break;
                snapbuf_get_u32(&sec, "vcpu index");
                if (x86_cpu_state_describe(&sec, &s) == 0)
                        fprintf(out,
                                "vcpu%u: rip 0x%llx cr0 0x%llx efer 0x%llx mp_state %u, %u MSRs, "
                                "%zu bytes\n",
                                i, (unsigned long long)s.rip, (unsigned long long)s.cr0,
                                (unsigned long long)s.efer, s.mp_state, s.nr_msrs, sec.len);
                snapbuf_merge(&r, &sec);
        }
        snapbuf_get_section(&r, SNAPSHOT_TAG_SERL, &sec, "serial");
        snapbuf_get_section(&r, SNAPSHOT_TAG_KBD, &sec, "i8042");
        for (unsigned i = 0; snapbuf_ok(&r) && i < info.nr_devices; i++) {
                if (!snapbuf_get_section(&r, SNAPSHOT_TAG_VDEV, &sec, "device"))
                        break;
                describe_device(out, &sec);
                snapbuf_merge(&r, &sec);
        }
        snapbuf_expect_end(&r, "state file");
        if (!snapbuf_ok(&r))
                ret = error_config(err, "snapshot state file '%s': %s", path, r.err);
out:
        free(payload);
        return ret;
}
