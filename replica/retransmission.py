"""Retransmission of multicast messages over TCP: the protocol, the decision core, the rebuild.

A subscriber that missed messages asks for the range [first, last] of a session and gets
exactly those messages (the SoupBinTCP / MoldUDP64 request server pattern). Frames are
the client protocol's (replica/protocol.py: u32 LE length + msgpack payload), with their
own bound, RETRANSMISSION_FRAME_BYTES_MAX:

    subscriber -> server   RetransmitRequest(session, first_sequence, last_sequence)
    server -> subscriber   Retransmitted(session, first_sequence, messages)   one or more,
                           consecutive, covering exactly [first, last]; each `messages`
                           entry is the message body as sent in a packet (b"" for a record
                           without market data)
                      or   RetransmissionRefused(first_sequence, last_sequence, reason, detail)

Requests on one connection are answered in order. Reasons (stable codes):
`malformed` (not a request: the connection is closed), `frame_too_large` (closed),
`wrong_session`, `bad_range` (first < 1 or last < first), `too_many` (more than
REQUEST_MESSAGES_MAX: ask in pieces), `not_published` (last is beyond what this node has
published: ask again later), `too_old` (the rebuild would replay more than
REBUILD_REPLAY_RECORDS_MAX records: take a snapshot instead), `message_too_large`
(one record's market data exceeds a frame), `busy` (too many connections or rebuilds
waiting), `rebuild_failed` (the journal could not be read; the detail names the file).

Where messages come from (`decide`): the publisher's in-memory window of recent messages
when it holds the whole range; otherwise a rebuild from the journal: the newest snapshot
at or before first - 1 (or the rebuild cursor left by the previous rebuild, when it is
not beyond first - 1), then the journal replayed through the state machine up to last,
encoding each record's market data exactly as the publisher does. The work is bounded by
REBUILD_REPLAY_RECORDS_MAX records of replay from that base; the rebuilt messages are
cached (bounded) and the cursor is kept, so consecutive requests of a catching-up
subscriber cost one replay in all.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Union

import msgspec

import journal
import snapshots
from replica.data_directory import DataDirectory
from replica.market_data import market_data_of
from replica.multicast import encode_market_data
from replica.protocol import _Message
from replica.recovery import load_newest_snapshot
from statemachine import Exchange
from statemachine.codec import decode_command

# A frame of this protocol: large enough for one record's market data of a sweep through
# tens of thousands of orders; a larger message is refused rather than trusted.
RETRANSMISSION_FRAME_BYTES_MAX = 16 * 1024 * 1024
# A reply frame is cut after this many bytes of messages (a larger single message still
# goes alone, up to the frame bound).
REPLY_FRAME_MESSAGE_BYTES = 256 * 1024
# Messages one request may ask for: bounds the reply and the work per request.
REQUEST_MESSAGES_MAX = 10_000
# Records a rebuild may replay from its base (snapshot or cursor): about a quarter of a
# second of replay on the reference machine, run off the event loop.
REBUILD_REPLAY_RECORDS_MAX = 200_000
# Rebuilt messages kept for later requests (about 10 MB at typical sizes).
REBUILD_CACHE_MESSAGES_MAX = 100_000
# Concurrent retransmission connections per node.
CONNECTIONS_MAX = 64


class RetransmitRequest(_Message, tag="retransmit"):
    session: str
    first_sequence: int
    last_sequence: int


class Retransmitted(_Message, tag="retransmitted"):
    session: str
    first_sequence: int
    messages: list[bytes]


class RetransmissionRefused(_Message, tag="retransmission_refused"):
    first_sequence: int
    last_sequence: int
    reason: str
    detail: str = ""


request_decoder = msgspec.msgpack.Decoder(RetransmitRequest)
reply_decoder = msgspec.msgpack.Decoder(Union[Retransmitted, RetransmissionRefused])


@dataclass(frozen=True)
class ServeFromWindow:
    first_sequence: int
    last_sequence: int


@dataclass(frozen=True)
class Rebuild:
    first_sequence: int
    last_sequence: int


@dataclass(frozen=True)
class Refuse:
    reason: str
    detail: str


def decide(request: RetransmitRequest, *, session: str, published_next: int, window_first: int,
           rebuild_base: Optional[int], request_messages_max: int = REQUEST_MESSAGES_MAX,
           rebuild_replay_records_max: int = REBUILD_REPLAY_RECORDS_MAX):
    """What to do with one request: ServeFromWindow, Rebuild or Refuse (data, no I/O).

    `published_next` is the publisher's next sequence (everything below it is published);
    `window_first` the first sequence its window holds; `rebuild_base` the sequence a
    rebuild of this request would replay from (None: the journal cannot give it).
    """
    first = request.first_sequence
    last = request.last_sequence
    if request.session != session:
        return Refuse("wrong_session", f"this node publishes session {session}")
    if first < 1 or last < first:
        return Refuse("bad_range", f"[{first}, {last}] is not a range of sequences >= 1")
    if last - first + 1 > request_messages_max:
        return Refuse("too_many", f"{last - first + 1} messages asked, at most {request_messages_max} per request")
    if last >= published_next:
        return Refuse("not_published", f"published up to {published_next - 1}")
    if first >= window_first:
        return ServeFromWindow(first, last)
    if rebuild_base is None or last - rebuild_base > rebuild_replay_records_max:
        return Refuse("too_old", f"rebuilding [{first}, {last}] would replay more than {rebuild_replay_records_max} records")
    return Rebuild(first, last)


def reply_frames(session: str, first_sequence: int, bodies: list[bytes]) -> list:
    """The Retransmitted messages answering a range, each under REPLY_FRAME_MESSAGE_BYTES
    (but a larger single message alone)."""
    replies = []
    start = 0
    size = 0
    for index, body in enumerate(bodies):
        if index > start and size + len(body) > REPLY_FRAME_MESSAGE_BYTES:
            replies.append(Retransmitted(session, first_sequence + start, bodies[start:index]))
            start = index
            size = 0
        size += len(body) + 8
    if start < len(bodies):
        replies.append(Retransmitted(session, first_sequence + start, bodies[start:]))
    return replies


class RebuildRefused(Exception):
    """A rebuild that cannot be done within the limits (reason, detail)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class JournalRebuilder:
    """Regenerates past messages from a node's snapshots and journal (blocking I/O: the
    adapter runs it in a worker thread, one rebuild at a time)."""

    def __init__(self, data_root: str, *, replay_records_max: int = REBUILD_REPLAY_RECORDS_MAX,
                 cache_messages_max: int = REBUILD_CACHE_MESSAGES_MAX) -> None:
        self.directory = DataDirectory.existing(data_root)
        self.replay_records_max = replay_records_max
        self.cache_messages_max = cache_messages_max
        self.cache: OrderedDict[int, bytes] = OrderedDict()
        # The exchange the last rebuild ended with: a following request continues from it.
        self.cursor: Optional[Exchange] = None
        self.records_replayed = 0
        self.rebuilds = 0

    def base_for(self, first_sequence: int, last_sequence: int) -> int:
        """The sequence a rebuild of [first, last] would replay from (last: all cached)."""
        if all(sequence in self.cache for sequence in range(first_sequence, last_sequence + 1)):
            return last_sequence
        if self.cursor is not None and self.cursor.last_sequence <= first_sequence - 1:
            cursor_base = self.cursor.last_sequence
        else:
            cursor_base = None
        snapshot_base = 0
        if self.directory.has_snapshots():
            try:
                store = snapshots.SnapshotStore(self.directory.snapshots, readonly=True)
            except snapshots.SnapshotError:
                store = None
            if store is not None:
                try:
                    for info in store.list():
                        if info.sequence <= first_sequence - 1:
                            snapshot_base = max(snapshot_base, info.sequence)
                except snapshots.SnapshotError:
                    pass
                finally:
                    store.close()
        if cursor_base is not None and cursor_base >= snapshot_base:
            return cursor_base
        return snapshot_base

    def rebuild(self, first_sequence: int, last_sequence: int) -> list[bytes]:
        cache = self.cache
        if all(sequence in cache for sequence in range(first_sequence, last_sequence + 1)):
            return [cache[sequence] for sequence in range(first_sequence, last_sequence + 1)]
        exchange = self.cursor
        if exchange is None or exchange.last_sequence > first_sequence - 1:
            exchange, _, _ = load_newest_snapshot(self.directory, first_sequence - 1, book_updates=True)
            if exchange is None:
                exchange = Exchange(book_updates=True)
        if last_sequence - exchange.last_sequence > self.replay_records_max:
            raise RebuildRefused("too_old", f"the nearest base is sequence {exchange.last_sequence}")
        self.cursor = None  # until it is consistent again
        bodies: list[bytes] = []
        apply = exchange.apply
        try:
            for batch in journal.read_tuple_batches(self.directory.journal, exchange.last_sequence + 1, last_sequence, live=True):
                for sequence, _epoch, timestamp_ns, body in batch:
                    events = apply(sequence, timestamp_ns, decode_command(body))
                    self.records_replayed += 1
                    if sequence >= first_sequence:
                        message = encode_market_data(market_data_of(events))
                        bodies.append(message)
                        cache[sequence] = message
        except journal.JournalError as error:
            raise RebuildRefused("rebuild_failed", str(error)) from None
        if exchange.last_sequence < last_sequence:
            raise RebuildRefused("rebuild_failed", f"the journal ends at {exchange.last_sequence}")
        self.cursor = exchange
        self.rebuilds += 1
        while len(cache) > self.cache_messages_max:
            cache.popitem(last=False)
        return bodies
