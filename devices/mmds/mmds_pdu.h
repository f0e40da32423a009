/*
 * Ethernet, ARP, IPv4 and TCP header layouts and the Internet checksum, as the MMDS network
 * stack (mmds_stack.c, mmds_tcp.c) reads and writes them. Big-endian on the wire.
 */
#ifndef DEVICES_MMDS_MMDS_PDU_H
#define DEVICES_MMDS_MMDS_PDU_H

#include <stddef.h>
#include <stdint.h>

#define ETH_HDR_LEN    14
#define ETH_TYPE_IPV4  0x0800
#define ETH_TYPE_ARP   0x0806
#define ARP_LEN        28 /* Ethernet/IPv4 ARP */
#define ARP_OFF_TPA    24
#define IPV4_HDR_MIN   20
#define IPV4_OFF_DST   16
#define IPV4_PROTO_TCP 6
#define TCP_HDR_MIN    20
#define TCP_FIN        0x01
#define TCP_SYN        0x02
#define TCP_RST        0x04
#define TCP_PSH        0x08
#define TCP_ACK        0x10
#define TCP_OPT_END    0
#define TCP_OPT_NOP    1
#define TCP_OPT_MSS    2

static inline uint16_t get_be16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
        put_be16(p, (uint16_t)(v >> 16));
        put_be16(p + 2, (uint16_t)v);
}

/* The ones' complement sum of n bytes, folded into 16 bits, plus sum (not inverted). */
static inline uint32_t inet_sum(const uint8_t *p, size_t n, uint32_t sum)
{
        uint64_t s = sum;

        for (size_t i = 0; i + 1 < n; i += 2)
                s += get_be16(p + i);
        if (n & 1)
                s += (uint32_t)p[n - 1] << 8;
        while (s >> 16)
                s = (s & 0xffff) + (s >> 16);
        return (uint32_t)s;
}

static inline uint16_t inet_csum(const uint8_t *p, size_t n, uint32_t sum)
{
        return (uint16_t)~inet_sum(p, n, sum);
}

/* The TCP checksum of a segment (len bytes, its checksum field included) from src to dst:
 * the value to store in a segment whose field is 0, or 0 when checking a received one. */
static inline uint16_t tcp_csum(uint32_t src, uint32_t dst, const uint8_t *seg, size_t len)
{
        uint8_t pseudo[12];

        put_be32(pseudo, src);
        put_be32(pseudo + 4, dst);
        pseudo[8] = 0;
        pseudo[9] = IPV4_PROTO_TCP;
        put_be16(pseudo + 10, (uint16_t)len);
        return inet_csum(seg, len, inet_sum(pseudo, sizeof(pseudo), 0));
}

#endif
