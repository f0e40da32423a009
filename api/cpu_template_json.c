#include "cpu_template_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "config_json.h"
#include "json_read.h"
#include "json_serde.h"

/* Built from cpu-templates/NAME.json (embed_templates.cmake): {name, JSON text}, NULL-ended. */
struct api_cpu_template_data {
        const char *name;
        const char *json;
};
extern const struct api_cpu_template_data api_cpu_template_data[];

/* x86_64's CustomCpuTemplate as serde reads it (the body reader checks the shape: syntax,
 * types, unknown fields at the top, missing fields; the strings' contents are checked below,
 * with Firecracker's messages). Its fields are #[serde(default)]; the modifiers inside have
 * no deny_unknown_fields. */
static const struct json_shape t_tmpl_string = {.kind = JSON_STRING};
static const struct json_shape t_tmpl_u32 = {.kind = JSON_U32};
static const struct json_shape t_caps = {.kind = JSON_SEQ, .item = &t_tmpl_string};
static const struct json_field reg_modifier_fields[] = {
    {.name = "register", .shape = &t_tmpl_string},
    {.name = "bitmap", .shape = &t_tmpl_string},
    {.name = NULL},
};
static const struct json_shape t_reg_modifier = {.kind = JSON_STRUCT,
                                                 .name = "CpuidRegisterModifier",
                                                 .fields = reg_modifier_fields,
                                                 .allow_unknown = true};
static const struct json_shape t_reg_modifiers = {.kind = JSON_SEQ, .item = &t_reg_modifier};
static const struct json_field leaf_modifier_fields[] = {
    {.name = "leaf", .shape = &t_tmpl_string},
    {.name = "subleaf", .shape = &t_tmpl_string},
    {.name = "flags", .shape = &t_tmpl_u32},
    {.name = "modifiers", .shape = &t_reg_modifiers},
    {.name = NULL},
};
static const struct json_shape t_leaf_modifier = {.kind = JSON_STRUCT,
                                                  .name = "CpuidLeafModifier",
                                                  .fields = leaf_modifier_fields,
                                                  .allow_unknown = true};
static const struct json_shape t_leaf_modifiers = {.kind = JSON_SEQ, .item = &t_leaf_modifier};
static const struct json_field msr_modifier_fields[] = {
    {.name = "addr", .shape = &t_tmpl_string},
    {.name = "bitmap", .shape = &t_tmpl_string},
    {.name = NULL},
};
static const struct json_shape t_msr_modifier = {.kind = JSON_STRUCT,
                                                 .name = "RegisterModifier",
                                                 .fields = msr_modifier_fields,
                                                 .allow_unknown = true};
static const struct json_shape t_msr_modifiers = {.kind = JSON_SEQ, .item = &t_msr_modifier};
static const struct json_field template_fields[] = {
    {.name = "kvm_capabilities", .shape = &t_caps, .flags = JSON_DEFAULT},
    {.name = "cpuid_modifiers", .shape = &t_leaf_modifiers, .flags = JSON_DEFAULT},
    {.name = "msr_modifiers", .shape = &t_msr_modifiers, .flags = JSON_DEFAULT},
    {.name = NULL},
};
const struct json_shape api_cpu_template_shape = {
    .kind = JSON_STRUCT, .name = "CustomCpuTemplate", .fields = template_fields};

/* A list field of the shape-checked tree: absent is empty (serde's default), bounded. */
static int get_list(const cJSON *j, const char *name, const cJSON **out, struct error *err)
{
        const cJSON *f = json_field(j, name);

        *out = f;
        if (f && cJSON_GetArraySize(f) > API_TEMPLATE_MAX_ENTRIES)
                return error_config(err, "field `%s`: more than %d entries", name,
                                    API_TEMPLATE_MAX_ENTRIES);
        return 0;
}

/* A string field the shape requires. */
static const char *get_str(const cJSON *obj, const char *name)
{
        const cJSON *f = json_field(obj, name);

        return f && cJSON_IsString(f) ? f->valuestring : "";
}

static int parse_leaf(const cJSON *m, struct x86_cpu_template *t, unsigned i, struct error *err)
{
        const cJSON *mods, *rm;
        uint32_t leaf, subleaf;
        uint64_t flags = 0;
        unsigned k = 0;
        int r = x86_template_parse_u32(get_str(m, "leaf"), &leaf, err);

        if (!r)
                r = x86_template_parse_u32(get_str(m, "subleaf"), &subleaf, err);
        json_get_uint(m, "flags", &flags); /* a u32: the shape bounds it */
        if (!r)
                r = get_list(m, "modifiers", &mods, err);
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
                        r = x86_template_parse_register(get_str(rm, "register"), &reg, err);
                if (!r)
                        r = x86_template_parse_bitmap(get_str(rm, "bitmap"), 32, &b, err);
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

/* j: a tree api_cpu_template_shape has checked (json_serde_parse). */
int api_parse_cpu_template(const cJSON *j, struct x86_cpu_template *t, struct error *err)
{
        const cJSON *caps = NULL, *leaves = NULL, *msrs = NULL, *item;
        unsigned i;
        int r;

        x86_cpu_template_init(t);
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

                r = x86_template_parse_cap(cJSON_IsString(item) ? item->valuestring : "", &c, err);
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
                struct x86_bitmap b;
                uint32_t addr;

                r = x86_template_parse_u32(get_str(item, "addr"), &addr, err);
                if (!r)
                        r = x86_template_parse_bitmap(get_str(item, "bitmap"), 64, &b, err);
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

int api_parse_cpu_template_text(const char *text, size_t len, struct x86_cpu_template *t,
                                struct error *err)
{
        cJSON *j;
        int r;

        x86_cpu_template_init(t);
        r = json_serde_parse(text, len, &api_cpu_template_shape, &j, err);
        if (r)
                return r;
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
        r = api_parse_cpu_template_text(text, len, t, err);
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
                r = api_parse_cpu_template_text(d->json, strlen(d->json), t, err);
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
