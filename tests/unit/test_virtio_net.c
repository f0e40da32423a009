/* virtio-net through the in-process driver against a real TAP interface, created by the test
 * in a private network namespace (needs CAP_NET_ADMIN: skipped without it, a failure under
 * CI's VMM_REQUIRE_KVM=1). The host side of the wire is a packet socket bound to the TAP:
 * what it sends leaves through the TAP into the device (guest rx), what the device writes
 * to the TAP arrives on it (guest tx). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "memory/ownership.h"
#include "fakes.h"
#include "vdriver.h"

#define MEM       (16u << 20)
#define QSIZE     256
#define TAP       "vmmtest0"
#define ETH_TEST  0x88b5 /* IEEE local experimental ethertype */
#define RXQ       VIRTIO_NET_RXQ
#define TXQ       VIRTIO_NET_TXQ
#define HDR       VIRTIO_NET_HDR_LEN
#define BUF_SMALL 2048

static bool have_netns;

static const uint8_t guest_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

struct fx {
        struct guest_mem *mem;
        struct hostmem *hm;
        struct event_loop *loop;
        struct virtio_net *net;
        struct virtio_mmio *t;
        struct vdriver d;
        int ifindex;
        int pkt;            /* packet socket for ETH_TEST frames on the TAP */
        gpa_t rxbuf[QSIZE]; /* rx buffer by descriptor head */
        uint32_t rxlen[QSIZE];
};

/* ---- host-side plumbing ---- */

static int ctl_socket(void)
{
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(s >= 0);
        return s;
}

static void write_file(const char *path, const char *s)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
                close(fd);
        }
}

/* A persistent TAP with a 9000-byte MTU, up. */
static int tap_create(const char *name)
{
        struct ifreq ifr = {0};
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), s;

        assert_true(fd >= 0);
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
        assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
        close(fd);
        s = ctl_socket();
        ifr.ifr_mtu = 9000;
        assert_int_equal(ioctl(s, SIOCSIFMTU, &ifr), 0);
        assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
        ifr.ifr_flags |= IFF_UP;
        assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
        close(s);
        return (int)if_nametoindex(name);
}

/* RTM_DELLINK: deletes the interface even while the device holds it open. */
static int link_delete(int ifindex)
{
        struct {
                struct nlmsghdr nh;
                struct ifinfomsg ifi;
        } req = {0};
        struct {
                struct nlmsghdr nh;
                struct nlmsgerr err;
        } ack;
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), r = -1;

        assert_true(fd >= 0);
        req.nh.nlmsg_len = sizeof(req);
        req.nh.nlmsg_type = RTM_DELLINK;
        req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        req.ifi.ifi_family = AF_UNSPEC;
        req.ifi.ifi_index = ifindex;
        if (send(fd, &req, sizeof(req), 0) == sizeof(req) &&
            recv(fd, &ack, sizeof(ack), 0) >= (ssize_t)sizeof(ack) &&
            ack.nh.nlmsg_type == NLMSG_ERROR)
                r = ack.err.error;
        close(fd);
        return r;
}

/* The kernel transmits on the TAP only once linkwatch has seen the carrier the device's attach
 * raised (IFF_RUNNING): until then, frames sent toward the guest are dropped. */
static void wait_running(const char *name)
{
        struct ifreq ifr = {0};
        int s = ctl_socket();

        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
        for (int i = 0; i < 500; i++) {
                assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
                if (ifr.ifr_flags & IFF_RUNNING)
                        break;
                usleep(2000);
        }
        close(s);
        assert_true(ifr.ifr_flags & IFF_RUNNING);
}

static int pkt_open(int ifindex, uint16_t proto, bool vnet_hdr)
{
        struct sockaddr_ll sll = {
            .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = ifindex};
        int one = 1;
        int s = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(proto));

        assert_true(s >= 0);
        /* Straight to the TAP's transmit, not through its qdisc: the qdisc leaves noop (which
         * drops) a moment after IFF_RUNNING shows (wait_running), and under load that moment
         * lost the first frame of a test now and then. */
        assert_int_equal(setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)), 0);
        if (vnet_hdr)
                assert_int_equal(setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)), 0);
        assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
        return s;
}

static ssize_t pkt_recv(int s, void *buf, size_t cap, int timeout_ms)
{
        struct pollfd p = {.fd = s, .events = POLLIN};

        if (poll(&p, 1, timeout_ms) != 1)
                return -1;
        return recv(s, buf, cap, 0);
}

/* An Ethernet frame of the test ethertype, broadcast, payload from seed. */
static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
        memset(f, 0xff, 6);
        memcpy(f + 6, (uint8_t[]){0x02, 0, 0, 0, 0, 0x02}, 6);
        f[12] = ETH_TEST >> 8;
        f[13] = ETH_TEST & 0xff;
        for (size_t i = 14; i < len; i++)
                f[i] = (uint8_t)(seed + i);
}

/* ---- fixture ---- */

static bool require_tap(void)
{
        if (have_netns)
                return true;
        if (getenv("VMM_REQUIRE_KVM") && strcmp(getenv("VMM_REQUIRE_KVM"), "1") == 0)
                fail_msg("a private network namespace with CAP_NET_ADMIN is required in CI");
        return false;
}

#define REQUIRE_TAP()                                                                              \
        do {                                                                                       \
                if (!require_tap())                                                                \
                        skip();                                                                    \
        } while (0)

static int setup_cfg(void **state, const struct virtio_net_config *tmpl)
{
        struct fx *f = calloc(1, sizeof(*f));
        struct error err = {0};

        f->pkt = -1;
        f->mem = test_mem_new(MEM, 0xc0000000ull, 0x100000000ull);
        assert_int_equal(hostmem_create(f->mem, "net", &f->hm), 0);
        assert_int_equal(event_loop_create(&f->loop), 0);
        vdrv_init(&f->d, f->mem, 0x10000, MEM);
        *state = f;
        if (!have_netns)
                return 0;
        f->ifindex = tap_create(TAP);
        assert_true(f->ifindex > 0);
        f->pkt = pkt_open(f->ifindex, ETH_TEST, false);
        struct virtio_net_config c = *tmpl;
        c.loop = f->loop;
        if (virtio_net_create(&c, &err, &f->net))
                fail_msg("virtio_net_create: %s", err.msg);
        struct virtio_mmio_config mc = {
            .vdev = virtio_net_device(f->net), .mem = f->hm, .irq = vdrv_irq_line(&f->d)};
        assert_int_equal(virtio_mmio_create(&mc, &f->t), 0);
        vdrv_attach(&f->d, f->t);
        wait_running(TAP);
        return 0;
}

static const struct virtio_net_config default_cfg = {
    .name = "net0", .tap_name = TAP, .has_mac = true, .mac = {2, 0, 0, 0, 0, 1}};

static int setup(void **state)
{
        return setup_cfg(state, &default_cfg);
}

static int teardown(void **state)
{
        struct fx *f = *state;

        virtio_mmio_destroy(f->t);
        virtio_net_destroy(f->net);
        if (f->pkt >= 0)
                close(f->pkt);
        if (f->ifindex > 0)
                link_delete(f->ifindex); /* may be gone already */
        event_loop_destroy(f->loop);
        hostmem_destroy(f->hm);
        guest_mem_destroy(f->mem);
        free(f);
        return 0;
}

/* ---- driver-side helpers ---- */

static const uint64_t base_features =
    VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS);

static void bring_up(struct fx *f, uint64_t features)
{
        vdrv_bring_up(&f->d, features, 2, QSIZE);
}

static void post_rx_nokick(struct fx *f, unsigned n, uint32_t size)
{
        for (unsigned i = 0; i < n; i++) {
                struct vdrv_buf b = {
                    .addr = vdrv_alloc(&f->d, size, 8), .len = size, .write = true};
                uint16_t head = vdrv_add(&f->d, RXQ, &b, 1);
                f->rxbuf[head] = b.addr;
                f->rxlen[head] = size;
        }
}

static void post_rx(struct fx *f, unsigned n, uint32_t size)
{
        post_rx_nokick(f, n, size);
        vdrv_kick(&f->d, RXQ);
}

/* How long a wait for something that must happen may take before the test fails: a watchdog
 * against a hang, not a timing assertion (the machine may be loaded). */
#define WATCHDOG_MS 10000

/* Runs the event loop until queue q has a used element or timeout_ms passes. */
static bool wait_used(struct fx *f, unsigned q, uint16_t *id, uint32_t *len, int timeout_ms)
{
        for (int waited = 0; waited <= timeout_ms; waited += 10) {
                if (vdrv_get_used(&f->d, q, id, len))
                        return true;
                event_loop_run_once(f->loop, 10);
        }
        return vdrv_get_used(&f->d, q, id, len);
}

/* Puts header + frame in one readable buffer and sends it. */
static uint16_t guest_tx(struct fx *f, const uint8_t *hdr, const uint8_t *frame, size_t len)
{
        uint8_t zero[HDR] = {0};
        gpa_t a = vdrv_alloc(&f->d, HDR + len, 8);
        struct vdrv_buf b = {.addr = a, .len = (uint32_t)(HDR + len)};
        uint16_t head;

        vdrv_mem_write(&f->d, a, hdr ? hdr : zero, HDR);
        vdrv_mem_write(&f->d, a + HDR, frame, len);
        head = vdrv_add(&f->d, TXQ, &b, 1);
        vdrv_kick(&f->d, TXQ);
        return head;
}

static struct virtio_net_stats stats(struct fx *f)
{
        struct virtio_net_stats st;
        virtio_net_get_stats(f->net, &st);
        return st;
}

/* ---- identity, features, configuration ---- */

static void test_features_and_config(void **state)
{
        struct fx *f = *state;
        uint8_t cfg[VIRTIO_NET_CONFIG_LEN];
        uint64_t feat;

        REQUIRE_TAP();
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
        feat = vdrv_device_features(&f->d);
        for (unsigned b = 0; b <= 16; b++) {
                bool want = b == VIRTIO_NET_F_CSUM || b == VIRTIO_NET_F_GUEST_CSUM ||
                            b == VIRTIO_NET_F_MAC || b == VIRTIO_NET_F_GUEST_TSO4 ||
                            b == VIRTIO_NET_F_GUEST_TSO6 || b == VIRTIO_NET_F_HOST_TSO4 ||
                            b == VIRTIO_NET_F_HOST_TSO6 || b == VIRTIO_NET_F_MRG_RXBUF ||
                            b == VIRTIO_NET_F_STATUS;
                if (want != !!(feat & VIRTIO_BIT(b)))
                        fail_msg("feature bit %u: offered %d", b, !!(feat & VIRTIO_BIT(b)));
        }
        assert_true(feat & VIRTIO_BIT(VIRTIO_F_VERSION_1));
        vdrv_read_config(&f->d, 0, cfg, sizeof(cfg));
        assert_memory_equal(cfg + VIRTIO_NET_CFG_MAC, guest_mac, 6);
        assert_int_equal(get_le16(cfg + VIRTIO_NET_CFG_STATUS), VIRTIO_NET_S_LINK_UP);
        assert_int_equal(get_le16(cfg + VIRTIO_NET_CFG_MAX_PAIRS), 1);
        assert_int_equal(get_le16(cfg + VIRTIO_NET_CFG_MTU), 0);
}

static int setup_mtu_no_mac(void **state)
{
        struct virtio_net_config c = {.name = "net0", .tap_name = TAP, .mtu = 1400};
        return setup_cfg(state, &c);
}

static void test_mtu_offered_mac_not(void **state)
{
        struct fx *f = *state;
        uint8_t cfg[VIRTIO_NET_CONFIG_LEN], zero[6] = {0};
        uint64_t feat;

        REQUIRE_TAP();
        feat = vdrv_device_features(&f->d);
        assert_true(feat & VIRTIO_BIT(VIRTIO_NET_F_MTU));
        assert_false(feat & VIRTIO_BIT(VIRTIO_NET_F_MAC));
        vdrv_read_config(&f->d, 0, cfg, sizeof(cfg));
        assert_int_equal(get_le16(cfg + VIRTIO_NET_CFG_MTU), 1400);
        assert_memory_equal(cfg, zero, 6);
}

/* 5.1.3.1: GUEST_TSO4 needs GUEST_CSUM, HOST_TSO4 needs CSUM. */
static void test_feature_dependencies_refused(void **state)
{
        struct fx *f = *state;

        REQUIRE_TAP();
        assert_false(vdrv_negotiate(&f->d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                                               VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)) &
                     VIRTIO_STATUS_FEATURES_OK);
        assert_false(vdrv_negotiate(&f->d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                                               VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6)) &
                     VIRTIO_STATUS_FEATURES_OK);
        assert_true(vdrv_negotiate(&f->d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                                              VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
                                              VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)) &
                    VIRTIO_STATUS_FEATURES_OK);
}

static void test_missing_tap_is_config_error(void **state)
{
        struct event_loop *loop;
        struct virtio_net *net = NULL;
        struct error err = {0};
        struct virtio_net_config c = {.name = "net0", .tap_name = "vmmnosuch0"};

        (void)state;
        assert_int_equal(event_loop_create(&loop), 0);
        c.loop = loop;
        assert_true(virtio_net_create(&c, &err, &net) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, "vmmnosuch0"));
        assert_non_null(strstr(err.msg, "does not exist"));

        error_clear(&err);
        c.tap_name = "a-name-that-is-too-long";
        assert_true(virtio_net_create(&c, &err, &net) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_null(net);
        event_loop_destroy(loop);
}

static void test_not_a_tap_is_config_error(void **state)
{
        struct fx *f = *state;
        struct virtio_net *net = NULL;
        struct error err = {0};
        struct virtio_net_config c = {.name = "net1", .tap_name = "lo", .loop = f->loop};

        REQUIRE_TAP();
        assert_true(virtio_net_create(&c, &err, &net) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, "'lo' is not a TAP device"));
        /* A single-queue TAP takes one user: the fixture's device holds it. */
        error_clear(&err);
        c.tap_name = TAP;
        assert_true(virtio_net_create(&c, &err, &net) < 0);
        assert_int_equal(err.kind, ERROR_CONFIG);
        assert_non_null(strstr(err.msg, "already in use"));
}

/* ---- transmit ---- */

static void test_tx_frame_reaches_tap(void **state)
{
        struct fx *f = *state;
        uint8_t frame[200], got[300];
        uint16_t id, head;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        make_frame(frame, sizeof(frame), 7);
        unsigned irqs = f->d.irqs;
        head = guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(id, head);
        assert_true(f->d.irqs > irqs);
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), WATCHDOG_MS), sizeof(frame));
        assert_memory_equal(got, frame, sizeof(frame));
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.tx_packets_count, 1);
        assert_int_equal(st.tx_bytes_count, sizeof(frame));
}

/* The header is the chain's first 12 bytes wherever the descriptors split it. */
static void test_tx_header_split_across_descriptors(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[200], zero[HDR] = {0};
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        make_frame(frame, sizeof(frame), 3);
        gpa_t a = vdrv_alloc(&f->d, 5, 8), b = vdrv_alloc(&f->d, 7 + 20, 8),
              c = vdrv_alloc(&f->d, sizeof(frame) - 20, 8);
        vdrv_mem_write(&f->d, a, zero, 5);
        vdrv_mem_write(&f->d, b, zero, 7);
        vdrv_mem_write(&f->d, b + 7, frame, 20);
        vdrv_mem_write(&f->d, c, frame + 20, sizeof(frame) - 20);
        struct vdrv_buf bufs[3] = {
            {.addr = a, .len = 5}, {.addr = b, .len = 27}, {.addr = c, .len = sizeof(frame) - 20}};
        vdrv_add(&f->d, TXQ, bufs, 3);
        vdrv_kick(&f->d, TXQ);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), WATCHDOG_MS), sizeof(frame));
        assert_memory_equal(got, frame, sizeof(frame));
}

/* IPv4/UDP frame; the UDP checksum field (offset 40) left for the offload. */
static size_t make_udp(uint8_t *f, size_t payload)
{
        size_t len = 14 + 20 + 8 + payload;

        memset(f, 0, len);
        memset(f, 0xff, 6);
        f[6] = 0x02;
        f[11] = 0x02;
        f[12] = 0x08; /* IPv4 */
        f[14] = 0x45;
        f[16] = (uint8_t)((len - 14) >> 8);
        f[17] = (uint8_t)(len - 14);
        f[22] = 64;
        f[23] = 17; /* UDP */
        memcpy(f + 26, (uint8_t[]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
        uint32_t sum = 0;
        for (int i = 14; i < 34; i += 2)
                sum += (uint32_t)(f[i] << 8 | f[i + 1]);
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        f[24] = (uint8_t)(~sum >> 8);
        f[25] = (uint8_t)~sum;
        f[34] = 0x30;
        f[35] = 0x39;
        f[36] = 0x30;
        f[37] = 0x3a;
        f[38] = (uint8_t)((8 + payload) >> 8);
        f[39] = (uint8_t)(8 + payload);
        for (size_t i = 0; i < payload; i++)
                f[42 + i] = (uint8_t)i;
        return len;
}

/* With CSUM the guest's NEEDS_CSUM header reaches the host stack as a partial checksum. */
static void test_tx_offload_header_passed_through(void **state)
{
        struct fx *f = *state;
        uint8_t frame[200], got[300], hdr[HDR] = {0};
        uint16_t id;
        uint32_t len;
        int s;

        REQUIRE_TAP();
        bring_up(f, base_features | VIRTIO_BIT(VIRTIO_NET_F_CSUM));
        s = pkt_open(f->ifindex, 0x0800, true);
        size_t n = make_udp(frame, 64);
        hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        put_le16(hdr + 6, 34); /* csum_start: the UDP header */
        put_le16(hdr + 8, 6);  /* csum_offset: its checksum field */
        guest_tx(f, hdr, frame, n);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        /* The packet socket reports struct virtio_net_hdr (10 bytes) first. */
        assert_int_equal(pkt_recv(s, got, sizeof(got), WATCHDOG_MS), 10 + (ssize_t)n);
        assert_int_equal(got[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_int_equal(get_le16(got + 6), 34);
        assert_int_equal(get_le16(got + 8), 6);
        assert_memory_equal(got + 10, frame, n);
        close(s);
}

/* Offloads the driver did not negotiate are refused, not passed to the host. */
static void test_tx_unnegotiated_offload_refused(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[200], hdr[HDR] = {0};
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features); /* no CSUM, no HOST_TSO4 */
        make_frame(frame, sizeof(frame), 1);
        hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        guest_tx(f, hdr, frame, sizeof(frame));
        hdr[0] = 0;
        hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        guest_tx(f, hdr, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), 100), -1);
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.tx_malformed, 2);
        assert_int_equal(st.tx_packets_count, 0);
}

static void test_tx_malformed_chains(void **state)
{
        struct fx *f = *state;
        uint8_t frame[64], got[100];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        /* Shorter than the header. */
        struct vdrv_buf shortb = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8};
        vdrv_add(&f->d, TXQ, &shortb, 1);
        /* Outside guest RAM. */
        struct vdrv_buf outside = {.addr = 0xd0000000ull, .len = 100};
        vdrv_add(&f->d, TXQ, &outside, 1);
        /* A descriptor loop: 0 -> 1 -> 0. */
        struct vdrv_buf two[2] = {{.addr = vdrv_alloc(&f->d, 64, 8), .len = 64},
                                  {.addr = vdrv_alloc(&f->d, 64, 8), .len = 64}};
        uint16_t head = vdrv_add_nopublish(&f->d, TXQ, two, 2);
        uint8_t desc[16];
        gpa_t second = f->d.q[TXQ].desc + 16ull * ((head + 1) % QSIZE);
        vdrv_mem_read(&f->d, second, desc, 16);
        put_le16(desc + 12, VIRTQ_DESC_F_NEXT);
        put_le16(desc + 14, head);
        vdrv_mem_write(&f->d, second, desc, 16);
        vdrv_publish(&f->d, TXQ);
        /* A good frame after them still goes out. */
        make_frame(frame, sizeof(frame), 9);
        guest_tx(f, NULL, frame, sizeof(frame));
        for (int i = 0; i < 4; i++)
                assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), WATCHDOG_MS), sizeof(frame));
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.tx_malformed, 3);
        assert_int_equal(st.tx_packets_count, 1);
        assert_false(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

/* ---- receive ---- */

static void test_rx_frame_without_mrg(void **state)
{
        struct fx *f = *state;
        uint8_t frame[300], got[BUF_SMALL];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        post_rx(f, 4, BUF_SMALL);
        make_frame(frame, sizeof(frame), 42);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        unsigned irqs = f->d.irqs;
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(len, HDR + sizeof(frame));
        vdrv_mem_read(&f->d, f->rxbuf[id], got, len);
        assert_int_equal(got[0], 0);             /* flags */
        assert_int_equal(got[1], 0);             /* gso_type */
        assert_int_equal(get_le16(got + 10), 1); /* num_buffers */
        assert_memory_equal(got + HDR, frame, sizeof(frame));
        assert_true(f->d.irqs > irqs);
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.rx_packets_count, 1);
        assert_int_equal(st.rx_bytes_count, sizeof(frame));
}

/* Without MRG_RXBUF the header may straddle descriptors of one chain. */
static void test_rx_header_split_across_descriptors(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[HDR + 100];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        gpa_t a = vdrv_alloc(&f->d, 5, 8), b = vdrv_alloc(&f->d, 1000, 8);
        struct vdrv_buf bufs[2] = {{.addr = a, .len = 5, .write = true},
                                   {.addr = b, .len = 1000, .write = true}};
        vdrv_add(&f->d, RXQ, bufs, 2);
        vdrv_kick(&f->d, RXQ);
        make_frame(frame, sizeof(frame), 5);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(len, sizeof(got));
        vdrv_mem_read(&f->d, a, got, 5);
        vdrv_mem_read(&f->d, b, got + 5, sizeof(got) - 5);
        assert_int_equal(get_le16(got + 10), 1);
        assert_memory_equal(got + HDR, frame, sizeof(frame));
}

/* A frame larger than the chain is dropped and counted; the chain serves the next frame. */
static void test_rx_too_large_without_mrg_dropped(void **state)
{
        struct fx *f = *state;
        uint8_t big[5000], small[100], got[BUF_SMALL];
        uint16_t id;
        uint32_t len;

        struct log_capture logs;

        REQUIRE_TAP();
        bring_up(f, base_features);
        post_rx(f, 1, BUF_SMALL);
        make_frame(big, sizeof(big), 1);
        make_frame(small, sizeof(small), 2);
        log_capture_start(&logs);
        assert_int_equal(send(f->pkt, big, sizeof(big), 0), sizeof(big));
        assert_int_equal(send(f->pkt, small, sizeof(small), 0), sizeof(small));
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        log_capture_stop();
        assert_int_equal(len, HDR + sizeof(small));
        vdrv_mem_read(&f->d, f->rxbuf[id], got, len);
        assert_memory_equal(got + HDR, small, sizeof(small));
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.rx_dropped, 1);
        assert_int_equal(st.rx_packets_count, 1);
        /* The loss is in the log, with its reason. */
        assert_true(log_capture_find(&logs, "net0: rx frame dropped (5000 bytes): larger than "
                                            "the rx buffer") >= 0);
}

/* With MRG_RXBUF a 5000-byte frame spreads over three 2 KiB chains: num_buffers = 3. */
static void test_rx_mergeable_buffers(void **state)
{
        struct fx *f = *state;
        uint8_t frame[5000], got[HDR + 5000];
        uint16_t id;
        uint32_t len, total = 0;

        REQUIRE_TAP();
        bring_up(f, base_features | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
        post_rx(f, 2, BUF_SMALL); /* not enough yet: the device waits for more */
        make_frame(frame, sizeof(frame), 11);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_false(wait_used(f, RXQ, &id, &len, 200));
        post_rx(f, 2, BUF_SMALL);
        for (int i = 0; i < 3; i++) {
                assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
                assert_true(total + len <= sizeof(got));
                vdrv_mem_read(&f->d, f->rxbuf[id], got + total, len);
                total += len;
                if (i == 0)
                        assert_int_equal(get_le16(got + 10), 3);
        }
        assert_int_equal(total, HDR + sizeof(frame));
        assert_memory_equal(got + HDR, frame, sizeof(frame));
        assert_false(vdrv_get_used(&f->d, RXQ, &id, &len)); /* the 4th chain is still free */
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.rx_packets_count, 1);
        assert_int_equal(st.rx_dropped, 0);
}

static uint16_t csum_fold(const uint8_t *p, size_t n, uint32_t sum)
{
        for (size_t i = 0; i + 1 < n; i += 2)
                sum += (uint32_t)(p[i] << 8 | p[i + 1]);
        if (n & 1)
                sum += (uint32_t)p[n - 1] << 8;
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return (uint16_t)sum;
}

/* Sends a UDP frame with a partial checksum from the host side; returns what the guest got. */
static uint32_t rx_partial_csum(struct fx *f, uint8_t *got, size_t cap, size_t *frame_len)
{
        uint8_t frame[200], msg[10 + 200] = {0};
        uint16_t id;
        uint32_t len;
        int s = pkt_open(f->ifindex, 0x0800, true);
        size_t n = make_udp(frame, 64);

        /* The pseudo-header sum goes in the checksum field, as a stack would leave it. */
        uint32_t pseudo = csum_fold(frame + 26, 8, 17 + (uint32_t)(n - 34));
        frame[40] = (uint8_t)(pseudo >> 8);
        frame[41] = (uint8_t)pseudo;
        msg[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        put_le16(msg + 6, 34);
        put_le16(msg + 8, 6);
        memcpy(msg + 10, frame, n);
        assert_int_equal(send(s, msg, 10 + n, 0), (ssize_t)(10 + n));
        close(s);
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_true(len <= cap);
        vdrv_mem_read(&f->d, f->rxbuf[id], got, len);
        *frame_len = n;
        return len;
}

/* GUEST_CSUM negotiated: TUNSETOFFLOAD lets the partial checksum through to the guest. */
static void test_rx_guest_csum_offload(void **state)
{
        struct fx *f = *state;
        uint8_t got[BUF_SMALL];
        size_t n;

        REQUIRE_TAP();
        bring_up(f, base_features | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM));
        post_rx(f, 4, BUF_SMALL);
        uint32_t len = rx_partial_csum(f, got, sizeof(got), &n);
        assert_int_equal(len, HDR + n);
        assert_int_equal(got[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_int_equal(get_le16(got + 6), 34);
        assert_int_equal(get_le16(got + 8), 6);
}

/* Without GUEST_CSUM the host completes the checksum before the frame reaches the guest. */
static void test_rx_no_guest_csum_gets_full_checksum(void **state)
{
        struct fx *f = *state;
        uint8_t got[BUF_SMALL];
        size_t n;

        REQUIRE_TAP();
        bring_up(f, base_features);
        post_rx(f, 4, BUF_SMALL);
        uint32_t len = rx_partial_csum(f, got, sizeof(got), &n);
        assert_int_equal(len, HDR + n);
        assert_int_equal(got[0], 0);
        /* UDP checksum over pseudo header + datagram verifies to 0xffff. */
        uint8_t *ip = got + HDR + 14;
        uint32_t pseudo = csum_fold(ip + 12, 8, 17 + (uint32_t)(n - 34));
        assert_int_equal(csum_fold(ip + 20, n - 34, pseudo), 0xffff);
}

/* No rx buffers: the device holds one frame and stops polling the TAP (no busy loop); the
 * guest's notification resumes it and nothing is lost. */
static void test_rx_no_buffers_stops_polling(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[BUF_SMALL];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        for (int i = 0; i < 3; i++) {
                make_frame(frame, sizeof(frame), (uint8_t)(10 * i));
                assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        }
        assert_int_equal(event_loop_run_once(f->loop, 500), 1); /* reads one, finds no buffer */
        assert_int_equal(event_loop_run_once(f->loop, 200), 0); /* then leaves the TAP alone */
        assert_int_equal(event_loop_run_once(f->loop, 200), 0);
        post_rx(f, 8, BUF_SMALL);
        for (int i = 0; i < 3; i++) {
                assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
                vdrv_mem_read(&f->d, f->rxbuf[id], got, len);
                make_frame(frame, sizeof(frame), (uint8_t)(10 * i));
                assert_memory_equal(got + HDR, frame, sizeof(frame)); /* in order */
        }
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.rx_packets_count, 3);
        assert_int_equal(st.rx_dropped, 0);
}

static void test_rx_malformed_chains(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100];
        uint16_t id, head_short, head_ro;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
        struct vdrv_buf shortb = {.addr = vdrv_alloc(&f->d, 8, 8), .len = 8, .write = true};
        head_short = vdrv_add(&f->d, RXQ, &shortb, 1);
        struct vdrv_buf ro = {.addr = vdrv_alloc(&f->d, 2048, 8), .len = 2048};
        head_ro = vdrv_add(&f->d, RXQ, &ro, 1);
        struct vdrv_buf outside = {.addr = 0xd0000000ull, .len = 2048, .write = true};
        vdrv_add(&f->d, RXQ, &outside, 1);
        post_rx(f, 1, BUF_SMALL);
        make_frame(frame, sizeof(frame), 4);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(id, head_short);
        assert_int_equal(len, 0);
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(id, head_ro);
        assert_int_equal(len, 0);
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(len, 0);
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(len, HDR + sizeof(frame));
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.rx_malformed, 3);
        assert_int_equal(st.rx_packets_count, 1);
        assert_false(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

/* ---- the TAP going away ---- */

static void test_tap_deleted_while_running(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], cfg[VIRTIO_NET_CONFIG_LEN];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        post_rx(f, 4, BUF_SMALL);
        assert_int_equal(link_delete(f->ifindex), 0);
        f->ifindex = 0;
        unsigned irqs = f->d.irqs;
        event_loop_run_once(f->loop, 500); /* EPOLLERR on the TAP */
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.tap_gone, 1);
        vdrv_read_config(&f->d, 0, cfg, sizeof(cfg));
        assert_int_equal(get_le16(cfg + VIRTIO_NET_CFG_STATUS), 0); /* link down */
        assert_true(f->d.irqs > irqs);                              /* config change */
        assert_int_equal(vdrv_read32(&f->d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG,
                         VIRTIO_MMIO_INT_CONFIG);
        /* No busy loop on a dead descriptor. */
        assert_int_equal(event_loop_run_once(f->loop, 100), 0);
        /* The guest keeps transmitting: frames complete, and each is counted as dropped and
         * logged (at most 10 lines a second, then a count of the suppressed ones). */
        struct log_capture logs;
        make_frame(frame, sizeof(frame), 1);
        log_capture_start(&logs);
        for (int i = 0; i < 12; i++) {
                guest_tx(f, NULL, frame, sizeof(frame));
                assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        }
        log_capture_stop();
        st = stats(f);
        assert_int_equal(st.tx_dropped, 12);
        assert_false(virtio_mmio_status(f->t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        int first = log_capture_find(&logs, "net0: tx frame dropped (100 bytes): the TAP is gone");
        assert_true(first >= 0);
        unsigned n = 0;
        for (unsigned i = 0; i < logs.nr; i++)
                n += strstr(logs.lines[i], "tx frame dropped") != NULL;
        assert_int_equal(n, 10);
}

/* The write path notices first (no loop turn between the deletion and the transmit). */
static void test_tap_deleted_noticed_by_write(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        assert_int_equal(link_delete(f->ifindex), 0);
        f->ifindex = 0;
        make_frame(frame, sizeof(frame), 1);
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        struct virtio_net_stats st = stats(f);
        assert_int_equal(st.tap_write_fails, 1);
        assert_int_equal(st.tap_gone, 1);
        assert_int_equal(st.tx_dropped, 1);
        /* The loop's thread takes the dead TAP out of the loop (EPOLLERR), once. */
        assert_int_equal(event_loop_run_once(f->loop, 100), 1);
        assert_int_equal(event_loop_run_once(f->loop, 100), 0);
        assert_int_equal(stats(f).tap_gone, 1);
}

/* ---- rate limiters ---- */

static const struct rate_limiter_config one_op_per_second = {
    .ops = {.size = 1, .refill_time_ms = 1000}};

static int setup_limited(void **state)
{
        struct virtio_net_config c = default_cfg;
        c.rx_limit = &one_op_per_second;
        c.tx_limit = &one_op_per_second;
        return setup_cfg(state, &c);
}

static void test_tx_rate_limited(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[200];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        make_frame(frame, sizeof(frame), 1);
        guest_tx(f, NULL, frame, sizeof(frame));
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_false(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), 100), sizeof(frame));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), 100), -1);
        assert_int_equal(stats(f).tx_rate_limited, 1);
        /* The limiter's timer resumes about a second later. */
        assert_true(wait_used(f, TXQ, &id, &len, 3000));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), 100), sizeof(frame));
}

static void test_rx_rate_limited(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        post_rx(f, 4, BUF_SMALL);
        make_frame(frame, sizeof(frame), 1);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_false(wait_used(f, RXQ, &id, &len, 300));
        assert_int_equal(stats(f).rx_rate_limited, 1);
        assert_true(wait_used(f, RXQ, &id, &len, 3000));
        assert_int_equal(stats(f).rx_packets_count, 2);
}

/* PATCH at runtime: limits apply to a running device, and lifting them resumes at once. */
static void test_set_rate_limiters_at_runtime(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        make_frame(frame, sizeof(frame), 1);
        guest_tx(f, NULL, frame, sizeof(frame));
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len)); /* unlimited */
        virtio_net_set_rate_limiters(f->net, NULL, &one_op_per_second);
        guest_tx(f, NULL, frame, sizeof(frame));
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_false(vdrv_get_used(&f->d, TXQ, &id, &len)); /* limited */
        virtio_net_set_rate_limiters(f->net, NULL, NULL);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len)); /* released by the PATCH itself */
        assert_int_equal(stats(f).tx_packets_count, 4);
}

/* ---- the metadata service on the interface ---- */

#define MMDS_IP 0xa9fea9feu

static struct mmds *test_mmds;

static int setup_mmds(void **state)
{
        struct mmds_params p = {.instance_id = "t"};
        struct virtio_net_config c = default_cfg;

        assert_int_equal(mmds_create(&p, &test_mmds), 0);
        c.tx_limit = &one_op_per_second;
        c.mmds = test_mmds;
        c.mmds_ipv4 = MMDS_IP;
        return setup_cfg(state, &c);
}

static int teardown_mmds(void **state)
{
        int r = teardown(state);

        mmds_destroy(test_mmds);
        return r;
}

static size_t arp_request(uint8_t *f, uint32_t target)
{
        static const uint8_t hdr[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0,
                                      1,    0x08, 0x06, 0,    1,    8,    0, 6, 4, 0, 1};

        memset(f, 0, 42);
        memcpy(f, hdr, sizeof(hdr));
        memcpy(f + 22, guest_mac, 6);
        f[28] = 169, f[29] = 254, f[30] = 0, f[31] = 1;
        f[38] = (uint8_t)(target >> 24), f[39] = (uint8_t)(target >> 16);
        f[40] = (uint8_t)(target >> 8), f[41] = (uint8_t)target;
        return 42;
}

/* ARP for the service's address is answered by the device and never reaches the TAP, nor
 * uses the tx limiter; ARP for another address goes to the TAP as before. */
static void test_mmds_answers_arp_off_the_tap(void **state)
{
        struct fx *f = *state;
        uint8_t frame[64], got[2048];
        uint64_t c[MMDS_COUNTER_COUNT];
        uint16_t id, head;
        uint32_t len;
        int arp;
        size_t n;

        REQUIRE_TAP();
        arp = pkt_open(f->ifindex, 0x0806, false);
        bring_up(f, base_features);
        post_rx(f, 4, BUF_SMALL);
        for (int i = 0; i < 2; i++) {
                n = arp_request(frame, MMDS_IP);
                guest_tx(f, NULL, frame, n);
                assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
                assert_true(wait_used(f, RXQ, &head, &len, WATCHDOG_MS));
                assert_int_equal(len, HDR + 42);
                vdrv_mem_read(&f->d, f->rxbuf[head], got, len);
                assert_memory_equal(got + HDR, guest_mac, 6);
                assert_memory_equal(got + HDR + 6, ((uint8_t[]){6, 1, 0x23, 0x45, 0x67, 1}), 6);
                assert_int_equal(got[HDR + 21], 2); /* an ARP reply */
        }
        assert_int_equal(pkt_recv(arp, got, sizeof(got), 100), -1);
        /* The tx limiter (one frame a second) has not been touched: this one leaves at once. */
        n = arp_request(frame, 0x0a000001);
        guest_tx(f, NULL, frame, n);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(arp, got, sizeof(got), WATCHDOG_MS), 42);
        assert_memory_equal(got, frame, 42);
        assert_int_equal(stats(f).tx_packets_count, 1);
        mmds_get_counters(test_mmds, c);
        assert_int_equal(c[MMDS_RX_ACCEPTED], 2);
        assert_int_equal(c[MMDS_TX_FRAMES], 2);
        close(arp);
}

/* The metadata service on a protected VM (docs/mmds.md, Confidential VMs; CC-3, CC-4): its
 * frames cross the guest's buffers through the device's checked accessor like any other. A
 * request in a private granule is never read (the service takes nothing, a violation is
 * counted); an answer due in a private rx buffer is lost whole (the buffer comes back empty,
 * its bytes unchanged); over shared buffers the service answers as on any VM. */
static void test_cc3_mmds_touches_shared_granules_only(void **state)
{
        struct fx *f = *state;
        struct ownership *own;
        struct hostmem_stats hs;
        uint8_t frame[64], got[4096], pattern[4096];
        uint64_t c[MMDS_COUNTER_COUNT];
        uint16_t id, head, rx_priv;
        uint32_t len;
        gpa_t priv, shared;
        size_t n = arp_request(frame, MMDS_IP);

        REQUIRE_TAP();
        assert_int_equal(ownership_create(f->mem, true, &own), 0);
        assert_int_equal(ownership_make_shared(own, 0, MEM), 0);
        hostmem_set_ownership(f->hm, own);
        bring_up(f, base_features);
        memset(pattern, 0x77, sizeof(pattern));

        /* The frame in a private granule (its virtio-net header in a shared one, so the
         * device goes as far as asking the service): never read, never answered. */
        priv = vdrv_alloc(&f->d, 4096, 4096);
        shared = vdrv_alloc(&f->d, HDR, 8);
        vdrv_mem_write(&f->d, shared, (uint8_t[HDR]){0}, HDR);
        vdrv_mem_write(&f->d, priv, frame, n);
        assert_int_equal(ownership_make_private(own, priv, 4096), 0);
        struct vdrv_buf split[2] = {{.addr = shared, .len = HDR},
                                    {.addr = priv, .len = (uint32_t)n}};
        vdrv_add(&f->d, TXQ, split, 2);
        vdrv_kick(&f->d, TXQ);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        mmds_get_counters(test_mmds, c);
        assert_int_equal(c[MMDS_RX_ACCEPTED], 0);
        hostmem_get_stats(f->hm, &hs);
        assert_true(hs.violations >= 1);

        /* From a shared buffer, with a private rx buffer first in line: the answer is lost
         * whole, the private bytes stay. */
        assert_int_equal(ownership_make_shared(own, priv, 4096), 0);
        vdrv_mem_write(&f->d, priv, pattern, sizeof(pattern));
        assert_int_equal(ownership_make_private(own, priv, 4096), 0);
        rx_priv =
            vdrv_add(&f->d, RXQ, &(struct vdrv_buf){.addr = priv, .len = 4096, .write = true}, 1);
        vdrv_kick(&f->d, RXQ);
        guest_tx(f, NULL, frame, n);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_true(wait_used(f, RXQ, &head, &len, WATCHDOG_MS));
        assert_int_equal(head, rx_priv);
        assert_int_equal(len, 0);
        vdrv_mem_read(&f->d, priv, got, sizeof(got));
        assert_memory_equal(got, pattern, sizeof(pattern));
        mmds_get_counters(test_mmds, c);
        assert_int_equal(c[MMDS_RX_ACCEPTED], 1);

        /* Shared both ways: answered. */
        shared = vdrv_alloc(&f->d, BUF_SMALL, 8);
        head = vdrv_add(&f->d, RXQ,
                        &(struct vdrv_buf){.addr = shared, .len = BUF_SMALL, .write = true}, 1);
        vdrv_kick(&f->d, RXQ);
        guest_tx(f, NULL, frame, n);
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(id, head);
        assert_int_equal(len, HDR + 42);
        vdrv_mem_read(&f->d, shared, got, len);
        assert_int_equal(got[HDR + 21], 2); /* an ARP reply */
        assert_memory_equal(got + HDR + 28, ((uint8_t[]){169, 254, 169, 254}), 4);
        hostmem_set_ownership(f->hm, NULL);
        ownership_destroy(own);
}

/* ---- reset ---- */

static void test_reset_and_reinitialise(void **state)
{
        struct fx *f = *state;
        uint8_t frame[100], got[200];
        uint16_t id;
        uint32_t len;

        REQUIRE_TAP();
        bring_up(f, base_features);
        make_frame(frame, sizeof(frame), 1);
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        event_loop_run_once(f->loop, 500); /* one frame held: no rx buffers */
        vdrv_write32(&f->d, VIRTIO_MMIO_STATUS, 0);
        assert_int_equal(stats(f).rx_dropped, 1);
        /* The reset device does not read the TAP. */
        assert_int_equal(send(f->pkt, frame, sizeof(frame), 0), sizeof(frame));
        assert_int_equal(event_loop_run_once(f->loop, 100), 0);
        bring_up(f, base_features | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
        post_rx(f, 4, BUF_SMALL);
        assert_true(wait_used(f, RXQ, &id, &len, WATCHDOG_MS));
        assert_int_equal(len, HDR + sizeof(frame));
        guest_tx(f, NULL, frame, sizeof(frame));
        assert_true(vdrv_get_used(&f->d, TXQ, &id, &len));
        assert_int_equal(pkt_recv(f->pkt, got, sizeof(got), WATCHDOG_MS), sizeof(frame));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_features_and_config, setup, teardown),
            cmocka_unit_test_setup_teardown(test_mtu_offered_mac_not, setup_mtu_no_mac, teardown),
            cmocka_unit_test_setup_teardown(test_feature_dependencies_refused, setup, teardown),
            cmocka_unit_test(test_missing_tap_is_config_error),
            cmocka_unit_test_setup_teardown(test_not_a_tap_is_config_error, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tx_frame_reaches_tap, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tx_header_split_across_descriptors, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_tx_offload_header_passed_through, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tx_unnegotiated_offload_refused, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tx_malformed_chains, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_frame_without_mrg, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_header_split_across_descriptors, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_rx_too_large_without_mrg_dropped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_mergeable_buffers, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_guest_csum_offload, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_no_guest_csum_gets_full_checksum, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_rx_no_buffers_stops_polling, setup, teardown),
            cmocka_unit_test_setup_teardown(test_rx_malformed_chains, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tap_deleted_while_running, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tap_deleted_noticed_by_write, setup, teardown),
            cmocka_unit_test_setup_teardown(test_tx_rate_limited, setup_limited, teardown),
            cmocka_unit_test_setup_teardown(test_rx_rate_limited, setup_limited, teardown),
            cmocka_unit_test_setup_teardown(test_set_rate_limiters_at_runtime, setup, teardown),
            cmocka_unit_test_setup_teardown(test_reset_and_reinitialise, setup, teardown),
            cmocka_unit_test_setup_teardown(test_mmds_answers_arp_off_the_tap, setup_mmds,
                                            teardown_mmds),
            cmocka_unit_test_setup_teardown(test_cc3_mmds_touches_shared_granules_only, setup_mmds,
                                            teardown_mmds),
        };

        /* A private network namespace: the test's TAP never meets the host's interfaces. */
        if (unshare(CLONE_NEWNET) == 0) {
                have_netns = true;
                write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        } else {
                fprintf(stderr, "test_virtio_net: no network namespace (%s): TAP tests skip\n",
                        strerror(errno));
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
