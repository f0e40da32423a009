/*
 * The untrusted-host view of guest memory: what every device model uses to touch guest RAM.
 * The trusted paths use guest_mem directly, and nothing else does: the VMM's loaders and
 * firmware tables (before the guest runs), the platform models (arch/cc: a protected VM's
 * memory, and the host's ciphertext view of it, CC-8), and the VMM's own copies for the
 * host -- the API's reads of guest memory (vm_host_read), a memory dump and a snapshot's
 * memory file (vmm/vm.c, vmm/snapshot.c) -- which a protected VM serves through its platform
 * model or refuses (CC-8, CC-13), which fail cleanly over a truncated memory file
 * (guest_mem_copy_checked, where a device's access ends the process), and which must not
 * count as guest writes for the next Diff snapshot (a pin here would).
 *
 * Every access names (address, length) and is checked at the moment it happens: the range
 * must be guest RAM (and, on a protected VM, shared with the host). Copies go through
 * hostmem_read/hostmem_write. Zero-copy I/O (preadv into guest buffers, writev from them)
 * pins a range for the duration of the I/O and gets an iovec; no other long-lived host
 * pointer into guest memory is handed out.
 *
 * Each device gets its own hostmem handle, so refusals are counted per device.
 *
 * Every write (copies, 16-bit stores, pins -- counted as writes when they start and when
 * they end -- and discards) marks its pages in guest_mem's dirty record when it is
 * tracking (diff snapshots).
 */
#ifndef MEMORY_HOSTMEM_H
#define MEMORY_HOSTMEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/util.h"
#include "guest_mem.h"
#include "ownership.h"

struct hostmem;

struct hostmem_stats {
        uint64_t faults;     /* accesses refused because the range is not guest RAM */
        uint64_t violations; /* accesses refused because a granule is private (CC-7) */
};

int hostmem_create(struct guest_mem *mem, const char *owner, struct hostmem **out) MUST_CHECK;

/* Makes every later access check `own` at the moment it happens (a protected VM). The map
 * must outlive the accessor. With no map, all of guest RAM is the host's to touch. */
void hostmem_set_ownership(struct hostmem *hm, struct ownership *own);
void hostmem_destroy(struct hostmem *hm);

/* 0, or -EFAULT (nothing copied) when [gpa, gpa+len) is not entirely guest RAM, or -EACCES
 * (nothing copied) when any granule of it is private. */
int hostmem_read(struct hostmem *hm, gpa_t gpa, void *dst, size_t len) MUST_CHECK;
int hostmem_write(struct hostmem *hm, gpa_t gpa, const void *src, size_t len) MUST_CHECK;

/* Single-copy-atomic 16-bit access to a naturally aligned field the guest updates
 * concurrently (ring indices). -EFAULT as above, -EINVAL when misaligned. */
int hostmem_load16(struct hostmem *hm, gpa_t gpa, uint16_t *out) MUST_CHECK;
int hostmem_store16(struct hostmem *hm, gpa_t gpa, uint16_t v) MUST_CHECK;

/* Checks [gpa, gpa+len) and describes it as one host span in *iov, valid until the matching
 * hostmem_unpin; on a protected VM the range cannot become private meanwhile (a transition
 * waits). -EFAULT when the range is not guest RAM, -EACCES when a granule is private. */
int hostmem_pin(struct hostmem *hm, gpa_t gpa, size_t len, struct iovec *iov) MUST_CHECK;
void hostmem_unpin(struct hostmem *hm, gpa_t gpa, size_t len);

/* Gives the host memory behind [gpa, gpa+len) back to the host (madvise MADV_DONTNEED):
 * the guest reads zeros there afterwards (over a snapshot's memory file, the file's bytes:
 * a clean page the kernel can drop again). Page-aligned ranges only (-EINVAL), guest RAM
 * only (-EFAULT). */
int hostmem_discard(struct hostmem *hm, gpa_t gpa, uint64_t len) MUST_CHECK;
/* Whether a discarded page reads back as zeros: anonymous RAM does; a private mapping of a
 * memory file shows the file's bytes again. (Guest RAM is always a private mapping, where
 * MADV_DONTNEED frees the page; MADV_REMOVE, the call for a shared one, is refused there.) */
bool hostmem_discard_reads_zero(const struct hostmem *hm);

/* True when the whole range is accessible right now (RAM, and shared on a protected VM):
 * for validating ring areas (CC-5) and other memory a device is asked to use before it
 * touches it. A range refused because a granule is private counts as a violation (CC-7). */
bool hostmem_check(struct hostmem *hm, gpa_t gpa, uint64_t len);

/* True when the whole range is guest RAM, whoever owns it: for validating descriptors,
 * whose buffers are checked for ownership when they are accessed (CC-3, CC-4). */
bool hostmem_in_ram(struct hostmem *hm, gpa_t gpa, uint64_t len);

void hostmem_get_stats(struct hostmem *hm, struct hostmem_stats *out);
const char *hostmem_owner(const struct hostmem *hm);

#endif
