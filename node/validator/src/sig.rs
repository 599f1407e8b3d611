//! `bastion sig ...`: operator commands that check ed25519 signatures with the validator's own
//! verification backends (`bastion-accel`), one backend or all of them side by side, so an
//! operator can see that every backend applies the same rule (ZIP-215) to a given input.
//!
//! Exit codes: 0 when every backend asked agrees (whatever the verdicts are), 1 when backends
//! disagree or a backend cannot run here (`gpu`), 2 for bad input (malformed hex or lengths in
//! flags, an unknown backend name, an unreadable FILE or one that is not a JSON array).

use bastion_accel::{AccelError, Backend, OwnedSigItem, Selection, SigItem, Verifier};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::time::Duration;

/// Exit status for bad input (flags, file).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when backends disagree or a backend is unavailable.
pub const EXIT_FAILED: u8 = 1;

/// The names `--backend` accepts, in the order `all` runs them (`gpu` is named alone).
const BACKEND_NAMES: &str = "scalar, batch, parallel, auto, gpu, all";

/// Start-up calibration budget for the `auto` backend.
const CALIBRATION_BUDGET: Duration = Duration::from_millis(150);

/// Signature subcommands.
#[derive(Subcommand, Debug)]
pub enum SigCommand {
    /// Verify one signature and print each backend's verdict: `V` (valid) or `X` (invalid),
    /// then the backend name. An invalid signature is not an error (exit 0); exit 1 when
    /// backends disagree or the backend is unavailable here (gpu), exit 2 for malformed input.
    Verify(VerifyArgs),
    /// Verify every case of a JSON file, the whole file as one batch per backend, and print one
    /// line per case with each backend's verdict (`V`/`X`) in fixed columns.
    ///
    /// FILE is a JSON array of objects with hex fields `pub_key` (32 bytes), `message` (any
    /// length) and `signature` (64 bytes). An entry with a missing or malformed field is
    /// reported on its own line and counted in the summary, but does not change the exit code:
    /// the exit code is 1 only when backends disagree on some case (or a backend is
    /// unavailable), and 2 when FILE cannot be read or is not a JSON array.
    VerifyFile(VerifyFileArgs),
    /// Report what this host verifies with: CPU cores and curve arithmetic, the GPU (or why
    /// there is none), NVRTC and the kernel cache, and the start-up calibration's crossovers
    /// (the batch sizes from which `auto` switches to batch, parallel and the GPU).
    Backends(BackendsArgs),
}

/// Inputs of `bastion sig backends`.
#[derive(Args, Debug)]
pub struct BackendsArgs {
    /// Calibration budget in milliseconds (the validator's start-up uses 150 for the CPU
    /// backends; a GPU adds about as much again, plus the kernel's first compilation).
    #[arg(long, default_value_t = 150)]
    calibrate_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Inputs of `bastion sig verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Backend: scalar, batch, parallel, auto, gpu, or `all` (every CPU backend, auto, and the
    /// GPU where one opens).
    #[arg(long, default_value = "all")]
    backend: String,
    /// Public key, 32 bytes as hex (64 hex digits).
    #[arg(long)]
    pk: String,
    /// Message, as hex (any length; empty allowed).
    #[arg(long, allow_hyphen_values = true)]
    msg: String,
    /// Signature, 64 bytes as hex (128 hex digits).
    #[arg(long)]
    sig: String,
}

/// Inputs of `bastion sig verify-file`.
#[derive(Args, Debug)]
pub struct VerifyFileArgs {
    /// JSON array of {"pub_key": HEX, "message": HEX, "signature": HEX}.
    file: std::path::PathBuf,
    /// Backend: scalar, batch, parallel, auto, gpu, or `all` (every CPU backend, auto, and the
    /// GPU where one opens).
    #[arg(long, default_value = "all")]
    backend: String,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// Lines for stdout.
    pub stdout: String,
    /// An error for stderr, with its exit code; `None` is success.
    pub error: Option<(u8, String)>,
}

impl Outcome {
    fn fail(code: u8, msg: String) -> Outcome {
        Outcome { stdout: String::new(), error: Some((code, msg)) }
    }
}

/// Runs a signature subcommand.
pub fn run(cmd: &SigCommand) -> Outcome {
    match cmd {
        SigCommand::Verify(a) => verify(a),
        SigCommand::VerifyFile(a) => verify_file(a),
        SigCommand::Backends(a) => backends(a),
    }
}

/// A crossover for printing: `never` for `usize::MAX`.
fn from_size(n: usize) -> String {
    if n == usize::MAX { "never".to_owned() } else { n.to_string() }
}

fn backends(a: &BackendsArgs) -> Outcome {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let curve = bastion_accel::curve_backend();
    let gpu = bastion_accel::gpu_probe(0);
    let nvrtc = bastion_accel::nvrtc_status();
    let cache = bastion_accel::kernel_cache_dir();
    let c = bastion_accel::calibrate(Duration::from_millis(a.calibrate_ms));
    let samples = |s: &[(Backend, usize, f64)]| -> Vec<serde_json::Value> {
        s.iter()
            .map(|(b, n, r)| serde_json::json!({"backend": b.name(), "batch": n, "sigs_per_s": r}))
            .collect()
    };
    if a.json {
        let v = serde_json::json!({
            "cpu": {"cores": cores, "curve_backend": curve},
            "gpu": match &gpu { Ok(i) => serde_json::json!({"available": true, "info": i.to_string(), "arch": i.arch()}),
                                Err(e) => serde_json::json!({"available": false, "reason": e.to_string()}) },
            "nvrtc": match &nvrtc { Ok(s) => serde_json::json!({"available": true, "info": s}),
                                    Err(e) => serde_json::json!({"available": false, "reason": e}) },
            "kernel_cache": cache.as_ref().map(|p| p.display().to_string()),
            "calibration": {
                "budget_ms": a.calibrate_ms,
                "batch_from": c.batch_from,
                "parallel_from": c.parallel_from,
                "gpu_from": (c.gpu_from != usize::MAX).then_some(c.gpu_from),
                "gpu_unavailable": c.gpu_unavailable,
                "samples": samples(&c.samples),
                "gpu_samples": samples(&c.gpu_samples),
                "gpu_hash_rates": c.gpu_hash_rates.iter().map(|(m, r)| serde_json::json!({"hash_on": m.name(), "sigs_per_s": r})).collect::<Vec<_>>(),
            },
        });
        return Outcome { stdout: format!("{v:#}\n"), error: None };
    }
    let mut out = String::new();
    let _ = writeln!(out, "cpu     {cores} cores, curve arithmetic {curve}");
    match &gpu {
        Ok(i) => {
            let _ = writeln!(out, "gpu     {i}");
        }
        Err(e) => {
            let _ = writeln!(out, "gpu     none: {e}");
        }
    }
    match &nvrtc {
        Ok(s) => {
            let _ = writeln!(out, "nvrtc   {s}");
        }
        Err(e) => {
            let _ = writeln!(out, "nvrtc   none: {}", e.replace('\n', " "));
        }
    }
    let _ = writeln!(
        out,
        "cache   {}",
        cache
            .as_ref()
            .map_or_else(|| "none (no HOME or XDG_CACHE_HOME)".to_owned(), |p| p.display().to_string())
    );
    let _ = writeln!(
        out,
        "auto    batch from {}, parallel from {}, gpu from {} (calibrated in {} ms)",
        from_size(c.batch_from),
        from_size(c.parallel_from),
        from_size(c.gpu_from),
        a.calibrate_ms
    );
    for (b, n, r) in c.samples.iter().chain(c.gpu_samples.iter()) {
        let _ = writeln!(out, "        {:<8} @{n:<6} {r:>12.0} sigs/s", b.name());
    }
    for (mode, r) in &c.gpu_hash_rates {
        let _ = writeln!(out, "        gpu, challenge hashed on the {mode:<6} {r:>12.0} sigs/s");
    }
    if let Some(g) = &c.gpu {
        let _ = writeln!(out, "        gpu keeps hashing on the {}", g.hash_on());
    }
    if cfg!(debug_assertions) {
        let _ =
            writeln!(out, "note    a debug build: the rates are not representative (build with --release)");
    }
    Outcome { stdout: out, error: None }
}

/// One named verifier (`auto` is not a `Backend`, hence the separate name).
struct Named {
    name: &'static str,
    verifier: Box<dyn Verifier>,
}

/// Parses `--backend` into the selections to run (`all` is every CPU backend and `auto`), or
/// an error naming the valid names (exit 2).
fn selection(name: &str) -> Result<Vec<Selection>, (u8, String)> {
    if name.trim().eq_ignore_ascii_case("all") {
        // The GPU joins `all` where one opens; elsewhere `all` is the CPU backends and auto.
        let gpu = bastion_accel::gpu_probe(0).is_ok().then_some(Selection::Fixed(Backend::Gpu));
        return Ok(Backend::CPU
            .iter()
            .map(|&b| Selection::Fixed(b))
            .chain([Selection::Auto])
            .chain(gpu)
            .collect());
    }
    name.parse::<Selection>()
        .map(|s| vec![s])
        .map_err(|_| (EXIT_USAGE, format!("--backend: unknown backend {name:?}; valid: {BACKEND_NAMES}")))
}

/// Builds the selected verifiers: `Err((exit code, message))` for an unavailable backend (1).
/// `auto` runs the start-up calibration first.
fn verifiers(selection: &[Selection]) -> Result<Vec<Named>, (u8, String)> {
    selection
        .iter()
        .map(|s| {
            let name = match s {
                Selection::Auto => "auto",
                Selection::Fixed(b) => b.name(),
            };
            s.build(CALIBRATION_BUDGET)
                .map(|verifier| Named { name, verifier })
                .map_err(|e| (EXIT_FAILED, format!("--backend {name}: {e}")))
        })
        .collect()
}

/// The user-facing name of a field `OwnedSigItem::from_hex` reports, given the names this
/// command calls the three inputs (flags or JSON keys).
fn field_name(field: &str, names: [&'static str; 3]) -> &'static str {
    let f = field.to_ascii_lowercase();
    if f.contains("sig") {
        names[2]
    } else if f.contains("msg") || f.contains("message") {
        names[1]
    } else if f.contains("pub") || f.contains("key") || f == "pk" {
        names[0]
    } else {
        // Not one of the three: keep the library's wording.
        "input"
    }
}

/// Renders a parse error naming the field as this command calls it.
fn describe(e: &AccelError, names: [&'static str; 3]) -> String {
    match e {
        AccelError::Hex { field, reason } => {
            format!("{}: not valid hex: {reason}", field_name(field, names))
        }
        AccelError::Length { field, expected, got } => {
            format!("{}: expected {expected} bytes, got {got}", field_name(field, names))
        }
        other => other.to_string(),
    }
}

fn verdict(v: bool) -> char {
    if v { 'V' } else { 'X' }
}

fn verify(a: &VerifyArgs) -> Outcome {
    let selected = match selection(&a.backend) {
        Ok(s) => s,
        Err((code, msg)) => return Outcome::fail(code, msg),
    };
    let item = match OwnedSigItem::from_hex(&a.pk, &a.msg, &a.sig) {
        Ok(i) => i,
        Err(e) => return Outcome::fail(EXIT_USAGE, describe(&e, ["--pk", "--msg", "--sig"])),
    };
    let verifiers = match verifiers(&selected) {
        Ok(v) => v,
        Err((code, msg)) => return Outcome::fail(code, msg),
    };
    let items = [item.as_item()];
    let mut stdout = String::new();
    let mut verdicts = Vec::with_capacity(verifiers.len());
    for n in &verifiers {
        let v = n.verifier.verify(&items).first().copied();
        match v {
            Some(v) => {
                let _ = writeln!(stdout, "{} {}", verdict(v), n.name);
                verdicts.push((n.name, v));
            }
            None => {
                return Outcome {
                    stdout,
                    error: Some((EXIT_FAILED, format!("backend {} returned no verdict", n.name))),
                };
            }
        }
    }
    let error = if verdicts.windows(2).any(|w| w[0].1 != w[1].1) {
        let all: Vec<String> = verdicts.iter().map(|(n, v)| format!("{n}={}", verdict(*v))).collect();
        Some((EXIT_FAILED, format!("backends disagree: {}", all.join(" "))))
    } else {
        None
    };
    Outcome { stdout, error }
}

/// One entry of the file: a parsed item, or why it could not be parsed.
type Entry = Result<OwnedSigItem, String>;

/// Parses the file's text: `Err` when it is not a JSON array (the whole file is unusable),
/// otherwise one entry per element, malformed elements carrying their error.
pub fn parse_cases(text: &str) -> Result<Vec<Entry>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let serde_json::Value::Array(cases) = value else {
        return Err("expected a JSON array of {\"pub_key\", \"message\", \"signature\"} objects".into());
    };
    Ok(cases.iter().map(parse_case).collect())
}

fn parse_case(case: &serde_json::Value) -> Entry {
    let serde_json::Value::Object(map) = case else {
        return Err("not a JSON object".into());
    };
    let field = |k: &str| -> Result<&str, String> {
        match map.get(k) {
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(format!("{k}: not a string")),
            None => Err(format!("{k}: missing")),
        }
    };
    let (pk, msg, sig) = (field("pub_key")?, field("message")?, field("signature")?);
    OwnedSigItem::from_hex(pk, msg, sig).map_err(|e| describe(&e, ["pub_key", "message", "signature"]))
}

/// Width of one verdict column (the longest backend name plus a space).
const COLUMN: usize = 9;

/// Verifies the parsed entries, every well-formed one in a single batch per verifier, and
/// renders the table. Returns the text and the indices (into `entries`) where verifiers
/// disagree.
fn table(entries: &[Entry], verifiers: &[Named]) -> Result<(String, Vec<usize>), String> {
    let items: Vec<SigItem<'_>> =
        entries.iter().filter_map(|e| e.as_ref().ok().map(|i| i.as_item())).collect();
    let mut columns: Vec<Vec<bool>> = Vec::with_capacity(verifiers.len());
    for n in verifiers {
        let v = n.verifier.verify(&items);
        if v.len() != items.len() {
            return Err(format!(
                "backend {} returned {} verdicts for {} items",
                n.name,
                v.len(),
                items.len()
            ));
        }
        columns.push(v);
    }
    let mut out = String::new();
    let _ = write!(out, "{:>6} ", "case");
    for n in verifiers {
        let _ = write!(out, "{:<COLUMN$}", n.name);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    let (mut valid, mut invalid, mut malformed) = (0usize, 0usize, 0usize);
    let mut disagree = Vec::new();
    let mut k = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let _ = write!(out, "{i:>6} ");
        match e {
            Err(msg) => {
                malformed += 1;
                let _ = writeln!(out, "error: {msg}");
            }
            Ok(_) => {
                let row: Vec<bool> = columns.iter().map(|c| c[k]).collect();
                k += 1;
                let mut line = String::new();
                for v in &row {
                    let _ = write!(line, "{:<COLUMN$}", verdict(*v));
                }
                let mut line = line.trim_end().to_string();
                if row.windows(2).any(|w| w[0] != w[1]) {
                    disagree.push(i);
                    line.push_str("  DISAGREE");
                } else if row.first().copied().unwrap_or(false) {
                    valid += 1;
                } else {
                    invalid += 1;
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = write!(
        out,
        "{} cases: {valid} valid, {invalid} invalid, {malformed} malformed, {} disagreements",
        entries.len(),
        disagree.len()
    );
    out.push('\n');
    Ok((out, disagree))
}

fn verify_file(a: &VerifyFileArgs) -> Outcome {
    let selected = match selection(&a.backend) {
        Ok(s) => s,
        Err((code, msg)) => return Outcome::fail(code, msg),
    };
    let text = match std::fs::read_to_string(&a.file) {
        Ok(t) => t,
        Err(e) => return Outcome::fail(EXIT_USAGE, format!("cannot read {}: {e}", a.file.display())),
    };
    let entries = match parse_cases(&text) {
        Ok(e) => e,
        Err(e) => return Outcome::fail(EXIT_USAGE, format!("{}: {e}", a.file.display())),
    };
    let verifiers = match verifiers(&selected) {
        Ok(v) => v,
        Err((code, msg)) => return Outcome::fail(code, msg),
    };
    match table(&entries, &verifiers) {
        Err(e) => Outcome::fail(EXIT_FAILED, e),
        Ok((stdout, disagree)) if disagree.is_empty() => Outcome { stdout, error: None },
        Ok((stdout, disagree)) => {
            let list: Vec<String> = disagree.iter().map(|i| i.to_string()).collect();
            Outcome {
                stdout,
                error: Some((EXIT_FAILED, format!("backends disagree on case(s) {}", list.join(", ")))),
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn backends_reports_every_part_and_json_parses() {
        let out = run(&SigCommand::Backends(BackendsArgs { calibrate_ms: 20, json: false }));
        assert!(out.error.is_none(), "{:?}", out.error);
        for head in ["cpu ", "gpu ", "nvrtc ", "cache ", "auto "] {
            assert!(out.stdout.lines().any(|l| l.starts_with(head)), "{head} missing:\n{}", out.stdout);
        }
        if bastion_accel::gpu_probe(0).is_err() {
            assert!(out.stdout.contains("gpu from never"), "{}", out.stdout);
            assert!(out.stdout.contains("libcuda"), "the reason names the driver:\n{}", out.stdout);
        }
        let out = run(&SigCommand::Backends(BackendsArgs { calibrate_ms: 20, json: true }));
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert!(v["cpu"]["cores"].as_u64().unwrap() >= 1);
        assert!(v["gpu"]["available"].is_boolean());
        assert_eq!(v["calibration"]["samples"].as_array().unwrap().len(), 21);
    }

    use super::*;

    #[test]
    fn file_parsing_keeps_malformed_entries_apart() {
        let text = r#"[
            {"pub_key": "zz", "message": "", "signature": "00"},
            {"pub_key": 5, "message": "", "signature": "00"},
            {"message": ""},
            "nope"
        ]"#;
        let e = parse_cases(text).unwrap();
        assert_eq!(e.len(), 4);
        assert!(e[0].as_ref().unwrap_err().starts_with("pub_key"), "{:?}", e[0]);
        assert_eq!(e[1].as_ref().unwrap_err(), "pub_key: not a string");
        assert_eq!(e[2].as_ref().unwrap_err(), "pub_key: missing");
        assert_eq!(e[3].as_ref().unwrap_err(), "not a JSON object");
        assert!(parse_cases("{}").is_err());
        assert!(parse_cases("[").is_err());
    }

    #[test]
    fn unknown_backend_lists_the_names() {
        let Err((code, msg)) = selection("fast") else { panic!("accepted") };
        assert_eq!(code, EXIT_USAGE);
        assert!(msg.contains("scalar, batch, parallel, auto, gpu, all"), "{msg}");
    }

    #[test]
    fn field_names_map_to_flags() {
        let names = ["--pk", "--msg", "--sig"];
        assert_eq!(field_name("public_key", names), "--pk");
        assert_eq!(field_name("message", names), "--msg");
        assert_eq!(field_name("signature", names), "--sig");
    }
}
