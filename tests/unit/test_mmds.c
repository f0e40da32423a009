/*
 * The MMDS service without the network: the JSON store (serde_json's printing, RFC 7396
 * merge patch, RFC 6901 pointers, IMDS text), the size limit, V2 session tokens (fake clock)
 * and the guest's HTTP requests answered byte for byte as Firecracker answers them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/mmds/mmds.h"
#include "devices/mmds/mmds_http.h"
#include "devices/mmds/mmds_json.h"
#include "devices/mmds/mmds_token.h"

static uint64_t fake_ns;

static uint64_t fake_clock(void *opaque)
{
        (void)opaque;
        return fake_ns;
}

static struct mmds *new_mmds(size_t limit)
{
        struct mmds_params p = {.size_limit = limit, .instance_id = "test-vm", .clock = fake_clock};
        struct mmds *m;

        fake_ns = 1000000000ull;
        assert_int_equal(mmds_create(&p, &m), 0);
        return m;
}

static void put(struct mmds *m, const char *json)
{
        char msg[128];

        assert_int_equal(mmds_put(m, json, strlen(json), msg, sizeof(msg)), 0);
}

static int patch(struct mmds *m, const char *json)
{
        char msg[128];

        return mmds_patch(m, json, strlen(json), msg, sizeof(msg));
}

static void assert_store(struct mmds *m, const char *want)
{
        char *got;
        size_t len;

        assert_int_equal(mmds_get(m, &got, &len), 0);
        assert_string_equal(got, want);
        assert_int_equal(len, strlen(want));
        free(got);
}

/* ---- JSON ---- */

static char *roundtrip(const char *text)
{
        struct mmds_json *v;
        struct mmds_buf b = {0};
        char msg[128];

        assert_int_equal(mmds_json_parse(text, strlen(text), &v, msg, sizeof(msg)), 0);
        mmds_json_print(v, &b);
        assert_int_equal(b.len, mmds_json_printed_len(v));
        mmds_buf_append(&b, "", 1);
        mmds_json_free(v);
        return b.data;
}

static void json_prints_like_serde(void **state)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
            {" { \"b\" : 1 , \"a\" : [ true , false , null ] } ",
             "{\"a\":[true,false,null],\"b\":1}"},
            /* A key given twice keeps its last value (a BTreeMap insert). */
            {"{\"k\":1,\"a\":0,\"k\":2}", "{\"a\":0,\"k\":2}"},
            /* Sorted bytewise: uppercase before lowercase, UTF-8 by code point. */
            {"{\"b\":0,\"B\":0,\"\xc3\xa9\":0,\"a\":0}",
             "{\"B\":0,\"a\":0,\"b\":0,\"\xc3\xa9\":0}"},
            /* Escapes: \" \\ and the short ones, \u00xx lowercase for other controls; "/" and
             * non-ASCII as they are. */
            {"\"\\u0022\\\\\\/\\b\\f\\n\\r\\t\\u0001\\u001F\\u00e9\\ud83d\\ude00\x7f\"",
             "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\xc3\xa9\xf0\x9f\x98\x80\x7f\""},
            {"[-0, 12.12, 1e5, 18446744073709551615]", "[-0,12.12,1e5,18446744073709551615]"},
            {"{}", "{}"},
            {"[]", "[]"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *got = roundtrip(cases[i].in);

                assert_string_equal(got, cases[i].out);
                free(got);
        }
}

static void json_refuses_what_serde_refuses(void **state)
{
        static const char *const bad[] = {
            "",
            "{",
            "{\"a\" 1}",
            "[1,]",
            "01",
            "1.",
            "-",
            "\"\x01\"",
            "\"\xc3\"",
            "\"\xed\xa0\x80\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\x\"",
            "nul",
            "{} x",
            "{\"a\":1,}",
            "\"\xc0\xaf\"",
            "[1 2]",
            "\"\\u12\"",
            "\"\xf4\x90\x80\x80\"",
        };
        char deep[2 * MMDS_JSON_MAX_DEPTH + 3];
        struct mmds_json *v;
        char msg[128];

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(mmds_json_parse(bad[i], strlen(bad[i]), &v, msg, sizeof(msg)),
                                 -EINVAL);
                assert_true(strstr(msg, "at byte") != NULL);
        }
        /* One level past the recursion limit. */
        memset(deep, '[', MMDS_JSON_MAX_DEPTH + 1);
        memset(deep + MMDS_JSON_MAX_DEPTH + 1, ']', MMDS_JSON_MAX_DEPTH + 1);
        assert_int_equal(mmds_json_parse(deep, 2 * MMDS_JSON_MAX_DEPTH + 2, &v, msg, sizeof(msg)),
                         -EINVAL);
        assert_true(strstr(msg, "recursion limit") != NULL);
        assert_int_equal(mmds_json_parse(deep + 1, 2 * MMDS_JSON_MAX_DEPTH, &v, msg, sizeof(msg)),
                         0);
        mmds_json_free(v);
}

static void json_merge_patch_follows_rfc7396(void **state)
{
        /* RFC 7396's appendix A, as Firecracker's json_patch applies it. */
        static const struct {
                const char *target, *patch, *result;
        } cases[] = {
            {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
            {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
            {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
            {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
            {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
            {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
            {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
            {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
            {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
            {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
            {"{\"a\":\"foo\"}", "null", "null"},
            {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
            {"{\"e\":null}", "{\"a\":1}", "{\"a\":1,\"e\":null}"},
            {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
            {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct mmds_json *t, *p;
                struct mmds_buf b = {0};
                char msg[64];

                assert_int_equal(
                    mmds_json_parse(cases[i].target, strlen(cases[i].target), &t, msg, sizeof(msg)),
                    0);
                assert_int_equal(
                    mmds_json_parse(cases[i].patch, strlen(cases[i].patch), &p, msg, sizeof(msg)),
                    0);
                assert_int_equal(mmds_json_merge_patch(&t, p), 0);
                mmds_json_print(t, &b);
                mmds_buf_append(&b, "", 1);
                assert_string_equal(b.data, cases[i].result);
                mmds_buf_free(&b);
                mmds_json_free(t);
        }
}

static const char *lookup(const char *doc, const char *ptr, bool imds, struct mmds_buf *b)
{
        struct mmds_json *v;
        const struct mmds_json *r;
        char msg[64];
        bool ok;

        assert_int_equal(mmds_json_parse(doc, strlen(doc), &v, msg, sizeof(msg)), 0);
        b->len = 0;
        r = mmds_json_pointer(v, ptr, strlen(ptr));
        if (!r) {
                mmds_json_free(v);
                return NULL;
        }
        if (imds)
                ok = mmds_json_print_imds(r, b);
        else
                mmds_json_print(r, b), ok = true;
        mmds_json_free(v);
        if (!ok)
                return "unsupported";
        mmds_buf_append(b, "", 1);
        return b->data;
}

static void json_pointer_and_imds_text(void **state)
{
        const char *doc = "{\"a/b\":1,\"m~n\":2,\"arr\":[\"x\",\"y\"],\"o\":{\"k\":\"v\",\"s\":{}},"
                          "\"\":\"empty key\"}";
        struct mmds_buf b = {0};

        (void)state;
        assert_string_equal(lookup(doc, "/a~1b", false, &b), "1");
        assert_string_equal(lookup(doc, "/m~0n", false, &b), "2");
        assert_string_equal(lookup(doc, "/arr/1", false, &b), "\"y\"");
        assert_null(lookup(doc, "/arr/01", false, &b));
        assert_null(lookup(doc, "/arr/+1", false, &b));
        assert_null(lookup(doc, "/arr/2", false, &b));
        assert_null(lookup(doc, "/arr/-", false, &b));
        assert_null(lookup(doc, "o", false, &b));
        assert_string_equal(lookup(doc, "/", false, &b), "\"empty key\"");
        assert_string_equal(lookup(doc, "/o/k", true, &b), "v");
        /* Keys sorted, objects with a '/', no newline after the last. */
        assert_string_equal(lookup(doc, "", true, &b), "\na/b\narr\nm~n\no/");
        assert_string_equal(lookup(doc, "/o", true, &b), "k\ns/");
        assert_string_equal(lookup(doc, "/o/s", true, &b), "");
        assert_string_equal(lookup(doc, "/arr", true, &b), "unsupported");
        assert_string_equal(lookup(doc, "/a~1b", true, &b), "unsupported");
        mmds_buf_free(&b);
}

/* ---- the store ---- */

static void store_put_patch_get(void **state)
{
        struct mmds *m = new_mmds(0);
        char msg[128];

        (void)state;
        /* Uninitialised: GET /mmds answers {}, PATCH is refused. */
        assert_store(m, "{}");
        assert_int_equal(mmds_patch(m, "{\"a\":1}", 7, msg, sizeof(msg)), -ENODATA);
        put(m, "{\"latest\":{\"meta-data\":{\"ami-id\":\"dummy\"}}}");
        assert_int_equal(patch(m, "{\"latest\":{\"meta-data\":{\"ami-id\":\"x\",\"k\":\"v\"}}}"),
                         0);
        assert_store(m, "{\"latest\":{\"meta-data\":{\"ami-id\":\"x\",\"k\":\"v\"}}}");
        assert_int_equal(mmds_put(m, "{\"a\":", 5, msg, sizeof(msg)), -EINVAL);
        assert_int_equal(mmds_patch(m, "[", 1, msg, sizeof(msg)), -EINVAL);
        assert_store(m, "{\"latest\":{\"meta-data\":{\"ami-id\":\"x\",\"k\":\"v\"}}}");
        /* A PUT of null: GET answers {} again, but PATCH works (the store was initialised). */
        put(m, "null");
        assert_store(m, "{}");
        assert_int_equal(mmds_patch(m, "{\"a\":1}", 7, msg, sizeof(msg)), 0);
        assert_store(m, "{\"a\":1}");
        mmds_destroy(m);
}

static void store_size_limit_counts_the_compact_text(void **state)
{
        struct mmds *m = new_mmds(20);
        char msg[64];

        (void)state;
        /* {"k":"0123456789ab"} is 20 bytes compact, however it is spaced. */
        put(m, "{ \"k\" : \"0123456789ab\" }");
        assert_int_equal(mmds_put(m, "{\"k\":\"0123456789abc\"}", 21, msg, sizeof(msg)), -EFBIG);
        assert_int_equal(mmds_patch(m, "{\"x\":1}", 7, msg, sizeof(msg)), -EFBIG);
        assert_store(m, "{\"k\":\"0123456789ab\"}");
        /* Escapes count as printed: "\n" is two bytes. */
        assert_int_equal(mmds_patch(m, "{\"k\":\"0123456789\\n\"}", 20, msg, sizeof(msg)), 0);
        assert_store(m, "{\"k\":\"0123456789\\n\"}");
        assert_int_equal(mmds_patch(m, "{\"k\":null}", 10, msg, sizeof(msg)), 0);
        assert_store(m, "{}");
        mmds_destroy(m);
}

/* ---- tokens ---- */

static void tokens_expire_and_belong_to_their_authority(void **state)
{
        struct mmds_token_authority *a, *b;
        char tok[MMDS_TOKEN_LEN + 1], bad[MMDS_TOKEN_LEN + 1];

        (void)state;
        assert_int_equal(mmds_token_authority_create(&a), 0);
        assert_int_equal(mmds_token_authority_create(&b), 0);
        mmds_token_set_instance(a, "vm1");
        mmds_token_set_instance(b, "vm1");
        assert_int_equal(mmds_token_generate(a, 0, 1000, tok), -EINVAL);
        assert_int_equal(mmds_token_generate(a, 21601, 1000, tok), -EINVAL);
        assert_int_equal(mmds_token_generate(a, 60, 1000, tok), 0);
        assert_int_equal(strlen(tok), MMDS_TOKEN_LEN);
        assert_true(mmds_token_valid(a, tok, MMDS_TOKEN_LEN, 1000));
        assert_true(mmds_token_valid(a, tok, MMDS_TOKEN_LEN, 60999));
        assert_false(mmds_token_valid(a, tok, MMDS_TOKEN_LEN, 61000));
        /* Another key (a restored snapshot, another process) refuses it. */
        assert_false(mmds_token_valid(b, tok, MMDS_TOKEN_LEN, 1000));
        /* So does another instance id under the same key. */
        mmds_token_set_instance(a, "vm2");
        assert_false(mmds_token_valid(a, tok, MMDS_TOKEN_LEN, 1000));
        mmds_token_set_instance(a, "vm1");
        /* Every character matters; so does the length. */
        for (size_t i = 0; i < MMDS_TOKEN_LEN; i++) {
                memcpy(bad, tok, sizeof(bad));
                bad[i] = bad[i] == 'A' ? 'B' : 'A';
                assert_false(mmds_token_valid(a, bad, MMDS_TOKEN_LEN, 1000));
        }
        assert_false(mmds_token_valid(a, tok, MMDS_TOKEN_LEN - 1, 1000));
        assert_false(mmds_token_valid(a, "!", 1, 1000));
        /* Two tokens for the same lifetime differ (unique nonces). */
        assert_int_equal(mmds_token_generate(a, 60, 1000, bad), 0);
        assert_string_not_equal(bad, tok);
        mmds_token_authority_destroy(a);
        mmds_token_authority_destroy(b);
}

/* ---- HTTP ---- */

static char *ask(struct mmds *m, const char *req)
{
        struct mmds_buf out = {0};

        mmds_http_respond(m, (const uint8_t *)req, strlen(req), &out);
        mmds_buf_append(&out, "", 1);
        assert_false(out.failed);
        return out.data;
}

static void assert_answer(struct mmds *m, const char *req, const char *want)
{
        char *got = ask(m, req);

        assert_string_equal(got, want);
        free(got);
}

/* micro_http's answer: "HTTP/1.1 NNN \r\n", keep-alive, type and length. */
static char *answer(const char *ver, unsigned status, const char *type, const char *extra,
                    const char *body)
{
        static char buf[8192];

        snprintf(buf, sizeof(buf),
                 "HTTP/%s %u \r\nConnection: keep-alive\r\n%sContent-Type: %s\r\nContent-Length: "
                 "%zu\r\n\r\n%s",
                 ver, status, extra, type, strlen(body), body);
        return buf;
}

#define DOC                                                                                        \
        "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-87654321\",\"reservation-id\":"              \
        "\"r-79054aef\",\"n\":{\"x\":1}},\"num\":5,\"arr\":[\"a0\"]}}"

static void http_v1_reads_json_and_imds(void **state)
{
        struct mmds *m = new_mmds(0);
        uint64_t c[MMDS_COUNTER_COUNT];

        (void)state;
        put(m, DOC);
        assert_answer(m, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n",
                      answer("1.1", 200, "text/plain", "", "ami-87654321"));
        assert_answer(m, "GET /latest/meta-data HTTP/1.0\r\nAccept: application/json\r\n\r\n",
                      answer("1.0", 200, "application/json", "",
                             "{\"ami-id\":\"ami-87654321\",\"n\":{\"x\":1},\"reservation-id\":"
                             "\"r-79054aef\"}"));
        /* "//" collapses, a trailing '/' names the same value, the absolute form works. */
        assert_answer(m,
                      "GET http://169.254.169.254//latest//meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n",
                      answer("1.1", 200, "text/plain", "", "ami-id\nn/\nreservation-id"));
        assert_answer(m,
                      "GET /latest/meta-data/ami-id/ HTTP/1.1\r\nAccept: application/json\r\n\r\n",
                      answer("1.1", 200, "application/json", "", "\"ami-87654321\""));
        /* curl's Accept (any type) is not a media type micro_http knows: text. */
        assert_answer(m, "GET /latest/arr/0 HTTP/1.1\r\nAccept: */*\r\n\r\n",
                      answer("1.1", 200, "text/plain", "", "a0"));
        assert_answer(m, "GET /latest/num HTTP/1.1\r\n\r\n",
                      answer("1.1", 501, "text/plain", "",
                             "Cannot retrieve value. The value has an unsupported type."));
        assert_answer(m, "GET /latest/nope HTTP/1.1\r\n\r\n",
                      answer("1.1", 404, "text/plain", "", "Resource not found: /latest/nope."));
        assert_answer(m, "GET / HTTP/1.1\r\n\r\n", answer("1.1", 200, "text/plain", "", "latest/"));
        /* V1 answers without a token or with a bad one, and counts them. */
        assert_answer(
            m,
            "GET /latest/num HTTP/1.1\r\nAccept: application/json\r\nX-metadata-token: x\r\n\r\n",
            answer("1.1", 200, "application/json", "", "5"));
        mmds_get_counters(m, c);
        assert_int_equal(c[MMDS_RX_NO_TOKEN], 8);
        assert_int_equal(c[MMDS_RX_INVALID_TOKEN], 1);
        /* imds_compat: IMDS text whatever the Accept header says. */
        mmds_configure(m, MMDS_V1, true);
        assert_answer(m, "GET /latest HTTP/1.1\r\nAccept: application/json\r\n\r\n",
                      answer("1.1", 200, "application/json", "", "arr\nmeta-data/\nnum"));
        mmds_destroy(m);
}

static void http_v2_needs_a_token(void **state)
{
        struct mmds *m = new_mmds(0);
        uint64_t c[MMDS_COUNTER_COUNT];
        char req[512], *got, *tok;

        (void)state;
        put(m, DOC);
        mmds_configure(m, MMDS_V2, false);
        assert_answer(m, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n",
                      answer("1.1", 401, "text/plain", "",
                             "No MMDS token provided. Use `X-metadata-token` or "
                             "`X-aws-ec2-metadata-token` header to specify the session token."));
        assert_answer(m, "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: nope\r\n\r\n",
                      answer("1.1", 401, "text/plain", "", "MMDS token not valid."));
        got = ask(
            m,
            "PUT /latest/api/token HTTP/1.1\r\nx-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n");
        tok = strstr(got, "\r\n\r\n") + 4;
        assert_int_equal(strlen(tok), MMDS_TOKEN_LEN);
        assert_string_equal(got, answer("1.1", 200, "text/plain",
                                        "x-aws-ec2-metadata-token-ttl-seconds: 60\r\n", tok));
        snprintf(req, sizeof(req),
                 "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-aws-ec2-metadata-token: %s\r\n\r\n",
                 tok);
        assert_answer(m, req, answer("1.1", 200, "text/plain", "", "ami-87654321"));
        /* 60 s later it has expired. */
        fake_ns += 60000000000ull;
        assert_answer(m, req, answer("1.1", 401, "text/plain", "", "MMDS token not valid."));
        free(got);
        mmds_get_counters(m, c);
        assert_int_equal(c[MMDS_RX_NO_TOKEN], 1);
        assert_int_equal(c[MMDS_RX_INVALID_TOKEN], 2);
        mmds_destroy(m);
}

static void http_token_requests(void **state)
{
        struct mmds *m = new_mmds(0);

        (void)state;
        assert_answer(
            m, "PUT /latest/api/token HTTP/1.1\r\n\r\n",
            answer("1.1", 400, "text/plain", "",
                   "Token time to live value not found. Use `X-metadata-token-ttl-seconds` "
                   "or `X-aws-ec2-metadata-token-ttl-seconds` header to specify the "
                   "token's lifetime."));
        assert_answer(m,
                      "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 0\r\n\r\n",
                      answer("1.1", 400, "text/plain", "",
                             "Invalid time to live value provided for token: 0. Please provide a "
                             "value between 1 and 21600."));
        assert_answer(m,
                      "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: -1\r\n\r\n",
                      answer("1.1", 400, "text/plain", "",
                             "Invalid header. Reason: Invalid value. "
                             "Key:X-metadata-token-ttl-seconds; Value:-1"));
        assert_answer(
            m,
            "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 1\r\n"
            "X-Forwarded-For: 1.2.3.4\r\n\r\n",
            answer("1.1", 400, "text/plain", "",
                   "Invalid header. Reason: Unsupported header name. Key: X-Forwarded-For"));
        assert_answer(
            m, "PUT /latest/api/token/ HTTP/1.1\r\nX-metadata-token-ttl-seconds: 1\r\n\r\n",
            answer("1.1", 404, "text/plain", "", "Resource not found: /latest/api/token/."));
        assert_answer(
            m, "PATCH /latest HTTP/1.0\r\n\r\n",
            answer("1.0", 405, "text/plain", "Allow: GET, PUT\r\n", "Not allowed HTTP method."));
        mmds_destroy(m);
}

static void http_malformed_requests(void **state)
{
        static const struct {
                const char *req;
                unsigned status;
                const char *body;
        } cases[] = {
            {"GET / HTTP/1.1\n\n", 400, "Invalid request."},
            {"GET /a\r\n\r\n", 400, "Invalid request."},
            {"GET /HTTP/1.1\r\n\r\n", 400, "Invalid request."},
            {"POST / HTTP/1.1\r\n\r\n", 501, "Invalid HTTP Method: Unsupported HTTP method."},
            {"GET / HTTP/2.0\r\n\r\n", 501, "Invalid HTTP Version: Unsupported HTTP version."},
            {"GET  HTTP/1.10\r\n\r\n", 400, "Invalid URI: Empty URI not allowed."},
            {"GET /\xff HTTP/1.1\r\n\r\n", 400, "Invalid URI: Cannot parse URI as UTF-8."},
            {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400,
             "Invalid header. Reason: Header is incorrectly formatted. Key: NoColon"},
            {"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400,
             "Invalid header. Reason: Invalid value. Key:Content-Length; Value: x"},
            {"GET / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", 400, "Invalid request."},
            {"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 400,
             "Invalid request."},
            {"GET / HTTP/1.1\r\nAccept-Encoding: identity;q=0\r\n\r\n", 400,
             "Invalid header. Reason: Invalid value. Key:Accept-Encoding; Value:identity;q=0"},
            {"GET / HTTP/1.1\r\nAccept-Encoding:\r\n\r\n", 400, "Invalid request."},
            {"GET / HTTP/1.1\r\nX: \xc3\r\n\r\n", 400, "Invalid request."},
        };
        struct mmds *m = new_mmds(0);
        struct mmds_buf out = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                assert_answer(
                    m, cases[i].req,
                    answer("1.1", cases[i].status, "application/json", "", cases[i].body));
        /* A relative URI that is not a path. */
        assert_answer(m, "GET latest HTTP/1.1\r\n\r\n",
                      answer("1.1", 400, "text/plain", "", "Invalid URI."));
        /* Longer than any receive buffer: refused without parsing. */
        char *big = calloc(1, 4000);
        memset(big, 'a', 3990);
        mmds_http_respond(m, (const uint8_t *)big, 3990, &out);
        assert_true(out.len > 0);
        free(big);
        mmds_buf_free(&out);
        mmds_destroy(m);
}

static void http_request_end(void **state)
{
        (void)state;
        assert_int_equal(mmds_http_request_end((const uint8_t *)"GET", 3), 0);
        assert_int_equal(mmds_http_request_end((const uint8_t *)"a\r\n\r\nb", 6), 5);
        assert_int_equal(mmds_http_request_end((const uint8_t *)"a\n\nb", 4), 3);
        assert_int_equal(mmds_http_request_end((const uint8_t *)"a\r\nb\r\n", 6), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(json_prints_like_serde),
            cmocka_unit_test(json_refuses_what_serde_refuses),
            cmocka_unit_test(json_merge_patch_follows_rfc7396),
            cmocka_unit_test(json_pointer_and_imds_text),
            cmocka_unit_test(store_put_patch_get),
            cmocka_unit_test(store_size_limit_counts_the_compact_text),
            cmocka_unit_test(tokens_expire_and_belong_to_their_authority),
            cmocka_unit_test(http_v1_reads_json_and_imds),
            cmocka_unit_test(http_v2_needs_a_token),
            cmocka_unit_test(http_token_requests),
            cmocka_unit_test(http_malformed_requests),
            cmocka_unit_test(http_request_end),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
