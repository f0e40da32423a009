/*
 * virtio-vsock with Firecracker's Unix-socket backend: the virtio device (its queues, ops,
 * creation and counters). The other concerns have files of their own (vsock_priv.h).
 */
#include "vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "vsock_priv.h"

/* ---- toward the guest (rx queue) ---- */

bool vsock_put_hdr(struct virtio_vsock *vs, struct virtq *q, uint16_t op, uint32_t host_port,
                   uint32_t guest_port, uint32_t len, uint32_t flags, struct vsock_conn *c)
{
        uint8_t raw[VIRTIO_VSOCK_HDR_LEN];
        struct vsock_pkt p = {
            .src_cid = VIRTIO_VSOCK_HOST_CID,
            .dst_cid = vs->guest_cid,
            .src_port = host_port,
            .dst_port = guest_port,
            .len = len,
            .type = VIRTIO_VSOCK_TYPE_STREAM,
            .op = op,
            .flags = flags,
            .buf_alloc = c ? VIRTIO_VSOCK_BUF_ALLOC : 0,
            .fwd_cnt = c ? c->fwd_cnt : 0,
        };

        vsock_pkt_build(raw, &p);
        if (virtq_chain_write(q, &vs->chain, 0, raw, sizeof(raw)) != (long)sizeof(raw))
                return false;
        if (c)
                c->fwd_cnt_sent = c->fwd_cnt;
        if (op == VIRTIO_VSOCK_OP_RST)
                vs->stats.rst_sent++;
        return true;
}

/* Caller holds vd.lock. */
static void process_rx(struct virtio_vsock *vs)
{
        struct virtq *q = &vs->vd.vqs[VIRTIO_VSOCK_RXQ];
        bool used = false;

        if (!vs->active)
                return;
        while (vs->rst_len || vs->send_head) {
                enum virtq_pop_result r = virtq_pop(q, &vs->chain);
                long n;

                if (r == VIRTQ_EMPTY) {
                        if (virtq_arm(q))
                                continue;
                        break; /* the guest's rx notification resumes */
                }
                if (r == VIRTQ_BROKEN)
                        break;
                if (r == VIRTQ_BAD_CHAIN || vs->chain.writable < VIRTIO_VSOCK_HDR_LEN) {
                        vs->stats.bad_packets++;
                        LOG_GUEST(&vs->rl, "%s: unusable rx chain", vs->name);
                        n = 0;
                } else {
                        n = vsock_muxer_fill(vs, q);
                        if (n == 0) {
                                virtq_unpop(q); /* nothing to say after all */
                                continue;
                        }
                        if (n < 0) {
                                vs->stats.bad_packets++;
                                n = 0;
                        } else {
                                vs->stats.rx_packets_count++;
                        }
                }
                if (virtq_push(q, vs->chain.head, (uint32_t)n))
                        break;
                used = true;
        }
        if (q->broken)
                virtio_needs_reset(&vs->vd);
        else if (used)
                virtio_signal_used(&vs->vd, VIRTIO_VSOCK_RXQ);
}

/* ---- from the guest (tx queue) ---- */

/* Caller holds vd.lock. */
static void process_tx(struct virtio_vsock *vs)
{
        struct virtq *q = &vs->vd.vqs[VIRTIO_VSOCK_TXQ];
        enum virtq_pop_result r;
        bool used = false;

        vs->tx_stalled = false;
        if (!vs->active)
                return;
        do {
                for (;;) {
                        if (vs->rst_len >= RST_HIGH) {
                                vs->tx_stalled = true; /* until the guest takes its RSTs */
                                goto out;
                        }
                        r = virtq_pop(q, &vs->chain);
                        if (r == VIRTQ_EMPTY || r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_BAD_CHAIN) {
                                vs->stats.bad_packets++;
                                LOG_GUEST(&vs->rl, "%s: malformed tx chain", vs->name);
                        } else {
                                vsock_muxer_guest_packet(vs, q);
                        }
                        if (virtq_push(q, vs->chain.head, 0))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
out:
        if (q->broken)
                virtio_needs_reset(&vs->vd);
        else if (used)
                virtio_signal_used(&vs->vd, VIRTIO_VSOCK_TXQ);
}

/* Caller holds vd.lock. */
void vsock_run(struct virtio_vsock *vs)
{
        do {
                process_tx(vs);
                process_rx(vs);
        } while (vs->tx_stalled && vs->rst_len < RST_HIGH);
}

/* ---- device ops ---- */

static void vsock_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_vsock *vs = vd->priv;

        virtio_config_copy(vs->config, sizeof(vs->config), off, data, len);
}

static int vsock_activate(struct virtio_device *vd)
{
        struct virtio_vsock *vs = vd->priv;

        vs->active = true;
        vsock_snapshot_send_reset(vs);
        vsock_run(vs);
        return 0;
}

/* The guest forgot every connection: end them all (host clients still sending their
 * CONNECT line are not the guest's and stay). */
static void vsock_reset(struct virtio_device *vd)
{
        struct virtio_vsock *vs = vd->priv;

        vs->active = false;
        for (struct vsock_conn *c = vs->all, *n; c; c = n) {
                n = c->next;
                if (c->state != CONN_HOST_CMD)
                        vsock_muxer_end(vs, c, false, false);
        }
        vs->rst_len = 0;
        vs->tx_stalled = false;
        vs->reset_event_pending = false; /* a reset tells the guest as much */
}

static void vsock_notify(struct virtio_device *vd, unsigned q)
{
        /* The event queue holds buffers for the one event this device sends. */
        if (q == VIRTIO_VSOCK_EVQ)
                vsock_snapshot_send_reset(vd->priv);
        else
                vsock_run(vd->priv);
}

static const struct virtio_device_ops vsock_ops = {
    .config_read = vsock_config_read,
    .activate = vsock_activate,
    .reset = vsock_reset,
    .notify = vsock_notify,
    .restore = vsock_snapshot_restore,
};

/* ---- lifecycle ---- */

int virtio_vsock_create(const struct virtio_vsock_config *cfg, struct error *err,
                        struct virtio_vsock **out)
{
        struct virtio_vsock *vs;
        int r;

        if (cfg->guest_cid < 3 || cfg->guest_cid >= UINT32_MAX)
                return error_config(err, "%s: guest CID %llu is invalid (3 to 4294967294)",
                                    cfg->name, (unsigned long long)cfg->guest_cid);
        /* "<uds_path>_<port>" must fit in sun_path too. */
        if (!cfg->uds_path || !*cfg->uds_path ||
            strlen(cfg->uds_path) + 11 >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return error_config(err, "%s: uds_path must be 1 to %zu characters", cfg->name,
                                    sizeof(((struct sockaddr_un *)0)->sun_path) - 12);
        vs = calloc(1, sizeof(*vs));
        if (!vs || !(vs->uds_path = strdup(cfg->uds_path))) {
                free(vs);
                return error_set(err, -ENOMEM, "out of memory");
        }
        snprintf(vs->name, sizeof(vs->name), "%s", cfg->name);
        vs->guest_cid = cfg->guest_cid;
        vs->loop = cfg->loop;
        vs->listen_fd = vs->timer_fd = vs->reap_fd = -1;
        vs->next_port = VIRTIO_VSOCK_HOST_PORT_BASE;
        ratelimit_init(&vs->rl, 1000000000ull, 10);
        put_le64(vs->config, cfg->guest_cid);
        vs->vd = (struct virtio_device){
            .name = vs->name,
            .device_id = VIRTIO_ID_VSOCK,
            .nr_queues = 3,
            .queue_max = VIRTIO_VSOCK_QUEUE_SIZE,
            .features = VIRTIO_BIT(VIRTIO_VSOCK_F_STREAM),
            .config_len = sizeof(vs->config),
            .ops = &vsock_ops,
            .priv = vs,
        };
        virtio_device_init(&vs->vd);
        r = vsock_muxer_open(vs, err);
        if (r) {
                virtio_vsock_destroy(vs);
                return r;
        }
        *out = vs;
        return 0;
}

void virtio_vsock_destroy(struct virtio_vsock *vs)
{
        if (!vs)
                return;
        vsock_muxer_close(vs);
        free(vs->uds_path);
        virtio_device_fini(&vs->vd);
        free(vs);
}

struct virtio_device *virtio_vsock_device(struct virtio_vsock *vs)
{
        return &vs->vd;
}

void virtio_vsock_get_stats(struct virtio_vsock *vs, struct virtio_vsock_stats *out)
{
        pthread_mutex_lock(&vs->vd.lock);
        *out = vs->stats;
        pthread_mutex_unlock(&vs->vd.lock);
}
