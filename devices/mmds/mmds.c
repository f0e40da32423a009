#include "mmds.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

struct mmds {
        pthread_mutex_t lock;
        struct mmds_json *store; /* never NULL: null until the first PUT */
        bool initialized;        /* a PUT happened (PATCH needs one) */
        size_t size_limit;
        enum mmds_version version;
        bool imds_compat;
        struct mmds_token_authority *tokens;
        mmds_clock_fn clock;
        void *clock_opaque;
        atomic_uint_fast64_t counters[MMDS_COUNTER_COUNT];
};

static const char *const counter_names[MMDS_COUNTER_COUNT] = {
    [MMDS_RX_ACCEPTED] = "rx_accepted",
    [MMDS_RX_ACCEPTED_ERR] = "rx_accepted_err",
    [MMDS_RX_ACCEPTED_UNUSUAL] = "rx_accepted_unusual",
    [MMDS_RX_BAD_ETH] = "rx_bad_eth",
    [MMDS_RX_INVALID_TOKEN] = "rx_invalid_token",
    [MMDS_RX_NO_TOKEN] = "rx_no_token",
    [MMDS_RX_COUNT] = "rx_count",
    [MMDS_TX_BYTES] = "tx_bytes",
    [MMDS_TX_COUNT] = "tx_count",
    [MMDS_TX_ERRORS] = "tx_errors",
    [MMDS_TX_FRAMES] = "tx_frames",
    [MMDS_CONNECTIONS_CREATED] = "connections_created",
    [MMDS_CONNECTIONS_DESTROYED] = "connections_destroyed",
};

const char *mmds_counter_name(enum mmds_counter c)
{
        return (unsigned)c < MMDS_COUNTER_COUNT ? counter_names[c] : "?";
}

static uint64_t monotonic(void *opaque)
{
        (void)opaque;
        return clock_ns(CLOCK_MONOTONIC);
}

int mmds_create(const struct mmds_params *p, struct mmds **out)
{
        struct mmds *m = calloc(1, sizeof(*m));
        int r;

        if (!m)
                return -ENOMEM;
        m->store = mmds_json_null();
        if (!m->store) {
                free(m);
                return -ENOMEM;
        }
        r = mmds_token_authority_create(&m->tokens);
        if (r) {
                mmds_json_free(m->store);
                free(m);
                return r;
        }
        mmds_token_set_instance(m->tokens, p->instance_id ? p->instance_id : "");
        pthread_mutex_init(&m->lock, NULL);
        m->size_limit = p->size_limit ? p->size_limit : MMDS_DEFAULT_SIZE_LIMIT;
        m->clock = p->clock ? p->clock : monotonic;
        m->clock_opaque = p->clock_opaque;
        for (unsigned i = 0; i < MMDS_COUNTER_COUNT; i++)
                atomic_init(&m->counters[i], 0);
        *out = m;
        return 0;
}

void mmds_destroy(struct mmds *m)
{
        if (!m)
                return;
        mmds_json_free(m->store);
        mmds_token_authority_destroy(m->tokens);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

void mmds_configure(struct mmds *m, enum mmds_version version, bool imds_compat)
{
        pthread_mutex_lock(&m->lock);
        m->version = version;
        m->imds_compat = imds_compat;
        pthread_mutex_unlock(&m->lock);
}

enum mmds_version mmds_get_version(struct mmds *m)
{
        enum mmds_version v;

        pthread_mutex_lock(&m->lock);
        v = m->version;
        pthread_mutex_unlock(&m->lock);
        return v;
}

bool mmds_get_imds_compat(struct mmds *m)
{
        bool v;

        pthread_mutex_lock(&m->lock);
        v = m->imds_compat;
        pthread_mutex_unlock(&m->lock);
        return v;
}

uint64_t mmds_now_ns(const struct mmds *m)
{
        return m->clock(m->clock_opaque);
}

/* ---- the host's side ---- */

int mmds_put(struct mmds *m, const char *json, size_t len, char *msg, size_t msg_cap)
{
        struct mmds_json *v;
        int r = mmds_json_parse(json, len, &v, msg, msg_cap);

        if (r)
                return r;
        if (mmds_json_printed_len(v) > m->size_limit) {
                mmds_json_free(v);
                return -EFBIG;
        }
        pthread_mutex_lock(&m->lock);
        mmds_json_free(m->store);
        m->store = v;
        m->initialized = true;
        pthread_mutex_unlock(&m->lock);
        return 0;
}

int mmds_patch(struct mmds *m, const char *json, size_t len, char *msg, size_t msg_cap)
{
        struct mmds_json *patch, *next;
        int r = mmds_json_parse(json, len, &patch, msg, msg_cap);

        if (r)
                return r;
        pthread_mutex_lock(&m->lock);
        if (!m->initialized) {
                r = -ENODATA;
                goto out;
        }
        /* On a copy: a patch that does not fit leaves the store as it was. */
        next = mmds_json_copy(m->store);
        if (!next) {
                r = -ENOMEM;
                goto out;
        }
        r = mmds_json_merge_patch(&next, patch);
        patch = NULL;
        if (!r && mmds_json_printed_len(next) > m->size_limit)
                r = -EFBIG;
        if (r) {
                mmds_json_free(next);
        } else {
                mmds_json_free(m->store);
                m->store = next;
        }
out:
        pthread_mutex_unlock(&m->lock);
        mmds_json_free(patch);
        return r;
}

int mmds_get(struct mmds *m, char **json, size_t *len)
{
        struct mmds_buf b = {0};

        pthread_mutex_lock(&m->lock);
        if (mmds_json_type(m->store) == MMDS_JSON_NULL)
                mmds_buf_append(&b, "{}", 2);
        else
                mmds_json_print(m->store, &b);
        pthread_mutex_unlock(&m->lock);
        mmds_buf_append(&b, "", 1);
        if (b.failed) {
                mmds_buf_free(&b);
                return -ENOMEM;
        }
        *json = b.data;
        *len = b.len - 1;
        return 0;
}

/* ---- the guest's side ---- */

enum mmds_lookup mmds_lookup(struct mmds *m, const char *path, size_t len, bool json,
                             struct mmds_buf *out)
{
        const struct mmds_json *v;
        enum mmds_lookup r = MMDS_LOOKUP_OK;

        /* A trailing '/' names the same value ("latest/meta-data/" is "latest/meta-data"). */
        if (len && path[len - 1] == '/')
                len--;
        pthread_mutex_lock(&m->lock);
        v = mmds_json_pointer(m->store, path, len);
        if (!v)
                r = MMDS_LOOKUP_NOT_FOUND;
        else if (json && !m->imds_compat)
                mmds_json_print(v, out);
        else if (!mmds_json_print_imds(v, out))
                r = MMDS_LOOKUP_UNSUPPORTED;
        pthread_mutex_unlock(&m->lock);
        return r;
}

static uint64_t now_ms(const struct mmds *m)
{
        return mmds_now_ns(m) / 1000000;
}

bool mmds_check_token(struct mmds *m, const char *token, size_t len)
{
        bool ok;

        if (len > MMDS_TOKEN_LENGTH_LIMIT)
                return false;
        pthread_mutex_lock(&m->lock);
        ok = mmds_token_valid(m->tokens, token, len, now_ms(m));
        pthread_mutex_unlock(&m->lock);
        return ok;
}

int mmds_new_token(struct mmds *m, uint32_t ttl_s, char out[MMDS_TOKEN_LEN + 1])
{
        int r;

        pthread_mutex_lock(&m->lock);
        r = mmds_token_generate(m->tokens, ttl_s, now_ms(m), out);
        pthread_mutex_unlock(&m->lock);
        return r;
}

void mmds_count(struct mmds *m, enum mmds_counter c, uint64_t n)
{
        if ((unsigned)c < MMDS_COUNTER_COUNT)
                atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

void mmds_get_counters(struct mmds *m, uint64_t out[MMDS_COUNTER_COUNT])
{
        for (unsigned i = 0; i < MMDS_COUNTER_COUNT; i++)
                out[i] = atomic_load_explicit(&m->counters[i], memory_order_relaxed);
}
