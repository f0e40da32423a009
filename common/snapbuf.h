/*
 * Serialisation for snapshots: a growable writer and a bounded, checked reader.
 *
 * Values are little-endian fixed-size integers, length-prefixed byte strings and tagged
 * sections (le32 tag, le32 zero, le64 length, then the body). The reader never trusts its
 * input: every read is bounds-checked against what is left, every count and length is
 * checked against a caller-given maximum before anything is allocated, and the first
 * failure is sticky (later reads return zeros and change nothing), so a parser can read a
 * whole structure and check once. The message names what was being read and the offset.
 *
 * Both sides are single-threaded objects owned by their caller.
 */
#ifndef COMMON_SNAPBUF_H
#define COMMON_SNAPBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SNAPBUF_TAG(a, b, c, d)                                                                    \
        ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))

/* A NULL string is written with this length. */
#define SNAPBUF_NULL_STR 0xffffffffu

struct snapbuf_writer {
        uint8_t *data;
        size_t len, cap;
        bool failed; /* out of memory: everything written since is lost */
};

void snapbuf_writer_init(struct snapbuf_writer *w);
void snapbuf_writer_free(struct snapbuf_writer *w);
void snapbuf_put_u8(struct snapbuf_writer *w, uint8_t v);
void snapbuf_put_u16(struct snapbuf_writer *w, uint16_t v);
void snapbuf_put_u32(struct snapbuf_writer *w, uint32_t v);
void snapbuf_put_u64(struct snapbuf_writer *w, uint64_t v);
void snapbuf_put_bool(struct snapbuf_writer *w, bool v);
void snapbuf_put_bytes(struct snapbuf_writer *w, const void *p, size_t n);
/* le32 length then the bytes; a NULL string as SNAPBUF_NULL_STR. */
void snapbuf_put_str(struct snapbuf_writer *w, const char *s);
/* le32 length then the bytes (a blob whose size the reader checks). */
void snapbuf_put_blob(struct snapbuf_writer *w, const void *p, uint32_t n);
/* Opens a section; returns where it starts, for snapbuf_end_section. */
size_t snapbuf_begin_section(struct snapbuf_writer *w, uint32_t tag);
void snapbuf_end_section(struct snapbuf_writer *w, size_t start);

struct snapbuf_reader {
        const uint8_t *p;
        size_t len, off;
        size_t base; /* offset of p in the whole input (messages) */
        bool failed;
        char err[160];
};

void snapbuf_reader_init(struct snapbuf_reader *r, const void *p, size_t len);
/* Records the first failure ("what at offset N: why"); returns false. */
bool snapbuf_fail(struct snapbuf_reader *r, const char *what, const char *why);
bool snapbuf_ok(const struct snapbuf_reader *r);
size_t snapbuf_left(const struct snapbuf_reader *r);
/* True when everything was read; otherwise records "what: N unexpected bytes". */
bool snapbuf_expect_end(struct snapbuf_reader *r, const char *what);

uint8_t snapbuf_get_u8(struct snapbuf_reader *r, const char *what);
uint16_t snapbuf_get_u16(struct snapbuf_reader *r, const char *what);
uint32_t snapbuf_get_u32(struct snapbuf_reader *r, const char *what);
uint64_t snapbuf_get_u64(struct snapbuf_reader *r, const char *what);
/* Only 0 and 1 are booleans. */
bool snapbuf_get_bool(struct snapbuf_reader *r, const char *what);
/* A le32 count that must be at most max. */
uint32_t snapbuf_get_count(struct snapbuf_reader *r, uint32_t max, const char *what);
/* Exactly n raw bytes (zeros on failure). */
void snapbuf_get_bytes(struct snapbuf_reader *r, void *dst, size_t n, const char *what);
/* A blob written by snapbuf_put_blob that must be exactly n bytes long. */
void snapbuf_get_blob(struct snapbuf_reader *r, void *dst, uint32_t n, const char *what);
/* A blob of at most max bytes: returns a view into the input (NULL on failure). */
const uint8_t *snapbuf_get_blob_view(struct snapbuf_reader *r, uint32_t max, uint32_t *n,
                                     const char *what);
/* A string of at most max bytes without NUL: *out is a malloc'd copy, or NULL for a NULL
 * string. Returns false on failure (bad length, embedded NUL, out of memory). */
bool snapbuf_get_str(struct snapbuf_reader *r, uint32_t max, char **out, const char *what);
/* The next section, which must carry `tag`: *sub reads its body (bounded by its length). */
bool snapbuf_get_section(struct snapbuf_reader *r, uint32_t tag, struct snapbuf_reader *sub,
                         const char *what);
/* The tag of the next section without consuming it (0 when none is left). */
uint32_t snapbuf_peek_tag(const struct snapbuf_reader *r);
/* Copies a sub-reader's failure into its parent (first failure wins). */
void snapbuf_merge(struct snapbuf_reader *parent, const struct snapbuf_reader *sub);

/* CRC-64 (ECMA-182 polynomial, reflected, as xz's CRC64). */
uint64_t snapbuf_crc64(uint64_t crc, const void *p, size_t n);

#endif
