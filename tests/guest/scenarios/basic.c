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

static void cpuid_line(uint32_t leaf, uint32_t subleaf)
{
        uint32_t a, b, c, d;

        __asm__ __volatile__("cpuid"
                             : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                             : "a"(leaf), "c"(subleaf));
        print("probe: cpuid %x %x: %x %x %x %x\n", leaf, subleaf, a, b, c, d);
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
