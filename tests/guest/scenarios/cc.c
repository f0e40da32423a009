/*
 * Confidential guests end to end (README.md, "Confidential platforms"): the guest side of
 * the VMM's sev, pef and s390-pv models (lib/cc) with virtio devices that only ever see
 * memory the guest shared (lib/virtio under restricted memory access: ACCESS_PLATFORM,
 * rings in a shared pool, every buffer bounced).
 *
 *   cc-PLATFORM-io       plant a secret in private memory, go secure, share a pool, then
 *                        blk, net and vsock through it; the secret must be intact at the
 *                        end (probe.cc.peek=1: pause first so the host can read its page)
 *   cc-PLATFORM-attack   a driver that asks the devices and the platform for what they must
 *                        refuse (CC-2 .. CC-6, CC-12); one line per case
 *   cc-secret            plant, go secure, pause for the host, re-read: no devices
 *   cc-peek              pages of known contents, then the secret, shown to the host at each
 *                        step (the known-plaintext attack on its reads; sev's conversion)
 *   cc-hammer            a guest writing and reading a page in a tight loop while the host
 *                        reads that page, the loop's code and its stack
 *   cc-stress            blk reads into a granule unshared while they are in flight, round
 *                        after round, while the host reads memory and flushes metrics
 *
 * The secret is "CC-SECRET-" followed by probe.cc.secret (the host's random token),
 * repeated over one 4 KiB page that sits alone in its 64 KiB granule. It is never copied to
 * memory a device can see and never printed.
 */
#include "alloc.h"
#include "cc.h"
#include "cmdline.h"
#include "cpu.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define PAGE          4096ull
#define GRANULE_MAX   0x10000ull /* the largest share granule (pef) */
#define POOL_SIZE     (512ull << 10)
#define SECTOR        512u
#define QSIZE         16
#define OBSERVE_TICKS 30 /* ~0.5 s of local APIC timer ticks */
#define TOKEN_MAX     32
#define FAR_AWAY      0x10000000000ull /* 1 TiB: no test VM has RAM there */
#define MMIO_HOLE     0xd0000000ull

#define BLK_T_IN    0
#define BLK_T_OUT   1
#define BLK_S_OK    0
#define BLK_S_IOERR 1
#define BLK_S_UNSET 0xff

struct blk_hdr {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
};

struct ccx {
        struct vctx *c;
        struct cc_info p;
        uint8_t *secret; /* one page, alone in a 64 KiB granule */
        char pattern[16 + TOKEN_MAX];
        size_t pattern_len;
        uint8_t *pool;
};

/* ---- the secret ---- */

static void fill_secret(const struct ccx *x, uint8_t *page)
{
        size_t k = 0;

        for (uint64_t i = 0; i < PAGE; i++) {
                page[i] = (uint8_t)x->pattern[k];
                if (++k == x->pattern_len)
                        k = 0;
        }
}

/* Whether page holds the secret's pattern. */
static bool holds_secret(const struct ccx *x, const uint8_t *page)
{
        const volatile uint8_t *p = page;
        size_t k = 0;

        for (uint64_t i = 0; i < PAGE; i++) {
                if (p[i] != (uint8_t)x->pattern[k])
                        return false;
                if (++k == x->pattern_len)
                        k = 0;
        }
        return true;
}

static bool secret_intact(const struct ccx *x)
{
        return holds_secret(x, x->secret);
}

static void plant_secret(struct ccx *x)
{
        size_t len;
        const char *v = cmdline_find(x->c->bi->cmdline, "probe.cc.secret", &len);
        char token[TOKEN_MAX + 1];

        if (v && len > 0 && len <= TOKEN_MAX) {
                memcpy(token, v, len);
                token[len] = '\0';
        } else {
                vctx_fmt(token, sizeof(token), "%016llx", U64(cpu_rdtsc() * 0x9e3779b97f4a7c15ull));
        }
        vctx_fmt(x->pattern, sizeof(x->pattern), "CC-SECRET-%s", token);
        x->pattern_len = str_len(x->pattern);
        x->secret = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        fill_secret(x, x->secret);
        print("probe: cc secret planted: 4096 bytes at 0x%llx\n", U64((uintptr_t)x->secret));
}

static void check_secret(const struct ccx *x)
{
        if (!secret_intact(x))
                probe_fail("the secret in private memory changed");
        print("probe: cc secret intact\n");
}

/* probe.cc.peek=1: the host reads the secret's page (GET /vm/memory) meanwhile. */
static void peek_pause(struct ccx *x, bool always)
{
        size_t len;
        const char *v = cmdline_find(x->c->bi->cmdline, "probe.cc.peek", &len);
        char line[64];

        if (!always && !(v && len == 1 && v[0] == '1'))
                return;
        print("probe: cc waiting for the host (secret at 0x%llx)\n", U64((uintptr_t)x->secret));
        vctx_wait_line(x->c, line, sizeof(line));
}

/* ---- platform ---- */

static const char *via_name(unsigned via)
{
        return via == (CC_VIA_ACPI | CC_VIA_CMDLINE) ? "acpi and cmdline"
               : via == CC_VIA_ACPI                  ? "acpi"
                                                     : "cmdline";
}

static void open_platform(struct ccx *x, const struct boot_info *bi, enum cc_kind want)
{
        x->c = vctx_get(bi);
        cc_discover(bi, &x->p);
        if (x->p.callwin)
                print("probe: cc platform %s, call window 0x%llx (via %s)\n", x->p.name,
                      U64(x->p.callwin), via_name(x->p.via));
        else
                print("probe: cc platform %s (via %s)\n", x->p.name, via_name(x->p.via));
        if (want != CCK_NONE && x->p.kind != want)
                probe_fail("the VM's platform is %s", x->p.name);
        if (x->p.kind == CCK_NONE)
                probe_fail("no confidential platform (cc.platform=)");
}

static void go_secure(struct ccx *x)
{
        const char *err = cc_go_secure(&x->p);

        if (err)
                probe_fail("going secure: %s", err);
        if (x->p.kind == CCK_PEF)
                print("probe: cc secure: UV_ESM ok\n");
        else if (x->p.kind == CCK_S390)
                print("probe: cc secure: DIAG 0x308 subcode 10 (PV IPL) ok\n");
}

static void share_pool(struct ccx *x)
{
        const char *err;

        x->pool = alloc_mem(POOL_SIZE, GRANULE_MAX);
        err = cc_share(&x->p, x->pool, POOL_SIZE);
        if (err)
                probe_fail("sharing the pool: %s", err);
        virtio_dma_restrict(x->pool, POOL_SIZE);
        print("probe: cc shared pool: %llu KiB at 0x%llx\n", U64(POOL_SIZE >> 10),
              U64((uintptr_t)x->pool));
}

/* ---- blk helpers (requests built by hand around chosen buffers) ---- */

static void set_desc(struct virtq *q, uint16_t i, const void *addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
        q->desc[i].addr = (uint64_t)(uintptr_t)addr;
        q->desc[i].len = len;
        q->desc[i].flags = flags;
        q->desc[i].next = next;
}

/* A polled blk request through the normal (bounced, when restricted) path. */
static uint8_t blk_call(struct virtq *q, uint32_t type, uint64_t sector, void *data, uint32_t len,
                        bool dev_writes)
{
        struct blk_hdr *h = alloc_zeroed(sizeof(*h), 16);
        uint8_t *st = alloc_mem(1, 1);
        struct vbuf v[3] = {{h, sizeof(*h), false}, {data, len, dev_writes}, {st, 1, true}};

        h->type = type;
        h->sector = sector;
        *st = BLK_S_UNSET;
        virtq_call(q, v, 3, false);
        return *st;
}

static bool is_sector(const uint8_t *p, uint32_t i)
{
        return memcmp(p, "SECT", 4) == 0 && load_le32(p + 4) == i && p[SECTOR - 1] == (uint8_t)i;
}

/* Waits for DEVICE_NEEDS_RESET or a used element, a bounded time (polling the TSC). */
static bool needs_reset_soon(struct virtio_dev *d, struct virtq *q)
{
        uint64_t t0 = cpu_rdtsc();
        uint16_t head;
        uint32_t len;

        while (cpu_rdtsc() - t0 < VIRTIO_WAIT_TSC / 4) {
                if (virtio_status(d) & VSTAT_NEEDS_RESET)
                        return true;
                if (virtq_get(q, &head, &len))
                        return false;
                cpu_pause();
        }
        return false;
}

/* pef and s390-pv start as ordinary VMs: a device works from ordinary memory (offering
 * ACCESS_PLATFORM from boot, CC-9); once the guest is secure the same rings are private, so
 * the request published before the transition is refused and the device needs a reset. */
static void transition_with_device(struct ccx *x, struct virtio_dev *d)
{
        struct virtq q;
        uint8_t *buf = alloc_zeroed(SECTOR, 64);
        struct blk_hdr *h = alloc_zeroed(sizeof(*h), 16);
        uint8_t *st = alloc_mem(1, 1);
        struct vbuf v[3] = {{h, sizeof(*h), false}, {buf, SECTOR, true}, {st, 1, true}};
        uint8_t s;

        virtio_bring_up(d, vctx_ring_features(x->c), &q, 1, QSIZE);
        if (!(d->features & VBIT(VF_ACCESS_PLATFORM)))
                probe_fail("blk0 does not offer ACCESS_PLATFORM before the transition (CC-9)");
        s = blk_call(&q, BLK_T_IN, 0, buf, SECTOR, true);
        if (s != BLK_S_OK || !is_sector(buf, 0))
                probe_fail("blk0 read before the transition: status 0x%x", s);
        print("probe: cc before the transition: blk0 offers ACCESS_PLATFORM, read sector 0 from "
              "ordinary memory ok\n");
        /* A request in flight across the transition: published now, notified after. */
        memset(buf, 0x5a, SECTOR);
        *st = BLK_S_UNSET;
        h->sector = 1;
        if (virtq_add(&q, v, 3, false) < 0)
                probe_fail("blk0 ring full");
        go_secure(x);
        vmb();
        virtio_write(d, VMMIO_QUEUE_NOTIFY, 0);
        if (!needs_reset_soon(d, &q) || *st != BLK_S_UNSET || buf[0] != 0x5a)
                probe_fail("after the transition blk0 still used its (now private) rings: status "
                           "0x%x, request status 0x%x",
                           virtio_status(d), *st);
        print("probe: cc after the transition: the request in flight was not served, blk0 needs "
              "reset (its rings are private now)\n");
        virtio_reset(d);
}

/* CC-5 from the guest's side: rings in private memory are refused. */
static const char *private_rings(struct ccx *x, struct virtio_dev *d, uint8_t *rings)
{
        struct virtq q;
        const char *err = virtio_begin(d);

        if (!err)
                err = virtio_negotiate(d, vctx_ring_features(x->c));
        if (err)
                probe_fail("blk0: %s", err);
        err = virtq_setup_at(&q, d, 0, QSIZE, rings);
        virtio_reset(d);
        return err;
}

/* ---- cc-PLATFORM-io ---- */

static void cc_io(const struct boot_info *bi, enum cc_kind want)
{
        struct ccx *x = (vctx_get(bi), alloc_zeroed(sizeof(*x), 64));
        struct virtio_dev *blk;
        uint8_t *rings;
        const char *err;

        open_platform(x, bi, want);
        blk = vctx_need(x->c, VID_BLOCK, 0, "virtio-blk");
        /* CC-1: every device is modern (discovery refuses legacy transports) and offers both
         * VERSION_1 and ACCESS_PLATFORM. */
        for (unsigned i = 0; i < x->c->count; i++) {
                struct virtio_dev *d = &x->c->devs[i];

                if (virtio_begin(d))
                        probe_fail("virtio 0x%llx: reset failed", U64(d->base));
                print("probe: cc device 0x%llx id %u offers VERSION_1 %u ACCESS_PLATFORM %u\n",
                      U64(d->base), d->id, (d->offered & VBIT(VF_VERSION_1)) ? 1u : 0u,
                      (d->offered & VBIT(VF_ACCESS_PLATFORM)) ? 1u : 0u);
                virtio_reset(d);
        }
        plant_secret(x);
        if (x->p.kind == CCK_SEV)
                print("probe: cc sev: every page is private from launch\n");
        else
                transition_with_device(x, blk);
        rings = alloc_mem(virtq_ring_bytes(QSIZE, true), PAGE);
        err = private_rings(x, blk, rings);
        if (!err || !str_eq(err, "QueueReady reads back 0"))
                probe_fail("blk0 accepted rings in private memory (%s)", err ? err : "ready");
        print("probe: cc rings in private memory: QueueReady 0\n");
        if (x->p.kind == CCK_S390) {
                static struct uv_cb_qui qui __attribute__((aligned(8)));

                memset(&qui, 0, sizeof(qui));
                qui.len = UV_CB_QUI_LEN;
                qui.cmd = UVC_QUI;
                if (cc_uvc(&x->p, &qui) != 0 || qui.rc != UVC_RC_EXECUTED ||
                    !(qui.calls[1] & 0x80) || !(qui.calls[1] & 0x40))
                        probe_fail("QUI: rc 0x%x calls %02x %02x", qui.rc, qui.calls[0],
                                   qui.calls[1]);
                print("probe: cc QUI: SET_SHARED_ACCESS and REMOVE_SHARED_ACCESS installed\n");
        }
        share_pool(x);

        scenario_blk(bi);
        if (virtio_find(x->c->devs, x->c->count, VID_NET, 0))
                scenario_net(bi);
        else
                print("probe: cc no virtio-net device, net skipped\n");
        if (virtio_find(x->c->devs, x->c->count, VID_VSOCK, 0))
                scenario_vsock(bi);
        else
                print("probe: cc no virtio-vsock device, vsock skipped\n");
        print("probe: cc %u buffers bounced through the shared pool\n", virtio_dma_bounced());

        peek_pause(x, false);
        check_secret(x);

        /* The pool goes private again: nothing the devices could reach is left. */
        if (x->p.kind == CCK_PEF) {
                int64_t r = cc_ucall(&x->p, UV_UNSHARE_ALL_PAGES, 0, 0, 0);
                if (r != U_SUCCESS)
                        probe_fail("UV_UNSHARE_ALL_PAGES returned %lld", (long long)r);
                for (uint64_t off = 0; off < POOL_SIZE; off += PAGE)
                        if (*(volatile uint64_t *)(x->pool + off))
                                probe_fail("pool page 0x%llx not zeroed by UV_UNSHARE_ALL_PAGES",
                                           U64((uintptr_t)x->pool + off));
                print("probe: cc UV_UNSHARE_ALL_PAGES ok, the pool reads zeros\n");
        } else {
                err = cc_unshare(&x->p, x->pool, POOL_SIZE);
                if (err)
                        probe_fail("unsharing the pool: %s", err);
                print("probe: cc pool unshared\n");
        }
        err = private_rings(x, blk, x->pool);
        if (!err || !str_eq(err, "QueueReady reads back 0"))
                probe_fail("blk0 accepted rings in the former pool (%s)", err ? err : "ready");
        print("probe: cc rings in the former pool: QueueReady 0\n");
        check_secret(x);
}

void scenario_cc_sev_io(const struct boot_info *bi)
{
        cc_io(bi, CCK_SEV);
}

void scenario_cc_pef_io(const struct boot_info *bi)
{
        cc_io(bi, CCK_PEF);
}

void scenario_cc_s390_io(const struct boot_info *bi)
{
        cc_io(bi, CCK_S390);
}

/* ---- cc-secret ---- */

void scenario_cc_secret(const struct boot_info *bi)
{
        struct ccx *x = (vctx_get(bi), alloc_zeroed(sizeof(*x), 64));

        open_platform(x, bi, CCK_NONE);
        plant_secret(x);
        go_secure(x);
        peek_pause(x, true);
        check_secret(x);
}

/* ---- cc-PLATFORM-attack ---- */

enum outcome { OBS_NONE, OBS_USED, OBS_RESET };

struct att {
        struct ccx x;
        struct virtio_dev *d;
        struct virtq q;
        uint64_t wanted;
        struct blk_hdr *hdr; /* shared (pool) */
        uint8_t *data;       /* shared, one sector */
        uint8_t *status;     /* shared */
        uint8_t *rings;      /* shared, for register cases */
        uint8_t *priv;       /* a private scratch page */
        uint8_t *target;     /* private: what the malformed platform calls aim at */
        uint8_t *spare;      /* a granule shared, then unshared under the device */
        unsigned cases, bad;
        char bad_names[256];
};

/* Waits for a used element or DEVICE_NEEDS_RESET, a bounded number of timer ticks. */
static enum outcome observe(struct virtio_dev *d, struct virtq *q, uint32_t *len)
{
        uint32_t t0 = virtio_ticks();
        uint16_t head;

        for (;;) {
                __asm__ __volatile__("sti; nop; cli" : : : "memory");
                if (virtq_get(q, &head, len)) {
                        virtq_reset_free(q);
                        return OBS_USED;
                }
                if (virtio_status(d) & VSTAT_NEEDS_RESET)
                        return OBS_RESET;
                if (virtio_ticks() - t0 >= OBSERVE_TICKS)
                        return OBS_NONE;
                virtq_want_irq(q, true);
                virtio_idle(d);
        }
}

static void fresh(struct att *a)
{
        virtio_bring_up(a->d, a->wanted, &a->q, 1, QSIZE);
}

/* A good request: a read of sector 0 through the bounce pool. */
static bool works(struct att *a)
{
        uint8_t *buf = alloc_zeroed(SECTOR, 64);
        struct blk_hdr *h = alloc_zeroed(sizeof(*h), 16);
        uint8_t *st = alloc_mem(1, 1);
        struct vbuf v[3] = {{h, sizeof(*h), false}, {buf, SECTOR, true}, {st, 1, true}};
        uint16_t head;
        uint32_t len;

        *st = BLK_S_UNSET;
        if (virtq_add(&a->q, v, 3, false) < 0)
                return false;
        virtq_kick(&a->q);
        if (!virtq_wait(&a->q, &head, &len, VIRTIO_WAIT_TSC))
                return false;
        return *st == BLK_S_OK && is_sector(buf, 0);
}

/* device: whether the case involved blk0 (it must work afterwards, after a reset if it
 * needs one); platform-call cases print no device suffix. */
static void record(struct att *a, const char *name, bool refused, const char *what, bool device)
{
        const char *after = "";
        bool dead = false;

        a->cases++;
        if (device) {
                if (!(virtio_status(a->d) & (VSTAT_NEEDS_RESET | VSTAT_FAILED)) &&
                    (virtio_status(a->d) & VSTAT_DRIVER_OK) && works(a)) {
                        after = "; device still works";
                } else {
                        fresh(a);
                        dead = !works(a);
                        after = dead ? "; DOES NOT WORK after reset" : "; works after reset";
                }
        }
        print("probe: cc-attack %s: %s (%s)%s\n", name, refused ? "refused" : "ACCEPTED", what,
              after);
        if (!refused || dead) {
                size_t l = str_len(a->bad_names);

                a->bad++;
                if (l + str_len(name) + 2 < sizeof(a->bad_names)) {
                        if (l)
                                a->bad_names[l++] = ' ';
                        memcpy(a->bad_names + l, name, str_len(name) + 1);
                }
        }
}

/* One hand-made chain at descriptor 0: n buffers, published and notified. */
struct hbuf {
        const void *addr;
        uint32_t len;
        bool write;
};

static void publish(struct virtq *q, const struct hbuf *b, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                set_desc(
                    q, (uint16_t)i, b[i].addr, b[i].len,
                    (uint16_t)((b[i].write ? VDESC_F_WRITE : 0) | (i + 1 < n ? VDESC_F_NEXT : 0)),
                    (uint16_t)(i + 1));
        virtq_publish(q, 0);
}

static void blk_header(struct att *a, uint32_t type, uint64_t sector)
{
        *a->hdr = (struct blk_hdr){type, 0, sector};
        *a->status = BLK_S_UNSET;
        memset(a->data, 0x5a, SECTOR);
}

static bool data_untouched(const struct att *a)
{
        for (unsigned i = 0; i < SECTOR; i++)
                if (a->data[i] != 0x5a)
                        return false;
        return true;
}

/* Runs a hand-made blk request; true when it completed with IOERR and left the shared
 * data buffer alone. what: the observation. */
static bool blk_refused(struct att *a, const struct hbuf *b, unsigned n, char *what, size_t size)
{
        uint32_t len = 0;
        enum outcome o;

        publish(&a->q, b, n);
        virtq_kick(&a->q);
        o = observe(a->d, &a->q, &len);
        if (o != OBS_USED) {
                vctx_fmt(what, size, "%s", o == OBS_RESET ? "needs reset" : "ignored");
                return false;
        }
        if (*a->status == BLK_S_UNSET)
                vctx_fmt(what, size, "used len %u, status not written", len);
        else
                vctx_fmt(what, size, "status %s", *a->status == BLK_S_IOERR ? "ioerr" : "ok");
        if (!data_untouched(a)) {
                size_t l = str_len(what);
                vctx_fmt(what + l, size - l, ", SHARED BUFFER WRITTEN");
                return false;
        }
        return *a->status == BLK_S_IOERR;
}

/* CC-12's "nothing changed": the device still refuses the target page (a read into it). */
static bool still_private(struct att *a, const void *page)
{
        char what[64];
        struct hbuf b[3] = {
            {a->hdr, sizeof(*a->hdr), false}, {page, SECTOR, true}, {a->status, 1, true}};

        blk_header(a, BLK_T_IN, 0);
        return blk_refused(a, b, 3, what, sizeof(what));
}

/* CC-2: a driver that does not accept ACCESS_PLATFORM (or VERSION_1) gets no FEATURES_OK,
 * no DRIVER_OK, and no queue. */
static void case_features(struct att *a, const char *name, uint64_t drop)
{
        struct virtio_dev *d = a->d;
        uint64_t f;
        uint8_t s, s2;
        uint32_t ready;
        char what[96];

        if (virtio_begin(d))
                probe_fail("%s: reset failed", name);
        f = d->offered & (a->wanted | VBIT(VF_VERSION_1) | VBIT(VF_ACCESS_PLATFORM));
        s = virtio_write_features(d, f & ~drop);
        virtio_write(d, VMMIO_STATUS, virtio_status(d) | VSTAT_DRIVER_OK);
        s2 = virtio_status(d);
        virtio_write(d, VMMIO_QUEUE_SEL, 0);
        virtio_write(d, VMMIO_QUEUE_NUM, QSIZE);
        virtio_write(d, VMMIO_DESC_LOW, (uint32_t)(uintptr_t)a->rings);
        virtio_write(d, VMMIO_DESC_HIGH, 0);
        virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)a->rings + 16 * QSIZE);
        virtio_write(d, VMMIO_DRIVER_HIGH, 0);
        virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)a->rings + 1024);
        virtio_write(d, VMMIO_DEVICE_HIGH, 0);
        virtio_write(d, VMMIO_QUEUE_READY, 1);
        ready = virtio_read(d, VMMIO_QUEUE_READY);
        vctx_fmt(what, sizeof(what), "FEATURES_OK %s, status 0x%x after DRIVER_OK, QueueReady %u",
                 (s & VSTAT_FEATURES_OK) ? "SET" : "clear", s2, ready);
        record(a, name, !(s & VSTAT_FEATURES_OK) && !(s2 & VSTAT_DRIVER_OK) && !ready, what, true);
}

/* CC-5: QueueReady over private rings, whole or only the used ring. */
static void case_private_rings(struct att *a, bool used_only)
{
        struct virtio_dev *d = a->d;
        uint32_t ready;
        char what[96];

        if (!used_only) {
                const char *err = private_rings(&a->x, d, a->priv);
                ready = !(err && str_eq(err, "QueueReady reads back 0"));
        } else {
                const char *err = virtio_begin(d);
                if (!err)
                        err = virtio_negotiate(d, a->wanted);
                if (err)
                        probe_fail("private-used-ring: %s", err);
                virtio_write(d, VMMIO_QUEUE_SEL, 0);
                virtio_write(d, VMMIO_QUEUE_NUM, QSIZE);
                virtio_write(d, VMMIO_DESC_LOW, (uint32_t)(uintptr_t)a->rings);
                virtio_write(d, VMMIO_DESC_HIGH, 0);
                virtio_write(d, VMMIO_DRIVER_LOW, (uint32_t)(uintptr_t)a->rings + 16 * QSIZE);
                virtio_write(d, VMMIO_DRIVER_HIGH, 0);
                virtio_write(d, VMMIO_DEVICE_LOW, (uint32_t)(uintptr_t)a->priv);
                virtio_write(d, VMMIO_DEVICE_HIGH, 0);
                virtio_write(d, VMMIO_QUEUE_READY, 1);
                ready = virtio_read(d, VMMIO_QUEUE_READY);
                virtio_reset(d);
        }
        vctx_fmt(what, sizeof(what), "QueueReady %u", ready);
        record(a, used_only ? "private-used-ring" : "private-rings", !ready, what, true);
}

/* CC-3/CC-4: private memory named in a request. */
static void case_private_read(struct att *a)
{
        char what[96];
        struct hbuf b[4] = {{a->hdr, sizeof(*a->hdr), false},
                            {a->data, SECTOR, true},
                            {a->x.secret, SECTOR, true},
                            {a->status, 1, true}};
        bool ok;

        blk_header(a, BLK_T_IN, 1);
        ok = blk_refused(a, b, 4, what, sizeof(what));
        if (!secret_intact(&a->x)) {
                ok = false;
                vctx_fmt(what + str_len(what), sizeof(what) - str_len(what),
                         ", SECRET OVERWRITTEN");
        }
        record(a, "private-read-buffer", ok, what, true);
}

static void case_private_write(struct att *a)
{
        char what[96];
        struct hbuf b[3] = {
            {a->hdr, sizeof(*a->hdr), false}, {a->x.secret, SECTOR, false}, {a->status, 1, true}};
        uint8_t *buf = alloc_zeroed(SECTOR, 64);
        bool ok;
        uint8_t s;

        blk_header(a, BLK_T_OUT, 3);
        ok = blk_refused(a, b, 3, what, sizeof(what));
        s = blk_call(&a->q, BLK_T_IN, 3, buf, SECTOR, true);
        if (s != BLK_S_OK || !is_sector(buf, 3)) {
                ok = false;
                vctx_fmt(what + str_len(what), sizeof(what) - str_len(what), ", SECTOR 3 CHANGED");
        } else {
                vctx_fmt(what + str_len(what), sizeof(what) - str_len(what),
                         ", sector 3 unchanged");
        }
        record(a, "private-write-buffer", ok, what, true);
}

static void case_private_header(struct att *a)
{
        char what[96];
        struct blk_hdr *h = (struct blk_hdr *)a->priv;
        struct hbuf b[3] = {{h, sizeof(*h), false}, {a->data, SECTOR, true}, {a->status, 1, true}};

        blk_header(a, BLK_T_IN, 0);
        *h = *a->hdr; /* a valid header, in private memory */
        record(a, "private-header", blk_refused(a, b, 3, what, sizeof(what)), what, true);
}

static void case_private_status(struct att *a)
{
        char what[96];
        uint8_t *st = a->priv + 64;
        struct hbuf b[3] = {
            {a->hdr, sizeof(*a->hdr), false}, {a->data, SECTOR, true}, {st, 1, true}};
        uint32_t len = 0;
        enum outcome o;
        bool ok;

        blk_header(a, BLK_T_IN, 0);
        *st = BLK_S_UNSET;
        publish(&a->q, b, 3);
        virtq_kick(&a->q);
        o = observe(a->d, &a->q, &len);
        ok = o == OBS_USED && len == 0 && *st == BLK_S_UNSET && data_untouched(a);
        vctx_fmt(what, sizeof(what), "%s, used len %u, %s, %s",
                 o == OBS_USED    ? "completed"
                 : o == OBS_RESET ? "needs reset"
                                  : "ignored",
                 len, *st == BLK_S_UNSET ? "status not written" : "STATUS WRITTEN",
                 data_untouched(a) ? "shared buffer untouched" : "SHARED BUFFER WRITTEN");
        record(a, "private-status", ok, what, true);
}

static void case_private_indirect(struct att *a)
{
        struct vring_desc *t = (struct vring_desc *)(a->priv + 256);
        char what[96];
        uint32_t len = 0;
        enum outcome o;
        bool ok;

        if (!a->q.use_indirect) {
                print("probe: cc-attack private-indirect: skipped (no INDIRECT_DESC)\n");
                return;
        }
        blk_header(a, BLK_T_IN, 0);
        t[0] = (struct vring_desc){(uintptr_t)a->hdr, sizeof(*a->hdr), VDESC_F_NEXT, 1};
        t[1] = (struct vring_desc){(uintptr_t)a->data, SECTOR, VDESC_F_WRITE | VDESC_F_NEXT, 2};
        t[2] = (struct vring_desc){(uintptr_t)a->status, 1, VDESC_F_WRITE, 0};
        set_desc(&a->q, 0, t, 3 * 16, VDESC_F_INDIRECT, 0);
        virtq_publish(&a->q, 0);
        virtq_kick(&a->q);
        o = observe(a->d, &a->q, &len);
        ok = o == OBS_USED && len == 0 && *a->status == BLK_S_UNSET && data_untouched(a);
        vctx_fmt(what, sizeof(what), "%s, used len %u, %s",
                 o == OBS_USED    ? "completed"
                 : o == OBS_RESET ? "needs reset"
                                  : "ignored",
                 len, *a->status == BLK_S_UNSET ? "status not written" : "STATUS WRITTEN");
        record(a, "private-indirect", ok, what, true);
}

static void reshare_spare(struct att *a)
{
        const char *err = cc_share(&a->x.p, a->spare, a->x.p.granule);

        if (err)
                probe_fail("re-sharing the spare granule: %s", err);
}

/* CC-4/CC-6: a buffer unshared after its request was published, before the device ran it. */
static void case_unshare_buffer(struct att *a)
{
        char what[96];
        struct hbuf b[3] = {
            {a->hdr, sizeof(*a->hdr), false}, {a->spare, SECTOR, true}, {a->status, 1, true}};
        const char *err;
        uint32_t len = 0;
        enum outcome o;
        bool ok;

        blk_header(a, BLK_T_IN, 0);
        memset(a->spare, 0x5a, SECTOR);
        publish(&a->q, b, 3);
        err = cc_unshare(&a->x.p, a->spare, a->x.p.granule);
        if (err)
                probe_fail("unshare-buffer: %s", err);
        virtq_kick(&a->q);
        o = observe(a->d, &a->q, &len);
        ok = o == OBS_USED && *a->status == BLK_S_IOERR && !is_sector(a->spare, 0);
        vctx_fmt(what, sizeof(what), "%s, status %s, buffer %s",
                 o == OBS_USED    ? "completed"
                 : o == OBS_RESET ? "needs reset"
                                  : "ignored",
                 *a->status == BLK_S_IOERR ? "ioerr"
                 : *a->status == BLK_S_OK  ? "ok"
                                           : "not written",
                 is_sector(a->spare, 0) ? "WRITTEN" : "not written");
        reshare_spare(a);
        record(a, "unshare-buffer", ok, what, true);
}

/* CC-4/CC-6: the rings unshared under a running device: DEVICE_NEEDS_RESET, then a config
 * interrupt; the VMM and the other devices go on. */
static void case_unshare_ring(struct att *a)
{
        struct virtio_dev *d = a->d;
        struct virtq q;
        uint8_t *buf = alloc_zeroed(SECTOR, 64);
        struct blk_hdr *h = alloc_zeroed(sizeof(*h), 16);
        uint8_t *st = alloc_mem(1, 1);
        struct vbuf v[3] = {{h, sizeof(*h), false}, {buf, SECTOR, true}, {st, 1, true}};
        uint32_t len = 0, cfg0, t0;
        const char *err = virtio_begin(d);
        char what[96];
        enum outcome o;

        if (!err)
                err = virtio_negotiate(d, a->wanted);
        if (!err)
                err = virtq_setup_at(&q, d, 0, QSIZE, a->spare);
        if (err)
                probe_fail("unshare-ring: %s", err);
        virtio_driver_ok(d);
        *st = BLK_S_UNSET;
        if (virtq_add(&q, v, 3, false) < 0)
                probe_fail("unshare-ring: ring full");
        err = cc_unshare(&a->x.p, a->spare, a->x.p.granule);
        if (err)
                probe_fail("unshare-ring: %s", err);
        cfg0 = d->config_irqs;
        vmb();
        virtio_write(d, VMMIO_QUEUE_NOTIFY, 0);
        o = observe(d, &q, &len);
        t0 = virtio_ticks();
        while (o == OBS_RESET && d->config_irqs == cfg0 && virtio_ticks() - t0 < OBSERVE_TICKS)
                virtio_idle(d);
        vctx_fmt(what, sizeof(what), "%s, %s",
                 o == OBS_RESET  ? "needs reset"
                 : o == OBS_USED ? "COMPLETED"
                                 : "ignored",
                 d->config_irqs != cfg0 ? "config interrupt" : "NO config interrupt");
        virtq_reset_free(&q); /* the bounced request never came back */
        reshare_spare(a);
        record(a, "unshare-ring", o == OBS_RESET && d->config_irqs != cfg0 && *st == BLK_S_UNSET,
               what, true);
}

/* ---- CC-12: malformed platform calls ---- */

static void call_case(struct att *a, const char *name, bool ok, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static void call_case(struct att *a, const char *name, bool ok, const char *fmt, ...)
{
        char what[128];
        va_list ap;

        va_start(ap, fmt);
        print_vbuf(what, sizeof(what), fmt, ap);
        va_end(ap);
        record(a, name, ok, what, false);
}

/* A malformed call aimed at the private target page: the expected error, and the page is
 * still refused by the device. */
static void target_case(struct att *a, const char *name, bool code_ok, const char *code)
{
        bool priv = still_private(a, a->target);

        call_case(a, name, code_ok && priv, "%s, 0x%llx %s", code, U64((uintptr_t)a->target),
                  priv ? "still refused by the device" : "NOW SHARED");
}

/* Still an ordinary VM after a refused transition: a queue in ordinary memory is taken. */
static bool still_ordinary(struct att *a)
{
        return private_rings(&a->x, a->d, alloc_mem(virtq_ring_bytes(QSIZE, true), PAGE)) == NULL;
}

static const char *hcode(int64_t r)
{
        static char other[32];

        switch (r) {
        case U_SUCCESS:
                return "U_SUCCESS";
        case H_FUNCTION:
                return "H_FUNCTION";
        case H_PARAMETER:
                return "H_PARAMETER";
        case H_P2:
                return "H_P2";
        case H_UNSUPPORTED:
                return "H_UNSUPPORTED";
        case H_STATE:
                return "H_STATE";
        default:
                vctx_fmt(other, sizeof(other), "code %lld", (long long)r);
                return other;
        }
}

static void pef_before(struct att *a)
{
        static uint8_t bad_blob[16]
            __attribute__((aligned(16))) = {'C', 'V', 'M', 'M', 'E', 'S', 'M', 0, 2};
        const struct cc_info *p = &a->x.p;
        int64_t r;

        r = cc_ucall(p, UV_SHARE_PAGE, (uintptr_t)a->target / PEF_PAGE, 1, 0);
        call_case(a, "share-before-esm", r == H_STATE, "%s", hcode(r));
        r = cc_ucall(p, UV_UNSHARE_ALL_PAGES, 0, 0, 0);
        call_case(a, "unshare-all-before-esm", r == H_STATE, "%s", hcode(r));
        r = cc_ucall(p, UV_ESM, (uintptr_t)bad_blob, 0, 0);
        call_case(a, "esm-bad-blob", r == H_PARAMETER && still_ordinary(a),
                  "%s, still an ordinary VM", hcode(r));
}

static void pef_after(struct att *a)
{
        const struct cc_info *p = &a->x.p;
        uint64_t tgfn = (uintptr_t)a->target / PEF_PAGE;
        int64_t r;

        r = cc_ucall(p, UV_ESM, (uintptr_t)cc_transition_blob(p), 0, 0);
        call_case(a, "esm-twice", r == H_STATE, "%s", hcode(r));
        r = cc_ucall(p, UV_SHARE_PAGE, FAR_AWAY / PEF_PAGE, 1, 0);
        call_case(a, "share-outside-ram", r == H_PARAMETER, "%s", hcode(r));
        r = cc_ucall(p, UV_SHARE_PAGE, MMIO_HOLE / PEF_PAGE, 1, 0);
        call_case(a, "share-mmio-hole", r == H_PARAMETER, "%s", hcode(r));
        r = cc_ucall(p, UV_SHARE_PAGE, tgfn, 0, 0);
        target_case(a, "share-zero-pages", r == H_P2, hcode(r));
        r = cc_ucall(p, UV_SHARE_PAGE, tgfn, 1ull << 40, 0);
        target_case(a, "share-past-ram-end", r == H_P2, hcode(r));
        r = cc_ucall(p, UV_UNSHARE_PAGE, tgfn, 0, 0);
        call_case(a, "unshare-zero-pages", r == H_P2, "%s", hcode(r));
        r = cc_ucall(p, 0xf1f0, tgfn, 1, 0);
        target_case(a, "unknown-ucall", r == H_FUNCTION, hcode(r));
        r = (int64_t)cc_window_call(p, CCW_S390_UVC, (uintptr_t)a->target, 0, 0, 0, NULL);
        target_case(a, "wrong-call-kind", r == H_UNSUPPORTED, hcode(r));
}

static void s390_before(struct att *a)
{
        static uint8_t bad_header[64]
            __attribute__((aligned(16))) = {'I', 'B', 'M', 'S', 'e', 'c', 'E', 'y'};
        const struct cc_info *p = &a->x.p;
        uint16_t rc = 0;
        uint64_t cond, r;

        cond = cc_uvc_share(p, UVC_SET_SHARED, (uintptr_t)a->target, &rc);
        call_case(a, "uvc-before-ipl", cond == 1 && rc == UVC_RC_INV_STATE, "cc %llu rc 0x%x",
                  U64(cond), rc);
        r = cc_diag308(p, 5, (uintptr_t)a->x.secret);
        call_case(a, "diag308-bad-subcode", r == DIAG308_RC_INV_SUBCDE, "rc 0x%llx", U64(r));
        r = cc_diag308(p, DIAG308_PV_IPL, (uintptr_t)bad_header);
        call_case(a, "ipl-bad-header", r == DIAG308_RC_NOCONFIG && still_ordinary(a),
                  "rc 0x%llx, still an ordinary VM", U64(r));
}

/* A share control block with a chosen length and command, on the private target. */
static uint64_t uvc_raw(struct att *a, uint16_t len, uint16_t cmd, uint64_t paddr, uint16_t *rc)
{
        static struct uv_cb_share cb __attribute__((aligned(8)));

        memset(&cb, 0, sizeof(cb));
        cb.len = len;
        cb.cmd = cmd;
        cb.paddr = paddr;
        cb.rc = 0xffff;
        uint64_t cond = cc_uvc(&a->x.p, &cb);
        *rc = *(volatile uint16_t *)&cb.rc;
        return cond;
}

static void s390_after(struct att *a)
{
        const struct cc_info *p = &a->x.p;
        uint64_t t = (uintptr_t)a->target, cond, r;
        uint8_t *raw = a->priv + 1024;
        uint16_t rc = 0;
        char code[48];

        r = cc_diag308(p, DIAG308_PV_IPL, (uintptr_t)cc_transition_blob(p));
        call_case(a, "ipl-twice", r == DIAG308_RC_NOCONFIG, "rc 0x%llx", U64(r));
        cond = uvc_raw(a, UV_CB_SHARE_LEN - 1, UVC_SET_SHARED, t, &rc);
        vctx_fmt(code, sizeof(code), "cc %llu rc 0x%x", U64(cond), rc);
        target_case(a, "uvc-bad-length", cond == 1 && rc == UVC_RC_INV_LEN, code);
        cond = uvc_raw(a, UV_CB_SHARE_LEN, 0x1234, t, &rc);
        vctx_fmt(code, sizeof(code), "cc %llu rc 0x%x", U64(cond), rc);
        target_case(a, "uvc-unknown-command", cond == 1 && rc == UVC_RC_INV_CMD, code);
        cond = uvc_raw(a, UV_CB_SHARE_LEN, UVC_SET_SHARED, t + 8, &rc);
        vctx_fmt(code, sizeof(code), "cc %llu rc 0x%x", U64(cond), rc);
        target_case(a, "uvc-unaligned-address", cond == 1 && rc == UVC_RC_INV_ADDR, code);
        cond = uvc_raw(a, UV_CB_SHARE_LEN, UVC_SET_SHARED, MMIO_HOLE, &rc);
        call_case(a, "uvc-address-outside-ram", cond == 1 && rc == UVC_RC_INV_ADDR,
                  "cc %llu rc 0x%x", U64(cond), rc);
        /* Control blocks the ultravisor cannot read: a program check (cc 3 here). */
        memset(raw, 0, 64);
        {
                /* A valid share block for the target, one byte off its alignment. */
                struct uv_cb_share cb = {.len = UV_CB_SHARE_LEN, .cmd = UVC_SET_SHARED, .paddr = t};
                memcpy(raw + 1, &cb, sizeof(cb));
        }
        cond = cc_uvc(p, raw + 1);
        vctx_fmt(code, sizeof(code), "cc %llu", U64(cond));
        target_case(a, "uvc-misaligned-block", cond == 3, code);
        cond = cc_uvc(p, (void *)(uintptr_t)MMIO_HOLE);
        call_case(a, "uvc-block-outside-ram", cond == 3, "cc %llu", U64(cond));
        {
                static struct uv_cb_qui qui __attribute__((aligned(8)));

                memset(&qui, 0, sizeof(qui));
                qui.len = UV_CB_SHARE_LEN;
                qui.cmd = UVC_QUI;
                cond = cc_uvc(p, &qui);
                call_case(a, "qui-short-block", cond == 1 && qui.rc == UVC_RC_INV_LEN,
                          "cc %llu rc 0x%x", U64(cond), qui.rc);
        }
        r = cc_window_call(p, CCW_POWER_UCALL, UV_SHARE_PAGE, t / PEF_PAGE, 1, 0, NULL);
        vctx_fmt(code, sizeof(code), "cc %llu", U64(r));
        target_case(a, "wrong-call-kind", r == 3, code);
}

static void sev_after(struct att *a)
{
        uint64_t t = (uintptr_t)a->target, resp;
        char code[48];

        resp = cc_sev_psc(t, 3);
        vctx_fmt(code, sizeof(code), "response 0x%llx", U64(resp));
        target_case(a, "psc-bad-operation", resp == (GHCB_PSC_RESP | (1ull << 32)), code);
        resp = cc_sev_psc(t, 0);
        vctx_fmt(code, sizeof(code), "response 0x%llx", U64(resp));
        target_case(a, "psc-operation-zero", resp == (GHCB_PSC_RESP | (1ull << 32)), code);
        resp = cc_sev_psc(MMIO_HOLE, GHCB_PSC_SHARED);
        call_case(a, "psc-mmio-hole", resp == (GHCB_PSC_RESP | (2ull << 32)), "response 0x%llx",
                  U64(resp));
        resp = cc_sev_psc(FAR_AWAY, GHCB_PSC_SHARED);
        call_case(a, "psc-outside-ram", resp == (GHCB_PSC_RESP | (2ull << 32)), "response 0x%llx",
                  U64(resp));
        resp = cc_ghcb_call(0x0ffull | t);
        vctx_fmt(code, sizeof(code), "response 0x%llx", U64(resp));
        target_case(a, "ghcb-unknown-request", (resp & 0xfff) != GHCB_PSC_RESP, code);
}

/* ---- other devices (CC-7 per device): a secret-bearing packet from private memory ---- */

static void case_other_device(struct att *a, uint32_t id, const char *name)
{
        struct virtio_dev *d = virtio_find(a->x.c->devs, a->x.c->count, id, 0);
        struct virtq qs[3];
        uint8_t *hdr = virtio_dma_alloc(64);
        uint32_t len = 0;
        enum outcome o;
        char what[96];
        struct hbuf vs[1] = {{a->x.secret, 44 + 64, false}};
        struct hbuf net[2] = {{hdr, 12, false}, {a->x.secret, 1514, false}};

        if (!d) {
                print("probe: cc-attack %s: skipped (no device)\n", name);
                return;
        }
        vctx_mode(a->x.c, d, true);
        memset(hdr, 0, 64);
        virtio_bring_up(d, a->wanted, qs, id == VID_VSOCK ? 3 : 2, QSIZE);
        /* tx is queue 1 for both. */
        if (id == VID_VSOCK)
                publish(&qs[1], vs, 1);
        else
                publish(&qs[1], net, 2);
        virtq_kick(&qs[1]);
        o = observe(d, &qs[1], &len);
        vctx_fmt(what, sizeof(what), "%s, used len %u",
                 o == OBS_USED    ? "dropped"
                 : o == OBS_RESET ? "needs reset"
                                  : "ignored",
                 len);
        a->cases++;
        if (o != OBS_USED || len != 0) {
                a->bad++;
                print("probe: cc-attack %s: ACCEPTED (%s)\n", name, what);
        } else {
                print("probe: cc-attack %s: refused (%s)\n", name, what);
        }
        virtio_reset(d);
        virtio_irq_disable(d);
}

static void cc_attack(const struct boot_info *bi, enum cc_kind want)
{
        struct att *a = (vctx_get(bi), alloc_zeroed(sizeof(*a), 64));
        const char *err;

        open_platform(&a->x, bi, want);
        a->d = vctx_need(a->x.c, VID_BLOCK, 0, "virtio-blk");
        plant_secret(&a->x);
        a->wanted = vctx_ring_features(a->x.c);
        a->priv = alloc_zeroed(PAGE, PAGE);
        a->target = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        a->spare = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        memset(a->target, 0x11, SECTOR);
        vctx_mode(a->x.c, a->d, true);
        if (a->x.p.kind == CCK_PEF)
                pef_before(a);
        else if (a->x.p.kind == CCK_S390)
                s390_before(a);
        go_secure(&a->x);
        share_pool(&a->x);
        err = cc_share(&a->x.p, a->spare, a->x.p.granule);
        if (err)
                probe_fail("sharing the spare granule: %s", err);
        a->hdr = virtio_dma_alloc(sizeof(*a->hdr));
        a->data = virtio_dma_alloc(SECTOR);
        a->status = virtio_dma_alloc(1);
        a->rings = virtio_dma_alloc(virtq_ring_bytes(QSIZE, true));
        fresh(a);
        vctx_print_mode("cc-attack", a->d);

        case_features(a, "no-access-platform", VBIT(VF_ACCESS_PLATFORM));
        case_features(a, "no-version-1", VBIT(VF_VERSION_1));
        case_private_rings(a, false);
        case_private_rings(a, true);
        case_private_read(a);
        case_private_write(a);
        case_private_header(a);
        case_private_status(a);
        case_private_indirect(a);
        case_unshare_buffer(a);
        case_unshare_ring(a);
        if (a->x.p.kind == CCK_PEF)
                pef_after(a);
        else if (a->x.p.kind == CCK_S390)
                s390_after(a);
        else
                sev_after(a);
        case_other_device(a, VID_VSOCK, "vsock-private-packet");
        case_other_device(a, VID_NET, "net-private-frame");
        vctx_check_irqs(a->d);
        virtio_reset(a->d);
        virtio_irq_disable(a->d);
        check_secret(&a->x);
        if (a->bad)
                probe_fail("%u of %u cases: %s", a->bad, a->cases, a->bad_names);
        print("probe: cc-attack %u cases refused\n", a->cases);
}

void scenario_cc_sev_attack(const struct boot_info *bi)
{
        cc_attack(bi, CCK_SEV);
}

void scenario_cc_pef_attack(const struct boot_info *bi)
{
        cc_attack(bi, CCK_PEF);
}

void scenario_cc_s390_attack(const struct boot_info *bi)
{
        cc_attack(bi, CCK_S390);
}

/* ---- cc-peek: what the host's reads of private memory give it (CC-8) ---- */

/* Shows the host one page and waits for its line (it reads the page meanwhile). */
static void peek(struct ccx *x, const char *what, const void *page)
{
        char line[16];

        print("probe: cc peek %s 0x%llx\n", what, U64((uintptr_t)page));
        vctx_wait_line(x->c, line, sizeof(line));
}

/* What the host knows is in a page: "KNOWN-PLAINTEXT-" repeated. */
static void fill_known(uint8_t *page)
{
        static const char known[] = "KNOWN-PLAINTEXT-";

        for (uint64_t i = 0; i < PAGE; i++)
                page[i] = (uint8_t)known[i % 16];
}

static void share_or_fail(struct ccx *x, void *p, const char *what)
{
        const char *err = cc_share(&x->p, p, x->p.granule);

        if (err)
                probe_fail("sharing %s: %s", what, err);
}

static void unshare_or_fail(struct ccx *x, void *p, const char *what)
{
        const char *err = cc_unshare(&x->p, p, x->p.granule);

        if (err)
                probe_fail("unsharing %s: %s", what, err);
}

static void expect_secret(const struct ccx *x, const uint8_t *page, const char *what)
{
        if (!holds_secret(x, page))
                probe_fail("%s changed under the host's read", what);
}

void scenario_cc_peek(const struct boot_info *bi)
{
        struct ccx *x = (vctx_get(bi), alloc_zeroed(sizeof(*x), 64));
        uint8_t *k, *g, *h;

        open_platform(x, bi, CCK_NONE);
        plant_secret(x);
        go_secure(x);
        /* One private page read twice by the host: while it holds zeros, then the secret. */
        k = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        memset(k, 0, PAGE);
        peek(x, "zeros", k);
        fill_secret(x, k);
        peek(x, "secret", k);
        expect_secret(x, k, "the private page");
        /* Data the host saw while it was shared, unshared, then the secret written over it. */
        g = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        share_or_fail(x, g, "the known page");
        fill_known(g);
        peek(x, "shared-known", g);
        unshare_or_fail(x, g, "the known page");
        peek(x, "unshared-known", g);
        fill_secret(x, g);
        peek(x, "secret", g);
        expect_secret(x, g, "the unshared page");
        /* s390-pv: UVCs whose control block is a private page holding the secret (the command
         * word is two of its bytes): refused, and nothing of it may reach the VMM's log. */
        if (x->p.kind == CCK_S390) {
                unsigned refused = 0;

                for (unsigned i = 0; i < 8; i++)
                        refused += cc_uvc(&x->p, k + 8 * i) == 1;
                print("probe: cc uvc on the secret's page: %u of 8 refused\n", refused);
                if (refused != 8)
                        probe_fail("a UVC on the secret's bytes was accepted");
        }
        /* A private page holding the secret converted to shared (sev: ciphertext until the
         * guest writes it; pef: zeroed), then cleared. s390-pv shares a page as it is: a guest
         * clears it first. */
        if (x->p.kind != CCK_S390) {
                h = alloc_mem(GRANULE_MAX, GRANULE_MAX);
                fill_secret(x, h);
                share_or_fail(x, h, "the secret's copy");
                peek(x, "converted", h);
                memset(h, 0, PAGE);
                peek(x, "cleared", h);
        }
        check_secret(x);
}

/* ---- cc-hammer: the host's reads have no effect on the guest but a delay ---- */

#define HAMMER_ROUNDS 300
#define HAMMER_WORDS  512

/* Writes every word of the page, then reads every word back; returns the mismatches. Its
 * own page of code is one the host reads meanwhile. */
static __attribute__((noinline, aligned(64))) uint32_t hammer(volatile uint64_t *w)
{
        uint32_t bad = 0;

        for (uint64_t r = 1; r <= HAMMER_ROUNDS; r++) {
                for (uint64_t i = 0; i < HAMMER_WORDS; i++)
                        w[i] = r << 32 | i;
                for (uint64_t i = 0; i < HAMMER_WORDS; i++)
                        if (w[i] != (r << 32 | i))
                                bad++;
        }
        return bad;
}

void scenario_cc_hammer(const struct boot_info *bi)
{
        struct ccx *x = (vctx_get(bi), alloc_zeroed(sizeof(*x), 64));
        uint64_t *w;
        uint32_t bad;
        char line[16];

        open_platform(x, bi, CCK_NONE);
        go_secure(x);
        w = alloc_zeroed(PAGE, GRANULE_MAX);
        print("probe: cc hammer page 0x%llx code 0x%llx\n", U64((uintptr_t)w),
              U64((uintptr_t)hammer));
        vctx_wait_line(x->c, line, sizeof(line));
        bad = hammer(w);
        print("probe: cc hammer %u rounds of %u words, %u mismatches\n", HAMMER_ROUNDS,
              HAMMER_WORDS, bad);
        vctx_wait_line(x->c, line, sizeof(line)); /* the host stops reading first */
        if (bad)
                probe_fail("%u words read back wrong while the host read the page", bad);
}

/* ---- cc-stress: transitions under in-flight I/O while the host reads and flushes ---- */

#define STRESS_ROUNDS     120
#define STRESS_ALL_ROUNDS 6                     /* pef: UV_UNSHARE_ALL_PAGES under the I/O */
#define STRESS_MARK       0x4d41524b4d41524bull /* "KRAMKRAM" */
#define STRESS_STRIDE     512 /* sectors between two rounds' reads: past the host's readahead */

struct stress {
        struct ccx x;
        struct virtio_dev *d;
        struct virtq q;
        uint64_t wanted;
        struct blk_hdr *hdr; /* shared (pool) */
        uint8_t *status;     /* shared (pool) */
        uint8_t *g;          /* the granule shared, read into, and unshared under the read */
        uint64_t capacity;   /* sectors */
        unsigned ok, ioerr, other, late, unzeroed;
};

/* After the unshare returned: pef must have zeroed the granule (after the I/O was waited
 * for); then a mark in every sector, which no device write may change any more. */
static void mark_granule(struct stress *s)
{
        for (uint64_t off = 0; off < s->x.p.granule; off += SECTOR) {
                volatile uint64_t *w = (volatile uint64_t *)(s->g + off);

                if (s->x.p.kind == CCK_PEF && (w[0] || w[SECTOR / 8 - 1]))
                        s->unzeroed++;
                w[0] = STRESS_MARK;
                w[SECTOR / 8 - 1] = STRESS_MARK;
        }
}

static void check_marks(struct stress *s)
{
        for (uint64_t off = 0; off < s->x.p.granule; off += SECTOR) {
                volatile uint64_t *w = (volatile uint64_t *)(s->g + off);

                if (w[0] != STRESS_MARK || w[SECTOR / 8 - 1] != STRESS_MARK) {
                        s->late++;
                        return;
                }
        }
}

/* One read of the whole granule, notified, then the granule unshared (or, all: every shared
 * page) while the device works on it. */
static void stress_round(struct stress *s, unsigned r, bool all)
{
        uint32_t sectors = (uint32_t)(s->x.p.granule / SECTOR), len = 0;
        struct hbuf b[3] = {{s->hdr, sizeof(*s->hdr), false},
                            {s->g, (uint32_t)s->x.p.granule, true},
                            {s->status, 1, true}};
        enum outcome o;

        share_or_fail(&s->x, s->g, "the I/O granule");
        /* A part of the disk not read before (the host's page cache may not have it, so the
         * read completes asynchronously). */
        *s->hdr =
            (struct blk_hdr){BLK_T_IN, 0, (uint64_t)r * STRESS_STRIDE % (s->capacity - sectors)};
        *s->status = BLK_S_UNSET;
        publish(&s->q, b, 3);
        virtq_kick(&s->q);
        if (all) {
                int64_t rc = cc_ucall(&s->x.p, UV_UNSHARE_ALL_PAGES, 0, 0, 0);
                if (rc != U_SUCCESS)
                        probe_fail("UV_UNSHARE_ALL_PAGES returned %lld", (long long)rc);
        } else {
                unshare_or_fail(&s->x, s->g, "the I/O granule");
        }
        mark_granule(s);
        o = observe(s->d, &s->q, &len);
        check_marks(s);
        if (all) {
                /* The rings went private too: share the pool again, start the device anew. */
                share_or_fail(&s->x, s->x.pool, "the pool again");
                virtio_reset(s->d);
                virtio_bring_up(s->d, s->wanted, &s->q, 1, QSIZE);
        } else if (o == OBS_USED && *s->status == BLK_S_OK) {
                s->ok++;
        } else if (o == OBS_USED && *s->status == BLK_S_IOERR) {
                s->ioerr++;
        } else {
                s->other++;
        }
}

void scenario_cc_stress(const struct boot_info *bi)
{
        struct stress *s = (vctx_get(bi), alloc_zeroed(sizeof(*s), 64));
        unsigned all = 0;
        char line[16];

        open_platform(&s->x, bi, CCK_NONE);
        s->d = vctx_need(s->x.c, VID_BLOCK, 0, "virtio-blk");
        s->wanted = vctx_ring_features(s->x.c);
        vctx_mode(s->x.c, s->d, true);
        go_secure(&s->x);
        share_pool(&s->x);
        s->hdr = virtio_dma_alloc(sizeof(*s->hdr));
        s->status = virtio_dma_alloc(1);
        s->g = alloc_mem(GRANULE_MAX, GRANULE_MAX);
        virtio_bring_up(s->d, s->wanted, &s->q, 1, QSIZE);
        s->capacity = virtio_cfg64(s->d, 0);
        if (s->capacity < 2 * GRANULE_MAX / SECTOR)
                probe_fail("blk0 has %llu sectors, too few", U64(s->capacity));
        print("probe: cc stress granule 0x%llx pool 0x%llx\n", U64((uintptr_t)s->g),
              U64((uintptr_t)s->x.pool));
        vctx_wait_line(s->x.c, line, sizeof(line));
        for (unsigned r = 0; r < STRESS_ROUNDS; r++)
                stress_round(s, r, false);
        if (s->x.p.kind == CCK_PEF)
                for (; all < STRESS_ALL_ROUNDS; all++)
                        stress_round(s, all, true);
        print("probe: cc stress %u rounds (%u read ok, %u ioerr, %u other), %u unshare-all; %u "
              "written after the unshare, %u not zeroed\n",
              STRESS_ROUNDS, s->ok, s->ioerr, s->other, all, s->late, s->unzeroed);
        vctx_wait_line(s->x.c, line, sizeof(line)); /* the host stops its calls first */
        virtio_reset(s->d);
        virtio_irq_disable(s->d);
        if (s->late || s->unzeroed || s->other)
                probe_fail("%u rounds written after the unshare, %u not zeroed, %u lost", s->late,
                           s->unzeroed, s->other);
}
