/*
 * The REST API server: HTTP/1.1 on a Unix socket, our own (api/http.h parses; no library,
 * so an exec loads nothing for it).
 *
 * The server creates the listening socket itself (refusing a path a live server answers on,
 * replacing a stale socket file) and serves it on one thread of its own, the API thread
 * (epoll, confined by its seccomp filter before it serves anything): it accepts keep-alive
 * connections, reads each request whole (head and body up to the limits below), routes it
 * (router.h) and answers in order, one request at a time per connection (pipelined ones wait
 * in its buffer). A request for the VMM becomes a controller command: the connection is set
 * aside, the command queued, and the VMM thread, once it has executed it, fills the reply and
 * hands the connection back; the API thread then sends the answer. The API thread never
 * waits for the VMM thread, and the VMM thread executes the commands one at a time in arrival
 * order.
 *
 * What a client meets (api_server_limits): at most max_connections connections at once (more
 * wait in the listen backlog); a request line and headers of at most API_HEAD_MAX bytes (a
 * 414 for a longer request line, a 431 for longer headers), a body of at most max_payload
 * bytes (Firecracker's 400); a request must arrive whole within request_timeout_ms of its
 * first byte (then a 408 and the connection is closed) and an answer must be read with some
 * progress every request_timeout_ms; a connection with no request is closed after
 * idle_timeout_ms. When every connection slot is taken and another client is waiting, the
 * connection whose request has been arriving the longest is answered 408 and closed at
 * once: half-sent requests cannot lock the API. Connections without a request in progress
 * are not evicted (they wait for their idle time-out).
 */
#ifndef API_SERVER_H
#define API_SERVER_H

#include <stddef.h>

#include "common/error.h"
#include "common/util.h"
#include "vmm/controller.h"

#define API_DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's default body limit, in bytes */
#define API_MAX_CONNECTIONS     256
#define API_HEAD_MAX            (32u << 10) /* request line and headers, in bytes */
#define API_REQUEST_TIMEOUT_MS  10000
#define API_IDLE_TIMEOUT_MS     60000

struct api_server_limits {
        size_t max_payload;          /* body bytes */
        unsigned max_connections;    /* open at once */
        unsigned request_timeout_ms; /* a request's first byte to its last; an answer's progress */
        unsigned idle_timeout_ms;    /* a connection without a request */
};

struct api_server;

/* Listens on path and starts the API thread with the default limits and max_payload.
 * Errors: the path is in use by a live server, or exists and is not a socket, or cannot be
 * bound. */
int api_server_start(const char *path, struct controller *ctl, size_t max_payload,
                     struct error *err, struct api_server **out) MUST_CHECK;
/* The same with every limit given (tests, fuzzing); zero fields take the defaults. */
int api_server_start_limits(const char *path, struct controller *ctl,
                            const struct api_server_limits *limits, struct error *err,
                            struct api_server **out) MUST_CHECK;
/* Stops the API thread, closes every connection and removes the socket file. The
 * controller's queue must be closed first (controller_close), so no connection is left
 * waiting for the VMM thread; the answers it filled are sent first (for at most 0.5 s: a
 * client that stopped reading cannot hold the VMM). */
void api_server_stop(struct api_server *srv);

/* The listening socket alone (also used by tests): a bound, listening AF_UNIX stream socket
 * at path. */
int api_listen_unix(const char *path, struct error *err) MUST_CHECK;

#endif
