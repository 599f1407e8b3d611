//! The exchange's portfolio screen, once installed on a store, stays on its state whatever
//! replaces that state: a block executed here, a speculative state adopted from consensus, a
//! state installed by state sync. It is not state: roots are the same with or without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{
    Genesis, PortfolioGrid, PortfolioScreen, ScreenError, ScreenHandle, ScreenOutput, State,
};
use bastion_store::{Store, StoreConfig};
use std::sync::Arc;

struct Never;

impl PortfolioScreen for Never {
    fn name(&self) -> String {
        "never".into()
    }

    fn screen(&self, _: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        Err(ScreenError("never".into()))
    }
}

#[test]
fn the_screen_survives_execute_adopt_and_install_synced() {
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::devnet();
    let (mut store, _) = Store::open(dir.path(), &g, StoreConfig::default()).unwrap();
    let handle = ScreenHandle::new(Arc::new(Never), 1);
    store.set_portfolio_screen(Some(handle.clone()));
    let same = |s: &State| s.portfolio_screen().is_some_and(|h| Arc::ptr_eq(h.stats(), handle.stats()));

    let mut w = Workload::new(3, 20, PathKind::Calm, &g);
    let funding = w.funding_txs(1_000_000_000);
    let b1 = w.block_with(funding);
    let mut plain = State::from_genesis(&g).unwrap();
    let out = store.apply(&b1).unwrap();
    assert_eq!(out.root, plain.apply_block(&b1).unwrap().root, "the screen changes no root");
    assert!(same(store.state()));

    // Consensus executes speculatively on a clone and hands the state over: even a state that
    // lost the screen gets the store's back.
    let b2 = w.next_block(store.state(), 10);
    let mut next = store.state().clone();
    next.set_portfolio_screen(None);
    let out = next.apply_block(&b2).unwrap();
    store.adopt(&b2, &[0; 32], &[], next, out).unwrap();
    store.commit().unwrap();
    assert!(same(store.state()));

    // State sync installs a state loaded from an image, which carries no screen.
    let image = store.state().view().to_image_bytes().unwrap();
    let synced = State::from_image_bytes(&image).unwrap();
    assert!(synced.portfolio_screen().is_none());
    store.install_synced(synced, &image).unwrap();
    assert!(same(store.state()));

    store.set_portfolio_screen(None);
    assert!(store.state().portfolio_screen().is_none());
}
