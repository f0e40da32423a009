/* Small helpers shared by every module: overflow-safe arithmetic and sizes. */
#ifndef COMMON_UTIL_H
#define COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB(x)        ((uint64_t)(x) << 10)
#define MiB(x)        ((uint64_t)(x) << 20)
#define GiB(x)        ((uint64_t)(x) << 30)

#define MUST_CHECK __attribute__((warn_unused_result))

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
        return v & ~(a - 1);
}

/* Rounds up; returns false instead of wrapping past 2^64. */
static inline bool align_up_checked(uint64_t v, uint64_t a, uint64_t *out)
{
        uint64_t r;
        if (__builtin_add_overflow(v, a - 1, &r))
                return false;
        *out = r & ~(a - 1);
        return true;
}

static inline bool is_aligned(uint64_t v, uint64_t a)
{
        return (v & (a - 1)) == 0;
}

/* True when [base, base+len) is a non-wrapping range; stores the end. */
static inline bool range_end(uint64_t base, uint64_t len, uint64_t *end)
{
        return !__builtin_add_overflow(base, len, end);
}

/* True when [a, a+alen) and [b, b+blen) overlap (both assumed non-wrapping). */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
        return alen && blen && a < b + blen && b < a + alen;
}

static inline uint16_t get_le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
               ((uint32_t)p[3] << 24);
}

static inline uint64_t get_le64(const uint8_t *p)
{
        return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
        put_le16(p, (uint16_t)v);
        put_le16(p + 2, (uint16_t)(v >> 16));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
        put_le32(p, (uint32_t)v);
        put_le32(p + 4, (uint32_t)(v >> 32));
}

/* The n bytes at p as a NUL-terminated copy (malloc; NULL when out of memory). Not
 * strndup: the bytes are length-counted (a request body, JSON text) with nothing saying a NUL
 * follows them, and strndup may look for one past them. */
static inline char *text_dup(const void *p, size_t n)
{
        char *d = malloc(n + 1);

        if (d) {
                memcpy(d, p, n);
                d[n] = '\0';
        }
        return d;
}

#endif
