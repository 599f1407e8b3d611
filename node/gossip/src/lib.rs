//! Bastion's public network (issue 17): libp2p gossipsub topics `blocks` and `txs`, and
//! request-response backfill of finalized blocks by height range.
