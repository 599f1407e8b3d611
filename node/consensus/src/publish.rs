//! What a validator's application tells the outside world after it executed a finalized block:
//! the block (and its wire bytes, ready for [`crate::certified::encode_certified`]), its own
//! finalization certificate when it has one, the events and root the execution produced, and
//! the state after it (for APIs).
//!
//! The application calls [`Publisher::finalized`] on its actor, once per executed height, in
//! height order, after the block is executed and before the store's commit of that batch (a
//! publisher that acknowledges durability must wait for the commit, e.g. by the store's height).
//! It must not block: hand the data to another task (bounded queue, counted drops).

use crate::block::{ChainBlock, StateRoot};
use bastion_exchange::State;
use bastion_types::Event;

/// One executed finalized block, as handed to a [`Publisher`].
#[derive(Debug)]
pub struct Published<'a> {
    /// The block.
    pub block: &'a ChainBlock,
    /// Its wire encoding (the block channel's tag, then the block).
    pub wire: &'a bytes::Bytes,
    /// Its own encoded finalization (`Finalization<Multisig, Digest>`); `None` when it was
    /// finalized implicitly, as an ancestor of a later finalized block.
    pub certificate: Option<&'a [u8]>,
    /// What executing it produced, in order.
    pub events: &'a [Event],
    /// The state root after it.
    pub root: StateRoot,
    /// The state after it.
    pub state: &'a State,
}

/// Receives every executed finalized block of a validator (publishing to full nodes, APIs).
pub trait Publisher: Send {
    /// Called once per executed height, in order; must not block.
    fn finalized(&mut self, p: &Published<'_>);
}
