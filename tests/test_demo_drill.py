"""`twinbook demo`: the failover drill with real processes passes its own checks, and
`twinbook examples` runs every shipped scenario with the invariants held."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tools.drill import format_summary, run_drill


def test_failover_drill_loses_nothing_duplicates_nothing_and_converges(tmp_path):
    ok, summary = asyncio.run(asyncio.wait_for(
        run_drill(seconds=9, keep=str(tmp_path / "drill"), rate_per_second=600, say=lambda line: None,
                  progress=lambda line: None),
        timeout=180,
    ))
    assert summary["orders_acknowledged"] > 0
    assert summary["orders_lost"] == 0 and summary["orders_duplicated"] == 0, format_summary(ok, summary)
    assert summary["digests_equal"], format_summary(ok, summary)
    assert summary["failover_ms"] is not None and summary["final_epoch"] == 1
    assert ok, format_summary(ok, summary)
    # --keep leaves both nodes' data for the other tools.
    assert (tmp_path / "drill" / "node-b" / "journal").is_dir()


def test_examples_command_runs_every_shipped_scenario():
    completed = subprocess.run(
        [sys.executable, "-c", "from tools.cli import main; main()", "examples"],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "invariants held after every command" in completed.stdout
    for name in ("iceberg.jsonl", "stop_cascade.jsonl", "stp_modes.jsonl", "sweep.jsonl", "rejects.jsonl"):
        assert name in completed.stdout
