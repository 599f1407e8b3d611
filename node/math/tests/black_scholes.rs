//! The shared Black-Scholes-Merton vectors (mpmath, 50 digits): every field of every case within
//! 1e-9 relative, or 1e-9 absolute where the reference is below 1e-3 in magnitude.

use bastion_math::{Fx, OptionGreeks, OptionInputs, black_scholes_merton};

/// The vector file, or `None` (after a notice) where it is absent outside CI.
fn load() -> Option<serde_json::Value> {
    bastion_vectors::load_json("black_scholes.json")
}

fn field<'a>(case: &'a serde_json::Value, name: &str) -> &'a str {
    match case.get(name).and_then(|v| v.as_str()) {
        Some(s) => s,
        None => panic!("case lacks string field {name}: {case}"),
    }
}

fn parse(s: &str) -> Fx {
    match Fx::from_decimal_str(s) {
        Ok(v) => v,
        Err(e) => panic!("{s}: {e}"),
    }
}

/// Relative error against the reference (absolute below 1e-3). f64 is fine here: it only
/// measures the error of a value already computed in fixed point.
fn error(got: Fx, want: &str) -> f64 {
    let want: f64 = match want.parse() {
        Ok(v) => v,
        Err(e) => panic!("{want}: {e}"),
    };
    let diff = (got.to_f64() - want).abs();
    if want.abs() < 1e-3 { diff } else { diff / want.abs() }
}

#[test]
fn black_scholes_vectors() {
    let Some(doc) = load() else { return };
    let cases = match doc.get("cases").and_then(|c| c.as_array()) {
        Some(c) => c,
        None => panic!("no cases array"),
    };
    assert!(cases.len() >= 6, "expected the textbook cases and more");
    let mut worst = (0.0f64, String::new());
    for (i, case) in cases.iter().enumerate() {
        let inputs = OptionInputs {
            spot: parse(field(case, "spot")),
            strike: parse(field(case, "strike")),
            rate: parse(field(case, "rate")),
            dividend_yield: parse(field(case, "dividend_yield")),
            volatility: parse(field(case, "volatility")),
            years: parse(field(case, "years")),
        };
        let g = match black_scholes_merton(&inputs) {
            Ok(g) => g,
            Err(e) => panic!("case {i}: {e}"),
        };
        let OptionGreeks { call, put, call_delta, put_delta, gamma, vega, d1, d2 } = g;
        for (name, got) in [
            ("call", call),
            ("put", put),
            ("call_delta", call_delta),
            ("put_delta", put_delta),
            ("gamma", gamma),
            ("vega", vega),
            ("d1", d1),
            ("d2", d2),
        ] {
            let want = field(case, name);
            let err = error(got, want);
            assert!(err <= 1e-9, "case {i} {name}: got {got}, want {want} (error {err:e})\n{case}");
            if err > worst.0 {
                worst = (err, format!("case {i} {name}: got {got:.20}, want {want}"));
            }
        }
    }
    eprintln!("{} cases; worst error {:e} at {}", cases.len(), worst.0, worst.1);
}

#[test]
fn hull_textbook_values() {
    let g = black_scholes_merton(&OptionInputs {
        spot: parse("42"),
        strike: parse("40"),
        rate: parse("0.1"),
        dividend_yield: Fx::ZERO,
        volatility: parse("0.2"),
        years: parse("0.5"),
    });
    let g = match g {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(format!("{:.4}", g.call), "4.7594");
    assert_eq!(format!("{:.4}", g.put), "0.8086");
    assert_eq!(format!("{:.4}", g.d1), "0.7693");
    assert_eq!(format!("{:.4}", g.d2), "0.6278");
}
