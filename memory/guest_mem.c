#include "guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

struct guest_mem {
        uint8_t *base; /* one contiguous host mapping backs every region */
        uint64_t size;
        int file; /* -1: anonymous */
        unsigned flags;
        uint64_t page;
        unsigned nr_regions;
        struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
        uint64_t *dirty; /* NULL: not tracking; set before any writer runs */
        size_t dirty_words;
};

int guest_mem_create(const struct guest_mem_spec *spec, struct error *err, struct guest_mem **out)
{
        uint64_t page = (spec->flags & GUEST_MEM_HUGEPAGES) ? MiB(2) : KiB(4);
        int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
        struct guest_mem *mem;
        uint64_t low, high_end;
        void *base;

        if (spec->size == 0)
                return error_set(err, -EINVAL, "guest memory size must be greater than 0");
        if (!is_aligned(spec->size, page))
                return error_set(
                    err, -EINVAL,
                    "guest memory size %llu is not a multiple of the %llu KiB page size",
                    (unsigned long long)spec->size, (unsigned long long)(page >> 10));
        if (spec->hole_start > spec->hole_end || !is_aligned(spec->hole_start, page) ||
            !is_aligned(spec->hole_end, page))
                return error_set(err, -EINVAL, "invalid memory hole");
        low = spec->size < spec->hole_start ? spec->size : spec->hole_start;
        if (!range_end(spec->hole_end, spec->size - low, &high_end))
                return error_set(err, -EINVAL, "guest memory size too large");

        /* A hugetlb mapping must reserve its pages now: with MAP_NORESERVE an empty pool
         * only shows up as SIGBUS on the first guest access. */
        if (spec->flags & GUEST_MEM_HUGEPAGES)
                mflags = (mflags & ~MAP_NORESERVE) | MAP_HUGETLB | MAP_HUGE_2MB;
        if ((spec->flags & GUEST_MEM_FILE) && (spec->flags & GUEST_MEM_USERFAULT))
                return error_set(err, -EINVAL,
                                 "a memory file cannot be served by a page-fault "
                                 "handler");
        if (spec->flags & GUEST_MEM_FILE) {
                if (spec->flags & GUEST_MEM_HUGEPAGES)
                        return error_set(err, -EINVAL,
                                         "a memory file cannot be mapped with huge pages");
                mflags &= ~MAP_ANONYMOUS;
        }
        base = mmap(NULL, spec->size, PROT_READ | PROT_WRITE, mflags,
                    (spec->flags & GUEST_MEM_FILE) ? spec->file : -1, 0);
        if (base == MAP_FAILED)
                return error_set(err, -errno, "cannot map %llu MiB of guest memory%s: %s",
                                 (unsigned long long)(spec->size >> 20),
                                 (spec->flags & GUEST_MEM_HUGEPAGES)
                                     ? " with 2 MiB huge pages (is "
                                       "/proc/sys/vm/nr_hugepages large enough?)"
                                     : "",
                                 strerror(errno));
        /* Guest RAM stays out of core dumps: it can be large and may hold guest secrets. */
        madvise(base, spec->size, MADV_DONTDUMP);

        mem = calloc(1, sizeof(*mem));
        if (!mem) {
                munmap(base, spec->size);
                return error_set(err, -ENOMEM, "out of memory");
        }
        mem->base = base;
        mem->size = spec->size;
        mem->file = -1;
        mem->flags = spec->flags;
        mem->page = page;
        if (spec->flags & GUEST_MEM_FILE) {
                mem->file = fcntl(spec->file, F_DUPFD_CLOEXEC, 0);
                if (mem->file < 0) {
                        int r = -errno;
                        munmap(base, spec->size);
                        free(mem);
                        return error_set(err, r, "memory file: %s", strerror(-r));
                }
        }
        mem->regions[0] = (struct guest_mem_region){.gpa = 0, .size = low, .host = base};
        mem->nr_regions = 1;
        if (spec->size > low) {
                mem->regions[1] = (struct guest_mem_region){.gpa = spec->hole_end,
                                                            .size = spec->size - low,
                                                            .host = mem->base + low,
                                                            .offset = low};
                mem->nr_regions = 2;
        }
        *out = mem;
        return 0;
}

void guest_mem_destroy(struct guest_mem *mem)
{
        if (!mem)
                return;
        munmap(mem->base, mem->size);
        if (mem->file >= 0)
                close(mem->file);
        free(mem->dirty);
        free(mem);
}

uint64_t guest_mem_size(const struct guest_mem *mem)
{
        return mem->size;
}

unsigned guest_mem_region_count(const struct guest_mem *mem)
{
        return mem->nr_regions;
}

struct guest_mem_region guest_mem_region_get(const struct guest_mem *mem, unsigned i)
{
        return i < mem->nr_regions ? mem->regions[i] : (struct guest_mem_region){0};
}

gpa_t guest_mem_low_end(const struct guest_mem *mem)
{
        return mem->regions[0].size;
}

static const struct guest_mem_region *find_region(const struct guest_mem *mem, gpa_t gpa,
                                                  uint64_t len)
{
        uint64_t end;

        if (!range_end(gpa, len, &end))
                return NULL;
        for (unsigned i = 0; i < mem->nr_regions; i++) {
                const struct guest_mem_region *r = &mem->regions[i];
                if (gpa >= r->gpa && end <= r->gpa + r->size)
                        return r;
        }
        return NULL;
}

bool guest_mem_contains(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        return find_region(mem, gpa, len) != NULL;
}

void *guest_mem_translate(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const struct guest_mem_region *r = find_region(mem, gpa, len);
        return r ? r->host + (gpa - r->gpa) : NULL;
}

/* A ThreadSanitizer build (clang 14 defines no __SANITIZE_THREAD__). */
#if defined(__SANITIZE_THREAD__)
#define GUEST_MEM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GUEST_MEM_TSAN 1
#endif
#endif
#ifdef GUEST_MEM_TSAN
/* Its dynamic annotations (its runtime defines them). */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
/* TSan runs every handler with all signals blocked (it installs its own with a full
 * sa_mask and calls ours from it), so a jump out of the SIGBUS handler would leave them
 * all blocked, SIGBUS included: the next truncated page would kill the process (a blocked
 * SIGBUS takes its default action). Only there, sigsetjmp saves the mask and the jump
 * restores it (a system call per checked copy). */
#define CHECKED_COPY_SAVES_MASK 1
#else
#define CHECKED_COPY_SAVES_MASK 0
#endif

/* The checked copy this thread is in, if any (guest_mem_sigbus_recover resumes it). */
static _Thread_local sigjmp_buf *volatile sigbus_resume;

int guest_mem_copy_checked(void *dst, const void *src, int byte, size_t len)
{
        sigjmp_buf resume;

        /* No signal mask saved (that would be a system call per copy): the handler runs with
         * SA_NODEFER, so SIGBUS is not left blocked when it jumps back here (ThreadSanitizer
         * excepted, above). */
        if (sigsetjmp(resume, CHECKED_COPY_SAVES_MASK)) {
                sigbus_resume = NULL;
                return -EIO;
        }
        sigbus_resume = &resume;
        atomic_signal_fence(memory_order_seq_cst);
        if (src)
                memcpy(dst, src, len);
        else
                memset(dst, byte, len);
        atomic_signal_fence(memory_order_seq_cst);
        sigbus_resume = NULL;
        return 0;
}

void guest_mem_sigbus_recover(void)
{
        sigjmp_buf *resume = sigbus_resume;

        if (resume)
                siglongjmp(*resume, 1);
}

/* A copy in or out of guest RAM (src NULL: a fill); checked over a memory file, whose pages
 * can vanish. */
static int copy(const struct guest_mem *mem, void *dst, const void *src, int byte, size_t len)
{
        if (mem->file >= 0)
                return guest_mem_copy_checked(dst, src, byte, len);
        if (src)
                memcpy(dst, src, len);
        else
                memset(dst, byte, len);
        return 0;
}

int guest_mem_read(const struct guest_mem *mem, gpa_t gpa, void *dst, size_t len)
{
        const void *src = guest_mem_translate(mem, gpa, len);
        if (!src)
                return -EFAULT;
        return copy(mem, dst, src, 0, len);
}

int guest_mem_read_snapshot(const struct guest_mem *mem, gpa_t gpa, void *dst, size_t len)
{
        int r;

#ifdef GUEST_MEM_TSAN
        AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
#endif
        r = guest_mem_read(mem, gpa, dst, len);
#ifdef GUEST_MEM_TSAN
        /* -EIO: a gone page of the memory file, left by a jump out of the SIGBUS handler.
         * TSan calls our handler with this thread's ignores cleared and restores them when
         * it returns, which the jump skipped: the ignore has ended already. */
        if (r != -EIO)
                AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
        return r;
}

int guest_mem_write(const struct guest_mem *mem, gpa_t gpa, const void *src, size_t len)
{
        void *dst = guest_mem_translate(mem, gpa, len);
        if (!dst)
                return -EFAULT;
        guest_mem_mark_dirty(mem, gpa, len);
        return copy(mem, dst, src, 0, len);
}

int guest_mem_fill(const struct guest_mem *mem, gpa_t gpa, int byte, size_t len)
{
        void *dst = guest_mem_translate(mem, gpa, len);
        if (!dst)
                return -EFAULT;
        guest_mem_mark_dirty(mem, gpa, len);
        return copy(mem, dst, NULL, byte, len);
}

uint64_t guest_mem_resident_bytes(const struct guest_mem *mem)
{
        long pagesz = sysconf(_SC_PAGESIZE);
        const uint64_t chunk = MiB(64);
        unsigned char *vec;
        uint64_t resident = 0;

        vec = malloc(chunk / (uint64_t)pagesz);
        if (!vec)
                return 0;
        for (uint64_t off = 0; off < mem->size; off += chunk) {
                uint64_t len = mem->size - off < chunk ? mem->size - off : chunk;
                uint64_t pages = (len + (uint64_t)pagesz - 1) / (uint64_t)pagesz;
                if (mincore(mem->base + off, len, vec) != 0)
                        break;
                for (uint64_t i = 0; i < pages; i++)
                        resident += (vec[i] & 1) ? (uint64_t)pagesz : 0;
        }
        free(vec);
        return resident;
}

int guest_mem_backing_file(const struct guest_mem *mem)
{
        return mem->file;
}

bool guest_mem_userfault(const struct guest_mem *mem)
{
        return mem->flags & GUEST_MEM_USERFAULT;
}

uint64_t guest_mem_page_size(const struct guest_mem *mem)
{
        return mem->page;
}

/* ---- dirty tracking ---- */

size_t guest_mem_bitmap_words(const struct guest_mem *mem)
{
        uint64_t pages = (mem->size + GUEST_MEM_PAGE - 1) / GUEST_MEM_PAGE;

        return (size_t)((pages + 63) / 64);
}

int guest_mem_track_dirty(struct guest_mem *mem)
{
        if (mem->dirty)
                return 0;
        mem->dirty_words = guest_mem_bitmap_words(mem);
        mem->dirty = calloc(mem->dirty_words, sizeof(uint64_t));
        return mem->dirty ? 0 : -ENOMEM;
}

bool guest_mem_tracking_dirty(const struct guest_mem *mem)
{
        return mem->dirty != NULL;
}

void guest_mem_mark_dirty(const struct guest_mem *mem, gpa_t gpa, uint64_t len)
{
        const struct guest_mem_region *r;
        uint64_t first, last;

        if (!mem->dirty || len == 0)
                return;
        r = find_region(mem, gpa, len);
        if (!r)
                return;
        first = (r->offset + (gpa - r->gpa)) / GUEST_MEM_PAGE;
        last = (r->offset + (gpa - r->gpa) + len - 1) / GUEST_MEM_PAGE;
        for (uint64_t p = first; p <= last; p++)
                __atomic_fetch_or(&mem->dirty[p / 64], 1ull << (p % 64), __ATOMIC_RELAXED);
}

void guest_mem_take_dirty(struct guest_mem *mem, uint64_t *bitmap)
{
        for (size_t i = 0; mem->dirty && i < mem->dirty_words; i++)
                bitmap[i] |= __atomic_exchange_n(&mem->dirty[i], 0, __ATOMIC_RELAXED);
}

void guest_mem_restore_dirty(struct guest_mem *mem, const uint64_t *bitmap)
{
        for (size_t i = 0; mem->dirty && i < mem->dirty_words; i++)
                if (bitmap[i])
                        __atomic_fetch_or(&mem->dirty[i], bitmap[i], __ATOMIC_RELAXED);
}
