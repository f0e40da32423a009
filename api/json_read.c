#include "json_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *json_type_name(const cJSON *item)
{
        if (!item)
                return "nothing";
        if (cJSON_IsNull(item))
                return "null";
        if (cJSON_IsBool(item))
                return "a boolean";
        if (cJSON_IsNumber(item) || cJSON_IsRaw(item))
                return "a number";
        if (cJSON_IsString(item))
                return "a string";
        if (cJSON_IsArray(item))
                return "an array";
        if (cJSON_IsObject(item))
                return "an object";
        return "an unknown value";
}

const cJSON *json_field(const cJSON *obj, const char *name)
{
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

        return f && !cJSON_IsNull(f) ? f : NULL;
}

int json_get_string(const cJSON *obj, const char *name, char **out, struct error *err)
{
        const cJSON *f = json_field(obj, name);
        char *copy;

        if (!f || !cJSON_IsString(f))
                return 0;
        copy = strdup(f->valuestring);
        if (!copy)
                return error_set(err, -ENOMEM, "out of memory");
        free(*out);
        *out = copy;
        return 0;
}

bool json_get_bool(const cJSON *obj, const char *name, bool *out)
{
        const cJSON *f = json_field(obj, name);

        if (!f || !cJSON_IsBool(f))
                return false;
        *out = cJSON_IsTrue(f);
        return true;
}

bool json_get_uint(const cJSON *obj, const char *name, uint64_t *out)
{
        const cJSON *f = json_field(obj, name);
        char *end;

        /* json_serde writes an integer field as its decimal digits (cJSON_Raw). */
        if (!f || !cJSON_IsRaw(f) || !f->valuestring)
                return false;
        errno = 0;
        *out = strtoull(f->valuestring, &end, 10);
        return !errno && *end == '\0' && end != f->valuestring;
}

bool json_get_enum(const cJSON *obj, const char *name, const char *const *values, int *out)
{
        const cJSON *f = json_field(obj, name);

        if (!f || !cJSON_IsString(f))
                return false;
        for (int i = 0; values[i]; i++) {
                if (strcmp(values[i], f->valuestring) == 0) {
                        *out = i;
                        return true;
                }
        }
        return false;
}

cJSON *json_add_uint(cJSON *obj, const char *name, uint64_t value)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
        return cJSON_AddRawToObject(obj, name, buf);
}
