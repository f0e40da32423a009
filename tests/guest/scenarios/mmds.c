/*
 * `mmds`: the metadata service through virtio-net, as a guest's own tiny IPv4/TCP/HTTP client
 * (interrupt mode by default). The service's address is 169.254.169.254 unless
 * probe.mmds_ip=A.B.C.D says otherwise; the guest is 169.254.0.2. It expects the data store
 * {"latest": {"meta-data": {"ami-id": "ami-probe"}}}. Every frame it receives from the
 * service must carry correct IPv4 and TCP checksums.
 *
 *   probe: mmds service A.B.C.D
 *   probe: mmds arp: A.B.C.D is at 06:01:23:45:67:01
 *   probe: mmds 5 malformed frames sent            (IPv4 header of 4 words, UDP, TCP to port
 *                                                   81, a TCP header longer than its packet,
 *                                                   an ARP reply: the service takes them all)
 *   probe: mmds stray segment answered: RST seq 12345
 *   probe: mmds 2 frames for the TAP sent          (a 20-byte runt, UDP to 10.0.2.2 with
 *                                                   "PROBE-NOT-MMDS")
 *   probe: mmds connected: mss 1460 window 2500
 *   probe: mmds PUT /latest/api/token: 200, a token of 48 characters
 *   probe: mmds GET ami-id without a token: STATUS BODY
 *   probe: mmds GET ami-id with the token as JSON: STATUS BODY
 *   probe: mmds GET meta-data with the token: STATUS BODY
 *   probe: mmds GET ami-id with a bad token: STATUS BODY
 *   probe: mmds connection closed
 *   probe: mmds N frames to the service, M from it
 *
 * One TCP connection carries the five requests (keep-alive) and is closed by the guest.
 */
#include "alloc.h"
#include "cmdline.h"
#include "netdev.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"

#define GUEST_IP   0xa9fe0002u /* 169.254.0.2 */
#define OTHER_IP   0x0a000202u /* 10.0.2.2 */
#define ETH_IPV4   0x0800
#define ETH_ARP    0x0806
#define TCP_FIN    0x01
#define TCP_SYN    0x02
#define TCP_RST    0x04
#define TCP_PSH    0x08
#define TCP_ACK    0x10
#define SPORT      40000
#define OTHERS_MAX 64
#define RESP_MAX   1400

static const uint8_t mmds_mac[6] = {0x06, 0x01, 0x23, 0x45, 0x67, 0x01};

struct mmds_ctx {
        struct netdev *n;
        uint32_t ip;
        unsigned to_service, from_service, others;
        uint32_t snd, rcv; /* the connection's next sequence numbers, ours and the service's */
        char token[64];
        char resp[RESP_MAX + 1];
        unsigned resp_len;
};

/* A received segment from the service. */
struct seg {
        uint32_t seq, ack;
        uint16_t wnd, mss;
        uint8_t flags;
        const uint8_t *data;
        uint32_t len;
};

static void put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
        put16(p, (uint16_t)(v >> 16));
        put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
        return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t sum)
{
        for (uint32_t i = 0; i + 1 < n; i += 2)
                sum += get16(p + i);
        if (n & 1)
                sum += (uint32_t)p[n - 1] << 8;
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return sum;
}

static uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len)
{
        uint8_t ph[12];

        put32(ph, src);
        put32(ph + 4, dst);
        ph[8] = 0;
        ph[9] = proto;
        put16(ph + 10, (uint16_t)len);
        return sum16(ph, 12, 0);
}

/* Ethernet + IPv4 header for a payload of len bytes; returns where the payload goes. */
static uint8_t *ipv4(struct mmds_ctx *m, uint32_t dst, uint8_t proto, uint32_t len)
{
        uint8_t *f = m->n->frame, *ip = f + ETH_HDR;

        memcpy(f, mmds_mac, 6); /* learnt by ARP: where the guest sends to the service */
        memcpy(f + 6, m->n->mac, 6);
        put16(f + 12, ETH_IPV4);
        memset(ip, 0, 20);
        ip[0] = 0x45;
        put16(ip + 2, (uint16_t)(20 + len));
        ip[8] = 64;
        ip[9] = proto;
        put32(ip + 12, GUEST_IP);
        put32(ip + 16, dst);
        put16(ip + 10, (uint16_t)~sum16(ip, 20, 0));
        return ip + 20;
}

/* A TCP segment to port dport of the service; returns the frame's length. */
static uint32_t tcp(struct mmds_ctx *m, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                    uint8_t flags, const char *data, uint32_t len)
{
        uint32_t hl = (flags & TCP_SYN) ? 24 : 20;
        uint8_t *t = ipv4(m, m->ip, 6, hl + len);

        memset(t, 0, hl);
        put16(t, sport);
        put16(t + 2, dport);
        put32(t + 4, seq);
        put32(t + 8, ack);
        t[12] = (uint8_t)(hl / 4) << 4;
        t[13] = flags;
        put16(t + 14, 8192);
        if (flags & TCP_SYN) {
                t[20] = 2;
                t[21] = 4;
                put16(t + 22, 1460);
        }
        memcpy(t + hl, data, len);
        put16(t + 16, (uint16_t)~sum16(t, hl + len, pseudo_sum(GUEST_IP, m->ip, 6, hl + len)));
        return ETH_HDR + 20 + hl + len;
}

static void to_service(struct mmds_ctx *m, uint32_t len)
{
        netdev_send(m->n, len);
        m->to_service++;
}

/* The next frame from the service (others, like the host's, are skipped). */
static uint32_t from_service(struct mmds_ctx *m)
{
        unsigned nbufs;

        for (;;) {
                uint32_t len = netdev_receive(m->n, &nbufs);

                if (len >= ETH_HDR && memcmp(m->n->got + 6, mmds_mac, 6) == 0) {
                        if (memcmp(m->n->got, m->n->mac, 6) != 0)
                                probe_fail("mmds: a frame from the service not to our MAC");
                        m->from_service++;
                        return len;
                }
                if (++m->others > OTHERS_MAX)
                        probe_fail("mmds: %u frames not from the service", m->others);
        }
}

static void recv_seg(struct mmds_ctx *m, struct seg *s)
{
        uint32_t len = from_service(m);
        const uint8_t *ip = m->n->got + ETH_HDR, *t;
        uint32_t hl, total, thl;

        if (len < ETH_HDR + 40 || get16(m->n->got + 12) != ETH_IPV4)
                probe_fail("mmds: not an IPv4 frame (%u bytes)", len);
        hl = (ip[0] & 0xfu) * 4;
        total = get16(ip + 2);
        if ((ip[0] >> 4) != 4 || hl != 20 || total > len - ETH_HDR || ip[9] != 6)
                probe_fail("mmds: a bad IPv4 header");
        if (sum16(ip, hl, 0) != 0xffff)
                probe_fail("mmds: bad IPv4 header checksum");
        if (get32(ip + 12) != m->ip || get32(ip + 16) != GUEST_IP || ip[8] != 1)
                probe_fail("mmds: addresses or TTL wrong");
        t = ip + hl;
        if (sum16(t, total - hl, pseudo_sum(m->ip, GUEST_IP, 6, total - hl)) != 0xffff)
                probe_fail("mmds: bad TCP checksum");
        thl = (t[12] >> 4) * 4u;
        if (get16(t) != 80 || thl < 20 || thl > total - hl)
                probe_fail("mmds: a bad TCP header");
        s->seq = get32(t + 4);
        s->ack = get32(t + 8);
        s->flags = t[13];
        s->wnd = get16(t + 14);
        s->mss = thl >= 24 && t[20] == 2 && t[21] == 4 ? get16(t + 22) : 0;
        s->data = t + thl;
        s->len = total - hl - thl;
}

/* An ARP request (oper 1) or reply (2) for the service's address, in n->frame. */
static uint32_t arp_frame(struct mmds_ctx *m, uint16_t oper)
{
        uint8_t *f = m->n->frame, *a = f + ETH_HDR;

        memset(f, 0xff, 6);
        memcpy(f + 6, m->n->mac, 6);
        put16(f + 12, ETH_ARP);
        put16(a, 1);
        put16(a + 2, ETH_IPV4);
        a[4] = 6;
        a[5] = 4;
        put16(a + 6, 1);
        memcpy(a + 8, m->n->mac, 6);
        put32(a + 14, GUEST_IP);
        memset(a + 18, 0, 6);
        put32(a + 24, m->ip);
        put16(a + 6, oper);
        return ETH_HDR + 28;
}

static void arp(struct mmds_ctx *m)
{
        uint8_t *a;
        uint32_t len;

        to_service(m, arp_frame(m, 1));
        len = from_service(m);
        a = m->n->got + ETH_HDR;
        if (len < ETH_HDR + 28 || get16(m->n->got + 12) != ETH_ARP || get16(a + 6) != 2 ||
            get32(a + 14) != m->ip || get32(a + 24) != GUEST_IP ||
            memcmp(a + 18, m->n->mac, 6) != 0)
                probe_fail("mmds: not the ARP reply");
        print("probe: mmds arp: %u.%u.%u.%u is at %02x:%02x:%02x:%02x:%02x:%02x\n", a[14], a[15],
              a[16], a[17], a[8], a[9], a[10], a[11], a[12], a[13]);
}

static void malformed(struct mmds_ctx *m)
{
        uint32_t len;
        uint8_t *p;

        len = tcp(m, 9, 80, 1, 0, TCP_SYN, "", 0);
        m->n->frame[ETH_HDR] = 0x44; /* a header of 4 words */
        to_service(m, len);
        p = ipv4(m, m->ip, 17, 12); /* UDP */
        memset(p, 0, 12);
        put16(p + 2, 80);
        to_service(m, ETH_HDR + 32);
        to_service(m, tcp(m, 9, 81, 1, 0, TCP_SYN, "", 0));
        len = tcp(m, 9, 80, 1, 0, TCP_SYN, "", 0);
        m->n->frame[ETH_HDR + 20 + 12] = 0xf0; /* 60 header bytes in a 24-byte segment */
        to_service(m, len);
        to_service(m, arp_frame(m, 2));
        print("probe: mmds 5 malformed frames sent\n");
}

static void stray(struct mmds_ctx *m)
{
        struct seg s;

        to_service(m, tcp(m, 999, 80, 7, 12345, TCP_ACK, "", 0));
        recv_seg(m, &s);
        if (!(s.flags & TCP_RST))
                probe_fail("mmds: a stray segment got flags 0x%x, not a RST", s.flags);
        print("probe: mmds stray segment answered: RST seq %u\n", s.seq);
}

static void for_the_tap(struct mmds_ctx *m)
{
        uint8_t *p;

        memset(m->n->frame, 0xff, 20);
        memcpy(m->n->frame + 6, m->n->mac, 6);
        put16(m->n->frame + 12, ETH_IPV4);
        netdev_send(m->n, 20);
        p = ipv4(m, OTHER_IP, 17, 8 + 14);
        memset(m->n->frame, 0xff, 6);
        memset(p, 0, 8);
        put16(p, 7777);
        put16(p + 2, 7777);
        put16(p + 4, 8 + 14);
        memcpy(p + 8, "PROBE-NOT-MMDS", 14);
        netdev_send(m->n, ETH_HDR + 20 + 8 + 14);
        print("probe: mmds 2 frames for the TAP sent\n");
}

static void tcp_connect(struct mmds_ctx *m)
{
        struct seg s;

        to_service(m, tcp(m, SPORT, 80, 1000, 0, TCP_SYN, "", 0));
        recv_seg(m, &s);
        if (s.flags != (TCP_SYN | TCP_ACK) || s.ack != 1001)
                probe_fail("mmds: no SYN-ACK (flags 0x%x ack %u)", s.flags, s.ack);
        m->snd = 1001;
        m->rcv = s.seq + 1;
        to_service(m, tcp(m, SPORT, 80, m->snd, m->rcv, TCP_ACK, "", 0));
        print("probe: mmds connected: mss %u window %u\n", s.mss, s.wnd);
}

/* The answer's status; its body is at m->resp (NUL-terminated). */
static unsigned http(struct mmds_ctx *m, const char *req)
{
        uint32_t n = (uint32_t)str_len(req);
        unsigned hdr_end = 0, clen = 0;
        uint64_t status;
        struct seg s;

        to_service(m, tcp(m, SPORT, 80, m->snd, m->rcv, TCP_ACK | TCP_PSH, req, n));
        m->snd += n;
        m->resp_len = 0;
        for (;;) {
                recv_seg(m, &s);
                if (s.flags & TCP_RST)
                        probe_fail("mmds: the connection was reset");
                if (!s.len)
                        continue;
                if (s.seq != m->rcv || m->resp_len + s.len > RESP_MAX)
                        probe_fail("mmds: segment seq %u, expected %u", s.seq, m->rcv);
                memcpy(m->resp + m->resp_len, s.data, s.len);
                m->resp_len += s.len;
                m->rcv += s.len;
                to_service(m, tcp(m, SPORT, 80, m->snd, m->rcv, TCP_ACK, "", 0));
                m->resp[m->resp_len] = '\0';
                for (unsigned i = 0; !hdr_end && i + 3 < m->resp_len; i++)
                        if (!memcmp(m->resp + i, "\r\n\r\n", 4))
                                hdr_end = i + 4;
                if (!hdr_end)
                        continue;
                for (unsigned i = 0; i + 16 < hdr_end; i++) {
                        uint64_t v;
                        unsigned j = i + 16;

                        if (memcmp(m->resp + i, "Content-Length: ", 16))
                                continue;
                        while (j < hdr_end && m->resp[j] >= '0' && m->resp[j] <= '9')
                                j++;
                        if (str_parse_u64(m->resp + i + 16, j - i - 16, 10, &v))
                                clen = (unsigned)v;
                }
                if (m->resp_len >= hdr_end + clen)
                        break;
        }
        if (m->resp_len < 13 || memcmp(m->resp, "HTTP/1.1 ", 9) ||
            !str_parse_u64(m->resp + 9, 3, 10, &status))
                probe_fail("mmds: not an HTTP/1.1 answer");
        memmove(m->resp, m->resp + hdr_end, clen + 1);
        return (unsigned)status;
}

static void show(struct mmds_ctx *m, const char *what, const char *req)
{
        unsigned status = http(m, req);

        print("probe: mmds %s: %u %s\n", what, status, m->resp);
}

static void requests(struct mmds_ctx *m)
{
        char req[256];
        unsigned status = http(m, "PUT /latest/api/token HTTP/1.1\r\n"
                                  "X-metadata-token-ttl-seconds: 60\r\n\r\n");

        if (str_len(m->resp) >= sizeof(m->token))
                probe_fail("mmds: a token of %u characters", (unsigned)str_len(m->resp));
        memcpy(m->token, m->resp, str_len(m->resp) + 1);
        print("probe: mmds PUT /latest/api/token: %u, a token of %u characters\n", status,
              (unsigned)str_len(m->token));
        show(m, "GET ami-id without a token", "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n");
        vctx_fmt(req, sizeof(req),
                 "GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: application/json\r\n"
                 "X-metadata-token: %s\r\n\r\n",
                 m->token);
        show(m, "GET ami-id with the token as JSON", req);
        vctx_fmt(req, sizeof(req),
                 "GET /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token: %s\r\n\r\n",
                 m->token);
        show(m, "GET meta-data with the token", req);
        show(m, "GET ami-id with a bad token",
             "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: AAAA\r\n\r\n");
}

static void close_conn(struct mmds_ctx *m)
{
        struct seg s;

        to_service(m, tcp(m, SPORT, 80, m->snd, m->rcv, TCP_FIN | TCP_ACK, "", 0));
        m->snd++;
        do
                recv_seg(m, &s);
        while (!(s.flags & (TCP_FIN | TCP_RST)));
        if (s.flags & TCP_RST || s.ack != m->snd || s.seq != m->rcv)
                probe_fail("mmds: no FIN in answer (flags 0x%x)", s.flags);
        m->rcv++;
        to_service(m, tcp(m, SPORT, 80, m->snd, m->rcv, TCP_ACK, "", 0));
        print("probe: mmds connection closed\n");
}

/* probe.mmds_ip=A.B.C.D */
static uint32_t service_ip(const struct boot_info *bi)
{
        size_t len, at = 0;
        const char *s = cmdline_find(bi->cmdline, "probe.mmds_ip", &len);
        uint32_t ip = 0;

        if (!s)
                return 0xa9fea9feu;
        for (int i = 0; i < 4; i++) {
                size_t start = at;
                uint64_t v;

                while (at < len && s[at] != '.')
                        at++;
                if (!str_parse_u64(s + start, at - start, 10, &v) || v > 255)
                        probe_fail("probe.mmds_ip: not an IPv4 address");
                ip = ip << 8 | (uint32_t)v;
                at++;
        }
        return ip;
}

void scenario_mmds(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi); /* before any allocation: it sets the allocator up */
        struct mmds_ctx *m = alloc_zeroed(sizeof(*m), 64);

        m->n = netdev_open(c, "mmds");
        m->ip = service_ip(bi);
        print("probe: mmds service %u.%u.%u.%u\n", m->ip >> 24, (m->ip >> 16) & 255,
              (m->ip >> 8) & 255, m->ip & 255);
        arp(m);
        malformed(m);
        stray(m);
        for_the_tap(m);
        tcp_connect(m);
        requests(m);
        close_conn(m);
        print("probe: mmds %u frames to the service, %u from it\n", m->to_service, m->from_service);
        netdev_close(m->n);
}
