//! `bastion-perf report` over the real `perf/results/*.json`, opened in headless Chromium: each
//! required plot is an `<svg data-plot-kind=...>` in the DOM Chromium parsed, with its lines,
//! markers or bars drawn, and the screenshot of the page is not blank. Without Chromium the
//! browser test is skipped with a notice, except under `CI`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bastion-perf");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `tool` (run by name), or `None` (after a notice) where it is not installed; under `CI` a
/// missing tool fails the test (Debian's `package` provides it). The logic of
/// node/validator/tests/common/mod.rs `tool`.
fn tool(tool: &'static str, package: &str) -> Option<&'static str> {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some(tool);
    }
    assert!(std::env::var_os("CI").is_none(), "CI is set and {tool} is missing (apt-get install {package})");
    println!("notice: {tool} not installed; skipped (apt-get install {package})");
    None
}

fn report(args: &[&str]) -> Output {
    Command::new(BIN).arg("report").args(args).current_dir(repo()).output().expect("run bastion-perf report")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the report over perf/results into `out`; returns the page's path and stderr.
fn draw(out: &Path) -> (PathBuf, String) {
    let o = report(&["--out", out.to_str().unwrap()]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "report failed: {stdout}\n{stderr}");
    let index = out.join("index.html");
    assert!(stdout.contains(&format!("wrote {}", index.display())), "no output path printed: {stdout}");
    (index, stderr)
}

/// The kinds the issue asks for, the file each must come from, how many series colours its
/// plot must use and how many shapes (lines, markers, bars) it must draw in them at least (the
/// series of that file: e.g. 3 signature backends at 6 batch sizes each), and a label its SVG
/// must carry. Axes, grid and text are drawn in greys, never in the series' colours.
const REQUIRED: [(&str, &str, usize, usize, &str); 7] = [
    // bastion-book and lobster, 5 percentiles each.
    ("latency-cdf", "issue2-cpu-2core.json", 2, 10, "bastion-book"),
    // scalar, batch and parallel at batches 1 to 1024.
    ("sigverify-batch", "issue3-sigverify-cpu-2core.json", 3, 18, "parallel"),
    // calm (7 runs), calm over the public network, flash crash.
    ("e2e-load", "issue21-e2e-2core.json", 3, 9, "devnet-calm"),
    // 5 backends at 9 offered rates.
    ("ingress-sweep", "issue8-ingress-2core.json", 5, 45, "af_xdp-drv@veth/split/xdp_tx"),
    // 3 backends, a bar each.
    ("ingress-backends", "issue6-ingress-2core.json", 1, 3, "io_uring-multishot"),
    // 2 recoveries: scan + load + replay, and (scan + load) + replay.
    ("recovery", "issue21-storage-2core.json", 4, 5, "snapshot load"),
    // 10 fault kinds, a bar each (the campaign's first chaos plot).
    ("chaos", "issue20-chaos-2core.json", 1, 10, "partition-isolated"),
];

/// The page's series colours (Tableau 10, as plotters writes them).
const PALETTE: [&str; 10] = [
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22",
    "#17BECF",
];

/// The shapes of `svg` drawn in a series colour, and how many distinct such colours.
fn series_shapes(svg: &str) -> (usize, usize) {
    let mut shapes = 0;
    let mut used = [false; PALETTE.len()];
    for tag in svg.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        if !["polyline ", "circle ", "polygon ", "line ", "rect ", "path "].iter().any(|t| tag.starts_with(t))
        {
            continue;
        }
        let mut hit = false;
        for (i, c) in PALETTE.iter().enumerate() {
            if tag.contains(&format!("fill=\"{c}\"")) || tag.contains(&format!("stroke=\"{c}\"")) {
                used[i] = true;
                hit = true;
            }
        }
        shapes += usize::from(hit);
    }
    (shapes, used.iter().filter(|u| **u).count())
}

/// Each `<svg data-plot-kind="kind" ...>...</svg>` in `html`, with the section (report) it is in.
fn svgs<'a>(html: &'a str, kind: &str) -> Vec<(&'a str, &'a str)> {
    let open = format!("<svg data-plot-kind=\"{kind}\"");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = html[from..].find(&open) {
        let start = from + at;
        let end = start + html[start..].find("</svg>").expect("unclosed svg");
        let section = html[..start].rfind("<section").map_or("", |s| &html[s..start]);
        out.push((&html[start..end], section));
        from = end;
    }
    out
}

fn count(s: &str, tag: &str) -> usize {
    s.matches(&format!("<{tag} ")).count() + s.matches(&format!("<{tag}>")).count()
}

#[test]
fn report_page_renders_every_required_plot_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let (index, stderr) = draw(tmp.path());
    // A progress line per report read, the unknown shapes skipped with their reason.
    let results: Vec<PathBuf> = std::fs::read_dir(repo().join("perf/results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    for p in &results {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(stderr.lines().any(|l| l.contains(name)), "no progress line for {name}: {stderr}");
    }
    let page = std::fs::read_to_string(&index).unwrap();
    for (kind, file, ..) in REQUIRED {
        assert!(
            svgs(&page, kind).iter().any(|(_, section)| section.contains(file)),
            "no {kind} plot from {file} in the page"
        );
    }

    let Some(chromium) = tool("chromium", "chromium") else { return };
    let url = format!("file://{}", index.display());
    let profile = tmp.path().join("chromium-profile");
    let run = |extra: &[&str]| -> Output {
        let o = Command::new("timeout")
            .arg("180")
            .arg(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(o.status.success(), "chromium failed ({}): {}", o.status, text(&o.stderr));
        o
    };

    // The DOM as Chromium parsed it: every plot of the file is there, none lost to a markup
    // error, and each required kind has its data drawn.
    let dom = text(&run(&["--dump-dom"]).stdout);
    assert_eq!(
        count(&dom, "svg"),
        page.matches("<svg data-plot-kind=").count(),
        "Chromium's DOM has another number of plots than the page"
    );
    for (kind, file, colours, shapes, label) in REQUIRED {
        let found = svgs(&dom, kind);
        let Some((svg, _)) = found.iter().find(|(_, section)| section.contains(file)) else {
            panic!("no {kind} plot from {file} in Chromium's DOM ({} of that kind)", found.len())
        };
        let (drawn, used) = series_shapes(svg);
        println!("{kind} ({file}): {drawn} shapes in {used} series colours");
        assert!(used >= colours, "{kind}: {used} series colours, expected at least {colours}");
        assert!(drawn >= shapes, "{kind}: {drawn} series shapes drawn, expected at least {shapes}");
        assert!(svg.contains(label), "{kind}: no \"{label}\" in the plot");
    }
    assert!(dom.contains("Skipped: unknown shape"), "the skipped reports are not on the page");
    assert!(dom.contains("class=\"met\"") && dom.contains("class=\"not-met\""), "no goal table rows");

    // The page as drawn: a PNG of the window's size, not blank, with the series' colours in it.
    let shot = tmp.path().join("shot.png");
    run(&[&format!("--screenshot={}", shot.display()), "--window-size=1400,4000"]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1400, 4000), "screenshot size");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let step = info.color_type.samples();
    assert!(step >= 3, "screenshot is not in colour: {:?}", info.color_type);
    let pixels = buf[..info.line_size * info.height as usize].chunks_exact(step);
    let (mut inked, mut orange, mut green) = (0usize, 0usize, 0usize);
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 12);
    for p in pixels {
        if p[..3].iter().any(|&v| v < 200) {
            inked += 1;
        }
        orange += usize::from(near(p, [255, 127, 14]));
        green += usize::from(near(p, [44, 160, 44]));
    }
    let total = (info.width * info.height) as usize;
    println!("screenshot: {inked} of {total} pixels inked, {orange} orange, {green} green");
    assert!(inked * 100 > total, "screenshot is (nearly) blank: {inked} of {total} pixels inked");
    assert!(orange + green > 300, "no series drawn in the screenshot: {orange} orange, {green} green pixels");
}

#[test]
fn report_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.json");
    let o = report(&["--out", tmp.path().to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains(&missing.display().to_string()), "{}", text(&o.stderr));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.md"), "not a report").unwrap();
    let o = report(&["--out", tmp.path().to_str().unwrap(), empty.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("no *.json reports in") && err.contains(&empty.display().to_string()), "{err}");
    assert!(!tmp.path().join("index.html").exists(), "a page was written despite the error");
}

#[test]
fn report_skips_what_it_cannot_read_and_escapes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad<b>.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let odd = tmp.path().join("odd.json");
    std::fs::write(&odd, r#"{"what": "<img src=x onerror=alert(1)>"}"#).unwrap();
    let o = report(&["--out", tmp.path().to_str().unwrap(), bad.to_str().unwrap(), odd.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("skipped") && err.contains("not valid JSON"), "{err}");
    let page = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
    assert!(page.contains("bad&lt;b&gt;.json"), "file name not escaped");
    assert!(!page.contains("<b>") && !page.contains("<img"), "unescaped text on the page");
    assert_eq!(page.matches("class=\"skipped\"").count(), 2, "each unreadable report noted");
}
