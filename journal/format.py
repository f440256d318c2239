"""The on-disk format of the journal, version 1: constants, layouts, header codec.

A journal is a directory of segment files. Each segment is named after the sequence of
its first record, `{first_sequence:020d}.journal`, so that a reader finds the segment
holding any sequence by bisecting the sorted file names, without opening a file. Other
files in the directory (`.torn` and `.divergent` evidence, for example) are ignored.

All integers are little-endian and unsigned.

Segment header, 64 bytes, at offset 0 of every segment:

     0        8       10       12       16               24               32
    +--------+-------+--------+--------+----------------+----------------+
    | magic  |version|reserved| header | cluster id     | epoch          |
    |TWNBKJNL|  u16  |u16 = 0 | size   | u64            | u64 (epoch of  |
    |        |  = 1  |        |u32 = 64|                | the segment's  |
    |        |       |        |        |                | first record)  |
    +--------+-------+--------+--------+----------------+----------------+
    32               40       44                         60       64
    +----------------+--------+-------------------------+--------+
    | first sequence | chain  | reserved, zero          | header |
    | u64 (= the     | in u32 | (16 bytes)              | crc32c |
    | file name)     |        |                         | u32    |
    +----------------+--------+-------------------------+--------+

`chain in` is the crc of the last record of the previous segment (0 for the first
segment of a journal that starts from nothing), so the crc chain runs unbroken across
segment files. `header crc32c` is crc32c(bytes 0..59) with seed 0. The magic, the
version and the header size keep their offsets in every future version, so a reader
can always tell "another version" from "damaged".

Record frame, repeated after the header until the end of the file:

     0        4        8                16               24               32
    +--------+--------+----------------+----------------+----------------+------+
    | length | crc    | sequence       | epoch          | timestamp_ns   | body |
    | u32    | u32    | u64            | u64            | u64            | ...  |
    +--------+--------+----------------+----------------+----------------+------+
              <------------------------ payload: `length` bytes ------------------>

    crc = crc32c(length bytes + payload, seed = crc of the previous record)

The previous record of the first record of a segment is named by the header's chain
in. Seeding each crc with its predecessor's makes the crcs a chain: a record that is
missing, repeated, moved or replaced breaks the chain at that point, even if every
frame on its own is intact. Sequences start at the journal's first sequence (1 for a
new journal) and grow by exactly one per record; epochs never decrease, and no record
has an epoch below its segment header's.

The body is opaque bytes, at most BODY_SIZE_BYTES_MAX. A length field above the
largest legal payload is never trusted: a reader treats it as damage, and never
allocates or reads that many bytes on its say-so.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from crc32c import crc32c

from journal.errors import (
    JournalClusterMismatchError,
    JournalFormatVersionError,
    JournalFrameError,
    JournalHeaderError,
)

MAGIC = b"TWNBKJNL"
FORMAT_VERSION = 1

SEGMENT_FILE_SUFFIX = ".journal"
SEGMENT_FILE_NAME_DIGITS = 20

SEGMENT_HEADER_SIZE_BYTES = 64
SEGMENT_HEADER_CRC_OFFSET = 60
FRAME_HEADER_SIZE_BYTES = 8
PAYLOAD_HEADER_SIZE_BYTES = 24
RECORD_OVERHEAD_BYTES = FRAME_HEADER_SIZE_BYTES + PAYLOAD_HEADER_SIZE_BYTES

# One mebibyte is far above any command the sequencer writes (a few hundred bytes),
# and low enough that a reader may hold a whole frame in memory and that a damaged
# length field can never make anyone allocate gigabytes. It also keeps the largest
# frame well inside the 4 GiB a u32 length can express.
BODY_SIZE_BYTES_MAX = 1024 * 1024
PAYLOAD_SIZE_BYTES_MAX = PAYLOAD_HEADER_SIZE_BYTES + BODY_SIZE_BYTES_MAX
FRAME_SIZE_BYTES_MAX = FRAME_HEADER_SIZE_BYTES + PAYLOAD_SIZE_BYTES_MAX

# Writers roll to a new segment before a record would push the segment past its
# configured size; these bound what may be configured. The floor is a header and one
# empty record; the ceiling keeps a single file's recovery scan and copy bounded.
SEGMENT_SIZE_BYTES_MIN = SEGMENT_HEADER_SIZE_BYTES + RECORD_OVERHEAD_BYTES
SEGMENT_SIZE_BYTES_LIMIT = 1024 * 1024 * 1024
SEGMENT_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024

# A segment may exceed its configured size only by holding one record larger than
# the whole segment, alone; anything longer than this was not written by a writer.
SEGMENT_FILE_SIZE_BYTES_MAX = SEGMENT_SIZE_BYTES_LIMIT + FRAME_SIZE_BYTES_MAX

# Records buffered by a writer between two commits: one commit is one write of at
# most this many bytes, so memory and the time one write takes stay bounded.
BATCH_SIZE_BYTES_MAX = 16 * 1024 * 1024

# Readers and tailers read segment files in pieces of this size. It is at least one
# largest frame, so every frame fits whole in a piece that starts where it starts.
READ_CHUNK_SIZE_BYTES = 8 * 1024 * 1024

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1

SEGMENT_HEADER = struct.Struct("<8sHHIQQQI16sI")
FRAME_HEADER = struct.Struct("<II")
PAYLOAD_HEADER = struct.Struct("<QQQ")
# The frame header and payload header together: one unpack decodes a record's fixed
# fields, and the same layout minus the crc is what the crc is computed over.
RECORD_HEAD = struct.Struct("<IIQQQ")
LENGTH_AND_PAYLOAD_HEADER = struct.Struct("<IQQQ")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")

RESERVED_TAIL = bytes(16)

if SEGMENT_HEADER.size != SEGMENT_HEADER_SIZE_BYTES:
    raise ImportError("segment header layout does not add up to 64 bytes")
if READ_CHUNK_SIZE_BYTES < FRAME_SIZE_BYTES_MAX:
    raise ImportError("read chunk smaller than the largest frame")


class SegmentHeader(NamedTuple):
    """The decoded, verified fields of a segment header."""

    cluster_id: int
    epoch: int
    first_sequence: int
    chain_in_crc: int


def segment_file_name(first_sequence: int) -> str:
    """The file name of the segment whose first record has `first_sequence`."""
    if not 0 <= first_sequence <= U64_MAX:
        raise ValueError(f"first sequence {first_sequence} is not a u64")
    return f"{first_sequence:0{SEGMENT_FILE_NAME_DIGITS}d}{SEGMENT_FILE_SUFFIX}"


def parse_segment_file_name(name: str) -> int | None:
    """The first sequence a segment file name encodes, or None for any other file."""
    if not name.endswith(SEGMENT_FILE_SUFFIX):
        return None
    stem = name[: -len(SEGMENT_FILE_SUFFIX)]
    if len(stem) != SEGMENT_FILE_NAME_DIGITS or not stem.isdigit() or not stem.isascii():
        return None
    value = int(stem)
    if value > U64_MAX:
        return None
    return value


def encode_segment_header(cluster_id: int, epoch: int, first_sequence: int, chain_in_crc: int) -> bytes:
    """The 64 header bytes for a new segment, with its header crc."""
    for name, value, limit in (
        ("cluster id", cluster_id, U64_MAX),
        ("epoch", epoch, U64_MAX),
        ("first sequence", first_sequence, U64_MAX),
        ("chain-in crc", chain_in_crc, U32_MAX),
    ):
        if type(value) is not int or not 0 <= value <= limit:
            raise ValueError(f"segment header {name} {value!r} is out of range")
    without_crc = SEGMENT_HEADER.pack(
        MAGIC, FORMAT_VERSION, 0, SEGMENT_HEADER_SIZE_BYTES, cluster_id, epoch, first_sequence, chain_in_crc, RESERVED_TAIL, 0
    )[:SEGMENT_HEADER_CRC_OFFSET]
    return without_crc + U32.pack(crc32c(without_crc))


def decode_segment_header(
    data: bytes,
    path: str,
    *,
    first_sequence_from_name: int | None = None,
    cluster_id: int | None = None,
) -> SegmentHeader:
    """Verify and decode the header at the start of `data` (at least 64 bytes).

    Raises JournalFrameError when `data` is shorter than a header, and a
    JournalHeaderError subclass naming `path` and the offending field otherwise.
    """
    if len(data) < SEGMENT_HEADER_SIZE_BYTES:
        raise JournalFrameError(path, len(data), f"segment header cut short: {len(data)} of {SEGMENT_HEADER_SIZE_BYTES} bytes")
    (magic, version, reserved, header_size, header_cluster_id, epoch, first_sequence, chain_in_crc, reserved_tail, header_crc) = (
        SEGMENT_HEADER.unpack_from(data, 0)
    )
    if magic != MAGIC:
        raise JournalHeaderError(path, 0, f"bad magic {magic!r}, expected {MAGIC!r}: not a twinbook journal segment")
    crc_matches = crc32c(data[:SEGMENT_HEADER_CRC_OFFSET]) == header_crc
    if version != FORMAT_VERSION:
        if crc_matches:
            raise JournalFormatVersionError(path, 8, f"format version {version}; this code reads version {FORMAT_VERSION} only")
        raise JournalHeaderError(path, 8, f"header crc mismatch and unknown format version {version}: damaged header")
    if not crc_matches:
        raise JournalHeaderError(
            path, SEGMENT_HEADER_CRC_OFFSET, f"header crc mismatch: stored {header_crc:#010x}, computed {crc32c(data[:SEGMENT_HEADER_CRC_OFFSET]):#010x}"
        )
    # The fields below are covered by the header crc, so a mismatch is a writer bug or
    # a deliberately edited file rather than a flipped bit; it is refused all the same.
    if header_size != SEGMENT_HEADER_SIZE_BYTES:
        raise JournalHeaderError(path, 12, f"header size {header_size}, expected {SEGMENT_HEADER_SIZE_BYTES}")
    if reserved != 0 or reserved_tail != RESERVED_TAIL:
        raise JournalHeaderError(path, 10, "reserved header bytes are not zero")
    if first_sequence_from_name is not None and first_sequence != first_sequence_from_name:
        raise JournalHeaderError(path, 32, f"header first sequence {first_sequence} does not match the file name ({first_sequence_from_name})")
    if cluster_id is not None and header_cluster_id != cluster_id:
        raise JournalClusterMismatchError(path, 16, f"segment belongs to cluster {header_cluster_id}, expected cluster {cluster_id}")
    return SegmentHeader(header_cluster_id, epoch, first_sequence, chain_in_crc)


def encode_frame(sequence: int, epoch: int, timestamp_ns: int, body: bytes, previous_crc: int) -> tuple[bytes, int]:
    """One record frame and its crc; the reference encoder (the writer inlines it)."""
    if len(body) > BODY_SIZE_BYTES_MAX:
        raise ValueError(f"body of {len(body)} bytes is above {BODY_SIZE_BYTES_MAX}")
    length = PAYLOAD_HEADER_SIZE_BYTES + len(body)
    crc = crc32c(body, crc32c(LENGTH_AND_PAYLOAD_HEADER.pack(length, sequence, epoch, timestamp_ns), previous_crc))
    return RECORD_HEAD.pack(length, crc, sequence, epoch, timestamp_ns) + bytes(body), crc


def journal_path(directory: str | os.PathLike) -> str:
    """The directory as a plain string, for error messages and os calls."""
    return os.fspath(directory)
