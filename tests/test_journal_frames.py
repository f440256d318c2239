"""The three hot loops of journal/frames.py agree with each other and with the slow
`examine_frame` on valid and damaged frame streams; the header codec round-trips and
refuses what it must."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import journal
from journal.errors import JournalFrameError, JournalHeaderError
from journal.format import (
    SEGMENT_HEADER_SIZE_BYTES,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
    parse_segment_file_name,
    segment_file_name,
)
from journal.frames import FRAME_OK, decode_records, decode_tuples, examine_frame, verify_run


@st.composite
def frame_streams(draw):
    chain_in = draw(st.integers(0, 2**32 - 1))
    first = draw(st.integers(1, 2**40))
    count = draw(st.integers(0, 30))
    epoch = draw(st.integers(0, 5))
    crc, frames, records = chain_in, [], []
    for index in range(count):
        epoch += draw(st.sampled_from([0, 0, 0, 1]))
        body = draw(st.binary(max_size=40))
        frame, crc = encode_frame(first + index, epoch, index, body, crc)
        frames.append(frame)
        records.append(journal.Record(first + index, epoch, index, body, crc))
    data = bytearray(b"".join(frames))
    if data and draw(st.booleans()):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data), first, chain_in, records


@settings(max_examples=300, deadline=None)
@given(stream=frame_streams(), prefix=st.binary(max_size=3))
def test_loops_agree_with_each_other_and_with_examine_frame(stream, prefix):
    data, first, chain_in, records = stream
    buffer = prefix + data
    start = len(prefix)
    verified = verify_run(buffer, start, first, chain_in, 0, 10_000, len(buffer))
    tuples, objects = [], []
    assert decode_tuples(buffer, start, first, chain_in, 0, 10_000, tuples) == verified
    assert decode_records(buffer, start, first, chain_in, 0, 10_000, objects) == verified
    assert tuples == [record[:4] for record in objects]
    assert objects == records[: len(objects)]
    assert all(type(record) is journal.Record for record in objects)
    offset, next_sequence, chain_crc, epoch_min = verified
    assert next_sequence == first + len(objects)
    if offset < len(buffer):
        assert examine_frame(buffer, offset, next_sequence, chain_crc, epoch_min).status != FRAME_OK
    # Stopping by count or by an offset limit leaves the same state as the full run.
    if objects:
        partial = verify_run(buffer, start, first, chain_in, 0, 1, len(buffer))
        assert partial[1] == first + 1 and partial[2] == objects[0].crc
        limited = verify_run(buffer, start, first, chain_in, 0, 10_000, start + 1)
        assert limited == (start, first, chain_in, 0)


def test_examine_frame_reasons():
    frame, _ = encode_frame(1, 0, 0, b"abc", 0)
    assert examine_frame(frame, 0, 1, 0, 0).status == FRAME_OK
    assert examine_frame(frame[:5], 0, 1, 0, 0).status == "short"
    assert examine_frame(frame[:-1], 0, 1, 0, 0).status == "short"
    assert "zero" in examine_frame(bytes(40), 0, 1, 0, 0).reason
    huge = (2**31).to_bytes(4, "little") + frame[4:]
    assert "above the largest payload" in examine_frame(huge, 0, 1, 0, 0).reason
    assert examine_frame(frame, 0, 1, 5, 0).error_type is journal.JournalChainError
    assert examine_frame(frame, 0, 2, 0, 0).error_type is journal.JournalSequenceError
    assert examine_frame(frame, 0, 1, 0, 1).error_type is journal.JournalEpochError


def test_segment_header_round_trip_and_refusals():
    header = encode_segment_header(7, 3, 1000, 0xABCDEF01)
    assert len(header) == SEGMENT_HEADER_SIZE_BYTES and header[:8] == b"TWNBKJNL"
    decoded = decode_segment_header(header, "p", first_sequence_from_name=1000, cluster_id=7)
    assert decoded == (7, 3, 1000, 0xABCDEF01)
    with pytest.raises(JournalFrameError):
        decode_segment_header(header[:63], "p")
    with pytest.raises(JournalHeaderError, match="magic"):
        decode_segment_header(b"X" + header[1:], "p")
    with pytest.raises(JournalHeaderError, match="file name"):
        decode_segment_header(header, "p", first_sequence_from_name=999)
    for position in range(8, 64):
        damaged = bytearray(header)
        damaged[position] ^= 0x10
        with pytest.raises(JournalHeaderError):
            decode_segment_header(bytes(damaged), "p")


def test_segment_file_names():
    assert segment_file_name(1) == "00000000000000000001.journal"
    assert parse_segment_file_name(segment_file_name(2**64 - 1)) == 2**64 - 1
    for name in ("1.journal", "00000000000000000001.journal.torn", "0000000000000000000x.journal", "99999999999999999999.journal"):
        assert parse_segment_file_name(name) is None


@settings(max_examples=200, deadline=None)
@given(
    first=st.binary(min_size=4, max_size=4),
    other=st.binary(min_size=4, max_size=4),
    rest=st.binary(max_size=64),
    seed=st.integers(0, 2**32 - 1),
)
def test_first_block_swap_identity_the_loops_rely_on(first, other, rest, seed):
    from crc32c import crc32c

    a, b = int.from_bytes(first, "little"), int.from_bytes(other, "little")
    assert crc32c(first + rest, seed) == crc32c(other + rest, seed ^ a ^ b) == crc32c(rest, crc32c(first, seed))
