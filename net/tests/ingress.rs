#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Both receive backends against real loopback UDP traffic.

use bastion_net::{Backend, Frame, Ingress, IngressConfig, MAX_DATAGRAM, open};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const COUNT: u32 = 10_000;

fn open_on(bind: &str, backend: Backend) -> Box<dyn Ingress> {
    open_with(bind, backend, |_| {})
}

fn open_with(bind: &str, backend: Backend, tweak: impl FnOnce(&mut IngressConfig)) -> Box<dyn Ingress> {
    let mut cfg = IngressConfig::new(bind.parse().unwrap(), backend);
    cfg.recv_buffer_bytes = Some(4 << 20);
    tweak(&mut cfg);
    open(&cfg).unwrap_or_else(|e| panic!("open {backend}: {e}"))
}

/// Datagram `seq`: 1 to MAX_DATAGRAM bytes, the sequence number's little-endian bytes first
/// (as many as fit), then a pattern of the sequence number.
fn datagram(seq: u32) -> Vec<u8> {
    let len = 1 + (seq as usize % MAX_DATAGRAM);
    let mut v: Vec<u8> = (0..len).map(|j| (seq as usize * 31 + j * 7) as u8).collect();
    let n = len.min(4);
    v[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    v
}

/// Receives until `want` frames arrived or `deadline` passed; returns them as payload/source.
fn receive(ingress: &mut dyn Ingress, want: usize, within: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    receive_in(ingress, want, within, 64)
}

/// As `receive`, `slots` frames per call.
fn receive_in(
    ingress: &mut dyn Ingress,
    want: usize,
    within: Duration,
    slots: usize,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + within;
    let mut frames = vec![Frame::empty(); slots];
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let n = ingress.recv(&mut frames, Duration::from_millis(100)).unwrap();
        assert!(n <= frames.len());
        got.extend(frames[..n].iter().map(|f| (f.payload().to_vec(), f.from)));
    }
    got
}

fn exactly_once(backend: Backend) {
    exactly_once_with(open_on("127.0.0.1:0", backend), 64);
}

fn exactly_once_with(mut ingress: Box<dyn Ingress>, slots: usize) {
    let backend = ingress.backend();
    let to = ingress.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sender.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        for seq in 0..COUNT {
            sender.send_to(&datagram(seq), to).unwrap();
            if seq % 64 == 63 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    });
    let got = receive_in(ingress.as_mut(), COUNT as usize, Duration::from_secs(30), slots);
    t.join().unwrap();

    // Sequence numbers by datagram length: the payload must match exactly one of them.
    let mut by_len: HashMap<usize, Vec<u32>> = HashMap::new();
    for seq in 0..COUNT {
        by_len.entry(datagram(seq).len()).or_default().push(seq);
    }
    let mut seen = vec![false; COUNT as usize];
    for (payload, src) in &got {
        assert_eq!(*src, from, "{backend}: wrong source address");
        let matches: Vec<u32> = by_len
            .get(&payload.len())
            .into_iter()
            .flatten()
            .copied()
            .filter(|&s| datagram(s) == *payload)
            .collect();
        assert_eq!(matches.len(), 1, "{backend}: payload of {} bytes matches {matches:?}", payload.len());
        let seq = matches[0] as usize;
        assert!(!seen[seq], "{backend}: datagram {seq} delivered twice");
        seen[seq] = true;
    }
    let lost = seen.iter().filter(|s| !**s).count();
    if lost > 0 {
        eprintln!("{backend}: {lost} of {COUNT} datagrams lost");
    }
    assert_eq!(lost, 0, "{backend}: {lost} datagrams lost despite pacing");
    let stats = ingress.stats();
    assert_eq!(stats.received, u64::from(COUNT), "{backend}: {stats:?}");
    assert_eq!(stats.oversized, 0, "{backend}: {stats:?}");
    assert_eq!(stats.errors, 0, "{backend}: {stats:?}");
    assert!(stats.batches >= 1 && stats.batches <= u64::from(COUNT), "{backend}: {stats:?}");
}

fn oversized_dropped(backend: Backend) {
    let mut ingress = open_on("127.0.0.1:0", backend);
    let to = ingress.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let full = vec![0xabu8; MAX_DATAGRAM];
    sender.send_to(b"first", to).unwrap();
    sender.send_to(&vec![1u8; MAX_DATAGRAM + 1], to).unwrap();
    sender.send_to(&full, to).unwrap();
    sender.send_to(&vec![2u8; 2000], to).unwrap();
    sender.send_to(b"last", to).unwrap();
    let got = receive(ingress.as_mut(), 3, Duration::from_secs(5));
    let payloads: Vec<&[u8]> = got.iter().map(|(p, _)| p.as_slice()).collect();
    assert_eq!(payloads, vec![&b"first"[..], &full[..], &b"last"[..]], "{backend}");
    // Nothing else arrives later.
    assert!(receive(ingress.as_mut(), 1, Duration::from_millis(200)).is_empty(), "{backend}");
    let stats = ingress.stats();
    assert_eq!(stats.oversized, 2, "{backend}: {stats:?}");
    assert_eq!(stats.received, 3, "{backend}: {stats:?}");
}

fn times_out(backend: Backend) {
    let mut ingress = open_on("127.0.0.1:0", backend);
    let mut frames = vec![Frame::empty(); 8];
    for timeout in [Duration::ZERO, Duration::from_millis(200)] {
        let t = Instant::now();
        assert_eq!(ingress.recv(&mut frames, timeout).unwrap(), 0, "{backend}");
        let took = t.elapsed();
        assert!(took + Duration::from_millis(10) >= timeout, "{backend}: returned after {took:?}");
        assert!(took < timeout + Duration::from_secs(1), "{backend}: returned after {took:?}");
    }
    assert_eq!(ingress.recv(&mut [], Duration::from_secs(10)).unwrap(), 0);
    assert_eq!(ingress.stats(), Default::default());
}

fn ipv6(backend: Backend) {
    let mut ingress = open_on("[::1]:0", backend);
    let to = ingress.local_addr().unwrap();
    assert!(to.is_ipv6());
    let sender = UdpSocket::bind("[::1]:0").unwrap();
    let from = sender.local_addr().unwrap();
    for seq in 0..100u32 {
        sender.send_to(&datagram(seq), to).unwrap();
    }
    let got = receive(ingress.as_mut(), 100, Duration::from_secs(5));
    assert_eq!(got.len(), 100, "{backend}");
    for (i, (payload, src)) in got.iter().enumerate() {
        assert_eq!(*src, from, "{backend}");
        assert_eq!(*payload, datagram(i as u32), "{backend}");
    }
}

fn address_in_use(backend: Backend) {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = open(&IngressConfig::new(addr, backend)).err().expect("second bind must fail").to_string();
    assert!(err.contains(&addr.to_string()) && err.starts_with("bind "), "{backend}: {err}");
    assert!(err.to_lowercase().contains("in use"), "{backend}: {err}");
}

#[test]
fn sockets_exactly_once() {
    exactly_once(Backend::Sockets);
}

#[test]
fn io_uring_exactly_once() {
    exactly_once(Backend::IoUring);
}

/// Few provided buffers (the multishot receive runs out and is re-armed) and few frames per call
/// (completions wait in the queue between calls); a small recvmmsg batch likewise.
#[test]
fn exactly_once_small_buffers_and_batches() {
    exactly_once_with(open_with("127.0.0.1:0", Backend::IoUring, |c| c.buffers = 8), 3);
    exactly_once_with(open_with("127.0.0.1:0", Backend::Sockets, |c| c.batch = 5), 7);
}

#[test]
fn sockets_oversized_dropped() {
    oversized_dropped(Backend::Sockets);
}

#[test]
fn io_uring_oversized_dropped() {
    oversized_dropped(Backend::IoUring);
}

#[test]
fn sockets_times_out() {
    times_out(Backend::Sockets);
}

#[test]
fn io_uring_times_out() {
    times_out(Backend::IoUring);
}

#[test]
fn sockets_ipv6() {
    ipv6(Backend::Sockets);
}

#[test]
fn io_uring_ipv6() {
    ipv6(Backend::IoUring);
}

#[test]
fn sockets_address_in_use() {
    address_in_use(Backend::Sockets);
}

#[test]
fn io_uring_address_in_use() {
    address_in_use(Backend::IoUring);
}

#[test]
fn invalid_config_is_refused() {
    let mut cfg = IngressConfig::new("127.0.0.1:0".parse().unwrap(), Backend::IoUring);
    cfg.buffers = 1000;
    let err = open(&cfg).err().unwrap().to_string();
    assert!(err.contains("power of two"), "{err}");
    cfg.backend = Backend::Sockets;
    cfg.batch = 0;
    assert!(open(&cfg).err().unwrap().to_string().contains("batch"));
}

#[test]
fn ingress_moves_across_threads() {
    // The socket backends (the kernel-bypass ones need an interface; their own tests cover them).
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_bypass()) {
        let ingress = open_on("127.0.0.1:0", backend);
        let to = ingress.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut ingress = ingress;
            receive(ingress.as_mut(), 1, Duration::from_secs(5))
        });
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"hello", to).unwrap();
        let got = t.join().unwrap();
        assert_eq!(got.len(), 1, "{backend}");
        assert_eq!(got[0].0, b"hello", "{backend}");
    }
}
