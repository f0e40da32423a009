/*
 * virtio-balloon (balloon.c) through the hostile driver of virtio_harness.h: inflate and
 * deflate PFN lists (releasing guest memory through the device's accessor: on a protected
 * VM only shared granules), the statistics queue, free page reports and hints (ranges
 * discarded the same way, command ids in and out of the host's round), configuration
 * writes of `actual` and `poison_val`, and the host's runtime updates (PATCH /balloon,
 * PATCH /balloon/statistics, the hinting runs' start, stop and status).
 *
 * Creation bytes: the target in MiB (u8 % 8), flags (bit 0 deflate_on_oom, bit 1 statistics
 * every second, bit 2 free page reporting, bit 3 free page hinting). Up to five queues:
 * which index is which follows the negotiated features.
 */
#include <stdio.h>
#include <stdlib.h>

#include "devices/virtio/balloon.h"
#include "virtio_harness.h"

static struct virtio_balloon *balloon;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

static struct virtio_device *balloon_create(struct vh *h, struct fz *f)
{
        uint8_t amount = fz_u8(f) % 8, flags = fz_u8(f);
        struct virtio_balloon_config c = {
            .name = "balloon0",
            .amount_mib = amount,
            .deflate_on_oom = flags & 1,
            .stats_polling_interval_s = (flags & 2) ? 1 : 0,
            .free_page_reporting = flags & 4,
            .free_page_hinting = flags & 8,
            .loop = h->loop,
        };
        struct error err = {0};

        if (virtio_balloon_create(&c, &err, &balloon)) {
                fprintf(stderr, "fuzz_virtio_balloon: %s\n", err.msg);
                abort();
        }
        return virtio_balloon_device(balloon);
}

static void balloon_op(struct vh *h, struct fz *f)
{
        struct virtio_balloon_stats st;
        struct virtio_balloon_hinting hs;

        (void)h;
        switch (fz_u8(f) % 6) {
        case 0:
                virtio_balloon_set_target(balloon, fz_u32(f) % 16);
                break;
        case 1:
                (void)!virtio_balloon_set_stats_interval(balloon, fz_u8(f) % 3);
                break;
        case 2:
                virtio_balloon_get_stats(balloon, &st);
                break;
        case 3:
                (void)!virtio_balloon_hinting_start(balloon, fz_u8(f) & 1);
                break;
        case 4:
                (void)!virtio_balloon_hinting_stop(balloon);
                break;
        case 5:
                (void)!virtio_balloon_hinting_status(balloon, &hs);
                break;
        }
}

static void balloon_destroy(struct vh *h)
{
        (void)h;
        virtio_balloon_destroy(balloon);
        balloon = NULL;
}

static const struct vh_device dev = {
    .name = "balloon0",
    .nr_queues = 5,
    .create = balloon_create,
    .destroy = balloon_destroy,
    .op = balloon_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
