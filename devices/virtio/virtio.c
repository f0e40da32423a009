#include "virtio.h"

#include <string.h>

void virtio_signal_used(struct virtio_device *vd, unsigned q)
{
        vd->tops->signal_used(vd->transport, q);
}

void virtio_signal_config(struct virtio_device *vd)
{
        vd->tops->signal_config(vd->transport);
}

void virtio_needs_reset(struct virtio_device *vd)
{
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
