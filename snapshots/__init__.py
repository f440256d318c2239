"""LMDB storage of (sequence, digest, bytes) snapshots; knows nothing about orders.

Imports only the standard library and lmdb. The public surface:

    SnapshotStore      the store (snapshots/store.py: atomicity, map growth, fork rules)
    SnapshotInfo       metadata of one snapshot (snapshots/info.py)
    SnapshotVerdict    outcome of verifying one snapshot (snapshots/verdict.py)
    GoodSnapshot       result of read_newest_good(): info, state_bytes, skipped
    state_digest       blake2b-256 of state bytes, the digest the store verifies
    Snapshot*Error     the exception tree (snapshots/errors.py)

The byte layout in LMDB is drawn in snapshots/layout.py; the limits are in
snapshots/limits.py.
"""

from snapshots.errors import (
    SnapshotArgumentError,
    SnapshotCorruptError,
    SnapshotDigestMismatchError,
    SnapshotError,
    SnapshotForkError,
    SnapshotLayoutError,
    SnapshotMapFullError,
    SnapshotNotFoundError,
    SnapshotReadOnlyError,
    SnapshotSequenceError,
    SnapshotStorageError,
    SnapshotStoreClosedError,
    SnapshotStoreNotFoundError,
    SnapshotStoreOpenError,
    SnapshotTooLargeError,
)
from snapshots.info import SnapshotInfo
from snapshots.layout import LAYOUT_VERSION, state_digest
from snapshots.store import SnapshotStore
from snapshots.verdict import GoodSnapshot, SnapshotVerdict

__all__ = [
    "LAYOUT_VERSION",
    "GoodSnapshot",
    "SnapshotArgumentError",
    "SnapshotCorruptError",
    "SnapshotDigestMismatchError",
    "SnapshotError",
    "SnapshotForkError",
    "SnapshotInfo",
    "SnapshotLayoutError",
    "SnapshotMapFullError",
    "SnapshotNotFoundError",
    "SnapshotReadOnlyError",
    "SnapshotSequenceError",
    "SnapshotStorageError",
    "SnapshotStore",
    "SnapshotStoreClosedError",
    "SnapshotStoreNotFoundError",
    "SnapshotStoreOpenError",
    "SnapshotTooLargeError",
    "SnapshotVerdict",
    "state_digest",
]
