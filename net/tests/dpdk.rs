//! DPDK backend tests. DPDK's EAL can be initialised once per process, so every test here
//! shares one EAL (the benchmarks' arguments, `dpdk::bench_eal_args`, so the veth bench can run
//! here too) and runs under one lock. Run with
//! `cargo test -p bastion-net --features dpdk --test dpdk` (as root for the veth test).
#![cfg(feature = "dpdk")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_net::dpdk::{self, DpdkIngress, RingPort};
use bastion_net::l2::{self, build_udp_frame};
use bastion_net::{Backend, Frame, Ingress, IngressConfig, MAX_DATAGRAM};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests and initialises the shared EAL.
fn eal() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    dpdk::init_eal(&eal_args()).expect("EAL init with the test arguments");
    guard
}

fn eal_args() -> Vec<String> {
    dpdk::bench_eal_args()
}

fn config(port: u16, bind: SocketAddrV4) -> IngressConfig {
    let mut cfg = IngressConfig::new(SocketAddr::V4(bind), Backend::Dpdk);
    cfg.bypass.eal_args = eal_args();
    cfg.bypass.dpdk_port = port;
    cfg.bypass.ring_size = 256;
    cfg.bypass.frames = 1024;
    cfg
}

const US: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 8001);
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

fn udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build_udp_frame(PEER_MAC, OUR_MAC, from, to, payload, None, &mut out).unwrap();
    out
}

fn peer(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 2 + (i % 200) as u8), 5000 + (i % 1000) as u16)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = (i as u32).to_be_bytes().to_vec();
    p.resize(len.max(4), (i % 251) as u8);
    p
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[10, 9, 0, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Receives until `want` frames were delivered or dropped-and-counted, or 5 s pass; returns
/// the delivered (sender, payload) pairs with their counts.
fn drain(ing: &mut DpdkIngress, out: &mut [Frame], want: u64) -> HashMap<(SocketAddr, Vec<u8>), u32> {
    let mut got = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ing.rx_counters().packets < want && Instant::now() < deadline {
        let n = ing.recv(out, Duration::from_millis(20)).unwrap();
        assert!(n <= out.len());
        for f in &out[..n] {
            *got.entry((f.from, f.payload().to_vec())).or_insert(0) += 1;
        }
    }
    got
}

#[test]
fn ring_port_delivers_each_datagram_once_and_counts_every_drop() {
    let _g = eal();
    let ring = RingPort::create(1024, 2048).unwrap();
    let mut cfg = config(ring.port(), US);
    cfg.bypass.mac = Some(OUR_MAC);
    let mut ing = DpdkIngress::open(&cfg).unwrap();
    assert_eq!(ing.local_addr().unwrap(), SocketAddr::V4(US));
    assert_eq!(ing.backend(), Backend::Dpdk);

    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut expected = HashMap::new();
    let valid = 100;
    for i in 0..valid {
        let len = if i == 7 { MAX_DATAGRAM } else { 10 + i };
        frames.push(udp(peer(i), US, &payload(i, len)));
        expected.insert((SocketAddr::V4(peer(i)), payload(i, len)), 1u32);
    }
    // Oversized: one byte over MAX_DATAGRAM.
    frames.push(udp(peer(1), US, &[7; MAX_DATAGRAM + 1]));
    // Malformed: bad UDP checksum, bad IP checksum, truncated, bad IP version.
    let mut bad = udp(peer(2), US, b"bad udp checksum");
    *bad.last_mut().unwrap() ^= 0x55;
    frames.push(bad);
    let mut bad = udp(peer(3), US, b"bad ip checksum");
    bad[14 + 8] ^= 1; // TTL
    frames.push(bad);
    frames.push(udp(peer(4), US, b"truncated")[..30].to_vec());
    let mut bad = udp(peer(5), US, b"bad version");
    bad[14] = 0x65;
    frames.push(bad);
    // Fragments: MF set; offset != 0 (header checksum recomputed so only that is wrong).
    for (flags, off) in [(0x20u8, 0u8), (0x00, 0x10)] {
        let mut f = udp(peer(6), US, b"fragment");
        f[14 + 6] = flags;
        f[14 + 7] = off;
        let c = l2::ipv4_header_checksum(&f[14..34]).to_be_bytes();
        f[14 + 10..14 + 12].copy_from_slice(&c);
        frames.push(f);
    }
    // Foreign: another port, another address, IPv6 ethertype, ARP for someone else.
    frames.push(udp(peer(8), SocketAddrV4::new(*US.ip(), 9999), b"other port"));
    frames.push(udp(peer(9), SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 99), US.port()), b"other ip"));
    let mut v6 = udp(peer(10), US, b"v6");
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    frames.push(v6);
    frames.push(arp_request(Ipv4Addr::new(10, 9, 0, 77)));
    // ARP request for us: answered.
    frames.push(arp_request(*US.ip()));
    let total = frames.len() as u64;

    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    assert_eq!(ring.inject(&refs), frames.len());
    let mut out = vec![Frame::empty(); 7]; // fewer than a burst: bursts are sized to the room left
    let got = drain(&mut ing, &mut out, total);
    assert_eq!(got, expected, "every valid datagram exactly once, with its sender");

    let s = ing.stats();
    assert_eq!(s.received, valid as u64);
    assert_eq!(s.oversized, 1);
    assert_eq!(s.malformed, 4);
    assert_eq!(s.fragments, 2);
    assert_eq!(s.foreign, 4);
    assert_eq!(s.arp_replies, 1);
    assert_eq!(s.errors, 0);
    assert_eq!(ing.rx_counters().packets, total);

    let mut reply = [0u8; 128];
    let n = ring.take_sent(&mut reply).expect("an ARP reply was sent");
    assert_eq!(n, 42);
    assert_eq!(&reply[0..6], &PEER_MAC);
    assert_eq!(&reply[6..12], &OUR_MAC);
    assert_eq!(&reply[20..22], &[0, 2], "opcode reply");
    assert_eq!(&reply[22..28], &OUR_MAC);
    assert_eq!(&reply[28..32], &US.ip().octets());
    assert!(ring.take_sent(&mut reply).is_none());

    // Nothing leaked: injected mbufs and the ARP reply's mbuf are back in their pools.
    let (avail, size) = ring.mempool_available();
    assert_eq!(avail, size);
    let (avail, size) = ing.mempool_available();
    assert_eq!(avail, size);

    // Reopening the same port after a drop works (the port is stopped, not closed).
    drop(ing);
    let mut ing = DpdkIngress::open(&cfg).unwrap();
    let f = udp(peer(1), US, b"again");
    assert_eq!(ring.inject(&[&f]), 1);
    let n = ing.recv(&mut out, Duration::from_secs(2)).unwrap();
    assert_eq!((n, out[0].payload()), (1, &b"again"[..]));
    // A second open of an open port is refused.
    let e = DpdkIngress::open(&cfg).unwrap_err().to_string();
    assert!(e.contains("already open"), "{e}");
}

#[test]
fn ring_port_under_load_never_loses_accepted_frames_nor_mbufs() {
    let _g = eal();
    let ring = RingPort::create(512, 1024).unwrap();
    let mut ing = DpdkIngress::open(&config(ring.port(), US)).unwrap();
    let mut out = vec![Frame::empty(); 50];
    let (mut accepted, mut refused, mut delivered) = (0u64, 0u64, 0u64);
    let mut seen = vec![0u8; 20_000];
    let mut next = 0usize;
    let start = Instant::now();
    while next < seen.len() {
        // Offer 700 frames at once: more than the 512-slot RX ring holds.
        let batch: Vec<Vec<u8>> =
            (next..(next + 700).min(seen.len())).map(|i| udp(peer(i), US, &payload(i, 40))).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let put = ring.inject(&refs);
        assert!(put <= 512);
        accepted += put as u64;
        refused += (refs.len() - put) as u64;
        next += put.max(1);
        while ring.rx_pending() > 0 {
            let n = ing.recv(&mut out, Duration::from_millis(10)).unwrap();
            for f in &out[..n] {
                let i = u32::from_be_bytes(f.payload()[..4].try_into().unwrap()) as usize;
                seen[i] += 1;
                delivered += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(delivered, accepted);
    assert!(seen.iter().all(|&c| c == 1), "each accepted frame delivered exactly once");
    assert!(refused > 0, "the offered load exceeded the ring (back-pressure exercised)");
    assert_eq!(ing.stats().received, delivered);
    assert_eq!(ring.mempool_available().0, ring.mempool_available().1);
    assert_eq!(ing.mempool_available().0, ing.mempool_available().1);
    println!(
        "ring load: {delivered} delivered, {refused} refused by the full ring (re-offered), {:.0} frames/s incl. \
         injection",
        delivered as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn net_null_rx_path_under_maximal_load() {
    let _g = eal();
    let cfg = config(0, US);
    let info = dpdk::port_info(0).unwrap();
    assert_eq!(info.driver, "net_null");
    {
        let mut ing = DpdkIngress::open(&cfg).unwrap();
        let c = ing.rx_bench(Duration::from_millis(300));
        let s = ing.stats();
        assert!(c.packets > 0 && c.bursts > 0);
        // Every frame counted exactly once (net_null frames are zero-filled: not IPv4).
        assert_eq!(
            s.received + s.oversized + s.malformed + s.fragments + s.foreign + s.arp_replies,
            c.packets
        );
        assert_eq!(ing.mempool_available().0, ing.mempool_available().1, "no mbuf leaked");
    }
    let r = dpdk::rx_bench(&cfg, Duration::from_secs(1)).unwrap();
    println!(
        "DPDK RX path on net_null: {} packets in {} bursts over {:.2?}: {:.1} M packets/s",
        r.packets,
        r.bursts,
        r.elapsed,
        r.packets_per_sec() / 1e6
    );
    assert!(r.packets > 0);
}

#[test]
fn errors_name_what_is_wrong() {
    let _g = eal();
    // Different EAL arguments in the same process.
    let mut cfg = config(0, US);
    cfg.bypass.eal_args.push("--no-hpet".into());
    let e = DpdkIngress::open(&cfg).unwrap_err().to_string();
    assert!(e.contains("already initialised") && e.contains("eal_args"), "{e}");
    // Port 0 (the UDP port) and unspecified addresses are refused.
    let e = DpdkIngress::open(&config(0, SocketAddrV4::new(*US.ip(), 0))).unwrap_err().to_string();
    assert!(e.contains("concrete address and port"), "{e}");
    // No such port.
    let e = DpdkIngress::open(&config(999, US)).unwrap_err().to_string();
    assert!(e.contains("no DPDK port 999") && e.contains("--vdev"), "{e}");
    // Too many queues for net_null (max 1024 queues? ask for more than it has).
    let max = dpdk::port_info(0).unwrap().max_rx_queues;
    if max < u16::MAX {
        let mut cfg = config(0, US);
        cfg.bypass.queues = max + 1;
        let e = DpdkIngress::open(&cfg).unwrap_err().to_string();
        assert!(e.contains("RX queues"), "{e}");
    }
    // A bad vdev after init.
    let e = dpdk::attach_vdev("net_bogus0").unwrap_err().to_string();
    assert!(e.contains("net_bogus0"), "{e}");
    // A bad vdev at EAL init: in a child process (the EAL starts once per process).
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_open_with_bad_vdev", "--nocapture", "--test-threads=1"])
        .env("BN_DPDK_CHILD", "bad_vdev")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("CHILD-ERROR:").unwrap_or_else(|| panic!("{text}"));
    let line = text[at..].lines().next().unwrap();
    println!("{line}");
    assert!(line.contains("rte_eal_init") && line.contains("net_bogus0"), "{line}");
    // And `check` reports on this process's EAL.
    let report = dpdk::check(&config(0, US)).unwrap();
    assert!(report.contains("port 0: driver net_null"), "{report}");
    println!("{report}");
}

/// Helper run in a child process by `errors_name_what_is_wrong`.
#[test]
fn child_open_with_bad_vdev() {
    if std::env::var("BN_DPDK_CHILD").as_deref() != Ok("bad_vdev") {
        return;
    }
    let mut cfg = config(0, US);
    cfg.bypass.eal_args =
        ["-l", "0", "--no-huge", "-m", "128", "--no-pci", "--no-shconf", "--vdev", "net_bogus0"]
            .map(String::from)
            .to_vec();
    let e = DpdkIngress::open(&cfg).unwrap_err();
    println!("CHILD-ERROR: {e}");
}

/// Network namespace and veth pair, removed on drop.
struct Veth {
    ns: String,
    host: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host]).output();
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn setup_veth(ns: &str, host: &str, peer_if: &str, peer_ip: &str) -> Result<Veth, String> {
    sh(&["ip", "netns", "add", ns])?;
    let v = Veth { ns: ns.into(), host: host.into() };
    sh(&["ip", "link", "add", host, "type", "veth", "peer", "name", peer_if])?;
    sh(&["ip", "link", "set", peer_if, "netns", ns])?;
    sh(&["ip", "link", "set", host, "up"])?;
    sh(&["ip", "-n", ns, "addr", "add", peer_ip, "dev", peer_if])?;
    sh(&["ip", "-n", ns, "link", "set", peer_if, "up"])?;
    sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    Ok(v)
}

const VETH_N: usize = 500;

#[test]
fn af_packet_on_veth_delivers_datagrams_from_another_namespace() {
    let _g = eal();
    let skip = |why: String| {
        assert!(std::env::var_os("CI").is_none(), "veth test cannot run in CI: {why}");
        println!("NOTICE: skipping the af_packet veth test: {why}");
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root (network namespaces and af_packet need root)".into());
    }
    let id = std::process::id() % 100_000;
    let (ns, host, peer_if) = (format!("bnd{id}"), format!("bnd{id}a"), format!("bnd{id}b"));
    let veth = match setup_veth(&ns, &host, &peer_if, "10.77.0.2/24") {
        Ok(v) => v,
        Err(e) => return skip(format!("cannot set up a veth pair in a namespace: {e}")),
    };
    // Locally generated UDP leaves the peer veth with a partial checksum (checksum offload;
    // af_packet hands it on as TP_STATUS_CSUMNOTREADY, which DPDK's PMD ignores), which the
    // parser rightly rejects: make the kernel compute it, or have the sender send checksum 0.
    let no_check = sh(&["ip", "netns", "exec", &ns, "ethtool", "-K", &peer_if, "tx", "off"]).is_err();
    let port = dpdk::attach_vdev(&format!("net_af_packet{id},iface={host}")).unwrap();
    let us = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 9001);
    let mut ing = DpdkIngress::open(&config(port, us)).unwrap();
    let start = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "child_send_udp", "--nocapture", "--test-threads=1"])
        .env("BN_DPDK_CHILD", "send")
        .env("BN_SEND_TO", us.to_string())
        .env("BN_SEND_N", VETH_N.to_string())
        .env("BN_NO_CHECK", if no_check { "1" } else { "0" })
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = vec![Frame::empty(); 64];
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut senders = std::collections::HashSet::new();
    while seen.len() < VETH_N && Instant::now() < deadline {
        let n = ing.recv(&mut out, Duration::from_millis(50)).unwrap();
        for f in &out[..n] {
            *seen.entry(f.payload().to_vec()).or_insert(0) += 1;
            senders.insert(f.from.ip());
        }
    }
    let elapsed = start.elapsed();
    // Catch duplicates arriving late.
    let _ = ing.recv(&mut out, Duration::from_millis(100)).map(|n| {
        for f in &out[..n] {
            *seen.entry(f.payload().to_vec()).or_insert(0) += 1;
        }
    });
    let status = child.wait_with_output().unwrap();
    let s = ing.stats();
    println!(
        "veth/af_packet: {} of {VETH_N} datagrams in {elapsed:.2?}, stats {s:?}; sender said: {}",
        seen.len(),
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .filter(|l| l.contains("CHILD-"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(status.status.success());
    assert_eq!(seen.len(), VETH_N, "every datagram delivered");
    assert!(seen.values().all(|&c| c == 1), "each exactly once");
    assert_eq!(
        senders.into_iter().collect::<Vec<_>>(),
        vec![std::net::IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))]
    );
    assert!(s.arp_replies >= 1, "the sender resolved us through our ARP reply");
    drop(ing);
    drop(veth);
}

/// Helper run inside the namespace by the veth test: sends BN_SEND_N datagrams to BN_SEND_TO.
#[test]
fn child_send_udp() {
    if std::env::var("BN_DPDK_CHILD").as_deref() != Ok("send") {
        return;
    }
    let to: SocketAddr = std::env::var("BN_SEND_TO").unwrap().parse().unwrap();
    let n: usize = std::env::var("BN_SEND_N").unwrap().parse().unwrap();
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    if std::env::var("BN_NO_CHECK").as_deref() == Ok("1") {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a live socket fd; the option value is a c_int whose size is passed.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_NO_CHECK");
    }
    let mut sig = [0u8; 96]; // shaped like a signed envelope: version, key, signature
    for i in 0..n {
        sig[..4].copy_from_slice(&(i as u32).to_be_bytes());
        sig[4] = 1;
        sock.send_to(&sig, to).unwrap();
        if i == 0 {
            // The first datagram waits in the kernel for ARP resolution (answered by DPDK).
            std::thread::sleep(Duration::from_millis(300));
        } else if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!("CHILD-SENT: {n}");
}

/// The `ingress` suite's DPDK-on-veth run, briefly: a `net_af_packet` device hot-plugged on a
/// veth end takes datagrams from the other namespace, with both senders, and never more than
/// were sent.
#[test]
fn veth_run_feeds_dpdk_over_af_packet() {
    use bastion_net::veth_bench::{VethCpus, VethRx, VethTx, veth_run};
    let _g = eal();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "the DPDK veth run needs root under CI");
        println!("NOTICE: skipping the DPDK veth run: not root");
        return;
    }
    let mut senders = vec![VethTx::Sendmmsg];
    #[cfg(feature = "af_xdp")]
    senders.push(VethTx::XdpTx);
    for tx in senders {
        let r = veth_run(VethRx::Dpdk, tx, VethCpus::Shared, Duration::from_millis(500), 64).unwrap();
        println!("veth dpdk <- {}: received {:.0}/s, sent {:.0}/s", r.sender, r.rx_pps(), r.sent_pps());
        assert!(r.received > 0, "{r:?}");
        assert!(r.received <= r.sent + 1, "{r:?}");
        let s = r.stats.unwrap();
        assert_eq!((s.malformed, s.fragments), (0, 0), "{s:?}");
    }
}

/// DPDK with two RX queues: `net_af_packet` with `qpairs=2` on a veth end opens two sockets in
/// one PACKET_FANOUT group (the kernel spreads frames over them), the ingress sets up and polls
/// both queues, every datagram from 32 source ports arrives exactly once, and both queues carry
/// traffic.
#[test]
fn two_rx_queues_deliver_every_datagram_once() {
    use bastion_net::veth::VethPair;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const N: u32 = 4_000;
    const SOCKETS: u32 = 32;
    let _g = eal();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "the DPDK two-queue test needs root under CI");
        println!("NOTICE: skipping the DPDK two-queue test: not root");
        return;
    }
    let pair = VethPair::create().unwrap();
    let if_rx = pair.if_rx.clone();
    let vdev = format!("net_af_packet_mq{},iface={if_rx},qpairs=2", std::process::id() % 100_000);
    let us = SocketAddrV4::new(pair.ip_rx, 9002);
    // Created and started inside the receiving namespace: the PMD finds the interface by name
    // in the namespace of the calling thread, at attach and at start.
    let mut ing = pair
        .spawn_rx(move || {
            let port = dpdk::attach_vdev(&vdev).unwrap();
            let mut cfg = config(port, us);
            cfg.bypass.queues = 2;
            DpdkIngress::open(&cfg).unwrap()
        })
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(ing.queue_packets(), &[0, 0]);

    let received = Arc::new(AtomicU64::new(0));
    let received2 = received.clone();
    let ip_tx = pair.ip_tx;
    let sender = pair.spawn_tx(move || {
        let socks: Vec<std::net::UdpSocket> =
            (0..SOCKETS).map(|_| std::net::UdpSocket::bind(SocketAddrV4::new(ip_tx, 0)).unwrap()).collect();
        for seq in 0..N {
            // Stay at most 128 ahead: the PMD's PACKET_MMAP ring is small by default.
            let deadline = Instant::now() + Duration::from_secs(5);
            while u64::from(seq) >= received2.load(Ordering::Relaxed) + 128 && Instant::now() < deadline {
                std::thread::yield_now();
            }
            socks[(seq % SOCKETS) as usize].send_to(&seq.to_le_bytes(), us).unwrap();
        }
    });
    let mut seen = vec![0u8; N as usize];
    let mut got = 0u32;
    let mut out = vec![Frame::empty(); 64];
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < N && Instant::now() < deadline {
        let n = ing.recv(&mut out, Duration::from_millis(50)).unwrap();
        for f in &out[..n] {
            let seq = u32::from_le_bytes(f.payload()[..4].try_into().unwrap());
            seen[seq as usize] += 1;
            got += 1;
        }
        received.store(u64::from(got), Ordering::Relaxed);
    }
    sender.join().unwrap().unwrap();
    // Anything delivered twice would arrive by now.
    let n = ing.recv(&mut out, Duration::from_millis(100)).unwrap();
    got += n as u32;
    let q = ing.queue_packets().to_vec();
    println!("two queues: {got} of {N} delivered, per queue {q:?}, stats {:?}", ing.stats());
    assert_eq!(got, N, "every datagram delivered once: {:?}", ing.stats());
    assert!(seen.iter().all(|&c| c == 1), "each exactly once");
    assert_eq!(q.len(), 2);
    assert!(q[0] > 0 && q[1] > 0, "both queues carried traffic: {q:?}");
    assert!(q[0] + q[1] >= u64::from(N), "per-queue counts add up: {q:?}");
}
