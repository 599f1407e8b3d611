//! `bastion-perf report [--out DIR] [FILES...]`: the JSON reports (by default every `*.json`
//! in the repository's `perf/results/`) as one self-contained HTML page, `DIR/index.html`
//! (default `target/perf-report/` in the repository), with inline SVG plots: latency CDFs,
//! signature throughput by batch size, `e2e`'s finalized against offered load, the ingress
//! sweep and backends, recovery time by part, chaos faults and recovery after the heal; per
//! report its goals and machine. A report of a shape the page does not know is listed as
//! skipped, with the reason, on the page.

pub mod extract;
pub mod html;
pub mod plots;

use extract::Entry;
use std::path::{Path, PathBuf};

/// Arguments of `bastion-perf report`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "bastion-perf report",
    bin_name = "bastion-perf report",
    about = "Draw the JSON reports as one HTML page with SVG plots (DIR/index.html)"
)]
pub struct ReportArgs {
    /// Directory for index.html (created if absent). Default: target/perf-report in the
    /// repository.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Report files, or directories of them (their *.json). Default: every *.json in the
    /// repository's perf/results.
    pub files: Vec<PathBuf>,
}

/// Writes the page; returns the path of `index.html`. Errors name the path at fault.
pub fn run(args: &ReportArgs) -> Result<PathBuf, String> {
    let root = repo_root();
    let inputs = inputs(&root, &args.files)?;
    let mut entries = Vec::new();
    for path in &inputs {
        let source = shown(&root, path);
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let read = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(doc) => extract::entries(&source, &doc),
            Err(e) => vec![Entry::Skipped { source: source.clone(), reason: format!("not valid JSON: {e}") }],
        };
        for e in &read {
            match e {
                Entry::Report(r) => eprintln!(
                    "read {}: suite {}, {} plot(s), {} goal(s){}",
                    r.source,
                    r.suite,
                    r.plots.len(),
                    r.goals.len(),
                    if r.notes.is_empty() { String::new() } else { format!("; {}", r.notes.join("; ")) }
                ),
                Entry::Skipped { source, reason } => eprintln!("skipped {source}: {reason}"),
            }
        }
        entries.extend(read);
    }
    let page = html::page(&entries, inputs.len());
    let out = args.out.clone().unwrap_or_else(|| root.join("target").join("perf-report"));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let index = out.join("index.html");
    std::fs::write(&index, page).map_err(|e| format!("cannot write {}: {e}", index.display()))?;
    Ok(index)
}

/// The repository: the nearest directory above the working directory holding
/// `perf/results`, else the one this binary was built from.
fn repo_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir()
        && let Some(dir) = cwd.ancestors().find(|d| d.join("perf").join("results").is_dir())
    {
        return dir.to_path_buf();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `path` relative to the repository where it is inside it.
fn shown(root: &Path, path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    abs.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// The report files to read: `files` (a directory standing for its `*.json`), or every
/// `*.json` in `perf/results`; in natural order (issue2 before issue10).
fn inputs(root: &Path, files: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if files.is_empty() {
        return json_in(&root.join("perf").join("results"));
    }
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            out.extend(json_in(f)?);
        } else if f.is_file() {
            out.push(f.clone());
        } else {
            return Err(format!("{}: no such file or directory", f.display()));
        }
    }
    Ok(out)
}

fn json_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("json")))
        .collect();
    if found.is_empty() {
        return Err(format!("no *.json reports in {}", dir.display()));
    }
    found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(found)
}

/// Compares runs of digits by value, the rest by character.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (a.peek().copied(), b.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, nb) = (digits(&mut a), digits(&mut b));
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a.next();
                b.next();
            }
        }
    }
}

fn digits(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut s = String::new();
    while let Some(c) = it.next_if(char::is_ascii_digit) {
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests;
