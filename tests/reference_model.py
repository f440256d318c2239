"""A deliberately simple reference implementation of ../shared/RULES.md, for tests only.

Written from RULES.md alone, not from statemachine/exchange.py: every order is a plain
dict in one dict keyed by order id, the book is found by a linear scan and a sort on
every step, a fill-or-kill dry run is a `copy.deepcopy` of the whole model. It is slow
on purpose; its only job is to be obviously right so that the engine can be compared
with it event by event and book by book (tests/test_properties_model.py).

Events are plain dicts holding exactly the fields RULES.md requires (plus `seq` and
`type`); `normalise_event` turns an engine event into the same shape.

Decisions where RULES.md can be read two ways (each one documented where it is made):

* a price band is an interval: a market or triggered order trades only at prices inside
  `[low, high]` (RULES: "within the price band"; "a market order whose first price is
  already outside is accepted and cancelled whole");
* a triggered stop-limit meeting a level that is beyond its own limit is stopped by its
  limit (tif applies) even when the level is also outside the band; the band stops it
  (`price_band`) only at a level its limit would have accepted;
* under `decrement`, when both orders reach zero the resting order's `cancelled` comes
  first (as RULES.md orders them for `cancel_both`);
* `post_only` is a property of limit orders at entry: a triggered stop-limit ignores it;
  a replace that changes the price of an order carrying the flag is rejected if it
  would cross;
* `display_qty` means something only for limit and stop-limit orders; for market and
  stop orders it is ignored (not validated).

Rules versions (docs/ARCHITECTURE.md): the model starts under version 1, like a journal
without a rules checkpoint, and a `checkpoint` of kind `rules` switches it. Version 2
bounds an iceberg to ICEBERG_TRANCHES_MAX tranches: a place or a replace of an iceberg
whose quantity exceeds display * 10,000 is `invalid_quantity`.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import msgspec

VALUE_MAX = 10**12
# Rules version 2: the most tranches an iceberg may show (written from the decision in
# docs/ARCHITECTURE.md, not imported from the engine).
ICEBERG_TRANCHES_MAX = 10_000

# The fields RULES.md requires on each event type (after `seq` and `type`).
EVENT_FIELDS = {
    "accepted": ("order_id", "member", "client_order_id", "symbol", "side", "qty", "price"),
    "rejected": ("member", "client_order_id", "reason", "order_id"),
    "trade": (
        "trade_id", "symbol", "price", "qty", "maker_order_id", "taker_order_id",
        "maker_member", "taker_member", "maker_client_order_id", "taker_client_order_id",
        "aggressor",
    ),
    "cancelled": ("order_id", "reason", "remaining_qty"),
    "replaced": ("order_id", "qty", "price", "priority_kept"),
    "triggered": ("order_id",),
}


def command_as_dict(command: Any) -> dict:
    """A command struct (or a dict already) as a plain dict with its `type` tag."""
    if isinstance(command, dict):
        return dict(command)
    result = msgspec.structs.asdict(command)
    result["type"] = type(command).__struct_config__.tag
    return result


def normalise_event(event: Any) -> Optional[dict]:
    """An engine event (struct) or model event (dict) reduced to the RULES.md fields.

    Book-level market-data events (which consumers may ignore) give None.
    """
    if isinstance(event, dict):
        data = event
        kind = event["type"]
    else:
        data = msgspec.structs.asdict(event)
        kind = type(event).__struct_config__.tag
    fields = EVENT_FIELDS.get(kind)
    if fields is None:
        return None
    result = {"seq": data["seq"], "type": kind}
    for name in fields:
        result[name] = data.get(name)
    return result


def normalise_events(events: list) -> list[dict]:
    return [e for e in (normalise_event(event) for event in events) if e is not None]


def _valid(value: Any, multiple: int) -> bool:
    return type(value) is int and 0 < value <= VALUE_MAX and value % multiple == 0


def _opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


class ReferenceExchange:
    """RULES.md, implemented as plainly as possible."""

    def __init__(self) -> None:
        self.seq = 0
        self.instruments: dict[str, dict] = {}
        self.orders: dict[int, dict] = {}
        self.client_ids: dict[tuple[str, str], int] = {}
        self.next_order_id = 1
        self.next_trade_id = 1
        self.clock = 0  # the time-priority stamp: bumped whenever an order enters a level
        self.rules_version = 1

    def _text_reason(self, value: str, name: str, bytes_max: int):
        """Rules version 3: at most `bytes_max` characters, each in 0x20..0x7E."""
        if self.rules_version < 3:
            return None
        if len(value) > bytes_max:
            return name + "_too_long"
        if any(not 0x20 <= ord(character) <= 0x7E for character in value):
            return name + "_not_printable"
        return None

    def _beyond_tranche_bound(self, qty: int, display: int) -> bool:
        return self.rules_version >= 2 and qty > display * ICEBERG_TRANCHES_MAX

    # ------------------------------------------------------------------ helpers

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def band(self, symbol: str) -> Optional[tuple[int, int]]:
        inst = self.instruments[symbol]
        if inst["band_bps"] <= 0:
            return None
        reference = inst["last_trade_price"]
        if reference is None:
            reference = inst["reference_price"]
        if reference is None:
            return None
        width = reference * inst["band_bps"] // 10000
        return (reference - width, reference + width)

    def book(self, symbol: str, side: str) -> list[dict]:
        """Resting orders of one side in priority order (best price, then earliest)."""
        rows = [
            o for o in self.orders.values()
            if o["status"] == "resting" and o["symbol"] == symbol and o["side"] == side
        ]
        if side == "buy":
            rows.sort(key=lambda o: (-o["price"], o["stamp"]))
        else:
            rows.sort(key=lambda o: (o["price"], o["stamp"]))
        return rows

    def _crosses(self, symbol: str, side: str, price: int) -> bool:
        other = self.book(symbol, _opposite(side))
        if not other:
            return False
        best = other[0]["price"]
        return best <= price if side == "buy" else best >= price

    def _outside_band(self, side: str, price: int, band: tuple[int, int]) -> bool:
        """Whether a market or triggered order may not trade at `price`.

        RULES.md: a market order trades "within the price band", bounds inclusive, and
        one "whose first price is already outside is accepted and cancelled whole". The
        band is an interval, so a buy meeting an ask below the lower bound (possible:
        a triggered stop-limit's limit is not band-checked, so it can rest there) is
        outside it too.
        """
        return not band[0] <= price <= band[1]

    def _reject(self, events, seq, member, client_order_id, reason, order_id=None) -> None:
        events.append({
            "seq": seq, "type": "rejected", "member": member,
            "client_order_id": client_order_id, "reason": reason, "order_id": order_id,
        })

    def _open_qty(self, o: dict) -> int:
        return o["visible"] + o["hidden"]

    def _close(self, o: dict) -> None:
        o["status"] = "closed"
        o["visible"] = 0
        o["hidden"] = 0

    def _cancel(self, events, seq, o: dict, reason: str, remaining: int) -> None:
        events.append({
            "seq": seq, "type": "cancelled", "order_id": o["order_id"],
            "reason": reason, "remaining_qty": remaining,
        })
        self._close(o)

    def _rest(self, o: dict, qty: int) -> None:
        display = o["display_qty"]
        visible = min(display, qty) if display is not None else qty
        o["visible"] = visible
        o["hidden"] = qty - visible
        o["status"] = "resting"
        o["stamp"] = self._tick()

    # ------------------------------------------------------------------ apply

    def apply(self, command: Any) -> list[dict]:
        c = command_as_dict(command)
        self.seq += 1
        events: list[dict] = []
        getattr(self, "_do_" + c["type"])(self.seq, c, events)
        return events

    def _do_checkpoint(self, seq, c, events) -> None:
        if c.get("kind") == "rules" and c.get("version") in (1, 2, 3):
            self.rules_version = c["version"]

    def _do_malformed(self, seq, c, events) -> None:
        self._reject(events, seq, c.get("member"), c.get("client_order_id"), "malformed")

    def _do_add_instrument(self, seq, c, events) -> None:
        tick = 1 if c.get("tick_size") is None else c["tick_size"]
        lot = 1 if c.get("lot_size") is None else c["lot_size"]
        band = 0 if c.get("band_bps") is None else c["band_bps"]
        reference = c.get("reference_price")
        reason = self._text_reason(c["symbol"], "symbol", 16)
        if reason is not None:
            pass
        elif c["symbol"] in self.instruments:
            reason = "duplicate_symbol"
        elif not _valid(tick, 1):
            reason = "invalid_price"
        elif not _valid(lot, 1):
            reason = "invalid_quantity"
        elif band < 0:
            reason = "invalid_price"
        elif reference is not None and not _valid(reference, tick):
            reason = "invalid_price"
        if reason:
            self._reject(events, seq, None, None, reason)
            return
        self.instruments[c["symbol"]] = {
            "tick_size": tick, "lot_size": lot, "band_bps": band,
            "reference_price": reference, "last_trade_price": None, "halted": False,
        }

    def _do_halt(self, seq, c, events) -> None:
        if c["symbol"] not in self.instruments:
            self._reject(events, seq, None, None, "unknown_symbol")
            return
        self.instruments[c["symbol"]]["halted"] = True

    def _do_resume(self, seq, c, events) -> None:
        if c["symbol"] not in self.instruments:
            self._reject(events, seq, None, None, "unknown_symbol")
            return
        self.instruments[c["symbol"]]["halted"] = False

    def _do_end_of_day(self, seq, c, events) -> None:
        for oid in sorted(self.orders):
            o = self.orders[oid]
            if o["status"] in ("resting", "stop") and o["tif"] == "day":
                self._cancel(events, seq, o, "expired", self._open_qty(o))

    def _do_mass_cancel(self, seq, c, events) -> None:
        symbol = c.get("symbol")
        if symbol is not None and symbol not in self.instruments:
            self._reject(events, seq, c["member"], None, "unknown_symbol")
            return
        for oid in sorted(self.orders):
            o = self.orders[oid]
            if o["status"] in ("resting", "stop") and o["member"] == c["member"]:
                if symbol is None or o["symbol"] == symbol:
                    self._cancel(events, seq, o, "mass_cancel", self._open_qty(o))

    def _do_cancel(self, seq, c, events) -> None:
        member = c["member"]
        coid = c.get("client_order_id")
        if c.get("order_id") is None and coid is None:
            self._reject(events, seq, member, None, "malformed")
            return
        if c.get("order_id") is not None:
            o = self.orders.get(c["order_id"])
        else:
            o = self.orders.get(self.client_ids.get((member, coid), 0))
        if o is None or o["status"] == "closed":
            self._reject(events, seq, member, coid, "unknown_order")
            return
        if o["member"] != member:
            self._reject(events, seq, member, coid, "not_owner")
            return
        self._cancel(events, seq, o, "user", self._open_qty(o))

    # ------------------------------------------------------------------ place

    def _do_place(self, seq, c, events) -> None:
        member = c["member"]
        coid = c["client_order_id"]
        symbol = c["symbol"]
        otype = c["order_type"]
        qty = c["qty"]
        is_limit_like = otype in ("limit", "stop_limit")
        is_stop = otype in ("stop", "stop_limit")
        reason = self._text_reason(coid, "client_order_id", 64) or self._text_reason(symbol, "symbol", 16)
        if reason is not None:
            self._reject(events, seq, member, coid, reason)
            return
        existing = self.client_ids.get((member, coid))
        if existing is not None:
            self._reject(events, seq, member, coid, "duplicate_client_order_id", existing)
            return
        inst = self.instruments.get(symbol)
        if inst is None:
            self._reject(events, seq, member, coid, "unknown_symbol")
            return
        lot = inst["lot_size"]
        tick = inst["tick_size"]
        display = c.get("display_qty") if is_limit_like else None
        reason = None
        if not _valid(qty, lot):
            reason = "invalid_quantity"
        elif display is not None and not (_valid(display, lot) and display < qty):
            reason = "invalid_quantity"
        elif display is not None and self._beyond_tranche_bound(qty, display):
            reason = "invalid_quantity"
        elif is_limit_like and not _valid(c.get("price"), tick):
            reason = "invalid_price"
        elif is_stop and not _valid(c.get("stop_price"), tick):
            reason = "invalid_price"
        elif inst["halted"]:
            reason = "halted"
        elif otype == "limit":
            band = self.band(symbol)
            if band is not None and not band[0] <= c["price"] <= band[1]:
                reason = "price_band"
            elif c.get("post_only") and self._crosses(symbol, c["side"], c["price"]):
                reason = "post_only_would_cross"
        if reason:
            self._reject(events, seq, member, coid, reason)
            return

        oid = self.next_order_id
        self.next_order_id += 1
        self.client_ids[(member, coid)] = oid
        o = {
            "order_id": oid,
            "member": member,
            "client_order_id": coid,
            "symbol": symbol,
            "side": c["side"],
            "order_type": otype,
            "tif": c.get("tif") or "gtc",
            "post_only": bool(c.get("post_only")),
            "display_qty": display,
            "stop_price": c.get("stop_price") if is_stop else None,
            "price": c.get("price") if is_limit_like else None,
            "stp": c.get("stp") or "cancel_newest",
            "status": "incoming",
            "visible": 0,
            "hidden": 0,
            "stamp": 0,
        }
        self.orders[oid] = o
        events.append({
            "seq": seq, "type": "accepted", "order_id": oid, "member": member,
            "client_order_id": coid, "symbol": symbol, "side": c["side"], "qty": qty,
            "price": o["price"],
        })
        if otype == "limit":
            self._run_limit(seq, o, qty, None, events)
        elif otype == "market":
            self._run_market(seq, o, qty, events)
        else:
            o["status"] = "stop"
            o["visible"] = qty  # an untriggered stop's open quantity
        self._run_stops(seq, symbol, events)

    # ------------------------------------------------------------------ matching

    def _match(self, seq, taker: dict, qty: int, limit, band, events) -> tuple[int, str]:
        """Match `taker` (not in the book) for `qty`; return (remaining, why it stopped).

        why: "filled", "limit", "band", "empty", or "stp" (the taker has then been
        cancelled and its event emitted).
        """
        side = taker["side"]
        remaining = qty
        inst = self.instruments[taker["symbol"]]
        while remaining > 0:
            other = self.book(taker["symbol"], _opposite(side))
            if not other:
                return remaining, "empty"
            maker = other[0]
            price = maker["price"]
            if limit is not None and (price > limit if side == "buy" else price < limit):
                return remaining, "limit"
            if band is not None and self._outside_band(side, price, band):
                return remaining, "band"
            if maker["member"] == taker["member"] and taker["stp"] != "none":
                mode = taker["stp"]
                if mode == "cancel_newest":
                    self._cancel(events, seq, taker, "stp", remaining)
                    return remaining, "stp"
                if mode == "cancel_oldest":
                    self._cancel(events, seq, maker, "stp", self._open_qty(maker))
                    continue
                if mode == "cancel_both":
                    self._cancel(events, seq, maker, "stp", self._open_qty(maker))
                    self._cancel(events, seq, taker, "stp", remaining)
                    return remaining, "stp"
                assert mode == "decrement", mode
                amount = min(remaining, self._open_qty(maker))
                from_hidden = min(amount, maker["hidden"])
                maker["hidden"] -= from_hidden
                maker["visible"] -= amount - from_hidden
                remaining -= amount
                if self._open_qty(maker) == 0:
                    self._cancel(events, seq, maker, "stp", 0)
                if remaining == 0:
                    self._cancel(events, seq, taker, "stp", 0)
                    return 0, "stp"
                continue
            fill = min(remaining, maker["visible"])
            trade_id = self.next_trade_id
            self.next_trade_id += 1
            events.append({
                "seq": seq, "type": "trade", "trade_id": trade_id, "symbol": taker["symbol"],
                "price": price, "qty": fill,
                "maker_order_id": maker["order_id"], "taker_order_id": taker["order_id"],
                "maker_member": maker["member"], "taker_member": taker["member"],
                "maker_client_order_id": maker["client_order_id"],
                "taker_client_order_id": taker["client_order_id"],
                "aggressor": side,
            })
            inst["last_trade_price"] = price
            remaining -= fill
            maker["visible"] -= fill
            if maker["visible"] == 0:
                if maker["hidden"] > 0:
                    tranche = min(maker["display_qty"], maker["hidden"])
                    maker["hidden"] -= tranche
                    maker["visible"] = tranche
                    maker["stamp"] = self._tick()  # back of its level
                else:
                    self._close(maker)
        return 0, "filled"

    def _finish(self, seq, o: dict, remaining: int, why: str, events, is_market: bool) -> None:
        """What happens to an incoming order once it has stopped matching."""
        if why == "stp":
            return
        if why == "filled":
            self._close(o)
        elif why == "band":
            self._cancel(events, seq, o, "price_band", remaining)
        elif is_market:
            self._cancel(events, seq, o, "no_liquidity", remaining)
        elif o["tif"] == "ioc":
            self._cancel(events, seq, o, "ioc", remaining)
        elif o["tif"] == "fok":
            raise AssertionError("fok passed its dry run but did not fill")
        else:
            self._rest(o, remaining)

    def _run_limit(self, seq, o: dict, qty: int, band, events) -> None:
        if o["tif"] == "fok":
            trial = copy.deepcopy(self)
            trial_events: list[dict] = []
            trial._match(seq, trial.orders[o["order_id"]], qty, o["price"], band, trial_events)
            traded = sum(e["qty"] for e in trial_events if e["type"] == "trade")
            if traded != qty:
                self._cancel(events, seq, o, "fok", qty)
                return
        remaining, why = self._match(seq, o, qty, o["price"], band, events)
        self._finish(seq, o, remaining, why, events, is_market=False)

    def _run_market(self, seq, o: dict, qty: int, events) -> None:
        band = self.band(o["symbol"])  # fixed when it starts matching
        remaining, why = self._match(seq, o, qty, None, band, events)
        self._finish(seq, o, remaining, why, events, is_market=True)

    def _run_stops(self, seq, symbol: str, events) -> None:
        while True:
            last = self.instruments[symbol]["last_trade_price"]
            if last is None:
                return
            ready = [
                oid for oid, o in sorted(self.orders.items())
                if o["status"] == "stop" and o["symbol"] == symbol and (
                    last >= o["stop_price"] if o["side"] == "buy" else last <= o["stop_price"]
                )
            ]
            if not ready:
                return
            o = self.orders[ready[0]]
            qty = o["visible"]
            o["visible"] = 0
            o["status"] = "incoming"
            events.append({"seq": seq, "type": "triggered", "order_id": o["order_id"]})
            if o["order_type"] == "stop":
                self._run_market(seq, o, qty, events)
            else:
                self._run_limit(seq, o, qty, self.band(symbol), events)

    # ------------------------------------------------------------------ replace

    def _do_replace(self, seq, c, events) -> None:
        member = c["member"]
        coid = c.get("client_order_id")
        o = self.orders.get(c["order_id"])
        if o is None or o["status"] == "closed":
            self._reject(events, seq, member, coid, "unknown_order")
            return
        if o["member"] != member:
            self._reject(events, seq, member, coid, "not_owner")
            return
        inst = self.instruments[o["symbol"]]
        qty = c["qty"]
        new_price = c.get("price")
        price = o["price"] if new_price is None else new_price
        changed = price != o["price"]
        reason = None
        if o["status"] == "stop" or c.get("display_qty") is not None or qty == 0:
            reason = "invalid_replace"
        elif not _valid(qty, inst["lot_size"]):
            reason = "invalid_quantity"
        elif o["display_qty"] is not None and self._beyond_tranche_bound(qty, o["display_qty"]):
            reason = "invalid_quantity"
        elif new_price is not None and not _valid(new_price, inst["tick_size"]):
            reason = "invalid_price"
        elif inst["halted"]:
            reason = "halted"
        elif changed:
            band = self.band(o["symbol"])
            if band is not None and not band[0] <= price <= band[1]:
                reason = "price_band"
            elif o["post_only"] and self._crosses(o["symbol"], o["side"], price):
                reason = "post_only_would_cross"
        if reason:
            self._reject(events, seq, member, coid, reason)
            return
        open_qty = self._open_qty(o)
        if not changed and qty <= open_qty:
            cut = open_qty - qty
            from_hidden = min(cut, o["hidden"])
            o["hidden"] -= from_hidden
            o["visible"] -= cut - from_hidden
            events.append({
                "seq": seq, "type": "replaced", "order_id": o["order_id"], "qty": qty,
                "price": price, "priority_kept": True,
            })
            return
        o["status"] = "incoming"
        o["visible"] = 0
        o["hidden"] = 0
        o["price"] = price
        events.append({
            "seq": seq, "type": "replaced", "order_id": o["order_id"], "qty": qty,
            "price": price, "priority_kept": False,
        })
        remaining, why = self._match(seq, o, qty, price, None, events)
        self._finish(seq, o, remaining, why, events, is_market=False)
        self._run_stops(seq, o["symbol"], events)

    # ------------------------------------------------------------------ queries

    def l3(self, symbol: str) -> dict:
        result = {}
        for side, name in (("buy", "bids"), ("sell", "asks")):
            result[name] = [
                {
                    "order_id": o["order_id"], "member": o["member"],
                    "client_order_id": o["client_order_id"], "price": o["price"],
                    "visible_qty": o["visible"], "hidden_qty": o["hidden"],
                }
                for o in self.book(symbol, side)
            ]
        return result

    def l2(self, symbol: str) -> dict:
        result = {}
        for side, name in (("buy", "bids"), ("sell", "asks")):
            rows: list[tuple[int, int, int]] = []
            for o in self.book(symbol, side):
                if rows and rows[-1][0] == o["price"]:
                    price, total, count = rows[-1]
                    rows[-1] = (price, total + o["visible"], count + 1)
                else:
                    rows.append((o["price"], o["visible"], 1))
            result[name] = rows
        return result

    def stops(self, symbol: str) -> list[dict]:
        return [
            {
                "order_id": oid, "member": o["member"], "side": o["side"],
                "stop_price": o["stop_price"], "qty": o["visible"], "order_type": o["order_type"],
            }
            for oid, o in sorted(self.orders.items())
            if o["status"] == "stop" and o["symbol"] == symbol
        ]

    def order_status(self, oid: int) -> Optional[str]:
        o = self.orders.get(oid)
        if o is None:
            return None
        return {"resting": "resting", "stop": "pending_stop", "closed": "closed"}[o["status"]]

    def open_orders(self) -> list[dict]:
        """Open orders (resting or untriggered stop), ascending id: for command strategies."""
        return [o for _, o in sorted(self.orders.items()) if o["status"] in ("resting", "stop")]
