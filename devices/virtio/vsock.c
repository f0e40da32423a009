/* TEMPORARY placeholder while the device is being written: refuses to be created. */
#include "vsock.h"

#include <errno.h>
#include <string.h>

struct virtio_vsock {
        struct virtio_device vd;
};

int virtio_vsock_create(const struct virtio_vsock_config *cfg, struct error *err,
                        struct virtio_vsock **out)
{
        (void)out;
        return error_config(err, "%s: not implemented yet", cfg->name);
}

void virtio_vsock_destroy(struct virtio_vsock *d)
{
        (void)d;
}

struct virtio_device *virtio_vsock_device(struct virtio_vsock *d)
{
        return &d->vd;
}

void virtio_vsock_get_stats(struct virtio_vsock *d, struct virtio_vsock_stats *out)
{
        (void)d;
        memset(out, 0, sizeof(*out));
}
