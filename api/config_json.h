/*
 * The configuration in Firecracker's JSON shapes, both ways, shared by the REST API and the
 * config file (whose keys are GET /vm/config's: "boot-source", "machine-config", "drives",
 * "network-interfaces", "vsock", "balloon", "entropy", "logger", "metrics", "mmds-config",
 * plus "serial").
 *
 * A body is read as Firecracker reads it: serde_json deserialising it into the Rust struct
 * of that request (api/json_serde.h, one shape per command), with serde's messages and
 * positions; then Firecracker's own checks of the request (an empty PATCH, exactly one of
 * mem_file_path and mem_backend, ...). The api_parse_* functions take the tree json_serde
 * made and map it onto the configuration structures; whether the values make a machine is
 * decided by the same functions the command line uses (vmm_config_put_drive,
 * vmm_config_apply_machine, vmm_config_validate, ...). Errors are ERROR_CONFIG.
 */
#ifndef API_CONFIG_JSON_H
#define API_CONFIG_JSON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "common/error.h"
#include "vmm/config.h"
#include "vmm/controller.h"

/* ---- request bodies -> structures (strings in the outputs are malloc'd) ---- */

/* The error code of a refusal whose message is the whole answer (a feature we lack, an empty
 * PATCH): the REST API does not present it as a deserialization error. */
#define API_PARSE_REFUSED (-ENOTSUP)

int api_parse_boot_source(const cJSON *j, struct vmm_boot_source *out,
                          struct error *err) MUST_CHECK;
/* put: Firecracker's PUT (vcpu_count and mem_size_mib required, the optional fields reset to
 * their defaults); otherwise PATCH (only what is given; nothing at all is "Empty PATCH
 * request."). *cpu_hide receives our extension field's string (u->cpu_hide is left NULL;
 * the caller points it there); *cpu_template_given: the deprecated cpu_template was there. */
int api_parse_machine(const cJSON *j, bool put, struct vmm_machine_update *u, char **cpu_hide,
                      bool *cpu_template_given, struct error *err) MUST_CHECK;
int api_parse_drive(const cJSON *j, struct vmm_drive *out, struct error *err) MUST_CHECK;
/* GET /hotplug/memory: Firecracker's MemoryHotplugStatus. */
cJSON *api_json_memory_hotplug(const struct vmm_memory_hotplug *h, uint64_t plugged_mib);
/* Firecracker's Pmem object (PUT /pmem/{id}, the config file's "pmem" items). */
int api_parse_pmem(const cJSON *j, struct vmm_pmem *out, struct error *err) MUST_CHECK;
int api_parse_drive_update(const cJSON *j, struct vmm_drive_update *out,
                           struct error *err) MUST_CHECK;
int api_parse_net(const cJSON *j, struct vmm_net *out, struct error *err) MUST_CHECK;
int api_parse_net_update(const cJSON *j, struct vmm_net_update *out, struct error *err) MUST_CHECK;
int api_parse_vsock(const cJSON *j, struct vmm_vsock *out, struct error *err) MUST_CHECK;
int api_parse_entropy(const cJSON *j, struct vmm_entropy *out, struct error *err) MUST_CHECK;
/* PUT /vm/memory-dump {"mem_file_path": "..."} (ours). */
int api_parse_memory_dump(const cJSON *j, char **path, struct error *err) MUST_CHECK;
/* GET /vm/memory/{address}: {"address", "length", "data": lowercase hex}. */
cJSON *api_json_memory(uint64_t address, const uint8_t *data, size_t len);
/* PUT /snapshot/create: mem_file_path, snapshot_path, snapshot_type Full|Diff. */
int api_parse_snapshot_create(const cJSON *j, struct vmm_snapshot_create *out,
                              struct error *err) MUST_CHECK;
/* PUT /snapshot/load (SnapshotLoadParams): snapshot_path, exactly one of mem_file_path and
 * mem_backend ({"backend_type": "File" | "Uffd", "backend_path"}), track_dirty_pages (or the
 * deprecated enable_diff_snapshots), resume_vm, network_overrides, vsock_override,
 * clock_realtime, huge_pages (Snapshot or None; 2M with Uffd), and ours: drive_overrides
 * ([{"drive_id", "path_on_host"}], another backing file per drive). *deprecated:
 * mem_file_path or enable_diff_snapshots was used. */
int api_parse_snapshot_load(const cJSON *j, struct vmm_snapshot_load *out, bool *deprecated,
                            struct error *err) MUST_CHECK;
/* PUT /confidential {"platform": "none" | "sev" | "pef" | "s390-pv"} (our extension). */
int api_parse_confidential(const cJSON *j, struct vmm_confidential *out,
                           struct error *err) MUST_CHECK;
/* PUT /serial: serial_out_path, rate_limiter (a TokenBucket). */
int api_parse_serial(const cJSON *j, struct vmm_serial *out, struct error *err) MUST_CHECK;
/* PUT /mmds/config (MmdsConfig): network_interfaces (required), version "V1" | "V2" (default
 * V1), ipv4_address (dotted quad, default 169.254.169.254), imds_compat. */
int api_parse_mmds_config(const cJSON *j, struct vmm_mmds_config_request *out,
                          struct error *err) MUST_CHECK;
/* "a.b.c.d" as Rust's Ipv4Addr reads it (decimal octets, no leading zeros) -> host order. */
int api_parse_ipv4(const char *s, uint32_t *out);
int api_parse_balloon(const cJSON *j, struct vmm_balloon *out, struct error *err) MUST_CHECK;
int api_parse_balloon_update(const cJSON *j, uint32_t *amount_mib, struct error *err) MUST_CHECK;
int api_parse_balloon_stats_update(const cJSON *j, uint32_t *interval_s,
                                   struct error *err) MUST_CHECK;
/* PATCH /balloon/hinting/start's body; j = NULL (no body) gives the defaults. */
int api_parse_balloon_hinting_start(const cJSON *j, bool *ack_on_stop,
                                    struct error *err) MUST_CHECK;
int api_parse_logger(const cJSON *j, struct vmm_logger_config *out, struct error *err) MUST_CHECK;
int api_parse_metrics(const cJSON *j, struct vmm_metrics_config *out, struct error *err) MUST_CHECK;
/* PUT /actions: VMM_INSTANCE_START, VMM_FLUSH_METRICS or VMM_SEND_CTRL_ALT_DEL. */
int api_parse_action(const cJSON *j, enum vmm_action *out, struct error *err) MUST_CHECK;
/* PATCH /vm: VMM_PAUSE or VMM_RESUME. */
int api_parse_vm_state(const cJSON *j, enum vmm_action *out, struct error *err) MUST_CHECK;

/* A command's JSON body (an API request's, or a config file section's) into req's payload, by
 * the table's PARSE column (vmm/controller_actions.def). req->action names the command; a
 * body that picks among several (PUT /actions, PATCH /vm) sets it. A body that names its
 * resource (a drive, a network interface) points *body_id at that name, else NULL. */
int api_parse_command(const cJSON *j, struct controller_request *req, const char **body_id,
                      struct error *err) MUST_CHECK;
/* The same from the body's text: json_serde_parse with the command's shape (-EINVAL: serde's
 * message, which the REST API prefixes with "An error occurred when deserializing the json
 * body of a request: "), then api_parse_command (API_PARSE_REFUSED: a whole answer). A
 * deprecated field sets req->deprecation. */
int api_parse_command_text(const char *text, size_t len, struct controller_request *req,
                           const char **body_id, struct error *err) MUST_CHECK;
/* Whether the command (an enum vmm_action; anything else is false) takes a JSON body. */
bool api_command_has_body(int action);
/* Of those, the ones Firecracker lets a client leave the body out of (PATCH
 * /balloon/hinting/start: the defaults), and the ones whose body it never reads (PATCH
 * /balloon/hinting/stop: its documentation sends "{}"). For both, api_parse_command takes
 * j = NULL for "no body". */
bool api_command_body_optional(int action);
bool api_command_body_ignored(int action);

/* ---- structures -> response bodies (NULL when out of memory) ---- */

cJSON *api_json_machine(const struct vmm_machine_config *m);
/* GET /machine-config: the above with the static CPU template's name, when one is set. */
cJSON *api_json_machine_config(const struct vmm_config *cfg);
cJSON *api_json_balloon(const struct vmm_balloon *b);
cJSON *api_json_balloon_stats(const struct virtio_balloon_stats *s);
cJSON *api_json_balloon_hinting(const struct virtio_balloon_hinting *h);
/* GET /vm/config: Firecracker's VmmConfig, key for key (every Option null when unset). */
cJSON *api_json_vm_config(const struct vmm_config *cfg);

/* ---- the config file ---- */

/* Fills cfg (initialised here) from a whole configuration document. Each section is the body
 * of an API command (boot-source: PUT /boot-source, each of drives: PUT /drives/{id}, ...)
 * and goes the way that command goes before the start (api_parse_command, then
 * controller_edit: the files it names are checked, the whole configuration is validated
 * against this host), so a mistake fails here with the API's message, after the section's
 * name ("drives[1]: ..."). */
int api_config_parse(const char *text, size_t len, struct vmm_config *cfg,
                     struct error *err) MUST_CHECK;
int api_config_load_file(const char *path, struct vmm_config *cfg, struct error *err) MUST_CHECK;

#endif
