/*
 * virtio-pmem (pmem.c) through the hostile driver of virtio_harness.h: FLUSH requests and
 * everything malformed around them, on a writable or read-only 1 MiB file (a memfd, so no
 * file is left behind), with an optional rate limiter that the device's own operation
 * replaces or lifts (PATCH /pmem/{id}). Creation bytes: flags (bit 0 read-only, bit 1 rate
 * limiter), the limiter's ops bucket size (u8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/virtio/pmem.h"
#include "virtio_harness.h"

static struct virtio_pmem *pm;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        int fd = memfd_create("fuzz_virtio_pmem", MFD_CLOEXEC);

        (void)argc;
        (void)argv;
        fz_quiet_log();
        if (fd < 0 || ftruncate(fd, 1 << 20) || pwrite(fd, "pmem", 4, 0) != 4)
                abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        return 0;
}

static struct virtio_device *pmem_create(struct vh *h, struct fz *f)
{
        uint8_t flags = fz_u8(f), ops = fz_u8(f);
        struct rate_limiter_config rl = {.ops = {.size = ops % 8, .refill_time_ms = 1}};
        struct virtio_pmem_config c = {.name = "pmem0",
                                       .path = path,
                                       .read_only = flags & 1,
                                       .limit = (flags & 2) ? &rl : NULL,
                                       .loop = h->loop};
        struct error err = {0};

        if (virtio_pmem_create(&c, &err, &pm)) {
                fprintf(stderr, "fuzz_virtio_pmem: %s\n", err.msg);
                abort();
        }
        virtio_pmem_set_start(pm, 0x100000000ull);
        return virtio_pmem_device(pm);
}

/* The host's side: the statistics, or a new limiter (none lifts it). */
static void pmem_op(struct vh *h, struct fz *f)
{
        struct virtio_pmem_stats st;
        uint8_t v = fz_u8(f);
        struct rate_limiter_config rl = {.ops = {.size = v % 4, .refill_time_ms = 1}};

        (void)h;
        if (v & 0x80)
                virtio_pmem_set_rate_limiter(pm, (v & 0x40) ? NULL : &rl);
        virtio_pmem_get_stats(pm, &st);
}

static void pmem_destroy(struct vh *h)
{
        (void)h;
        virtio_pmem_destroy(pm);
        pm = NULL;
}

static const struct vh_device dev = {
    .name = "pmem0",
    .nr_queues = 1,
    .create = pmem_create,
    .destroy = pmem_destroy,
    .op = pmem_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
