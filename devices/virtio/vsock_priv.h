/*
 * virtio-vsock internals shared by its files; not part of the public API (vsock.h). Split
 * by concern, as Firecracker's vsock is:
 *   vsock.c          the virtio device: queues, ops, creation, counters
 *   vsock_pkt.c      the packet header codec
 *   vsock_conn.c     one connection's state machine (flow control, closing)
 *   vsock_muxer.c    the Unix-socket muxer: the listening socket and the CONNECT line,
 *                    connections to "<uds_path>_<port>", the connection table, which
 *                    connection speaks next, RSTs owed, deadlines, the reaper
 *   vsock_snapshot.c what a restored device owes the guest
 *
 * Threads: ops run with vd->lock held on a vCPU or the VMM thread; the loop callbacks take
 * it. Connection fds may be added on either, but event_loop.h allows removals only on the
 * loop's thread: a connection that ends elsewhere is marked dead, its socket shut down
 * (the peer sees EOF at once) and its events masked; the reaper (an eventfd callback, so on
 * the loop thread) removes, closes and frees it. A dispatch already under way for it finds
 * it dead. Every function below runs with vd->lock held.
 */
#ifndef DEVICES_VIRTIO_VSOCK_PRIV_H
#define DEVICES_VIRTIO_VSOCK_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/log.h"
#include "virtq.h"
#include "vsock.h"
#include "vsock_pkt.h"

#define CONN_BUCKETS 1024
#define RST_QUEUE    (2 * VIRTIO_VSOCK_MAX_CONNS)
/* The guest's packets stop being processed while this many RSTs wait for rx buffers. */
#define RST_HIGH       256
#define LINE_CAP       24 /* "CONNECT 4294967295\n" / "OK 4294967295\n" */
#define LISTEN_BACKLOG 128

enum conn_state {
        CONN_HOST_CMD, /* accepted on uds_path, reading "CONNECT <port>\n" */
        CONN_HOST_REQ, /* REQUEST queued or sent, waiting for the guest's answer */
        CONN_ESTABLISHED,
        CONN_CLOSING, /* both ways shut: waiting for the guest's RST */
};

/* Control packets a connection owes the guest. */
#define P_REQUEST  1u
#define P_RESPONSE 2u
#define P_SHUTDOWN 4u
#define P_CREDIT   8u

struct vsock_conn {
        struct virtio_vsock *vs;
        int fd;
        bool registered;
        bool dead;
        uint32_t events;
        enum conn_state state;
        uint32_t host_port, guest_port;
        unsigned pending;        /* P_* */
        uint32_t shutdown_flags; /* what our SHUTDOWN says */
        bool req_sent;           /* the guest knows this connection */
        bool readable;           /* the socket has bytes or EOF for the guest */
        bool host_eof, host_hup; /* EOF read; the peer closed both ways */
        bool guest_shut_rcv, guest_shut_send, wr_shut;
        /* Guest -> socket. */
        uint32_t rx_cnt;       /* payload bytes received from the guest */
        uint32_t fwd_cnt;      /* of those, taken by the socket */
        uint32_t fwd_cnt_sent; /* fwd_cnt in the last header we sent */
        uint8_t *buf;          /* VIRTIO_VSOCK_BUF_ALLOC ring while bytes wait */
        uint32_t buf_head, buf_len;
        /* Socket -> guest. */
        uint32_t peer_buf_alloc, peer_fwd_cnt;
        uint32_t tx_cnt; /* payload bytes sent to the guest */
        /* The CONNECT line being read, then the OK line being written. */
        char line[LINE_CAP];
        uint8_t line_len, line_off;
        uint64_t deadline_ns; /* 0: none */
        bool in_send;
        struct vsock_conn *hnext;       /* hash chain */
        struct vsock_conn *prev, *next; /* every connection */
        struct vsock_conn *snext;       /* connections that owe the guest a packet */
        struct vsock_conn *gnext;       /* graveyard */
};

struct vsock_rst {
        uint32_t host_port, guest_port;
};

struct virtio_vsock {
        struct virtio_device vd;
        char name[16];
        uint64_t guest_cid;
        char *uds_path;
        bool uds_bound;
        dev_t uds_dev;
        ino_t uds_ino;
        struct event_loop *loop;
        int listen_fd, timer_fd, reap_fd;
        bool listen_registered, timer_registered, reap_registered;
        bool listen_paused;
        uint64_t timer_ns; /* when the timer is armed for; 0: disarmed */
        bool active;
        bool tx_stalled;
        bool reset_event_pending; /* restored: TRANSPORT_RESET still to be sent */
        unsigned nr_conns;
        uint32_t next_port;
        struct vsock_conn *buckets[CONN_BUCKETS];
        struct vsock_conn *all;
        struct vsock_conn *send_head, *send_tail;
        struct vsock_conn *graveyard;
        struct vsock_rst rst[RST_QUEUE];
        unsigned rst_head, rst_len;
        uint8_t config[8];
        struct virtio_vsock_stats stats;
        struct ratelimit rl;
        struct virtq_chain chain;
        struct iovec iov[VIRTIO_VSOCK_QUEUE_SIZE];
};

/* ---- vsock.c: the device ---- */

/* Writes our header (host CID -> guest CID; with c, its credit) at the start of vs->chain.
 * False when guest memory refused it. */
bool vsock_put_hdr(struct virtio_vsock *vs, struct virtq *q, uint16_t op, uint32_t host_port,
                   uint32_t guest_port, uint32_t len, uint32_t flags, struct vsock_conn *c);
/* Both directions until neither can progress. */
void vsock_run(struct virtio_vsock *vs);

/* ---- vsock_conn.c: one connection ---- */

/* The OK line is still being written to a host client. */
bool vsock_conn_line_pending(const struct vsock_conn *c);
/* Whether the socket may be read for the guest now. */
bool vsock_conn_wants_data(const struct vsock_conn *c);
/* The connection owes the guest a packet. */
bool vsock_conn_has_work(const struct vsock_conn *c);
/* One packet for connection c into vs->chain. Returns the packet length, 0 when nothing was
 * sent (the chain stays unused), -1 when guest memory refused the chain. */
long vsock_conn_fill(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c);
/* The guest's packet p (in vs->chain) for connection c. */
void vsock_conn_guest_packet(struct virtio_vsock *vs, struct virtq *q, struct vsock_conn *c,
                             const struct vsock_pkt *p);
/* Events on the socket of a connection past its CONNECT line. */
void vsock_conn_socket_event(struct virtio_vsock *vs, struct vsock_conn *c, uint32_t events);

/* ---- vsock_muxer.c: the Unix-socket muxer ---- */

/* Creates the timer and the reaper, binds and listens on uds_path, registers them. */
int vsock_muxer_open(struct virtio_vsock *vs, struct error *err) MUST_CHECK;
/* Ends every connection, unregisters and closes what open created, removes uds_path (if it
 * is still the socket open created). */
void vsock_muxer_close(struct virtio_vsock *vs);
/* Queues c to speak to the guest if it owes a packet (round robin). */
void vsock_muxer_schedule(struct virtio_vsock *vs, struct vsock_conn *c);
/* Polls c's socket for what its state needs. */
void vsock_muxer_update_events(struct virtio_vsock *vs, struct vsock_conn *c);
/* Stops polling c's socket; on the loop thread only. */
void vsock_muxer_unregister(struct virtio_vsock *vs, struct vsock_conn *c);
/* The guest has VIRTIO_VSOCK_TIMEOUT_MS from now to answer, or c is reset. */
void vsock_muxer_set_deadline(struct virtio_vsock *vs, struct vsock_conn *c);
/* Ends a connection: with `rst` the guest is told (if it knows the connection), `killed`
 * counts it as reset by the device. Any thread: the reaper finishes (vsock_priv.h). */
void vsock_muxer_end(struct virtio_vsock *vs, struct vsock_conn *c, bool rst, bool killed);
/* Resets c: the guest is told, and it counts as killed. */
void vsock_muxer_kill(struct virtio_vsock *vs, struct vsock_conn *c);
/* Fills vs->chain with the next packet owed to the guest: an RST, else the next scheduled
 * connection's (vsock_conn_fill's result). Called only while one is owed. */
long vsock_muxer_fill(struct virtio_vsock *vs, struct virtq *q);
/* One packet from the tx queue, in vs->chain: checked, then to its connection (a REQUEST
 * opens one; anything else for no connection is answered RST). */
void vsock_muxer_guest_packet(struct virtio_vsock *vs, struct virtq *q);

/* ---- vsock_snapshot.c ---- */

/* The device op: connections are not saved (see vsock.h); the guest is told after. */
int vsock_snapshot_restore(struct virtio_device *vd, struct snapbuf_reader *r);
/* Tells the guest that every connection it knew is gone (after a restore), in the first
 * event buffer it posts. */
void vsock_snapshot_send_reset(struct virtio_vsock *vs);

#endif
