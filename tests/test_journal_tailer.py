"""The tailer follows a live journal across segment rolls, never returns a partial or
unverified record, never skips, and tells a write in progress from damage."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import journal
from journal import JournalCorruptError, JournalError, JournalWriter, Tailer
from journal.format import SEGMENT_HEADER_SIZE_BYTES, encode_frame, encode_segment_header, segment_file_name

CLUSTER = 42


def test_tailer_follows_a_writer_across_segment_rolls(tmp_path):
    generator = random.Random(3)
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", segment_size_bytes_max=300)
    tailer = Tailer(tmp_path, 1)
    seen = []
    for _ in range(120):
        for _ in range(generator.randint(0, 6)):
            writer.append(0, 0, os.urandom(generator.randint(0, 50)))
        writer.commit()
        while True:
            batch = tailer.poll(max_records=generator.randint(1, 5))
            seen.extend(batch)
            if not batch:
                break
        assert [r.sequence for r in seen] == list(range(1, writer.written_sequence + 1))
    writer.close()
    assert len(list(Path(tmp_path).glob("*.journal"))) > 10
    assert seen == list(journal.read_records(tmp_path))
    tailer.close()


def test_tailer_from_a_middle_sequence_and_before_the_journal_exists(tmp_path):
    directory = tmp_path / "j"
    directory.mkdir()
    tailer = Tailer(directory, 37)
    assert tailer.poll() == []
    writer = JournalWriter.open(directory, CLUSTER, durability="none", segment_size_bytes_max=300)
    for index in range(50):
        writer.append(0, index, b"x" * (index % 20))
    assert tailer.poll() == []  # buffered, not written
    writer.commit()
    records = tailer.poll()
    assert [r.sequence for r in records] == list(range(37, 51))
    assert records == list(journal.read_records(directory, 37))
    writer.close()


def test_tailer_never_returns_a_partial_record(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    for index in range(10):
        writer.append(0, index, b"y" * 10)
    writer.commit()
    last_crc, segment = writer.last_crc, Path(writer.segment_path)
    writer.close()
    tailer = Tailer(tmp_path, 1)
    assert len(tailer.poll()) == 10
    frame, _ = encode_frame(11, 0, 11, b"z" * 30, last_crc)
    for size in range(len(frame)):
        with open(segment, "ab") as file:
            file.write(frame[size:size + 1])
        records = tailer.poll()
        if size < len(frame) - 1:
            assert records == [], size
    assert [(r.sequence, r.body) for r in records] == [(11, b"z" * 30)]


def test_a_bad_frame_is_waited_on_until_bytes_follow_it(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    writer.append(0, 0, b"a")
    writer.commit()
    last_crc, segment = writer.last_crc, Path(writer.segment_path)
    writer.close()
    tailer = Tailer(tmp_path, 1)
    assert len(tailer.poll()) == 1
    bad = bytearray(encode_frame(2, 0, 0, b"b" * 8, last_crc)[0])
    bad[-1] ^= 0xFF
    with open(segment, "ab") as file:
        file.write(bytes(bad))
    # Could be a crashed writer's torn tail, which recovery will cut: wait.
    assert tailer.poll() == [] and tailer.poll() == []
    with open(segment, "ab") as file:
        file.write(b"more bytes after a complete, failing frame")
    with pytest.raises(JournalCorruptError) as caught:
        tailer.poll()
    assert caught.value.path == str(segment) and caught.value.offset == SEGMENT_HEADER_SIZE_BYTES + 33


def test_tailer_waits_for_recovery_of_a_torn_tail_and_continues(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    writer.append(0, 0, b"a")
    writer.commit()
    segment = Path(writer.segment_path)
    writer.close()
    tailer = Tailer(tmp_path, 1)
    assert len(tailer.poll()) == 1
    with open(segment, "ab") as file:
        file.write(b"\x30\x00\x00\x00\x01\x02")  # a torn write
    assert tailer.poll() == []
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")  # recovery cuts it
    assert writer.recovery.state == "torn"
    writer.append(0, 0, b"b")
    writer.commit()
    writer.close()
    assert [(r.sequence, r.body) for r in tailer.poll()] == [(2, b"b")]


def test_tailer_waits_for_a_half_written_segment_header(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    writer.append(0, 0, b"a")
    writer.commit()
    last_crc = writer.last_crc
    writer.close()
    tailer = Tailer(tmp_path, 1)
    assert len(tailer.poll()) == 1
    header = encode_segment_header(CLUSTER, 0, 2, last_crc)
    following = tmp_path / segment_file_name(2)
    following.write_bytes(header[:20])
    assert tailer.poll() == []
    frame, _ = encode_frame(2, 0, 0, b"c", last_crc)
    following.write_bytes(header + frame)
    assert [r.sequence for r in tailer.poll()] == [2]


def test_a_later_segment_behind_a_bad_frame_is_corruption(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none", segment_size_bytes_max=150)
    for index in range(6):
        writer.append(0, index, b"d" * 20)
    writer.commit()
    writer.close()
    first = sorted(Path(tmp_path).glob("*.journal"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 1  # the last record of a segment that has a successor
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as caught:
        Tailer(tmp_path, 1).poll()
    assert "later segment exists" in str(caught.value)


def test_tailer_notices_truncation_under_it(tmp_path):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="none")
    for index in range(10):
        writer.append(0, index, b"e")
    writer.commit()
    tailer = Tailer(tmp_path, 1)
    assert len(tailer.poll()) == 10
    writer.truncate_after(4)
    writer.close()
    with pytest.raises(JournalError, match="below the tailer's position"):
        tailer.poll()


def test_poll_limits(tmp_path):
    tailer = Tailer(tmp_path, 1)
    with pytest.raises(journal.JournalUsageError):
        tailer.poll(max_records=0)
    tailer.close()
    with pytest.raises(journal.JournalUsageError):
        tailer.poll()
