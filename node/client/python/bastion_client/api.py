"""Clients of a Bastion node's public API: REST over HTTP (stdlib `urllib`) and the WebSocket
feed at `/v1/ws` (`websockets`). Answers are returned as parsed JSON, unchanged, so a field the
server adds later is not lost; big integers stay exact (Python's `json`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .protocol import Signed


class ApiError(Exception):
    """A non-2xx answer: HTTP `status`, the server's error `code` and `message` when it sent
    them, and the request that failed."""

    def __init__(self, status: int, code: str | None, message: str, request: str):
        self.status, self.code, self.message, self.request = status, code, message, request
        super().__init__(f"{request}: HTTP {status}" + (f" {code}" if code else "") + f": {message}")


class Api:
    """REST client of one node, e.g. `Api("http://127.0.0.1:8080")`."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; raises `ApiError` on a non-2xx answer (with the server's code and
        message) and `OSError` when the node cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        what = f"{method} {path}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            # Every error of the API is `{"code": "...", "message": "..."}` (node/api openapi.yaml).
            raw = e.read()
            code, message = None, raw.decode("utf-8", "replace").strip() or str(e.reason)
            try:
                err = json.loads(raw)
            except ValueError:
                err = None
            if isinstance(err, dict) and isinstance(err.get("code"), str):
                code, message = err["code"], str(err.get("message", ""))
            raise ApiError(e.code, code, message, what) from None
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str) -> Any:
        """GET `path` (e.g. "/v1/status")."""
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path`."""
        return self.request("POST", path, body)

    # The endpoints (issue 17's API).
    def status(self) -> dict:
        """`GET /v1/status`: `{"chain_id", "genesis_digest" (hex), "devnet", "role", "node",
        "height", "root", "digest", "timestamp_ms", "behind", ...}` (`height` is null before the
        node has indexed a block)."""
        return self.get("/v1/status")

    def genesis_digest(self) -> bytes:
        """The chain digest every signature binds to (PROTOCOL.md section 3)."""
        hexdigest = self.status().get("genesis_digest")
        if not isinstance(hexdigest, str) or len(hexdigest) != 64:
            raise ApiError(200, None, f"status has no 32-byte hex genesis_digest: {hexdigest!r}", "GET /v1/status")
        return bytes.fromhex(hexdigest)

    def markets(self) -> Any:
        """`GET /v1/markets`: `{"height", "markets": [{"id", "symbol", "spec", "status",
        "mark_price_micros", "best_bid", "best_ask", ...}]}`."""
        return self.get("/v1/markets")

    def book(self, market: int, depth: int | None = None) -> dict:
        """`GET /v1/book/{market}?depth=N`: `{"market", "symbol", "tick_size_micros", "height",
        "bids": [[price_ticks, lots], ...], "asks": [...]}`, best level first."""
        q = "" if depth is None else f"?depth={int(depth)}"
        return self.get(f"/v1/book/{int(market)}{q}")

    def trades(self, market: int) -> Any:
        """`GET /v1/trades/{market}`: `{"market", "height", "trades": [...]}`."""
        return self.get(f"/v1/trades/{int(market)}")

    def account(self, account: int) -> dict:
        """`GET /v1/accounts/{account}` (404 `unknown_account` until a deposit to it has
        finalized): `{"account", "nonce", "portfolio_margin", "balances": [{"asset", "name",
        "amount"}], "positions": [...], "health": {...} or null, "height"}`."""
        return self.get(f"/v1/accounts/{int(account)}")

    def orders(self, account: int) -> Any:
        """`GET /v1/accounts/{account}/orders`: `{"account", "height", "orders": [...]}`."""
        return self.get(f"/v1/accounts/{int(account)}/orders")

    def fills(self, account: int) -> Any:
        """`GET /v1/accounts/{account}/fills`: `{"account", "height", "fills": [...]}`, each fill
        as on the `userFills` feed."""
        return self.get(f"/v1/accounts/{int(account)}/fills")

    def block(self, height: int) -> Any:
        """`GET /v1/blocks/{height}`: `{"header": {...}, "txs": [...]}`."""
        return self.get(f"/v1/blocks/{int(height)}")

    def tx(self, tx_hash: bytes | str) -> dict:
        """`GET /v1/tx/{hash}`: `{"hash", "requested", "status"}` with `status` one of
        `"pending"`; `"included"` with `"height"`, `"index"` and `"outcome"` (`"ok"`, or
        `"rejected"` with the exchange's `"reason"` and `"message"`); or `"rejected"` (refused
        before inclusion) with `"code"` and `"message"`. `hash` differs from `requested` when
        the node re-signed the transaction (a faucet deposit whose nonce was taken)."""
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        return self.get(f"/v1/tx/{urllib.parse.quote(h)}")

    def submit(self, tx: Signed | bytes) -> str:
        """`POST /v1/tx {"packet": hex}`; returns the hash the node answers (hex)."""
        packet = tx.packet if isinstance(tx, Signed) else tx
        return self.post("/v1/tx", {"packet": packet.hex()})["hash"]

    def faucet(self, account: int) -> dict:
        """`POST /v1/faucet {"account": "<decimal id>"}` (devnets only; 403 `not_devnet`
        elsewhere): `{"hash", "account"}`, the deposit's transaction."""
        return self.post("/v1/faucet", {"account": str(int(account))})

    def ws_url(self) -> str:
        """The WebSocket feed's URL on this node."""
        u = urllib.parse.urlsplit(self.base_url)
        scheme = {"https": "wss", "http": "ws"}.get(u.scheme, u.scheme)
        return urllib.parse.urlunsplit((scheme, u.netloc, u.path.rstrip("/") + "/v1/ws", "", ""))


class FeedError(Exception):
    """An `{"channel": "error", "data": {"code", "message"}}` message of the feed (a refused
    subscribe or unsubscribe; the connection stays open)."""

    def __init__(self, code: str, message: str):
        self.code, self.message = code, message
        super().__init__(f"feed error {code}: {message}")


class Feed:
    """The WebSocket feed (node/api/WEBSOCKET.md). Use as
    `async with Feed(url) as feed: await feed.subscribe(...)`.

    Each subscribe is answered by `{"channel": "subscriptionResponse", "data": {"method",
    "subscription"}}`, then its snapshot `{"channel": T, "height", "seq": 0, "snapshot": true,
    "data"}`, then one `{"channel": T, "height", "seq": N, "snapshot": false, "data"}` per
    finalized block that has something for it. `seq` rises by one per subscription; `next()`
    counts a jump in `gaps`, keyed by channel (a snapshot restarts the count), so keep one
    subscription per channel for that count to be exact."""

    def __init__(self, url: str, open_timeout: float = 10.0):
        self.url, self.open_timeout = url, open_timeout
        self.last_seq: dict[str, int] = {}
        self.gaps = 0
        self._ws = None

    async def __aenter__(self) -> "Feed":
        import websockets  # imported here so the REST client works without it

        self._ws = await websockets.connect(self.url, open_timeout=self.open_timeout, max_size=16 << 20)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def subscribe(self, type: str, **params: Any) -> None:
        """Subscribe, e.g. `subscribe("userFills", account="123")` or
        `subscribe("l2Book", market=1, depth=10)`."""
        await self._send("subscribe", type, params)

    async def unsubscribe(self, type: str, **params: Any) -> None:
        """Undo a `subscribe` with the same arguments."""
        await self._send("unsubscribe", type, params)

    async def _send(self, method: str, type: str, params: dict) -> None:
        if self._ws is None:
            raise RuntimeError("Feed is not open: use `async with Feed(url) as feed`")
        await self._ws.send(json.dumps({"method": method, "subscription": {"type": type, **params}}))

    async def next(self, timeout: float | None = None) -> dict:
        """The next message (parsed), `subscriptionResponse`s included; raises `FeedError` on an
        `error` message, `asyncio.TimeoutError` after `timeout` seconds, and
        `websockets.ConnectionClosed` when the server closed (its reason says why: `slow
        consumer`, `api fell behind ...`)."""
        if self._ws is None:
            raise RuntimeError("Feed is not open: use `async with Feed(url) as feed`")
        raw = await asyncio.wait_for(self._ws.recv(), timeout)
        msg = json.loads(raw)
        if msg.get("channel") == "error":
            err = msg.get("data") or {}
            raise FeedError(str(err.get("code")), str(err.get("message")))
        if "seq" in msg:
            channel, seq = msg["channel"], msg["seq"]
            last = self.last_seq.get(channel)
            if not msg.get("snapshot") and last is not None and seq != last + 1:
                self.gaps += 1
            self.last_seq[channel] = seq
        return msg
