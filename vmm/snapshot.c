#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpu_state.h"
#include "common/fdio.h"
#include "vm_devices.h"

#define INFO_VERSION 1
#define CONF_VERSION 1
#define MAX_STR      4096 /* paths, ids, command lines */

const char *snapshot_type_name(enum snapshot_type t)
{
        return t == SNAPSHOT_DIFF ? "Diff" : "Full";
}

/* ---- the container ---- */

int snapshot_write_state(const char *path, const struct snapbuf_writer *payload, struct error *err)
{
        uint8_t hdr[SNAPSHOT_HEADER_LEN] = {0};
        char tmp[4096];
        int fd, r;

        if (payload->failed)
                return error_set(err, -ENOMEM, "out of memory while saving the VM state");
        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
                return error_config(err, "snapshot path '%s' is too long", path);
        memcpy(hdr, SNAPSHOT_MAGIC, 8);
        put_le32(hdr + 8, SNAPSHOT_VERSION);
        put_le32(hdr + 12, SNAPSHOT_HEADER_LEN);
        put_le64(hdr + 16, payload->len);
        put_le64(hdr + 24, snapbuf_crc64(0, payload->data, payload->len));
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_config(err, "snapshot state file '%s': %s", path, strerror(errno));
        r = fd_pwrite_all(fd, hdr, sizeof(hdr), 0);
        if (!r)
                r = fd_pwrite_all(fd, payload->data, payload->len, sizeof(hdr));
        if (close(fd) && !r)
                r = -errno;
        if (!r && rename(tmp, path))
                r = -errno;
        if (r) {
                unlink(tmp);
                return error_set(err, r, "snapshot state file '%s': %s", path, strerror(-r));
        }
        return 0;
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
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return error_config(err, "snapshot state file '%s': %s", path, strerror(errno));
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
                close(fd);
                return error_config(err, "snapshot state file '%s' is not a regular file", path);
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
                close(fd);
                return error_config(err,
                                    "snapshot state file '%s' has format version %u; this VMM "
                                    "reads version %u",
                                    path, get_le32(hdr + 8), SNAPSHOT_VERSION);
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
        uint8_t type;

        memset(info, 0, sizeof(*info));
        if (snapbuf_ok(r) && version != INFO_VERSION)
                return snapbuf_fail(r, "INFO", "unknown version");
        get_fixed_str(r, info->vmm_version, sizeof(info->vmm_version), "VMM version");
        get_fixed_str(r, info->arch, sizeof(info->arch), "architecture");
        type = snapbuf_get_u8(r, "snapshot type");
        info->created_ns = snapbuf_get_u64(r, "creation time");
        get_fixed_str(r, info->cpu_vendor, sizeof(info->cpu_vendor), "CPU vendor");
        info->mem_bytes = snapbuf_get_u64(r, "memory size");
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
        info->type = (enum snapshot_type)type;
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
        snapbuf_put_u8(w, (uint8_t)cfg->balloon.access_platform);
        snapbuf_put_bool(w, cfg->entropy.present);
        put_limiter(w, &cfg->entropy.rate_limiter);
        snapbuf_put_u8(w, (uint8_t)cfg->entropy.access_platform);
        snapbuf_put_u8(w, (uint8_t)cfg->confidential.platform);
        snapbuf_put_bool(w, cfg->boot_timer);
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

bool snapshot_config_load(struct snapbuf_reader *r, struct vmm_config *cfg)
{
        uint32_t version = snapbuf_get_u32(r, "CONF version");

        vmm_config_init(cfg);
        if (snapbuf_ok(r) && version != CONF_VERSION)
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
        cfg->balloon.access_platform = get_ap(r);
        cfg->entropy.present = snapbuf_get_bool(r, "entropy");
        get_limiter(r, &cfg->entropy.rate_limiter);
        cfg->entropy.access_platform = get_ap(r);
        cfg->confidential.platform = get_enum(r, CC_PLATFORM_S390_PV, "confidential platform");
        cfg->boot_timer = snapbuf_get_bool(r, "boot timer");
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
        uint64_t entries[512];
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
                        data = pp.pagemap < 0 || (entries[k] & (3ull << 62)) ||
                               file_has_data(&pp, (off_t)(reg.offset + off));
                        if (data && !page_zero(p)) {
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

int snapshot_write_memory(const struct guest_mem *mem, const char *path, const uint64_t *dirty,
                          struct error *err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int r;

        if (fd < 0)
                return error_config(err, "snapshot memory file '%s': %s", path, strerror(errno));
        r = ftruncate(fd, (off_t)guest_mem_size(mem)) ? -errno : 0;
        if (!r)
                r = dirty ? write_diff(mem, fd, dirty) : write_full(mem, fd);
        if (close(fd) && !r)
                r = -errno;
        if (r) {
                unlink(path);
                return error_set(err, r, "snapshot memory file '%s': %s", path, strerror(-r));
        }
        return 0;
}

int snapshot_merge_memory(const char *base, const char *diff, struct error *err)
{
        struct stat sb, sd;
        uint8_t *buf = NULL;
        off_t off = 0, end;
        int bfd, dfd, r = 0;

        bfd = open(base, O_WRONLY | O_CLOEXEC);
        if (bfd < 0)
                return error_config(err, "base memory file '%s': %s", base, strerror(errno));
        dfd = open(diff, O_RDONLY | O_CLOEXEC);
        if (dfd < 0) {
                r = error_config(err, "diff memory file '%s': %s", diff, strerror(errno));
                close(bfd);
                return r;
        }
        if (fstat(bfd, &sb) || fstat(dfd, &sd) || sb.st_size != sd.st_size) {
                r = error_config(err,
                                 "the diff memory file '%s' and the base '%s' differ in size: not "
                                 "snapshots of the same VM",
                                 diff, base);
                goto out;
        }
        buf = malloc(1u << 20);
        if (!buf) {
                r = error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        while (!r && off < sd.st_size) {
                off = lseek(dfd, off, SEEK_DATA);
                if (off < 0)
                        break; /* ENXIO: no more data */
                end = lseek(dfd, off, SEEK_HOLE);
                if (end < 0)
                        end = sd.st_size;
                while (!r && off < end) {
                        size_t n = end - off > (off_t)(1u << 20) ? (1u << 20) : (size_t)(end - off);
                        ssize_t got = pread(dfd, buf, n, off);

                        if (got <= 0) {
                                r = error_set(err, got < 0 ? -errno : -EIO, "reading '%s': %s",
                                              diff, strerror(got < 0 ? errno : EIO));
                                break;
                        }
                        if (fd_pwrite_all(bfd, buf, (size_t)got, off)) {
                                r = error_set(err, -errno, "writing '%s': %s", base,
                                              strerror(errno));
                                break;
                        }
                        off += got;
                }
        }
        if (!r && fsync(bfd))
                r = error_set(err, -errno, "writing '%s': %s", base, strerror(errno));
out:
        free(buf);
        close(bfd);
        close(dfd);
        return r;
}

/* ---- --describe-snapshot ---- */

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
        default:
                return "?";
        }
}

static void describe_config(FILE *out, const struct vmm_config *c)
{
        fprintf(out, "machine: %u vCPU(s), %llu MiB%s%s%s, track_dirty_pages %s\n",
                c->machine.vcpu_count, (unsigned long long)c->machine.mem_size_mib,
                c->machine.huge_pages ? ", 2 MiB huge pages" : "",
                c->machine.cpu_hide ? ", cpu_hide " : "",
                c->machine.cpu_hide ? c->machine.cpu_hide : "",
                c->machine.track_dirty_pages ? "on" : "off");
        fprintf(out, "kernel: %s\n",
                c->boot.kernel_image_path ? c->boot.kernel_image_path : "(none)");
        for (unsigned i = 0; i < c->nr_drives; i++)
                fprintf(out, "drive %s: %s%s%s\n", c->drives[i].drive_id, c->drives[i].path_on_host,
                        c->drives[i].is_read_only ? " (read-only)" : "",
                        c->drives[i].is_root_device ? " (root)" : "");
        for (unsigned i = 0; i < c->nr_nets; i++)
                fprintf(out, "network interface %s: TAP %s\n", c->nets[i].iface_id,
                        c->nets[i].host_dev_name);
        if (c->vsock.present)
                fprintf(out, "vsock: guest CID %u, %s\n", c->vsock.guest_cid, c->vsock.uds_path);
        if (c->balloon.present)
                fprintf(out, "balloon: %u MiB, statistics every %u s\n", c->balloon.amount_mib,
                        c->balloon.stats_polling_interval_s);
        if (c->entropy.present)
                fprintf(out, "entropy: yes\n");
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
                fprintf(out, "device %s%s%s: status 0x%02x%s, %zu bytes of device state\n",
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
        char when[64];
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
        fprintf(out, "state file: %s\nformat version: %u\n", path, SNAPSHOT_VERSION);
        fprintf(out, "snapshot type: %s\ncreated: %s by vmm %s (%s, %s host)\n",
                snapshot_type_name(info.type), when, info.vmm_version, info.arch, info.cpu_vendor);
        fprintf(out, "memory: %llu bytes in %u region(s)", (unsigned long long)info.mem_bytes,
                info.nr_regions);
        for (unsigned i = 0; i < info.nr_regions; i++)
                fprintf(out, "%s 0x%llx+0x%llx", i ? "," : ":",
                        (unsigned long long)info.regions[i].gpa,
                        (unsigned long long)info.regions[i].size);
        fprintf(out, "\n");
        if (snapbuf_get_section(&r, SNAPSHOT_TAG_CONF, &sec, "CONF")) {
                if (snapshot_config_load(&sec, &cfg))
                        describe_config(out, &cfg);
                snapbuf_merge(&r, &sec);
                vmm_config_free(&cfg);
        }
        snapbuf_get_section(&r, SNAPSHOT_TAG_KVM, &sec, "KVM");
        fprintf(out, "irqchip, PIT and clock: %zu bytes\n", sec.len);
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
