"""Runs examples/first_trade.py as a subprocess against a loopback stand-in of the node's API
(REST and WebSocket) that answers in node/api's shapes (openapi.yaml, WEBSOCKET.md) and checks
what the script sends: the faucet call, packets that decode, verify under the chain digest and
are IOC buys crossing the best ask with consecutive nonces, and the subscriptions. It proves
the script's flow, its retry when an order does not fill, and its exit codes; the Rust test
node/validator/tests/trader.rs runs it against a real devnet."""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from bastion_client import account_of, decode_body, decode_packet, signing_message, tx_hash

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "first_trade.py"
DIGEST = bytes(range(32))


class Node:
    """The stand-in's state: funded accounts, transactions, WebSocket subscribers, height."""

    def __init__(self, fill: bool):
        self.fill = fill
        self.height = 10
        self.funded: set[int] = set()
        self.txs: dict[str, dict] = {}
        self.nonces: list[int] = []
        self.subs: list = []  # (websocket, {channel: next seq}, account)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[str] = []


def frame(channel, height, seq, data, snapshot=False):
    return json.dumps({"channel": channel, "height": height, "seq": seq, "snapshot": snapshot, "data": data})


def http_handler(node: Node):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["v1", "status"]:
                return self.answer(200, {"chain_id": "stand-in", "genesis_digest": DIGEST.hex(), "devnet": True,
                                         "role": "full", "height": node.height, "behind": False})
            if parts[:2] == ["v1", "accounts"] and len(parts) == 3:
                a = int(parts[2])
                if a not in node.funded:
                    return self.answer(404, {"code": "unknown_account",
                                             "message": f"account: {a} has no account on chain"})
                return self.answer(200, {
                    "account": a, "nonce": 0, "portfolio_margin": False, "height": node.height,
                    "balances": [{"asset": 0, "name": "USDC", "amount": 10_000_000_000},
                                 {"asset": 1, "name": "BTC", "amount": 0}],
                    "positions": [], "health": None})
            if parts == ["v1", "book", "1"]:
                return self.answer(200, {"market": 1, "symbol": "ETH-PERP", "tick_size_micros": 10000,
                                         "height": node.height, "bids": [[99, 5]], "asks": [[100, 1], [101, 5]]})
            if parts[:2] == ["v1", "tx"] and parts[2] in node.txs:
                return self.answer(200, node.txs[parts[2]])
            return self.answer(404, {"code": "no_route", "message": self.path})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/faucet":
                node.funded.add(int(body["account"]))
                return self.answer(200, {"hash": "00" * 32, "account": body["account"]})
            if self.path == "/v1/tx":
                try:
                    pk, sig, b = decode_packet(bytes.fromhex(body["packet"]))
                    VerifyKey(pk).verify(signing_message(DIGEST, b), sig)
                    nonce, action = decode_body(b)
                    order = action["Place"]
                    # The stand-in's best ask is 100 ticks; the example crosses 1% (100 bps) above it.
                    assert (order["side"], order["tif"], order["price"]) == ("Buy", "Ioc", 101), order
                    node.nonces.append(nonce)
                except Exception as e:  # noqa: BLE001 - reported to the test
                    node.errors.append(repr(e))
                    return self.answer(400, {"code": "bad_packet", "message": repr(e)})
                h = tx_hash(pk, b).hex()
                node.height += 1
                node.txs[h] = {"hash": h, "requested": h, "status": "included", "height": node.height,
                               "index": 0, "outcome": "ok"}
                fut = asyncio.run_coroutine_threadsafe(
                    block(node, account_of(pk), order["qty"]), node.loop)
                fut.result(5)
                return self.answer(200, {"hash": h})
            return self.answer(404, {"code": "no_route", "message": self.path})

    return H


async def block(node: Node, account: int, qty: int):
    """A block at `node.height`: the account's fill when the node fills, then the header."""
    h = node.height
    fill = {"height": h, "timestamp_ms": 1, "index": 0, "market": 1, "maker_order": 7, "maker": 5,
            "taker": account, "side": "buy", "role": "taker", "price": 100, "qty": qty, "fee_micros": 35}
    for ws, seqs, acct in node.subs:
        if node.fill and acct == account and "userFills" in seqs:
            await ws.send(frame("userFills", h, seqs["userFills"], [fill]))
            seqs["userFills"] += 1
        if "blocks" in seqs:
            await ws.send(frame("blocks", h, seqs["blocks"], {"height": h, "timestamp_ms": 1, "digest": "aa" * 32,
                                                              "root": "bb" * 32, "txs": 1, "events": 2}))
            seqs["blocks"] += 1


def serve(node: Node):
    import websockets

    async def handler(ws):
        seqs: dict[str, int] = {}
        entry = [ws, seqs, None]
        node.subs.append(entry)
        async for raw in ws:
            sub = json.loads(raw)
            assert sub["method"] == "subscribe", sub
            s = sub["subscription"]
            await ws.send(json.dumps({"channel": "subscriptionResponse", "data": sub}))
            if s["type"] == "userFills":
                entry[2] = int(s["account"])
                await ws.send(frame("userFills", node.height, 0, [], snapshot=True))
            elif s["type"] == "blocks":
                await ws.send(frame("blocks", node.height, 0, None, snapshot=True))
            else:
                node.errors.append(f"unexpected subscription {s}")
                continue
            seqs[s["type"]] = 1

    ready = threading.Event()
    port = []

    def run():
        async def main():
            node.loop = asyncio.get_running_loop()
            async with websockets.serve(handler, "127.0.0.1", 0) as server:
                port.append(server.sockets[0].getsockname()[1])
                ready.set()
                await asyncio.Future()

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return port[0]


@pytest.mark.parametrize("fill", [True, False], ids=["fills", "never-fills"])
def test_first_trade_flow(fill):
    node = Node(fill)
    http = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(node))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    ws_port = serve(node)
    try:
        r = subprocess.run(
            [sys.executable, str(SCRIPT), "--api", f"http://127.0.0.1:{http.server_address[1]}",
             "--ws", f"ws://127.0.0.1:{ws_port}/v1/ws", "--timeout", "20", "--poll", "0.05", "--attempts", "3"],
            capture_output=True, text=True, timeout=60)
    finally:
        http.shutdown()
        http.server_close()
    out = r.stdout + r.stderr
    assert node.errors == [], out
    if fill:
        assert r.returncode == 0, out
        assert node.nonces == [1], out
        assert "transaction included at height 11" in out
        assert "filled at height 11: buy 1 lot(s) at 100 ticks on market 1 as taker" in out
        assert "OK: faucet, order, fill" in out
    else:
        assert r.returncode == 1, out
        assert node.nonces == [1, 2, 3], out
        assert out.count("did not fill in block") == 3, out
        assert "FAILED: no fill in 3 attempts" in out
