/*
 * The REST API from raw bytes on the socket: the real server (its API thread, api/server.c)
 * and the real controller on a VMM thread, as `vmm --api-sock` runs them (api_harness.h). Each
 * input gets a fresh server and controller (reproducible), one to three client connections
 * that send its bytes in chunks, then either read every answer until the server closes, or
 * vanish (close, possibly with a reset) mid-request.
 *
 * The answers are read but not checked here (fuzz_api_route checks them).
 *
 * Input: a flags byte, then chunks [connection u8][length u16][bytes]. Flags: bit 0-1 the
 * number of connections - 1 (at most 3), bits 2-4 per connection: vanish instead of
 * reading, bit 5: vanish with a reset (SO_LINGER 0), bit 6: a small payload limit (64).
 *
 * The target runs in the fuzz sandbox; InstanceStart gets as far as opening a KVM device
 * that does not exist.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api_harness.h"
#include "fuzz_common.h"

#define MAX_CONNS 3
/* After the client's end of stream, a server that answered everything closes at once; one
 * still waiting for the rest of a request keeps the connection open (as it should: the
 * client may still be reading). The client stops reading after this much silence. */
#define IDLE_MS     5
#define SOCK_NAME   "api.sock"
#define SMALL_LIMIT 64

static char sock_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *dir = fz_sandbox(argc, argv);

        fz_quiet_log();
        snprintf(sock_path, sizeof(sock_path), "%s/%s", dir, SOCK_NAME);
        return 0;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return; /* the server closed (an oversized body, say) */
                p += w;
                n -= (size_t)w;
        }
}

/* Reads the answers until the server closes the connection or goes quiet. */
static void read_answers(int fd)
{
        char buf[4096];

        shutdown(fd, SHUT_WR);
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int r = poll(&p, 1, IDLE_MS);
                ssize_t n;

                if (r == 0)
                        return;
                if (r < 0 && errno == EINTR)
                        continue;
                n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
        }
}

static void vanish(int fd, bool reset)
{
        if (reset) {
                struct linger l = {.l_onoff = 1, .l_linger = 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct api_server_limits lim = {0};
        struct api_harness h;
        int conns[MAX_CONNS];
        unsigned nconns;
        struct fz f;
        uint8_t flags;

        fz_init(&f, data, size);
        flags = fz_u8(&f);
        nconns = (flags & 3) % MAX_CONNS + 1;
        lim.max_payload = (flags & 0x40) ? SMALL_LIMIT : API_DEFAULT_MAX_PAYLOAD;
        api_harness_start(&h, sock_path, &lim);
        for (unsigned i = 0; i < nconns; i++)
                conns[i] = api_harness_connect(sock_path);
        while (!fz_empty(&f)) {
                unsigned c = fz_u8(&f) % nconns;
                size_t len;
                const uint8_t *b = fz_bytes(&f, 8192, &len);

                send_all(conns[c], b, len);
        }
        for (unsigned i = 0; i < nconns; i++) {
                if (flags & (4u << i))
                        vanish(conns[i], flags & 0x20);
                else
                        read_answers(conns[i]);
        }
        for (unsigned i = 0; i < nconns; i++)
                if (!(flags & (4u << i)))
                        close(conns[i]);
        if (getenv("VMM_FUZZ_LINGER_MS"))
                usleep((useconds_t)atoi(getenv("VMM_FUZZ_LINGER_MS")) * 1000);
        api_harness_stop(&h);
        fz_quiet_log();
        fz_scratch_clean();
        return 0;
}
