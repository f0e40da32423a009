/*
 * virtio-net on a TAP interface.
 *
 * Transmit: each tx chain is one virtio_net_hdr_v1 plus one frame, both in the readable
 * bytes; the chain is pinned for one writev(2) to the TAP (the TAP parses the header, wherever
 * the descriptor boundaries fall). EAGAIN keeps the chain in the ring (virtq_unpop) and waits
 * for EPOLLOUT.
 *
 * Receive: a frame is read from the TAP into a host buffer, then copied into the guest's
 * chains through the hostmem accessor, so no host pointer into guest memory outlives one
 * copy. With MRG_RXBUF a frame spreads over as many chains as it needs and num_buffers says
 * how many; without it one chain must hold the whole frame, or the frame is dropped (counted)
 * and the chain kept for the next one. While a frame waits (no rx buffers, or the rate
 * limiter), the TAP is not polled: the guest's rx notification or the limiter's timer
 * resumes; the kernel queues (and, when its queue is full, drops) further frames.
 *
 * A TAP that disappears (interface deleted: EBADFD, EPOLLERR) is counted and logged once;
 * the device drops tx frames from then on, stops reading, and reports the link down through
 * the STATUS configuration field. Other TAP errors lose one frame and are counted.
 *
 * With the metadata service (MMDS) on the interface, a guest frame for its address goes to
 * the service's stack instead of the TAP (the tx limiter does not count it: Firecracker's
 * rule), and the stack's answers become pending rx frames before anything is read from the
 * TAP (devices/mmds/mmds_stack.h).
 *
 * Every frame lost on its way in or out is counted (each counter is in the metrics) and
 * logged with its reason, at most 10 lines a second per device (frame_lost): a lossy link
 * must never be silent.
 *
 * Locking (virtio.h): ops run with vd.lock held; the TAP and limiter callbacks take it.
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "devices/mmds/mmds_stack.h"

#define RX_BURST     64 /* frames read from the TAP per callback: other handlers get their turn */
#define LINK_HDR_MAX 18 /* Ethernet header with one VLAN tag */

#define HDR_NUM_BUFFERS 10 /* offset of num_buffers in the header */

/* A frame read from the TAP on its way into guest buffers. */
struct rx_frame {
        uint8_t *buf;  /* VIRTIO_NET_MAX_BUFFER bytes: header + frame */
        uint32_t len;  /* 0: none pending */
        bool admitted; /* the rate limiter let it through */
        uint32_t done; /* bytes copied into held chains */
        unsigned nr_held;
        uint16_t heads[VIRTIO_NET_QUEUE_SIZE];
        uint32_t lens[VIRTIO_NET_QUEUE_SIZE];
        struct virtq_chain first; /* the first held chain: num_buffers is written last */
};

struct virtio_net {
        struct virtio_device vd;
        char name[16];
        char tap_name[IFNAMSIZ];
        struct event_loop *loop;
        int tap_fd;
        bool tap_registered;
        bool tap_dead;
        uint32_t tap_events; /* what the loop polls for now */
        bool active;         /* DRIVER_OK and not reset */
        bool tx_wait_writable;
        /* Always present (unlimited by default), so PATCH can limit a running device. */
        struct rate_limiter *limiter[2]; /* [VIRTIO_NET_RXQ], [VIRTIO_NET_TXQ] */
        bool limiter_registered[2];
        uint8_t config[VIRTIO_NET_CONFIG_LEN];
        struct virtio_net_stats stats;
        struct ratelimit rl;      /* guest errors */
        struct ratelimit drop_rl; /* lost frames */
        struct rx_frame rx;
        struct virtq_chain chain; /* tx chains, and rx chains after the first */
        struct iovec iov[VIRTIO_NET_QUEUE_SIZE];
        struct mmds_stack *mmds; /* NULL: no metadata service here */
        bool mmds_answers;       /* it took a frame since rx was last processed */
};

static bool has(const struct virtio_net *net, unsigned bit)
{
        return virtio_has_feature(&net->vd, bit);
}

/* Counts a lost frame and says why in the log (rate limited). */
static void frame_lost(struct virtio_net *net, uint64_t *counter, const char *dir, uint32_t len,
                       const char *why)
{
        (*counter)++;
        LOG_GUEST(&net->drop_rl, "%s: %s frame dropped (%u bytes): %s", net->name, dir, len, why);
}

/* ---- the TAP ---- */

static void update_tap_events(struct virtio_net *net)
{
        uint32_t want = 0;

        if (!net->tap_registered)
                return;
        if (net->active && !net->tap_dead) {
                if (!net->rx.len)
                        want |= EPOLLIN;
                if (net->tx_wait_writable)
                        want |= EPOLLOUT;
        }
        if (want != net->tap_events && event_loop_modify(net->loop, net->tap_fd, want) == 0)
                net->tap_events = want;
}

static void rx_clear(struct rx_frame *rx)
{
        rx->len = 0;
        rx->admitted = false;
        rx->done = 0;
        rx->nr_held = 0;
}

/* The interface was deleted: stop using it for good. A frame already read is still
 * delivered. This may run on a vCPU thread, where event_loop.h forbids removals: the TAP
 * keeps reporting EPOLLERR, and on_tap removes it on the loop thread. The fd is closed at
 * destroy. */
static void tap_gone(struct virtio_net *net, int err)
{
        if (net->tap_dead)
                return;
        net->tap_dead = true;
        net->stats.tap_gone++;
        /* Once per device (the latch above), and the host's doing: not on the guest-error
         * channel, whose budget the failed writes before it may have used up. */
        LOG_WARN("%s: TAP '%s' is gone (%s); the link is down from now on", net->name,
                 net->tap_name, strerror(err));
        net->config[VIRTIO_NET_CFG_STATUS] &= (uint8_t)~VIRTIO_NET_S_LINK_UP;
        if (net->vd.tops)
                virtio_signal_config(&net->vd);
}

static int tap_open(struct virtio_net *net, const char *tap, struct error *err)
{
        struct ifreq ifr;
        int hdr_len = VIRTIO_NET_HDR_LEN;
        int fd, r;

        if (if_nametoindex(tap) == 0)
                return error_config(err, "%s: TAP device '%s' does not exist", net->name, tap);
        fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return error_config(err, "%s: TAP '%s': cannot open /dev/net/tun: %s", net->name,
                                    tap, strerror(errno));
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        r = ioctl(fd, TUNSETIFF, &ifr);
        if (r && errno == EINVAL) {
                /* A multi-queue TAP only takes queues opened as such. */
                ifr.ifr_flags |= IFF_MULTI_QUEUE;
                r = ioctl(fd, TUNSETIFF, &ifr);
        }
        if (r) {
                int e = errno;
                close(fd);
                if (e == EPERM || e == EACCES)
                        return error_config(err,
                                            "%s: no permission to attach to TAP '%s' (owned by "
                                            "another user or group, and no CAP_NET_ADMIN)",
                                            net->name, tap);
                if (e == EBUSY)
                        return error_config(err, "%s: TAP '%s' is already in use", net->name, tap);
                if (e == EINVAL)
                        return error_config(err, "%s: '%s' is not a TAP device", net->name, tap);
                return error_config(err, "%s: TAP '%s': %s", net->name, tap, strerror(e));
        }
        if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len)) {
                r = -errno;
                close(fd);
                return error_set(err, r, "%s: TAP '%s': cannot set the vnet header size: %s",
                                 net->name, tap, strerror(-r));
        }
        net->tap_fd = fd;
        return 0;
}

/* ---- transmit ---- */

/* The driver may only use the offloads it negotiated (5.1.6.2). */
static bool tx_header_ok(const struct virtio_net *net, const uint8_t *hdr)
{
        if ((hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(net, VIRTIO_NET_F_CSUM))
                return false;
        switch (hdr[1]) {
        case VIRTIO_NET_HDR_GSO_NONE:
                return true;
        case VIRTIO_NET_HDR_GSO_TCPV4:
                return has(net, VIRTIO_NET_F_HOST_TSO4);
        case VIRTIO_NET_HDR_GSO_TCPV6:
                return has(net, VIRTIO_NET_F_HOST_TSO6);
        default:
                return false; /* UDP, ECN: not offered */
        }
}

enum tx_result { TX_DONE, TX_WAIT };

/* The frame of the tx chain being sent, for the metadata service's stack. */
static long tx_read_frame(void *opaque, size_t off, void *buf, size_t n)
{
        struct virtio_net *net = opaque;

        return virtq_chain_read(&net->vd.vqs[VIRTIO_NET_TXQ], &net->chain,
                                (uint32_t)(VIRTIO_NET_HDR_LEN + off), buf, (uint32_t)n);
}

static enum tx_result transmit(struct virtio_net *net, struct virtq *q)
{
        const struct virtq_chain *c = &net->chain;
        struct rate_limiter *rl = net->limiter[VIRTIO_NET_TXQ];
        uint8_t hdr[VIRTIO_NET_HDR_LEN];
        uint32_t len = c->readable;
        ssize_t w;
        int n, e;

        if (len < VIRTIO_NET_HDR_LEN || len > VIRTIO_NET_MAX_BUFFER ||
            virtq_chain_read(q, c, 0, hdr, sizeof(hdr)) != (long)sizeof(hdr) ||
            !tx_header_ok(net, hdr)) {
                net->stats.tx_malformed++;
                LOG_GUEST(&net->rl, "%s: malformed tx request (%u bytes)", net->name, len);
                return TX_DONE;
        }
        if (net->mmds && mmds_stack_take(net->mmds, len - VIRTIO_NET_HDR_LEN, tx_read_frame, net)) {
                net->mmds_answers = true;
                return TX_DONE;
        }
        if (net->tap_dead) {
                frame_lost(net, &net->stats.tx_dropped, "tx", len - VIRTIO_NET_HDR_LEN,
                           "the TAP is gone");
                return TX_DONE;
        }
        if (!rate_limiter_consume(rl, len, 1)) {
                net->stats.tx_rate_limited++;
                return TX_WAIT;
        }
        n = virtq_chain_pin(q, c, false, 0, len, net->iov, (int)ARRAY_SIZE(net->iov));
        if (n < 0) {
                net->stats.tx_malformed++;
                rate_limiter_refund(rl, len, 1);
                return TX_DONE;
        }
        do
                w = writev(net->tap_fd, net->iov, n);
        while (w < 0 && errno == EINTR);
        e = errno;
        virtq_chain_unpin(q, c, false, 0, len);
        if (w < 0) {
                if (e == EAGAIN) {
                        rate_limiter_refund(rl, len, 1);
                        net->tx_wait_writable = true;
                        return TX_WAIT;
                }
                if (e == EBADFD)
                        tap_gone(net, e);
                frame_lost(net, &net->stats.tap_write_fails, "tx", len - VIRTIO_NET_HDR_LEN,
                           strerror(e));
                return TX_DONE;
        }
        net->stats.tx_packets_count++;
        net->stats.tx_bytes_count += len - VIRTIO_NET_HDR_LEN;
        return TX_DONE;
}

static void process_rx(struct virtio_net *net);

/* Caller holds vd.lock. */
static void process_tx(struct virtio_net *net)
{
        struct virtq *q = &net->vd.vqs[VIRTIO_NET_TXQ];
        bool used = false;
        enum virtq_pop_result r;

        if (!net->active || net->tx_wait_writable)
                return;
        do {
                while ((r = virtq_pop(q, &net->chain)) != VIRTQ_EMPTY) {
                        if (r == VIRTQ_BROKEN)
                                break;
                        if (r == VIRTQ_BAD_CHAIN) {
                                net->stats.tx_malformed++;
                                LOG_GUEST(&net->rl, "%s: malformed tx chain", net->name);
                        } else if (transmit(net, q) == TX_WAIT) {
                                virtq_unpop(q); /* EPOLLOUT or the limiter's timer resumes */
                                goto out;
                        }
                        if (virtq_push(q, net->chain.head, 0))
                                break;
                        used = true;
                }
        } while (!q->broken && virtq_arm(q));
out:
        if (q->broken)
                virtio_needs_reset(&net->vd);
        else if (used)
                virtio_signal_used(&net->vd, VIRTIO_NET_TXQ);
        update_tap_events(net);
        if (net->mmds_answers) {
                net->mmds_answers = false;
                process_rx(net); /* what the service has to say goes out now */
        }
}

/* ---- receive ---- */

enum rx_result { RX_DELIVERED, RX_DROPPED, RX_NO_BUFFERS, RX_LIMITED, RX_BROKEN };

/* Drops the pending frame and returns the chains held for it unused. */
static enum rx_result rx_drop(struct virtio_net *net, struct virtq *q, bool *used, const char *why)
{
        struct rx_frame *rx = &net->rx;

        frame_lost(net, &net->stats.rx_dropped, "rx", rx->len - VIRTIO_NET_HDR_LEN, why);
        for (unsigned i = 0; i < rx->nr_held; i++) {
                if (virtq_push(q, rx->heads[i], 0))
                        return RX_BROKEN;
                *used = true;
        }
        rx_clear(rx);
        return RX_DROPPED;
}

/* A chain the frame cannot use at all goes back empty. */
static bool rx_return_unused(struct virtio_net *net, struct virtq *q, uint16_t head, bool *used)
{
        net->stats.rx_malformed++;
        LOG_GUEST(&net->rl, "%s: unusable rx chain", net->name);
        if (virtq_push(q, head, 0))
                return false;
        *used = true;
        return true;
}

/* Copies the pending frame into rx chains; keeps its state across waits for buffers. */
static enum rx_result deliver(struct virtio_net *net, struct virtq *q, bool *used)
{
        struct rx_frame *rx = &net->rx;
        bool mrg = has(net, VIRTIO_NET_F_MRG_RXBUF);

        if (!rx->admitted) {
                if (!rate_limiter_consume(net->limiter[VIRTIO_NET_RXQ], rx->len, 1))
                        return RX_LIMITED;
                rx->admitted = true;
        }
        while (rx->done < rx->len) {
                struct virtq_chain *c = rx->nr_held ? &net->chain : &rx->first;
                enum virtq_pop_result r;
                uint32_t n;

                if (rx->nr_held == q->size)
                        return rx_drop(net, q, used, "larger than the whole rx ring");
                r = virtq_pop(q, c);
                if (r == VIRTQ_EMPTY)
                        return RX_NO_BUFFERS;
                if (r == VIRTQ_BROKEN)
                        return RX_BROKEN;
                if (r == VIRTQ_BAD_CHAIN || c->writable < VIRTIO_NET_HDR_LEN) {
                        if (!rx_return_unused(net, q, c->head, used))
                                return RX_BROKEN;
                        continue;
                }
                if (!mrg && c->writable < rx->len) {
                        virtq_unpop(q); /* it may fit the next frame */
                        return rx_drop(net, q, used,
                                       "larger than the rx buffer (no mergeable buffers)");
                }
                n = c->writable < rx->len - rx->done ? c->writable : rx->len - rx->done;
                if (virtq_chain_write(q, c, 0, rx->buf + rx->done, n) != (long)n) {
                        /* Guest memory refused: the frame fails as a whole. */
                        if (!rx_return_unused(net, q, c->head, used))
                                return RX_BROKEN;
                        return rx_drop(net, q, used, "guest memory refused the copy");
                }
                rx->heads[rx->nr_held] = c->head;
                rx->lens[rx->nr_held] = n;
                rx->nr_held++;
                rx->done += n;
        }
        if (mrg) {
                uint8_t nb[2];

                put_le16(nb, (uint16_t)rx->nr_held);
                if (virtq_chain_write(q, &rx->first, HDR_NUM_BUFFERS, nb, 2) != 2) {
                        net->stats.rx_malformed++;
                        return rx_drop(net, q, used, "guest memory refused the header");
                }
        }
        for (unsigned i = 0; i < rx->nr_held; i++) {
                if (virtq_push(q, rx->heads[i], rx->lens[i]))
                        return RX_BROKEN;
                *used = true;
        }
        net->stats.rx_packets_count++;
        net->stats.rx_bytes_count += rx->len - VIRTIO_NET_HDR_LEN;
        rx_clear(rx);
        return RX_DELIVERED;
}

/* Makes the TAP's header what the driver negotiated; false drops the frame. */
static bool rx_fix_header(struct virtio_net *net, uint8_t *frame, uint32_t len)
{
        /* The TAP fills the first 10 bytes only; num_buffers is 1 without MRG_RXBUF. */
        put_le16(frame + HDR_NUM_BUFFERS, 1);
        if (!has(net, VIRTIO_NET_F_GUEST_CSUM)) {
                frame[0] &= (uint8_t)~VIRTIO_NET_HDR_F_DATA_VALID;
                if (frame[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM)
                        return false; /* cannot happen with the offloads set at activation */
        }
        /* 5.1.4.1: no frame beyond the MTU (plus the link header) without GSO. */
        if (has(net, VIRTIO_NET_F_MTU) && frame[1] == VIRTIO_NET_HDR_GSO_NONE &&
            len - VIRTIO_NET_HDR_LEN >
                (uint32_t)get_le16(net->config + VIRTIO_NET_CFG_MTU) + LINK_HDR_MAX)
                return false;
        return true;
}

/* The metadata service's next frame, if it has one, becomes the pending frame. */
static bool rx_from_mmds(struct virtio_net *net)
{
        size_t n;

        if (!net->mmds)
                return false;
        n = mmds_stack_next_frame(net->mmds, net->rx.buf + VIRTIO_NET_HDR_LEN,
                                  VIRTIO_NET_MAX_BUFFER - VIRTIO_NET_HDR_LEN);
        if (!n)
                return false;
        rx_clear(&net->rx);
        memset(net->rx.buf, 0, VIRTIO_NET_HDR_LEN);
        put_le16(net->rx.buf + HDR_NUM_BUFFERS, 1);
        net->rx.len = (uint32_t)(VIRTIO_NET_HDR_LEN + n);
        return true;
}

/* 1: a frame is pending; 0: nothing to read; -1: a frame was lost (counted). */
static int tap_read(struct virtio_net *net)
{
        ssize_t n;

        do
                n = read(net->tap_fd, net->rx.buf, VIRTIO_NET_MAX_BUFFER);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                int e = errno;
                if (e == EAGAIN)
                        return 0;
                if (e == EBADFD)
                        tap_gone(net, e);
                frame_lost(net, &net->stats.tap_read_fails, "rx", 0, strerror(e));
                return -1;
        }
        if (n <= VIRTIO_NET_HDR_LEN) {
                frame_lost(net, &net->stats.tap_read_fails, "rx", 0,
                           "the TAP gave less than a header");
                return -1;
        }
        if (!rx_fix_header(net, net->rx.buf, (uint32_t)n)) {
                frame_lost(net, &net->stats.rx_dropped, "rx", (uint32_t)n - VIRTIO_NET_HDR_LEN,
                           "beyond the MTU, or an offload the guest did not negotiate");
                return -1;
        }
        rx_clear(&net->rx);
        net->rx.len = (uint32_t)n;
        return 1;
}

/* Caller holds vd.lock. */
static void process_rx(struct virtio_net *net)
{
        struct virtq *q = &net->vd.vqs[VIRTIO_NET_RXQ];
        unsigned budget = RX_BURST;
        bool used = false;

        if (!net->active)
                return;
        for (;;) {
                enum rx_result res;

                if (!net->rx.len) {
                        if (budget == 0)
                                break;
                        budget--;
                        if (!rx_from_mmds(net)) {
                                if (net->tap_dead)
                                        break;
                                int r = tap_read(net);
                                if (r == 0)
                                        break;
                                if (r < 0)
                                        continue;
                        }
                }
                res = deliver(net, q, &used);
                if (res == RX_DELIVERED || res == RX_DROPPED)
                        continue;
                if (res == RX_NO_BUFFERS && virtq_arm(q))
                        continue;
                if (res == RX_LIMITED)
                        net->stats.rx_rate_limited++;
                break; /* the rx notification or the limiter's timer resumes */
        }
        if (q->broken)
                virtio_needs_reset(&net->vd);
        else if (used)
                virtio_signal_used(&net->vd, VIRTIO_NET_RXQ);
        update_tap_events(net);
}

/* ---- event callbacks ---- */

static void on_tap(void *opaque, uint32_t events)
{
        struct virtio_net *net = opaque;

        pthread_mutex_lock(&net->vd.lock);
        if (!net->tap_dead && (events & (EPOLLERR | EPOLLHUP)))
                tap_gone(net, EBADFD);
        if (net->tap_dead) {
                /* Noticed here or on another thread: the loop's thread removes it. */
                if (net->tap_registered) {
                        event_loop_remove(net->loop, net->tap_fd);
                        net->tap_registered = false;
                }
        } else {
                if (events & EPOLLOUT) {
                        net->tx_wait_writable = false;
                        process_tx(net);
                }
                if (events & EPOLLIN)
                        process_rx(net);
                update_tap_events(net);
        }
        pthread_mutex_unlock(&net->vd.lock);
}

static void on_limiter(struct virtio_net *net, unsigned q)
{
        pthread_mutex_lock(&net->vd.lock);
        rate_limiter_timer_fired(net->limiter[q]);
        if (q == VIRTIO_NET_RXQ)
                process_rx(net);
        else
                process_tx(net);
        pthread_mutex_unlock(&net->vd.lock);
}

static void on_rx_limiter(void *opaque, uint32_t events)
{
        (void)events;
        on_limiter(opaque, VIRTIO_NET_RXQ);
}

static void on_tx_limiter(void *opaque, uint32_t events)
{
        (void)events;
        on_limiter(opaque, VIRTIO_NET_TXQ);
}

/* ---- device ops ---- */

static void net_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_net *net = vd->priv;

        virtio_config_copy(net->config, sizeof(net->config), off, data, len);
}

/* Feature dependencies of 5.1.3.1. */
static bool net_features_ok(struct virtio_device *vd)
{
        struct virtio_net *net = vd->priv;

        if ((has(net, VIRTIO_NET_F_GUEST_TSO4) || has(net, VIRTIO_NET_F_GUEST_TSO6)) &&
            !has(net, VIRTIO_NET_F_GUEST_CSUM))
                return false;
        if ((has(net, VIRTIO_NET_F_HOST_TSO4) || has(net, VIRTIO_NET_F_HOST_TSO6)) &&
            !has(net, VIRTIO_NET_F_CSUM))
                return false;
        return true;
}

static int net_activate(struct virtio_device *vd)
{
        struct virtio_net *net = vd->priv;
        unsigned offload = 0;

        if (has(net, VIRTIO_NET_F_GUEST_CSUM))
                offload |= TUN_F_CSUM;
        if (has(net, VIRTIO_NET_F_GUEST_TSO4))
                offload |= TUN_F_TSO4;
        if (has(net, VIRTIO_NET_F_GUEST_TSO6))
                offload |= TUN_F_TSO6;
        if (!net->tap_dead && ioctl(net->tap_fd, TUNSETOFFLOAD, offload)) {
                int r = -errno;
                if (r != -EBADFD) {
                        LOG_WARN("%s: TAP '%s': cannot set offloads 0x%x: %s", net->name,
                                 net->tap_name, offload, strerror(-r));
                        return r;
                }
                tap_gone(net, -r);
        }
        net->active = true;
        process_tx(net);
        process_rx(net);
        return 0;
}

static void net_reset(struct virtio_device *vd)
{
        struct virtio_net *net = vd->priv;

        net->active = false;
        if (net->rx.len)
                frame_lost(net, &net->stats.rx_dropped, "rx", net->rx.len - VIRTIO_NET_HDR_LEN,
                           "the driver reset the device");
        rx_clear(&net->rx);
        net->tx_wait_writable = false;
        update_tap_events(net);
}

static void net_notify(struct virtio_device *vd, unsigned q)
{
        struct virtio_net *net = vd->priv;

        if (q == VIRTIO_NET_RXQ)
                process_rx(net);
        else if (q == VIRTIO_NET_TXQ)
                process_tx(net);
}

/* Snapshots: a frame still on its way into rx buffers is dropped, its chains returned
 * unused (as when the ring cannot hold it); a tx chain waiting for the TAP stays in the ring
 * (it was never popped). The TAP is named by the configuration (or network_overrides). */
static void net_save(struct virtio_device *vd, struct snapbuf_writer *w)
{
        struct virtio_net *net = vd->priv;
        struct virtq *q = &vd->vqs[VIRTIO_NET_RXQ];
        bool used = false;

        (void)w;
        if (!net->rx.len)
                return;
        if (rx_drop(net, q, &used, "a snapshot was taken") == RX_BROKEN)
                virtio_needs_reset(vd);
        else if (used)
                virtio_signal_used(vd, VIRTIO_NET_RXQ);
        update_tap_events(net);
}

static const struct virtio_device_ops net_ops = {
    .config_read = net_config_read,
    .features_ok = net_features_ok,
    .activate = net_activate,
    .reset = net_reset,
    .notify = net_notify,
    .save = net_save,
};

/* ---- lifecycle ---- */

static const struct rate_limiter_config unlimited;

static int add_limiter(struct virtio_net *net, unsigned q, const struct rate_limiter_config *cfg,
                       struct error *err)
{
        int r = rate_limiter_create(cfg ? cfg : &unlimited, NULL, NULL, &net->limiter[q]);

        if (!r) {
                r = event_loop_add(net->loop, rate_limiter_fd(net->limiter[q]), EPOLLIN,
                                   q == VIRTIO_NET_RXQ ? on_rx_limiter : on_tx_limiter, net);
                net->limiter_registered[q] = r == 0;
        }
        if (r)
                return error_set(err, r, "%s: %s rate limiter: %s", net->name,
                                 q == VIRTIO_NET_RXQ ? "rx" : "tx", strerror(-r));
        return 0;
}

static uint64_t offered_features(const struct virtio_net_config *cfg)
{
        uint64_t f = VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
                     VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
                     VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
                     VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) | VIRTIO_BIT(VIRTIO_NET_F_STATUS);

        if (cfg->has_mac)
                f |= VIRTIO_BIT(VIRTIO_NET_F_MAC);
        if (cfg->mtu)
                f |= VIRTIO_BIT(VIRTIO_NET_F_MTU);
        return f;
}

int virtio_net_create(const struct virtio_net_config *cfg, struct error *err,
                      struct virtio_net **out)
{
        struct virtio_net *net;
        int r;

        if (!cfg->tap_name || !*cfg->tap_name || strlen(cfg->tap_name) >= IFNAMSIZ)
                return error_config(err, "%s: the TAP name must be 1 to %d characters", cfg->name,
                                    IFNAMSIZ - 1);
        if (cfg->mtu && cfg->mtu < 68)
                return error_config(err, "%s: MTU %u is below the IPv4 minimum of 68", cfg->name,
                                    cfg->mtu);
        if (cfg->has_mac && (cfg->mac[0] & 1))
                return error_config(err, "%s: the guest MAC address is a multicast address",
                                    cfg->name);
        net = calloc(1, sizeof(*net));
        if (!net || !(net->rx.buf = malloc(VIRTIO_NET_MAX_BUFFER))) {
                free(net);
                return error_set(err, -ENOMEM, "out of memory");
        }
        snprintf(net->name, sizeof(net->name), "%s", cfg->name);
        snprintf(net->tap_name, sizeof(net->tap_name), "%s", cfg->tap_name);
        net->loop = cfg->loop;
        net->tap_fd = -1;
        ratelimit_init(&net->rl, 1000000000ull, 10);
        ratelimit_init(&net->drop_rl, 1000000000ull, 10);
        net->vd = (struct virtio_device){
            .name = net->name,
            .device_id = VIRTIO_ID_NET,
            .nr_queues = 2,
            .queue_max = VIRTIO_NET_QUEUE_SIZE,
            .features = offered_features(cfg),
            .config_len = VIRTIO_NET_CONFIG_LEN,
            .ops = &net_ops,
            .priv = net,
        };
        virtio_device_init(&net->vd);
        if (cfg->has_mac)
                memcpy(net->config + VIRTIO_NET_CFG_MAC, cfg->mac, 6);
        put_le16(net->config + VIRTIO_NET_CFG_STATUS, VIRTIO_NET_S_LINK_UP);
        put_le16(net->config + VIRTIO_NET_CFG_MAX_PAIRS, 1);
        put_le16(net->config + VIRTIO_NET_CFG_MTU, cfg->mtu);

        r = tap_open(net, cfg->tap_name, err);
        if (!r && cfg->mmds) {
                r = mmds_stack_create(cfg->mmds, cfg->mmds_ipv4, &net->mmds);
                if (r)
                        error_set(err, r, "%s: the metadata service: %s", net->name, strerror(-r));
        }
        if (!r)
                r = add_limiter(net, VIRTIO_NET_RXQ, cfg->rx_limit, err);
        if (!r)
                r = add_limiter(net, VIRTIO_NET_TXQ, cfg->tx_limit, err);
        if (!r) {
                /* No events until DRIVER_OK; EPOLLERR still reports a vanished TAP. */
                r = event_loop_add(net->loop, net->tap_fd, 0, on_tap, net);
                if (r)
                        error_set(err, r, "%s: event loop: %s", net->name, strerror(-r));
                net->tap_registered = r == 0;
        }
        if (r) {
                virtio_net_destroy(net);
                return r;
        }
        *out = net;
        return 0;
}

void virtio_net_destroy(struct virtio_net *net)
{
        if (!net)
                return;
        if (net->tap_registered)
                event_loop_remove(net->loop, net->tap_fd);
        if (net->tap_fd >= 0)
                close(net->tap_fd);
        for (unsigned q = 0; q < 2; q++) {
                if (net->limiter_registered[q])
                        event_loop_remove(net->loop, rate_limiter_fd(net->limiter[q]));
                rate_limiter_destroy(net->limiter[q]);
        }
        free(net->rx.buf);
        mmds_stack_destroy(net->mmds);
        virtio_device_fini(&net->vd);
        free(net);
}

struct virtio_device *virtio_net_device(struct virtio_net *net)
{
        return &net->vd;
}

void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *out)
{
        pthread_mutex_lock(&net->vd.lock);
        *out = net->stats;
        pthread_mutex_unlock(&net->vd.lock);
}

void virtio_net_set_rate_limiters(struct virtio_net *net, const struct rate_limiter_config *rx,
                                  const struct rate_limiter_config *tx)
{
        pthread_mutex_lock(&net->vd.lock);
        rate_limiter_update(net->limiter[VIRTIO_NET_RXQ], rx ? rx : &unlimited);
        rate_limiter_update(net->limiter[VIRTIO_NET_TXQ], tx ? tx : &unlimited);
        /* Work refused under the old limits may go now. */
        process_tx(net);
        process_rx(net);
        pthread_mutex_unlock(&net->vd.lock);
}
