/*
 * JSON values for the MMDS data store: parse, print, merge-patch (RFC 7396), look up by JSON
 * pointer (RFC 6901) and format as EC2 IMDS text.
 *
 * Firecracker keeps the store in serde_json values, and what a guest or GET /mmds reads back
 * is serde_json's compact printing of them; this module gives the same bytes: object members
 * sorted by key (bytewise, as a BTreeMap orders them; a key given twice keeps its last
 * value), strings escaped as serde_json escapes them (\" \\ \b \f \n \r \t, other control
 * characters as \u00xx, everything else as UTF-8), no whitespace. Numbers keep the literal
 * the host gave (integers print as serde_json prints them; a float keeps its spelling, where
 * serde_json would print its shortest form: "1e5" stays "1e5").
 *
 * The text is the host's (the API, --metadata), never the guest's; still, parsing is bounded:
 * nesting depth at most MMDS_JSON_MAX_DEPTH (serde_json's recursion limit), strings must be
 * valid UTF-8 (a \u escape with a lone surrogate is refused).
 */
#ifndef DEVICES_MMDS_MMDS_JSON_H
#define DEVICES_MMDS_MMDS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

#define MMDS_JSON_MAX_DEPTH 128

enum mmds_json_type {
        MMDS_JSON_NULL,
        MMDS_JSON_FALSE,
        MMDS_JSON_TRUE,
        MMDS_JSON_NUMBER,
        MMDS_JSON_STRING,
        MMDS_JSON_ARRAY,
        MMDS_JSON_OBJECT,
};

struct mmds_json;

/* A growable byte buffer (the printers append to it). */
struct mmds_buf {
        char *data;
        size_t len, cap;
        bool failed; /* an allocation failed: the contents are incomplete */
};

void mmds_buf_append(struct mmds_buf *b, const void *p, size_t n);
void mmds_buf_free(struct mmds_buf *b);

/* Parses exactly one JSON value (whitespace around it allowed). -EINVAL with a message in
 * msg ("expected value at byte 3"), -ENOMEM. */
int mmds_json_parse(const char *text, size_t len, struct mmds_json **out, char *msg,
                    size_t msg_cap) MUST_CHECK;
void mmds_json_free(struct mmds_json *v);
/* Deep copy; NULL when out of memory. */
struct mmds_json *mmds_json_copy(const struct mmds_json *v);
/* A new null value; NULL when out of memory. */
struct mmds_json *mmds_json_null(void);

enum mmds_json_type mmds_json_type(const struct mmds_json *v);

/* The compact text of v appended to b; mmds_json_printed_len is its length. */
void mmds_json_print(const struct mmds_json *v, struct mmds_buf *b);
size_t mmds_json_printed_len(const struct mmds_json *v);

/* RFC 7396 on *target, as Firecracker's json_patch does it (a null member of an object patch
 * removes the key; any non-object patch replaces the target). patch is consumed. -ENOMEM
 * leaves *target partly patched: patch a copy. */
int mmds_json_merge_patch(struct mmds_json **target, struct mmds_json *patch) MUST_CHECK;

/* The value at a JSON pointer (the empty pointer is the whole value; otherwise it starts with
 * '/'; "~1" is '/' and "~0" is '~' in a token; array indices are decimal without leading
 * zeros). NULL when there is none. */
const struct mmds_json *mmds_json_pointer(const struct mmds_json *root, const char *ptr,
                                          size_t len);

/* Whether the n bytes at s are UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). */
bool mmds_utf8_valid(const char *s, size_t n);

/* EC2 IMDS text: an object lists its keys one per line, "/" after those holding objects (no
 * newline after the last); a string is its value. false for other types. */
bool mmds_json_print_imds(const struct mmds_json *v, struct mmds_buf *b);

#endif
