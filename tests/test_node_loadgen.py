"""`twinbook loadgen` and the e2e benchmark, smoke-tested against real nodes.

Nothing here is timed (benchmarks prove speed, tests prove behaviour): the checks are
that the load reaches the node, every order is answered, the node holds what was
accepted, and the figures are complete and consistent.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from node_helpers import start_node  # noqa: F401
from tools.commands_load import loadgen
from tools.bench_e2e import run_e2e_benchmark
from tools.loadgen import histogram_table, latency_percentiles, value_at


def test_loadgen_json_figures_against_a_running_node(start_node):
    node = start_node(limits={"messages_per_second": 1_000_000, "burst_messages": 1_000_000})
    host, port = node.client
    before = node.status()["last_sequence"]
    result = CliRunner().invoke(loadgen, [
        "--endpoint", f"{host}:{port}", "--clients", "3", "--rate", "2000", "--seconds", "1",
        "--symbols", "AAPL,TSLA", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["unanswered"] == 0 and figures["gateway_rejected"] == 0
    assert figures["rejected"] == 0, figures["reject_reasons"]
    assert figures["accepted"] == figures["places_sent"] == figures["ack_samples"] > 500
    assert figures["cancels_sent"] > 0
    latency = figures["ack_latency_ns"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    # Every place and cancel is in the journal.
    assert node.status()["last_sequence"] == before + figures["places_sent"] + figures["cancels_sent"]

    # The table form, unthrottled, client order ids unique per run (a second run on the
    # same node is not refused as duplicates).
    result = CliRunner().invoke(loadgen, [
        "--endpoint", f"{host}:{port}", "--clients", "2", "--rate", "0", "--seconds", "0.5", "--in-flight", "50",
    ])
    assert result.exit_code == 0, result.output
    assert "0 rejected" in result.output and "0 unanswered" in result.output
    assert "Percentile" in result.output and "TotalCount" in result.output


def test_loadgen_refuses_an_unknown_symbol():
    # Refused before connecting to anything.
    result = CliRunner().invoke(loadgen, ["--endpoint", "127.0.0.1:9", "--symbols", "NOPE", "--seconds", "0.2"])
    assert result.exit_code != 0 and "NOPE" in result.output


def test_percentiles_and_histogram_table():
    samples = list(range(1, 1001))  # 1..1000 ns
    assert value_at(sorted(samples), 50) == 500
    assert value_at(sorted(samples), 99.9) == 999
    assert latency_percentiles(samples) == {"p50": 500, "p90": 900, "p99": 990, "p99.9": 999, "max": 1000, "count": 1000}
    table = histogram_table(samples, unit_ns=1, unit="ns")
    rows = [line.split() for line in table.splitlines()[1:-1]]
    assert rows[1][:3] == ["500.0", "0.500000", "500"]
    assert rows[-1][:3] == ["1000.0", "1.000000", "1,000"]


def test_e2e_benchmark_through_a_sync_standby_returns_figures_per_rate_and_process(tmp_path):
    figures = run_e2e_benchmark(clients=2, seconds=0.5, rates=(1000.0, 0.0), workdir=str(tmp_path), in_flight_max=100)
    assert figures["durability"] == "always" and figures["standby"] == "sync" and figures["standby_attached"]
    assert figures["exit_codes"] == {"primary": 0, "standby": 0}
    paced, unpaced = figures["phases"]
    assert paced["offered_rate"] == 1000.0 and unpaced["offered_rate"] == 0.0
    for phase in (paced, unpaced):
        assert phase["orders_per_second"] > 0 and phase["unanswered"] == 0 and phase["gateway_rejected"] == 0
        assert 0 < phase["ack_p50_us"] <= phase["ack_p99_us"] <= phase["ack_p99_9_us"] <= phase["ack_max_us"]
        assert phase["primary_cpu_us_per_order"] > 0 and phase["standby_cpu_us_per_order"] is not None
        assert phase["loadgen_cpu_us_per_order"] > 0
    assert paced["ack_samples"] > 200
    assert list(tmp_path.iterdir()) == []  # the nodes' temporary directory is gone


def test_e2e_benchmark_without_a_standby_measures_the_primary_alone(tmp_path):
    figures = run_e2e_benchmark(clients=1, seconds=0.5, rates=(500.0,), standby="none", workdir=str(tmp_path),
                                tls=False)
    assert figures["exit_codes"] == {"primary": 0} and not figures["standby_attached"]
    (phase,) = figures["phases"]
    assert phase["standby_cpu_us_per_order"] is None and phase["unanswered"] == 0 and phase["ack_samples"] > 100


def test_the_sender_alone_offers_its_whole_plan_to_a_sink_that_answers_nothing():
    from tools.bench_e2e import run_sender_benchmark

    figures = run_sender_benchmark(clients=2, seconds=0.2)
    assert figures["orders_sent"] == figures["orders_planned"] > 0
    assert figures["offered_orders_per_second"] > 0 and figures["loadgen_cpu_us_per_order"] > 0
