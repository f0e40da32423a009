/*
 * Interrupt-driven COM1 scenarios: they check the VMM's UART interrupt sources and the
 * IOAPIC -> local APIC delivery path.
 *   echo        receive-data interrupts: read one line from the host, print it back.
 *   serial-irq  the THR-empty interrupt, and the IIR value that identifies it.
 *   serial-flood  as fast as it can, FLOOD_LINES lines of 64 bytes
 *                 ("probe: flood NNNN " and '.' up to the newline), for the output rate
 *                 limiter (the VMM drops what is over it, the guest never waits).
 */
#include "scenarios.h"

#include "apic.h"
#include "arch/x86/layout.h"
#include "cpu.h"
#include "idt.h"
#include "probe.h"
#include "serial.h"

#define COM1_VECTOR 0x24
#define FLOOD_LINES 256
#define LINE_MAX    256
/* About 0.3-1 s depending on the TSC frequency; the interrupt comes at once when it works. */
#define THRE_WAIT_TSC 1000000000ull

static char line[LINE_MAX];
static volatile uint32_t line_len;
static volatile uint32_t line_done;
static volatile uint32_t line_overflow;

static volatile uint32_t thre_irqs;
static volatile uint8_t first_iir;

/* Sets up the local APIC and routes COM1 to COM1_VECTOR with handler fn. */
static struct ioapic_pin route_com1(const struct boot_info *bi, isr_handler fn)
{
        struct acpi_madt madt;

        scenario_madt(bi, &madt);
        apic_init(madt.lapic_addr);
        idt_set_handler(COM1_VECTOR, fn);
        return scenario_route_isa_irq(&madt, X86_COM1_IRQ, COM1_VECTOR);
}

static void echo_isr(struct isr_frame *f)
{
        (void)f;
        while (serial_read_reg(UART_LSR) & UART_LSR_DR) {
                char c = (char)serial_read_reg(UART_RBR);

                if (line_done)
                        continue; /* drain what follows the line */
                if (c == '\n' || c == '\r')
                        line_done = 1;
                else if (line_len < LINE_MAX - 1)
                        line[line_len++] = c;
                else
                        line_overflow = 1;
        }
}

void scenario_echo(const struct boot_info *bi)
{
        struct ioapic_pin com1 = route_com1(bi, echo_isr);

        print("probe: echo ready\n");
        /* Input that arrived before this point is still in the FIFO and raises the
         * interrupt as soon as it is enabled. */
        serial_write_reg(UART_IER, UART_IER_RDI);
        for (;;) {
                cpu_cli();
                if (line_done)
                        break;
                cpu_sti_hlt();
        }
        serial_write_reg(UART_IER, 0);
        ioapic_mask(com1.ioapic, com1.pin);
        line[line_len] = '\0';
        print("probe: got \"%s\"\n", line);
        if (line_overflow)
                probe_fail("line longer than %u bytes", LINE_MAX - 1);
}

static void thre_isr(struct isr_frame *f)
{
        /* Reading IIR acknowledges a THRE interrupt; clearing IER keeps it from coming back
         * with every byte printed afterwards. */
        uint8_t iir = serial_read_reg(UART_IIR);

        (void)f;
        if (!thre_irqs)
                first_iir = iir;
        thre_irqs++;
        serial_write_reg(UART_IER, 0);
}

void scenario_serial_irq(const struct boot_info *bi)
{
        struct ioapic_pin com1 = route_com1(bi, thre_isr);
        uint64_t t0;
        uint8_t iir;

        /* An empty transmitter raises the interrupt as soon as it is enabled. */
        serial_flush();
        serial_write_reg(UART_IER, UART_IER_THRI);
        cpu_sti();
        t0 = cpu_rdtsc();
        while (!thre_irqs && cpu_rdtsc() - t0 < THRE_WAIT_TSC)
                cpu_pause();
        cpu_cli();
        serial_write_reg(UART_IER, 0);
        ioapic_mask(com1.ioapic, com1.pin);
        if (!thre_irqs)
                probe_fail("no THR-empty interrupt");
        iir = first_iir;
        print("probe: serial iir 0x%x\n", iir);
        if ((iir & UART_IIR_ID_MASK) != UART_IIR_THRI)
                probe_fail("IIR 0x%x does not identify a THR-empty interrupt", iir);
        if ((iir & UART_IIR_FIFO_BITS) != UART_IIR_FIFO_BITS)
                probe_fail("IIR 0x%x lacks the FIFO-enabled bits", iir);
}

void scenario_serial_flood(const struct boot_info *bi)
{
        (void)bi;
        for (unsigned i = 0; i < FLOOD_LINES; i++)
                print("probe: flood %04u ..............................................\n", i);
}
