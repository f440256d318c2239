"""The journal benchmark: group-commit append throughput, fdatasync latency, read rates.

What is measured, each on a fresh journal in `directory` (64-byte bodies by default):

* append with policy "always", per batch size: records are appended `batch_size` at a
  time and each batch is committed, so every batch costs one os.write and one
  fdatasync. Two ways of committing are timed:
    - `sync`: commit() blocks for the fdatasync (records are durable on return);
    - `pipelined`: commit_async() on an asyncio loop, the next batches being built
      while an fdatasync runs on the sync thread (at most `pipeline_depth` commits in
      flight), as the primary's sequencer does. Commits that arrive while a sync runs
      share the next one (group commit across commits), so `syncs` is reported next
      to `commits`. Every record is still durable before its commit resolves.
  Batch size 1 uses at most `batch_one_records` records, since each is an fdatasync,
  and every batch size is capped at `commits_max` commits to keep the run bounded.
* fdatasync latency: the time of os.fdatasync alone after a one-record write,
  p50/p99 over `fdatasync_samples` samples, on a journal segment file.
* read: the journal written by the largest batch size is read back, every crc and
  the chain verified, by read_tuple_batches (the bulk-decode fast path), read_records
  (Record objects) and read_frames (verified raw frames, the replication catch-up).

Figures are records/s and MB/s (10^6 bytes of frames, header and body). Run it with
`python -m tools.bench_journal [directory]`, which prints the dict as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque

import journal
from journal.format import RECORD_OVERHEAD_BYTES

from tools.latency import percentile

EPOCH = 1


def _fresh(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def _append_sync(path: str, records: int, batch_size: int, body: bytes) -> dict:
    writer = journal.JournalWriter.open(path, 1, durability="always", epoch=EPOCH)
    append = writer.append
    commit = writer.commit
    latencies = []
    syncs_before = writer.sync_count
    cpu_started = time.process_time_ns()
    started = time.perf_counter_ns()
    sequence = 0
    while sequence < records:
        count = min(batch_size, records - sequence)
        for timestamp_ns in range(sequence, sequence + count):
            append(EPOCH, timestamp_ns, body)
        commit_started = time.perf_counter_ns()
        commit()
        latencies.append(time.perf_counter_ns() - commit_started)
        sequence += count
    elapsed_ns = time.perf_counter_ns() - started
    cpu_ns = time.process_time_ns() - cpu_started
    if writer.durable_sequence != records:
        raise RuntimeError(f"durable sequence {writer.durable_sequence} after {records} records")
    syncs = writer.sync_count - syncs_before
    writer.close()
    latencies.sort()
    return {
        "records": records,
        "commits": len(latencies),
        "syncs": syncs,
        "seconds": elapsed_ns / 1e9,
        "cpu_seconds": cpu_ns / 1e9,
        "records_per_s": records * 1e9 / elapsed_ns,
        "mb_per_s": records * (RECORD_OVERHEAD_BYTES + len(body)) * 1e3 / elapsed_ns,
        "commit_latency_p50_ns": percentile(latencies, 0.50, 0),
        "commit_latency_p99_ns": percentile(latencies, 0.99, 0),
    }


def _append_pipelined(path: str, records: int, batch_size: int, body: bytes, pipeline_depth: int) -> dict:
    async def run() -> tuple[int, int, int, int]:
        writer = journal.JournalWriter.open(path, 1, durability="always", epoch=EPOCH)
        append = writer.append
        in_flight: deque = deque()
        syncs_before = writer.sync_count
        commits = 0
        cpu_started = time.process_time_ns()
        started = time.perf_counter_ns()
        sequence = 0
        while sequence < records:
            count = min(batch_size, records - sequence)
            for timestamp_ns in range(sequence, sequence + count):
                append(EPOCH, timestamp_ns, body)
            sequence += count
            in_flight.append(asyncio.ensure_future(writer.commit_async()))
            commits += 1
            # Let the commit write its batch and hand its fdatasync to the sync
            # thread, then build the next batch while that runs.
            await asyncio.sleep(0)
            while len(in_flight) > pipeline_depth:
                await in_flight.popleft()
        while in_flight:
            await in_flight.popleft()
        elapsed_ns = time.perf_counter_ns() - started
        cpu_ns = time.process_time_ns() - cpu_started
        if writer.durable_sequence != records:
            raise RuntimeError(f"durable sequence {writer.durable_sequence} after {records} records")
        syncs = writer.sync_count - syncs_before
        writer.close()
        return elapsed_ns, cpu_ns, commits, syncs

    elapsed_ns, cpu_ns, commits, syncs = asyncio.run(run())
    return {
        "records": records,
        "commits": commits,
        "syncs": syncs,
        "pipeline_depth": pipeline_depth,
        "seconds": elapsed_ns / 1e9,
        "cpu_seconds": cpu_ns / 1e9,
        "records_per_s": records * 1e9 / elapsed_ns,
        "mb_per_s": records * (RECORD_OVERHEAD_BYTES + len(body)) * 1e3 / elapsed_ns,
    }


def _fdatasync_latency(path: str, samples: int, body: bytes) -> dict:
    writer = journal.JournalWriter.open(path, 1, durability="none", epoch=EPOCH)
    segment = writer.segment_path
    writer.close()
    fd = os.open(segment, os.O_WRONLY | os.O_APPEND)
    frame, _ = journal.format.encode_frame(1, EPOCH, 0, body, 0)
    latencies = []
    try:
        for _ in range(samples):
            os.write(fd, frame)
            started = time.perf_counter_ns()
            os.fdatasync(fd)
            latencies.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
    latencies.sort()
    return {"samples": samples, "p50_ns": percentile(latencies, 0.50, 0), "p99_ns": percentile(latencies, 0.99, 0), "max_ns": latencies[-1]}


def _read_rates(path: str, records: int, body_size_bytes: int, runs: int) -> dict:
    def timed(consume) -> tuple[float, float]:
        """Median records/s over `runs`, by wall clock and by process CPU time (the
        latter is the fairer figure on a machine shared with other work)."""
        rates, cpu_rates = [], []
        for _ in range(runs):
            cpu_started = time.process_time_ns()
            started = time.perf_counter_ns()
            count = consume()
            elapsed_ns = time.perf_counter_ns() - started
            cpu_ns = max(1, time.process_time_ns() - cpu_started)
            if count != records:
                raise RuntimeError(f"read {count} records, expected {records}")
            rates.append(records * 1e9 / elapsed_ns)
            cpu_rates.append(records * 1e9 / cpu_ns)
        return statistics.median(rates), statistics.median(cpu_rates)

    def tuples() -> int:
        count = 0
        for batch in journal.read_tuple_batches(path):
            count += len(batch)
        return count

    def record_objects() -> int:
        count = 0
        for _ in journal.read_records(path):
            count += 1
        return count

    def frames() -> int:
        total = 0
        for chunk in journal.read_frames(path, batch_size_bytes_max=1 << 20):
            total += len(chunk)
        return total // (RECORD_OVERHEAD_BYTES + body_size_bytes)

    tuple_rate, tuple_cpu_rate = timed(tuples)
    record_rate, record_cpu_rate = timed(record_objects)
    frame_rate, frame_cpu_rate = timed(frames)
    return {
        "records": records,
        "runs": runs,
        "tuples_records_per_s": tuple_rate,
        "tuples_records_per_cpu_s": tuple_cpu_rate,
        "tuples_mb_per_s": tuple_rate * (RECORD_OVERHEAD_BYTES + body_size_bytes) / 1e6,
        "records_records_per_s": record_rate,
        "records_records_per_cpu_s": record_cpu_rate,
        "frames_records_per_s": frame_rate,
        "frames_records_per_cpu_s": frame_cpu_rate,
    }


def run_journal_benchmark(
    directory: str | os.PathLike,
    *,
    records: int = 1_000_000,
    body_size_bytes: int = 64,
    batch_sizes: tuple[int, ...] = (1, 10, 100, 1000),
    batch_one_records: int = 2_000,
    commits_max: int = 2_000,
    fdatasync_samples: int = 1_000,
    read_runs: int = 3,
    pipeline_depth: int = 8,
) -> dict:
    """Run every measurement in `directory` and return the figures as a plain dict."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    body = bytes(range(256)) * (body_size_bytes // 256) + bytes(range(body_size_bytes % 256))
    append_results = {}
    read_path = None
    read_records_count = 0
    for batch_size in batch_sizes:
        count = min(records, batch_size * commits_max)
        if batch_size == 1:
            count = min(count, batch_one_records)
        sync_path = _fresh(directory, f"append-sync-{batch_size}")
        sync_result = _append_sync(sync_path, count, batch_size, body)
        pipelined_path = _fresh(directory, f"append-pipelined-{batch_size}")
        pipelined_result = _append_pipelined(pipelined_path, count, batch_size, body, pipeline_depth)
        append_results[str(batch_size)] = {"batch_size": batch_size, "sync": sync_result, "pipelined": pipelined_result}
        if count >= read_records_count:
            if read_path is not None:
                shutil.rmtree(read_path, ignore_errors=True)
            read_path, read_records_count = sync_path, count
        else:
            shutil.rmtree(sync_path, ignore_errors=True)
        shutil.rmtree(pipelined_path, ignore_errors=True)
    fdatasync_path = _fresh(directory, "fdatasync")
    fdatasync_result = _fdatasync_latency(fdatasync_path, fdatasync_samples, body)
    shutil.rmtree(fdatasync_path, ignore_errors=True)
    read_result = _read_rates(read_path, read_records_count, body_size_bytes, read_runs)
    shutil.rmtree(read_path, ignore_errors=True)
    return {
        "benchmark": "journal",
        "parameters": {
            "records": records,
            "body_size_bytes": body_size_bytes,
            "batch_sizes": list(batch_sizes),
            "batch_one_records": batch_one_records,
            "commits_max": commits_max,
            "fdatasync_samples": fdatasync_samples,
            "read_runs": read_runs,
            "pipeline_depth": pipeline_depth,
            "durability": "always",
            "directory": directory,
        },
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m": os.getloadavg()[0],
        },
        "append": append_results,
        "fdatasync_latency_ns": fdatasync_result,
        "read": read_result,
    }


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments:
        result = run_journal_benchmark(arguments[0])
    else:
        # The benchmark must measure a real disk: /tmp may be a RAM-backed tmpfs on
        # some machines, so default to a directory beside the working directory.
        with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=os.getcwd()) as directory:
            result = run_journal_benchmark(directory)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
