/*
 * i8042 PS/2 keyboard controller: enough of the controller and keyboard command set for
 * Linux's i8042/atkbd drivers, the 0xFE "pulse reset line" command that guests use to
 * reboot (the VMM ends the VM), and Ctrl-Alt-Del injection. Two bus windows: data port
 * (0x60) and command/status port (0x64), each a 1-byte window at offset 0.
 */
#ifndef DEVICES_I8042_H
#define DEVICES_I8042_H

#include <stdbool.h>

#include "bus.h"
#include "common/snapbuf.h"
#include "irq.h"

struct i8042_config {
        struct irq_line kbd_irq;     /* ISA IRQ 1 */
        void (*reset)(void *opaque); /* the guest pulsed the CPU reset line */
        void *opaque;
};

struct i8042;

int i8042_create(const struct i8042_config *cfg, struct i8042 **out) MUST_CHECK;
void i8042_destroy(struct i8042 *k);
const struct bus_ops *i8042_data_ops(void);
const struct bus_ops *i8042_cmd_ops(void);

/* Queues Ctrl, Alt, Del presses and releases (in the scancode set the guest selected) and
 * raises IRQ 1. -EBUSY when the output buffer cannot take the whole sequence. */
int i8042_send_ctrl_alt_del(struct i8042 *k) MUST_CHECK;

uint64_t i8042_reset_count(struct i8042 *k);

/* Snapshots: the configuration byte, status, output port, commands waiting for their data
 * byte, the scancode set and the output buffer. restore checks what it reads (-EINVAL with
 * the reader's error, the device unchanged). */
void i8042_save(struct i8042 *k, struct snapbuf_writer *w);
int i8042_restore(struct i8042 *k, struct snapbuf_reader *r) MUST_CHECK;

#endif
