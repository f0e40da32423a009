/*
 * The MMDS network stack over byte buffers, the way virtio-net drives it: a test guest sends
 * Ethernet frames (ARP, IPv4/TCP, and malformed ones) and reads what the stack answers.
 * Checked: which frames the stack takes, ARP replies, the TCP handshake, requests and
 * answers (several segments, the peer's window), keep-alive, close, RSTs for strangers,
 * retransmission after a time-out (fake clock) and the bounds: connections, request size,
 * frame size. Every answer's IPv4 and TCP checksums are verified.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/mmds/mmds.h"
#include "devices/mmds/mmds_pdu.h"
#include "devices/mmds/mmds_stack.h"
#include "devices/mmds/mmds_tcp.h"

#define MMDS_IP  0xa9fea9feu /* 169.254.169.254 */
#define GUEST_IP 0xa9fe0001u /* 169.254.0.1 */
#define OTHER_IP 0x0a000001u

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t mmds_mac[6] = {0x06, 0x01, 0x23, 0x45, 0x67, 0x01};

static uint64_t fake_ns;

static uint64_t fake_clock(void *opaque)
{
        (void)opaque;
        return fake_ns;
}

struct env {
        struct mmds *m;
        struct mmds_stack *s;
        uint8_t out[65536];
        size_t out_len;
};

static int setup(void **state)
{
        struct env *e = calloc(1, sizeof(*e));
        struct mmds_params p = {.instance_id = "t", .clock = fake_clock};
        const char *doc = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-12345678\"}},\"big\":\"";
        char *json = malloc(8192);

        fake_ns = 5000000000ull;
        assert_int_equal(mmds_create(&p, &e->m), 0);
        assert_int_equal(mmds_stack_create(e->m, MMDS_IP, &e->s), 0);
        /* "big": 3000 characters, more than two segments of 1460 bytes. */
        strcpy(json, doc);
        for (int i = 0; i < 3000; i++)
                json[strlen(doc) + (size_t)i] = (char)('a' + i % 26);
        strcpy(json + strlen(doc) + 3000, "\"}");
        char msg[64];
        assert_int_equal(mmds_put(e->m, json, strlen(json), msg, sizeof(msg)), 0);
        free(json);
        *state = e;
        return 0;
}

static int teardown(void **state)
{
        struct env *e = *state;

        mmds_stack_destroy(e->s);
        mmds_destroy(e->m);
        free(e);
        return 0;
}

static uint64_t counter(struct env *e, enum mmds_counter c)
{
        uint64_t v[MMDS_COUNTER_COUNT];

        mmds_get_counters(e->m, v);
        return v[c];
}

struct frame {
        const uint8_t *p;
        size_t len;
        size_t fail_after; /* reads past this offset fail (0: none) */
        size_t read;       /* bytes read */
};

static long read_frame(void *opaque, size_t off, void *buf, size_t n)
{
        struct frame *f = opaque;

        if (off + n > f->len || (f->fail_after && off + n > f->fail_after))
                return -EFAULT;
        memcpy(buf, f->p + off, n);
        f->read += n;
        return (long)n;
}

/* The guest sends a frame, as virtio-net hands it over: the stack takes it (true) or leaves
 * it to the TAP. */
static bool send_frame(struct env *e, const uint8_t *f, size_t len)
{
        struct frame fr = {f, len, 0, 0};
        bool taken = mmds_stack_take(e->s, len, read_frame, &fr);

        /* A frame left to the TAP was only peeked at; a taken one read once, up to the max. */
        if (!taken)
                assert_true(fr.read <= MMDS_STACK_PEEK);
        else
                assert_int_equal(fr.read, len < MMDS_STACK_FRAME_MAX ? len : MMDS_STACK_FRAME_MAX);
        return taken;
}

static void eth(uint8_t *f, uint16_t type)
{
        memset(f, 0xff, 6);
        memcpy(f + 6, guest_mac, 6);
        put_be16(f + 12, type);
}

static size_t arp_request(uint8_t *f, uint32_t target, uint16_t oper)
{
        uint8_t *a = f + ETH_HDR_LEN;

        eth(f, ETH_TYPE_ARP);
        put_be16(a, 1);
        put_be16(a + 2, ETH_TYPE_IPV4);
        a[4] = 6;
        a[5] = 4;
        put_be16(a + 6, oper);
        memcpy(a + 8, guest_mac, 6);
        put_be32(a + 14, GUEST_IP);
        memset(a + 18, 0, 6);
        put_be32(a + 24, target);
        return ETH_HDR_LEN + ARP_LEN;
}

struct tcp {
        uint16_t sport, dport;
        uint32_t seq, ack;
        uint8_t flags;
        uint16_t wnd;
        uint16_t mss; /* 0: no option */
        const void *data;
        size_t len;
};

static size_t tcp_frame(uint8_t *f, uint32_t dst, uint8_t proto, const struct tcp *t)
{
        uint8_t *ip = f + ETH_HDR_LEN, *tcp = ip + IPV4_HDR_MIN;
        size_t hl = TCP_HDR_MIN + (t->mss ? 4 : 0), total = IPV4_HDR_MIN + hl + t->len;

        eth(f, ETH_TYPE_IPV4);
        memcpy(f, mmds_mac, 6);
        memset(ip, 0, IPV4_HDR_MIN);
        ip[0] = 0x45;
        put_be16(ip + 2, (uint16_t)total);
        ip[8] = 64;
        ip[9] = proto;
        put_be32(ip + 12, GUEST_IP);
        put_be32(ip + 16, dst);
        memset(tcp, 0, hl);
        put_be16(tcp, t->sport);
        put_be16(tcp + 2, t->dport ? t->dport : 80);
        put_be32(tcp + 4, t->seq);
        put_be32(tcp + 8, t->ack);
        tcp[12] = (uint8_t)(hl / 4) << 4;
        tcp[13] = t->flags;
        put_be16(tcp + 14, t->wnd ? t->wnd : 64240);
        if (t->mss) {
                tcp[20] = 2;
                tcp[21] = 4;
                put_be16(tcp + 22, t->mss);
        }
        if (t->len)
                memcpy(tcp + hl, t->data, t->len);
        return ETH_HDR_LEN + total;
}

/* One answer of the stack, checked and parsed. */
struct seg {
        uint32_t dst, seq, ack;
        uint16_t dport, wnd, mss;
        uint8_t flags;
        const uint8_t *data;
        size_t len;
};

static bool next(struct env *e, struct seg *s)
{
        uint8_t *f = e->out, *ip = f + ETH_HDR_LEN, *tcp;
        size_t hl, total, thl;

        e->out_len = mmds_stack_next_frame(e->s, f, sizeof(e->out));
        if (!e->out_len)
                return false;
        assert_memory_equal(f, guest_mac, 6);
        assert_memory_equal(f + 6, mmds_mac, 6);
        assert_int_equal(get_be16(f + 12), ETH_TYPE_IPV4);
        hl = (size_t)(ip[0] & 0xf) * 4;
        total = get_be16(ip + 2);
        assert_int_equal(ip[0] >> 4, 4);
        assert_int_equal(total, e->out_len - ETH_HDR_LEN);
        assert_int_equal(inet_csum(ip, hl, 0), 0);
        assert_int_equal(ip[8], 1); /* TTL */
        assert_int_equal(ip[9], IPV4_PROTO_TCP);
        assert_int_equal(get_be32(ip + 12), MMDS_IP);
        tcp = ip + hl;
        assert_int_equal(tcp_csum(MMDS_IP, get_be32(ip + 16), tcp, total - hl), 0);
        assert_int_equal(get_be16(tcp), 80);
        thl = (size_t)(tcp[12] >> 4) * 4;
        s->dst = get_be32(ip + 16);
        s->dport = get_be16(tcp + 2);
        s->seq = get_be32(tcp + 4);
        s->ack = get_be32(tcp + 8);
        s->flags = tcp[13];
        s->wnd = get_be16(tcp + 14);
        s->mss = thl == 24 && tcp[20] == 2 ? get_be16(tcp + 22) : 0;
        s->data = tcp + thl;
        s->len = total - hl - thl;
        return true;
}

static void expect_nothing(struct env *e)
{
        struct seg s;

        assert_false(next(e, &s));
}

/* A guest connection from port sport: SYN, SYN-ACK, ACK. Returns our next sequence number
 * in *snd and the stack's in *rcv. */
static void connect_(struct env *e, uint16_t sport, uint32_t *snd, uint32_t *rcv)
{
        uint8_t f[128];
        struct seg s;

        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = sport, .seq = 1000, .flags = TCP_SYN, .mss = 1460})));
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_SYN | TCP_ACK);
        assert_int_equal(s.ack, 1001);
        assert_int_equal(s.mss, MMDS_TCP_MSS_MAX);
        assert_int_equal(s.wnd, MMDS_TCP_RCV_BUF);
        assert_int_equal(s.dport, sport);
        *snd = 1001;
        *rcv = s.seq + 1;
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = sport, .seq = *snd, .ack = *rcv, .flags = TCP_ACK})));
        expect_nothing(e);
}

static void send_data(struct env *e, uint16_t sport, uint32_t *snd, uint32_t rcv, const char *d)
{
        uint8_t f[4096];
        size_t n = strlen(d);

        assert_true(send_frame(e, f,
                               tcp_frame(f, MMDS_IP, 6,
                                         &(struct tcp){.sport = sport,
                                                       .seq = *snd,
                                                       .ack = rcv,
                                                       .flags = TCP_ACK | TCP_PSH,
                                                       .data = d,
                                                       .len = n})));
        *snd += (uint32_t)n;
}

static void send_ack(struct env *e, uint16_t sport, uint32_t snd, uint32_t ack, uint16_t wnd)
{
        uint8_t f[128];

        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){
                          .sport = sport, .seq = snd, .ack = ack, .flags = TCP_ACK, .wnd = wnd})));
}

/* Reads the answer's segments, acknowledging each with a window of wnd bytes (0: a large
 * one); returns it (malloc'd, NUL-terminated). */
static char *read_answer(struct env *e, uint16_t sport, uint32_t snd, uint32_t *rcv, uint16_t wnd)
{
        size_t max_seg = wnd && wnd < MMDS_TCP_MSS_MAX ? wnd : MMDS_TCP_MSS_MAX;
        char *all = calloc(1, 65536);
        size_t len = 0;
        struct seg s;

        while (next(e, &s)) {
                if (!s.len)
                        continue;
                assert_int_equal(s.seq, *rcv);
                assert_true(s.len <= max_seg);
                memcpy(all + len, s.data, s.len);
                len += s.len;
                *rcv += (uint32_t)s.len;
                send_ack(e, sport, snd, *rcv, wnd);
        }
        return all;
}

/* ---- tests ---- */

static void takes_only_frames_for_the_service(void **state)
{
        struct env *e = *state;
        uint8_t f[256];
        size_t n;

        n = arp_request(f, MMDS_IP, 1);
        assert_true(mmds_stack_wants(e->s, f, n));
        assert_false(mmds_stack_wants(e->s, f, n - 1)); /* too short to hold the target */
        n = arp_request(f, OTHER_IP, 1);
        assert_false(mmds_stack_wants(e->s, f, n));
        n = tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 1, .flags = TCP_SYN});
        assert_true(mmds_stack_wants(e->s, f, n));
        assert_false(mmds_stack_wants(e->s, f, 33));
        n = tcp_frame(f, OTHER_IP, 6, &(struct tcp){.sport = 1, .flags = TCP_SYN});
        assert_false(mmds_stack_wants(e->s, f, n));
        /* Another ethertype (IPv6), an 802.1Q tag: not ours. */
        n = tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 1, .flags = TCP_SYN});
        put_be16(f + 12, 0x86dd);
        assert_false(mmds_stack_wants(e->s, f, n));
        put_be16(f + 12, 0x8100);
        assert_false(mmds_stack_wants(e->s, f, n));
        assert_false(mmds_stack_wants(e->s, f, 10));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED), 0);
}

static void answers_arp_requests(void **state)
{
        struct env *e = *state;
        uint8_t f[128], *a = e->out + ETH_HDR_LEN;
        size_t n;

        /* A reply, and a request with a wrong hardware length: taken, not answered. */
        assert_true(send_frame(e, f, arp_request(f, MMDS_IP, 2)));
        n = arp_request(f, MMDS_IP, 1);
        f[ETH_HDR_LEN + 4] = 8;
        assert_true(send_frame(e, f, n));
        assert_int_equal(mmds_stack_next_frame(e->s, e->out, sizeof(e->out)), 0);
        assert_true(send_frame(e, f, arp_request(f, MMDS_IP, 1)));
        n = mmds_stack_next_frame(e->s, e->out, sizeof(e->out));
        assert_int_equal(n, ETH_HDR_LEN + ARP_LEN);
        assert_memory_equal(e->out, guest_mac, 6);
        assert_memory_equal(e->out + 6, mmds_mac, 6);
        assert_int_equal(get_be16(e->out + 12), ETH_TYPE_ARP);
        assert_int_equal(get_be16(a + 6), 2);
        assert_memory_equal(a + 8, mmds_mac, 6);
        assert_int_equal(get_be32(a + 14), MMDS_IP);
        assert_memory_equal(a + 18, guest_mac, 6);
        assert_int_equal(get_be32(a + 24), GUEST_IP);
        /* One reply per request. */
        assert_int_equal(mmds_stack_next_frame(e->s, e->out, sizeof(e->out)), 0);
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED), 3);
        assert_int_equal(counter(e, MMDS_TX_FRAMES), 1);
        assert_int_equal(counter(e, MMDS_TX_BYTES), ETH_HDR_LEN + ARP_LEN);
}

static void serves_a_request_and_closes(void **state)
{
        struct env *e = *state;
        uint32_t snd, rcv;
        uint8_t f[128];
        struct seg s;
        char *ans;

        connect_(e, 40000, &snd, &rcv);
        send_data(e, 40000, &snd, rcv,
                  "GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: application/json\r\n\r\n");
        ans = read_answer(e, 40000, snd, &rcv, 0);
        assert_non_null(strstr(ans, "HTTP/1.1 200 \r\n"));
        assert_non_null(strstr(ans, "\r\n\r\n\"ami-12345678\""));
        free(ans);
        /* Keep-alive: a second request, whose answer (3000 bytes of value) takes three
         * segments of at most the MSS. */
        send_data(e, 40000, &snd, rcv, "GET /big HTTP/1.1\r\n\r\n");
        ans = read_answer(e, 40000, snd, &rcv, 0);
        assert_non_null(strstr(ans, "Content-Length: 3000\r\n\r\nabcdefghijklmnopqrstuvwxyzabcd"));
        assert_int_equal(strlen(strstr(ans, "\r\n\r\n") + 4), 3000);
        free(ans);
        /* The guest closes: FIN answered by the stack's FIN; its ACK ends the connection. */
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){
                          .sport = 40000, .seq = snd, .ack = rcv, .flags = TCP_FIN | TCP_ACK})));
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_FIN | TCP_ACK);
        assert_int_equal(s.seq, rcv);
        assert_int_equal(s.ack, snd + 1);
        send_ack(e, 40000, snd + 1, rcv + 1, 0);
        expect_nothing(e);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_CREATED), 1);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 1);
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_ERR), 0);
}

/* The guest's SYN again (our SYN-ACK was slow), then, before the stack got to answer that
 * one, the ACK of the first SYN-ACK and a request (one batch of the guest's transmit queue):
 * the answer starts right after the SYN-ACK. Found by fuzz_mmds: the retransmission had set
 * the next sequence number back to the SYN's, and the answer was read from before its start. */
static void a_retransmitted_syn_then_a_request(void **state)
{
        struct env *e = *state;
        struct tcp syn = {.sport = 40005, .seq = 1000, .flags = TCP_SYN, .mss = 1460};
        uint8_t f[128];
        uint32_t snd = 1001, rcv;
        struct seg s;
        char *ans;

        assert_true(send_frame(e, f, tcp_frame(f, MMDS_IP, 6, &syn)));
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_SYN | TCP_ACK);
        rcv = s.seq + 1;
        assert_true(send_frame(e, f, tcp_frame(f, MMDS_IP, 6, &syn)));
        send_ack(e, 40005, snd, rcv, 0);
        send_data(e, 40005, &snd, rcv, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n");
        ans = read_answer(e, 40005, snd, &rcv, 0);
        assert_non_null(strstr(ans, "HTTP/1.1 200 \r\n"));
        assert_non_null(strstr(ans, "\r\n\r\nami-12345678"));
        free(ans);
}

static void respects_the_peer_window(void **state)
{
        struct env *e = *state;
        uint32_t snd, rcv;
        char *ans;

        connect_(e, 40001, &snd, &rcv);
        /* The request's segment advertises a window of 100 bytes. */
        uint8_t f[256];
        const char *req = "GET /big HTTP/1.1\r\n\r\n";
        assert_true(send_frame(e, f,
                               tcp_frame(f, MMDS_IP, 6,
                                         &(struct tcp){.sport = 40001,
                                                       .seq = snd,
                                                       .ack = rcv,
                                                       .flags = TCP_ACK,
                                                       .wnd = 100,
                                                       .data = req,
                                                       .len = strlen(req)})));
        snd += (uint32_t)strlen(req);
        struct seg s;
        assert_true(next(e, &s));
        assert_int_equal(s.len, 100);
        expect_nothing(e); /* the window is full */
        send_ack(e, 40001, snd, rcv + 100, 100);
        rcv += 100;
        ans = read_answer(e, 40001, snd, &rcv, 100);
        assert_true(strlen(ans) > 2900);
        free(ans);
}

static void retransmits_after_a_time_out_then_gives_up(void **state)
{
        struct env *e = *state;
        uint32_t snd, rcv;
        struct seg s, again;

        connect_(e, 40002, &snd, &rcv);
        send_data(e, 40002, &snd, rcv, "GET /latest HTTP/1.1\r\n\r\n");
        assert_true(next(e, &s));
        assert_true(s.len > 0);
        expect_nothing(e); /* unacknowledged, but not late yet */
        fake_ns += MMDS_TCP_RTO_NS;
        assert_true(next(e, &again));
        assert_int_equal(again.seq, s.seq);
        assert_int_equal(again.len, s.len);
        /* A duplicate ACK also sends it again. */
        send_ack(e, 40002, snd, rcv, 0);
        assert_true(next(e, &again));
        assert_int_equal(again.seq, s.seq);
        for (unsigned i = 1; i < MMDS_TCP_RTO_MAX; i++) {
                fake_ns += MMDS_TCP_RTO_NS;
                assert_true(next(e, &again));
                assert_int_equal(again.seq, s.seq);
        }
        fake_ns += MMDS_TCP_RTO_NS;
        assert_true(next(e, &again));
        assert_int_equal(again.flags, TCP_RST | TCP_ACK);
        expect_nothing(e);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 1);
}

static void resets_strangers_and_bounds_connections(void **state)
{
        struct env *e = *state;
        uint8_t f[128];
        struct seg s;

        /* An ACK for no connection: RST with its acknowledgment number as sequence. */
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = 5, .seq = 7, .ack = 99, .flags = TCP_ACK})));
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_RST);
        assert_int_equal(s.seq, 99);
        /* A RST for no connection: nothing. */
        assert_true(send_frame(
            e, f, tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 5, .flags = TCP_RST})));
        expect_nothing(e);
        /* 30 connections, then the 31st SYN is refused. */
        for (uint16_t p = 0; p < MMDS_TCP_MAX_CONNECTIONS; p++) {
                assert_true(send_frame(
                    e, f,
                    tcp_frame(
                        f, MMDS_IP, 6,
                        &(struct tcp){.sport = (uint16_t)(1000 + p), .seq = 1, .flags = TCP_SYN})));
                assert_true(next(e, &s));
                assert_int_equal(s.flags, TCP_SYN | TCP_ACK);
        }
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 2000, .seq = 1, .flags = TCP_SYN})));
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_RST | TCP_ACK);
        assert_int_equal(s.dport, 2000);
        assert_int_equal(s.ack, 2);
        /* Once they have been silent long enough, a new one evicts one of them (it gets a RST).
         * The SYN-ACKs' time-outs are over too: drain those first. */
        fake_ns += MMDS_TCP_EVICT_NS + 1;
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 2001, .seq = 1, .flags = TCP_SYN})));
        bool rst = false, synack = false;
        while (next(e, &s)) {
                if (s.flags == (TCP_RST | TCP_ACK) && s.dport != 2001)
                        rst = true;
                if (s.flags == (TCP_SYN | TCP_ACK) && s.dport == 2001)
                        synack = true;
        }
        assert_true(rst && synack);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_CREATED), MMDS_TCP_MAX_CONNECTIONS + 1);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 1);
}

static void resets_a_request_longer_than_its_buffer(void **state)
{
        struct env *e = *state;
        uint32_t snd, rcv;
        char *junk = malloc(1300);
        struct seg s;

        memset(junk, 'x', 1299);
        junk[1299] = '\0';
        connect_(e, 40003, &snd, &rcv);
        send_data(e, 40003, &snd, rcv, junk);
        assert_true(next(e, &s)); /* ACK */
        assert_int_equal(s.wnd, MMDS_TCP_RCV_BUF - 1299);
        send_data(e, 40003, &snd, rcv, junk); /* 2598 bytes: 2500 fit, no blank line */
        assert_true(next(e, &s));
        assert_int_equal(s.flags, TCP_RST | TCP_ACK);
        free(junk);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 1);
}

static void malformed_frames_are_taken_and_counted(void **state)
{
        struct env *e = *state;
        uint8_t f[8192];
        size_t n;

        /* Not TCP (UDP): taken, unusual. */
        assert_true(send_frame(e, f, tcp_frame(f, MMDS_IP, 17, &(struct tcp){.sport = 9})));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_UNUSUAL), 1);
        /* Another port: an error. */
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 9, .dport = 81, .flags = TCP_SYN})));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_ERR), 1);
        /* A TCP header longer than the packet. */
        n = tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 9, .flags = TCP_SYN});
        f[ETH_HDR_LEN + IPV4_HDR_MIN + 12] = 0xf0;
        assert_true(send_frame(e, f, n));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_ERR), 2);
        /* IPv4 headers that do not parse: a bad version, a header length of 4 words, a total
         * length past the frame. Taken (the destination is the service's), nothing else. */
        n = tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 9, .flags = TCP_SYN});
        f[ETH_HDR_LEN] = 0x65;
        assert_true(send_frame(e, f, n));
        f[ETH_HDR_LEN] = 0x44;
        assert_true(send_frame(e, f, n));
        f[ETH_HDR_LEN] = 0x45;
        put_be16(f + ETH_HDR_LEN + 2, 200);
        assert_true(send_frame(e, f, n));
        /* A SYN with a malformed MSS option. */
        n = tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 9, .flags = TCP_SYN, .mss = 1460});
        f[ETH_HDR_LEN + IPV4_HDR_MIN + 21] = 9;
        assert_true(send_frame(e, f, n));
        /* Longer than the stack reads: taken, an error. */
        static const uint8_t junk[5000];
        n = tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = 9, .flags = TCP_ACK, .data = junk, .len = 5000});
        assert_true(send_frame(e, f, n));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_ERR), 3);
        expect_nothing(e);
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED), 8);
        assert_int_equal(counter(e, MMDS_CONNECTIONS_CREATED), 0);
}

static void a_frame_that_cannot_be_read_is_not_used(void **state)
{
        struct env *e = *state;
        uint8_t f[256];
        const char *req = "GET / HTTP/1.1\r\n\r\n";
        size_t n =
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = 9, .flags = TCP_ACK, .data = req, .len = strlen(req)});
        struct frame fr = {f, n, 0, 0};

        /* The peek fails: not taken (the device's own path deals with the chain). */
        fr.fail_after = 10;
        assert_false(mmds_stack_take(e->s, n, read_frame, &fr));
        /* The rest fails: taken (it is for the service), handled as a short frame. */
        fr.fail_after = MMDS_STACK_PEEK;
        assert_true(mmds_stack_take(e->s, n, read_frame, &fr));
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED), 1);
        assert_int_equal(counter(e, MMDS_RX_ACCEPTED_ERR), 1);
        expect_nothing(e);
}

static void guest_reset_closes_the_connection(void **state)
{
        struct env *e = *state;
        uint32_t snd, rcv;
        uint8_t f[128];

        connect_(e, 40004, &snd, &rcv);
        /* Out of the window: ignored. */
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6,
                      &(struct tcp){.sport = 40004, .seq = snd + 90000, .flags = TCP_RST})));
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 0);
        assert_true(send_frame(
            e, f,
            tcp_frame(f, MMDS_IP, 6, &(struct tcp){.sport = 40004, .seq = snd, .flags = TCP_RST})));
        assert_int_equal(counter(e, MMDS_CONNECTIONS_DESTROYED), 1);
        expect_nothing(e);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(takes_only_frames_for_the_service),
            T(answers_arp_requests),
            T(serves_a_request_and_closes),
            T(a_retransmitted_syn_then_a_request),
            T(respects_the_peer_window),
            T(retransmits_after_a_time_out_then_gives_up),
            T(resets_strangers_and_bounds_connections),
            T(resets_a_request_longer_than_its_buffer),
            T(malformed_frames_are_taken_and_counted),
            T(a_frame_that_cannot_be_read_is_not_used),
            T(guest_reset_closes_the_connection),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
