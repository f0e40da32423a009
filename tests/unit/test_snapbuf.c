/*
 * The snapshot serialisation helper: every type round trips; a reader given any prefix of
 * a valid encoding fails cleanly (no read past the end, zeros after the first failure, one
 * message naming the field and offset); counts and string lengths are checked against their
 * limits before anything is allocated; sections bound their body; CRC-64/XZ's check value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/snapbuf.h"

#define TAG SNAPBUF_TAG('T', 'E', 'S', 'T')

static void write_sample(struct snapbuf_writer *w)
{
        size_t sec;
        uint8_t blob[5] = {1, 2, 3, 4, 5};

        snapbuf_put_u8(w, 0xab);
        snapbuf_put_u16(w, 0xbeef);
        snapbuf_put_u32(w, 0xdeadbeef);
        snapbuf_put_u64(w, 0x0123456789abcdefull);
        snapbuf_put_bool(w, true);
        snapbuf_put_str(w, "hello");
        snapbuf_put_str(w, NULL);
        snapbuf_put_str(w, "");
        sec = snapbuf_begin_section(w, TAG);
        snapbuf_put_u32(w, 3); /* a count */
        snapbuf_put_blob(w, blob, sizeof(blob));
        snapbuf_end_section(w, sec);
}

/* Reads the sample; returns whether the reader is still fine. */
static bool read_sample(struct snapbuf_reader *r, bool check_values)
{
        struct snapbuf_reader sec;
        uint8_t blob[5];
        char *a = NULL, *b = NULL, *c = NULL;
        uint8_t v8 = snapbuf_get_u8(r, "u8");
        uint16_t v16 = snapbuf_get_u16(r, "u16");
        uint32_t v32 = snapbuf_get_u32(r, "u32");
        uint64_t v64 = snapbuf_get_u64(r, "u64");
        bool flag = snapbuf_get_bool(r, "bool");
        bool ok;

        snapbuf_get_str(r, 16, &a, "a");
        snapbuf_get_str(r, 16, &b, "b");
        snapbuf_get_str(r, 16, &c, "c");
        if (snapbuf_get_section(r, TAG, &sec, "section")) {
                uint32_t n = snapbuf_get_count(&sec, 3, "count");

                snapbuf_get_blob(&sec, blob, sizeof(blob), "blob");
                snapbuf_expect_end(&sec, "section");
                snapbuf_merge(r, &sec);
                if (check_values && snapbuf_ok(r)) {
                        assert_int_equal(n, 3);
                        assert_memory_equal(blob, ((uint8_t[]){1, 2, 3, 4, 5}), 5);
                }
        }
        snapbuf_expect_end(r, "sample");
        ok = snapbuf_ok(r);
        if (check_values && ok) {
                assert_int_equal(v8, 0xab);
                assert_int_equal(v16, 0xbeef);
                assert_int_equal(v32, 0xdeadbeef);
                assert_true(v64 == 0x0123456789abcdefull);
                assert_true(flag);
                assert_string_equal(a, "hello");
                assert_null(b);
                assert_string_equal(c, "");
        }
        if (!ok) {
                /* After a failure everything reads as zero / absent. */
                assert_int_equal(snapbuf_get_u64(r, "after"), 0);
                assert_int_equal(snapbuf_left(r), 0);
                assert_true(strstr(r->err, " at offset ") != NULL);
        }
        free(a);
        free(b);
        free(c);
        return ok;
}

static void test_round_trip(void **state)
{
        struct snapbuf_writer w;
        struct snapbuf_reader r;

        (void)state;
        snapbuf_writer_init(&w);
        write_sample(&w);
        assert_false(w.failed);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_true(read_sample(&r, true));
        snapbuf_writer_free(&w);
}

static void test_every_prefix_fails_cleanly(void **state)
{
        struct snapbuf_writer w;

        (void)state;
        snapbuf_writer_init(&w);
        write_sample(&w);
        for (size_t n = 0; n < w.len; n++) {
                /* A copy of exactly n bytes: the sanitizer sees any read past it. */
                uint8_t *copy = malloc(n ? n : 1);
                struct snapbuf_reader r;

                memcpy(copy, w.data, n);
                snapbuf_reader_init(&r, copy, n);
                assert_false(read_sample(&r, false));
                free(copy);
        }
        snapbuf_writer_free(&w);
}

static void test_every_byte_flip_is_safe(void **state)
{
        struct snapbuf_writer w;

        (void)state;
        snapbuf_writer_init(&w);
        write_sample(&w);
        for (size_t i = 0; i < w.len; i++) {
                for (unsigned bit = 0; bit < 8; bit++) {
                        uint8_t *copy = malloc(w.len);
                        struct snapbuf_reader r;

                        memcpy(copy, w.data, w.len);
                        copy[i] ^= (uint8_t)(1u << bit);
                        snapbuf_reader_init(&r, copy, w.len);
                        (void)read_sample(&r, false);
                        free(copy);
                }
        }
        snapbuf_writer_free(&w);
}

static void test_limits_before_allocation(void **state)
{
        uint8_t buf[16];
        struct snapbuf_reader r;
        char *s = (char *)1;
        uint32_t n;

        (void)state;
        /* A count above its limit. */
        put_le32(buf, 1000);
        snapbuf_reader_init(&r, buf, 4);
        n = snapbuf_get_count(&r, 999, "entries");
        assert_int_equal(n, 0);
        assert_false(snapbuf_ok(&r));
        assert_non_null(strstr(r.err, "entries at offset 4: 1000 is more than the limit of 999"));
        /* A string claiming 4 GiB - 2 bytes: refused by length, nothing allocated. */
        put_le32(buf, 0xfffffffe);
        snapbuf_reader_init(&r, buf, sizeof(buf));
        assert_false(snapbuf_get_str(&r, 4096, &s, "path"));
        assert_null(s);
        assert_non_null(strstr(r.err, "path"));
        /* A string within its limit but longer than the input. */
        put_le32(buf, 100);
        snapbuf_reader_init(&r, buf, sizeof(buf));
        assert_false(snapbuf_get_str(&r, 4096, &s, "path"));
        assert_non_null(strstr(r.err, "truncated"));
        /* An embedded NUL. */
        put_le32(buf, 3);
        memcpy(buf + 4, "a\0b", 3);
        snapbuf_reader_init(&r, buf, 7);
        assert_false(snapbuf_get_str(&r, 16, &s, "name"));
        /* A boolean that is neither 0 nor 1. */
        buf[0] = 2;
        snapbuf_reader_init(&r, buf, 1);
        assert_false(snapbuf_get_bool(&r, "flag"));
        assert_false(snapbuf_ok(&r));
        /* A blob of the wrong size for its structure. */
        put_le32(buf, 4);
        snapbuf_reader_init(&r, buf, 8);
        snapbuf_get_blob(&r, buf + 8, 5, "registers");
        assert_non_null(strstr(r.err, "4 bytes where 5 were expected"));
}

static void test_sections(void **state)
{
        struct snapbuf_writer w;
        struct snapbuf_reader r, sec;
        size_t s;

        (void)state;
        snapbuf_writer_init(&w);
        s = snapbuf_begin_section(&w, TAG);
        snapbuf_put_u64(&w, 7);
        snapbuf_end_section(&w, s);
        /* The wrong tag. */
        snapbuf_reader_init(&r, w.data, w.len);
        assert_int_equal(snapbuf_peek_tag(&r), TAG);
        assert_false(snapbuf_get_section(&r, SNAPBUF_TAG('O', 'T', 'H', 'R'), &sec, "other"));
        assert_non_null(strstr(r.err, "where"));
        /* A body read past its end fails inside the section, not in the parent's bytes. */
        snapbuf_reader_init(&r, w.data, w.len);
        assert_true(snapbuf_get_section(&r, TAG, &sec, "test"));
        assert_int_equal(snapbuf_get_u64(&sec, "value"), 7);
        assert_int_equal(snapbuf_get_u8(&sec, "more"), 0);
        assert_false(snapbuf_ok(&sec));
        assert_true(snapbuf_ok(&r));
        snapbuf_merge(&r, &sec);
        assert_false(snapbuf_ok(&r));
        /* A length beyond the input. */
        put_le64(w.data + 8, 1000);
        snapbuf_reader_init(&r, w.data, w.len);
        assert_false(snapbuf_get_section(&r, TAG, &sec, "test"));
        assert_non_null(strstr(r.err, "longer than the file"));
        /* A non-zero reserved word. */
        put_le64(w.data + 8, 8);
        w.data[4] = 1;
        snapbuf_reader_init(&r, w.data, w.len);
        assert_false(snapbuf_get_section(&r, TAG, &sec, "test"));
        snapbuf_writer_free(&w);
}

static void test_crc64(void **state)
{
        (void)state;
        /* CRC-64/XZ check value. */
        assert_true(snapbuf_crc64(0, "123456789", 9) == 0x995dc9bbdf1939faull);
        /* Incremental equals one shot. */
        assert_true(snapbuf_crc64(snapbuf_crc64(0, "1234", 4), "56789", 5) ==
                    0x995dc9bbdf1939faull);
        assert_true(snapbuf_crc64(0, "", 0) == 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_every_prefix_fails_cleanly),
            cmocka_unit_test(test_every_byte_flip_is_safe),
            cmocka_unit_test(test_limits_before_allocation),
            cmocka_unit_test(test_sections),
            cmocka_unit_test(test_crc64),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
