"""`twinbook bench peers`: the common workload, its neutral file, twinbook's side of the
trade agreement check, the comparison, and the CLI without a peer environment.

The default run needs no network and no peer package: the adapter is exercised with
twinbook's own interpreter, which has no peers, so it must say "not installed". One slow
test really installs the pinned peers from PyPI and runs the benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tools import bench_peers, peer_adapter
from tools.bench_peers import (
    PeerCancel,
    PeerLimit,
    PeerMarket,
    describe_agreement,
    first_difference,
    generate_peer_workload,
    read_workload,
    run_twinbook,
    write_workload,
)
from tools.cli import cli

# A hand-made workload and the trades twinbook must produce for it, worked out by hand
# from RULES.md (best price first, FIFO within a price, trade at the resting price, a
# market order's remainder is cancelled): (taker, maker, price, qty).
HAND_MADE_WORKLOAD = [
    PeerLimit(1, "sell", 100010, 10),
    PeerLimit(2, "sell", 100005, 5),
    PeerLimit(3, "sell", 100005, 7),
    PeerLimit(4, "buy", 100010, 20),  # takes 2 then 3 at 100005 (FIFO), then 8 of 1 at 100010
    PeerCancel(1),  # 2 lots of order 1 were left
    PeerLimit(5, "buy", 99990, 10),
    PeerLimit(6, "buy", 99995, 4),
    PeerMarket(7, "sell", 20),  # takes 6 (best bid) then 5; 6 lots are cancelled, not rested
    PeerLimit(8, "sell", 99990, 3),  # no bids left: it rests
    PeerMarket(9, "buy", 1),
]
HAND_MADE_TRADES = [
    (4, 2, 100005, 5),
    (4, 3, 100005, 7),
    (4, 1, 100010, 8),
    (7, 6, 99995, 4),
    (7, 5, 99990, 10),
    (9, 8, 99990, 1),
]


def test_the_same_seed_gives_the_same_workload_and_another_seed_another():
    first = generate_peer_workload(3000, seed=7)
    assert first == generate_peer_workload(3000, seed=7)
    assert first != generate_peer_workload(3000, seed=8)


def test_the_workload_has_the_mix_and_cancels_only_orders_placed_and_not_yet_cancelled():
    workload = generate_peer_workload(5000, seed=3)
    kinds = [type(command) for command in workload]
    assert 0.20 < kinds.count(PeerCancel) / len(workload) < 0.30
    assert 0.03 < kinds.count(PeerMarket) / len(workload) < 0.07
    placed, cancelled = set(), set()
    for command in workload:
        if type(command) is PeerCancel:
            assert command.id in placed and command.id not in cancelled
            cancelled.add(command.id)
        else:
            assert command.id == len(placed) + 1
            placed.add(command.id)
    prices = [command.price for command in workload if type(command) is PeerLimit]
    assert min(prices) >= bench_peers.MID_PRICE - bench_peers.PRICE_OFFSET_TICKS_MAX
    assert max(prices) <= bench_peers.MID_PRICE + bench_peers.PRICE_OFFSET_TICKS_MAX


def test_every_cancel_of_the_workload_finds_its_order_open_in_twinbook():
    from statemachine import AddInstrument, Exchange, OrderRejected

    exchange = Exchange()
    exchange.apply(1, 0, AddInstrument(bench_peers.SYMBOL))
    for sequence, command in enumerate(generate_peer_workload(4000, seed=5), 2):
        events = exchange.apply(sequence, 0, bench_peers.to_twinbook_command(command))
        assert not any(type(event) is OrderRejected for event in events), (command, events)


def test_the_workload_file_round_trips_and_the_adapter_reads_the_same_commands(tmp_path):
    workload = generate_peer_workload(500, seed=2)
    path = tmp_path / "workload.jsonl"
    write_workload(path, workload, seed=2)
    header, commands = read_workload(path)
    assert commands == workload
    assert (header.seed, header.commands, header.symbol) == (2, 500, bench_peers.SYMBOL)
    adapter_header, tuples = peer_adapter.read_workload(str(path))
    assert adapter_header["commands"] == 500
    for command, (kind, order_id, is_buy, price, qty) in zip(workload, tuples):
        assert order_id == command.id
        if type(command) is PeerLimit:
            assert (kind, is_buy, price, qty) == (peer_adapter.LIMIT, command.side == "buy", command.price, command.qty)
        elif type(command) is PeerMarket:
            assert (kind, is_buy, qty) == (peer_adapter.MARKET, command.side == "buy", command.qty)
        else:
            assert kind == peer_adapter.CANCEL


def test_a_workload_file_whose_count_does_not_match_its_header_is_refused(tmp_path):
    path = tmp_path / "workload.jsonl"
    write_workload(path, generate_peer_workload(20, seed=1), seed=1)
    with open(path, "ab") as out:
        out.write(b'{"type":"cancel","id":1}\n')
    with pytest.raises(bench_peers.WorkloadFormatError, match="header says 20 commands, file has 21"):
        read_workload(path)
    with pytest.raises(peer_adapter.WorkloadError):
        peer_adapter.read_workload(str(path))


def test_twinbook_trades_the_hand_made_workload_as_worked_out_by_hand():
    result = run_twinbook(HAND_MADE_WORKLOAD, runs=2)
    assert result["trades"] == HAND_MADE_TRADES
    assert len(result["elapsed_ns"]) == 2


def test_the_comparison_reports_the_first_differing_trade():
    assert first_difference(HAND_MADE_TRADES, list(HAND_MADE_TRADES)) is None
    assert describe_agreement(HAND_MADE_TRADES, [list(trade) for trade in HAND_MADE_TRADES]) == "agree"
    swapped = [HAND_MADE_TRADES[0], HAND_MADE_TRADES[2], HAND_MADE_TRADES[1], *HAND_MADE_TRADES[3:]]
    assert first_difference(HAND_MADE_TRADES, swapped) == (2, HAND_MADE_TRADES[1], HAND_MADE_TRADES[2])
    assert describe_agreement(HAND_MADE_TRADES, swapped) == (
        "differ at trade 2: twinbook taker 4 maker 3 7@100005, peer taker 4 maker 1 8@100010"
    )
    assert first_difference(HAND_MADE_TRADES, HAND_MADE_TRADES[:4]) == (5, HAND_MADE_TRADES[4], None)
    assert describe_agreement(HAND_MADE_TRADES[:1], HAND_MADE_TRADES[:2]).endswith("twinbook no trade, peer taker 4 maker 3 7@100005")


def test_the_engine_lists_of_the_bench_the_adapter_and_the_requirements_agree():
    assert set(bench_peers.ENGINE_NAMES) == set(peer_adapter.ENGINES)
    assert set(bench_peers.read_requirements()) == set(bench_peers.ENGINE_NAMES)
    assert all("==" in requirement for requirement in bench_peers.read_requirements().values())


def test_the_cli_names_a_missing_peer_environment_and_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "peers", "--peers-venv", str(tmp_path / "absent"), "--commands", "100"])
    assert result.exit_code == 2
    assert f"no peer environment at {tmp_path / 'absent'}" in result.output
    assert "twinbook bench peers --install" in result.output


def test_the_cli_rejects_an_unknown_engine_as_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "peers", "--engines", "orderly-chaos,nasdaq"])
    assert result.exit_code == 2
    assert "unknown engine(s) nasdaq" in result.output


def test_twinbook_alone_prints_one_json_object_and_appends_it_to_the_results_file(tmp_path):
    results = tmp_path / "results.jsonl"
    arguments = ["bench", "peers", "--engines", "none", "--commands", "2000", "--runs", "1", "--json", "--results", str(results)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["benchmark"], figures["seed"], figures["commands"]) == ("peers", 1, 2000)
    (row,) = figures["engines"]
    assert row["engine"] == "twinbook" and row["commands_per_second_median"] > 0 and row["trades"] > 0
    assert [json.loads(line) for line in results.read_text().splitlines()] == [figures]


def _fake_peer_environment(directory: Path) -> Path:
    """A "peer environment" whose python is twinbook's own, which has no peer installed."""
    (directory / "bin").mkdir(parents=True)
    os.symlink(sys.executable, directory / "bin" / "python")
    return directory


def test_a_peer_that_is_not_installed_is_reported_with_its_reason(tmp_path):
    venv_directory = _fake_peer_environment(tmp_path / "venv")
    figures = bench_peers.run_peers_benchmark(500, 1, ("orderly-chaos",), 1, venv_directory, timeout_s=60)
    twinbook, peer = figures["engines"]
    assert twinbook["engine"] == "twinbook"
    assert peer["status"] == "not_installed"
    assert "orderly_chaos" in peer["reason"]
    assert "not installed: ModuleNotFoundError" in bench_peers.render_table(figures)


def test_an_install_failure_recorded_by_install_is_reported_instead_of_running(tmp_path):
    venv_directory = _fake_peer_environment(tmp_path / "venv")
    report = {"matching-engine": {"installed": False, "reason": "requires Python >= 3.12"}}
    (venv_directory / bench_peers.INSTALL_REPORT_NAME).write_text(json.dumps(report))
    result = bench_peers.run_peer("matching-engine", venv_directory, tmp_path / "unused.jsonl", 1, 60)
    assert result == {"engine": "matching-engine", "status": "not_installed", "reason": "requires Python >= 3.12"}


def _scripted_peer_environment(directory: Path, script: str) -> Path:
    """A "peer environment" whose python is a shell script (to make an adapter crash or hang)."""
    (directory / "bin").mkdir(parents=True)
    python = directory / "bin" / "python"
    python.write_text("#!/bin/sh\n" + script + "\n")
    python.chmod(0o755)
    return directory


def test_a_peer_whose_adapter_crashes_is_reported_with_its_exit_code_and_last_words(tmp_path):
    venv_directory = _scripted_peer_environment(tmp_path / "venv", "echo 'terminate called' >&2; exit 134")
    result = bench_peers.run_peer("limit-order-book", venv_directory, tmp_path / "unused.jsonl", 1, 60)
    assert result == {"engine": "limit-order-book", "status": "failed",
                      "reason": "adapter exited with 134: terminate called"}


def test_a_peer_that_runs_past_its_time_limit_is_reported_as_timed_out(tmp_path):
    venv_directory = _scripted_peer_environment(tmp_path / "venv", "exec sleep 30")
    result = bench_peers.run_peer("pyclob", venv_directory, tmp_path / "unused.jsonl", 1, timeout_s=0.5)
    assert result == {"engine": "pyclob", "status": "timed_out", "reason": "no result within 0.5 s"}


def _pypi_reachable() -> bool:
    try:
        completed = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "orderly-chaos"],
                                   capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0 and "0.2.0" in completed.stdout


@pytest.mark.slow
def test_the_pinned_peers_install_and_the_price_time_engines_agree_with_twinbook(tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable (pip index versions orderly-chaos failed): cannot install the peers")
    python = "/usr/bin/python3.11" if os.access("/usr/bin/python3.11", os.X_OK) else sys.executable
    venv_directory = tmp_path / "venv"
    report = bench_peers.install_peers(venv_directory, python, lambda message: None)
    assert report["orderly-chaos"]["installed"], report
    figures = bench_peers.run_peers_benchmark(3000, 4, bench_peers.ENGINE_NAMES, 1, venv_directory, timeout_s=300)
    rows = {row["engine"]: row for row in figures["engines"]}
    for engine in ("orderly-chaos", "liquibook", "obook", "lightmatchingengine", "pyorderbook", "pyclob", "order-matching"):
        assert rows[engine]["status"] == "ok", rows[engine]
        assert rows[engine]["agreement"] == "agree", rows[engine]
    if bench_peers.find_interpreter("3.13"):
        assert rows["limit-order-book"]["agreement"] == "n/a: the engine reports no trades"
    else:
        assert rows["limit-order-book"]["reason"].startswith("needs Python 3.13")
    if bench_peers.find_interpreter("3.12"):
        assert rows["matching-engine"]["agreement"] == "agree", rows["matching-engine"]
    else:
        assert rows["matching-engine"]["reason"].startswith("needs Python 3.12")


def test_the_engines_that_need_a_newer_python_run_in_an_environment_of_their_own(tmp_path):
    venv_directory = tmp_path / "venv"
    assert bench_peers.engine_environment("liquibook", venv_directory) == venv_directory
    assert bench_peers.engine_environment("matching-engine", venv_directory) == tmp_path / "venv-python3.12"
    assert bench_peers.engine_environment("limit-order-book", venv_directory) == tmp_path / "venv-python3.13"
    assert bench_peers.read_requirements()["limit-order-book"] == "limit-order-book==3.1.0"


def test_an_interpreter_is_found_only_if_it_runs_as_that_version(tmp_path, monkeypatch):
    """A pyenv shim answers to every name; only a candidate that reports the version counts."""
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.99"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    versions = tmp_path / "pyenv-versions"
    real = versions / "3.99.2" / "bin" / "python3.99"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\necho 3.99\n")
    real.chmod(0o755)
    older = versions / "3.99.1" / "bin" / "python3.99"
    older.parent.mkdir(parents=True)
    older.write_text("#!/bin/sh\necho 3.99\n")
    older.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    monkeypatch.setattr(bench_peers, "PYENV_VERSIONS", versions)
    assert bench_peers.find_interpreter("3.99") == str(real)
    real.unlink()
    older.unlink()
    assert bench_peers.find_interpreter("3.99") is None


def test_a_peer_whose_interpreter_is_absent_is_reported_as_needing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_peers, "ENGINE_INTERPRETERS", {"matching-engine": "3.99"})
    monkeypatch.setattr(bench_peers, "PYENV_VERSIONS", tmp_path / "no-pyenv")
    venv_directory = _fake_peer_environment(tmp_path / "venv")
    figures = bench_peers.run_peers_benchmark(300, 1, ("matching-engine",), 1, venv_directory, timeout_s=60)
    row = {row["engine"]: row for row in figures["engines"]}["matching-engine"]
    assert row["status"] == "not_installed"
    assert row["reason"].startswith("needs Python 3.99: none found")
    assert "needs Python 3.99" in bench_peers.render_table(figures)
