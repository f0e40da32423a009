/*
 * virtio-mem (mem.c) through the hostile driver of virtio_harness.h: PLUG, UNPLUG,
 * UNPLUG_ALL and STATE requests, well-formed or not, over a region of 8 to 64 blocks of
 * 2 MiB, while the host changes the requested size (PATCH /hotplug/memory). Creation bytes:
 * the region's block count (u8, 8 + value % 57). The device's own operation: a new
 * requested size (u8 blocks, clipped to the region).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/mem.h"
#include "virtio_harness.h"

#define BLOCK (2ull << 20)

static struct virtio_mem *mem;
static uint64_t blocks;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

static struct virtio_device *mem_create(struct vh *h, struct fz *f)
{
        struct error err = {0};
        struct virtio_mem_config c = {.name = "mem0", .block_size = BLOCK};

        (void)h;
        blocks = 8 + fz_u8(f) % 57;
        c.region_size = blocks * BLOCK;
        if (virtio_mem_create(&c, &err, &mem)) {
                fprintf(stderr, "fuzz_virtio_mem: %s\n", err.msg);
                abort();
        }
        virtio_mem_set_addr(mem, 0x200000000ull);
        return virtio_mem_device(mem);
}

static void mem_op(struct vh *h, struct fz *f)
{
        struct virtio_mem_stats st;
        uint64_t want = fz_u8(f) % (blocks + 1);

        (void)h;
        virtio_mem_set_requested(mem, want * BLOCK);
        virtio_mem_get_stats(mem, &st);
        /* What the device says is plugged never passes the region. */
        if (st.plugged_size > blocks * BLOCK)
                abort();
}

static void mem_destroy(struct vh *h)
{
        (void)h;
        virtio_mem_destroy(mem);
        mem = NULL;
}

static const struct vh_device dev = {
    .name = "mem0",
    .nr_queues = 1,
    .create = mem_create,
    .destroy = mem_destroy,
    .op = mem_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
