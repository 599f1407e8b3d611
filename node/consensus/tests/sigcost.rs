#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What one leader's largest block costs a verifier in signature checks: `DEFAULT_BLOCK_TXS`
//! transactions from fresh keys (nothing cached by the ingress), verified once per backend.
//! A measurement, not a check of a bound (machine-dependent): run it with
//! `cargo test -p bastion-consensus --test sigcost -- --ignored --nocapture`.

use bastion_accel::{Backend, SigItem};
use bastion_consensus::block::DEFAULT_BLOCK_TXS;
use bastion_types::{Action, MarketId, OrderId};
use std::time::Instant;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn verifying_a_full_block_of_fresh_signatures() {
    let chain = [7u8; 32];
    let signed: Vec<_> = (0..DEFAULT_BLOCK_TXS as u64)
        .map(|i| {
            bastion_client::devnet_trader(1_000_000 + i).sign(
                &chain,
                1,
                Action::Cancel { market: MarketId(0), order: OrderId(i) },
            )
        })
        .collect();
    let messages: Vec<Vec<u8>> = signed
        .iter()
        .map(|s| {
            let (mut body, mut msg) = (Vec::new(), Vec::new());
            bastion_client::signed_message(&chain, &s.tx, &mut body, &mut msg);
            msg
        })
        .collect();
    let items: Vec<SigItem<'_>> = signed
        .iter()
        .zip(&messages)
        .map(|(s, m)| SigItem { public_key: &s.auth.public_key, signature: &s.auth.signature, message: m })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The memory side of the same block: what holding the largest block costs, and one peer's
    // account of unsolicited blocks.
    let limits = bastion_consensus::BlockLimits::default();
    let largest = bastion_consensus::relay::held_bytes(limits.max_encoded_bytes(), limits.max_txs);
    println!(
        "largest block under the default limits: {} bytes encoded, {largest} bytes held; one peer's unsolicited \
         account: {} blocks, {} bytes",
        limits.max_encoded_bytes(),
        bastion_consensus::relay::UNSOLICITED_BLOCKS_PER_PEER,
        bastion_consensus::relay::UNSOLICITED_BYTES_PER_PEER.max(largest)
    );
    for backend in [Backend::Batch, Backend::Parallel] {
        let v = bastion_accel::verifier(backend).unwrap();
        let t = Instant::now();
        let verdicts = v.verify(&items);
        let took = t.elapsed();
        assert!(verdicts.iter().all(|ok| *ok));
        println!(
            "{backend:?}: {} fresh signatures in {:.1} ms ({:.0}/s, {cores} cores)",
            items.len(),
            took.as_secs_f64() * 1e3,
            items.len() as f64 / took.as_secs_f64()
        );
    }
}
