"""Reading a journal: records, bulk tuples, and raw frames for replication.

All readers work the same way. The segment holding `from_sequence` is found by
bisecting the first sequences in the file names. Reading starts at that segment's
first record, not at `from_sequence`: the crc chain can only be verified from a point
whose chain value is known, and the segment header's chain-in is the nearest such
point. Records before `from_sequence` are verified without being decoded (the cheap
loop), then records are decoded in batches; every following segment's header must
continue the chain (first sequence, chain-in, cluster id, epoch).

Readers are strict: any frame that does not verify raises a JournalCorruptError naming
the segment file and offset, including an incomplete last record (a torn tail: run
recovery first, as JournalWriter.open does). With `live=True` a frame cut short by the
end of the last segment instead ends the iteration quietly, because a reader that
races a writer may see a batch half written; it never reads past it. A frame that is
whole but fails its check is corruption even for a live reader, and raises: the file
grows only after its bytes are in place and the writer never writes zeros ahead, so
a race cannot make one (the simulator's read faults found live reads that took a
flipped bit for the end of the journal).

The readers hold one segment open at a time and read it in chunks of
READ_CHUNK_SIZE_BYTES, so memory stays bounded whatever the journal's size.

Which reader to use:
  * read_records: Record objects (with each record's crc), for general use;
  * read_tuple_batches / read_tuples: plain (sequence, epoch, timestamp_ns, body)
    tuples in lists, the fast path for replay and bulk decode;
  * read_frames: byte strings of whole, verified frames exactly as on disk, for
    replication catch-up (the standby feeds them to JournalWriter.append_frames).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from journal.cursor import ADVANCE_COUNT, ADVANCE_END, ADVANCE_LIMIT, ADVANCE_STOPPED, SegmentCursor
from journal.errors import JournalFrameError, JournalSequenceRangeError, JournalUsageError
from journal.format import FRAME_SIZE_BYTES_MAX, U64_MAX
from journal.frames import FRAME_SHORT, FrameVerdict, decode_records, decode_tuples, verify_run
from journal.record import Record
from journal.segment import list_segments, read_at, segment_index_for

# Records decoded per list yielded by the batch readers: large enough that the
# per-batch overhead vanishes, small enough that a batch stays in the CPU cache.
DECODE_BATCH_RECORDS = 4096
# The default upper bound of one read_frames batch (a single larger frame travels alone).
FRAMES_BATCH_SIZE_BYTES_DEFAULT = 1024 * 1024


def _live_end(live: bool, is_last: bool, verdict: FrameVerdict) -> bool:
    """Whether a live reader stops quietly at this bad frame (see the module docstring)."""
    return live and is_last and verdict.status == FRAME_SHORT


def _check_range(directory: str, from_sequence: int, to_sequence: int | None) -> int:
    if type(from_sequence) is not int or not 0 <= from_sequence <= U64_MAX:
        raise JournalUsageError(directory, None, f"from_sequence {from_sequence!r} is not a u64")
    if to_sequence is None:
        return U64_MAX
    if type(to_sequence) is not int or not 0 <= to_sequence <= U64_MAX:
        raise JournalUsageError(directory, None, f"to_sequence {to_sequence!r} is not a u64")
    return to_sequence


def _walk(
    directory: str | os.PathLike,
    from_sequence: int,
    to_sequence: int | None,
    live: bool,
    visit: Callable[[SegmentCursor, int, bool, int], Iterator],
    cluster_id: int | None = None,
) -> Iterator:
    """Open the segments from the one holding `from_sequence`, skip (verifying) to
    it, and let `visit(cursor, size, is_last, to_sequence)` produce the output of each
    segment. `visit` must leave the cursor at the end of its segment or at
    `to_sequence + 1`, and return True when the walk must stop there (a live reader
    at a frame not yet written)."""
    directory = os.fspath(directory)
    last_wanted = _check_range(directory, from_sequence, to_sequence)
    segments = list_segments(directory)
    if not segments or from_sequence > last_wanted:
        return
    index = segment_index_for(segments, from_sequence)
    if index < 0:
        if from_sequence == 0:
            index = 0
        else:
            raise JournalSequenceRangeError(
                directory, None, f"sequence {from_sequence} precedes the first segment, which starts at {segments[0].first_sequence}"
            )
    continues = None
    for position in range(index, len(segments)):
        cursor = SegmentCursor.open(segments[position], cluster_id=cluster_id, continues=continues)
        try:
            cluster_id = cursor.header.cluster_id
            is_last = position == len(segments) - 1
            size = cursor.size()
            if cursor.next_sequence < from_sequence:
                status, verdict = cursor.advance(verify_run, from_sequence - cursor.next_sequence, None, size)
                if status == ADVANCE_STOPPED:
                    if _live_end(live, is_last, verdict):
                        return
                    raise cursor.error_for(verdict)
            if cursor.next_sequence <= last_wanted:
                stop = yield from visit(cursor, size, is_last, last_wanted)
                if stop:
                    return
            if cursor.next_sequence > last_wanted:
                return
            continues = cursor.state()
        finally:
            cursor.close()


def _decoding_visitor(run, batch_records: int, live: bool):
    def visit(cursor: SegmentCursor, size: int, is_last: bool, last_wanted: int) -> Iterator[list]:
        while True:
            count = min(batch_records, last_wanted - cursor.next_sequence + 1)
            if count <= 0:
                return False
            out: list = []
            status, verdict = cursor.advance(run, count, out, size)
            if out:
                yield out
            if status == ADVANCE_COUNT:
                continue
            if status == ADVANCE_END:
                return False
            if _live_end(live, is_last, verdict):
                # A live reader treats a frame cut short at the very end as "not yet
                # written" and stops there; the next read starts again before it.
                return True
            raise cursor.error_for(verdict)

    return visit


def read_record_batches(
    directory: str | os.PathLike, from_sequence: int = 1, to_sequence: int | None = None, *, live: bool = False
) -> Iterator[list[Record]]:
    """Verified Records from `from_sequence` to `to_sequence` (inclusive; None: to the
    end), in lists of up to DECODE_BATCH_RECORDS."""
    return _walk(directory, from_sequence, to_sequence, live, _decoding_visitor(decode_records, DECODE_BATCH_RECORDS, live))


def read_records(
    directory: str | os.PathLike, from_sequence: int = 1, to_sequence: int | None = None, *, live: bool = False
) -> Iterator[Record]:
    """Verified Records from `from_sequence` to `to_sequence` (inclusive; None: to the end).

    Raises JournalCorruptError (naming segment file and offset) on any frame that does
    not verify, and JournalSequenceRangeError when `from_sequence` precedes the first
    segment (archived). A `from_sequence` past the end yields nothing.
    """
    for batch in read_record_batches(directory, from_sequence, to_sequence, live=live):
        yield from batch


def read_tuple_batches(
    directory: str | os.PathLike, from_sequence: int = 1, to_sequence: int | None = None, *, live: bool = False
) -> Iterator[list[tuple[int, int, int, bytes]]]:
    """The fast path: lists of verified (sequence, epoch, timestamp_ns, body) tuples."""
    return _walk(directory, from_sequence, to_sequence, live, _decoding_visitor(decode_tuples, DECODE_BATCH_RECORDS, live))


def read_tuples(
    directory: str | os.PathLike, from_sequence: int = 1, to_sequence: int | None = None, *, live: bool = False
) -> Iterator[tuple[int, int, int, bytes]]:
    """Verified (sequence, epoch, timestamp_ns, body) tuples, one at a time."""
    for batch in read_tuple_batches(directory, from_sequence, to_sequence, live=live):
        yield from batch


def read_frames(
    directory: str | os.PathLike,
    from_sequence: int = 1,
    to_sequence: int | None = None,
    *,
    batch_size_bytes_max: int = FRAMES_BATCH_SIZE_BYTES_DEFAULT,
    live: bool = False,
) -> Iterator[bytes]:
    """Whole, verified frames from `from_sequence` on, exactly as on disk, in byte
    strings of at most `batch_size_bytes_max` (a single larger frame comes alone).

    A batch never spans two segments. The frames carry their chained crcs, so the
    receiver verifies them against its own chain (JournalWriter.append_frames).
    """
    path = os.fspath(directory)
    if type(batch_size_bytes_max) is not int or not 1 <= batch_size_bytes_max <= 64 * FRAME_SIZE_BYTES_MAX:
        raise JournalUsageError(path, None, f"batch_size_bytes_max {batch_size_bytes_max!r} is out of range")

    def visit(cursor: SegmentCursor, size: int, is_last: bool, last_wanted: int) -> Iterator[bytes]:
        while cursor.next_sequence <= last_wanted:
            start = cursor.offset
            count = last_wanted - cursor.next_sequence + 1
            status, verdict = cursor.advance(verify_run, count, None, size, start + batch_size_bytes_max)
            if status == ADVANCE_LIMIT and cursor.offset == start:
                # The next frame alone is larger than a batch: it travels alone.
                status, verdict = cursor.advance(verify_run, 1, None, size)
            if cursor.offset > start:
                frames = read_at(cursor.fd, cursor.path, cursor.offset - start, start)
                if len(frames) != cursor.offset - start:
                    raise JournalFrameError(cursor.path, start + len(frames), "segment shrank while its frames were being read")
                yield frames
            if status in (ADVANCE_COUNT, ADVANCE_LIMIT):
                continue
            if status == ADVANCE_END:
                return False
            if _live_end(live, is_last, verdict):
                return True
            raise cursor.error_for(verdict)

    return _walk(path, from_sequence, to_sequence, live, visit)
