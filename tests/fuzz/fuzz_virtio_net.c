/*
 * virtio-net (net.c) through the hostile driver of virtio_harness.h, on a real TAP in a
 * private network namespace (the target needs CAP_NET_ADMIN; without it every input is
 * skipped, which it says once). Frames toward the guest are injected with a packet socket
 * bound to the TAP; what the guest transmits leaves through the TAP.
 *
 * The device is created once and outlives the inputs (a TAP's carrier takes up to a second
 * to settle after it is attached): each input gets a fresh guest memory and transport,
 * whose destruction resets the device. Device operations: inject a frame (up to 9000
 * bytes), replace the rate limiters, read the statistics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "virtio_harness.h"

#define TAP "vmmfuzz0"

static struct virtio_net *net;
static int pkt = -1, ifindex;

static void write_file(const char *path, const char *s)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd >= 0) {
                (void)!write(fd, s, strlen(s));
                close(fd);
        }
}

/* A persistent TAP with a 9000-byte MTU, up. */
static int tap_create(void)
{
        struct ifreq ifr = {0};
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), s;

        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) || ioctl(fd, TUNSETPERSIST, 1))
                return -1;
        close(fd);
        s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifr.ifr_mtu = 9000;
        if (s < 0 || ioctl(s, SIOCSIFMTU, &ifr) || ioctl(s, SIOCGIFFLAGS, &ifr))
                return -1;
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr))
                return -1;
        close(s);
        return (int)if_nametoindex(TAP);
}

/* Frames are dropped until linkwatch has seen the carrier the device raised. */
static void wait_running(void)
{
        struct ifreq ifr = {0};
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP);
        for (int i = 0; i < 1000; i++) {
                if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_RUNNING))
                        break;
                usleep(2000);
        }
        close(s);
        usleep(10000);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct virtio_net_config c = {.name = "net0",
                                      .tap_name = TAP,
                                      .has_mac = true,
                                      .mac = {2, 0, 0, 0, 0, 1},
                                      .mtu = 1500};
        struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
        struct error err = {0};

        (void)argc;
        (void)argv;
        fz_quiet_log();
        if (unshare(CLONE_NEWNET)) {
                fprintf(stderr,
                        "fuzz_virtio_net: no private network namespace (%s): every input "
                        "is skipped\n",
                        strerror(errno));
                return 0;
        }
        write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        ifindex = tap_create();
        c.loop = vh_event_loop();
        if (ifindex <= 0 || virtio_net_create(&c, &err, &net)) {
                fprintf(stderr, "fuzz_virtio_net: cannot set up the TAP: %s\n",
                        err.msg[0] ? err.msg : strerror(errno));
                exit(1);
        }
        pkt = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sll.sll_ifindex = ifindex;
        if (pkt < 0 || bind(pkt, (struct sockaddr *)&sll, sizeof(sll))) {
                perror("fuzz_virtio_net: packet socket");
                exit(1);
        }
        wait_running();
        return 0;
}

static struct virtio_device *net_create(struct vh *h, struct fz *f)
{
        (void)h;
        (void)f;
        return net ? virtio_net_device(net) : NULL;
}

static void limiter(struct fz *f, struct rate_limiter_config *rl)
{
        uint8_t a = fz_u8(f), b = fz_u8(f);

        memset(rl, 0, sizeof(*rl));
        rl->bandwidth.size = (uint64_t)a * 256;
        rl->bandwidth.refill_time_ms = a ? 1 : 0;
        rl->ops.size = b % 8;
        rl->ops.refill_time_ms = b % 8 ? 1 : 0;
}

static void net_op(struct vh *h, struct fz *f)
{
        static uint8_t frame[9014];
        struct rate_limiter_config rx, tx;
        struct virtio_net_stats st;
        size_t len;
        const uint8_t *b;

        (void)h;
        switch (fz_u8(f) % 3) {
        case 0: /* a frame from the wire: broadcast, then the input's bytes */
                b = fz_bytes(f, sizeof(frame) - 12, &len);
                memset(frame, 0xff, 6);
                memcpy(frame + 6, (uint8_t[]){2, 0, 0, 0, 0, 2}, 6);
                memcpy(frame + 12, b, len);
                if (len < 2)
                        memset(frame + 12 + len, 0x88, 2 - len);
                (void)!send(pkt, frame, 12 + (len < 2 ? 2 : len), MSG_DONTWAIT);
                break;
        case 1:
                limiter(f, &rx);
                limiter(f, &tx);
                virtio_net_set_rate_limiters(net, fz_bool(f) ? &rx : NULL, fz_bool(f) ? &tx : NULL);
                break;
        case 2:
                virtio_net_get_stats(net, &st);
                break;
        }
}

static void net_destroy(struct vh *h)
{
        (void)h; /* the device stays for the next input */
}

static const struct vh_device dev = {
    .name = "net0",
    .nr_queues = 2,
    .create = net_create,
    .destroy = net_destroy,
    .op = net_op,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return vh_run(&dev, data, size);
}
