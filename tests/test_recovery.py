"""Snapshots and crash recovery (issue 4): snapshot + replay equals full replay, corrupt
or foreign snapshots are skipped, a SIGKILL while a snapshot is written loses nothing, a
snapshot that fails on a full disk says so in one line."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import journal
import snapshots
from replica.data_directory import DataDirectory
from replica.recovery import recover_exchange
from replica.snapshotter import Snapshotter, write_snapshot
from statemachine import Exchange, canonical_digest, encode_state
from statemachine.codec import encode_command, encode_events_jsonl
from command_streams import generate_commands

ROOT = Path(__file__).resolve().parent.parent


def write_journal(root: Path, commands: list, cluster_id: int = 9) -> DataDirectory:
    directory = DataDirectory.create(root)
    writer = journal.JournalWriter.open(directory.journal, cluster_id, durability="none", segment_size_bytes_max=64 * 1024)
    try:
        for index, command in enumerate(commands, 1):
            writer.append(0, index * 1000, encode_command(command))
        writer.commit()
        writer.sync()
    finally:
        writer.close()
    return directory


def full_run(commands: list) -> tuple[Exchange, list[bytes]]:
    exchange = Exchange()
    stream = []
    for sequence, command in enumerate(commands, 1):
        stream.append(encode_events_jsonl(exchange.apply(sequence, sequence * 1000, command)))
    return exchange, stream


def collect_events(into: list):
    def sink(sequence, epoch, timestamp_ns, events):
        into.append(encode_events_jsonl(events))

    return sink


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 399), min_size=1, max_size=3, unique=True))
def test_snapshot_plus_replay_equals_full_replay_at_any_cut(tmp_path_factory, seed, cuts):
    commands = generate_commands(400, seed)
    reference, reference_events = full_run(commands)
    directory = write_journal(tmp_path_factory.mktemp("node"), commands)
    for cut in sorted(cuts):
        partial = recover_exchange(directory.root, to_sequence=cut)
        assert partial.last_sequence == cut
        write_snapshot(directory, partial.exchange, retention=5)
    replayed: list[bytes] = []
    result = recover_exchange(directory.root, on_events=collect_events(replayed))
    newest_cut = max(cuts)
    assert result.snapshot_sequence == newest_cut
    assert result.replayed_records == len(commands) - newest_cut
    assert replayed == reference_events[newest_cut:]
    assert result.exchange.state_digest() == reference.state_digest()
    assert encode_state(result.exchange) == encode_state(reference)


def test_recovery_without_snapshots_replays_the_whole_journal(tmp_path):
    commands = generate_commands(300, 3)
    reference, _ = full_run(commands)
    directory = write_journal(tmp_path / "node", commands)
    result = recover_exchange(directory.root)
    assert result.snapshot_sequence == 0 and result.replayed_records == 300
    assert canonical_digest(result.exchange) == canonical_digest(reference)


def _flip_state_bytes_in_lmdb(directory: DataDirectory, state_bytes: bytes) -> None:
    data_file = Path(directory.snapshots) / "data.mdb"
    data = bytearray(data_file.read_bytes())
    # The head of the state (version, sequences, digest sum) is distinctive; its tail is
    # a run of dense column entries that can repeat elsewhere in the file.
    position = data.find(state_bytes[:64])
    assert position >= 0, "snapshot state bytes not found in data.mdb"
    data[position + 40] ^= 0xFF
    data_file.write_bytes(bytes(data))


def test_a_corrupt_newest_snapshot_is_skipped_for_the_older_one(tmp_path):
    commands = generate_commands(300, 5)
    reference, _ = full_run(commands)
    directory = write_journal(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=100).exchange)
    newest = recover_exchange(directory.root, to_sequence=200).exchange
    write_snapshot(directory, newest)
    _flip_state_bytes_in_lmdb(directory, encode_state(newest))
    result = recover_exchange(directory.root)
    assert result.snapshot_sequence == 100
    assert [sequence for sequence, _ in result.skipped_snapshots] == [200]
    assert "200" in result.skipped_snapshots[0][1] or "digest" in result.skipped_snapshots[0][1]
    assert canonical_digest(result.exchange) == canonical_digest(reference)


def test_a_snapshot_from_another_history_is_skipped_by_its_chain_value(tmp_path):
    commands = generate_commands(200, 6)
    directory = write_journal(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=150).exchange)
    # Rewrite the journal with a different history after sequence 100.
    journal.truncate_after(directory.journal, 100)
    other = generate_commands(200, 99)[100:]
    writer = journal.JournalWriter.open(directory.journal, 9, durability="none")
    for index, command in enumerate(other, 101):
        writer.append(0, index * 1000, encode_command(command))
    writer.commit()
    writer.close()
    result = recover_exchange(directory.root)
    assert result.snapshot_sequence == 0
    assert "chain value" in result.skipped_snapshots[0][1]
    reference, _ = full_run(commands[:100] + other)
    assert canonical_digest(result.exchange) == canonical_digest(reference)


def test_forked_snapshot_matches_the_state_at_fork_time_while_the_parent_goes_on(tmp_path):
    commands = generate_commands(300, 8)
    directory = write_journal(tmp_path / "node", commands)
    exchange = recover_exchange(directory.root, to_sequence=200).exchange
    expected = encode_state(exchange)
    snapshotter = Snapshotter(directory)
    assert snapshotter.start(exchange) == 200
    with pytest.raises(Exception, match="still being written"):
        snapshotter.start(exchange)
    # The parent keeps applying while the child writes its copy-on-write image.
    for sequence in range(201, 301):
        exchange.apply(sequence, sequence * 1000, commands[sequence - 1])
    outcome = snapshotter.wait()
    assert outcome.succeeded and outcome.sequence == 200
    store = snapshots.SnapshotStore(directory.snapshots, readonly=True)
    try:
        info, state = store.read(200)
    finally:
        store.close()
    assert state == expected


CHILD_SNAPSHOT_ON_A_FULL_DISK = textwrap.dedent(
    """
    import os, resource, sys
    sys.path.insert(0, {root!r})
    from replica.data_directory import DataDirectory
    from replica.recovery import recover_exchange
    from replica.snapshotter import Snapshotter
    directory = DataDirectory({data!r})
    exchange = recover_exchange(directory.root).exchange
    # No file may grow past what the store holds now: the next snapshot's write fails
    # with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    store_bytes = max(os.path.getsize(os.path.join(directory.snapshots, name))
                      for name in os.listdir(directory.snapshots))
    resource.setrlimit(resource.RLIMIT_FSIZE, (store_bytes, resource.RLIM_INFINITY))
    snapshotter = Snapshotter(directory)
    snapshotter.start(exchange)
    print("succeeded" if snapshotter.wait().succeeded else "failed", flush=True)
    """
)


def test_a_snapshot_that_fails_on_a_full_disk_says_so_in_one_line_naming_the_store(tmp_path):
    commands = generate_commands(2000, 12)
    directory = write_journal(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=10).exchange)
    child = subprocess.run(
        [sys.executable, "-c", CHILD_SNAPSHOT_ON_A_FULL_DISK.format(root=str(ROOT), data=directory.root)],
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == 0 and child.stdout == "failed\n", (child.stdout, child.stderr)
    lines = child.stderr.splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith("snapshot at 2000 not written: ") and directory.snapshots in lines[0], lines
    assert "File too large" in lines[0], lines
    # The store still holds the snapshot written before, intact.
    result = recover_exchange(directory.root)
    assert not result.skipped_snapshots and result.exchange.last_sequence == 2000


CHILD_WRITING_SNAPSHOTS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from replica.data_directory import DataDirectory
    from replica.recovery import recover_exchange
    from replica.snapshotter import write_snapshot
    from replica.recovery import replay
    directory = DataDirectory({data!r})
    result = recover_exchange(directory.root)
    exchange = result.exchange
    print("ready", flush=True)
    cut = exchange.last_sequence
    while cut < 3000:
        cut += 100
        replay(exchange, directory.journal, to_sequence=cut)
        write_snapshot(directory, exchange, retention=2)
    print("done", flush=True)
    """
)


def test_sigkill_while_writing_snapshots_leaves_earlier_ones_intact(tmp_path):
    commands = generate_commands(3000, 11)
    reference, _ = full_run(commands)
    directory = write_journal(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=500).exchange)
    rng = random.Random(4)
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_WRITING_SNAPSHOTS.format(root=str(ROOT), data=directory.root)],
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.01, 0.2))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        result = recover_exchange(directory.root)
        assert not [reason for _, reason in result.skipped_snapshots], result.skipped_snapshots
        assert canonical_digest(result.exchange) == canonical_digest(reference)


def test_a_divergent_cut_drops_the_snapshots_beyond_it_and_keeps_the_rest(tmp_path):
    from replica.snapshotter import drop_snapshots_after

    commands = generate_commands(300, 7)
    directory = write_journal(tmp_path / "node", commands)
    for sequence in (100, 200, 300):
        write_snapshot(directory, recover_exchange(directory.root, to_sequence=sequence).exchange, retention=5)
    drop_snapshots_after(directory, 200)
    store = snapshots.SnapshotStore(directory.snapshots, readonly=True)
    try:
        assert [info.sequence for info in store.list()] == [200, 100]
    finally:
        store.close()
    drop_snapshots_after(DataDirectory.create(str(tmp_path / "empty")), 0)  # no store: nothing to do
