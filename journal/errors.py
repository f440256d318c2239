"""The exceptions of journal/: one tree, rooted at JournalError.

Every error carries `path` (the segment file, the journal directory, or for bytes that
came from a replication peer the caller's name for that stream), `offset` (the byte
offset inside that file or stream, or None when no single byte is to blame) and
`reason` (one sentence). The message is always "<path> at byte offset <offset>:
<reason>", so a line in a log is enough to open the file at the right place.

    JournalError
    ├── JournalCorruptError            bytes on disk or from a peer fail verification
    │   ├── JournalHeaderError         a segment header is invalid or does not continue
    │   │   │                          the journal (magic, size, header crc, first
    │   │   │                          sequence versus file name, chain-in)
    │   │   ├── JournalFormatVersionError   a format version this code does not read
    │   │   └── JournalClusterMismatchError the segment belongs to another cluster
    │   ├── JournalFrameError          a frame is malformed (length out of range, cut)
    │   ├── JournalChainError          a record's crc does not verify against the chain
    │   ├── JournalSequenceError       a sequence gap or reordering
    │   └── JournalEpochError          an epoch that goes backwards
    ├── JournalUsageError              the caller broke a precondition (also ValueError)
    │   ├── JournalRecordTooLargeError body above BODY_SIZE_BYTES_MAX
    │   ├── JournalEpochRegressionError append or set_epoch below the writer's epoch
    │   ├── JournalSequenceRangeError  a sequence outside what the journal holds
    │   └── JournalClosedError         the writer is closed, or failed and was fenced
    ├── JournalIOError                 an operating-system call failed (errno kept as
    │                                  __cause__); a writer that saw one refuses all
    │                                  further work, because after a failed fsync the
    │                                  page cache no longer says what is on disk
    ├── JournalLockedError             another writer holds the journal directory
    └── JournalNotFoundError           no journal directory and create=False

The constructor signature (path, offset, reason) is the same for every class, so the
errors pickle and cross process boundaries unchanged.
"""

from __future__ import annotations

import os


class JournalError(Exception):
    """Base of every error raised by journal/."""

    def __init__(self, path: str | os.PathLike | None, offset: int | None, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = None if path is None else os.fspath(path)
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        if self.offset is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path} at byte offset {self.offset}: {self.reason}"


class JournalCorruptError(JournalError):
    """Bytes that were written as a journal do not verify. Never guessed around."""


class JournalHeaderError(JournalCorruptError):
    """A segment header is invalid, or does not continue the segment before it."""


class JournalFormatVersionError(JournalHeaderError):
    """The segment was written in a format version this code does not read."""


class JournalClusterMismatchError(JournalHeaderError):
    """The segment belongs to a different cluster than the one asked for."""


class JournalFrameError(JournalCorruptError):
    """A record frame is malformed: its length is out of range, or it is cut short."""


class JournalChainError(JournalCorruptError):
    """A record's crc does not verify against the chain seeded by its predecessor."""


class JournalSequenceError(JournalCorruptError):
    """Sequences do not continue one by one: a record is missing, repeated or moved."""


class JournalEpochError(JournalCorruptError):
    """A record or segment header carries an epoch lower than the one before it."""


class JournalUsageError(JournalError, ValueError):
    """The caller broke a precondition; nothing was written."""


class JournalRecordTooLargeError(JournalUsageError):
    """A record body is larger than BODY_SIZE_BYTES_MAX."""


class JournalEpochRegressionError(JournalUsageError):
    """An append or set_epoch asked for an epoch below the writer's current epoch."""


class JournalSequenceRangeError(JournalUsageError):
    """A sequence outside the range the journal holds (or may be cut to)."""


class JournalClosedError(JournalUsageError):
    """The writer is closed, or it failed an I/O call and was fenced off."""


class JournalIOError(JournalError):
    """An operating-system call on a journal file failed."""


class JournalLockedError(JournalError):
    """Another writer holds the lock on the journal directory."""


class JournalNotFoundError(JournalError):
    """The journal directory does not exist and the caller did not ask to create it."""
