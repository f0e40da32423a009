#include "virtio.h"

#include <string.h>

void virtio_device_init(struct virtio_device *vd)
{
        pthread_mutex_init(&vd->lock, NULL);
        for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
                virtq_reset(&vd->vqs[i]);
        vd->acked_features = 0;
}

void virtio_device_fini(struct virtio_device *vd)
{
        pthread_mutex_destroy(&vd->lock);
}

/* A device without a transport (detached, being destroyed) has nobody to tell. */
void virtio_signal_used(struct virtio_device *vd, unsigned q)
{
        if (vd->tops)
                vd->tops->signal_used(vd->transport, q);
}

void virtio_signal_config(struct virtio_device *vd)
{
        if (vd->tops)
                vd->tops->signal_config(vd->transport);
}

void virtio_needs_reset(struct virtio_device *vd)
{
        if (vd->tops)
                vd->tops->needs_reset(vd->transport);
}

void virtio_config_copy(const void *cfg, uint32_t cfg_len, uint32_t off, uint8_t *data,
                        uint32_t len)
{
        memset(data, 0, len);
        if (off >= cfg_len)
                return;
        if (len > cfg_len - off)
                len = cfg_len - off;
        memcpy(data, (const uint8_t *)cfg + off, len);
}
