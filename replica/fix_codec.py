"""FIX 4.4 tag=value codec, sans-I/O: bytes in, messages out, and messages to bytes.

A FIX message on the wire is a run of `tag=value<SOH>` fields (SOH = 0x01):

    8=FIX.4.4 | 9=<BodyLength> | 35=<MsgType> | ... body ... | 10=<CheckSum>
    \\________ header start ___/\\_____ BodyLength bytes ______/\\_ trailer: 7 bytes _/

BodyLength counts the bytes from the field after `9=` up to and including the SOH
before `10=`; CheckSum is the sum of every byte before `10=`, modulo 256, as three
digits. `FixStreamReader.feed` splits a TCP stream into messages and verifies both; a
message whose length, trailer or checksum is wrong is *garbled* and, as the FIX session
spec says, ignored (it does not count as received, its MsgSeqNum is not consumed): the
reader skips to the next `8=FIX.4.4` and counts it in `garbled`. A BodyLength beyond
MESSAGE_BYTES_MAX is treated the same (a peer cannot make the reader buffer megabytes).

Why not `simplefix`: its parser does not verify CheckSum or BodyLength (both must be
checked here, and a message that fails must be skipped, not raised on), and encoding
is a dozen lines; the whole codec is smaller than the glue around a library would be,
and it decodes straight into the (tag, value) list the session layer wants.

`FixMessage` keeps fields in wire order (`fields`) and the first value of each tag in
`values` (repeating groups are not used by the messages the gateway accepts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

SOH = b"\x01"
BEGIN_STRING = "FIX.4.4"
_BEGIN = b"8=FIX.4.4\x01"
_NEXT_BEGIN = b"\x01" + _BEGIN  # a BeginString right after the SOH ending a trailer
_BODY_LENGTH_TAG = b"9="
# No order-entry message comes near this; a longer body is a broken or hostile peer.
MESSAGE_BYTES_MAX = 16 * 1024
_TRAILER_BYTES = 7  # "10=" + 3 digits + SOH


@dataclass
class FixMessage:
    fields: list[tuple[int, str]]
    values: dict[int, str] = field(default_factory=dict)

    @property
    def msg_type(self) -> str:
        return self.values.get(35, "")

    def get(self, tag: int) -> Optional[str]:
        return self.values.get(tag)


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def parse_fields(body: bytes) -> Optional[list[tuple[int, str]]]:
    """The fields of `body` (without the 8= / 9= header), or None when it is not ASCII
    tag=value<SOH> throughout (a garbled message)."""
    if not body.endswith(SOH):
        return None
    try:
        text = body[:-1].decode("ascii")
    except UnicodeDecodeError:
        return None
    fields = []
    append = fields.append
    for part in text.split("\x01"):
        tag, equals, value = part.partition("=")
        if not equals or not tag.isdigit() or len(tag) > 9:
            return None
        append((int(tag), value))
    return fields


class FixStreamReader:
    def __init__(self) -> None:
        self.buffer = b""
        self.garbled = 0

    def feed(self, data: bytes) -> list[FixMessage]:
        buffer = self.buffer + data if self.buffer else data
        messages = []
        start = 0
        resynchronising = False  # just skipped a garbled message: what follows is not news
        while True:
            begin = buffer.find(_BEGIN, start)
            if begin < 0:
                # Nothing more begins here: keep only a tail that may be a BeginString
                # cut by the read; anything before it is not a message.
                rest = buffer[start:]
                keep = _begin_prefix_suffix(rest)
                if len(rest) > keep and not resynchronising:
                    self.garbled += 1
                buffer = rest[len(rest) - keep:] if keep else b""
                break
            if begin > start and not resynchronising:
                self.garbled += 1  # bytes before a BeginString are not a message
            resynchronising = False
            length_at = begin + len(_BEGIN)
            length_end = buffer.find(SOH, length_at, length_at + 10)
            if length_end < 0:
                if len(buffer) - length_at >= 10:
                    self.garbled += 1
                    start = length_at
                    continue
                buffer = buffer[begin:]
                break
            digits = buffer[length_at + 2:length_end]
            if (buffer[length_at:length_at + 2] != _BODY_LENGTH_TAG or not digits.isdigit()
                    or int(digits) > MESSAGE_BYTES_MAX):
                self.garbled += 1
                start = length_at
                resynchronising = True
                continue
            body_start = length_end + 1
            body_end = body_start + int(digits)
            message_end = body_end + _TRAILER_BYTES
            if len(buffer) < message_end:
                following = buffer.find(_NEXT_BEGIN, length_end)
                if 0 <= following < message_end:
                    # Another message begins inside this one's claimed length: the
                    # length was wrong (garbled); read on from that message.
                    self.garbled += 1
                    start = following + 1
                    resynchronising = True
                    continue
                buffer = buffer[begin:]
                break
            trailer = buffer[body_end:message_end]
            fields = None
            if (trailer[:3] == b"10=" and trailer[6:7] == SOH and trailer[3:6].isdigit()
                    and int(trailer[3:6]) == checksum(buffer[begin:body_end])):
                fields = parse_fields(buffer[body_start:body_end])
            if not fields or fields[0][0] != 35:
                # Garbled: look for the next message after this BeginString.
                self.garbled += 1
                start = length_at
                resynchronising = True
                continue
            values: dict[int, str] = {}
            for tag, value in fields:
                values.setdefault(tag, value)
            messages.append(FixMessage(fields, values))
            start = message_end
        self.buffer = buffer
        return messages


def _begin_prefix_suffix(data: bytes) -> int:
    """The length of the longest suffix of `data` that begins a BeginString."""
    for length in range(min(len(data), len(_BEGIN) - 1), 0, -1):
        if _BEGIN.startswith(data[-length:]):
            return length
    return 0


def encode_message(msg_type: str, header: list[tuple[int, object]], body: list[tuple[int, object]]) -> bytes:
    """One message: 8, 9, 35, then `header` (CompIDs, MsgSeqNum, SendingTime, ...), then
    `body`, then 10. Values are str or int, written as given (no SOH inside); a body
    field whose value is None or "" is left out."""
    parts = [f"35={msg_type}\x01"]
    for tag, value in header:
        parts.append(f"{tag}={value}\x01")
    for tag, value in body:
        if value is not None and value != "":  # FIX has no empty values: an unknown is left out
            parts.append(f"{tag}={value}\x01")
    payload = "".join(parts).encode("ascii")
    head = b"8=FIX.4.4\x019=" + str(len(payload)).encode() + SOH
    total = head + payload
    return total + b"10=%03d\x01" % checksum(total)


def utc_timestamp(time_ns: int) -> str:
    """FIX UTCTimestamp with milliseconds: YYYYMMDD-HH:MM:SS.sss (from an integer clock)."""
    seconds, rest_ns = divmod(time_ns, 1_000_000_000)
    parts = time.gmtime(seconds)
    return (f"{parts.tm_year:04d}{parts.tm_mon:02d}{parts.tm_mday:02d}-"
            f"{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}.{rest_ns // 1_000_000:03d}")
