/*
 * The REST API server against slow, partial and greedy clients (issue 12 item 5): the real
 * server and controller (api_harness.h) with small limits (4 connections, a 40 ms request
 * time-out, a 60 ms idle time-out), and up to 8 clients that connect, send pieces of
 * requests, let time pass, read or do not read, half-close, close or reset, in any order.
 *
 * Checked beyond the sanitizers:
 *   - every byte a client reads is a well-formed sequence of answers: a status line with
 *     one of the statuses the API sends, headers, a body of the Content-Length announced
 *     (none for 1xx and 204), a JSON fault message for an error (only the first status
 *     line is checked for a client that sent "HEAD": an answer to HEAD announces a body it
 *     does not carry);
 *   - liveness: at the end, with every client left as it is, a new client's GET / is
 *     answered 200 within 2 s: no mix of clients can lock the API.
 *
 * Input: a flags byte (bit 0: a 64-byte payload limit), then operations [op u8][args]:
 *   0 connect a client; 1 send bytes [client][u8 length][bytes]; 2 send the first bytes of
 *   a request template [client][template][u8 count]; 3 sleep [u8: 0-31 ms] (at most 200 ms
 *   per input); 4 read what arrived [client]; 5 shut down the sending side [client];
 *   6 close [client][reset?].
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_harness.h"
#include "fuzz_common.h"

#define MAX_CLIENTS  8
#define SOCK_NAME    "api.sock"
#define MAX_SLEEP_MS 200
#define LIVENESS_MS  2000
#define STREAM_MAX   (64u << 10)

static char sock_path[256];

static const char *const templates[] = {
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 37\r\n\r\n"
    "{\"vcpu_count\": 2, \"mem_size_mib\": 64}",
    "PUT /machine-config HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    "25\r\n{\"vcpu_count\": 2, \"mem_size_mib\": 64}\r\n0\r\n\r\n",
    "GET /vm/config HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "PUT /actions HTTP/1.1\r\nContent-Length: 32\r\n\r\n{\"action_type\": \"InstanceStart\"}",
    "GET /version HTTP/1.1\r\nConnection: close\r\n\r\n",
    "PUT /drives/a HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
    "HEAD / HTTP/1.1\r\n\r\n",
};

struct client {
        int fd; /* -1: none */
        bool shut;
        char stream[STREAM_MAX]; /* answers read, not checked yet */
        size_t len;
        char sent[STREAM_MAX]; /* what it sent, as far as it fits */
        size_t sent_len;
};

static struct client clients[MAX_CLIENTS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *dir = fz_sandbox(argc, argv);

        fz_quiet_log();
        snprintf(sock_path, sizeof(sock_path), "%s/%s", dir, SOCK_NAME);
        return 0;
}

__attribute__((noreturn)) static void bad_stream(const struct client *c, const char *why)
{
        fprintf(stderr, "fuzz_api_http_slow: %s in the answers:\n%.*s\n", why, (int)c->len,
                c->stream);
        abort();
}

static bool known_status(unsigned s)
{
        static const unsigned sent[] = {100, 200, 204, 400, 408, 413, 414, 431, 500, 501, 505};

        for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
                if (s == sent[i])
                        return true;
        return false;
}

/* Checks and drops the whole answers at the start of the client's stream. */
static void check_answers(struct client *c)
{
        if (memmem(c->sent, c->sent_len, "HEAD", 4)) {
                if (c->len >= 9 && memcmp(c->stream, "HTTP/1.1 ", 9))
                        bad_stream(c, "a bad status line");
                c->len = c->len >= 9 ? 9 : c->len; /* the rest is not checked */
                return;
        }
        for (;;) {
                char *end = memmem(c->stream, c->len, "\r\n\r\n", 4), *cl;
                size_t head, body = 0, total;
                unsigned status = 0;

                if (!end) {
                        if (c->len == STREAM_MAX)
                                bad_stream(c, "a head without an end");
                        return;
                }
                head = (size_t)(end - c->stream) + 4;
                if (c->len < 13 || memcmp(c->stream, "HTTP/1.1 ", 9) ||
                    sscanf(c->stream + 9, "%3u", &status) != 1 || !known_status(status))
                        bad_stream(c, "a bad status line");
                cl = memmem(c->stream, head, "\r\nContent-Length: ", 18);
                if (status >= 200 && status != 204) {
                        if (!cl)
                                bad_stream(c, "no Content-Length");
                        body = strtoul(cl + 18, NULL, 10);
                } else if (cl) {
                        bad_stream(c, "a Content-Length on a 1xx or 204");
                }
                total = head + body;
                if (c->len < total)
                        return; /* the rest of the body is still coming */
                if (status >= 400 && body && memcmp(end + 4, "{\"fault_message\":\"", 18) != 0)
                        bad_stream(c, "an error without a fault message");
                memmove(c->stream, c->stream + total, c->len - total);
                c->len -= total;
        }
}

/* Reads what is there without waiting; false once the server closed the connection. */
static bool drain(struct client *c)
{
        for (;;) {
                ssize_t n;

                if (c->len == STREAM_MAX)
                        bad_stream(c, "more than 64 KiB of one answer");
                n = recv(c->fd, c->stream + c->len, STREAM_MAX - c->len, MSG_DONTWAIT);
                if (n > 0) {
                        c->len += (size_t)n;
                        check_answers(c);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
}

static void client_close(struct client *c, bool reset)
{
        if (c->fd < 0)
                return;
        drain(c);
        if (reset) {
                struct linger l = {.l_onoff = 1, .l_linger = 0};
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        close(c->fd);
        c->fd = -1;
}

static struct client *pick(struct fz *f)
{
        struct client *c = &clients[fz_u8(f) % MAX_CLIENTS];

        return c->fd >= 0 ? c : NULL;
}

static void send_some(struct client *c, const void *p, size_t n)
{
        ssize_t w;

        if (!c || c->shut || !n)
                return;
        /* Never blocks: a server that stopped reading leaves the rest unsent. */
        w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0 && c->sent_len + (size_t)w <= STREAM_MAX) {
                memcpy(c->sent + c->sent_len, p, (size_t)w);
                c->sent_len += (size_t)w;
        }
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A new client's GET / must be answered 200 in time, whatever the others do. */
static void check_liveness(void)
{
        static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        int fd = api_harness_connect(sock_path);
        uint64_t until = now_ms() + LIVENESS_MS;
        char got[16];
        size_t len = 0;

        if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
                abort();
        while (len < 13) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                uint64_t now = now_ms();
                ssize_t n;

                if (now >= until) {
                        fprintf(stderr, "fuzz_api_http_slow: GET / not answered within %d ms\n",
                                LIVENESS_MS);
                        abort();
                }
                if (poll(&p, 1, (int)(until - now)) <= 0)
                        continue;
                n = recv(fd, got + len, 13 - len, 0);
                if (n == 0 || (n < 0 && errno != EINTR)) {
                        fprintf(stderr, "fuzz_api_http_slow: GET / closed without an answer\n");
                        abort();
                }
                if (n > 0)
                        len += (size_t)n;
        }
        if (memcmp(got, "HTTP/1.1 200 ", 13) != 0) {
                fprintf(stderr, "fuzz_api_http_slow: GET / answered %.13s\n", got);
                abort();
        }
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct api_server_limits lim = {
            .max_connections = 4,
            .request_timeout_ms = 40,
            .idle_timeout_ms = 60,
        };
        struct api_harness h;
        unsigned slept = 0;
        struct fz f;

        fz_init(&f, data, size);
        if (fz_u8(&f) & 1)
                lim.max_payload = 64;
        api_harness_start(&h, sock_path, &lim);
        for (int i = 0; i < MAX_CLIENTS; i++)
                clients[i].fd = -1;
        while (!fz_empty(&f)) {
                struct client *c;
                const uint8_t *b;
                size_t n;

                switch (fz_u8(&f) % 7) {
                case 0:
                        for (int i = 0; i < MAX_CLIENTS; i++)
                                if (clients[i].fd < 0) {
                                        clients[i].fd = api_harness_connect(sock_path);
                                        clients[i].shut = false;
                                        clients[i].len = clients[i].sent_len = 0;
                                        break;
                                }
                        break;
                case 1:
                        c = pick(&f);
                        b = fz_bytes(&f, 255, &n);
                        send_some(c, b, n);
                        break;
                case 2: {
                        const char *t;

                        c = pick(&f);
                        t = templates[fz_u8(&f) % (sizeof(templates) / sizeof(templates[0]))];
                        n = fz_u8(&f);
                        send_some(c, t, n < strlen(t) ? n : strlen(t));
                        break;
                }
                case 3:
                        n = fz_u8(&f) % 32;
                        if (slept + n <= MAX_SLEEP_MS) {
                                slept += (unsigned)n;
                                usleep((useconds_t)n * 1000);
                        }
                        break;
                case 4:
                        c = pick(&f);
                        if (c && !drain(c))
                                client_close(c, false);
                        break;
                case 5:
                        c = pick(&f);
                        if (c) {
                                shutdown(c->fd, SHUT_WR);
                                c->shut = true;
                        }
                        break;
                default:
                        c = pick(&f);
                        if (c)
                                client_close(c, fz_bool(&f));
                        break;
                }
        }
        check_liveness();
        api_harness_stop(&h);
        for (int i = 0; i < MAX_CLIENTS; i++)
                client_close(&clients[i], false);
        fz_quiet_log();
        fz_scratch_clean();
        return 0;
}
