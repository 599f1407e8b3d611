//! Blocks from peers: `ChainBlock::decode_cfg` with the default limits.
//!
//! Properties: decoding never panics, and anything accepted re-encodes to exactly the input
//! (the body is canonical postcard, the witness has one key and signature per transaction, and
//! no trailing bytes are accepted). Build with `--features block` (pulls in commonware).
#![no_main]

use bastion_consensus::{BlockLimits, ChainBlock};
use commonware_codec::{Decode, Encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(block) = ChainBlock::decode_cfg(bytes, &BlockLimits::default()) {
        let again = block.encode();
        assert_eq!(again.as_ref(), data, "accepted block does not re-encode to the same bytes");
        let back = ChainBlock::decode_cfg(again, &BlockLimits::default());
        assert_eq!(back.ok().as_ref(), Some(&block), "re-encoded block does not decode to itself");
    }
});
