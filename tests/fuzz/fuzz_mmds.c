/*
 * The metadata service's packet path (devices/mmds) against a guest that sends anything:
 * raw Ethernet frames, and TCP segments built from tracked connections (so that fuzzed bytes
 * reach the HTTP parser through a real handshake), with time passing in between; plus the
 * host's JSON (PUT/PATCH) and raw HTTP requests handed to the responder directly.
 *
 * Checked after every step:
 *  - a frame the stack answers with is inside the buffer it was given, comes from the
 *    service's MAC to the guest's, and is a well-formed ARP reply for the service's address,
 *    or an IPv4 packet from that address with TTL 1 and correct IPv4 and TCP checksums, whose
 *    TCP segment is within the peer's MSS (1460) plus the SYN's option;
 *  - at most 30 connections are open (created - destroyed), and a drained stack goes quiet:
 *    a bounded number of calls empties it unless time passes;
 *  - every HTTP answer is "HTTP/1.x NNN \r\n", its Content-Length is its body's length;
 *  - an accepted JSON document prints to text that parses back to the same text, within the
 *    size limit; a refused one leaves the store as it was.
 *
 * Input: a header byte (bit 0: V2, bit 1: imds_compat), then operations (the switch below).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/mmds/mmds.h"
#include "devices/mmds/mmds_http.h"
#include "devices/mmds/mmds_json.h"
#include "devices/mmds/mmds_pdu.h"
#include "devices/mmds/mmds_stack.h"
#include "fuzz_common.h"

#define SERVICE   0xa9fea9feu
#define GUEST_IP  0xa9fe0002u
#define MAX_OPS   200
#define NR_CLIENT 4
#define OUT_CAP   2048
#define STORE     "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"n\":1}}}"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "fuzz_mmds: %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static const uint8_t guest_mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
static const uint8_t mmds_mac[6] = {6, 1, 0x23, 0x45, 0x67, 1};
static uint64_t now_ns;

static uint64_t fake_clock(void *opaque)
{
        (void)opaque;
        return now_ns;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        fz_quiet_log();
        return 0;
}

struct client {
        uint16_t port;
        uint32_t snd, rcv;
};

struct frame_src {
        const uint8_t *p;
        size_t len;
};

static long read_frame(void *opaque, size_t off, void *buf, size_t n)
{
        struct frame_src *f = opaque;

        if (off > f->len || n > f->len - off)
                return -1;
        memcpy(buf, f->p + off, n);
        return (long)n;
}

static void send_frame(struct mmds_stack *s, const uint8_t *p, size_t len)
{
        struct frame_src f = {p, len};

        (void)mmds_stack_take(s, len, read_frame, &f);
}

/* A TCP segment from the guest to port 80 of the service (checksums right). */
static size_t build_segment(uint8_t *f, const struct client *c, uint8_t flags, uint16_t wnd,
                            const uint8_t *data, size_t len)
{
        uint8_t *ip = f + ETH_HDR_LEN, *t = ip + IPV4_HDR_MIN;
        size_t hl = TCP_HDR_MIN + ((flags & TCP_SYN) ? 4 : 0);

        memcpy(f, mmds_mac, 6);
        memcpy(f + 6, guest_mac, 6);
        put_be16(f + 12, ETH_TYPE_IPV4);
        memset(ip, 0, IPV4_HDR_MIN);
        ip[0] = 0x45;
        put_be16(ip + 2, (uint16_t)(IPV4_HDR_MIN + hl + len));
        ip[8] = 64;
        ip[9] = IPV4_PROTO_TCP;
        put_be32(ip + 12, GUEST_IP);
        put_be32(ip + 16, SERVICE);
        put_be16(ip + 10, inet_csum(ip, IPV4_HDR_MIN, 0));
        memset(t, 0, hl);
        put_be16(t, c->port);
        put_be16(t + 2, 80);
        put_be32(t + 4, c->snd);
        put_be32(t + 8, c->rcv);
        t[12] = (uint8_t)(hl / 4) << 4;
        t[13] = flags;
        put_be16(t + 14, wnd);
        if (flags & TCP_SYN) {
                t[20] = TCP_OPT_MSS;
                t[21] = 4;
                put_be16(t + 22, 1460);
        }
        if (len)
                memcpy(t + hl, data, len);
        put_be16(t + 16, tcp_csum(GUEST_IP, SERVICE, t, hl + len));
        return ETH_HDR_LEN + IPV4_HDR_MIN + hl + len;
}

/* Checks one answer frame; learns the client's next expected sequence number from it. */
static void check_frame(const uint8_t *f, size_t n, struct client *clients)
{
        const uint8_t *ip = f + ETH_HDR_LEN, *t;
        size_t total, thl;

        CHECK(n >= ETH_HDR_LEN + ARP_LEN && n <= OUT_CAP);
        CHECK(memcmp(f + 6, mmds_mac, 6) == 0);
        if (get_be16(f + 12) == ETH_TYPE_ARP) {
                CHECK(n == ETH_HDR_LEN + ARP_LEN);
                CHECK(get_be16(ip + 6) == 2 && get_be32(ip + 14) == SERVICE);
                CHECK(memcmp(ip + 8, mmds_mac, 6) == 0 && memcmp(ip + 18, f, 6) == 0);
                return;
        }
        CHECK(get_be16(f + 12) == ETH_TYPE_IPV4);
        total = get_be16(ip + 2);
        CHECK(ip[0] == 0x45 && total == n - ETH_HDR_LEN && ip[8] == 1 && ip[9] == IPV4_PROTO_TCP);
        CHECK(get_be32(ip + 12) == SERVICE);
        CHECK(inet_csum(ip, IPV4_HDR_MIN, 0) == 0);
        t = ip + IPV4_HDR_MIN;
        CHECK(tcp_csum(SERVICE, get_be32(ip + 16), t, total - IPV4_HDR_MIN) == 0);
        thl = (size_t)(t[12] >> 4) * 4;
        CHECK(get_be16(t) == 80 && thl >= TCP_HDR_MIN && thl <= total - IPV4_HDR_MIN);
        CHECK(total - IPV4_HDR_MIN - thl <= 1460);
        for (unsigned i = 0; i < NR_CLIENT; i++) {
                struct client *c = &clients[i];
                uint32_t seq = get_be32(t + 4);
                size_t len = total - IPV4_HDR_MIN - thl;

                if (get_be16(t + 2) != c->port || get_be32(ip + 16) != GUEST_IP)
                        continue;
                /* The guest takes what follows in order (a SYN-ACK starts the stream). */
                if (t[13] & TCP_SYN)
                        c->rcv = seq + 1;
                else if (seq == c->rcv)
                        c->rcv += (uint32_t)len + !!(t[13] & TCP_FIN);
        }
}

/* Everything the stack has now: bounded, or it would be a loop. */
static void drain(struct mmds_stack *s, struct client *clients)
{
        static uint8_t out[OUT_CAP];
        unsigned frames = 0;
        size_t n;

        while ((n = mmds_stack_next_frame(s, out, sizeof(out)))) {
                check_frame(out, n, clients);
                /* 100 RSTs, then 30 connections' windows of data and control segments. */
                CHECK(++frames < 100 + 30 * 64);
        }
}

static void check_answer(const uint8_t *p, size_t n)
{
        const char *end = memmem(p, n, "\r\n\r\n", 4);
        const char *cl = memmem(p, n, "Content-Length: ", 16);

        CHECK(n >= 15 && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '0' || p[7] == '1'));
        CHECK(p[8] == ' ' && p[12] == ' ' && p[13] == '\r' && p[14] == '\n');
        CHECK(end && cl && cl < end);
        CHECK((size_t)strtoul(cl + 16, NULL, 10) == n - (size_t)(end + 4 - (const char *)p));
}

static void host_json(struct mmds *m, struct fz *f)
{
        size_t len, before_len, after_len;
        const uint8_t *text = fz_bytes(f, 1024, &len);
        char *before, *after, msg[128];
        bool patch = fz_bool(f);
        int r;

        CHECK(mmds_get(m, &before, &before_len) == 0);
        r = patch ? mmds_patch(m, (const char *)text, len, msg, sizeof(msg))
                  : mmds_put(m, (const char *)text, len, msg, sizeof(msg));
        CHECK(mmds_get(m, &after, &after_len) == 0);
        if (r) {
                CHECK(after_len == before_len && memcmp(after, before, after_len) == 0);
        } else {
                struct mmds_json *v;
                struct mmds_buf b = {0};

                /* What the store prints parses back to itself. */
                CHECK(after_len <= 512 || !strcmp(after, "{}"));
                CHECK(mmds_json_parse(after, after_len, &v, msg, sizeof(msg)) == 0);
                mmds_json_print(v, &b);
                CHECK((b.len == after_len && memcmp(b.data, after, b.len) == 0) ||
                      (!strcmp(after, "{}") && mmds_json_type(v) == MMDS_JSON_OBJECT));
                mmds_buf_free(&b);
                mmds_json_free(v);
        }
        free(before);
        free(after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mmds_params p = {.size_limit = 512, .instance_id = "fuzz", .clock = fake_clock};
        struct client clients[NR_CLIENT];
        static uint8_t frame[4200];
        struct mmds_stack *s;
        struct mmds *m;
        uint64_t c[MMDS_COUNTER_COUNT];
        struct fz f;
        uint8_t hdr;
        char msg[64];

        fz_init(&f, data, size);
        now_ns = 1000000000ull;
        hdr = fz_u8(&f);
        if (mmds_create(&p, &m))
                abort();
        mmds_configure(m, (hdr & 1) ? MMDS_V2 : MMDS_V1, hdr & 2);
        CHECK(mmds_put(m, STORE, strlen(STORE), msg, sizeof(msg)) == 0);
        if (mmds_stack_create(m, SERVICE, &s))
                abort();
        for (unsigned i = 0; i < NR_CLIENT; i++)
                clients[i] = (struct client){(uint16_t)(40000 + i), 1000u * i, 0};
        for (unsigned op = 0; op < MAX_OPS && !fz_empty(&f); op++) {
                struct client *cl = &clients[fz_below(&f, NR_CLIENT)];
                const uint8_t *bytes;
                size_t len;

                switch (fz_u8(&f) % 8) {
                case 0: /* a raw frame */
                        bytes = fz_bytes(&f, sizeof(frame), &len);
                        memcpy(frame, bytes, len);
                        send_frame(s, frame, len);
                        break;
                case 1: /* a SYN from a tracked client */
                        cl->snd = fz_u32(&f);
                        send_frame(s, frame, build_segment(frame, cl, TCP_SYN, 64240, NULL, 0));
                        cl->snd++;
                        break;
                case 2: /* data (an HTTP request, or anything) on a tracked connection */
                        bytes = fz_bytes(&f, 3000, &len);
                        send_frame(
                            s, frame,
                            build_segment(frame, cl, TCP_ACK | TCP_PSH, fz_u16(&f), bytes, len));
                        cl->snd += (uint32_t)len;
                        break;
                case 3: /* an ACK, a FIN or a RST with the flags and window given */
                        send_frame(s, frame,
                                   build_segment(frame, cl, fz_u8(&f) & (uint8_t)~TCP_SYN,
                                                 fz_u16(&f), NULL, 0));
                        break;
                case 4: /* time passes: retransmissions, eviction, token expiry */
                        now_ns += (uint64_t)fz_u16(&f) * 1000000ull;
                        break;
                case 5:
                        drain(s, clients);
                        break;
                case 6: /* the responder alone */
                        bytes = fz_bytes(&f, 3000, &len);
                        {
                                struct mmds_buf out = {0};

                                mmds_http_respond(m, bytes, len, &out);
                                CHECK(!out.failed);
                                check_answer((const uint8_t *)out.data, out.len);
                                mmds_buf_free(&out);
                        }
                        break;
                case 7:
                        host_json(m, &f);
                        break;
                }
                mmds_get_counters(m, c);
                CHECK(c[MMDS_CONNECTIONS_CREATED] - c[MMDS_CONNECTIONS_DESTROYED] <= 30);
        }
        drain(s, clients);
        /* Once drained, the stack has nothing more to say until something happens. */
        CHECK(mmds_stack_next_frame(s, frame, OUT_CAP) == 0);
        mmds_stack_destroy(s);
        mmds_destroy(m);
        return 0;
}
