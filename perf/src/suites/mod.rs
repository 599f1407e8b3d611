//! The registry of suites. A capability adds its suite here: one module, one entry.

use crate::harness::{Ctx, Report};

pub mod consensus;
pub mod ingress;
pub mod margin;
pub mod matching;
pub mod pricing;
pub mod sigverify;
pub mod storage;

/// A named suite.
pub struct Suite {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Ctx, &mut Report) -> Result<(), String>,
}

pub const ALL: &[Suite] = &[
    Suite {
        name: "matching",
        about: "order book on the exchange-core mix vs a crates.io order book",
        run: matching::run,
    },
    Suite {
        name: "margin",
        about: "re-evaluate 1M cross-margin accounts after a price move",
        run: margin::run,
    },
    Suite { name: "pricing", about: "fixed-point option pricing vs plain f64", run: pricing::run },
    Suite {
        name: "sigverify",
        about: "ed25519 batch verification backends vs dalek single verify",
        run: sigverify::run,
    },
    Suite {
        name: "consensus",
        about: "finality latency in the deterministic 4-validator simulation, 1 ms and 50 ms links",
        run: consensus::run,
    },
    Suite {
        name: "storage",
        about: "block log commit vs redb, 1M-account recovery, snapshot throughput and stall",
        run: storage::run,
    },
    Suite {
        name: "ingress",
        about: "UDP packets/s on one receiving thread: recvmmsg and io_uring backends vs a recv_from loop",
        run: ingress::run,
    },
];
