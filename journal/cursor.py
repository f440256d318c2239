"""A position inside one open segment file, with the chain state at that position.

Readers, the tailer, recovery, inspection and truncation all walk segments the same
way, and this is that walk. A cursor is opened on a segment file with the chain state
the previous segment ended with (or, for the first segment walked, with the state its
own header declares); opening verifies the header and that it continues the chain
(first sequence, chain-in crc, cluster id, epoch). `advance` then reads the file in
chunks of READ_CHUNK_SIZE_BYTES with pread and runs one of the loops of frames.py over
each chunk, carrying the chain state across chunk boundaries. A frame cut by the end
of a chunk is read again at the start of the next chunk; because a chunk is larger
than the largest frame, every frame is seen whole once.

`advance` never raises for bad frames: it stops at the first one and returns the
verdict, and the caller decides (a reader raises, a tailer waits, recovery classifies
the tail). `error_for` builds the exception a caller raises, naming file and offset.
"""

from __future__ import annotations

import os

from journal.errors import (
    JournalChainError,
    JournalCorruptError,
    JournalEpochError,
    JournalHeaderError,
)
from journal.format import READ_CHUNK_SIZE_BYTES, RECORD_OVERHEAD_BYTES, SEGMENT_HEADER_SIZE_BYTES, SegmentHeader
from journal.frames import FRAME_OK, FRAME_SHORT, FrameVerdict, examine_frame, verify_run
from journal.segment import SegmentFile, file_size, open_for_reading, read_at, read_header

ADVANCE_END = "end"  # reached the given size with every frame verified
ADVANCE_COUNT = "count"  # consumed the number of records asked for
ADVANCE_LIMIT = "limit"  # the next frame is valid but ends past the offset limit
ADVANCE_STOPPED = "stopped"  # the next frame is cut short or bad: see the verdict


class SegmentCursor:
    """An open segment file, a byte offset in it, and the chain state at that offset."""

    __slots__ = ("segment", "path", "fd", "header", "offset", "next_sequence", "chain_crc", "epoch_min", "_buffer", "_buffer_start")

    def __init__(self, segment: SegmentFile, fd: int, header: SegmentHeader) -> None:
        self.segment = segment
        self.path = segment.path
        self.fd = fd
        self.header = header
        self.offset = SEGMENT_HEADER_SIZE_BYTES
        self.next_sequence = header.first_sequence
        self.chain_crc = header.chain_in_crc
        self.epoch_min = header.epoch
        # The chunk last read, and the file offset it was read from.
        self._buffer = b""
        self._buffer_start = SEGMENT_HEADER_SIZE_BYTES

    @classmethod
    def open(
        cls,
        segment: SegmentFile,
        *,
        cluster_id: int | None,
        continues: tuple[int, int, int] | None,
    ) -> "SegmentCursor":
        """Open a segment and verify its header. `continues`, when given, is the
        (next_sequence, chain_crc, epoch_min) the previous segment ended with, which
        this segment's header must continue."""
        fd = open_for_reading(segment.path)
        try:
            header = read_header(fd, segment.path, segment.first_sequence, cluster_id)
            if continues is not None:
                check_header_continues(segment.path, header, *continues)
        except BaseException:
            os.close(fd)
            raise
        return cls(segment, fd, header)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        return file_size(self.fd, self.path)

    def state(self) -> tuple[int, int, int]:
        return self.next_sequence, self.chain_crc, self.epoch_min

    def advance(self, run, count_max: int, out: list | None, size: int, offset_limit: int | None = None) -> tuple[str, FrameVerdict | None]:
        """Verify (and with a decoding `run`, collect into `out`) up to `count_max`
        records between the cursor and byte `size` of the file.

        `run` is one of frames.verify_run, frames.decode_tuples, frames.decode_records.
        `offset_limit` (verify_run only) stops before a frame ending past that offset.
        Returns (ADVANCE_*, verdict); the verdict is set for ADVANCE_STOPPED/LIMIT.

        The chunk last read is kept, so that a reader asking for a few thousand
        records at a time reads each chunk once. A frame is only ever judged bad on
        bytes read in the same call: bytes cached from an earlier call may be stale
        (recovery may have cut them and a writer appended new ones since).
        """
        remaining = count_max
        fresh = False
        while remaining > 0:
            if self.offset >= size:
                return ADVANCE_END, None
            buffer = self._buffer
            position = self.offset - self._buffer_start
            if not 0 <= position < len(buffer):
                buffer = read_at(self.fd, self.path, min(READ_CHUNK_SIZE_BYTES, size - self.offset), self.offset)
                fresh = True
                self._buffer = buffer
                self._buffer_start = self.offset
                position = 0
                if not buffer:
                    # The file is shorter than `size` now: it was cut under us. What
                    # that means is the caller's to judge; nothing past here is verified.
                    return ADVANCE_STOPPED, examine_frame(b"", 0, self.next_sequence, self.chain_crc, self.epoch_min)
            next_sequence_before = self.next_sequence
            # No chunk holds more frames than this; the loops need a count that fits
            # a machine word.
            count = min(remaining, (len(buffer) - position) // RECORD_OVERHEAD_BYTES + 1)
            if run is verify_run:
                limit = len(buffer) if offset_limit is None else min(len(buffer), offset_limit - self._buffer_start)
                position, self.next_sequence, self.chain_crc, self.epoch_min = verify_run(
                    buffer, position, self.next_sequence, self.chain_crc, self.epoch_min, count, limit
                )
            else:
                position, self.next_sequence, self.chain_crc, self.epoch_min = run(
                    buffer, position, self.next_sequence, self.chain_crc, self.epoch_min, count, out
                )
            self.offset = self._buffer_start + position
            remaining -= self.next_sequence - next_sequence_before
            if position == len(buffer) or remaining == 0:
                continue
            verdict = examine_frame(buffer, position, self.next_sequence, self.chain_crc, self.epoch_min)
            if verdict.status == FRAME_OK:
                return ADVANCE_LIMIT, verdict
            if not fresh or (verdict.status == FRAME_SHORT and self._buffer_start + len(buffer) < size):
                # Cut by the end of this chunk only, or judged on cached bytes: read
                # again from this frame.
                self._buffer = b""
                continue
            return ADVANCE_STOPPED, verdict
        return ADVANCE_COUNT, None

    def error_for(self, verdict: FrameVerdict, context: str = "") -> JournalCorruptError:
        """The exception for the frame the cursor stopped at."""
        error_type = verdict.error_type or JournalCorruptError
        reason = verdict.reason if not context else f"{verdict.reason}; {context}"
        return error_type(self.path, self.offset, reason)


def check_header_continues(path: str, header: SegmentHeader, next_sequence: int, chain_crc: int, epoch_min: int) -> None:
    """Raise unless a segment header continues the chain the previous segment ended."""
    if header.first_sequence != next_sequence:
        raise JournalHeaderError(
            path, 32, f"segment starts at sequence {header.first_sequence}, but the previous segment ends before {next_sequence} (gap or overlap)"
        )
    if header.chain_in_crc != chain_crc:
        raise JournalChainError(
            path, 40, f"segment chain-in {header.chain_in_crc:#010x} does not match the crc {chain_crc:#010x} the previous segment ends with"
        )
    if header.epoch < epoch_min:
        raise JournalEpochError(path, 24, f"segment epoch {header.epoch} is below the previous epoch {epoch_min}")

