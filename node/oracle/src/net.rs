//! Network sources: a WebSocket ticker stream and a polled HTTP endpoint, each on its own
//! std thread that publishes ticks to a [`Board`]; [`PriceSource::quotes`] only copies the
//! board. Every failure is counted by kind and the thread carries on (reconnecting with
//! backoff, or polling again); it exits within a read timeout or poll step of the source
//! being dropped.

use bastion_types::UnderlyingId;
use std::io::ErrorKind as IoKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, Message};

use crate::config::{HttpSource, WsSource};
use crate::extract::Extractor;
use crate::source::{Board, BoardWriter, PriceSource, Quotes, Tick, unix_ms};
use crate::stats::{ErrorKind, SourceStats, TRANSPORT};

/// Largest WebSocket message or HTTP answer read, bytes.
pub const MESSAGE_MAX_BYTES: usize = 1 << 20;
/// How often a WebSocket thread wakes from a read to check for shutdown and idleness.
const READ_STEP: Duration = Duration::from_millis(100);

/// A source whose I/O runs on its own thread.
#[derive(Debug)]
pub struct Threaded {
    name: String,
    stats: Arc<SourceStats>,
    board: Board,
}

impl PriceSource for Threaded {
    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    fn quotes(&mut self, _now_ms: u64, _expiries: &[(UnderlyingId, u64)], out: &mut Quotes) {
        self.board.read(out);
    }
}

/// Reads the tickers of one message, counts what could not be read, publishes the rest.
fn deliver(text: &str, extractor: &Extractor, writer: &BoardWriter, stats: &SourceStats) {
    let mut ticks: Vec<Tick> = Vec::new();
    let r = extractor.extract(text, unix_ms(), &mut ticks);
    if r.malformed == 0 {
        stats.ok(&[ErrorKind::Malformed]);
    } else {
        let why = r.first_error.unwrap_or_default();
        stats.errors(ErrorKind::Malformed, r.malformed, &why);
    }
    writer.publish(&ticks);
}

/// Starts a WebSocket source's thread.
pub(crate) fn start_ws(config: WsSource, extractor: Extractor) -> std::io::Result<Threaded> {
    let stats = Arc::new(SourceStats::new(&config.name));
    let (board, writer) = Board::new();
    let thread_stats = stats.clone();
    let name = config.name.clone();
    std::thread::Builder::new()
        .name(format!("oracle-ws-{name}"))
        .spawn(move || ws_loop(&config, &extractor, &writer, &thread_stats))?;
    Ok(Threaded { name, stats, board })
}

/// Connects, reads until the connection fails, waits, and again, until the source is dropped.
fn ws_loop(config: &WsSource, extractor: &Extractor, writer: &BoardWriter, stats: &SourceStats) {
    let min = Duration::from_millis(config.reconnect_min_ms);
    let max = Duration::from_millis(config.reconnect_max_ms).max(min);
    let mut backoff = min;
    while !writer.stopped() {
        let delivered = ws_session(config, extractor, writer, stats);
        if delivered {
            backoff = min;
        }
        if !writer.sleep(backoff) {
            return;
        }
        backoff = backoff.saturating_mul(2).min(max);
    }
}

/// Opens a TCP connection to the URL's host with a timeout.
fn connect_tcp(url: &str, default_port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let uri: tungstenite::http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri.host().ok_or("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("resolve {host}: {e}"))?.collect();
    let mut last = format!("{host}:{port} resolves to nothing");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    Err(last)
}

/// Whether an I/O error is a read timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut)
}

/// The WebSocket type of this build: plain TCP, or TCP that may be wrapped in TLS.
#[cfg(not(feature = "tls"))]
type WsStream = TcpStream;
#[cfg(feature = "tls")]
type WsStream = tungstenite::stream::MaybeTlsStream<TcpStream>;

/// The WebSocket handshake over `stream`.
fn handshake(
    url: &str,
    stream: TcpStream,
    ws_config: WebSocketConfig,
) -> Result<tungstenite::WebSocket<WsStream>, (ErrorKind, String)> {
    #[cfg(not(feature = "tls"))]
    let r = tungstenite::client::client_with_config(url, stream, Some(ws_config));
    #[cfg(feature = "tls")]
    let r = tungstenite::client_tls_with_config(url, stream, Some(ws_config), None);
    match r {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Interrupted(_)) => Err((ErrorKind::Timeout, "handshake timed out".into())),
        Err(HandshakeError::Failure(e)) => Err((ErrorKind::Connect, format!("handshake: {e}"))),
    }
}

/// One connection: returns whether it delivered at least one message.
fn ws_session(config: &WsSource, extractor: &Extractor, writer: &BoardWriter, stats: &SourceStats) -> bool {
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let stream = match connect_tcp(&config.url, if config.url.starts_with("wss") { 443 } else { 80 }, timeout)
    {
        Ok(s) => s,
        Err(why) => {
            stats.error(ErrorKind::Connect, &why);
            return false;
        }
    };
    // A handle on the same socket, to change its timeouts under the WebSocket.
    let control = match stream.try_clone() {
        Ok(c) => c,
        Err(e) => {
            stats.error(ErrorKind::Connect, &e);
            return false;
        }
    };
    let _ = control.set_nodelay(true);
    if let Err(e) = control.set_read_timeout(Some(timeout)).and(control.set_write_timeout(Some(timeout))) {
        stats.error(ErrorKind::Connect, &e);
        return false;
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_MAX_BYTES))
        .max_frame_size(Some(MESSAGE_MAX_BYTES));
    let mut ws = match handshake(&config.url, stream, ws_config) {
        Ok(ws) => ws,
        Err((kind, why)) => {
            stats.error(kind, &why);
            return false;
        }
    };
    if let Some(sub) = &config.subscribe
        && let Err(e) = ws.send(Message::text(sub.clone()))
    {
        stats.error(ErrorKind::Disconnect, &format!("sending the subscription: {e}"));
        return false;
    }
    stats.ok(&TRANSPORT);
    if let Err(e) = control.set_read_timeout(Some(READ_STEP)) {
        stats.error(ErrorKind::Disconnect, &e);
        return false;
    }
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut last_message = Instant::now();
    let mut delivered = false;
    loop {
        if writer.stopped() {
            let _ = ws.close(None);
            let _ = ws.flush();
            return delivered;
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                last_message = Instant::now();
                stats.ok(&TRANSPORT);
                deliver(text.as_str(), extractor, writer, stats);
                delivered = true;
            }
            Ok(Message::Binary(bytes)) => {
                last_message = Instant::now();
                stats.ok(&TRANSPORT);
                match std::str::from_utf8(&bytes) {
                    Ok(text) => deliver(text, extractor, writer, stats),
                    Err(e) => stats.error(ErrorKind::Malformed, &format!("binary message is not UTF-8: {e}")),
                }
                delivered = true;
            }
            Ok(Message::Close(frame)) => {
                stats.error(ErrorKind::Disconnect, &format!("closed by the server: {frame:?}"));
                return delivered;
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                last_message = Instant::now();
                // Replies to pings are queued by the read; send them.
                let _ = ws.flush();
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if last_message.elapsed() > idle {
                    stats.error(ErrorKind::Timeout, &format!("no message for {} ms", config.idle_timeout_ms));
                    return delivered;
                }
            }
            Err(e) => {
                stats.error(ErrorKind::Disconnect, &e);
                return delivered;
            }
        }
    }
}

/// Starts an HTTP source's polling thread.
pub(crate) fn start_http(config: HttpSource, extractor: Extractor) -> std::io::Result<Threaded> {
    let stats = Arc::new(SourceStats::new(&config.name));
    let (board, writer) = Board::new();
    let thread_stats = stats.clone();
    let name = config.name.clone();
    std::thread::Builder::new()
        .name(format!("oracle-http-{name}"))
        .spawn(move || http_loop(&config, &extractor, &writer, &thread_stats))?;
    Ok(Threaded { name, stats, board })
}

/// Polls every `poll_ms` (start to start) until the source is dropped.
fn http_loop(config: &HttpSource, extractor: &Extractor, writer: &BoardWriter, stats: &SourceStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let poll = Duration::from_millis(config.poll_ms);
    while !writer.stopped() {
        let started = Instant::now();
        poll_once(&agent, config, extractor, writer, stats);
        if !writer.sleep(poll.saturating_sub(started.elapsed())) {
            return;
        }
    }
}

fn poll_once(
    agent: &ureq::Agent,
    config: &HttpSource,
    extractor: &Extractor,
    writer: &BoardWriter,
    stats: &SourceStats,
) {
    let fail = |e: ureq::Error| match e {
        ureq::Error::Timeout(t) => {
            stats.error(ErrorKind::Timeout, &format!("no answer in {} ms ({t})", config.timeout_ms))
        }
        ureq::Error::Io(e) if is_timeout(&e) => stats.error(ErrorKind::Timeout, &e),
        ureq::Error::BodyExceedsLimit(n) => {
            stats.error(ErrorKind::Malformed, &format!("answer over {n} bytes"))
        }
        e => stats.error(ErrorKind::Connect, &e),
    };
    let mut response = match agent.get(&config.url).call() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let status = response.status();
    if !status.is_success() {
        stats.error(ErrorKind::HttpStatus, &format!("HTTP {status}"));
        return;
    }
    match response.body_mut().with_config().limit(MESSAGE_MAX_BYTES as u64).read_to_string() {
        Ok(text) => {
            stats.ok(&TRANSPORT);
            deliver(&text, extractor, writer, stats);
        }
        Err(e) => fail(e),
    }
}
