/*
 * An interrupt line as a device sees it: it raises or lowers a level and does not know
 * whether KVM_IRQ_LINE, an irqfd or a unit-test fake is behind it.
 */
#ifndef DEVICES_IRQ_H
#define DEVICES_IRQ_H

#include <stdbool.h>

struct irq_line {
        void (*set)(void *opaque, bool level);
        void *opaque;
};

static inline void irq_line_set(const struct irq_line *irq, bool level)
{
        if (irq->set)
                irq->set(irq->opaque, level);
}

/* An edge for edge-triggered inputs (ISA IRQs on the IOAPIC/PIC). */
static inline void irq_line_pulse(const struct irq_line *irq)
{
        irq_line_set(irq, true);
        irq_line_set(irq, false);
}

#endif
