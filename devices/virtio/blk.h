/*
 * virtio-blk on a host file or block device.
 *
 * Requests: IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES (fallocate), with the status
 * byte in the chain's last writable byte. Cache modes: `unsafe` (no FLUSH feature; the
 * host's page cache decides; a FLUSH sent anyway is VIRTIO_BLK_S_UNSUPP, as for any
 * feature not negotiated) and `writeback` (VIRTIO_BLK_F_FLUSH: a FLUSH completes only
 * after fdatasync). Engines: `sync` (preadv/pwritev on the VMM thread) and `io_uring`
 * (liburing; up to a queue of requests in flight, completions through an eventfd in the
 * event loop; a reset cancels and waits for them). Zero-copy: data moves straight between
 * the file and guest buffers pinned for the I/O only. A short transfer goes on with the
 * rest; one that cannot (end of file, an error) is VIRTIO_BLK_S_IOERR with the bytes that
 * did arrive counted in the used length. A read-only drive offers VIRTIO_BLK_F_RO and fails
 * writes with VIRTIO_BLK_S_IOERR. An optional rate limiter (bytes and requests) pauses
 * processing until its timer fires.
 */
#ifndef DEVICES_VIRTIO_BLK_H
#define DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/event_loop.h"
#include "devices/rate_limiter.h"
#include "virtio.h"

#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_ID_BYTES   20

/* Protocol constants (virtio 1.2, section 5.2). */
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WRITE_ZEROES_F_UNMAP 1 /* struct virtio_blk_discard_write_zeroes flags */

/* Offsets in the configuration space (struct virtio_blk_config). */
#define VIRTIO_BLK_CFG_CAPACITY                 0  /* le64, 512-byte sectors */
#define VIRTIO_BLK_CFG_SIZE_MAX                 8  /* le32 */
#define VIRTIO_BLK_CFG_SEG_MAX                  12 /* le32 */
#define VIRTIO_BLK_CFG_BLK_SIZE                 20 /* le32 */
#define VIRTIO_BLK_CFG_WRITEBACK                32 /* u8 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS      36 /* le32 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG          40 /* le32 */
#define VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT 44 /* le32 */
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS 48 /* le32 */
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG     52 /* le32 */
#define VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP   56 /* u8 */
#define VIRTIO_BLK_CFG_LEN                      60 /* through unused1[3] */

enum virtio_blk_cache { VIRTIO_BLK_CACHE_UNSAFE, VIRTIO_BLK_CACHE_WRITEBACK };
enum virtio_blk_engine { VIRTIO_BLK_ENGINE_SYNC, VIRTIO_BLK_ENGINE_IO_URING };

struct virtio_blk_config {
        const char *name;     /* "block0": logs and metrics */
        const char *drive_id; /* GET_ID answer (truncated to 20 bytes) */
        const char *path;
        bool read_only;
        enum virtio_blk_cache cache;
        enum virtio_blk_engine engine;
        const struct rate_limiter_config *limit; /* NULL: unlimited */
        struct event_loop *loop;
};

struct virtio_blk_stats {
        uint64_t read_count, write_count, flush_count, get_id_count, discard_count,
            write_zeroes_count;
        uint64_t read_bytes, write_bytes;
        uint64_t io_errors;    /* requests completed with VIRTIO_BLK_S_IOERR */
        uint64_t unsupported;  /* requests completed with VIRTIO_BLK_S_UNSUPP */
        uint64_t bad_requests; /* malformed chains or refused guest memory */
        uint64_t rate_limited;
};

struct virtio_blk;

/* Opens the backing file (a regular file or a block device; capacity = its size rounded
 * down to 512 bytes); a missing, unreadable or (without read_only) unwritable file is an
 * ERROR_CONFIG error naming the path. cfg->loop is required. */
int virtio_blk_create(const struct virtio_blk_config *cfg, struct error *err,
                      struct virtio_blk **out) MUST_CHECK;
/* After the transport is gone (its destruction resets the device, which ends every
 * request in flight). */
void virtio_blk_destroy(struct virtio_blk *blk);
struct virtio_device *virtio_blk_device(struct virtio_blk *blk);
void virtio_blk_get_stats(struct virtio_blk *blk, struct virtio_blk_stats *out);
/* Completes what io_uring has finished, from any thread (the event loop does it too): for a
 * thread that waits for this device's requests to let go of guest memory. */
void virtio_blk_reap(struct virtio_blk *blk);

/* PATCH /drives/{id} after boot: switch the backing file (the capacity in the configuration
 * space follows, with a configuration change interrupt) and/or replace the rate limiter
 * (NULL: unlimited). Errors leave the old backend in place. Requests already started
 * finish on the old file first. Both take the device lock: the device must be attached to
 * its transport (as get_stats). */
int virtio_blk_set_path(struct virtio_blk *blk, const char *path, struct error *err) MUST_CHECK;
void virtio_blk_set_rate_limiter(struct virtio_blk *blk, const struct rate_limiter_config *limit);

#endif
