"""The one digest format of every `twinbook` output: 0x-prefixed lowercase hex of the full width.

A 64-bit state digest prints as 0x followed by 16 hex digits, a CRC-32C chain value as 0x
and 8, a 32-byte canonical digest as 0x and 64, in text and in --json alike (JSON carries
it as that string, never as a decimal integer, so a value can be compared by eye or grep
across commands).
"""

from __future__ import annotations

from typing import Optional, Union


def digest_text(value: Optional[Union[int, bytes]], bits: int = 64) -> Optional[str]:
    """The digest as 0x + lowercase hex, zero-padded to `bits` (bytes: their own width)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    return f"0x{value:0{bits // 4}x}"
