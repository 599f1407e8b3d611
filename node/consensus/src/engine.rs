//! One place that configures commonware's Simplex engine for Bastion, shared by the production
//! node and the deterministic simulation, so both run the same consensus parameters.

use crate::{Mailbox, Reporter, spec::Multisig};
use commonware_consensus::{
    simplex::{self, ForwardPolicy, SkipBudget, SkipPolicy, elector::RoundRobin},
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{Sha256, ed25519, sha256::Digest};
use commonware_p2p::Blocker;
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_utils::{NZU16, NZUsize};
use serde::{Deserialize, Serialize};
use std::{num::NonZeroU64, time::Duration};

/// Consensus timing, in milliseconds (the `[consensus]` table of a node's config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How long a validator waits for the view's leader to propose before voting to skip it.
    pub leader_timeout_ms: NonZeroU64,
    /// How long it waits for a notarized proposal to be certified (executable).
    pub certification_timeout_ms: NonZeroU64,
    /// How often it rebroadcasts its skip vote while a view stays stuck.
    pub timeout_retry_ms: NonZeroU64,
    /// How long a request for missing certificates waits for a peer.
    pub fetch_timeout_ms: NonZeroU64,
    /// How long to wait before retrying a failed fetch.
    pub fetch_retry_delay_ms: NonZeroU64,
    /// A leader that missed its views this long ago is skipped without waiting for it.
    pub skip_timeout_ms: NonZeroU64,
}

const fn nz(v: u64) -> NonZeroU64 {
    match NonZeroU64::new(v) {
        Some(v) => v,
        None => NonZeroU64::MIN,
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            leader_timeout_ms: nz(1_000),
            certification_timeout_ms: nz(2_000),
            timeout_retry_ms: nz(1_000),
            fetch_timeout_ms: nz(1_000),
            fetch_retry_delay_ms: nz(100),
            skip_timeout_ms: nz(10_000),
        }
    }
}

fn ms(v: NonZeroU64) -> Duration {
    Duration::from_millis(v.get())
}

/// The Simplex configuration Bastion runs: bls12381 multisig certificates, round-robin leaders,
/// the application as automaton, relay and reporter, and the journal in `partition` of the
/// runtime's storage (the node's data dir in production).
#[allow(clippy::type_complexity)]
pub fn config<B: Blocker<PublicKey = ed25519::PublicKey>>(
    scheme: Multisig,
    blocker: B,
    mailbox: Mailbox<ed25519::PublicKey>,
    reporter: Reporter<Multisig, ed25519::PublicKey>,
    floor: Digest,
    partition: String,
    t: &Timeouts,
) -> simplex::Config<
    Multisig,
    RoundRobin<Sha256>,
    B,
    Digest,
    Mailbox<ed25519::PublicKey>,
    Mailbox<ed25519::PublicKey>,
    Reporter<Multisig, ed25519::PublicKey>,
    Sequential,
> {
    simplex::Config {
        scheme,
        elector: RoundRobin::<Sha256>::default(),
        blocker,
        automaton: mailbox.clone(),
        relay: mailbox,
        reporter,
        strategy: Sequential,
        partition,
        mailbox_size: NZUsize!(1024),
        epoch: Epoch::new(0),
        floor: simplex::Floor::Genesis(floor),
        leader_timeout: ms(t.leader_timeout_ms),
        certification_timeout: ms(t.certification_timeout_ms),
        timeout_retry: ms(t.timeout_retry_ms),
        fetch_timeout: commonware_utils::NonZeroDuration::new(ms(t.fetch_timeout_ms))
            .unwrap_or(commonware_utils::NZDuration!(Duration::from_secs(1))),
        fetch_retry_delay: ms(t.fetch_retry_delay_ms),
        view_retention: ViewDelta::new(10),
        skip: SkipPolicy::Enabled { timeout: ms(t.skip_timeout_ms), budget: SkipBudget::Participants },
        replay_buffer: NZUsize!(1024 * 1024),
        write_buffer: NZUsize!(1024 * 1024),
        page_cache: CacheRef::new(NZU16!(1024), NZUsize!(10)),
        forward: ForwardPolicy::SilentVoters,
        track_historical_votes: false,
    }
}
