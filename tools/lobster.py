"""Validate the matching engine against real NASDAQ order flow reconstructed by LOBSTER.

LOBSTER (lobsterdata.com) turns NASDAQ TotalView-ITCH into two CSV files of the same
length: a message file (one event that changed the top N levels per line) and an
orderbook file (the top N levels after that event). This module replays the messages
through `statemachine.Exchange` as ordinary engine commands and, after every message,
compares the engine's top N levels with the orderbook row. For every execution of a
visible order it also checks that the engine's price-time priority (FIFO) picks the
resting order NASDAQ says it executed.

How a message becomes engine commands (docs/LOBSTER.md has the full method):

====  ================================  =============================================
type  LOBSTER meaning                   engine command(s)
====  ================================  =============================================
1     new limit order                   place limit GTC, post-only (it must rest)
2     partial cancel                    replace: same price, quantity down (keeps priority)
3     delete                            cancel
4     execution of a visible order      place an IOC limit order on the other side, of
                                        the executed size, at the executed price
5     execution of a hidden order       nothing (the visible book does not change)
7     trading halt / quoting / resume   halt (price -1), resume (price 0 or 1)
====  ================================  =============================================

Every order belongs to one member, ``NASDAQ``, and carries STP mode ``none``: the public
feed does not say who owns an order, so self-trade prevention cannot be modelled, and
with ``none`` it can never interfere with matching.

The file only shows what happens inside its depth window, and orders resting before the
sample began are unknown. The replay therefore:

* seeds the book, before the first message, with the state the first orderbook row
  implies (row 1 with message 1 undone), one anonymous order per level;
* handles a cancel or execution naming an order id the engine does not hold by taking
  the quantity off anonymous liquidity at that price ("unknown orders");
* checks each execution against the engine's own queue at that price (`orders`, L3)
  before sending the incoming order: when FIFO would fill the order NASDAQ named, the
  IOC order is sent and its trade events must name that order; when it would fill
  another, the disagreement is counted and classified and NASDAQ's outcome is applied
  with resync commands instead (letting the engine fill the wrong order would leave a
  book no later message could be applied to);
* re-synchronises the engine to the orderbook row wherever they differ, with real
  engine commands (anonymous place, replace down, cancel) that are counted and
  recorded as resync commands, and classifies the row: the difference lies only
  outside the previous row's window (the file could not show it) or inside it (an
  interior mismatch).

When the file says a level lost quantity without naming the order, the replay has to
choose which engine order to shrink. With ``lookahead`` (the default) it reads the whole
message file first and spares the orders that a later message still cancels or
executes: the file proves those were still resting. Without it every known order counts
as possibly gone. Look-ahead informs only these resync choices, never a FIFO verdict.

Nothing here reads a float: times are parsed with `decimal` to integer nanoseconds,
prices (dollars x 10000) are used directly as integer ticks, sizes as integer lots.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from statemachine import (
    AddInstrument,
    CancelOrder,
    Exchange,
    HaltInstrument,
    OrderAccepted,
    OrderRejected,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
    TradeExecuted,
)
from statemachine.codec import command_to_builtins

# LOBSTER pads a side with fewer than N occupied levels with these dummy prices (size 0).
DUMMY_ASK_PRICE = 9999999999
DUMMY_BID_PRICE = -9999999999

NS_PER_SECOND = 10**9
MEMBER = "NASDAQ"
BUY = "buy"
SELL = "sell"

# Window bounds in "key space" (bids: price, asks: -price; a price is inside the window
# when its key is >= the bound). A side showing fewer than N levels shows all of them,
# so its bound lets every price in.
EVERYTHING_INSIDE = -(10**13)

MESSAGE_TYPES = {
    1: "new_order",
    2: "partial_cancel",
    3: "delete",
    4: "visible_execution",
    5: "hidden_execution",
    7: "trading_halt",
}

# Origins of engine commands.
ORIGIN_SETUP = "setup"
ORIGIN_SEED = "seed"
ORIGIN_MESSAGE = "message"
ORIGIN_RESYNC = "resync"


class LobsterFormatError(ValueError):
    """A LOBSTER file that does not follow the format; the message names file and line."""


class ReplayError(RuntimeError):
    """The replay could not keep the engine in step with the file (a bug, not a mismatch)."""


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class Message:
    """One line of a LOBSTER message file (``line`` is 1-based)."""

    line: int
    time_ns: int
    kind: int
    order_id: int
    size: int
    price: int
    direction: int

    @property
    def side(self) -> str:
        """The side of the order the message is about (for type 4: the resting order)."""
        return BUY if self.direction == 1 else SELL

    def describe(self) -> str:
        name = MESSAGE_TYPES.get(self.kind, f"type {self.kind}")
        return (
            f"line {self.line}: {name} id {self.order_id} {self.side} "
            f"{self.size} @ {self.price}"
        )


@dataclass(frozen=True, slots=True)
class BookRow:
    """One line of a LOBSTER orderbook file: occupied levels, best first, padding dropped."""

    line: int
    bids: tuple
    asks: tuple


def parse_seconds_to_ns(text: str) -> int:
    """LOBSTER time (decimal seconds after midnight) -> integer nanoseconds, exactly.

    Parsed with `decimal`, never float. A few LOBSTER times carry float noise beyond the
    nanosecond (``35821.088778456004``); they are rounded half-even to the nanosecond.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise LobsterFormatError(f"time {text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise LobsterFormatError(f"time {text!r} is not a non-negative number of seconds")
    return int((value * NS_PER_SECOND).to_integral_value(rounding=ROUND_HALF_EVEN))


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LobsterFormatError(f"{what} {text.strip()!r} is not an integer") from None


def parse_message_line(text: str, line: int) -> Message:
    """One message-file line -> Message. Raises LobsterFormatError naming the line."""
    fields = text.split(",")
    try:
        if len(fields) != 6:
            raise LobsterFormatError(f"expected 6 comma-separated fields, found {len(fields)}")
        kind = _integer(fields[1], "type")
        if kind not in MESSAGE_TYPES:
            raise LobsterFormatError(f"unknown message type {kind}")
        direction = _integer(fields[5], "direction")
        if direction not in (1, -1):
            raise LobsterFormatError(f"direction {direction} is neither 1 nor -1")
        return Message(
            line=line,
            time_ns=parse_seconds_to_ns(fields[0]),
            kind=kind,
            order_id=_integer(fields[2], "order id"),
            size=_integer(fields[3], "size"),
            price=_integer(fields[4], "price"),
            direction=direction,
        )
    except LobsterFormatError as error:
        raise LobsterFormatError(f"line {line}: {error}") from None


def parse_orderbook_line(text: str, line: int, levels: int) -> BookRow:
    """One orderbook-file line -> the first `levels` occupied levels of each side."""
    fields = text.split(",")
    if len(fields) % 4:
        raise LobsterFormatError(
            f"line {line}: expected 4 fields per level, found {len(fields)} fields"
        )
    used = fields[: 4 * levels]
    try:
        values = list(map(int, used))
    except ValueError:
        for text_value in used:
            _integer(text_value, f"line {line}: orderbook value")
        raise
    asks = [
        (price, size) for price, size in zip(values[0::4], values[1::4])
        if size > 0 and price != DUMMY_ASK_PRICE
    ]
    bids = [
        (price, size) for price, size in zip(values[2::4], values[3::4])
        if size > 0 and price != DUMMY_BID_PRICE
    ]
    return BookRow(line=line, bids=tuple(bids), asks=tuple(asks))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "r", encoding="ascii", newline="") as handle:
        for number, text in enumerate(handle, 1):
            text = text.strip()
            if text:
                yield number, text


def read_messages(path: Path) -> Iterator[Message]:
    """The messages of a LOBSTER message file, in order."""
    for number, text in _lines(path):
        try:
            yield parse_message_line(text, number)
        except LobsterFormatError as error:
            raise LobsterFormatError(f"{path}: {error}") from None


def orderbook_levels(path: Path) -> int:
    """How many levels a LOBSTER orderbook file holds (from its first line)."""
    for number, text in _lines(path):
        count = len(text.split(","))
        if count % 4:
            raise LobsterFormatError(
                f"{path}: line {number}: expected 4 fields per level, found {count} fields"
            )
        return count // 4
    raise LobsterFormatError(f"{path}: the orderbook file is empty")


def read_orderbook(path: Path, levels: int) -> Iterator[BookRow]:
    """The rows of a LOBSTER orderbook file, each cut to its first `levels` levels."""
    width = None
    for number, text in _lines(path):
        try:
            count = len(text.split(","))
            if width is None:
                width = count
            elif count != width:
                raise LobsterFormatError(
                    f"line {number}: {count} fields where the first line has {width}"
                )
            yield parse_orderbook_line(text, number, levels)
        except LobsterFormatError as error:
            raise LobsterFormatError(f"{path}: {error}") from None


def symbol_from_filename(path: Path) -> str:
    """LOBSTER names files TICKER_date_start_end_kind_levels.csv; the ticker is the symbol."""
    ticker = Path(path).name.split("_", 1)[0]
    return ticker if ticker and ticker.isalnum() else "LOBSTER"


# ---------------------------------------------------------------------------- windows


def _price_key(side: str, price: int) -> int:
    return price if side == BUY else -price


def window_bound(side: str, levels_shown: tuple | list, depth: int) -> int:
    """The key-space bound of one side's window: prices with key >= bound are inside.

    A side showing all `depth` levels reaches down to its worst price; a side showing
    fewer shows every order on that side, so nothing is outside it.
    """
    if len(levels_shown) >= depth:
        return _price_key(side, levels_shown[depth - 1][0])
    return EVERYTHING_INSIDE


class WindowHistory:
    """Remembers how far the file's window reached at every row.

    Answers "was this price inside the window at every row since row r?" in
    O(log rows): per side it keeps the suffix maxima of the bound (a price stayed
    inside over rows r..now exactly when its key is >= the largest bound over them).
    """

    def __init__(self) -> None:
        self._rows = {BUY: [], SELL: []}
        self._bounds = {BUY: [], SELL: []}

    def record(self, row: int, bid_bound: int, ask_bound: int) -> None:
        for side, bound in ((BUY, bid_bound), (SELL, ask_bound)):
            rows = self._rows[side]
            bounds = self._bounds[side]
            while bounds and bounds[-1] <= bound:
                bounds.pop()
                rows.pop()
            rows.append(row)
            bounds.append(bound)

    def stayed_inside(self, side: str, price: int, since_row: int) -> bool:
        rows = self._rows[side]
        index = bisect_left(rows, since_row)
        if index == len(rows):
            return True
        return _price_key(side, price) >= self._bounds[side][index]


# ---------------------------------------------------------------------------- report


@dataclass
class FifoTally:
    """Executions checked and how many FIFO agreed on."""

    total: int = 0
    consistent: int = 0

    def add(self, consistent: bool) -> None:
        self.total += 1
        self.consistent += consistent

    def as_dict(self) -> dict:
        return {"total": self.total, "fifo_consistent": self.consistent, "pct": percent(self.consistent, self.total)}


def percent(part: int, whole: int) -> Optional[float]:
    """A percentage for people, rounded to 2 decimals (None when there is nothing to count).

    Reporting only; no decision of the replay reads it.
    """
    if not whole:
        return None
    return round(part * 100 / whole, 2)


@dataclass
class ValidationReport:
    """Everything a validation run measured; `as_dict` is the --json output."""

    symbol: str
    levels: int
    message_file: str = ""
    orderbook_file: str = ""
    lookahead: bool = True
    rows: int = 0
    rows_exact: int = 0
    rows_outside_window: int = 0
    rows_interior: int = 0
    executions_all: FifoTally = field(default_factory=FifoTally)
    executions_known: FifoTally = field(default_factory=FifoTally)
    executions_verifiable: FifoTally = field(default_factory=FifoTally)
    messages_by_type: Counter = field(default_factory=Counter)
    unknown_order_ids: set = field(default_factory=set)
    unknown_order_messages: Counter = field(default_factory=Counter)
    commands: Counter = field(default_factory=Counter)
    resync_commands_by_reason: Counter = field(default_factory=Counter)
    mismatch_classes: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "levels": self.levels,
            "message_file": self.message_file,
            "orderbook_file": self.orderbook_file,
            "lookahead": self.lookahead,
            "rows": self.rows,
            "rows_exact": self.rows_exact,
            "rows_exact_pct": percent(self.rows_exact, self.rows),
            "rows_differing_only_outside_previous_window": self.rows_outside_window,
            "rows_with_interior_mismatch": self.rows_interior,
            "executions": {
                "all": self.executions_all.as_dict(),
                "known_id": self.executions_known.as_dict(),
                "verifiable": self.executions_verifiable.as_dict(),
            },
            "messages_by_type": {
                MESSAGE_TYPES[kind]: count for kind, count in sorted(self.messages_by_type.items())
            },
            "unknown_orders": {
                "distinct_ids": len(self.unknown_order_ids),
                "messages": dict(sorted(self.unknown_order_messages.items())),
            },
            "engine_commands": {
                "total": sum(self.commands.values()),
                **dict(sorted(self.commands.items())),
                "resync_by_reason": dict(sorted(self.resync_commands_by_reason.items())),
            },
            "mismatch_classes": dict(sorted(self.mismatch_classes.items())),
            "examples": {name: list(items) for name, items in sorted(self.examples.items())},
        }

    def format_text(self, examples_shown: int = 8) -> str:
        """A short human-readable table."""

        def line(label: str, part: int, whole: int) -> str:
            pct = percent(part, whole)
            shown = "-" if pct is None else f"{pct:.2f}%"
            return f"  {label:<44} {part:>7} / {whole:<7} {shown:>8}"

        out = [
            f"LOBSTER validation: {self.symbol}, {self.levels} levels, {self.rows} rows"
            + ("" if self.lookahead else ", without look-ahead"),
            f"  messages {self.message_file}",
            f"  orderbook {self.orderbook_file}",
            "rows",
            line("match exactly", self.rows_exact, self.rows),
            line("differ only outside the previous window", self.rows_outside_window, self.rows),
            line("interior mismatch", self.rows_interior, self.rows),
            "type-4 executions where FIFO picks NASDAQ's order",
            line("all", self.executions_all.consistent, self.executions_all.total),
            line("known id", self.executions_known.consistent, self.executions_known.total),
            line("verifiable", self.executions_verifiable.consistent, self.executions_verifiable.total),
            "counts",
            "  messages: " + ", ".join(
                f"{MESSAGE_TYPES[kind]} {count}" for kind, count in sorted(self.messages_by_type.items())
            ),
            f"  unknown orders: {len(self.unknown_order_ids)} ids in "
            f"{sum(self.unknown_order_messages.values())} messages",
            "  engine commands: " + ", ".join(
                f"{origin} {count}" for origin, count in sorted(self.commands.items())
            ),
        ]
        if self.resync_commands_by_reason:
            out.append("  resync commands: " + ", ".join(
                f"{reason} {count}" for reason, count in sorted(self.resync_commands_by_reason.items())
            ))
        if self.mismatch_classes:
            out.append("mismatch classes")
            for name, count in sorted(self.mismatch_classes.items(), key=lambda item: (-item[1], item[0])):
                out.append(f"  {name:<52} {count:>7}")
        shown = 0
        if self.examples and examples_shown:
            out.append("examples")
            for name, items in sorted(self.examples.items()):
                if shown >= examples_shown:
                    break
                out.append(f"  [{name}] {items[0]}")
                shown += 1
        return "\n".join(out)


# ---------------------------------------------------------------------------- replay


CommandSink = Callable[[dict], None]


class LobsterReplay:
    """Drives one Exchange from a LOBSTER message stream and checks it row by row.

    `run(messages, rows)` returns a ValidationReport. `command_sink`, if given, receives
    every engine command applied, as a scenario-format dict (RULES.md) with the extra
    fields ``ts``, ``origin`` (setup / seed / message / resync), ``reason`` and
    ``lobster_line``; the scenario reader ignores the extra fields, so the sink's output
    replays with ``twinbook run``.
    """

    def __init__(
        self,
        symbol: str,
        levels: int,
        *,
        example_limit: int = 5,
        command_sink: Optional[CommandSink] = None,
        lookahead: bool = True,
    ) -> None:
        if levels < 1:
            raise ValueError("levels must be at least 1")
        self.symbol = symbol
        self.levels = levels
        self.example_limit = example_limit
        self.command_sink = command_sink
        self.lookahead = lookahead
        self.exchange = Exchange()
        self.report = ValidationReport(symbol=symbol, levels=levels, lookahead=lookahead)
        self.window = WindowHistory()
        # NASDAQ order id -> engine order id, and back. Engine orders absent from
        # `nasdaq_id_of` are anonymous: seeded or resync liquidity standing for orders
        # the file never showed.
        self.engine_order_of: dict[int, int] = {}
        self.nasdaq_id_of: dict[int, int] = {}
        # Engine order id -> index of the row at which it was placed.
        self.arrival_row: dict[int, int] = {}
        # NASDAQ ids whose type-1 message is in the file.
        self.added_ids: set[int] = set()
        # NASDAQ id -> the last line of the message file that cancels or executes it
        # (filled by `run` from the whole file before the replay starts, unless
        # `lookahead` is off; then every known order counts as still resting).
        self.last_reference: dict[int, int] = {}
        self.row = 0
        self.line = 0
        # Window bounds of the last row compared (the window the next message acts in).
        self.previous_bounds = (EVERYTHING_INSIDE, EVERYTHING_INSIDE)
        self.timestamp_ns = 0
        self._anonymous_count = 0
        self.halted = False
        self._apply(AddInstrument(symbol=symbol, tick_size=1, lot_size=1), ORIGIN_SETUP)

    # ------------------------------------------------------------ bookkeeping

    def _classify(self, name: str, example: Optional[str] = None) -> None:
        self.report.mismatch_classes[name] += 1
        if example is not None:
            examples = self.report.examples.setdefault(name, [])
            if len(examples) < self.example_limit:
                examples.append(example)

    def _apply(self, command, origin: str, reason: Optional[str] = None) -> list:
        """Apply one engine command, count it by origin, and hand it to the sink.

        While the file has the instrument halted, the engine refuses places and
        replaces (RULES.md), but NASDAQ still takes partial cancels and the replay still
        needs its resync commands; such a command is bracketed by a resume and a halt,
        both recorded as resync commands.
        """
        if self.halted and isinstance(command, (PlaceOrder, ReplaceOrder)):
            self._classify("command_while_halted", f"line {self.line}: {origin} {type(command).__name__}")
            self._record(ResumeInstrument(symbol=self.symbol), ORIGIN_RESYNC, "halt_lifted_for_command")
            events = self._record(command, origin, reason)
            self._record(HaltInstrument(symbol=self.symbol), ORIGIN_RESYNC, "halt_restored_after_command")
            return events
        return self._record(command, origin, reason)

    def _record(self, command, origin: str, reason: Optional[str]) -> list:
        exchange = self.exchange
        sequence = exchange.last_sequence + 1
        events = exchange.apply(sequence, self.timestamp_ns, command)
        self.report.commands[origin] += 1
        if origin == ORIGIN_RESYNC:
            self.report.resync_commands_by_reason[reason] += 1
        if self.command_sink is not None:
            record = command_to_builtins(command)
            record["ts"] = self.timestamp_ns
            record["origin"] = origin
            if reason is not None:
                record["reason"] = reason
            if self.line:
                record["lobster_line"] = self.line
            self.command_sink(record)
        for event in events:
            if isinstance(event, OrderRejected):
                self._classify(
                    f"engine_rejected_{event.reason}",
                    f"line {self.line}: {origin} command {command_to_builtins(command)} rejected: {event.reason}",
                )
        return events

    def _open_quantity(self, order_id: Optional[int]) -> int:
        if order_id is None:
            return 0
        state = self.exchange.order_state(order_id)
        if state is None or state["status"] != "resting":
            return 0
        return state["visible_qty"]

    def _queue(self, side: str, price: int) -> list[tuple[int, int]]:
        """The engine's queue at one price, in priority order: [(order id, visible qty)]."""
        orders = self.exchange.orders(self.symbol)["bids" if side == BUY else "asks"]
        return [(order["order_id"], order["visible_qty"]) for order in orders if order["price"] == price]

    def _describe_queue(self, queue: list[tuple[int, int]], limit: int = 4) -> str:
        parts = []
        for order_id, qty in queue[:limit]:
            nasdaq_id = self.nasdaq_id_of.get(order_id)
            parts.append(f"{'anonymous' if nasdaq_id is None else nasdaq_id}:{qty}")
        if len(queue) > limit:
            parts.append(f"... {len(queue) - limit} more")
        return "[" + ", ".join(parts) + "]"

    # ------------------------------------------------------------ engine commands

    def _place_resting(
        self, side: str, price: int, qty: int, origin: str, reason: Optional[str] = None,
        nasdaq_id: Optional[int] = None,
    ) -> Optional[int]:
        """Place an order that must rest (post-only); return its engine id, None if refused."""
        if nasdaq_id is None:
            self._anonymous_count += 1
            client_order_id = f"{origin}-{self._anonymous_count}"
        else:
            client_order_id = f"n{nasdaq_id}"
            if nasdaq_id in self.engine_order_of:  # an id NASDAQ used twice
                client_order_id = f"n{nasdaq_id}-line{self.line}"
        events = self._apply(
            PlaceOrder(
                member=MEMBER, client_order_id=client_order_id, symbol=self.symbol,
                side=side, order_type="limit", qty=qty, price=price, tif="gtc",
                post_only=True, stp="none",
            ),
            origin, reason,
        )
        if not events or not isinstance(events[0], OrderAccepted):
            return None
        order_id = events[0].order_id
        self.arrival_row[order_id] = self.row
        if nasdaq_id is not None:
            self.engine_order_of[nasdaq_id] = order_id
            self.nasdaq_id_of[order_id] = nasdaq_id
        return order_id

    def _reduce_order(self, order_id: int, amount: int, origin: str, reason: Optional[str] = None) -> int:
        """Take `amount` off a resting order (replace down keeps priority, or cancel)."""
        open_qty = self._open_quantity(order_id)
        if open_qty == 0 or amount <= 0:
            return 0
        if amount < open_qty:
            command = ReplaceOrder(member=MEMBER, order_id=order_id, qty=open_qty - amount)
            removed = amount
        else:
            command = CancelOrder(member=MEMBER, order_id=order_id)
            removed = open_qty
        events = self._apply(command, origin, reason)
        if any(isinstance(event, OrderRejected) for event in events):
            return 0
        return removed

    def _referenced_later(self, nasdaq_id: int) -> bool:
        """Does a later message cancel or execute this order (so it is certainly still resting)?"""
        if not self.lookahead:
            return True
        return self.last_reference.get(nasdaq_id, 0) > self.line

    def _take_liquidity(
        self, side: str, price: int, amount: int, reason: str, *,
        newest_anonymous_first: bool, exact_first: bool = False, take_live_orders: bool = False,
    ) -> int:
        """Remove `amount` at one price with resync commands; return how much was removed.

        The file says a level lost quantity but not which order lost it. The candidates,
        in order: anonymous liquidity (it stands for orders the file never showed);
        known orders that no later message mentions, oldest first (the file cannot show
        a cancellation made while the level was outside its window, and these are the
        orders that may have gone that way); and only if `take_live_orders`, known
        orders that a later message still cancels or executes, newest first (the file
        proves they are still resting, so taking them is a last resort).
        """
        queue = self._queue(side, price)
        anonymous = [entry for entry in queue if entry[0] not in self.nasdaq_id_of]
        if newest_anonymous_first:
            anonymous.reverse()
        if exact_first:
            exact = [entry for entry in anonymous if entry[1] == amount]
            if exact:
                anonymous.remove(exact[0])
                anonymous.insert(0, exact[0])
        known = [entry for entry in queue if entry[0] in self.nasdaq_id_of]
        stale = [entry for entry in known if not self._referenced_later(self.nasdaq_id_of[entry[0]])]
        candidates = anonymous + stale
        if take_live_orders:
            candidates += [entry for entry in reversed(known) if entry not in stale]
        remaining = amount
        for order_id, qty in candidates:
            if not remaining:
                break
            remaining -= self._reduce_order(order_id, min(qty, remaining), ORIGIN_RESYNC, reason)
        return amount - remaining

    # ------------------------------------------------------------ seeding

    def seed(self, first_message: Message, first_row: BookRow) -> None:
        """Build the book as it stood before the first message.

        The first orderbook row is the state after the first message, so the first
        message is undone on it (a new order's size taken off its level, a cancelled or
        executed size put back) and each level of the result is placed as one anonymous
        order. The first message is then replayed like every other one, and the first
        row is compared like every other row.
        """
        before = {BUY: dict(first_row.bids), SELL: dict(first_row.asks)}
        levels = before[first_message.side]
        price = first_message.price
        if first_message.kind == 1:
            left = levels.get(price, 0) - first_message.size
            if left > 0:
                levels[price] = left
            else:
                levels.pop(price, None)
        elif first_message.kind in (2, 3, 4):
            levels[price] = levels.get(price, 0) + first_message.size
        self.timestamp_ns = first_message.time_ns
        for side in (BUY, SELL):
            for level_price, qty in sorted(before[side].items(), key=lambda item: -_price_key(side, item[0])):
                if self._place_resting(side, level_price, qty, ORIGIN_SEED) is None:
                    raise ReplayError(
                        f"line {first_row.line}: cannot seed {side} {qty} @ {level_price}: "
                        "the first orderbook row is crossed"
                    )

    # ------------------------------------------------------------ messages

    def apply_message(self, message: Message) -> None:
        """Turn one LOBSTER message into engine commands and apply them."""
        self.report.messages_by_type[message.kind] += 1
        self.timestamp_ns = message.time_ns
        kind = message.kind
        if kind == 1:
            self._on_new_order(message)
        elif kind in (2, 3):
            self._on_cancel(message)
        elif kind == 4:
            self._on_execution(message)
        elif kind == 7:
            if message.price == -1:
                self._apply(HaltInstrument(symbol=self.symbol), ORIGIN_MESSAGE)
                self.halted = True
            else:
                # 0 = quoting resumes, 1 = trading resumes. The engine has no
                # quote-only state: it accepts orders again from the quoting message on.
                self.halted = False
                self._apply(ResumeInstrument(symbol=self.symbol), ORIGIN_MESSAGE)
        # kind 5: a hidden order executed; the visible book does not change.

    def _note_unknown(self, message: Message) -> None:
        self.report.unknown_order_ids.add(message.order_id)
        self.report.unknown_order_messages[MESSAGE_TYPES[message.kind]] += 1

    def _on_new_order(self, message: Message) -> None:
        side = message.side
        previous = self.engine_order_of.get(message.order_id)
        if previous is not None and self._open_quantity(previous):
            self._classify("new_order_reuses_open_id", message.describe())
            del self.nasdaq_id_of[previous]
        self.added_ids.add(message.order_id)
        # A LOBSTER new order is a resting (non-marketable) order at NASDAQ. If it would
        # cross the engine's book, the engine holds stale opposite liquidity at the
        # crossed prices, which NASDAQ evidently no longer has.
        opposite = SELL if side == BUY else BUY
        while True:
            best = self.exchange.depth(self.symbol, 1)["asks" if opposite == SELL else "bids"]
            if not best:
                break
            best_price, best_qty, _ = best[0]
            crosses = best_price <= message.price if side == BUY else best_price >= message.price
            if not crosses:
                break
            self._classify(
                "new_order_crosses_stale_liquidity",
                f"{message.describe()} crosses engine {opposite} {best_qty} @ {best_price}",
            )
            self._take_liquidity(
                opposite, best_price, best_qty, "stale_liquidity_crossed_by_new_order",
                newest_anonymous_first=True, take_live_orders=True,
            )
        self._place_resting(side, message.price, message.size, ORIGIN_MESSAGE, nasdaq_id=message.order_id)

    def _on_cancel(self, message: Message) -> None:
        order_id = self.engine_order_of.get(message.order_id)
        open_qty = self._open_quantity(order_id)
        if open_qty:
            if self.exchange.order_state(order_id)["price"] != message.price:
                self._classify("cancel_price_differs", message.describe())
            if message.kind == 3:
                if message.size != open_qty:
                    self._classify(
                        "delete_size_differs",
                        f"{message.describe()}: the engine holds {open_qty}",
                    )
                self._apply(CancelOrder(member=MEMBER, order_id=order_id), ORIGIN_MESSAGE)
            elif message.size < open_qty:
                self._apply(
                    ReplaceOrder(member=MEMBER, order_id=order_id, qty=open_qty - message.size),
                    ORIGIN_MESSAGE,
                )
            else:
                self._classify(
                    "partial_cancel_exceeds_open_quantity",
                    f"{message.describe()}: the engine holds {open_qty}",
                )
                self._apply(CancelOrder(member=MEMBER, order_id=order_id), ORIGIN_MESSAGE)
            return
        if message.order_id in self.added_ids:
            self._classify("cancel_of_order_already_removed_by_resync", message.describe())
        else:
            self._note_unknown(message)
        removed = self._take_liquidity(
            message.side, message.price, message.size, "unknown_order_cancelled",
            newest_anonymous_first=False, exact_first=True,
        )
        if removed < message.size:
            bound = self.previous_bounds[0 if message.side == BUY else 1]
            outside = _price_key(message.side, message.price) < bound
            self._classify(
                "unknown_cancel_outside_window" if outside else "unknown_cancel_without_anonymous_liquidity",
                f"{message.describe()}: only {removed} anonymous at that price",
            )

    def _clear_better_levels(self, message: Message) -> None:
        """Remove resting liquidity the engine holds at prices better than an execution's."""
        side = message.side
        name = "bids" if side == BUY else "asks"
        while True:
            best = self.exchange.depth(self.symbol, 1)[name]
            if not best:
                return
            price, qty, _ = best[0]
            if price == message.price or (price < message.price if side == BUY else price > message.price):
                return
            self._classify(
                "execution_behind_stale_better_level",
                f"{message.describe()}: engine best {side} {qty} @ {price}",
            )
            self._take_liquidity(
                side, price, qty, "stale_level_ahead_of_execution",
                newest_anonymous_first=True, take_live_orders=True,
            )

    def _on_execution(self, message: Message) -> None:
        side = message.side
        self._clear_better_levels(message)
        queue = self._queue(side, message.price)
        known = message.order_id in self.added_ids
        named = self.engine_order_of.get(message.order_id) if known else None
        position = None
        if named is not None:
            for index, (order_id, _) in enumerate(queue):
                if order_id == named:
                    position = index
                    break
        if known:
            if position is None:
                consistent, verifiable = False, False
                self._classify(
                    "fifo_named_order_not_in_engine",
                    f"{message.describe()}: queue {self._describe_queue(queue)}",
                )
            else:
                ahead = queue[:position]
                anonymous_ahead = any(order_id not in self.nasdaq_id_of for order_id, _ in ahead)
                consistent = position == 0 and queue[0][1] >= message.size
                since = min(self.arrival_row[order_id] for order_id, _ in queue[: position + 1])
                verifiable = not anonymous_ahead and self.window.stayed_inside(side, message.price, since)
                if not consistent:
                    name = self._fifo_disagreement(message, ahead)
                    self._classify(name, f"{message.describe()}: queue {self._describe_queue(queue)}")
        else:
            self._note_unknown(message)
            verifiable = False
            # FIFO agrees if the quantity it would take comes wholly from anonymous
            # liquidity (which stands for the orders the file never showed).
            consistent = True
            needed = message.size
            for order_id, qty in queue:
                if order_id in self.nasdaq_id_of:
                    consistent = False
                    break
                needed -= qty
                if needed <= 0:
                    break
            if needed > 0:
                consistent = False
            if not consistent:
                self._classify(
                    "fifo_unknown_order_behind_known_orders",
                    f"{message.describe()}: queue {self._describe_queue(queue)}",
                )
        if consistent:
            consistent = self._execute_incoming(message, named)
        else:
            self._emulate_execution(message, named)
        self.report.executions_all.add(consistent)
        if known:
            self.report.executions_known.add(consistent)
            if verifiable:
                self.report.executions_verifiable.add(consistent)

    def _fifo_disagreement(self, message: Message, ahead: list[tuple[int, int]]) -> str:
        """Name why FIFO would fill another order than the one NASDAQ executed."""
        if not ahead:
            return "fifo_named_order_smaller_than_execution"
        ahead_ids = [self.nasdaq_id_of.get(order_id) for order_id, _ in ahead]
        if None in ahead_ids:
            return "fifo_anonymous_liquidity_ahead"
        if any(not self._referenced_later(nasdaq_id) for nasdaq_id in ahead_ids):
            # No later message mentions an order ahead: most likely it was cancelled
            # while its level was outside the window, where the file cannot show it.
            return "fifo_unmentioned_order_ahead"
        if all(nasdaq_id > message.order_id for nasdaq_id in ahead_ids):
            # Every order ahead arrived earlier but carries a higher NASDAQ id:
            # NASDAQ's queue followed the order id, not the arrival in the feed.
            return "fifo_queued_by_order_id"
        # An order ahead is still resting (a later message names it) and NASDAQ passed
        # it over: consistent with self-match prevention, which the feed cannot show.
        return "fifo_resting_order_skipped"

    def _execute_incoming(self, message: Message, named: Optional[int]) -> bool:
        """Send the opposite-side IOC order and check the engine filled what NASDAQ named."""
        taker_side = SELL if message.side == BUY else BUY
        events = self._apply(
            PlaceOrder(
                member=MEMBER, client_order_id=f"take-line{message.line}", symbol=self.symbol,
                side=taker_side, order_type="limit", qty=message.size, price=message.price,
                tif="ioc", stp="none",
            ),
            ORIGIN_MESSAGE,
        )
        fills = [event for event in events if isinstance(event, TradeExecuted)]
        filled = sum(fill.qty for fill in fills)
        if named is not None:
            right_orders = all(fill.maker_order_id == named for fill in fills)
        else:
            right_orders = all(fill.maker_order_id not in self.nasdaq_id_of for fill in fills)
        if filled == message.size and right_orders:
            return True
        self._classify(
            "engine_fill_differs_from_its_queue",
            f"{message.describe()}: engine filled "
            + ", ".join(f"{fill.qty}@{fill.price} of order {fill.maker_order_id}" for fill in fills),
        )
        return False

    def _emulate_execution(self, message: Message, named: Optional[int]) -> None:
        """Make the book show NASDAQ's execution when FIFO would have filled another order."""
        left = message.size
        if named is not None:
            left -= self._reduce_order(named, message.size, ORIGIN_RESYNC, "execution_fifo_disagrees")
        if left:
            self._take_liquidity(
                message.side, message.price, left, "execution_fifo_disagrees",
                newest_anonymous_first=False,
            )

    # ------------------------------------------------------------ rows

    def _engine_levels(self, depth: Optional[int]) -> tuple[list, list]:
        book = self.exchange.depth(self.symbol, depth)
        return (
            [(price, qty) for price, qty, _ in book["bids"]],
            [(price, qty) for price, qty, _ in book["asks"]],
        )

    def _differences(self, row: BookRow) -> list[tuple[str, int, int, int]]:
        """(side, price, engine qty, row qty) wherever the engine differs inside the row's window."""
        bids, asks = self._engine_levels(None)
        differences = []
        for side, engine, shown in ((BUY, bids, row.bids), (SELL, asks, row.asks)):
            bound = window_bound(side, shown, self.levels)
            wanted = dict(shown)
            have = {price: qty for price, qty in engine if _price_key(side, price) >= bound}
            for price in sorted(set(wanted) | set(have), key=lambda p: -_price_key(side, p)):
                if have.get(price, 0) != wanted.get(price, 0):
                    differences.append((side, price, have.get(price, 0), wanted.get(price, 0)))
        return differences

    def check_row(self, row: BookRow, previous_bounds: tuple[int, int], message: Message) -> None:
        """Compare the engine's top N with the row; classify and re-synchronise a difference."""
        report = self.report
        report.rows += 1
        bids, asks = self._engine_levels(self.levels)
        if bids == list(row.bids) and asks == list(row.asks):
            report.rows_exact += 1
            return
        differences = self._differences(row)
        interior = False
        classes = []
        for side, price, have, wanted in differences:
            bound = previous_bounds[0] if side == BUY else previous_bounds[1]
            outside = _price_key(side, price) < bound
            interior = interior or not outside
            kind = "missing_level" if have == 0 else "extra_level" if wanted == 0 else "quantity"
            classes.append(f"row_{'outside' if outside else 'inside'}_previous_window_{kind}")
        detail = (
            f"line {row.line} after {message.describe()}: "
            + "; ".join(f"{side} @ {price} engine {have} file {wanted}" for side, price, have, wanted in differences[:4])
        )
        for name in sorted(set(classes)):
            self._classify(name, detail)
        if interior:
            report.rows_interior += 1
        else:
            report.rows_outside_window += 1
        reason = "interior_mismatch" if interior else "outside_previous_window"
        # Removals first, so that added liquidity can never cross stale liquidity.
        for side, price, have, wanted in differences:
            if have > wanted:
                removed = self._take_liquidity(
                    side, price, have - wanted, reason,
                    newest_anonymous_first=True, take_live_orders=True,
                )
                if removed != have - wanted:
                    raise ReplayError(f"line {row.line}: could not remove {have - wanted} {side} @ {price}")
        for side, price, have, wanted in differences:
            if wanted > have:
                if self._place_resting(side, price, wanted - have, ORIGIN_RESYNC, reason) is None:
                    raise ReplayError(f"line {row.line}: could not add {wanted - have} {side} @ {price}")
        bids, asks = self._engine_levels(self.levels)
        if bids != list(row.bids) or asks != list(row.asks):
            raise ReplayError(f"line {row.line}: the engine does not match the row after re-synchronising")

    def bounds(self, row: BookRow) -> tuple[int, int]:
        return window_bound(BUY, row.bids, self.levels), window_bound(SELL, row.asks, self.levels)

    # ------------------------------------------------------------ driver

    def run(self, messages: Iterable[Message], rows: Iterable[BookRow]) -> ValidationReport:
        """Seed from the first row, then replay every message and check every row."""
        if self.lookahead:
            messages = list(messages)
            for message in messages:
                if message.kind in (2, 3, 4):
                    self.last_reference[message.order_id] = message.line
        message_iter = iter(messages)
        row_iter = iter(rows)
        first_message = next(message_iter, None)
        first_row = next(row_iter, None)
        if first_message is None or first_row is None:
            raise LobsterFormatError("the message file or the orderbook file is empty")
        self.line = first_message.line
        self.seed(first_message, first_row)
        # The seeded book comes from the first row, so that row's window is the first
        # "previous window".
        self.previous_bounds = self.bounds(first_row)
        message, row = first_message, first_row
        while True:
            self.line = message.line
            self.apply_message(message)
            self.check_row(row, self.previous_bounds, message)
            self.previous_bounds = self.bounds(row)
            self.window.record(self.row, *self.previous_bounds)
            self.row += 1
            message = next(message_iter, None)
            row = next(row_iter, None)
            if message is None and row is None:
                break
            if message is None or row is None:
                raise LobsterFormatError(
                    f"the message file has {'fewer' if message is None else 'more'} lines than the "
                    f"orderbook file (they must correspond line by line; {self.row} compared)"
                )
        return self.report


def validate_files(
    message_path: Path | str,
    orderbook_path: Path | str,
    *,
    levels: Optional[int] = None,
    symbol: Optional[str] = None,
    example_limit: int = 5,
    command_sink: Optional[CommandSink] = None,
    lookahead: bool = True,
) -> ValidationReport:
    """Run the whole validation on a LOBSTER message file and its orderbook file."""
    message_path = Path(message_path)
    orderbook_path = Path(orderbook_path)
    file_levels = orderbook_levels(orderbook_path)
    if levels is None:
        levels = file_levels
    elif not 1 <= levels <= file_levels:
        raise ValueError(f"--levels must be between 1 and {file_levels} (the levels in {orderbook_path})")
    replay = LobsterReplay(
        symbol or symbol_from_filename(message_path), levels,
        example_limit=example_limit, command_sink=command_sink, lookahead=lookahead,
    )
    replay.report.message_file = str(message_path)
    replay.report.orderbook_file = str(orderbook_path)
    return replay.run(read_messages(message_path), read_orderbook(orderbook_path, levels))
