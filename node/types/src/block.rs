//! Transactions, blocks, market specifications and the events and typed rejections that
//! executing a block produces.

use crate::{
    AccountId, AssetId, Lots, MarketId, Micros, OrderId, Ppm, PriceMicros, SelfTradePrevention, Side, Ticks,
    TimeInForce, UnderlyingId, ValidatorIndex,
};
use serde::{Deserialize, Serialize};

/// A block as the exchange executes it. Signatures were checked before a block is built (the
/// verify stage); the exchange trusts `signer` and checks everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Height, one more than the parent's.
    pub height: u64,
    /// Consensus timestamp in milliseconds. The only clock the exchange knows.
    pub timestamp_ms: u64,
    /// Validators' signed observations of the market (at most one per validator), carried by
    /// the proposer. The exchange verifies every signature and freshness rule before the block
    /// changes anything and keeps each validator's latest; the index is the stake-weighted
    /// median of the fresh ones it keeps.
    pub oracle: Vec<SignedObservation>,
    /// Client transactions in sequencer order.
    pub txs: Vec<Tx>,
    /// Parameter changes approved by validators' signatures (each approval is verified when
    /// the block is verified and again when it is executed; a block carrying one invalid
    /// approval, too little stake or a wrong governance nonce is refused whole).
    pub proposals: Vec<GovernanceProposal>,
    /// Source-chain deposits with validators' attestations (see [`crate::AttestedDeposit`]):
    /// each credited once its attestations weigh 2/3 of stake; at most
    /// [`crate::DEPOSITS_PER_BLOCK_MAX`].
    pub deposits: Vec<crate::AttestedDeposit>,
    /// Validators' signatures of withdrawal vouchers (see [`crate::VoucherSignatures`]); at
    /// most [`crate::VOUCHERS_PER_BLOCK_MAX`].
    pub vouchers: Vec<crate::VoucherSignatures>,
}

/// What one validator saw of the market: index prices per underlying and implied volatility
/// per underlying and expiry, from its own sources (`bastion-oracle`), at `timestamp_ms` of its
/// clock. Signed by its identity key over [`observation_message`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Observation {
    /// The observing validator (its index in the genesis validator list).
    pub validator: ValidatorIndex,
    /// The height of the block this observation was made for (one more than the observer's
    /// finalized height when it signed). A validator signs at most one observation per height:
    /// two different ones for one height are evidence.
    pub height: u64,
    /// When it was observed, ms since the Unix epoch, on the validator's clock.
    pub timestamp_ms: u64,
    /// Index price per underlying, ascending by underlying, at most one each; an underlying
    /// without enough fresh sources is absent (never a guess).
    pub prices: Vec<(UnderlyingId, PriceMicros)>,
    /// Implied volatility per underlying and expiry, ascending by (underlying, expiry).
    pub vols: Vec<VolQuote>,
}

/// Implied volatility of one underlying's options of one expiry: the at-the-money level and a
/// linear skew in moneyness. The volatility at strike `K` with index `S` is
/// `atm_ppm + skew_ppm * (K - S) / S` (annualised, ppm), clamped by the market's
/// `volatility_min_ppm..=volatility_max_ppm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolQuote {
    /// The underlying.
    pub underlying: UnderlyingId,
    /// The options' expiry, ms since the Unix epoch.
    pub expiry_ms: u64,
    /// At-the-money implied volatility, annualised, ppm (600_000 = 60%).
    pub atm_ppm: Ppm,
    /// Change of volatility (ppm) per unit of relative moneyness `(K - S) / S`: -200_000 means
    /// a strike 10% below the index has 2 volatility points more than at the money.
    pub skew_ppm: Ppm,
}

/// An [`Observation`] with its validator's ed25519 signature (ZIP-215 rules) over
/// [`observation_message`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedObservation {
    /// What was observed.
    pub observation: Observation,
    /// The validator's signature.
    #[serde(with = "sig64")]
    pub signature: [u8; 64],
}

/// Domain separation tag of observation signatures.
pub const OBSERVATION_DOMAIN: &[u8] = b"bastion/observation/v1";

/// Most prices one observation may carry.
pub const OBSERVATION_PRICES_MAX: usize = 64;

/// Most volatility quotes one observation may carry.
pub const OBSERVATION_VOLS_MAX: usize = 256;

/// The bytes a validator signs for `observation` on chain `chain_id`:
/// `OBSERVATION_DOMAIN | len(chain_id) as u8 | chain_id | postcard(observation)`.
pub fn observation_message(chain_id: &str, observation: &Observation) -> Vec<u8> {
    let mut m = Vec::with_capacity(OBSERVATION_DOMAIN.len() + 1 + chain_id.len() + 128);
    m.extend_from_slice(OBSERVATION_DOMAIN);
    let id = &chain_id.as_bytes()[..chain_id.len().min(255)];
    m.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(id);
    // Serializing plain data into memory cannot fail; should it ever, the domain and chain id
    // still bind the signature, and the signed fields are checked separately.
    if let Ok(bytes) = postcard::to_allocvec(observation) {
        m.extend_from_slice(&bytes);
    }
    m
}

/// A parameter change with the signatures of the validators that approved it.
///
/// Each approval is an ed25519 signature by a validator's identity key over
/// [`governance_message`]: the chain id, the proposal's governance nonce, its height window and
/// the change. A block may carry it only at a height inside the window, only as the chain's next
/// governance nonce, and only with signatures of at least 2/3 of stake; anything else refuses
/// the block. Each accepted proposal consumes its nonce, so a proposal is applied at most once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceProposal {
    /// The change.
    pub update: ParamUpdate,
    /// Must be the chain's governance nonce + 1 (counting earlier proposals in the same block).
    pub nonce: u64,
    /// First height at which a block may carry the proposal.
    pub valid_from: u64,
    /// Last height at which a block may carry the proposal (at most
    /// [`GOVERNANCE_WINDOW_MAX`] after `valid_from`).
    pub valid_until: u64,
    /// Validators' signatures over [`governance_message`], one per validator.
    pub approvals: Vec<Approval>,
}

/// One validator's signature on a [`GovernanceProposal`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The signing validator (its index in the genesis validator list).
    pub validator: ValidatorIndex,
    /// ed25519 signature (ZIP-215 rules) by the validator's identity key.
    #[serde(with = "sig64")]
    pub signature: [u8; 64],
}

/// Domain separation tag of governance signatures.
pub const GOVERNANCE_DOMAIN: &[u8] = b"bastion/governance/v1";

/// Longest height window a governance proposal may name (`valid_until - valid_from`).
pub const GOVERNANCE_WINDOW_MAX: u64 = 100_000;

/// Most governance proposals one block may carry.
pub const PROPOSALS_PER_BLOCK_MAX: usize = 4;

/// The bytes a validator signs to approve `proposal` on chain `chain_id`:
/// `GOVERNANCE_DOMAIN | len(chain_id) as u8 | chain_id | nonce | valid_from | valid_until`
/// (big-endian u64s) `| postcard(update)`. The approvals themselves are not covered.
pub fn governance_message(chain_id: &str, proposal: &GovernanceProposal) -> Vec<u8> {
    let mut m = Vec::with_capacity(GOVERNANCE_DOMAIN.len() + 1 + chain_id.len() + 24 + 64);
    m.extend_from_slice(GOVERNANCE_DOMAIN);
    // Chain ids are at most 64 bytes (checked where the genesis is loaded); a longer one is
    // cut here, which cannot make two valid chains' messages equal.
    let id = &chain_id.as_bytes()[..chain_id.len().min(255)];
    m.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(id);
    m.extend_from_slice(&proposal.nonce.to_be_bytes());
    m.extend_from_slice(&proposal.valid_from.to_be_bytes());
    m.extend_from_slice(&proposal.valid_until.to_be_bytes());
    // Serializing a plain enum into memory cannot fail; should it ever, nothing is appended and
    // the domain and window still bind the signature.
    if let Ok(bytes) = postcard::to_allocvec(&proposal.update) {
        m.extend_from_slice(&bytes);
    }
    m
}

/// Serde for 64-byte signatures (serde derives arrays only up to 32): bytes, length-checked.
mod sig64 {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; 64], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(A::Error::invalid_length(65, &self));
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A signed client transaction (signature already verified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    /// The account whose key signed.
    pub signer: AccountId,
    /// Exactly the account's last nonce + 1 (counting its earlier transactions in the same
    /// block): a block carrying any other nonce is refused whole, so a transaction is included
    /// at most once and no includer can skip or reorder an account's transactions. Every
    /// included transaction consumes its nonce, whatever its outcome.
    pub nonce: u64,
    /// What the signer asks for.
    pub action: Action,
}

/// Everything a transaction can ask the exchange to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Credit collateral to an account, signed by the genesis authority. Refused
    /// (`Reject::DevnetOnly`) on every chain whose genesis does not say `devnet`: there,
    /// collateral arrives only as deposits that 2/3 of stake attested ([`Block::deposits`]).
    Deposit {
        /// The credited account.
        to: AccountId,
        /// Collateral asset.
        asset: AssetId,
        /// Amount in the asset's micro-units; positive.
        amount: Micros,
    },
    /// Withdraw collateral; allowed only while the account's initial margin still holds. Debits
    /// the account and creates a [`crate::Voucher`] that validators sign and the source chain
    /// pays out.
    Withdraw {
        /// Collateral asset.
        asset: AssetId,
        /// Amount in the asset's micro-units; positive.
        amount: Micros,
    },
    /// Place an order.
    Place(OrderRequest),
    /// Cancel a resting order.
    Cancel {
        /// Market of the order.
        market: MarketId,
        /// The order.
        order: OrderId,
    },
    /// Cancel a resting order and place its replacement atomically (new price and size; time
    /// priority is lost).
    Replace {
        /// Market of the order.
        market: MarketId,
        /// The order to replace.
        order: OrderId,
        /// New limit price.
        price: Ticks,
        /// New size.
        qty: Lots,
    },
    /// Choose standard (per-position) or portfolio (scenario grid) margin for the cross account.
    SetMarginMode {
        /// True for portfolio margin.
        portfolio: bool,
    },
    /// Move a market's position in or out of isolated margin (only while flat in it).
    SetIsolated {
        /// The market.
        market: MarketId,
        /// True to isolate.
        isolated: bool,
    },
    /// Move quote collateral between the cross account and an isolated position: positive
    /// adds to the isolated margin, negative takes out (only while its initial margin holds).
    TransferIsolated {
        /// The isolated market.
        market: MarketId,
        /// Signed amount in quote micro-units.
        amount: Micros,
    },
    /// A parameter change signed by the genesis authority. Refused (`Reject::DevnetOnly`) on
    /// every chain whose genesis does not say `devnet`: production parameters change only by
    /// [`GovernanceProposal`]s that 2/3 of stake signed.
    UpdateParams(ParamUpdate),
}

/// A client's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Market.
    pub market: MarketId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price; `None` is a market order (IOC at the edge of the price band).
    pub price: Option<Ticks>,
    /// Size in lots; positive.
    pub qty: Lots,
    /// Lifetime and liquidity rule.
    pub tif: TimeInForce,
    /// Only reduce an existing position (IOC and FOK only, as on dYdX v4).
    pub reduce_only: bool,
    /// Cancelled at the first block whose height exceeds this.
    pub good_til_height: Option<u64>,
    /// Self-trade prevention mode.
    pub stp: SelfTradePrevention,
}

/// Kind of a European option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OptionKind {
    /// Right to buy at the strike.
    Call,
    /// Right to sell at the strike.
    Put,
}

/// What a market trades.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketKind {
    /// A perpetual future on the underlying's index.
    Perpetual,
    /// A European option on the underlying's index, cash-settled at expiry.
    Option {
        /// Call or put.
        kind: OptionKind,
        /// Strike price per whole base unit.
        strike: PriceMicros,
        /// Expiry, in consensus milliseconds.
        expiry_ms: u64,
    },
}

/// One margin tier: from `notional_floor` upward the rates apply (Hyperliquid's tiers; the
/// maintenance deduction that keeps margin continuous is derived, never configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginTier {
    /// Lower bound of position notional for this tier, quote micro-units.
    pub notional_floor: Micros,
    /// Initial margin rate.
    pub imr_ppm: Ppm,
    /// Maintenance margin rate.
    pub mmr_ppm: Ppm,
}

/// Risk parameters of one market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskParams {
    /// Margin tiers, ascending `notional_floor`, the first at 0.
    pub tiers: Vec<MarginTier>,
    /// Open interest (notional) from which initial margin scales up (dYdX), quote micro-units.
    pub oi_imf_lower: Micros,
    /// Open interest at which initial margin reaches 100%; 0 disables the scaling.
    pub oi_imf_upper: Micros,
    /// Limit prices must lie within mark +- this band.
    pub price_band_ppm: Ppm,
    /// Open interest cap per side, in lots.
    pub open_interest_cap: Lots,
    /// Resting orders one account may have in this market.
    pub max_orders_per_account: u32,
    /// Taker fee.
    pub taker_fee_ppm: Ppm,
    /// Maker fee.
    pub maker_fee_ppm: Ppm,
    /// Notional used for the impact bid and ask in the funding premium.
    pub impact_notional: Micros,
    /// Cap on the absolute funding rate per funding interval.
    pub funding_cap_ppm: Ppm,
    /// Volatility used to mark options (annualised) until the validators attest one for the
    /// option's expiry (a 2/3-of-stake quorum of fresh observations); ignored for perpetuals.
    pub volatility_ppm: Ppm,
    /// Lowest volatility an option is marked with: an attested volatility (at-the-money plus
    /// skew at the strike) below it is raised to it.
    #[serde(default = "default_volatility_min_ppm")]
    pub volatility_min_ppm: Ppm,
    /// Highest volatility an option is marked with: an attested one above it is cut to it.
    #[serde(default = "default_volatility_max_ppm")]
    pub volatility_max_ppm: Ppm,
}

/// Default of [`RiskParams::volatility_min_ppm`]: 5% a year.
pub const fn default_volatility_min_ppm() -> Ppm {
    50_000
}

/// Default of [`RiskParams::volatility_max_ppm`]: 500% a year.
pub const fn default_volatility_max_ppm() -> Ppm {
    5_000_000
}

/// A market's full specification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSpec {
    /// Identifier (unique).
    pub id: MarketId,
    /// Human name, e.g. `BTC-PERP` or `BTC-20261231-100000-C`.
    pub name: String,
    /// The underlying whose index prices it.
    pub underlying: UnderlyingId,
    /// Perpetual or option.
    pub kind: MarketKind,
    /// Price of one tick per whole base unit.
    pub tick_size: PriceMicros,
    /// Size of one lot, in nano base units.
    pub lot_size_nanos: i64,
    /// Risk parameters.
    pub risk: RiskParams,
}

/// Trading state of a market (the circuit breaker's outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MarketStatus {
    /// Normal trading.
    Active,
    /// Only orders that reduce positions are accepted.
    ReduceOnly,
    /// No trading, no liquidation.
    Halted,
    /// Expired and cash-settled; closed for ever.
    Settled,
}

/// A collateral asset's specification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollateralSpec {
    /// Identifier; 0 is the quote asset.
    pub asset: AssetId,
    /// Name, e.g. `USDC`.
    pub name: String,
    /// Value counted towards margin is reduced by this haircut.
    pub haircut_ppm: Ppm,
    /// Underlying whose index prices one whole unit; `None` for the quote asset.
    pub price_source: Option<UnderlyingId>,
}

/// Guards on oracle input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OracleParams {
    /// An index older than this is stale: its markets become reduce-only.
    pub staleness_ms: u64,
    /// An index older than this halts its markets (no trading, no liquidation), until a
    /// quorum of fresh observations returns; at least `staleness_ms`.
    #[serde(default = "default_staleness_halt_ms")]
    pub staleness_halt_ms: u64,
    /// An observation older than this (block time minus observation time) may not be
    /// included, and a stored one no longer counts towards a quorum.
    #[serde(default = "default_observation_max_age_ms")]
    pub observation_max_age_ms: u64,
    /// Largest relative move of an underlying's stable price per second, ppm of itself
    /// (Mango v4's stable price: initial margin and withdrawals value positions at the less
    /// favourable of the index-based and the stable price).
    #[serde(default = "default_stable_move_ppm_per_s")]
    pub stable_move_ppm_per_s: Ppm,
    /// Largest index move accepted in one block; larger moves are clamped.
    pub max_move_ppm: Ppm,
    /// A median this far from the previous index halts the underlying's markets.
    pub halt_divergence_ppm: Ppm,
    /// Weight of a new sample in the mark price's basis EMA.
    pub basis_ema_ppm: Ppm,
}

/// Default of [`OracleParams::staleness_halt_ms`]: one minute.
pub const fn default_staleness_halt_ms() -> u64 {
    60_000
}

/// Default of [`OracleParams::observation_max_age_ms`]: three seconds.
pub const fn default_observation_max_age_ms() -> u64 {
    3_000
}

/// Default of [`OracleParams::stable_move_ppm_per_s`]: 0.05% a second.
pub const fn default_stable_move_ppm_per_s() -> Ppm {
    500
}

/// Liquidation parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationParams {
    /// Largest fraction of a position closed in one block.
    pub max_fraction_ppm: Ppm,
    /// Smallest notional closed in one block (unless the position is smaller).
    pub min_notional: Micros,
    /// Largest notional liquidated per account per block.
    pub max_notional_per_block: Micros,
    /// Spread-to-maintenance ratio used by the fillable price.
    pub spread_to_maintenance_ppm: Ppm,
    /// Largest liquidation fee the insurance fund takes from a surplus.
    pub max_insurance_fee_ppm: Ppm,
    /// Funding settles every this many milliseconds.
    pub funding_interval_ms: u64,
    /// Portfolio maintenance margin as a fraction of the worst scenario loss.
    pub portfolio_mm_ppm: Ppm,
}

/// A parameter change; effective from the next block boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamUpdate {
    /// Replace a market's risk parameters.
    Risk {
        /// Market.
        market: MarketId,
        /// New parameters.
        risk: RiskParams,
    },
    /// Set a market's status (Active, ReduceOnly, Halted).
    Status {
        /// Market.
        market: MarketId,
        /// New status; `Settled` is refused.
        status: MarketStatus,
    },
    /// Change a collateral asset's haircut.
    Haircut {
        /// Asset.
        asset: AssetId,
        /// New haircut.
        haircut_ppm: Ppm,
    },
    /// List a new market.
    List(MarketSpec),
    /// Change the oracle guards.
    Oracle(OracleParams),
    /// Change liquidation parameters.
    Liquidation(LiquidationParams),
}

/// Why an order left the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DoneReason {
    /// Completely filled.
    Filled,
    /// Cancelled by its owner (or replaced).
    Cancelled,
    /// Its good-til-block height passed.
    Expired,
    /// Cancelled by self-trade prevention.
    SelfTrade,
    /// IOC or market remainder, or an FOK that could not fill.
    Unfilled,
    /// Removed by the exchange: its market settled, its account was liquidated, or the mark
    /// moved so far that its price left the band on the aggressive side.
    Removed,
}

/// A typed rejection. A rejected transaction changes nothing but its nonce.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Reject {
    /// Not produced for client transactions since nonces became a block-validity rule (a block
    /// with a wrong nonce is refused whole); kept so the encoding of later variants is stable.
    #[error("nonce {got} is not above the account's last nonce {last}")]
    Nonce { last: u64, got: u64 },
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    #[error("account limit reached: {0} accounts")]
    TooManyAccounts(usize),
    #[error("unknown market {0}")]
    UnknownMarket(MarketId),
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    #[error("unknown order {0}")]
    UnknownOrder(OrderId),
    #[error("order {0} belongs to another account")]
    NotOwner(OrderId),
    #[error("amount must be positive, got {0}")]
    NonPositiveAmount(i128),
    #[error("only the authority may do this")]
    Unauthorized,
    #[error("insufficient balance: have {have}, need {need}")]
    InsufficientBalance { have: Micros, need: Micros },
    #[error("initial margin would not hold: collateral {collateral}, requirement {required}")]
    InitialMargin { collateral: Micros, required: Micros },
    #[error(
        "the order would leave collateral negative ({collateral}) if it filled; the liquidation engine closes such positions"
    )]
    WouldBankrupt { collateral: Micros },
    #[error("quantity {0} must be positive")]
    BadQuantity(Lots),
    #[error("price {0} must be positive")]
    BadPrice(Ticks),
    #[error("price {price} outside band [{low}, {high}]")]
    PriceBand { price: Ticks, low: Ticks, high: Ticks },
    #[error("market is {0:?}")]
    MarketClosed(crate::MarketStatus),
    #[error("market has no mark price yet")]
    NoMarkPrice,
    #[error("reduce-only order would not reduce the position")]
    ReduceOnly,
    #[error("reduce-only orders must be IOC or FOK")]
    ReduceOnlyTif,
    #[error("post-only order would take liquidity")]
    PostOnlyWouldTake,
    #[error("fill-or-kill order cannot fill in full")]
    FokUnfillable,
    #[error("too many open orders: limit {0}")]
    TooManyOrders(u32),
    #[error("book is full: limit {0}")]
    BookFull(u32),
    #[error("open interest cap {cap} lots would be exceeded")]
    OpenInterestCap { cap: Lots },
    #[error("good-til-block height {0} has already passed")]
    Expired(u64),
    #[error("position must be flat to change isolation")]
    NotFlat,
    #[error("market is not isolated for this account")]
    NotIsolated,
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("arithmetic overflow")]
    Overflow,
    #[error("option market cannot be isolated")]
    OptionIsolated,
    #[error(
        "only a devnet's authority may do this; this chain credits deposits by 2/3 of stake's attestations and changes parameters by validators' governance"
    )]
    DevnetOnly,
}

/// Something that happened while executing a block. Events are ordered and deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Transaction `tx` (index in the block) was rejected.
    Rejected { tx: u32, reason: Reject },
    /// A governance proposal was rejected.
    ProposalRejected { index: u32, reason: Reject },
    /// Collateral credited.
    Deposited { account: AccountId, asset: AssetId, amount: Micros },
    /// Collateral withdrawn: voucher `voucher` now claims it on the source chain.
    Withdrew { account: AccountId, asset: AssetId, amount: Micros, voucher: u64 },
    /// A source-chain deposit was credited by validators' attestations (a `Deposited`, or
    /// `InsuranceToppedUp`, follows).
    BridgeCredited { source_id: crate::SourceId, account: AccountId, asset: AssetId, amount: Micros },
    /// A bridge deposit to the insurance fund.
    InsuranceToppedUp { amount: Micros },
    /// Signatures of 2/3 of stake on a voucher are on chain: anyone may present it to the
    /// source chain.
    VoucherSigned { voucher: u64 },
    /// An order was accepted and rests on the book.
    Rested { market: MarketId, order: OrderId, account: AccountId, side: Side, price: Ticks, qty: Lots },
    /// A trade.
    Fill {
        market: MarketId,
        maker_order: OrderId,
        maker: AccountId,
        taker: AccountId,
        taker_side: Side,
        price: Ticks,
        qty: Lots,
        maker_fee: Micros,
        taker_fee: Micros,
    },
    /// An order left the book (or an incoming order's remainder was dropped).
    Done { market: MarketId, order: OrderId, account: AccountId, reason: DoneReason },
    /// The oracle index of an underlying changed.
    Index { underlying: UnderlyingId, price: PriceMicros, stake_ppm: Ppm, clamped: bool },
    /// Too little stake reported a price; the index kept its previous value.
    OracleMissing { underlying: UnderlyingId, stake_ppm: Ppm },
    /// A market's status changed.
    Status { market: MarketId, status: MarketStatus },
    /// Funding settled: positive rate means longs paid shorts.
    Funding { market: MarketId, rate_ppm: Ppm, index_delta: Micros, paid: Micros, dust_to_insurance: Micros },
    /// Part of a position was liquidated against the book.
    Liquidated { account: AccountId, market: MarketId, qty: Lots, price: Ticks, insurance_delta: Micros },
    /// A position was closed against an opposite position at the bankruptcy price.
    Deleveraged {
        account: AccountId,
        counterparty: AccountId,
        market: MarketId,
        qty: Lots,
        price: PriceMicros,
    },
    /// The insurance fund paid an account's remaining negative balance.
    InsuranceCovered { account: AccountId, amount: Micros },
    /// At an option's settlement or a funding settlement, a receiving holder's payout was cut
    /// to cover counterparties who could not pay and whom the insurance fund could not cover
    /// (socialized loss).
    Socialized { market: MarketId, account: AccountId, amount: Micros },
    /// An option expired and settled in cash.
    OptionSettled { market: MarketId, settlement_price: PriceMicros },
    /// A parameter update took effect.
    ParamsApplied { update: ParamUpdate },
    /// An end-of-block step could not complete (arithmetic overflow on extreme values); the
    /// step was abandoned at that point, identically on every validator.
    Fault { step: String, reason: Reject },
}
