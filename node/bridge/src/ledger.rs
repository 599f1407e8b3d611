//! The simulated chain's on-disk format, and the readers of its ledger.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/bridge.json      the chain's configuration (BridgeConfig), written once by create
//! <dir>/ledger.jsonl     the blocks, one JSON object per line, appended and fsynced
//! <dir>/inbox/*.json     submissions from other processes (see `submit_to_inbox`)
//! <dir>/inbox/rejected/  submissions that did not parse, each with a `.why` file
//! ```
//!
//! # `ledger.jsonl`
//!
//! One source block per line, each line one JSON object ending in `\n`:
//!
//! ```json
//! {"height":1,"time_ms":123,
//!  "deposits":[{"source_id":"<64 hex>","to":5,"asset":0,"amount":"1000000"}],
//!  "payouts":[{"voucher":{"id":1,"account":5,"asset":0,"amount":"250000","height":40},"signers":3}],
//!  "refused":[{"voucher_id":9,"reason":"voucher 9 was already paid or is queued for payment"}],
//!  "inbox":["1767225600000000000-412-0.json"]}
//! ```
//!
//! (shown over several lines here; in the file it is one line). Amounts are micro-units written
//! as decimal strings, so tools that read JSON numbers as doubles do not round them (readers
//! accept integers too). `deposits` are credited to the bridge first, then `payouts` are paid
//! from it, in order; `refused` lists vouchers submitted through the inbox that were not paid,
//! with the reason; `inbox` names the inbox files the block applied (absent when none), so a
//! restart never applies a file twice and a submitter can find what became of its file.
//!
//! Heights start at 1 and increase by 1. A last line without its `\n` is a write torn by a
//! crash: readers ignore it, and the chain truncates it away when it opens the ledger. Any
//! complete line that does not parse, or breaks the height sequence, is an error that names
//! the file and the line number.

use bastion_types::{BridgeDeposit, Voucher};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::codec;

/// The ledger's file name inside the chain's directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// The configuration's file name inside the chain's directory.
pub const CONFIG_FILE: &str = "bridge.json";

/// The inbox's directory name inside the chain's directory.
pub const INBOX_DIR: &str = "inbox";

/// The directory, inside the inbox, where submissions that did not parse are moved.
pub const REJECTED_DIR: &str = "rejected";

/// Longest ledger line (a block), in bytes, a reader accepts and the chain writes.
pub const LINE_BYTES_MAX: usize = 16 << 20;

/// Most bytes one read of the ledger takes (at least one longest line, so a reader always
/// makes progress); a poll of a large ledger takes several reads.
pub(crate) const READ_BYTES_MAX: usize = 2 * LINE_BYTES_MAX;

const _: () = assert!(READ_BYTES_MAX >= LINE_BYTES_MAX);

/// Most deposits one source block carries; `SimChain::deposit` refuses more until a block is
/// produced.
pub const SOURCE_BLOCK_DEPOSITS_MAX: usize = 20_000;

/// Most vouchers one source block pays or refuses from its queue; `SimChain::submit_voucher`
/// refuses more until a block is produced.
pub const SOURCE_BLOCK_VOUCHERS_MAX: usize = 4_096;

/// Most inbox files one source block applies; the rest wait for the next block.
pub const SOURCE_BLOCK_INBOX_FILES_MAX: usize = 1_024;

// A block at every limit still fits in a line: a deposit is at most ~200 bytes of JSON, a
// payout ~250, a refusal's reason a few hundred, an inbox file name under 100.
const _: () = assert!(
    SOURCE_BLOCK_DEPOSITS_MAX * 256 + SOURCE_BLOCK_VOUCHERS_MAX * 512 + SOURCE_BLOCK_INBOX_FILES_MAX * 1024
        < LINE_BYTES_MAX
);

/// One block of the simulated collateral chain, as one ledger line holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceBlock {
    /// Height: the first block is 1, each next one is one more.
    pub height: u64,
    /// When the block was produced, ms since the Unix epoch; never earlier than the previous
    /// block's.
    pub time_ms: u64,
    /// Deposits to the bridge, in order; their amounts are credited to the bridge's balance
    /// before the payouts are paid.
    #[serde(with = "codec::deposit_list")]
    pub deposits: Vec<BridgeDeposit>,
    /// Vouchers paid out, in order, each voucher id once in the whole ledger.
    pub payouts: Vec<Payout>,
    /// Vouchers submitted through the inbox and not paid, with the reason.
    #[serde(default)]
    pub refused: Vec<Refusal>,
    /// Names of the inbox files this block applied (their deposits and vouchers are in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<String>,
}

/// A voucher the source chain paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The voucher, as the validators signed it.
    #[serde(with = "codec::voucher_json")]
    pub voucher: Voucher,
    /// How many validators' signatures it carried.
    pub signers: u16,
}

/// A voucher the source chain refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The refused voucher's id.
    pub voucher_id: u64,
    /// Why, for the operator.
    pub reason: String,
}

/// Why the ledger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be opened or read.
    #[error("cannot read the bridge ledger {path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A complete line is not a valid block.
    #[error("bridge ledger {path}, line {line}: not a valid source block: {reason}")]
    Malformed {
        /// The ledger file.
        path: PathBuf,
        /// The line's number, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A line's height does not follow the previous line's.
    #[error(
        "bridge ledger {path}, line {line}: block height {found}, expected {expected} (heights start at 1 and increase by 1)"
    )]
    HeightGap {
        /// The ledger file.
        path: PathBuf,
        /// The line's number, from 1.
        line: u64,
        /// The height that should follow.
        expected: u64,
        /// The height the line carries.
        found: u64,
    },
    /// A line is longer than any block the chain writes.
    #[error("bridge ledger {path}, line {line}: longer than {limit} bytes, not a block the chain wrote")]
    LineTooLong {
        /// The ledger file.
        path: PathBuf,
        /// The line's number, from 1.
        line: u64,
        /// [`LINE_BYTES_MAX`].
        limit: usize,
    },
    /// The file is shorter than what was already read from it: it was truncated or replaced,
    /// and what was reported from it may no longer hold.
    #[error(
        "bridge ledger {path} is {len} bytes, shorter than the {offset} bytes already read: it was truncated or replaced"
    )]
    Shrunk {
        /// The ledger file.
        path: PathBuf,
        /// Bytes already read.
        offset: u64,
        /// The file's length now.
        len: u64,
    },
}

/// Reads every complete block of the ledger file at `path`, checking that heights start at 1
/// and increase by 1. A torn last line (no trailing `\n`) is ignored. For conservation checks
/// and tools; the chain and [`FileSource`](crate::FileSource) read incrementally.
pub fn read_ledger(path: &Path) -> Result<Vec<SourceBlock>, LedgerError> {
    let mut reader = LedgerReader::new(path.to_path_buf());
    let mut blocks = Vec::new();
    loop {
        let chunk = reader.read(false)?;
        blocks.extend(chunk.blocks);
        if !chunk.more {
            return Ok(blocks);
        }
    }
}

/// Parses one ledger line (without its `\n`), checking amounts are positive.
fn parse_line(bytes: &[u8]) -> Result<SourceBlock, String> {
    let block: SourceBlock = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if let Some(d) = block.deposits.iter().find(|d| d.amount <= 0) {
        return Err(format!("deposit {} has a non-positive amount {}", d.source_id, d.amount));
    }
    if let Some(p) = block.payouts.iter().find(|p| p.voucher.amount <= 0) {
        return Err(format!(
            "payout of voucher {} has a non-positive amount {}",
            p.voucher.id, p.voucher.amount
        ));
    }
    Ok(block)
}

/// Encodes `block` as one ledger line, `\n` included.
pub(crate) fn encode_line(block: &SourceBlock) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(block)?;
    line.push(b'\n');
    Ok(line)
}

/// What one [`LedgerReader::read`] found.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// The complete blocks read, in order.
    pub blocks: Vec<SourceBlock>,
    /// Whether the read stopped at [`READ_BYTES_MAX`] with more bytes possibly after it.
    pub more: bool,
}

/// Reads a ledger file incrementally: complete lines only, from a byte offset, checking the
/// height sequence. A failed read changes nothing: the next read retries from the same line.
#[derive(Debug)]
pub(crate) struct LedgerReader {
    path: PathBuf,
    /// Bytes consumed: the end of the last complete line read.
    offset: u64,
    /// Lines consumed.
    lines: u64,
    /// The last block's height (0: none yet).
    height: u64,
}

impl LedgerReader {
    /// A reader at the start of the file at `path`.
    pub(crate) fn new(path: PathBuf) -> LedgerReader {
        LedgerReader { path, offset: 0, lines: 0, height: 0 }
    }

    /// The file read.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes consumed: the end of the last complete line read.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The last block's height read (0: none).
    pub(crate) fn height(&self) -> u64 {
        self.height
    }

    /// Reads the complete lines after the offset, at most [`READ_BYTES_MAX`] bytes. A missing
    /// file reads as empty if `missing_ok`, and is an error otherwise.
    pub(crate) fn read(&mut self, missing_ok: bool) -> Result<Chunk, LedgerError> {
        let io = |source| LedgerError::Io { path: self.path.clone(), source };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound && self.offset == 0 => {
                return Ok(Chunk::default());
            }
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len < self.offset {
            return Err(LedgerError::Shrunk { path: self.path.clone(), offset: self.offset, len });
        }
        if len == self.offset {
            return Ok(Chunk::default());
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut buf = Vec::new();
        let want = u64::try_from(READ_BYTES_MAX).unwrap_or(u64::MAX);
        file.take(want).read_to_end(&mut buf).map_err(io)?;
        let full = buf.len() == READ_BYTES_MAX;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if full {
                return Err(LedgerError::LineTooLong {
                    path: self.path.clone(),
                    line: self.lines.saturating_add(1),
                    limit: LINE_BYTES_MAX,
                });
            }
            // Only a torn (or still being written) last line: nothing complete yet.
            return Ok(Chunk::default());
        };
        let complete = buf.get(..end).unwrap_or_default();
        let mut blocks = Vec::new();
        let (mut lines, mut height) = (self.lines, self.height);
        for raw in complete.split(|&b| b == b'\n') {
            lines = lines.saturating_add(1);
            if raw.len() > LINE_BYTES_MAX {
                return Err(LedgerError::LineTooLong {
                    path: self.path.clone(),
                    line: lines,
                    limit: LINE_BYTES_MAX,
                });
            }
            let block = parse_line(raw).map_err(|reason| LedgerError::Malformed {
                path: self.path.clone(),
                line: lines,
                reason,
            })?;
            let expected = height.saturating_add(1);
            if block.height != expected {
                return Err(LedgerError::HeightGap {
                    path: self.path.clone(),
                    line: lines,
                    expected,
                    found: block.height,
                });
            }
            height = block.height;
            blocks.push(block);
        }
        let consumed = u64::try_from(end).unwrap_or(u64::MAX).saturating_add(1);
        self.offset = self.offset.saturating_add(consumed);
        self.lines = lines;
        self.height = height;
        Ok(Chunk { blocks, more: full })
    }
}
