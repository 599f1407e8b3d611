//! The snapshot protocol over real libp2p swarms on 127.0.0.1: opaque bytes both ways, a 4 MiB
//! answer, "unavailable", "busy", peers that are not connected and oversize requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bastion_gossip::{Gossip, GossipConfig, Handler, SNAPSHOT_REQUEST_MAX, SnapshotAnswer, Verdict};

struct AcceptAll;

impl Handler for AcceptAll {
    fn validate_tx(&self, _: &[u8]) -> Verdict {
        Verdict::Accept
    }
    fn validate_block(&self, _: &[u8]) -> Verdict {
        Verdict::Accept
    }
}

const WAIT: Duration = Duration::from_secs(10);

fn config(seed: u8, bootstrap: Vec<String>) -> GossipConfig {
    let mut cfg = GossipConfig::new("127.0.0.1:0".parse().unwrap(), [seed; 32], "testnet");
    cfg.bootstrap = bootstrap;
    cfg
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Starts B (the server, with `cb`) and A (bootstrapping to B) and waits until both see the
/// connection.
fn pair(cb: GossipConfig, seed_a: u8) -> (Gossip, Gossip) {
    let b = Gossip::start(cb, Arc::new(AcceptAll)).unwrap();
    let a = Gossip::start(config(seed_a, b.listen_addrs()), Arc::new(AcceptAll)).unwrap();
    assert!(wait_until(WAIT, || a.stats().peers == 1 && b.stats().peers == 1), "not connected");
    (a, b)
}

fn answer(a: &Gossip) -> SnapshotAnswer {
    a.snapshot_answers().recv_timeout(WAIT).expect("no snapshot answer in time")
}

/// What B's test thread answers: depends on every byte of the request.
fn payload_for(request: &[u8]) -> Vec<u8> {
    let mut p: Vec<u8> = request.iter().rev().copied().collect();
    p.extend_from_slice(b"/from-B/");
    p.extend_from_slice(blake3::hash(request).as_bytes());
    p
}

#[test]
fn a_snapshot_request_is_answered_with_the_exact_bytes() {
    let mut cb = config(130, vec![]);
    cb.max_snapshot_requests_per_peer = 4;
    let (a, b) = pair(cb, 131);
    let requests: Vec<Vec<u8>> =
        vec![b"chunk 0 of root abc".to_vec(), vec![], vec![0xAB; SNAPSHOT_REQUEST_MAX]];
    let mut ids = Vec::new();
    for r in &requests {
        ids.push(a.ask_snapshot(&b.peer_id(), r.clone()).unwrap());
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids {ids:?}");
    // All three are in flight at B at once (its limit is 4 here).
    for _ in 0..requests.len() {
        let req = b.snapshot_requests().recv_timeout(WAIT).unwrap();
        assert_eq!(req.peer, a.peer_id());
        assert!(requests.contains(&req.data), "unexpected request {:?}", req.data);
        let data = payload_for(&req.data);
        req.reply.send(Some(data)).unwrap();
    }
    for _ in 0..requests.len() {
        let ans = answer(&a);
        assert_eq!(ans.peer, b.peer_id());
        let i = ids.iter().position(|id| *id == ans.id).unwrap();
        assert_eq!(ans.data, Ok(payload_for(&requests[i])), "answer to request {i}");
    }
    let sa = a.stats().snapshots;
    assert_eq!((sa.asked, sa.answered, sa.failed), (3, 3, 0), "{sa:?}");
    let sb = b.stats().snapshots;
    let bytes: usize = requests.iter().map(|r| payload_for(r).len()).sum();
    assert_eq!((sb.served, sb.served_bytes), (3, bytes as u64), "{sb:?}");
    assert_eq!(sb.refused_busy + sb.unavailable + sb.timed_out + sb.requests_dropped, 0);
    let json = serde_json::to_string(&a.stats()).unwrap();
    assert!(json.contains("\"snapshots\":{\"asked\":3"), "{json}");
}

#[test]
fn a_4_mib_answer_round_trips() {
    let (a, b) = pair(config(132, vec![]), 133);
    let chunk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let t0 = Instant::now();
    let id = a.ask_snapshot(&b.peer_id(), b"chunk 7".to_vec()).unwrap();
    let req = b.snapshot_requests().recv_timeout(WAIT).unwrap();
    assert_eq!(req.data, b"chunk 7".to_vec());
    req.reply.send(Some(chunk.clone())).unwrap();
    let ans = answer(&a);
    let elapsed = t0.elapsed();
    eprintln!("snapshot answer of {} bytes over loopback: {elapsed:?}", chunk.len());
    assert_eq!(ans.id, id);
    assert!(ans.data.as_ref().unwrap() == &chunk, "the 4 MiB answer differs");
    assert_eq!(b.stats().snapshots.served_bytes, 4 << 20);
    // One byte over max_snapshot_bytes is refused by B's replier, "unavailable" for A.
    a.ask_snapshot(&b.peer_id(), b"too big".to_vec()).unwrap();
    let req = b.snapshot_requests().recv_timeout(WAIT).unwrap();
    let err = req.reply.send(Some(vec![0; (4 << 20) + (64 << 10) + 1])).unwrap_err();
    assert!(err.contains("max_snapshot_bytes"), "{err}");
    assert_eq!(answer(&a).data, Err("unavailable".to_string()));
}

#[test]
fn unavailable_arrives_as_an_error() {
    let (a, b) = pair(config(134, vec![]), 135);
    let id = a.ask_snapshot(&b.peer_id(), b"a root B does not have".to_vec()).unwrap();
    let req = b.snapshot_requests().recv_timeout(WAIT).unwrap();
    req.reply.send(None).unwrap();
    let ans = answer(&a);
    assert_eq!((ans.id, ans.peer.as_str()), (id, b.peer_id().as_str()));
    let err = ans.data.unwrap_err();
    assert!(err.contains("unavailable"), "{err}");
    assert_eq!(a.stats().snapshots.failed, 1);
    assert_eq!(b.stats().snapshots.unavailable, 1);
    // A dropped replier fails the request too.
    a.ask_snapshot(&b.peer_id(), b"dropped".to_vec()).unwrap();
    drop(b.snapshot_requests().recv_timeout(WAIT).unwrap());
    assert!(answer(&a).data.is_err());
    assert!(wait_until(WAIT, || b.stats().snapshots.timed_out == 1));
}

#[test]
fn requests_over_the_per_peer_limit_are_answered_busy() {
    let mut cb = config(136, vec![]);
    cb.max_snapshot_requests_per_peer = 1;
    let (a, b) = pair(cb, 137);
    let mut ids = Vec::new();
    for i in 0..3u8 {
        ids.push(a.ask_snapshot(&b.peer_id(), vec![i]).unwrap());
    }
    // B holds the first one it gets without answering; the two others come back "busy".
    let held = b.snapshot_requests().recv_timeout(WAIT).unwrap();
    let mut busy = Vec::new();
    for _ in 0..2 {
        let ans = answer(&a);
        let err = ans.data.unwrap_err();
        assert!(err.contains("busy"), "{err}");
        busy.push(ans.id);
    }
    assert!(b.snapshot_requests().recv_timeout(Duration::from_millis(300)).is_err());
    assert!(b.stats().snapshots.refused_busy >= 1);
    assert_eq!(b.stats().snapshots.refused_busy, 2);
    // The held request is still answered, under its own id.
    let held_id = *ids.iter().find(|id| !busy.contains(id)).unwrap();
    let expected = payload_for(&held.data);
    held.reply.send(Some(expected.clone())).unwrap();
    let ans = answer(&a);
    assert_eq!((ans.id, ans.data), (held_id, Ok(expected)));
    // With the slot free again, the next request is served.
    a.ask_snapshot(&b.peer_id(), vec![9]).unwrap();
    b.snapshot_requests().recv_timeout(WAIT).unwrap().reply.send(Some(vec![9])).unwrap();
    assert_eq!(answer(&a).data, Ok(vec![9]));
}

#[test]
fn asking_a_peer_that_is_not_connected_answers_an_error() {
    let a = Gossip::start(config(138, vec![]), Arc::new(AcceptAll)).unwrap();
    // A real node, but not connected to A.
    let c = Gossip::start(config(139, vec![]), Arc::new(AcceptAll)).unwrap();
    let t0 = Instant::now();
    let id = a.ask_snapshot(&c.peer_id(), b"hello?".to_vec()).unwrap();
    let ans = answer(&a);
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert_eq!((ans.id, ans.peer), (id, c.peer_id()));
    let err = ans.data.unwrap_err();
    assert!(err.contains("not connected"), "{err}");
    // A peer id that does not parse is refused at once.
    let err = a.ask_snapshot("not a peer id", vec![]).unwrap_err();
    assert!(err.contains("not a peer id"), "{err}");
    assert!(c.snapshot_requests().try_recv().is_err());
    let s = a.stats().snapshots;
    assert_eq!((s.asked, s.failed), (1, 1), "{s:?}");
}

#[test]
fn a_request_over_the_limit_is_refused_by_ask_snapshot() {
    let (a, b) = pair(config(140, vec![]), 141);
    let err = a.ask_snapshot(&b.peer_id(), vec![0; SNAPSHOT_REQUEST_MAX + 1]).unwrap_err();
    assert!(err.contains("SNAPSHOT_REQUEST_MAX"), "{err}");
    assert_eq!(a.stats().snapshots.asked, 0);
    assert!(a.snapshot_answers().recv_timeout(Duration::from_millis(300)).is_err());
    assert!(b.snapshot_requests().try_recv().is_err());
    // Exactly the limit goes through.
    a.ask_snapshot(&b.peer_id(), vec![1; SNAPSHOT_REQUEST_MAX]).unwrap();
    let req = b.snapshot_requests().recv_timeout(WAIT).unwrap();
    assert_eq!(req.data.len(), SNAPSHOT_REQUEST_MAX);
    req.reply.send(Some(vec![2])).unwrap();
    assert_eq!(answer(&a).data, Ok(vec![2]));
}

#[test]
fn snapshot_configuration_is_checked() {
    let cfg = config(142, vec![]);
    assert_eq!(cfg.snapshot_protocol(), "/bastion/testnet/snapshot/1");
    assert_eq!(cfg.max_snapshot_bytes, (4 << 20) + (64 << 10));
    assert_eq!(cfg.max_snapshot_requests_per_peer, 2);
    let mut bad = cfg.clone();
    bad.max_snapshot_requests_per_peer = 0;
    let err = Gossip::start(bad, Arc::new(AcceptAll)).unwrap_err();
    assert!(err.contains("max_snapshot_requests_per_peer"), "{err}");
    let mut bad = cfg;
    bad.max_snapshot_bytes = 0;
    let err = Gossip::start(bad, Arc::new(AcceptAll)).unwrap_err();
    assert!(err.contains("max_snapshot_bytes"), "{err}");
}
