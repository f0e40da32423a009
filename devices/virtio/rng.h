/*
 * virtio-rng (entropy): fills the driver's writable buffers from getrandom(2), optionally
 * rate limited (bytes and requests).
 */
#ifndef DEVICES_VIRTIO_RNG_H
#define DEVICES_VIRTIO_RNG_H

#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "devices/rate_limiter.h"
#include "virtio.h"

#define VIRTIO_RNG_QUEUE_SIZE  256
#define VIRTIO_RNG_MAX_REQUEST (64u << 10) /* bytes filled per request at most */

struct virtio_rng_config {
        const char *name;
        const struct rate_limiter_config *limit; /* NULL: unlimited */
        struct event_loop *loop;                 /* for the rate limiter's timer */
};

struct virtio_rng_stats {
        uint64_t requests;
        uint64_t bytes;
        uint64_t rate_limited; /* times processing stopped for the limiter */
        uint64_t bad_requests; /* malformed chains or guest memory refusals */
        uint64_t host_errors;  /* getrandom failures */
};

struct virtio_rng;

int virtio_rng_create(const struct virtio_rng_config *cfg, struct error *err,
                      struct virtio_rng **out) MUST_CHECK;
void virtio_rng_destroy(struct virtio_rng *rng);
struct virtio_device *virtio_rng_device(struct virtio_rng *rng);
void virtio_rng_get_stats(struct virtio_rng *rng, struct virtio_rng_stats *out);

#endif
