"""The exceptions of snapshots/: one tree, rooted at SnapshotError.

Every error names the LMDB environment path and, where one is involved, the snapshot
sequence, so that a message in a log is enough to find the snapshot on disk. Callers
catch SnapshotError (or a subclass) only; raw `lmdb.Error`s never escape the package:
unexpected ones are wrapped in SnapshotStorageError with the original as `__cause__`.

    SnapshotError
    ├── SnapshotStoreNotFoundError   path does not exist / holds no environment (read-only)
    ├── SnapshotStoreOpenError       LMDB refused to open the environment
    ├── SnapshotLayoutError          not a twinbook snapshot store, or an unknown layout
    ├── SnapshotStoreClosedError     used after close()
    ├── SnapshotForkError            used in a process other than the one that opened it
    ├── SnapshotReadOnlyError        write on a store opened with readonly=True
    ├── SnapshotArgumentError        caller broke a precondition (also a ValueError)
    │   ├── SnapshotSequenceError    put of a sequence not above the newest stored
    │   ├── SnapshotDigestMismatchError  state bytes do not hash to the supplied digest
    │   └── SnapshotTooLargeError    state larger than the store's limit
    ├── SnapshotMapFullError         LMDB map could not be grown enough for a put
    ├── SnapshotNotFoundError        no snapshot at that sequence
    ├── SnapshotCorruptError         stored snapshot fails verification (what failed)
    └── SnapshotStorageError         any other LMDB failure (disk error, readers full, ...)

LayoutViolation is internal: snapshots/layout.py raises it when bytes do not decode,
and the store turns it into SnapshotCorruptError or SnapshotLayoutError with the path.
It never leaves the package.
"""

from __future__ import annotations


class SnapshotError(Exception):
    """Base of every error raised by snapshots/. `path` is the environment directory."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class SnapshotStoreNotFoundError(SnapshotError):
    """The store path does not exist or holds no LMDB environment (read-only opening)."""

    def __init__(self, *, path: str, reason: str) -> None:
        super().__init__(f"snapshot store {path!r} not found: {reason}", path=path)
        self.reason = reason


class SnapshotStoreOpenError(SnapshotError):
    """LMDB refused to open the environment (permissions, already open, not LMDB...)."""

    def __init__(self, *, path: str, reason: str) -> None:
        super().__init__(f"cannot open snapshot store {path!r}: {reason}", path=path)
        self.reason = reason


class SnapshotLayoutError(SnapshotError):
    """The environment is not a twinbook snapshot store, or uses an unknown layout."""

    def __init__(self, *, path: str, reason: str) -> None:
        super().__init__(f"snapshot store {path!r} has an unusable layout: {reason}", path=path)
        self.reason = reason


class SnapshotStoreClosedError(SnapshotError):
    """The store was used after close()."""

    def __init__(self, *, path: str) -> None:
        super().__init__(f"snapshot store {path!r} is closed", path=path)


class SnapshotForkError(SnapshotError):
    """The store was used in a process other than the one that opened it.

    LMDB environments must not cross fork(): the child shares the parent's lock file
    descriptors and reader slots, and using them corrupts the lock table. The parent
    closes its store before fork(); the child opens its own.
    """

    def __init__(self, *, path: str, opened_pid: int, current_pid: int) -> None:
        super().__init__(
            f"snapshot store {path!r} was opened by process {opened_pid} and used in "
            f"process {current_pid}; an LMDB environment must not be used across fork(): "
            f"close the store in the parent before forking and open a new one in the child",
            path=path,
        )
        self.opened_pid = opened_pid
        self.current_pid = current_pid


class SnapshotReadOnlyError(SnapshotError):
    """A write (put, delete, prune) on a store opened with readonly=True."""

    def __init__(self, *, path: str, operation: str) -> None:
        super().__init__(
            f"snapshot store {path!r} is open read-only; {operation} is not allowed", path=path
        )
        self.operation = operation


class SnapshotArgumentError(SnapshotError, ValueError):
    """A caller broke a precondition: a value out of range, of the wrong type or size."""

    def __init__(self, *, path: str, sequence: int | None, reason: str) -> None:
        where = f"snapshot {sequence} in {path!r}" if sequence is not None else repr(path)
        super().__init__(f"invalid argument for {where}: {reason}", path=path)
        self.sequence = sequence
        self.reason = reason


class SnapshotSequenceError(SnapshotArgumentError):
    """put() of a sequence not above the newest stored one.

    Snapshots are taken in journal order; a lower sequence means the caller is confused
    about where its state is (or a divergent tail was cut and the snapshots beyond the
    cut were not deleted first).
    """

    def __init__(self, *, path: str, sequence: int, newest_sequence: int) -> None:
        super().__init__(
            path=path,
            sequence=sequence,
            reason=f"sequence must be above the newest stored snapshot {newest_sequence}",
        )
        self.newest_sequence = newest_sequence


class SnapshotDigestMismatchError(SnapshotArgumentError):
    """The state bytes given to put() do not hash (blake2b-256) to the supplied digest.

    Nothing is stored: a snapshot whose digest is wrong on the way in would be skipped
    as corrupt on the way out, so it is refused while the caller can still react.
    """

    def __init__(self, *, path: str, sequence: int, supplied: bytes, computed: bytes) -> None:
        super().__init__(
            path=path,
            sequence=sequence,
            reason=(
                f"supplied digest {supplied.hex()} does not match blake2b-256 of the state "
                f"bytes {computed.hex()}"
            ),
        )
        self.supplied = supplied
        self.computed = computed


class SnapshotTooLargeError(SnapshotArgumentError):
    """The state is larger than the store's state size limit."""

    def __init__(self, *, path: str, sequence: int, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            path=path,
            sequence=sequence,
            reason=f"state of at least {size_bytes} bytes exceeds the limit of {limit_bytes} bytes",
        )
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class SnapshotMapFullError(SnapshotError):
    """A put did not fit in the LMDB map and the map could not (or may not) grow enough.

    When the chunks were a one-shot iterator, the map has been grown already but the
    chunks are consumed: the caller calls put_chunks() again with a fresh iterator.
    """

    def __init__(self, *, path: str, sequence: int, map_size_bytes: int, reason: str) -> None:
        super().__init__(
            f"snapshot {sequence} does not fit in {path!r} (map size {map_size_bytes} bytes): "
            f"{reason}",
            path=path,
        )
        self.sequence = sequence
        self.map_size_bytes = map_size_bytes
        self.reason = reason


class SnapshotNotFoundError(SnapshotError):
    """No snapshot is stored at that sequence."""

    def __init__(self, *, path: str, sequence: int) -> None:
        super().__init__(f"no snapshot {sequence} in {path!r}", path=path)
        self.sequence = sequence


class SnapshotCorruptError(SnapshotError):
    """A stored snapshot failed verification; `reason` says what failed.

    `sequence` is None when the damage is not attributable to one snapshot (an
    environment LMDB itself reports as corrupt, or a key that is not a sequence).
    """

    def __init__(self, *, path: str, sequence: int | None, reason: str) -> None:
        where = f"snapshot {sequence}" if sequence is not None else "snapshot store"
        super().__init__(f"{where} in {path!r} is corrupt: {reason}", path=path)
        self.sequence = sequence
        self.reason = reason


class SnapshotStorageError(SnapshotError):
    """Any other LMDB failure (I/O error, reader table full...); `__cause__` holds it."""

    def __init__(self, *, path: str, sequence: int | None, operation: str, reason: str) -> None:
        where = f" snapshot {sequence}" if sequence is not None else ""
        super().__init__(f"{operation}{where} in {path!r} failed: {reason}", path=path)
        self.sequence = sequence
        self.operation = operation
        self.reason = reason


class LayoutViolation(Exception):
    """Internal: stored bytes do not follow snapshots/layout.py. Never leaves the package."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
