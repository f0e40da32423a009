/*
 * virtio-blk request parsing and its state machine (blk.c, blk_req.c) through the hostile
 * driver of virtio_harness.h, on a small file, with either engine (sync, io_uring), either
 * cache mode, read-only or not, an optional rate limiter, and an optional fault script on
 * the backend seam (blk_backend.h): short transfers, EIO, ENOSPC, end of file, fallocate
 * refused. Device operations: switch the backing file (PATCH /drives), replace the rate
 * limiter, change the fault script.
 *
 * Creation bytes: flags (bit 0 read-only, 1 writeback, 2 io_uring, 3 rate limiter, 4 fault
 * script), capacity in sectors (u16 % 2048), the limiter (two u8), the script (8 bytes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/blk_backend.h"
#include "virtio_harness.h"

#define SCRIPT_LEN 8

static char path[2][64];
static int fd[2] = {-1, -1};

struct blk_fx {
        struct virtio_blk *blk;
        uint8_t script[SCRIPT_LEN];
        unsigned step;
};

static struct blk_fx fx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *tmp = getenv("TMPDIR");

        (void)argc;
        (void)argv;
        fz_quiet_log();
        for (int i = 0; i < 2; i++) {
                snprintf(path[i], sizeof(path[i]), "%s/vmm-fuzz-blk-XXXXXX",
                         tmp && *tmp ? tmp : "/tmp");
                fd[i] = mkstemp(path[i]);
                if (fd[i] < 0) {
                        perror("fuzz_virtio_blk: mkstemp");
                        exit(1);
                }
        }
        return 0; /* the device opens them by name for each input; removed at exit */
}

__attribute__((destructor)) static void remove_files(void)
{
        for (int i = 0; i < 2; i++)
                if (fd[i] >= 0)
                        unlink(path[i]);
}

/* The fault script: each step consumes one byte. */
static long fault(long res, const struct blk_io *io)
{
        uint8_t s = fx.script[fx.step++ % SCRIPT_LEN];

        switch (s % 8) {
        case 1: /* a short transfer */
                if (res > 1 && (io->op == BLK_IO_READ || io->op == BLK_IO_WRITE))
                        return res / 2;
                return res;
        case 2:
                return -EIO;
        case 3:
                return io->op == BLK_IO_READ ? res : -ENOSPC;
        case 4:
                return io->op == BLK_IO_FALLOCATE ? -EOPNOTSUPP : res;
        case 5:
                return io->op == BLK_IO_READ ? 0 : res; /* end of file */
        default:
                return res;
        }
}

static long fault_run(void *opaque, int fdd, const struct blk_io *io)
{
        (void)opaque;
        return fault(blk_file_run(NULL, fdd, io), io);
}

static long fault_async(void *opaque, const struct blk_io *io, long res)
{
        (void)opaque;
        return fault(res, io);
}

static const struct blk_backend_ops fault_ops = {
    .run = fault_run,
    .async_result = fault_async,
};

static void limiter_cfg(struct fz *f, struct rate_limiter_config *rl)
{
        uint8_t a = fz_u8(f), b = fz_u8(f);

        memset(rl, 0, sizeof(*rl));
        rl->bandwidth.size = a ? (uint64_t)a * 512 : 0;
        rl->bandwidth.refill_time_ms = a ? 1 : 0;
        rl->ops.size = b % 16;
        rl->ops.refill_time_ms = b % 16 ? 1 : 0;
}

static struct virtio_device *blk_create(struct vh *h, struct fz *f)
{
        uint8_t flags = fz_u8(f);
        uint32_t sectors = fz_u16(f) % 2048;
        struct rate_limiter_config rl;
        struct virtio_blk_config c = {
            .name = "block0",
            .drive_id = "fuzzdrive",
            .path = path[0],
            .read_only = flags & 1,
            .cache = (flags & 2) ? VIRTIO_BLK_CACHE_WRITEBACK : VIRTIO_BLK_CACHE_UNSAFE,
            .engine = (flags & 4) ? VIRTIO_BLK_ENGINE_IO_URING : VIRTIO_BLK_ENGINE_SYNC,
            .loop = h->loop,
        };
        struct error err = {0};

        limiter_cfg(f, &rl);
        if (flags & 8)
                c.limit = &rl;
        fz_copy(f, fx.script, sizeof(fx.script));
        fx.step = 0;
        if (ftruncate(fd[0], (off_t)sectors * 512) || ftruncate(fd[1], 4096))
                abort();
        if (virtio_blk_create(&c, &err, &fx.blk)) {
                fprintf(stderr, "fuzz_virtio_blk: %s\n", err.msg);
                abort();
        }
        if (flags & 16)
                virtio_blk_set_backend(fx.blk, &fault_ops, NULL);
        return virtio_blk_device(fx.blk);
}

static void blk_op(struct vh *h, struct fz *f)
{
        struct rate_limiter_config rl;
        struct virtio_blk_stats st;
        struct error err = {0};

        (void)h;
        switch (fz_u8(f) % 4) {
        case 0: /* PATCH /drives: another file, another capacity */
                if (virtio_blk_set_path(fx.blk, path[fz_u8(f) & 1], &err))
                        abort();
                break;
        case 1:
                limiter_cfg(f, &rl);
                virtio_blk_set_rate_limiter(fx.blk, fz_bool(f) ? &rl : NULL);
                break;
        case 2:
                fz_copy(f, fx.script, sizeof(fx.script));
                break;
        case 3:
                virtio_blk_get_stats(fx.blk, &st);
                break;
        }
}

static void blk_destroy(struct vh *h)
{
        (void)h;
        virtio_blk_destroy(fx.blk);
        fx.blk = NULL;
}

static const struct vh_device dev = {
    .name = "block0",
    .nr_queues = 1,
    .create = blk_create,
    .destroy = blk_destroy,
    .op = blk_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
