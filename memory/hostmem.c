#include "hostmem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct hostmem {
        struct guest_mem *mem;
        char owner[32];
        atomic_uint_fast64_t faults;
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

static void *span(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        void *p = guest_mem_translate(hm->mem, gpa, len);

        if (!p)
                atomic_fetch_add(&hm->faults, 1);
        return p;
}

int hostmem_read(struct hostmem *hm, gpa_t gpa, void *dst, size_t len)
{
        const void *p = span(hm, gpa, len);

        if (!p)
                return -EFAULT;
        memcpy(dst, p, len);
        return 0;
}

int hostmem_write(struct hostmem *hm, gpa_t gpa, const void *src, size_t len)
{
        void *p = span(hm, gpa, len);

        if (!p)
                return -EFAULT;
        memcpy(p, src, len);
        return 0;
}

int hostmem_load16(struct hostmem *hm, gpa_t gpa, uint16_t *out)
{
        uint16_t *p;

        if (gpa & 1)
                return -EINVAL;
        p = span(hm, gpa, 2);
        if (!p)
                return -EFAULT;
        *out = __atomic_load_n(p, __ATOMIC_ACQUIRE);
        return 0;
}

int hostmem_store16(struct hostmem *hm, gpa_t gpa, uint16_t v)
{
        uint16_t *p;

        if (gpa & 1)
                return -EINVAL;
        p = span(hm, gpa, 2);
        if (!p)
                return -EFAULT;
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
        return 0;
}

int hostmem_pin(struct hostmem *hm, gpa_t gpa, size_t len, struct iovec *iov)
{
        void *p = span(hm, gpa, len);

        if (!p)
                return -EFAULT;
        iov->iov_base = p;
        iov->iov_len = len;
        return 0;
}

void hostmem_unpin(struct hostmem *hm, gpa_t gpa, size_t len)
{
        (void)hm;
        (void)gpa;
        (void)len;
}

int hostmem_discard(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        long page = sysconf(_SC_PAGESIZE);
        void *p;

        if (!is_aligned(gpa, (uint64_t)page) || !is_aligned(len, (uint64_t)page))
                return -EINVAL;
        p = span(hm, gpa, len);
        if (!p)
                return -EFAULT;
        return madvise(p, len, MADV_DONTNEED) ? -errno : 0;
}

bool hostmem_check(struct hostmem *hm, gpa_t gpa, uint64_t len)
{
        return guest_mem_contains(hm->mem, gpa, len);
}

void hostmem_get_stats(struct hostmem *hm, struct hostmem_stats *out)
{
        out->faults = atomic_load(&hm->faults);
}

const char *hostmem_owner(const struct hostmem *hm)
{
        return hm->owner;
}
