/* virtio-blk through the in-process driver, against a temporary file, with both engines:
 * configuration space and features, reads and writes with every chain shape, FLUSH, GET_ID,
 * DISCARD, WRITE_ZEROES, guest and host errors (injected through the backend seam), the rate
 * limiter, reset with requests in flight, malformed chains, and refused guest memory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/blk_backend.h"
#include "fakes.h"
#include "memory/ownership.h"
#include "vdriver.h"

#define MEM        (8u << 20)
#define DISK       (1u << 20) /* 2048 sectors */
#define QSIZE      16
#define PAGE       4096u
#define NO_STATUS  0xee          /* what a status byte holds before the device writes it */
#define LONG_DELAY 5000000000ull /* 5 s: only a cancel ends it early */

struct params {
        enum virtio_blk_engine engine;
        enum virtio_blk_cache cache;
        bool read_only;
        bool no_event_idx;
        const struct rate_limiter_config *limit;
};

/* Backend seam: counts the steps that ran and injects results. */
struct inject {
        unsigned runs[4];   /* steps seen, per BLK_IO_* */
        int fail_op;        /* BLK_IO_* + 1 to fail, 0: none */
        long fail_res;      /* e.g. -ENOSPC */
        int fail_times;     /* -1: always */
        int short_op;       /* BLK_IO_* + 1: the next such step moves only short_len bytes */
        uint32_t short_len; /* 0: 512 */
        int delay_op;       /* BLK_IO_* + 1: held back by delay_ns (io_uring) */
        uint64_t delay_ns;
        enum blk_io_op order[16]; /* steps in the order they completed */
        unsigned nr_order;
};

struct fx {
        struct params p;
        char path[64];
        struct guest_mem *mem;
        struct ownership *own;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_blk *blk;
        struct virtio_mmio *t;
        struct vdriver d;
        struct inject inj;
};

static const struct params P_SYNC = {.engine = VIRTIO_BLK_ENGINE_SYNC,
                                     .cache = VIRTIO_BLK_CACHE_WRITEBACK};
static const struct params P_URING = {.engine = VIRTIO_BLK_ENGINE_IO_URING,
                                      .cache = VIRTIO_BLK_CACHE_WRITEBACK};
static const struct params P_SYNC_NOEVIDX = {
    .engine = VIRTIO_BLK_ENGINE_SYNC, .cache = VIRTIO_BLK_CACHE_WRITEBACK, .no_event_idx = true};
static const struct params P_URING_NOEVIDX = {.engine = VIRTIO_BLK_ENGINE_IO_URING,
                                              .cache = VIRTIO_BLK_CACHE_WRITEBACK,
                                              .no_event_idx = true};
static const struct params P_SYNC_UNSAFE = {.engine = VIRTIO_BLK_ENGINE_SYNC,
                                            .cache = VIRTIO_BLK_CACHE_UNSAFE};
static const struct params P_URING_UNSAFE = {.engine = VIRTIO_BLK_ENGINE_IO_URING,
                                             .cache = VIRTIO_BLK_CACHE_UNSAFE};
static const struct params P_SYNC_RO = {
    .engine = VIRTIO_BLK_ENGINE_SYNC, .cache = VIRTIO_BLK_CACHE_UNSAFE, .read_only = true};
static const struct params P_URING_RO = {
    .engine = VIRTIO_BLK_ENGINE_IO_URING, .cache = VIRTIO_BLK_CACHE_UNSAFE, .read_only = true};
/* One request per 300 ms. */
static const struct rate_limiter_config limit_300ms = {.ops = {.size = 1, .refill_time_ms = 300}};
static const struct params P_SYNC_LIMITED = {
    .engine = VIRTIO_BLK_ENGINE_SYNC, .cache = VIRTIO_BLK_CACHE_WRITEBACK, .limit = &limit_300ms};
static const struct params P_URING_LIMITED = {.engine = VIRTIO_BLK_ENGINE_IO_URING,
                                              .cache = VIRTIO_BLK_CACHE_WRITEBACK,
                                              .limit = &limit_300ms};

/* ---- backend seam ---- */

static bool hit(int *op_plus_one, const struct blk_io *io)
{
        return *op_plus_one && *op_plus_one - 1 == (int)io->op;
}

static bool take_failure(struct inject *in, const struct blk_io *io)
{
        if (!hit(&in->fail_op, io) || in->fail_times == 0)
                return false;
        if (in->fail_times > 0)
                in->fail_times--;
        return true;
}

static void record(struct inject *in, const struct blk_io *io)
{
        in->runs[io->op]++;
        if (in->nr_order < 16)
                in->order[in->nr_order++] = io->op;
}

static long inj_run(void *opaque, int fd, const struct blk_io *io)
{
        struct inject *in = opaque;

        record(in, io);
        if (hit(&in->short_op, io)) {
                /* The first short_len bytes of the step's iovecs, then stop. */
                struct iovec part_iov[VIRTIO_BLK_QUEUE_SIZE];
                struct blk_io part = *io;
                size_t want = in->short_len ? in->short_len : 512, got = 0;
                int n = 0;

                for (int i = 0; i < io->iovcnt && got < want; i++) {
                        part_iov[n] = io->iov[i];
                        if (part_iov[n].iov_len > want - got)
                                part_iov[n].iov_len = want - got;
                        got += part_iov[n++].iov_len;
                }
                if (got == want) { /* the step is longer: make it short */
                        in->short_op = 0;
                        part.iov = part_iov;
                        part.iovcnt = n;
                        return blk_file_run(NULL, fd, &part);
                }
        }
        if (take_failure(in, io))
                return in->fail_res;
        return blk_file_run(NULL, fd, io);
}

static long inj_result(void *opaque, const struct blk_io *io, long res)
{
        struct inject *in = opaque;

        record(in, io);
        long want = in->short_len ? in->short_len : 512;

        if (hit(&in->short_op, io) && res > want) {
                in->short_op = 0;
                return want; /* the device must go on with the rest */
        }
        if (take_failure(in, io))
                return in->fail_res;
        return res;
}

static uint64_t inj_delay(void *opaque, const struct blk_io *io)
{
        struct inject *in = opaque;
        return hit(&in->delay_op, io) ? in->delay_ns : 0;
}

static const struct blk_backend_ops inj_ops = {
    .run = inj_run, .async_result = inj_result, .async_delay_ns = inj_delay};

/* ---- fixture ---- */

static uint8_t pattern(uint64_t off)
{
        return (uint8_t)(off * 7 + (off >> 9) + 1);
}

static void make_file(char *path, size_t cap, uint64_t size)
{
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        uint8_t buf[4096];
        int fd;

        snprintf(path, cap, "%s/vmm-blk-XXXXXX", dir);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        for (uint64_t off = 0; off < size; off += sizeof(buf)) {
                size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
                for (size_t i = 0; i < n; i++)
                        buf[i] = pattern(off + i);
                assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
        }
        close(fd);
}

static void create_device(struct fx *f, const char *drive_id)
{
        struct error err = {0};
        struct virtio_blk_config c = {.name = "block0",
                                      .drive_id = drive_id,
                                      .path = f->path,
                                      .read_only = f->p.read_only,
                                      .cache = f->p.cache,
                                      .engine = f->p.engine,
                                      .limit = f->p.limit,
                                      .loop = f->loop};

        if (virtio_blk_create(&c, &err, &f->blk))
                fail_msg("virtio_blk_create: %s", err.msg);
        virtio_blk_set_backend(f->blk, &inj_ops, &f->inj);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        struct virtio_mmio_config mc = {.vdev = virtio_blk_device(f->blk),
                                        .mem = f->hm,
                                        .irq = vdrv_irq_line(&f->d),
                                        .no_event_idx = f->p.no_event_idx};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));

        f->p = *(const struct params *)*state;
        make_file(f->path, sizeof(f->path), DISK);
        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(ownership_create(f->mem, false, &f->own), 0);
        assert_int_equal(hostmem_create(f->mem, "block0", &f->hm), 0);
        hostmem_set_ownership(f->hm, f->own);
        assert_int_equal(event_loop_create(&f->loop), 0);
        create_device(f, "drive-abc");
        *state = f;
        return 0;
}

static void destroy_device(struct fx *f)
{
        virtio_mmio_destroy(f->t);
        virtio_blk_destroy(f->blk);
        f->t = NULL;
        f->blk = NULL;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        destroy_device(f);
        event_loop_destroy(f->loop);
        hostmem_destroy(f->hm);
        ownership_destroy(f->own);
        guest_mem_destroy(f->mem);
        unlink(f->path);
        free(f);
        return 0;
}

static void up(struct fx *f)
{
        vdrv_bring_up(&f->d, ~0ull, 1, QSIZE);
}

/* ---- requests ---- */

static gpa_t header(struct fx *f, uint32_t type, uint64_t sector)
{
        uint8_t h[16] = {0};
        gpa_t a = vdrv_alloc(&f->d, sizeof(h), 8);

        put_le32(h, type);
        put_le64(h + 8, sector);
        vdrv_mem_write(&f->d, a, h, sizeof(h));
        return a;
}

static gpa_t status_byte(struct fx *f)
{
        uint8_t s = NO_STATUS;
        gpa_t a = vdrv_alloc(&f->d, 1, 1);

        vdrv_mem_write(&f->d, a, &s, 1);
        return a;
}

static uint8_t read_status(struct fx *f, gpa_t a)
{
        uint8_t s;
        vdrv_mem_read(&f->d, a, &s, 1);
        return s;
}

/* Waits for the next used element (io_uring completions arrive through the event loop). */
static bool wait_used(struct fx *f, uint16_t *id, uint32_t *len)
{
        for (int i = 0; i < 100; i++) {
                if (vdrv_get_used(&f->d, 0, id, len))
                        return true;
                event_loop_run_once(f->loop, 50);
        }
        return false;
}

static uint32_t complete(struct fx *f, uint16_t head)
{
        uint16_t id;
        uint32_t len;

        assert_true(wait_used(f, &id, &len));
        assert_int_equal(id, head);
        return len;
}

/* A request with its data in one buffer: header, data, status. Returns the status. */
static uint8_t xfer(struct fx *f, uint32_t type, uint64_t sector, void *buf, uint32_t len,
                    bool device_writes, uint32_t *used)
{
        gpa_t data = len ? vdrv_alloc(&f->d, len, 8) : 0, st = status_byte(f);
        struct vdrv_buf b[3] = {{header(f, type, sector), 16, false}};
        unsigned n = 1;
        uint32_t u;

        if (len) {
                vdrv_mem_write(&f->d, data, buf, len); /* data, or the caller's sentinel */
                b[n++] = (struct vdrv_buf){data, len, device_writes};
        }
        b[n++] = (struct vdrv_buf){st, 1, true};
        uint16_t head = vdrv_add(&f->d, 0, b, n);
        vdrv_kick(&f->d, 0);
        u = complete(f, head);
        if (used)
                *used = u;
        if (len && device_writes)
                vdrv_mem_read(&f->d, data, buf, len);
        return read_status(f, st);
}

static uint8_t blk_read(struct fx *f, uint64_t sector, void *buf, uint32_t len, uint32_t *used)
{
        return xfer(f, VIRTIO_BLK_T_IN, sector, buf, len, true, used);
}

static uint8_t blk_write(struct fx *f, uint64_t sector, const void *buf, uint32_t len,
                         uint32_t *used)
{
        return xfer(f, VIRTIO_BLK_T_OUT, sector, (void *)buf, len, false, used);
}

static void file_read(struct fx *f, uint64_t off, void *buf, size_t len)
{
        int fd = open(f->path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
        close(fd);
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(seed + i * 13);
}

static struct virtio_blk_stats stats(struct fx *f)
{
        struct virtio_blk_stats s;
        virtio_blk_get_stats(f->blk, &s);
        return s;
}

/* Both a read and a write work: the device is healthy. */
static void assert_works(struct fx *f)
{
        uint8_t w[1024], r[1024];
        uint32_t used;

        fill(w, sizeof(w), 0x5a);
        assert_int_equal(blk_write(f, 100, w, sizeof(w), &used), VIRTIO_BLK_S_OK);
        assert_int_equal(used, 1);
        memset(r, 0, sizeof(r));
        assert_int_equal(blk_read(f, 100, r, sizeof(r), &used), VIRTIO_BLK_S_OK);
        assert_int_equal(used, sizeof(r) + 1);
        assert_memory_equal(w, r, sizeof(w));
}

/* ---- configuration ---- */

static uint32_t cfg32(struct fx *f, uint32_t off)
{
        uint8_t b[4];
        vdrv_read_config(&f->d, off, b, 4);
        return get_le32(b);
}

static uint64_t cfg_capacity(struct fx *f)
{
        return (uint64_t)cfg32(f, VIRTIO_BLK_CFG_CAPACITY) |
               (uint64_t)cfg32(f, VIRTIO_BLK_CFG_CAPACITY + 4) << 32;
}

static void test_config_writeback(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);
        uint8_t unmap;

        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_BLK_QUEUE_SIZE);
        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE));
        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
        assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_RO));
        assert_true(feat & VIRTIO_BIT(VIRTIO_F_VERSION_1));
        assert_int_equal(cfg_capacity(f), DISK / 512);
        assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_SEG_MAX), VIRTIO_BLK_QUEUE_SIZE - 2);
        assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_BLK_SIZE), 512);
        assert_true(cfg32(f, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS) > 0);
        assert_true(cfg32(f, VIRTIO_BLK_CFG_MAX_DISCARD_SEG) >= 1);
        assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT), 8);
        assert_true(cfg32(f, VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS) > 0);
        assert_true(cfg32(f, VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG) >= 1);
        vdrv_read_config(&f->d, VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP, &unmap, 1);
        assert_int_equal(unmap, 1);
        /* Beyond the structure: zeros. */
        assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_LEN), 0);
}

static void test_config_read_only_unsafe(void **state)
{
        struct fx *f = *state;
        uint64_t feat = vdrv_device_features(&f->d);

        assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_RO));
        assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
        assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
        assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
        assert_int_equal(cfg_capacity(f), DISK / 512);
        assert_int_equal(cfg32(f, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS), 0);
}

static void test_capacity_rounds_down(void **state)
{
        struct fx *f = *state;
        int fd = open(f->path, O_WRONLY);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, DISK + 700), 0);
        close(fd);
        destroy_device(f);
        create_device(f, NULL);
        assert_int_equal(cfg_capacity(f), DISK / 512 + 1);
}

/* ---- create errors ---- */

static int try_create(const char *path, bool ro, struct error *err)
{
        struct event_loop *loop;
        struct virtio_blk *blk = NULL;
        struct virtio_blk_config c = {.name = "block7", .path = path, .read_only = ro};
        int r;

        assert_int_equal(event_loop_create(&loop), 0);
        c.loop = loop;
        r = virtio_blk_create(&c, err, &blk);
        if (!r)
                virtio_blk_destroy(blk);
        event_loop_destroy(loop);
        return r;
}

static void assert_config_error(const char *path, bool ro, const char *needle)
{
        struct error err = {0};

        assert_int_not_equal(try_create(path, ro, &err), 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, "block7"));
        if (!strstr(err.msg, needle))
                fail_msg("'%s' does not say '%s'", err.msg, needle);
}

/* Root ignores file permissions: the check runs as nobody in a child. */
static void test_create_errors(void **state)
{
        struct fx *f = *state;
        char dir[] = "/tmp/vmm-blk-dir-XXXXXX";
        struct error err = {0};

        assert_config_error("/nonexistent/disk.img", false, "No such file");
        assert_non_null(mkdtemp(dir));
        assert_config_error(dir, false, "directory");
        assert_config_error(dir, true, "directory");
        assert_config_error("/dev/null", false,
                            "is not a regular file or a block device: it is a character device");
        rmdir(dir);

        assert_int_equal(chmod(f->path, 0444), 0);
        if (geteuid() != 0) {
                assert_config_error(f->path, false, "for writing");
                assert_int_equal(try_create(f->path, true, &err), 0);
                return;
        }
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct error e = {0};
                if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
                        _exit(10);
                if (!try_create(f->path, false, &e))
                        _exit(11);
                if (e.kind != ERROR_CONFIG || !strstr(e.msg, f->path) ||
                    !strstr(e.msg, "for writing") || !strstr(e.msg, "Permission denied"))
                        _exit(12);
                _exit(try_create(f->path, true, &e) ? 13 : 0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- reads and writes ---- */

static void test_write_read_back(void **state)
{
        struct fx *f = *state;
        uint8_t w[4096], r[4096], disk[4096];
        uint32_t used;

        up(f);
        fill(w, sizeof(w), 1);
        assert_int_equal(blk_write(f, 8, w, sizeof(w), &used), VIRTIO_BLK_S_OK);
        assert_int_equal(used, 1);
        file_read(f, 8 * 512, disk, sizeof(disk));
        assert_memory_equal(disk, w, sizeof(w));
        memset(r, 0, sizeof(r));
        assert_int_equal(blk_read(f, 8, r, sizeof(r), &used), VIRTIO_BLK_S_OK);
        assert_int_equal(used, sizeof(r) + 1);
        assert_memory_equal(r, w, sizeof(w));
        /* Untouched sectors still hold the file's pattern. */
        assert_int_equal(blk_read(f, 0, r, 512, &used), VIRTIO_BLK_S_OK);
        for (unsigned i = 0; i < 512; i++)
                assert_int_equal(r[i], pattern(i));

        struct virtio_blk_stats s = stats(f);
        assert_int_equal(s.write_count, 1);
        assert_int_equal(s.write_bytes, 4096);
        assert_int_equal(s.read_count, 2);
        assert_int_equal(s.read_bytes, 4096 + 512);
        assert_int_equal(s.io_errors, 0);
}

/* EVENT_IDX: the device publishes avail_event after draining the ring; without it, the
 * field is never written. Both ways, the driver gets an interrupt. */
static void test_event_idx(void **state)
{
        struct fx *f = *state;
        uint8_t buf[512];
        uint8_t ev[2];
        unsigned irqs;

        up(f);
        vdrv_mem_write(&f->d, f->d.q[0].used + 4 + 8ull * QSIZE, (uint8_t[]){0xab, 0xcd}, 2);
        irqs = f->d.irqs;
        for (int i = 0; i < 3; i++)
                assert_int_equal(blk_read(f, (uint64_t)i, buf, sizeof(buf), NULL), VIRTIO_BLK_S_OK);
        assert_true(f->d.irqs > irqs);
        vdrv_mem_read(&f->d, f->d.q[0].used + 4 + 8ull * QSIZE, ev, 2);
        if (f->p.no_event_idx)
                assert_int_equal(get_le16(ev), 0xcdab);
        else
                assert_int_equal(get_le16(ev), 3);
}

/* Header split 7 + 9, data split 100 + 1000 + 948 (readable), status alone. */
static void test_multi_descriptor_write(void **state)
{
        struct fx *f = *state;
        uint8_t w[2048], disk[2048], h[16] = {0};
        gpa_t hdr = vdrv_alloc(&f->d, 16, 8), st = status_byte(f);
        gpa_t d1 = vdrv_alloc(&f->d, 100, 8), d2 = vdrv_alloc(&f->d, 1000, 8),
              d3 = vdrv_alloc(&f->d, 948, 8);

        up(f);
        put_le32(h, VIRTIO_BLK_T_OUT);
        put_le64(h + 8, 20);
        vdrv_mem_write(&f->d, hdr, h, 16);
        fill(w, sizeof(w), 9);
        vdrv_mem_write(&f->d, d1, w, 100);
        vdrv_mem_write(&f->d, d2, w + 100, 1000);
        vdrv_mem_write(&f->d, d3, w + 1100, 948);
        struct vdrv_buf b[] = {{hdr, 7, false},   {hdr + 7, 9, false}, {d1, 100, false},
                               {d2, 1000, false}, {d3, 948, false},    {st, 1, true}};
        uint16_t head = vdrv_add(&f->d, 0, b, 6);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 1);
        assert_int_equal(read_status(f, st), VIRTIO_BLK_S_OK);
        file_read(f, 20 * 512, disk, sizeof(disk));
        assert_memory_equal(disk, w, sizeof(w));
}

/* Data split over writable buffers, the last one also holding the status byte. */
static void test_multi_descriptor_read(void **state)
{
        struct fx *f = *state;
        uint8_t r[1536], want[1536];
        gpa_t hdr = vdrv_alloc(&f->d, 16, 8);
        gpa_t d1 = vdrv_alloc(&f->d, 1000, 8), d2 = vdrv_alloc(&f->d, 537, 8);
        uint8_t h[16] = {0}, s = NO_STATUS;

        up(f);
        put_le32(h, VIRTIO_BLK_T_IN);
        put_le64(h + 8, 3);
        vdrv_mem_write(&f->d, hdr, h, 16);
        vdrv_mem_write(&f->d, d2 + 536, &s, 1);
        struct vdrv_buf b[] = {
            {hdr, 10, false}, {hdr + 10, 6, false}, {d1, 1000, true}, {d2, 537, true}};
        uint16_t head = vdrv_add(&f->d, 0, b, 4);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 1537);
        assert_int_equal(read_status(f, d2 + 536), VIRTIO_BLK_S_OK);
        vdrv_mem_read(&f->d, d1, r, 1000);
        vdrv_mem_read(&f->d, d2, r + 1000, 536);
        file_read(f, 3 * 512, want, sizeof(want));
        assert_memory_equal(r, want, sizeof(want));
}

static void put_desc(struct fx *f, gpa_t table, uint16_t i, gpa_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
        uint8_t d[16];

        put_le64(d, addr);
        put_le32(d + 8, len);
        put_le16(d + 12, flags);
        put_le16(d + 14, next);
        vdrv_mem_write(&f->d, table + 16ull * i, d, 16);
}

/* Publishes a chain whose head descriptor the test wrote itself. */
static uint16_t push_head(struct fx *f, uint16_t head)
{
        struct vdrv_queue *q = &f->d.q[0];
        uint8_t b[2];

        put_le16(b, head);
        vdrv_mem_write(&f->d, q->avail + 4 + 2ull * (q->avail_idx % q->size), b, 2);
        q->avail_idx++;
        vdrv_publish(&f->d, 0);
        return head;
}

/* The next free descriptor slot in the main table. */
static uint16_t take_desc(struct fx *f)
{
        struct vdrv_queue *q = &f->d.q[0];
        uint16_t i = q->next_desc;

        q->next_desc = (uint16_t)((i + 1) % q->size);
        return i;
}

static void test_indirect(void **state)
{
        struct fx *f = *state;
        gpa_t table = vdrv_alloc(&f->d, 4 * 16, 16), st = status_byte(f);
        gpa_t hdr = header(f, VIRTIO_BLK_T_OUT, 40), data = vdrv_alloc(&f->d, 1024, 8);
        uint8_t w[1024], r[1024];
        uint16_t i;

        up(f);
        fill(w, sizeof(w), 77);
        vdrv_mem_write(&f->d, data, w, sizeof(w));
        put_desc(f, table, 0, hdr, 16, VIRTQ_DESC_F_NEXT, 1);
        put_desc(f, table, 1, data, 512, VIRTQ_DESC_F_NEXT, 2);
        put_desc(f, table, 2, data + 512, 512, VIRTQ_DESC_F_NEXT, 3);
        put_desc(f, table, 3, st, 1, VIRTQ_DESC_F_WRITE, 0);
        i = take_desc(f);
        put_desc(f, f->d.q[0].desc, i, table, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
        push_head(f, i);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, i), 1);
        assert_int_equal(read_status(f, st), VIRTIO_BLK_S_OK);
        assert_int_equal(blk_read(f, 40, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_memory_equal(r, w, sizeof(w));
}

/* Several requests published at once, one notification; io_uring keeps them in flight
 * across a second notification. */
static void test_batch_across_notifications(void **state)
{
        struct fx *f = *state;
        gpa_t data[6], st[6];
        uint16_t heads[6], id;
        uint32_t len;
        unsigned seen = 0;

        up(f);
        f->inj.delay_op = BLK_IO_READ + 1;
        f->inj.delay_ns = f->p.engine == VIRTIO_BLK_ENGINE_IO_URING ? 50000000 : 0;
        for (int i = 0; i < 6; i++) {
                data[i] = vdrv_alloc(&f->d, 512, 8);
                st[i] = status_byte(f);
                struct vdrv_buf b[] = {{header(f, VIRTIO_BLK_T_IN, (uint64_t)i * 7), 16, false},
                                       {data[i], 512, true},
                                       {st[i], 1, true}};
                heads[i] = vdrv_add_nopublish(&f->d, 0, b, 3);
                if (i == 3) { /* first batch */
                        vdrv_publish(&f->d, 0);
                        vdrv_kick(&f->d, 0);
                }
        }
        if (f->p.engine == VIRTIO_BLK_ENGINE_IO_URING)
                assert_false(vdrv_get_used(&f->d, 0, &id, &len)); /* still held back */
        vdrv_publish(&f->d, 0);
        vdrv_kick(&f->d, 0);
        while (seen < 6 && wait_used(f, &id, &len)) {
                int i = 0;
                while (i < 6 && heads[i] != id)
                        i++;
                assert_true(i < 6);
                assert_int_equal(len, 513);
                assert_int_equal(read_status(f, st[i]), VIRTIO_BLK_S_OK);
                uint8_t b0;
                vdrv_mem_read(&f->d, data[i], &b0, 1);
                assert_int_equal(b0, pattern((uint64_t)i * 7 * 512));
                seen++;
        }
        assert_int_equal(seen, 6);
}

/* ---- FLUSH and GET_ID ---- */

static void test_flush_writeback(void **state)
{
        struct fx *f = *state;
        uint8_t w[512] = {1, 2, 3};
        gpa_t st = status_byte(f);
        uint16_t id;
        uint32_t len;

        up(f);
        assert_int_equal(blk_write(f, 0, w, sizeof(w), NULL), VIRTIO_BLK_S_OK);
        f->inj.delay_op = BLK_IO_FLUSH + 1;
        f->inj.delay_ns = 100000000; /* io_uring: the FLUSH completes only after this */
        struct vdrv_buf b[] = {{header(f, VIRTIO_BLK_T_FLUSH, 0), 16, false}, {st, 1, true}};
        uint16_t head = vdrv_add(&f->d, 0, b, 2);
        vdrv_kick(&f->d, 0);
        if (f->p.engine == VIRTIO_BLK_ENGINE_IO_URING) {
                assert_false(vdrv_get_used(&f->d, 0, &id, &len));
                assert_int_equal(read_status(f, st), NO_STATUS);
                assert_int_equal(f->inj.runs[BLK_IO_FLUSH], 0);
        }
        assert_int_equal(complete(f, head), 1);
        assert_int_equal(read_status(f, st), VIRTIO_BLK_S_OK);
        /* The data sync ran, after the write. */
        assert_int_equal(f->inj.runs[BLK_IO_FLUSH], 1);
        assert_int_equal(f->inj.nr_order, 2);
        assert_int_equal(f->inj.order[0], BLK_IO_WRITE);
        assert_int_equal(f->inj.order[1], BLK_IO_FLUSH);
        assert_int_equal(stats(f).flush_count, 1);
}

static void test_flush_unsafe_unsupported(void **state)
{
        struct fx *f = *state;
        uint32_t used;

        assert_false(vdrv_device_features(&f->d) & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
        up(f);
        assert_int_equal(xfer(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, &used),
                         VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(used, 1);
        assert_int_equal(f->inj.runs[BLK_IO_FLUSH], 0);
        assert_int_equal(stats(f).unsupported, 1);
}

static void test_get_id(void **state)
{
        struct fx *f = *state;
        uint8_t id[VIRTIO_BLK_ID_BYTES], want[VIRTIO_BLK_ID_BYTES] = "drive-abc";
        uint32_t used;

        up(f);
        memset(id, 0xff, sizeof(id));
        assert_int_equal(xfer(f, VIRTIO_BLK_T_GET_ID, 0, id, sizeof(id), true, &used),
                         VIRTIO_BLK_S_OK);
        assert_int_equal(used, VIRTIO_BLK_ID_BYTES + 1);
        assert_memory_equal(id, want, sizeof(id)); /* zero padded */
        assert_int_equal(stats(f).get_id_count, 1);

        /* A buffer shorter than 20 bytes gets what fits. */
        memset(id, 0xff, sizeof(id));
        assert_int_equal(xfer(f, VIRTIO_BLK_T_GET_ID, 0, id, 5, true, &used), VIRTIO_BLK_S_OK);
        assert_int_equal(used, 5 + 1);
        assert_memory_equal(id, "drive", 5);
        assert_int_equal(id[5], 0xff);

        /* A 25-character id is cut at 20 bytes. */
        destroy_device(f);
        create_device(f, "0123456789abcdefghijKLMNO");
        up(f);
        assert_int_equal(xfer(f, VIRTIO_BLK_T_GET_ID, 0, id, sizeof(id), true, &used),
                         VIRTIO_BLK_S_OK);
        assert_memory_equal(id, "0123456789abcdefghij", 20);
}

/* ---- DISCARD and WRITE_ZEROES ---- */

static uint8_t dwz(struct fx *f, uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
        uint8_t seg[16];

        put_le64(seg, sector);
        put_le32(seg + 8, num);
        put_le32(seg + 12, flags);
        return xfer(f, type, 0, seg, sizeof(seg), false, NULL);
}

static bool all_zero(const uint8_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

static uint64_t file_blocks(struct fx *f)
{
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        return (uint64_t)st.st_blocks;
}

static void test_discard_punches_hole(void **state)
{
        struct fx *f = *state;
        uint8_t r[64 << 10];
        uint64_t before = file_blocks(f);

        up(f);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, 128, 128, 0), VIRTIO_BLK_S_OK);
        assert_int_equal(f->inj.runs[BLK_IO_FALLOCATE], 1);
        assert_true(file_blocks(f) < before);
        assert_int_equal(blk_read(f, 128, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_true(all_zero(r, sizeof(r)));
        /* The neighbours keep their data. */
        assert_int_equal(blk_read(f, 127, r, 512, NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(r[0], pattern(127 * 512));
        assert_int_equal(blk_read(f, 256, r, 512, NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(r[0], pattern(256 * 512));
        assert_int_equal(stats(f).discard_count, 1);
}

static void test_write_zeroes(void **state)
{
        struct fx *f = *state;
        uint8_t r[4096];

        up(f);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, 10, 8, 0), VIRTIO_BLK_S_OK);
        assert_int_equal(blk_read(f, 10, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_true(all_zero(r, sizeof(r)));
        assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, 30, 8, VIRTIO_BLK_WRITE_ZEROES_F_UNMAP),
                         VIRTIO_BLK_S_OK);
        assert_int_equal(blk_read(f, 30, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_true(all_zero(r, sizeof(r)));
        assert_int_equal(blk_read(f, 38, r, 512, NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(r[0], pattern(38 * 512));
        assert_int_equal(stats(f).write_zeroes_count, 2);
}

/* A filesystem that supports neither zero ranges nor holes: zeros are written. */
static void test_write_zeroes_falls_back_to_writing(void **state)
{
        struct fx *f = *state;
        uint8_t *r = malloc(DISK);

        up(f);
        f->inj.fail_op = BLK_IO_FALLOCATE + 1;
        f->inj.fail_res = -EOPNOTSUPP;
        f->inj.fail_times = -1;
        f->inj.short_op = BLK_IO_WRITE + 1; /* and the first write of zeros falls short */
        assert_int_equal(
            dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, DISK / 512 - 1, VIRTIO_BLK_WRITE_ZEROES_F_UNMAP),
            VIRTIO_BLK_S_OK);
        assert_int_equal(f->inj.runs[BLK_IO_FALLOCATE], 2); /* zero range, then punch */
        assert_int_equal(f->inj.runs[BLK_IO_WRITE], 2);
        file_read(f, 0, r, DISK);
        assert_true(all_zero(r, DISK - 512));
        assert_int_equal(r[DISK - 512], pattern(DISK - 512));
        free(r);
        /* A failing discard is only a hint not taken. */
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_OK);
}

static void test_discard_write_zeroes_errors(void **state)
{
        struct fx *f = *state;
        uint8_t two[32] = {0};

        up(f);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, 0, 8, VIRTIO_BLK_WRITE_ZEROES_F_UNMAP),
                         VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 4), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, DISK / 512 - 4, 8, 0), VIRTIO_BLK_S_IOERR);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_WRITE_ZEROES, UINT64_MAX / 256, 8, 0),
                         VIRTIO_BLK_S_IOERR);
        /* Not a whole number of segments. */
        assert_int_equal(xfer(f, VIRTIO_BLK_T_DISCARD, 0, two, 20, false, NULL),
                         VIRTIO_BLK_S_IOERR);
        /* Two segments are fine. */
        put_le64(two, 0);
        put_le32(two + 8, 8);
        put_le64(two + 16, 64);
        put_le32(two + 24, 8);
        assert_int_equal(xfer(f, VIRTIO_BLK_T_DISCARD, 0, two, 32, false, NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(f->inj.runs[BLK_IO_FALLOCATE], 2);
        assert_int_equal(stats(f).unsupported, 2);
        assert_int_equal(stats(f).io_errors, 3);
        assert_works(f);
}

/* Not negotiated (the driver declined the feature): UNSUPP. */
static void test_discard_not_negotiated(void **state)
{
        struct fx *f = *state;

        vdrv_bring_up(&f->d, ~VIRTIO_BIT(VIRTIO_BLK_F_DISCARD), 1, QSIZE);
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(f->inj.runs[BLK_IO_FALLOCATE], 0);
}

/* ---- guest errors ---- */

static void test_read_only_rejects_writes(void **state)
{
        struct fx *f = *state;
        uint8_t w[512], disk[512];
        uint32_t used;

        up(f);
        memset(w, 0x11, sizeof(w));
        assert_int_equal(blk_write(f, 0, w, sizeof(w), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        assert_int_equal(f->inj.runs[BLK_IO_WRITE], 0);
        file_read(f, 0, disk, sizeof(disk));
        assert_int_equal(disk[0], pattern(0));
        assert_int_equal(dwz(f, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(blk_read(f, 0, w, sizeof(w), NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(w[0], pattern(0));
        assert_int_equal(stats(f).io_errors, 1);
}

static void test_beyond_capacity(void **state)
{
        struct fx *f = *state;
        uint8_t b[1024];
        uint32_t used;

        up(f);
        memset(b, 0x33, sizeof(b));
        assert_int_equal(blk_read(f, DISK / 512 - 1, b, sizeof(b), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        assert_int_equal(b[0], 0x33); /* nothing written */
        assert_int_equal(blk_write(f, DISK / 512, b, 512, NULL), VIRTIO_BLK_S_IOERR);
        /* sector * 512 overflows 64 bits */
        assert_int_equal(blk_read(f, UINT64_MAX / 256, b, 512, NULL), VIRTIO_BLK_S_IOERR);
        assert_int_equal(blk_read(f, UINT64_MAX, b, 512, NULL), VIRTIO_BLK_S_IOERR);
        assert_int_equal(f->inj.runs[BLK_IO_READ] + f->inj.runs[BLK_IO_WRITE], 0);
        assert_int_equal(blk_read(f, DISK / 512 - 2, b, 1024, NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(stats(f).io_errors, 4);
}

static void test_length_not_multiple_of_512(void **state)
{
        struct fx *f = *state;
        uint8_t b[700];
        uint32_t used;

        up(f);
        memset(b, 0x44, sizeof(b));
        assert_int_equal(blk_read(f, 0, b, sizeof(b), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        assert_int_equal(b[0], 0x44);
        assert_int_equal(blk_write(f, 0, b, 100, NULL), VIRTIO_BLK_S_IOERR);
        assert_int_equal(f->inj.runs[BLK_IO_READ] + f->inj.runs[BLK_IO_WRITE], 0);
        assert_works(f);
}

static void test_no_status_byte(void **state)
{
        struct fx *f = *state;
        gpa_t data = vdrv_alloc(&f->d, 512, 8);
        uint8_t b[512];

        up(f);
        memset(b, 0x55, sizeof(b));
        vdrv_mem_write(&f->d, data, b, sizeof(b));
        /* Header and data, all readable: an OUT with nowhere to put the status. */
        struct vdrv_buf c[] = {{header(f, VIRTIO_BLK_T_OUT, 0), 16, false}, {data, 512, false}};
        uint16_t head = vdrv_add(&f->d, 0, c, 2);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 0);
        assert_int_equal(f->inj.runs[BLK_IO_WRITE], 0);
        assert_int_equal(stats(f).bad_requests, 1);
        assert_int_equal(stats(f).write_count, 0);
        /* A header too short to read: IOERR in the status byte. */
        gpa_t st = status_byte(f);
        struct vdrv_buf s[] = {{header(f, VIRTIO_BLK_T_IN, 0), 8, false}, {st, 1, true}};
        head = vdrv_add(&f->d, 0, s, 2);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 1);
        assert_int_equal(read_status(f, st), VIRTIO_BLK_S_IOERR);
        assert_works(f);
}

static void test_unknown_type(void **state)
{
        struct fx *f = *state;
        uint8_t b[512];
        uint32_t used;

        up(f);
        assert_int_equal(xfer(f, 99, 0, b, sizeof(b), true, &used), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(used, 1);
        assert_int_equal(xfer(f, UINT32_MAX, 0, b, sizeof(b), true, &used), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(stats(f).unsupported, 2);
        assert_int_equal(stats(f).bad_requests, 0);
        assert_works(f);
}

/* ---- host errors (backend seam) ---- */

static void test_short_read_is_completed(void **state)
{
        struct fx *f = *state;
        uint8_t r[4096], want[4096];

        up(f);
        f->inj.short_op = BLK_IO_READ + 1;
        assert_int_equal(blk_read(f, 16, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(f->inj.short_op, 0); /* it did happen */
        assert_int_equal(f->inj.runs[BLK_IO_READ], 2);
        file_read(f, 16 * 512, want, sizeof(want));
        assert_memory_equal(r, want, sizeof(want));
        f->inj.short_op = BLK_IO_WRITE + 1;
        fill(want, sizeof(want), 3);
        assert_int_equal(blk_write(f, 16, want, sizeof(want), NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(f->inj.runs[BLK_IO_WRITE], 2);
        file_read(f, 16 * 512, r, sizeof(r));
        assert_memory_equal(r, want, sizeof(want));
}

/* A read that stops (end of file): IOERR, with the bytes that did arrive counted. */
static void test_short_read_then_eof_is_ioerr(void **state)
{
        struct fx *f = *state;
        uint8_t r[4096];
        uint32_t used;

        up(f);
        f->inj.short_op = BLK_IO_READ + 1;
        f->inj.fail_op = BLK_IO_READ + 1;
        f->inj.fail_res = 0;
        f->inj.fail_times = 1;
        memset(r, 0, sizeof(r));
        assert_int_equal(blk_read(f, 0, r, sizeof(r), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(f->inj.short_op, 0);
        assert_int_equal(used, 512 + 1); /* the bytes that did arrive, and the status */
        assert_int_equal(r[0], pattern(0));
        assert_int_equal(r[511], pattern(511));
        /* A read that returns nothing at all. */
        f->inj.fail_times = 1;
        assert_int_equal(blk_read(f, 0, r, sizeof(r), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        assert_int_equal(stats(f).io_errors, 2);
        assert_works(f);
}

static void test_enospc_and_eio(void **state)
{
        struct fx *f = *state;
        uint8_t w[2048], disk[2048];
        uint32_t used;

        up(f);
        fill(w, sizeof(w), 8);
        f->inj.fail_op = BLK_IO_WRITE + 1;
        f->inj.fail_res = -ENOSPC;
        f->inj.fail_times = 1;
        assert_int_equal(blk_write(f, 4, w, sizeof(w), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        f->inj.fail_op = BLK_IO_READ + 1;
        f->inj.fail_res = -EIO;
        f->inj.fail_times = 1;
        assert_int_equal(blk_read(f, 4, w, sizeof(w), &used), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 1);
        f->inj.fail_op = BLK_IO_FLUSH + 1;
        f->inj.fail_times = 1;
        assert_int_equal(xfer(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, NULL), VIRTIO_BLK_S_IOERR);
        struct virtio_blk_stats s = stats(f);
        assert_int_equal(s.io_errors, 3);
        assert_int_equal(s.write_count, 0);
        assert_int_equal(s.read_count, 0);
        assert_int_equal(s.flush_count, 0);
        /* sync: the failing write never reached the file (io_uring: the injection replaced
         * the result of a write that did happen). The device goes on. */
        file_read(f, 4 * 512, disk, sizeof(disk));
        if (f->p.engine == VIRTIO_BLK_ENGINE_SYNC)
                assert_int_equal(disk[0], pattern(4 * 512));
        assert_works(f);
}

/* Random reads and writes against a model of the disk: random chain shapes (data split at
 * arbitrary byte boundaries, header split, status sharing the last data buffer), random
 * short transfers, several requests per notification (non-overlapping, since the device may
 * complete them in any order). */
static uint32_t rnd(uint64_t *state)
{
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        return (uint32_t)(*state >> 11);
}

struct rreq {
        bool write;
        uint64_t sector;
        uint32_t len;
        gpa_t data, st; /* data: one contiguous guest area, split into descriptors */
        uint16_t head;
        bool done;
};

static void post_random(struct fx *f, uint64_t *rs, struct rreq *r, uint8_t *shadow)
{
        struct vdrv_buf b[8];
        unsigned n = 0, pieces = 1 + rnd(rs) % 4;
        gpa_t hdr = header(f, r->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, r->sector);
        uint32_t split = rnd(rs) % 16, off = 0;

        if (split && split < 16) { /* header in two pieces */
                b[n++] = (struct vdrv_buf){hdr, split, false};
                b[n++] = (struct vdrv_buf){hdr + split, 16 - split, false};
        } else {
                b[n++] = (struct vdrv_buf){hdr, 16, false};
        }
        /* One area holds the data and, for reads, the status byte right after it. */
        r->data = vdrv_alloc(&f->d, r->len + 1, 1);
        r->st = r->data + r->len;
        if (r->write) {
                uint8_t *w = malloc(r->len);
                for (uint32_t i = 0; i < r->len; i++)
                        w[i] = (uint8_t)rnd(rs);
                vdrv_mem_write(&f->d, r->data, w, r->len);
                memcpy(shadow + r->sector * 512, w, r->len);
                free(w);
                r->st = status_byte(f);
        }
        uint8_t s = NO_STATUS;
        vdrv_mem_write(&f->d, r->st, &s, 1);
        for (unsigned i = 0; i < pieces; i++) {
                uint32_t left = r->len - off;
                uint32_t len = i + 1 == pieces ? left : (left ? rnd(rs) % left : 0);
                if (len == 0)
                        continue;
                b[n++] = (struct vdrv_buf){r->data + off, len, !r->write};
                off += len;
        }
        if (r->write)
                b[n++] = (struct vdrv_buf){r->st, 1, true};
        else
                b[n - 1].len++; /* the status byte ends the last data buffer */
        r->head = vdrv_add_nopublish(&f->d, 0, b, n);
}

static void test_random_against_model(void **state)
{
        struct fx *f = *state;
        uint64_t rs = 0x243f6a8885a308d3ull;
        uint8_t *shadow = malloc(DISK), *buf = malloc(8192);
        unsigned total = 0;

        file_read(f, 0, shadow, DISK);
        vdrv_bring_up(&f->d, ~0ull, 1, 64);
        for (int round = 0; round < 60; round++) {
                struct rreq r[6];
                unsigned nr = 1 + rnd(&rs) % 6;
                uint16_t id;
                uint32_t len;

                /* Heap for this round only: rings stay, buffers are reused. */
                gpa_t heap = f->d.heap;
                for (unsigned i = 0; i < nr; i++) {
                        /* Zone i of 6: requests of one round never overlap. */
                        uint64_t zone = DISK / 512 / 6;
                        r[i].write = rnd(&rs) & 1;
                        r[i].len = 512 * (1 + rnd(&rs) % 16);
                        r[i].sector = zone * i + rnd(&rs) % (zone - 16);
                        r[i].done = false;
                        post_random(f, &rs, &r[i], shadow);
                }
                if (rnd(&rs) % 3 == 0) {
                        f->inj.short_op = (rnd(&rs) & 1 ? BLK_IO_READ : BLK_IO_WRITE) + 1;
                        f->inj.short_len = 1 + rnd(&rs) % 3000;
                }
                vdrv_publish(&f->d, 0);
                vdrv_kick(&f->d, 0);
                for (unsigned k = 0; k < nr; k++) {
                        assert_true(wait_used(f, &id, &len));
                        unsigned i = 0;
                        while (i < nr && (r[i].head != id || r[i].done))
                                i++;
                        assert_true(i < nr);
                        r[i].done = true;
                        assert_int_equal(read_status(f, r[i].st), VIRTIO_BLK_S_OK);
                        assert_int_equal(len, r[i].write ? 1 : r[i].len + 1);
                        if (!r[i].write) {
                                vdrv_mem_read(&f->d, r[i].data, buf, r[i].len);
                                assert_memory_equal(buf, shadow + r[i].sector * 512, r[i].len);
                        }
                        total++;
                }
                f->inj.short_op = 0;
                f->d.heap = heap;
        }
        /* The file holds the model. */
        uint8_t *disk = malloc(DISK);
        file_read(f, 0, disk, DISK);
        assert_memory_equal(disk, shadow, DISK);
        assert_int_equal(total, stats(f).read_count + stats(f).write_count);
        free(disk);
        free(shadow);
        free(buf);
}

/* ---- rate limiter ---- */

static void test_rate_limited(void **state)
{
        struct fx *f = *state;
        gpa_t st[3];
        uint16_t heads[3], id;
        uint32_t len;

        up(f);
        for (int i = 0; i < 3; i++) {
                st[i] = status_byte(f);
                struct vdrv_buf b[] = {{header(f, VIRTIO_BLK_T_IN, 0), 16, false},
                                       {vdrv_alloc(&f->d, 512, 8), 512, true},
                                       {st[i], 1, true}};
                heads[i] = vdrv_add(&f->d, 0, b, 3);
        }
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, heads[0]), 513);
        assert_false(vdrv_get_used(&f->d, 0, &id, &len));
        assert_int_equal(read_status(f, st[1]), NO_STATUS);
        assert_int_equal(stats(f).rate_limited, 1);
        /* The limiter's timer resumes processing through the event loop. */
        assert_int_equal(complete(f, heads[1]), 513);
        assert_int_equal(read_status(f, st[1]), VIRTIO_BLK_S_OK);
        /* Lifting the limit (API PATCH) lets the last one through. */
        virtio_blk_set_rate_limiter(f->blk, NULL);
        assert_int_equal(complete(f, heads[2]), 513);
        assert_works(f);
}

/* ---- reset, destroy and PATCH with requests in flight ---- */

/* Reads held back by delay_ns (io_uring) into buffers filled with 0xcc. */
static void post_delayed_reads(struct fx *f, gpa_t *data, gpa_t *st, unsigned n, uint64_t delay_ns)
{
        uint8_t sentinel[512];

        memset(sentinel, 0xcc, sizeof(sentinel));
        f->inj.delay_op = BLK_IO_READ + 1;
        f->inj.delay_ns = delay_ns;
        for (unsigned i = 0; i < n; i++) {
                data[i] = vdrv_alloc(&f->d, 512, 8);
                st[i] = status_byte(f);
                vdrv_mem_write(&f->d, data[i], sentinel, sizeof(sentinel));
                struct vdrv_buf b[] = {{header(f, VIRTIO_BLK_T_IN, i), 16, false},
                                       {data[i], 512, true},
                                       {st[i], 1, true}};
                vdrv_add(&f->d, 0, b, 3);
        }
        vdrv_kick(&f->d, 0);
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_reset_with_requests_in_flight(void **state)
{
        struct fx *f = *state;
        gpa_t data[4], st[4];
        uint16_t id;
        uint32_t len;
        uint8_t b[512];
        double t0;

        up(f);
        post_delayed_reads(f, data, st, 4, LONG_DELAY);
        event_loop_run_once(f->loop, 10);
        assert_false(vdrv_get_used(&f->d, 0, &id, &len));
        t0 = now_s();
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0); /* driver reset */
        assert_true(now_s() - t0 < 2.0);            /* cancelled, not waited out */
        /* Nothing reached guest memory, then or later. */
        for (int i = 0; i < 5; i++)
                event_loop_run_once(f->loop, 20);
        for (int i = 0; i < 4; i++) {
                vdrv_mem_read(&f->d, data[i], b, sizeof(b));
                assert_int_equal(b[0], 0xcc);
                assert_int_equal(b[511], 0xcc);
                assert_int_equal(read_status(f, st[i]), NO_STATUS);
        }
        uint8_t idx[2];
        vdrv_mem_read(&f->d, f->d.q[0].used + 2, idx, 2);
        assert_int_equal(get_le16(idx), 0);
        assert_int_equal(stats(f).read_count, 0);
        /* A fresh start works. */
        f->inj.delay_op = 0;
        up(f);
        assert_works(f);
}

static void test_destroy_with_requests_in_flight(void **state)
{
        struct fx *f = *state;
        gpa_t data[3], st[3];
        double t0;

        up(f);
        post_delayed_reads(f, data, st, 3, LONG_DELAY);
        t0 = now_s();
        destroy_device(f); /* the transport resets the device first */
        assert_true(now_s() - t0 < 2.0);
        uint8_t b;
        vdrv_mem_read(&f->d, data[0], &b, 1);
        assert_int_equal(b, 0xcc);
        create_device(f, NULL); /* teardown destroys it again */
}

static void test_set_path(void **state)
{
        struct fx *f = *state;
        char other[64];
        struct error err = {0};
        uint8_t r[512];
        uint32_t gen;
        unsigned irqs;

        up(f);
        make_file(other, sizeof(other), 2 * DISK);
        int fd = open(other, O_WRONLY);
        assert_true(fd >= 0);
        memset(r, 0x99, sizeof(r));
        assert_int_equal(pwrite(fd, r, sizeof(r), DISK), (ssize_t)sizeof(r));
        close(fd);
        gen = vdrv_read32(&f->d, VIRTIO_MMIO_CONFIG_GENERATION);
        irqs = f->d.irqs;
        assert_int_not_equal(virtio_blk_set_path(f->blk, "/nonexistent/x", &err), 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_int_equal(cfg_capacity(f), DISK / 512);
        assert_int_equal(virtio_blk_set_path(f->blk, other, &err), 0);
        assert_int_equal(cfg_capacity(f), 2 * DISK / 512);
        assert_int_not_equal(vdrv_read32(&f->d, VIRTIO_MMIO_CONFIG_GENERATION), gen);
        assert_true(f->d.irqs > irqs);
        assert_true(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
        assert_int_equal(blk_read(f, DISK / 512, r, sizeof(r), NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(r[0], 0x99);
        unlink(other);
}

/* PATCH while reads are in flight: they finish on the old file, later ones use the new. */
static void test_set_path_with_requests_in_flight(void **state)
{
        struct fx *f = *state;
        char other[64];
        struct error err = {0};
        gpa_t data[2], st[2];
        uint8_t b[512];
        uint16_t id;
        uint32_t len;

        up(f);
        make_file(other, sizeof(other), DISK);
        int fd = open(other, O_WRONLY);
        assert_true(fd >= 0);
        memset(b, 0x5e, sizeof(b));
        assert_int_equal(pwrite(fd, b, sizeof(b), 0), (ssize_t)sizeof(b));
        close(fd);
        post_delayed_reads(f, data, st, 2, 200000000);
        f->inj.delay_op = 0;
        assert_false(vdrv_get_used(&f->d, 0, &id, &len));
        /* PATCH waits for them: they are not cancelled. */
        double t0 = now_s();
        assert_int_equal(virtio_blk_set_path(f->blk, other, &err), 0);
        assert_true(now_s() - t0 > 0.1);
        for (int i = 0; i < 2; i++) {
                assert_true(vdrv_get_used(&f->d, 0, &id, &len));
                assert_int_equal(len, 513);
                assert_int_equal(read_status(f, st[id == 0 ? 0 : 1]), VIRTIO_BLK_S_OK);
        }
        vdrv_mem_read(&f->d, data[0], b, sizeof(b));
        assert_int_equal(b[0], pattern(0)); /* the old file */
        assert_int_equal(blk_read(f, 0, b, sizeof(b), NULL), VIRTIO_BLK_S_OK);
        assert_int_equal(b[0], 0x5e); /* the new one */
        unlink(other);
}

/* ---- malformed chains and broken rings ---- */

static void assert_bad_chain(struct fx *f, uint16_t head, uint64_t bad_before)
{
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 0);
        assert_int_equal(stats(f).bad_requests, bad_before + 1);
        assert_false(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static uint16_t one_desc_chain(struct fx *f, gpa_t addr, uint32_t len, uint16_t flags)
{
        gpa_t st = status_byte(f);
        uint16_t a = take_desc(f), b = take_desc(f), c = take_desc(f);

        put_desc(f, f->d.q[0].desc, a, header(f, VIRTIO_BLK_T_IN, 0), 16, VIRTQ_DESC_F_NEXT, b);
        put_desc(f, f->d.q[0].desc, b, addr, len, (uint16_t)(flags | VIRTQ_DESC_F_NEXT), c);
        put_desc(f, f->d.q[0].desc, c, st, 1, VIRTQ_DESC_F_WRITE, 0);
        return push_head(f, a);
}

static void test_malformed_chains(void **state)
{
        struct fx *f = *state;
        uint64_t bad = 0;
        uint16_t i;

        up(f);
        /* A descriptor that points to itself. */
        i = take_desc(f);
        put_desc(f, f->d.q[0].desc, i, header(f, VIRTIO_BLK_T_IN, 0), 16, VIRTQ_DESC_F_NEXT, i);
        assert_bad_chain(f, push_head(f, i), bad++);
        /* Longer than the queue: an indirect table of QSIZE + 1 entries. */
        gpa_t table = vdrv_alloc(&f->d, 16ull * (QSIZE + 1), 16);
        for (uint16_t k = 0; k <= QSIZE; k++)
                put_desc(f, table, k, header(f, VIRTIO_BLK_T_IN, 0), 16,
                         k < QSIZE ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(k + 1));
        i = take_desc(f);
        put_desc(f, f->d.q[0].desc, i, table, 16 * (QSIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
        assert_bad_chain(f, push_head(f, i), bad++);
        /* Outside RAM, in the MMIO hole, wrapping around. */
        assert_bad_chain(f, one_desc_chain(f, 0x10000000ull, 512, VIRTQ_DESC_F_WRITE), bad++);
        assert_bad_chain(f, one_desc_chain(f, 0xc0000000ull, 512, VIRTQ_DESC_F_WRITE), bad++);
        assert_bad_chain(f, one_desc_chain(f, 0xfffffffffffff000ull, 0x2000, VIRTQ_DESC_F_WRITE),
                         bad++);
        /* A readable buffer after a writable one. */
        uint16_t a = take_desc(f), b = take_desc(f), c = take_desc(f);
        put_desc(f, f->d.q[0].desc, a, header(f, VIRTIO_BLK_T_OUT, 0), 16, VIRTQ_DESC_F_NEXT, b);
        put_desc(f, f->d.q[0].desc, b, status_byte(f), 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                 c);
        put_desc(f, f->d.q[0].desc, c, vdrv_alloc(&f->d, 512, 8), 512, 0, 0);
        assert_bad_chain(f, push_head(f, a), bad++);
        assert_int_equal(f->inj.runs[BLK_IO_READ], 0);
        assert_works(f);
}

/* The ring breaks while reads are in flight: they complete without touching guest memory. */
static void test_needs_reset_with_requests_in_flight(void **state)
{
        struct fx *f = *state;
        gpa_t data[2], st[2];
        uint8_t idx[2], b[512];

        up(f);
        post_delayed_reads(f, data, st, 2, LONG_DELAY);
        f->inj.delay_op = 0;
        put_le16(idx, QSIZE + 9);
        vdrv_mem_write(&f->d, f->d.q[0].avail + 2, idx, 2);
        vdrv_kick(&f->d, 0);
        assert_true(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        /* The held-back reads complete after 5 s unless the reset cancels them. */
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        for (int i = 0; i < 2; i++) {
                vdrv_mem_read(&f->d, data[i], b, sizeof(b));
                assert_int_equal(b[0], 0xcc);
                assert_int_equal(read_status(f, st[i]), NO_STATUS);
        }
        vdrv_mem_read(&f->d, f->d.q[0].used + 2, idx, 2);
        assert_int_equal(get_le16(idx), 0);
        up(f);
        assert_works(f);
}

static void test_bogus_avail_index_needs_reset(void **state)
{
        struct fx *f = *state;
        uint8_t idx[2];

        up(f);
        put_le16(idx, QSIZE + 5);
        vdrv_mem_write(&f->d, f->d.q[0].avail + 2, idx, 2);
        vdrv_kick(&f->d, 0);
        assert_true(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(f->inj.runs[BLK_IO_READ] + f->inj.runs[BLK_IO_WRITE], 0);
        up(f);
        assert_false(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_works(f);
}

/* ---- refused guest memory (confidential VMs) ---- */

/* CC-4: a request whose memory is refused fails as a whole with VIRTIO_BLK_S_IOERR when its
 * status byte is usable (the chain walk checks RAM bounds only; ownership is checked when
 * the device touches the buffers), and completes with nothing written when it is not. */
static void assert_refused(struct fx *f, uint16_t head, gpa_t st, bool status_usable)
{
        uint32_t len = complete(f, head);

        if (!status_usable) {
                assert_int_equal(len, 0);
                return;
        }
        assert_int_equal(len, 1);
        assert_int_equal(read_status(f, st), VIRTIO_BLK_S_IOERR);
}

/* CC-4: the status byte is private: nothing is read into the (shared) data buffer, the
 * chain completes with nothing written. */
static void test_cc4_private_status_byte(void **state)
{
        struct fx *f = *state;
        gpa_t data = vdrv_alloc(&f->d, 512, 8);
        gpa_t st = vdrv_alloc(&f->d, PAGE, PAGE);
        uint8_t b[512];

        up(f);
        memset(b, 0x77, sizeof(b));
        vdrv_mem_write(&f->d, data, b, sizeof(b));
        assert_int_equal(ownership_make_private(f->own, st, PAGE), 0);
        struct vdrv_buf c[] = {
            {header(f, VIRTIO_BLK_T_IN, 0), 16, false}, {data, 512, true}, {st, 1, true}};
        uint16_t head = vdrv_add(&f->d, 0, c, 3);
        vdrv_kick(&f->d, 0);
        assert_int_equal(complete(f, head), 0);
        vdrv_mem_read(&f->d, data, b, sizeof(b));
        assert_int_equal(b[0], 0x77);
        assert_int_equal(f->inj.runs[BLK_IO_READ], 0);
        assert_int_equal(stats(f).bad_requests, 1);
        assert_int_equal(ownership_make_shared(f->own, st, PAGE), 0);
        assert_works(f);
}

/* CC-3/CC-4: one private data page among shared ones: IOERR, no byte reaches the shared
 * buffers (read) or the file (write). */
static void test_cc4_private_data_buffer(void **state)
{
        struct fx *f = *state;
        gpa_t shared = vdrv_alloc(&f->d, PAGE, PAGE), priv = vdrv_alloc(&f->d, PAGE, PAGE);
        gpa_t st = status_byte(f);
        uint8_t b[512], disk[512];

        up(f);
        memset(b, 0x66, sizeof(b));
        vdrv_mem_write(&f->d, shared, b, sizeof(b));
        vdrv_mem_write(&f->d, priv, b, sizeof(b));
        assert_int_equal(ownership_make_private(f->own, priv, PAGE), 0);
        struct vdrv_buf c[] = {{header(f, VIRTIO_BLK_T_IN, 2), 16, false},
                               {shared, 512, true},
                               {priv, 512, true},
                               {st, 1, true}};
        uint16_t head = vdrv_add(&f->d, 0, c, 4);
        vdrv_kick(&f->d, 0);
        assert_refused(f, head, st, true);
        vdrv_mem_read(&f->d, shared, b, sizeof(b));
        assert_int_equal(b[0], 0x66);
        /* The same buffers as the source of a write. */
        st = status_byte(f);
        struct vdrv_buf w[] = {{header(f, VIRTIO_BLK_T_OUT, 2), 16, false},
                               {shared, 512, false},
                               {priv, 512, false},
                               {st, 1, true}};
        head = vdrv_add(&f->d, 0, w, 4);
        vdrv_kick(&f->d, 0);
        assert_refused(f, head, st, true);
        file_read(f, 2 * 512, disk, sizeof(disk));
        assert_int_equal(disk[0], pattern(2 * 512));
        assert_int_equal(f->inj.runs[BLK_IO_READ] + f->inj.runs[BLK_IO_WRITE], 0);
        struct virtio_blk_stats s = stats(f);
        assert_int_equal(s.read_count + s.write_count, 0);
        assert_int_equal(s.bad_requests, 2);
        /* Shared again: the device works with the same buffers. */
        assert_int_equal(ownership_make_shared(f->own, priv, PAGE), 0);
        assert_works(f);
}

/* CC-6: a page unshared while its read is in flight (io_uring) is not written afterwards:
 * the transition waits for the pinned I/O, and the status write is checked again. What the
 * request leaves behind (docs/confidential.md, CC-6): the data is in its shared buffer, the
 * status byte unwritten, the used length 0 -- which virtio allows (a device may write more
 * than the used length says); the driver must treat the buffers as undefined. */
static void test_cc6_unshare_status_while_in_flight(void **state)
{
        struct fx *f = *state;
        gpa_t data = vdrv_alloc(&f->d, 512, 8), st = vdrv_alloc(&f->d, PAGE, PAGE);
        uint8_t s = NO_STATUS, got[512];

        up(f);
        vdrv_mem_write(&f->d, st, &s, 1);
        f->inj.delay_op = BLK_IO_READ + 1;
        f->inj.delay_ns = 100000000;
        struct vdrv_buf c[] = {
            {header(f, VIRTIO_BLK_T_IN, 0), 16, false}, {data, 512, true}, {st, 1, true}};
        uint16_t head = vdrv_add(&f->d, 0, c, 3);
        vdrv_kick(&f->d, 0);
        /* The status page is not pinned during the I/O: the transition does not wait. */
        assert_int_equal(ownership_make_private(f->own, st, PAGE), 0);
        assert_int_equal(complete(f, head), 0); /* used length 0 */
        vdrv_mem_read(&f->d, st, &s, 1);
        assert_int_equal(s, NO_STATUS);
        vdrv_mem_read(&f->d, data, got, sizeof(got)); /* ... though the data arrived */
        for (unsigned i = 0; i < sizeof(got); i++)
                assert_int_equal(got[i], pattern(i));
        assert_int_equal(stats(f).bad_requests, 1);
        assert_int_equal(ownership_make_shared(f->own, st, PAGE), 0);
        assert_works(f);
}

#define T(fn, p)                                                                                   \
        {                                                                                          \
#fn "/" #p, fn, setup, teardown, (void *)&p                                        \
        }

int main(void)
{
        const struct CMUnitTest tests[] = {
            T(test_config_writeback, P_SYNC),
            T(test_config_read_only_unsafe, P_SYNC_RO),
            T(test_capacity_rounds_down, P_SYNC),
            T(test_create_errors, P_SYNC),
            T(test_write_read_back, P_SYNC),
            T(test_write_read_back, P_URING),
            T(test_event_idx, P_SYNC),
            T(test_event_idx, P_SYNC_NOEVIDX),
            T(test_event_idx, P_URING),
            T(test_event_idx, P_URING_NOEVIDX),
            T(test_multi_descriptor_write, P_SYNC),
            T(test_multi_descriptor_write, P_URING),
            T(test_multi_descriptor_read, P_SYNC),
            T(test_multi_descriptor_read, P_URING),
            T(test_indirect, P_SYNC),
            T(test_indirect, P_URING),
            T(test_batch_across_notifications, P_SYNC),
            T(test_batch_across_notifications, P_URING),
            T(test_flush_writeback, P_SYNC),
            T(test_flush_writeback, P_URING),
            T(test_flush_unsafe_unsupported, P_SYNC_UNSAFE),
            T(test_flush_unsafe_unsupported, P_URING_UNSAFE),
            T(test_get_id, P_SYNC),
            T(test_get_id, P_URING),
            T(test_discard_punches_hole, P_SYNC),
            T(test_discard_punches_hole, P_URING),
            T(test_write_zeroes, P_SYNC),
            T(test_write_zeroes, P_URING),
            T(test_write_zeroes_falls_back_to_writing, P_SYNC),
            T(test_write_zeroes_falls_back_to_writing, P_URING),
            T(test_discard_write_zeroes_errors, P_SYNC),
            T(test_discard_write_zeroes_errors, P_URING),
            T(test_discard_not_negotiated, P_SYNC),
            T(test_read_only_rejects_writes, P_SYNC_RO),
            T(test_read_only_rejects_writes, P_URING_RO),
            T(test_beyond_capacity, P_SYNC),
            T(test_beyond_capacity, P_URING),
            T(test_length_not_multiple_of_512, P_SYNC),
            T(test_length_not_multiple_of_512, P_URING),
            T(test_no_status_byte, P_SYNC),
            T(test_no_status_byte, P_URING),
            T(test_unknown_type, P_SYNC),
            T(test_unknown_type, P_URING),
            T(test_short_read_is_completed, P_SYNC),
            T(test_short_read_is_completed, P_URING),
            T(test_short_read_then_eof_is_ioerr, P_SYNC),
            T(test_short_read_then_eof_is_ioerr, P_URING),
            T(test_random_against_model, P_SYNC),
            T(test_random_against_model, P_URING),
            T(test_enospc_and_eio, P_SYNC),
            T(test_enospc_and_eio, P_URING),
            T(test_rate_limited, P_SYNC_LIMITED),
            T(test_rate_limited, P_URING_LIMITED),
            T(test_reset_with_requests_in_flight, P_URING),
            T(test_destroy_with_requests_in_flight, P_URING),
            T(test_set_path, P_SYNC),
            T(test_set_path, P_URING),
            T(test_set_path_with_requests_in_flight, P_URING),
            T(test_needs_reset_with_requests_in_flight, P_URING),
            T(test_malformed_chains, P_SYNC),
            T(test_malformed_chains, P_URING),
            T(test_bogus_avail_index_needs_reset, P_SYNC),
            T(test_bogus_avail_index_needs_reset, P_URING),
            T(test_cc4_private_status_byte, P_SYNC),
            T(test_cc4_private_status_byte, P_URING),
            T(test_cc4_private_data_buffer, P_SYNC),
            T(test_cc4_private_data_buffer, P_URING),
            T(test_cc6_unshare_status_while_in_flight, P_URING),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
