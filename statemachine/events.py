"""Events: what happened, in the past tense, as frozen msgspec Structs.

One tagged union keyed by ``type`` whose tag values are the event names of RULES.md
(``accepted``, ``rejected``, ``trade``, ...). Every event carries ``seq``, the
sequence number of the command that caused it. The required fields of RULES.md come
first and in its order; the extra fields after them (``member`` on a cancel, for
instance) exist so that execution reports can be routed to the owning member without
a lookup.

Field order is part of the encoding and therefore of the event-stream digest that the
determinism checks compare: append new fields at the end, never reorder.

Book-level market-data events (`level_changed`, `instrument_status`) are produced only
when the exchange is built with ``book_updates=True``; consumers ignore event types they
do not know, as RULES.md allows.
"""

from __future__ import annotations

from typing import Optional, Union

import msgspec


class _Event(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    """Base of every event; carries the tagged-union configuration."""


class OrderAccepted(_Event, tag="accepted"):
    seq: int
    order_id: int
    member: str
    client_order_id: str
    symbol: str
    side: str
    qty: int
    price: Optional[int]


class OrderRejected(_Event, tag="rejected", omit_defaults=True):
    seq: int
    member: Optional[str]
    client_order_id: Optional[str]
    reason: str
    order_id: Optional[int] = None
    detail: Optional[str] = None


class TradeExecuted(_Event, tag="trade"):
    seq: int
    trade_id: int
    symbol: str
    price: int
    qty: int
    maker_order_id: int
    taker_order_id: int
    maker_member: str
    taker_member: str
    maker_client_order_id: str
    taker_client_order_id: str
    aggressor: str


class OrderCancelled(_Event, tag="cancelled"):
    seq: int
    order_id: int
    reason: str
    remaining_qty: int
    member: str
    client_order_id: str
    symbol: str


class OrderReplaced(_Event, tag="replaced"):
    seq: int
    order_id: int
    qty: int
    price: int
    priority_kept: bool
    member: str
    client_order_id: str
    symbol: str


class StopTriggered(_Event, tag="triggered"):
    seq: int
    order_id: int
    member: str
    client_order_id: str
    symbol: str


class LevelChanged(_Event, tag="level_changed"):
    """The aggregate visible quantity at one price level after a command (0 = gone)."""

    seq: int
    symbol: str
    side: str
    price: int
    qty: int
    orders: int


class InstrumentStatusChanged(_Event, tag="instrument_status"):
    seq: int
    symbol: str
    status: str


Event = Union[
    OrderAccepted,
    OrderRejected,
    TradeExecuted,
    OrderCancelled,
    OrderReplaced,
    StopTriggered,
    LevelChanged,
    InstrumentStatusChanged,
]
