"""The book invariants, checked by walking the whole state (for tests and audits).

`check_invariants(exchange)` raises `InvariantViolation` naming the first broken rule:

* no book is crossed or locked at rest (best bid < best ask);
* each side's sorted keys are exactly its levels, best last;
* each level's linked list is consistent (prev/next agree, head/tail right), its count
  and visible total equal its orders, and its orders are in FIFO order of arrival;
* every resting order has positive visible quantity, non-negative hidden quantity, and
  hidden quantity only if it is an iceberg; its columns name this book, side and price;
* the id map equals the book: the orders marked resting are exactly the ones linked into
  levels, the orders marked pending-stop exactly the ones in stop lists, and every
  accepted order's client order id maps back to it;
* closed orders hold no quantity, and the incremental digest sum equals its value
  recomputed from scratch (modulo 2**128, as it is kept).

It is O(orders) and never called on the apply path.
"""

from __future__ import annotations

from statemachine.errors import InvariantViolation
from statemachine.exchange import (
    ARRIVAL_WEIGHT,
    BUY,
    CLOSED,
    DIGEST_SUM_MASK,
    HIDDEN_WEIGHT,
    PENDING_STOP,
    RESTING,
    SELL,
    Exchange,
)


def _fail(message: str) -> None:
    raise InvariantViolation(message)


def check_invariants(exchange: Exchange) -> None:
    seen_resting: set[int] = set()
    seen_stops: set[int] = set()
    digest_sum = 0
    side_column, price_column, open_column, hidden_column, arrival_column, prev_column, next_column = exchange._columns
    for symbol, book in exchange.books.items():
        for side in (BUY, SELL):
            levels = book.levels[side]
            keys = book.keys[side]
            sign = 1 if side == BUY else -1
            if keys != sorted(keys):
                _fail(f"{symbol}: side {side} keys are not sorted")
            if sorted(key * sign for key in keys) != sorted(levels):
                _fail(f"{symbol}: side {side} keys do not match its levels")
            for price, level in levels.items():
                count = 0
                total = 0
                previous = 0
                previous_arrival = -1
                oid = level.head
                while oid:
                    if oid in seen_resting:
                        _fail(f"{symbol}: order {oid} is linked twice")
                    seen_resting.add(oid)
                    if exchange.status_of(oid) != RESTING:
                        _fail(f"{symbol}: order {oid} is in a level but not marked resting")
                    if exchange._cmd[oid].symbol != symbol or side_column[oid] != side or price_column[oid] != price:
                        _fail(f"{symbol}: order {oid} columns disagree with its level {price}")
                    if prev_column[oid] != previous:
                        _fail(f"{symbol}: order {oid} prev link is {prev_column[oid]}, expected {previous}")
                    visible = open_column[oid]
                    hidden = hidden_column[oid]
                    if visible <= 0 or hidden < 0:
                        _fail(f"{symbol}: order {oid} has quantity visible={visible} hidden={hidden}")
                    if hidden and exchange._cmd[oid].display_qty is None:
                        _fail(f"{symbol}: order {oid} hides quantity but is not an iceberg")
                    arrival = arrival_column[oid]
                    weight = arrival * ARRIVAL_WEIGHT + price
                    if arrival <= previous_arrival:
                        _fail(f"{symbol}: level {price} is not in FIFO order at order {oid}")
                    previous_arrival = arrival
                    digest_sum += weight * (visible + hidden * HIDDEN_WEIGHT)
                    count += 1
                    total += visible
                    previous = oid
                    oid = next_column[oid]
                if level.tail != previous:
                    _fail(f"{symbol}: level {price} tail is {level.tail}, expected {previous}")
                if count == 0 or count != level.count or total != level.total:
                    _fail(
                        f"{symbol}: level {price} says {level.count} orders / {level.total} lots, "
                        f"holds {count} / {total}"
                    )
        bid_keys, ask_keys = book.keys
        if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
            _fail(f"{symbol}: book crossed at rest: bid {bid_keys[-1]} >= ask {-ask_keys[-1]}")
        for stops, sign in ((book.buy_stops, 1), (book.sell_stops, -1)):
            if stops != sorted(stops):
                _fail(f"{symbol}: stop list is not sorted")
            for keyed_price, oid in stops:
                if exchange.status_of(oid) != PENDING_STOP or price_column[oid] != keyed_price * sign:
                    _fail(f"{symbol}: stop {oid} columns disagree with its stop list")
                if open_column[oid] <= 0:
                    _fail(f"{symbol}: stop {oid} has no quantity")
                seen_stops.add(oid)
                digest_sum += (arrival_column[oid] * ARRIVAL_WEIGHT + keyed_price * sign) * open_column[oid]
    for oid in range(1, exchange.next_order_id):
        status = exchange.status_of(oid)
        if status == RESTING and oid not in seen_resting:
            _fail(f"order {oid} is marked resting but is in no level")
        if status == PENDING_STOP and oid not in seen_stops:
            _fail(f"order {oid} is marked pending-stop but is in no stop list")
        if status == CLOSED and (open_column[oid] or hidden_column[oid]):
            _fail(f"closed order {oid} still holds quantity")
        cmd = exchange._cmd[oid]
        owner = exchange._owner[oid]
        if not any(ids is owner for ids in exchange._client_order_ids.values()):
            _fail(f"order {oid}: its owner is not a member's id dict")
        if status == CLOSED:
            if cmd is not None:
                _fail(f"closed order {oid} still holds its command")
            continue
        if exchange._order_book[oid] is not exchange.books.get(cmd.symbol):
            _fail(f"order {oid}: its book is not the book of {cmd.symbol!r}")
        if exchange._client_order_ids.get(cmd.member) is not owner:
            _fail(f"order {oid}: its owner is not the id dict of {cmd.member!r}")
        if exchange._client_order_ids.get(cmd.member, {}).get(cmd.client_order_id) != oid:
            _fail(f"order {oid}: client order id {cmd.client_order_id!r} does not map back to it")
    mapped = sum(len(ids) for ids in exchange._client_order_ids.values())
    if mapped != exchange.next_order_id - 1:
        _fail(f"{mapped} client order ids are mapped for {exchange.next_order_id - 1} accepted orders")
    if (digest_sum - exchange._digest_sum) & DIGEST_SUM_MASK:
        _fail("incremental digest sum differs from its recomputation")
