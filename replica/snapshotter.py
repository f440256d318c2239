"""Taking snapshots without stalling the apply loop.

`Snapshotter.start(exchange)` forks. The child holds a copy-on-write image of the
exchange frozen at that instant; it encodes the canonical state, reads the journal's
chain value at that sequence, writes the snapshot into LMDB in one transaction, prunes
to the retention count and exits. The parent returns as soon as `fork()` does, so the
apply loop is paused only for the fork itself (copying page tables: milliseconds for
hundreds of megabytes), and goes on applying while the child writes.

Rules that make this safe:
* The child opens its own SnapshotStore: an LMDB environment must not cross a fork.
* The child disables the garbage collector: a collection would touch every object
  header and turn the copy-on-write image into a real copy.
* The child leaves with `os._exit`, never running the parent's atexit handlers or
  flushing its buffers twice.
* One snapshot at a time: `start` refuses while a child is still writing.

`write_snapshot` is the same work done in-process, for a stopped node
(`twinbook snapshot take`) and for tests.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Optional

import journal
import snapshots
from replica.data_directory import DataDirectory
from replica.errors import SnapshotTakeError
from replica.recovery import chain_value_at
from statemachine import STATE_FORMAT_VERSION, Exchange, digest_of, encode_state

RETENTION_DEFAULT = 3


def write_snapshot(directory: DataDirectory, exchange: Exchange, retention: int = RETENTION_DEFAULT) -> snapshots.SnapshotInfo:
    """Encode the exchange and store it as a snapshot at its last sequence."""
    sequence = exchange.last_sequence
    if sequence <= 0:
        raise SnapshotTakeError(f"{directory.root}: nothing applied yet, no snapshot to take")
    store = snapshots.SnapshotStore(directory.snapshots, retention=retention)
    try:
        existing = store.list()
        if existing and existing[0].sequence >= sequence:
            if existing[0].sequence == sequence:
                # Already taken at this sequence: the state there is the same, by
                # determinism, so there is nothing to write.
                return existing[0]
            raise SnapshotTakeError(
                f"{directory.snapshots}: a newer snapshot ({existing[0].sequence}) exists than sequence {sequence}"
            )
        state_bytes = encode_state(exchange)
        chain_value = chain_value_at(directory.journal, sequence)
        info = store.put(sequence, digest_of(state_bytes), chain_value, STATE_FORMAT_VERSION, state_bytes)
        store.prune(retention)
    finally:
        store.close()
    return info


def drop_snapshots_after(directory: DataDirectory, sequence: int) -> None:
    """Delete every snapshot beyond `sequence`: a standby that cut its journal's divergent
    tail after `sequence` must not keep states of that other history (recovery would skip
    them by their chain value; deleting them keeps the store honest)."""
    if not directory.has_snapshots():
        return
    store = snapshots.SnapshotStore(directory.snapshots)
    try:
        for info in store.list():
            if info.sequence > sequence:
                store.delete(info.sequence)
    finally:
        store.close()


@dataclass
class SnapshotOutcome:
    sequence: int
    succeeded: bool
    stall_ns: int  # how long the parent was paused by the fork
    write_ns: int  # from fork to the child's exit, as the parent saw it


class Snapshotter:
    """Forks a child per snapshot; at most one child at a time."""

    def __init__(self, directory: DataDirectory, retention: int = RETENTION_DEFAULT) -> None:
        if retention < 1:
            raise SnapshotTakeError(f"{directory.root}: snapshot retention must be at least 1, not {retention}")
        self.directory = directory
        self.retention = retention
        self._child_pid: Optional[int] = None
        self._child_sequence = 0
        self._started_ns = 0
        self._stall_ns = 0

    @property
    def busy(self) -> bool:
        return self._child_pid is not None

    def start(self, exchange: Exchange) -> int:
        """Fork a child that writes a snapshot of `exchange` now; return its sequence."""
        if self._child_pid is not None:
            raise SnapshotTakeError(
                f"{self.directory.snapshots}: a snapshot at {self._child_sequence} is still being written"
            )
        sequence = exchange.last_sequence
        if sequence <= 0:
            raise SnapshotTakeError(f"{self.directory.root}: nothing applied yet, no snapshot to take")
        # Flush Python's buffers so the child cannot write the parent's pending output.
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:
            self._child_main(exchange)
        self._stall_ns = time.perf_counter_ns() - started
        self._started_ns = started
        self._child_pid = pid
        self._child_sequence = sequence
        return sequence

    def _child_main(self, exchange: Exchange) -> None:
        gc.disable()
        status = 0
        try:
            write_snapshot(self.directory, exchange, self.retention)
        except (snapshots.SnapshotError, journal.JournalError, OSError) as error:
            # An operating fault (a full disk, say): one line naming the store, no
            # traceback; the parent logs the snapshot as FAILED and goes on trading.
            print(f"snapshot at {exchange.last_sequence} not written: {type(error).__name__}: {error}",
                  file=sys.stderr)
            status = 1
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(status)

    def poll(self) -> Optional[SnapshotOutcome]:
        """The outcome once the child has exited, else None (never blocks)."""
        return self._reap(os.WNOHANG)

    def wait(self) -> Optional[SnapshotOutcome]:
        """Block until the child exits; None if there is no child."""
        return self._reap(0)

    def _reap(self, options: int) -> Optional[SnapshotOutcome]:
        if self._child_pid is None:
            return None
        pid, status = os.waitpid(self._child_pid, options)
        if pid == 0:
            return None
        outcome = SnapshotOutcome(
            self._child_sequence,
            os.waitstatus_to_exitcode(status) == 0,
            self._stall_ns,
            time.perf_counter_ns() - self._started_ns,
        )
        self._child_pid = None
        return outcome
