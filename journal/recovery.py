"""Recovery: verify a journal after a crash and classify its tail as clean, torn or corrupt.

A crash can leave the end of the journal half written. A write that was cut leaves
the last segment ending in a partial record, in a record whose crc fails, or in zero
bytes where the file was extended but the data never landed; a crash while a segment
was being created leaves a last segment shorter than its header. None of those bytes
was ever reported durable (a commit returns only after its fdatasync), so cutting
them loses nothing that was acknowledged. Recovery cuts them, after first appending
them to `<segment file>.torn` (fsync'd), so the evidence outlives the repair. A tail is
cut only when two scans agree on it, so that a read error of the moment cannot pass
for a torn record (the two disagreeing raise a JournalIOError and cut nothing).

Damage anywhere else is corruption, and recovery refuses with a JournalCorruptError
naming the segment file, the byte offset and the reason: a bad frame in any segment but
the last, a header that does not verify or does not continue the chain, a sequence
gap, an epoch going backwards, a frame whose crc verifies but whose sequence or epoch
is wrong. Telling a torn tail from a damaged record near the end is the delicate part:
the first bad frame is torn only if no verifiable record follows it anywhere, and
frames.find_valid_record_after searches for one with every seed a single damaged field
could have left usable (see there). A bad record followed by good ones is never cut.

Rolling to a new segment fdatasyncs the old one first (see writer.py), so only the last
segment can hold unsynced bytes, and a torn tail can only be there.

By default every segment is verified from its header (`full_scan=True`). With
`full_scan=False` only the last two segments are scanned record by record; the others
get their headers verified, and their chain is then verified by whoever replays them.

`recover(repair=True)` takes the journal's writer lock, so it cannot cut bytes under a
live writer; `repair=False` only reports and takes no lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from journal.cursor import ADVANCE_STOPPED, SegmentCursor
from journal.errors import (
    JournalCorruptError,
    JournalEpochError,
    JournalFrameError,
    JournalHeaderError,
    JournalIOError,
    JournalSequenceError,
)
from journal.format import RECORD_HEAD, SEGMENT_FILE_SIZE_BYTES_MAX, SEGMENT_HEADER_SIZE_BYTES, U64_MAX, SegmentHeader
from journal.frames import FRAME_SHORT, find_valid_record_after, verify_run
from journal.segment import (
    SegmentFile,
    copy_range_to_evidence,
    cut_file,
    fsync_directory,
    io_error,
    list_segments,
    lock_directory,
    move_segment_to_evidence,
    open_for_reading,
    read_at,
)

STATE_CLEAN = "clean"
STATE_TORN = "torn"
STATE_EMPTY = "empty"
STATE_CORRUPT = "corrupt"  # only ever reported by inspect(); recover() raises instead

TORN_SUFFIX = ".torn"


@dataclass(frozen=True)
class SegmentSummary:
    """What a scan found in one segment file."""

    path: str
    first_sequence: int
    last_sequence: int  # first_sequence - 1 when the segment holds no record
    record_count: int
    size_bytes: int  # file size as found
    valid_size_bytes: int  # up to the end of the last valid record
    cluster_id: int
    header_epoch: int
    first_epoch: int | None  # epoch of the first record, None without records or scan
    last_epoch: int | None  # epoch of the last record, None without records or scan
    chain_in_crc: int
    last_crc: int  # the chain value after the last record (chain_in_crc if none)
    verified: bool  # every record was checked (False: header only, full_scan=False)
    tail_state: str  # STATE_CLEAN, STATE_TORN or STATE_CORRUPT for this file


@dataclass(frozen=True)
class TornTail:
    """The bytes recovery cuts (or would cut) from the end of the last segment."""

    segment_path: str
    offset: int  # first byte cut; 0 when the whole (header-less) file goes
    size_bytes: int  # the file size before the cut
    reason: str
    whole_segment: bool

    @property
    def bytes_cut(self) -> int:
        return self.size_bytes - self.offset


@dataclass(frozen=True)
class RecoveryReport:
    """The result of recovery: the state found, where the journal ends, what was cut."""

    directory: str
    state: str  # STATE_CLEAN, STATE_TORN or STATE_EMPTY
    cluster_id: int | None  # None when the journal has no segment left
    first_sequence: int | None  # of the first segment, None without segments
    last_sequence: int  # 0 without segments; first_sequence - 1 without records
    last_crc: int  # the chain value to continue from
    last_epoch: int  # the highest epoch of any header or record
    segments: tuple[SegmentSummary, ...]  # as they are after the repair (if any)
    torn: TornTail | None = None
    torn_path: str | None = None  # the evidence file written, None with repair=False
    repaired: bool = False
    full_scan: bool = True

    @property
    def bytes_cut(self) -> int:
        return 0 if self.torn is None else self.torn.bytes_cut


@dataclass
class ScanResult:
    """Everything a scan learned, including a corruption it stopped at (not raised)."""

    directory: str
    segments: list[SegmentSummary] = field(default_factory=list)
    torn: TornTail | None = None
    error: JournalCorruptError | None = None
    last_state: tuple[int, int, int] | None = None  # (next_sequence, chain_crc, epoch_min)
    cluster_id: int | None = None
    first_sequence: int | None = None


def _is_torn_header(path: str, size: int) -> bool:
    """A last segment shorter than its header, or a header of zero bytes only: what a
    crash while the segment was being created leaves behind."""
    if size < SEGMENT_HEADER_SIZE_BYTES:
        return True
    if size > SEGMENT_HEADER_SIZE_BYTES:
        return False
    fd = open_for_reading(path)
    try:
        return read_at(fd, path, SEGMENT_HEADER_SIZE_BYTES, 0) == bytes(SEGMENT_HEADER_SIZE_BYTES)
    finally:
        os.close(fd)


def _first_epoch(cursor: SegmentCursor, record_count: int) -> int | None:
    if record_count == 0:
        return None
    head = read_at(cursor.fd, cursor.path, RECORD_HEAD.size, SEGMENT_HEADER_SIZE_BYTES)
    return RECORD_HEAD.unpack_from(head, 0)[3]


def scan_journal(directory: str, *, cluster_id: int | None = None, full_scan: bool = True) -> ScanResult:
    """Verify a journal and classify its tail, without changing anything.

    A corruption stops the scan and is returned in `error` (not raised), with the
    summaries of the segments before it; I/O errors are raised.
    """
    result = ScanResult(directory)
    segments = list_segments(directory)
    if not segments:
        return result
    last = segments[-1]
    try:
        last_size = os.stat(last.path).st_size
    except OSError as error:
        raise io_error(last.path, "stat", error) from error
    scanned = segments
    if _is_torn_header(last.path, last_size):
        scanned = segments[:-1]
        result.torn = TornTail(last.path, 0, last_size, "segment header cut short or never written (crash while the segment was created)", True)
    full_from = 0 if full_scan else max(0, len(scanned) - 2)
    continues: tuple[int, int, int] | None = None
    previous_header: SegmentHeader | None = None
    expected_cluster = cluster_id
    try:
        for index, segment in enumerate(scanned):
            cursor = SegmentCursor.open(segment, cluster_id=expected_cluster, continues=continues)
            try:
                header = cursor.header
                expected_cluster = header.cluster_id
                if result.cluster_id is None:
                    result.cluster_id = header.cluster_id
                    result.first_sequence = header.first_sequence
                if previous_header is not None and continues is None and header.epoch < previous_header.epoch:
                    raise JournalEpochError(segment.path, 24, f"segment epoch {header.epoch} is below the previous segment's {previous_header.epoch}")
                previous_header = header
                size = cursor.size()
                if size > SEGMENT_FILE_SIZE_BYTES_MAX:
                    raise JournalFrameError(segment.path, SEGMENT_FILE_SIZE_BYTES_MAX, f"segment file of {size} bytes is larger than any writer writes")
                if index < full_from:
                    # Header-only check: what the next header says this segment ends with.
                    following = scanned[index + 1]
                    result.segments.append(
                        SegmentSummary(
                            segment.path, header.first_sequence, following.first_sequence - 1, following.first_sequence - header.first_sequence,
                            size, size, header.cluster_id, header.epoch, None, None, header.chain_in_crc, _chain_in_of(following, expected_cluster),
                            False, STATE_CLEAN,
                        )
                    )
                    continue
                status, verdict = cursor.advance(verify_run, U64_MAX, None, size)
                tail_state = STATE_CLEAN
                is_last = segment is last
                if status == ADVANCE_STOPPED:
                    if not is_last:
                        later = "later segments follow" if index + 1 < len(scanned) else "a later segment file exists"
                        raise cursor.error_for(verdict, f"in a segment that is not the last one ({later}), so this is not a torn tail")
                    if verdict.error_type in (JournalSequenceError, JournalEpochError):
                        raise cursor.error_for(verdict, "the record's crc verifies, so this is not a torn tail")
                    rest = read_at(cursor.fd, cursor.path, size - cursor.offset, cursor.offset)
                    evidence = find_valid_record_after(rest, 0, cursor.next_sequence, cursor.chain_crc, verdict)
                    if evidence is not None:
                        raise cursor.error_for(verdict, f"not a torn tail: {evidence} (offsets relative to {cursor.offset})")
                    kind = "partial record" if verdict.status == FRAME_SHORT else "record that does not verify, with nothing valid after it"
                    result.torn = TornTail(segment.path, cursor.offset, size, f"{kind}: {verdict.reason}", False)
                    tail_state = STATE_TORN
                record_count = cursor.next_sequence - header.first_sequence
                result.segments.append(
                    SegmentSummary(
                        segment.path, header.first_sequence, cursor.next_sequence - 1, record_count, size, cursor.offset, header.cluster_id,
                        header.epoch, _first_epoch(cursor, record_count), cursor.epoch_min if record_count else None, header.chain_in_crc,
                        cursor.chain_crc, True, tail_state,
                    )
                )
                continues = cursor.state()
                result.last_state = continues
            finally:
                cursor.close()
    except JournalCorruptError as error:
        result.error = error
        return result
    if scanned and result.last_state is None:
        raise JournalCorruptError(directory, None, "internal: scan ended without a chain state")  # pragma: no cover
    if result.torn is not None and result.torn.whole_segment and scanned:
        # The torn segment's name must still be the sequence after the one before it;
        # anything else is not what a crash during a roll leaves.
        if last.first_sequence != result.last_state[0]:
            result.error = JournalHeaderError(
                last.path, 0, f"header-less segment named for sequence {last.first_sequence}, but the journal ends before {result.last_state[0]}"
            )
    return result


def _chain_in_of(segment: SegmentFile, cluster_id: int | None) -> int:
    cursor = SegmentCursor.open(segment, cluster_id=cluster_id, continues=None)
    try:
        return cursor.header.chain_in_crc
    finally:
        cursor.close()


def recover(
    directory: str | os.PathLike,
    *,
    repair: bool = True,
    cluster_id: int | None = None,
    full_scan: bool = True,
) -> RecoveryReport:
    """Verify a journal and deal with its tail: clean, torn (cut when `repair`), or
    corrupt (raises JournalCorruptError naming segment file, offset and reason).

    With `repair=True` this takes the journal's writer lock (JournalLockedError if a
    writer holds it). `cluster_id`, when given, must match every segment header.
    """
    path = os.fspath(directory)
    if not repair:
        return _recover(path, repair=False, cluster_id=cluster_id, full_scan=full_scan)
    lock_fd = lock_directory(path)
    try:
        return _recover(path, repair=True, cluster_id=cluster_id, full_scan=full_scan)
    finally:
        os.close(lock_fd)


def recover_locked(directory: str, *, cluster_id: int | None, full_scan: bool) -> RecoveryReport:
    """recover(repair=True) for a caller that already holds the writer lock."""
    return _recover(directory, repair=True, cluster_id=cluster_id, full_scan=full_scan)


def _recover(directory: str, *, repair: bool, cluster_id: int | None, full_scan: bool) -> RecoveryReport:
    scan = scan_journal(directory, cluster_id=cluster_id, full_scan=full_scan)
    if scan.error is not None:
        raise scan.error
    if scan.torn is not None and repair:
        # Bytes are cut only on a verdict two reads agree on: a read error of the moment
        # (a bad page, a bus error) can make the last whole record fail its check, and
        # taking that for a torn tail would cut a durable record (the simulator's read
        # faults). A second scan that sees something else means the reads themselves
        # cannot be trusted, which is an operating fault, not a reason to cut.
        again = scan_journal(directory, cluster_id=cluster_id, full_scan=full_scan)
        if again.error is not None:
            raise again.error
        if again.torn != scan.torn or again.last_state != scan.last_state:
            raise JournalIOError(
                scan.torn.segment_path, scan.torn.offset,
                "two reads of the tail disagree (" + (f"first: {scan.torn.reason}; second: "
                + (again.torn.reason if again.torn is not None else "clean") + "): a read error, nothing cut"),
            )
    if scan.cluster_id is None and scan.torn is None:
        return RecoveryReport(directory, STATE_EMPTY, None, None, 0, 0, 0, (), full_scan=full_scan)
    torn = scan.torn
    segments = list(scan.segments)
    torn_path = None
    if torn is not None and repair:
        torn_path = torn.segment_path + TORN_SUFFIX
        if torn.whole_segment:
            move_segment_to_evidence(SegmentFile(torn.segment_path, 0), torn_path)
        else:
            _cut_torn_tail(torn, torn_path)
            segments[-1] = _after_cut(segments[-1], torn.offset)
    if scan.last_state is None:
        # The only segment was a torn header: nothing of the journal remains.
        return RecoveryReport(
            directory, STATE_TORN, None, None, 0, 0, 0, (), torn=torn, torn_path=torn_path, repaired=repair, full_scan=full_scan
        )
    next_sequence, chain_crc, epoch_min = scan.last_state
    return RecoveryReport(
        directory,
        STATE_TORN if torn is not None else STATE_CLEAN,
        scan.cluster_id,
        scan.first_sequence,
        next_sequence - 1,
        chain_crc,
        epoch_min,
        tuple(segments),
        torn=torn,
        torn_path=torn_path,
        repaired=repair and torn is not None,
        full_scan=full_scan,
    )


def _cut_torn_tail(torn: TornTail, torn_path: str) -> None:
    fd = _open_read_write(torn.segment_path)
    try:
        # Evidence first: if we crash after this, the next recovery finds the same
        # tail and appends it again, which duplicates evidence but loses none.
        copy_range_to_evidence(fd, torn.segment_path, torn.offset, torn.size_bytes, torn_path)
        cut_file(fd, torn.segment_path, torn.offset)
    finally:
        os.close(fd)
    fsync_directory(os.path.dirname(torn.segment_path))


def _open_read_write(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise io_error(path, "open for repair", error) from error


def _after_cut(summary: SegmentSummary, offset: int) -> SegmentSummary:
    return SegmentSummary(
        summary.path, summary.first_sequence, summary.last_sequence, summary.record_count, offset, offset, summary.cluster_id,
        summary.header_epoch, summary.first_epoch, summary.last_epoch, summary.chain_in_crc, summary.last_crc, summary.verified, STATE_CLEAN,
    )
