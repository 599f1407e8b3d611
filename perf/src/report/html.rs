//! The report page: one self-contained HTML document (inline CSS, inline SVG, no scripts), a
//! summary of every report read, then per report its machine, goals and plots. Every piece of
//! text from a report is escaped.

use super::extract::{Entry, GoalRow, ReportView};
use super::plots;
use std::fmt::Write as _;

/// `s` with the characters HTML gives meaning to (in text and in quoted attributes) escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;line-height:1.4}\
h1{font-size:26px}h2{font-size:20px;margin-top:40px;border-bottom:1px solid #ccc;padding-bottom:4px}\
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px;width:100%}\
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.met{color:#16691b;font-weight:600}td.not-met{color:#b00020;font-weight:600}\
td.unknown{color:#777}figure{margin:16px 0 28px}figure svg{max-width:100%;height:auto;display:block}\
figcaption{font-size:13px;color:#444;margin-top:4px}.machine{font-size:13px;color:#444}\
.note,.skipped{background:#fff6d6;border-left:4px solid #e0b400;padding:6px 10px;font-size:13px}\
code{font-size:12px}";

/// The page for `entries` (in the order given), read from `inputs` files.
pub fn page(entries: &[Entry], inputs: usize) -> String {
    let reports = entries.iter().filter(|e| matches!(e, Entry::Report(_))).count();
    let skipped = entries.len() - reports;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<title>Bastion performance reports</title>\n");
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>");
    h.push_str("<h1>Bastion performance reports</h1>\n");
    let _ = writeln!(
        h,
        "<p>Drawn by <code>bastion-perf report</code> from {inputs} file(s): {reports} report(s) shown, \
         {skipped} skipped. Absolute figures hold only on the machine named under each plot; across \
         machines, compare the ratios.</p>"
    );
    summary(&mut h, entries);
    let mut plot_no = 0;
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Report(r) => report(&mut h, i, r, &mut plot_no),
            Entry::Skipped { source, reason } => {
                let _ = writeln!(
                    h,
                    "<section id=\"r{i}\" class=\"skipped-report\">\n<h2>{}</h2>\n<p class=\"skipped\">Skipped: {}</p>\n</section>",
                    escape(source),
                    escape(reason)
                );
            }
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn summary(h: &mut String, entries: &[Entry]) {
    h.push_str("<table class=\"summary\">\n<tr><th>report</th><th>suite</th><th>machine</th><th>goals met</th><th>plots</th></tr>\n");
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Report(r) => {
                let met = r.goals.iter().filter(|g| g.met == Some(true)).count();
                let _ = writeln!(
                    h,
                    "<tr><td><a href=\"#r{i}\">{}</a></td><td>{}</td><td>{}</td><td>{met} of {}</td><td>{}</td></tr>",
                    escape(&r.source),
                    escape(&r.suite),
                    escape(&r.machine),
                    r.goals.len(),
                    r.plots.len()
                );
            }
            Entry::Skipped { source, reason } => {
                let _ = writeln!(
                    h,
                    "<tr><td><a href=\"#r{i}\">{}</a></td><td colspan=\"4\" class=\"unknown\">skipped: {}</td></tr>",
                    escape(source),
                    escape(reason)
                );
            }
        }
    }
    h.push_str("</table>\n");
}

fn report(h: &mut String, i: usize, r: &ReportView, plot_no: &mut usize) {
    let _ = writeln!(h, "<section id=\"r{i}\" class=\"report\" data-suite=\"{}\">", escape(&r.suite));
    let quick = if r.quick { " (quick run: not for quoting)" } else { "" };
    let _ = writeln!(h, "<h2>{} — <code>{}</code>{quick}</h2>", escape(&r.suite), escape(&r.source));
    let date = r.date.as_deref().map(|d| format!(", run {d} (UTC)")).unwrap_or_default();
    let _ = writeln!(h, "<p class=\"machine\">Machine: {}{}</p>", escape(&r.machine), escape(&date));
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }
    goals(h, &r.goals);
    for p in &r.plots {
        *plot_no += 1;
        match plots::render(p) {
            Ok(svg) => {
                let _ = writeln!(
                    h,
                    "<figure class=\"plot\" id=\"plot-{plot_no}\" data-plot-kind=\"{}\">\n{svg}\n<figcaption>{} Machine: {}.</figcaption>\n</figure>",
                    p.kind.id(),
                    escape(&p.caption),
                    escape(&r.machine)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">Plot “{}” could not be drawn: {}</p>",
                    escape(&p.title),
                    escape(&e)
                );
            }
        }
    }
    h.push_str("</section>\n");
}

fn goals(h: &mut String, goals: &[GoalRow]) {
    if goals.is_empty() {
        h.push_str("<p class=\"machine\">No goals in this report.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"goals\">\n<tr><th>goal</th><th>target</th><th>measured</th><th>met</th></tr>\n",
    );
    for g in goals {
        let (class, word) = match g.met {
            Some(true) => ("met", "met"),
            Some(false) => ("not-met", "not met"),
            None => ("unknown", "not stated"),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            escape(&g.name),
            escape(&g.target),
            escape(&g.measured)
        );
    }
    h.push_str("</table>\n");
}
