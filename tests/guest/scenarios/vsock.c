/*
 * `vsock`: virtio-vsock stream connections both ways against a host peer (the KVM test runs
 * it on the VMM's Unix socket backend). Interrupt mode by default. Guest CID from the
 * configuration space; host CID 2.
 *
 *   probe: vsock cid N ready                 the host may connect now
 *   host -> guest: a REQUEST to VSOCK_LISTEN_PORT, answered with RESPONSE; the host's bytes
 *   (a line) are acknowledged with a CREDIT_UPDATE and answered with "guest got: <line>";
 *   the host closes (SHUTDOWN), the guest answers RST.
 *   guest -> host: a REQUEST to VSOCK_HOST_PORT, RESPONSE, "hello from the guest\n" out,
 *   the host's answer in, SHUTDOWN, the device's RST.
 *   a REQUEST to VSOCK_DEAD_PORT, where nobody listens: RST.
 */
#include "alloc.h"
#include "probe.h"
#include "scenarios.h"
#include "str.h"
#include "vctx.h"

#define VSOCK_F_STREAM 0

#define OP_REQUEST        1
#define OP_RESPONSE       2
#define OP_RST            3
#define OP_SHUTDOWN       4
#define OP_RW             5
#define OP_CREDIT_UPDATE  6
#define OP_CREDIT_REQUEST 7
#define TYPE_STREAM       1
#define SHUTDOWN_BOTH     3
#define HOST_CID          2

#define VSOCK_LISTEN_PORT 1234
#define VSOCK_HOST_PORT   5678
#define VSOCK_DEAD_PORT   9999
#define GUEST_PORT        40000
#define BUF_ALLOC         (64u << 10)
#define RX_BUF            2048
#define RX_BUFS           8
#define QSIZE             16
#define WAIT_ROUNDS       8 /* of VIRTIO_WAIT_TSC: the host peer may take its time */
#define LINE_MAX          200

struct vsock_hdr {
        uint64_t src_cid, dst_cid;
        uint32_t src_port, dst_port, len;
        uint16_t type, op;
        uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct conn {
        uint32_t local, peer;
        uint32_t fwd_cnt; /* bytes we consumed */
        uint32_t tx_cnt;  /* bytes we sent */
        uint32_t peer_buf_alloc, peer_fwd_cnt;
};

struct vsock {
        struct virtio_dev *d;
        struct virtq rx, tx, ev;
        uint64_t cid;
        uint8_t *bufs;
        uint8_t buf_of[QSIZE];
        struct vsock_hdr *txh;
        uint8_t *txdata;
        uint64_t *event;
        struct vsock_hdr pkt; /* the last packet received */
        char data[LINE_MAX + 1];
        uint32_t data_len;
};

static void post_rx(struct vsock *v, unsigned i)
{
        struct vbuf b = {v->bufs + (uint64_t)i * RX_BUF, RX_BUF, true};
        int head = virtq_add(&v->rx, &b, 1, false);

        if (head < 0)
                probe_fail("vsock rx ring full");
        v->buf_of[head] = (uint8_t)i;
}

static void send(struct vsock *v, struct conn *c, uint16_t op, uint32_t flags, const void *data,
                 uint32_t len)
{
        struct vbuf b[2] = {{v->txh, sizeof(*v->txh), false}, {v->txdata, len, false}};

        if (len > RX_BUF)
                probe_fail("vsock: %u bytes to send", len);
        *v->txh = (struct vsock_hdr){.src_cid = v->cid,
                                     .dst_cid = HOST_CID,
                                     .src_port = c->local,
                                     .dst_port = c->peer,
                                     .len = len,
                                     .type = TYPE_STREAM,
                                     .op = op,
                                     .flags = flags,
                                     .buf_alloc = BUF_ALLOC,
                                     .fwd_cnt = c->fwd_cnt};
        if (len)
                memcpy(v->txdata, data, len);
        virtq_call(&v->tx, b, len ? 2 : 1, true);
        c->tx_cnt += len;
}

static void take(struct vsock *v, uint16_t head, uint32_t len);

/* Next packet from the device (header in v->pkt, payload in v->data). */
static void receive(struct vsock *v)
{
        uint16_t head;
        uint32_t len;

        for (unsigned round = 0;; round++) {
                if (virtq_wait(&v->rx, &head, &len, VIRTIO_WAIT_TSC))
                        break;
                if (round + 1 == WAIT_ROUNDS)
                        probe_fail("vsock: nothing received (status 0x%x)", virtio_status(v->d));
        }
        take(v, head, len);
}

/* A packet if one is there (vsock-stream polls while it sends). */
static bool try_receive(struct vsock *v)
{
        uint16_t head;
        uint32_t len;

        if (!virtq_get(&v->rx, &head, &len))
                return false;
        take(v, head, len);
        return true;
}

static void take(struct vsock *v, uint16_t head, uint32_t len)
{
        uint8_t *buf;
        unsigned i;

        i = v->buf_of[head];
        buf = v->bufs + (uint64_t)i * RX_BUF;
        if (len < sizeof(v->pkt))
                probe_fail("vsock: rx packet of %u bytes", len);
        memcpy(&v->pkt, buf, sizeof(v->pkt));
        if (v->pkt.len > len - sizeof(v->pkt) || v->pkt.len > LINE_MAX)
                probe_fail("vsock: payload of %u bytes in %u", v->pkt.len, len);
        memcpy(v->data, buf + sizeof(v->pkt), v->pkt.len);
        v->data[v->pkt.len] = '\0';
        v->data_len = v->pkt.len;
        post_rx(v, i);
        virtq_kick(&v->rx);
        if (v->pkt.src_cid != HOST_CID || v->pkt.dst_cid != v->cid || v->pkt.type != TYPE_STREAM)
                probe_fail("vsock: packet from cid %llu to %llu type %u", U64(v->pkt.src_cid),
                           U64(v->pkt.dst_cid), v->pkt.type);
}

/* Waits for `op` on connection c, taking credit packets in passing. */
static void expect(struct vsock *v, struct conn *c, uint16_t op, const char *what)
{
        for (;;) {
                receive(v);
                if (v->pkt.dst_port != c->local || (c->peer && v->pkt.src_port != c->peer))
                        probe_fail("vsock: %s: packet for port %u from %u (op %u)", what,
                                   v->pkt.dst_port, v->pkt.src_port, v->pkt.op);
                c->peer = v->pkt.src_port;
                c->peer_buf_alloc = v->pkt.buf_alloc;
                c->peer_fwd_cnt = v->pkt.fwd_cnt;
                if (v->pkt.op == op)
                        return;
                if (v->pkt.op == OP_CREDIT_UPDATE)
                        continue;
                if (v->pkt.op == OP_CREDIT_REQUEST) {
                        send(v, c, OP_CREDIT_UPDATE, 0, NULL, 0);
                        continue;
                }
                probe_fail("vsock: %s: op %u instead of %u", what, v->pkt.op, op);
        }
}

/* A line of stream bytes (RW packets until '\n'); acknowledged with a CREDIT_UPDATE. */
static void read_line(struct vsock *v, struct conn *c, char *line)
{
        uint32_t n = 0;

        while (n == 0 || line[n - 1] != '\n') {
                expect(v, c, OP_RW, "data");
                if (n + v->data_len > LINE_MAX)
                        probe_fail("vsock: line longer than %u bytes", LINE_MAX);
                memcpy(line + n, v->data, v->data_len);
                n += v->data_len;
                c->fwd_cnt += v->data_len;
        }
        line[n - 1] = '\0';
        send(v, c, OP_CREDIT_UPDATE, 0, NULL, 0);
}

static void write_str(struct vsock *v, struct conn *c, const char *s)
{
        uint32_t len = (uint32_t)str_len(s);

        if (c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt) < len)
                probe_fail("vsock: no credit for %u bytes", len);
        send(v, c, OP_RW, 0, s, len);
}

static void host_to_guest(struct vsock *v)
{
        struct conn c = {.local = VSOCK_LISTEN_PORT};
        char line[LINE_MAX + 1], reply[LINE_MAX + 16] = "guest got: ";

        expect(v, &c, OP_REQUEST, "host connection");
        print("probe: vsock request from cid 2 port %u to port %u\n", c.peer, c.local);
        send(v, &c, OP_RESPONSE, 0, NULL, 0);
        read_line(v, &c, line);
        print("probe: vsock host sent \"%s\"\n", line);
        memcpy(reply + 11, line, str_len(line));
        memcpy(reply + 11 + str_len(line), "\n", 2);
        write_str(v, &c, reply);
        expect(v, &c, OP_SHUTDOWN, "host close");
        print("probe: vsock host closed (shutdown flags %u), guest resets\n", v->pkt.flags);
        send(v, &c, OP_RST, 0, NULL, 0);
}

static void guest_to_host(struct vsock *v)
{
        struct conn c = {.local = GUEST_PORT, .peer = VSOCK_HOST_PORT};
        char line[LINE_MAX + 1];

        send(v, &c, OP_REQUEST, 0, NULL, 0);
        expect(v, &c, OP_RESPONSE, "connection to the host");
        print("probe: vsock connected to host port %u\n", c.peer);
        write_str(v, &c, "hello from the guest\n");
        read_line(v, &c, line);
        print("probe: vsock host answered \"%s\"\n", line);
        send(v, &c, OP_SHUTDOWN, SHUTDOWN_BOTH, NULL, 0);
        expect(v, &c, OP_RST, "close");
        print("probe: vsock guest closed, device reset the connection\n");
}

static void nobody_listens(struct vsock *v)
{
        struct conn c = {.local = GUEST_PORT + 1, .peer = VSOCK_DEAD_PORT};

        send(v, &c, OP_REQUEST, 0, NULL, 0);
        expect(v, &c, OP_RST, "connection to a closed port");
        print("probe: vsock port %u refused with RST\n", VSOCK_DEAD_PORT);
}

static struct vsock *vsock_open(struct vctx *c, const char *who)
{
        struct vsock *v = alloc_zeroed(sizeof(*v), 64);
        struct virtq qs[3];
        struct vbuf evb;

        v->d = vctx_need(c, VID_VSOCK, 0, "virtio-vsock");
        vctx_mode(c, v->d, true);
        virtio_bring_up(v->d, vctx_ring_features(c) | VBIT(VSOCK_F_STREAM), qs, 3, QSIZE);
        v->rx = qs[0];
        v->tx = qs[1];
        v->ev = qs[2];
        vctx_print_mode(who, v->d);
        v->cid = virtio_cfg64(v->d, 0);
        v->bufs = alloc_mem((uint64_t)RX_BUFS * RX_BUF, 4096);
        v->txh = alloc_zeroed(sizeof(*v->txh), 64);
        v->txdata = alloc_mem(RX_BUF, 64);
        v->event = alloc_zeroed(8, 8);
        for (unsigned i = 0; i < RX_BUFS; i++)
                post_rx(v, i);
        virtq_kick(&v->rx);
        evb = (struct vbuf){v->event, 8, true};
        virtq_add(&v->ev, &evb, 1, false);
        virtq_kick(&v->ev);
        return v;
}

/*
 * `vsock-stream` (tests/kvm/test_faults.py): connects to host port 5679 and streams bytes as
 * fast as the credit allows until the host peer goes away mid-stream (its socket closed or
 * reset: the device answers SHUTDOWN or RST), then connects again to show the device still
 * works:
 *   probe: vsock-stream connected to host port 5679
 *   probe: vsock-stream peer closed after N bytes (op RST|SHUTDOWN)
 *   probe: vsock-stream reconnected, sent "again", closed
 */
#define STREAM_PORT  5679
#define STREAM_CHUNK RX_BUF

void scenario_vsock_stream(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct vsock *v = vsock_open(c, "vsock-stream");
        struct conn s = {.local = GUEST_PORT + 2, .peer = STREAM_PORT};
        struct conn again = {.local = GUEST_PORT + 3, .peer = STREAM_PORT};
        uint8_t *chunk = alloc_mem(STREAM_CHUNK, 64);
        uint64_t sent = 0;
        uint16_t op = 0;

        for (unsigned i = 0; i < STREAM_CHUNK; i++)
                chunk[i] = (uint8_t)('a' + i % 26);
        send(v, &s, OP_REQUEST, 0, NULL, 0);
        expect(v, &s, OP_RESPONSE, "connection to the host");
        print("probe: vsock-stream connected to host port %u\n", s.peer);
        while (!op) {
                uint32_t credit = s.peer_buf_alloc - (s.tx_cnt - s.peer_fwd_cnt);

                if (credit >= STREAM_CHUNK) {
                        send(v, &s, OP_RW, 0, chunk, STREAM_CHUNK);
                        sent += STREAM_CHUNK;
                        if (!try_receive(v))
                                continue;
                } else {
                        receive(v); /* no credit: wait for an update or the end */
                }
                if (v->pkt.dst_port != s.local)
                        probe_fail("vsock-stream: packet for port %u (op %u)", v->pkt.dst_port,
                                   v->pkt.op);
                if (v->pkt.op == OP_CREDIT_UPDATE || v->pkt.op == OP_CREDIT_REQUEST) {
                        s.peer_buf_alloc = v->pkt.buf_alloc;
                        s.peer_fwd_cnt = v->pkt.fwd_cnt;
                        if (v->pkt.op == OP_CREDIT_REQUEST)
                                send(v, &s, OP_CREDIT_UPDATE, 0, NULL, 0);
                } else if (v->pkt.op == OP_RST || v->pkt.op == OP_SHUTDOWN) {
                        op = v->pkt.op;
                } else {
                        probe_fail("vsock-stream: op %u while streaming", v->pkt.op);
                }
        }
        print("probe: vsock-stream peer closed after %llu bytes (op %s)\n", U64(sent),
              op == OP_RST ? "RST" : "SHUTDOWN");
        if (op == OP_SHUTDOWN) {
                /* Half closed by the host: the guest ends it. */
                send(v, &s, OP_RST, 0, NULL, 0);
        }
        /* Packets the first connection had in flight when the peer went may still be
         * answered (RST for data the device could no longer take): skip them. */
        send(v, &again, OP_REQUEST, 0, NULL, 0);
        for (;;) {
                receive(v);
                if (v->pkt.dst_port == s.local)
                        continue;
                if (v->pkt.dst_port != again.local || v->pkt.op != OP_RESPONSE)
                        probe_fail("vsock-stream: reconnecting: op %u for port %u", v->pkt.op,
                                   v->pkt.dst_port);
                again.peer_buf_alloc = v->pkt.buf_alloc;
                again.peer_fwd_cnt = v->pkt.fwd_cnt;
                break;
        }
        write_str(v, &again, "again\n");
        send(v, &again, OP_SHUTDOWN, SHUTDOWN_BOTH, NULL, 0);
        expect(v, &again, OP_RST, "close");
        print("probe: vsock-stream reconnected, sent \"again\", closed\n");
        virtio_reset(v->d);
        virtio_irq_disable(v->d);
}

void scenario_vsock(const struct boot_info *bi)
{
        struct vctx *c = vctx_get(bi);
        struct vsock *v;

        v = vsock_open(c, "vsock");
        print("probe: vsock cid %llu ready\n", U64(v->cid));

        host_to_guest(v);
        guest_to_host(v);
        nobody_listens(v);
        vctx_check_irqs(v->d);
        virtio_reset(v->d);
        virtio_irq_disable(v->d);
}
