/* TEMPORARY placeholder while the device is being written: refuses to be created. */
#include "blk.h"

#include <errno.h>
#include <string.h>

struct virtio_blk {
        struct virtio_device vd;
};

int virtio_blk_create(const struct virtio_blk_config *cfg, struct error *err,
                      struct virtio_blk **out)
{
        (void)out;
        return error_config(err, "%s: not implemented yet", cfg->name);
}

void virtio_blk_destroy(struct virtio_blk *d)
{
        (void)d;
}

struct virtio_device *virtio_blk_device(struct virtio_blk *d)
{
        return &d->vd;
}

void virtio_blk_get_stats(struct virtio_blk *d, struct virtio_blk_stats *out)
{
        (void)d;
        memset(out, 0, sizeof(*out));
}

int virtio_blk_set_path(struct virtio_blk *blk, const char *path, struct error *err)
{
        (void)blk;
        (void)path;
        return error_config(err, "not implemented yet");
}

void virtio_blk_set_rate_limiter(struct virtio_blk *blk, const struct rate_limiter_config *limit)
{
        (void)blk;
        (void)limit;
}
