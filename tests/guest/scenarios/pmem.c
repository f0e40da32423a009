/*
 * virtio-pmem, driven the way Linux's virtio_pmem driver does it: the configuration gives
 * the window (start, size) past RAM, which the guest maps and uses with plain loads and
 * stores; the one queue carries FLUSH requests (a 4-byte type the device reads, a 4-byte
 * status it writes).
 *
 * `pmem`: for every virtio-pmem device N (in discovery order):
 *
 *   probe: pmem N start 0x... size 0x...
 *   probe: pmem N reads "TEXT"          (the window's first bytes, up to 32, to a NUL)
 *   probe: pmem N wrote "probe pmem N" at 0x1000: reads "..."   (what the window holds
 *                                        after the write: the text, or the file's old
 *                                        bytes on a read-only device)
 *   probe: pmem N flush status S
 *
 * With `probe.pmem_wait` on the command line, each device waits for a line on COM1 before
 * its flush (the host snapshots and restores the VM meanwhile), then reads the window again:
 *
 *   probe: pmem N waiting
 *   probe: pmem N reads "..." at 0x1000 again
 *
 * `pmem-idle` (bench/density): reads one word of every 4 KiB page of every window, prints
 * `probe: pmem-idle ready P pages (sum X)`, then halts; it never ends by itself.
 *
 * `blk-cache` (bench/density, pmem's counterpart): reads the whole first virtio-blk drive
 * into guest RAM, 64 KiB per request (what a guest's page cache holds after reading an image
 * through a block device), prints `probe: blk-cache ready P pages`, then halts.
 *
 * `virtio-mem` (interrupt mode): reads the device's configuration,
 *
 *   probe: mem block 0x... addr 0x... region 0x... requested R
 *
 * then for each line the host sends (`sync`, or `end` to finish) plugs or unplugs blocks to
 * reach the requested size (the lowest unplugged blocks first, the highest plugged ones
 * first), writes one word into every 4 KiB page it plugged, and reports
 *
 *   probe: mem requested R plugged P (+N blocks, -M blocks, K nacked) state S
 *
 * S being the STATE of the whole region (0 plugged, 1 unplugged, 2 mixed). With
 * `probe.mem_limit=N` it plugs at most N blocks (a guest that cannot satisfy the request). `end`
 * sends UNPLUG_ALL (`probe: mem unplugged all: plugged 0`) and ends.
 *
 * The probe maps 0-4 GiB only (boot/entry.S); a window's GiBs get page directories of
 * 2 MiB pages here, under the same page-directory-pointer table.
 */
#include "alloc.h"
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define VID_PMEM    27
#define PAGE        4096ull
#define WRITE_AT    0x1000ull
#define PTE_P       1ull
#define PTE_RW      2ull
#define PTE_PS      0x80ull
#define PTE_ADDR    0x000ffffffffff000ull
#define GIB         (1ull << 30)
#define PDPT_COVERS (512 * GIB) /* the one PML4 entry the probe uses */

struct window {
        uint64_t start, size;
};

static struct window read_window(struct virtio_dev *d)
{
        struct window w = {
            .start = virtio_cfg32(d, 0) | (uint64_t)virtio_cfg32(d, 4) << 32,
            .size = virtio_cfg32(d, 8) | (uint64_t)virtio_cfg32(d, 12) << 32,
        };

        if (!w.size || w.start + w.size < w.start || w.start + w.size > PDPT_COVERS)
                probe_fail("pmem: window 0x%llx+0x%llx cannot be mapped", U64(w.start),
                           U64(w.size));
        return w;
}

/* Identity-maps the window with 2 MiB pages (a page directory per GiB it touches). */
static void map_window(struct window w)
{
        uint64_t cr3;
        uint64_t *pml4, *pdpt;

        __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
        pml4 = (uint64_t *)(uintptr_t)(cr3 & PTE_ADDR);
        pdpt = (uint64_t *)(uintptr_t)(pml4[0] & PTE_ADDR);
        for (uint64_t g = w.start / GIB; g <= (w.start + w.size - 1) / GIB; g++) {
                uint64_t *pd;

                if (pdpt[g] & PTE_P)
                        continue;
                pd = alloc_zeroed(PAGE, PAGE);
                for (uint64_t i = 0; i < 512; i++)
                        pd[i] = (g * GIB + (i << 21)) | PTE_P | PTE_RW | PTE_PS;
                pdpt[g] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_RW;
        }
        __asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

/* The bytes at p up to a NUL or max, for a quoted print. */
static void text_at(const volatile uint8_t *p, char *out, unsigned max)
{
        unsigned i;

        for (i = 0; i + 1 < max && p[i]; i++)
                out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
        out[i] = '\0';
}

static uint32_t flush(struct virtq *q)
{
        uint32_t *req = alloc_zeroed(8, 8);
        uint32_t *status = req + 1;
        struct vbuf b[2] = {{req, 4, false}, {status, 4, true}};
        uint32_t len;

        *req = 0; /* VIRTIO_PMEM_REQ_TYPE_FLUSH */
        *status = 0xffffffffu;
        len = virtq_call(q, b, 2, false);
        if (len != 4)
                probe_fail("pmem: flush answered with %u bytes", len);
        return *status;
}

void scenario_pmem(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        size_t len;
        bool wait = cmdline_find(bi->cmdline, "probe.pmem_wait", &len) != NULL;
        unsigned n = 0;

        for (unsigned i = 0; i < c->count; i++) {
                struct virtio_dev *d = &c->devs[i];
                struct virtq q;
                struct window w;
                volatile uint8_t *p;
                char text[33], msg[24];

                if (d->id != VID_PMEM)
                        continue;
                vctx_mode(c, d, false);
                virtio_bring_up(d, vctx_ring_features(c), &q, 1, 16);
                w = read_window(d);
                print("probe: pmem %u start 0x%llx size 0x%llx\n", n, U64(w.start), U64(w.size));
                map_window(w);
                p = (volatile uint8_t *)(uintptr_t)w.start;
                text_at(p, text, sizeof(text));
                print("probe: pmem %u reads \"%s\"\n", n, text);
                vctx_fmt(msg, sizeof(msg), "probe pmem %u", n);
                for (unsigned k = 0; k <= str_len(msg); k++)
                        p[WRITE_AT + k] = (uint8_t)msg[k];
                text_at(p + WRITE_AT, text, sizeof(text));
                print("probe: pmem %u wrote \"%s\" at 0x%llx: reads \"%s\"\n", n, msg,
                      U64(WRITE_AT), text);
                if (wait) {
                        char line[16];

                        print("probe: pmem %u waiting\n", n);
                        vctx_wait_line(c, line, sizeof(line));
                        text_at(p + WRITE_AT, text, sizeof(text));
                        print("probe: pmem %u reads \"%s\" at 0x%llx again\n", n, text,
                              U64(WRITE_AT));
                }
                print("probe: pmem %u flush status %u\n", n, flush(&q));
                virtio_reset(d);
                n++;
        }
        if (!n)
                probe_fail("no virtio-pmem device");
}

#define VID_MEM        24
#define MEM_PLUG       0
#define MEM_UNPLUG     1
#define MEM_UNPLUG_ALL 2
#define MEM_STATE      3
#define MEM_MAX_BLOCKS 4096

struct mem_req {
        uint16_t type, pad[3];
        uint64_t addr;
        uint16_t nb_blocks, pad2[3];
};

struct mem_resp {
        uint16_t type, pad[3];
        uint16_t state;
};

/* One request: the response type (and *state for STATE). */
static uint16_t mem_call(struct virtq *q, uint16_t type, uint64_t addr, uint16_t n, uint16_t *state)
{
        static struct mem_req *req;
        static struct mem_resp *resp;
        struct vbuf b[2];
        uint32_t len;

        if (!req) {
                req = alloc_zeroed(sizeof(*req), 8);
                resp = alloc_zeroed(sizeof(*resp), 8);
        }
        *req = (struct mem_req){.type = type, .addr = addr, .nb_blocks = n};
        resp->type = 0xffff;
        b[0] = (struct vbuf){req, sizeof(*req), false};
        b[1] = (struct vbuf){resp, sizeof(*resp), true};
        len = virtq_call(q, b, 2, false);
        if (len != 10)
                probe_fail("mem: request %u answered with %u bytes", type, len);
        if (state)
                *state = resp->state;
        return resp->type;
}

/* Reads back the word written into every page of the plugged blocks (its own address | 1)
 * and reports how many pages hold it, beside the device's plugged_size. */
static void mem_check(uint64_t addr, uint64_t bs, uint64_t nblocks, const uint8_t *plugged,
                      uint64_t have, uint64_t dev_plugged)
{
        uint64_t good = 0, bad = 0;

        for (uint64_t b = 0; b < nblocks; b++) {
                if (!plugged[b])
                        continue;
                for (uint64_t off = 0; off < bs; off += PAGE) {
                        uint64_t at = addr + b * bs + off;

                        if (*(volatile uint64_t *)(uintptr_t)at == (at | 1))
                                good++;
                        else
                                bad++;
                }
        }
        print("probe: mem check plugged %llu (device %llu): %llu pages hold the pattern, %llu "
              "do not\n",
              U64(have), U64(dev_plugged), U64(good), U64(bad));
}

void scenario_virtio_mem(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct virtio_dev *d = vctx_need(c, VID_MEM, 0, "virtio-mem");
        static uint8_t plugged[MEM_MAX_BLOCKS];
        uint64_t bs, addr, region, nblocks, have = 0, limit = MEM_MAX_BLOCKS;
        size_t len;
        const char *v = cmdline_find(bi->cmdline, "probe.mem_limit", &len);
        struct virtq q;
        char line[16];

        if (v && !str_parse_u64(v, len, 10, &limit))
                probe_fail("mem: bad probe.mem_limit");
        vctx_mode(c, d, true);
        virtio_bring_up(d, vctx_ring_features(c), &q, 1, 16);
        bs = virtio_cfg64(d, 0);
        addr = virtio_cfg64(d, 16);
        region = virtio_cfg64(d, 24);
        if (!bs || region % bs || region / bs > MEM_MAX_BLOCKS)
                probe_fail("mem: block 0x%llx region 0x%llx", U64(bs), U64(region));
        nblocks = region / bs;
        print("probe: mem block 0x%llx addr 0x%llx region 0x%llx requested %llu\n", U64(bs),
              U64(addr), U64(region), U64(virtio_cfg64(d, 48)));
        map_window((struct window){addr, region});
        for (;;) {
                uint64_t want, added = 0, removed = 0, nacked = 0;
                uint16_t state = 0xffff;

                vctx_wait_line(c, line, sizeof(line));
                if (str_eq(line, "end"))
                        break;
                if (str_eq(line, "check")) {
                        mem_check(addr, bs, nblocks, plugged, have, virtio_cfg64(d, 40));
                        continue;
                }
                want = virtio_cfg64(d, 48);
                for (uint64_t b = 0; b < nblocks && have + bs <= want && have / bs < limit; b++) {
                        if (plugged[b])
                                continue;
                        if (mem_call(&q, MEM_PLUG, addr + b * bs, 1, NULL) != 0) {
                                nacked++;
                                break;
                        }
                        plugged[b] = 1;
                        have += bs;
                        added++;
                        for (uint64_t off = 0; off < bs; off += PAGE)
                                *(volatile uint64_t *)(uintptr_t)(addr + b * bs + off) =
                                    (addr + b * bs + off) | 1;
                }
                for (uint64_t b = nblocks; b-- > 0 && have >= want + bs;) {
                        if (!plugged[b])
                                continue;
                        if (mem_call(&q, MEM_UNPLUG, addr + b * bs, 1, NULL) != 0) {
                                nacked++;
                                break;
                        }
                        plugged[b] = 0;
                        have -= bs;
                        removed++;
                }
                if (mem_call(&q, MEM_STATE, addr, (uint16_t)nblocks, &state) != 0)
                        probe_fail("mem: STATE of the region refused");
                print("probe: mem requested %llu plugged %llu (+%llu blocks, -%llu blocks, %llu "
                      "nacked) state %u\n",
                      U64(want), U64(have), U64(added), U64(removed), U64(nacked), state);
        }
        if (mem_call(&q, MEM_UNPLUG_ALL, 0, 0, NULL) != 0)
                probe_fail("mem: UNPLUG_ALL refused");
        print("probe: mem unplugged all: plugged %llu\n", U64(virtio_cfg64(d, 40)));
        vctx_check_irqs(d);
        virtio_reset(d);
        virtio_irq_disable(d);
}

#define SECTOR    512u
#define BLK_T_IN  0
#define BLK_CHUNK (64u << 10)

void scenario_blk_cache(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct virtio_dev *d = vctx_need(c, VID_BLOCK, 0, "virtio-blk");
        struct {
                uint32_t type, reserved;
                uint64_t sector;
        } *hdr = alloc_zeroed(16, 16);
        uint8_t *status = alloc_zeroed(1, 1);
        uint64_t capacity, bytes;
        uint8_t *cache;
        struct virtq q;

        vctx_mode(c, d, false);
        virtio_bring_up(d, vctx_ring_features(c), &q, 1, 16);
        capacity = virtio_cfg32(d, 0) | (uint64_t)virtio_cfg32(d, 4) << 32;
        bytes = capacity * SECTOR;
        if (bytes > alloc_left() / 2)
                probe_fail("blk-cache: a %llu-byte drive does not fit the probe's memory",
                           U64(bytes));
        cache = alloc_mem(bytes, PAGE);
        for (uint64_t off = 0; off < bytes; off += BLK_CHUNK) {
                uint32_t len = bytes - off < BLK_CHUNK ? (uint32_t)(bytes - off) : BLK_CHUNK;
                struct vbuf v[3] = {{hdr, 16, false}, {cache + off, len, true}, {status, 1, true}};

                *hdr = (__typeof__(*hdr)){.type = BLK_T_IN, .sector = off / SECTOR};
                *status = 0xff;
                virtq_call(&q, v, 3, false);
                if (*status != 0)
                        probe_fail("blk-cache: read at %llu: status %u", U64(off), *status);
        }
        print("probe: blk-cache ready %llu pages\n", U64(bytes / PAGE));
        cpu_park(); /* interrupts off: a device's interrupt has no handler here */
}

void scenario_pmem_idle(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        uint64_t pages = 0, sum = 0;

        for (unsigned i = 0; i < c->count; i++) {
                struct virtio_dev *d = &c->devs[i];
                struct window w;

                if (d->id != VID_PMEM)
                        continue;
                w = read_window(d);
                map_window(w);
                for (uint64_t off = 0; off < w.size; off += PAGE, pages++)
                        sum += *(volatile uint64_t *)(uintptr_t)(w.start + off);
        }
        print("probe: pmem-idle ready %llu pages (sum %llx)\n", U64(pages), U64(sum));
        cpu_park(); /* interrupts off: a device's interrupt has no handler here */
}
