/* Scenarios that need nothing but the console and the boot path. */
#include "scenarios.h"

#include "arch/x86/layout.h"
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

/* One CPUID leaf as the guest sees it. */
static void print_cpuid(const char *name, uint32_t leaf, uint32_t subleaf)
{
        uint32_t a, b, c, d;

        __asm__ __volatile__("cpuid"
                             : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                             : "a"(leaf), "c"(subleaf));
        print("probe: cpuid %s eax=%x ebx=%x ecx=%x edx=%x\n", name, (unsigned)a, (unsigned)b,
              (unsigned)c, (unsigned)d);
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
