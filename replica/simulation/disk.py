"""A simulated disk for one simulated node: real journal files, simulated durability.

The node's journal is the real one (journal.JournalWriter, recovery, readers) on real
files in a scratch directory, opened with durability policy "none" so that no call
really syncs. This class keeps the ledger a real disk keeps implicitly: for every file,
how many of its bytes are durable. The simulated node tells it when a simulated
fdatasync completes (`sync`), and `crash` then does what a power cut does to the page
cache: every byte past the durable size of its file is lost, except a torn prefix of
the unsynced writes, which survives either as written or zero-filled (ext4's
data=ordered leaves zeros where a block was allocated but not yet written).

The ledger follows the real writer's promises under policy "always", which is what a
primary acknowledges on: a segment roll syncs the finished segment before the next one
exists, and a new segment's header is made durable when it is created
(`commit_settled`), so only the last segment can ever be torn.

Other faults:
* `flip_bit` flips one bit anywhere in one journal file (at rest, while the node is
  down): recovery must refuse it as corrupt or cut it off as a torn tail, never apply it.
* `read_fault(rng)` is a context manager inside which the first read of this node's
  journal returns one bit flipped (the page cache or the bus returning bad bytes once;
  the file itself is untouched): the reader's check must catch it, and a second read
  (replica/link_journal.py reads twice) must see the good bytes. It wraps the journal
  cursor's one read function, so it sees exactly the bytes a reader checks.
* `flip_snapshot_bit` flips one bit inside the state bytes of one stored snapshot (at
  rest, while the node is down), found by content in LMDB's data file so that only the
  value is damaged, never LMDB's own page structure (which is LMDB's business, tested
  in tests/test_snapshot_store_corruption.py): recovery must skip the snapshot.
* `full(bytes_free)` is a context manager that makes the disk full for the writes made
  inside it, by lowering RLIMIT_FSIZE for the process: the real write() then comes back
  short and fails with EFBIG, exactly the error path of a full disk (SIGXFSZ is ignored
  so the process is not killed). The simulator is single-threaded, so the limit touches
  nothing else.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal

import journal.cursor
import snapshots
from journal.format import SEGMENT_HEADER_SIZE_BYTES
from journal.segment import list_segments

# How a crash treats the unsynced bytes of a file.
TEAR_DROP = "drop"  # all lost
TEAR_PREFIX = "prefix"  # a prefix of them survives as written
TEAR_ZEROS = "zeros"  # the file keeps its length, but past a point it reads zeros


SNAPSHOT_NEEDLE_BYTES = 24


class SimulatedDisk:
    def __init__(self, journal_directory: str, snapshot_directory: str) -> None:
        self.journal_directory = journal_directory
        self.snapshot_directory = snapshot_directory
        self.durable_sizes: dict[str, int] = {}

    def _segment_paths(self) -> list[str]:
        if not os.path.isdir(self.journal_directory):
            return []
        return [segment.path for segment in list_segments(self.journal_directory)]

    def sync(self) -> None:
        """A simulated fdatasync finished: everything written so far is durable."""
        for path in self._segment_paths():
            self.durable_sizes[path] = os.path.getsize(path)

    def commit_settled(self) -> None:
        """After a write: what the real writer made durable on the way (rolls, headers)."""
        paths = self._segment_paths()
        for path in paths[:-1]:
            self.durable_sizes[path] = os.path.getsize(path)
        if paths:
            last = paths[-1]
            if self.durable_sizes.get(last, 0) < SEGMENT_HEADER_SIZE_BYTES:
                self.durable_sizes[last] = min(SEGMENT_HEADER_SIZE_BYTES, os.path.getsize(last))

    def forget_missing(self) -> None:
        """Files cut away (a divergent tail, a torn tail kept as evidence) leave the ledger."""
        present = set(self._segment_paths())
        for path in list(self.durable_sizes):
            if path not in present:
                del self.durable_sizes[path]

    def crash(self, rng: random.Random) -> list[str]:
        """Lose what was not durable; returns a description of each file touched."""
        touched = []
        for path in self._segment_paths():
            size = os.path.getsize(path)
            durable = self.durable_sizes.get(path, 0)
            if size <= durable:
                continue
            unsynced = size - durable
            how = rng.choice((TEAR_DROP, TEAR_PREFIX, TEAR_PREFIX, TEAR_ZEROS))
            if how == TEAR_DROP:
                keep = durable
            else:
                keep = durable + rng.randrange(0, unsynced + 1)
            with open(path, "r+b") as handle:
                if how == TEAR_ZEROS and keep < size:
                    handle.seek(keep)
                    handle.write(bytes(size - keep))
                else:
                    handle.truncate(keep)
            touched.append(f"{os.path.basename(path)}: {how} {unsynced} unsynced bytes at {durable} (kept {keep - durable})")
        return touched

    def flip_bit(self, rng: random.Random) -> str:
        paths = [path for path in self._segment_paths() if os.path.getsize(path) > 0]
        if not paths:
            return "no journal file to flip a bit in"
        path = rng.choice(paths)
        size = os.path.getsize(path)
        offset = rng.randrange(size)
        bit = rng.randrange(8)
        with open(path, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)[0]
            handle.seek(offset)
            handle.write(bytes((byte ^ (1 << bit),)))
        return f"{os.path.basename(path)} byte {offset} bit {bit}"

    def flip_snapshot_bit(self, rng: random.Random) -> str | None:
        """Flip a bit in one snapshot's state bytes where they lie in LMDB's data file
        (every copy, since copy-on-write may leave stale ones); None if none was found."""
        data_file = os.path.join(self.snapshot_directory, "data.mdb")
        if not os.path.exists(data_file):
            return None
        store = snapshots.SnapshotStore(self.snapshot_directory, readonly=True)
        try:
            infos = store.list()
            if not infos:
                return None
            info = rng.choice(infos)
            _, state = store.read(info.sequence)
        except snapshots.SnapshotError:
            return None  # already damaged
        finally:
            store.close()
        if len(state) < SNAPSHOT_NEEDLE_BYTES:
            return None
        start = rng.randrange(len(state) - SNAPSHOT_NEEDLE_BYTES + 1)
        needle = state[start:start + SNAPSHOT_NEEDLE_BYTES]
        with open(data_file, "rb") as handle:
            data = bytearray(handle.read())
        positions = []
        position = data.find(needle)
        while position >= 0:
            positions.append(position)
            position = data.find(needle, position + 1)
        if not positions:
            return None  # split across pages: leave it
        bit = rng.randrange(8)
        middle = SNAPSHOT_NEEDLE_BYTES // 2
        for position in positions:
            data[position + middle] ^= 1 << bit
        with open(data_file, "r+b") as handle:
            handle.write(data)
        return f"snapshot {info.sequence}: state byte {start + middle} bit {bit} ({len(positions)} copies)"

    @contextlib.contextmanager
    def read_fault(self, rng: random.Random, report):
        """One read of this journal's frames inside returns a flipped bit: the first
        one, or (half of the time) the first one of the newest segment, where a flip
        can pass for a torn tail; `report(text)` is told where, once it happens."""
        real_read_at = journal.cursor.read_at
        directory = os.path.abspath(self.journal_directory)
        paths = self._segment_paths()
        target = os.path.abspath(paths[-1]) if paths and rng.random() < 0.5 else None
        pending = True

        def faulty_read_at(fd: int, path: str, size: int, offset: int) -> bytes:
            nonlocal pending
            data = real_read_at(fd, path, size, offset)
            absolute = os.path.abspath(path)
            if (pending and data and os.path.dirname(absolute) == directory
                    and (target is None or absolute == target)):
                pending = False
                position = rng.randrange(len(data))
                bit = rng.randrange(8)
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                report(f"{os.path.basename(path)} byte {offset + position} bit {bit} read flipped")
                return bytes(flipped)
            return data

        journal.cursor.read_at = faulty_read_at
        try:
            yield
        finally:
            journal.cursor.read_at = real_read_at

    @contextlib.contextmanager
    def full(self, bytes_free: int):
        """Writes inside fail with EFBIG once the segment file would pass its size plus
        `bytes_free` (the limit is per file offset, which is what a journal append grows)."""
        paths = self._segment_paths()
        current = os.path.getsize(paths[-1]) if paths else 0
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (current + bytes_free, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous_handler)
