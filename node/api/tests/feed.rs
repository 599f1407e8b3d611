//! The node's feed into the API under a draining applier (regression: the chaos campaign's
//! schedule seed 7290766089257094167 took down three validators with a debug build's
//! "attempt to multiply with overflow" in `behind`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The feed's length is counted before each send, so the applier, which counts an update off
/// as it takes it, never sees it below zero: `behind` stays false while nothing is dropped,
/// however the two threads interleave.
#[test]
fn feed_length_never_wraps_while_the_applier_drains() {
    let (api, _) = start(config(), false);
    let api = Arc::new(api);
    let feeder = api.feeder();
    let mut c = Chain::new(5, 2);
    let first = c.fund();
    feeder.push(first.clone());
    wait_height(&api, first.height);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (api, stop) = (api.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let s = api.stats();
                assert!(
                    !(s.behind && s.updates_dropped == 0),
                    "behind with nothing dropped after {reads} reads: {s:?}"
                );
                reads += 1;
            }
            reads
        })
    };
    let mut last = first.height;
    for _ in 0..20_000 {
        let u = c.trade(0);
        last = u.height;
        feeder.push(u);
        if api.stats().updates_dropped > 0 {
            break;
        }
    }
    wait_height(&api, last);
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw the feed's length wrap");
    assert!(reads > 0);
}
