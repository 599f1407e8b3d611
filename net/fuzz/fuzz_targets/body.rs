//! The canonical transaction body (`postcard((nonce, action))`) on arbitrary bytes.
//!
//! Properties: decoding never panics, and anything accepted re-encodes to exactly the input.
#![no_main]

use bastion_types::tx::{decode_body, encode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((nonce, action)) = decode_body(data) {
        assert_eq!(encode_body(nonce, &action), data, "accepted body is not canonical");
    }
});
