/*
 * lwIP as a third server in the bench's realnet section: discard (9) and chargen (19) on a TAP,
 * so that tapstack can be compared with lwIP on the same relayed path as with the kernel.
 *
 *   lwip-peer TAP MAC ADDRESS     e.g. lwip-peer lw0 02:00:00:00:00:01 192.168.69.1
 *
 * Built by the bench at run time against the distribution's liblwip (Debian's liblwip-dev: lwIP 2.1.3,
 * NO_SYS 0, core locking, TCP_WND 0xFFFF, TCP_MSS 1460; its options are compiled into the library,
 * so this file changes none). The package has no usable TAP driver for this (its tapif configures
 * the interface itself), so the netif here is a minimal one: a thread reading frames from
 * /dev/net/tun (IFF_TAP | IFF_NO_PI) into tcpip_input, and linkoutput writing frames back.
 *
 * The services use the raw API inside the tcpip thread: no per-segment message passing between
 * threads as with netconn or sockets, so lwIP's TCP is what limits the rate. chargen hands lwIP a
 * static pattern without copying (tcp_write without TCP_WRITE_FLAG_COPY) and refills its send buffer
 * from the sent callback; discard opens the window again as soon as data arrives.
 *
 * Prints "ready: ..." on stderr once serving; runs until it is signalled (the bench stops it by PID)
 * or its TAP goes away.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#include "netif/ethernet.h"

#define FRAME_MAX 1514

/* chargen's classic 72-character lines: 95 lines before the pattern repeats. */
#define LINE 74
#define PERIOD (95 * LINE)
/* A period plus the largest single write, so that any write starting inside the period is
 * contiguous. */
static char pattern[PERIOD + 0x10000];

static int tap_fd = -1;
static u8_t mac[6];
static struct netif tap_netif;

static err_t tap_linkoutput(struct netif *netif, struct pbuf *p)
{
    char frame[FRAME_MAX];
    (void)netif;
    if (p->tot_len > sizeof frame)
        return ERR_BUF;
    u16_t n = pbuf_copy_partial(p, frame, p->tot_len, 0);
    /* A TAP write does not block; a frame the kernel cannot queue is lost, as on a wire. */
    if (write(tap_fd, frame, n) != n)
        return ERR_IF;
    return ERR_OK;
}

static err_t tap_netif_init(struct netif *netif)
{
    netif->name[0] = 'l';
    netif->name[1] = 'w';
    netif->output = etharp_output;
    netif->linkoutput = tap_linkoutput;
    netif->mtu = 1500;
    netif->hwaddr_len = 6;
    memcpy(netif->hwaddr, mac, 6);
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
    return ERR_OK;
}

static void chargen_fill(struct tcp_pcb *pcb)
{
    uintptr_t off = (uintptr_t)pcb->callback_arg;
    for (;;) {
        u16_t n = tcp_sndbuf(pcb);
        if (n == 0 || tcp_sndqueuelen(pcb) >= TCP_SND_QUEUELEN - 2)
            break;
        if (tcp_write(pcb, pattern + off, n, 0) != ERR_OK)
            break;
        off = (off + n) % PERIOD;
    }
    tcp_arg(pcb, (void *)off);
    tcp_output(pcb);
}

static err_t chargen_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    (void)arg;
    (void)len;
    chargen_fill(pcb);
    return ERR_OK;
}

/* Both services: whatever arrives is consumed; the peer's FIN closes our side too. */
static err_t discard_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    (void)arg;
    (void)err;
    if (p == NULL) {
        tcp_arg(pcb, NULL);
        tcp_sent(pcb, NULL);
        tcp_recv(pcb, NULL);
        if (tcp_close(pcb) != ERR_OK)
            tcp_abort(pcb);
        return ERR_OK;
    }
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
    return ERR_OK;
}

static err_t accept_cb(void *arg, struct tcp_pcb *pcb, err_t err)
{
    int chargen = arg != NULL;
    if (err != ERR_OK || pcb == NULL)
        return ERR_VAL;
    tcp_arg(pcb, NULL);
    tcp_recv(pcb, discard_recv);
    if (chargen) {
        tcp_nagle_disable(pcb);
        tcp_sent(pcb, chargen_sent);
        chargen_fill(pcb);
    }
    return ERR_OK;
}

static void listen_on(u16_t port, int chargen)
{
    struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    if (pcb == NULL || tcp_bind(pcb, IP4_ADDR_ANY, port) != ERR_OK) {
        fprintf(stderr, "lwip-peer: cannot bind port %u\n", port);
        exit(1);
    }
    pcb = tcp_listen(pcb);
    if (pcb == NULL) {
        fprintf(stderr, "lwip-peer: cannot listen on port %u\n", port);
        exit(1);
    }
    tcp_arg(pcb, chargen ? (void *)1 : NULL);
    tcp_accept(pcb, accept_cb);
}

static int tap_open(const char *name)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    ip4_addr_t addr, mask, gw;
    if (argc != 4 || sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2],
                            &mac[3], &mac[4], &mac[5]) != 6 ||
        !ip4addr_aton(argv[3], &addr)) {
        fprintf(stderr, "usage: %s TAP MAC IPV4  (e.g. lw0 02:00:00:00:00:01 192.168.69.1)\n", argv[0]);
        return 2;
    }
    tap_fd = tap_open(argv[1]);
    if (tap_fd < 0) {
        fprintf(stderr, "lwip-peer: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < sizeof pattern; i++) {
        size_t line = (i / LINE) % 95, col = i % LINE;
        pattern[i] = col == 72 ? '\r' : col == 73 ? '\n' : (char)(' ' + (line + col) % 95);
    }

    tcpip_init(NULL, NULL);
    IP4_ADDR(&mask, 255, 255, 255, 0);
    ip4_addr_set_zero(&gw);
    LOCK_TCPIP_CORE();
    netif_add(&tap_netif, &addr, &mask, &gw, NULL, tap_netif_init, tcpip_input);
    netif_set_default(&tap_netif);
    netif_set_up(&tap_netif);
    listen_on(9, 0);
    listen_on(19, 1);
    UNLOCK_TCPIP_CORE();
    fprintf(stderr, "ready: lwIP %s (raw API), discard :9 and chargen :19 on %s, %s\n",
            LWIP_VERSION_STRING, argv[1], argv[3]);

    for (;;) {
        char frame[FRAME_MAX + 4];
        ssize_t n = read(tap_fd, frame, sizeof frame);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "lwip-peer: reading %s: %s\n", argv[1], n < 0 ? strerror(errno) : "closed");
            return 1;
        }
        /* PBUF_RAM, not PBUF_POOL: Debian's liblwip 2.1.3 allocates pool pbufs smaller than the
         * PBUF_POOL_BUFSIZE it fills them to (AddressSanitizer: a 1514-byte frame into 616 bytes). */
        struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
        if (p == NULL)
            continue;
        pbuf_take(p, frame, (u16_t)n);
        /* tcpip_input queues the frame for the tcpip thread; when its mailbox is full the frame is
         * lost, as a NIC's ring overflowing would lose it. Calling ethernet_input here under
         * LOCK_TCPIP_CORE instead measured no faster (realnet 5 ms, no-offload, medians of 3 in two
         * runs: 44.4/46.3 and 43.1/45.2 Mbit/s rx/tx against 44.5/48.8 and 43.8/49.2 this way): at
         * 64 KiB a round trip the window, not the hand-off, sets the rate. */
        if (tap_netif.input(p, &tap_netif) != ERR_OK)
            pbuf_free(p);
    }
}
