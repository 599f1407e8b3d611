//! The node's side of the public network (issue 17): the `[public]` and `[api]` tables of
//! `node.toml`, the node's role, and (in [`crate::publish`]) what joins the libp2p network
//! (`bastion-gossip`), the follower and the API (`bastion-api`) to the node.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What a node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Votes and proposes with the keys of `keys` (the default).
    #[default]
    Validator,
    /// Holds no consensus keys and never votes: follows the chain over the public network,
    /// verifying every finalization certificate, executes it, serves the API.
    Full,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Validator => "validator",
            Role::Full => "full",
        })
    }
}

/// The `[public]` table: the libp2p network of full nodes, validators and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicSection {
    /// TCP address the libp2p listener binds; none: the node stays off the public network
    /// (a full node needs it).
    pub listen: Option<SocketAddr>,
    /// Peers to dial at start and whenever they drop: multiaddrs such as
    /// `/ip4/127.0.0.1/tcp/7600` (optionally ending in `/p2p/<peer id>`).
    pub bootstrap: Vec<String>,
    /// A file holding the 32-byte hex seed of this node's libp2p identity (its peer id). A
    /// validator without one derives it from its identity key; a full node without one makes
    /// a new identity at every start.
    pub key: Option<PathBuf>,
    /// Bound of each inbound queue (transactions, blocks, range requests) between the network
    /// thread and the node; over it messages are dropped and counted.
    pub inbound_queue: usize,
}

impl Default for PublicSection {
    fn default() -> Self {
        PublicSection { listen: None, bootstrap: Vec::new(), key: None, inbound_queue: 16_384 }
    }
}

/// The `[api]` table: the public REST and WebSocket API (`bastion-api`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// HTTP address of the API; none: no API (a full node without one only relays and
    /// serves blocks).
    pub listen: Option<SocketAddr>,
    /// Fills, orders, trades and transaction outcomes are kept for this many recent blocks.
    pub history_blocks: u64,
    /// Messages queued per WebSocket connection; a client further behind is closed.
    pub ws_buffer: usize,
    /// WebSocket connections per client IP.
    pub max_connections_per_ip: usize,
    /// Subscriptions per WebSocket connection.
    pub max_subscriptions_per_connection: usize,
    /// REST requests per second per client IP.
    pub rate_per_ip: u32,
    /// Serve `POST /v1/faucet` (only ever on a devnet chain, whose authority key is public).
    pub faucet: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: None,
            history_blocks: 1_000,
            ws_buffer: 4096,
            max_connections_per_ip: 256,
            max_subscriptions_per_connection: 64,
            rate_per_ip: 1000,
            faucet: true,
        }
    }
}

/// Checks the `[public]` and `[api]` tables; errors name the key.
pub fn check(file: &Path, role: Role, public: &PublicSection, api: &ApiSection) -> Result<(), String> {
    let file = file.display();
    if role == Role::Full && public.listen.is_none() {
        return Err(format!(
            "{file}: key `public.listen` is required when `role = \"full\"`: a full node follows the chain over the public network"
        ));
    }
    for (i, b) in public.bootstrap.iter().enumerate() {
        if !b.starts_with('/') || !b.contains("/tcp/") {
            return Err(format!(
                "{file}: key `public.bootstrap[{i}]` is {b:?}; expected a multiaddr like /ip4/127.0.0.1/tcp/7600"
            ));
        }
    }
    if !(16..=1 << 22).contains(&public.inbound_queue) {
        return Err(format!(
            "{file}: key `public.inbound_queue` is {}; allowed: 16 to {}",
            public.inbound_queue,
            1 << 22
        ));
    }
    for (key, v, lo, hi) in [
        ("history_blocks", api.history_blocks, 1, 1_000_000),
        ("ws_buffer", api.ws_buffer as u64, 16, 1 << 20),
        ("max_connections_per_ip", api.max_connections_per_ip as u64, 1, 1 << 16),
        ("max_subscriptions_per_connection", api.max_subscriptions_per_connection as u64, 1, 4096),
        ("rate_per_ip", u64::from(api.rate_per_ip), 1, 1_000_000),
    ] {
        if !(lo..=hi).contains(&v) {
            return Err(format!("{file}: key `api.{key}` is {v}; allowed: {lo} to {hi}"));
        }
    }
    Ok(())
}

/// Reads a `[public] key` file: 64 hex digits (whitespace around them ignored).
pub fn read_seed(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("public.key {}: {e}", path.display()))?;
    let hex = text.trim();
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!(
            "public.key {}: expected 64 hex digits, found {} characters",
            path.display(),
            hex.len()
        ));
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("public.key {}: not hex at character {}", path.display(), 2 * i))?;
    }
    Ok(out)
}

/// The libp2p identity seed a validator derives from its identity key when `[public] key` is
/// not set (a different key from the consensus identity: a leak of one is not a leak of the
/// other).
pub fn derived_seed(identity_seed: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("bastion 2026-12 public p2p identity v1", identity_seed)
}
