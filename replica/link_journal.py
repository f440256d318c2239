"""The journal reads the replication link needs, shared by every adapter.

`chain_values(directory, sequences)` is the primary's `crc_lookup` for `decide_hello`:
the chain value of each of those sequences its journal holds (a standby uses it too, for
its own chain at the primary's boundary). `epoch_boundary(directory, epoch, up_to)` is
the primary's `boundary_lookup`: the last record of `epoch` or older, found from the
segment headers (each names its first record's epoch) and a scan of one segment at
most, so a tail of millions of records costs no more than a short one.
`verify_last_record(writer)` reads a standby's last record back before its hello.
`catch_up_chunks(directory, first, last, size_bytes_max)`
streams verified frames for a standby catching up, in one pass. All of them read
verified records with the reader's `live` mode, since a writer holds the journal open
meanwhile.

Each read is tried twice (`read_verified`; `catch_up_chunks` reads on from where the
failure was): a frame that fails its check once may be a read error of the moment (a
bad page in the cache, a bus error), which the second read does not repeat. A live read
that stops before a sequence known to be written counts as such a failure too: a
flipped length field makes a whole frame look cut short. A frame that fails twice is
corruption at rest in this node's own journal, and the JournalCorruptError (naming file
and offset) goes to the caller, whose node must stop. Never more than twice: a
persistent corruption must not become a loop.
"""

from __future__ import annotations

import os
import struct
from typing import Callable, Iterator, TypeVar

import journal
from journal.segment import list_segments, open_for_reading, read_header

Result = TypeVar("Result")
_FRAME_LENGTH = struct.Struct("<I")
READ_ATTEMPTS_MAX = 2


def read_verified(read: Callable[..., Result], *arguments) -> Result:
    """`read(*arguments)`, once more if a frame failed its check; a second failure raises."""
    for attempt in range(1, READ_ATTEMPTS_MAX + 1):
        try:
            return read(*arguments)
        except journal.JournalCorruptError:
            if attempt == READ_ATTEMPTS_MAX:
                raise
    raise RuntimeError("unreachable: the last attempt returns or raises")


def chain_values(directory: str, sequences: list[int]) -> dict[int, int]:
    """Chain values (record crcs) at the sorted `sequences`, for those the journal holds."""
    if not sequences:
        return {}
    wanted = set(sequences)

    def read() -> dict[int, int]:
        return {record.sequence: record.crc
                for record in journal.read_records(directory, sequences[0], sequences[-1], live=True)
                if record.sequence in wanted}

    return read_verified(read)


def verify_last_record(writer: journal.JournalWriter) -> None:
    """Read the writer's last record back from disk before a standby's hello: a bit
    flipped at rest there is this node's corruption, found now (JournalCorruptError
    naming file and offset) rather than blamed on the primary's next frames."""
    last = writer.last_sequence
    if last == 0 or last < (writer.recovery.first_sequence or 1):
        return

    def read() -> None:
        records = list(journal.read_records(writer.directory, last, last, live=True))
        if not records:
            raise _ended_early(writer.directory, last, last)
        if records[0].crc != writer.last_crc:
            raise journal.JournalFrameError(writer.directory, None,
                                            f"record {last} reads back with another chain value than was written")

    read_verified(read)


def own_starts(directory: str, starts: list[tuple[int, int]], last_sequence: int) -> list[tuple[int, int]]:
    """(sequence, chain value) of this journal at the sequences where a primary started
    on it (DataDirectory's primary starts), those below `last_sequence`, oldest first."""
    sequences = sorted({sequence for _epoch, sequence in starts if 0 < sequence < last_sequence})
    crcs = chain_values(directory, sequences)
    return [(sequence, crcs[sequence]) for sequence in sequences if sequence in crcs]


def epoch_boundary(directory: str, epoch: int, up_to_sequence: int) -> tuple[int, int]:
    """(sequence, chain value) of the last record at or below `up_to_sequence` whose
    epoch is at most `epoch`; (0, 0) when the journal holds none."""

    def read() -> tuple[int, int]:
        start = None
        for segment in list_segments(directory):
            if segment.first_sequence > up_to_sequence:
                break
            fd = open_for_reading(segment.path)
            try:
                header = read_header(fd, segment.path, segment.first_sequence, None)
            finally:
                os.close(fd)
            if header.epoch > epoch:
                break
            start = header
        if start is None:
            return 0, 0
        # The boundary lies in this segment: the next one (if any) starts above `epoch`.
        found = (start.first_sequence - 1, start.chain_in_crc)
        for record in journal.read_records(directory, start.first_sequence, up_to_sequence, live=True):
            if record.epoch > epoch:
                return found
            found = (record.sequence, record.crc)
        if found[0] < up_to_sequence:
            raise _ended_early(directory, found[0] + 1, up_to_sequence)
        return found

    return read_verified(read)


def _ended_early(directory: str, next_sequence: int, last_sequence: int) -> journal.JournalFrameError:
    """A live read that stopped before a sequence the caller knows is written: its frame
    looked cut short, which a record already written can only do when its bytes (or
    the read of them) are bad."""
    return journal.JournalFrameError(
        directory, None, f"the journal read ended before sequence {next_sequence}, "
                         f"though {last_sequence} is written: a bad length field or a bad read")


def catch_up_chunks(directory: str, first_sequence: int, last_sequence: int,
                    size_bytes_max: int) -> Iterator[tuple[int, bytes]]:
    """(first sequence, verified frames) chunks from `first_sequence` to `last_sequence`,
    each at most `size_bytes_max` bytes, read in one pass. A chunk that fails its check
    is read once more, from where the failure was, by a fresh reader; a second failure
    raises (see the module docstring)."""
    if first_sequence > last_sequence:
        raise ValueError(f"catch-up range {first_sequence}..{last_sequence} is empty")
    next_sequence = first_sequence
    retried = False
    while next_sequence <= last_sequence:
        try:
            for chunk in journal.read_frames(directory, next_sequence, last_sequence,
                                             batch_size_bytes_max=size_bytes_max, live=True):
                count = count_frames(chunk)
                yield next_sequence, chunk
                next_sequence += count
                retried = False
            if next_sequence <= last_sequence:
                raise _ended_early(directory, next_sequence, last_sequence)
            return
        except journal.JournalCorruptError:
            if retried:
                raise
            retried = True


def count_frames(frames: bytes) -> int:
    """How many journal frames a verified run of frames holds."""
    count = 0
    offset = 0
    end = len(frames)
    unpack = _FRAME_LENGTH.unpack_from
    while offset < end:
        (length,) = unpack(frames, offset)
        offset += 8 + length
        count += 1
    return count
