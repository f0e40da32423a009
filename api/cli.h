/*
 * Command-line parsing into the shared configuration object. Syntax errors (unknown
 * option, missing or non-numeric value) are reported here; whether the values make a
 * valid machine is decided by vmm_config_validate, like for the config file and the API.
 */
#ifndef API_CLI_H
#define API_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "common/log.h"
#include "vmm/config.h"

#define CLI_DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's API body limit */

struct cli_opts {
        struct vmm_config cfg;
        const char *dump_platform_dir;
        const char *instance_id;
        enum log_level level;
        bool level_set;
        bool help;
        bool version;
        const char *api_sock;    /* --api-sock: serve the REST API there */
        const char *config_file; /* --config-file: the machine from a JSON document */
        bool no_api;             /* --no-api */
        bool no_seccomp;         /* --no-seccomp: no seccomp filters (vmm/sandbox.h) */
        /* --seccomp-test-violation ROLE (tests only, not in --help): the thread of that role
         * ("vmm", "api", "vcpu") makes a forbidden call once confined. NULL: none. */
        const char *seccomp_test_violation;
        size_t max_payload; /* --http-api-max-payload-size (bytes) */
        /* --mmds-size-limit (bytes; 0: Firecracker's default, the max_payload) and --metadata
         * FILE (the data store's first contents, a JSON document). */
        size_t mmds_size_limit;
        const char *metadata;
        /* An option describing the machine (--kernel, --mem, --drive, ...) was given: those
         * cannot be combined with --config-file. Names the first one, without its "--". */
        const char *machine_option;
        const char *describe_snapshot; /* --describe-snapshot FILE: print it and exit */
        const char *merge_base;        /* --base-file: merge --diff-file over it and exit */
        const char *merge_diff;
};

/* Fills opts (cfg is initialised with defaults first); -EINVAL with a message on a syntax
 * error, an empty value, or options that exclude each other (--describe-snapshot and
 * --base-file/--diff-file take no other option but --help and --version). */
int cli_parse(int argc, char **argv, struct cli_opts *opts, struct error *err) MUST_CHECK;
void cli_opts_free(struct cli_opts *opts);

/* With --config-file: the options that are not about the machine (--serial-out,
 * --no-serial-in, --boot-timer, --log-path, --level, --show-level, --show-log-origin,
 * --metrics-path) override the file's settings in cfg. */
int cli_apply_process_options(const struct cli_opts *opts, struct vmm_config *cfg) MUST_CHECK;
const char *cli_usage(void);

#endif
