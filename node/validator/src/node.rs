//! `bastion run`: one validator in production: commonware's tokio runtime, authenticated p2p
//! (`lookup`: a fixed validator set with known addresses, SAKE handshakes over the validators'
//! ed25519 identities, encrypted links), Simplex with bls12381 multisig certificates, and the
//! exchange and store behind it. The consensus journal lives in `<data_dir>/consensus`, the
//! block log and snapshots in `<data_dir>` itself, evidence in `<data_dir>/evidence.log`, and a
//! status file `<data_dir>/status.json` is rewritten every second.
//!
//! Client transactions arrive over UDP through the ingress pipeline (net, verify, admission
//! tiles on their own threads, see [`crate::pipeline`]) into the mempool the proposer builds
//! blocks from; `block_source = "synthetic"` replaces that with a signed synthetic workload
//! (consensus benchmarks). Metrics are served in Prometheus text format when `[metrics]
//! listen` is set.

use crate::metrics::{self, Registry};
use crate::pipeline::{self, Mempool, PinConfig, PipelineConfig};
use crate::telemetry::Telemetry;
use bastion_consensus::{
    Application, BlockLimits, BlockSource, ChainSpec, Config as AppConfig, Ledger, Multisig, Synthetic,
    TxSource, ValidatorKeys,
    engine::{self, Timeouts},
};
use bastion_exchange::State;
use bastion_store::{Store, hex};
use bastion_types::{AccountId, Tx, TxAuth};
use commonware_consensus::simplex;
use commonware_cryptography::{ChaCha20Poly1305, ed25519, sha256::Digest};
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Clock as _, Quota, Runner as _, Spawner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tracing::{error, info, warn};

/// Finalized heights the node's ledger remembers (older ones are served from the block log).
const LEDGER_KEEP: u64 = 100_000;

/// A validator's config file (TOML). Relative paths are relative to the file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The chain's genesis file (`bastion init` writes it).
    pub genesis: PathBuf,
    /// `validator` (the default) or `full` (no keys; follows the chain over `[public]`).
    #[serde(default)]
    pub role: crate::public::Role,
    /// This validator's keys file (mode 0600); required for validators, unused by full nodes.
    #[serde(default)]
    pub keys: PathBuf,
    /// The data dir: block log, snapshots, consensus journal, evidence, status.
    pub data_dir: PathBuf,
    /// Log level: error, warn, info, debug or trace.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Address the p2p listener binds (default: this validator's address in the genesis file).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Runtime worker threads.
    #[serde(default = "default_workers")]
    pub worker_threads: usize,
    /// Consensus timing.
    #[serde(default)]
    pub consensus: Timeouts,
    /// Where proposals' transactions come from: `mempool` (clients over UDP, the default) or
    /// `synthetic` (the signed workload generator of `[workload]`; needs the devnet authority).
    #[serde(default = "default_source")]
    pub block_source: String,
    /// The synthetic workload (`block_source = "synthetic"`).
    #[serde(default)]
    pub workload: Workload,
    /// Client transaction ingress (UDP).
    #[serde(default)]
    pub ingress: IngressSection,
    /// The ingress pipeline's tiles, rings and mempool.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// The metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// This validator's price sources (`bastion-oracle`); absent: it signs no observations
    /// (it still checks and executes everyone else's).
    #[serde(default)]
    pub oracle: Option<bastion_oracle::OracleConfig>,
    /// The public libp2p network (full nodes, transaction and block gossip).
    #[serde(default)]
    pub public: crate::public::PublicSection,
    /// The public REST and WebSocket API.
    #[serde(default)]
    pub api: crate::public::ApiSection,
    /// Snapshots and log retention.
    #[serde(default)]
    pub storage: crate::state_sync::StorageSection,
    /// State sync: when to sync, what to trust, what to serve.
    #[serde(default)]
    pub state_sync: crate::state_sync::StateSyncSection,
    /// The bridge's source chain this validator watches and attests deposits from.
    #[serde(default)]
    pub bridge: crate::bridge::BridgeSection,
    /// Who evaluates the liquidation sweep's portfolio grids: the CPU or the GPU.
    #[serde(default)]
    pub risk: crate::gpu_risk::RiskSection,
    /// What `bastion configure` tunes on the host (hugepages, sysctls, governor, IRQs, limits).
    #[serde(default)]
    pub host: crate::configure::HostSection,
}

/// The `[workload]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Trader accounts the generator uses.
    pub traders: u64,
    /// Transactions per block.
    pub txs_per_block: usize,
}

impl Default for Workload {
    fn default() -> Self {
        let s = Synthetic::default();
        Workload { traders: s.traders, txs_per_block: s.txs_per_block }
    }
}

/// The `[ingress]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSection {
    /// UDP address to bind (default: this validator's `ingress` in the genesis file).
    pub listen: Option<SocketAddr>,
    /// `sockets` (recvmmsg), `io_uring` (multishot receive), `af_xdp` or `dpdk` (kernel bypass;
    /// cargo features of the same names).
    pub backend: String,
    /// Backend to use when `backend` cannot be opened (`sockets` or `io_uring`); none: fail.
    pub fallback: Option<String>,
    /// Kernel bypass: the network interface (AF_XDP attaches to it; DPDK's `net_af_packet`).
    pub iface: Option<String>,
    /// Kernel bypass: receive queues, one socket or DPDK queue each.
    pub queues: u16,
    /// AF_XDP attach mode: `auto`, `skb`, `drv` or `zero_copy`.
    pub xdp_mode: String,
    /// Kernel bypass: UMEM frames (AF_XDP) or mbufs (DPDK) per queue.
    pub frames: u32,
    /// Kernel bypass: descriptors per ring.
    pub ring_size: u32,
    /// DPDK EAL arguments (default: one core, no hugepages, no PCI, and `net_af_packet` on
    /// `iface` when set).
    pub eal_args: Vec<String>,
    /// DPDK port id.
    pub dpdk_port: u16,
    /// DPDK: the MAC to answer ARP with, `aa:bb:cc:dd:ee:ff` (default: the port's).
    pub mac: Option<String>,
}

impl Default for IngressSection {
    fn default() -> Self {
        let b = bastion_net::BypassConfig::default();
        IngressSection {
            listen: None,
            backend: "sockets".into(),
            fallback: None,
            iface: None,
            queues: b.queues,
            xdp_mode: b.xdp_mode.name().into(),
            frames: b.frames,
            ring_size: b.ring_size,
            eal_args: Vec::new(),
            dpdk_port: 0,
            mac: None,
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl IngressSection {
    /// The ingress configuration for `bind`, and the fallback backend; errors name the key.
    pub fn to_config(
        &self,
        bind: SocketAddr,
    ) -> Result<(bastion_net::IngressConfig, Option<bastion_net::Backend>), String> {
        let backend: bastion_net::Backend = self.backend.parse().map_err(|_| {
            format!("key `ingress.backend` is {:?}; allowed: sockets, io_uring, af_xdp, dpdk", self.backend)
        })?;
        let fallback = match self.fallback.as_deref() {
            None => None,
            Some(f) => match f.parse::<bastion_net::Backend>() {
                Ok(b) if !b.is_bypass() => Some(b),
                _ => return Err(format!("key `ingress.fallback` is {f:?}; allowed: sockets, io_uring")),
            },
        };
        let xdp_mode = self.xdp_mode.parse().map_err(|e| format!("key `ingress.xdp_mode`: {e}"))?;
        let mac = match &self.mac {
            None => None,
            Some(m) => Some(
                parse_mac(m)
                    .ok_or_else(|| format!("key `ingress.mac` is {m:?}; expected aa:bb:cc:dd:ee:ff"))?,
            ),
        };
        if self.queues == 0 || self.frames == 0 || !self.ring_size.is_power_of_two() {
            return Err(format!(
                "keys `ingress.queues` ({}), `ingress.frames` ({}) must be at least 1 and `ingress.ring_size` \
                 ({}) a power of two",
                self.queues, self.frames, self.ring_size
            ));
        }
        let mut cfg = bastion_net::IngressConfig::new(bind, backend);
        cfg.bypass = bastion_net::BypassConfig {
            iface: self.iface.clone(),
            queues: self.queues,
            xdp_mode,
            frames: self.frames,
            ring_size: self.ring_size,
            eal_args: self.eal_args.clone(),
            dpdk_port: self.dpdk_port,
            mac,
        };
        Ok((cfg, fallback))
    }
}

/// The `[pipeline]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Frames each ring holds (about 1.2 KiB each, allocated at start).
    pub ring_frames: usize,
    /// Most signatures verified in one batch.
    pub verify_batch: usize,
    /// Time budget of one verify call, µs (over it counts an overrun).
    pub verify_budget_us: u64,
    /// Signature backend of the verify tile: scalar, batch or parallel (all cores).
    pub verifier: String,
    /// Admitted transactions the mempool holds.
    pub mempool_max: usize,
    /// Transactions per second one account may send (0: unlimited).
    pub rate_per_account: u32,
    /// Burst above the rate one account may send.
    pub burst_per_account: u32,
    /// Recent signatures remembered to refuse exact duplicates.
    pub dedup_window: usize,
    /// Most transactions in one block this validator proposes (at most the chain spec's
    /// `block_txs_max`, which every validator decodes and verifies under).
    pub block_txs_max: usize,
    /// Core the net tile is pinned to (none: not pinned).
    pub pin_net: Option<usize>,
    /// Core the verify tile is pinned to.
    pub pin_verify: Option<usize>,
    /// Core the admission tile is pinned to.
    pub pin_admission: Option<usize>,
    /// Core the storage tile (the block log's appends and `fdatasync`s, snapshot hand-offs) is
    /// pinned to.
    pub pin_storage: Option<usize>,
    /// Core the execution tile (speculative execution of proposals) is pinned to.
    pub pin_execution: Option<usize>,
    /// Run the store and block execution on their own tiles (the default); `false` keeps
    /// both on the consensus actor's thread, as before issue 21, so a benchmarker can compare
    /// the two on one machine (`bastion-perf consensus` does) and an operator can fall back.
    pub consensus_tiles: bool,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            ring_frames: 16_384,
            verify_batch: 256,
            verify_budget_us: 5_000,
            verifier: "batch".into(),
            mempool_max: 262_144,
            rate_per_account: 1_000,
            burst_per_account: 2_000,
            dedup_window: 1 << 20,
            block_txs_max: 4_096,
            pin_net: None,
            pin_verify: None,
            pin_admission: None,
            pin_storage: None,
            pin_execution: None,
            consensus_tiles: true,
        }
    }
}

/// The largest message on the validator links: a consensus message, or a block-channel message
/// (a tag byte and a block under `limits`).
pub fn p2p_max_message_size(validators: usize, limits: &BlockLimits) -> u32 {
    commonware_p2p::max_message_size(&[
        simplex::max_payload_size::<Multisig, Digest>(u32::try_from(validators).unwrap_or(u32::MAX)),
        limits.max_encoded_bytes().saturating_add(1),
    ])
}

/// The `[metrics]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// HTTP address serving `/metrics` (Prometheus text) and `/health`; none: no endpoint.
    pub listen: Option<SocketAddr>,
}

fn default_source() -> String {
    "mempool".into()
}

fn default_log_level() -> String {
    "info".into()
}

fn default_workers() -> usize {
    2
}

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl NodeConfig {
    /// Reads and checks a config file; every error names the file and the key.
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let key = cfg.public.key.as_mut();
        for p in [&mut cfg.genesis, &mut cfg.keys, &mut cfg.data_dir].into_iter().chain(key) {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        if cfg.role == crate::public::Role::Validator && cfg.keys.as_os_str().is_empty() {
            return Err(format!(
                "{}: key `keys` is required for a validator (or set `role = \"full\"`)",
                path.display()
            ));
        }
        crate::public::check(path, cfg.role, &cfg.public, &cfg.api)?;
        cfg.storage.check(path)?;
        cfg.state_sync.check(path)?;
        cfg.risk.check(path)?;
        cfg.host.check(path)?;
        if !LOG_LEVELS.contains(&cfg.log_level.as_str()) {
            return Err(format!(
                "{}: key `log_level` is {:?}; allowed: {}",
                path.display(),
                cfg.log_level,
                LOG_LEVELS.join(", ")
            ));
        }
        if !(1..=64).contains(&cfg.worker_threads) {
            return Err(format!(
                "{}: key `worker_threads` is {}; allowed: 1 to 64",
                path.display(),
                cfg.worker_threads
            ));
        }
        if cfg.workload.traders == 0 || cfg.workload.txs_per_block == 0 {
            return Err(format!(
                "{}: keys `workload.traders` and `workload.txs_per_block` must be at least 1",
                path.display()
            ));
        }
        let file = path.display();
        if !["mempool", "synthetic"].contains(&cfg.block_source.as_str()) {
            return Err(format!(
                "{file}: key `block_source` is {:?}; allowed: mempool, synthetic",
                cfg.block_source
            ));
        }
        // Checked against a placeholder address: the real one may come from the genesis file.
        let (ingress, fallback) =
            cfg.ingress.to_config(SocketAddr::from(([0, 0, 0, 0], 1))).map_err(|e| format!("{file}: {e}"))?;
        if !ingress.backend.compiled_in() && fallback.is_none() {
            return Err(format!(
                "{file}: key `ingress.backend` is {}, which this binary was built without: rebuild with \
                 `cargo build --release -p bastion --features {}`, or set `ingress.fallback = \"sockets\"`",
                ingress.backend, ingress.backend
            ));
        }
        let p = &cfg.pipeline;
        // `gpu` is accepted here and fails at start-up, naming what is missing, where no GPU
        // opens; `auto` uses a GPU only where one opens.
        if p.verifier.parse::<bastion_accel::Selection>().is_err() {
            return Err(format!(
                "{file}: key `pipeline.verifier` is {:?}; allowed: scalar, batch, parallel, auto, gpu",
                p.verifier
            ));
        }
        for (key, v, lo, hi) in [
            ("ring_frames", p.ring_frames, 16, 1 << 22),
            ("verify_batch", p.verify_batch, 1, 65_536),
            ("mempool_max", p.mempool_max, 1, 1 << 26),
            ("dedup_window", p.dedup_window, 1, 1 << 26),
            ("block_txs_max", p.block_txs_max, 1, bastion_exchange::BLOCK_TXS_MAX),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{file}: key `pipeline.{key}` is {v}; allowed: {lo} to {hi}"));
            }
        }
        if p.verify_budget_us == 0 {
            return Err(format!("{file}: key `pipeline.verify_budget_us` must be at least 1"));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (key, core) in [
            ("pin_net", p.pin_net),
            ("pin_verify", p.pin_verify),
            ("pin_admission", p.pin_admission),
            ("pin_storage", p.pin_storage),
            ("pin_execution", p.pin_execution),
        ] {
            if let Some(c) = core
                && c >= cpus
            {
                return Err(format!(
                    "{file}: key `pipeline.{key}` is core {c}; this machine has cores 0 to {}",
                    cpus - 1
                ));
            }
        }
        Ok(cfg)
    }
}

/// Options of one run beyond the config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop cleanly once this height is finalized and durable.
    pub until_height: Option<u64>,
    /// Stop cleanly after this long.
    pub duration: Option<Duration>,
    /// Append `height latency_us` for each of this validator's own finalized proposals.
    pub finality_log: Option<PathBuf>,
    /// State-sync at start (`bastion run --state-sync`), whatever the node's height.
    pub state_sync: bool,
    /// A trust point from the command line (overrides `[state_sync]`'s).
    pub trust: Option<bastion_statesync::TrustPoint>,
}

/// What `status.json` holds (rewritten every second).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The chain id.
    pub chain_id: String,
    /// This validator's name in the genesis file.
    pub validator: String,
    /// Highest finalized height executed (the storage tile syncs its log entry in the group
    /// commit that follows; `bastion_durable_height` in the metrics is the synced one).
    pub height: u64,
    /// State root at that height (hex).
    pub root: String,
    /// Why this validator halted, if it did.
    pub halted: Option<String>,
    /// Evidence of faults recorded so far.
    pub faults: usize,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Own proposals finalized since start.
    pub own_finalized: u64,
    /// Finality of own proposals since start (ms): p50, p99, p999, max.
    pub finality_ms: [f64; 4],
    /// Transactions finalized since start.
    pub orders_finalized: u64,
    /// Liquidations since start.
    pub liquidations: u64,
    /// Auto-deleveraging events since start.
    pub adl_events: u64,
    /// The insurance fund after the last block finalized since start (quote micro-units).
    pub insurance_fund: Option<i128>,
    /// Transactions waiting in the mempool.
    pub mempool: usize,
    /// Where the ingress listens (UDP), when the mempool is the block source.
    pub ingress: Option<String>,
    /// Where the metrics endpoint listens.
    pub metrics: Option<String>,
    /// The state sync this validator ran at start, if it ran one.
    #[serde(default)]
    pub state_sync: Option<crate::state_sync::SyncStatus>,
    /// Observations this validator signed since start.
    #[serde(default)]
    pub observations_signed: u64,
    /// The bridge since start: deposits seen, attested, credited; vouchers signed, completed;
    /// the source's height and how far crediting lags it.
    #[serde(default)]
    pub bridge: bastion_consensus::BridgeTotals,
    /// Peers' observations refused since start, by reason.
    #[serde(default)]
    pub observations_rejected: std::collections::BTreeMap<String, u64>,
    /// Signed observations in blocks finalized since start.
    #[serde(default)]
    pub observations_included: u64,
    /// Double observations (two signed observations of one validator for one height) seen.
    #[serde(default)]
    pub observation_evidence: u64,
    /// Finalized indices more than 2% from this validator's own observation.
    #[serde(default)]
    pub oracle_disagreements: u64,
    /// Peers on the public network (when it joined one).
    #[serde(default)]
    pub public_peers: Option<u64>,
    /// Certified blocks this validator published on the public network since start.
    #[serde(default)]
    pub blocks_published: u64,
    /// Peak resident memory of this process since start (VmHWM), MiB.
    #[serde(default)]
    pub peak_rss_mib: f64,
    /// Transactions from the public network or the API refused by this node's checks.
    #[serde(default)]
    pub public_refused: std::collections::BTreeMap<String, u64>,
    /// Where the API listens, if it serves one.
    #[serde(default)]
    pub api: Option<String>,
    /// REST requests its API answered.
    #[serde(default)]
    pub api_requests: u64,
    /// WebSocket messages its API sent.
    #[serde(default)]
    pub ws_messages: u64,
}

/// The committed state as the admission tile sees it: the last nonce of every account that
/// exists in the last finalized state. It mirrors the state's accounts (one entry per account,
/// so it is bounded as the state is, by `bastion_exchange::ACCOUNTS_MAX`); a signer that is not
/// here has no account, and admission refuses its transactions.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    nonces: HashMap<AccountId, u64>,
    /// Accounts of the state this view was last brought up to (the state's arena only grows,
    /// so the accounts created since are the arena's slots from here on).
    accounts: usize,
}

impl Committed {
    pub(crate) fn of(state: &State) -> Committed {
        let mut c = Committed::default();
        c.update(state, &[]);
        c
    }

    /// Brings the view up to `state`, the state after a finalized block carrying `txs`.
    pub(crate) fn update(&mut self, state: &State, txs: &[Tx]) {
        for (id, a) in state.accounts_from(self.accounts) {
            self.nonces.insert(id, a.nonce);
        }
        self.accounts = state.accounts.len();
        for tx in txs {
            if let Some(a) = state.accounts.get(&tx.signer) {
                self.nonces.insert(tx.signer, a.nonce);
            }
        }
    }

    pub(crate) fn nonce(&self, id: AccountId) -> Option<u64> {
        self.nonces.get(&id).copied()
    }
}

pub(crate) fn read(c: &RwLock<Committed>) -> std::sync::RwLockReadGuard<'_, Committed> {
    c.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The mempool as the proposer's transaction source; keeps the admission tile's view of the
/// committed state current.
#[derive(Debug)]
struct PoolSource {
    mempool: Arc<Mutex<Mempool>>,
    committed: Arc<RwLock<Committed>>,
}

fn locked(m: &Mutex<Mempool>) -> std::sync::MutexGuard<'_, Mempool> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl TxSource for PoolSource {
    fn take(&mut self, state: &State, max: usize) -> Vec<(Tx, TxAuth)> {
        let committed = read(&self.committed);
        locked(&self.mempool).take(|a| state.accounts.get(&a).map(|x| x.nonce), |a| committed.nonce(a), max)
    }

    fn finalized(&mut self, state: &State, txs: &[Tx]) {
        locked(&self.mempool).finalized(txs);
        self.committed.write().unwrap_or_else(std::sync::PoisonError::into_inner).update(state, txs);
    }
}

/// `bastion run`: runs until a signal (SIGINT, SIGTERM), a stop option, or a halt (an error).
pub fn run(cfg: &NodeConfig, opts: &RunOptions) -> Result<String, String> {
    init_logging(&cfg.log_level);
    let spec = ChainSpec::load(&cfg.genesis).map_err(|e| e.to_string())?;
    let keys = ValidatorKeys::load(&cfg.keys).map_err(|e| e.to_string())?;
    let scheme = spec.scheme(&keys).map_err(|e| e.to_string())?;
    let me = keys.identity_public();
    let index = spec.index_of(&me).ok_or("this validator's identity is not in the genesis file")?;
    let name = spec.validators[index].name.clone();
    let (observer, oracle_stats, observe_every_ms) =
        crate::oracle::open(cfg.oracle.as_ref(), &spec.exchange)?;
    let bridge_feed = cfg.bridge.start()?;
    let identity_seed = keys.identity_seed().map_err(|e| e.to_string())?;
    let listen = cfg.listen.unwrap_or(spec.validators[index].address);
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", cfg.data_dir.display()))?;
    let (mut store, recovery) = Store::open(&cfg.data_dir, &spec.exchange, cfg.storage.store_config())
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    for line in recovery.describe() {
        info!("{line}");
    }
    info!(
        chain = %spec.chain_id,
        genesis = %hex(&spec.digest()),
        validator = %name,
        %listen,
        height = store.state().height,
        "starting"
    );
    let chain = spec.digest();
    // One set of block limits for decoding peers' blocks, verifying them and proposing: the
    // chain spec's `block_txs_max` (a protocol parameter every validator shares), so a verifier
    // never accepts a block larger than an honest proposer may build. `pipeline.block_txs_max`
    // only lowers what this validator's own proposals carry.
    let limits = spec.block_limits();
    // State sync before anything is built on the store's state (it may replace it).
    let synced = crate::state_sync::validator_sync(cfg, opts, &spec, &mut store, &identity_seed)?;
    // The sweep's portfolio screen (`[risk]`): on the store's state, so on every speculative
    // state cloned from it and every state that replaces it.
    let risk_screen = crate::gpu_risk::open(&cfg.risk)?;
    store.set_portfolio_screen(risk_screen.as_ref().map(crate::gpu_risk::RiskScreen::handle));
    if cfg.pipeline.block_txs_max > limits.max_txs {
        warn!(
            configured = cfg.pipeline.block_txs_max,
            chain = limits.max_txs,
            "pipeline.block_txs_max exceeds the chain's block_txs_max: proposals carry at most the chain's"
        );
    }
    let app_verifier: Arc<dyn bastion_accel::Verifier> =
        Arc::from(bastion_accel::verifier(bastion_accel::Backend::Batch).map_err(|e| e.to_string())?);

    // Signatures the ingress verified, so proposals carrying them are not verified again.
    let verified = Arc::new(bastion_accel::VerifiedCache::new(cfg.pipeline.dedup_window));
    // The ingress pipeline and the mempool it fills (the proposer's block source).
    let mempool = Arc::new(Mutex::new(Mempool::new(cfg.pipeline.mempool_max)));
    let committed = Arc::new(RwLock::new(Committed::of(store.state())));
    // Admitted transactions on their way to the public network's `txs` topic.
    let outbound =
        cfg.public.listen.map(|_| Arc::new(crate::pipeline::Outbound::new(cfg.public.inbound_queue)));
    let (pipeline, source) = if cfg.block_source == "synthetic" {
        let w = cfg.workload;
        (
            None,
            BlockSource::Synthetic(Synthetic {
                traders: w.traders,
                txs_per_block: w.txs_per_block,
                ..Synthetic::default()
            }),
        )
    } else {
        let bind = cfg.ingress.listen.or(spec.validators[index].ingress).ok_or_else(|| {
            format!(
                "{name} has no ingress address: set `listen` under [ingress] in the node config, or `ingress` in \
                 its genesis entry"
            )
        })?;
        let (ingress, fallback) = cfg.ingress.to_config(bind)?;
        let backend = ingress.backend;
        let p = &cfg.pipeline;
        let mut pc = PipelineConfig::new(ingress, chain);
        pc.ingress_fallback = fallback;
        pc.ring_frames = p.ring_frames;
        pc.verify_batch = p.verify_batch;
        pc.verify_budget = Duration::from_micros(p.verify_budget_us);
        pc.verifier = p.verifier.parse().map_err(|e| format!("pipeline.verifier: {e}"))?;
        pc.mempool_max = p.mempool_max;
        pc.rate_per_account = p.rate_per_account;
        pc.burst_per_account = p.burst_per_account;
        pc.dedup_window = p.dedup_window;
        pc.pin = PinConfig { net: p.pin_net, verify: p.pin_verify, admission: p.pin_admission };
        pc.verified = Some(verified.clone());
        pc.outbound = outbound.clone();
        let view = committed.clone();
        let lookup: pipeline::CommittedNonce = Arc::new(move |a: AccountId| read(&view).nonce(a));
        let pipe = pipeline::start(pc, mempool.clone(), lookup)?;
        info!(
            ingress = %pipe.local_addr,
            backend = %pipe.backend,
            configured = %backend,
            verifier = %p.verifier,
            "ingress pipeline started"
        );
        let source = BlockSource::Pool {
            source: Box::new(PoolSource { mempool: mempool.clone(), committed: committed.clone() }),
            max_txs: p.block_txs_max,
        };
        (Some(pipe), source)
    };
    // The public network: publish certified blocks, take and relay transactions.
    let check = Arc::new(
        crate::publish::GossipCheck::new(chain, committed.clone(), None)
            .with_signature_cache(verified.clone()),
    );
    // Served no further back than the block log reaches (back to the oldest kept snapshot).
    let retention = match cfg.storage.snapshot_every {
        0 => crate::publish::SERVE_WINDOW as u64,
        n => n.saturating_mul(cfg.storage.keep_snapshots.saturating_sub(1).max(1) as u64),
    };
    let recent = Arc::new(Mutex::new(crate::publish::RecentBlocks::with_window(
        usize::try_from(retention).unwrap_or(usize::MAX),
    )));
    let snapshot_server = cfg.state_sync.serve.then(|| {
        Arc::new(bastion_statesync::Server::new(&store.snapshot_dir(), cfg.state_sync.serve_config()))
    });
    let public_max = public_max_bytes(&limits);
    let gossip = match cfg.public.listen {
        Some(listen) => {
            let secret = match &cfg.public.key {
                Some(p) => crate::public::read_seed(p)?,
                None => crate::public::derived_seed(&identity_seed),
            };
            let mut g = bastion_gossip::GossipConfig::new(listen, secret, spec.chain_id.clone());
            g.bootstrap = cfg.public.bootstrap.clone();
            g.max_block_bytes = public_max;
            g.inbound_queue = cfg.public.inbound_queue;
            g.max_snapshot_bytes = public_max + (1 << 20);
            let gossip = Arc::new(bastion_gossip::Gossip::start(g, check.clone())?);
            info!(peer = %gossip.peer_id(), listen = ?gossip.listen_addrs(), "joined the public network");
            Some(gossip)
        }
        None => None,
    };
    let relay = match &gossip {
        Some(g) => Some(crate::publish::ValidatorRelay::start(
            g.clone(),
            outbound.clone(),
            pipeline.as_ref().map(|p| p.injector()),
            recent.clone(),
            public_max,
            snapshot_server.clone(),
        )?),
        None => None,
    };
    let api = match (cfg.api.listen, &pipeline) {
        (Some(_), Some(p)) => {
            let submit =
                Arc::new(crate::publish::ValidatorSubmit { check: check.clone(), injector: p.injector() });
            let api = start_api(cfg, &spec, "validator", &name, submit)?;
            info!(api = %api.local_addr(), "API at http://{}/v1/status", api.local_addr());
            Some(api)
        }
        (Some(_), None) => {
            return Err("[api] listen needs the mempool block source (block_source = \"mempool\"): the API submits into the ingress pipeline".into());
        }
        _ => None,
    };
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher: Option<Box<dyn bastion_consensus::publish::Publisher>> =
        if gossip.is_some() || api.is_some() {
            Some(Box::new(crate::publish::ValidatorPublisher {
                gossip: gossip.clone(),
                feeder: api.as_ref().map(bastion_api::Api::feeder),
                recent: recent.clone(),
                published: published.clone(),
            }))
        } else {
            None
        };
    // The dashboard of the metrics endpoint: the publisher copies the top of the books into it.
    let dashboard = Arc::new(crate::dashboard::Dashboard::new(&name, "validator", &spec.chain_id));
    let publisher: Option<Box<dyn bastion_consensus::publish::Publisher>> = match cfg.metrics.listen {
        Some(_) => Some(Box::new(crate::dashboard::BookTap::new(publisher, dashboard.clone()))),
        None => publisher,
    };
    let registry = Registry::new();
    let mut telemetry = Telemetry::new(&registry, pipeline.as_ref());
    let mut public_telemetry = crate::public_metrics::PublicTelemetry::new(&registry);
    let mut risk_telemetry = crate::gpu_risk::RiskTelemetry::new(&registry, risk_screen.as_ref());
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let metrics_server = match cfg.metrics.listen {
        Some(addr) => {
            let (bound, handle) =
                metrics::serve_with(registry.clone(), addr, metrics_stop.clone(), dashboard)
                    .map_err(|e| format!("metrics: cannot listen on {addr} ([metrics] listen): {e}"))?;
            info!(metrics = %bound, "metrics at http://{bound}/metrics, dashboard at http://{bound}/dashboard");
            Some((bound, handle))
        }
        None => None,
    };
    let ingress_addr = pipeline.as_ref().map(|p| p.local_addr.to_string());
    let metrics_addr = metrics_server.as_ref().map(|(a, _)| a.to_string());

    let stop = Arc::new(AtomicBool::new(false));
    let runtime = cw_tokio::Config::new()
        .with_worker_threads(cfg.worker_threads)
        .with_storage_directory(cfg.data_dir.join("consensus"));
    let cfg = cfg.clone();
    let opts = opts.clone();
    cw_tokio::Runner::new(runtime).start(|context| async move {
        let signal_flag = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                signal_flag.store(true, Ordering::SeqCst);
            }
        });

        // Authenticated p2p between the validators of the genesis file.
        let n = spec.validators.len();
        let max_size = p2p_max_message_size(n, &limits);
        let handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: keys.identity(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        let peers = spec.peers().map_err(|e| e.to_string())?;
        // Loopback and private addresses are a local or private network: dial fast and allow
        // many handshakes from one IP (the validators share it).
        let private = peers.iter().any(|(_, a)| !is_public(a));
        let namespace = spec.namespace();
        let set = NonZeroUsize::new(n + 1).unwrap_or(NZUsize!(2));
        let mut p2p = if private {
            lookup::Config::local(handshake, &namespace, listen, set, max_size, NZUsize!(4096))
        } else {
            lookup::Config::recommended(handshake, &namespace, listen, set, max_size, NZUsize!(4096))
        };
        p2p.peer_connection_cooldown = Duration::from_secs(1);
        // One peer set (the genesis validators, tracked once as set 0 below), not the default 4:
        // commonware sizes every channel's inbound mailbox and the shared router mailbox for
        // max_peers_per_set x tracked_peer_sets peers at each channel's quota burst, and fills
        // them at start. With 4 sets a 4-validator node held about 400 MiB of them (a 245 MB
        // router mailbox and four 42 MB channel mailboxes, found with strace -k on mmap).
        p2p.tracked_peer_sets = NZUsize!(1);
        let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
        let book: Vec<(ed25519::PublicKey, Address)> = peers.iter().map(|(k, a)| (k.clone(), (*a).into())).collect();
        let book: Map<ed25519::PublicKey, Address> =
            book.try_into().map_err(|_| "duplicate validator identity in the genesis file".to_string())?;
        let _ = oracle.track(0, book);
        let quota = Quota::per_second(NZU32!(10_000));
        let votes = network.register(0, quota);
        let certs = network.register(1, quota);
        let resolver = network.register(2, quota);
        let blocks = network.register(3, quota);
        let observations = network.register(
            bastion_consensus::observations::OBSERVATION_CHANNEL,
            Quota::per_second(NZU32!(bastion_consensus::observations::OBSERVATION_QUOTA_PER_S)),
        );
        let bridge = network.register(
            bastion_consensus::BRIDGE_CHANNEL,
            Quota::per_second(NZU32!(bastion_consensus::BRIDGE_QUOTA_PER_S)),
        );
        network.start();

        let ledger = Ledger::bounded(LEDGER_KEEP);
        let (app, mailbox, reporter) = Application::new::<Multisig>(
            context.child("application"),
            AppConfig {
                store,
                genesis: spec.exchange.clone(),
                limits,
                source,
                chain,
                verifier: app_verifier,
                verified: Some(verified.clone()),
                ledger: ledger.clone(),
                fault: None,
                governance: Some(Box::new(crate::governance::GovernanceDir::new(&cfg.data_dir))),
                observer,
                observation_key: Some((u16::try_from(index).unwrap_or(u16::MAX), identity_seed)),
                observe_every_ms,
                publisher,
                bridge_feed,
            },
            blocks,
            observations,
            bridge,
            // Peers that send invalid or unrequested data on the block channel are blocked.
            oracle.clone(),
        )?;
        // The store's appends and syncs on the storage tile, proposals' execution on the
        // execution tile, each pinned where configured.
        let pin = |core: Option<usize>, tile: &'static str| -> Option<Box<dyn FnOnce() + Send>> {
            Some(Box::new(move || {
                if let Some(core) = core
                    && let Err(e) = crate::pipeline::pin_current_thread(core)
                {
                    error!("{tile} tile: {e}");
                }
            }))
        };
        let app = if cfg.pipeline.consensus_tiles {
            app.with_storage_tile(pin(cfg.pipeline.pin_storage, "storage"))?
                .with_execution_tile(pin(cfg.pipeline.pin_execution, "execution"))?
        } else {
            info!("[pipeline] consensus_tiles = false: the store and block execution run on the consensus actor");
            app
        };
        let storage_counters = app.storage_counters();
        let execution_counters = app.execution_counters();
        let mut tile_telemetry = crate::telemetry::ConsensusTileMetrics::new(&registry);
        let floor = app.genesis_digest();
        app.start();
        let engine = simplex::Engine::new(
            context.child("engine"),
            engine::config(scheme, oracle.clone(), mailbox, reporter, floor, "simplex".into(), &cfg.consensus),
        );
        engine.start(votes, certs, resolver);

        // Status, progress and stop conditions.
        let started = Instant::now();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
        let mut log = match &opts.finality_log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let status_path = cfg.data_dir.join("status.json");
        let mut last_progress = Instant::now();
        let mut last_height = ledger.height();
        let outcome: Result<(), String> = loop {
            context.sleep(Duration::from_millis(250)).await;
            let mut latencies = Vec::new();
            for (h, latency) in ledger.drain_finality() {
                let us = latency.as_micros().clamp(1, 3_600_000_000) as u64;
                let _ = hist.record(us);
                latencies.push(latency);
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{h} {us}");
                }
            }
            let totals = ledger.totals();
            let (height, root) = ledger.last().map(|(h, f)| (h, hex(&f.root))).unwrap_or_default();
            let pct = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
            let status = Status {
                chain_id: spec.chain_id.clone(),
                validator: name.clone(),
                height,
                root,
                halted: ledger.halted(),
                faults: ledger.fault_count(),
                uptime_s: started.elapsed().as_secs_f64(),
                own_finalized: hist.len(),
                finality_ms: [pct(0.5), pct(0.99), pct(0.999), hist.max() as f64 / 1000.0],
                orders_finalized: totals.txs,
                liquidations: totals.liquidations,
                adl_events: totals.adl,
                insurance_fund: (totals.blocks > 0).then_some(totals.insurance_fund),
                mempool: locked(&mempool).len(),
                ingress: ingress_addr.clone(),
                metrics: metrics_addr.clone(),
                state_sync: synced.clone(),
                observations_signed: totals.observations_signed,
                bridge: totals.bridge,
                observations_rejected: ledger
                    .observations_rejected()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                observations_included: totals.observations_included,
                observation_evidence: totals.observation_evidence,
                oracle_disagreements: totals.oracle_disagreements,
                public_peers: gossip.as_ref().map(|g| g.stats().peers),
                blocks_published: published.load(Ordering::Relaxed),
                peak_rss_mib: crate::telemetry::peak_rss_mib(),
                public_refused: check.refusals.snapshot(),
                api: api.as_ref().map(|a| a.local_addr().to_string()),
                api_requests: api.as_ref().map_or(0, |a| a.stats().requests.total()),
                ws_messages: api.as_ref().map_or(0, |a| a.stats().ws_messages),
            };
            public_telemetry.update(
                gossip.as_ref().map(|g| g.stats()).as_ref(),
                &status.public_refused,
                api.as_ref().map(bastion_api::Api::stats).as_ref(),
            );
            telemetry.update_oracle(&ledger.observations_rejected(), oracle_stats.as_deref());
            tile_telemetry.update(&storage_counters, execution_counters.as_deref());
            risk_telemetry.update();
            telemetry.update(
                pipeline.as_ref(),
                &mempool,
                totals,
                height,
                &latencies,
                (status.finality_ms[0], status.finality_ms[1]),
                status.halted.is_some(),
            );
            if let Some(p) = &pipeline
                && let Some(dead) = p.exited().first()
            {
                break Err(format!("the {dead} tile of the ingress pipeline stopped"));
            }
            if last_progress.elapsed() >= Duration::from_secs(5) {
                let rate = (height - last_height) as f64 / last_progress.elapsed().as_secs_f64();
                info!(
                    "height {height} ({rate:.1} blocks/s), {} txs finalized, mempool {}, finality of own proposals p50 {:.1} ms p99 {:.1} ms ({} blocks), liquidations {}, faults {}",
                    status.orders_finalized,
                    status.mempool,
                    status.finality_ms[0],
                    status.finality_ms[1],
                    status.own_finalized,
                    status.liquidations,
                    status.faults
                );
                last_progress = Instant::now();
                last_height = height;
            }
            write_status(&status_path, &status);
            if let Some(why) = status.halted {
                break Err(format!("validator halted: {why}"));
            }
            if stop.load(Ordering::SeqCst) {
                info!("signal received: stopping");
                break Ok(());
            }
            if opts.until_height.is_some_and(|h| height >= h) {
                break Ok(());
            }
            if opts.duration.is_some_and(|d| started.elapsed() >= d) {
                break Ok(());
            }
        };
        if let Err(e) = context.stop(0, Some(Duration::from_secs(10))).await {
            warn!(%e, "runtime did not stop within 10 s");
        }
        drop(relay);
        if let Some(a) = api {
            a.stop();
        }
        if let Some(p) = pipeline
            && let Err(e) = p.stop()
        {
            warn!(%e, "ingress pipeline did not stop cleanly");
        }
        metrics_stop.store(true, Ordering::SeqCst);
        if let Some((_, handle)) = metrics_server {
            let _ = handle.join();
        }
        outcome?;
        let mut out = String::new();
        let _ = write!(
            out,
            "validator {name} stopped at height {} after {:.1} s; finality of its {} own proposals: p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms",
            ledger.height(),
            started.elapsed().as_secs_f64(),
            hist.len(),
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.value_at_quantile(0.999) as f64 / 1000.0,
        );
        Ok(out)
    })
}

/// The largest message of the public network's `blocks` topic and of a range answer: a block
/// at the chain's limits (body, one key and signature per transaction, header) and its
/// certificate, with room to spare.
pub(crate) fn public_max_bytes(limits: &BlockLimits) -> usize {
    limits.max_body_bytes.saturating_add(limits.max_txs.saturating_mul(96)).saturating_add(64 << 10)
}

/// Starts the API of `[api]` (a validator's or a full node's).
pub(crate) fn start_api(
    cfg: &NodeConfig,
    spec: &ChainSpec,
    role: &str,
    node: &str,
    submit: Arc<dyn bastion_api::Submit>,
) -> Result<bastion_api::Api, String> {
    let listen = cfg.api.listen.ok_or("[api] listen is not set")?;
    let mut api = bastion_api::ApiConfig::new(listen);
    api.history_blocks = cfg.api.history_blocks;
    api.ws_buffer = cfg.api.ws_buffer;
    api.max_connections_per_ip = cfg.api.max_connections_per_ip;
    api.max_subscriptions_per_connection = cfg.api.max_subscriptions_per_connection;
    api.rate_per_ip = cfg.api.rate_per_ip;
    let authority = bastion_client::devnet_authority();
    // Only a devnet whose bridge authority is the public devnet key can have a faucet.
    api.faucet =
        (cfg.api.faucet && spec.exchange.devnet && spec.exchange.authority == Some(authority.account()))
            .then_some(bastion_api::FaucetConfig {
                authority,
                amount: 10_000 * 1_000_000,
                asset: bastion_types::AssetId(0),
            });
    let chain = bastion_api::ChainInfo {
        chain_id: spec.chain_id.clone(),
        genesis_digest: spec.digest(),
        devnet: spec.exchange.devnet,
        role: role.to_string(),
        node: node.to_string(),
    };
    bastion_api::Api::start(api, chain, submit)
        .map_err(|e| format!("api: cannot serve on {listen} ([api] listen): {e}"))
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local).
fn is_public(a: &SocketAddr) -> bool {
    match a.ip() {
        std::net::IpAddr::V4(ip) => {
            !(ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified())
        }
        std::net::IpAddr::V6(ip) => {
            !(ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00)
        }
    }
}

pub(crate) fn write_status(path: &Path, status: &impl Serialize) {
    let tmp = path.with_extension("json.tmp");
    let ok = serde_json::to_vec_pretty(status)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(&tmp, bytes).map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(e) = ok {
        error!(file = %path.display(), %e, "cannot write the status file");
    }
}

pub(crate) fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},commonware=warn")));
    // Colours only on a terminal: a log file or journald gets plain text an operator can grep.
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The admission tile's view of the committed state holds exactly the state's accounts: a
    /// deposit's new account appears, a signer without an account never does (the map once
    /// grew with every signer of a finalized transaction, fresh keys included).
    #[test]
    fn the_committed_view_mirrors_the_accounts() {
        use bastion_types::{Action, AssetId, Block};
        let g = bastion_exchange::Genesis::devnet();
        let mut state = State::from_genesis(&g).unwrap();
        let mut view = Committed::of(&state);
        assert_eq!(view.nonces.len(), state.accounts.len());
        assert_eq!(view.nonce(g.authority.unwrap()), Some(0));
        let fresh = AccountId(0xF2E5);
        assert_eq!(view.nonce(fresh), None);
        let deposit = Tx {
            signer: g.authority.unwrap(),
            nonce: 1,
            action: Action::Deposit { to: fresh, asset: AssetId(0), amount: 1_000_000 },
        };
        let block = Block {
            height: 1,
            timestamp_ms: g.timestamp_ms + 250,
            oracle: Vec::new(),
            txs: vec![deposit.clone()],
            ..Default::default()
        };
        state.apply_block(&block).unwrap();
        // Reported with a transaction of a signer that has no account (as a faulty source
        // might): it is not remembered.
        let stranger =
            Tx { signer: AccountId(0xBAD), nonce: 1, action: Action::SetMarginMode { portfolio: true } };
        view.update(&state, &[deposit, stranger]);
        assert_eq!(view.nonce(g.authority.unwrap()), Some(1));
        assert_eq!(view.nonce(fresh), Some(0), "the deposit created it");
        assert_eq!(view.nonce(AccountId(0xBAD)), None);
        assert_eq!((view.nonces.len(), view.accounts), (state.accounts.len(), state.accounts.len()));
    }

    fn load(text: &str) -> Result<NodeConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        NodeConfig::load(&path).map(|mut c| {
            // Make paths comparable after the directory is gone.
            for p in [&mut c.genesis, &mut c.keys, &mut c.data_dir] {
                *p = p.strip_prefix(dir.path()).map(Path::to_path_buf).unwrap_or(p.clone());
            }
            c
        })
    }

    const MINIMAL: &str =
        "genesis = \"../genesis.json\"\nkeys = \"keys.json\"\ndata_dir = \"/var/lib/bastion\"\n";

    #[test]
    fn one_block_limit_governs_decode_verify_and_propose() {
        let keys = bastion_consensus::ValidatorKeys::from_seed(5);
        let info = keys.info("v0", "127.0.0.1:7400".parse().unwrap(), "bastion-test");
        let mut exchange = bastion_exchange::Genesis::devnet();
        exchange.validator_stakes = vec![1];
        let mut spec = ChainSpec::assemble("bastion-test", exchange, vec![info]);
        spec.block_txs_max = 100;
        spec.validate().unwrap();
        let limits = spec.block_limits();
        assert_eq!(limits.max_txs, 100, "verifiers decode exactly what the chain lets proposers build");
        // The default chain accepts no more than a default node builds (it used to accept 100,000).
        spec.block_txs_max = bastion_consensus::spec::DEFAULT_BLOCK_TXS_MAX;
        assert_eq!(spec.block_limits().max_txs, PipelineSection::default().block_txs_max);
        spec.block_txs_max = bastion_exchange::BLOCK_TXS_MAX + 1;
        assert!(spec.validate().unwrap_err().to_string().contains("block_txs_max"));
        // The p2p message size follows the limits.
        let loose = BlockLimits { max_txs: bastion_exchange::BLOCK_TXS_MAX, ..limits };
        assert!(p2p_max_message_size(4, &limits) < p2p_max_message_size(4, &loose));
        assert!(p2p_max_message_size(4, &limits) as usize > limits.max_encoded_bytes());
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.genesis, PathBuf::from("../genesis.json"));
        assert_eq!(c.keys, PathBuf::from("keys.json"));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/bastion"), "absolute paths stay as they are");
        assert_eq!((c.log_level.as_str(), c.worker_threads, c.listen), ("info", 2, None));
        assert_eq!(c.consensus, Timeouts::default());
        let c = load(&format!("{MINIMAL}listen = \"0.0.0.0:7400\"\n[consensus]\nleader_timeout_ms = 500\n"))
            .unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:7400".parse().unwrap()));
        assert_eq!(c.consensus.leader_timeout_ms.get(), 500);
    }

    #[test]
    fn wrong_values_name_the_key() {
        let e = load(&format!("{MINIMAL}log_level = \"loud\"\n")).unwrap_err();
        assert!(e.contains("log_level") && e.contains("error, warn, info, debug, trace"), "{e}");
        let e = load(&format!("{MINIMAL}leader_timeout = 5\n")).unwrap_err();
        assert!(e.contains("leader_timeout"), "unknown keys are refused by name: {e}");
        let e = load(&format!("{MINIMAL}[consensus]\nleader_timeout_ms = 0\n")).unwrap_err();
        assert!(e.contains("leader_timeout_ms"), "{e}");
        let e = load(&format!("{MINIMAL}listen = \"localhost\"\n")).unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = load("keys = \"k\"\ndata_dir = \"d\"\n").unwrap_err();
        assert!(e.contains("genesis"), "a missing key is named: {e}");
        let e = load(&format!("{MINIMAL}worker_threads = 0\n")).unwrap_err();
        assert!(e.contains("worker_threads"), "{e}");
        let e = load(&format!("{MINIMAL}[pipeline]\nverifier = \"fast\"\n")).unwrap_err();
        assert!(e.contains("pipeline.verifier") && e.contains("scalar, batch, parallel, auto, gpu"), "{e}");
        let e = load(&format!("{MINIMAL}[ingress]\nbackend = \"xdp\"\n")).unwrap_err();
        assert!(e.contains("ingress.backend") && e.contains("af_xdp, dpdk"), "{e}");
        let e = load(&format!("{MINIMAL}[ingress]\nfallback = \"dpdk\"\n")).unwrap_err();
        assert!(e.contains("ingress.fallback") && e.contains("sockets, io_uring"), "{e}");
        let e = load(&format!("{MINIMAL}[ingress]\nmac = \"aa:bb\"\n")).unwrap_err();
        assert!(e.contains("ingress.mac"), "{e}");
        let e = load(&format!("{MINIMAL}[ingress]\nring_size = 1000\n")).unwrap_err();
        assert!(e.contains("ingress.ring_size"), "{e}");
        let e = load(&format!("{MINIMAL}[ingress]\nxdp_mode = \"fast\"\n")).unwrap_err();
        assert!(e.contains("ingress.xdp_mode") && e.contains("zero_copy"), "{e}");
        for b in [bastion_net::Backend::AfXdp, bastion_net::Backend::Dpdk] {
            let text = format!("{MINIMAL}[ingress]\nbackend = \"{b}\"\niface = \"eth1\"\n");
            if b.compiled_in() {
                assert!(load(&text).is_ok());
            } else {
                let e = load(&text).unwrap_err();
                assert!(e.contains("--features") && e.contains("ingress.fallback"), "{e}");
            }
            let c = load(&format!("{text}fallback = \"sockets\"\nmac = \"02:00:00:00:00:01\"\n")).unwrap();
            let (cfg, fallback) = c.ingress.to_config("10.0.0.1:8400".parse().unwrap()).unwrap();
            assert_eq!((cfg.backend, fallback), (b, Some(bastion_net::Backend::Sockets)));
            assert_eq!(cfg.bypass.iface.as_deref(), Some("eth1"));
            assert_eq!(cfg.bypass.mac, Some([2, 0, 0, 0, 0, 1]));
        }
        for ok in ["auto", "gpu", "Parallel"] {
            let c = load(&format!("{MINIMAL}[pipeline]\nverifier = \"{ok}\"\n")).unwrap();
            assert_eq!(c.pipeline.verifier, ok);
        }
    }
}
