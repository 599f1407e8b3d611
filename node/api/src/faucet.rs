//! The devnet faucet: authority-signed deposits, re-signed with a fresh nonce when another
//! signer of the authority key (the devnet's load generator) took the nonce first.

use crate::rest::ApiError;
use crate::views::hex;
use crate::{FaucetConfig, Shared, lock, write};
use bastion_exchange::State;
use bastion_types::{AccountId, Action};
use serde_json::{Value, json};

/// Times one faucet deposit is re-signed before the faucet gives up on it.
pub(crate) const RESIGN_MAX: u32 = 8;
/// Faucet deposits waiting for inclusion at most (more: 503, retry later).
pub(crate) const PENDING_MAX: usize = 1_024;

#[derive(Debug)]
struct Entry {
    to: AccountId,
    nonce: u64,
    hash: [u8; 32],
    attempts: u32,
}

/// A deposit re-signed with a fresh nonce, to hand to the network.
#[derive(Debug)]
pub(crate) enum Resign {
    /// Submit `packet` (hash `new`), which replaces `old`.
    Again { old: [u8; 32], new: [u8; 32], packet: Vec<u8> },
    /// Gave up on `hash` after [`RESIGN_MAX`] attempts.
    GaveUp { hash: [u8; 32] },
}

#[derive(Debug)]
pub(crate) struct Faucet {
    cfg: FaucetConfig,
    pending: Vec<Entry>,
}

impl Faucet {
    pub(crate) fn new(cfg: FaucetConfig) -> Self {
        Faucet { cfg, pending: Vec::new() }
    }

    fn committed(&self, state: &State) -> u64 {
        state.accounts.get(&self.cfg.authority.account()).map(|a| a.nonce).unwrap_or(0)
    }

    fn next_nonce(&self, committed: u64) -> u64 {
        self.pending.iter().map(|e| e.nonce).max().unwrap_or(0).max(committed).saturating_add(1)
    }

    /// Signs a deposit to `to` with the next authority nonce; the packet and its hash.
    fn sign(
        &mut self,
        chain: &[u8; 32],
        state: &State,
        to: AccountId,
        attempts: u32,
    ) -> Option<(Vec<u8>, [u8; 32])> {
        let nonce = self.next_nonce(self.committed(state));
        let s = self.cfg.authority.sign(
            chain,
            nonce,
            Action::Deposit { to, asset: self.cfg.asset, amount: self.cfg.amount },
        );
        let packet = s.packet().ok()?;
        let hash = s.hash();
        self.pending.push(Entry { to, nonce, hash, attempts });
        Some((packet, hash))
    }

    /// After a block: forgets included deposits and re-signs those whose nonce was taken.
    pub(crate) fn on_update(
        &mut self,
        chain: &[u8; 32],
        state: &State,
        included: &[[u8; 32]],
    ) -> Vec<Resign> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.pending.retain(|e| !included.contains(&e.hash));
        let committed = self.committed(state);
        let (taken, keep): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.pending).into_iter().partition(|e| e.nonce <= committed);
        self.pending = keep;
        let mut out = Vec::new();
        for e in taken {
            if e.attempts >= RESIGN_MAX {
                out.push(Resign::GaveUp { hash: e.hash });
                continue;
            }
            match self.sign(chain, state, e.to, e.attempts + 1) {
                Some((packet, new)) => out.push(Resign::Again { old: e.hash, new, packet }),
                None => out.push(Resign::GaveUp { hash: e.hash }),
            }
        }
        out
    }
}

/// Hands re-signed deposits to the network and records what stands for what.
pub(crate) fn resubmit(shared: &Shared, list: Vec<Resign>) {
    for r in list {
        match r {
            Resign::Again { old, new, packet } => {
                let res = shared.submit.submit(packet);
                let mut ix = write(&shared.index);
                ix.add_alias(old, new);
                match res {
                    Ok(()) => ix.add_pending(new),
                    Err(e) => ix.add_refused(new, e.code, &e.message),
                }
            }
            Resign::GaveUp { hash } => write(&shared.index).add_refused(
                hash,
                "faucet_gave_up",
                &format!("the authority nonce was taken {RESIGN_MAX} times in a row; ask the faucet again"),
            ),
        }
    }
}

/// `POST /v1/faucet` for `to`.
pub(crate) fn request(shared: &Shared, to: AccountId) -> Result<Value, ApiError> {
    let not_devnet = || ApiError::new(403, "not_devnet", "the faucet exists only on a devnet");
    let faucet = shared.faucet.as_ref().ok_or_else(not_devnet)?;
    if !shared.chain.devnet {
        return Err(not_devnet());
    }
    let head = crate::read(&shared.index).head.clone().ok_or_else(ApiError::no_state)?;
    if !head.state.devnet {
        return Err(not_devnet());
    }
    let (packet, hash) = {
        let mut f = lock(faucet);
        if f.pending.len() >= PENDING_MAX {
            return Err(ApiError::new(
                503,
                "faucet_busy",
                "too many faucet deposits are waiting; retry in a few seconds",
            ));
        }
        f.sign(&shared.chain.genesis_digest, &head.state, to, 0)
            .ok_or_else(|| ApiError::new(500, "faucet_sign", "could not encode the deposit"))?
    };
    match shared.submit.submit(packet) {
        Ok(()) => {
            write(&shared.index).add_pending(hash);
            Ok(json!({"hash": hex(&hash), "account": to.0.to_string()}))
        }
        Err(e) => {
            lock(faucet).pending.retain(|x| x.hash != hash);
            write(&shared.index).add_refused(hash, e.code, &e.message);
            Err(ApiError::from_submit(&e))
        }
    }
}
