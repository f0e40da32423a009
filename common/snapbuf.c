#include "snapbuf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writer ---- */

void snapbuf_writer_init(struct snapbuf_writer *w)
{
        memset(w, 0, sizeof(*w));
}

void snapbuf_writer_free(struct snapbuf_writer *w)
{
        free(w->data);
        memset(w, 0, sizeof(*w));
}

static uint8_t *reserve(struct snapbuf_writer *w, size_t n)
{
        size_t need, cap;
        uint8_t *d;

        if (w->failed)
                return NULL;
        if (__builtin_add_overflow(w->len, n, &need)) {
                w->failed = true;
                return NULL;
        }
        if (need > w->cap) {
                cap = w->cap ? w->cap : 4096;
                while (cap < need) {
                        if (__builtin_mul_overflow(cap, 2, &cap)) {
                                w->failed = true;
                                return NULL;
                        }
                }
                d = realloc(w->data, cap);
                if (!d) {
                        w->failed = true;
                        return NULL;
                }
                w->data = d;
                w->cap = cap;
        }
        d = w->data + w->len;
        w->len = need;
        return d;
}

void snapbuf_put_bytes(struct snapbuf_writer *w, const void *p, size_t n)
{
        uint8_t *d = reserve(w, n);

        if (d && n)
                memcpy(d, p, n);
}

void snapbuf_put_u8(struct snapbuf_writer *w, uint8_t v)
{
        snapbuf_put_bytes(w, &v, 1);
}

void snapbuf_put_u16(struct snapbuf_writer *w, uint16_t v)
{
        uint8_t b[2];

        put_le16(b, v);
        snapbuf_put_bytes(w, b, sizeof(b));
}

void snapbuf_put_u32(struct snapbuf_writer *w, uint32_t v)
{
        uint8_t b[4];

        put_le32(b, v);
        snapbuf_put_bytes(w, b, sizeof(b));
}

void snapbuf_put_u64(struct snapbuf_writer *w, uint64_t v)
{
        uint8_t b[8];

        put_le64(b, v);
        snapbuf_put_bytes(w, b, sizeof(b));
}

void snapbuf_put_bool(struct snapbuf_writer *w, bool v)
{
        snapbuf_put_u8(w, v ? 1 : 0);
}

void snapbuf_put_str(struct snapbuf_writer *w, const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (!s) {
                snapbuf_put_u32(w, SNAPBUF_NULL_STR);
                return;
        }
        if (n >= SNAPBUF_NULL_STR) {
                w->failed = true;
                return;
        }
        snapbuf_put_u32(w, (uint32_t)n);
        snapbuf_put_bytes(w, s, n);
}

void snapbuf_put_blob(struct snapbuf_writer *w, const void *p, uint32_t n)
{
        snapbuf_put_u32(w, n);
        snapbuf_put_bytes(w, p, n);
}

size_t snapbuf_begin_section(struct snapbuf_writer *w, uint32_t tag)
{
        size_t start = w->len;

        snapbuf_put_u32(w, tag);
        snapbuf_put_u32(w, 0);
        snapbuf_put_u64(w, 0);
        return start;
}

void snapbuf_end_section(struct snapbuf_writer *w, size_t start)
{
        if (w->failed || start + 16 > w->len)
                return;
        put_le64(w->data + start + 8, (uint64_t)(w->len - start - 16));
}

/* ---- reader ---- */

void snapbuf_reader_init(struct snapbuf_reader *r, const void *p, size_t len)
{
        memset(r, 0, sizeof(*r));
        r->p = p;
        r->len = len;
}

bool snapbuf_fail(struct snapbuf_reader *r, const char *what, const char *why)
{
        if (!r->failed) {
                r->failed = true;
                snprintf(r->err, sizeof(r->err), "%s at offset %zu: %s", what, r->base + r->off,
                         why);
        }
        return false;
}

bool snapbuf_ok(const struct snapbuf_reader *r)
{
        return !r->failed;
}

size_t snapbuf_left(const struct snapbuf_reader *r)
{
        return r->failed ? 0 : r->len - r->off;
}

bool snapbuf_expect_end(struct snapbuf_reader *r, const char *what)
{
        char why[64];

        if (r->failed)
                return false;
        if (r->off == r->len)
                return true;
        snprintf(why, sizeof(why), "%zu unexpected bytes", r->len - r->off);
        return snapbuf_fail(r, what, why);
}

/* The next n bytes, or NULL (failure recorded). */
static const uint8_t *take(struct snapbuf_reader *r, size_t n, const char *what)
{
        const uint8_t *p;

        if (r->failed)
                return NULL;
        if (n > r->len - r->off) {
                snapbuf_fail(r, what, "truncated");
                return NULL;
        }
        p = r->p + r->off;
        r->off += n;
        return p;
}

uint8_t snapbuf_get_u8(struct snapbuf_reader *r, const char *what)
{
        const uint8_t *p = take(r, 1, what);

        return p ? p[0] : 0;
}

uint16_t snapbuf_get_u16(struct snapbuf_reader *r, const char *what)
{
        const uint8_t *p = take(r, 2, what);

        return p ? get_le16(p) : 0;
}

uint32_t snapbuf_get_u32(struct snapbuf_reader *r, const char *what)
{
        const uint8_t *p = take(r, 4, what);

        return p ? get_le32(p) : 0;
}

uint64_t snapbuf_get_u64(struct snapbuf_reader *r, const char *what)
{
        const uint8_t *p = take(r, 8, what);

        return p ? get_le64(p) : 0;
}

bool snapbuf_get_bool(struct snapbuf_reader *r, const char *what)
{
        uint8_t v = snapbuf_get_u8(r, what);

        if (v > 1) {
                snapbuf_fail(r, what, "not a boolean");
                return false;
        }
        return v == 1;
}

uint32_t snapbuf_get_count(struct snapbuf_reader *r, uint32_t max, const char *what)
{
        uint32_t v = snapbuf_get_u32(r, what);
        char why[64];

        if (!r->failed && v > max) {
                snprintf(why, sizeof(why), "%u is more than the limit of %u", v, max);
                snapbuf_fail(r, what, why);
                return 0;
        }
        return r->failed ? 0 : v;
}

void snapbuf_get_bytes(struct snapbuf_reader *r, void *dst, size_t n, const char *what)
{
        const uint8_t *p = take(r, n, what);

        if (p)
                memcpy(dst, p, n);
        else
                memset(dst, 0, n);
}

void snapbuf_get_blob(struct snapbuf_reader *r, void *dst, uint32_t n, const char *what)
{
        uint32_t len = snapbuf_get_u32(r, what);
        char why[64];

        if (!r->failed && len != n) {
                snprintf(why, sizeof(why), "%u bytes where %u were expected", len, n);
                snapbuf_fail(r, what, why);
        }
        snapbuf_get_bytes(r, dst, r->failed ? 0 : n, what);
        if (r->failed)
                memset(dst, 0, n);
}

const uint8_t *snapbuf_get_blob_view(struct snapbuf_reader *r, uint32_t max, uint32_t *n,
                                     const char *what)
{
        uint32_t len = snapbuf_get_count(r, max, what);
        const uint8_t *p = take(r, len, what);

        *n = p ? len : 0;
        return p;
}

bool snapbuf_get_str(struct snapbuf_reader *r, uint32_t max, char **out, const char *what)
{
        uint32_t len = snapbuf_get_u32(r, what);
        const uint8_t *p;
        char why[64];

        *out = NULL;
        if (r->failed)
                return false;
        if (len == SNAPBUF_NULL_STR)
                return true;
        if (len > max) {
                snprintf(why, sizeof(why), "a string of %u bytes (at most %u)", len, max);
                return snapbuf_fail(r, what, why);
        }
        p = take(r, len, what);
        if (!p)
                return false;
        if (memchr(p, '\0', len))
                return snapbuf_fail(r, what, "a string with a NUL byte");
        *out = malloc((size_t)len + 1);
        if (!*out)
                return snapbuf_fail(r, what, "out of memory");
        memcpy(*out, p, len);
        (*out)[len] = '\0';
        return true;
}

bool snapbuf_get_section(struct snapbuf_reader *r, uint32_t tag, struct snapbuf_reader *sub,
                         const char *what)
{
        uint32_t t = snapbuf_get_u32(r, what);
        uint32_t zero = snapbuf_get_u32(r, what);
        uint64_t len = snapbuf_get_u64(r, what);
        const uint8_t *p;
        char why[96];

        snapbuf_reader_init(sub, NULL, 0);
        if (r->failed)
                return false;
        if (t != tag) {
                snprintf(why, sizeof(why), "section tag 0x%08x where 0x%08x was expected", t, tag);
                return snapbuf_fail(r, what, why);
        }
        if (zero != 0)
                return snapbuf_fail(r, what, "reserved section field is not zero");
        if (len > r->len - r->off)
                return snapbuf_fail(r, what, "section longer than the file");
        p = take(r, (size_t)len, what);
        snapbuf_reader_init(sub, p, (size_t)len);
        sub->base = r->base + r->off - (size_t)len;
        return p != NULL || len == 0;
}

uint32_t snapbuf_peek_tag(const struct snapbuf_reader *r)
{
        if (r->failed || r->len - r->off < 4)
                return 0;
        return get_le32(r->p + r->off);
}

void snapbuf_merge(struct snapbuf_reader *parent, const struct snapbuf_reader *sub)
{
        if (sub->failed && !parent->failed) {
                parent->failed = true;
                memcpy(parent->err, sub->err, sizeof(parent->err));
        }
}

/* ---- CRC-64/XZ ---- */

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
        for (unsigned i = 0; i < 256; i++) {
                uint64_t v = i;
                for (int k = 0; k < 8; k++)
                        v = (v >> 1) ^ ((v & 1) ? 0xc96c5795d7870f42ull : 0);
                crc_table[i] = v;
        }
}

uint64_t snapbuf_crc64(uint64_t crc, const void *p, size_t n)
{
        const uint8_t *b = p;

        pthread_once(&crc_once, crc_init);
        crc = ~crc;
        for (size_t i = 0; i < n; i++)
                crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
}
