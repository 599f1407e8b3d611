/* Bastion's C shim over DPDK 22.11: the `static inline` fast-path functions (burst RX/TX,
 * mbuf data access and allocation) and a few setup sequences, as plain exported functions the
 * Rust side (net/src/dpdk.rs) declares. Nothing here keeps state beyond the log capture. */
#ifndef BASTION_DPDK_SHIM_H
#define BASTION_DPDK_SHIM_H

#include <stddef.h>
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

/* Logging: DPDK's log goes to stderr and its last bytes are kept for error messages. */
int bn_log_capture(void);
size_t bn_log_tail(char *out, size_t cap);

/* EAL. Returns rte_eal_init's result; `*err` gets rte_errno on failure. */
int bn_eal_init(int argc, char **argv, int *err);
const char *bn_strerror(int err);
int bn_errno(void);

/* Devices. */
uint16_t bn_port_count(void);
int bn_port_valid(uint16_t port);
int bn_port_info(uint16_t port, char *driver, size_t driver_cap, uint8_t mac[6],
                 uint16_t *max_rxq, uint16_t *max_txq, uint16_t *max_rx_desc);
int bn_vdev_attach(const char *name, const char *args, uint16_t *port);

/* Port setup: `nb_rxq` RX queues each with its pool, one TX queue (using pools[0]). */
struct rte_mempool *bn_pool_create(const char *name, unsigned n, int socket);
struct rte_mempool *bn_pool_lookup(const char *name);
unsigned bn_pool_avail(const struct rte_mempool *pool);
unsigned bn_pool_size(const struct rte_mempool *pool);
int bn_port_socket(uint16_t port);
/* Returns 0, or a negative errno with `*what` naming the step that failed. */
int bn_port_setup(uint16_t port, uint16_t nb_rxq, uint16_t nb_rx_desc, uint16_t nb_tx_desc,
                  struct rte_mempool *const *pools, const char **what);
int bn_port_stop(uint16_t port);

/* Fast path. `bn_rx_burst` also fills each mbuf's data pointer and length (or length
 * UINT32_MAX for a chained multi-segment mbuf). */
uint16_t bn_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **mbufs,
                     const uint8_t **data, uint32_t *len, uint16_t n);
void bn_free_bulk(struct rte_mbuf **mbufs, unsigned n);
/* Copies `len` bytes into a fresh mbuf from `pool` and sends it; 1 if sent, else 0. */
int bn_tx_copy(uint16_t port, uint16_t queue, struct rte_mempool *pool, const uint8_t *data,
               uint16_t len);

/* Rings (tests, benchmarks): a ring-backed port and frame injection/draining. */
struct rte_ring *bn_ring_create(const char *name, unsigned count, int socket);
int bn_ring_port(const char *name, struct rte_ring *rx, struct rte_ring *tx, uint16_t *port);
unsigned bn_ring_count(const struct rte_ring *ring);
/* Copies each of `n` frames (`data[i]`, `len[i]`) into a fresh mbuf and enqueues them;
 * returns how many were enqueued (mbufs that did not fit are freed). */
unsigned bn_ring_inject(struct rte_ring *ring, struct rte_mempool *pool,
                        const uint8_t *const *data, const uint16_t *len, unsigned n);
/* Dequeues one mbuf and copies up to `cap` bytes of it into `out`; returns its length, or -1
 * when the ring is empty. The mbuf is freed. */
int bn_ring_take(struct rte_ring *ring, uint8_t *out, size_t cap);

#endif
