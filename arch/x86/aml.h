/*
 * A small AML (ACPI Machine Language) encoder: just what a static DSDT describing a few
 * devices needs (ACPI 6.3, chapter 20 "AML Specification" and 6.4 "Resource Data Types").
 *
 * The builder appends to a growing buffer. Errors are sticky: every call after the first
 * failure does nothing, and the caller checks `err` once at the end, so table generators read
 * as a straight list of objects instead of a ladder of error checks.
 *
 * Package lengths are variable-size (1-4 bytes) and precede their contents, so an object
 * with a PkgLength is opened with *_begin(), which returns a mark, and closed with the
 * matching *_end(mark), which inserts the encoded length once the contents are known.
 */
#ifndef ARCH_X86_AML_H
#define ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
        uint8_t *buf;
        size_t len;
        size_t cap;
        int err; /* first failure: -ENOMEM, -EINVAL (bad name/id), -E2BIG (package too long) */
};

/* Extended Interrupt descriptor flags (ACPI 6.3, 6.4.3.6). */
#define AML_IRQ_CONSUMER     (1u << 0)
#define AML_IRQ_EDGE         (1u << 1)
#define AML_IRQ_ACTIVE_LOW   (1u << 2)
#define AML_IRQ_SHARED       (1u << 3)
#define AML_IRQ_WAKE_CAPABLE (1u << 4)

void aml_init(struct aml *a);
void aml_free(struct aml *a);

/* True when s is a valid 1-4 character NameSeg ([A-Z_][A-Z0-9_]*); seg gets it padded
 * with '_' to 4 characters as AML stores it. */
bool aml_name_seg(const char *s, size_t n, char seg[4]);

/* Raw bytes, for callers that know the encoding. */
void aml_bytes(struct aml *a, const void *p, size_t n);

/* NameString: an optional root prefix '\' or parent prefixes '^', then NameSegs separated by
 * '.', e.g. "\\_SB", "_HID", "\\_SB.COM1". */
void aml_name_string(struct aml *a, const char *path);

/* Integer constant in its shortest encoding (Zero/One/Byte/Word/DWord/QWord). */
void aml_integer(struct aml *a, uint64_t v);
/* Null-terminated ASCII string constant (printable characters only). */
void aml_string(struct aml *a, const char *s);
/* Compressed EISA id ("PNP0501") as a DWord constant, like ASL's EISAID(). */
void aml_eisaid(struct aml *a, const char *id);

/* Name(path, <data object>): writes NameOp and the name; the caller writes the object. */
void aml_name(struct aml *a, const char *path);

/* Package(n) { ... }: the caller writes exactly nr_elements data objects in between. */
size_t aml_package_begin(struct aml *a, uint8_t nr_elements);
void aml_package_end(struct aml *a, size_t mark);

/* Scope(path) { ... } and Device(path) { ... }. */
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
void aml_scope_end(struct aml *a, size_t mark);
void aml_device_end(struct aml *a, size_t mark);

/* Method(path, args, NotSerialized) { ... } and, inside one, Notify(path, value). */
size_t aml_method_begin(struct aml *a, const char *path, unsigned args);
void aml_method_end(struct aml *a, size_t mark);
void aml_notify(struct aml *a, const char *path, uint64_t value);

/* ResourceTemplate() { ... }: a Buffer whose bytes are resource descriptors; the end
 * closes it with an End Tag. */
size_t aml_restemplate_begin(struct aml *a);
void aml_restemplate_end(struct aml *a, size_t mark);

/* Resource descriptors, only valid inside a ResourceTemplate. */
void aml_res_io16(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, unsigned irq); /* ISA IRQ 0-15: edge, high, excl. */
void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len);
void aml_res_interrupt(struct aml *a, unsigned flags, uint32_t gsi);

#endif
