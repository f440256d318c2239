"""The client and market-data wire protocol: length-prefixed msgpack frames.

Every frame on a client or feed connection, in both directions:

    0               4                                   4 + length
    +---------------+-----------------------------------+
    | length u32 LE | payload: msgpack of one message   |
    +---------------+-----------------------------------+

`length` counts the payload only and is at most FRAME_PAYLOAD_BYTES_MAX; a larger
length cannot be trusted (the stream cannot be resynchronised), so the receiver
rejects the frame and closes the connection. The payload is a msgpack map encoding one
message of the tagged unions below, keyed by `"type"`.

Versioning: `Logon.protocol_version` must equal PROTOCOL_VERSION; anything else is
refused with reason `unsupported_protocol_version`.

Client -> server (trading port): Logon, PlaceRequest, CancelRequest, ReplaceRequest,
MassCancelRequest, OrderStatusRequest, Heartbeat, Logout. None of them carries a member:
the member is the one the session logged on as.

Server -> client (trading port): LogonAccepted, LogonRejected, ExecutionReport (one
state-machine event concerning this member, with the journal sequence inside the event),
RequestRejected (refused before reaching the journal: throttled, malformed, not logged
on, a client order id or symbol that is not at most 64 / 16 printable ASCII characters),
OrderStatus, MassCancelCompleted (always answers a mass cancel, with the count
cancelled), ServerHeartbeat (at the interval the Logon negotiated), ServerTestRequest
(the session was silent for two intervals; silent for four, it is cut), Disconnect.
A connection must log on within the gateway's logon timeout (replica/gateway.py). Every server message after the logon carries
`session_sequence`, the per-session outbound sequence number (1, 2, 3, ...), so a client
can tell it missed nothing.

Feed port: client sends Subscribe / Unsubscribe (the first within the subscribe
timeout); the server answers BookSnapshot, split into `parts` frames of at most
SNAPSHOT_LEVELS_PER_FRAME levels each (so any book fits the 64 KiB frame bound; the
parts are consecutive on the connection and the book is complete at part == parts),
then MarketDataUpdate messages. Trades on the feed are anonymous (replica/market_data.py). An update carries the journal sequence of the record that
caused it and the journal sequence of the previous update for that symbol: a subscriber
whose last seen sequence differs from `previous_journal_sequence` missed something and
asks for a new snapshot. The numbering comes from the journal, so it continues unchanged
when a standby is promoted.
"""

from __future__ import annotations

import struct
from typing import Optional, Union

import msgspec

from statemachine.commands import OrderType, SelfTradePrevention, Side, TimeInForce
from replica.market_data import MarketDataEvent
from statemachine.events import Event

PROTOCOL_VERSION = 1
FRAME_HEADER = struct.Struct("<I")
FRAME_HEADER_SIZE_BYTES = FRAME_HEADER.size
# No legitimate message comes near this; a bigger length means a broken or hostile peer.
FRAME_PAYLOAD_BYTES_MAX = 64 * 1024
# Levels in one BookSnapshot frame: a level is at most 1 + 3 * 9 bytes of msgpack (three
# u64), so 2,000 levels take at most 56,000 bytes, leaving room for the header fields
# (a symbol of at most 16 bytes) within FRAME_PAYLOAD_BYTES_MAX.
SNAPSHOT_LEVELS_PER_FRAME = 2000


class _Message(msgspec.Struct, frozen=True, gc=False, omit_defaults=True, tag_field="type"):
    """Base of every wire message."""


# ---------------------------------------------------------------- client -> server


class Logon(_Message, tag="logon"):
    protocol_version: int
    member: str
    token: str
    heartbeat_interval_ms: int = 1000


class PlaceRequest(_Message, tag="place"):
    request_id: int
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: int
    price: Optional[int] = None
    tif: Optional[TimeInForce] = None
    post_only: Optional[bool] = None
    display_qty: Optional[int] = None
    stop_price: Optional[int] = None
    stp: Optional[SelfTradePrevention] = None


class CancelRequest(_Message, tag="cancel"):
    request_id: int
    order_id: Optional[int] = None
    client_order_id: Optional[str] = None


class ReplaceRequest(_Message, tag="replace"):
    request_id: int
    order_id: int
    qty: int
    price: Optional[int] = None
    client_order_id: Optional[str] = None


class MassCancelRequest(_Message, tag="mass_cancel"):
    request_id: int
    symbol: Optional[str] = None


class OrderStatusRequest(_Message, tag="order_status"):
    request_id: int
    order_id: int


class Heartbeat(_Message, tag="heartbeat"):
    session_sequence: int = 0


class Logout(_Message, tag="logout"):
    pass


ClientMessage = Union[
    Logon, PlaceRequest, CancelRequest, ReplaceRequest, MassCancelRequest, OrderStatusRequest, Heartbeat, Logout
]

# ---------------------------------------------------------------- server -> client


class LogonAccepted(_Message, tag="logon_accepted"):
    session_id: int
    member: str
    protocol_version: int
    epoch: int
    last_sequence: int


class LogonRejected(_Message, tag="logon_rejected"):
    reason: str


class ExecutionReport(_Message, tag="report"):
    session_sequence: int
    # The request this report answers, 0 for unsolicited reports (a fill of a resting
    # order, a triggered stop, a cancel by end of day or on disconnect).
    request_id: int
    event: Event


class RequestRejected(_Message, tag="request_rejected"):
    session_sequence: int
    request_id: int
    reason: str
    detail: Optional[str] = None


class OrderStatus(_Message, tag="order_status_reply"):
    session_sequence: int
    request_id: int
    order_id: int
    status: str
    symbol: Optional[str] = None
    side: Optional[str] = None
    price: Optional[int] = None
    visible_qty: int = 0
    hidden_qty: int = 0


class ServerHeartbeat(_Message, tag="server_heartbeat"):
    session_sequence: int
    last_sequence: int


class ServerTestRequest(_Message, tag="test_request"):
    """The session was silent for two heartbeat intervals: answer (any frame, a
    Heartbeat will do) or be cut after four (`idle_timeout`)."""

    session_sequence: int


class MassCancelCompleted(_Message, tag="mass_cancel_completed"):
    """The answer to a MassCancelRequest, always sent, after the OrderCancelled reports
    of the orders it cancelled: how many (possibly 0)."""

    session_sequence: int
    request_id: int
    cancelled_count: int


class Disconnect(_Message, tag="disconnect"):
    reason: str
    session_sequence: int = 0


ServerMessage = Union[
    LogonAccepted, LogonRejected, ExecutionReport, RequestRejected, OrderStatus, ServerHeartbeat, ServerTestRequest,
    MassCancelCompleted, Disconnect,
]

# ---------------------------------------------------------------- market data


class Subscribe(_Message, tag="subscribe"):
    symbol: str


class Unsubscribe(_Message, tag="unsubscribe"):
    symbol: str


FeedRequest = Union[Subscribe, Unsubscribe]


class BookLevel(msgspec.Struct, array_like=True, frozen=True, gc=False):
    price: int
    qty: int
    orders: int


class BookSnapshot(_Message, tag="book_snapshot"):
    symbol: str
    journal_sequence: int
    previous_journal_sequence: int
    status: str
    bids: list[BookLevel]
    asks: list[BookLevel]
    last_trade_price: Optional[int] = None
    part: int = 1
    parts: int = 1


class MarketDataUpdate(_Message, tag="md"):
    symbol: str
    journal_sequence: int
    previous_journal_sequence: int
    events: list[MarketDataEvent]


class FeedRejected(_Message, tag="feed_rejected"):
    symbol: str
    reason: str


FeedMessage = Union[BookSnapshot, MarketDataUpdate, FeedRejected, Disconnect]


_encoder = msgspec.msgpack.Encoder()
client_message_decoder = msgspec.msgpack.Decoder(ClientMessage)
server_message_decoder = msgspec.msgpack.Decoder(ServerMessage)
feed_request_decoder = msgspec.msgpack.Decoder(FeedRequest)
feed_message_decoder = msgspec.msgpack.Decoder(FeedMessage)


class FrameTooLargeError(ValueError):
    """A frame header announced more than FRAME_PAYLOAD_BYTES_MAX bytes."""


def encode_frame(message) -> bytes:
    payload = _encoder.encode(message)
    return FRAME_HEADER.pack(len(payload)) + payload


def encode_frames(messages) -> bytes:
    encode = _encoder.encode
    pack = FRAME_HEADER.pack
    parts = []
    for message in messages:
        payload = encode(message)
        parts.append(pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


class FrameReader:
    """Splits a byte stream into frame payloads. Sans-I/O: feed bytes, take payloads.

    `feed(data)` returns the complete payloads now available (possibly none) and keeps the
    remainder; raises FrameTooLargeError when a header announces more than
    `payload_bytes_max` (the client protocol's bound unless the link says otherwise).
    """

    __slots__ = ("_buffer", "_payload_bytes_max")

    def __init__(self, payload_bytes_max: int = FRAME_PAYLOAD_BYTES_MAX) -> None:
        self._buffer = bytearray()
        self._payload_bytes_max = payload_bytes_max

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        payloads = []
        offset = 0
        end = len(buffer)
        unpack = FRAME_HEADER.unpack_from
        payload_bytes_max = self._payload_bytes_max
        while end - offset >= FRAME_HEADER_SIZE_BYTES:
            (length,) = unpack(buffer, offset)
            if length > payload_bytes_max:
                raise FrameTooLargeError(
                    f"frame at stream offset {offset} announces {length} bytes (max {payload_bytes_max})"
                )
            start = offset + FRAME_HEADER_SIZE_BYTES
            if end - start < length:
                break
            payloads.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return payloads

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)
