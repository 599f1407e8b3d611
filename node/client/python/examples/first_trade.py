#!/usr/bin/env python3
"""A trader's first five minutes on a Bastion devnet, from nothing to a fill:

  1. read the chain's genesis digest (GET /v1/status)
  2. create a key (its account id derives from the public key)
  3. ask the faucet for test collateral (POST /v1/faucet)
  4. wait until the account shows collateral (GET /v1/accounts/{id})
  5. subscribe to this account's fills and to blocks (WebSocket /v1/ws: userFills, blocks)
  6. read the book (GET /v1/book/{market}), sign an IOC buy that crosses the best ask and send
     it (POST /v1/tx)
  7. follow the transaction (GET /v1/tx/{hash}) and wait for its fill on the feed; when the
     block that included it has passed without a fill (the book moved away), go back to 6 with
     the next nonce (at most --attempts times)

Exits 0 once the fill arrives, 1 with the reason otherwise. Run it against a devnet:

    cargo run --release -p bastion -- devnet &        # prints the API address
    python node/client/python/examples/first_trade.py --api http://127.0.0.1:8080

The answers' shapes are node/api's (openapi.yaml, WEBSOCKET.md); `--verbose` prints each in full.
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

from bastion_client import Api, ApiError, Feed, FeedError, Keypair, place  # noqa: E402

VERBOSE = False
QUOTE_ASSET = 0


def step(n: int, text: str) -> None:
    print(f"[{n}] {text}", flush=True)


def show(label: str, value: Any) -> None:
    if VERBOSE:
        print(f"    {label}: {json.dumps(value)[:2000]}", flush=True)


def fail(text: str) -> None:
    print(f"FAILED: {text}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def collateral_of(account: dict) -> int:
    """The quote asset's balance (micro-units) of a `GET /v1/accounts/{id}` answer, whose
    `balances` is a list of `{"asset", "name", "amount"}`."""
    return sum(b["amount"] for b in account["balances"] if b["asset"] == QUOTE_ASSET)


def best_ask(book: dict) -> tuple[int, int] | None:
    """(price ticks, lots) of the best ask of a `GET /v1/book/{market}` answer (levels are
    `[price, lots]`, best first)."""
    asks = book["asks"]
    return (asks[0][0], asks[0][1]) if asks else None


def fills_in(message: dict) -> list:
    """The fills of a `userFills` message (its `data`, a list)."""
    return message["data"] if message.get("channel") == "userFills" else []


def tx_state(answer: dict) -> str:
    """`pending`, `included` or `rejected` (refused before inclusion, or included and rejected
    by the exchange: `outcome` "rejected")."""
    if answer["status"] == "included" and answer.get("outcome") != "ok":
        return "rejected"
    return answer["status"]


async def call(fn, *args):
    """A blocking REST call off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def subscribed(feed: Feed, channel: str, timeout: float) -> dict:
    """Reads the answer to a subscribe and its snapshot; returns the snapshot."""
    while True:
        try:
            msg = await feed.next(timeout=timeout)
        except asyncio.TimeoutError:
            fail(f"no snapshot on the {channel} subscription after {timeout:.0f} s")
        except FeedError as e:
            fail(f"the node refused the {channel} subscription: {e}")
        show("feed", msg)
        if msg["channel"] == channel and msg.get("snapshot"):
            return msg


async def main(args: argparse.Namespace) -> None:
    api = Api(args.api, timeout=args.http_timeout)
    deadline = time.monotonic() + args.timeout

    step(1, f"GET {api.base_url}/v1/status")
    try:
        status = await call(api.status)
    except (OSError, ApiError) as e:
        fail(f"cannot read the node's status at {api.base_url}: {e} (is `bastion devnet` running? --api)")
    show("status", status)
    digest = bytes.fromhex(status["genesis_digest"])
    print(f"    chain {status['chain_id']!r} at height {status['height']}, genesis digest {digest.hex()}")

    key = Keypair(bytes.fromhex(args.seed)) if args.seed else Keypair.generate()
    step(2, f"key {key.public_key.hex()} -> account {key.account}")

    step(3, f"POST /v1/faucet for account {key.account}")
    while True:
        try:
            answer = await call(api.faucet, key.account)
            break
        except ApiError as e:
            # 503: the node has not indexed a block yet, or the faucet is busy: retry.
            if e.status != 503 or time.monotonic() > deadline:
                fail(f"the faucet refused: {e}")
        await asyncio.sleep(args.poll)
    show("faucet", answer)
    print(f"    faucet deposit {answer['hash']}")

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
    print(f"    collateral {collateral_of(account)} micro-units at height {account['height']}")
    nonce = account["nonce"] + 1

    import websockets  # the feed's client (requirements.txt)

    ws_url = args.ws or api.ws_url()
    step(5, f"subscribing to userFills of {key.account} and to blocks on {ws_url}")
    async with Feed(ws_url) as feed:
        await feed.subscribe("userFills", account=str(key.account))
        snapshot = await subscribed(feed, "userFills", args.http_timeout)
        print(f"    userFills snapshot at height {snapshot['height']}: {len(fills_in(snapshot))} earlier fill(s)")
        await feed.subscribe("blocks")
        seen = (await subscribed(feed, "blocks", args.http_timeout))["height"]

        fills: list = []
        for attempt in range(1, args.attempts + 1):
            step(6, f"GET /v1/book/{args.market} (attempt {attempt} of {args.attempts})")
            book = await call(api.book, args.market, 5)
            show("book", book)
            ask = best_ask(book)
            if ask is None and args.price is None:
                if attempt == args.attempts:
                    fail(f"market {args.market} has no asks to cross (on a devnet the load generator "
                         "makes the market; or pass --price)")
                print("    no asks right now (the makers are requoting); looking again in a moment")
                await asyncio.sleep(1.0)
                continue
            price = args.price if args.price is not None else ask[0] + ask[0] * args.cross_bps // 10_000
            print(f"    best ask {ask}; buying {args.qty} lot(s) IOC at {price} ticks")
            signed = key.sign(digest, nonce, place(args.market, "Buy", args.qty, price=price, tif="Ioc"))
            try:
                tx_hash = await call(api.submit, signed)
            except ApiError as e:
                fail(f"the node refused the transaction: {e}")
            print(f"    nonce {nonce}: tx hash {tx_hash}")
            if tx_hash != signed.hash.hex():
                fail(f"the node's hash {tx_hash} differs from ours {signed.hash.hex()}: see PROTOCOL.md")
            nonce += 1

            step(7, "following the transaction and waiting for its fill")
            state, included_at, last_poll = "pending", None, 0.0
            while not fills:
                now = time.monotonic()
                if now > deadline:
                    fail(f"no fill after {args.timeout:.0f} s (transaction {state}; feed gaps {feed.gaps})")
                if state == "pending" and now - last_poll >= args.poll:
                    last_poll = now
                    try:
                        tx = await call(api.tx, tx_hash)
                    except ApiError as e:
                        fail(f"GET /v1/tx: {e}")
                    state = tx_state(tx)
                    if state == "rejected":
                        fail(f"the transaction was rejected: {json.dumps(tx)}")
                    if state == "included":
                        show("tx", tx)
                        included_at = tx["height"]
                        print(f"    transaction included at height {included_at}, index {tx['index']}")
                if included_at is not None and seen >= included_at:
                    break  # its block has passed (the fills of a block come before its header)
                try:
                    msg = await feed.next(timeout=args.poll)
                except asyncio.TimeoutError:
                    continue
                except FeedError as e:
                    fail(str(e))
                except websockets.ConnectionClosed as e:
                    fail(f"the node closed the feed: {e}")
                show("feed", msg)
                if msg["channel"] == "blocks":
                    seen = msg["height"]
                fills = fills_in(msg)
            if fills:
                break
            print(f"    the order did not fill in block {included_at} (the book moved)")
        else:
            fail(f"no fill in {args.attempts} attempts")
        for f in fills:
            print(f"    filled at height {f['height']}: {f['side']} {f['qty']} lot(s) at {f['price']} ticks "
                  f"on market {f['market']} as {f['role']}, fee {f['fee_micros']} micro-units")
        if feed.gaps:
            print(f"    warning: {feed.gaps} gap(s) in the feed's seq")
    print("OK: faucet, order, fill")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", default="http://127.0.0.1:8080", help="the node's API (default %(default)s)")
    p.add_argument("--ws", help="the WebSocket feed (default: the API's /v1/ws)")
    p.add_argument("--market", type=int, default=1, help="market id (default %(default)s)")
    p.add_argument("--qty", type=int, default=1, help="lots to buy (default %(default)s)")
    p.add_argument("--price", type=int, help="limit price in ticks (default: best ask + --cross-bps)")
    p.add_argument("--cross-bps", type=int, default=100,
                   help="limit this many basis points above the best ask (default %(default)s)")
    p.add_argument("--attempts", type=int, default=5, help="orders to try before giving up (default %(default)s)")
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
