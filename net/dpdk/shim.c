/* See shim.h. Compiled by net/build.rs with `pkg-config --cflags libdpdk`. */
#define _GNU_SOURCE
#include "shim.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

/* ---- log capture: everything still goes to stderr; the last LOG_TAIL bytes are kept ---- */

#define LOG_TAIL 4096
static char log_buf[LOG_TAIL];
static size_t log_pos;  /* next write position */
static size_t log_used; /* bytes held, at most LOG_TAIL */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t log_write(void *cookie, const char *buf, size_t size) {
    (void)cookie;
    fwrite(buf, 1, size, stderr);
    pthread_mutex_lock(&log_lock);
    for (size_t i = 0; i < size; i++) {
        log_buf[log_pos] = buf[i];
        log_pos = (log_pos + 1) % LOG_TAIL;
    }
    log_used = log_used + size > LOG_TAIL ? LOG_TAIL : log_used + size;
    pthread_mutex_unlock(&log_lock);
    return (ssize_t)size;
}

int bn_log_capture(void) {
    cookie_io_functions_t io = {.read = NULL, .write = log_write, .seek = NULL, .close = NULL};
    FILE *f = fopencookie(NULL, "w", io);
    if (f == NULL)
        return -errno;
    setvbuf(f, NULL, _IOLBF, 0);
    return rte_openlog_stream(f);
}

size_t bn_log_tail(char *out, size_t cap) {
    pthread_mutex_lock(&log_lock);
    size_t n = log_used < cap ? log_used : cap;
    size_t start = (log_pos + LOG_TAIL - n) % LOG_TAIL;
    for (size_t i = 0; i < n; i++)
        out[i] = log_buf[(start + i) % LOG_TAIL];
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* ---- EAL ---- */

int bn_eal_init(int argc, char **argv, int *err) {
    int ret = rte_eal_init(argc, argv);
    *err = ret < 0 ? rte_errno : 0;
    return ret;
}

const char *bn_strerror(int err) { return rte_strerror(err); }

int bn_errno(void) { return rte_errno; }

/* ---- devices ---- */

uint16_t bn_port_count(void) { return rte_eth_dev_count_avail(); }

int bn_port_valid(uint16_t port) { return rte_eth_dev_is_valid_port(port); }

int bn_port_info(uint16_t port, char *driver, size_t driver_cap, uint8_t mac[6],
                 uint16_t *max_rxq, uint16_t *max_txq, uint16_t *max_rx_desc) {
    struct rte_eth_dev_info info;
    int ret = rte_eth_dev_info_get(port, &info);
    if (ret != 0)
        return ret;
    snprintf(driver, driver_cap, "%s", info.driver_name ? info.driver_name : "?");
    struct rte_ether_addr addr;
    ret = rte_eth_macaddr_get(port, &addr);
    if (ret != 0)
        return ret;
    memcpy(mac, addr.addr_bytes, 6);
    *max_rxq = info.max_rx_queues;
    *max_txq = info.max_tx_queues;
    *max_rx_desc = info.rx_desc_lim.nb_max;
    return 0;
}

int bn_vdev_attach(const char *name, const char *args, uint16_t *port) {
    int ret = rte_vdev_init(name, args);
    if (ret != 0)
        return ret < 0 ? ret : -ENODEV;
    return rte_eth_dev_get_port_by_name(name, port);
}

/* ---- port setup ---- */

struct rte_mempool *bn_pool_create(const char *name, unsigned n, int socket) {
    unsigned cache = n / 2 < 256 ? n / 2 : 256;
    if (n < 64)
        cache = 0;
    return rte_pktmbuf_pool_create(name, n, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
}

struct rte_mempool *bn_pool_lookup(const char *name) { return rte_mempool_lookup(name); }

unsigned bn_pool_avail(const struct rte_mempool *pool) { return rte_mempool_avail_count(pool); }

unsigned bn_pool_size(const struct rte_mempool *pool) { return pool->size; }

int bn_port_socket(uint16_t port) { return rte_eth_dev_socket_id(port); }

int bn_port_setup(uint16_t port, uint16_t nb_rxq, uint16_t nb_rx_desc, uint16_t nb_tx_desc,
                  struct rte_mempool *const *pools, const char **what) {
    struct rte_eth_dev_info info;
    int ret;
    *what = "rte_eth_dev_info_get";
    if ((ret = rte_eth_dev_info_get(port, &info)) != 0)
        return ret;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    if (nb_rxq > 1) {
        uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
        if (hf != 0) {
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
        }
    }
    *what = "rte_eth_dev_configure";
    if ((ret = rte_eth_dev_configure(port, nb_rxq, 1, &conf)) != 0)
        return ret;
    *what = "rte_eth_dev_adjust_nb_rx_tx_desc";
    if ((ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rx_desc, &nb_tx_desc)) != 0)
        return ret;
    int socket = rte_eth_dev_socket_id(port);
    *what = "rte_eth_rx_queue_setup";
    for (uint16_t q = 0; q < nb_rxq; q++)
        if ((ret = rte_eth_rx_queue_setup(port, q, nb_rx_desc, socket, NULL, pools[q])) != 0)
            return ret;
    *what = "rte_eth_tx_queue_setup";
    if ((ret = rte_eth_tx_queue_setup(port, 0, nb_tx_desc, socket, NULL)) != 0)
        return ret;
    *what = "rte_eth_promiscuous_disable";
    ret = rte_eth_promiscuous_disable(port);
    if (ret != 0 && ret != -ENOTSUP)
        return ret;
    *what = "rte_eth_dev_start";
    return rte_eth_dev_start(port);
}

int bn_port_stop(uint16_t port) { return rte_eth_dev_stop(port); }

/* ---- fast path ---- */

uint16_t bn_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **mbufs,
                     const uint8_t **data, uint32_t *len, uint16_t n) {
    uint16_t got = rte_eth_rx_burst(port, queue, mbufs, n);
    for (uint16_t i = 0; i < got; i++) {
        struct rte_mbuf *m = mbufs[i];
        data[i] = rte_pktmbuf_mtod(m, const uint8_t *);
        len[i] = m->nb_segs == 1 ? m->data_len : UINT32_MAX;
    }
    return got;
}

void bn_free_bulk(struct rte_mbuf **mbufs, unsigned n) {
    if (n > 0)
        rte_pktmbuf_free_bulk(mbufs, n);
}

static struct rte_mbuf *copy_into_mbuf(struct rte_mempool *pool, const uint8_t *data,
                                       uint16_t len) {
    struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (m == NULL)
        return NULL;
    char *p = rte_pktmbuf_append(m, len);
    if (p == NULL) {
        rte_pktmbuf_free(m);
        return NULL;
    }
    memcpy(p, data, len);
    return m;
}

int bn_tx_copy(uint16_t port, uint16_t queue, struct rte_mempool *pool, const uint8_t *data,
               uint16_t len) {
    struct rte_mbuf *m = copy_into_mbuf(pool, data, len);
    if (m == NULL)
        return 0;
    if (rte_eth_tx_burst(port, queue, &m, 1) == 1)
        return 1;
    rte_pktmbuf_free(m);
    return 0;
}

/* ---- rings ---- */

struct rte_ring *bn_ring_create(const char *name, unsigned count, int socket) {
    return rte_ring_create(name, count, socket, RING_F_EXACT_SZ);
}

int bn_ring_port(const char *name, struct rte_ring *rx, struct rte_ring *tx, uint16_t *port) {
    int ret = rte_eth_from_rings(name, &rx, 1, &tx, 1, (unsigned)rte_socket_id());
    if (ret < 0)
        return -rte_errno;
    *port = (uint16_t)ret;
    return 0;
}

unsigned bn_ring_count(const struct rte_ring *ring) { return rte_ring_count(ring); }

unsigned bn_ring_inject(struct rte_ring *ring, struct rte_mempool *pool,
                        const uint8_t *const *data, const uint16_t *len, unsigned n) {
    struct rte_mbuf *m[64];
    unsigned done = 0;
    while (done < n) {
        unsigned chunk = n - done < 64 ? n - done : 64;
        unsigned made = 0;
        for (; made < chunk; made++) {
            m[made] = copy_into_mbuf(pool, data[done + made], len[done + made]);
            if (m[made] == NULL)
                break;
        }
        unsigned put = rte_ring_enqueue_burst(ring, (void *const *)m, made, NULL);
        if (put < made)
            rte_pktmbuf_free_bulk(m + put, made - put);
        done += put;
        if (put < chunk)
            break;
    }
    return done;
}

int bn_ring_take(struct rte_ring *ring, uint8_t *out, size_t cap) {
    void *obj = NULL;
    if (rte_ring_dequeue(ring, &obj) != 0)
        return -1;
    struct rte_mbuf *m = obj;
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const void *p = rte_pktmbuf_read(m, 0, len < cap ? len : (uint32_t)cap, out);
    if (p != NULL && p != out)
        memcpy(out, p, len < cap ? len : cap);
    rte_pktmbuf_free(m);
    return (int)len;
}
