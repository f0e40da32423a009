/*
 * The control plane without KVM or sockets: JSON bodies to configuration structures (known
 * fields, types, required fields, enums, ranges), the config file and GET /vm/config both
 * ways, the router's error rules, the controller's pre-boot commands and phase rules, and
 * the metrics writer (counters as increments, stores as they are).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/config_json.h"
#include "api/router.h"
#include "common/event_loop.h"
#include "api/cli.h"
#include "vmm/controller.h"
#include "vmm/metrics.h"

/* A command's body through the API's parser (serde-like shape check, then extraction). */
static int parse_cmd(enum vmm_action action, const char *text, struct controller_request *req,
                     struct error *err)
{
        const char *body_id;

        controller_request_init(req, action);
        error_clear(err);
        return api_parse_command_text(text, strlen(text), req, &body_id, err);
}

static void expect_parse_ok(enum vmm_action action, const char *text,
                            struct controller_request *req)
{
        struct error err = {0};

        if (parse_cmd(action, text, req, &err))
                fail_msg("'%s': %s", text, err.msg);
}

/* The whole message, as serde_json words and positions it (Firecracker then prefixes it). */
static void expect_serde(enum vmm_action action, const char *text, const char *message)
{
        struct controller_request req;
        struct error err = {0};
        int r = parse_cmd(action, text, &req, &err);

        controller_request_clear(&req);
        if (r == 0)
                fail_msg("'%s' accepted", text);
        assert_int_equal(r, -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (strcmp(err.msg, message) != 0)
                fail_msg("'%s':\n  got      '%s'\n  expected '%s'", text, err.msg, message);
}

/* A refusal that is the whole answer (not a deserialization error). */
static void expect_refused(enum vmm_action action, const char *text, const char *needle)
{
        struct controller_request req;
        struct error err = {0};
        int r = parse_cmd(action, text, &req, &err);

        controller_request_clear(&req);
        if (r != API_PARSE_REFUSED)
                fail_msg("'%s': %d '%s', expected a refusal", text, r, err.msg);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': '%s' lacks '%s'", text, err.msg, needle);
}

static void test_machine(void **state)
{
        struct controller_request req;
        struct vmm_machine_update *u = &req.u.machine.update;

        (void)state;
        expect_parse_ok(VMM_PUT_MACHINE_CONFIG,
                        "{\"vcpu_count\": 2, \"mem_size_mib\": 4096, \"smt\": true, "
                        "\"huge_pages\": \"2M\", \"cpu_hide\": \"cx16\"}",
                        &req);
        assert_true(u->has_vcpu_count && u->has_mem_size_mib && u->has_huge_pages);
        assert_int_equal(u->vcpu_count, 2);
        assert_int_equal(u->mem_size_mib, 4096);
        assert_true(u->huge_pages && u->smt);
        /* PUT: every optional field is set (to its default when absent). */
        assert_true(u->has_smt && u->has_track_dirty_pages && u->has_cpu_hide);
        assert_false(u->track_dirty_pages);
        assert_string_equal(req.u.machine.cpu_hide, "cx16");
        assert_null(req.deprecation);
        controller_request_clear(&req);

        /* PATCH: only what is given; integers are read exactly (never through a double). */
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"mem_size_mib\": 18446744073709551615}", &req);
        assert_false(u->has_vcpu_count);
        assert_true(u->has_mem_size_mib);
        assert_true(u->mem_size_mib == UINT64_MAX);
        assert_false(u->has_smt || u->has_huge_pages || u->has_cpu_hide);
        assert_null(req.u.machine.cpu_hide);
        controller_request_clear(&req);
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"mem_size_mib\": 9007199254740993}", &req);
        assert_true(u->mem_size_mib == 9007199254740993ull);
        controller_request_clear(&req);

        /* The deprecated cpu_template (even "None") is noted; a static template's content is
         * read with it (the built-in data). */
        expect_parse_ok(VMM_PUT_MACHINE_CONFIG,
                        "{\"vcpu_count\": 2, \"mem_size_mib\": 256, \"cpu_template\": \"None\"}",
                        &req);
        assert_string_equal(req.deprecation,
                            "PUT /machine-config: cpu_template field is deprecated.");
        controller_request_clear(&req);
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"cpu_template\": \"None\"}", &req);
        assert_string_equal(req.deprecation,
                            "PATCH /machine-config: cpu_template field is deprecated.");
        controller_request_clear(&req);
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"cpu_template\": \"C3\"}", &req);
        assert_true(u->has_cpu_template);
        assert_string_equal(u->cpu_template, "C3");
        assert_non_null(req.u.machine.cpu_template_data);
        controller_request_clear(&req);
        /* V1N1 is aarch64's: not a variant of x86_64's StaticCpuTemplate. */
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "{\"cpu_template\": \"V1N1\"}",
                     "unknown variant `V1N1`, expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, "
                     "`T2A` at line 1 column 23");
        /* Ours: the PIT. */
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"pit\": true}", &req);
        assert_true(u->has_pit && u->pit);
        controller_request_clear(&req);
        expect_refused(VMM_PATCH_MACHINE_CONFIG, "{\"huge_pages\": \"Transparent\"}",
                       "not implemented yet");
        /* Firecracker's MachineConfigUpdate::is_empty: nothing to update (null is None). */
        expect_refused(VMM_PATCH_MACHINE_CONFIG, "{}", "Empty PATCH request.");
        expect_refused(VMM_PATCH_MACHINE_CONFIG, "{\"smt\": null}", "Empty PATCH request.");

        /* serde_json's messages and positions (test_api.py checks the first two). */
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"mem_size_mib\": 128}",
                     "missing field `vcpu_count` at line 1 column 21");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": 2}",
                     "missing field `mem_size_mib` at line 1 column 17");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"mem_size_mib\": 18446744073709551616}",
                     "invalid type: floating point `1.8446744073709552e+19`, expected usize at "
                     "line 1 column 37");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": \"-2\"}",
                     "invalid type: string \"-2\", expected u8 at line 1 column 19");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"smt\": \"random_string\"}",
                     "invalid type: string \"random_string\", expected a boolean at line 1 "
                     "column 23");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"cpu_template\": \"random_string\"}",
                     "unknown variant `random_string`, expected one of `C3`, `T2`, `T2S`, "
                     "`None`, `T2CL`, `T2A` at line 1 column 32");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": 256}",
                     "invalid value: integer `256`, expected u8 at line 1 column 18");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": -2}",
                     "invalid value: integer `-2`, expected u8 at line 1 column 17");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": 2.5}",
                     "invalid type: floating point `2.5`, expected u8 at line 1 column 18");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": 1e2}",
                     "invalid type: floating point `100.0`, expected u8 at line 1 column 18");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": -0}",
                     "invalid type: floating point `-0.0`, expected u8 at line 1 column 17");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": null}",
                     "invalid type: null, expected u8 at line 1 column 19");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": [1]}",
                     "invalid type: sequence, expected u8 at line 1 column 15");
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"vcpu_count\": 1, \"x\": 1}",
                     "unknown field `x`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, "
                     "`cpu_template`, `track_dirty_pages`, `huge_pages`, `cpu_hide`, `pit` at "
                     "line 1 column 21");
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "{\"smt\": null, \"smt\" : true}",
                     "duplicate field `smt` at line 1 column 20");
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "{\"huge_pages\": \"4K\"}",
                     "unknown variant `4K`, expected one of `None`, `Transparent`, `2M` at line "
                     "1 column 19");
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "{\"huge_pages\": 4}",
                     "expected value at line 1 column 16");
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "5",
                     "invalid type: integer `5`, expected struct MachineConfigUpdate at line 1 "
                     "column 1");
        expect_serde(VMM_PATCH_MACHINE_CONFIG, "{\n  \"smt\": true,\n  \"x\": 1\n}",
                     "unknown field `x`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, "
                     "`cpu_template`, `track_dirty_pages`, `huge_pages`, `cpu_hide`, `pit` at "
                     "line 3 column 5");
        /* Document order: a bad value before a missing field. */
        expect_serde(VMM_PUT_MACHINE_CONFIG, "{\"mem_size_mib\": \"1\"}",
                     "invalid type: string \"1\", expected usize at line 1 column 20");
        /* A struct may be given as the array of its fields, as serde allows. */
        expect_parse_ok(VMM_PUT_MACHINE_CONFIG, "[3, 64]", &req);
        assert_int_equal(u->vcpu_count, 3);
        assert_int_equal(u->mem_size_mib, 64);
        controller_request_clear(&req);
        expect_serde(VMM_PUT_MACHINE_CONFIG, "[3]",
                     "invalid length 1, expected struct MachineConfig with 8 elements at line 1 "
                     "column 3");
        /* An enum as {"Variant": null}. */
        expect_parse_ok(VMM_PATCH_MACHINE_CONFIG, "{\"huge_pages\": {\"2M\": null}}", &req);
        assert_true(u->has_huge_pages && u->huge_pages);
        controller_request_clear(&req);
}

/* An escaped NUL would cut a C string short: refused in a key and in a string field; an
 * escaped backslash followed by "u0000" is text. */
static void test_escaped_nul(void **state)
{
        struct controller_request req;

        (void)state;
        expect_serde(VMM_PUT_VSOCK, "{\"a\\u0000\": 1}",
                     "a key contains a NUL character at line 1 column 10");
        expect_serde(VMM_PUT_DRIVE, "{\"drive_id\": \"a\\u0000xyz\"}",
                     "invalid value: a string with a NUL character, expected a string at line 1 "
                     "column 25");
        expect_parse_ok(VMM_PUT_VSOCK, "{\"guest_cid\": 3, \"uds_path\": \"C:\\\\u0000\"}", &req);
        assert_string_equal(req.u.vsock.uds_path, "C:\\u0000");
        controller_request_clear(&req);
}

static void test_serde_syntax(void **state)
{
        (void)state;
        expect_serde(VMM_PUT_VSOCK, "", "EOF while parsing a value at line 1 column 0");
        expect_serde(VMM_PUT_VSOCK, "{", "EOF while parsing an object at line 1 column 1");
        expect_serde(VMM_PUT_ENTROPY, "{} {}", "trailing characters at line 1 column 4");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": 3,}", "trailing comma at line 1 column 17");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\" 3}", "expected `:` at line 1 column 14");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": 3 \"x\"}",
                     "expected `,` or `}` at line 1 column 17");
        expect_serde(VMM_PUT_VSOCK, "{3}", "key must be a string at line 1 column 2");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": 01}", "invalid number at line 1 column 16");
        expect_serde(VMM_PUT_VSOCK, "{\"uds_path\": \"a\tb\"}",
                     "control character (\\u0000-\\u001F) found while parsing a string at line "
                     "1 column 16");
        expect_serde(VMM_PUT_VSOCK, "{\"uds_path\": \"a\\qb\"}",
                     "invalid escape at line 1 column 17");
        expect_serde(VMM_PUT_VSOCK, "{\"uds_path\": \"a\\u0000b\"}",
                     "invalid value: a string with a NUL character, expected a string at line 1 "
                     "column 23");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": 1e999}",
                     "number out of range at line 1 column 19");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": tru}", "expected ident at line 1 column 18");
        expect_serde(VMM_PUT_VSOCK, "{\"guest_cid\": 4294967296, \"uds_path\": \"x\"}",
                     "invalid value: integer `4294967296`, expected u32 at line 1 column 24");
        expect_serde(VMM_PUT_VSOCK, "[]",
                     "invalid length 1, expected struct VsockDeviceConfig with 4 elements at "
                     "line 1 column 2");
}

/* PUT /cpu-config through the body reader: serde's words for the shape, Firecracker's for
 * the strings (after where the value is). */
static void test_cpu_config(void **state)
{
        struct controller_request req;

        (void)state;
        expect_parse_ok(VMM_PUT_CPU_CONFIG,
                        "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", "
                        "\"flags\": 0, \"modifiers\": [{\"register\": \"ecx\", \"bitmap\": "
                        "\"0b0xxxxx\"}]}]}",
                        &req);
        assert_non_null(req.u.cpu_config);
        assert_int_equal(req.u.cpu_config->nr_cpuid, 1);
        controller_request_clear(&req);
        expect_serde(VMM_PUT_CPU_CONFIG, "{\"vcpu_features\": []}",
                     "unknown field `vcpu_features`, expected one of `kvm_capabilities`, "
                     "`cpuid_modifiers`, `msr_modifiers` at line 1 column 16");
        expect_serde(VMM_PUT_CPU_CONFIG, "{\"msr_modifiers\": [{\"addr\": \"0x277\"}]}",
                     "missing field `bitmap` at line 1 column 36");
        expect_serde(VMM_PUT_CPU_CONFIG, "{\"kvm_capabilities\": [\"x\"]}",
                     "kvm_capabilities[0]: Failed to parse string [x] as a kvm capability - can "
                     "not convert to numeric: invalid digit found in string");
}

static void test_drive_and_rate_limiter(void **state)
{
        struct controller_request req;
        struct vmm_drive *d = &req.u.drive;
        struct vmm_drive_update *du = &req.u.drive_update;

        (void)state;
        expect_parse_ok(VMM_PUT_DRIVE,
                        "{\"drive_id\": \"root\", \"path_on_host\": \"/d\", \"is_root_device\": "
                        "true, \"rate_limiter\": {\"ops\": {\"size\": 10, \"one_time_burst\": 5, "
                        "\"refill_time\": 100}}, \"io_engine\": \"Async\", \"cache_type\": "
                        "\"Writeback\", \"partuuid\": \"abc\"}",
                        &req);
        assert_string_equal(d->drive_id, "root");
        assert_string_equal(d->path_on_host, "/d");
        assert_string_equal(d->partuuid, "abc");
        assert_true(d->is_root_device);
        assert_false(d->is_read_only);
        assert_int_equal(d->io_engine, VMM_IO_ASYNC);
        assert_int_equal(d->cache_type, VMM_CACHE_WRITEBACK);
        assert_true(d->rate_limiter.present);
        assert_int_equal(d->rate_limiter.cfg.ops.size, 10);
        assert_int_equal(d->rate_limiter.cfg.ops.one_time_burst, 5);
        assert_int_equal(d->rate_limiter.cfg.ops.refill_time_ms, 100);
        assert_int_equal(d->rate_limiter.cfg.bandwidth.size, 0);
        controller_request_clear(&req);

        /* path_on_host is an Option in Firecracker (a vhost-user drive has a socket instead):
         * its absence is the block device's refusal, not serde's. */
        expect_parse_ok(VMM_PUT_DRIVE, "{\"drive_id\": \"root\", \"is_root_device\": true}", &req);
        assert_null(d->path_on_host);
        controller_request_clear(&req);
        expect_refused(VMM_PUT_DRIVE,
                       "{\"drive_id\": \"v\", \"is_root_device\": false, \"socket\": \"/s\"}",
                       "vhost-user block devices (field `socket`) are not implemented yet");

        /* PATCH: buckets given are flagged, the others stay untouched. */
        expect_parse_ok(VMM_PATCH_DRIVE,
                        "{\"drive_id\": \"root\", \"rate_limiter\": {\"bandwidth\": {\"size\": 1, "
                        "\"refill_time\": 2}}}",
                        &req);
        assert_null(du->path_on_host);
        assert_true(du->has_rate_limiter && du->rate_limiter.has_bandwidth);
        assert_false(du->rate_limiter.has_ops);
        struct vmm_rate_limiter rl = {.present = true, .cfg.ops = {.size = 7, .refill_time_ms = 8}};
        vmm_rate_limiter_merge(&rl, &du->rate_limiter);
        assert_int_equal(rl.cfg.bandwidth.size, 1);
        assert_int_equal(rl.cfg.ops.size, 7);
        controller_request_clear(&req);

        /* TokenBucketConfig takes unknown fields (no deny_unknown_fields in Firecracker);
         * RateLimiterConfig and the drive do not. */
        expect_parse_ok(VMM_PATCH_DRIVE,
                        "{\"drive_id\": \"r\", \"rate_limiter\": {\"ops\": {\"size\": 1, \"x\": 1, "
                        "\"refill_time\": 3}}}",
                        &req);
        controller_request_clear(&req);
        expect_serde(VMM_PATCH_DRIVE,
                     "{\"drive_id\": \"r\", \"rate_limiter\": {\"ops\": {\"size\": 1}}}",
                     "missing field `refill_time` at line 1 column 53");
        expect_serde(VMM_PATCH_DRIVE, "{\"drive_id\": \"r\", \"rate_limiter\": {\"x\": 1}}",
                     "unknown field `x`, expected `bandwidth` or `ops` at line 1 column 38");
        expect_serde(VMM_PATCH_DRIVE, "{\"drive_id\": \"r\", \"is_read_only\": true}",
                     "unknown field `is_read_only`, expected one of `drive_id`, `path_on_host`, "
                     "`rate_limiter` at line 1 column 32");
}

static void test_net_logger_metrics(void **state)
{
        struct controller_request req;
        struct vmm_net *n = &req.u.net;
        struct vmm_logger_config *l = &req.u.logger;
        struct vmm_metrics_config *m = &req.u.metrics;

        (void)state;
        expect_parse_ok(VMM_PUT_NET,
                        "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": "
                        "\"07:00:AC:10:00:02\", \"mtu\": 9000}",
                        &req);
        assert_true(n->has_mac);
        assert_int_equal(n->guest_mac[0], 0x07); /* a multicast address: Firecracker takes it */
        assert_int_equal(n->guest_mac[2], 0xac);
        assert_int_equal(n->mtu, 9000);
        controller_request_clear(&req);
        expect_serde(VMM_PUT_NET,
                     "{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"nope\"}",
                     "The provided MAC address is invalid. at line 1 column 60");
        expect_serde(VMM_PUT_NET,
                     "{\"iface_id\": \"e\", \"guest_mac\": \"nope\", \"host_dev_name\": \"t\"}",
                     "The provided MAC address is invalid. at line 1 column 37");
        expect_refused(VMM_PUT_NET, "{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"mtu\": 67}",
                       "Network config error: Could not create the network device: MTU 67 is "
                       "out of range [68, 65535]");
        expect_serde(VMM_PUT_NET, "{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"mtu\": 65536}",
                     "invalid value: integer `65536`, expected u16 at line 1 column 52");

        expect_parse_ok(VMM_PUT_LOGGER, "{\"level\": \"tRaCe\", \"show_level\": false}", &req);
        assert_true(l->has_level && l->has_show_level && !l->has_show_log_origin);
        assert_int_equal(l->level, LOG_LEVEL_DEBUG);
        assert_null(l->log_path);
        controller_request_clear(&req);
        expect_parse_ok(VMM_PUT_LOGGER, "{\"level\": \"warn\"}", &req);
        assert_int_equal(l->level, LOG_LEVEL_WARN);
        controller_request_clear(&req);
        expect_serde(VMM_PUT_LOGGER, "{\"level\": \"loud\"}",
                     "Invalid LevelFilter at line 1 column 17");

        expect_parse_ok(
            VMM_PUT_METRICS,
            "{\"metrics_path\": \"/m\", \"emit_id\": true, \"properties\": {\"a\": \"1\", "
            "\"b\": \"2\", \"a\": \"3\"}, \"unknown\": [1]}",
            &req);
        assert_int_equal(m->nr_properties, 2);
        assert_string_equal(m->properties[0].key, "b");
        assert_string_equal(m->properties[1].key, "a");
        assert_string_equal(m->properties[1].value, "3");
        controller_request_clear(&req);
        expect_serde(VMM_PUT_METRICS, "{\"metrics_path\": \"/m\", \"properties\": {\"a\": 1}}",
                     "invalid type: integer `1`, expected a string at line 1 column 44");
        expect_serde(VMM_PUT_METRICS, "{\"metrics_path\": 5}",
                     "invalid type: integer `5`, expected path string at line 1 column 18");
}

static void test_snapshot_load_body(void **state)
{
        struct controller_request req;

        (void)state;
        expect_parse_ok(VMM_SNAPSHOT_LOAD, "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\"}",
                        &req);
        assert_string_equal(req.deprecation, "PUT /snapshot/load: mem_file_path and "
                                             "enable_diff_snapshots fields are deprecated.");
        controller_request_clear(&req);
        expect_parse_ok(VMM_SNAPSHOT_LOAD,
                        "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"File\", "
                        "\"backend_path\": \"m\"}}",
                        &req);
        assert_null(req.deprecation);
        assert_string_equal(req.u.snapshot_load.mem_file_path, "m");
        controller_request_clear(&req);
        expect_serde(VMM_SNAPSHOT_LOAD,
                     "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_type\": \"File\", "
                     "\"backend_path\": \"bar\"}, \"mem_file_path\": \"bar\"}",
                     "too many fields: either `mem_backend` or `mem_file_path` exclusively is "
                     "required");
        expect_serde(VMM_SNAPSHOT_LOAD, "{\"snapshot_path\": \"foo\"}",
                     "missing field: either `mem_backend` or `mem_file_path` is required");
        expect_serde(VMM_SNAPSHOT_LOAD,
                     "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_type\": \"foo\", "
                     "\"backend_path\": \"bar\"}}",
                     "unknown variant `foo`, expected `File` or `Uffd` at line 1 column 62");
        expect_serde(VMM_SNAPSHOT_LOAD,
                     "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_path\": \"bar\"}}",
                     "missing field `backend_type` at line 1 column 63");
        expect_serde(VMM_SNAPSHOT_LOAD,
                     "{\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"bar\"}}",
                     "missing field `snapshot_path` at line 1 column 64");
        expect_refused(
            VMM_SNAPSHOT_LOAD,
            "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"huge_pages\": \"2M\"}",
            "huge_pages `2M` is not supported on a snapshot load from a memory file");
        expect_serde(VMM_SNAPSHOT_LOAD,
                     "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", \"network_overrides\": "
                     "[{\"iface_id\": \"eth0\"}]}",
                     "missing field `host_dev_name` at line 1 column 87");
        expect_parse_ok(VMM_PUT_VSOCK,
                        "{\"guest_cid\": 3, \"uds_path\": \"/v\", \"vsock_id\": \"1\"}", &req);
        assert_string_equal(req.deprecation, "PUT /vsock: vsock_id field is deprecated.");
        controller_request_clear(&req);
}

/* ---- the config file and GET /vm/config ---- */

/* The files the documents below name (a kernel, drives), relative to a scratch directory the
 * tests run in: a configuration command checks that they exist, from the API and from a
 * config file alike. */
static char scratch[] = "/tmp/test_api_json.XXXXXX";
static const char *const scratch_files[] = {"k", "data", "root", "x", "y"};

static int scratch_setup(void **state)
{
        (void)state;
        if (!mkdtemp(scratch) || chdir(scratch))
                return -1;
        for (size_t i = 0; i < sizeof(scratch_files) / sizeof(scratch_files[0]); i++) {
                FILE *f = fopen(scratch_files[i], "w");

                if (!f || fputs("x", f) == EOF || fclose(f))
                        return -1;
        }
        return 0;
}

static int scratch_teardown(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(scratch_files) / sizeof(scratch_files[0]); i++)
                unlink(scratch_files[i]);
        return chdir("/") || rmdir(scratch) ? -1 : 0;
}

static const char full_doc[] =
    "{\"boot-source\": {\"kernel_image_path\": \"k\", \"boot_args\": \"console=ttyS0\"},"
    " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"track_dirty_pages\": true},"
    " \"drives\": [{\"drive_id\": \"data\", \"path_on_host\": \"data\", \"is_root_device\": "
    "false},"
    "              {\"drive_id\": \"root\", \"path_on_host\": \"root\", \"is_root_device\": true,"
    "               \"is_read_only\": true}],"
    " \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\","
    "   \"tx_rate_limiter\": {\"bandwidth\": {\"size\": 100, \"refill_time\": 10}}}],"
    " \"vsock\": {\"guest_cid\": 5, \"uds_path\": \"/v.sock\"},"
    " \"balloon\": {\"amount_mib\": 10, \"deflate_on_oom\": true, \"free_page_reporting\": true,"
    "  \"free_page_hinting\": true},"
    " \"entropy\": {},"
    " \"logger\": {\"level\": \"Warning\", \"show_log_origin\": false},"
    " \"metrics\": {\"metrics_path\": \"/m.json\"},"
    " \"mmds-config\": null, \"serial\": {\"serial_out_path\": \"/s.log\"}}";

static char *export_json(const struct vmm_config *cfg)
{
        cJSON *j = api_json_vm_config(cfg);
        char *s = cJSON_PrintUnformatted(j);

        cJSON_Delete(j);
        return s;
}

static void test_config_file_round_trip(void **state)
{
        struct vmm_config cfg, again;
        struct error err = {0};
        char *first, *second;

        (void)state;
        if (api_config_parse(full_doc, strlen(full_doc), &cfg, &err))
                fail_msg("%s", err.msg);
        assert_int_equal(cfg.machine.vcpu_count, 2);
        assert_true(cfg.machine.track_dirty_pages);
        assert_int_equal(cfg.nr_drives, 2);
        /* The root drive goes first (it becomes /dev/vda), as Firecracker orders them. */
        assert_string_equal(cfg.drives[0].drive_id, "root");
        assert_int_equal(cfg.nr_nets, 1);
        assert_true(cfg.vsock.present && cfg.balloon.present && cfg.entropy.present);
        assert_true(cfg.balloon.free_page_reporting && cfg.balloon.free_page_hinting);
        assert_true(cfg.logger.present && cfg.logger.has_level);
        assert_int_equal(cfg.logger.level, LOG_LEVEL_WARN);
        assert_string_equal(cfg.metrics.metrics_path, "/m.json");
        assert_string_equal(cfg.serial_out_path, "/s.log");

        first = export_json(&cfg);
        if (api_config_parse(first, strlen(first), &again, &err))
                fail_msg("%s: %s", first, err.msg);
        second = export_json(&again);
        assert_string_equal(first, second);
        assert_non_null(strstr(first, "\"mmds-config\":null"));
        assert_non_null(strstr(first, "\"free_page_hinting\":true,\"free_page_reporting\":true"));
        assert_non_null(strstr(first, "\"boot-source\":{\"kernel_image_path\":\"k\""));
        free(first);
        free(second);
        vmm_config_free(&cfg);
        vmm_config_free(&again);

        /* An empty configuration exports nulls and empty arrays, and comes back. */
        vmm_config_init(&cfg);
        first = export_json(&cfg);
        assert_string_equal(
            first, "{\"balloon\":null,\"drives\":[],\"boot-source\":{\"kernel_image_path\":"
                   "\"\",\"initrd_path\":null,\"boot_args\":null},\"cpu-config\":null,"
                   "\"logger\":null,\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":"
                   "128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"},"
                   "\"metrics\":null,\"mmds-config\":null,\"network-interfaces\":[],"
                   "\"vsock\":null,\"entropy\":null,\"pmem\":[],\"memory-hotplug\":null}");
        assert_int_equal(api_config_parse(first, strlen(first), &again, &err), 0);
        free(first);
        vmm_config_free(&again);
        vmm_config_free(&cfg);
}

static void expect_config_error(const char *doc, const char *needle)
{
        struct vmm_config cfg;
        struct error err = {0};
        int r = api_config_parse(doc, strlen(doc), &cfg, &err);

        vmm_config_free(&cfg);
        if (r == 0)
                fail_msg("'%s' accepted", doc);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': '%s' lacks '%s'", doc, err.msg, needle);
}

static void test_config_file_errors(void **state)
{
        (void)state;
        expect_config_error("", "EOF while parsing a value at line 1 column 0");
        expect_config_error("{} {}", "trailing characters");
        expect_config_error("{\"drive\": []}", "unknown field `drive`");
        expect_config_error("{\"drives\": {}}", "invalid type: map, expected a sequence at line 1 "
                                                "column 11");
        expect_config_error("{\"drives\": [{\"drive_id\": \"a b\", \"path_on_host\": \"x\", "
                            "\"is_root_device\": false}]}",
                            "drives[0]: Drive config error: drive id 'a b' is invalid");
        expect_config_error("{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"x\", "
                            "\"is_root_device\": true}, {\"drive_id\": \"b\", \"path_on_host\": "
                            "\"y\", \"is_root_device\": true}]}",
                            "drives[1]: Drive config error: A root block device already exists!");
        expect_config_error("{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64}, "
                            "\"balloon\": {\"amount_mib\": 65, \"deflate_on_oom\": false}}",
                            "balloon: Balloon config error: Amount of pages requested is too "
                            "large.");
        expect_config_error("{\"vsock\": {\"guest_cid\": 1, \"uds_path\": \"/v\"}}",
                            "vsock: vsock guest CID 1 is invalid");
        expect_config_error("{\"cpu-config\": {\"reg_modifiers\": []}}",
                            "cpu-config: unknown field `reg_modifiers`, expected one of "
                            "`kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers`");
        expect_config_error("{\"cpu-config\": \"/nonexistent/t.json\"}",
                            "cpu-config: CPU template file '/nonexistent/t.json'");
        expect_config_error("{\"cpu-config\": 3}",
                            "cpu-config: invalid type: a number, expected a path string");
        expect_config_error("{\"pmem\": [{}]}", "pmem[0]: missing field `id`");
        expect_config_error("{\"pmem\": {}}", "invalid type: map, expected a sequence");
        expect_config_error("{\"memory-hotplug\": {\"total_size_mib\": 100}}",
                            "total_size_mib 100 is not a multiple");
        expect_config_error("{\"logger\": {\"level\": 3}}",
                            "invalid type: integer `3`, expected a string at line 1 column 22");
}

/* ---- the router ---- */

static void expect_route_error(const char *method, const char *url, const char *body,
                               const char *needle)
{
        struct controller_request req;
        struct api_response resp;
        int action;
        enum api_route_result r =
            api_route(method, url, body, body ? strlen(body) : 0, &req, &action, &resp);

        controller_request_clear(&req);
        if (r != API_ROUTE_RESPOND)
                fail_msg("%s %s routed", method, url);
        assert_int_equal(resp.status, 400);
        assert_non_null(resp.body);
        if (!strstr(resp.body, needle))
                fail_msg("%s %s: '%s' lacks '%s'", method, url, resp.body, needle);
        assert_true(strncmp(resp.body, "{\"fault_message\":\"", 18) == 0);
        api_response_free(&resp);
}

/* PUT /snapshot/load's memory backends: a file (either spelling) or a page-fault handler's
 * socket, and the huge pages each allows. */
static void test_snapshot_load_backends(void **state)
{
        static const struct {
                const char *json;
                const char *path;
                bool uffd, huge_2m, huge_none;
        } ok[] = {
            {"{\"snapshot_path\": \"s\", \"mem_file_path\": \"/m\"}", "/m", false, false, false},
            {"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"File\", "
             "\"backend_path\": \"/m\"}, \"huge_pages\": \"None\"}",
             "/m", false, false, true},
            {"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_path\": \"/u.sock\", "
             "\"backend_type\": \"Uffd\"}}",
             "/u.sock", true, false, false},
            {"{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": \"Uffd\", "
             "\"backend_path\": \"/u.sock\"}, \"huge_pages\": \"2M\"}",
             "/u.sock", true, true, false},
        };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
                struct controller_request req;
                const struct vmm_snapshot_load *l = &req.u.snapshot_load;

                expect_parse_ok(VMM_SNAPSHOT_LOAD, ok[i].json, &req);
                assert_string_equal(l->mem_file_path, ok[i].path);
                assert_int_equal(l->mem_uffd, ok[i].uffd);
                assert_int_equal(l->huge_pages_2m, ok[i].huge_2m);
                assert_int_equal(l->huge_pages_none, ok[i].huge_none);
                controller_request_clear(&req);
        }
}

static void test_router(void **state)
{
        static const char drive[] = "{\"drive_id\": \"root_1\", \"path_on_host\": \"/x\", "
                                    "\"is_root_device\": true}";
        static const char vm[] = "{\"state\": \"Resumed\"}";
        struct controller_request req;
        struct api_response resp;
        int action;

        (void)state;
        assert_int_equal(api_route("GET", "/", "", 0, &req, &action, &resp), API_ROUTE_SUBMIT);
        assert_int_equal(req.action, VMM_GET_INSTANCE_INFO);
        controller_request_clear(&req);
        assert_int_equal(
            api_route("PUT", "/drives/root_1/", drive, strlen(drive), &req, &action, &resp),
            API_ROUTE_SUBMIT);
        assert_int_equal(action, VMM_PUT_DRIVE);
        assert_int_equal(req.action, VMM_PUT_DRIVE);
        assert_string_equal(req.u.drive.path_on_host, "/x");
        controller_request_clear(&req);
        assert_int_equal(api_route("PATCH", "/vm", vm, strlen(vm), &req, &action, &resp),
                         API_ROUTE_SUBMIT);
        assert_int_equal(req.action, VMM_RESUME);
        controller_request_clear(&req);

        expect_route_error("DELETE", "/", NULL, "Invalid request method and/or path: DELETE .");
        expect_route_error("GET", "/drives/a", NULL, "Invalid request method and/or path");
        expect_route_error("PUT", "/a/b/c/d/e", "{}", "Invalid request method and/or path");
        /* Snapshots: Firecracker's SnapshotCreateParams / SnapshotLoadParams shapes. */
        expect_route_error("PUT", "/snapshot/create", "{}", "missing field `snapshot_path`");
        expect_route_error("PUT", "/snapshot/create",
                           "{\"mem_file_path\": \"m\", \"snapshot_path\": \"s\", "
                           "\"snapshot_type\": \"Incremental\"}",
                           "unknown variant `Incremental`");
        expect_route_error("PUT", "/snapshot/load", "{\"snapshot_path\": \"s\"}",
                           "either `mem_backend` or `mem_file_path` is required");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": "
                           "\"m\"}}",
                           "either `mem_backend` or `mem_file_path` exclusively");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
                           "\"Pmem\", \"backend_path\": \"/u.sock\"}}",
                           "unknown variant `Pmem`, expected `File` or `Uffd`");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
                           "\"Uffd\", \"backend_path\": \"/u.sock\"}, \"huge_pages\": "
                           "\"Transparent\"}",
                           "`Transparent` is not supported on a snapshot load");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"network_overrides\": [{\"iface_id\": \"eth0\"}]}",
                           "missing field `host_dev_name` at line 1 column 87");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": [{\"drive_id\": \"root\"}]}",
                           "missing field `path_on_host` at line 1 column 85");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": [{\"drive_id\": \"a\", \"path_on_host\": "
                           "\"/x\", \"is_read_only\": true}]}",
                           "unknown field `is_read_only`, expected `drive_id` or `path_on_host` "
                           "at line 1 column 119");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": {}}",
                           "invalid type: map, expected a sequence at line 1 column 64");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"vsock_override\": {\"path\": \"x\"}}",
                           "missing field `uds_path` at line 1 column 76");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"huge_pages\": \"2M\"}",
                           "`2M` is not supported on a snapshot load");
        expect_route_error("GET", "/version", "{}", "GET request cannot have a body.");
        expect_route_error("PUT", "/boot-source", NULL, "Empty PUT request.");
        expect_route_error("PATCH", "/machine-config", NULL, "Empty PATCH request.");
        expect_route_error("PUT", "/drives/a.b", "{}", "API Resource IDs can only contain");
        expect_route_error("PUT", "/drives", "{}", "The ID cannot be empty.");
        expect_route_error("PUT", "/network-interfaces/a",
                           "{\"iface_id\": \"b\", \"host_dev_name\": \"t\"}",
                           "The id from the path [a] does not match the id from the body [b]!");
        expect_route_error("PUT", "/actions", "{\"action_type\": \"Start\"}",
                           "An error occurred when deserializing the json body of a request: "
                           "unknown variant `Start`, expected one of `FlushMetrics`, "
                           "`InstanceStart`, `SendCtrlAltDel` at line 1 column 23.\"}");

        /* Free page hinting: start's body is optional (acknowledge_on_stop defaults to
         * true), stop's is never read (Firecracker's documentation sends "{}"). */
        static const struct {
                const char *method, *url, *body;
                enum vmm_action action;
                bool ack;
        } hinting[] = {
            {"PATCH", "/balloon/hinting/start", NULL, VMM_START_BALLOON_HINTING, true},
            {"PATCH", "/balloon/hinting/start", "{}", VMM_START_BALLOON_HINTING, true},
            {"PATCH", "/balloon/hinting/start", "{\"acknowledge_on_stop\": false}",
             VMM_START_BALLOON_HINTING, false},
            /* StartHintingCmd has no deny_unknown_fields: an unknown field is ignored. */
            {"PATCH", "/balloon/hinting/start", "{\"ack\": false}", VMM_START_BALLOON_HINTING,
             true},
            {"PATCH", "/balloon/hinting/stop", NULL, VMM_STOP_BALLOON_HINTING, false},
            {"PATCH", "/balloon/hinting/stop", "{}", VMM_STOP_BALLOON_HINTING, false},
            {"PATCH", "/balloon/hinting/stop", "not json", VMM_STOP_BALLOON_HINTING, false},
            {"GET", "/balloon/hinting/status", NULL, VMM_GET_BALLOON_HINTING, false},
        };
        for (size_t i = 0; i < ARRAY_SIZE(hinting); i++) {
                const char *b = hinting[i].body;

                assert_int_equal(api_route(hinting[i].method, hinting[i].url, b ? b : "",
                                           b ? strlen(b) : 0, &req, &action, &resp),
                                 API_ROUTE_SUBMIT);
                assert_int_equal(req.action, hinting[i].action);
                if (hinting[i].action == VMM_START_BALLOON_HINTING)
                        assert_int_equal(req.u.balloon_ack_on_stop, hinting[i].ack);
                controller_request_clear(&req);
        }
        expect_route_error("PATCH", "/balloon/hinting/start", "{\"acknowledge_on_stop\": 1}",
                           "An error occurred when deserializing the json body of a request: "
                           "invalid type: integer `1`, expected a boolean at line 1 column 25.");
        expect_route_error("GET", "/balloon/hinting/status", "{}",
                           "GET request cannot have a body.");
        expect_route_error("PUT", "/balloon/hinting/start", "{}", "Invalid request method");
        expect_route_error("GET", "/balloon/hinting", NULL,
                           "Unrecognized GET request path `/hinting/`.");

        /* The target as sent: the path is percent-decoded here, a query ignored, and an
         * escaped NUL refused (it would end the id: "a%00xyz" read as "a"). */
        assert_int_equal(api_route("GET", "/vers%69on?x=%00", "", 0, &req, &action, &resp),
                         API_ROUTE_SUBMIT);
        assert_int_equal(req.action, VMM_GET_VERSION);
        controller_request_clear(&req);
        expect_route_error("GET", "/version%00", NULL,
                           "Invalid request method and/or path: GET version%00.");
        expect_route_error("PUT", "/drives/a%00xyz?q", drive,
                           "Invalid request method and/or path: PUT drives.");
        expect_route_error("GET", "/version%zz", NULL, "path: GET version%zz.");

        /* Replies. */
        controller_request_init(&req, VMM_GET_VERSION);
        api_reply(&req, &resp);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body, "{\"firecracker_version\":\"" VMM_VERSION "\"}");
        api_response_free(&resp);
        req.action = VMM_PUT_LOGGER;
        api_reply(&req, &resp);
        assert_int_equal(resp.status, 204);
        assert_null(resp.body);
        /* Firecracker's HintingStatus: guest_cmd is an Option serialised as null until the
         * guest sent one. */
        req.action = VMM_GET_BALLOON_HINTING;
        req.reply.balloon_hinting = (struct virtio_balloon_hinting){.host_cmd = 2};
        api_reply(&req, &resp);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body, "{\"host_cmd\":2,\"guest_cmd\":null}");
        api_response_free(&resp);
        req.reply.balloon_hinting =
            (struct virtio_balloon_hinting){.host_cmd = 1, .has_guest_cmd = true, .guest_cmd = 0};
        api_reply(&req, &resp);
        assert_string_equal(resp.body, "{\"host_cmd\":1,\"guest_cmd\":0}");
        api_response_free(&resp);
        req.action = VMM_PUT_LOGGER;
        req.reply.status = error_set(&req.reply.err, -EINVAL, "a \"quoted\" message");
        api_reply(&req, &resp);
        assert_int_equal(resp.status, 400);
        assert_string_equal(resp.body, "{\"fault_message\":\"a \\\"quoted\\\" message\"}");
        api_response_free(&resp);
}

/* ---- the controller before the start (no KVM needed) ---- */

static struct event_loop *loop;

static void run(struct controller *c, struct controller_request *req, int expect,
                const char *needle)
{
        controller_execute(c, req);
        if (req->reply.status != expect)
                fail_msg("action %d: status %d (%s), expected %d", req->action, req->reply.status,
                         req->reply.err.msg, expect);
        if (needle && !strstr(req->reply.err.msg, needle))
                fail_msg("'%s' lacks '%s'", req->reply.err.msg, needle);
}

static void test_controller_pre_boot(void **state)
{
        struct controller_params p = {.console_in_fd = -1, .console_out_fd = -1};
        struct controller_request req;
        struct vmm_config cfg;
        struct controller *c;
        struct error err = {0};

        (void)state;
        assert_int_equal(event_loop_create(&loop), 0);
        p.loop = loop;
        vmm_config_init(&cfg);
        assert_int_equal(controller_create(&p, &cfg, &err, &c), 0);

        controller_request_init(&req, VMM_GET_INSTANCE_INFO);
        run(c, &req, 0, NULL);
        assert_string_equal(req.reply.id, "anonymous-instance");
        assert_int_equal(req.reply.state, CONTROLLER_NOT_STARTED);
        controller_request_clear(&req);

        controller_request_init(&req, VMM_PATCH_MACHINE_CONFIG);
        req.u.machine.update =
            (struct vmm_machine_update){.has_mem_size_mib = true, .mem_size_mib = 512};
        run(c, &req, 0, NULL);
        controller_request_clear(&req);

        /* A drive whose file does not exist is refused at once. */
        controller_request_init(&req, VMM_PUT_DRIVE);
        req.u.drive.drive_id = strdup("d0");
        req.u.drive.path_on_host = strdup("/nonexistent/disk");
        run(c, &req, -EINVAL,
            "Drive config error: Unable to create the virtio block device: Virtio backend error: "
            "Error manipulating the backing file: No such file or directory (os error 2) "
            "/nonexistent/disk");
        controller_request_clear(&req);

        /* The balloon is validated against the whole configuration. */
        controller_request_init(&req, VMM_PUT_BALLOON);
        req.u.balloon.amount_mib = 600;
        run(c, &req, -EINVAL, "Balloon config error: Amount of pages requested is too large.");
        req.u.balloon.amount_mib = 500;
        run(c, &req, 0, NULL);
        controller_request_clear(&req);
        controller_request_init(&req, VMM_PATCH_MACHINE_CONFIG);
        req.u.machine.update =
            (struct vmm_machine_update){.has_mem_size_mib = true, .mem_size_mib = 256};
        run(c, &req, -EINVAL,
            "Machine config error: The memory size (MiB) is smaller than the previously set "
            "balloon device target size.");
        controller_request_clear(&req);

        controller_request_init(&req, VMM_GET_VM_CONFIG);
        run(c, &req, 0, NULL);
        assert_int_equal(req.reply.config->machine.mem_size_mib, 512);
        assert_true(req.reply.config->balloon.present);
        controller_request_clear(&req);

        /* Runtime commands before the start. */
        static const enum vmm_action runtime[] = {
            VMM_PAUSE,
            VMM_RESUME,
            VMM_FLUSH_METRICS,
            VMM_SEND_CTRL_ALT_DEL,
            VMM_PATCH_DRIVE,
            VMM_PATCH_NET,
            VMM_PATCH_BALLOON,
            VMM_PATCH_BALLOON_STATS,
            VMM_GET_BALLOON_STATS,
            VMM_PATCH_PMEM,
            VMM_PATCH_MEMORY_HOTPLUG,
            VMM_START_BALLOON_HINTING,
            VMM_GET_BALLOON_HINTING,
            VMM_STOP_BALLOON_HINTING,
        };
        for (size_t i = 0; i < sizeof(runtime) / sizeof(runtime[0]); i++) {
                controller_request_init(&req, runtime[i]);
                run(c, &req, -EPERM,
                    "The requested operation is not supported before starting the microVM.");
                controller_request_clear(&req);
        }
        controller_request_init(&req, VMM_INSTANCE_START);
        run(c, &req, -EINVAL,
            "Start microvm error: Cannot start microvm without kernel "
            "configuration.");
        controller_request_clear(&req);

        /* The queue: closed, it refuses. */
        controller_close(c);
        controller_request_init(&req, VMM_GET_VERSION);
        assert_int_equal(controller_submit(c, &req), -ESHUTDOWN);
        controller_destroy(c);
        event_loop_destroy(loop);
}

/*
 * One configuration path: a config file section is refused exactly as the API command with
 * the same body is, at load time (before anything boots), with the API's message after the
 * section's name. Files are checked (a missing kernel or drive used to pass the config file
 * and fail only when the VM was built, with another message), and so is the whole
 * configuration against this host.
 */
static void expect_same_refusal(const char *doc, const char *section, const char *url,
                                const char *first_body, const char *body)
{
        struct controller_params p = {.console_in_fd = -1, .console_out_fd = -1};
        struct controller_request req;
        struct api_response resp;
        struct vmm_config cfg;
        struct controller *c;
        struct error file_err = {0}, err = {0};
        char expect[sizeof(err.msg) + 64];
        int action;

        assert_int_not_equal(api_config_parse(doc, strlen(doc), &cfg, &file_err), 0);
        vmm_config_free(&cfg);

        assert_int_equal(event_loop_create(&loop), 0);
        p.loop = loop;
        vmm_config_init(&cfg);
        assert_int_equal(controller_create(&p, &cfg, &err, &c), 0);
        if (first_body) { /* what the document configured before the refused section */
                assert_int_equal(api_route("PUT", "/machine-config", first_body, strlen(first_body),
                                           &req, &action, &resp),
                                 API_ROUTE_SUBMIT);
                run(c, &req, 0, NULL);
                controller_request_clear(&req);
        }
        assert_int_equal(api_route("PUT", url, body, strlen(body), &req, &action, &resp),
                         API_ROUTE_SUBMIT);
        controller_execute(c, &req);
        assert_int_not_equal(req.reply.status, 0);
        assert_int_equal(req.reply.err.kind, ERROR_CONFIG);
        assert_int_equal(file_err.kind, ERROR_CONFIG);
        snprintf(expect, sizeof(expect), "%s: %s", section, req.reply.err.msg);
        assert_string_equal(file_err.msg, expect);
        controller_request_clear(&req);
        controller_close(c);
        controller_destroy(c);
        event_loop_destroy(loop);
}

static void test_config_file_and_api_agree(void **state)
{
        static const char kernel[] = "{\"kernel_image_path\": \"/nonexistent/vmlinux\"}";
        static const char initrd[] = "{\"kernel_image_path\": \"k\", \"initrd_path\": "
                                     "\"/nonexistent/initrd\"}";
        static const char drive[] = "{\"drive_id\": \"d0\", \"path_on_host\": "
                                    "\"/nonexistent/disk\", \"is_root_device\": false}";
        static const char machine[] = "{\"vcpu_count\": 1, \"mem_size_mib\": 64}";
        static const char balloon[] = "{\"amount_mib\": 65, \"deflate_on_oom\": false}";
        char doc[512];

        (void)state;
        snprintf(doc, sizeof(doc), "{\"boot-source\": %s}", kernel);
        expect_same_refusal(doc, "boot-source", "/boot-source", NULL, kernel);
        snprintf(doc, sizeof(doc), "{\"boot-source\": %s}", initrd);
        expect_same_refusal(doc, "boot-source", "/boot-source", NULL, initrd);
        snprintf(doc, sizeof(doc), "{\"drives\": [%s]}", drive);
        expect_same_refusal(doc, "drives[0]", "/drives/d0", NULL, drive);
        snprintf(doc, sizeof(doc), "{\"machine-config\": %s, \"balloon\": %s}", machine, balloon);
        expect_same_refusal(doc, "balloon", "/balloon", machine, balloon);
}

/* ---- metrics ---- */

static uint64_t counter_value, store_value;

static void collect(void *opaque, struct metrics_writer *w)
{
        (void)opaque;
        metrics_group(w, "g");
        metrics_counter(w, "c", counter_value);
        metrics_store(w, "s", store_value);
        metrics_put_devices(w, NULL, 0);
}

static void test_metrics_lines(void **state)
{
        char path[] = "/tmp/test_api_json_metrics_XXXXXX";
        struct vmm_metrics_config mc = {.present = true, .emit_id = true};
        struct metrics *m;
        struct error err = {0};
        char buf[8192];
        ssize_t n;
        int fd = mkstemp(path);

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(event_loop_create(&loop), 0);
        assert_int_equal(metrics_create(loop, collect, NULL, &m), 0);
        assert_int_equal(metrics_flush(m, &err), 0); /* not configured: nothing */
        mc.metrics_path = path;
        assert_int_equal(metrics_configure(m, &mc, "vm1", &err), 0);
        assert_int_equal(metrics_configure(m, &mc, "vm1", &err), -EALREADY);
        assert_string_equal(err.msg, "Reinitialization of metrics not allowed.");
        counter_value = 5;
        store_value = 7;
        assert_int_equal(metrics_flush(m, &err), 0);
        counter_value = 8;
        assert_int_equal(metrics_flush(m, &err), 0);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        assert_true(n > 0);
        buf[n] = '\0';
        /* Two lines: the counter as increments (5, then 3), the store as is (7, 7). */
        assert_non_null(strstr(buf, "\"id\":\"vm1\",\"g\":{\"c\":5,\"s\":7},\"block\":{"));
        assert_non_null(strstr(strchr(buf, '\n'), "\"g\":{\"c\":3,\"s\":7}"));
        assert_non_null(strstr(buf, "\"entropy\":{\"cfg_fails\":0"));
        assert_int_equal(strchr(strchr(buf, '\n') + 1, '\n') - buf + 1, n);
        metrics_destroy(m);
        event_loop_destroy(loop);
        close(fd);
        unlink(path);
}

/* ---- the command line's control-plane options ---- */

static void test_cli_options(void **state)
{
        char *argv[] = {"vmm",        "--api-sock",     "/tmp/a.sock",
                        "--log-path", "/tmp/l",         "--show-level",
                        "--level",    "Debug",          "--metrics-path",
                        "/tmp/m",     "--no-serial-in", "--http-api-max-payload-size",
                        "1000",       "--boot-timer",   NULL};
        static const char doc[] = "{\"logger\": {\"level\": \"Error\", \"show_log_origin\": "
                                  "false}, \"metrics\": {\"metrics_path\": \"/f\"}}";
        struct vmm_config file;
        struct cli_opts o;
        struct error err = {0};

        (void)state;
        assert_int_equal(cli_parse(14, argv, &o, &err), 0);
        assert_string_equal(o.api_sock, "/tmp/a.sock");
        assert_int_equal(o.max_payload, 1000);
        assert_null(o.machine_option);
        assert_true(o.cfg.logger.present && o.cfg.logger.has_level && o.cfg.logger.has_show_level);
        assert_false(o.cfg.logger.has_show_log_origin);
        assert_string_equal(o.cfg.metrics.metrics_path, "/tmp/m");
        /* Over a config file's settings. */
        assert_int_equal(api_config_parse(doc, strlen(doc), &file, &err), 0);
        assert_int_equal(cli_apply_process_options(&o, &file), 0);
        assert_int_equal(file.logger.level, LOG_LEVEL_DEBUG);
        assert_true(file.logger.has_show_log_origin && !file.logger.show_log_origin);
        assert_string_equal(file.logger.log_path, "/tmp/l");
        assert_string_equal(file.metrics.metrics_path, "/tmp/m");
        assert_false(file.serial_in);
        assert_true(file.boot_timer);
        vmm_config_free(&file);
        cli_opts_free(&o);

        char *argv2[] = {"vmm", "--config-file", "f.json", "--mem", "64", NULL};
        assert_int_equal(cli_parse(5, argv2, &o, &err), 0);
        assert_string_equal(o.config_file, "f.json");
        assert_string_equal(o.machine_option, "mem");
        cli_opts_free(&o);
        char *argv3[] = {"vmm", "--http-api-max-payload-size", "0", NULL};
        assert_int_equal(cli_parse(3, argv3, &o, &err), -EINVAL);
        cli_opts_free(&o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_escaped_nul),
            cmocka_unit_test(test_machine),
            cmocka_unit_test(test_cpu_config),
            cmocka_unit_test(test_serde_syntax),
            cmocka_unit_test(test_drive_and_rate_limiter),
            cmocka_unit_test(test_net_logger_metrics),
            cmocka_unit_test(test_snapshot_load_body),
            cmocka_unit_test(test_config_file_round_trip),
            cmocka_unit_test(test_config_file_errors),
            cmocka_unit_test(test_snapshot_load_backends),
            cmocka_unit_test(test_router),
            cmocka_unit_test(test_controller_pre_boot),
            cmocka_unit_test(test_config_file_and_api_agree),
            cmocka_unit_test(test_metrics_lines),
            cmocka_unit_test(test_cli_options),
        };
        return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
