#include "mmds_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/base64.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>

#define NONCE_LEN   12
#define PAYLOAD_LEN 8
#define TAG_LEN     16
#define RAW_LEN     (NONCE_LEN + PAYLOAD_LEN + TAG_LEN)
#define AAD_MAX     96

_Static_assert(RAW_LEN / 3 * 4 == MMDS_TOKEN_LEN, "36 bytes are 48 base64 characters");

struct mmds_token_authority {
        struct gcm_aes256_ctx key; /* the expanded key; set_iv copies per use */
        uint8_t nonce_prefix[4];
        uint64_t counter;
        char aad[AAD_MAX];
        size_t aad_len;
};

static int fill_random(void *p, size_t n)
{
        uint8_t *b = p;

        while (n) {
                ssize_t r = getrandom(b, n, 0);

                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                b += r;
                n -= (size_t)r;
        }
        return 0;
}

int mmds_token_authority_create(struct mmds_token_authority **out)
{
        struct mmds_token_authority *ta = calloc(1, sizeof(*ta));
        uint8_t key[32];
        int r;

        if (!ta)
                return -ENOMEM;
        r = fill_random(key, sizeof(key));
        if (!r)
                r = fill_random(ta->nonce_prefix, sizeof(ta->nonce_prefix));
        if (r) {
                free(ta);
                return r;
        }
        gcm_aes256_set_key(&ta->key, key);
        memset(key, 0, sizeof(key));
        mmds_token_set_instance(ta, "");
        *out = ta;
        return 0;
}

void mmds_token_authority_destroy(struct mmds_token_authority *ta)
{
        if (!ta)
                return;
        memset(ta, 0, sizeof(*ta));
        free(ta);
}

void mmds_token_set_instance(struct mmds_token_authority *ta, const char *instance_id)
{
        int n = snprintf(ta->aad, sizeof(ta->aad), "microvmid=%s", instance_id);

        ta->aad_len = n < 0 ? 0 : (size_t)n < sizeof(ta->aad) ? (size_t)n : sizeof(ta->aad) - 1;
}

int mmds_token_generate(struct mmds_token_authority *ta, uint32_t ttl_s, uint64_t now_ms,
                        char out[MMDS_TOKEN_LEN + 1])
{
        struct gcm_aes256_ctx ctx = ta->key;
        uint8_t raw[RAW_LEN], plain[PAYLOAD_LEN];

        if (ttl_s < MMDS_TOKEN_MIN_TTL_S || ttl_s > MMDS_TOKEN_MAX_TTL_S)
                return -EINVAL;
        memcpy(raw, ta->nonce_prefix, 4);
        put_le64(raw + 4, ta->counter++);
        put_le64(plain, now_ms + (uint64_t)ttl_s * 1000);
        gcm_aes256_set_iv(&ctx, NONCE_LEN, raw);
        gcm_aes256_update(&ctx, ta->aad_len, (const uint8_t *)ta->aad);
        gcm_aes256_encrypt(&ctx, PAYLOAD_LEN, raw + NONCE_LEN, plain);
        gcm_aes256_digest(&ctx, TAG_LEN, raw + NONCE_LEN + PAYLOAD_LEN);
        base64_encode_raw(out, RAW_LEN, raw);
        out[MMDS_TOKEN_LEN] = '\0';
        return 0;
}

static bool base64_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/';
}

bool mmds_token_valid(const struct mmds_token_authority *ta, const char *token, size_t len,
                      uint64_t now_ms)
{
        struct gcm_aes256_ctx ctx = ta->key;
        struct base64_decode_ctx b64;
        uint8_t raw[RAW_LEN + 3], plain[PAYLOAD_LEN], tag[TAG_LEN];
        size_t n = sizeof(raw);

        /* Exactly the encoding mmds_token_generate writes: 48 alphabet characters. */
        if (len != MMDS_TOKEN_LEN)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!base64_char(token[i]))
                        return false;
        base64_decode_init(&b64);
        if (!base64_decode_update(&b64, &n, raw, len, token) || !base64_decode_final(&b64) ||
            n != RAW_LEN)
                return false;
        gcm_aes256_set_iv(&ctx, NONCE_LEN, raw);
        gcm_aes256_update(&ctx, ta->aad_len, (const uint8_t *)ta->aad);
        gcm_aes256_decrypt(&ctx, PAYLOAD_LEN, plain, raw + NONCE_LEN);
        gcm_aes256_digest(&ctx, TAG_LEN, tag);
        if (!memeql_sec(tag, raw + NONCE_LEN + PAYLOAD_LEN, TAG_LEN))
                return false;
        return get_le64(plain) > now_ms;
}
