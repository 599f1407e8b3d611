//! `bastion snapshot export` and `bastion snapshot import`: moving state by hand (issue 18).
//!
//! Export writes a data dir's newest snapshot that has an anchor in its logs (the blocks after
//! it up to a certified one) to one file. Import checks that file exactly as a network state
//! sync checks a peer's offer, against the chain's genesis validator set and the operator's
//! trusted height and hash, and installs it into an empty (or older) data dir. Both need the
//! node stopped (they take the data dir's lock).

use bastion_consensus::{CertChecker, CertLog, ChainSpec};
use bastion_statesync::TrustPoint;
use bastion_store::{Store, StoreConfig, hex};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Write the newest certified snapshot of a (stopped) full node's data dir to FILE.
    Export {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// The chain's genesis file (default: genesis.json beside the data dir or in the folder
        /// above, as `bastion devnet` and `bastion init` lay them out).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Verify an export file against the genesis validators and a trusted height and hash,
    /// and install it into a data dir.
    Import {
        /// The data directory to install into (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// The export file.
        file: PathBuf,
        /// The snapshot height to trust (the export's height).
        #[arg(long)]
        trust_height: u64,
        /// The digest (64 hex digits) of the block at --trust-height, as a node you trust
        /// shows it (`bastion snapshot export` prints it; the API's `/v1/blocks/<height>`).
        #[arg(long)]
        trust_hash: String,
        /// The chain's genesis file (default: genesis.json beside the data dir or in the folder
        /// above).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
}

fn spec_for(data_dir: &Path, genesis: Option<&PathBuf>) -> Result<ChainSpec, String> {
    let path = match genesis {
        Some(p) => p.clone(),
        None => {
            // `bastion devnet` keeps genesis.json beside the data dir; `bastion init` one level
            // up (OUT/genesis.json, OUT/v0/data).
            let parent = data_dir.parent().unwrap_or(Path::new("."));
            let beside = parent.join("genesis.json");
            let above = parent.parent().map(|p| p.join("genesis.json"));
            match [Some(beside), above].into_iter().flatten().find(|p| p.exists()) {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "no --genesis given and no genesis.json beside {} or in the folder above: \
                         pass the chain's genesis file",
                        data_dir.display()
                    ));
                }
            }
        }
    };
    ChainSpec::load(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs a snapshot command; `Ok` holds the report.
pub fn run(cmd: &SnapshotCommand) -> Result<String, String> {
    match cmd {
        SnapshotCommand::Export { data_dir, out, genesis } => {
            if !data_dir.join("VERSION").exists() {
                return Err(format!("{} is not a Bastion data dir (no VERSION file)", data_dir.display()));
            }
            let spec = spec_for(data_dir, genesis.as_ref())?;
            let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
            let (store, _) = Store::open(data_dir, &spec.exchange, cfg)
                .map_err(|e| format!("data dir {}: {e}", data_dir.display()))?;
            let certs = CertLog::open(data_dir)?;
            let e = bastion_statesync::file::export(&store, &certs, &spec.block_limits(), out)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "exported the snapshot at height {} ({:.1} MiB) to {}\nstate root   {}\nblock {} hash {}\nimport with: bastion snapshot import --data-dir DIR {} --trust-height {} --trust-hash {}",
                e.height,
                e.bytes as f64 / f64::from(1u32 << 20),
                out.display(),
                hex(&e.root),
                e.height,
                hex(&e.block_hash),
                out.display(),
                e.height,
                hex(&e.block_hash)
            ))
        }
        SnapshotCommand::Import { data_dir, file, trust_height, trust_hash, genesis } => {
            let trust = TrustPoint::parse(*trust_height, trust_hash)?;
            let spec = spec_for(data_dir, genesis.as_ref())?;
            let checker = CertChecker::new(&spec).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(data_dir)
                .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
            let (mut store, _) = Store::open(data_dir, &spec.exchange, StoreConfig::default())
                .map_err(|e| format!("data dir {}: {e}", data_dir.display()))?;
            if store.state().height >= trust.height {
                return Err(format!(
                    "{} is already at height {}, at or above the snapshot's {}: nothing to import",
                    data_dir.display(),
                    store.state().height,
                    trust.height
                ));
            }
            let mut certs = CertLog::open(data_dir)?;
            let i = bastion_statesync::file::import(&mut store, Some(&mut certs), &checker, file, &trust)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            store.close();
            Ok(format!(
                "imported height {} ({} accounts, {:.1} MiB): verified against the certificate of block {} and the trusted hash, root recomputed from every record in {} ms\ndata dir {} is at height {}, root {}",
                i.height,
                i.accounts,
                i.bytes as f64 / f64::from(1u32 << 20),
                i.height + 1,
                i.recompute.as_millis(),
                data_dir.display(),
                i.tip,
                hex(&i.root)
            ))
        }
    }
}
