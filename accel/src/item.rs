//! Signature items: borrowed for the pipeline, owned for files, tests and the CLI.

use crate::AccelError;

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature (R || S).
pub const SIGNATURE_LEN: usize = 64;

/// One signature to check. Borrowed: the pipeline's frames own the bytes.
#[derive(Clone, Copy, Debug)]
pub struct SigItem<'a> {
    /// The signer's public key `A`.
    pub public_key: &'a [u8; PUBLIC_KEY_LEN],
    /// `R || S`.
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// The signed message.
    pub message: &'a [u8],
}

/// An owned signature item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedSigItem {
    /// The signer's public key `A`.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// `R || S`.
    pub signature: [u8; SIGNATURE_LEN],
    /// The signed message.
    pub message: Vec<u8>,
}

impl OwnedSigItem {
    /// Borrows as a [`SigItem`].
    pub fn as_item(&self) -> SigItem<'_> {
        SigItem { public_key: &self.public_key, signature: &self.signature, message: &self.message }
    }

    /// Parses hex fields (surrounding whitespace ignored, either case, no `0x` prefix). A wrong
    /// length or a non-hex character is a typed error naming the field.
    pub fn from_hex(public_key: &str, message: &str, signature: &str) -> Result<OwnedSigItem, AccelError> {
        let pk = decode_hex("public key", public_key)?;
        let sig = decode_hex("signature", signature)?;
        let message = decode_hex("message", message)?;
        let public_key: [u8; PUBLIC_KEY_LEN] = pk.as_slice().try_into().map_err(|_| AccelError::Length {
            field: "public key",
            expected: PUBLIC_KEY_LEN,
            got: pk.len(),
        })?;
        let signature: [u8; SIGNATURE_LEN] = sig.as_slice().try_into().map_err(|_| AccelError::Length {
            field: "signature",
            expected: SIGNATURE_LEN,
            got: sig.len(),
        })?;
        Ok(OwnedSigItem { public_key, signature, message })
    }
}

/// Decodes hex, naming `field` in errors.
pub(crate) fn decode_hex(field: &'static str, text: &str) -> Result<Vec<u8>, AccelError> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return Err(AccelError::Hex { field, reason: format!("odd number of digits ({})", text.len()) });
    }
    let digit = |c: u8, at: usize| -> Result<u8, AccelError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(AccelError::Hex {
                field,
                reason: format!("character {:?} at position {at}", char::from(c)),
            }),
        }
    };
    text.as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| Ok((digit(pair[0], 2 * i)? << 4) | digit(pair[1], 2 * i + 1)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("x", " 00ff10Ab ").unwrap(), vec![0, 255, 16, 171]);
        assert!(matches!(decode_hex("x", "abc"), Err(AccelError::Hex { .. })));
        assert!(matches!(decode_hex("x", "zz"), Err(AccelError::Hex { .. })));
        assert!(matches!(decode_hex("x", "0x00"), Err(AccelError::Hex { .. })));
        assert_eq!(decode_hex("x", "").unwrap(), Vec::<u8>::new());
    }
}
