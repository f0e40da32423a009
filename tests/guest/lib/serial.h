/*
 * COM1, an 8250/16550 UART at X86_COM1_PORT: polled output, plus register names for the
 * scenarios that exercise its interrupts.
 */
#ifndef PROBE_SERIAL_H
#define PROBE_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#define UART_RBR 0 /* read: receive buffer (DLAB=0) */
#define UART_THR 0 /* write: transmit holding (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable (DLAB=0) */
#define UART_DLM 1 /* divisor latch high (DLAB=1) */
#define UART_IIR 2 /* read: interrupt identification */
#define UART_FCR 2 /* write: FIFO control */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5

#define UART_IER_RDI       0x01 /* received data available */
#define UART_IER_THRI      0x02 /* transmit holding register empty */
#define UART_IIR_NO_INT    0x01
#define UART_IIR_ID_MASK   0x0f
#define UART_IIR_THRI      0x02
#define UART_IIR_RDI       0x04
#define UART_IIR_FIFO_BITS 0xc0 /* both set when the FIFOs are enabled */
#define UART_LSR_DR        0x01 /* a received byte is waiting */
#define UART_LSR_THRE      0x20 /* the transmit holding register can take a byte */
#define UART_LSR_TEMT      0x40 /* transmitter completely idle */

/* 115200 8N1, FIFOs on and cleared, interrupts off. */
void serial_init(void);
/* Writes one byte, waiting for THRE first. No newline translation: lines end in "\n". */
void serial_putc(char c);
void serial_write(const char *s, size_t n);
/* Waits until every written byte has left the transmitter (before a reset). */
void serial_flush(void);
uint8_t serial_read_reg(unsigned reg);
void serial_write_reg(unsigned reg, uint8_t v);

#endif
