"""Verdicts on stored snapshots, and the newest good snapshot chosen from them.

A restart wants the newest snapshot that verifies; an operator wants to know why the
others did not. SnapshotVerdict is the outcome of verifying one snapshot (good, or the
reason it is not); GoodSnapshot is what read_newest_good() returns: the chosen
snapshot's info and state bytes, plus the verdicts of the newer ones it skipped, so the
caller can log exactly what was passed over and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from snapshots.info import SnapshotInfo


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotVerdict:
    """The outcome of verifying one stored snapshot.

    sequence  the snapshot's sequence; None only when its key is not a valid sequence.
    info      the decoded metadata; None when the metadata itself is damaged.
    reason    why the snapshot is unusable; None when it verified (metadata, every
              chunk present with the right length, blake2b-256 digest matches).
    """

    sequence: int | None
    info: SnapshotInfo | None
    reason: str | None

    @property
    def good(self) -> bool:
        return self.reason is None


@dataclasses.dataclass(frozen=True, slots=True)
class GoodSnapshot:
    """The newest snapshot that verified, and the newer ones skipped on the way.

    Unpacks as the pair (info, state_bytes), like read(), so
    `info, state_bytes = store.read_newest_good()` works; `skipped` holds the verdicts
    of the newer, corrupt snapshots, newest first.
    """

    info: SnapshotInfo
    state_bytes: bytes
    skipped: tuple[SnapshotVerdict, ...]

    def __iter__(self) -> Iterator[SnapshotInfo | bytes]:
        return iter((self.info, self.state_bytes))
