"""The market-data feed's logic, sans-I/O: subscriptions in, encoded frames out.

A subscriber asks for a symbol and gets a `BookSnapshot` (L2 from the exchange as of the
last released record, in `parts` consecutive frames of at most SNAPSHOT_LEVELS_PER_FRAME
levels, bids then asks, so a book of any size stays within the 64 KiB frame bound), then a `MarketDataUpdate` for every released record that changed
that symbol's book, traded in it or changed its status. Updates are numbered by the
journal: each carries the sequence of its record and the sequence of the symbol's
previous update, so gaps are detectable and the numbering continues across a failover
(the standby applies the same records and so computes the same links).

An update is encoded once and the same bytes are queued for every subscriber of the
symbol: the publisher's cost per update does not grow with the encoding per subscriber.
`outbox[subscriber_id]` holds frames (bytes) to send; slow subscribers are the adapter's
business (it cuts off a subscriber whose transport buffer is over the limit, so matching
never waits for one).

A snapshot is built and encoded at most once per (symbol, exchange sequence, symbol's last
update): the frames are cached and the same bytes serve every Subscribe until a record is
applied. A Subscribe for a symbol the connection already follows is ignored (a re-snapshot
is Unsubscribe then Subscribe). Together they keep an anonymous peer repeating Subscribe
from stalling the event loop with snapshot encodes (DESIGN invariant 8): its cost is one
dictionary look-up and a list extend, and its queued bytes count against the adapter's
buffer bound.
"""

from __future__ import annotations

from replica.protocol import (
    FRAME_PAYLOAD_BYTES_MAX,
    SNAPSHOT_LEVELS_PER_FRAME,
    BookLevel,
    BookSnapshot,
    FeedRejected,
    MarketDataUpdate,
    encode_frame,
)
from statemachine import Exchange


class FeedCore:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.by_symbol: dict[str, set[int]] = {}
        self.subscriptions: dict[int, set[str]] = {}
        # symbol -> journal sequence of its last update (0: none since this node started
        # applying; a subscriber then re-snapshots, which is always safe).
        self.last_update_sequence: dict[str, int] = {}
        self.outbox: dict[int, list[bytes]] = {}
        # symbol -> ((exchange sequence, symbol's last update), encoded snapshot frames).
        self.snapshot_cache: dict[str, tuple[tuple[int, int], list[bytes]]] = {}

    def subscriber_opened(self, subscriber_id: int) -> None:
        self.subscriptions[subscriber_id] = set()

    def subscriber_closed(self, subscriber_id: int) -> None:
        for symbol in self.subscriptions.pop(subscriber_id, ()):
            subscribers = self.by_symbol.get(symbol)
            if subscribers is not None:
                subscribers.discard(subscriber_id)
        self.outbox.pop(subscriber_id, None)

    def subscribe(self, subscriber_id: int, symbol: str) -> None:
        queue = self.outbox.setdefault(subscriber_id, [])
        book = self.exchange.books.get(symbol)
        if book is None:
            queue.append(encode_frame(FeedRejected(symbol, "unknown_symbol")))
            return
        subscribed = self.subscriptions.setdefault(subscriber_id, set())
        if symbol in subscribed:
            return
        subscribed.add(symbol)
        self.by_symbol.setdefault(symbol, set()).add(subscriber_id)
        queue.extend(self.cached_snapshot_frames(symbol))

    def unsubscribe(self, subscriber_id: int, symbol: str) -> None:
        self.subscriptions.get(subscriber_id, set()).discard(symbol)
        self.by_symbol.get(symbol, set()).discard(subscriber_id)

    def cached_snapshot_frames(self, symbol: str) -> list[bytes]:
        """snapshot_frames, encoded once per state of the book (any applied record moves
        the exchange sequence, so a cached entry never outlives the state it shows)."""
        key = (self.exchange.last_sequence, self.last_update_sequence.get(symbol, 0))
        cached = self.snapshot_cache.get(symbol)
        if cached is not None and cached[0] == key:
            return cached[1]
        frames = self.snapshot_frames(symbol)
        self.snapshot_cache[symbol] = (key, frames)
        return frames

    def snapshot_frames(self, symbol: str) -> list[bytes]:
        """The symbol's book as encoded BookSnapshot frames, parts 1..parts."""
        book = self.exchange.books[symbol]
        depth = self.exchange.depth(symbol)
        bids = [BookLevel(*row) for row in depth["bids"]]
        asks = [BookLevel(*row) for row in depth["asks"]]
        per_frame = SNAPSHOT_LEVELS_PER_FRAME
        parts = max(1, -(-(len(bids) + len(asks)) // per_frame))
        frames = []
        for part in range(parts):
            start = part * per_frame
            end = start + per_frame
            frame = encode_frame(BookSnapshot(
                symbol,
                self.exchange.last_sequence,
                self.last_update_sequence.get(symbol, 0),
                "halted" if book.halted else "trading",
                bids[start:end],
                asks[max(0, start - len(bids)) : max(0, end - len(bids))],
                book.last_trade_price,
                part + 1,
                parts,
            ))
            if len(frame) - 4 > FRAME_PAYLOAD_BYTES_MAX:
                # The level bound is computed to fit; a frame over it is a bug here.
                raise RuntimeError(f"snapshot frame of {symbol} is {len(frame)} bytes, over the frame bound")
            frames.append(frame)
        return frames

    def publish(self, sequence: int, events: list) -> None:
        """Market-data events of one released record (level changes, trades, status)."""
        by_symbol: dict[str, list] = {}
        for event in events:
            by_symbol.setdefault(event.symbol, []).append(event)
        for symbol, symbol_events in by_symbol.items():
            previous = self.last_update_sequence.get(symbol, 0)
            self.last_update_sequence[symbol] = sequence
            subscribers = self.by_symbol.get(symbol)
            if not subscribers:
                continue
            frame = encode_frame(MarketDataUpdate(symbol, sequence, previous, symbol_events))
            for subscriber_id in subscribers:
                self.outbox.setdefault(subscriber_id, []).append(frame)

    def take_outbox(self) -> dict[int, list[bytes]]:
        outbox = self.outbox
        self.outbox = {}
        return outbox
