//! The devnet's load generator: thousands of traders, each with its own ed25519 key, sending
//! signed orders over UDP to every validator's ingress, across the perpetual and option
//! markets, priced off the chain's oracle path.
//!
//! 1. **Funding.** With the devnet's simulated source chain ([`LoadConfig::bridge`]), every
//!    trader's collateral is deposited there, to the bridge: the validators watch the source,
//!    attest each deposit, and a block credits it once 2/3 of stake attested (no key mints
//!    anything). Market makers get deep pockets, takers a few tens of thousands of USDC, and
//!    the insurance fund a top-up. Trading starts once the chain reports them credited.
//!
//!    Without a source chain (a devnet chain spec only), the authority key signs the
//!    deposits instead. Nonces are
//!    strictly sequential (a block may include only an account's next nonce), so one deposit
//!    lost by UDP or back-pressure would hold up every later one: the deposits are sent again
//!    each second until the chain reports them finalized (a copy that already landed is
//!    refused as a replay or duplicate: same nonce, same signature). Trading starts only then,
//!    since a trader's orders are refused while its account does not exist, and its later
//!    nonces would wait behind the refused ones.
//!
//! Each trader's orders carry its nonces 1, 2, 3, ... in sending order. The generator has no
//! per-account view of the chain, so an order lost at every validator leaves its trader's
//! later orders waiting in the mempools (then refused as too far ahead); on loopback at the
//! devnet's rates this does not happen in practice, and a real client resends (README,
//! "Nonces").
//! 2. **Trading** at `rate` orders/s: makers quote post-only ladders around the path price
//!    (good for 200 blocks), takers lift them with IOC orders that build leveraged positions,
//!    long-biased so the flash crash has something to liquidate, and a tenth of the flow goes
//!    to the option strip. Every [`WITHDRAW_EVERY`]th action is a maker withdrawing
//!    [`WITHDRAW_USD`] USDC: each creates a voucher the validators sign for the source chain.
//!
//! Every order goes to every validator (each verifies every order, as in production, where
//! clients broadcast to the validator set). The generator counts what it signed and sent; the
//! chain's block logs say what was finalized.

use bastion_client::{Keypair, devnet_authority, devnet_trader};
use bastion_consensus::ChainSpec;
use bastion_exchange::scenario::PricePath;
use bastion_types::{
    Action, AssetId, MarketKind, MarketSpec, OptionKind, OrderRequest, SelfTradePrevention, Side, TimeInForce,
};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One USDC in micro-units.
const USD: i128 = 1_000_000;

/// Share of traders that make markets (per thousand).
const MAKERS_PER_MILLE: u64 = 100;

/// Deposits per second while funding (the devnet raises the per-account admission limit for
/// the bridge authority's burst).
const FUNDING_RATE: f64 = 5_000.0;

/// One trading action in this many is a withdrawal (a maker takes some collateral out).
pub const WITHDRAW_EVERY: u64 = 200;

/// What each withdrawal takes out, USDC.
pub const WITHDRAW_USD: i128 = 100;

/// The insurance fund top-up deposited through the bridge while funding, USDC.
pub const INSURANCE_TOP_UP_USD: i128 = 50_000;

/// How long the generator waits for the bridge to credit the funding deposits.
const CREDIT_WAIT: Duration = Duration::from_secs(60);

/// Most times the deposits are sent while waiting for them to finalize (a second apart).
const FUNDING_PASSES: u32 = 10;

/// Datagrams signed before they are sent together (one `sendmmsg` per validator), unless the
/// schedule leaves time to wait first.
const SEND_BATCH: usize = 32;

/// What the generator does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Every validator's ingress.
    pub targets: Vec<SocketAddr>,
    /// Traders (each its own key).
    pub traders: u64,
    /// Orders per second, all traders together.
    pub rate: f64,
    /// Seed of the order flow.
    pub seed: u64,
    /// The true price path the validators' simulated venues quote: makers quote around it.
    pub path: PricePath,
    /// How each transaction reaches the validators.
    pub submit: Submit,
    /// The devnet's simulated source chain: traders are funded by deposits to its bridge. `None`:
    /// the devnet authority signs deposits (needs a devnet chain spec).
    pub bridge: Option<Arc<std::sync::Mutex<bastion_bridge::SimChain>>>,
}

/// How the load generator submits: each transaction once to one validator, which gossips it
/// to the others over the public network (the default), or to every validator directly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Submit {
    /// Once, to one node (round robin); the public network's `txs` topic carries it on.
    #[default]
    Gossip,
    /// To every validator's ingress.
    Direct,
}

impl std::fmt::Display for Submit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Submit::Gossip => "gossip",
            Submit::Direct => "direct",
        })
    }
}

/// Counters, shared with the devnet's progress line.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Deposits signed and sent (each to every validator), repeats included.
    pub deposits: AtomicU64,
    /// Orders signed and sent (each to every validator, counted once).
    pub orders: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// The chain height the devnet last saw (for good-til heights); set by the devnet.
    pub height: AtomicU64,
    /// Transactions finalized on chain, the most any validator reports; set by the devnet.
    pub finalized: AtomicU64,
    /// Bridge deposits credited on chain, the most any validator reports; set by the devnet.
    pub credited: AtomicU64,
    /// Withdrawals signed and sent.
    pub withdrawals: AtomicU64,
    /// CPU time of the generator's thread while trading, µs (signing and sending).
    pub trading_cpu_us: AtomicU64,
    /// Wall time of the trading phase so far, µs.
    pub trading_wall_us: AtomicU64,
}

/// The running generator.
#[derive(Debug)]
pub struct LoadGen {
    /// Its counters.
    pub stats: Arc<LoadStats>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

impl LoadGen {
    /// Stops the generator and returns its error, if it failed.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the load generator panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Checks the chain can be driven (a source chain to fund traders through, or the devnet
/// authority) and starts the generator.
pub fn start(spec: &ChainSpec, cfg: LoadConfig) -> Result<LoadGen, String> {
    let authority = devnet_authority();
    if cfg.bridge.is_none() && spec.exchange.authority != Some(authority.account()) {
        return Err(format!(
            "the genesis authority {:?} is not the devnet authority {:?} and no source chain was given: the load \
             generator cannot fund traders on this chain",
            spec.exchange.authority,
            authority.account()
        ));
    }
    if cfg.targets.is_empty() {
        return Err("no validator lists an ingress address in the genesis file".into());
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(format!("--rate {}: must be a positive number of orders per second", cfg.rate));
    }
    if cfg.traders < 2 {
        return Err(format!("--traders {}: at least 2 (a maker and a taker)", cfg.traders));
    }
    // One connected socket per validator: a batch goes to each in one `sendmmsg`.
    let sockets = cfg
        .targets
        .iter()
        .map(|t| {
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("load generator socket: {e}"))?;
            s.connect(t).map_err(|e| format!("load generator socket to {t}: {e}"))?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let stats = Arc::new(LoadStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let path = cfg.path.clone();
    let mut generator = Generator {
        path,
        chain: spec.digest(),
        markets: spec.exchange.markets.clone(),
        cfg,
        sockets,
        stats: stats.clone(),
        stop: stop.clone(),
        rng: 0,
        pending: Vec::with_capacity(SEND_BATCH),
        turn: 0,
    };
    generator.rng = generator.cfg.seed ^ 0x9e37_79b9_7f4a_7c15;
    let handle = std::thread::Builder::new()
        .name("loadgen".into())
        .spawn(move || generator.run(authority))
        .map_err(|e| format!("cannot start the load generator thread: {e}"))?;
    Ok(LoadGen { stats, stop, handle: Some(handle) })
}

struct Generator {
    chain: [u8; 32],
    path: PricePath,
    markets: Vec<MarketSpec>,
    cfg: LoadConfig,
    sockets: Vec<UdpSocket>,
    stats: Arc<LoadStats>,
    stop: Arc<AtomicBool>,
    rng: u64,
    /// Signed datagrams not sent yet.
    pending: Vec<Vec<u8>>,
    /// Batches sent so far (gossip mode sends batch k to validator k mod n).
    turn: usize,
}

struct Trader {
    key: Keypair,
    nonce: u64,
    maker: bool,
}

impl Generator {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi.saturating_sub(lo)).unwrap_or(0).saturating_add(1);
        lo.saturating_add(i64::try_from(self.below(span)).unwrap_or(0))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Signs `action` for `key` and queues it for every validator (sent by [`Self::flush`]).
    fn send(&mut self, key: &Keypair, nonce: u64, action: Action) {
        let signed = key.sign(&self.chain, nonce, action);
        let mut buf = Vec::with_capacity(bastion_net::MAX_DATAGRAM);
        if signed.packet_into(&mut buf).is_err() {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.pending.push(buf);
        if self.pending.len() >= SEND_BATCH {
            self.flush();
        }
    }

    /// Sends the queued datagrams, one `sendmmsg` per validator: to every validator, or (gossip)
    /// to the next one in turn.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut iovs: Vec<libc::iovec> = self
            .pending
            .iter_mut()
            .map(|p| libc::iovec { iov_base: p.as_mut_ptr().cast(), iov_len: p.len() })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero lengths).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let n = self.sockets.len().max(1);
        let one = self.turn % n;
        self.turn = self.turn.wrapping_add(1);
        let gossip = self.cfg.submit == Submit::Gossip;
        for (k, socket) in self.sockets.iter().enumerate() {
            if gossip && k != one {
                continue;
            }
            let mut sent = 0usize;
            while sent < hdrs.len() {
                let rest = &mut hdrs[sent..];
                let len = libc::c_uint::try_from(rest.len()).unwrap_or(libc::c_uint::MAX);
                // SAFETY: the fd is open (owned by `socket`, connected, so no address is needed);
                // each header points to one live iovec over a live datagram in `self.pending`,
                // which the kernel only reads during the call; `len` is at most `rest.len()`.
                let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), len, 0) };
                if n <= 0 {
                    // A validator that is gone (ECONNREFUSED) or a full buffer: count and move on.
                    let lost = (hdrs.len() - sent) as u64;
                    self.stats.send_errors.fetch_add(lost, Ordering::Relaxed);
                    break;
                }
                sent += usize::try_from(n).unwrap_or(0);
            }
        }
        self.pending.clear();
    }

    fn run(mut self, authority: Keypair) -> Result<(), String> {
        let traders: Vec<Trader> = (1..=self.cfg.traders)
            .map(|i| Trader {
                key: devnet_trader(i),
                nonce: 0,
                maker: i % 1000 < MAKERS_PER_MILLE.max(1) || i == 1,
            })
            .collect();
        // Funding: makers 5M USDC, takers 20k..100k, paced under the admission's per-account
        // rate limit (the authority signs every deposit).
        let deposits: Vec<(usize, i128)> = (0..traders.len())
            .map(|i| {
                let amount = if traders[i].maker {
                    5_000_000 * USD
                } else {
                    i128::from(self.range(20, 100)) * 1_000 * USD
                };
                (i, amount)
            })
            .collect();
        if let Some(chain) = self.cfg.bridge.clone() {
            self.fund_through_bridge(&chain, &traders, &deposits)?;
        } else {
            self.fund_by_authority(&authority, &traders, &deposits)?;
        }
        self.trade(traders)
    }

    /// Deposits every trader's collateral (and a top-up of the insurance fund) to the source
    /// chain's bridge, then waits until the validators credited them all.
    fn fund_through_bridge(
        &mut self,
        chain: &std::sync::Mutex<bastion_bridge::SimChain>,
        traders: &[Trader],
        deposits: &[(usize, i128)],
    ) -> Result<(), String> {
        {
            let mut c = chain.lock().map_err(|_| "the source chain's lock is poisoned")?;
            for (i, amount) in deposits {
                c.deposit(traders[*i].key.account(), AssetId(0), *amount).map_err(|e| e.to_string())?;
                self.stats.deposits.fetch_add(1, Ordering::Relaxed);
            }
            c.deposit(bastion_types::INSURANCE_FUND_ACCOUNT, AssetId(0), INSURANCE_TOP_UP_USD * USD)
                .map_err(|e| e.to_string())?;
            self.stats.deposits.fetch_add(1, Ordering::Relaxed);
        }
        let want = deposits.len() as u64 + 1;
        let waited = Instant::now();
        while self.stats.credited.load(Ordering::Relaxed) < want && !self.stopped() {
            if waited.elapsed() > CREDIT_WAIT {
                tracing::warn!(
                    credited = self.stats.credited.load(Ordering::Relaxed),
                    want,
                    "load generator: the bridge did not credit every deposit within {CREDIT_WAIT:?}; trading anyway"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The devnet authority signs a deposit for every trader (sent again each second until they
    /// finalize).
    fn fund_by_authority(
        &mut self,
        authority: &Keypair,
        traders: &[Trader],
        deposits: &[(usize, i128)],
    ) -> Result<(), String> {
        let funded = self.stats.finalized.load(Ordering::Relaxed).saturating_add(deposits.len() as u64);
        for pass in 0..FUNDING_PASSES {
            if pass > 0 && self.stats.finalized.load(Ordering::Relaxed) >= funded {
                break;
            }
            let started = Instant::now();
            for (k, (i, amount)) in deposits.iter().enumerate() {
                if self.stopped() {
                    return Ok(());
                }
                let to = traders[*i].key.account();
                self.send(
                    authority,
                    k as u64 + 1,
                    Action::Deposit { to, asset: AssetId(0), amount: *amount },
                );
                self.stats.deposits.fetch_add(1, Ordering::Relaxed);
                self.pace(started, k as u64 + 1, FUNDING_RATE);
            }
            self.flush();
            // Wait up to a second for them to finalize before sending them again.
            let waited = Instant::now();
            while waited.elapsed() < Duration::from_millis(1_000)
                && self.stats.finalized.load(Ordering::Relaxed) < funded
                && !self.stopped()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.stats.finalized.load(Ordering::Relaxed) < funded {
            tracing::warn!("load generator: the deposits did not all finalize; trading anyway");
        }
        Ok(())
    }

    /// Trades until stopped (see the module documentation).
    fn trade(&mut self, mut traders: Vec<Trader>) -> Result<(), String> {
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let mut sent = 0u64;
        let perps: Vec<usize> = (0..self.markets.len())
            .filter(|&m| matches!(self.markets[m].kind, MarketKind::Perpetual))
            .collect();
        let options: Vec<usize> = (0..self.markets.len())
            .filter(|&m| matches!(self.markets[m].kind, MarketKind::Option { .. }))
            .collect();
        let makers: Vec<usize> = (0..traders.len()).filter(|&i| traders[i].maker).collect();
        let takers: Vec<usize> = (0..traders.len()).filter(|&i| !traders[i].maker).collect();
        while !self.stopped() {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let height = self.stats.height.load(Ordering::Relaxed);
            // Two in five orders are makers' quotes, the rest takers' flow.
            let maker = self.below(5) < 2 || takers.is_empty();
            let pool = if maker { &makers } else { &takers };
            let who = pool[usize::try_from(self.below(pool.len() as u64)).unwrap_or(0)];
            let option = !options.is_empty() && self.below(10) == 0;
            let m = if option {
                options[usize::try_from(self.below(options.len() as u64)).unwrap_or(0)]
            } else {
                perps[usize::try_from(self.below(perps.len() as u64)).unwrap_or(0)]
            };
            let spec = self.markets[m].clone();
            let withdraw = sent % WITHDRAW_EVERY == WITHDRAW_EVERY - 1 && !makers.is_empty();
            let who = if withdraw {
                makers[usize::try_from(self.below(makers.len() as u64)).unwrap_or(0)]
            } else {
                who
            };
            let action = if withdraw {
                self.stats.withdrawals.fetch_add(1, Ordering::Relaxed);
                Action::Withdraw { asset: AssetId(0), amount: WITHDRAW_USD * USD }
            } else {
                let Some(action) = self.order(&spec, maker, now_ms, height) else { continue };
                action
            };
            let t = &mut traders[who];
            t.nonce += 1;
            let (key, nonce) = (t.key.clone(), t.nonce);
            self.send(&key, nonce, action);
            sent += 1;
            self.stats.orders.fetch_add(1, Ordering::Relaxed);
            self.pace(started, sent, self.cfg.rate);
            if sent.is_multiple_of(256) {
                let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                self.stats
                    .trading_cpu_us
                    .store(us(thread_cpu().saturating_sub(cpu_started)), Ordering::Relaxed);
                self.stats.trading_wall_us.store(us(started.elapsed()), Ordering::Relaxed);
            }
        }
        self.flush();
        Ok(())
    }

    /// An order on `spec`: a maker's post-only quote or a taker's IOC.
    fn order(&mut self, spec: &MarketSpec, maker: bool, now_ms: u64, height: u64) -> Option<Action> {
        let index = self.path.price(usize::from(spec.underlying.0), now_ms)?;
        let fair = match spec.kind {
            MarketKind::Perpetual => index,
            MarketKind::Option { kind, strike, expiry_ms } => {
                option_estimate(index, strike, kind, expiry_ms, now_ms)
            }
        };
        let tick = spec.tick_size.max(1);
        let fair_ticks = (fair / tick).max(1);
        // Notional of one lot at the fair price, micro-USD.
        let lot_value = i128::from(fair).saturating_mul(i128::from(spec.lot_size_nanos)) / 1_000_000_000;
        let lots_for = |usd: i128| i64::try_from((usd * USD / lot_value.max(1)).max(1)).unwrap_or(1);
        if maker {
            let side = if self.below(2) == 0 { Side::Buy } else { Side::Sell };
            // 1..40 bps away from fair (options: 1..10%), never crossing.
            let away = if matches!(spec.kind, MarketKind::Option { .. }) {
                (fair_ticks * self.range(1, 10) / 100).max(1)
            } else {
                (fair_ticks * self.range(1, 40) / 10_000).max(1)
            };
            let price = if side == Side::Buy { fair_ticks - away } else { fair_ticks + away };
            Some(Action::Place(OrderRequest {
                market: spec.id,
                side,
                price: Some(price.max(1)),
                qty: lots_for(i128::from(self.range(20, 80)) * 1_000),
                tif: TimeInForce::PostOnly,
                reduce_only: false,
                good_til_height: (height > 0).then_some(height + 200),
                stp: SelfTradePrevention::CancelResting,
            }))
        } else {
            // Long-biased (7 in 10) leveraged flow: each order 50k..250k USD of notional, so a
            // taker with 20k..100k builds several times its collateral over a few orders (the
            // exchange refuses what its initial margin cannot carry).
            let side = if self.below(10) < 7 { Side::Buy } else { Side::Sell };
            let limit =
                if side == Side::Buy { fair_ticks + fair_ticks / 100 } else { fair_ticks - fair_ticks / 100 };
            Some(Action::Place(OrderRequest {
                market: spec.id,
                side,
                price: Some(limit.max(1)),
                qty: lots_for(i128::from(self.range(50, 250)) * 1_000),
                tif: TimeInForce::Ioc,
                reduce_only: false,
                good_til_height: None,
                stp: SelfTradePrevention::CancelResting,
            }))
        }
    }
}

/// A rough option value for quoting (intrinsic value plus 0.4·σ·√T·S with σ = 60%): makers
/// quote around it and the exchange's price band keeps the rest honest.
fn option_estimate(spot: i64, strike: i64, kind: OptionKind, expiry_ms: u64, now_ms: u64) -> i64 {
    let intrinsic = match kind {
        OptionKind::Call => (spot - strike).max(0),
        OptionKind::Put => (strike - spot).max(0),
    };
    let years = expiry_ms.saturating_sub(now_ms) as f64 / (365.0 * 86_400_000.0);
    let time_value = 0.4 * 0.6 * years.sqrt() * spot as f64;
    intrinsic.saturating_add(time_value as i64).max(1_000_000)
}

impl Generator {
    /// Keeps `done` items at `rate` per second since `started`: sends what is queued and
    /// sleeps when ahead of schedule.
    fn pace(&mut self, started: Instant, done: u64, rate: f64) {
        let due = Duration::from_secs_f64(done as f64 / rate);
        if due.checked_sub(started.elapsed()).is_some_and(|w| w > Duration::from_micros(200)) {
            self.flush();
            pace(started, done, rate);
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call writes into; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Sleeps until `done` items at `rate` per second are due since `started`.
fn pace(started: Instant, done: u64, rate: f64) {
    let due = Duration::from_secs_f64(done as f64 / rate);
    if let Some(wait) = due.checked_sub(started.elapsed())
        && wait > Duration::from_micros(200)
    {
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn option_estimate_is_intrinsic_plus_time_value() {
        let day = 86_400_000;
        let deep_call = option_estimate(120_000_000_000, 100_000_000_000, OptionKind::Call, 30 * day, 0);
        assert!(deep_call > 20_000_000_000, "{deep_call}");
        let otm_put = option_estimate(120_000_000_000, 100_000_000_000, OptionKind::Put, 30 * day, 0);
        assert!(otm_put > 0 && otm_put < 20_000_000_000, "{otm_put}");
        assert_eq!(option_estimate(1, 100, OptionKind::Call, 0, 10), 1_000_000, "floor after expiry");
    }

    #[test]
    fn pace_holds_the_rate() {
        let started = Instant::now();
        for i in 1..=50 {
            pace(started, i, 1_000.0);
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(45), "50 at 1000/s took {took:?}");
    }
}
