/* TEMPORARY placeholder while the device is being written: refuses to be created. */
#include "balloon.h"

#include <errno.h>
#include <string.h>

struct virtio_balloon {
        struct virtio_device vd;
};

int virtio_balloon_create(const struct virtio_balloon_config *cfg, struct error *err,
                          struct virtio_balloon **out)
{
        (void)out;
        return error_config(err, "%s: not implemented yet", cfg->name);
}

void virtio_balloon_destroy(struct virtio_balloon *d)
{
        (void)d;
}

struct virtio_device *virtio_balloon_device(struct virtio_balloon *d)
{
        return &d->vd;
}

void virtio_balloon_get_stats(struct virtio_balloon *d, struct virtio_balloon_stats *out)
{
        (void)d;
        memset(out, 0, sizeof(*out));
}

void virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib)
{
        (void)b;
        (void)amount_mib;
}

int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint32_t seconds)
{
        (void)b;
        (void)seconds;
        return -ENOSYS;
}
