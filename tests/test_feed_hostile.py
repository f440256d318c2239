"""A hostile feed peer repeating Subscribe (review finding 7).

An anonymous peer may send Subscribe for the same symbol over and over, or Unsubscribe then
Subscribe in a loop. Each must not rebuild and encode the book: the snapshot of one state of
a book is encoded once, however many Subscribes ask for it. Counted here by the encodes
themselves (a timing bound would be a timed test).
"""

from __future__ import annotations

from replica.feed import FeedCore
from replica.protocol import BookSnapshot, feed_message_decoder
from statemachine import AddInstrument, Exchange, PlaceOrder


def deep_book_exchange(levels: int) -> Exchange:
    exchange = Exchange(book_updates=True)
    exchange.apply(1, 1, AddInstrument("DEEP", 1, 1, 0, None))
    for index in range(levels):
        side, price = ("buy", 10_000 - index) if index % 2 else ("sell", 20_000 + index)
        exchange.apply(index + 2, index + 2, PlaceOrder("M1", f"o{index}", "DEEP", side, "limit", 5, price))
    return exchange


class CountingFeed(FeedCore):
    def __init__(self, exchange: Exchange) -> None:
        super().__init__(exchange)
        self.encodes = 0

    def snapshot_frames(self, symbol: str) -> list[bytes]:
        self.encodes += 1
        return super().snapshot_frames(symbol)


def test_two_thousand_repeated_subscribes_encode_the_snapshot_once():
    feed = CountingFeed(deep_book_exchange(2000))
    feed.subscriber_opened(1)
    for _ in range(2000):
        feed.subscribe(1, "DEEP")
    assert feed.encodes == 1
    # The repeats were ignored: one snapshot was queued, not 2,000.
    frames = feed.take_outbox()[1]
    assert all(type(feed_message_decoder.decode(frame[4:])) is BookSnapshot for frame in frames)
    assert len(frames) == feed_message_decoder.decode(frames[0][4:]).parts


def test_unsubscribe_subscribe_loops_from_many_peers_share_one_encode_per_book_state():
    exchange = deep_book_exchange(2000)
    feed = CountingFeed(exchange)
    for subscriber_id in (1, 2, 3):
        feed.subscriber_opened(subscriber_id)
    for _ in range(700):
        for subscriber_id in (1, 2, 3):
            feed.unsubscribe(subscriber_id, "DEEP")
            feed.subscribe(subscriber_id, "DEEP")
    assert feed.encodes == 1
    first = feed.take_outbox()[1][0]
    # A record changes the book: the next Subscribe shows the new state, encoded once more.
    exchange.apply(2002, 2002, PlaceOrder("M2", "new", "DEEP", "buy", "limit", 7, 15_000))
    feed.publish(2002, [])
    for _ in range(100):
        feed.unsubscribe(1, "DEEP")
        feed.subscribe(1, "DEEP")
    assert feed.encodes == 2
    fresh = feed.take_outbox()[1][-1]
    assert feed_message_decoder.decode(first[4:]).journal_sequence == 2001
    assert feed_message_decoder.decode(fresh[4:]).journal_sequence == 2002
