/*
 * Command-line parsing (api/cli.c) into the configuration, then the validation every
 * configuration goes through (vmm_config_validate) and the config-file override of the
 * process options. Input: the arguments, separated by NUL bytes (at most 64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "api/cli.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fz_sandbox(argc, argv); /* options name files; parsing should not touch them */
        fz_quiet_log();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *copy = malloc(size + 1), *argv[MAX_ARGS + 2], *p;
        struct vmm_host_limits limits = {.max_vcpus = 254, .max_mem_mib = 1u << 20};
        struct error err = {0};
        struct cli_opts o;
        int argc = 1;

        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        argv[0] = "vmm";
        for (p = copy; p < copy + size && argc <= MAX_ARGS; p += strlen(p) + 1)
                argv[argc++] = p;
        argv[argc] = NULL;
        if (cli_parse(argc, argv, &o, &err) == 0) {
                struct vmm_config other;

                (void)cli_usage();
                if (vmm_config_validate(&o.cfg, &limits, &err) == 0) {
                        vmm_config_init(&other);
                        if (cli_apply_process_options(&o, &other) == 0)
                                (void)!vmm_config_validate(&other, &limits, &err);
                        vmm_config_free(&other);
                }
        } else if (!err.msg[0]) {
                fprintf(stderr, "fuzz_cli: a refusal without a message\n");
                abort();
        }
        cli_opts_free(&o);
        free(copy);
        return 0;
}
