"""The byte layout of a snapshot store in LMDB, layout version 1.

Pure encoding and decoding, no I/O: snapshots/store.py does the transactions. All
integers are big-endian, so that LMDB's memcmp key order is numeric order (oldest
sequence first, chunk 0 first) and the layout reads the same on every machine.

An environment holds three named databases:

  "store"   one record: what this environment is.

      key   b"layout"
      value (16 bytes)
        0                 8        10                     16
        +-----------------+--------+----------------------+
        | magic           | layout | reserved, zero       |
        | b"TBSNAPST"     | u16=1  |                      |
        +-----------------+--------+----------------------+

  "meta"    one record per snapshot; its presence is what makes a snapshot exist.

      key   (8 bytes)
        0                         8
        +-------------------------+
        | sequence u64            |
        +-------------------------+
      value (80 bytes)
        0      4        6        8                16       20       24
        +------+--------+--------+----------------+--------+--------+
        |magic |layout  |format  | sequence u64   | chain  | chunk  |
        |"TBSM"|u16=1   |u16     | (= the key)    | u32    | count  |
        |      |        |(caller)|                |        | u32    |
        +------+--------+--------+----------------+--------+--------+
        24               32       36               44
        +----------------+--------+----------------+
        | state size u64 | chunk  | created        |
        | bytes          | size   | unix ns u64    |
        |                | u32    |                |
        +----------------+--------+----------------+
        44                                         76       80
        +------------------------------------------+--------+
        | digest: blake2b-256 of the state bytes   | crc32  |
        | (32 bytes)                               | of 0-76|
        +------------------------------------------+--------+

  "chunks"  the state bytes, cut into chunk-size values.

      key   (12 bytes)
        0                         8            12
        +-------------------------+------------+
        | sequence u64            | index u32  |
        +-------------------------+------------+
      value  chunk bytes: `chunk size` bytes, except the last chunk which holds the
             remainder (state size - chunk size * (chunk count - 1)); a state of zero
             bytes has no chunks.

Why each field:
  - magic and layout in every metadata record (not only in "store"): a record copied
    or restored on its own still says what it is.
  - sequence repeated inside the value: a value attached to the wrong key (a damaged
    B-tree page) is caught instead of being served as another sequence's state.
  - crc32 (zlib, stdlib) over the metadata record: the digest only covers the state
    bytes, and a flipped bit in `state size` or `chunk count` would otherwise be
    reported as missing chunks rather than as damaged metadata. The state bytes need no
    CRC: the digest covers them.
  - chunk size per record: the store's chunk size can change between versions of the
    code; old snapshots stay readable.

Changing any of this means a new layout version: decoding refuses versions it does
not know (SnapshotLayoutError / SnapshotCorruptError), never guesses.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from snapshots.errors import LayoutViolation
from snapshots.info import SnapshotInfo
from snapshots.limits import CHUNK_COUNT_MAX, CHUNK_SIZE_MAX_BYTES, CHUNK_SIZE_MIN_BYTES, STATE_SIZE_MAX_BYTES

LAYOUT_VERSION: int = 1

STORE_DATABASE_NAME: bytes = b"store"
META_DATABASE_NAME: bytes = b"meta"
CHUNK_DATABASE_NAME: bytes = b"chunks"
DATABASE_COUNT: int = 3

STORE_HEADER_KEY: bytes = b"layout"
STORE_MAGIC: bytes = b"TBSNAPST"
META_MAGIC: bytes = b"TBSM"

DIGEST_SIZE_BYTES: int = 32
SEQUENCE_MAX: int = 2**64 - 1
CHAIN_VALUE_MAX: int = 2**32 - 1
FORMAT_VERSION_MAX: int = 2**16 - 1

_STORE_HEADER = struct.Struct(">8sH6x")
_SEQUENCE_KEY = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QI")
# Everything the CRC covers; the CRC itself follows as one u32.
_META_BODY = struct.Struct(">4sHHQIIQIQ32s")
_META_CRC = struct.Struct(">I")

STORE_HEADER_SIZE_BYTES: int = _STORE_HEADER.size
SEQUENCE_KEY_SIZE_BYTES: int = _SEQUENCE_KEY.size
CHUNK_KEY_SIZE_BYTES: int = _CHUNK_KEY.size
META_SIZE_BYTES: int = _META_BODY.size + _META_CRC.size

# The diagram above is the contract; refuse to run if the structs drift from it.
if STORE_HEADER_SIZE_BYTES != 16 or META_SIZE_BYTES != 80:
    raise RuntimeError(
        f"layout v{LAYOUT_VERSION} structs disagree with the documented diagram: store header "
        f"{STORE_HEADER_SIZE_BYTES} bytes (expected 16), metadata {META_SIZE_BYTES} (expected 80)"
    )


def new_state_hasher() -> "hashlib._Hash":
    """The digest every snapshot is keyed to: blake2b-256 over the state bytes.

    By contract it is the state machine's canonical full digest, so the store can check
    the caller's digest on put and every read without knowing anything about orders.
    """
    return hashlib.blake2b(digest_size=DIGEST_SIZE_BYTES)


def state_digest(state_bytes: bytes | bytearray | memoryview) -> bytes:
    hasher = new_state_hasher()
    hasher.update(state_bytes)
    return hasher.digest()


def encode_store_header() -> bytes:
    return _STORE_HEADER.pack(STORE_MAGIC, LAYOUT_VERSION)


def decode_store_header(value: bytes) -> int:
    """Return the layout version of a store header; raise LayoutViolation if not one."""
    if len(value) != STORE_HEADER_SIZE_BYTES:
        raise LayoutViolation(
            f"store header is {len(value)} bytes, expected {STORE_HEADER_SIZE_BYTES}"
        )
    magic, layout_version = _STORE_HEADER.unpack(value)
    if magic != STORE_MAGIC:
        raise LayoutViolation(f"store header magic is {magic!r}, expected {STORE_MAGIC!r}")
    return int(layout_version)


def sequence_key(sequence: int) -> bytes:
    return _SEQUENCE_KEY.pack(sequence)


def decode_sequence_key(key: bytes) -> int:
    if len(key) != SEQUENCE_KEY_SIZE_BYTES:
        raise LayoutViolation(
            f"metadata key {bytes(key).hex()} is {len(key)} bytes, expected "
            f"{SEQUENCE_KEY_SIZE_BYTES}"
        )
    (sequence,) = _SEQUENCE_KEY.unpack(key)
    return int(sequence)


def chunk_key(sequence: int, index: int) -> bytes:
    return _CHUNK_KEY.pack(sequence, index)


def chunk_key_prefix(sequence: int) -> bytes:
    """All chunk keys of one snapshot start with this, and sort by index after it."""
    return _SEQUENCE_KEY.pack(sequence)


def decode_chunk_key(key: bytes) -> tuple[int, int]:
    """Return (sequence, chunk index); raise LayoutViolation if the key is malformed."""
    if len(key) != CHUNK_KEY_SIZE_BYTES:
        raise LayoutViolation(
            f"chunk key {bytes(key).hex()} is {len(key)} bytes, expected {CHUNK_KEY_SIZE_BYTES}"
        )
    sequence, index = _CHUNK_KEY.unpack(key)
    return int(sequence), int(index)


def chunk_count_for(state_size_bytes: int, chunk_size_bytes: int) -> int:
    return -(-state_size_bytes // chunk_size_bytes)


def chunk_length_bytes(info: SnapshotInfo, index: int) -> int:
    """The exact length chunk `index` of `info` must have."""
    if index < info.chunk_count - 1:
        return info.chunk_size_bytes
    return info.state_size_bytes - info.chunk_size_bytes * (info.chunk_count - 1)


def encode_meta(info: SnapshotInfo) -> bytes:
    body = _META_BODY.pack(
        META_MAGIC,
        LAYOUT_VERSION,
        info.format_version,
        info.sequence,
        info.chain_value,
        info.chunk_count,
        info.state_size_bytes,
        info.chunk_size_bytes,
        info.created_unix_ns,
        info.digest,
    )
    return body + _META_CRC.pack(zlib.crc32(body))


def decode_meta(key: bytes, value: bytes) -> SnapshotInfo:
    """Decode and check a metadata record; raise LayoutViolation naming what failed."""
    sequence_from_key = decode_sequence_key(key)
    if len(value) != META_SIZE_BYTES:
        raise LayoutViolation(f"metadata record is {len(value)} bytes, expected {META_SIZE_BYTES}")
    body = bytes(value[: _META_BODY.size])
    (crc_stored,) = _META_CRC.unpack(value[_META_BODY.size :])
    crc_computed = zlib.crc32(body)
    # The CRC first: if it fails, every field below is noise and naming one of them
    # would mislead whoever reads the message.
    if crc_stored != crc_computed:
        raise LayoutViolation(
            f"metadata crc32 mismatch: stored {crc_stored:08x}, computed {crc_computed:08x}"
        )
    (
        magic,
        layout_version,
        format_version,
        sequence,
        chain_value,
        chunk_count,
        state_size_bytes,
        chunk_size_bytes,
        created_unix_ns,
        digest,
    ) = _META_BODY.unpack(body)
    if magic != META_MAGIC:
        raise LayoutViolation(f"metadata magic is {magic!r}, expected {META_MAGIC!r}")
    if layout_version != LAYOUT_VERSION:
        raise LayoutViolation(
            f"metadata written by layout version {layout_version}, this code reads "
            f"version {LAYOUT_VERSION}"
        )
    if sequence != sequence_from_key:
        raise LayoutViolation(
            f"metadata record says sequence {sequence} but is stored under key "
            f"{sequence_from_key}"
        )
    if not CHUNK_SIZE_MIN_BYTES <= chunk_size_bytes <= CHUNK_SIZE_MAX_BYTES:
        raise LayoutViolation(
            f"chunk size {chunk_size_bytes} bytes is outside "
            f"[{CHUNK_SIZE_MIN_BYTES}, {CHUNK_SIZE_MAX_BYTES}]"
        )
    if state_size_bytes > STATE_SIZE_MAX_BYTES:
        raise LayoutViolation(
            f"state size {state_size_bytes} bytes exceeds the limit {STATE_SIZE_MAX_BYTES}"
        )
    if chunk_count != chunk_count_for(state_size_bytes, chunk_size_bytes) or chunk_count > CHUNK_COUNT_MAX:
        raise LayoutViolation(
            f"chunk count {chunk_count} does not fit state size {state_size_bytes} bytes "
            f"in chunks of {chunk_size_bytes} bytes"
        )
    return SnapshotInfo(
        sequence=int(sequence),
        digest=bytes(digest),
        chain_value=int(chain_value),
        format_version=int(format_version),
        state_size_bytes=int(state_size_bytes),
        chunk_count=int(chunk_count),
        chunk_size_bytes=int(chunk_size_bytes),
        created_unix_ns=int(created_unix_ns),
    )
