"""The encoder's rules and refusals (PROTOCOL.md section 4), independent of the vectors."""

import pytest

from bastion_client import DecodeError, EncodeError, Keypair, decode_body, decode_packet, encode_body, place, withdraw
from bastion_client.protocol import MAX_BODY, unzigzag, varint, zigzag


def test_varint_and_zigzag_examples_of_protocol_md():
    assert varint(0) == b"\x00"
    assert varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01"
    assert varint(300) == b"\xac\x02"
    assert varint(70000) == bytes.fromhex("f0a204")
    assert varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert [zigzag(n) for n in (0, -1, 1, -2, 2)] == [0, 1, 2, 3, 4]
    assert zigzag(-(2**63)) == 2**64 - 1
    assert zigzag(2**63 - 1) == 2**64 - 2
    assert zigzag(-(2**127)) == 2**128 - 1
    for n in (0, 1, -1, 12345, -(2**127), 2**127 - 1):
        assert unzigzag(zigzag(n)) == n


def test_worked_examples():
    assert encode_body(5, withdraw(0, 5)).hex() == "0501000a"
    assert encode_body(9, place(1, "Sell", 3, tif="PostOnly", reduce_only=True, stp="CancelBoth")).hex() == \
        "09020101000603010002"
    assert encode_body(9, place(1, "Sell", 3, price=64, tif="PostOnly", reduce_only=True, good_til_height=900,
                                stp="CancelBoth")).hex() == "0902010101800106030101840702"
    assert encode_body(0, {"TransferIsolated": {"market": 1, "amount": -250000}}).hex() == "0007019fc21e"


def test_out_of_range_and_malformed_actions_name_the_field():
    with pytest.raises(EncodeError, match=r"action.Withdraw.asset: 65536 is outside u16"):
        encode_body(1, withdraw(65536, 1))
    with pytest.raises(EncodeError, match=r"nonce: -1 is outside u64"):
        encode_body(-1, withdraw(0, 1))
    with pytest.raises(EncodeError, match=r"action.Place.side: unknown variant 'Long'"):
        encode_body(1, place(1, "Long", 1))
    with pytest.raises(EncodeError, match=r"action.Place.reduce_only: expected true or false"):
        encode_body(1, {"Place": {**place(1, "Buy", 1)["Place"], "reduce_only": 1}})
    with pytest.raises(EncodeError, match=r"action.Place.qty: missing"):
        p = place(1, "Buy", 1)["Place"]
        del p["qty"]
        encode_body(1, {"Place": p})
    with pytest.raises(EncodeError, match=r"unknown field\(s\) \['colour'\]"):
        encode_body(1, {"Withdraw": {"asset": 0, "amount": 1, "colour": "red"}})
    with pytest.raises(EncodeError, match=r"exceeds 1135"):
        encode_body(1, {"UpdateParams": {"List": {
            "id": 1, "name": "x" * 2000, "underlying": 0, "kind": "Perpetual", "tick_size": 1,
            "lot_size_nanos": 1, "risk": {"tiers": [], **{f: 0 for f in (
                "oi_imf_lower", "oi_imf_upper", "price_band_ppm", "open_interest_cap", "max_orders_per_account",
                "taker_fee_ppm", "maker_fee_ppm", "impact_notional", "funding_cap_ppm", "volatility_ppm",
                "volatility_min_ppm", "volatility_max_ppm")}}}}})


def test_only_the_canonical_body_decodes():
    body = encode_body(5, withdraw(0, 10))
    assert decode_body(body) == (5, withdraw(0, 10))
    with pytest.raises(DecodeError, match="not canonically encoded"):
        decode_body(b"\x85\x00" + body[1:])  # nonce 5 as a padded two-byte varint
    with pytest.raises(DecodeError, match="trailing"):
        decode_body(body + b"\x00")
    with pytest.raises(DecodeError, match="ends early"):
        decode_body(body[:-1])
    with pytest.raises(DecodeError, match="bool byte 2"):
        decode_body(bytes([1, 5, 2]))  # SetMarginMode { portfolio: 2 }
    with pytest.raises(DecodeError, match="variant index 9"):
        decode_body(bytes([1, 9]))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_body(b"\x00" * (MAX_BODY + 1))


def test_packets_and_signatures():
    kp = Keypair.derive("python-test", 1)
    s = kp.sign(bytes(32), 1, withdraw(0, 1))
    pk, sig, body = decode_packet(s.packet)
    assert (pk, sig, body) == (kp.public_key, s.signature, s.body)
    # The signature verifies over the message and binds the chain digest.
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey
    VerifyKey(kp.public_key).verify(s.message, s.signature)
    with pytest.raises(BadSignatureError):
        VerifyKey(kp.public_key).verify(kp.sign(b"\x01" * 32, 1, withdraw(0, 1)).message, s.signature)
    with pytest.raises(DecodeError, match="version 2"):
        decode_packet(b"\x02" + s.packet[1:])
    with pytest.raises(DecodeError, match="no body"):
        decode_packet(s.packet[:97])
    assert Keypair.generate().account != Keypair.generate().account
