/*
 * One virtio-vsock connection's state machine: the packets it owes the guest, the guest's
 * packets for it, and its socket's events.
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
 */
#include "vsock_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
static uint32_t min32(uint32_t a, uint32_t b)
{
        return a < b ? a : b;
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
        uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

        return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

bool vsock_conn_line_pending(const struct vsock_conn *c)
{
        return c->state != CONN_HOST_CMD && c->line_off < c->line_len;
}

/* Whether the socket may be read for the guest now. */
bool vsock_conn_wants_data(const struct vsock_conn *c)
{
        return c->state == CONN_ESTABLISHED && !c->host_eof && !c->guest_shut_rcv &&
               peer_credit(c) > 0;
}

bool vsock_conn_has_work(const struct vsock_conn *c)
{
        return c->pending || (c->readable && vsock_conn_wants_data(c));
}

/* The socket reached EOF: SHUTDOWN(SEND), and RCV when the peer is gone altogether. */
static void conn_host_eof(struct vsock_conn *c)
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
static long conn_fill_data(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c)
{
        uint32_t room = vs->chain.writable - VIRTIO_VSOCK_HDR_LEN;
        uint32_t want = min32(min32(peer_credit(c), room), VIRTIO_VSOCK_MAX_PKT);
        ssize_t n;
        int niov, e;

        if (want == 0)
                return vsock_put_hdr(vs, q, VIRTIO_VSOCK_OP_CREDIT_UPDATE, c->host_port,
                                     c->guest_port, 0, 0, c)
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
                if (!vsock_put_hdr(vs, q, VIRTIO_VSOCK_OP_RW, c->host_port, c->guest_port,
                                   (uint32_t)n, 0, c)) {
                        vsock_muxer_kill(vs, c); /* the bytes are gone: the stream is broken */
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
        vsock_muxer_kill(vs, c);
        return 0;
}

/* One packet for connection c into vs->chain (see conn_fill_data for the result). */
long vsock_conn_fill(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c)
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
        } else if (c->readable && vsock_conn_wants_data(c)) {
                return conn_fill_data(vs, q, c);
        } else if (c->pending & P_SHUTDOWN) {
                c->pending &= ~P_SHUTDOWN;
                op = VIRTIO_VSOCK_OP_SHUTDOWN;
                flags = c->shutdown_flags;
                if (flags == (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)) {
                        c->state = CONN_CLOSING;
                        vsock_muxer_set_deadline(vs, c);
                }
        } else if (c->pending & P_CREDIT) {
                c->pending &= ~P_CREDIT;
                op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
        } else {
                return 0;
        }
        return vsock_put_hdr(vs, q, op, c->host_port, c->guest_port, 0, flags, c)
                   ? VIRTIO_VSOCK_HDR_LEN
                   : -1;
}

/* Tells the guest about forwarded bytes once it has used half of its view of our space. */
static void credit_check(struct virtio_vsock *vs, struct vsock_conn *c)
{
        uint32_t used = c->rx_cnt - c->fwd_cnt_sent;

        if (c->fwd_cnt != c->fwd_cnt_sent && used > VIRTIO_VSOCK_BUF_ALLOC / 2) {
                c->pending |= P_CREDIT;
                vsock_muxer_schedule(vs, c);
        }
}

/* Writes what waits for the socket: the OK line, then buffered guest bytes. False when the
 * connection was reset. */
static bool conn_flush(struct virtio_vsock *vs, struct vsock_conn *c)
{
        while (vsock_conn_line_pending(c)) {
                ssize_t w = send(c->fd, c->line + c->line_off, c->line_len - c->line_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno == EAGAIN)
                        return true;
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        vsock_muxer_kill(vs, c);
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
                        vsock_muxer_kill(vs, c);
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
                        vsock_muxer_end(vs, c, true, false); /* clean close: our RST completes it */
                        return false;
                }
        }
        credit_check(vs, c);
        return true;
}

/* RW payload of `len` bytes at offset HDR_LEN of vs->chain. */
static void conn_guest_data(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c,
                            uint32_t len)
{
        uint32_t off = VIRTIO_VSOCK_HDR_LEN;

        if (c->state == CONN_CLOSING) {
                /* The host's end closed and its SHUTDOWN is on its way to the guest, which may
                 * have sent this before it saw it: an ordinary race, not a bad packet. The
                 * data has nowhere to go; the guest's RST (or the deadline) ends the
                 * connection. */
                vs->stats.rx_dropped_closing++;
                return;
        }
        if (c->state != CONN_ESTABLISHED || c->guest_shut_send) {
                LOG_GUEST(&vs->rl, "%s: data on port %u in a state that takes none", vs->name,
                          c->host_port);
                vs->stats.bad_packets++;
                vsock_muxer_kill(vs, c);
                return;
        }
        if (!len)
                return;
        if (len > VIRTIO_VSOCK_BUF_ALLOC - c->buf_len) {
                LOG_GUEST(&vs->rl, "%s: port %u: the guest sent beyond its credit", vs->name,
                          c->host_port);
                vs->stats.bad_packets++;
                vsock_muxer_kill(vs, c);
                return;
        }
        c->rx_cnt += len;
        vs->stats.tx_bytes_count += len;
        if (!c->buf_len && !vsock_conn_line_pending(c)) {
                struct msghdr m = {.msg_iov = vs->iov};
                int n = virtq_chain_pin(q, &vs->chain, false, off, len, vs->iov,
                                        (int)ARRAY_SIZE(vs->iov));
                ssize_t w;

                if (n < 0) {
                        vs->stats.bad_packets++;
                        vsock_muxer_kill(vs, c);
                        return;
                }
                m.msg_iovlen = (size_t)n;
                do
                        w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
                while (w < 0 && errno == EINTR);
                virtq_chain_unpin(q, &vs->chain, false, off, len);
                if (w < 0 && errno != EAGAIN) {
                        vsock_muxer_kill(vs, c); /* the host peer is gone */
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
                        vsock_muxer_kill(vs, c);
                        return;
                }
                if (virtq_chain_read(q, &vs->chain, off, c->buf + tail, first) != first ||
                    (len > first && virtq_chain_read(q, &vs->chain, off + first, c->buf,
                                                     len - first) != len - first)) {
                        vs->stats.bad_packets++;
                        vsock_muxer_kill(vs, c);
                        return;
                }
                c->buf_len += len;
        }
        credit_check(vs, c);
}

static void conn_guest_shutdown(struct virtio_vsock *vs, struct vsock_conn *c, uint32_t flags)
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
                vsock_muxer_set_deadline(vs,
                                         c); /* the socket has VIRTIO_VSOCK_TIMEOUT_MS to drain */
}

void vsock_conn_guest_packet(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c,
                             const struct vsock_pkt *p)
{
        c->peer_buf_alloc = p->buf_alloc;
        c->peer_fwd_cnt = p->fwd_cnt;
        if (p->op == VIRTIO_VSOCK_OP_RST) {
                vsock_muxer_end(vs, c, false, false);
                return;
        }
        if (c->state == CONN_HOST_REQ) {
                if (p->op != VIRTIO_VSOCK_OP_RESPONSE || !c->req_sent) {
                        vs->stats.bad_packets++;
                        vsock_muxer_kill(vs, c);
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
                vsock_muxer_kill(vs, c);
                return;
        }
}

void vsock_conn_socket_event(struct virtio_vsock *vs, struct vsock_conn *c, uint32_t events)
{
        if (events & EPOLLERR) {
                vsock_muxer_kill(vs, c);
        } else if (c->state == CONN_HOST_REQ) {
                if (events & EPOLLHUP) /* the client left before the guest answered */
                        vsock_muxer_end(vs, c, true, false);
        } else {
                if ((events & EPOLLOUT) && !conn_flush(vs, c))
                        return;
                if (events & (EPOLLIN | EPOLLHUP))
                        c->readable = true;
                if (events & EPOLLHUP) {
                        /* Both ways shut: nothing more to poll for; what the socket still
                         * holds is read as credit allows. */
                        c->host_hup = true;
                        vsock_muxer_unregister(vs, c);
                        if (c->host_eof && !(c->shutdown_flags & VIRTIO_VSOCK_SHUTDOWN_RCV)) {
                                /* After a half-close, the peer is gone altogether. */
                                c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_RCV;
                                c->pending |= P_SHUTDOWN;
                        } else if (c->guest_shut_rcv && !c->host_eof) {
                                c->readable = false;
                                conn_host_eof(c);
                        }
                }
                vsock_muxer_schedule(vs, c);
                vsock_muxer_update_events(vs, c);
        }
}
