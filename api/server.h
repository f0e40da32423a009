/*
 * The REST API server: HTTP/1.1 on a Unix socket, served by libmicrohttpd.
 *
 * The server creates the listening socket itself (refusing a path a live server answers on,
 * replacing a stale socket file) and hands it to libmicrohttpd, whose one internal thread
 * (the API thread, epoll) accepts any number of keep-alive connections, accumulates bodies
 * up to the payload limit and routes requests (router.h). A request for the VMM becomes a
 * controller command: its connection is suspended, the command queued, and the VMM thread,
 * once it has executed it, fills the reply and resumes the connection; the API thread then
 * sends the answer. The API thread never waits for the VMM thread, and the VMM thread
 * executes the commands one at a time in arrival order.
 */
#ifndef API_SERVER_H
#define API_SERVER_H

#include <stddef.h>

#include "common/error.h"
#include "common/util.h"
#include "vmm/controller.h"

#define API_DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's default body limit, in bytes */
/* What clients can make the API thread hold: connections at once (more wait in the
 * listen backlog) and libmicrohttpd's per-connection buffer for the request line and
 * headers (bodies are accumulated separately, up to the payload limit). */
#define API_MAX_CONNECTIONS   256
#define API_CONNECTION_MEMORY (32u << 10)

struct api_server;

/* Listens on path and starts the API thread. Errors: the path is in use by a live server,
 * or exists and is not a socket, or cannot be bound. */
int api_server_start(const char *path, struct controller *ctl, size_t max_payload,
                     struct error *err, struct api_server **out) MUST_CHECK;
/* Stops the API thread, closes every connection and removes the socket file. The
 * controller's queue must be closed first (controller_close), so no connection is left
 * waiting for the VMM thread. */
void api_server_stop(struct api_server *srv);

/* The listening socket alone (also used by tests): a bound, listening AF_UNIX stream socket
 * at path. */
int api_listen_unix(const char *path, struct error *err) MUST_CHECK;

#endif
