#include "cpu_template_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "config_json.h"
#include "json_read.h"

/* Built from cpu-templates/NAME.json (embed_templates.cmake): {name, JSON text}, NULL-ended. */
struct api_cpu_template_data {
        const char *name;
        const char *json;
};
extern const struct api_cpu_template_data api_cpu_template_data[];

#define FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A list field: absent or null is empty (serde's default), anything but an array refused. */
static int get_list(const cJSON *j, const char *name, const cJSON **out, struct error *err)
{
        const cJSON *f = json_field(j, name);

        *out = NULL;
        if (!f)
                return 0;
        if (!cJSON_IsArray(f))
                return error_config(err, "field `%s`: invalid type: %s, expected an array", name,
                                    json_type_name(f));
        if (cJSON_GetArraySize(f) > API_TEMPLATE_MAX_ENTRIES)
                return error_config(err, "field `%s`: more than %d entries", name,
                                    API_TEMPLATE_MAX_ENTRIES);
        *out = f;
        return 0;
}

/* A required string field of an object whose other fields are ignored. */
static int get_str(const cJSON *obj, const char *name, const char **out, struct error *err)
{
        const cJSON *f;

        if (!cJSON_IsObject(obj))
                return error_config(err, "invalid type: %s, expected an object",
                                    json_type_name(obj));
        f = json_field(obj, name);
        if (!f)
                return error_config(err, "missing field `%s`", name);
        if (!cJSON_IsString(f))
                return error_config(err, "field `%s`: invalid type: %s, expected a string", name,
                                    json_type_name(f));
        *out = f->valuestring;
        return 0;
}

static int parse_leaf(const cJSON *m, struct x86_cpu_template *t, unsigned i, struct error *err)
{
        const char *leaf_s, *subleaf_s, *reg_s, *bitmap_s;
        const cJSON *mods, *rm;
        uint32_t leaf, subleaf;
        uint64_t flags;
        unsigned k = 0;
        int r = get_str(m, "leaf", &leaf_s, err);

        if (!r)
                r = x86_template_parse_u32(leaf_s, &leaf, err);
        if (!r)
                r = get_str(m, "subleaf", &subleaf_s, err);
        if (!r)
                r = x86_template_parse_u32(subleaf_s, &subleaf, err);
        if (!r)
                r = json_get_uint(m, "flags", true, 0, UINT32_MAX, NULL, &flags, err);
        if (!r)
                r = get_list(m, "modifiers", &mods, err);
        if (!r && !mods)
                r = error_config(err, "missing field `modifiers`");
        if (r) {
                error_prefix(err, "cpuid_modifiers[%u]", i);
                return r;
        }
        /* A leaf without register modifiers still has to exist, and takes the flags. */
        r = x86_cpu_template_add_cpuid(t, leaf, subleaf, (uint32_t)flags, false, CPUID_EAX, NULL,
                                       err);
        cJSON_ArrayForEach(rm, mods)
        {
                enum x86_cpuid_reg reg = CPUID_EAX;
                struct x86_bitmap b;

                if (!r)
                        r = get_str(rm, "register", &reg_s, err);
                if (!r)
                        r = x86_template_parse_register(reg_s, &reg, err);
                if (!r)
                        r = get_str(rm, "bitmap", &bitmap_s, err);
                if (!r)
                        r = x86_template_parse_bitmap(bitmap_s, 32, &b, err);
                if (!r)
                        r = x86_cpu_template_add_cpuid(t, leaf, subleaf, (uint32_t)flags, true, reg,
                                                       &b, err);
                if (r) {
                        error_prefix(err, "cpuid_modifiers[%u].modifiers[%u]", i, k);
                        return r;
                }
                k++;
        }
        return r;
}

int api_parse_cpu_template(const cJSON *j, struct x86_cpu_template *t, struct error *err)
{
        const cJSON *caps = NULL, *leaves = NULL, *msrs = NULL, *item;
        unsigned i;
        int r = json_check_object(j, FIELDS("kvm_capabilities", "cpuid_modifiers", "msr_modifiers"),
                                  err);

        x86_cpu_template_init(t);
        if (r)
                return r;
        if (!r)
                r = get_list(j, "kvm_capabilities", &caps, err);
        if (!r)
                r = get_list(j, "cpuid_modifiers", &leaves, err);
        if (!r)
                r = get_list(j, "msr_modifiers", &msrs, err);
        if (r)
                return r;
        i = 0;
        cJSON_ArrayForEach(item, caps)
        {
                struct x86_kvm_cap c;

                if (!cJSON_IsString(item))
                        r = error_config(err, "invalid type: %s, expected a string",
                                         json_type_name(item));
                if (!r)
                        r = x86_template_parse_cap(item->valuestring, &c, err);
                if (!r)
                        r = x86_cpu_template_add_cap(t, &c, err);
                if (r) {
                        error_prefix(err, "kvm_capabilities[%u]", i);
                        return r;
                }
                i++;
        }
        i = 0;
        cJSON_ArrayForEach(item, leaves)
        {
                r = parse_leaf(item, t, i++, err);
                if (r)
                        return r;
        }
        i = 0;
        cJSON_ArrayForEach(item, msrs)
        {
                const char *addr_s, *bitmap_s;
                struct x86_bitmap b;
                uint32_t addr;

                r = get_str(item, "addr", &addr_s, err);
                if (!r)
                        r = x86_template_parse_u32(addr_s, &addr, err);
                if (!r)
                        r = get_str(item, "bitmap", &bitmap_s, err);
                if (!r)
                        r = x86_template_parse_bitmap(bitmap_s, 64, &b, err);
                if (!r)
                        r = x86_cpu_template_add_msr(t, addr, &b, err);
                if (r) {
                        error_prefix(err, "msr_modifiers[%u]", i);
                        return r;
                }
                i++;
        }
        return r;
}

static cJSON *hex_string(uint32_t v)
{
        char buf[16];

        snprintf(buf, sizeof(buf), "%#x", v);
        if (v == 0) /* Rust's {:#x} of 0 */
                snprintf(buf, sizeof(buf), "0x0");
        return cJSON_CreateString(buf);
}

static cJSON *bitmap_string(const struct x86_bitmap *b, unsigned bits)
{
        char buf[72];

        x86_template_format_bitmap(b, bits, buf);
        return cJSON_CreateString(buf);
}

cJSON *api_json_cpu_template(const struct x86_cpu_template *t)
{
        cJSON *o = cJSON_CreateObject(), *caps, *leaves, *msrs;

        if (!o)
                return NULL;
        caps = cJSON_AddArrayToObject(o, "kvm_capabilities");
        for (unsigned i = 0; caps && i < t->nr_caps; i++) {
                char buf[16];

                snprintf(buf, sizeof(buf), "%s%u", t->caps[i].remove ? "!" : "", t->caps[i].cap);
                cJSON_AddItemToArray(caps, cJSON_CreateString(buf));
        }
        leaves = cJSON_AddArrayToObject(o, "cpuid_modifiers");
        for (unsigned i = 0; leaves && i < t->nr_cpuid; i++) {
                const struct x86_cpuid_modifier *m = &t->cpuid[i];
                cJSON *l = cJSON_CreateObject(), *mods;

                if (!l)
                        break;
                cJSON_AddItemToObject(l, "leaf", hex_string(m->leaf));
                cJSON_AddItemToObject(l, "subleaf", hex_string(m->subleaf));
                json_add_uint(l, "flags", m->flags);
                mods = cJSON_AddArrayToObject(l, "modifiers");
                for (unsigned r = 0; mods && r < 4; r++) {
                        cJSON *rm;

                        if (!m->regs[r].filter)
                                continue;
                        rm = cJSON_CreateObject();
                        if (!rm)
                                break;
                        cJSON_AddStringToObject(rm, "register",
                                                x86_template_register_name((enum x86_cpuid_reg)r));
                        cJSON_AddItemToObject(rm, "bitmap", bitmap_string(&m->regs[r], 32));
                        cJSON_AddItemToArray(mods, rm);
                }
                cJSON_AddItemToArray(leaves, l);
        }
        msrs = cJSON_AddArrayToObject(o, "msr_modifiers");
        for (unsigned i = 0; msrs && i < t->nr_msrs; i++) {
                cJSON *m = cJSON_CreateObject();

                if (!m)
                        break;
                cJSON_AddItemToObject(m, "addr", hex_string(t->msrs[i].index));
                cJSON_AddItemToObject(m, "bitmap", bitmap_string(&t->msrs[i].bitmap, 64));
                cJSON_AddItemToArray(msrs, m);
        }
        return o;
}

static int parse_text(const char *text, size_t len, struct x86_cpu_template *t, struct error *err)
{
        cJSON *j;
        int r;

        j = api_json_parse(text, len, err);
        if (!j)
                return -EINVAL;
        r = api_parse_cpu_template(j, t, err);
        cJSON_Delete(j);
        return r;
}

int api_load_cpu_template(const char *path, struct x86_cpu_template *t, struct error *err)
{
        char *text;
        size_t len;
        int r = file_read_all("CPU template file", path, 1u << 20, &text, &len, err);

        if (r)
                return r;
        r = parse_text(text, len, t, err);
        free(text);
        if (r)
                error_prefix(err, "CPU template file '%s'", path);
        return r;
}

int api_static_cpu_template(const char *name, struct x86_cpu_template **out, struct error *err)
{
        for (const struct api_cpu_template_data *d = api_cpu_template_data; d->name; d++) {
                struct x86_cpu_template *t;
                int r;

                if (strcmp(d->name, name) != 0)
                        continue;
                t = malloc(sizeof(*t));
                if (!t)
                        return error_set(err, -ENOMEM, "out of memory");
                r = parse_text(d->json, strlen(d->json), t, err);
                if (r) {
                        free(t);
                        error_prefix(err, "internal: built-in CPU template %s", name);
                        return r;
                }
                *out = t;
                return 0;
        }
        return -ENOENT;
}
