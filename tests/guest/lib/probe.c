#include "probe.h"

#include <stdbool.h>

#include "acpi.h"
#include "arch/x86/layout.h"
#include "bootinfo.h"
#include "cmdline.h"
#include "cpu.h"
#include "idt.h"
#include "io.h"
#include "scenarios.h"
#include "serial.h"
#include "str.h"

#define NAME_SIZE   64
#define REASON_SIZE 192
#define I8042_RESET 0xfe

static char name[NAME_SIZE] = "hello";
static probe_ap_fn ap_fn;
static volatile uint32_t shutting_down;

void probe_set_ap_fn(probe_ap_fn fn)
{
        ap_fn = fn;
}

_Noreturn void probe_shutdown(void)
{
        struct acpi_root root;
        const struct acpi_sdt *fadt;

        cpu_cli();
        serial_flush();
        /* A fault in the ACPI walk below would come back here: go straight to the triple
         * fault then. */
        if (atomic_xchg32(&shutting_down, 1) == 0) {
                outb(X86_I8042_CMD_PORT, I8042_RESET);
                /* Still running: no i8042 (QEMU's microvm machine). */
                if (!acpi_open(bootinfo_get()->rsdp_addr, &root) &&
                    (fadt = acpi_find(&root, "FACP")))
                        acpi_fadt_reset(fadt);
        }
        idt_load_empty();
        __asm__ __volatile__("ud2");
        cpu_park();
}

static _Noreturn void vfail(bool locked, const char *fmt, va_list ap)
{
        char reason[REASON_SIZE];

        print_vbuf(reason, sizeof(reason), fmt, ap);
        for (char *p = reason; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        if (locked)
                print("probe: fail %s %s\n", name, reason);
        else
                print_unlocked("probe: fail %s %s\n", name, reason);
        probe_shutdown();
}

_Noreturn void probe_fail(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vfail(true, fmt, ap);
}

_Noreturn void probe_fail_unlocked(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vfail(false, fmt, ap);
}

_Noreturn void probe_main(unsigned path, uint64_t info_addr)
{
        const struct boot_info *bi;
        const struct scenario *s;
        const char *v;
        size_t len;

        serial_init();
        idt_init();
        bi = bootinfo_parse(path, info_addr);
        v = cmdline_find(bi->cmdline, "probe", &len);
        if (v) {
                /* A name too long for the buffer is cut; it cannot match a scenario then. */
                len = len < NAME_SIZE - 1 ? len : NAME_SIZE - 1;
                memcpy(name, v, len);
                name[len] = '\0';
        }
        print("probe: start %s via %s\n", name, bootinfo_path_name(path));
        if (bi->error)
                probe_fail("%s", bi->error);
        s = scenario_find(name);
        if (!s)
                probe_fail("unknown scenario");
        s->run(bi);
        print("probe: ok %s\n", name);
        probe_shutdown();
}

_Noreturn void probe_ap_main(unsigned index)
{
        idt_load();
        if (ap_fn)
                ap_fn(index);
        cpu_park();
}
