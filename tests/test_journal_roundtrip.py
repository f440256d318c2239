"""Journal round trips: append, commit, reopen, read back; segment rolls; reading from
any sequence; replication frames giving byte-identical segment files; the writer's
rules (epochs, limits, closed writer, lock); truncate_after; inspect."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import journal
from journal import (
    JournalClosedError,
    JournalClusterMismatchError,
    JournalEpochRegressionError,
    JournalLockedError,
    JournalNotFoundError,
    JournalRecordTooLargeError,
    JournalSequenceRangeError,
    JournalUsageError,
    JournalWriter,
)
from journal.format import SEGMENT_HEADER_SIZE_BYTES, encode_frame

CLUSTER = 42


def write_journal(directory, bodies, *, segment_size_bytes_max=512, batch=7, epoch_of=lambda index: 0, durability="none"):
    """Append `bodies` in commits of `batch`; returns the expected records."""
    writer = JournalWriter.open(directory, CLUSTER, durability=durability, segment_size_bytes_max=segment_size_bytes_max)
    expected = []
    crc = writer.last_crc
    for index, body in enumerate(bodies):
        sequence = writer.append(epoch_of(index), 1_000 + index, body)
        _, crc = encode_frame(sequence, epoch_of(index), 1_000 + index, body, crc)
        expected.append(journal.Record(sequence, epoch_of(index), 1_000 + index, body, crc))
        if (index + 1) % batch == 0:
            writer.commit()
    writer.commit()
    writer.close()
    return expected


def segment_names(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".journal"))


def test_append_commit_reopen_read(tmp_path):
    directory = tmp_path / "j"
    writer = JournalWriter.open(directory, CLUSTER)
    assert writer.recovery.state == "empty"
    assert [writer.append(0, 10, b"a"), writer.append(0, 11, b""), writer.append(0, 12, b"c" * 1000)] == [1, 2, 3]
    assert writer.durable_sequence == 0 and writer.last_sequence == 3
    assert writer.commit() == 3
    assert writer.durable_sequence == 3
    writer.close()
    records = list(journal.read_records(directory))
    assert [(r.sequence, r.epoch, r.timestamp_ns, r.body) for r in records] == [(1, 0, 10, b"a"), (2, 0, 11, b""), (3, 0, 12, b"c" * 1000)]
    reopened = JournalWriter.open(directory, CLUSTER)
    assert reopened.recovery.state == "clean"
    assert (reopened.last_sequence, reopened.last_crc) == (3, records[-1].crc)
    assert reopened.append(0, 13, b"d") == 4
    reopened.close()
    assert [r.sequence for r in journal.read_records(directory)] == [1, 2, 3, 4]


def test_segment_file_names_and_rolls(tmp_path):
    expected = write_journal(tmp_path, [bytes([index % 256]) * (index % 50) for index in range(200)], segment_size_bytes_max=400)
    names = segment_names(tmp_path)
    assert len(names) > 10
    assert names[0] == "00000000000000000001.journal"
    for name in names:
        size = os.path.getsize(tmp_path / name)
        records_in = [r for r in journal.read_records(tmp_path, int(name[:20]))][:1]
        assert size <= 400 or len(records_in) == 1
    assert list(journal.read_records(tmp_path)) == expected
    assert list(journal.read_tuples(tmp_path)) == [r[:4] for r in expected]


def test_oversized_record_sits_alone_in_a_segment(tmp_path):
    bodies = [b"a" * 10, b"b" * 1000, b"c" * 10, b"d" * 10]
    expected = write_journal(tmp_path, bodies, segment_size_bytes_max=200, batch=1)
    assert list(journal.read_records(tmp_path)) == expected
    sizes = {int(name[:20]): os.path.getsize(tmp_path / name) for name in segment_names(tmp_path)}
    assert sizes[2] == SEGMENT_HEADER_SIZE_BYTES + 32 + 1000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_read_from_any_sequence(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("j")
    count = data.draw(st.integers(1, 120))
    bodies = [os.urandom(data.draw(st.integers(0, 60))) for _ in range(count)]
    expected = write_journal(directory, bodies, segment_size_bytes_max=data.draw(st.sampled_from([128, 300, 1000, 1 << 20])))
    start = data.draw(st.integers(1, count + 2))
    stop = data.draw(st.one_of(st.none(), st.integers(start - 1, count + 2)))
    want = [r for r in expected if r.sequence >= start and (stop is None or r.sequence <= stop)]
    assert list(journal.read_records(directory, start, stop)) == want
    assert list(journal.read_tuples(directory, start, stop)) == [r[:4] for r in want]
    frames = b"".join(journal.read_frames(directory, start, stop, batch_size_bytes_max=data.draw(st.integers(1, 500))))
    rebuilt = b"".join(encode_frame(r.sequence, r.epoch, r.timestamp_ns, r.body, prev)[0] for r, prev in zip(want, [_prev(expected, r) for r in want]))
    assert frames == rebuilt


def _prev(expected, record):
    return 0 if record.sequence == 1 else expected[record.sequence - 2].crc


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_frames_replicate_to_byte_identical_segments(tmp_path_factory, data):
    primary = tmp_path_factory.mktemp("primary")
    standby = tmp_path_factory.mktemp("standby") / "j"
    count = data.draw(st.integers(1, 150))
    segment_size = data.draw(st.sampled_from([150, 256, 700, 4096]))
    bodies = [os.urandom(data.draw(st.integers(0, 80))) for _ in range(count)]
    epochs = sorted(data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count)))
    write_journal(primary, bodies, segment_size_bytes_max=segment_size, batch=data.draw(st.integers(1, 20)), epoch_of=lambda index: epochs[index])
    writer = JournalWriter.open(standby, CLUSTER, durability="none", segment_size_bytes_max=segment_size)
    frames = b"".join(journal.read_frames(primary, 1))
    # Regroup the frame stream at frame boundaries the primary never used.
    boundaries, offset = [], 0
    while offset < len(frames):
        boundaries.append(offset)
        offset += 8 + int.from_bytes(frames[offset:offset + 4], "little")
    cuts = sorted(set(data.draw(st.lists(st.sampled_from(boundaries), max_size=10))) | {0, len(frames)})
    for start, end in zip(cuts, cuts[1:]):
        assert writer.append_frames(frames[start:end]) == writer.last_sequence
        if data.draw(st.booleans()):
            writer.commit()
    writer.close()
    assert segment_names(primary) == segment_names(standby)
    for name in segment_names(primary):
        assert (primary / name).read_bytes() == (standby / name).read_bytes(), name


def test_append_frames_rejects_bad_frames_naming_the_peer_offset(tmp_path):
    write_journal(tmp_path / "p", [b"x" * 20] * 10)
    frames = b"".join(journal.read_frames(tmp_path / "p"))
    frame_size = 8 + 24 + 20
    writer = JournalWriter.open(tmp_path / "s", CLUSTER, durability="none")
    damaged = bytearray(frames)
    damaged[3 * frame_size + 40] ^= 1
    with pytest.raises(journal.JournalChainError) as caught:
        writer.append_frames(bytes(damaged), source="replication from 10.0.0.1", source_offset=1000)
    assert caught.value.path == "replication from 10.0.0.1" and caught.value.offset == 1000 + 3 * frame_size
    assert writer.last_sequence == 0 and writer.pending_count == 0  # nothing buffered
    with pytest.raises(journal.JournalCorruptError, match="expecting sequence 1"):
        # A gap: frames from sequence 2 on. Their crcs were seeded by record 1's crc,
        # which this journal does not have, so the chain breaks at the first frame.
        writer.append_frames(frames[frame_size:])
    with pytest.raises(journal.JournalFrameError):
        writer.append_frames(frames[: 2 * frame_size - 5])
    assert writer.append_frames(frames[:frame_size]) == 1
    writer.set_epoch(5)
    with pytest.raises(journal.JournalEpochError):
        writer.append_frames(frames[frame_size:2 * frame_size])  # epoch 0 below the writer's 5
    writer.close()


def test_epochs_only_go_up(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", epoch=2)
    assert writer.epoch == 2
    with pytest.raises(JournalEpochRegressionError):
        writer.append(1, 0, b"")
    writer.append(3, 0, b"")
    assert writer.epoch == 3
    with pytest.raises(JournalEpochRegressionError):
        writer.set_epoch(2)
    writer.set_epoch(7)
    with pytest.raises(JournalEpochRegressionError):
        writer.append(6, 0, b"")
    writer.append(7, 0, b"")
    writer.close()
    reopened = JournalWriter.open(tmp_path, CLUSTER, durability="none", epoch=0)
    assert reopened.epoch == 7
    reopened.close()
    assert [r.epoch for r in journal.read_records(tmp_path)] == [3, 7]


def test_header_epoch_is_the_first_records_epoch(tmp_path):
    write_journal(tmp_path, [b"x" * 30] * 30, segment_size_bytes_max=200, batch=4, epoch_of=lambda index: index // 10)
    summary = journal.inspect(tmp_path)
    assert summary["state"] == "clean"
    for segment in summary["segments"][1:]:
        assert segment["header_epoch"] == segment["first_epoch"]


def test_writer_preconditions(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    with pytest.raises(JournalRecordTooLargeError):
        writer.append(0, 0, b"x" * (journal.BODY_SIZE_BYTES_MAX + 1))
    writer.append(0, 0, b"x" * journal.BODY_SIZE_BYTES_MAX)
    for bad in [(0, -1, b""), (0, 1 << 64, b""), (0, 0, "text"), (0, 0, 12), (None, 0, b""), (0.5, 0, b"")]:
        with pytest.raises(JournalUsageError):
            writer.append(*bad)
    assert writer.last_sequence == 1
    writer.commit()
    with pytest.raises(JournalLockedError):
        JournalWriter.open(tmp_path, CLUSTER)
    with pytest.raises(JournalLockedError):
        journal.recover(tmp_path)
    writer.close()
    writer.close()
    for call in (lambda: writer.append(0, 0, b""), writer.commit, writer.sync, lambda: writer.set_epoch(9)):
        with pytest.raises(JournalClosedError):
            call()
    with pytest.raises(JournalClusterMismatchError):
        JournalWriter.open(tmp_path, CLUSTER + 1)
    with pytest.raises(JournalNotFoundError):
        JournalWriter.open(tmp_path / "missing", CLUSTER, create=False)
    for options in ({"durability": "sometimes"}, {"segment_size_bytes_max": 10}, {"interval_ms": 0}, {"epoch": -1}):
        with pytest.raises(JournalUsageError):
            JournalWriter.open(tmp_path / "other", CLUSTER, **options)


def test_batch_size_is_bounded(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    body = b"x" * (1 << 20)
    appended = 0
    with pytest.raises(JournalUsageError, match="batch full"):
        for _ in range(100):
            writer.append(0, 0, body)
            appended += 1
    assert appended * (len(body) + 32) <= journal.BATCH_SIZE_BYTES_MAX
    writer.commit()
    writer.append(0, 0, body)
    writer.close()
    assert sum(1 for _ in journal.read_records(tmp_path)) == appended + 1


def test_durability_policies(tmp_path, monkeypatch):
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])
    always = JournalWriter.open(tmp_path / "always", CLUSTER, durability="always")
    syncs.clear()
    always.append(0, 0, b"a")
    assert always.commit() == 1 and len(syncs) == 1
    always.close()

    none = JournalWriter.open(tmp_path / "none", CLUSTER, durability="none")
    syncs.clear()
    none.append(0, 0, b"a")
    assert none.commit() == 1 and syncs == []
    none.close()

    interval = JournalWriter.open(tmp_path / "interval", CLUSTER, durability="interval", interval_ms=60_000)
    syncs.clear()
    interval.append(0, 0, b"a")
    assert interval.commit() == 1  # the first sync is due at once
    interval.append(0, 0, b"b")
    assert interval.commit() == 1 and interval.written_sequence == 2  # within the window: not yet
    assert interval.sync_if_due() == 1
    assert interval.sync() == 2
    assert len(syncs) == 2
    interval.close()


def test_sync_under_policy_none_covers_rolled_segments(tmp_path, monkeypatch):
    fsynced = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (fsynced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fdatasync(fd))[1])
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", segment_size_bytes_max=200)
    for index in range(20):
        writer.append(0, index, b"x" * 30)
    writer.commit()
    assert fsynced == []  # "none": not even the rolls sync
    writer.sync()
    assert set(segment_names(tmp_path)) <= {os.path.basename(path) for path in fsynced}
    assert str(tmp_path) in fsynced  # and the directory
    writer.close()


def test_truncate_after(tmp_path):
    expected = write_journal(tmp_path, [bytes([index]) * 40 for index in range(60)], segment_size_bytes_max=300)
    before = {name: (tmp_path / name).read_bytes() for name in segment_names(tmp_path)}
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", segment_size_bytes_max=300)
    report = writer.truncate_after(23)
    assert writer.last_sequence == 23 and writer.last_crc == expected[22].crc
    assert list(journal.read_records(tmp_path)) == expected[:23]
    # Every cut byte is in a .divergent file: later segments whole, the tail's cut part.
    kept = b"".join((tmp_path / name).read_bytes() for name in segment_names(tmp_path))
    evidence = b"".join((tmp_path / (name + ".divergent")).read_bytes() for name in before if (tmp_path / (name + ".divergent")).exists())
    assert len(kept) + len(evidence) == sum(map(len, before.values()))
    assert report.bytes_cut == len(evidence)
    tail = os.path.basename(report.tail_segment_path)
    assert before[tail].startswith((tmp_path / tail).read_bytes())
    assert (tmp_path / (tail + ".divergent")).read_bytes() == before[tail][len((tmp_path / tail).read_bytes()):]
    # Appending continues after the cut, with the same chain.
    writer.append(0, 0, b"new")
    writer.commit()
    writer.close()
    records = list(journal.read_records(tmp_path))
    assert records[:23] == expected[:23] and records[23].body == b"new" and len(records) == 24


@pytest.mark.parametrize("cut", [0, 1, 5, 6, 59])
def test_truncate_after_at_boundaries(tmp_path, cut):
    expected = write_journal(tmp_path, [b"y" * 40] * 60, segment_size_bytes_max=300)
    first_sequences = [int(name[:20]) for name in segment_names(tmp_path)]
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", segment_size_bytes_max=300)
    writer.truncate_after(cut)
    writer.close()
    assert list(journal.read_records(tmp_path)) == expected[:cut]
    assert all(first <= max(cut, 1) for first in (int(name[:20]) for name in segment_names(tmp_path)))
    assert 1 in first_sequences


def test_truncate_refuses_out_of_range(tmp_path):
    write_journal(tmp_path, [b"z"] * 5)
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    with pytest.raises(JournalSequenceRangeError):
        writer.truncate_after(6)
    writer.append(0, 0, b"")
    with pytest.raises(JournalUsageError):
        writer.truncate_after(2)  # uncommitted records buffered
    writer.close()


def test_journal_starting_at_a_given_sequence(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", first_sequence=1000, chain_in_crc=0xDEADBEEF)
    assert writer.append(0, 0, b"a") == 1000
    writer.close()
    assert segment_names(tmp_path) == ["00000000000000001000.journal"]
    assert [r.sequence for r in journal.read_records(tmp_path, 1000)] == [1000]
    with pytest.raises(JournalSequenceRangeError):
        list(journal.read_records(tmp_path, 999))


def test_inspect_summary(tmp_path):
    write_journal(tmp_path, [b"q" * 10] * 50, segment_size_bytes_max=256)
    summary = journal.inspect(tmp_path)
    assert summary["state"] == "clean" and summary["last_sequence"] == 50 and summary["record_count"] == 50
    assert sum(segment["record_count"] for segment in summary["segments"]) == 50
    assert summary["segments"][0]["first_sequence"] == 1
    (tmp_path / "empty").mkdir()
    assert journal.inspect(tmp_path / "empty")["state"] == "empty"


def test_errors_name_file_and_offset_and_pickle():
    import pickle

    error = journal.JournalChainError("/j/00000000000000000001.journal", 128, "record crc mismatch")
    assert str(error) == "/j/00000000000000000001.journal at byte offset 128: record crc mismatch"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is journal.JournalChainError and (copy.path, copy.offset, copy.reason) == (error.path, error.offset, error.reason)


def test_read_records_of_missing_directory_raises():
    with tempfile.TemporaryDirectory() as directory:
        with pytest.raises(JournalNotFoundError):
            list(journal.read_records(os.path.join(directory, "absent")))
