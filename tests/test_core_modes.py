"""The compiled core and the pure-Python core: both importable, and indistinguishable.

`statemachine/exchange.py` runs as Python or compiled by Cython (statemachine/core_mode.py
explains the choice). These tests show that the build in use is the compiled one when it
was built and is not stale, that TWINBOOK_PURE_PYTHON=1 forces the pure one, and that the
two give byte-identical events, equal state digests all along and equal canonical
snapshot digests, on the varied stream the suite shares (every command type, icebergs,
stops, bands, STP modes) and on 1,000,000 commands of the benchmark's mixed workload,
with and without book updates. A snapshot written by one core loads in the other.
The suite's core tests also run a second time on the pure core (Makefile `test`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import statemachine
from command_streams import generate_commands
from statemachine import Exchange, canonical_digest, decode_state, encode_state
from statemachine.codec import encode_command
from statemachine.core_mode import PURE_PYTHON_VARIABLE
from tools.bench_core import generate_workload

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "core_mode_run.py"
COMPILED_DIRECTORY = ROOT / "statemachine" / "_compiled"


def compiled_modules() -> list[Path]:
    return sorted(COMPILED_DIRECTORY.glob("exchange.*.so")) if COMPILED_DIRECTORY.is_dir() else []


def requires_compiled_core():
    if not compiled_modules():
        pytest.skip("no compiled core was built (no Cython or no C compiler): nothing to compare")


def run_core(commands_file: Path, pure: bool) -> dict:
    environment = dict(os.environ)
    environment.pop(PURE_PYTHON_VARIABLE, None)
    if pure:
        environment[PURE_PYTHON_VARIABLE] = "1"
    completed = subprocess.run(
        [sys.executable, str(RUNNER), str(commands_file)],
        capture_output=True, env=environment, timeout=600, check=True, cwd=ROOT,
    )
    return json.loads(completed.stdout)


def write_commands(path: Path, stream: list) -> Path:
    path.write_bytes(msgspec.msgpack.encode([encode_command(command) for command in stream]))
    return path


def test_the_compiled_core_is_the_one_imported_unless_pure_python_is_forced():
    if os.environ.get(PURE_PYTHON_VARIABLE) == "1":
        assert statemachine.CORE_MODE == "pure"
        assert statemachine.exchange.__file__.endswith("exchange.py")
    elif compiled_modules():
        assert statemachine.CORE_MODE == "compiled"
        assert Path(statemachine.exchange.__file__).parent == COMPILED_DIRECTORY
    else:
        assert statemachine.CORE_MODE == "pure"


def test_the_compiled_core_is_not_older_than_its_source():
    """A stale build would run other rules than the source says: `make` rebuilds it."""
    requires_compiled_core()
    built = min(path.stat().st_mtime for path in compiled_modules())
    for source in ("exchange.py", "exchange.pxd"):
        assert (ROOT / "statemachine" / source).stat().st_mtime <= built, f"{source} changed after the build: run make"


def test_the_node_replay_and_recovery_import_the_compiled_core():
    requires_compiled_core()
    code = (
        "import replica.recovery, replica.primary_node, replica.standby_node, tools.cli, statemachine, sys; "
        "print(statemachine.CORE_MODE, sys.modules['statemachine.exchange'].__file__)"
    )
    environment = {key: value for key, value in os.environ.items() if key != PURE_PYTHON_VARIABLE}
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT, check=True, timeout=60,
    ).stdout.split()
    assert output[0] == "compiled" and output[1].endswith(".so")


def test_both_cores_agree_byte_for_byte_on_the_varied_stream(tmp_path):
    requires_compiled_core()
    commands = write_commands(tmp_path / "varied.msgpack", generate_commands(20_000, 7))
    compiled, pure = run_core(commands, pure=False), run_core(commands, pure=True)
    assert (compiled.pop("mode"), pure.pop("mode")) == ("compiled", "pure")
    assert compiled == pure


def test_both_cores_agree_byte_for_byte_on_a_million_commands(tmp_path):
    requires_compiled_core()
    commands = write_commands(tmp_path / "mixed.msgpack", generate_workload(1_000_000, 3))
    compiled, pure = run_core(commands, pure=False), run_core(commands, pure=True)
    assert (compiled.pop("mode"), pure.pop("mode")) == ("compiled", "pure")
    assert compiled["commands"] == 1_000_001
    assert compiled == pure


def test_a_snapshot_round_trips_through_either_core(tmp_path):
    """Encode in this process's core, decode in the other one (a subprocess), same bytes."""
    requires_compiled_core()
    exchange = Exchange()
    for sequence, command in enumerate(generate_commands(5_000, 11), 1):
        exchange.apply(sequence, sequence, command)
    state = encode_state(exchange)
    assert encode_state(decode_state(state)) == state
    (tmp_path / "state").write_bytes(state)
    code = (
        "import sys, statemachine; from statemachine import decode_state, encode_state; "
        "data = open(sys.argv[1], 'rb').read(); restored = decode_state(data); "
        "print(statemachine.CORE_MODE, encode_state(restored) == data, restored.state_digest())"
    )
    environment = dict(os.environ)
    if statemachine.CORE_MODE == "compiled":
        environment[PURE_PYTHON_VARIABLE] = "1"
    else:
        environment.pop(PURE_PYTHON_VARIABLE, None)
    other_mode, same_bytes, digest = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "state")],
        capture_output=True, text=True, env=environment, cwd=ROOT, check=True, timeout=60,
    ).stdout.split()
    assert other_mode != statemachine.CORE_MODE
    assert same_bytes == "True"
    assert int(digest) == exchange.state_digest()
    assert canonical_digest(decode_state(state)) == canonical_digest(exchange)


def test_both_cores_agree_where_python_integers_outgrow_64_bits(tmp_path):
    """A band of 10**12 bps around a price of 10**12 is 10**20 wide, and a replace may
    name any msgpack integer: neither may have to fit a native integer for the compiled
    core to do what Python does (both crashed the compiled core before they were fixed;
    found by a differential run of extreme values through both cores)."""
    requires_compiled_core()
    from statemachine import AddInstrument, PlaceOrder, ReplaceOrder

    price = 10**12
    stream = [
        AddInstrument("WIDE", band_bps=10**12, reference_price=price),
        PlaceOrder("A", "a1", "WIDE", "sell", "limit", 5, price),
        PlaceOrder("A", "a2", "WIDE", "sell", "limit", 5, 1),
        PlaceOrder("B", "b1", "WIDE", "buy", "market", 7),
        PlaceOrder("B", "b2", "WIDE", "buy", "stop", 3, stop_price=1),
        PlaceOrder("B", "b3", "WIDE", "buy", "stop_limit", 3, price, stop_price=1),
        PlaceOrder("A", "a3", "WIDE", "sell", "limit", 2, 1),
        PlaceOrder("A", "a4", "WIDE", "sell", "market", 9),
        # A replace naming a price beyond 64 bits is rejected, in both builds alike.
        PlaceOrder("A", "a5", "WIDE", "sell", "limit", 1, price),
        ReplaceOrder("A", 8, 1, price=2**64 - 1),
        ReplaceOrder("A", 8, 2**64 - 1),
    ]
    commands = write_commands(tmp_path / "wide.msgpack", stream)
    compiled, pure = run_core(commands, pure=False), run_core(commands, pure=True)
    assert (compiled.pop("mode"), pure.pop("mode")) == ("compiled", "pure")
    assert compiled == pure
