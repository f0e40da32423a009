/*
 * The `smp` scenario: start every application processor listed in the MADT with INIT and
 * two STARTUP IPIs through a real-mode trampoline, and wait for each to report from long
 * mode.
 */
#include "scenarios.h"

#include "apic.h"
#include "boot.h"
#include "cpu.h"
#include "probe.h"
#include "str.h"

#define TRAMPOLINE_ADDR 0x10000ull
#define TRAMPOLINE_PAGE 0x1000ull
#define SIPI_VECTOR     (TRAMPOLINE_ADDR >> 12)
/* KVM needs no 10 ms wait after INIT (Linux skips it on modern CPUs too): a short pause. */
#define IPI_PAUSES 1000u
/* About 3-10 s depending on the TSC frequency: generous for emulated guests. */
#define AP_WAIT_TSC 10000000000ull

extern const char ap_trampoline_start[], ap_trampoline_end[];

static volatile uint32_t aps_started;  /* numbers the APs as they arrive */
static volatile uint32_t aps_reported; /* counts finished report lines */

static void pause_a_little(void)
{
        for (unsigned i = 0; i < IPI_PAUSES; i++)
                cpu_pause();
}

static void ap_report(unsigned index)
{
        uint32_t cpu = atomic_fetch_add32(&aps_started, 1) + 1;

        (void)index;
        print("probe: cpu %u up (apic %u)\n", (unsigned)cpu, (unsigned)lapic_id());
        /* Counted after the line is out, so the BSP's summary cannot overtake it. */
        atomic_fetch_add32(&aps_reported, 1);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
        return a < b + blen && b < a + alen;
}

static void place_trampoline(const struct boot_info *bi)
{
        uint64_t size = (uint64_t)(ap_trampoline_end - ap_trampoline_start);
        uint64_t cmdline_len = str_len(bi->cmdline) + 1;

        if (size > TRAMPOLINE_PAGE)
                probe_fail("AP trampoline larger than a page");
        if (!bootinfo_mem_is(bi, TRAMPOLINE_ADDR, TRAMPOLINE_PAGE, X86_E820_RAM))
                probe_fail("trampoline page 0x%llx is not RAM", U64(TRAMPOLINE_ADDR));
        if (bi->cmdline_addr &&
            overlaps(bi->cmdline_addr, cmdline_len, TRAMPOLINE_ADDR, TRAMPOLINE_PAGE))
                probe_fail("trampoline page 0x%llx holds the command line", U64(TRAMPOLINE_ADDR));
        if (bi->has_initrd &&
            overlaps(bi->initrd_addr, bi->initrd_size, TRAMPOLINE_ADDR, TRAMPOLINE_PAGE))
                probe_fail("trampoline page 0x%llx holds the initrd", U64(TRAMPOLINE_ADDR));
        memcpy((void *)(uintptr_t)TRAMPOLINE_ADDR, ap_trampoline_start, size);
}

static void start_ap(uint32_t apic_id)
{
        if (!lapic_send_ipi(apic_id, LAPIC_ICR_INIT | LAPIC_ICR_LEVEL_ASSERT))
                probe_fail("INIT IPI to apic %u not delivered", (unsigned)apic_id);
        pause_a_little();
        for (int i = 0; i < 2; i++) {
                if (!lapic_send_ipi(apic_id, LAPIC_ICR_STARTUP | SIPI_VECTOR))
                        probe_fail("STARTUP IPI to apic %u not delivered", (unsigned)apic_id);
                pause_a_little();
        }
}

void scenario_smp(const struct boot_info *bi)
{
        struct acpi_madt madt;
        uint32_t bsp;
        unsigned aps = 0;
        bool bsp_listed = false;
        uint64_t t0;

        scenario_madt(bi, &madt);
        if (madt.cpus > ACPI_MAX_CPUS || madt.cpus > PROBE_MAX_APS + 1)
                probe_fail("%u cpus, more than the probe supports", madt.cpus);
        apic_init(madt.lapic_addr);
        bsp = lapic_id();
        for (unsigned i = 0; i < madt.cpus; i++) {
                if (madt.apic_ids[i] == bsp)
                        bsp_listed = true;
                else
                        aps++;
        }
        if (!bsp_listed)
                probe_fail("BSP apic %u not in the MADT", (unsigned)bsp);

        if (aps) {
                place_trampoline(bi);
                probe_set_ap_fn(ap_report);
                for (unsigned i = 0; i < madt.cpus; i++)
                        if (madt.apic_ids[i] != bsp)
                                start_ap(madt.apic_ids[i]);
                t0 = cpu_rdtsc();
                while (atomic_load32(&aps_reported) < aps && cpu_rdtsc() - t0 < AP_WAIT_TSC)
                        cpu_pause();
        }
        print("probe: cpus %u started\n", 1 + (unsigned)atomic_load32(&aps_reported));
        if (atomic_load32(&aps_reported) != aps)
                probe_fail("%u of %u application processors started",
                           (unsigned)atomic_load32(&aps_reported), aps);
}
