"""The journal writer: buffered appends, group commit, durability policies, segment roll.

How a record gets to disk:
  1. `append(epoch, timestamp_ns, body)` assigns the next sequence, computes the
     record's crc chained to the previous one, builds the frame bytes and buffers them
     in memory. Nothing is written yet, so appending costs no system call.
  2. `commit()` joins every buffered frame and writes them with one os.write (group
     commit), then makes them durable according to the policy:
       always    fdatasync before returning (what a primary acknowledges on);
       interval  fdatasync when the last one is at least interval_ms old; otherwise
                 the bytes wait for the next commit, `sync()` or `sync_if_due()`,
                 which the owner must call on a timer to bound the window;
       none      no fdatasync at all, not even on a segment roll or when a segment
                 is created (tests, benchmarks and bulk imports that call sync()
                 once at the end). After a machine crash such a journal may be
                 torn anywhere, and recovery then refuses it as corrupt.
     commit returns the durable sequence: every record up to it survives a crash.
  3. `commit_async()` does the same write on the caller's thread (so writes stay in
     append order), then runs the fdatasync on a dedicated thread so the event loop
     keeps serving sockets. Overlapping calls share syncs: while one sync runs, later
     commits write and then wait; when it ends, one new sync covers all of them. The
     durable sequence only ever advances to what a finished sync covered. The sync
     thread works on a dup() of the segment fd, so a segment roll meanwhile cannot
     close the fd under it. (A roll itself fdatasyncs the finished segment on the
     caller's thread: one short block per segment, 64 MiB by default.)
     `write_and_start_sync()` is its first half: write now and start the sync, await
     nothing; a later `commit_async()` waits for the sync that covers the records.

Three sequences describe a writer: `last_sequence` (appended, maybe only buffered),
`written_sequence` (handed to the kernel) and `durable_sequence` (fdatasync'd; with
policy "none" it follows written_sequence, because nothing more is promised).

Segment roll. Before a record would make the current segment exceed
`segment_size_bytes_max`, the record starts a new segment instead (a record larger
than a whole segment sits alone in one). The decision is made per record, at append
time, from record sizes only, never from how records were grouped into commits; so a
standby that receives the same records in other batches cuts its segments at the same
places, and its segment files are byte-identical to the primary's. The new segment's
header carries the epoch of its first record and the chain-in crc of the record before
it. A commit whose records span a roll is written with one os.write per segment. On a
roll (policies "always" and "interval") the old segment is fdatasync'd before the new
one is created, and the new file and the directory are fsync'd too, so a crash can
only ever tear the last segment; recovery relies on that.

Epochs. The writer's epoch starts at max(`epoch`, the journal's last epoch), rises
with set_epoch and with every appended record, and never falls: an append or frame
with a lower epoch is refused. This is the fence that keeps an old primary's records
out of a journal that has seen a newer epoch.

Failure. If a write or an fdatasync fails, the writer is fenced: every later call
raises JournalClosedError naming the first failure. After a failed fsync the kernel
may have dropped the dirty pages, so retrying could report durable what is not; the
only safe way on is to reopen, which runs recovery on what is really on disk.

Only one writer may hold a journal: open takes an exclusive flock on the directory.

Limits: a body is at most BODY_SIZE_BYTES_MAX; the records buffered between two
commits are at most BATCH_SIZE_BYTES_MAX bytes (append raises beyond, commit first).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from crc32c import crc32c

from journal.errors import (
    JournalClosedError,
    JournalEpochRegressionError,
    JournalError,
    JournalFrameError,
    JournalIOError,
    JournalNotFoundError,
    JournalRecordTooLargeError,
    JournalSequenceRangeError,
    JournalUsageError,
)
from journal.format import (
    BATCH_SIZE_BYTES_MAX,
    BODY_SIZE_BYTES_MAX,
    FRAME_HEADER_SIZE_BYTES,
    LENGTH_AND_PAYLOAD_HEADER,
    PAYLOAD_HEADER_SIZE_BYTES,
    RECORD_HEAD,
    RECORD_OVERHEAD_BYTES,
    SEGMENT_HEADER_SIZE_BYTES,
    SEGMENT_SIZE_BYTES_DEFAULT,
    SEGMENT_SIZE_BYTES_LIMIT,
    SEGMENT_SIZE_BYTES_MIN,
    U32_MAX,
    U64_MAX,
)
from journal.frames import FRAME_OK, examine_frame, verify_run
from journal.recovery import RecoveryReport, recover_locked
from journal.segment import (
    create_directory,
    create_segment,
    fdatasync,
    fsync_directory,
    io_error,
    lock_directory,
    open_for_appending,
    write_all,
)
from journal.truncation import TruncationReport, truncate_locked

DURABILITY_ALWAYS = "always"
DURABILITY_INTERVAL = "interval"
DURABILITY_NONE = "none"
DURABILITY_POLICIES = (DURABILITY_ALWAYS, DURABILITY_INTERVAL, DURABILITY_NONE)

INTERVAL_MS_MAX = 60_000

# The epoch floor of a writer that may not append any more: above every u64, so the
# single `epoch < floor` comparison of the append hot path also catches a closed or
# failed writer, and the slow path then says which it is.
_EPOCH_FLOOR_UNUSABLE = U64_MAX + 1

_pack_length_and_payload_header = LENGTH_AND_PAYLOAD_HEADER.pack
_pack_record_head = RECORD_HEAD.pack
_unpack_record_head = RECORD_HEAD.unpack_from
_struct_error = struct.error


def _fdatasync_and_close(fd: int) -> None:
    """Runs on the sync thread, on a dup of the segment fd that it owns."""
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class JournalWriter:
    """The single writer of a journal directory. Not thread-safe: one owner thread
    (or event loop) calls it; only the fdatasync of commit_async runs elsewhere."""

    __slots__ = (
        "_directory",
        "_cluster_id",
        "_durability",
        "_interval_ns",
        "_segment_size_bytes_max",
        "_lock_fd",
        "_fd",
        "_segment_path",
        "_segment_size_bytes",
        "_epoch_floor",
        "_epoch",
        "_last_sequence",
        "_last_crc",
        "_written_sequence",
        "_durable_sequence",
        "_pending",
        "_pending_append",
        "_room_bytes",
        "_room_reference_bytes",
        "_segment_room_reference_bytes",
        "_batch_room_reference_bytes",
        "_roll_points",
        "_last_sync_ns",
        "_sync_count",
        "_unsynced_segment_paths",
        "_sync_task",
        "_executor",
        "_failure",
        "_closed",
        "_recovery",
    )

    def __init__(self) -> None:
        raise TypeError("use JournalWriter.open(directory, cluster_id, ...)")

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        cluster_id: int,
        *,
        durability: str = DURABILITY_ALWAYS,
        interval_ms: int = 2,
        segment_size_bytes_max: int = SEGMENT_SIZE_BYTES_DEFAULT,
        create: bool = True,
        epoch: int = 0,
        first_sequence: int = 1,
        chain_in_crc: int = 0,
        recovery_full_scan: bool = True,
    ) -> "JournalWriter":
        """Open (recovering first) or create the journal in `directory`.

        `first_sequence` and `chain_in_crc` only apply when a journal is created: the
        first segment starts at that sequence, its chain seeded by that crc (1 and 0
        for a journal that starts from nothing). `epoch` is the writer's starting
        epoch; the journal's own last epoch wins when it is higher.
        """
        path = os.fspath(directory)
        _check_u64(path, "cluster_id", cluster_id)
        _check_u64(path, "epoch", epoch)
        if durability not in DURABILITY_POLICIES:
            raise JournalUsageError(path, None, f"durability {durability!r} is not one of {', '.join(DURABILITY_POLICIES)}")
        if type(interval_ms) is not int or not 1 <= interval_ms <= INTERVAL_MS_MAX:
            raise JournalUsageError(path, None, f"interval_ms {interval_ms!r} is not within 1..{INTERVAL_MS_MAX}")
        if type(segment_size_bytes_max) is not int or not SEGMENT_SIZE_BYTES_MIN <= segment_size_bytes_max <= SEGMENT_SIZE_BYTES_LIMIT:
            raise JournalUsageError(
                path, None, f"segment_size_bytes_max {segment_size_bytes_max!r} is not within {SEGMENT_SIZE_BYTES_MIN}..{SEGMENT_SIZE_BYTES_LIMIT}"
            )
        if type(first_sequence) is not int or not 1 <= first_sequence <= U64_MAX:
            raise JournalUsageError(path, None, f"first_sequence {first_sequence!r} is not within 1..{U64_MAX}")
        if type(chain_in_crc) is not int or not 0 <= chain_in_crc <= U32_MAX:
            raise JournalUsageError(path, None, f"chain_in_crc {chain_in_crc!r} is not a u32")
        if not os.path.isdir(path):
            if not create:
                raise JournalNotFoundError(path, None, "journal directory does not exist (create=False)")
            create_directory(path)

        writer = object.__new__(cls)
        writer._directory = path
        writer._cluster_id = cluster_id
        writer._durability = durability
        writer._interval_ns = interval_ms * 1_000_000
        writer._segment_size_bytes_max = segment_size_bytes_max
        writer._fd = -1
        writer._lock_fd = lock_directory(path)
        writer._pending = []
        writer._pending_append = writer._pending.append
        writer._roll_points = []
        writer._last_sync_ns = 0
        writer._sync_count = 0
        writer._unsynced_segment_paths = []
        writer._sync_task = None
        writer._executor = None
        writer._failure = None
        writer._closed = False
        try:
            report = recover_locked(path, cluster_id=cluster_id, full_scan=recovery_full_scan)
            writer._recovery = report
            if report.segments:
                tail = report.segments[-1]
                writer._fd = open_for_appending(tail.path)
                writer._segment_path = tail.path
                writer._segment_size_bytes = tail.valid_size_bytes
                writer._last_sequence = report.last_sequence
                writer._last_crc = report.last_crc
                writer._epoch = max(epoch, report.last_epoch)
                # What recovery found may only be in the page cache (the previous
                # process died, the machine did not): make it durable before
                # reporting it so.
                if durability != DURABILITY_NONE:
                    fdatasync(writer._fd, tail.path)
            else:
                if not create:
                    raise JournalNotFoundError(path, None, "journal holds no segment (create=False)")
                writer._fd, writer._segment_path = create_segment(
                    path, cluster_id, epoch, first_sequence, chain_in_crc, durable=durability != DURABILITY_NONE
                )
                writer._segment_size_bytes = SEGMENT_HEADER_SIZE_BYTES
                writer._last_sequence = first_sequence - 1
                writer._last_crc = chain_in_crc
                writer._epoch = epoch
        except BaseException:
            if writer._fd >= 0:
                os.close(writer._fd)
            os.close(writer._lock_fd)
            raise
        writer._epoch_floor = writer._epoch
        writer._written_sequence = writer._last_sequence
        writer._durable_sequence = writer._last_sequence
        writer._reset_room(segment_size_bytes_max - writer._segment_size_bytes)
        return writer

    # ------------------------------------------------------------------ state

    @property
    def directory(self) -> str:
        return self._directory

    @property
    def cluster_id(self) -> int:
        return self._cluster_id

    @property
    def durability(self) -> str:
        return self._durability

    @property
    def epoch(self) -> int:
        """The writer's epoch: no record below it will be accepted."""
        return self._epoch_floor if self._epoch_floor != _EPOCH_FLOOR_UNUSABLE else self._epoch

    @property
    def last_sequence(self) -> int:
        """The last sequence appended (buffered or written)."""
        return self._last_sequence

    @property
    def last_crc(self) -> int:
        """The chain value after the last appended record."""
        return self._last_crc

    @property
    def written_sequence(self) -> int:
        return self._written_sequence

    @property
    def durable_sequence(self) -> int:
        return self._durable_sequence

    @property
    def pending_count(self) -> int:
        return self._last_sequence - self._written_sequence

    @property
    def sync_count(self) -> int:
        """fdatasyncs of segment data done so far (commits, syncs and rolls)."""
        return self._sync_count

    @property
    def segment_path(self) -> str:
        """The segment file appends currently go to."""
        return self._segment_path

    @property
    def recovery(self) -> RecoveryReport:
        """What recovery found (and repaired) when this writer opened the journal."""
        return self._recovery

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ appending

    def append(self, epoch: int, timestamp_ns: int, body: bytes) -> int:
        """Buffer one record; returns its sequence. Written by the next commit."""
        try:
            # One comparison guards both the epoch fence and a closed or failed
            # writer (whose floor is above every epoch); the slow path says which.
            if epoch < self._epoch_floor:
                self._refuse_epoch(epoch)
            body_size = len(body)
            if body_size > BODY_SIZE_BYTES_MAX:
                raise JournalRecordTooLargeError(
                    self._segment_path, None, f"record body of {body_size} bytes is above the maximum {BODY_SIZE_BYTES_MAX}"
                )
            sequence = self._last_sequence + 1
            length = PAYLOAD_HEADER_SIZE_BYTES + body_size
            # One crc32c call over a concatenation beats two calls: the call costs
            # more than hashing a few dozen bytes.
            crc = crc32c(_pack_length_and_payload_header(length, sequence, epoch, timestamp_ns) + body, self._last_crc)
            frame = _pack_record_head(length, crc, sequence, epoch, timestamp_ns) + body
        except (_struct_error, TypeError) as error:
            raise self._bad_append_argument(epoch, timestamp_ns, body, error) from error
        room = self._room_bytes - FRAME_HEADER_SIZE_BYTES - length
        if room < 0:
            room = self._make_room(FRAME_HEADER_SIZE_BYTES + length, sequence, epoch, self._last_crc)
        self._room_bytes = room
        self._pending_append(frame)
        self._last_crc = crc
        self._last_sequence = sequence
        self._epoch_floor = epoch
        return sequence

    def append_frames(self, frames: bytes, *, source: str = "peer frames", source_offset: int = 0) -> int:
        """Buffer records that arrive already framed (from the primary, byte for byte).

        Each frame must verify against this journal's chain: its crc seeded by our last
        crc, its sequence the next one, its epoch not below ours. On any failure
        nothing is buffered and a JournalCorruptError subclass is raised whose path is
        `source` and whose offset is `source_offset` plus the offset inside `frames`.
        Returns the last sequence; commit() (or commit_async()) writes them as usual.
        """
        self._check_usable()
        if not isinstance(frames, bytes):
            frames = bytes(frames)
        total = len(frames)
        if total == 0:
            return self._last_sequence
        if total > BATCH_SIZE_BYTES_MAX:
            raise JournalUsageError(source, source_offset, f"{total} bytes of frames are above the batch maximum {BATCH_SIZE_BYTES_MAX}")
        chain_before = self._last_crc
        end, next_sequence, chain_crc, epoch = verify_run(
            frames, 0, self._last_sequence + 1, chain_before, self._epoch_floor, total // RECORD_OVERHEAD_BYTES + 1, total
        )
        if end != total:
            verdict = examine_frame(frames, end, next_sequence, chain_crc, epoch)
            error_type = verdict.error_type or JournalFrameError
            reason = verdict.reason if verdict.status != FRAME_OK else "frame runs past the end of the frames"
            raise error_type(source, source_offset + end, f"{reason} (frames for {self._segment_path})")
        room = self._room_bytes
        if room - total >= 0:
            self._room_bytes = room - total
            self._pending_append(frames)
        else:
            self._buffer_frames_across_rolls(frames, chain_before, source, source_offset)
        self._last_sequence = next_sequence - 1
        self._last_crc = chain_crc
        self._epoch_floor = epoch
        return next_sequence - 1

    def _buffer_frames_across_rolls(self, frames: bytes, chain_crc: int, source: str, source_offset: int) -> None:
        """Buffer verified frames whose sizes hit a limit: plan rolls frame by frame,
        exactly where append() would have planned them."""
        consumed = self._room_reference_bytes - self._room_bytes
        batch_room = self._batch_room_reference_bytes - consumed
        if len(frames) > batch_room:
            raise JournalUsageError(
                source, source_offset, f"{len(frames)} bytes of frames do not fit the {batch_room} bytes left in this batch: commit first"
            )
        room = self._room_bytes
        start = 0
        offset = 0
        total = len(frames)
        while offset < total:
            length, crc, sequence, epoch, _ = _unpack_record_head(frames, offset)
            frame_size = FRAME_HEADER_SIZE_BYTES + length
            if room - frame_size < 0:
                if offset > start:
                    self._pending_append(frames[start:offset])
                    start = offset
                self._room_bytes = room
                room = self._make_room(frame_size, sequence, epoch, chain_crc)
            else:
                room -= frame_size
            chain_crc = crc
            offset += frame_size
        self._pending_append(frames[start:])
        self._room_bytes = room

    def _make_room(self, frame_size: int, sequence: int, epoch: int, chain_in_crc: int) -> int:
        """The slow path of buffering a frame that does not fit the room left: either
        the batch is full (raise, nothing changed) or the segment is (plan a roll).
        Returns the room left after the frame."""
        consumed = self._room_reference_bytes - self._room_bytes
        segment_room = self._segment_room_reference_bytes - consumed
        batch_room = self._batch_room_reference_bytes - consumed
        if frame_size > batch_room:
            raise JournalUsageError(
                self._segment_path, None, f"batch full: {BATCH_SIZE_BYTES_MAX - batch_room} bytes buffered, limit {BATCH_SIZE_BYTES_MAX}: commit first"
            )
        segment_is_empty = segment_room >= self._segment_size_bytes_max - SEGMENT_HEADER_SIZE_BYTES
        if frame_size > segment_room and not segment_is_empty:
            self._roll_points.append((len(self._pending), sequence, epoch, chain_in_crc))
            segment_room = self._segment_size_bytes_max - SEGMENT_HEADER_SIZE_BYTES
        # A record larger than an empty segment goes in alone; the room goes negative,
        # so the next record rolls.
        return self._set_room(segment_room - frame_size, batch_room - frame_size)

    def _set_room(self, segment_room: int, batch_room: int) -> int:
        room = min(segment_room, batch_room)
        self._room_bytes = room
        self._room_reference_bytes = room
        self._segment_room_reference_bytes = segment_room
        self._batch_room_reference_bytes = batch_room
        return room

    def _reset_room(self, segment_room: int) -> None:
        self._set_room(segment_room, BATCH_SIZE_BYTES_MAX)

    def set_epoch(self, epoch: int) -> None:
        """Raise the writer's epoch (on promotion). Lower than the current: refused;
        equal: nothing to do."""
        self._check_usable()
        _check_u64(self._directory, "epoch", epoch)
        if epoch < self._epoch_floor:
            raise JournalEpochRegressionError(self._segment_path, None, f"set_epoch({epoch}) is below the writer's epoch {self._epoch_floor}")
        self._epoch_floor = epoch

    # ------------------------------------------------------------------ committing

    def commit(self) -> int:
        """Write every buffered record with one os.write (one per segment across a
        roll), make them durable per the policy, and return the durable sequence."""
        if self._pending:
            self._write_pending()
        else:
            self._check_usable()
        if self._durable_sequence >= self._written_sequence:
            return self._durable_sequence
        durability = self._durability
        if durability == DURABILITY_ALWAYS:
            self._sync_now()
        elif durability == DURABILITY_INTERVAL:
            if time.monotonic_ns() - self._last_sync_ns >= self._interval_ns:
                self._sync_now()
        else:
            self._durable_sequence = self._written_sequence
        return self._durable_sequence

    def sync(self) -> int:
        """fdatasync now, whatever the policy; returns the durable sequence. With
        policy "none" this also syncs the segments rolled past and the directory, so
        a bulk import can make the whole journal durable once, at the end."""
        self._check_usable()
        if self._unsynced_segment_paths:
            self._sync_rolled_segments()
        if self._durable_sequence < self._written_sequence or self._durability == DURABILITY_NONE:
            self._sync_now()
        return self._durable_sequence

    def _sync_rolled_segments(self) -> None:
        for path in self._unsynced_segment_paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as error:
                failure = io_error(path, "fsync of a rolled segment", error)
                self._fail(failure)
                raise failure from error
        try:
            fsync_directory(self._directory)
        except JournalIOError as error:
            self._fail(error)
            raise
        self._unsynced_segment_paths.clear()

    def sync_if_due(self) -> int:
        """For policy "interval": fdatasync if written records have waited interval_ms
        or more. The owner calls this on a timer so that the window stays bounded."""
        self._check_usable()
        if self._durable_sequence < self._written_sequence and time.monotonic_ns() - self._last_sync_ns >= self._interval_ns:
            self._sync_now()
        return self._durable_sequence

    async def commit_async(self) -> int:
        """commit() with the fdatasync on a thread; see the module docstring.

        Returns the durable sequence, which (for "always") covers every record
        appended before the call.
        """
        if self._pending:
            self._write_pending()
        else:
            self._check_usable()
        target = self._written_sequence
        if self._durable_sequence >= target:
            return self._durable_sequence
        durability = self._durability
        if durability == DURABILITY_NONE:
            self._durable_sequence = target
            return target
        if durability == DURABILITY_INTERVAL and time.monotonic_ns() - self._last_sync_ns < self._interval_ns and self._sync_task is None:
            return self._durable_sequence
        while self._durable_sequence < target:
            task = self._sync_task
            if task is None:
                task = self._start_sync_task()
            # shield: a caller cancelled while waiting must not cancel a sync that
            # other commits are waiting on too.
            await asyncio.shield(task)
        return self._durable_sequence

    def write_and_start_sync(self) -> int:
        """Write every buffered record now (one os.write per segment, as commit_async
        does) and, under policy "always", start their fdatasync on the sync thread unless
        one is already running; returns the written sequence. Nothing becomes durable
        here: a later `commit_async()` waits for a sync that covers these records (and
        starts one if the running sync began before they were written).

        This lets a caller put batch N+1 on its way to disk before it does the work of
        releasing batch N (the primary's pipelined commit loop). Call it from the event
        loop's thread."""
        if self._pending:
            self._write_pending()
        else:
            self._check_usable()
        if (self._durability == DURABILITY_ALWAYS and self._sync_task is None
                and self._durable_sequence < self._written_sequence):
            # Its failure fences the writer, which the next commit_async() raises;
            # retrieving it here keeps asyncio from also logging it as never retrieved.
            self._start_sync_task().add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._written_sequence

    def _start_sync_task(self) -> asyncio.Task:
        loop = asyncio.get_running_loop()
        covered = self._written_sequence
        try:
            fd = os.dup(self._fd)
        except OSError as error:
            failure = io_error(self._segment_path, "dup for fdatasync", error)
            self._fail(failure)
            raise failure from error
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-fdatasync")
        future = loop.run_in_executor(self._executor, _fdatasync_and_close, fd)
        task = loop.create_task(self._finish_sync(future, covered, self._segment_path))
        self._sync_task = task
        return task

    async def _finish_sync(self, future: asyncio.Future, covered: int, path: str) -> int:
        try:
            await future
        except OSError as error:
            failure = io_error(path, "fdatasync", error)
            self._fail(failure)
            raise failure from error
        finally:
            self._sync_task = None
        # Waiters resume only after this task has returned, so they all see the
        # durable sequence this sync established.
        self._last_sync_ns = time.monotonic_ns()
        self._sync_count += 1
        if covered > self._durable_sequence:
            self._durable_sequence = covered
        return covered

    def pending_frames(self) -> bytes:
        """The frames appended since the last write, byte for byte as they will be written.

        A primary streams exactly these bytes to its standby, whose `append_frames` then
        writes byte-identical segments (segment headers are not frames: each side makes
        its own at the same roll points).
        """
        return b"".join(self._pending)

    def _write_pending(self) -> None:
        self._check_usable()
        pending = self._pending
        rolls = self._roll_points
        try:
            if not rolls:
                self._write(pending[0] if len(pending) == 1 else b"".join(pending))
            else:
                start = 0
                for index, first_sequence, epoch, chain_in_crc in rolls:
                    if index > start:
                        self._write(b"".join(pending[start:index]))
                    self._roll(first_sequence, epoch, chain_in_crc)
                    start = index
                self._write(b"".join(pending[start:]))
        except JournalError as error:
            self._fail(error)
            raise
        rolls.clear()
        pending.clear()
        self._written_sequence = self._last_sequence
        consumed = self._room_reference_bytes - self._room_bytes
        self._reset_room(self._segment_room_reference_bytes - consumed)

    def _write(self, data: bytes) -> None:
        write_all(self._fd, self._segment_path, data, self._segment_size_bytes)
        self._segment_size_bytes += len(data)

    def _roll(self, first_sequence: int, epoch: int, chain_in_crc: int) -> None:
        durable = self._durability != DURABILITY_NONE
        self._written_sequence = first_sequence - 1
        if durable:
            # Everything before the roll point is written; make it durable before
            # the next segment exists, so that only the last segment can be torn.
            fdatasync(self._fd, self._segment_path)
            self._last_sync_ns = time.monotonic_ns()
            self._sync_count += 1
            if first_sequence - 1 > self._durable_sequence:
                self._durable_sequence = first_sequence - 1
        else:
            # Kept so that an explicit sync() can still make the whole journal durable.
            self._unsynced_segment_paths.append(self._segment_path)
        old_fd = self._fd
        self._fd = -1
        os.close(old_fd)
        self._fd, self._segment_path = create_segment(
            self._directory, self._cluster_id, epoch, first_sequence, chain_in_crc, durable=durable
        )
        self._segment_size_bytes = SEGMENT_HEADER_SIZE_BYTES

    def _sync_now(self) -> None:
        covered = self._written_sequence
        try:
            fdatasync(self._fd, self._segment_path)
        except JournalIOError as error:
            self._fail(error)
            raise
        self._last_sync_ns = time.monotonic_ns()
        self._sync_count += 1
        if covered > self._durable_sequence:
            self._durable_sequence = covered

    # ------------------------------------------------------------------ truncation

    def truncate_after(self, sequence: int, keep_path_suffix: str = ".divergent") -> TruncationReport:
        """Cut every record after `sequence` (an old primary rejoining as standby).

        The cut bytes are first appended to `<segment file><keep_path_suffix>` and
        fsync'd; later segments go whole to their own evidence files. Buffered
        records must be committed (or the writer reopened) first. Afterwards the
        writer appends after `sequence`; its epoch does not go down.
        """
        self._check_usable()
        if self._pending:
            raise JournalUsageError(self._segment_path, None, "truncate_after with uncommitted records buffered: commit first")
        _check_u64(self._directory, "sequence", sequence)
        if sequence > self._last_sequence:
            raise JournalSequenceRangeError(self._segment_path, None, f"cannot cut after {sequence}: the journal ends at {self._last_sequence}")
        if sequence == self._last_sequence:
            return TruncationReport(self._directory, sequence, self._last_crc, 0, (), (), self._segment_path)
        os.close(self._fd)
        self._fd = -1
        try:
            report = truncate_locked(self._directory, sequence, keep_path_suffix=keep_path_suffix, cluster_id=self._cluster_id)
            self._fd = open_for_appending(report.tail_segment_path)
            self._segment_path = report.tail_segment_path
            self._segment_size_bytes = os.fstat(self._fd).st_size
            if self._durability != DURABILITY_NONE:
                fdatasync(self._fd, self._segment_path)
        except JournalError as error:
            self._fail(error)
            raise
        except OSError as error:
            failure = io_error(self._segment_path, "reopen after truncation", error)
            self._fail(failure)
            raise failure from error
        self._last_sequence = sequence
        self._last_crc = report.last_crc
        self._written_sequence = sequence
        self._durable_sequence = sequence
        self._reset_room(self._segment_size_bytes_max - self._segment_size_bytes)
        return report

    # ------------------------------------------------------------------ closing

    def close(self, *, commit_pending: bool = True) -> None:
        """Commit what is buffered (unless told not to), sync, release the journal.
        Closing twice is harmless."""
        if self._closed:
            return
        try:
            if self._failure is None:
                if self._pending and commit_pending:
                    self._write_pending()
                if self._durable_sequence < self._written_sequence and self._durability != DURABILITY_NONE:
                    self._sync_now()
        finally:
            self._closed = True
            self._epoch_floor = _EPOCH_FLOOR_UNUSABLE
            self._pending.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(commit_pending=exc_type is None)

    def __repr__(self) -> str:
        return (
            f"JournalWriter({self._directory!r}, cluster_id={self._cluster_id}, last_sequence={self._last_sequence}, "
            f"durable_sequence={self._durable_sequence}, epoch={self.epoch}, durability={self._durability!r})"
        )

    # ------------------------------------------------------------------ failures

    def _fail(self, error: JournalError) -> None:
        if self._failure is None:
            self._failure = error
        self._epoch = self.epoch
        self._epoch_floor = _EPOCH_FLOOR_UNUSABLE

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalClosedError(self._directory, None, "the journal writer is closed")
        if self._failure is not None:
            raise JournalClosedError(
                self._directory, None, f"the journal writer failed earlier and refuses further work; reopen to recover ({self._failure})"
            )

    def _refuse_epoch(self, epoch: int) -> None:
        self._check_usable()
        raise JournalEpochRegressionError(
            self._segment_path, None, f"append with epoch {epoch!r} below the writer's epoch {self._epoch_floor}"
        )

    def _bad_append_argument(self, epoch, timestamp_ns, body, error: Exception) -> JournalUsageError:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            return JournalUsageError(self._segment_path, None, f"record body must be bytes, not {type(body).__name__}")
        for name, value in (("epoch", epoch), ("timestamp_ns", timestamp_ns)):
            if type(value) is not int or not 0 <= value <= U64_MAX:
                return JournalUsageError(self._segment_path, None, f"{name} {value!r} is not a u64")
        if self._last_sequence + 1 > U64_MAX:
            return JournalSequenceRangeError(self._segment_path, None, "sequence space exhausted")
        return JournalUsageError(self._segment_path, None, f"append refused: {error}")


def _check_u64(path: str, name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise JournalUsageError(path, None, f"{name} {value!r} is not a u64")
