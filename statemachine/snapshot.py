"""The canonical encoding of the whole exchange state, and its inverse.

`encode_state(exchange)` gives bytes that depend only on the state, never on the
history that led to it or on the process (dicts are walked in sorted or order-id order,
never in hash order). `canonical_digest(exchange)` is blake2b-256 of those bytes, and
`decode_state(data)` rebuilds an exchange whose future is exactly that of the original:
the same next order and trade ids, the same FIFO order in every level (arrival stamps
included, so the incremental digest agrees too), the same untriggered stops, the same
hidden quantity of icebergs and the same memory of used client order ids.

Layout (msgpack, version 1): one array

    [version, last_sequence, last_timestamp_ns, next_order_id, next_trade_id,
     arrival_stamp, instruments, placed_orders, open_orders]

* instruments: sorted by symbol, each
  `[symbol, tick_size, lot_size, band_bps, reference_price, last_trade_price, halted,
    bid_order_ids, ask_order_ids, stop_order_ids]`, where the bid and ask lists hold the
  resting order ids in priority order (best level first, FIFO inside a level) and the
  stop list holds the untriggered stop ids ascending;
* placed_orders: the `PlaceOrder` command of every accepted order, order id 1 first
  (it carries member, client order id, tif, stp, display quantity: the immutable part);
* open_orders: a flat integer list, seven per open order ascending by id:
  `order_id, status, side, price, visible_qty, hidden_qty, arrival_stamp`.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import msgspec

from statemachine.commands import PlaceOrder
from statemachine.errors import SnapshotFormatError
from statemachine.exchange import (
    ARRIVAL_WEIGHT,
    BUY,
    COLUMN_CHUNK,
    HEAD,
    HIDDEN_WEIGHT,
    PENDING_STOP,
    RESTING,
    SELL,
    STOP_FLAG,
    Book,
    Exchange,
)

STATE_FORMAT_VERSION = 1
_OPEN_ORDER_WIDTH = 7


class _Instrument(msgspec.Struct, array_like=True, gc=False):
    symbol: str
    tick_size: int
    lot_size: int
    band_bps: int
    reference_price: Optional[int]
    last_trade_price: Optional[int]
    halted: bool
    bid_order_ids: list[int]
    ask_order_ids: list[int]
    stop_order_ids: list[int]


class _State(msgspec.Struct, array_like=True):
    version: int
    last_sequence: int
    last_timestamp_ns: int
    next_order_id: int
    next_trade_id: int
    arrival_stamp: int
    instruments: list[_Instrument]
    placed_orders: list[PlaceOrder]
    open_orders: list[int]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)


def _side_order_ids(exchange: Exchange, book: Book, side: int) -> list[int]:
    order_ids = []
    next_column = exchange._next
    sign = 1 if side == BUY else -1
    levels = book.levels[side]
    for key in reversed(book.keys[side]):
        oid = levels[key * sign][HEAD]
        while oid:
            order_ids.append(oid)
            oid = next_column[oid]
    return order_ids


def encode_state(exchange: Exchange) -> bytes:
    """The canonical bytes of the exchange state."""
    instruments = []
    for symbol in sorted(exchange.books):
        book = exchange.books[symbol]
        stop_ids = sorted([oid for _, oid in book.buy_stops] + [oid for _, oid in book.sell_stops])
        instruments.append(_Instrument(
            symbol, book.tick_size, book.lot_size, book.band_bps, book.reference_price,
            book.last_trade_price, book.halted,
            _side_order_ids(exchange, book, BUY), _side_order_ids(exchange, book, SELL), stop_ids,
        ))
    end = exchange.next_order_id
    open_column = exchange._open
    open_orders: list[int] = []
    extend = open_orders.extend
    for oid in range(1, end):
        if open_column[oid]:
            extend((
                oid, exchange.status_of(oid), exchange._side[oid] & 1, exchange._price[oid],
                exchange._open[oid], exchange._hidden[oid], exchange._weight[oid] // ARRIVAL_WEIGHT,
            ))
    state = _State(
        STATE_FORMAT_VERSION, exchange.last_sequence, exchange.last_timestamp_ns,
        exchange.next_order_id, exchange.next_trade_id, exchange._arrival_stamp,
        instruments, exchange._cmd[1:end], open_orders,
    )
    return _encoder.encode(state)


def digest_of(data: bytes) -> bytes:
    """The canonical digest of encoded state bytes (blake2b-256)."""
    return hashlib.blake2b(data, digest_size=32).digest()


def canonical_digest(exchange: Exchange) -> bytes:
    return digest_of(encode_state(exchange))


def decode_state(data: bytes, *, book_updates: bool = False) -> Exchange:
    """Rebuild an exchange from `encode_state` bytes; raises SnapshotFormatError."""
    try:
        state = _decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise SnapshotFormatError(f"snapshot state does not decode: {error}") from None
    if state.version != STATE_FORMAT_VERSION:
        raise SnapshotFormatError(
            f"snapshot state version {state.version}, this build reads {STATE_FORMAT_VERSION}"
        )
    end = state.next_order_id
    if len(state.placed_orders) != end - 1 or len(state.open_orders) % _OPEN_ORDER_WIDTH:
        raise SnapshotFormatError("snapshot state lists do not match its next order id")
    exchange = Exchange(book_updates=book_updates)
    exchange.last_sequence = state.last_sequence
    exchange.last_timestamp_ns = state.last_timestamp_ns
    exchange.next_order_id = end
    exchange.next_trade_id = state.next_trade_id
    exchange._arrival_stamp = state.arrival_stamp
    if end > exchange._capacity:
        chunks = (end - exchange._capacity) // COLUMN_CHUNK + 1
        exchange._grow(chunks * COLUMN_CHUNK)
    for instrument in state.instruments:
        book = Book(
            instrument.symbol, instrument.tick_size, instrument.lot_size,
            instrument.band_bps, instrument.reference_price,
        )
        book.last_trade_price = instrument.last_trade_price
        book.halted = instrument.halted
        exchange.books[instrument.symbol] = book
    client_order_ids = exchange._client_order_ids
    for oid, cmd in enumerate(state.placed_orders, 1):
        if cmd.symbol not in exchange.books:
            raise SnapshotFormatError(f"order {oid} names unknown symbol {cmd.symbol!r}")
        exchange._cmd[oid] = cmd
        exchange._side[oid] = BUY if cmd.side == "buy" else SELL
        ids = client_order_ids.get(cmd.member)
        if ids is None:
            ids = client_order_ids[cmd.member] = {}
        ids[cmd.client_order_id] = oid
    digest_sum = 0
    flat = state.open_orders
    for index in range(0, len(flat), _OPEN_ORDER_WIDTH):
        oid, status, side, price, visible, hidden, arrival = flat[index : index + _OPEN_ORDER_WIDTH]
        if not 0 < oid < end or status not in (RESTING, PENDING_STOP):
            raise SnapshotFormatError(f"snapshot open order {oid} is out of range")
        if side not in (BUY, SELL) or visible <= 0:
            raise SnapshotFormatError(f"snapshot open order {oid} has side {side}, quantity {visible}")
        exchange._side[oid] = side | STOP_FLAG if status == PENDING_STOP else side
        exchange._price[oid] = price
        exchange._open[oid] = visible
        exchange._hidden[oid] = hidden
        weight = arrival * ARRIVAL_WEIGHT + price
        exchange._weight[oid] = weight
        digest_sum += weight * (visible + hidden * HIDDEN_WEIGHT)
    exchange._digest_sum = digest_sum
    for instrument in state.instruments:
        book = exchange.books[instrument.symbol]
        for side, order_ids in ((BUY, instrument.bid_order_ids), (SELL, instrument.ask_order_ids)):
            _link_side(exchange, book, side, order_ids)
        for oid in instrument.stop_order_ids:
            if exchange.status_of(oid) != PENDING_STOP:
                raise SnapshotFormatError(f"snapshot stop {oid} is not a pending stop")
            if exchange._side[oid] & 1 == BUY:
                book.buy_stops.append((exchange._price[oid], oid))
            else:
                book.sell_stops.append((-exchange._price[oid], oid))
        book.buy_stops.sort()
        book.sell_stops.sort()
    return exchange


def _link_side(exchange: Exchange, book: Book, side: int, order_ids: list[int]) -> None:
    levels = book.levels[side]
    keys = book.keys[side]
    previous_level = None
    for oid in order_ids:
        if exchange.status_of(oid) != RESTING or exchange._side[oid] != side:
            raise SnapshotFormatError(f"snapshot order {oid} is linked into the wrong side")
        price = exchange._price[oid]
        level = levels.get(price)
        if level is None:
            level = levels[price] = [oid, oid, 0, 0]
            keys.append(price if side == BUY else -price)
            exchange._prev[oid] = 0
        else:
            if level is not previous_level:
                raise SnapshotFormatError(f"snapshot level {price} is not contiguous")
            tail = level[1]
            exchange._next[tail] = oid
            exchange._prev[oid] = tail
            level[1] = oid
        exchange._next[oid] = 0
        level[2] += exchange._open[oid]
        level[3] += 1
        previous_level = level
    # Levels were visited best first; keys are stored ascending with the best last.
    keys.reverse()
