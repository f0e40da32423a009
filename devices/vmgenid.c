#include "vmgenid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct vmgenid {
        uint8_t id[VMGENID_LEN];
        struct irq_line irq;
};

/* 16 bytes from the kernel's RNG; it is seeded long before a VMM runs, so this never
 * waits, but a failure is reported rather than leaving an id a clone could share. */
static int vmgenid_draw(struct vmgenid *v, struct error *err)
{
        ssize_t n = getrandom(v->id, sizeof(v->id), GRND_NONBLOCK);

        if (n != (ssize_t)sizeof(v->id))
                return error_set(err, n < 0 ? -errno : -EIO, "VMGenID: getrandom: %s",
                                 n < 0 ? strerror(errno) : "short read");
        return 0;
}

int vmgenid_create(struct irq_line irq, struct error *err, struct vmgenid **out)
{
        struct vmgenid *v = calloc(1, sizeof(*v));
        int r;

        if (!v)
                return error_set(err, -ENOMEM, "out of memory");
        v->irq = irq;
        r = vmgenid_draw(v, err);
        if (r) {
                free(v);
                return r;
        }
        *out = v;
        return 0;
}

void vmgenid_destroy(struct vmgenid *v)
{
        free(v);
}

static void vmgenid_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
        const struct vmgenid *v = opaque;

        for (uint32_t i = 0; i < len; i++)
                data[i] = offset + i < VMGENID_LEN ? v->id[offset + i] : 0;
}

static void vmgenid_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
        /* Read-only, as the spec's id is to the guest. */
        (void)opaque;
        (void)offset;
        (void)data;
        (void)len;
}

const struct bus_ops *vmgenid_bus_ops(void)
{
        static const struct bus_ops ops = {.read = vmgenid_read, .write = vmgenid_write};
        return &ops;
}

int vmgenid_new_generation(struct vmgenid *v, struct error *err)
{
        int r = vmgenid_draw(v, err);

        if (r)
                return r;
        /* An edge: the GED's interrupt is edge-triggered (its _CRS says so). */
        irq_line_set(&v->irq, true);
        irq_line_set(&v->irq, false);
        return 0;
}

void vmgenid_get(const struct vmgenid *v, uint8_t id[VMGENID_LEN])
{
        memcpy(id, v->id, VMGENID_LEN);
}
