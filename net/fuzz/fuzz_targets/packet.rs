//! The client envelope (`version | pubkey(32) | sig(64) | body`) and the body inside it.
//!
//! Properties: decoding never panics; an accepted envelope re-encodes to exactly the input;
//! an accepted body is canonical (re-encodes to exactly its bytes) and `tx_of` agrees with
//! `decode_body`.
#![no_main]

use bastion_net::packet::{decode, encode};
use bastion_types::tx::{account_of, decode_body, encode_body, tx_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = decode(data) else { return };
    let mut out = Vec::new();
    if let Err(e) = encode(packet.public_key, packet.signature, packet.body, &mut out) {
        panic!("decoded envelope does not re-encode: {e}");
    }
    assert_eq!(out, data, "envelope round trip differs");

    let decoded = decode_body(packet.body);
    let by_tx = tx_of(packet.public_key, packet.body);
    match (decoded, by_tx) {
        (Ok((nonce, action)), Ok(tx)) => {
            assert_eq!(encode_body(nonce, &action), packet.body, "accepted body is not canonical");
            assert_eq!(tx.nonce, nonce);
            assert_eq!(tx.action, action);
            assert_eq!(tx.signer, account_of(packet.public_key));
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "decode_body and tx_of refuse differently"),
        (a, b) => panic!("decode_body and tx_of disagree: {a:?} vs {b:?}"),
    }
});
