"""The journal reads the replication link needs, shared by every adapter.

`chain_values(directory, sequences)` is the primary's `crc_lookup` for `decide_hello`:
the chain value of each of those sequences its journal holds. `recent_pairs(writer)`
is what a standby's Hello describes its tail with: (sequence, crc) of its last
RECENT_PAIRS_MAX records. `catch_up_chunk(directory, first, last, size_bytes_max)` is
one run of verified frames for a standby catching up. All of them read verified records
with the reader's `live` mode, since a writer holds the journal open meanwhile.

Each read is tried twice (`read_verified`): a frame that fails its check once may be a
read error of the moment (a bad page in the cache, a bus error), which the second read
does not repeat; a frame that fails twice is corruption at rest in this node's own
journal, and the JournalCorruptError (naming file and offset) goes to the caller, whose
node must stop. Never more than twice: a persistent corruption must not become a loop.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import journal
from replica.replication import RECENT_PAIRS_MAX

Result = TypeVar("Result")
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
        return [(record.sequence, record.crc)
                for record in journal.read_records(writer.directory, first, last, live=True)]

    return read_verified(read)


def catch_up_chunk(directory: str, first_sequence: int, last_sequence: int, size_bytes_max: int) -> bytes:
    """Verified frames from `first_sequence` on, at most `size_bytes_max` bytes (always at
    least one frame) and never past `last_sequence`."""
    if first_sequence > last_sequence:
        raise ValueError(f"catch-up range {first_sequence}..{last_sequence} is empty")

    def read() -> bytes:
        for chunk in journal.read_frames(directory, first_sequence, last_sequence,
                                         batch_size_bytes_max=size_bytes_max, live=True):
            return chunk
        raise journal.JournalUsageError(directory, None, f"no frame at {first_sequence} to catch up from")

    return read_verified(read)
