"""Runs examples/first_trade.py as a subprocess against a loopback stand-in of the node's API
(REST and WebSocket) that checks what the script sends: the faucet call, a packet that decodes,
verifies under the chain digest and is an IOC buy crossing the best ask, and the subscription.
It proves the script's flow and exit codes; the lead's devnet run proves it against the real API."""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from bastion_client import account_of, decode_body, decode_packet, signing_message

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "first_trade.py"
DIGEST = bytes(range(32))


class Node:
    """The stand-in's state: funded accounts, the book's best ask, WebSocket subscribers."""

    def __init__(self, fill: bool):
        self.fill = fill
        self.funded: set[int] = set()
        self.txs: dict[str, dict] = {}
        self.subs: dict[int, list] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[str] = []


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
                return self.answer(200, {"chain_id": "stand-in", "genesis_digest": DIGEST.hex(), "height": 10})
            if parts[:2] == ["v1", "accounts"] and len(parts) == 3:
                a = int(parts[2])
                if a not in node.funded:
                    return self.answer(404, {"code": "unknown_account", "message": f"account {a}"})
                return self.answer(200, {"account": str(a), "collateral": "1000000000", "nonce": 0, "positions": []})
            if parts == ["v1", "book", "1"]:
                return self.answer(200, {"bids": [{"price": 99, "size": 5}], "asks": [{"price": 101, "size": 5},
                                                                                      {"price": 100, "size": 1}]})
            if parts[:2] == ["v1", "tx"] and parts[2] in node.txs:
                return self.answer(200, node.txs[parts[2]])
            return self.answer(404, {"code": "not_found", "message": self.path})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/faucet":
                node.funded.add(int(body["account"]))
                return self.answer(200, {"hash": "00" * 32})
            if self.path == "/v1/tx":
                try:
                    pk, sig, b = decode_packet(bytes.fromhex(body["packet"]))
                    VerifyKey(pk).verify(signing_message(DIGEST, b), sig)
                    nonce, action = decode_body(b)
                    order = action["Place"]
                    assert nonce == 1, nonce
                    assert (order["side"], order["tif"], order["price"]) == ("Buy", "Ioc", 100), order
                except Exception as e:  # noqa: BLE001 - reported to the test
                    node.errors.append(repr(e))
                    return self.answer(400, {"code": "bad_packet", "message": repr(e)})
                from bastion_client import tx_hash
                h = tx_hash(pk, b).hex()
                node.txs[h] = {"status": "included", "height": 11}
                account = account_of(pk)
                if node.fill:
                    msg = {"channel": "userFills", "height": 11, "seq": 1,
                           "data": [{"market": 1, "price": 100, "size": order["qty"], "side": "Buy"}]}
                    for ws in node.subs.get(account, []):
                        asyncio.run_coroutine_threadsafe(ws.send(json.dumps(msg)), node.loop)
                return self.answer(200, {"hash": h})
            return self.answer(404, {"code": "not_found", "message": self.path})

    return H


def serve(node: Node):
    import websockets

    async def handler(ws):
        sub = json.loads(await ws.recv())
        assert sub["method"] == "subscribe" and sub["subscription"]["type"] == "userFills", sub
        account = int(sub["subscription"]["account"])
        await ws.send(json.dumps({"channel": "userFills", "height": 10, "seq": 0, "data": []}))
        node.subs.setdefault(account, []).append(ws)
        await ws.wait_closed()

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
             "--ws", f"ws://127.0.0.1:{ws_port}/v1/ws", "--timeout", "3" if not fill else "20", "--poll", "0.05"],
            capture_output=True, text=True, timeout=60)
    finally:
        http.shutdown()
        http.server_close()
    out = r.stdout + r.stderr
    assert node.errors == [], out
    if fill:
        assert r.returncode == 0, out
        assert "OK: faucet, order, fill" in out
        assert "transaction included" in out
    else:
        assert r.returncode == 1, out
        assert "FAILED: no fill after 3 s" in out
