#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A validator down for longer than the blocks its peers keep in memory restarts from a pruned
//! block log (its chain of digests rebuilt from the log's links) and catches up by backfill:
//! range requests that peers answer from their own block logs.

use bastion_consensus::sim::{Crash, Run, check, link, seeds, simulate};
use commonware_utils::probability;

#[test]
fn restart_from_a_pruned_log_and_backfill_past_the_in_memory_window() {
    let target = 215;
    let ledgers = simulate(Run {
        // Snapshots every 40 blocks with 3 kept: at 130 the crashed validator's log is pruned
        // below its oldest kept snapshot and it restarts from a snapshot; the others then go
        // about 70 heights further, beyond the 64 finalized blocks anyone keeps in memory (so
        // catching up needs their block logs) but within what their logs keep (80-120
        // heights; beyond that a validator would need state sync, which is not built).
        crash: Some(Crash { validator: 2, at: 130, others_reach: 205 }),
        ..Run::new(4, seeds(31), link(5, 2, probability!(1.0)), target)
    });
    check(&ledgers, target);
}
