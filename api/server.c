#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "http.h"
#include "router.h"

#define IN_MIN          1024 /* a connection's input buffer to start with (it grows to API_HEAD_MAX) */
#define ACCEPT_BATCH    64  /* connections accepted per turn */
#define ACCEPT_RETRY_MS 100 /* out of descriptors: accepting again after this */
#define STOP_FLUSH_MS   500 /* stopping: the answers filled are sent for at most this long */
#define KEEP_BUFFER     (64u << 10) /* a larger answer buffer is freed once sent */

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char bad_chunked[] = "The chunked body of the request is malformed.";

enum conn_state {
        CONN_IDLE,   /* no byte of a request yet */
        CONN_HEAD,   /* the request line and headers arriving */
        CONN_BODY,   /* the body arriving */
        CONN_QUEUED, /* with the VMM thread: not watched, never freed */
        CONN_ANSWER, /* the answer being sent; what the client sent next waits */
        CONN_CLOSED, /* on srv->dead until the end of the turn (an event may still name it) */
};

/* What a step of a connection left it in. */
enum step {
        STEP_NEXT, /* its state changed: go on */
        STEP_WAIT, /* waiting for the client or the VMM thread */
        STEP_GONE, /* closed and freed */
};

/* A client connection (API thread only, but for the VMM thread's hand-back in on_done). */
struct api_conn {
        struct api_server *srv;
        int fd;
        enum conn_state state;
        struct api_conn *prev, *next; /* srv->conns */
        struct api_conn *done_next;   /* srv->done */
        uint32_t events;              /* what epoll watches; 0: not registered */
        uint64_t deadline;            /* ms; 0: none */
        uint64_t request_start;       /* ms: the current request's first byte */
        bool eof;                     /* the client shut its sending side */
        bool close_after;             /* closed once its answer is sent */
        /* Received, not parsed yet (the head, or body and pipelined requests). */
        char *in;
        size_t in_len, in_cap;
        size_t searched; /* of in, for the head's end in vain */
        /* The request. */
        char *line; /* "METHOD\0TARGET\0" */
        const char *method, *target;
        bool keep_alive, keep_alive_10, head_only;
        bool chunked;
        struct http_chunked chunk;
        uint64_t body_left; /* Content-Length not received yet */
        uint64_t body_size; /* received, what was dropped included */
        bool too_big;
        char *body;
        size_t body_len, body_cap;
        struct controller_request creq;
        bool has_creq;
        /* To send. */
        char *out;
        size_t out_len, out_off, out_cap;
};

struct api_server {
        struct controller *ctl;
        struct api_server_limits lim;
        char *path;
        dev_t dev; /* the socket file we created (removed only if it is still ours) */
        ino_t ino;
        int listen_fd, epoll_fd, wake_fd;
        /* The API thread's own. */
        struct api_conn *conns;
        unsigned nr_conns;
        struct api_conn *dead; /* closed this turn, freed at its end */
        bool listening;        /* the listening socket is watched */
        bool stopping;         /* accepting nothing more, sending the last answers */
        uint64_t accept_retry; /* ms: out of descriptors, accept again then; 0: none */
        /* Connections whose request the VMM thread answered (on_done), oldest last. */
        pthread_mutex_t done_lock;
        struct api_conn *done;
        atomic_bool stop;
        pthread_t thread;
        pthread_mutex_t lock; /* init_done, init_err */
        pthread_cond_t cond;
        bool init_done;
        int init_err;
};

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(struct api_server *srv)
{
        uint64_t one = 1;

        if (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                LOG_WARN("API server: wake eventfd: %s", strerror(errno));
}

/* ---- connections ---- */

static int watch(struct api_conn *c, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = c};
        int op = !events ? EPOLL_CTL_DEL : c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

        if (events == c->events)
                return 0;
        if (epoll_ctl(c->srv->epoll_fd, op, c->fd, &ev)) {
                LOG_WARN("API server: epoll_ctl: %s", strerror(errno));
                return -errno;
        }
        c->events = events;
        return 0;
}

/* What the connection waits for in its state. */
static int rewatch(struct api_conn *c)
{
        uint32_t out = c->out_off < c->out_len ? EPOLLOUT : 0;

        switch (c->state) {
        case CONN_QUEUED:
                return watch(c, 0);
        case CONN_ANSWER:
                return watch(c, out);
        default:
                return watch(c, EPOLLIN | out);
        }
}

static void set_listening(struct api_server *srv, bool on)
{
        struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &srv->listen_fd};

        if (on == srv->listening)
                return;
        if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev))
                LOG_WARN("API server: epoll_ctl: %s", strerror(errno));
        else
                srv->listening = on;
}

/* The connection whose request has been arriving the longest; NULL when none is. */
static struct api_conn *slowest_request(struct api_server *srv)
{
        struct api_conn *slowest = NULL;

        for (struct api_conn *c = srv->conns; c; c = c->next)
                if ((c->state == CONN_HEAD || c->state == CONN_BODY) &&
                    (!slowest || c->request_start < slowest->request_start))
                        slowest = c;
        return slowest;
}

/* Accepting while there is room, or while a connection could make room (a request still
 * arriving, evicted when another client waits). */
static void update_listening(struct api_server *srv)
{
        set_listening(srv, !srv->stopping && !srv->accept_retry &&
                               (srv->nr_conns < srv->lim.max_connections || slowest_request(srv)));
}

static void reset_request(struct api_conn *c)
{
        free(c->line);
        c->line = NULL;
        c->method = c->target = NULL;
        free(c->body);
        c->body = NULL;
        c->body_len = c->body_cap = 0;
        c->body_size = c->body_left = 0;
        c->too_big = c->chunked = c->head_only = false;
        memset(&c->chunk, 0, sizeof(c->chunk));
        if (c->has_creq)
                controller_request_clear(&c->creq);
        c->has_creq = false;
}

static void unlink_conn(struct api_conn *c)
{
        struct api_server *srv = c->srv;

        if (c->prev)
                c->prev->next = c->next;
        else
                srv->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        srv->nr_conns--;
}

/* Closes the connection; it is freed at the end of the turn (free_dead). Never one whose
 * request the VMM thread holds (those are not watched and have no deadline). */
static void conn_close(struct api_conn *c)
{
        struct api_server *srv = c->srv;

        unlink_conn(c);
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
        c->state = CONN_CLOSED;
        c->next = srv->dead;
        srv->dead = c;
        update_listening(srv);
}

static void free_dead(struct api_server *srv)
{
        while (srv->dead) {
                struct api_conn *c = srv->dead;

                srv->dead = c->next;
                reset_request(c);
                free(c->in);
                free(c->out);
                free(c);
        }
}

static void consume(struct api_conn *c, size_t n)
{
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
}

static bool append_out(struct api_conn *c, const char *data, size_t n)
{
        if (c->out_len + n > c->out_cap) {
                size_t cap = c->out_cap ? c->out_cap : 512;
                char *b;

                while (cap < c->out_len + n)
                        cap *= 2;
                b = realloc(c->out, cap);
                if (!b)
                        return false;
                c->out = b;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, data, n);
        c->out_len += n;
        return true;
}

/* Sends what is pending; the client has request_timeout_ms for each bit of progress. */
static enum step flush(struct api_conn *c)
{
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        if (rewatch(c)) {
                                conn_close(c);
                                return STEP_GONE;
                        }
                        return STEP_WAIT;
                }
                if (n <= 0) {
                        conn_close(c); /* the client left */
                        return STEP_GONE;
                }
                c->out_off += (size_t)n;
                if (c->state == CONN_ANSWER)
                        c->deadline = now_ms() + c->srv->lim.request_timeout_ms;
        }
        c->out_off = c->out_len = 0;
        if (c->out_cap > KEEP_BUFFER) {
                free(c->out);
                c->out = NULL;
                c->out_cap = 0;
        }
        if (c->state != CONN_ANSWER) {
                /* A 100 Continue went out: no more waiting to write. */
                if (rewatch(c)) {
                        conn_close(c);
                        return STEP_GONE;
                }
                return STEP_NEXT;
        }
        /* The answer went out: the connection closes, or waits for its next request (which
         * may be here already: the caller processes it). */
        if (c->close_after) {
                conn_close(c);
                return STEP_GONE;
        }
        reset_request(c);
        c->state = CONN_IDLE;
        c->deadline = now_ms() + c->srv->lim.idle_timeout_ms;
        return STEP_NEXT;
}

/* Queues the answer (after a 100 Continue, if one is still pending) and sends it. Closes
 * the connection afterwards if close, or if the request did not keep it alive. */
static enum step respond(struct api_conn *c, struct api_response *resp, bool close)
{
        char head[HTTP_ANSWER_HEAD_MAX];
        struct timespec wall;
        size_t n;
        bool ok;

        if (resp->status >= 400 && !c->method)
                LOG_INFO("API request refused: %u %s", resp->status, resp->body ? resp->body : "");
        else if (resp->status >= 400)
                LOG_INFO("%s %s: %u %s", c->method, c->target, resp->status,
                         resp->body ? resp->body : "");
        else
                LOG_DEBUG("%s %s: %u", c->method, c->target, resp->status);
        c->close_after |= close || !c->keep_alive;
        clock_gettime(CLOCK_REALTIME, &wall);
        /* Firecracker: a deprecated endpoint or field is logged as a warning and the answer
         * says so in a header. */
        if (resp->deprecation)
                LOG_WARN("%s", resp->deprecation);
        n = http_answer_head(head, sizeof(head), resp->status, resp->len, c->close_after,
                             c->keep_alive_10 && !c->close_after,
                             resp->deprecation ? "Deprecation: true\r\n" : NULL, wall.tv_sec);
        ok = n && append_out(c, head, n) &&
             (c->head_only || !resp->len || append_out(c, resp->body, resp->len));
        api_response_free(resp);
        if (!ok) {
                LOG_WARN("API server: out of memory for an answer: closing the connection");
                conn_close(c);
                return STEP_GONE;
        }
        c->state = CONN_ANSWER;
        c->deadline = now_ms() + c->srv->lim.request_timeout_ms;
        return flush(c);
}

/* A request refused before it reached the router: the answer, then the connection closes. */
__attribute__((format(printf, 3, 4))) static enum step refuse(struct api_conn *c, unsigned status,
                                                              const char *fmt, ...)
{
        struct api_response resp;
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        api_fault(&resp, status, "%s", msg);
        return respond(c, &resp, true);
}

/* Firecracker's answer to an oversized body. */
static enum step refuse_too_big(struct api_conn *c, const char *size)
{
        return refuse(c, 400,
                      "Request payload with size %s is larger than the limit of %zu allowed by "
                      "server.",
                      size, c->srv->lim.max_payload);
}

/* The VMM thread's side: the reply is filled; the API thread sends it. */
static void on_done(struct controller_request *creq)
{
        struct api_conn *c = creq->opaque;
        struct api_server *srv = c->srv;

        pthread_mutex_lock(&srv->done_lock);
        c->done_next = srv->done;
        srv->done = c;
        pthread_mutex_unlock(&srv->done_lock);
        /* srv outlives this call: api_server_stop runs after the controller is closed. */
        wake(srv);
}

static enum step send_reply(struct api_conn *c)
{
        struct api_response resp;

        api_reply(&c->creq, &resp);
        controller_request_clear(&c->creq);
        c->has_creq = false;
        return respond(c, &resp, false);
}

static enum step dispatch(struct api_conn *c)
{
        struct api_response resp;
        int action;

        c->has_creq = true; /* api_route initialises it either way */
        if (api_route(c->method, c->target, c->body ? c->body : "", c->body_len, &c->creq, &action,
                      &resp) == API_ROUTE_RESPOND) {
                if (action >= 0)
                        controller_count_rejected(c->srv->ctl, (enum vmm_action)action);
                return respond(c, &resp, false);
        }
        c->creq.done = on_done;
        c->creq.opaque = c;
        c->state = CONN_QUEUED;
        c->deadline = 0; /* a command may take its time (a snapshot of a large guest) */
        if (controller_submit(c->srv->ctl, &c->creq)) {
                error_clear(&c->creq.reply.err);
                c->creq.reply.status =
                    error_set(&c->creq.reply.err, -ESHUTDOWN, "The microVM is shutting down.");
                c->state = CONN_ANSWER;
                return send_reply(c);
        }
        /* Not watched while the VMM thread has it (nothing in the creq is touched here). */
        (void)rewatch(c); /* a failure is logged */
        return STEP_WAIT;
}

static enum step append_body(struct api_conn *c, const char *data, size_t n)
{
        c->body_size += n;
        if (c->too_big || c->body_len + n > c->srv->lim.max_payload) {
                c->too_big = true; /* the rest is read and dropped */
                return STEP_NEXT;
        }
        if (c->body_len + n + 1 > c->body_cap) {
                size_t cap = c->body_cap ? c->body_cap : 1024;
                char *b;

                while (cap < c->body_len + n + 1)
                        cap *= 2;
                b = realloc(c->body, cap);
                if (!b)
                        return refuse(c, 500, "out of memory");
                c->body = b;
                c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, data, n);
        c->body_len += n;
        c->body[c->body_len] = '\0';
        return STEP_NEXT;
}

static enum step read_head(struct api_conn *c)
{
        struct api_server *srv = c->srv;
        struct http_request req;
        struct http_error e;
        size_t skip, head = http_head_end(c->in, c->in_len, c->searched, &skip);
        size_t mlen, tlen;

        consume(c, skip); /* empty lines before the request line */
        c->searched = c->searched > skip ? c->searched - skip : 0;
        if (!head) {
                c->searched = c->in_len;
                if (c->in_len < API_HEAD_MAX)
                        return STEP_WAIT;
                if (!http_has_line(c->in, c->in_len))
                        return refuse(c, 414,
                                      "The request line is longer than the limit of %u bytes.",
                                      API_HEAD_MAX);
                return refuse(c, 431,
                              "The request line and headers are longer than the limit of %u bytes.",
                              API_HEAD_MAX);
        }
        c->searched = 0;
        if (http_parse_head(c->in, head, &req, &e))
                return refuse(c, e.status, "%s", e.msg);
        mlen = strlen(req.method);
        tlen = strlen(req.target);
        c->line = malloc(mlen + tlen + 2);
        if (!c->line)
                return refuse(c, 500, "out of memory");
        memcpy(c->line, req.method, mlen + 1);
        memcpy(c->line + mlen + 1, req.target, tlen + 1);
        c->method = c->line;
        c->target = c->line + mlen + 1;
        c->keep_alive = req.keep_alive;
        c->keep_alive_10 = req.minor == 0 && req.keep_alive;
        c->head_only = strcmp(c->method, "HEAD") == 0;
        c->chunked = req.chunked;
        if (req.has_length && (req.length_overflow || req.length > srv->lim.max_payload)) {
                c->body_size = req.length;
                /* Refused before it is read; the connection closes. */
                return refuse_too_big(c, req.length_text);
        }
        c->body_left = req.has_length ? req.length : 0;
        consume(c, head);
        c->state = CONN_BODY;
        if (req.expect_continue && (c->chunked || c->body_left)) {
                if (!append_out(c, continue_100, sizeof(continue_100) - 1))
                        return refuse(c, 500, "out of memory");
                return flush(c);
        }
        return STEP_NEXT;
}

static enum step read_body(struct api_conn *c)
{
        enum step s;

        if (!c->chunked) {
                size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;

                s = n ? append_body(c, c->in, n) : STEP_NEXT;
                if (s != STEP_NEXT)
                        return s;
                consume(c, n);
                c->body_left -= n;
                return c->body_left ? STEP_WAIT : dispatch(c);
        }
        for (;;) {
                const char *data = NULL;
                size_t used = 0, n = 0;
                char size[24];

                switch (http_chunked_step(&c->chunk, c->in, c->in_len, &used, &data, &n)) {
                case HTTP_CHUNK_DATA:
                        s = append_body(c, data, n);
                        if (s != STEP_NEXT)
                                return s;
                        consume(c, used);
                        break;
                case HTTP_CHUNK_DONE:
                        consume(c, used);
                        if (!c->too_big)
                                return dispatch(c);
                        snprintf(size, sizeof(size), "%llu", (unsigned long long)c->body_size);
                        return refuse_too_big(c, size);
                case HTTP_CHUNK_MORE:
                        consume(c, used);
                        /* A full buffer: a chunk-size or trailer line longer than that. */
                        if (c->in_len < API_HEAD_MAX)
                                return STEP_WAIT;
                        return refuse(c, 400, "%s", bad_chunked);
                default:
                        return refuse(c, 400, "%s", bad_chunked);
                }
        }
}

/* Parses what arrived, as far as it goes. */
static enum step process(struct api_conn *c)
{
        enum step s = STEP_NEXT;

        while (s == STEP_NEXT) {
                switch (c->state) {
                case CONN_IDLE:
                        if (!c->in_len) {
                                s = STEP_WAIT;
                                break;
                        }
                        c->state = CONN_HEAD;
                        c->request_start = now_ms();
                        c->deadline = c->request_start + c->srv->lim.request_timeout_ms;
                        update_listening(c->srv); /* a connection to evict, if need be */
                        break;
                case CONN_HEAD:
                        s = read_head(c);
                        break;
                case CONN_BODY:
                        s = read_body(c);
                        break;
                default:
                        return STEP_WAIT;
                }
        }
        if (s == STEP_GONE)
                return s;
        if (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY) {
                /* Waiting for the client: one that has gone sends nothing more. */
                if (c->eof || rewatch(c)) {
                        conn_close(c);
                        return STEP_GONE;
                }
        }
        return STEP_WAIT;
}

static void on_readable(struct api_conn *c)
{
        ssize_t n;

        if (c->in_len == API_HEAD_MAX) {
                conn_close(c); /* not reached: a full buffer was refused (414, 431, 400) */
                return;
        }
        if (c->in_cap - c->in_len < IN_MIN / 2 && c->in_cap < API_HEAD_MAX) {
                size_t cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
                char *b = realloc(c->in, cap < API_HEAD_MAX ? cap : API_HEAD_MAX);

                if (!b) {
                        LOG_WARN("API server: out of memory: closing a connection");
                        conn_close(c);
                        return;
                }
                c->in = b;
                c->in_cap = cap < API_HEAD_MAX ? cap : API_HEAD_MAX;
        }
        do
                n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
        if (n < 0) {
                conn_close(c); /* reset by the client */
                return;
        }
        if (n == 0)
                c->eof = true;
        c->in_len += (size_t)n;
        process(c);
}

static void on_conn_event(struct api_conn *c, uint32_t events)
{
        if (c->state == CONN_CLOSED)
                return; /* closed earlier in this turn */
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->out_off < c->out_len) {
                enum conn_state was = c->state;
                enum step s = flush(c);

                if (s == STEP_GONE)
                        return;
                if (s == STEP_NEXT && was == CONN_ANSWER) {
                        process(c); /* the next request, if it is here */
                        return;
                }
        }
        if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
            (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY))
                on_readable(c);
}

/* A deadline passed. */
static void expire(struct api_conn *c)
{
        c->deadline = 0;
        switch (c->state) {
        case CONN_HEAD:
        case CONN_BODY:
                refuse(c, 408, "The request did not arrive whole within %u ms of its first byte.",
                       c->srv->lim.request_timeout_ms);
                return;
        default:
                /* Idle for its time, or not reading its answer. */
                conn_close(c);
                return;
        }
}

/* Makes room for a waiting client: the request that has been arriving longest is cut. */
static void evict(struct api_conn *c)
{
        if (refuse(c, 408,
                   "The request had not arrived whole when the connection was needed for "
                   "another client (the limit is %u connections).",
                   c->srv->lim.max_connections) != STEP_GONE)
                conn_close(c); /* whether the answer went out or not */
}

static void add_conn(struct api_server *srv, int fd)
{
        struct api_conn *c = calloc(1, sizeof(*c));

        if (!c) {
                close(fd);
                return;
        }
        c->srv = srv;
        c->fd = fd;
        c->state = CONN_IDLE;
        c->deadline = now_ms() + srv->lim.idle_timeout_ms;
        c->next = srv->conns;
        if (c->next)
                c->next->prev = c;
        srv->conns = c;
        srv->nr_conns++;
        if (rewatch(c))
                conn_close(c);
}

static void on_listener(struct api_server *srv)
{
        for (int i = 0; i < ACCEPT_BATCH && !srv->stopping; i++) {
                struct api_conn *victim = NULL;
                int fd;

                if (srv->nr_conns >= srv->lim.max_connections) {
                        victim = slowest_request(srv);
                        if (!victim)
                                break;
                }
                fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
                        continue;
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK) {
                                LOG_WARN("API server: accept: %s; accepting again in %d ms",
                                         strerror(errno), ACCEPT_RETRY_MS);
                                srv->accept_retry = now_ms() + ACCEPT_RETRY_MS;
                        }
                        break;
                }
                if (victim)
                        evict(victim);
                add_conn(srv, fd);
        }
        update_listening(srv);
}

/* Answers the VMM thread has filled since the last turn, oldest first. */
static void send_done(struct api_server *srv)
{
        struct api_conn *list, *rev = NULL;

        pthread_mutex_lock(&srv->done_lock);
        list = srv->done;
        srv->done = NULL;
        pthread_mutex_unlock(&srv->done_lock);
        while (list) {
                struct api_conn *next = list->done_next;

                list->done_next = rev;
                rev = list;
                list = next;
        }
        while (rev) {
                struct api_conn *c = rev;

                rev = c->done_next;
                c->state = CONN_ANSWER;
                if (send_reply(c) == STEP_NEXT)
                        process(c); /* the next request, if it is here */
        }
}

/* The time to wait for the next deadline (-1: none); expires what is due. */
static int run_deadlines(struct api_server *srv)
{
        uint64_t now = now_ms(), next = UINT64_MAX;
        struct api_conn *c, *n;

        if (srv->accept_retry && srv->accept_retry <= now) {
                srv->accept_retry = 0;
                update_listening(srv);
        }
        for (c = srv->conns; c; c = n) {
                n = c->next;
                if (c->deadline && c->deadline <= now)
                        expire(c);
        }
        /* Expiring may have set deadlines (an answer's); read them afresh. */
        if (srv->accept_retry)
                next = srv->accept_retry;
        for (c = srv->conns; c; c = c->next)
                if (c->deadline && c->deadline < next)
                        next = c->deadline;
        if (next == UINT64_MAX)
                return -1;
        return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

static bool busy(const struct api_server *srv)
{
        for (const struct api_conn *c = srv->conns; c; c = c->next)
                if (c->state == CONN_QUEUED || c->state == CONN_ANSWER)
                        return true;
        return false;
}

/* ---- the socket ---- */

int api_listen_unix(const char *path, struct error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd, probe;

        if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
                return error_set(err, -ENAMETOOLONG,
                                 "API socket path '%s' must be 1 to %zu bytes long",
                                 path ? path : "", sizeof(sa.sun_path) - 1);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return error_set(err, -errno, "API socket: %s", strerror(errno));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                if (errno != EADDRINUSE) {
                        error_set(err, -errno, "API socket '%s': %s", path, strerror(errno));
                        goto fail;
                }
                if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                        error_set(err, -EEXIST,
                                  "API socket '%s': the path exists and is not a "
                                  "socket",
                                  path);
                        goto fail;
                }
                /* A socket file: is a server answering on it? */
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                        close(probe);
                        error_set(err, -EADDRINUSE,
                                  "API socket '%s' is in use by a running server (another "
                                  "VMM?); refusing to replace it",
                                  path);
                        goto fail;
                }
                if (probe >= 0)
                        close(probe);
                /* Stale: left by a process that is gone. */
                if (unlink(path) && errno != ENOENT) {
                        error_set(err, -errno,
                                  "API socket '%s': cannot remove the stale socket: %s", path,
                                  strerror(errno));
                        goto fail;
                }
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                        error_set(err, -errno, "API socket '%s': %s", path, strerror(errno));
                        goto fail;
                }
        }
        if (listen(fd, 128) != 0) {
                error_set(err, -errno, "API socket '%s': listen: %s", path, strerror(errno));
                unlink(path);
                goto fail;
        }
        return fd;
fail:
        close(fd);
        return err && err->code ? err->code : -EINVAL;
}

/* ---- the API thread ---- */

static void report_init(struct api_server *srv, int r)
{
        pthread_mutex_lock(&srv->lock);
        srv->init_err = r;
        srv->init_done = true;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
}

static void *api_thread(void *arg)
{
        struct api_server *srv = arg;
        uint64_t stop_by = 0;
        int r;

        log_set_thread_name("api");
        pthread_setname_np(pthread_self(), "api");
        r = controller_thread_init(srv->ctl, VMM_THREAD_API);
        report_init(srv, r);
        if (r)
                return NULL;
        update_listening(srv);
        for (;;) {
                struct epoll_event evs[32];
                int timeout, n;

                if (atomic_load(&srv->stop) && !srv->stopping) {
                        srv->stopping = true;
                        update_listening(srv);
                        stop_by = now_ms() + STOP_FLUSH_MS;
                }
                timeout = run_deadlines(srv);
                if (srv->stopping) {
                        uint64_t now = now_ms();

                        if (!busy(srv) || now >= stop_by)
                                break;
                        if (timeout < 0 || (uint64_t)timeout > stop_by - now)
                                timeout = (int)(stop_by - now);
                }
                n = epoll_wait(srv->epoll_fd, evs, ARRAY_SIZE(evs), timeout);
                if (n < 0 && errno != EINTR) {
                        LOG_ERROR("API thread: epoll_wait: %s", strerror(errno));
                        break;
                }
                for (int i = 0; i < n; i++) {
                        void *p = evs[i].data.ptr;
                        uint64_t v;

                        if (p == &srv->wake_fd) {
                                if (read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                                        LOG_WARN("API thread: wake eventfd: %s", strerror(errno));
                                send_done(srv);
                        } else if (p == &srv->listen_fd) {
                                on_listener(srv);
                        } else {
                                on_conn_event(p, evs[i].events);
                        }
                }
                free_dead(srv);
        }
        send_done(srv); /* nothing, normally: the controller answered before the stop */
        while (srv->conns) {
                struct api_conn *c = srv->conns;

                if (c->state == CONN_QUEUED) {
                        /* The VMM thread still holds it; never happens (see api_server_stop). */
                        LOG_ERROR("API connection stopped while its request is queued: leaking it");
                        unlink_conn(c);
                        continue;
                }
                conn_close(c);
        }
        free_dead(srv);
        return NULL;
}

/* ---- life cycle ---- */

static void free_server(struct api_server *srv)
{
        if (srv->wake_fd >= 0)
                close(srv->wake_fd);
        if (srv->epoll_fd >= 0)
                close(srv->epoll_fd);
        if (srv->listen_fd >= 0)
                close(srv->listen_fd);
        pthread_cond_destroy(&srv->cond);
        pthread_mutex_destroy(&srv->lock);
        pthread_mutex_destroy(&srv->done_lock);
        free(srv->path);
        free(srv);
}

int api_server_start(const char *path, struct controller *ctl, size_t max_payload,
                     struct error *err, struct api_server **out)
{
        struct api_server_limits lim = {.max_payload = max_payload};

        return api_server_start_limits(path, ctl, &lim, err, out);
}

int api_server_start_limits(const char *path, struct controller *ctl,
                            const struct api_server_limits *limits, struct error *err,
                            struct api_server **out)
{
        struct api_server *srv = calloc(1, sizeof(*srv));
        struct epoll_event ev = {.events = EPOLLIN};
        struct stat st;
        int r;

        if (!srv || !(srv->path = strdup(path))) {
                free(srv);
                return error_set(err, -ENOMEM, "out of memory");
        }
        srv->ctl = ctl;
        srv->lim = *limits;
        if (!srv->lim.max_payload)
                srv->lim.max_payload = API_DEFAULT_MAX_PAYLOAD;
        if (!srv->lim.max_connections)
                srv->lim.max_connections = API_MAX_CONNECTIONS;
        if (!srv->lim.request_timeout_ms)
                srv->lim.request_timeout_ms = API_REQUEST_TIMEOUT_MS;
        if (!srv->lim.idle_timeout_ms)
                srv->lim.idle_timeout_ms = API_IDLE_TIMEOUT_MS;
        pthread_mutex_init(&srv->done_lock, NULL);
        pthread_mutex_init(&srv->lock, NULL);
        pthread_cond_init(&srv->cond, NULL);
        srv->listen_fd = -1;
        srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (srv->wake_fd < 0 || srv->epoll_fd < 0) {
                r = error_set(err, -errno, "API server: %s", strerror(errno));
                free_server(srv);
                return r;
        }
        srv->listen_fd = api_listen_unix(path, err);
        if (srv->listen_fd < 0) {
                r = srv->listen_fd;
                free_server(srv);
                return r;
        }
        if (stat(path, &st) == 0) {
                srv->dev = st.st_dev;
                srv->ino = st.st_ino;
        }
        /* The listening socket is in the set from the start, watched once the API thread is
         * confined; the eventfd wakes it for answers and for the stop. */
        ev.data.ptr = &srv->wake_fd;
        r = epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->wake_fd, &ev);
        ev.events = 0;
        ev.data.ptr = &srv->listen_fd;
        if (!r)
                r = epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &ev);
        if (r) {
                r = error_set(err, -errno, "API server: epoll_ctl: %s", strerror(errno));
        } else {
                r = pthread_create(&srv->thread, NULL, api_thread, srv);
                if (r)
                        r = error_set(err, -r, "cannot start the API thread: %s", strerror(r));
        }
        if (!r) {
                /* Confined before anything else happens: the guest may start right after. */
                pthread_mutex_lock(&srv->lock);
                while (!srv->init_done)
                        pthread_cond_wait(&srv->cond, &srv->lock);
                r = srv->init_err;
                pthread_mutex_unlock(&srv->lock);
                if (r) {
                        pthread_join(srv->thread, NULL);
                        r = error_set(err, r, "API thread: cannot confine it: %s", strerror(-r));
                }
        }
        if (r) {
                unlink(path);
                free_server(srv);
                return r;
        }
        LOG_INFO("API server listening on %s", path);
        *out = srv;
        return 0;
}

void api_server_stop(struct api_server *srv)
{
        struct stat st;

        if (!srv)
                return;
        /* The controller is closed: every queued request has been answered. The API thread
         * sends those answers (bounded), then closes every connection and ends. */
        atomic_store(&srv->stop, true);
        wake(srv);
        pthread_join(srv->thread, NULL);
        if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
                unlink(srv->path);
        free_server(srv);
}
