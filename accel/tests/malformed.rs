//! Malformed input gets a typed error naming what is wrong, never a panic: hex fields of the
//! wrong length, odd length, non-hex characters, `0x` prefixes, non-ASCII text; unknown and
//! unavailable backends; empty and degenerate batches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_accel::{
    AccelError, Auto, Backend, OwnedSigItem, PUBLIC_KEY_LEN, SIGNATURE_LEN, SigItem, Verifier, calibrate,
    verifier, verify_one,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

const PK_FIELD: &str = "public key";
const SIG_FIELD: &str = "signature";
const MSG_FIELD: &str = "message";

/// RFC 8032 test 2 (one-byte message).
const PK: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const MSG: &str = "72";
const SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                   085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `from_hex`, turning a panic into a test failure that names the input.
fn parse(pk: &str, msg: &str, sig: &str) -> Result<OwnedSigItem, AccelError> {
    match catch_unwind(AssertUnwindSafe(|| OwnedSigItem::from_hex(pk, msg, sig))) {
        Ok(r) => r,
        Err(_) => panic!("from_hex panicked on pk={pk:?} msg={msg:?} sig={sig:?}"),
    }
}

#[track_caller]
fn expect_hex_error(r: Result<OwnedSigItem, AccelError>, field: &str) {
    match r {
        Err(e @ AccelError::Hex { field: f, .. }) => {
            assert_eq!(f, field, "wrong field named: {e}");
            assert!(e.to_string().contains(field), "message does not name {field}: {e}");
        }
        other => panic!("expected AccelError::Hex for {field}, got {other:?}"),
    }
}

#[track_caller]
fn expect_length_error(r: Result<OwnedSigItem, AccelError>, field: &str, expected: usize, got: usize) {
    match r {
        Err(e @ AccelError::Length { .. }) => {
            let AccelError::Length { field: f, expected: x, got: g } = &e else { unreachable!() };
            assert_eq!((*f, *x, *g), (field, expected, got), "{e}");
            assert!(e.to_string().contains(field), "message does not name {field}: {e}");
        }
        other => panic!("expected AccelError::Length for {field} ({got} bytes), got {other:?}"),
    }
}

#[test]
fn well_formed_hex_parses() {
    let item = parse(PK, MSG, SIG).unwrap();
    assert_eq!(hex(&item.public_key), PK);
    assert_eq!(hex(&item.signature), SIG);
    assert_eq!(item.message, vec![0x72]);
    assert!(verify_one(&item.as_item()), "RFC 8032 test 2 must verify");

    // Upper case, mixed case and surrounding whitespace give the same item.
    let upper = parse(&PK.to_uppercase(), &MSG.to_uppercase(), &SIG.to_uppercase()).unwrap();
    assert_eq!(upper, item);
    let mixed: String =
        SIG.chars().enumerate().map(|(i, c)| if i % 3 == 0 { c.to_ascii_uppercase() } else { c }).collect();
    assert_eq!(parse(&format!("  {PK}\n"), &format!("\t{MSG} "), &format!("\r\n{mixed}\t")).unwrap(), item);

    // The empty message is a message.
    let empty = parse(PK, "", SIG).unwrap();
    assert!(empty.message.is_empty());
    assert!(!verify_one(&empty.as_item()), "signature over 0x72 must not verify the empty message");
    assert_eq!(parse(PK, "   ", SIG).unwrap().message, Vec::<u8>::new());
}

#[test]
fn wrong_lengths_are_length_errors_naming_the_field() {
    let sig = SIG;
    for n in [0usize, 1, 16, 31, 33, 64] {
        let pk = "ab".repeat(n);
        expect_length_error(parse(&pk, MSG, sig), PK_FIELD, PUBLIC_KEY_LEN, n);
    }
    for n in [0usize, 1, 32, 63, 65, 128] {
        let s = "cd".repeat(n);
        expect_length_error(parse(PK, MSG, &s), SIG_FIELD, SIGNATURE_LEN, n);
    }
    // Whitespace only is an empty field.
    expect_length_error(parse("  \n", MSG, sig), PK_FIELD, PUBLIC_KEY_LEN, 0);
    expect_length_error(parse(PK, MSG, "\t"), SIG_FIELD, SIGNATURE_LEN, 0);
    // Key and signature swapped.
    expect_length_error(parse(SIG, MSG, PK), PK_FIELD, PUBLIC_KEY_LEN, SIGNATURE_LEN);
}

#[test]
fn non_hex_is_a_hex_error_naming_the_field() {
    let bad_texts: Vec<String> = vec![
        // odd length
        PK[..63].to_owned(),
        format!("{PK}0"),
        "a".to_owned(),
        // non-hex characters
        format!("zz{}", &PK[2..]),
        format!("{}g0", &PK[..62]),
        format!("{}-1", &PK[..62]),
        // 0x prefix (not accepted) in place of and in addition to two digits
        format!("0x{}", &PK[2..]),
        format!("0x{PK}"),
        format!("0X{PK}"),
        // whitespace inside
        format!("{} {}", &PK[..31], &PK[32..]),
        format!("{} {}", &PK[..32], &PK[33..]),
        // non-ASCII: multi-byte characters where digits belong (no slicing inside a char)
        format!("é{}", &PK[2..]),
        format!("{}€", &PK[..61]),
        "é".repeat(32),
        "日本".repeat(16),
        format!("{}\u{0}\u{0}", &PK[..62]),
        // a sign, a base-64 key
        format!("+{}", &PK[1..]),
        "PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=".to_owned(),
    ];
    for text in &bad_texts {
        expect_hex_error(parse(text, MSG, SIG), PK_FIELD);
        // The same text as a signature (lengthened where needed so only its hex is wrong).
        let sig_text = format!("{text}{}", &SIG[..64]);
        expect_hex_error(parse(PK, MSG, &sig_text), SIG_FIELD);
        expect_hex_error(parse(PK, text, SIG), MSG_FIELD);
    }
    expect_hex_error(parse(PK, "7", SIG), MSG_FIELD);
    expect_hex_error(parse(PK, "0x72", SIG), MSG_FIELD);
    expect_hex_error(parse(PK, "xyz1", SIG), MSG_FIELD);
}

/// Random text fed to `from_hex`, at most one field malformed so the right error is unique:
/// never a panic, and the verdict of a simple model.
#[test]
fn random_text_never_panics_and_gets_the_right_error() {
    let seed = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7_u64);
    eprintln!("malformed: seed {seed}; replay with BASTION_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    const ALPHABET: &[&str] = &[
        "0", "1", "9", "a", "f", "A", "F", "g", "G", "x", "X", " ", "\t", "\n", "-", "+", "é", "€", "\u{0}",
        "\u{7f}", "ÿ", "𝟘", "\u{a0}", "\u{2003}",
    ];
    let digits = b"0123456789abcdefABCDEF";
    let (mut oks, mut hex_errs, mut len_errs) = (0, 0, 0);
    for round in 0..3000 {
        let mut fields = [PK.to_owned(), MSG.to_owned(), SIG.to_owned()];
        let which = rng.random_range(0..3);
        let text: String = match rng.random_range(0..4) {
            // random characters, mostly hex digits
            0 | 1 => (0..rng.random_range(0..150))
                .map(|_| {
                    if rng.random_bool(0.9) {
                        char::from(digits[rng.random_range(0..digits.len())]).to_string()
                    } else {
                        ALPHABET[rng.random_range(0..ALPHABET.len())].to_owned()
                    }
                })
                .collect(),
            // well-formed hex of a random length
            2 => (0..rng.random_range(0..80)).map(|_| format!("{:02X}", rng.random::<u8>())).collect(),
            // the right field with one character replaced
            _ => {
                let mut chars: Vec<String> = fields[which].chars().map(String::from).collect();
                if !chars.is_empty() {
                    let i = rng.random_range(0..chars.len());
                    chars[i] = ALPHABET[rng.random_range(0..ALPHABET.len())].to_owned();
                }
                chars.concat()
            }
        };
        fields[which] = text;
        let [pk, msg, sig] = &fields;
        let got = parse(pk, msg, sig);

        // The model: trim, then even-length ASCII hex, then the length.
        let t = fields[which].trim();
        let is_hex = t.len().is_multiple_of(2) && t.bytes().all(|b| b.is_ascii_hexdigit());
        let field = [PK_FIELD, MSG_FIELD, SIG_FIELD][which];
        let ctx = format!("round {round} (seed {seed}): pk={pk:?} msg={msg:?} sig={sig:?}");
        if !is_hex {
            hex_errs += 1;
            match got {
                Err(AccelError::Hex { field: f, .. }) => assert_eq!(f, field, "{ctx}"),
                other => panic!("{ctx}: expected Hex error for {field}, got {other:?}"),
            }
            continue;
        }
        let n = t.len() / 2;
        let want_len = match which {
            0 => Some(PUBLIC_KEY_LEN),
            2 => Some(SIGNATURE_LEN),
            _ => None,
        };
        match want_len {
            Some(expected) if n != expected => {
                len_errs += 1;
                match got {
                    Err(AccelError::Length { field: f, expected: x, got: g }) => {
                        assert_eq!((f, x, g), (field, expected, n), "{ctx}")
                    }
                    other => panic!("{ctx}: expected Length error for {field}, got {other:?}"),
                }
            }
            _ => {
                oks += 1;
                let item = match got {
                    Ok(item) => item,
                    Err(e) => panic!("{ctx}: well-formed input refused: {e:?}"),
                };
                let bytes: Vec<u8> =
                    (0..n).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap()).collect();
                let parsed: &[u8] = match which {
                    0 => &item.public_key,
                    1 => &item.message,
                    _ => &item.signature,
                };
                assert_eq!(parsed, &bytes[..], "{ctx}");
            }
        }
    }
    eprintln!("malformed: {oks} parsed, {hex_errs} hex errors, {len_errs} length errors");
    assert!(oks > 100 && hex_errs > 100 && len_errs > 100, "fuzz did not cover all outcomes");
}

#[test]
fn backend_names() {
    for b in [Backend::Scalar, Backend::Batch, Backend::Parallel, Backend::Gpu] {
        assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        assert_eq!(b.to_string(), b.name());
    }
    assert_eq!("gpu".parse::<Backend>().unwrap(), Backend::Gpu);
    assert_eq!(Backend::CPU.to_vec(), vec![Backend::Scalar, Backend::Batch, Backend::Parallel]);
    for bad in ["nope", "", "  ", "scalarx", "gpu0", "cpu", "scalar,batch"] {
        match bad.parse::<Backend>() {
            Err(e @ AccelError::UnknownBackend(_)) => {
                let AccelError::UnknownBackend(s) = &e else { unreachable!() };
                assert_eq!(s, bad);
                assert!(e.to_string().contains("scalar"), "error should list the backends: {e}");
            }
            other => panic!("{bad:?}: expected UnknownBackend, got {other:?}"),
        }
    }
}

#[test]
fn gpu_is_unavailable_without_a_gpu_cpu_backends_always_are() {
    match verifier(Backend::Gpu) {
        Err(e @ AccelError::Unavailable { backend: Backend::Gpu, .. }) => {
            let AccelError::Unavailable { reason, .. } = &e else { unreachable!() };
            assert!(!reason.is_empty());
            assert!(e.to_string().contains("gpu"), "{e}");
        }
        Err(other) => panic!("expected Unavailable {{ backend: Gpu }}, got {other:?}"),
        // On a machine where a GPU opens, the backend is real and says so.
        Ok(v) => {
            assert!(bastion_accel::gpu_probe(0).is_ok(), "verifier(Gpu) opened without a GPU");
            assert_eq!(v.backend(), Backend::Gpu);
        }
    }
    for b in Backend::CPU {
        assert_eq!(verifier(b).unwrap().backend(), b);
    }
}

fn all_verifiers() -> Vec<Box<dyn Verifier>> {
    let mut vs: Vec<Box<dyn Verifier>> = Backend::CPU.iter().map(|&b| verifier(b).unwrap()).collect();
    vs.push(Box::new(Auto::new(&calibrate(Duration::from_millis(30)))));
    vs
}

#[test]
fn empty_batch_gives_empty_verdicts() {
    for v in all_verifiers() {
        assert!(v.verify(&[]).is_empty(), "{}", v.backend());
        let mut out = vec![true, false, true];
        v.verify_into(&[], &mut out);
        assert!(out.is_empty(), "{}: verify_into must clear its output", v.backend());
    }
}

/// Degenerate byte patterns never panic and get the reference verdict on every backend; the
/// all-zero item (A and R the order-4 point, S = 0) is valid under ZIP-215.
#[test]
fn degenerate_items() {
    let mut owned = Vec::new();
    for pk_byte in [0x00u8, 0x01, 0x7f, 0x80, 0xec, 0xed, 0xff] {
        for r_byte in [0x00u8, 0x01, 0xff] {
            for s_byte in [0x00u8, 0x01, 0x10, 0xff] {
                let mut signature = [r_byte; 64];
                signature[32..].fill(s_byte);
                for message in [Vec::new(), vec![0u8; 1], vec![0xa5; 70_000]] {
                    owned.push(OwnedSigItem { public_key: [pk_byte; 32], signature, message });
                }
            }
        }
    }
    let items: Vec<SigItem<'_>> = owned.iter().map(OwnedSigItem::as_item).collect();
    let reference: Vec<bool> = items.iter().map(verify_one).collect();
    let zero = OwnedSigItem { public_key: [0; 32], signature: [0; 64], message: Vec::new() };
    assert!(verify_one(&zero.as_item()), "ZIP-215 accepts A = R = (order-4 point), S = 0");
    // S = 0xff.. and S = 0x10.. are >= L: rejected whatever A and R are.
    for (o, r) in owned.iter().zip(&reference) {
        if o.signature[32] >= 0x10 {
            assert!(!r, "S >= L accepted: pk={} sig={}", hex(&o.public_key), hex(&o.signature));
        }
    }
    assert!(reference.iter().any(|r| *r) && reference.iter().any(|r| !*r));
    for v in all_verifiers() {
        assert_eq!(v.verify(&items), reference, "{}", v.backend());
        let singles: Vec<bool> = items.iter().map(|it| v.verify(std::slice::from_ref(it))[0]).collect();
        assert_eq!(singles, reference, "{} one by one", v.backend());
    }
}
