/*
 * HTTP requests to typed commands and replies to HTTP responses, independent of the HTTP
 * server (testable with plain strings).
 *
 * api_route takes the request target as the client sent it (a path with percent escapes,
 * maybe a "?query", which is ignored) and decodes the path itself. It checks what
 * Firecracker's router checks, in its order: that the method and path name an endpoint
 * (else, as Firecracker: a GET with a body, a PUT or PATCH without one, then "Invalid request
 * method and/or path: ..."; also for a path with an escaped NUL, "%00", which no endpoint or
 * id contains), that a GET has no body and a PUT/PATCH has one, that a path id is valid
 * (letters, digits, '_'), that the body deserialises into the endpoint's struct (serde's
 * message and position, api/json_serde.h), and that a body id equals the path id. Whether
 * the command may run now (before or after the start) and what it does is the controller's.
 * Every error is a 400 with {"fault_message": "..."}, worded as Firecracker words it where it
 * has a wording.
 */
#ifndef API_ROUTER_H
#define API_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/controller.h"

struct api_response {
        unsigned status; /* 200, 204, 400, ... */
        char *body;      /* malloc'd JSON, NULL for no body */
        size_t len;
        /* The request used a deprecated field: the server logs this notice (a warning) and
         * answers with "Deprecation: true", as Firecracker does. NULL: none. */
        const char *deprecation;
};

enum api_route_result {
        API_ROUTE_RESPOND, /* *resp is the answer (an error) */
        API_ROUTE_SUBMIT,  /* *req is a command for the VMM thread (controller_submit) */
};

/* req is initialised here in both cases (controller_request_clear it afterwards). When the
 * endpoint was recognised, *action tells which command it was (-1 otherwise), so refused
 * requests can be counted. */
enum api_route_result api_route(const char *method, const char *url, const char *body, size_t len,
                                struct controller_request *req, int *action,
                                struct api_response *resp);

/* The answer to an executed command. */
void api_reply(const struct controller_request *req, struct api_response *resp);

/* A 400 with a fault message. */
void api_fault(struct api_response *resp, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void api_response_free(struct api_response *resp);

#endif
