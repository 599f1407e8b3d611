//! `bastion-perf`: one harness for every capability's benchmark suite.
//!
//! `cargo run --release -p bastion-perf -- <suite> [--quick] [--json FILE] [--seed N]`
//!
//! Each suite measures Bastion's component and a baseline or peer in the same process, and the
//! headline figure is their ratio.

mod harness;
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
    /// Suite to run: one of the names `list` prints, or `all`.
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.suite == "list" {
        for s in suites::ALL {
            println!("{:<10} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&suites::Suite> = if args.suite == "all" {
        suites::ALL.iter().collect()
    } else {
        match suites::ALL.iter().find(|s| s.name == args.suite) {
            Some(s) => vec![s],
            None => {
                let names: Vec<&str> = suites::ALL.iter().map(|s| s.name).collect();
                eprintln!("unknown suite '{}'; available: {}, all, list", args.suite, names.join(", "));
                return ExitCode::from(2);
            }
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are meaningless (use --release)");
    }
    let ctx = Ctx { quick: args.quick, seed: args.seed };
    let mut reports = Vec::new();
    let mut failed = false;
    for s in selected {
        eprintln!("suite {} ({}){}", s.name, s.about, if ctx.quick { " [quick]" } else { "" });
        let mut report = Report::new(s.name, &ctx);
        if let Err(e) = (s.run)(&ctx, &mut report) {
            eprintln!("suite {} failed: {e}", s.name);
            failed = true;
        }
        report.finish();
        eprintln!("  peak RSS {:.1} MiB", report.peak_rss_mib);
        reports.push(report);
    }
    if let Some(path) = args.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        match json
            .map_err(|e| e.to_string())
            .and_then(|j| std::fs::write(&path, j + "\n").map_err(|e| e.to_string()))
        {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
