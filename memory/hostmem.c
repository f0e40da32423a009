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

        if (!p || !hm->own)
                return p;
        r = ownership_quick_pin(hm->own, gpa, len);
        if (r > 0)
                r = ownership_pin(hm->own, gpa, len);
        return r ? refused(hm, r, err) : p;
}

static void end_access(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        if (hm->own && ownership_quick_unpin(hm->own, gpa, len))
                ownership_unpin(hm->own, gpa, len);
}

/* Short accesses: a copy (or a ring index) done before the call returns. On a protected VM
 * the per-thread registration of ownership.h instead of a pin, its common case inline. */
enum short_op { SHORT_READ, SHORT_WRITE, SHORT_LOAD16, SHORT_STORE16 };

static inline __attribute__((always_inline)) void
short_op(struct hostmem *hm, enum short_op op, void *p, gpa_t gpa, void *buf, size_t len)
{
        switch (op) {
        case SHORT_READ:
                memcpy(buf, p, len);
                break;
        case SHORT_WRITE:
                memcpy(p, buf, len);
                guest_mem_mark_dirty(hm->mem, gpa, len);
                break;
        case SHORT_LOAD16:
                *(uint16_t *)buf = __atomic_load_n((uint16_t *)p, __ATOMIC_ACQUIRE);
                break;
        case SHORT_STORE16:
                __atomic_store_n((uint16_t *)p, *(uint16_t *)buf, __ATOMIC_RELEASE);
                guest_mem_mark_dirty(hm->mem, gpa, 2);
                break;
        }
}

/* What the inline case leaves over (ownership_quick_begin returned 1), out of line. */
static __attribute__((noinline)) int short_general(struct hostmem *hm, enum short_op op, void *p,
                                                   gpa_t gpa, void *buf, size_t len)
{
        struct ownership_access a;
        int err = 0, r = ownership_access_begin(hm->own, gpa, len, &a);

        if (r) {
                refused(hm, r, &err);
                return err;
        }
        short_op(hm, op, p, gpa, buf, len);
        ownership_access_end(hm->own, &a);
        return 0;
}

static inline __attribute__((always_inline)) int short_access(struct hostmem *hm, enum short_op op,
                                                              gpa_t gpa, void *buf, size_t len)
{
        /* Read once: the compiler cannot keep hm->own across the access's atomic stores. */
        struct ownership *own = hm->own;
        struct ownership_quick q;
        int err = 0, r;
        void *p = translate(hm, gpa, len, &err);

        if (!p)
                return err;
        if (!own) {
                short_op(hm, op, p, gpa, buf, len);
                return 0;
        }
        r = ownership_quick_begin(own, gpa, len, &q);
        if (r > 0)
                return short_general(hm, op, p, gpa, buf, len);
        if (r) {
                refused(hm, r, &err);
                return err;
        }
        short_op(hm, op, p, gpa, buf, len);
        ownership_quick_end(&q);
        return 0;
}

int hostmem_read(struct hostmem *hm, gpa_t gpa, void *dst, size_t len)
{
        return short_access(hm, SHORT_READ, gpa, dst, len);
}

int hostmem_write(struct hostmem *hm, gpa_t gpa, const void *src, size_t len)
{
        return short_access(hm, SHORT_WRITE, gpa, (void *)src, len);
}

int hostmem_load16(struct hostmem *hm, gpa_t gpa, uint16_t *out)
{
        if (gpa & 1)
                return -EINVAL;
        return short_access(hm, SHORT_LOAD16, gpa, out, 2);
}

int hostmem_store16(struct hostmem *hm, gpa_t gpa, uint16_t v)
{
        if (gpa & 1)
                return -EINVAL;
        return short_access(hm, SHORT_STORE16, gpa, &v, 2);
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
        int shared;

        if (!hm->own)
                return guest_mem_contains(hm->mem, gpa, len);
        shared = ownership_quick_is_shared(hm->own, gpa, len);
        if (shared < 0)
                shared = ownership_is_shared(hm->own, gpa, len);
        if (shared)
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
