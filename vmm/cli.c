#include "cli.h"

#include <errno.h>
#include <getopt.h>
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
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

const char *cli_usage(void)
{
        return "Usage: vmm --kernel FILE [options]\n"
               "\n"
               "Boot a microVM from the command line.\n"
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
               "  --dump-platform DIR  write the generated ACPI tables and MPTable to DIR, exit\n"
               "  --level LEVEL        log level: Error, Warning, Info (default), Debug, Off\n"
               "  --id ID              instance id shown in log lines\n"
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

static int set_str(char **field, const char *v, struct error *err)
{
        return vmm_config_set_str(field, v) ? error_set(err, -ENOMEM, "out of memory") : 0;
}

static int apply(int opt, const char *arg, struct cli_opts *o, struct error *err)
{
        unsigned long long v;
        int r;

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
                return 0;
        case OPT_ID:
                if (!*arg || strlen(arg) > 64)
                        return error_set(err, -EINVAL, "--id: must be 1 to 64 characters");
                o->instance_id = arg;
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
        return 0;
}

void cli_opts_free(struct cli_opts *o)
{
        vmm_config_free(&o->cfg);
}
