/*
 * Balloon free page reporting and hinting, driven the way Linux's virtio_balloon driver does
 * it: queues numbered by the negotiated features (inflate 0, deflate 1, then the free page
 * queue and the reporting queue; the statistics queue is declined), reports as one request
 * of device-writable ranges, a hinting round as an output buffer holding the host's command
 * id, input buffers covering free memory, an output buffer holding STOP, and the device's
 * DONE awaited in free_page_hint_cmd_id. Pages are touched with one 8-byte write each and
 * checked through that word only, to keep the instruction count small.
 *
 * `freepage` (interrupt mode by default), pausing for a line on COM1 where the host
 * measures the VMM's resident memory and drives the API:
 *
 *   probe: freepage hinting H reporting R queues N
 *   probe: freepage touched P pages                       (waits)
 *   probe: freepage reported P pages in 2 ranges, Z read back zero   (waits)
 *   probe: freepage touched P pages again                 (waits: the host starts a run)
 *   probe: freepage command C, hinted P pages in 2 ranges, host answered DONE, Z read back zero
 *                                                         (waits)
 *
 * `freepage-idle` (bench/density): touches probe.fp_mib MiB (default 32), reports them when
 * reporting was negotiated, prints `probe: freepage-idle ready`, then halts; each hinting
 * round the host starts is answered with that memory (`probe: freepage-idle hinted C`).
 * It never ends by itself.
 */
#include "alloc.h"
#include "cmdline.h"
#include "cpu.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define F_FREE_PAGE_HINT 3
#define F_PAGE_REPORTING 5
#define PAGE             4096ull
#define RANGE            (2ull << 20) /* Linux reports order-9 blocks at least */
#define QSIZE            16
#define CFG_CMD_ID       8
#define CMD_ID_STOP      0
#define CMD_ID_DONE      1

struct fp {
        struct vctx *c;
        struct virtio_dev *d;
        struct virtq qs[4];
        struct virtq *hintq, *reportq; /* NULL: not negotiated */
        uint8_t *mem;
        uint64_t bytes;
        uint32_t le_cmd, le_stop; /* the output buffers' contents (le32) */
};

static void bring_up(struct fp *f)
{
        const char *why = virtio_begin(f->d);
        unsigned nq = 2;

        if (why)
                probe_fail("freepage: %s", why);
        /* The queues the device will have once both features are accepted: the negotiation
         * keeps what the device offers of them. */
        if (f->d->offered & VBIT(F_FREE_PAGE_HINT))
                nq++;
        if (f->d->offered & VBIT(F_PAGE_REPORTING))
                nq++;
        virtio_bring_up(f->d,
                        vctx_ring_features(f->c) | VBIT(F_FREE_PAGE_HINT) | VBIT(F_PAGE_REPORTING),
                        f->qs, nq, QSIZE);
        nq = 2;
        f->hintq = (f->d->features & VBIT(F_FREE_PAGE_HINT)) ? &f->qs[nq++] : NULL;
        f->reportq = (f->d->features & VBIT(F_PAGE_REPORTING)) ? &f->qs[nq++] : NULL;
}

static void touch(struct fp *f)
{
        for (uint64_t off = 0; off < f->bytes; off += PAGE)
                *(volatile uint64_t *)(f->mem + off) = (uint64_t)(uintptr_t)(f->mem + off) | 1;
}

static uint32_t zero_pages(const struct fp *f)
{
        uint32_t n = 0;

        for (uint64_t off = 0; off < f->bytes; off += PAGE)
                if (*(volatile uint64_t *)(f->mem + off) == 0)
                        n++;
        return n;
}

/* Adds one request, kicks, and waits for it. */
static void call(struct virtq *q, const struct vbuf *b, unsigned n)
{
        virtq_call(q, b, n, false);
}

/* The whole memory as RANGE-sized device-writable buffers, per_request of them in each
 * request (reports: several, as Linux's scatterlists; hints: one each, as Linux adds
 * them). Returns the number of ranges. */
static uint32_t send_ranges(struct fp *f, struct virtq *q, unsigned per_request)
{
        struct vbuf b[8];
        uint32_t total = 0;
        unsigned n = 0;

        for (uint64_t off = 0; off < f->bytes; off += RANGE) {
                b[n++] = (struct vbuf){f->mem + off, (uint32_t)RANGE, true};
                total++;
                if (n == per_request || off + RANGE >= f->bytes) {
                        call(q, b, n);
                        n = 0;
                }
        }
        return total;
}

/* Waits (bounded) until free_page_hint_cmd_id reads `want`. */
static void wait_cmd(struct fp *f, uint32_t want)
{
        uint64_t t0 = cpu_rdtsc();

        while (virtio_cfg32(f->d, CFG_CMD_ID) != want) {
                if (cpu_rdtsc() - t0 > VIRTIO_WAIT_TSC)
                        probe_fail("freepage: free_page_hint_cmd_id is %u, not %u",
                                   virtio_cfg32(f->d, CFG_CMD_ID), want);
                virtio_idle(f->d);
        }
}

/* In interrupt mode, waits (bounded) for the configuration interrupt of the host's new
 * command: it may still be pending, since the line that said so was read with interrupts
 * off. */
static void wait_config_irq(struct fp *f)
{
        uint64_t t0 = cpu_rdtsc();

        while (f->d->irq_mode && !f->d->config_irqs) {
                if (cpu_rdtsc() - t0 > VIRTIO_WAIT_TSC)
                        probe_fail("freepage: no configuration interrupt for the run");
                virtio_idle(f->d);
        }
}

/* One hinting round under the host's command cmd: the id, the ranges, STOP, then DONE from
 * the device. Returns the number of ranges. */
static uint32_t hint_round(struct fp *f, uint32_t cmd)
{
        struct vbuf id = {&f->le_cmd, 4, false}, stop = {&f->le_stop, 4, false};
        uint32_t n;

        f->le_cmd = cmd; /* x86: little-endian already */
        f->le_stop = CMD_ID_STOP;
        call(f->hintq, &id, 1);
        n = send_ranges(f, f->hintq, 1);
        call(f->hintq, &stop, 1);
        wait_cmd(f, CMD_ID_DONE);
        return n;
}

static void setup(struct fp *f, const struct boot_info *bi, uint64_t bytes)
{
        f->c = vctx_get(bi);
        f->d = vctx_need(f->c, VID_BALLOON, 0, "virtio-balloon");
        if (bytes + (1u << 20) > alloc_left())
                probe_fail("freepage: %llu bytes do not fit in %llu", U64(bytes),
                           U64(alloc_left()));
        f->bytes = bytes;
        f->mem = alloc_mem(bytes, RANGE);
}

void scenario_freepage(const struct boot_info *bi)
{
        struct fp f = {0};
        uint32_t pages, ranges, cmd;
        char line[64];

        setup(&f, bi, 2 * RANGE);
        pages = (uint32_t)(f.bytes / PAGE);
        vctx_mode(f.c, f.d, true);
        bring_up(&f);
        vctx_print_mode("freepage", f.d);
        print("probe: freepage hinting %u reporting %u queues %u\n", f.hintq ? 1u : 0u,
              f.reportq ? 1u : 0u, 2u + (f.hintq ? 1u : 0u) + (f.reportq ? 1u : 0u));
        if (!f.hintq || !f.reportq)
                probe_fail("freepage: the device offers neither or only one of the features");
        touch(&f);
        print("probe: freepage touched %u pages\n", pages);
        vctx_wait_line(f.c, line, sizeof(line));

        ranges = send_ranges(&f, f.reportq, 8);
        print("probe: freepage reported %u pages in %u ranges, %u read back zero\n", pages, ranges,
              zero_pages(&f));
        vctx_wait_line(f.c, line, sizeof(line));

        touch(&f);
        print("probe: freepage touched %u pages again\n", pages);
        vctx_wait_line(f.c, line, sizeof(line)); /* the host has started a run */

        cmd = virtio_cfg32(f.d, CFG_CMD_ID);
        if (cmd == CMD_ID_STOP || cmd == CMD_ID_DONE)
                probe_fail("freepage: no hinting run (free_page_hint_cmd_id %u)", cmd);
        wait_config_irq(&f);
        ranges = hint_round(&f, cmd);
        print("probe: freepage command %u, hinted %u pages in %u ranges, host answered DONE, %u "
              "read back zero\n",
              cmd, pages, ranges, zero_pages(&f));
        vctx_wait_line(f.c, line, sizeof(line));
        vctx_check_irqs(f.d);
        virtio_reset(f.d);
        virtio_irq_disable(f.d);
}

void scenario_freepage_idle(const struct boot_info *bi)
{
        struct fp f = {0};
        uint64_t mib = 32;
        size_t len;
        const char *v = cmdline_find(bi->cmdline, "probe.fp_mib", &len);

        if (v && !str_parse_u64(v, len, 10, &mib))
                probe_fail("freepage-idle: bad probe.fp_mib");
        setup(&f, bi, mib << 20);
        vctx_mode(f.c, f.d, true);
        bring_up(&f);
        touch(&f);
        if (f.reportq)
                send_ranges(&f, f.reportq, 8);
        print("probe: freepage-idle ready\n");
        /* The device starts at STOP: a run the host started before this loop looks is
         * still a change. */
        for (uint32_t last = CMD_ID_STOP;;) {
                uint32_t cmd = virtio_cfg32(f.d, CFG_CMD_ID);

                if (f.hintq && cmd != last && cmd != CMD_ID_STOP && cmd != CMD_ID_DONE) {
                        hint_round(&f, cmd);
                        print("probe: freepage-idle hinted %u\n", cmd);
                        cmd = CMD_ID_DONE;
                }
                last = cmd;
                virtio_idle(f.d);
        }
}
