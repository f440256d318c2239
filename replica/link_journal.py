"""The two journal reads the replication link needs, shared by every adapter.

`chain_values(directory, sequences)` is the primary's `crc_lookup` for `decide_hello`:
the chain value of each of those sequences its journal holds. `recent_pairs(writer)`
is what a standby's Hello describes its tail with: (sequence, crc) of its last
RECENT_PAIRS_MAX records. Both read verified records with the reader's `live` mode,
since a writer holds the journal open meanwhile.
"""

from __future__ import annotations

import journal
from replica.replication import RECENT_PAIRS_MAX


def chain_values(directory: str, sequences: list[int]) -> dict[int, int]:
    """Chain values (record crcs) at the sorted `sequences`, for those the journal holds."""
    if not sequences:
        return {}
    wanted = set(sequences)
    return {record.sequence: record.crc
            for record in journal.read_records(directory, sequences[0], sequences[-1], live=True)
            if record.sequence in wanted}


def recent_pairs(writer: journal.JournalWriter) -> list[tuple[int, int]]:
    """(sequence, crc) of the writer's last RECENT_PAIRS_MAX records, oldest first."""
    last = writer.last_sequence
    if last == 0:
        return []
    first = max(writer.recovery.first_sequence or 1, last - RECENT_PAIRS_MAX + 1)
    return [(record.sequence, record.crc) for record in journal.read_records(writer.directory, first, last, live=True)]
