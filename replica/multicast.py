"""Multicast market data, sans-I/O: the packet format, the publisher and subscriber cores.

One UDP packet carries several messages to a multicast group, so the publisher's cost
does not grow with the number of subscribers and every subscriber sees a packet at the
same time. The format follows MoldUDP64 (big-endian, as that protocol is):

    0                   10                      18            20
    +-------------------+-----------------------+-------------+----------------------+
    | session 10 bytes  | sequence u64 BE       | count u16 BE| count messages ...   |
    | (ASCII)           | (of the first message)|             |                      |
    +-------------------+-----------------------+-------------+----------------------+

    one message:
    +----------------+---------------------------+
    | length u16 BE  | body (length bytes)       |
    +----------------+---------------------------+

* count 0 is a heartbeat: no messages; `sequence` is the next sequence to be published,
  so a subscriber can tell silence (nothing new) from loss (it is behind).
* count 0xFFFF is the end-of-session marker: the publishing node stopped; `sequence` is
  the next sequence. A node that later publishes the same session (a restart on the same
  journal, a promoted standby) continues from there.
* length 0: the record produced no market data (a rejection, a checkpoint...).
* length 0xFFFF, no body: the record's market data does not fit in one packet; the
  subscriber fetches it from the retransmission server like a lost message.

Sequence numbering: the message sequence number IS the journal sequence. Every journal
record becomes exactly one message, empty when it produced no market data. That makes
the numbering dense (a missing number is a lost message, the MoldUDP64 gap rule), gives
both nodes of a cluster the same numbers without coordination (they apply the same
records), continues across a failover (the promoted standby publishes the records after
its last applied one), and lets any past message be rebuilt by replaying the journal
(replica/retransmission.py). The cost is a 2-byte empty message per record without
market data.

A message body is msgpack of `[[symbol, [event, ...]], ...]`: the record's public
market-data events (level changes, anonymous trades, instrument status: the same events
as the TCP feed's MarketDataUpdate, replica/market_data.py; no member, client order id
or order id), grouped by symbol in order of first appearance. Its bytes depend only
on the record and the state before it, so a rebuilt message is byte-identical to the one
sent live.

Session: ten ASCII characters derived from the cluster id (`session_id`): the cluster id
names one journal lineage, whose sequence numbers never restart, so every node of the
cluster agrees on it without coordination, across restarts and failovers.

Cores here do no I/O and read no clock (the adapters pass `now_ns`):
`MulticastPublisherCore` (released records in, packets out, a bounded window of recent
messages for retransmission), `SubscriberCore` (packets and retransmissions in, messages
out strictly in order, plus actions: request a retransmission of [first, last], fetch a
snapshot), and `PacketFaults`, a deterministic seeded loss/duplicate/reorder shim for
tests and benchmarks, applied at the socket layer.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from collections import deque
from typing import NamedTuple, Optional

import msgspec

from replica.errors import ReplicaError
from replica.market_data import MarketDataEvent

HEADER = struct.Struct(">10sQH")
HEADER_SIZE_BYTES = HEADER.size
LENGTH = struct.Struct(">H")
LENGTH_SIZE_BYTES = LENGTH.size
SESSION_SIZE_BYTES = 10
COUNT_HEARTBEAT = 0
COUNT_END_OF_SESSION = 0xFFFF
# A packet holds at most this many messages (0xFFFF is the end-of-session marker).
MESSAGES_PER_PACKET_MAX = 0xFFFE
LENGTH_TOO_LARGE = 0xFFFF
_TOO_LARGE_MARKER = LENGTH.pack(LENGTH_TOO_LARGE)
_EMPTY_MESSAGE = LENGTH.pack(0)
# The largest UDP payload over IPv4; the smallest packet bound that still carries a header
# and a useful message.
PACKET_BYTES_MAX_LIMIT = 65507
PACKET_BYTES_MAX_MINIMUM = 64

class SymbolUpdate(msgspec.Struct, array_like=True, frozen=True, gc=False):
    symbol: str
    events: list[MarketDataEvent]


_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(list[SymbolUpdate])


class PacketError(ReplicaError):
    """A datagram that is not a well-formed packet (short, or lengths past its end)."""


class MulticastSequenceError(ReplicaError):
    """The publisher was handed a record out of sequence (a bug in the caller)."""


def session_id(cluster_id: int) -> bytes:
    """The feed session of a cluster: 10 ASCII characters, the same on every node."""
    if type(cluster_id) is not int or not 0 <= cluster_id < 2**64:
        raise ValueError(f"cluster id {cluster_id!r} is not a u64")
    digest = hashlib.sha256(b"twinbook-feed-session\0" + cluster_id.to_bytes(8, "big")).digest()
    return base64.b32encode(digest)[:SESSION_SIZE_BYTES].upper()


def encode_market_data(events) -> bytes:
    """The message body of one record's market-data events (b"" when there are none)."""
    if not events:
        return b""
    first_symbol = events[0].symbol
    for event in events:
        if event.symbol != first_symbol:
            break
    else:
        # One symbol is by far the common case: no grouping work.
        return _encoder.encode(((first_symbol, events),))
    groups: dict[str, list] = {}
    for event in events:
        group = groups.get(event.symbol)
        if group is None:
            group = groups[event.symbol] = []
        group.append(event)
    return _encoder.encode(tuple(groups.items()))


def decode_market_data(body: bytes) -> list[SymbolUpdate]:
    if not body:
        return []
    return _message_decoder.decode(body)


class Packet(NamedTuple):
    session: bytes
    sequence: int
    count: int
    # One entry per message: its body, or None for a too-large marker.
    bodies: list


def decode_packet(data: bytes) -> Packet:
    size = len(data)
    if size < HEADER_SIZE_BYTES:
        raise PacketError(f"datagram of {size} bytes is shorter than the {HEADER_SIZE_BYTES}-byte header")
    session, sequence, count = HEADER.unpack_from(data, 0)
    if count == COUNT_HEARTBEAT or count == COUNT_END_OF_SESSION:
        if size != HEADER_SIZE_BYTES:
            raise PacketError(f"a {'heartbeat' if count == 0 else 'end-of-session'} packet has {size - HEADER_SIZE_BYTES} trailing bytes")
        return Packet(session, sequence, count, [])
    if sequence < 1:
        raise PacketError("message sequence numbers start at 1")
    bodies: list = []
    offset = HEADER_SIZE_BYTES
    unpack = LENGTH.unpack_from
    for index in range(count):
        if offset + LENGTH_SIZE_BYTES > size:
            raise PacketError(f"message {index} of {count}: length field past the end of the datagram")
        (length,) = unpack(data, offset)
        offset += LENGTH_SIZE_BYTES
        if length == LENGTH_TOO_LARGE:
            bodies.append(None)
            continue
        end = offset + length
        if end > size:
            raise PacketError(f"message {index} of {count}: {length} bytes announced, {size - offset} left")
        bodies.append(data[offset:end])
        offset = end
    if offset != size:
        raise PacketError(f"{size - offset} bytes after the last of {count} messages")
    return Packet(session, sequence, count, bodies)


def pack_messages(session: bytes, first_sequence: int, bodies: list, packet_bytes_max: int) -> list[bytes]:
    """Messages (consecutive from `first_sequence`) into as few packets as fit the bound."""
    room = packet_bytes_max - HEADER_SIZE_BYTES
    packets = []
    parts: list[bytes] = []
    used = 0
    start = first_sequence
    count = 0
    pack_length = LENGTH.pack
    header = HEADER.pack
    for body in bodies:
        size = LENGTH_SIZE_BYTES + len(body)
        if not body:
            piece = _EMPTY_MESSAGE
        elif size > room:
            piece = _TOO_LARGE_MARKER
            size = LENGTH_SIZE_BYTES
        else:
            piece = pack_length(len(body)) + body
        if used + size > room or count == MESSAGES_PER_PACKET_MAX:
            packets.append(header(session, start, count) + b"".join(parts))
            start += count
            parts = []
            used = 0
            count = 0
        parts.append(piece)
        used += size
        count += 1
    if count:
        packets.append(header(session, start, count) + b"".join(parts))
    return packets


class MulticastPublisherCore:
    """Released records in (every one, in sequence order), packets out.

    `record_released` encodes a record's market data once; the body goes to the pending
    batch (packed by `take_packets`, called by the adapter after each release) and to a
    window of the most recent messages (bounded in count and bytes) that the
    retransmission server answers from without touching the journal.
    """

    def __init__(self, session: bytes, next_sequence: int, *, packet_bytes_max: int,
                 window_messages_max: int, window_bytes_max: int) -> None:
        if len(session) != SESSION_SIZE_BYTES:
            raise ValueError(f"a session id has {SESSION_SIZE_BYTES} bytes, not {len(session)}")
        if not PACKET_BYTES_MAX_MINIMUM <= packet_bytes_max <= PACKET_BYTES_MAX_LIMIT:
            raise ValueError(f"packet_bytes_max {packet_bytes_max} is outside {PACKET_BYTES_MAX_MINIMUM}..{PACKET_BYTES_MAX_LIMIT}")
        if next_sequence < 1 or window_messages_max < 1 or window_bytes_max < 1:
            raise ValueError("next_sequence and the window bounds must be positive")
        self.session = session
        self.next_sequence = next_sequence
        self.packet_bytes_max = packet_bytes_max
        self.window_messages_max = window_messages_max
        self.window_bytes_max = window_bytes_max
        self.window: deque[bytes] = deque()
        self.window_first_sequence = next_sequence
        self.window_bytes = 0
        self._pending: list[bytes] = []
        self._pending_first_sequence = next_sequence
        self.messages_published = 0
        self.packets_published = 0

    def record_released(self, sequence: int, market_data) -> None:
        if sequence != self.next_sequence:
            raise MulticastSequenceError(f"record {sequence} released, the feed expected {self.next_sequence}")
        self.next_sequence = sequence + 1
        body = encode_market_data(market_data) if market_data else b""
        self._pending.append(body)
        window = self.window
        window.append(body)
        self.window_bytes += len(body)
        if len(window) > self.window_messages_max or self.window_bytes > self.window_bytes_max:
            while window and (len(window) > self.window_messages_max or self.window_bytes > self.window_bytes_max):
                self.window_bytes -= len(window.popleft())
                self.window_first_sequence += 1

    def take_packets(self) -> list[bytes]:
        pending = self._pending
        if not pending:
            return []
        packets = pack_messages(self.session, self._pending_first_sequence, pending, self.packet_bytes_max)
        self.messages_published += len(pending)
        self.packets_published += len(packets)
        self._pending = []
        self._pending_first_sequence = self.next_sequence
        return packets

    def heartbeat_packet(self) -> bytes:
        return HEADER.pack(self.session, self._pending_first_sequence, COUNT_HEARTBEAT)

    def end_of_session_packet(self) -> bytes:
        return HEADER.pack(self.session, self.next_sequence, COUNT_END_OF_SESSION)

    def from_window(self, first_sequence: int, last_sequence: int) -> Optional[list[bytes]]:
        """The window's messages first..last, or None when any of them is not in it."""
        if first_sequence < self.window_first_sequence or last_sequence >= self.next_sequence:
            return None
        offset = first_sequence - self.window_first_sequence
        window = self.window
        return [window[index] for index in range(offset, offset + last_sequence - first_sequence + 1)]


# ---------------------------------------------------------------- subscriber


class RequestRetransmission(NamedTuple):
    first_sequence: int
    last_sequence: int


class FetchSnapshot(NamedTuple):
    reason: str


class SessionEnded(NamedTuple):
    next_sequence: int


class SubscriberCore:
    """Packets and retransmissions in; messages out strictly in sequence order.

    Before it knows where to start, the core either catches up from sequence 1 (when the
    session's first packet says at most `catch_up_messages_max` came before: a young
    session, so the whole history and every trade can be had by retransmission) or asks
    for a snapshot. Afterwards `expected` is the next sequence to deliver; messages
    beyond it wait in a bounded buffer; every run of missing sequences below the highest
    one known to exist is asked for once (in requests of at most `request_messages_max`),
    and again after `request_timeout_ns` without an answer. A gap that cannot be filled
    (refused as too old, too wide, buffer full, retries used up) becomes a FetchSnapshot
    action; after `snapshot_loaded(sequence)` delivery resumes at sequence + 1.
    Duplicates and messages at or below what was delivered are dropped.
    """

    def __init__(self, session: Optional[bytes] = None, *, catch_up_messages_max: int = 100_000,
                 request_messages_max: int = 10_000, buffered_messages_max: int = 200_000,
                 gap_messages_max: int = 1_000_000, request_timeout_ns: int = 250_000_000,
                 request_retries_max: int = 8) -> None:
        self.session = session
        self.catch_up_messages_max = catch_up_messages_max
        self.request_messages_max = request_messages_max
        self.buffered_messages_max = buffered_messages_max
        self.gap_messages_max = gap_messages_max
        self.request_timeout_ns = request_timeout_ns
        self.request_retries_max = request_retries_max
        self.expected: Optional[int] = None
        self.buffered: dict[int, bytes] = {}
        # One past the highest sequence known to exist (from packets and heartbeats).
        self.known_end = 0
        self.requested_through = 0
        self.request_deadline_ns = 0
        self.request_retries = 0
        self.awaiting_snapshot = False
        self.ended = False
        self.delivered: list[tuple[int, bytes]] = []
        self.actions: list = []
        self.packets = 0
        self.malformed_packets = 0
        self.foreign_packets = 0
        self.duplicates = 0
        self.gaps_requested = 0
        self.retransmitted_messages = 0
        self.snapshots_requested = 0
        self.overflowed = 0

    # ------------------------------------------------------------ inputs

    def packet_received(self, data: bytes, now_ns: int) -> None:
        try:
            packet = decode_packet(data)
        except PacketError:
            self.malformed_packets += 1
            return
        if self.session is None:
            self.session = packet.session
        elif packet.session != self.session:
            self.foreign_packets += 1
            return
        self.packets += 1
        count = packet.count
        if count == COUNT_END_OF_SESSION:
            self.ended = True
            self.actions.append(SessionEnded(packet.sequence))
            self._known(packet.sequence)
        elif count == COUNT_HEARTBEAT:
            self._known(packet.sequence)
        else:
            self._known(packet.sequence + count)
            self._take(packet.sequence, packet.bodies)
        if self.expected is None:
            self._start(packet.sequence)
        self._advance(now_ns)

    def retransmission_received(self, first_sequence: int, bodies: list, now_ns: int) -> None:
        self.retransmitted_messages += len(bodies)
        self._known(first_sequence + len(bodies))
        self._take(first_sequence, bodies)
        self._advance(now_ns)

    def retransmission_refused(self, reason: str, now_ns: int) -> None:
        if reason in ("too_old", "message_too_large", "wrong_session", "too_many") or self.expected is None:
            self._need_snapshot(f"retransmission refused: {reason}")
            return
        # Transient refusals (busy, not yet published): ask again after the timeout.
        self.request_deadline_ns = now_ns + self.request_timeout_ns

    def snapshot_loaded(self, sequence: int, now_ns: int) -> None:
        """The books now hold the state after `sequence`: deliver from sequence + 1."""
        self.awaiting_snapshot = False
        self.expected = sequence + 1
        for stale in [key for key in self.buffered if key <= sequence]:
            del self.buffered[stale]
        self.requested_through = sequence
        self.request_retries = 0
        self._known(sequence + 1)
        self._advance(now_ns)

    def tick(self, now_ns: int) -> None:
        """Ask again for gaps whose request went unanswered."""
        if self.expected is None or self.awaiting_snapshot:
            return
        if self.requested_through >= self.expected and now_ns >= self.request_deadline_ns:
            self.request_retries += 1
            if self.request_retries > self.request_retries_max:
                self._need_snapshot("retransmission requests unanswered")
                return
            self.requested_through = self.expected - 1
            self._request_gaps(now_ns)

    # ------------------------------------------------------------ outputs

    def take_delivered(self) -> list[tuple[int, bytes]]:
        delivered = self.delivered
        self.delivered = []
        return delivered

    def take_actions(self) -> list:
        actions = self.actions
        self.actions = []
        return actions

    @property
    def synchronised(self) -> bool:
        return self.expected is not None and not self.awaiting_snapshot

    # ------------------------------------------------------------ internals

    def _known(self, end: int) -> None:
        if end > self.known_end:
            self.known_end = end

    def _start(self, first_sequence: int) -> None:
        if first_sequence - 1 <= self.catch_up_messages_max:
            self.expected = 1
        else:
            self.expected = 0  # nothing is delivered until the snapshot says where to start
            self._need_snapshot(f"joined at sequence {first_sequence}")

    def _need_snapshot(self, reason: str) -> None:
        if self.awaiting_snapshot:
            return
        self.awaiting_snapshot = True
        self.snapshots_requested += 1
        self.actions.append(FetchSnapshot(reason))

    def _take(self, first_sequence: int, bodies: list) -> None:
        expected = self.expected
        buffered = self.buffered
        sequence = first_sequence
        for body in bodies:
            if expected is not None and sequence < expected and not self.awaiting_snapshot:
                self.duplicates += 1
            elif sequence in buffered:
                self.duplicates += 1
            elif body is not None:
                if len(buffered) < self.buffered_messages_max:
                    buffered[sequence] = body
                else:
                    self.overflowed += 1
            sequence += 1

    def _advance(self, now_ns: int) -> None:
        if self.expected is None or self.awaiting_snapshot:
            return
        expected = self.expected
        buffered = self.buffered
        delivered = self.delivered
        while expected in buffered:
            delivered.append((expected, buffered.pop(expected)))
            expected += 1
        if expected != self.expected:
            self.request_retries = 0
        self.expected = expected
        if self.known_end - expected > self.gap_messages_max:
            self._need_snapshot(f"{self.known_end - expected} messages behind")
            return
        if len(buffered) >= self.buffered_messages_max:
            self._need_snapshot("reorder buffer full")
            return
        self._request_gaps(now_ns)

    def _request_gaps(self, now_ns: int) -> None:
        expected = self.expected
        end = self.known_end  # exclusive
        start = max(expected, self.requested_through + 1)
        if start >= end:
            return
        buffered = self.buffered
        waiting = sorted(key for key in buffered if key >= start) if buffered else []
        position = start
        requested = False
        for boundary in waiting + [end]:
            if boundary > position:
                run_last = boundary - 1
                while position <= run_last:
                    last = min(run_last, position + self.request_messages_max - 1)
                    self.actions.append(RequestRetransmission(position, last))
                    self.gaps_requested += 1
                    requested = True
                    position = last + 1
            position = boundary + 1
        self.requested_through = end - 1
        if requested:
            self.request_deadline_ns = now_ns + self.request_timeout_ns


# ---------------------------------------------------------------- test shim


class PacketFaults:
    """A deterministic lossy, duplicating, reordering path: packets in, packets out.

    Sits at the socket layer (the adapter passes every received datagram through
    `filter` before the core sees it). Drops every `drop_every`-th packet and, seeded,
    a `drop_ratio` share of the others; duplicates a `duplicate_ratio` share; holds a
    `reorder_ratio` share back and releases it after the next packet. The same seed and
    the same packet sequence always give the same faults.
    """

    def __init__(self, seed: int = 1, *, drop_every: int = 0, drop_ratio: float = 0.0,
                 duplicate_ratio: float = 0.0, reorder_ratio: float = 0.0) -> None:
        self.random = random.Random(seed)
        self.drop_every = drop_every
        self.drop_ratio = drop_ratio
        self.duplicate_ratio = duplicate_ratio
        self.reorder_ratio = reorder_ratio
        self.seen = 0
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0
        self._held: Optional[bytes] = None

    def filter(self, packet: bytes) -> list[bytes]:
        self.seen += 1
        roll = self.random.random()
        if (self.drop_every and self.seen % self.drop_every == 0) or roll < self.drop_ratio:
            self.dropped += 1
            return []
        out = [packet]
        roll = self.random.random()
        if roll < self.duplicate_ratio:
            self.duplicated += 1
            out.append(packet)
        if self._held is not None:
            out.append(self._held)
            self._held = None
        elif self.random.random() < self.reorder_ratio:
            self.reordered += 1
            self._held = out.pop(0)
        return out

    def release_held(self) -> list[bytes]:
        held = self._held
        self._held = None
        return [] if held is None else [held]
