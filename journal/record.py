"""The decoded journal record handed to callers.

A Record is a NamedTuple, so it costs one tuple allocation, compares and hashes by
value, and unpacks like a tuple. Its field order is the order of the fields on disk,
followed by the record's crc (the chain value after it, which a standby sends back as
"where I am" when it reconnects).
"""

from __future__ import annotations

from typing import NamedTuple


class Record(NamedTuple):
    """One verified journal record."""

    sequence: int
    epoch: int
    timestamp_ns: int
    body: bytes
    crc: int
