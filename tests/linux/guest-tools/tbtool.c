/*
 * tbtool: what the real-Linux test bed (tests/linux) needs on both sides of a nested VM and
 * busybox lacks. One static program (no library to carry into the guest's initramfs):
 *
 *   tbtool send ENDPOINT [options]   connect (or accept) and send BYTES of the stream
 *   tbtool recv ENDPOINT [options]   connect (or accept) and check what arrives against it
 *   tbtool gen BYTES [--seed S]      write the stream to stdout (files, disks)
 *   tbtool check BYTES [--seed S]    read stdin and check it against the stream
 *   tbtool hog MIB                   allocate and touch MIB of memory, then wait for a signal
 *   tbtool cpuid LEAF [SUBLEAF]...   "cpuid LEAF.SUBLEAF eax=.. ebx=.. ecx=.. edx=.." per pair
 *                                    given (hex or decimal), and "xcr0=.." when OSXSAVE is set
 *   tbtool bootbench MARKER MIB CMD [ARG]...
 *                                    runs a VMM (bench/linux-boot): its output goes on to
 *                                    stdout; when MARKER first appears in it, the VMM's
 *                                    resident memory is sampled; at its exit, one line
 *                                    "tbtool: bootbench marker=S exit=S cpu=S guest=S own=S
 *                                    rss_kib=N beyond_kib=N rc=N": seconds from exec to
 *                                    MARKER and to the exit; the VMM's CPU time (user +
 *                                    system), the part of it the kernel accounted as guest
 *                                    time (KVM_RUN in guest mode) and the rest, the VMM's own;
 *                                    its RSS at MARKER and that RSS without the guest RAM
 *                                    mapping (the mapping of MIB MiB); on stderr
 *
 * ENDPOINT: tcp:HOST:PORT, tcp-listen:PORT, vsock:CID:PORT, vsock-listen:PORT, unix:PATH,
 * unix-listen:PATH, or fc:PATH:PORT (the host side of Firecracker's vsock: connect to the
 * device's Unix socket PATH, send "CONNECT PORT\n", expect "OK <n>\n").
 *
 * Options: --bytes N (default 1 MiB; K/M/G suffixes), --seed S (default 1), --count C
 * (C connections one after the other, each with the whole stream; default 1), --retry SECS
 * (keep trying to connect for that long; default 0), --reset-after N (after N bytes sent or
 * received, abort the connection: a TCP/vsock reset, where the other side has unread data or
 * SO_LINGER 0 applies), --chunk N (largest write, default 64 KiB).
 *
 * The stream is a function of the seed and the byte offset (xorshift64*, 8 bytes a step),
 * so a receiver names the first wrong byte exactly. Every command prints one summary line
 * per connection on stdout:
 *
 *   tbtool: send bytes=N fnv=HEX secs=S.SSS
 *   tbtool: recv bytes=N fnv=HEX secs=S.SSS ok=1            (ok=0 mismatch=OFFSET on error)
 *
 * and exits 0 only when every connection moved exactly BYTES intact (recv: and was closed by
 * its peer after them).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)

struct stream {
        uint64_t state, word;
        uint64_t off;
};

static void stream_init(struct stream *s, uint64_t seed)
{
        s->state = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
        if (!s->state)
                s->state = 1;
        s->word = 0;
        s->off = 0;
}

static uint8_t stream_byte(struct stream *s)
{
        if (s->off % 8 == 0) {
                s->state ^= s->state >> 12;
                s->state ^= s->state << 25;
                s->state ^= s->state >> 27;
                s->word = s->state * 0x2545f4914f6cdd1dull;
        }
        return (uint8_t)(s->word >> (8 * (s->off++ % 8)));
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 0x100000001b3ull;
        return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *arg)
{
        fprintf(stderr, "tbtool: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n");
        exit(2);
}

static uint64_t parse_size(const char *s)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || end == s)
                die("bad number '%s'", s);
        switch (*end) {
        case 'G':
                v <<= 10; /* fall through */
        case 'M':
                v <<= 10; /* fall through */
        case 'K':
                v <<= 10;
                end++;
                break;
        default:
                break;
        }
        if (*end)
                die("bad number '%s'", s);
        return v;
}

struct opts {
        uint64_t bytes, seed, count, reset_after, chunk;
        double retry;
};

/* ---- endpoints ---- */

enum kind { EP_TCP, EP_VSOCK, EP_UNIX, EP_FC };

struct endpoint {
        enum kind kind;
        int listen;
        char host[128];
        char path[108];
        unsigned long cid, port;
};

static void parse_endpoint(const char *spec, struct endpoint *ep)
{
        char buf[256];
        char *a, *b;

        memset(ep, 0, sizeof(*ep));
        if (strlen(spec) >= sizeof(buf))
                die("endpoint too long: %s", spec);
        strcpy(buf, spec);
        a = strchr(buf, ':');
        if (!a)
                die("bad endpoint '%s'", spec);
        *a++ = 0;
        if (!strcmp(buf, "tcp-listen") || !strcmp(buf, "vsock-listen")) {
                ep->kind = buf[0] == 't' ? EP_TCP : EP_VSOCK;
                ep->listen = 1;
                ep->port = (unsigned long)parse_size(a);
        } else if (!strcmp(buf, "tcp") || !strcmp(buf, "vsock")) {
                ep->kind = buf[0] == 't' ? EP_TCP : EP_VSOCK;
                b = strrchr(a, ':');
                if (!b)
                        die("bad endpoint '%s'", spec);
                *b++ = 0;
                ep->port = (unsigned long)parse_size(b);
                if (ep->kind == EP_TCP)
                        snprintf(ep->host, sizeof(ep->host), "%s", a);
                else
                        ep->cid = (unsigned long)parse_size(a);
        } else if (!strcmp(buf, "unix") || !strcmp(buf, "unix-listen")) {
                ep->kind = EP_UNIX;
                ep->listen = buf[4] == '-';
                if (strlen(a) >= sizeof(ep->path))
                        die("path too long: %s", a);
                strcpy(ep->path, a);
        } else if (!strcmp(buf, "fc")) {
                ep->kind = EP_FC;
                b = strrchr(a, ':');
                if (!b)
                        die("bad endpoint '%s'", spec);
                *b++ = 0;
                ep->port = (unsigned long)parse_size(b);
                if (strlen(a) >= sizeof(ep->path))
                        die("path too long: %s", a);
                strcpy(ep->path, a);
        } else {
                die("unknown endpoint kind in '%s'", spec);
        }
}

static socklen_t make_addr(const struct endpoint *ep, struct sockaddr_storage *ss, int *family)
{
        memset(ss, 0, sizeof(*ss));
        if (ep->kind == EP_TCP) {
                struct sockaddr_in *in = (struct sockaddr_in *)ss;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)ep->port);
                if (!ep->listen && inet_pton(AF_INET, ep->host, &in->sin_addr) != 1)
                        die("bad IPv4 address '%s'", ep->host);
                *family = AF_INET;
                return sizeof(*in);
        }
        if (ep->kind == EP_VSOCK) {
                struct sockaddr_vm *vm = (struct sockaddr_vm *)ss;
                vm->svm_family = AF_VSOCK;
                vm->svm_port = (unsigned)ep->port;
                vm->svm_cid = ep->listen ? VMADDR_CID_ANY : (unsigned)ep->cid;
                *family = AF_VSOCK;
                return sizeof(*vm);
        }
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, ep->path);
        *family = AF_UNIX;
        return sizeof(*un);
}

static int listener(const struct endpoint *ep)
{
        struct sockaddr_storage ss;
        int family, one = 1;
        socklen_t len = make_addr(ep, &ss, &family);
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                die("socket: %s", strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ep->kind == EP_UNIX)
                unlink(ep->path);
        if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 16))
                die("bind/listen: %s", strerror(errno));
        fprintf(stderr, "tbtool: listening\n");
        return fd;
}

/* Reads the "OK <port>\n" answer of Firecracker's vsock handshake, a byte at a time. */
static int fc_handshake(int fd, unsigned long port)
{
        char line[64];
        size_t n = 0;
        int len = snprintf(line, sizeof(line), "CONNECT %lu\n", port);

        if (write(fd, line, (size_t)len) != len)
                return -1;
        while (n < sizeof(line) - 1) {
                ssize_t r = read(fd, line + n, 1);
                if (r <= 0)
                        return -1;
                if (line[n++] == '\n')
                        break;
        }
        line[n] = 0;
        if (strncmp(line, "OK ", 3))
                return -1;
        return 0;
}

static int connect_once(const struct endpoint *ep)
{
        struct sockaddr_storage ss;
        int family;
        socklen_t len = make_addr(ep, &ss, &family);
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                die("socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&ss, len) ||
            (ep->kind == EP_FC && fc_handshake(fd, ep->port))) {
                close(fd);
                return -1;
        }
        return fd;
}

static int connect_retry(const struct endpoint *ep, double retry)
{
        double deadline = now() + retry;

        for (;;) {
                int fd = connect_once(ep);
                if (fd >= 0)
                        return fd;
                if (now() >= deadline) {
                        fprintf(stderr, "tbtool: cannot connect: %s\n", strerror(errno));
                        return -1;
                }
                usleep(100000);
        }
}

/* ---- transfers ---- */

/* Sends the stream on fd; a socket (is_sock) is half-closed after it and drained until the
 * peer closes. The summary goes to report (stderr when fd is stdout). */
static int do_send(int fd, const struct opts *o, int is_sock, FILE *report)
{
        static uint8_t buf[BUF_SIZE];
        struct stream s;
        uint64_t h = FNV_INIT, sent = 0;
        double t0 = now();

        stream_init(&s, o->seed);
        while (sent < o->bytes) {
                uint64_t n = o->bytes - sent;
                if (n > o->chunk)
                        n = o->chunk;
                if (o->reset_after && sent + n > o->reset_after)
                        n = o->reset_after - sent;
                for (uint64_t i = 0; i < n; i++)
                        buf[i] = stream_byte(&s);
                h = fnv(h, buf, n);
                for (uint64_t done = 0; done < n;) {
                        ssize_t w = write(fd, buf + done, n - done);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0) {
                                fprintf(stderr, "tbtool: write after %llu bytes: %s\n",
                                        (unsigned long long)(sent + done), strerror(errno));
                                return 1;
                        }
                        done += (uint64_t)w;
                }
                sent += n;
                if (o->reset_after && sent == o->reset_after) {
                        struct linger l = {.l_onoff = 1, .l_linger = 0};
                        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
                        fprintf(report, "tbtool: send bytes=%llu reset=1\n",
                                (unsigned long long)sent);
                        return 0;
                }
        }
        /* Our half is done; the peer closes after reading everything. */
        if (is_sock) {
                shutdown(fd, SHUT_WR);
                while (read(fd, buf, sizeof(buf)) > 0)
                        ;
        }
        fprintf(report, "tbtool: send bytes=%llu fnv=%016llx secs=%.3f\n", (unsigned long long)sent,
                (unsigned long long)h, now() - t0);
        return 0;
}

/* Reads fd to its end (or an error) and checks every byte. */
static int do_recv(int fd, const struct opts *o, const char *what)
{
        static uint8_t buf[BUF_SIZE];
        struct stream s;
        uint64_t h = FNV_INIT, got = 0, bad = UINT64_MAX;
        double t0 = now();
        int err = 0;

        stream_init(&s, o->seed);
        for (;;) {
                size_t want = sizeof(buf);
                if (o->reset_after && o->reset_after - got < want)
                        want = o->reset_after - got;
                if (o->reset_after && got == o->reset_after) {
                        struct linger l = {.l_onoff = 1, .l_linger = 0};
                        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
                        printf("tbtool: %s bytes=%llu reset=1\n", what, (unsigned long long)got);
                        return 0;
                }
                ssize_t r = read(fd, buf, want);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        err = errno;
                        break;
                }
                if (r == 0)
                        break;
                for (ssize_t i = 0; i < r; i++)
                        if (stream_byte(&s) != buf[i] && bad == UINT64_MAX)
                                bad = got + (uint64_t)i;
                h = fnv(h, buf, (size_t)r);
                got += (uint64_t)r;
        }
        int ok = !err && bad == UINT64_MAX && got == o->bytes;
        printf("tbtool: %s bytes=%llu fnv=%016llx secs=%.3f ok=%d", what, (unsigned long long)got,
               (unsigned long long)h, now() - t0, ok);
        if (bad != UINT64_MAX)
                printf(" mismatch=%llu", (unsigned long long)bad);
        if (err)
                printf(" error=%s", strerror(err));
        printf("\n");
        fflush(stdout);
        return ok ? 0 : 1;
}

static int transfer(int argc, char **argv, const struct opts *o, int sending)
{
        struct endpoint ep;
        int lfd = -1, fails = 0;

        if (argc < 1)
                die("%s needs an ENDPOINT", sending ? "send" : "recv");
        parse_endpoint(argv[0], &ep);
        if (ep.listen)
                lfd = listener(&ep);
        for (uint64_t i = 0; i < o->count; i++) {
                int fd = ep.listen ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC)
                                   : connect_retry(&ep, o->retry);
                if (fd < 0) {
                        fails++;
                        if (!ep.listen)
                                break;
                        continue;
                }
                if (ep.kind == EP_TCP) {
                        int one = 1;
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                }
                fails += sending ? do_send(fd, o, 1, stdout) : do_recv(fd, o, "recv");
                close(fd);
                fflush(stdout);
        }
        if (lfd >= 0)
                close(lfd);
        return fails ? 1 : 0;
}

static int hog(uint64_t mib)
{
        size_t len = (size_t)mib << 20;
        uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                die("mmap: %s", strerror(errno));
        for (size_t i = 0; i < len; i += 4096)
                p[i] = (uint8_t)(i >> 12 | 1);
        printf("tbtool: hog mib=%llu\n", (unsigned long long)mib);
        fflush(stdout);
        pause();
        return 0;
}

/* Total Rss of a process and the Rss of its mappings of exactly `size` bytes (guest RAM),
 * from /proc/PID/smaps, in KiB. */
static void rss_of(pid_t pid, uint64_t size, unsigned long long *total, unsigned long long *guest)
{
        char path[64], line[512];
        unsigned long long start, end, kib;
        int in_guest = 0;
        FILE *f;

        *total = *guest = 0;
        snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                if (sscanf(line, "%llx-%llx ", &start, &end) == 2 &&
                    strchr(line, '-') < strchr(line, ' '))
                        in_guest = end - start == size;
                else if (sscanf(line, "Rss: %llu kB", &kib) == 1) {
                        *total += kib;
                        if (in_guest)
                                *guest += kib;
                }
        }
        fclose(f);
}

/* The guest time (field 43 of /proc/PID/stat, in clock ticks) of a process, in seconds. */
static double guest_seconds(pid_t pid)
{
        char path[64], buf[2048], *p;
        unsigned long long v = 0;
        FILE *f;
        int field = 3;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return 0;
        if (!fgets(buf, sizeof(buf), f)) {
                fclose(f);
                return 0;
        }
        fclose(f);
        /* The command name may hold spaces: fields count from after its ')'. */
        p = strrchr(buf, ')');
        if (!p)
                return 0;
        for (p = strtok(p + 1, " "); p; p = strtok(NULL, " "), field++)
                if (field == 43) {
                        v = strtoull(p, NULL, 10);
                        break;
                }
        return (double)v / (double)sysconf(_SC_CLK_TCK);
}

static int bootbench(int argc, char **argv)
{
        const char *marker;
        uint64_t size;
        int pfd[2], status;
        pid_t pid;
        double t0, t_marker = -1;
        unsigned long long rss = 0, guest = 0;
        char buf[4096], window[4096 + 256] = "";
        size_t wlen = 0;
        struct rusage ru;

        if (argc < 3)
                die("bootbench needs MARKER MIB CMD... (%s)", "see the header");
        marker = argv[0];
        size = parse_size(argv[1]) << 20;
        if (pipe(pfd))
                die("pipe: %s", strerror(errno));
        t0 = now();
        pid = fork();
        if (pid < 0)
                die("fork: %s", strerror(errno));
        if (pid == 0) {
                dup2(pfd[1], 1);
                close(pfd[0]);
                close(pfd[1]);
                execvp(argv[2], argv + 2);
                _exit(127);
        }
        close(pfd[1]);
        for (;;) {
                ssize_t n = read(pfd[0], buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
                        break;
                if (t_marker >= 0)
                        continue;
                /* The marker may straddle two reads: keep the tail of the previous one. */
                if (wlen > 255) {
                        memmove(window, window + wlen - 255, 255);
                        wlen = 255;
                }
                memcpy(window + wlen, buf, (size_t)n);
                wlen += (size_t)n;
                window[wlen] = 0;
                if (memmem(window, wlen, marker, strlen(marker))) {
                        t_marker = now() - t0;
                        rss_of(pid, size, &rss, &guest);
                }
        }
        close(pfd[0]);
        /* Guest time is only in /proc/PID/stat, which stays readable while the process is a
         * zombie: wait for the exit without reaping first. */
        siginfo_t info;
        double gtime = 0;
        while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
                ;
        gtime = guest_seconds(pid);
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
                ;
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        fflush(stdout);
        fprintf(stderr,
                "tbtool: bootbench marker=%.3f exit=%.3f cpu=%.3f guest=%.3f own=%.3f "
                "rss_kib=%llu beyond_kib=%llu rc=%d\n",
                t_marker, now() - t0, cpu, gtime, cpu - gtime, rss, rss - guest,
                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return 0;
}

static int cpuid_dump(int argc, char **argv)
{
        unsigned a, b, c, d;

        for (int i = 0; i < argc; i += 2) {
                unsigned leaf = (unsigned)parse_size(argv[i]);
                unsigned sub = i + 1 < argc ? (unsigned)parse_size(argv[i + 1]) : 0;
                __asm__ volatile("cpuid"
                                 : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
                                 : "a"(leaf), "c"(sub));
                printf("cpuid %#x.%u eax=%#010x ebx=%#010x ecx=%#010x edx=%#010x\n", leaf, sub, a,
                       b, c, d);
        }
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        if (c & (1u << 27)) {
                __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
                printf("xcr0=%#llx\n", (unsigned long long)d << 32 | a);
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct opts o = {.bytes = 1 << 20, .seed = 1, .count = 1, .chunk = 64 << 10};
        char *pos[4];
        int npos = 0;
        const char *cmd;

        if (argc < 2)
                die("usage: tbtool send|recv|gen|check|hog ... (see %s)", __FILE__);
        cmd = argv[1];
        if (!strcmp(cmd, "cpuid"))
                return cpuid_dump(argc - 2, argv + 2);
        if (!strcmp(cmd, "bootbench"))
                return bootbench(argc - 2, argv + 2);
        for (int i = 2; i < argc; i++) {
                const char *a = argv[i];
                if (!strncmp(a, "--", 2) && i + 1 >= argc)
                        die("%s needs a value", a);
                if (!strcmp(a, "--bytes"))
                        o.bytes = parse_size(argv[++i]);
                else if (!strcmp(a, "--seed"))
                        o.seed = parse_size(argv[++i]);
                else if (!strcmp(a, "--count"))
                        o.count = parse_size(argv[++i]);
                else if (!strcmp(a, "--retry"))
                        o.retry = (double)parse_size(argv[++i]);
                else if (!strcmp(a, "--reset-after"))
                        o.reset_after = parse_size(argv[++i]);
                else if (!strcmp(a, "--chunk"))
                        o.chunk = parse_size(argv[++i]);
                else if (!strncmp(a, "--", 2))
                        die("unknown option %s", a);
                else if (npos < 4)
                        pos[npos++] = argv[i];
                else
                        die("too many arguments at %s", a);
        }
        if (o.chunk == 0 || o.chunk > BUF_SIZE)
                o.chunk = BUF_SIZE;
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (!strcmp(cmd, "send") || !strcmp(cmd, "recv"))
                return transfer(npos, pos, &o, cmd[0] == 's');
        if (!strcmp(cmd, "gen") || !strcmp(cmd, "check")) {
                if (npos < 1)
                        die("%s needs BYTES", cmd);
                o.bytes = parse_size(pos[0]);
                if (cmd[0] == 'c')
                        return do_recv(0, &o, "check");
                return do_send(1, &o, 0, stderr);
        }
        if (!strcmp(cmd, "hog") && npos == 1)
                return hog(parse_size(pos[0]));
        die("unknown command '%s'", cmd);
        return 2;
}
