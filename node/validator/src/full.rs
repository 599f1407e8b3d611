//! A full node (`role = "full"` in node.toml): no consensus keys, never votes. It follows the
//! chain over the public network: every finalized block arrives with its finalization
//! certificate, which is verified against the genesis validator set before anything else
//! (`bastion_consensus::certified::CertChecker`, run by the gossip handler before a message is
//! forwarded), then the block's digest against the certified one; the
//! [`bastion_consensus::follower::Follower`] orders them and hands each height over exactly
//! once, and they are executed with the same exchange and `Store` as the validators', into the
//! node's own data dir (so restart and recovery are the validators'). Gaps (the node was down,
//! or a message was lost) are backfilled by height range from peers, each answer checked the
//! same way (a bad one lowers the peer's score). It serves the API and answers peers' range
//! requests from its block log and certificate log.

use crate::node::{Committed, NodeConfig, RunOptions, init_logging, write_status};
use crate::public::{derived_seed, read_seed};
use crate::publish::{FullSubmit, GossipCheck, update_of};
use bastion_consensus::ChainSpec;
use bastion_consensus::certified::CertChecker;
use bastion_consensus::certlog::{CertLog, serve_range};
use bastion_consensus::follower::{Follower, Offered, chain_tip, execute};
use bastion_gossip::{Gossip, GossipConfig};
use bastion_store::{Store, hex};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::state_sync::{GossipTransport, Stuck, SyncStatus, serve_requests};
use bastion_statesync::install::{Installed, finish_pending, install_from};
use bastion_statesync::{Server, SyncError, TrustPoint};

/// How far above its executed height a full node buffers certified blocks.
const FOLLOW_WINDOW: u64 = 4096;
/// Blocks asked for in one range request.
const RANGE_BLOCKS: u64 = 256;
/// A range request not answered within this is asked again (of another peer).
const RANGE_RETRY: Duration = Duration::from_secs(2);

/// What a full node's `status.json` holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FullStatus {
    /// Always "full".
    pub role: &'static str,
    /// The chain id.
    pub chain_id: String,
    /// The public network's peer id.
    pub peer_id: String,
    /// Executed and durable height.
    pub height: u64,
    /// State root there (hex).
    pub root: String,
    /// Why it stopped following, if it did.
    pub halted: Option<String>,
    /// Seconds since start.
    pub uptime_s: f64,
    /// The highest certified height it has seen.
    pub seen_height: u64,
    /// Certified blocks seen but not yet executed: now, and the 99th percentile.
    pub lag_blocks: u64,
    /// See `lag_blocks`.
    pub lag_blocks_p99: u64,
    /// Blocks executed since start.
    pub executed: u64,
    /// Blocks that arrived by backfill (range answers) since start.
    pub backfilled: u64,
    /// Messages and answers refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Range answers refused (the peer was penalized).
    pub bad_ranges: u64,
    /// Connected peers.
    pub peers: u64,
    /// The API's address, if it serves one.
    pub api: Option<String>,
    /// REST requests answered.
    pub api_requests: u64,
    /// WebSocket messages sent.
    pub ws_messages: u64,
    /// State sync, once one started.
    pub state_sync: Option<SyncStatus>,
    /// Peak resident memory of this process since start (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Runs a full node until a signal, `--duration` or `--until-height`; `Ok` holds a summary.
pub fn run(cfg: &NodeConfig, opts: &RunOptions) -> Result<String, String> {
    init_logging(&cfg.log_level);
    let spec = ChainSpec::load(&cfg.genesis).map_err(|e| e.to_string())?;
    let limits = spec.block_limits();
    let chain = spec.digest();
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", cfg.data_dir.display()))?;
    let (mut store, recovery) = Store::open(&cfg.data_dir, &spec.exchange, cfg.storage.store_config())
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    for line in recovery.describe() {
        info!("{line}");
    }
    // The sweep's portfolio screen (`[risk]`), kept across state syncs by the store.
    let risk_screen = crate::gpu_risk::open(&cfg.risk)?;
    store.set_portfolio_screen(risk_screen.as_ref().map(crate::gpu_risk::RiskScreen::handle));
    let checker = CertChecker::new(&spec).map_err(|e| e.to_string())?;
    let mut certs = CertLog::open(&cfg.data_dir)?;
    // A state sync that was installing when the node stopped: finish it first.
    match finish_pending(&cfg.data_dir, &mut store, Some(&mut certs), &checker) {
        Ok(Some(i)) => info!(
            height = i.height,
            tip = i.tip,
            "state sync: finished the install an earlier run had verified"
        ),
        Ok(None) => {}
        Err(e) => {
            return Err(format!("state sync: cannot finish the install in {}: {e}", cfg.data_dir.display()));
        }
    }
    let trust = match opts.trust {
        Some(t) => Some(t),
        None => cfg.state_sync.trust()?,
    };
    if (opts.state_sync || opts.trust.is_some()) && !cfg.state_sync.enable {
        return Err("--state-sync and --trust-height need [state_sync] enable = true in node.toml".into());
    }
    let tip = chain_tip(&store, &spec.exchange, &limits)?;
    // After a crash the certificate log may end below the block log: those heights keep no
    // certificate of their own (a range answer then carries a later one).
    let from = certs.last_height().map_or(store.state().height.min(1), |h| h + 1);
    for h in from..=store.state().height {
        certs.append(h, None)?;
    }
    certs.commit()?;
    let mut follower = Follower::new(tip.0, tip.1, FOLLOW_WINDOW);
    let committed = Arc::new(RwLock::new(Committed::of(store.state())));
    let check = Arc::new(GossipCheck::new(chain, committed.clone(), Some(checker.clone())));

    let listen = cfg.public.listen.ok_or("public.listen is required for a full node")?;
    let secret = match &cfg.public.key {
        Some(p) => read_seed(p)?,
        // A new identity (from the OS's entropy) at every start.
        None => derived_seed(
            &bastion_consensus::ValidatorKeys::generate().identity_seed().map_err(|e| e.to_string())?,
        ),
    };
    let mut gcfg = GossipConfig::new(listen, secret, spec.chain_id.clone());
    gcfg.bootstrap = cfg.public.bootstrap.clone();
    gcfg.max_block_bytes = crate::node::public_max_bytes(&limits);
    gcfg.inbound_queue = cfg.public.inbound_queue;
    gcfg.max_snapshot_bytes = anchor_max(&limits) + (1 << 20);
    let gossip = Arc::new(Gossip::start(gcfg, check.clone())?);
    let server =
        cfg.state_sync.serve.then(|| Server::new(&store.snapshot_dir(), cfg.state_sync.serve_config()));
    info!(
        chain = %spec.chain_id,
        genesis = %hex(&chain),
        peer = %gossip.peer_id(),
        listen = ?gossip.listen_addrs(),
        height = tip.0,
        "full node starting"
    );
    let api = match cfg.api.listen {
        Some(_) => {
            let submit = Arc::new(FullSubmit { check: check.clone(), gossip: gossip.clone() });
            let api =
                crate::node::start_api(cfg, &spec, "full", &format!("full {}", gossip.peer_id()), submit)?;
            info!(api = %api.local_addr(), "API at http://{}/v1/status", api.local_addr());
            Some(api)
        }
        None => None,
    };
    let feeder = api.as_ref().map(bastion_api::Api::feeder);
    let registry = crate::metrics::Registry::new();
    let mut telemetry = crate::public_metrics::PublicTelemetry::new(&registry);
    let mut risk_telemetry = crate::gpu_risk::RiskTelemetry::new(&registry, risk_screen.as_ref());
    let metrics_stop = Arc::new(AtomicBool::new(false));
    // The dashboard of the metrics endpoint; its book is copied after executed blocks.
    let dashboard = Arc::new(crate::dashboard::Dashboard::new(
        &format!("full {}", gossip.peer_id()),
        "full",
        &spec.chain_id,
    ));
    let metrics_server = match cfg.metrics.listen {
        Some(addr) => {
            let (bound, handle) =
                crate::metrics::serve_with(registry.clone(), addr, metrics_stop.clone(), dashboard.clone())
                    .map_err(|e| format!("metrics: cannot listen on {addr} ([metrics] listen): {e}"))?;
            info!(metrics = %bound, "metrics at http://{bound}/metrics");
            Some(handle)
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    crate::state_sync::stop_after(&stop, opts.duration);
    let started = Instant::now();
    let status_path = cfg.data_dir.join("status.json");
    let mut lag = Histogram::<u64>::new_with_bounds(1, 1 << 40, 3).map_err(|e| e.to_string())?;
    let mut status = FullStatus {
        role: "full",
        chain_id: spec.chain_id.clone(),
        peer_id: gossip.peer_id(),
        ..FullStatus::default()
    };
    status.api = api.as_ref().map(|a| a.local_addr().to_string());
    let mut asked: Option<(u64, Instant)> = None;
    let mut want_sync = cfg.state_sync.enable
        && (opts.state_sync
            || crate::state_sync::interrupted(&cfg.data_dir)
            || trust.is_some_and(|t| store.state().height < t.height));
    let mut stuck = Stuck::default();
    let mut sync_retry_at: Option<Instant> = None;
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut last_progress = Instant::now();
    let max_bytes = crate::node::public_max_bytes(&limits);
    let outcome: Result<(), String> = loop {
        let mut busy = false;
        // Certified blocks from the network (the handler verified them before forwarding).
        while let Ok(msg) = gossip.blocks().try_recv() {
            busy = true;
            offer_block(&check, &gossip, &mut follower, &mut status, &msg);
        }
        // Backfill answers: checked here (certificate of the last block, links down).
        while let Ok(ans) = gossip.ranges().try_recv() {
            busy = true;
            asked = None;
            match ans.data {
                Ok(bytes) => match checker.check_range(&bytes, ans.from) {
                    Ok(blocks) => {
                        if let Some(b) = blocks.last() {
                            status.seen_height = status.seen_height.max(b.block.height_u64());
                        }
                        status.backfilled += follower.offer_range(blocks) as u64;
                    }
                    Err(r) => {
                        check.refusals.count(r.label());
                        status.bad_ranges += 1;
                        gossip.penalize(&ans.peer, r.label());
                    }
                },
                Err(e) => {
                    // Only a peer saying it does not hold the range counts towards being stuck
                    // behind what peers serve; a timeout or a closed stream under load does not
                    // (it made a busy full node state-sync when it only had to wait).
                    if e == bastion_gossip::UNAVAILABLE {
                        stuck.failed(ans.from.saturating_sub(1));
                    }
                    warn!(peer = %ans.peer, from = ans.from, to = ans.to, "range request failed: {e}")
                }
            }
        }
        // Execute, in order, exactly once.
        let mut executed = 0u64;
        while let Some(ready) = follower.next() {
            let out = match execute(&mut store, &ready.block) {
                Ok(out) => out,
                Err(e) => {
                    status.halted = Some(format!(
                        "block {} at height {}: {e}",
                        hex(ready.block.id().as_ref()),
                        ready.block.height_u64()
                    ));
                    break;
                }
            };
            let h = ready.block.height_u64();
            certs.append(h, ready.certificate.as_deref())?;
            committed
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .update(store.state(), &ready.block.block().txs);
            if let Some(f) = &feeder {
                f.push(update_of(&ready.block, &out.events, out.root, store.state()));
            }
            executed += 1;
        }
        if executed > 0 {
            if metrics_server.is_some() {
                dashboard.publish_every(store.state());
            }
            busy = true;
            stuck.progressed(store.state().height);
            status.executed += executed;
            store.commit().map_err(|e| format!("store commit: {e}"))?;
            certs.commit()?;
        }
        if status.halted.is_some() {
            write_status(&status_path, &status);
            break Err(format!("full node halted: {}", status.halted.clone().unwrap_or_default()));
        }
        // Peers' range requests, from the block log and the certificate log.
        while let Ok(req) = gossip.requests().try_recv() {
            busy = true;
            let answer = serve_range(&store, &certs, &limits, req.from, req.to, max_bytes);
            let _ = req.reply.send(answer);
        }
        // Peers' snapshot requests, anchored on the block and certificate logs.
        if let Some(server) = &server {
            let amax = anchor_max(&limits);
            let anchor = |h: u64| serve_range(&store, &certs, &limits, h, h, amax);
            if serve_requests(&gossip, server, &anchor) > 0 {
                busy = true;
            }
        }
        // State sync: asked for, or no peer serves the blocks this node needs next.
        let height = store.state().height;
        if cfg.state_sync.enable
            && (want_sync || stuck.stuck(height))
            && sync_retry_at.is_none_or(|t| Instant::now() >= t)
        {
            let forced = want_sync;
            // On its own, a node syncs only to a snapshot above its height that a peer offers.
            if !forced
                && crate::state_sync::best_offer(&gossip, &checker, Duration::from_secs(2))
                    .is_none_or(|h| h <= height)
            {
                stuck = Stuck::default();
                sync_retry_at = Some(Instant::now() + Duration::from_secs(10));
                continue;
            }
            if !forced {
                info!(height, "no peer serves the blocks after height {height}: state sync");
            }
            let mut progress = SyncRun { status: &mut status, path: &status_path, telemetry: &mut telemetry };
            match sync_now(&gossip, &checker, cfg, &mut store, &mut certs, trust, &stop, &mut progress) {
                Ok(installed) => {
                    want_sync = false;
                    stuck = Stuck::default();
                    let tip = chain_tip(&store, &spec.exchange, &limits)?;
                    follower = Follower::new(tip.0, tip.1, FOLLOW_WINDOW);
                    asked = None;
                    *committed.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Committed::of(store.state());
                    info!(
                        height = installed.height,
                        tip = installed.tip,
                        root = %hex(&installed.root),
                        "state sync: installed; following the chain from height {}",
                        installed.tip + 1
                    );
                }
                Err(SyncError::Stopped) => {
                    info!("stopped during state sync (signal or --duration)");
                    break Ok(());
                }
                Err(e) => {
                    if let Some(s) = status.state_sync.as_mut() {
                        s.phase = "failed".into();
                        s.error = Some(e.to_string());
                    }
                    write_status(&status_path, &status);
                    if forced {
                        break Err(format!("state sync failed: {e}"));
                    }
                    warn!("state sync failed: {e}; trying again in 30 s");
                    sync_retry_at = Some(Instant::now() + Duration::from_secs(30));
                }
            }
            continue;
        }
        // Ask for what is missing.
        let height = store.state().height;
        // (Further behind than the follower's window, nothing is held: ask from the tip on.)
        let gap = follower.gap().or_else(|| {
            (follower.held() == 0 && status.seen_height > height + 1)
                .then(|| (height + 1, status.seen_height - 1))
        });
        if let Some((a, b)) = gap
            && asked.is_none_or(|(h, at)| h != a || at.elapsed() >= RANGE_RETRY)
            && gossip.request_range(a, b.min(a + RANGE_BLOCKS - 1)).is_ok()
        {
            asked = Some((a, Instant::now()));
        }
        let behind = status.seen_height.saturating_sub(height);
        let _ = lag.record(behind.max(1));
        if last_status.elapsed() >= Duration::from_millis(250) {
            status.height = height;
            status.root = hex(&store.state().state_root());
            status.uptime_s = started.elapsed().as_secs_f64();
            status.peak_rss_mib = crate::telemetry::peak_rss_mib();
            status.lag_blocks = behind;
            status.lag_blocks_p99 =
                if lag.is_empty() { 0 } else { lag.value_at_quantile(0.99).saturating_sub(1) };
            status.refused = check.refusals.snapshot();
            let gstats = gossip.stats();
            status.peers = gstats.peers;
            let astats = api.as_ref().map(bastion_api::Api::stats);
            if let Some(s) = &astats {
                status.api_requests = s.requests.total();
                status.ws_messages = s.ws_messages;
            }
            telemetry.update(Some(&gstats), &status.refused, astats.as_ref());
            telemetry.update_full(&status);
            risk_telemetry.update();
            telemetry.update_sync(
                status.state_sync.as_ref(),
                server.as_ref().map(Server::stats).as_ref(),
                Some(&gstats),
            );
            write_status(&status_path, &status);
            last_status = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            info!(
                "height {height} (seen {}), {} executed, {} backfilled, peers {}, refused {:?}",
                status.seen_height, status.executed, status.backfilled, status.peers, status.refused
            );
            last_progress = Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            info!("stopping (signal or --duration)");
            break Ok(());
        }
        if opts.until_height.is_some_and(|h| height >= h)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break Ok(());
        }
        if !busy {
            // Wait for the network rather than poll (consensus shares these cores).
            crossbeam_channel::select! {
                recv(gossip.blocks()) -> m => if let Ok(msg) = m {
                    offer_block(&check, &gossip, &mut follower, &mut status, &msg);
                },
                default(Duration::from_millis(5)) => {},
            }
        }
    };
    status.height = store.state().height;
    status.root = hex(&store.state().state_root());
    write_status(&status_path, &status);
    if let Some(a) = api {
        a.stop();
    }
    metrics_stop.store(true, Ordering::SeqCst);
    if let Some(h) = metrics_server {
        let _ = h.join();
    }
    if let Ok(g) = Arc::try_unwrap(gossip) {
        g.stop();
    }
    outcome?;
    Ok(format!(
        "full node stopped at height {} after {:.1} s: {} blocks executed ({} by backfill), lag p99 {} blocks, refused {:?}",
        status.height,
        started.elapsed().as_secs_f64(),
        status.executed,
        status.backfilled,
        status.lag_blocks_p99,
        status.refused
    ))
}

/// Hands a certified block the gossip handler accepted to the follower; a block that conflicts
/// with one already held at its height is counted and its sender penalized.
fn offer_block(
    check: &GossipCheck,
    gossip: &Gossip,
    follower: &mut Follower,
    status: &mut FullStatus,
    msg: &bastion_gossip::Received,
) {
    let Some(v) = check.take_verified(&msg.data) else { return };
    status.seen_height = status.seen_height.max(v.block.height_u64());
    if follower.offer(v) == Offered::Conflict {
        check.refusals.count("block_conflict");
        gossip.penalize(&msg.peer, "conflicting block");
    }
}

/// Sets `stop` on SIGTERM or SIGINT.
pub(crate) fn watch_signals(stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                stop.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// The largest anchor this node serves: a range answer of at most one full block and a
/// certificate fits, within the gossip's snapshot response limit.
fn anchor_max(limits: &bastion_consensus::BlockLimits) -> usize {
    crate::node::public_max_bytes(limits)
}

/// Where a sync in progress reports.
struct SyncRun<'a> {
    status: &'a mut FullStatus,
    path: &'a std::path::Path,
    telemetry: &'a mut crate::public_metrics::PublicTelemetry,
}

/// Syncs from peers and installs the result; progress goes to `status.json`, the metrics and
/// (every 5 s) the log.
#[allow(clippy::too_many_arguments)]
fn sync_now(
    gossip: &Gossip,
    checker: &CertChecker,
    cfg: &NodeConfig,
    store: &mut Store,
    certs: &mut CertLog,
    trust: Option<TrustPoint>,
    stop: &AtomicBool,
    run: &mut SyncRun<'_>,
) -> Result<Installed, SyncError> {
    let sc = cfg.state_sync.sync_config(trust, store.state().height);
    let started = Instant::now();
    let mut transport = GossipTransport::new(gossip);
    let mut last_log = Instant::now();
    let downloaded = bastion_statesync::sync(&mut transport, checker, &cfg.data_dir, &sc, stop, &mut |p| {
        let s = SyncStatus::of(p);
        if last_log.elapsed() >= Duration::from_secs(5) {
            info!("{}", s.line());
            last_log = Instant::now();
        }
        run.telemetry.update_sync(Some(&s), None, None);
        run.status.state_sync = Some(s);
        write_status(run.path, run.status);
    })?;
    let stats = downloaded.stats.clone();
    let installed = install_from(&cfg.data_dir, store, Some(certs), downloaded.chunks, &downloaded.blocks)?;
    info!(
        height = installed.height,
        bytes = stats.bytes_downloaded,
        peers = stats.peers_used,
        resumed = stats.chunks_resumed,
        seconds = started.elapsed().as_secs_f64(),
        rebuild_ms = installed.rebuild.as_millis() as u64,
        recompute_ms = installed.recompute.as_millis() as u64,
        install_ms = installed.install.as_millis() as u64,
        "state sync: verified and installed"
    );
    let mut s = run.status.state_sync.clone().unwrap_or_default();
    s.phase = "done".into();
    s.target_height = Some(installed.height);
    s.synced_from_height = Some(installed.height);
    s.sync_seconds = Some(started.elapsed().as_secs_f64());
    s.bytes_downloaded = stats.bytes_downloaded;
    s.chunks_resumed = stats.chunks_resumed;
    s.chunks_discarded = stats.chunks_discarded;
    s.chunks_done = s.chunks_total;
    s.bytes_done = s.bytes_total;
    s.eta_s = None;
    s.error = None;
    run.telemetry.update_sync(Some(&s), None, None);
    run.status.state_sync = Some(s);
    write_status(run.path, run.status);
    Ok(installed)
}
