/*
 * Snapshot files without KVM (vmm/snapshot.h): the state file's envelope (round trip;
 * truncated, corrupted, unknown-version, wrong-magic and over-long files refused with their
 * own message), the configuration encoding (every field round trips; any prefix or bit flip
 * of it is refused or read safely), the memory file (a Full one is sparse and holds every
 * non-zero page; a Diff holds exactly the dirty pages, zero pages included; merging the Diff
 * over the Full gives the memory as it was at the Diff) and --describe-snapshot's summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/cpu_template.h"
#include "vmm/snapshot.h"

static char dir[] = "/tmp/test_snapshot_file.XXXXXX";

static void path_of(char *buf, const char *name)
{
        snprintf(buf, 256, "%s/%s", dir, name);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "wb");

        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
        FILE *f = fopen(path, "rb");
        uint8_t *b;
        long len;

        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        fseek(f, 0, SEEK_SET);
        b = malloc((size_t)len + 1);
        assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        *n = (size_t)len;
        return b;
}

/* Writes a memory file of mem at path with this identity; returns its id. */
static uint64_t write_mem(const struct guest_mem *mem, const char *path, const uint64_t *dirty,
                          uint64_t parent)
{
        struct snapshot_mem_id id = {.kind = dirty ? SNAPSHOT_DIFF : SNAPSHOT_FULL,
                                     .ram_bytes = guest_mem_size(mem),
                                     .id = snapshot_new_id(),
                                     .parent = parent};
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(snapshot_write_memory(mem, fd, dirty, NULL, &id), 0);
        close(fd);
        return id.id;
}

/* A configuration with every field set to something other than its default. */
static void sample_config(struct vmm_config *c)
{
        vmm_config_init(c);
        assert_int_equal(vmm_config_set_str(&c->boot.kernel_image_path, "/k"), 0);
        assert_int_equal(vmm_config_set_str(&c->boot.initrd_path, "/i"), 0);
        assert_int_equal(vmm_config_set_str(&c->boot.boot_args, "console=ttyS0 probe=x"), 0);
        c->machine.vcpu_count = 3;
        c->machine.mem_size_mib = 4096;
        c->machine.huge_pages = true;
        assert_int_equal(vmm_config_set_str(&c->machine.cpu_hide, "cx16,xsave"), 0);
        c->machine.track_dirty_pages = true;
        c->nr_drives = 2;
        for (unsigned i = 0; i < 2; i++) {
                struct vmm_drive *d = &c->drives[i];

                assert_int_equal(vmm_config_set_str(&d->drive_id, i ? "data" : "root"), 0);
                assert_int_equal(vmm_config_set_str(&d->path_on_host, i ? "/d" : "/r"), 0);
                d->is_root_device = i == 0;
                d->is_read_only = i == 1;
                d->cache_type = VMM_CACHE_WRITEBACK;
                d->io_engine = i ? VMM_IO_ASYNC : VMM_IO_SYNC;
                d->rate_limiter.present = true;
                d->rate_limiter.cfg.bandwidth.size = 1000 + i;
                d->rate_limiter.cfg.ops.refill_time_ms = 7;
                d->access_platform = VMM_AP_REQUIRED;
        }
        assert_int_equal(vmm_config_set_str(&c->drives[0].partuuid, "abcd-01"), 0);
        c->nr_nets = 1;
        assert_int_equal(vmm_config_set_str(&c->nets[0].iface_id, "eth0"), 0);
        assert_int_equal(vmm_config_set_str(&c->nets[0].host_dev_name, "tap0"), 0);
        c->nets[0].has_mac = true;
        memcpy(c->nets[0].guest_mac, "\x02\x00\x00\x00\x00\x01", 6);
        c->nets[0].mtu = 1400;
        c->nets[0].tx_rate_limiter.present = true;
        c->nets[0].tx_rate_limiter.cfg.ops.one_time_burst = 99;
        c->vsock.present = true;
        c->vsock.guest_cid = 42;
        assert_int_equal(vmm_config_set_str(&c->vsock.uds_path, "/v.sock"), 0);
        assert_int_equal(vmm_config_set_str(&c->vsock.vsock_id, "vs"), 0);
        c->balloon.present = true;
        c->balloon.amount_mib = 12;
        c->balloon.deflate_on_oom = true;
        c->balloon.stats_polling_interval_s = 5;
        c->balloon.free_page_reporting = true;
        c->balloon.free_page_hinting = true;
        c->entropy.present = true;
        c->entropy.access_platform = VMM_AP_OFF;
        c->boot_timer = true;
}

static void assert_same_config(const struct vmm_config *a, const struct vmm_config *b)
{
        assert_string_equal(a->boot.kernel_image_path, b->boot.kernel_image_path);
        assert_string_equal(a->boot.initrd_path, b->boot.initrd_path);
        assert_string_equal(a->boot.boot_args, b->boot.boot_args);
        assert_memory_equal(&a->machine.vcpu_count, &b->machine.vcpu_count, sizeof(unsigned));
        assert_true(a->machine.mem_size_mib == b->machine.mem_size_mib);
        assert_int_equal(a->machine.huge_pages, b->machine.huge_pages);
        assert_string_equal(a->machine.cpu_hide, b->machine.cpu_hide);
        assert_int_equal(a->machine.track_dirty_pages, b->machine.track_dirty_pages);
        assert_int_equal(a->nr_drives, b->nr_drives);
        for (unsigned i = 0; i < a->nr_drives; i++) {
                const struct vmm_drive *x = &a->drives[i], *y = &b->drives[i];

                assert_string_equal(x->drive_id, y->drive_id);
                assert_string_equal(x->path_on_host, y->path_on_host);
                assert_int_equal(x->is_root_device, y->is_root_device);
                assert_int_equal(x->is_read_only, y->is_read_only);
                assert_true((!x->partuuid && !y->partuuid) || !strcmp(x->partuuid, y->partuuid));
                assert_int_equal(x->cache_type, y->cache_type);
                assert_int_equal(x->io_engine, y->io_engine);
                assert_memory_equal(&x->rate_limiter, &y->rate_limiter, sizeof(x->rate_limiter));
                assert_int_equal(x->access_platform, y->access_platform);
        }
        assert_int_equal(a->nr_nets, b->nr_nets);
        assert_string_equal(a->nets[0].iface_id, b->nets[0].iface_id);
        assert_string_equal(a->nets[0].host_dev_name, b->nets[0].host_dev_name);
        assert_memory_equal(a->nets[0].guest_mac, b->nets[0].guest_mac, 6);
        assert_int_equal(a->nets[0].mtu, b->nets[0].mtu);
        assert_memory_equal(&a->nets[0].tx_rate_limiter, &b->nets[0].tx_rate_limiter,
                            sizeof(struct vmm_rate_limiter));
        assert_int_equal(a->vsock.guest_cid, b->vsock.guest_cid);
        assert_string_equal(a->vsock.uds_path, b->vsock.uds_path);
        assert_string_equal(a->vsock.vsock_id, b->vsock.vsock_id);
        assert_int_equal(a->balloon.amount_mib, b->balloon.amount_mib);
        assert_int_equal(a->balloon.deflate_on_oom, b->balloon.deflate_on_oom);
        assert_int_equal(a->balloon.stats_polling_interval_s, b->balloon.stats_polling_interval_s);
        assert_int_equal(a->balloon.free_page_reporting, b->balloon.free_page_reporting);
        assert_int_equal(a->balloon.free_page_hinting, b->balloon.free_page_hinting);
        assert_int_equal(a->entropy.present, b->entropy.present);
        assert_int_equal(a->entropy.access_platform, b->entropy.access_platform);
        assert_int_equal(a->boot_timer, b->boot_timer);
}

static void test_config_round_trip_and_damage(void **state)
{
        struct snapbuf_writer w;
        struct snapbuf_reader r;
        struct vmm_config in, out;

        (void)state;
        sample_config(&in);
        snapbuf_writer_init(&w);
        snapshot_config_save(&w, &in);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_true(snapshot_config_load(&r, &out));
        assert_same_config(&in, &out);
        vmm_config_free(&out);
        /* Every prefix is refused; every bit flip is refused or read without harm. */
        for (size_t n = 0; n < w.len; n++) {
                uint8_t *copy = malloc(n ? n : 1);

                memcpy(copy, w.data, n);
                snapbuf_reader_init(&r, copy, n);
                assert_false(snapshot_config_load(&r, &out));
                vmm_config_free(&out);
                free(copy);
        }
        for (size_t i = 0; i < w.len; i++) {
                uint8_t *copy = malloc(w.len);

                memcpy(copy, w.data, w.len);
                copy[i] ^= 0x81;
                snapbuf_reader_init(&r, copy, w.len);
                (void)snapshot_config_load(&r, &out);
                vmm_config_free(&out);
                free(copy);
        }
        snapbuf_writer_free(&w);
        vmm_config_free(&in);
}

static void test_state_file_envelope(void **state)
{
        struct snapbuf_writer w;
        struct error err = {0};
        char path[256], bad[256];
        uint8_t *payload, *file;
        size_t len, flen;

        (void)state;
        path_of(path, "state");
        path_of(bad, "bad");
        snapbuf_writer_init(&w);
        for (unsigned i = 0; i < 1000; i++)
                snapbuf_put_u32(&w, i * 2654435761u);
        assert_int_equal(snapshot_write_state(path, &w, &err), 0);
        assert_int_equal(snapshot_read_state(path, &payload, &len, &err), 0);
        assert_int_equal(len, w.len);
        assert_memory_equal(payload, w.data, len);
        free(payload);

        file = read_bytes(path, &flen);
        assert_int_equal(flen, SNAPSHOT_HEADER_LEN + w.len);
        struct {
                const char *name;
                size_t len;
                void (*damage)(uint8_t *f, size_t n);
                const char *message;
        } cases[] = {
            {"truncated", flen - 1, NULL, "is truncated"},
            {"header", 12, NULL, "is truncated"},
            {"empty", 0, NULL, "is truncated"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                error_clear(&err);
                write_bytes(bad, file, cases[i].len);
                assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
                assert_int_equal(err.kind, ERROR_CONFIG);
                if (!strstr(err.msg, cases[i].message))
                        fail_msg("%s: %s", cases[i].name, err.msg);
                assert_null(payload);
        }
        /* One flipped bit anywhere in the payload: the checksum. */
        for (size_t off = SNAPSHOT_HEADER_LEN; off < flen; off += 97) {
                file[off] ^= 0x10;
                write_bytes(bad, file, flen);
                file[off] ^= 0x10;
                error_clear(&err);
                assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "is corrupted (checksum mismatch)"));
        }
        /* Another version, another magic, a longer file, a payload length past the limit. */
        file[8] = 1;
        write_bytes(bad, file, flen);
        error_clear(&err);
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "has format version 1; this VMM reads version 3 (an older "
                                        "vmm wrote it: take the snapshot again with this one)"));
        file[8] = 4;
        write_bytes(bad, file, flen);
        error_clear(&err);
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "has format version 4; this VMM reads version 3 (a newer "
                                        "vmm wrote it)"));
        file[8] = 3;
        file[0] = 'X';
        write_bytes(bad, file, flen);
        error_clear(&err);
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not a snapshot state file"));
        file[0] = 'V';
        file = realloc(file, flen + 1);
        file[flen] = 0;
        write_bytes(bad, file, flen + 1);
        error_clear(&err);
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "corrupted"));
        put_le64(file + 16, 1ull << 62);
        write_bytes(bad, file, flen);
        error_clear(&err);
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "corrupted header"));
        error_clear(&err);
        path_of(bad, "missing");
        assert_int_equal(snapshot_read_state(bad, &payload, &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "No such file"));
        free(file);
        snapbuf_writer_free(&w);
}

static bool page_is(const uint8_t *p, uint8_t v)
{
        for (size_t i = 0; i < GUEST_MEM_PAGE; i++)
                if (p[i] != v)
                        return false;
        return true;
}

static void test_memory_full_diff_merge(void **state)
{
        /* 4 MiB of RAM around a hole: two regions, the memory file back to back. */
        struct guest_mem_spec spec = {.size = MiB(4), .hole_start = MiB(1), .hole_end = MiB(2)};
        struct guest_mem *mem;
        struct error err = {0};
        char full[256], diff[256];
        uint64_t *dirty, full_id, diff_id;
        struct snapshot_mem_id id;
        uint8_t *f;
        size_t n;
        struct stat st;
        int fd;

        (void)state;
        path_of(full, "full.mem");
        path_of(diff, "diff.mem");
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        assert_int_equal(guest_mem_track_dirty(mem), 0);
        assert_int_equal(guest_mem_fill(mem, 0x3000, 0x11, GUEST_MEM_PAGE), 0);
        assert_int_equal(guest_mem_fill(mem, MiB(2) + 0x5000, 0x22, GUEST_MEM_PAGE), 0);
        assert_int_equal(guest_mem_fill(mem, 0x8000, 0, GUEST_MEM_PAGE), 0); /* dirty, zero */
        /* Full: every non-zero page, a sparse file of the RAM's size and the trailer. */
        full_id = write_mem(mem, full, NULL, 0);
        assert_int_equal(stat(full, &st), 0);
        assert_int_equal(st.st_size, MiB(4) + SNAPSHOT_MEM_TRAILER_LEN);
        assert_true((uint64_t)st.st_blocks * 512 < MiB(1));
        f = read_bytes(full, &n);
        assert_true(page_is(f + 0x3000, 0x11));
        assert_true(page_is(f + MiB(1) + 0x5000, 0x22)); /* the high region at offset 1 MiB */
        assert_true(page_is(f + 0x4000, 0));
        free(f);
        /* What changed since: pages the record has (the Full took the record's pages too). */
        dirty = calloc(guest_mem_bitmap_words(mem), sizeof(uint64_t));
        guest_mem_take_dirty(mem, dirty);
        assert_true(dirty[0] & (1ull << 3));
        memset(dirty, 0, guest_mem_bitmap_words(mem) * sizeof(uint64_t));
        assert_int_equal(guest_mem_fill(mem, 0x3000, 0, GUEST_MEM_PAGE), 0);  /* zeroed */
        assert_int_equal(guest_mem_fill(mem, MiB(2) + 0x9000, 0x33, 100), 0); /* new page */
        guest_mem_take_dirty(mem, dirty);
        diff_id = write_mem(mem, diff, dirty, full_id);
        assert_int_equal(stat(diff, &st), 0);
        assert_int_equal(st.st_size, MiB(4) + SNAPSHOT_MEM_TRAILER_LEN);
        assert_true((uint64_t)st.st_blocks * 512 <= 5 * GUEST_MEM_PAGE);
        /* Merged over the Full: the memory of the Diff's moment, named as the Diff's. */
        assert_int_equal(snapshot_merge_memory(full, diff, &err), 0);
        fd = open(full, O_RDONLY);
        assert_int_equal(snapshot_read_mem_id(fd, &id), 0);
        close(fd);
        assert_int_equal(id.kind, SNAPSHOT_FULL);
        assert_true(id.id == diff_id);
        /* Once merged, the same Diff does not go over it again (it is no longer its base). */
        assert_int_equal(snapshot_merge_memory(full, diff, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "in the order they were taken"));
        error_clear(&err);
        f = read_bytes(full, &n);
        assert_true(page_is(f + 0x3000, 0));             /* the Diff's zero page won */
        assert_true(page_is(f + MiB(1) + 0x5000, 0x22)); /* untouched: the Full's */
        assert_int_equal(f[MiB(1) + 0x9000], 0x33);
        free(f);
        /* Files of different machines do not merge. */
        assert_int_equal(truncate(diff, MiB(2)), 0);
        assert_int_equal(snapshot_merge_memory(full, diff, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not a snapshot memory file"));
        free(dirty);
        guest_mem_destroy(mem);
}

static void test_memory_from_file_is_private(void **state)
{
        struct guest_mem_spec spec = {.size = MiB(2), .hole_start = GiB(3), .hole_end = GiB(4)};
        struct guest_mem *mem, *back;
        struct error err = {0};
        char full[256];
        uint8_t b = 0;
        int fd;

        (void)state;
        path_of(full, "private.mem");
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        assert_int_equal(guest_mem_fill(mem, 0x1000, 0x5a, GUEST_MEM_PAGE), 0);
        write_mem(mem, full, NULL, 0);
        fd = open(full, O_RDONLY);
        assert_true(fd >= 0);
        spec.flags = GUEST_MEM_FILE;
        spec.file = fd;
        assert_int_equal(guest_mem_create(&spec, &err, &back), 0);
        close(fd);
        assert_int_equal(guest_mem_backing_file(back) >= 0, 1);
        assert_int_equal(guest_mem_read(back, 0x1000, &b, 1), 0);
        assert_int_equal(b, 0x5a);
        /* Writes stay in the mapping. */
        assert_int_equal(guest_mem_fill(back, 0x1000, 0x77, 1), 0);
        guest_mem_destroy(back);
        fd = open(full, O_RDONLY);
        assert_int_equal(pread(fd, &b, 1, 0x1000), 1);
        assert_int_equal(b, 0x5a);
        close(fd);
        /* A Full snapshot of memory mapped from a file reads through the mapping. */
        guest_mem_destroy(mem);
}

/* An INFO section of a 4 MiB machine whose memory file is id. */
static struct snapshot_info info_of(uint64_t id)
{
        struct snapshot_info info = {.vmm_version = "t",
                                     .arch = "x86_64",
                                     .cpu_vendor = "AuthenticAMD",
                                     .mem_bytes = MiB(4),
                                     .mem = {.kind = SNAPSHOT_FULL, .ram_bytes = MiB(4), .id = id},
                                     .nr_regions = 1};

        info.regions[0].size = MiB(4);
        return info;
}

static uint64_t fd_mem_id(int fd)
{
        struct snapshot_mem_id id;

        assert_true(fd >= 0);
        assert_int_equal(snapshot_read_mem_id(fd, &id), 0);
        close(fd);
        return id.id;
}

static void expect_open_refused(const char *path, uint64_t id, const char *needle)
{
        struct snapshot_info info = info_of(id);
        struct error err = {0};

        assert_true(snapshot_open_memory(path, &info, &err) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle))
                fail_msg("%s: '%s' lacks '%s'", path, err.msg, needle);
}

/* The virtio-mem region after RAM: its plugged blocks at their offsets (the rest holes),
 * the trailer (version 2) covering both; read back into a region with the same bitmap. A
 * version 1 trailer (before the region) is still read; a Diff with the region is refused. */
static void test_memory_hotplug_region(void **state)
{
        struct guest_mem_spec spec = {.size = MiB(4), .hole_start = GiB(3), .hole_end = GiB(4)};
        const uint64_t bs = MiB(2), nblocks = 4;
        uint64_t bitmap = 0x5, dirty[64] = {0}; /* blocks 0 and 2 */
        uint8_t *host = calloc(nblocks, bs), *back = calloc(nblocks, bs), t[48];
        struct virtio_mem_layout hp = {host, bs, nblocks, &bitmap};
        struct virtio_mem_layout rd = {back, bs, nblocks, &bitmap};
        struct snapshot_mem_id id = {.kind = SNAPSHOT_FULL,
                                     .ram_bytes = MiB(4),
                                     .hotplug_bytes = nblocks * bs,
                                     .id = snapshot_new_id()};
        struct snapshot_mem_id got;
        struct guest_mem *mem;
        struct error err = {0};
        char path[256];
        struct stat st;
        int fd;

        (void)state;
        path_of(path, "hotplug.mem");
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        memset(host, 0x44, nblocks * bs); /* block 1 and 3 too: unplugged, not written */
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(snapshot_write_memory(mem, fd, dirty, &hp, &id), -EINVAL); /* Diff */
        assert_int_equal(snapshot_write_memory(mem, fd, NULL, NULL, &id), -EINVAL); /* size */
        assert_int_equal(snapshot_write_memory(mem, fd, NULL, &hp, &id), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, MiB(4) + MiB(8) + SNAPSHOT_MEM_TRAILER_LEN);
        assert_true((uint64_t)st.st_blocks * 512 <= MiB(4) + 64 * 1024); /* two blocks */
        assert_int_equal(snapshot_read_mem_id(fd, &got), 0);
        assert_int_equal(got.ram_bytes, MiB(4));
        assert_int_equal(got.hotplug_bytes, MiB(8));
        assert_true(got.id == id.id);
        assert_int_equal(snapshot_read_hotplug(fd, &got, &rd), 0);
        assert_true(page_is(back, 0x44) && page_is(back + 2 * bs + bs - GUEST_MEM_PAGE, 0x44));
        assert_true(page_is(back + bs, 0) && page_is(back + 3 * bs, 0));
        rd.nr_blocks = 2; /* a region of another size */
        assert_int_equal(snapshot_read_hotplug(fd, &got, &rd), -EINVAL);
        /* A trailer whose sizes do not add up to what is before it. */
        assert_int_equal(pread(fd, t, sizeof(t), MiB(12)), (ssize_t)sizeof(t));
        put_le64(t + 40, MiB(6));
        assert_int_equal(pwrite(fd, t, sizeof(t), MiB(12)), (ssize_t)sizeof(t));
        assert_int_equal(snapshot_read_mem_id(fd, &got), -EINVAL);
        /* Version 1 (no region): RAM only. */
        put_le32(t + 8, 1);
        put_le64(t + 16, MiB(12));
        assert_int_equal(pwrite(fd, t, sizeof(t), MiB(12)), (ssize_t)sizeof(t));
        assert_int_equal(snapshot_read_mem_id(fd, &got), 0);
        assert_int_equal(got.ram_bytes, MiB(12));
        assert_int_equal(got.hotplug_bytes, 0);
        put_le32(t + 8, 3);
        assert_int_equal(pwrite(fd, t, sizeof(t), MiB(12)), (ssize_t)sizeof(t));
        assert_int_equal(snapshot_read_mem_id(fd, &got), -EINVAL);
        close(fd);
        guest_mem_destroy(mem);
        free(host);
        free(back);
}

static void test_memory_identity(void **state)
{
        struct guest_mem_spec spec = {.size = MiB(4), .hole_start = GiB(3), .hole_end = GiB(4)};
        struct guest_mem *mem;
        struct snapshot_info info;
        struct error err = {0};
        char a[256], b[256], d[256], small[256], empty[256], keep[300];
        static const uint8_t zeros[4096];
        uint64_t ida, idb, idd, *dirty;

        (void)state;
        path_of(a, "a.mem");
        path_of(b, "b.mem");
        path_of(d, "d.mem");
        path_of(small, "small.mem");
        path_of(empty, "empty.mem");
        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        assert_int_equal(guest_mem_fill(mem, 0x3000, 0x11, GUEST_MEM_PAGE), 0);
        /* Two snapshots of the same memory: same size, same bytes, different snapshots. */
        ida = write_mem(mem, a, NULL, 0);
        idb = write_mem(mem, b, NULL, 0);
        info = info_of(ida);
        assert_true(fd_mem_id(snapshot_open_memory(a, &info, &err)) == ida);
        expect_open_refused(b, ida, "belongs to another snapshot");
        dirty = calloc(guest_mem_bitmap_words(mem), sizeof(uint64_t));
        dirty[0] = 1u << 3;
        idd = write_mem(mem, d, dirty, ida);
        expect_open_refused(d, idd, "is a Diff that was not merged");
        write_bytes(small, zeros, sizeof(zeros));
        expect_open_refused(small, ida, "is not a snapshot memory file");
        write_bytes(empty, zeros, 0);
        expect_open_refused(empty, ida, "is empty: not a snapshot memory file");
        expect_open_refused("/proc/self/mem", ida, "is empty: not a snapshot memory file");
        expect_open_refused("/dev/zero", ida, "is not a regular file: it is a character device");
        expect_open_refused(dir, ida, "is not a regular file: it is a directory");
        /* A state file whose memory file was replaced by a create that did not finish: its
         * own memory file is the one the create kept. */
        snprintf(keep, sizeof(keep), "%s.%016llx.keep", b, (unsigned long long)ida);
        assert_int_equal(link(a, keep), 0);
        assert_true(fd_mem_id(snapshot_open_memory(b, &info, &err)) == ida);
        info = info_of(idb);
        assert_true(fd_mem_id(snapshot_open_memory(b, &info, &err)) == idb);
        unlink(keep);
        free(dirty);
        guest_mem_destroy(mem);
}

static int kill_at_step;

static void kill_hook(unsigned step)
{
        if ((int)step == kill_at_step)
                _exit(0); /* no clean-up: as SIGKILL */
}

/* A snapshot of memory filled with byte: its files at state/mem through snapshot_files, a
 * kill simulated after commit step kill_at (0: before the commit; 5: none). */
static void make_snapshot(const char *state, const char *mem_path, uint8_t byte, int kill_at,
                          int *restored_from)
{
        struct guest_mem_spec spec = {.size = MiB(4), .hole_start = GiB(3), .hole_end = GiB(4)};
        struct snapshot_files files;
        struct snapbuf_writer w;
        struct snapshot_info info;
        struct guest_mem *mem;
        struct error err = {0};
        size_t sec;
        int r;

        assert_int_equal(guest_mem_create(&spec, &err, &mem), 0);
        assert_int_equal(guest_mem_fill(mem, 0, byte, MiB(4)), 0);
        info = info_of(snapshot_new_id());
        r = snapshot_files_begin(&files, state, mem_path, restored_from ? *restored_from : -1,
                                 info.mem.id, &err);
        if (r) {
                guest_mem_destroy(mem);
                fail_msg("%s", err.msg);
        }
        kill_at_step = kill_at;
        files.step_hook = kill_hook;
        assert_int_equal(
            snapshot_write_memory(mem, snapshot_files_mem_fd(&files), NULL, NULL, &info.mem), 0);
        if (kill_at == 0)
                _exit(0);
        snapbuf_writer_init(&w);
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_INFO);
        snapshot_info_save(&w, &info);
        snapbuf_end_section(&w, sec);
        r = snapshot_files_commit(&files, &w, &err);
        snapshot_files_end(&files);
        snapbuf_writer_free(&w);
        guest_mem_destroy(mem);
        if (r)
                fail_msg("%s", err.msg);
}

/* The snapshot at state/mem loads, consistently: its memory file is the one its state file
 * names. Returns the byte its memory holds. */
static uint8_t load_byte(const char *state, const char *mem)
{
        struct snapbuf_reader r, sec;
        struct snapshot_info info;
        struct error err = {0};
        uint8_t *payload, byte = 0;
        size_t len;
        int fd;

        if (snapshot_read_state(state, &payload, &len, &err))
                fail_msg("%s", err.msg);
        snapbuf_reader_init(&r, payload, len);
        assert_true(snapbuf_get_section(&r, SNAPSHOT_TAG_INFO, &sec, "INFO"));
        assert_true(snapshot_info_load(&sec, &info));
        free(payload);
        fd = snapshot_open_memory(mem, &info, &err);
        if (fd < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(pread(fd, &byte, 1, 0x5000), 1);
        close(fd);
        return byte;
}

static void run_killed(const char *state, const char *mem, uint8_t byte, int kill_at)
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
                make_snapshot(state, mem, byte, kill_at, NULL);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Killed at any step of a create over an existing snapshot, the snapshot at the paths is
 * still whole: the old one until the state file's rename, the new one from then on. */
static void test_create_killed_at_every_step(void **state)
{
        char s[256], m[256];

        (void)state;
        path_of(s, "k.state");
        path_of(m, "k.mem");
        make_snapshot(s, m, 0x41, 5, NULL);
        for (int k = 0; k <= 5; k++) {
                uint8_t before = load_byte(s, m), after;

                run_killed(s, m, (uint8_t)(before + 1), k);
                after = load_byte(s, m);
                if (k < 4)
                        assert_int_equal(after, before);
                else
                        assert_int_equal(after, before + 1);
        }
}

static unsigned entries(void)
{
        char cmd[300], out[32] = {0};
        FILE *p;

        snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
        p = popen(cmd, "r");
        assert_non_null(fgets(out, sizeof(out), p));
        pclose(p);
        return (unsigned)atoi(out);
}

static void expect_begin_refused(const char *s, const char *m, int from, const char *needle)
{
        struct snapshot_files files;
        struct error err = {0};
        unsigned before = entries();

        assert_int_equal(snapshot_files_begin(&files, s, m, from, 1, &err), -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle))
                fail_msg("'%s' lacks '%s'", err.msg, needle);
        assert_int_equal(entries(), before); /* nothing created, nothing removed */
}

static void test_create_refusals(void **state)
{
        char s[256], m[256], link_m[256], node[256], cmd[600];
        struct stat st;
        int fd, status;
        pid_t pid;

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -f '%s'/*", dir);
        assert_int_equal(system(cmd), 0);
        path_of(s, "r.state");
        path_of(m, "r.mem");
        path_of(link_m, "r.link");
        path_of(node, "r.node");
        make_snapshot(s, m, 0x33, 5, NULL);
        /* Both files at one path (even by another name): a snapshot needs two. */
        expect_begin_refused(m, m, -1, "name the same file");
        assert_int_equal(symlink("r.mem", link_m), 0);
        expect_begin_refused(link_m, m, -1, "name the same file");
        /* The memory file the VM was restored from. */
        fd = open(m, O_RDONLY);
        expect_begin_refused(s, link_m, fd, "the memory file this VM was restored from");
        close(fd);
        /* A device node: refused, and still there. */
        if (geteuid() == 0)
                assert_int_equal(mknod(node, S_IFCHR | 0600, makedev(1, 3)), 0);
        else
                snprintf(node, sizeof(node), "/dev/null");
        expect_begin_refused(s, node, -1, "is not a regular file: it is a character device");
        expect_begin_refused(node, m, -1, "is not a regular file: it is a character device");
        assert_int_equal(stat(node, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        /* A create that fails writing (a file size limit: EFBIG, as a full disk would fail):
         * the old snapshot loads, nothing of the new one is left. */
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct rlimit lim = {MiB(1), MiB(1)};
                struct guest_mem_spec spec = {
                    .size = MiB(4), .hole_start = GiB(3), .hole_end = GiB(4)};
                struct snapshot_files files;
                struct snapshot_mem_id id = {.ram_bytes = MiB(4), .id = 7};
                struct guest_mem *mem;
                struct error err = {0};

                signal(SIGXFSZ, SIG_IGN);
                if (setrlimit(RLIMIT_FSIZE, &lim) || guest_mem_create(&spec, &err, &mem) ||
                    guest_mem_fill(mem, 0, 0x77, MiB(4)) ||
                    snapshot_files_begin(&files, s, m, -1, 7, &err))
                        _exit(10);
                if (snapshot_write_memory(mem, snapshot_files_mem_fd(&files), NULL, NULL, &id) !=
                    -EFBIG)
                        _exit(11);
                snapshot_files_end(&files);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(load_byte(s, m), 0x33);
        assert_int_equal(entries(), geteuid() == 0 ? 4 : 3);
        if (geteuid() == 0)
                unlink(node);
        unlink(link_m);
}

static void test_describe(void **state)
{
        struct snapbuf_writer w;
        struct snapshot_info info = {.vmm_version = "9.9",
                                     .arch = "x86_64",
                                     .type = SNAPSHOT_DIFF,
                                     .cpu_vendor = "AuthenticAMD",
                                     .mem_bytes = MiB(64),
                                     .mem = {.kind = SNAPSHOT_DIFF, .id = 0x1234, .parent = 0x99},
                                     .nr_regions = 1};
        struct x86_cpu_record *cpu;
        struct vmm_config cfg;
        struct error err = {0};
        char path[256], out[256], *text;
        size_t sec, n;
        FILE *f;

        (void)state;
        path_of(path, "described");
        path_of(out, "described.txt");
        info.regions[0].size = MiB(64);
        sample_config(&cfg);
        snapbuf_writer_init(&w);
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_INFO);
        snapshot_info_save(&w, &info);
        snapbuf_end_section(&w, sec);
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_CONF);
        snapshot_config_save(&w, &cfg);
        snapbuf_end_section(&w, sec);
        cpu = calloc(1, sizeof(*cpu));
        assert_non_null(cpu);
        snprintf(cpu->static_template, sizeof(cpu->static_template), "T2A");
        cpu->has_template = true;
        cpu->nr_cpuid = 2;
        cpu->nr_msrs = 1;
        cpu->msrs[0] = (struct x86_msr_value){0x10a, 0x8};
        sec = snapbuf_begin_section(&w, SNAPSHOT_TAG_CPUC);
        x86_cpu_record_save(&w, cpu);
        snapbuf_end_section(&w, sec);
        free(cpu);
        /* Sections the description only sizes. */
        snapbuf_end_section(&w, snapbuf_begin_section(&w, SNAPSHOT_TAG_KVM));
        snapbuf_end_section(&w, snapbuf_begin_section(&w, SNAPSHOT_TAG_SERL));
        snapbuf_end_section(&w, snapbuf_begin_section(&w, SNAPSHOT_TAG_KBD));
        assert_int_equal(snapshot_write_state(path, &w, &err), 0);
        f = fopen(out, "w");
        assert_int_equal(snapshot_describe(path, f, &err), 0);
        fclose(f);
        text = (char *)read_bytes(out, &n);
        text[n] = '\0';
        assert_non_null(strstr(text, "format version: 3\n"));
        assert_non_null(strstr(
            text, "CPU template: T2A (static); vCPU 0's CPUID: 2 entries; MSRs: 0x10a = 0x8\n"));
        assert_non_null(strstr(text, "snapshot type: Diff\n"));
        assert_non_null(strstr(text, "by vmm 9.9 (x86_64, AuthenticAMD host)"));
        assert_non_null(strstr(text, "machine: 3 vCPU(s), 4096 MiB, 2 MiB huge pages"));
        assert_non_null(strstr(text, "drive data: /d (read-only)"));
        assert_non_null(strstr(text, "vsock: guest CID 42, /v.sock"));
        assert_non_null(strstr(text, "balloon: 12 MiB, statistics every 5 s, free page reporting, "
                                     "free page hinting\n"));
        free(text);
        vmm_config_free(&cfg);
        snapbuf_writer_free(&w);
}

static int setup(void **state)
{
        (void)state;
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[512];

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_config_round_trip_and_damage),
            cmocka_unit_test(test_state_file_envelope),
            cmocka_unit_test(test_memory_full_diff_merge),
            cmocka_unit_test(test_memory_from_file_is_private),
            cmocka_unit_test(test_memory_identity),
            cmocka_unit_test(test_memory_hotplug_region),
            cmocka_unit_test(test_create_killed_at_every_step),
            cmocka_unit_test(test_create_refusals),
            cmocka_unit_test(test_describe),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
