//! `bastion governance`: parameter changes that 2/3 of stake signed, from a proposal file to a
//! block.
//!
//! A proposal file is the JSON of a [`GovernanceProposal`]: the change (`update`, a
//! `ParamUpdate`), the chain's next governance nonce, a height window and the approvals. Each
//! validator's operator adds its approval with `approve` (its identity key signs
//! [`bastion_types::governance_message`]); `check` verifies every approval as the exchange will;
//! `submit` queues the file for this node's proposer ([`GovernanceDir`], read by the running
//! node), which includes it in a block it leads once the chain is at the proposal's nonce and
//! window. Any validator may submit: a block carrying it is valid only with at least 2/3 of
//! stake's signatures, whoever proposes it.

use bastion_consensus::spec::{ChainSpec, ValidatorKeys};
use bastion_consensus::{ProposalSource, State};
use bastion_types::{GovernanceProposal, ParamUpdate};
use clap::Subcommand;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::warn;

/// The directory in a node's data dir that holds submitted proposals.
pub const GOVERNANCE_DIR: &str = "governance";

/// Most proposal files the proposer reads from [`GOVERNANCE_DIR`].
pub const QUEUED_MAX: usize = 64;

/// Largest proposal file read (bytes).
const FILE_MAX: u64 = 1 << 20;

/// How often the proposer rereads [`GOVERNANCE_DIR`].
const RESCAN: Duration = Duration::from_secs(1);

/// `bastion governance …`
#[derive(Subcommand, Debug)]
pub enum GovernanceCommand {
    /// Write an unsigned proposal file: a parameter change, its governance nonce and height
    /// window.
    Propose {
        /// The genesis file (the change is validated against its state).
        #[arg(long)]
        genesis: PathBuf,
        /// JSON of the change, a `ParamUpdate`, e.g. `{"Status":{"market":0,"status":"Halted"}}`.
        #[arg(long)]
        update: PathBuf,
        /// The chain's next governance nonce (1 for the first proposal ever accepted).
        #[arg(long)]
        nonce: u64,
        /// First height at which a block may carry it.
        #[arg(long)]
        valid_from: u64,
        /// Last height at which a block may carry it (at most 100,000 after --valid-from).
        #[arg(long)]
        valid_until: u64,
        /// The proposal file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add this validator's approval to a proposal file (its identity key signs the chain id,
    /// nonce, window and change).
    Approve {
        /// This validator's node.toml (for its genesis and keys files).
        #[arg(long)]
        config: PathBuf,
        /// The proposal file, rewritten with the approval added.
        #[arg(long)]
        proposal: PathBuf,
    },
    /// Verify every approval as the exchange will and add up the signed stake; exits 1 unless a
    /// block could carry the proposal.
    Check {
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// The proposal file.
        #[arg(long)]
        proposal: PathBuf,
    },
    /// Queue a proposal for this node's proposer (`<data_dir>/governance/`).
    Submit {
        /// This validator's node.toml.
        #[arg(long)]
        config: PathBuf,
        /// The proposal file (checked first).
        #[arg(long)]
        proposal: PathBuf,
    },
}

/// Runs a governance command; `Ok` is the report, `Err((code, message))` a failure (code 1: the
/// proposal does not pass; 2: bad input).
pub fn run(cmd: &GovernanceCommand) -> Result<String, (u8, String)> {
    let input = |e: String| (2u8, e);
    match cmd {
        GovernanceCommand::Propose { genesis, update, nonce, valid_from, valid_until, out } => {
            let spec = ChainSpec::load(genesis).map_err(|e| input(e.to_string()))?;
            let text = std::fs::read_to_string(update)
                .map_err(|e| input(format!("cannot read {}: {e}", update.display())))?;
            let update: ParamUpdate = serde_json::from_str(&text).map_err(|e| {
                input(format!("{}: not a parameter change (ParamUpdate JSON): {e}", update.display()))
            })?;
            let p = GovernanceProposal {
                update,
                nonce: *nonce,
                valid_from: *valid_from,
                valid_until: *valid_until,
                approvals: Vec::new(),
            };
            let state = probe_state(&spec, &p).map_err(input)?;
            state.check_update(&p.update).map_err(|e| input(format!("the change is refused: {e}")))?;
            write_new(out, &p).map_err(input)?;
            Ok(format!(
                "wrote {} (chain {}, nonce {nonce}, heights {valid_from}..={valid_until}); next: each \
                 validator runs `bastion governance approve --config node.toml --proposal {}`",
                out.display(),
                spec.chain_id,
                out.display()
            ))
        }
        GovernanceCommand::Approve { config, proposal } => {
            let cfg = crate::node::NodeConfig::load(config).map_err(input)?;
            let spec = ChainSpec::load(&cfg.genesis).map_err(|e| input(e.to_string()))?;
            let keys = ValidatorKeys::load(&cfg.keys).map_err(|e| input(e.to_string()))?;
            let index = spec.index_of(&keys.identity_public()).ok_or_else(|| {
                input(format!("{}: this identity is not a validator of the genesis", cfg.keys.display()))
            })?;
            let index = u16::try_from(index).map_err(|_| input("validator index beyond u16".into()))?;
            let mut p = read(proposal).map_err(input)?;
            let approval = keys.approve(&spec.chain_id, index, &p).map_err(|e| input(e.to_string()))?;
            p.approvals.retain(|a| a.validator.0 != index);
            p.approvals.push(approval);
            p.approvals.sort_by_key(|a| a.validator.0);
            replace(proposal, &p).map_err(input)?;
            let mut out = format!(
                "validator {index} ({}) approved {} ({} approvals)\n",
                spec.validators[usize::from(index)].name,
                proposal.display(),
                p.approvals.len()
            );
            out.push_str(&report(&spec, &p).map_err(input)?.0);
            Ok(out)
        }
        GovernanceCommand::Check { genesis, proposal } => {
            let spec = ChainSpec::load(genesis).map_err(|e| input(e.to_string()))?;
            let p = read(proposal).map_err(input)?;
            let (text, passes) = report(&spec, &p).map_err(input)?;
            if passes { Ok(text) } else { Err((1, text)) }
        }
        GovernanceCommand::Submit { config, proposal } => {
            let cfg = crate::node::NodeConfig::load(config).map_err(input)?;
            let spec = ChainSpec::load(&cfg.genesis).map_err(|e| input(e.to_string()))?;
            let p = read(proposal).map_err(input)?;
            let (text, passes) = report(&spec, &p).map_err(input)?;
            if !passes {
                return Err((1, format!("{text}not submitted: a block carrying it would be refused")));
            }
            let dir = cfg.data_dir.join(GOVERNANCE_DIR);
            std::fs::create_dir_all(&dir)
                .map_err(|e| input(format!("cannot create {}: {e}", dir.display())))?;
            let name = format!("proposal-{}-{}.json", p.nonce, &hex_digest(&p)[..16]);
            let dest = dir.join(name);
            replace(&dest, &p).map_err(input)?;
            Ok(format!(
                "{text}queued as {}: this node's proposer includes it in a block it leads at heights \
                 {}..={} once the chain's governance nonce is {}",
                dest.display(),
                p.valid_from,
                p.valid_until,
                p.nonce.saturating_sub(1)
            ))
        }
    }
}

/// The genesis state as a block at the proposal's first height would see it, at the
/// proposal's nonce: what `check` and `propose` verify against (the live chain's parameters
/// may differ; its nonce and height are checked again by every validator).
fn probe_state(spec: &ChainSpec, p: &GovernanceProposal) -> Result<State, String> {
    let mut state = State::from_genesis(&spec.exchange)
        .map_err(|e| format!("the genesis does not build a state: {e}"))?;
    state.governance_nonce = p.nonce.saturating_sub(1);
    Ok(state)
}

/// Each approval's verdict, the signed stake and whether a block could carry the proposal.
fn report(spec: &ChainSpec, p: &GovernanceProposal) -> Result<(String, bool), String> {
    let state = probe_state(spec, p)?;
    let total: u128 = state.validators.iter().map(|v| u128::from(v.stake)).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proposal nonce {} heights {}..={}: {:?}",
        p.nonce, p.valid_from, p.valid_until, p.update
    );
    let mut signed: u128 = 0;
    for a in &p.approvals {
        let i = usize::from(a.validator.0);
        let name = spec.validators.get(i).map_or("?", |v| v.name.as_str());
        let mut alone = p.clone();
        alone.approvals = vec![a.clone()];
        let stake = state.validators.get(i).map_or(0, |v| v.stake);
        let verdict = match state.signature_verdict(&alone) {
            Ok(()) => {
                signed = signed.saturating_add(u128::from(stake));
                "valid".to_string()
            }
            Err(e) => format!("INVALID: {e}"),
        };
        let _ = writeln!(out, "  validator {i} ({name}), stake {stake}: {verdict}");
    }
    let verdict = state.proposal_verdict(p.valid_from, p);
    let _ = writeln!(out, "signed stake {signed} of {total} (2/3 needed)");
    match &verdict {
        Ok(_) => {
            let _ = writeln!(out, "PASSES: a block in its window at its nonce may carry it");
        }
        Err(e) => {
            let _ = writeln!(out, "DOES NOT PASS: {e}");
        }
    }
    Ok((out, verdict.is_ok()))
}

fn read(path: &Path) -> Result<GovernanceProposal, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a proposal file: {e}", path.display()))
}

fn encode(p: &GovernanceProposal) -> Result<Vec<u8>, String> {
    let mut text = serde_json::to_vec_pretty(p).map_err(|e| e.to_string())?;
    text.push(b'\n');
    Ok(text)
}

fn write_new(path: &Path, p: &GovernanceProposal) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{} exists; refusing to overwrite it", path.display()));
    }
    replace(path, p)
}

/// Writes `p` to a temporary file and renames it over `path` (a reader never sees half a file).
fn replace(path: &Path, p: &GovernanceProposal) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, encode(p)?).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
}

fn hex_digest(p: &GovernanceProposal) -> String {
    let bytes = encode(p).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}

/// The proposer's source of governance proposals: the JSON files in
/// `<data_dir>/governance/` (at most [`QUEUED_MAX`], each at most 1 MiB), reread at most once a
/// second. A file that does not parse is skipped and logged once. Files stay until the
/// operator removes them; one whose nonce the chain has passed is simply never admissible
/// again.
#[derive(Debug)]
pub struct GovernanceDir {
    dir: PathBuf,
    scanned: Option<Instant>,
    /// Each file read, by path: its size and modification time when read, and its proposal
    /// (`None`: it did not parse).
    files: std::collections::BTreeMap<PathBuf, FileStamp>,
    queued: Vec<GovernanceProposal>,
    warned: std::collections::BTreeSet<PathBuf>,
}

/// A proposal file's size and modification time when it was read, and what it held.
type FileStamp = ((u64, Option<std::time::SystemTime>), Option<GovernanceProposal>);

impl GovernanceDir {
    /// The source reading `<data_dir>/governance/`.
    pub fn new(data_dir: &Path) -> GovernanceDir {
        GovernanceDir {
            dir: data_dir.join(GOVERNANCE_DIR),
            scanned: None,
            files: Default::default(),
            queued: Vec::new(),
            warned: Default::default(),
        }
    }

    fn rescan(&mut self) {
        if self.scanned.is_some_and(|t| t.elapsed() < RESCAN) {
            return;
        }
        self.scanned = Some(Instant::now());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            self.files.clear();
            self.queued.clear();
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        if paths.len() > QUEUED_MAX && self.warned.insert(self.dir.clone()) {
            warn!(dir = %self.dir.display(), files = paths.len(), "more than {QUEUED_MAX} governance proposals queued; reading the first {QUEUED_MAX}");
        }
        paths.truncate(QUEUED_MAX);
        // A file is read again only when its size or modification time changed: this runs on
        // the proposer's path, so a steady queue costs one directory listing and a stat a file.
        let mut files = std::collections::BTreeMap::new();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let stamp = (meta.len(), meta.modified().ok());
            let parsed = match self.files.remove(&path) {
                Some((seen, parsed)) if seen == stamp => parsed,
                _ => {
                    let parsed = if meta.len() > FILE_MAX {
                        Err(format!("larger than {FILE_MAX} bytes"))
                    } else {
                        read(&path)
                    };
                    if let Err(e) = &parsed
                        && self.warned.insert(path.clone())
                    {
                        warn!(file = %path.display(), %e, "skipping a governance proposal file");
                    }
                    parsed.ok()
                }
            };
            files.insert(path, (stamp, parsed));
        }
        self.queued = files.values().filter_map(|(_, p)| p.clone()).collect();
        self.files = files;
    }
}

impl ProposalSource for GovernanceDir {
    fn take(&mut self, state: &State, height: u64) -> Vec<GovernanceProposal> {
        self.rescan();
        state.admissible_proposals(height, &self.queued)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_directory_source_offers_only_admissible_proposals_in_nonce_order() {
        let dir = tempfile::tempdir().unwrap();
        let seeds = [[1u8; 32], [2; 32], [3; 32]];
        let genesis = bastion_exchange::Genesis::devnet().with_validator_seeds(&seeds);
        let state = State::from_genesis(&genesis).unwrap();
        let signed = |nonce: u64, signers: &[u16]| {
            let mut p = GovernanceProposal {
                update: ParamUpdate::Haircut {
                    asset: bastion_types::AssetId(1),
                    haircut_ppm: 200_000 + nonce as i64,
                },
                nonce,
                valid_from: 1,
                valid_until: 10,
                approvals: vec![],
            };
            p.approvals = signers
                .iter()
                .map(|i| bastion_exchange::sign_approval(seeds[usize::from(*i)], *i, &genesis.chain_id, &p))
                .collect();
            p
        };
        let gov = dir.path().join(GOVERNANCE_DIR);
        std::fs::create_dir_all(&gov).unwrap();
        // Nonce 2 fully signed, nonce 1 signed by one of three (too little), a broken file.
        replace(&gov.join("b.json"), &signed(2, &[0, 1])).unwrap();
        replace(&gov.join("a.json"), &signed(1, &[0])).unwrap();
        std::fs::write(gov.join("c.json"), b"{ not json").unwrap();
        let mut source = GovernanceDir::new(dir.path());
        assert!(source.take(&state, 1).is_empty(), "nonce 1 lacks stake, so nonce 2 cannot go first");
        // Nonce 1 gets its second signature: both go, in order; outside the window neither.
        source.scanned = None;
        replace(&gov.join("a.json"), &signed(1, &[0, 2])).unwrap();
        let got = source.take(&state, 5);
        assert_eq!(got.iter().map(|p| p.nonce).collect::<Vec<_>>(), vec![1, 2]);
        assert!(source.take(&state, 11).is_empty());
    }
}
