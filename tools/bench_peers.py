"""`twinbook bench peers`: twinbook's state machine beside the Python matching engines a
user might pick instead, on one seeded workload, in one run.

How it works:
1. `generate_peer_workload(count, seed)` draws the common workload: one instrument,
   55% passive limit orders within 49 ticks of the mid, 25% cancels of orders that are
   open, 15% marketable limit orders, 5% market orders, qty 1..100 (the core
   benchmark's mix). Only commands every peer can express are used: no icebergs,
   stops, post-only, IOC/FOK limits, replaces, STP or second instrument. Cancels name
   orders that are open under twinbook's rules (the generator runs the stream through
   an `Exchange` with STP off as it draws).
2. The workload goes to a neutral JSON-lines file (format below), which each peer's
   adapter reads (tools/peer_adapter.py, run with the peer environment's python).
3. twinbook runs in this process: the same commands as `PlaceOrder`/`CancelOrder`
   Structs (built before timing) through `Exchange.apply`, timing only the loop, as the
   adapters do for their engines. In-process is fair: the adapters also build their
   inputs first and time only the loop; no process start or parsing is timed anywhere.
4. Each peer runs in its own subprocess with a time limit; its trade list, mapped to
   client order ids, is compared with twinbook's, trade by trade (taker, maker, price,
   qty, in order): "agree", or the first difference.
5. `runs` rounds, each running twinbook once and then every peer once (a fresh process
   and book each time), so that load from other jobs on the shared 2 cores falls on all
   engines alike; the figure is the median over the rounds. An engine whose runs already
   took REPEAT_BUDGET_NS is not run again.

Peers never enter twinbook's runtime: they are installed only into the peer environment
(`.bench-peers/venv`, made by `--install` from tools/peers-requirements.txt, pinned,
with tools/peers-constraints.txt pinning their dependencies), and twinbook's process
never imports them.

Two peers need a newer Python than the default peer environment's: matching-engine
(>= 3.12) and limit-order-book 3.1 (>= 3.13; 2.0.0, which ran on 3.11, is no longer what
PyPI users get). Each runs in an environment of its own beside the default one
(`.bench-peers/venv-python3.12`, `...-python3.13`), made by `--install` with the first
such interpreter found (on PATH as `python3.12`, else the newest
~/.pyenv/versions/3.12.*). They are in every run by default; where no such interpreter
exists, their row says so ("not installed: needs Python 3.13, none found ...").

The neutral workload file (JSON lines, UTF-8):

    line 1     {"format":"twinbook-peer-workload","version":1,"seed":S,"commands":N,
                "symbol":"PEER","mid_price":100000,"price_min":99951,"price_max":100049}
    lines 2..  {"type":"limit","id":I,"side":"buy"|"sell","price":P,"qty":Q}
               {"type":"market","id":I,"side":"buy"|"sell","qty":Q}
               {"type":"cancel","id":I}

`id` is the client order id, 1, 2, 3, ... in placing order; a cancel names an earlier
id. Prices are integer ticks, quantities integer lots.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Literal, Union

import msgspec

import statemachine
from statemachine import AddInstrument, CancelOrder, Exchange, OrderAccepted, OrderCancelled, PlaceOrder, TradeExecuted

WORKLOAD_FORMAT = "twinbook-peer-workload"
WORKLOAD_VERSION = 1
SYMBOL = "PEER"
MEMBER = "P"
MID_PRICE = 100_000
# Prices stay within mid +- 49 ticks so that every peer can express them (pyclob's prices
# are cents 1..99; its adapter shifts ours by mid - 50).
PRICE_OFFSET_TICKS_MAX = 49
QTY_MAX = 100
# A bound on one run's workload (memory and run time on the 2-core machine).
WORKLOAD_COMMANDS_MAX = 10_000_000

REPOSITORY = Path(__file__).resolve().parent.parent
ADAPTER_PATH = Path(__file__).resolve().parent / "peer_adapter.py"
REQUIREMENTS_PATH = Path(__file__).resolve().parent / "peers-requirements.txt"
CONSTRAINTS_PATH = Path(__file__).resolve().parent / "peers-constraints.txt"
DEFAULT_PEERS_VENV = REPOSITORY / ".bench-peers" / "venv"
INSTALL_REPORT_NAME = "twinbook-peers-install.json"
# The engines tools/peer_adapter.py can drive (its ENGINES), fastest first as measured.
ENGINE_NAMES = (
    "orderly-chaos",
    "liquibook",
    "obook",
    "limit-order-book",
    "matching-engine",
    "lightmatchingengine",
    "pyorderbook",
    "pyclob",
    "order-matching",
)
# After the first round, an engine runs again only while its runs so far took less than
# this, so a slow engine (order-matching: about 1,000 commands/s) does not multiply the
# benchmark's wall time; its row lists the runs it made.
REPEAT_BUDGET_NS = 10_000_000_000
# pip installs of one package are bounded so a hung index cannot hang the command.
PIP_INSTALL_TIMEOUT_S = 600
# Engines that need a newer interpreter than the default peer environment's, and which.
ENGINE_INTERPRETERS = {"matching-engine": "3.12", "limit-order-book": "3.13"}
PYENV_VERSIONS = Path.home() / ".pyenv" / "versions"


class PeerLimit(msgspec.Struct, frozen=True, tag="limit"):
    id: int
    side: Literal["buy", "sell"]
    price: int
    qty: int


class PeerMarket(msgspec.Struct, frozen=True, tag="market"):
    id: int
    side: Literal["buy", "sell"]
    qty: int


class PeerCancel(msgspec.Struct, frozen=True, tag="cancel"):
    id: int


PeerCommand = Union[PeerLimit, PeerMarket, PeerCancel]


class WorkloadHeader(msgspec.Struct, frozen=True):
    format: str
    version: int
    seed: int
    commands: int
    symbol: str
    mid_price: int
    price_min: int
    price_max: int


class PeerBenchError(Exception):
    """An operating fault of the peer benchmark (the CLI turns it into exit code 3)."""


class PeerEnvironmentMissing(PeerBenchError):
    """There is no peer environment to run the peers with (exit code 2: run --install)."""


class WorkloadFormatError(PeerBenchError):
    """A workload file is not a version-1 peer workload."""


_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(PeerCommand)
_header_decoder = msgspec.json.Decoder(WorkloadHeader)


def generate_peer_workload(count: int, seed: int) -> list[PeerCommand]:
    """`count` commands drawn from `random.Random(seed)`; the same (count, seed) always
    gives the same list. Cancels name orders open under twinbook's rules."""
    if not 1 <= count <= WORKLOAD_COMMANDS_MAX:
        raise ValueError(f"count must be 1..{WORKLOAD_COMMANDS_MAX}, not {count}")
    rng = random.Random(seed)
    exchange = Exchange()
    exchange.apply(1, 0, AddInstrument(SYMBOL))
    sequence = 1
    # Open orders by client order id, with a position map for O(1) removal.
    live: list[int] = []
    position: dict[int, int] = {}
    commands: list[PeerCommand] = []
    # Engine order id -> client order id, to follow orders through the events.
    client_of: dict[int, int] = {}
    next_id = 0

    def drop(client_id: int) -> None:
        index = position.pop(client_id, None)
        if index is None:
            return
        last = live.pop()
        if last != client_id:
            live[index] = last
            position[last] = index

    for _ in range(count):
        roll = rng.random()
        if roll < 0.25 and live:
            command: PeerCommand = PeerCancel(live[rng.randrange(len(live))])
        else:
            next_id += 1
            side = "buy" if rng.random() < 0.5 else "sell"
            qty = rng.randint(1, QTY_MAX)
            offset = rng.randint(1, PRICE_OFFSET_TICKS_MAX)
            if roll < 0.80:
                price = MID_PRICE - offset if side == "buy" else MID_PRICE + offset
                command = PeerLimit(next_id, side, price, qty)
            elif roll < 0.95:
                price = MID_PRICE + offset if side == "buy" else MID_PRICE - offset
                command = PeerLimit(next_id, side, price, qty)
            else:
                command = PeerMarket(next_id, side, qty)
        commands.append(command)
        sequence += 1
        touched = []
        for event in exchange.apply(sequence, 0, to_twinbook_command(command)):
            kind = type(event)
            if kind is OrderAccepted:
                client_of[event.order_id] = command.id
                position[command.id] = len(live)
                live.append(command.id)
                touched.append(event.order_id)
            elif kind is OrderCancelled:
                touched.append(event.order_id)
            elif kind is TradeExecuted:
                touched.append(event.maker_order_id)
        for order_id in touched:
            if exchange.order_state(order_id)["status"] == "closed":
                drop(client_of[order_id])
    return commands


def to_twinbook_command(command: PeerCommand):
    """The statemachine command for a neutral one (one member, STP off)."""
    kind = type(command)
    if kind is PeerLimit:
        return PlaceOrder(MEMBER, str(command.id), SYMBOL, command.side, "limit", command.qty, command.price, stp="none")
    if kind is PeerMarket:
        return PlaceOrder(MEMBER, str(command.id), SYMBOL, command.side, "market", command.qty, stp="none")
    return CancelOrder(MEMBER, client_order_id=str(command.id))


def workload_header(commands: list[PeerCommand], seed: int) -> WorkloadHeader:
    return WorkloadHeader(
        format=WORKLOAD_FORMAT,
        version=WORKLOAD_VERSION,
        seed=seed,
        commands=len(commands),
        symbol=SYMBOL,
        mid_price=MID_PRICE,
        price_min=MID_PRICE - PRICE_OFFSET_TICKS_MAX,
        price_max=MID_PRICE + PRICE_OFFSET_TICKS_MAX,
    )


def write_workload(path: str | os.PathLike, commands: list[PeerCommand], seed: int) -> None:
    with open(path, "wb") as out:
        out.write(_encoder.encode(workload_header(commands, seed)) + b"\n")
        for command in commands:
            out.write(_encoder.encode(command) + b"\n")


def read_workload(path: str | os.PathLike) -> tuple[WorkloadHeader, list[PeerCommand]]:
    with open(path, "rb") as source:
        lines = source.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        header = _header_decoder.decode(lines[0]) if lines else None
    except msgspec.DecodeError as error:
        raise WorkloadFormatError(f"{path}: line 1: {error}") from None
    if header is None or header.format != WORKLOAD_FORMAT or header.version != WORKLOAD_VERSION:
        raise WorkloadFormatError(f"{path}: not a {WORKLOAD_FORMAT} version {WORKLOAD_VERSION} file")
    if header.commands != len(lines) - 1:
        raise WorkloadFormatError(f"{path}: header says {header.commands} commands, file has {len(lines) - 1}")
    commands = []
    for line_number, line in enumerate(lines[1:], 2):
        try:
            commands.append(_command_decoder.decode(line))
        except msgspec.DecodeError as error:
            raise WorkloadFormatError(f"{path}: line {line_number}: {error}") from None
    return header, commands


def run_twinbook(commands: list[PeerCommand], runs: int) -> dict:
    """Apply the workload `runs` times to fresh exchanges; elapsed_ns per run (only the
    apply loop) and the trades of the first run as (taker, maker, price, qty) client ids."""
    stream = [to_twinbook_command(command) for command in commands]
    elapsed: list[int] = []
    trades: list[tuple[int, int, int, int]] = []
    for run in range(runs):
        exchange = Exchange()
        exchange.apply(1, 0, AddInstrument(SYMBOL))
        apply = exchange.apply
        events: list = []
        keep = events.extend
        started = time.perf_counter_ns()
        for sequence, command in enumerate(stream, 2):
            keep(apply(sequence, 0, command))
        elapsed.append(time.perf_counter_ns() - started)
        if run == 0:
            trades = [
                (int(event.taker_client_order_id), int(event.maker_client_order_id), event.price, event.qty)
                for event in events
                if type(event) is TradeExecuted
            ]
        del exchange, events
    return {"elapsed_ns": elapsed, "trades": trades}


def first_difference(reference: list, candidate: list) -> tuple[int, tuple | None, tuple | None] | None:
    """None if the two trade lists are equal, else (n, reference trade, candidate trade)
    for the first differing trade n (1-based); a missing trade is None."""
    for index in range(max(len(reference), len(candidate))):
        expected = tuple(reference[index]) if index < len(reference) else None
        found = tuple(candidate[index]) if index < len(candidate) else None
        if expected != found:
            return index + 1, expected, found
    return None


def _format_trade(trade: tuple | None) -> str:
    if trade is None:
        return "no trade"
    taker, maker, price, qty = trade
    return f"taker {taker} maker {maker} {qty}@{price}"


def describe_agreement(reference: list, candidate: list) -> str:
    difference = first_difference(reference, candidate)
    if difference is None:
        return "agree"
    number, expected, found = difference
    return f"differ at trade {number}: twinbook {_format_trade(expected)}, peer {_format_trade(found)}"


def peers_python(venv_directory: Path) -> Path:
    return venv_directory / "bin" / "python"


def engine_environment(engine: str, venv_directory: Path) -> Path:
    """The peer environment an engine runs in: its own interpreter's beside the default one."""
    version = ENGINE_INTERPRETERS.get(engine)
    if version is None:
        return venv_directory
    return venv_directory.with_name(f"{venv_directory.name}-python{version}")


def find_interpreter(version: str) -> str | None:
    """An interpreter of Python `version` ("3.12") that really runs: `pythonX.Y` on PATH,
    else the newest ~/.pyenv/versions/X.Y.*; None when there is none. Each candidate is
    asked for its version, because a pyenv shim on PATH exists for every name but fails
    for a version that is not selected."""
    import shutil

    candidates = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    releases = []
    for directory in PYENV_VERSIONS.glob(f"{version}.*"):
        patch = directory.name.removeprefix(f"{version}.")
        if patch.isdigit():
            releases.append((int(patch), str(directory / "bin" / f"python{version}")))
    candidates += [python for _, python in sorted(releases, reverse=True)]
    for python in candidates:
        try:
            completed = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                       capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if completed.returncode == 0 and completed.stdout.strip() == version:
            return python
    return None


def _interpreter_absent(version: str) -> str:
    return f"needs Python {version}: none found (python{version} on PATH or {PYENV_VERSIONS}/{version}.*)"


def _read_install_report(venv_directory: Path) -> dict:
    try:
        return json.loads((venv_directory / INSTALL_REPORT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_requirements(path: Path = REQUIREMENTS_PATH) -> dict[str, str]:
    """engine name -> pinned requirement line (comments and blank lines skipped)."""
    requirements = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirements[re.split(r"[\[=<>;\s]", line, maxsplit=1)[0].lower()] = line
    return requirements


def _install_into(venv_directory: Path, python: str, requirements: dict[str, str], echo: Callable[[str], None]) -> dict:
    if not peers_python(venv_directory).exists():
        echo(f"creating the peer environment {venv_directory} with {python}")
        venv_directory.parent.mkdir(parents=True, exist_ok=True)
        completed = subprocess.run([python, "-m", "venv", str(venv_directory)], capture_output=True, text=True)
        if completed.returncode != 0:
            raise PeerBenchError(f"{python} -m venv {venv_directory} failed: {completed.stderr.strip()[-500:]}")
    report = {}
    for engine, requirement in requirements.items():
        echo(f"installing {requirement}")
        command = [str(peers_python(venv_directory)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-input", "-c", str(CONSTRAINTS_PATH), requirement]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=PIP_INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            report[engine] = {"requirement": requirement, "installed": False,
                              "reason": f"pip did not finish within {PIP_INSTALL_TIMEOUT_S} s"}
            continue
        if completed.returncode == 0:
            report[engine] = {"requirement": requirement, "installed": True}
        else:
            errors = [line for line in completed.stderr.splitlines() if line.startswith("ERROR")]
            report[engine] = {"requirement": requirement, "installed": False,
                              "reason": (errors[0] if errors else completed.stderr.strip()[-300:]).removeprefix("ERROR: ")}
            echo(f"  not installed: {report[engine]['reason']}")
    (venv_directory / INSTALL_REPORT_NAME).write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
    return report


def install_peers(venv_directory: Path, python: str, echo: Callable[[str], None]) -> dict:
    """Create the peer environments if needed and install each pinned peer on its own
    (one failing peer does not stop the others): the engines of ENGINE_INTERPRETERS into
    an environment of their interpreter (when one is found), the others into
    `venv_directory` made with `python`. Each environment's install report records what
    failed and why, which the benchmark reads to say "not installed". Returns the
    reports merged, engine -> {requirement, installed[, reason]}."""
    requirements = read_requirements()
    default = {engine: line for engine, line in requirements.items() if engine not in ENGINE_INTERPRETERS}
    report = _install_into(venv_directory, python, default, echo)
    for engine, version in ENGINE_INTERPRETERS.items():
        if engine not in requirements:
            continue
        interpreter = find_interpreter(version)
        if interpreter is None:
            report[engine] = {"requirement": requirements[engine], "installed": False, "reason": _interpreter_absent(version)}
            echo(f"  {engine} not installed: {report[engine]['reason']}")
            continue
        report.update(_install_into(engine_environment(engine, venv_directory), interpreter,
                                    {engine: requirements[engine]}, echo))
    return report


def run_peer(engine: str, venv_directory: Path, workload_path: Path, runs: int, timeout_s: float) -> dict:
    """Run one peer's adapter in the peer environment; its result object, or a
    not_installed / failed / timed_out one saying why."""
    install = _read_install_report(venv_directory).get(engine)
    if install is not None and not install.get("installed"):
        return {"engine": engine, "status": "not_installed", "reason": install.get("reason", "install failed")}
    if not peers_python(venv_directory).exists():
        version = ENGINE_INTERPRETERS.get(engine)
        if version is not None and find_interpreter(version) is None:
            reason = _interpreter_absent(version)
        else:
            reason = f"no peer environment at {venv_directory}: run `twinbook bench peers --install`"
        return {"engine": engine, "status": "not_installed", "reason": reason}
    with tempfile.TemporaryDirectory(prefix="twinbook-peer-") as directory:
        result_path = Path(directory) / "result.json"
        command = [str(peers_python(venv_directory)), str(ADAPTER_PATH), engine, str(workload_path), str(result_path), str(runs)]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"engine": engine, "status": "timed_out", "reason": f"no result within {timeout_s:g} s"}
        if completed.returncode != 0 or not result_path.exists():
            tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            return {"engine": engine, "status": "failed", "reason": f"adapter exited with {completed.returncode}: {tail}"}
        return json.loads(result_path.read_text(encoding="utf-8"))


def _rates(command_count: int, elapsed_ns: list[int]) -> tuple[int, list[int]]:
    rates = [round(command_count * 1_000_000_000 / max(1, value)) for value in elapsed_ns]
    return round(statistics.median(rates)), rates


def run_peers_benchmark(
    commands: int = 20_000,
    seed: int = 1,
    engines: tuple[str, ...] = ENGINE_NAMES,
    runs: int = 5,
    venv_directory: Path = DEFAULT_PEERS_VENV,
    timeout_s: float = 120.0,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """The figures of one peer benchmark run (see the module docstring)."""
    unknown = [engine for engine in engines if engine not in ENGINE_NAMES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINE_NAMES)}")
    if any(engine not in ENGINE_INTERPRETERS for engine in engines) and not peers_python(venv_directory).exists():
        raise PeerEnvironmentMissing(
            f"no peer environment at {venv_directory}: run `twinbook bench peers --install` to create it "
            f"(it installs tools/peers-requirements.txt into a separate venv), or pass --peers-venv DIR"
        )
    workload = generate_peer_workload(commands, seed)
    counts = {"limit": 0, "market": 0, "cancel": 0}
    for command in workload:
        counts[type(command).__struct_config__.tag] += 1

    # Rounds: each round runs twinbook once, then every peer once, so that a burst of
    # load on the shared cores falls on all engines alike instead of on one engine's runs.
    reference_trades: list = []
    reference_elapsed: list[int] = []
    results: dict[str, dict] = {}
    elapsed: dict[str, list[int]] = {engine: [] for engine in engines}
    with tempfile.TemporaryDirectory(prefix="twinbook-peers-") as directory:
        workload_path = Path(directory) / "workload.jsonl"
        write_workload(workload_path, workload, seed)
        for round_number in range(1, runs + 1):
            progress(f"round {round_number} of {runs}: twinbook")
            outcome = run_twinbook(workload, 1)
            reference_elapsed += outcome["elapsed_ns"]
            if round_number == 1:
                reference_trades = outcome["trades"]
            for engine in engines:
                if round_number > 1 and (results[engine]["status"] != "ok" or sum(elapsed[engine]) >= REPEAT_BUDGET_NS):
                    continue
                progress(f"round {round_number} of {runs}: {engine}")
                result = run_peer(engine, engine_environment(engine, venv_directory), workload_path, 1, timeout_s)
                if round_number == 1:
                    results[engine] = result
                elif result["status"] != "ok":
                    # A later round that fails is reported, not averaged away.
                    results[engine] = result
                    continue
                elapsed[engine] += result.get("elapsed_ns", [])

    reference_rate, reference_rates = _rates(len(workload), reference_elapsed)
    rows = [{
        "engine": "twinbook",
        "version": _twinbook_version(),
        "status": "ok",
        "commands_per_second_median": reference_rate,
        "commands_per_second_runs": reference_rates,
        "ratio_to_twinbook": 1.0,
        "trades": len(reference_trades),
        "agreement": "reference",
    }]
    for engine in engines:
        result = results[engine]
        row = {"engine": engine, "version": result.get("version"), "status": result["status"]}
        if engine in ENGINE_INTERPRETERS and result["status"] == "ok":
            row["python"] = _peer_python_version(engine_environment(engine, venv_directory))
        if result["status"] != "ok":
            row["reason"] = result.get("reason", "")
            rows.append(row)
            continue
        rate, rates = _rates(len(workload), elapsed[engine])
        row.update(
            commands_per_second_median=rate,
            commands_per_second_runs=rates,
            ratio_to_twinbook=round(rate / reference_rate, 3),
            cancels_not_open=result.get("cancels_not_open", 0),
            market_remainders_cancelled=result.get("market_remainders_cancelled", 0),
        )
        if result.get("trades_reported"):
            row["trades"] = len(result["trades"])
            row["agreement"] = describe_agreement(reference_trades, result["trades"])
        else:
            row["trades"] = None
            row["agreement"] = "n/a: the engine reports no trades"
        rows.append(row)
    return {
        "benchmark": "peers",
        "seed": seed,
        "commands": len(workload),
        "workload": counts,
        "runs": runs,
        "engines": rows,
        "peers_venv": str(venv_directory),
        "peers_python": _peer_python_version(venv_directory) if peers_python(venv_directory).exists() else None,
        "python": platform.python_version(),
        "core": statemachine.CORE_MODE,
        "machine": platform.machine(),
    }


def _twinbook_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("twinbook")
    except metadata.PackageNotFoundError:
        return "source"


def _peer_python_version(venv_directory: Path) -> str | None:
    try:
        completed = subprocess.run([str(peers_python(venv_directory)), "-c", "import platform; print(platform.python_version())"],
                                   capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


def render_table(figures: dict) -> str:
    """The readable table: one row per engine, then the parameters."""
    header = ("engine", "version", "commands/s", "x twinbook", "trades", "agreement")
    rows = []
    for row in figures["engines"]:
        if row["status"] != "ok":
            status = row["status"].replace("_", " ")
            rows.append((row["engine"], row.get("version") or "-", "-", "-", "-", f"{status}: {row.get('reason', '')}"))
            continue
        trades = "-" if row["trades"] is None else f"{row['trades']:,}"
        version = row["version"] or "-"
        if row.get("python"):
            version += f" (Python {row['python']})"
        rows.append((row["engine"], version, f"{row['commands_per_second_median']:,}",
                     f"{row['ratio_to_twinbook']:.3f}", trades, row["agreement"]))
    widths = [max(len(str(line[column])) for line in [header, *rows]) for column in range(len(header) - 1)]
    lines = []
    for line in [header, *rows]:
        cells = [f"{line[0]:<{widths[0]}}", f"{line[1]:<{widths[1]}}", f"{line[2]:>{widths[2]}}",
                 f"{line[3]:>{widths[3]}}", f"{line[4]:>{widths[4]}}", line[5]]
        lines.append("  ".join(cells))
    counts = figures["workload"]
    lines.append("")
    lines.append(f"seed {figures['seed']}, {figures['commands']:,} commands ({counts['limit']:,} limit, "
                 f"{counts['market']:,} market, {counts['cancel']:,} cancel), median of {figures['runs']} rounds "
                 f"(fewer for an engine whose runs took {REPEAT_BUDGET_NS // 1_000_000_000} s); "
                 f"twinbook on Python {figures['python']} ({figures.get('core', 'pure')} core), "
                 f"the other peers on {figures['peers_python'] or '-'} ({figures['peers_venv']})")
    return "\n".join(lines)
