#include "vm_devices.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "common/log.h"
#include "devices/virtio/balloon.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net.h"
#include "devices/virtio/pmem.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "memory/hostmem.h"

struct slot;

struct notify_ctx {
        struct slot *slot;
        unsigned q;
};

/* One attached device: its model, transport, memory accessor and KVM plumbing. */
struct slot {
        char name[16];
        enum vm_device_kind kind;
        char id[65]; /* drive_id / iface_id */
        void *model;
        void (*destroy_model)(void *model);
        struct virtio_device *vd;
        struct hostmem *mem;
        struct virtio_mmio *transport;
        gpa_t base; /* where the board placed it (vm_devices_attach) */
        uint64_t len;
        uint32_t gsi;
        int irq_fd;
        int notify_fd[VIRTIO_MAX_QUEUES];
        struct notify_ctx notify[VIRTIO_MAX_QUEUES];
        struct event_loop *loop;
        bool access_platform; /* offers and requires VIRTIO_F_ACCESS_PLATFORM */
};

struct vm_devices {
        struct event_loop *loop;
        struct mmds *mmds;
        struct guest_mem *mem;
        struct ownership *own; /* a protected VM's */
        unsigned nr;
        struct slot slots[VMM_MAX_VIRTIO_DEVICES];
};

/* A configured virtio device: its kind, and its index in cfg's drives[] or nets[] (0 for
 * the single ones). */
struct vdev_ref {
        enum vm_device_kind kind;
        unsigned i;
};

#define MAX_CONFIGURED (VMM_MAX_DRIVES + VMM_MAX_NETS + VMM_MAX_PMEMS + 4)

/* The configured virtio devices in slot order, the only place that order is written (see
 * vm_devices.h). Returns how many. */
static unsigned configured(const struct vmm_config *cfg, struct vdev_ref out[MAX_CONFIGURED])
{
        unsigned n = 0;

        for (unsigned i = 0; i < cfg->nr_drives; i++)
                out[n++] = (struct vdev_ref){VM_DEVICE_BLOCK, i};
        for (unsigned i = 0; i < cfg->nr_nets; i++)
                out[n++] = (struct vdev_ref){VM_DEVICE_NET, i};
        if (cfg->vsock.present)
                out[n++] = (struct vdev_ref){VM_DEVICE_VSOCK, 0};
        if (cfg->balloon.present)
                out[n++] = (struct vdev_ref){VM_DEVICE_BALLOON, 0};
        if (cfg->entropy.present)
                out[n++] = (struct vdev_ref){VM_DEVICE_ENTROPY, 0};
        for (unsigned i = 0; i < cfg->nr_pmems; i++)
                out[n++] = (struct vdev_ref){VM_DEVICE_PMEM, i};
        if (cfg->hotplug.present)
                out[n++] = (struct vdev_ref){VM_DEVICE_MEM, 0};
        return n;
}

int vm_devices_describe(const struct vmm_config *cfg, struct vm_board *b, struct error *err)
{
        struct vdev_ref refs[MAX_CONFIGURED];
        unsigned n = configured(cfg, refs);

        for (unsigned i = 0; i < n; i++) {
                struct platform_dev dev = {.kind = PLATFORM_DEV_VIRTIO_MMIO,
                                           .len = X86_VIRTIO_MMIO_SIZE};
                int r;

                snprintf(dev.name, sizeof(dev.name), "VR%02u", i);
                r = vm_board_add(b, VM_BOARD_VIRTIO, i, &dev, true, err);
                if (r)
                        return r;
        }
        for (unsigned i = 0; i < cfg->nr_pmems; i++) {
                struct platform_dev dev = {.kind = PLATFORM_DEV_MEMORY,
                                           .len = cfg->pmems[i].window_size};
                int r;

                snprintf(dev.name, sizeof(dev.name), "PM%02u", i);
                r = vm_board_add(b, VM_BOARD_PMEM, i, &dev, true, err);
                if (r)
                        return error_prefix(err, "pmem '%s'", cfg->pmems[i].id), r;
        }
        if (cfg->hotplug.present) {
                struct platform_dev dev = {.name = "HPMM",
                                           .kind = PLATFORM_DEV_MEMORY,
                                           .len = cfg->hotplug.total_size_mib << 20,
                                           .align = cfg->hotplug.slot_size_mib << 20};
                int r = vm_board_add(b, VM_BOARD_HOTPLUG, 0, &dev, true, err);

                if (r)
                        return error_prefix(err, "memory hotplug"), r;
        }
        return 0;
}

int vm_devices_cmdline(const struct vmm_config *cfg, char *cmdline, size_t cap, struct error *err)
{
        const struct vmm_drive *root = NULL;
        size_t len = strlen(cmdline);
        int n;

        for (unsigned i = 0; i < cfg->nr_drives; i++)
                if (cfg->drives[i].is_root_device)
                        root = &cfg->drives[i];
        for (unsigned i = 0; !root && i < cfg->nr_pmems; i++)
                if (cfg->pmems[i].root_device) {
                        n = snprintf(cmdline + len, cap - len, " root=/dev/pmem%u %s", i,
                                     cfg->pmems[i].read_only ? "ro" : "rw");
                        goto out;
                }
        if (!root)
                return 0;
        /* Firecracker's convention: the root drive is attached first, so it is vda. */
        if (root->partuuid)
                n = snprintf(cmdline + len, cap - len, " root=PARTUUID=%s %s", root->partuuid,
                             root->is_read_only ? "ro" : "rw");
        else
                n = snprintf(cmdline + len, cap - len, " root=/dev/vda %s",
                             root->is_read_only ? "ro" : "rw");
out:
        if (n < 0 || (size_t)n >= cap - len) {
                cmdline[len] = '\0';
                return error_config(err, "kernel command line too long for the root= argument");
        }
        return 0;
}

/* ---- model creation ---- */

static void destroy_blk(void *m)
{
        virtio_blk_destroy(m);
}

static void destroy_net(void *m)
{
        virtio_net_destroy(m);
}

static void destroy_vsock(void *m)
{
        virtio_vsock_destroy(m);
}

static void destroy_balloon(void *m)
{
        virtio_balloon_destroy(m);
}

static void destroy_pmem(void *m)
{
        virtio_pmem_destroy(m);
}

static void destroy_mem(void *m)
{
        virtio_mem_destroy(m);
}

static void destroy_rng(void *m)
{
        virtio_rng_destroy(m);
}

static struct slot *new_slot(struct vm_devices *d, const char *fmt, unsigned idx)
{
        struct slot *s = &d->slots[d->nr++];

        memset(s, 0, sizeof(*s));
        snprintf(s->name, sizeof(s->name), fmt, idx);
        s->irq_fd = -1;
        for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
                s->notify_fd[q] = -1;
        s->loop = d->loop;
        return s;
}

static const struct rate_limiter_config *limit_of(const struct vmm_rate_limiter *l)
{
        return l->present ? &l->cfg : NULL;
}

static int create_blk(struct vm_devices *d, const struct vmm_drive *drv, unsigned i,
                      struct error *err)
{
        struct slot *s = new_slot(d, "block%u", i);
        struct virtio_blk_config c = {
            .name = s->name,
            .drive_id = drv->drive_id,
            .path = drv->path_on_host,
            .read_only = drv->is_read_only,
            .cache = drv->cache_type == VMM_CACHE_WRITEBACK ? VIRTIO_BLK_CACHE_WRITEBACK
                                                            : VIRTIO_BLK_CACHE_UNSAFE,
            .engine = drv->io_engine == VMM_IO_ASYNC ? VIRTIO_BLK_ENGINE_IO_URING
                                                     : VIRTIO_BLK_ENGINE_SYNC,
            .limit = limit_of(&drv->rate_limiter),
            .loop = d->loop,
        };
        struct virtio_blk *blk;
        int r = virtio_blk_create(&c, err, &blk);

        if (r) {
                error_prefix(err, "drive '%s'", drv->drive_id);
                return r;
        }
        s->model = blk;
        s->kind = VM_DEVICE_BLOCK;
        snprintf(s->id, sizeof(s->id), "%s", drv->drive_id);
        s->destroy_model = destroy_blk;
        s->vd = virtio_blk_device(blk);
        return 0;
}

static int create_net(struct vm_devices *d, const struct vmm_net *n, uint32_t mmds_ipv4, unsigned i,
                      struct error *err)
{
        struct slot *s = new_slot(d, "net%u", i);
        struct virtio_net_config c = {
            .name = s->name,
            .tap_name = n->host_dev_name,
            .has_mac = n->has_mac,
            .mtu = n->mtu,
            .rx_limit = limit_of(&n->rx_rate_limiter),
            .tx_limit = limit_of(&n->tx_rate_limiter),
            .loop = d->loop,
            .mmds = n->mmds ? d->mmds : NULL,
            .mmds_ipv4 = mmds_ipv4,
        };
        struct virtio_net *net;
        int r;

        memcpy(c.mac, n->guest_mac, 6);
        r = virtio_net_create(&c, err, &net);
        if (r) {
                error_prefix(err, "network interface '%s'", n->iface_id);
                return r;
        }
        s->model = net;
        s->kind = VM_DEVICE_NET;
        snprintf(s->id, sizeof(s->id), "%s", n->iface_id);
        s->destroy_model = destroy_net;
        s->vd = virtio_net_device(net);
        return 0;
}

static int create_vsock(struct vm_devices *d, const struct vmm_vsock *v, struct error *err)
{
        struct slot *s = new_slot(d, "vsock%u", 0);
        struct virtio_vsock_config c = {
            .name = s->name, .guest_cid = v->guest_cid, .uds_path = v->uds_path, .loop = d->loop};
        struct virtio_vsock *vs;
        int r = virtio_vsock_create(&c, err, &vs);

        if (r)
                return r;
        s->model = vs;
        s->kind = VM_DEVICE_VSOCK;
        s->destroy_model = destroy_vsock;
        s->vd = virtio_vsock_device(vs);
        return 0;
}

static int create_balloon(struct vm_devices *d, const struct vmm_balloon *b, struct error *err)
{
        struct slot *s = new_slot(d, "balloon%u", 0);
        struct virtio_balloon_config c = {
            .name = s->name,
            .amount_mib = b->amount_mib,
            .deflate_on_oom = b->deflate_on_oom,
            .stats_polling_interval_s = b->stats_polling_interval_s,
            .free_page_reporting = b->free_page_reporting,
            .free_page_hinting = b->free_page_hinting,
            .loop = d->loop,
        };
        struct virtio_balloon *bl;
        int r = virtio_balloon_create(&c, err, &bl);

        if (r)
                return r;
        s->model = bl;
        s->kind = VM_DEVICE_BALLOON;
        s->destroy_model = destroy_balloon;
        s->vd = virtio_balloon_device(bl);
        return 0;
}

static int create_rng(struct vm_devices *d, const struct vmm_entropy *e, struct error *err)
{
        struct slot *s = new_slot(d, "entropy%u", 0);
        struct virtio_rng_config c = {
            .name = s->name, .limit = limit_of(&e->rate_limiter), .loop = d->loop};
        struct virtio_rng *rng;
        int r = virtio_rng_create(&c, err, &rng);

        if (r)
                return r;
        s->model = rng;
        s->kind = VM_DEVICE_ENTROPY;
        s->destroy_model = destroy_rng;
        s->vd = virtio_rng_device(rng);
        return 0;
}

static int create_pmem(struct vm_devices *d, const struct vmm_pmem *p, unsigned i,
                       struct error *err)
{
        struct slot *s = new_slot(d, "pmem%u", i);
        struct virtio_pmem_config c = {
            .name = s->name,
            .path = p->path_on_host,
            .read_only = p->read_only,
            .limit = limit_of(&p->rate_limiter),
            .loop = d->loop,
        };
        struct virtio_pmem *pm;
        int r = virtio_pmem_create(&c, err, &pm);

        if (r) {
                error_prefix(err, "pmem '%s'", p->id);
                return r;
        }
        s->model = pm;
        s->kind = VM_DEVICE_PMEM;
        snprintf(s->id, sizeof(s->id), "%s", p->id);
        s->destroy_model = destroy_pmem;
        s->vd = virtio_pmem_device(pm);
        /* The board sized the window from the configuration: the file must still fill it. */
        if (virtio_pmem_size(pm) != p->window_size)
                return error_config(err,
                                    "pmem '%s': '%s' now needs a window of %" PRIu64
                                    " bytes; the VM was configured with %" PRIu64
                                    " (the file changed size)",
                                    p->id, p->path_on_host, virtio_pmem_size(pm), p->window_size);
        return 0;
}

static int create_mem(struct vm_devices *d, const struct vmm_memory_hotplug *h, struct error *err)
{
        struct slot *s = new_slot(d, "mem%u", 0);
        struct virtio_mem_config c = {
            .name = s->name,
            .region_size = h->total_size_mib << 20,
            .block_size = h->block_size_mib << 20,
        };
        struct virtio_mem *m;
        int r = virtio_mem_create(&c, err, &m);

        if (r)
                return r;
        s->model = m;
        s->kind = VM_DEVICE_MEM;
        s->destroy_model = destroy_mem;
        s->vd = virtio_mem_device(m);
        /* A snapshot restores the requested size the guest was asked for. */
        virtio_mem_set_requested(m, h->requested_size_mib << 20);
        return 0;
}

/* A configured device's access_platform setting. */
static enum vmm_access_platform ref_ap(const struct vmm_config *cfg, struct vdev_ref ref)
{
        switch (ref.kind) {
        case VM_DEVICE_BLOCK:
                return cfg->drives[ref.i].access_platform;
        case VM_DEVICE_NET:
                return cfg->nets[ref.i].access_platform;
        case VM_DEVICE_VSOCK:
                return cfg->vsock.access_platform;
        case VM_DEVICE_BALLOON:
                return cfg->balloon.access_platform;
        case VM_DEVICE_PMEM:
                return VMM_AP_DEFAULT; /* never on a protected VM (CC-15) */
        case VM_DEVICE_MEM:
                return VMM_AP_DEFAULT; /* never on a protected VM (CC-16) */
        case VM_DEVICE_ENTROPY:
                break;
        }
        return cfg->entropy.access_platform;
}

static int create_model(struct vm_devices *d, const struct vmm_config *cfg, struct vdev_ref ref,
                        struct error *err)
{
        switch (ref.kind) {
        case VM_DEVICE_BLOCK:
                return create_blk(d, &cfg->drives[ref.i], ref.i, err);
        case VM_DEVICE_NET:
                return create_net(d, &cfg->nets[ref.i], cfg->mmds.ipv4, ref.i, err);
        case VM_DEVICE_VSOCK:
                return create_vsock(d, &cfg->vsock, err);
        case VM_DEVICE_BALLOON:
                return create_balloon(d, &cfg->balloon, err);
        case VM_DEVICE_PMEM:
                return create_pmem(d, &cfg->pmems[ref.i], ref.i, err);
        case VM_DEVICE_MEM:
                return create_mem(d, &cfg->hotplug, err);
        case VM_DEVICE_ENTROPY:
                break;
        }
        return create_rng(d, &cfg->entropy, err);
}

/* A transition to private waiting for block I/O to let go of guest memory completes that
 * I/O itself (ownership_set_progress): the VMM thread, which reaps io_uring completions, may
 * be waiting for the very vCPU that waits (a pause, the VM's end). */
static void reap_block_io(void *opaque)
{
        struct vm_devices *d = opaque;

        for (unsigned i = 0; i < d->nr; i++)
                if (d->slots[i].kind == VM_DEVICE_BLOCK)
                        virtio_blk_reap(d->slots[i].model);
}

int vm_devices_create(const struct vmm_config *cfg, struct guest_mem *mem, struct ownership *own,
                      struct event_loop *loop, struct mmds *mmds, struct error *err,
                      struct vm_devices **out)
{
        struct vdev_ref refs[MAX_CONFIGURED];
        unsigned n = configured(cfg, refs);
        struct vm_devices *d;
        int r = 0;

        if (n > VMM_MAX_VIRTIO_DEVICES)
                return error_config(err, "%u virtio devices configured; at most %d fit", n,
                                    VMM_MAX_VIRTIO_DEVICES);
        d = calloc(1, sizeof(*d));
        if (!d)
                return error_set(err, -ENOMEM, "out of memory");
        d->loop = loop;
        d->mmds = mmds;
        d->mem = mem;
        for (unsigned i = 0; !r && i < n; i++)
                r = create_model(d, cfg, refs[i], err);
        for (unsigned i = 0; !r && i < d->nr; i++) {
                d->slots[i].access_platform = vmm_access_platform_on(cfg, ref_ap(cfg, refs[i]));
                if (hostmem_create(mem, d->slots[i].name, &d->slots[i].mem)) {
                        r = error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                /* A protected VM's devices see guest memory only through its ownership. */
                if (own)
                        hostmem_set_ownership(d->slots[i].mem, own);
        }
        if (r) {
                vm_devices_destroy(d);
                return r;
        }
        if (own) {
                d->own = own;
                ownership_set_progress(own, reap_block_io, d);
        }
        *out = d;
        return 0;
}

/* ---- attaching to KVM ---- */

static void irqfd_set(void *opaque, bool level)
{
        struct slot *s = opaque;
        uint64_t one = 1;

        /* irqfd turns each write into an edge; the falling half needs nothing. */
        if (level && write(s->irq_fd, &one, sizeof(one)) < 0)
                LOG_ERROR("%s: irqfd: %s", s->name, strerror(errno));
}

static void on_notify(void *opaque, uint32_t events)
{
        struct notify_ctx *n = opaque;
        uint64_t v;

        (void)events;
        if (read(n->slot->notify_fd[n->q], &v, sizeof(v)) == sizeof(v))
                virtio_mmio_notify(n->slot->transport, n->q);
}

static int attach_slot(struct slot *s, struct kvm *kvm, struct bus *mmio, struct error *err)
{
        struct virtio_mmio_config mc = {
            .vdev = s->vd,
            .mem = s->mem,
            .irq = {.set = irqfd_set, .opaque = s},
            /* Offered and required (CC-1, CC-2, CC-9): a driver that does not accept it gets
             * no FEATURES_OK and no DRIVER_OK. */
            .extra_features = s->access_platform ? VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0,
            .required_features = s->access_platform ? VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0,
        };
        struct bus_window w = {
            .name = s->name, .base = s->base, .len = s->len, .ops = virtio_mmio_bus_ops()};
        int r;

        r = virtio_mmio_create(&mc, &s->transport);
        if (r)
                return error_set(err, r, "%s: virtio-mmio transport: %s", s->name, strerror(-r));
        w.opaque = s->transport;
        r = bus_register(mmio, &w, err);
        if (r)
                return r;
        s->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->irq_fd < 0)
                return error_set(err, -errno, "%s: eventfd: %s", s->name, strerror(errno));
        r = kvm_irqfd(kvm, s->irq_fd, s->gsi, err);
        for (unsigned q = 0; !r && q < s->vd->nr_queues; q++) {
                s->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (s->notify_fd[q] < 0)
                        return error_set(err, -errno, "%s: eventfd: %s", s->name, strerror(errno));
                s->notify[q] = (struct notify_ctx){.slot = s, .q = q};
                r = kvm_ioeventfd(kvm, s->notify_fd[q], s->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q,
                                  err);
                if (!r) {
                        r = event_loop_add(s->loop, s->notify_fd[q], EPOLLIN, on_notify,
                                           &s->notify[q]);
                        if (r) {
                                close(s->notify_fd[q]);
                                s->notify_fd[q] = -1;
                                return error_set(err, r, "%s: event loop: %s", s->name,
                                                 strerror(-r));
                        }
                }
        }
        return r;
}

int vm_devices_attach(struct vm_devices *d, unsigned index, const struct platform_dev *dev,
                      struct kvm *kvm, struct bus *mmio, struct error *err)
{
        struct slot *s;

        if (index >= d->nr)
                return error_set(err, -EINVAL, "the board has virtio-mmio slot %u, the VM %u",
                                 index, d->nr);
        s = &d->slots[index];
        s->base = dev->base;
        s->len = dev->len;
        s->gsi = dev->gsi;
        return attach_slot(s, kvm, mmio, err);
}

static struct slot *find_slot(struct vm_devices *d, enum vm_device_kind kind, const char *id);

/* The pmem device `index` (configuration order). */
static struct slot *pmem_slot(struct vm_devices *d, unsigned index)
{
        for (unsigned i = 0; i < d->nr; i++)
                if (d->slots[i].kind == VM_DEVICE_PMEM && index-- == 0)
                        return &d->slots[i];
        return NULL;
}

int vm_devices_map_windows(struct vm_devices *d, const struct vm_board *b, struct kvm *kvm,
                           struct error *err)
{
        for (unsigned i = 0; i < b->desc.nr_devs; i++) {
                const struct platform_dev *dev = &b->desc.devs[i];
                struct slot *s;
                int r;

                if (b->roles[i].role == VM_BOARD_HOTPLUG) {
                        s = find_slot(d, VM_DEVICE_MEM, NULL);
                        if (!s)
                                return error_set(err, -EINVAL,
                                                 "the board has a hotplug region, "
                                                 "the VM no virtio-mem");
                        r = kvm_map_window(kvm, dev->base, dev->len, virtio_mem_host(s->model),
                                           false, err);
                        if (r)
                                return error_prefix(err, "memory hotplug"), r;
                        virtio_mem_set_addr(s->model, dev->base);
                        continue;
                }
                if (b->roles[i].role != VM_BOARD_PMEM)
                        continue;
                s = pmem_slot(d, b->roles[i].index);
                if (!s || virtio_pmem_size(s->model) != dev->len)
                        return error_set(err, -EINVAL, "the board has pmem window %u, the VM %s",
                                         b->roles[i].index, s ? "another size" : "no such pmem");
                r = kvm_map_window(kvm, dev->base, dev->len, virtio_pmem_host(s->model),
                                   virtio_pmem_read_only(s->model), err);
                if (r)
                        return error_prefix(err, "pmem '%s'", s->id), r;
                virtio_pmem_set_start(s->model, dev->base);
        }
        return 0;
}

void vm_devices_destroy(struct vm_devices *d)
{
        if (!d)
                return;
        if (d->own)
                ownership_set_progress(d->own, NULL, NULL);
        for (unsigned i = 0; i < d->nr; i++) {
                struct slot *s = &d->slots[i];

                for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
                        if (s->notify_fd[q] < 0)
                                continue;
                        event_loop_remove(s->loop, s->notify_fd[q]);
                        close(s->notify_fd[q]);
                }
                /* Resetting through the transport stops the device's backends first. */
                virtio_mmio_destroy(s->transport);
                if (s->model)
                        s->destroy_model(s->model);
                hostmem_destroy(s->mem);
                if (s->irq_fd >= 0)
                        close(s->irq_fd);
        }
        free(d);
}

/* ---- snapshots ---- */

#define TAG_VDEV SNAPBUF_TAG('V', 'D', 'E', 'V')

void vm_devices_save(struct vm_devices *d, struct snapbuf_writer *w)
{
        for (unsigned i = 0; i < d->nr; i++) {
                struct slot *s = &d->slots[i];
                size_t sec = snapbuf_begin_section(w, TAG_VDEV);

                snapbuf_put_u32(w, (uint32_t)s->kind);
                snapbuf_put_str(w, s->id);
                virtio_mmio_save(s->transport, w);
                snapbuf_end_section(w, sec);
        }
}

int vm_devices_restore(struct vm_devices *d, struct snapbuf_reader *r, struct error *err)
{
        for (unsigned i = 0; i < d->nr; i++) {
                struct slot *s = &d->slots[i];
                struct snapbuf_reader sec;
                uint32_t kind;
                char *id = NULL;
                bool same;

                if (!snapbuf_get_section(r, TAG_VDEV, &sec, s->name))
                        return error_config(err, "%s", r->err);
                kind = snapbuf_get_u32(&sec, "device kind");
                snapbuf_get_str(&sec, 64, &id, "device id");
                same = snapbuf_ok(&sec) && kind == (uint32_t)s->kind && id && !strcmp(id, s->id);
                free(id);
                if (snapbuf_ok(&sec) && !same)
                        snapbuf_fail(&sec, s->name, "a different device in this slot");
                if (snapbuf_ok(&sec) && virtio_mmio_restore(s->transport, &sec) == 0)
                        snapbuf_expect_end(&sec, s->name);
                else if (snapbuf_ok(&sec))
                        snapbuf_fail(&sec, s->name, "refused");
                if (!snapbuf_ok(&sec))
                        return error_config(err, "%s", sec.err);
        }
        return 0;
}

/* ---- metrics and runtime updates ---- */

unsigned vm_devices_count(const struct vm_devices *d)
{
        return d ? d->nr : 0;
}

void vm_devices_get_stats(struct vm_devices *d, unsigned i, struct vm_device_stats *out)
{
        struct slot *s = &d->slots[i];

        memset(out, 0, sizeof(*out));
        out->kind = s->kind;
        snprintf(out->id, sizeof(out->id), "%s", s->id);
        if (s->transport)
                virtio_mmio_get_stats(s->transport, &out->transport);
        if (s->mem)
                hostmem_get_stats(s->mem, &out->mem);
        if (!s->model)
                return;
        switch (s->kind) {
        case VM_DEVICE_BLOCK:
                virtio_blk_get_stats(s->model, &out->u.blk);
                break;
        case VM_DEVICE_NET:
                virtio_net_get_stats(s->model, &out->u.net);
                break;
        case VM_DEVICE_VSOCK:
                virtio_vsock_get_stats(s->model, &out->u.vsock);
                break;
        case VM_DEVICE_BALLOON:
                virtio_balloon_get_stats(s->model, &out->u.balloon);
                break;
        case VM_DEVICE_ENTROPY:
                virtio_rng_get_stats(s->model, &out->u.rng);
                break;
        case VM_DEVICE_PMEM:
                virtio_pmem_get_stats(s->model, &out->u.pmem);
                break;
        case VM_DEVICE_MEM:
                virtio_mem_get_stats(s->model, &out->u.mem);
                break;
        }
}

static struct slot *find_slot(struct vm_devices *d, enum vm_device_kind kind, const char *id)
{
        for (unsigned i = 0; d && i < d->nr; i++)
                if (d->slots[i].kind == kind && d->slots[i].model &&
                    (!id || strcmp(d->slots[i].id, id) == 0))
                        return &d->slots[i];
        return NULL;
}

int vm_devices_update_drive(struct vm_devices *d, const char *drive_id, const char *path,
                            const struct vmm_rate_limiter *limit, struct error *err)
{
        struct slot *s = find_slot(d, VM_DEVICE_BLOCK, drive_id);
        int r;

        if (!s)
                return error_set(err, -ENOENT, "no drive '%s' is attached", drive_id);
        if (path) {
                r = virtio_blk_set_path(s->model, path, err);
                if (r)
                        return r;
        }
        if (limit)
                virtio_blk_set_rate_limiter(s->model, limit_of(limit));
        return 0;
}

int vm_devices_update_net(struct vm_devices *d, const char *iface_id,
                          const struct vmm_rate_limiter *rx, const struct vmm_rate_limiter *tx,
                          struct error *err)
{
        struct slot *s = find_slot(d, VM_DEVICE_NET, iface_id);

        if (!s)
                return error_set(err, -ENOENT, "no network interface '%s' is attached", iface_id);
        virtio_net_set_rate_limiters(s->model, limit_of(rx), limit_of(tx));
        return 0;
}

int vm_devices_update_pmem(struct vm_devices *d, const char *id,
                           const struct vmm_rate_limiter *limit)
{
        struct slot *s = find_slot(d, VM_DEVICE_PMEM, id);

        if (!s)
                return -ENOENT;
        virtio_pmem_set_rate_limiter(s->model, limit_of(limit));
        return 0;
}

struct virtio_mem *vm_devices_mem(struct vm_devices *d)
{
        struct slot *s = find_slot(d, VM_DEVICE_MEM, NULL);

        return s ? s->model : NULL;
}

struct virtio_balloon *vm_devices_balloon(struct vm_devices *d)
{
        struct slot *s = find_slot(d, VM_DEVICE_BALLOON, NULL);

        return s ? s->model : NULL;
}
