/*
 * The MMDS's TCP: a listener on one port (80) of the service's address that accepts
 * connections from the guest, reassembles each one's HTTP requests and sends back the
 * answers (mmds_http.h), with Firecracker's simplifications ("dumbo", docs/mmds.md): the link
 * is a point-to-point memory queue that seldom loses or reorders, so there is flow control
 * (the peer's window) but no congestion control, segments must arrive in order (others are
 * answered with an ACK and dropped), the only option read is MSS, and a retransmission starts
 * at the first unacknowledged byte after a time-out or a duplicate ACK.
 *
 * Everything the guest sends is bounded: at most MMDS_TCP_MAX_CONNECTIONS connections (a new
 * one evicts a connection silent for MMDS_TCP_EVICT_NS, or is refused with a RST), a receive
 * buffer of MMDS_TCP_RCV_BUF bytes per connection, whose size is the window it advertises (a
 * request that does not fit resets the connection), one answer in flight per connection, at
 * most MMDS_TCP_MAX_RESETS RSTs waiting to be sent (more are not sent). A connection that
 * gets no acknowledgment through MMDS_TCP_RTO_MAX time-outs is reset.
 *
 * No timers: like Firecracker's, the stack is driven by the device (a segment from the guest,
 * room in the guest's receive queue); a time-out is noticed the next time it is asked for a
 * segment.
 */
#ifndef DEVICES_MMDS_MMDS_TCP_H
#define DEVICES_MMDS_MMDS_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "mmds.h"

#define MMDS_TCP_PORT            80
#define MMDS_TCP_MAX_CONNECTIONS 30
#define MMDS_TCP_MAX_RESETS      100
#define MMDS_TCP_RCV_BUF         2500
#define MMDS_TCP_MSS_DEFAULT     536  /* without an MSS option (RFC 9293) */
#define MMDS_TCP_MSS_MAX         1460 /* our own receive side's, and a bound on what we send */
#define MMDS_TCP_RTO_NS          1000000000ull
#define MMDS_TCP_RTO_MAX         15
#define MMDS_TCP_EVICT_NS        10000000000ull

struct mmds_tcp;

int mmds_tcp_create(struct mmds *m, struct mmds_tcp **out) MUST_CHECK;
void mmds_tcp_destroy(struct mmds_tcp *t);

/* A TCP segment (the IPv4 payload, len bytes) from remote to the service. Counts
 * rx_count, rx_accepted_err, rx_accepted_unusual and the connections. */
void mmds_tcp_receive(struct mmds_tcp *t, uint32_t remote, uint32_t local, const uint8_t *seg,
                      size_t len);

/* The next segment to send, written into buf (header and payload, checksummed for the
 * addresses local -> *remote); returns its length, 0 when there is nothing to send now. */
size_t mmds_tcp_next(struct mmds_tcp *t, uint32_t local, uint8_t *buf, size_t cap,
                     uint32_t *remote);

/* Connections open now (tests). */
unsigned mmds_tcp_connections(const struct mmds_tcp *t);

#endif
