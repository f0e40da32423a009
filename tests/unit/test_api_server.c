/*
 * The API server's limits and time-outs (api/server.h) with small values, through real
 * sockets (api_harness.h: the server and a controller on a VMM thread): a connection
 * without a request is closed after the idle time-out; a request that does not arrive whole
 * in time is answered 408; a client that does not read its answers is cut off; at the
 * connection limit a half-sent request is evicted for a waiting client, an idle connection
 * is not; the stop does not wait for a client that does not read.
 *
 * Nothing here is timed: each test waits (up to 10 s) for what must happen.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_harness.h"

#define LIMIT_CONNS 4
#define WAIT_MS     10000

static char dir[64], sock_path[128];
static struct api_harness h;

static int setup(void **state)
{
        struct api_server_limits lim = {
            .max_connections = LIMIT_CONNS,
            .request_timeout_ms = 100,
            .idle_timeout_ms = 200,
        };

        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/test_api_server.XXXXXX");
        if (!mkdtemp(dir))
                return -1;
        snprintf(sock_path, sizeof(sock_path), "%s/api.sock", dir);
        api_harness_start(&h, sock_path, &lim);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        api_harness_stop(&h);
        unlink(sock_path);
        rmdir(dir);
        return 0;
}

/* Everything the server sends until it closes the connection (fails after WAIT_MS). */
static size_t read_to_close(int fd, char *buf, size_t cap)
{
        size_t len = 0;

        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t n;

                if (poll(&p, 1, WAIT_MS) != 1)
                        fail_msg("the server did not close the connection");
                n = recv(fd, buf + len, cap - 1 - len, 0);
                if (n < 0 && errno == ECONNRESET)
                        break;
                assert_true(n >= 0);
                if (n == 0)
                        break;
                len += (size_t)n;
                assert_true(len < cap - 1);
        }
        buf[len] = '\0';
        return len;
}

/* One answer's status line (waits up to WAIT_MS). */
static void expect_answer(int fd, const char *status_line)
{
        char buf[4096];
        size_t len = 0;

        while (len < strlen(status_line)) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t n;

                if (poll(&p, 1, WAIT_MS) != 1)
                        fail_msg("no answer");
                n = recv(fd, buf + len, strlen(status_line) - len, 0);
                assert_true(n > 0);
                len += (size_t)n;
        }
        assert_memory_equal(buf, status_line, strlen(status_line));
}

static void send_str(int fd, const char *s)
{
        assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void test_idle_connection_is_closed(void **state)
{
        int fd = api_harness_connect(sock_path);
        char buf[256];

        (void)state;
        /* Never a request: closed without a word. */
        assert_int_equal(read_to_close(fd, buf, sizeof(buf)), 0);
        close(fd);
        /* After an answer: kept alive, then closed once idle. */
        fd = api_harness_connect(sock_path);
        send_str(fd, "GET /version HTTP/1.1\r\n\r\n");
        read_to_close(fd, buf, sizeof(buf));
        assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
        assert_null(strstr(buf, "Connection: close"));
        close(fd);
}

static void test_slow_request_gets_408(void **state)
{
        int fd = api_harness_connect(sock_path);
        char buf[1024];

        (void)state;
        send_str(fd, "PUT /machine-config HTTP/1.1\r\nContent-Length: 37\r\n\r\n{\"vcpu");
        read_to_close(fd, buf, sizeof(buf));
        assert_true(strncmp(buf, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
        assert_non_null(strstr(buf, "Connection: close\r\n"));
        assert_non_null(strstr(buf, "did not arrive whole within 100 ms of its first byte"));
        close(fd);
}

/* A client that sends requests and never reads: once its answers fill the socket, the
 * server stops reading it; after the time-out without progress it is cut off. */
static void test_client_that_does_not_read_is_cut_off(void **state)
{
        static const char req[] = "GET /vm/config HTTP/1.1\r\n\r\n";
        int fd = api_harness_connect(sock_path), size = 4096;
        size_t answers = 0, sent = 0;
        char buf[65536];
        ssize_t n;

        (void)state;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        /* Pipelined requests until the server stops taking them. */
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};

                if (poll(&p, 1, 1000) != 1 || !(p.revents & POLLOUT))
                        break;
                if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) <= 0)
                        break;
                sent++;
        }
        /* Cut off: reading what is there ends in end-of-file before every answer. */
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                for (ssize_t i = 0; i + 8 < n; i++)
                        answers += memcmp(buf + i, "HTTP/1.1", 8) == 0;
        assert_true(n == 0 || errno == ECONNRESET);
        assert_true(answers < sent);
        close(fd);
}

static void test_half_sent_requests_are_evicted_idle_ones_are_not(void **state)
{
        int slow[LIMIT_CONNS], waiting;
        char buf[1024];
        int cut = 0;

        (void)state;
        for (int i = 0; i < LIMIT_CONNS; i++) {
                slow[i] = api_harness_connect(sock_path);
                send_str(slow[i], "GET /machine-config HTTP/1.1\r\nHo");
        }
        waiting = api_harness_connect(sock_path);
        send_str(waiting, "GET /version HTTP/1.1\r\n\r\n");
        expect_answer(waiting, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < LIMIT_CONNS; i++) {
                read_to_close(slow[i], buf, sizeof(buf));
                cut += strstr(buf, "needed for another client (the limit is 4 connections)") != 0;
                close(slow[i]);
        }
        assert_true(cut >= 1);
        close(waiting);

        /* Idle connections at the limit: the next client waits for an idle time-out, and
         * then every idle one has been closed without an answer. */
        for (int i = 0; i < LIMIT_CONNS; i++)
                slow[i] = api_harness_connect(sock_path);
        waiting = api_harness_connect(sock_path);
        send_str(waiting, "GET /version HTTP/1.1\r\n\r\n");
        expect_answer(waiting, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < LIMIT_CONNS; i++) {
                assert_int_equal(read_to_close(slow[i], buf, sizeof(buf)), 0);
                close(slow[i]);
        }
        close(waiting);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_idle_connection_is_closed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_slow_request_gets_408, setup, teardown),
            cmocka_unit_test_setup_teardown(test_client_that_does_not_read_is_cut_off, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_half_sent_requests_are_evicted_idle_ones_are_not,
                                            setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
