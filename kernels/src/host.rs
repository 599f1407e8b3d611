//! The device math compiled for the host.
//!
//! `build.rs` compiles `host/host.cpp`, which includes the CUDA headers of `cuda/` (where
//! `BK_HD` expands to nothing), into a static library. [`verify`] and [`verify_batch`] call it:
//! the ed25519 ZIP-215 rule exactly as the kernel implements it, so tests compare the kernel's
//! code with `ed25519-zebra` without a GPU. [`verify_batch`] packs its items exactly as the GPU
//! backend does (see [`Packed`]) and calls the kernel's loop on the CPU.

use std::os::raw::{c_int, c_uchar, c_uint, c_ulonglong};

unsafe extern "C" {
    fn bk_host_ed25519_verify(
        pk: *const c_uchar,
        sig: *const c_uchar,
        msg: *const c_uchar,
        len: c_ulonglong,
    ) -> c_int;

    fn bk_host_ed25519_verify_prehashed_batch(
        pks: *const c_uchar,
        sigs: *const c_uchar,
        ks: *const c_uchar,
        n: c_uint,
        out: *mut c_uchar,
    );

    fn bk_host_ed25519_challenge(
        pk: *const c_uchar,
        sig: *const c_uchar,
        msg: *const c_uchar,
        len: c_ulonglong,
        k: *mut c_uchar,
    );

    fn bk_host_ed25519_verify_batch(
        pks: *const c_uchar,
        sigs: *const c_uchar,
        msgs: *const c_uchar,
        msg_offsets: *const c_uint,
        n: c_uint,
        out: *mut c_uchar,
    );
}

/// Whether `signature` is a valid ZIP-215 ed25519 signature of `message` under `public_key`,
/// computed by the kernel's math on the CPU.
pub fn verify(public_key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> bool {
    // SAFETY: `public_key` and `signature` are valid for reads of 32 and 64 bytes, `message` for
    // `message.len()` bytes (the C side reads nothing from it when the length is 0); the C
    // function only reads them, keeps no pointer, and is pure (no global state).
    let r = unsafe {
        bk_host_ed25519_verify(
            public_key.as_ptr(),
            signature.as_ptr(),
            message.as_ptr(),
            message.len() as c_ulonglong,
        )
    };
    r == 1
}

/// A batch in the kernel's layout: keys and signatures packed back to back, messages
/// concatenated with `n + 1` offsets (`message i = msgs[offsets[i]..offsets[i + 1]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed {
    /// `32 n` bytes: the public keys.
    pub pks: Vec<u8>,
    /// `64 n` bytes: the signatures.
    pub sigs: Vec<u8>,
    /// The messages, concatenated.
    pub msgs: Vec<u8>,
    /// `n + 1` offsets into `msgs`, starting at 0.
    pub msg_offsets: Vec<u32>,
}

/// Why a batch cannot be packed in the kernel's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The messages total more than `u32::MAX` bytes, or there are more than `u32::MAX` items.
    #[error("batch too large for 32-bit offsets ({items} items, {bytes} message bytes)")]
    TooLarge {
        /// Items in the batch.
        items: usize,
        /// Message bytes in the batch.
        bytes: usize,
    },
}

impl Packed {
    /// Packs `items` (public key, signature, message) in the kernel's layout.
    pub fn new(items: &[(&[u8; 32], &[u8; 64], &[u8])]) -> Result<Packed, PackError> {
        let bytes: usize = items.iter().map(|(_, _, m)| m.len()).sum();
        let too_large = PackError::TooLarge { items: items.len(), bytes };
        if u32::try_from(bytes).is_err() || u32::try_from(items.len()).is_err() {
            return Err(too_large);
        }
        let mut p = Packed {
            pks: Vec::with_capacity(32 * items.len()),
            sigs: Vec::with_capacity(64 * items.len()),
            msgs: Vec::with_capacity(bytes),
            msg_offsets: Vec::with_capacity(items.len() + 1),
        };
        p.msg_offsets.push(0);
        for (pk, sig, msg) in items {
            p.pks.extend_from_slice(&pk[..]);
            p.sigs.extend_from_slice(&sig[..]);
            p.msgs.extend_from_slice(msg);
            // Cannot fail: the total fits in u32 (checked above).
            p.msg_offsets.push(u32::try_from(p.msgs.len()).map_err(|_| too_large)?);
        }
        Ok(p)
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.msg_offsets.len().saturating_sub(1)
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies every item of `items` (public key, signature, message) with the kernel's batch
/// entry point run on the CPU, on the same packed layout ([`Packed`]) the GPU receives; `out` is
/// cleared and receives one verdict per item, in order. A batch too large for the kernel's
/// 32-bit offsets (over 4 GiB of messages) is verified item by item with [`verify`] instead.
pub fn verify_batch(items: &[(&[u8; 32], &[u8; 64], &[u8])], out: &mut Vec<bool>) {
    out.clear();
    if items.is_empty() {
        return;
    }
    let (packed, n32) = match Packed::new(items) {
        Ok(p) => match u32::try_from(p.len()) {
            Ok(n) => (p, n),
            Err(_) => return out.extend(items.iter().map(|(pk, sig, msg)| verify(pk, sig, msg))),
        },
        Err(PackError::TooLarge { .. }) => {
            return out.extend(items.iter().map(|(pk, sig, msg)| verify(pk, sig, msg)));
        }
    };
    let mut verdicts = vec![0u8; packed.len()];
    // SAFETY: `Packed::new` built `pks` with 32 n bytes, `sigs` with 64 n bytes, `msg_offsets`
    // with n + 1 non-decreasing entries ending at `msgs.len()`, so every read the C loop makes
    // (item i: pks[32 i..], sigs[64 i..], msgs[offsets[i]..offsets[i + 1]]) is in bounds;
    // `verdicts` has n bytes for its n writes. Nothing is retained after the call.
    unsafe {
        bk_host_ed25519_verify_batch(
            packed.pks.as_ptr(),
            packed.sigs.as_ptr(),
            packed.msgs.as_ptr(),
            packed.msg_offsets.as_ptr(),
            n32,
            verdicts.as_mut_ptr(),
        );
    }
    out.extend(verdicts.iter().map(|&v| v == 1));
}

/// The challenge `k = SHA-512(R || A || M) mod L` (32 bytes, little-endian) exactly as the
/// kernel computes it on the device, `R` being the signature's first half and `A` the public key.
pub fn challenge(public_key: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    // SAFETY: the inputs are valid for reads of 32, 64 and `message.len()` bytes (none when the
    // length is 0) and `k` for writes of 32; the C function keeps no pointer and has no state.
    unsafe {
        bk_host_ed25519_challenge(
            public_key.as_ptr(),
            signature.as_ptr(),
            message.as_ptr(),
            message.len() as c_ulonglong,
            k.as_mut_ptr(),
        );
    }
    k
}

/// Verifies items whose challenge `k` was computed beforehand (the GPU backend's "hash on the
/// host" mode), with the kernel `bk_ed25519_verify_prehashed_batch`'s loop run on the CPU:
/// `(public key, signature, k)`. `out` is cleared and receives one verdict per item. With
/// `k = challenge(pk, sig, msg)` (or the same value computed any other way) the verdict is that
/// of [`verify`].
pub fn verify_prehashed_batch(items: &[(&[u8; 32], &[u8; 64], &[u8; 32])], out: &mut Vec<bool>) {
    out.clear();
    for chunk in items.chunks(u32::MAX as usize) {
        let mut pks = Vec::with_capacity(32 * chunk.len());
        let mut sigs = Vec::with_capacity(64 * chunk.len());
        let mut ks = Vec::with_capacity(32 * chunk.len());
        for (pk, sig, k) in chunk {
            pks.extend_from_slice(&pk[..]);
            sigs.extend_from_slice(&sig[..]);
            ks.extend_from_slice(&k[..]);
        }
        let mut verdicts = vec![0u8; chunk.len()];
        // The chunk has at most u32::MAX items, so the count fits.
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        // SAFETY: `pks`, `sigs` and `ks` hold 32 n, 64 n and 32 n bytes for the C loop's reads of
        // item i < n; `verdicts` has n bytes for its writes. Nothing is retained after the call.
        unsafe {
            bk_host_ed25519_verify_prehashed_batch(
                pks.as_ptr(),
                sigs.as_ptr(),
                ks.as_ptr(),
                n,
                verdicts.as_mut_ptr(),
            );
        }
        out.extend(verdicts.iter().map(|&v| v == 1));
    }
}
