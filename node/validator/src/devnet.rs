//! `bastion devnet`: a local network of validators on loopback, each a `bastion run` process
//! (production runtime, authenticated p2p, its own data dir), with a live progress line, a
//! summary, and a check that every validator's block log holds the same state root at every
//! common height. Exits non-zero if any validator fails or the roots disagree.
//!
//! Blocks come from the built-in workload generator; the UDP load generator of signed orders
//! and the flash-crash scenario arrive with the validator pipeline.

use crate::keys::{self, InitArgs};
use bastion_storage::{BlockLog, LogConfig};
use bastion_store::{LogEntry, hex};
use bastion_types::Event;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bastion devnet`.
#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Number of validators (each a process).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 20.0)]
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
    /// Transactions per block from the workload generator (large blocks: thousands).
    #[arg(long, default_value_t = 16)]
    pub txs_per_block: usize,
    /// Trader accounts the workload generator uses.
    #[arg(long, default_value_t = 8)]
    pub traders: u64,
}

/// The validator processes; killed on drop so an error leaves none running.
struct Fleet {
    children: Vec<Option<Child>>,
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
    }
}

fn free_base_port(n: usize) -> Result<u16, String> {
    let free = |p: u16| TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), p)).is_ok();
    let mut base: u16 = 7400;
    while base < 65_000 {
        if (0..n as u16).all(|i| free(base + i)) {
            return Ok(base);
        }
        base += n as u16;
    }
    Err("no free block of loopback ports from 7400; pass --base-port".into())
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
    let base_port = match args.base_port {
        Some(p) => p,
        None => free_base_port(n)?,
    };
    keys::init(&InitArgs {
        validators: n,
        out: root.clone(),
        chain_id: "bastion-devnet".into(),
        base_port,
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        seed: None,
    })?;
    if args.txs_per_block == 0 || args.txs_per_block > bastion_exchange::BLOCK_TXS_MAX {
        return Err(format!(
            "--txs-per-block {}: allowed 1 to {}",
            args.txs_per_block,
            bastion_exchange::BLOCK_TXS_MAX
        ));
    }
    if args.traders == 0 {
        return Err("--traders 0: at least 1".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bastion executable: {e}"))?;
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("v{i}"))).collect();
    for dir in &dirs {
        let path = dir.join("node.toml");
        let workload =
            format!("\n[workload]\ntraders = {}\ntxs_per_block = {}\n", args.traders, args.txs_per_block);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, workload.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "devnet: {n} validators on 127.0.0.1:{base_port}..{} for {:.0} s, data in {}",
        base_port as usize + n - 1,
        args.duration,
        root.display()
    );
    println!(
        "        blocks of {} transactions from the built-in workload generator over {} traders (UDP order flow arrives with the pipeline)",
        args.txs_per_block, args.traders
    );
    let mut fleet = Fleet { children: Vec::new() };
    for dir in &dirs {
        let stderr = std::fs::File::create(dir.join("node.log"))
            .map_err(|e| format!("cannot create {}: {e}", dir.join("node.log").display()))?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(dir.join("node.toml"))
            .arg("--duration")
            .arg(format!("{}", args.duration))
            .arg("--finality-log")
            .arg(dir.join("finality.log"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        fleet.children.push(Some(child));
    }

    // Progress until every process exits.
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut exits = vec![None; n];
    loop {
        std::thread::sleep(Duration::from_millis(500));
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
        let top = st.iter().map(|s| s.height).max().unwrap_or(0);
        let low = st.iter().map(|s| s.height).min().unwrap_or(0);
        let rate = (top.saturating_sub(last.1)) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), top);
        let mut p50s: Vec<f64> = st.iter().map(|s| s.finality_p50).collect();
        p50s.sort_by(f64::total_cmp);
        let p99 = st.iter().map(|s| s.finality_p99).fold(0.0, f64::max);
        print!(
            "\r  t={:>5.1}s  height {top:>6} (slowest {low:>6})  {rate:>6.1} blocks/s  finality p50 {:>6.1} ms  p99 {p99:>7.1} ms   ",
            start.elapsed().as_secs_f64(),
            p50s.get(n / 2).copied().unwrap_or(0.0),
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if exits.iter().all(Option::is_some) {
            println!();
            break;
        }
        if start.elapsed() > Duration::from_secs_f64(args.duration + 60.0) {
            println!();
            return Err(
                "validators did not stop within 60 s of the end; see node.log in each validator dir".into()
            );
        }
    }
    for (i, e) in exits.iter().enumerate() {
        if let Some(status) = e
            && !status.success()
        {
            let log = dirs[i].join("node.log");
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
            return Err(format!(
                "validator v{i} exited with {status}; last lines of {}:{tail}",
                log.display()
            ));
        }
    }
    summarize(args, &dirs, start.elapsed())
}

/// Checks the roots at every common height and builds the summary.
fn summarize(args: &DevnetArgs, dirs: &[PathBuf], elapsed: Duration) -> Result<String, String> {
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
    let (mut txs, mut rejected, mut fills, mut liquidations, mut adl) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut disagree = None;
    for h in first..=common {
        let mut roots = Vec::new();
        for (i, log) in logs.iter().enumerate() {
            let bytes = log.read(h).map_err(|e| format!("v{i} height {h}: {e}"))?;
            let entry = LogEntry::decode(&bytes).map_err(|e| format!("v{i} height {h}: {e}"))?;
            if i == 0 {
                txs += entry.block.txs.len() as u64;
                for e in &entry.events {
                    match e {
                        Event::Rejected { .. } => rejected += 1,
                        Event::Fill { .. } => fills += 1,
                        Event::Liquidated { .. } => liquidations += 1,
                        Event::Deleveraged { .. } => adl += 1,
                        _ => {}
                    }
                }
            }
            roots.push(entry.root);
        }
        if roots.iter().any(|r| *r != roots[0]) && disagree.is_none() {
            disagree = Some((h, roots.iter().map(|r| hex(r)).collect::<Vec<_>>()));
        }
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
    for d in dirs {
        let text = std::fs::read_to_string(d.join("finality.log")).unwrap_or_default();
        for line in text.lines() {
            if let Some(us) = line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()) {
                let _ = hist.record(us.max(1));
            }
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let agree = disagree.is_none();
    let mut out = String::new();
    let _ = writeln!(out, "devnet summary ({} validators, {:.1} s)", dirs.len(), elapsed.as_secs_f64());
    let _ = writeln!(out, "  finalized height     {top} (all validators hold 1..={common})");
    let _ = writeln!(out, "  blocks/s             {:.1}", top as f64 / elapsed.as_secs_f64());
    let _ = writeln!(out, "  transactions         {txs} finalized, {rejected} rejected by the exchange");
    let _ = writeln!(out, "  fills                {fills}");
    let _ = writeln!(out, "  liquidations         {liquidations} (auto-deleveraging events {adl})");
    let _ = writeln!(
        out,
        "  finality (ms)        p50 {:.1}  p99 {:.1}  p999 {:.1}  ({} proposals, from proposal built to finalized)",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.len()
    );
    let _ = write!(
        out,
        "  state roots agree    {} (heights {first}..={common} on every validator)",
        if agree { "yes" } else { "NO" }
    );
    if let Some(path) = &args.json {
        let summary = json!({
            "validators": dirs.len(),
            "duration_s": elapsed.as_secs_f64(),
            "finalized_height": top,
            "common_height": common,
            "orders_finalized": txs,
            "orders_rejected": rejected,
            "fills": fills,
            "liquidations": liquidations,
            "adl_events": adl,
            "finality_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999) },
            "state_roots_agree": agree,
        });
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match disagree {
        None => Ok(out),
        Some((h, roots)) => Err(format!("{out}\nstate roots differ at height {h}: {roots:?}")),
    }
}
