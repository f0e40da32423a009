#include "serial.h"

#include "arch/x86/layout.h"
#include "io.h"

/* Bounded waits: a UART that never reports THRE must not hang the probe forever (output is
 * then lost, but shutdown still happens). */
#define SERIAL_SPIN_LIMIT 100000u

uint8_t serial_read_reg(unsigned reg)
{
        return inb((uint16_t)(X86_COM1_PORT + reg));
}

void serial_write_reg(unsigned reg, uint8_t v)
{
        outb((uint16_t)(X86_COM1_PORT + reg), v);
}

void serial_init(void)
{
        serial_write_reg(UART_IER, 0);
        serial_write_reg(UART_LCR, 0x80); /* DLAB, to reach the divisor */
        serial_write_reg(UART_DLL, 1);    /* 115200 baud */
        serial_write_reg(UART_DLM, 0);
        serial_write_reg(UART_LCR, 0x03); /* 8N1, DLAB off */
        serial_write_reg(UART_FCR, 0xc7); /* enable and clear both FIFOs, 14-byte trigger */
        /* DTR, RTS and OUT2: on PC wiring OUT2 gates the UART's interrupt line. */
        serial_write_reg(UART_MCR, 0x0b);
}

static void wait_lsr(uint8_t bit)
{
        for (unsigned i = 0; i < SERIAL_SPIN_LIMIT; i++)
                if (serial_read_reg(UART_LSR) & bit)
                        return;
}

void serial_putc(char c)
{
        wait_lsr(UART_LSR_THRE);
        serial_write_reg(UART_THR, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                serial_putc(s[i]);
}

void serial_flush(void)
{
        wait_lsr(UART_LSR_TEMT);
}
