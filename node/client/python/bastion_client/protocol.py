"""Bastion's transaction format, written from node/client/PROTOCOL.md (section numbers below).

Pure Python except for Ed25519 (PyNaCl) and BLAKE3 (`blake3`). Actions are given in the
readable JSON form of PROTOCOL.md section 8, e.g. ``{"Withdraw": {"asset": 0, "amount": 5}}``;
the helpers at the end (`place`, `cancel`, ...) build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3
from nacl.signing import SigningKey

# Section 2: the envelope.
VERSION = 1
HEADER_BYTES = 1 + 32 + 64
MAX_DATAGRAM = 1232
MAX_BODY = MAX_DATAGRAM - HEADER_BYTES

# Section 3: the signed message.
DOMAIN = b"bastion/tx/v1"

# Section 5: keys and accounts.
ACCOUNT_CONTEXT = "bastion 2026-11 account id from ed25519 public key v1"
DERIVE_CONTEXT = "bastion 2026-11 deterministic test key v1"

# Section 7: the transaction hash.
TX_HASH_DOMAIN = b"bastion/txhash/v1"


class EncodeError(ValueError):
    """A value that does not fit the format; the message names the field (a dotted path)."""


class DecodeError(ValueError):
    """Bytes that are not a canonical body."""


# ---------------------------------------------------------------------------------------------
# Section 4.1: postcard's rules.

_UNSIGNED_BITS = {"u16": 16, "u32": 32, "u64": 64}
_SIGNED_BITS = {"i64": 64, "i128": 128}


def varint(n: int) -> bytes:
    """Unsigned LEB128, shortest form."""
    if n < 0:
        raise EncodeError(f"varint of negative {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> int:
    """Signed to unsigned: 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ... (`(n << 1) ^ (n >> (bits-1))`)."""
    return 2 * n if n >= 0 else -2 * n - 1


def unzigzag(z: int) -> int:
    """The inverse of `zigzag`."""
    return (z >> 1) ^ -(z & 1)


# ---------------------------------------------------------------------------------------------
# Section 4.2 and 4.3: the schema of `Action`, declaration order = discriminant order.
# A type is one of: "u16" "u32" "u64" "i64" "i128" "bool" "string", ("option", T), ("vec", T),
# ("struct", [(field, T), ...]), ("enum", [(variant, None | T | ("struct", fields)), ...]).

ACCOUNT_ID, MARKET_ID, ORDER_ID, ASSET_ID, UNDERLYING_ID = "u64", "u32", "u64", "u16", "u16"
TICKS, LOTS, MICROS, PRICE_MICROS, PPM = "i64", "i64", "i128", "i64", "i64"

SIDE = ("enum", [("Buy", None), ("Sell", None)])
TIME_IN_FORCE = ("enum", [("Gtc", None), ("Ioc", None), ("Fok", None), ("PostOnly", None)])
SELF_TRADE_PREVENTION = ("enum", [("CancelResting", None), ("CancelTaker", None), ("CancelBoth", None)])
MARKET_STATUS = ("enum", [("Active", None), ("ReduceOnly", None), ("Halted", None), ("Settled", None)])
OPTION_KIND = ("enum", [("Call", None), ("Put", None)])

ORDER_REQUEST = ("struct", [
    ("market", MARKET_ID),
    ("side", SIDE),
    ("price", ("option", TICKS)),
    ("qty", LOTS),
    ("tif", TIME_IN_FORCE),
    ("reduce_only", "bool"),
    ("good_til_height", ("option", "u64")),
    ("stp", SELF_TRADE_PREVENTION),
])

MARGIN_TIER = ("struct", [("notional_floor", MICROS), ("imr_ppm", PPM), ("mmr_ppm", PPM)])

RISK_PARAMS = ("struct", [
    ("tiers", ("vec", MARGIN_TIER)),
    ("oi_imf_lower", MICROS),
    ("oi_imf_upper", MICROS),
    ("price_band_ppm", PPM),
    ("open_interest_cap", LOTS),
    ("max_orders_per_account", "u32"),
    ("taker_fee_ppm", PPM),
    ("maker_fee_ppm", PPM),
    ("impact_notional", MICROS),
    ("funding_cap_ppm", PPM),
    ("volatility_ppm", PPM),
    ("volatility_min_ppm", PPM),
    ("volatility_max_ppm", PPM),
])

MARKET_KIND = ("enum", [
    ("Perpetual", None),
    ("Option", ("struct", [("kind", OPTION_KIND), ("strike", PRICE_MICROS), ("expiry_ms", "u64")])),
])

MARKET_SPEC = ("struct", [
    ("id", MARKET_ID),
    ("name", "string"),
    ("underlying", UNDERLYING_ID),
    ("kind", MARKET_KIND),
    ("tick_size", PRICE_MICROS),
    ("lot_size_nanos", "i64"),
    ("risk", RISK_PARAMS),
])

ORACLE_PARAMS = ("struct", [
    ("staleness_ms", "u64"),
    ("staleness_halt_ms", "u64"),
    ("observation_max_age_ms", "u64"),
    ("stable_move_ppm_per_s", PPM),
    ("max_move_ppm", PPM),
    ("halt_divergence_ppm", PPM),
    ("basis_ema_ppm", PPM),
])

LIQUIDATION_PARAMS = ("struct", [
    ("max_fraction_ppm", PPM),
    ("min_notional", MICROS),
    ("max_notional_per_block", MICROS),
    ("spread_to_maintenance_ppm", PPM),
    ("max_insurance_fee_ppm", PPM),
    ("funding_interval_ms", "u64"),
    ("portfolio_mm_ppm", PPM),
])

PARAM_UPDATE = ("enum", [
    ("Risk", ("struct", [("market", MARKET_ID), ("risk", RISK_PARAMS)])),
    ("Status", ("struct", [("market", MARKET_ID), ("status", MARKET_STATUS)])),
    ("Haircut", ("struct", [("asset", ASSET_ID), ("haircut_ppm", PPM)])),
    ("List", MARKET_SPEC),
    ("Oracle", ORACLE_PARAMS),
    ("Liquidation", LIQUIDATION_PARAMS),
])

ACTION = ("enum", [
    ("Deposit", ("struct", [("to", ACCOUNT_ID), ("asset", ASSET_ID), ("amount", MICROS)])),
    ("Withdraw", ("struct", [("asset", ASSET_ID), ("amount", MICROS)])),
    ("Place", ORDER_REQUEST),
    ("Cancel", ("struct", [("market", MARKET_ID), ("order", ORDER_ID)])),
    ("Replace", ("struct", [("market", MARKET_ID), ("order", ORDER_ID), ("price", TICKS), ("qty", LOTS)])),
    ("SetMarginMode", ("struct", [("portfolio", "bool")])),
    ("SetIsolated", ("struct", [("market", MARKET_ID), ("isolated", "bool")])),
    ("TransferIsolated", ("struct", [("market", MARKET_ID), ("amount", MICROS)])),
    ("UpdateParams", PARAM_UPDATE),
])


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{path}: expected an integer, got {value!r}")
    return value


def encode(t: Any, value: Any, out: bytearray, path: str = "action") -> None:
    """Appends the postcard encoding of `value` (readable JSON form) as type `t` to `out`."""
    if isinstance(t, str):
        if t in _UNSIGNED_BITS:
            n = _int(value, path)
            if not 0 <= n < 1 << _UNSIGNED_BITS[t]:
                raise EncodeError(f"{path}: {n} is outside {t}")
            out += varint(n)
        elif t in _SIGNED_BITS:
            n = _int(value, path)
            bits = _SIGNED_BITS[t]
            if not -(1 << (bits - 1)) <= n < 1 << (bits - 1):
                raise EncodeError(f"{path}: {n} is outside {t}")
            out += varint(zigzag(n))
        elif t == "bool":
            if not isinstance(value, bool):
                raise EncodeError(f"{path}: expected true or false, got {value!r}")
            out.append(1 if value else 0)
        elif t == "string":
            if not isinstance(value, str):
                raise EncodeError(f"{path}: expected a string, got {value!r}")
            data = value.encode("utf-8")
            out += varint(len(data))
            out += data
        else:
            raise AssertionError(f"unknown type {t}")
        return
    kind, inner = t
    if kind == "option":
        if value is None:
            out.append(0)
        else:
            out.append(1)
            encode(inner, value, out, path)
    elif kind == "vec":
        if not isinstance(value, list):
            raise EncodeError(f"{path}: expected a list, got {value!r}")
        out += varint(len(value))
        for i, item in enumerate(value):
            encode(inner, item, out, f"{path}[{i}]")
    elif kind == "struct":
        if not isinstance(value, dict):
            raise EncodeError(f"{path}: expected an object with fields {[f for f, _ in inner]}, got {value!r}")
        names = [f for f, _ in inner]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise EncodeError(f"{path}: unknown field(s) {unknown}; the fields are {names}")
        for field, ft in inner:
            if field not in value:
                raise EncodeError(f"{path}.{field}: missing (every field is encoded, defaults included)")
            encode(ft, value[field], out, f"{path}.{field}")
    elif kind == "enum":
        names = [v for v, _ in inner]
        if isinstance(value, str):
            name, payload, has_payload = value, None, False
        elif isinstance(value, dict) and len(value) == 1:
            ((name, payload),) = value.items()
            has_payload = True
        else:
            raise EncodeError(f"{path}: expected one of {names} (a string, or an object with one key)")
        if name not in names:
            raise EncodeError(f"{path}: unknown variant {name!r}; expected one of {names}")
        index = names.index(name)
        vt = inner[index][1]
        if (vt is None) == has_payload:
            form = f'"{name}"' if vt is None else f'{{"{name}": ...}}'
            raise EncodeError(f"{path}: variant {name} is written {form}")
        out += varint(index)
        if vt is not None:
            encode(vt, payload, out, f"{path}.{name}")
    else:
        raise AssertionError(f"unknown type {kind}")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError(f"body ends early at byte {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self, bits: int) -> int:
        n, shift, max_bytes = 0, 0, (bits + 6) // 7
        for _ in range(max_bytes):
            b = self.byte()
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise DecodeError(f"varint longer than {max_bytes} bytes at byte {self.pos}")
        if n >> bits:
            raise DecodeError(f"varint {n} overflows {bits} bits")
        return n


def decode(t: Any, r: _Reader) -> Any:
    """Reads one value of type `t` (readable JSON form). Canonicity is checked by the caller."""
    if isinstance(t, str):
        if t in _UNSIGNED_BITS:
            return r.varint(_UNSIGNED_BITS[t])
        if t in _SIGNED_BITS:
            return unzigzag(r.varint(_SIGNED_BITS[t]))
        if t == "bool":
            b = r.byte()
            if b > 1:
                raise DecodeError(f"bool byte {b}")
            return b == 1
        if t == "string":
            n = r.varint(64)
            if r.pos + n > len(r.data):
                raise DecodeError("string runs past the body")
            s = r.data[r.pos:r.pos + n]
            r.pos += n
            try:
                return s.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DecodeError(f"string is not UTF-8: {e}") from e
        raise AssertionError(f"unknown type {t}")
    kind, inner = t
    if kind == "option":
        tag = r.byte()
        if tag > 1:
            raise DecodeError(f"option tag {tag}")
        return decode(inner, r) if tag else None
    if kind == "vec":
        n = r.varint(64)
        if n > len(r.data) - r.pos:
            raise DecodeError(f"vec of {n} items in a short body")
        return [decode(inner, r) for _ in range(n)]
    if kind == "struct":
        return {field: decode(ft, r) for field, ft in inner}
    if kind == "enum":
        index = r.varint(32)
        if index >= len(inner):
            raise DecodeError(f"variant index {index} of {len(inner)}")
        name, vt = inner[index]
        return name if vt is None else {name: decode(vt, r)}
    raise AssertionError(f"unknown type {kind}")


def encode_body(nonce: int, action: Any) -> bytes:
    """Section 4: postcard((nonce: u64, action)), `action` in the readable form."""
    out = bytearray()
    encode("u64", nonce, out, "nonce")
    encode(ACTION, action, out)
    if len(out) > MAX_BODY:
        raise EncodeError(f"body of {len(out)} bytes exceeds {MAX_BODY}")
    return bytes(out)


def decode_body(body: bytes) -> tuple[int, Any]:
    """The nonce and action of a body; refuses anything but the canonical encoding."""
    if len(body) > MAX_BODY:
        raise DecodeError(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    r = _Reader(body)
    nonce = decode("u64", r)
    action = decode(ACTION, r)
    if r.pos != len(body):
        raise DecodeError(f"{len(body) - r.pos} trailing bytes")
    if encode_body(nonce, action) != body:
        raise DecodeError("body is not canonically encoded")
    return nonce, action


# ---------------------------------------------------------------------------------------------
# Sections 2, 3, 5, 7.

def account_of(public_key: bytes) -> int:
    """Section 5: the account id of an Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"public key of {len(public_key)} bytes, expected 32")
    h = blake3.blake3(public_key, derive_key_context=ACCOUNT_CONTEXT).digest()
    return int.from_bytes(h[:8], "little")


def signing_message(chain_digest: bytes, body: bytes) -> bytes:
    """Section 3: "bastion/tx/v1" | chain digest | body."""
    if len(chain_digest) != 32:
        raise ValueError(f"chain digest of {len(chain_digest)} bytes, expected 32 (GET /v1/status genesis_digest)")
    return DOMAIN + chain_digest + body


def encode_packet(public_key: bytes, signature: bytes, body: bytes) -> bytes:
    """Section 2: the datagram."""
    if len(public_key) != 32 or len(signature) != 64:
        raise ValueError("public key must be 32 bytes and signature 64")
    if not 1 <= len(body) <= MAX_BODY:
        raise ValueError(f"body of {len(body)} bytes, expected 1..={MAX_BODY}")
    return bytes([VERSION]) + public_key + signature + body


def decode_packet(datagram: bytes) -> tuple[bytes, bytes, bytes]:
    """(public key, signature, body) of a datagram; raises on a malformed envelope."""
    if not datagram:
        raise DecodeError("empty datagram")
    if datagram[0] != VERSION:
        raise DecodeError(f"envelope version {datagram[0]}, expected {VERSION}")
    if len(datagram) > MAX_DATAGRAM:
        raise DecodeError(f"datagram of {len(datagram)} bytes exceeds {MAX_DATAGRAM}")
    if len(datagram) <= HEADER_BYTES:
        raise DecodeError(f"datagram of {len(datagram)} bytes has no body")
    return datagram[1:33], datagram[33:97], datagram[97:]


def tx_hash(public_key: bytes, body: bytes) -> bytes:
    """Section 7: BLAKE3("bastion/txhash/v1" | public key | body)."""
    return blake3.blake3(TX_HASH_DOMAIN + public_key + body).digest()


@dataclass(frozen=True)
class Signed:
    """A signed transaction: everything `POST /v1/tx` needs, and its hash."""

    nonce: int
    action: Any
    public_key: bytes
    body: bytes
    message: bytes
    signature: bytes

    @property
    def packet(self) -> bytes:
        """The UDP datagram (hex of it is `POST /v1/tx`'s `packet`)."""
        return encode_packet(self.public_key, self.signature, self.body)

    @property
    def hash(self) -> bytes:
        """The tx hash that `POST /v1/tx` answers and `GET /v1/tx/{hash}` takes."""
        return tx_hash(self.public_key, self.body)


class Keypair:
    """An Ed25519 key that signs for its account."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError(f"seed of {len(seed)} bytes, expected 32")
        self._key = SigningKey(bytes(seed))
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> "Keypair":
        """A fresh random key."""
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def derive(cls, label: str, index: int) -> "Keypair":
        """Section 5: the deterministic test key (label, index); never for real funds."""
        material = label.encode("utf-8") + b"\x00" + index.to_bytes(8, "little")
        return cls(blake3.blake3(material, derive_key_context=DERIVE_CONTEXT).digest())

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed (keep it secret)."""
        return bytes(self._key)

    @property
    def account(self) -> int:
        """This key's account id."""
        return account_of(self.public_key)

    def sign(self, chain_digest: bytes, nonce: int, action: Any) -> Signed:
        """Signs `action` (readable form) with `nonce` for the chain whose digest is given."""
        body = encode_body(nonce, action)
        message = signing_message(chain_digest, body)
        signature = self._key.sign(message).signature
        return Signed(nonce, action, self.public_key, body, message, bytes(signature))

    def __repr__(self) -> str:
        return f"Keypair(account {self.account})"


# ---------------------------------------------------------------------------------------------
# Builders of the readable action form.

def place(market: int, side: str, qty: int, price: int | None = None, tif: str = "Gtc",
          reduce_only: bool = False, good_til_height: int | None = None,
          stp: str = "CancelResting") -> dict:
    """An order: `side` "Buy"/"Sell", `price` in ticks (None: market order), `qty` in lots,
    `tif` "Gtc"/"Ioc"/"Fok"/"PostOnly", `stp` "CancelResting"/"CancelTaker"/"CancelBoth"."""
    return {"Place": {"market": market, "side": side, "price": price, "qty": qty, "tif": tif,
                      "reduce_only": reduce_only, "good_til_height": good_til_height, "stp": stp}}


def cancel(market: int, order: int) -> dict:
    """Cancel a resting order."""
    return {"Cancel": {"market": market, "order": order}}


def replace(market: int, order: int, price: int, qty: int) -> dict:
    """Cancel-replace a resting order (loses time priority)."""
    return {"Replace": {"market": market, "order": order, "price": price, "qty": qty}}


def withdraw(asset: int, amount: int) -> dict:
    """Withdraw collateral (micro-units)."""
    return {"Withdraw": {"asset": asset, "amount": amount}}


def deposit(to: int, asset: int, amount: int) -> dict:
    """Credit collateral (the bridge authority only)."""
    return {"Deposit": {"to": to, "asset": asset, "amount": amount}}


def set_margin_mode(portfolio: bool) -> dict:
    """Standard (False) or portfolio (True) margin."""
    return {"SetMarginMode": {"portfolio": portfolio}}


def set_isolated(market: int, isolated: bool) -> dict:
    """Move a market's position in or out of isolated margin."""
    return {"SetIsolated": {"market": market, "isolated": isolated}}


def transfer_isolated(market: int, amount: int) -> dict:
    """Move quote collateral into (positive) or out of (negative) an isolated position."""
    return {"TransferIsolated": {"market": market, "amount": amount}}
