#include "hostmem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct hostmem {
        struct guest_mem *mem;
        struct ownership *own; /* NULL: not a protected VM */
        char owner[32];
        atomic_uint_fast64_t faults;
        atomic_uint_fast64_t violations;
};

int hostmem_create(struct guest_mem *mem, const char *owner, struct hostmem **out)
{
        struct hostmem *hm = calloc(1, sizeof(*hm));

        if (!hm)
                return -ENOMEM;
        hm->mem = mem;
        snprintf(hm->owner, sizeof(hm->owner), "%s", owner);
        *out = hm;
        return 0;
}

void hostmem_destroy(struct hostmem *hm)
{
        free(hm);
}

void hostmem_set_ownership(struct hostmem *hm, struct ownership *own)
{
        hm->own = own;
}

/* The host span of [gpa, gpa+len), or NULL (counted as a fault) outside guest RAM. */
static inline __attribute__((always_inline)) void *translate(struct hostmem *hm, gpa_t gpa,
                                                             uint64_t len, int *err)
{
        void *p = guest_mem_translate(hm->mem, gpa, len);

        if (!p) {
                atomic_fetch_add(&hm->faults, 1);
                *err = -EFAULT;
        }
        return p;
}

/* An ownership refusal r (non-zero): counted (a private byte is a violation, CC-7). */
static void *refused(struct hostmem *hm, int r, int *err)
{
        atomic_fetch_add(r == -EACCES ? &hm->violations : &hm->faults, 1);
        *err = r;
        return NULL;
}

/*
 * Opens an access to [gpa, gpa+len): the host span, or NULL with *err set. On a protected
 * VM the range stays pinned (shared) until end_access, so the check and the access cannot
 * be separated by a transition -- and a transition to private of a pinned range waits, so
 * a thread must not hold a pin (or be inside a short access) while it performs such a
 * transition itself.
 */
static void *begin_access(struct hostmem *hm, gpa_t gpa, uint64_t len, int *err)
{
        void *p = translate(hm, gpa, len, err);
        int r;

        if (p && hm->own && (r = ownership_pin(hm->own, gpa, len)) != 0)
                return refused(hm, r, err);
        return p;
}

static void end_access(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        if (hm->own)
                ownership_unpin(hm->own, gpa, len);
}

/* The same for a short access (a copy done before the caller returns): on a protected VM
 * the cheaper per-thread registration of ownership_access_begin instead of a pin. */
static inline __attribute__((always_inline)) void *
begin_short(struct hostmem *hm, gpa_t gpa, uint64_t len, struct ownership_access *a, int *err)
{
        void *p = translate(hm, gpa, len, err);
        int r;

        if (p && hm->own && (r = ownership_access_begin(hm->own, gpa, len, a)) != 0)
                return refused(hm, r, err);
        return p;
}

static inline __attribute__((always_inline)) void end_short(struct hostmem *hm,
                                                            struct ownership_access *a)
{
        if (hm->own)
                ownership_access_end(hm->own, a);
}

int hostmem_read(struct hostmem *hm, gpa_t gpa, void *dst, size_t len)
{
        struct ownership_access a;
        int err = 0;
        const void *p = begin_short(hm, gpa, len, &a, &err);

        if (!p)
                return err;
        memcpy(dst, p, len);
        end_short(hm, &a);
        return 0;
}

int hostmem_write(struct hostmem *hm, gpa_t gpa, const void *src, size_t len)
{
        struct ownership_access a;
        int err = 0;
        void *p = begin_short(hm, gpa, len, &a, &err);

        if (!p)
                return err;
        memcpy(p, src, len);
        guest_mem_mark_dirty(hm->mem, gpa, len);
        end_short(hm, &a);
        return 0;
}

int hostmem_load16(struct hostmem *hm, gpa_t gpa, uint16_t *out)
{
        struct ownership_access a;
        int err = 0;
        uint16_t *p;

        if (gpa & 1)
                return -EINVAL;
        p = begin_short(hm, gpa, 2, &a, &err);
        if (!p)
                return err;
        *out = __atomic_load_n(p, __ATOMIC_ACQUIRE);
        end_short(hm, &a);
        return 0;
}

int hostmem_store16(struct hostmem *hm, gpa_t gpa, uint16_t v)
{
        struct ownership_access a;
        int err = 0;
        uint16_t *p;

        if (gpa & 1)
                return -EINVAL;
        p = begin_short(hm, gpa, 2, &a, &err);
        if (!p)
                return err;
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
        guest_mem_mark_dirty(hm->mem, gpa, 2);
        end_short(hm, &a);
        return 0;
}

int hostmem_pin(struct hostmem *hm, gpa_t gpa, size_t len, struct iovec *iov)
{
        int err = 0;
        void *p = begin_access(hm, gpa, len, &err);

        if (!p)
                return err;
        iov->iov_base = p;
        iov->iov_len = len;
        /* The pin does not say which way the I/O goes: count it as a write, now and when
         * it ends (a snapshot taken meanwhile must not miss what lands afterwards). */
        guest_mem_mark_dirty(hm->mem, gpa, len);
        return 0;
}

void hostmem_unpin(struct hostmem *hm, gpa_t gpa, size_t len)
{
        guest_mem_mark_dirty(hm->mem, gpa, len);
        end_access(hm, gpa, len);
}

int hostmem_discard(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        long page = sysconf(_SC_PAGESIZE);
        void *p;

        int err = 0, r;

        if (!is_aligned(gpa, (uint64_t)page) || !is_aligned(len, (uint64_t)page))
                return -EINVAL;
        p = begin_access(hm, gpa, len, &err);
        if (!p)
                return err;
        r = madvise(p, len, MADV_DONTNEED) ? -errno : 0;
        /* The pages now read as zeros (or, over a memory file, as the file's bytes): they
         * changed. */
        guest_mem_mark_dirty(hm->mem, gpa, len);
        end_access(hm, gpa, len);
        return r;
}

bool hostmem_discard_reads_zero(const struct hostmem *hm)
{
        return guest_mem_backing_file(hm->mem) < 0;
}

bool hostmem_check(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        if (!hm->own)
                return guest_mem_contains(hm->mem, gpa, len);
        if (ownership_is_shared(hm->own, gpa, len))
                return true;
        /* The guest asked the device to use private memory (a ring, a status byte): refused
         * without touching it, and counted like a refused access (CC-7). */
        if (ownership_any_private(hm->own, gpa, len))
                atomic_fetch_add(&hm->violations, 1);
        return false;
}

bool hostmem_in_ram(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        return guest_mem_contains(hm->mem, gpa, len);
}

void hostmem_get_stats(struct hostmem *hm, struct hostmem_stats *out)
{
        out->faults = atomic_load(&hm->faults);
        out->violations = atomic_load(&hm->violations);
}

const char *hostmem_owner(const struct hostmem *hm)
{
        return hm->owner;
}
