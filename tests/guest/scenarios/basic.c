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
