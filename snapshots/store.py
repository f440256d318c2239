"""SnapshotStore: snapshots of the state machine, kept in one LMDB environment.

Purpose
    A snapshot is (sequence, digest, state bytes): the state machine's serialised state
    after applying journal record `sequence`, with the journal chain value at that point
    and the caller's state format version. Restart loads the newest snapshot that
    verifies and replays the journal from sequence + 1, so replay time is bounded by the
    snapshot interval, not by the age of the journal. The store knows nothing about
    orders: it keeps bytes, checks them against the digest, and keeps a bounded number.

How it works
    The environment is a directory (LMDB `subdir=True`: data.mdb + lock.mdb) with three
    named databases. Layout version 1, big-endian, byte offsets above each box
    (snapshots/layout.py has the full diagram and is the authority):

      "store"  b"layout" ->  0          8        10           16
                             | TBSNAPST | layout | zero       |   what this is
                             |  magic   | u16=1  |            |

      "meta"   key           0                     8
                             | sequence u64        |               one per snapshot
               value         0      4      6      8          16      20      24
                             | TBSM | lay- | for- | sequence | chain | chunk |
                             |      | out  | mat  |   u64    |  u32  | count |
                             24          32      36          44            76    80
                             | state     | chunk | created   | digest      | crc |
                             | size u64  | size  | unix ns   | blake2b-256 | 32  |

      "chunks" key           0                     8          12
                             | sequence u64        | index u32 |   sorted by LMDB
               value         chunk-size bytes of state (the last chunk: the rest)

    put() writes every chunk, then the metadata record, then prunes to the retention,
    all in ONE LMDB write transaction. LMDB commits by writing the new pages, fsyncing
    them, then flipping one of its two meta pages (and fsyncing that, sync=True and
    metasync=True): a process killed at any point before the flip leaves the previous
    committed state, byte for byte. So a snapshot is either fully there or not there,
    and a SIGKILL during a put never damages the snapshots already stored.

    The metadata record is what makes a snapshot exist; it is written last inside the
    transaction. Inside one transaction the order does not change what a reader sees
    (nothing is visible before commit), but it means the record that claims "these
    chunks hash to this digest" is only written once the chunks have been written and
    hashed, and the caller's digest checked against them.

    Every read verifies: the metadata CRC, each chunk's presence and exact length, and
    blake2b-256 over the state bytes against the stored digest (the caller's canonical
    state digest, by contract blake2b-256 of the state bytes, checked again on put).
    LMDB has no checksums of its own, so a flipped bit on disk is only caught here.
    read_newest_good() walks from the newest snapshot down and returns the first that
    verifies, with the verdicts of those it skipped.

Limits (snapshots/limits.py)
    chunk size 1 MiB (4 KiB..16 MiB), state size <= 4 GiB (per store, lower if asked),
    retention 1..64 snapshots kept after each put, map size 1 MiB..1 TiB, map growths
    per write <= 8, reader slots 126.

Map size
    LMDB needs its maximum size (the map) up front; it is address space, not disk (the
    file grows as pages are written). Before a put the store makes sure the free room
    at the end of the map covers the state plus headroom, growing the map if not (the
    state size is known for put(); for put_chunks() it is the size hint, or the newest
    snapshot's size). If LMDB still reports MapFullError, the transaction is aborted,
    the map doubled (env.set_mapsize) and the put retried, at most 8 times and never
    beyond 1 TiB. A one-shot chunk iterator cannot be replayed: then the map is grown
    and SnapshotMapFullError tells the caller to call again. When another process
    (the snapshot child) has grown the map, LMDB refuses our next transaction with
    MapResizedError; the store adopts the new size (set_mapsize(0)) and retries.

Fork safety
    An LMDB environment must not be used across fork(). The replica forks a child to
    write a snapshot from a copy-on-write image of its state without stalling the apply
    loop; the rules for that are:
      - the parent must NOT have a SnapshotStore open on the path when it forks (it
        needs the store only at start-up and for operator commands: open, use, close).
        The child would inherit the handle, and py-lmdb refuses a second handle on the
        same files in one process, so the child could not open its own;
      - the child opens its OWN SnapshotStore, puts, closes, and leaves with os._exit;
      - the parent may open the store again while the child writes: two processes
        share an environment safely. LMDB serialises writers through its lock file
        with robust mutexes, so a writer killed by SIGKILL does not leave the lock held,
        and readers never block (a put/delete/prune in the parent does wait for the
        child's put to commit).
    Every method checks the process id and raises SnapshotForkError when called in a
    process other than the one that opened the store; opening a path that was open in
    the parent at fork time raises SnapshotStoreOpenError saying so; close() in such a
    process only drops the reference (closing would act on the parent's handle).

A writer killed by SIGKILL
    Its transaction either committed (the snapshot is complete) or did not (nothing
    of it is visible); the older snapshots are untouched either way. One subtlety of
    LMDB: it tells readers in other processes about a commit only after writing the
    meta page, so if the writer dies between the two, a handle that was already open
    keeps seeing the state before that last commit until any process begins a write
    transaction (put, delete, prune, or opening a writable store, which recovers the
    dead writer's lock). The stale view is consistent, only one snapshot older; a put
    at a sequence the dead writer already used is refused with SnapshotSequenceError.

Threads
    One SnapshotStore is meant for one thread at a time (set_mapsize requires that no
    transaction of this process is active). Open it once per process.

Durability
    Opened with sync=True and metasync=True: a put that returned is on disk. Snapshots
    are rare and large, so the fsync is cheap relative to the write, and a snapshot
    that vanished after a power loss would silently lengthen the next recovery.

Read-only
    SnapshotStore(path, readonly=True) is for tools: it never creates anything, raises
    SnapshotStoreNotFoundError if the directory or its data.mdb is missing, and refuses
    put/delete/prune with SnapshotReadOnlyError.
"""

from __future__ import annotations

import builtins
import contextlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import lmdb

from snapshots import layout
from snapshots.errors import (
    LayoutViolation,
    SnapshotArgumentError,
    SnapshotCorruptError,
    SnapshotDigestMismatchError,
    SnapshotForkError,
    SnapshotLayoutError,
    SnapshotMapFullError,
    SnapshotNotFoundError,
    SnapshotReadOnlyError,
    SnapshotSequenceError,
    SnapshotStorageError,
    SnapshotStoreClosedError,
    SnapshotStoreNotFoundError,
    SnapshotStoreOpenError,
    SnapshotTooLargeError,
)
from snapshots.info import SnapshotInfo
from snapshots.limits import (
    CHUNK_COUNT_MAX,
    CHUNK_SIZE_DEFAULT_BYTES,
    CHUNK_SIZE_MAX_BYTES,
    CHUNK_SIZE_MIN_BYTES,
    MAP_GROWTH_ATTEMPTS_MAX,
    MAP_HEADROOM_BYTES,
    MAP_RESIZED_RETRIES_MAX,
    MAP_SIZE_DEFAULT_BYTES,
    MAP_SIZE_MAX_BYTES,
    MAP_SIZE_MIN_BYTES,
    READERS_MAX,
    RETENTION_DEFAULT,
    RETENTION_MAX,
    STATE_SIZE_MAX_BYTES,
)
from snapshots.verdict import GoodSnapshot, SnapshotVerdict

_T = TypeVar("_T")

BytesLike = bytes | bytearray | memoryview

# LMDB forbids opening one environment twice in one process (its fcntl locks belong to
# the process, so closing the second handle would drop the first one's locks). Recent
# py-lmdb refuses this itself; this guard keeps the promise on older versions too.
# Keyed by pid as well: in a forked child, an entry of another pid is a handle
# inherited from the parent, refused with a message that explains fork instead.
_OPEN_PATHS: set[tuple[int, str]] = set()
_OPEN_PATHS_LOCK = threading.Lock()

# LMDB's data file inside the environment directory (subdir=True).
_DATA_FILE_NAME = "data.mdb"


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a sequence number is a bug, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class SnapshotStore:
    """Snapshots keyed by journal sequence in one LMDB environment (a directory).

    See the module docstring for the layout, atomicity, map growth and fork rules.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size_bytes: int = MAP_SIZE_DEFAULT_BYTES,
        retention: int = RETENTION_DEFAULT,
        readonly: bool = False,
        chunk_size_bytes: int = CHUNK_SIZE_DEFAULT_BYTES,
        state_size_max_bytes: int = STATE_SIZE_MAX_BYTES,
    ) -> None:
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            raise SnapshotArgumentError(
                path=repr(self._path), sequence=None, reason="path must be a str path"
            )
        if not _is_int(map_size_bytes) or not MAP_SIZE_MIN_BYTES <= map_size_bytes <= MAP_SIZE_MAX_BYTES:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=f"map_size_bytes {map_size_bytes!r} outside [{MAP_SIZE_MIN_BYTES}, {MAP_SIZE_MAX_BYTES}]",
            )
        if not _is_int(retention) or not 1 <= retention <= RETENTION_MAX:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=f"retention {retention!r} outside [1, {RETENTION_MAX}]",
            )
        if not _is_int(chunk_size_bytes) or not CHUNK_SIZE_MIN_BYTES <= chunk_size_bytes <= CHUNK_SIZE_MAX_BYTES:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=(
                    f"chunk_size_bytes {chunk_size_bytes!r} outside "
                    f"[{CHUNK_SIZE_MIN_BYTES}, {CHUNK_SIZE_MAX_BYTES}]"
                ),
            )
        if not _is_int(state_size_max_bytes) or not 0 <= state_size_max_bytes <= STATE_SIZE_MAX_BYTES:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=f"state_size_max_bytes {state_size_max_bytes!r} outside [0, {STATE_SIZE_MAX_BYTES}]",
            )
        self._readonly = bool(readonly)
        self._retention = retention
        self._chunk_size_bytes = chunk_size_bytes
        self._state_size_max_bytes = state_size_max_bytes
        self._opened_pid = os.getpid()
        self._env: lmdb.Environment | None = None

        if self._readonly:
            # A tool pointed at the wrong directory must hear so, not get a fresh empty
            # environment (LMDB would create one) or an opaque ENOENT from LMDB.
            if not os.path.isdir(self._path):
                raise SnapshotStoreNotFoundError(path=self._path, reason="no such directory")
            if not os.path.isfile(os.path.join(self._path, _DATA_FILE_NAME)):
                raise SnapshotStoreNotFoundError(
                    path=self._path, reason=f"directory holds no LMDB {_DATA_FILE_NAME}"
                )
        elif os.path.exists(self._path) and not os.path.isdir(self._path):
            raise SnapshotStoreOpenError(path=self._path, reason="exists and is not a directory")

        real_path = os.path.realpath(self._path)
        self._registry_key = (self._opened_pid, real_path)
        with _OPEN_PATHS_LOCK:
            if self._registry_key in _OPEN_PATHS:
                raise SnapshotStoreOpenError(
                    path=self._path,
                    reason="already open in this process (LMDB allows one handle per process)",
                )
            for opener_pid, open_path in _OPEN_PATHS:
                if open_path == real_path:
                    # This process is a fork of `opener_pid`, which had the store open:
                    # the inherited handle occupies the files (py-lmdb refuses a second
                    # one) and must never be used here. Say what to do instead.
                    raise SnapshotStoreOpenError(
                        path=self._path,
                        reason=(
                            f"it was open in process {opener_pid} when this process was forked "
                            f"from it; the parent must close its SnapshotStore before fork() so "
                            f"that the child can open its own"
                        ),
                    )
            _OPEN_PATHS.add(self._registry_key)
        try:
            self._env = self._open_environment(map_size_bytes)
            self._store_db, self._meta_db, self._chunk_db = self._open_databases()
        except BaseException:
            if self._env is not None:
                self._env.close()
                self._env = None
            with _OPEN_PATHS_LOCK:
                _OPEN_PATHS.discard(self._registry_key)
            raise

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        return self._path

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def retention(self) -> int:
        return self._retention

    @property
    def chunk_size_bytes(self) -> int:
        return self._chunk_size_bytes

    @property
    def map_size_bytes(self) -> int:
        env = self._usable_env()
        with self._translated("map info", None):
            return int(env.info()["map_size"])

    @property
    def closed(self) -> bool:
        return self._env is None

    def __repr__(self) -> str:
        state = "closed" if self._env is None else ("read-only" if self._readonly else "open")
        return f"SnapshotStore({self._path!r}, {state}, retention={self._retention})"

    # ------------------------------------------------------------------ writing

    def put(
        self,
        sequence: int,
        digest: bytes,
        chain_value: int,
        format_version: int,
        state_bytes: BytesLike,
    ) -> SnapshotInfo:
        """Store the state at `sequence` atomically, then prune to the retention.

        `digest` must be blake2b-256 of `state_bytes` (checked: SnapshotDigestMismatchError
        and nothing stored otherwise); `sequence` must be above the newest stored one.
        """
        self._check_writable("put")
        digest = self._checked_put_arguments(sequence, digest, chain_value, format_version)
        if not isinstance(state_bytes, (bytes, bytearray, memoryview)):
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"state_bytes must be bytes-like, not {type(state_bytes).__name__}",
            )
        state_size_bytes = memoryview(state_bytes).nbytes
        if state_size_bytes > self._state_size_max_bytes:
            raise SnapshotTooLargeError(
                path=self._path,
                sequence=sequence,
                size_bytes=state_size_bytes,
                limit_bytes=self._state_size_max_bytes,
            )
        with self._translated("put", sequence):
            self._make_room(sequence, state_size_bytes)
            return self._put_with_growth(
                sequence, digest, chain_value, format_version, (state_bytes,), replayable=True
            )

    def put_chunks(
        self,
        sequence: int,
        digest: bytes,
        chain_value: int,
        format_version: int,
        chunks: Iterable[BytesLike],
        *,
        size_hint_bytes: int = 0,
    ) -> SnapshotInfo:
        """Like put(), with the state given as consecutive pieces of any size.

        The pieces are hashed and re-cut into chunk-size values as they arrive, so a
        large state is never joined in memory. If the map fills part way, a re-iterable
        `chunks` (a list, or an object whose __iter__ starts over) is replayed after
        growing the map; a one-shot iterator cannot be, so SnapshotMapFullError is
        raised after growing it: call again. `size_hint_bytes` (the expected state size)
        lets the map grow before the transaction starts, which avoids that case.
        """
        self._check_writable("put")
        digest = self._checked_put_arguments(sequence, digest, chain_value, format_version)
        if not _is_int(size_hint_bytes) or not 0 <= size_hint_bytes <= self._state_size_max_bytes:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"size_hint_bytes {size_hint_bytes!r} outside [0, {self._state_size_max_bytes}]",
            )
        if not isinstance(chunks, Iterable) or isinstance(chunks, (bytes, bytearray, memoryview, str)):
            # A bare bytes object is iterable too (of ints): refuse it rather than
            # failing on the first "chunk" being an int.
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason="chunks must be an iterable of bytes-like pieces (use put() for one bytes)",
            )
        replayable = iter(chunks) is not chunks
        with self._translated("put", sequence):
            expected_size_bytes = size_hint_bytes or self._newest_state_size_bytes()
            self._make_room(sequence, expected_size_bytes)
            return self._put_with_growth(
                sequence, digest, chain_value, format_version, chunks, replayable=replayable
            )

    def delete(self, sequence: int) -> None:
        """Delete the snapshot at `sequence` (metadata and chunks, one transaction).

        Works on a corrupt snapshot too: it does not decode the metadata.
        """
        self._check_writable("delete")
        self._check_sequence(sequence)

        def delete_in(txn: lmdb.Transaction) -> None:
            if not self._delete_in(txn, layout.sequence_key(sequence)):
                raise SnapshotNotFoundError(path=self._path, sequence=sequence)

        with self._translated("delete", sequence):
            self._write(sequence, delete_in, replayable=True)

    def prune(self, retention: int) -> builtins.list[int]:
        """Keep the newest `retention` snapshots (0 deletes all); return deleted sequences, ascending.

        Counts snapshots as stored, corrupt ones included: verification is read's job,
        and pruning must not depend on reading gigabytes.
        """
        self._check_writable("prune")
        if not _is_int(retention) or not 0 <= retention <= RETENTION_MAX:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=f"retention {retention!r} outside [0, {RETENTION_MAX}]",
            )
        with self._translated("prune", None):
            return self._write(None, lambda txn: self._prune_in(txn, retention), replayable=True)

    # ------------------------------------------------------------------ reading

    def list(self) -> builtins.list[SnapshotInfo]:
        """Metadata of every stored snapshot, newest first, without reading the chunks.

        Raises SnapshotCorruptError if a metadata record does not decode; check() reports
        per snapshot instead of raising.
        """
        self._usable_env()
        infos: builtins.list[SnapshotInfo] = []
        with self._translated("list", None), self._begin(write=False) as txn:
            cursor = txn.cursor(db=self._meta_db)
            for key, value in cursor.iterprev(keys=True, values=True):
                sequence = self._sequence_of_key(key)
                try:
                    infos.append(layout.decode_meta(key, value))
                except LayoutViolation as violation:
                    raise SnapshotCorruptError(
                        path=self._path, sequence=sequence, reason=f"metadata: {violation.reason}"
                    ) from None
        return infos

    def read(self, sequence: int) -> tuple[SnapshotInfo, bytes]:
        """Return (info, state bytes) of the snapshot at `sequence`, verified.

        Raises SnapshotNotFoundError if absent, SnapshotCorruptError (naming what failed)
        if the metadata, a chunk or the digest does not verify.
        """
        self._usable_env()
        self._check_sequence(sequence)
        key = layout.sequence_key(sequence)
        with self._translated("read", sequence), self._begin(write=False) as txn:
            if txn.get(key, db=self._meta_db) is None:
                raise SnapshotNotFoundError(path=self._path, sequence=sequence)
            verdict, state_bytes = self._verify_in(txn, key)
        if verdict.reason is not None or verdict.info is None or state_bytes is None:
            raise SnapshotCorruptError(path=self._path, sequence=sequence, reason=str(verdict.reason))
        return verdict.info, state_bytes

    def read_newest_good(self) -> GoodSnapshot | None:
        """The newest snapshot that verifies, or None if there is none (full replay).

        Corrupt newer snapshots are skipped, not raised: their verdicts (sequence and
        reason) are in the result's `skipped`, newest first. When None is returned,
        check() says why each stored snapshot was rejected.
        """
        self._usable_env()
        skipped: builtins.list[SnapshotVerdict] = []
        with self._translated("read newest good", None), self._begin(write=False) as txn:
            for key in self._meta_keys_newest_first(txn):
                verdict, state_bytes = self._verify_in(txn, key)
                if verdict.reason is None and verdict.info is not None and state_bytes is not None:
                    return GoodSnapshot(
                        info=verdict.info, state_bytes=state_bytes, skipped=tuple(skipped)
                    )
                skipped.append(verdict)
        return None

    def check(self) -> builtins.list[SnapshotVerdict]:
        """Verify every stored snapshot (reads all chunks); verdicts newest first."""
        self._usable_env()
        verdicts: builtins.list[SnapshotVerdict] = []
        with self._translated("check", None), self._begin(write=False) as txn:
            for key in self._meta_keys_newest_first(txn):
                verdict, _ = self._verify_in(txn, key)
                verdicts.append(verdict)
        return verdicts

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the environment. Idempotent.

        In a forked child (a process other than the opener) it only drops the reference:
        closing there would act on the parent's LMDB handle.
        """
        env = self._env
        if env is None:
            return
        self._env = None
        if os.getpid() != self._opened_pid:
            return
        env.close()
        with _OPEN_PATHS_LOCK:
            _OPEN_PATHS.discard(self._registry_key)

    def __enter__(self) -> SnapshotStore:
        self._usable_env()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals: opening

    def _open_environment(self, map_size_bytes: int) -> lmdb.Environment:
        try:
            env = lmdb.open(
                self._path,
                map_size=_round_up(map_size_bytes, mmap.PAGESIZE),
                subdir=True,
                readonly=self._readonly,
                create=not self._readonly,
                lock=True,
                sync=True,
                metasync=True,
                # writemap=False: LMDB writes pages with write(), so a stray pointer
                # in this process cannot scribble on the database through the map.
                writemap=False,
                max_dbs=layout.DATABASE_COUNT,
                max_readers=READERS_MAX,
                # No cached read transactions: a cached one keeps a reader slot, which
                # a forked child would inherit.
                max_spare_txns=0,
            )
        except lmdb.Error as error:
            raise SnapshotStoreOpenError(path=self._path, reason=str(error)) from error
        try:
            # A process killed with SIGKILL leaves its reader slot behind; a stale slot
            # pins old pages, so pruned snapshots would never be reused and the file
            # would grow. Clearing them on open is cheap.
            env.reader_check()
        except lmdb.Error as error:
            env.close()
            raise SnapshotStoreOpenError(path=self._path, reason=str(error)) from error
        return env

    def _open_databases(self) -> tuple[object, object, object]:
        env = self._env
        if env is None:
            raise SnapshotStoreClosedError(path=self._path)
        try:
            if self._readonly:
                with env.begin(write=False) as txn:
                    self._check_main_database(txn)
                # Opened outside any transaction: py-lmdb forgets database handles
                # opened inside a read-only transaction when it ends.
                store_db = env.open_db(layout.STORE_DATABASE_NAME, create=False)
                meta_db = env.open_db(layout.META_DATABASE_NAME, create=False)
                chunk_db = env.open_db(layout.CHUNK_DATABASE_NAME, create=False)
                with env.begin(write=False) as txn:
                    header = txn.get(layout.STORE_HEADER_KEY, db=store_db)
                if header is None:
                    raise SnapshotLayoutError(path=self._path, reason="no store header record")
                self._check_store_header(header)
                return store_db, meta_db, chunk_db
            with env.begin(write=True) as txn:
                self._check_main_database(txn)
                store_db = env.open_db(layout.STORE_DATABASE_NAME, txn=txn, create=True)
                meta_db = env.open_db(layout.META_DATABASE_NAME, txn=txn, create=True)
                chunk_db = env.open_db(layout.CHUNK_DATABASE_NAME, txn=txn, create=True)
                header = txn.get(layout.STORE_HEADER_KEY, db=store_db)
                if header is None:
                    if txn.stat(meta_db)["entries"] or txn.stat(chunk_db)["entries"]:
                        raise SnapshotLayoutError(
                            path=self._path, reason="holds snapshot data but no store header record"
                        )
                    txn.put(layout.STORE_HEADER_KEY, layout.encode_store_header(), db=store_db)
                else:
                    self._check_store_header(header)
        except lmdb.NotFoundError as error:
            raise SnapshotLayoutError(
                path=self._path, reason=f"not a twinbook snapshot store (missing database: {error})"
            ) from error
        except lmdb.IncompatibleError as error:
            raise SnapshotLayoutError(
                path=self._path, reason=f"not a twinbook snapshot store ({error})"
            ) from error
        except (lmdb.CorruptedError, lmdb.PageNotFoundError) as error:
            raise SnapshotCorruptError(path=self._path, sequence=None, reason=str(error)) from error
        except lmdb.Error as error:
            raise SnapshotStoreOpenError(path=self._path, reason=str(error)) from error
        return store_db, meta_db, chunk_db

    def _check_main_database(self, txn: lmdb.Transaction) -> None:
        # With named databases the main database holds one key per database name. Any
        # other key means some other program's environment: refuse to add ours to it.
        allowed = {layout.STORE_DATABASE_NAME, layout.META_DATABASE_NAME, layout.CHUNK_DATABASE_NAME}
        cursor = txn.cursor()
        for checked, key in enumerate(cursor.iternext(keys=True, values=False)):
            if checked >= len(allowed) or bytes(key) not in allowed:
                raise SnapshotLayoutError(
                    path=self._path,
                    reason=f"not a twinbook snapshot store (unexpected key {bytes(key)[:32]!r})",
                )

    def _check_store_header(self, header: bytes) -> None:
        try:
            layout_version = layout.decode_store_header(header)
        except LayoutViolation as violation:
            raise SnapshotLayoutError(path=self._path, reason=violation.reason) from None
        if layout_version != layout.LAYOUT_VERSION:
            raise SnapshotLayoutError(
                path=self._path,
                reason=(
                    f"written with layout version {layout_version}, this code reads "
                    f"version {layout.LAYOUT_VERSION}"
                ),
            )

    # ------------------------------------------------------------------ internals: checks

    def _usable_env(self) -> lmdb.Environment:
        env = self._env
        if env is None:
            raise SnapshotStoreClosedError(path=self._path)
        current_pid = os.getpid()
        if current_pid != self._opened_pid:
            raise SnapshotForkError(
                path=self._path, opened_pid=self._opened_pid, current_pid=current_pid
            )
        return env

    def _check_writable(self, operation: str) -> None:
        self._usable_env()
        if self._readonly:
            raise SnapshotReadOnlyError(path=self._path, operation=operation)

    def _check_sequence(self, sequence: int) -> None:
        if not _is_int(sequence) or not 0 <= sequence <= layout.SEQUENCE_MAX:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=None,
                reason=f"sequence {sequence!r} is not an integer in [0, {layout.SEQUENCE_MAX}]",
            )

    def _checked_put_arguments(
        self, sequence: int, digest: bytes, chain_value: int, format_version: int
    ) -> bytes:
        self._check_sequence(sequence)
        if not isinstance(digest, (bytes, bytearray, memoryview)):
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"digest must be bytes, not {type(digest).__name__}",
            )
        digest = bytes(digest)
        if len(digest) != layout.DIGEST_SIZE_BYTES:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"digest is {len(digest)} bytes, expected {layout.DIGEST_SIZE_BYTES} (blake2b-256)",
            )
        if not _is_int(chain_value) or not 0 <= chain_value <= layout.CHAIN_VALUE_MAX:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"chain_value {chain_value!r} is not a u32",
            )
        if not _is_int(format_version) or not 0 <= format_version <= layout.FORMAT_VERSION_MAX:
            raise SnapshotArgumentError(
                path=self._path,
                sequence=sequence,
                reason=f"format_version {format_version!r} is not a u16",
            )
        return digest

    @contextlib.contextmanager
    def _translated(self, operation: str, sequence: int | None) -> Iterator[None]:
        """Turn raw LMDB errors into this package's errors, naming path and sequence."""
        try:
            yield
        except (lmdb.CorruptedError, lmdb.PageNotFoundError) as error:
            raise SnapshotCorruptError(
                path=self._path, sequence=sequence, reason=f"LMDB reports {error}"
            ) from error
        except lmdb.Error as error:
            raise SnapshotStorageError(
                path=self._path, sequence=sequence, operation=operation, reason=str(error)
            ) from error

    def _sequence_of_key(self, key: bytes) -> int:
        try:
            return layout.decode_sequence_key(key)
        except LayoutViolation as violation:
            raise SnapshotCorruptError(
                path=self._path, sequence=None, reason=f"metadata key: {violation.reason}"
            ) from None

    # ------------------------------------------------------------------ internals: transactions

    def _begin(self, *, write: bool) -> lmdb.Transaction:
        env = self._usable_env()
        for _ in range(MAP_RESIZED_RETRIES_MAX):
            try:
                return env.begin(write=write)
            except lmdb.MapResizedError:
                # Another process (the snapshot child) grew the map past ours: adopt
                # its size. No transaction of ours is open here, as set_mapsize needs.
                env.set_mapsize(0)
        raise SnapshotStorageError(
            path=self._path,
            sequence=None,
            operation="begin transaction",
            reason=f"map resized by another process {MAP_RESIZED_RETRIES_MAX} times in a row",
        )

    def _write(
        self,
        sequence: int | None,
        body: Callable[[lmdb.Transaction], _T],
        *,
        replayable: bool,
    ) -> _T:
        """Run `body` in one write transaction, growing the map on MapFullError (bounded)."""
        env = self._usable_env()
        for growths in range(MAP_GROWTH_ATTEMPTS_MAX + 1):
            try:
                # Leaving the block normally commits; an exception aborts, so nothing
                # of a failed body is ever visible.
                with self._begin(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError as error:
                map_size_bytes = int(env.info()["map_size"])
                if growths == MAP_GROWTH_ATTEMPTS_MAX:
                    raise SnapshotMapFullError(
                        path=self._path,
                        sequence=sequence if sequence is not None else -1,
                        map_size_bytes=map_size_bytes,
                        reason=f"still full after growing the map {growths} times",
                    ) from error
                grown_bytes = self._grow_map(sequence, map_size_bytes * 2)
                if not replayable:
                    raise SnapshotMapFullError(
                        path=self._path,
                        sequence=sequence if sequence is not None else -1,
                        map_size_bytes=grown_bytes,
                        reason=(
                            "the map filled part way through a one-shot chunk iterator; the "
                            f"map has grown to {grown_bytes} bytes, call put_chunks again "
                            "with a fresh iterator (or pass size_hint_bytes)"
                        ),
                    ) from error
        raise AssertionError("unreachable: the loop returns or raises")

    def _grow_map(self, sequence: int | None, wanted_bytes: int) -> int:
        env = self._usable_env()
        map_size_bytes = int(env.info()["map_size"])
        if map_size_bytes >= MAP_SIZE_MAX_BYTES:
            raise SnapshotMapFullError(
                path=self._path,
                sequence=sequence if sequence is not None else -1,
                map_size_bytes=map_size_bytes,
                reason=f"the map is at its limit of {MAP_SIZE_MAX_BYTES} bytes",
            )
        new_size_bytes = _round_up(min(max(wanted_bytes, map_size_bytes), MAP_SIZE_MAX_BYTES), mmap.PAGESIZE)
        env.set_mapsize(new_size_bytes)
        return int(env.info()["map_size"])

    def _make_room(self, sequence: int, state_size_bytes: int) -> None:
        """Grow the map before a put if the room after the last used page looks too small.

        The estimate ignores LMDB's free list (pages of pruned snapshots it can reuse),
        so it errs towards growing: growing costs address space, not disk.
        """
        env = self._usable_env()
        info = env.info()
        page_size_bytes = int(env.stat()["psize"])
        used_bytes = (int(info["last_pgno"]) + 1) * page_size_bytes
        chunk_count = layout.chunk_count_for(state_size_bytes, self._chunk_size_bytes)
        # Each chunk is its own run of overflow pages: up to one page of header and
        # rounding per chunk on top of its bytes.
        needed_bytes = state_size_bytes + chunk_count * page_size_bytes + MAP_HEADROOM_BYTES
        map_size_bytes = int(info["map_size"])
        if used_bytes + needed_bytes <= map_size_bytes:
            return
        wanted_bytes = max(map_size_bytes * 2, used_bytes + needed_bytes)
        if used_bytes + needed_bytes > MAP_SIZE_MAX_BYTES:
            raise SnapshotMapFullError(
                path=self._path,
                sequence=sequence,
                map_size_bytes=map_size_bytes,
                reason=(
                    f"needs about {used_bytes + needed_bytes} bytes, beyond the map limit of "
                    f"{MAP_SIZE_MAX_BYTES} bytes"
                ),
            )
        self._grow_map(sequence, wanted_bytes)

    def _newest_state_size_bytes(self) -> int:
        with self._begin(write=False) as txn:
            cursor = txn.cursor(db=self._meta_db)
            if not cursor.last():
                return 0
            try:
                return layout.decode_meta(cursor.key(), cursor.value()).state_size_bytes
            except LayoutViolation:
                # Only an estimate for map growth; the read path reports corruption.
                return 0

    # ------------------------------------------------------------------ internals: put

    def _put_with_growth(
        self,
        sequence: int,
        digest: bytes,
        chain_value: int,
        format_version: int,
        chunks: Iterable[BytesLike],
        *,
        replayable: bool,
    ) -> SnapshotInfo:
        def put_in(txn: lmdb.Transaction) -> SnapshotInfo:
            newest_sequence = self._newest_sequence_in(txn)
            if newest_sequence is not None and sequence <= newest_sequence:
                raise SnapshotSequenceError(
                    path=self._path, sequence=sequence, newest_sequence=newest_sequence
                )
            # Chunks without metadata are unreachable leftovers (no code path writes
            # them, but a put must not be blocked or polluted by them): clear the range.
            self._delete_chunks_in(txn, layout.chunk_key_prefix(sequence), sequence)
            hasher = layout.new_state_hasher()
            state_size_bytes = 0
            chunk_count = 0
            for chunk in self._rechunked(chunks, sequence):
                state_size_bytes += len(chunk)
                if state_size_bytes > self._state_size_max_bytes:
                    raise SnapshotTooLargeError(
                        path=self._path,
                        sequence=sequence,
                        size_bytes=state_size_bytes,
                        limit_bytes=self._state_size_max_bytes,
                    )
                hasher.update(chunk)
                txn.put(layout.chunk_key(sequence, chunk_count), chunk, db=self._chunk_db)
                chunk_count += 1
            computed_digest = hasher.digest()
            if computed_digest != digest:
                raise SnapshotDigestMismatchError(
                    path=self._path, sequence=sequence, supplied=digest, computed=computed_digest
                )
            info = SnapshotInfo(
                sequence=sequence,
                digest=digest,
                chain_value=chain_value,
                format_version=format_version,
                state_size_bytes=state_size_bytes,
                chunk_count=chunk_count,
                chunk_size_bytes=self._chunk_size_bytes,
                created_unix_ns=time.time_ns(),
            )
            # Last: the record that makes the snapshot exist, once its chunks are in.
            txn.put(layout.sequence_key(sequence), layout.encode_meta(info), db=self._meta_db)
            self._prune_in(txn, self._retention)
            return info

        return self._write(sequence, put_in, replayable=replayable)

    def _rechunked(self, pieces: Iterable[BytesLike], sequence: int) -> Iterator[BytesLike]:
        """Re-cut pieces of any size into chunk-size values (the last one shorter).

        Whole chunks inside a piece are yielded as zero-copy memoryview slices; only
        chunks spanning two pieces are assembled in a buffer.
        """
        chunk_size_bytes = self._chunk_size_bytes
        pending = bytearray()
        for piece in pieces:
            if not isinstance(piece, (bytes, bytearray, memoryview)):
                raise SnapshotArgumentError(
                    path=self._path,
                    sequence=sequence,
                    reason=f"chunk pieces must be bytes-like, not {type(piece).__name__}",
                )
            view = memoryview(piece)
            if view.itemsize != 1 or view.ndim != 1:
                view = view.cast("B")
            offset = 0
            if pending:
                taken = min(chunk_size_bytes - len(pending), len(view))
                pending += view[:taken]
                offset = taken
                if len(pending) < chunk_size_bytes:
                    continue
                yield bytes(pending)
                pending.clear()
            while len(view) - offset >= chunk_size_bytes:
                yield view[offset : offset + chunk_size_bytes]
                offset += chunk_size_bytes
            if offset < len(view):
                pending += view[offset:]
        if pending:
            yield bytes(pending)

    def _newest_sequence_in(self, txn: lmdb.Transaction) -> int | None:
        cursor = txn.cursor(db=self._meta_db)
        if not cursor.last():
            return None
        return self._sequence_of_key(cursor.key())

    # ------------------------------------------------------------------ internals: delete

    def _delete_in(self, txn: lmdb.Transaction, key: bytes) -> bool:
        """Delete one snapshot's metadata and chunks; False if it has no metadata."""
        if not txn.delete(key, db=self._meta_db):
            return False
        sequence = layout.decode_sequence_key(key) if len(key) == layout.SEQUENCE_KEY_SIZE_BYTES else None
        self._delete_chunks_in(txn, key, sequence)
        return True

    def _delete_chunks_in(self, txn: lmdb.Transaction, prefix: bytes, sequence: int | None) -> int:
        cursor = txn.cursor(db=self._chunk_db)
        if not cursor.set_range(prefix):
            return 0
        deleted = 0
        # cursor.delete() moves to the next record; key() is b"" once past the end.
        while bytes(cursor.key()).startswith(prefix):
            if deleted > CHUNK_COUNT_MAX:
                raise SnapshotCorruptError(
                    path=self._path,
                    sequence=sequence,
                    reason=f"more than {CHUNK_COUNT_MAX} chunks under one sequence",
                )
            if not cursor.delete():
                break
            deleted += 1
        return deleted

    def _prune_in(self, txn: lmdb.Transaction, retention: int) -> builtins.list[int]:
        cursor = txn.cursor(db=self._meta_db)
        doomed_keys = [
            bytes(key)
            for position, key in enumerate(cursor.iterprev(keys=True, values=False))
            if position >= retention
        ]
        pruned_sequences: builtins.list[int] = []
        for key in doomed_keys:
            self._delete_in(txn, key)
            if len(key) == layout.SEQUENCE_KEY_SIZE_BYTES:
                pruned_sequences.append(layout.decode_sequence_key(key))
        return sorted(pruned_sequences)

    # ------------------------------------------------------------------ internals: verify

    def _meta_keys_newest_first(self, txn: lmdb.Transaction) -> builtins.list[bytes]:
        cursor = txn.cursor(db=self._meta_db)
        return [bytes(key) for key in cursor.iterprev(keys=True, values=False)]

    def _verify_in(
        self, txn: lmdb.Transaction, key: bytes
    ) -> tuple[SnapshotVerdict, bytes | None]:
        """Verify one snapshot fully; return its verdict and, if good, its state bytes."""
        try:
            sequence = layout.decode_sequence_key(key)
        except LayoutViolation as violation:
            return SnapshotVerdict(sequence=None, info=None, reason=f"metadata key: {violation.reason}"), None
        value = txn.get(key, db=self._meta_db)
        if value is None:
            return SnapshotVerdict(sequence=sequence, info=None, reason="metadata record vanished"), None
        try:
            info = layout.decode_meta(key, value)
        except LayoutViolation as violation:
            return SnapshotVerdict(sequence=sequence, info=None, reason=f"metadata: {violation.reason}"), None
        try:
            state_bytes = self._read_chunks_in(txn, info)
        except SnapshotCorruptError as corrupt:
            return SnapshotVerdict(sequence=sequence, info=info, reason=corrupt.reason), None
        return SnapshotVerdict(sequence=sequence, info=info, reason=None), state_bytes

    def _read_chunks_in(self, txn: lmdb.Transaction, info: SnapshotInfo) -> bytes:
        """Read and verify the chunks of `info`; raise SnapshotCorruptError on any doubt."""
        sequence = info.sequence

        def corrupt(reason: str) -> SnapshotCorruptError:
            return SnapshotCorruptError(path=self._path, sequence=sequence, reason=reason)

        prefix = layout.chunk_key_prefix(sequence)
        hasher = layout.new_state_hasher()
        pieces: builtins.list[bytes] = []
        next_index = 0
        try:
            cursor = txn.cursor(db=self._chunk_db)
            positioned = cursor.set_range(prefix)
            # Bounded: every iteration either consumes the next expected chunk index
            # (at most chunk_count of them) or raises.
            while positioned:
                key = bytes(cursor.key())
                if not key.startswith(prefix):
                    break
                try:
                    _, index = layout.decode_chunk_key(key)
                except LayoutViolation as violation:
                    raise corrupt(f"chunk key: {violation.reason}") from None
                if index >= info.chunk_count:
                    raise corrupt(f"unexpected chunk {index}: metadata says {info.chunk_count} chunks")
                if index != next_index:
                    raise corrupt(f"chunk {next_index} of {info.chunk_count} is missing")
                value = cursor.value()
                expected_length_bytes = layout.chunk_length_bytes(info, index)
                if len(value) != expected_length_bytes:
                    raise corrupt(
                        f"chunk {index} is {len(value)} bytes, expected {expected_length_bytes}"
                    )
                hasher.update(value)
                pieces.append(value)
                next_index += 1
                positioned = cursor.next()
        except (lmdb.CorruptedError, lmdb.PageNotFoundError) as error:
            raise corrupt(f"LMDB reports {error} reading chunk {next_index}") from error
        if next_index != info.chunk_count:
            raise corrupt(f"chunk {next_index} of {info.chunk_count} is missing")
        computed_digest = hasher.digest()
        if computed_digest != info.digest:
            raise corrupt(
                f"digest mismatch: metadata says {info.digest.hex()}, state bytes hash to "
                f"{computed_digest.hex()}"
            )
        return b"".join(pieces)
