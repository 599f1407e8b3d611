//! `bastion-perf`: one harness for every capability's benchmark suite.
//!
//! `cargo run --release -p bastion-perf -- <suite> [--quick] [--json FILE] [--seed N] [--backend B]`
//!
//! `bastion-perf report [--out DIR] [FILES...]` draws the JSON reports (default: every `*.json`
//! in `perf/results/`) as one HTML page with SVG plots, `DIR/index.html` (default
//! `target/perf-report/`); see `report/mod.rs`.
//!
//! Each suite measures Bastion's component and a baseline or peer in the same process, and the
//! headline figure is their ratio.

mod harness;
mod report;
mod suites;

use clap::Parser;
use harness::{Ctx, Report};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "bastion-perf",
    about = "Bastion benchmark suites (ratios against baselines measured in the same run)"
)]
struct Args {
    /// Suite to run: one of the names `list` prints, or `all` (`report` draws the JSON
    /// reports instead: `bastion-perf report --help`).
    suite: String,
    /// Short run (CI smoke size); figures from it are not for quoting.
    #[arg(long)]
    quick: bool,
    /// Write the report(s) as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Seed for the generated workloads.
    #[arg(long, default_value_t = 0x0BA5_7104)]
    seed: u64,
    /// Backend for the suites that have several (`sigverify`: cpu or gpu; `risk`: cpu or gpu).
    /// `gpu` needs an NVIDIA driver and NVRTC, and fails with the reason when either is missing.
    #[arg(long)]
    backend: Option<String>,
    /// `chaos`: how many fault schedules to run (default 3 with --quick, else 200). With
    /// `BASTION_SEED` set, exactly that one schedule runs.
    #[arg(long)]
    schedules: Option<u64>,
    /// `chaos`: how many validators, each in its own network namespace (4 to 7; default 4).
    #[arg(long)]
    nodes: Option<usize>,
    /// `chaos`: how many full nodes, each in its own namespace, following over the public
    /// network and serving the client's reads (0 to 2; default 1).
    #[arg(long)]
    full_nodes: Option<usize>,
}

fn main() -> ExitCode {
    // `report` is not a suite: it reads reports rather than measuring, with arguments of its own.
    if std::env::args_os().nth(1).is_some_and(|a| a == "report") {
        let args = report::ReportArgs::parse_from(std::env::args_os().skip(1));
        return match report::run(&args) {
            Ok(index) => {
                println!("wrote {}", index.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    if args.suite == "list" {
        for s in suites::ALL {
            println!("{:<10} {}", s.name, s.about);
        }
        println!(
            "{:<10} not a suite: the JSON reports as one HTML page of plots (`report --help`)",
            "report"
        );
        return ExitCode::SUCCESS;
    }
    if args.suite == "all" {
        return run_all(&args);
    }
    let Some(suite) = suites::ALL.iter().find(|s| s.name == args.suite) else {
        let names: Vec<&str> = suites::ALL.iter().map(|s| s.name).collect();
        eprintln!(
            "unknown suite '{}'; available: {}, all, list (and `report`)",
            args.suite,
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are meaningless (use --release)");
    }
    let ctx = Ctx {
        quick: args.quick,
        seed: args.seed,
        backend: args.backend.clone(),
        schedules: args.schedules,
        nodes: args.nodes,
        full_nodes: args.full_nodes,
    };
    eprintln!("suite {} ({}){}", suite.name, suite.about, if ctx.quick { " [quick]" } else { "" });
    let mut report = Report::new(suite.name, &ctx);
    let result = (suite.run)(&ctx, &mut report);
    report.finish();
    eprintln!("  peak RSS {:.1} MiB", report.peak_rss_mib);
    if let Some(path) = &args.json
        && let Err(e) = write_json(path, &report)
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suite {} failed: {e}", suite.name);
            ExitCode::FAILURE
        }
    }
}

fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<(), String> {
    let json = serde_json::to_string_pretty(value).map_err(|e| format!("cannot encode the report: {e}"))?;
    std::fs::write(path, json + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Runs every suite in a fresh process of this binary, so one suite's heap (the matching
/// suite keeps hundreds of MiB of pre-generated commands) cannot change another's memory
/// layout and timings; the reports are gathered into one JSON array.
fn run_all(args: &Args) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find this binary to run each suite in its own process: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = std::env::temp_dir().join(format!("bastion-perf-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let mut failed = false;
    for s in suites::ALL {
        if suites::NOT_IN_ALL.contains(&s.name) {
            eprintln!("suite {} is not part of `all`: run `bastion-perf {}` on its own", s.name, s.name);
            continue;
        }
        let out = dir.join(format!("{}.json", s.name));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg(s.name).arg("--seed").arg(args.seed.to_string()).arg("--json").arg(&out);
        if args.quick {
            cmd.arg("--quick");
        }
        if let Some(b) = &args.backend {
            cmd.arg("--backend").arg(b);
        }
        match cmd.status() {
            Ok(st) if st.success() => {}
            Ok(st) => {
                eprintln!("suite {} exited with {st}", s.name);
                failed = true;
            }
            Err(e) => {
                eprintln!("cannot run suite {}: {e}", s.name);
                failed = true;
            }
        }
        match std::fs::read_to_string(&out).map(|t| serde_json::from_str::<serde_json::Value>(&t)) {
            Ok(Ok(v)) => reports.push(v),
            Ok(Err(e)) => {
                eprintln!("suite {} wrote an unreadable report: {e}", s.name);
                failed = true;
            }
            Err(e) => {
                eprintln!("suite {} wrote no report: {e}", s.name);
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(path) = &args.json
        && let Err(e) = write_json(path, &reports)
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
