//! The simulated chain's inbox: how other processes (a load generator, a test, an operator with
//! a voucher) submit deposits and vouchers to a chain that another process runs.
//!
//! A submitter writes one JSON file per submission into `<dir>/inbox/` with
//! [`submit_to_inbox`]: `<name>.json.tmp`, fsynced, then renamed to `<name>.json`, so the
//! chain never sees half a file. Names sort in submission order (nanoseconds since the epoch,
//! process id, a counter). Each block, the chain takes up to
//! [`SOURCE_BLOCK_INBOX_FILES_MAX`](crate::ledger::SOURCE_BLOCK_INBOX_FILES_MAX) files in name
//! order:
//!
//! - a deposit is included in the block (its source id is assigned then; find it in the block
//!   whose `inbox` list names the file);
//! - a voucher is checked as [`SimChain::submit_voucher`](crate::SimChain::submit_voucher)
//!   checks it: paid in the block, or listed in the block's `refused` with the reason;
//! - a file that does not parse (or a deposit that is not positive) is moved to
//!   `<dir>/inbox/rejected/` beside a `<name>.why` file saying why.
//!
//! Applied files are deleted once the block's line is durable; a file the ledger already
//! names (a crash between the two) is deleted without being applied again.
//!
//! The JSON of a submission:
//!
//! ```json
//! {"deposit":{"to":5,"asset":0,"amount":"1000000"}}
//! {"voucher":{"voucher":{"id":1,"account":5,"asset":0,"amount":"250000","height":40},
//!             "approvals":[{"validator":0,"signature":"<128 hex>"}]}}
//! ```

use bastion_types::{AccountId, Approval, AssetId, Micros, Voucher};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::chain::ChainError;
use crate::codec;
use crate::ledger::{INBOX_DIR, REJECTED_DIR};

/// Largest inbox file the chain reads, in bytes (a voucher with every validator's signature is
/// far smaller); a larger one is rejected.
pub const SUBMISSION_BYTES_MAX: u64 = 1 << 20;

/// Something another process asks the simulated chain to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Submission {
    /// Deposit `amount` of `asset` to the bridge, to be credited to `to` on Bastion.
    Deposit {
        /// The Bastion account to credit.
        to: AccountId,
        /// The collateral asset.
        asset: AssetId,
        /// Micro-units, positive; a decimal string in JSON.
        #[serde(with = "codec::amount")]
        amount: Micros,
    },
    /// Present a voucher with validators' signatures, to be paid out.
    Voucher {
        /// The voucher, as Bastion created it.
        #[serde(with = "codec::voucher_json")]
        voucher: Voucher,
        /// Validators' signatures over `voucher_message(chain_id, voucher)`; signatures are
        /// 128 hex digits in JSON.
        #[serde(with = "codec::approval_list")]
        approvals: Vec<Approval>,
    },
}

/// Distinguishes submissions of one process within one nanosecond.
static SUBMISSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `submission` into the inbox of the chain in `dir` (creating the inbox if needed),
/// atomically and durably, and returns the file's path. The chain applies it in its next
/// block.
pub fn submit_to_inbox(dir: &Path, submission: &Submission) -> Result<PathBuf, ChainError> {
    let inbox = dir.join(INBOX_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ChainError::Io { path, source }
    };
    std::fs::create_dir_all(&inbox).map_err(io(&inbox))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let counter = SUBMISSION_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{nanos:020}-{}-{counter:06}.json", std::process::id());
    let path = inbox.join(&name);
    let tmp = inbox.join(format!("{name}.tmp"));
    let mut bytes = serde_json::to_vec(submission).map_err(|e| ChainError::Encode(e.to_string()))?;
    bytes.push(b'\n');
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(&inbox)?;
    Ok(path)
}

/// The names of the submissions waiting in `inbox`, in name (submission) order. Temporary
/// files and directories are skipped.
pub(crate) fn list(inbox: &Path) -> Result<Vec<String>, ChainError> {
    let io = |source| ChainError::Io { path: inbox.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(inbox).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        // A name that is not UTF-8 was not written by `submit_to_inbox`: leave it.
        if let Ok(name) = entry.file_name().into_string()
            && name.ends_with(".json")
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads and parses the submission `name` in `inbox`: `Ok(Err(reason))` if it is not a valid
/// submission (the caller rejects it), `Err` if it could not be read.
pub(crate) fn read(inbox: &Path, name: &str) -> Result<Result<Submission, String>, ChainError> {
    let path = inbox.join(name);
    let io = |source| ChainError::Io { path: path.clone(), source };
    let file = std::fs::File::open(&path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(SUBMISSION_BYTES_MAX.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > SUBMISSION_BYTES_MAX {
        return Ok(Err(format!("larger than {SUBMISSION_BYTES_MAX} bytes")));
    }
    Ok(serde_json::from_slice(&bytes).map_err(|e| format!("not a submission: {e}")))
}

/// Moves the submission `name` to `inbox/rejected/`, with `<name>.why` holding `reason`.
pub(crate) fn reject(inbox: &Path, name: &str, reason: &str) -> Result<(), ChainError> {
    let rejected = inbox.join(REJECTED_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ChainError::Io { path, source }
    };
    std::fs::create_dir_all(&rejected).map_err(io(&rejected))?;
    let why = rejected.join(format!("{name}.why"));
    std::fs::write(&why, format!("{reason}\n")).map_err(io(&why))?;
    let to = rejected.join(name);
    std::fs::rename(inbox.join(name), &to).map_err(io(&to))?;
    tracing::warn!(file = %to.display(), %reason, "bridge inbox: rejected a submission");
    Ok(())
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ChainError> {
    let io = |source| ChainError::Io { path: dir.to_path_buf(), source };
    std::fs::File::open(dir).map_err(io)?.sync_all().map_err(io)
}
