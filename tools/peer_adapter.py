"""The peer adapter: runs one peer matching engine on a peer workload file, standalone.

`twinbook bench peers` never imports a peer package: it runs this script with the peer
environment's python (`.bench-peers/venv/bin/python tools/peer_adapter.py ENGINE
WORKLOAD RESULT RUNS`). The script imports only the standard library and the one peer
package it drives, never twinbook (the peer environment does not have it), so it is
also the place to read how each engine is driven.

Input, the neutral workload (JSON lines, written by tools/bench_peers.py):

    {"format":"twinbook-peer-workload","version":1,"seed":1,"commands":N,"mid_price":100000,...}
    {"type":"limit","id":1,"side":"buy","price":99990,"qty":40}
    {"type":"market","id":2,"side":"sell","qty":30}
    {"type":"cancel","id":1}

`id` is the client order id: 1, 2, 3, ... in placing order. Every cancel names an order
that is open under twinbook's rules at that point; an engine that disagrees may find it
closed, which the adapter counts (`cancels_not_open`) instead of failing.

Output, one JSON object written to RESULT:

    {"status":"ok","engine":E,"version":V,"elapsed_ns":[run1, run2, ...],
     "trades":[[taker_id, maker_id, price, qty], ...], "trades_reported":true,
     "cancels_not_open":n, "market_remainders_cancelled":m}
    {"status":"not_installed","engine":E,"reason":"..."}
    {"status":"failed","engine":E,"reason":"..."}

Only the loop over the prebuilt command tuples is timed (`perf_counter_ns` around it):
not the interpreter start, the import, the parsing, or mapping engine ids back to client
ids afterwards. Each run starts from a fresh book; the trades are those of the first
run (`twinbook bench peers` asks for one run per round).
Commands are expressed with each engine's own means (see ENGINES and each runner's
docstring); where an engine's market order does not cancel its remainder, the adapter
cancels it right after, inside the timed loop, since it is part of executing the command.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib import metadata

LIMIT, MARKET, CANCEL = 0, 1, 2
WORKLOAD_FORMAT = "twinbook-peer-workload"
WORKLOAD_VERSION = 1
# A workload is bounded so one run's memory stays small on the 2-core, 24 GiB machine.
WORKLOAD_COMMANDS_MAX = 10_000_000
RUNS_MAX = 20


class WorkloadError(ValueError):
    """The workload file is not a version-1 peer workload."""


def read_workload(path: str) -> tuple[dict, list[tuple]]:
    """The header and the commands as tuples: (LIMIT, id, is_buy, price, qty),
    (MARKET, id, is_buy, 0, qty), (CANCEL, id, False, 0, 0)."""
    with open(path, encoding="utf-8") as source:
        header = json.loads(source.readline())
        if header.get("format") != WORKLOAD_FORMAT or header.get("version") != WORKLOAD_VERSION:
            raise WorkloadError(f"{path}: not a {WORKLOAD_FORMAT} version {WORKLOAD_VERSION} file")
        commands = []
        for line_number, line in enumerate(source, 2):
            if len(commands) >= WORKLOAD_COMMANDS_MAX:
                raise WorkloadError(f"{path}: more than {WORKLOAD_COMMANDS_MAX} commands")
            fields = json.loads(line)
            kind = fields["type"]
            if kind == "limit":
                commands.append((LIMIT, fields["id"], fields["side"] == "buy", fields["price"], fields["qty"]))
            elif kind == "market":
                commands.append((MARKET, fields["id"], fields["side"] == "buy", 0, fields["qty"]))
            elif kind == "cancel":
                commands.append((CANCEL, fields["id"], False, 0, 0))
            else:
                raise WorkloadError(f"{path}:{line_number}: unknown command type {kind!r}")
    if len(commands) != header.get("commands"):
        raise WorkloadError(f"{path}: header says {header.get('commands')} commands, file has {len(commands)}")
    return header, commands


def run_orderly_chaos(commands: list, header: dict) -> dict:
    """orderly-chaos (C++ core, ctypes): `limit`/`market` take our ids; market orders
    never rest; trades arrive through the `on_trade` callback with taker and maker ids."""
    from orderly_chaos import LimitOrderBook, OrderBookError, Side

    trades: list = []
    record = trades.append

    def on_trade(trade) -> None:
        record((trade.taker_id, trade.maker_id, trade.price, trade.quantity))

    book = LimitOrderBook(on_trade=on_trade)
    limit, market, cancel = book.limit, book.market, book.cancel
    buy, sell = Side.BUY, Side.SELL
    misses = 0
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == LIMIT:
            limit(buy if is_buy else sell, order_id, qty, price)
        elif kind == MARKET:
            market(buy if is_buy else sell, order_id, qty)
        else:
            try:
                cancel(order_id)
            except OrderBookError:
                misses += 1
    elapsed = time.perf_counter_ns() - started
    book.close()
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses}


def run_limit_order_book(commands: list, header: dict) -> dict:
    """limit-order-book (C++ core, ctypes): takes our ids; reports no trades at all, so
    only its speed is measured. Cancelling an id it does not hold aborts the process
    (std::out_of_range), so cancels check `has` first."""
    from limit_order_book import LimitOrderBook

    book = LimitOrderBook()
    limit_buy, limit_sell = book.limit_buy, book.limit_sell
    market_buy, market_sell = book.market_buy, book.market_sell
    has, cancel = book.has, book.cancel
    misses = 0
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == LIMIT:
            (limit_buy if is_buy else limit_sell)(order_id, qty, price)
        elif kind == MARKET:
            (market_buy if is_buy else market_sell)(order_id, qty)
        elif has(order_id):
            cancel(order_id)
        else:
            misses += 1
    elapsed = time.perf_counter_ns() - started
    return {"elapsed_ns": elapsed, "trades": None, "cancels_not_open": misses}


def run_obook(commands: list, header: dict) -> dict:
    """obook (C engine, ctypes): the engine assigns ids, so the adapter keeps
    client id -> engine id for cancels and maps trade ids back afterwards. Market
    orders are MARKET + IOC. Every order gets its own `user`, so the engine's
    self-trade checks never fire (twinbook's side runs with STP off). Events are
    drained after every command, as a caller must to see its trades."""
    import obook

    book = obook.Book(max_orders=len(commands) + 16)
    submit, cancel, events = book.submit, book.cancel, book.events
    buy, sell, market_type, ioc = obook.BUY, obook.SELL, obook.MARKET, obook.IOC
    trade_kind = obook.EventKind.TRADE
    rejected = obook.Status.REJECTED
    engine_ids: dict = {}
    trades: list = []
    record = trades.append
    misses = 0
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == LIMIT:
            engine_ids[order_id] = submit(order_id, buy if is_buy else sell, price, qty).order_id
        elif kind == MARKET:
            engine_ids[order_id] = submit(order_id, buy if is_buy else sell, 0, qty, market_type, ioc).order_id
        else:
            if cancel(engine_ids[order_id], order_id).status == rejected:
                misses += 1
            continue
        for event in events():
            if event.kind == trade_kind:
                record((event.taker_id, event.maker_id, event.price, event.qty))
    elapsed = time.perf_counter_ns() - started
    book.close()
    client_ids = {engine_id: client_id for client_id, engine_id in engine_ids.items()}
    trades = [(client_ids[taker], client_ids[maker], price, qty) for taker, maker, price, qty in trades]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses}


def run_liquibook(commands: list, header: dict) -> dict:
    """liquibook (C++ via SWIG): `SimpleOrder` objects in a `DepthOrderBook` with a
    Python `OrderListener` (SWIG director callbacks); `on_fill(order, matched_order,
    qty, price)` names the incoming order first. Market orders are price 0, added with
    `oc_immediate_or_cancel` (the book reads conditions from `add`, not from the order:
    an IOC set only on the order rests its remainder). Ids are SimpleOrder's own counter, mapped back after."""
    import liquibook

    trades: list = []
    record = trades.append
    rejected_cancels = [0]

    class Listener(liquibook.OrderListener):
        def on_accept(self, order) -> None:
            pass

        def on_reject(self, order, reason) -> None:
            pass

        def on_fill(self, order, matched_order, fill_qty, fill_price) -> None:
            record((order.order_id_, matched_order.order_id_, fill_price, fill_qty))

        def on_cancel(self, order) -> None:
            pass

        def on_cancel_reject(self, order, reason) -> None:
            rejected_cancels[0] += 1

        def on_replace(self, order, size_delta, new_price) -> None:
            pass

        def on_replace_reject(self, order, reason) -> None:
            pass

        def on_trigger_stop(self, order) -> None:
            pass

    listener = Listener()
    book = liquibook.DepthOrderBook()
    book.set_order_listener(listener)
    add, cancel = book.add, book.cancel
    simple_order = liquibook.SimpleOrder
    immediate_or_cancel = liquibook.oc_immediate_or_cancel
    orders: dict = {}
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == LIMIT:
            order = orders[order_id] = simple_order(is_buy, price, qty)
            add(order)
        elif kind == MARKET:
            order = orders[order_id] = simple_order(is_buy, 0, qty)
            add(order, immediate_or_cancel)
        else:
            cancel(orders[order_id])
    elapsed = time.perf_counter_ns() - started
    client_ids = {order.order_id_: client_id for client_id, order in orders.items()}
    trades = [(client_ids[taker], client_ids[maker], price, qty) for taker, maker, price, qty in trades]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": rejected_cancels[0]}


def run_lightmatchingengine(commands: list, header: dict) -> dict:
    """lightmatchingengine (pure Python): `add_order(instmt, price, qty, side)` assigns
    ids and returns (order, trades); per price level it reports one aggressive trade
    followed by one passive trade per resting order hit (those are the fills we
    compare). Market orders are price 0, and their remainder rests at price 0, so the
    adapter cancels it (`market_remainders_cancelled`)."""
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine, Side

    engine = LightMatchingEngine()
    add_order, cancel_order = engine.add_order, engine.cancel_order
    buy, sell = Side.BUY, Side.SELL
    symbol = header["symbol"]
    engine_ids: dict = {}
    fills: list = []
    record = fills.append
    misses = 0
    remainders = 0
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == CANCEL:
            if cancel_order(engine_ids[order_id], symbol) is None:
                misses += 1
            continue
        order, trades = add_order(symbol, price, qty, buy if is_buy else sell)
        taker = order.order_id
        engine_ids[order_id] = taker
        for trade in trades:
            if trade.order_id != taker:
                record((taker, trade.order_id, trade.trade_price, trade.trade_qty))
        if kind == MARKET and order.leaves_qty > 0:
            cancel_order(taker, symbol)
            remainders += 1
    elapsed = time.perf_counter_ns() - started
    client_ids = {engine_id: client_id for client_id, engine_id in engine_ids.items()}
    trades = [(client_ids[taker], client_ids[maker], price, qty) for taker, maker, price, qty in fills]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses,
            "market_remainders_cancelled": remainders}


def run_pyorderbook(commands: list, header: dict) -> dict:
    """pyorderbook (pure Python, Decimal prices, UUID ids): `Book.match(Order)` returns
    a blotter of trades (incoming id, standing id). It has no market order: the adapter
    sends a limit at the far end of the price range and cancels what rests."""
    import logging

    from pyorderbook import Book, Side
    from pyorderbook.order import Order

    # pyorderbook calls logging.basicConfig(level=INFO) on import; its matching logs at
    # DEBUG, which stays off, as in any production configuration.
    logging.getLogger("pyorderbook").setLevel(logging.WARNING)
    book = Book()
    match, cancel = book.match, book.cancel
    symbol = header["symbol"]
    buy_far, sell_far = header["price_max"] * 10, 1
    orders: dict = {}
    fills: list = []
    record = fills.append
    misses = 0
    remainders = 0
    bid, ask = Side.BID, Side.ASK
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        if kind == CANCEL:
            try:
                cancel(orders[order_id])
            except KeyError:
                misses += 1
            continue
        if kind == MARKET:
            price = buy_far if is_buy else sell_far
        order = orders[order_id] = Order(bid if is_buy else ask, symbol, price, qty)
        for trade in match(order).trades:
            record((trade.incoming_order_id, trade.standing_order_id, trade.fill_price, trade.fill_quantity))
        if kind == MARKET and order.quantity:
            cancel(order)
            remainders += 1
    elapsed = time.perf_counter_ns() - started
    client_ids = {order.id: client_id for client_id, order in orders.items()}
    trades = [(client_ids[taker], client_ids[maker], int(price), qty) for taker, maker, price, qty in fills]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses,
            "market_remainders_cancelled": remainders}


def run_pyclob(commands: list, header: dict) -> dict:
    """pyclob (pure Python, binary event contracts): prices are cents 1..99, so the
    adapter shifts ours by `mid_price - 50` (the workload stays within mid +- 49).
    Orders never trade with their own account, so each order gets its own account
    (made before timing, with a bankroll no order can exhaust). No market order: a
    limit at 99 (buy) or 1 (sell), then the remainder is cancelled."""
    from pyclob import Account, Order, OrderBook, Side

    shift = header["mid_price"] - 50
    book = OrderBook(header["symbol"])
    place, cancel = book.place_order, book.cancel_order
    accounts = {str(command[1]): Account(str(command[1]), starting_bankroll_c=10**15)
                for command in commands if command[0] != CANCEL}
    buy, sell = Side.BUY, Side.SELL
    fills: list = []
    record = fills.append
    misses = 0
    remainders = 0
    started = time.perf_counter_ns()
    for kind, order_id, is_buy, price, qty in commands:
        name = str(order_id)
        if kind == CANCEL:
            try:
                cancel(name, accounts)
            except ValueError:
                misses += 1
            continue
        if kind == MARKET:
            price = 99 if is_buy else 1
        else:
            price -= shift
        order = Order(account_id=name, side=buy if is_buy else sell, price=price, qty=qty, id=name)
        for fill in place(order, accounts):
            record((fill.taker_order_id, fill.maker_order_id, fill.price, fill.qty))
        if kind == MARKET and order.remaining_qty:
            cancel(name, accounts)
            remainders += 1
    elapsed = time.perf_counter_ns() - started
    trades = [(int(taker), int(maker), price + shift, qty) for taker, maker, price, qty in fills]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses,
            "market_remainders_cancelled": remainders}


def run_order_matching(commands: list, header: dict) -> dict:
    """order-matching (pure Python, float prices and sizes, string ids): orders are
    `place`d and then `match`ed one at a time with increasing timestamps (made before
    timing). Its market order rests its remainder (at price inf / 0), so the adapter
    cancels it. loguru's default stderr sink is removed (the engine logs every match
    at DEBUG), as a production user would configure it."""
    from datetime import datetime, timedelta

    from loguru import logger

    from order_matching.enums import Side
    from order_matching.matching_engine import MatchingEngine
    from order_matching.order import LimitOrder, MarketOrder
    from order_matching.orders import Orders

    logger.remove()
    engine = MatchingEngine(seed=1)
    place, match, cancel_order = engine.place, engine.match, engine.cancel_order
    find = engine.unprocessed_orders.find_order_by_id
    origin = datetime(2026, 1, 1)
    timestamps = [origin + timedelta(microseconds=index) for index in range(len(commands) + 1)]
    buy, sell = Side.BUY, Side.SELL
    fills: list = []
    record = fills.append
    misses = 0
    remainders = 0
    started = time.perf_counter_ns()
    for index, (kind, order_id, is_buy, price, qty) in enumerate(commands):
        name = str(order_id)
        if kind == CANCEL:
            try:
                cancel_order(name)
            except ValueError:
                misses += 1
            continue
        timestamp = timestamps[index]
        if kind == LIMIT:
            order = LimitOrder(side=buy if is_buy else sell, price=price, size=qty, timestamp=timestamp,
                               order_id=name, trader_id=name)
        else:
            order = MarketOrder(side=buy if is_buy else sell, size=qty, timestamp=timestamp,
                                order_id=name, trader_id=name)
        place(Orders([order]))
        for trade in match(timestamp=timestamp).trades:
            record((trade.incoming_order_id, trade.book_order_id, trade.price, trade.size))
        if kind == MARKET and find(name) is not None:
            cancel_order(name)
            remainders += 1
    elapsed = time.perf_counter_ns() - started
    trades = [(int(taker), int(maker), round(price), round(size)) for taker, maker, price, size in fills]
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses,
            "market_remainders_cancelled": remainders}


def run_matching_engine(commands: list, header: dict) -> dict:
    """matching-engine (pure Python, msgspec commands; needs Python >= 3.12): one
    `process(SequencedCommand)` per command with our ids, one account, STP off;
    market orders are MARKET with IOC (the engine rejects a GTC market order: "nothing
    to rest at"), and the engine cancels their remainder."""
    from matching_engine.domain import (CancelOrder, NewOrder, OrderType, SelfTradePrevention,
                                        SequencedCommand, Side, TimeInForce)
    from matching_engine.engine import MatchingEngine
    from matching_engine.events import OrderRejected, Trade

    engine = MatchingEngine()
    process = engine.process
    buy, sell = Side.BUY, Side.SELL
    limit_type, market_type = OrderType.LIMIT, OrderType.MARKET
    gtc, ioc, no_stp = TimeInForce.GTC, TimeInForce.IOC, SelfTradePrevention.NONE
    trades: list = []
    record = trades.append
    misses = 0
    started = time.perf_counter_ns()
    for sequence, (kind, order_id, is_buy, price, qty) in enumerate(commands, 1):
        if kind == CANCEL:
            for event in process(SequencedCommand(sequence, 0, CancelOrder(order_id, 1))):
                if type(event) is OrderRejected:
                    misses += 1
            continue
        if kind == LIMIT:
            command = NewOrder(order_id, 1, buy if is_buy else sell, price, qty, limit_type, gtc, False, no_stp)
        else:
            command = NewOrder(order_id, 1, buy if is_buy else sell, 0, qty, market_type, ioc, False, no_stp)
        for event in process(SequencedCommand(sequence, 0, command)):
            if type(event) is Trade:
                record((event.taker_order_id, event.maker_order_id, event.price, event.qty))
    elapsed = time.perf_counter_ns() - started
    return {"elapsed_ns": elapsed, "trades": trades, "cancels_not_open": misses}


# engine name -> (PyPI distribution, module imported first, runner)
ENGINES = {
    "orderly-chaos": ("orderly-chaos", "orderly_chaos", run_orderly_chaos),
    "liquibook": ("liquibook", "liquibook", run_liquibook),
    "obook": ("obook", "obook", run_obook),
    "limit-order-book": ("limit-order-book", "limit_order_book", run_limit_order_book),
    "matching-engine": ("matching-engine", "matching_engine", run_matching_engine),
    "lightmatchingengine": ("lightmatchingengine", "lightmatchingengine", run_lightmatchingengine),
    "pyorderbook": ("pyorderbook", "pyorderbook", run_pyorderbook),
    "pyclob": ("pyclob", "pyclob", run_pyclob),
    "order-matching": ("order-matching", "order_matching", run_order_matching),
}


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[1] not in ENGINES:
        print(f"usage: peer_adapter.py {{{','.join(ENGINES)}}} WORKLOAD RESULT RUNS", file=sys.stderr)
        return 2
    engine, workload_path, result_path, runs = argv[1], argv[2], argv[3], int(argv[4])
    if not 1 <= runs <= RUNS_MAX:
        print(f"RUNS must be 1..{RUNS_MAX}", file=sys.stderr)
        return 2
    distribution, module, runner = ENGINES[engine]
    result: dict = {"engine": engine}
    try:
        __import__(module)
        result["version"] = metadata.version(distribution)
    except Exception as error:  # an import can fail in any way a broken package likes
        result.update(status="not_installed", reason=f"{type(error).__name__}: {error}")
    else:
        try:
            header, commands = read_workload(workload_path)
            elapsed = []
            first = None
            for _ in range(runs):
                outcome = runner(commands, header)
                elapsed.append(outcome["elapsed_ns"])
                if first is None:
                    first = outcome
            trades = first["trades"]
            result.update(
                status="ok",
                elapsed_ns=elapsed,
                trades_reported=trades is not None,
                trades=[list(trade) for trade in trades] if trades is not None else [],
                cancels_not_open=first.get("cancels_not_open", 0),
                market_remainders_cancelled=first.get("market_remainders_cancelled", 0),
            )
        except Exception as error:
            result.update(status="failed", reason=f"{type(error).__name__}: {error}",
                          traceback=traceback.format_exc(limit=-3))
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
