/*
 * Constants boot/entry.S shares with C code: the selectors of the probe's own GDT and the
 * number of application-processor stacks.
 */
#ifndef PROBE_BOOT_H
#define PROBE_BOOT_H

#define PROBE_CS64 0x08 /* 64-bit code */
#define PROBE_DS   0x10 /* flat 4 GiB data */
#define PROBE_CS32 0x18 /* flat 4 GiB 32-bit code, for the 32-bit entries and AP start */

#define PROBE_MAX_APS 15 /* AP stacks in .bss: up to 16 CPUs in all */

#endif
