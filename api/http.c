#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* ---- the head ---- */

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(char c)
{
        return c == ' ' || c == '\t';
}

/* Past the empty lines (CRLF or LF) at buf[0, len); *more when a lone CR ends it. */
static size_t skip_empty_lines(const char *buf, size_t len, bool *more)
{
        size_t i = 0;

        *more = false;
        while (i < len) {
                if (buf[i] == '\n') {
                        i++;
                } else if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') {
                        i += 2;
                } else {
                        *more = buf[i] == '\r' && i + 1 == len;
                        break;
                }
        }
        return i;
}

size_t http_head_end(const char *buf, size_t len, size_t searched, size_t *skip)
{
        bool more;
        size_t start = skip_empty_lines(buf, len, &more);
        const char *p = buf + start, *end = buf + len;

        *skip = start;
        if (more)
                return 0;
        /* The end's three bytes may begin up to two before what was searched. */
        if (searched > start + 2)
                p = buf + searched - 2;
        /* The head ends at an empty line: LF then (CR) LF. */
        while ((p = memchr(p, '\n', (size_t)(end - p)))) {
                p++;
                if (p < end && *p == '\n')
                        return (size_t)(p + 1 - buf) - start;
                if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
                        return (size_t)(p + 2 - buf) - start;
        }
        return 0;
}

bool http_has_line(const char *buf, size_t len)
{
        bool more;
        size_t start = skip_empty_lines(buf, len, &more);

        return memchr(buf + start, '\n', len - start) != NULL;
}

static int fail(struct http_error *err, unsigned status, const char *msg)
{
        err->status = status;
        err->msg = msg;
        return -1;
}

static const char bad_line[] = "The HTTP request line is malformed.";
static const char bad_header[] = "A header line of the HTTP request is malformed.";
static const char bad_length[] = "Invalid Content-Length header.";
static const char bad_coding[] = "Invalid Transfer-Encoding header: chunked must be its last "
                                 "coding, once.";

/* The next line at *p (before end): NUL-terminated in place without its CR LF or LF; NULL
 * when none is left. */
static char *next_line(char **p, char *end)
{
        char *line = *p, *nl;

        if (line >= end)
                return NULL;
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
                nl = end; /* not reached: the head ends with an empty line */
        *p = nl + 1;
        if (nl > line && nl[-1] == '\r')
                nl--;
        *nl = '\0';
        return line;
}

/* Calls fn for each element of a comma-separated list (OWS trimmed, empty ones skipped). */
static int for_each_element(char *v, int (*fn)(const char *el, void *opaque), void *opaque)
{
        char *save = NULL;

        for (char *el = strtok_r(v, ",", &save); el; el = strtok_r(NULL, ",", &save)) {
                char *e = el + strlen(el);
                int r;

                while (is_ows(*el))
                        el++;
                while (e > el && is_ows(e[-1]))
                        *--e = '\0';
                if (!*el)
                        continue;
                r = fn(el, opaque);
                if (r)
                        return r;
        }
        return 0;
}

struct head_state {
        struct http_request *req;
        bool conn_close, conn_keep_alive;
        unsigned not_implemented; /* a coding other than chunked/identity */
};

static int on_connection_token(const char *el, void *opaque)
{
        struct head_state *st = opaque;

        if (strcasecmp(el, "close") == 0)
                st->conn_close = true;
        else if (strcasecmp(el, "keep-alive") == 0)
                st->conn_keep_alive = true;
        return 0;
}

static int on_coding(const char *el, void *opaque)
{
        struct head_state *st = opaque;

        if (st->req->chunked)
                return -1; /* anything after chunked, chunked twice included */
        if (strcasecmp(el, "chunked") == 0)
                st->req->chunked = true;
        else if (strcasecmp(el, "identity") != 0)
                st->not_implemented++;
        return 0;
}

/* 1*DIGIT; *overflow past 2^64 - 1. */
static bool parse_decimal(const char *s, uint64_t *out, bool *overflow)
{
        uint64_t v = 0;

        *overflow = false;
        if (!*s)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
                        *overflow = true;
        }
        *out = v;
        return true;
}

/* The same number, whatever leading zeros (also beyond 2^64). */
static bool same_decimal(const char *a, const char *b)
{
        while (*a == '0' && a[1])
                a++;
        while (*b == '0' && b[1])
                b++;
        return strcmp(a, b) == 0;
}

static int parse_header(char *line, struct head_state *st, struct http_error *err)
{
        struct http_request *req = st->req;
        char *colon = strchr(line, ':'), *v, *e;

        if (!colon || colon == line)
                return fail(err, 400, bad_header);
        for (char *c = line; c < colon; c++)
                if (!is_tchar((unsigned char)*c))
                        return fail(err, 400, bad_header); /* whitespace before ':' too */
        *colon = '\0';
        v = colon + 1;
        while (is_ows(*v))
                v++;
        e = v + strlen(v);
        while (e > v && is_ows(e[-1]))
                *--e = '\0';
        if (strcasecmp(line, "Content-Length") == 0) {
                uint64_t n;
                bool overflow;

                if (!parse_decimal(v, &n, &overflow))
                        return fail(err, 400, bad_length);
                if (req->has_length) {
                        if (!same_decimal(v, req->length_text))
                                return fail(err, 400, "Two different Content-Length headers.");
                        return 0;
                }
                req->has_length = true;
                req->length = n;
                req->length_overflow = overflow;
                req->length_text = v;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
                if (for_each_element(v, on_coding, st))
                        return fail(err, 400, bad_coding);
        } else if (strcasecmp(line, "Connection") == 0) {
                for_each_element(v, on_connection_token, st);
        } else if (strcasecmp(line, "Expect") == 0) {
                req->expect_continue = strcasecmp(v, "100-continue") == 0;
        }
        return 0;
}

static int parse_request_line(char *line, struct http_request *req, struct http_error *err)
{
        char *sp1 = strchr(line, ' '), *sp2, *v;

        if (!sp1 || sp1 == line)
                return fail(err, 400, bad_line);
        *sp1 = '\0';
        for (char *c = line; *c; c++)
                if (!is_tchar((unsigned char)*c))
                        return fail(err, 400, bad_line);
        req->method = line;
        req->target = sp1 + 1;
        sp2 = strchr(req->target, ' ');
        if (!sp2 || sp2 == req->target)
                return fail(err, 400, bad_line);
        *sp2 = '\0';
        for (unsigned char *c = (unsigned char *)req->target; *c; c++)
                if (*c <= ' ' || *c == 0x7f)
                        return fail(err, 400, bad_line);
        v = sp2 + 1;
        if (strncmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
            v[7] > '9' || v[8])
                return fail(err, 400, bad_line);
        if (v[5] != '1')
                return fail(err, 505,
                            "HTTP version not supported: only HTTP/1.0 and HTTP/1.1 are.");
        req->minor = (unsigned)(v[7] - '0');
        return 0;
}

int http_parse_head(char *buf, size_t len, struct http_request *req, struct http_error *err)
{
        struct head_state st = {.req = req};
        char *p = buf, *end = buf + len, *line;
        char *first_nl = memchr(buf, '\n', len);

        memset(req, 0, sizeof(*req));
        /* Obsolete line folding (a header line that starts with whitespace continues the one
         * before it): read as a space, as RFC 9112 allows. Not before the first header. */
        for (char *c = first_nl; c && c + 1 < end; c = memchr(c + 1, '\n', (size_t)(end - c - 1))) {
                if (!is_ows(c[1]))
                        continue;
                if (c == first_nl)
                        return fail(err, 400, bad_header);
                if (c > buf && c[-1] == '\r')
                        c[-1] = ' ';
                *c = ' ';
        }
        line = next_line(&p, end);
        if (!line || parse_request_line(line, req, err))
                return line ? -1 : fail(err, 400, bad_line);
        while ((line = next_line(&p, end)) && *line)
                if (parse_header(line, &st, err))
                        return -1;
        if (st.not_implemented)
                return fail(err, 501, "Transfer-Encoding other than chunked is not implemented.");
        if (req->chunked && req->has_length)
                return fail(err, 400,
                            "Both Content-Length and Transfer-Encoding: chunked: the body's "
                            "length is ambiguous.");
        req->keep_alive = req->minor >= 1 ? !st.conn_close : st.conn_keep_alive && !st.conn_close;
        /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
        if (req->minor == 0 && req->chunked)
                req->keep_alive = false;
        if (req->minor == 0)
                req->expect_continue = false;
        return 0;
}

/* ---- the target ---- */

int http_decode_path(const char *target, char *buf, size_t cap)
{
        size_t n = 0;

        for (const char *p = target; *p && *p != '?'; p++) {
                char c = *p;
                int hi, lo;

                if (c == '%' && (hi = hex_digit(p[1])) >= 0 && (lo = hex_digit(p[2])) >= 0) {
                        c = (char)(hi << 4 | lo);
                        p += 2;
                        if (!c)
                                return -1;
                }
                if (n + 1 >= cap)
                        return -1;
                buf[n++] = c;
        }
        buf[n] = '\0';
        return 0;
}

/* ---- chunked bodies ---- */

enum { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER, CHUNK_DONE };

/* The line at in[pos, len): its length with its LF, 0 when it is not whole yet. */
static size_t line_at(const char *in, size_t pos, size_t len)
{
        const char *nl = memchr(in + pos, '\n', len - pos);

        return nl ? (size_t)(nl - (in + pos)) + 1 : 0;
}

/* "1*HEXDIG [ext] (CR) LF": an extension (';' or whitespace, then anything) is ignored. */
static bool parse_chunk_size(const char *s, size_t n, uint64_t *out)
{
        uint64_t v = 0;
        size_t i = 0;

        if (n && s[n - 1] == '\n')
                n--;
        if (n && s[n - 1] == '\r')
                n--;
        for (int d; i < n && (d = hex_digit(s[i])) >= 0; i++) {
                if (v >> 60)
                        return false; /* beyond 2^64 - 1 */
                v = v << 4 | (unsigned)d;
        }
        if (i == 0 || (i < n && s[i] != ';' && !is_ows(s[i])))
                return false;
        for (; i < n; i++)
                if (s[i] == '\r' || s[i] == '\0')
                        return false;
        *out = v;
        return true;
}

enum http_chunk_result http_chunked_step(struct http_chunked *c, const char *in, size_t len,
                                         size_t *used, const char **data, size_t *data_len)
{
        size_t pos = 0, n;

        for (;;) {
                switch (c->state) {
                case CHUNK_SIZE:
                        n = line_at(in, pos, len);
                        if (!n)
                                goto more;
                        if (!parse_chunk_size(in + pos, n, &c->left))
                                return HTTP_CHUNK_ERROR;
                        pos += n;
                        c->state = c->left ? CHUNK_DATA : CHUNK_TRAILER;
                        break;
                case CHUNK_DATA:
                        n = len - pos < c->left ? len - pos : (size_t)c->left;
                        if (!n)
                                goto more;
                        *data = in + pos;
                        *data_len = n;
                        *used = pos + n;
                        c->left -= n;
                        if (!c->left)
                                c->state = CHUNK_DATA_END;
                        return HTTP_CHUNK_DATA;
                case CHUNK_DATA_END:
                        if (pos < len && in[pos] == '\n') {
                                pos++;
                        } else if (pos + 1 < len && in[pos] == '\r' && in[pos + 1] == '\n') {
                                pos += 2;
                        } else if (pos == len || (pos + 1 == len && in[pos] == '\r')) {
                                goto more;
                        } else {
                                return HTTP_CHUNK_ERROR;
                        }
                        c->state = CHUNK_SIZE;
                        break;
                case CHUNK_TRAILER:
                        n = line_at(in, pos, len);
                        if (!n)
                                goto more;
                        pos += n;
                        /* Trailer fields are read and ignored; an empty line ends them. */
                        if (n == 1 || (n == 2 && in[pos - 2] == '\r')) {
                                c->state = CHUNK_DONE;
                                *used = pos;
                                return HTTP_CHUNK_DONE;
                        }
                        break;
                default:
                        *used = 0;
                        return HTTP_CHUNK_DONE;
                }
        }
more:
        *used = pos;
        return HTTP_CHUNK_MORE;
}

/* ---- answers ---- */

const char *http_reason(unsigned status)
{
        switch (status) {
        case 100:
                return "Continue";
        case 200:
                return "OK";
        case 204:
                return "No Content";
        case 400:
                return "Bad Request";
        case 408:
                return "Request Timeout";
        case 413:
                return "Content Too Large";
        case 414:
                return "URI Too Long";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        case 505:
                return "HTTP Version Not Supported";
        default:
                return "";
        }
}

size_t http_answer_head(char *buf, size_t cap, unsigned status, size_t body_len, bool close,
                        bool keep_alive_10, const char *extra, int64_t unix_time)
{
        static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        time_t t = (time_t)unix_time;
        struct tm tm = {.tm_mday = 1, .tm_year = 70, .tm_wday = 4};
        char length[64] = "";
        int n;

        if (status < 200) {
                n = snprintf(buf, cap, "HTTP/1.1 %u %s\r\n\r\n", status, http_reason(status));
                return n > 0 && (size_t)n < cap ? (size_t)n : 0;
        }
        gmtime_r(&t, &tm);
        if (status != 204)
                snprintf(length, sizeof(length),
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
        /* RFC 9110's IMF-fixdate, spelled out: strftime would follow the locale. */
        n = snprintf(
            buf, cap, "HTTP/1.1 %u %s\r\nDate: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n%s%s%s\r\n",
            status, http_reason(status), days[(unsigned)tm.tm_wday % 7], tm.tm_mday,
            months[(unsigned)tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
            close           ? "Connection: close\r\n"
            : keep_alive_10 ? "Connection: Keep-Alive\r\n"
                            : "",
            length, extra ? extra : "");
        return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
