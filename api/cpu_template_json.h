/*
 * CPU templates in Firecracker's JSON (its CpuConfig, docs/cpu-templates.md): the body of
 * PUT /cpu-config, the config file's "cpu-config" (the template itself, or the path of a
 * file holding it), and the static templates built in from cpu-templates/NAME.json (the names
 * machine-config's deprecated cpu_template takes).
 *
 * Read as Firecracker reads it on x86_64: the object's fields are kvm_capabilities,
 * cpuid_modifiers and msr_modifiers, each optional (vcpu_features and reg_modifiers are
 * aarch64's and refused as unknown fields); a leaf modifier needs leaf, subleaf, flags and
 * modifiers, a register modifier register and bitmap, an MSR modifier addr and bitmap, and
 * any other field inside them is ignored, as serde ignores it there. Messages are
 * Firecracker's for the strings (arch/x86/cpu_template.h), prefixed with where the value is
 * ("cpuid_modifiers[1].modifiers[0]: ...").
 */
#ifndef API_CPU_TEMPLATE_JSON_H
#define API_CPU_TEMPLATE_JSON_H

#include <cJSON.h>

#include "arch/x86/cpu_template.h"
#include "common/error.h"
#include "common/util.h"

/* Entries of the template's lists before folding (a bound on hostile input). */
#define API_TEMPLATE_MAX_ENTRIES 1024

struct json_shape;
/* The body's shape for api/json_serde.h: PUT /cpu-config's, the template files'. */
extern const struct json_shape api_cpu_template_shape;

/* j: the tree json_serde_parse made of the text with api_cpu_template_shape. */
int api_parse_cpu_template(const cJSON *j, struct x86_cpu_template *t,
                           struct error *err) MUST_CHECK;
/* The template's JSON text, read by the body reader (api/json_serde.h) with that shape. */
int api_parse_cpu_template_text(const char *text, size_t len, struct x86_cpu_template *t,
                                struct error *err) MUST_CHECK;
/* The template in Firecracker's serialisation (hex leaf/subleaf/addr strings, full-width
 * bitmaps); a register every bit of which is kept is left out. */
cJSON *api_json_cpu_template(const struct x86_cpu_template *t);

/* A file holding a template (a regular file, at most 1 MiB). */
int api_load_cpu_template(const char *path, struct x86_cpu_template *t,
                          struct error *err) MUST_CHECK;

/* The built-in static template of that name ("C3", "T2", "T2S", "T2CL", "T2A"): 0 with *out
 * (malloc'd); -ENOENT when there is none of that name. */
int api_static_cpu_template(const char *name, struct x86_cpu_template **out,
                            struct error *err) MUST_CHECK;

#endif
