"""Verifying and decoding runs of record frames held in memory: the hot loops.

Every reader of the journal (read_records, read_frames, the tailer, recovery, the
standby's append_frames) comes through here. A "run" starts at a byte offset in a
buffer with a chain state — the sequence the next record must carry, the crc that
seeds its crc, and the lowest epoch it may carry — and walks frame by frame while each
frame is complete and verifies. It stops, without raising, at the first frame that
does not, and returns the offset of that frame and the chain state there. The caller
then asks `examine_frame` what is wrong with the frame at that offset and decides what
it means: "not written yet" for a tailer, a torn tail for recovery, corruption for a
plain reader. Keeping the judgement out of the loops keeps them short; the loops are
where the read throughput is won or lost.

The loops come in three copies that differ only in what they keep of each verified
record (nothing, a plain 4-tuple, a Record). A shared loop with a mode test per record
would cost about a tenth of the throughput, so the duplication is deliberate; the test
suite checks the three against each other and against `examine_frame`.

How a loop verifies one frame, in the order the work is done:
  1. one `unpack_from` reads length, crc, sequence, epoch and timestamp at once (the
     buffer's end raises struct.error, which ends the run);
  2. the crc is computed in ONE crc32c call, although it covers the 4 length bytes and
     the payload, which the stored crc separates on disk. CRC-32C (reflected) folds
     its first 4-byte block into the register by XOR before anything else, so
         crc32c(A + P, seed) == crc32c(B + P, seed ^ a ^ b)
     for any 4-byte blocks A and B (a, b: their little-endian values). Taking B = the
     stored crc bytes, the frame's own bytes from offset+4 (crc field + payload) are
     contiguous and need no copying together: the computed crc is
         crc32c(frame[4:], chain ^ length ^ stored_crc).
     The crc32c call costs more than the bytes it hashes here, so this halves the
     cost of the check (the test suite checks the identity against the plain form);
  3. the crc, the sequence, the epoch and the length bounds are compared in one
     condition; any failure stops the run at this frame.
A length above the maximum stops the run even if its crc happened to match, and never
causes a read: slicing a buffer past its end only returns what is there.
"""

from __future__ import annotations

import struct
from itertools import repeat
from typing import NamedTuple

from crc32c import crc32c

from journal.errors import (
    JournalChainError,
    JournalCorruptError,
    JournalEpochError,
    JournalFrameError,
    JournalSequenceError,
)
from journal.format import (
    FRAME_HEADER_SIZE_BYTES,
    PAYLOAD_HEADER_SIZE_BYTES,
    PAYLOAD_SIZE_BYTES_MAX,
    RECORD_HEAD,
    RECORD_OVERHEAD_BYTES,
    U32,
    U64,
    U64_MAX,
)
from journal.record import Record

_unpack_record_head = RECORD_HEAD.unpack_from
_unpack_u32 = U32.unpack_from
_struct_error = struct.error
_new_tuple = tuple.__new__

FRAME_OK = "ok"
FRAME_SHORT = "short"
FRAME_BAD = "bad"


def verify_run(
    buffer: bytes,
    offset: int,
    next_sequence: int,
    chain_crc: int,
    epoch_min: int,
    count_max: int,
    offset_limit: int,
) -> tuple[int, int, int, int]:
    """Verify up to `count_max` frames from `offset`, keeping nothing.

    Also stops before a frame that would end past `offset_limit`. Returns (offset,
    next_sequence, chain_crc, epoch_min) at the first frame not consumed.
    """
    # Globals are bound to locals: a local load is the cheapest lookup there is.
    unpack_record_head = _unpack_record_head
    crc = crc32c
    payload_size_max = PAYLOAD_SIZE_BYTES_MAX
    try:
        for _ in repeat(None, count_max):
            length, stored_crc, sequence, epoch, _timestamp_ns = unpack_record_head(buffer, offset)
            frame_end = offset + 8 + length
            if (
                crc(buffer[offset + 4:frame_end], chain_crc ^ length ^ stored_crc) != stored_crc
                or sequence != next_sequence
                or epoch < epoch_min
                or length < 24
                or length > payload_size_max
                or frame_end > offset_limit
            ):
                break
            chain_crc = stored_crc
            next_sequence += 1
            epoch_min = epoch
            offset = frame_end
    except _struct_error:
        pass
    return offset, next_sequence, chain_crc, epoch_min


def decode_tuples(
    buffer: bytes,
    offset: int,
    next_sequence: int,
    chain_crc: int,
    epoch_min: int,
    count_max: int,
    out: list,
) -> tuple[int, int, int, int]:
    """Verify up to `count_max` frames, appending (sequence, epoch, timestamp_ns, body)."""
    append = out.append
    unpack_record_head = _unpack_record_head
    crc = crc32c
    payload_size_max = PAYLOAD_SIZE_BYTES_MAX
    try:
        for _ in repeat(None, count_max):
            length, stored_crc, sequence, epoch, timestamp_ns = unpack_record_head(buffer, offset)
            frame_end = offset + 8 + length
            if (
                crc(buffer[offset + 4:frame_end], chain_crc ^ length ^ stored_crc) != stored_crc
                or sequence != next_sequence
                or epoch < epoch_min
                or length < 24
                or length > payload_size_max
            ):
                break
            append((sequence, epoch, timestamp_ns, buffer[offset + 32:frame_end]))
            chain_crc = stored_crc
            next_sequence += 1
            epoch_min = epoch
            offset = frame_end
    except _struct_error:
        pass
    return offset, next_sequence, chain_crc, epoch_min


def decode_records(
    buffer: bytes,
    offset: int,
    next_sequence: int,
    chain_crc: int,
    epoch_min: int,
    count_max: int,
    out: list,
) -> tuple[int, int, int, int]:
    """Verify up to `count_max` frames, appending a Record for each."""
    append = out.append
    record_type = Record
    new_tuple = _new_tuple
    unpack_record_head = _unpack_record_head
    crc = crc32c
    payload_size_max = PAYLOAD_SIZE_BYTES_MAX
    try:
        for _ in repeat(None, count_max):
            length, stored_crc, sequence, epoch, timestamp_ns = unpack_record_head(buffer, offset)
            frame_end = offset + 8 + length
            if (
                crc(buffer[offset + 4:frame_end], chain_crc ^ length ^ stored_crc) != stored_crc
                or sequence != next_sequence
                or epoch < epoch_min
                or length < 24
                or length > payload_size_max
            ):
                break
            # tuple.__new__ skips the NamedTuple's Python-level __new__, which would
            # cost more than the rest of the loop body together.
            append(new_tuple(record_type, (sequence, epoch, timestamp_ns, buffer[offset + 32:frame_end], stored_crc)))
            chain_crc = stored_crc
            next_sequence += 1
            epoch_min = epoch
            offset = frame_end
    except _struct_error:
        pass
    return offset, next_sequence, chain_crc, epoch_min


class FrameVerdict(NamedTuple):
    """What is wrong (or not) with the frame at one offset."""

    status: str  # FRAME_OK, FRAME_SHORT (cut off by the end of the bytes), FRAME_BAD
    error_type: type[JournalCorruptError] | None
    reason: str
    length: int | None  # the payload length field, when it could be read
    stored_crc: int | None
    computed_crc: int | None  # over the frame's bytes, seeded by the chain; None if cut


def examine_frame(buffer: bytes, offset: int, next_sequence: int, chain_crc: int, epoch_min: int) -> FrameVerdict:
    """Judge the one frame at `offset`: complete and valid, cut short, or bad (and why)."""
    available = len(buffer) - offset
    if available < FRAME_HEADER_SIZE_BYTES:
        return FrameVerdict(FRAME_SHORT, JournalFrameError, f"frame header cut short: {available} of 8 bytes", None, None, None)
    length, stored_crc = struct.unpack_from("<II", buffer, offset)
    if length == 0:
        # A zero length is what a zero-filled tail looks like; it is never written.
        return FrameVerdict(FRAME_BAD, JournalFrameError, "frame length 0 (zero-filled bytes)", 0, stored_crc, None)
    if length > PAYLOAD_SIZE_BYTES_MAX:
        return FrameVerdict(
            FRAME_BAD, JournalFrameError, f"frame length {length} above the largest payload {PAYLOAD_SIZE_BYTES_MAX}", length, stored_crc, None
        )
    if length < PAYLOAD_HEADER_SIZE_BYTES:
        return FrameVerdict(
            FRAME_BAD, JournalFrameError, f"frame length {length} below the payload header size {PAYLOAD_HEADER_SIZE_BYTES}", length, stored_crc, None
        )
    frame_end = offset + FRAME_HEADER_SIZE_BYTES + length
    if frame_end > len(buffer):
        return FrameVerdict(
            FRAME_SHORT, JournalFrameError, f"frame cut short: {available} of {length + FRAME_HEADER_SIZE_BYTES} bytes", length, stored_crc, None
        )
    computed_crc = crc32c(buffer[offset + 8:frame_end], crc32c(buffer[offset:offset + 4], chain_crc))
    if computed_crc != stored_crc:
        return FrameVerdict(
            FRAME_BAD,
            JournalChainError,
            f"record crc mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x} (seeded by chain value {chain_crc:#010x}, "
            f"expecting sequence {next_sequence})",
            length,
            stored_crc,
            computed_crc,
        )
    _, _, sequence, epoch, _ = RECORD_HEAD.unpack_from(buffer, offset)
    if sequence != next_sequence:
        return FrameVerdict(
            FRAME_BAD, JournalSequenceError, f"sequence {sequence} where {next_sequence} was expected", length, stored_crc, computed_crc
        )
    if epoch < epoch_min:
        return FrameVerdict(
            FRAME_BAD, JournalEpochError, f"epoch {epoch} of sequence {sequence} is below the previous epoch {epoch_min}", length, stored_crc, computed_crc
        )
    return FrameVerdict(FRAME_OK, None, "valid", length, stored_crc, computed_crc)


# Bounds on the search for valid records after a bad one, so that recovery time stays
# bounded even on adversarial bytes; a search that hits a bound refuses (corrupt)
# rather than guessing "torn".
EVIDENCE_SEQUENCES_AHEAD = 16
EVIDENCE_CANDIDATES_MAX = 200_000


def _frame_at(buffer: bytes, offset: int) -> tuple[int, int, int, int] | None:
    """(length, stored crc, sequence, epoch) of a plausible complete frame, else None."""
    if offset < 0 or offset + RECORD_OVERHEAD_BYTES > len(buffer):
        return None
    length, crc, sequence, epoch, _ = RECORD_HEAD.unpack_from(buffer, offset)
    if length < PAYLOAD_HEADER_SIZE_BYTES or length > PAYLOAD_SIZE_BYTES_MAX:
        return None
    if offset + FRAME_HEADER_SIZE_BYTES + length > len(buffer):
        return None
    return length, crc, sequence, epoch


def _crc_of(buffer: bytes, offset: int, length: int, seed: int) -> int:
    return crc32c(buffer[offset + 8:offset + 8 + length], crc32c(buffer[offset:offset + 4], seed))


def find_valid_record_after(
    buffer: bytes,
    bad_offset: int,
    next_sequence: int,
    chain_crc: int,
    verdict: FrameVerdict,
) -> str | None:
    """Evidence that verified records follow the bad frame at `bad_offset`, or None.

    This is what tells "the tail was torn by a crash" (nothing valid follows the
    first bad frame) from "a record in the middle is damaged" (something valid does).
    A single damaged field of the bad record k never hides record k+1: with its
    length damaged, the stored crc still seeds k+1; with its crc damaged, the crc
    recomputed over its bytes does; with its payload damaged, the stored crc does. So
    the search tries all three seeds (the chain value, the stored crc, the recomputed
    crc) on every candidate frame, found by looking for the sequence numbers k and
    k+1 as byte patterns (fast, in C). For heavier damage it also accepts any
    candidate with sequence k..k+EVIDENCE_SEQUENCES_AHEAD whose successor frame
    verifies chained to it. Finally the bad frame itself, when complete and carrying a
    later sequence than expected, is evidence that a record is missing.

    Returns a sentence naming the evidence and its offset, or None when there is none.
    """
    seeds = {chain_crc}
    if verdict.stored_crc is not None:
        seeds.add(verdict.stored_crc)
    length = verdict.length
    if length is not None and PAYLOAD_HEADER_SIZE_BYTES <= length <= PAYLOAD_SIZE_BYTES_MAX:
        if bad_offset + 8 + length <= len(buffer):
            seeds.add(_crc_of(buffer, bad_offset, length, chain_crc))
    itself = _frame_at(buffer, bad_offset)
    if itself is not None and 0 < itself[2] - next_sequence < (1 << 32):
        return f"the frame at offset {bad_offset} is complete and carries sequence {itself[2]} where {next_sequence} was expected (records missing)"
    candidates_examined = 0
    for ahead in range(EVIDENCE_SEQUENCES_AHEAD + 1):
        sequence = next_sequence + ahead
        if sequence > U64_MAX:
            break
        pattern = U64.pack(sequence)
        position = buffer.find(pattern, bad_offset + 1 + FRAME_HEADER_SIZE_BYTES)
        while position != -1:
            candidates_examined += 1
            if candidates_examined > EVIDENCE_CANDIDATES_MAX:
                return f"more than {EVIDENCE_CANDIDATES_MAX} candidate frames after offset {bad_offset}: refusing to call the tail torn"
            start = position - FRAME_HEADER_SIZE_BYTES
            frame = _frame_at(buffer, start)
            if frame is not None:
                frame_length, frame_crc, _, _ = frame
                if ahead <= 1:
                    for seed in seeds:
                        if _crc_of(buffer, start, frame_length, seed) == frame_crc:
                            return f"record {sequence} at offset {start} verifies against the chain after the bad frame"
                successor_start = start + FRAME_HEADER_SIZE_BYTES + frame_length
                successor = _frame_at(buffer, successor_start)
                if (
                    successor is not None
                    and successor[2] == sequence + 1
                    and _crc_of(buffer, successor_start, successor[0], frame_crc) == successor[1]
                ):
                    return f"records {sequence} and {sequence + 1} at offsets {start} and {successor_start} verify as a chain after the bad frame"
            position = buffer.find(pattern, position + 1)
    return None
