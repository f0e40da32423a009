#include "mmds_http.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TOKEN_PATH  "/latest/api/token"
#define NOT_ALLOWED "Not allowed HTTP method."

#define CT_TEXT "text/plain"
#define CT_JSON "application/json"

enum method { M_GET, M_PUT, M_PATCH, M_DELETE };

/* A header value as sent: the name and value (trimmed), or none (n == 0 and !set). */
struct field {
        bool set;
        const char *name, *value;
        size_t name_len, value_len;
};

struct request {
        enum method method;
        bool http11;
        const char *uri;
        size_t uri_len;
        bool accept_json;
        uint32_t content_length;
        struct field token;     /* X-metadata-token / X-aws-ec2-metadata-token: the last one */
        struct field ttl;       /* ...-token-ttl-seconds: the last one */
        struct field forwarded; /* X-Forwarded-For */
};

/* An answer that could not even be parsed comes as micro_http writes it: HTTP/1.1, and
 * the response's default type, application/json, over a text body. */
struct answer {
        bool http11;
        unsigned status;
        const char *type;
        const char *allow;      /* "GET, PUT" or NULL */
        const struct field *hd; /* a header to echo (the token's ttl) or NULL */
        const char *body;
        size_t len;
};

static void emit(struct mmds_buf *out, const struct answer *a)
{
        char head[160];
        int n = snprintf(head, sizeof(head), "HTTP/1.%d %03u \r\nConnection: keep-alive\r\n",
                         a->http11 ? 1 : 0, a->status);

        mmds_buf_append(out, head, (size_t)n);
        if (a->allow) {
                n = snprintf(head, sizeof(head), "Allow: %s\r\n", a->allow);
                mmds_buf_append(out, head, (size_t)n);
        }
        if (a->hd) {
                mmds_buf_append(out, a->hd->name, a->hd->name_len);
                mmds_buf_append(out, ": ", 2);
                mmds_buf_append(out, a->hd->value, a->hd->value_len);
                mmds_buf_append(out, "\r\n", 2);
        }
        n = snprintf(head, sizeof(head), "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n", a->type,
                     a->len);
        mmds_buf_append(out, head, (size_t)n);
        mmds_buf_append(out, a->body, a->len);
}

/* A plain-text answer whose body is printf-formatted (bounded: the parts are bounded by the
 * 2500-byte request they come from). */
static void text(struct mmds_buf *out, bool http11, unsigned status, const char *type,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void text(struct mmds_buf *out, bool http11, unsigned status, const char *type,
                 const char *fmt, ...)
{
        char body[6144];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t)n >= sizeof(body))
                n = sizeof(body) - 1;
        emit(out, &(struct answer){http11, status, type, NULL, NULL, body, (size_t)n});
}

/* ---- parsing (micro_http's rules) ---- */

enum parse_error {
        P_OK,
        P_INVALID_REQUEST, /* 400 Invalid request. */
        P_METHOD,          /* 501 */
        P_VERSION,         /* 501 */
        P_URI_EMPTY,       /* 400 */
        P_URI_UTF8,        /* 400 */
        P_HEADER,          /* 400 Invalid header. Reason: <msg> */
};

static const char *find(const char *s, size_t n, const char *seq, size_t m)
{
        for (size_t i = 0; i + m <= n; i++)
                if (memcmp(s + i, seq, m) == 0)
                        return s + i;
        return NULL;
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
        while (*n && is_ws(**s)) {
                (*s)++;
                (*n)--;
        }
        while (*n && is_ws((*s)[*n - 1]))
                (*n)--;
}

static bool is(const char *s, size_t n, const char *word)
{
        return n == strlen(word) && memcmp(s, word, n) == 0;
}

static bool is_nocase(const char *s, size_t n, const char *word)
{
        return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* Rust's u32 parsing: an optional '+', then decimal digits, no overflow. */
static bool parse_u32(const char *s, size_t n, uint32_t *out)
{
        uint64_t v = 0;

        if (n && s[0] == '+') {
                s++;
                n--;
        }
        if (!n)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (uint64_t)(s[i] - '0');
                if (v > UINT32_MAX)
                        return false;
        }
        *out = (uint32_t)v;
        return true;
}

static void set_field(struct field *f, const char *name, size_t nl, const char *value, size_t vl)
{
        *f = (struct field){true, name, value, nl, vl};
}

/* Accept-Encoding: micro_http refuses an empty one and those ruling out the identity. */
static enum parse_error accept_encoding(const char *v, size_t n, char *msg, size_t cap)
{
        const char *p = v, *end = v + n;

        if (!n)
                return P_INVALID_REQUEST;
        while (p <= end) {
                const char *comma = memchr(p, ',', (size_t)(end - p));
                const char *e = comma ? comma : end;
                const char *t = p;
                size_t tn = (size_t)(e - p);

                trim(&t, &tn);
                if (is(t, tn, "identity;q=0") ||
                    (is(t, tn, "*;q=0") && !find(v, n, "identity", 8))) {
                        snprintf(msg, cap, "Invalid value. Key:Accept-Encoding; Value:%.*s",
                                 (int)(e - p), p);
                        return P_HEADER;
                }
                if (!comma)
                        break;
                p = comma + 1;
        }
        return P_OK;
}

static enum parse_error header_line(struct request *rq, const char *line, size_t n, char *msg,
                                    size_t cap)
{
        const char *colon = memchr(line, ':', n), *name = line, *value;
        size_t nl, vl;

        if (!colon) {
                snprintf(msg, cap, "Header is incorrectly formatted. Key: %.*s", (int)n, line);
                return P_HEADER;
        }
        nl = (size_t)(colon - line);
        value = colon + 1;
        vl = n - nl - 1;
        trim(&name, &nl);
        if (is_nocase(name, nl, "content-length")) {
                const char *t = value;
                size_t tn = vl;

                trim(&t, &tn);
                if (!parse_u32(t, tn, &rq->content_length)) {
                        snprintf(msg, cap, "Invalid value. Key:%.*s; Value:%.*s",
                                 (int)(colon - line), line, (int)vl, value);
                        return P_HEADER;
                }
                return P_OK;
        }
        trim(&value, &vl);
        if (is_nocase(name, nl, "accept")) {
                /* Other media types are ignored: the answer stays text. */
                if (is(value, vl, "application/json"))
                        rq->accept_json = true;
                else if (is(value, vl, "text/plain"))
                        rq->accept_json = false;
                return P_OK;
        }
        if (is_nocase(name, nl, "accept-encoding"))
                return accept_encoding(value, vl, msg, cap);
        if (is_nocase(name, nl, "content-type") || is_nocase(name, nl, "transfer-encoding") ||
            is_nocase(name, nl, "expect") || is_nocase(name, nl, "server"))
                return P_OK; /* what micro_http accepts or ignores, without a use here */
        if (is_nocase(name, nl, "x-metadata-token") ||
            is_nocase(name, nl, "x-aws-ec2-metadata-token"))
                set_field(&rq->token, name, nl, value, vl);
        else if (is_nocase(name, nl, "x-metadata-token-ttl-seconds") ||
                 is_nocase(name, nl, "x-aws-ec2-metadata-token-ttl-seconds"))
                set_field(&rq->ttl, name, nl, value, vl);
        else if (is_nocase(name, nl, "x-forwarded-for") && !rq->forwarded.set)
                set_field(&rq->forwarded, name, nl, value, vl);
        return P_OK;
}

static enum parse_error parse(const char *s, size_t n, struct request *rq, char *msg, size_t cap)
{
        static const struct {
                const char *word;
                enum method m;
        } methods[] = {{"GET", M_GET}, {"PUT", M_PUT}, {"PATCH", M_PATCH}, {"DELETE", M_DELETE}};
        const char *eol = find(s, n, "\r\n", 2), *sp, *uri, *ver, *hdr, *end;
        size_t line, i;

        memset(rq, 0, sizeof(*rq));
        if (!eol)
                return P_INVALID_REQUEST;
        line = (size_t)(eol - s);
        /* "GET" + SP + "HTTP/1.0" + a URI of one character and the second SP */
        if (line < 14 || !(sp = memchr(s, ' ', line)))
                return P_INVALID_REQUEST;
        uri = sp + 1;
        if (!(ver = memchr(uri, ' ', (size_t)(eol - uri))))
                return P_INVALID_REQUEST;
        for (i = 0; i < ARRAY_SIZE(methods); i++)
                if (is(s, (size_t)(sp - s), methods[i].word))
                        break;
        if (i == ARRAY_SIZE(methods))
                return P_METHOD;
        rq->method = methods[i].m;
        rq->uri = uri;
        rq->uri_len = (size_t)(ver - uri);
        if (!rq->uri_len)
                return P_URI_EMPTY;
        if (!mmds_utf8_valid(uri, rq->uri_len))
                return P_URI_UTF8;
        ver++;
        if (is(ver, (size_t)(eol - ver), "HTTP/1.1"))
                rq->http11 = true;
        else if (!is(ver, (size_t)(eol - ver), "HTTP/1.0"))
                return P_VERSION;
        /* The headers end at the first CRLF CRLF, counting the request line's CRLF. */
        end = find(eol, (size_t)(s + n - eol), "\r\n\r\n", 4);
        if (!end)
                return P_INVALID_REQUEST;
        hdr = eol + 2;
        if (end > eol) {
                const char *p = hdr, *stop = end;

                if (!mmds_utf8_valid(hdr, (size_t)(stop - hdr)))
                        return P_INVALID_REQUEST;
                while (p < stop) {
                        const char *crlf = find(p, (size_t)(stop - p), "\r\n", 2);
                        const char *e = crlf ? crlf : stop;
                        enum parse_error r;

                        if (e == p)
                                break; /* an empty line ends the headers */
                        r = header_line(rq, p, (size_t)(e - p), msg, cap);
                        if (r)
                                return r;
                        p = crlf ? crlf + 2 : stop;
                }
        }
        /* A request ends at its blank line: it cannot carry the body it announces. */
        if (rq->content_length)
                return P_INVALID_REQUEST;
        return P_OK;
}

static void parse_failure(struct mmds_buf *out, enum parse_error e, const char *msg)
{
        switch (e) {
        case P_METHOD:
                text(out, true, 501, CT_JSON, "Invalid HTTP Method: Unsupported HTTP method.");
                return;
        case P_VERSION:
                text(out, true, 501, CT_JSON, "Invalid HTTP Version: Unsupported HTTP version.");
                return;
        case P_URI_EMPTY:
                text(out, true, 400, CT_JSON, "Invalid URI: Empty URI not allowed.");
                return;
        case P_URI_UTF8:
                text(out, true, 400, CT_JSON, "Invalid URI: Cannot parse URI as UTF-8.");
                return;
        case P_HEADER:
                text(out, true, 400, CT_JSON, "Invalid header. Reason: %s", msg);
                return;
        default:
                text(out, true, 400, CT_JSON, "Invalid request.");
                return;
        }
}

/* ---- answers (Firecracker's MMDS rules) ---- */

/* The path of the URI: an absolute form's ("http://host/p" -> "/p"), or the URI itself
 * when it starts with '/'; "" otherwise. */
static void abs_path(const struct request *rq, const char **p, size_t *n)
{
        const char *u = rq->uri;
        size_t len = rq->uri_len;

        *p = u;
        *n = 0;
        if (len >= 7 && memcmp(u, "http://", 7) == 0) {
                const char *slash = memchr(u + 7, '/', len - 7);

                if (slash) {
                        *p = slash;
                        *n = (size_t)(u + len - slash);
                }
                return;
        }
        if (len && u[0] == '/')
                *n = len;
}

/* Collapses runs of '/' (the store is addressed by a strict JSON pointer); dst holds n. */
static size_t sanitize(const char *p, size_t n, char *dst)
{
        size_t w = 0;

        for (size_t i = 0; i < n; i++)
                if (p[i] != '/' || !w || dst[w - 1] != '/')
                        dst[w++] = p[i];
        return w;
}

static void get(struct mmds *m, const struct request *rq, const char *path, size_t n,
                struct mmds_buf *out)
{
        const char *type = rq->accept_json ? CT_JSON : CT_TEXT;
        struct mmds_buf body = {0};
        char clean[2500];
        size_t cn = sanitize(path, n, clean);
        bool v2 = mmds_get_version(m) == MMDS_V2;

        if (!rq->token.set) {
                mmds_count(m, MMDS_RX_NO_TOKEN, 1);
                if (v2) {
                        text(out, rq->http11, 401, CT_TEXT,
                             "No MMDS token provided. Use `X-metadata-token` or "
                             "`X-aws-ec2-metadata-token` header to specify the session token.");
                        return;
                }
        } else if (!mmds_check_token(m, rq->token.value, rq->token.value_len)) {
                mmds_count(m, MMDS_RX_INVALID_TOKEN, 1);
                if (v2) {
                        text(out, rq->http11, 401, CT_TEXT, "MMDS token not valid.");
                        return;
                }
        }
        switch (mmds_lookup(m, clean, cn, rq->accept_json, &body)) {
        case MMDS_LOOKUP_OK:
                if (body.failed)
                        text(out, rq->http11, 500, CT_TEXT, "Out of memory.");
                else
                        emit(out, &(struct answer){rq->http11, 200, type, NULL, NULL, body.data,
                                                   body.len});
                break;
        case MMDS_LOOKUP_NOT_FOUND:
                text(out, rq->http11, 404, CT_TEXT, "Resource not found: %.*s.", (int)n, path);
                break;
        case MMDS_LOOKUP_UNSUPPORTED:
                text(out, rq->http11, 501, CT_TEXT,
                     "Cannot retrieve value. The value has an unsupported type.");
                break;
        }
        mmds_buf_free(&body);
}

static void put(struct mmds *m, const struct request *rq, const char *path, size_t n,
                struct mmds_buf *out)
{
        char clean[2500], token[MMDS_TOKEN_LEN + 1], ttl_text[16];
        size_t cn = sanitize(path, n, clean);
        struct field echo;
        uint32_t ttl;

        if (rq->forwarded.set) {
                text(out, rq->http11, 400, CT_TEXT,
                     "Invalid header. Reason: Unsupported header name. Key: %.*s",
                     (int)rq->forwarded.name_len, rq->forwarded.name);
                return;
        }
        if (!is(clean, cn, TOKEN_PATH)) {
                text(out, rq->http11, 404, CT_TEXT, "Resource not found: %.*s.", (int)n, path);
                return;
        }
        if (!rq->ttl.set) {
                text(out, rq->http11, 400, CT_TEXT,
                     "Token time to live value not found. Use `X-metadata-token-ttl-seconds` "
                     "or `X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's "
                     "lifetime.");
                return;
        }
        if (!parse_u32(rq->ttl.value, rq->ttl.value_len, &ttl)) {
                text(out, rq->http11, 400, CT_TEXT,
                     "Invalid header. Reason: Invalid value. Key:%.*s; Value:%.*s",
                     (int)rq->ttl.name_len, rq->ttl.name, (int)rq->ttl.value_len, rq->ttl.value);
                return;
        }
        if (mmds_new_token(m, ttl, token)) {
                text(out, rq->http11, 400, CT_TEXT,
                     "Invalid time to live value provided for token: %u. Please provide a value "
                     "between %u and %u.",
                     ttl, MMDS_TOKEN_MIN_TTL_S, MMDS_TOKEN_MAX_TTL_S);
                return;
        }
        /* The answer names the lifetime in the header the request used. */
        echo = rq->ttl;
        echo.value_len = (size_t)snprintf(ttl_text, sizeof(ttl_text), "%u", ttl);
        echo.value = ttl_text;
        emit(out, &(struct answer){rq->http11, 200, CT_TEXT, NULL, &echo, token, MMDS_TOKEN_LEN});
}

size_t mmds_http_request_end(const uint8_t *buf, size_t len)
{
        if (len <= 2)
                return 0;
        for (size_t i = 0; i + 1 < len; i++) {
                if (buf[i] != '\n')
                        continue;
                if (buf[i + 1] == '\n')
                        return i + 2;
                if (i + 3 <= len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
                        return i + 3;
        }
        return 0;
}

void mmds_http_respond(struct mmds *m, const uint8_t *req, size_t len, struct mmds_buf *out)
{
        struct request rq;
        char msg[3000];
        const char *path;
        size_t n;
        enum parse_error e;

        /* Requests come from a 2500-byte receive buffer; anything longer is not one. */
        if (len > 2500) {
                text(out, true, 400, CT_JSON, "Invalid request.");
                return;
        }
        e = parse((const char *)req, len, &rq, msg, sizeof(msg));
        if (e) {
                parse_failure(out, e, msg);
                return;
        }
        abs_path(&rq, &path, &n);
        if (!n) {
                text(out, rq.http11, 400, CT_TEXT, "Invalid URI.");
                return;
        }
        if (rq.method == M_GET)
                get(m, &rq, path, n, out);
        else if (rq.method == M_PUT)
                put(m, &rq, path, n, out);
        else
                emit(out, &(struct answer){rq.http11, 405, CT_TEXT, "GET, PUT", NULL, NOT_ALLOWED,
                                           sizeof(NOT_ALLOWED) - 1});
}
