#include "str.h"

/* `rep movsb` / `rep stosb`: one instruction for the whole copy, which matters when every
 * guest instruction is emulated (docs/platform-notes.md); a byte loop costs four per byte. */
void *memcpy(void *dst, const void *src, size_t n)
{
        void *d = dst;

        __asm__ __volatile__("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
        return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
        unsigned char *d = dst;
        const unsigned char *s = src;

        if (d <= s || d >= s + n)
                return memcpy(dst, src, n);
        /* Overlapping with dst above src: copy backwards (direction flag set only here). */
        d += n - 1;
        s += n - 1;
        __asm__ __volatile__("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        return dst;
}

void *memset(void *dst, int c, size_t n)
{
        void *d = dst;

        __asm__ __volatile__("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
        return dst;
}

/* Must stay a loop: the build passes -fno-tree-loop-distribute-patterns so GCC does not
 * turn loops like this back into calls to the function itself. */
int memcmp(const void *a, const void *b, size_t n)
{
        const unsigned char *x = a, *y = b;

        for (size_t i = 0; i < n; i++)
                if (x[i] != y[i])
                        return x[i] < y[i] ? -1 : 1;
        return 0;
}

size_t str_len(const char *s)
{
        size_t n = 0;

        while (s[n])
                n++;
        return n;
}

size_t str_nlen(const char *s, size_t max)
{
        size_t n = 0;

        while (n < max && s[n])
                n++;
        return n;
}

bool str_eq(const char *a, const char *b)
{
        while (*a && *a == *b) {
                a++;
                b++;
        }
        return *a == *b;
}

static int digit_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return 99;
}

bool str_parse_u64(const char *s, size_t len, unsigned base, uint64_t *out)
{
        uint64_t v = 0;

        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                int d = digit_value(s[i]);

                if (d >= (int)base || v > (UINT64_MAX - (uint64_t)d) / base)
                        return false;
                v = v * base + (uint64_t)d;
        }
        *out = v;
        return true;
}
