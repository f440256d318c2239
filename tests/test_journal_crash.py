"""Crash simulation: torn tails at every byte offset, zero fill, a torn segment
header, and a real writer process killed with SIGKILL while it commits."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import journal
from journal import JournalWriter
from journal.format import SEGMENT_HEADER_SIZE_BYTES

CLUSTER = 42
ROOT = Path(__file__).resolve().parent.parent


def build(directory, count, *, segment_size_bytes_max=400, last_body_size=30):
    writer = JournalWriter.open(directory, CLUSTER, durability="none", segment_size_bytes_max=segment_size_bytes_max)
    for index in range(count):
        body = bytes([index % 251]) * (last_body_size if index == count - 1 else index % 37)
        writer.append(index // 10, 5_000 + index, body)
        if index % 5 == 4:
            writer.commit()
    writer.commit()
    writer.close()
    return list(journal.read_records(directory))


def segment_files(directory):
    return sorted(p for p in Path(directory).iterdir() if p.name.endswith(".journal"))


def check_continues(directory, expected_prefix):
    """Open (recovering), append one record, and read everything back."""
    writer = JournalWriter.open(directory, CLUSTER, durability="none", segment_size_bytes_max=400)
    assert writer.last_sequence == len(expected_prefix)
    assert writer.append(9, 1, b"after the crash") == len(expected_prefix) + 1
    writer.commit()
    writer.close()
    records = list(journal.read_records(directory))
    assert records[:-1] == expected_prefix
    assert records[-1].body == b"after the crash" and records[-1].sequence == len(expected_prefix) + 1


def test_cut_inside_the_last_record_at_every_offset(tmp_path):
    original = tmp_path / "original"
    records = build(original, 40)
    last_segment = segment_files(original)[-1]
    data = last_segment.read_bytes()
    frame_size = 32 + len(records[-1].body)
    record_start = len(data) - frame_size
    assert record_start >= SEGMENT_HEADER_SIZE_BYTES
    for cut in range(record_start, len(data)):
        directory = tmp_path / f"cut-{cut}"
        shutil.copytree(original, directory)
        segment = directory / last_segment.name
        with open(segment, "r+b") as file:
            file.truncate(cut)
        writer = JournalWriter.open(directory, CLUSTER, durability="none", segment_size_bytes_max=400)
        report = writer.recovery
        writer.close()
        torn_file = Path(str(segment) + ".torn")
        if cut == record_start:
            assert report.state == "clean" and not torn_file.exists()
        else:
            assert report.state == "torn", cut
            assert report.torn.offset == record_start and report.bytes_cut == cut - record_start
            assert torn_file.read_bytes() == data[record_start:cut]
            assert report.torn_path == str(torn_file)
        assert segment.stat().st_size == record_start
        check_continues(directory, records[:-1])
        shutil.rmtree(directory)


def test_cut_inside_the_header_of_a_freshly_rolled_segment(tmp_path):
    original = tmp_path / "original"
    records = build(original, 40)
    segments = segment_files(original)
    assert len(segments) >= 3
    last = segments[-1]
    header = last.read_bytes()[:SEGMENT_HEADER_SIZE_BYTES]
    kept = [r for r in records if r.sequence < int(last.name[:20])]
    for cut in range(0, SEGMENT_HEADER_SIZE_BYTES + 1):
        directory = tmp_path / f"cut-{cut}"
        shutil.copytree(original, directory)
        segment = directory / last.name
        segment.write_bytes(header[:cut])
        report = journal.recover(directory, cluster_id=CLUSTER)
        torn_file = Path(str(segment) + ".torn")
        if cut == SEGMENT_HEADER_SIZE_BYTES:
            # A complete header and no record yet: a clean, empty last segment.
            assert report.state == "clean" and segment.exists() and not torn_file.exists()
        else:
            assert report.state == "torn" and report.torn.whole_segment
            assert not segment.exists() and torn_file.read_bytes() == header[:cut]
        assert report.last_sequence == len(kept)
        check_continues(directory, kept)
        shutil.rmtree(directory)


def test_zero_filled_header_of_the_last_segment_is_torn(tmp_path):
    records = build(tmp_path, 40)
    last = segment_files(tmp_path)[-1]
    last.write_bytes(bytes(SEGMENT_HEADER_SIZE_BYTES))
    report = journal.recover(tmp_path)
    assert report.state == "torn" and not last.exists()
    check_continues(tmp_path, [r for r in records if r.sequence < int(last.name[:20])])


@pytest.mark.parametrize("zeros", [1, 7, 8, 100, 4096])
def test_zero_fill_after_the_last_record_is_torn(tmp_path, zeros):
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    size = last.stat().st_size
    with open(last, "ab") as file:
        file.write(bytes(zeros))
    report = journal.recover(tmp_path, repair=False)
    assert report.state == "torn" and report.torn.offset == size and not report.repaired
    assert last.stat().st_size == size + zeros  # repair=False only reports
    report = journal.recover(tmp_path)
    assert report.state == "torn" and report.bytes_cut == zeros and last.stat().st_size == size
    assert Path(str(last) + ".torn").read_bytes() == bytes(zeros)
    check_continues(tmp_path, records)


def test_zero_fill_inside_the_last_record_is_torn(tmp_path):
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    data = last.read_bytes()
    frame_size = 32 + len(records[-1].body)
    damaged = data[: len(data) - frame_size + 10] + bytes(frame_size - 10 + 500)
    last.write_bytes(damaged)
    report = journal.recover(tmp_path)
    assert report.state == "torn" and report.torn.offset == len(data) - frame_size
    check_continues(tmp_path, records[:-1])


def test_a_failing_last_record_with_nothing_after_it_is_torn(tmp_path):
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    data = bytearray(last.read_bytes())
    data[-3] ^= 0x40
    last.write_bytes(bytes(data))
    report = journal.recover(tmp_path)
    assert report.state == "torn" and "crc mismatch" in report.torn.reason
    check_continues(tmp_path, records[:-1])


def test_torn_evidence_is_appended_not_overwritten(tmp_path):
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    with open(last, "ab") as file:
        file.write(b"\x01\x02\x03")
    journal.recover(tmp_path)
    with open(last, "ab") as file:
        file.write(b"\x04\x05")
    journal.recover(tmp_path)
    assert Path(str(last) + ".torn").read_bytes() == b"\x01\x02\x03\x04\x05"
    assert list(journal.read_records(tmp_path)) == records


def test_reader_refuses_an_unrecovered_torn_tail_unless_live(tmp_path):
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    with open(last, "ab") as file:
        file.write(b"\x50\x00\x00")
    with pytest.raises(journal.JournalFrameError) as caught:
        list(journal.read_records(tmp_path))
    assert caught.value.path == str(last) and caught.value.offset == last.stat().st_size - 3
    assert list(journal.read_records(tmp_path, live=True)) == records


CHILD = r"""
import os, sys
import journal
writer = journal.JournalWriter.open(sys.argv[1], 42, durability="always", segment_size_bytes_max=2048)
print("start", writer.last_sequence, flush=True)
round_number = 0
while True:
    for _ in range(1 + round_number % 5):
        writer.append(0, round_number, os.urandom(round_number % 90))
    durable = writer.commit()
    sys.stdout.write(f"{durable}\n")
    sys.stdout.flush()
    round_number += 1
"""


def kill_and_check(directory, kills, seed):
    generator = random.Random(seed)
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    reported_max = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, cwd=ROOT
        )
        try:
            first = child.stdout.readline().decode()
            assert first.startswith("start"), (first, child.stderr.read().decode() if child.poll() is not None else "")
            assert int(first.split()[1]) >= reported_max
            time.sleep(generator.uniform(0.05, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            output, _ = child.communicate(timeout=30)
        durable = [int(line) for line in output.decode().split("\n") if line.strip().isdigit()]
        if durable:
            assert durable == sorted(durable)
            reported_max = max(reported_max, durable[-1])
        report = journal.recover(directory, cluster_id=CLUSTER)
        assert report.last_sequence >= reported_max, (report, reported_max)
        sequences = [record.sequence for record in journal.read_records(directory)]
        assert sequences == list(range(1, report.last_sequence + 1))
    return reported_max


def test_sigkill_never_loses_a_durable_record(tmp_path):
    assert kill_and_check(tmp_path / "j", kills=5, seed=20240501) > 0


@pytest.mark.slow
def test_sigkill_soak(tmp_path):
    assert kill_and_check(tmp_path / "j", kills=40, seed=7) > 0


def test_recovery_cuts_no_whole_record_that_a_read_error_made_look_torn(tmp_path, monkeypatch):
    # A read error of the moment (the simulator's read fault) flips a bit in the last
    # record as recovery reads it: alone, that looks exactly like a torn tail and would
    # cut a durable record. Recovery scans twice before cutting, so it refuses instead,
    # cuts nothing, and the next recovery (reads healthy again) finds the journal clean.
    records = build(tmp_path, 30)
    last = segment_files(tmp_path)[-1]
    before = last.read_bytes()
    real_read_at = journal.cursor.read_at
    flips = {"left": 1}

    def read_at_with_one_flip(fd, path, size, offset):
        data = real_read_at(fd, path, size, offset)
        if flips["left"] and path == str(last) and len(data) > 4:
            flips["left"] -= 1
            flipped = bytearray(data)
            flipped[-3] ^= 0x10  # inside the last record's body
            return bytes(flipped)
        return data

    monkeypatch.setattr(journal.cursor, "read_at", read_at_with_one_flip)
    with pytest.raises(journal.JournalIOError) as caught:
        journal.recover(tmp_path)
    assert "two reads of the tail disagree" in str(caught.value) and str(last) in str(caught.value)
    assert last.read_bytes() == before and not Path(str(last) + ".torn").exists()
    report = journal.recover(tmp_path)
    assert report.state == "clean" and report.last_sequence == records[-1].sequence
    assert list(journal.read_records(tmp_path)) == records
