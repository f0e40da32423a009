#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
        OPT_KERNEL = 256,
        OPT_INITRD,
        OPT_CMDLINE,
        OPT_MEM,
        OPT_VCPUS,
        OPT_CPU_HIDE,
        OPT_HUGE_PAGES,
        OPT_SERIAL_OUT,
        OPT_NO_SERIAL_IN,
        OPT_BOOT_TIMER,
        OPT_DUMP_PLATFORM,
        OPT_LEVEL,
        OPT_ID,
        OPT_DRIVE,
        OPT_NET,
        OPT_VSOCK,
        OPT_ENTROPY,
        OPT_CONFIDENTIAL,
        OPT_BALLOON,
        OPT_API_SOCK,
        OPT_CONFIG_FILE,
        OPT_NO_API,
        OPT_LOG_PATH,
        OPT_SHOW_LEVEL,
        OPT_SHOW_LOG_ORIGIN,
        OPT_METRICS_PATH,
        OPT_MAX_PAYLOAD,
        OPT_NO_SECCOMP,
        OPT_SECCOMP_TEST_VIOLATION,
        OPT_DESCRIBE_SNAPSHOT,
        OPT_BASE_FILE,
        OPT_DIFF_FILE,
        OPT_HELP,
        OPT_VERSION,
};

static const struct option long_opts[] = {
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"mem", required_argument, NULL, OPT_MEM},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"cpu-hide", required_argument, NULL, OPT_CPU_HIDE},
    {"huge-pages", no_argument, NULL, OPT_HUGE_PAGES},
    {"serial-out", required_argument, NULL, OPT_SERIAL_OUT},
    {"no-serial-in", no_argument, NULL, OPT_NO_SERIAL_IN},
    {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
    {"dump-platform", required_argument, NULL, OPT_DUMP_PLATFORM},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"id", required_argument, NULL, OPT_ID},
    {"drive", required_argument, NULL, OPT_DRIVE},
    {"net", required_argument, NULL, OPT_NET},
    {"vsock", required_argument, NULL, OPT_VSOCK},
    {"entropy", optional_argument, NULL, OPT_ENTROPY},
    {"confidential", required_argument, NULL, OPT_CONFIDENTIAL},
    {"balloon", required_argument, NULL, OPT_BALLOON},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
    {"no-api", no_argument, NULL, OPT_NO_API},
    {"log-path", required_argument, NULL, OPT_LOG_PATH},
    {"show-level", no_argument, NULL, OPT_SHOW_LEVEL},
    {"show-log-origin", no_argument, NULL, OPT_SHOW_LOG_ORIGIN},
    {"metrics-path", required_argument, NULL, OPT_METRICS_PATH},
    {"http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD},
    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
    {"seccomp-test-violation", required_argument, NULL, OPT_SECCOMP_TEST_VIOLATION},
    {"describe-snapshot", required_argument, NULL, OPT_DESCRIBE_SNAPSHOT},
    {"base-file", required_argument, NULL, OPT_BASE_FILE},
    {"diff-file", required_argument, NULL, OPT_DIFF_FILE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

const char *cli_usage(void)
{
        return "Usage: vmm --kernel FILE [options]\n"
               "       vmm --config-file FILE [--api-sock PATH] [options]\n"
               "       vmm --api-sock PATH [options]\n"
               "\n"
               "Boot a microVM from the command line or a config file (at once), or configure it\n"
               "through Firecracker's REST API on a Unix socket (PUT /actions InstanceStart).\n"
               "\n"
               "  --kernel FILE        ELF vmlinux (PVH or 64-bit boot protocol) or bzImage\n"
               "  --initrd FILE        initial ramdisk\n"
               "  --cmdline STR        kernel command line (default: \"" VMM_DEFAULT_CMDLINE "\")\n"
               "  --mem MIB            guest RAM in MiB (default 128)\n"
               "  --vcpus N            number of vCPUs (default 1)\n"
               "  --cpu-hide LIST      hide CPUID features, e.g. cx16,xsave (Linux flag names)\n"
               "  --huge-pages         back guest RAM with 2 MiB huge pages\n"
               "  --serial-out FILE    write the guest's COM1 output to FILE instead of stdout\n"
               "  --no-serial-in       do not forward stdin to the guest's COM1\n"
               "  --boot-timer         log the guest's boot time when it writes 123 to 0xc0000000\n"
               "  --drive path=FILE[,id=ID][,ro][,root][,partuuid=UUID][,cache=unsafe|writeback]\n"
               "          [,engine=sync|io_uring][,bps=BYTES][,iops=N]   a virtio-blk disk\n"
               "  --net tap=NAME[,id=ID][,mac=MAC][,mtu=N]    a virtio-net interface on a TAP\n"
               "  --vsock cid=N,uds=PATH                      a virtio-vsock device\n"
               "  --entropy[=access-platform=required|off]    a virtio-rng device\n"
               "  --confidential sev|pef|s390-pv   a protected VM: the platform's "
               "memory-ownership\n"
               "                       model; every device uses VIRTIO_F_ACCESS_PLATFORM\n"
               "  (--drive, --net, --vsock and --balloon take access-platform=required|off too)\n"
               "  --balloon MIB[,deflate-on-oom][,stats=SECONDS]  a virtio-balloon device\n"
               "  --dump-platform DIR  write the generated ACPI tables and MPTable to DIR, exit\n"
               "  --api-sock PATH      serve the REST API on this Unix socket\n"
               "  --config-file FILE   the machine as JSON (GET /vm/config's format); boots at "
               "once\n"
               "  --no-api             no API socket (needs --kernel or --config-file)\n"
               "  --http-api-max-payload-size N  largest API request body (default 51200)\n"
               "  --no-seccomp         no seccomp filters (each thread role has one by default;\n"
               "                       a forbidden system call ends the process with 148)\n"
               "  --level LEVEL        log level: Error, Warning, Info (default), Debug, Off\n"
               "  --log-path PATH      write log lines to PATH (file or named pipe)\n"
               "  --show-level         show the level in log lines (default)\n"
               "  --show-log-origin    show file:line in log lines (default)\n"
               "  --metrics-path PATH  write a JSON metrics line every 60 s to PATH\n"
               "  --id ID              instance id shown in log lines and GET /\n"
               "  --describe-snapshot FILE  print a snapshot state file's version and contents\n"
               "  --base-file MEM --diff-file DIFF  merge a Diff snapshot's memory file over "
               "the\n"
               "                       memory file it follows (MEM is rewritten), then exit\n"
               "  --help               show this help\n"
               "  --version            show the version\n"
               "\n"
               "Exit codes: 0 guest reset or shutdown, 1 error, 152 bad configuration,\n"
               "153 bad arguments.\n";
}

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

static int set_str(char **field, const char *v, struct error *err)
{
        return vmm_config_set_str(field, v) ? error_set(err, -ENOMEM, "out of memory") : 0;
}

/* Options that describe the machine (they conflict with --config-file). */
static const char *machine_option_name(int opt)
{
        switch (opt) {
        case OPT_KERNEL:
                return "--kernel";
        case OPT_INITRD:
                return "--initrd";
        case OPT_CMDLINE:
                return "--cmdline";
        case OPT_MEM:
                return "--mem";
        case OPT_VCPUS:
                return "--vcpus";
        case OPT_CPU_HIDE:
                return "--cpu-hide";
        case OPT_HUGE_PAGES:
                return "--huge-pages";
        case OPT_DRIVE:
                return "--drive";
        case OPT_NET:
                return "--net";
        case OPT_VSOCK:
                return "--vsock";
        case OPT_ENTROPY:
                return "--entropy";
        case OPT_BALLOON:
                return "--balloon";
        case OPT_CONFIDENTIAL:
                return "--confidential";
        default:
                return NULL;
        }
}

static int apply(int opt, const char *arg, struct cli_opts *o, struct error *err)
{
        unsigned long long v;
        int r;

        if (!o->machine_option)
                o->machine_option = machine_option_name(opt);
        switch (opt) {
        case OPT_KERNEL:
                return set_str(&o->cfg.boot.kernel_image_path, arg, err);
        case OPT_INITRD:
                return set_str(&o->cfg.boot.initrd_path, arg, err);
        case OPT_CMDLINE:
                return set_str(&o->cfg.boot.boot_args, arg, err);
        case OPT_MEM:
                r = parse_uint("mem", arg, UINT64_MAX >> 20, &v, err);
                if (!r)
                        o->cfg.machine.mem_size_mib = v;
                return r;
        case OPT_VCPUS:
                r = parse_uint("vcpus", arg, 0xffffffffull, &v, err);
                if (!r)
                        o->cfg.machine.vcpu_count = (unsigned)v;
                return r;
        case OPT_CPU_HIDE:
                return set_str(&o->cfg.machine.cpu_hide, arg, err);
        case OPT_HUGE_PAGES:
                o->cfg.machine.huge_pages = true;
                return 0;
        case OPT_SERIAL_OUT:
                return set_str(&o->cfg.serial_out_path, arg, err);
        case OPT_NO_SERIAL_IN:
                o->cfg.serial_in = false;
                return 0;
        case OPT_BOOT_TIMER:
                o->cfg.boot_timer = true;
                return 0;
        case OPT_DUMP_PLATFORM:
                o->dump_platform_dir = arg;
                return 0;
        case OPT_LEVEL:
                if (log_level_parse(arg, &o->level))
                        return error_set(err, -EINVAL,
                                         "--level: '%s' is not one of Error, Warning, Info, "
                                         "Debug, Off",
                                         arg);
                o->level_set = true;
                o->cfg.logger.present = true;
                o->cfg.logger.has_level = true;
                o->cfg.logger.level = o->level;
                return 0;
        case OPT_LOG_PATH:
                o->cfg.logger.present = true;
                return set_str(&o->cfg.logger.log_path, arg, err);
        case OPT_SHOW_LEVEL:
                o->cfg.logger.present = true;
                o->cfg.logger.has_show_level = true;
                o->cfg.logger.show_level = true;
                return 0;
        case OPT_SHOW_LOG_ORIGIN:
                o->cfg.logger.present = true;
                o->cfg.logger.has_show_log_origin = true;
                o->cfg.logger.show_log_origin = true;
                return 0;
        case OPT_METRICS_PATH:
                o->cfg.metrics.present = true;
                return set_str(&o->cfg.metrics.metrics_path, arg, err);
        case OPT_API_SOCK:
                o->api_sock = arg;
                return 0;
        case OPT_CONFIG_FILE:
                o->config_file = arg;
                return 0;
        case OPT_NO_API:
                o->no_api = true;
                return 0;
        case OPT_NO_SECCOMP:
                o->no_seccomp = true;
                return 0;
        case OPT_SECCOMP_TEST_VIOLATION:
                /* Tests only (tests/kvm/test_seccomp.py), hence not in --help: proves that a
                 * role's filter is installed and that a violation ends the process. */
                if (strcmp(arg, "vmm") && strcmp(arg, "api") && strcmp(arg, "vcpu"))
                        return error_set(err, -EINVAL,
                                         "--seccomp-test-violation: '%s' is not one of vmm, "
                                         "api, vcpu",
                                         arg);
                o->seccomp_test_violation = arg;
                return 0;
        case OPT_MAX_PAYLOAD:
                r = parse_uint("http-api-max-payload-size", arg, 1ull << 30, &v, err);
                if (!r && v == 0)
                        r = error_set(err, -EINVAL,
                                      "--http-api-max-payload-size: must be at least 1");
                if (!r)
                        o->max_payload = (size_t)v;
                return r;
        case OPT_ID:
                if (!*arg || strlen(arg) > 64)
                        return error_set(err, -EINVAL, "--id: must be 1 to 64 characters");
                o->instance_id = arg;
                return 0;
        case OPT_DRIVE:
                return add_drive(o, arg, err);
        case OPT_NET:
                return add_net(o, arg, err);
        case OPT_VSOCK:
                o->cfg.vsock.present = true;
                r = for_each_item("vsock", arg, o, NULL, vsock_item, err);
                if (!r && (!o->cfg.vsock.uds_path || !o->cfg.vsock.guest_cid))
                        r = error_set(err, -EINVAL, "--vsock: cid=N and uds=PATH are required");
                return r;
        case OPT_ENTROPY:
                o->cfg.entropy.present = true;
                if (!arg)
                        return 0;
                if (strncmp(arg, "access-platform=", 16) != 0)
                        return error_set(err, -EINVAL, "--entropy: unknown item '%s'", arg);
                return ap_item("entropy", arg + 16, &o->cfg.entropy.access_platform, err);
        case OPT_CONFIDENTIAL:
                if (cc_platform_parse(arg, &o->cfg.confidential.platform) ||
                    o->cfg.confidential.platform == CC_PLATFORM_NONE)
                        return error_set(err, -EINVAL,
                                         "--confidential: '%s' is not one of sev, pef, s390-pv",
                                         arg);
                return 0;
        case OPT_BALLOON:
                o->cfg.balloon.present = true;
                return for_each_item("balloon", arg, o, NULL, balloon_item, err);
        case OPT_DESCRIBE_SNAPSHOT:
                o->describe_snapshot = arg;
                return 0;
        case OPT_BASE_FILE:
                o->merge_base = arg;
                return 0;
        case OPT_DIFF_FILE:
                o->merge_diff = arg;
                return 0;
        case OPT_HELP:
                o->help = true;
                return 0;
        case OPT_VERSION:
                o->version = true;
                return 0;
        default:
                return error_set(err, -EINVAL, "internal: unhandled option %d", opt);
        }
}

int cli_parse(int argc, char **argv, struct cli_opts *o, struct error *err)
{
        int opt, r;

        memset(o, 0, sizeof(*o));
        vmm_config_init(&o->cfg);
        o->level = LOG_LEVEL_INFO;
        o->max_payload = CLI_DEFAULT_MAX_PAYLOAD;
        opterr = 0;
        /* 0, not 1: glibc then also forgets its position inside a "-abc" cluster, which an
         * earlier parse that stopped on an error may have left pointing into its argv. */
        optind = 0;
        /* "+" stops at the first non-option; "-" would permute. Long options only. */
        while ((opt = getopt_long(argc, argv, "+:", long_opts, NULL)) != -1) {
                /* Inside a cluster ("-xy") optind has not moved on: name the letter. (A long
                 * option given a value it does not take sets optopt to its code, >= 256.) */
                if (opt == '?' && optopt > 0 && optopt < 256)
                        return error_set(err, -EINVAL, "unknown option '-%c'", optopt);
                if (opt == '?')
                        return error_set(err, -EINVAL, "unknown option '%s'", argv[optind - 1]);
                if (opt == ':')
                        return error_set(err, -EINVAL, "option '%s' needs a value",
                                         argv[optind - 1]);
                r = apply(opt, optarg, o, err);
                if (r)
                        return r;
        }
        if (optind < argc)
                return error_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);
        if (!o->merge_base != !o->merge_diff)
                return error_set(err, -EINVAL, "--base-file and --diff-file go together");
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
