/*
 * `snapshot`: a guest that keeps working until the host tells it to check itself, so that
 * the host can pause, snapshot, kill, restore and resume it anywhere in between.
 *
 * Devices: the first virtio-blk drive (writable, at least SNAP_SECTORS sectors), virtio-vsock
 * and virtio-rng; blk and vsock in interrupt mode (the periodic LAPIC timer bounds every
 * halt), rng polled. At start it fills a memory pattern, connects to host port 5678 and
 * prints `probe: snapshot ready cid N counter 0xADDR` (where the counter lives, for the host
 * to read it in guest memory). Each round of its loop then:
 *   - increments a counter in memory;
 *   - writes sector (w % SNAP_SECTORS) with a pattern of the write number w, reads it back
 *     into the next of DMA_PAGES buffers only the device writes, checks it and keeps the
 *     buffer's hash;
 *   - reads 32 bytes of entropy into the next of DMA_PAGES other device-written buffers and
 *     keeps their hash (every buffer has a page of its own that the vCPU never writes, so
 *     after a restore most of them still hold what the device wrote before the snapshot);
 *   - on the vsock stream sends "tick N\n" once the previous "tock N-1\n" came back; an
 *     event-queue TRANSPORT_RESET (a restore) or an RST drops the connection and it
 *     reconnects from a new local port;
 *   - lets the timer interrupt in, and polls COM1 for a command line.
 * Commands: `status` prints `probe: snapshot status counter C writes W rng R ticks T resets
 * X`; `check` verifies the memory pattern, the device-written buffers against the hashes
 * the vCPU kept (a restored memory that missed the VMM's own writes fails here), every
 * sector written so far, a fresh entropy request, a tick/tock round trip on the current
 * connection and that the LAPIC timer still ticks, prints `probe: snapshot check counter C
 * writes W rng R ticks T resets X`, and ends (`probe: ok snapshot`).
 *
 * `clone`: a guest to restore many times from one snapshot at once (docs/snapshots.md,
 * "Fan-out"). Devices, each when there is one: virtio-vsock and virtio-net, both in interrupt
 * mode, and COM1's receive interrupt, so the guest halts between events. At start it writes
 * one word in each page of probe.touch_mib MiB (default 16: the working set a restored clone
 * reads back), turns kvmclock on, connects to host port 5678 and prints `probe: clone ready
 * cid N mac M touched T MiB`. Then it serves: on vsock one "tick N" after each (re)connection
 * (a restore resets it) that the host answers with "tock N"; on virtio-net each frame of
 * ethertype 0x88b5 goes back to its sender with ethertype 0x88b6, this guest's MAC as source
 * and "clone " before its payload; on COM1 `ping` reads the word of every touched page and
 * prints `probe: clone pong N sum S ticks T resets R frames F clock MS` (MS: kvmclock in
 * milliseconds), and `quit` ends the run. When the DSDT describes a VM generation ID (a
 * _CID "VM_Gen_Counter" device's ADDR, and the Generic Event Device's interrupt) it prints
 * `probe: clone vmgenid 0xADDR gsi G id ID` at start, counts the event device's interrupts
 * and reads the id in each, and the pong ends with `genid ID notified ID2 genirqs N` (the
 * id now, the one the last interrupt read, how many interrupts came).
 *
 * `heartbeat`: no devices; prints `probe: heartbeat ready` and then writes its round counter's
 * low byte to port 0x80 (an exit to the VMM) in a loop until a line arrives on COM1, when it
 * prints `probe: heartbeat N rounds` and ends. A restored heartbeat guest exits within a few
 * instructions of running: the benchmarks' "first guest instruction after a restore".
 */
#include "acpi.h"
#include "alloc.h"
#include "aml.h"
#include "arch/x86/layout.h"
#include "cmdline.h"
#include "cpu.h"
#include "idt.h"
#include "io.h"
#include "probe.h"
#include "scenarios.h"
#include "serial.h"
#include "str.h"
#include "vctx.h"

#define SNAP_SECTORS  16
#define SECTOR        512u
#define PATTERN_WORDS 8192 /* 64 KiB */
#define DMA_PAGES     8    /* device-written buffers, used in turn */
#define BLK_T_IN      0
#define BLK_T_OUT     1

#define VSOCK_F_STREAM        0
#define OP_REQUEST            1
#define OP_RESPONSE           2
#define OP_RST                3
#define OP_SHUTDOWN           4
#define OP_RW                 5
#define OP_CREDIT_UPDATE      6
#define OP_CREDIT_REQUEST     7
#define TYPE_STREAM           1
#define HOST_CID              2
#define HOST_PORT             5678
#define FIRST_PORT            50000
#define BUF_ALLOC             (64u << 10)
#define RX_BUF                1024
#define RX_BUFS               8
#define QSIZE                 16
#define EVENT_TRANSPORT_RESET 0
#define LINE_MAX              64

struct vsock_hdr {
        uint64_t src_cid, dst_cid;
        uint32_t src_port, dst_port, len;
        uint16_t type, op;
        uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

enum conn_state { C_IDLE, C_CONNECTING, C_OPEN };

struct snap {
        /* blk */
        struct virtio_dev *blk;
        struct virtq bq;
        struct {
                uint32_t type, reserved;
                uint64_t sector;
        } * bhdr;
        uint8_t *bstatus, *wbuf, *rbuf[DMA_PAGES];
        uint64_t rbuf_hash[DMA_PAGES];
        uint64_t last_write[SNAP_SECTORS]; /* write number held by each sector, +1 */
        /* rng */
        struct virtio_dev *rng;
        struct virtq rq;
        uint8_t *rngbuf[DMA_PAGES];
        uint64_t rng_hash[DMA_PAGES];
        /* vsock */
        struct virtio_dev *vs;
        struct virtq vrx, vtx, vev;
        uint64_t cid;
        uint8_t *rxbufs;
        uint8_t buf_of[QSIZE];
        struct vsock_hdr *txh;
        uint8_t *txdata;
        uint32_t *event;
        enum conn_state state;
        uint32_t port, retry;
        uint32_t fwd_cnt, tx_cnt, peer_buf_alloc, peer_fwd_cnt;
        bool outstanding;
        char line[LINE_MAX];
        uint32_t line_len;
        bool one_tick;       /* clone: one tick per connection, not a stream */
        uint64_t conn_ticks; /* ticks when the connection was made */
        /* progress */
        volatile uint64_t *counter;
        uint64_t writes, rngs, ticks, resets;
        uint64_t *pattern;
        char cmd[LINE_MAX];
        uint32_t cmd_len;
};

static uint64_t hash(const void *p, uint64_t n)
{
        const uint8_t *b = p;
        uint64_t h = 0xcbf29ce484222325ull;

        for (uint64_t i = 0; i < n; i++)
                h = (h ^ b[i]) * 0x100000001b3ull;
        return h;
}

static uint64_t pattern_word(uint64_t i)
{
        return (i + 1) * 0x9e3779b97f4a7c15ull;
}

/* ---- blk ---- */

static void fill_write(uint8_t *p, uint64_t w)
{
        uint64_t *q = (uint64_t *)p;

        for (unsigned i = 0; i < SECTOR / 8; i++)
                q[i] = (w << 8) ^ (i * 0x0101010101010101ull);
}

static bool is_write(const uint8_t *p, uint64_t w)
{
        const uint64_t *q = (const uint64_t *)p;

        for (unsigned i = 0; i < SECTOR / 8; i++)
                if (q[i] != ((w << 8) ^ (i * 0x0101010101010101ull)))
                        return false;
        return true;
}

static void blk_io(struct snap *s, uint32_t type, uint64_t sector, uint8_t *buf)
{
        struct vbuf v[3] = {
            {s->bhdr, 16, false}, {buf, SECTOR, type == BLK_T_IN}, {s->bstatus, 1, true}};

        s->bhdr->type = type;
        s->bhdr->reserved = 0;
        s->bhdr->sector = sector;
        *s->bstatus = 0xff;
        virtq_call(&s->bq, v, 3, true);
        if (*s->bstatus != 0)
                probe_fail("snapshot: blk %s of sector %llu: status 0x%x",
                           type == BLK_T_IN ? "read" : "write", U64(sector), *s->bstatus);
}

static void blk_round(struct snap *s)
{
        uint64_t w = s->writes, sector = w % SNAP_SECTORS;
        uint8_t *rbuf = s->rbuf[w % DMA_PAGES];

        fill_write(s->wbuf, w);
        blk_io(s, BLK_T_OUT, sector, s->wbuf);
        s->last_write[sector] = w + 1;
        blk_io(s, BLK_T_IN, sector, rbuf);
        if (!is_write(rbuf, w))
                probe_fail("snapshot: sector %llu does not hold write %llu", U64(sector), U64(w));
        s->rbuf_hash[w % DMA_PAGES] = hash(rbuf, SECTOR);
        s->writes = w + 1;
}

/* ---- rng ---- */

static void rng_round(struct snap *s)
{
        uint8_t *buf = s->rngbuf[s->rngs % DMA_PAGES];
        struct vbuf v = {buf, 32, true};
        uint32_t len;

        len = virtq_call(&s->rq, &v, 1, false);
        if (len != 32)
                probe_fail("snapshot: entropy request returned %u bytes", len);
        s->rng_hash[s->rngs % DMA_PAGES] = hash(buf, 32);
        s->rngs++;
}

/* ---- vsock ---- */

static void post_rx(struct snap *s, unsigned i)
{
        struct vbuf b = {s->rxbufs + (uint64_t)i * RX_BUF, RX_BUF, true};
        int head = virtq_add(&s->vrx, &b, 1, false);

        if (head < 0)
                probe_fail("snapshot: vsock rx ring full");
        s->buf_of[head] = (uint8_t)i;
}

static void vsend(struct snap *s, uint16_t op, const void *data, uint32_t len)
{
        struct vbuf b[2] = {{s->txh, sizeof(*s->txh), false}, {s->txdata, len, false}};

        *s->txh = (struct vsock_hdr){.src_cid = s->cid,
                                     .dst_cid = HOST_CID,
                                     .src_port = s->port,
                                     .dst_port = HOST_PORT,
                                     .len = len,
                                     .type = TYPE_STREAM,
                                     .op = op,
                                     .buf_alloc = BUF_ALLOC,
                                     .fwd_cnt = s->fwd_cnt};
        if (len)
                memcpy(s->txdata, data, len);
        virtq_call(&s->vtx, b, len ? 2 : 1, true);
        s->tx_cnt += len;
}

static void vconnect(struct snap *s)
{
        s->port = FIRST_PORT + (uint32_t)s->resets * 16 + (s->retry++ % 16);
        s->fwd_cnt = s->tx_cnt = 0;
        s->peer_buf_alloc = s->peer_fwd_cnt = 0;
        s->outstanding = false;
        s->line_len = 0;
        s->state = C_CONNECTING;
        s->conn_ticks = s->ticks;
        vsend(s, OP_REQUEST, NULL, 0);
}

static void vdrop(struct snap *s)
{
        s->state = C_IDLE;
        s->outstanding = false;
}

static void vline(struct snap *s)
{
        uint64_t n;

        s->line[s->line_len] = '\0';
        if (s->line_len < 6 || memcmp(s->line, "tock ", 5) != 0 ||
            !str_parse_u64(s->line + 5, s->line_len - 5, 10, &n))
                probe_fail("snapshot: vsock line \"%s\"", s->line);
        if (!s->outstanding || n != s->ticks)
                probe_fail("snapshot: vsock \"%s\" while tick %llu was %s", s->line, U64(s->ticks),
                           s->outstanding ? "outstanding" : "answered");
        s->ticks++;
        s->outstanding = false;
        s->line_len = 0;
}

static void vpacket(struct snap *s, const struct vsock_hdr *h, const uint8_t *data)
{
        if (h->dst_port != s->port || h->src_port != HOST_PORT || s->state == C_IDLE) {
                /* A packet of a connection from before a reset: nothing to do. */
                return;
        }
        s->peer_buf_alloc = h->buf_alloc;
        s->peer_fwd_cnt = h->fwd_cnt;
        switch (h->op) {
        case OP_RESPONSE:
                if (s->state == C_CONNECTING)
                        s->state = C_OPEN;
                return;
        case OP_RST:
        case OP_SHUTDOWN:
                if (h->op == OP_SHUTDOWN)
                        vsend(s, OP_RST, NULL, 0);
                vdrop(s);
                return;
        case OP_CREDIT_REQUEST:
                vsend(s, OP_CREDIT_UPDATE, NULL, 0);
                return;
        case OP_RW:
                for (uint32_t i = 0; i < h->len; i++) {
                        if (data[i] == '\n') {
                                vline(s);
                                continue;
                        }
                        if (s->line_len + 1 >= LINE_MAX)
                                probe_fail("snapshot: vsock line too long");
                        s->line[s->line_len++] = (char)data[i];
                }
                s->fwd_cnt += h->len;
                return;
        default:
                return;
        }
}

static void vpoll(struct snap *s)
{
        uint16_t head;
        uint32_t len;
        bool posted = false;

        while (virtq_get(&s->vev, &head, &len)) {
                struct vbuf b = {s->event, 4, true};

                if (len >= 4 && *s->event == EVENT_TRANSPORT_RESET) {
                        s->resets++;
                        vdrop(s);
                }
                virtq_add(&s->vev, &b, 1, false);
                virtq_kick(&s->vev);
        }
        while (virtq_get(&s->vrx, &head, &len)) {
                unsigned i = s->buf_of[head];
                const uint8_t *buf = s->rxbufs + (uint64_t)i * RX_BUF;
                struct vsock_hdr h;

                if (len < sizeof(h))
                        probe_fail("snapshot: vsock rx packet of %u bytes", len);
                memcpy(&h, buf, sizeof(h));
                if (h.len > len - sizeof(h))
                        probe_fail("snapshot: vsock payload of %u bytes in %u", h.len, len);
                vpacket(s, &h, buf + sizeof(h));
                post_rx(s, i);
                posted = true;
        }
        if (posted)
                virtq_kick(&s->vrx);
}

static void vsock_round(struct snap *s)
{
        char tick[32];
        uint32_t n;

        vpoll(s);
        if (s->state == C_IDLE) {
                vconnect(s);
                return;
        }
        if (s->state != C_OPEN || s->outstanding || (s->one_tick && s->ticks > s->conn_ticks))
                return;
        vctx_fmt(tick, sizeof(tick), "tick %llu\n", U64(s->ticks));
        n = (uint32_t)str_len(tick);
        if (s->peer_buf_alloc - (s->tx_cnt - s->peer_fwd_cnt) < n)
                return; /* no credit yet */
        s->outstanding = true;
        vsend(s, OP_RW, tick, n);
}

/* ---- the loop ---- */

static void print_state(const struct snap *s, const char *what)
{
        print("probe: snapshot %s counter %llu writes %llu rng %llu ticks %llu resets %llu\n", what,
              U64(*s->counter), U64(s->writes), U64(s->rngs), U64(s->ticks), U64(s->resets));
}

static void check(struct snap *s)
{
        uint8_t *sec = alloc_mem(SECTOR, 512);
        uint64_t ticks = s->ticks, t0;
        uint32_t timer;

        for (uint64_t i = 0; i < PATTERN_WORDS; i++)
                if (s->pattern[i] != pattern_word(i))
                        probe_fail("snapshot: memory pattern word %llu changed", U64(i));
        for (unsigned i = 0; i < DMA_PAGES; i++) {
                if (i < s->writes && hash(s->rbuf[i], SECTOR) != s->rbuf_hash[i])
                        probe_fail("snapshot: blk read buffer %u is not what the device wrote", i);
                if (i < s->rngs && hash(s->rngbuf[i], 32) != s->rng_hash[i])
                        probe_fail("snapshot: entropy buffer %u is not what the device wrote", i);
        }
        for (unsigned i = 0; i < SNAP_SECTORS; i++) {
                if (!s->last_write[i])
                        continue;
                blk_io(s, BLK_T_IN, i, sec);
                if (!is_write(sec, s->last_write[i] - 1))
                        probe_fail("snapshot: sector %u lost write %llu", i,
                                   U64(s->last_write[i] - 1));
        }
        rng_round(s);
        /* One more tick/tock round trip on the current (possibly new) connection. */
        t0 = cpu_rdtsc();
        while (s->ticks < ticks + 1) {
                vsock_round(s);
                __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (cpu_rdtsc() - t0 > 8 * VIRTIO_WAIT_TSC)
                        probe_fail("snapshot: no vsock round trip (state %d)", s->state);
                virtio_idle(s->vs);
        }
        timer = virtio_ticks();
        t0 = cpu_rdtsc();
        while (virtio_ticks() - timer < 2) {
                if (cpu_rdtsc() - t0 > 4 * VIRTIO_WAIT_TSC)
                        probe_fail("snapshot: the LAPIC timer stopped");
                virtio_idle(s->vs);
        }
        vctx_check_irqs(s->blk);
        print_state(s, "check");
}

/* A command line from COM1, read without waiting; true when `check` ended the run. */
static bool poll_command(struct snap *s)
{
        while (serial_read_reg(UART_LSR) & UART_LSR_DR) {
                char ch = (char)serial_read_reg(UART_RBR);

                if (ch != '\n' && ch != '\r') {
                        if (s->cmd_len + 1 < LINE_MAX)
                                s->cmd[s->cmd_len++] = ch;
                        continue;
                }
                s->cmd[s->cmd_len] = '\0';
                s->cmd_len = 0;
                if (str_eq(s->cmd, "status")) {
                        print_state(s, "status");
                } else if (str_eq(s->cmd, "check")) {
                        check(s);
                        return true;
                } else if (s->cmd[0]) {
                        probe_fail("snapshot: unknown command \"%s\"", s->cmd);
                }
        }
        return false;
}

/* The vsock device (interrupt mode), its buffers and its event queue. */
static void setup_vsock(struct vctx *c, struct snap *s)
{
        struct virtq qs[3];
        struct vbuf evb;

        s->vs = vctx_need(c, VID_VSOCK, 0, "virtio-vsock");
        vctx_mode(c, s->vs, true);
        virtio_irq_setup(c->bi); /* the timer, also when no device uses interrupts */
        virtio_bring_up(s->vs, vctx_ring_features(c) | VBIT(VSOCK_F_STREAM), qs, 3, QSIZE);
        s->vrx = qs[0];
        s->vtx = qs[1];
        s->vev = qs[2];
        s->cid = virtio_cfg64(s->vs, 0);
        s->rxbufs = alloc_mem((uint64_t)RX_BUFS * RX_BUF, 4096);
        s->txh = alloc_zeroed(sizeof(*s->txh), 64);
        s->txdata = alloc_mem(RX_BUF, 64);
        s->event = alloc_zeroed(4, 4);
        for (unsigned i = 0; i < RX_BUFS; i++)
                post_rx(s, i);
        virtq_kick(&s->vrx);
        evb = (struct vbuf){s->event, 4, true};
        virtq_add(&s->vev, &evb, 1, false);
        virtq_kick(&s->vev);
}

/* The vsock stream open to the host (polling in turns with the timer). */
static void open_stream(struct snap *s, const char *who)
{
        uint64_t t0 = cpu_rdtsc();

        while (s->state != C_OPEN) {
                vsock_round(s);
                __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (cpu_rdtsc() - t0 > 8 * VIRTIO_WAIT_TSC)
                        probe_fail("%s: no vsock connection to host port %u", who, HOST_PORT);
                virtio_idle(s->vs);
        }
}

static void setup(struct vctx *c, struct snap *s)
{
        s->blk = vctx_need(c, VID_BLOCK, 0, "virtio-blk");
        s->rng = vctx_need(c, VID_RNG, 0, "virtio-rng");
        vctx_mode(c, s->blk, true);
        setup_vsock(c, s);
        virtio_bring_up(s->blk, vctx_ring_features(c), &s->bq, 1, QSIZE);
        virtio_bring_up(s->rng, vctx_ring_features(c), &s->rq, 1, QSIZE);
        vctx_print_mode("snapshot blk", s->blk);
        vctx_print_mode("snapshot vsock", s->vs);
        if (virtio_cfg64(s->blk, 0) < SNAP_SECTORS)
                probe_fail("snapshot: the drive has fewer than %u sectors", SNAP_SECTORS);
        s->bhdr = alloc_zeroed(16, 16);
        s->bstatus = alloc_zeroed(1, 1);
        s->wbuf = alloc_mem(SECTOR, 512);
        /* Pages of their own that only the devices write: a Diff snapshot holds them only if
         * the VMM's own writes are tracked. */
        for (unsigned i = 0; i < DMA_PAGES; i++) {
                s->rbuf[i] = alloc_zeroed(4096, 4096);
                s->rngbuf[i] = alloc_zeroed(4096, 4096);
        }
        s->counter = alloc_zeroed(8, 4096);
        s->pattern = alloc_mem(PATTERN_WORDS * 8, 4096);
        for (uint64_t i = 0; i < PATTERN_WORDS; i++)
                s->pattern[i] = pattern_word(i);
}

void scenario_snapshot(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct snap *s = alloc_zeroed(sizeof(*s), 64);

        setup(c, s);
        /* The stream first: the host sees the connection before the VM can be paused. */
        open_stream(s, "snapshot");
        print("probe: snapshot ready cid %llu counter 0x%llx\n", U64(s->cid),
              U64((uintptr_t)s->counter));
        for (;;) {
                (*s->counter)++;
                blk_round(s);
                rng_round(s);
                vsock_round(s);
                __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (poll_command(s))
                        return;
        }
}

void scenario_heartbeat(const struct boot_info *bi)
{
        uint64_t rounds = 0;

        (void)bi;
        print("probe: heartbeat ready\n");
        for (;;) {
                outb(0x80, (uint8_t)rounds++);
                if (serial_read_reg(UART_LSR) & UART_LSR_DR)
                        break;
        }
        print("probe: heartbeat %llu rounds\n", U64(rounds));
}

/* ---- clone ---- */

#define NET_F_MAC         5
#define NET_HDR           12
#define ETH_MAX           1514
#define NET_BUF           (NET_HDR + ETH_MAX)
#define NET_BUFS          8
#define ETHERTYPE_ASK     0x88b5
#define ETHERTYPE_ANSWER  0x88b6
#define COM1_WAKE_VECTOR  0x24
#define VMGENID_VECTOR    0x25
#define DEFAULT_TOUCH_MIB 16

struct clone_net {
        struct virtio_dev *d;
        struct virtq rx, tx;
        uint8_t mac[6];
        uint8_t *bufs, *out;
        uint8_t buf_of[QSIZE];
        uint64_t frames;
};

static void net_post(struct clone_net *n, unsigned i)
{
        struct vbuf b = {n->bufs + (uint64_t)i * NET_BUF, NET_BUF, true};
        int head = virtq_add(&n->rx, &b, 1, false);

        if (head < 0)
                probe_fail("clone: net rx ring full");
        n->buf_of[head] = (uint8_t)i;
}

static void net_setup(struct vctx *c, struct clone_net *n)
{
        struct virtq qs[2];

        vctx_mode(c, n->d, true);
        virtio_bring_up(n->d, vctx_ring_features(c) | VBIT(NET_F_MAC), qs, 2, QSIZE);
        n->rx = qs[0];
        n->tx = qs[1];
        for (unsigned i = 0; i < 6; i++)
                n->mac[i] = virtio_cfg8(n->d, i);
        n->bufs = alloc_mem((uint64_t)NET_BUFS * NET_BUF, 4096);
        n->out = alloc_zeroed(NET_BUF, 64);
        for (unsigned i = 0; i < NET_BUFS; i++)
                net_post(n, i);
        virtq_kick(&n->rx);
}

/* A frame asking (ETHERTYPE_ASK) goes back to its sender: this MAC as the source,
 * ETHERTYPE_ANSWER, "clone " before the payload. */
static void net_answer(struct clone_net *n, const uint8_t *f, uint32_t len)
{
        uint32_t payload = len - 14, out_len;
        struct vbuf b;

        if (payload > ETH_MAX - 14 - 6)
                payload = ETH_MAX - 14 - 6;
        memset(n->out, 0, NET_HDR);
        memcpy(n->out + NET_HDR, f + 6, 6);
        memcpy(n->out + NET_HDR + 6, n->mac, 6);
        n->out[NET_HDR + 12] = ETHERTYPE_ANSWER >> 8;
        n->out[NET_HDR + 13] = ETHERTYPE_ANSWER & 0xff;
        memcpy(n->out + NET_HDR + 14, "clone ", 6);
        memcpy(n->out + NET_HDR + 20, f + 14, payload);
        out_len = NET_HDR + 20 + payload;
        b = (struct vbuf){n->out, out_len, false};
        virtq_call(&n->tx, &b, 1, false);
        n->frames++;
}

static void net_poll(struct clone_net *n)
{
        bool posted = false;
        uint16_t head;
        uint32_t len;

        while (virtq_get(&n->rx, &head, &len)) {
                unsigned i = n->buf_of[head];
                const uint8_t *f = n->bufs + (uint64_t)i * NET_BUF + NET_HDR;

                if (len >= NET_HDR + 14 && len <= NET_BUF &&
                    ((uint32_t)f[12] << 8 | f[13]) == ETHERTYPE_ASK)
                        net_answer(n, f, len - NET_HDR);
                net_post(n, i);
                posted = true;
        }
        if (posted)
                virtq_kick(&n->rx);
}

/* ---- the guest's clock: kvmclock (pvclock), the clock a load's clock_realtime moves ---- */

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u

struct pvclock {
        volatile uint32_t version, pad0;
        volatile uint64_t tsc_timestamp, system_time;
        volatile uint32_t tsc_to_system_mul;
        volatile int8_t tsc_shift;
        volatile uint8_t flags, pad[2];
} __attribute__((packed));

static struct pvclock *kvmclock;

static void kvmclock_init(void)
{
        kvmclock = alloc_zeroed(sizeof(*kvmclock), 64);
        cpu_wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)kvmclock | 1);
}

/* Nanoseconds of the guest's kvmclock (0 when the hypervisor never filled it in). */
static uint64_t kvmclock_ns(void)
{
        uint32_t v;
        uint64_t ns;

        do {
                v = kvmclock->version;
                __asm__ __volatile__("" : : : "memory");
                uint64_t delta = cpu_rdtsc() - kvmclock->tsc_timestamp;

                if (kvmclock->tsc_shift < 0)
                        delta >>= -kvmclock->tsc_shift;
                else
                        delta <<= kvmclock->tsc_shift;
                ns = kvmclock->system_time +
                     (uint64_t)(((unsigned __int128)delta * kvmclock->tsc_to_system_mul) >> 32);
                __asm__ __volatile__("" : : : "memory");
        } while ((v & 1) || v != kvmclock->version);
        return v ? ns : 0;
}

static void com1_wake(struct isr_frame *f)
{
        (void)f; /* it only wakes the halted vCPU: the loop reads COM1 */
}

/* ---- the VM generation ID, found and watched as Linux's vmgenid driver and evged do ---- */

static const volatile uint8_t *genid; /* ADDR of the VM_Gen_Counter device; NULL: none */
static volatile uint64_t genid_irqs;  /* the Generic Event Device's interrupts */
static char genid_seen[2 * 16 + 1];   /* the id the last interrupt announced */

static void genid_hex(char out[2 * 16 + 1])
{
        static const char hex[] = "0123456789abcdef";

        for (unsigned i = 0; i < 16; i++) {
                out[2 * i] = hex[genid[i] >> 4];
                out[2 * i + 1] = hex[genid[i] & 15];
        }
        out[32] = '\0';
}

/* What the guest's _EVT would do: the id's device is notified, and its driver reads the id
 * again. */
static void genid_isr(struct isr_frame *f)
{
        (void)f;
        genid_irqs++;
        genid_hex(genid_seen);
}

static void genid_setup(const struct boot_info *bi, const struct acpi_madt *madt)
{
        struct acpi_root root;
        const struct acpi_sdt *fadt;
        struct aml_result *r = alloc_zeroed(sizeof(*r), 64);

        scenario_acpi(bi, &root);
        fadt = acpi_find(&root, "FACP");
        if (!fadt)
                probe_fail("clone: no FADT");
        aml_find_virtio(acpi_fadt_dsdt(fadt), r);
        if (!r->vmgenid)
                return;
        if (!r->ged)
                probe_fail("clone: a VM generation ID without a Generic Event Device");
        genid = (const volatile uint8_t *)(uintptr_t)r->vmgenid_addr;
        genid_hex(genid_seen);
        idt_set_handler(VMGENID_VECTOR, genid_isr);
        scenario_route_gsi(madt, r->ged_irq.gsi, VMGENID_VECTOR, r->ged_irq.level,
                           r->ged_irq.active_low);
        print("probe: clone vmgenid 0x%llx gsi %u id %s\n", U64(r->vmgenid_addr), r->ged_irq.gsi,
              genid_seen);
}

/* A command line from COM1; true when `quit` ended the run. */
static bool clone_command(struct snap *s, struct clone_net *n, const uint64_t *touched,
                          uint64_t pages)
{
        while (serial_read_reg(UART_LSR) & UART_LSR_DR) {
                char ch = (char)serial_read_reg(UART_RBR);
                uint64_t sum = 0;

                if (ch != '\n' && ch != '\r') {
                        if (s->cmd_len + 1 < LINE_MAX)
                                s->cmd[s->cmd_len++] = ch;
                        continue;
                }
                s->cmd[s->cmd_len] = '\0';
                s->cmd_len = 0;
                if (str_eq(s->cmd, "quit"))
                        return true;
                if (!str_eq(s->cmd, "ping")) {
                        if (s->cmd[0])
                                probe_fail("clone: unknown command \"%s\"", s->cmd);
                        continue;
                }
                /* The working set: one word of every touched page. */
                for (uint64_t p = 0; p < pages; p++)
                        sum += ((const volatile uint64_t *)touched)[p * 512];
                (*s->counter)++;
                print("probe: clone pong %llu sum %llx ticks %llu resets %llu frames %llu clock "
                      "%llu",
                      U64(*s->counter), U64(sum), U64(s->ticks), U64(s->resets),
                      U64(n->d ? n->frames : 0), U64(kvmclock_ns() / 1000000));
                if (genid) {
                        char now[2 * 16 + 1];

                        genid_hex(now);
                        /* genid: the id now; notified: the one the last interrupt saw. */
                        print(" genid %s notified %s genirqs %llu", now, genid_seen,
                              U64(genid_irqs));
                }
                print("\n");
        }
        return false;
}

void scenario_clone(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct snap *s = alloc_zeroed(sizeof(*s), 64);
        struct clone_net *n = alloc_zeroed(sizeof(*n), 64);
        struct acpi_madt madt;
        uint64_t mib = DEFAULT_TOUCH_MIB, pages, *touched;
        size_t len;
        const char *v = cmdline_find(bi->cmdline, "probe.touch_mib", &len);

        if (v && !str_parse_u64(v, len, 10, &mib))
                probe_fail("clone: probe.touch_mib is not a number");
        pages = mib << 8;
        touched = alloc_mem(pages * 4096, 4096);
        for (uint64_t p = 0; p < pages; p++)
                touched[p * 512] = pattern_word(p);
        s->counter = alloc_zeroed(8, 64);
        s->one_tick = true;
        kvmclock_init();
        virtio_irq_setup(c->bi); /* the timer and the local APIC, whatever the devices */
        if (virtio_find(c->devs, c->count, VID_VSOCK, 0))
                setup_vsock(c, s);
        n->d = virtio_find(c->devs, c->count, VID_NET, 0);
        if (n->d)
                net_setup(c, n);
        /* COM1's receive interrupt wakes the guest: a command is answered at once. */
        scenario_madt(bi, &madt);
        idt_set_handler(COM1_WAKE_VECTOR, com1_wake);
        scenario_route_isa_irq(&madt, X86_COM1_IRQ, COM1_WAKE_VECTOR);
        genid_setup(bi, &madt);
        serial_write_reg(UART_IER, UART_IER_RDI);
        if (s->vs)
                open_stream(s, "clone");
        print("probe: clone ready cid %llu mac %02x:%02x:%02x:%02x:%02x:%02x touched %llu MiB\n",
              U64(s->cid), n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
              U64(mib));
        for (;;) {
                if (s->vs)
                        vsock_round(s);
                if (n->d)
                        net_poll(n);
                if (clone_command(s, n, touched, pages))
                        break;
                cpu_sti_hlt();
                cpu_cli();
        }
        serial_write_reg(UART_IER, 0);
        if (s->vs) {
                virtio_reset(s->vs);
                virtio_irq_disable(s->vs);
        }
        if (n->d) {
                virtio_reset(n->d);
                virtio_irq_disable(n->d);
        }
}
