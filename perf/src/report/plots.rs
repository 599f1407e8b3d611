//! Each plot drawn as an SVG document with `plotters` (SVG backend; the text is left to the
//! browser's fonts). The `<svg>` element carries `data-plot-kind`, which the page's tests and
//! readers can select plots by.

use super::extract::{Bar, Plot, PlotData, Series};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width of every plot, in SVG pixels.
pub const WIDTH: u32 = 960;
/// Height of a line or CDF plot.
const LINES_HEIGHT: u32 = 500;

/// Tableau 10: distinct on white, and for most colour-blind readers.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const REFERENCE: [RGBColor; 2] = [RGBColor(90, 90, 90), RGBColor(200, 60, 60)];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The plot as an `<svg>` element with `data-plot-kind` and an accessible title, or why it
/// could not be drawn.
pub fn render(plot: &Plot) -> Result<String, String> {
    let height = match &plot.data {
        PlotData::Bars { bars, .. } => (130 + 34 * bars.len() as u32).max(240),
        _ => LINES_HEIGHT,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        match &plot.data {
            PlotData::Lines { series, reference, x_log, y_log } => {
                lines(&root, plot, series, reference, *x_log, *y_log)?
            }
            PlotData::Cdf { series } => cdf(&root, plot, series)?,
            PlotData::Bars { bars, unit } => bars_chart(&root, plot, bars, unit)?,
        }
        root.present().map_err(err)?;
    }
    let Some(rest) = svg.strip_prefix("<svg ") else {
        return Err("plotters wrote no <svg> element".into());
    };
    Ok(format!(
        "<svg data-plot-kind=\"{}\" role=\"img\" aria-label=\"{}\" {rest}",
        plot.kind.id(),
        super::html::escape(&plot.title)
    ))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing failed: {e}")
}

/// `(min, max)` of `f` over every point, or `None` without points.
fn span(series: &[&Series], f: impl Fn(&(f64, f64)) -> f64) -> Option<(f64, f64)> {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(&f))
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// A linear axis from 0 (or below, for negative data) with 8% headroom, or a log axis
/// padded by a quarter of a decade on each side (positive values only).
fn axis(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        let lo = lo.max(f64::MIN_POSITIVE);
        let hi = hi.max(lo);
        (lo / 1.8, hi * 1.8)
    } else {
        let lo = lo.min(0.0);
        let hi = if hi > lo { hi } else { lo + 1.0 };
        (lo, hi + (hi - lo) * 0.08)
    }
}

fn lines(
    root: &Area,
    plot: &Plot,
    series: &[Series],
    reference: &[Series],
    x_log: bool,
    y_log: bool,
) -> Result<(), String> {
    let all: Vec<&Series> = series.iter().chain(reference).collect();
    let keep = |log: bool| move |v: f64| !log || v > 0.0;
    let (Some((x0, x1)), Some((y0, y1))) = (
        span(&all, |p| if keep(x_log)(p.0) { p.0 } else { f64::NAN }),
        span(&all, |p| if keep(y_log)(p.1) { p.1 } else { f64::NAN }),
    ) else {
        return Err("no points to draw".into());
    };
    let (x0, x1) = axis(x0, x1, x_log);
    let (y0, y1) = axis(y0, y1, y_log);
    let fmt = |v: &f64| si(*v);
    let log_fmt = |v: &f64| if on_log_grid(*v) { si(*v) } else { String::new() };
    let yl = 8;
    match (x_log, y_log) {
        (false, false) => xy(root, plot, series, reference, x0..x1, y0..y1, &fmt, &fmt, yl),
        (true, false) => xy(root, plot, series, reference, (x0..x1).log_scale(), y0..y1, &log_fmt, &fmt, yl),
        (false, true) => xy(root, plot, series, reference, x0..x1, (y0..y1).log_scale(), &fmt, &log_fmt, yl),
        (true, true) => xy(
            root,
            plot,
            series,
            reference,
            (x0..x1).log_scale(),
            (y0..y1).log_scale(),
            &log_fmt,
            &log_fmt,
            yl,
        ),
    }
}

/// Whether a log axis labels `v`: 1, 2 and 5 times a power of ten (plotters puts a tick at
/// every integer multiple within a decade, too many to label).
fn on_log_grid(v: f64) -> bool {
    if !(v.is_finite() && v > 0.0) {
        return false;
    }
    let m = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 1e-6 * k)
}

/// Quantile `q` on a nines axis: p50 at 0.3, p90 at 1, p99 at 2, p99.9 at 3, the maximum at 4.
pub fn nines(q: f64) -> f64 {
    if q >= 1.0 { 4.0 } else { -(1.0 - q).log10() }
}

fn cdf(root: &Area, plot: &Plot, series: &[Series]) -> Result<(), String> {
    let as_nines: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s.points.iter().map(|&(x, q)| (x, nines(q))).collect(),
        })
        .collect();
    let all: Vec<&Series> = as_nines.iter().collect();
    let Some((x0, x1)) = span(&all, |p| if p.0 > 0.0 { p.0 } else { f64::NAN }) else {
        return Err("no latencies to draw".into());
    };
    let (x0, x1) = axis(x0, x1, true);
    let y_fmt = |v: &f64| {
        let r = v.round();
        if (v - r).abs() > 0.01 {
            return String::new();
        }
        match r as i64 {
            0 => "p0".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            3 => "p99.9".into(),
            4 => "max".into(),
            _ => String::new(),
        }
    };
    let x_fmt = |v: &f64| if on_log_grid(*v) { duration_ns(*v) } else { String::new() };
    xy(root, plot, &as_nines, &[], (x0..x1).log_scale(), 0.0..4.3, &x_fmt, &y_fmt, 6)
}

/// Series `i`'s marker at `at` (pixels from the point): a disc, a triangle, a cross or a ring.
fn marker<DB: DrawingBackend>(i: usize, at: (i32, i32), c: RGBColor) -> DynElement<'static, DB, (i32, i32)> {
    match (i / PALETTE.len() + i) % 4 {
        0 => Circle::new(at, 4, c.filled()).into_dyn(),
        1 => TriangleMarker::new(at, 6, c.filled()).into_dyn(),
        2 => Cross::new(at, 5, c.stroke_width(2)).into_dyn(),
        _ => Circle::new(at, 6, c.stroke_width(2)).into_dyn(),
    }
}

#[allow(clippy::too_many_arguments)]
fn xy<X, Y>(
    root: &Area,
    plot: &Plot,
    series: &[Series],
    reference: &[Series],
    x: X,
    y: Y,
    x_fmt: &dyn Fn(&f64) -> String,
    y_fmt: &dyn Fn(&f64) -> String,
    y_labels: usize,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label.as_str())
        .y_desc(plot.y_label.as_str())
        .x_labels(10)
        .y_labels(y_labels)
        .x_label_formatter(x_fmt)
        .y_label_formatter(y_fmt)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    for (i, s) in reference.iter().enumerate() {
        let c = REFERENCE[i % REFERENCE.len()];
        chart
            .draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 6, c.stroke_width(1)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(1)));
    }
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (18, 0)], c.stroke_width(2))
                    + marker(i, (9, 0), c)
            });
        // A shape per series, so that lines meeting at a point (or of one point) stay visible.
        let shapes = s.points.iter().map(|&p| EmptyElement::at(p) + marker(i, (0, 0), c));
        chart.draw_series(shapes).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

fn bars_chart(root: &Area, plot: &Plot, bars: &[Bar], unit: &str) -> Result<(), String> {
    if bars.is_empty() {
        return Err("no bars to draw".into());
    }
    let mut names: Vec<&str> = Vec::new();
    for b in bars {
        for (name, _) in &b.parts {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    // Several parts: their legend in a strip of its own under the chart, clear of the bars.
    let (chart_area, legend_area) = if names.len() > 1 {
        let (_, h) = root.dim_in_pixel();
        let (a, b) = root.split_vertically(h.saturating_sub(34));
        (a, Some(b))
    } else {
        (root.clone(), None)
    };
    let total = |b: &Bar| b.parts.iter().map(|(_, v)| v.max(0.0)).sum::<f64>();
    let max = bars.iter().map(total).fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let longest = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(0);
    let label_area = (longest as u32 * 7 + 20).clamp(60, 420);
    let n = bars.len() as f64;
    // Room on the right for the value written after each bar (`528 ms = 10 + 177 + 341`).
    let headroom = if names.len() > 1 { 1.6 } else { 1.2 };
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(&plot.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(label_area)
        .build_cartesian_2d(0.0..max * headroom, -0.5..n - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(8)
        .x_desc(plot.x_label.as_str())
        .x_label_formatter(&|v: &f64| si(*v))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(err)?;
    // The first bar on top.
    let row = |i: usize| n - 1.0 - i as f64;
    for (k, name) in names.iter().enumerate() {
        let c = color(k);
        let rects = bars.iter().enumerate().filter_map(|(i, b)| {
            let at = b.parts.iter().position(|(p, _)| p == name)?;
            let start: f64 = b.parts[..at].iter().map(|(_, v)| v.max(0.0)).sum();
            let end = start + b.parts[at].1.max(0.0);
            Some(Rectangle::new([(start, row(i) - 0.34), (end, row(i) + 0.34)], c.filled()))
        });
        chart.draw_series(rects).map_err(err)?;
    }
    let left = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let right = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    // With a unit (` ms`) the values in full (`2,690 ms`), else in SI (`1.24M`).
    let num = |v: f64| if unit.is_empty() || v.abs() < 100.0 { si(v) } else { super::extract::count(v) };
    for (i, b) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, row(i)));
        chart_area.draw(&Text::new(b.label.clone(), (px - 6, py), left.clone())).map_err(err)?;
        let sum = total(b);
        let mut value = format!("{}{unit}", num(sum));
        if b.parts.len() > 1 {
            let parts: Vec<String> = b.parts.iter().map(|(_, v)| num(*v)).collect();
            value = format!("{value} = {}", parts.join(" + "));
        }
        let (ex, ey) = chart.backend_coord(&(sum, row(i)));
        chart_area.draw(&Text::new(value, (ex + 6, ey), right.clone())).map_err(err)?;
    }
    if let Some(area) = legend_area {
        let mut x = label_area as i32 + 14;
        for (k, name) in names.iter().enumerate() {
            area.draw(&Rectangle::new([(x, 10), (x + 14, 22)], color(k).filled())).map_err(err)?;
            area.draw(&Text::new(name.to_string(), (x + 20, 16), right.clone())).map_err(err)?;
            x += 20 + 7 * name.chars().count() as i32 + 24;
        }
    }
    Ok(())
}

/// `1.23M`, `45.6k`, `789`, `0.5`: three significant digits at most.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", sig3(x))
}

/// A latency in ns as `850 ns`, `1.5 µs`, `17.8 ms`, `2.1 s`.
pub fn duration_ns(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{} s", sig3(ns / 1e9))
    } else if a >= 1e6 {
        format!("{} ms", sig3(ns / 1e6))
    } else if a >= 1e3 {
        format!("{} µs", sig3(ns / 1e3))
    } else {
        format!("{} ns", sig3(ns))
    }
}

/// At most three significant digits, no trailing zeros.
fn sig3(x: f64) -> String {
    let a = x.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}
