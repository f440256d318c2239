"""`twinbook feed` on a terminal: a rich Live view of one symbol's book, `q` to quit.

    AAPL  continuous  live 127.0.0.1:7702  seq 1234  lag 3 ms
    best bid 18000  best ask 18010  spread 10  last 18005
       orders      qty      bid │ ask        qty   orders
            2       30    18000 │ 18010       10        1
    trades: 00:27:31.412  10@18005  buy  #17

The screen is redrawn at most REFRESH_PER_SECOND times, whatever the message rate. Trade
times are when this view received the trade (the public feed carries no timestamps); lag
is the time since the last message from the node. The keyboard is read in cbreak mode
from the event loop (no thread): `q` (or Ctrl-C) ends the view and restores the terminal.
Off a terminal the command prints plain text or JSON lines instead (tools/commands_node.py).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import termios
import time
import tty
from typing import Optional

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from replica.feed_client import BookView, FeedError, follow_feed

REFRESH_PER_SECOND = 10
TRADES_SHOWN = 8


class FeedScreen:
    """What the view shows: the book, the spread, recent trades, connection state and lag."""

    def __init__(self, view: BookView, endpoint: str, levels: int) -> None:
        self.view = view
        self.endpoint = endpoint
        self.levels = levels
        self.state = "connecting"
        self.last_message_monotonic: Optional[float] = None
        self.trade_times: dict[int, float] = {}

    def received(self) -> None:
        self.last_message_monotonic = time.monotonic()
        self.state = "live" if self.view.synchronised else "synchronising"
        now = time.time()
        for trade in self.view.trades:
            self.trade_times.setdefault(trade.trade_id, now)
        if len(self.trade_times) > 4 * TRADES_SHOWN:
            kept = {trade.trade_id for trade in self.view.trades}
            self.trade_times = {key: value for key, value in self.trade_times.items() if key in kept}

    def spread(self) -> tuple[Optional[int], Optional[int], Optional[int]]:
        best_bid = max(self.view.bids) if self.view.bids else None
        best_ask = min(self.view.asks) if self.view.asks else None
        return best_bid, best_ask, None if best_bid is None or best_ask is None else best_ask - best_bid

    def render(self) -> Group:
        view = self.view
        lag = "-" if self.last_message_monotonic is None else \
            f"{(time.monotonic() - self.last_message_monotonic) * 1000:.0f} ms"
        header = Text.assemble((view.symbol, "bold"), f"  {view.status}  ",
                               (f"{self.state} {self.endpoint}", "green" if self.state == "live" else "yellow"),
                               f"  seq {view.journal_sequence}  lag {lag}")
        best_bid, best_ask, spread = self.spread()
        quote = Text(f"best bid {_or_dash(best_bid)}  best ask {_or_dash(best_ask)}  spread {_or_dash(spread)}  "
                     f"last {_or_dash(view.last_trade_price)}")
        book = Table(box=None, pad_edge=False, show_edge=False)
        for name in ("orders", "qty", "bid"):
            book.add_column(name, justify="right", style="green")
        book.add_column("│", justify="center")
        for name in ("ask", "qty", "orders"):
            book.add_column(name, justify="right", style="red")
        depth = view.depth(self.levels)
        for index in range(max(len(depth["bids"]), len(depth["asks"]), 1)):
            bid = depth["bids"][index] if index < len(depth["bids"]) else ("", "", "")
            ask = depth["asks"][index] if index < len(depth["asks"]) else ("", "", "")
            book.add_row(str(bid[2]), str(bid[1]), str(bid[0]), "│", str(ask[0]), str(ask[1]), str(ask[2]))
        trades = Table(box=None, pad_edge=False, show_edge=False, title="trades", title_justify="left")
        for name, justify in (("time", "left"), ("qty", "right"), ("price", "right"), ("aggressor", "left"),
                              ("id", "right")):
            trades.add_column(name, justify=justify)
        for trade in reversed(view.trades[-TRADES_SHOWN:]):
            received = self.trade_times.get(trade.trade_id)
            stamp = "" if received is None else datetime.datetime.fromtimestamp(received).strftime("%H:%M:%S.%f")[:-3]
            trades.add_row(stamp, str(trade.qty), str(trade.price), trade.aggressor, f"#{trade.trade_id}")
        return Group(header, quote, book, trades, Text("q: quit", style="dim"))


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


async def run_live_view(endpoint: tuple[str, int], symbol: str, levels: int, seconds: Optional[float],
                        ssl_context=None) -> None:
    """Follow the feed in a rich Live screen until `q`, Ctrl-C, --seconds or the feed ends."""
    view = BookView(symbol)
    screen = FeedScreen(view, f"{endpoint[0]}:{endpoint[1]}", levels)
    loop = asyncio.get_running_loop()
    quit_requested = asyncio.Event()
    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)

    def on_key() -> None:
        if os.read(descriptor, 64).lower().find(b"q") >= 0:
            quit_requested.set()

    console = Console()
    with Live(screen.render(), console=console, refresh_per_second=REFRESH_PER_SECOND, screen=True,
              get_renderable=screen.render) as live:
        tty.setcbreak(descriptor)
        loop.add_reader(descriptor, on_key)
        follower = loop.create_task(follow_feed(endpoint, view, lambda _message: screen.received(), seconds,
                                                ssl_context=ssl_context))
        quitter = loop.create_task(quit_requested.wait())
        try:
            done, _ = await asyncio.wait({follower, quitter}, return_when=asyncio.FIRST_COMPLETED)
            if follower in done and follower.exception() is not None:
                screen.state = f"closed: {follower.exception()}"
                live.refresh()
                raise follower.exception()
        finally:
            loop.remove_reader(descriptor)
            termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)
            for task in (follower, quitter):
                task.cancel()
            await asyncio.gather(follower, quitter, return_exceptions=True)


__all__ = ["FeedScreen", "run_live_view", "FeedError"]
