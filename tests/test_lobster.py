"""The LOBSTER validation (tools/lobster.py) on small hand-written files.

Each scenario is a LOBSTER message file and its orderbook file written by hand, small
enough to check every row by eye: parsing, seeding from the first row, every message
type, unknown orders, re-synchronisation outside the window, interior mismatches, FIFO
disagreements and their classes, halts, the recorded commands and the CLI. The real
NASDAQ data is exercised in test_lobster_data.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from statemachine import Exchange
from tools.commands_run import run_scenario_lines
from tools.commands_validate import validate
from tools.lobster import (
    BUY,
    DUMMY_ASK_PRICE,
    DUMMY_BID_PRICE,
    EVERYTHING_INSIDE,
    SELL,
    LobsterFormatError,
    LobsterReplay,
    WindowHistory,
    parse_message_line,
    parse_orderbook_line,
    parse_seconds_to_ns,
    read_messages,
    read_orderbook,
    symbol_from_filename,
    validate_files,
    window_bound,
)

# ---------------------------------------------------------------------------- helpers


def orderbook_line(asks: list[tuple[int, int]], bids: list[tuple[int, int]], levels: int) -> str:
    """A LOBSTER orderbook line: ask price, ask size, bid price, bid size per level, padded."""
    fields = []
    for level in range(levels):
        ask = asks[level] if level < len(asks) else (DUMMY_ASK_PRICE, 0)
        bid = bids[level] if level < len(bids) else (DUMMY_BID_PRICE, 0)
        fields += [ask[0], ask[1], bid[0], bid[1]]
    return ",".join(str(value) for value in fields)


def write_sample(directory: Path, steps: list, levels: int, name: str = "TEST") -> tuple[Path, Path]:
    """steps: [(message line, asks, bids)] -> (message path, orderbook path)."""
    message_path = directory / f"{name}_2012-06-21_34200000_57600000_message_{levels}.csv"
    orderbook_path = directory / f"{name}_2012-06-21_34200000_57600000_orderbook_{levels}.csv"
    message_path.write_text("".join(message + "\n" for message, _, _ in steps))
    orderbook_path.write_text("".join(orderbook_line(asks, bids, levels) + "\n" for _, asks, bids in steps))
    return message_path, orderbook_path


# A two-level book. Before the first message NASDAQ holds (unknown to the file):
# bids 100 @ 10000 (order 1), 50 @ 9990 (order 2); asks 80 @ 10010, 40 @ 10020.
ASKS = [(10010, 80), (10020, 40)]
LIFECYCLE = [
    ("34200.000000001,1,11,30,10000,1", ASKS, [(10000, 130), (9990, 50)]),
    ("34200.000000002,1,12,20,10000,1", ASKS, [(10000, 150), (9990, 50)]),
    # unknown order 1 (the seeded liquidity at the head of 10000) executes in full
    ("34200.000000003,4,1,100,10000,1", ASKS, [(10000, 50), (9990, 50)]),
    ("34200.000000004,4,11,10,10000,1", ASKS, [(10000, 40), (9990, 50)]),
    ("34200.000000005,2,12,5,10000,1", ASKS, [(10000, 35), (9990, 50)]),
    ("34200.000000006,3,11,20,10000,1", ASKS, [(10000, 15), (9990, 50)]),
    # 10000 empties: a level the file never showed (70 @ 9980) comes into the window
    ("34200.000000007,3,12,15,10000,1", ASKS, [(9990, 50), (9980, 70)]),
    # unknown order 2 leaves: the bid side now shows fewer than two levels
    ("34200.000000008,3,2,50,9990,1", ASKS, [(9980, 70)]),
    ("34200.000000009,5,0,3,10010,-1", ASKS, [(9980, 70)]),
    ("34200.000000010,7,0,0,-1,-1", ASKS, [(9980, 70)]),
    ("34200.000000011,7,0,0,1,-1", ASKS, [(9980, 70)]),
]


# ---------------------------------------------------------------------------- parsing


def test_times_become_integer_nanoseconds_exactly():
    assert parse_seconds_to_ns("34200.004241176") == 34_200_004_241_176
    assert parse_seconds_to_ns("35615.6065") == 35_615_606_500_000
    assert parse_seconds_to_ns("34200") == 34_200_000_000_000
    # LOBSTER sometimes prints float noise past the nanosecond; it rounds half-even.
    assert parse_seconds_to_ns("35821.088778456004") == 35_821_088_778_456
    assert parse_seconds_to_ns("1.0000000005") == 1_000_000_000
    assert parse_seconds_to_ns("1.0000000015") == 1_000_000_002


@pytest.mark.parametrize("text", ["", "abc", "NaN", "-1.5", "Infinity"])
def test_bad_times_are_refused(text):
    with pytest.raises(LobsterFormatError):
        parse_seconds_to_ns(text)


def test_a_message_line_parses_into_integers():
    message = parse_message_line("34200.004241176,1,16113575,18,5853300,1", 1)
    assert (message.time_ns, message.kind, message.order_id, message.size, message.price) == (
        34_200_004_241_176, 1, 16113575, 18, 5853300,
    )
    assert message.side == BUY
    assert parse_message_line("1.0,4,7,5,100,-1", 2).side == SELL


@pytest.mark.parametrize(
    "text, words",
    [
        ("1.0,1,7,5,100", "6 comma-separated fields"),
        ("1.0,6,7,5,100,1", "unknown message type 6"),
        ("1.0,1,7,5,100,0", "direction 0"),
        ("1.0,1,7,five,100,1", "size 'five'"),
    ],
)
def test_bad_message_lines_name_the_line_and_the_fault(text, words):
    with pytest.raises(LobsterFormatError) as caught:
        parse_message_line(text, 42)
    assert "line 42" in str(caught.value)
    assert words in str(caught.value)


def test_an_orderbook_line_drops_padding_and_cuts_to_the_levels_asked():
    text = orderbook_line([(10010, 80)], [(10000, 5), (9990, 7), (9980, 9)], 3)
    row = parse_orderbook_line(text, 1, 3)
    assert row.asks == ((10010, 80),)
    assert row.bids == ((10000, 5), (9990, 7), (9980, 9))
    assert parse_orderbook_line(text, 1, 2).bids == ((10000, 5), (9990, 7))
    with pytest.raises(LobsterFormatError, match="4 fields per level"):
        parse_orderbook_line("1,2,3", 1, 1)


def test_files_are_read_with_their_names_in_errors(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE[:2], 2)
    assert [m.order_id for m in read_messages(messages)] == [11, 12]
    assert [r.line for r in read_orderbook(orderbook, 2)] == [1, 2]
    messages.write_text("1.0,1,7,5,100,1\n1.0,1,x,5,100,1\n")
    with pytest.raises(LobsterFormatError) as caught:
        list(read_messages(messages))
    assert str(messages) in str(caught.value) and "line 2" in str(caught.value)


def test_the_symbol_is_the_ticker_of_the_file_name():
    assert symbol_from_filename(Path("/x/AAPL_2012-06-21_34200000_57600000_message_10.csv")) == "AAPL"
    assert symbol_from_filename(Path("messages.csv")) == "LOBSTER"


# ---------------------------------------------------------------------------- windows


def test_window_bounds_and_history():
    assert window_bound(BUY, [(100, 1), (99, 1)], 2) == 99
    assert window_bound(SELL, [(101, 1), (102, 1)], 2) == -102
    assert window_bound(BUY, [(100, 1)], 2) == EVERYTHING_INSIDE
    history = WindowHistory()
    history.record(0, 95, -105)   # bids down to 95, asks up to 105
    history.record(1, 98, -103)   # the window narrows
    history.record(2, 90, -110)   # and widens again
    assert history.stayed_inside(BUY, 96, since_row=2)
    assert not history.stayed_inside(BUY, 96, since_row=1)
    assert not history.stayed_inside(BUY, 96, since_row=0)
    assert history.stayed_inside(BUY, 98, since_row=0)
    assert history.stayed_inside(SELL, 104, since_row=2)
    assert not history.stayed_inside(SELL, 104, since_row=0)
    assert history.stayed_inside(SELL, 103, since_row=0)
    assert history.stayed_inside(BUY, 1, since_row=3)  # nothing recorded since: nothing to contradict


# ---------------------------------------------------------------------------- replays


def test_every_message_type_through_the_engine(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    report = validate_files(messages, orderbook)
    assert report.symbol == "TEST" and report.levels == 2
    assert report.rows == len(LIFECYCLE)
    # Only the row where a never-shown level (70 @ 9980) enters the window differs,
    # and only outside the previous window (whose bids reached down to 9990).
    assert report.rows_exact == len(LIFECYCLE) - 1
    assert report.rows_outside_window == 1
    assert report.rows_interior == 0
    assert report.mismatch_classes == {"row_outside_previous_window_missing_level": 1}
    assert report.resync_commands_by_reason == {"outside_previous_window": 1, "unknown_order_cancelled": 1}
    # Two executions: unknown order 1 (FIFO takes the seeded liquidity standing for it)
    # and known order 11 at the head of its level.
    assert (report.executions_all.total, report.executions_all.consistent) == (2, 2)
    assert (report.executions_known.total, report.executions_known.consistent) == (1, 1)
    assert (report.executions_verifiable.total, report.executions_verifiable.consistent) == (1, 1)
    assert report.unknown_order_ids == {1, 2}
    assert report.messages_by_type == {1: 2, 2: 1, 3: 3, 4: 2, 5: 1, 7: 2}
    # setup, 4 seeded levels, 9 converted messages (the hidden execution gives none and
    # the delete of unknown order 2 becomes a resync command), 2 resync commands.
    assert report.commands == {"setup": 1, "seed": 4, "message": 9, "resync": 2}


def test_seeding_undoes_the_first_message(tmp_path):
    # The first row shows order 11 already resting; the seed must not hold it twice.
    messages, orderbook = write_sample(tmp_path, LIFECYCLE[:1], 2)
    replay = LobsterReplay("TEST", 2)
    replay.run(read_messages(messages), read_orderbook(orderbook, 2))
    book = replay.exchange.orders("TEST")
    assert [(o["price"], o["visible_qty"], replay.nasdaq_id_of.get(o["order_id"])) for o in book["bids"]] == [
        (10000, 100, None), (10000, 30, 11), (9990, 50, None),
    ]


def test_an_execution_of_a_seeded_order_when_the_file_starts_with_one(tmp_path):
    steps = [("1.0,4,5,10,10000,1", ASKS, [(10000, 90)])]
    messages, orderbook = write_sample(tmp_path, steps, 2)
    report = validate_files(messages, orderbook)
    assert report.rows_exact == 1
    assert (report.executions_all.total, report.executions_all.consistent) == (1, 1)
    assert report.executions_known.total == 0


def _two_orders_then_the_second_executes(first_id: int, second_id: int, mention_first_later: bool):
    steps = [
        (f"1.0,1,{first_id},100,10000,1", [(10100, 10)], [(10000, 100)]),
        (f"2.0,1,{second_id},50,10000,1", [(10100, 10)], [(10000, 150)]),
        # NASDAQ executes the second order although the first arrived earlier.
        (f"3.0,4,{second_id},50,10000,1", [(10100, 10)], [(10000, 100)]),
    ]
    if mention_first_later:
        steps.append((f"4.0,3,{first_id},100,10000,1", [(10100, 10)], []))
    return steps


@pytest.mark.parametrize(
    "first_id, second_id, mention_first_later, expected_class",
    [
        # the order passed over is still resting later: consistent with self-match prevention
        (21, 22, True, "fifo_resting_order_skipped"),
        # the order ahead has a higher NASDAQ id: NASDAQ queued by id
        (40, 30, True, "fifo_queued_by_order_id"),
        # no later message mentions the order ahead: it may have left unseen
        (21, 22, False, "fifo_unmentioned_order_ahead"),
    ],
)
def test_a_fifo_disagreement_is_counted_classified_and_repaired(
    tmp_path, first_id, second_id, mention_first_later, expected_class
):
    steps = _two_orders_then_the_second_executes(first_id, second_id, mention_first_later)
    messages, orderbook = write_sample(tmp_path, steps, 1)
    report = validate_files(messages, orderbook)
    assert (report.executions_known.total, report.executions_known.consistent) == (1, 0)
    assert (report.executions_verifiable.total, report.executions_verifiable.consistent) == (1, 0)
    assert report.mismatch_classes == {expected_class: 1}
    # NASDAQ's outcome is applied with resync commands, so every row still matches.
    assert report.rows_exact == len(steps)
    assert report.resync_commands_by_reason == {"execution_fifo_disagrees": 1}
    assert str(second_id) in report.examples[expected_class][0]


def test_anonymous_liquidity_ahead_makes_an_execution_unverifiable(tmp_path):
    steps = [
        ("1.0,1,21,50,10000,1", [(10100, 10)], [(10000, 80)]),  # 30 seeded ahead of it
        ("2.0,4,21,50,10000,1", [(10100, 10)], [(10000, 30)]),
    ]
    messages, orderbook = write_sample(tmp_path, steps, 1)
    report = validate_files(messages, orderbook)
    assert (report.executions_known.total, report.executions_known.consistent) == (1, 0)
    assert report.executions_verifiable.total == 0
    assert report.mismatch_classes == {"fifo_anonymous_liquidity_ahead": 1}
    assert report.rows_exact == 2


def test_an_interior_mismatch_is_counted_and_repaired(tmp_path):
    steps = [
        ("1.0,1,11,30,10000,1", [(10100, 10)], [(10000, 30)]),
        # the file shows 45 where the two orders make 50
        ("2.0,1,12,20,10000,1", [(10100, 10)], [(10000, 45)]),
        ("3.0,3,12,20,10000,1", [(10100, 10)], [(10000, 25)]),
    ]
    messages, orderbook = write_sample(tmp_path, steps, 2)
    report = validate_files(messages, orderbook)
    assert (report.rows_exact, report.rows_outside_window, report.rows_interior) == (2, 0, 1)
    assert report.mismatch_classes == {"row_inside_previous_window_quantity": 1}
    # The 5 comes off order 11, which no later message mentions, not off order 12,
    # which a later message deletes (so it was certainly still resting).
    assert report.resync_commands_by_reason == {"interior_mismatch": 1}


def test_without_lookahead_the_newest_order_gives_way(tmp_path):
    steps = [
        ("1.0,1,11,30,10000,1", [(10100, 10)], [(10000, 30)]),
        ("2.0,1,12,20,10000,1", [(10100, 10)], [(10000, 45)]),
        ("3.0,3,12,20,10000,1", [(10100, 10)], [(10000, 25)]),
    ]
    messages, orderbook = write_sample(tmp_path, steps, 2)
    report = validate_files(messages, orderbook, lookahead=False)
    # Order 12 was cut to 15, so its delete of 20 no longer matches the engine.
    assert report.mismatch_classes["delete_size_differs"] == 1
    assert report.lookahead is False and report.as_dict()["lookahead"] is False


def test_a_new_order_crossing_stale_liquidity_clears_it(tmp_path):
    steps = [
        # The seed holds an ask at 10010 that NASDAQ no longer has: the first row after a
        # far-away message still shows it, then a bid at 10010 arrives (it rests at
        # NASDAQ, so nothing was on the ask at 10010 any more).
        ("1.0,1,11,5,9000,1", [(10010, 80)], [(10000, 10), (9000, 5)]),
        ("2.0,1,12,7,10010,1", [(10020, 40)], [(10010, 7), (10000, 10), (9000, 5)]),
    ]
    messages, orderbook = write_sample(tmp_path, steps, 3)
    report = validate_files(messages, orderbook)
    assert report.mismatch_classes["new_order_crosses_stale_liquidity"] == 1
    assert report.resync_commands_by_reason["stale_liquidity_crossed_by_new_order"] == 1
    assert report.commands.get("message") == 2


def test_a_partial_cancel_during_a_halt_is_bracketed(tmp_path):
    steps = [
        ("1.0,1,11,30,10000,1", [(10100, 10)], [(10000, 30)]),
        ("2.0,7,0,0,-1,-1", [(10100, 10)], [(10000, 30)]),
        ("3.0,2,11,10,10000,1", [(10100, 10)], [(10000, 20)]),
        ("4.0,7,0,0,0,-1", [(10100, 10)], [(10000, 20)]),
        ("5.0,7,0,0,1,-1", [(10100, 10)], [(10000, 20)]),
        ("6.0,1,12,5,10000,1", [(10100, 10)], [(10000, 25)]),
    ]
    messages, orderbook = write_sample(tmp_path, steps, 1)
    records = []
    report = validate_files(messages, orderbook, command_sink=records.append)
    assert report.rows_exact == len(steps)
    assert report.mismatch_classes == {"command_while_halted": 1}
    kinds = [record["type"] for record in records if record.get("lobster_line") == 3]
    assert kinds == ["resume", "replace", "halt"]
    assert not any(name.startswith("engine_rejected") for name in report.mismatch_classes)


def test_recorded_commands_replay_to_the_same_book(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    encode = msgspec.json.Encoder().encode
    lines = []
    replay = LobsterReplay("TEST", 2, command_sink=lambda record: lines.append(encode(record)))
    report = replay.run(read_messages(messages), read_orderbook(orderbook, 2))
    origins = [json.loads(line)["origin"] for line in lines]
    assert origins.count("resync") == sum(report.resync_commands_by_reason.values())
    assert len(lines) == sum(report.commands.values())
    exchange = Exchange()
    run_scenario_lines(lines, exchange, None, check=True)
    assert exchange.depth("TEST") == replay.exchange.depth("TEST")
    assert exchange.state_digest() == replay.exchange.state_digest()


def test_files_of_different_lengths_are_refused(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE[:3], 2)
    messages.write_text("\n".join(messages.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(LobsterFormatError, match="fewer lines"):
        validate_files(messages, orderbook)


def test_levels_beyond_the_file_are_refused(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE[:3], 2)
    with pytest.raises(ValueError, match="between 1 and 2"):
        validate_files(messages, orderbook, levels=3)


# ---------------------------------------------------------------------------- CLI


def test_cli_prints_a_table(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    result = CliRunner().invoke(validate, ["lobster", str(messages), str(orderbook)])
    assert result.exit_code == 0, result.output
    assert "match exactly" in result.output
    assert "known id" in result.output and "verifiable" in result.output
    assert "row_outside_previous_window_missing_level" in result.output


def test_cli_prints_one_json_object_and_writes_commands(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    commands = tmp_path / "commands.jsonl"
    result = CliRunner().invoke(
        validate, ["lobster", str(messages), str(orderbook), "--json", "--levels", "1", "--commands-out", str(commands)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["levels"] == 1 and data["rows"] == len(LIFECYCLE)
    assert set(data["executions"]) == {"all", "known_id", "verifiable"}
    assert data["engine_commands"]["total"] == len(commands.read_text().splitlines())


@pytest.mark.parametrize("missing", ["message", "orderbook"])
def test_cli_names_a_missing_file(tmp_path, missing):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    gone = tmp_path / "gone.csv"
    arguments = [str(gone), str(orderbook)] if missing == "message" else [str(messages), str(gone)]
    result = CliRunner().invoke(validate, ["lobster", *arguments])
    assert result.exit_code == 1
    assert f"LOBSTER {missing} file not found: {gone}" in result.output


def test_cli_reports_a_malformed_file_and_too_many_levels(tmp_path):
    messages, orderbook = write_sample(tmp_path, LIFECYCLE, 2)
    result = CliRunner().invoke(validate, ["lobster", str(messages), str(orderbook), "--levels", "3"])
    assert result.exit_code == 1 and "holds only 2 levels" in result.output
    messages.write_text("1.0,1,11,30,10000,1\nnot,a,message\n")
    result = CliRunner().invoke(validate, ["lobster", str(messages), str(orderbook)])
    assert result.exit_code == 1
    assert str(messages) in result.output and "line 2" in result.output
