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

static cJSON *parse(const char *text)
{
        struct error err = {0};
        cJSON *j = api_json_parse(text, strlen(text), &err);

        if (!j)
                fail_msg("'%s': %s", text, err.msg);
        return j;
}

/* An escaped NUL would cut a string short: refused anywhere (values and keys); an escaped
 * backslash followed by "u0000" is text. */
static void test_escaped_nul(void **state)
{
        static const char *const bad[] = {
            "{\"drive_id\": \"a\\u0000xyz\"}",
            "{\"a\\u0000\": 1}",
            "[\"x\", \"\\\\\\u0000\"]",
        };
        struct error err = {0};
        cJSON *j;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                error_clear(&err);
                assert_null(api_json_parse(bad[i], strlen(bad[i]), &err));
                assert_int_equal(err.kind, ERROR_CONFIG);
                assert_non_null(strstr(err.msg, "an escaped NUL"));
        }
        j = parse("{\"p\": \"C:\\\\u0000\"}");
        assert_string_equal(cJSON_GetObjectItem(j, "p")->valuestring, "C:\\u0000");
        cJSON_Delete(j);
}

/* ---- bodies ---- */

static void expect_machine_error(const char *text, bool put, const char *needle)
{
        struct vmm_machine_update u;
        struct error err = {0};
        char *hide = NULL;
        cJSON *j = parse(text);
        int r = api_parse_machine(j, put, &u, &hide, &err);

        cJSON_Delete(j);
        free(hide);
        if (r == 0)
                fail_msg("'%s' accepted", text);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': '%s' lacks '%s'", text, err.msg, needle);
}

static void test_machine(void **state)
{
        struct vmm_machine_update u;
        struct error err = {0};
        char *hide = NULL;
        cJSON *j;

        (void)state;
        j = parse("{\"vcpu_count\": 2, \"mem_size_mib\": 4096, \"smt\": false, "
                  "\"huge_pages\": \"2M\", \"cpu_hide\": \"cx16\"}");
        assert_int_equal(api_parse_machine(j, true, &u, &hide, &err), 0);
        cJSON_Delete(j);
        assert_true(u.has_vcpu_count && u.has_mem_size_mib && u.has_huge_pages);
        assert_int_equal(u.vcpu_count, 2);
        assert_int_equal(u.mem_size_mib, 4096);
        assert_true(u.huge_pages);
        /* PUT: every optional field is set (to its default when absent). */
        assert_true(u.has_smt && u.has_track_dirty_pages && u.has_cpu_hide);
        assert_false(u.track_dirty_pages);
        assert_string_equal(hide, "cx16");
        free(hide);
        hide = NULL;

        /* PATCH: only what is given. */
        j = parse("{\"mem_size_mib\": 64}");
        assert_int_equal(api_parse_machine(j, false, &u, &hide, &err), 0);
        cJSON_Delete(j);
        assert_false(u.has_vcpu_count);
        assert_true(u.has_mem_size_mib);
        assert_false(u.has_smt || u.has_huge_pages || u.has_cpu_hide);
        assert_null(hide);

        expect_machine_error("{\"vcpu_count\": 1}", true, "missing field `mem_size_mib`");
        expect_machine_error("{\"mem_size_mib\": 1}", true, "missing field `vcpu_count`");
        expect_machine_error("{\"vcpu_count\": 1, \"mem_size_mib\": 1, \"x\": 1}", true,
                             "unknown field `x`, expected one of `vcpu_count`");
        expect_machine_error("{\"vcpu_count\": \"1\"}", false,
                             "field `vcpu_count`: invalid type: a string, expected an unsigned "
                             "integer");
        expect_machine_error("{\"vcpu_count\": 0}", false, "field `vcpu_count`: invalid value: 0");
        expect_machine_error("{\"vcpu_count\": 4294967296}", false, "from 1 to 4294967295");
        expect_machine_error("{\"mem_size_mib\": 2.5}", false, "invalid value: 2.5");
        expect_machine_error("{\"mem_size_mib\": -3}", false, "invalid value: -3");
        expect_machine_error("{\"mem_size_mib\": 1e20}", false, "invalid value");
        expect_machine_error("{\"smt\": null, \"smt\": true}", false, "duplicate field `smt`");
        expect_machine_error("{\"huge_pages\": \"4K\"}", false,
                             "unknown variant `4K`, expected one of `None`, `2M`");
        expect_machine_error("{\"huge_pages\": \"Transparent\"}", false, "not implemented yet");
        expect_machine_error("{\"cpu_template\": \"V1N1\"}", false,
                             "Invalid static CPU template: V1N1");
        expect_machine_error("{\"cpu_template\": \"T3\"}", false, "unknown variant `T3`");
        expect_machine_error("[1]", false, "expected an object");
        /* null is an absent optional field (serde's Option). */
        j = parse("{\"smt\": null}");
        assert_int_equal(api_parse_machine(j, false, &u, &hide, &err), 0);
        assert_false(u.has_smt);
        cJSON_Delete(j);
}

static void test_drive_and_rate_limiter(void **state)
{
        struct vmm_drive d;
        struct vmm_drive_update du;
        struct error err = {0};
        cJSON *j;

        (void)state;
        j = parse("{\"drive_id\": \"root\", \"path_on_host\": \"/d\", \"is_root_device\": true,"
                  " \"rate_limiter\": {\"ops\": {\"size\": 10, \"one_time_burst\": 5, "
                  "\"refill_time\": 100}}, \"io_engine\": \"Async\", \"cache_type\": "
                  "\"Writeback\", \"partuuid\": \"abc\"}");
        assert_int_equal(api_parse_drive(j, &d, &err), 0);
        cJSON_Delete(j);
        assert_string_equal(d.drive_id, "root");
        assert_string_equal(d.path_on_host, "/d");
        assert_string_equal(d.partuuid, "abc");
        assert_true(d.is_root_device);
        assert_false(d.is_read_only);
        assert_int_equal(d.io_engine, VMM_IO_ASYNC);
        assert_int_equal(d.cache_type, VMM_CACHE_WRITEBACK);
        assert_true(d.rate_limiter.present);
        assert_int_equal(d.rate_limiter.cfg.ops.size, 10);
        assert_int_equal(d.rate_limiter.cfg.ops.one_time_burst, 5);
        assert_int_equal(d.rate_limiter.cfg.ops.refill_time_ms, 100);
        assert_int_equal(d.rate_limiter.cfg.bandwidth.size, 0);
        vmm_drive_free(&d);

        j = parse("{\"drive_id\": \"root\", \"is_root_device\": true}");
        assert_int_equal(api_parse_drive(j, &d, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "missing field `path_on_host`"));
        cJSON_Delete(j);

        /* PATCH: buckets given are flagged, the others stay untouched. */
        j = parse("{\"drive_id\": \"root\", \"rate_limiter\": {\"bandwidth\": {\"size\": 1, "
                  "\"refill_time\": 2}}}");
        assert_int_equal(api_parse_drive_update(j, &du, &err), 0);
        cJSON_Delete(j);
        assert_null(du.path_on_host);
        assert_true(du.has_rate_limiter && du.rate_limiter.has_bandwidth);
        assert_false(du.rate_limiter.has_ops);
        struct vmm_rate_limiter rl = {.present = true, .cfg.ops = {.size = 7, .refill_time_ms = 8}};
        vmm_rate_limiter_merge(&rl, &du.rate_limiter);
        assert_int_equal(rl.cfg.bandwidth.size, 1);
        assert_int_equal(rl.cfg.ops.size, 7);
        free(du.drive_id);

        error_clear(&err);
        j = parse("{\"drive_id\": \"r\", \"rate_limiter\": {\"ops\": {\"size\": 1, \"x\": 1}}}");
        assert_int_equal(api_parse_drive_update(j, &du, &err), -EINVAL);
        assert_string_equal(err.msg, "rate_limiter: ops: unknown field `x`, expected one of "
                                     "`size`, `one_time_burst`, `refill_time`");
        cJSON_Delete(j);
}

static void test_net_logger_metrics(void **state)
{
        struct vmm_net n;
        struct vmm_logger_config l;
        struct vmm_metrics_config m;
        struct error err = {0};
        cJSON *j;

        (void)state;
        j = parse("{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": "
                  "\"06:00:AC:10:00:02\", \"mtu\": 9000}");
        assert_int_equal(api_parse_net(j, &n, &err), 0);
        cJSON_Delete(j);
        assert_true(n.has_mac);
        assert_int_equal(n.guest_mac[2], 0xac);
        assert_int_equal(n.mtu, 9000);
        vmm_net_free(&n);
        j = parse("{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"nope\"}");
        assert_int_equal(api_parse_net(j, &n, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "guest_mac"));
        cJSON_Delete(j);

        j = parse("{\"level\": \"tRaCe\", \"show_level\": false}");
        assert_int_equal(api_parse_logger(j, &l, &err), 0);
        cJSON_Delete(j);
        assert_true(l.has_level && l.has_show_level && !l.has_show_log_origin);
        assert_int_equal(l.level, LOG_LEVEL_DEBUG);
        assert_null(l.log_path);
        vmm_logger_config_free(&l);

        j = parse("{\"metrics_path\": \"/m\", \"emit_id\": true, \"properties\": {\"a\": \"1\", "
                  "\"b\": \"2\"}}");
        assert_int_equal(api_parse_metrics(j, &m, &err), 0);
        cJSON_Delete(j);
        assert_int_equal(m.nr_properties, 2);
        assert_string_equal(m.properties[1].key, "b");
        assert_string_equal(m.properties[1].value, "2");
        vmm_metrics_config_free(&m);
        error_clear(&err);
        j = parse("{\"metrics_path\": \"/m\", \"properties\": {\"a\": 1}}");
        assert_int_equal(api_parse_metrics(j, &m, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "expected a string"));
        cJSON_Delete(j);
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
        assert_string_equal(first,
                            "{\"balloon\":null,\"drives\":[],\"boot-source\":null,\"logger\":null,"
                            "\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":"
                            "false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"},"
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
        expect_config_error("", "malformed JSON");
        expect_config_error("{} {}", "trailing characters");
        expect_config_error("{\"drive\": []}", "unknown field `drive`");
        expect_config_error("{\"drives\": {}}", "drives: invalid type: an object");
        expect_config_error("{\"drives\": [{\"drive_id\": \"a b\", \"path_on_host\": \"x\", "
                            "\"is_root_device\": false}]}",
                            "drives[0]: drive id 'a b' is invalid");
        expect_config_error("{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"x\", "
                            "\"is_root_device\": true}, {\"drive_id\": \"b\", \"path_on_host\": "
                            "\"y\", \"is_root_device\": true}]}",
                            "drives[1]: drive 'b' cannot be the root device");
        expect_config_error("{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64}, "
                            "\"balloon\": {\"amount_mib\": 65, \"deflate_on_oom\": false}}",
                            "balloon size 65 MiB exceeds");
        expect_config_error("{\"vsock\": {\"guest_cid\": 1, \"uds_path\": \"/v\"}}",
                            "vsock: field `guest_cid`: invalid value: 1");
        expect_config_error("{\"cpu-config\": {\"reg_modifiers\": []}}",
                            "cpu-config: unknown field `reg_modifiers`");
        expect_config_error("{\"cpu-config\": \"/nonexistent/t.json\"}",
                            "cpu-config: CPU template file '/nonexistent/t.json'");
        expect_config_error("{\"pmem\": [{}]}", "pmem[0]: missing field `id`");
        expect_config_error("{\"pmem\": {}}", "pmem: invalid type: an object, expected an array");
        expect_config_error("{\"memory-hotplug\": {\"total_size_mib\": 100}}",
                            "memory-hotplug: memory hotplug: total_size_mib 100 is not a multiple");
        expect_config_error("{\"logger\": {\"level\": 3}}", "logger: field `level`");
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
                struct vmm_snapshot_load l;
                struct error err = {0};
                cJSON *j = parse(ok[i].json);

                if (api_parse_snapshot_load(j, &l, &err))
                        fail_msg("'%s': %s", ok[i].json, err.msg);
                assert_string_equal(l.mem_file_path, ok[i].path);
                assert_int_equal(l.mem_uffd, ok[i].uffd);
                assert_int_equal(l.huge_pages_2m, ok[i].huge_2m);
                assert_int_equal(l.huge_pages_none, ok[i].huge_none);
                vmm_snapshot_load_free(&l);
                cJSON_Delete(j);
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

        expect_route_error("DELETE", "/", NULL, "Invalid request method and/or path: DELETE /.");
        expect_route_error("GET", "/drives/a", NULL, "Invalid request method and/or path");
        expect_route_error("PUT", "/a/b/c/d/e", "{}", "Invalid request method and/or path");
        /* Snapshots: Firecracker's SnapshotCreateParams / SnapshotLoadParams shapes. */
        expect_route_error("PUT", "/snapshot/create", "{}", "missing field `mem_file_path`");
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
                           "mem_backend: field `backend_type`: unknown variant `Pmem`");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_backend\": {\"backend_type\": "
                           "\"Uffd\", \"backend_path\": \"/u.sock\"}, \"huge_pages\": "
                           "\"Transparent\"}",
                           "`Transparent` is not supported on a snapshot load");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"network_overrides\": [{\"iface_id\": \"eth0\"}]}",
                           "network_overrides[0]: missing field `host_dev_name`");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": [{\"drive_id\": \"root\"}]}",
                           "drive_overrides[0]: missing field `path_on_host`");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": [{\"drive_id\": \"a\", \"path_on_host\": "
                           "\"/x\", \"is_read_only\": true}]}",
                           "drive_overrides[0]: unknown field `is_read_only`, expected one of "
                           "`drive_id`, `path_on_host`");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"drive_overrides\": {}}",
                           "field `drive_overrides`: invalid type: an object, expected a sequence");
        expect_route_error("PUT", "/snapshot/load",
                           "{\"snapshot_path\": \"s\", \"mem_file_path\": \"m\", "
                           "\"vsock_override\": {\"path\": \"x\"}}",
                           "vsock_override: unknown field `path`");
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
                           "The id from the path does not match the id from the body!");
        expect_route_error("PUT", "/actions", "{\"action_type\": \"Start\"}",
                           "An error occurred when deserializing the json body of a request: "
                           "field `action_type`: unknown variant `Start`");

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
                           "field `acknowledge_on_stop`");
        expect_route_error("PATCH", "/balloon/hinting/start", "{\"ack\": true}",
                           "unknown field `ack`");
        expect_route_error("GET", "/balloon/hinting/status", "{}",
                           "GET request cannot have a body.");
        expect_route_error("PUT", "/balloon/hinting/start", "{}", "Invalid request method");
        expect_route_error("GET", "/balloon/hinting", NULL, "Invalid request method");

        /* The target as sent: the path is percent-decoded here, a query ignored, and an
         * escaped NUL refused (it would end the id: "a%00xyz" read as "a"). */
        assert_int_equal(api_route("GET", "/vers%69on?x=%00", "", 0, &req, &action, &resp),
                         API_ROUTE_SUBMIT);
        assert_int_equal(req.action, VMM_GET_VERSION);
        controller_request_clear(&req);
        expect_route_error("GET", "/version%00", NULL,
                           "Invalid request method and/or path: GET /version%00.");
        expect_route_error("PUT", "/drives/a%00xyz?q", drive,
                           "Invalid request method and/or path: PUT /drives/a%00xyz.");
        expect_route_error("GET", "/version%zz", NULL, "path: GET /version%zz.");

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
        /* Firecracker's BalloonHintingStatus: guest_cmd only once the guest sent one. */
        req.action = VMM_GET_BALLOON_HINTING;
        req.reply.balloon_hinting = (struct virtio_balloon_hinting){.host_cmd = 2};
        api_reply(&req, &resp);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body, "{\"host_cmd\":2}");
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
        run(c, &req, -EINVAL, "drive 'd0': drive '/nonexistent/disk': No such file");
        controller_request_clear(&req);

        /* The balloon is validated against the whole configuration. */
        controller_request_init(&req, VMM_PUT_BALLOON);
        req.u.balloon.amount_mib = 600;
        run(c, &req, -EINVAL, "exceeds the guest memory of 512 MiB");
        req.u.balloon.amount_mib = 500;
        run(c, &req, 0, NULL);
        controller_request_clear(&req);
        controller_request_init(&req, VMM_PATCH_MACHINE_CONFIG);
        req.u.machine.update =
            (struct vmm_machine_update){.has_mem_size_mib = true, .mem_size_mib = 256};
        run(c, &req, -EINVAL, "balloon size 500 MiB exceeds");
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
        run(c, &req, -EINVAL, "Cannot start microvm without kernel configuration.");
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
            cmocka_unit_test(test_drive_and_rate_limiter),
            cmocka_unit_test(test_net_logger_metrics),
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
