/*
 * Command-line parsing into the shared configuration object. Syntax errors (unknown
 * option, missing or non-numeric value) are reported here; whether the values make a
 * valid machine is decided by vmm_config_validate, like for the config file and the API.
 */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stdbool.h>

#include "common/error.h"
#include "common/log.h"
#include "config.h"

struct cli_opts {
        struct vmm_config cfg;
        const char *dump_platform_dir;
        const char *instance_id;
        enum log_level level;
        bool level_set;
        bool help;
        bool version;
};

/* Fills opts (cfg is initialised with defaults first); -EINVAL with a message on a syntax
 * error. */
int cli_parse(int argc, char **argv, struct cli_opts *opts, struct error *err) MUST_CHECK;
void cli_opts_free(struct cli_opts *opts);
const char *cli_usage(void);

#endif
