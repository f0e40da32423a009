#include "escape.h"

#include <stdio.h>
#include <string.h>

static bool is_control(unsigned char c)
{
        return c < 0x20 || c == 0x7f;
}

/* The escape of c (a control character) in buf; returns its length. */
static size_t escape_one(unsigned char c, char buf[5])
{
        switch (c) {
        case '\n':
                memcpy(buf, "\\n", 3);
                return 2;
        case '\r':
                memcpy(buf, "\\r", 3);
                return 2;
        case '\t':
                memcpy(buf, "\\t", 3);
                return 2;
        default:
                snprintf(buf, 5, "\\x%02x", c);
                return 4;
        }
}

size_t escape_controls(char *dst, size_t cap, const char *src)
{
        size_t n = 0; /* the whole escaped length */
        size_t w = 0; /* bytes written to dst */
        bool full = cap == 0;

        for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
                char esc[5];
                const char *piece = (const char *)p;
                size_t len = 1;

                if (is_control(*p)) {
                        len = escape_one(*p, esc);
                        piece = esc;
                }
                n += len;
                if (!full && w + len < cap) {
                        memcpy(dst + w, piece, len);
                        w += len;
                } else {
                        full = true;
                }
        }
        if (cap)
                dst[w] = '\0';
        return n;
}

bool escape_needed(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (is_control(*p))
                        return true;
        return false;
}
