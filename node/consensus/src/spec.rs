//! The chain spec (genesis file), validator keys and BLS proofs of possession.
//!
//! A network is defined by one JSON genesis file, [`ChainSpec`]: the chain id, the exchange
//! genesis and the validator set. Each validator is listed with its p2p identity (ed25519), its
//! BLS12-381 (`MinSig`) consensus key, a proof of possession of that key bound to the chain id,
//! and the address its p2p listener is reachable at. Every node checks the whole file
//! ([`ChainSpec::validate`], run by [`ChainSpec::load`]) before it starts: multisig certificates
//! are only safe when every BLS key has a verified proof of possession (it rules out rogue-key
//! attacks on aggregated signatures).
//!
//! A validator's secrets live in a separate JSON file, [`ValidatorKeys`], created with mode 0600
//! and never overwritten.
//!
//! Participant indices: the consensus scheme orders participants by identity key (commonware's
//! `BiMap` sorts its keys), so a validator's consensus index is its position in the sorted
//! identities, not its position in the file. [`ChainSpec::index_of`] returns the file position,
//! which is the index of `exchange.validator_stakes`.

use bastion_store::hex;
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::simplex::scheme::bls12381_multisig;
use commonware_cryptography::bls12381::primitives::group;
use commonware_cryptography::bls12381::primitives::ops;
use commonware_cryptography::bls12381::primitives::variant::{MinSig, Variant};
use commonware_cryptography::{Hasher, Sha256, Signer, ed25519};
use commonware_math::algebra::Random;
use commonware_utils::TryFromIterator;
use commonware_utils::ordered::BiMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The consensus signing scheme: BLS12-381 multisig (`MinSig`: public keys in G2, 96 bytes;
/// signatures in G1, 48 bytes) with ed25519 identities.
pub type Multisig = bls12381_multisig::Scheme<ed25519::PublicKey, MinSig>;

/// A BLS public key of the `MinSig` variant.
pub type BlsPublic = <MinSig as Variant>::Public;

/// A BLS signature of the `MinSig` variant (also the proof of possession).
pub type BlsSignature = <MinSig as Variant>::Signature;

/// The largest validator set a genesis file may list.
pub const MAX_VALIDATORS: usize = 256;

/// The longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// Errors of loading, saving and checking chain specs and keys files.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid JSON for its type.
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// A keys file exists where a new one was to be written.
    #[error("{} exists; keys are never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A keys file is accessible by group or others.
    #[error(
        "{} is accessible by group or others (mode {mode:o}); secret keys must be private: chmod 600 {}",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is well-formed JSON but not a valid spec or keys file.
    #[error("{0}")]
    Invalid(String),
}

impl SpecError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        SpecError::Io { path: path.to_path_buf(), source }
    }

    fn json(path: &Path, e: &serde_json::Error) -> Self {
        SpecError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// The proof-of-possession namespace of a chain: `b"bastion-pop:" + chain_id`. Binding the
/// proof to the chain id keeps a proof from one network from being replayed on another.
pub fn pop_namespace(chain_id: &str) -> Vec<u8> {
    let mut ns = b"bastion-pop:".to_vec();
    ns.extend_from_slice(chain_id.as_bytes());
    ns
}

/// Decodes hex (either case, no prefix, no whitespace).
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?)).collect()
}

/// Decodes a hex field into `T`, with an error naming `what` (e.g. "validator 2 (v2): identity").
fn decode_hex<T: DecodeExt<()>>(what: &str, value: &str, kind: &str) -> Result<T, SpecError> {
    let bytes = from_hex(value).ok_or_else(|| SpecError::Invalid(format!("{what} is not valid hex")))?;
    T::decode(bytes).map_err(|e| SpecError::Invalid(format!("{what} is not a valid {kind}: {e}")))
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and renamed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpecError> {
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = fs::File::create(&tmp).map_err(|e| SpecError::io(&tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| SpecError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| SpecError::io(path, e))?;
    sync_parent(path);
    Ok(())
}

/// Best-effort fsync of `path`'s directory, so a new directory entry is durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// One validator as the genesis file lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    /// Human-readable name, unique in the set.
    pub name: String,
    /// Hex ed25519 public key (32 bytes): the p2p identity.
    pub identity: String,
    /// Hex BLS12-381 `MinSig` public key (96 bytes, commonware codec encoding).
    pub bls_public: String,
    /// Hex proof of possession of `bls_public`:
    /// `ops::sign_proof_of_possession::<MinSig>(&private, &pop_namespace(chain_id))`.
    pub bls_pop: String,
    /// Where this validator's p2p listener is reachable.
    pub address: SocketAddr,
    /// Where clients send this validator signed transactions (UDP), if it takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<SocketAddr>,
}

/// A validator's keys decoded from its [`ValidatorInfo`].
struct Decoded {
    identity: ed25519::PublicKey,
    bls_public: BlsPublic,
    bls_pop: BlsSignature,
}

impl ValidatorInfo {
    /// Decodes the hex fields; errors name the validator (`index`, name) and the field.
    fn decode(&self, index: usize) -> Result<Decoded, SpecError> {
        let who = format!("validator {index} ({})", self.name);
        Ok(Decoded {
            identity: decode_hex(&format!("{who}: identity"), &self.identity, "ed25519 public key")?,
            bls_public: decode_hex(&format!("{who}: bls_public"), &self.bls_public, "BLS MinSig public key")?,
            bls_pop: decode_hex(&format!("{who}: bls_pop"), &self.bls_pop, "BLS MinSig signature")?,
        })
    }
}

/// The genesis file: chain id, exchange genesis and validator set. Stored as pretty JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSpec {
    /// The chain id: 1..=64 ASCII characters from `[A-Za-z0-9._-]`.
    pub chain_id: String,
    /// The exchange's genesis; `validator_stakes` is indexed like `validators`.
    pub exchange: bastion_exchange::Genesis,
    /// The validator set, in file order.
    pub validators: Vec<ValidatorInfo>,
    /// Most transactions one block may carry: every validator decodes, verifies and builds
    /// blocks under this one limit (a protocol parameter, so it lives here and not in a node's
    /// config). 1..=`bastion_exchange::BLOCK_TXS_MAX`; default 4,096.
    #[serde(default = "default_block_txs_max")]
    pub block_txs_max: usize,
}

/// The default of [`ChainSpec::block_txs_max`].
pub const DEFAULT_BLOCK_TXS_MAX: usize = crate::block::DEFAULT_BLOCK_TXS;

fn default_block_txs_max() -> usize {
    DEFAULT_BLOCK_TXS_MAX
}

impl ChainSpec {
    /// A spec from its parts, with the exchange genesis bound to them: `exchange.chain_id` is
    /// set to `chain_id` and `exchange.validator_keys` to the validators' identities, in order
    /// (what [`Self::validate`] requires).
    pub fn assemble(
        chain_id: &str,
        mut exchange: bastion_exchange::Genesis,
        validators: Vec<ValidatorInfo>,
    ) -> ChainSpec {
        exchange.chain_id = chain_id.to_string();
        exchange.validator_keys = validators.iter().map(|v| v.identity.to_ascii_lowercase()).collect();
        ChainSpec {
            chain_id: chain_id.to_string(),
            exchange,
            validators,
            block_txs_max: DEFAULT_BLOCK_TXS_MAX,
        }
    }

    /// Reads, parses and [validates](Self::validate) a genesis file. Errors name the file, and
    /// for JSON errors the line and column.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = fs::read_to_string(path).map_err(|e| SpecError::io(path, e))?;
        let spec: ChainSpec = serde_json::from_str(&text).map_err(|e| SpecError::json(path, &e))?;
        spec.validate().map_err(|e| match e {
            SpecError::Invalid(msg) => SpecError::Invalid(format!("{}: {msg}", path.display())),
            other => other,
        })?;
        Ok(spec)
    }

    /// Writes the spec as pretty JSON (a temporary file, fsynced, then renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<(), SpecError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| SpecError::json(path, &e))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Checks the whole spec: the chain id; 1..=[`MAX_VALIDATORS`] validators; every hex field
    /// decodes to its type; names, identities, BLS keys and addresses are unique; every proof
    /// of possession verifies for this chain id; `exchange.validator_stakes` has one stake per
    /// validator and the exchange genesis builds a state. Each error names the validator (index
    /// and name) and the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        let id = &self.chain_id;
        if id.is_empty() || id.len() > MAX_CHAIN_ID_LEN {
            return Err(SpecError::Invalid(format!(
                "chain_id {id:?} must be 1..={MAX_CHAIN_ID_LEN} characters long"
            )));
        }
        if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(SpecError::Invalid(format!(
                "chain_id {id:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
            )));
        }
        let n = self.validators.len();
        if n == 0 || n > MAX_VALIDATORS {
            return Err(SpecError::Invalid(format!("validators: {n} listed, 1..={MAX_VALIDATORS} required")));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut identities: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut bls_keys: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
        let pop_ns = pop_namespace(id);
        let who = |i: usize| format!("validator {i} ({})", self.validators[i].name);
        for (i, v) in self.validators.iter().enumerate() {
            if v.name.trim().is_empty() {
                return Err(SpecError::Invalid(format!("validator {i}: name is empty")));
            }
            let d = v.decode(i)?;
            if let Some(j) = names.insert(v.name.as_str(), i) {
                return Err(SpecError::Invalid(format!("{}: name duplicates validator {j}", who(i))));
            }
            if let Some(j) = identities.insert(d.identity.encode().to_vec(), i) {
                return Err(SpecError::Invalid(format!("{}: identity duplicates {}", who(i), who(j))));
            }
            if let Some(j) = bls_keys.insert(d.bls_public.encode().to_vec(), i) {
                return Err(SpecError::Invalid(format!("{}: bls_public duplicates {}", who(i), who(j))));
            }
            if let Some(j) = addresses.insert(v.address, i) {
                return Err(SpecError::Invalid(format!(
                    "{}: address {} duplicates {}",
                    who(i),
                    v.address,
                    who(j)
                )));
            }
            if ops::verify_proof_of_possession::<MinSig>(&d.bls_public, &pop_ns, &d.bls_pop).is_err() {
                return Err(SpecError::Invalid(format!(
                    "{}: bls_pop does not verify for bls_public (was it generated for another chain id?)",
                    who(i)
                )));
            }
        }
        let stakes = self.exchange.validator_stakes.len();
        if stakes != n {
            return Err(SpecError::Invalid(format!(
                "exchange.validator_stakes lists {stakes} stakes for {n} validators; one stake per \
                 validator is required, in the order of `validators`"
            )));
        }
        if !self.exchange.devnet && self.exchange.authority.is_some() {
            return Err(SpecError::Invalid(
                "exchange.authority is set but exchange.devnet is false: a production chain has no single key \
                 that mints collateral or changes parameters (deposits are credited by 2/3 of stake's \
                 attestations, parameters changed by 2/3 of stake's governance); remove exchange.authority, \
                 or set exchange.devnet to true for a test network"
                    .into(),
            ));
        }
        if !(1..=bastion_exchange::BLOCK_TXS_MAX).contains(&self.block_txs_max) {
            return Err(SpecError::Invalid(format!(
                "block_txs_max {} must be within 1..={}",
                self.block_txs_max,
                bastion_exchange::BLOCK_TXS_MAX
            )));
        }
        if self.exchange.chain_id != self.chain_id {
            return Err(SpecError::Invalid(format!(
                "exchange.chain_id is {:?} but chain_id is {id:?}: governance signatures are bound to the \
                 chain id, so both must be the same",
                self.exchange.chain_id
            )));
        }
        let keys = &self.exchange.validator_keys;
        if keys.len() != n {
            return Err(SpecError::Invalid(format!(
                "exchange.validator_keys lists {} keys for {n} validators; it must list every validator's \
                 identity, in the order of `validators` (they sign governance approvals)",
                keys.len()
            )));
        }
        for (i, (k, v)) in keys.iter().zip(&self.validators).enumerate() {
            if !k.eq_ignore_ascii_case(&v.identity) {
                return Err(SpecError::Invalid(format!(
                    "exchange.validator_keys[{i}] is {k} but {}'s identity is {}",
                    who(i),
                    v.identity
                )));
            }
        }
        bastion_exchange::State::from_genesis(&self.exchange)
            .map_err(|e| SpecError::Invalid(format!("exchange: {e}")))?;
        Ok(())
    }

    /// The block limits every validator of this chain decodes, verifies and builds under.
    pub fn block_limits(&self) -> crate::block::BlockLimits {
        crate::block::BlockLimits { max_txs: self.block_txs_max, ..crate::block::BlockLimits::default() }
    }

    /// Whether this chain is a test network (`exchange.devnet`): only there may a genesis
    /// authority exist (credit deposits, change parameters).
    pub fn is_devnet(&self) -> bool {
        self.exchange.devnet
    }

    /// The consensus and p2p namespace: `b"bastion:" + chain_id`.
    pub fn namespace(&self) -> Vec<u8> {
        let mut ns = b"bastion:".to_vec();
        ns.extend_from_slice(self.chain_id.as_bytes());
        ns
    }

    fn decoded(&self) -> Result<Vec<Decoded>, SpecError> {
        self.validators.iter().enumerate().map(|(i, v)| v.decode(i)).collect()
    }

    /// The consensus participants: identity to BLS public key, ordered by identity (the
    /// consensus index of a validator is its position in this order).
    pub fn participants(&self) -> Result<BiMap<ed25519::PublicKey, BlsPublic>, SpecError> {
        let pairs = self.decoded()?.into_iter().map(|d| (d.identity, d.bls_public));
        BiMap::try_from_iter(pairs)
            .map_err(|e| SpecError::Invalid(format!("validators: duplicate identity or bls_public: {e}")))
    }

    /// Every validator's identity and p2p address, in file order.
    pub fn peers(&self) -> Result<Vec<(ed25519::PublicKey, SocketAddr)>, SpecError> {
        Ok(self.decoded()?.into_iter().zip(&self.validators).map(|(d, v)| (d.identity, v.address)).collect())
    }

    /// The position of `identity` in `validators` (file order, the index of
    /// `exchange.validator_stakes`); `None` when it is not a validator.
    pub fn index_of(&self, identity: &ed25519::PublicKey) -> Option<usize> {
        let want = hex(&identity.encode());
        self.validators.iter().position(|v| v.identity.eq_ignore_ascii_case(&want))
    }

    /// The consensus signing scheme of the validator holding `keys`. Fails when the keys'
    /// identity is not in the set, or when its BLS public key differs from the listed one.
    pub fn scheme(&self, keys: &ValidatorKeys) -> Result<Multisig, SpecError> {
        let me = keys.identity_public();
        let i = self.index_of(&me).ok_or_else(|| {
            SpecError::Invalid(format!(
                "identity {} is not in the validator set of chain {}",
                hex(&me.encode()),
                self.chain_id
            ))
        })?;
        let listed = self.validators[i].decode(i)?.bls_public;
        if listed != keys.bls_public() {
            return Err(SpecError::Invalid(format!(
                "validator {i} ({}): bls_public in the genesis file is {}, but the keys file's BLS key is {}",
                self.validators[i].name,
                self.validators[i].bls_public,
                hex(&keys.bls_public().encode())
            )));
        }
        Multisig::signer(&self.namespace(), self.participants()?, keys.bls_private()).ok_or_else(|| {
            SpecError::Invalid(format!(
                "validator {i} ({}): the BLS key is not among the participants",
                self.validators[i].name
            ))
        })
    }

    /// SHA-256 of the canonical (compact) JSON encoding: identifies the network; printed by
    /// `bastion init` and at node start so operators can compare.
    pub fn digest(&self) -> [u8; 32] {
        // Serializing plain structs, strings, numbers and addresses into memory cannot fail; should
        // it ever, the error text is hashed, which can match no real spec.
        let bytes =
            serde_json::to_vec(self).unwrap_or_else(|e| format!("unserializable spec: {e}").into_bytes());
        let digest = Sha256::hash(&[&bytes]);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

/// The keys file's JSON form. Public keys are stored too, as a check against corruption.
#[derive(Serialize, Deserialize)]
struct KeysFile {
    /// Hex ed25519 public key.
    identity: String,
    /// Hex BLS public key.
    bls_public: String,
    /// Hex ed25519 private key (secret).
    identity_private: String,
    /// Hex BLS private scalar (secret).
    bls_private: String,
}

/// A validator's secret keys: its ed25519 p2p identity and its BLS consensus key. Stored as a
/// JSON file with hex secrets, created with mode 0600 and never overwritten.
#[derive(Clone)]
pub struct ValidatorKeys {
    identity: ed25519::PrivateKey,
    bls: group::Private,
}

impl std::fmt::Debug for ValidatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorKeys")
            .field("identity", &hex(&self.identity_public().encode()))
            .field("bls_public", &hex(&self.bls_public().encode()))
            .finish_non_exhaustive()
    }
}

impl ValidatorKeys {
    /// Fresh keys from the operating system's entropy source.
    pub fn generate() -> Self {
        ValidatorKeys {
            identity: ed25519::PrivateKey::random(commonware_utils::sys_rng()),
            bls: group::Private::random(commonware_utils::sys_rng()),
        }
    }

    /// Deterministic keys derived from `seed`.
    ///
    /// INSECURE: anyone who knows (or guesses) the seed has the keys. For tests and local
    /// development networks only, never for a network that holds value.
    pub fn from_seed(seed: u64) -> Self {
        ValidatorKeys {
            identity: ed25519::PrivateKey::from_seed(seed),
            bls: group::Private::random(commonware_utils::TestRng::new(seed)),
        }
    }

    /// Reads a keys file. Refuses a file accessible by group or others (on unix), and one whose
    /// stored public keys do not match its secrets.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(path).map_err(|e| SpecError::io(path, e))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SpecError::InsecurePermissions { path: path.to_path_buf(), mode });
            }
        }
        let text = fs::read_to_string(path).map_err(|e| SpecError::io(path, e))?;
        let file: KeysFile = serde_json::from_str(&text).map_err(|e| SpecError::json(path, &e))?;
        let what = |field: &str| format!("{}: {field}", path.display());
        let keys = ValidatorKeys {
            identity: decode_hex(&what("identity_private"), &file.identity_private, "ed25519 private key")?,
            bls: decode_hex(&what("bls_private"), &file.bls_private, "BLS private key")?,
        };
        if !file.identity.eq_ignore_ascii_case(&hex(&keys.identity_public().encode())) {
            return Err(SpecError::Invalid(format!(
                "{}: identity does not match identity_private (damaged file?)",
                path.display()
            )));
        }
        if !file.bls_public.eq_ignore_ascii_case(&hex(&keys.bls_public().encode())) {
            return Err(SpecError::Invalid(format!(
                "{}: bls_public does not match bls_private (damaged file?)",
                path.display()
            )));
        }
        Ok(keys)
    }

    /// Writes a new keys file with mode 0600 (fsynced). Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), SpecError> {
        let file = KeysFile {
            identity: hex(&self.identity_public().encode()),
            bls_public: hex(&self.bls_public().encode()),
            identity_private: hex(&self.identity.encode()),
            bls_private: hex(&self.bls.encode()),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|e| SpecError::json(path, &e))?;
        text.push('\n');
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SpecError::Exists { path: path.to_path_buf() }
            } else {
                SpecError::io(path, e)
            }
        })?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| SpecError::io(path, e))?;
        sync_parent(path);
        Ok(())
    }

    /// The ed25519 identity (p2p) private key.
    pub fn identity(&self) -> ed25519::PrivateKey {
        self.identity.clone()
    }

    /// The ed25519 identity public key.
    pub fn identity_public(&self) -> ed25519::PublicKey {
        self.identity.public_key()
    }

    /// The BLS consensus private key.
    pub fn bls_private(&self) -> group::Private {
        self.bls.clone()
    }

    /// The BLS consensus public key.
    pub fn bls_public(&self) -> BlsPublic {
        ops::compute_public::<MinSig>(&self.bls)
    }

    /// The identity key's 32-byte secret seed (RFC 8032): what signs governance approvals
    /// and oracle observations through the exchange's ed25519 rule.
    pub fn identity_seed(&self) -> Result<[u8; 32], SpecError> {
        self.identity.encode().as_ref().try_into().map_err(|_| {
            SpecError::Invalid("the identity private key does not encode to a 32-byte seed".into())
        })
    }

    /// This validator's approval of a governance proposal on chain `chain_id`, as validator
    /// `index` of the genesis file: an ed25519 signature by its identity key over
    /// [`bastion_types::governance_message`] (the exchange verifies it with the ZIP-215 rule).
    pub fn approve(
        &self,
        chain_id: &str,
        index: u16,
        proposal: &bastion_types::GovernanceProposal,
    ) -> Result<bastion_types::Approval, SpecError> {
        let seed: [u8; 32] = self.identity.encode().as_ref().try_into().map_err(|_| {
            SpecError::Invalid("the identity private key does not encode to a 32-byte seed".into())
        })?;
        Ok(bastion_exchange::sign_approval(seed, index, chain_id, proposal))
    }

    /// This validator's genesis entry for chain `chain_id`, with a proof of possession.
    pub fn info(&self, name: &str, address: SocketAddr, chain_id: &str) -> ValidatorInfo {
        let pop = ops::sign_proof_of_possession::<MinSig>(&self.bls, &pop_namespace(chain_id));
        ValidatorInfo {
            name: name.to_string(),
            identity: hex(&self.identity_public().encode()),
            bls_public: hex(&self.bls_public().encode()),
            bls_pop: hex(&pop.encode()),
            address,
            ingress: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use commonware_consensus::simplex::types::Subject;
    use commonware_consensus::types::{Epoch, Round, View};
    use commonware_cryptography::certificate::{Membership, Scheme as _};
    use commonware_utils::Participant;

    const CHAIN: &str = "bastion-test";

    fn addr(i: usize) -> SocketAddr {
        format!("127.0.0.1:{}", 7400 + i).parse().unwrap()
    }

    fn keys(n: usize) -> Vec<ValidatorKeys> {
        (0..n).map(|i| ValidatorKeys::from_seed(1000 + i as u64)).collect()
    }

    fn spec(keys: &[ValidatorKeys]) -> ChainSpec {
        let mut exchange = bastion_exchange::Genesis::devnet();
        exchange.validator_stakes = vec![1; keys.len()];
        let validators =
            keys.iter().enumerate().map(|(i, k)| k.info(&format!("v{i}"), addr(i), CHAIN)).collect();
        ChainSpec::assemble(CHAIN, exchange, validators)
    }

    fn err(spec: &ChainSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn observations_signed_with_the_identity_seed_verify_against_the_genesis_key_and_the_p2p_identity() {
        let keys = keys(4);
        let spec = spec(&keys);
        let state = bastion_exchange::State::from_genesis(&spec.exchange).unwrap();
        for (i, k) in keys.iter().enumerate() {
            // The genesis key is the p2p identity: gossip's sender check compares them.
            let key = state.validators[i].key.unwrap();
            assert_eq!(key.as_slice(), k.identity_public().encode().as_ref());
            let o = bastion_types::Observation {
                validator: bastion_types::ValidatorIndex(i as u16),
                height: 1,
                timestamp_ms: spec.exchange.timestamp_ms,
                prices: vec![(bastion_types::UnderlyingId(0), 100)],
                vols: Vec::new(),
            };
            let signed = bastion_exchange::sign_observation(k.identity_seed().unwrap(), &spec.chain_id, o);
            assert_eq!(state.observation_verdict(&signed), Ok(()));
        }
    }

    #[test]
    fn validators_approvals_pass_the_exchange_and_bind_the_genesis() {
        let keys = keys(4);
        let spec = spec(&keys);
        spec.validate().unwrap();
        let mut state = bastion_exchange::State::from_genesis(&spec.exchange).unwrap();
        let mut p = bastion_types::GovernanceProposal {
            update: bastion_types::ParamUpdate::Haircut {
                asset: bastion_types::AssetId(1),
                haircut_ppm: 300_000,
            },
            nonce: 1,
            valid_from: 1,
            valid_until: 2,
            approvals: vec![],
        };
        // The keys files' identities sign what the exchange verifies (3 of 4 equal stakes).
        p.approvals = (0..3u16).map(|i| keys[usize::from(i)].approve(CHAIN, i, &p).unwrap()).collect();
        let block = bastion_types::Block {
            height: 1,
            timestamp_ms: spec.exchange.timestamp_ms + 1,
            oracle: vec![],
            txs: vec![],
            proposals: vec![p.clone()],
            ..Default::default()
        };
        state.apply_block(&block).unwrap();
        assert_eq!(state.pending.len(), 1);
        // Signed as the wrong index: refused.
        let mut state = bastion_exchange::State::from_genesis(&spec.exchange).unwrap();
        let mut wrong = p.clone();
        wrong.approvals =
            (0..3u16).map(|i| keys[usize::from(i)].approve(CHAIN, (i + 1) % 4, &p).unwrap()).collect();
        let block = bastion_types::Block { proposals: vec![wrong], ..block };
        assert!(state.apply_block(&block).is_err());

        // The genesis must bind the chain id and every validator's key, in order.
        let mut s = spec.clone();
        s.exchange.chain_id = "other".into();
        assert!(err(&s).contains("exchange.chain_id"), "{}", err(&s));
        let mut s = spec.clone();
        s.exchange.validator_keys.swap(0, 1);
        assert!(err(&s).contains("exchange.validator_keys[0]"), "{}", err(&s));
        let mut s = spec.clone();
        s.exchange.validator_keys.pop();
        assert!(err(&s).contains("lists 3 keys for 4 validators"), "{}", err(&s));
        // A chain that is not a devnet has no authority at all: not the devnet key, not its own.
        for authority in [bastion_client::devnet_authority().account(), bastion_types::AccountId(0x5eed)] {
            let mut s = spec.clone();
            s.exchange.devnet = false;
            s.exchange.authority = Some(authority);
            assert!(err(&s).contains("a production chain has no single key"), "{}", err(&s));
            s.exchange.authority = None;
            s.validate().unwrap();
        }
    }

    #[test]
    fn spec_round_trips_through_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let s = spec(&keys(4));
        s.validate().unwrap();
        s.save(&path).unwrap();
        let loaded = ChainSpec::load(&path).unwrap();
        assert_eq!(loaded, s);
        assert_eq!(loaded.digest(), s.digest());
        assert_eq!(s.namespace(), b"bastion:bastion-test");
        assert_eq!(s.peers().unwrap().len(), 4);
        assert_eq!(s.participants().unwrap().len(), 4);
        for (i, k) in keys(4).iter().enumerate() {
            assert_eq!(s.index_of(&k.identity_public()), Some(i));
        }
        assert_eq!(s.index_of(&ValidatorKeys::from_seed(1).identity_public()), None);
        let mut other = s.clone();
        other.chain_id = "bastion-other".into();
        assert_ne!(other.digest(), s.digest());
    }

    #[test]
    fn load_reports_file_and_position_of_json_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        fs::write(&path, "{\n  \"chain_id\": \"x\",\n  oops\n}").unwrap();
        let e = ChainSpec::load(&path).unwrap_err().to_string();
        assert!(e.contains("genesis.json") && e.contains("line 3"), "{e}");
        let mut s = spec(&keys(2));
        s.validators[1].bls_pop = s.validators[0].bls_pop.clone();
        fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let e = ChainSpec::load(&path).unwrap_err().to_string();
        assert!(e.contains("genesis.json") && e.contains("validator 1 (v1): bls_pop"), "{e}");
    }

    #[test]
    fn pop_for_another_chain_is_refused() {
        let ks = keys(4);
        let mut s = spec(&ks);
        s.validators[2] = ks[2].info("v2", addr(2), "bastion-other");
        let e = err(&s);
        assert!(e.contains("validator 2 (v2): bls_pop does not verify"), "{e}");
        assert!(e.contains("another chain id"), "{e}");
    }

    #[test]
    fn tampered_bls_public_is_refused() {
        let ks = keys(4);
        let mut s = spec(&ks);
        s.validators[1].bls_public = hex(&ValidatorKeys::from_seed(77).bls_public().encode());
        let e = err(&s);
        assert!(e.contains("validator 1 (v1): bls_pop does not verify"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let ks = keys(4);
        let mut s = spec(&ks);
        s.validators[3].identity = s.validators[1].identity.clone();
        let e = err(&s);
        assert!(e.contains("validator 3 (v3): identity duplicates validator 1 (v1)"), "{e}");

        let mut s = spec(&ks);
        s.validators[2].address = addr(0);
        let e = err(&s);
        assert!(e.contains("validator 2 (v2): address 127.0.0.1:7400 duplicates validator 0 (v0)"), "{e}");

        let mut s = spec(&ks);
        s.validators[2].name = "v0".into();
        let e = err(&s);
        assert!(e.contains("validator 2 (v0): name duplicates validator 0"), "{e}");

        let mut s = spec(&ks);
        s.validators[3] = ks[1].info("v3", addr(3), CHAIN);
        s.validators[3].identity = hex(&ks[3].identity_public().encode());
        let e = err(&s);
        assert!(e.contains("validator 3 (v3): bls_public duplicates validator 1 (v1)"), "{e}");
    }

    #[test]
    fn stake_count_mismatch_is_refused() {
        let mut s = spec(&keys(4));
        s.exchange.validator_stakes = vec![1; 3];
        let e = err(&s);
        assert!(e.contains("exchange.validator_stakes lists 3 stakes for 4 validators"), "{e}");
    }

    #[test]
    fn bad_hex_and_bad_keys_are_refused() {
        let ks = keys(4);
        let mut s = spec(&ks);
        s.validators[1].identity = "zz".into();
        assert!(err(&s).contains("validator 1 (v1): identity is not valid hex"), "{}", err(&s));

        let mut s = spec(&ks);
        s.validators[2].bls_public.pop();
        assert!(err(&s).contains("validator 2 (v2): bls_public is not valid hex"), "{}", err(&s));

        let mut s = spec(&ks);
        s.validators[2].bls_pop = "00".repeat(48);
        assert!(err(&s).contains("validator 2 (v2): bls_pop is not a valid BLS"), "{}", err(&s));

        let mut s = spec(&ks);
        s.validators[0].identity = "ab".repeat(31);
        assert!(err(&s).contains("validator 0 (v0): identity is not a valid ed25519"), "{}", err(&s));
    }

    #[test]
    fn chain_id_and_set_size_are_checked() {
        let ks = keys(1);
        let mut s = spec(&ks);
        s.validate().unwrap();
        s.chain_id = "bad id".into();
        assert!(err(&s).contains("chain_id"));
        s.chain_id = String::new();
        assert!(err(&s).contains("chain_id"));
        s.chain_id = "x".repeat(65);
        assert!(err(&s).contains("chain_id"));
        let mut s = spec(&ks);
        s.validators.clear();
        assert!(err(&s).contains("validators: 0 listed"));
    }

    #[test]
    fn keys_file_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let k = ValidatorKeys::generate();
        k.save(&path).unwrap();
        let loaded = ValidatorKeys::load(&path).unwrap();
        assert_eq!(loaded.identity_public(), k.identity_public());
        assert_eq!(loaded.bls_public(), k.bls_public());
        assert_eq!(loaded.bls_private(), k.bls_private());
        let e = ValidatorKeys::generate().save(&path).unwrap_err().to_string();
        assert!(e.contains("keys.json exists; keys are never overwritten"), "{e}");
        assert_eq!(ValidatorKeys::load(&path).unwrap().identity_public(), k.identity_public());
        // Debug shows public keys only.
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&hex(&k.identity_public().encode())));
        assert!(!dbg.contains(&hex(&k.bls_private().encode())));
        assert!(!dbg.contains(&hex(&k.identity().encode())));
    }

    #[cfg(unix)]
    #[test]
    fn keys_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        ValidatorKeys::from_seed(5).save(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ValidatorKeys::load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains(&format!("chmod 600 {}", path.display())), "{e}");
    }

    #[test]
    fn seeded_keys_are_deterministic_and_distinct() {
        let a = ValidatorKeys::from_seed(9);
        let b = ValidatorKeys::from_seed(9);
        let c = ValidatorKeys::from_seed(10);
        assert_eq!(a.identity_public(), b.identity_public());
        assert_eq!(a.bls_public(), b.bls_public());
        assert_ne!(a.identity_public(), c.identity_public());
        assert_ne!(a.bls_public(), c.bls_public());
    }

    #[test]
    fn scheme_signs_at_the_sorted_index_and_verifies() {
        let ks = keys(4);
        let s = spec(&ks);
        let participants = s.participants().unwrap();
        let verifier = Multisig::verifier(&s.namespace(), participants.clone());
        let round = Round::new(Epoch::new(0), View::new(7));
        let subject =
            || -> Subject<'static, commonware_cryptography::sha256::Digest> { Subject::Nullify { round } };
        let mut rng = commonware_utils::test_rng();
        let mut seen = Vec::new();
        for k in &ks {
            let scheme = s.scheme(k).unwrap();
            let want = participants.iter().position(|p| *p == k.identity_public()).unwrap();
            let me = scheme.me().unwrap();
            assert_eq!(me, Membership::Signer(Participant::new(want as u32)));
            seen.push(want);
            let vote = scheme.sign(subject()).unwrap();
            assert!(verifier.verify_attestation(
                &mut rng,
                subject(),
                &vote,
                &commonware_parallel::Sequential
            ));
            // A vote for another round does not verify.
            let other: Subject<'_, commonware_cryptography::sha256::Digest> =
                Subject::Nullify { round: Round::new(Epoch::new(0), View::new(8)) };
            assert!(!verifier.verify_attestation(&mut rng, other, &vote, &commonware_parallel::Sequential));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }

    #[test]
    fn scheme_refuses_keys_not_in_the_set() {
        let ks = keys(4);
        let s = spec(&ks);
        let e = s.scheme(&ValidatorKeys::from_seed(99)).unwrap_err().to_string();
        assert!(e.contains("is not in the validator set"), "{e}");
        // Right identity, wrong BLS key.
        let mut s2 = s.clone();
        let stranger = ValidatorKeys::from_seed(99);
        s2.validators[1] = stranger.info("v1", addr(1), CHAIN);
        s2.validators[1].identity = hex(&ks[1].identity_public().encode());
        let e = s2.scheme(&ks[1]).unwrap_err().to_string();
        assert!(e.contains("validator 1 (v1): bls_public"), "{e}");
    }
}
