"""Segment files on disk: listing, opening, creating, and the fsync discipline.

This module is the only one that turns file names into segments and the only one that
creates segment files, so the rules live in one place:

* A segment is created with O_EXCL, its 64-byte header is written with one write, the
  file is fdatasync'd, and then the directory is fsync'd, so that after a crash the
  segment either does not exist or has its name; a crash in between leaves a file
  shorter than a header, which recovery recognises as a torn segment.
* Evidence files (`.torn`, `.divergent`) are appended to, never overwritten, and
  fsync'd (and their directory) before the bytes they preserve are cut anywhere else.
* Every OSError becomes a JournalIOError naming the file, with the OSError chained.

Readers find a segment by bisecting the sorted first sequences of the file names.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import os
from typing import NamedTuple

from journal.errors import JournalError, JournalIOError, JournalLockedError, JournalNotFoundError
from journal.format import (
    SEGMENT_HEADER_SIZE_BYTES,
    SegmentHeader,
    decode_segment_header,
    encode_segment_header,
    parse_segment_file_name,
    segment_file_name,
)

# Evidence copies are written in pieces of this size, so copying a whole segment
# aside never needs the whole segment in memory.
COPY_CHUNK_SIZE_BYTES = 4 * 1024 * 1024


class SegmentFile(NamedTuple):
    """A segment file found in a journal directory (not yet opened or verified)."""

    path: str
    first_sequence: int


def list_segments(directory: str) -> list[SegmentFile]:
    """The segment files of a journal directory, ordered by first sequence."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError as error:
        raise JournalNotFoundError(directory, None, "journal directory does not exist") from error
    except NotADirectoryError as error:
        raise JournalNotFoundError(directory, None, "journal path is not a directory") from error
    except OSError as error:
        raise JournalIOError(directory, None, f"cannot list the journal directory: {error.strerror}") from error
    segments = []
    for name in names:
        first_sequence = parse_segment_file_name(name)
        if first_sequence is not None:
            segments.append(SegmentFile(os.path.join(directory, name), first_sequence))
    segments.sort(key=lambda segment: segment.first_sequence)
    return segments


def segment_index_for(segments: list[SegmentFile], sequence: int) -> int:
    """Index of the segment that holds `sequence` if it exists: the last whose first
    sequence is at or below it. -1 when `sequence` precedes every segment."""
    firsts = [segment.first_sequence for segment in segments]
    return bisect.bisect_right(firsts, sequence) - 1


def segment_path(directory: str, first_sequence: int) -> str:
    return os.path.join(directory, segment_file_name(first_sequence))


def io_error(path: str, action: str, error: OSError, offset: int | None = None) -> JournalIOError:
    """A JournalIOError for a failed OS call (the caller raises it `from error`)."""
    return JournalIOError(path, offset, f"{action} failed: [{errno.errorcode.get(error.errno, error.errno)}] {error.strerror}")


def open_for_reading(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise JournalNotFoundError(path, None, "segment file vanished (removed by a concurrent truncation?)") from error
    except OSError as error:
        raise io_error(path, "open", error) from error


def file_size(fd: int, path: str) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError as error:
        raise io_error(path, "fstat", error) from error


def read_at(fd: int, path: str, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset` (fewer only at the end of the file)."""
    pieces = []
    remaining = size
    position = offset
    try:
        while remaining > 0:
            piece = os.pread(fd, remaining, position)
            if not piece:
                break
            pieces.append(piece)
            remaining -= len(piece)
            position += len(piece)
    except OSError as error:
        raise io_error(path, "read", error, position) from error
    if len(pieces) == 1:
        return pieces[0]
    return b"".join(pieces)


def read_header(fd: int, path: str, first_sequence_from_name: int, cluster_id: int | None) -> SegmentHeader:
    """Read and verify a segment's header (JournalFrameError when the file is shorter)."""
    data = read_at(fd, path, SEGMENT_HEADER_SIZE_BYTES, 0)
    return decode_segment_header(data, path, first_sequence_from_name=first_sequence_from_name, cluster_id=cluster_id)


def write_all(fd: int, path: str, data: bytes | memoryview, offset_for_errors: int | None = None) -> None:
    """Write every byte of `data` at the fd's position (loops over short writes)."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(view):
            written += os.write(fd, view[written:])
    except OSError as error:
        at = None if offset_for_errors is None else offset_for_errors + written
        raise io_error(path, "write", error, at) from error


def fdatasync(fd: int, path: str) -> None:
    try:
        os.fdatasync(fd)
    except OSError as error:
        raise io_error(path, "fdatasync", error) from error


def fsync_directory(directory: str) -> None:
    """fsync a directory, so that file creations, renames and removals in it persist."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise io_error(directory, "open directory", error) from error
    try:
        os.fsync(fd)
    except OSError as error:
        raise io_error(directory, "fsync directory", error) from error
    finally:
        os.close(fd)


def create_directory(directory: str) -> None:
    """Create the journal directory (and parents) and make its entry durable."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise io_error(directory, "create directory", error) from error
    fsync_directory(os.path.dirname(os.path.abspath(directory)))


def create_segment(
    directory: str, cluster_id: int, epoch: int, first_sequence: int, chain_in_crc: int, *, durable: bool = True
) -> tuple[int, str]:
    """Create a segment holding only its header, durable with its name (unless
    `durable` is False: durability policy "none"). Returns (fd for appending, path)."""
    path = segment_path(directory, first_sequence)
    header = encode_segment_header(cluster_id, epoch, first_sequence, chain_in_crc)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except FileExistsError as error:
        raise JournalIOError(path, None, "segment file already exists; refusing to overwrite it") from error
    except OSError as error:
        raise io_error(path, "create", error) from error
    try:
        write_all(fd, path, header, 0)
        if durable:
            fdatasync(fd, path)
            fsync_directory(directory)
    except JournalError:
        os.close(fd)
        raise
    return fd, path


def open_for_appending(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as error:
        raise io_error(path, "open for appending", error) from error


def copy_range_to_evidence(source_fd: int, source_path: str, start: int, end: int, evidence_path: str) -> None:
    """Append bytes [start, end) of a file to an evidence file and make them durable.

    The evidence file is appended to when it exists: earlier evidence is never lost.
    """
    created = not os.path.exists(evidence_path)
    try:
        evidence_fd = os.open(evidence_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise io_error(evidence_path, "open evidence file", error) from error
    try:
        position = start
        while position < end:
            piece = read_at(source_fd, source_path, min(COPY_CHUNK_SIZE_BYTES, end - position), position)
            if not piece:
                raise JournalIOError(source_path, position, f"file ended at {position} while copying bytes up to {end} aside")
            write_all(evidence_fd, evidence_path, piece)
            position += len(piece)
        fdatasync(evidence_fd, evidence_path)
    finally:
        os.close(evidence_fd)
    if created:
        fsync_directory(os.path.dirname(evidence_path))


def cut_file(fd: int, path: str, size: int) -> None:
    """Truncate a file to `size` bytes and make the new size durable."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as error:
        raise io_error(path, "truncate", error, size) from error


def move_segment_to_evidence(segment: SegmentFile, evidence_path: str) -> None:
    """Take a whole segment out of the journal, keeping its bytes in `evidence_path`.

    When no evidence file exists yet this is one atomic rename; otherwise the bytes
    are appended to the evidence and the segment removed. Either way the directory is
    fsync'd before returning, so the journal no longer holds the segment after a crash.
    """
    directory = os.path.dirname(segment.path)
    if not os.path.exists(evidence_path):
        try:
            os.rename(segment.path, evidence_path)
        except OSError as error:
            raise io_error(segment.path, "rename to evidence", error) from error
    else:
        fd = open_for_reading(segment.path)
        try:
            copy_range_to_evidence(fd, segment.path, 0, file_size(fd, segment.path), evidence_path)
        finally:
            os.close(fd)
        try:
            os.unlink(segment.path)
        except OSError as error:
            raise io_error(segment.path, "remove", error) from error
    fsync_directory(directory)


def lock_directory(directory: str) -> int:
    """Take the exclusive writer lock of a journal (flock on the directory itself,
    so no lock file is needed). Returns the fd holding it; closing it releases it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise JournalNotFoundError(directory, None, "journal directory does not exist") from error
    except OSError as error:
        raise io_error(directory, "open directory", error) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(fd)
        raise JournalLockedError(directory, None, "another writer (or a repair) holds this journal") from error
    except OSError as error:
        os.close(fd)
        raise io_error(directory, "lock directory", error) from error
    return fd
