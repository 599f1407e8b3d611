//! Durability soak: executes a fixed sequence of blocks into a data dir with random group
//! commits, printing every height it makes durable. The crash campaign (`tests/crash.rs`) kills
//! it with SIGKILL at random moments and checks that recovery never loses a height this process
//! printed, and recovers the reference state root. Operators can run it against a real disk to
//! see recovery work: `bastion-store-soak --data-dir D --blocks F`.
//!
//! Output, one line each, flushed: `recovered <height> <root>`, `durable <height> <root>`,
//! `done <height>`.

use bastion_exchange::Genesis;
use bastion_exchange::testkit::Rng;
use bastion_store::hex;
use bastion_store::{Store, StoreConfig};
use bastion_types::Block;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Execute blocks into a data dir with random group commits (durability soak)")]
struct Args {
    /// Data directory (created if absent; recovered if not).
    #[arg(long)]
    data_dir: PathBuf,
    /// File of blocks (postcard `Vec<Block>`, heights 1..=N, on the devnet genesis).
    #[arg(long)]
    blocks: PathBuf,
    /// Seed for the group-commit sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest group commit, in blocks.
    #[arg(long, default_value_t = 8)]
    max_group: u64,
    /// Snapshot every this many durable blocks.
    #[arg(long, default_value_t = 25)]
    snapshot_every: u64,
    /// Snapshots kept.
    #[arg(long, default_value_t = 2)]
    keep_snapshots: usize,
    /// Log segment size in bytes.
    #[arg(long, default_value_t = 64 << 10)]
    segment_bytes: u64,
}

fn run(args: &Args) -> Result<(), String> {
    let bytes = std::fs::read(&args.blocks).map_err(|e| format!("{}: {e}", args.blocks.display()))?;
    let blocks: Vec<Block> =
        postcard::from_bytes(&bytes).map_err(|e| format!("{}: {e}", args.blocks.display()))?;
    let cfg = StoreConfig {
        snapshot_every: args.snapshot_every,
        keep_snapshots: args.keep_snapshots,
        segment_bytes: args.segment_bytes,
        ..StoreConfig::default()
    };
    let (mut store, rec) = Store::open(&args.data_dir, &Genesis::devnet(), cfg).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: String| -> Result<(), String> {
        writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| e.to_string())
    };
    say(&mut out, format!("recovered {} {}", rec.height, hex(&rec.root)))?;
    let mut rng = Rng::new(args.seed ^ rec.height.rotate_left(17));
    let mut next = rec.height.saturating_add(1);
    let last = blocks.len() as u64;
    while next <= last {
        let group = 1 + rng.below(args.max_group.max(1));
        let end = next.saturating_add(group - 1).min(last);
        for h in next..=end {
            let block = blocks.get((h - 1) as usize).ok_or("block index")?;
            store.execute(block).map_err(|e| e.to_string())?;
        }
        let durable = store.commit().map_err(|e| e.to_string())?;
        say(&mut out, format!("durable {durable} {}", hex(&store.state().state_root())))?;
        next = end + 1;
    }
    say(&mut out, format!("done {}", store.state().height))?;
    store.close();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bastion-store-soak: {e}");
            ExitCode::from(2)
        }
    }
}
