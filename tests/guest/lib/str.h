/*
 * Memory and string helpers (no libc here). memcpy/memset/memmove/memcmp keep their standard
 * names because the compiler emits calls to them for struct copies and zeroing.
 */
#ifndef PROBE_STR_H
#define PROBE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

size_t str_len(const char *s);
/* Length of s, but at most max: a string without a NUL in its first max bytes returns max. */
size_t str_nlen(const char *s, size_t max);
bool str_eq(const char *a, const char *b);

/* Parse all of s[0..len) as an unsigned number in base 10 or 16 (no prefix, no sign).
 * False on an empty string, a stray character or overflow. */
bool str_parse_u64(const char *s, size_t len, unsigned base, uint64_t *out);

/* Little-endian loads from possibly unaligned addresses (ACPI tables pack 64-bit fields at
 * 4-byte offsets). __builtin_memcpy, because -ffreestanding would otherwise make each load a
 * call to the byte loop in str.c; this way it is one mov. */
static inline uint16_t load_le16(const void *p)
{
        uint16_t v;
        __builtin_memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint32_t load_le32(const void *p)
{
        uint32_t v;
        __builtin_memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint64_t load_le64(const void *p)
{
        uint64_t v;
        __builtin_memcpy(&v, p, sizeof(v));
        return v;
}

#endif
