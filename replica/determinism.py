"""Bit-exact determinism checks: one journal, replayed in fresh interpreters, must agree.

DESIGN.md invariant 2: the same record stream gives byte-identical events and the same
state digest across processes, PYTHONHASHSEED values, and snapshot+replay versus full
replay. `check_determinism` tests exactly that, so that CI can gate on it:

* Worker runs. Each run is a fresh interpreter (`sys.executable -m
  replica.determinism worker ...`) with its own PYTHONHASHSEED, so string hashing, set
  order and anything else seeded per process differ between runs. Run A and run B
  replay the whole journal from an empty exchange; run C, when the node has a snapshot
  (or the caller asked for one to be taken: run A writes it), starts from the newest
  snapshot that recovery would accept and replays the rest. The runs that do not
  depend on each other run in parallel.
* What a worker records. The exchange is built with book updates on, so market-data
  events are covered too. For every record it writes, to files in its own directory:
  the record's events as JSON lines, exactly as `twinbook replay` writes them (the
  event plus `epoch` and `ts`), to `events.jsonl`; the byte offset in that file where
  the record's events begin, to `offsets.u64`; and the exchange's `state_digest()`
  after the record, to `digests.u64` (little-endian u64 arrays, one entry per record,
  record `start + 1` first). At the end it prints one JSON summary line: first and last
  sequence, final `state_digest`, final `canonical_digest`, blake2b-256 of the event
  bytes, and the hash seed it ran under.
* Comparison. B is compared with A, and C with A's records after C's snapshot. The
  event streams are compared byte for byte (cheaply, by their digests first); the
  first differing byte is mapped through A's offsets to the record it belongs to, and
  the differing lines of both streams are reported. The per-record state digests are
  compared too, which catches a divergence that has not reached the events yet. The
  earliest of the two is "the first sequence where they differ". Final state and
  canonical digests must agree as well.

A check that never fails proves nothing, so a worker can be made non-deterministic on
purpose: with the environment variable TWINBOOK_INJECT_NONDETERMINISM=set-order (set by
tests only, never by the tools) a worker emits the events of each record in the
iteration order of a set of their encodings, which depends on the hash seed: the shape
of a real bug (collecting events, orders or symbols in a set and iterating it).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import subprocess
import sys
from array import array
from dataclasses import dataclass, field
from typing import Optional

import journal
import snapshots
from replica.audit import RulesVersionError, encode_jsonl_rows
from replica.data_directory import DataDirectory
from replica.errors import ReplicaError
from replica.recovery import load_newest_snapshot
from statemachine import Checkpoint, Exchange, StateMachineError, canonical_digest
from statemachine.codec import decode_command, encode_event_json
from statemachine.version import REPLAYABLE_RULES_VERSIONS

# The hash seeds of runs A, B (full replays) and C (from a snapshot). Fixed, so that a
# failure in CI reproduces on a workstation; any two distinct values do.
HASH_SEEDS_DEFAULT = ("1", "2", "3")
FAULT_INJECTION_ENV = "TWINBOOK_INJECT_NONDETERMINISM"
FAULT_SET_ORDER = "set-order"
WORKER_EXIT_OPERATING_FAULT = 3

EVENTS_FILE = "events.jsonl"
OFFSETS_FILE = "offsets.u64"
DIGESTS_FILE = "digests.u64"
# Bytes compared at a time when looking for the first difference of two event streams.
COMPARE_CHUNK_BYTES = 1 << 20
# Bytes read on each side of a differing byte to show its whole line.
LINE_WINDOW_BYTES = 1 << 16


class DeterminismRunError(ReplicaError):
    """A worker run failed (it crashed, or printed no summary): nothing to compare."""


# ---------------------------------------------------------------------- the worker


def _inject_set_order(events: list, encode) -> list:
    """The deliberate fault: events in hash order (see the module docstring)."""
    if len(events) < 2:
        return events
    by_encoding = {encode(event): event for event in events}
    return [by_encoding[encoding] for encoding in set(by_encoding)]


def run_worker(
    journal_directory: str,
    output_directory: str,
    *,
    to_sequence: Optional[int] = None,
    data_root: Optional[str] = None,
    from_snapshot: bool = False,
    write_snapshot_at: Optional[int] = None,
) -> dict:
    """Replay and record (see the module docstring); return the summary."""
    exchange = None
    skipped: list = []
    if from_snapshot and data_root is not None:
        limit = to_sequence if to_sequence is not None else journal.recover(journal_directory, repair=False).last_sequence
        exchange, _, skipped = load_newest_snapshot(DataDirectory(data_root), limit, book_updates=True)
    if exchange is None:
        exchange = Exchange(book_updates=True)
    start_sequence = exchange.last_sequence
    fault = os.environ.get(FAULT_INJECTION_ENV) == FAULT_SET_ORDER
    os.makedirs(output_directory, exist_ok=True)
    events_hash = hashlib.blake2b(digest_size=32)
    offsets = array("Q")
    digests = array("Q")
    offset = 0
    apply = exchange.apply
    with open(os.path.join(output_directory, EVENTS_FILE), "wb") as events_out:
        for batch in journal.read_tuple_batches(journal_directory, start_sequence + 1, to_sequence):
            chunks = []
            for sequence, epoch, timestamp_ns, body in batch:
                command = decode_command(body)
                if type(command) is Checkpoint and command.kind == "rules" and command.version not in REPLAYABLE_RULES_VERSIONS:
                    # Checking a build against rules it does not implement proves nothing.
                    raise RulesVersionError(sequence, command.version)
                events = apply(sequence, timestamp_ns, command)
                if fault:
                    events = _inject_set_order(events, encode_event_json)
                encoded = encode_jsonl_rows([(epoch, timestamp_ns, event) for event in events])
                offsets.append(offset)
                offset += len(encoded)
                chunks.append(encoded)
                digests.append(exchange.state_digest())
                if sequence == write_snapshot_at and data_root is not None:
                    # Imported here: only the run that takes the snapshot needs it.
                    from replica.snapshotter import write_snapshot

                    write_snapshot(DataDirectory(data_root), exchange)
            data = b"".join(chunks)
            events_hash.update(data)
            events_out.write(data)
    with open(os.path.join(output_directory, OFFSETS_FILE), "wb") as out:
        offsets.tofile(out)
    with open(os.path.join(output_directory, DIGESTS_FILE), "wb") as out:
        digests.tofile(out)
    return {
        "start_sequence": start_sequence,
        "last_sequence": exchange.last_sequence,
        "state_digest": exchange.state_digest(),
        "canonical_digest": canonical_digest(exchange).hex(),
        "events_blake2b": events_hash.hexdigest(),
        "events_bytes": offset,
        "hash_seed": os.environ.get("PYTHONHASHSEED"),
        "skipped_snapshots": skipped,
    }


def worker_main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replica.determinism worker")
    parser.add_argument("journal_directory")
    parser.add_argument("output_directory")
    parser.add_argument("--to-sequence", type=int)
    parser.add_argument("--data-root")
    parser.add_argument("--from-snapshot", action="store_true")
    parser.add_argument("--write-snapshot-at", type=int)
    arguments = parser.parse_args(argv)
    try:
        summary = run_worker(
            arguments.journal_directory,
            arguments.output_directory,
            to_sequence=arguments.to_sequence,
            data_root=arguments.data_root,
            from_snapshot=arguments.from_snapshot,
            write_snapshot_at=arguments.write_snapshot_at,
        )
    except (ReplicaError, journal.JournalError, snapshots.SnapshotError, StateMachineError) as error:
        # An operating fault, not a crash: one line for the parent to pass on.
        print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return WORKER_EXIT_OPERATING_FAULT
    print(json.dumps(summary), flush=True)
    return 0


# ---------------------------------------------------------------------- the runs


@dataclass
class RunSpec:
    label: str
    hash_seed: str
    from_snapshot: bool = False
    write_snapshot_at: Optional[int] = None


@dataclass
class RunResult:
    label: str
    hash_seed: str
    output_directory: str
    start_sequence: int
    last_sequence: int
    state_digest: int
    canonical_digest: str
    events_blake2b: str
    events_bytes: int
    skipped_snapshots: list = field(default_factory=list)

    def path(self, name: str) -> str:
        return os.path.join(self.output_directory, name)

    def describe(self) -> str:
        start = "full replay" if self.start_sequence == 0 else f"from snapshot {self.start_sequence}"
        return (
            f"run {self.label}  PYTHONHASHSEED={self.hash_seed:<4} {start:<24} sequences {self.start_sequence + 1}.."
            f"{self.last_sequence}  events {self.events_bytes} bytes blake2b {self.events_blake2b[:16]}  "
            f"state_digest {self.state_digest:#018x}  canonical {self.canonical_digest[:16]}"
        )


def _worker_command(spec: RunSpec, journal_directory: str, output_directory: str, to_sequence: int, data_root: Optional[str]) -> list:
    command = [sys.executable, "-m", "replica.determinism", "worker", journal_directory, output_directory, "--to-sequence", str(to_sequence)]
    if data_root is not None:
        command += ["--data-root", data_root]
    if spec.from_snapshot:
        command.append("--from-snapshot")
    if spec.write_snapshot_at is not None:
        command += ["--write-snapshot-at", str(spec.write_snapshot_at)]
    return command


def run_workers(
    specs: list, journal_directory: str, workdir: str, to_sequence: int, data_root: Optional[str]
) -> list:
    """Run the workers of `specs` in parallel, each in a fresh interpreter; their results."""
    started = []
    for spec in specs:
        output_directory = os.path.join(workdir, f"run-{spec.label}")
        environment = dict(os.environ, PYTHONHASHSEED=spec.hash_seed)
        process = subprocess.Popen(
            _worker_command(spec, journal_directory, output_directory, to_sequence, data_root),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        started.append((spec, output_directory, process))
    results = []
    failures: dict = {}  # message -> labels of the runs that failed with it
    for spec, output_directory, process in started:
        stdout, stderr = process.communicate()
        lines = stdout.decode("utf-8", "replace").strip().splitlines()
        if process.returncode != 0 or not lines:
            message = stderr.decode("utf-8", "replace").strip()[-2000:] or f"exited {process.returncode} without a summary"
            failures.setdefault(message, []).append(spec.label)
            continue
        summary = json.loads(lines[-1])
        results.append(RunResult(
            spec.label, spec.hash_seed, output_directory, summary["start_sequence"], summary["last_sequence"],
            summary["state_digest"], summary["canonical_digest"], summary["events_blake2b"], summary["events_bytes"],
            [tuple(item) for item in summary["skipped_snapshots"]],
        ))
    if failures:
        raise DeterminismRunError("; ".join(
            f"run {', '.join(labels)}: {message}" for message, labels in failures.items()
        ))
    return results


# ---------------------------------------------------------------------- comparison


@dataclass
class Mismatch:
    """The first place where two runs disagree."""

    reference_label: str
    other_label: str
    sequence: int
    what: str  # "events", "state_digest", "canonical_digest", "last_sequence"
    reference_text: Optional[str]  # the differing event line, or digest, of each run
    other_text: Optional[str]

    def lines(self) -> list:
        return [
            f"MISMATCH run {self.reference_label} vs run {self.other_label}: first difference at sequence {self.sequence} ({self.what})",
            f"  run {self.reference_label}: {self.reference_text if self.reference_text is not None else '<nothing>'}",
            f"  run {self.other_label}: {self.other_text if self.other_text is not None else '<nothing>'}",
        ]


def _load_u64(path: str) -> array:
    values = array("Q")
    with open(path, "rb") as source:
        values.frombytes(source.read())
    return values


def _first_difference(path_a: str, start_a: int, path_b: str, start_b: int) -> Optional[int]:
    """The first byte position (relative to the starts) where the two files' tails
    differ; None when they are equal."""
    with open(path_a, "rb") as file_a, open(path_b, "rb") as file_b:
        file_a.seek(start_a)
        file_b.seek(start_b)
        position = 0
        while True:
            chunk_a = file_a.read(COMPARE_CHUNK_BYTES)
            chunk_b = file_b.read(COMPARE_CHUNK_BYTES)
            if chunk_a != chunk_b:
                length = min(len(chunk_a), len(chunk_b))
                index = next((i for i in range(length) if chunk_a[i] != chunk_b[i]), length)
                return position + index
            if not chunk_a:
                return None
            position += len(chunk_a)


def _line_at(path: str, position: int) -> Optional[str]:
    """The line of the file containing byte `position` (None past the end); a line
    longer than the window read around the position is cut to it."""
    window = LINE_WINDOW_BYTES
    begin = max(0, position - window)
    with open(path, "rb") as source:
        source.seek(begin)
        data = source.read(position - begin + window)
    relative = position - begin
    if relative >= len(data):
        return None
    line_begin = data.rfind(b"\n", 0, relative) + 1
    line_end = data.find(b"\n", relative)
    return data[line_begin : line_end if line_end >= 0 else len(data)].decode("utf-8", "replace")


def _sequence_at(run: RunResult, offsets: array, position: int) -> Optional[int]:
    """The sequence of the record whose events hold byte `position` of the run's stream."""
    if position >= run.events_bytes:
        return None
    # Records without events share their offset with the next record; the last record
    # starting at or before the position is the one that wrote the byte.
    return run.start_sequence + bisect.bisect_right(offsets, position)


def compare_runs(reference: RunResult, other: RunResult) -> Optional[Mismatch]:
    """Where `other` first differs from `reference`, over the records both replayed
    (`other` may start later, from a snapshot)."""
    skip = other.start_sequence - reference.start_sequence  # reference records before other's start
    reference_offsets = _load_u64(reference.path(OFFSETS_FILE))
    other_offsets = _load_u64(other.path(OFFSETS_FILE))
    candidates = []

    region_start = reference_offsets[skip] if skip < len(reference_offsets) else reference.events_bytes
    difference = _first_difference(reference.path(EVENTS_FILE), region_start, other.path(EVENTS_FILE), 0)
    if difference is not None:
        # The bytes before the difference are equal and every line names its own seq, so
        # the first differing record is the earlier of the two records the byte falls in.
        sequences = [
            sequence
            for sequence in (
                _sequence_at(reference, reference_offsets, region_start + difference),
                _sequence_at(other, other_offsets, difference),
            )
            if sequence is not None
        ]
        candidates.append(Mismatch(
            reference.label, other.label, min(sequences), "events",
            _line_at(reference.path(EVENTS_FILE), region_start + difference),
            _line_at(other.path(EVENTS_FILE), difference),
        ))
    reference_digests = _load_u64(reference.path(DIGESTS_FILE))
    other_digests = _load_u64(other.path(DIGESTS_FILE))
    for index, (expected, found) in enumerate(zip(reference_digests[skip:], other_digests)):
        if expected != found:
            candidates.append(Mismatch(
                reference.label, other.label, other.start_sequence + 1 + index, "state_digest after the record",
                f"{expected:#018x}", f"{found:#018x}",
            ))
            break
    if candidates:
        # At equal sequences the events are the more telling report.
        return min(candidates, key=lambda mismatch: (mismatch.sequence, mismatch.what != "events"))
    if reference.last_sequence != other.last_sequence:
        return Mismatch(
            reference.label, other.label, min(reference.last_sequence, other.last_sequence) + 1, "last sequence",
            str(reference.last_sequence), str(other.last_sequence),
        )
    if reference.state_digest != other.state_digest:
        return Mismatch(
            reference.label, other.label, reference.last_sequence, "final state_digest",
            f"{reference.state_digest:#018x}", f"{other.state_digest:#018x}",
        )
    if reference.canonical_digest != other.canonical_digest:
        return Mismatch(
            reference.label, other.label, reference.last_sequence, "final canonical_digest",
            reference.canonical_digest, other.canonical_digest,
        )
    return None


# ---------------------------------------------------------------------- the check


@dataclass
class DeterminismReport:
    journal_directory: str
    last_sequence: int
    runs: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def check_determinism(
    journal_directory: str,
    workdir: str,
    *,
    data_root: Optional[str] = None,
    snapshot_at: Optional[int] = None,
    hash_seeds: tuple = HASH_SEEDS_DEFAULT,
) -> DeterminismReport:
    """Replay `journal_directory` in fresh interpreters and compare (module docstring).

    `data_root`: the node data directory holding the journal; its newest acceptable
    snapshot is the start of run C. `snapshot_at`: have run A write a snapshot there
    (into `data_root`) first, for journals that come without one.
    """
    seed_a, seed_b, seed_c = hash_seeds
    recovery = journal.recover(journal_directory, repair=False)
    last_sequence = recovery.last_sequence
    report = DeterminismReport(journal_directory, last_sequence)
    if recovery.torn is not None:
        report.notes.append(f"torn tail after sequence {last_sequence} not replayed ({recovery.torn.segment_path})")
    has_snapshots = data_root is not None and DataDirectory(data_root).has_snapshots()
    full_runs = [RunSpec("A", seed_a, write_snapshot_at=snapshot_at), RunSpec("B", seed_b)]
    snapshot_run = RunSpec("C", seed_c, from_snapshot=True)
    if snapshot_at is None and has_snapshots:
        runs = run_workers(full_runs + [snapshot_run], journal_directory, workdir, last_sequence, data_root)
    else:
        runs = run_workers(full_runs, journal_directory, workdir, last_sequence, data_root)
        if snapshot_at is not None:
            runs += run_workers([snapshot_run], journal_directory, workdir, last_sequence, data_root)
    report.runs = runs
    by_label = {run.label: run for run in runs}
    reference = by_label["A"]
    report_mismatch = report.mismatches.append
    mismatch = compare_runs(reference, by_label["B"])
    if mismatch is not None:
        report_mismatch(mismatch)
    snapshot_result = by_label.get("C")
    if snapshot_result is not None:
        for sequence, reason in snapshot_result.skipped_snapshots:
            report.notes.append(f"snapshot {sequence} not usable: {reason}")
        if snapshot_result.start_sequence == 0:
            report.notes.append("no usable snapshot: run C was a full replay")
        mismatch = compare_runs(reference, snapshot_result)
        if mismatch is not None:
            report_mismatch(mismatch)
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2:]))
    print("usage: python -m replica.determinism worker JOURNAL OUTPUT [options]", file=sys.stderr)
    sys.exit(2)
