#!/usr/bin/env python3
"""A trader's first five minutes on a Bastion devnet, from nothing to a fill:

  1. read the chain's genesis digest (GET /v1/status)
  2. create a key (its account id derives from the public key)
  3. ask the faucet for test collateral (POST /v1/faucet)
  4. wait until the account shows collateral (GET /v1/accounts/{id})
  5. read the book (GET /v1/book/{market}) and pick the best ask
  6. subscribe to this account's fills (WebSocket /v1/ws, userFills)
  7. sign an IOC buy that crosses the best ask and send it (POST /v1/tx)
  8. follow the transaction (GET /v1/tx/{hash}) and wait for its fill on the feed

Exits 0 once the fill arrives, 1 with the reason otherwise. Run it against a devnet:

    cargo run --release -p bastion -- devnet &        # prints the API address
    python node/client/python/examples/first_trade.py --api http://127.0.0.1:8080

The API's answer shapes are read defensively (several spellings of each field are accepted);
`--verbose` prints every answer in full, to adjust this script when a shape differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion_client import Api, ApiError, Feed, Keypair, place  # noqa: E402

VERBOSE = False


def step(n: int, text: str) -> None:
    print(f"[{n}] {text}", flush=True)


def show(label: str, value: Any) -> None:
    if VERBOSE:
        print(f"    {label}: {json.dumps(value)[:2000]}", flush=True)


def fail(text: str) -> None:
    print(f"FAILED: {text}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def as_int(v: Any) -> int | None:
    """An integer from a JSON number or a decimal string; None otherwise."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def collateral_of(account: Any) -> int:
    """Quote collateral of a `GET /v1/accounts/{id}` answer, whatever its exact shape:
    a number, a per-asset object, or a list of {asset, amount}."""
    if not isinstance(account, dict):
        return 0
    for key in ("collateral", "balances", "balance", "equity"):
        v = account.get(key)
        n = as_int(v)
        if n is not None:
            return n
        if isinstance(v, dict):
            for k in ("0", "quote", "amount", "total", "value"):
                n = as_int(v.get(k))
                if n is not None:
                    return n
            return sum(x for x in (as_int(y) for y in v.values()) if x is not None)
        if isinstance(v, list):
            return sum(x for x in (as_int(e.get("amount") if isinstance(e, dict) else e) for e in v) if x is not None)
    return 0


def level(entry: Any) -> tuple[int, int] | None:
    """(price ticks, size lots) of a book level: {"price", "size"} or [price, size]."""
    if isinstance(entry, dict):
        p = as_int(entry.get("price", entry.get("px")))
        s = as_int(entry.get("size", entry.get("qty", entry.get("sz"))))
    elif isinstance(entry, (list, tuple)) and len(entry) >= 2:
        p, s = as_int(entry[0]), as_int(entry[1])
    else:
        return None
    return None if p is None or s is None else (p, s)


def best_ask(book: Any) -> tuple[int, int] | None:
    asks = book.get("asks", []) if isinstance(book, dict) else []
    levels = [lv for lv in (level(a) for a in asks) if lv is not None]
    return min(levels) if levels else None


def fills_in(message: Any) -> list:
    """The fills a `userFills` message carries (a list, or an object holding one)."""
    data = message.get("data") if isinstance(message, dict) else None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("fills", "updates", "events"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data] if data else []
    return []


def tx_state(answer: Any) -> str:
    """"pending", "included", "rejected" or what the node said, lower-case."""
    if isinstance(answer, dict):
        for key in ("status", "state", "result"):
            v = answer.get(key)
            if isinstance(v, str):
                return v.lower()
            if isinstance(v, dict) and len(v) == 1:
                return next(iter(v)).lower()
        if answer.get("rejected") or answer.get("reason"):
            return "rejected"
        if answer.get("height") is not None:
            return "included"
    return "unknown"


async def call(fn, *args):
    """A blocking REST call off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def main(args: argparse.Namespace) -> None:
    api = Api(args.api, timeout=args.http_timeout)
    deadline = time.monotonic() + args.timeout

    step(1, f"GET {api.base_url}/v1/status")
    try:
        status = await call(api.status)
    except (OSError, ApiError) as e:
        fail(f"cannot read the node's status at {api.base_url}: {e} (is `bastion devnet` running? --api)")
    show("status", status)
    digest = bytes.fromhex(status.get("genesis_digest", "")) if isinstance(status, dict) else b""
    if len(digest) != 32:
        fail(f"/v1/status has no 32-byte hex genesis_digest: {status!r}")
    print(f"    chain {status.get('chain_id')!r} at height {status.get('height')}, genesis digest {digest.hex()}")

    key = Keypair(bytes.fromhex(args.seed)) if args.seed else Keypair.generate()
    step(2, f"key {key.public_key.hex()} -> account {key.account}")

    step(3, f"POST /v1/faucet for account {key.account}")
    try:
        answer = await call(api.faucet, key.account)
    except ApiError as e:
        fail(f"the faucet refused: {e} (it exists only on devnets)")
    show("faucet", answer)
    print(f"    faucet deposit {answer.get('hash') if isinstance(answer, dict) else answer}")

    step(4, "waiting for the deposit to finalize")
    account: Any = None
    while True:
        try:
            account = await call(api.account, key.account)
            if collateral_of(account) > 0:
                break
        except ApiError as e:
            if e.status != 404:
                fail(f"reading the account: {e}")
        if time.monotonic() > deadline:
            fail(f"no collateral on account {key.account} after {args.timeout:.0f} s (last answer {account!r})")
        await asyncio.sleep(args.poll)
    show("account", account)
    print(f"    collateral {collateral_of(account)} micro-units")
    nonce = (as_int(account.get("nonce")) or 0) + 1 if isinstance(account, dict) else 1

    step(5, f"GET /v1/book/{args.market}")
    book = await call(api.book, args.market, 5)
    show("book", book)
    ask = best_ask(book)
    if ask is None and args.price is None:
        fail(f"market {args.market} has no asks to cross (on a devnet the load generator makes the market; "
             "or pass --price)")
    price = args.price if args.price is not None else ask[0] + args.cross_ticks
    print(f"    best ask {ask}; buying {args.qty} lot(s) IOC at {price} ticks")

    ws_url = args.ws or api.ws_url()
    step(6, f"subscribing to userFills of {key.account} on {ws_url}")
    async with Feed(ws_url) as feed:
        await feed.subscribe("userFills", account=str(key.account))
        try:
            snapshot = await feed.next(timeout=args.http_timeout)
        except asyncio.TimeoutError:
            fail("no snapshot on the userFills subscription")
        show("snapshot", snapshot)
        print(f"    snapshot at height {snapshot.get('height')}: {len(fills_in(snapshot))} earlier fill(s)")

        step(7, f"signing nonce {nonce}: IOC buy {args.qty} @ {price} on market {args.market}; POST /v1/tx")
        signed = key.sign(digest, nonce, place(args.market, "Buy", args.qty, price=price, tif="Ioc"))
        try:
            answer_hash = await call(api.submit, signed)
        except ApiError as e:
            fail(f"the node refused the transaction: {e}")
        print(f"    tx hash {answer_hash}")
        if answer_hash != signed.hash.hex():
            print(f"    warning: the node's hash differs from ours ({signed.hash.hex()}): see PROTOCOL.md section 7")

        step(8, "following the transaction and waiting for the fill")
        fills: list = []
        state, last_poll = "pending", 0.0
        while not fills:
            now = time.monotonic()
            if now > deadline:
                fail(f"no fill after {args.timeout:.0f} s (transaction {state}; feed gaps {feed.gaps})")
            if state in ("pending", "unknown") and now - last_poll >= args.poll:
                last_poll = now
                try:
                    tx = await call(api.tx, answer_hash)
                    new = tx_state(tx)
                    if new != state:
                        show("tx", tx)
                        print(f"    transaction {new}: {json.dumps(tx)[:300]}")
                    state = new
                    if state == "rejected":
                        fail(f"the transaction was rejected: {json.dumps(tx)}")
                except ApiError as e:
                    if e.status != 404:
                        fail(f"GET /v1/tx: {e}")
            try:
                msg = await feed.next(timeout=args.poll)
            except asyncio.TimeoutError:
                continue
            show("feed", msg)
            fills = fills_in(msg)
        print(f"    filled at height {msg.get('height')}: {json.dumps(fills)[:500]}")
        if feed.gaps:
            print(f"    warning: {feed.gaps} gap(s) in the feed's seq")
    print("OK: faucet, order, fill")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", default="http://127.0.0.1:8080", help="the node's API (default %(default)s)")
    p.add_argument("--ws", help="the WebSocket feed (default: the API's /v1/ws)")
    p.add_argument("--market", type=int, default=1, help="market id (default %(default)s)")
    p.add_argument("--qty", type=int, default=1, help="lots to buy (default %(default)s)")
    p.add_argument("--price", type=int, help="limit price in ticks (default: best ask + --cross-ticks)")
    p.add_argument("--cross-ticks", type=int, default=0, help="ticks above the best ask (default %(default)s)")
    p.add_argument("--seed", help="32-byte hex seed of the key (default: a new random key)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run (default %(default)s)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between polls (default %(default)s)")
    p.add_argument("--http-timeout", type=float, default=10.0, help="seconds per request (default %(default)s)")
    p.add_argument("--verbose", action="store_true", help="print every answer in full")
    a = p.parse_args()
    VERBOSE = a.verbose
    try:
        asyncio.run(main(a))
    except KeyboardInterrupt:
        fail("interrupted")
