//! The state image: the whole exchange state as one rkyv archive, and its exact inverse.
//!
//! A snapshot is taken in two steps. [`State::view`] captures, between blocks, everything the
//! image needs while sharing the account arena copy-on-write with the live state (one reference
//! count per chunk of [`crate::state::CHUNK`] accounts; the books and small fields are cloned),
//! so execution goes on at once; a background thread then turns the view into bytes with
//! [`StateView::to_image_bytes`]. [`State::from_image_bytes`] rebuilds an executable state
//! from those bytes.
//!
//! # Layout ([`IMAGE_LAYOUT`])
//!
//! The archive is mostly arrays of fixed-size records without padding (rkyv copies them as
//! bytes): accounts in arena order, each naming its range of the flat position array, and per
//! market its mutable fields, its resting orders in the book's priority order and its holders.
//! Small, rarely changing parameter structures (specifications, oracle and liquidation
//! parameters, queued updates) are embedded as JSON, as the commitment encodes them. The image
//! holds the commitment's lanes and root but not the per-record digests: loading recomputes
//! every record's digest (BLAKE3 of its canonical encoding, in parallel; the result does not
//! depend on the number of threads) and checks that the lanes hash to the recorded root.
//! Loading does not re-derive the lanes from the records (that is [`State::recompute_root`],
//! 2 KiB of XOF output per record); a damaged image that still validates is caught by the
//! snapshot file's checksum and by the root consensus agreed on.
//!
//! Derived data is not stored but rebuilt as execution has it between blocks: every account's
//! risk row (all refreshed) and the markets' tier caches (a flag says whether the cache was
//! filled; they are a function of the risk parameters). Holder sets are stored, but written
//! from the positions, since the view does not copy them (a market's holders can be as many
//! as the accounts); the engine's invariant that they equal the accounts with a non-zero
//! position or funding time accrued since the last settlement is checked after every simulated
//! block, and again on load.
//!
//! The archive uses rkyv's default format (little endian, aligned, 32-bit relative pointers):
//! an image is at most 2 GiB, about 16M accounts with a few positions each. Enabling another
//! rkyv format feature anywhere in the build changes the layout and needs a new
//! [`IMAGE_LAYOUT`].
//!
//! # What round-trips
//!
//! Everything that affects later execution or the commitment: every account (arena order
//! included), every market field, each book's orders in priority order with their sequence
//! numbers and the book's next sequence number and limits, the order id counter, pending
//! parameter updates, the lanes. `State::from_image_bytes(&s.to_image_bytes()?)` executes every
//! later block exactly as `s` does, and its own image is byte-for-byte the same.

use crate::root::{self, Commitment, LANES, RecordKey, StateRoot};
use crate::state::{
    ACCOUNTS_MAX, ASSETS_MAX, Account, Accounts, Asset, Chunk, Funding, MARKETS_MAX, Market,
    POSITIONS_PER_ACCOUNT_MAX, Position, State, UNDERLYINGS_MAX, Underlying, Validator,
};
use bastion_book::{Book, BookLimits, RestingOrder};
use bastion_types::{
    AccountId, CollateralSpec, LiquidationParams, MarketId, MarketSpec, MarketStatus, Micros, OracleParams,
    OrderId, ParamUpdate, SelfTradePrevention, Side, UnderlyingId,
};
use rkyv::rancor;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Version of the image layout; bump on any change (snapshot files record it).
pub const IMAGE_LAYOUT: u32 = 4;

/// Why an image could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The bytes are not an image of this layout (the archive check failed).
    #[error("invalid state image: {0}")]
    Invalid(String),
    /// The image decoded but describes no state the engine could be in.
    #[error("inconsistent state image: {0}")]
    Inconsistent(String),
    /// The state could not be encoded.
    #[error("cannot encode the state image: {0}")]
    Encode(String),
}

fn inconsistent(msg: impl Into<String>) -> ImageError {
    ImageError::Inconsistent(msg.into())
}

// ----- the archive -----

/// Parameters stored as JSON (rarely changing, and without rkyv derives in bastion-types).
#[derive(serde::Serialize, serde::Deserialize)]
struct Params {
    oracle: OracleParams,
    liquidation: LiquidationParams,
    pending: Vec<ParamUpdate>,
    chain_id: String,
    devnet: bool,
    governance_nonce: u64,
    /// Validators' governance keys, by index (`stakes` holds their stakes).
    validator_keys: Vec<Option<[u8; 32]>>,
    /// Each validator's latest included observation, by index.
    observations: Vec<Option<bastion_types::Observation>>,
    /// The devnet authority, if any.
    authority: Option<AccountId>,
    /// Credited bridge deposits, ascending by source id.
    credited: Vec<crate::bridge::Credited>,
    /// Withdrawal vouchers, ascending by id.
    vouchers: Vec<crate::bridge::VoucherEntry>,
    /// The last voucher id assigned.
    last_voucher: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Image {
    layout: u32,
    height: u64,
    timestamp_ms: u64,
    next_order: u64,
    fees: i128,
    root: [u8; 32],
    lanes: [u16; LANES],
    stakes: Vec<u64>,
    /// JSON of [`Params`].
    params: Vec<u8>,
    assets: Vec<AssetRec>,
    underlyings: Vec<UnderlyingRec>,
    /// By id, ascending.
    markets: Vec<MarketRec>,
    /// Arena (slot) order.
    accounts: Vec<AccountRec>,
    /// Every account's positions, account after account, each account's sorted by market.
    positions: Vec<PositionRec>,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct AssetRec {
    /// JSON of the [`CollateralSpec`].
    spec: Vec<u8>,
    deposits: i128,
    withdrawals: i128,
    insurance: i128,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct UnderlyingRec {
    name: String,
    index: i64,
    updated_ms: u64,
    diverged: bool,
    stable: i64,
    stable_ms: u64,
    /// JSON of the attested volatilities (`Vec<AttestedVol>`).
    vols: Vec<u8>,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct MarketRec {
    id: u32,
    /// JSON of the [`MarketSpec`].
    spec: Vec<u8>,
    status: u8,
    breaker: u8,
    mark: i64,
    basis_ema: i64,
    last_trade: Option<i64>,
    open_interest: i64,
    funding_index: i128,
    premium_sum: i128,
    samples: u64,
    last_settled_ms: u64,
    lot_value_floor: i128,
    lot_value_ceil: i128,
    index_cache: i64,
    volatility_ppm: i64,
    stable_lot_floor: i128,
    stable_lot_ceil: i128,
    /// Whether the tier caches were filled (they are rebuilt from the specification).
    mm_tiers: bool,
    im_tiers: bool,
    max_orders: u32,
    max_orders_per_account: u32,
    next_seq: u64,
    /// Priority order: bids best first, then asks best first, time priority within a level.
    orders: Vec<OrderRec>,
    /// Ascending.
    holders: Vec<u64>,
}

/// One account; its positions are `positions[first_position..first_position + positions]`.
#[derive(rkyv::Archive, rkyv::Serialize)]
#[repr(C)]
struct AccountRec {
    balances: [i128; ASSETS_MAX],
    id: u64,
    nonce: u64,
    first_position: u32,
    positions: u8,
    portfolio: bool,
    pad: [u8; 10],
}

#[derive(rkyv::Archive, rkyv::Serialize)]
#[repr(C)]
struct PositionRec {
    cost: i128,
    funding_snapshot: i128,
    isolated_balance: i128,
    funding_lot_ms: i128,
    size: i64,
    open_buy: i64,
    open_sell: i64,
    funding_since_ms: u64,
    market: u32,
    isolated: bool,
    pad: [u8; 11],
}

#[derive(rkyv::Archive, rkyv::Serialize)]
#[repr(C)]
struct OrderRec {
    id: u64,
    account: u64,
    price: i64,
    qty: i64,
    original_qty: i64,
    /// 0 when none (`has_good_til` false).
    good_til_height: u64,
    seq: u64,
    /// 0 buy, 1 sell.
    side: u8,
    /// 0 cancel resting, 1 cancel taker, 2 cancel both.
    stp: u8,
    has_good_til: bool,
    pad: [u8; 5],
}

// Fixed-size records without padding: rkyv copies arrays of them as bytes.
const _: () = assert!(size_of::<AccountRec>() == 96 && size_of::<ArchivedAccountRec>() == 96);
const _: () = assert!(size_of::<PositionRec>() == 112 && size_of::<ArchivedPositionRec>() == 112);
const _: () = assert!(size_of::<OrderRec>() == 64 && size_of::<ArchivedOrderRec>() == 64);
const _: () = assert!(POSITIONS_PER_ACCOUNT_MAX <= u8::MAX as usize);

fn status_code(s: MarketStatus) -> u8 {
    match s {
        MarketStatus::Active => 0,
        MarketStatus::ReduceOnly => 1,
        MarketStatus::Halted => 2,
        MarketStatus::Settled => 3,
    }
}

fn status_of(code: u8) -> Result<MarketStatus, ImageError> {
    Ok(match code {
        0 => MarketStatus::Active,
        1 => MarketStatus::ReduceOnly,
        2 => MarketStatus::Halted,
        3 => MarketStatus::Settled,
        _ => return Err(inconsistent(format!("market status code {code}"))),
    })
}

fn stp_code(s: SelfTradePrevention) -> u8 {
    match s {
        SelfTradePrevention::CancelResting => 0,
        SelfTradePrevention::CancelTaker => 1,
        SelfTradePrevention::CancelBoth => 2,
    }
}

fn stp_of(code: u8) -> Result<SelfTradePrevention, ImageError> {
    Ok(match code {
        0 => SelfTradePrevention::CancelResting,
        1 => SelfTradePrevention::CancelTaker,
        2 => SelfTradePrevention::CancelBoth,
        _ => return Err(inconsistent(format!("self-trade prevention code {code}"))),
    })
}

fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Encode(format!("{what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))
}

/// Largest image: rkyv's default relative pointers are 32-bit signed offsets.
const IMAGE_BYTES_MAX: usize = 0x7FFF_FFFF;

impl Image {
    /// An upper bound of the archive's size: every array's bytes plus alignment padding, and
    /// the fixed parts.
    fn size_bound(&self) -> usize {
        // Alignment padding and length-prefix slack per array or string.
        const SLACK: usize = 32;
        let array = |len: usize, item: usize| len.saturating_mul(item).saturating_add(SLACK);
        let mut n = size_of::<ArchivedImage>().saturating_add(SLACK);
        n = n.saturating_add(array(self.stakes.len(), 8)).saturating_add(array(self.params.len(), 1));
        n = n.saturating_add(array(self.assets.len(), size_of::<ArchivedAssetRec>()));
        for a in &self.assets {
            n = n.saturating_add(array(a.spec.len(), 1));
        }
        n = n.saturating_add(array(self.underlyings.len(), size_of::<ArchivedUnderlyingRec>()));
        for u in &self.underlyings {
            n = n.saturating_add(array(u.name.len(), 1)).saturating_add(array(u.vols.len(), 1));
        }
        n = n.saturating_add(array(self.markets.len(), size_of::<ArchivedMarketRec>()));
        for m in &self.markets {
            n = n
                .saturating_add(array(m.spec.len(), 1))
                .saturating_add(array(m.orders.len(), size_of::<ArchivedOrderRec>()))
                .saturating_add(array(m.holders.len(), 8));
        }
        n.saturating_add(array(self.accounts.len(), size_of::<ArchivedAccountRec>()))
            .saturating_add(array(self.positions.len(), size_of::<ArchivedPositionRec>()))
    }
}

/// An image's records, copied out of a [`StateView`] ([`StateView::into_image`]) and not yet
/// serialized; it shares nothing with the live state.
pub struct StateImage(Image);

impl StateImage {
    /// The image's bytes, as [`StateView::to_image_bytes`] gives them.
    pub fn to_bytes(&self) -> Result<rkyv::util::AlignedVec, ImageError> {
        StateView::archive(&self.0)
    }

    /// Writes the image's bytes (those of [`StateImage::to_bytes`]) into `out` as they are
    /// serialized, front to back, and returns how many there are (at most
    /// [`StateImage::len_bound`]): `out` decides how fast they go (a snapshot's writer paces
    /// itself, so as not to take the memory bandwidth execution needs).
    pub fn write_to(&self, out: impl std::io::Write) -> Result<u64, ImageError> {
        let bound = self.len_bound();
        if bound > IMAGE_BYTES_MAX {
            return Err(ImageError::Encode(format!(
                "image of up to {bound} bytes exceeds {IMAGE_BYTES_MAX}"
            )));
        }
        let writer = rkyv::ser::writer::IoWriter::new(out);
        let writer = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&self.0, writer)
            .map_err(|e| ImageError::Encode(e.to_string()))?;
        u64::try_from(rkyv::ser::Positional::pos(&writer)).map_err(|e| ImageError::Encode(e.to_string()))
    }

    /// An upper bound of the image's length in bytes.
    pub fn len_bound(&self) -> usize {
        self.0.size_bound()
    }

    /// The memory of this image's account and position records, for the next image
    /// ([`StateView::into_image_with`]).
    pub fn into_scratch(self) -> ImageScratch {
        ImageScratch { accounts: self.0.accounts, positions: self.0.positions }
    }
}

/// Memory for an image's account and position records, kept from one image to the next
/// ([`StateImage::into_scratch`], [`StateView::into_image_with`]): its size is one image's
/// records (96 bytes an account and 112 a position, 96 MB for 1M accounts), and it holds
/// nothing of any state that matters (the next image overwrites it).
#[derive(Default)]
pub struct ImageScratch {
    accounts: Vec<AccountRec>,
    positions: Vec<PositionRec>,
}

impl ImageScratch {
    /// Bytes of memory held.
    pub fn bytes(&self) -> usize {
        self.accounts
            .capacity()
            .saturating_mul(size_of::<AccountRec>())
            .saturating_add(self.positions.capacity().saturating_mul(size_of::<PositionRec>()))
    }
}

impl std::fmt::Debug for ImageScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageScratch").field("bytes", &self.bytes()).finish()
    }
}

impl std::fmt::Debug for StateImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateImage")
            .field("height", &self.0.height)
            .field("accounts", &self.0.accounts.len())
            .finish_non_exhaustive()
    }
}

// ----- the view -----

/// Everything a snapshot needs, shared copy-on-write with the live state: O(chunks + markets +
/// orders) to take.
///
/// Holds the account arena's chunks (shared), the markets with their books (cloned, without
/// the holder sets, which the image derives from the positions), the small fields and the
/// commitment's lanes; not the id index, the risk rows or the commitment's digests, which
/// loading rebuilds. `Send + Sync + 'static`: hand it to a thread.
#[derive(Clone)]
pub struct StateView {
    height: u64,
    timestamp_ms: u64,
    authority: Option<AccountId>,
    chain_id: String,
    devnet: bool,
    governance_nonce: u64,
    bridge: crate::bridge::BridgeState,
    validators: Vec<Validator>,
    observations: Vec<Option<bastion_types::Observation>>,
    oracle: OracleParams,
    liquidation: LiquidationParams,
    assets: Vec<Asset>,
    underlyings: Vec<Underlying>,
    /// In id order, with empty holder sets.
    markets: Vec<(MarketId, Market)>,
    chunks: Vec<Arc<Chunk>>,
    accounts: usize,
    fees: Micros,
    pending: Vec<ParamUpdate>,
    next_order: u64,
    lanes: Box<[u16; LANES]>,
    root: StateRoot,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView")
            .field("height", &self.height)
            .field("root", &root_hex(&self.root))
            .field("accounts", &self.accounts)
            .field("markets", &self.markets.len())
            .finish_non_exhaustive()
    }
}

fn root_hex(r: &StateRoot) -> String {
    r.iter().map(|b| format!("{b:02x}")).collect()
}

/// A market without its holder set (O(orders) for the book; the holders can be a million).
fn market_without_holders(m: &Market) -> Market {
    Market {
        spec: m.spec.clone(),
        status: m.status,
        breaker: m.breaker,
        book: m.book.clone(),
        mark: m.mark,
        basis_ema: m.basis_ema,
        last_trade: m.last_trade,
        open_interest: m.open_interest,
        funding: m.funding.clone(),
        holders: BTreeSet::new(),
        lot_value_floor: m.lot_value_floor,
        lot_value_ceil: m.lot_value_ceil,
        index_cache: m.index_cache,
        volatility_ppm: m.volatility_ppm,
        stable_lot_floor: m.stable_lot_floor,
        stable_lot_ceil: m.stable_lot_ceil,
        mm_tiers: m.mm_tiers.clone(),
        im_tiers: m.im_tiers.clone(),
        memo: Default::default(),
    }
}

impl State {
    /// A consistent view of the state for a snapshot, cheap enough to take between blocks
    /// (see [`StateView`]); later blocks do not change it.
    pub fn view(&self) -> StateView {
        StateView {
            height: self.height,
            timestamp_ms: self.timestamp_ms,
            authority: self.authority,
            chain_id: self.chain_id.clone(),
            devnet: self.devnet,
            governance_nonce: self.governance_nonce,
            bridge: self.bridge.clone(),
            validators: self.validators.clone(),
            observations: self.observations.clone(),
            oracle: self.oracle,
            liquidation: self.liquidation,
            assets: self.assets.clone(),
            underlyings: self.underlyings.clone(),
            markets: self.markets.iter().map(|(id, m)| (*id, market_without_holders(m))).collect(),
            chunks: self.accounts.chunks(),
            accounts: self.accounts.len(),
            fees: self.fees,
            pending: self.pending.clone(),
            next_order: self.next_order,
            lanes: Box::new(*self.commitment.lanes()),
            root: self.commitment.root(),
        }
    }

    /// The image of this state (see [`StateView::to_image_bytes`]).
    pub fn to_image_bytes(&self) -> Result<rkyv::util::AlignedVec, ImageError> {
        self.view().to_image_bytes()
    }

    /// Rebuilds the executable state from image bytes (16-byte aligned, e.g. a snapshot's
    /// payload; other bytes are copied first): checked access (rkyv's validation), then
    /// conversion with the consistency checks of the module documentation, the risk rows and
    /// the commitment's digests rebuilt, and the lanes checked against the recorded root.
    /// Never panics, whatever the bytes.
    pub fn from_image_bytes(bytes: &[u8]) -> Result<State, ImageError> {
        let copy;
        let bytes = if bytes.as_ptr().addr() & 15 == 0 {
            bytes
        } else {
            let mut v = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
            v.extend_from_slice(bytes);
            copy = v;
            copy.as_slice()
        };
        let image = rkyv::access::<ArchivedImage, rancor::Error>(bytes)
            .map_err(|e| ImageError::Invalid(e.to_string()))?;
        load(image)
    }
}

impl StateView {
    /// Height of the viewed state.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// State root of the viewed state.
    pub fn root(&self) -> StateRoot {
        self.root
    }

    /// Number of accounts in the viewed state.
    pub fn accounts(&self) -> usize {
        self.accounts
    }

    /// The image of the viewed state: an rkyv archive, 16-byte aligned, that
    /// [`State::from_image_bytes`] turns back into the state. Deterministic: equal states give
    /// equal bytes. Costs O(state); meant for a background thread.
    pub fn to_image_bytes(&self) -> Result<rkyv::util::AlignedVec, ImageError> {
        Self::archive(&self.image()?)
    }

    /// [`StateView::to_image_bytes`], consuming the view: [`StateView::into_image`], then
    /// [`StateImage::to_bytes`].
    pub fn into_image_bytes(self) -> Result<rkyv::util::AlignedVec, ImageError> {
        self.into_image()?.to_bytes()
    }

    /// The first half of [`StateView::into_image_bytes`]: the image's records, copied out of
    /// the view, which is consumed. Each chunk of the account arena is let go as soon as its
    /// accounts are copied, before anything else is done; until then the live state copies a
    /// chunk it writes to (copy-on-write), so released early, the copies a snapshot causes
    /// are fewer and stop sooner (what blocks pay for them is the snapshot's only cost on the
    /// execution thread besides taking the view). Nothing of the live state is held after.
    pub fn into_image(self) -> Result<StateImage, ImageError> {
        self.into_image_with(ImageScratch::default())
    }

    /// [`StateView::into_image`], copying the records into `scratch`'s memory (a previous
    /// image's, [`StateImage::into_scratch`]): memory already mapped is written at memory
    /// speed, where a new allocation of 96 MB (1M accounts) is first faulted in a page at a
    /// time, which was two thirds of the copy's time, and so of how long the live state
    /// copies chunks.
    pub fn into_image_with(mut self, scratch: ImageScratch) -> Result<StateImage, ImageError> {
        let chunks = std::mem::take(&mut self.chunks);
        self.image_of(chunks, scratch).map(StateImage)
    }

    fn archive(image: &Image) -> Result<rkyv::util::AlignedVec, ImageError> {
        // rkyv panics on a relative pointer beyond its 32-bit range: refuse such an image.
        let bound = image.size_bound();
        if bound > IMAGE_BYTES_MAX {
            return Err(ImageError::Encode(format!(
                "image of up to {bound} bytes exceeds {IMAGE_BYTES_MAX}"
            )));
        }
        rkyv::to_bytes::<rancor::Error>(image).map_err(|e| ImageError::Encode(e.to_string()))
    }

    fn image(&self) -> Result<Image, ImageError> {
        self.image_of(&self.chunks, ImageScratch::default())
    }

    /// The image of this view with the account arena `chunks` (the view's own, borrowed or
    /// taken out of it), its records written into `scratch`'s memory; an owned chunk is
    /// dropped as soon as it is copied out.
    fn image_of<C: AsRef<Chunk>>(
        &self,
        chunks: impl IntoIterator<Item = C>,
        scratch: ImageScratch,
    ) -> Result<Image, ImageError> {
        let too_many = |what: &str| ImageError::Encode(format!("too many {what} for the image"));
        // Accounts and positions, and the holders of each market from the positions.
        let mut holders: Vec<Vec<u64>> = vec![Vec::new(); self.markets.len()];
        let ImageScratch { mut accounts, mut positions } = scratch;
        accounts.clear();
        positions.clear();
        accounts.reserve(self.accounts);
        for chunk in chunks {
            let chunk = chunk.as_ref();
            for (id, a) in chunk.ids.iter().zip(chunk.accounts.iter()) {
                let first_position = u32::try_from(positions.len()).map_err(|_| too_many("positions"))?;
                let count = u8::try_from(a.positions.len()).map_err(|_| too_many("positions per account"))?;
                accounts.push(AccountRec {
                    balances: a.balances,
                    id: id.0,
                    nonce: a.nonce,
                    first_position,
                    positions: count,
                    portfolio: a.portfolio,
                    pad: [0; 10],
                });
                for p in &a.positions {
                    positions.push(PositionRec {
                        cost: p.cost,
                        funding_snapshot: p.funding_snapshot,
                        isolated_balance: p.isolated_balance,
                        funding_lot_ms: p.funding_lot_ms,
                        size: p.size,
                        open_buy: p.open_buy,
                        open_sell: p.open_sell,
                        funding_since_ms: p.funding_since_ms,
                        market: p.market.0,
                        isolated: p.isolated,
                        pad: [0; 11],
                    });
                    if p.holds() {
                        let i = self.markets.binary_search_by_key(&p.market, |(m, _)| *m).map_err(|_| {
                            ImageError::Encode(format!("account {id} holds unknown market {}", p.market))
                        })?;
                        if let Some(h) = holders.get_mut(i) {
                            h.push(id.0);
                        }
                    }
                }
            }
        }
        let mut markets = Vec::with_capacity(self.markets.len());
        for ((id, m), mut holders) in self.markets.iter().zip(holders) {
            holders.sort_unstable();
            let derived_ok = |cached: &[(Micros, i64, Micros)], derived: crate::num::R<Vec<_>>| {
                cached.is_empty() || derived.is_ok_and(|d| d == cached)
            };
            // The caches are rebuilt from the specification on load: make sure that gives them.
            if !derived_ok(&m.mm_tiers, crate::margin::maintenance_tiers(&m.spec.risk.tiers))
                || !derived_ok(&m.im_tiers, crate::margin::initial_tiers(&m.spec.risk.tiers))
            {
                return Err(ImageError::Encode(format!(
                    "market {id}: tier caches differ from its parameters"
                )));
            }
            let limits = m.book.limits();
            markets.push(MarketRec {
                id: id.0,
                spec: json("market specification", &m.spec)?,
                status: status_code(m.status),
                breaker: status_code(m.breaker),
                mark: m.mark,
                basis_ema: m.basis_ema,
                last_trade: m.last_trade,
                open_interest: m.open_interest,
                funding_index: m.funding.index,
                premium_sum: m.funding.premium_sum,
                samples: m.funding.samples,
                last_settled_ms: m.funding.last_settled_ms,
                lot_value_floor: m.lot_value_floor,
                lot_value_ceil: m.lot_value_ceil,
                index_cache: m.index_cache,
                volatility_ppm: m.volatility_ppm,
                stable_lot_floor: m.stable_lot_floor,
                stable_lot_ceil: m.stable_lot_ceil,
                mm_tiers: !m.mm_tiers.is_empty(),
                im_tiers: !m.im_tiers.is_empty(),
                max_orders: limits.max_orders,
                max_orders_per_account: limits.max_orders_per_account,
                next_seq: m.book.next_seq(),
                orders: m
                    .book
                    .orders()
                    .map(|o| OrderRec {
                        id: o.id.0,
                        account: o.account.0,
                        price: o.price,
                        qty: o.qty,
                        original_qty: o.original_qty,
                        good_til_height: o.good_til_height.unwrap_or(0),
                        seq: o.seq,
                        side: u8::from(o.side == Side::Sell),
                        stp: stp_code(o.stp),
                        has_good_til: o.good_til_height.is_some(),
                        pad: [0; 5],
                    })
                    .collect(),
                holders,
            });
        }
        let params = Params {
            oracle: self.oracle,
            liquidation: self.liquidation,
            pending: self.pending.clone(),
            chain_id: self.chain_id.clone(),
            devnet: self.devnet,
            governance_nonce: self.governance_nonce,
            validator_keys: self.validators.iter().map(|v| v.key).collect(),
            observations: self.observations.clone(),
            authority: self.authority,
            credited: self.bridge.credited.values().cloned().collect(),
            vouchers: self.bridge.vouchers.values().cloned().collect(),
            last_voucher: self.bridge.last_voucher,
        };
        Ok(Image {
            layout: IMAGE_LAYOUT,
            height: self.height,
            timestamp_ms: self.timestamp_ms,
            next_order: self.next_order,
            fees: self.fees,
            root: self.root,
            lanes: *self.lanes,
            stakes: self.validators.iter().map(|v| v.stake).collect(),
            params: json("parameters", &params)?,
            assets: self
                .assets
                .iter()
                .map(|a| {
                    Ok(AssetRec {
                        spec: json("collateral specification", &a.spec)?,
                        deposits: a.deposits,
                        withdrawals: a.withdrawals,
                        insurance: a.insurance,
                    })
                })
                .collect::<Result<_, ImageError>>()?,
            underlyings: self
                .underlyings
                .iter()
                .map(|u| {
                    Ok(UnderlyingRec {
                        name: u.name.clone(),
                        index: u.index,
                        updated_ms: u.updated_ms,
                        diverged: u.diverged,
                        stable: u.stable,
                        stable_ms: u.stable_ms,
                        vols: json("attested volatilities", &u.vols)?,
                    })
                })
                .collect::<Result<_, ImageError>>()?,
            markets,
            accounts,
            positions,
        })
    }
}

// ----- loading -----

fn load(img: &ArchivedImage) -> Result<State, ImageError> {
    let layout = img.layout.to_native();
    if layout != IMAGE_LAYOUT {
        return Err(ImageError::Invalid(format!("layout {layout}, this build reads {IMAGE_LAYOUT}")));
    }
    let mut lanes = Box::new([0u16; LANES]);
    for (l, a) in lanes.iter_mut().zip(img.lanes.iter()) {
        *l = a.to_native();
    }
    let root = img.root;
    if root::root_of(&lanes) != root {
        return Err(inconsistent("the lanes do not hash to the recorded root"));
    }
    let params: Params = from_json("parameters", &img.params)?;

    if img.assets.is_empty() || img.assets.len() > ASSETS_MAX {
        return Err(inconsistent(format!("{} collateral assets", img.assets.len())));
    }
    let mut assets = Vec::with_capacity(img.assets.len());
    for (i, a) in img.assets.iter().enumerate() {
        let spec: CollateralSpec = from_json("collateral specification", &a.spec)?;
        if usize::from(spec.asset.0) != i {
            return Err(inconsistent(format!("asset #{i} has id {}", spec.asset)));
        }
        assets.push(Asset {
            spec,
            deposits: a.deposits.to_native(),
            withdrawals: a.withdrawals.to_native(),
            insurance: a.insurance.to_native(),
        });
    }
    if img.underlyings.len() > UNDERLYINGS_MAX {
        return Err(inconsistent(format!("{} underlyings", img.underlyings.len())));
    }
    let underlyings = img
        .underlyings
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Ok(Underlying {
                id: UnderlyingId(u16::try_from(i).map_err(|_| inconsistent("underlying id"))?),
                name: u.name.as_str().to_owned(),
                index: u.index.to_native(),
                updated_ms: u.updated_ms.to_native(),
                diverged: u.diverged,
                stable: u.stable.to_native(),
                stable_ms: u.stable_ms.to_native(),
                vols: from_json("attested volatilities", &u.vols)?,
            })
        })
        .collect::<Result<Vec<_>, ImageError>>()?;

    // Market ids first: positions name them.
    if img.markets.len() > MARKETS_MAX {
        return Err(inconsistent(format!("{} markets", img.markets.len())));
    }
    let market_ids: Vec<u32> = img.markets.iter().map(|m| m.id.to_native()).collect();
    if market_ids.windows(2).any(|w| w.first() >= w.get(1)) {
        return Err(inconsistent("market ids not strictly ascending"));
    }

    // Accounts in arena order, with the holders each market's positions imply; meanwhile the
    // other cores digest the same records for the commitment.
    if img.accounts.len() > ACCOUNTS_MAX {
        return Err(inconsistent(format!("{} accounts", img.accounts.len())));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut account_digests: Vec<Option<[u8; 32]>> = vec![None; img.accounts.len()];
    let (built, digested) =
        with_account_digests(img, &market_ids, &mut account_digests, cores, || build_arena(img, &market_ids));
    let (accounts, derived_holders) = built?;
    digested?;
    if account_digests.iter().any(Option::is_none) {
        return Err(inconsistent("accounts vanished while digesting"));
    }

    let mut markets = std::collections::BTreeMap::new();
    for (rec, mut derived) in img.markets.iter().zip(derived_holders) {
        let id = MarketId(rec.id.to_native());
        let market = load_market(rec, id, &accounts, underlyings.len())?;
        derived.sort_unstable();
        let holders = &rec.holders;
        if holders.len() != derived.len() || holders.iter().zip(&derived).any(|(a, b)| a.to_native() != *b) {
            return Err(inconsistent(format!("market {id}: holders differ from the positions")));
        }
        let market = Market { holders: derived.into_iter().map(AccountId).collect(), ..market };
        markets.insert(id, market);
    }

    if params.observations.len() != img.stakes.len() {
        return Err(inconsistent(format!(
            "{} observation slots for {} validators",
            params.observations.len(),
            img.stakes.len()
        )));
    }
    for (i, o) in params.observations.iter().enumerate() {
        if let Some(o) = o
            && usize::from(o.validator.0) != i
        {
            return Err(inconsistent(format!(
                "validator {i}'s observation names validator {}",
                o.validator.0
            )));
        }
    }
    let bridge = bridge_records(params.credited, params.vouchers, params.last_voucher)?;
    let mut state = State {
        height: img.height.to_native(),
        timestamp_ms: img.timestamp_ms.to_native(),
        authority: params.authority,
        chain_id: params.chain_id,
        devnet: params.devnet,
        governance_nonce: params.governance_nonce,
        validators: img
            .stakes
            .iter()
            .enumerate()
            .map(|(i, s)| Validator {
                stake: s.to_native(),
                key: params.validator_keys.get(i).copied().flatten(),
            })
            .collect(),
        observations: params.observations,
        oracle: params.oracle,
        liquidation: params.liquidation,
        assets,
        underlyings,
        markets,
        accounts,
        fees: img.fees.to_native(),
        pending: params.pending,
        next_order: img.next_order.to_native(),
        bridge,
        commitment: Commitment::default(),
        dirty: Vec::new(),
        screen: None,
    };
    state.refresh_all_risk_rows();
    let digests = rebuild_digests(&state, cores)?;
    state.commitment = Commitment::from_parts(lanes, digests, account_digests);
    Ok(state)
}

/// The account arena from the image's records (slot order), and each market's holders as the
/// positions imply them (by market index, ascending as the arena is).
fn build_arena(img: &ArchivedImage, market_ids: &[u32]) -> Result<(Accounts, Vec<Vec<u64>>), ImageError> {
    let mut derived_holders: Vec<Vec<u64>> = vec![Vec::new(); market_ids.len()];
    let mut cursor: usize = 0;
    let mut failure = None;
    // Streamed into the arena's chunks; the first error stops the stream and is returned.
    let arena = img.accounts.iter().map_while(|rec| {
        match load_account(rec, &img.positions, market_ids, &mut cursor, &mut derived_holders) {
            Ok(entry) => Some(entry),
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    let accounts = Accounts::from_arena(arena, img.accounts.len())
        .map_err(|id| inconsistent(format!("account {id} twice")));
    if let Some(e) = failure {
        return Err(e);
    }
    let accounts = accounts?;
    if cursor != img.positions.len() {
        return Err(inconsistent(format!("{} positions, accounts name {cursor}", img.positions.len())));
    }
    Ok((accounts, derived_holders))
}

/// Runs `main` on this thread while up to `cores - 1` others fill `out` with the digest of
/// every account of the image (slot `i` is `img.accounts[i]`), then helps them finish. Each
/// account is made by [`account_of`], as the arena's is, so the digests are those of the
/// arena's accounts. Parts of [`DIGEST_PART`] slots are handed out one at a time, each
/// written in order. A record that does not make an account leaves its slot `None` (the
/// arena's build reports why).
fn with_account_digests<R>(
    img: &ArchivedImage,
    market_ids: &[u32],
    out: &mut [Option<[u8; 32]>],
    cores: usize,
    main: impl FnOnce() -> R,
) -> (R, Result<(), ImageError>) {
    let out_len = out.len();
    let parts = out.chunks_mut(DIGEST_PART).enumerate().map(|(i, p)| (i.saturating_mul(DIGEST_PART), p));
    let queue = std::sync::Mutex::new(parts);
    let work = || {
        // Each part is taken once; a poisoned queue (a thread died) ends the work, and the
        // slots it left empty are reported by the caller.
        while let Some((first, part)) = queue.lock().ok().and_then(|mut q| q.next()) {
            for (rec, d) in img.accounts.get(first..).unwrap_or_default().iter().zip(part.iter_mut()) {
                *d = account_of(rec, &img.positions, market_ids)
                    .ok()
                    .map(|(id, a)| Commitment::digest(RecordKey::Account(id.0), &crate::encode::account(&a)));
            }
        }
    };
    // One part is not worth a thread.
    let threads = if out_len > DIGEST_PART { cores } else { 1 };
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            (1..threads).filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok()).collect();
        let r = main();
        work();
        // Joined here, so a failed worker is an error rather than a panic of the scope.
        let mut joined = Ok(());
        for w in workers {
            if w.join().is_err() {
                joined = Err(inconsistent("a digest worker failed"));
            }
        }
        (r, joined)
    })
}

/// One account of the arena; `cursor` is where its positions must start (advanced past them),
/// and each market's `holders` gains the account if it holds there ([`Position::holds`]).
fn load_account(
    rec: &ArchivedAccountRec,
    all_positions: &[ArchivedPositionRec],
    market_ids: &[u32],
    cursor: &mut usize,
    holders: &mut [Vec<u64>],
) -> Result<(AccountId, Account), ImageError> {
    let first =
        usize::try_from(rec.first_position.to_native()).map_err(|_| inconsistent("position index"))?;
    if first != *cursor {
        let id = rec.id.to_native();
        let count = rec.positions;
        return Err(inconsistent(format!("account {id}: position range {first}+{count}, expected {cursor}")));
    }
    let (id, account) = account_of(rec, all_positions, market_ids)?;
    *cursor = cursor.checked_add(account.positions.len()).ok_or_else(|| inconsistent("position index"))?;
    for p in account.positions.iter().filter(|p| p.holds()) {
        if let Ok(m) = market_ids.binary_search(&p.market.0)
            && let Some(h) = holders.get_mut(m)
        {
            h.push(id.0);
        }
    }
    Ok((id, account))
}

/// The account of an image record with its positions (`all_positions[first_position..]`),
/// checked: the range within bounds and at most [`POSITIONS_PER_ACCOUNT_MAX`], the positions
/// sorted by market, every market known. What [`load_account`] puts in the arena, and what
/// the digests are computed from.
fn account_of(
    rec: &ArchivedAccountRec,
    all_positions: &[ArchivedPositionRec],
    market_ids: &[u32],
) -> Result<(AccountId, Account), ImageError> {
    let id = AccountId(rec.id.to_native());
    let first =
        usize::try_from(rec.first_position.to_native()).map_err(|_| inconsistent("position index"))?;
    let count = usize::from(rec.positions);
    let end = first.checked_add(count).ok_or_else(|| inconsistent("position index"))?;
    if count > POSITIONS_PER_ACCOUNT_MAX {
        return Err(inconsistent(format!("account {id}: {count} positions")));
    }
    let recs = all_positions
        .get(first..end)
        .ok_or_else(|| inconsistent(format!("account {id}: position range {first}+{count} out of bounds")))?;
    let mut positions = Vec::with_capacity(count);
    for p in recs {
        let market = MarketId(p.market.to_native());
        if positions.last().is_some_and(|q: &Position| q.market >= market) {
            return Err(inconsistent(format!("account {id}: positions not sorted by market")));
        }
        if market_ids.binary_search(&market.0).is_err() {
            return Err(inconsistent(format!("account {id}: position in unknown market {market}")));
        }
        positions.push(Position {
            market,
            size: p.size.to_native(),
            cost: p.cost.to_native(),
            funding_snapshot: p.funding_snapshot.to_native(),
            funding_lot_ms: p.funding_lot_ms.to_native(),
            funding_since_ms: p.funding_since_ms.to_native(),
            open_buy: p.open_buy.to_native(),
            open_sell: p.open_sell.to_native(),
            isolated: p.isolated,
            isolated_balance: p.isolated_balance.to_native(),
        });
    }
    let mut balances = [0; ASSETS_MAX];
    for (b, a) in balances.iter_mut().zip(rec.balances.iter()) {
        *b = a.to_native();
    }
    Ok((id, Account { balances, positions, nonce: rec.nonce.to_native(), portfolio: rec.portfolio }))
}

fn load_market(
    rec: &ArchivedMarketRec,
    id: MarketId,
    accounts: &Accounts,
    underlyings: usize,
) -> Result<Market, ImageError> {
    let spec: MarketSpec = from_json("market specification", &rec.spec)?;
    if spec.id != id {
        return Err(inconsistent(format!("market {id} has specification of {}", spec.id)));
    }
    if usize::from(spec.underlying.0) >= underlyings {
        return Err(inconsistent(format!("market {id}: unknown underlying {}", spec.underlying)));
    }
    let mut orders = Vec::with_capacity(rec.orders.len());
    for o in rec.orders.iter() {
        let account = AccountId(o.account.to_native());
        if !accounts.contains_key(&account) {
            return Err(inconsistent(format!("market {id}: order of unknown account {account}")));
        }
        orders.push(RestingOrder {
            id: OrderId(o.id.to_native()),
            account,
            side: match o.side {
                0 => Side::Buy,
                1 => Side::Sell,
                s => return Err(inconsistent(format!("market {id}: side code {s}"))),
            },
            price: o.price.to_native(),
            qty: o.qty.to_native(),
            original_qty: o.original_qty.to_native(),
            good_til_height: o.has_good_til.then(|| o.good_til_height.to_native()),
            stp: stp_of(o.stp)?,
            seq: o.seq.to_native(),
        });
    }
    let limits = BookLimits {
        max_orders: rec.max_orders.to_native(),
        max_orders_per_account: rec.max_orders_per_account.to_native(),
    };
    let book = Book::restore(limits, rec.next_seq.to_native(), orders)
        .map_err(|e| inconsistent(format!("market {id}: book: {e}")))?;
    let tiers = |cached: bool, derived: crate::num::R<Vec<(Micros, i64, Micros)>>| {
        if cached {
            derived.map_err(|e| inconsistent(format!("market {id}: tiers: {e}")))
        } else {
            Ok(Vec::new())
        }
    };
    let mm_tiers = tiers(rec.mm_tiers, crate::margin::maintenance_tiers(&spec.risk.tiers))?;
    let im_tiers = tiers(rec.im_tiers, crate::margin::initial_tiers(&spec.risk.tiers))?;
    Ok(Market {
        status: status_of(rec.status)?,
        breaker: status_of(rec.breaker)?,
        book,
        mark: rec.mark.to_native(),
        basis_ema: rec.basis_ema.to_native(),
        last_trade: rec.last_trade.as_ref().map(|t| t.to_native()),
        open_interest: rec.open_interest.to_native(),
        funding: Funding {
            index: rec.funding_index.to_native(),
            premium_sum: rec.premium_sum.to_native(),
            samples: rec.samples.to_native(),
            last_settled_ms: rec.last_settled_ms.to_native(),
        },
        holders: BTreeSet::new(),
        lot_value_floor: rec.lot_value_floor.to_native(),
        lot_value_ceil: rec.lot_value_ceil.to_native(),
        index_cache: rec.index_cache.to_native(),
        volatility_ppm: rec.volatility_ppm.to_native(),
        stable_lot_floor: rec.stable_lot_floor.to_native(),
        stable_lot_ceil: rec.stable_lot_ceil.to_native(),
        mm_tiers,
        im_tiers,
        // Not imaged: the first block after loading computes the prices again.
        memo: Default::default(),
        spec,
    })
}

/// Digests of some records.
type Batch = Vec<(RecordKey, [u8; 32])>;

/// Records per unit of digest work.
const DIGEST_PART: usize = 8_192;

/// The bridge's records from the image's lists: each source id and voucher id once, voucher
/// ids at most the last one assigned.
fn bridge_records(
    credited: Vec<crate::bridge::Credited>,
    vouchers: Vec<crate::bridge::VoucherEntry>,
    last_voucher: u64,
) -> Result<crate::bridge::BridgeState, ImageError> {
    let mut b = crate::bridge::BridgeState { last_voucher, ..Default::default() };
    for c in credited {
        let id = c.deposit.source_id;
        if b.credited.insert(id, c).is_some() {
            return Err(inconsistent(format!("deposit {id} credited twice")));
        }
    }
    for v in vouchers {
        let id = v.voucher.id;
        if id == 0 || id > last_voucher {
            return Err(inconsistent(format!("voucher {id} is not in 1..={last_voucher}")));
        }
        if b.vouchers.insert(id, v).is_some() {
            return Err(inconsistent(format!("voucher {id} appears twice")));
        }
    }
    Ok(b)
}

/// The digest of every record of `s` but the accounts' (which [`with_account_digests`]
/// computes), as the commitment keeps them: a map by key. Records are independent and the map
/// is a set, so parts of the key list are digested on up to `cores` threads while the calling
/// thread fills the map; the result does not depend on the number of threads.
fn rebuild_digests(s: &State, cores: usize) -> Result<HashMap<RecordKey, [u8; 32]>, ImageError> {
    let keys = crate::encode::keys_but_accounts(s);
    let mut map = HashMap::with_capacity(keys.len());
    let digest_part = |part: &[RecordKey]| -> Batch {
        part.iter()
            .filter_map(|k| crate::encode::record(s, *k).map(|v| (*k, Commitment::digest(*k, &v))))
            .collect()
    };
    let parts: Vec<&[RecordKey]> = keys.chunks(DIGEST_PART).collect();
    if parts.len() < 2 || cores < 2 {
        map.extend(digest_part(&keys));
    } else {
        digest_in_parallel(&parts, cores, &digest_part, &mut map)?;
    }
    if map.len() != keys.len() {
        return Err(inconsistent("records vanished while digesting"));
    }
    Ok(map)
}

/// Digests `parts` on up to `cores` threads while the calling thread fills `map`.
fn digest_in_parallel<'k>(
    parts: &[&'k [RecordKey]],
    cores: usize,
    digest_part: &(dyn Fn(&'k [RecordKey]) -> Batch + Sync),
    map: &mut HashMap<RecordKey, [u8; 32]>,
) -> Result<(), ImageError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |tx: &std::sync::mpsc::Sender<Batch>| {
        while let Some(part) = parts.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            if tx.send(digest_part(part)).is_err() {
                break;
            }
        }
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Batch>();
        let workers: Vec<_> = (0..cores.min(parts.len()))
            .filter_map(|_| {
                let tx = tx.clone();
                let work = &work;
                std::thread::Builder::new().spawn_scoped(scope, move || work(&tx)).ok()
            })
            .collect();
        if workers.is_empty() {
            // No thread to be had: do it all here.
            work(&tx);
        }
        drop(tx);
        for batch in rx {
            map.extend(batch);
        }
        // Joined here, so a failed worker is an error rather than a panic of the scope.
        for w in workers {
            w.join().map_err(|_| inconsistent("a digest worker failed"))?;
        }
        Ok::<_, ImageError>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_bounds_the_archive() {
        let g = crate::Genesis::devnet();
        let mut s = State::from_genesis(&g).unwrap();
        for i in 1..50u64 {
            let mut a = Account { nonce: i, ..Account::default() };
            a.positions.push(Position { market: bastion_types::MarketId(0), ..Position::default() });
            s.accounts.insert(AccountId(i), a);
        }
        let image = s.view().image().unwrap();
        let bytes = rkyv::to_bytes::<rancor::Error>(&image).unwrap();
        assert!(image.size_bound() >= bytes.len(), "{} < {}", image.size_bound(), bytes.len());
        assert!(image.size_bound() < bytes.len() * 2);
    }

    #[test]
    fn an_image_into_another_images_memory_is_the_same_image() {
        let g = crate::Genesis::devnet();
        let state = |accounts: u64, positions: bool| {
            let mut s = State::from_genesis(&g).unwrap();
            for i in 1..accounts {
                let mut a = Account { nonce: i, ..Account::default() };
                if positions {
                    a.positions.push(Position { market: bastion_types::MarketId(0), ..Position::default() });
                }
                s.accounts.insert(AccountId(i), a);
            }
            s
        };
        let (big, small) = (state(80, true), state(30, false));
        let scratch = big.view().into_image().unwrap().into_scratch();
        assert!(scratch.bytes() >= 80 * size_of::<AccountRec>());
        let reused = small.view().into_image_with(scratch).unwrap();
        assert_eq!(reused.to_bytes().unwrap().as_slice(), small.to_image_bytes().unwrap().as_slice());
        let again = big.view().into_image_with(reused.into_scratch()).unwrap().to_bytes().unwrap();
        assert_eq!(again.as_slice(), big.to_image_bytes().unwrap().as_slice());
    }

    #[test]
    fn view_is_sendable() {
        fn check<T: Send + Sync + 'static>() {}
        check::<StateView>();
    }
}
