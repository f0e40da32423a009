#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decimal, no sign, no trailing characters, within max. */
static int parse_uint(const char *opt, const char *s, unsigned long long max,
                      unsigned long long *out, struct error *err)
{
        char *end;
        unsigned long long v;

        if (!*s || *s < '0' || *s > '9')
                return error_set(err, -EINVAL, "--%s: '%s' is not a non-negative number", opt, s);
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE || v > max)
                return error_set(err, -EINVAL, "--%s: %s is too large (at most %llu)", opt, s, max);
        if (*end)
                return error_set(err, -EINVAL, "--%s: '%s' is not a number", opt, s);
        *out = v;
        return 0;
}

/* Walks "key=value,flag,key=value"; calls fn for each item (value NULL for a bare flag). */
typedef int (*opt_item_fn)(struct cli_opts *o, void *obj, const char *key, const char *val,
                           struct error *err);

static int for_each_item(const char *opt, const char *arg, struct cli_opts *o, void *obj,
                         opt_item_fn fn, struct error *err)
{
        char *copy = strdup(arg), *save = NULL;
        int r = 0;

        if (!copy)
                return error_set(err, -ENOMEM, "out of memory");
        for (char *item = strtok_r(copy, ",", &save); item && !r;
             item = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(item, '=');
                if (eq)
                        *eq = '\0';
                r = fn(o, obj, item, eq ? eq + 1 : NULL, err);
                if (r && !err->msg[0])
                        error_set(err, r, "--%s: bad item '%s'", opt, item);
        }
        free(copy);
        return r;
}

static int need_value(const char *opt, const char *key, const char *val, struct error *err)
{
        return val && *val ? 0 : error_set(err, -EINVAL, "--%s: '%s' needs a value", opt, key);
}

static int str_value(const char *opt, const char *key, const char *val, char **field,
                     struct error *err)
{
        int r = need_value(opt, key, val, err);

        if (!r && vmm_config_set_str(field, val))
                r = error_set(err, -ENOMEM, "out of memory");
        return r;
}

/* A number item: a value that parses within max. */
static int num_value(const char *opt, const char *key, const char *val, unsigned long long max,
                     unsigned long long *out, struct error *err)
{
        int r = need_value(opt, key, val, err);

        return r ? r : parse_uint(opt, val, max, out, err);
}

static int no_value(const char *opt, const char *key, const char *val, struct error *err)
{
        return val ? error_set(err, -EINVAL, "--%s: '%s' takes no value", opt, key) : 0;
}

/* A bucket refilled once a second: the CLI's "N per second" limits. */
static void per_second(struct token_bucket_config *b, uint64_t n)
{
        b->size = n;
        b->one_time_burst = 0;
        b->refill_time_ms = 1000;
}

/* The access-platform=required|off item every device flag accepts. */
static int ap_item(const char *opt, const char *v, enum vmm_access_platform *ap, struct error *err)
{
        if (!v || vmm_access_platform_parse(v, ap))
                return error_set(err, -EINVAL,
                                 "--%s: access-platform must be 'default', 'required' or 'off'",
                                 opt);
        return 0;
}

static int drive_item(struct cli_opts *o, void *obj, const char *k, const char *v,
                      struct error *err)
{
        struct vmm_drive *d = obj;
        unsigned long long n;
        int r;

        (void)o;
        if (strcmp(k, "path") == 0)
                return str_value("drive", k, v, &d->path_on_host, err);
        if (strcmp(k, "id") == 0)
                return str_value("drive", k, v, &d->drive_id, err);
        if (strcmp(k, "partuuid") == 0)
                return str_value("drive", k, v, &d->partuuid, err);
        if (strcmp(k, "ro") == 0) {
                d->is_read_only = true;
                return no_value("drive", k, v, err);
        }
        if (strcmp(k, "root") == 0) {
                d->is_root_device = true;
                return no_value("drive", k, v, err);
        }
        if (strcmp(k, "cache") == 0) {
                if (v && strcmp(v, "unsafe") == 0)
                        d->cache_type = VMM_CACHE_UNSAFE;
                else if (v && strcmp(v, "writeback") == 0)
                        d->cache_type = VMM_CACHE_WRITEBACK;
                else
                        return error_set(err, -EINVAL,
                                         "--drive: cache must be 'unsafe' or 'writeback'");
                return 0;
        }
        if (strcmp(k, "engine") == 0) {
                if (v && strcmp(v, "sync") == 0)
                        d->io_engine = VMM_IO_SYNC;
                else if (v && (strcmp(v, "io_uring") == 0 || strcmp(v, "async") == 0))
                        d->io_engine = VMM_IO_ASYNC;
                else
                        return error_set(err, -EINVAL,
                                         "--drive: engine must be 'sync' or 'io_uring'");
                return 0;
        }
        if (strcmp(k, "bps") == 0 || strcmp(k, "iops") == 0) {
                r = num_value("drive", k, v, UINT64_MAX, &n, err);
                if (r)
                        return r;
                d->rate_limiter.present = true;
                per_second(k[0] == 'b' ? &d->rate_limiter.cfg.bandwidth : &d->rate_limiter.cfg.ops,
                           n);
                return 0;
        }
        if (strcmp(k, "access-platform") == 0)
                return ap_item("drive", v, &d->access_platform, err);
        return error_set(err, -EINVAL, "--drive: unknown item '%s'", k);
}

static int net_item(struct cli_opts *o, void *obj, const char *k, const char *v, struct error *err)
{
        struct vmm_net *n = obj;
        unsigned long long mtu;
        int r;

        (void)o;
        if (strcmp(k, "tap") == 0)
                return str_value("net", k, v, &n->host_dev_name, err);
        if (strcmp(k, "id") == 0)
                return str_value("net", k, v, &n->iface_id, err);
        if (strcmp(k, "mac") == 0) {
                if (!v || vmm_parse_mac(v, n->guest_mac))
                        return error_set(err, -EINVAL,
                                         "--net: mac '%s' is not of the form aa:bb:cc:dd:ee:ff",
                                         v ? v : "");
                n->has_mac = true;
                return 0;
        }
        if (strcmp(k, "mtu") == 0) {
                r = num_value("net", k, v, 65535, &mtu, err);
                if (!r && mtu < 68)
                        r = error_set(err, -EINVAL, "--net: mtu %llu is below 68", mtu);
                if (!r)
                        n->mtu = (uint16_t)mtu;
                return r;
        }
        if (strcmp(k, "access-platform") == 0)
                return ap_item("net", v, &n->access_platform, err);
        return error_set(err, -EINVAL, "--net: unknown item '%s'", k);
}

static int vsock_item(struct cli_opts *o, void *obj, const char *k, const char *v,
                      struct error *err)
{
        unsigned long long cid;
        int r;

        (void)obj;
        if (strcmp(k, "cid") == 0) {
                r = num_value("vsock", k, v, UINT32_MAX, &cid, err);
                if (!r)
                        o->cfg.vsock.guest_cid = (uint32_t)cid;
                return r;
        }
        if (strcmp(k, "uds") == 0)
                return str_value("vsock", k, v, &o->cfg.vsock.uds_path, err);
        if (strcmp(k, "access-platform") == 0)
                return ap_item("vsock", v, &o->cfg.vsock.access_platform, err);
        return error_set(err, -EINVAL, "--vsock: unknown item '%s'", k);
}

static int balloon_item(struct cli_opts *o, void *obj, const char *k, const char *v,
                        struct error *err)
{
        unsigned long long n;
        int r;

        (void)obj;
        if (strcmp(k, "deflate-on-oom") == 0) {
                o->cfg.balloon.deflate_on_oom = true;
                return no_value("balloon", k, v, err);
        }
        if (strcmp(k, "free-page-reporting") == 0) {
                o->cfg.balloon.free_page_reporting = true;
                return no_value("balloon", k, v, err);
        }
        if (strcmp(k, "free-page-hinting") == 0) {
                o->cfg.balloon.free_page_hinting = true;
                return no_value("balloon", k, v, err);
        }
        if (strcmp(k, "stats") == 0) {
                r = num_value("balloon", k, v, UINT32_MAX, &n, err);
                if (!r)
                        o->cfg.balloon.stats_polling_interval_s = (uint32_t)n;
                return r;
        }
        if (!v && k[0] >= '0' && k[0] <= '9') {
                r = parse_uint("balloon", k, UINT32_MAX, &n, err);
                if (!r)
                        o->cfg.balloon.amount_mib = (uint32_t)n;
                return r;
        }
        if (strcmp(k, "access-platform") == 0)
                return ap_item("balloon", v, &o->cfg.balloon.access_platform, err);
        return error_set(err, -EINVAL, "--balloon: unknown item '%s'", k);
}

static int add_drive(struct cli_opts *o, const char *arg, struct error *err)
{
        struct vmm_drive d = {0};
        char id[16];
        int r = for_each_item("drive", arg, o, &d, drive_item, err);

        if (!r && !d.path_on_host)
                r = error_set(err, -EINVAL, "--drive: path=FILE is required");
        if (!r && !d.drive_id) {
                snprintf(id, sizeof(id), "drive%u", o->cfg.nr_drives);
                r = vmm_config_set_str(&d.drive_id, id);
        }
        if (!r)
                r = vmm_config_put_drive(&o->cfg, &d, err);
        vmm_drive_free(&d);
        return r;
}

static int pmem_item(struct cli_opts *o, void *obj, const char *k, const char *v, struct error *err)
{
        struct vmm_pmem *p = obj;

        (void)o;
        if (strcmp(k, "path") == 0)
                return str_value("pmem", k, v, &p->path_on_host, err);
        if (strcmp(k, "id") == 0)
                return str_value("pmem", k, v, &p->id, err);
        if (strcmp(k, "ro") == 0) {
                p->read_only = true;
                return no_value("pmem", k, v, err);
        }
        if (strcmp(k, "root") == 0) {
                p->root_device = true;
                return no_value("pmem", k, v, err);
        }
        return error_set(err, -EINVAL, "--pmem: unknown item '%s'", k);
}

static int add_pmem(struct cli_opts *o, const char *arg, struct error *err)
{
        struct vmm_pmem p = {0};
        char id[16];
        int r = for_each_item("pmem", arg, o, &p, pmem_item, err);

        if (!r && !p.path_on_host)
                r = error_set(err, -EINVAL, "--pmem: path=FILE is required");
        if (!r && !p.id) {
                snprintf(id, sizeof(id), "pmem%u", o->cfg.nr_pmems);
                r = vmm_config_set_str(&p.id, id);
        }
        if (!r)
                r = vmm_pmem_measure(&p, err);
        if (!r)
                r = vmm_config_put_pmem(&o->cfg, &p, err);
        vmm_pmem_free(&p);
        return r;
}

static int add_net(struct cli_opts *o, const char *arg, struct error *err)
{
        struct vmm_net n = {0};
        char id[16];
        int r = for_each_item("net", arg, o, &n, net_item, err);

        if (!r && !n.host_dev_name)
                r = error_set(err, -EINVAL, "--net: tap=NAME is required");
        if (!r && !n.iface_id) {
                snprintf(id, sizeof(id), "net%u", o->cfg.nr_nets);
                r = vmm_config_set_str(&n.iface_id, id);
        }
        if (!r)
                r = vmm_config_put_net(&o->cfg, &n, err);
        vmm_net_free(&n);
        return r;
}

/* ---- the options ---- */

struct cli_option;
typedef int (*cli_apply_fn)(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                            struct error *err);

/* What an option is for, which decides what it may be combined with. */
enum cli_kind {
        CLI_PROCESS,  /* how the VMM runs (API socket, logger, serial output, ...) */
        CLI_MACHINE,  /* describes the machine: not with --config-file, which does */
        CLI_DESCRIBE, /* --describe-snapshot: prints a state file and exits */
        CLI_MERGE,    /* --base-file, --diff-file: merge memory files and exit */
        CLI_INFO,     /* --help, --version: print and exit, whatever else is given */
};

struct cli_option {
        const char *name; /* without "--" */
        int has_arg;      /* getopt's no_argument, required_argument, optional_argument */
        enum cli_kind kind;
        cli_apply_fn apply;
        size_t field;     /* for the generic appliers: where the value goes in struct cli_opts */
        const char *help; /* its lines in --help (the first one not indented); NULL: none */
};

#define FIELD(member) offsetof(struct cli_opts, member)

/* A copy of the value into a configuration string. */
static int opt_cfg_str(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                       struct error *err)
{
        char **field = (char **)((char *)o + opt->field);

        return vmm_config_set_str(field, arg) ? error_set(err, -ENOMEM, "out of memory") : 0;
}

/* The value itself (argv outlives the options). */
static int opt_arg(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                   struct error *err)
{
        (void)err;
        *(const char **)((char *)o + opt->field) = arg;
        return 0;
}

static int opt_flag(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                    struct error *err)
{
        (void)arg;
        (void)err;
        *(bool *)((char *)o + opt->field) = true;
        return 0;
}

static int opt_mem(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                   struct error *err)
{
        unsigned long long v;
        int r = parse_uint(opt->name, arg, UINT64_MAX >> 20, &v, err);

        if (!r)
                o->cfg.machine.mem_size_mib = v;
        return r;
}

static int opt_vcpus(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                     struct error *err)
{
        unsigned long long v;
        int r = parse_uint(opt->name, arg, 0xffffffffull, &v, err);

        if (!r)
                o->cfg.machine.vcpu_count = (unsigned)v;
        return r;
}

static int opt_no_serial_in(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                            struct error *err)
{
        (void)opt;
        (void)arg;
        (void)err;
        o->cfg.serial_in = false;
        return 0;
}

static int opt_level(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                     struct error *err)
{
        (void)opt;
        if (log_level_parse(arg, &o->level))
                return error_set(err, -EINVAL,
                                 "--level: '%s' is not one of Error, Warning, Info, Debug, Off",
                                 arg);
        o->level_set = true;
        o->cfg.logger.present = true;
        o->cfg.logger.has_level = true;
        o->cfg.logger.level = o->level;
        return 0;
}

static int opt_log_path(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                        struct error *err)
{
        o->cfg.logger.present = true;
        return opt_cfg_str(o, opt, arg, err);
}

static int opt_show_level(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                          struct error *err)
{
        (void)opt;
        (void)arg;
        (void)err;
        o->cfg.logger.present = true;
        o->cfg.logger.has_show_level = true;
        o->cfg.logger.show_level = true;
        return 0;
}

static int opt_show_log_origin(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                               struct error *err)
{
        (void)opt;
        (void)arg;
        (void)err;
        o->cfg.logger.present = true;
        o->cfg.logger.has_show_log_origin = true;
        o->cfg.logger.show_log_origin = true;
        return 0;
}

static int opt_metrics_path(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                            struct error *err)
{
        o->cfg.metrics.present = true;
        return opt_cfg_str(o, opt, arg, err);
}

static int opt_seccomp_test_violation(struct cli_opts *o, const struct cli_option *opt,
                                      const char *arg, struct error *err)
{
        (void)opt;
        /* Tests only (tests/kvm/test_seccomp.py), hence not in --help: proves that a role's
         * filter is installed and that a violation ends the process. */
        if (strcmp(arg, "vmm") && strcmp(arg, "api") && strcmp(arg, "vcpu") && strcmp(arg, "uffd"))
                return error_set(
                    err, -EINVAL,
                    "--seccomp-test-violation: '%s' is not one of vmm, api, vcpu, uffd", arg);
        o->seccomp_test_violation = arg;
        return 0;
}

static int opt_max_payload(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                           struct error *err)
{
        unsigned long long v;
        int r = parse_uint(opt->name, arg, 1ull << 30, &v, err);

        if (!r && v == 0)
                r = error_set(err, -EINVAL, "--http-api-max-payload-size: must be at least 1");
        if (!r)
                o->max_payload = (size_t)v;
        return r;
}

static int opt_mmds_size_limit(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                               struct error *err)
{
        unsigned long long v;
        int r = parse_uint(opt->name, arg, 1ull << 30, &v, err);

        if (!r && v == 0)
                r = error_set(err, -EINVAL, "--mmds-size-limit: must be at least 1");
        if (!r)
                o->mmds_size_limit = (size_t)v;
        return r;
}

static int opt_id(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                  struct error *err)
{
        (void)opt;
        if (strlen(arg) > 64)
                return error_set(err, -EINVAL, "--id: must be 1 to 64 characters");
        o->instance_id = arg;
        return 0;
}

static int opt_pmem(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                    struct error *err)
{
        (void)opt;
        return add_pmem(o, arg, err);
}

static int opt_drive(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                     struct error *err)
{
        (void)opt;
        return add_drive(o, arg, err);
}

static int opt_net(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                   struct error *err)
{
        (void)opt;
        return add_net(o, arg, err);
}

static int opt_vsock(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                     struct error *err)
{
        int r;

        o->cfg.vsock.present = true;
        r = for_each_item(opt->name, arg, o, NULL, vsock_item, err);
        if (!r && (!o->cfg.vsock.uds_path || !o->cfg.vsock.guest_cid))
                r = error_set(err, -EINVAL, "--vsock: cid=N and uds=PATH are required");
        return r;
}

static int opt_entropy(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                       struct error *err)
{
        (void)opt;
        o->cfg.entropy.present = true;
        if (!arg)
                return 0;
        if (strncmp(arg, "access-platform=", 16) != 0)
                return error_set(err, -EINVAL, "--entropy: unknown item '%s'", arg);
        return ap_item("entropy", arg + 16, &o->cfg.entropy.access_platform, err);
}

static int opt_confidential(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                            struct error *err)
{
        (void)opt;
        if (cc_platform_parse(arg, &o->cfg.confidential.platform) ||
            o->cfg.confidential.platform == CC_PLATFORM_NONE)
                return error_set(err, -EINVAL,
                                 "--confidential: '%s' is not one of sev, pef, s390-pv", arg);
        return 0;
}

static int opt_balloon(struct cli_opts *o, const struct cli_option *opt, const char *arg,
                       struct error *err)
{
        o->cfg.balloon.present = true;
        return for_each_item(opt->name, arg, o, NULL, balloon_item, err);
}

/* Every option, once, in --help's order: getopt's table, what each one sets, what it may be
 * combined with and its help all come from here. */
static const struct cli_option options[] = {
    {"kernel", required_argument, CLI_MACHINE, opt_cfg_str, FIELD(cfg.boot.kernel_image_path),
     "--kernel FILE        ELF vmlinux (PVH or 64-bit boot protocol) or bzImage"},
    {"initrd", required_argument, CLI_MACHINE, opt_cfg_str, FIELD(cfg.boot.initrd_path),
     "--initrd FILE        initial ramdisk"},
    {"cmdline", required_argument, CLI_MACHINE, opt_cfg_str, FIELD(cfg.boot.boot_args),
     "--cmdline STR        kernel command line (default: \"" VMM_DEFAULT_CMDLINE "\")"},
    {"mem", required_argument, CLI_MACHINE, opt_mem, 0,
     "--mem MIB            guest RAM in MiB (default 128)"},
    {"vcpus", required_argument, CLI_MACHINE, opt_vcpus, 0,
     "--vcpus N            number of vCPUs (default 1)"},
    {"cpu-hide", required_argument, CLI_MACHINE, opt_cfg_str, FIELD(cfg.machine.cpu_hide),
     "--cpu-hide LIST      hide CPUID features, e.g. cx16,xsave (Linux flag names)"},
    {"huge-pages", no_argument, CLI_MACHINE, opt_flag, FIELD(cfg.machine.huge_pages),
     "--huge-pages         back guest RAM with 2 MiB huge pages"},
    {"pit", no_argument, CLI_MACHINE, opt_flag, FIELD(cfg.machine.pit),
     "--pit                give the guest an i8254 PIT (a guest without the TSC-deadline\n"
     "                     or LAPIC timer needs one; it costs 12-30 ms at VM teardown)"},
    {"serial-out", required_argument, CLI_PROCESS, opt_cfg_str, FIELD(cfg.serial_out_path),
     "--serial-out FILE    write the guest's COM1 output to FILE instead of stdout"},
    {"no-serial-in", no_argument, CLI_PROCESS, opt_no_serial_in, 0,
     "--no-serial-in       do not forward stdin to the guest's COM1"},
    {"boot-timer", no_argument, CLI_PROCESS, opt_flag, FIELD(cfg.boot_timer),
     "--boot-timer         log the guest's boot time when it writes 123 to 0xc0000000"},
    {"drive", required_argument, CLI_MACHINE, opt_drive, 0,
     "--drive path=FILE[,id=ID][,ro][,root][,partuuid=UUID][,cache=unsafe|writeback]\n"
     "          [,engine=sync|io_uring][,bps=BYTES][,iops=N]   a virtio-blk disk"},
    {"pmem", required_argument, CLI_MACHINE, opt_pmem, 0,
     "--pmem path=FILE[,id=ID][,ro][,root]       a virtio-pmem device mapping FILE"},
    {"net", required_argument, CLI_MACHINE, opt_net, 0,
     "--net tap=NAME[,id=ID][,mac=MAC][,mtu=N]    a virtio-net interface on a TAP"},
    {"vsock", required_argument, CLI_MACHINE, opt_vsock, 0,
     "--vsock cid=N,uds=PATH                      a virtio-vsock device"},
    {"entropy", optional_argument, CLI_MACHINE, opt_entropy, 0,
     "--entropy[=access-platform=required|off]    a virtio-rng device"},
    {"confidential", required_argument, CLI_MACHINE, opt_confidential, 0,
     "--confidential sev|pef|s390-pv   a protected VM: the platform's memory-ownership\n"
     "                       model; every device uses VIRTIO_F_ACCESS_PLATFORM\n"
     "  (--drive, --net, --vsock and --balloon take access-platform=required|off too)"},
    {"balloon", required_argument, CLI_MACHINE, opt_balloon, 0,
     "--balloon MIB[,deflate-on-oom][,stats=SECONDS]\n"
     "          [,free-page-reporting][,free-page-hinting]  a virtio-balloon device"},
    {"dump-platform", required_argument, CLI_PROCESS, opt_arg, FIELD(dump_platform_dir),
     "--dump-platform DIR  write the generated ACPI tables and MPTable to DIR, exit"},
    {"api-sock", required_argument, CLI_PROCESS, opt_arg, FIELD(api_sock),
     "--api-sock PATH      serve the REST API on this Unix socket"},
    {"config-file", required_argument, CLI_PROCESS, opt_arg, FIELD(config_file),
     "--config-file FILE   the machine as JSON (GET /vm/config's format); boots at once"},
    {"no-api", no_argument, CLI_PROCESS, opt_flag, FIELD(no_api),
     "--no-api             no API socket (needs --kernel or --config-file)"},
    {"http-api-max-payload-size", required_argument, CLI_PROCESS, opt_max_payload, 0,
     "--http-api-max-payload-size N  largest API request body (default 51200)"},
    {"metadata", required_argument, CLI_PROCESS, opt_arg, FIELD(metadata),
     "--metadata FILE      the metadata service's (MMDS) data store, as JSON"},
    {"mmds-size-limit", required_argument, CLI_PROCESS, opt_mmds_size_limit, 0,
     "--mmds-size-limit N  largest MMDS data store, in bytes of compact JSON\n"
     "                       (default: --http-api-max-payload-size)"},
    {"no-seccomp", no_argument, CLI_PROCESS, opt_flag, FIELD(no_seccomp),
     "--no-seccomp         no seccomp filters (each thread role has one by default;\n"
     "                       a forbidden system call ends the process with 148)"},
    /* Tests only (tests/kvm/test_seccomp.py), hence not in --help. */
    {"seccomp-test-violation", required_argument, CLI_PROCESS, opt_seccomp_test_violation, 0, NULL},
    {"level", required_argument, CLI_PROCESS, opt_level, 0,
     "--level LEVEL        log level: Error, Warning, Info (default), Debug, Off"},
    {"log-path", required_argument, CLI_PROCESS, opt_log_path, FIELD(cfg.logger.log_path),
     "--log-path PATH      write log lines to PATH (file or named pipe)"},
    {"show-level", no_argument, CLI_PROCESS, opt_show_level, 0,
     "--show-level         show the level in log lines (default)"},
    {"show-log-origin", no_argument, CLI_PROCESS, opt_show_log_origin, 0,
     "--show-log-origin    show file:line in log lines (default)"},
    {"metrics-path", required_argument, CLI_PROCESS, opt_metrics_path,
     FIELD(cfg.metrics.metrics_path),
     "--metrics-path PATH  write a JSON metrics line every 60 s to PATH"},
    {"id", required_argument, CLI_PROCESS, opt_id, 0,
     "--id ID              instance id shown in log lines and GET /"},
    {"describe-snapshot", required_argument, CLI_DESCRIBE, opt_arg, FIELD(describe_snapshot),
     "--describe-snapshot FILE  print a snapshot state file's version and contents"},
    {"base-file", required_argument, CLI_MERGE, opt_arg, FIELD(merge_base),
     "--base-file MEM --diff-file DIFF  merge a Diff snapshot's memory file over the\n"
     "                       memory file it follows (MEM is rewritten), then exit"},
    {"diff-file", required_argument, CLI_MERGE, opt_arg, FIELD(merge_diff), NULL},
    {"help", no_argument, CLI_INFO, opt_flag, FIELD(help), "--help               show this help"},
    {"version", no_argument, CLI_INFO, opt_flag, FIELD(version),
     "--version            show the version"},
};

const char *cli_usage(void)
{
        static const char head[] =
            "Usage: vmm --kernel FILE [options]\n"
            "       vmm --config-file FILE [--api-sock PATH] [options]\n"
            "       vmm --api-sock PATH [options]\n"
            "\n"
            "Boot a microVM from the command line or a config file (at once), or configure it\n"
            "through Firecracker's REST API on a Unix socket (PUT /actions InstanceStart).\n"
            "\n";
        static const char tail[] = "\n"
                                   "Exit codes: 0 guest reset or shutdown, 1 error, 152 bad "
                                   "configuration,\n"
                                   "153 bad arguments.\n";
        static char text[4096];
        size_t n;

        /* Built once, on the calling thread (the executable's main). */
        if (text[0])
                return text;
        n = (size_t)snprintf(text, sizeof(text), "%s", head);
        for (size_t i = 0; i < ARRAY_SIZE(options) && n < sizeof(text); i++) {
                const char *h = options[i].help;

                /* Indented by two spaces (its further lines carry their own indentation). */
                if (h && n < sizeof(text))
                        n += (size_t)snprintf(text + n, sizeof(text) - n, "  %s\n", h);
        }
        if (n < sizeof(text))
                snprintf(text + n, sizeof(text) - n, "%s", tail);
        return text;
}

/* The options given so far, by what they are for: the first one of each kind (NULL: none). */
struct cli_seen {
        const struct cli_option *first[CLI_INFO + 1];
};

/* --describe-snapshot and --base-file/--diff-file do one thing and exit: any other option
 * would be ignored, so it is refused (--help and --version excepted). */
static int check_combination(const struct cli_seen *seen, struct error *err)
{
        static const char *const what[] = {[CLI_DESCRIBE] = "only prints the state file",
                                           [CLI_MERGE] = "only merges the memory files"};

        for (enum cli_kind mode = CLI_DESCRIBE; mode <= CLI_MERGE; mode++) {
                if (!seen->first[mode])
                        continue;
                for (enum cli_kind k = CLI_PROCESS; k < CLI_INFO; k++)
                        if (k != mode && seen->first[k])
                                return error_set(
                                    err, -EINVAL, "--%s cannot be combined with --%s (it %s)",
                                    seen->first[mode]->name, seen->first[k]->name, what[mode]);
        }
        return 0;
}

int cli_parse(int argc, char **argv, struct cli_opts *o, struct error *err)
{
        struct option long_opts[ARRAY_SIZE(options) + 1];
        struct cli_seen seen = {{NULL}};
        int opt, r;

        memset(o, 0, sizeof(*o));
        vmm_config_init(&o->cfg);
        o->level = LOG_LEVEL_INFO;
        o->max_payload = CLI_DEFAULT_MAX_PAYLOAD;
        /* getopt reports an option by its index in the table, offset past the characters. */
        for (size_t i = 0; i < ARRAY_SIZE(options); i++)
                long_opts[i] =
                    (struct option){options[i].name, options[i].has_arg, NULL, 256 + (int)i};
        long_opts[ARRAY_SIZE(options)] = (struct option){NULL, 0, NULL, 0};
        opterr = 0;
        /* 0, not 1: glibc then also forgets its position inside a "-abc" cluster, which an
         * earlier parse that stopped on an error may have left pointing into its argv. */
        optind = 0;
        /* "+" stops at the first non-option; "-" would permute. Long options only. */
        while ((opt = getopt_long(argc, argv, "+:", long_opts, NULL)) != -1) {
                const struct cli_option *c;

                /* Inside a cluster ("-xy") optind has not moved on: name the letter. (A long
                 * option given a value it does not take sets optopt to its code, >= 256.) */
                if (opt == '?' && optopt > 0 && optopt < 256)
                        return error_set(err, -EINVAL, "unknown option '-%c'", optopt);
                if (opt == '?')
                        return error_set(err, -EINVAL, "unknown option '%s'", argv[optind - 1]);
                if (opt == ':')
                        return error_set(err, -EINVAL, "option '%s' needs a value",
                                         argv[optind - 1]);
                c = &options[opt - 256];
                if (c->has_arg == required_argument && !*optarg)
                        return error_set(err, -EINVAL, "--%s: the value is empty ('')", c->name);
                if (!seen.first[c->kind])
                        seen.first[c->kind] = c;
                r = c->apply(o, c, optarg, err);
                if (r)
                        return r;
        }
        if (optind < argc)
                return error_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);
        if (!o->merge_base != !o->merge_diff)
                return error_set(err, -EINVAL, "--base-file and --diff-file go together");
        r = check_combination(&seen, err);
        if (r)
                return r;
        if (seen.first[CLI_MACHINE])
                o->machine_option = seen.first[CLI_MACHINE]->name;
        return 0;
}

void cli_opts_free(struct cli_opts *o)
{
        vmm_config_free(&o->cfg);
}

int cli_apply_process_options(const struct cli_opts *o, struct vmm_config *cfg)
{
        const struct vmm_logger_config *l = &o->cfg.logger;

        if (o->cfg.serial_out_path &&
            vmm_config_set_str(&cfg->serial_out_path, o->cfg.serial_out_path))
                return -ENOMEM;
        if (!o->cfg.serial_in)
                cfg->serial_in = false;
        if (o->cfg.boot_timer)
                cfg->boot_timer = true;
        if (l->present)
                cfg->logger.present = true;
        if (l->log_path && vmm_config_set_str(&cfg->logger.log_path, l->log_path))
                return -ENOMEM;
        if (l->has_level) {
                cfg->logger.has_level = true;
                cfg->logger.level = l->level;
        }
        if (l->has_show_level) {
                cfg->logger.has_show_level = true;
                cfg->logger.show_level = l->show_level;
        }
        if (l->has_show_log_origin) {
                cfg->logger.has_show_log_origin = true;
                cfg->logger.show_log_origin = l->show_log_origin;
        }
        if (o->cfg.metrics.present) {
                vmm_metrics_config_free(&cfg->metrics);
                if (vmm_metrics_config_copy(&cfg->metrics, &o->cfg.metrics))
                        return -ENOMEM;
        }
        return 0;
}
