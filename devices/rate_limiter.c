#include "rate_limiter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

struct bucket {
        struct token_bucket_config cfg;
        int64_t budget; /* may go negative after an oversized request */
        uint64_t burst; /* one-time credit left */
        uint64_t last_ns;
};

struct rate_limiter {
        struct bucket bw, ops;
        rate_limiter_clock clock;
        void *clock_opaque;
        int timer_fd;
        bool blocked;
};

static uint64_t real_clock(void *opaque)
{
        (void)opaque;
        return clock_ns(CLOCK_MONOTONIC);
}

static bool bucket_limits(const struct bucket *b)
{
        return b->cfg.size != 0 && b->cfg.refill_time_ms != 0;
}

static void bucket_init(struct bucket *b, const struct token_bucket_config *cfg, uint64_t now)
{
        b->cfg = *cfg;
        b->budget = cfg->size > INT64_MAX ? INT64_MAX : (int64_t)cfg->size;
        b->burst = cfg->one_time_burst;
        b->last_ns = now;
}

static void refill(struct bucket *b, uint64_t now)
{
        uint64_t elapsed = now - b->last_ns;
        uint64_t period_ns = b->cfg.refill_time_ms * 1000000ull;
        unsigned __int128 add;

        if (!bucket_limits(b) || elapsed == 0)
                return;
        /* size tokens per refill period, in proportion (128-bit: no overflow). */
        add = (unsigned __int128)elapsed * b->cfg.size / period_ns;
        if (add == 0)
                return; /* keep last_ns so fractions accumulate */
        b->last_ns = now;
        __int128 budget = (__int128)b->budget + (__int128)add;
        b->budget = budget > (__int128)b->cfg.size ? (int64_t)b->cfg.size : (int64_t)budget;
}

/* Whether n tokens can be taken now; does not take them. */
static bool bucket_can(const struct bucket *b, uint64_t n)
{
        if (!bucket_limits(b) || n == 0)
                return true;
        if (b->burst >= n)
                return true;
        /* Oversized: admitted only from a full bucket. */
        if (n > b->cfg.size)
                return b->budget >= (int64_t)b->cfg.size;
        return b->budget + (int64_t)b->burst >= (int64_t)n;
}

static void bucket_take(struct bucket *b, uint64_t n)
{
        uint64_t from_burst;

        if (!bucket_limits(b) || n == 0)
                return;
        from_burst = b->burst < n ? b->burst : n;
        b->burst -= from_burst;
        b->budget -= (int64_t)(n - from_burst);
}

/* Nanoseconds until the bucket holds n tokens (capped at a full bucket). */
static uint64_t bucket_wait_ns(const struct bucket *b, uint64_t n)
{
        uint64_t want = n > b->cfg.size ? b->cfg.size : n;
        int64_t missing = (int64_t)want - b->budget - (int64_t)b->burst;
        uint64_t period_ns = b->cfg.refill_time_ms * 1000000ull;

        if (!bucket_limits(b) || missing <= 0)
                return 0;
        return (uint64_t)(((unsigned __int128)missing * period_ns + b->cfg.size - 1) / b->cfg.size);
}

int rate_limiter_create(const struct rate_limiter_config *cfg, rate_limiter_clock clock,
                        void *clock_opaque, struct rate_limiter **out)
{
        struct rate_limiter *rl = calloc(1, sizeof(*rl));

        if (!rl)
                return -ENOMEM;
        rl->clock = clock ? clock : real_clock;
        rl->clock_opaque = clock_opaque;
        rl->timer_fd = -1;
        rate_limiter_update(rl, cfg);
        /* Always present, so an unlimited limiter can become limited (API PATCH) without
         * its device registering a new descriptor. */
        rl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (rl->timer_fd < 0) {
                int r = -errno;
                free(rl);
                return r;
        }
        *out = rl;
        return 0;
}

void rate_limiter_destroy(struct rate_limiter *rl)
{
        if (!rl)
                return;
        if (rl->timer_fd >= 0)
                close(rl->timer_fd);
        free(rl);
}

bool rate_limiter_unlimited(const struct rate_limiter *rl)
{
        return !bucket_limits(&rl->bw) && !bucket_limits(&rl->ops);
}

static void arm(struct rate_limiter *rl, uint64_t ns)
{
        struct itimerspec its = {0};

        if (ns < 100000)
                ns = 100000; /* at most 10 000 wakeups per second */
        its.it_value.tv_sec = (time_t)(ns / 1000000000ull);
        its.it_value.tv_nsec = (long)(ns % 1000000000ull);
        rl->blocked = true;
        if (rl->timer_fd >= 0)
                timerfd_settime(rl->timer_fd, 0, &its, NULL);
}

bool rate_limiter_try_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
        uint64_t now;

        if (rate_limiter_unlimited(rl))
                return true;
        now = rl->clock(rl->clock_opaque);
        refill(&rl->bw, now);
        refill(&rl->ops, now);
        if (!bucket_can(&rl->bw, bytes) || !bucket_can(&rl->ops, ops))
                return false;
        bucket_take(&rl->bw, bytes);
        bucket_take(&rl->ops, ops);
        return true;
}

bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
        uint64_t wait_bw, wait_ops;

        if (rate_limiter_unlimited(rl))
                return true;
        if (rl->blocked)
                return false;
        if (rate_limiter_try_consume(rl, bytes, ops))
                return true;
        wait_bw = bucket_can(&rl->bw, bytes) ? 0 : bucket_wait_ns(&rl->bw, bytes);
        wait_ops = bucket_can(&rl->ops, ops) ? 0 : bucket_wait_ns(&rl->ops, ops);
        arm(rl, wait_bw > wait_ops ? wait_bw : wait_ops);
        return false;
}

void rate_limiter_refund(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
        if (bucket_limits(&rl->bw))
                rl->bw.budget = rl->bw.budget + (int64_t)bytes > (int64_t)rl->bw.cfg.size
                                    ? (int64_t)rl->bw.cfg.size
                                    : rl->bw.budget + (int64_t)bytes;
        if (bucket_limits(&rl->ops))
                rl->ops.budget = rl->ops.budget + (int64_t)ops > (int64_t)rl->ops.cfg.size
                                     ? (int64_t)rl->ops.cfg.size
                                     : rl->ops.budget + (int64_t)ops;
}

bool rate_limiter_blocked(const struct rate_limiter *rl)
{
        return rl->blocked;
}

int rate_limiter_fd(const struct rate_limiter *rl)
{
        return rl->timer_fd;
}

void rate_limiter_timer_fired(struct rate_limiter *rl)
{
        uint64_t expirations;

        if (rl->timer_fd >= 0 && read(rl->timer_fd, &expirations, sizeof(expirations)) < 0) {
                /* EAGAIN: a spurious wakeup; the state below is still right to reset. */
        }
        rl->blocked = false;
}

void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *cfg)
{
        uint64_t now = rl->clock(rl->clock_opaque);

        bucket_init(&rl->bw, &cfg->bandwidth, now);
        bucket_init(&rl->ops, &cfg->ops, now);
        rl->blocked = false;
}
