"""Rules version 3: bounded client order ids and symbols, and memory bounded per order.

Examples for each reject reason (at place and at AddInstrument), the boundary (64 and 16
characters are accepted), the old rules (a version-2 exchange still accepts what version
3 refuses, so old journals replay as written), that a closed order keeps no command
object whatever closed it, and that a snapshot taken after many closed orders holds
only their few fixed bytes plus their client order ids. A hypothesis property runs the
same random streams (rules version 3, with bad ids and symbols drawn in) through the
compiled core and the pure-Python source loaded beside it and requires identical events,
state digests and snapshots.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

import statemachine
from scenario_helpers import Scenario, expect
from statemachine import Checkpoint, encode_state
from statemachine.codec import parse_scenario_line
from statemachine.exchange import CLIENT_ORDER_ID_BYTES_MAX, SYMBOL_BYTES_MAX
from statemachine.snapshot import decode_state
from strategies import command_streams

ROOT = Path(__file__).resolve().parent.parent


def place(
    client_order_id: str, symbol: str = "X", tif: str = "gtc", side: str = "buy", qty: int = 1, member: str = "A"
) -> str:
    return msgspec.json.encode({
        "type": "place", "member": member, "client_order_id": client_order_id, "symbol": symbol,
        "side": side, "order_type": "limit", "qty": qty, "price": 100, "tif": tif,
    }).decode()


def add_instrument(symbol: str) -> str:
    return msgspec.json.encode({"type": "add_instrument", "symbol": symbol}).decode()


def test_a_60_kilobyte_client_order_id_is_rejected_too_long():
    s = Scenario(add_instrument("X"))
    huge = "x" * 60_000
    expect(s.run(place(huge)), '{"seq":2,"type":"rejected","reason":"client_order_id_too_long"}')
    assert s.exchange.next_order_id == 1
    assert s.exchange._client_order_ids == {}


@pytest.mark.parametrize("client_order_id", ["tab\tid", "caf\u00e9", "del\x7f", "nul\x00", "new\nline"])
def test_a_client_order_id_outside_printable_ascii_is_rejected_not_printable(client_order_id):
    s = Scenario(add_instrument("X"))
    expect(s.run(place(client_order_id)), '{"seq":2,"type":"rejected","reason":"client_order_id_not_printable"}')


def test_the_longest_client_order_id_and_symbol_are_accepted():
    symbol = "S" * SYMBOL_BYTES_MAX
    s = Scenario(add_instrument(symbol))
    client_order_id = " ~" * (CLIENT_ORDER_ID_BYTES_MAX // 2)  # both ends of printable ASCII
    expect(s.run(place(client_order_id, symbol)), '{"seq":2,"type":"accepted","order_id":1}')


def test_a_symbol_too_long_or_not_printable_is_refused_at_add_instrument():
    s = Scenario()
    expect(s.run(add_instrument("S" * (SYMBOL_BYTES_MAX + 1))), '{"seq":1,"type":"rejected","reason":"symbol_too_long"}')
    expect(s.run(add_instrument("S\u00e9")), '{"seq":2,"type":"rejected","reason":"symbol_not_printable"}')
    assert s.exchange.books == {}


def test_a_place_naming_a_bad_symbol_is_rejected_for_the_symbol_not_as_unknown():
    s = Scenario(add_instrument("X"))
    expect(s.run(place("a", "S" * 17)), '{"seq":2,"type":"rejected","reason":"symbol_too_long"}')
    expect(s.run(place("b", "X\x00")), '{"seq":3,"type":"rejected","reason":"symbol_not_printable"}')


def test_the_id_bound_is_checked_before_the_duplicate_rule():
    s = Scenario([add_instrument("X"), place("dup")])
    expect(s.run(place("dup")), '{"seq":3,"type":"rejected","reason":"duplicate_client_order_id","order_id":1}')
    expect(s.run(place("x" * 65)), '{"seq":4,"type":"rejected","reason":"client_order_id_too_long"}')


def test_version_2_rules_still_accept_what_version_3_refuses():
    """What an old journal holds replays as it was written: no bound before version 3."""
    s = Scenario(add_instrument("S" * 40), rules_version=2)
    events = s.run(place("x" * 60_000 + "\t", "S" * 40))
    assert [event["type"] for event in events] == ["accepted"]
    s.exchange.apply(3, 3, Checkpoint(kind="rules", version=3))
    expect(s.run(place("y" * 65, "S" * 40)), '{"seq":4,"type":"rejected","reason":"client_order_id_too_long"}')


def test_an_order_that_never_rests_keeps_no_command():
    s = Scenario([
        add_instrument("X"),
        place("ioc", tif="ioc"),                                   # 1: no liquidity
        place("rest", side="sell", qty=3),                         # 2: rests
        place("fill", tif="ioc", qty=1, member="B"),               # 3: fills on arrival
        '{"type":"place","member":"B","client_order_id":"m","symbol":"X","side":"buy","order_type":"market","qty":2}',  # 4: takes 2 and closes 2
        place("fok", tif="fok", qty=5),                            # 5: fok, not fillable
        place("c"),                                                # 6: rests, then cancelled
        '{"type":"cancel","member":"A","order_id":6}',
    ])
    assert [s.order_state(oid)["status"] for oid in range(1, 7)] == ["closed"] * 6
    assert s.exchange._cmd[1:7] == [None] * 6
    assert (s.order_state(2)["member"], s.order_state(2)["symbol"], s.order_state(2)["side"]) == ("A", "X", "sell")


def test_a_closed_order_answers_cancel_and_replace_as_unknown():
    s = Scenario([add_instrument("X"), place("a", tif="ioc")])
    expect(s.run('{"type":"cancel","member":"A","order_id":1}'), '{"type":"rejected","reason":"unknown_order"}')
    expect(s.run('{"type":"cancel","member":"A","client_order_id":"a"}'), '{"type":"rejected","reason":"unknown_order"}')
    expect(s.run('{"type":"replace","member":"A","order_id":1,"qty":2}'), '{"type":"rejected","reason":"unknown_order"}')
    expect(s.run(place("a")), '{"type":"rejected","reason":"duplicate_client_order_id","order_id":1}')


def test_a_snapshot_after_many_closed_orders_is_small():
    """20,000 IOC orders that never rest: the snapshot holds 8 one-byte column and
    command entries per closed order plus its client order id memory, no command."""
    s = Scenario(add_instrument("X"))
    exchange = s.exchange
    count = 20_000
    for index in range(count):
        sequence = exchange.last_sequence + 1
        command, _ = parse_scenario_line(place(f"ioc-{index:012d}", tif="ioc"), sequence)
        exchange.apply(sequence, sequence, command)
    command, _ = parse_scenario_line(place("resting"), exchange.last_sequence + 1)
    exchange.apply(exchange.last_sequence + 1, 0, command)
    state = encode_state(exchange)
    # Per closed order: 8 bytes of nil/zero entries, the 16-character id (17 bytes) and
    # its order id (at most 3 bytes); a kept PlaceOrder alone would be about 60 more.
    assert len(state) < count * 32
    restored = decode_state(state)
    assert restored._cmd[1:count + 1] == [None] * count
    assert restored._cmd[count + 1].client_order_id == "resting"
    assert encode_state(restored) == state


def _pure_exchange_class():
    """The pure-Python source of the core, loaded under another name beside the
    compiled module this process imported."""
    spec = importlib.util.spec_from_file_location("pure_exchange_for_test", ROOT / "statemachine" / "exchange.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Exchange


@pytest.fixture(scope="module")
def both_cores():
    if statemachine.CORE_MODE != "compiled":
        pytest.skip("the pure-Python core is the one imported: nothing to compare in process")
    return statemachine.Exchange, _pure_exchange_class()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(command_streams())
def test_both_cores_agree_under_rules_version_3(both_cores, stream):
    compiled_class, pure_class = both_cores
    compiled, pure = compiled_class(), pure_class()
    for sequence, command in enumerate(stream, 1):
        assert compiled.apply(sequence, sequence, command) == pure.apply(sequence, sequence, command), command
        assert compiled.state_digest() == pure.state_digest()
    assert compiled.rules_version == pure.rules_version == 3
    assert encode_state(compiled) == encode_state(pure)


def test_a_closed_order_still_names_its_owner_also_after_a_snapshot():
    s = Scenario([add_instrument("X"), place("a", tif="ioc", member="B"), place("b", member="C")])
    restored = decode_state(encode_state(s.exchange))
    for exchange in (s.exchange, restored):
        assert exchange.order_state(1)["member"] == "B"
        assert (exchange.order_state(1)["symbol"], exchange.order_state(1)["side"]) == ("X", "buy")
        assert exchange.order_state(2)["member"] == "C"
