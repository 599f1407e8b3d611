"""A small Bastion client, written from node/client/PROTOCOL.md: keys, account ids, the body
encoding of every action, signed packets, tx hashes (`protocol`), and the node's REST and
WebSocket API (`api`)."""

from .api import Api, ApiError, Feed, FeedError
from .protocol import (
    ACTION,
    DecodeError,
    EncodeError,
    Keypair,
    Signed,
    account_of,
    cancel,
    decode_body,
    decode_packet,
    deposit,
    encode_body,
    encode_packet,
    place,
    replace,
    set_isolated,
    set_margin_mode,
    signing_message,
    transfer_isolated,
    tx_hash,
    withdraw,
)

__all__ = [
    "ACTION", "Api", "ApiError", "DecodeError", "EncodeError", "Feed", "FeedError", "Keypair", "Signed",
    "account_of", "cancel", "decode_body", "decode_packet", "deposit", "encode_body",
    "encode_packet", "place", "replace", "set_isolated", "set_margin_mode", "signing_message",
    "transfer_isolated", "tx_hash", "withdraw",
]
