#include "mmds_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct member {
        char *key;
        size_t klen;
        struct mmds_json *val;
        size_t order; /* while parsing: the position in the text (duplicates keep the last) */
};

struct mmds_json {
        enum mmds_json_type type;
        size_t len; /* string / number: bytes; array / object: entries */
        size_t cap;
        char *str;                /* string (UTF-8, may hold NUL) or number literal */
        struct mmds_json **items; /* array */
        struct member *members;   /* object, sorted by key, keys unique */
};

/* ---- buffers ---- */

void mmds_buf_append(struct mmds_buf *b, const void *p, size_t n)
{
        if (b->failed || !n)
                return;
        if (b->cap - b->len < n) {
                size_t cap = b->cap ? b->cap : 256;
                char *d;

                while (cap - b->len < n) {
                        if (cap > SIZE_MAX / 2) {
                                b->failed = true;
                                return;
                        }
                        cap *= 2;
                }
                d = realloc(b->data, cap);
                if (!d) {
                        b->failed = true;
                        return;
                }
                b->data = d;
                b->cap = cap;
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

void mmds_buf_free(struct mmds_buf *b)
{
        free(b->data);
        memset(b, 0, sizeof(*b));
}

static void buf_byte(struct mmds_buf *b, char c)
{
        mmds_buf_append(b, &c, 1);
}

/* ---- nodes ---- */

static struct mmds_json *node_new(enum mmds_json_type t)
{
        struct mmds_json *v = calloc(1, sizeof(*v));

        if (v)
                v->type = t;
        return v;
}

struct mmds_json *mmds_json_null(void)
{
        return node_new(MMDS_JSON_NULL);
}

enum mmds_json_type mmds_json_type(const struct mmds_json *v)
{
        return v->type;
}

void mmds_json_free(struct mmds_json *v)
{
        if (!v)
                return;
        if (v->type == MMDS_JSON_ARRAY)
                for (size_t i = 0; i < v->len; i++)
                        mmds_json_free(v->items[i]);
        if (v->type == MMDS_JSON_OBJECT)
                for (size_t i = 0; i < v->len; i++) {
                        free(v->members[i].key);
                        mmds_json_free(v->members[i].val);
                }
        free(v->str);
        free(v->items);
        free(v->members);
        free(v);
}

struct mmds_json *mmds_json_copy(const struct mmds_json *v)
{
        struct mmds_json *c = node_new(v->type);

        if (!c)
                return NULL;
        if (v->type == MMDS_JSON_STRING || v->type == MMDS_JSON_NUMBER) {
                c->str = text_dup(v->str, v->len);
                c->len = v->len;
                if (!c->str)
                        goto fail;
        } else if (v->type == MMDS_JSON_ARRAY && v->len) {
                c->items = calloc(v->len, sizeof(*c->items));
                if (!c->items)
                        goto fail;
                c->cap = v->len;
                for (; c->len < v->len; c->len++)
                        if (!(c->items[c->len] = mmds_json_copy(v->items[c->len])))
                                goto fail;
        } else if (v->type == MMDS_JSON_OBJECT && v->len) {
                c->members = calloc(v->len, sizeof(*c->members));
                if (!c->members)
                        goto fail;
                c->cap = v->len;
                for (; c->len < v->len; c->len++) {
                        struct member *m = &c->members[c->len];

                        m->klen = v->members[c->len].klen;
                        m->key = text_dup(v->members[c->len].key, m->klen);
                        m->val = m->key ? mmds_json_copy(v->members[c->len].val) : NULL;
                        if (!m->val) {
                                free(m->key);
                                goto fail;
                        }
                }
        }
        return c;
fail:
        mmds_json_free(c);
        return NULL;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        int c = memcmp(a, b, alen < blen ? alen : blen);

        if (c)
                return c;
        return alen < blen ? -1 : alen > blen;
}

/* The index of key in the object, or where it would go (*found false). */
static size_t find_key(const struct mmds_json *o, const char *key, size_t klen, bool *found)
{
        size_t lo = 0, hi = o->len;

        *found = false;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = key_cmp(o->members[mid].key, o->members[mid].klen, key, klen);

                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int grow(void **arr, size_t *cap, size_t len, size_t size)
{
        size_t ncap;
        void *p;

        if (len < *cap)
                return 0;
        ncap = *cap ? *cap * 2 : 4;
        if (ncap > SIZE_MAX / size)
                return -ENOMEM;
        p = realloc(*arr, ncap * size);
        if (!p)
                return -ENOMEM;
        *arr = p;
        *cap = ncap;
        return 0;
}

/* ---- parsing ---- */

struct parser {
        const char *s;
        size_t len, pos;
        unsigned depth;
        char *msg;
        size_t msg_cap;
        int err;
};

static int fail(struct parser *p, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int err, const char *fmt, ...)
{
        char what[96];
        va_list ap;

        if (p->err)
                return p->err;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (p->msg_cap)
                snprintf(p->msg, p->msg_cap, "%s at byte %zu", what, p->pos);
        p->err = err;
        return err;
}

static void skip_ws(struct parser *p)
{
        while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                                   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
                p->pos++;
}

static bool at_end(const struct parser *p)
{
        return p->pos >= p->len;
}

static char peek(const struct parser *p)
{
        return at_end(p) ? '\0' : p->s[p->pos];
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
        uint32_t cp;
        size_t need;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                need = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                need = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                need = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (n < need)
                return 0;
        for (size_t i = 1; i < need; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
        if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return need;
}

bool mmds_utf8_valid(const char *s, size_t n)
{
        for (size_t i = 0, k; i < n; i += k)
                if (!(k = utf8_seq((const unsigned char *)s + i, n - i)))
                        return false;
        return true;
}

static void put_utf8(struct mmds_buf *b, uint32_t cp)
{
        char u[4];
        size_t n;

        if (cp < 0x80) {
                u[0] = (char)cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = (char)(0xc0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = (char)(0xe0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (char)(0x80 | (cp & 0x3f));
                n = 3;
        } else {
                u[0] = (char)(0xf0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                u[3] = (char)(0x80 | (cp & 0x3f));
                n = 4;
        }
        mmds_buf_append(b, u, n);
}

static int hex4(struct parser *p, uint32_t *out)
{
        *out = 0;
        for (int i = 0; i < 4; i++) {
                char c = peek(p);
                uint32_t d;

                if (is_digit(c))
                        d = (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (uint32_t)(c - 'A' + 10);
                else
                        return fail(p, -EINVAL, "invalid \\u escape");
                *out = *out << 4 | d;
                p->pos++;
        }
        return 0;
}

static int parse_escape(struct parser *p, struct mmds_buf *b)
{
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *e;
        uint32_t cp, lo;
        char c = peek(p);

        p->pos++;
        if (c != 'u') {
                if (!c || !(e = strchr(from, c)))
                        return fail(p, -EINVAL, "invalid escape");
                buf_byte(b, to[e - from]);
                return 0;
        }
        if (hex4(p, &cp))
                return p->err;
        if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(p, -EINVAL, "lone trailing surrogate in a \\u escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
                if (peek(p) != '\\' || p->pos + 1 >= p->len || p->s[p->pos + 1] != 'u')
                        return fail(p, -EINVAL, "lone leading surrogate in a \\u escape");
                p->pos += 2;
                if (hex4(p, &lo))
                        return p->err;
                if (lo < 0xdc00 || lo > 0xdfff)
                        return fail(p, -EINVAL, "lone leading surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        put_utf8(b, cp);
        return 0;
}

/* A string at p (its opening quote); the decoded bytes go to b. */
static int parse_string_into(struct parser *p, struct mmds_buf *b)
{
        p->pos++;
        for (;;) {
                unsigned char c;
                size_t n;

                if (at_end(p))
                        return fail(p, -EINVAL, "EOF while parsing a string");
                c = (unsigned char)p->s[p->pos];
                if (c == '"') {
                        p->pos++;
                        break;
                }
                if (c == '\\') {
                        p->pos++;
                        if (parse_escape(p, b))
                                return p->err;
                        continue;
                }
                if (c < 0x20)
                        return fail(p, -EINVAL, "control character in a string");
                n = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
                if (!n)
                        return fail(p, -EINVAL, "invalid UTF-8 in a string");
                mmds_buf_append(b, p->s + p->pos, n);
                p->pos += n;
        }
        return b->failed ? fail(p, -ENOMEM, "out of memory") : 0;
}

static int parse_string(struct parser *p, char **out, size_t *len)
{
        struct mmds_buf b = {0};

        if (parse_string_into(p, &b)) {
                mmds_buf_free(&b);
                return p->err;
        }
        buf_byte(&b, '\0');
        if (b.failed) {
                mmds_buf_free(&b);
                return fail(p, -ENOMEM, "out of memory");
        }
        *out = b.data;
        *len = b.len - 1;
        return 0;
}

static int parse_number(struct parser *p, struct mmds_json *v)
{
        size_t start = p->pos;

        if (peek(p) == '-')
                p->pos++;
        if (peek(p) == '0')
                p->pos++;
        else if (is_digit(peek(p)))
                while (is_digit(peek(p)))
                        p->pos++;
        else
                return fail(p, -EINVAL, "invalid number");
        if (peek(p) == '.') {
                p->pos++;
                if (!is_digit(peek(p)))
                        return fail(p, -EINVAL, "invalid number");
                while (is_digit(peek(p)))
                        p->pos++;
        }
        if (peek(p) == 'e' || peek(p) == 'E') {
                p->pos++;
                if (peek(p) == '+' || peek(p) == '-')
                        p->pos++;
                if (!is_digit(peek(p)))
                        return fail(p, -EINVAL, "invalid number");
                while (is_digit(peek(p)))
                        p->pos++;
        }
        v->len = p->pos - start;
        v->str = text_dup(p->s + start, v->len);
        return v->str ? 0 : fail(p, -ENOMEM, "out of memory");
}

static int parse_value(struct parser *p, struct mmds_json **out);

static int parse_array(struct parser *p, struct mmds_json *v)
{
        p->pos++;
        skip_ws(p);
        if (peek(p) == ']') {
                p->pos++;
                return 0;
        }
        for (;;) {
                if (grow((void **)&v->items, &v->cap, v->len, sizeof(*v->items)))
                        return fail(p, -ENOMEM, "out of memory");
                /* Counted before it is parsed: a half-built item is freed with the array. */
                v->items[v->len] = NULL;
                if (parse_value(p, &v->items[v->len++]))
                        return p->err;
                skip_ws(p);
                if (peek(p) == ',') {
                        p->pos++;
                        continue;
                }
                if (peek(p) == ']') {
                        p->pos++;
                        return 0;
                }
                return fail(p, -EINVAL, "expected ',' or ']'");
        }
}

/* Members in the order given; the caller sorts them. */
static int parse_members(struct parser *p, struct mmds_json *v)
{
        p->pos++;
        skip_ws(p);
        if (peek(p) == '}') {
                p->pos++;
                return 0;
        }
        for (;;) {
                struct member *m;

                if (peek(p) != '"')
                        return fail(p, -EINVAL, "expected a key");
                if (grow((void **)&v->members, &v->cap, v->len, sizeof(*v->members)))
                        return fail(p, -ENOMEM, "out of memory");
                m = &v->members[v->len];
                m->val = NULL;
                m->order = v->len;
                if (parse_string(p, &m->key, &m->klen))
                        return p->err;
                v->len++;
                skip_ws(p);
                if (peek(p) != ':')
                        return fail(p, -EINVAL, "expected ':'");
                p->pos++;
                if (parse_value(p, &m->val))
                        return p->err;
                skip_ws(p);
                if (peek(p) == ',') {
                        p->pos++;
                        skip_ws(p);
                        continue;
                }
                if (peek(p) == '}') {
                        p->pos++;
                        return 0;
                }
                return fail(p, -EINVAL, "expected ',' or '}'");
        }
}

/* By key, equal keys in the order given. */
static int member_cmp(const void *a, const void *b)
{
        const struct member *x = a, *y = b;
        int c = key_cmp(x->key, x->klen, y->key, y->klen);

        if (c)
                return c;
        return x->order < y->order ? -1 : x->order > y->order;
}

/* Sorts by key; of equal keys the last one given stays (a BTreeMap insert replaces). */
static void sort_members(struct mmds_json *v)
{
        size_t w = 0;

        if (v->len < 2)
                return;
        qsort(v->members, v->len, sizeof(*v->members), member_cmp);
        for (size_t i = 0; i < v->len; i++) {
                if (w && key_cmp(v->members[w - 1].key, v->members[w - 1].klen, v->members[i].key,
                                 v->members[i].klen) == 0) {
                        free(v->members[w - 1].key);
                        mmds_json_free(v->members[w - 1].val);
                        v->members[w - 1] = v->members[i];
                        continue;
                }
                v->members[w++] = v->members[i];
        }
        v->len = w;
}

static int parse_value(struct parser *p, struct mmds_json **out)
{
        struct mmds_json *v;
        char c;

        skip_ws(p);
        c = peek(p);
        if (at_end(p))
                return fail(p, -EINVAL, "EOF while parsing a value");
        v = node_new(MMDS_JSON_NULL);
        if (!v)
                return fail(p, -ENOMEM, "out of memory");
        *out = v;
        if (c == '{' || c == '[') {
                if (++p->depth > MMDS_JSON_MAX_DEPTH)
                        return fail(p, -EINVAL, "recursion limit exceeded");
                v->type = c == '{' ? MMDS_JSON_OBJECT : MMDS_JSON_ARRAY;
                if (c == '{' ? parse_members(p, v) : parse_array(p, v))
                        return p->err;
                p->depth--;
                if (c == '{')
                        sort_members(v);
                return 0;
        }
        if (c == '"') {
                v->type = MMDS_JSON_STRING;
                return parse_string(p, &v->str, &v->len);
        }
        if (c == '-' || is_digit(c)) {
                v->type = MMDS_JSON_NUMBER;
                return parse_number(p, v);
        }
        static const struct {
                const char *word;
                enum mmds_json_type type;
        } words[] = {
            {"null", MMDS_JSON_NULL}, {"true", MMDS_JSON_TRUE}, {"false", MMDS_JSON_FALSE}};
        for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
                size_t n = strlen(words[i].word);

                if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i].word, n) == 0) {
                        p->pos += n;
                        v->type = words[i].type;
                        return 0;
                }
        }
        return fail(p, -EINVAL, "expected a value");
}

int mmds_json_parse(const char *text, size_t len, struct mmds_json **out, char *msg, size_t msg_cap)
{
        struct parser p = {.s = text, .len = len, .msg = msg, .msg_cap = msg_cap};
        struct mmds_json *v = NULL;

        if (msg_cap)
                msg[0] = '\0';
        if (!parse_value(&p, &v)) {
                skip_ws(&p);
                if (!at_end(&p))
                        fail(&p, -EINVAL, "trailing characters");
        }
        if (p.err) {
                mmds_json_free(v);
                return p.err;
        }
        *out = v;
        return 0;
}

/* ---- printing ---- */

static void print_string(const char *s, size_t n, struct mmds_buf *b)
{
        static const char hex[] = "0123456789abcdef";
        size_t run = 0;

        buf_byte(b, '"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[6];
                size_t en = 2;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                mmds_buf_append(b, s + run, i - run);
                run = i + 1;
                esc[0] = '\\';
                switch (c) {
                case '"':
                case '\\':
                        esc[1] = (char)c;
                        break;
                case '\b':
                        esc[1] = 'b';
                        break;
                case '\f':
                        esc[1] = 'f';
                        break;
                case '\n':
                        esc[1] = 'n';
                        break;
                case '\r':
                        esc[1] = 'r';
                        break;
                case '\t':
                        esc[1] = 't';
                        break;
                default:
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        en = 6;
                }
                mmds_buf_append(b, esc, en);
        }
        mmds_buf_append(b, s + run, n - run);
        buf_byte(b, '"');
}

void mmds_json_print(const struct mmds_json *v, struct mmds_buf *b)
{
        switch (v->type) {
        case MMDS_JSON_NULL:
                mmds_buf_append(b, "null", 4);
                return;
        case MMDS_JSON_TRUE:
                mmds_buf_append(b, "true", 4);
                return;
        case MMDS_JSON_FALSE:
                mmds_buf_append(b, "false", 5);
                return;
        case MMDS_JSON_NUMBER:
                mmds_buf_append(b, v->str, v->len);
                return;
        case MMDS_JSON_STRING:
                print_string(v->str, v->len, b);
                return;
        case MMDS_JSON_ARRAY:
                buf_byte(b, '[');
                for (size_t i = 0; i < v->len; i++) {
                        if (i)
                                buf_byte(b, ',');
                        mmds_json_print(v->items[i], b);
                }
                buf_byte(b, ']');
                return;
        case MMDS_JSON_OBJECT:
                buf_byte(b, '{');
                for (size_t i = 0; i < v->len; i++) {
                        if (i)
                                buf_byte(b, ',');
                        print_string(v->members[i].key, v->members[i].klen, b);
                        buf_byte(b, ':');
                        mmds_json_print(v->members[i].val, b);
                }
                buf_byte(b, '}');
                return;
        }
}

static size_t string_len(const char *s, size_t n)
{
        size_t len = 2;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' ||
                    c == '\t')
                        len += 2;
                else if (c < 0x20)
                        len += 6;
                else
                        len++;
        }
        return len;
}

size_t mmds_json_printed_len(const struct mmds_json *v)
{
        size_t len;

        switch (v->type) {
        case MMDS_JSON_NULL:
        case MMDS_JSON_TRUE:
                return 4;
        case MMDS_JSON_FALSE:
                return 5;
        case MMDS_JSON_NUMBER:
                return v->len;
        case MMDS_JSON_STRING:
                return string_len(v->str, v->len);
        case MMDS_JSON_ARRAY:
                len = 2 + (v->len ? v->len - 1 : 0);
                for (size_t i = 0; i < v->len; i++)
                        len += mmds_json_printed_len(v->items[i]);
                return len;
        case MMDS_JSON_OBJECT:
                len = 2 + (v->len ? v->len - 1 : 0);
                for (size_t i = 0; i < v->len; i++)
                        len += string_len(v->members[i].key, v->members[i].klen) + 1 +
                               mmds_json_printed_len(v->members[i].val);
                return len;
        }
        return 0;
}

/* ---- merge patch ---- */

static void remove_member(struct mmds_json *o, size_t i)
{
        free(o->members[i].key);
        mmds_json_free(o->members[i].val);
        memmove(&o->members[i], &o->members[i + 1], (o->len - i - 1) * sizeof(*o->members));
        o->len--;
}

/* Takes the node of patch p apart: its members were moved out (or freed). */
static void free_shell(struct mmds_json *p)
{
        free(p->members);
        free(p);
}

int mmds_json_merge_patch(struct mmds_json **target, struct mmds_json *patch)
{
        struct mmds_json *t = *target;
        int r = 0;

        if (patch->type != MMDS_JSON_OBJECT) {
                mmds_json_free(t);
                *target = patch;
                return 0;
        }
        if (t->type != MMDS_JSON_OBJECT) {
                struct mmds_json *o = node_new(MMDS_JSON_OBJECT);

                if (!o) {
                        mmds_json_free(patch);
                        return -ENOMEM;
                }
                mmds_json_free(t);
                *target = t = o;
        }
        for (size_t i = 0; i < patch->len; i++) {
                struct member *m = &patch->members[i];
                bool found;
                size_t at = find_key(t, m->key, m->klen, &found);

                if (r || m->val->type == MMDS_JSON_NULL) {
                        if (!r && found)
                                remove_member(t, at);
                        free(m->key);
                        mmds_json_free(m->val);
                        continue;
                }
                if (!found) {
                        struct mmds_json *placeholder = node_new(MMDS_JSON_NULL);

                        if (!placeholder ||
                            grow((void **)&t->members, &t->cap, t->len, sizeof(*t->members))) {
                                free(placeholder);
                                r = -ENOMEM;
                                free(m->key);
                                mmds_json_free(m->val);
                                continue;
                        }
                        memmove(&t->members[at + 1], &t->members[at],
                                (t->len - at) * sizeof(*t->members));
                        t->members[at] = (struct member){m->key, m->klen, placeholder, 0};
                        t->len++;
                        m->key = NULL;
                }
                free(m->key);
                r = mmds_json_merge_patch(&t->members[at].val, m->val);
        }
        free_shell(patch);
        return r;
}

/* ---- JSON pointer ---- */

/* serde_json's rule: decimal, no sign, no leading zero (but "0" itself). */
static bool parse_index(const char *s, size_t n, size_t *out)
{
        size_t v = 0;

        if (!n || (s[0] == '0' && n > 1))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]) || v > (SIZE_MAX - 9) / 10)
                        return false;
                v = v * 10 + (size_t)(s[i] - '0');
        }
        *out = v;
        return true;
}

const struct mmds_json *mmds_json_pointer(const struct mmds_json *root, const char *ptr, size_t len)
{
        const struct mmds_json *v = root;
        size_t pos = 0;
        char *tok;

        if (!len)
                return root;
        if (ptr[0] != '/')
                return NULL;
        tok = malloc(len);
        if (!tok)
                return NULL;
        while (v && pos < len) {
                size_t start = ++pos, n = 0;
                bool found;

                while (pos < len && ptr[pos] != '/')
                        pos++;
                /* "~1" is '/', then "~0" is '~' (in this order, as RFC 6901 says). */
                for (size_t i = start; i < pos; i++) {
                        if (ptr[i] == '~' && i + 1 < pos &&
                            (ptr[i + 1] == '1' || ptr[i + 1] == '0')) {
                                tok[n++] = ptr[i + 1] == '1' ? '/' : '~';
                                i++;
                        } else {
                                tok[n++] = ptr[i];
                        }
                }
                if (v->type == MMDS_JSON_OBJECT) {
                        size_t at = find_key(v, tok, n, &found);
                        v = found ? v->members[at].val : NULL;
                } else if (v->type == MMDS_JSON_ARRAY) {
                        size_t idx;
                        v = parse_index(tok, n, &idx) && idx < v->len ? v->items[idx] : NULL;
                } else {
                        v = NULL;
                }
        }
        free(tok);
        return v;
}

/* ---- IMDS ---- */

bool mmds_json_print_imds(const struct mmds_json *v, struct mmds_buf *b)
{
        if (v->type == MMDS_JSON_STRING) {
                mmds_buf_append(b, v->str, v->len);
                return true;
        }
        if (v->type != MMDS_JSON_OBJECT)
                return false;
        for (size_t i = 0; i < v->len; i++) {
                if (i)
                        buf_byte(b, '\n');
                mmds_buf_append(b, v->members[i].key, v->members[i].klen);
                if (v->members[i].val->type == MMDS_JSON_OBJECT)
                        buf_byte(b, '/');
        }
        return true;
}
