"""SnapshotStore behaviour: round trips, ordering, retention, argument checks, map growth,
read-only opening and fork rules. Corruption and crash tests are in
test_snapshot_store_corruption.py; the model-based test in test_snapshot_store_model.py.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import lmdb
import pytest

from snapshots import (
    GoodSnapshot,
    SnapshotArgumentError,
    SnapshotDigestMismatchError,
    SnapshotForkError,
    SnapshotInfo,
    SnapshotLayoutError,
    SnapshotMapFullError,
    SnapshotNotFoundError,
    SnapshotReadOnlyError,
    SnapshotSequenceError,
    SnapshotStore,
    SnapshotStoreClosedError,
    SnapshotStoreNotFoundError,
    SnapshotStoreOpenError,
    SnapshotTooLargeError,
    state_digest,
)
from snapshots import layout
from snapshots.limits import MIB

SMALL_CHUNK_BYTES = 4096


def state_for(sequence: int, size_bytes: int) -> bytes:
    return random.Random(sequence).randbytes(size_bytes)


def put_state(store: SnapshotStore, sequence: int, size_bytes: int = 1000) -> bytes:
    state = state_for(sequence, size_bytes)
    store.put(sequence, state_digest(state), sequence & 0xFFFFFFFF, 7, state)
    return state


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "snapshots")


@pytest.fixture
def store(store_path: str):
    with SnapshotStore(store_path) as opened:
        yield opened


def test_digest_is_blake2b_256() -> None:
    import hashlib

    assert state_digest(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()


def test_small_round_trip(store: SnapshotStore) -> None:
    state = b"the state of the exchange"
    info = store.put(42, state_digest(state), 0xDEADBEEF, 3, state)
    assert info == SnapshotInfo(
        sequence=42,
        digest=state_digest(state),
        chain_value=0xDEADBEEF,
        format_version=3,
        state_size_bytes=len(state),
        chunk_count=1,
        chunk_size_bytes=MIB,
        created_unix_ns=info.created_unix_ns,
    )
    read_info, read_state = store.read(42)
    assert read_info == info
    assert read_state == state
    assert type(read_state) is bytes


def test_empty_state_round_trip(store: SnapshotStore) -> None:
    info = store.put(0, state_digest(b""), 0, 0, b"")
    assert info.chunk_count == 0
    assert store.read(0) == (info, b"")


def test_multi_chunk_round_trip_5_mib(store: SnapshotStore) -> None:
    state = state_for(1, 5 * MIB + 17)
    info = store.put(1, state_digest(state), 1, 1, state)
    assert info.chunk_count == 6
    assert info.state_size_bytes == len(state)
    assert store.read(1)[1] == state


def test_exact_multiple_of_chunk_size(store: SnapshotStore) -> None:
    state = state_for(2, 2 * MIB)
    info = store.put(2, state_digest(state), 0, 0, state)
    assert info.chunk_count == 2
    assert store.read(2)[1] == state


def test_put_chunks_recuts_pieces_of_any_size(store_path: str) -> None:
    state = state_for(3, 50_000)
    pieces = [state[offset : offset + 777] for offset in range(0, len(state), 777)]
    with SnapshotStore(store_path, chunk_size_bytes=SMALL_CHUNK_BYTES) as store:
        info = store.put_chunks(3, state_digest(state), 9, 2, iter(pieces))
        assert info.chunk_count == layout.chunk_count_for(len(state), SMALL_CHUNK_BYTES)
        assert store.read(3)[1] == state
        # Pieces that are exact chunks, empty pieces and bytearray/memoryview pieces too.
        state_4 = state_for(4, 3 * SMALL_CHUNK_BYTES)
        mixed = [
            b"",
            bytearray(state_4[:SMALL_CHUNK_BYTES]),
            memoryview(state_4[SMALL_CHUNK_BYTES:]),
            b"",
        ]
        assert store.put_chunks(4, state_digest(state_4), 0, 0, mixed).chunk_count == 3
        assert store.read(4)[1] == state_4


def test_list_is_newest_first_and_persists(store_path: str) -> None:
    with SnapshotStore(store_path, retention=5) as store:
        for sequence in (5, 17, 1000, 2**63):
            put_state(store, sequence)
        assert [info.sequence for info in store.list()] == [2**63, 1000, 17, 5]
    with SnapshotStore(store_path, readonly=True) as reopened:
        assert [info.sequence for info in reopened.list()] == [2**63, 1000, 17, 5]


def test_put_prunes_to_retention(store_path: str) -> None:
    with SnapshotStore(store_path, retention=3) as store:
        for sequence in range(1, 7):
            put_state(store, sequence)
        assert [info.sequence for info in store.list()] == [6, 5, 4]
        for sequence in (1, 2, 3):
            with pytest.raises(SnapshotNotFoundError):
                store.read(sequence)


def test_prune_keeps_newest_k(store_path: str) -> None:
    with SnapshotStore(store_path, retention=10) as store:
        for sequence in range(10, 16):
            put_state(store, sequence, size_bytes=3 * SMALL_CHUNK_BYTES)
        assert store.prune(4) == [10, 11]
        assert [info.sequence for info in store.list()] == [15, 14, 13, 12]
        assert store.prune(4) == []
        assert store.prune(1) == [12, 13, 14]
        assert store.read(15)[1] == state_for(15, 3 * SMALL_CHUNK_BYTES)
        assert store.prune(0) == [15]
        assert store.list() == []


def test_prune_and_delete_leave_no_chunks_behind(store_path: str) -> None:
    with SnapshotStore(store_path, retention=2, chunk_size_bytes=SMALL_CHUNK_BYTES) as store:
        for sequence in range(1, 6):
            put_state(store, sequence, size_bytes=5 * SMALL_CHUNK_BYTES + 1)
        store.delete(5)
    env = lmdb.open(store_path, max_dbs=layout.DATABASE_COUNT, readonly=True)
    try:
        chunk_db = env.open_db(layout.CHUNK_DATABASE_NAME, create=False)
        with env.begin() as txn:
            sequences = {layout.decode_chunk_key(key)[0] for key, _ in txn.cursor(db=chunk_db)}
    finally:
        env.close()
    assert sequences == {4}


def test_delete(store: SnapshotStore) -> None:
    put_state(store, 1)
    put_state(store, 2)
    store.delete(2)
    assert [info.sequence for info in store.list()] == [1]
    with pytest.raises(SnapshotNotFoundError) as raised:
        store.delete(2)
    assert raised.value.sequence == 2
    assert store.path in str(raised.value)
    # After deleting the newest, a put at a lower sequence than the deleted one is fine.
    put_state(store, 2)


def test_read_newest_good_on_healthy_store(store: SnapshotStore) -> None:
    assert store.read_newest_good() is None
    put_state(store, 1)
    state_2 = put_state(store, 2)
    good = store.read_newest_good()
    assert isinstance(good, GoodSnapshot)
    info, state = good
    assert (info.sequence, state, good.skipped) == (2, state_2, ())
    assert all(verdict.good for verdict in store.check())


def test_read_missing_sequence(store: SnapshotStore) -> None:
    with pytest.raises(SnapshotNotFoundError, match="no snapshot 99 in"):
        store.read(99)


def test_sequence_must_increase(store: SnapshotStore) -> None:
    put_state(store, 10)
    for sequence in (10, 9, 0):
        with pytest.raises(SnapshotSequenceError) as raised:
            put_state(store, sequence)
        assert raised.value.newest_sequence == 10
    assert [info.sequence for info in store.list()] == [10]


def test_digest_mismatch_stores_nothing(store: SnapshotStore) -> None:
    put_state(store, 1)
    state = state_for(2, 3 * MIB)
    with pytest.raises(SnapshotDigestMismatchError) as raised:
        store.put(2, state_digest(state + b"x"), 0, 0, state)
    assert raised.value.sequence == 2 and store.path in str(raised.value)
    assert [info.sequence for info in store.list()] == [1]
    # The aborted transaction left no chunks under sequence 2: a correct put works.
    store.put(2, state_digest(state), 0, 0, state)
    assert store.read(2)[1] == state


@pytest.mark.parametrize(
    ("sequence", "digest", "chain_value", "format_version", "state"),
    [
        (-1, state_digest(b""), 0, 0, b""),
        (2**64, state_digest(b""), 0, 0, b""),
        (True, state_digest(b""), 0, 0, b""),
        (1, b"short", 0, 0, b""),
        (1, "not bytes", 0, 0, b""),
        (1, state_digest(b""), 2**32, 0, b""),
        (1, state_digest(b""), -1, 0, b""),
        (1, state_digest(b""), 0, 2**16, b""),
        (1, state_digest(b""), 0, 0, "text"),
    ],
)
def test_put_preconditions(store: SnapshotStore, sequence, digest, chain_value, format_version, state) -> None:
    with pytest.raises(SnapshotArgumentError):
        store.put(sequence, digest, chain_value, format_version, state)
    assert store.list() == []


def test_put_chunks_refuses_bare_bytes_and_non_bytes_pieces(store: SnapshotStore) -> None:
    with pytest.raises(SnapshotArgumentError, match="iterable of bytes-like"):
        store.put_chunks(1, state_digest(b"ab"), 0, 0, b"ab")
    with pytest.raises(SnapshotArgumentError, match="bytes-like"):
        store.put_chunks(1, state_digest(b"ab"), 0, 0, [b"a", "b"])
    assert store.list() == []


def test_state_size_limit(store_path: str) -> None:
    with SnapshotStore(store_path, state_size_max_bytes=10_000, chunk_size_bytes=SMALL_CHUNK_BYTES) as store:
        state = state_for(1, 10_001)
        with pytest.raises(SnapshotTooLargeError):
            store.put(1, state_digest(state), 0, 0, state)
        pieces = [state[:6000], state[6000:]]
        with pytest.raises(SnapshotTooLargeError):
            store.put_chunks(1, state_digest(state), 0, 0, pieces)
        assert store.list() == []
        put_state(store, 1, size_bytes=10_000)


@pytest.mark.parametrize(
    "options",
    [
        {"retention": 0},
        {"retention": 65},
        {"map_size_bytes": 1000},
        {"chunk_size_bytes": 100},
        {"chunk_size_bytes": 64 * MIB},
        {"state_size_max_bytes": -1},
    ],
)
def test_constructor_preconditions(store_path: str, options: dict) -> None:
    with pytest.raises(SnapshotArgumentError):
        SnapshotStore(store_path, **options)
    # Nothing was left open: a valid open of the same path succeeds.
    SnapshotStore(store_path).close()


def test_prune_preconditions(store: SnapshotStore) -> None:
    for retention in (-1, 65, 1.5):
        with pytest.raises(SnapshotArgumentError):
            store.prune(retention)


def test_map_grows_for_a_put_larger_than_the_map(store_path: str) -> None:
    with SnapshotStore(store_path, map_size_bytes=MIB, retention=2) as store:
        assert store.map_size_bytes == MIB
        state = state_for(1, 6 * MIB)
        store.put(1, state_digest(state), 0, 0, state)
        assert store.map_size_bytes > 6 * MIB
        assert store.read(1)[1] == state


def test_map_full_with_replayable_chunks_is_retried(store_path: str) -> None:
    state = state_for(1, 6 * MIB)
    pieces = [state[offset : offset + 100_000] for offset in range(0, len(state), 100_000)]
    with SnapshotStore(store_path, map_size_bytes=MIB) as store:
        # No size hint and no earlier snapshot: the map can only grow after MapFullError.
        store.put_chunks(1, state_digest(state), 0, 0, pieces)
        assert store.read(1)[1] == state


def test_map_full_with_one_shot_chunks_asks_to_call_again(store_path: str) -> None:
    state = state_for(1, 6 * MIB)

    def pieces():
        for offset in range(0, len(state), 100_000):
            yield state[offset : offset + 100_000]

    with SnapshotStore(store_path, map_size_bytes=MIB) as store:
        with pytest.raises(SnapshotMapFullError, match="call put_chunks again") as raised:
            store.put_chunks(1, state_digest(state), 0, 0, pieces())
        assert raised.value.sequence == 1
        assert store.list() == []
        grown_bytes = store.map_size_bytes
        assert grown_bytes > MIB
        # Called again until it fits (bounded: each failure at least doubles the map).
        for _ in range(8):
            try:
                store.put_chunks(1, state_digest(state), 0, 0, pieces())
                break
            except SnapshotMapFullError:
                continue
        assert store.read(1)[1] == state


def test_size_hint_grows_map_before_one_shot_put(store_path: str) -> None:
    state = state_for(1, 6 * MIB)
    with SnapshotStore(store_path, map_size_bytes=MIB) as store:
        store.put_chunks(
            1, state_digest(state), 0, 0, iter([state[:3 * MIB], state[3 * MIB :]]), size_hint_bytes=len(state)
        )
        assert store.read(1)[1] == state


def test_readonly_opening(store_path: str) -> None:
    with pytest.raises(SnapshotStoreNotFoundError, match="no such directory"):
        SnapshotStore(store_path, readonly=True)
    assert not os.path.exists(store_path)
    os.mkdir(store_path)
    with pytest.raises(SnapshotStoreNotFoundError, match="data.mdb"):
        SnapshotStore(store_path, readonly=True)
    with SnapshotStore(store_path) as store:
        state = put_state(store, 1)
    with SnapshotStore(store_path, readonly=True) as readonly:
        assert readonly.read(1)[1] == state
        with pytest.raises(SnapshotReadOnlyError):
            put_state(readonly, 2)
        with pytest.raises(SnapshotReadOnlyError):
            readonly.delete(1)
        with pytest.raises(SnapshotReadOnlyError):
            readonly.prune(0)


def test_readonly_reader_sees_writer_commits(store_path: str) -> None:
    # A second process would normally hold the writer; within one process LMDB allows a
    # single handle, so the reader is opened after the writer is closed and vice versa.
    with SnapshotStore(store_path) as store:
        put_state(store, 1)
    with SnapshotStore(store_path, readonly=True) as readonly:
        assert [info.sequence for info in readonly.list()] == [1]


def test_foreign_lmdb_environment_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "foreign")
    env = lmdb.open(path)
    with env.begin(write=True) as txn:
        txn.put(b"some", b"thing")
    env.close()
    with pytest.raises(SnapshotLayoutError, match="not a twinbook snapshot store"):
        SnapshotStore(path)


def test_unknown_layout_version_is_refused(store_path: str) -> None:
    SnapshotStore(store_path).close()
    env = lmdb.open(store_path, max_dbs=layout.DATABASE_COUNT)
    store_db = env.open_db(layout.STORE_DATABASE_NAME)
    with env.begin(write=True) as txn:
        txn.put(layout.STORE_HEADER_KEY, layout.STORE_MAGIC + (2).to_bytes(2, "big") + bytes(6), db=store_db)
    env.close()
    with pytest.raises(SnapshotLayoutError, match="layout version 2"):
        SnapshotStore(store_path)


def test_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    with pytest.raises(SnapshotStoreOpenError, match="not a directory"):
        SnapshotStore(str(path))


def test_second_open_in_same_process_is_refused(store: SnapshotStore) -> None:
    with pytest.raises(SnapshotStoreOpenError, match="already open"):
        SnapshotStore(store.path)


def test_closed_store(store_path: str) -> None:
    store = SnapshotStore(store_path)
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(SnapshotStoreClosedError):
        store.list()
    with pytest.raises(SnapshotStoreClosedError):
        put_state(store, 1)


def run_in_fork(child_body) -> bytes:
    """Run child_body() in a forked child; return what it returned (bytes) or its error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        outcome = b"child did not finish"
        try:
            outcome = child_body()
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            outcome = f"{type(error).__name__}: {error}".encode()
        finally:
            os.write(write_fd, outcome)
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as pipe:
        outcome = pipe.read()
    assert os.waitstatus_to_exitcode(status) == 0
    return outcome


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@needs_fork
def test_forked_child_writes_with_its_own_store(store_path: str) -> None:
    with SnapshotStore(store_path) as store:
        put_state(store, 1)
    # The parent closed its store before forking, as the docstring requires.

    def child() -> bytes:
        with SnapshotStore(store_path) as own:
            put_state(own, 2, size_bytes=3 * MIB)
        return b"ok"

    assert run_in_fork(child) == b"ok"
    with SnapshotStore(store_path) as store:
        assert [info.sequence for info in store.list()] == [2, 1]
        assert store.read(2)[1] == state_for(2, 3 * MIB)


@needs_fork
def test_store_open_across_fork_is_refused_in_the_child(store_path: str) -> None:
    with SnapshotStore(store_path) as store:
        put_state(store, 1)

        def child() -> bytes:
            findings = []
            try:
                store.list()
                findings.append("inherited store was usable")
            except SnapshotForkError as error:
                findings.append("fork error" if "fork()" in str(error) else str(error))
            try:
                SnapshotStore(store_path).close()
                findings.append("second handle opened")
            except SnapshotStoreOpenError as error:
                findings.append("open refused" if "forked" in str(error) else str(error))
            store.close()  # only drops the reference in the child
            return "; ".join(findings).encode()

        assert run_in_fork(child) == b"fork error; open refused"
        # The parent's handle is untouched by anything the child did.
        put_state(store, 2)
        assert [info.sequence for info in store.list()] == [2, 1]


def test_bytes_on_disk_follow_the_documented_layout(store_path: str) -> None:
    """The diagram in snapshots/layout.py is a contract: check it against raw LMDB."""
    state = state_for(7, 2 * SMALL_CHUNK_BYTES + 3)
    with SnapshotStore(store_path, chunk_size_bytes=SMALL_CHUNK_BYTES) as store:
        info = store.put(0x0102030405060708, state_digest(state), 0xA1B2C3D4, 0x0E0F, state)
    env = lmdb.open(store_path, max_dbs=layout.DATABASE_COUNT, readonly=True)
    try:
        store_db = env.open_db(b"store", create=False)
        meta_db = env.open_db(b"meta", create=False)
        chunk_db = env.open_db(b"chunks", create=False)
        with env.begin() as txn:
            assert txn.get(b"layout", db=store_db) == b"TBSNAPST" + b"\x00\x01" + bytes(6)
            [(meta_key, meta)] = list(txn.cursor(db=meta_db))
            chunks = list(txn.cursor(db=chunk_db))
    finally:
        env.close()
    assert meta_key == bytes.fromhex("0102030405060708")
    assert len(meta) == 80
    assert meta[0:4] == b"TBSM"
    assert meta[4:6] == b"\x00\x01"  # layout version
    assert meta[6:8] == b"\x0e\x0f"  # caller's format version
    assert meta[8:16] == meta_key
    assert meta[16:20] == bytes.fromhex("a1b2c3d4")
    assert int.from_bytes(meta[20:24], "big") == 3  # chunk count
    assert int.from_bytes(meta[24:32], "big") == len(state)
    assert int.from_bytes(meta[32:36], "big") == SMALL_CHUNK_BYTES
    assert int.from_bytes(meta[36:44], "big") == info.created_unix_ns
    assert meta[44:76] == state_digest(state)
    assert int.from_bytes(meta[76:80], "big") == zlib.crc32(meta[:76])
    assert [key for key, _ in chunks] == [meta_key + index.to_bytes(4, "big") for index in range(3)]
    assert b"".join(value for _, value in chunks) == state
