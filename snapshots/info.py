"""SnapshotInfo: what the store knows about one snapshot, without its state bytes.

It is the decoded metadata record (see snapshots/layout.py for the bytes): the caller's
values (sequence, digest, journal chain value, state format version) plus what the store
records when it writes (state size, how it was chunked, when). Immutable, comparable,
cheap: list() returns these without touching the chunks.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """Metadata of one stored snapshot.

    sequence          journal sequence the state is at (u64); the snapshot's key.
    digest            blake2b-256 of the state bytes, supplied by the caller (the state
                      machine's canonical digest), verified by the store on put and read.
    chain_value       journal chain value (u32 CRC) at `sequence`, so a restart can check
                      that the journal it replays from continues this state.
    format_version    the caller's state format version (u16); the store does not
                      interpret it.
    state_size_bytes  length of the state bytes.
    chunk_count       number of chunk values the state is split into.
    chunk_size_bytes  size of every chunk but the last (the last holds the remainder).
    created_unix_ns   wall clock time of the put, for operators only: nothing decides
                      anything from it (snapshots are ordered by sequence).
    """

    sequence: int
    digest: bytes
    chain_value: int
    format_version: int
    state_size_bytes: int
    chunk_count: int
    chunk_size_bytes: int
    created_unix_ns: int

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()
