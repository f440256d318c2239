"""Damage on disk and crashes: what the store detects, skips and survives.

Bytes are flipped in LMDB's data.mdb itself (LMDB has no checksums, so only the
store's own checks can catch this), chunks are removed behind the store's back, and a
writer process is killed with SIGKILL in the middle of large puts.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest

from snapshots import (
    SnapshotCorruptError,
    SnapshotStore,
    state_digest,
)
from snapshots import layout
from snapshots.limits import MIB

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL_CHUNK_BYTES = 4096


def marked_state(sequence: int, size_bytes: int) -> tuple[bytes, bytes]:
    """A state with a marker that occurs nowhere else, and the marker."""
    marker = f"<<twinbook snapshot {sequence} marker>>".encode()
    filler = random.Random(sequence).randbytes(size_bytes - len(marker))
    half = len(filler) // 2
    return filler[:half] + marker + filler[half:], marker


def flip_everywhere(data_file: Path, needle: bytes, offset_in_needle: int) -> int:
    """Flip one bit of `needle` at every place it occurs in the file; return how many.

    Every occurrence, because LMDB copy-on-write can leave stale copies of a page in
    free space; flipping only the first might miss the live one.
    """
    content = bytearray(data_file.read_bytes())
    flipped = 0
    position = content.find(needle)
    while position != -1:
        content[position + offset_in_needle] ^= 0x01
        flipped += 1
        position = content.find(needle, position + len(needle))
    data_file.write_bytes(bytes(content))
    return flipped


def write_two_snapshots(path: str, size_bytes: int, **options) -> tuple[bytes, bytes, bytes]:
    """Snapshot 1 (older, healthy) and snapshot 2 (newest, marked); return states + marker."""
    state_1, _ = marked_state(1, size_bytes)
    state_2, marker_2 = marked_state(2, size_bytes)
    with SnapshotStore(path, **options) as store:
        store.put(1, state_digest(state_1), 11, 1, state_1)
        store.put(2, state_digest(state_2), 22, 1, state_2)
    return state_1, state_2, marker_2


@pytest.mark.parametrize("size_bytes", [1500, 3 * MIB + 5], ids=["inline-value", "multi-chunk"])
def test_flipped_state_byte_on_disk_is_detected_and_skipped(tmp_path: Path, size_bytes: int) -> None:
    path = str(tmp_path / "snapshots")
    state_1, _, marker_2 = write_two_snapshots(path, size_bytes)
    assert flip_everywhere(Path(path) / "data.mdb", marker_2, offset_in_needle=5) >= 1

    with SnapshotStore(path) as store:
        with pytest.raises(SnapshotCorruptError) as raised:
            store.read(2)
        assert raised.value.sequence == 2
        assert raised.value.path == path
        assert "digest mismatch" in raised.value.reason
        assert path in str(raised.value) and "snapshot 2" in str(raised.value)

        good = store.read_newest_good()
        assert good is not None
        info, state = good
        assert (info.sequence, info.chain_value, state) == (1, 11, state_1)
        assert [(skipped.sequence, "digest mismatch" in (skipped.reason or "")) for skipped in good.skipped] == [
            (2, True)
        ]
        # The metadata is intact: list() still shows both, check() tells them apart.
        assert [info.sequence for info in store.list()] == [2, 1]
        assert [verdict.good for verdict in store.check()] == [False, True]


def test_flipped_metadata_byte_on_disk_is_detected_and_skipped(tmp_path: Path) -> None:
    path = str(tmp_path / "snapshots")
    state_1, state_2, _ = write_two_snapshots(path, 2000)
    # The digest is stored in the metadata record only (the chunks hold the state).
    assert flip_everywhere(Path(path) / "data.mdb", state_digest(state_2), offset_in_needle=0) >= 1

    with SnapshotStore(path) as store:
        with pytest.raises(SnapshotCorruptError, match="metadata crc32 mismatch") as raised:
            store.read(2)
        assert raised.value.sequence == 2
        with pytest.raises(SnapshotCorruptError, match="snapshot 2"):
            store.list()
        good = store.read_newest_good()
        assert good is not None and good.info.sequence == 1 and good.state_bytes == state_1
        assert [(verdict.sequence, verdict.info) for verdict in good.skipped] == [(2, None)]
        # A corrupt snapshot can still be deleted, after which list() works again.
        store.delete(2)
        assert [info.sequence for info in store.list()] == [1]


def test_all_snapshots_corrupt_means_full_replay(tmp_path: Path) -> None:
    path = str(tmp_path / "snapshots")
    state_1, _ = marked_state(1, 2000)
    with SnapshotStore(path) as store:
        store.put(1, state_digest(state_1), 0, 1, state_1)
    assert flip_everywhere(Path(path) / "data.mdb", b"snapshot 1 marker", offset_in_needle=0) >= 1
    with SnapshotStore(path) as store:
        assert store.read_newest_good() is None
        verdicts = store.check()
        assert [(verdict.sequence, verdict.good) for verdict in verdicts] == [(1, False)]
        assert "digest mismatch" in (verdicts[0].reason or "")


def _edit_chunks(path: str, edit) -> None:
    """Change the chunk database behind the store's back (the store is closed)."""
    env = lmdb.open(path, max_dbs=layout.DATABASE_COUNT)
    try:
        chunk_db = env.open_db(layout.CHUNK_DATABASE_NAME, create=False)
        with env.begin(write=True, db=chunk_db) as txn:
            edit(txn)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda txn: txn.delete(layout.chunk_key(2, 1)), "chunk 1 of 4 is missing"),
        (lambda txn: txn.delete(layout.chunk_key(2, 3)), "chunk 3 of 4 is missing"),
        (lambda txn: txn.put(layout.chunk_key(2, 0), b"short"), "chunk 0 is 5 bytes"),
        (lambda txn: txn.put(layout.chunk_key(2, 4), b"extra"), "unexpected chunk 4"),
    ],
    ids=["middle-chunk-missing", "last-chunk-missing", "chunk-truncated", "extra-chunk"],
)
def test_chunk_damage_is_detected_and_skipped(tmp_path: Path, edit, reason: str) -> None:
    path = str(tmp_path / "snapshots")
    state_1, _, _ = write_two_snapshots(
        path, 3 * SMALL_CHUNK_BYTES + 100, chunk_size_bytes=SMALL_CHUNK_BYTES
    )
    _edit_chunks(path, edit)
    with SnapshotStore(path) as store:
        with pytest.raises(SnapshotCorruptError, match=reason):
            store.read(2)
        good = store.read_newest_good()
        assert good is not None and good.info.sequence == 1 and good.state_bytes == state_1
        assert [verdict.sequence for verdict in good.skipped] == [2]


# ---------------------------------------------------------------------------- SIGKILL

KILL_ROUNDS = 3
KILL_FRACTIONS_OF_PUT = (0.1, 0.5, 0.9)
KILLED_STATE_BYTES = 8 * MIB
LINE_TIMEOUT_SECONDS = 20.0

# The writer: puts ever larger sequences of 8 MiB states until killed, announcing
# "begin N" before each put and "done N" once put() has returned (committed, fsynced).
WRITER_SCRIPT = textwrap.dedent(
    """
    import random, sys
    from snapshots import SnapshotStore, state_digest

    path, first_sequence, size_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # A small initial map, so kills also land in the middle of map growth.
    with SnapshotStore(path, map_size_bytes=1 << 20, retention=3) as store:
        for sequence in range(first_sequence, first_sequence + 1000):
            state = random.Random(sequence).randbytes(size_bytes)
            print("begin", sequence, flush=True)
            store.put(sequence, state_digest(state), sequence, 1, state)
            print("done", sequence, flush=True)
    """
)


def expected_state(sequence: int) -> bytes:
    return random.Random(sequence).randbytes(KILLED_STATE_BYTES)


def assert_all_readable(store: SnapshotStore, infos) -> None:
    for info in infos:
        read_info, state = store.read(info.sequence)
        assert state == expected_state(info.sequence)
        assert read_info.chain_value == info.sequence


class LineReader:
    """Read the writer's stdout line by line with a deadline, so a hang fails the test."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._stream = process.stdout
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stream, selectors.EVENT_READ)

    def next_line(self) -> str:
        deadline = time.monotonic() + LINE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._selector.select(timeout=deadline - time.monotonic()):
                line = self._stream.readline()
                if not line:
                    raise AssertionError("writer exited early")
                return line.decode().strip()
        raise AssertionError(f"writer printed nothing for {LINE_TIMEOUT_SECONDS} s")

    def rest(self) -> list[str]:
        return [line.decode().strip() for line in self._stream.readlines()]

    def close(self) -> None:
        self._selector.close()
        self._stream.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_large_puts_leaves_previous_snapshots_intact(tmp_path: Path) -> None:
    path = str(tmp_path / "snapshots")
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    next_sequence = 1
    killed_mid_put = 0
    everything_committed: set[int] = set()
    # The parent keeps its own handle open the whole time, as a node would: it must
    # keep reading and writing after the writer dies holding LMDB's write lock.
    with SnapshotStore(path, retention=3) as store:
        # Kill points spread over a put: early (chunk writes), middle, late (commit and
        # fsync, or just after). Scaled by how long this machine took for the writer's
        # previous put, so they land inside a put on fast and slow disks alike.
        for kill_fraction in KILL_FRACTIONS_OF_PUT[:KILL_ROUNDS]:
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER_SCRIPT, path, str(next_sequence), str(KILLED_STATE_BYTES)],
                stdout=subprocess.PIPE,
                env=environment,
                cwd=str(REPO_ROOT),
            )
            reader = LineReader(writer)
            try:
                # Let one put complete (and time it), then kill inside the next one.
                assert reader.next_line() == f"begin {next_sequence}"
                put_started = time.monotonic()
                assert reader.next_line() == f"done {next_sequence}"
                put_seconds = time.monotonic() - put_started
                assert reader.next_line() == f"begin {next_sequence + 1}"
                time.sleep(put_seconds * kill_fraction)
                writer.send_signal(signal.SIGKILL)
                writer.wait(timeout=LINE_TIMEOUT_SECONDS)
                lines = reader.rest()
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
                reader.close()
            assert writer.returncode == -signal.SIGKILL
            done = [next_sequence] + [int(line.split()[1]) for line in lines if line.startswith("done")]
            begun = [next_sequence + 1] + [int(line.split()[1]) for line in lines if line.startswith("begin")]
            last_done, in_flight = max(done), max(begun)
            everything_committed.update(done)
            killed_mid_put += in_flight > last_done

            # Everything put() returned for is there. The put in flight may have
            # committed just before the kill; LMDB publishes a commit to readers in
            # other processes only after its meta page is written, so until the next
            # write transaction this handle may or may not see it. Both are consistent.
            infos = store.list()
            assert last_done <= infos[0].sequence <= in_flight
            assert_all_readable(store, infos)
            good = store.read_newest_good()
            assert good is not None and good.info.sequence == infos[0].sequence and good.skipped == ()

            # The parent can still write (the dead writer's lock is recovered), above
            # anything the writer may have committed; afterwards it sees everything.
            parent_sequence = in_flight + 1
            parent_state = expected_state(parent_sequence)
            store.put(parent_sequence, state_digest(parent_state), parent_sequence, 1, parent_state)
            infos = store.list()
            sequences = [info.sequence for info in infos]
            # Exactly the newest three of what was committed, with or without the put
            # that was in flight when the writer died.
            committed = everything_committed | {parent_sequence}
            assert sequences in (
                sorted(committed, reverse=True)[:3],
                sorted(committed | {in_flight}, reverse=True)[:3],
            )
            everything_committed.update(sequences)
            assert_all_readable(store, infos)
            next_sequence = parent_sequence + 1
    assert killed_mid_put >= 1, "no kill landed inside a put; the test proved nothing"
