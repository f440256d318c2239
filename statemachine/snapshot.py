"""The canonical encoding of the whole exchange state, and its inverse.

`encode_state(exchange)` gives bytes that depend only on the state, never on the process
or on what happened to closed orders (dicts are walked in sorted or order-id order, never
in hash order; fields of closed orders that no longer mean anything are written as 0).
`canonical_digest(exchange)` is blake2b-256 of those bytes, and `decode_state(data)`
rebuilds an exchange whose future is exactly that of the original: the same next order
and trade ids, the same FIFO order in every level (arrival stamps included, so the
incremental digest agrees too), the same untriggered stops, the same hidden quantity of
icebergs and the same memory of used client order ids.

Layout (msgpack, version 4): one array

    [version, last_sequence, last_timestamp_ns, next_order_id, next_trade_id,
     arrival_stamp, digest_sum (signed little-endian bytes), instruments, placed_orders,
     client_order_ids,
     side, price, open, hidden, arrival, prev, next,
     rules_version, owner, instrument]

* instruments: sorted by symbol, each
  `[symbol, tick_size, lot_size, band_bps, reference_price, last_trade_price, halted,
    bid_levels, ask_levels, buy_stops, sell_stops]`; a level is
  `[price, head, tail, visible_total, order_count]`, best first; stops are
  `[sort key, order id]` in the book's own order;
* placed_orders: the `PlaceOrder` command of every open order and nil for every closed
  one (a closed order keeps no command), order id 1 first; version 3 of this layout
  held every accepted order's command, which made a snapshot grow with every order ever
  placed;
* client_order_ids: member -> {client order id -> order id}, both in order-id order;
* then one dense list per column, entry i for order id i + 1 (the order's side with the
  stop flag, price, visible and hidden quantity, arrival stamp, prev and next in its
  level); for a closed order price, arrival, prev and next are 0. Version 3 stored the
  digest weight `arrival * 2**41 + price` instead of the arrival stamp: past 2**23
  arrivals (about 8.4 M orders entering levels) the weight no longer fit a msgpack
  integer and no snapshot could be written; the weight is derived on load;
* rules_version: the matching-rules version the exchange applies (statemachine/version.py),
  set by the journal's rules checkpoints; version 2 of this layout had no such field;
* owner: one dense list, entry i the member who placed order id i + 1, as its position
  among the members of client_order_ids (new in version 4: a closed order's command,
  which named its member, is no longer kept);
* instrument: one dense list, entry i the instrument of order id i + 1, as its position
  in instruments (new in version 4, for the same reason).

Why dense columns: restoring is then one slice assignment per column, done in C, instead
of a Python statement per field per order, which is what made version 1 slow to load
(about 3 s for a million resting orders). The per-order work moved to the encoder, which
runs in the forked snapshot child, off the apply loop.
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Optional

import msgspec

from statemachine.commands import PlaceOrder
from statemachine.errors import InvariantViolation, SnapshotFormatError
from statemachine.exchange import (
    ARRIVAL_WEIGHT,
    BUY,
    DIGEST_SUM_MASK,
    HIDDEN_WEIGHT,
    SELL,
    Book,
    Exchange,
    Level,
)
from statemachine.version import REPLAYABLE_RULES_VERSIONS

STATE_FORMAT_VERSION = 4


class _Instrument(msgspec.Struct, array_like=True, gc=False):
    symbol: str
    tick_size: int
    lot_size: int
    band_bps: int
    reference_price: Optional[int]
    last_trade_price: Optional[int]
    halted: bool
    bid_levels: list[tuple[int, int, int, int, int]]
    ask_levels: list[tuple[int, int, int, int, int]]
    buy_stops: list[tuple[int, int]]
    sell_stops: list[tuple[int, int]]


class _State(msgspec.Struct, array_like=True):
    version: int
    last_sequence: int
    last_timestamp_ns: int
    next_order_id: int
    next_trade_id: int
    arrival_stamp: int
    digest_sum: bytes  # signed little-endian: the sum is wider than msgpack's integers
    instruments: list[_Instrument]
    placed_orders: list[Optional[PlaceOrder]]
    client_order_ids: dict[str, dict[str, int]]
    side: list[int]
    price: list[int]
    open: list[int]
    hidden: list[int]
    arrival: list[int]
    prev: list[int]
    next: list[int]
    rules_version: int
    owner: list[int]
    instrument: list[int]


class _Version(msgspec.Struct, array_like=True):
    """Just the first field, to refuse other versions with a clear message."""

    version: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)
_version_decoder = msgspec.msgpack.Decoder(_Version)


def _levels(book: Book, side: int) -> list[tuple[int, int, int, int, int]]:
    sign = 1 if side == BUY else -1
    levels = book.levels[side]
    rows = []
    for key in reversed(book.keys[side]):
        price = key * sign
        level = levels[price]
        rows.append((price, level.head, level.tail, level.total, level.count))
    return rows


def encode_state(exchange: Exchange) -> bytes:
    """The canonical bytes of the exchange state."""
    end = exchange.next_order_id
    instruments = []
    for symbol in sorted(exchange.books):
        book = exchange.books[symbol]
        instruments.append(_Instrument(
            symbol, book.tick_size, book.lot_size, book.band_bps, book.reference_price,
            book.last_trade_price, book.halted, _levels(book, BUY), _levels(book, SELL),
            list(book.buy_stops), list(book.sell_stops),
        ))
    side_column, price_column, open_column, hidden_column, arrival_column, prev_column, next_column = (
        column[1:end].tolist() for column in exchange._columns
    )
    # Closed orders keep stale prices, arrivals and links in the live columns (clearing
    # them would cost the hot path); the canonical form writes them as 0. The digest
    # sum is recomputed here exactly from the digest weights (`arrival * 2**41 + price`;
    # the exchange keeps the sum modulo 2**128), so the bytes do not depend on the build.
    position = {id(ids): index for index, ids in enumerate(exchange._client_order_ids.values())}
    book_position = {id(exchange.books[symbol]): index for index, symbol in enumerate(sorted(exchange.books))}
    digest_sum = 0
    for index, visible in enumerate(open_column):
        if visible:
            weight = arrival_column[index] * ARRIVAL_WEIGHT + price_column[index]
            digest_sum += weight * (visible + hidden_column[index] * HIDDEN_WEIGHT)
        else:
            price_column[index] = arrival_column[index] = prev_column[index] = next_column[index] = 0
    if (digest_sum - exchange._digest_sum) & DIGEST_SUM_MASK:
        raise InvariantViolation("the incremental digest sum differs from its recomputation from the columns")
    state = _State(
        STATE_FORMAT_VERSION, exchange.last_sequence, exchange.last_timestamp_ns,
        end, exchange.next_trade_id, exchange._arrival_stamp, _int_to_bytes(digest_sum),
        # The id dicts are already canonical: members in order of their first order id,
        # each member's ids in order-id order (both recorded as orders are accepted).
        instruments, exchange._cmd[1:end], exchange._client_order_ids,
        side_column, price_column, open_column, hidden_column, arrival_column, prev_column, next_column,
        exchange.rules_version,
        [position[id(owner)] for owner in exchange._owner[1:end]],
        [book_position[id(book)] for book in exchange._order_book[1:end]],
    )
    return _encoder.encode(state)


def _int_to_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)


def digest_of(data: bytes) -> bytes:
    """The canonical digest of encoded state bytes (blake2b-256)."""
    return hashlib.blake2b(data, digest_size=32).digest()


def canonical_digest(exchange: Exchange) -> bytes:
    return digest_of(encode_state(exchange))


def decode_state(data: bytes, *, book_updates: bool = False) -> Exchange:
    """Rebuild an exchange from `encode_state` bytes; raises SnapshotFormatError."""
    try:
        version = _version_decoder.decode(data).version
    except msgspec.MsgspecError as error:
        raise SnapshotFormatError(f"snapshot state does not decode: {error}") from None
    if version != STATE_FORMAT_VERSION:
        raise SnapshotFormatError(f"snapshot state version {version}, this build reads {STATE_FORMAT_VERSION}")
    try:
        state = _decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise SnapshotFormatError(f"snapshot state does not decode: {error}") from None
    end = state.next_order_id
    columns = (state.side, state.price, state.open, state.hidden, state.arrival, state.prev, state.next)
    if end < 1 or len(state.placed_orders) != end - 1 or any(len(column) != end - 1 for column in columns + (state.owner, state.instrument)):
        raise SnapshotFormatError("snapshot state lists do not match its next order id")
    if state.rules_version not in REPLAYABLE_RULES_VERSIONS:
        raise SnapshotFormatError(
            f"snapshot state applies rules version {state.rules_version}, this build implements {REPLAYABLE_RULES_VERSIONS}"
        )
    exchange = Exchange(book_updates=book_updates, rules_version=state.rules_version)
    exchange.last_sequence = state.last_sequence
    exchange.last_timestamp_ns = state.last_timestamp_ns
    exchange.next_order_id = end
    exchange.next_trade_id = state.next_trade_id
    exchange._arrival_stamp = state.arrival_stamp
    exchange._digest_sum = int.from_bytes(state.digest_sum, "little", signed=True) & DIGEST_SUM_MASK
    if any(arrival < 0 or arrival > state.arrival_stamp for arrival in state.arrival):
        raise SnapshotFormatError("snapshot state holds an arrival stamp outside 0 .. its arrival counter")
    exchange._reserve(end)
    exchange._cmd[1:end] = state.placed_orders
    # New arrays rather than slice assignments: the live ones lend their buffers to the
    # compiled core's typed views, and an array with lent buffers refuses to change.
    tail = array("q", bytes(8 * (exchange._capacity - end)))
    try:
        exchange._columns = tuple([
            array("q", [0]) + array("q", values) + tail
            for values in (state.side, state.price, state.open, state.hidden, state.arrival, state.prev, state.next)
        ])
    except OverflowError:
        raise SnapshotFormatError("snapshot state column value outside 64 bits") from None
    exchange._adopt_columns()
    exchange._client_order_ids = state.client_order_ids
    owners = list(state.client_order_ids.values())
    if any(not 0 <= index < len(owners) for index in state.owner):
        raise SnapshotFormatError("snapshot state names an order's owner outside its members")
    exchange._owner[1:end] = [owners[index] for index in state.owner]
    for instrument in state.instruments:
        book = Book(
            instrument.symbol, instrument.tick_size, instrument.lot_size,
            instrument.band_bps, instrument.reference_price,
        )
        book.last_trade_price = instrument.last_trade_price
        book.halted = instrument.halted
        for side, rows in ((BUY, instrument.bid_levels), (SELL, instrument.ask_levels)):
            levels = book.levels[side]
            keys = book.keys[side]
            for price, head, tail, total, count in rows:
                if not (0 < head < end and 0 < tail < end and count > 0):
                    raise SnapshotFormatError(f"{instrument.symbol}: level {price} links outside the orders")
                levels[price] = Level(head, tail, total, count)
                keys.append(price if side == BUY else -price)
            keys.sort()
        book.buy_stops = [tuple(entry) for entry in instrument.buy_stops]
        book.sell_stops = [tuple(entry) for entry in instrument.sell_stops]
        exchange.books[instrument.symbol] = book
    if any((cmd is None) != (not visible) for cmd, visible in zip(state.placed_orders, state.open)):
        raise SnapshotFormatError("snapshot state holds a command for a closed order or none for an open one")
    unknown = {cmd.symbol for cmd in state.placed_orders if cmd is not None} - exchange.books.keys()
    if unknown:
        raise SnapshotFormatError(f"snapshot orders name unknown symbols {sorted(unknown)}")
    books = [exchange.books[instrument.symbol] for instrument in state.instruments]
    if any(not 0 <= index < len(books) for index in state.instrument):
        raise SnapshotFormatError("snapshot state names an order's instrument outside its instruments")
    exchange._order_book[1:end] = [books[index] for index in state.instrument]
    if any(cmd is not None and cmd.symbol != book.symbol for cmd, book in zip(state.placed_orders, exchange._order_book[1:end])):
        raise SnapshotFormatError("snapshot state names an order's instrument other than its command's")
    return exchange
