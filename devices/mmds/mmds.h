/*
 * The microVM metadata service (MMDS), Firecracker's (docs/mmds.md): one per VM, a JSON data
 * store the host fills through the API (PUT replaces it, PATCH merges into it as RFC 7396 says,
 * GET reads it) and the guest reads over HTTP through its network interfaces.
 *
 * This module is the store, its settings (version V1 or V2, imds_compat), the V2 session
 * tokens (mmds_token.h), the counters (Firecracker's "mmds" metrics) and what the guest-facing
 * HTTP responder (mmds_http.h) needs from them. The network side, one stack per interface the
 * service answers on, is mmds_stack.h. No KVM, no virtio: everything is testable on buffers.
 *
 * Thread safety: every function may be called from any thread (a mutex guards the store and
 * the settings; the counters are atomic).
 */
#ifndef DEVICES_MMDS_MMDS_H
#define DEVICES_MMDS_MMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "mmds_json.h"
#include "mmds_token.h"

/* Firecracker's default data store limit: its API's default request body limit. */
#define MMDS_DEFAULT_SIZE_LIMIT 51200
/* 169.254.169.254, host byte order. */
#define MMDS_DEFAULT_IPV4 0xa9fea9feu

enum mmds_version { MMDS_V1, MMDS_V2 };

/* Firecracker's "mmds" metrics, in its order. */
enum mmds_counter {
        MMDS_RX_ACCEPTED,         /* guest frames the service took (not sent to the TAP) */
        MMDS_RX_ACCEPTED_ERR,     /* of those, TCP segments it could not handle */
        MMDS_RX_ACCEPTED_UNUSUAL, /* unusual ones (not TCP, odd TCP states) */
        MMDS_RX_BAD_ETH,          /* not even an Ethernet frame */
        MMDS_RX_INVALID_TOKEN,    /* GET requests with an invalid token */
        MMDS_RX_NO_TOKEN,         /* GET requests without a token */
        MMDS_RX_COUNT,            /* TCP segments received */
        MMDS_TX_BYTES,            /* bytes of the frames sent to the guest */
        MMDS_TX_COUNT,            /* frames (ARP replies, TCP segments) sent */
        MMDS_TX_ERRORS,           /* frames that could not be written */
        MMDS_TX_FRAMES,           /* frames handed to the guest's receive queue */
        MMDS_CONNECTIONS_CREATED,
        MMDS_CONNECTIONS_DESTROYED,
        MMDS_COUNTER_COUNT
};

/* "rx_accepted", ... */
const char *mmds_counter_name(enum mmds_counter c);

/* The clock: CLOCK_MONOTONIC nanoseconds (tests pass their own). */
typedef uint64_t (*mmds_clock_fn)(void *opaque);

struct mmds_params {
        size_t size_limit;       /* the store's largest compact JSON text; 0: the default */
        const char *instance_id; /* the tokens' authenticated data ("microvmid=<id>") */
        mmds_clock_fn clock;     /* NULL: CLOCK_MONOTONIC */
        void *clock_opaque;
};

struct mmds;

/* The store starts uninitialised (reads as null) with version V1. */
int mmds_create(const struct mmds_params *p, struct mmds **out) MUST_CHECK;
void mmds_destroy(struct mmds *m);

/* PUT /mmds/config's version and imds_compat. */
void mmds_configure(struct mmds *m, enum mmds_version version, bool imds_compat);
enum mmds_version mmds_get_version(struct mmds *m);
bool mmds_get_imds_compat(struct mmds *m);
uint64_t mmds_now_ns(const struct mmds *m);

/* ---- the host's side (the API, --metadata) ---- */

/* Replaces the store with the JSON text. -EINVAL (msg says why) for text that is not JSON,
 * -EFBIG when its compact form is longer than the limit (the store is unchanged). */
int mmds_put(struct mmds *m, const char *json, size_t len, char *msg, size_t msg_cap) MUST_CHECK;
/* Merges the JSON text into the store (RFC 7396). -ENODATA before the first PUT
 * ("not initialized"); -EINVAL, -EFBIG as mmds_put (the store is unchanged). */
int mmds_patch(struct mmds *m, const char *json, size_t len, char *msg, size_t msg_cap) MUST_CHECK;
/* The store as compact JSON ("{}" while it is null, as Firecracker answers GET /mmds);
 * malloc'd, NUL-terminated. -ENOMEM. */
int mmds_get(struct mmds *m, char **json, size_t *len) MUST_CHECK;

/* ---- the guest's side (mmds_http.c) ---- */

enum mmds_lookup {
        MMDS_LOOKUP_OK,
        MMDS_LOOKUP_NOT_FOUND,
        MMDS_LOOKUP_UNSUPPORTED, /* IMDS text of something neither an object nor a string */
};
/* The value at a JSON pointer (one trailing '/' ignored), as JSON (json) or IMDS text;
 * imds_compat forces IMDS text. */
enum mmds_lookup mmds_lookup(struct mmds *m, const char *path, size_t len, bool json,
                             struct mmds_buf *out);
bool mmds_check_token(struct mmds *m, const char *token, size_t len);
/* -EINVAL for a ttl outside [1, 21600]. */
int mmds_new_token(struct mmds *m, uint32_t ttl_s, char out[MMDS_TOKEN_LEN + 1]) MUST_CHECK;

void mmds_count(struct mmds *m, enum mmds_counter c, uint64_t n);
/* Every counter since the creation. */
void mmds_get_counters(struct mmds *m, uint64_t out[MMDS_COUNTER_COUNT]);

#endif
