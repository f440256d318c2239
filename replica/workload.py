"""Seeded, varied command streams, and journals written from them or from scenarios.

`generate_commands(count, seed)` is the workload of `twinbook determinism-check --seed N
--commands M` (and of the audit benchmark's filtered runs): a stream that exercises every
command type and every rule that has a choice in it, so that a determinism bug has
somewhere to show. Two instruments (one with tick and lot sizes and a price band),
three members, prices in a narrow range so orders cross often, all order types, tifs
and STP modes, icebergs, stops, post-only, cancels and replaces of live and dead ids,
mass cancels, halts and resumes, end of day, and some malformed input. It follows the
idea of tests/command_streams.py (tools and the runtime never import tests/), drawing
from `random.Random(seed)`, so the same (count, seed) always gives the same stream.

`write_journal(journal_directory, commands)` appends commands as journal records (the
record timestamp is `timestamp_step_ns` times the sequence), and
`write_scenario_journal(journal_directory, data)` imports a JSON-lines scenario the way
`twinbook journal import` does: each line one record, `ts` the record timestamp (a line
without one takes the previous record's), malformed lines journaled as malformed
commands so they keep their sequence numbers.
"""

from __future__ import annotations

import random
from typing import Iterable

import journal
from statemachine import (
    AddInstrument,
    CancelOrder,
    EndOfDay,
    HaltInstrument,
    MalformedCommand,
    MassCancel,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
)
from statemachine.codec import encode_command, parse_scenario_line

MEMBERS = ("M1", "M2", "M3")
TIME_IN_FORCE_CHOICES = ("gtc", "gtc", "gtc", "day", "ioc", "fok")
STP_MODES = ("cancel_newest", "cancel_oldest", "cancel_both", "decrement", "none")
# (symbol, tick size, lot size, mid price): instruments are added in sorted symbol order.
INSTRUMENTS = (("AAA", 1, 1, 100), ("BBB", 5, 10, 1000))

# Records appended between two commits when writing a journal.
COMMIT_EVERY_RECORDS = 4096


def generate_commands(count: int, seed: int) -> list:
    """`count` commands (at least the two add_instrument commands) drawn from `seed`."""
    rng = random.Random(seed)
    commands: list = [
        AddInstrument("AAA"),
        AddInstrument("BBB", tick_size=5, lot_size=10, band_bps=500, reference_price=1000),
    ]
    client_counter = 0
    while len(commands) < count:
        roll = rng.random()
        member = rng.choice(MEMBERS)
        placed_so_far = client_counter
        if roll < 0.62:
            client_counter += 1
            symbol, tick, lot, mid = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
            side = rng.choice(("buy", "sell"))
            order_type = rng.choices(("limit", "market", "stop", "stop_limit"), (80, 8, 6, 6))[0]
            qty = rng.randint(1, 12) * lot
            fields: dict = {"tif": rng.choice(TIME_IN_FORCE_CHOICES), "stp": rng.choice(STP_MODES)}
            if order_type in ("limit", "stop_limit"):
                fields["price"] = mid + rng.randint(-6, 6) * tick
                if rng.random() < 0.15 and qty // lot > 1:
                    fields["display_qty"] = lot * rng.randint(1, qty // lot - 1)
                if order_type == "limit" and rng.random() < 0.08:
                    fields["post_only"] = True
            if order_type in ("stop", "stop_limit"):
                fields["stop_price"] = mid + rng.randint(-4, 4) * tick
            commands.append(PlaceOrder(member, f"{member}-{client_counter}", symbol, side, order_type, qty, **fields))
        elif roll < 0.80:
            # Order ids and client order ids are both tried, live or long gone, own or not.
            target = rng.randint(1, max(1, placed_so_far))
            if rng.random() < 0.5:
                commands.append(CancelOrder(member, order_id=target))
            else:
                commands.append(CancelOrder(member, client_order_id=f"{member}-{target}"))
        elif roll < 0.92:
            target = rng.randint(1, max(1, placed_so_far))
            qty = rng.randint(1, 14) * (10 if rng.random() < 0.5 else 1)
            price = None
            if rng.random() < 0.5:
                _, tick, _, mid = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
                price = mid + rng.randint(-6, 6) * tick
            commands.append(ReplaceOrder(member, target, qty, price))
        elif roll < 0.95:
            commands.append(MassCancel(member, rng.choice((None, "AAA", "BBB"))))
        elif roll < 0.97:
            symbol = rng.choice(("AAA", "BBB"))
            commands.append(HaltInstrument(symbol) if rng.random() < 0.5 else ResumeInstrument(symbol))
        elif roll < 0.985:
            commands.append(EndOfDay())
        else:
            commands.append(MalformedCommand(detail="generated malformed input", member=member))
    return commands


def _write_records(
    journal_directory: str, records: Iterable, *, cluster_id: int, epoch: int, timestamp_step_ns: int = 0
) -> int:
    """Append (timestamp_ns, body) records in bulk (policy none, one sync at the end);
    a timestamp of None means `timestamp_step_ns` times the record's sequence. Returns
    the last sequence."""
    writer = journal.JournalWriter.open(journal_directory, cluster_id, durability="none", epoch=epoch)
    try:
        for timestamp_ns, body in records:
            if timestamp_ns is None:
                timestamp_ns = (writer.last_sequence + 1) * timestamp_step_ns
            writer.append(writer.epoch, timestamp_ns, body)
            if writer.pending_count >= COMMIT_EVERY_RECORDS:
                writer.commit()
        writer.commit()
        writer.sync()
        return writer.last_sequence
    finally:
        writer.close()


def write_journal(
    journal_directory: str,
    commands: Iterable,
    *,
    cluster_id: int = 1,
    epoch: int = 0,
    timestamp_step_ns: int = 1000,
) -> int:
    """Append `commands` as records (timestamps `timestamp_step_ns` * sequence); return
    the last sequence."""
    records = ((None, encode_command(command)) for command in commands)
    return _write_records(
        journal_directory, records, cluster_id=cluster_id, epoch=epoch, timestamp_step_ns=timestamp_step_ns
    )


class ScenarioTimestampError(ValueError):
    """A scenario line's `ts` is before the previous record's (timestamps never go back)."""


def write_scenario_journal(journal_directory: str, data: bytes, *, cluster_id: int = 1, epoch: int = 0) -> int:
    """Import JSON-lines scenario bytes as records, as `twinbook journal import` does;
    return the last sequence. Raises ScenarioTimestampError for a ts going backwards."""
    lines = data.split(b"\n")
    # A final newline ends the last line; it does not start a blank one.
    if lines and lines[-1] == b"":
        lines.pop()

    def records():
        timestamp_ns = 0
        for line_number, line in enumerate(lines, 1):
            command, line_timestamp_ns = parse_scenario_line(line, line_number, internal_allowed=True)
            if line_timestamp_ns is not None:
                if line_timestamp_ns < timestamp_ns:
                    raise ScenarioTimestampError(
                        f"line {line_number}: ts {line_timestamp_ns} is before the previous record's {timestamp_ns}"
                    )
                timestamp_ns = line_timestamp_ns
            yield timestamp_ns, encode_command(command)

    return _write_records(journal_directory, records(), cluster_id=cluster_id, epoch=epoch)
