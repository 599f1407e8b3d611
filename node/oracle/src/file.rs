//! Replaying a recorded tick file (CSV `ts_ms,symbol,price` or JSON lines) in time, to
//! reproduce an incident: the first tick is quoted at the replay's start, every later one as
//! many ms after it as it was after the first in the file.

use bastion_types::UnderlyingId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{ConfigError, FileFormat, FileSource};
use crate::extract::{parse_decimal, price_micros};
use crate::source::{PriceSource, Quotes, Tick};
use crate::stats::{ErrorKind, SourceStats};

/// Largest tick file read, bytes.
pub const TICK_FILE_MAX_BYTES: u64 = 64 << 20;

/// A replayed tick file: its ticks in file order with times relative to the first.
#[derive(Debug)]
pub struct FileReplay {
    name: String,
    stats: Arc<SourceStats>,
    /// (ms after the first tick, underlying, price), ascending by time.
    ticks: Vec<(u64, UnderlyingId, i64)>,
    start_ms: u64,
    /// Ticks already replayed.
    next: usize,
    latest: BTreeMap<UnderlyingId, Tick>,
}

impl FileReplay {
    /// Reads the file of `config` (entry `key`, e.g. `oracle.sources[3]`), mapping symbols with
    /// `symbols` (symbol -> underlying). Unreadable lines are counted as `malformed` and
    /// skipped; a missing, oversized or tickless file is an error naming `key.path`.
    pub fn open(
        config: &FileSource,
        key: &str,
        symbols: &BTreeMap<String, UnderlyingId>,
        t0_ms: u64,
    ) -> Result<FileReplay, ConfigError> {
        let path_key = format!("{key}.path");
        let meta = std::fs::metadata(&config.path)
            .map_err(|e| ConfigError::new(&path_key, format!("{}: {e}", config.path)))?;
        if meta.len() > TICK_FILE_MAX_BYTES {
            return Err(ConfigError::new(
                &path_key,
                format!("{} is over {TICK_FILE_MAX_BYTES} bytes", config.path),
            ));
        }
        let text = std::fs::read_to_string(&config.path)
            .map_err(|e| ConfigError::new(&path_key, format!("{}: {e}", config.path)))?;
        let format = config.format.unwrap_or(if config.path.ends_with(".csv") {
            FileFormat::Csv
        } else {
            FileFormat::Jsonl
        });
        let stats = Arc::new(SourceStats::new(&config.name));
        let mut raw: Vec<(u64, UnderlyingId, i64)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || (format == FileFormat::Csv && line.starts_with("ts_ms"))
            {
                continue;
            }
            match parse_line(format, line) {
                Ok((ts, symbol, price)) => {
                    if let Some(&u) = symbols.get(&symbol) {
                        raw.push((ts, u, price));
                    }
                }
                Err(why) => stats
                    .error(ErrorKind::Malformed, &format!("{}:{}: {why}", config.path, n.saturating_add(1))),
            }
        }
        if raw.is_empty() {
            return Err(ConfigError::new(&path_key, format!("{}: no ticks of a mapped symbol", config.path)));
        }
        // Stable: equal times keep file order.
        raw.sort_by_key(|t| t.0);
        let first = raw[0].0;
        let ticks = raw.into_iter().map(|(ts, u, p)| (ts - first, u, p)).collect();
        Ok(FileReplay {
            name: config.name.clone(),
            stats,
            ticks,
            start_ms: config.start_ms.unwrap_or(t0_ms),
            next: 0,
            latest: BTreeMap::new(),
        })
    }

    /// Number of ticks read from the file.
    pub fn len(&self) -> usize {
        self.ticks.len()
    }

    /// Whether the file had no usable ticks (never true for an opened replay).
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }
}

/// One tick line: `(ts_ms, symbol, price micros)`.
fn parse_line(format: FileFormat, line: &str) -> Result<(u64, String, i64), String> {
    let (ts, symbol, price) = match format {
        FileFormat::Csv => {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [ts, symbol, price] = fields[..] else {
                return Err(format!("{} fields, expected ts_ms,symbol,price", fields.len()));
            };
            (parse_decimal(ts, 0), symbol.to_string(), price_micros(&Value::String(price.to_string())))
        }
        FileFormat::Jsonl => {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
            let ts = match v.get("ts_ms") {
                Some(Value::Number(n)) => parse_decimal(&n.to_string(), 0),
                _ => None,
            };
            let symbol = match v.get("symbol") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err("no symbol".into()),
            };
            (ts, symbol, v.get("price").and_then(price_micros))
        }
    };
    let ts = ts.and_then(|t| u64::try_from(t).ok()).ok_or("ts_ms is not a time")?;
    let price = price.ok_or("price is not a positive number")?;
    Ok((ts, symbol, price))
}

impl PriceSource for FileReplay {
    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    fn quotes(&mut self, now_ms: u64, _expiries: &[(UnderlyingId, u64)], out: &mut Quotes) {
        // Time going backwards (a clock step) is treated as no progress.
        let played = now_ms.saturating_sub(self.start_ms);
        if now_ms >= self.start_ms {
            while let Some(&(offset, underlying, price)) = self.ticks.get(self.next) {
                if offset > played {
                    break;
                }
                let ts_ms = self.start_ms.saturating_add(offset);
                self.latest.insert(underlying, Tick { underlying, price, ts_ms });
                self.next = self.next.saturating_add(1);
            }
        }
        out.prices.clear();
        out.vols.clear();
        out.prices.extend(self.latest.values().copied());
    }
}
