#include "server.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>
#include <pthread.h>

#include "common/log.h"
#include "router.h"

/* An open client connection (MHD's socket context), so that stopping can close them. */
struct api_conn {
        int fd;
        struct api_conn *prev, *next;
};

struct api_server {
        struct MHD_Daemon *daemon;
        struct controller *ctl;
        size_t max_payload;
        char *path;
        dev_t dev; /* the socket file we created (removed only if it is still ours) */
        ino_t ino;
        /* Requests handed to the VMM thread whose answer has not been sent yet: stopping
         * waits for them, so the last command (SendCtrlAltDel that ends the VM, say) still
         * gets its reply. */
        atomic_int unanswered;
        /* Open connections (the API thread adds and removes them, stopping reads them). */
        pthread_mutex_t conns_lock;
        struct api_conn *conns;
        atomic_uint nr_conns;
        /* The API thread: ours, so that it is confined (controller_thread_init) before it
         * serves anything; it runs MHD's event loop (external mode, epoll). */
        pthread_t thread;
        int wake_fd;          /* eventfd: quiesce or stop asked */
        atomic_bool quiesce;  /* stop accepting, serve the open connections */
        atomic_bool stop;     /* leave the loop */
        int listen_fd;        /* given back by MHD_quiesce_daemon (API thread), closed last */
        pthread_mutex_t lock; /* init_done, init_err */
        pthread_cond_t cond;
        bool init_done;
        int init_err;
};

enum request_state {
        RECEIVING, /* headers and body arriving (the API thread) */
        QUEUED,    /* with the VMM thread; the connection is suspended */
        ANSWERED,  /* the reply is filled; the connection resumed */
};

/* One HTTP request (MHD's per-request context). */
struct api_request {
        struct api_server *srv;
        struct MHD_Connection *conn;
        char *body;
        size_t len, cap;
        bool too_big;
        uint64_t size; /* the body's size as announced or received so far */
        _Atomic int state;
        struct controller_request creq;
};

/* ---- responses ---- */

static enum MHD_Result send_response(struct api_request *r, const char *method, const char *url,
                                     struct api_response *resp, bool close)
{
        struct MHD_Response *mr;
        enum MHD_Result ret;

        /* Firecracker logs every refused request with its message. */
        if (resp->status >= 400)
                LOG_INFO("%s %s: %u %s", method, url, resp->status, resp->body ? resp->body : "");
        else
                LOG_DEBUG("%s %s: %u", method, url, resp->status);
        if (resp->body)
                mr = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
        else
                mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!mr) {
                api_response_free(resp);
                return MHD_NO;
        }
        resp->body = NULL; /* MHD frees it */
        if (resp->len)
                MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        if (close)
                MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
        /* Firecracker: a deprecated field is logged as a warning and the answer says so. */
        if (resp->deprecation) {
                LOG_WARN("%s", resp->deprecation);
                MHD_add_response_header(mr, "Deprecation", "true");
        }
        ret = MHD_queue_response(r->conn, resp->status, mr);
        MHD_destroy_response(mr);
        return ret;
}

/* Firecracker's answer to an oversized body; the connection is closed after it (the rest
 * of the body is never read). */
static enum MHD_Result send_too_big(struct api_request *r, const char *method, const char *url)
{
        struct api_response resp;

        api_fault(&resp, 400,
                  "Request payload with size %llu is larger than the limit of %zu allowed by "
                  "server.",
                  (unsigned long long)r->size, r->srv->max_payload);
        return send_response(r, method, url, &resp, true);
}

/* ---- the VMM thread's side ---- */

static void wake(struct api_server *srv);

static void on_done(struct controller_request *creq)
{
        struct api_request *r = creq->opaque;
        struct MHD_Connection *conn = r->conn;
        struct api_server *srv = r->srv;

        /* Once resumed, the API thread may answer and free r: touch nothing after. */
        atomic_store(&r->state, ANSWERED);
        MHD_resume_connection(conn);
        /* MHD signals a resume only to threads of its own: ours runs MHD_run again when
         * woken. srv outlives this call (api_server_stop runs on this thread). */
        wake(srv);
}

/* ---- the API thread ---- */

static bool append(struct api_request *r, const char *data, size_t n)
{
        r->size += n;
        if (r->too_big || r->len + n > r->srv->max_payload) {
                r->too_big = true;
                return true; /* the rest is read and dropped */
        }
        if (r->len + n + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 1024;
                char *b;

                while (cap < r->len + n + 1)
                        cap *= 2;
                b = realloc(r->body, cap);
                if (!b)
                        return false;
                r->body = b;
                r->cap = cap;
        }
        memcpy(r->body + r->len, data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return true;
}

static enum MHD_Result dispatch(struct api_request *r, const char *method, const char *url)
{
        struct api_response resp;
        int action;

        if (api_route(method, url, r->body ? r->body : "", r->len, &r->creq, &action, &resp) ==
            API_ROUTE_RESPOND) {
                if (action >= 0)
                        controller_count_rejected(r->srv->ctl, (enum vmm_action)action);
                return send_response(r, method, url, &resp, false);
        }
        r->creq.done = on_done;
        r->creq.opaque = r;
        atomic_fetch_add(&r->srv->unanswered, 1);
        atomic_store(&r->state, QUEUED);
        /* Suspended before it is queued, so the VMM thread can only resume a suspended
         * connection. */
        MHD_suspend_connection(r->conn);
        if (controller_submit(r->srv->ctl, &r->creq)) {
                error_clear(&r->creq.reply.err);
                r->creq.reply.status =
                    error_set(&r->creq.reply.err, -ESHUTDOWN, "The microVM is shutting down.");
                atomic_store(&r->state, ANSWERED);
                MHD_resume_connection(r->conn);
                wake(r->srv); /* the loop runs MHD again for it */
        }
        return MHD_YES;
}

static bool parse_length(const char *s, uint64_t *out)
{
        char *end;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end)
                return false;
        *out = v;
        return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
        struct api_server *srv = cls;
        struct api_request *r = *con_cls;
        struct api_response resp;
        uint64_t declared;

        (void)version;
        if (!r) {
                r = calloc(1, sizeof(*r));
                if (!r)
                        return MHD_NO;
                r->srv = srv;
                r->conn = conn;
                atomic_init(&r->state, RECEIVING);
                *con_cls = r;
                /* An announced oversized body is refused before it is read. */
                if (parse_length(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_CONTENT_LENGTH),
                                 &declared) &&
                    declared > srv->max_payload) {
                        r->too_big = true;
                        r->size = declared;
                        return send_too_big(r, method, url);
                }
                return MHD_YES;
        }
        if (*upload_data_size) {
                if (!append(r, upload_data, *upload_data_size))
                        return MHD_NO;
                *upload_data_size = 0;
                return MHD_YES;
        }
        switch (atomic_load(&r->state)) {
        case RECEIVING:
                return r->too_big ? send_too_big(r, method, url) : dispatch(r, method, url);
        case ANSWERED:
                api_reply(&r->creq, &resp);
                return send_response(r, method, url, &resp, false);
        default:
                return MHD_YES; /* not reached: a queued request's connection is suspended */
        }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        struct api_request *r = *con_cls;

        (void)cls;
        (void)conn;
        (void)toe;
        if (!r)
                return;
        if (atomic_load(&r->state) == QUEUED) {
                /* The VMM thread still holds it; never happens (see api_server_stop). */
                LOG_ERROR("API request completed while queued: leaking it");
                return;
        }
        if (r->creq.done)
                atomic_fetch_sub(&r->srv->unanswered, 1); /* sent (or the client left) */
        controller_request_clear(&r->creq);
        free(r->body);
        free(r);
        *con_cls = NULL;
}

/* Connections open and close on the API thread; MHD reports a close before it closes the
 * socket, so a descriptor in the list is always still the connection's. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        struct api_server *srv = cls;
        struct api_conn *c = *socket_context;
        const union MHD_ConnectionInfo *ci;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                c = ci ? calloc(1, sizeof(*c)) : NULL;
                if (!c)
                        return; /* not tracked: MHD_stop_daemon closes it */
                c->fd = ci->connect_fd;
                pthread_mutex_lock(&srv->conns_lock);
                c->next = srv->conns;
                if (c->next)
                        c->next->prev = c;
                srv->conns = c;
                atomic_fetch_add(&srv->nr_conns, 1);
                pthread_mutex_unlock(&srv->conns_lock);
                *socket_context = c;
        } else if (c) {
                pthread_mutex_lock(&srv->conns_lock);
                if (c->prev)
                        c->prev->next = c->next;
                else
                        srv->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                atomic_fetch_sub(&srv->nr_conns, 1);
                pthread_mutex_unlock(&srv->conns_lock);
                free(c);
                *socket_context = NULL;
        }
}

/* Ends every open connection: the API thread sees their sockets shut down and closes them
 * itself. */
static void shutdown_conns(struct api_server *srv)
{
        pthread_mutex_lock(&srv->conns_lock);
        for (struct api_conn *c = srv->conns; c; c = c->next)
                shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&srv->conns_lock);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char msg[512];
        size_t n;

        (void)cls;
        if (!log_enabled(LOG_LEVEL_DEBUG))
                return;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
                msg[--n] = '\0';
        LOG_DEBUG("libmicrohttpd: %s", msg);
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
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

/* MHD's epoll set becomes readable when a socket is ready; wake_fd when a connection was
 * resumed (MHD has no inter-thread channel without threads of its own) or when stopping. */
static void *api_thread(void *arg)
{
        struct api_server *srv = arg;
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        bool quiesced = false;
        int r;

        log_set_thread_name("api");
        pthread_setname_np(pthread_self(), "api");
        r = controller_thread_init(srv->ctl, VMM_THREAD_API);
        if (!r && !di)
                r = -EIO;
        report_init(srv, r);
        if (r)
                return NULL;
        while (!atomic_load(&srv->stop)) {
                struct pollfd fds[2] = {{.fd = di->epoll_fd, .events = POLLIN},
                                        {.fd = srv->wake_fd, .events = POLLIN}};
                MHD_UNSIGNED_LONG_LONG to;
                int timeout = -1;
                uint64_t v;

                if (atomic_load(&srv->quiesce) && !quiesced) {
                        srv->listen_fd = MHD_quiesce_daemon(srv->daemon);
                        quiesced = true;
                }
                if (MHD_get_timeout(srv->daemon, &to) == MHD_YES)
                        timeout = to > INT_MAX ? INT_MAX : (int)to;
                if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
                        LOG_ERROR("API thread: poll: %s", strerror(errno));
                        break;
                }
                if (fds[1].revents && read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                        LOG_WARN("API thread: wake eventfd: %s", strerror(errno));
                MHD_run(srv->daemon);
                /* libmicrohttpd puts its listening socket back into its epoll set (after
                 * it reached the connection limit and a connection has closed since) only at
                 * the start of a run: a second run does that, or nothing would wake this
                 * poll for the connections waiting in the backlog. */
                MHD_run(srv->daemon);
        }
        return NULL;
}

static void wake(struct api_server *srv)
{
        uint64_t one = 1;

        if (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                LOG_WARN("API server: wake eventfd: %s", strerror(errno));
}

/* ---- life cycle ---- */

static void free_server(struct api_server *srv)
{
        if (srv->wake_fd >= 0)
                close(srv->wake_fd);
        pthread_cond_destroy(&srv->cond);
        pthread_mutex_destroy(&srv->lock);
        pthread_mutex_destroy(&srv->conns_lock);
        free(srv->path);
        free(srv);
}

int api_server_start(const char *path, struct controller *ctl, size_t max_payload,
                     struct error *err, struct api_server **out)
{
        struct api_server *srv = calloc(1, sizeof(*srv));
        struct stat st;
        int fd, r;

        if (!srv || !(srv->path = strdup(path))) {
                free(srv);
                return error_set(err, -ENOMEM, "out of memory");
        }
        srv->ctl = ctl;
        srv->max_payload = max_payload;
        srv->listen_fd = MHD_INVALID_SOCKET;
        pthread_mutex_init(&srv->conns_lock, NULL);
        pthread_mutex_init(&srv->lock, NULL);
        pthread_cond_init(&srv->cond, NULL);
        srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (srv->wake_fd < 0) {
                r = error_set(err, -errno, "API server: eventfd: %s", strerror(errno));
                free_server(srv);
                return r;
        }
        fd = api_listen_unix(path, err);
        if (fd < 0) {
                free_server(srv);
                return fd;
        }
        if (stat(path, &st) == 0) {
                srv->dev = st.st_dev;
                srv->ino = st.st_ino;
        }
        /* Every connection on one thread (epoll), run by our API thread (MHD's "external"
         * mode); suspend/resume lets it go on serving others while the VMM thread executes a
         * command. */
        srv->daemon = MHD_start_daemon(
            MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
            srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)API_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)API_CONNECTION_MEMORY, MHD_OPTION_END);
        if (!srv->daemon) {
                close(fd);
                unlink(path);
                free_server(srv);
                return error_set(err, -EIO, "cannot start the API server (libmicrohttpd)");
        }
        r = pthread_create(&srv->thread, NULL, api_thread, srv);
        if (r) {
                r = error_set(err, -r, "cannot start the API thread: %s", strerror(r));
        } else {
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
                MHD_stop_daemon(srv->daemon); /* closes the listening socket too */
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
        /* The controller is closed: every queued request has been answered. Let the API
         * thread send those answers (bounded: a client that stopped reading cannot hold
         * the VMM). */
        for (int i = 0; i < 500 && atomic_load(&srv->unanswered) > 0; i++)
                usleep(1000);
        /* Then the API thread stops accepting and closes every connection itself before
         * MHD_stop_daemon: in libmicrohttpd 0.9.75 (Debian 12) MHD_stop_daemon crashes (a NULL
         * response) when it has to close a connection whose request MHD refused on its own
         * (a malformed request line) and whose client has just gone. Bounded too. */
        atomic_store(&srv->quiesce, true);
        wake(srv);
        for (int i = 0; i < 1000 && atomic_load(&srv->nr_conns) > 0; i++) {
                if (i % 10 == 0)
                        shutdown_conns(srv); /* again: one may have arrived meanwhile */
                usleep(1000);
        }
        atomic_store(&srv->stop, true);
        wake(srv);
        pthread_join(srv->thread, NULL);
        MHD_stop_daemon(srv->daemon);
        if (srv->listen_fd != MHD_INVALID_SOCKET)
                close(srv->listen_fd);
        if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
                unlink(srv->path);
        free_server(srv);
}
