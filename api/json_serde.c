#include "json_serde.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* serde_json's limit on nested arrays and objects. */
#define JSON_MAX_DEPTH 128
/* A struct's fields are tracked in a bitmap. */
#define JSON_MAX_FIELDS 32

/* A parse result besides 0 and a negative errno: an error whose message is in err but whose
 * position is not known yet. serde raises these inside a visitor (missing, unknown or
 * duplicate field, a custom Deserialize's refusal); serde_json positions them where the
 * enclosing object or array has been closed (see deferred_position). */
#define DEFERRED 1

struct parser {
        const unsigned char *s;
        size_t len;
        size_t i;       /* bytes consumed */
        int depth_left; /* serde_json's remaining_depth */
        struct error *err;
        /* Where the parser is ("drives[1].rate_limiter"), and where the first error was. */
        char path[128];
        size_t path_len;
        char *where;
        size_t where_cap;
};

/* The path grows as fields and elements are entered; a mark restores it. */
static size_t path_push(struct parser *p, const char *fmt, const char *name, unsigned index)
{
        size_t mark = p->path_len;
        int n;

        if (name)
                n = snprintf(p->path + mark, sizeof(p->path) - mark, "%s%s", mark ? "." : "", name);
        else
                n = snprintf(p->path + mark, sizeof(p->path) - mark, fmt, index);
        if (n > 0)
                p->path_len =
                    mark + (size_t)n < sizeof(p->path) ? mark + (size_t)n : sizeof(p->path) - 1;
        return mark;
}

static void path_pop(struct parser *p, size_t mark)
{
        p->path_len = mark;
        p->path[mark] = '\0';
}

/* The first error keeps the path it happened at. */
static void note_where(struct parser *p)
{
        if (p->where && p->where_cap && !p->where[0])
                snprintf(p->where, p->where_cap, "%s", p->path);
}

/* ---- messages ---- */

/* serde_json's Position: 1-based line, column = bytes since the line's start. */
static void position_of(const struct parser *p, size_t at, size_t *line, size_t *column)
{
        size_t start = 0;

        *line = 1;
        for (size_t k = 0; k < at; k++) {
                if (p->s[k] == '\n') {
                        (*line)++;
                        start = k + 1;
                }
        }
        *column = at - start;
}

static int fail_at(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct parser *p, size_t at, const char *fmt, ...)
{
        char msg[sizeof(p->err->msg)];
        size_t line, column;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        note_where(p);
        position_of(p, at, &line, &column);
        return error_config(p->err, "%s at line %zu column %zu", msg, line, column);
}

/* serde_json's error(): at what has been consumed. */
#define fail_here(p, ...) fail_at((p), (p)->i, __VA_ARGS__)
/* serde_json's peek_error(): one byte further (the byte that was looked at). */
#define fail_peek(p, ...) fail_at((p), (p)->i + 1 < (p)->len ? (p)->i + 1 : (p)->len, __VA_ARGS__)

static int deferred(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int deferred(struct parser *p, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        error_setv(p->err, -EINVAL, fmt, ap);
        va_end(ap);
        p->err->kind = ERROR_CONFIG;
        note_where(p);
        return DEFERRED;
}

/* Positions a deferred error where serde_json does: after the enclosing container's end
 * (end_map: whitespace, then a '}' is consumed; end_seq: whitespace, then a ']', or a ','
 * and the whitespace after it). */
static int deferred_position(struct parser *p, char close)
{
        char msg[sizeof(p->err->msg)];
        size_t j = p->i, line, column;

        while (j < p->len &&
               (p->s[j] == ' ' || p->s[j] == '\n' || p->s[j] == '\t' || p->s[j] == '\r'))
                j++;
        if (j < p->len && p->s[j] == (unsigned char)close) {
                j++;
        } else if (close == ']' && j < p->len && p->s[j] == ',') {
                j++;
                while (j < p->len &&
                       (p->s[j] == ' ' || p->s[j] == '\n' || p->s[j] == '\t' || p->s[j] == '\r'))
                        j++;
        }
        snprintf(msg, sizeof(msg), "%s", p->err->msg);
        position_of(p, j, &line, &column);
        error_clear(p->err);
        return error_config(p->err, "%s at line %zu column %zu", msg, line, column);
}

static int no_memory(struct parser *p)
{
        return error_set(p->err, -ENOMEM, "out of memory");
}

void json_serde_debug_str(const char *s, char *buf, size_t cap)
{
        size_t n = 0;

        if (!cap)
                return;
#define PUT(...)                                                                                   \
        do {                                                                                       \
                int w_ = snprintf(buf + n, cap - n, __VA_ARGS__);                                  \
                if (w_ < 0 || (size_t)w_ >= cap - n) {                                             \
                        buf[n] = '\0';                                                             \
                        return;                                                                    \
                }                                                                                  \
                n += (size_t)w_;                                                                   \
        } while (0)
        PUT("\"");
        for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
                switch (*c) {
                case '"':
                        PUT("\\\"");
                        break;
                case '\\':
                        PUT("\\\\");
                        break;
                case '\n':
                        PUT("\\n");
                        break;
                case '\r':
                        PUT("\\r");
                        break;
                case '\t':
                        PUT("\\t");
                        break;
                default:
                        if (*c < 0x20 || *c == 0x7f)
                                PUT("\\u{%x}", *c);
                        else
                                PUT("%c", *c);
                }
        }
        PUT("\"");
#undef PUT
}

void json_serde_format_f64(double v, char *buf, size_t cap)
{
        char sci[40], digits[24];
        int prec, exp10, nd = 0;
        const char *m;
        char *e;
        bool neg;

        if (isnan(v)) {
                snprintf(buf, cap, "NaN");
                return;
        }
        if (isinf(v)) {
                snprintf(buf, cap, "%sinf", v < 0 ? "-" : "");
                return;
        }
        neg = signbit(v);
        if (v == 0) {
                snprintf(buf, cap, "%s0.0", neg ? "-" : "");
                return;
        }
        /* The shortest digits that read back as v. */
        for (prec = 1; prec <= 17; prec++) {
                snprintf(sci, sizeof(sci), "%.*e", prec - 1, fabs(v));
                if (strtod(sci, NULL) == fabs(v))
                        break;
        }
        e = strchr(sci, 'e');
        exp10 = e ? atoi(e + 1) : 0;
        for (m = sci; m < e; m++)
                if (*m >= '0' && *m <= '9')
                        digits[nd++] = *m;
        while (nd > 1 && digits[nd - 1] == '0')
                nd--;
        digits[nd] = '\0';
        if (exp10 >= -5 && exp10 <= 15) {
                char out[48];
                size_t o = 0;

                if (exp10 < 0) {
                        o += (size_t)snprintf(out, sizeof(out), "0.");
                        for (int z = -1; z > exp10; z--)
                                out[o++] = '0';
                        for (int d = 0; d < nd; d++)
                                out[o++] = digits[d];
                } else {
                        for (int d = 0; d <= exp10; d++)
                                out[o++] = d < nd ? digits[d] : '0';
                        out[o++] = '.';
                        if (nd > exp10 + 1)
                                for (int d = exp10 + 1; d < nd; d++)
                                        out[o++] = digits[d];
                        else
                                out[o++] = '0';
                }
                out[o] = '\0';
                snprintf(buf, cap, "%s%s", neg ? "-" : "", out);
                return;
        }
        if (nd == 1)
                snprintf(buf, cap, "%s%ce%c%d", neg ? "-" : "", digits[0], exp10 < 0 ? '-' : '+',
                         abs(exp10));
        else
                snprintf(buf, cap, "%s%c.%se%c%d", neg ? "-" : "", digits[0], digits + 1,
                         exp10 < 0 ? '-' : '+', abs(exp10));
}

/* "`a`", "`a` or `b`", "one of `a`, `b`, `c`" (serde's OneOf). */
static void one_of(const char *const *names, char *buf, size_t cap)
{
        size_t n = 0, count = 0;

        while (names[count])
                count++;
        buf[0] = '\0';
        if (count == 2) {
                snprintf(buf, cap, "`%s` or `%s`", names[0], names[1]);
                return;
        }
        if (count > 2)
                n = (size_t)snprintf(buf, cap, "one of ");
        for (size_t k = 0; k < count && n < cap; k++)
                n += (size_t)snprintf(buf + n, cap - n, "%s`%s`", k ? ", " : "", names[k]);
}

static void field_names(const struct json_field *fields, const char **out, size_t cap)
{
        size_t k = 0;

        for (; fields && fields[k].name && k + 1 < cap; k++)
                out[k] = fields[k].name;
        out[k] = NULL;
}

/* ---- lexing ---- */

static bool at_end(const struct parser *p)
{
        return p->i >= p->len;
}

static int peek(const struct parser *p)
{
        return at_end(p) ? -1 : p->s[p->i];
}

/* Skips whitespace; the next byte, or -1 at the end. */
static int skip_ws(struct parser *p)
{
        while (!at_end(p)) {
                unsigned char c = p->s[p->i];
                if (c != ' ' && c != '\n' && c != '\t' && c != '\r')
                        return c;
                p->i++;
        }
        return -1;
}

static int parse_ident(struct parser *p, const char *rest)
{
        for (; *rest; rest++) {
                if (at_end(p))
                        return fail_here(p, "EOF while parsing a value");
                if (p->s[p->i++] != (unsigned char)*rest)
                        return fail_here(p, "expected ident");
        }
        return 0;
}

static int hex4(struct parser *p, unsigned *out)
{
        unsigned v = 0;

        if (p->len - p->i < 4) {
                p->i = p->len;
                return fail_here(p, "EOF while parsing a string");
        }
        for (int k = 0; k < 4; k++) {
                unsigned char c = p->s[p->i + (size_t)k];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else {
                        p->i += 4;
                        return fail_here(p, "invalid escape");
                }
        }
        p->i += 4;
        *out = v;
        return 0;
}

static size_t put_utf8(unsigned cp, char *o)
{
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | (cp >> 6));
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | (cp >> 12));
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
        size_t k = 0;

        while (k < n) {
                unsigned char c = s[k];
                size_t extra;
                unsigned cp;

                if (c < 0x80) {
                        k++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        extra = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        extra = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        extra = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (n - k <= extra)
                        return false;
                for (size_t e = 1; e <= extra; e++) {
                        if ((s[k + e] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[k + e] & 0x3f);
                }
                if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                    (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)))
                        return false;
                k += extra + 1;
        }
        return true;
}

/* A string whose opening quote has been consumed, as serde_json's SliceRead::parse_str reads
 * it; *out is malloc'd (NUL-terminated) and *nul tells whether an escape produced U+0000. */
static int parse_str(struct parser *p, char **out, bool *nul)
{
        size_t start = p->i, cap, o = 0;
        char *buf;

        /* The decoded string is never longer than its source. */
        while (!at_end(p) && p->s[p->i] != '"')
                p->i += p->s[p->i] == '\\' && p->i + 1 < p->len ? 2 : 1;
        cap = p->i - start + 1;
        p->i = start;
        buf = malloc(cap);
        if (!buf)
                return no_memory(p);
        *nul = false;
        for (;;) {
                unsigned char c;

                if (at_end(p)) {
                        free(buf);
                        return fail_here(p, "EOF while parsing a string");
                }
                c = p->s[p->i];
                if (c == '"') {
                        p->i++;
                        buf[o] = '\0';
                        if (!valid_utf8((const unsigned char *)buf, o)) {
                                free(buf);
                                return fail_here(p, "invalid unicode code point");
                        }
                        *out = buf;
                        return 0;
                }
                if (c < 0x20) {
                        p->i++;
                        free(buf);
                        return fail_here(p,
                                         "control character (\\u0000-\\u001F) found while parsing "
                                         "a string");
                }
                if (c != '\\') {
                        buf[o++] = (char)c;
                        p->i++;
                        continue;
                }
                p->i++;
                if (at_end(p)) {
                        free(buf);
                        return fail_here(p, "EOF while parsing a string");
                }
                c = p->s[p->i++];
                switch (c) {
                case '"':
                case '\\':
                case '/':
                        buf[o++] = (char)c;
                        break;
                case 'b':
                        buf[o++] = '\b';
                        break;
                case 'f':
                        buf[o++] = '\f';
                        break;
                case 'n':
                        buf[o++] = '\n';
                        break;
                case 'r':
                        buf[o++] = '\r';
                        break;
                case 't':
                        buf[o++] = '\t';
                        break;
                case 'u': {
                        unsigned n1, n2;
                        int r = hex4(p, &n1);

                        if (!r && n1 >= 0xdc00 && n1 <= 0xdfff)
                                r = fail_here(p, "lone leading surrogate in hex escape");
                        if (!r && n1 >= 0xd800 && n1 <= 0xdbff) {
                                if (at_end(p))
                                        r = fail_here(p, "EOF while parsing a string");
                                else if (p->s[p->i] != '\\') {
                                        p->i++;
                                        r = fail_here(p, "unexpected end of hex escape");
                                } else {
                                        p->i++;
                                        if (at_end(p))
                                                r = fail_here(p, "EOF while parsing a string");
                                        else if (p->s[p->i] != 'u') {
                                                p->i++;
                                                r = fail_here(p, "unexpected end of hex escape");
                                        } else {
                                                p->i++;
                                                r = hex4(p, &n2);
                                                if (!r && (n2 < 0xdc00 || n2 > 0xdfff))
                                                        r = fail_here(p, "lone leading surrogate "
                                                                         "in hex escape");
                                                if (!r)
                                                        n1 = 0x10000 + ((n1 - 0xd800) << 10) +
                                                             (n2 - 0xdc00);
                                        }
                                }
                        }
                        if (r) {
                                free(buf);
                                return r;
                        }
                        if (n1 == 0)
                                *nul = true;
                        /* The escape is 6 or 12 source bytes; its UTF-8 at most 4. */
                        o += put_utf8(n1, buf + o);
                        break;
                }
                default:
                        free(buf);
                        return fail_here(p, "invalid escape");
                }
        }
}

enum number_kind { NUM_U64, NUM_I64, NUM_F64 };

struct number {
        enum number_kind kind;
        uint64_t u;
        int64_t i;
        double f;
};

/* serde_json's parse_integer (and what follows it) once a leading '-' has been consumed or
 * not; the literal's value as serde sees it. */
static int parse_number(struct parser *p, bool positive, struct number *n)
{
        size_t start = p->i - (positive ? 0 : 1);
        bool is_float = false, overflow = false;
        uint64_t sig = 0;
        char lit[64];
        size_t len;
        int c;

        if (at_end(p))
                return fail_here(p, "EOF while parsing a value");
        c = p->s[p->i++];
        if (c == '0') {
                if (peek(p) >= '0' && peek(p) <= '9')
                        return fail_peek(p, "invalid number");
        } else if (c >= '1' && c <= '9') {
                sig = (uint64_t)(c - '0');
                while ((c = peek(p)) >= '0' && c <= '9') {
                        unsigned d = (unsigned)(c - '0');
                        if (!overflow && (sig > (UINT64_MAX - d) / 10))
                                overflow = true;
                        if (!overflow)
                                sig = sig * 10 + d;
                        p->i++;
                }
        } else {
                return fail_here(p, "invalid number");
        }
        if (peek(p) == '.') {
                bool digit = false;

                p->i++;
                while ((c = peek(p)) >= '0' && c <= '9') {
                        p->i++;
                        digit = true;
                }
                if (!digit)
                        return at_end(p) ? fail_peek(p, "EOF while parsing a value")
                                         : fail_peek(p, "invalid number");
                is_float = true;
        }
        if (peek(p) == 'e' || peek(p) == 'E') {
                p->i++;
                if (peek(p) == '+' || peek(p) == '-')
                        p->i++;
                if (at_end(p))
                        return fail_here(p, "EOF while parsing a value");
                c = p->s[p->i++];
                if (c < '0' || c > '9')
                        return fail_here(p, "invalid number");
                while ((c = peek(p)) >= '0' && c <= '9')
                        p->i++;
                is_float = true;
        }
        if (!is_float && !overflow) {
                if (positive) {
                        n->kind = NUM_U64;
                        n->u = sig;
                        return 0;
                }
                if (sig != 0 && sig <= (uint64_t)INT64_MAX + 1) {
                        n->kind = NUM_I64;
                        n->i = sig == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)sig;
                        return 0;
                }
        }
        /* A float (or an integer too large for 64 bits, or -0): its value is the literal's. */
        len = p->i - start;
        n->kind = NUM_F64;
        if (len < sizeof(lit)) {
                memcpy(lit, p->s + start, len);
                lit[len] = '\0';
                n->f = strtod(lit, NULL);
        } else {
                char *big = text_dup(p->s + start, len);
                if (!big)
                        return no_memory(p);
                n->f = strtod(big, NULL);
                free(big);
        }
        if (isinf(n->f))
                return fail_here(p, "number out of range");
        return 0;
}

/* serde's Unexpected for a number. */
static void describe_number(const struct number *n, char *buf, size_t cap)
{
        char f[48];

        switch (n->kind) {
        case NUM_U64:
                snprintf(buf, cap, "integer `%llu`", (unsigned long long)n->u);
                break;
        case NUM_I64:
                snprintf(buf, cap, "integer `%lld`", (long long)n->i);
                break;
        default:
                json_serde_format_f64(n->f, f, sizeof(f));
                snprintf(buf, cap, "floating point `%s`", f);
        }
}

/* serde_json's peek_invalid_type: what the next value is, in an "invalid type" message. */
static int invalid_type(struct parser *p, const char *expected)
{
        char what[300], dbg[256];
        struct number n;
        char *s;
        bool nul;
        int r;

        switch (peek(p)) {
        case 'n':
                p->i++;
                r = parse_ident(p, "ull");
                snprintf(what, sizeof(what), "null");
                break;
        case 't':
                p->i++;
                r = parse_ident(p, "rue");
                snprintf(what, sizeof(what), "boolean `true`");
                break;
        case 'f':
                p->i++;
                r = parse_ident(p, "alse");
                snprintf(what, sizeof(what), "boolean `false`");
                break;
        case '-':
                p->i++;
                r = parse_number(p, false, &n);
                if (!r)
                        describe_number(&n, what, sizeof(what));
                break;
        case '"':
                p->i++;
                r = parse_str(p, &s, &nul);
                if (!r) {
                        json_serde_debug_str(s, dbg, sizeof(dbg));
                        snprintf(what, sizeof(what), "string %s", dbg);
                        free(s);
                }
                break;
        case '[':
                r = 0;
                snprintf(what, sizeof(what), "sequence");
                break;
        case '{':
                r = 0;
                snprintf(what, sizeof(what), "map");
                break;
        default:
                if (peek(p) >= '0' && peek(p) <= '9') {
                        r = parse_number(p, true, &n);
                        if (!r)
                                describe_number(&n, what, sizeof(what));
                        break;
                }
                return fail_peek(p, "expected value");
        }
        if (r)
                return r;
        return fail_here(p, "invalid type: %s, expected %s", what, expected);
}

/* ---- values ---- */

static int parse_value(struct parser *p, const struct json_shape *sh, cJSON **out);

/* Any value, for syntax only (serde_json's ignore_value: no depth limit, so iterative). */
static int skip_value(struct parser *p)
{
        char *stack = NULL;
        size_t depth = 0, cap = 0;
        int r = 0;

        for (;;) {
                int c = skip_ws(p);
                bool opened = false;
                struct number n;

                if (c < 0) {
                        r = fail_peek(p, "EOF while parsing a value");
                        break;
                }
                if (c == 'n' || c == 't' || c == 'f') {
                        p->i++;
                        r = parse_ident(p, c == 'n' ? "ull" : c == 't' ? "rue" : "alse");
                } else if (c == '-') {
                        p->i++;
                        r = parse_number(p, false, &n);
                } else if (c >= '0' && c <= '9') {
                        r = parse_number(p, true, &n);
                } else if (c == '"') {
                        char *s;
                        bool nul;

                        p->i++;
                        r = parse_str(p, &s, &nul);
                        if (!r)
                                free(s);
                } else if (c == '[' || c == '{') {
                        if (depth == cap) {
                                char *g = realloc(stack, cap ? cap * 2 : 16);
                                if (!g) {
                                        r = no_memory(p);
                                        break;
                                }
                                stack = g;
                                cap = cap ? cap * 2 : 16;
                        }
                        stack[depth++] = (char)c;
                        p->i++;
                        opened = true;
                } else {
                        r = fail_peek(p, "expected value");
                }
                if (r)
                        break;
                /* After a value (or an opening bracket): close, or go on with the next. */
                for (;;) {
                        char frame;

                        if (!depth)
                                goto out;
                        frame = stack[depth - 1];
                        c = skip_ws(p);
                        if (c < 0) {
                                r = fail_peek(p, frame == '[' ? "EOF while parsing a list"
                                                              : "EOF while parsing an object");
                                goto out;
                        }
                        if ((frame == '[' && c == ']') || (frame == '{' && c == '}')) {
                                p->i++;
                                depth--;
                                opened = false;
                                continue;
                        }
                        if (!opened) {
                                if (c != ',') {
                                        r = fail_peek(p, frame == '[' ? "expected `,` or `]`"
                                                                      : "expected `,` or `}`");
                                        goto out;
                                }
                                p->i++;
                        }
                        break;
                }
                if (stack[depth - 1] == '{') {
                        char *key;
                        bool nul;
                        int c2 = skip_ws(p);

                        if (c2 < 0) {
                                r = fail_peek(p, "EOF while parsing an object");
                                break;
                        }
                        if (c2 != '"') {
                                r = fail_peek(p, "key must be a string");
                                break;
                        }
                        p->i++;
                        r = parse_str(p, &key, &nul);
                        if (r)
                                break;
                        free(key);
                        c2 = skip_ws(p);
                        if (c2 < 0) {
                                r = fail_peek(p, "EOF while parsing an object");
                                break;
                        }
                        if (c2 != ':') {
                                r = fail_peek(p, "expected `:`");
                                break;
                        }
                        p->i++;
                }
        }
out:
        free(stack);
        return r;
}

static int enter(struct parser *p)
{
        if (--p->depth_left == 0)
                return fail_peek(p, "recursion limit exceeded");
        return 0;
}

/* Either the next element exists (1), the sequence ends (0), or an error. */
static int next_element(struct parser *p, bool *first)
{
        int c = skip_ws(p);

        if (c < 0)
                return fail_peek(p, "EOF while parsing a list");
        if (c == ']')
                return 0;
        if (*first) {
                *first = false;
                return 1;
        }
        if (c != ',')
                return fail_peek(p, "expected `,` or `]`");
        p->i++;
        c = skip_ws(p);
        if (c == ']')
                return fail_peek(p, "trailing comma");
        if (c < 0)
                return fail_peek(p, "EOF while parsing a value");
        return 1;
}

static int end_seq(struct parser *p)
{
        int c = skip_ws(p);

        if (c == ']') {
                p->i++;
                return 0;
        }
        if (c == ',') {
                p->i++;
                return skip_ws(p) == ']' ? fail_peek(p, "trailing comma")
                                         : fail_peek(p, "trailing characters");
        }
        if (c < 0)
                return fail_peek(p, "EOF while parsing a list");
        return fail_peek(p, "trailing characters");
}

/* Either the next key exists (its opening quote not consumed), the object ends, or an
 * error. */
static int next_key(struct parser *p, bool *first)
{
        int c = skip_ws(p);

        if (c < 0)
                return fail_peek(p, "EOF while parsing an object");
        if (c == '}')
                return 0;
        if (*first) {
                *first = false;
                return c == '"' ? 1 : fail_peek(p, "key must be a string");
        }
        if (c != ',')
                return fail_peek(p, "expected `,` or `}`");
        p->i++;
        c = skip_ws(p);
        if (c == '"')
                return 1;
        if (c == '}')
                return fail_peek(p, "trailing comma");
        if (c < 0)
                return fail_peek(p, "EOF while parsing a value");
        return fail_peek(p, "key must be a string");
}

static int parse_colon(struct parser *p)
{
        int c = skip_ws(p);

        if (c == ':') {
                p->i++;
                return 0;
        }
        return c < 0 ? fail_peek(p, "EOF while parsing an object") : fail_peek(p, "expected `:`");
}

static int parse_key(struct parser *p, char **key)
{
        bool nul;
        int r;

        p->i++; /* the opening quote */
        r = parse_str(p, key, &nul);
        if (!r && nul) {
                free(*key);
                *key = NULL;
                r = fail_here(p, "a key contains a NUL character");
        }
        return r;
}

static int parse_seq(struct parser *p, const struct json_shape *sh, cJSON **out);
static int parse_map(struct parser *p, const struct json_shape *value, cJSON **out);

/* serde_json::Value (deserialize_any). */
static int parse_any(struct parser *p, cJSON **out)
{
        struct number n;
        int c = skip_ws(p), r;

        *out = NULL;
        switch (c) {
        case -1:
                return fail_peek(p, "EOF while parsing a value");
        case 'n':
        case 't':
        case 'f':
                p->i++;
                r = parse_ident(p, c == 'n' ? "ull" : c == 't' ? "rue" : "alse");
                if (r)
                        return r;
                *out = c == 'n' ? cJSON_CreateNull() : cJSON_CreateBool(c == 't');
                return *out ? 0 : no_memory(p);
        case '"': {
                char *s;
                bool nul;

                p->i++;
                r = parse_str(p, &s, &nul);
                if (r)
                        return r;
                if (nul) {
                        free(s);
                        return fail_here(p, "a string contains a NUL character");
                }
                *out = cJSON_CreateString(s);
                free(s);
                return *out ? 0 : no_memory(p);
        }
        case '[': {
                static const struct json_shape any = {.kind = JSON_VALUE};
                static const struct json_shape seq = {.kind = JSON_SEQ, .item = &any};

                return parse_seq(p, &seq, out);
        }
        case '{': {
                static const struct json_shape any = {.kind = JSON_VALUE};

                return parse_map(p, &any, out);
        }
        default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                        size_t start = p->i;
                        char *lit;

                        if (c == '-')
                                p->i++;
                        r = parse_number(p, c != '-', &n);
                        if (r)
                                return r;
                        lit = text_dup(p->s + start, p->i - start);
                        *out = lit ? cJSON_CreateRaw(lit) : NULL;
                        free(lit);
                        return *out ? 0 : no_memory(p);
                }
                return fail_peek(p, "expected value");
        }
}

static const char *uint_name(enum json_kind k, uint64_t *max)
{
        switch (k) {
        case JSON_U8:
                *max = UINT8_MAX;
                return "u8";
        case JSON_U16:
                *max = UINT16_MAX;
                return "u16";
        case JSON_U32:
                *max = UINT32_MAX;
                return "u32";
        case JSON_U64:
                *max = UINT64_MAX;
                return "u64";
        default:
                *max = UINT64_MAX;
                return "usize";
        }
}

static int parse_uint(struct parser *p, enum json_kind k, cJSON **out)
{
        uint64_t max;
        const char *name = uint_name(k, &max);
        char what[80], digits[24];
        struct number n;
        int c = skip_ws(p), r;

        if (c < 0)
                return fail_peek(p, "EOF while parsing a value");
        if (c == '-') {
                p->i++;
                r = parse_number(p, false, &n);
        } else if (c >= '0' && c <= '9') {
                r = parse_number(p, true, &n);
        } else {
                return invalid_type(p, name);
        }
        if (r)
                return r;
        if (n.kind == NUM_F64) {
                describe_number(&n, what, sizeof(what));
                return fail_here(p, "invalid type: %s, expected %s", what, name);
        }
        if (n.kind == NUM_I64 || n.u > max) {
                describe_number(&n, what, sizeof(what));
                return fail_here(p, "invalid value: %s, expected %s", what, name);
        }
        snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n.u);
        *out = cJSON_CreateRaw(digits);
        return *out ? 0 : no_memory(p);
}

static int parse_string(struct parser *p, const struct json_shape *sh, cJSON **out)
{
        const char *expected = sh->kind == JSON_PATH ? "path string" : "a string";
        const char *bad;
        char *s;
        bool nul;
        int c = skip_ws(p), r;

        if (c < 0)
                return fail_peek(p, "EOF while parsing a value");
        if (c != '"')
                return invalid_type(p, expected);
        p->i++;
        r = parse_str(p, &s, &nul);
        if (r)
                return r;
        /* Ours: a C string (a path, a name) cannot hold U+0000; serde would accept it and
         * the open would fail later. */
        if (nul) {
                char dbg[256];

                json_serde_debug_str(s, dbg, sizeof(dbg));
                free(s);
                return fail_here(p, "invalid value: a string with a NUL character, expected %s",
                                 expected);
        }
        bad = sh->check ? sh->check(s) : NULL;
        if (bad) {
                free(s);
                return deferred(p, "%s", bad);
        }
        *out = cJSON_CreateString(s);
        free(s);
        return *out ? 0 : no_memory(p);
}

static int unknown_variant(struct parser *p, const struct json_shape *sh, const char *name)
{
        char list[400];

        one_of(sh->variants, list, sizeof(list));
        return fail_here(p, "unknown variant `%s`, expected %s", name, list);
}

static int find_variant(const struct json_shape *sh, const char *name)
{
        for (int v = 0; sh->variants[v]; v++)
                if (strcmp(sh->variants[v], name) == 0)
                        return v;
        return -1;
}

/* serde_json's deserialize_enum for unit variants: "Variant", or {"Variant": null}. */
static int parse_enum(struct parser *p, const struct json_shape *sh, cJSON **out)
{
        char *name = NULL;
        bool nul;
        int c = skip_ws(p), r, v;

        if (c < 0)
                return fail_peek(p, "EOF while parsing a value");
        if (c == '"') {
                p->i++;
                r = parse_str(p, &name, &nul);
                if (r)
                        return r;
                v = nul ? -1 : find_variant(sh, name);
                if (v < 0) {
                        r = unknown_variant(p, sh, nul ? "" : name);
                        free(name);
                        return r;
                }
                free(name);
                *out = cJSON_CreateString(sh->variants[v]);
                return *out ? 0 : no_memory(p);
        }
        if (c != '{')
                return fail_peek(p, "expected value");
        r = enter(p);
        if (r)
                return r;
        p->i++;
        c = skip_ws(p);
        if (c == '"') {
                r = parse_key(p, &name);
                v = r ? -1 : find_variant(sh, name);
                if (!r && v < 0)
                        r = unknown_variant(p, sh, name);
                free(name);
                if (!r)
                        r = parse_colon(p);
                /* A unit variant's value: () */
                if (!r) {
                        c = skip_ws(p);
                        if (c < 0)
                                r = fail_peek(p, "EOF while parsing a value");
                        else if (c == 'n') {
                                p->i++;
                                r = parse_ident(p, "ull");
                        } else {
                                r = invalid_type(p, "unit");
                        }
                }
                if (!r) {
                        c = skip_ws(p);
                        if (c == '}')
                                p->i++;
                        else
                                r = c < 0 ? fail_here(p, "EOF while parsing an object")
                                          : fail_here(p, "expected value");
                }
                if (!r) {
                        *out = cJSON_CreateString(sh->variants[v]);
                        if (!*out)
                                r = no_memory(p);
                }
        } else if (c == '}') {
                r = fail_peek(p, "expected value");
        } else if (c < 0) {
                r = fail_peek(p, "EOF while parsing an object");
        } else {
                r = fail_peek(p, "key must be a string");
        }
        p->depth_left++;
        return r;
}

/* A field's value: an Option takes null as None (a null item). */
static int parse_field_value(struct parser *p, const struct json_field *f, cJSON **out)
{
        if ((f->flags & JSON_OPTION) && skip_ws(p) == 'n') {
                int r;

                p->i++;
                r = parse_ident(p, "ull");
                if (r)
                        return r;
                *out = cJSON_CreateNull();
                return *out ? 0 : no_memory(p);
        }
        return parse_value(p, f->shape, out);
}

static int parse_struct_map(struct parser *p, const struct json_shape *sh, cJSON *obj)
{
        const char *names[JSON_MAX_FIELDS + 1];
        uint32_t seen = 0;
        bool first = true;
        int r, k;

        for (;;) {
                const struct json_field *f = NULL;
                char *key = NULL;
                cJSON *item = NULL;

                r = next_key(p, &first);
                if (r <= 0)
                        break;
                r = parse_key(p, &key);
                if (r)
                        return r;
                for (k = 0; sh->fields[k].name; k++) {
                        if (strcmp(sh->fields[k].name, key) == 0) {
                                f = &sh->fields[k];
                                break;
                        }
                }
                if (!f && !sh->allow_unknown) {
                        char list[400];

                        field_names(sh->fields, names, ARRAY_SIZE(names));
                        if (!names[0])
                                r = deferred(p, "unknown field `%s`, there are no fields", key);
                        else {
                                one_of(names, list, sizeof(list));
                                r = deferred(p, "unknown field `%s`, expected %s", key, list);
                        }
                        free(key);
                        return r;
                }
                if (f && (seen & (1u << k))) {
                        r = deferred(p, "duplicate field `%s`", key);
                        free(key);
                        return r;
                }
                r = parse_colon(p);
                if (!r) {
                        size_t mark = path_push(p, NULL, key, 0);

                        r = f ? parse_field_value(p, f, &item) : skip_value(p);
                        path_pop(p, mark);
                }
                if (r) {
                        free(key);
                        return r;
                }
                if (f) {
                        seen |= 1u << k;
                        cJSON_AddItemToObject(obj, key, item);
                }
                free(key);
        }
        if (r)
                return r;
        for (k = 0; sh->fields[k].name; k++)
                if (!(seen & (1u << k)) && !(sh->fields[k].flags & (JSON_OPTION | JSON_DEFAULT)))
                        return deferred(p, "missing field `%s`", sh->fields[k].name);
        p->i++; /* the closing brace */
        return 0;
}

/* serde's derived visit_seq: a struct given as an array of its fields in order. */
static int parse_struct_seq(struct parser *p, const struct json_shape *sh, cJSON *obj)
{
        unsigned nfields = 0;
        bool first = true;
        int r;

        while (sh->fields[nfields].name)
                nfields++;
        for (unsigned k = 0; k < nfields; k++) {
                const struct json_field *f = &sh->fields[k];
                cJSON *item = NULL;
                size_t mark;

                r = next_element(p, &first);
                if (r < 0)
                        return r;
                if (r == 0) {
                        if (f->flags & JSON_DEFAULT)
                                continue;
                        return deferred(p, "invalid length %u, expected struct %s with %u elements",
                                        k, sh->name, nfields);
                }
                mark = path_push(p, NULL, f->name, 0);
                r = parse_field_value(p, f, &item);
                path_pop(p, mark);
                if (r)
                        return r;
                cJSON_AddItemToObject(obj, f->name, item);
        }
        return end_seq(p);
}

/* The opening bracket of a container serde_json's deserialize_seq/map/struct wants (one of
 * accept): 0 with it consumed and the depth counted (*c: which one), or the error. */
static int open_container(struct parser *p, const char *accept, const char *expected, int *c)
{
        int r;

        *c = skip_ws(p);
        if (*c < 0)
                return fail_peek(p, "EOF while parsing a value");
        if (!memchr(accept, *c, strlen(accept)))
                return invalid_type(p, expected);
        r = enter(p);
        if (r)
                return r;
        p->i++;
        return 0;
}

/* Its end: a deferred error positioned where its closing bracket (close) is, the depth given
 * back, and the value kept or dropped. */
static int close_container(struct parser *p, int r, char close, cJSON *v, cJSON **out)
{
        if (r == DEFERRED)
                r = deferred_position(p, close);
        p->depth_left++;
        if (r) {
                cJSON_Delete(v);
                return r;
        }
        *out = v;
        return 0;
}

static int parse_struct(struct parser *p, const struct json_shape *sh, cJSON **out)
{
        char expected[96];
        cJSON *obj;
        int c, r;

        snprintf(expected, sizeof(expected), "struct %s", sh->name);
        r = open_container(p, "{[", expected, &c);
        if (r)
                return r;
        obj = cJSON_CreateObject();
        if (!obj)
                r = no_memory(p);
        else
                r = c == '{' ? parse_struct_map(p, sh, obj) : parse_struct_seq(p, sh, obj);
        return close_container(p, r, c == '{' ? '}' : ']', obj, out);
}

static int parse_seq(struct parser *p, const struct json_shape *sh, cJSON **out)
{
        bool first = true;
        unsigned count = 0;
        cJSON *arr;
        int c, r = open_container(p, "[", "a sequence", &c);

        if (r)
                return r;
        arr = cJSON_CreateArray();
        if (!arr)
                r = no_memory(p);
        while (!r) {
                cJSON *item = NULL;
                size_t mark;

                r = next_element(p, &first);
                if (r <= 0)
                        break;
                mark = path_push(p, "[%u]", NULL, count);
                r = parse_value(p, sh->item, &item);
                path_pop(p, mark);
                if (!r) {
                        cJSON_AddItemToArray(arr, item);
                        count++;
                }
        }
        if (!r)
                r = end_seq(p);
        return close_container(p, r, ']', arr, out);
}

/* A map of string keys to values of one shape (serde_json's Map, a BTreeMap): a repeated key
 * keeps its last value. */
struct keyed {
        const char *key;
        size_t order;
        cJSON *item;
};

static int by_key_then_order(const void *a, const void *b)
{
        const struct keyed *x = a, *y = b;
        int c = strcmp(x->key, y->key);

        return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* A repeated key keeps its last value (serde_json's Map and BTreeMap), in O(n log n): a body
 * of many keys must not cost their square. */
static int keep_last_of_each_key(struct parser *p, cJSON *obj, size_t n)
{
        struct keyed *k = calloc(n, sizeof(*k));
        size_t i = 0;

        if (!k)
                return no_memory(p);
        for (cJSON *it = obj->child; it && i < n; it = it->next, i++)
                k[i] = (struct keyed){it->string, i, it};
        qsort(k, i, sizeof(*k), by_key_then_order);
        for (size_t j = 0; j + 1 < i; j++)
                if (strcmp(k[j].key, k[j + 1].key) == 0)
                        cJSON_Delete(cJSON_DetachItemViaPointer(obj, k[j].item));
        free(k);
        return 0;
}

static int parse_map(struct parser *p, const struct json_shape *value, cJSON **out)
{
        bool first = true;
        size_t n = 0;
        cJSON *obj;
        int c, r = open_container(p, "{", "a map", &c);

        if (r)
                return r;
        obj = cJSON_CreateObject();
        if (!obj)
                r = no_memory(p);
        while (!r) {
                char *key = NULL;
                cJSON *item = NULL;

                r = next_key(p, &first);
                if (r <= 0)
                        break;
                r = parse_key(p, &key);
                if (!r)
                        r = parse_colon(p);
                if (!r) {
                        size_t mark = path_push(p, NULL, key, 0);

                        r = parse_value(p, value, &item);
                        path_pop(p, mark);
                }
                if (!r) {
                        cJSON_AddItemToObject(obj, key, item);
                        n++;
                }
                free(key);
        }
        if (!r)
                p->i++; /* the closing brace */
        if (!r && n > 1)
                r = keep_last_of_each_key(p, obj, n);
        return close_container(p, r, '}', obj, out);
}

static int parse_value(struct parser *p, const struct json_shape *sh, cJSON **out)
{
        *out = NULL;
        switch (sh->kind) {
        case JSON_IGNORED:
                return skip_value(p);
        case JSON_VALUE:
                return parse_any(p, out);
        case JSON_BOOL: {
                int c = skip_ws(p), r;

                if (c < 0)
                        return fail_peek(p, "EOF while parsing a value");
                if (c != 't' && c != 'f')
                        return invalid_type(p, "a boolean");
                p->i++;
                r = parse_ident(p, c == 't' ? "rue" : "alse");
                if (r)
                        return r;
                *out = cJSON_CreateBool(c == 't');
                return *out ? 0 : no_memory(p);
        }
        case JSON_STRING:
        case JSON_PATH:
                return parse_string(p, sh, out);
        case JSON_U8:
        case JSON_U16:
        case JSON_U32:
        case JSON_U64:
        case JSON_USIZE:
                return parse_uint(p, sh->kind, out);
        case JSON_ENUM:
                return parse_enum(p, sh, out);
        case JSON_STRUCT:
                return parse_struct(p, sh, out);
        case JSON_SEQ:
                return parse_seq(p, sh, out);
        case JSON_STRING_MAP: {
                static const struct json_shape string = {.kind = JSON_STRING};

                return parse_map(p, &string, out);
        }
        }
        return error_set(p->err, -EINVAL, "internal: unknown JSON shape %d", (int)sh->kind);
}

int json_serde_parse(const char *text, size_t len, const struct json_shape *shape, cJSON **out,
                     struct error *err)
{
        return json_serde_parse_at(text, len, shape, out, NULL, 0, err);
}

int json_serde_parse_at(const char *text, size_t len, const struct json_shape *shape, cJSON **out,
                        char *where, size_t where_cap, struct error *err)
{
        struct parser p = {.s = (const unsigned char *)text,
                           .len = len,
                           .depth_left = JSON_MAX_DEPTH,
                           .err = err,
                           .where = where,
                           .where_cap = where_cap};
        cJSON *v = NULL;
        int r;

        if (where && where_cap)
                where[0] = '\0';
        r = parse_value(&p, shape, &v);
        *out = NULL;
        /* A refusal no container positions keeps no position, as serde_json leaves it. */
        if (r == DEFERRED)
                r = -EINVAL;
        if (!r && skip_ws(&p) >= 0)
                r = fail_peek(&p, "trailing characters");
        if (r) {
                cJSON_Delete(v);
                return r < 0 ? r : -EINVAL;
        }
        *out = v;
        return 0;
}
