#include "jail_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum opt_kind {
        OPT_VALUE, /* --name VALUE, at most once */
        OPT_FLAG,  /* --name, at most once */
        OPT_MULTI, /* --name VALUE, any number of times */
};

enum opt_id {
        O_ID,
        O_EXEC_FILE,
        O_UID,
        O_GID,
        O_CHROOT_BASE,
        O_NETNS,
        O_DAEMONIZE,
        O_NEW_PID_NS,
        O_CGROUP,
        O_RESOURCE_LIMIT,
        O_CGROUP_VERSION,
        O_PARENT_CGROUP,
        O_COUNT,
};

static const struct {
        const char *name;
        enum opt_kind kind;
        bool required;
} opts[O_COUNT] = {
    [O_ID] = {"id", OPT_VALUE, true},
    [O_EXEC_FILE] = {"exec-file", OPT_VALUE, true},
    [O_UID] = {"uid", OPT_VALUE, true},
    [O_GID] = {"gid", OPT_VALUE, true},
    [O_CHROOT_BASE] = {"chroot-base-dir", OPT_VALUE, false},
    [O_NETNS] = {"netns", OPT_VALUE, false},
    [O_DAEMONIZE] = {"daemonize", OPT_FLAG, false},
    [O_NEW_PID_NS] = {"new-pid-ns", OPT_FLAG, false},
    [O_CGROUP] = {"cgroup", OPT_MULTI, false},
    [O_RESOURCE_LIMIT] = {"resource-limit", OPT_MULTI, false},
    [O_CGROUP_VERSION] = {"cgroup-version", OPT_VALUE, false},
    [O_PARENT_CGROUP] = {"parent-cgroup", OPT_VALUE, false},
};

const char *jail_args_usage(void)
{
        return "Usage: jailer --id ID --exec-file FILE --uid UID --gid GID [options] [-- VMM "
               "ARGS...]\n"
               "\n"
               "Builds a chroot jail <chroot-base-dir>/<exec file name>/<id>/root, copies the "
               "VMM\n"
               "into it, joins the cgroup and network namespace, pivots into the jail, drops "
               "to\n"
               "UID:GID and execs the VMM as `/<exec file name> --id ID VMM ARGS...`.\n"
               "\n"
               "  --id ID                 the microVM's id: 1 to 64 letters, digits or '-'\n"
               "  --exec-file FILE        the VMM executable (copied into the jail)\n"
               "  --uid UID, --gid GID    the user and group the VMM runs as\n"
               "  --chroot-base-dir DIR   where jails are built (default " JAIL_DEFAULT_BASE ")\n"
               "  --netns PATH            join this network namespace (e.g. "
               "/var/run/netns/NAME)\n"
               "  --daemonize             detach: setsid, standard I/O to /dev/null\n"
               "  --new-pid-ns            run the VMM as pid 1 of a new PID namespace\n"
               "  --cgroup-version 1|2    the cgroup hierarchy (default 1; --cgroup needs 2)\n"
               "  --cgroup FILE=VALUE     write VALUE to FILE of the VM's cgroup\n"
               "                          <cgroup v2 mount>/<parent-cgroup>/<id> (repeatable)\n"
               "  --parent-cgroup PATH    the cgroup above the VM's (default: the exec file's "
               "name)\n"
               "  --resource-limit fsize=BYTES|no-file=N   setrlimit (repeatable; no-file "
               "defaults to 2048)\n"
               "  --help, --version\n"
               "\n"
               "The VMM's pid is written to <jail>/<exec file name>.pid; a second jailer with "
               "the same\n"
               "id is refused while that file exists. Exit codes: 0 done (or detached), 1 "
               "host error,\n"
               "152 bad configuration (files, namespace, cgroup, id in use), 153 bad "
               "arguments;\n"
               "after the exec, the VMM's own.\n";
}

/* Digits only, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
        char *end;
        unsigned long long v;

        if (!*s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE || *end)
                return false;
        *out = v;
        return true;
}

static bool is_control(unsigned char c)
{
        return c < 0x20 || c == 0x7f;
}

int jail_args_check_id(const char *id, struct error *err)
{
        size_t n = strlen(id);

        if (n < 1 || n > JAIL_ID_MAX)
                return error_set(err, -EINVAL,
                                 "--id: '%.80s' has %zu characters; an id has 1 to %d", id, n,
                                 JAIL_ID_MAX);
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                        return error_set(err, -EINVAL,
                                         "--id: invalid character '%c' (0x%02x) at position %zu "
                                         "of '%s'; an id has letters, digits and '-' only",
                                         is_control((unsigned char)c) ? '?' : c, (unsigned char)c,
                                         i, id);
        }
        return 0;
}

int jail_args_parse_id_number(const char *opt, const char *s, uint32_t *out, struct error *err)
{
        uint64_t v;

        if (!parse_u64(s, &v))
                return error_set(err, -EINVAL, "--%s: '%s' is not a decimal number", opt, s);
        if (v >= UINT32_MAX)
                return error_set(err, -EINVAL,
                                 "--%s: %s is out of range (0 to 4294967294; -1 means "
                                 "\"unchanged\" to the kernel)",
                                 opt, s);
        *out = (uint32_t)v;
        return 0;
}

int jail_args_check_parent_cgroup(const char *path, struct error *err)
{
        size_t n = strlen(path);
        const char *p = path;

        if (n == 0)
                return error_set(err, -EINVAL, "--parent-cgroup: empty path");
        if (n > JAIL_PARENT_CGROUP_MAX)
                return error_set(err, -EINVAL, "--parent-cgroup: longer than %d characters",
                                 JAIL_PARENT_CGROUP_MAX);
        if (path[0] == '/')
                return error_set(err, -EINVAL,
                                 "--parent-cgroup '%s': must be relative to the cgroup mount "
                                 "(no leading '/')",
                                 path);
        for (size_t i = 0; i < n; i++)
                if (is_control((unsigned char)path[i]))
                        return error_set(err, -EINVAL,
                                         "--parent-cgroup: control character at position %zu", i);
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                if (len == 0 || (len == 1 && p[0] == '.') ||
                    (len == 2 && p[0] == '.' && p[1] == '.'))
                        return error_set(err, -EINVAL,
                                         "--parent-cgroup '%s': components may not be empty, "
                                         "'.' or '..'",
                                         path);
                if (!slash)
                        break;
                p = slash + 1;
                if (!*p)
                        return error_set(err, -EINVAL,
                                         "--parent-cgroup '%s': components may not be empty, "
                                         "'.' or '..'",
                                         path);
        }
        return 0;
}

static void free_setting(struct jail_cgroup_setting *s)
{
        free(s->file);
        free(s->value);
        free(s->controller);
}

/* FILE=VALUE, split at the first '=' (a value may hold '=', as io.max's do). */
static int parse_cgroup(const char *arg, struct jail_cgroup_setting *s, struct error *err)
{
        const char *eq = strchr(arg, '=');
        size_t flen = eq ? (size_t)(eq - arg) : 0;
        const char *dot;

        if (!eq || flen == 0)
                return error_set(err, -EINVAL,
                                 "--cgroup '%.200s': expected FILE=VALUE (e.g. pids.max=64)", arg);
        if (flen > JAIL_CGROUP_FILE_MAX)
                return error_set(err, -EINVAL, "--cgroup: file name longer than %d characters",
                                 JAIL_CGROUP_FILE_MAX);
        for (size_t i = 0; i < flen; i++) {
                char c = arg[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return error_set(err, -EINVAL,
                                         "--cgroup '%.200s': the file name may hold letters, "
                                         "digits, '_', '-' and '.' only (no paths)",
                                         arg);
        }
        dot = memchr(arg, '.', flen);
        if (!dot || dot == arg || dot + 1 == eq || eq[-1] == '.')
                return error_set(err, -EINVAL,
                                 "--cgroup '%.200s': the file must be CONTROLLER.NAME (e.g. "
                                 "pids.max, memory.max)",
                                 arg);
        for (const char *c = arg; c < dot; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                        return error_set(err, -EINVAL,
                                         "--cgroup '%.200s': '%.*s' is not a controller name", arg,
                                         (int)(dot - arg), arg);
        if (dot - arg == 6 && memcmp(arg, "cgroup", 6) == 0)
                return error_set(err, -EINVAL,
                                 "--cgroup '%.200s': the cgroup core files (cgroup.*) are not "
                                 "settings; the jailer moves the VMM into its cgroup itself",
                                 arg);
        if (!eq[1])
                return error_set(err, -EINVAL, "--cgroup '%.200s': empty value", arg);
        if (strlen(eq + 1) > JAIL_CGROUP_VALUE_MAX)
                return error_set(err, -EINVAL, "--cgroup %.*s: value longer than %d characters",
                                 (int)flen, arg, JAIL_CGROUP_VALUE_MAX);
        for (const char *c = eq + 1; *c; c++)
                if (is_control((unsigned char)*c))
                        return error_set(err, -EINVAL,
                                         "--cgroup %.*s: control character in the value", (int)flen,
                                         arg);
        s->file = strndup(arg, flen);
        s->value = strdup(eq + 1);
        s->controller = strndup(arg, (size_t)(dot - arg));
        if (!s->file || !s->value || !s->controller) {
                free_setting(s);
                return error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int parse_limit(struct jail_args *a, const char *arg, struct error *err)
{
        const char *eq = strchr(arg, '=');
        uint64_t v;

        if (!eq || eq == arg)
                return error_set(err, -EINVAL,
                                 "--resource-limit '%.200s': expected RESOURCE=VALUE (fsize=BYTES "
                                 "or no-file=N)",
                                 arg);
        if (!parse_u64(eq + 1, &v))
                return error_set(err, -EINVAL,
                                 "--resource-limit '%.200s': '%.40s' is not a decimal number", arg,
                                 eq + 1);
        if ((size_t)(eq - arg) == 5 && memcmp(arg, "fsize", 5) == 0) {
                a->has_fsize = true;
                a->fsize = v;
        } else if ((size_t)(eq - arg) == 7 && memcmp(arg, "no-file", 7) == 0) {
                a->no_file = v;
        } else {
                return error_set(err, -EINVAL,
                                 "--resource-limit '%.200s': unknown resource '%.*s' (fsize, "
                                 "no-file)",
                                 arg, (int)(eq - arg), arg);
        }
        return 0;
}

static int find_opt(const char *name)
{
        for (int i = 0; i < O_COUNT; i++)
                if (strcmp(opts[i].name, name) == 0)
                        return i;
        return -1;
}

/* The value of one option (its validation belongs to the option). */
static int take_value(struct jail_args *a, enum opt_id id, const char *v, struct error *err)
{
        uint32_t n;
        int r;

        switch (id) {
        case O_ID:
                a->id = v;
                return jail_args_check_id(v, err);
        case O_EXEC_FILE:
                a->exec_file = v;
                return *v ? 0 : error_set(err, -EINVAL, "--exec-file: empty path");
        case O_UID:
                r = jail_args_parse_id_number("uid", v, &n, err);
                a->uid = (uid_t)n;
                return r;
        case O_GID:
                r = jail_args_parse_id_number("gid", v, &n, err);
                a->gid = (gid_t)n;
                return r;
        case O_CHROOT_BASE:
                a->chroot_base = v;
                return *v ? 0 : error_set(err, -EINVAL, "--chroot-base-dir: empty path");
        case O_NETNS:
                a->netns = v;
                return *v ? 0 : error_set(err, -EINVAL, "--netns: empty path");
        case O_CGROUP_VERSION:
                if (strcmp(v, "1") && strcmp(v, "2"))
                        return error_set(err, -EINVAL,
                                         "--cgroup-version: '%.40s' is not a cgroup version (1 "
                                         "or 2)",
                                         v);
                a->cgroup_version = (unsigned)(v[0] - '0');
                return 0;
        case O_PARENT_CGROUP:
                a->parent_cgroup = v;
                return jail_args_check_parent_cgroup(v, err);
        case O_CGROUP:
                r = parse_cgroup(v, &a->cgroups[a->nr_cgroups], err);
                if (!r)
                        a->nr_cgroups++;
                return r;
        case O_RESOURCE_LIMIT:
                return parse_limit(a, v, err);
        default:
                return error_set(err, -EINVAL, "internal: option %d has no value", (int)id);
        }
}

int jail_args_parse(struct jail_args *a, int argc, char **argv, struct error *err)
{
        bool seen[O_COUNT] = {false};
        int end = argc;

        memset(a, 0, sizeof(*a));
        a->chroot_base = JAIL_DEFAULT_BASE;
        a->cgroup_version = 1;
        a->no_file = JAIL_DEFAULT_NO_FILE;
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--") == 0) {
                        end = i;
                        a->vmm_args = argv + i + 1;
                        a->nr_vmm_args = argc - i - 1;
                        break;
                }
        /* As Firecracker's parser: help and version win over everything else. */
        for (int i = 1; i < end; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        a->help = true;
                        return 0;
                }
                if (strcmp(argv[i], "--version") == 0)
                        a->version = true;
        }
        if (a->version)
                return 0;
        a->cgroups = calloc((size_t)argc, sizeof(*a->cgroups));
        if (!a->cgroups)
                return error_set(err, -ENOMEM, "out of memory");

        for (int i = 1; i < end; i++) {
                const char *arg = argv[i];
                int id;
                int r;

                if (strncmp(arg, "--", 2) != 0)
                        return error_set(err, -EINVAL,
                                         "unexpected argument '%.200s' (options are --name "
                                         "VALUE; the VMM's arguments go after --)",
                                         arg);
                id = find_opt(arg + 2);
                if (id < 0)
                        return error_set(err, -EINVAL, "unknown option '%.200s'%s", arg,
                                         strchr(arg, '=') ? " (give the value as the next "
                                                            "argument: --name VALUE)"
                                                          : "");
                if (seen[id] && opts[id].kind != OPT_MULTI)
                        return error_set(err, -EINVAL, "--%s was given more than once",
                                         opts[id].name);
                seen[id] = true;
                if (opts[id].kind == OPT_FLAG) {
                        if (id == O_DAEMONIZE)
                                a->daemonize = true;
                        else
                                a->new_pid_ns = true;
                        continue;
                }
                if (i + 1 >= end || strncmp(argv[i + 1], "--", 2) == 0)
                        return error_set(err, -EINVAL, "--%s needs a value", opts[id].name);
                r = take_value(a, (enum opt_id)id, argv[++i], err);
                if (r)
                        return r;
        }
        for (int i = 0; i < O_COUNT; i++)
                if (opts[i].required && !seen[i])
                        return error_set(err, -EINVAL, "--%s is required", opts[i].name);
        if (a->nr_cgroups && a->cgroup_version != 2)
                return error_set(err, -EINVAL,
                                 "--cgroup: only cgroup v2 is supported; give --cgroup-version 2");
        return 0;
}

void jail_args_free(struct jail_args *a)
{
        for (size_t i = 0; i < a->nr_cgroups; i++)
                free_setting(&a->cgroups[i]);
        free(a->cgroups);
        a->cgroups = NULL;
        a->nr_cgroups = 0;
}
