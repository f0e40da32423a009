#include "json_read.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_EXACT_UINT (1ull << 53)

const char *json_type_name(const cJSON *item)
{
        if (!item)
                return "nothing";
        if (cJSON_IsNull(item))
                return "null";
        if (cJSON_IsBool(item))
                return "a boolean";
        if (cJSON_IsNumber(item))
                return "a number";
        if (cJSON_IsString(item))
                return "a string";
        if (cJSON_IsArray(item))
                return "an array";
        if (cJSON_IsObject(item))
                return "an object";
        return "an unknown value";
}

static bool known_name(const char *const *known, const char *name)
{
        for (; *known; known++)
                if (strcmp(*known, name) == 0)
                        return true;
        return false;
}

int json_check_object(const cJSON *json, const char *const *known, struct error *err)
{
        const cJSON *f, *g;

        if (!cJSON_IsObject(json))
                return error_config(err, "invalid type: %s, expected an object",
                                    json_type_name(json));
        for (f = json->child; f; f = f->next) {
                if (!f->string)
                        return error_config(err, "a field without a name");
                if (!known_name(known, f->string)) {
                        char list[400];
                        size_t n = 0;

                        list[0] = '\0';
                        for (const char *const *k = known; *k && n < sizeof(list); k++)
                                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s`%s`",
                                                      k == known ? "" : ", ", *k);
                        if (!known[0])
                                return error_config(err, "unknown field `%s`, there are no fields",
                                                    f->string);
                        return error_config(err, "unknown field `%s`, expected %s%s", f->string,
                                            known[1] ? "one of " : "", list);
                }
                for (g = json->child; g != f; g = g->next)
                        if (strcmp(g->string, f->string) == 0)
                                return error_config(err, "duplicate field `%s`", f->string);
        }
        return 0;
}

const cJSON *json_field(const cJSON *obj, const char *name)
{
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

        return f && !cJSON_IsNull(f) ? f : NULL;
}

/* Common part: absent/null -> missing or not present; returns 1 when the field is there. */
static int lookup(const cJSON *obj, const char *name, bool required, bool *present,
                  const cJSON **out, struct error *err)
{
        const cJSON *f = json_field(obj, name);

        if (present)
                *present = f != NULL;
        *out = f;
        if (!f)
                return required ? error_config(err, "missing field `%s`", name) : 0;
        return 1;
}

static int wrong_type(const char *name, const cJSON *f, const char *expected, struct error *err)
{
        return error_config(err, "field `%s`: invalid type: %s, expected %s", name,
                            json_type_name(f), expected);
}

int json_get_string(const cJSON *obj, const char *name, bool required, char **out,
                    struct error *err)
{
        const cJSON *f;
        char *copy;
        int r = lookup(obj, name, required, NULL, &f, err);

        if (r <= 0)
                return r;
        if (!cJSON_IsString(f))
                return wrong_type(name, f, "a string", err);
        copy = strdup(f->valuestring);
        if (!copy)
                return error_set(err, -ENOMEM, "out of memory");
        free(*out);
        *out = copy;
        return 0;
}

int json_get_bool(const cJSON *obj, const char *name, bool required, bool *present, bool *out,
                  struct error *err)
{
        const cJSON *f;
        int r = lookup(obj, name, required, present, &f, err);

        if (r <= 0)
                return r;
        if (!cJSON_IsBool(f))
                return wrong_type(name, f, "a boolean", err);
        *out = cJSON_IsTrue(f);
        return 0;
}

int json_get_uint(const cJSON *obj, const char *name, bool required, uint64_t min, uint64_t max,
                  bool *present, uint64_t *out, struct error *err)
{
        const cJSON *f;
        double v;
        int r = lookup(obj, name, required, present, &f, err);

        if (r <= 0)
                return r;
        if (!cJSON_IsNumber(f))
                return wrong_type(name, f, "an unsigned integer", err);
        v = f->valuedouble;
        if (max > MAX_EXACT_UINT)
                max = MAX_EXACT_UINT;
        if (!isfinite(v) || v != floor(v))
                return error_config(err, "field `%s`: invalid value: %g, expected an integer", name,
                                    v);
        if (v < (double)min || v > (double)max)
                return error_config(err,
                                    "field `%s`: invalid value: %.0f, expected an integer from "
                                    "%llu to %llu",
                                    name, v, (unsigned long long)min, (unsigned long long)max);
        *out = (uint64_t)v;
        return 0;
}

int json_get_enum(const cJSON *obj, const char *name, bool required, const char *const *values,
                  bool nocase, bool *present, int *out, struct error *err)
{
        const cJSON *f;
        char list[256];
        size_t n = 0;
        int r = lookup(obj, name, required, present, &f, err);

        if (r <= 0)
                return r;
        if (!cJSON_IsString(f))
                return wrong_type(name, f, "a string", err);
        for (int i = 0; values[i]; i++) {
                if (nocase ? strcasecmp(values[i], f->valuestring) == 0
                           : strcmp(values[i], f->valuestring) == 0) {
                        *out = i;
                        return 0;
                }
        }
        list[0] = '\0';
        for (int i = 0; values[i] && n < sizeof(list); i++)
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s`%s`", i ? ", " : "",
                                      values[i]);
        return error_config(err, "field `%s`: unknown variant `%s`, expected one of %s", name,
                            f->valuestring, list);
}

int json_get_object(const cJSON *obj, const char *name, bool required, const cJSON **out,
                    struct error *err)
{
        int r = lookup(obj, name, required, NULL, out, err);

        if (r <= 0)
                return r;
        if (!cJSON_IsObject(*out))
                return wrong_type(name, *out, "an object", err);
        return 0;
}

cJSON *json_add_uint(cJSON *obj, const char *name, uint64_t value)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
        return cJSON_AddRawToObject(obj, name, buf);
}
