/*
 * HTTP/1.1 requests, as the API server reads them, and its answers' status line and headers:
 * a parser of our own with no I/O (api/server.c owns the connections), testable and
 * fuzzable on plain buffers.
 *
 * What it accepts (RFC 9112, the subset an API client sends): a request line "METHOD SP
 * target SP HTTP/1.x" (HTTP/1.0 and 1.1; 1.2-1.9 are read as 1.1; another major version is
 * a 505), header lines "name: value", lines ending in CRLF or LF alone, empty lines before
 * the request line ignored, obsolete line folding read as a space. The body is framed by
 * Content-Length or by Transfer-Encoding: chunked, nothing else. Refused, each with a 400
 * and the connection closed after the answer:
 *   - a malformed request line or header line (whitespace before the colon, a name that is
 *     not a token, a control character in the target),
 *   - a Content-Length that is not a decimal number, or two that differ,
 *   - Content-Length together with Transfer-Encoding: chunked (a request-smuggling shape),
 *   - a malformed Transfer-Encoding list, or chunked not last;
 * a Transfer-Encoding other than chunked and identity is a 501 (RFC 9112: not implemented),
 * and the connection is closed as well. The request line and headers are bounded by the
 * caller's buffer (api/server.h: a 414 or 431 beyond).
 */
#ifndef API_HTTP_H
#define API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_request {
        /* In the parsed buffer, NUL-terminated there. */
        char *method;
        char *target;            /* as sent: the path, maybe "?query" */
        unsigned minor;          /* HTTP/1.minor */
        bool keep_alive;         /* the connection stays open after the answer */
        bool expect_continue;    /* HTTP/1.1 with "Expect: 100-continue" */
        bool chunked;            /* the body is chunked */
        bool has_length;         /* Content-Length given */
        uint64_t length;         /* its value */
        const char *length_text; /* its digits, for the too-large message (in the buffer) */
        bool length_overflow;    /* more than 2^64 - 1 */
};

/* A refusal: the status and the fault message the client gets. */
struct http_error {
        unsigned status;
        const char *msg;
};

/* The length of the request head at the start of buf[0, len) (request line and headers, up
 * to and with the empty line that ends them), after skipping *skip bytes of empty lines
 * before it; 0 when the end is not there yet. searched: how much of buf an earlier call
 * searched in vain (0 the first time), so that a head arriving byte by byte costs linear
 * time. */
size_t http_head_end(const char *buf, size_t len, size_t searched, size_t *skip);

/* Whether buf[0, len) holds a whole line (the request line, when the head is too long to be
 * found: a 431 for a long header, a 414 for a long request line). */
bool http_has_line(const char *buf, size_t len);

/* Parses a head of http_head_end's length in place (it writes NULs into buf). 0, or -1 with
 * *err filled. */
int http_parse_head(char *buf, size_t len, struct http_request *req, struct http_error *err);

/* The path of a request target (what precedes '?') into buf[cap], percent-decoded ("%XX";
 * a '%' without two hex digits stays as it is). -1 when it does not fit, or when it decodes
 * to a NUL byte. */
int http_decode_path(const char *target, char *buf, size_t cap);

/* A chunked body's decoder: feed it what arrived; it hands back the data and says when the
 * body (and its trailer) ended. */
struct http_chunked {
        int state;
        uint64_t left; /* of the current chunk */
};

enum http_chunk_result {
        HTTP_CHUNK_MORE,  /* everything was consumed (or a line is incomplete): feed more */
        HTTP_CHUNK_DATA,  /* [*data, *data + *data_len) is body data */
        HTTP_CHUNK_DONE,  /* the body ended; what follows is the next request */
        HTTP_CHUNK_ERROR, /* malformed: a 400 */
};

/* Decodes from in[0, len): *used bytes were consumed (data included). A chunk-size or
 * trailer line must arrive whole within len bytes (the caller bounds it). */
enum http_chunk_result http_chunked_step(struct http_chunked *c, const char *in, size_t len,
                                         size_t *used, const char **data, size_t *data_len);

/* The reason phrase of a status the API sends ("" for another). */
const char *http_reason(unsigned status);

/* Writes the status line and headers of an answer into buf (cap >= HTTP_ANSWER_HEAD_MAX):
 * Date, then Connection (close, or Keep-Alive for a kept HTTP/1.0 connection), then
 * Content-Type: application/json and Content-Length unless the status is 1xx or 204, then
 * extra (NULL, or whole header lines each ending in CRLF; a 1xx gets none of them).
 * Returns the length (0 if it does not fit). */
#define HTTP_ANSWER_HEAD_MAX 256
size_t http_answer_head(char *buf, size_t cap, unsigned status, size_t body_len, bool close,
                        bool keep_alive_10, const char *extra, int64_t unix_time);

#endif
