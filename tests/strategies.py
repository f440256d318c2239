"""Hypothesis strategies: command streams for the matching state machine.

Two instruments (RULES.md's shapes, chosen so that the interesting rules fire often):

* ``S1``: tick 1, lot 1, no band; prices 96..104, quantities 1..8;
* ``S2``: tick 5, lot 10, band 1000 bps around reference 100 (so [90, 110] before the
  first trade); prices 80..120 in steps of 5 (some outside the band), quantities 10..80.

Three members, prices in a narrow range so that orders cross often, every order type,
tif, post_only, icebergs, stops and STP mode, cancels and replaces that usually name an
order that exists (by order id or client order id) and, now and then, invalid values
(zero, off-tick, off-lot, too large, missing, unknown ids, unknown symbols, duplicate
client order ids, malformed records).

Probabilities are expressed with `_chance`, which draws an integer and compares it, so
that hypothesis shrinks towards the common, valid case.

`StreamContext` remembers what a generator has produced so far (client order ids, which
order ids are plausible and who owns them, halted symbols, the thinner side and best
prices of each book). `command_streams()` fills it, by default, from a scratch `Exchange`
that follows the stream as it is drawn (so cancels and replaces name open orders); the
stream is still a plain list of commands that the tests replay and check independently.
The stateful test fills it from its reference model instead. `random_scenario_lines()`
is the same idea without hypothesis, from `random.Random(seed)` only.

Tuning notes (event and path counts were measured while writing this): hypothesis favours
the first choice of a `sampled_from`, so sides are steered towards the thinner side of
the book half the time, halts are short (a resume of a halted symbol is drawn often) and
replaces move an order's own price or jump to the opposite best.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Optional

from hypothesis import strategies as st

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
from statemachine.exchange import ICEBERG_TRANCHES_MAX
from statemachine.version import RULES_VERSION

VALUE_MAX = 10**12
MEMBERS = ("M1", "M2", "M3")
ORDER_TYPES = ("limit", "market", "stop", "stop_limit")
TIFS = ("gtc", "ioc", "fok", "day")
STP_MODES = ("none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement")


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    tick_size: int
    lot_size: int
    band_bps: int
    reference_price: Optional[int]
    prices: tuple
    qtys: tuple
    bad_prices: tuple
    bad_qtys: tuple

    def add_command(self) -> AddInstrument:
        return AddInstrument(
            self.symbol,
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            band_bps=self.band_bps,
            reference_price=self.reference_price,
        )


S1 = SymbolSpec(
    "S1", 1, 1, 0, None,
    prices=tuple(range(96, 105)),
    qtys=tuple(range(1, 9)),
    bad_prices=(0, -1, VALUE_MAX + 1),
    bad_qtys=(0, -1, VALUE_MAX + 1),
)
S2 = SymbolSpec(
    "S2", 5, 10, 1000, 100,
    prices=tuple(range(80, 121, 5)),
    qtys=tuple(range(10, 81, 10)),
    bad_prices=(0, -5, 102, 3, VALUE_MAX + 5),
    bad_qtys=(0, -10, 15, 5, VALUE_MAX + 10),
)
# Never added by the setup; orders for it are `unknown_symbol` unless a random
# add_instrument created it.
S3 = SymbolSpec(
    "S3", 1, 1, 0, None,
    prices=tuple(range(96, 105)),
    qtys=tuple(range(1, 9)),
    bad_prices=(0,),
    bad_qtys=(0,),
)
SPECS = {spec.symbol: spec for spec in (S1, S2, S3)}
INSTRUMENTS_SETUP = (S1.add_command(), S2.add_command())
# Every generated stream starts as a node's journal does: a rules checkpoint naming this
# build's rules (a fresh exchange applies version 1, what a journal without one was
# written under), then the instruments.
SETUP = (Checkpoint(kind="rules", version=RULES_VERSION),) + INSTRUMENTS_SETUP


_PERCENT = st.integers(0, 99)
_SAMPLED: dict = {}


def _one_of(draw, values: tuple):
    """draw(st.sampled_from(values)), with the strategy built once per tuple.

    Only for small, fixed tuples: the cache is never emptied.
    """
    strategy = _SAMPLED.get(values)
    if strategy is None:
        strategy = _SAMPLED[values] = st.sampled_from(values)
    return draw(strategy)


def _chance(draw, percent: int) -> bool:
    """True about `percent`% of the time; shrinks to False."""
    return draw(_PERCENT) >= 100 - percent


@dataclass
class OrderRef:
    order_id: int
    member: str
    symbol: str
    client_order_id: Optional[str] = None
    side: Optional[str] = None
    price: Optional[int] = None
    can_rest: bool = True


@dataclass
class StreamContext:
    """What the generator knows: used client order ids and plausible order ids."""

    coids: dict = field(default_factory=lambda: {m: [] for m in MEMBERS})
    counter: int = 0
    refs: list = field(default_factory=list)  # OrderRef of (probably) assigned ids
    open_refs: Optional[list] = None  # exact open orders, when a model knows them
    halted: set = field(default_factory=set)  # symbols (probably) halted now
    thin_side: dict = field(default_factory=dict)  # symbol -> the side with fewer resting orders
    best: dict = field(default_factory=dict)  # (symbol, side) -> best resting price

    def fresh_coid(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    def observe(self, command) -> None:
        """Record a generated command (stateless mode: guess which places get an id)."""
        if isinstance(command, HaltInstrument):
            self.halted.add(command.symbol)
        elif isinstance(command, ResumeInstrument):
            self.halted.discard(command.symbol)
        if not isinstance(command, PlaceOrder) or not self._probably_accepted(command):
            return
        self.coids.setdefault(command.member, []).append(command.client_order_id)
        self.refs.append(OrderRef(
            len(self.refs) + 1, command.member, command.symbol, command.client_order_id,
            command.side, command.price,
            can_rest=command.order_type != "market" and command.tif in (None, "gtc", "day"),
        ))

    def _probably_accepted(self, command: PlaceOrder) -> bool:
        """Whether a place will get an order id (band and post_only are not predicted)."""
        spec = SPECS[command.symbol]
        if command.symbol == "S3" or command.symbol in self.halted:
            return False
        if command.client_order_id in self.coids.get(command.member, ()):
            return False
        if not _valid(command.qty, spec.lot_size):
            return False
        limit_like = command.order_type in ("limit", "stop_limit")
        if limit_like and command.display_qty is not None and not (
            _valid(command.display_qty, spec.lot_size) and command.display_qty < command.qty
            and command.qty <= command.display_qty * ICEBERG_TRANCHES_MAX
        ):
            return False
        if limit_like and not _valid(command.price, spec.tick_size):
            return False
        if command.order_type in ("stop", "stop_limit") and not _valid(command.stop_price, spec.tick_size):
            return False
        return True


def _valid(value, multiple: int) -> bool:
    return type(value) is int and 0 < value <= VALUE_MAX and value % multiple == 0


# ---------------------------------------------------------------------- values


# Steps from the middle price, away from the other side: a buy at offset k is priced
# mid - k ticks, a sell mid + k. Negative offsets cross; most books end up two-sided
# with bids below asks, and an order crosses often but not always.
_OFFSETS = (0, 1, -1, 0, 2, -1, 1, -2, 3)


def _price(draw, spec: SymbolSpec, required: bool = True, side: Optional[str] = None):
    """A price for `spec`: mostly on the grid, sometimes invalid or missing."""
    if _chance(draw, 6):
        return _one_of(draw, spec.bad_prices + ((None,) if required else ()))
    if side is None or _chance(draw, 25):
        return _one_of(draw, spec.prices)
    mid = spec.prices[len(spec.prices) // 2]
    step = _one_of(draw, _OFFSETS) * spec.tick_size
    return mid - step if side == "buy" else mid + step


def _qty(draw, spec: SymbolSpec):
    if _chance(draw, 5):
        return _one_of(draw, spec.bad_qtys)
    if _chance(draw, 2):
        return VALUE_MAX - VALUE_MAX % spec.lot_size  # the largest valid quantity
    return _one_of(draw, spec.qtys)


def _large_iceberg_display(draw, spec: SymbolSpec, qty: int) -> int:
    """A display for an iceberg of a large quantity: mostly far within the tranche bound
    (rules version 2: at most ICEBERG_TRANCHES_MAX tranches), sometimes exactly at it,
    sometimes one lot short of it (then the place or replace is `invalid_quantity`).
    Without the bound, a 10**12-lot order meeting a 10**12-lot iceberg showing one lot
    would emit 10**12 trade events in one command."""
    lot = spec.lot_size
    fewest = -(-qty // ICEBERG_TRANCHES_MAX)
    fewest = -(-fewest // lot) * lot  # the smallest display within the bound
    return _one_of(draw, (qty // 100 // lot * lot, qty // 7 // lot * lot, fewest, fewest - lot))


def _place(draw, ctx: StreamContext, member: Optional[str] = None) -> PlaceOrder:
    spec = S3 if _chance(draw, 3) else _one_of(draw, (S1, S2))
    member = member or _one_of(draw, MEMBERS)
    if _chance(draw, 3) and ctx.coids.get(member):
        known = ctx.coids[member]
        client_order_id = known[_index(draw, len(known))]  # duplicate
    elif _chance(draw, 4):
        # Rules version 3 bounds ids: the longest valid one, and each way to break it.
        client_order_id = _one_of(draw, ("i" * 64, "i" * 65, "tab\tid", "caf\u00e9", "del\x7f"))
    else:
        client_order_id = ctx.fresh_coid()
    symbol = spec.symbol
    if _chance(draw, 2):
        symbol = _one_of(draw, ("S" * 17, "S\x00"))
    roll = draw(_PERCENT)
    order_type = "limit" if roll < 62 else "market" if roll < 76 else "stop_limit" if roll < 89 else "stop"
    thin = ctx.thin_side.get(spec.symbol)
    # Hypothesis favours the first choice ("buy"); steering half of the orders to the
    # thinner side keeps both sides of the book populated.
    side = thin if thin is not None and _chance(draw, 50) else _one_of(draw, ("buy", "sell"))
    qty = _qty(draw, spec)
    limit_like = order_type in ("limit", "stop_limit")
    if limit_like:
        price = _price(draw, spec, side=side)
    else:
        price = _price(draw, spec) if _chance(draw, 10) else None  # ignored
    if order_type in ("stop", "stop_limit"):
        # A buy stop triggers at or above its stop price: mostly above the mid.
        stop_price = _price(draw, spec, side=_opposite(side))
    else:
        stop_price = _price(draw, spec) if _chance(draw, 5) else None  # ignored
    # Mostly orders that can rest, so that books fill up and later orders cross.
    tif = _one_of(draw, ("gtc", "gtc", "day", "day", "ioc", "fok")) if _chance(draw, 70) else None
    post_only = True if _chance(draw, 12) else _one_of(draw, (None, False))
    display_qty = None
    if _chance(draw, 20):
        lot = spec.lot_size
        if type(qty) is int and qty > spec.qtys[-1]:
            display_qty = _large_iceberg_display(draw, spec, qty)
        elif _chance(draw, 15):
            display_qty = _one_of(draw, (0, -lot, lot + 1 if lot > 1 else 0))
        elif type(qty) is int and qty > lot:
            top = min(qty, spec.qtys[-1] + lot) // lot
            display_qty = _one_of(draw, tuple(range(lot, top * lot + 1, lot)))
        else:
            display_qty = lot  # == qty or > qty: invalid for a limit order
    stp = _one_of(draw, STP_MODES) if _chance(draw, 70) else None
    return PlaceOrder(
        member=member, client_order_id=client_order_id, symbol=symbol, side=side,
        order_type=order_type, qty=qty, price=price, tif=tif, post_only=post_only,
        display_qty=display_qty, stop_price=stop_price, stp=stp,
    )


def _index(draw, size: int) -> int:
    """An index into a sequence of `size` items (strategies cached per size)."""
    strategy = _SAMPLED.get(size)
    if strategy is None:
        strategy = _SAMPLED[size] = st.integers(0, size - 1)
    return draw(strategy)


def _opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def _pick_ref(
    draw, ctx: StreamContext, resting: bool = False
) -> tuple[int, str, SymbolSpec, Optional[OrderRef]]:
    """(order id, member, spec, ref) of an order that probably exists; owner mostly.

    With `resting`, prefer orders in the book (replacing an untriggered stop is only
    ever `invalid_replace`).
    """
    pool = ctx.open_refs if ctx.open_refs else ctx.refs
    if resting and ctx.open_refs and not _chance(draw, 10):
        pool = [ref for ref in ctx.open_refs if ref.can_rest] or pool
    if pool and not _chance(draw, 10):
        if ctx.open_refs and ctx.refs and _chance(draw, 15):
            pool = ctx.refs  # perhaps a closed or filled order
        if pool is ctx.refs and ctx.open_refs is None and _chance(draw, 80):
            # Stateless guess: recent orders that can rest are more likely still open.
            restable = [ref for ref in pool[-12:] if ref.can_rest]
            pool = restable or pool
        ref = pool[_index(draw, len(pool))]
        member = ref.member if not _chance(draw, 15) else _one_of(draw, MEMBERS)
        return ref.order_id, member, SPECS.get(ref.symbol, S1), ref
    order_id = _one_of(draw, (0, -1, 10**13)) if _chance(draw, 50) else len(ctx.refs) + 1
    return order_id, _one_of(draw, MEMBERS), _one_of(draw, (S1, S2)), None


def _cancel(draw, ctx: StreamContext) -> CancelOrder:
    roll = draw(_PERCENT)
    if roll >= 97:
        return CancelOrder(member=_one_of(draw, MEMBERS))  # neither id: malformed
    if roll >= 60:
        if ctx.open_refs and not _chance(draw, 20):
            ref = ctx.open_refs[_index(draw, len(ctx.open_refs))]
            return CancelOrder(member=ref.member, client_order_id=ref.client_order_id)
        member = _one_of(draw, MEMBERS)
        known = ctx.coids.get(member) or []
        if known and not _chance(draw, 10):
            coid = known[_index(draw, len(known))]
        else:
            coid = "nope"
        return CancelOrder(member=member, client_order_id=coid)
    order_id, member, _, _ = _pick_ref(draw, ctx)
    coid = "nope" if _chance(draw, 5) else None  # both given: order_id wins
    return CancelOrder(member=member, order_id=order_id, client_order_id=coid)


def _replace(draw, ctx: StreamContext) -> ReplaceOrder:
    order_id, member, spec, ref = _pick_ref(draw, ctx, resting=True)
    qty = 0 if _chance(draw, 5) else _qty(draw, spec)
    across = None
    if ref is not None and ref.side is not None:
        across = ctx.best.get((ref.symbol, _opposite(ref.side)))
    if _chance(draw, 60):
        price = None
    elif across is not None and _chance(draw, 30):
        price = across  # a replace that crosses and trades as the taker
    elif ref is not None and ref.price is not None and ref.side is not None and _chance(draw, 70):
        # Move the order's own price: towards the other side (and often across it),
        # back, or not at all.
        step = _one_of(draw, (1, 2, 3, -1, 0, 4)) * spec.tick_size
        price = ref.price + step if ref.side == "buy" else ref.price - step
    else:
        price = _price(draw, spec, required=False)
    display_qty = spec.lot_size if _chance(draw, 3) else None
    client_order_id = "r" if _chance(draw, 5) else None
    return ReplaceOrder(
        member=member, order_id=order_id, qty=qty, price=price,
        display_qty=display_qty, client_order_id=client_order_id,
    )


def _add_instrument(draw) -> AddInstrument:
    if _chance(draw, 30):
        return _one_of(draw, INSTRUMENTS_SETUP)  # duplicate_symbol
    return AddInstrument(
        "S3",
        tick_size=_one_of(draw, (1, 1, 5, 0, -1)),
        lot_size=_one_of(draw, (1, 1, 10, 0)),
        band_bps=_one_of(draw, (None, 0, 500, -1)),
        reference_price=_one_of(draw, (None, 100, 0, 101)),
    )


def _command(draw, ctx: StreamContext):
    if ctx.halted and _chance(draw, 25):
        # Halts are short: most of the time the book trades.
        return ResumeInstrument(_one_of(draw, tuple(sorted(ctx.halted))))
    roll = draw(_PERCENT)
    if roll < 66:
        return _place(draw, ctx)
    if roll < 80:
        return _replace(draw, ctx)
    if roll < 88:
        return _cancel(draw, ctx)
    if roll < 90:
        return MassCancel(
            member=_one_of(draw, MEMBERS), symbol=_one_of(draw, (None, None, "S1", "S2", "S3"))
        )
    if roll < 92:
        return HaltInstrument(_one_of(draw, ("S1", "S2", "S2", "S3")))
    if roll < 96:
        return ResumeInstrument(_one_of(draw, ("S1", "S2", "S2", "S3")))
    if roll < 97:
        return EndOfDay()
    if roll < 99:
        return _add_instrument(draw)
    return MalformedCommand(
        detail="generated", member=_one_of(draw, (None,) + MEMBERS), client_order_id="bad"
    )


# Public strategies. Those taking a context read it (and `fresh_coid` advances it) when
# drawn, so the stateful test passes a context built from its model at each step.


@st.composite
def place_orders(draw, ctx: StreamContext):
    return _place(draw, ctx)


@st.composite
def cancel_orders(draw, ctx: StreamContext):
    return _cancel(draw, ctx)


@st.composite
def replace_orders(draw, ctx: StreamContext):
    return _replace(draw, ctx)


@st.composite
def add_instruments(draw):
    return _add_instrument(draw)


@st.composite
def commands(draw, ctx: StreamContext):
    """One command of any kind; mostly places, then replaces and cancels."""
    return _command(draw, ctx)


@st.composite
def command_streams(draw, min_commands: int = 1, max_commands: int = 60, guided: bool = True):
    """The setup (a rules checkpoint of this build's version, S1, S2) followed by a random stream of commands.

    With `guided`, the commands are applied to a scratch `Exchange` as they are drawn,
    only so that cancels and replaces can name orders that are really open (from the
    `accepted` events and the L3 / stop queries). The stream itself is a plain list of
    commands; the tests replay it and check every property independently. Unguided,
    the context guesses ids from the commands alone.
    """
    ctx = StreamContext()
    count = draw(st.integers(min_commands, max_commands))
    stream = list(SETUP)
    exchange = None
    if guided:
        from statemachine import Exchange
        from statemachine.events import OrderAccepted

        exchange = Exchange()
        for seq, command in enumerate(stream, 1):
            exchange.apply(seq, 0, command)
        by_id: dict[int, OrderRef] = {}
    for _ in range(count):
        command = _command(draw, ctx)
        stream.append(command)
        if exchange is None:
            ctx.observe(command)
            continue
        if isinstance(command, HaltInstrument):
            ctx.halted.add(command.symbol)
        elif isinstance(command, ResumeInstrument):
            ctx.halted.discard(command.symbol)
        for event in exchange.apply(len(stream), 0, command):
            if isinstance(event, OrderAccepted):
                ref = OrderRef(
                    event.order_id, event.member, event.symbol, event.client_order_id,
                    event.side, event.price,
                )
                by_id[event.order_id] = ref
                ctx.refs.append(ref)
                ctx.coids.setdefault(event.member, []).append(event.client_order_id)
        open_ids = []
        for symbol in exchange.books:
            book = exchange.orders(symbol)
            ctx.thin_side[symbol] = "buy" if len(book["bids"]) <= len(book["asks"]) else "sell"
            for side, rows in (("buy", book["bids"]), ("sell", book["asks"])):
                ctx.best[(symbol, side)] = rows[0]["price"] if rows else None
            open_ids += [row["order_id"] for row in book["bids"] + book["asks"]]
            open_ids += [row["order_id"] for row in exchange.stops(symbol)]
            for row in book["bids"] + book["asks"]:
                by_id[row["order_id"]].price = row["price"]
        stop_ids = set()
        for symbol in exchange.books:
            stop_ids.update(row["order_id"] for row in exchange.stops(symbol))
        for oid in open_ids:
            by_id[oid].can_rest = oid not in stop_ids
        ctx.open_refs = [by_id[oid] for oid in sorted(open_ids)]
    return stream


# ---------------------------------------------------------------------- seeded (no hypothesis)


def random_scenario_lines(seed: int, count: int) -> list[dict]:
    """A scenario of `count` records as JSON-ready dicts, from `random.Random(seed)` only.

    Used by the cross-process determinism test, which must build the same file in any
    process without hypothesis. Covers every command type and some invalid values
    (hand-broken lines are added by the test itself). Cancels and replaces name orders
    that are open: a scratch `Exchange` follows the scenario as it is written (the
    output depends only on the seed, since the engine is deterministic).
    """
    from statemachine import Exchange
    from statemachine.codec import parse_scenario_line
    from statemachine.events import OrderAccepted

    exchange = Exchange()
    by_id: dict[int, OrderRef] = {}
    rng = random.Random(seed)
    lines: list[dict] = [
        {"type": "add_instrument", "symbol": "S1"},
        {"type": "add_instrument", "symbol": "S2", "tick_size": 5, "lot_size": 10,
         "band_bps": 1000, "reference_price": 100},
    ]
    for line in lines:
        exchange.apply(exchange.last_sequence + 1, 0, parse_scenario_line(json.dumps(line))[0])
    counter = 0
    for _ in range(count):
        roll = rng.random()
        member = rng.choice(MEMBERS)
        open_ids = []
        for symbol in exchange.books:
            book = exchange.orders(symbol)
            for row in book["bids"] + book["asks"]:
                open_ids.append(row["order_id"])
                by_id[row["order_id"]].price = row["price"]
        recent = [by_id[oid] for oid in sorted(open_ids)]
        halted = sorted(symbol for symbol, book in exchange.books.items() if book.halted)
        if halted and rng.random() < 0.25:
            roll = 0.95  # halts are short: resume
        if roll < 0.6 or (roll < 0.88 and not recent):
            spec = rng.choice((S1, S2)) if rng.random() > 0.03 else S3
            order_type = rng.choices(ORDER_TYPES, weights=(62, 14, 12, 12))[0]
            side = rng.choice(("buy", "sell"))
            mid = spec.prices[len(spec.prices) // 2]
            offset = rng.choice(_OFFSETS) * spec.tick_size
            counter += 1
            line = {
                "type": "place", "member": member, "client_order_id": f"c{counter}",
                "symbol": spec.symbol, "side": side, "order_type": order_type,
                "qty": rng.choice(spec.qtys) if rng.random() > 0.05 else rng.choice(spec.bad_qtys),
            }
            if order_type in ("limit", "stop_limit") or rng.random() < 0.1:
                line["price"] = (mid - offset if side == "buy" else mid + offset) if rng.random() > 0.05 \
                    else rng.choice(spec.bad_prices)
            if order_type in ("stop", "stop_limit"):
                line["stop_price"] = mid + offset if side == "buy" else mid - offset
            if rng.random() < 0.7:
                line["tif"] = rng.choice(("gtc", "gtc", "day", "day", "ioc", "fok"))
            if rng.random() < 0.1:
                line["post_only"] = True
            if rng.random() < 0.2 and line["qty"] in spec.qtys and line["qty"] > spec.lot_size:
                line["display_qty"] = rng.randrange(spec.lot_size, line["qty"], spec.lot_size)
            if rng.random() < 0.7:
                line["stp"] = rng.choice(STP_MODES)
            if rng.random() < 0.03 and counter > 1:
                line["client_order_id"] = f"c{rng.randrange(1, counter)}"
        elif roll < 0.78:
            ref = rng.choice(recent)
            spec = SPECS[ref.symbol]
            line = {"type": "replace", "member": ref.member if rng.random() > 0.1 else member,
                    "order_id": ref.order_id, "qty": rng.choice(spec.qtys)}
            if rng.random() < 0.5 and ref.price is not None:
                step = rng.choice((1, 2, 3, -1, 0)) * spec.tick_size
                line["price"] = ref.price + step if ref.side == "buy" else ref.price - step
        elif roll < 0.88:
            ref = rng.choice(recent)
            owner = ref.member if rng.random() > 0.1 else member
            if rng.random() < 0.5:
                line = {"type": "cancel", "member": owner, "order_id": ref.order_id}
            else:
                line = {"type": "cancel", "member": owner, "client_order_id": ref.client_order_id}
        elif roll < 0.90:
            line = {"type": "mass_cancel", "member": member}
            if rng.random() < 0.5:
                line["symbol"] = rng.choice(("S1", "S2", "S3"))
        elif roll < 0.93:
            line = {"type": "halt", "symbol": rng.choice(("S1", "S2"))}
        elif roll < 0.97:
            line = {"type": "resume", "symbol": rng.choice(halted or ["S1", "S2"])}
        elif roll < 0.99:
            line = {"type": "end_of_day"}
        else:
            line = {"type": "add_instrument", "symbol": rng.choice(("S1", "S3")),
                    "tick_size": rng.choice((1, 0, 5))}
        line["ts"] = 1_700_000_000_000_000_000 + len(lines) * 1000
        lines.append(line)
        command, _ = parse_scenario_line(json.dumps(line))
        for event in exchange.apply(len(lines), 0, command):
            if isinstance(event, OrderAccepted):
                by_id[event.order_id] = OrderRef(
                    event.order_id, event.member, event.symbol, event.client_order_id,
                    event.side, event.price,
                )
    return lines
