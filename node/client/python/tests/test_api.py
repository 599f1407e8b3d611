"""The REST and WebSocket clients over real loopback sockets, against a small stand-in server
that answers in node/api's shapes (openapi.yaml, WEBSOCKET.md; node/validator/tests/trader.rs
runs the client against the real one): request shapes, error decoding, and the feed's
subscription answers, errors and gap counting."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bastion_client import Api, ApiError, Feed, FeedError, Keypair, withdraw

SEEN = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        SEEN.append(("GET", self.path, None))
        if self.path == "/v1/status":
            self.answer(200, {"chain_id": "t", "genesis_digest": "ab" * 32, "height": 3, "devnet": True})
        elif self.path == "/v1/book/1?depth=5":
            self.answer(200, {"market": 1, "symbol": "ETH-PERP", "tick_size_micros": 10000, "height": 3,
                              "bids": [], "asks": [[10, 2]]})
        else:
            self.answer(404, {"code": "unknown_account", "message": "account: 7 has no account on chain"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append(("POST", self.path, body))
        if self.path == "/v1/tx":
            self.answer(200, {"hash": "cd" * 32})
        else:
            self.answer(400, {"code": "bad_account", "message": "account: \"x\" is neither a decimal account id"})


@pytest.fixture()
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    SEEN.clear()
    yield Api(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5)
    server.shutdown()
    server.server_close()


def test_rest_requests_and_errors(api):
    assert api.genesis_digest() == bytes([0xAB]) * 32
    assert api.book(1, depth=5)["asks"][0] == [10, 2]
    with pytest.raises(ApiError) as e:
        api.account(7)
    assert (e.value.status, e.value.code) == (404, "unknown_account")
    assert "GET /v1/accounts/7" in str(e.value) and "has no account on chain" in str(e.value)
    s = Keypair.derive("python-test", 2).sign(bytes(32), 1, withdraw(0, 1))
    assert api.submit(s) == "cd" * 32
    assert SEEN[-1] == ("POST", "/v1/tx", {"packet": s.packet.hex()})
    with pytest.raises(ApiError) as e:
        api.faucet(2**64 - 1)
    assert SEEN[-1] == ("POST", "/v1/faucet", {"account": "18446744073709551615"})
    assert (e.value.status, e.value.code) == (400, "bad_account")
    assert api.ws_url().startswith("ws://127.0.0.1:") and api.ws_url().endswith("/v1/ws")
    assert Api("https://node.example/").ws_url() == "wss://node.example/v1/ws"


def test_feed_subscribes_and_counts_gaps():
    import websockets

    async def main():
        got = []

        async def handler(ws):
            sub = json.loads(await ws.recv())
            got.append(sub)
            await ws.send(json.dumps({"channel": "subscriptionResponse", "data": sub}))
            await ws.send(json.dumps({"channel": "userFills", "height": 5, "seq": 0, "snapshot": True, "data": []}))
            for seq in (1, 3):
                await ws.send(json.dumps({"channel": "userFills", "height": 5 + seq, "seq": seq, "snapshot": False,
                                          "data": []}))
            got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"channel": "error", "data": {
                "code": "bad_subscription", "message": "subscription.market: unknown market 77"}}))
            await ws.wait_closed()

        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with Feed(f"ws://127.0.0.1:{port}/v1/ws") as feed:
                await feed.subscribe("userFills", account="42")
                assert (await feed.next(timeout=5))["channel"] == "subscriptionResponse"
                seqs = [(await feed.next(timeout=5))["seq"] for _ in range(3)]
                assert seqs == [0, 1, 3]
                assert feed.gaps == 1
                await feed.subscribe("l2Book", market=77)
                with pytest.raises(FeedError) as e:
                    await feed.next(timeout=5)
                assert (e.value.code, e.value.message) == ("bad_subscription", "subscription.market: unknown market 77")
                with pytest.raises(asyncio.TimeoutError):
                    await feed.next(timeout=0.1)
        assert got == [{"method": "subscribe", "subscription": {"type": "userFills", "account": "42"}},
                       {"method": "subscribe", "subscription": {"type": "l2Book", "market": 77}}]

    asyncio.run(main())
