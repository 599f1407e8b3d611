//! Reading tickers out of JSON: dot-separated paths, exact decimal prices, tick times.

use bastion_types::{PriceMicros, UnderlyingId};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::config::TimeUnit;
use crate::source::Tick;

/// Most tickers read from one message or answer; the rest are ignored.
pub const TICKERS_PER_MESSAGE_MAX: usize = 4_096;
/// Longest path, in segments.
const PATH_SEGMENTS_MAX: usize = 16;

/// A path into a JSON value: keys separated by dots; a segment that is a number indexes an
/// array (and is a key in an object). `data.0.price` is the `price` of the first element of
/// `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// Parses `path`; errors on an empty path, an empty segment or too many segments.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        if path.is_empty() {
            return Err("empty path".into());
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("empty segment in {path:?}"));
        }
        if segments.len() > PATH_SEGMENTS_MAX {
            return Err(format!("{path:?} has more than {PATH_SEGMENTS_MAX} segments"));
        }
        Ok(JsonPath(segments))
    }

    /// The value at this path in `v`, if there is one.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut at = v;
        for s in &self.0 {
            at = match at {
                Value::Object(m) => m.get(s)?,
                Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }
}

/// `round(text * 10^exp10)` for a decimal number in `text` (`-12.5`, `1e3`, `0.000123E+2`),
/// rounding half away from zero; `None` if it is not a decimal number or does not fit an i128.
pub fn parse_decimal(text: &str, exp10: i32) -> Option<i128> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // digits * 10^(shift), with shift = exp10 + exponent - len(frac).
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let frac_len = i32::try_from(frac.len()).ok()?;
    let shift = exp10.checked_add(exponent)?.checked_sub(frac_len)?;
    let mut value: i128 = 0;
    if shift >= 0 {
        for b in digits.bytes() {
            value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        for _ in 0..shift {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10)?;
        }
    } else {
        // Keep the digits above the cut, round on the first one below it.
        let cut = usize::try_from(shift.unsigned_abs()).ok()?;
        let keep = digits.len().saturating_sub(cut);
        for b in digits[..keep].bytes() {
            value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let below = cut.saturating_sub(digits.len());
        let first_dropped = if below == 0 { digits.as_bytes().get(keep).copied() } else { None };
        if first_dropped.is_some_and(|b| b >= b'5') {
            value = value.checked_add(1)?;
        }
    }
    Some(if negative { value.checked_neg()? } else { value })
}

/// A JSON number or numeric string scaled by `10^exp10`.
fn json_decimal(v: &Value, exp10: i32) -> Option<i128> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string(), exp10),
        Value::String(s) => parse_decimal(s, exp10),
        _ => None,
    }
}

/// A price in quote units per base unit (a JSON number or decimal string) as price
/// micro-units; `None` unless positive and representable.
pub fn price_micros(v: &Value) -> Option<PriceMicros> {
    let p = json_decimal(v, 6)?;
    if p <= 0 {
        return None;
    }
    PriceMicros::try_from(p).ok()
}

/// How one source reads tickers.
#[derive(Clone, Debug)]
pub(crate) struct Extractor {
    pub list: Option<JsonPath>,
    pub symbol: JsonPath,
    pub price: JsonPath,
    pub time: Option<JsonPath>,
    pub time_unit: TimeUnit,
    pub symbols: BTreeMap<String, UnderlyingId>,
}

/// What one message gave.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    /// Tickers that could not be read.
    pub malformed: u64,
    /// Why the first of them could not.
    pub first_error: Option<String>,
}

impl Extracted {
    fn bad(&mut self, why: String) {
        self.malformed = self.malformed.saturating_add(1);
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

impl Extractor {
    /// Reads the tickers of one message received at `recv_ms` into `out` (mapped symbols only;
    /// unknown symbols are skipped silently, unreadable tickers are counted in the result).
    pub fn extract(&self, text: &str, recv_ms: u64, out: &mut Vec<Tick>) -> Extracted {
        let mut result = Extracted::default();
        let root: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                result.bad(format!("not JSON: {e}"));
                return result;
            }
        };
        let tickers: &[Value] = match &self.list {
            Some(path) => match path.get(&root) {
                Some(Value::Array(a)) => a,
                _ => {
                    result.bad("no array at the list path".into());
                    return result;
                }
            },
            None => match &root {
                Value::Array(a) => a,
                one => std::slice::from_ref(one),
            },
        };
        for t in tickers.iter().take(TICKERS_PER_MESSAGE_MAX) {
            match self.ticker(t, recv_ms) {
                Ok(Some(tick)) => out.push(tick),
                Ok(None) => {}
                Err(why) => result.bad(why),
            }
        }
        result
    }

    fn ticker(&self, t: &Value, recv_ms: u64) -> Result<Option<Tick>, String> {
        let symbol = match self.symbol.get(t) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err("symbol is not a string".into()),
            None => return Err("no symbol".into()),
        };
        let Some(&underlying) = self.symbols.get(&symbol) else {
            return Ok(None);
        };
        let price = match self.price.get(t) {
            Some(v) => {
                price_micros(v).ok_or_else(|| format!("{symbol}: price {v} is not a positive number"))?
            }
            None => return Err(format!("{symbol}: no price")),
        };
        let ts_ms = match &self.time {
            Some(path) => {
                let v = path.get(t).ok_or_else(|| format!("{symbol}: no time"))?;
                let ms = json_decimal(v, self.time_unit.to_ms_exp10())
                    .and_then(|ms| u64::try_from(ms).ok())
                    .ok_or_else(|| format!("{symbol}: time {v} is not a time"))?;
                ms.min(recv_ms)
            }
            None => recv_ms,
        };
        Ok(Some(Tick { underlying, price, ts_ms }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn paths_walk_objects_and_arrays() {
        let v = json!({"data": [{"p": "1.5"}, {"p": 2}], "s": "BTC", "0": "key"});
        assert_eq!(JsonPath::parse("data.1.p").unwrap().get(&v), Some(&json!(2)));
        assert_eq!(JsonPath::parse("data.0.p").unwrap().get(&v), Some(&json!("1.5")));
        assert_eq!(
            JsonPath::parse("0").unwrap().get(&v),
            Some(&json!("key")),
            "a number is a key in an object"
        );
        assert_eq!(JsonPath::parse("data.2.p").unwrap().get(&v), None);
        assert_eq!(JsonPath::parse("data.x").unwrap().get(&v), None);
        assert_eq!(JsonPath::parse("s.t").unwrap().get(&v), None);
        assert!(JsonPath::parse("").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a.").is_err());
        assert!(JsonPath::parse(&["a"; 17].join(".")).is_err());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("100000.5", 6), Some(100_000_500_000));
        assert_eq!(parse_decimal("0.000001", 6), Some(1));
        assert_eq!(parse_decimal("0.0000005", 6), Some(1), "half rounds away from zero");
        assert_eq!(parse_decimal("0.0000004999", 6), Some(0));
        assert_eq!(parse_decimal("-2.5", 0), Some(-3));
        assert_eq!(parse_decimal("+7", 0), Some(7));
        assert_eq!(parse_decimal("1e3", 0), Some(1_000));
        assert_eq!(parse_decimal("1.25E-2", 4), Some(125));
        assert_eq!(parse_decimal("  42  ", 0), Some(42));
        assert_eq!(parse_decimal(".5", 1), Some(5));
        assert_eq!(parse_decimal("5.", 1), Some(50));
        assert_eq!(parse_decimal("1700000000.123456", 3), Some(1_700_000_000_123));
        assert_eq!(parse_decimal("1700000000123456", -3), Some(1_700_000_000_123));
        assert_eq!(parse_decimal("0", 400), Some(0));
        assert_eq!(parse_decimal("1", -400), Some(0));
        for bad in ["", ".", "-", "abc", "1.2.3", "1e", "1e+", "0x10", "1,5", "NaN", "inf", "1 2"] {
            assert_eq!(parse_decimal(bad, 6), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("1e40", 0), None, "overflow");
        assert_eq!(parse_decimal(&"9".repeat(60), 0), None);
    }

    #[test]
    fn prices_must_be_positive_numbers() {
        assert_eq!(price_micros(&json!(100000.25)), Some(100_000_250_000));
        assert_eq!(price_micros(&json!("4000")), Some(4_000_000_000));
        assert_eq!(price_micros(&json!(0)), None);
        assert_eq!(price_micros(&json!("-1")), None);
        assert_eq!(price_micros(&json!("0.0000001")), None, "rounds to zero");
        assert_eq!(price_micros(&json!("n/a")), None);
        assert_eq!(price_micros(&json!(null)), None);
        assert_eq!(price_micros(&json!([1])), None);
        assert_eq!(price_micros(&json!(1e300)), None, "does not fit");
    }

    fn extractor(list: Option<&str>, time: Option<&str>) -> Extractor {
        Extractor {
            list: list.map(|p| JsonPath::parse(p).unwrap()),
            symbol: JsonPath::parse("s").unwrap(),
            price: JsonPath::parse("p").unwrap(),
            time: time.map(|p| JsonPath::parse(p).unwrap()),
            time_unit: TimeUnit::Ms,
            symbols: [("BTCUSD".to_string(), UnderlyingId(0)), ("ETHUSD".to_string(), UnderlyingId(1))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn messages_give_ticks_and_count_what_they_cannot_read() {
        let x = extractor(None, Some("t"));
        let mut out = Vec::new();
        let r = x.extract(r#"{"s":"BTCUSD","p":"100.5","t":900}"#, 1_000, &mut out);
        assert_eq!(r.malformed, 0);
        assert_eq!(out, vec![Tick { underlying: UnderlyingId(0), price: 100_500_000, ts_ms: 900 }]);
        // A time after the receive time is the receive time.
        out.clear();
        x.extract(r#"{"s":"BTCUSD","p":1,"t":5000}"#, 1_000, &mut out);
        assert_eq!(out[0].ts_ms, 1_000);
        // An array of tickers; unknown symbols skipped, bad ones counted.
        out.clear();
        let r = x.extract(
            r#"[{"s":"ETHUSD","p":4000,"t":1},{"s":"DOGE","p":1,"t":1},{"s":"BTCUSD","p":"x","t":1},{"p":1}]"#,
            10,
            &mut out,
        );
        assert_eq!((out.len(), r.malformed), (1, 2));
        assert!(r.first_error.unwrap().contains("BTCUSD"));
        for bad in
            ["{", "", r#"{"s":"BTCUSD"}"#, r#"{"s":"BTCUSD","p":1}"#, r#"{"s":"BTCUSD","p":1,"t":"soon"}"#]
        {
            out.clear();
            let r = x.extract(bad, 10, &mut out);
            assert_eq!((out.len(), r.malformed), (0, 1), "{bad}");
        }
        // A list path.
        let x = extractor(Some("data"), None);
        out.clear();
        let r = x.extract(r#"{"data":[{"s":"BTCUSD","p":2}]}"#, 77, &mut out);
        assert_eq!((out.len(), r.malformed, out[0].ts_ms), (1, 0, 77));
        out.clear();
        assert_eq!(x.extract(r#"{"data":{"s":"BTCUSD","p":2}}"#, 77, &mut out).malformed, 1);
    }
}
