"""Recovery: a node's exchange rebuilt from its newest good snapshot plus the journal.

Steps, each of which can only narrow what is trusted, never guess:

1. The journal's tail is classified (journal.recover): a torn tail from a crash is cut
   (and kept aside as `.torn` evidence), corruption in the middle stops recovery with the
   journal's own error naming segment and offset.
2. Snapshots are tried newest first. One is used only if the store verifies its bytes
   against its digest, its format version is this build's, it is not beyond the end of
   the journal, the journal's chain value at its sequence equals the one recorded with it
   (so the snapshot belongs to this journal's history, not to a cut divergent tail), and
   it decodes to a state at exactly its sequence. Every rejected snapshot is reported
   with its reason; if none passes, recovery replays the whole journal.
3. The journal records after the snapshot are replayed through the state machine.

Journal segments are never deleted here: the journal is the audit trail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import journal
import snapshots
from replica.data_directory import DataDirectory
from statemachine import STATE_FORMAT_VERSION, Exchange, SnapshotFormatError, decode_state
from statemachine.codec import decode_commands

# Called for every replayed record with (sequence, epoch, timestamp_ns, events).
EventSink = Callable[[int, int, int, list], None]


@dataclass
class RecoveryResult:
    exchange: Exchange
    journal_report: journal.RecoveryReport
    snapshot_sequence: int = 0
    skipped_snapshots: list[tuple[int, str]] = field(default_factory=list)
    replayed_records: int = 0

    @property
    def last_sequence(self) -> int:
        return self.exchange.last_sequence


def chain_value_at(journal_directory: str, sequence: int) -> int:
    """The journal's chain value (the record's CRC) at `sequence`; 0 before the first."""
    if sequence == 0:
        return 0
    for record in journal.read_records(journal_directory, sequence, sequence):
        return record.crc
    raise journal.JournalSequenceRangeError(journal_directory, None, f"sequence {sequence} is beyond the journal")


def load_newest_snapshot(
    directory: DataDirectory, journal_last_sequence: int, *, book_updates: bool = False
) -> tuple[Optional[Exchange], int, list[tuple[int, str]]]:
    """(exchange or None, its sequence, skipped [(sequence, reason)]) from the snapshots."""
    skipped: list[tuple[int, str]] = []
    if not directory.has_snapshots():
        return None, 0, skipped
    store = snapshots.SnapshotStore(directory.snapshots, readonly=True)
    try:
        try:
            infos = store.list()
        except snapshots.SnapshotCorruptError as error:
            skipped.append((0, f"snapshot metadata unreadable: {error}"))
            return None, 0, skipped
        for info in infos:
            sequence = info.sequence
            if sequence > journal_last_sequence:
                skipped.append((sequence, f"beyond the end of the journal ({journal_last_sequence})"))
                continue
            if info.format_version != STATE_FORMAT_VERSION:
                skipped.append((sequence, f"state format {info.format_version}, this build reads {STATE_FORMAT_VERSION}"))
                continue
            try:
                _, state_bytes = store.read(sequence)
            except snapshots.SnapshotError as error:
                skipped.append((sequence, str(error)))
                continue
            try:
                journal_chain = chain_value_at(directory.journal, sequence)
            except journal.JournalError as error:
                skipped.append((sequence, f"journal at its sequence unreadable: {error}"))
                continue
            if journal_chain != info.chain_value:
                skipped.append((
                    sequence,
                    f"chain value {info.chain_value:#010x} differs from the journal's {journal_chain:#010x}",
                ))
                continue
            try:
                exchange = decode_state(state_bytes, book_updates=book_updates)
            except SnapshotFormatError as error:
                skipped.append((sequence, str(error)))
                continue
            if exchange.last_sequence != sequence:
                skipped.append((sequence, f"state is at sequence {exchange.last_sequence}"))
                continue
            return exchange, sequence, skipped
    finally:
        store.close()
    return None, 0, skipped


def replay(
    exchange: Exchange,
    journal_directory: str,
    to_sequence: Optional[int] = None,
    on_events: Optional[EventSink] = None,
) -> int:
    """Apply the journal records after the exchange's last sequence; return how many."""
    count = 0
    apply = exchange.apply
    for batch in journal.read_tuple_batches(journal_directory, exchange.last_sequence + 1, to_sequence):
        commands = decode_commands([record[3] for record in batch])
        if on_events is None:
            for (sequence, _, timestamp_ns, _), command in zip(batch, commands):
                apply(sequence, timestamp_ns, command)
        else:
            for (sequence, epoch, timestamp_ns, _), command in zip(batch, commands):
                on_events(sequence, epoch, timestamp_ns, apply(sequence, timestamp_ns, command))
        count += len(batch)
    return count


def recover_exchange(
    root: str | os.PathLike,
    *,
    use_snapshots: bool = True,
    repair: bool = True,
    book_updates: bool = False,
    cluster_id: Optional[int] = None,
    to_sequence: Optional[int] = None,
    on_events: Optional[EventSink] = None,
) -> RecoveryResult:
    """Rebuild the exchange of the node whose data directory is `root`."""
    directory = DataDirectory.existing(root)
    report = journal.recover(directory.journal, repair=repair, cluster_id=cluster_id)
    exchange = None
    snapshot_sequence = 0
    skipped: list[tuple[int, str]] = []
    if use_snapshots:
        limit = report.last_sequence if to_sequence is None else min(to_sequence, report.last_sequence)
        exchange, snapshot_sequence, skipped = load_newest_snapshot(
            directory, limit, book_updates=book_updates
        )
    if exchange is None:
        exchange = Exchange(book_updates=book_updates)
        first = report.first_sequence
        if first is not None and first > 1:
            raise journal.JournalSequenceRangeError(
                directory.journal, None,
                f"the journal starts at sequence {first} (archived before it) and no snapshot covers it",
            )
    replayed = replay(exchange, directory.journal, to_sequence, on_events)
    return RecoveryResult(exchange, report, snapshot_sequence, skipped, replayed)
