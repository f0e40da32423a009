/*
 * Firecracker-style rate limiter: two token buckets, bandwidth (bytes) and operations.
 * Each bucket has a size, a one-time burst credit that is not refilled, and a refill time
 * in which a full bucket's worth of tokens comes back (proportionally, continuously).
 * A bucket of size 0 does not limit.
 *
 * A device asks before doing work; when refused it stops processing and waits for the
 * limiter's timerfd (registered in the event loop), which fires when enough tokens should
 * be back. A single request larger than the bucket is admitted when the bucket is full and
 * leaves it in debt, so oversized requests are slowed down, never starved.
 */
#ifndef DEVICES_RATE_LIMITER_H
#define DEVICES_RATE_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

struct token_bucket_config {
        uint64_t size;
        uint64_t one_time_burst;
        uint64_t refill_time_ms;
};

struct rate_limiter_config {
        struct token_bucket_config bandwidth;
        struct token_bucket_config ops;
};

struct rate_limiter;

/* The clock is CLOCK_MONOTONIC in ns; tests may pass their own (NULL: the real one). */
typedef uint64_t (*rate_limiter_clock)(void *opaque);

int rate_limiter_create(const struct rate_limiter_config *cfg, rate_limiter_clock clock,
                        void *clock_opaque, struct rate_limiter **out) MUST_CHECK;
void rate_limiter_destroy(struct rate_limiter *rl);

/* True when neither bucket limits (nothing to wait for, no timer needed). */
bool rate_limiter_unlimited(const struct rate_limiter *rl);

/* Takes `bytes` and `ops` tokens if both buckets can give them, else takes nothing, arms
 * the timer and returns false. */
bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);

/* Takes the tokens if both buckets can give them now; otherwise takes nothing and returns
 * false without arming the timer: for callers that drop what is over the limit instead of
 * waiting (the serial console's output). */
bool rate_limiter_try_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);

/* Gives back tokens for work that was admitted but not done. */
void rate_limiter_refund(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);

/* True while a refusal is waiting for its timer. */
bool rate_limiter_blocked(const struct rate_limiter *rl);

/* The timerfd to poll (EPOLLIN). */
int rate_limiter_fd(const struct rate_limiter *rl);
/* Drains the timerfd after it fired and clears the blocked state. */
void rate_limiter_timer_fired(struct rate_limiter *rl);

/* Replaces the buckets' parameters (API PATCH); a bucket restarts full. */
void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *cfg);

#endif
