/*
 * virtio-vsock with Firecracker's Unix-socket backend.
 *
 * Connections are keyed by (host port, guest port). Host-initiated ones start on uds_path
 * ("CONNECT <port>\n", read a byte at a time so stream bytes behind the line stay in the
 * socket), get an ephemeral host port from VIRTIO_VSOCK_HOST_PORT_BASE up and wait for the
 * guest's RESPONSE ("OK <host_port>\n" to the client) or RST (the client is closed).
 * Guest-initiated ones connect to "<uds_path>_<port>" (AF_UNIX connects complete or fail
 * at once: RESPONSE or RST).
 *
 * Flow control (5.10.6.3): toward the guest, data is read from the socket straight into an
 * rx buffer, never more than the guest's credit (buf_alloc - (tx_cnt - fwd_cnt)); without
 * credit the socket is not polled. From the guest, payload goes to the socket directly
 * (pinned for one sendmsg) and only what the socket does not take is buffered, at most the
 * VIRTIO_VSOCK_BUF_ALLOC we advertise; a guest that sends beyond it is reset. Once the guest
 * has used half of its view of our space, a CREDIT_UPDATE returns what was forwarded.
 *
 * Closing: the guest's SHUTDOWN flags map to shutdown(2) on the socket (SEND after buffered
 * bytes are flushed); both flags end the connection with our RST. The socket's EOF becomes
 * SHUTDOWN(SEND), plus RCV when the peer closed completely (EPOLLHUP); both ways shut, the
 * guest has VIRTIO_VSOCK_TIMEOUT_MS to answer RST before we send one. Socket errors reset.
 *
 * Threads: ops run with vd->lock held on a vCPU or the VMM thread; the loop callbacks take
 * it. Connection fds may be added on either, but event_loop.h allows removals only on the
 * loop's thread: a connection that ends elsewhere is marked dead, its socket shut down
 * (the peer sees EOF at once) and its events masked; the reaper (an eventfd callback, so on
 * the loop thread) removes, closes and frees it. A dispatch already under way for it finds
 * it dead.
 */
#include "vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define CONN_BUCKETS 1024
#define RST_QUEUE    (2 * VIRTIO_VSOCK_MAX_CONNS)
/* The guest's packets stop being processed while this many RSTs wait for rx buffers. */
#define RST_HIGH       256
#define LINE_CAP       24 /* "CONNECT 4294967295\n" / "OK 4294967295\n" */
#define LISTEN_BACKLOG 128

enum conn_state {
        CONN_HOST_CMD, /* accepted on uds_path, reading "CONNECT <port>\n" */
        CONN_HOST_REQ, /* REQUEST queued or sent, waiting for the guest's answer */
        CONN_ESTABLISHED,
        CONN_CLOSING, /* both ways shut: waiting for the guest's RST */
};

/* Control packets a connection owes the guest. */
#define P_REQUEST  1u
#define P_RESPONSE 2u
#define P_SHUTDOWN 4u
#define P_CREDIT   8u

struct conn {
        struct virtio_vsock *vs;
        int fd;
        bool registered;
        bool dead;
        uint32_t events;
        enum conn_state state;
        uint32_t host_port, guest_port;
        unsigned pending;        /* P_* */
        uint32_t shutdown_flags; /* what our SHUTDOWN says */
        bool req_sent;           /* the guest knows this connection */
        bool readable;           /* the socket has bytes or EOF for the guest */
        bool host_eof, host_hup; /* EOF read; the peer closed both ways */
        bool guest_shut_rcv, guest_shut_send, wr_shut;
        /* Guest -> socket. */
        uint32_t rx_cnt;       /* payload bytes received from the guest */
        uint32_t fwd_cnt;      /* of those, taken by the socket */
        uint32_t fwd_cnt_sent; /* fwd_cnt in the last header we sent */
        uint8_t *buf;          /* VIRTIO_VSOCK_BUF_ALLOC ring while bytes wait */
        uint32_t buf_head, buf_len;
        /* Socket -> guest. */
        uint32_t peer_buf_alloc, peer_fwd_cnt;
        uint32_t tx_cnt; /* payload bytes sent to the guest */
        /* The CONNECT line being read, then the OK line being written. */
        char line[LINE_CAP];
        uint8_t line_len, line_off;
        uint64_t deadline_ns; /* 0: none */
        bool in_send;
        struct conn *hnext;       /* hash chain */
        struct conn *prev, *next; /* every connection */
        struct conn *snext;       /* connections that owe the guest a packet */
        struct conn *gnext;       /* graveyard */
};

struct rst {
        uint32_t host_port, guest_port;
};

struct virtio_vsock {
        struct virtio_device vd;
        char name[16];
        uint64_t guest_cid;
        char *uds_path;
        bool uds_bound;
        dev_t uds_dev;
        ino_t uds_ino;
        struct event_loop *loop;
        int listen_fd, timer_fd, reap_fd;
        bool listen_registered, timer_registered, reap_registered;
        bool listen_paused;
        uint64_t timer_ns; /* when the timer is armed for; 0: disarmed */
        bool active;
        bool tx_stalled;
        bool reset_event_pending; /* restored: TRANSPORT_RESET still to be sent */
        unsigned nr_conns;
        uint32_t next_port;
        struct conn *buckets[CONN_BUCKETS];
        struct conn *all;
        struct conn *send_head, *send_tail;
        struct conn *graveyard;
        struct rst rst[RST_QUEUE];
        unsigned rst_head, rst_len;
        uint8_t config[8];
        struct virtio_vsock_stats stats;
        struct ratelimit rl;
        struct virtq_chain chain;
        struct iovec iov[VIRTIO_VSOCK_QUEUE_SIZE];
};

struct pkt {
        uint64_t src_cid, dst_cid;
        uint32_t src_port, dst_port, len;
        uint16_t type, op;
        uint32_t flags, buf_alloc, fwd_cnt;
};

static void pkt_parse(const uint8_t *b, struct pkt *p)
{
        p->src_cid = get_le64(b);
        p->dst_cid = get_le64(b + 8);
        p->src_port = get_le32(b + 16);
        p->dst_port = get_le32(b + 20);
        p->len = get_le32(b + 24);
        p->type = get_le16(b + 28);
        p->op = get_le16(b + 30);
        p->flags = get_le32(b + 32);
        p->buf_alloc = get_le32(b + 36);
        p->fwd_cnt = get_le32(b + 40);
}

static void pkt_build(uint8_t *b, const struct pkt *p)
{
        put_le64(b, p->src_cid);
        put_le64(b + 8, p->dst_cid);
        put_le32(b + 16, p->src_port);
        put_le32(b + 20, p->dst_port);
        put_le32(b + 24, p->len);
        put_le16(b + 28, p->type);
        put_le16(b + 30, p->op);
        put_le32(b + 32, p->flags);
        put_le32(b + 36, p->buf_alloc);
        put_le32(b + 40, p->fwd_cnt);
}

static uint32_t min32(uint32_t a, uint32_t b)
{
        return a < b ? a : b;
}

/* ---- the connection table ---- */

static unsigned bucket(uint32_t host_port, uint32_t guest_port)
{
        return ((host_port * 2654435761u) ^ guest_port) % CONN_BUCKETS;
}

static struct conn *conn_lookup(struct virtio_vsock *vs, uint32_t host_port, uint32_t guest_port)
{
        for (struct conn *c = vs->buckets[bucket(host_port, guest_port)]; c; c = c->hnext)
                if (c->host_port == host_port && c->guest_port == guest_port)
                        return c;
        return NULL;
}

static void hash_insert(struct virtio_vsock *vs, struct conn *c)
{
        struct conn **b = &vs->buckets[bucket(c->host_port, c->guest_port)];

        c->hnext = *b;
        *b = c;
}

static void hash_remove(struct virtio_vsock *vs, struct conn *c)
{
        for (struct conn **pp = &vs->buckets[bucket(c->host_port, c->guest_port)]; *pp;
             pp = &(*pp)->hnext)
                if (*pp == c) {
                        *pp = c->hnext;
                        return;
                }
}

static bool conn_hashed(const struct conn *c)
{
        return c->state != CONN_HOST_CMD;
}

static uint32_t peer_credit(const struct conn *c)
{
        uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

        return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool line_pending(const struct conn *c)
{
        return c->state != CONN_HOST_CMD && c->line_off < c->line_len;
}

/* Whether the socket may be read for the guest now. */
static bool conn_wants_data(const struct conn *c)
{
        return c->state == CONN_ESTABLISHED && !c->host_eof && !c->guest_shut_rcv &&
               peer_credit(c) > 0;
}

static bool conn_has_work(const struct conn *c)
{
        return c->pending || (c->readable && conn_wants_data(c));
}

static void conn_schedule(struct virtio_vsock *vs, struct conn *c)
{
        if (c->dead || c->in_send || !conn_has_work(c))
                return;
        c->in_send = true;
        c->snext = NULL;
        if (vs->send_tail)
                vs->send_tail->snext = c;
        else
                vs->send_head = c;
        vs->send_tail = c;
}

static void send_remove(struct virtio_vsock *vs, struct conn *c)
{
        struct conn *prev = NULL;

        if (!c->in_send)
                return;
        for (struct conn *it = vs->send_head; it; prev = it, it = it->snext) {
                if (it != c)
                        continue;
                if (prev)
                        prev->snext = c->snext;
                else
                        vs->send_head = c->snext;
                if (vs->send_tail == c)
                        vs->send_tail = prev;
                break;
        }
        c->in_send = false;
}

static void conn_update_events(struct virtio_vsock *vs, struct conn *c)
{
        uint32_t want = 0;

        if (c->dead || !c->registered)
                return;
        if (c->state == CONN_HOST_CMD)
                want = EPOLLIN;
        else if (c->state != CONN_HOST_REQ) {
                if (!c->readable && conn_wants_data(c))
                        want |= EPOLLIN;
                if (line_pending(c) || c->buf_len)
                        want |= EPOLLOUT;
        }
        /* EPOLLHUP and EPOLLERR are reported whatever is asked for. */
        if (want != c->events && event_loop_modify(vs->loop, c->fd, want) == 0)
                c->events = want;
}

/* On the loop thread only. */
static void conn_unregister(struct virtio_vsock *vs, struct conn *c)
{
        if (c->registered) {
                event_loop_remove(vs->loop, c->fd);
                c->registered = false;
        }
}

static void rst_push(struct virtio_vsock *vs, uint32_t host_port, uint32_t guest_port)
{
        if (vs->rst_len == RST_QUEUE) {
                LOG_GUEST(&vs->rl, "%s: RST queue full, dropping one", vs->name);
                return;
        }
        vs->rst[(vs->rst_head + vs->rst_len) % RST_QUEUE] =
            (struct rst){.host_port = host_port, .guest_port = guest_port};
        vs->rst_len++;
}

static void timer_arm(struct virtio_vsock *vs, uint64_t when)
{
        struct itimerspec its = {0};

        if (vs->timer_ns && vs->timer_ns <= when)
                return;
        its.it_value.tv_sec = (time_t)(when / 1000000000ull);
        its.it_value.tv_nsec = (long)(when % 1000000000ull);
        if (timerfd_settime(vs->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
                vs->timer_ns = when;
}

static void conn_set_deadline(struct virtio_vsock *vs, struct conn *c)
{
        c->deadline_ns = clock_ns(CLOCK_MONOTONIC) + VIRTIO_VSOCK_TIMEOUT_MS * 1000000ull;
        timer_arm(vs, c->deadline_ns);
}

/* Ends a connection: with `rst` the guest is told (if it knows the connection), `killed`
 * counts it as reset by the device. Any thread: the reaper finishes (see the top). */
static void conn_end(struct virtio_vsock *vs, struct conn *c, bool rst, bool killed)
{
        uint64_t one = 1;

        if (c->dead)
                return;
        c->dead = true;
        if (conn_hashed(c))
                hash_remove(vs, c);
        if (c->prev)
                c->prev->next = c->next;
        else
                vs->all = c->next;
        if (c->next)
                c->next->prev = c->prev;
        send_remove(vs, c);
        if (c->registered && c->events)
                event_loop_modify(vs->loop, c->fd, 0);
        shutdown(c->fd, SHUT_RDWR);
        if (rst && (c->state == CONN_ESTABLISHED || c->state == CONN_CLOSING || c->req_sent))
                rst_push(vs, c->host_port, c->guest_port);
        if (c->state == CONN_ESTABLISHED || c->state == CONN_CLOSING)
                vs->stats.conns_removed++;
        if (killed)
                vs->stats.conns_killed++;
        vs->nr_conns--;
        c->gnext = vs->graveyard;
        vs->graveyard = c;
        if (write(vs->reap_fd, &one, sizeof(one)) < 0) {
                /* the counter cannot overflow here; EAGAIN would mean a wakeup is pending */
        }
}

static void conn_reset(struct virtio_vsock *vs, struct conn *c)
{
        conn_end(vs, c, true, true);
}

static struct conn *conn_new(struct virtio_vsock *vs, int fd, enum conn_state state,
                             uint32_t host_port, uint32_t guest_port, void (*cb)(void *, uint32_t))
{
        struct conn *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->vs = vs;
        c->fd = fd;
        c->state = state;
        c->host_port = host_port;
        c->guest_port = guest_port;
        c->events = state == CONN_HOST_CMD ? EPOLLIN : 0;
        if (event_loop_add(vs->loop, fd, c->events, cb, c)) {
                free(c);
                return NULL;
        }
        c->registered = true;
        if (conn_hashed(c))
                hash_insert(vs, c);
        c->next = vs->all;
        if (vs->all)
                vs->all->prev = c;
        vs->all = c;
        vs->nr_conns++;
        return c;
}

/* ---- toward the guest (rx queue) ---- */

static bool put_hdr(struct virtio_vsock *vs, struct virtq *q, uint16_t op, uint32_t host_port,
                    uint32_t guest_port, uint32_t len, uint32_t flags, struct conn *c)
{
        uint8_t raw[VIRTIO_VSOCK_HDR_LEN];
        struct pkt p = {
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

        pkt_build(raw, &p);
        if (virtq_chain_write(q, &vs->chain, 0, raw, sizeof(raw)) != (long)sizeof(raw))
                return false;
        if (c)
                c->fwd_cnt_sent = c->fwd_cnt;
        if (op == VIRTIO_VSOCK_OP_RST)
                vs->stats.rst_sent++;
        return true;
}

/* The socket reached EOF: SHUTDOWN(SEND), and RCV when the peer is gone altogether. */
static void conn_host_eof(struct conn *c)
{
        c->readable = false;
        c->host_eof = true;
        c->shutdown_flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
        if (c->host_hup || c->wr_shut)
                c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_RCV;
        c->pending |= P_SHUTDOWN;
}

/* Reads socket bytes into the chain after the header. Returns the packet length, 0 when
 * nothing was sent (the chain stays unused), -1 when guest memory refused the chain. */
static long conn_fill_data(struct virtio_vsock *vs, struct virtq *q, struct conn *c)
{
        uint32_t room = vs->chain.writable - VIRTIO_VSOCK_HDR_LEN;
        uint32_t want = min32(min32(peer_credit(c), room), VIRTIO_VSOCK_MAX_PKT);
        ssize_t n;
        int niov, e;

        if (want == 0)
                return put_hdr(vs, q, VIRTIO_VSOCK_OP_CREDIT_UPDATE, c->host_port, c->guest_port, 0,
                               0, c)
                           ? VIRTIO_VSOCK_HDR_LEN
                           : -1; /* a header-only buffer still carries our credit */
        niov = virtq_chain_pin(q, &vs->chain, true, VIRTIO_VSOCK_HDR_LEN, want, vs->iov,
                               (int)ARRAY_SIZE(vs->iov));
        if (niov < 0)
                return -1;
        do
                n = readv(c->fd, vs->iov, niov);
        while (n < 0 && errno == EINTR);
        e = errno;
        virtq_chain_unpin(q, &vs->chain, true, VIRTIO_VSOCK_HDR_LEN, want);
        if (n > 0) {
                if (!put_hdr(vs, q, VIRTIO_VSOCK_OP_RW, c->host_port, c->guest_port, (uint32_t)n, 0,
                             c)) {
                        conn_reset(vs, c); /* the bytes are gone: the stream is broken */
                        return -1;
                }
                c->tx_cnt += (uint32_t)n;
                c->pending &= ~P_CREDIT;
                vs->stats.rx_bytes_count += (uint64_t)n;
                return VIRTIO_VSOCK_HDR_LEN + n;
        }
        if (n == 0) {
                conn_host_eof(c);
                return 0;
        }
        if (e == EAGAIN) {
                c->readable = false; /* poll again */
                return 0;
        }
        conn_reset(vs, c);
        return 0;
}

/* One packet for connection c into vs->chain (see conn_fill_data for the result). */
static long conn_fill(struct virtio_vsock *vs, struct virtq *q, struct conn *c)
{
        uint16_t op;
        uint32_t flags = 0;

        if (c->pending & P_REQUEST) {
                c->pending &= ~P_REQUEST;
                c->req_sent = true;
                op = VIRTIO_VSOCK_OP_REQUEST;
        } else if (c->pending & P_RESPONSE) {
                c->pending &= ~P_RESPONSE;
                op = VIRTIO_VSOCK_OP_RESPONSE;
        } else if (c->readable && conn_wants_data(c)) {
                return conn_fill_data(vs, q, c);
        } else if (c->pending & P_SHUTDOWN) {
                c->pending &= ~P_SHUTDOWN;
                op = VIRTIO_VSOCK_OP_SHUTDOWN;
                flags = c->shutdown_flags;
                if (flags == (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)) {
                        c->state = CONN_CLOSING;
                        conn_set_deadline(vs, c);
                }
        } else if (c->pending & P_CREDIT) {
                c->pending &= ~P_CREDIT;
                op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
        } else {
                return 0;
        }
        return put_hdr(vs, q, op, c->host_port, c->guest_port, 0, flags, c) ? VIRTIO_VSOCK_HDR_LEN
                                                                            : -1;
}

/* Fills vs->chain with the next packet owed to the guest. */
static long fill(struct virtio_vsock *vs, struct virtq *q)
{
        struct conn *c;
        long n;

        if (vs->rst_len) {
                struct rst r = vs->rst[vs->rst_head];

                vs->rst_head = (vs->rst_head + 1) % RST_QUEUE;
                vs->rst_len--;
                return put_hdr(vs, q, VIRTIO_VSOCK_OP_RST, r.host_port, r.guest_port, 0, 0, NULL)
                           ? VIRTIO_VSOCK_HDR_LEN
                           : -1;
        }
        c = vs->send_head;
        send_remove(vs, c);
        n = conn_fill(vs, q, c);
        if (!c->dead) {
                conn_schedule(vs, c); /* round robin: back at the tail if it owes more */
                conn_update_events(vs, c);
        }
        return n;
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
                        n = fill(vs, q);
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

static void reply_rst(struct virtio_vsock *vs, const struct pkt *p)
{
        if (p->op != VIRTIO_VSOCK_OP_RST)
                rst_push(vs, p->dst_port, p->src_port);
}

/* Tells the guest about forwarded bytes once it has used half of its view of our space. */
static void credit_check(struct virtio_vsock *vs, struct conn *c)
{
        uint32_t used = c->rx_cnt - c->fwd_cnt_sent;

        if (c->fwd_cnt != c->fwd_cnt_sent && used > VIRTIO_VSOCK_BUF_ALLOC / 2) {
                c->pending |= P_CREDIT;
                conn_schedule(vs, c);
        }
}

/* Writes what waits for the socket: the OK line, then buffered guest bytes. False when the
 * connection was reset. */
static bool conn_flush(struct virtio_vsock *vs, struct conn *c)
{
        while (line_pending(c)) {
                ssize_t w = send(c->fd, c->line + c->line_off, c->line_len - c->line_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno == EAGAIN)
                        return true;
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        conn_reset(vs, c);
                        return false;
                }
                c->line_off = (uint8_t)(c->line_off + w);
        }
        while (c->buf_len) {
                uint32_t first = min32(c->buf_len, VIRTIO_VSOCK_BUF_ALLOC - c->buf_head);
                struct iovec iov[2] = {{c->buf + c->buf_head, first}, {c->buf, c->buf_len - first}};
                struct msghdr m = {.msg_iov = iov, .msg_iovlen = c->buf_len > first ? 2 : 1};
                ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (w < 0 && errno == EAGAIN)
                        break;
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        conn_reset(vs, c);
                        return false;
                }
                c->buf_head = (c->buf_head + (uint32_t)w) % VIRTIO_VSOCK_BUF_ALLOC;
                c->buf_len -= (uint32_t)w;
                c->fwd_cnt += (uint32_t)w;
        }
        if (!c->buf_len) {
                free(c->buf);
                c->buf = NULL;
                c->buf_head = 0;
                if (c->guest_shut_send && !c->wr_shut) {
                        shutdown(c->fd, SHUT_WR);
                        c->wr_shut = true;
                }
                if (c->guest_shut_send && c->guest_shut_rcv) {
                        conn_end(vs, c, true, false); /* clean close: our RST completes it */
                        return false;
                }
        }
        credit_check(vs, c);
        return true;
}

/* RW payload of `len` bytes at offset HDR_LEN of vs->chain. */
static void conn_guest_data(struct virtio_vsock *vs, struct virtq *q, struct conn *c, uint32_t len)
{
        uint32_t off = VIRTIO_VSOCK_HDR_LEN;

        if (c->state != CONN_ESTABLISHED || c->guest_shut_send) {
                LOG_GUEST(&vs->rl, "%s: data on port %u in a state that takes none", vs->name,
                          c->host_port);
                vs->stats.bad_packets++;
                conn_reset(vs, c);
                return;
        }
        if (!len)
                return;
        if (len > VIRTIO_VSOCK_BUF_ALLOC - c->buf_len) {
                LOG_GUEST(&vs->rl, "%s: port %u: the guest sent beyond its credit", vs->name,
                          c->host_port);
                vs->stats.bad_packets++;
                conn_reset(vs, c);
                return;
        }
        c->rx_cnt += len;
        vs->stats.tx_bytes_count += len;
        if (!c->buf_len && !line_pending(c)) {
                struct msghdr m = {.msg_iov = vs->iov};
                int n = virtq_chain_pin(q, &vs->chain, false, off, len, vs->iov,
                                        (int)ARRAY_SIZE(vs->iov));
                ssize_t w;

                if (n < 0) {
                        vs->stats.bad_packets++;
                        conn_reset(vs, c);
                        return;
                }
                m.msg_iovlen = (size_t)n;
                do
                        w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
                while (w < 0 && errno == EINTR);
                virtq_chain_unpin(q, &vs->chain, false, off, len);
                if (w < 0 && errno != EAGAIN) {
                        conn_reset(vs, c); /* the host peer is gone */
                        return;
                }
                if (w > 0) {
                        c->fwd_cnt += (uint32_t)w;
                        off += (uint32_t)w;
                        len -= (uint32_t)w;
                }
        }
        if (len) {
                uint32_t tail = (c->buf_head + c->buf_len) % VIRTIO_VSOCK_BUF_ALLOC;
                uint32_t first = min32(len, VIRTIO_VSOCK_BUF_ALLOC - tail);

                if (!c->buf && !(c->buf = malloc(VIRTIO_VSOCK_BUF_ALLOC))) {
                        conn_reset(vs, c);
                        return;
                }
                if (virtq_chain_read(q, &vs->chain, off, c->buf + tail, first) != first ||
                    (len > first && virtq_chain_read(q, &vs->chain, off + first, c->buf,
                                                     len - first) != len - first)) {
                        vs->stats.bad_packets++;
                        conn_reset(vs, c);
                        return;
                }
                c->buf_len += len;
        }
        credit_check(vs, c);
}

static void conn_guest_shutdown(struct virtio_vsock *vs, struct conn *c, uint32_t flags)
{
        if ((flags & VIRTIO_VSOCK_SHUTDOWN_RCV) && !c->guest_shut_rcv) {
                c->guest_shut_rcv = true;
                shutdown(c->fd, SHUT_RD);
        }
        if (flags & VIRTIO_VSOCK_SHUTDOWN_SEND)
                c->guest_shut_send = true;
        /* conn_flush shuts the socket's write side (and ends the connection when both
         * ways are shut) once the buffered bytes are out. */
        if (conn_flush(vs, c) && c->guest_shut_rcv && c->guest_shut_send)
                conn_set_deadline(vs, c); /* the socket has VIRTIO_VSOCK_TIMEOUT_MS to drain */
}

static void on_conn(void *opaque, uint32_t events);

/* A REQUEST from the guest for a connection we do not have. */
static void guest_connect(struct virtio_vsock *vs, const struct pkt *p)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct conn *c;
        int fd;

        if (vs->nr_conns >= VIRTIO_VSOCK_MAX_CONNS) {
                LOG_GUEST(&vs->rl, "%s: too many connections", vs->name);
                reply_rst(vs, p);
                return;
        }
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->uds_path, p->dst_port);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        /* AF_UNIX connects complete or fail at once (a full backlog is EAGAIN: a refusal). */
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
                if (fd >= 0)
                        close(fd);
                reply_rst(vs, p);
                return;
        }
        c = conn_new(vs, fd, CONN_ESTABLISHED, p->dst_port, p->src_port, on_conn);
        if (!c) {
                close(fd);
                reply_rst(vs, p);
                return;
        }
        c->peer_buf_alloc = p->buf_alloc;
        c->peer_fwd_cnt = p->fwd_cnt;
        c->pending |= P_RESPONSE;
        vs->stats.conns_added++;
        conn_update_events(vs, c);
        conn_schedule(vs, c);
}

static void conn_guest_packet(struct virtio_vsock *vs, struct virtq *q, struct conn *c,
                              const struct pkt *p)
{
        c->peer_buf_alloc = p->buf_alloc;
        c->peer_fwd_cnt = p->fwd_cnt;
        if (p->op == VIRTIO_VSOCK_OP_RST) {
                conn_end(vs, c, false, false);
                return;
        }
        if (c->state == CONN_HOST_REQ) {
                if (p->op != VIRTIO_VSOCK_OP_RESPONSE || !c->req_sent) {
                        vs->stats.bad_packets++;
                        conn_reset(vs, c);
                        return;
                }
                c->state = CONN_ESTABLISHED;
                c->deadline_ns = 0;
                vs->stats.conns_added++;
                c->line_len = (uint8_t)snprintf(c->line, sizeof(c->line), "OK %u\n", c->host_port);
                c->line_off = 0;
                conn_flush(vs, c);
                return;
        }
        switch (p->op) {
        case VIRTIO_VSOCK_OP_RW:
                conn_guest_data(vs, q, c, p->len);
                return;
        case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
                return; /* the header said it all */
        case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
                c->pending |= P_CREDIT;
                return;
        case VIRTIO_VSOCK_OP_SHUTDOWN:
                conn_guest_shutdown(vs, c, p->flags);
                return;
        default: /* REQUEST or RESPONSE on an open connection, unknown ops */
                LOG_GUEST(&vs->rl, "%s: unexpected op %u on port %u", vs->name, p->op,
                          c->host_port);
                vs->stats.bad_packets++;
                conn_reset(vs, c);
                return;
        }
}

/* One packet from the tx queue, in vs->chain. */
static void guest_packet(struct virtio_vsock *vs, struct virtq *q)
{
        uint8_t raw[VIRTIO_VSOCK_HDR_LEN];
        struct conn *c;
        struct pkt p;

        vs->stats.tx_packets_count++;
        if (vs->chain.readable < VIRTIO_VSOCK_HDR_LEN ||
            virtq_chain_read(q, &vs->chain, 0, raw, sizeof(raw)) != (long)sizeof(raw)) {
                vs->stats.bad_packets++;
                LOG_GUEST(&vs->rl, "%s: tx packet without a header", vs->name);
                return;
        }
        pkt_parse(raw, &p);
        /* A forged source cannot be answered: dropped. So is anything not for the host. */
        if (p.src_cid != vs->guest_cid || p.dst_cid != VIRTIO_VSOCK_HOST_CID) {
                vs->stats.bad_packets++;
                LOG_GUEST(&vs->rl, "%s: packet from cid %llu to cid %llu dropped", vs->name,
                          (unsigned long long)p.src_cid, (unsigned long long)p.dst_cid);
                return;
        }
        c = conn_lookup(vs, p.dst_port, p.src_port);
        if (p.type != VIRTIO_VSOCK_TYPE_STREAM || p.len > VIRTIO_VSOCK_MAX_PKT ||
            p.len > vs->chain.readable - VIRTIO_VSOCK_HDR_LEN) {
                vs->stats.bad_packets++;
                LOG_GUEST(&vs->rl, "%s: bad packet (type %u, len %u) for port %u", vs->name, p.type,
                          p.len, p.dst_port);
                if (c)
                        conn_reset(vs, c);
                else
                        reply_rst(vs, &p);
                return;
        }
        if (c) {
                conn_guest_packet(vs, q, c, &p);
                if (!c->dead) {
                        conn_update_events(vs, c);
                        conn_schedule(vs, c);
                }
        } else if (p.op == VIRTIO_VSOCK_OP_REQUEST) {
                guest_connect(vs, &p);
        } else {
                reply_rst(vs, &p); /* unknown connection */
        }
}

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
                                guest_packet(vs, q);
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

/* Both directions until neither can progress. Caller holds vd.lock. */
static void run(struct virtio_vsock *vs)
{
        do {
                process_tx(vs);
                process_rx(vs);
        } while (vs->tx_stalled && vs->rst_len < RST_HIGH);
}

/* ---- host sockets ---- */

/* "CONNECT <port>\n", nothing more or less. */
static bool parse_connect(const char *line, uint32_t *port)
{
        unsigned long long v = 0;
        const char *p = line + 8;

        if (strncmp(line, "CONNECT ", 8) || !*p)
                return false;
        for (; *p; p++) {
                if (*p < '0' || *p > '9' || p - (line + 8) >= 10)
                        return false;
                v = v * 10 + (unsigned)(*p - '0');
        }
        if (v > UINT32_MAX)
                return false;
        *port = (uint32_t)v;
        return true;
}

static uint32_t alloc_host_port(struct virtio_vsock *vs, uint32_t guest_port)
{
        for (;;) {
                uint32_t p = vs->next_port++;

                if (vs->next_port < VIRTIO_VSOCK_HOST_PORT_BASE)
                        vs->next_port = VIRTIO_VSOCK_HOST_PORT_BASE;
                if (!conn_lookup(vs, p, guest_port))
                        return p; /* at most MAX_CONNS ports are taken */
        }
}

static void conn_refuse(struct virtio_vsock *vs, struct conn *c, const char *why)
{
        LOG_GUEST(&vs->rl, "%s: host connection refused: %s", vs->name, why);
        vs->stats.conns_refused++;
        conn_end(vs, c, false, false);
}

/* Reads the CONNECT line a byte at a time: what follows it is stream data. */
static void conn_read_cmd(struct virtio_vsock *vs, struct conn *c)
{
        uint32_t port;

        for (;;) {
                char ch;
                ssize_t n = recv(c->fd, &ch, 1, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        conn_end(vs, c, false, false); /* the client left */
                        return;
                }
                if (ch == '\n')
                        break;
                if (c->line_len == sizeof(c->line) - 1) {
                        conn_refuse(vs, c, "CONNECT line too long");
                        return;
                }
                c->line[c->line_len++] = ch;
        }
        c->line[c->line_len] = '\0';
        if (!parse_connect(c->line, &port)) {
                conn_refuse(vs, c, "expected \"CONNECT <port>\\n\"");
                return;
        }
        c->line_len = c->line_off = 0;
        c->guest_port = port;
        c->host_port = alloc_host_port(vs, port);
        c->state = CONN_HOST_REQ;
        hash_insert(vs, c);
        c->pending |= P_REQUEST;
        conn_set_deadline(vs, c);
        conn_update_events(vs, c);
        conn_schedule(vs, c);
}

static void on_conn(void *opaque, uint32_t events)
{
        struct conn *c = opaque;
        struct virtio_vsock *vs = c->vs;

        pthread_mutex_lock(&vs->vd.lock);
        if (c->dead) {
                /* a dispatch that raced with the connection's end */
        } else if (c->state == CONN_HOST_CMD) {
                conn_read_cmd(vs, c);
        } else if (events & EPOLLERR) {
                conn_reset(vs, c);
        } else if (c->state == CONN_HOST_REQ) {
                if (events & EPOLLHUP) /* the client left before the guest answered */
                        conn_end(vs, c, true, false);
        } else {
                if ((events & EPOLLOUT) && !conn_flush(vs, c))
                        goto out;
                if (events & (EPOLLIN | EPOLLHUP))
                        c->readable = true;
                if (events & EPOLLHUP) {
                        /* Both ways shut: nothing more to poll for; what the socket still
                         * holds is read as credit allows. */
                        c->host_hup = true;
                        conn_unregister(vs, c);
                        if (c->host_eof && !(c->shutdown_flags & VIRTIO_VSOCK_SHUTDOWN_RCV)) {
                                /* After a half-close, the peer is gone altogether. */
                                c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_RCV;
                                c->pending |= P_SHUTDOWN;
                        } else if (c->guest_shut_rcv && !c->host_eof) {
                                c->readable = false;
                                conn_host_eof(c);
                        }
                }
                conn_schedule(vs, c);
                conn_update_events(vs, c);
        }
out:
        run(vs);
        pthread_mutex_unlock(&vs->vd.lock);
}

static void on_listen(void *opaque, uint32_t events)
{
        struct virtio_vsock *vs = opaque;

        (void)events;
        pthread_mutex_lock(&vs->vd.lock);
        for (;;) {
                int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct conn *c;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN) {
                                /* Out of descriptors or memory: stop accepting until a
                                 * connection ends, or the level-triggered loop would spin. */
                                LOG_GUEST(&vs->rl, "%s: accept on %s: %s", vs->name, vs->uds_path,
                                          strerror(errno));
                                if (event_loop_modify(vs->loop, vs->listen_fd, 0) == 0)
                                        vs->listen_paused = true;
                        }
                        break;
                }
                if (vs->nr_conns >= VIRTIO_VSOCK_MAX_CONNS) {
                        LOG_GUEST(&vs->rl, "%s: too many connections", vs->name);
                        vs->stats.conns_refused++;
                        close(fd);
                        continue;
                }
                c = conn_new(vs, fd, CONN_HOST_CMD, 0, 0, on_conn);
                if (!c)
                        close(fd);
        }
        pthread_mutex_unlock(&vs->vd.lock);
}

static void on_timer(void *opaque, uint32_t events)
{
        struct virtio_vsock *vs = opaque;
        uint64_t expirations, now, next = 0;

        (void)events;
        if (read(vs->timer_fd, &expirations, sizeof(expirations)) < 0) {
                /* EAGAIN: re-armed meanwhile; the scan below is right either way */
        }
        pthread_mutex_lock(&vs->vd.lock);
        now = clock_ns(CLOCK_MONOTONIC);
        vs->timer_ns = 0;
        for (struct conn *c = vs->all, *n; c; c = n) {
                n = c->next;
                if (!c->deadline_ns)
                        continue;
                if (c->deadline_ns > now) {
                        next = !next || c->deadline_ns < next ? c->deadline_ns : next;
                        continue;
                }
                LOG_GUEST(&vs->rl, "%s: port %u: the guest did not answer in time", vs->name,
                          c->host_port);
                conn_reset(vs, c);
        }
        if (next)
                timer_arm(vs, next);
        run(vs);
        pthread_mutex_unlock(&vs->vd.lock);
}

/* Finishes the connections that ended; on the loop thread only (see the top). */
static void reap(struct virtio_vsock *vs)
{
        while (vs->graveyard) {
                struct conn *c = vs->graveyard;
                vs->graveyard = c->gnext;
                conn_unregister(vs, c);
                close(c->fd);
                free(c->buf);
                free(c);
                /* A descriptor is free again: accept if that was what stopped us. */
                if (vs->listen_paused && event_loop_modify(vs->loop, vs->listen_fd, EPOLLIN) == 0)
                        vs->listen_paused = false;
        }
}

static void on_reap(void *opaque, uint32_t events)
{
        struct virtio_vsock *vs = opaque;
        uint64_t v;

        (void)events;
        if (read(vs->reap_fd, &v, sizeof(v)) < 0) {
                /* EAGAIN: nothing new */
        }
        pthread_mutex_lock(&vs->vd.lock);
        reap(vs);
        pthread_mutex_unlock(&vs->vd.lock);
}

/* ---- device ops ---- */

/* Tells the guest that every connection it knew is gone (after a restore), in the first
 * event buffer it posts. */
static void send_transport_reset(struct virtio_vsock *vs)
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

static void vsock_config_read(struct virtio_device *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        struct virtio_vsock *vs = vd->priv;

        virtio_config_copy(vs->config, sizeof(vs->config), off, data, len);
}

static int vsock_activate(struct virtio_device *vd)
{
        struct virtio_vsock *vs = vd->priv;

        vs->active = true;
        send_transport_reset(vs);
        run(vs);
        return 0;
}

/* The guest forgot every connection: end them all (host clients still sending their
 * CONNECT line are not the guest's and stay). */
static void vsock_reset(struct virtio_device *vd)
{
        struct virtio_vsock *vs = vd->priv;

        vs->active = false;
        for (struct conn *c = vs->all, *n; c; c = n) {
                n = c->next;
                if (c->state != CONN_HOST_CMD)
                        conn_end(vs, c, false, false);
        }
        vs->rst_len = 0;
        vs->tx_stalled = false;
        vs->reset_event_pending = false; /* a reset tells the guest as much */
}

static void vsock_notify(struct virtio_device *vd, unsigned q)
{
        /* The event queue holds buffers for the one event this device sends. */
        if (q == VIRTIO_VSOCK_EVQ)
                send_transport_reset(vd->priv);
        else
                run(vd->priv);
}

/* Snapshots (Firecracker's behaviour): connections are not saved. A restored device starts
 * without any and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue, so the guest
 * drops the connections it had; their host ends saw the old process go away. */
static int vsock_restore(struct virtio_device *vd, struct snapbuf_reader *r)
{
        struct virtio_vsock *vs = vd->priv;

        (void)r;
        vs->reset_event_pending = true;
        return 0;
}

static const struct virtio_device_ops vsock_ops = {
    .config_read = vsock_config_read,
    .activate = vsock_activate,
    .reset = vsock_reset,
    .notify = vsock_notify,
    .restore = vsock_restore,
};

/* ---- lifecycle ---- */

/* A socket at `path` that nobody listens on is left over from a previous run. */
static int remove_stale(struct virtio_vsock *vs, const struct sockaddr_un *sa, struct error *err)
{
        struct stat st;
        int fd, r;

        if (lstat(sa->sun_path, &st))
                return 0; /* gone meanwhile */
        if (!S_ISSOCK(st.st_mode))
                return error_config(err, "%s: uds_path '%s' exists and is not a socket", vs->name,
                                    sa->sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return error_set(err, -errno, "%s: socket: %s", vs->name, strerror(errno));
        r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) ? errno : 0;
        close(fd);
        if (r == 0 || r == EAGAIN)
                return error_config(err, "%s: uds_path '%s' is in use by a running listener",
                                    vs->name, sa->sun_path);
        if (r != ECONNREFUSED)
                return error_config(err, "%s: uds_path '%s' exists and cannot be replaced: %s",
                                    vs->name, sa->sun_path, strerror(r));
        unlink(sa->sun_path);
        return 0;
}

static int listen_uds(struct virtio_vsock *vs, struct error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vs->uds_path);
        vs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (vs->listen_fd < 0)
                return error_set(err, -errno, "%s: socket: %s", vs->name, strerror(errno));
        r = bind(vs->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
        if (r && errno == EADDRINUSE) {
                r = remove_stale(vs, &sa, err);
                if (r)
                        return r;
                r = bind(vs->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
        }
        if (r)
                return error_config(err, "%s: cannot bind uds_path '%s': %s", vs->name,
                                    vs->uds_path, strerror(errno));
        vs->uds_bound = true;
        if (stat(vs->uds_path, &st) == 0) {
                vs->uds_dev = st.st_dev;
                vs->uds_ino = st.st_ino;
        }
        if (listen(vs->listen_fd, LISTEN_BACKLOG))
                return error_set(err, -errno, "%s: listen on '%s': %s", vs->name, vs->uds_path,
                                 strerror(errno));
        return 0;
}

static int add_fd(struct virtio_vsock *vs, int fd, event_cb cb, bool *registered, struct error *err)
{
        int r = event_loop_add(vs->loop, fd, EPOLLIN, cb, vs);

        if (r)
                return error_set(err, r, "%s: event loop: %s", vs->name, strerror(-r));
        *registered = true;
        return 0;
}

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
        vs->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        vs->reap_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (vs->timer_fd < 0 || vs->reap_fd < 0)
                r = error_set(err, -errno, "%s: %s", vs->name, strerror(errno));
        else
                r = listen_uds(vs, err);
        if (!r)
                r = add_fd(vs, vs->timer_fd, on_timer, &vs->timer_registered, err);
        if (!r)
                r = add_fd(vs, vs->reap_fd, on_reap, &vs->reap_registered, err);
        if (!r)
                r = add_fd(vs, vs->listen_fd, on_listen, &vs->listen_registered, err);
        if (r) {
                virtio_vsock_destroy(vs);
                return r;
        }
        *out = vs;
        return 0;
}

static void remove_fd(struct virtio_vsock *vs, int fd, bool registered)
{
        if (registered)
                event_loop_remove(vs->loop, fd);
        if (fd >= 0)
                close(fd);
}

void virtio_vsock_destroy(struct virtio_vsock *vs)
{
        struct stat st;

        if (!vs)
                return;
        while (vs->all)
                conn_end(vs, vs->all, false, false);
        reap(vs);
        remove_fd(vs, vs->listen_fd, vs->listen_registered);
        remove_fd(vs, vs->timer_fd, vs->timer_registered);
        remove_fd(vs, vs->reap_fd, vs->reap_registered);
        /* Only our own socket: someone may have replaced it meanwhile. */
        if (vs->uds_bound && stat(vs->uds_path, &st) == 0 && st.st_dev == vs->uds_dev &&
            st.st_ino == vs->uds_ino)
                unlink(vs->uds_path);
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
