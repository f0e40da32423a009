/*
 * Guest physical memory: anonymous host mappings split into regions around the 32-bit MMIO
 * hole, and the only place that turns a guest physical address into a host pointer.
 *
 * Every translation takes (address, length) and succeeds only when the whole range lies in
 * one RAM region, with overflow-safe arithmetic. Other modules never do pointer arithmetic on
 * guest addresses: they call guest_mem_read/write, or guest_mem_translate for a checked span.
 *
 * This is the trusted path (the VMM's own loaders and platform firmware models). Devices get
 * their own accessor built on top of it.
 */
#ifndef MEMORY_GUEST_MEM_H
#define MEMORY_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

typedef uint64_t gpa_t;

#define GUEST_MEM_MAX_REGIONS 2

enum guest_mem_flags {
        GUEST_MEM_HUGEPAGES = 1u << 0, /* back RAM with 2 MiB hugetlbfs pages */
        /* Map `file` privately instead of anonymous memory (a snapshot's memory file: pages
         * load lazily on first touch; guest writes stay in this process). */
        GUEST_MEM_FILE = 1u << 1,
        /* Anonymous memory whose pages another process provides through a userfaultfd
         * (memory/uffd.h): a page that is not present is not a zero page. Only recorded. */
        GUEST_MEM_USERFAULT = 1u << 2,
};

struct guest_mem_spec {
        uint64_t size;    /* bytes of RAM, multiple of 4 KiB (2 MiB with hugepages) */
        gpa_t hole_start; /* RAM above this address moves to hole_end */
        gpa_t hole_end;
        unsigned flags;
        int file; /* GUEST_MEM_FILE: exactly `size` bytes, the regions back to back */
};

#define GUEST_MEM_PAGE 4096ull /* the unit of dirty tracking */

struct guest_mem_region {
        gpa_t gpa;
        uint64_t size;
        uint8_t *host;
        uint64_t offset; /* where the region starts in the backing (and in a memory file) */
};

struct guest_mem;

/* Maps the RAM (not yet touched: pages are allocated, or read from the file, on first
 * access). With GUEST_MEM_FILE the file descriptor is duplicated (the caller keeps its own). */
int guest_mem_create(const struct guest_mem_spec *spec, struct error *err,
                     struct guest_mem **out) MUST_CHECK;
void guest_mem_destroy(struct guest_mem *mem);

uint64_t guest_mem_size(const struct guest_mem *mem);
unsigned guest_mem_region_count(const struct guest_mem *mem);
/* Region i (i < region_count), for registering KVM memory slots. */
struct guest_mem_region guest_mem_region_get(const struct guest_mem *mem, unsigned i);
/* End of the RAM region that starts at 0 (the top of "low" memory). */
gpa_t guest_mem_low_end(const struct guest_mem *mem);

/* True when all of [gpa, gpa+len) is RAM within a single region. len 0 is valid inside RAM. */
bool guest_mem_contains(const struct guest_mem *mem, gpa_t gpa, uint64_t len);
/* Host view of [gpa, gpa+len), or NULL when the range is not entirely guest RAM. */
void *guest_mem_translate(const struct guest_mem *mem, gpa_t gpa, uint64_t len);

/* Copy in/out of guest RAM; -EFAULT (nothing copied) when the range is not RAM; over a
 * memory file, -EIO when a page of it is gone (guest_mem_copy_checked). */
int guest_mem_read(const struct guest_mem *mem, gpa_t gpa, void *dst, size_t len) MUST_CHECK;
int guest_mem_write(const struct guest_mem *mem, gpa_t gpa, const void *src, size_t len) MUST_CHECK;
int guest_mem_fill(const struct guest_mem *mem, gpa_t gpa, int byte, size_t len) MUST_CHECK;
/* guest_mem_read for a snapshot of RAM that the guest or a device on another thread may be
 * writing meanwhile (the host's reads for the API): the bytes are whatever RAM held, no
 * order with those writes is promised, and ThreadSanitizer is told not to pair the copy
 * with them (a TSan build only). */
int guest_mem_read_snapshot(const struct guest_mem *mem, gpa_t gpa, void *dst,
                            size_t len) MUST_CHECK;

/*
 * A memory file truncated under its private mapping takes its pages past the new end with
 * it: touching one raises SIGBUS. The VMM's own copies out of (and into) such memory are
 * checked: memcpy(dst, src, len), or memset(dst, byte, len) when src is NULL, that ends
 * with -EIO (part of it done) instead of the process when the process's SIGBUS handler
 * calls guest_mem_sigbus_recover. Without such a handler a SIGBUS ends the process as
 * before.
 */
int guest_mem_copy_checked(void *dst, const void *src, int byte, size_t len) MUST_CHECK;
/* For a SIGBUS handler (async-signal-safe): when the calling thread is inside a checked
 * copy, resumes it (the copy returns -EIO) and does not return; otherwise returns. */
void guest_mem_sigbus_recover(void);

/* Bytes of guest RAM currently resident on the host (mincore), for memory accounting. */
uint64_t guest_mem_resident_bytes(const struct guest_mem *mem);

/* The file behind the RAM (GUEST_MEM_FILE), or -1 for anonymous memory. */
int guest_mem_backing_file(const struct guest_mem *mem);
/* Whether the pages come from a page-fault handler (GUEST_MEM_USERFAULT). */
bool guest_mem_userfault(const struct guest_mem *mem);
/* The host page size behind the RAM: 4 KiB, or 2 MiB with GUEST_MEM_HUGEPAGES. */
uint64_t guest_mem_page_size(const struct guest_mem *mem);

/*
 * Dirty tracking of the VMM's own writes (diff snapshots). KVM logs what vCPUs write; what
 * the VMM writes into guest RAM -- loaders through guest_mem_write/fill, devices through
 * hostmem (copies, ring indices, pinned I/O, balloon discards) -- is recorded here, one bit
 * per GUEST_MEM_PAGE of the backing (bit n = backing offset n * 4 KiB, the memory file's
 * layout). Writers mark with atomic operations, from any thread.
 */
int guest_mem_track_dirty(struct guest_mem *mem) MUST_CHECK; /* -ENOMEM */
bool guest_mem_tracking_dirty(const struct guest_mem *mem);
/* Marks the pages of [gpa, gpa+len) that are RAM (nothing when not tracking). */
void guest_mem_mark_dirty(const struct guest_mem *mem, gpa_t gpa, uint64_t len);
/* Words of a bitmap covering the backing: guest_mem_size / 4 KiB bits, rounded up. */
size_t guest_mem_bitmap_words(const struct guest_mem *mem);
/* ORs the recorded pages into bitmap (guest_mem_bitmap_words words) and clears them. */
void guest_mem_take_dirty(struct guest_mem *mem, uint64_t *bitmap);
/* ORs bitmap back into the record (a snapshot that failed after taking it). */
void guest_mem_restore_dirty(struct guest_mem *mem, const uint64_t *bitmap);

#endif
