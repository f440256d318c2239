"""The journal reads the replication link needs, shared by every adapter.

`chain_values(directory, sequences)` is the primary's `crc_lookup` for `decide_hello`:
the chain value of each of those sequences its journal holds. `recent_pairs(writer)`
is what a standby's Hello describes its tail with: (sequence, crc) of its last
RECENT_PAIRS_MAX records. `catch_up_chunks(directory, first, last, size_bytes_max)`
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

import struct
from typing import Callable, Iterator, TypeVar

import journal
from replica.replication import RECENT_PAIRS_MAX

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


def recent_pairs(writer: journal.JournalWriter) -> list[tuple[int, int]]:
    """(sequence, crc) of the writer's last RECENT_PAIRS_MAX records, oldest first."""
    last = writer.last_sequence
    if last == 0:
        return []
    first = max(writer.recovery.first_sequence or 1, last - RECENT_PAIRS_MAX + 1)

    def read() -> list[tuple[int, int]]:
        pairs = [(record.sequence, record.crc)
                 for record in journal.read_records(writer.directory, first, last, live=True)]
        if len(pairs) != last - first + 1:
            raise _ended_early(writer.directory, first + len(pairs), last)
        return pairs

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
