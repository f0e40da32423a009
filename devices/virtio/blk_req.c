/* virtio-blk requests: validation and the host I/O steps of each type (blk_req.h). */
#include "blk_req.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

/* A buffer the WRITE_ZEROES fallback writes from; never written itself. */
static uint8_t zeros[ZERO_CHUNK];

static bool range_ok(const struct virtio_blk *blk, uint64_t sector, uint64_t bytes, uint64_t *off)
{
        uint64_t end;

        if (sector > (UINT64_MAX >> SECTOR_SHIFT))
                return false;
        *off = sector << SECTOR_SHIFT;
        return range_end(*off, bytes, &end) && end <= blk->capacity;
}

void blk_guest_error(struct virtio_blk *blk, const struct blk_req *req, const char *why)
{
        LOG_GUEST(&blk->rl, "%s: request type %u (head %u): %s", blk->name, req->type,
                  req->chain.head, why);
}

static void host_error(struct virtio_blk *blk, const struct blk_req *req, long res)
{
        LOG_GUEST(&blk->rl, "%s: host I/O error on request type %u at byte %llu: %s", blk->name,
                  req->type, (unsigned long long)req->io.off,
                  res < 0 ? strerror((int)-res) : "unexpected end of file");
}

static void set_transfer(struct blk_req *req, enum blk_io_op op)
{
        req->io = (struct blk_io){.op = op,
                                  .iov = &req->iov[req->iov_first],
                                  .iovcnt = req->iov_total - req->iov_first,
                                  .off = req->off + req->done};
}

static void set_range_step(struct blk_req *req)
{
        const struct dwz_range *r = &req->ranges[req->range];

        if (req->type == VIRTIO_BLK_T_DISCARD || req->wz == WZ_PUNCH_HOLE) {
                req->io = (struct blk_io){.op = BLK_IO_FALLOCATE,
                                          .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                          .off = r->off,
                                          .len = r->len};
        } else if (req->wz == WZ_ZERO_RANGE) {
                req->io = (struct blk_io){.op = BLK_IO_FALLOCATE,
                                          .mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                          .off = r->off,
                                          .len = r->len};
        } else {
                uint64_t left = r->len - req->wz_done;
                int n = 0;

                while (left && n < (int)ZERO_IOVS) {
                        uint64_t chunk = left < ZERO_CHUNK ? left : ZERO_CHUNK;
                        req->iov[n++] = (struct iovec){.iov_base = zeros, .iov_len = chunk};
                        left -= chunk;
                }
                req->io = (struct blk_io){
                    .op = BLK_IO_WRITE, .iov = req->iov, .iovcnt = n, .off = r->off + req->wz_done};
        }
}

/* Moves to the next discard/write-zeroes range; true when there is none left. */
static bool next_range(struct blk_req *req)
{
        req->range++;
        req->wz = WZ_ZERO_RANGE;
        req->wz_done = 0;
        if (req->range == req->nr_ranges)
                return true;
        set_range_step(req);
        return false;
}

static bool fail(struct virtio_blk *blk, struct blk_req *req, long res)
{
        host_error(blk, req, res);
        req->status = VIRTIO_BLK_S_IOERR;
        return true;
}

static bool advance_transfer(struct virtio_blk *blk, struct blk_req *req, long res)
{
        uint32_t left = req->len - req->done, n;

        if (res <= 0)
                return fail(blk, req, res);
        n = (uint64_t)res < left ? (uint32_t)res : left;
        req->done += n;
        if (req->type == VIRTIO_BLK_T_IN)
                req->written = req->done;
        if (req->done == req->len)
                return true;
        /* A short transfer: go on with the rest. */
        while (n) {
                struct iovec *v = &req->iov[req->iov_first];
                if (n >= v->iov_len) {
                        n -= (uint32_t)v->iov_len;
                        req->iov_first++;
                } else {
                        v->iov_base = (uint8_t *)v->iov_base + n;
                        v->iov_len -= n;
                        n = 0;
                }
        }
        set_transfer(req, req->io.op);
        return false;
}

static bool advance_range(struct virtio_blk *blk, struct blk_req *req, long res)
{
        const struct dwz_range *r = &req->ranges[req->range];

        if (req->io.op == BLK_IO_WRITE) { /* writing zeros */
                if (res <= 0)
                        return fail(blk, req, res);
                req->wz_done +=
                    (uint64_t)res < r->len - req->wz_done ? (uint64_t)res : r->len - req->wz_done;
                if (req->wz_done < r->len) {
                        set_range_step(req);
                        return false;
                }
                return next_range(req);
        }
        if (res == -EOPNOTSUPP) {
                /* DISCARD is a hint: a filesystem without holes keeps the data. */
                if (req->type == VIRTIO_BLK_T_DISCARD)
                        return next_range(req);
                req->wz = req->wz == WZ_ZERO_RANGE && r->unmap ? WZ_PUNCH_HOLE : WZ_WRITE;
                set_range_step(req);
                return false;
        }
        if (res < 0)
                return fail(blk, req, res);
        return next_range(req);
}

bool blk_req_advance(struct virtio_blk *blk, struct blk_req *req, long res)
{
        switch (req->type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT:
                return advance_transfer(blk, req, res);
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                return advance_range(blk, req, res);
        default: /* FLUSH */
                return res < 0 ? fail(blk, req, res) : true;
        }
}

/* Pins the data range [off, off+len) of the readable (IN: writable) part. */
/* Where [off, off+len) of the readable (write=false) or writable part lies in guest memory
 * when a single buffer holds it (the common case: one data buffer per request). */
static bool single_span(const struct virtq_chain *c, bool write, uint32_t off, uint32_t len,
                        gpa_t *gpa)
{
        for (unsigned i = 0; i < c->nr_segs; i++) {
                const struct virtq_seg *s = &c->segs[i];

                if (s->write != write)
                        continue;
                if (off >= s->len) {
                        off -= s->len;
                        continue;
                }
                *gpa = s->addr + off;
                return len <= s->len - off;
        }
        return false;
}

static bool pin_data(struct virtio_blk *blk, struct blk_req *req, bool write, uint32_t off,
                     uint32_t len)
{
        struct virtq *q = blk_queue(blk);
        int n;

        /* One span: pinned straight through hostmem, without the chain walk. */
        req->pin_single = single_span(&req->chain, write, off, len, &req->pin_gpa);
        if (req->pin_single)
                n = hostmem_pin(q->mem, req->pin_gpa, len, &req->iov[0]) ? -EFAULT : 1;
        else
                n = virtq_chain_pin(q, &req->chain, write, off, len, req->iov, MAX_IOV);
        if (n < 0) {
                blk->stats.bad_requests++;
                blk_guest_error(blk, req, "data buffers refused by guest memory");
                return false;
        }
        req->data_pinned = true;
        req->data_write = write;
        req->pin_off = off;
        req->pin_len = len;
        req->iov_first = 0;
        req->iov_total = n;
        return true;
}

/* IN/OUT: true when the first step is ready, false when the request failed. */
static bool begin_transfer(struct virtio_blk *blk, struct blk_req *req, uint64_t sector)
{
        bool in = req->type == VIRTIO_BLK_T_IN;
        const struct virtq_chain *c = &req->chain;

        if (!in && blk->read_only) {
                blk_guest_error(blk, req, "write to a read-only drive");
                return false;
        }
        req->len = in ? c->writable - 1 : c->readable - HDR_LEN;
        if (req->len % SECTOR) {
                blk_guest_error(blk, req, "data length is not a multiple of 512");
                return false;
        }
        if (!range_ok(blk, sector, req->len, &req->off)) {
                blk_guest_error(blk, req, "sectors beyond the capacity");
                return false;
        }
        if (req->len == 0)
                return true;
        if (!pin_data(blk, req, in, in ? 0 : HDR_LEN, req->len))
                return false;
        set_transfer(req, in ? BLK_IO_READ : BLK_IO_WRITE);
        return true;
}

/* DISCARD/WRITE_ZEROES: reads the segments; returns the status to complete with now, or -1
 * when the first step is ready. */
static int begin_ranges(struct virtio_blk *blk, struct blk_req *req)
{
        bool discard = req->type == VIRTIO_BLK_T_DISCARD;
        uint8_t raw[MAX_DWZ_SEGS * DWZ_SEG_LEN];
        uint32_t bytes = req->chain.readable - HDR_LEN;

        if (!virtio_has_feature(&blk->vd,
                                discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
                return VIRTIO_BLK_S_UNSUPP;
        if (blk->read_only)
                return VIRTIO_BLK_S_IOERR;
        if (bytes == 0 || bytes % DWZ_SEG_LEN || bytes > sizeof(raw)) {
                blk_guest_error(blk, req, "bad number of discard/write-zeroes segments");
                return VIRTIO_BLK_S_IOERR;
        }
        if (virtq_chain_read(blk_queue(blk), &req->chain, HDR_LEN, raw, bytes) != bytes) {
                blk->stats.bad_requests++;
                return VIRTIO_BLK_S_IOERR;
        }
        req->nr_ranges = 0;
        for (uint32_t i = 0; i < bytes / DWZ_SEG_LEN; i++) {
                const uint8_t *s = raw + i * DWZ_SEG_LEN;
                uint64_t sector = get_le64(s);
                uint32_t num = get_le32(s + 8), flags = get_le32(s + 12);
                struct dwz_range r = {.len = (uint64_t)num << SECTOR_SHIFT,
                                      .unmap = flags & VIRTIO_BLK_WRITE_ZEROES_F_UNMAP};

                /* 5.2.6.2: unknown flags, or unmap on a discard, are unsupported. */
                if ((flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_F_UNMAP) || (discard && r.unmap))
                        return VIRTIO_BLK_S_UNSUPP;
                if (num > MAX_DWZ_SECT || !range_ok(blk, sector, r.len, &r.off)) {
                        blk_guest_error(blk, req, "discard/write-zeroes range beyond the capacity");
                        return VIRTIO_BLK_S_IOERR;
                }
                if (num)
                        req->ranges[req->nr_ranges++] = r;
        }
        if (req->nr_ranges == 0)
                return VIRTIO_BLK_S_OK;
        req->range = 0;
        req->wz = WZ_ZERO_RANGE;
        req->wz_done = 0;
        set_range_step(req);
        return -1;
}

int blk_req_begin(struct virtio_blk *blk, struct blk_req *req, uint64_t sector)
{
        switch (req->type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT:
                if (!begin_transfer(blk, req, sector))
                        return VIRTIO_BLK_S_IOERR;
                return req->len ? -1 : VIRTIO_BLK_S_OK;
        case VIRTIO_BLK_T_FLUSH:
                /* Without VIRTIO_BLK_F_FLUSH (cache=unsafe) there is nothing honest to do. */
                if (!virtio_has_feature(&blk->vd, VIRTIO_BLK_F_FLUSH))
                        return VIRTIO_BLK_S_UNSUPP;
                req->io = (struct blk_io){.op = BLK_IO_FLUSH};
                return -1;
        case VIRTIO_BLK_T_GET_ID: {
                uint32_t n = req->chain.writable - 1;
                if (n > VIRTIO_BLK_ID_BYTES)
                        n = VIRTIO_BLK_ID_BYTES;
                if (virtq_chain_write(blk_queue(blk), &req->chain, 0, blk->id, n) != n) {
                        blk->stats.bad_requests++;
                        return VIRTIO_BLK_S_IOERR;
                }
                req->written = n;
                return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                return begin_ranges(blk, req);
        default:
                return VIRTIO_BLK_S_UNSUPP;
        }
}
