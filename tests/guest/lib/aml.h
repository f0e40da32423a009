/*
 * A small, bounded AML walker for finding virtio-mmio devices in a DSDT the way Linux's
 * virtio_mmio ACPI probe does: Device objects whose _HID is the string "LNRO0005" and whose
 * _CRS is a resource template with a Memory32Fixed (or Memory32) window and an Interrupt
 * (Extended Interrupt or IRQ descriptor).
 *
 * It understands the object declarations a microVM DSDT is made of and skips what it does
 * not need by its package length: Scope, Device (nested), Name with constant data
 * (integers, strings, Buffer, Package: its first two integers are kept),
 * Method/If/Else/While/Field/IndexField/BankField/ Processor/PowerResource/ThermalZone (skipped
 * whole), OperationRegion with constant operands, Mutex, Event, Alias, External. Anything else ends
 * the walk of the enclosing list (reported in aml_result.stopped). It never executes control
 * methods, so a _HID or _CRS that is a Method is not seen. Bounds: nesting depth AML_MAX_DEPTH,
 * AML_MAX_DEVICES devices reported, every step consumes at least one byte of the table.
 */
#ifndef PROBE_AML_H
#define PROBE_AML_H

#include <stdbool.h>
#include <stdint.h>

#define AML_MAX_DEPTH   8
#define AML_MAX_DEVICES 32

struct aml_virtio {
        char name[5];  /* the Device's NameSeg */
        uint64_t base; /* Memory32Fixed base */
        uint32_t size; /* Memory32Fixed length */
        uint32_t gsi;  /* the first interrupt of the first Interrupt descriptor */
        bool has_irq;
        bool level;      /* level-triggered (else edge) */
        bool active_low; /* else active high */
};

struct aml_result {
        unsigned count; /* LNRO0005 devices with a usable _CRS (first AML_MAX_DEVICES kept) */
        struct aml_virtio dev[AML_MAX_DEVICES];
        unsigned devices; /* Device objects seen */
        /* The VM generation ID as Linux's vmgenid driver finds it: a device with _CID
         * "VM_Gen_Counter" and ADDR a Package of two integers (low, high 32 bits); and the
         * Generic Event Device (_HID "ACPI0013") whose interrupt announces new ones. */
        bool vmgenid;
        uint64_t vmgenid_addr;
        bool ged;
        struct aml_virtio ged_irq; /* its first interrupt (has_irq, gsi, level, active_low) */
        unsigned bad_crs;          /* LNRO0005 devices whose _CRS lacked a window */
        uint32_t stopped;          /* 0, or the offset where an unknown opcode ended a list */
        uint8_t stopped_op;        /* that opcode */
};

/* Walks the DSDT (or an SSDT) at addr, whose header was already checked. */
void aml_find_virtio(uint64_t table, struct aml_result *out);
/* The same walk for devices with another string _HID (e.g. "CVMM0001", the confidential
 * platform-call window); the result has the same shape (no interrupt is required). */
void aml_find_hid(uint64_t table, const char *hid, struct aml_result *out);

#endif
