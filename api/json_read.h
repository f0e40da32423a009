/*
 * Reading the fields of a JSON object that json_serde_parse has already checked against its
 * shape (types, ranges, required fields, unknown and duplicate fields): what remains is
 * taking the values out. A null value counts as an absent field, as serde reads an Option.
 */
#ifndef API_JSON_READ_H
#define API_JSON_READ_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/error.h"
#include "common/util.h"

/* The field, or NULL when absent or null. */
const cJSON *json_field(const cJSON *obj, const char *name);

/* A string field duplicated into *out (freeing the previous value); absent: *out unchanged.
 * 0, or -ENOMEM with err set. */
int json_get_string(const cJSON *obj, const char *name, char **out, struct error *err) MUST_CHECK;
/* A boolean field; whether it was given (absent: *out unchanged). */
bool json_get_bool(const cJSON *obj, const char *name, bool *out);
/* An integer field, exactly (json_serde keeps its digits); whether it was given. */
bool json_get_uint(const cJSON *obj, const char *name, uint64_t *out);
/* A unit-variant field: the index of its value in the NULL-terminated list (the list its
 * shape was checked with); whether it was given. */
bool json_get_enum(const cJSON *obj, const char *name, const char *const *values, int *out);

/* "a string", "a number", ... for messages. */
const char *json_type_name(const cJSON *item);

/* Adds an exact unsigned integer (cJSON's numbers are doubles). */
cJSON *json_add_uint(cJSON *obj, const char *name, uint64_t value);

#endif
