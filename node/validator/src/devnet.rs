//! `bastion devnet`: a local network of validators on loopback, each a `bastion run` process
//! (production runtime, authenticated p2p, its own data dir), with a live progress line, a
//! summary, and a check that every validator's block log holds the same state root at every
//! common height. Exits non-zero if any validator fails or the roots disagree.
//!
//! By default the validators take blocks from their mempools, filled over UDP by the load
//! generator ([`crate::loadgen`]): thousands of traders with their own keys sending signed
//! orders to every validator, priced off the chain's oracle path. The default scenario,
//! `flash-crash`, drops the index 30% over 2 s at t = 10 s and recovers, so leveraged longs are
//! liquidated, the insurance fund is drawn on and auto-deleveraging fires when it runs dry.
//! At the end the chain is replayed from genesis out of validator 0's block log, each root
//! checked against the log, and the summary's exchange figures come from that replay.
//!
//! `--txs-per-block N` instead fills blocks from the signed synthetic workload (consensus
//! benchmarks, no UDP).

use crate::keys::{self, InitArgs};
use crate::loadgen::{self, LoadConfig, LoadGen};
use crate::oracle::DevnetScenario;
use bastion_consensus::ChainSpec;
use bastion_exchange::State;
use bastion_storage::{BlockLog, LogConfig};
use bastion_store::{LogEntry, hex};
use bastion_types::{Action, Event};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds the validators get to finalize their first block before the devnet gives up.
const STARTUP_LIMIT_S: f64 = 60.0;
/// Seconds a node gets to exit after SIGTERM.
const STOP_GRACE_S: f64 = 60.0;
/// Seconds full nodes run after the validators are stopped, to take their last blocks.
const FULL_NODE_TAIL_S: f64 = 2.0;
/// Seconds after the first finalized block that the summary's steady-state finality leaves
/// out (the first views wait for peers to dial and handshake: proposals of 1-2 s).
const WARMUP_S: f64 = 2.0;

/// `bastion devnet`.
#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Number of validators (each a process).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// How long the chain runs from its first finalized block (`25s`, `2m`, `1m30s`; a bare
    /// number is seconds; start-up, up to 60 s, comes on top).
    #[arg(long, default_value = "20", value_parser = crate::duration::seconds)]
    pub duration: f64,
    /// Keep everything (genesis, keys, data dirs, logs) here; default: a temporary directory,
    /// removed at the end.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// P2P port of validator 0 (default: the first free block of ports from 7400).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Orders per second the load generator sends (each to every validator).
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Traders, each with its own key (a tenth make markets).
    #[arg(long, default_value_t = 2_000)]
    pub traders: u64,
    /// What the validators' simulated venues quote: flash-crash (the true price 30% down over
    /// 2 s at t = 10 s, then recovery), calm, or oracle-attack (calm; one validator of four
    /// reports every price +50%, and at t = 10 s one venue of every honest validator pumps 10x
    /// for 20 s).
    #[arg(long, default_value = "flash-crash")]
    pub scenario: DevnetScenario,
    /// How often each validator signs an observation of its sources (`200ms`, `1s`; a bare
    /// number is milliseconds; the `[oracle]` `observe_every_ms` written into every node.toml).
    #[arg(long, default_value = "200", value_parser = crate::duration::millis)]
    pub observe_every_ms: u64,
    /// Receive backend of every validator's ingress: sockets or io_uring.
    #[arg(long, default_value = "sockets")]
    pub ingress: bastion_net::Backend,
    /// When after genesis the flash crash starts (`10s`, `1m`; a bare number is seconds).
    #[arg(long, default_value = "10", value_parser = crate::duration::seconds)]
    pub crash_at_s: f64,
    /// Instead of the load generator, fill blocks with this many transactions of the signed
    /// synthetic workload (consensus benchmarks; `--traders` then counts its accounts).
    #[arg(long)]
    pub txs_per_block: Option<usize>,
    /// Full nodes (each a `bastion run` process with `role = "full"`): they follow the chain
    /// over the public network, verifying every certificate, and serve the API.
    #[arg(long, default_value_t = 1)]
    pub full_nodes: usize,
    /// API port of the first full node on 127.0.0.1 (full node j: P + j); default 8080, or
    /// the next free block of ports when 8080 is taken.
    #[arg(long)]
    pub api_port: Option<u16>,
    /// How the load generator submits: `gossip` (each order once, to one validator, which
    /// gossips it to the others) or `direct` (each order to every validator).
    #[arg(long, default_value = "gossip")]
    pub submit: loadgen::Submit,
    /// Keep the validators off the public network (no libp2p, no gossip, no published blocks):
    /// the configuration before issue 17, to measure what the public network costs. Needs
    /// `--full-nodes 0 --submit direct`.
    #[arg(long)]
    pub no_public_network: bool,
    /// Every node takes a snapshot every N blocks and keeps 3, pruning its block log behind
    /// the oldest (as in production, where the default is 500): a node further behind than
    /// about 2N blocks can only join by state sync.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Start one more node at t = S (`90s`, `2m`; a bare number is seconds) with an empty data dir: it joins by state sync
    /// when the others' logs no longer reach genesis. The summary gains `late_joiner`.
    #[arg(long, value_parser = crate::duration::seconds)]
    pub late_joiner_at: Option<f64>,
    /// What the late joiner is: `full` (an extra full node) or `validator` (the last
    /// validator starts late; it syncs, then votes).
    #[arg(long, default_value = "full")]
    pub late_joiner_role: LateRole,
}

/// The late joiner's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LateRole {
    /// An extra full node.
    Full,
    /// The last validator of the genesis file.
    Validator,
}

/// The validator processes; killed on drop so an error leaves none running.
struct Fleet {
    children: Vec<Option<Child>>,
}

impl Fleet {
    /// SIGTERM to node `k` (a graceful stop: it finishes its block and syncs its store).
    fn terminate(&self, k: usize) {
        if let Some(Some(c)) = self.children.get(k) {
            // SAFETY: kill(2) on our own child's pid, not yet reaped (we still hold its Child).
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default, Clone)]
struct NodeStatus {
    height: u64,
    halted: Option<String>,
    finality_p50: f64,
    finality_p99: f64,
    orders_finalized: u64,
    liquidations: u64,
    adl: u64,
    mempool: u64,
    credited: u64,
}

fn status(dir: &Path) -> NodeStatus {
    let v = std::fs::read(dir.join("data/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    NodeStatus {
        height: v["height"].as_u64().unwrap_or(0),
        halted: v["halted"].as_str().map(str::to_owned),
        finality_p50: v["finality_ms"][0].as_f64().unwrap_or(0.0),
        finality_p99: v["finality_ms"][1].as_f64().unwrap_or(0.0),
        orders_finalized: v["orders_finalized"].as_u64().unwrap_or(0),
        liquidations: v["liquidations"].as_u64().unwrap_or(0),
        adl: v["adl_events"].as_u64().unwrap_or(0),
        mempool: v["mempool"].as_u64().unwrap_or(0),
        credited: v["bridge"]["deposits_credited"].as_u64().unwrap_or(0),
    }
}

/// The first block of `n` free loopback ports at or above `from`, for TCP (p2p, metrics) and
/// UDP (ingress).
fn free_ports(from: u16, n: usize, avoid: &[(u16, usize)]) -> Result<u16, String> {
    let free = |p: u16| {
        TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), p)).is_ok()
            && std::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), p)).is_ok()
    };
    let n16 = u16::try_from(n).unwrap_or(u16::MAX);
    let mut base = from;
    while base < 65_000 {
        let clash = avoid
            .iter()
            .any(|(b, m)| usize::from(base) < usize::from(*b) + m && usize::from(*b) < usize::from(base) + n);
        if !clash && (0..n16).all(|i| free(base + i)) {
            return Ok(base);
        }
        base = base.saturating_add(n16);
    }
    Err(format!("no free block of {n} loopback ports from {from}; pass --base-port"))
}

/// Runs the devnet; `Ok` holds the summary.
pub fn run(args: &DevnetArgs) -> Result<String, String> {
    if !(1..=64).contains(&args.validators) {
        return Err(format!("--validators {}: allowed 1 to 64 on one machine", args.validators));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err(format!("--duration {}: must be a positive number of seconds", args.duration));
    }
    let tmp;
    let root = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("bastion-devnet-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let n = args.validators;
    if let Some(t) = args.txs_per_block
        && (t == 0 || t > bastion_exchange::BLOCK_TXS_MAX)
    {
        return Err(format!("--txs-per-block {t}: allowed 1 to {}", bastion_exchange::BLOCK_TXS_MAX));
    }
    if args.traders < 2 || args.traders > 1_000_000 {
        return Err(format!("--traders {}: allowed 2 to 1000000", args.traders));
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
        return Err(format!("--rate {}: allowed more than 0 and up to 1000000 orders/s", args.rate));
    }
    let base_port = match args.base_port {
        Some(p) => p,
        None => free_ports(7400, n, &[])?,
    };
    let ingress_port = free_ports(base_port.saturating_add(1000), n, &[(base_port, n)])?;
    if args.full_nodes > 16 {
        return Err(format!("--full-nodes {}: allowed 0 to 16 on one machine", args.full_nodes));
    }
    if let Some(sa) = args.late_joiner_at {
        if !(sa.is_finite() && sa > 0.0 && sa < args.duration) {
            return Err(format!(
                "--late-joiner-at {sa}: must be after 0 and before --duration ({})",
                args.duration
            ));
        }
        if args.no_public_network {
            return Err("--late-joiner-at needs the public network (state sync runs over it)".into());
        }
        if args.late_joiner_role == LateRole::Validator && n < 4 {
            return Err(
                "--late-joiner-role validator needs at least 4 validators (the others keep a quorum)".into(),
            );
        }
    }
    if args.snapshot_every == Some(0) {
        return Err("--snapshot-every 0: give a number of blocks (at least 1)".into());
    }
    let late_full = args.late_joiner_at.is_some() && args.late_joiner_role == LateRole::Full;
    // The late full node is the last full node of the layout.
    let f = args.full_nodes + usize::from(late_full);
    if args.no_public_network
        && (f > 0 || (args.submit != loadgen::Submit::Direct && args.txs_per_block.is_none()))
    {
        return Err(
            "--no-public-network needs --full-nodes 0 and --submit direct (full nodes and gossip use the public network)"
                .into(),
        );
    }
    // Validator i's metrics at metrics-port + i, full node j's at metrics-port + n + j.
    let metrics_port =
        free_ports(ingress_port.saturating_add(1000), n + f, &[(base_port, n), (ingress_port, n)])?;
    let taken = [(base_port, n), (ingress_port, n), (metrics_port, n + f)];
    let public_port = free_ports(metrics_port.saturating_add(1000), n + f, &taken)?;
    let taken = [(base_port, n), (ingress_port, n), (metrics_port, n + f), (public_port, n + f)];
    let api_port = match args.api_port {
        Some(p) => p,
        None => free_ports(8080, f.max(1), &taken)?,
    };
    keys::init(&InitArgs {
        validators: n,
        out: root.clone(),
        chain_id: "bastion-devnet".into(),
        base_port,
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        hosts: Vec::new(),
        seed: None,
        ingress_port,
        metrics_port,
        scenario: args.scenario,
        crash_at_s: args.crash_at_s,
        authority: None,
        production: false,
        devnet: true,
        genesis_time_ms: None,
        full_nodes: f,
        public_port: Some(public_port),
        api_port,
    })?;
    let spec = ChainSpec::load(&root.join("genesis.json")).map_err(|e| e.to_string())?;
    // The simulated source chain whose deposits fund the traders (validators attest them).
    let mut source = crate::devnet_bridge::Source::start(&root, &spec)?;
    // The true path the validators' simulated venues quote (`bastion init` writes the same
    // scenario, path seed 0 and crash time into every node.toml).
    let path = crate::oracle::true_path(
        args.scenario,
        spec.exchange.timestamp_ms,
        0,
        (args.crash_at_s * 1000.0) as u64,
    );
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bastion executable: {e}"))?;
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("v{i}"))).collect();
    let full_dirs: Vec<PathBuf> = (0..f).map(|j| root.join(format!("f{j}"))).collect();
    for dir in &dirs {
        let path = dir.join("node.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = text.replace("backend = \"sockets\"", &format!("backend = \"{}\"", args.ingress));
        let text = text
            .replace("observe_every_ms = 200 ", &format!("observe_every_ms = {} ", args.observe_every_ms));
        let text = if args.no_public_network { off_public_network(&text) } else { text };
        // Top-level keys go before the first table; tables at the end.
        let (top, tables) = match args.txs_per_block {
            Some(t) => (
                "block_source = \"synthetic\"\n".to_string(),
                format!("\n[workload]\ntraders = {}\ntxs_per_block = {t}\n", args.traders),
            ),
            // The load generator's bridge account funds every trader: let one account send
            // more than the production default of 1000/s.
            None => (
                String::new(),
                "\n[pipeline]\nrate_per_account = 20000\nburst_per_account = 20000\n".to_string(),
            ),
        };
        let storage = storage_table(args.snapshot_every);
        let bridge = source.node_table();
        std::fs::write(&path, format!("{top}{text}{tables}{storage}{bridge}"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    for dir in &full_dirs {
        let path = dir.join("node.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        std::fs::write(&path, format!("{text}{}", storage_table(args.snapshot_every)))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // The late joiner: its index among all nodes (validators first, then full nodes).
    let late = args.late_joiner_at.map(|at| match args.late_joiner_role {
        LateRole::Full => (n + f - 1, at),
        LateRole::Validator => (n - 1, at),
    });
    println!(
        "devnet: {n} validators on 127.0.0.1 (p2p {base_port}.., ingress {ingress_port}.. over {}, metrics {metrics_port}..) for {:.0} s from the first finalized block, data in {}",
        args.ingress,
        args.duration,
        root.display()
    );
    println!(
        "        live dashboard: http://127.0.0.1:{metrics_port}/dashboard (validator i: port {metrics_port} + i)"
    );
    match args.txs_per_block {
        Some(t) => println!(
            "        blocks of {t} signed synthetic transactions over {} traders (no UDP)",
            args.traders
        ),
        None => println!(
            "        {} traders sending {:.0} signed orders/s over UDP to every validator; oracle: {}{}",
            args.traders,
            args.rate,
            args.scenario,
            match args.scenario {
                DevnetScenario::FlashCrash => format!(
                    " (true price -30% over 2 s at t = {} s; 5 simulated venues per validator)",
                    args.crash_at_s
                ),
                DevnetScenario::OracleAttack => format!(
                    " (v{} reports +50%; one venue of every honest validator pumps 10x from t = 10 s for 20 s)",
                    n - 1
                ),
                DevnetScenario::Calm => " (5 simulated venues per validator)".to_string(),
            }
        ),
    }
    for j in 0..f {
        let api = api_port.saturating_add(u16::try_from(j).unwrap_or(u16::MAX));
        println!(
            "        full node f{j}: API http://127.0.0.1:{api}/v1/status, WebSocket ws://127.0.0.1:{api}/v1/ws"
        );
    }
    if let Some(every) = args.snapshot_every {
        println!("        snapshots every {every} blocks, 3 kept, block logs pruned behind the oldest");
    }
    if let Some((k, at)) = late {
        let who = if k < n { format!("validator v{k}") } else { format!("full node f{}", k - n) };
        println!("        late joiner: {who} starts at t = {at} s with an empty data dir");
    }
    if args.txs_per_block.is_none() {
        println!(
            "        orders submitted {}",
            match args.submit {
                loadgen::Submit::Gossip =>
                    "once each, to one validator in turn, which gossips them over the public network",
                loadgen::Submit::Direct => "to every validator",
            }
        );
    }
    let mut fleet = Fleet { children: Vec::new() };
    // SIGINT or SIGTERM ends the devnet early: its nodes are killed (by the fleet's drop).
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::full::watch_signals(interrupted.clone());
    let all: Vec<PathBuf> = dirs.iter().chain(&full_dirs).cloned().collect();
    let spawn = |k: usize, elapsed: f64| -> Result<Child, String> {
        let dir = &all[k];
        let stderr = std::fs::File::create(dir.join("node.log"))
            .map_err(|e| format!("cannot create {}: {e}", dir.join("node.log").display()))?;
        // The devnet stops its nodes itself (SIGTERM, once the chain has run `--duration`
        // seconds); their own `--duration` is only a backstop should the devnet die first.
        let backstop = args.duration + STARTUP_LIMIT_S + 2.0 * STOP_GRACE_S - elapsed;
        Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(dir.join("node.toml"))
            .arg("--duration")
            .arg(format!("{}", backstop.max(1.0)))
            .arg("--finality-log")
            .arg(dir.join("finality.log"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))
    };
    for k in 0..all.len() {
        let child = if late.is_some_and(|(l, _)| l == k) { None } else { Some(spawn(k, 0.0)?) };
        fleet.children.push(child);
    }
    let mut late_state = LateState::default();

    // The load generator starts at once: it funds the traders by deposits to the source chain,
    // which needs no validator up (they attest the deposits once they are), and it sends orders
    // only once the deposits are credited.
    let mut load: Option<LoadGen> = None;
    let mut loaded = Load::default();
    let mut load_started = false;
    let wants_load = args.txs_per_block.is_none();

    // Progress until every process exits.
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut last_orders = (Instant::now(), 0u64);
    let mut exits = vec![None; n + f];
    // The run's time counts from the first finalized block (a debug build on a loaded box can
    // take seconds to connect its validators); then validators stop, and full nodes
    // `FULL_NODE_TAIL_S` later, so they follow the validators' last blocks.
    let mut first_block: Option<Instant> = None;
    let mut stopped_at: Option<Instant> = None;
    let mut full_stopped = false;
    // The height reached `WARMUP_S` after the first block (steady-state finality counts above it).
    let mut warm_height: Option<u64> = None;
    let mut top_seen = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            println!();
            return Err("interrupted: the devnet's nodes were stopped".into());
        }
        if let Some((k, at)) = late
            && late_state.started_at_s.is_none()
            && start.elapsed().as_secs_f64() >= at
        {
            let t = start.elapsed().as_secs_f64();
            fleet.children[k] = Some(spawn(k, t)?);
            late_state.started_at_s = Some(t);
            late_state.height_at_start = dirs.iter().map(|d| status(d).height).max().unwrap_or(0);
        }
        for (i, c) in fleet.children.iter_mut().enumerate() {
            if exits[i].is_none()
                && let Some(child) = c.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                exits[i] = Some(status);
                *c = None;
            }
        }
        let st: Vec<NodeStatus> = dirs.iter().map(|d| status(d)).collect();
        if let Some((i, why)) = st.iter().enumerate().find_map(|(i, s)| s.halted.clone().map(|w| (i, w))) {
            return Err(format!("validator v{i} halted: {why}"));
        }
        let full: Vec<NodeStatus> = full_dirs.iter().map(|d| status(d)).collect();
        if let Some((j, why)) = full.iter().enumerate().find_map(|(j, s)| s.halted.clone().map(|w| (j, w))) {
            return Err(format!("full node f{j} halted: {why}"));
        }
        let top = st.iter().map(|s| s.height).max().unwrap_or(0);
        top_seen = top_seen.max(top);
        if top > 0 && first_block.is_none() {
            first_block = Some(Instant::now());
        }
        if first_block.is_none() && start.elapsed() > Duration::from_secs_f64(STARTUP_LIMIT_S) {
            println!();
            return Err(format!(
                "no block finalized within {STARTUP_LIMIT_S:.0} s of start; see node.log in each validator dir"
            ));
        }
        if warm_height.is_none() && first_block.is_some_and(|t| t.elapsed().as_secs_f64() >= WARMUP_S) {
            warm_height = Some(top);
        }
        let time_up = first_block.is_some_and(|t| t.elapsed().as_secs_f64() >= args.duration);
        if time_up && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
            (0..n).for_each(|k| fleet.terminate(k));
        }
        if !full_stopped && stopped_at.is_some_and(|t| t.elapsed().as_secs_f64() >= FULL_NODE_TAIL_S) {
            full_stopped = true;
            (n..n + f).for_each(|k| fleet.terminate(k));
        }
        // (A late validator counts once it has caught up.)
        let low = st
            .iter()
            .enumerate()
            .filter(|(i, _)| late.is_none_or(|(l, _)| l != *i) || late_state.caught_up_at_s.is_some())
            .map(|(_, s)| s.height)
            .min()
            .unwrap_or(0);
        if let Some((k, _)) = late
            && late_state.started_at_s.is_some()
            && late_state.caught_up_at_s.is_none()
        {
            let h = status(&all[k]).height;
            if h > 0 && h + 2 >= low {
                late_state.caught_up_at_s = Some(start.elapsed().as_secs_f64());
            }
        }
        if wants_load && !load_started {
            load_started = true;
            load = Some(loadgen::start(
                &spec,
                LoadConfig {
                    targets: spec.validators.iter().filter_map(|v| v.ingress).collect(),
                    traders: args.traders,
                    rate: args.rate,
                    seed: 1,
                    path: path.clone(),
                    submit: args.submit,
                    bridge: Some(source.chain.clone()),
                },
            )?);
        }
        let rate = (top.saturating_sub(last.1)) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), top);
        let mut p50s: Vec<f64> = st.iter().map(|s| s.finality_p50).collect();
        p50s.sort_by(f64::total_cmp);
        let p99 = st.iter().map(|s| s.finality_p99).fold(0.0, f64::max);
        let finalized = st.iter().map(|s| s.orders_finalized).max().unwrap_or(0);
        let orders_rate =
            finalized.saturating_sub(last_orders.1) as f64 / last_orders.0.elapsed().as_secs_f64().max(1e-3);
        last_orders = (Instant::now(), finalized);
        let liq = st.iter().map(|s| s.liquidations).max().unwrap_or(0);
        let adl = st.iter().map(|s| s.adl).max().unwrap_or(0);
        let mempool = st.first().map_or(0, |s| s.mempool);
        if let Some(l) = &load {
            l.stats.height.store(top, std::sync::atomic::Ordering::Relaxed);
            l.stats.finalized.store(finalized, std::sync::atomic::Ordering::Relaxed);
            let credited = st.iter().map(|s| s.credited).max().unwrap_or(0);
            l.stats.credited.store(credited, std::sync::atomic::Ordering::Relaxed);
        }
        let sent = load
            .as_ref()
            .map_or(loaded.orders_submitted, |l| l.stats.orders.load(std::sync::atomic::Ordering::Relaxed));
        let full_low = full.iter().map(|s| s.height).min();
        print!(
            "\r  t={:>5.1}s  height {top:>6} (slowest {low:>6}{})  {rate:>5.1} blocks/s  sent {sent:>7}  finalized {finalized:>7} ({orders_rate:>6.0}/s)  mempool {mempool:>6}  finality p50 {:>5.1} ms p99 {p99:>6.1} ms  liquidations {liq} adl {adl}   ",
            start.elapsed().as_secs_f64(),
            full_low.map_or(String::new(), |h| format!(", full nodes {h:>6}")),
            p50s.get(n / 2).copied().unwrap_or(0.0),
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // The clients stop when the validators' time is up (orders sent to stopped validators
        // would only count as send errors).
        if time_up && let Some(l) = load.take() {
            loaded = stop_load(l)?;
        }
        let late_pending = late.is_some() && late_state.started_at_s.is_none();
        if !late_pending && exits.iter().all(Option::is_some) {
            println!();
            break;
        }
        if stopped_at.is_some_and(|t| t.elapsed().as_secs_f64() > FULL_NODE_TAIL_S + STOP_GRACE_S) {
            println!();
            return Err(format!(
                "nodes did not stop within {STOP_GRACE_S:.0} s of SIGTERM; see node.log in each node's dir"
            ));
        }
    }
    let all_dirs: Vec<&PathBuf> = dirs.iter().chain(&full_dirs).collect();
    for (i, e) in exits.iter().enumerate() {
        if let Some(status) = e
            && !status.success()
        {
            let log = all_dirs[i].join("node.log");
            let tail: String = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(|l| format!("\n    {l}"))
                .collect();
            let who = if i < n { format!("validator v{i}") } else { format!("full node f{}", i - n) };
            return Err(format!("{who} exited with {status}; last lines of {}:{tail}", log.display()));
        }
    }
    let loaded = match load.take() {
        Some(l) => stop_load(l)?,
        None => loaded,
    };
    let full = full_nodes(&dirs, &full_dirs, api_port)?;
    let late = match late {
        Some((k, _)) => Some(late_joiner(&all, k, n, &late_state)?),
        None => None,
    };
    source.stop()?;
    summarize(
        args,
        &spec,
        &path,
        &dirs,
        start.elapsed(),
        loaded,
        Followers {
            full: &full,
            late: late.as_ref(),
            source: &source,
            warm_height: warm_height.unwrap_or(top_seen),
        },
    )
}

/// The `[storage]` table the devnet appends to every node.toml (`--snapshot-every`).
fn storage_table(every: Option<u64>) -> String {
    match every {
        // Small log segments, so the log is pruned as snapshots rotate even on a short run.
        Some(n) => format!("\n[storage]\nsnapshot_every = {n}\nkeep_snapshots = 3\nsegment_kib = 64\n"),
        None => String::new(),
    }
}

/// What the devnet saw of the late joiner while it ran.
#[derive(Debug, Default)]
struct LateState {
    started_at_s: Option<f64>,
    height_at_start: u64,
    caught_up_at_s: Option<f64>,
}

/// The late joiner's figures for the summary.
#[derive(Debug, Clone, serde::Serialize)]
struct LateJoiner {
    /// "validator v3" or "full node f1".
    node: String,
    /// When it started (s) and the validators' height then.
    started_at_s: f64,
    /// See `started_at_s`.
    chain_height_at_start: u64,
    /// The snapshot height it synced from (none: it did not state-sync).
    synced_from_height: Option<u64>,
    /// Bytes of snapshot chunks it downloaded.
    bytes_downloaded: u64,
    /// Seconds from its start of the sync to the state installed.
    sync_seconds: Option<f64>,
    /// When it was within 2 blocks of the slowest validator (s since the devnet started).
    caught_up_at_s: Option<f64>,
    /// Its last height.
    height: u64,
    /// Its state root equals validator 0's at every height both logs hold.
    roots_agree: bool,
    /// Heights compared.
    compared: u64,
}

fn late_joiner(all: &[PathBuf], k: usize, n: usize, seen: &LateState) -> Result<LateJoiner, String> {
    let open = |d: &Path| {
        let path = d.join("data/log");
        BlockLog::open(&path, LogConfig::default())
            .map(|(l, _)| l)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let reference = open(&all[if k == 0 { 1 } else { 0 }])?;
    let log = open(&all[k])?;
    let first = log.first_height().unwrap_or(1).max(reference.first_height().unwrap_or(1));
    let last = log.last_height().unwrap_or(0).min(reference.last_height().unwrap_or(0));
    let mut agree = true;
    let mut compared = 0;
    for h in first..=last {
        let root = |l: &BlockLog| -> Result<[u8; 32], String> {
            let bytes = l.read(h).map_err(|e| format!("height {h}: {e}"))?;
            Ok(LogEntry::decode(&bytes).map_err(|e| format!("height {h}: {e}"))?.root)
        };
        compared += 1;
        if root(&log)? != root(&reference)? {
            agree = false;
            break;
        }
    }
    let v = std::fs::read(all[k].join("data/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    let sync = &v["state_sync"];
    Ok(LateJoiner {
        node: if k < n { format!("validator v{k}") } else { format!("full node f{}", k - n) },
        started_at_s: seen.started_at_s.unwrap_or(0.0),
        chain_height_at_start: seen.height_at_start,
        synced_from_height: sync["synced_from_height"].as_u64(),
        bytes_downloaded: sync["bytes_downloaded"].as_u64().unwrap_or(0),
        sync_seconds: sync["sync_seconds"].as_f64(),
        caught_up_at_s: seen.caught_up_at_s,
        height: log.last_height().unwrap_or(0),
        roots_agree: agree && compared > 0,
        compared,
    })
}

/// A node.toml with its `[public]` table's `listen` commented out (off the public network).
fn off_public_network(toml: &str) -> String {
    match toml.find("\n[public]") {
        Some(at) => {
            let (head, tail) = toml.split_at(at);
            format!("{head}{}", tail.replacen("\nlisten = ", "\n# listen = ", 1))
        }
        None => toml.to_string(),
    }
}

/// One full node's figures for the summary.
#[derive(Debug, Clone, serde::Serialize)]
struct FullNode {
    /// Its API's address.
    api: String,
    /// The height it executed.
    height: u64,
    /// Its state root equals the validators' at every height both hold.
    roots_agree: bool,
    /// Heights compared.
    compared: u64,
    /// 99th percentile of how many certified blocks it had seen but not executed yet.
    lag_blocks_p99: u64,
    /// REST requests its API answered.
    api_requests: u64,
    /// WebSocket messages its API sent.
    ws_messages: u64,
    /// Peak resident memory (VmHWM) of its process, MiB, from its last status file.
    peak_rss_mib: f64,
}

/// Compares every full node's block log with validator 0's and reads its status.
fn full_nodes(dirs: &[PathBuf], full_dirs: &[PathBuf], api_port: u16) -> Result<Vec<FullNode>, String> {
    let mut out = Vec::new();
    if full_dirs.is_empty() {
        return Ok(out);
    }
    let open = |d: &Path| {
        let path = d.join("data/log");
        BlockLog::open(&path, LogConfig::default())
            .map(|(l, _)| l)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let reference = open(&dirs[0])?;
    for (j, d) in full_dirs.iter().enumerate() {
        let log = open(d)?;
        let first = log.first_height().unwrap_or(1).max(reference.first_height().unwrap_or(1));
        let last = log.last_height().unwrap_or(0).min(reference.last_height().unwrap_or(0));
        let mut agree = true;
        let mut compared = 0;
        for h in first..=last {
            let root = |l: &BlockLog| -> Result<[u8; 32], String> {
                let bytes = l.read(h).map_err(|e| format!("height {h}: {e}"))?;
                Ok(LogEntry::decode(&bytes).map_err(|e| format!("height {h}: {e}"))?.root)
            };
            compared += 1;
            if root(&log).map_err(|e| format!("f{j} {e}"))?
                != root(&reference).map_err(|e| format!("v0 {e}"))?
            {
                agree = false;
                break;
            }
        }
        let v = std::fs::read(d.join("data/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        out.push(FullNode {
            api: format!("127.0.0.1:{}", api_port.saturating_add(u16::try_from(j).unwrap_or(u16::MAX))),
            height: log.last_height().unwrap_or(0),
            roots_agree: agree && compared > 0,
            compared,
            lag_blocks_p99: v["lag_blocks_p99"].as_u64().unwrap_or(0),
            api_requests: v["api_requests"].as_u64().unwrap_or(0),
            ws_messages: v["ws_messages"].as_u64().unwrap_or(0),
            peak_rss_mib: v["peak_rss_mib"].as_f64().unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// Stops the load generator and reads its counters.
fn stop_load(l: LoadGen) -> Result<Load, String> {
    let s = l.stats.clone();
    l.stop()?;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Load {
        orders_submitted: get(&s.orders),
        deposits_sent: get(&s.deposits),
        send_errors: get(&s.send_errors),
        trading_cpu_s: get(&s.trading_cpu_us) as f64 / 1e6,
        trading_wall_s: get(&s.trading_wall_us) as f64 / 1e6,
    })
}

/// What the load generator sent, and what it cost.
#[derive(Default)]
struct Load {
    orders_submitted: u64,
    deposits_sent: u64,
    send_errors: u64,
    /// CPU seconds of its thread while trading (signing and sending).
    trading_cpu_s: f64,
    /// Wall seconds of the trading phase.
    trading_wall_s: f64,
}

/// What ran beside the validators: the full nodes started with them, the late joiner, and the
/// simulated source chain.
struct Followers<'a> {
    full: &'a [FullNode],
    late: Option<&'a LateJoiner>,
    source: &'a crate::devnet_bridge::Source,
    /// The height the chain had reached `WARMUP_S` after its first block.
    warm_height: u64,
}

/// Checks the roots at every common height, replays validator 0's chain from genesis and
/// builds the summary.
fn summarize(
    args: &DevnetArgs,
    spec: &ChainSpec,
    path: &bastion_exchange::scenario::PricePath,
    dirs: &[PathBuf],
    elapsed: Duration,
    load: Load,
    followers: Followers<'_>,
) -> Result<String, String> {
    let Followers { full, late, source, warm_height } = followers;
    let mut logs = Vec::new();
    for d in dirs {
        let path = d.join("data/log");
        let (log, _) = BlockLog::open(&path, LogConfig::default())
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        logs.push(log);
    }
    let common = logs.iter().map(|l| l.last_height().unwrap_or(0)).min().unwrap_or(0);
    let top = logs.iter().map(|l| l.last_height().unwrap_or(0)).max().unwrap_or(0);
    let first = logs.iter().map(|l| l.first_height().unwrap_or(1)).max().unwrap_or(1);
    let mut disagree = None;
    for h in first..=common {
        let mut roots = Vec::new();
        for (i, log) in logs.iter().enumerate() {
            let bytes = log.read(h).map_err(|e| format!("v{i} height {h}: {e}"))?;
            let entry = LogEntry::decode(&bytes).map_err(|e| format!("v{i} height {h}: {e}"))?;
            roots.push(entry.root);
        }
        if roots.iter().any(|r| *r != roots[0]) && disagree.is_none() {
            disagree = Some((h, roots.iter().map(|r| hex(r)).collect::<Vec<_>>()));
        }
    }

    // Replay validator 0's whole chain from genesis: every root must match its log, and the
    // exchange's figures come from the replay.
    let mut state = State::from_genesis(&spec.exchange).map_err(|e| format!("genesis: {e}"))?;
    let fund_start = state.insurance_fund();
    let mut fund_min = fund_start;
    let (mut orders, mut deposits, mut rejected, mut fills, mut liquidations, mut adl) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first_liquidation_ms = None;
    // What the insurance fund paid for bankrupt liquidations and negative balances, and took in
    // liquidation fees.
    let (mut fund_paid, mut fund_paid_for, mut fund_fees) = (0i128, 0u64, 0i128);
    let mut oracle = OracleFigures::default();
    let mut bridge = crate::devnet_bridge::BridgeFigures::default();
    let v0_last = logs.first().and_then(|l| l.last_height()).unwrap_or(0);
    let replayable = logs.first().and_then(|l| l.first_height()).is_none_or(|f| f <= 1);
    if replayable {
        for h in 1..=v0_last {
            let bytes = logs[0].read(h).map_err(|e| format!("v0 height {h}: {e}"))?;
            let entry = LogEntry::decode(&bytes).map_err(|e| format!("v0 height {h}: {e}"))?;
            let out =
                state.apply_block(&entry.block).map_err(|e| format!("replaying v0 height {h}: {e:?}"))?;
            if out.root != entry.root {
                return Err(format!(
                    "replaying v0's block log from genesis gives root {} at height {h}, the log holds {}",
                    hex(&out.root),
                    hex(&entry.root)
                ));
            }
            oracle.block(&state, &entry.block, &out.events, path);
            bridge.block(&entry.block, &out.events);
            orders += entry.block.txs.iter().filter(|tx| !matches!(tx.action, Action::Deposit { .. })).count()
                as u64;
            for e in &out.events {
                match e {
                    Event::Rejected { .. } => rejected += 1,
                    Event::Deposited { .. } => deposits += 1,
                    Event::Fill { .. } => fills += 1,
                    Event::Liquidated { insurance_delta, .. } => {
                        liquidations += 1;
                        first_liquidation_ms.get_or_insert(entry.block.timestamp_ms);
                        if *insurance_delta < 0 {
                            fund_paid += -insurance_delta;
                            fund_paid_for += 1;
                        } else {
                            fund_fees += insurance_delta;
                        }
                    }
                    Event::Deleveraged { .. } => adl += 1,
                    Event::InsuranceCovered { amount, .. } => {
                        fund_paid += amount;
                        fund_paid_for += 1;
                    }
                    _ => {}
                }
            }
            fund_min = fund_min.min(state.insurance_fund());
        }
    }
    let fund_end = state.insurance_fund();
    // The relayer presents every voucher 2/3 of stake signed to the source chain, which pays
    // each once; then both chains' logs are checked against each other.
    let bridge_json = if replayable {
        let (presented, refused) = source.relay(&state)?;
        bridge.summary(&source.ledger()?, (presented, &refused))
    } else {
        serde_json::Value::Null
    };
    // What each validator refused of its peers' observations (by reason), and the evidence
    // they recorded of validators signing two observations for one height.
    let mut oracle_status: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut evidence = 0u64;
    for d in dirs {
        let v = std::fs::read(d.join("data/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        if let Some(m) = v["observations_rejected"].as_object() {
            for (k, n) in m {
                *oracle_status.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        evidence += v["observation_evidence"].as_u64().unwrap_or(0);
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
    let mut steady = hist.clone();
    for d in dirs {
        let text = std::fs::read_to_string(d.join("finality.log")).unwrap_or_default();
        for line in text.lines() {
            let mut fields = line.split_whitespace().map(|v| v.parse::<u64>().ok());
            if let (Some(Some(h)), Some(Some(us))) = (fields.next(), fields.next()) {
                let _ = hist.record(us.max(1));
                if h > warm_height {
                    let _ = steady.record(us.max(1));
                }
            }
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let steady_ms = |q: f64| steady.value_at_quantile(q) as f64 / 1000.0;
    let usd = |m: i128| m as f64 / 1e6;
    let agree = disagree.is_none();
    let secs = elapsed.as_secs_f64();
    let mut out = String::new();
    let _ =
        writeln!(out, "devnet summary ({} validators, {secs:.1} s, scenario {})", dirs.len(), args.scenario);
    let _ = writeln!(out, "  finalized height     {top} (all validators hold 1..={common})");
    let _ = writeln!(out, "  blocks/s             {:.1}", top as f64 / secs);
    if !replayable {
        let _ = writeln!(
            out,
            "  orders               {} submitted, {} deposits sent (finalized counts need the whole chain)",
            load.orders_submitted, load.deposits_sent
        );
    } else if args.txs_per_block.is_none() {
        let _ = writeln!(
            out,
            "  orders               {} submitted, {orders} finalized ({:.0}/s), {rejected} rejected by the exchange",
            load.orders_submitted,
            orders as f64 / secs
        );
        let _ = writeln!(
            out,
            "  deposits             {} sent (with resends), {deposits} credited",
            load.deposits_sent
        );
    } else {
        let _ =
            writeln!(out, "  transactions         {orders} finalized, {rejected} rejected by the exchange");
    }
    if load.trading_wall_s > 0.0 {
        let _ = writeln!(
            out,
            "  load generator       {:.1} CPU-s signing and sending over {:.1} s of trading ({:.0}% of a core)",
            load.trading_cpu_s,
            load.trading_wall_s,
            100.0 * load.trading_cpu_s / load.trading_wall_s
        );
    }
    if load.send_errors > 0 {
        let _ = writeln!(out, "  send errors          {} datagrams the kernel refused", load.send_errors);
    }
    if replayable {
        let _ = writeln!(out, "  fills                {fills}");
        let _ = writeln!(
            out,
            "  liquidations         {liquidations} (first at t = {}), auto-deleveraging events {adl}",
            first_liquidation_ms.map_or("-".to_string(), |t| format!(
                "{:.1} s",
                t.saturating_sub(spec.exchange.timestamp_ms) as f64 / 1e3
            ))
        );
        let _ = writeln!(
            out,
            "  insurance fund       {:.2} USDC at genesis, {:.2} lowest, {:.2} at the end; paid {:.2} for {} \
             bankrupt liquidations and negative balances, took {:.2} in liquidation fees",
            usd(fund_start),
            usd(fund_min),
            usd(fund_end),
            usd(fund_paid),
            fund_paid_for,
            usd(fund_fees)
        );
        let b = &bridge_json;
        let _ = writeln!(
            out,
            "  bridge               {} deposits seen on the source, {} credited ({:.2} USDC) by 2/3 of stake's \
             attestations, {} by the authority key",
            b["deposits_seen"],
            b["deposits_credited"],
            b["credited_amount"].as_f64().unwrap_or(0.0),
            b["authority_deposits"]
        );
        let _ = writeln!(
            out,
            "                       {} withdrawals, {} vouchers signed by 2/3 of stake, {} paid on the source{}; \
             conservation across both chains {} ({} heights checked)",
            b["withdrawals"],
            b["vouchers_completed"],
            b["vouchers_paid"],
            match b["vouchers_refused_count"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n if b["authority_deposits"] != 0 => {
                    format!(" ({n} refused: the bridge never received what the devnet authority minted)")
                }
                n => format!(" ({n} REFUSED)"),
            },
            b["conservation"].as_str().unwrap_or("-"),
            b["conservation_heights_checked"]
        );
    } else {
        let _ = writeln!(
            out,
            "  exchange figures     not available: v0's log starts at height {} (pruned after snapshots, \
             --snapshot-every), and they come from replaying the whole chain",
            logs.first().and_then(|l| l.first_height()).unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "  finality (ms)        p50 {:.1}  p99 {:.1}  p999 {:.1}  ({} proposals, from proposal built to finalized)",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.len()
    );
    let _ = writeln!(
        out,
        "  after warm-up (ms)   p50 {:.1}  p99 {:.1}  p999 {:.1}  ({} proposals above height {warm_height}, {WARMUP_S:.0} s after the first block)",
        steady_ms(0.5),
        steady_ms(0.99),
        steady_ms(0.999),
        steady.len()
    );
    // Peak resident memory per process, from the last status file each wrote.
    let rss = |d: &PathBuf| -> f64 {
        std::fs::read(d.join("data/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["peak_rss_mib"].as_f64())
            .unwrap_or(0.0)
    };
    let rss_validators: Vec<f64> = dirs.iter().map(rss).collect();
    let rss_full: Vec<f64> = full.iter().map(|f| f.peak_rss_mib).collect();
    let _ = writeln!(
        out,
        "  peak RSS (MiB)       validators {}{}",
        rss_validators.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" / "),
        if rss_full.is_empty() {
            String::new()
        } else {
            format!(
                ", full nodes {}",
                rss_full.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" / ")
            )
        }
    );
    let rejected_obs: u64 = oracle_status.values().sum();
    if replayable {
        let _ = writeln!(
            out,
            "  oracle               {} index updates, {} stale blocks, index at most {:.2}% from the true price; \
             {} observations included, {rejected_obs} rejected, {} evidence; lying stake {:.0}%",
            oracle.updates,
            oracle.stale_blocks,
            oracle.max_deviation_ppm as f64 / 1e4,
            oracle.included,
            evidence,
            args.scenario.lying_stake_ppm(dirs.len()) as f64 / 1e4,
        );
    }
    for (j, fnode) in full.iter().enumerate() {
        let _ = writeln!(
            out,
            "  full node f{j}         height {}, roots agree with the validators {} ({} heights), lag p99 {} blocks, API {} ({} requests, {} WebSocket messages)",
            fnode.height,
            if fnode.roots_agree { "yes" } else { "NO" },
            fnode.compared,
            fnode.lag_blocks_p99,
            fnode.api,
            fnode.api_requests,
            fnode.ws_messages
        );
    }
    if let Some(l) = late {
        let _ = writeln!(
            out,
            "  late joiner          {} started at t = {:.1} s (chain at {}): {}, caught up {}, height {}, roots agree with v0 {} ({} heights)",
            l.node,
            l.started_at_s,
            l.chain_height_at_start,
            match (l.synced_from_height, l.sync_seconds) {
                (Some(h), Some(s)) => format!(
                    "state-synced from height {h} ({:.1} MiB in {s:.1} s)",
                    l.bytes_downloaded as f64 / f64::from(1u32 << 20)
                ),
                _ => "did not state-sync (replayed blocks its peers still held)".to_string(),
            },
            l.caught_up_at_s.map_or("never".to_string(), |t| format!("at t = {t:.1} s")),
            l.height,
            if l.roots_agree { "yes" } else { "NO" },
            l.compared
        );
    }
    let _ = write!(
        out,
        "  state roots agree    {} (heights {first}..={common} on every validator{})",
        if agree { "yes" } else { "NO" },
        if replayable { "; v0's log replays from genesis to the same roots" } else { "" }
    );
    if let Some(path) = &args.json {
        // The exchange's figures come from the replay: null when v0's log was pruned.
        let known = |v: u64| replayable.then_some(v);
        let summary = json!({
            "validators": dirs.len(),
            "duration_s": secs,
            "scenario": args.scenario.to_string(),
            "ingress": args.ingress.to_string(),
            "rate": args.rate,
            "traders": args.traders,
            "finalized_height": top,
            "common_height": common,
            "orders_submitted": load.orders_submitted,
            "orders_finalized": known(orders),
            "orders_rejected": known(rejected),
            "deposits_sent": load.deposits_sent,
            "deposits_finalized": known(deposits),
            "send_errors": load.send_errors,
            "loadgen_trading_cpu_s": load.trading_cpu_s,
            "loadgen_trading_s": load.trading_wall_s,
            "fills": known(fills),
            "liquidations": known(liquidations),
            "adl_events": known(adl),
            "insurance_fund_start": replayable.then_some(fund_start as f64 / 1e6),
            "insurance_fund_min": replayable.then_some(fund_min as f64 / 1e6),
            "insurance_fund_end": replayable.then_some(fund_end as f64 / 1e6),
            "insurance_fund_paid": replayable.then_some(fund_paid as f64 / 1e6),
            "insurance_fund_paid_for": replayable.then_some(fund_paid_for),
            "insurance_fund_fees": replayable.then_some(fund_fees as f64 / 1e6),
            "bridge": bridge_json,
            "finality_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999) },
            "finality_after_warmup_ms": {
                "p50": steady_ms(0.5), "p99": steady_ms(0.99), "p999": steady_ms(0.999),
                "samples": steady.len(), "above_height": warm_height,
            },
            "replayed_from_genesis": replayable,
            "submit": args.submit.to_string(),
            "full_nodes": full,
            "peak_rss_mib": { "validators": rss_validators, "full_nodes": rss_full },
            "late_joiner": late,
            "snapshot_every": args.snapshot_every,
            "state_roots_agree": agree,
            "oracle": {
                "updates": oracle.updates,
                "stale_blocks": oracle.stale_blocks,
                "max_index_deviation_ppm": oracle.max_deviation_ppm,
                "lying_stake_ppm": args.scenario.lying_stake_ppm(dirs.len()),
                "observations_included": oracle.included,
                "observations_rejected": oracle_status,
                "evidence": evidence,
                "observe_every_ms": args.observe_every_ms,
            },
        });
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if bridge_json["conservation_holds"] == serde_json::Value::Bool(false) {
        return Err(format!(
            "{out}\nthe bridge's books do not balance across the two chains: {}",
            bridge_json["conservation"]
        ));
    }
    // Funds the devnet authority minted (the synthetic workload) never reached the source
    // chain's bridge, so the source rightly refuses to pay vouchers for them; with every deposit
    // from the bridge, a refused voucher is a failure.
    if bridge_json["authority_deposits"] == 0
        && !bridge_json["vouchers_refused"].as_array().is_none_or(Vec::is_empty)
    {
        return Err(format!(
            "{out}\nthe source chain refused vouchers 2/3 of stake signed: {}",
            bridge_json["vouchers_refused"]
        ));
    }
    if let Some(l) = late
        && !l.roots_agree
    {
        return Err(format!(
            "{out}\nthe late joiner's state roots differ from validator 0's (or it executed nothing)"
        ));
    }
    if let Some((j, _)) = full.iter().enumerate().find(|(_, f)| !f.roots_agree) {
        return Err(format!(
            "{out}\nfull node f{j}'s state roots differ from the validators' (or it executed nothing)"
        ));
    }
    match disagree {
        None => Ok(out),
        Some((h, roots)) => Err(format!("{out}\nstate roots differ at height {h}: {roots:?}")),
    }
}

/// The oracle's figures over a replayed chain.
#[derive(Debug, Default)]
struct OracleFigures {
    /// Index moves (`Event::Index`).
    updates: u64,
    /// Blocks at whose time some underlying's index was older than `staleness_ms` (or unset).
    stale_blocks: u64,
    /// Largest distance between an index and the true price at its block's time, ppm.
    max_deviation_ppm: i64,
    /// Signed observations carried by blocks.
    included: u64,
}

impl OracleFigures {
    /// Folds in one replayed block (`state` is the state after it).
    fn block(
        &mut self,
        state: &State,
        block: &bastion_types::Block,
        events: &[Event],
        path: &bastion_exchange::scenario::PricePath,
    ) {
        self.included += block.oracle.len() as u64;
        self.updates += events.iter().filter(|e| matches!(e, Event::Index { .. })).count() as u64;
        let mut stale = false;
        for (u, und) in state.underlyings.iter().enumerate() {
            if und.index <= 0 || block.timestamp_ms.saturating_sub(und.updated_ms) > state.oracle.staleness_ms
            {
                stale = true;
                continue;
            }
            if let Some(truth) = path.price(u, block.timestamp_ms).filter(|t| *t > 0) {
                let dev = (i128::from(und.index) - i128::from(truth)).abs() * 1_000_000 / i128::from(truth);
                self.max_deviation_ppm = self.max_deviation_ppm.max(i64::try_from(dev).unwrap_or(i64::MAX));
            }
        }
        if stale {
            self.stale_blocks += 1;
        }
    }
}
