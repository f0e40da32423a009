/*
 * bench/blk: virtio-blk throughput against the raw system calls, in one run.
 *
 * An in-process driver (tests/support/vdriver for the set-up, then direct ring writes the
 * way a guest driver does) feeds the device through its virtio-mmio transport; no guest, no
 * KVM. For each directory (default /dev/shm and /tmp) and each engine (sync, io_uring) it
 * measures, on one file:
 *   - 64 KiB sequential reads and writes (MB/s), at queue depth 1 and 32;
 *   - 4 KiB random reads (IOPS) at queue depth 1 and 32;
 * and, interleaved with them on the same file and buffers, raw preadv/pwritev (one call
 * per request) and raw io_uring at the same queue depth. A batch of requests is published
 * at once and notified once (EVENT_IDX, as a real driver does). Each figure is the median of
 * ROUNDS alternating rounds; a ratio (device / raw) is the median of the per-round ratios.
 *
 * The same device also runs as a `sev` VM's (column "sev"): ACCESS_PLATFORM offered and
 * required, its accessor bound to an ownership map in which the guest shared every granule,
 * so every ring and buffer access takes the ownership check (CC-3). "sev/dev" is that
 * configuration against the plain device, measured side by side in the same rounds; the
 * target is a loss of at most 3%. "(cpu)" is the same ratio of operations per second of the
 * benchmark thread's CPU time (user + system): the figure to trust on a loaded machine, for
 * the sync engine (io_uring's kernel work runs on other threads).
 *
 *   bench/blk [-t SECONDS_PER_ROUND] [-r ROUNDS] [-s FILE_MIB] [-e ENGINE] [-w WORKLOAD]
 *             [DIR...]
 *
 * -e sync|io_uring, -w SUBSTRING (e.g. "4K rand read  QD1") and -o device|sev|raw|uring
 * (measure only that one; the other columns are then meaningless) restrict the run, for
 * profiling.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/event_loop.h"
#include "common/util.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio.h"
#include "memory/guest_mem.h"
#include "memory/hostmem.h"
#include "memory/ownership.h"
#include "vdriver.h"

#define QSIZE      256
#define MAX_QD     32
#define MAX_ROUNDS 15
#define MEM        (64u << 20)
#define NR_RANDOM  65536

enum op { OP_READ, OP_WRITE };

struct workload {
        const char *name;
        enum op op;
        uint32_t bs;
        unsigned qd;
        bool random;
};

static const struct workload workloads[] = {
    {"64K seq read  QD1 ", OP_READ, 64 << 10, 1, false},
    {"64K seq read  QD32", OP_READ, 64 << 10, 32, false},
    {"64K seq write QD1 ", OP_WRITE, 64 << 10, 1, false},
    {"64K seq write QD32", OP_WRITE, 64 << 10, 32, false},
    {"4K rand read  QD1 ", OP_READ, 4 << 10, 1, true},
    {"4K rand read  QD32", OP_READ, 4 << 10, 32, true},
};

struct bench {
        /* the file */
        int fd;
        uint64_t file_size;
        uint64_t *random_off;
        uint64_t pos; /* next sequential offset / random index */
        /* guest side */
        struct guest_mem *mem;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_blk *blk;
        struct virtio_mmio *t;
        struct vdriver d;
        uint8_t *desc, *avail, *used; /* host views of the rings (the driver's own memory) */
        uint16_t avail_idx, used_seen;
        bool event_idx;
        gpa_t hdr[MAX_QD], data[MAX_QD], status[MAX_QD];
        uint8_t *hdr_p[MAX_QD], *data_p[MAX_QD], *status_p[MAX_QD];
        /* raw io_uring baseline */
        struct io_uring ring;
        struct iovec iov[MAX_QD];
        unsigned long errors;
};

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
        fprintf(stderr, "bench/blk: %s: %s\n", what, strerror(errno));
        exit(1);
}

static uint64_t next_offset(struct bench *b, const struct workload *w)
{
        uint64_t off;

        if (w->random)
                return b->random_off[b->pos++ % NR_RANDOM];
        off = b->pos;
        b->pos += w->bs;
        if (b->pos > b->file_size) {
                off = 0;
                b->pos = w->bs;
        }
        return off;
}

/* ---- raw baselines ---- */

static void raw_sync_batch(struct bench *b, const struct workload *w)
{
        for (unsigned i = 0; i < w->qd; i++) {
                struct iovec v = {.iov_base = b->data_p[i], .iov_len = w->bs};
                off_t off = (off_t)next_offset(b, w);
                ssize_t r =
                    w->op == OP_READ ? preadv(b->fd, &v, 1, off) : pwritev(b->fd, &v, 1, off);
                if (r != (ssize_t)w->bs)
                        b->errors++;
        }
}

static void raw_uring_batch(struct bench *b, const struct workload *w)
{
        struct io_uring_cqe *cqe;

        for (unsigned i = 0; i < w->qd; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
                uint64_t off = next_offset(b, w);
                b->iov[i] = (struct iovec){.iov_base = b->data_p[i], .iov_len = w->bs};
                if (w->op == OP_READ)
                        io_uring_prep_readv(sqe, b->fd, &b->iov[i], 1, off);
                else
                        io_uring_prep_writev(sqe, b->fd, &b->iov[i], 1, off);
        }
        io_uring_submit_and_wait(&b->ring, w->qd);
        for (unsigned done = 0; done < w->qd;) {
                if (io_uring_wait_cqe(&b->ring, &cqe))
                        die("io_uring_wait_cqe");
                if (cqe->res != (int)w->bs)
                        b->errors++;
                io_uring_cqe_seen(&b->ring, cqe);
                done++;
        }
}

/* ---- the device, driven like a guest driver ---- */

static void device_batch(struct bench *b, const struct workload *w)
{
        uint16_t old = b->avail_idx;

        for (unsigned i = 0; i < w->qd; i++) {
                uint8_t *d = b->desc + 16 * (3 * i + 1);
                put_le32(b->hdr_p[i], w->op == OP_READ ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT);
                put_le64(b->hdr_p[i] + 8, next_offset(b, w) / 512);
                put_le32(d + 8, w->bs);
                put_le16(d + 12, (uint16_t)(VIRTQ_DESC_F_NEXT |
                                            (w->op == OP_READ ? VIRTQ_DESC_F_WRITE : 0)));
                *b->status_p[i] = 0xff;
                put_le16(b->avail + 4 + 2 * (b->avail_idx % QSIZE), (uint16_t)(3 * i));
                b->avail_idx++;
        }
        /* used_event: one interrupt when the whole batch is done. */
        put_le16(b->avail + 4 + 2 * QSIZE, (uint16_t)(b->used_seen + w->qd - 1));
        __atomic_store_n((uint16_t *)(b->avail + 2), b->avail_idx, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* EVENT_IDX: notify only if the device asked for it (vring_need_event). */
        uint16_t avail_event = get_le16(b->used + 4 + 8 * QSIZE);
        if (!b->event_idx ||
            (uint16_t)(b->avail_idx - avail_event - 1) < (uint16_t)(b->avail_idx - old))
                virtio_mmio_notify(b->t, 0);
        for (;;) {
                uint16_t used_idx = __atomic_load_n((uint16_t *)(b->used + 2), __ATOMIC_ACQUIRE);
                while (b->used_seen != used_idx) {
                        const uint8_t *e = b->used + 4 + 8 * (b->used_seen % QSIZE);
                        uint16_t id = (uint16_t)get_le32(e);
                        if (get_le32(e + 4) != (w->op == OP_READ ? w->bs + 1 : 1) ||
                            *b->status_p[id / 3] != VIRTIO_BLK_S_OK)
                                b->errors++;
                        b->used_seen++;
                }
                if ((uint16_t)(b->avail_idx - b->used_seen) == 0)
                        break;
                event_loop_run_once(b->loop, 1000); /* io_uring completions */
        }
}

static void *host(struct bench *b, gpa_t a, uint64_t len)
{
        void *p = guest_mem_translate(b->mem, a, len);
        if (!p) {
                fprintf(stderr, "bench/blk: translate failed\n");
                exit(1);
        }
        return p;
}

/* own: NULL for an ordinary VM; a sev VM's map (its device offers and requires
 * ACCESS_PLATFORM and checks every access against the map). heap: where the driver's rings
 * and buffers go. */
static void device_open(struct bench *b, const char *path, enum virtio_blk_engine engine,
                        gpa_t heap, struct ownership *own)
{
        struct error err = {0};
        struct virtio_blk_config c = {.name = "block0",
                                      .drive_id = "bench",
                                      .path = path,
                                      .cache = VIRTIO_BLK_CACHE_UNSAFE,
                                      .engine = engine,
                                      .loop = b->loop};

        if (virtio_blk_create(&c, &err, &b->blk)) {
                fprintf(stderr, "bench/blk: %s\n", err.msg);
                exit(1);
        }
        if (hostmem_create(b->mem, "block0", &b->hm))
                die("hostmem_create");
        if (own)
                hostmem_set_ownership(b->hm, own);
        vdrv_init(&b->d, b->mem, heap, heap + MEM / 2);
        struct virtio_mmio_config mc = {
            .vdev = virtio_blk_device(b->blk), .mem = b->hm, .irq = vdrv_irq_line(&b->d)};
        if (own)
                mc.extra_features = mc.required_features = VIRTIO_BIT(VIRTIO_F_ACCESS_PLATFORM);
        if (virtio_mmio_create(&mc, &b->t))
                die("virtio_mmio_create");
        vdrv_attach(&b->d, b->t);
        vdrv_bring_up(&b->d, ~VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC), 1, QSIZE);
        b->event_idx = true;
        b->desc = host(b, b->d.q[0].desc, 16ull * QSIZE);
        b->avail = host(b, b->d.q[0].avail, 6 + 2ull * QSIZE);
        b->used = host(b, b->d.q[0].used, 6 + 8ull * QSIZE);
        /* vdrv does not clear what it allocates, and a previous device used these rings. */
        memset(b->avail, 0, 6 + 2ull * QSIZE);
        memset(b->used, 0, 6 + 8ull * QSIZE);
        b->avail_idx = b->used_seen = 0;
        /* Request i uses descriptors 3i (header), 3i+1 (data), 3i+2 (status), for good. */
        for (unsigned i = 0; i < MAX_QD; i++) {
                b->hdr[i] = vdrv_alloc(&b->d, 16, 16);
                b->data[i] = vdrv_alloc(&b->d, 64 << 10, 4096);
                b->status[i] = vdrv_alloc(&b->d, 1, 1);
                b->hdr_p[i] = host(b, b->hdr[i], 16);
                b->data_p[i] = host(b, b->data[i], 64 << 10);
                b->status_p[i] = host(b, b->status[i], 1);
                memset(b->hdr_p[i], 0, 16);
                uint8_t *d = b->desc + 16 * (3 * i);
                put_le64(d, b->hdr[i]);
                put_le32(d + 8, 16);
                put_le16(d + 12, VIRTQ_DESC_F_NEXT);
                put_le16(d + 14, (uint16_t)(3 * i + 1));
                put_le64(d + 16, b->data[i]);
                put_le16(d + 16 + 14, (uint16_t)(3 * i + 2));
                put_le64(d + 32, b->status[i]);
                put_le32(d + 32 + 8, 1);
                put_le16(d + 32 + 12, VIRTQ_DESC_F_WRITE);
        }
}

static void device_close(struct bench *b)
{
        virtio_mmio_destroy(b->t);
        virtio_blk_destroy(b->blk);
        hostmem_destroy(b->hm);
}

/* ---- measurement ---- */

typedef void (*batch_fn)(struct bench *b, const struct workload *w);

static double thread_cpu(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Operations per second over at least `seconds`; *per_cpu (when not NULL): operations per
 * second of this thread's CPU time (user and system), which other load on the machine
 * disturbs far less than the wall clock. */
static double measure_cpu(struct bench *b, const struct workload *w, batch_fn fn, double seconds,
                          double *per_cpu)
{
        unsigned long ops = 0;
        double t0 = now(), c0 = thread_cpu(), t;

        b->pos = 0;
        do {
                for (int k = 0; k < 16; k++) {
                        fn(b, w);
                        ops += w->qd;
                }
                t = now() - t0;
        } while (t < seconds);
        if (per_cpu)
                *per_cpu = (double)ops / (thread_cpu() - c0);
        return (double)ops / t;
}

static double measure(struct bench *b, const struct workload *w, batch_fn fn, double seconds)
{
        return measure_cpu(b, w, fn, seconds, NULL);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double median(double *v, int n)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fill_file(struct bench *b)
{
        uint8_t *buf = malloc(1 << 20);

        if (!buf)
                die("malloc");
        for (size_t i = 0; i < (1u << 20); i++)
                buf[i] = (uint8_t)(i * 31 + 7);
        for (uint64_t off = 0; off < b->file_size; off += 1 << 20)
                if (pwrite(b->fd, buf, 1 << 20, (off_t)off) != 1 << 20)
                        die("pwrite");
        free(buf);
        fsync(b->fd);
}

static const char *only_engine, *only_workload, *only_one;

/* The file being measured, removed if the run is interrupted (it may sit in RAM). */
static char current_path[256];

static void on_signal(int sig)
{
        if (current_path[0])
                unlink(current_path);
        signal(sig, SIG_DFL);
        raise(sig);
}

static void run_dir(const char *dir, uint64_t size, double seconds, int rounds)
{
        static const char *engines[] = {"sync", "io_uring"};
        struct bench b = {0}, sev;
        struct ownership *own;
        char path[256];
        uint64_t rng = 0x9e3779b97f4a7c15ull;

        snprintf(path, sizeof(path), "%s/vmm-bench-blk-XXXXXX", dir);
        b.fd = mkstemp(path);
        if (b.fd < 0)
                die(path);
        memcpy(current_path, path, sizeof(current_path));
        b.file_size = size;
        fill_file(&b);
        b.random_off = malloc(NR_RANDOM * sizeof(*b.random_off));
        for (int i = 0; i < NR_RANDOM; i++) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                b.random_off[i] = (rng % (size / 4096)) * 4096;
        }
        struct guest_mem_spec spec = {
            .size = MEM, .hole_start = 0xc0000000ull, .hole_end = 0x100000000ull};
        struct error err = {0};
        if (guest_mem_create(&spec, &err, &b.mem)) {
                fprintf(stderr, "bench/blk: %s\n", err.msg);
                exit(1);
        }
        if (event_loop_create(&b.loop) || io_uring_queue_init(2 * MAX_QD, &b.ring, 0))
                die("event loop / io_uring");
        /* The sev VM: private from launch, then the guest shared all of its memory. */
        if (ownership_create(b.mem, true, &own) || ownership_set_all(own, false))
                die("ownership map");

        printf("\n%s (%llu MiB file, %d rounds of %.2f s, median)\n", path,
               (unsigned long long)(size >> 20), rounds, seconds);
        printf("%-20s %-9s %12s %12s %7s %7s %12s %7s %12s %7s\n", "workload", "engine", "device",
               "sev", "sev/dev", "(cpu)", "raw pv", "ratio", "raw uring", "ratio");
        for (unsigned e = 0; e < 2; e++) {
                if (only_engine && strcmp(only_engine, engines[e]))
                        continue;
                enum virtio_blk_engine engine =
                    e == 0 ? VIRTIO_BLK_ENGINE_SYNC : VIRTIO_BLK_ENGINE_IO_URING;
                /* Same file, guest memory and baselines; its own device and driver heap. */
                sev = b;
                sev.errors = 0;
                device_open(&b, path, engine, 0x10000, NULL);
                device_open(&sev, path, engine, MEM / 2, own);
                for (unsigned i = 0; i < ARRAY_SIZE(workloads); i++) {
                        const struct workload *w = &workloads[i];
                        if (only_workload && !strstr(w->name, only_workload))
                                continue;
                        double dev[MAX_ROUNDS], raw[MAX_ROUNDS], ring[MAX_ROUNDS];
                        double sv[MAX_ROUNDS], rr[MAX_ROUNDS], ru[MAX_ROUNDS], rs[MAX_ROUNDS];
                        double dc[MAX_ROUNDS], sc[MAX_ROUNDS], rc[MAX_ROUNDS];
                        /* Alternating short rounds; a ratio is taken within each round
                         * (the machine's load drifts), then the median. */
                        for (int r = 0; r < rounds; r++) {
                                raw[r] = only_one && *only_one != 'r'
                                             ? 1
                                             : measure(&b, w, raw_sync_batch, seconds);
                                dc[r] = sc[r] = 1;
                                dev[r] = only_one && *only_one != 'd'
                                             ? 1
                                             : measure_cpu(&b, w, device_batch, seconds, &dc[r]);
                                sv[r] = only_one && *only_one != 's'
                                            ? 1
                                            : measure_cpu(&sev, w, device_batch, seconds, &sc[r]);
                                ring[r] = only_one && *only_one != 'u'
                                              ? 1
                                              : measure(&b, w, raw_uring_batch, seconds);
                                rr[r] = dev[r] / raw[r];
                                ru[r] = dev[r] / ring[r];
                                rs[r] = sv[r] / dev[r];
                                rc[r] = sc[r] / dc[r];
                        }
                        double md = median(dev, rounds), mr = median(raw, rounds),
                               mu = median(ring, rounds), ms = median(sv, rounds);
                        bool big = w->bs >= (64u << 10);
                        double unit = big ? (double)w->bs / 1e6 : 1.0;
                        const char *u = big ? "MB/s" : "IOPS";
                        printf("%-20s %-9s %9.0f %s %9.0f %s %6.3f %7.3f %9.0f %s %6.2f %9.0f %s "
                               "%6.2f\n",
                               w->name, engines[e], md * unit, u, ms * unit, u, median(rs, rounds),
                               median(rc, rounds), mr * unit, u, median(rr, rounds), mu * unit, u,
                               median(ru, rounds));
                        fflush(stdout);
                }
                device_close(&b);
                device_close(&sev);
                b.errors += sev.errors;
        }
        if (b.errors)
                printf("ERRORS: %lu requests failed or came back wrong\n", b.errors);
        io_uring_queue_exit(&b.ring);
        event_loop_destroy(b.loop);
        ownership_destroy(own);
        guest_mem_destroy(b.mem);
        free(b.random_off);
        close(b.fd);
        unlink(path);
        current_path[0] = '\0';
}

int main(int argc, char **argv)
{
        double seconds = 0.25;
        int rounds = 5, opt;
        uint64_t size = 256ull << 20;

        while ((opt = getopt(argc, argv, "t:r:s:e:w:o:")) != -1) {
                if (opt == 't')
                        seconds = atof(optarg);
                else if (opt == 'r')
                        rounds = atoi(optarg);
                else if (opt == 's')
                        size = (uint64_t)atoll(optarg) << 20;
                else if (opt == 'e')
                        only_engine = optarg;
                else if (opt == 'w')
                        only_workload = optarg;
                else if (opt == 'o')
                        only_one = optarg;
                else {
                        fprintf(stderr,
                                "usage: %s [-t SECONDS] [-r ROUNDS] [-s FILE_MIB] [-e ENGINE] [-w "
                                "WORKLOAD] [-o device|sev|raw|uring] [DIR...]\n",
                                argv[0]);
                        return 2;
                }
        }
        if (rounds < 1 || rounds > MAX_ROUNDS || seconds <= 0 || size < (1u << 20)) {
                fprintf(stderr, "bench/blk: bad arguments\n");
                return 2;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        printf("bench/blk: virtio-blk device (ordinary and sev VM) vs raw preadv/pwritev and raw "
               "io_uring (same file, same buffers)\ntargets: 64K >= 0.90 of raw, 4K >= 0.80 of "
               "raw, sev >= 0.97 of the ordinary device\n");
        if (optind == argc) {
                run_dir("/dev/shm", size, seconds, rounds);
                run_dir("/tmp", size, seconds, rounds);
        }
        for (int i = optind; i < argc; i++)
                run_dir(argv[i], size, seconds, rounds);
        return 0;
}
