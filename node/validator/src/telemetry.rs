//! The metrics tile: turns the pipeline's tile counters, the mempool and the application's
//! running totals into Prometheus metrics (served by [`crate::metrics::serve`]), once per
//! status tick.
//!
//! Tiles and where their numbers come from:
//!
//! | tile | thread | busy |
//! | --- | --- | --- |
//! | net, verify, admission | the pipeline's pinned threads | measured by the tile |
//! | sequencer | consensus actor, building a block from the mempool | time in `take` |
//! | consensus | consensus actor, checking proposals' signatures | time in the check |
//! | execution | the execution tile's thread (`pin_execution`), executing proposals; the consensus actor for finalized blocks it had not executed | time in `apply_block` |
//! | storage | the storage tile's thread (`pin_storage`), logging and group commits | time in its jobs |
//!
//! Busy is the share of wall time in the last interval.

use crate::metrics::{Counter, Gauge, Histogram, Registry};
use crate::pipeline::{DropReason, Mempool, Pipeline, TileSnapshot};
use bastion_consensus::Totals;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Finality histogram bounds, ms.
/// Bucket bounds of `bastion_finality_seconds` (seconds, Prometheus's base unit): 2 ms to 5 s.
const FINALITY_BOUNDS_S: [f64; 14] =
    [0.002, 0.005, 0.010, 0.015, 0.020, 0.030, 0.050, 0.075, 0.100, 0.150, 0.250, 0.500, 1.0, 5.0];

struct TileMetrics {
    busy: Arc<Gauge>,
    frames_in: Arc<Counter>,
    frames_out: Arc<Counter>,
    dropped: Vec<Arc<Counter>>,
    overruns: Arc<Counter>,
}

impl TileMetrics {
    fn new(reg: &Registry, tile: &'static str) -> TileMetrics {
        let l = [("tile", tile)];
        TileMetrics {
            busy: reg.gauge(
                "bastion_tile_busy_ratio",
                "Share of the last interval the tile spent working",
                &l,
            ),
            frames_in: reg.counter("bastion_tile_in_total", "Frames (or transactions) into the tile", &l),
            frames_out: reg.counter("bastion_tile_out_total", "Frames (or transactions) out of the tile", &l),
            dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    reg.counter(
                        "bastion_tile_dropped_total",
                        "Frames the tile dropped, by reason",
                        &[("tile", tile), ("reason", r.as_str())],
                    )
                })
                .collect(),
            overruns: reg.counter(
                "bastion_tile_overruns_total",
                "Tile iterations that ran over their time budget",
                &l,
            ),
        }
    }
}

/// Application-side counters derived from [`Totals`].
struct AppMetrics {
    busy: HashMap<&'static str, Arc<Gauge>>,
    seq_out: Arc<Counter>,
    exec_in: Arc<Counter>,
    txs: Arc<Counter>,
    orders: Arc<Counter>,
    deposits: Arc<Counter>,
    rejected: Arc<Counter>,
    fills: Arc<Counter>,
    liquidations: Arc<Counter>,
    adl: Arc<Counter>,
    fund: Arc<Gauge>,
    blocks: Arc<Counter>,
    sigs_checked: Arc<Counter>,
    sigs_verified: Arc<Counter>,
    /// Peers blocked, one counter per reason in `PeerBlocks::by_reason` order.
    blocked: Vec<Arc<Counter>>,
    /// The block channel's other defences (issue 15): counters with how to read each.
    counters: Vec<(ReadTotal, Arc<Counter>)>,
    unsolicited_blocks: Arc<Gauge>,
    unsolicited_bytes: Arc<Gauge>,
    /// The bridge's source tip height and how far crediting lags it.
    source_height: Arc<Gauge>,
    credit_lag: Arc<Gauge>,
    credited_amount: Arc<Gauge>,
}

/// How to read one running count from the application's `Totals`.
type ReadTotal = fn(&Totals) -> u64;

/// The exporter: registry handles and the previous snapshot of everything it turns into deltas.
pub struct Telemetry {
    /// For the oracle's labelled counters, registered as their labels first appear.
    reg: Arc<Registry>,
    /// Peers' observations refused, by reason: the counter and the total it last saw.
    observations_rejected: HashMap<&'static str, (Arc<Counter>, u64)>,
    /// This validator's source errors, by (source, kind): the counter and its last total.
    source_errors: HashMap<(String, &'static str), (Arc<Counter>, u64)>,
    /// Underlyings left out of observations (too few fresh sources), and the last total.
    prices_missing: (Arc<Counter>, u64),
    tiles: Vec<TileMetrics>,
    prev_tiles: Vec<TileSnapshot>,
    app: AppMetrics,
    prev_totals: Totals,
    height: Arc<Gauge>,
    p50: Arc<Gauge>,
    p99: Arc<Gauge>,
    finality: Arc<Histogram>,
    mempool: Arc<Gauge>,
    stale: Arc<Gauge>,
    ingress: [Arc<Gauge>; 7],
    /// `bastion_ingress_backend{backend}` = 1 for the backend that opened (kept registered).
    _backend: Option<Arc<Gauge>>,
    ring_depth: Vec<(Arc<Gauge>, Arc<Gauge>)>,
    halted: Arc<Gauge>,
    last: Instant,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("tiles", &self.tiles.len()).finish()
    }
}

impl Telemetry {
    /// Registers every metric; `pipeline` names the tiles it has (none with a synthetic source).
    pub fn new(reg: &Arc<Registry>, pipeline: Option<&Pipeline>) -> Telemetry {
        let (tiles, prev_tiles, ring_depth) = match pipeline {
            Some(p) => (
                p.stats().iter().map(|s| TileMetrics::new(reg, s.name)).collect(),
                p.stats().iter().map(|s| s.snapshot()).collect(),
                p.ring_depths()
                    .iter()
                    .map(|(name, _, capacity, _)| {
                        ring_capacity(reg, name, *capacity);
                        (
                            reg.gauge("bastion_ring_depth", "Frames waiting in the ring", &[("ring", name)]),
                            reg.gauge(
                                "bastion_ring_high_water",
                                "Most frames ever waiting in the ring",
                                &[("ring", name)],
                            ),
                        )
                    })
                    .collect(),
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let busy = ["sequencer", "consensus", "execution", "storage"]
            .into_iter()
            .map(|t| {
                (
                    t,
                    reg.gauge(
                        "bastion_tile_busy_ratio",
                        "Share of the last interval the tile spent working",
                        &[("tile", t)],
                    ),
                )
            })
            .collect();
        let app = AppMetrics {
            busy,
            seq_out: reg.counter(
                "bastion_tile_out_total",
                "Frames (or transactions) out of the tile",
                &[("tile", "sequencer")],
            ),
            exec_in: reg.counter(
                "bastion_tile_in_total",
                "Frames (or transactions) into the tile",
                &[("tile", "execution")],
            ),
            txs: reg.counter("bastion_txs_finalized_total", "Transactions in finalized blocks", &[]),
            orders: reg.counter(
                "bastion_orders_finalized_total",
                "Order-book transactions (place, cancel, replace) in finalized blocks",
                &[],
            ),
            deposits: reg.counter(
                "bastion_deposits_finalized_total",
                "Deposits credited by finalized blocks (authority deposits and attested bridge deposits)",
                &[],
            ),
            rejected: reg.counter(
                "bastion_orders_rejected_total",
                "Finalized transactions the exchange rejected",
                &[],
            ),
            fills: reg.counter("bastion_fills_total", "Fills in finalized blocks", &[]),
            liquidations: reg.counter("bastion_liquidations_total", "Liquidations in finalized blocks", &[]),
            adl: reg.counter("bastion_adl_total", "Auto-deleveraging events in finalized blocks", &[]),
            fund: reg.gauge(
                "bastion_insurance_fund_micros",
                "Insurance fund after the last finalized block",
                &[],
            ),
            sigs_checked: reg.counter(
                "bastion_proposal_signatures_total",
                "Signatures in peers' proposals checked",
                &[],
            ),
            sigs_verified: reg.counter(
                "bastion_proposal_signatures_verified_total",
                "Of those, verified by the consensus check (the rest the ingress had verified)",
                &[],
            ),
            blocks: reg.counter(
                "bastion_blocks_finalized_total",
                "Blocks finalized and executed since start",
                &[],
            ),
            blocked: bastion_consensus::PeerBlocks::default()
                .by_reason()
                .iter()
                .map(|(reason, _)| {
                    reg.counter(
                        "bastion_peers_blocked_total",
                        "Validator peers blocked on the block channel, by reason",
                        &[("reason", reason)],
                    )
                })
                .collect(),
            counters: {
                let plain: [(&str, &str, ReadTotal); 21] = [
                    (
                        "bastion_bridge_deposits_seen_total",
                        "Deposits this validator's source showed with the confirmation depth",
                        |t| t.bridge.deposits_seen,
                    ),
                    ("bastion_bridge_deposits_attested_total", "Deposits this validator attested (signed)", |t| {
                        t.bridge.deposits_attested
                    }),
                    (
                        "bastion_bridge_deposits_credited_total",
                        "Deposits credited by finalized blocks (2/3 of stake's attestations)",
                        |t| t.bridge.deposits_credited,
                    ),
                    ("bastion_bridge_withdrawals_total", "Withdrawals executed (vouchers created)", |t| {
                        t.bridge.withdrawals
                    }),
                    ("bastion_bridge_vouchers_signed_total", "Withdrawal vouchers this validator signed", |t| {
                        t.bridge.vouchers_signed
                    }),
                    (
                        "bastion_bridge_vouchers_completed_total",
                        "Vouchers whose 2/3-of-stake signatures a finalized block carried (payable on the source)",
                        |t| t.bridge.vouchers_completed,
                    ),
                    (
                        "bastion_bridge_items_received_total",
                        "Peers' attestations and voucher signatures accepted into the pool",
                        |t| t.bridge.items_received,
                    ),
                    (
                        "bastion_bridge_items_dropped_total",
                        "Peers' bridge items dropped without blame (already credited or signed, unknown voucher, pool share full)",
                        |t| t.bridge.items_dropped,
                    ),
                    (
                        "bastion_bridge_items_refused_total",
                        "Bridge messages refused (their sender was blocked)",
                        |t| t.bridge.items_refused,
                    ),
                    (
                        "bastion_bridge_conflicts_total",
                        "Conflicting attestations seen: one validator attesting one source id with two contents (evidence)",
                        |t| t.bridge.conflicts,
                    ),
                    (
                        "bastion_observations_signed_total",
                        "Price observations this validator signed and sent",
                        |t| t.observations_signed,
                    ),
                    (
                        "bastion_observations_received_total",
                        "Peers' observations accepted into the pool",
                        |t| t.observations_received,
                    ),
                    ("bastion_observations_included_total", "Signed observations in finalized blocks", |t| {
                        t.observations_included
                    }),
                    (
                        "bastion_oracle_disagreements_total",
                        "Finalized indices more than 2% from this validator's own observation (never a reason to refuse a block)",
                        |t| t.oracle_disagreements,
                    ),
                    (
                        "bastion_observation_evidence_total",
                        "Double observations seen: two different signed observations of one validator for one height",
                        |t| t.observation_evidence,
                    ),
                    (
                        "bastion_unsolicited_evicted_total",
                        "Unsolicited blocks evicted from a peer's bounded account",
                        |t| t.unsolicited_evicted,
                    ),
                    ("bastion_backfill_served_total", "Blocks served to peers' backfill requests", |t| {
                        t.backfill_served
                    }),
                    (
                        "bastion_backfill_dropped_total",
                        "Backfill range requests dropped (per-peer rate or full queue)",
                        |t| t.backfill_dropped,
                    ),
                    (
                        "bastion_proposals_refused_timestamp_total",
                        "Proposals refused because their time was outside this validator's window",
                        |t| t.refused_timestamp,
                    ),
                    ("bastion_evidence_total", "Pieces of evidence the engine proved (kept or not)", |t| {
                        t.evidence_seen
                    }),
                    ("bastion_evidence_dropped_total", "Evidence lines not written (queue full)", |t| {
                        t.evidence_dropped
                    }),
                ];
                plain.into_iter().map(|(name, help, read)| (read, reg.counter(name, help, &[]))).collect()
            },
            unsolicited_blocks: reg.gauge(
                "bastion_unsolicited_blocks",
                "Blocks held that nobody asked for (bounded per peer)",
                &[],
            ),
            unsolicited_bytes: reg.gauge(
                "bastion_unsolicited_bytes",
                "Bytes of blocks held that nobody asked for (bounded per peer)",
                &[],
            ),
            source_height: reg.gauge(
                "bastion_bridge_source_height",
                "The bridge's source chain tip, as this validator's watcher last read it",
                &[],
            ),
            credit_lag: reg.gauge(
                "bastion_bridge_credit_lag_blocks",
                "Source blocks between the source's tip and the oldest deposit this validator saw that is not credited yet",
                &[],
            ),
            credited_amount: reg.gauge(
                "bastion_bridge_credited_micros",
                "Amount credited by bridge deposits since start (micro-units, all assets)",
                &[],
            ),
        };
        Telemetry {
            reg: Arc::clone(reg),
            observations_rejected: HashMap::new(),
            source_errors: HashMap::new(),
            prices_missing: (
                reg.counter(
                    "bastion_oracle_prices_missing_total",
                    "Underlyings left out of this validator's observations for lack of fresh, agreeing sources",
                    &[],
                ),
                0,
            ),
            tiles,
            prev_tiles,
            app,
            prev_totals: Totals::default(),
            height: reg.gauge("bastion_finalized_height", "Highest finalized and durable height", &[]),
            p50: reg.gauge(
                "bastion_finality_p50_seconds",
                "Finality of own proposals since start, p50 (seconds)",
                &[],
            ),
            p99: reg.gauge(
                "bastion_finality_p99_seconds",
                "Finality of own proposals since start, p99 (seconds)",
                &[],
            ),
            finality: reg.histogram(
                "bastion_finality_seconds",
                "Finality of own proposals (proposal built to finalization seen)",
                &[],
                &FINALITY_BOUNDS_S,
            ),
            mempool: reg.gauge("bastion_mempool_size", "Admitted transactions waiting for a block", &[]),
            ingress: [
                reg.gauge(
                    "bastion_ingress_datagrams",
                    "Datagrams the ingress socket delivered since start",
                    &[],
                ),
                reg.gauge("bastion_ingress_oversized", "Datagrams over 1232 bytes the ingress dropped", &[]),
                reg.gauge("bastion_ingress_errors", "Receive errors of the ingress socket", &[]),
                reg.gauge(
                    "bastion_ingress_malformed",
                    "Kernel bypass: frames dropped as malformed (truncated, bad IPv4 or UDP header or checksum)",
                    &[],
                ),
                reg.gauge("bastion_ingress_fragments", "Kernel bypass: IPv4 fragments dropped", &[]),
                reg.gauge(
                    "bastion_ingress_foreign",
                    "Kernel bypass: frames for another address, port or protocol dropped",
                    &[],
                ),
                reg.gauge("bastion_ingress_arp_replies", "DPDK: ARP requests for our address answered", &[]),
            ],
            _backend: pipeline.map(|p| {
                let g = reg.gauge(
                    "bastion_ingress_backend",
                    "1 for the ingress receive backend that opened (the configured one or its fallback)",
                    &[("backend", p.backend.name())],
                );
                g.set(1.0);
                g
            }),
            stale: reg.gauge(
                "bastion_mempool_stale_dropped",
                "Mempool entries dropped as stale since start",
                &[],
            ),
            ring_depth,
            halted: reg.gauge("bastion_halted", "1 once this validator halted", &[]),
            last: Instant::now(),
        }
    }

    /// The oracle's labelled counters: peers' observations refused by reason (from the
    /// ledger's running totals) and this validator's source errors by source and kind.
    pub fn update_oracle(
        &mut self,
        rejected: &std::collections::BTreeMap<&'static str, u64>,
        sources: Option<&bastion_oracle::OracleStats>,
    ) {
        for (reason, total) in rejected {
            let reg = &self.reg;
            let (c, prev) = self.observations_rejected.entry(reason).or_insert_with(|| {
                let c = reg.counter(
                    "bastion_observations_rejected_total",
                    "Peers' observations refused, by reason",
                    &[("reason", reason)],
                );
                (c, 0)
            });
            c.add(total.saturating_sub(*prev));
            *prev = *total;
        }
        let Some(stats) = sources else { return };
        let snap = stats.snapshot();
        for (source, kind, total) in snap.errors {
            let reg = &self.reg;
            let (c, prev) = self.source_errors.entry((source.clone(), kind)).or_insert_with(|| {
                let c = reg.counter(
                    "bastion_oracle_source_errors_total",
                    "This validator's price source errors, by source and kind",
                    &[("source", &source), ("kind", kind)],
                );
                (c, 0)
            });
            c.add(total.saturating_sub(*prev));
            *prev = total;
        }
        let (c, prev) = &mut self.prices_missing;
        c.add(snap.prices_missing.saturating_sub(*prev));
        *prev = snap.prices_missing;
    }

    /// One tick: everything since the previous one.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        pipeline: Option<&Pipeline>,
        mempool: &Mutex<Mempool>,
        totals: Totals,
        height: u64,
        finality: &[Duration],
        percentiles_ms: (f64, f64),
        halted: bool,
    ) {
        let wall = self.last.elapsed().as_nanos().max(1) as f64;
        self.last = Instant::now();
        if let Some(p) = pipeline {
            for ((m, prev), stats) in self.tiles.iter().zip(self.prev_tiles.iter_mut()).zip(p.stats()) {
                let now = stats.snapshot();
                m.busy.set(now.busy_ratio_since(prev));
                m.frames_in.add(now.frames_in.saturating_sub(prev.frames_in));
                m.frames_out.add(now.frames_out.saturating_sub(prev.frames_out));
                for (c, r) in m.dropped.iter().zip(DropReason::ALL) {
                    c.add(now.dropped(r).saturating_sub(prev.dropped(r)));
                }
                m.overruns.add(now.overruns.saturating_sub(prev.overruns));
                *prev = now;
            }
            for ((depth, high), (_, len, _, hw)) in self.ring_depth.iter().zip(p.ring_depths()) {
                depth.set(len as f64);
                high.set(hw as f64);
            }
            let i = p.ingress_stats();
            let all = [i.received, i.oversized, i.errors, i.malformed, i.fragments, i.foreign, i.arp_replies];
            for (g, v) in self.ingress.iter().zip(all) {
                g.set(v as f64);
            }
        }
        let (len, stale) = match mempool.lock() {
            Ok(m) => (m.len(), m.stale_dropped()),
            Err(poisoned) => {
                let m = poisoned.into_inner();
                (m.len(), m.stale_dropped())
            }
        };
        self.mempool.set(len as f64);
        self.stale.set(stale as f64);

        let (t, p) = (totals, self.prev_totals);
        let ratio = |a: u64, b: u64| (a.saturating_sub(b) as f64 / wall).min(1.0);
        let busy = [
            ("sequencer", ratio(t.sequencer_ns, p.sequencer_ns)),
            ("consensus", ratio(t.signatures_ns, p.signatures_ns)),
            ("execution", ratio(t.execution_ns, p.execution_ns)),
            ("storage", ratio(t.storage_ns, p.storage_ns)),
        ];
        for (tile, r) in busy {
            if let Some(g) = self.app.busy.get(tile) {
                g.set(r);
            }
        }
        let a = &self.app;
        a.seq_out.add(t.proposed_txs.saturating_sub(p.proposed_txs));
        a.exec_in.add(t.txs.saturating_sub(p.txs));
        a.txs.add(t.txs.saturating_sub(p.txs));
        a.orders.add(t.orders.saturating_sub(p.orders));
        a.deposits.add(t.deposits.saturating_sub(p.deposits));
        a.rejected.add(t.rejected.saturating_sub(p.rejected));
        a.fills.add(t.fills.saturating_sub(p.fills));
        a.liquidations.add(t.liquidations.saturating_sub(p.liquidations));
        a.adl.add(t.adl.saturating_sub(p.adl));
        a.blocks.add(t.blocks.saturating_sub(p.blocks));
        a.sigs_checked.add(t.signatures.saturating_sub(p.signatures));
        a.sigs_verified.add(t.signatures_verified.saturating_sub(p.signatures_verified));
        let (now_blocked, prev_blocked) = (t.peers_blocked.by_reason(), p.peers_blocked.by_reason());
        for ((c, (_, n)), (_, before)) in a.blocked.iter().zip(now_blocked).zip(prev_blocked) {
            c.add(n.saturating_sub(before));
        }
        for (read, c) in &a.counters {
            c.add(read(&t).saturating_sub(read(&p)));
        }
        a.unsolicited_blocks.set(t.unsolicited_blocks as f64);
        a.unsolicited_bytes.set(t.unsolicited_bytes as f64);
        a.source_height.set(t.bridge.source_height as f64);
        a.credit_lag.set(t.bridge.credit_lag_blocks as f64);
        a.credited_amount.set(t.bridge.credited_amount as f64);
        if t.blocks > 0 {
            a.fund.set(t.insurance_fund as f64);
        }
        self.prev_totals = t;

        self.height.set(height as f64);
        for d in finality {
            self.finality.observe(d.as_secs_f64());
        }
        self.p50.set(percentiles_ms.0 / 1e3);
        self.p99.set(percentiles_ms.1 / 1e3);
        self.halted.set(if halted { 1.0 } else { 0.0 });
    }
}

/// A tile behind a bounded queue (storage, execution) as metrics: the ingress tiles' names
/// with its `tile` label, and its queue as a ring of the same name (its busy ratio comes with
/// the application's, from the ledger's running totals).
struct QueueTile {
    /// Jobs in and out (`None` where the tile's in/out already count something else: the
    /// execution tile's `bastion_tile_in_total` counts finalized transactions).
    jobs_in: Option<Arc<Counter>>,
    jobs_out: Option<Arc<Counter>>,
    overruns: Arc<Counter>,
    depth: Arc<Gauge>,
    high_water: Arc<Gauge>,
    prev: (u64, u64, u64),
}

impl QueueTile {
    fn new(reg: &Registry, tile: &'static str, jobs: bool) -> QueueTile {
        let l = [("tile", tile)];
        QueueTile {
            jobs_in: jobs
                .then(|| reg.counter("bastion_tile_in_total", "Frames (or transactions) into the tile", &l)),
            jobs_out: jobs.then(|| {
                reg.counter("bastion_tile_out_total", "Frames (or transactions) out of the tile", &l)
            }),
            overruns: reg.counter(
                "bastion_tile_overruns_total",
                "Tile iterations that ran over their time budget",
                &l,
            ),
            depth: reg.gauge("bastion_ring_depth", "Frames waiting in the ring", &[("ring", tile)]),
            high_water: reg.gauge(
                "bastion_ring_high_water",
                "Most frames ever waiting in the ring",
                &[("ring", tile)],
            ),
            prev: (0, 0, 0),
        }
    }

    /// Jobs in and out, overruns (running counts), queue depth now and its high-water mark.
    fn update(&mut self, now: (u64, u64, u64), depth: u64, high_water: u64) {
        if let Some(c) = &self.jobs_in {
            c.add(now.0.saturating_sub(self.prev.0));
        }
        if let Some(c) = &self.jobs_out {
            c.add(now.1.saturating_sub(self.prev.1));
        }
        self.overruns.add(now.2.saturating_sub(self.prev.2));
        self.prev = now;
        self.depth.set(depth as f64);
        self.high_water.set(high_water as f64);
    }
}

/// `bastion_ring_capacity{ring}`: how many frames or jobs the ring holds, so that alerts can
/// compare `bastion_ring_depth` with it.
fn ring_capacity(reg: &Registry, ring: &str, capacity: usize) {
    reg.gauge("bastion_ring_capacity", "Frames (or jobs) the ring holds at most", &[("ring", ring)])
        .set(capacity as f64);
}

/// The storage and execution tiles' counters as metrics.
pub struct ConsensusTileMetrics {
    storage: QueueTile,
    execution: QueueTile,
    syncs: Arc<Counter>,
    refused: Arc<Counter>,
    durable: Arc<Gauge>,
    prev: (u64, u64),
}

impl ConsensusTileMetrics {
    pub fn new(reg: &Registry) -> ConsensusTileMetrics {
        ring_capacity(reg, "storage", bastion_consensus::storage_tile::STORAGE_QUEUE);
        ring_capacity(reg, "execution", bastion_consensus::execution_tile::EXECUTION_QUEUE);
        ConsensusTileMetrics {
            storage: QueueTile::new(reg, "storage", true),
            execution: QueueTile::new(reg, "execution", false),
            syncs: reg.counter(
                "bastion_storage_syncs_total",
                "Group commits (fdatasync) of the block log",
                &[],
            ),
            refused: reg.counter(
                "bastion_execution_refused_total",
                "Blocks the execution tile found not to execute",
                &[],
            ),
            durable: reg.gauge("bastion_durable_height", "Highest height the block log holds durably", &[]),
            prev: (0, 0),
        }
    }

    /// One tick.
    pub fn update(
        &mut self,
        storage: &bastion_consensus::storage_tile::StorageCounters,
        execution: Option<&bastion_consensus::execution_tile::ExecutionCounters>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = storage;
        self.storage.update(
            (s.jobs_in.load(Relaxed), s.jobs_out.load(Relaxed), s.overruns.load(Relaxed)),
            s.depth(),
            s.high_water.load(Relaxed),
        );
        self.durable.set(s.durable.load(Relaxed) as f64);
        let syncs = s.syncs.load(Relaxed);
        self.syncs.add(syncs.saturating_sub(self.prev.0));
        if let Some(e) = execution {
            self.execution.update(
                (e.jobs_in.load(Relaxed), e.jobs_out.load(Relaxed), e.overruns.load(Relaxed)),
                e.depth(),
                e.high_water.load(Relaxed),
            );
            let refused = e.refused.load(Relaxed);
            self.refused.add(refused.saturating_sub(self.prev.1));
            self.prev.1 = refused;
        }
        self.prev.0 = syncs;
    }
}

/// Peak resident set size of this process (VmHWM), MiB; 0 where /proc is absent.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}
