"""Run hand-written JSON-lines scenarios through an Exchange and compare the events.

The example tests (tests/test_rules_*.py) are written in the scenario format of
shared/RULES.md so that they read like the spec:

    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"cancel","member":"A","order_id":1}')
    expect(events, '{"seq":3,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}')

* Every line of the (dedented) text is one command, exactly as a scenario file would
  hold it: an empty line in the middle of the text is a blank command (malformed).
  Only the leading and trailing newlines of the text are dropped. Pass a list of
  strings to control the lines exactly.
* Each command gets the next sequence number; its timestamp is the line's ``ts`` or the
  sequence number. After every command the book invariants are checked and every event
  is checked to carry the fields RULES.md says it must.
* `expect(actual, expected)` compares the events one for one, in order, on the fields
  the expected events name (events have more fields than RULES.md requires).
"""

from __future__ import annotations

import json
import textwrap
from typing import Iterable, Union

import msgspec

from statemachine.codec import parse_scenario_line
from statemachine.exchange import Exchange
from statemachine.invariants import check_invariants
from statemachine.version import RULES_VERSION

# The fields RULES.md says each event must carry.
REQUIRED_FIELDS = {
    "accepted": ("seq", "order_id", "member", "client_order_id", "symbol", "side", "qty", "price"),
    "rejected": ("seq", "member", "client_order_id", "reason"),
    "trade": (
        "seq", "trade_id", "symbol", "price", "qty", "maker_order_id", "taker_order_id",
        "maker_member", "taker_member", "maker_client_order_id", "taker_client_order_id",
        "aggressor",
    ),
    "cancelled": ("seq", "order_id", "reason", "remaining_qty"),
    "replaced": ("seq", "order_id", "qty", "price", "priority_kept"),
    "triggered": ("seq", "order_id"),
}

_MISSING = "<missing>"

Lines = Union[str, Iterable[str]]


def scenario_lines(text: Lines) -> list[str]:
    if isinstance(text, str):
        return textwrap.dedent(text).strip("\n").split("\n")
    return list(text)


def _check_event_fields(event: dict) -> None:
    required = REQUIRED_FIELDS.get(event["type"], ("seq",))
    missing = [name for name in required if name not in event]
    assert not missing, f"{event['type']} event lacks {missing}: {event}"
    if event["type"] == "rejected" and event["reason"] == "duplicate_client_order_id":
        assert "order_id" in event, f"duplicate_client_order_id reject lacks order_id: {event}"


class Scenario:
    """An Exchange fed scenario lines, remembering every event it produced."""

    def __init__(self, text: Lines | None = None, *, rules_version: int = RULES_VERSION) -> None:
        # The rules as this build writes them (a fresh Exchange applies version 1, what a
        # journal without a rules checkpoint was written under).
        self.exchange = Exchange(rules_version=rules_version)
        self.events: list[dict] = []
        if text is not None:
            self.run(text)

    def run(self, text: Lines) -> list[dict]:
        """Apply each line as the next command; return the events of these lines."""
        produced: list[dict] = []
        for line in scenario_lines(text):
            seq = self.exchange.last_sequence + 1
            command, ts = parse_scenario_line(line, seq)
            events = self.exchange.apply(seq, seq if ts is None else ts, command)
            check_invariants(self.exchange)
            for event in events:
                as_dict = msgspec.to_builtins(event)
                assert as_dict["seq"] == seq, f"event of command {seq} carries seq {as_dict['seq']}"
                _check_event_fields(as_dict)
                produced.append(as_dict)
        self.events.extend(produced)
        return produced

    def since(self, seq: int) -> list[dict]:
        """The events of commands with sequence number >= `seq`."""
        return [event for event in self.events if event["seq"] >= seq]

    # Thin views of the exchange's queries, for readability.
    def depth(self, symbol: str = "X") -> dict:
        return self.exchange.depth(symbol)

    def orders(self, symbol: str = "X") -> dict:
        return self.exchange.orders(symbol)

    def book_ids(self, symbol: str = "X") -> dict:
        """{"bids": [order ids in priority order], "asks": [...]}."""
        orders = self.exchange.orders(symbol)
        return {side: [row["order_id"] for row in rows] for side, rows in orders.items()}

    def stops(self, symbol: str = "X") -> list:
        return self.exchange.stops(symbol)

    def order_state(self, order_id: int):
        return self.exchange.order_state(order_id)


def run(text: Lines) -> list[dict]:
    """All events of a scenario run on a fresh exchange."""
    return Scenario(text).events


def parse_expected(expected: Union[str, list]) -> list[dict]:
    if isinstance(expected, str):
        return [json.loads(line) for line in scenario_lines(expected) if line.strip()]
    return list(expected)


def project(actual: list[dict], expected: list[dict]) -> list[dict]:
    """`actual` cut down to the fields `expected` names, event by event."""
    projected = []
    for index, event in enumerate(actual):
        if index < len(expected):
            names = expected[index].keys()
            projected.append({name: event.get(name, _MISSING) for name in names})
        else:
            projected.append(event)
    return projected


def expect(actual: list[dict], expected: Union[str, list]) -> None:
    """Assert the events are exactly `expected`, in order, on the fields it names."""
    wanted = parse_expected(expected)
    for event in wanted:
        assert "type" in event, f"expected event without a type: {event}"
    got = project(actual, wanted)
    assert got == wanted, _explain(got, wanted)


def _explain(got: list[dict], wanted: list[dict]) -> str:
    lines = [f"events differ (got {len(got)}, expected {len(wanted)}):"]
    for index in range(max(len(got), len(wanted))):
        have = json.dumps(got[index]) if index < len(got) else "-"
        want = json.dumps(wanted[index]) if index < len(wanted) else "-"
        mark = "  " if have == want else "!!"
        lines.append(f"{mark} got  {have}")
        if have != want:
            lines.append(f"{mark} want {want}")
    return "\n".join(lines)


def of_type(events: list[dict], *types: str) -> list[dict]:
    return [event for event in events if event["type"] in types]
