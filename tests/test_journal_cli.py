"""The journal through the CLI: import -> journal -> export round trips every command type,
and verify/repair/inspect behave as operators expect (exit codes, messages)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from statemachine.codec import command_to_builtins, parse_scenario_line
from tools.cli import cli

EVERY_COMMAND_TYPE = [
    '{"type":"add_instrument","symbol":"AAPL","tick_size":5,"lot_size":10,"band_bps":100,"reference_price":10000,"ts":5}',
    '{"type":"add_instrument","symbol":"MSFT"}',
    '{"type":"place","member":"M1","client_order_id":"a1","symbol":"AAPL","side":"buy","order_type":"limit","qty":100,"price":10000,"tif":"day","post_only":true,"stp":"decrement","ts":7}',
    '{"type":"place","member":"M1","client_order_id":"a2","symbol":"AAPL","side":"sell","order_type":"stop_limit","qty":100,"price":9900,"stop_price":9950,"display_qty":20}',
    '{"type":"place","member":"M2","client_order_id":"b1","symbol":"MSFT","side":"sell","order_type":"market","qty":3}',
    '{"type":"place","member":"M2","client_order_id":"b2","symbol":"MSFT","side":"buy","order_type":"stop","qty":3,"stop_price":20,"tif":"ioc"}',
    '{"type":"cancel","member":"M1","order_id":1}',
    '{"type":"cancel","member":"M1","client_order_id":"a2"}',
    '{"type":"replace","member":"M1","order_id":2,"qty":50,"price":9800}',
    '{"type":"mass_cancel","member":"M1"}',
    '{"type":"mass_cancel","member":"M1","symbol":"AAPL"}',
    '{"type":"halt","symbol":"AAPL"}',
    '{"type":"resume","symbol":"AAPL","ts":9}',
    '{"type":"end_of_day"}',
    '{"type":"place","member":"M1","qty":1.5}',
    "",
]


def test_import_then_export_round_trips_every_command_type(tmp_path):
    scenario = tmp_path / "all.jsonl"
    scenario.write_text("\n".join(EVERY_COMMAND_TYPE) + "\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["journal", "import", str(scenario), str(tmp_path / "node" / "journal")])
    assert result.exit_code == 0, result.output
    exported = runner.invoke(cli, ["journal", "export", str(tmp_path / "node")])
    assert exported.exit_code == 0, exported.output
    lines = exported.output.splitlines()
    assert len(lines) == len(EVERY_COMMAND_TYPE)
    previous_ts = 0
    for number, (original, line) in enumerate(zip(EVERY_COMMAND_TYPE, lines), 1):
        record = json.loads(line)
        assert record["seq"] == number
        assert record["epoch"] == 0
        expected_command, ts = parse_scenario_line(original, number, internal_allowed=True)
        # A line without ts takes the previous record's timestamp.
        expected_ts = previous_ts if ts is None else ts
        assert record["ts"] == expected_ts
        previous_ts = expected_ts
        # Re-parsing the exported line gives back the very same command.
        again, _ = parse_scenario_line(line, number, internal_allowed=True)
        assert command_to_builtins(again) == command_to_builtins(expected_command)


def test_import_refuses_timestamps_going_backwards(tmp_path):
    scenario = tmp_path / "back.jsonl"
    scenario.write_text('{"type":"end_of_day","ts":10}\n{"type":"end_of_day","ts":9}\n')
    result = CliRunner().invoke(cli, ["journal", "import", str(scenario), str(tmp_path / "j")])
    assert result.exit_code == 1
    assert "line 2" in result.output and "never go backwards" in result.output


def _twinbook(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from tools.cli import main; main()", *arguments],
        capture_output=True, text=True, timeout=60,
    )


def test_verify_reports_a_torn_tail_and_repair_cuts_it_keeping_evidence(tmp_path):
    scenario = tmp_path / "s.jsonl"
    scenario.write_text("\n".join(EVERY_COMMAND_TYPE[:5]) + "\n")
    assert _twinbook("journal", "import", str(scenario), str(tmp_path / "j")).returncode == 0
    segment = next((tmp_path / "j").glob("*.journal"))
    intact_size = segment.stat().st_size
    with open(segment, "ab") as tail:
        tail.write(b"\x30\x00\x00\x00partial")
    verified = _twinbook("journal", "verify", str(tmp_path / "j"))
    assert verified.returncode == 1
    assert "TORN" in verified.stdout and segment.name in verified.stdout
    repaired = _twinbook("journal", "repair", str(tmp_path / "j"))
    assert repaired.returncode == 0, repaired.stderr
    assert segment.stat().st_size == intact_size
    assert (tmp_path / "j" / (segment.name + ".torn")).read_bytes() == b"\x30\x00\x00\x00partial"
    assert _twinbook("journal", "verify", str(tmp_path / "j")).returncode == 0


def test_verify_of_a_corrupt_middle_record_names_file_and_offset_and_exits_1_like_twinbook_verify(tmp_path):
    scenario = tmp_path / "s.jsonl"
    scenario.write_text("\n".join(EVERY_COMMAND_TYPE[:8]) + "\n")
    assert _twinbook("journal", "import", str(scenario), str(tmp_path / "j")).returncode == 0
    segment = next((tmp_path / "j").glob("*.journal"))
    data = bytearray(segment.read_bytes())
    data[200] ^= 0x01
    segment.write_bytes(bytes(data))
    result = _twinbook("journal", "verify", str(tmp_path / "j"))
    assert result.returncode == 1, result.stderr  # the verdict "corrupt", as `twinbook verify` gives it
    assert result.stdout.startswith("CORRUPT ") and segment.name in result.stdout and "offset" in result.stdout
    assert _twinbook("verify", str(tmp_path / "j")).returncode == 1
    verdict = json.loads(_twinbook("journal", "verify", "--json", str(tmp_path / "j")).stdout)
    assert verdict["verdict"] == "corrupt" and verdict["path"].endswith(segment.name)
    inspected = _twinbook("journal", "inspect", str(tmp_path / "j"))
    assert "CORRUPT" in inspected.stdout and "{" not in inspected.stdout  # no dict repr


@pytest.mark.parametrize("arguments", [["journal", "inspect"], ["journal", "verify"], ["snapshot", "list"]])
def test_missing_directory_is_a_usage_error(tmp_path, arguments):
    result = _twinbook(*arguments, str(tmp_path / "absent"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
