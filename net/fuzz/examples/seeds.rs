//! Builds seed inputs for the fuzz targets from a devnet's block log (real traffic).
//!
//! ```text
//! cargo run --features seeds --example seeds -- --log DIR --out DIR [--ingress IP:PORT]
//!     [--max-len 1400] [--per-kind 12]
//! ```
//!
//! `--log` is a validator's block log (`<devnet data dir>/v0/data/log`). Every finalized log
//! entry holds the block's transactions and, in its witness, each one's public key and
//! signature, so the datagram a client sent is rebuilt exactly:
//!
//! - `packet/`: the signed datagram as the ingress receives it (`packet::encode(pk, sig,
//!   encode_body(nonce, action))`); it must decode back to the logged signer, nonce and action;
//! - `body/`: its body (`tx::encode_body`);
//! - `l2/`: the datagram in an Ethernet/IPv4/UDP frame (`l2::build_udp_frame`) to the
//!   validator's ingress (`--ingress`), after the `l2` target's 6-byte filter (IPv4 address,
//!   port): the ingress address, the wildcard `0.0.0.0:0`, or (VLAN-tagged frames) the address
//!   on another port, so the filters' accept and drop paths are both seeded;
//! - `block/`: the block as a peer sends it (`ChainBlock::from_witness(..).encode()`, what the
//!   `block` target decodes).
//!
//! The log holds thousands of transactions, mostly alike, so at most `--per-kind` inputs are
//! kept per kind (the transaction's action with its body length, or a block's shape: how many
//! transactions, observations, deposits, vouchers and proposals it carries), and none longer
//! than `--max-len` (the fuzzer's `-max_len` would truncate it). `cargo fuzz cmin` then keeps
//! those that add coverage (`perf/fuzz/seed.sh` does both). Output names are
//! `<kind>-<height>-<index>`; the run is deterministic for a given log.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bastion_consensus::{BlockLimits, ChainBlock};
use bastion_net::l2::{L2, L2Filter, build_udp_frame, parse};
use bastion_net::packet;
use bastion_storage::LogConfig;
use bastion_store::{BlockLog, LogEntry};
use bastion_types::tx::{account_of, auth_from_bytes, encode_body, tx_of};
use commonware_codec::{Decode, Encode};
use commonware_cryptography::sha256::Digest;

struct Args {
    log: PathBuf,
    out: PathBuf,
    ingress: SocketAddrV4,
    max_len: usize,
    per_kind: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut log = None;
    let mut out = None;
    let mut ingress = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8400);
    let mut max_len = 1400;
    let mut per_kind = 12;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--log" => log = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--ingress" => ingress = value()?.parse().map_err(|e| format!("--ingress: {e}"))?,
            "--max-len" => max_len = value()?.parse().map_err(|e| format!("--max-len: {e}"))?,
            "--per-kind" => per_kind = value()?.parse().map_err(|e| format!("--per-kind: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        log: log.ok_or("--log DIR is required")?,
        out: out.ok_or("--out DIR is required")?,
        ingress,
        max_len,
        per_kind,
    })
}

/// Inputs of one target, at most `per_kind` per kind.
struct Sink {
    dir: PathBuf,
    per_kind: usize,
    max_len: usize,
    taken: BTreeMap<String, usize>,
    written: usize,
    too_long: usize,
}

impl Sink {
    fn new(out: &Path, target: &str, args: &Args) -> Result<Sink, String> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Sink {
            dir,
            per_kind: args.per_kind,
            max_len: args.max_len,
            taken: BTreeMap::new(),
            written: 0,
            too_long: 0,
        })
    }

    /// Whether another input of `kind` is wanted.
    fn wants(&self, kind: &str) -> bool {
        self.taken.get(kind).copied().unwrap_or(0) < self.per_kind
    }

    fn put(&mut self, kind: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > self.max_len {
            self.too_long += 1;
            return Ok(());
        }
        if !self.wants(kind) {
            return Ok(());
        }
        *self.taken.entry(kind.to_string()).or_default() += 1;
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        self.written += 1;
        Ok(())
    }

    fn report(&self, target: &str) {
        println!(
            "{target:>6}: {} inputs in {} kinds ({} over {} bytes left out) -> {}",
            self.written,
            self.taken.len(),
            self.too_long,
            self.max_len,
            self.dir.display()
        );
    }
}

/// The variant name of a `Debug` rendering (`Place(OrderRequest { .. })` -> `Place`).
fn variant(debug: &str) -> &str {
    let end = debug.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(debug.len());
    &debug[..end]
}

/// The structure of a `Debug` rendering: every run of digits becomes `#`, so two orders that
/// differ only in numbers (price, size, ids) have the same shape, and a different side, type,
/// time in force or flag gives another.
fn shape(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    for c in debug.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// A coarse size class: 0, 1, 2-3, 4-7, ...
fn class(n: usize) -> usize {
    if n == 0 { 0 } else { n.ilog2() as usize + 1 }
}

/// A block's shape: how many transactions (and of which kinds), observations, deposits,
/// vouchers and proposals, by size class.
fn block_kind(b: &bastion_types::Block) -> String {
    let mut actions: Vec<String> = Vec::new();
    for tx in &b.txs {
        let v = variant(&format!("{:?}", tx.action)).to_string();
        if !actions.contains(&v) {
            actions.push(v);
        }
    }
    format!(
        "txs{}{}-oracle{}-deposits{}-vouchers{}-proposals{}",
        class(b.txs.len()),
        actions.iter().map(|a| format!("_{a}")).collect::<String>(),
        class(b.oracle.len()),
        class(b.deposits.len()),
        class(b.vouchers.len()),
        class(b.proposals.len())
    )
}

/// A block input must decode (as the `block` target does) and re-encode to itself.
fn check_block(height: u64, bytes: &[u8], limits: &BlockLimits) -> Result<(), String> {
    let block = ChainBlock::decode_cfg(bytes::Bytes::copy_from_slice(bytes), limits)
        .map_err(|e| format!("height {height}: the rebuilt block does not decode: {e}"))?;
    if block.encode().as_ref() != bytes {
        return Err(format!("height {height}: the rebuilt block does not re-encode to itself"));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let (log, recovery) = BlockLog::open(&args.log, LogConfig::default()).map_err(|e| e.to_string())?;
    if !recovery.damage.is_empty() {
        return Err(format!("block log {} is damaged: {:?}", args.log.display(), recovery.damage));
    }
    let first = log.first_height().ok_or_else(|| format!("block log {} is empty", args.log.display()))?;
    let limits = BlockLimits::default();
    let mut packets = Sink::new(&args.out, "packet", args)?;
    let mut bodies = Sink::new(&args.out, "body", args)?;
    let mut frames = Sink::new(&args.out, "l2", args)?;
    let mut blocks = Sink::new(&args.out, "block", args)?;
    let (mut entries, mut txs) = (0u64, 0u64);
    let other_port = SocketAddrV4::new(*args.ingress.ip(), args.ingress.port().wrapping_add(1));
    let mut datagram = Vec::new();
    let mut frame = Vec::new();
    for item in log.iter_from(first) {
        let (height, bytes) = item.map_err(|e| e.to_string())?;
        let entry = LogEntry::decode(&bytes).map_err(|e| format!("log entry at height {height}: {e}"))?;
        entries += 1;
        let auth = auth_from_bytes(&entry.witness)
            .ok_or_else(|| format!("height {height}: witness of {} bytes", entry.witness.len()))?;
        if auth.len() != entry.block.txs.len() {
            return Err(format!(
                "height {height}: {} authorisations for {} txs",
                auth.len(),
                entry.block.txs.len()
            ));
        }
        for (i, (tx, a)) in entry.block.txs.iter().zip(&auth).enumerate() {
            txs += 1;
            let body = encode_body(tx.nonce, &tx.action);
            datagram.clear();
            packet::encode(&a.public_key, &a.signature, &body, &mut datagram).map_err(|e| e.to_string())?;
            // The rebuilt datagram must be the one the signer sent: same signer, nonce, action.
            let p = packet::decode(&datagram).map_err(|e| e.to_string())?;
            let back = tx_of(p.public_key, p.body).map_err(|e| format!("height {height} tx {i}: {e}"))?;
            if back != *tx || account_of(&a.public_key) != tx.signer {
                return Err(format!("height {height} tx {i}: the rebuilt datagram is not the logged tx"));
            }
            let debug = format!("{:?}", tx.action);
            let name = format!("{}-{height}-{i}", variant(&debug));
            let kind = format!("{}-{}", shape(&debug), body.len());
            if !(packets.wants(&kind) || frames.wants(&kind) || bodies.wants(&kind)) {
                continue;
            }
            packets.put(&kind, &name, &datagram)?;
            bodies.put(&kind, &name, &body)?;
            // One frame per transaction, cycling through the filters and tagging.
            let n = frames.taken.get(&kind).copied().unwrap_or(0);
            let (filter, vlan) = match n % 3 {
                0 => (args.ingress, None),
                1 => (SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), None),
                _ => (other_port, Some(100)),
            };
            let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000 + (i % 20_000) as u16);
            frame.clear();
            frame.extend_from_slice(&filter.ip().octets());
            frame.extend_from_slice(&filter.port().to_be_bytes());
            build_udp_frame(
                [2, 0, 0, 0, 0, 2],
                [2, 0, 0, 0, 0, 1],
                from,
                args.ingress,
                &datagram,
                vlan,
                &mut frame,
            )
            .map_err(|e| e.to_string())?;
            // The ingress filter delivers the datagram; the one on another port drops it.
            let filter = L2Filter { ip: *filter.ip(), port: filter.port() };
            let delivered =
                matches!(parse(&frame[6..], &filter), L2::Udp { payload, .. } if payload == datagram);
            if delivered == vlan.is_some() {
                return Err(format!("height {height} tx {i}: the frame does not parse as built"));
            }
            frames.put(&kind, &name, &frame)?;
        }
        let parent = Digest::from(entry.link);
        let kind = block_kind(&entry.block);
        let whole =
            ChainBlock::from_witness(parent, entry.parent_root, entry.block.clone(), &entry.witness, &limits)
                .map_err(|e| format!("height {height}: {e}"))?
                .encode();
        check_block(height, &whole, &limits)?;
        if whole.len() <= args.max_len {
            blocks.put(&kind, &format!("{kind}-{height}"), &whole)?;
            continue;
        }
        blocks.too_long += 1;
        // Most loaded blocks are longer than the fuzzer's inputs. Keep a prefix of each list
        // (its first transactions with their authorisations, observations, deposits, ...) that
        // fits: real parts, a well-formed block (the decoder does not check links or roots).
        for keep in [8, 4, 2, 1, 0] {
            let mut cut = entry.block.clone();
            cut.txs.truncate(keep);
            let n = keep.max(1);
            cut.oracle.truncate(n);
            cut.deposits.truncate(n);
            cut.vouchers.truncate(n);
            cut.proposals.truncate(n);
            let cut_kind = format!("cut-{}", block_kind(&cut));
            if !blocks.wants(&cut_kind) {
                break;
            }
            let cut = ChainBlock::new(
                parent,
                entry.parent_root,
                cut,
                auth[..keep.min(auth.len())].to_vec(),
                &limits,
            )
            .map_err(|e| format!("height {height} cut to {keep} txs: {e}"))?
            .encode();
            check_block(height, &cut, &limits)?;
            if cut.len() <= args.max_len {
                blocks.put(&cut_kind, &format!("{cut_kind}-{height}"), &cut)?;
                break;
            }
        }
    }
    println!("read {entries} log entries, {txs} transactions from {}", args.log.display());
    for (target, sink) in [("packet", &packets), ("body", &bodies), ("l2", &frames), ("block", &blocks)] {
        sink.report(target);
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seeds: {e}");
            ExitCode::FAILURE
        }
    }
}
