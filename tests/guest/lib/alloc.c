#include "alloc.h"

#include "probe.h"
#include "str.h"

#define PAGE       4096ull
#define MAPPED_END 0x100000000ull

extern const char __image_end[];

static uint64_t next, end;
static int ready;

static void avoid(uint64_t addr)
{
        if (addr >= next && addr < end)
                end = addr & ~(PAGE - 1);
}

void alloc_init(const struct boot_info *bi)
{
        uint64_t start = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
        unsigned n = bi->memmap_count < BOOT_MEMMAP_MAX ? bi->memmap_count : BOOT_MEMMAP_MAX;

        if (ready)
                return;
        next = end = start;
        for (unsigned i = 0; i < n; i++) {
                const struct boot_mem_range *r = &bi->memmap[i];

                if (r->type == X86_E820_RAM && start >= r->addr && start - r->addr < r->size)
                        end = r->addr + r->size;
        }
        if (end > MAPPED_END)
                end = MAPPED_END;
        if (bi->has_initrd)
                avoid(bi->initrd_addr);
        avoid(bi->cmdline_addr);
        avoid(bi->info_addr);
        avoid(bi->rsdp_addr);
        if (end <= next)
                probe_fail("no free RAM after the probe image");
        ready = 1;
}

void *alloc_mem(uint64_t size, uint64_t align)
{
        uint64_t a = (next + align - 1) & ~(align - 1);

        if (!ready)
                probe_fail("allocator used before alloc_init");
        if (a < next || a > end || size > end - a)
                probe_fail("out of probe memory (%llu bytes wanted, %llu left)", U64(size),
                           U64(end > next ? end - next : 0));
        next = a + size;
        return (void *)(uintptr_t)a;
}

void *alloc_zeroed(uint64_t size, uint64_t align)
{
        void *p = alloc_mem(size, align);

        memset(p, 0, size);
        return p;
}

uint64_t alloc_left(void)
{
        return end - next;
}

uint64_t alloc_ram_end(void)
{
        return end;
}
