/*
 * virtio-rng (rng.c) through the hostile driver of virtio_harness.h, with an optional rate
 * limiter. Creation bytes: flags (bit 0 rate limiter), the limiter's sizes (two u8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/rng.h"
#include "virtio_harness.h"

static struct virtio_rng *rng;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

static struct virtio_device *rng_create(struct vh *h, struct fz *f)
{
        uint8_t flags = fz_u8(f), a = fz_u8(f), b = fz_u8(f);
        struct rate_limiter_config rl = {
            .bandwidth = {.size = (uint64_t)a * 64, .refill_time_ms = a ? 1 : 0},
            .ops = {.size = b % 8, .refill_time_ms = b % 8 ? 1 : 0},
        };
        struct virtio_rng_config c = {
            .name = "entropy0", .limit = (flags & 1) ? &rl : NULL, .loop = h->loop};
        struct error err = {0};

        if (virtio_rng_create(&c, &err, &rng)) {
                fprintf(stderr, "fuzz_virtio_rng: %s\n", err.msg);
                abort();
        }
        return virtio_rng_device(rng);
}

static void rng_op(struct vh *h, struct fz *f)
{
        struct virtio_rng_stats st;

        (void)h;
        (void)f;
        virtio_rng_get_stats(rng, &st);
}

static void rng_destroy(struct vh *h)
{
        (void)h;
        virtio_rng_destroy(rng);
        rng = NULL;
}

static const struct vh_device dev = {
    .name = "entropy0",
    .nr_queues = 1,
    .create = rng_create,
    .destroy = rng_destroy,
    .op = rng_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
