/*
 * virtio-vsock snapshots (Firecracker's behaviour): connections are not saved. A restored
 * device starts without any and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event
 * queue, so the guest drops the connections it had; their host ends saw the old process go
 * away.
 */
#include "vsock_priv.h"

void vsock_snapshot_send_reset(struct virtio_vsock *vs)
{
        struct virtq *q = &vs->vd.vqs[VIRTIO_VSOCK_EVQ];
        uint8_t ev[4];
        enum virtq_pop_result r;

        if (!vs->reset_event_pending || !vs->active || !q->ready)
                return;
        put_le32(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
        while ((r = virtq_pop(q, &vs->chain)) != VIRTQ_EMPTY) {
                uint32_t len = 0;

                if (r == VIRTQ_BROKEN)
                        break;
                if (r == VIRTQ_CHAIN &&
                    virtq_chain_write(q, &vs->chain, 0, ev, sizeof(ev)) == sizeof(ev))
                        len = sizeof(ev);
                else
                        vs->stats.bad_packets++;
                if (virtq_push(q, vs->chain.head, len))
                        break;
                virtio_signal_used(&vs->vd, VIRTIO_VSOCK_EVQ);
                if (len) {
                        vs->reset_event_pending = false;
                        LOG_INFO("%s: told the guest its connections were reset (restore)",
                                 vs->name);
                        return;
                }
        }
        if (q->broken)
                virtio_needs_reset(&vs->vd);
}

int vsock_snapshot_restore(struct virtio_device *vd, struct snapbuf_reader *r)
{
        struct virtio_vsock *vs = vd->priv;

        (void)r;
        vs->reset_event_pending = true;
        return 0;
}
