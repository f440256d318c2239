"""The recovery benchmark: snapshot stall, snapshot write and load, journal replay.

* A book of `resting_orders` resting limit orders (non-crossing, spread over 200 price
  levels per side, 50 members) is built in-process.
* Snapshot: `Snapshotter.start` forks a child that writes the snapshot; the apply loop's
  stall is how long `start` blocked the parent (the fork), measured in the parent. The
  child's total write time (encode + LMDB write, from fork to exit) is reported apart.
* Load: read the newest snapshot from LMDB (digest verified) and `decode_state` it.
* Replay: a journal of `replay_records` records of the core mixed workload is written
  (durability none, not timed) and replayed from scratch with `recover_exchange`
  (journal verify + decode + apply), reported as records/s.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time

import journal
import snapshots
from replica.data_directory import DataDirectory
from replica.recovery import recover_exchange
from replica.snapshotter import Snapshotter
from statemachine import AddInstrument, Exchange, PlaceOrder, decode_state
from statemachine.codec import encode_command
from tools.bench_core import generate_workload

SYMBOL = "BENCH"
MID_PRICE = 100_000
LEVELS_PER_SIDE = 200


def build_resting_book(resting_orders: int) -> tuple[Exchange, list]:
    commands = [AddInstrument(SYMBOL)]
    for index in range(resting_orders):
        buy = index % 2 == 0
        offset = 1 + (index // 2) % LEVELS_PER_SIDE
        price = MID_PRICE - offset if buy else MID_PRICE + offset
        commands.append(PlaceOrder(
            f"M{index % 50:02d}", f"r{index}", SYMBOL, "buy" if buy else "sell", "limit", 1 + index % 100, price
        ))
    exchange = Exchange()
    for sequence, command in enumerate(commands, 1):
        exchange.apply(sequence, sequence, command)
    return exchange, commands


def _write_journal(directory: str, commands: list) -> None:
    writer = journal.JournalWriter.open(directory, 1, durability="none")
    try:
        for sequence, command in enumerate(commands, 1):
            writer.append(0, sequence, encode_command(command))
            if writer.pending_count >= 10_000:
                writer.commit()
        writer.commit()
        writer.sync()
    finally:
        writer.close()


def run_recovery_benchmark(
    resting_orders: int = 1_000_000, replay_records: int = 1_000_000, seed: int = 1, workdir: str | None = None
) -> dict:
    root = tempfile.mkdtemp(prefix="twinbook-bench-recovery-", dir=workdir)
    try:
        node = DataDirectory.create(os.path.join(root, "book"))
        exchange, commands = build_resting_book(resting_orders)
        # The snapshot child reads the journal for the chain value at its sequence.
        _write_journal(node.journal, commands)
        del commands
        snapshotter = Snapshotter(node)
        snapshotter.start(exchange)
        outcome = snapshotter.wait()
        if outcome is None or not outcome.succeeded:
            raise RuntimeError("the snapshot child failed; see its traceback above")
        store = snapshots.SnapshotStore(node.snapshots, readonly=True)
        try:
            started = time.perf_counter()
            info, state_bytes = store.read(exchange.last_sequence)
            read_seconds = time.perf_counter() - started
        finally:
            store.close()
        started = time.perf_counter()
        restored = decode_state(state_bytes)
        decode_seconds = time.perf_counter() - started
        if restored.state_digest() != exchange.state_digest():
            raise RuntimeError("the restored exchange's digest differs from the original's")
        del exchange, restored, state_bytes

        replay_node = DataDirectory.create(os.path.join(root, "replay"))
        _write_journal(replay_node.journal, generate_workload(replay_records - 1, seed))
        started = time.perf_counter()
        result = recover_exchange(replay_node.root, use_snapshots=False)
        replay_seconds = time.perf_counter() - started
        return {
            "benchmark": "recovery",
            "resting_orders": resting_orders,
            "snapshot_stall_ns": outcome.stall_ns,
            "snapshot_write_ns": outcome.write_ns,
            "snapshot_size_bytes": info.state_size_bytes,
            "snapshot_load_ns": int((read_seconds + decode_seconds) * 1e9),
            "snapshot_read_ns": int(read_seconds * 1e9),
            "snapshot_decode_ns": int(decode_seconds * 1e9),
            "replay_records": result.replayed_records,
            "replay_ns": int(replay_seconds * 1e9),
            "replay_records_per_second": round(result.replayed_records / replay_seconds),
            "seed": seed,
            "python": platform.python_version(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
