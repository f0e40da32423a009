#include "mmds_stack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmds_pdu.h"
#include "mmds_tcp.h"

struct mmds_stack {
        struct mmds *m;
        struct mmds_tcp *tcp;
        uint32_t ipv4;
        uint8_t remote_mac[6]; /* the guest's, from its last frame to the service */
        bool arp_pending;      /* the latest ARP request is not answered yet */
        uint32_t arp_requester;
        uint16_t ip_id;
        uint8_t frame[MMDS_STACK_FRAME_MAX]; /* the guest frame being taken */
};

/* Firecracker's MMDS MAC address (locally administered). */
static const uint8_t mmds_mac[6] = {0x06, 0x01, 0x23, 0x45, 0x67, 0x01};

int mmds_stack_create(struct mmds *m, uint32_t ipv4, struct mmds_stack **out)
{
        struct mmds_stack *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        r = mmds_tcp_create(m, &s->tcp);
        if (r) {
                free(s);
                return r;
        }
        s->m = m;
        s->ipv4 = ipv4;
        *out = s;
        return 0;
}

void mmds_stack_destroy(struct mmds_stack *s)
{
        if (!s)
                return;
        mmds_tcp_destroy(s->tcp);
        free(s);
}

uint32_t mmds_stack_ipv4(const struct mmds_stack *s)
{
        return s->ipv4;
}

bool mmds_stack_wants(const struct mmds_stack *s, const uint8_t *frame, size_t n)
{
        if (n < ETH_HDR_LEN)
                return false;
        switch (get_be16(frame + 12)) {
        case ETH_TYPE_ARP:
                return n >= ETH_HDR_LEN + ARP_LEN &&
                       get_be32(frame + ETH_HDR_LEN + ARP_OFF_TPA) == s->ipv4;
        case ETH_TYPE_IPV4:
                return n >= ETH_HDR_LEN + IPV4_HDR_MIN &&
                       get_be32(frame + ETH_HDR_LEN + IPV4_OFF_DST) == s->ipv4;
        default:
                return false;
        }
}

/* An ARP request (Ethernet/IPv4): the latest one is answered; others are ignored. */
static void receive_arp(struct mmds_stack *s, const uint8_t *a, size_t len)
{
        if (len < ARP_LEN || get_be16(a) != 1 || get_be16(a + 2) != ETH_TYPE_IPV4 || a[4] != 6 ||
            a[5] != 4 || get_be16(a + 6) != 1)
                return;
        memcpy(s->remote_mac, a + 8, 6);
        s->arp_requester = get_be32(a + 14);
        s->arp_pending = true;
}

static void receive_ipv4(struct mmds_stack *s, const uint8_t *eth, const uint8_t *ip, size_t len)
{
        size_t hl, total;

        if (len < IPV4_HDR_MIN || (ip[0] >> 4) != 4)
                return;
        hl = (size_t)(ip[0] & 0xf) * 4;
        total = get_be16(ip + 2);
        /* The frame may carry Ethernet padding after the packet; never less than it says. */
        if (hl < IPV4_HDR_MIN || total < hl || total > len)
                return;
        if (ip[9] != IPV4_PROTO_TCP) {
                mmds_count(s->m, MMDS_RX_ACCEPTED_UNUSUAL, 1);
                return;
        }
        /* Answers go to the MAC the guest sends from. */
        memcpy(s->remote_mac, eth + 6, 6);
        mmds_tcp_receive(s->tcp, get_be32(ip + 12), s->ipv4, ip + hl, total - hl);
}

void mmds_stack_receive(struct mmds_stack *s, const uint8_t *frame, size_t len, size_t frame_len)
{
        mmds_count(s->m, MMDS_RX_ACCEPTED, 1);
        if (len < ETH_HDR_LEN) {
                mmds_count(s->m, MMDS_RX_BAD_ETH, 1);
                return;
        }
        if (len < frame_len) {
                mmds_count(s->m, MMDS_RX_ACCEPTED_ERR, 1); /* too long to be a segment of ours */
                return;
        }
        if (get_be16(frame + 12) == ETH_TYPE_ARP)
                receive_arp(s, frame + ETH_HDR_LEN, len - ETH_HDR_LEN);
        else if (get_be16(frame + 12) == ETH_TYPE_IPV4)
                receive_ipv4(s, frame, frame + ETH_HDR_LEN, len - ETH_HDR_LEN);
}

bool mmds_stack_take(struct mmds_stack *s, size_t frame_len, mmds_stack_read_fn read, void *opaque)
{
        size_t take = frame_len < sizeof(s->frame) ? frame_len : sizeof(s->frame);
        size_t peek = take < MMDS_STACK_PEEK ? take : MMDS_STACK_PEEK;

        if (read(opaque, 0, s->frame, peek) != (long)peek || !mmds_stack_wants(s, s->frame, peek))
                return false;
        /* The rest is read once into the stack's copy, which alone is checked and used,
         * whatever the guest does to its buffer meanwhile (a refused read leaves a short
         * frame, counted as such). */
        if (read(opaque, peek, s->frame + peek, take - peek) != (long)(take - peek))
                take = peek;
        mmds_stack_receive(s, s->frame, take, frame_len);
        return true;
}

static void write_eth(const struct mmds_stack *s, uint8_t *buf, uint16_t type)
{
        memcpy(buf, s->remote_mac, 6);
        memcpy(buf + 6, mmds_mac, 6);
        put_be16(buf + 12, type);
}

static size_t write_arp_reply(struct mmds_stack *s, uint8_t *buf)
{
        uint8_t *a = buf + ETH_HDR_LEN;

        write_eth(s, buf, ETH_TYPE_ARP);
        put_be16(a, 1);
        put_be16(a + 2, ETH_TYPE_IPV4);
        a[4] = 6;
        a[5] = 4;
        put_be16(a + 6, 2); /* reply */
        memcpy(a + 8, mmds_mac, 6);
        put_be32(a + 14, s->ipv4);
        memcpy(a + 18, s->remote_mac, 6);
        put_be32(a + 24, s->arp_requester);
        s->arp_pending = false;
        return ETH_HDR_LEN + ARP_LEN;
}

static size_t write_tcp_packet(struct mmds_stack *s, uint8_t *buf, size_t cap)
{
        uint8_t *ip = buf + ETH_HDR_LEN;
        uint32_t remote;
        size_t n = mmds_tcp_next(s->tcp, s->ipv4, ip + IPV4_HDR_MIN,
                                 cap - ETH_HDR_LEN - IPV4_HDR_MIN, &remote);

        if (!n)
                return 0;
        write_eth(s, buf, ETH_TYPE_IPV4);
        ip[0] = 0x45;
        ip[1] = 0;
        put_be16(ip + 2, (uint16_t)(IPV4_HDR_MIN + n));
        put_be16(ip + 4, s->ip_id++);
        put_be16(ip + 6, 0x4000); /* don't fragment */
        ip[8] = 1;                /* TTL 1: the answer never leaves the link */
        ip[9] = IPV4_PROTO_TCP;
        put_be16(ip + 10, 0);
        put_be32(ip + 12, s->ipv4);
        put_be32(ip + 16, remote);
        put_be16(ip + 10, inet_csum(ip, IPV4_HDR_MIN, 0));
        return ETH_HDR_LEN + IPV4_HDR_MIN + n;
}

size_t mmds_stack_next_frame(struct mmds_stack *s, uint8_t *buf, size_t cap)
{
        size_t n = 0;

        if (cap < ETH_HDR_LEN + IPV4_HDR_MIN + TCP_HDR_MIN + 4) {
                mmds_count(s->m, MMDS_TX_ERRORS, 1);
                return 0;
        }
        if (s->arp_pending)
                n = write_arp_reply(s, buf);
        else
                n = write_tcp_packet(s, buf, cap < 65535 ? cap : 65535);
        if (n) {
                mmds_count(s->m, MMDS_TX_COUNT, 1);
                mmds_count(s->m, MMDS_TX_FRAMES, 1);
                mmds_count(s->m, MMDS_TX_BYTES, n);
        }
        return n;
}
