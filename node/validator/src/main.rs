//! `bastion`: the validator binary and its operator commands.

// The devnet summary is one large `serde_json::json!` object.
#![recursion_limit = "256"]

mod bridge;
mod bridge_cmd;
mod configure;
mod dashboard;
mod devnet;
mod devnet_bridge;
mod duration;
mod full;
mod governance;
mod gpu_risk;
mod keys;
mod loadgen;
mod metrics;
mod netcmd;
mod node;
mod oracle;
mod pipeline;
mod public;
mod public_metrics;
mod publish;
mod risk;
mod sig;
mod snapshot_cmd;
mod state_sync;
mod status;
mod storage;
mod telemetry;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "bastion", version, about = "Bastion validator and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local network of validators on loopback, with progress, a summary and a state
    /// root check across validators.
    Devnet(devnet::DevnetArgs),
    /// Create a validator keys file (ed25519 identity, BLS consensus key), mode 0600.
    Keygen(keys::KeygenArgs),
    /// Create a local network: a genesis file and, per validator, a keys file and node config.
    Init(keys::InitArgs),
    /// Run one validator from its config file (`bastion init` writes one per validator).
    Run(RunArgs),
    /// Risk arithmetic of the exchange, as consensus computes it.
    #[command(subcommand)]
    Risk(risk::RiskCommand),
    /// Ed25519 signature checks with the validator's verification backends.
    #[command(subcommand)]
    Sig(sig::SigCommand),
    /// Network checks for the ingress backends (kernel bypass included).
    #[command(subcommand)]
    Net(netcmd::NetCommand),
    /// Check or tune this host for a node's config: hugepages, socket buffer sysctls, CPU
    /// governor, NIC channels, IRQ affinity, memlock and file limits, tile pins against
    /// isolated cores. `check` exits 1 when the host is not ready.
    #[command(subcommand)]
    Configure(configure::ConfigureCommand),
    /// Inspect and check a node's data dir (block log, snapshots, recovery).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Parameter changes by validators' signatures: propose, approve, check, submit.
    #[command(subcommand)]
    Governance(governance::GovernanceCommand),
    /// Show a running node's per-tile load, mempool and finality (from its metrics endpoint).
    Status(status::StatusArgs),
    /// Move state by hand: export a data dir's newest certified snapshot to a file, or import
    /// one into an empty data dir against a trusted height and hash.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
    /// The bridge's simulated source chain: its state, deposits to the bridge, and redeeming a
    /// signed withdrawal voucher.
    #[command(subcommand)]
    Bridge(bridge_cmd::BridgeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Devnet(args) => report(devnet::run(&args)),
        Command::Keygen(args) => report(keys::keygen(&args)),
        Command::Init(args) => report(keys::init(&args)),
        Command::Run(args) => {
            disk_full_hint();
            report(run(&args))
        }
        Command::Storage(cmd) => report(storage::run(&cmd)),
        Command::Snapshot(cmd) => report(snapshot_cmd::run(&cmd)),
        Command::Bridge(cmd) => report(bridge_cmd::run(&cmd)),
        Command::Governance(cmd) => match governance::run(&cmd) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err((code, msg)) => {
                eprintln!("error: {msg}");
                ExitCode::from(code)
            }
        },
        Command::Risk(cmd) => report(risk::run(&cmd)),
        Command::Status(args) => match status::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        },
        Command::Configure(cmd) => checked(configure::run(&cmd)),
        Command::Net(cmd) => checked(netcmd::run(&cmd)),
        Command::Sig(cmd) => {
            let out = sig::run(&cmd);
            print!("{}", out.stdout);
            match out.error {
                None => ExitCode::SUCCESS,
                Some((code, msg)) => {
                    eprintln!("error: {msg}");
                    ExitCode::from(code)
                }
            }
        }
    }
}

/// A check's report on stdout and its exit code (0 ready, 1 not), or a usage error (exit 2).
fn checked(result: Result<(String, u8), String>) -> ExitCode {
    match result {
        Ok((text, code)) => {
            print!("{text}");
            ExitCode::from(code)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// A node whose data dir's file system fills stops: commonware's consensus actors panic when
/// their journal cannot be synced (found by the chaos campaign's full disks), and Bastion's
/// store refuses to go on without its log. After the panic's own message, this adds the one
/// line an operator acts on.
fn disk_full_hint() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if is_write_failure(&msg) {
            eprintln!(
                "error: the node could not write its data dir (its file system is full, or the device \
                 failed). It stopped rather than vote or execute without writing its journal and log; \
                 free space (or fix the device) and start it again: it recovers from both."
            );
        }
    }));
}

/// Whether a panic's message is a failed write to the data dir: the OS's `ENOSPC`, or
/// commonware runtime's storage errors, which a full disk surfaces as `WriteFailed` (a buffered
/// journal append fails at its flush, possibly after the space is back: found by the chaos
/// campaign, seed 11632824794323939782).
fn is_write_failure(msg: &str) -> bool {
    ["No space left on device", "StorageFull", "WriteFailed"].iter().any(|m| msg.contains(m))
}

/// `bastion run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The validator's config file (TOML).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Stop cleanly once this height is finalized.
    #[arg(long)]
    until_height: Option<u64>,
    /// Stop cleanly after this long (`90s`, `2m`, `500ms`; a bare number is seconds).
    #[arg(long, value_parser = duration::seconds)]
    duration: Option<f64>,
    /// Append `height latency_us` for each of this validator's finalized proposals to FILE.
    #[arg(long)]
    finality_log: Option<std::path::PathBuf>,
    /// Join from a peer's certified snapshot at start, whatever this node's height (needs
    /// `[state_sync] enable = true`, the default).
    #[arg(long)]
    state_sync: bool,
    /// Sync to the snapshot at exactly this height (with --trust-hash): the block an operator
    /// checked out of band. Overrides `[state_sync] trust_height`.
    #[arg(long, requires = "trust_hash")]
    trust_height: Option<u64>,
    /// The digest (64 hex digits) of the block at --trust-height.
    #[arg(long, requires = "trust_height")]
    trust_hash: Option<String>,
}

fn run(args: &RunArgs) -> Result<String, String> {
    let cfg = node::NodeConfig::load(&args.config)?;
    let duration = match args.duration {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(format!("--duration {s}: must be a positive number of seconds"));
        }
        Some(s) => Some(std::time::Duration::from_secs_f64(s)),
        None => None,
    };
    let opts = node::RunOptions {
        until_height: args.until_height,
        duration,
        finality_log: args.finality_log.clone(),
        state_sync: args.state_sync,
        trust: match (args.trust_height, &args.trust_hash) {
            (Some(h), Some(x)) => Some(bastion_statesync::TrustPoint::parse(h, x)?),
            _ => None,
        },
    };
    match cfg.role {
        public::Role::Validator => node::run(&cfg, &opts),
        public::Role::Full => full::run(&cfg, &opts),
    }
}

/// Prints a command's report, or its error with a failing exit status.
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_write_failure;

    #[test]
    fn the_full_disk_hint_knows_commonwares_write_errors() {
        // The panics the chaos campaign's full disks produced, verbatim.
        assert!(is_write_failure("unable to append to journal: Runtime(WriteFailed)"));
        assert!(is_write_failure(
            "unable to sync journal: Io(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })"
        ));
        assert!(!is_write_failure("index out of bounds: the len is 3 but the index is 7"));
        assert!(!is_write_failure("unable to append to journal: Runtime(ReadFailed)"));
    }
}
