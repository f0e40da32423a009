/*
 * The jailer's command line: Firecracker's jailer options (docs/jailer.md), parsed and
 * validated without touching the host, so every refusal is a unit-testable message.
 *
 * Syntax (Firecracker's argument parser): `--name value` or `--name` for a flag; every
 * argument before the first `--` must be a known option; `--cgroup` and `--resource-limit`
 * may repeat, the others may not; everything after `--` goes to the VMM unchanged.
 */
#ifndef API_JAILER_JAIL_ARGS_H
#define API_JAILER_JAIL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

#define JAIL_ID_MAX            64 /* Firecracker's instance id limit */
#define JAIL_DEFAULT_BASE      "/srv/jailer"
#define JAIL_DEFAULT_NO_FILE   2048 /* RLIMIT_NOFILE when --resource-limit no-file is absent */
#define JAIL_CGROUP_FILE_MAX   128  /* longest cgroup file name accepted */
#define JAIL_CGROUP_VALUE_MAX  4096 /* longest cgroup value accepted (one write) */
#define JAIL_PARENT_CGROUP_MAX 1024 /* longest --parent-cgroup */

/* One `--cgroup FILE=VALUE`: strings point into the setting's own copy. */
struct jail_cgroup_setting {
        char *file;       /* e.g. "pids.max" */
        char *value;      /* e.g. "64" (no newline) */
        char *controller; /* the file's prefix before the first '.', e.g. "pids" */
};

struct jail_args {
        bool help;
        bool version;
        const char *id;
        const char *exec_file;
        uid_t uid;
        gid_t gid;
        const char *chroot_base; /* JAIL_DEFAULT_BASE unless given */
        const char *netns;       /* NULL: stay in the jailer's network namespace */
        bool daemonize;
        bool new_pid_ns;
        unsigned cgroup_version;   /* 1 (Firecracker's default) or 2 */
        const char *parent_cgroup; /* NULL: the exec file's name (known after resolving it) */
        struct jail_cgroup_setting *cgroups;
        size_t nr_cgroups;
        bool has_fsize;   /* --resource-limit fsize=N given */
        uint64_t fsize;   /* RLIMIT_FSIZE */
        uint64_t no_file; /* RLIMIT_NOFILE */
        char **vmm_args;  /* the arguments after `--` (pointers into argv) */
        int nr_vmm_args;
};

/*
 * Parses and validates argv (argv[0] is the program). Returns 0, or -EINVAL with one
 * message in err naming the argument; a->help / a->version set means nothing else was
 * checked. Call jail_args_free afterwards in either case.
 */
int jail_args_parse(struct jail_args *a, int argc, char **argv, struct error *err);
void jail_args_free(struct jail_args *a);

/* The option summary for --help. */
const char *jail_args_usage(void);

/* The checks jail_args_parse makes, for the jailer's other inputs and the tests. */
/* 1 to 64 characters, ASCII letters, digits and '-' (Firecracker's instance id rule). */
int jail_args_check_id(const char *id, struct error *err);
/* A relative cgroup path: components not empty, not "." or "..", no control characters. */
int jail_args_check_parent_cgroup(const char *path, struct error *err);
/* Decimal uid/gid: 0 to 2^32-2 ((uid_t)-1 means "unchanged" to the kernel). */
int jail_args_parse_id_number(const char *opt, const char *s, uint32_t *out, struct error *err);

#endif
