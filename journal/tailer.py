"""The tailer: follow a journal that a writer (maybe in another process) appends to.

`Tailer(directory, from_sequence).poll(max_records)` returns the verified records
appended since the previous poll, never blocking. It keeps one segment open with a
cursor (byte offset plus chain state), so each poll reads only the new bytes.

What it sees at the end of what is written:
  * nothing new: it returns what it has; if the file after its segment exists (named
    for the next sequence, i.e. the writer rolled) it verifies that header against
    the chain and moves on;
  * an incomplete frame, or a frame whose crc fails: "not written yet". The writer
    may be half way through a write, or it crashed and recovery will cut the tail. The
    tailer returns nothing past it and tries again at the next poll; it never skips.
  * It raises JournalCorruptError when such a frame cannot be a write in progress:
    when a complete frame fails and more bytes have been appended after it since it
    was first seen (the kernel extends a file's size only after copying the bytes in,
    and the writer never rewrites, so a complete bad frame followed by growth is
    damage; an incomplete one may just be growing), or when a later
    segment exists (the writer finishes writing a segment before creating the
    next). Before deciding, it re-reads the segment once, since the writer may have
    finished it between the two looks.
  * It raises JournalError when its segment was cut below its position or removed
    (a truncate_after on the journal under it): what it returned is no longer what
    the journal holds, and the caller has to start over.
"""

from __future__ import annotations

import os

from journal.cursor import ADVANCE_COUNT, ADVANCE_END, ADVANCE_STOPPED, SegmentCursor
from journal.errors import JournalError, JournalFrameError, JournalNotFoundError, JournalSequenceRangeError, JournalUsageError
from journal.format import SEGMENT_HEADER_SIZE_BYTES, U64_MAX
from journal.frames import FRAME_BAD, decode_records, verify_run
from journal.record import Record
from journal.segment import SegmentFile, list_segments, segment_index_for, segment_path

POLL_RECORDS_MAX = 65_536


class Tailer:
    """Follows a journal from `from_sequence`, one poll at a time."""

    def __init__(self, directory: str | os.PathLike, from_sequence: int = 1, *, cluster_id: int | None = None) -> None:
        self._directory = os.fspath(directory)
        if type(from_sequence) is not int or not 0 <= from_sequence <= U64_MAX:
            raise JournalUsageError(self._directory, None, f"from_sequence {from_sequence!r} is not a u64")
        self._from_sequence = from_sequence
        self._cluster_id = cluster_id
        self._cursor: SegmentCursor | None = None
        # Where a bad or incomplete frame was seen, and how long the file was then.
        self._stalled_at: tuple[int, int] | None = None
        self._closed = False

    @property
    def next_sequence(self) -> int:
        """The sequence the next returned record will carry."""
        if self._cursor is None:
            return self._from_sequence
        return max(self._cursor.next_sequence, self._from_sequence)

    @property
    def chain_crc(self) -> int | None:
        """The chain value after the last record read (None before the first poll
        found a segment)."""
        return None if self._cursor is None else self._cursor.chain_crc

    def poll(self, max_records: int = 4096) -> list[Record]:
        """The records appended since the last poll, up to `max_records`."""
        if self._closed:
            raise JournalUsageError(self._directory, None, "the tailer is closed")
        if type(max_records) is not int or not 1 <= max_records <= POLL_RECORDS_MAX:
            raise JournalUsageError(self._directory, None, f"max_records {max_records!r} is not within 1..{POLL_RECORDS_MAX}")
        if self._cursor is None and not self._open_first_segment():
            return []
        records: list[Record] = []
        while len(records) < max_records:
            cursor = self._cursor
            size = self._current_size(cursor)
            status, verdict = self._advance(cursor, records, max_records, size)
            if status == ADVANCE_COUNT:
                self._stalled_at = None
                continue
            if status == ADVANCE_END:
                self._stalled_at = None
                if not self._move_to_next_segment():
                    break
                continue
            # A frame that is incomplete or does not verify, at the end of what is
            # written so far.
            if self._later_segment_exists():
                # The writer finished this segment before creating the next one; look
                # again in case it finished after our read, then judge.
                status, verdict = self._advance(cursor, records, max_records, self._current_size(cursor))
                if status != ADVANCE_STOPPED:
                    continue
                raise cursor.error_for(verdict, "and a later segment exists, so this is not a write in progress")
            # An incomplete frame may grow page by page while a large write is
            # copied in, so only a complete frame that fails is judged by growth.
            if verdict.status != FRAME_BAD:
                self._stalled_at = None
            elif self._stalled_at is not None and self._stalled_at[0] == cursor.offset:
                if size > self._stalled_at[1]:
                    raise cursor.error_for(
                        verdict, f"and the file grew from {self._stalled_at[1]} to {size} bytes after it, so this is not a write in progress"
                    )
            else:
                self._stalled_at = (cursor.offset, size)
            break
        return records

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        self._closed = True

    def __enter__(self) -> "Tailer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _advance(self, cursor: SegmentCursor, records: list[Record], max_records: int, size: int):
        """Verify up to `from_sequence` without keeping records, then decode."""
        if cursor.next_sequence < self._from_sequence:
            return cursor.advance(verify_run, self._from_sequence - cursor.next_sequence, None, size)
        return cursor.advance(decode_records, max_records - len(records), records, size)

    def _current_size(self, cursor: SegmentCursor) -> int:
        stat = os.fstat(cursor.fd)
        if stat.st_nlink == 0:
            raise JournalError(cursor.path, cursor.offset, "segment file was removed under the tailer (journal truncated?)")
        if stat.st_size < cursor.offset:
            raise JournalError(cursor.path, cursor.offset, f"segment was cut to {stat.st_size} bytes, below the tailer's position")
        return stat.st_size

    def _open_first_segment(self) -> bool:
        segments = list_segments(self._directory)
        if not segments:
            return False
        index = segment_index_for(segments, self._from_sequence)
        if index < 0:
            if self._from_sequence > 0:
                raise JournalSequenceRangeError(
                    self._directory, None, f"sequence {self._from_sequence} precedes the first segment, which starts at {segments[0].first_sequence}"
                )
            index = 0
        try:
            self._cursor = SegmentCursor.open(segments[index], cluster_id=self._cluster_id, continues=None)
        except JournalFrameError as error:
            if error.offset is not None and error.offset < SEGMENT_HEADER_SIZE_BYTES and index == len(segments) - 1:
                return False  # its header is being written; look again next poll
            raise
        self._cluster_id = self._cursor.header.cluster_id
        return True

    def _next_segment_exists(self) -> bool:
        cursor = self._cursor
        # A segment without records has no successor: the writer rolls only after
        # writing at least one record (and the name would be this segment's own).
        if cursor.next_sequence == cursor.header.first_sequence:
            return False
        return os.path.exists(segment_path(self._directory, cursor.next_sequence))

    def _later_segment_exists(self) -> bool:
        """Whether any segment after the current one exists (whatever its name: a bad
        frame may sit where the last record of this segment should be)."""
        first_sequence = self._cursor.header.first_sequence
        return any(segment.first_sequence > first_sequence for segment in list_segments(self._directory))

    def _move_to_next_segment(self) -> bool:
        """At the end of the current segment: switch to the next one if the writer
        has created it. False when there is nothing to switch to (yet)."""
        if not self._next_segment_exists():
            return False
        cursor = self._cursor
        following = segment_path(self._directory, cursor.next_sequence)
        # The writer creates the next segment only after finishing this one; if this
        # one grew since we read it, read on here first.
        if self._current_size(cursor) > cursor.offset:
            return True
        try:
            successor = SegmentCursor.open(SegmentFile(following, cursor.next_sequence), cluster_id=self._cluster_id, continues=cursor.state())
        except JournalNotFoundError:
            return False
        except JournalFrameError as error:
            if error.offset is not None and error.offset < SEGMENT_HEADER_SIZE_BYTES:
                return False  # created, header not complete yet
            raise
        cursor.close()
        self._cursor = successor
        return True
