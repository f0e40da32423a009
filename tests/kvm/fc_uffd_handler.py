"""A page-fault handler that does what Firecracker's example handlers do
(src/firecracker/examples/uffd/uffd_utils.rs and on_demand_handler.rs, Firecracker 1.17), in
Python, for tests/kvm/test_uffd.py: a platform written against Firecracker's protocol must
work with this VMM unchanged.

    fc_uffd_handler.py MODE SOCKET MEMORY_FILE [RECORD]

Like Firecracker's: binds SOCKET and accepts one connection; receives the message into a
1024-byte buffer with the userfaultfd (retrying up to 5 times when no descriptor came);
decodes the JSON list of GuestRegionUffdMapping (base_host_virt_addr, size, offset,
page_size; unknown fields ignored, as serde does); asserts that the regions add up to the
size of MEMORY_FILE (so it takes a raw RAM image) and that the page size is a power of two;
maps MEMORY_FILE (MAP_POPULATE); kills the VMM (SIGKILL, SO_PEERCRED's pid) when anything
fails (its panic hook); keeps the connection open while it serves.

MODE on_demand: each fault gets its page with UFFDIO_COPY from the file (EEXIST is fine,
EAGAIN defers the fault until the pending events were read); UFFD_EVENT_REMOVE unregisters
the range (later faults there are the kernel's zero pages).
MODE fault_all: the first fault copies every region whole (fault_all_handler.rs).
MODE silent: receives the message and never serves a fault (a handler that hangs).
MODE close_early: on_demand, but closes its end of the connection first.
RECORD: the raw message bytes are written there.
"""
import ctypes
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time

UFFDIO_COPY = 0xC028AA03
UFFDIO_UNREGISTER = 0x8010AA01
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_EVENT_REMOVE = 0x15
EEXIST, EAGAIN = 17, 11

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def main():
    mode, sock_path, mem_path = sys.argv[1:4]
    record = sys.argv[4] if len(sys.argv) > 4 else None
    mem = open(mem_path, "rb")
    size = os.fstat(mem.fileno()).st_size
    base = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_POPULATE,
                     mem.fileno(), 0)
    assert base not in (None, ctypes.c_void_p(-1).value), "mmap on backing file failed"

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    stream, _ = listener.accept()
    pid = struct.unpack("3i", stream.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    try:
        serve(mode, stream, base, size, record)
    except BaseException as e:  # the panic hook
        os.kill(pid, signal.SIGKILL)
        print(f"fc_uffd_handler: {e!r}; killed {pid}", file=sys.stderr, flush=True)
        raise


def receive(stream):
    for _ in range(5):
        msg, fds, _, _ = socket.recv_fds(stream, 1024, 1)
        if fds:
            return msg, fds[0]
        time.sleep(0.1)
    raise RuntimeError("Could not get UFFD and mappings after 5 retries")


def serve(mode, stream, base, size, record):
    body, uffd = receive(stream)
    if record:
        with open(record, "wb") as f:
            f.write(body)
    mappings = json.loads(body.decode("utf-8"))
    regions = [{k: m[k] for k in ("base_host_virt_addr", "size", "offset", "page_size")}
               for m in mappings]
    assert sum(r["size"] for r in regions) == size, (regions, size)
    page = regions[0]["page_size"]
    assert page & (page - 1) == 0
    print(f"fc_uffd_handler: {len(regions)} region(s), page {page}", file=sys.stderr, flush=True)
    if mode == "close_early":
        stream.close()
    if mode == "silent":
        while True:
            time.sleep(1)
    os.set_blocking(uffd, False)
    deferred = []
    served = [0]

    def copy(dst, src, length):
        arg = struct.pack("QQQQq", dst, src, length, 0, 0)
        buf = ctypes.create_string_buffer(arg, len(arg))
        if libc.ioctl(uffd, UFFDIO_COPY, buf) == 0:
            served[0] += 1
            return True
        err = ctypes.get_errno()
        if err == EEXIST:
            return True
        if err == EAGAIN:
            return False
        raise OSError(err, f"Uffd copy failed: {os.strerror(err)}")

    def serve_pf(addr, length):
        dst = addr & ~(page - 1)
        for r in regions:
            if r["base_host_virt_addr"] <= dst < r["base_host_virt_addr"] + r["size"]:
                return copy(dst, base + r["offset"] + dst - r["base_host_virt_addr"], length)
        raise RuntimeError(f"Could not find addr: {addr:#x} within guest region mappings.")

    faulted_all = False
    poller = select.poll()
    poller.register(uffd, select.POLLIN)
    if mode != "close_early":
        poller.register(stream, select.POLLIN)
    while True:
        for fd, ev in poller.poll():
            if fd != uffd:
                if ev & (select.POLLHUP | select.POLLERR) or not stream.recv(1, socket.MSG_PEEK):
                    print(f"fc_uffd_handler: the VMM is gone after {served[0]} copies",
                          file=sys.stderr, flush=True)
                    return
                continue
            while True:
                events = list(deferred)
                deferred.clear()
                while True:
                    try:
                        raw = os.read(uffd, 32)
                    except BlockingIOError:
                        break
                    events.append(struct.unpack("B7xQQQ", raw))
                for ev_type, a, b, _ in events:
                    if ev_type == UFFD_EVENT_PAGEFAULT:
                        if mode == "fault_all":
                            if not faulted_all:
                                for r in regions:
                                    copy(r["base_host_virt_addr"], base + r["offset"], r["size"])
                                faulted_all = True
                            continue
                        if not serve_pf(b, page):
                            deferred.append((ev_type, a, b, 0))
                    elif ev_type == UFFD_EVENT_REMOVE:
                        rng = ctypes.create_string_buffer(struct.pack("QQ", a, b - a), 16)
                        assert libc.ioctl(uffd, UFFDIO_UNREGISTER, rng) == 0
                    else:
                        raise RuntimeError("Unexpected event on userfaultfd")
                if not deferred:
                    break


if __name__ == "__main__":
    main()
