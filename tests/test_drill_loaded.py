"""The failover drill on a loaded machine: two `python -c "while True: pass"` processes
keep both cores busy while `twinbook demo` runs; every run must pass its own checks
(nothing acknowledged lost or duplicated, digests equal). The slow test runs the drill
10 times in a row and also holds the client-visible failover (SIGKILL to the first order
acknowledged by the promoted standby) within 1 s; the default suite runs it once and only
prints the figure: it shares a 2-core CI box with other suites while loading both cores on
purpose, so a time bound there would measure the box (speed is for `twinbook bench`).
"""

from __future__ import annotations

import asyncio

import pytest

from tools.busy_load import busy_loops
from tools.drill import format_summary, run_drill

FAILOVER_MS_MAX = 1000.0
BUSY_LOOPS = 2
# Within the 300-500 ms the failover target is stated for; the standby's guard uses the
# same threshold (one promotion rule), so a slow-but-alive primary is not replaced.
WATCHDOG_TIMEOUT_MS = 300


def drill_runs(runs: int, tmp_path, *, failover_ms_max: float | None) -> list[dict]:
    summaries = []
    with busy_loops(BUSY_LOOPS):
        for run in range(runs):
            ok, summary = asyncio.run(asyncio.wait_for(
                run_drill(seconds=8, keep=str(tmp_path / f"drill-{run}"), rate_per_second=1000,
                          say=lambda line: None, progress=lambda line: None, timeout_ms=WATCHDOG_TIMEOUT_MS),
                timeout=240,
            ))
            assert ok, f"run {run + 1}: {format_summary(ok, summary)}"
            assert summary["orders_lost"] == 0 and summary["orders_duplicated"] == 0
            assert summary["digests_equal"] is True
            if failover_ms_max is not None:
                assert summary["failover_ms"] <= failover_ms_max, f"run {run + 1}: {format_summary(ok, summary)}"
            summaries.append(summary)
    return summaries


def test_the_drill_loses_and_duplicates_nothing_on_a_loaded_machine(tmp_path):
    summary = drill_runs(1, tmp_path, failover_ms_max=None)[0]
    print("failover_ms:", round(summary["failover_ms"]))


@pytest.mark.slow
def test_the_drill_passes_ten_runs_in_a_row_on_a_loaded_machine(tmp_path):
    summaries = drill_runs(10, tmp_path, failover_ms_max=FAILOVER_MS_MAX)
    print("failover_ms:", [round(summary["failover_ms"]) for summary in summaries])
    print("orders_acknowledged:", [summary["orders_acknowledged"] for summary in summaries])
