//! Locates and loads the test vectors shared by every implementation (`../shared/vectors` beside
//! the repository, or `$BASTION_VECTORS`). Vectors are read where they lie, never copied into the
//! repository. With `CI` set a missing file fails the test; elsewhere the test prints that it
//! skipped the vectors and passes.
//!
//! Test support only: nothing in the validator depends on this crate.

pub mod ed25519;

use std::path::PathBuf;

/// The directory holding the shared vectors.
pub fn dir() -> PathBuf {
    match std::env::var_os("BASTION_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        // node/vectors -> repository root -> the folder beside it.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    }
}

/// The JSON vector file `name`, or `None` (after a notice) when it is absent outside CI.
///
/// # Panics
/// When the file is absent and `CI` is set, or when it is not valid JSON: in a test, that is
/// the failure the caller wants.
#[allow(clippy::panic)]
pub fn load_json(name: &str) -> Option<serde_json::Value> {
    let path = dir().join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => panic!("{}: not valid JSON: {e}", path.display()),
        },
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{}: {e} (CI is set: vectors are required)", path.display())
        }
        Err(e) => {
            eprintln!("skipping the {name} vectors: {}: {e}", path.display());
            None
        }
    }
}
