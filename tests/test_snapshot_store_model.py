"""Model-based test: random put / prune / delete / reopen sequences against a dict.

The model is a dict sequence -> (digest, chain value, format version, state bytes) with
the store's rules written out plainly: a put must be above the newest sequence and
then keeps the newest `retention`; prune keeps the newest K; delete needs the sequence
to exist. After every step the store must list, read and pick exactly what the model
says.
"""

from __future__ import annotations

import random
import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from snapshots import (
    SnapshotNotFoundError,
    SnapshotSequenceError,
    SnapshotStore,
    state_digest,
)

RETENTION = 3
CHUNK_SIZE_BYTES = 4096
STATE_SIZE_MAX_BYTES = 3 * CHUNK_SIZE_BYTES + 100  # up to four chunks per snapshot


class SnapshotStoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="twinbook-snapshot-model-")
        self.path = f"{self.directory}/snapshots"
        self.store = self._open()
        self.model: dict[int, tuple[bytes, int, int, bytes]] = {}

    def _open(self) -> SnapshotStore:
        return SnapshotStore(self.path, retention=RETENTION, chunk_size_bytes=CHUNK_SIZE_BYTES)

    def _newest(self) -> int:
        return max(self.model, default=-1)

    def _keep_newest(self, count: int) -> list[int]:
        doomed = sorted(self.model, reverse=True)[count:]
        for sequence in doomed:
            del self.model[sequence]
        return sorted(doomed)

    @rule(
        step=st.integers(min_value=-3, max_value=4),
        size_bytes=st.one_of(
            st.sampled_from([0, 1, CHUNK_SIZE_BYTES, 2 * CHUNK_SIZE_BYTES]),
            st.integers(min_value=0, max_value=STATE_SIZE_MAX_BYTES),
        ),
        chain_value=st.integers(min_value=0, max_value=2**32 - 1),
        format_version=st.integers(min_value=0, max_value=2**16 - 1),
        seed=st.integers(min_value=0, max_value=2**32),
        as_pieces=st.booleans(),
    )
    def put(self, step: int, size_bytes: int, chain_value: int, format_version: int, seed: int, as_pieces: bool) -> None:
        sequence = max(self._newest() + step, 0)
        state = random.Random(seed).randbytes(size_bytes)
        digest = state_digest(state)
        try:
            if as_pieces:
                pieces = [state[offset : offset + 1000] for offset in range(0, len(state), 1000)]
                info = self.store.put_chunks(sequence, digest, chain_value, format_version, pieces)
            else:
                info = self.store.put(sequence, digest, chain_value, format_version, state)
        except SnapshotSequenceError:
            assert sequence <= self._newest()
            return
        assert sequence > self._newest()
        assert (info.sequence, info.state_size_bytes, info.digest) == (sequence, size_bytes, digest)
        self.model[sequence] = (digest, chain_value, format_version, state)
        self._keep_newest(RETENTION)

    @rule(count=st.integers(min_value=0, max_value=RETENTION + 1))
    def prune(self, count: int) -> None:
        assert self.store.prune(count) == self._keep_newest(count)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        candidates = sorted(self.model) + [self._newest() + 1, 0]
        sequence = data.draw(st.sampled_from(candidates))
        try:
            self.store.delete(sequence)
        except SnapshotNotFoundError:
            assert sequence not in self.model
            return
        assert sequence in self.model
        del self.model[sequence]

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        sequence = data.draw(st.sampled_from(sorted(self.model)))
        digest, chain_value, format_version, state = self.model[sequence]
        info, state_read = self.store.read(sequence)
        assert state_read == state
        assert (info.digest, info.chain_value, info.format_version) == (digest, chain_value, format_version)

    @invariant()
    def list_matches_model(self) -> None:
        infos = self.store.list()
        assert [info.sequence for info in infos] == sorted(self.model, reverse=True)
        for info in infos:
            digest, chain_value, format_version, state = self.model[info.sequence]
            assert (info.digest, info.chain_value, info.format_version, info.state_size_bytes) == (
                digest,
                chain_value,
                format_version,
                len(state),
            )

    @invariant()
    def newest_good_matches_model(self) -> None:
        good = self.store.read_newest_good()
        if not self.model:
            assert good is None
            return
        newest = self._newest()
        assert good is not None
        assert (good.info.sequence, good.state_bytes, good.skipped) == (newest, self.model[newest][3], ())

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


SnapshotStoreModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
)
test_snapshot_store_matches_dict_model = SnapshotStoreModel.TestCase
