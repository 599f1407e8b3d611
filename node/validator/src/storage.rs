//! `bastion storage`: inspect and check a node's data dir.

use bastion_exchange::Genesis;
use bastion_store::hex;
use bastion_store::{Store, StoreConfig};
use clap::Subcommand;
use std::path::PathBuf;

/// Data-dir commands.
#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Recover the data dir as a node start would (cutting a torn log tail, skipping damaged
    /// snapshots, replaying the log with every state root checked) and report what was found.
    /// Exits 1 when the data cannot be made consistent, naming the file and height.
    Check {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Genesis file (JSON); the embedded devnet genesis when absent.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Also recompute the state root from every record (slow on large states) and compare
        /// it with the incrementally maintained one.
        #[arg(long)]
        deep: bool,
    },
}

/// The exchange genesis in `path`: the chain's genesis file as `bastion init` writes it and
/// `bastion run` reads it (a chain spec), or a bare exchange genesis.
fn genesis_of(path: &std::path::Path) -> Result<Genesis, String> {
    match bastion_consensus::ChainSpec::load(path) {
        Ok(spec) => Ok(spec.exchange),
        Err(spec_err) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: neither a chain genesis file ({spec_err}) nor an exchange genesis ({e})",
                    path.display()
                )
            })
        }
    }
}

/// Runs a storage command; `Ok` holds the report, `Err` why the data dir is not usable.
pub fn run(cmd: &StorageCommand) -> Result<String, String> {
    match cmd {
        StorageCommand::Check { data_dir, genesis, deep } => {
            let genesis = match genesis {
                None => Genesis::devnet(),
                Some(path) => genesis_of(path)?,
            };
            if !data_dir.join("VERSION").exists() {
                return Err(format!("{} is not a Bastion data dir (no VERSION file)", data_dir.display()));
            }
            let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
            let (store, rec) = Store::open(data_dir, &genesis, cfg).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            out.push(format!("data dir {}", data_dir.display()));
            out.extend(rec.describe());
            let log = store.log();
            match (log.first_height(), log.last_height()) {
                (Some(a), Some(b)) => out.push(format!(
                    "log: heights {a}..={b}, {:.1} MiB",
                    log.size_bytes() as f64 / f64::from(1u32 << 20)
                )),
                _ => out.push("log: empty".into()),
            }
            out.push(format!("state: height {} root {}", rec.height, hex(&rec.root)));
            if *deep {
                let full = store.state().recompute_root();
                if full != rec.root {
                    return Err(format!(
                        "deep check failed: the root recomputed from every record is {}, the committed one {}",
                        hex(&full),
                        hex(&rec.root)
                    ));
                }
                out.push("deep check: the root recomputed from every record matches".into());
            }
            store.close();
            out.push("ok".into());
            Ok(out.join("\n"))
        }
    }
}
