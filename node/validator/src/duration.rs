//! Durations on the command line: a number with a unit (`500ms`, `25s`, `2m`, `1h`, `1.5s`,
//! `1m30s`), or a bare number in the flag's own unit: seconds for flags such as `--duration`,
//! milliseconds for flags named `..._ms`, so scripts written before units were accepted keep
//! working. Used as clap value parsers ([`seconds`], [`millis`]).
//!
//! Written here rather than taken from `humantime`: that crate refuses bare numbers and
//! fractions (`1.5s`), both of which these flags take.

/// Units, longest suffix first so `ms` is not read as `m` followed by `s`.
const UNITS: [(&str, f64); 6] =
    [("ms", 1e-3), ("us", 1e-6), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("d", 86_400.0)];

/// Seconds in `text`; a bare number counts as `bare_unit` seconds each. Refuses negative,
/// non-finite and unknown units, naming what is accepted.
pub fn parse(text: &str, bare_unit: f64) -> Result<f64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration: give e.g. 25s, 500ms or 2m".into());
    }
    if let Ok(n) = t.parse::<f64>() {
        return check(n * bare_unit, text);
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let n: f64 = number.parse().map_err(|_| bad(text))?;
        let (scale, after) = UNITS
            .iter()
            .find_map(|(unit, scale)| tail.strip_prefix(unit).map(|after| (*scale, after)))
            .ok_or_else(|| bad(text))?;
        total += n * scale;
        rest = after.trim_start();
    }
    check(total, text)
}

fn bad(text: &str) -> String {
    format!(
        "`{text}` is not a duration: give a number with a unit (500ms, 25s, 2m, 1h, 1m30s) or a bare number"
    )
}

fn check(seconds: f64, text: &str) -> Result<f64, String> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(format!("`{text}`: a duration must be a finite, non-negative time"))
    }
}

/// A clap value parser: seconds as `f64`, a bare number in seconds.
pub fn seconds(text: &str) -> Result<f64, String> {
    parse(text, 1.0)
}

/// A clap value parser: whole milliseconds, a bare number in milliseconds.
pub fn millis(text: &str) -> Result<u64, String> {
    let ms = (parse(text, 1e-3)? * 1e3).round();
    if ms > u64::MAX as f64 {
        return Err(format!("`{text}`: too long"));
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        for (text, secs) in [
            ("25", 25.0),
            ("25s", 25.0),
            ("2m", 120.0),
            ("500ms", 0.5),
            ("1.5s", 1.5),
            ("1m30s", 90.0),
            ("1h", 3600.0),
            (" 2m 5s ", 125.0),
            ("0", 0.0),
        ] {
            assert_eq!(seconds(text).unwrap(), secs, "{text}");
        }
        assert_eq!(millis("200").unwrap(), 200);
        assert_eq!(millis("2s").unwrap(), 2000);
        assert_eq!(millis("250ms").unwrap(), 250);
        assert_eq!(millis("1.5").unwrap(), 2, "a bare fraction of a millisecond rounds");
    }

    #[test]
    fn refusals_say_what_is_accepted() {
        for text in ["", "s", "25x", "-3s", "-1", "1e400", "2 m s", "ms5", "NaN"] {
            let e = seconds(text).unwrap_err();
            assert!(e.contains("duration"), "{text}: {e}");
        }
        assert!(seconds("25 parsecs").unwrap_err().contains("500ms, 25s, 2m"));
    }
}
