/*
 * The virtio-net driver side shared by the network scenarios (net.c, mmds.c): bring-up with
 * the MAC, MTU and STATUS features (and MRG_RXBUF unless probe.mrg=0), receive buffers
 * (512 bytes with MRG_RXBUF, a full frame's 1526 without), sending one frame and receiving
 * one (reassembling merged buffers).
 */
#ifndef PROBE_SCENARIOS_NETDEV_H
#define PROBE_SCENARIOS_NETDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "vctx.h"

#define NET_F_MTU       3
#define NET_F_MAC       5
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS    16

#define NET_HDR   12
#define ETH_HDR   14
#define ETH_MAX   1514
#define MRG_BUF   512
#define FULL_BUF  (NET_HDR + ETH_MAX)
#define RX_BUFS   12
#define NET_QSIZE 16

struct netdev {
        struct virtio_dev *d;
        struct virtq rx, tx;
        bool mrg;
        uint8_t mac[6];
        uint32_t buf_size;
        uint8_t *bufs;             /* RX_BUFS buffers of buf_size */
        uint8_t buf_of[NET_QSIZE]; /* rx head -> buffer index */
        uint8_t *hdr;              /* tx header, zeros */
        uint8_t *frame;            /* tx frame */
        uint8_t *got;              /* reassembled rx frame */
};

/* The first virtio-net device, up (interrupt mode unless probe.irq=0), its receive buffers
 * posted; the MAC is the device's, or 02:00:00:00:00:01 when it has none. */
struct netdev *netdev_open(struct vctx *c, const char *who);
/* Sends n->frame (len bytes) and waits until the device has taken it. */
void netdev_send(struct netdev *n, uint32_t len);
/* One frame into n->got (its length), *nbufs the buffers it came in; fails the scenario
 * when nothing comes. */
uint32_t netdev_receive(struct netdev *n, unsigned *nbufs);
/* The device reset, its interrupt off (after checking one came in interrupt mode). */
void netdev_close(struct netdev *n);

#endif
