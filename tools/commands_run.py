"""`twinbook run` and `twinbook demo`: scenarios through the state machine, in-process.

`run` reads a JSON-lines scenario (format in ../shared/RULES.md), gives each line the
next sequence number, applies it, and writes the events as JSON lines. A malformed line
becomes a `rejected` event with reason `malformed` that names the line; it never stops
the run. `examples` runs the scenarios shipped in examples/ and prints a readable
summary; `demo` is the failover drill (tools/drill.py).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Iterable

import click

from tools.digests import digest_text

from statemachine import Exchange, TradeExecuted, check_invariants
from statemachine.codec import encode_event_json, parse_scenario_line
from statemachine.version import RULES_VERSION

EXAMPLES_DIRECTORY = Path(__file__).resolve().parent.parent / "examples"


def run_scenario_lines(
    lines: Iterable[bytes], exchange: Exchange, out: BinaryIO | None, check: bool = False
) -> list:
    """Apply scenario lines in order; write events as JSON lines to `out`; return them."""
    all_events = []
    for line_number, line in enumerate(lines, 1):
        command, timestamp_ns = parse_scenario_line(line, line_number)
        sequence = exchange.last_sequence + 1
        events = exchange.apply(sequence, timestamp_ns or 0, command)
        if check:
            check_invariants(exchange)
        if out is not None:
            out.write(b"".join([encode_event_json(event) + b"\n" for event in events]))
        all_events.extend(events)
    return all_events


def _read_lines(path: str) -> list[bytes]:
    try:
        data = Path(path).read_bytes() if path != "-" else sys.stdin.buffer.read()
    except OSError as error:
        raise click.ClickException(f"cannot read scenario {path}: {error.strerror}") from None
    lines = data.split(b"\n")
    # A final newline ends the last line; it does not start a blank one.
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--events-out", type=click.Path(dir_okay=False, writable=True), help="Write events here instead of stdout.")
@click.option("--book-updates/--no-book-updates", default=False, help="Also emit level_changed / instrument_status events.")
@click.option("--check/--no-check", default=False, help="Check the book invariants after every command.")
@click.option("--digest/--no-digest", default=False, help="Print the final state digests to stderr.")
def run(scenario: str, events_out: str | None, book_updates: bool, check: bool, digest: bool) -> None:
    """Run a JSON-lines SCENARIO through the state machine and write its events."""
    lines = _read_lines(scenario)
    # A scenario runs under this build's rules (a journal replays under its own).
    exchange = Exchange(book_updates=book_updates, rules_version=RULES_VERSION)
    if events_out:
        with open(events_out, "wb") as out:
            run_scenario_lines(lines, exchange, out, check)
    else:
        run_scenario_lines(lines, exchange, sys.stdout.buffer, check)
        sys.stdout.buffer.flush()
    if digest:
        from statemachine import canonical_digest

        click.echo(f"state_digest={digest_text(exchange.state_digest())}", err=True)
        click.echo(f"canonical_digest={digest_text(canonical_digest(exchange))}", err=True)


def summarise(name: str, exchange: Exchange, events: list) -> str:
    kinds = Counter(type(event).__name__ for event in events)
    trades = [event for event in events if isinstance(event, TradeExecuted)]
    rejected = Counter(getattr(event, "reason") for event in events if type(event).__name__ == "OrderRejected")
    cancelled = Counter(getattr(event, "reason") for event in events if type(event).__name__ == "OrderCancelled")
    lines = [f"== {name}: {exchange.last_sequence} commands, {len(events)} events"]
    lines.append("   events: " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
    if trades:
        volume = sum(trade.qty for trade in trades)
        lines.append(f"   trades: {len(trades)}, {volume} lots, prices {min(t.price for t in trades)}..{max(t.price for t in trades)}")
        for trade in trades[:6]:
            lines.append(
                f"     #{trade.trade_id} {trade.symbol} {trade.qty}@{trade.price} "
                f"{trade.maker_member}(order {trade.maker_order_id}) <- {trade.taker_member}(order {trade.taker_order_id}) {trade.aggressor}"
            )
        if len(trades) > 6:
            lines.append(f"     ... {len(trades) - 6} more")
    if rejected:
        lines.append("   rejected: " + ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items())))
    if cancelled:
        lines.append("   cancelled: " + ", ".join(f"{reason} {count}" for reason, count in sorted(cancelled.items())))
    for symbol in exchange.books:
        depth = exchange.depth(symbol, 3)
        bids = " ".join(f"{qty}@{price}" for price, qty, _ in depth["bids"]) or "-"
        asks = " ".join(f"{qty}@{price}" for price, qty, _ in depth["asks"]) or "-"
        lines.append(f"   book {symbol}: bids {bids} | asks {asks}")
    lines.append(f"   state digest {digest_text(exchange.state_digest())}")
    return "\n".join(lines)


@click.command()
@click.option("--events/--no-events", default=False, help="Also print every event as JSON.")
def examples(events: bool) -> None:
    """Run the example scenarios through the engine and summarise what happened."""
    paths = sorted(EXAMPLES_DIRECTORY.glob("*.jsonl"))
    if not paths:
        raise click.ClickException(f"no scenarios found in {EXAMPLES_DIRECTORY}")
    for path in paths:
        exchange = Exchange(rules_version=RULES_VERSION)
        out = sys.stdout.buffer if events else None
        produced = run_scenario_lines(_read_lines(str(path)), exchange, out, check=True)
        if out is not None:
            out.flush()
        click.echo(summarise(path.name, exchange, produced))
    click.echo("All scenarios ran; book invariants held after every command.")


@click.command()
@click.option("--seconds", default=24.0, show_default=True, type=click.FloatRange(8, 600), help="Length of the trading load.")
@click.option("--rate", default=1500.0, show_default=True, type=click.FloatRange(10, 100_000), help="Orders per second, all clients.")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the cluster's data here for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--port-base", type=click.IntRange(1024, 65528),
              help="Node A uses PORT..PORT+3, node B PORT+4..PORT+7 (default: free ports below the ephemeral range).")
@click.option("--busy-loops", default=0, show_default=True, type=click.IntRange(0, 64),
              help='Load the machine with this many `python -c "while True: pass"` processes meanwhile.')
@click.option("--timeout-ms", default=400, show_default=True, type=click.IntRange(50, 10_000),
              help="The watchdog's failure-detector timeout.")
def demo(seconds: float, rate: float, keep: str | None, as_json: bool, port_base: int | None, busy_loops: int,
         timeout_ms: int) -> None:
    """A failover drill: primary, standby and watchdog on loopback, SIGKILL, promotion, rejoin, checks."""
    import asyncio

    from tools.busy_load import busy_loops as loaded
    from tools.drill import DrillPortsTaken, format_summary, run_drill

    interactive = sys.stderr.isatty()

    def say(line: str) -> None:
        click.echo(line, err=True)

    def progress(line: str) -> None:
        if interactive:
            click.echo(line, err=True, nl=False)
        else:
            click.echo(line.strip(), err=True)

    try:
        with loaded(busy_loops):
            ok, summary = asyncio.run(run_drill(seconds, keep, rate, say, progress if not as_json else lambda line: None,
                                                port_base=port_base, timeout_ms=timeout_ms))
    except DrillPortsTaken as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    if keep is None:
        summary["data"] = "(removed; use --keep DIR to keep it)"
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(format_summary(ok, summary))
    if not ok:
        sys.exit(1)
