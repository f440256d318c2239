"""The audit replay benchmark: replay and export rate of a journal, in records per second.

A journal of `records` records of the core mixed workload (tools/bench_core.py: one
instrument, 55% passive adds, 25% cancels, 15% marketable limits, 5% market orders, 50
members) is written once (durability none, not timed). Then each variant replays it
from the beginning with the audit engine (replica/audit.py), `runs` times, and the
median rate is reported:

    replay_no_output      every record applied, no event selected (the floor)
    jsonl_trades          JSON lines of trades only (the target: >= 500,000 records/s)
    jsonl_all             JSON lines of every event
    jsonl_member          JSON lines of the events of one member of fifty
    csv_trades, csv_all   the same as CSV

The output goes to an in-memory byte counter, not a file, so the figures are those of
the replay and encoding, not of the disk or a pipe. Each rate is given per wall-clock
second and per CPU second of this process: on a machine whose cores are shared, the
CPU-second figure is the one that says what the code costs. To show where the time goes, the
stages are also timed alone over the same journal: the journal reader (verify and
frame decode), the reader plus command decoding, and `Exchange.apply` over the
already-decoded commands.

This machine is slow per Python bytecode and its two cores are shared, so absolute
figures are noisy; compare runs made on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

import journal
from replica.audit import AuditReplay, CsvEventWriter, EventSelection, JsonLinesEventWriter
from replica.workload import write_journal
from statemachine import Exchange
from statemachine.codec import decode_command
from tools.bench_core import MEMBERS, generate_workload

TARGET_JSONL_TRADES_RECORDS_PER_SECOND = 500_000


class _CountingSink:
    """A binary stream that only counts what is written to it."""

    def __init__(self) -> None:
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _variants() -> dict:
    """name -> (selection, output format or None)."""
    trades = frozenset({"trade"})
    return {
        "replay_no_output": (EventSelection(types=frozenset()), None),
        "jsonl_trades": (EventSelection(types=trades), "jsonl"),
        "jsonl_all": (EventSelection(), "jsonl"),
        "jsonl_member": (EventSelection(member=MEMBERS[7]), "jsonl"),
        "csv_trades": (EventSelection(types=trades), "csv"),
        "csv_all": (EventSelection(), "csv"),
    }


def _run_variant(journal_directory: str, selection: EventSelection, output_format) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, rows written, bytes written) of one replay from the beginning."""
    sink = _CountingSink()
    replay = AuditReplay(journal_directory, selection)
    if output_format == "csv":
        writer = CsvEventWriter(sink, replay.event_names())
    else:
        writer = JsonLinesEventWriter(sink)
    started = time.perf_counter()
    started_cpu = time.process_time()
    replay.run(writer)
    cpu_seconds = time.process_time() - started_cpu
    seconds = time.perf_counter() - started
    return seconds, cpu_seconds, writer.rows_written, sink.bytes_written


def _time_stages(journal_directory: str, records: int) -> dict:
    started = time.perf_counter()
    for _ in journal.read_tuple_batches(journal_directory):
        pass
    read_seconds = time.perf_counter() - started
    commands = []
    started = time.perf_counter()
    for batch in journal.read_tuple_batches(journal_directory):
        commands.append(list(map(decode_command, [record[3] for record in batch])))
    decode_seconds = time.perf_counter() - started
    exchange = Exchange()
    apply = exchange.apply
    started = time.perf_counter()
    sequence = 0
    for batch_commands in commands:
        for command in batch_commands:
            sequence += 1
            apply(sequence, sequence, command)
    apply_seconds = time.perf_counter() - started
    return {
        "stage_journal_read_records_per_second": round(records / read_seconds),
        "stage_journal_read_and_decode_records_per_second": round(records / decode_seconds),
        "stage_apply_only_records_per_second": round(records / apply_seconds),
    }


def run_replay_benchmark(records: int = 1_000_000, seed: int = 1, workdir: str | None = None, runs: int = 1) -> dict:
    """Replay/export rates of a `records`-record journal (module docstring)."""
    root = tempfile.mkdtemp(prefix="twinbook-bench-replay-", dir=workdir)
    try:
        journal_directory = os.path.join(root, "journal")
        write_journal(journal_directory, generate_workload(records - 1, seed), timestamp_step_ns=1)
        figures: dict = {"benchmark": "replay", "records": records, "runs": runs}
        for name, (selection, output_format) in _variants().items():
            timings = [_run_variant(journal_directory, selection, output_format) for _ in range(runs)]
            seconds = statistics.median(timing[0] for timing in timings)
            cpu_seconds = statistics.median(timing[1] for timing in timings)
            figures[f"{name}_records_per_second"] = round(records / seconds)
            figures[f"{name}_records_per_cpu_second"] = round(records / cpu_seconds)
            figures[f"{name}_rows"] = timings[0][2]
            if output_format is not None:
                figures[f"{name}_output_bytes"] = timings[0][3]
        figures.update(_time_stages(journal_directory, records))
        figures["target_jsonl_trades_records_per_second"] = TARGET_JSONL_TRADES_RECORDS_PER_SECOND
        figures["target_met"] = figures["jsonl_trades_records_per_second"] >= TARGET_JSONL_TRADES_RECORDS_PER_SECOND
        figures["seed"] = seed
        figures["python"] = platform.python_version()
        figures["load_average_1min"] = round(os.getloadavg()[0], 2)
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_replay", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workdir", help="where to write the temporary journal (default: the system temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args(argv)
    figures = run_replay_benchmark(arguments.records, arguments.seed, arguments.workdir, arguments.runs)
    if arguments.json:
        print(json.dumps(figures, sort_keys=True))
        return
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")


if __name__ == "__main__":
    main()
