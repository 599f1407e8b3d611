//! The client packet envelope: one signed transaction per UDP datagram.
//!
//! ```text
//! version (1 byte, = 1) | ed25519 public key (32) | signature (64) | body (1..=MAX_BODY bytes)
//! ```
//!
//! The body is the transaction's canonical encoding, opaque here (the layer above decodes it
//! and refuses any encoding that does not re-encode to the same bytes). The signature covers
//! [`signing_message`]: a domain tag, the chain's genesis digest and the body, so a signature
//! made for another chain or another kind of message never verifies as a transaction here.
//! Decoding only checks the envelope's shape: it never panics and never allocates.

use crate::MAX_DATAGRAM;

/// The only envelope version this build reads.
pub const VERSION: u8 = 1;

/// Bytes before the body: version, public key, signature.
pub const HEADER_BYTES: usize = 1 + 32 + 64;

/// Largest body that fits one datagram.
pub const MAX_BODY: usize = MAX_DATAGRAM - HEADER_BYTES;

/// Domain tag at the start of every signed message.
pub const DOMAIN: &[u8] = b"bastion/tx/v1";

/// A decoded envelope, borrowing the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The signer's ed25519 public key (not yet checked to be a valid point).
    pub public_key: &'a [u8; 32],
    /// The signature over [`signing_message`] (not yet verified).
    pub signature: &'a [u8; 64],
    /// The transaction's canonical encoding.
    pub body: &'a [u8],
}

/// Why a datagram is not a well-formed envelope; each is counted by the ingress stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// An empty datagram.
    #[error("empty datagram")]
    Empty,
    /// An envelope version this build does not read.
    #[error("envelope version {0}, this build reads {VERSION}")]
    Version(u8),
    /// Shorter than the header plus a one-byte body.
    #[error("datagram of {0} bytes is shorter than the {HEADER_BYTES}-byte header and a body")]
    TooShort(usize),
    /// Longer than a datagram may be.
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLong(usize),
}

/// Reads the envelope of one datagram.
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>, PacketError> {
    let (&version, rest) = datagram.split_first().ok_or(PacketError::Empty)?;
    if version != VERSION {
        return Err(PacketError::Version(version));
    }
    if datagram.len() > MAX_DATAGRAM {
        return Err(PacketError::TooLong(datagram.len()));
    }
    let (public_key, rest) = rest.split_first_chunk::<32>().ok_or(PacketError::TooShort(datagram.len()))?;
    let (signature, body) = rest.split_first_chunk::<64>().ok_or(PacketError::TooShort(datagram.len()))?;
    if body.is_empty() {
        return Err(PacketError::TooShort(datagram.len()));
    }
    Ok(Packet { public_key, signature, body })
}

/// Appends the envelope of `body` signed by `public_key` to `out`.
pub fn encode(
    public_key: &[u8; 32],
    signature: &[u8; 64],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PacketError> {
    if body.is_empty() {
        return Err(PacketError::TooShort(HEADER_BYTES));
    }
    if body.len() > MAX_BODY {
        return Err(PacketError::TooLong(HEADER_BYTES + body.len()));
    }
    out.reserve(HEADER_BYTES + body.len());
    out.push(VERSION);
    out.extend_from_slice(public_key);
    out.extend_from_slice(signature);
    out.extend_from_slice(body);
    Ok(())
}

/// The message a client signs for `body` on the chain whose genesis digest is `chain`:
/// [`DOMAIN`] | `chain` | `body`, appended to `out` (cleared first).
pub fn signing_message(chain: &[u8; 32], body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(DOMAIN.len() + 32 + body.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(chain);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_every_shape_error() {
        let (pk, sig) = ([7u8; 32], [9u8; 64]);
        let mut bytes = Vec::new();
        encode(&pk, &sig, b"order", &mut bytes).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES + 5);
        let p = decode(&bytes).unwrap();
        assert_eq!((p.public_key, p.signature, p.body), (&pk, &sig, b"order".as_slice()));

        assert_eq!(decode(&[]), Err(PacketError::Empty));
        assert_eq!(decode(&[2, 0, 0]), Err(PacketError::Version(2)));
        for cut in 1..=HEADER_BYTES {
            assert_eq!(decode(&bytes[..cut]), Err(PacketError::TooShort(cut)), "cut at {cut}");
        }
        let mut long = Vec::new();
        encode(&pk, &sig, &vec![1u8; MAX_BODY], &mut long).unwrap();
        assert_eq!(long.len(), MAX_DATAGRAM);
        assert!(decode(&long).is_ok());
        long.push(0);
        assert_eq!(decode(&long), Err(PacketError::TooLong(MAX_DATAGRAM + 1)));
        assert!(encode(&pk, &sig, &vec![1u8; MAX_BODY + 1], &mut Vec::new()).is_err());
        assert!(encode(&pk, &sig, &[], &mut Vec::new()).is_err());
    }

    #[test]
    fn the_signed_message_binds_domain_chain_and_body() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        signing_message(&[1; 32], b"x", &mut a);
        signing_message(&[2; 32], b"x", &mut b);
        assert_ne!(a, b, "another chain signs another message");
        assert!(a.starts_with(DOMAIN));
        assert!(a.ends_with(b"x"));
        signing_message(&[1; 32], b"y", &mut a);
        assert_eq!(a.len(), DOMAIN.len() + 33, "the buffer is cleared first");
    }

    proptest! {
        /// Any bytes: decode returns, never panics, and what it accepts re-encodes to the same
        /// bytes (the envelope has exactly one encoding).
        #[test]
        fn any_datagram_decodes_or_is_refused(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..1400),
            versioned in any::<bool>(),
        ) {
            // Half the cases carry the right version byte, so the shape checks behind it run.
            if versioned && let Some(v) = bytes.first_mut() {
                *v = VERSION;
            }
            if let Ok(p) = decode(&bytes) {
                let mut again = Vec::new();
                encode(p.public_key, p.signature, p.body, &mut again).unwrap();
                prop_assert_eq!(again, bytes);
            }
        }
    }
}
