/*
 * virtio-vsock (devices/virtio/vsock*.c) through the hostile driver of virtio_harness.h, with real
 * host peers on its Unix sockets: clients connecting to uds_path ("CONNECT <port>\n" or any line),
 * listeners at "<uds_path>_<port>" for the guest's connections, peers that write, read, half-close,
 * close or reset mid-stream.
 *
 * Creation bytes: the guest CID (3 + u8). Device operations: connect a client (with a
 * CONNECT line for a port, or raw bytes), write from / read into / shut down / close a peer,
 * accept the guest's connections on the listeners (ports 1024 and 5000).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/vsock.h"
#include "virtio_harness.h"

#define MAX_PEERS 8

static char dir[64], uds[128];
static int listeners[2] = {-1, -1};
static const unsigned listen_ports[2] = {1024, 5000};
static int peers[MAX_PEERS];
static struct virtio_vsock *vs;

static int unix_socket(const char *path, bool listen_)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0)
                return -1;
        if (listen_ ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64)
                    : connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
                close(fd);
                return -1;
        }
        return fd;
}

__attribute__((destructor)) static void cleanup(void)
{
        char p[160];

        for (int i = 0; i < 2; i++) {
                snprintf(p, sizeof(p), "%s_%u", uds, listen_ports[i]);
                unlink(p);
        }
        if (dir[0])
                rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *tmp = getenv("TMPDIR");
        char p[160];

        (void)argc;
        (void)argv;
        fz_quiet_log();
        snprintf(dir, sizeof(dir), "%s/vmm-fuzz-vsock-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
                perror("fuzz_virtio_vsock: mkdtemp");
                exit(1);
        }
        snprintf(uds, sizeof(uds), "%s/v.sock", dir);
        for (int i = 0; i < 2; i++) {
                snprintf(p, sizeof(p), "%s_%u", uds, listen_ports[i]);
                listeners[i] = unix_socket(p, true);
                if (listeners[i] < 0) {
                        perror("fuzz_virtio_vsock: listen");
                        exit(1);
                }
        }
        for (int i = 0; i < MAX_PEERS; i++)
                peers[i] = -1;
        return 0;
}

static struct virtio_device *vsock_create(struct vh *h, struct fz *f)
{
        struct virtio_vsock_config c = {
            .name = "vsock0", .guest_cid = 3 + fz_u8(f), .uds_path = uds, .loop = h->loop};
        struct error err = {0};

        if (virtio_vsock_create(&c, &err, &vs)) {
                fprintf(stderr, "fuzz_virtio_vsock: %s\n", err.msg);
                abort();
        }
        return virtio_vsock_device(vs);
}

static int *free_peer(void)
{
        for (int i = 0; i < MAX_PEERS; i++)
                if (peers[i] < 0)
                        return &peers[i];
        return NULL;
}

static void peer_close(int *p, bool reset)
{
        if (*p < 0)
                return;
        if (reset) {
                struct linger l = {.l_onoff = 1, .l_linger = 0};
                setsockopt(*p, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        close(*p);
        *p = -1;
}

static void vsock_op(struct vh *h, struct fz *f)
{
        int *p = &peers[fz_below(f, MAX_PEERS)], *slot;
        char buf[8192];
        size_t len;
        const uint8_t *b;

        (void)h;
        switch (fz_u8(f) % 7) {
        case 0: /* a host client asks for a guest port */
                slot = free_peer();
                if (!slot || (*slot = unix_socket(uds, false)) < 0)
                        break;
                len = (size_t)snprintf(buf, sizeof(buf), "CONNECT %u\n",
                                       fz_bool(f) ? fz_u32(f) : 1234u + fz_u8(f) % 4);
                (void)!send(*slot, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                break;
        case 1: /* a host client with any first line */
                slot = free_peer();
                if (!slot || (*slot = unix_socket(uds, false)) < 0)
                        break;
                b = fz_bytes(f, 64, &len);
                (void)!send(*slot, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                break;
        case 2:
                b = fz_bytes(f, sizeof(buf), &len);
                if (*p >= 0)
                        (void)!send(*p, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                break;
        case 3:
                if (*p >= 0)
                        while (recv(*p, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                                ;
                break;
        case 4:
                if (*p >= 0)
                        shutdown(*p, fz_bool(f) ? SHUT_WR : SHUT_RD);
                break;
        case 5:
                peer_close(p, fz_bool(f));
                break;
        case 6: /* the guest's connections arrive */
                for (int i = 0; i < 2; i++) {
                        int fd;

                        while ((slot = free_peer()) &&
                               (fd = accept4(listeners[i], NULL, NULL,
                                             SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
                                *slot = fd;
                }
                break;
        }
}

static void vsock_destroy(struct vh *h)
{
        int fd;

        (void)h;
        virtio_vsock_destroy(vs);
        vs = NULL;
        for (int i = 0; i < MAX_PEERS; i++)
                peer_close(&peers[i], false);
        for (int i = 0; i < 2; i++)
                while ((fd = accept4(listeners[i], NULL, NULL, SOCK_CLOEXEC)) >= 0)
                        close(fd);
}

static const struct vh_device dev = {
    .name = "vsock0",
    .nr_queues = 3,
    .create = vsock_create,
    .destroy = vsock_destroy,
    .op = vsock_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
