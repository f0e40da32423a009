/*
 * The API's HTTP/1.1 parser (api/http.h) on plain buffers: where a head ends (whatever the
 * pieces it arrives in), what a head means (version, keep-alive, Expect, body framing), what
 * is refused and with which status (item 9 of issue 12: Transfer-Encoding other than
 * chunked, two different Content-Length headers), chunked bodies cut anywhere, and the
 * answers' status line and headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/http.h"

/* ---- heads ---- */

static void test_head_end(void **state)
{
        size_t skip;

        (void)state;
        assert_int_equal(http_head_end("GET / HTTP/1.1\r\n\r\nX", 19, 0, &skip), 18);
        assert_int_equal(skip, 0);
        assert_int_equal(http_head_end("GET / HTTP/1.1\n\nX", 17, 0, &skip), 16);
        /* Empty lines before the request line are skipped. */
        assert_int_equal(http_head_end("\r\n\nGET / HTTP/1.1\r\nA: b\r\n\r\n", 27, 0, &skip), 24);
        assert_int_equal(skip, 3);
        assert_int_equal(http_head_end("GET / HTTP/1.1\r\nA: b\r\n", 22, 0, &skip), 0);
        assert_int_equal(http_head_end("GET / HTTP/1.1\r\n\r", 17, 0, &skip), 0);
        assert_int_equal(http_head_end("\r", 1, 0, &skip), 0);
        assert_int_equal(http_head_end("", 0, 0, &skip), 0);
}

/* Fed one byte at a time with the resume hint, the end is found exactly when it arrives. */
static void test_head_end_byte_by_byte(void **state)
{
        static const char *const heads[] = {
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\n\n",
            "\r\n\r\nPUT /a HTTP/1.1\r\nA: b\n\r\n",
            "GET / HTTP/1.1\r\n\n",
        };

        (void)state;
        for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
                size_t len = strlen(heads[h]), searched = 0, skip, end = 0;

                for (size_t n = 1; n <= len && !end; n++) {
                        end = http_head_end(heads[h], n, searched, &skip);
                        searched = n;
                        if (end)
                                assert_int_equal(skip + end, n);
                }
                assert_int_equal(skip + end, len);
        }
}

static int parse(const char *head, struct http_request *req, struct http_error *err)
{
        static char buf[4096];
        size_t len = strlen(head);

        memcpy(buf, head, len + 1);
        return http_parse_head(buf, len, req, err);
}

static void assert_refused(const char *head, unsigned status, const char *msg)
{
        struct http_request req;
        struct http_error err = {0};

        if (parse(head, &req, &err) != -1)
                fail_msg("accepted: %s", head);
        assert_int_equal(err.status, status);
        assert_non_null(strstr(err.msg, msg));
}

static void test_request_line(void **state)
{
        struct http_request req;
        struct http_error err;

        (void)state;
        assert_int_equal(parse("PUT /drives/a?x=1 HTTP/1.1\r\n\r\n", &req, &err), 0);
        assert_string_equal(req.method, "PUT");
        assert_string_equal(req.target, "/drives/a?x=1");
        assert_int_equal(req.minor, 1);
        assert_true(req.keep_alive);
        assert_false(req.has_length);
        assert_false(req.chunked);
        /* HTTP/1.2 to 1.9 are read as 1.1. */
        assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n", &req, &err), 0);
        assert_true(req.keep_alive);
        assert_refused("GET / HTTP/2.0\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1");
        assert_refused("GET /\r\n\r\n", 400, "request line");
        assert_refused("GET  / HTTP/1.1\r\n\r\n", 400, "request line");
        assert_refused("GET / HTTP/1.1 \r\n\r\n", 400, "request line");
        assert_refused("GET\t/\tHTTP/1.1\r\n\r\n", 400, "request line");
        assert_refused("G(T / HTTP/1.1\r\n\r\n", 400, "request line");
        assert_refused("GET /a\x01 HTTP/1.1\r\n\r\n", 400, "request line");
        assert_refused("GET / HTTP/1.x\r\n\r\n", 400, "request line");
        assert_refused("GET / http/1.1\r\n\r\n", 400, "request line");
}

static void test_keep_alive(void **state)
{
        struct http_request req;
        struct http_error err;

        (void)state;
        assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &req, &err), 0);
        assert_false(req.keep_alive);
        assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req, &err), 0);
        assert_true(req.keep_alive);
        assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &req, &err), 0);
        assert_false(req.keep_alive);
        assert_int_equal(
            parse("GET / HTTP/1.1\r\nconnection: keep-alive, CLOSE\r\n\r\n", &req, &err), 0);
        assert_false(req.keep_alive);
        assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", &req, &err), 0);
        assert_true(req.keep_alive);
}

static void test_headers(void **state)
{
        struct http_request req;
        struct http_error err;

        (void)state;
        assert_int_equal(parse("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nX:\r\n\r\n", &req, &err),
                         0);
        assert_true(req.expect_continue);
        /* HTTP/1.0 has no interim answers. */
        assert_int_equal(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &req, &err), 0);
        assert_false(req.expect_continue);
        /* Obsolete folding continues a value. */
        assert_int_equal(
            parse("PUT / HTTP/1.1\r\nConnection: keep-alive,\r\n close\r\n\r\n", &req, &err), 0);
        assert_false(req.keep_alive);
        assert_refused("GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, "header line");
        assert_refused("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 400, "header line");
        assert_refused("GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400, "header line");
        assert_refused("GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "header line");
}

static void test_content_length(void **state)
{
        struct http_request req;
        struct http_error err;

        (void)state;
        assert_int_equal(parse("PUT / HTTP/1.1\r\nContent-Length:  37 \r\n\r\n", &req, &err), 0);
        assert_true(req.has_length);
        assert_int_equal(req.length, 37);
        assert_false(req.length_overflow);
        /* The same value twice is one length (RFC 9112 6.3). */
        assert_int_equal(
            parse("PUT / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 002\r\n\r\n", &req, &err),
            0);
        assert_int_equal(req.length, 2);
        assert_int_equal(
            parse("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", &req, &err),
            0);
        assert_true(req.length_overflow);
        assert_string_equal(req.length_text, "99999999999999999999999");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 37\r\n\r\n", 400,
                       "Two different Content-Length headers");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length: +2\r\n\r\n", 400, "Content-Length");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n", 400, "Content-Length");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, "Content-Length");
        assert_refused("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "Content-Length");
}

static void test_transfer_encoding(void **state)
{
        struct http_request req;
        struct http_error err;

        (void)state;
        assert_int_equal(parse("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &req, &err),
                         0);
        assert_true(req.chunked);
        assert_true(req.keep_alive);
        assert_int_equal(
            parse("PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n",
                  &req, &err),
            0);
        assert_false(req.chunked);
        assert_int_equal(req.length, 2);
        assert_int_equal(
            parse("PUT / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n", &req, &err), 0);
        assert_true(req.chunked);
        /* An HTTP/1.0 message with Transfer-Encoding has faulty framing: no keep-alive. */
        assert_int_equal(parse("PUT / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: "
                               "chunked\r\n\r\n",
                               &req, &err),
                         0);
        assert_false(req.keep_alive);
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not implemented");
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                       "not implemented");
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
                       "chunked\r\n\r\n",
                       501, "not implemented");
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
                       "chunked must be its last");
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                       "chunked\r\n\r\n",
                       400, "chunked must be its last");
        assert_refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                       400, "ambiguous");
}

/* ---- targets ---- */

static void test_decode_path(void **state)
{
        char buf[16];

        (void)state;
        assert_int_equal(http_decode_path("/vers%69on?x=%00", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/version");
        assert_int_equal(http_decode_path("/a%2Fb%zz%4", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/a/b%zz%4");
        assert_int_equal(http_decode_path("/a%00xyz", buf, sizeof(buf)), -1);
        assert_int_equal(http_decode_path("/0123456789abcde", buf, sizeof(buf)), -1);
        assert_int_equal(http_decode_path("/0123456789abcd", buf, sizeof(buf)), 0);
}

/* ---- chunked bodies ---- */

/* Decodes in, fed in pieces of `piece` bytes as a connection would (the unconsumed rest
 * kept in front of what arrives next); the body into out. Returns 0 at the end of the body,
 * -1 on an error, 1 when it needs more. */
static int decode(const char *in, size_t len, size_t piece, char *out, size_t *out_len,
                  size_t *rest)
{
        struct http_chunked c = {0};
        char buf[1024];
        size_t have = 0, fed = 0;

        *out_len = 0;
        for (;;) {
                const char *data;
                size_t used, n;

                switch (http_chunked_step(&c, buf, have, &used, &data, &n)) {
                case HTTP_CHUNK_DATA:
                        memcpy(out + *out_len, data, n);
                        *out_len += n;
                        break;
                case HTTP_CHUNK_DONE:
                        *rest = have - used + (len - fed);
                        return 0;
                case HTTP_CHUNK_ERROR:
                        return -1;
                case HTTP_CHUNK_MORE:
                        if (fed == len)
                                return 1;
                        break;
                }
                memmove(buf, buf + used, have - used);
                have -= used;
                if (fed < len) {
                        size_t n2 = len - fed < piece ? len - fed : piece;

                        memcpy(buf + have, in + fed, n2);
                        have += n2;
                        fed += n2;
                }
        }
}

static void test_chunked_in_any_pieces(void **state)
{
        static const char body[] = "25;ext=1\r\n{\"vcpu_count\": 2, \"mem_size_mib\": 64}\r\n"
                                   "3 \r\nabc\n0\r\nTrailer: x\r\n\r\nGET";
        char out[256];
        size_t len, rest;

        (void)state;
        for (size_t piece = 1; piece <= sizeof(body); piece++) {
                assert_int_equal(decode(body, sizeof(body) - 1, piece, out, &len, &rest), 0);
                assert_int_equal(len, 0x25 + 3);
                assert_memory_equal(out, "{\"vcpu_count\": 2, \"mem_size_mib\": 64}abc", len);
                assert_int_equal(rest, 3); /* "GET": the next request */
        }
}

static void test_chunked_refusals(void **state)
{
        char out[256];
        size_t len, rest;

        (void)state;
        assert_int_equal(decode("zz\r\n{}\r\n0\r\n\r\n", 14, 64, out, &len, &rest), -1);
        assert_int_equal(decode("2\r\n{}X\r\n0\r\n\r\n", 13, 64, out, &len, &rest), -1);
        assert_int_equal(decode("2x\r\n{}\r\n0\r\n\r\n", 13, 64, out, &len, &rest), -1);
        assert_int_equal(decode("\r\n", 2, 64, out, &len, &rest), -1);
        /* 2^64 and more do not fit. */
        assert_int_equal(decode("10000000000000000\r\n", 19, 64, out, &len, &rest), -1);
        /* Incomplete: more is needed. */
        assert_int_equal(decode("5\r\nab", 5, 64, out, &len, &rest), 1);
        assert_int_equal(decode("0\r\n", 3, 64, out, &len, &rest), 1);
}

/* ---- answers ---- */

static void test_answer_head(void **state)
{
        char buf[HTTP_ANSWER_HEAD_MAX];
        size_t n;

        (void)state;
        n = http_answer_head(buf, sizeof(buf), 200, 31, false, false, NULL, 784111777);
        assert_int_equal(n, strlen(buf));
        assert_string_equal(buf, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                 "Content-Type: application/json\r\nContent-Length: 31\r\n\r\n");
        http_answer_head(buf, sizeof(buf), 204, 0, false, false, NULL, 0);
        assert_string_equal(buf, "HTTP/1.1 204 No Content\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT"
                                 "\r\n\r\n");
        http_answer_head(buf, sizeof(buf), 408, 5, true, false, NULL, 0);
        assert_non_null(strstr(buf, "HTTP/1.1 408 Request Timeout\r\n"));
        assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
        http_answer_head(buf, sizeof(buf), 204, 0, false, true, NULL, 0);
        assert_non_null(strstr(buf, "\r\nConnection: Keep-Alive\r\n"));
        http_answer_head(buf, sizeof(buf), 204, 0, false, false, "Deprecation: true\r\n", 0);
        assert_string_equal(buf, "HTTP/1.1 204 No Content\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT"
                                 "\r\nDeprecation: true\r\n\r\n");
        http_answer_head(buf, sizeof(buf), 100, 0, false, false, "Deprecation: true\r\n", 0);
        assert_string_equal(buf, "HTTP/1.1 100 Continue\r\n\r\n");
        assert_int_equal(http_answer_head(buf, 20, 200, 31, false, false, NULL, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_head_end),
            cmocka_unit_test(test_head_end_byte_by_byte),
            cmocka_unit_test(test_request_line),
            cmocka_unit_test(test_keep_alive),
            cmocka_unit_test(test_headers),
            cmocka_unit_test(test_content_length),
            cmocka_unit_test(test_transfer_encoding),
            cmocka_unit_test(test_decode_path),
            cmocka_unit_test(test_chunked_in_any_pieces),
            cmocka_unit_test(test_chunked_refusals),
            cmocka_unit_test(test_answer_head),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
