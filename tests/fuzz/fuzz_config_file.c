/*
 * The config-file parser (api_config_parse): a whole JSON document to a validated
 * configuration, as `vmm --config-file` reads it, then back to JSON (GET /vm/config) and
 * through the parser again: what the VMM writes it must read back.
 *
 * Input: the document. Each section goes the way its API command goes, so the kernel,
 * initrd and drive paths are checked against the host (opened read-only or read-write, never
 * created): the target runs in the fuzz sandbox, whose scratch directory (the working
 * directory) holds the files the seeds name ("vmlinux", "initrd", "k", "disk"), so a seed
 * gets past its boot source to the sections after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/config_json.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        static const char *const files[] = {"vmlinux", "initrd", "k", "disk"};

        fz_sandbox(argc, argv);
        fz_quiet_log();
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                FILE *f = fopen(files[i], "w");

                if (!f || fclose(f)) {
                        perror(files[i]);
                        exit(1);
                }
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vmm_config cfg, again;
        struct error err = {0};
        cJSON *j;
        char *text;

        if (size > (1u << 20))
                return 0;
        if (api_config_parse((const char *)data, size, &cfg, &err)) {
                /* A refusal always explains itself. */
                if (!err.msg[0]) {
                        fprintf(stderr, "a refusal without a message\n");
                        abort();
                }
                vmm_config_free(&cfg);
                return 0;
        }
        j = api_json_vm_config(&cfg);
        text = j ? cJSON_PrintUnformatted(j) : NULL;
        cJSON_Delete(j);
        if (text) {
                /* A configuration the parser accepted round-trips. */
                if (api_config_parse(text, strlen(text), &again, &err)) {
                        fprintf(stderr, "round trip refused: %s\n%s\n", err.msg, text);
                        abort();
                }
                vmm_config_free(&again);
                free(text);
        }
        vmm_config_free(&cfg);
        return 0;
}
