/*
 * The MMDS network stack of one network interface (Firecracker's MmdsNetworkStack): it sits
 * in the device's data path and answers, instead of the TAP, ARP requests for the service's
 * IPv4 address and TCP to port 80 of that address (mmds_tcp.h), as the host at MAC
 * 06:01:23:45:67:01. Every other frame is left to the device.
 *
 * The device's part (devices/virtio/net.c):
 *   transmit: mmds_stack_take() with each guest frame's length and a way to read it; the
 *     stack reads its first MMDS_STACK_PEEK bytes and tests them (mmds_stack_wants: no false
 *     negatives, an ARP frame whose target address, or an IPv4 packet whose destination, is
 *     the service's); when they are for it, it copies the frame (at most MMDS_STACK_FRAME_MAX
 *     bytes of it), handles the copy (mmds_stack_receive) and says so: the frame is consumed
 *     and must not reach the TAP;
 *   receive: before reading the TAP, mmds_stack_next_frame() may fill the guest's next frame
 *     (ARP replies first, then TCP segments).
 *
 * Frames are checked as Firecracker checks them: Ethernet II only (no 802.1Q tag), ARP
 * requests of Ethernet/IPv4, IPv4 headers (version, header length, total length; the
 * checksum is not verified, as the guest may leave it to an offload), TCP segments (the rest
 * is for mmds_tcp). IPv4 packets to the service that are not TCP are consumed and counted
 * (rx_accepted_unusual); fragments are taken as whole packets. Answers have TTL 1.
 *
 * Not thread-safe: the device calls it under its own lock.
 */
#ifndef DEVICES_MMDS_MMDS_STACK_H
#define DEVICES_MMDS_MMDS_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmds.h"

#define MMDS_STACK_PEEK 64 /* enough for the test: Ethernet + ARP, Ethernet + IPv4 header */
/* The longest guest frame the stack reads: beyond any segment its window allows (the rest
 * of a longer frame is not read; the frame is consumed and counted as an error). */
#define MMDS_STACK_FRAME_MAX 4096

struct mmds_stack;

/* ipv4: the service's address (host byte order). */
int mmds_stack_create(struct mmds *m, uint32_t ipv4, struct mmds_stack **out) MUST_CHECK;
void mmds_stack_destroy(struct mmds_stack *s);
uint32_t mmds_stack_ipv4(const struct mmds_stack *s);

/* Whether the frame (its first n bytes; n may be less than the frame) is for the service. */
bool mmds_stack_wants(const struct mmds_stack *s, const uint8_t *frame, size_t n);

/* A guest frame that mmds_stack_wants: len bytes read of a frame of frame_len bytes. */
void mmds_stack_receive(struct mmds_stack *s, const uint8_t *frame, size_t len, size_t frame_len);

/* Reads n bytes of the frame at off into buf; returns n, or anything else on failure. */
typedef long (*mmds_stack_read_fn)(void *opaque, size_t off, void *buf, size_t n);

/* The device's transmit hook: whether the frame (frame_len bytes, read through read) was for
 * the service, which has then taken it (wants, copy, receive). */
bool mmds_stack_take(struct mmds_stack *s, size_t frame_len, mmds_stack_read_fn read, void *opaque);

/* Writes the next frame for the guest into buf (cap bytes) and returns its length; 0 when
 * there is none now (the device reads the TAP then). */
size_t mmds_stack_next_frame(struct mmds_stack *s, uint8_t *buf, size_t cap);

#endif
