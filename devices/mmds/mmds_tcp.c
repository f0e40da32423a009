#include "mmds_tcp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mmds_http.h"
#include "mmds_pdu.h"

/* One connection: the state of RFC 9293's passive open, simplified (see the header). */
struct conn {
        bool used;
        uint32_t raddr;
        uint16_t rport;
        bool established; /* our SYN was acknowledged */
        uint32_t iss;     /* our SYN's sequence number */
        uint32_t snd_una; /* oldest unacknowledged */
        uint32_t snd_nxt; /* next to send (moves back for a retransmission) */
        uint32_t snd_max; /* highest sent + 1 */
        uint32_t snd_wnd; /* the peer's window edge: snd_una + its window */
        uint32_t rcv_nxt; /* next expected from the peer */
        uint16_t mss;
        bool ack_now;     /* an ACK is owed */
        bool fin_rcvd;    /* the peer closed its side (in order) */
        bool fin_queued;  /* we close once the answers are acknowledged */
        uint32_t fin_seq; /* our FIN's sequence number */
        bool rst_now;     /* send a RST, then forget the connection */
        uint64_t rto_start_ns;
        unsigned rto_count;
        uint64_t last_rx_ns;
        size_t rcv_len;
        uint8_t rcv[MMDS_TCP_RCV_BUF];
        struct mmds_buf resp; /* the answer being sent */
        uint32_t resp_seq;    /* the sequence number of resp.data[0] */
};

struct rst {
        uint32_t raddr, seq, ack;
        uint16_t rport;
        uint8_t flags;
};

struct mmds_tcp {
        struct mmds *m;
        struct conn conns[MMDS_TCP_MAX_CONNECTIONS];
        unsigned nr_conns;
        unsigned next_conn; /* where the round-robin of mmds_tcp_next resumes */
        struct rst rsts[MMDS_TCP_MAX_RESETS];
        unsigned nr_rsts;
        uint64_t iss_state;
};

/* A received segment, its header parsed. */
struct seg {
        uint32_t seq, ack;
        uint16_t sport, dport, wnd;
        uint8_t flags;
        const uint8_t *opts, *data;
        size_t opts_len, len;
};

static bool seq_lt(uint32_t a, uint32_t b)
{
        return (int32_t)(a - b) < 0;
}

static bool seq_le(uint32_t a, uint32_t b)
{
        return (int32_t)(a - b) <= 0;
}

static uint64_t now(const struct mmds_tcp *t)
{
        return mmds_now_ns(t->m);
}

static void count(struct mmds_tcp *t, enum mmds_counter c)
{
        mmds_count(t->m, c, 1);
}

int mmds_tcp_create(struct mmds *m, struct mmds_tcp **out)
{
        struct mmds_tcp *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->m = m;
        t->iss_state = mmds_now_ns(m) ^ (uintptr_t)t;
        *out = t;
        return 0;
}

static void conn_free(struct mmds_tcp *t, struct conn *c)
{
        mmds_buf_free(&c->resp);
        c->used = false;
        t->nr_conns--;
        count(t, MMDS_CONNECTIONS_DESTROYED);
}

void mmds_tcp_destroy(struct mmds_tcp *t)
{
        if (!t)
                return;
        for (unsigned i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++)
                mmds_buf_free(&t->conns[i].resp);
        free(t);
}

unsigned mmds_tcp_connections(const struct mmds_tcp *t)
{
        return t->nr_conns;
}

/* Initial sequence numbers nobody on the guest's side can predict from ours (a 64-bit LCG
 * mixed with the clock): the link is the guest's own, so this only keeps stale segments of
 * an earlier connection on the same ports from fitting a new one. */
static uint32_t new_iss(struct mmds_tcp *t)
{
        t->iss_state = t->iss_state * 6364136223846793005ull + 1442695040888963407ull;
        return (uint32_t)(t->iss_state >> 32) ^ (uint32_t)now(t);
}

/* ---- parsing ---- */

static bool parse_seg(const uint8_t *b, size_t len, struct seg *s)
{
        size_t off;

        if (len < TCP_HDR_MIN)
                return false;
        off = (size_t)(b[12] >> 4) * 4;
        if (off < TCP_HDR_MIN || off > len)
                return false;
        s->sport = get_be16(b);
        s->dport = get_be16(b + 2);
        s->seq = get_be32(b + 4);
        s->ack = get_be32(b + 8);
        s->flags = b[13];
        s->wnd = get_be16(b + 14);
        s->opts = b + TCP_HDR_MIN;
        s->opts_len = off - TCP_HDR_MIN;
        s->data = b + off;
        s->len = len - off;
        return true;
}

/* The MSS option of a SYN: *mss unchanged without one; false for malformed options. */
static bool parse_mss(const struct seg *s, uint16_t *mss)
{
        size_t i = 0;

        while (i < s->opts_len) {
                uint8_t kind = s->opts[i], len;

                if (kind == TCP_OPT_END)
                        return true;
                if (kind == TCP_OPT_NOP) {
                        i++;
                        continue;
                }
                if (i + 1 >= s->opts_len)
                        return false;
                len = s->opts[i + 1];
                if (len < 2 || i + len > s->opts_len)
                        return false;
                if (kind == TCP_OPT_MSS) {
                        if (len != 4 || get_be16(s->opts + i + 2) == 0)
                                return false;
                        *mss = get_be16(s->opts + i + 2);
                }
                i += len;
        }
        return true;
}

/* ---- the RST queue ---- */

static void queue_rst(struct mmds_tcp *t, uint32_t raddr, uint16_t rport, uint32_t seq,
                      uint32_t ack, uint8_t flags)
{
        /* Past the limit RSTs are not sent: the peer times out instead. */
        if (t->nr_rsts < MMDS_TCP_MAX_RESETS)
                t->rsts[t->nr_rsts++] = (struct rst){raddr, seq, ack, rport, flags};
}

/* The answer to a segment nobody expects (RFC 9293 3.10.7.1). */
static void queue_rst_for(struct mmds_tcp *t, uint32_t raddr, const struct seg *s)
{
        if (s->flags & TCP_ACK)
                queue_rst(t, raddr, s->sport, s->ack, 0, TCP_RST);
        else
                queue_rst(t, raddr, s->sport, 0,
                          s->seq + (uint32_t)s->len + !!(s->flags & TCP_SYN) +
                              !!(s->flags & TCP_FIN),
                          TCP_RST | TCP_ACK);
}

/* ---- receiving ---- */

static struct conn *find_conn(struct mmds_tcp *t, uint32_t raddr, uint16_t rport)
{
        for (unsigned i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
                struct conn *c = &t->conns[i];

                if (c->used && c->raddr == raddr && c->rport == rport)
                        return c;
        }
        return NULL;
}

static void reset_conn(struct mmds_tcp *t, struct conn *c)
{
        c->rst_now = true;
        count(t, MMDS_RX_ACCEPTED_UNUSUAL);
}

/* The HTTP side: answers the next request once the previous answer is acknowledged. */
static void endpoint_step(struct mmds_tcp *t, struct conn *c)
{
        size_t end;

        if (c->resp.len && seq_le(c->resp_seq + (uint32_t)c->resp.len, c->snd_una)) {
                c->resp_seq += (uint32_t)c->resp.len;
                c->resp.len = 0;
        }
        if (!c->resp.len && !c->fin_queued) {
                end = mmds_http_request_end(c->rcv, c->rcv_len);
                if (end) {
                        mmds_http_respond(t->m, c->rcv, end, &c->resp);
                        if (c->resp.failed) {
                                mmds_buf_free(&c->resp);
                                reset_conn(t, c);
                                return;
                        }
                        c->resp_seq = c->snd_max;
                        memmove(c->rcv, c->rcv + end, c->rcv_len - end);
                        c->rcv_len -= end;
                        c->ack_now = true; /* the window opened */
                } else if (c->rcv_len == sizeof(c->rcv)) {
                        /* A request longer than the buffer: over the limit. */
                        reset_conn(t, c);
                        return;
                }
        }
        if (c->fin_rcvd && !c->resp.len && !c->fin_queued) {
                c->fin_queued = true;
                c->fin_seq = c->snd_max;
        }
}

/* The peer's ACK field; false when the segment must be dropped. */
static bool take_ack(struct mmds_tcp *t, struct conn *c, const struct seg *s)
{
        if (!c->established) {
                /* Only our SYN can be acknowledged, and only once it was sent (a guest that
                 * guesses the number before the SYN-ACK left is resetting the connection). */
                if (s->ack != c->iss + 1 || c->snd_max != c->iss + 1) {
                        reset_conn(t, c);
                        return false;
                }
                c->established = true;
                c->snd_una = c->snd_nxt = s->ack;
                c->rto_count = 0;
        } else if (seq_lt(c->snd_max, s->ack)) {
                /* It acknowledges what was never sent: answer with an ACK, ignore it. */
                c->ack_now = true;
                count(t, MMDS_RX_ACCEPTED_UNUSUAL);
                return false;
        } else if (seq_lt(c->snd_una, s->ack)) {
                c->snd_una = s->ack;
                if (seq_lt(c->snd_nxt, c->snd_una))
                        c->snd_nxt = c->snd_una;
                c->rto_count = 0;
                c->rto_start_ns = now(t);
        } else if (s->ack == c->snd_una && !s->len && !(s->flags & TCP_FIN) &&
                   c->snd_una != c->snd_max && s->ack + s->wnd == c->snd_wnd) {
                /* A duplicate ACK: what follows snd_una is lost, send it again. */
                c->snd_nxt = c->snd_una;
                count(t, MMDS_RX_ACCEPTED_UNUSUAL);
        }
        c->snd_wnd = s->ack + s->wnd;
        return true;
}

/* The segment's data and FIN, in order only. */
static void take_data(struct mmds_tcp *t, struct conn *c, const struct seg *s)
{
        size_t room, n;

        if (!s->len && !(s->flags & TCP_FIN))
                return;
        c->ack_now = true;
        if (s->seq != c->rcv_nxt || c->fin_rcvd) {
                /* Out of order, a duplicate, or past the peer's FIN: our ACK says where we are. */
                count(t, MMDS_RX_ACCEPTED_UNUSUAL);
                return;
        }
        room = sizeof(c->rcv) - c->rcv_len;
        n = s->len < room ? s->len : room;
        memcpy(c->rcv + c->rcv_len, s->data, n);
        c->rcv_len += n;
        c->rcv_nxt += (uint32_t)n;
        if (n < s->len) {
                count(t, MMDS_RX_ACCEPTED_UNUSUAL); /* beyond the window we advertised */
                return;
        }
        if (s->flags & TCP_FIN) {
                c->fin_rcvd = true;
                c->rcv_nxt++;
        }
}

/* Whether the connection is over: both sides closed and ours acknowledged. */
static bool conn_done(const struct conn *c)
{
        return c->fin_rcvd && c->fin_queued && seq_lt(c->fin_seq, c->snd_una);
}

static void conn_receive(struct mmds_tcp *t, struct conn *c, const struct seg *s)
{
        c->last_rx_ns = now(t);
        if (c->rst_now)
                return;
        if (s->flags & TCP_RST) {
                /* Only one in the window counts (RFC 5961 would challenge the others). */
                if (seq_le(c->rcv_nxt, s->seq) &&
                    seq_lt(s->seq, c->rcv_nxt + (uint32_t)(sizeof(c->rcv) - c->rcv_len) + 1)) {
                        conn_free(t, c);
                } else {
                        count(t, MMDS_RX_ACCEPTED_UNUSUAL);
                }
                return;
        }
        if (s->flags & TCP_SYN) {
                /* The SYN again (our SYN-ACK was lost): send it again. Any other SYN resets. */
                if (!c->established && s->seq + 1 == c->rcv_nxt && !(s->flags & TCP_ACK)) {
                        c->snd_nxt = c->iss;
                        return;
                }
                reset_conn(t, c);
                return;
        }
        if (!(s->flags & TCP_ACK)) {
                count(t, MMDS_RX_ACCEPTED_UNUSUAL);
                return;
        }
        if (!take_ack(t, c, s))
                return;
        take_data(t, c, s);
        endpoint_step(t, c);
        if (conn_done(c))
                conn_free(t, c);
}

static struct conn *evictable(struct mmds_tcp *t)
{
        uint64_t n = now(t);

        for (unsigned i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
                struct conn *c = &t->conns[i];

                if (c->used && n - c->last_rx_ns > MMDS_TCP_EVICT_NS)
                        return c;
        }
        return NULL;
}

static void open_conn(struct mmds_tcp *t, uint32_t raddr, const struct seg *s)
{
        uint16_t mss = MMDS_TCP_MSS_DEFAULT;
        struct conn *c = NULL;

        if (s->len || !parse_mss(s, &mss)) {
                count(t, MMDS_RX_ACCEPTED_UNUSUAL); /* not a SYN this stack accepts */
                return;
        }
        if (t->nr_conns == MMDS_TCP_MAX_CONNECTIONS) {
                struct conn *old = evictable(t);

                if (!old) {
                        queue_rst_for(t, raddr, s);
                        count(t, MMDS_RX_ACCEPTED_UNUSUAL);
                        return;
                }
                queue_rst(t, old->raddr, old->rport, old->snd_nxt, old->rcv_nxt, TCP_RST | TCP_ACK);
                conn_free(t, old);
        }
        for (unsigned i = 0; i < MMDS_TCP_MAX_CONNECTIONS && !c; i++)
                if (!t->conns[i].used)
                        c = &t->conns[i];
        if (!c)
                return; /* cannot happen: nr_conns counts the used slots */
        memset(c, 0, offsetof(struct conn, rcv));
        c->resp = (struct mmds_buf){0};
        c->used = true;
        c->raddr = raddr;
        c->rport = s->sport;
        c->iss = new_iss(t);
        c->snd_una = c->snd_nxt = c->snd_max = c->iss;
        c->snd_wnd = c->iss + 1 + s->wnd;
        c->rcv_nxt = s->seq + 1;
        c->mss = mss < MMDS_TCP_MSS_MAX ? mss : MMDS_TCP_MSS_MAX;
        c->last_rx_ns = now(t);
        t->nr_conns++;
        count(t, MMDS_CONNECTIONS_CREATED);
}

void mmds_tcp_receive(struct mmds_tcp *t, uint32_t remote, uint32_t local, const uint8_t *seg,
                      size_t len)
{
        struct seg s;
        struct conn *c;

        (void)local;
        if (!parse_seg(seg, len, &s) || s.dport != MMDS_TCP_PORT) {
                count(t, MMDS_RX_ACCEPTED_ERR);
                return;
        }
        count(t, MMDS_RX_COUNT);
        c = find_conn(t, remote, s.sport);
        if (c)
                conn_receive(t, c, &s);
        else if ((s.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN)
                open_conn(t, remote, &s);
        else if (!(s.flags & TCP_RST))
                queue_rst_for(t, remote, &s);
}

/* ---- sending ---- */

/* Writes a segment (header, MSS option with SYN, payload) for local -> raddr. */
static size_t write_seg(uint8_t *buf, uint32_t local, uint32_t raddr, uint16_t rport, uint32_t seq,
                        uint32_t ack, uint8_t flags, uint16_t wnd, const uint8_t *data, size_t len)
{
        size_t hl = TCP_HDR_MIN + ((flags & TCP_SYN) ? 4 : 0), total = hl + len;

        put_be16(buf, MMDS_TCP_PORT);
        put_be16(buf + 2, rport);
        put_be32(buf + 4, seq);
        put_be32(buf + 8, ack);
        buf[12] = (uint8_t)(hl / 4) << 4;
        buf[13] = flags;
        put_be16(buf + 14, wnd);
        put_be16(buf + 16, 0);
        put_be16(buf + 18, 0);
        if (flags & TCP_SYN) {
                buf[20] = TCP_OPT_MSS;
                buf[21] = 4;
                put_be16(buf + 22, MMDS_TCP_MSS_MAX);
        }
        if (len)
                memcpy(buf + hl, data, len);
        put_be16(buf + 16, tcp_csum(local, raddr, buf, total));
        return total;
}

static uint16_t rcv_wnd(const struct conn *c)
{
        return (uint16_t)(sizeof(c->rcv) - c->rcv_len);
}

static size_t conn_seg(const struct conn *c, uint8_t *buf, uint32_t local, uint32_t seq,
                       uint8_t flags, const uint8_t *data, size_t len)
{
        return write_seg(buf, local, c->raddr, c->rport, seq, c->rcv_nxt, flags, rcv_wnd(c), data,
                         len);
}

/* Restarts from the first unacknowledged byte after a time-out; false when it is time to
 * give up (the connection is reset). */
static bool check_rto(struct mmds_tcp *t, struct conn *c)
{
        if (c->snd_una == c->snd_max || now(t) - c->rto_start_ns < MMDS_TCP_RTO_NS)
                return true;
        if (++c->rto_count > MMDS_TCP_RTO_MAX) {
                c->rst_now = true;
                return false;
        }
        c->snd_nxt = c->snd_una;
        c->rto_start_ns = now(t);
        return true;
}

static void sent(struct mmds_tcp *t, struct conn *c, uint32_t end)
{
        if (c->snd_una == c->snd_max)
                c->rto_start_ns = now(t); /* the first byte in flight starts the clock */
        c->snd_nxt = end;
        if (seq_lt(c->snd_max, end))
                c->snd_max = end;
        c->ack_now = false;
}

/* The connection's next segment, or 0. */
static size_t conn_next(struct mmds_tcp *t, struct conn *c, uint32_t local, uint8_t *buf,
                        size_t cap)
{
        size_t room = cap > TCP_HDR_MIN + 4 ? cap - TCP_HDR_MIN - 4 : 0;

        if (!room)
                return 0;
        if (!check_rto(t, c) || c->rst_now) {
                size_t n = conn_seg(c, buf, local, c->snd_nxt, TCP_RST | TCP_ACK, NULL, 0);

                conn_free(t, c);
                return n;
        }
        if (!c->established) {
                if (c->snd_nxt != c->iss)
                        return 0;
                sent(t, c, c->iss + 1);
                return conn_seg(c, buf, local, c->iss, TCP_SYN | TCP_ACK, NULL, 0);
        }
        if (c->resp.len) {
                uint32_t end = c->resp_seq + (uint32_t)c->resp.len;
                uint32_t wnd = seq_lt(c->snd_nxt, c->snd_wnd) ? c->snd_wnd - c->snd_nxt : 0;
                size_t n = end - c->snd_nxt;

                /* Invariant: resp_seq <= snd_una <= snd_nxt <= snd_max. */
                if (seq_lt(c->snd_nxt, c->resp_seq)) {
                        c->rst_now = true; /* cannot happen; never read before the answer */
                        return conn_next(t, c, local, buf, cap);
                }
                if (seq_lt(c->snd_nxt, end) && wnd) {
                        const uint8_t *p =
                            (const uint8_t *)c->resp.data + (c->snd_nxt - c->resp_seq);
                        uint32_t seq = c->snd_nxt;

                        n = n < c->mss ? n : c->mss;
                        n = n < wnd ? n : wnd;
                        n = n < room ? n : room;
                        sent(t, c, seq + (uint32_t)n);
                        return conn_seg(c, buf, local, seq,
                                        TCP_ACK | (seq + n == end ? TCP_PSH : 0), p, n);
                }
        }
        if (c->fin_queued && c->snd_nxt == c->fin_seq) {
                sent(t, c, c->fin_seq + 1);
                return conn_seg(c, buf, local, c->fin_seq, TCP_FIN | TCP_ACK, NULL, 0);
        }
        if (c->ack_now) {
                c->ack_now = false;
                return conn_seg(c, buf, local, c->snd_nxt, TCP_ACK, NULL, 0);
        }
        return 0;
}

size_t mmds_tcp_next(struct mmds_tcp *t, uint32_t local, uint8_t *buf, size_t cap, uint32_t *remote)
{
        if (cap < TCP_HDR_MIN + 4)
                return 0;
        if (t->nr_rsts) {
                struct rst *r = &t->rsts[--t->nr_rsts];

                *remote = r->raddr;
                return write_seg(buf, local, r->raddr, r->rport, r->seq, r->ack, r->flags, 0, NULL,
                                 0);
        }
        for (unsigned k = 0; k < MMDS_TCP_MAX_CONNECTIONS; k++) {
                struct conn *c = &t->conns[(t->next_conn + k) % MMDS_TCP_MAX_CONNECTIONS];
                uint32_t raddr = c->raddr;
                size_t n;

                if (!c->used)
                        continue;
                n = conn_next(t, c, local, buf, cap);
                if (c->used && conn_done(c))
                        conn_free(t, c);
                if (n) {
                        t->next_conn = (t->next_conn + k + 1) % MMDS_TCP_MAX_CONNECTIONS;
                        *remote = raddr;
                        return n;
                }
        }
        return 0;
}
