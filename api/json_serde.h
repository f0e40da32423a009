/*
 * JSON bodies read the way Firecracker reads them: serde_json deserialising the text into a
 * Rust struct. A shape (struct json_shape) describes that struct: its fields in declaration
 * order, each with its Rust type (bool, String, PathBuf, u8 ... usize, a unit-variant enum,
 * a nested struct, a Vec, a map of strings) and whether it is an Option or has a default.
 *
 * One pass over the text checks syntax and shape together, in document order, and stops at
 * the first problem with serde_json's message and position ("missing field `vcpu_count` at
 * line 1 column 21", "invalid type: string \"x\", expected u8 at line 1 column 19", "unknown
 * variant `foo`, expected `File` or `Uffd` at ..."), the position being the one serde_json
 * reports for that error (after the closing '}' for a missing field, after the key for an
 * unknown or duplicate field, after the offending value otherwise).
 *
 * What comes out is a cJSON tree of the values given (absent fields stay absent; an Option
 * given as null is a null item). Integers never go through a double: an integer field is a
 * cJSON_Raw item holding its decimal digits (json_get_uint reads them exactly), and a value
 * too large for its Rust type is refused here as serde refuses it.
 */
#ifndef API_JSON_SERDE_H
#define API_JSON_SERDE_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "common/error.h"
#include "common/util.h"

enum json_kind {
        JSON_IGNORED, /* any value: syntax only, left out of the tree (an unknown field) */
        JSON_VALUE,   /* any value, kept (serde_json::Value; integers as cJSON_Raw) */
        JSON_BOOL,
        JSON_STRING, /* String: "a string" */
        JSON_PATH,   /* PathBuf: "path string" */
        JSON_U8,
        JSON_U16,
        JSON_U32,
        JSON_U64,
        JSON_USIZE,
        JSON_ENUM,       /* unit variants: a string naming one of them */
        JSON_STRUCT,     /* an object (or, as serde allows, an array of the fields in order) */
        JSON_SEQ,        /* Vec<item> */
        JSON_STRING_MAP, /* BTreeMap<String, String>: a repeated key keeps its last value */
};

/* Field flags. */
#define JSON_OPTION  1u /* Option<T>: absent or null is None */
#define JSON_DEFAULT 2u /* #[serde(default)]: may be absent (null is still refused) */

struct json_shape;

struct json_field {
        const char *name;
        const struct json_shape *shape;
        unsigned flags;
};

struct json_shape {
        enum json_kind kind;
        /* JSON_STRUCT: the Rust name, as serde names it in messages ("MachineConfig"). */
        const char *name;
        /* JSON_STRUCT: the fields in declaration order, ended by a NULL name (at most 32). */
        const struct json_field *fields;
        /* JSON_STRUCT without #[serde(deny_unknown_fields)]: unknown fields are skipped. */
        bool allow_unknown;
        /* JSON_ENUM: the variants, NULL-terminated. */
        const char *const *variants;
        /* JSON_SEQ: the element's shape. */
        const struct json_shape *item;
        /* JSON_STRING / JSON_PATH with a custom Deserialize: NULL when the string is valid,
         * else the message (serde's Error::custom, positioned as serde_json positions it). */
        const char *(*check)(const char *s);
};

/* The whole text as one value of the shape (only whitespace may follow). On success *out is
 * the tree (cJSON_Delete it); on failure -EINVAL (-ENOMEM) with err set (ERROR_CONFIG) to
 * serde_json's message, its position appended. */
int json_serde_parse(const char *text, size_t len, const struct json_shape *shape, cJSON **out,
                     struct error *err) MUST_CHECK;
/* The same; on failure, *where (where_cap bytes) also names the field the error is in, as a
 * path ("drives[1].rate_limiter.ops"; empty at the top), which serde does not say but a
 * reader of a long document wants. */
int json_serde_parse_at(const char *text, size_t len, const struct json_shape *shape, cJSON **out,
                        char *where, size_t where_cap, struct error *err) MUST_CHECK;

/* Rust's Debug of a str, as serde writes an unexpected string ("string \"a\\\"b\""): into
 * buf (always terminated, cut short if it does not fit). */
void json_serde_debug_str(const char *s, char *buf, size_t cap);

/* An f64 as serde_json writes it in "floating point `...`" (shortest round trip, fixed
 * notation for exponents -5..15 with ".0" on integers, else "1.8446744073709552e+19"). */
void json_serde_format_f64(double v, char *buf, size_t cap);

#endif
