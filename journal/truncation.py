"""Cutting a journal after a given sequence, keeping every cut byte as evidence.

Used when an old primary rejoins as a standby: the records it wrote after the new
primary took over were never acknowledged (sync replication) and must go, but they
are kept in `.divergent` files for audit. An operator can also use it to cut a
journal whose tail recovery refused as corrupt, after inspecting it.

How: the segment holding `sequence` (the new tail) is verified from its header up to
`sequence`, which gives the byte offset of the cut and the chain value there. Then,
from the last segment backwards, every later segment is moved whole to
`<segment file><suffix>` (a rename, or an append when that evidence file exists),
and finally the tail segment's bytes after the cut are appended to its own evidence
file and the segment truncated. Each step is fsync'd (file and directory) before the
next, and going backwards means that a crash at any point leaves a journal that is a
valid prefix of the original: rerunning the cut finishes the job.

Only the tail segment is verified here; the segments before it are not read at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from journal.cursor import ADVANCE_COUNT, ADVANCE_END, SegmentCursor
from journal.errors import JournalSequenceRangeError, JournalUsageError
from journal.frames import verify_run
from journal.segment import (
    copy_range_to_evidence,
    cut_file,
    file_size,
    fsync_directory,
    io_error,
    list_segments,
    lock_directory,
    move_segment_to_evidence,
    segment_index_for,
)

DIVERGENT_SUFFIX = ".divergent"


@dataclass(frozen=True)
class TruncationReport:
    """What a cut removed and where the evidence went."""

    directory: str
    sequence: int  # the journal now ends with this sequence
    last_crc: int  # the chain value after it
    bytes_cut: int
    evidence_paths: tuple[str, ...]
    removed_segment_paths: tuple[str, ...]
    tail_segment_path: str


def truncate_after(
    directory: str | os.PathLike, sequence: int, *, keep_path_suffix: str = DIVERGENT_SUFFIX, cluster_id: int | None = None
) -> TruncationReport:
    """Cut every record after `sequence` from a journal no writer holds open (takes
    the writer lock). See JournalWriter.truncate_after for a journal you hold open."""
    path = os.fspath(directory)
    lock_fd = lock_directory(path)
    try:
        return truncate_locked(path, sequence, keep_path_suffix=keep_path_suffix, cluster_id=cluster_id)
    finally:
        os.close(lock_fd)


def truncate_locked(directory: str, sequence: int, *, keep_path_suffix: str, cluster_id: int | None) -> TruncationReport:
    """truncate_after for a caller that holds the writer lock."""
    if not keep_path_suffix.startswith(".") or "/" in keep_path_suffix or keep_path_suffix.endswith(".journal") or len(keep_path_suffix) < 2:
        raise JournalUsageError(directory, None, f"evidence suffix {keep_path_suffix!r} must look like '.divergent'")
    segments = list_segments(directory)
    if not segments:
        raise JournalSequenceRangeError(directory, None, "the journal holds no segment to cut")
    if type(sequence) is not int or sequence < segments[0].first_sequence - 1:
        raise JournalSequenceRangeError(
            directory, None, f"cannot cut after {sequence!r}: the journal starts at {segments[0].first_sequence}"
        )
    tail_index = max(0, segment_index_for(segments, sequence))
    tail = segments[tail_index]
    cursor = SegmentCursor.open(tail, cluster_id=cluster_id, continues=None)
    try:
        size = cursor.size()
        keep = sequence - cursor.next_sequence + 1
        if keep > 0:
            status, verdict = cursor.advance(verify_run, keep, None, size)
            if status == ADVANCE_END and cursor.next_sequence <= sequence:
                raise JournalSequenceRangeError(tail.path, cursor.offset, f"cannot cut after {sequence}: the segment ends before it")
            if status != ADVANCE_COUNT and status != ADVANCE_END:
                raise cursor.error_for(verdict, f"while verifying up to sequence {sequence} before cutting")
        cut_offset = cursor.offset
        last_crc = cursor.chain_crc
    finally:
        cursor.close()

    evidence_paths: list[str] = []
    removed: list[str] = []
    bytes_cut = 0
    for segment in reversed(segments[tail_index + 1:]):
        evidence = segment.path + keep_path_suffix
        try:
            bytes_cut += os.stat(segment.path).st_size
        except OSError as error:
            raise io_error(segment.path, "stat", error) from error
        move_segment_to_evidence(segment, evidence)
        evidence_paths.append(evidence)
        removed.append(segment.path)
    if cut_offset < size:
        evidence = tail.path + keep_path_suffix
        try:
            fd = os.open(tail.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            raise io_error(tail.path, "open for truncation", error) from error
        try:
            size = file_size(fd, tail.path)
            copy_range_to_evidence(fd, tail.path, cut_offset, size, evidence)
            cut_file(fd, tail.path, cut_offset)
        finally:
            os.close(fd)
        fsync_directory(directory)
        bytes_cut += size - cut_offset
        evidence_paths.append(evidence)
    return TruncationReport(directory, sequence, last_crc, bytes_cut, tuple(evidence_paths), tuple(removed), tail.path)
