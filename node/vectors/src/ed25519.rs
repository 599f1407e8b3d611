//! Ed25519 edge cases shared by the differential tests of every verification backend (the CPU
//! backends in `accel`, the GPU kernel's host build in `kernels`): the group order, the
//! basepoint, small-order and non-canonical point encodings, and S + L.

/// The group order L, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The basepoint B, compressed.
pub const BASEPOINT: [u8; 32] = [
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
];

/// 32 bytes from 64 hex digits (panics otherwise: test data).
pub fn h32(s: &str) -> [u8; 32] {
    assert_eq!(s.len(), 64, "{s}");
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodings that decode to points of order 1, 2, 4 or 8: the eight canonical ones and the
/// six non-canonical ones (y >= p, or x = 0 with the sign bit set). ZIP-215 decodes all of them.
pub fn small_order_encodings() -> Vec<[u8; 32]> {
    [
        // canonical
        "0100000000000000000000000000000000000000000000000000000000000000", // identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
        "0000000000000000000000000000000000000000000000000000000000000000", // order 4
        "0000000000000000000000000000000000000000000000000000000000000080", // order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
        // non-canonical
        "0100000000000000000000000000000000000000000000000000000000000080", // y = 1, sign set
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = -1, sign set
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p (= 0)
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p, sign set
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1 (= 1)
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p + 1, sign set
    ]
    .iter()
    .map(|s| h32(s))
    .collect()
}

/// Every encoding of y = p + k (k = 0..=18, the only y >= p that fit in 255 bits), with either
/// sign bit, plus near-misses of the small-order encodings; some decode, some do not.
pub fn non_canonical_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for k in 0..19u8 {
        let mut e = [0xffu8; 32];
        e[0] = 0xed + k;
        e[31] = 0x7f;
        out.push(e);
        e[31] = 0xff;
        out.push(e);
    }
    // Byte patterns libsodium's blocklist carries (y - 19 of the order-8 points).
    out.push(h32("13e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"));
    out.push(h32("b4176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"));
    out
}

/// S + L (little-endian, no overflow: S < L < 2^253).
pub fn add_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}
