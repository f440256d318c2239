"""`twinbook bench fix` runs end to end on a small order count (its figures are for
docs/BENCHMARKS.md; nothing here is timed)."""

from __future__ import annotations

from tools.bench_fix import run_fix_benchmark


def test_the_fix_benchmark_reports_both_protocols(tmp_path):
    figures = run_fix_benchmark(orders=300, window=50, latency_orders=20, durability="none", workdir=str(tmp_path),
                                rebuild_records=2_000)
    for protocol in ("native", "fix"):
        row = figures[protocol]
        assert row["orders_per_second"] > 0 and row["primary_cpu_us_per_order"] > 0
        assert 0 < row["ack_latency_p50_us"] <= row["ack_latency_p99_us"]
    assert figures["fix_over_native_throughput"] > 0
    assert figures["ledger_rebuild"]["records"] == 2_000 and figures["ledger_rebuild"]["records_per_second"] > 0
