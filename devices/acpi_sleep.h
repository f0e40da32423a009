/*
 * The sleep control and status registers of a hardware-reduced ACPI platform (ACPI 6.3,
 * 4.8.3.7 and 4.8.3.8): how an OS enters a sleep state when the FADT has no PM1 blocks.
 * The FADT's SLEEP_CONTROL_REG and SLEEP_STATUS_REG point at this device and the DSDT's \_S5
 * names the sleep type that means "soft off"; Linux's poweroff then writes SLP_TYP = S5 with
 * SLP_EN to the control register, which ends the VM (Cloud Hypervisor's shutdown device
 * works the same way). One 2-byte window: control at offset 0, status at offset 1.
 *
 * No other sleep state is offered: a request for one is refused and answered at once with
 * WAK_STS, so an OS waiting for the wake-up does not spin forever.
 */
#ifndef DEVICES_ACPI_SLEEP_H
#define DEVICES_ACPI_SLEEP_H

#include <stdint.h>

#include "bus.h"

#define ACPI_SLEEP_REGS_LEN    2
#define ACPI_SLEEP_CONTROL_OFF 0
#define ACPI_SLEEP_STATUS_OFF  1

/* Register bits (ACPI 6.3, tables 4-19 and 4-20). */
#define ACPI_SLEEP_TYP_SHIFT 2
#define ACPI_SLEEP_TYP_MASK  0x1c
#define ACPI_SLEEP_EN        0x20
#define ACPI_SLEEP_WAK_STS   0x80

struct acpi_sleep_config {
        unsigned s5_type;                /* SLP_TYP of S5: the first value of the DSDT's \_S5 */
        void (*power_off)(void *opaque); /* the guest entered S5 */
        void *opaque;
};

struct acpi_sleep;

int acpi_sleep_create(const struct acpi_sleep_config *cfg, struct acpi_sleep **out) MUST_CHECK;
void acpi_sleep_destroy(struct acpi_sleep *s);
const struct bus_ops *acpi_sleep_ops(void);

/* Power-off requests seen, and requests for sleep states this platform does not offer. */
uint64_t acpi_sleep_power_off_count(struct acpi_sleep *s);
uint64_t acpi_sleep_refused_count(struct acpi_sleep *s);

#endif
