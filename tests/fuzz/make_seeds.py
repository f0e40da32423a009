#!/usr/bin/env python3
"""Writes the structured seed inputs of the fuzz targets into tests/fuzz/corpus/<target>/.

The binary targets (virtq, virtio_*, loader, cc) read inputs with their own small decoders
(fuzz_common.c, virtio_harness.c); the encoders here mirror them so that the seeds are
well-formed requests a fuzzer can start mutating from: a block write read back, a network
frame both ways, a vsock connection each way, balloon inflation, platform calls of each
confidential platform, the probe guest's kernel images, real snapshots' state files (with
/dev/kvm). Run it after changing a decoder:

    tests/fuzz/make_seeds.py [BUILD_DIR]   # BUILD_DIR: where tests/guest/probe*.elf are

Seeds are named seed-*; inputs found by fuzzing (regress-*) are kept as they are.
"""
import os
import struct
import subprocess
import tempfile
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, 'corpus')


def u8(v): return struct.pack('<B', v & 0xff)
def u16(v): return struct.pack('<H', v & 0xffff)
def u32(v): return struct.pack('<I', v & 0xffffffff)
def u64(v): return struct.pack('<Q', v & 0xffffffffffffffff)


def fz_bytes(b, max_=4096):
    """fz_bytes: a length (u8 below 256 bytes of maximum, else u16), then the bytes."""
    return (u8(len(b)) if max_ < 256 else u16(len(b))) + b


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(data)


# ---- virtio_harness.c ----

ALL_FEATURES = (1 << 63) - 1
VERSION_1, ACCESS_PLATFORM, EVENT_IDX, INDIRECT = 1 << 32, 1 << 33, 1 << 29, 1 << 28
STATUS = 0x70


class Harness:
    """Builds one input of virtio_harness.c."""

    def __init__(self, nr_queues, create=b'', mode=1, want=ALL_FEATURES, qexp=None):
        qexp = qexp if qexp is not None else [8] * nr_queues   # 256 entries
        self.nq = nr_queues
        self.b = u8(mode) + u64(want) + b''.join(u8(e) for e in qexp) + create

    def dec_len(self, n):
        if n < 256:
            return u8(0) + u8(n)
        if n <= 8192:
            return u8(100) + u16(n)
        return u8(230) + u32(n)

    def chain(self, q, segs, indirect=False, kick=True):
        """segs: (length, writable, content) tuples; buffers come from the harness's heap."""
        self.b += u8(3) + u8(q) + u8(len(segs) - 1) + u8((1 if indirect else 0) | (0 if kick else 2))
        for seg in segs:
            length, writable, content = seg[:3]
            # A fourth element places the buffer at an offset of the buffer area (page
            # aligned ranges for the balloon's reports); otherwise it comes from the heap.
            where = u8(170) + u32(seg[3]) if len(seg) > 3 else u8(0) + u32(0)
            self.b += u8(1 if writable else 0) + self.dec_len(length) + where
            if not writable:
                self.b += fz_bytes(content or b'')
        return self

    def kick(self, q):
        self.b += u8(7) + u8(q)
        return self

    def loop(self):
        self.b += u8(8)
        return self

    def dev_op(self, payload):
        self.b += u8(9) + payload
        return self

    def reset_bring_up(self, want=ALL_FEATURES, qexp=None):
        qexp = qexp if qexp is not None else [8] * self.nq
        self.b += u8(11) + u64(want) + b''.join(u8(e) for e in qexp)
        return self

    def convert(self, first, n, private):
        self.b += u8(12) + u16(first) + u8(n - 1) + u8(1 if private else 0)
        return self

    def used(self):
        self.b += u8(14)
        return self

    def mmio_write(self, off, value):
        self.b += u8(0) + u16(off) + u8(0) + u64(value)
        return self

    def mmio_read(self, off):
        self.b += u8(1) + u16(off) + u8(0) + u64(0)
        return self

    def data(self):
        return self.b


# ---- virtio-blk ----

def blk_create(flags=0, sectors=2048 - 1, a=0, b=0, script=b'\0' * 8):
    return u8(flags) + u16(sectors) + u8(a) + u8(b) + script


def blk_req(h, typ, sector, data=None, data_len=0, write_data=False, status=True, indirect=False):
    hdr = u32(typ) + u32(0) + u64(sector)
    segs = [(16, False, hdr)]
    if data is not None:
        segs.append((len(data), False, data))
    if data_len:
        segs.append((data_len, True, None))
    if status:
        segs.append((1, True, None))
    return h.chain(0, segs, indirect=indirect)


def seeds_blk():
    T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WZ = 0, 1, 4, 8, 11, 13
    for name, flags in [('sync', 2), ('uring', 2 | 4), ('ro', 1), ('unsafe', 0)]:
        h = Harness(1, blk_create(flags))
        blk_req(h, T_OUT, 0, data=bytes(range(256)) * 16)
        blk_req(h, T_IN, 0, data_len=4096)
        blk_req(h, T_FLUSH, 0)
        blk_req(h, T_GET_ID, 0, data_len=20)
        h.loop().used()
        write('virtio_blk', name, h.data())
    h = Harness(1, blk_create(2))
    seg = u64(8) + u32(8) + u32(0)
    blk_req(h, T_DISCARD, 0, data=seg)
    blk_req(h, T_WZ, 0, data=u64(16) + u32(8) + u32(1))
    blk_req(h, 99, 0, data_len=512)
    h.loop().used()
    write('virtio_blk', 'discard_write_zeroes', h.data())
    h = Harness(1, blk_create(2 | 16, script=bytes([1, 2, 3, 4, 5, 0, 1, 2])))
    for i in range(4):
        blk_req(h, T_OUT, i * 8, data=b'\xab' * 4096)
        blk_req(h, T_IN, i * 8, data_len=4096)
    blk_req(h, T_FLUSH, 0)
    h.dev_op(u8(0) + u8(1))   # another file
    blk_req(h, T_IN, 0, data_len=512)
    write('virtio_blk', 'faults', h.data())
    h = Harness(1, blk_create(2 | 4 | 16, script=bytes([3, 3, 2, 5, 1, 1, 0, 4])))
    for i in range(8):
        blk_req(h, T_OUT if i % 2 else T_IN, i, data_len=0 if i % 2 else 1024,
                data=b'\x11' * 1024 if i % 2 else None)
    blk_req(h, T_WZ, 0, data=u64(0) + u32(64) + u32(0))
    h.loop().loop().used()
    write('virtio_blk', 'uring_faults', h.data())
    h = Harness(1, blk_create(2 | 8, a=2, b=1))
    for i in range(6):
        blk_req(h, T_OUT, i * 8, data=b'\x22' * 2048)
    h.loop().used()
    write('virtio_blk', 'rate_limited', h.data())
    h = Harness(1, blk_create(2))
    blk_req(h, T_OUT, 0, data=b'\x33' * 1024, indirect=True)
    blk_req(h, T_IN, 0, data_len=1024, indirect=True)
    h.used()
    write('virtio_blk', 'indirect', h.data())
    # A protected VM: the data buffers' granules become private mid-way.
    h = Harness(1, blk_create(2), mode=1 | 2)
    blk_req(h, T_OUT, 0, data=b'\x44' * 4096)
    h.convert(256, 8, True)
    blk_req(h, T_IN, 0, data_len=4096)
    h.convert(256, 8, False)
    blk_req(h, T_IN, 0, data_len=4096)
    h.used()
    write('virtio_blk', 'protected', h.data())
    # No bring-up: the driver's own register writes.
    h = Harness(1, blk_create(0), mode=0)
    for v in (0, 1, 3):
        h.mmio_write(STATUS, v)
    h.mmio_write(0x24, 1).mmio_write(0x20, 1).mmio_write(STATUS, 11)
    h.mmio_read(0x100).mmio_read(0xfc)
    write('virtio_blk', 'registers', h.data())


def seeds_rng():
    h = Harness(1, u8(0) + u8(0) + u8(0))
    for n in (16, 4096, 70000):
        h.chain(0, [(n, True, None)])
    h.chain(0, [(64, True, None)] * 4, indirect=True)
    h.loop().used()
    write('virtio_rng', 'fill', h.data())
    h = Harness(1, u8(1) + u8(1) + u8(1))
    for n in range(8):
        h.chain(0, [(512, True, None)])
    h.loop().used()
    write('virtio_rng', 'rate_limited', h.data())
    h = Harness(1, u8(0) + u8(0) + u8(0), mode=1 | 2)
    h.convert(256, 4, True)
    h.chain(0, [(4096, True, None)])
    h.used()
    write('virtio_rng', 'protected', h.data())


def seeds_pmem():
    flush = u32(0)
    h = Harness(1, u8(0) + u8(0))
    h.chain(0, [(4, False, flush), (4, True, None)])
    h.chain(0, [(4, False, u32(7)), (4, True, None)])             # unknown type
    h.chain(0, [(2, False, flush[:2]), (4, True, None)])          # short request
    h.chain(0, [(4, False, flush), (1, True, None)])              # short status
    h.chain(0, [(4, False, flush), (4, True, None)], indirect=True)
    h.loop().used()
    write('virtio_pmem', 'flush', h.data())
    h = Harness(1, u8(1 | 2) + u8(1))
    for n in range(6):
        h.chain(0, [(4, False, flush), (4, True, None)])
    h.dev_op(u8(0x81)).loop().dev_op(u8(0xc0)).loop().used()
    write('virtio_pmem', 'read_only_rate_limited', h.data())


def seeds_mem():
    def req(t, addr, n):
        return u16(t) + bytes(6) + u64(addr) + u16(n) + bytes(6)
    base, block = 0x200000000, 2 << 20
    h = Harness(1, u8(0))
    h.dev_op(u8(4))
    h.chain(0, [(24, False, req(0, base, 2)), (10, True, None)])            # plug
    h.chain(0, [(24, False, req(0, base + block, 4)), (10, True, None)])    # overlap
    h.chain(0, [(24, False, req(3, base, 8)), (10, True, None)])            # state
    h.dev_op(u8(1))
    h.chain(0, [(24, False, req(1, base + block, 1)), (10, True, None)])    # unplug
    h.chain(0, [(24, False, req(0, base + 4096, 1)), (10, True, None)])     # unaligned
    h.chain(0, [(16, False, req(0, base, 1)[:16]), (10, True, None)])       # short
    h.chain(0, [(24, False, req(2, 0, 0)), (10, True, None)])               # unplug all
    h.loop().used()
    write('virtio_mem', 'plug_unplug', h.data())


def seeds_balloon():
    def pfns(*ps):
        return b''.join(u32(p) for p in ps)
    h = Harness(5, u8(4) + u8(3))
    h.chain(0, [(12, False, pfns(0x100, 0x101, 0x102))])
    h.chain(1, [(8, False, pfns(0x100, 0x101))])
    h.chain(2, [(30, False, u16(0) + u64(1) + u16(4) + u64(1 << 20) + u16(99) + u64(3))])
    h.dev_op(u8(0) + u32(2)).dev_op(u8(1) + u8(2)).dev_op(u8(2))
    h.b += u8(0) + u16(0x104) + u8(192) + u64(5)  # config write of `actual`
    h.loop().used()
    write('virtio_balloon', 'inflate_deflate_stats', h.data())
    h = Harness(5, u8(1) + u8(0), mode=1 | 2)
    h.convert(0x100, 8, True)
    h.chain(0, [(16, False, pfns(0x100, 0x104, 0xfffff, 0x2ff))])
    h.used()
    write('virtio_balloon', 'protected', h.data())
    # Reporting and hinting (no statistics): queue 2 free page hints, 3 reports. A report
    # of two ranges; a round: start (acknowledge_on_stop), the id, a hint, STOP; a stale id
    # and its hint; the host's stop.
    h = Harness(5, u8(0) + u8(4 | 8))
    h.chain(3, [(8192, True, None, 0x1000), (4096, True, None, 0x4000)])
    h.dev_op(u8(3) + u8(1)).dev_op(u8(5))
    h.chain(2, [(4, False, u32(2))]).chain(2, [(4096, True, None, 0x6000)])
    h.chain(2, [(4, False, u32(0))])
    h.chain(2, [(4, False, u32(7))]).chain(2, [(4096, True, None, 0x8000)])
    h.dev_op(u8(4)).dev_op(u8(5))
    h.b += u8(0) + u16(0x10c) + u8(192) + u64(0xaa)  # poison_val after DRIVER_OK: refused
    h.loop().used()
    write('virtio_balloon', 'free_pages', h.data())
    # The same on a protected VM with statistics (queues 3 and 4), part of a report private.
    h = Harness(5, u8(0) + u8(2 | 4 | 8), mode=1 | 2)
    h.convert(0x100 + 2, 2, True)
    h.chain(4, [(16384, True, None, 0)])
    h.dev_op(u8(3) + u8(0))
    h.chain(3, [(4, False, u32(2)), (8192, True, None, 0x8000)])
    h.used()
    write('virtio_balloon', 'free_pages_protected', h.data())


VNET_HDR = 12


def seeds_net():
    eth = b'\xff' * 6 + bytes([2, 0, 0, 0, 0, 1]) + b'\x88\xb5' + b'payload' * 10
    h = Harness(2, b'')
    for i in range(4):
        h.chain(0, [(1526, True, None)])
    h.chain(1, [(VNET_HDR + len(eth), False, bytes(VNET_HDR) + eth)])
    h.dev_op(u8(0) + fz_bytes(b'\x88\xb5' + b'from the wire' * 5, 9000))
    h.loop().loop().used()
    write('virtio_net', 'rx_tx', h.data())
    h = Harness(2, b'', want=ALL_FEATURES & ~(1 << 15))   # no MRG_RXBUF
    h.chain(0, [(64, True, None)])
    h.dev_op(u8(0) + fz_bytes(b'\x88\xb5' + b'x' * 1400, 9000))
    h.chain(1, [(VNET_HDR, False, bytes([1, 1]) + bytes(10)), (len(eth), False, eth)])
    h.loop().used()
    write('virtio_net', 'small_buffers_gso', h.data())
    h = Harness(2, b'')
    h.dev_op(u8(1) + u8(1) + u8(1) + u8(1) + u8(1) + u8(1) + u8(1))
    for i in range(4):
        h.chain(1, [(VNET_HDR + len(eth), False, bytes(VNET_HDR) + eth)])
    h.loop().used()
    write('virtio_net', 'rate_limited', h.data())


VSOCK_HDR = 44


def vsock_pkt(src_port, dst_port, op, payload=b'', dst_cid=2, src_cid=3, flags=0,
              buf_alloc=65536, fwd_cnt=0):
    return (u64(src_cid) + u64(dst_cid) + u32(src_port) + u32(dst_port) + u32(len(payload)) +
            u16(1) + u16(op) + u32(flags) + u32(buf_alloc) + u32(fwd_cnt) + payload)


def seeds_vsock():
    REQ, RESP, RST, SHUT, RW, CUPD, CREQ = 1, 2, 3, 4, 5, 6, 7
    # The guest connects to a host listener (port 1024), sends, the host answers.
    h = Harness(3, u8(0))
    for i in range(4):
        h.chain(0, [(VSOCK_HDR + 4096, True, None)])
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(5000, 1024, REQ))])
    h.dev_op(u8(0) + u8(6))                      # accept on the listeners
    data = b'hello host'
    h.chain(1, [(VSOCK_HDR + len(data), False, vsock_pkt(5000, 1024, RW, data))])
    h.loop()
    h.dev_op(u8(0) + u8(2) + fz_bytes(b'hello guest', 8192))
    h.loop()
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(5000, 1024, CREQ))])
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(5000, 1024, SHUT, flags=3))])
    h.loop().used()
    write('virtio_vsock', 'guest_connects', h.data())
    # A host client connects to guest port 1234; the guest accepts; the peer vanishes.
    h = Harness(3, u8(0))
    for i in range(4):
        h.chain(0, [(VSOCK_HDR + 1024, True, None)])
    h.dev_op(u8(0) + u8(0) + u8(0) + u8(0))      # peer 0: CONNECT 1234
    h.loop()
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(1234, 1 << 30, RESP))])
    h.dev_op(u8(0) + u8(2) + fz_bytes(b'stream bytes' * 20, 8192))
    h.loop()
    h.chain(1, [(VSOCK_HDR + 5, False, vsock_pkt(1234, 1 << 30, RW, b'reply'))])
    h.dev_op(u8(0) + u8(5) + u8(1))              # close with a reset
    h.loop().used()
    write('virtio_vsock', 'host_connects', h.data())
    # Protocol errors: unknown connection, wrong CID, bad CONNECT line.
    h = Harness(3, u8(0))
    h.chain(0, [(VSOCK_HDR, True, None)])
    h.chain(1, [(VSOCK_HDR + 3, False, vsock_pkt(1, 2, RW, b'abc'))])
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(1, 1024, REQ, src_cid=9))])
    h.chain(1, [(VSOCK_HDR, False, vsock_pkt(1, 1024, CUPD))])
    h.dev_op(u8(1) + u8(1) + fz_bytes(b'CONNECT x\n', 64))
    h.loop().used()
    write('virtio_vsock', 'errors', h.data())


# ---- fuzz_virtq.c ----

def seeds_virtq():
    def desc(idx, addr, length, flags, nxt, table=None):
        b = u8(0) + u8(1 if table is None else 0)
        if table is not None:
            b += u8(0) + u32(table)
        b += u8(0) + u32(addr) + u8(0) + u8(length) if length < 256 else u8(0) + u32(addr) + u8(200) + u16(length)
        return b + u8(flags) + u16(nxt) + u16(idx)

    def publish(head):
        return u8(1) + u16(head)
    pop, read, write_, pin, push = u8(4), u8(7), u8(8), u8(9), u8(6)
    b = u8(0) + u8(8)   # size 256, default rings
    b += desc(0, 0x10000, 16, 1, 1) + desc(1, 0x20000, 200, 3, 2) + desc(2, 0x30000, 1, 2, 0)
    b += publish(0) + pop + read + u8(0) + u8(0) + u8(0) + u8(16)
    b += write_ + u8(0) + u8(0) + u8(200) + u16(300) + pin + u8(1) + u8(0) + u8(0) + u8(0) + u8(64) + u16(8)
    b += push + u8(1) + u8(0) + u8(16) + u8(10) + u8(11)
    write('virtq', 'chain', b)
    b = u8(16 | 8) + u8(4)
    b += desc(0, 0x40000, 48, 4, 0)     # indirect table of 3
    b += u8(3) + u8(0) + u32(0x40000) + fz_bytes(
        u64(0x11000) + u32(32) + u16(1) + u16(1) +
        u64(0x12000) + u32(64) + u16(3) + u16(2) +
        u64(0x13000) + u32(1) + u16(2) + u16(0))
    b += publish(0) + pop + read + u8(0) + u8(0) + u8(0) + u8(16) + pop
    write('virtq', 'indirect', b)
    b = u8(1) + u8(6)    # protected
    b += desc(0, 0x10000, 16, 1, 1) + desc(1, 0x11000, 100, 2, 0)
    b += u8(12) + u16(0x10) + publish(0) + pop + read + u8(0) + u8(0) + u8(0) + u8(16)
    b += u8(12) + u16(0x10) + read + u8(0) + u8(0) + u8(0) + u8(16)
    write('virtq', 'protected', b)
    b = u8(0) + u8(4) + u8(2) + u16(100) + pop     # an impossible avail index
    b += desc(0, 0x10000, 8, 1, 0) + publish(0) + u8(2) + u16(1) + pop   # a loop
    write('virtq', 'broken', b)


# ---- fuzz_loader.c ----

def seeds_loader(build_dir):
    def kernel(flags, img, initrd=b''):
        return u8(flags) + u32(len(img)) + img + initrd
    guest = os.path.join(build_dir, 'tests', 'guest') if build_dir else None
    for name in ('probe.elf', 'probe-nopvh.elf', 'probe.bzImage'):
        path = os.path.join(guest, name) if guest else ''
        if not os.path.exists(path):
            print(f'make_seeds: {path or name}: not built, skipped', file=sys.stderr)
            continue
        img = open(path, 'rb').read()
        if name.endswith('.elf'):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, name)
                subprocess.run(['objcopy', '--strip-all', path, out], check=True)
                img = open(out, 'rb').read()
        write('loader', name, kernel(1 | 4, img, b'initrd!' * 100))
    # A minimal ELF: one PT_LOAD at 1 MiB and a PVH note.
    note = u32(4) + u32(4) + u32(18) + b'Xen\0' + u32(0x100000)
    ehdr = (b'\x7fELF' + bytes([2, 1, 1]) + bytes(9) + u16(2) + u16(62) + u32(1) + u64(0x100000) +
            u64(64) + u64(0) + u32(0) + u16(64) + u16(56) + u16(2) + u16(64) + u16(0) + u16(0))
    load = struct.pack('<IIQQQQQQ', 1, 7, 0x1000, 0x100000, 0x100000, 16, 0x2000, 0x1000)
    pt_note = struct.pack('<IIQQQQQQ', 4, 4, 0x1000 + 16, 0, 0, len(note), len(note), 4)
    img = ehdr + load + pt_note
    img += bytes(0x1000 - len(img)) + b'\x90' * 16 + note
    write('loader', 'mini_pvh.elf', kernel(0, img))
    # A minimal bzImage header (protocol 2.15, 64-bit entry).
    bz = bytearray(0x1000)
    bz[0x1f1] = 1                              # setup_sects
    bz[0x1fe:0x200] = b'\x55\xaa'
    bz[0x202:0x206] = b'HdrS'
    bz[0x206:0x208] = u16(0x020f)
    bz[0x211] = 1                              # LOADED_HIGH
    bz[0x230:0x234] = u32(0x200000)
    bz[0x234] = 1
    bz[0x236:0x238] = u16(1)                   # XLF_KERNEL_64
    bz[0x238:0x23c] = u32(2047)
    bz[0x260:0x264] = u32(0x10000)
    bz[0x22c:0x230] = u32(0x7fffffff)
    write('loader', 'mini.bzImage', kernel(1 | 4, bytes(bz), b'initrd'))


# ---- fuzz_cc.c ----

def seeds_cc():
    def low(a):        # addr(): sel < 160 -> v % LOW_END
        return u8(0) + u32(a)
    def arg_addr(a):   # op_call argument: 40 <= sel < 128 -> addr() (below 40, ARG0 is special)
        return u8(64) + low(a)
    def arg_num(n):    # op_call argument: 128 <= sel < 200 -> u8
        return u8(150) + u8(n)
    def call(args, kind=b''):
        # pef: the call is the ultravisor call; s390: one byte UVC (1) / DIAG (0). Then the
        # byte that may replace the kind (0: it does not).
        return u8(2) + b''.join(args) + kind + u8(0)
    def guest_write(a, b):
        return u8(9) + low(a) + fz_bytes(b, 512)
    def host_read(a, n):
        return u8(7) + low(a) + u16(n)
    def device(a, n, op):
        return u8(10) + low(a) + u16(n) + u8(op)
    # pef: ESM, share, page out by a host read, page in by an MMIO exit, unshare all.
    esm = b'CVMMESM\0' + u32(1)
    b = u8(1) + guest_write(0x8000, esm)
    b += call([u8(0), arg_addr(0x8000), arg_num(0), arg_num(0)])                 # UV_ESM
    b += call([u8(1), arg_num(0x20), arg_num(1), arg_num(0)])                    # UV_SHARE_PAGE
    b += device(0x200000 - 0x1000, 64, 0) + device(0x20000, 64, 1) + host_read(0x30000, 64)
    b += u8(6) + low(0x30000) + u8(8) + u8(0) + u64(0) + u8(8)
    b += call([u8(3), arg_num(0), arg_num(0), arg_num(0)])                       # UNSHARE_ALL
    write('cc', 'pef', b)
    # s390-pv: DIAG 0x308 with the SE header, UVC set/remove shared access, query.
    cb_share = u16(0x30) + u16(0x1000) + bytes(4) + bytes(8) + u64(0x40000) + bytes(0x18)
    b = u8(2) + guest_write(0x9000, b'IBMSecEx' + bytes(8))
    b += call([u8(0), arg_addr(0x9000), arg_num(0), arg_num(0)], u8(0))                 # DIAG308 PV IPL
    b += guest_write(0xa000, cb_share)
    b += call([arg_addr(0xa000), arg_num(0), arg_num(0), arg_num(0)], u8(1))            # UVC
    b += guest_write(0xb000, u16(0x88) + u16(1) + bytes(0x84))
    b += call([arg_addr(0xb000), arg_num(0), arg_num(0), arg_num(0)], u8(1))
    b += host_read(0x50000, 4096) + u8(8) + device(0x40000, 4096, 2)
    write('cc', 's390', b)
    # sev: GHCB MSR info and page-state changes, MAP_GPA_RANGE both ways, host reads.
    b = u8(0) + u8(4) + u8(0) + u64(0x002) + u8(0)                                      # WRMSR info
    b += u8(4) + u8(1) + u64(0) + u8(0)                                                 # RDMSR
    b += u8(4) + u8(2) + low(0x60000) + u8(2) + u8(0)                                   # PSC shared
    b += u8(5) + u8(0) + low(0x70000) + u8(0) + u8(4) + u8(0) + u8(0)                   # MAP shared
    b += device(0x70000, 4096, 1) + host_read(0x70000, 64) + host_read(0x80000, 256)
    b += u8(5) + u8(0) + low(0x70000) + u8(0) + u8(4) + u8(0) + u8(0x10)                # MAP private
    b += device(0x70000, 16, 0)
    write('cc', 'sev', b)


def seeds_api_http_slow():
    """fuzz_api_http_slow: 4 connections, a 40 ms request time-out, a 60 ms idle one."""
    def connect(): return u8(0)
    def send(c, b): return u8(1) + u8(c) + fz_bytes(b, 255)
    def template(c, t, n=255): return u8(2) + u8(c) + u8(t) + u8(n)
    def sleep(ms): return u8(3) + u8(ms)
    def read(c): return u8(4) + u8(c)
    def shut(c): return u8(5) + u8(c)
    def close(c, reset=False): return u8(6) + u8(c) + u8(reset)
    half = b'PUT /machine-config HTTP/1.1\r\nContent-Le'
    # Every slot taken by a half-sent request, one more client waiting: eviction.
    b = u8(0) + b''.join(connect() + send(i, half) for i in range(5)) + sleep(5) + read(4)
    write('api_http_slow', 'half_sent_at_the_limit', b)
    # Idle connections fill the limit; time passes: idle time-outs.
    b = u8(0) + connect() * 6 + sleep(31) + sleep(31) + sleep(10) + read(0) + read(5)
    write('api_http_slow', 'idle_at_the_limit', b)
    # A request in pieces, slower than the time-out: a 408.
    b = u8(0) + connect() + template(0, 1, 40) + sleep(31) + sleep(20) + read(0)
    write('api_http_slow', 'too_slow', b)
    # Pipelined requests whose answers are never read; a half-close; a reset.
    b = u8(0) + connect() + connect() + b''.join(template(0, i % 8) for i in range(40))
    b += template(1, 2) + shut(1) + sleep(10) + read(1) + close(0, True)
    write('api_http_slow', 'pipelined_unread', b)
    # Chunked with 100-continue, HTTP/1.0 keep-alive, an oversized Content-Length, HEAD.
    b = u8(1) + connect() + template(0, 2, 90) + sleep(2) + read(0) + template(0, 2) + read(0)
    b += connect() + template(1, 3) + template(1, 7) + template(1, 6) + sleep(2) + read(1)
    write('api_http_slow', 'mixed', b)


# ---- fuzz_mmds.c ----

def mmds_op(kind, client=0):
    """An operation: the client it names (u8), then its kind (u8)."""
    return u8(client) + u8(kind)


def mmds_data(client, text, wnd=64240):
    return mmds_op(2, client) + fz_bytes(text, 3000) + u16(wnd)


def seeds_mmds():
    """A V2 session on one connection (token, reads with and without it, close), the same
    in V1 with imds_compat, an ARP request, requests to the responder alone, host JSON."""
    token = b"PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n"
    get = b"GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: application/json\r\n\r\n"
    for name, hdr in (("v2", 1), ("v1-imds", 2)):
        b = u8(hdr) + mmds_op(1, 0) + u32(5000) + mmds_op(5)
        b += mmds_op(3, 0) + u8(0x10) + u16(64240)  # the handshake's ACK
        b += mmds_data(0, token) + mmds_op(5) + mmds_data(0, get) + mmds_op(5)
        b += mmds_op(4) + u16(2000) + mmds_op(5)  # a time-out: retransmission
        b += mmds_op(3, 0) + u8(0x11) + u16(64240) + mmds_op(5)  # FIN
        write('mmds', 'session-' + name, b)
    arp = (b"\xff" * 6 + bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]) + b"\x08\x06" +
           bytes([0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 169, 254, 0, 2]) +
           b"\0" * 6 + bytes([169, 254, 169, 254]))
    write('mmds', 'arp', u8(0) + mmds_op(0) + fz_bytes(arp, 4200) + mmds_op(5))
    b = u8(1)
    for req in (token, get, b"PATCH / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nX\r\n\r\n"):
        b += mmds_op(6) + fz_bytes(req, 3000)
    write('mmds', 'responder', b)
    b = u8(0)
    for doc, patch in ((b'{"a": {"b": [1, 2.5e3, "\\u00e9"]}, "a": null}', 0), (b'{"c": null}', 1),
                       (b'[1, {"x": "y"}]', 0), (b'{"x": ', 1)):
        b += mmds_op(7) + fz_bytes(doc, 1024) + u8(patch)
    write('mmds', 'host-json', b)


# ---- fuzz_snapshot.c: state files of real snapshots (needs /dev/kvm) ----

class Api:
    """PUT/PATCH requests on vmm's API socket."""

    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body):
        import http.client
        import json
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.sock.connect(self.sock)

        c = Conn('localhost', timeout=30)
        c.request(method, path, json.dumps(body), {'Content-Type': 'application/json'})
        r = c.getresponse()
        text = r.read()
        c.close()
        if r.status != 204:
            raise RuntimeError(f'{method} {path}: {r.status} {text}')


def seeds_snapshot(build_dir):
    """Mode 0 (the payload, the harness writes the header): an idle probe's Full snapshot;
    mode 2 (with overrides): a Diff of a machine with every device but a network interface;
    mode 1: a whole file, header included."""
    import time
    vmm = os.path.join(build_dir, 'vmm')
    kernel = os.path.join(build_dir, 'tests', 'guest', 'probe.elf')
    if not os.access('/dev/kvm', os.R_OK | os.W_OK) or not os.path.exists(kernel):
        print('snapshot seeds skipped: no /dev/kvm or no probe kernel in', build_dir)
        return
    with tempfile.TemporaryDirectory() as d:
        def machine(name, devices, snapshots):
            sock = os.path.join(d, name + '.sock')
            p = subprocess.Popen([vmm, '--api-sock', sock, '--no-seccomp'],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(500):
                    if os.path.exists(sock):
                        break
                    time.sleep(0.01)
                api = Api(sock)
                api.call('PUT', '/boot-source', {'kernel_image_path': kernel,
                                                 'boot_args': 'console=ttyS0 probe=idle'})
                for method, path, body in devices:
                    api.call(method, path, body)
                api.call('PUT', '/actions', {'action_type': 'InstanceStart'})
                time.sleep(1)
                api.call('PATCH', '/vm', {'state': 'Paused'})
                for kind in snapshots:
                    api.call('PUT', '/snapshot/create', {
                        'snapshot_path': os.path.join(d, name + kind + '.state'),
                        'mem_file_path': os.path.join(d, name + kind + '.mem'),
                        'snapshot_type': kind})
            finally:
                p.kill()
                p.wait()
            return [open(os.path.join(d, name + k + '.state'), 'rb').read() for k in snapshots]

        disk = os.path.join(d, 'disk')
        with open(disk, 'wb') as f:
            f.write(bytes(1 << 20))
        idle, = machine('idle', [('PUT', '/machine-config', {'vcpu_count': 1,
                                                              'mem_size_mib': 32})], ['Full'])
        _, diff = machine('dev', [
            ('PUT', '/machine-config', {'vcpu_count': 2, 'mem_size_mib': 64,
                                        'track_dirty_pages': True}),
            ('PUT', '/drives/rootfs', {'drive_id': 'rootfs', 'path_on_host': disk,
                                       'is_root_device': True, 'is_read_only': True}),
            ('PUT', '/drives/data', {'drive_id': 'data', 'path_on_host': disk,
                                     'is_root_device': False, 'is_read_only': False}),
            ('PUT', '/vsock', {'guest_cid': 3, 'uds_path': os.path.join(d, 'v.sock')}),
            ('PUT', '/entropy', {}),
            ('PUT', '/balloon', {'amount_mib': 4, 'deflate_on_oom': True,
                                 'stats_polling_interval_s': 1})], ['Full', 'Diff'])
    write('snapshot', 'idle', u8(0) + idle[40:])
    write('snapshot', 'devices_diff', u8(2) + diff[40:])
    write('snapshot', 'whole_file', u8(1) + idle)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', 'build')
    seeds_api_http_slow()
    seeds_blk()
    seeds_rng()
    seeds_pmem()
    seeds_mem()
    seeds_balloon()
    seeds_net()
    seeds_mmds()
    seeds_vsock()
    seeds_virtq()
    seeds_loader(build)
    seeds_cc()
    seeds_snapshot(build)


if __name__ == '__main__':
    main()
