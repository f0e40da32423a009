/*
 * Command line parsing (syntax: every option, numbers, unknown options, missing values, stray
 * arguments) and vmm_config_validate (machine limits, shared by CLI, config file and API):
 * each refusal is one precise message, and validation errors are ERROR_CONFIG.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/cli.h"
#include "vmm/config.h"

#define MAX_ARGS 48

/* getopt may rearrange argv: parse a private, writable copy. */
struct argv_copy {
        int argc;
        char *argv[MAX_ARGS + 1];
};

static void argv_make(struct argv_copy *a, const char *const *args)
{
        a->argc = 0;
        a->argv[a->argc++] = strdup("vmm");
        for (; *args; args++) {
                assert_true(a->argc < MAX_ARGS);
                a->argv[a->argc++] = strdup(*args);
        }
        a->argv[a->argc] = NULL;
}

static void argv_free(struct argv_copy *a)
{
        for (int i = 0; i < a->argc; i++)
                free(a->argv[i]);
}

static int parse(const char *const *args, struct cli_opts *o, struct error *err)
{
        struct argv_copy a;
        int r;

        argv_make(&a, args);
        r = cli_parse(a.argc, a.argv, o, err);
        /* Fields that point into argv are checked before it is freed by the caller. */
        if (r == 0 && (o->dump_platform_dir || o->instance_id)) {
                static char dir[256], id[256];
                if (o->dump_platform_dir) {
                        snprintf(dir, sizeof(dir), "%s", o->dump_platform_dir);
                        o->dump_platform_dir = dir;
                }
                if (o->instance_id) {
                        snprintf(id, sizeof(id), "%s", o->instance_id);
                        o->instance_id = id;
                }
        }
        argv_free(&a);
        return r;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- cli_parse ---- */

static void test_cli_defaults(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        assert_int_equal(parse((const char *const[]){NULL}, &o, &err), 0);
        assert_int_equal(o.cfg.machine.vcpu_count, VMM_DEFAULT_VCPUS);
        assert_int_equal(o.cfg.machine.mem_size_mib, VMM_DEFAULT_MEM_MIB);
        assert_false(o.cfg.machine.huge_pages);
        assert_null(o.cfg.machine.cpu_hide);
        assert_null(o.cfg.boot.kernel_image_path);
        assert_null(o.cfg.boot.initrd_path);
        assert_null(o.cfg.boot.boot_args);
        assert_null(o.cfg.serial_out_path);
        assert_true(o.cfg.serial_in);
        assert_false(o.cfg.boot_timer);
        assert_null(o.dump_platform_dir);
        assert_null(o.instance_id);
        assert_int_equal(o.level, LOG_LEVEL_INFO);
        assert_false(o.level_set);
        assert_false(o.help);
        assert_false(o.version);
        cli_opts_free(&o);
}

static void test_cli_every_option(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        int r = parse(ARGS("--kernel", "vmlinux.elf", "--initrd", "rootfs.cpio", "--cmdline",
                           "console=ttyS0 quiet", "--mem", "256", "--vcpus", "4", "--cpu-hide",
                           "cx16,xsave", "--huge-pages", "--serial-out", "serial.log",
                           "--no-serial-in", "--boot-timer", "--dump-platform", "/tmp/tables",
                           "--level", "Warning", "--id", "vm-42", "--help", "--version"),
                      &o, &err);
        if (r)
                fail_msg("cli_parse: %s", err.msg);
        assert_string_equal(o.cfg.boot.kernel_image_path, "vmlinux.elf");
        assert_string_equal(o.cfg.boot.initrd_path, "rootfs.cpio");
        assert_string_equal(o.cfg.boot.boot_args, "console=ttyS0 quiet");
        assert_int_equal(o.cfg.machine.mem_size_mib, 256);
        assert_int_equal(o.cfg.machine.vcpu_count, 4);
        assert_string_equal(o.cfg.machine.cpu_hide, "cx16,xsave");
        assert_true(o.cfg.machine.huge_pages);
        assert_string_equal(o.cfg.serial_out_path, "serial.log");
        assert_false(o.cfg.serial_in);
        assert_true(o.cfg.boot_timer);
        assert_string_equal(o.dump_platform_dir, "/tmp/tables");
        assert_int_equal(o.level, LOG_LEVEL_WARN);
        assert_true(o.level_set);
        assert_string_equal(o.instance_id, "vm-42");
        assert_true(o.help);
        assert_true(o.version);
        cli_opts_free(&o);
}

static void test_cli_balloon_free_pages(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        int r = parse(
            ARGS("--kernel", "k", "--balloon", "0,free-page-reporting,free-page-hinting,stats=2"),
            &o, &err);
        if (r)
                fail_msg("cli_parse: %s", err.msg);
        assert_true(o.cfg.balloon.present);
        assert_true(o.cfg.balloon.free_page_reporting);
        assert_true(o.cfg.balloon.free_page_hinting);
        assert_int_equal(o.cfg.balloon.stats_polling_interval_s, 2);
        cli_opts_free(&o);
        assert_int_equal(
            parse(ARGS("--kernel", "k", "--balloon", "0,free-page-hinting=1"), &o, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "takes no value"));
        cli_opts_free(&o);
}

static void test_cli_equals_form_and_last_wins(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        assert_int_equal(
            parse(ARGS("--mem=64", "--kernel=a", "--kernel", "b", "--vcpus=2"), &o, &err), 0);
        assert_int_equal(o.cfg.machine.mem_size_mib, 64);
        assert_int_equal(o.cfg.machine.vcpu_count, 2);
        assert_string_equal(o.cfg.boot.kernel_image_path, "b");
        cli_opts_free(&o);
}

static void test_cli_level(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        assert_int_equal(parse(ARGS("--level", "debug"), &o, &err), 0);
        assert_int_equal(o.level, LOG_LEVEL_DEBUG);
        assert_true(o.level_set);
        cli_opts_free(&o);
        assert_int_equal(parse(ARGS("--level", "OFF"), &o, &err), 0);
        assert_int_equal(o.level, LOG_LEVEL_OFF);
        cli_opts_free(&o);
        assert_int_equal(parse(ARGS("--level", "Error"), &o, &err), 0);
        assert_int_equal(o.level, LOG_LEVEL_ERROR);
        cli_opts_free(&o);
}

static void test_cli_large_values(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        /* Syntax only: the limits are vmm_config_validate's business. */
        assert_int_equal(parse(ARGS("--vcpus", "4294967295", "--mem", "0"), &o, &err), 0);
        assert_int_equal(o.cfg.machine.vcpu_count, 4294967295u);
        assert_int_equal(o.cfg.machine.mem_size_mib, 0);
        cli_opts_free(&o);
}

static void test_cli_parse_twice(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        /* getopt state is reset: a second parse sees its own arguments from the start. */
        assert_int_equal(parse(ARGS("--mem", "300"), &o, &err), 0);
        cli_opts_free(&o);
        assert_int_equal(parse(ARGS("--vcpus", "3"), &o, &err), 0);
        assert_int_equal(o.cfg.machine.vcpu_count, 3);
        assert_int_equal(o.cfg.machine.mem_size_mib, VMM_DEFAULT_MEM_MIB);
        cli_opts_free(&o);
}

static void test_cli_parse_after_error_inside_cluster(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        /* The error stops getopt inside "-xy"; the next parse must not resume there (the old
         * argv is gone) but start afresh. */
        assert_int_equal(parse(ARGS("-xy"), &o, &err), -EINVAL);
        cli_opts_free(&o);
        error_clear(&err);
        assert_int_equal(parse(ARGS("--vcpus", "3"), &o, &err), 0);
        assert_int_equal(o.cfg.machine.vcpu_count, 3);
        cli_opts_free(&o);
}

struct cli_bad {
        const char *args[8];
        const char *needle1, *needle2;
};

static const struct cli_bad cli_bad_cases[] = {
    {{"--mem", "abc"}, "--mem", "'abc'"},
    {{"--mem", "-1"}, "--mem", "-1"},
    {{"--mem", "+5"}, "--mem", "+5"},
    {{"--mem", "12x"}, "--mem", "'12x'"},
    {{"--mem", " 12"}, "--mem", "' 12'"},
    {{"--mem", ""}, "--mem", "''"},
    {{"--mem", "99999999999999999999999"}, "--mem", "too large"},
    {{"--mem", "17592186044416"}, "--mem", "too large"}, /* 2^44 MiB: 2^64 bytes */
    {{"--vcpus", "99999999999"}, "--vcpus", "too large"},
    {{"--vcpus", "4294967296"}, "--vcpus", "too large"},
    {{"--vcpus", "two"}, "--vcpus", "'two'"},
    {{"--bogus"}, "unknown option", "--bogus"},
    {{"--kernel", "k", "--memory", "5"}, "unknown option", "--memory"},
    {{"-x"}, "unknown option", "-x"},
    {{"-h"}, "unknown option", "-h"},
    {{"-xy"}, "unknown option", "'-x'"},
    {{"--kernel", "k", "-Vx"}, "unknown option", "'-V'"},
    {{"--help=yes"}, "option", "'--help=yes'"},
    {{"--kernel", "k", "-v"}, "unknown option", "-v"},
    {{"--kernel"}, "needs a value", "--kernel"},
    {{"--vcpus", "1", "--mem"}, "needs a value", "--mem"},
    {{"vmlinux"}, "unexpected argument", "'vmlinux'"},
    {{"--kernel", "k", "extra"}, "unexpected argument", "'extra'"},
    {{"--level", "loud"}, "--level", "'loud'"},
    {{"--id", ""}, "--id", "empty"},
    /* An empty value is refused (issue 12: --balloon '' was taken as 0 MiB). */
    {{"--balloon", ""}, "--balloon", "empty"},
    {{"--kernel", ""}, "--kernel", "empty"},
    {{"--drive", ""}, "--drive", "empty"},
    {{"--api-sock", ""}, "--api-sock", "empty"},
    /* A mode that prints or merges and exits takes no other option (it was ignored). */
    {{"--describe-snapshot", "s", "--kernel", "k"},
     "--describe-snapshot cannot be combined",
     "--kernel"},
    {{"--kernel", "k", "--describe-snapshot", "s"},
     "--describe-snapshot cannot be combined",
     "--kernel"},
    {{"--base-file", "m", "--diff-file", "d", "--kernel", "k"},
     "--base-file cannot be combined",
     "--kernel"},
    {{"--diff-file", "d", "--api-sock", "a", "--base-file", "m"},
     "--diff-file cannot be combined",
     "--api-sock"},
    {{"--describe-snapshot", "s", "--base-file", "m", "--diff-file", "d"},
     "--describe-snapshot cannot be combined",
     "--base-file"},
    {{"--id", "0123456789012345678901234567890123456789012345678901234567890123X"}, "--id", "64"},
};

static void test_cli_errors(void **state)
{
        (void)state;

        for (size_t i = 0; i < sizeof(cli_bad_cases) / sizeof(cli_bad_cases[0]); i++) {
                const struct cli_bad *c = &cli_bad_cases[i];
                struct cli_opts o;
                struct error err = {0};
                int r = parse(c->args, &o, &err);

                if (r != -EINVAL)
                        fail_msg("case %zu (%s %s): returned %d", i, c->args[0],
                                 c->args[1] ? c->args[1] : "", r);
                if (err.code != -EINVAL || !strstr(err.msg, c->needle1) ||
                    !strstr(err.msg, c->needle2))
                        fail_msg("case %zu (%s %s): message '%s' lacks '%s' / '%s'", i, c->args[0],
                                 c->args[1] ? c->args[1] : "", err.msg, c->needle1, c->needle2);
                cli_opts_free(&o);
        }
}

/* --help and --version go with anything; a mode's own options go together. */
static void test_cli_modes_accepted(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        assert_int_equal(parse(ARGS("--describe-snapshot", "s", "--help"), &o, &err), 0);
        /* (the strings point into the freed argv copy) */
        assert_non_null(o.describe_snapshot);
        assert_true(o.help);
        cli_opts_free(&o);
        assert_int_equal(parse(ARGS("--base-file", "m", "--diff-file", "d"), &o, &err), 0);
        assert_true(o.merge_base && o.merge_diff);
        cli_opts_free(&o);
}

static void test_cli_id_of_64_accepted(void **state)
{
        (void)state;
        struct cli_opts o;
        struct error err = {0};

        assert_int_equal(
            parse(ARGS("--id", "0123456789012345678901234567890123456789012345678901234567890123"),
                  &o, &err),
            0);
        assert_int_equal(strlen(o.instance_id), 64);
        cli_opts_free(&o);
}

static void test_cli_usage_lists_options(void **state)
{
        (void)state;
        static const char *const opts[] = {
            "--kernel",       "--initrd",     "--cmdline",       "--mem",
            "--vcpus",        "--cpu-hide",   "--huge-pages",    "--serial-out",
            "--no-serial-in", "--boot-timer", "--dump-platform", "--level",
            "--id",           "--help",       "--version",       "153"};

        for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
                if (!strstr(cli_usage(), opts[i]))
                        fail_msg("usage does not mention %s", opts[i]);
}

/* ---- vmm_config_validate ---- */

static void expect_invalid(const struct vmm_config *cfg, const struct vmm_host_limits *limits,
                           const char *needle1, const char *needle2)
{
        struct error err = {0};
        int r = vmm_config_validate(cfg, limits, &err);

        if (r >= 0)
                fail_msg("accepted; expected an error mentioning '%s'", needle1);
        assert_int_equal(err.code, r);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
                fail_msg("message '%s' lacks '%s' / '%s'", err.msg, needle1,
                         needle2 ? needle2 : "");
        /* Without an error object the answer is the same. */
        assert_int_equal(vmm_config_validate(cfg, limits, NULL), r);
}

static void expect_valid(const struct vmm_config *cfg, const struct vmm_host_limits *limits)
{
        struct error err = {0};

        if (vmm_config_validate(cfg, limits, &err))
                fail_msg("refused: %s", err.msg);
}

static void test_config_defaults_valid(void **state)
{
        (void)state;
        struct vmm_config cfg;
        const struct vmm_host_limits limits = {.max_vcpus = 8, .max_mem_mib = 1024};

        vmm_config_init(&cfg);
        assert_int_equal(cfg.machine.vcpu_count, 1);
        assert_int_equal(cfg.machine.mem_size_mib, 128);
        assert_true(cfg.serial_in);
        expect_valid(&cfg, NULL);
        expect_valid(&cfg, &limits);
        vmm_config_free(&cfg);
}

#define BAD_VCPUS(max)                                                                             \
        "The number of vCPUs must be greater than 0, less than " max " and must be 1 or an "       \
        "even number if SMT is enabled."
#define BAD_MEMORY                                                                                 \
        "The memory size (MiB) is either 0, or not a multiple of the configured page size."

static void test_config_vcpus(void **state)
{
        (void)state;
        struct vmm_config cfg;
        const struct vmm_host_limits small = {.max_vcpus = 8};
        const struct vmm_host_limits big = {.max_vcpus = 1024};

        vmm_config_init(&cfg);
        cfg.machine.vcpu_count = 0;
        expect_invalid(&cfg, NULL, BAD_VCPUS("254"), NULL);
        cfg.machine.vcpu_count = 254;
        expect_valid(&cfg, NULL);
        cfg.machine.vcpu_count = 255;
        expect_invalid(&cfg, NULL, BAD_VCPUS("254"), NULL);
        /* KVM's limit applies when lower than the platform's... */
        cfg.machine.vcpu_count = 8;
        expect_valid(&cfg, &small);
        cfg.machine.vcpu_count = 9;
        expect_invalid(&cfg, &small, BAD_VCPUS("8"), NULL);
        /* ... never a higher one: xAPIC ids are 8 bits. */
        cfg.machine.vcpu_count = 255;
        expect_invalid(&cfg, &big, BAD_VCPUS("254"), NULL);
        cfg.machine.vcpu_count = UINT32_MAX;
        expect_invalid(&cfg, NULL, BAD_VCPUS("254"), NULL);
        /* SMT: two threads to a core, so one vCPU or an even number of them. */
        cfg.machine.smt = true;
        cfg.machine.vcpu_count = 1;
        expect_valid(&cfg, NULL);
        cfg.machine.vcpu_count = 4;
        expect_valid(&cfg, NULL);
        cfg.machine.vcpu_count = 3;
        expect_invalid(&cfg, NULL, BAD_VCPUS("254"), NULL);
        vmm_config_free(&cfg);
}

static void expect_memory_refused(const struct vmm_config *cfg,
                                  const struct vmm_host_limits *limits, const char *needle1,
                                  const char *needle2)
{
        struct error err = {0};

        expect_valid(cfg, limits); /* a configuration request takes any size */
        assert_int_equal(vmm_config_check_memory(cfg, limits, &err), -EINVAL);
        assert_int_equal(err.kind, ERROR_CONFIG);
        if (!strstr(err.msg, needle1) || !strstr(err.msg, needle2))
                fail_msg("message '%s' lacks '%s' / '%s'", err.msg, needle1, needle2);
}

static void test_config_memory(void **state)
{
        (void)state;
        struct vmm_config cfg;
        const struct vmm_host_limits limits = {.max_mem_mib = 1024};
        struct error err = {0};

        vmm_config_init(&cfg);
        cfg.machine.mem_size_mib = 0;
        expect_invalid(&cfg, NULL, BAD_MEMORY, NULL);
        cfg.machine.mem_size_mib = 1;
        expect_invalid(&cfg, NULL, "memory size 1 MiB", "minimum 2 MiB");
        cfg.machine.mem_size_mib = 2;
        expect_valid(&cfg, NULL);
        cfg.machine.mem_size_mib = 1024;
        expect_valid(&cfg, &limits);
        assert_int_equal(vmm_config_check_memory(&cfg, &limits, &err), 0);
        cfg.machine.mem_size_mib = 1025;
        expect_memory_refused(&cfg, &limits, "1025 MiB", "1024 MiB");
        /* Without host limits, still bounded by the guest physical address space. */
        cfg.machine.mem_size_mib = 1ull << 40;
        expect_memory_refused(&cfg, NULL, "memory size", "exceeds");
        cfg.machine.mem_size_mib = UINT64_MAX;
        expect_memory_refused(&cfg, NULL, "18446744073709551615 MiB", "exceeds");
        vmm_config_free(&cfg);
}

static void test_config_huge_pages(void **state)
{
        (void)state;
        struct vmm_config cfg;

        vmm_config_init(&cfg);
        cfg.machine.huge_pages = true;
        cfg.machine.mem_size_mib = 129;
        expect_invalid(&cfg, NULL, BAD_MEMORY, NULL);
        cfg.machine.mem_size_mib = 130;
        expect_valid(&cfg, NULL);
        cfg.machine.huge_pages = false;
        cfg.machine.mem_size_mib = 129;
        expect_valid(&cfg, NULL);
        vmm_config_free(&cfg);
}

static void test_config_cpu_features(void **state)
{
        (void)state;
        struct vmm_config cfg;

        vmm_config_init(&cfg);
        assert_int_equal(vmm_config_set_str(&cfg.machine.cpu_hide, "cx16,xsave"), 0);
        expect_valid(&cfg, NULL);
        assert_int_equal(vmm_config_set_str(&cfg.machine.cpu_hide, "cx16,warp_drive"), 0);
        expect_invalid(&cfg, NULL, "'warp_drive'", NULL);
        assert_int_equal(vmm_config_set_str(&cfg.machine.cpu_hide, NULL), 0);
        assert_null(cfg.machine.cpu_hide);
        expect_valid(&cfg, NULL);
        vmm_config_free(&cfg);
}

static void test_config_command_line(void **state)
{
        (void)state;
        struct vmm_config cfg;
        char line[4000];

        vmm_config_init(&cfg);
        memset(line, 'a', sizeof(line));
        line[2047] = '\0';
        assert_int_equal(vmm_config_set_str(&cfg.boot.boot_args, line), 0);
        expect_valid(&cfg, NULL);
        line[2047] = 'a';
        line[2048] = '\0';
        assert_int_equal(vmm_config_set_str(&cfg.boot.boot_args, line), 0);
        expect_invalid(&cfg, NULL, "2048 bytes", "2047");
        line[2048] = 'a';
        line[3999] = '\0';
        assert_int_equal(vmm_config_set_str(&cfg.boot.boot_args, line), 0);
        expect_invalid(&cfg, NULL, "3999 bytes", "2047");
        vmm_config_free(&cfg);
}

static void test_config_first_error_reported(void **state)
{
        (void)state;
        struct vmm_config cfg;
        struct error err = {0};

        /* Several problems: one message, about one of them, whole. */
        vmm_config_init(&cfg);
        cfg.machine.vcpu_count = 0;
        cfg.machine.mem_size_mib = 0;
        assert_true(vmm_config_validate(&cfg, NULL, &err) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_null(strchr(err.msg, '\n'));
        assert_true(strstr(err.msg, "vCPUs") != NULL || strstr(err.msg, "memory") != NULL);
        vmm_config_free(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_cli_defaults),
            cmocka_unit_test(test_cli_every_option),
            cmocka_unit_test(test_cli_balloon_free_pages),
            cmocka_unit_test(test_cli_equals_form_and_last_wins),
            cmocka_unit_test(test_cli_level),
            cmocka_unit_test(test_cli_large_values),
            cmocka_unit_test(test_cli_parse_twice),
            cmocka_unit_test(test_cli_parse_after_error_inside_cluster),
            cmocka_unit_test(test_cli_errors),
            cmocka_unit_test(test_cli_modes_accepted),
            cmocka_unit_test(test_cli_id_of_64_accepted),
            cmocka_unit_test(test_cli_usage_lists_options),
            cmocka_unit_test(test_config_defaults_valid),
            cmocka_unit_test(test_config_vcpus),
            cmocka_unit_test(test_config_memory),
            cmocka_unit_test(test_config_huge_pages),
            cmocka_unit_test(test_config_cpu_features),
            cmocka_unit_test(test_config_command_line),
            cmocka_unit_test(test_config_first_error_reported),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
