"""The audit replay benchmark runs and reports every figure (a smoke test: no timing is
asserted; the figures are for `twinbook bench replay`)."""

from __future__ import annotations

from tools.bench_replay import run_replay_benchmark


def test_replay_benchmark_reports_rates_and_rows_for_every_variant(tmp_path):
    figures = run_replay_benchmark(records=3000, seed=2, workdir=str(tmp_path))
    for variant in ("replay_no_output", "jsonl_trades", "jsonl_all", "jsonl_member", "csv_trades", "csv_all"):
        assert figures[f"{variant}_records_per_second"] > 0
        assert figures[f"{variant}_records_per_cpu_second"] > 0
    assert figures["replay_no_output_rows"] == 0
    assert 0 < figures["jsonl_trades_rows"] == figures["csv_trades_rows"] < figures["jsonl_all_rows"] == figures["csv_all_rows"]
    assert 0 < figures["jsonl_member_rows"] < figures["jsonl_all_rows"]
    assert figures["stage_apply_only_records_per_second"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary journal is removed
