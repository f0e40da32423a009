/*
 * An address space of device windows: one type serves both port I/O and MMIO.
 *
 * Devices register {base, len, ops, opaque}; overlapping windows are refused. Dispatch
 * hands the device an offset relative to its own window, so a device can be relocated and
 * tested at offset 0. Accesses that hit no window are counted and ignored; reads of them
 * return all ones, as on real hardware. Registration happens while the machine is built,
 * before any vCPU runs; dispatch is then lock-free and may run on any vCPU thread.
 */
#ifndef DEVICES_BUS_H
#define DEVICES_BUS_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

struct bus_ops {
        /* len is 1..8; data is little-endian guest data. */
        void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
        void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct bus_window {
        const char *name;
        uint64_t base;
        uint64_t len;
        const struct bus_ops *ops;
        void *opaque;
};

struct bus;

int bus_create(const char *name, struct bus **out) MUST_CHECK;
void bus_destroy(struct bus *bus);

/* -EEXIST (with a message naming both windows) if the range overlaps a registered one. */
int bus_register(struct bus *bus, const struct bus_window *win, struct error *err) MUST_CHECK;

/* Returns true when a device handled the access; false means it was counted as unhandled. */
bool bus_read(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
bool bus_write(struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

uint64_t bus_unhandled_count(const struct bus *bus);
unsigned bus_window_count(const struct bus *bus);
const struct bus_window *bus_window_at(const struct bus *bus, unsigned i);

#endif
