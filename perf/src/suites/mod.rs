//! The registry of suites. A capability adds its suite here: one module, one entry.

use crate::harness::{Ctx, Report};

pub mod api;
pub mod bridge;
pub mod chaos;
pub mod consensus;
pub mod defence;
pub mod e2e;
pub mod ingress;
pub mod margin;
pub mod matching;
pub mod oracle;
pub mod pricing;
pub mod risk;
pub mod sigverify;
pub mod statesync;
pub mod storage;

/// The `bastion` binary the process-based suites run: `$BASTION_BIN`, else next to this
/// executable. `needs` says what needs it, for the error.
pub fn bastion_bin(needs: &str) -> Result<std::path::PathBuf, String> {
    let path = match std::env::var_os("BASTION_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
            exe.parent().map(|d| d.join("bastion")).ok_or("this executable has no parent directory")?
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{needs} needs the validator binary, and {} does not exist: run `cargo build --release -p \
             bastion` first (or set BASTION_BIN to its path)",
            path.display()
        ))
    }
}

/// Runs `bastion devnet ARGS --duration SECS --json DIR/NAME.json` (output in DIR/NAME.out),
/// waits for it (at most SECS + 120 s, then kills it) and returns its JSON summary; a failed
/// run's error quotes the end of its output.
pub fn run_devnet(
    bin: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    args: &[&str],
    secs: u64,
) -> Result<serde_json::Value, String> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let json_path = dir.join(format!("{name}.json"));
    let log = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    eprintln!("  running {} devnet --duration {secs} {}", bin.display(), args.join(" "));
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("devnet")
        .args(["--duration", &secs.to_string()])
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {} devnet: {e}", bin.display()))?;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > Duration::from_secs(secs + 120) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name}: `bastion devnet` did not finish; see {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        return Err(format!("{name}: `bastion devnet` exited with {status}: {}", tail.join(" | ")));
    }
    let bytes = std::fs::read(&json_path).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{name}: bad summary JSON: {e}"))
}

/// Suites `all` leaves out: `chaos` needs root and minutes per schedule (CI runs its quick
/// mode as a stage of its own).
pub const NOT_IN_ALL: &[&str] = &["chaos"];

/// A named suite.
pub struct Suite {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Ctx, &mut Report) -> Result<(), String>,
}

pub const ALL: &[Suite] = &[
    Suite {
        name: "matching",
        about: "order book on the exchange-core mix vs a crates.io order book",
        run: matching::run,
    },
    Suite {
        name: "margin",
        about: "re-evaluate 1M cross-margin accounts after a price move",
        run: margin::run,
    },
    Suite { name: "pricing", about: "fixed-point option pricing vs plain f64", run: pricing::run },
    Suite {
        name: "sigverify",
        about: "ed25519 batch verification backends vs dalek single verify",
        run: sigverify::run,
    },
    Suite {
        name: "risk",
        about: "portfolio-margin screen of 1M accounts after a price move: risk kernel (host, GPU) vs the engine",
        run: risk::run,
    },
    Suite {
        name: "consensus",
        about: "finality latency in the deterministic 4-validator simulation, 1 ms and 50 ms links",
        run: consensus::run,
    },
    Suite {
        name: "defence",
        about: "an honest verifier's cost of a Byzantine leader's junk block and of governance approvals",
        run: defence::run,
    },
    Suite {
        name: "oracle",
        about: "checking validators' signed observations, and devnet finality with a live feed vs a near-fixed one",
        run: oracle::run,
    },
    Suite {
        name: "storage",
        about: "block log commit vs redb, 1M-account recovery, snapshot throughput and stall",
        run: storage::run,
    },
    Suite {
        name: "ingress",
        about: "UDP packets/s on one receiving thread: recvmmsg and io_uring backends vs a recv_from loop",
        run: ingress::run,
    },
    Suite {
        name: "e2e",
        about: "end to end: finalized orders/s against the signature-verification ceiling",
        run: e2e::run,
    },
    Suite {
        name: "api",
        about: "public edge: WebSocket fan-out to 1,000 subscribers, REST reads/s, gossip submit latency, full-node catch-up",
        run: api::run,
    },
    Suite {
        name: "statesync",
        about: "joining from a certified snapshot: chunk serving, verified sync from 4 peers vs loading one's own snapshot",
        run: statesync::run,
    },
    Suite {
        name: "bridge",
        about: "crediting attested deposits vs the devnet authority's, attestation checks, batch verification, a 1M credited set",
        run: bridge::run,
    },
    Suite {
        name: "chaos",
        about: "real validators in network namespaces under seeded network, process and disk faults; safety, agreement, no acknowledged tx lost, liveness after heal (root)",
        run: chaos::run,
    },
];
