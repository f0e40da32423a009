/*
 * Strict readers for JSON objects (cJSON), with serde-like messages: an object accepts only
 * the fields it knows, each at most once; a field of the wrong type, a missing required
 * field or a value out of range is an error naming the field. A null value counts as an
 * absent field, as serde reads Option fields.
 *
 * Every reader returns 0 or -EINVAL with err set (ERROR_CONFIG).
 */
#ifndef API_JSON_READ_H
#define API_JSON_READ_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/error.h"
#include "common/util.h"

/* json must be an object whose keys are all in the NULL-terminated list, none twice. */
int json_check_object(const cJSON *json, const char *const *known, struct error *err) MUST_CHECK;

/* The field, or NULL when absent or null. */
const cJSON *json_field(const cJSON *obj, const char *name);

/* Optional fields report through *present (may be NULL for required ones); a required field
 * that is absent is "missing field `name`". Strings are duplicated into *out (freeing the
 * previous value). */
int json_get_string(const cJSON *obj, const char *name, bool required, char **out,
                    struct error *err) MUST_CHECK;
int json_get_bool(const cJSON *obj, const char *name, bool required, bool *present, bool *out,
                  struct error *err) MUST_CHECK;
/* A non-negative integer in [min, max] (max at most 2^53, what a JSON number holds exactly). */
int json_get_uint(const cJSON *obj, const char *name, bool required, uint64_t min, uint64_t max,
                  bool *present, uint64_t *out, struct error *err) MUST_CHECK;
/* One of the NULL-terminated values (case-insensitively when nocase); *out is its index. */
int json_get_enum(const cJSON *obj, const char *name, bool required, const char *const *values,
                  bool nocase, bool *present, int *out, struct error *err) MUST_CHECK;
/* An object (not checked further); *out NULL when absent. */
int json_get_object(const cJSON *obj, const char *name, bool required, const cJSON **out,
                    struct error *err) MUST_CHECK;

/* "a string", "a number", ... for messages. */
const char *json_type_name(const cJSON *item);

/* Adds an exact unsigned integer (cJSON's numbers are doubles). */
cJSON *json_add_uint(cJSON *obj, const char *name, uint64_t value);

#endif
