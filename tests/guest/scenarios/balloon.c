/*
 * `balloon`: virtio-balloon inflation and deflation, with pauses so the host can measure the
 * VMM's resident memory. Interrupt mode by default.
 *
 *   probe: balloon num_pages N actual 0 deflate_on_oom B
 *   probe: balloon touched N pages          then waits for a line on COM1
 *   probe: balloon inflated N pages, actual N   then waits for a line
 *   probe: balloon deflated N pages, actual 0
 *   probe: balloon N pages read back zero   (the host really dropped them)
 *
 * The pages come from the probe's allocator; each gets one 8-byte write (its page number) so
 * that the host backs it, then their PFNs go to the inflate queue in requests of 256.
 */
#include "alloc.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define BALLOON_F_DEFLATE_ON_OOM 2
#define PAGE                     4096ull
#define PFNS_PER_REQ             256
#define QSIZE                    16
#define CFG_NUM_PAGES            0
#define CFG_ACTUAL               4

static void transfer(struct virtq *q, const uint32_t *pfns, uint32_t count)
{
        uint32_t done = 0, pending = 0;
        uint16_t head;
        uint32_t len;

        while (done < count || pending) {
                /* Keep the ring busy; one request per PFNS_PER_REQ pages. */
                while (done < count && q->num_free > 0) {
                        uint32_t n = count - done < PFNS_PER_REQ ? count - done : PFNS_PER_REQ;
                        struct vbuf b = {pfns + done, 4 * n, false};

                        if (virtq_add(q, &b, 1, false) < 0)
                                break;
                        done += n;
                        pending++;
                }
                virtq_kick(q);
                if (!virtq_wait(q, &head, &len, VIRTIO_WAIT_TSC))
                        probe_fail("balloon queue %u: no answer", q->index);
                pending--;
        }
}

void scenario_balloon(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct virtio_dev *d = vctx_need(c, VID_BALLOON, 0, "virtio-balloon");
        struct virtq qs[2];
        uint32_t num, *pfns, kept = 0;
        uint8_t *pages;
        char line[64];

        vctx_mode(c, d, true);
        virtio_bring_up(d, vctx_ring_features(c) | VBIT(BALLOON_F_DEFLATE_ON_OOM), qs, 2, QSIZE);
        vctx_print_mode("balloon", d);
        num = virtio_cfg32(d, CFG_NUM_PAGES);
        print("probe: balloon num_pages %u actual %u deflate_on_oom %u\n", num,
              virtio_cfg32(d, CFG_ACTUAL), (d->features & VBIT(BALLOON_F_DEFLATE_ON_OOM)) ? 1 : 0);
        if (num == 0)
                probe_fail("balloon target is 0 pages");
        if ((uint64_t)num * PAGE + (1u << 20) > alloc_left())
                probe_fail("balloon: %u pages do not fit in %llu free bytes", num,
                           U64(alloc_left()));
        pfns = alloc_mem(4ull * num, 4096);
        pages = alloc_mem((uint64_t)num * PAGE, PAGE);
        for (uint32_t i = 0; i < num; i++) {
                uint64_t *p = (uint64_t *)(pages + i * PAGE);

                *p = ((uint64_t)(uintptr_t)p / PAGE) | 0x5a00000000000000ull;
                pfns[i] = (uint32_t)((uintptr_t)p / PAGE);
        }
        print("probe: balloon touched %u pages\n", num);
        vctx_wait_line(c, line, sizeof(line));

        transfer(&qs[0], pfns, num);
        virtio_cfg_write32(d, CFG_ACTUAL, num);
        print("probe: balloon inflated %u pages, actual %u\n", num, virtio_cfg32(d, CFG_ACTUAL));
        vctx_wait_line(c, line, sizeof(line));

        transfer(&qs[1], pfns, num);
        virtio_cfg_write32(d, CFG_ACTUAL, 0);
        print("probe: balloon deflated %u pages, actual %u\n", num, virtio_cfg32(d, CFG_ACTUAL));
        for (uint32_t i = 0; i < num; i++)
                if (*(volatile uint64_t *)(pages + i * PAGE) != 0)
                        kept++;
        if (kept)
                print("probe: balloon %u of %u pages kept their contents\n", kept, num);
        else
                print("probe: balloon %u pages read back zero\n", num);
        vctx_check_irqs(d);
        virtio_reset(d);
        virtio_irq_disable(d);
}
