//! `bastion keygen` and `bastion init`: validator keys and local network genesis.

use bastion_consensus::spec::{MAX_VALIDATORS, ValidatorKeys};
use bastion_consensus::{ChainSpec, ValidatorInfo};
use bastion_exchange::{Genesis, State};
use bastion_store::hex;
use clap::Args;
use commonware_codec::Encode;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// `bastion keygen`: a new validator keys file.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The keys file to create (mode 0600; an existing file is never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Validator name: with --address and --chain-id, also print the genesis entry.
    #[arg(long, requires_all = ["address", "chain_id"])]
    pub name: Option<String>,
    /// Where this validator's p2p listener is reachable (IP:PORT).
    #[arg(long, requires_all = ["name", "chain_id"])]
    pub address: Option<SocketAddr>,
    /// The chain id the proof of possession is bound to.
    #[arg(long, requires_all = ["name", "address"])]
    pub chain_id: Option<String>,
}

/// `bastion init`: a local network's genesis file and one directory per validator.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Number of validators.
    #[arg(long)]
    pub validators: usize,
    /// Output directory: DIR/genesis.json and DIR/v{i}/{keys.json,node.toml}.
    #[arg(long)]
    pub out: PathBuf,
    /// Chain id (ASCII letters, digits, '.', '_', '-').
    #[arg(long, default_value = "bastion-devnet")]
    pub chain_id: String,
    /// P2P port of validator 0; validator i listens on base-port + i.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// Host (IP) every validator's address uses.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// One host (IP) per node instead of `--host`: the validators' first, then the full
    /// nodes', comma-separated (e.g. one machine or network namespace each). Each node's p2p,
    /// ingress and public addresses use its own host; the ports are numbered as with `--host`.
    #[arg(long, value_delimiter = ',', conflicts_with = "host")]
    pub hosts: Vec<IpAddr>,
    /// Derive keys deterministically from this seed (validator i: seed*1000+i). INSECURE: for
    /// tests and local devnets only. Without it keys come from OS entropy.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Metrics (HTTP) port of validator 0 on 127.0.0.1; validator i uses metrics-port + i, full
    /// node j metrics-port + validators + j.
    #[arg(long, default_value_t = 9400)]
    pub metrics_port: u16,
    /// UDP port where validator 0 takes client transactions; validator i uses ingress-port + i.
    #[arg(long, default_value_t = 8400)]
    pub ingress_port: u16,
    /// What the devnet validators' simulated venues quote (written into each node.toml's
    /// `[oracle.sim]`): calm, flash-crash (the true price 30% down over 2 s at t = 10 s, then
    /// recovery) or oracle-attack (the last validator lies +50%, one venue of every other
    /// validator pumps 10x at t = 10 s for 20 s). A chain that is not a devnet gets a commented
    /// `[oracle]` template instead: its operators configure real sources.
    #[arg(long, default_value = "calm")]
    pub scenario: crate::oracle::DevnetScenario,
    /// When after genesis the flash crash starts (`10s`, `1m`; a bare number is seconds).
    #[arg(long, default_value = "10", value_parser = crate::duration::seconds)]
    pub crash_at_s: f64,
    /// Hex ed25519 public key of a devnet's authority (it may credit deposits and change any
    /// parameter with one signature). Without it a devnet's authority is the devnet key anyone
    /// can derive. Test networks only: refused with `--production`.
    #[arg(long)]
    pub authority: Option<String>,
    /// A chain that is not a devnet: no authority at all. Collateral arrives only as deposits
    /// that 2/3 of stake attested, and parameters change only by proposals that 2/3 of stake
    /// signed.
    #[arg(long)]
    pub production: bool,
    /// Accepted for old scripts: a devnet is the default.
    #[arg(long, hide = true)]
    pub devnet: bool,
    /// Genesis time in ms since the Unix epoch (default: now). Block time is the proposers'
    /// clocks, so a genesis far in the past or future is refused by the first blocks.
    #[arg(long)]
    pub genesis_time_ms: Option<u64>,
    /// Full nodes to write configs for: DIR/f{j}/{node.toml,p2p.key}. They hold no consensus
    /// keys, follow the chain over the public network and serve the API.
    #[arg(long, default_value_t = 0)]
    pub full_nodes: usize,
    /// Public (libp2p) TCP port of validator 0; validator i uses public-port + i, full node j
    /// public-port + validators + j. Default: base-port + 200.
    #[arg(long)]
    pub public_port: Option<u16>,
    /// API (HTTP) port of full node 0 on 127.0.0.1; full node j uses api-port + j.
    #[arg(long, default_value_t = 8080)]
    pub api_port: u16,
}

/// Runs `bastion keygen`; `Ok` holds the report.
pub fn keygen(args: &KeygenArgs) -> Result<String, String> {
    let keys = ValidatorKeys::generate();
    // Check the genesis entry's inputs before writing anything.
    let info = match (&args.name, args.address, &args.chain_id) {
        (Some(name), Some(address), Some(chain_id)) => {
            let info = keys.info(name, address, chain_id);
            check_entry(&info, chain_id)?;
            Some(info)
        }
        (None, None, None) => None,
        _ => return Err("--name, --address and --chain-id go together".into()),
    };
    keys.save(&args.out).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = writeln!(out, "wrote {} (mode 0600; keep it secret, back it up)", args.out.display());
    let _ = writeln!(out, "identity   {}", hex(&keys.identity_public().encode()));
    let _ = write!(out, "bls_public {}", hex(&keys.bls_public().encode()));
    if let Some(info) = info {
        let json = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
        let _ = write!(out, "\ngenesis entry (add it to \"validators\" in the genesis file):\n{json}");
    }
    Ok(out)
}

/// Checks a lone genesis entry the way the genesis file will (name, hex, proof of possession).
fn check_entry(info: &ValidatorInfo, chain_id: &str) -> Result<(), String> {
    let mut exchange = Genesis::devnet();
    exchange.validator_stakes = vec![1];
    let spec = ChainSpec::assemble(chain_id, exchange, vec![info.clone()]);
    spec.validate().map_err(|e| e.to_string())
}

/// Runs `bastion init`; `Ok` holds the report.
pub fn init(args: &InitArgs) -> Result<String, String> {
    let n = args.validators;
    if n == 0 || n > MAX_VALIDATORS {
        return Err(format!("--validators {n}: 1..={MAX_VALIDATORS} required"));
    }
    for (flag, base) in [("--base-port", args.base_port), ("--ingress-port", args.ingress_port)] {
        if usize::from(base) + n - 1 > usize::from(u16::MAX) {
            return Err(format!("{flag} {base} + {n} validators runs past port 65535"));
        }
    }
    let (p2p, udp) = (usize::from(args.base_port), usize::from(args.ingress_port));
    if udp < p2p + n && p2p < udp + n {
        // Different protocols could share numbers, but one range per service is easier to firewall.
        return Err(format!("--ingress-port {udp} overlaps the p2p ports {p2p}..{}", p2p + n));
    }
    let f = args.full_nodes;
    if f > MAX_VALIDATORS {
        return Err(format!("--full-nodes {f}: at most {MAX_VALIDATORS} on one init"));
    }
    let public = args.public_port.map_or(p2p + 200, usize::from);
    if public + n + f - 1 > usize::from(u16::MAX) || usize::from(args.api_port) + f > usize::from(u16::MAX) {
        return Err(format!("--public-port {public} or --api-port {} runs past port 65535", args.api_port));
    }
    for (flag, other, m) in [("--base-port", p2p, n), ("--ingress-port", udp, n)] {
        if other < public + n + f && public < other + m {
            return Err(format!(
                "--public-port {public}..{} overlaps the {flag} range {other}..{}",
                public + n + f,
                other + m
            ));
        }
    }
    if !(args.crash_at_s.is_finite() && args.crash_at_s >= 0.0) {
        return Err(format!(
            "--crash-at-s must be a non-negative number of seconds, got {}",
            args.crash_at_s
        ));
    }
    if args.production && (args.authority.is_some() || args.devnet) {
        return Err(
            "--production with --authority or --devnet: a production chain has no authority (no single key may \
             mint collateral or change parameters); drop --authority for production, or --production for a \
             test network"
                .into(),
        );
    }
    let authority = match &args.authority {
        _ if args.production => None,
        None => Some(bastion_client::devnet_authority().account()),
        Some(h) => {
            let bytes = bastion_consensus::spec::from_hex(h)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("--authority {h:?} is not 64 hex digits (an ed25519 public key)"))?;
            Some(bastion_types::account_of(&bytes))
        }
    };
    if !args.hosts.is_empty() && args.hosts.len() != n + f {
        return Err(format!(
            "--hosts lists {} addresses for {n} validators and {f} full nodes: give exactly one per node, \
             the validators' first",
            args.hosts.len()
        ));
    }
    // Node k's host: its own with --hosts, else --host.
    let host = |k: usize| args.hosts.get(k).copied().unwrap_or(args.host);
    let devnet = !args.production;
    let t0 = match args.genesis_time_ms {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| format!("the system clock is before 1970: {e}"))?,
    };
    let genesis_path = args.out.join("genesis.json");
    if genesis_path.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite a network (choose another --out)",
            genesis_path.display()
        ));
    }
    let dirs: Vec<PathBuf> = (0..n).map(|i| args.out.join(format!("v{i}"))).collect();
    let full_dirs: Vec<PathBuf> = (0..f).map(|j| args.out.join(format!("f{j}"))).collect();
    for dir in dirs.iter().chain(&full_dirs) {
        for file in ["keys.json", "node.toml", "p2p.key"] {
            let path = dir.join(file);
            if path.exists() {
                return Err(format!("{} exists; refusing to overwrite it", path.display()));
            }
        }
    }

    let keys: Vec<ValidatorKeys> = match args.seed {
        None => (0..n).map(|_| ValidatorKeys::generate()).collect(),
        Some(seed) => (0..n)
            .map(|i| {
                seed.checked_mul(1000)
                    .and_then(|s| s.checked_add(i as u64))
                    .map(ValidatorKeys::from_seed)
                    .ok_or_else(|| format!("--seed {seed} is too large (seed*1000+{i} overflows u64)"))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut exchange = Genesis::devnet_at(t0);
    exchange.authority = authority;
    exchange.devnet = devnet;
    exchange.validator_stakes = vec![1; n];
    // The devnet genesis lists four test keys; this chain's are its validators' identities,
    // bound by `ChainSpec::assemble` below.
    exchange.validator_keys.clear();
    State::from_genesis(&exchange).map_err(|e| format!("devnet exchange genesis with {n} stakes: {e}"))?;
    let validators = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let port = args.base_port + u16::try_from(i).unwrap_or(u16::MAX);
            let udp = args.ingress_port + u16::try_from(i).unwrap_or(u16::MAX);
            let mut info = k.info(&format!("v{i}"), SocketAddr::new(host(i), port), &args.chain_id);
            info.ingress = Some(SocketAddr::new(host(i), udp));
            info
        })
        .collect();
    let crash_at_ms = (args.crash_at_s * 1000.0) as u64;
    let spec = ChainSpec::assemble(&args.chain_id, exchange, validators);
    spec.validate().map_err(|e| e.to_string())?;

    // Every node's public address; each dials all the others (a small network: the gossip
    // mesh keeps what it needs).
    let public_addr = |k: usize| format!("/ip4/{}/tcp/{}", host(k), public + k);
    let bootstrap = |me: usize| {
        let others: Vec<String> =
            (0..n + f).filter(|k| *k != me).map(|k| format!("\"{}\"", public_addr(k))).collect();
        others.join(", ")
    };
    // Validator directories first, the genesis file last: its presence marks a complete init.
    for (i, (dir, k)) in dirs.iter().zip(&keys).enumerate() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        k.save(&dir.join("keys.json")).map_err(|e| e.to_string())?;
        let udp = spec.validators[i].ingress.map_or(0, |a| a.port());
        let metrics = args.metrics_port.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
        let mut toml = node_toml(i, &args.out, spec.validators[i].address.port(), udp, metrics);
        toml.push_str(&if devnet {
            crate::oracle::sim_toml(args.scenario, i, n, args.seed.unwrap_or(0), crash_at_ms)
        } else {
            crate::oracle::template_toml()
        });
        toml.push_str(&format!(
            "\n[public]                         # the public libp2p network: block and transaction gossip\n\
             listen = \"{}:{}\"\n\
             bootstrap = [{}]\n\
             # key = \"p2p.key\"               # default: derived from the identity key\n\
             \n\
             [api]                            # REST and WebSocket API (docs: node/api/openapi.yaml)\n\
             # listen = \"127.0.0.1:8090\"\n{STORAGE_TOML}{BRIDGE_TOML}",
            host(i),
            public + i,
            bootstrap(i)
        ));
        write_new(&dir.join("node.toml"), toml.as_bytes())?;
    }
    for (j, dir) in full_dirs.iter().enumerate() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let seed: [u8; 32] = match args.seed {
            Some(s) => blake3::derive_key(
                "bastion init full node p2p key",
                &[s.to_le_bytes(), (j as u64).to_le_bytes()].concat(),
            ),
            None => ValidatorKeys::generate().identity_seed().map_err(|e| e.to_string())?,
        };
        write_secret(&dir.join("p2p.key"), format!("{}\n", hex(&seed)).as_bytes())?;
        let api = args.api_port.saturating_add(u16::try_from(j).unwrap_or(u16::MAX));
        let toml = format!(
            "# Bastion full node f{j}: `bastion run --config {dir}/f{j}/node.toml`\n\
             # Holds no consensus keys: follows the chain over the public network, verifies every\n\
             # finalization certificate against the genesis validator set, executes, serves the API.\n\
             role = \"full\"\n\
             genesis = \"../genesis.json\"   # paths are relative to this file\n\
             data_dir = \"data\"\n\
             log_level = \"info\"\n\
             \n\
             [public]\n\
             listen = \"{host}:{port}\"\n\
             bootstrap = [{boot}]\n\
             key = \"p2p.key\"\n\
             \n\
             [api]                            # REST and WebSocket API (docs: node/api/openapi.yaml)\n\
             listen = \"127.0.0.1:{api}\"\n\
             \n\
             [metrics]                        # Prometheus text at http://LISTEN/metrics; `bastion status`\n\
             listen = \"127.0.0.1:{metrics}\"\n{STORAGE_TOML}",
            dir = args.out.display(),
            host = host(n + j),
            port = public + n + j,
            boot = bootstrap(n + j),
            metrics = args.metrics_port.saturating_add(u16::try_from(n + j).unwrap_or(u16::MAX)),
        );
        write_new(&dir.join("node.toml"), toml.as_bytes())?;
    }
    spec.save(&genesis_path).map_err(|e| e.to_string())?;

    let mut out = String::new();
    let _ = writeln!(out, "chain {}: {n} validators", spec.chain_id);
    let _ = writeln!(out, "genesis {}", genesis_path.display());
    let _ = writeln!(out, "genesis digest {}", hex(&spec.digest()));
    for (i, v) in spec.validators.iter().enumerate() {
        let _ = writeln!(
            out,
            "{} {} identity {} keys {}",
            v.name,
            v.address,
            v.identity,
            dirs[i].join("keys.json").display()
        );
    }
    if devnet {
        let _ = writeln!(
            out,
            "oracle: simulated venues ({}) around one true path from genesis time {t0} ms, each validator its own noise",
            args.scenario
        );
    } else {
        let _ = writeln!(
            out,
            "oracle: configure each validator's price sources in its node.toml [oracle] (a commented template is there)"
        );
    }
    if devnet {
        let _ = writeln!(
            out,
            "DEVNET: exchange.devnet = true; the authority may credit deposits and change any parameter with \
             one signature (test networks only)"
        );
    } else {
        let _ = writeln!(
            out,
            "production rules: no authority; deposits are credited by 2/3 of stake's attestations and \
             parameters change only by governance proposals that 2/3 of stake signed"
        );
    }
    if devnet && args.authority.is_none() {
        let _ = writeln!(
            out,
            "WARNING: the bridge authority is the devnet key anyone can derive: test networks only (--authority HEX)"
        );
    }
    if let Some(seed) = args.seed {
        let _ = writeln!(
            out,
            "WARNING: keys derived from --seed {seed} are deterministic and INSECURE: tests and local devnets only"
        );
    }
    for (j, dir) in full_dirs.iter().enumerate() {
        let _ = writeln!(
            out,
            "f{j} full node: public {} api http://127.0.0.1:{} config {}",
            public_addr(n + j),
            args.api_port.saturating_add(u16::try_from(j).unwrap_or(u16::MAX)),
            dir.join("node.toml").display()
        );
    }
    let _ = write!(
        out,
        "next: start every validator (and full node), e.g. `bastion run --config {}`",
        dirs[0].join("node.toml").display()
    );
    Ok(out)
}

/// The node config of validator `i`.
fn node_toml(i: usize, out: &Path, port: u16, udp: u16, metrics: u16) -> String {
    format!(
        "# Bastion validator v{i}: `bastion run --config {dir}/v{i}/node.toml`\n\
         genesis = \"../genesis.json\"   # paths are relative to this file\n\
         keys = \"keys.json\"\n\
         data_dir = \"data\"\n\
         log_level = \"info\"\n\
         # listen = \"0.0.0.0:{port}\"      # default: this validator's address in the genesis file\n\
         \n\
         [ingress]                        # signed client transactions over UDP\n\
         # listen = \"0.0.0.0:{udp}\"      # default: this validator's ingress in the genesis file\n\
         backend = \"sockets\"              # sockets (recvmmsg) or io_uring\n\
         \n\
         [metrics]                        # Prometheus text at http://LISTEN/metrics; `bastion status`\n\
         listen = \"127.0.0.1:{metrics}\"\n",
        dir = out.display(),
        udp = udp,
        metrics = metrics
    )
}

/// Writes a new secret file (mode 0600), refusing to overwrite one.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a new file, refusing to overwrite one.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `[storage]` and `[state_sync]` tables of every node.toml `bastion init` writes, commented
/// out with their defaults (README, "State sync").
const STORAGE_TOML: &str = "\n\
# [storage]                      # snapshots and the block log's retention\n\
# snapshot_every = 500           # a snapshot every N blocks; peers state-sync from them\n\
# keep_snapshots = 3             # the log is kept back to the oldest (about N * 3 blocks)\n\
# snapshot_write_mb_per_s = 128  # snapshot writeback pace (0: unpaced)\n\
# segment_kib = 65536            # block log segment size; pruned in whole segments\n\
\n\
# [state_sync]                   # join from a certified snapshot when behind what peers serve\n\
# enable = true\n\
# trust_height = 2000            # with trust_hash: sync to exactly this snapshot, whose block\n\
# trust_hash = \"...\"            # digest (64 hex) a node you trust shows (/v1/blocks/2000)\n\
# serve = true                   # serve this node's snapshots to peers\n\
# chunk_kib = 1024\n\
# serve_mb_per_s = 32            # per peer\n\
# give_up_after_s = 0            # 0: keep looking for a usable snapshot\n\
# fetch_kib_per_s = 0            # pace of this node's own sync downloads (0: unpaced)\n";

/// The `[bridge]` table of every validator's node.toml, commented out with its defaults
/// (README, "The bridge").
const BRIDGE_TOML: &str = "\n\
# [bridge]                       # the source chain whose deposits this validator attests\n\
# source = \"/path/to/source\"    # a simulated chain's directory (bastion devnet runs one)\n\
# confirmations = 2              # source blocks a deposit needs before it is attested\n\
# poll_ms = 250\n";
