"""The public market-data events: what the TCP feed and the multicast feed may carry.

The state machine's `TradeExecuted` names both members and both client order ids (the
members' execution reports need them). The public feeds carry none of that: a trade on
a feed is a `PublicTrade`

    PublicTrade {seq, trade_id, symbol, price, qty, aggressor}

and the book is published by price level (`LevelChanged`: aggregate visible quantity
and order count at one price), never order by order. So no public message carries a
member, a client order id or an order id (ARCHITECTURE.md, "The public feed is
anonymous"): a member learns its own fills from its private execution reports.

`market_data_of(events)` picks a record's market-data events and makes them public; both
feeds and the retransmission server (which rebuilds multicast messages from the journal)
go through it, so a rebuilt message is byte-identical to the one sent live.
"""

from __future__ import annotations

from typing import Union

import msgspec

from statemachine.events import InstrumentStatusChanged, LevelChanged, TradeExecuted


class PublicTrade(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="trade"):
    """One execution as the public sees it: no members, no client order ids, no order ids."""

    seq: int
    trade_id: int
    symbol: str
    price: int
    qty: int
    aggressor: str


MarketDataEvent = Union[LevelChanged, PublicTrade, InstrumentStatusChanged]


def public_trade(trade: TradeExecuted) -> PublicTrade:
    return PublicTrade(trade.seq, trade.trade_id, trade.symbol, trade.price, trade.qty, trade.aggressor)


def market_data_of(events) -> list:
    """The public market-data events among a record's events, in order."""
    public = []
    for event in events:
        kind = type(event)
        if kind is TradeExecuted:
            public.append(public_trade(event))
        elif kind is LevelChanged or kind is InstrumentStatusChanged:
            public.append(event)
    return public
