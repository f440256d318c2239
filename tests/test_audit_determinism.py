"""`twinbook determinism-check` (issue 7): passes on this build, and FAILS, naming the first
differing sequence and the two events, on a deliberately non-deterministic one.

The non-deterministic build is the worker's test-only fault injection
(TWINBOOK_INJECT_NONDETERMINISM=set-order): each record's events come out in the
iteration order of a set of their encodings, which depends on PYTHONHASHSEED.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from command_streams import generate_commands as command_stream
from replica.determinism import FAULT_INJECTION_ENV, FAULT_SET_ORDER
from replica.recovery import recover_exchange
from replica.snapshotter import write_snapshot
from replica.workload import generate_commands
from statemachine.version import RULES_VERSION
from statemachine import AddInstrument, Checkpoint
from test_audit_support import audit_cli, build_node, environment_without, in_process_rows, run_cli

GOLDEN_DIRECTORY = Path(__file__).resolve().parent / "golden"
FIRST_DIFFERENCE = re.compile(r"first difference at sequence (\d+) \((.+)\)")


def invoke(args: list, env: dict | None = None):
    return CliRunner(env=env).invoke(audit_cli(), ["determinism-check", *[str(arg) for arg in args]])


def test_a_generated_stream_is_deterministic_across_hash_seeds_and_snapshots():
    result = invoke(["--seed", 11, "--commands", 1500], env={FAULT_INJECTION_ENV: None})
    assert result.exit_code == 0, result.output
    assert "PYTHONHASHSEED=1" in result.output and "PYTHONHASHSEED=2" in result.output
    assert "from snapshot 750" in result.output
    assert result.output.splitlines()[-1].startswith("OK: 3 runs agree")


def test_a_node_journal_is_checked_from_its_own_newest_snapshot(tmp_path):
    directory = build_node(tmp_path / "node", command_stream(1200, 12))
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=400).exchange)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=1000).exchange)
    completed = run_cli(["determinism-check", "--journal", directory.root], env=environment_without(FAULT_INJECTION_ENV))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert b"from snapshot 1000" in completed.stdout
    assert completed.stdout.splitlines()[-1].startswith(b"OK: 3 runs agree")


def test_a_scenario_is_checked_as_a_subprocess():
    completed = run_cli(
        ["determinism-check", "--scenario", GOLDEN_DIRECTORY / "stops.jsonl"], env=environment_without(FAULT_INJECTION_ENV)
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines()[-1].startswith(b"OK:")


def test_a_non_deterministic_build_fails_and_names_the_first_differing_sequence():
    commands = generate_commands(600, 13)
    result = invoke(["--seed", 13, "--commands", 600], env={FAULT_INJECTION_ENV: FAULT_SET_ORDER})
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    mismatch_at = next(index for index, line in enumerate(lines) if line.startswith("MISMATCH run A vs run B"))
    sequence_text, what = FIRST_DIFFERENCE.search(lines[mismatch_at]).groups()
    sequence = int(sequence_text)
    assert what == "events"
    # The fault only reorders the events of a record that has two or more (the runs
    # produce market-data events too), so the first difference must be at such a record.
    event_counts = Counter(row[0] for row in in_process_rows(commands, book_updates=True))
    assert event_counts[sequence] >= 2
    event_a = json.loads(lines[mismatch_at + 1].removeprefix("  run A: "))
    event_b = json.loads(lines[mismatch_at + 2].removeprefix("  run B: "))
    assert event_a["seq"] == event_b["seq"] == sequence
    assert event_a != event_b
    assert lines[-1].startswith("FAILED")


def test_a_non_deterministic_build_fails_as_a_subprocess_too():
    environment = dict(os.environ, **{FAULT_INJECTION_ENV: FAULT_SET_ORDER})
    completed = run_cli(["determinism-check", "--seed", 14, "--commands", 300], env=environment)
    assert completed.returncode == 1
    assert FIRST_DIFFERENCE.search(completed.stdout.decode())


def test_exactly_one_source_is_required():
    assert invoke([]).exit_code == 2
    assert invoke(["--seed", 1]).exit_code == 2
    assert invoke(["--seed", 1, "--commands", 10, "--scenario", GOLDEN_DIRECTORY / "stops.jsonl"]).exit_code == 2


def test_a_journal_under_other_rules_is_refused_not_checked(tmp_path):
    directory = build_node(tmp_path / "node", [Checkpoint(kind="rules", version=RULES_VERSION + 1)] + command_stream(50, 16))
    completed = run_cli(["determinism-check", "--journal", directory.root], env=environment_without(FAULT_INJECTION_ENV))
    assert completed.returncode == 3
    assert b"journal written under rules version " + str(RULES_VERSION + 1).encode() in completed.stderr


def test_instruments_added_out_of_symbol_order_survive_a_snapshot(tmp_path):
    commands = [AddInstrument("ZZZ")] + command_stream(400, 15)  # books ZZZ, AAA, BBB; sorted AAA, BBB, ZZZ
    directory = build_node(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=200).exchange)
    result = invoke(["--journal", directory.root], env={FAULT_INJECTION_ENV: None})
    assert result.exit_code == 0, result.output
