"""The CRC-framed, append-only journal: bytes only, nothing about orders.

The on-disk format is drawn in journal/format.py. The pieces:

    JournalWriter      append / commit / commit_async / append_frames / truncate_after
    read_records       verified Records from any sequence (read_tuples: the fast path)
    read_frames        raw verified frames, for replication catch-up
    Tailer             follow a journal as it grows
    recover            classify (and repair) the tail after a crash
    inspect            a plain-dict summary for operators
    truncate_after     cut a journal no writer holds (evidence kept)

Every error is a JournalError (journal/errors.py).
"""

from journal.errors import (
    JournalChainError,
    JournalClosedError,
    JournalClusterMismatchError,
    JournalCorruptError,
    JournalEpochError,
    JournalEpochRegressionError,
    JournalError,
    JournalFormatVersionError,
    JournalFrameError,
    JournalHeaderError,
    JournalIOError,
    JournalLockedError,
    JournalNotFoundError,
    JournalRecordTooLargeError,
    JournalSequenceError,
    JournalSequenceRangeError,
    JournalUsageError,
)
from journal.format import (
    BATCH_SIZE_BYTES_MAX,
    BODY_SIZE_BYTES_MAX,
    FORMAT_VERSION,
    FRAME_SIZE_BYTES_MAX,
    SEGMENT_HEADER_SIZE_BYTES,
    SEGMENT_SIZE_BYTES_DEFAULT,
    segment_file_name,
)
from journal.reader import read_frames, read_record_batches, read_records, read_tuple_batches, read_tuples
from journal.record import Record
from journal.recovery import RecoveryReport, SegmentSummary, TornTail, recover
from journal.summary import inspect
from journal.tailer import Tailer
from journal.truncation import TruncationReport, truncate_after
from journal.writer import JournalWriter

__all__ = [
    "BATCH_SIZE_BYTES_MAX",
    "BODY_SIZE_BYTES_MAX",
    "FORMAT_VERSION",
    "FRAME_SIZE_BYTES_MAX",
    "SEGMENT_HEADER_SIZE_BYTES",
    "SEGMENT_SIZE_BYTES_DEFAULT",
    "JournalChainError",
    "JournalClosedError",
    "JournalClusterMismatchError",
    "JournalCorruptError",
    "JournalEpochError",
    "JournalEpochRegressionError",
    "JournalError",
    "JournalFormatVersionError",
    "JournalFrameError",
    "JournalHeaderError",
    "JournalIOError",
    "JournalLockedError",
    "JournalNotFoundError",
    "JournalRecordTooLargeError",
    "JournalSequenceError",
    "JournalSequenceRangeError",
    "JournalUsageError",
    "JournalWriter",
    "Record",
    "RecoveryReport",
    "SegmentSummary",
    "Tailer",
    "TornTail",
    "TruncationReport",
    "inspect",
    "read_frames",
    "read_record_batches",
    "read_records",
    "read_tuple_batches",
    "read_tuples",
    "recover",
    "segment_file_name",
    "truncate_after",
]
