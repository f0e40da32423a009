/*
 * MMDS V2 session tokens, with Firecracker's properties: a token is the token's expiry
 * (CLOCK_MONOTONIC milliseconds) sealed with AES-256-GCM under a key drawn at random when the
 * authority is created, with the instance as additional authenticated data
 * ("microvmid=<id>"), and sent as standard base64 of nonce (12 bytes) || ciphertext (8) ||
 * tag (16): 48 characters. Nothing is stored per token, so a guest cannot exhaust anything by
 * asking for many; a token is valid until its expiry on this authority only (a new process,
 * a restored snapshot, has another key, and refuses it).
 *
 * The nonce is a random 32-bit prefix and a 64-bit counter, unique per key (Firecracker
 * draws a random nonce per token and rekeys after 2^32 tokens; a counter never repeats, so
 * no rekeying is needed, and no random numbers are drawn after creation: the threads that
 * answer the guest make no system call for it).
 */
#ifndef DEVICES_MMDS_MMDS_TOKEN_H
#define DEVICES_MMDS_MMDS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define MMDS_TOKEN_MIN_TTL_S 1
#define MMDS_TOKEN_MAX_TTL_S 21600
#define MMDS_TOKEN_LEN       48 /* characters, without a terminating NUL */
/* Longer strings are refused before any decoding (Firecracker's limit). */
#define MMDS_TOKEN_LENGTH_LIMIT 70

struct mmds_token_authority;

/* The key and the nonce prefix come from getrandom(2). */
int mmds_token_authority_create(struct mmds_token_authority **out) MUST_CHECK;
void mmds_token_authority_destroy(struct mmds_token_authority *ta);

/* The additional authenticated data: "microvmid=<instance_id>" (truncated to 80 bytes). */
void mmds_token_set_instance(struct mmds_token_authority *ta, const char *instance_id);

/* A token valid until now_ms + ttl_s * 1000, as MMDS_TOKEN_LEN characters plus a NUL in out.
 * -EINVAL when ttl_s is outside [MMDS_TOKEN_MIN_TTL_S, MMDS_TOKEN_MAX_TTL_S]. */
int mmds_token_generate(struct mmds_token_authority *ta, uint32_t ttl_s, uint64_t now_ms,
                        char out[MMDS_TOKEN_LEN + 1]) MUST_CHECK;

/* Whether token (len bytes) was made by this authority and expires after now_ms. */
bool mmds_token_valid(const struct mmds_token_authority *ta, const char *token, size_t len,
                      uint64_t now_ms);

#endif
