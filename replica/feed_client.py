"""The market-data subscriber: a local L2 book kept from a snapshot plus updates.

`BookView.apply(message)` takes a BookSnapshot (one of its `parts`: the view is
synchronised once the last part arrived) or MarketDataUpdate and returns False when
an update does not link to the last one seen (its `previous_journal_sequence` is not the
view's `journal_sequence`): something was missed, and the caller asks for a new
snapshot. Updates at or before the snapshot's sequence are already in it and are skipped.
`follow_feed` connects, subscribes, applies, re-snapshots on a gap, and calls `on_message`
after each message, for a bounded time if asked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

from replica.errors import ReplicaError
from replica.market_data import PublicTrade
from replica.protocol import (
    BookSnapshot,
    Disconnect,
    FeedRejected,
    FrameReader,
    FrameTooLargeError,
    MarketDataUpdate,
    Subscribe,
    Unsubscribe,
    encode_frame,
    feed_message_decoder,
)
from statemachine.events import InstrumentStatusChanged, LevelChanged

TRADES_KEPT = 20


class FeedError(ReplicaError):
    """The feed refused the subscription or closed the connection with a reason."""


class BookView:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, tuple[int, int]] = {}
        self.asks: dict[int, tuple[int, int]] = {}
        self.journal_sequence = 0
        self.synchronised = False
        self.status = "unknown"
        self.last_trade_price: Optional[int] = None
        self.trades: list[PublicTrade] = []
        self.snapshots = 0
        self.gaps = 0
        # The parts of a snapshot being received: (next part expected, bids, asks).
        self._partial: Optional[tuple[int, dict, dict]] = None

    def apply(self, message) -> bool:
        if type(message) is BookSnapshot:
            return self._apply_snapshot_part(message)
        if type(message) is not MarketDataUpdate or not self.synchronised:
            return True
        if message.journal_sequence <= self.journal_sequence:
            return True
        if message.previous_journal_sequence > self.journal_sequence:
            self.synchronised = False
            self.gaps += 1
            return False
        self._apply_events(message.events)
        self.journal_sequence = message.journal_sequence
        return True

    def _apply_snapshot_part(self, message: BookSnapshot) -> bool:
        if message.part == 1:
            self._partial = (1, {}, {})
            self.synchronised = False
        if self._partial is None or message.part != self._partial[0]:
            # A part out of order (a reconnection mid-snapshot): ask for a new one.
            self._partial = None
            self.synchronised = False
            self.gaps += 1
            return False
        _, bids, asks = self._partial
        for level in message.bids:
            bids[level.price] = (level.qty, level.orders)
        for level in message.asks:
            asks[level.price] = (level.qty, level.orders)
        if message.part < message.parts:
            self._partial = (message.part + 1, bids, asks)
            return True
        self._partial = None
        self.bids = bids
        self.asks = asks
        self.journal_sequence = message.journal_sequence
        self.status = message.status
        self.last_trade_price = message.last_trade_price
        self.synchronised = True
        self.snapshots += 1
        return True

    def start_empty(self) -> None:
        """Synchronised at sequence 0: the book before any record (a subscriber that
        replays the feed from its first message instead of taking a snapshot)."""
        self.bids = {}
        self.asks = {}
        self.journal_sequence = 0
        self.synchronised = True

    def apply_events(self, journal_sequence: int, events) -> None:
        """Market-data events of one record, delivered in journal order by a feed whose
        own numbering detects gaps (the multicast feed); those already in the snapshot
        (at or before its sequence) are skipped."""
        if not self.synchronised or journal_sequence <= self.journal_sequence:
            return
        self._apply_events(events)
        self.journal_sequence = journal_sequence

    def _apply_events(self, events) -> None:
        for event in events:
            kind = type(event)
            if kind is LevelChanged:
                side = self.bids if event.side == "buy" else self.asks
                if event.qty:
                    side[event.price] = (event.qty, event.orders)
                else:
                    side.pop(event.price, None)
            elif kind is PublicTrade:
                self.last_trade_price = event.price
                self.trades.append(event)
                del self.trades[:-TRADES_KEPT]
            elif kind is InstrumentStatusChanged:
                self.status = event.status

    def depth(self, levels: Optional[int] = None) -> dict:
        bids = sorted(self.bids.items(), reverse=True)[:levels]
        asks = sorted(self.asks.items())[:levels]
        return {
            "bids": [(price, qty, orders) for price, (qty, orders) in bids],
            "asks": [(price, qty, orders) for price, (qty, orders) in asks],
        }

    def render(self, levels: int = 10) -> str:
        depth = self.depth(levels)
        lines = [
            f"{self.symbol}  {self.status}  journal seq {self.journal_sequence}  last {self.last_trade_price}  "
            f"(snapshots {self.snapshots}, gaps {self.gaps})",
            f"{'bid orders':>10} {'bid qty':>10} {'bid':>10} | {'ask':<10} {'ask qty':<10} {'ask orders':<10}",
        ]
        for index in range(max(len(depth["bids"]), len(depth["asks"]), 1)):
            bid = depth["bids"][index] if index < len(depth["bids"]) else None
            ask = depth["asks"][index] if index < len(depth["asks"]) else None
            left = f"{bid[2]:>10} {bid[1]:>10} {bid[0]:>10}" if bid else " " * 32
            right = f"{ask[0]:<10} {ask[1]:<10} {ask[2]:<10}" if ask else ""
            lines.append(f"{left} | {right}")
        for trade in reversed(self.trades[-5:]):
            lines.append(f"  trade #{trade.trade_id} {trade.qty}@{trade.price} ({trade.aggressor})")
        return "\n".join(lines) + "\n"


async def follow_feed(
    endpoint: tuple[str, int],
    view: BookView,
    on_message: Callable[[object], None],
    seconds: Optional[float] = None,
    ssl_context=None,
) -> None:
    """`ssl_context`: TLS to the feed port (replica.tls.member_client_context)."""
    reader, writer = await asyncio.open_connection(
        *endpoint, **({"ssl": ssl_context, "server_hostname": ""} if ssl_context else {}))
    writer.write(encode_frame(Subscribe(view.symbol)))
    frames = FrameReader()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout == 0.0:
                return
            try:
                data = await asyncio.wait_for(reader.read(262144), timeout)
            except asyncio.TimeoutError:
                return
            if not data:
                raise FeedError(f"feed {endpoint[0]}:{endpoint[1]} closed the connection")
            try:
                payloads = frames.feed(data)
            except FrameTooLargeError as error:
                raise FeedError(f"feed {endpoint[0]}:{endpoint[1]} sent a frame over the bound: {error}") from None
            for payload in payloads:
                message = feed_message_decoder.decode(payload)
                if type(message) is FeedRejected:
                    raise FeedError(f"feed refused {message.symbol}: {message.reason}")
                if type(message) is Disconnect:
                    raise FeedError(f"feed disconnected: {message.reason}")
                if not view.apply(message):
                    writer.write(encode_frame(Unsubscribe(view.symbol)) + encode_frame(Subscribe(view.symbol)))
                on_message(message)
    finally:
        writer.close()
