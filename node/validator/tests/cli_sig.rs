//! `bastion sig verify` and `bastion sig verify-file` end to end through the built binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_zebra::SigningKey;
use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn bastion(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bastion")).args(args).output().expect("cannot run bastion");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid (pub_key, message, signature) in hex, from a fixed seed.
fn signed(seed: u8, message: &[u8]) -> (String, String, String) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let pk: [u8; 32] = sk.verification_key().into();
    let sig = sk.sign(message).to_bytes();
    (hex(&pk), hex(message), hex(&sig))
}

fn verify(backend: &str, pk: &str, msg: &str, sig: &str) -> Run {
    bastion(&["sig", "verify", "--backend", backend, "--pk", pk, "--msg", msg, "--sig", sig])
}

const CPU: [&str; 4] = ["scalar", "batch", "parallel", "auto"];

#[test]
fn valid_signature_is_v_on_every_backend() {
    let (pk, msg, sig) = signed(7, b"transfer 10 to bob");
    let r = verify("all", &pk, &msg, &sig);
    assert_eq!(r.code, Some(0), "stdout: {} stderr: {}", r.stdout, r.stderr);
    for b in CPU {
        assert!(r.stdout.lines().any(|l| l == format!("V {b}")), "{b} missing or not V: {}", r.stdout);
    }
    assert!(!r.stdout.contains('X'), "{}", r.stdout);
    for b in CPU {
        let r = verify(b, &pk, &msg, &sig);
        assert_eq!(r.code, Some(0), "{b}: {}", r.stderr);
        assert_eq!(r.stdout.trim(), format!("V {b}"));
    }
}

#[test]
fn flipped_bit_is_x_on_every_backend() {
    let (pk, msg, sig) = signed(9, b"withdraw 5");
    // Flip one bit of the message and, separately, of S.
    let mut bad_msg = msg.clone().into_bytes();
    bad_msg[0] = if bad_msg[0] == b'7' { b'6' } else { b'7' };
    let bad_msg = String::from_utf8(bad_msg).unwrap();
    let mut bad_sig = sig.clone().into_bytes();
    bad_sig[70] = if bad_sig[70] == b'0' { b'1' } else { b'0' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    for (m, s) in [(&bad_msg, &sig), (&msg, &bad_sig)] {
        let r = verify("all", &pk, m, s);
        assert_eq!(r.code, Some(0), "an invalid signature is not an error: {}", r.stderr);
        for b in CPU {
            assert!(r.stdout.lines().any(|l| l == format!("X {b}")), "{b}: {}", r.stdout);
        }
        assert!(!r.stdout.contains('V'), "{}", r.stdout);
    }
}

#[test]
fn malformed_hex_exits_2_naming_the_flag() {
    let (pk, msg, sig) = signed(3, b"m");
    let cases = [
        ("--pk", format!("{}zz", &pk[..62]), msg.clone(), sig.clone()),
        ("--pk", pk[..60].to_string(), msg.clone(), sig.clone()),
        ("--msg", pk.clone(), "abc".to_string(), sig.clone()),
        ("--sig", pk.clone(), msg.clone(), format!("{sig}00")),
        ("--sig", pk.clone(), msg.clone(), "q".repeat(128)),
    ];
    for (flag, p, m, s) in cases {
        let r = verify("all", &p, &m, &s);
        assert_eq!(r.code, Some(2), "{flag}: stdout {} stderr {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(flag), "{flag} not named: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn unknown_and_unavailable_backends() {
    let (pk, msg, sig) = signed(4, b"m");
    let r = verify("turbo", &pk, &msg, &sig);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    for name in ["scalar", "batch", "parallel", "auto", "gpu", "all"] {
        assert!(r.stderr.contains(name), "{name} not listed: {}", r.stderr);
    }
    let r = verify("gpu", &pk, &msg, &sig);
    assert_ne!(r.code, Some(0), "gpu should be unavailable: {}", r.stdout);
    assert!(r.stderr.contains("unavailable"), "{}", r.stderr);
}

#[test]
fn verify_file_mixes_valid_invalid_and_malformed() {
    let good = signed(1, b"order 1");
    let good2 = signed(2, b"");
    let (pk, msg, sig) = signed(5, b"order 2");
    let mut tampered = sig.clone().into_bytes();
    tampered[0] = if tampered[0] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let case = |p: &str, m: &str, s: &str| serde_json::json!({ "pub_key": p, "message": m, "signature": s });
    let cases = serde_json::json!([
        case(&good.0, &good.1, &good.2),
        case(&pk, &msg, &tampered),
        case("nothex", &msg, &sig),
        case(&good2.0, &good2.1, &good2.2),
        { "pub_key": pk, "message": msg },
        case(&good.0, &good.1, &good2.2),
    ]);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("cli_sig_cases_{}.json", std::process::id()));
    std::fs::write(&path, cases.to_string()).unwrap();
    let r = bastion(&["sig", "verify-file", path.to_str().unwrap(), "--backend", "all"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.code, Some(0), "stdout {} stderr {}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(lines[0]), ["case", "scalar", "batch", "parallel", "auto"], "{}", r.stdout);
    assert_eq!(words(lines[1]), ["0", "V", "V", "V", "V"], "{}", r.stdout);
    assert_eq!(words(lines[2]), ["1", "X", "X", "X", "X"], "{}", r.stdout);
    assert!(lines[3].trim_start().starts_with("2 error: pub_key: not valid hex"), "{}", lines[3]);
    assert_eq!(words(lines[4]), ["3", "V", "V", "V", "V"], "{}", r.stdout);
    assert_eq!(lines[5].trim_start(), "4 error: signature: missing", "{}", r.stdout);
    assert_eq!(words(lines[6]), ["5", "X", "X", "X", "X"], "{}", r.stdout);
    assert_eq!(lines[7], "6 cases: 2 valid, 2 invalid, 2 malformed, 0 disagreements", "{}", r.stdout);
    // The verdict columns line up under the header.
    let col = |l: &str, name: &str| l.find(name);
    assert_eq!(col(lines[0], "parallel").map(|c| &lines[1][c..c + 1]), Some("V"), "{}", r.stdout);

    // One named backend: one column.
    std::fs::write(&path, cases.to_string()).unwrap();
    let r = bastion(&["sig", "verify-file", path.to_str().unwrap(), "--backend", "batch"]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.lines().next().map(words), Some(vec!["case".to_string(), "batch".to_string()]));
}

#[test]
fn verify_file_unreadable_or_not_an_array_exits_non_zero() {
    let r = bastion(&["sig", "verify-file", "/nonexistent/cases.json"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli_sig_object_{}.json", std::process::id()));
    std::fs::write(&path, "{\"pub_key\": \"00\"}").unwrap();
    let r = bastion(&["sig", "verify-file", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("JSON array"), "{}", r.stderr);
}
