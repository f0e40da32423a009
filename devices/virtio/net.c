/* TEMPORARY placeholder while the device is being written: refuses to be created. */
#include "net.h"

#include <errno.h>
#include <string.h>

struct virtio_net {
        struct virtio_device vd;
};

int virtio_net_create(const struct virtio_net_config *cfg, struct error *err,
                      struct virtio_net **out)
{
        (void)out;
        return error_config(err, "%s: not implemented yet", cfg->name);
}

void virtio_net_destroy(struct virtio_net *d)
{
        (void)d;
}

struct virtio_device *virtio_net_device(struct virtio_net *d)
{
        return &d->vd;
}

void virtio_net_get_stats(struct virtio_net *d, struct virtio_net_stats *out)
{
        (void)d;
        memset(out, 0, sizeof(*out));
}

void virtio_net_set_rate_limiters(struct virtio_net *net, const struct rate_limiter_config *rx,
                                  const struct rate_limiter_config *tx)
{
        (void)net;
        (void)rx;
        (void)tx;
}
