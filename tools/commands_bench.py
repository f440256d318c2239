"""`twinbook bench`: the benchmarks, each printing a readable table or, with --json, one
JSON object of its figures (rates per second, latencies in ns, the parameters).

Benchmarks prove speed; no test is timed. Each subcommand can also append its JSON
object as one line to a results file (`--results FILE`), so runs can be compared.
"""

from __future__ import annotations

import json
import tempfile

import click


def _emit(figures: dict, as_json: bool, results: str | None, render=None) -> None:
    """Append the figures to `results`, then print them as JSON, as `render(figures)`
    (a benchmark's own table) or as a key/value table."""
    line = json.dumps(figures, sort_keys=True)
    if results:
        with open(results, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    if as_json:
        click.echo(line)
        return
    if render is not None:
        click.echo(render(figures))
        return
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{name} {item}" for name, item in value.items())
        elif isinstance(value, float):
            value = f"{value:,.1f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        click.echo(f"{key:<{width}}  {value}")


@click.group()
def bench() -> None:
    """Benchmarks of the hot paths (see docs/BENCHMARKS.md)."""


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object of the figures.")
_results_option = click.option("--results", type=click.Path(dir_okay=False), help="Append the JSON figures to this JSON-lines file.")


@bench.command()
@click.option("--commands", default=1_000_000, show_default=True, type=click.IntRange(1_000, 50_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--book-updates", is_flag=True, help="Also produce level_changed market-data events.")
@_json_option
@_results_option
def core(commands: int, seed: int, runs: int, book_updates: bool, as_json: bool, results: str | None) -> None:
    """The state machine on the seeded mixed workload (55/25/15/5)."""
    from tools.bench_core import run_core_benchmark

    _emit(run_core_benchmark(commands, seed, runs, book_updates), as_json, results)


@bench.command()
@click.option("--resting-orders", default=1_000_000, show_default=True, type=click.IntRange(1_000, 20_000_000))
@click.option("--replay-records", default=1_000_000, show_default=True, type=click.IntRange(1_000, 20_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the temporary data (default: the system temp dir).")
@_json_option
@_results_option
def recovery(resting_orders: int, replay_records: int, seed: int, workdir: str | None, as_json: bool, results: str | None) -> None:
    """Snapshot stall/write/load on a big book, and journal replay rate."""
    from tools.bench_recovery import run_recovery_benchmark

    _emit(run_recovery_benchmark(resting_orders, replay_records, seed, workdir), as_json, results)


@bench.command(name="ioc-memory")
@click.option("--orders", default=1_000_000, show_default=True, type=click.IntRange(100, 50_000_000))
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 4), help="Members sending at once.")
@click.option("--window", default=2000, show_default=True, type=click.IntRange(1, 100_000), help="Orders in flight per client.")
@click.option("--client-order-id-bytes", default=16, show_default=True, type=click.IntRange(12, 64))
@click.option("--restart/--no-restart", default=True, show_default=True, help="Also measure RSS after a restart on the journal.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the node's data (default: the system temp dir).")
@_json_option
@_results_option
def ioc_memory(orders: int, clients: int, window: int, client_order_id_bytes: int, restart: bool, workdir: str | None,
               as_json: bool, results: str | None) -> None:
    """A real node's RSS after N IOC orders that never rest (and after a restart)."""
    from tools.bench_memory import run_ioc_memory_benchmark

    _emit(run_ioc_memory_benchmark(orders, clients, window, client_order_id_bytes, workdir, restart), as_json, results)


@bench.command(name="journal")
@click.option("--records", default=1_000_000, show_default=True, type=click.IntRange(1_000, 50_000_000))
@click.option("--body-size-bytes", default=64, show_default=True, type=click.IntRange(0, 1024 * 1024))
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to write the journals (default: the system temp dir).")
@_json_option
@_results_option
def journal_benchmark(records: int, body_size_bytes: int, workdir: str | None, as_json: bool, results: str | None) -> None:
    """Append with group commit (policy always), fdatasync latency, read+verify+decode."""
    from tools.bench_journal import run_journal_benchmark

    directory = tempfile.mkdtemp(prefix="twinbook-bench-journal-", dir=workdir)
    try:
        figures = run_journal_benchmark(directory, records=records, body_size_bytes=body_size_bytes)
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    _emit(figures, as_json, results)


@bench.command(name="replay")
@click.option("--records", default=1_000_000, show_default=True, type=click.IntRange(1_000, 20_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--runs", default=1, show_default=True, type=click.IntRange(1, 20))
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the temporary journal (default: the system temp dir).")
@_json_option
@_results_option
def replay_benchmark(records: int, seed: int, runs: int, workdir: str | None, as_json: bool, results: str | None) -> None:
    """Audit replay and export rate (JSONL/CSV, with and without filters)."""
    from tools.bench_replay import run_replay_benchmark

    _emit(run_replay_benchmark(records, seed, workdir, runs), as_json, results)


@bench.command(name="failover")
@click.option("--heartbeat-timeout-ms", default=400, show_default=True, type=click.IntRange(50, 10_000))
@click.option("--load-seconds", default=2.0, show_default=True, type=click.FloatRange(0.5, 600))
@click.option("--clients", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--catch-up-records", default=200_000, show_default=True, type=click.IntRange(1_000, 20_000_000))
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the cluster's data (default: the system temp dir).")
@click.option("--tls/--no-tls", default=True, show_default=True, help="Mutual TLS on the link and admin port (--no-tls: plain TCP, to measure the cost).")
@click.option("--busy-loops", default=0, show_default=True, type=click.IntRange(0, 64),
              help='Load the machine with this many `python -c "while True: pass"` processes meanwhile.')
@click.option("--window-records", type=click.IntRange(1, 10**9),
              help="The nodes' in-flight window, [window] records_max (default: the config's default).")
@click.option("--in-flight-per-client", default=32, show_default=True, type=click.IntRange(1, 100_000))
@_json_option
@_results_option
def failover_benchmark(heartbeat_timeout_ms: int, load_seconds: float, clients: int, catch_up_records: int,
                       workdir: str | None, tls: bool, busy_loops: int, window_records: int | None,
                       in_flight_per_client: int, as_json: bool, results: str | None) -> None:
    """SIGKILL the primary under load: time to the first order on the promoted standby, lost/duplicated, lag, catch-up."""
    from tools.bench_failover import run_failover_benchmark
    from tools.busy_load import busy_loops as loaded

    with loaded(busy_loops):
        figures = run_failover_benchmark(heartbeat_timeout_ms=heartbeat_timeout_ms, load_seconds=load_seconds,
                                         clients=clients, catch_up_records=catch_up_records, workdir=workdir,
                                         tls=tls, window_records_max=window_records,
                                         in_flight_per_client=in_flight_per_client)
    figures["busy_loops"] = busy_loops
    _emit(figures, as_json, results)
    if figures.get("orders_lost") or figures.get("orders_duplicated"):
        raise SystemExit(1)


@bench.command(name="fix")
@click.option("--orders", default=20_000, show_default=True, type=click.IntRange(100, 10_000_000))
@click.option("--window", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="Orders in flight per round.")
@click.option("--latency-orders", default=2_000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option("--durability", default="none", show_default=True, type=click.Choice(["always", "interval", "none"]))
@click.option("--rebuild-records", default=200_000, show_default=True, type=click.IntRange(1_000, 50_000_000),
              help="Journal records for the ledger-rebuild rate.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the node's data (default: the system temp dir).")
@_json_option
@_results_option
def fix_benchmark(orders: int, window: int, latency_orders: int, durability: str, rebuild_records: int,
                  workdir: str | None, as_json: bool, results: str | None) -> None:
    """FIX 4.4 orders/s, ack latency and primary CPU per order beside the native protocol; ledger rebuild rate."""
    from tools.bench_fix import run_fix_benchmark

    _emit(run_fix_benchmark(orders, window, latency_orders, durability, workdir, rebuild_records), as_json, results)


@bench.command(name="multicast")
@click.option("--records", default=200_000, show_default=True, type=click.IntRange(1_000, 5_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--batch-records", default=64, show_default=True, type=click.IntRange(1, 100_000), help="Records released between two sends (a commit batch).")
@click.option("--packet-bytes-max", default=1472, show_default=True, type=click.IntRange(64, 65507))
@click.option("--latency-rate", default=5_000.0, show_default=True, type=click.FloatRange(100, 1_000_000), help="Orders per second in the latency phase.")
@click.option("--latency-seconds", default=3.0, show_default=True, type=click.FloatRange(0.5, 600))
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to put the node's data (default: the system temp dir).")
@_json_option
@_results_option
def multicast_benchmark(records: int, seed: int, batch_records: int, packet_bytes_max: int, latency_rate: float,
                        latency_seconds: float, workdir: str | None, as_json: bool, results: str | None) -> None:
    """Multicast publisher rate, feed latency, and subscriber scaling vs the TCP feed (in a private netns)."""
    import sys

    from tools import netns

    if not netns.inside_namespace():
        # Multicast stays inside a namespace of its own: run this very command there.
        try:
            completed = netns.run_in_namespace(["-c", "from tools.cli import main; main()", *sys.argv[1:]],
                                               timeout=3600)
        except netns.NamespaceUnavailable as error:
            raise click.ClickException(f"bench multicast needs a private network namespace (unshare -rn): {error}")
        sys.stdout.write(completed.stdout.decode(errors="replace"))
        sys.stderr.write(completed.stderr.decode(errors="replace"))
        raise SystemExit(completed.returncode)
    netns.loopback_up()
    from tools.bench_multicast import run_multicast_benchmark

    _emit(run_multicast_benchmark(records, seed, batch_records, packet_bytes_max, latency_rate, latency_seconds, workdir),
          as_json, results)

@bench.command(name="peers")
@click.option("--commands", default=20_000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 20))
@click.option("--engines", default="all", show_default=True,
              help="Comma-separated peer engines (see tools/peers-requirements.txt), 'all', or 'none' for twinbook alone.")
@click.option("--peers-venv", type=click.Path(file_okay=False), help="The peer environment (default: .bench-peers/venv in the repository).")
@click.option("--install", is_flag=True, help="Create the peer environment if needed and install the pinned peers, then run.")
@click.option("--peers-python", default=None, help="Interpreter for a new peer environment (default: /usr/bin/python3.11 if present, else this one).")
@click.option("--timeout-seconds", default=120.0, show_default=True, type=click.FloatRange(1, 3600), help="Time limit for one peer's runs.")
@_json_option
@_results_option
def peers_benchmark(commands: int, seed: int, runs: int, engines: str, peers_venv: str | None, install: bool,
                    peers_python: str | None, timeout_seconds: float, as_json: bool, results: str | None) -> None:
    """twinbook beside peer Python matching engines on one seeded workload: commands/s, ratio, trade agreement."""
    import os
    import sys
    from pathlib import Path

    from tools import bench_peers

    if engines == "all":
        selected = bench_peers.ENGINE_NAMES
    elif engines == "none":
        selected = ()
    else:
        selected = tuple(name.strip() for name in engines.split(",") if name.strip())
        unknown = [name for name in selected if name not in bench_peers.ENGINE_NAMES]
        if unknown:
            raise click.BadParameter(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(bench_peers.ENGINE_NAMES)}",
                                     param_hint="--engines")
    venv_directory = Path(peers_venv).resolve() if peers_venv else bench_peers.DEFAULT_PEERS_VENV

    def say(message: str) -> None:
        # Progress goes to stderr, so that stdout carries only the figures (one JSON object with --json).
        click.echo(message, err=True)

    try:
        if install:
            python = peers_python or ("/usr/bin/python3.11" if os.access("/usr/bin/python3.11", os.X_OK) else sys.executable)
            bench_peers.install_peers(venv_directory, python, say)
        figures = bench_peers.run_peers_benchmark(commands, seed, selected, runs, venv_directory, timeout_seconds,
                                                  progress=lambda engine: say(f"running {engine}"))
    except bench_peers.PeerEnvironmentMissing as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(2)
    except bench_peers.PeerBenchError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(3)
    _emit(figures, as_json, results, render=bench_peers.render_table)


# `bench e2e` lives with the load generator it drives; commands_load imports `_emit`
# from here lazily, so there is no import cycle.
from tools.commands_load import bench_e2e_command  # noqa: E402

bench.add_command(bench_e2e_command)
