"""The exchange: a deterministic state machine from commands to events.

`Exchange.apply(sequence, timestamp_ns, command)` applies one journal record and
returns the events it caused, following ../shared/RULES.md to the letter. It reads no
clock, does no I/O, uses no randomness and no floats; the same record stream gives the
same events and the same digests in every process, whatever PYTHONHASHSEED is (nothing
here iterates a set or depends on the hash of a string).

How the book is stored (the hot path):

* Order ids are assigned by the exchange (1, 2, 3, ...), so every per-order fact lives
  in a flat, preallocated 64-bit integer array indexed by order id ("columns", in
  COLUMN_NAMES order: side, price, visible open quantity, hidden quantity, arrival
  stamp, previous/next order in the level; `array("q")`, which a compiled build reads
  through typed views at C speed). No Python object is created per resting order: the
  command that placed it already exists and is kept (in `_cmd`) for its immutable
  fields (member, client order id, symbol, tif, stp, display quantity) while the order
  is open; an order that closes (filled, cancelled, never rested) lets its command go,
  so a closed order costs its columns and its client order id memory only. Columns grow by
  whole chunks, so accepting an order rarely resizes them, and they hold no objects the
  garbage collector tracks.
* A price level is a `Level` (head, tail, visible total, order count); the orders of a
  level form a doubly linked list through the `prev`/`next` columns, so FIFO is the
  list order and cancelling any order is O(1).
* Each side keeps a dict price -> level and a sorted list of keys whose last element is
  the best price: for bids the key is the price, for asks it is the negated price. The
  best level empties most often, and popping the end of a list is O(1).
* Time priority is an "arrival stamp", a counter bumped whenever an order (re)enters a
  level. An order's digest weight is `arrival * 2**41 + price` (prices are < 2**40, so
  the weight encodes both exactly).
* The incremental state digest is the sum over every open order of
  `weight * (visible + hidden * 2**40)`, kept up to date on every change with one
  multiply-add, modulo 2**128 (`state_digest()` reads only its low 128 bits, and a
  compiled build keeps it in an unsigned 128-bit accumulator); `state_digest()` folds
  it with the counters and instrument states through blake2b into 64 bits. The weight
  is not stored: the arrival column and the price give it. It is built to notice a replica that diverged, cheaply; the
  canonical digest (snapshot.py) is the strong one.

The matching loop works in "key space" so one loop serves both sides: an incoming buy
walks the ask keys (negated prices) from the best, an incoming sell the bid keys, and a
level is acceptable while its key is >= the incoming order's key limit.

This file is also compiled by Cython (pure-Python mode; the C types are in exchange.pxd,
the build in setup.py, the choice between the two in core_mode.py): the code must stay
plain Python that means the same in both. So a value becomes native only after it is
validated, digest arithmetic keeps every operand native, and handlers are called from
`apply` directly rather than through a dict of bound methods.

The most common commands take straight-line fast paths written for few bytecodes (each
one costs about 30 machine instructions in CPython 3.11's eval loop, which is most of a
command's cost): a limit order or a market order on a trading instrument without a band
in `_place`, and the cancel of a resting order in `_cancel`; everything else goes
through the general code, which checks the reject reasons in the exact precedence of
RULES.md. The matching loop keeps a level's visible total and order count in locals and
writes them back once per level. A closed order's prev/next links are left stale (only
linked orders are ever followed; the canonical encoding writes them as 0), which saves
stores on every fill and cancel.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from bisect import bisect_left, insort
from collections import deque
from typing import Optional

from msgspec.structs import astuple

from statemachine.commands import (
    AddInstrument,
    CancelOrder,
    Checkpoint,
    EndOfDay,
    HaltInstrument,
    MalformedCommand,
    MassCancel,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
)
from statemachine.errors import InvariantViolation, SequenceError
from statemachine.version import REPLAYABLE_RULES_VERSIONS, RULES_VERSION_WHEN_UNRECORDED
from statemachine.events import (
    InstrumentStatusChanged,
    LevelChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    StopTriggered,
    TradeExecuted,
)

# Prices and quantities are integers in (0, VALUE_MAX] (RULES.md).
VALUE_MAX = 10**12

# From rules version 2, an iceberg may show at most this many tranches: its quantity
# must be at most display_qty * ICEBERG_TRANCHES_MAX (at place and after a replace), else
# it is rejected `invalid_quantity`. RULES.md makes every tranche that is hit its own
# trade, so without a bound one incoming order meeting a 10**12-lot iceberg showing one
# lot would emit 10**12 trade events in a single command. Major exchanges bound this the
# same way, with a minimum display size relative to the order. 10,000 tranches keeps one
# iceberg's worst case (10,000 trades) to milliseconds of work.
ICEBERG_TRANCHES_MAX = 10_000

# The tranche bound each rules version applies (version 1 had none: a display of one lot
# times VALUE_MAX covers every valid quantity, so the check never fires).
_ICEBERG_TRANCHES_MAX_BY_RULES_VERSION = {1: VALUE_MAX, 2: ICEBERG_TRANCHES_MAX, 3: ICEBERG_TRANCHES_MAX}

# From rules version 3, a client order id is at most CLIENT_ORDER_ID_BYTES_MAX and a
# symbol at most SYMBOL_BYTES_MAX printable ASCII characters (0x20..0x7E, so a character
# is a byte), the bounds the gateway applies before sequencing (replica/gateway.py). As
# rules they hold for every record of the journal, whoever wrote it, and they bound what
# the exchange remembers per order: the client order id of every accepted order is kept
# for ever (its duplicate rule), so its size is a rule, not a courtesy of the gateway.
CLIENT_ORDER_ID_BYTES_MAX = 64
SYMBOL_BYTES_MAX = 16

BUY = 0
SELL = 1
SIDE_NAMES = ("buy", "sell")

# Order statuses, as `status_of` reports them. They are not stored: an order is open
# while its `open` column is positive (a resting order always shows some quantity), and
# an untriggered stop carries STOP_FLAG in its `side` column. Not storing a status saves
# a list store on every accept and every fill.
CLOSED = 0
RESTING = 1
PENDING_STOP = 2
STOP_FLAG = 2

# The integer columns of every order id, in the order `Exchange._columns` holds them.
COLUMN_NAMES = ("side", "price", "open", "hidden", "arrival", "prev", "next")

# Why an incoming order stopped matching with quantity left.
STOPPED_FILLED = 0
STOPPED_LIMIT = 1
STOPPED_BAND = 2
STOPPED_EMPTY = 3
STOPPED_STP = 4

# Digest weights: `arrival * ARRIVAL_WEIGHT + price`, and hidden quantity weighted apart
# from visible quantity. Prices and visible quantities are at most 10**12 < 2**40, so
# neither can alias the part above it.
ARRIVAL_WEIGHT = 1 << 41
HIDDEN_WEIGHT = 1 << 40
DIGEST_MASK = (1 << 64) - 1
# The digest sum is kept modulo 2**128 (all `state_digest` reads of it); a compiled
# build keeps it in one native 128-bit accumulator.
DIGEST_SUM_MASK = (1 << 128) - 1
PRICE_MASK = ARRIVAL_WEIGHT - 1

# Columns grow by this many order ids at a time: large enough that growth is rare,
# small enough that an idle exchange does not hold much memory.
COLUMN_CHUNK = 1 << 16

# Key limits meaning "no limit" in key space (keys are within +-10**12).
KEY_UNLIMITED = -(1 << 62)
KEY_UNLIMITED_MAX = 1 << 62

_DIGEST_STRUCT = struct.Struct("<QQQQQ")


class Level:
    """One price level: the FIFO of its orders (`head` and `tail` are order ids, the
    queue is linked through the prev/next columns), its visible total and its count."""

    __slots__ = ("head", "tail", "total", "count")

    def __init__(self, head: int, tail: int, total: int, count: int) -> None:
        self.head = head
        self.tail = tail
        self.total = total
        self.count = count


class Book:
    """One instrument: its parameters, both sides of the book and its pending stops."""

    __slots__ = (
        "symbol",
        "tick_size",
        "lot_size",
        "band_bps",
        "reference_price",
        "last_trade_price",
        "_halted",
        "plain",
        "levels",
        "keys",
        "bid_levels",
        "ask_levels",
        "bid_keys",
        "ask_keys",
        "buy_stops",
        "sell_stops",
    )

    def __init__(
        self,
        symbol: str,
        tick_size: int,
        lot_size: int,
        band_bps: int,
        reference_price: Optional[int],
    ) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.band_bps = band_bps
        self.reference_price = reference_price
        self.last_trade_price: Optional[int] = None
        self._halted = False
        # True while a plain limit order may take the fast path in `_place`: trading
        # and without a band (band_bps never changes; `halted` keeps this up to date).
        self.plain = not band_bps
        # levels[side]: price -> [head, tail, visible_total, order_count]
        self.bid_levels: dict = {}
        self.ask_levels: dict = {}
        self.levels: tuple[dict, dict] = (self.bid_levels, self.ask_levels)
        # keys[side]: sorted ascending, best last (bids: price, asks: -price). The same
        # lists are also named per side, which saves the hot paths a subscript.
        self.bid_keys: list = []
        self.ask_keys: list = []
        self.keys: tuple[list, list] = (self.bid_keys, self.ask_keys)
        # Untriggered stops, sorted so that the triggerable ones form a prefix:
        # buy stops by (stop_price, order_id), sell stops by (-stop_price, order_id).
        self.buy_stops: list = []
        self.sell_stops: list = []

    @property
    def halted(self) -> bool:
        return self._halted

    @halted.setter
    def halted(self, halted: bool) -> None:
        self._halted = halted
        self.plain = not halted and not self.band_bps

    def band(self) -> Optional[tuple[int, int]]:
        """The inclusive price band now, or None when there is no band."""
        if self.band_bps <= 0:
            return None
        reference = self.last_trade_price
        if reference is None:
            reference = self.reference_price
            if reference is None:
                return None
        width = reference * self.band_bps // 10000
        return reference - width, reference + width


def _valid_value(value: int, multiple: int) -> bool:
    return 0 < value <= VALUE_MAX and value % multiple == 0


def _text_problem(value: str, name: str, bytes_max: int) -> Optional[str]:
    """The reject reason when `value` is not at most `bytes_max` printable ASCII
    characters (`<name>_too_long` or `<name>_not_printable`), else None."""
    if len(value) > bytes_max:
        return name + "_too_long"
    if not (value.isascii() and value.isprintable()):
        return name + "_not_printable"
    return None


def _band_keys(band: Optional[tuple[int, int]], side: int) -> tuple[int, int]:
    """The band (lo, hi) as (minimum key, maximum key) for an incoming order of `side`.

    An incoming buy walks ask keys (-price): price <= hi is key >= -hi, price >= lo is
    key <= -lo. An incoming sell walks bid keys (price): key >= lo and key <= hi.
    """
    if band is None:
        return KEY_UNLIMITED, KEY_UNLIMITED_MAX
    low, high = band
    if side == BUY:
        low, high = -high, -low
    # A band may be far wider than any price (10**12 bps of 10**12 is 10**20 either
    # way); keys are within +-10**12, so bounds beyond +-2**62 compare the same when
    # clamped there, and then fit the native integers of a compiled build.
    # (Compared one by one, not with min/max: a compiled build would convert the
    # Python int to a native one first, which is what this avoids.)
    if low < KEY_UNLIMITED:
        low = KEY_UNLIMITED
    if high > KEY_UNLIMITED_MAX:
        high = KEY_UNLIMITED_MAX
    return low, high


class Exchange:
    """Many instrument books, one order id space, one apply function."""

    def __init__(self, *, book_updates: bool = False, rules_version: int = RULES_VERSION_WHEN_UNRECORDED) -> None:
        """`rules_version` is the matching-rules version applied until a record
        `Checkpoint(kind="rules")` says otherwise. The default is what a journal without
        a rules checkpoint was written under (version 1), so replaying any journal from
        a fresh exchange applies exactly the rules it was written under; a node writes
        this build's RULES_VERSION as its journal's first record, and `twinbook run`
        starts a scenario under RULES_VERSION."""
        if rules_version not in REPLAYABLE_RULES_VERSIONS:
            raise ValueError(f"rules version {rules_version} is not one this build implements {REPLAYABLE_RULES_VERSIONS}")
        self.book_updates = book_updates
        self.rules_version = rules_version
        self._iceberg_tranches_max = _ICEBERG_TRANCHES_MAX_BY_RULES_VERSION[rules_version]
        self._text_bounded = rules_version >= 3
        self.last_sequence = 0
        self.last_timestamp_ns = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self._arrival_stamp = 0
        self._digest_sum = 0
        self.books: dict[str, Book] = {}
        # The book last found by symbol: commands mostly name the same instrument, and
        # comparing a symbol with the last one is cheaper than hashing it (each decoded
        # command carries a new string object, whose hash is not computed yet). Books
        # are never removed or replaced, so the pair stays true.
        self._last_symbol: Optional[str] = None
        self._last_book: Optional[Book] = None
        # member -> {client order id -> order id}: every id ever accepted, for ever (the
        # exact strings: docs/ARCHITECTURE.md "The dedupe memory of client order ids").
        self._client_order_ids: dict[str, dict[str, int]] = {}
        self._capacity = 0
        self._cmd: list = []
        # order id -> the client-order-id dict of the member who placed it (one shared
        # object per member, so 8 bytes per order and no object): who owns an order,
        # kept after its command goes, for `order_state`; and its Book (one per
        # instrument), for the same reason.
        self._owner: list = []
        self._order_book: list = []
        # The integer columns, in COLUMN_NAMES order; `_side`, `_price`, ... are the same
        # arrays under their own names (typed views of them in a compiled build).
        self._columns: tuple = tuple(array("q") for _ in COLUMN_NAMES)
        self._adopt_columns()
        self._reserve(COLUMN_CHUNK)
        self._touched: Optional[dict] = {} if book_updates else None

    # ------------------------------------------------------------------ storage

    def _reserve(self, end: int) -> None:
        """Make room for order ids below `end`, by whole chunks. The arrays grow in place
        (large blocks are remapped, not copied), which needs the typed views of a
        compiled build let go first: an array that lends its buffer cannot be resized."""
        if end <= self._capacity:
            return
        count = max(COLUMN_CHUNK, end - self._capacity)
        self._capacity += count
        self._cmd.extend([None] * count)
        self._owner.extend([None] * count)
        self._order_book.extend([None] * count)
        zeros = bytes(8 * count)
        self._side = self._price = self._open = self._hidden = None
        self._arrival = self._prev = self._next = None
        for column in self._columns:
            column.frombytes(zeros)
        self._adopt_columns()

    def _adopt_columns(self) -> None:
        (
            self._side, self._price, self._open, self._hidden,
            self._arrival, self._prev, self._next,
        ) = self._columns

    # ------------------------------------------------------------------ apply

    def apply(self, sequence: int, timestamp_ns: int, command) -> list:
        """Apply one journal record; return the events it caused, in order."""
        if sequence != self.last_sequence + 1:
            raise SequenceError(
                f"record {sequence} applied after {self.last_sequence}: sequences must be gapless"
            )
        self.last_sequence = sequence
        self.last_timestamp_ns = timestamp_ns
        events: list = []
        # A chain of type tests rather than a dict of bound methods: a compiled build
        # calls the handlers directly (they are not Python-callable there).
        kind = type(command)
        if kind is PlaceOrder:
            self._place(sequence, command, events)
        elif kind is CancelOrder:
            self._cancel(sequence, command, events)
        elif kind is ReplaceOrder:
            self._replace(sequence, command, events)
        elif kind is MassCancel:
            self._mass_cancel(sequence, command, events)
        elif kind is AddInstrument:
            self._add_instrument(sequence, command, events)
        elif kind is HaltInstrument:
            self._halt(sequence, command, events)
        elif kind is ResumeInstrument:
            self._resume(sequence, command, events)
        elif kind is EndOfDay:
            self._end_of_day(sequence, command, events)
        elif kind is MalformedCommand:
            self._malformed(sequence, command, events)
        elif kind is Checkpoint:
            self._checkpoint(sequence, command, events)
        else:
            raise TypeError(f"not a command: {command!r}")
        if self._touched:
            self._emit_level_changes(sequence, events)
        return events

    def _book_of(self, symbol: str) -> Optional[Book]:
        """The book of `symbol`, or None."""
        if symbol == self._last_symbol:
            return self._last_book
        book = self.books.get(symbol)
        if book is not None:
            self._last_symbol = symbol
            self._last_book = book
        return book

    # ------------------------------------------------------------------ place

    def _place(self, seq: int, cmd: PlaceOrder, events: list) -> None:
        # Every field at once, in PlaceOrder's field order (a field added there makes
        # this unpacking fail loudly): one call instead of an attribute lookup per field.
        (
            member, client_order_id, symbol, side_name, order_type, qty, price, tif,
            post_only, display_qty, _stop_price, stp,
        ) = astuple(cmd)
        if self._text_bounded:
            # Rules version 3: checked before anything else (an id that may not exist
            # cannot be a duplicate). The reject echoes the command's id like every
            # reject; only what is remembered must be bounded, and nothing is.
            reason = _text_problem(client_order_id, "client_order_id", CLIENT_ORDER_ID_BYTES_MAX)
            if reason is None:
                reason = _text_problem(symbol, "symbol", SYMBOL_BYTES_MAX)
            if reason is not None:
                events.append(OrderRejected(seq, member, client_order_id, reason))
                return
        ids = self._client_order_ids.get(member)
        book = self._book_of(symbol)
        # The fast path: a plain limit order with valid values on an instrument that is
        # trading without a band. Anything else takes the general path below, which
        # checks every reject reason in RULES.md's order. (Written for few bytecodes:
        # this is the commonest command.) Here the only reason left to reject it is a
        # used client order id, so one `setdefault` both checks and records it.
        if (
            book is not None
            and book.plain
            and order_type == "limit"
            and price is not None
            and 0 < qty <= VALUE_MAX
            and 0 < price <= VALUE_MAX
            and display_qty is None
            and not post_only
            and (book.lot_size == 1 or not qty % book.lot_size)
            and (book.tick_size == 1 or not price % book.tick_size)
        ):
            # Checked above to be within (0, 10**12]: a compiled build holds these two
            # in native integers from here on.
            quantity = qty
            limit = price
            oid = self.next_order_id
            if ids is None:
                ids = self._client_order_ids[member] = {}
            known = ids.setdefault(client_order_id, oid)
            if known != oid:
                events.append(OrderRejected(seq, member, client_order_id, "duplicate_client_order_id", known))
                return
            self.next_order_id = oid + 1
            if oid >= self._capacity:
                self._reserve(oid + 1)
            self._cmd[oid] = cmd
            self._owner[oid] = ids
            self._order_book[oid] = book
            events.append(OrderAccepted(
                seq, oid, member, client_order_id, book.symbol, side_name, qty, price
            ))
            if side_name == "buy":
                side = BUY
                opposite_keys = book.ask_keys
                if (opposite_keys and -opposite_keys[-1] <= price) or (tif is not None and (tif == "ioc" or tif == "fok")):
                    self._side[oid] = BUY
                    self._execute_limit(seq, book, oid, cmd, BUY, price, qty, tif or "gtc", None, events)
                    if book.buy_stops or book.sell_stops:
                        self._run_stops(seq, book, events)
                    return
                levels = book.bid_levels
                level = levels.get(price)
                if level is None:
                    levels[price] = Level(oid, oid, qty, 1)
                    insort(book.bid_keys, price)
            else:
                side = SELL
                opposite_keys = book.bid_keys
                if (opposite_keys and opposite_keys[-1] >= price) or (tif is not None and (tif == "ioc" or tif == "fok")):
                    self._side[oid] = SELL
                    self._execute_limit(seq, book, oid, cmd, SELL, price, qty, tif or "gtc", None, events)
                    if book.buy_stops or book.sell_stops:
                        self._run_stops(seq, book, events)
                    return
                levels = book.ask_levels
                level = levels.get(price)
                if level is None:
                    levels[price] = Level(oid, oid, qty, 1)
                    insort(book.ask_keys, -price)
            # Rest at the back of the level (an inlined `_rest` for the common case).
            if level is not None:
                tail = level.tail
                self._next[tail] = oid
                self._prev[oid] = tail
                level.tail = oid
                level.total += quantity
                level.count += 1
            self._side[oid] = side
            self._price[oid] = limit
            self._open[oid] = quantity
            stamp = self._arrival_stamp = self._arrival_stamp + 1
            self._arrival[oid] = stamp
            self._digest_sum += (stamp * ARRIVAL_WEIGHT + limit) * quantity
            if self._touched is not None:
                self._touched[(book, side, price)] = None
            return
        if ids is not None and client_order_id in ids:
            events.append(OrderRejected(
                seq, member, client_order_id, "duplicate_client_order_id", ids[client_order_id]
            ))
            return
        if book is None:
            events.append(OrderRejected(seq, member, client_order_id, "unknown_symbol"))
            return
        if book.plain and order_type == "market" and 0 < qty <= VALUE_MAX and not qty % book.lot_size:
            # A valid market order on a trading instrument without a band: nothing else
            # about it can be rejected, and it matches without a band.
            oid = self.next_order_id
            self.next_order_id = oid + 1
            if oid >= self._capacity:
                self._reserve(oid + 1)
            self._cmd[oid] = cmd
            side = BUY if side_name == "buy" else SELL
            self._side[oid] = side
            if ids is None:
                ids = self._client_order_ids[member] = {}
            ids[client_order_id] = oid
            self._owner[oid] = ids
            self._order_book[oid] = book
            events.append(OrderAccepted(
                seq, oid, member, client_order_id, book.symbol, side_name, qty, None
            ))
            remaining, stopped = self._match(
                seq, book, oid, cmd, side, qty, stp or "cancel_newest",
                KEY_UNLIMITED, KEY_UNLIMITED, KEY_UNLIMITED_MAX, events,
            )
            # A market order never rests: its command goes now.
            self._cmd[oid] = None
            if remaining or stopped == STOPPED_STP:
                events.append(OrderCancelled(
                    seq, oid, "stp" if stopped == STOPPED_STP else "no_liquidity", remaining,
                    member, client_order_id, book.symbol,
                ))
            if book.buy_stops or book.sell_stops:
                self._run_stops(seq, book, events)
            return
        self._place_general(seq, cmd, book, ids, events)

    def _place_general(self, seq: int, cmd: PlaceOrder, book: Book, ids, events: list) -> None:
        member = cmd.member
        qty = cmd.qty
        lot = book.lot_size
        order_type = cmd.order_type
        reason = None
        if not (0 < qty <= VALUE_MAX and qty % lot == 0):
            reason = "invalid_quantity"
        else:
            display = cmd.display_qty
            if display is not None and (order_type == "limit" or order_type == "stop_limit"):
                if not (
                    0 < display < qty and display % lot == 0 and qty <= display * self._iceberg_tranches_max
                ):
                    reason = "invalid_quantity"
        if reason is None:
            tick = book.tick_size
            if order_type == "limit" or order_type == "stop_limit":
                price = cmd.price
                if price is None or not _valid_value(price, tick):
                    reason = "invalid_price"
            if reason is None and (order_type == "stop" or order_type == "stop_limit"):
                stop_price = cmd.stop_price
                if stop_price is None or not _valid_value(stop_price, tick):
                    reason = "invalid_price"
        if reason is None and book.halted:
            reason = "halted"
        if reason is None and order_type == "limit":
            if book.band_bps > 0:
                band = book.band()
                if band is not None and not band[0] <= cmd.price <= band[1]:
                    reason = "price_band"
            if reason is None and cmd.post_only and self._would_cross(book, cmd.side, cmd.price):
                reason = "post_only_would_cross"
        if reason is not None:
            events.append(OrderRejected(seq, member, cmd.client_order_id, reason))
            return

        # Accepted: the order id and the client order id are used up from here on.
        oid = self.next_order_id
        self.next_order_id = oid + 1
        if oid >= self._capacity:
            self._reserve(oid + 1)
        self._cmd[oid] = cmd
        side = BUY if cmd.side == "buy" else SELL
        self._side[oid] = side
        if ids is None:
            ids = self._client_order_ids[member] = {}
        ids[cmd.client_order_id] = oid
        self._owner[oid] = ids
        self._order_book[oid] = book
        tif = cmd.tif or "gtc"
        events.append(OrderAccepted(
            seq, oid, member, cmd.client_order_id, book.symbol, cmd.side, qty,
            cmd.price if order_type == "limit" or order_type == "stop_limit" else None,
        ))
        if order_type == "limit":
            self._execute_limit(seq, book, oid, cmd, side, cmd.price, qty, tif, None, events)
        elif order_type == "market":
            self._execute_market(seq, book, oid, cmd, side, qty, events)
        else:
            self._add_stop(book, oid, side, cmd.stop_price, qty)
        if book.buy_stops or book.sell_stops:
            self._run_stops(seq, book, events)

    def _would_cross(self, book: Book, side_name: str, price: int) -> bool:
        if side_name == "buy":
            ask_keys = book.keys[SELL]
            return bool(ask_keys) and -ask_keys[-1] <= price
        bid_keys = book.keys[BUY]
        return bool(bid_keys) and bid_keys[-1] >= price

    def _execute_limit(self, seq, book, oid, cmd, side, price, qty, tif, band, events) -> None:
        """Match an incoming limit order, then rest or cancel its remainder.

        `band` is None for an order checked at entry (limit orders are band-checked
        only there) and the fixed band of a triggered stop-limit order.
        """
        stp = cmd.stp or "cancel_newest"
        if band is None:
            key_band = KEY_UNLIMITED
            key_band_max = KEY_UNLIMITED_MAX
        else:
            key_band, key_band_max = _band_keys(band, side)
        key_limit = -price if side == BUY else price
        if tif == "fok" and not self._fok_fillable(book, side, cmd.member, stp, qty, key_limit, key_band, key_band_max):
            events.append(OrderCancelled(seq, oid, "fok", qty, cmd.member, cmd.client_order_id, book.symbol))
            self._close_unrested(oid)
            return
        remaining, stopped = self._match(
            seq, book, oid, cmd, side, qty, stp, key_limit, key_band, key_band_max, events
        )
        if remaining == 0 and stopped != STOPPED_STP:
            # Filled on arrival. Its open and hidden quantity are already 0: an incoming
            # order's columns are set only when it rests (a fresh id, a triggered stop
            # and a replaced order all arrive here with both at 0).
            self._cmd[oid] = None
            return
        if stopped == STOPPED_STP:
            reason = "stp"
        elif stopped == STOPPED_BAND:
            reason = "price_band"
        elif tif == "ioc":
            reason = "ioc"
        elif tif == "fok":
            # A dry run said the whole quantity would trade; reaching this means the dry
            # run and the real matching disagree, which must never happen.
            raise InvariantViolation(f"fok order {oid} passed its dry run but did not fill")
        else:
            display = cmd.display_qty
            if display is not None and display < remaining:
                self._rest(book, oid, side, price, display, remaining - display)
            else:
                self._rest(book, oid, side, price, remaining, 0)
            return
        events.append(OrderCancelled(seq, oid, reason, remaining, cmd.member, cmd.client_order_id, book.symbol))
        self._close_unrested(oid)

    def _execute_market(self, seq, book, oid, cmd, side, qty, events) -> None:
        """Match an incoming market order (or triggered stop) within the band fixed now."""
        key_band, key_band_max = _band_keys(book.band() if book.band_bps > 0 else None, side)
        remaining, stopped = self._match(
            seq, book, oid, cmd, side, qty, cmd.stp or "cancel_newest", KEY_UNLIMITED, key_band, key_band_max, events
        )
        if remaining or stopped == STOPPED_STP:
            if stopped == STOPPED_STP:
                reason = "stp"
            elif stopped == STOPPED_BAND:
                reason = "price_band"
            else:
                reason = "no_liquidity"
            events.append(OrderCancelled(seq, oid, reason, remaining, cmd.member, cmd.client_order_id, book.symbol))
        self._close_unrested(oid)

    def _close_unrested(self, oid: int) -> None:
        """Mark an order that never rests (or has just left the book) closed, and let
        its command go."""
        self._open[oid] = 0
        self._hidden[oid] = 0
        self._cmd[oid] = None

    # ------------------------------------------------------------------ matching

    def _match(self, seq, book, taker, cmd, side, qty, stp, key_limit, key_band, key_band_max, events):
        """Match `qty` of an incoming order against the opposite side.

        A level is acceptable while `key_limit <= key` (the order's own limit) and
        `key_band <= key <= key_band_max` (the band, for market and triggered orders: a
        level outside it on either side stops matching). Returns (remaining quantity, why
        it stopped). Emits trades and the cancels of resting orders removed by self-trade
        prevention as they happen.

        The level's visible total and order count are kept in locals while the level is
        matched and written back when it is left (and around a self-trade, whose helpers
        update the level themselves): two list stores per level instead of per fill.
        """
        if side == BUY:
            opposite = SELL
            levels = book.ask_levels
            keys = book.ask_keys
            sign = -1
        else:
            opposite = BUY
            levels = book.bid_levels
            keys = book.bid_keys
            sign = 1
        member = cmd.member
        taker_client_order_id = cmd.client_order_id
        aggressor = cmd.side
        symbol = book.symbol
        stp_active = stp != "none"
        o_cmd = self._cmd
        o_open = self._open
        o_hidden = self._hidden
        o_next = self._next
        o_arrival = self._arrival
        append = events.append
        touched = self._touched
        remaining = qty
        stopped = STOPPED_FILLED
        trade_id = self.next_trade_id
        digest_sum = self._digest_sum
        while remaining:
            if not keys:
                stopped = STOPPED_EMPTY
                break
            key = keys[-1]
            if key < key_limit:
                stopped = STOPPED_LIMIT
                break
            if key < key_band or key > key_band_max:
                stopped = STOPPED_BAND
                break
            price = key * sign
            level = levels[price]
            if touched is not None:
                touched[(book, opposite, price)] = None
            level_first_trade_id = trade_id
            total = level.total
            count = level.count
            maker = level.head
            while maker:
                maker_cmd = o_cmd[maker]
                if stp_active and maker_cmd.member == member:
                    # Bring the level up to date first: the orders filled before this
                    # one have left it, and the self-trade helpers unlink from it.
                    level.head = maker
                    self._prev[maker] = 0
                    level.total = total
                    level.count = count
                    self._digest_sum = digest_sum
                    remaining, stop_matching = self._self_trade(
                        seq, book, level, maker, maker_cmd, stp, remaining, events
                    )
                    digest_sum = self._digest_sum
                    total = level.total
                    count = level.count
                    maker = level.head
                    if stop_matching:
                        stopped = STOPPED_STP
                        break
                    continue
                visible = o_open[maker]
                if visible > remaining:
                    fill = remaining
                    o_open[maker] = visible - fill
                    total -= fill
                    digest_sum -= (o_arrival[maker] * ARRIVAL_WEIGHT + price) * fill
                    append(TradeExecuted(
                        seq, trade_id, symbol, price, fill, maker, taker, maker_cmd.member, member,
                        maker_cmd.client_order_id, taker_client_order_id, aggressor,
                    ))
                    trade_id += 1
                    remaining = 0
                    break
                remaining -= visible
                total -= visible
                append(TradeExecuted(
                    seq, trade_id, symbol, price, visible, maker, taker, maker_cmd.member, member,
                    maker_cmd.client_order_id, taker_client_order_id, aggressor,
                ))
                trade_id += 1
                hidden = o_hidden[maker]
                following = o_next[maker]
                if hidden:
                    # Iceberg refill: a new tranche at the back of the level, with a new
                    # time priority, which the same incoming order may still reach.
                    digest_sum -= (o_arrival[maker] * ARRIVAL_WEIGHT + price) * (visible + hidden * HIDDEN_WEIGHT)
                    tranche = maker_cmd.display_qty
                    if tranche > hidden:
                        tranche = hidden
                    hidden -= tranche
                    o_open[maker] = tranche
                    o_hidden[maker] = hidden
                    total += tranche
                    stamp = self._arrival_stamp = self._arrival_stamp + 1
                    o_arrival[maker] = stamp
                    digest_sum += (stamp * ARRIVAL_WEIGHT + price) * (tranche + hidden * HIDDEN_WEIGHT)
                    if following:
                        o_prev = self._prev
                        o_prev[following] = 0
                        tail = level.tail
                        o_next[tail] = maker
                        o_prev[maker] = tail
                        o_next[maker] = 0
                        level.tail = maker
                        maker = following
                    # else: it is alone in the level and stays at its head.
                else:
                    # Filled: it leaves the level (its own links stay stale, as closed
                    # orders' links may).
                    digest_sum -= (o_arrival[maker] * ARRIVAL_WEIGHT + price) * visible
                    o_open[maker] = 0
                    o_cmd[maker] = None
                    count -= 1
                    maker = following
                if not remaining:
                    break
            if count:
                level.head = maker
                self._prev[maker] = 0
                level.total = total
                level.count = count
            else:
                del levels[price]
                keys.pop()
            if trade_id != level_first_trade_id:
                book.last_trade_price = price
            if stopped == STOPPED_STP:
                break
        self.next_trade_id = trade_id
        self._digest_sum = digest_sum
        return remaining, stopped

    def _self_trade(self, seq, book, level, maker, maker_cmd, stp, remaining, events):
        """Apply the incoming order's STP mode to a resting order of the same member.

        Returns (remaining incoming quantity, whether matching stops).
        """
        if stp == "cancel_newest":
            return remaining, True
        if stp == "cancel_oldest" or stp == "cancel_both":
            left = self._open[maker] + self._hidden[maker]
            self._remove_resting(maker, book, False)
            events.append(OrderCancelled(
                seq, maker, "stp", left, maker_cmd.member, maker_cmd.client_order_id, book.symbol
            ))
            self._cmd[maker] = None
            return remaining, stp == "cancel_both"
        # decrement: both lose the smaller open quantity, with no trade. A resting
        # iceberg loses hidden quantity first and keeps its place.
        visible = self._open[maker]
        hidden = self._hidden[maker]
        reduction = min(visible + hidden, remaining)
        weight = self._arrival[maker] * ARRIVAL_WEIGHT + self._price[maker]
        self._digest_sum -= weight * (visible + hidden * HIDDEN_WEIGHT)
        if reduction <= hidden:
            hidden -= reduction
        else:
            visible -= reduction - hidden
            level.total -= reduction - hidden
            hidden = 0
        self._open[maker] = visible
        self._hidden[maker] = hidden
        self._digest_sum += weight * (visible + hidden * HIDDEN_WEIGHT)
        if visible == 0:
            self._remove_resting(maker, book, False)
            events.append(OrderCancelled(
                seq, maker, "stp", 0, maker_cmd.member, maker_cmd.client_order_id, book.symbol
            ))
            self._cmd[maker] = None
        remaining -= reduction
        return remaining, remaining == 0

    def _fok_fillable(self, book, side, member, stp, qty, key_limit, key_band, key_band_max) -> bool:
        """Dry run of the real matching, STP included: would all of `qty` trade now?"""
        opposite = SELL if side == BUY else BUY
        levels = book.levels[opposite]
        sign = -1 if opposite == SELL else 1
        stp_active = stp != "none"
        needed = qty
        for key in reversed(book.keys[opposite]):
            if key < key_limit or key < key_band or key > key_band_max:
                return False
            level = levels[key * sign]
            queue = deque()
            maker = level.head
            while maker:
                queue.append((maker, self._open[maker], self._hidden[maker]))
                maker = self._next[maker]
            while queue:
                maker, visible, hidden = queue.popleft()
                maker_cmd = self._cmd[maker]
                if stp_active and maker_cmd.member == member:
                    if stp == "cancel_oldest":
                        continue
                    # cancel_newest and cancel_both end the incoming order; decrement
                    # reduces it without a trade: either way it cannot fill whole.
                    return False
                if visible >= needed:
                    return True
                needed -= visible
                if hidden:
                    tranche = min(maker_cmd.display_qty, hidden)
                    queue.append((maker, tranche, hidden - tranche))
        return False

    # ------------------------------------------------------------------ resting orders

    def _rest(self, book: Book, oid: int, side: int, price: int, visible: int, hidden: int) -> None:
        """Put an order at the back of its price level with a new time priority."""
        levels = book.levels[side]
        level = levels.get(price)
        if level is None:
            levels[price] = Level(oid, oid, visible, 1)
            insort(book.keys[side], price if side == BUY else -price)
            self._prev[oid] = 0
        else:
            tail = level.tail
            self._next[tail] = oid
            self._prev[oid] = tail
            level.tail = oid
            level.total += visible
            level.count += 1
        self._next[oid] = 0
        self._side[oid] = side
        self._price[oid] = price
        self._open[oid] = visible
        self._hidden[oid] = hidden
        stamp = self._arrival_stamp = self._arrival_stamp + 1
        self._arrival[oid] = stamp
        self._digest_sum += (stamp * ARRIVAL_WEIGHT + price) * (visible + hidden * HIDDEN_WEIGHT)
        if self._touched is not None:
            self._touched[(book, side, price)] = None

    def _remove_resting(self, oid: int, book: Book, drop_empty_level: bool = True) -> None:
        """Take a resting order out of its level and close it.

        The matching loop passes `drop_empty_level=False` because it drops the level
        itself once it has finished with it.
        """
        side = self._side[oid]
        price = self._price[oid]
        levels = book.levels[side]
        level = levels[price]
        previous = self._prev[oid]
        following = self._next[oid]
        if previous:
            self._next[previous] = following
        else:
            level.head = following
        if following:
            self._prev[following] = previous
        else:
            level.tail = previous
        visible = self._open[oid]
        level.total -= visible
        level.count -= 1
        if drop_empty_level and not level.count:
            del levels[price]
            keys = book.keys[side]
            del keys[bisect_left(keys, price if side == BUY else -price)]
        self._digest_sum -= (self._arrival[oid] * ARRIVAL_WEIGHT + price) * (visible + self._hidden[oid] * HIDDEN_WEIGHT)
        self._open[oid] = 0
        self._hidden[oid] = 0
        self._prev[oid] = 0
        self._next[oid] = 0
        if self._touched is not None:
            self._touched[(book, side, price)] = None

    # ------------------------------------------------------------------ stops

    def _add_stop(self, book: Book, oid: int, side: int, stop_price: int, qty: int) -> None:
        if side == BUY:
            insort(book.buy_stops, (stop_price, oid))
        else:
            insort(book.sell_stops, (-stop_price, oid))
        self._side[oid] = side | STOP_FLAG
        self._price[oid] = stop_price
        self._open[oid] = qty
        stamp = self._arrival_stamp = self._arrival_stamp + 1
        self._arrival[oid] = stamp
        self._digest_sum += (stamp * ARRIVAL_WEIGHT + stop_price) * qty

    def _remove_stop(self, oid: int, book: Book) -> None:
        stop_price = self._price[oid]
        if self._side[oid] & 1 == BUY:
            stops = book.buy_stops
            entry = (stop_price, oid)
        else:
            stops = book.sell_stops
            entry = (-stop_price, oid)
        index = bisect_left(stops, entry)
        if index >= len(stops) or stops[index] != entry:
            raise InvariantViolation(f"stop order {oid} is not in its instrument's stop list")
        del stops[index]
        self._digest_sum -= (self._arrival[oid] * ARRIVAL_WEIGHT + stop_price) * self._open[oid]
        self._side[oid] &= 1
        self._open[oid] = 0

    def _run_stops(self, seq: int, book: Book, events: list) -> None:
        """Trigger, lowest order id first, every stop whose condition holds, one at a time."""
        while True:
            last = book.last_trade_price
            if last is None:
                return
            chosen = 0
            for stop_price, oid in book.buy_stops:
                if stop_price > last:
                    break
                if not chosen or oid < chosen:
                    chosen = oid
            for negated_stop_price, oid in book.sell_stops:
                if -negated_stop_price < last:
                    break
                if not chosen or oid < chosen:
                    chosen = oid
            if not chosen:
                return
            self._trigger(seq, book, chosen, events)

    def _trigger(self, seq: int, book: Book, oid: int, events: list) -> None:
        cmd = self._cmd[oid]
        qty = self._open[oid]
        self._remove_stop(oid, book)
        events.append(StopTriggered(seq, oid, cmd.member, cmd.client_order_id, book.symbol))
        side = self._side[oid]
        if cmd.order_type == "stop":
            self._execute_market(seq, book, oid, cmd, side, qty, events)
        else:
            band = book.band() if book.band_bps > 0 else None
            self._execute_limit(seq, book, oid, cmd, side, cmd.price, qty, cmd.tif or "gtc", band, events)

    # ------------------------------------------------------------------ cancel / replace

    def _cancel(self, seq: int, cmd: CancelOrder, events: list) -> None:
        member = cmd.member
        requested = cmd.order_id
        if requested is None:
            if cmd.client_order_id is None:
                events.append(OrderRejected(
                    seq, member, None, "malformed", None, "cancel needs order_id or client_order_id"
                ))
                return
            ids = self._client_order_ids.get(member)
            requested = ids.get(cmd.client_order_id, 0) if ids is not None else 0
        o_open = self._open
        if not (0 < requested < self.next_order_id) or not o_open[requested]:
            events.append(OrderRejected(seq, member, cmd.client_order_id, "unknown_order"))
            return
        # An assigned order id from here on (a native integer in a compiled build).
        oid = requested
        original = self._cmd[oid]
        if original.member != member:
            events.append(OrderRejected(seq, member, cmd.client_order_id, "not_owner"))
            return
        side = self._side[oid]
        if side & STOP_FLAG or self._touched is not None:
            self._cancel_open_order(seq, oid, "user", events)
            return
        # The common case, a resting order without book updates: `_cancel_open_order`
        # and `_remove_resting` inlined.
        symbol = original.symbol
        book = self._book_of(symbol)
        price = self._price[oid]
        visible = o_open[oid]
        hidden = self._hidden[oid]
        o_prev = self._prev
        o_next = self._next
        previous = o_prev[oid]
        following = o_next[oid]
        if side == BUY:
            levels = book.bid_levels
            keys = book.bid_keys
        else:
            levels = book.ask_levels
            keys = book.ask_keys
        level = levels[price]
        # The closed order's own links stay stale, as closed orders' links may (the
        # canonical encoding writes them as 0).
        if previous:
            o_next[previous] = following
        else:
            level.head = following
        if following:
            o_prev[following] = previous
        else:
            level.tail = previous
        count = level.count - 1
        if count:
            level.count = count
            level.total -= visible
        else:
            del levels[price]
            del keys[bisect_left(keys, price if side == BUY else -price)]
        if hidden:
            self._digest_sum -= (self._arrival[oid] * ARRIVAL_WEIGHT + price) * (visible + hidden * HIDDEN_WEIGHT)
            self._hidden[oid] = 0
        else:
            self._digest_sum -= (self._arrival[oid] * ARRIVAL_WEIGHT + price) * visible
        o_open[oid] = 0
        self._cmd[oid] = None
        events.append(OrderCancelled(
            seq, oid, "user", visible + hidden, member, original.client_order_id, symbol
        ))

    def _cancel_open_order(self, seq: int, oid: int, reason: str, events: list) -> None:
        cmd = self._cmd[oid]
        book = self.books[cmd.symbol]
        remaining = self._open[oid] + self._hidden[oid]
        if self._side[oid] & STOP_FLAG:
            self._remove_stop(oid, book)
        else:
            self._remove_resting(oid, book)
        self._cmd[oid] = None
        events.append(OrderCancelled(
            seq, oid, reason, remaining, cmd.member, cmd.client_order_id, cmd.symbol
        ))

    def _replace(self, seq: int, cmd: ReplaceOrder, events: list) -> None:
        member = cmd.member
        oid = cmd.order_id
        client_order_id = cmd.client_order_id
        if not (0 < oid < self.next_order_id) or not self._open[oid]:
            events.append(OrderRejected(seq, member, client_order_id, "unknown_order"))
            return
        original = self._cmd[oid]
        if original.member != member:
            events.append(OrderRejected(seq, member, client_order_id, "not_owner"))
            return
        qty = cmd.qty
        book = self.books[original.symbol]
        reason = None
        if self._side[oid] & STOP_FLAG or cmd.display_qty is not None or qty == 0:
            reason = "invalid_replace"
        elif not (0 < qty <= VALUE_MAX and qty % book.lot_size == 0):
            reason = "invalid_quantity"
        elif original.display_qty is not None and qty > original.display_qty * self._iceberg_tranches_max:
            # An iceberg keeps its display: a quantity beyond its tranche bound is refused
            # just as it would be at place (see ICEBERG_TRANCHES_MAX).
            reason = "invalid_quantity"
        elif cmd.price is not None and not _valid_value(cmd.price, book.tick_size):
            reason = "invalid_price"
        elif book.halted:
            reason = "halted"
        old_price = self._price[oid]
        # Not yet checked when `reason` is set: a Python int here (any size) in both builds.
        price = old_price if cmd.price is None else cmd.price
        price_changed = price != old_price
        if reason is None and price_changed:
            band = book.band()
            if band is not None and not band[0] <= price <= band[1]:
                reason = "price_band"
            elif original.post_only and self._would_cross(book, original.side, price):
                reason = "post_only_would_cross"
        if reason is not None:
            events.append(OrderRejected(seq, member, client_order_id, reason))
            return
        visible = self._open[oid]
        hidden = self._hidden[oid]
        if not price_changed and qty <= visible + hidden:
            # Quantity down (or unchanged) at the same price keeps time priority; an
            # iceberg gives up hidden quantity first.
            reduction = visible + hidden - qty
            if reduction:
                weight = self._arrival[oid] * ARRIVAL_WEIGHT + old_price
                self._digest_sum -= weight * (visible + hidden * HIDDEN_WEIGHT)
                if reduction <= hidden:
                    hidden -= reduction
                else:
                    level = book.levels[self._side[oid]][old_price]
                    level.total -= reduction - hidden
                    visible -= reduction - hidden
                    hidden = 0
                self._open[oid] = visible
                self._hidden[oid] = hidden
                self._digest_sum += weight * (visible + hidden * HIDDEN_WEIGHT)
                if self._touched is not None:
                    self._touched[(book, self._side[oid], old_price)] = None
            events.append(OrderReplaced(
                seq, oid, qty, price, True, member, original.client_order_id, book.symbol
            ))
            return
        # A price change or a quantity increase loses priority: the order leaves its
        # level and comes back as an incoming order with its old id.
        side = self._side[oid]
        self._remove_resting(oid, book)
        events.append(OrderReplaced(
            seq, oid, qty, price, False, member, original.client_order_id, book.symbol
        ))
        key_limit = -price if side == BUY else price
        remaining, stopped = self._match(
            seq, book, oid, original, side, qty, original.stp or "cancel_newest",
            key_limit, KEY_UNLIMITED, KEY_UNLIMITED_MAX, events,
        )
        if stopped == STOPPED_STP:
            events.append(OrderCancelled(
                seq, oid, "stp", remaining, member, original.client_order_id, book.symbol
            ))
            remaining = 0
        if remaining:
            display = original.display_qty
            if display is not None and display < remaining:
                self._rest(book, oid, side, price, display, remaining - display)
            else:
                self._rest(book, oid, side, price, remaining, 0)
        else:
            self._close_unrested(oid)
        if book.buy_stops or book.sell_stops:
            self._run_stops(seq, book, events)

    def _open_orders(self, books) -> list[int]:
        """Every open order id (resting or untriggered stop) of the given books, ascending.

        Walks the books rather than keeping a per-member index: mass cancel and end of
        day are rare, and an index would cost every order a dict insert and delete.
        """
        found = []
        o_next = self._next
        for book in books:
            for levels in book.levels:
                for level in levels.values():
                    oid = level.head
                    while oid:
                        found.append(oid)
                        oid = o_next[oid]
            found.extend(oid for _, oid in book.buy_stops)
            found.extend(oid for _, oid in book.sell_stops)
        found.sort()
        return found

    def _mass_cancel(self, seq: int, cmd: MassCancel, events: list) -> None:
        symbol = cmd.symbol
        if symbol is None:
            books = list(self.books.values())
        else:
            book = self.books.get(symbol)
            if book is None:
                events.append(OrderRejected(seq, cmd.member, None, "unknown_symbol"))
                return
            books = [book]
        member = cmd.member
        o_cmd = self._cmd
        for oid in self._open_orders(books):
            if o_cmd[oid].member == member:
                self._cancel_open_order(seq, oid, "mass_cancel", events)

    def _end_of_day(self, seq: int, cmd: EndOfDay, events: list) -> None:
        o_cmd = self._cmd
        for oid in self._open_orders(self.books.values()):
            if o_cmd[oid].tif == "day":
                self._cancel_open_order(seq, oid, "expired", events)

    # ------------------------------------------------------------------ instruments

    def _add_instrument(self, seq: int, cmd: AddInstrument, events: list) -> None:
        tick = 1 if cmd.tick_size is None else cmd.tick_size
        lot = 1 if cmd.lot_size is None else cmd.lot_size
        band = 0 if cmd.band_bps is None else cmd.band_bps
        reason = None
        if self._text_bounded:
            reason = _text_problem(cmd.symbol, "symbol", SYMBOL_BYTES_MAX)
        if reason is not None:
            pass
        elif cmd.symbol in self.books:
            reason = "duplicate_symbol"
        elif not 0 < tick <= VALUE_MAX:
            reason = "invalid_price"
        elif not 0 < lot <= VALUE_MAX:
            reason = "invalid_quantity"
        elif band < 0 or band > VALUE_MAX:
            reason = "invalid_price"
        elif cmd.reference_price is not None and not _valid_value(cmd.reference_price, tick):
            reason = "invalid_price"
        if reason is not None:
            events.append(OrderRejected(seq, None, None, reason))
            return
        self.books[cmd.symbol] = Book(cmd.symbol, tick, lot, band, cmd.reference_price)

    def _halt(self, seq: int, cmd: HaltInstrument, events: list) -> None:
        book = self.books.get(cmd.symbol)
        if book is None:
            events.append(OrderRejected(seq, None, None, "unknown_symbol"))
            return
        if not book.halted:
            book.halted = True
            if self.book_updates:
                events.append(InstrumentStatusChanged(seq, book.symbol, "halted"))

    def _resume(self, seq: int, cmd: ResumeInstrument, events: list) -> None:
        book = self.books.get(cmd.symbol)
        if book is None:
            events.append(OrderRejected(seq, None, None, "unknown_symbol"))
            return
        if book.halted:
            book.halted = False
            if self.book_updates:
                events.append(InstrumentStatusChanged(seq, book.symbol, "trading"))

    def _malformed(self, seq: int, cmd: MalformedCommand, events: list) -> None:
        events.append(OrderRejected(seq, cmd.member, cmd.client_order_id, "malformed", None, cmd.detail))

    def _checkpoint(self, seq: int, cmd: Checkpoint, events: list) -> None:
        """Records the runtime writes for itself change nothing in the books and emit
        nothing. A rules checkpoint switches the matching rules for the records after it
        (the journal decides which rules replay it). A version this build does not
        implement changes nothing here: the replay tools refuse such a journal before
        they apply the checkpoint, and a node never writes one."""
        if cmd.kind == "rules" and cmd.version in REPLAYABLE_RULES_VERSIONS:
            self.set_rules_version(cmd.version)

    def set_rules_version(self, version: int) -> None:
        """Apply the matching rules of `version` from now on (one of REPLAYABLE_RULES_VERSIONS)."""
        self.rules_version = version
        self._iceberg_tranches_max = _ICEBERG_TRANCHES_MAX_BY_RULES_VERSION[version]
        self._text_bounded = version >= 3

    def _emit_level_changes(self, seq: int, events: list) -> None:
        touched = self._touched
        for book, side, price in touched:
            level = book.levels[side].get(price)
            if level is None:
                events.append(LevelChanged(seq, book.symbol, SIDE_NAMES[side], price, 0, 0))
            else:
                events.append(LevelChanged(seq, book.symbol, SIDE_NAMES[side], price, level.total, level.count))
        touched.clear()

    # ------------------------------------------------------------------ queries

    def state_digest(self) -> int:
        """A 64-bit digest of the whole state, cheap at any sequence (no book walk)."""
        hasher = hashlib.blake2b(digest_size=8)
        # Read modulo 2**128 (a negative value in the pure build, possible after a
        # snapshot restore stored it reduced, has the same 128 low bits as the native sum).
        digest_sum = self._digest_sum
        hasher.update(_DIGEST_STRUCT.pack(
            digest_sum & DIGEST_MASK,
            (digest_sum >> 64) & DIGEST_MASK,
            self.next_order_id,
            self.next_trade_id,
            self.last_sequence,
        ))
        # The rules version decides future events, so it is state; version 1 folds in
        # nothing, which keeps the digests (and digest checkpoints) of version-1
        # journals what version-1 builds computed.
        if self.rules_version != 1:
            hasher.update(b"rules%d\x00" % self.rules_version)
        # Sorted, not insertion order: a state restored from a snapshot holds its books in
        # symbol order, and the digest must not depend on how the state was reached.
        for symbol in sorted(self.books):
            book = self.books[symbol]
            hasher.update(symbol.encode())
            hasher.update(b"\x00")
            hasher.update(repr((
                book.tick_size, book.lot_size, book.band_bps, book.reference_price,
                book.last_trade_price, book.halted,
            )).encode())
        return int.from_bytes(hasher.digest(), "little")

    def best_bid_ask(self, symbol: str) -> tuple:
        """L1: (bid price, bid visible qty, ask price, ask visible qty); None where empty."""
        book = self.books[symbol]
        bid_keys, ask_keys = book.keys
        bid = ask = None
        bid_qty = ask_qty = None
        if bid_keys:
            bid = bid_keys[-1]
            bid_qty = book.levels[BUY][bid].total
        if ask_keys:
            ask = -ask_keys[-1]
            ask_qty = book.levels[SELL][ask].total
        return bid, bid_qty, ask, ask_qty

    def depth(self, symbol: str, levels: Optional[int] = None) -> dict:
        """L2: {"bids": [(price, visible qty, orders)...], "asks": [...]}, best first."""
        book = self.books[symbol]
        result = {}
        for side, name, sign in ((BUY, "bids", 1), (SELL, "asks", -1)):
            keys = book.keys[side]
            chosen = keys[::-1] if levels is None else keys[: -levels - 1 : -1]
            rows = []
            for key in chosen:
                level = book.levels[side][key * sign]
                rows.append((key * sign, level.total, level.count))
            result[name] = rows
        return result

    def orders(self, symbol: str) -> dict:
        """L3: {"bids": [order dicts in priority order], "asks": [...]}, best level first."""
        book = self.books[symbol]
        result = {}
        for side, name, sign in ((BUY, "bids", 1), (SELL, "asks", -1)):
            rows = []
            for key in reversed(book.keys[side]):
                price = key * sign
                oid = book.levels[side][price].head
                while oid:
                    cmd = self._cmd[oid]
                    rows.append({
                        "order_id": oid,
                        "member": cmd.member,
                        "client_order_id": cmd.client_order_id,
                        "price": price,
                        "visible_qty": self._open[oid],
                        "hidden_qty": self._hidden[oid],
                    })
                    oid = self._next[oid]
            result[name] = rows
        return result

    def stops(self, symbol: str) -> list:
        """Untriggered stops of an instrument as dicts, in ascending order id."""
        book = self.books[symbol]
        rows = []
        for oid in sorted([oid for _, oid in book.buy_stops] + [oid for _, oid in book.sell_stops]):
            cmd = self._cmd[oid]
            rows.append({
                "order_id": oid, "member": cmd.member, "side": cmd.side,
                "stop_price": self._price[oid], "qty": self._open[oid], "order_type": cmd.order_type,
            })
        return rows

    def status_of(self, oid: int) -> int:
        """CLOSED, RESTING or PENDING_STOP for an assigned order id."""
        if not self._open[oid]:
            return CLOSED
        return PENDING_STOP if self._side[oid] & STOP_FLAG else RESTING

    def order_state(self, oid: int) -> Optional[dict]:
        """One order's current state, or None if the id was never assigned."""
        if not 0 < oid < self.next_order_id:
            return None
        status = self.status_of(oid)
        # A closed order's command is gone; its owner is found among the members' id
        # dicts (few, so a short walk), its symbol from its book, its side from its
        # column (kept, with the stop flag, for closed orders too).
        owner = self._owner[oid]
        member = next(name for name, ids in self._client_order_ids.items() if ids is owner)
        side_name = SIDE_NAMES[self._side[oid] & 1]
        return {
            "order_id": oid,
            "status": ("closed", "resting", "pending_stop")[status],
            "member": member,
            "symbol": self._order_book[oid].symbol,
            "side": side_name,
            "stop_price": self._price[oid] if status == PENDING_STOP else None,
            "price": self._price[oid] if status else None,
            "visible_qty": self._open[oid],
            "hidden_qty": self._hidden[oid],
        }

    def open_order_count(self) -> int:
        total = 0
        for book in self.books.values():
            for levels in book.levels:
                total += sum(level.count for level in levels.values())
            total += len(book.buy_stops) + len(book.sell_stops)
        return total


# A compiled build keeps the constants above that its .pxd declares as C constants, which
# Python code cannot import; this puts their values into the module namespace (in the
# pure build it rebinds each name to itself).
globals().update(
    VALUE_MAX=VALUE_MAX, ICEBERG_TRANCHES_MAX=ICEBERG_TRANCHES_MAX, BUY=BUY, SELL=SELL,
    CLOSED=CLOSED, RESTING=RESTING, PENDING_STOP=PENDING_STOP, STOP_FLAG=STOP_FLAG,
    STOPPED_FILLED=STOPPED_FILLED, STOPPED_LIMIT=STOPPED_LIMIT, STOPPED_BAND=STOPPED_BAND,
    STOPPED_EMPTY=STOPPED_EMPTY, STOPPED_STP=STOPPED_STP, ARRIVAL_WEIGHT=ARRIVAL_WEIGHT,
    HIDDEN_WEIGHT=HIDDEN_WEIGHT, COLUMN_CHUNK=COLUMN_CHUNK, KEY_UNLIMITED=KEY_UNLIMITED,
    KEY_UNLIMITED_MAX=KEY_UNLIMITED_MAX,
)
