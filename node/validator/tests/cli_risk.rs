//! `bastion risk option` end to end through the built binary.

use std::process::Command;

fn bastion(args: &[&str]) -> (bool, String, String) {
    let out = match Command::new(env!("CARGO_BIN_EXE_bastion")).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run bastion: {e}"),
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HULL: [&str; 14] = [
    "risk",
    "option",
    "--spot",
    "42",
    "--strike",
    "40",
    "--rate",
    "0.1",
    "--dividend-yield",
    "0",
    "--volatility",
    "0.2",
    "--years",
    "0.5",
];

#[test]
fn hull_case_prints_prices_and_greeks() {
    let (ok, out, err) = bastion(&HULL);
    assert!(ok, "stderr: {err}");
    let call = out.lines().find_map(|l| l.strip_prefix("call ")).map(str::trim);
    let call: f64 = call.and_then(|c| c.parse().ok()).unwrap_or(f64::NAN);
    assert!((call - 4.7594223928).abs() < 1e-9, "{out}");
    for key in ["put", "call_delta", "put_delta", "gamma", "vega", "d1", "d2"] {
        assert!(out.lines().any(|l| l.starts_with(key)), "{key} missing in {out}");
    }
}

#[test]
fn json_output_has_every_key() {
    let mut args = HULL.to_vec();
    args.push("--json");
    let (ok, out, err) = bastion(&args);
    assert!(ok, "stderr: {err}");
    let v: serde_json::Value = match serde_json::from_str(out.trim()) {
        Ok(v) => v,
        Err(e) => panic!("{e}: {out}"),
    };
    let put: f64 = v["put"].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    assert!((put - 0.8085993729).abs() < 1e-9, "{out}");
    for key in ["call", "put", "call_delta", "put_delta", "gamma", "vega", "d1", "d2"] {
        assert!(v[key].is_string(), "{key} missing in {out}");
    }
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let mut args = HULL.to_vec();
    args[11] = "0";
    let (ok, _, err) = bastion(&args);
    assert!(!ok);
    assert!(err.contains("--volatility must be positive, got 0"), "{err}");

    let mut args = HULL.to_vec();
    args[3] = "forty-two";
    let (ok, _, err) = bastion(&args);
    assert!(!ok);
    assert!(err.contains("--spot"), "{err}");
}
