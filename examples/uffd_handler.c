/*
 * uffd_handler: a page-fault handler for the Uffd memory backend of PUT /snapshot/load
 * (docs/snapshots.md, "Fan-out with the Uffd backend"). It speaks Firecracker's protocol,
 * so it serves Firecracker too; a platform's own handler can start from it. Standalone on
 * purpose: it needs nothing of the project but this file.
 *
 *     uffd_handler [--snapshot-id ID] [--raw] SOCKET MEMORY_FILE
 *
 * It checks MEMORY_FILE (below), binds SOCKET (it must not exist yet: nothing is removed
 * that this program did not create) and serves every VMM that connects, any number at once:
 * N clones restored from one snapshot share one handler and one copy of the file's pages in
 * the page cache. SIGTERM or SIGINT ends it and removes SOCKET. What it prints: one line
 * when it is ready ("uffd_handler: serving ..."), one per VMM that connects and one when it
 * goes (with the pages it filled).
 *
 * THE PROTOCOL (Firecracker's). A VMM connects to SOCKET and sends one message: a JSON list
 * of its guest memory regions,
 *   [{"base_host_virt_addr":N,"size":N,"offset":N,"page_size":N,"page_size_kib":N}, ...]
 * (offset: where the region is in the memory file; page_size in bytes, page_size_kib the
 * same number, deprecated; fields not known here are ignored), with its userfaultfd as
 * SCM_RIGHTS ancillary data. Nothing else is ever sent; the VMM keeps the connection open
 * and its end closing means it is gone. The handler keeps its end open as long as it
 * serves that VMM: the VMM watches the handler's process (and, where it cannot see the
 * process, this connection) and ends when the handler is gone, since nobody else can fill
 * its memory then.
 *
 * SERVING. Each page fault is read from the userfaultfd and answered with the page it
 * asks for: UFFDIO_ZEROPAGE when the memory file has a hole there (a page that was zero
 * when the snapshot was taken: the guest gets the shared zero page, which costs no memory)
 * or the page was removed (below), otherwise UFFDIO_COPY from the file (mapped read-only:
 * its pages are read once into the page cache, whoever asks). 2 MiB pages (a snapshot of a
 * huge-page guest) are copied whole; the kernel has no zero page for them.
 *
 * BALLOON. When the VMM gives pages back (madvise MADV_DONTNEED: the balloon inflated), the
 * userfaultfd reports UFFD_EVENT_REMOVE for the range; the guest expects zeros there when it
 * touches those pages again, not the snapshot's bytes, so later faults in a removed range
 * get zero pages. While a remove event waits to be read, every UFFDIO_COPY fails with
 * EAGAIN: such faults are kept and answered once all pending events are read.
 *
 * MEMORY FILE IDENTITY. This VMM's memory files end with a 4 KiB trailer that names the
 * snapshot (vmm/snapshot.h: magic "VMMMEM", version 1 or 2, kind Full or Diff, the guest
 * RAM bytes, a random id; version 2 also the virtio-mem region's size, which must be 0 here). The
 * VMM sends no snapshot identity over the protocol, so the handler checks what it can: the file
 * must be a complete (Full, or a Diff merged over its base) memory file, every VMM's regions must
 * add up to exactly its RAM size, and with
 * --snapshot-id ID (the `memory file:` id `vmm --describe-snapshot STATE` prints) it must be that
 * snapshot's. --raw serves a file without the trailer (a raw RAM image, which is what
 * Firecracker's own handlers expect: the RAM size is then the file's size).
 *
 * A VMM this handler cannot serve (its regions do not fit the file, a malformed message,
 * no userfaultfd) is killed (SIGKILL, the process SO_PEERCRED names), as Firecracker's
 * example handlers do: it would otherwise wait forever for its first page.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define TRAILER     4096u
#define MAX_REGIONS 8
#define MAX_VMMS    64
#define MSG_MAX     4096
#define SMALL_PAGE  4096ull
#define HUGE_PAGE   (2ull << 20)
#define MAX_PENDING 1024 /* faults kept while a remove event is pending */

struct region {
        uint64_t base, size, offset, page_size;
};

struct vmm {
        int sock, uffd;
        pid_t pid;
        char msg[MSG_MAX];
        size_t msg_len;
        unsigned nr_regions;
        struct region regions[MAX_REGIONS];
        uint64_t page;
        uint8_t *removed; /* a bit per 4 KiB page of the file: zeros from now on */
        uint64_t copied, zeroed, removes;
};

static struct {
        const char *socket_path, *file_path;
        int file;
        const uint8_t *map; /* the RAM part of the file, read-only */
        uint64_t ram;       /* bytes of guest RAM the file holds */
        uint8_t *data;      /* a bit per 4 KiB page: the file has data there (not a hole) */
        uint8_t *zeros;     /* HUGE_PAGE bytes of zeros: the source of a removed huge page */
        struct vmm *vmms[MAX_VMMS];
} h;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fputs("uffd_handler: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(1);
}

static uint64_t le64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 7; i >= 0; i--)
                v = (v << 8) | p[i];
        return v;
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool bit(const uint8_t *map, uint64_t page)
{
        return map[page / 8] & (1u << (page % 8));
}

static void set_bits(uint8_t *map, uint64_t first, uint64_t end)
{
        for (uint64_t p = first; p < end; p++)
                map[p / 8] |= (uint8_t)(1u << (p % 8));
}

/* ---- the memory file ---- */

static void check_trailer(off_t size, const char *want_id)
{
        uint8_t t[48];
        uint64_t id;
        char hex[17];

        if (size < (off_t)TRAILER || pread(h.file, t, sizeof(t), size - TRAILER) != sizeof(t) ||
            memcmp(t, "VMMMEM\0\0", 8) != 0)
                die("%s is not a snapshot memory file (it has no trailer; --raw serves a raw RAM "
                    "image)",
                    h.file_path);
        /* Version 2 adds the virtio-mem region's size (t + 40), its blocks after RAM. */
        if (le32(t + 8) != 1 && le32(t + 8) != 2)
                die("%s: memory file trailer version %u, this handler reads versions 1 and 2",
                    h.file_path, le32(t + 8));
        if (le32(t + 8) == 2 && le64(t + 40) != 0)
                die("%s holds a virtio-mem region after its RAM (a snapshot with memory "
                    "hotplug): this handler serves guest RAM only",
                    h.file_path);
        if (le32(t + 12) != 0)
                die("%s is a Diff snapshot's memory file that was not merged: merge it over the "
                    "memory file it follows (vmm --base-file BASE --diff-file DIFF) and serve "
                    "BASE",
                    h.file_path);
        h.ram = le64(t + 16);
        if (h.ram != (uint64_t)size - TRAILER)
                die("%s: its trailer says %" PRIu64 " bytes of RAM, the file has %lld: truncated?",
                    h.file_path, h.ram, (long long)size - TRAILER);
        id = le64(t + 24);
        snprintf(hex, sizeof(hex), "%016" PRIx64, id);
        if (want_id && strcmp(want_id, hex) != 0)
                die("%s belongs to another snapshot (its memory id is %s, not %s)", h.file_path,
                    hex, want_id);
}

/* Which pages hold data: the file's holes were zero pages when the snapshot was taken. */
static void map_data(void)
{
        uint64_t pages = h.ram / SMALL_PAGE;
        off_t off = 0, end;

        h.data = calloc(pages / 8 + 1, 1);
        if (!h.data)
                die("out of memory");
        while ((uint64_t)off < h.ram) {
                off = lseek(h.file, off, SEEK_DATA);
                if (off < 0)
                        break; /* ENXIO: no data after off */
                end = lseek(h.file, off, SEEK_HOLE);
                if (end < 0 || (uint64_t)end > h.ram)
                        end = (off_t)h.ram;
                if ((uint64_t)off >= h.ram)
                        break;
                set_bits(h.data, (uint64_t)off / SMALL_PAGE,
                         ((uint64_t)end + SMALL_PAGE - 1) / SMALL_PAGE);
                off = end;
        }
}

static void open_file(const char *want_id, bool raw)
{
        struct stat st;

        h.file = open(h.file_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (h.file < 0)
                die("%s: %s", h.file_path, strerror(errno));
        if (fstat(h.file, &st) || !S_ISREG(st.st_mode))
                die("%s is not a regular file", h.file_path);
        if (raw)
                h.ram = (uint64_t)st.st_size;
        else
                check_trailer(st.st_size, want_id);
        if (h.ram == 0 || h.ram % SMALL_PAGE)
                die("%s: %" PRIu64 " bytes of RAM is not a whole number of pages", h.file_path,
                    h.ram);
        h.map = mmap(NULL, h.ram, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, h.file, 0);
        if (h.map == MAP_FAILED)
                die("cannot map %s: %s", h.file_path, strerror(errno));
        map_data();
}

/* ---- a VMM's message ---- */

static const char *skip_ws(const char *p)
{
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
                p++;
        return p;
}

/* One region object; NULL when it is malformed. */
static const char *parse_region(const char *p, struct region *r)
{
        unsigned seen = 0;

        p = skip_ws(p);
        if (*p++ != '{')
                return NULL;
        for (;;) {
                char key[32];
                size_t n = 0;
                char *end;
                uint64_t v;

                p = skip_ws(p);
                if (*p++ != '"')
                        return NULL;
                while (*p && *p != '"' && n + 1 < sizeof(key))
                        key[n++] = *p++;
                key[n] = '\0';
                if (*p++ != '"')
                        return NULL;
                p = skip_ws(p);
                if (*p++ != ':')
                        return NULL;
                p = skip_ws(p);
                if (*p < '0' || *p > '9')
                        return NULL;
                errno = 0;
                v = strtoull(p, &end, 10);
                if (errno)
                        return NULL;
                p = end;
                if (!strcmp(key, "base_host_virt_addr"))
                        r->base = v, seen |= 1;
                else if (!strcmp(key, "size"))
                        r->size = v, seen |= 2;
                else if (!strcmp(key, "offset"))
                        r->offset = v, seen |= 4;
                else if (!strcmp(key, "page_size"))
                        r->page_size = v, seen |= 8;
                /* page_size_kib (the same number) and fields of later versions: ignored */
                p = skip_ws(p);
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p++ != '}')
                        return NULL;
                return seen == 15 ? p : NULL;
        }
}

/* Parses v->msg into v->regions; 1: incomplete (more bytes to come), 0: done, -1: bad. */
static int parse_message(struct vmm *v, const char **why)
{
        const char *p = skip_ws(v->msg);
        uint64_t total = 0;

        if (!memchr(v->msg, ']', v->msg_len))
                return v->msg_len < MSG_MAX - 1 ? 1 : (*why = "message too long", -1);
        if (*p++ != '[')
                return *why = "not a JSON list", -1;
        v->nr_regions = 0;
        for (;;) {
                struct region *r;

                if (v->nr_regions == MAX_REGIONS)
                        return *why = "too many regions", -1;
                r = &v->regions[v->nr_regions];
                p = parse_region(p, r);
                if (!p)
                        return *why = "a malformed region", -1;
                v->nr_regions++;
                p = skip_ws(p);
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p != ']')
                        return *why = "malformed JSON", -1;
                break;
        }
        v->page = v->regions[0].page_size;
        if (v->page != SMALL_PAGE && v->page != HUGE_PAGE)
                return *why = "a page size other than 4 KiB or 2 MiB", -1;
        for (unsigned i = 0; i < v->nr_regions; i++) {
                const struct region *r = &v->regions[i];

                if (r->page_size != v->page || !r->size || r->size % v->page || r->base % v->page ||
                    r->offset % v->page || r->offset > h.ram || r->size > h.ram - r->offset)
                        return *why = "a region that is not in the memory file", -1;
                total += r->size;
        }
        if (total != h.ram)
                return *why = "guest memory of another size than the memory file's RAM", -1;
        return 0;
}

/* ---- serving ---- */

static void drop(struct vmm *v, unsigned slot)
{
        fprintf(stderr,
                "uffd_handler: VMM pid %d gone: %" PRIu64 " pages copied, %" PRIu64
                " zero pages, %" PRIu64 " removes\n",
                (int)v->pid, v->copied, v->zeroed, v->removes);
        if (v->uffd >= 0)
                close(v->uffd);
        close(v->sock);
        free(v->removed);
        free(v);
        h.vmms[slot] = NULL;
}

static void refuse(struct vmm *v, unsigned slot, const char *why)
{
        fprintf(stderr, "uffd_handler: cannot serve the VMM (pid %d): %s; killing it\n",
                (int)v->pid, why);
        if (v->pid > 0)
                kill(v->pid, SIGKILL);
        drop(v, slot);
}

static const struct region *region_of(const struct vmm *v, uint64_t addr)
{
        for (unsigned i = 0; i < v->nr_regions; i++)
                if (addr >= v->regions[i].base && addr - v->regions[i].base < v->regions[i].size)
                        return &v->regions[i];
        return NULL;
}

/* Answers one fault: 0, -EAGAIN (a remove event is pending: try again later), or another
 * negative errno (the VMM cannot be served). */
static int serve(struct vmm *v, uint64_t addr)
{
        uint64_t page = addr & ~(v->page - 1);
        const struct region *r = region_of(v, page);
        uint64_t off, first, n;
        bool zero;
        int rc;

        if (!r)
                return -EFAULT;
        off = r->offset + (page - r->base);
        first = off / SMALL_PAGE;
        n = v->page / SMALL_PAGE;
        zero = true;
        for (uint64_t i = 0; i < n; i++)
                if (bit(h.data, first + i) && !bit(v->removed, first + i))
                        zero = false;
        if (zero && v->page == SMALL_PAGE) {
                struct uffdio_zeropage z = {.range = {.start = page, .len = v->page}};

                rc = ioctl(v->uffd, UFFDIO_ZEROPAGE, &z);
                if (!rc)
                        v->zeroed++;
        } else {
                /* A huge page with removed parts is not split: it was removed whole (the
                 * balloon gives back whole host pages) or not at all. */
                const uint8_t *src = zero || bit(v->removed, first) ? h.zeros : h.map + off;
                struct uffdio_copy c = {.dst = page, .src = (uintptr_t)src, .len = v->page};

                rc = ioctl(v->uffd, UFFDIO_COPY, &c);
                if (!rc)
                        v->copied++;
        }
        if (rc && errno == EEXIST)
                return 0; /* another fault of the same page was answered first */
        return rc ? -errno : 0;
}

static void mark_removed(struct vmm *v, uint64_t start, uint64_t end)
{
        for (unsigned i = 0; i < v->nr_regions; i++) {
                const struct region *r = &v->regions[i];
                uint64_t lo = start > r->base ? start : r->base;
                uint64_t hi = end < r->base + r->size ? end : r->base + r->size;

                if (lo < hi)
                        set_bits(v->removed, (r->offset + lo - r->base) / SMALL_PAGE,
                                 (r->offset + hi - r->base + SMALL_PAGE - 1) / SMALL_PAGE);
        }
        v->removes++;
}

/* Reads every pending event and answers the faults; faults that meet a pending remove are
 * answered after it was read. Returns 0, or a negative errno. */
static int serve_events(struct vmm *v)
{
        static uint64_t pending[MAX_PENDING];
        unsigned nr_pending = 0;

        for (;;) {
                struct uffd_msg msgs[32];
                ssize_t n = read(v->uffd, msgs, sizeof(msgs));
                unsigned kept = 0;

                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(msgs[0]); i++) {
                        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
                                if (nr_pending == MAX_PENDING)
                                        return -ENOBUFS;
                                pending[nr_pending++] = msgs[i].arg.pagefault.address;
                        } else if (msgs[i].event == UFFD_EVENT_REMOVE) {
                                mark_removed(v, msgs[i].arg.remove.start, msgs[i].arg.remove.end);
                        }
                }
                for (unsigned i = 0; i < nr_pending; i++) {
                        int r = serve(v, pending[i]);

                        if (r == -EAGAIN)
                                pending[kept++] = pending[i];
                        else if (r)
                                return r;
                }
                nr_pending = kept;
                if (n <= 0 && !nr_pending)
                        return 0;
        }
}

/* The first bytes from a VMM: the message, with the userfaultfd. */
static void receive(struct vmm *v, unsigned slot)
{
        char cbuf[CMSG_SPACE(sizeof(int) * 4)];
        struct iovec iov = {.iov_base = v->msg + v->msg_len, .iov_len = MSG_MAX - 1 - v->msg_len};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        const char *why = NULL;
        ssize_t n = recvmsg(v->sock, &mh, MSG_CMSG_CLOEXEC);
        int r;

        if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                drop(v, slot);
                return;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (v->uffd < 0)
                                v->uffd = fd;
                        else
                                close(fd);
                }
        }
        v->msg_len += (size_t)n;
        v->msg[v->msg_len] = '\0';
        r = parse_message(v, &why);
        if (r > 0)
                return;
        if (!r && v->uffd < 0)
                why = "no userfaultfd came with the message", r = -1;
        if (!r) {
                v->removed = calloc(h.ram / SMALL_PAGE / 8 + 1, 1);
                if (!v->removed)
                        why = "out of memory", r = -1;
        }
        if (r) {
                refuse(v, slot, why);
                return;
        }
        fcntl(v->uffd, F_SETFL, fcntl(v->uffd, F_GETFL) | O_NONBLOCK);
        fprintf(stderr, "uffd_handler: serving VMM pid %d: %u region(s), %" PRIu64 " KiB pages\n",
                (int)v->pid, v->nr_regions, v->page >> 10);
}

static void accept_vmm(int listener)
{
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);
        struct vmm *v;
        int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        unsigned slot;

        if (s < 0)
                return;
        for (slot = 0; slot < MAX_VMMS && h.vmms[slot]; slot++)
                ;
        v = slot < MAX_VMMS ? calloc(1, sizeof(*v)) : NULL;
        if (!v) {
                fprintf(stderr, "uffd_handler: too many VMMs; a connection refused\n");
                close(s);
                return;
        }
        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        v->sock = s;
        v->uffd = -1;
        v->pid = cred.pid;
        h.vmms[slot] = v;
}

static void usage(void)
{
        fprintf(stderr, "usage: uffd_handler [--snapshot-id ID] [--raw] SOCKET MEMORY_FILE\n");
        exit(2);
}

int main(int argc, char **argv)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const char *want_id = NULL;
        bool raw = false;
        sigset_t sigs;
        int listener, sigfd, i;

        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                if (!strcmp(argv[i], "--snapshot-id") && i + 1 < argc)
                        want_id = argv[++i];
                else if (!strcmp(argv[i], "--raw"))
                        raw = true;
                else
                        usage();
        }
        if (argc - i != 2)
                usage();
        h.socket_path = argv[i];
        h.file_path = argv[i + 1];
        open_file(want_id, raw);
        h.zeros = mmap(NULL, HUGE_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (h.zeros == MAP_FAILED)
                die("out of memory");

        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigprocmask(SIG_BLOCK, &sigs, NULL);
        sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
        if (strlen(h.socket_path) >= sizeof(sa.sun_path))
                die("%s: too long for a Unix socket path", h.socket_path);
        strcpy(sa.sun_path, h.socket_path);
        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof(sa)) ||
            listen(listener, 64))
                die("%s: %s", h.socket_path, strerror(errno));
        fprintf(stderr, "uffd_handler: serving %" PRIu64 " MiB of %s on %s\n", h.ram >> 20,
                h.file_path, h.socket_path);

        for (;;) {
                struct pollfd fds[2 + 2 * MAX_VMMS];
                unsigned nfds = 0, slot_of[2 + 2 * MAX_VMMS];

                fds[nfds++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
                fds[nfds++] = (struct pollfd){.fd = listener, .events = POLLIN};
                for (unsigned s = 0; s < MAX_VMMS; s++) {
                        if (!h.vmms[s])
                                continue;
                        slot_of[nfds] = s;
                        fds[nfds++] = (struct pollfd){.fd = h.vmms[s]->sock, .events = POLLIN};
                        if (h.vmms[s]->uffd >= 0 && h.vmms[s]->removed) {
                                slot_of[nfds] = s;
                                fds[nfds++] =
                                    (struct pollfd){.fd = h.vmms[s]->uffd, .events = POLLIN};
                        }
                }
                if (poll(fds, nfds, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        die("poll: %s", strerror(errno));
                }
                if (fds[0].revents)
                        break;
                if (fds[1].revents)
                        accept_vmm(listener);
                for (unsigned k = 2; k < nfds; k++) {
                        struct vmm *v = h.vmms[slot_of[k]];
                        int r;

                        if (!v || !fds[k].revents)
                                continue;
                        if (fds[k].fd == v->uffd) {
                                r = serve_events(v);
                                if (r == -ESRCH || r == -ENOENT)
                                        continue; /* its memory is going: it exits */
                                if (r) {
                                        char why[128];

                                        snprintf(why, sizeof(why), "a page fault: %s",
                                                 strerror(-r));
                                        refuse(v, slot_of[k], why);
                                }
                        } else if (!v->removed) {
                                receive(v, slot_of[k]);
                        } else {
                                char junk[64];
                                ssize_t n = read(v->sock, junk, sizeof(junk));

                                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                        drop(v, slot_of[k]);
                        }
                }
        }
        unlink(h.socket_path);
        fprintf(stderr, "uffd_handler: stopped\n");
        return 0;
}
