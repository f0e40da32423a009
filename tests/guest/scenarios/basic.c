/* Scenarios that need nothing but the console and the boot path. */
#include "scenarios.h"

#include "arch/x86/layout.h"
#include "cmdline.h"
#include "io.h"
#include "print.h"

#define BOOT_TIMER_MAGIC 123

void scenario_hello(const struct boot_info *bi)
{
        (void)bi;
        print("probe: hello from the probe guest\n");
}

/* The VMM logs the time since InstanceStart when it sees this write. */
void scenario_timer(const struct boot_info *bi)
{
        (void)bi;
        mmio_write8(X86_BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC);
}

/* One CPUID leaf and subleaf: r[] = EAX, EBX, ECX, EDX. */
static void cpuid_regs(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
        __asm__ __volatile__("cpuid"
                             : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                             : "a"(leaf), "c"(subleaf));
}

/* One CPUID leaf as the guest sees it, named. */
static void print_cpuid(const char *name, uint32_t leaf, uint32_t subleaf)
{
        uint32_t r[4];

        cpuid_regs(leaf, subleaf, r);
        print("probe: cpuid %s eax=%x ebx=%x ecx=%x edx=%x\n", name, (unsigned)r[0], (unsigned)r[1],
              (unsigned)r[2], (unsigned)r[3]);
}

/* The CPU topology the boot processor reads (machine-config smt): the vendor, leaf 1's
 * logical count and HTT, leaf 4's cores and cache sharing (Intel), leaf 0xB's thread and core
 * levels, leaf 0x8000001E's core and threads (AMD). */
void scenario_topology(const struct boot_info *bi)
{
        (void)bi;
        print_cpuid("0", 0, 0);
        print_cpuid("1", 1, 0);
        print_cpuid("4.0", 4, 0);
        print_cpuid("0xb.0", 0xb, 0);
        print_cpuid("0xb.1", 0xb, 1);
        print_cpuid("0x8000001e", 0x8000001e, 0);
}

static void cpuid_line(uint32_t leaf, uint32_t subleaf)
{
        uint32_t r[4];

        cpuid_regs(leaf, subleaf, r);
        print("probe: cpuid %x %x: %x %x %x %x\n", leaf, subleaf, r[0], r[1], r[2], r[3]);
}

/* What the guest's CPUID says (the VMM's table after its CPU template), one line per leaf and
 * subleaf: "probe: cpuid LEAF SUBLEAF: EAX EBX ECX EDX" in hexadecimal. With probe.msr=0xN
 * (hexadecimal) also "probe: msr N: VALUE" for that MSR, which the test names only when the
 * CPU has it (an absent one faults). */
void scenario_cpuid(const struct boot_info *bi)
{
        static const uint32_t leaves[][2] = {
            {0x0, 0}, {0x1, 0},        {0x7, 0},        {0x7, 1},        {0xd, 0},
            {0xd, 1}, {0x80000001, 0}, {0x80000007, 0}, {0x80000008, 0},
        };
        const char *v;
        size_t len;

        for (unsigned i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
                cpuid_line(leaves[i][0], leaves[i][1]);
        v = cmdline_find(bi->cmdline, "probe.msr", &len);
        if (v && len > 2 && v[0] == '0' && v[1] == 'x') {
                uint32_t msr = 0, lo, hi;

                for (size_t i = 2; i < len; i++) {
                        char ch = v[i];

                        msr = msr << 4 | (uint32_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
                }
                __asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
                print("probe: msr %x: %llx\n", msr, U64(hi) << 32 | lo);
        }
        print("probe: cpuid done\n");
}
