//! A small, dependency-free Prometheus metrics registry and HTTP exporter.
//!
//! [`Registry`] holds counters, gauges and histograms keyed by name and labels; [`Registry::render`]
//! writes them in the Prometheus text exposition format 0.0.4. [`serve`] exports a registry over
//! HTTP (`GET /metrics`, `GET /health`, and the live dashboard of [`crate::dashboard`] under
//! `/dashboard`) from a background thread; [`fetch`] and [`parse`] are the client side, used by
//! `bastion status`.
//!
//! Values are atomics updated with `Relaxed` ordering: a scrape sees each value as it was at some
//! moment during the scrape, not one consistent snapshot across metrics.

// A complete small metrics API: the node does not use every method (e.g. `Counter::inc`,
// `Histogram::quantile`, `fetch`), and a binary crate would warn about each one it leaves unused.
#![allow(dead_code)]

use crate::dashboard::{self, Dashboard};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client may take to send its request head, and a server to answer [`fetch`].
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head (request line and headers) the exporter reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The largest response body [`fetch`] reads.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;
/// How often the exporter's accept loop checks its stop flag when idle.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// Most connections the exporter serves at once (one short-lived thread each); a connection
/// accepted beyond this is closed at once, unanswered, and counted as refused. With the
/// [`IO_TIMEOUT`] on the request head, a client can hold a slot for at most about 2 s plus
/// one response.
pub const MAX_CONNECTIONS: usize = 16;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter {
    value: AtomicU64,
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, stored as the bits of an `f64`.
#[derive(Debug, Default)]
pub struct Gauge {
    bits: AtomicU64,
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The current value (0 until first set).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// Adds `d` (negative to subtract), atomically with respect to other `add`s.
    pub fn add(&self, d: f64) {
        add_f64(&self.bits, d);
    }
}

/// Atomically adds `d` to the `f64` whose bits `bits` holds.
fn add_f64(bits: &AtomicU64, d: f64) {
    let mut current = bits.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + d).to_bits();
        match bits.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Observations counted into buckets with fixed upper bounds, plus an implied `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram {
    /// Finite upper bounds, strictly ascending.
    bounds: Vec<f64>,
    /// Per-bucket (not cumulative) counts; one more than `bounds`, the last being `+Inf`.
    buckets: Vec<AtomicU64>,
    /// The sum of all observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds; non-finite bounds are dropped, the rest sorted and
    /// deduplicated.
    fn new(bounds: &[f64]) -> Histogram {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, buckets, sum_bits: AtomicU64::new(0) }
    }

    /// Records one observation in the first bucket whose upper bound is `>= v`. NaN is ignored.
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&self.sum_bits, v);
    }

    /// The number of observations (the sum of all buckets).
    pub fn count(&self) -> u64 {
        self.bucket_counts().iter().sum()
    }

    /// The sum of all observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    /// The finite upper bounds of the buckets, ascending.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The `q` quantile (0 ≤ q ≤ 1), as the upper bound of the first bucket at which the
    /// cumulative count reaches `ceil(q * count)` (at least 1). There is no interpolation inside a
    /// bucket, unlike Prometheus's `histogram_quantile`, so the answer is always one of the
    /// bounds: an upper estimate, precise to the bucket width. When the rank falls in the `+Inf`
    /// bucket this returns the largest finite bound, as `histogram_quantile` does (or `+Inf` when
    /// there are no finite bounds). `None` when there are no observations or `q` is outside
    /// `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let counts = self.bucket_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // q * total is exact enough for any realistic count; the clamp keeps the rank in 1..=total.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut cumulative = 0u64;
        for (i, n) in counts.iter().enumerate() {
            cumulative += n;
            if cumulative >= rank {
                return Some(self.bounds.get(i).copied().unwrap_or_else(|| self.largest_bound()));
            }
        }
        Some(self.largest_bound())
    }

    fn largest_bound(&self) -> f64 {
        self.bounds.last().copied().unwrap_or(f64::INFINITY)
    }

    fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
}

/// The kind of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One registered series.
#[derive(Debug, Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

/// Label pairs, sorted by label name, as a series key.
type Labels = Vec<(String, String)>;

/// All series sharing a metric name.
#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<Labels, Metric>,
}

/// A set of metrics, rendered together. Registration takes a lock; updating a value does not.
///
/// A name is one family with one type and one help text (those of its first registration).
/// Registering a name again with another type returns a working metric that is not registered
/// (and so never rendered), and logs a warning: a programming error, but not worth a panic.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Registry {
    /// An empty registry, shared.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Registers (or returns the already registered) counter with this name and labels. Label
    /// order does not matter.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        let found = self
            .register(name, help, Kind::Counter, labels, || Metric::Counter(Arc::new(Counter::default())));
        match found {
            Some(Metric::Counter(c)) => c,
            _ => Arc::new(Counter::default()),
        }
    }

    /// Registers (or returns the already registered) gauge with this name and labels.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        let found =
            self.register(name, help, Kind::Gauge, labels, || Metric::Gauge(Arc::new(Gauge::default())));
        match found {
            Some(Metric::Gauge(g)) => g,
            _ => Arc::new(Gauge::default()),
        }
    }

    /// Registers (or returns the already registered) histogram with this name and labels, with
    /// fixed upper bounds (ascending, e.g. milliseconds); the `+Inf` bucket is implied. A series
    /// registered again keeps the bounds of its first registration.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Arc<Histogram> {
        let found = self.register(name, help, Kind::Histogram, labels, || {
            Metric::Histogram(Arc::new(Histogram::new(bounds)))
        });
        match found {
            Some(Metric::Histogram(h)) => h,
            _ => Arc::new(Histogram::new(bounds)),
        }
    }

    /// Finds or inserts the series; `None` when the name is registered with another kind.
    fn register(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
    ) -> Option<Metric> {
        let mut key: Labels = labels.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect();
        key.sort();
        let mut families = self.lock();
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            tracing::warn!(
                metric = name,
                registered = family.kind.as_str(),
                requested = kind.as_str(),
                "metric registered again with another type; this one is not exported"
            );
            return None;
        }
        Some(family.series.entry(key).or_insert_with(make).clone())
    }

    /// The value of the counter or gauge `name` with exactly these labels (any order), if
    /// registered.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            Metric::Counter(c) => Some(c.get() as f64),
            Metric::Gauge(g) => Some(g.get()),
            Metric::Histogram(_) => None,
        }
    }

    /// The sum and count of the histogram `name` with exactly these labels, if registered.
    pub fn histogram_totals(&self, name: &str, labels: &[(&str, &str)]) -> Option<(f64, u64)> {
        match self.find(name, labels)? {
            Metric::Histogram(h) => Some((h.sum(), h.count())),
            _ => None,
        }
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Metric> {
        let mut key: Labels = labels.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect();
        key.sort();
        self.lock().get(name)?.series.get(&key).cloned()
    }

    /// The families, even if a thread panicked while holding the lock (the map stays valid).
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Family>> {
        self.families.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The Prometheus text exposition format 0.0.4: per family (sorted by name) one `# HELP` and
    /// one `# TYPE` line, then its samples sorted by labels. Label values are escaped (`\\`,
    /// `\"`, `\n`); a histogram series is written as cumulative `name_bucket{le="..."}` lines
    /// ending with `le="+Inf"`, then `name_sum` and `name_count`.
    pub fn render(&self) -> String {
        let families = self.lock();
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, metric) in &family.series {
                match metric {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels, None), c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels, None), fmt_value(g.get()));
                    }
                    Metric::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &Labels, h: &Histogram) {
    let counts = h.bucket_counts();
    let mut cumulative = 0u64;
    for (i, n) in counts.iter().enumerate() {
        cumulative += n;
        let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |&b| fmt_value(b));
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", render_labels(labels, Some(&le)));
    }
    let plain = render_labels(labels, None);
    let _ = writeln!(out, "{name}_sum{plain} {}", fmt_value(h.sum()));
    // The count is the bucket total, so that it always equals the `+Inf` bucket.
    let _ = writeln!(out, "{name}_count{plain} {cumulative}");
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing for no labels.
fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let pairs = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(le.map(|le| ("le", le)));
    let mut out = String::new();
    for (i, (k, v)) in pairs.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal that
/// reads back as the same `f64`.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Serves `GET /metrics` (the registry, `text/plain; version=0.0.4`), `GET /health` (`ok`) and
/// the dashboard's routes (see [`crate::dashboard`]) on a std `TcpListener` from a background
/// thread named `metrics`; any other request gets 404. [`serve`] is [`serve_with`] a dashboard
/// that knows no node name and has no book (metrics only).
///
/// Connections are served concurrently, each on its own short-lived thread, at most
/// [`MAX_CONNECTIONS`] at once (beyond that a connection is closed unanswered), so a slow or
/// stalled client does not hold up a scrape. A client whose request head exceeds 8 KiB, or that
/// has not sent it within 2 s, is dropped. The accept thread polls a non-blocking listener every
/// 50 ms and exits soon after `stop` is set (connections in flight finish on their own, within
/// 2 s plus one response). Returns the bound address (so port 0 works) and the accept thread's
/// handle. The accept thread also takes the dashboard's history sample once a second
/// ([`Dashboard::tick`]).
pub fn serve(
    registry: Arc<Registry>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(registry, addr, stop, Arc::new(Dashboard::new("", "", "")))
}

/// [`serve`], with this node's dashboard (its name, role and published book).
pub fn serve_with(
    registry: Arc<Registry>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    dashboard: Arc<Dashboard>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let handle = std::thread::Builder::new().name("metrics".to_string()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            dashboard.tick(&registry);
            match listener.accept() {
                Ok((stream, peer)) => {
                    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                        active.fetch_sub(1, Ordering::AcqRel);
                        tracing::debug!(%peer, "metrics: {MAX_CONNECTIONS} connections open, refusing one");
                        drop(stream);
                        continue;
                    }
                    let (registry, dashboard, slot) =
                        (registry.clone(), dashboard.clone(), Slot(active.clone()));
                    let spawned =
                        std::thread::Builder::new().name("metrics-conn".to_string()).spawn(move || {
                            let _slot = slot;
                            if let Err(e) = handle_connection(&registry, &dashboard, stream) {
                                tracing::debug!(%peer, error = %e, "metrics request dropped");
                            }
                        });
                    if let Err(e) = spawned {
                        // The closure (and its slot) was dropped with the error.
                        tracing::warn!(error = %e, "metrics: cannot start a connection thread");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. out of file descriptors: back off rather than spin.
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    std::thread::sleep(ACCEPT_POLL);
                }
            }
        }
    })?;
    Ok((local, handle))
}

/// One of the [`MAX_CONNECTIONS`] connection slots, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Headers of the dashboard's answers: never cached (the page polls), never sniffed, and the
/// page may load nothing from elsewhere (it is self-contained) nor talk to another origin.
const DASHBOARD_HEADERS: &str = "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
    Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'\r\n";

/// The answer to one request line: status, content type, extra header lines, body.
fn respond(
    registry: &Registry,
    dashboard: &Dashboard,
    method: &str,
    target: &str,
) -> (&'static str, &'static str, &'static str, String) {
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", "", registry.render()),
        ("GET", "/health") => ("200 OK", "text/plain; charset=utf-8", "", "ok".to_string()),
        ("GET", _) => match dashboard::route(dashboard, path, query) {
            Some(r) => (r.status, r.content_type, DASHBOARD_HEADERS, r.body),
            None => ("404 Not Found", "text/plain; charset=utf-8", "", "not found\n".to_string()),
        },
        _ => ("404 Not Found", "text/plain; charset=utf-8", "", "not found\n".to_string()),
    }
}

/// Reads one request head and answers it.
fn handle_connection(
    registry: &Registry,
    dashboard: &Dashboard,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    // Accepted sockets may inherit the listener's non-blocking mode on some platforms.
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_request_head(&mut stream)?;
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (status, content_type, extra, body) = respond(registry, dashboard, method, target);
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads up to the blank line that ends the request head, within [`IO_TIMEOUT`] in all (not per
/// read, so a client trickling bytes is dropped too) and [`MAX_REQUEST_HEAD`] bytes.
fn read_request_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "request head not received within 2 s"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // The client closed its side; answer what it sent if it sent a request line.
            if head.contains(&b'\n') {
                break;
            }
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed before a request"));
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "request head over 8 KiB"));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Why [`fetch_http`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The address did not resolve, or no connection could be made to it.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The resolution or connection error.
        source: std::io::Error,
    },
    /// Connected, but the exchange failed or the answer was not `200`.
    #[error("{addr}{path}: {what}")]
    Http {
        /// The address as given.
        addr: String,
        /// The requested path.
        path: String,
        /// What went wrong.
        what: String,
    },
}

/// Minimal HTTP/1.0 GET client: connects (timeout 2 s), sends `GET {path} HTTP/1.0`, and returns
/// the body of a `200` response, or an error naming the address and what failed.
pub fn fetch(addr: &str, path: &str) -> Result<String, String> {
    fetch_http(addr, path).map_err(|e| e.to_string())
}

/// [`fetch`], telling a connection failure apart from a failed exchange.
pub fn fetch_http(addr: &str, path: &str) -> Result<String, FetchError> {
    let connect_err = |source| FetchError::Connect { addr: addr.to_string(), source };
    let http_err = |what: String| FetchError::Http { addr: addr.to_string(), path: path.to_string(), what };

    let targets: Vec<SocketAddr> = addr.to_socket_addrs().map_err(connect_err)?.collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the address resolved to nothing");
    let mut connected = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, IO_TIMEOUT) {
            Ok(s) => {
                connected = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = connected.ok_or_else(|| connect_err(last))?;
    let io = |what: &str, e: std::io::Error| http_err(format!("{what}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| io("set read timeout", e))?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| io("set write timeout", e))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| io("sending the request", e))?;

    let mut raw = Vec::new();
    (&mut stream).take(MAX_RESPONSE).read_to_end(&mut raw).map_err(|e| io("reading the response", e))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))
        .ok_or_else(|| http_err(format!("malformed response ({} bytes, no header end)", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split.0]);
    let mut body = &raw[split.1..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut status = status_line.splitn(3, ' ');
    let version = status.next().unwrap_or("");
    let code = status.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(http_err(format!("not an HTTP response: {status_line:?}")));
    }
    if code != "200" {
        return Err(http_err(format!("HTTP {}", status_line.trim_start_matches(version).trim())));
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            return Err(http_err(format!("unsupported Transfer-Encoding {value:?}")));
        }
        if name.eq_ignore_ascii_case("content-length")
            && let Ok(len) = value.parse::<usize>()
        {
            if body.len() < len {
                return Err(http_err(format!("response cut short: {} of {len} bytes", body.len())));
            }
            body = &body[..len];
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| http_err("response body is not UTF-8".to_string()))
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format into samples, in order, ignoring comments, blank lines and
/// timestamps. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    match (fields.next(), fields.next()) {
        (None, _) => {}
        (Some(ts), None) if ts.parse::<i64>().is_ok() => {}
        _ => return None,
    }
    Some(Sample { name: name.to_string(), labels, value })
}

/// Parses `a="x",b="y"}` (after the opening brace); returns the labels and what follows `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[close + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) => {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample_registry() -> Arc<Registry> {
        let r = Registry::new();
        r.counter("bastion_tile_in_total", "Messages into a tile.", &[("tile", "net")]).add(42);
        r.counter("bastion_tile_in_total", "Messages into a tile.", &[("tile", "a\\b\"c\nd")]).inc();
        r.gauge("bastion_view", "Current consensus view.", &[]).set(7.5);
        let h = r.histogram(
            "bastion_finality_seconds",
            "Finality latency.\nIn seconds.",
            &[("node", "v0")],
            &[1.0, 5.0, 25.0],
        );
        h.observe(0.5);
        h.observe(3.0);
        h.observe(3.0);
        h.observe(100.0);
        r
    }

    #[test]
    fn render_golden() {
        let expected = "\
# HELP bastion_finality_seconds Finality latency.\\nIn seconds.
# TYPE bastion_finality_seconds histogram
bastion_finality_seconds_bucket{node=\"v0\",le=\"1\"} 1
bastion_finality_seconds_bucket{node=\"v0\",le=\"5\"} 3
bastion_finality_seconds_bucket{node=\"v0\",le=\"25\"} 3
bastion_finality_seconds_bucket{node=\"v0\",le=\"+Inf\"} 4
bastion_finality_seconds_sum{node=\"v0\"} 106.5
bastion_finality_seconds_count{node=\"v0\"} 4
# HELP bastion_tile_in_total Messages into a tile.
# TYPE bastion_tile_in_total counter
bastion_tile_in_total{tile=\"a\\\\b\\\"c\\nd\"} 1
bastion_tile_in_total{tile=\"net\"} 42
# HELP bastion_view Current consensus view.
# TYPE bastion_view gauge
bastion_view 7.5
";
        assert_eq!(sample_registry().render(), expected);
    }

    #[test]
    fn empty_registry_renders_nothing() {
        assert_eq!(Registry::new().render(), "");
    }

    #[test]
    fn same_name_and_labels_is_same_metric() {
        let r = Registry::new();
        let a = r.counter("c_total", "help", &[("x", "1"), ("y", "2")]);
        let b = r.counter("c_total", "other help", &[("y", "2"), ("x", "1")]);
        assert!(Arc::ptr_eq(&a, &b));
        let c = r.counter("c_total", "help", &[("x", "2")]);
        assert!(!Arc::ptr_eq(&a, &c));
        a.inc();
        assert_eq!(b.get(), 1);
        let g1 = r.gauge("g", "help", &[]);
        let g2 = r.gauge("g", "help", &[]);
        assert!(Arc::ptr_eq(&g1, &g2));
        let h1 = r.histogram("h", "help", &[], &[1.0]);
        let h2 = r.histogram("h", "help", &[], &[2.0, 3.0]);
        assert!(Arc::ptr_eq(&h1, &h2));
        assert_eq!(h2.bounds(), &[1.0]);
    }

    #[test]
    fn same_name_other_kind_is_detached() {
        let r = Registry::new();
        r.counter("m", "help", &[]).add(3);
        let g = r.gauge("m", "help", &[]);
        g.set(9.0);
        assert_eq!(g.get(), 9.0);
        assert_eq!(r.render(), "# HELP m help\n# TYPE m counter\nm 3\n");
    }

    #[test]
    fn gauge_set_add_get() {
        let g = Gauge::default();
        assert_eq!(g.get(), 0.0);
        g.set(1.5);
        g.add(2.25);
        g.add(-1.0);
        assert_eq!(g.get(), 2.75);
    }

    #[test]
    fn histogram_quantile() {
        let h = Histogram::new(&[10.0, 20.0, 50.0, 100.0]);
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.observe(v as f64);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum(), 5050.0);
        assert_eq!(h.quantile(0.0), Some(10.0));
        assert_eq!(h.quantile(0.10), Some(10.0));
        assert_eq!(h.quantile(0.11), Some(20.0));
        assert_eq!(h.quantile(0.5), Some(50.0));
        assert_eq!(h.quantile(0.99), Some(100.0));
        assert_eq!(h.quantile(1.0), Some(100.0));
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(h.quantile(f64::NAN), None);
        // Ranks in the +Inf bucket answer the largest finite bound.
        h.observe(1e9);
        h.observe(1e9);
        assert_eq!(h.quantile(1.0), Some(100.0));
        // Boundary values land in their own bucket (le is inclusive); NaN is ignored.
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(1.0);
        h.observe(f64::NAN);
        assert_eq!(h.count(), 1);
        assert_eq!(h.quantile(1.0), Some(1.0));
        let unbounded = Histogram::new(&[]);
        unbounded.observe(3.0);
        assert_eq!(unbounded.quantile(0.5), Some(f64::INFINITY));
    }

    #[test]
    fn parse_render_round_trip() {
        let r = sample_registry();
        r.gauge("weird", "h", &[]).set(f64::NAN);
        r.gauge("neg_inf", "h", &[("k", "")]).set(f64::NEG_INFINITY);
        r.gauge("tiny", "h", &[]).set(1.0e-7);
        let samples = parse(&r.render());
        assert_eq!(samples.len(), 6 + 2 + 1 + 3);
        let find = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels.len() == labels.len()
                        && labels.iter().all(|(k, v)| s.label(k) == Some(v))
                })
                .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
                .value
        };
        assert_eq!(find("bastion_tile_in_total", &[("tile", "net")]), 42.0);
        assert_eq!(find("bastion_tile_in_total", &[("tile", "a\\b\"c\nd")]), 1.0);
        assert_eq!(find("bastion_view", &[]), 7.5);
        assert_eq!(find("bastion_finality_seconds_bucket", &[("node", "v0"), ("le", "+Inf")]), 4.0);
        assert_eq!(find("bastion_finality_seconds_sum", &[("node", "v0")]), 106.5);
        assert!(find("weird", &[]).is_nan());
        assert_eq!(find("neg_inf", &[("k", "")]), f64::NEG_INFINITY);
        assert_eq!(find("tiny", &[]), 1.0e-7);
    }

    #[test]
    fn parse_skips_malformed_lines() {
        let text = "\
# HELP x y
ok 1
ok_ts{a=\"b\"} 2 1700000000000
{a=\"b\"} 3
no_value
bad{a=\"unterminated} 4
bad{a=b} 5
bad{a=\"b\"c=\"d\"} 6
bad 1 2 3
bad abc
spaced { a = \"b\" , } 7
";
        let samples = parse(text);
        let names: Vec<_> = samples.iter().map(|s| (s.name.as_str(), s.value)).collect();
        assert_eq!(names, vec![("ok", 1.0), ("ok_ts", 2.0), ("spaced", 7.0)]);
        assert_eq!(samples[2].label("a"), Some("b"));
        // Arbitrary bytes never panic.
        for s in ["{", "a{", "a{b", "a{b=", "a{b=\"", "a{b=\"\\", "a{b=\"c\"", "é{ü=\"ö\"} 1", "a 1e"] {
            let _ = parse(s);
        }
    }

    #[test]
    fn serve_and_fetch() {
        let r = sample_registry();
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) = serve(r.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone()).unwrap();
        assert_ne!(addr.port(), 0);
        let a = addr.to_string();
        assert_eq!(fetch(&a, "/metrics").unwrap(), r.render());
        r.counter("bastion_tile_in_total", "", &[("tile", "net")]).inc();
        assert!(fetch(&a, "/metrics").unwrap().contains("bastion_tile_in_total{tile=\"net\"} 43\n"));
        assert_eq!(fetch(&a, "/health").unwrap(), "ok");
        let err = fetch(&a, "/nope").unwrap_err();
        assert!(err.contains(&a) && err.contains("404"), "{err}");

        // An oversized request head is dropped without an answer, and the server keeps serving.
        let mut big = TcpStream::connect(addr).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let line = format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(9000));
        let _ = big.write_all(line.as_bytes());
        let mut answer = Vec::new();
        let _ = big.read_to_end(&mut answer);
        assert!(!answer.starts_with(b"HTTP/1.0 200"));
        assert_eq!(fetch(&a, "/health").unwrap(), "ok");

        let t = Instant::now();
        stop.store(true, Ordering::Relaxed);
        while !handle.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(2), "metrics thread did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().unwrap();
    }

    /// One raw `GET`: the status line, the head and the body.
    fn get(addr: SocketAddr, target: &str) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), head.to_string(), body.to_string())
    }

    #[test]
    fn registry_values_by_name_and_labels() {
        let r = sample_registry();
        assert_eq!(r.value("bastion_tile_in_total", &[("tile", "net")]), Some(42.0));
        assert_eq!(r.value("bastion_view", &[]), Some(7.5));
        assert_eq!(r.value("bastion_view", &[("x", "1")]), None);
        assert_eq!(r.value("nope", &[]), None);
        assert_eq!(r.value("bastion_finality_seconds", &[("node", "v0")]), None, "a histogram has no value");
        assert_eq!(r.histogram_totals("bastion_finality_seconds", &[("node", "v0")]), Some((106.5, 4)));
        assert_eq!(r.histogram_totals("bastion_view", &[]), None);
    }

    #[test]
    fn serves_the_dashboard() {
        use crate::dashboard::{BookSnapshot, MarketBook};
        let r = sample_registry();
        r.counter("bastion_orders_finalized_total", "h", &[]).add(5);
        let dashboard = Arc::new(Dashboard::new("v0", "validator", "bastion-devnet"));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) =
            serve_with(r.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone(), dashboard.clone()).unwrap();

        let (status, head, page) = get(addr, "/dashboard");
        assert_eq!(status, "HTTP/1.0 200 OK");
        assert!(head.contains("Content-Type: text/html; charset=utf-8"), "{head}");
        assert!(head.contains("Cache-Control: no-store") && head.contains("connect-src 'self'"), "{head}");
        for id in
            ["height", "orders-rate", "insurance", "liquidations", "adl", "book-bids", "book-asks", "tiles"]
        {
            assert!(page.contains(&format!("id=\"{id}\"")), "no element {id}");
        }
        assert!(page.contains("<span id=\"node\">v0</span>"));
        // /metrics and /health are unchanged by the dashboard.
        assert_eq!(fetch(&addr.to_string(), "/metrics").unwrap(), r.render());
        assert_eq!(fetch(&addr.to_string(), "/health").unwrap(), "ok");

        // No book yet: 503 with a message, as JSON.
        let (status, _, body) = get(addr, "/dashboard/book.json");
        assert_eq!(status, "HTTP/1.0 503 Service Unavailable");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("no book yet"), "{v}");

        let book = |id, name: &str, bids: Vec<[i64; 2]>, asks: Vec<[i64; 2]>| MarketBook {
            id,
            name: name.to_string(),
            status: "Active".to_string(),
            tick_size_micros: 100_000,
            lot_size_nanos: 1_000_000,
            mark_micros: 100_000_000_000,
            last_trade_ticks: None,
            bids,
            asks,
        };
        dashboard.publish(BookSnapshot {
            height: 12,
            block_timestamp_ms: 1,
            taken_ms: 2,
            markets: vec![
                book(0, "BTC-PERP", vec![[999_999, 3], [999_990, 1]], vec![[1_000_001, 2]]),
                book(1, "ETH</td>", vec![], vec![]),
            ],
        });
        let v: serde_json::Value =
            serde_json::from_str(&fetch(&addr.to_string(), "/dashboard/book.json").unwrap()).unwrap();
        assert_eq!(v["height"], 12);
        assert_eq!(v["market"]["name"], "BTC-PERP");
        assert_eq!(v["market"]["bids"], serde_json::json!([[999_999, 3], [999_990, 1]]));
        assert_eq!(v["market"]["asks"], serde_json::json!([[1_000_001, 2]]));
        let v: serde_json::Value =
            serde_json::from_str(&fetch(&addr.to_string(), "/dashboard/book.json?market=1").unwrap())
                .unwrap();
        assert_eq!(
            v["market"]["name"], "ETH</td>",
            "JSON carries names as they are; the page writes them as text"
        );

        let (status, head, body) = get(addr, "/dashboard/book.json?market=7");
        assert_eq!(status, "HTTP/1.0 404 Not Found");
        assert!(head.contains("application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["error"],
            "market 7 is not published on this dashboard; published: 0 (BTC-PERP), 1 (ETH</td>)"
        );
        let (status, _, body) = get(addr, "/dashboard/book.json?market=-1");
        assert_eq!(status, "HTTP/1.0 400 Bad Request");
        assert!(body.contains("expected a market id"), "{body}");

        // The accept thread sampled the registry for the history.
        let v: serde_json::Value =
            serde_json::from_str(&fetch(&addr.to_string(), "/dashboard/history.json").unwrap()).unwrap();
        assert_eq!(v["node"], "v0");
        assert_eq!(v["samples"][0]["orders"], 5.0, "{v}");
        let (status, _, _) = get(addr, "/dashboard/other");
        assert_eq!(status, "HTTP/1.0 404 Not Found");
        let (status, _, _) = get(addr, "/metrics/../dashboard/x");
        assert_eq!(status, "HTTP/1.0 404 Not Found");

        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn slow_client_is_dropped() {
        let r = Registry::new();
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) = serve(r, "127.0.0.1:0".parse().unwrap(), stop.clone()).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /health").unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer);
        assert!(answer.is_empty());
        assert!(t.elapsed() < Duration::from_secs(4));
        assert_eq!(fetch(&addr.to_string(), "/health").unwrap(), "ok");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn a_stalled_connection_does_not_stall_a_scrape() {
        let r = sample_registry();
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) = serve(r.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone()).unwrap();
        // A client that connects and sends nothing: it holds its connection for up to 2 s.
        let stalled = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // A scrape while it is open is answered at once, not after the stalled client's timeout.
        let t = Instant::now();
        assert_eq!(fetch(&addr.to_string(), "/metrics").unwrap(), r.render());
        let took = t.elapsed();
        assert!(took < Duration::from_millis(1_000), "a scrape waited {took:?} behind a stalled client");
        // More stalled clients than slots: the excess is refused, a scrape after the slots free
        // up is answered.
        let many: Vec<TcpStream> =
            (0..MAX_CONNECTIONS + 4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(2_500));
        assert_eq!(fetch(&addr.to_string(), "/health").unwrap(), "ok");
        drop((stalled, many));
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn fetch_unreachable_names_address() {
        // Bind then drop to get a port that is (almost certainly) closed.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        match fetch_http(&addr, "/metrics") {
            Err(FetchError::Connect { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("expected a connect error, got {other:?}"),
        }
        assert!(fetch(&addr, "/metrics").unwrap_err().contains(&addr));
        assert!(fetch("not an address", "/metrics").unwrap_err().contains("not an address"));
    }
}
