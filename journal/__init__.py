"""The CRC-framed, append-only journal: bytes only, nothing about orders."""
