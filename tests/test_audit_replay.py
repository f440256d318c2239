"""`twinbook replay` (issue 7): the export equals the events of applying the same commands
in-process, filters select exactly the right rows, CSV parses back, snapshots are only a
shortcut, --follow picks up appends, and unreplayable rules versions are refused.

The comparison is with an in-process Exchange fed the same commands; once the live node
exists, a test must also compare the export with the execution reports a client
received from it.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time

import pytest
from click.testing import CliRunner

import journal

from command_streams import generate_commands
from replica.audit import EVENT_TYPES_BY_NAME
from replica.data_directory import DataDirectory
from replica.recovery import recover_exchange
from replica.snapshotter import write_snapshot
from statemachine.version import RULES_VERSION
from statemachine import AddInstrument, Checkpoint, PlaceOrder
from test_audit_support import (
    append_commands,
    audit_cli,
    build_node,
    expected_jsonl,
    flip_byte,
    in_process_rows,
    parse_jsonl,
    popen_cli,
    row_dict,
    run_cli,
    segment_files,
)

COMMANDS = generate_commands(1500, 21)
REFERENCE_ROWS = in_process_rows(COMMANDS)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> DataDirectory:
    return build_node(tmp_path_factory.mktemp("audit") / "node", COMMANDS)


def invoke(args: list):
    return CliRunner().invoke(audit_cli(), [str(arg) for arg in args])


def concerns_member(fields: dict, member: str) -> bool:
    if fields["type"] == "trade":
        return member in (fields["maker_member"], fields["taker_member"])
    return fields.get("member") == member


# ---------------------------------------------------------------------- exactness


def test_replay_writes_exactly_the_in_process_events_with_epoch_and_ts(node):
    result = invoke(["replay", node.root])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_jsonl(REFERENCE_ROWS)
    assert result.stderr == ""


def test_replay_with_book_updates_includes_market_data_exactly(node):
    result = invoke(["replay", node.root, "--book-updates"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_jsonl(in_process_rows(COMMANDS, book_updates=True))


def test_replay_accepts_the_journal_directory_itself(node):
    result = invoke(["replay", node.journal, "--to-seq", 300])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_jsonl([row for row in REFERENCE_ROWS if row[0] <= 300])


def test_epochs_are_reported_per_record(tmp_path):
    commands = generate_commands(400, 4)
    epoch_of = lambda sequence: 0 if sequence <= 150 else (3 if sequence <= 300 else 5)  # noqa: E731
    directory = build_node(tmp_path / "node", commands, epoch_of=epoch_of)
    result = invoke(["replay", directory.root])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_jsonl(in_process_rows(commands, epoch_of=epoch_of))


def test_event_fields_never_collide_with_the_record_fields_a_row_adds():
    for event_type in EVENT_TYPES_BY_NAME.values():
        assert not {"epoch", "ts"} & set(event_type.__struct_fields__), event_type


# ---------------------------------------------------------------------- filters


FILTER_CASES = [
    ([], lambda fields: True),
    (["--member", "M2"], lambda fields: concerns_member(fields, "M2")),
    (["--symbol", "BBB"], lambda fields: fields.get("symbol") == "BBB"),
    (["--types", "trade"], lambda fields: fields["type"] == "trade"),
    (["--types", "cancelled,replaced,triggered"], lambda fields: fields["type"] in ("cancelled", "replaced", "triggered")),
    (["--from-seq", 700], lambda fields: fields["seq"] >= 700),
    (["--to-seq", 250], lambda fields: fields["seq"] <= 250),
    (["--from-seq", 400, "--to-seq", 900], lambda fields: 400 <= fields["seq"] <= 900),
    (
        ["--member", "M1", "--symbol", "AAA", "--types", "trade,accepted,rejected", "--from-seq", 200, "--to-seq", 1200],
        lambda fields: concerns_member(fields, "M1") and fields.get("symbol") == "AAA"
        and fields["type"] in ("trade", "accepted") and 200 <= fields["seq"] <= 1200,
    ),
    (["--member", "M3", "--types", "rejected"], lambda fields: fields["type"] == "rejected" and fields.get("member") == "M3"),
]


@pytest.mark.parametrize("arguments, wanted", FILTER_CASES, ids=[" ".join(map(str, case[0])) or "none" for case in FILTER_CASES])
def test_filters_select_exactly_the_right_rows(node, arguments, wanted):
    result = invoke(["replay", node.root, *arguments])
    assert result.exit_code == 0, result.output
    expected = [row_dict(row) for row in REFERENCE_ROWS if wanted(row_dict(row))]
    assert expected, "the case selects nothing: it would not test anything"
    assert parse_jsonl(result.stdout_bytes) == expected


def test_member_filter_sees_both_sides_of_a_trade(node):
    trades = parse_jsonl(invoke(["replay", node.root, "--member", "M1", "--types", "trade"]).stdout_bytes)
    assert any(trade["maker_member"] == "M1" and trade["taker_member"] != "M1" for trade in trades)
    assert any(trade["taker_member"] == "M1" and trade["maker_member"] != "M1" for trade in trades)


# ---------------------------------------------------------------------- CSV


def test_csv_has_a_header_and_parses_back_to_the_same_rows(node):
    result = invoke(["replay", node.root, "--format", "csv"])
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.stdout_bytes.decode(), newline=""))
    assert reader.fieldnames[:4] == ["seq", "epoch", "ts", "type"]
    parsed = list(reader)
    expected = [row_dict(row) for row in REFERENCE_ROWS]
    assert len(parsed) == len(expected)
    for csv_row, fields in zip(parsed, expected):
        for column in reader.fieldnames:
            value = fields.get(column)
            text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
            assert csv_row[column] == text, (column, csv_row, fields)


def test_csv_columns_follow_the_selected_types(node):
    result = invoke(["replay", node.root, "--format", "csv", "--types", "trade", "--to-seq", 50])
    header = result.stdout_bytes.decode().splitlines()[0].split(",")
    assert header == [
        "seq", "epoch", "ts", "type", "trade_id", "symbol", "price", "qty", "maker_order_id", "taker_order_id",
        "maker_member", "taker_member", "maker_client_order_id", "taker_client_order_id", "aggressor",
    ]


def test_csv_quotes_awkward_strings(tmp_path):
    commands = [
        AddInstrument("X"),
        PlaceOrder('M,"1"', "id, with comma", "X", "sell", "limit", 5, 100),
        PlaceOrder("M2", 'quote"d\nnewline', "X", "buy", "limit", 5, 100),
    ]
    directory = build_node(tmp_path / "node", commands)
    result = invoke(["replay", directory.root, "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(result.stdout_bytes.decode(), newline="")))
    trade = [row for row in parsed if row["type"] == "trade"][0]
    assert trade["maker_member"] == 'M,"1"' and trade["maker_client_order_id"] == "id, with comma"
    assert trade["taker_client_order_id"] == 'quote"d\nnewline'


# ---------------------------------------------------------------------- snapshots


def test_from_seq_starts_at_a_verified_snapshot_and_gives_the_same_rows(tmp_path):
    directory = build_node(tmp_path / "node", COMMANDS)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=600).exchange)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=1000).exchange)
    result = invoke(["replay", directory.root, "--from-seq", 800])
    assert result.exit_code == 0, result.output
    assert "starting from verified snapshot 600" in result.stderr
    assert result.stdout_bytes == expected_jsonl([row for row in REFERENCE_ROWS if row[0] >= 800])
    without = invoke(["replay", directory.root, "--from-seq", 800, "--no-snapshots"])
    assert without.stdout_bytes == result.stdout_bytes and without.stderr == ""


def test_a_snapshot_that_fails_verification_is_not_used(tmp_path):
    directory = build_node(tmp_path / "node", COMMANDS)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=600).exchange)
    # Rewrite the journal after 500 with another history: the snapshot's chain value no
    # longer matches, so it must be skipped and the replay start from the beginning.
    journal.truncate_after(directory.journal, 500)
    other = generate_commands(1500, 77)[500:]
    append_commands(directory, other)
    result = invoke(["replay", directory.root, "--from-seq", 700])
    assert result.exit_code == 0, result.output
    assert "snapshot 600 not used" in result.stderr and "chain value" in result.stderr
    reference = in_process_rows(COMMANDS[:500] + other)
    assert result.stdout_bytes == expected_jsonl([row for row in reference if row[0] >= 700])


# ---------------------------------------------------------------------- rules versions


def test_a_rules_checkpoint_of_this_version_replays(tmp_path):
    commands = [Checkpoint(kind="rules", version=1)] + generate_commands(200, 5)
    directory = build_node(tmp_path / "node", commands)
    result = invoke(["replay", directory.root])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_jsonl(in_process_rows(commands))


def test_a_journal_written_under_other_rules_is_refused_clearly(tmp_path):
    directory = build_node(tmp_path / "node", [Checkpoint(kind="rules", version=RULES_VERSION + 1)] + generate_commands(50, 5))
    completed = run_cli(["replay", directory.root])
    assert completed.returncode == 3
    assert completed.stdout == b""
    assert b"journal written under rules version " + str(RULES_VERSION + 1).encode() in completed.stderr
    assert b"this build replays 1, 2" in completed.stderr


def test_a_rules_change_mid_journal_stops_before_the_records_it_governs(tmp_path):
    commands = generate_commands(300, 6)
    journal_commands = commands[:200] + [Checkpoint(kind="rules", version=9)] + commands[200:]
    directory = build_node(tmp_path / "node", journal_commands)
    result = invoke(["replay", directory.root])
    assert result.exit_code == 3
    assert "rules version 9 (from sequence 201)" in result.output
    assert result.stdout_bytes == expected_jsonl(in_process_rows(commands[:200]))


def test_a_rules_checkpoint_before_the_snapshot_is_still_seen(tmp_path):
    commands = [Checkpoint(kind="rules", version=4)] + generate_commands(300, 6)
    directory = build_node(tmp_path / "node", commands)
    # A snapshot can exist (an older build wrote it); the replay must still refuse.
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=200).exchange)
    result = invoke(["replay", directory.root, "--from-seq", 250])
    assert result.exit_code == 3 and "rules version 4" in result.output
    assert result.stdout_bytes == b""


# ---------------------------------------------------------------------- as a subprocess


def test_replay_as_a_subprocess_writes_only_data_on_stdout(node):
    completed = run_cli(["replay", node.root, "--types", "trade", "--format", "jsonl"])
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == b""
    assert completed.stdout == expected_jsonl([row for row in REFERENCE_ROWS if row[3].__struct_config__.tag == "trade"])
    completed = run_cli(["replay", node.root, "--format", "csv", "--to-seq", 100])
    assert completed.returncode == 0 and completed.stderr == b""
    assert completed.stdout.startswith(b"seq,epoch,ts,type,")


def test_usage_errors_exit_2(node):
    assert run_cli(["replay", node.root, "--types", "trade,nonsense"]).returncode == 2
    assert invoke(["replay", node.root, "--from-seq", 10, "--to-seq", 5]).exit_code == 2
    result = invoke(["replay", node.root, "--types", "level_changed"])
    assert result.exit_code == 2 and "book updates" in result.output


def test_a_corrupt_journal_is_an_operating_fault_naming_file_and_offset(tmp_path):
    directory = build_node(tmp_path / "node", COMMANDS)
    segment = segment_files(directory)[0]
    flip_byte(segment, segment.stat().st_size // 2)
    completed = run_cli(["replay", directory.root])
    assert completed.returncode == 3
    assert segment.name.encode() in completed.stderr and b"byte offset" in completed.stderr
    # The rows before the damage were written, and all of them are exact.
    rows = parse_jsonl(completed.stdout)
    assert rows == [row_dict(row) for row in REFERENCE_ROWS[: len(rows)]]


def test_a_torn_tail_ends_the_replay_at_the_last_complete_record(tmp_path):
    directory = build_node(tmp_path / "node", COMMANDS)
    last_segment = segment_files(directory)[-1]
    with open(last_segment, "ab") as out:
        out.write(b"\x30\x00\x00\x00partial frame")
    result = invoke(["replay", directory.root])
    assert result.exit_code == 0, result.output
    assert "torn tail" in result.stderr and last_segment.name in result.stderr
    assert result.stdout_bytes == expected_jsonl(REFERENCE_ROWS)


# ---------------------------------------------------------------------- follow


def _read_lines_until(stream, count: int, deadline: float) -> list:
    lines = []
    while len(lines) < count and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(json.loads(line))
    return lines


def test_follow_picks_up_records_appended_after_start(tmp_path):
    commands = generate_commands(600, 8)
    first, later = commands[:400], commands[400:]
    directory = build_node(tmp_path / "node", first)
    expected = [row_dict(row) for row in in_process_rows(commands)]
    expected_first = sum(1 for row in expected if row["seq"] <= 400)
    process = popen_cli(["replay", directory.root, "--follow", "--poll-interval-ms", 10], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        seen = _read_lines_until(process.stdout, expected_first, deadline)
        assert seen == expected[:expected_first]
        append_commands(directory, later)
        seen += _read_lines_until(process.stdout, len(expected) - expected_first, deadline)
        assert seen == expected
    finally:
        process.terminate()
        process.wait(timeout=10)
    # SIGTERM ends --follow cleanly.
    assert process.returncode == 0, process.stderr.read()


def test_follow_stops_at_to_seq(tmp_path):
    commands = generate_commands(300, 9)
    directory = build_node(tmp_path / "node", commands[:100])
    process = popen_cli(
        ["replay", directory.root, "--follow", "--to-seq", 250, "--poll-interval-ms", 10],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.2)
        append_commands(directory, commands[100:])
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    expected = [row_dict(row) for row in in_process_rows(commands) if row[0] <= 250]
    assert parse_jsonl(stdout) == expected
