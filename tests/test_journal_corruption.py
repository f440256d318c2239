"""Corruption is detected, never silently applied: single bit flips anywhere in a
multi-segment journal, swapped and deleted records, foreign and inconsistent headers,
sequence gaps and epochs going backwards; and fuzzed bytes only ever raise JournalError."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import journal
from journal import JournalCorruptError, JournalError, JournalWriter
from journal.format import SEGMENT_HEADER_SIZE_BYTES, encode_frame, encode_segment_header, segment_file_name

CLUSTER = 42


def build(directory, count=60, segment_size_bytes_max=500):
    writer = JournalWriter.open(directory, CLUSTER, durability="none", segment_size_bytes_max=segment_size_bytes_max)
    for index in range(count):
        writer.append(index // 15, 7_000 + index, os.urandom((index * 7) % 41))
        if index % 4 == 3:
            writer.commit()
    writer.commit()
    writer.close()
    return list(journal.read_records(directory))


def layout(directory):
    """[(segment path, [(sequence, start, end), ...])] for a valid journal."""
    result = []
    for path in sorted(Path(directory).glob("*.journal")):
        data = path.read_bytes()
        offset, frames = SEGMENT_HEADER_SIZE_BYTES, []
        while offset < len(data):
            length = int.from_bytes(data[offset:offset + 4], "little")
            sequence = int.from_bytes(data[offset + 8:offset + 16], "little")
            frames.append((sequence, offset, offset + 8 + length))
            offset += 8 + length
        result.append((path, frames))
    return result


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    directory = tmp_path_factory.mktemp("base") / "j"
    records = build(directory)
    segments = layout(directory)
    assert len(segments) >= 4
    return directory, records, segments


def flip_and_judge(base, segment_index, offset, bit):
    directory, records, segments = base
    path, frames = segments[segment_index]
    offset %= path.stat().st_size
    work = Path(tempfile.mkdtemp()) / "j"
    try:
        shutil.copytree(directory, work)
        target = work / path.name
        data = bytearray(target.read_bytes())
        data[offset] ^= 1 << bit
        target.write_bytes(bytes(data))
        final_sequence, final_start, final_end = segments[-1][1][-1]
        in_final_record = segment_index == len(segments) - 1 and final_start <= offset < final_end
        containing = [start for (_, start, end) in frames if start <= offset < end]

        # A strict reader notices every flip.
        with pytest.raises(JournalCorruptError):
            list(journal.read_records(work))
        summary = journal.inspect(work)
        assert summary["state"] in ("corrupt", "torn")
        try:
            report = journal.recover(work, cluster_id=CLUSTER)
        except JournalCorruptError as error:
            assert summary["state"] == "corrupt"
            assert error.path == str(target), (error, path)
            if containing:
                assert error.offset == containing[0], (str(error), offset)
            assert str(target) in str(error) and f"offset {error.offset}" in str(error)
            return "corrupt"
        # Not an error: only a torn final record is acceptable, and then exactly the
        # final record is cut, into the .torn file, and nothing else changes.
        assert in_final_record, (report, offset)
        assert report.state == "torn" and report.torn.offset == final_start
        assert list(journal.read_records(work)) == records[:-1]
        assert Path(str(target) + ".torn").read_bytes() == bytes(data[final_start:])
        return "torn"
    finally:
        shutil.rmtree(work.parent)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.integers(0, 100), offset=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_every_single_bit_flip_is_detected(base, segment, offset, bit):
    flip_and_judge(base, segment % len(base[2]), offset, bit)


def test_bit_flips_in_every_record_of_the_last_segment(base):
    # Deterministic companion to the property test: one flip in each field of each
    # record of the last segment, where torn and corrupt must be told apart.
    segment_index = len(base[2]) - 1
    outcomes = {}
    for sequence, start, end in base[2][segment_index][1]:
        for field_offset in sorted({0, 3, 4, 7, 8, 15, 16, 24, 31, end - start - 1}):
            if start + field_offset < end:
                outcomes[(sequence, field_offset)] = flip_and_judge(base, segment_index, start + field_offset, field_offset % 8)
    final = base[2][segment_index][1][-1][0]
    assert all(outcome == "corrupt" for (sequence, _), outcome in outcomes.items() if sequence != final)
    assert "torn" in {outcome for (sequence, _), outcome in outcomes.items() if sequence == final}


@pytest.mark.slow
def test_every_bit_of_every_byte(base):
    for segment_index, (path, _) in enumerate(base[2]):
        for offset in range(path.stat().st_size):
            for bit in range(8):
                flip_and_judge(base, segment_index, offset, bit)


def rewrite(path, data):
    Path(path).write_bytes(bytes(data))


def test_swapped_records_in_the_middle(tmp_path):
    build(tmp_path)
    path, frames = layout(tmp_path)[1]
    data = path.read_bytes()
    (_, a_start, a_end), (_, b_start, b_end) = frames[1], frames[2]
    rewrite(path, data[:a_start] + data[b_start:b_end] + data[a_start:a_end] + data[b_end:])
    with pytest.raises(JournalCorruptError) as caught:
        journal.recover(tmp_path)
    assert caught.value.path == str(path) and caught.value.offset == a_start


def test_swapped_last_two_records_are_not_a_torn_tail(tmp_path):
    build(tmp_path)
    path, frames = layout(tmp_path)[-1]
    data = path.read_bytes()
    (_, a_start, a_end), (_, b_start, b_end) = frames[-2], frames[-1]
    rewrite(path, data[:a_start] + data[b_start:b_end] + data[a_start:a_end])
    with pytest.raises(JournalCorruptError) as caught:
        journal.recover(tmp_path)
    assert caught.value.offset == a_start and "not a torn tail" in caught.value.reason


@pytest.mark.parametrize("segment, which", [(1, 2), (1, -1), (-1, 0), (-1, -3), (-1, -2)])
def test_deleted_record(tmp_path, segment, which):
    # (Deleting the very last record of the journal is undetectable by design: the
    # result is exactly the journal as it was before that record was appended.)
    build(tmp_path)
    path, frames = layout(tmp_path)[segment]
    assert len(frames) >= 3
    data = path.read_bytes()
    _, start, end = frames[which]
    rewrite(path, data[:start] + data[end:])
    with pytest.raises(JournalCorruptError) as caught:
        journal.recover(tmp_path)
    if segment != -1 and which == -1:
        # The segment itself still verifies; the next header no longer continues it.
        assert caught.value.path == str(layout_path_after(tmp_path, path)) and caught.value.offset == 32
    else:
        assert caught.value.path == str(path) and caught.value.offset == start


def layout_path_after(directory, path):
    paths = sorted(Path(directory).glob("*.journal"))
    return paths[paths.index(path) + 1]


def test_deleted_middle_segment(tmp_path):
    build(tmp_path)
    segments = layout(tmp_path)
    segments[2][0].unlink()
    with pytest.raises(journal.JournalHeaderError) as caught:
        journal.recover(tmp_path)
    assert caught.value.path == str(segments[3][0])


def test_renamed_segment_does_not_match_its_header(tmp_path):
    build(tmp_path)
    path = layout(tmp_path)[1][0]
    path.rename(path.with_name(segment_file_name(int(path.name[:20]) + 1)))
    with pytest.raises(journal.JournalHeaderError, match="does not match the file name"):
        journal.recover(tmp_path)


def test_wrong_cluster_id(tmp_path):
    build(tmp_path)
    with pytest.raises(journal.JournalClusterMismatchError):
        journal.recover(tmp_path, cluster_id=CLUSTER + 1)
    with pytest.raises(journal.JournalClusterMismatchError):
        JournalWriter.open(tmp_path, CLUSTER + 1)
    # A segment of another cluster, with a perfectly valid header, in the middle.
    path = layout(tmp_path)[2][0]
    data = path.read_bytes()
    header = journal.format.decode_segment_header(data, str(path))
    rewrite(path, encode_segment_header(CLUSTER + 1, header.epoch, header.first_sequence, header.chain_in_crc) + data[64:])
    with pytest.raises(journal.JournalClusterMismatchError) as caught:
        journal.recover(tmp_path)
    assert caught.value.path == str(path)
    with pytest.raises(journal.JournalClusterMismatchError):
        list(journal.read_records(tmp_path))


def handmade(directory, records, *, header_epoch=0, first_sequence=1, chain_in_crc=0):
    """A segment written by hand, so that it may break rules the writer enforces.
    `records` is [(sequence, epoch)]; every crc is valid and chained."""
    crc = chain_in_crc
    frames = []
    for sequence, epoch in records:
        frame, crc = encode_frame(sequence, epoch, 0, b"body", crc)
        frames.append(frame)
    path = Path(directory) / segment_file_name(first_sequence)
    path.write_bytes(encode_segment_header(CLUSTER, header_epoch, first_sequence, chain_in_crc) + b"".join(frames))
    return path, crc


def test_epoch_going_backwards_is_corrupt_even_at_the_end(tmp_path):
    path, _ = handmade(tmp_path, [(1, 0), (2, 2), (3, 1)])
    with pytest.raises(journal.JournalEpochError) as caught:
        journal.recover(tmp_path)
    assert caught.value.offset == 64 + 2 * (32 + 4)
    with pytest.raises(journal.JournalEpochError):
        list(journal.read_records(tmp_path))


def test_record_epoch_below_its_segment_header(tmp_path):
    handmade(tmp_path, [(1, 1), (2, 1)], header_epoch=3)
    with pytest.raises(journal.JournalEpochError):
        journal.recover(tmp_path)


def test_segment_header_epoch_going_backwards(tmp_path):
    _, crc = handmade(tmp_path, [(1, 0), (2, 5)])
    handmade(tmp_path, [(3, 5)], header_epoch=4, first_sequence=3, chain_in_crc=crc)
    with pytest.raises(journal.JournalEpochError) as caught:
        journal.recover(tmp_path)
    assert caught.value.path.endswith(segment_file_name(3)) and caught.value.offset == 24


def test_sequence_gap_with_valid_crcs_is_corrupt(tmp_path):
    handmade(tmp_path, [(1, 0), (2, 0), (4, 0)])
    with pytest.raises(journal.JournalSequenceError) as caught:
        journal.recover(tmp_path)
    assert caught.value.offset == 64 + 2 * 36


def test_broken_chain_between_segments(tmp_path):
    _, crc = handmade(tmp_path, [(1, 0), (2, 0)])
    handmade(tmp_path, [(3, 0)], first_sequence=3, chain_in_crc=crc ^ 1)
    with pytest.raises(journal.JournalChainError) as caught:
        journal.recover(tmp_path)
    assert caught.value.offset == 40


def test_unknown_format_version(tmp_path):
    path, _ = handmade(tmp_path, [(1, 0)])
    data = bytearray(path.read_bytes())
    data[8] = 2
    from crc32c import crc32c

    data[60:64] = crc32c(bytes(data[:60])).to_bytes(4, "little")
    rewrite(path, data)
    with pytest.raises(journal.JournalFormatVersionError):
        journal.recover(tmp_path)


def check_only_journal_errors(directory):
    """Every entry point either works or raises a JournalError."""
    for call in (
        lambda: list(journal.read_records(directory)),
        lambda: list(journal.read_frames(directory)),
        lambda: list(journal.read_records(directory, 3, live=True)),
        lambda: journal.inspect(directory),
        lambda: journal.Tailer(directory).poll(),
        lambda: journal.recover(directory, repair=False),
        lambda: journal.recover(directory),
        lambda: JournalWriter.open(directory, CLUSTER, durability="none").close(),
    ):
        try:
            call()
        except JournalError:
            pass


@settings(max_examples=150, deadline=None)
@given(content=st.binary(max_size=600))
def test_fuzz_whole_segment_file(content):
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, segment_file_name(1)).write_bytes(content)
        check_only_journal_errors(directory)


@settings(max_examples=150, deadline=None)
@given(content=st.binary(max_size=600), chain_in=st.integers(0, 2**32 - 1))
def test_fuzz_after_a_valid_header(content, chain_in):
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, segment_file_name(1)).write_bytes(encode_segment_header(CLUSTER, 0, 1, chain_in) + content)
        check_only_journal_errors(directory)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_spliced_journal(base, data):
    directory, _, segments = base
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "j"
        shutil.copytree(directory, work)
        path = work / segments[data.draw(st.integers(0, len(segments) - 1))][0].name
        content = path.read_bytes()
        at = data.draw(st.integers(0, len(content)))
        cut = data.draw(st.integers(0, 40))
        insert = data.draw(st.binary(max_size=40))
        path.write_bytes(content[:at] + insert + content[at + cut:])
        check_only_journal_errors(work)


def test_tail_only_scan_skips_early_segments_but_readers_still_verify_them(tmp_path):
    build(tmp_path)
    early = layout(tmp_path)[0]
    path, frames = early
    data = bytearray(path.read_bytes())
    data[frames[1][1] + 20] ^= 1
    rewrite(path, data)
    report = journal.recover(tmp_path, full_scan=False)
    assert report.state == "clean" and not report.segments[0].verified
    with pytest.raises(JournalCorruptError):
        journal.recover(tmp_path)
    with pytest.raises(JournalCorruptError):
        list(journal.read_records(tmp_path))
    writer = JournalWriter.open(tmp_path, CLUSTER, recovery_full_scan=False)
    assert writer.last_sequence == 60
    writer.close()


def test_an_operator_can_cut_a_corrupt_tail_keeping_evidence(tmp_path):
    records = build(tmp_path)
    path, frames = layout(tmp_path)[-1]
    data = bytearray(path.read_bytes())
    sequence, start, _ = frames[1]
    data[start + 30] ^= 4
    rewrite(path, data)
    with pytest.raises(JournalCorruptError):
        JournalWriter.open(tmp_path, CLUSTER)
    report = journal.truncate_after(tmp_path, sequence - 1, keep_path_suffix=".corrupt")
    assert report.bytes_cut == len(data) - start
    assert Path(str(path) + ".corrupt").read_bytes() == bytes(data[start:])
    assert journal.recover(tmp_path).state == "clean"
    assert list(journal.read_records(tmp_path)) == records[: sequence - 1]


def test_a_live_reader_refuses_a_flipped_bit_in_the_last_segment_instead_of_stopping_quietly(tmp_path):
    # A live reader stops quietly only at a frame cut short by the end of the file (a
    # batch half written); a whole frame that fails its check is corruption, however
    # near the end it is, and a catch-up or hello lookup must not take it for the end.
    directory = tmp_path / "j"
    records = build(directory)
    path, frames = layout(directory)[-1]
    sequence, start, end = frames[len(frames) // 2]
    data = bytearray(path.read_bytes())
    data[start + 20] ^= 0x08
    path.write_bytes(bytes(data))
    for read in (
        lambda: list(journal.read_records(directory, live=True)),
        lambda: list(journal.read_records(directory, sequence, live=True)),
        lambda: list(journal.read_frames(directory, records[0].sequence, live=True)),
        lambda: list(journal.read_tuple_batches(directory, sequence + 1, live=True)),
    ):
        with pytest.raises(JournalCorruptError) as caught:
            read()
        assert caught.value.path == str(path) and caught.value.offset == start
    # The same journal cut in the middle of that frame instead ends quietly before it.
    path.write_bytes(bytes(data[:start + 10]))
    assert [record.sequence for record in journal.read_records(directory, live=True)] == \
        [record.sequence for record in records if record.sequence < sequence]
