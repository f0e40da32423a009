/*
 * virtio-vsock's Unix-socket muxer (Firecracker's backend): which connection a packet
 * belongs to, and which connection speaks to the guest next.
 *
 * Connections are keyed by (host port, guest port). Host-initiated ones start on uds_path
 * ("CONNECT <port>\n", read a byte at a time so stream bytes behind the line stay in the
 * socket), get an ephemeral host port from VIRTIO_VSOCK_HOST_PORT_BASE up and wait for the
 * guest's RESPONSE ("OK <host_port>\n" to the client) or RST (the client is closed).
 * Guest-initiated ones connect to "<uds_path>_<port>" (AF_UNIX connects complete or fail
 * at once: RESPONSE or RST). Connections that owe the guest a packet wait in a round-robin
 * queue behind the RSTs owed for connections that no longer exist; one timer serves every
 * connection's deadline; the reaper frees ended connections on the loop thread
 * (vsock_priv.h).
 */
#include "vsock_priv.h"

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

static unsigned bucket(uint32_t host_port, uint32_t guest_port)
{
        return ((host_port * 2654435761u) ^ guest_port) % CONN_BUCKETS;
}

static struct vsock_conn *conn_lookup(struct virtio_vsock *vs, uint32_t host_port,
                                      uint32_t guest_port)
{
        for (struct vsock_conn *c = vs->buckets[bucket(host_port, guest_port)]; c; c = c->hnext)
                if (c->host_port == host_port && c->guest_port == guest_port)
                        return c;
        return NULL;
}

static void hash_insert(struct virtio_vsock *vs, struct vsock_conn *c)
{
        struct vsock_conn **b = &vs->buckets[bucket(c->host_port, c->guest_port)];

        c->hnext = *b;
        *b = c;
}

static void hash_remove(struct virtio_vsock *vs, struct vsock_conn *c)
{
        for (struct vsock_conn **pp = &vs->buckets[bucket(c->host_port, c->guest_port)]; *pp;
             pp = &(*pp)->hnext)
                if (*pp == c) {
                        *pp = c->hnext;
                        return;
                }
}

static bool conn_hashed(const struct vsock_conn *c)
{
        return c->state != CONN_HOST_CMD;
}

void vsock_muxer_schedule(struct virtio_vsock *vs, struct vsock_conn *c)
{
        if (c->dead || c->in_send || !vsock_conn_has_work(c))
                return;
        c->in_send = true;
        c->snext = NULL;
        if (vs->send_tail)
                vs->send_tail->snext = c;
        else
                vs->send_head = c;
        vs->send_tail = c;
}

static void send_remove(struct virtio_vsock *vs, struct vsock_conn *c)
{
        struct vsock_conn *prev = NULL;

        if (!c->in_send)
                return;
        for (struct vsock_conn *it = vs->send_head; it; prev = it, it = it->snext) {
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

void vsock_muxer_update_events(struct virtio_vsock *vs, struct vsock_conn *c)
{
        uint32_t want = 0;

        if (c->dead || !c->registered)
                return;
        if (c->state == CONN_HOST_CMD)
                want = EPOLLIN;
        else if (c->state != CONN_HOST_REQ) {
                if (!c->readable && vsock_conn_wants_data(c))
                        want |= EPOLLIN;
                if (vsock_conn_line_pending(c) || c->buf_len)
                        want |= EPOLLOUT;
        }
        /* EPOLLHUP and EPOLLERR are reported whatever is asked for. */
        if (want != c->events && event_loop_modify(vs->loop, c->fd, want) == 0)
                c->events = want;
}

/* On the loop thread only. */
void vsock_muxer_unregister(struct virtio_vsock *vs, struct vsock_conn *c)
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
            (struct vsock_rst){.host_port = host_port, .guest_port = guest_port};
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

void vsock_muxer_set_deadline(struct virtio_vsock *vs, struct vsock_conn *c)
{
        c->deadline_ns = clock_ns(CLOCK_MONOTONIC) + VIRTIO_VSOCK_TIMEOUT_MS * 1000000ull;
        timer_arm(vs, c->deadline_ns);
}

/* Ends a connection: with `rst` the guest is told (if it knows the connection), `killed`
 * counts it as reset by the device. Any thread: the reaper finishes (vsock_priv.h). */
void vsock_muxer_end(struct virtio_vsock *vs, struct vsock_conn *c, bool rst, bool killed)
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

void vsock_muxer_kill(struct virtio_vsock *vs, struct vsock_conn *c)
{
        vsock_muxer_end(vs, c, true, true);
}

static struct vsock_conn *conn_new(struct virtio_vsock *vs, int fd, enum conn_state state,
                                   uint32_t host_port, uint32_t guest_port,
                                   void (*cb)(void *, uint32_t))
{
        struct vsock_conn *c = calloc(1, sizeof(*c));

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

/* Fills vs->chain with the next packet owed to the guest. */
long vsock_muxer_fill(struct virtio_vsock *vs, struct virtq *q)
{
        struct vsock_conn *c;
        long n;

        if (vs->rst_len) {
                struct vsock_rst r = vs->rst[vs->rst_head];

                vs->rst_head = (vs->rst_head + 1) % RST_QUEUE;
                vs->rst_len--;
                return vsock_put_hdr(vs, q, VIRTIO_VSOCK_OP_RST, r.host_port, r.guest_port, 0, 0,
                                     NULL)
                           ? VIRTIO_VSOCK_HDR_LEN
                           : -1;
        }
        c = vs->send_head;
        send_remove(vs, c);
        n = vsock_conn_fill(vs, q, c);
        if (!c->dead) {
                vsock_muxer_schedule(vs, c); /* round robin: back at the tail if it owes more */
                vsock_muxer_update_events(vs, c);
        }
        return n;
}

static void reply_rst(struct virtio_vsock *vs, const struct vsock_pkt *p)
{
        if (p->op != VIRTIO_VSOCK_OP_RST)
                rst_push(vs, p->dst_port, p->src_port);
}

static void on_conn(void *opaque, uint32_t events);

/* A REQUEST from the guest for a connection we do not have. */
static void guest_connect(struct virtio_vsock *vs, const struct vsock_pkt *p)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct vsock_conn *c;
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
        vsock_muxer_update_events(vs, c);
        vsock_muxer_schedule(vs, c);
}

/* One packet from the tx queue, in vs->chain. */
void vsock_muxer_guest_packet(struct virtio_vsock *vs, struct virtq *q)
{
        uint8_t raw[VIRTIO_VSOCK_HDR_LEN];
        struct vsock_conn *c;
        struct vsock_pkt p;

        vs->stats.tx_packets_count++;
        if (vs->chain.readable < VIRTIO_VSOCK_HDR_LEN ||
            virtq_chain_read(q, &vs->chain, 0, raw, sizeof(raw)) != (long)sizeof(raw)) {
                vs->stats.bad_packets++;
                LOG_GUEST(&vs->rl, "%s: tx packet without a header", vs->name);
                return;
        }
        vsock_pkt_parse(raw, &p);
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
                        vsock_muxer_kill(vs, c);
                else
                        reply_rst(vs, &p);
                return;
        }
        if (c) {
                vsock_conn_guest_packet(vs, q, c, &p);
                if (!c->dead) {
                        vsock_muxer_update_events(vs, c);
                        vsock_muxer_schedule(vs, c);
                }
        } else if (p.op == VIRTIO_VSOCK_OP_REQUEST) {
                guest_connect(vs, &p);
        } else {
                reply_rst(vs, &p); /* unknown connection */
        }
}

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

static void conn_refuse(struct virtio_vsock *vs, struct vsock_conn *c, const char *why)
{
        LOG_GUEST(&vs->rl, "%s: host connection refused: %s", vs->name, why);
        vs->stats.conns_refused++;
        vsock_muxer_end(vs, c, false, false);
}

/* Reads the CONNECT line a byte at a time: what follows it is stream data. */
static void conn_read_cmd(struct virtio_vsock *vs, struct vsock_conn *c)
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
                        vsock_muxer_end(vs, c, false, false); /* the client left */
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
        vsock_muxer_set_deadline(vs, c);
        vsock_muxer_update_events(vs, c);
        vsock_muxer_schedule(vs, c);
}

static void on_conn(void *opaque, uint32_t events)
{
        struct vsock_conn *c = opaque;
        struct virtio_vsock *vs = c->vs;

        pthread_mutex_lock(&vs->vd.lock);
        if (c->dead) {
                /* a dispatch that raced with the connection's end */
        } else if (c->state == CONN_HOST_CMD) {
                conn_read_cmd(vs, c);
        } else {
                vsock_conn_socket_event(vs, c, events);
        }
        vsock_run(vs);
        pthread_mutex_unlock(&vs->vd.lock);
}

static void on_listen(void *opaque, uint32_t events)
{
        struct virtio_vsock *vs = opaque;

        (void)events;
        pthread_mutex_lock(&vs->vd.lock);
        for (;;) {
                int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct vsock_conn *c;

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
        for (struct vsock_conn *c = vs->all, *n; c; c = n) {
                n = c->next;
                if (!c->deadline_ns)
                        continue;
                if (c->deadline_ns > now) {
                        next = !next || c->deadline_ns < next ? c->deadline_ns : next;
                        continue;
                }
                LOG_GUEST(&vs->rl, "%s: port %u: the guest did not answer in time", vs->name,
                          c->host_port);
                vsock_muxer_kill(vs, c);
        }
        if (next)
                timer_arm(vs, next);
        vsock_run(vs);
        pthread_mutex_unlock(&vs->vd.lock);
}

/* Finishes the connections that ended; on the loop thread only (vsock_priv.h). */
static void reap(struct virtio_vsock *vs)
{
        while (vs->graveyard) {
                struct vsock_conn *c = vs->graveyard;
                vs->graveyard = c->gnext;
                vsock_muxer_unregister(vs, c);
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

int vsock_muxer_open(struct virtio_vsock *vs, struct error *err)
{
        int r;

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
        return r;
}

static void remove_fd(struct virtio_vsock *vs, int fd, bool registered)
{
        if (registered)
                event_loop_remove(vs->loop, fd);
        if (fd >= 0)
                close(fd);
}

void vsock_muxer_close(struct virtio_vsock *vs)
{
        struct stat st;

        while (vs->all)
                vsock_muxer_end(vs, vs->all, false, false);
        reap(vs);
        remove_fd(vs, vs->listen_fd, vs->listen_registered);
        remove_fd(vs, vs->timer_fd, vs->timer_registered);
        remove_fd(vs, vs->reap_fd, vs->reap_registered);
        /* Only our own socket: someone may have replaced it meanwhile. */
        if (vs->uds_bound && stat(vs->uds_path, &st) == 0 && st.st_dev == vs->uds_dev &&
            st.st_ino == vs->uds_ino)
                unlink(vs->uds_path);
}
