"""Audit replay and verification: re-execute a journal and show exactly what happened.

Compliance asks "show me every fill of member X on day D, and prove it is what
happened". The answer is never read from logs or stored reports: the journal is
re-executed through the same state machine, and the events it produces now are, by the
determinism invariant, the events it produced then. This module is that replay engine
(`AuditReplay`), its output formats (`JsonLinesEventWriter`, `CsvEventWriter`) and the
journal/snapshot/digest verification (`verify_node`).

How a replay works
    * It starts from the beginning of the journal, or from a snapshot at or before the
      first sequence asked for, and only from a snapshot that is verified the way
      recovery verifies it (store digest, state format version, journal chain value at
      its sequence, decodes to exactly its sequence: replica/recovery.py). Either way
      the state before the first output record is exactly the state the node had.
    * Filters (`EventSelection`: sequence range, member, symbol, event types) apply to
      the output only. Every record is applied; a filter only decides which of the
      produced events are written. Selection happens on the event objects, by type
      first, before anything is encoded, so records whose events are not wanted cost
      no encoding at all.
    * The journal is read in the reader's batches (4096 verified records); a batch's
      bodies are decoded in one `map` over the codec, applied one by one, and the
      selected events of the whole batch are encoded and written as one joined byte
      chunk (one write call per batch).
    * Each output row is the event in the scenario event format of RULES.md plus the
      record's `epoch` and `ts` (timestamp_ns): JSON lines (`{...event..., "epoch":E,
      "ts":T}`) or CSV with a header row (`seq, epoch, ts, type`, then the union of the
      selected event types' fields; absent fields empty, booleans `true`/`false`).
    * Follow mode replays what is there (reading "live", so a batch being written is
      not mistaken for damage), then polls a `journal.Tailer` for records appended
      since, applying and writing them as they come.
    * A torn tail (a crash cut the last write) ends a non-following replay at the last
      complete record; the caller is told (`torn_tail`) and decides what to say.

Rules versions
    A journal records the matching-rules version it was written under as
    `Checkpoint(kind="rules", version=N)` records (statemachine/version.py); records
    before the first such record were written under version 1. A replay meets every
    rules checkpoint before the record it precedes is applied (when it starts from a
    snapshot, the records up to the snapshot are scanned for them first), and raises
    `RulesVersionError` at the first version this build cannot replay, after writing
    the events of the records before it and nothing of the records after it.

Digest checkpoints (what `verify_node` checks)
    A record `Checkpoint(kind="digest", digest=D)` at sequence s announces that the
    exchange's `state_digest()` after applying records 1..s-1 (that is, just before
    applying record s itself) is D. The announcing record cannot cover itself: applying
    any record, a checkpoint included, changes the digest through the last sequence
    it folds in. So the writer (the sequencer) takes the digest of the state it has
    applied so far and journals it as the next record; a verifier compares D with the
    digest of its own replay just before it applies the checkpoint.

`verify_node` walks the journal chain (journal.recover, read-only, every record), then
replays the whole journal once and on the way checks every digest checkpoint, every
rules checkpoint, and every stored snapshot: the snapshot's stored digest against the
canonical digest of the replayed state at its sequence (a recomputation, so a snapshot
whose bytes were replaced by another self-consistent state is caught, which the store's
own check cannot do), and its stored chain value against the journal's at that sequence.
Each problem becomes one `Finding`; a corrupt journal is a finding naming file and
offset, and the checks that need the unreadable part are reported as not verified.
"""

from __future__ import annotations

import csv
import io
import os
import time
import typing
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Optional

import msgspec

import journal
import snapshots
from replica.data_directory import DataDirectory
from replica.errors import ReplicaError
from replica.recovery import load_newest_snapshot
from statemachine import STATE_FORMAT_VERSION, Checkpoint, Exchange, SnapshotFormatError, canonical_digest, decode_state
from statemachine.codec import decode_command, decode_commands
from statemachine.events import Event, TradeExecuted
from statemachine.version import REPLAYABLE_RULES_VERSIONS, RULES_VERSION_WHEN_UNRECORDED

# Every event type by its tag (the `type` of RULES.md), in the order of the union.
EVENT_TYPES_BY_NAME: dict[str, type] = {
    event_type.__struct_config__.tag: event_type for event_type in typing.get_args(Event)
}
# Produced only by an exchange built with book_updates=True.
MARKET_DATA_EVENT_NAMES = ("level_changed", "instrument_status")
EXECUTION_EVENT_NAMES = tuple(name for name in EVENT_TYPES_BY_NAME if name not in MARKET_DATA_EVENT_NAMES)

# The columns every CSV row starts with; the event's own fields follow.
CSV_LEADING_COLUMNS = ("seq", "epoch", "ts", "type")

# A cheap byte test for "this body may be a checkpoint": msgspec writes the tag as the
# msgpack fixstr of "checkpoint" (0xa0 | 10). A false positive (a client order id that
# happens to contain it) only costs a decode.
_CHECKPOINT_TAG_BYTES = b"\xaacheckpoint"

# Records asked of the tailer per poll in follow mode (the reader's batch size).
FOLLOW_POLL_RECORDS = 4096

# The selector value meaning "every event of this type is wanted".
_SELECT_ALL = True

ProgressCallback = Callable[[int], None]  # called with the number of records just applied


class AuditError(ReplicaError):
    """Base of the errors of the audit replay."""


class RulesVersionError(AuditError):
    """The journal was written under matching rules this build cannot replay."""

    def __init__(self, sequence: int, version: Optional[int]) -> None:
        self.sequence = sequence
        self.version = version
        replayable = ", ".join(str(known) for known in REPLAYABLE_RULES_VERSIONS)
        if version is None:
            message = f"the rules checkpoint at sequence {sequence} names no rules version; this build replays {replayable}"
        else:
            message = f"journal written under rules version {version} (from sequence {sequence}); this build replays {replayable}"
        super().__init__(message)


class AuditSelectionError(AuditError, ValueError):
    """An event selection that cannot be satisfied (an unknown event type, ...)."""


# ---------------------------------------------------------------------- selection


@dataclass(frozen=True)
class EventSelection:
    """Which events of a replay are written. Applies to output only.

    from_sequence / to_sequence  records (inclusive) whose events are written; the
                                 replay stops after to_sequence.
    member   trade: maker or taker is the member; accepted, rejected, cancelled,
             replaced, triggered: their `member` field. Market-data events have no
             member and are never selected by a member filter.
    symbol   the event's `symbol` field. `rejected` events carry no symbol and are
             never selected by a symbol filter.
    types    event type names (EVENT_TYPES_BY_NAME); None: all.
    """

    from_sequence: int = 1
    to_sequence: Optional[int] = None
    member: Optional[str] = None
    symbol: Optional[str] = None
    types: Optional[frozenset] = None

    def __post_init__(self) -> None:
        if self.from_sequence < 1:
            raise AuditSelectionError(f"from_sequence {self.from_sequence} is below 1")
        if self.to_sequence is not None and self.to_sequence < self.from_sequence:
            raise AuditSelectionError(f"to_sequence {self.to_sequence} is below from_sequence {self.from_sequence}")
        if self.types is not None:
            unknown = sorted(set(self.types) - set(EVENT_TYPES_BY_NAME))
            if unknown:
                raise AuditSelectionError(
                    f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES_BY_NAME)}"
                )

    def event_names(self, book_updates: bool) -> tuple[str, ...]:
        """The selected event type names, in union order (only those the replay produces)."""
        produced = EVENT_TYPES_BY_NAME if book_updates else EXECUTION_EVENT_NAMES
        return tuple(name for name in produced if self.types is None or name in self.types)

    def selectors(self, book_updates: bool) -> dict:
        """event type -> _SELECT_ALL or a predicate(event) -> bool; absent types are not selected."""
        selectors: dict = {}
        for name in self.event_names(book_updates):
            event_type = EVENT_TYPES_BY_NAME[name]
            selector = _field_selector(event_type, self.member, self.symbol)
            if selector is not None:
                selectors[event_type] = selector
        return selectors


def _field_selector(event_type: type, member: Optional[str], symbol: Optional[str]):
    fields = event_type.__struct_fields__
    tests = []
    if member is not None:
        if event_type is TradeExecuted:
            tests.append(lambda event: event.maker_member == member or event.taker_member == member)
        elif "member" in fields:
            tests.append(lambda event: event.member == member)
        else:
            return None
    if symbol is not None:
        if "symbol" not in fields:
            return None
        tests.append(lambda event: event.symbol == symbol)
    if not tests:
        return _SELECT_ALL
    if len(tests) == 1:
        return tests[0]
    first, second = tests
    return lambda event: first(event) and second(event)


# ---------------------------------------------------------------------- writers


_json_encode = msgspec.json.Encoder().encode


def encode_jsonl_rows(rows: list) -> bytes:
    """(epoch, timestamp_ns, event) rows as JSON lines: the event's scenario-format
    object with `epoch` and `ts` added at the end."""
    encode = _json_encode
    # An encoded event is one JSON object; its closing brace is replaced by the two
    # record fields, which is much cheaper than building a dict per row.
    return b"".join([
        encode(event)[:-1] + b',"epoch":%d,"ts":%d}\n' % (epoch, timestamp_ns)
        for epoch, timestamp_ns, event in rows
    ])


class JsonLinesEventWriter:
    """Rows as JSON lines (`encode_jsonl_rows`), one write per batch."""

    def __init__(self, out: BinaryIO, *, flush_every_write: bool = False) -> None:
        self._out = out
        self._flush_every_write = flush_every_write
        self.rows_written = 0

    def write_rows(self, rows: list) -> None:
        self._out.write(encode_jsonl_rows(rows))
        self.rows_written += len(rows)
        if self._flush_every_write:
            self._out.flush()

    def finish(self) -> None:
        self._out.flush()


def csv_columns(event_names: Iterable[str]) -> tuple[str, ...]:
    """seq, epoch, ts, type, then every field of the named event types, first seen first."""
    columns = list(CSV_LEADING_COLUMNS)
    for name in event_names:
        for field_name in EVENT_TYPES_BY_NAME[name].__struct_fields__:
            if field_name not in columns:
                columns.append(field_name)
    return tuple(columns)


def _csv_value(value):
    # JSON's spelling for booleans, so that both exports read the same; None -> empty.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


class CsvEventWriter:
    """Rows as CSV (RFC 4180 quoting by the csv module) under one header row.

    The columns are fixed before the first row (`csv_columns` of the selected types),
    so a file always parses with one header, whatever events follow.
    """

    def __init__(self, out: BinaryIO, event_names: Iterable[str], *, flush_every_write: bool = False) -> None:
        self._out = out
        self.columns = csv_columns(event_names)
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._row_builders: dict = {}
        self._flush_every_write = flush_every_write
        self.rows_written = 0
        self._csv.writerow(self.columns)
        self._drain()

    def _builder_for(self, event_type: type):
        fields = event_type.__struct_fields__
        positions = [self.columns.index(name) for name in fields]
        width = len(self.columns)
        name = event_type.__struct_config__.tag
        values_of = msgspec.structs.astuple
        converts = any(field_type is bool for field_type in typing.get_type_hints(event_type).values())

        def build(epoch: int, timestamp_ns: int, event) -> list:
            row = [None] * width
            row[1] = epoch
            row[2] = timestamp_ns
            row[3] = name
            values = values_of(event)
            if converts:
                values = [_csv_value(value) for value in values]
            for position, value in zip(positions, values):
                row[position] = value
            return row

        self._row_builders[event_type] = build
        return build

    def encode_rows(self, rows: list) -> bytes:
        builders = self._row_builders
        built = []
        for epoch, timestamp_ns, event in rows:
            build = builders.get(type(event)) or self._builder_for(type(event))
            built.append(build(epoch, timestamp_ns, event))
        self._csv.writerows(built)
        return self._take()

    def write_rows(self, rows: list) -> None:
        self._out.write(self.encode_rows(rows))
        self.rows_written += len(rows)
        if self._flush_every_write:
            self._out.flush()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")

    def _drain(self) -> None:
        self._out.write(self._take())
        if self._flush_every_write:
            self._out.flush()

    def finish(self) -> None:
        self._out.flush()


class DiscardingEventWriter:
    """Counts rows and writes nothing (benchmarks of the replay itself)."""

    def __init__(self) -> None:
        self.rows_written = 0

    def write_rows(self, rows: list) -> None:
        self.rows_written += len(rows)

    def finish(self) -> None:
        pass


class CollectingEventWriter:
    """Keeps the rows, (epoch, timestamp_ns, event), in a list (tests, small journals)."""

    def __init__(self) -> None:
        self.rows: list = []

    @property
    def rows_written(self) -> int:
        return len(self.rows)

    def write_rows(self, rows: list) -> None:
        self.rows.extend(rows)

    def finish(self) -> None:
        pass


# ---------------------------------------------------------------------- replay


@dataclass
class StartPoint:
    """Where a replay began: 0 for the beginning, else the snapshot's sequence."""

    snapshot_sequence: int = 0
    skipped_snapshots: list = field(default_factory=list)  # [(sequence, reason)]


class AuditReplay:
    """Re-executes one journal and writes the selected events of its records.

    `journal_directory` is the journal; `data_directory`, when given and holding
    snapshots (and the same journal), lets the replay start from a verified snapshot at
    or before `selection.from_sequence - 1`.
    """

    def __init__(
        self,
        journal_directory: str,
        selection: EventSelection = EventSelection(),
        *,
        data_directory: Optional[DataDirectory] = None,
        use_snapshots: bool = True,
        book_updates: bool = False,
    ) -> None:
        self.journal_directory = os.fspath(journal_directory)
        self.selection = selection
        self.book_updates = book_updates
        self._data_directory = data_directory
        self._use_snapshots = use_snapshots
        self._selectors = selection.selectors(book_updates)
        if not book_updates and selection.types is not None:
            market_data = sorted(set(selection.types) & set(MARKET_DATA_EVENT_NAMES))
            if market_data:
                raise AuditSelectionError(
                    f"{', '.join(market_data)} events are produced only with book updates on"
                )
        self.exchange: Optional[Exchange] = None
        self.start_point: Optional[StartPoint] = None
        self.rules_version = RULES_VERSION_WHEN_UNRECORDED
        self.rules_version_sequence = 0
        # Set when a non-following replay stopped at a torn tail (journal.TornTail).
        self.torn_tail = None
        self.records_applied = 0

    @property
    def last_sequence(self) -> int:
        return 0 if self.exchange is None else self.exchange.last_sequence

    def event_names(self) -> tuple[str, ...]:
        return self.selection.event_names(self.book_updates)

    # ------------------------------------------------------------------ start

    def start(self) -> StartPoint:
        """Build the state before the first wanted record (fresh, or a verified snapshot)."""
        if self.start_point is not None:
            return self.start_point
        start = StartPoint()
        exchange = None
        want_before = self.selection.from_sequence - 1
        directory = self._data_directory
        if (
            self._use_snapshots
            and want_before > 0
            and directory is not None
            and directory.has_snapshots()
            and os.path.realpath(directory.journal) == os.path.realpath(self.journal_directory)
        ):
            try:
                exchange, sequence, skipped = load_newest_snapshot(directory, want_before, book_updates=self.book_updates)
            except snapshots.SnapshotError as error:
                # A store that cannot even be opened is no reason not to replay: the
                # journal alone gives the same result, only more slowly.
                exchange, sequence, skipped = None, 0, [(0, f"snapshot store unreadable: {error}")]
            # Snapshots past the first wanted record are simply not candidates.
            start.skipped_snapshots = [(skipped_sequence, reason) for skipped_sequence, reason in skipped if skipped_sequence <= want_before]
            if exchange is not None:
                start.snapshot_sequence = sequence
                self._scan_rules_checkpoints(sequence)
        if exchange is None:
            exchange = Exchange(book_updates=self.book_updates)
        self.exchange = exchange
        self.start_point = start
        return start

    def _scan_rules_checkpoints(self, to_sequence: int) -> None:
        """Meet the rules checkpoints of the records the replay will not apply (those the
        journal still holds up to its snapshot; from sequence 0 means from the first
        segment there is): only bodies that may be checkpoints are decoded."""
        for batch in journal.read_tuple_batches(self.journal_directory, 0, to_sequence):
            for sequence, _, _, body in batch:
                if _CHECKPOINT_TAG_BYTES in body:
                    command = decode_command(body)
                    if type(command) is Checkpoint:
                        self._meet_checkpoint(sequence, command)

    def _meet_checkpoint(self, sequence: int, command: Checkpoint) -> None:
        if command.kind == "rules":
            if command.version not in REPLAYABLE_RULES_VERSIONS:
                raise RulesVersionError(sequence, command.version)
            self.rules_version = command.version
            self.rules_version_sequence = sequence

    # ------------------------------------------------------------------ run

    def run(self, writer, *, progress: Optional[ProgressCallback] = None, live: bool = False) -> int:
        """Replay to the end of the journal (or to_sequence); return the last sequence applied.

        Raises the journal's error (naming file and offset) on corruption, except that a
        torn tail ends a non-live replay quietly with `torn_tail` set. With `live`, an
        incomplete frame at the very end is taken for a write in progress.
        """
        self.start()
        selection = self.selection
        batches = journal.read_tuple_batches(
            self.journal_directory, self.exchange.last_sequence + 1, selection.to_sequence, live=live
        )
        try:
            for batch in batches:
                self._apply_batch(batch, writer)
                if progress is not None:
                    progress(len(batch))
        except journal.JournalCorruptError:
            if live or not self._stopped_at_torn_tail():
                raise
        writer.finish()
        return self.exchange.last_sequence

    def _stopped_at_torn_tail(self) -> bool:
        report = journal.recover(self.journal_directory, repair=False, full_scan=False)
        if report.state == "torn" and report.last_sequence == self.exchange.last_sequence:
            self.torn_tail = report.torn
            return True
        return False

    def follow(
        self,
        writer,
        *,
        poll_interval_seconds: float = 0.05,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Optional[ProgressCallback] = None,
    ) -> int:
        """Replay what is there, then apply and write records as they are appended,
        until `should_stop()` or to_sequence; return the last sequence applied."""
        self.run(writer, progress=progress, live=True)
        to_sequence = self.selection.to_sequence
        tailer = journal.Tailer(self.journal_directory, self.exchange.last_sequence + 1)
        try:
            while not should_stop():
                if to_sequence is not None and self.exchange.last_sequence >= to_sequence:
                    break
                wanted = FOLLOW_POLL_RECORDS
                if to_sequence is not None:
                    wanted = min(wanted, to_sequence - self.exchange.last_sequence)
                records = tailer.poll(wanted)
                if not records:
                    time.sleep(poll_interval_seconds)
                    continue
                self._apply_batch([record[:4] for record in records], writer)
                writer.finish()
        finally:
            tailer.close()
        return self.exchange.last_sequence

    # ------------------------------------------------------------------ the hot path

    def _apply_batch(self, batch: list, writer) -> None:
        """Apply a batch of (sequence, epoch, timestamp_ns, body) and write the selected
        events of the records at or after from_sequence."""
        commands = decode_commands([record[3] for record in batch])
        if Checkpoint in map(type, commands):
            stop_at = self._rules_stop_index(batch, commands)
            if stop_at is not None:
                # Everything before the refused rules checkpoint is exact: write it, then refuse.
                self._apply_records(batch[:stop_at], commands[:stop_at], writer)
                writer.finish()
                sequence = batch[stop_at][0]
                raise RulesVersionError(sequence, commands[stop_at].version)
        self._apply_records(batch, commands, writer)

    def _rules_stop_index(self, batch: list, commands: list) -> Optional[int]:
        for index, command in enumerate(commands):
            if type(command) is Checkpoint and command.kind == "rules":
                if command.version not in REPLAYABLE_RULES_VERSIONS:
                    return index
                self.rules_version = command.version
                self.rules_version_sequence = batch[index][0]
        return None

    def _apply_records(self, batch: list, commands: list, writer) -> None:
        if not batch:
            return
        apply = self.exchange.apply
        from_sequence = self.selection.from_sequence
        quiet = 0
        if batch[0][0] < from_sequence:
            # Records before the wanted range are applied for their effect on the state only.
            quiet = min(len(batch), from_sequence - batch[0][0])
            for (sequence, _, timestamp_ns, _), command in zip(batch[:quiet], commands[:quiet]):
                apply(sequence, timestamp_ns, command)
            if quiet == len(batch):
                self.records_applied += quiet
                return
            batch = batch[quiet:]
            commands = commands[quiet:]
        rows: list = []
        append = rows.append
        selector_of = self._selectors.get
        for (sequence, epoch, timestamp_ns, _), command in zip(batch, commands):
            for event in apply(sequence, timestamp_ns, command):
                selector = selector_of(type(event))
                if selector is not None and (selector is _SELECT_ALL or selector(event)):
                    append((epoch, timestamp_ns, event))
        self.records_applied += quiet + len(batch)
        if rows:
            writer.write_rows(rows)


# ---------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Finding:
    """One thing verify found wrong (or could not check)."""

    kind: str  # JOURNAL_CORRUPT, JOURNAL_TORN, DIGEST_MISMATCH, SNAPSHOT_..., RULES_VERSION, NOT_VERIFIED
    message: str
    sequence: Optional[int] = None

    def line(self) -> str:
        where = f" at sequence {self.sequence}" if self.sequence is not None else ""
        return f"{self.kind}{where}: {self.message}"


@dataclass
class VerifyReport:
    journal_directory: str
    findings: list = field(default_factory=list)
    first_sequence: Optional[int] = None
    last_sequence: int = 0  # the last record replayed
    records_replayed: int = 0
    digest_checkpoints_verified: int = 0
    rules_checkpoints_seen: int = 0
    snapshots_verified: list = field(default_factory=list)  # sequences
    state_digest: Optional[int] = None
    canonical_digest: Optional[bytes] = None

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_node(journal_directory: str, data_directory: Optional[DataDirectory] = None,
                progress: Optional[ProgressCallback] = None) -> VerifyReport:
    """Verify a journal, its digest and rules checkpoints, and the node's snapshots
    (`progress(records)` after each batch replayed, for a progress bar)."""
    journal_directory = os.fspath(journal_directory)
    report = VerifyReport(journal_directory)
    findings = report.findings
    replay_to: Optional[int] = None
    try:
        recovery = journal.recover(journal_directory, repair=False, full_scan=True)
        report.first_sequence = recovery.first_sequence
        replay_to = recovery.last_sequence
        if recovery.torn is not None:
            torn = recovery.torn
            findings.append(Finding(
                "JOURNAL_TORN",
                f"{torn.segment_path} at byte offset {torn.offset}: {torn.reason} "
                f"({torn.bytes_cut} bytes after sequence {recovery.last_sequence}; `twinbook journal repair` cuts them)",
            ))
    except journal.JournalCorruptError as error:
        findings.append(Finding("JOURNAL_CORRUPT", str(error)))
    snapshot_infos = _verified_snapshot_infos(data_directory, journal_directory, findings)
    if report.first_sequence is not None and report.first_sequence > 1:
        findings.append(Finding(
            "NOT_VERIFIED",
            f"the journal starts at sequence {report.first_sequence} (earlier segments archived): "
            "nothing can be replayed from the beginning",
        ))
        return report
    _replay_and_check(journal_directory, replay_to, snapshot_infos, data_directory, report, progress)
    return report


def _verified_snapshot_infos(
    data_directory: Optional[DataDirectory], journal_directory: str, findings: list
) -> dict:
    """sequence -> SnapshotInfo of the snapshots that pass the store's own check."""
    if data_directory is None or not data_directory.has_snapshots():
        return {}
    if os.path.realpath(data_directory.journal) != os.path.realpath(journal_directory):
        return {}
    infos = {}
    try:
        store = snapshots.SnapshotStore(data_directory.snapshots, readonly=True)
    except snapshots.SnapshotError as error:
        findings.append(Finding("SNAPSHOT_STORE_UNREADABLE", str(error)))
        return infos
    try:
        for verdict in reversed(store.check()):
            if not verdict.good:
                findings.append(Finding("SNAPSHOT_CORRUPT", f"{data_directory.snapshots}: {verdict.reason}", verdict.sequence))
                continue
            info = verdict.info
            if info.format_version != STATE_FORMAT_VERSION:
                findings.append(Finding(
                    "NOT_VERIFIED",
                    f"snapshot in state format {info.format_version}; this build reads {STATE_FORMAT_VERSION}",
                    info.sequence,
                ))
                continue
            infos[info.sequence] = info
    finally:
        store.close()
    return infos


def _replay_and_check(
    journal_directory: str,
    replay_to: Optional[int],
    snapshot_infos: dict,
    data_directory: Optional[DataDirectory],
    report: VerifyReport,
    progress: Optional[ProgressCallback] = None,
) -> None:
    findings = report.findings
    exchange = Exchange()
    apply = exchange.apply
    pending_snapshots = sorted(snapshot_infos)
    next_snapshot = pending_snapshots.pop(0) if pending_snapshots else None
    stopped = False
    try:
        for batch in journal.read_record_batches(journal_directory, 1, replay_to):
            if progress is not None:
                progress(len(batch))
            for sequence, _, timestamp_ns, body, chain_value in batch:
                command = decode_command(body)
                if type(command) is Checkpoint:
                    if not _check_checkpoint(exchange, sequence, command, report):
                        stopped = True
                        break
                apply(sequence, timestamp_ns, command)
                if sequence == next_snapshot:
                    _check_snapshot(exchange, snapshot_infos[sequence], chain_value, data_directory, report)
                    next_snapshot = pending_snapshots.pop(0) if pending_snapshots else None
            report.records_replayed = exchange.last_sequence
            if stopped:
                break
    except journal.JournalCorruptError as error:
        if not any(finding.kind == "JOURNAL_CORRUPT" for finding in findings):
            findings.append(Finding("JOURNAL_CORRUPT", str(error)))
    report.last_sequence = exchange.last_sequence
    report.records_replayed = exchange.last_sequence
    report.state_digest = exchange.state_digest()
    report.canonical_digest = canonical_digest(exchange)
    unchecked = ([next_snapshot] if next_snapshot is not None else []) + pending_snapshots
    for sequence in unchecked:
        if replay_to is not None and sequence > replay_to and not stopped:
            reason = f"beyond the end of the journal ({replay_to})"
        else:
            reason = f"not verified: the replay stopped at sequence {exchange.last_sequence}"
        findings.append(Finding("SNAPSHOT_UNVERIFIED", reason, sequence))


def _check_checkpoint(exchange: Exchange, sequence: int, command: Checkpoint, report: VerifyReport) -> bool:
    """Check a digest or rules checkpoint; False when the replay cannot go on."""
    if command.kind == "digest":
        replayed = exchange.state_digest()
        if command.digest != replayed:
            announced = "none" if command.digest is None else f"{command.digest:#018x}"
            report.findings.append(Finding(
                "DIGEST_MISMATCH",
                f"the checkpoint announces state digest {announced} for the state after sequence "
                f"{sequence - 1}; the replay gives {replayed:#018x}",
                sequence,
            ))
        else:
            report.digest_checkpoints_verified += 1
    elif command.kind == "rules":
        report.rules_checkpoints_seen += 1
        if command.version not in REPLAYABLE_RULES_VERSIONS:
            report.findings.append(Finding("RULES_VERSION", str(RulesVersionError(sequence, command.version)), sequence))
            return False
    return True


def _check_snapshot(
    exchange: Exchange, info, journal_chain_value: int, data_directory: DataDirectory, report: VerifyReport
) -> None:
    sequence = info.sequence
    good = True
    if info.chain_value != journal_chain_value:
        good = False
        report.findings.append(Finding(
            "SNAPSHOT_CHAIN_MISMATCH",
            f"stored chain value {info.chain_value:#010x}, the journal's is {journal_chain_value:#010x} "
            "(the snapshot belongs to another history)",
            sequence,
        ))
    replayed = canonical_digest(exchange)
    if replayed != info.digest:
        good = False
        report.findings.append(Finding(
            "SNAPSHOT_STATE_MISMATCH",
            f"stored digest {info.digest.hex()}, the replayed state's canonical digest is "
            f"{replayed.hex()}{_stored_state_detail(data_directory, sequence)}",
            sequence,
        ))
    if good:
        report.snapshots_verified.append(sequence)


def _stored_state_detail(data_directory: DataDirectory, sequence: int) -> str:
    """What the stored state is, when it is not the replayed one (best effort)."""
    store = snapshots.SnapshotStore(data_directory.snapshots, readonly=True)
    try:
        _, state_bytes = store.read(sequence)
        stored = decode_state(state_bytes)
    except (snapshots.SnapshotError, SnapshotFormatError) as error:
        return f" (stored state unreadable: {error})"
    finally:
        store.close()
    if stored.last_sequence != sequence:
        return f" (the stored state is at sequence {stored.last_sequence})"
    return " (the stored state is at the right sequence but holds other content)"


