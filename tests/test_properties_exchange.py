"""Property-based tests of the exchange state machine on random command streams.

The streams come from tests/strategies.py (two instruments, three members, narrow
prices, every order type / tif / STP mode, icebergs, stops, cancels and replaces of ids
that usually exist, occasional invalid values). Properties:

* the book invariants hold after every command, and no untriggered stop is left whose
  condition holds;
* quantity is conserved per order (the ledger below), trades balance per instrument
  and every trade executes at its maker's resting price;
* replaying the same stream in a fresh exchange gives byte-identical events and the
  same digests;
* a snapshot (encode_state / decode_state) taken at any point, then the rest of the
  stream, gives the same events and digests as the uninterrupted run;
* the event-ordering rules of RULES.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine import Exchange, check_invariants
from statemachine.codec import encode_events_jsonl
from statemachine.commands import (
    AddInstrument,
    CancelOrder,
    EndOfDay,
    HaltInstrument,
    MassCancel,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
)
from statemachine.events import (
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    StopTriggered,
    TradeExecuted,
)
from statemachine.snapshot import canonical_digest, decode_state, encode_state

import strategies as S

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW_SETTINGS = settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

STREAMS = S.command_streams(max_commands=60)


def timestamp(seq: int) -> int:
    return 1_700_000_000_000_000_000 + seq * 1000


def run(stream, exchange: Optional[Exchange] = None, first_seq: int = 1, check: bool = False):
    """Apply `stream`; return (exchange, list of per-command event lists)."""
    exchange = exchange or Exchange()
    per_command = []
    for seq, command in enumerate(stream, first_seq):
        per_command.append(exchange.apply(seq, timestamp(seq), command))
        if check:
            check_invariants(exchange)
    return exchange, per_command


def flat(per_command) -> list:
    return [event for events in per_command for event in events]


# ---------------------------------------------------------------------- invariants


def assert_no_triggerable_stop(exchange: Exchange) -> None:
    """RULES.md: after a command, every stop whose condition holds has been triggered."""
    for symbol, book in exchange.books.items():
        last = book.last_trade_price
        for stop in exchange.stops(symbol):
            if last is None:
                continue
            if stop["side"] == "buy":
                assert last < stop["stop_price"], (symbol, stop, last)
            else:
                assert last > stop["stop_price"], (symbol, stop, last)


def check_stream_invariants(stream) -> None:
    exchange = Exchange()
    for seq, command in enumerate(stream, 1):
        exchange.apply(seq, timestamp(seq), command)
        check_invariants(exchange)
        assert_no_triggerable_stop(exchange)


@SETTINGS
@given(STREAMS)
def test_invariants_hold_after_every_command(stream):
    check_stream_invariants(stream)


# ---------------------------------------------------------------------- quantity ledger


@dataclass
class Entry:
    """What the events say about one order."""

    qty: int  # quantity at acceptance
    side: str
    symbol: str
    member: str
    stp: str
    price: Optional[int]  # its limit price (resting price), None for market / stop
    open: int  # open quantity the events imply (visible + hidden, or the stop's qty)
    pending_stop: bool
    closed: bool = False
    filled: int = 0
    cancelled: int = 0  # remaining_qty of its cancel
    replace_delta: int = 0  # sum over replaces of (new qty - open qty before it)
    decremented: int = 0  # removed by STP decrement (no event of its own)


@dataclass
class Ledger:
    entries: dict = field(default_factory=dict)
    bought: dict = field(default_factory=dict)  # symbol -> lots bought
    sold: dict = field(default_factory=dict)

    def command(self, exchange: Exchange, command, events: list) -> list[int]:
        """Account for one command's events, reconcile with the engine's state.

        Returns the orders that acted as incoming orders in this command, in order.
        """
        takers: list[int] = []  # orders that acted as incoming orders, in order
        for event in events:
            if isinstance(event, OrderAccepted):
                assert isinstance(command, PlaceOrder)
                assert event.order_id not in self.entries
                self.entries[event.order_id] = Entry(
                    qty=event.qty, side=event.side, symbol=event.symbol, member=event.member,
                    stp=command.stp or "cancel_newest", price=event.price, open=event.qty,
                    pending_stop=command.order_type in ("stop", "stop_limit"),
                )
                if not self.entries[event.order_id].pending_stop:
                    takers.append(event.order_id)
            elif isinstance(event, OrderReplaced):
                entry = self.entries[event.order_id]
                assert not entry.closed and not entry.pending_stop
                assert event.qty > 0
                if event.priority_kept:
                    assert event.price == entry.price and event.qty <= entry.open, (event, entry)
                else:
                    assert event.price != entry.price or event.qty > entry.open, (event, entry)
                    takers.append(event.order_id)
                entry.replace_delta += event.qty - entry.open
                entry.open = event.qty
                entry.price = event.price
            elif isinstance(event, StopTriggered):
                entry = self.entries[event.order_id]
                assert entry.pending_stop and not entry.closed
                entry.pending_stop = False
                takers.append(event.order_id)
            elif isinstance(event, TradeExecuted):
                maker = self.entries[event.maker_order_id]
                taker = self.entries[event.taker_order_id]
                assert event.qty > 0
                assert takers and event.taker_order_id == takers[-1], "taker is the current incoming order"
                assert not maker.closed and not taker.closed and not maker.pending_stop
                assert maker.side != taker.side and maker.symbol == taker.symbol == event.symbol
                assert event.aggressor == taker.side
                assert event.maker_member == maker.member and event.taker_member == taker.member
                assert event.price == maker.price, f"trade {event.trade_id} not at the maker's price {maker.price}"
                if taker.price is not None:
                    assert (event.price <= taker.price) if taker.side == "buy" else (event.price >= taker.price)
                assert maker.open >= event.qty and taker.open >= event.qty, (event, maker, taker)
                for entry in (maker, taker):
                    entry.open -= event.qty
                    entry.filled += event.qty
                    book = self.bought if entry.side == "buy" else self.sold
                    book[entry.symbol] = book.get(entry.symbol, 0) + event.qty
            elif isinstance(event, OrderCancelled):
                entry = self.entries[event.order_id]
                assert not entry.closed
                assert 0 <= event.remaining_qty <= entry.open, (event, entry)
                if event.reason != "stp":
                    assert event.remaining_qty > 0, event
                entry.decremented += entry.open - event.remaining_qty
                entry.cancelled += event.remaining_qty
                entry.open = 0
                entry.closed = True
            else:
                assert isinstance(event, OrderRejected), event
        # Reconcile with the engine: what rests must be what the events imply, except
        # for quantity removed by `decrement`, which emits no event while it leaves some.
        for oid, entry in self.entries.items():
            state = exchange.order_state(oid)
            if entry.closed:
                assert state["status"] == "closed", (oid, state)
                continue
            if state["status"] == "closed":
                actual = 0
                entry.closed = True
            else:
                assert state["status"] == ("pending_stop" if entry.pending_stop else "resting"), (oid, state, entry)
                actual = state["visible_qty"] + state["hidden_qty"]
                assert actual > 0
                if not entry.pending_stop:
                    assert state["price"] == entry.price, (oid, state, entry)
            assert actual <= entry.open, (oid, state, entry)
            entry.decremented += entry.open - actual
            entry.open = actual
        return takers


def _decrement_balance(ledger: Ledger, before: dict, takers: list[int]) -> None:
    """Per command, quantity removed without a trade (STP decrement) balances.

    Each decrement takes the same amount from the incoming order and from one resting
    order of the same member, so what the incoming orders lost equals what the resting
    ones lost. With several incoming orders in one command (triggered stops) an order
    can be on both sides, so only the inequality is certain there.
    """
    removed = {
        oid: entry.decremented - before.get(oid, 0)
        for oid, entry in ledger.entries.items()
        if entry.decremented != before.get(oid, 0)
    }
    if not removed:
        return
    decrement_takers = {oid for oid in takers if ledger.entries[oid].stp == "decrement"}
    assert decrement_takers, f"quantity vanished without a decrement taker: {removed}"
    taker_members = {ledger.entries[oid].member for oid in decrement_takers}
    for oid in removed:
        assert removed[oid] > 0
        assert ledger.entries[oid].member in taker_members, (oid, removed)
    total = sum(removed.values())
    taker_side = sum(removed.get(oid, 0) for oid in decrement_takers)
    assert total % 2 == 0, removed
    if len(takers) == 1:
        # One incoming order: what it lost equals what the resting orders lost.
        assert 2 * taker_side == total, removed
    else:
        assert 2 * taker_side >= total, removed


def check_ledger(stream) -> None:
    exchange = Exchange()
    ledger = Ledger()
    for seq, command in enumerate(stream, 1):
        events = exchange.apply(seq, timestamp(seq), command)
        before = {oid: entry.decremented for oid, entry in ledger.entries.items()}
        takers = ledger.command(exchange, command, events)
        _decrement_balance(ledger, before, takers)
    # The whole-life identity of every order.
    for oid, entry in ledger.entries.items():
        assert entry.qty + entry.replace_delta == (
            entry.filled + entry.cancelled + entry.open + entry.decremented
        ), (oid, entry)
        state = exchange.order_state(oid)
        assert state["visible_qty"] + state["hidden_qty"] == entry.open, (oid, state, entry)
    for symbol in set(ledger.bought) | set(ledger.sold):
        assert ledger.bought.get(symbol, 0) == ledger.sold.get(symbol, 0), symbol


@SETTINGS
@given(STREAMS)
def test_quantity_is_conserved_and_trades_balance(stream):
    check_ledger(stream)


# ---------------------------------------------------------------------- replay and snapshots


def outcome(exchange: Exchange, per_command) -> tuple:
    return (
        encode_events_jsonl(flat(per_command)),
        exchange.state_digest(),
        canonical_digest(exchange),
        encode_state(exchange),
    )


def check_replay(stream) -> None:
    first = outcome(*run(stream))
    second = outcome(*run(stream))
    assert first[0] == second[0], "event bytes differ between two runs of one stream"
    assert first[1:] == second[1:], "digests differ between two runs of one stream"


@SETTINGS
@given(STREAMS)
def test_replay_gives_identical_events_and_digests(stream):
    check_replay(stream)


def check_snapshot_restore(stream, cut: int) -> None:
    full_exchange, full_events = run(stream)
    head, tail = stream[:cut], stream[cut:]
    original, _ = run(head)
    data = encode_state(original)
    restored = decode_state(data)
    check_invariants(restored)
    assert encode_state(restored) == data, "re-encoding a restored exchange changes the bytes"
    assert restored.state_digest() == original.state_digest()
    assert canonical_digest(restored) == canonical_digest(original)
    assert restored.last_sequence == cut
    for symbol in original.books:
        assert restored.orders(symbol) == original.orders(symbol)
        assert restored.depth(symbol) == original.depth(symbol)
        assert restored.stops(symbol) == original.stops(symbol)
    _, tail_events = run(tail, restored, first_seq=cut + 1, check=True)
    assert encode_events_jsonl(flat(tail_events)) == encode_events_jsonl(flat(full_events[cut:]))
    assert restored.state_digest() == full_exchange.state_digest()
    assert canonical_digest(restored) == canonical_digest(full_exchange)
    assert encode_state(restored) == encode_state(full_exchange)


@st.composite
def streams_with_cut(draw):
    stream = draw(STREAMS)
    return stream, draw(st.integers(0, len(stream)))


@SETTINGS
@given(streams_with_cut())
def test_snapshot_then_replay_equals_uninterrupted_run(stream_and_cut):
    check_snapshot_restore(*stream_and_cut)


# ---------------------------------------------------------------------- event ordering

# The incoming order's own final cancel; STP cancels happen "as they happen".
FINAL_REASONS = {"ioc", "fok", "no_liquidity", "price_band"}


def check_event_ordering(stream) -> None:
    exchange = Exchange()
    next_order_id = 1
    next_trade_id = 1
    traded_symbols: set[str] = set()
    for seq, command in enumerate(stream, 1):
        events = exchange.apply(seq, timestamp(seq), command)
        assert all(event.seq == seq for event in events)
        rejected = [event for event in events if isinstance(event, OrderRejected)]
        if rejected:
            assert len(events) == 1, "a rejected command changes nothing and emits only its rejection"
            rejection = rejected[0]
            if isinstance(command, (PlaceOrder, CancelOrder, ReplaceOrder, MassCancel)):
                assert rejection.member == command.member
            if isinstance(command, (PlaceOrder, CancelOrder, ReplaceOrder)):
                assert rejection.client_order_id == command.client_order_id
            assert (rejection.order_id is not None) == (rejection.reason == "duplicate_client_order_id")
        if isinstance(command, PlaceOrder):
            assert events and isinstance(events[0], (OrderAccepted, OrderRejected))
        elif isinstance(command, ReplaceOrder):
            assert events and isinstance(events[0], (OrderReplaced, OrderRejected))
        elif isinstance(command, CancelOrder):
            assert len(events) == 1 and isinstance(events[0], (OrderCancelled, OrderRejected))
            if isinstance(events[0], OrderCancelled):
                assert events[0].reason == "user"
        elif isinstance(command, (MassCancel, EndOfDay)):
            assert all(isinstance(e, OrderCancelled) for e in events) or rejected
            ids = [e.order_id for e in events if isinstance(e, OrderCancelled)]
            assert ids == sorted(ids), "mass cancels and expiries go in ascending order id"
            if isinstance(command, EndOfDay):
                assert all(e.reason == "expired" for e in events)
            elif not rejected:
                assert all(e.reason == "mass_cancel" for e in events)
        elif isinstance(command, (AddInstrument, HaltInstrument, ResumeInstrument)):
            assert events == [] or rejected, "admin commands emit no success event"
        # Order ids and trade ids: 1..n without gaps, in order of appearance.
        for event in events:
            if isinstance(event, OrderAccepted):
                assert event.order_id == next_order_id
                next_order_id += 1
            elif isinstance(event, TradeExecuted):
                assert event.trade_id == next_trade_id
                next_trade_id += 1
        # Phases: the incoming order (accepted / replaced), then each triggered stop.
        current: Optional[int] = None  # the order matching now
        finished: set[int] = set()  # incoming orders whose final cancel was emitted
        for index, event in enumerate(events):
            if isinstance(event, (OrderAccepted, OrderReplaced)):
                assert index == 0, "accepted / replaced comes first"
                current = event.order_id
            elif isinstance(event, StopTriggered):
                assert event.order_id not in finished
                assert any(isinstance(e, TradeExecuted) and e.symbol == event.symbol for e in events[:index]) or (
                    event.symbol in traded_symbols
                ), "nothing triggers before the instrument's first trade"
                current = event.order_id
            elif isinstance(event, TradeExecuted):
                assert current is not None and event.taker_order_id == current, (
                    "a trade's taker is the order matching now (a triggered order's fills follow its trigger)"
                )
                assert current not in finished
                assert event.maker_order_id not in finished
            elif isinstance(event, OrderCancelled):
                if event.reason in FINAL_REASONS:
                    assert event.order_id == current, "only the incoming order gets ioc/fok/no_liquidity/price_band"
                    finished.add(current)
                elif event.reason == "stp" and event.order_id == current:
                    finished.add(current)
        for event in events:
            if isinstance(event, TradeExecuted):
                traded_symbols.add(event.symbol)


@SETTINGS
@given(STREAMS)
def test_event_ordering_rules(stream):
    check_event_ordering(stream)


# ---------------------------------------------------------------------- slow soak


@pytest.mark.slow
@SLOW_SETTINGS
@given(streams_with_cut())
def test_all_stream_properties_slow(stream_and_cut):
    stream, cut = stream_and_cut
    check_stream_invariants(stream)
    check_ledger(stream)
    check_replay(stream)
    check_snapshot_restore(stream, cut)
    check_event_ordering(stream)


def test_a_snapshot_is_written_and_restored_past_two_to_the_23_arrivals():
    # Snapshot format 3 stored arrival * 2**41 + price, which no longer fit a msgpack
    # integer once 2**23 orders had entered levels: no snapshot could be written.
    exchange = Exchange()
    exchange.apply(1, 0, AddInstrument("AAA", tick_size=1, lot_size=1, band_bps=0, reference_price=None))
    exchange._arrival_stamp = 1 << 30
    sequence = 1
    for index, (side, price) in enumerate((("buy", 100), ("sell", 105), ("buy", 100), ("sell", 2**40))):
        sequence += 1
        exchange.apply(sequence, 0, PlaceOrder("M1", f"c{index}", "AAA", side, "limit", 5 + index, price=price))
    data = encode_state(exchange)
    restored = decode_state(data)
    assert encode_state(restored) == data
    assert restored.state_digest() == exchange.state_digest()
    # The FIFO position travels with the stamp: the next order at 100 queues behind both.
    sequence += 1
    command = PlaceOrder("M2", "taker", "AAA", "sell", "limit", 8, price=100)
    assert exchange.apply(sequence, 0, command) == restored.apply(sequence, 0, command)
    assert canonical_digest(restored) == canonical_digest(exchange)
