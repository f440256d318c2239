"""The replication link between a primary and its standby: messages and decisions.

The link is its own TCP port on the primary, carrying the same length-prefixed msgpack
frames as the client protocol (replica/protocol.py). The standby connects and speaks
first:

    standby                                      primary
    Hello(cluster, epoch, last seq, last crc,
          its own primary starts (seq, crc))   ─►
                                               ◄─ Accepted(start at last seq + 1)
                                                  | Diverged((seq, chain value) points,
                                                    newest first): cut after the newest
                                                    where your chain matches; none does:
                                                    stop for an operator
                                                  | Refused(reason)
                                               ◄─ Frames(journal frames, byte for byte:
                                                    catch-up from disk, then live)
    Ack(durable seq, applied seq, digest)       ─►
                                               ◄─ PrimaryBeat(epoch, sequences, digest)

Journal frames travel unchanged, so the standby's journal verifies every CRC and the
chain against its own tail (`JournalWriter.append_frames`) and its segment files come
out byte-identical. Records carry their epoch; the standby's writer refuses frames of an
epoch below its own (the fence against an old primary).

State digests: both sides record `state_digest()` whenever they have applied a multiple
of DIGEST_INTERVAL_RECORDS records; beats and acks carry the latest (sequence, digest)
pair, and a side holding a different digest for the same sequence raises the
divergence alarm (the standby then refuses promotion).

Rejoin by the epoch boundary. Records of epoch e are written only by the primary of
epoch e, so a standby whose last record is not the primary's can differ from it only
after the last record the primary holds of the standby's epoch or an older one: the
boundary (`epoch_boundary`; for an old primary rejoining, the record just before the
new primary's epoch-start record). One more way to part exists inside an epoch: a
primary streams batches as it writes them, so a standby may hold records its primary
lost in a crash, and the restarted primary writes others at those sequences. So the
cut points are the boundary and the sequences where a primary started on either
journal (DataDirectory's `primary-starts`: the standby sends its own in its Hello
with its chain values, and the primary keeps those that equal its own). The primary
answers Diverged(the points with its chain values, newest first); the standby cuts
after the newest whose chain value equals its own there (the chain covers every
record before it, so equal means the same history up to it). Its records after it were never
acknowledged by this primary, and are moved, however many, to a `.divergent` file
before it catches up. None equal: the histories part before the boundary, which no
failover can explain; the standby stops and names the sequence and the command that
rebuilds it (`twinbook standby --rebuild`).

The decisions are pure functions here (`decide_hello`, `DigestHistory.compare`); the
asyncio adapters in replica/primary_node.py and replica/standby_node.py do the I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import msgspec

from replica.errors import LinkProtocolError
from replica.protocol import FrameReader

# Version 2: rejoin by the epoch boundary (Hello with the standby's primary starts instead
# of recent pairs, Diverged with cut points).
REPLICATION_PROTOCOL_VERSION = 2
DIGEST_INTERVAL_RECORDS = 1024
DIGEST_HISTORY_MAX = 64
# What an operator runs on a node whose journal truly diverged (tools/commands_node.py).
REBUILD_COMMAND = "twinbook standby --rebuild"
# A Diverged reply names at most this many cut points (the boundary and the newest
# primary starts below the standby's end).
CUT_POINTS_MAX = 32
# Catch-up reads and sends frames in batches of at most this many bytes. A standby acks
# a batch only once all of it has arrived and is durable, and one that acks nothing for
# STANDBY_ACK_TIMEOUT_SECONDS (3 s) is cut off: so a batch must cross the slowest link
# we support within that time. 256 KiB does at 90 kB/s and above (1 MiB needed 350 kB/s,
# and a catch-up through a slower link was cut off every 3 s); it is still large enough
# that the per-batch costs (a read, a message, an fsync on the standby) do not show.
CATCH_UP_BATCH_BYTES_MAX = 256 * 1024
# A link message carries up to one journal batch of frames (live: a whole commit batch,
# up to journal.BATCH_SIZE_BYTES_MAX; catch-up: CATCH_UP_BATCH_BYTES_MAX), far above the
# client protocol's FRAME_PAYLOAD_BYTES_MAX, so the link has its own bound.
LINK_FRAME_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024 + 64 * 1024


class LinkFrameReader(FrameReader):
    """The client protocol's framing (replica.protocol.FrameReader) with the link's bound."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(LINK_FRAME_PAYLOAD_BYTES_MAX)


class _Link(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    """Base of every replication message."""


class Hello(_Link, tag="hello"):
    protocol_version: int
    cluster_id: int
    epoch: int
    last_sequence: int
    last_crc: int
    starts: list[tuple[int, int]] = []  # where a primary started on the standby's journal, with its chain values


class Accepted(_Link, tag="accepted"):
    epoch: int
    start_sequence: int
    primary_last_sequence: int


class Diverged(_Link, tag="diverged"):
    points: list[tuple[int, int]]  # (sequence, chain value), newest first
    reason: str


class Refused(_Link, tag="refused"):
    reason: str
    fatal: bool = False


class Frames(_Link, tag="frames"):
    first_sequence: int
    last_sequence: int
    frames: bytes
    released_sequence: int


class PrimaryBeat(_Link, tag="beat"):
    epoch: int
    last_sequence: int
    durable_sequence: int
    released_sequence: int
    digest_sequence: int
    digest: int


class Ack(_Link, tag="ack"):
    durable_sequence: int
    applied_sequence: int
    digest_sequence: int
    digest: int


LinkMessage = Hello | Accepted | Diverged | Refused | Frames | PrimaryBeat | Ack
link_decoder = msgspec.msgpack.Decoder(LinkMessage)


@dataclass(frozen=True)
class HelloDecision:
    reply: _Link
    start_sequence: int = 0  # where to stream from, for Accepted
    primary_must_step_down: bool = False


def decide_hello(
    hello: Hello,
    *,
    cluster_id: int,
    epoch: int,
    first_sequence: int,
    last_sequence: int,
    crc_lookup: Callable[[list[int]], dict[int, int]],
    boundary_lookup: Callable[[int, int], tuple[int, int]],
    start_sequences: Iterable[int] = (),
) -> HelloDecision:
    """How a primary answers a standby's Hello.

    `crc_lookup(sequences)` returns the primary journal's chain value at each of the
    sequences it holds (sequences it does not hold are left out).
    `boundary_lookup(epoch, up_to_sequence)` returns (sequence, chain value) of the
    primary's last record at or below `up_to_sequence` whose epoch is at most `epoch`,
    (0, 0) when there is none (replica.link_journal.epoch_boundary). `start_sequences`
    are the sequences at which a primary started on this journal.
    """
    if hello.protocol_version != REPLICATION_PROTOCOL_VERSION:
        return HelloDecision(Refused(f"replication protocol {hello.protocol_version}, this primary speaks "
                                     f"{REPLICATION_PROTOCOL_VERSION}", fatal=True))
    if hello.cluster_id != cluster_id:
        return HelloDecision(Refused(f"cluster id {hello.cluster_id} is not this cluster's ({cluster_id})", fatal=True))
    if hello.epoch > epoch:
        # Someone was promoted after us: we are an old primary and must stop at once.
        return HelloDecision(
            Refused(f"this primary's epoch {epoch} is older than the standby's {hello.epoch}", fatal=True),
            primary_must_step_down=True,
        )
    if hello.last_sequence == 0:
        if first_sequence > 1:
            return HelloDecision(Refused(f"this journal starts at {first_sequence}; seed the standby from a snapshot",
                                         fatal=True))
        return HelloDecision(Accepted(epoch, 1, last_sequence), start_sequence=1)
    if first_sequence <= hello.last_sequence <= last_sequence:
        if crc_lookup([hello.last_sequence]).get(hello.last_sequence) == hello.last_crc:
            return HelloDecision(Accepted(epoch, hello.last_sequence + 1, last_sequence),
                                 start_sequence=hello.last_sequence + 1)
    boundary, boundary_crc = boundary_lookup(hello.epoch, min(hello.last_sequence, last_sequence))
    if boundary == 0 and first_sequence > 1 or 0 < boundary < first_sequence:
        # Our journal no longer holds the records where the histories part (archived):
        # we cannot tell, so nothing of the standby's journal may be cut.
        return HelloDecision(Refused(
            f"this journal starts at {first_sequence}, after the standby's epoch boundary; "
            "seed the standby from a snapshot", fatal=True,
        ))
    # Every point is below the standby's end: its last record is known not to be ours.
    starts = sorted({sequence for sequence in start_sequences
                     if first_sequence <= sequence < hello.last_sequence and sequence <= last_sequence},
                    reverse=True)
    standby_starts = {sequence: crc for sequence, crc in hello.starts[-CUT_POINTS_MAX:]
                      if first_sequence <= sequence < hello.last_sequence and sequence <= last_sequence}
    crcs = crc_lookup(sorted(set(starts[:CUT_POINTS_MAX]) | set(standby_starts)))
    points = {sequence: crc for sequence, crc in crcs.items()
              if sequence in starts[:CUT_POINTS_MAX] or standby_starts.get(sequence) == crc}
    if boundary < hello.last_sequence:
        points[boundary] = boundary_crc
    if not points:
        return HelloDecision(Refused(
            f"the standby's chain differs from this primary's at sequence {boundary}, at or before the epoch "
            f"boundary: a real divergence; rebuild the standby with `{REBUILD_COMMAND}`", fatal=True,
        ))
    newest_first = sorted(points.items(), reverse=True)[:CUT_POINTS_MAX]
    return HelloDecision(Diverged(
        newest_first,
        f"the standby's records after {boundary} (the last of epoch {hello.epoch} or older here) or after "
        f"a primary start are not this primary's",
    ))


class DigestHistory:
    """Recent (sequence, state digest) pairs at multiples of DIGEST_INTERVAL_RECORDS."""

    def __init__(self) -> None:
        self._pairs: deque = deque(maxlen=DIGEST_HISTORY_MAX)
        self._by_sequence: dict[int, int] = {}

    def record(self, sequence: int, digest: int) -> None:
        if len(self._pairs) == self._pairs.maxlen:
            old_sequence, _ = self._pairs[0]
            self._by_sequence.pop(old_sequence, None)
        self._pairs.append((sequence, digest))
        self._by_sequence[sequence] = digest

    @property
    def latest(self) -> tuple[int, int]:
        return self._pairs[-1] if self._pairs else (0, 0)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Every (sequence, digest) held, oldest first (`twinbook status` compares them)."""
        return list(self._pairs)

    def compare(self, sequence: int, digest: int) -> Optional[bool]:
        """True/False if we hold a digest for `sequence` and it matches; None if not held."""
        if sequence == 0:
            return None
        mine = self._by_sequence.get(sequence)
        if mine is None:
            return None
        return mine == digest


class ReleasePolicy:
    """When a primary may let outputs leave: local durability, and in sync mode the standby's.

    `point(local_sequence)` is the highest sequence whose execution reports and market
    data may go out, given how far this node's journal is durable (or written, under a
    weaker durability policy). In sync mode, once a standby has attached
    (`standby_required`), it is also capped by the standby's durable sequence, until an
    operator degrades the primary to standalone. Async mode never waits for the standby.
    """

    __slots__ = ("mode", "standby_required", "degraded", "standby_durable_sequence")

    def __init__(self, mode: str, *, standby_required: bool = False) -> None:
        if mode not in ("sync", "async"):
            raise ValueError(f"replication mode {mode!r} is not sync or async")
        self.mode = mode
        # A primary restarted where a standby had been required (DataDirectory's
        # marker) waits for one again: running standalone beside a standby that may be
        # promoted meanwhile would let both acknowledge.
        self.standby_required = standby_required and mode == "sync"
        self.degraded = False
        self.standby_durable_sequence = 0

    def point(self, local_sequence: int) -> int:
        if self.mode == "sync" and self.standby_required and self.standby_durable_sequence < local_sequence:
            return self.standby_durable_sequence
        return local_sequence

    def standby_live(self) -> bool:
        """A standby caught up and went live: in sync mode acknowledgements wait for it.
        True when that newly makes the standby required (the adapter records it durably)."""
        if self.mode == "sync":
            newly = not self.standby_required
            self.standby_required = True
            self.degraded = False
            return newly
        return False

    def standby_durable(self, sequence: int) -> bool:
        """The standby reported `sequence` durable; True if that moved the point."""
        if sequence > self.standby_durable_sequence:
            self.standby_durable_sequence = sequence
            return True
        return False

    def can_degrade(self, standby_live: bool) -> Optional[str]:
        """Why degrading is refused now, or None when it may go ahead."""
        if self.mode != "sync" or not self.standby_required:
            return "not waiting for a standby; nothing to degrade"
        if standby_live:
            return "the standby is attached; refusing to degrade"
        return None

    def degrade(self) -> None:
        self.standby_required = False
        self.degraded = True


class InFlightWindow:
    """How far a sync primary may journal past what its standby has made durable.

    While a standby is required (sync mode, not degraded), the records journaled here
    and not yet durable on the standby are bounded by `records_max` and by `bytes_max`
    of frames. The commit loop asks `room(written sequence, standby durable sequence)`
    before journaling and takes only that many of the sequenced records; the rest wait,
    and the adapter stops reading client sockets until the standby's acks make room
    (backpressure reaches the clients instead of an unbounded unacknowledged tail, which
    an old primary would have to cut when it rejoins).

    Bytes are counted per journaled batch (`journaled(last sequence, bytes)`), a batch
    counting in full until the standby has all of it: the bound errs on the safe side.
    A standby attaching below batches already forgotten is bounded by records alone.
    """

    __slots__ = ("records_max", "bytes_max", "_batches", "_bytes_ahead")

    def __init__(self, records_max: int, bytes_max: int) -> None:
        if records_max < 1 or bytes_max < 1:
            raise ValueError(f"in-flight window of {records_max} records, {bytes_max} bytes: both must be positive")
        self.records_max = records_max
        self.bytes_max = bytes_max
        self._batches: deque = deque()  # (last sequence, bytes) not yet all durable on the standby
        self._bytes_ahead = 0

    def journaled(self, last_sequence: int, size_bytes: int) -> None:
        self._batches.append((last_sequence, size_bytes))
        self._bytes_ahead += size_bytes

    def standby_durable(self, sequence: int) -> None:
        batches = self._batches
        while batches and batches[0][0] <= sequence:
            self._bytes_ahead -= batches.popleft()[1]

    def room(self, written_sequence: int, standby_durable_sequence: int) -> tuple[int, int]:
        """(records, bytes) that may still be journaled; either at 0 means full."""
        records = self.records_max - max(0, written_sequence - standby_durable_sequence)
        return max(0, records), max(0, self.bytes_max - self._bytes_ahead)


class StandbyLinkCore:
    """The primary's end of one standby's link, sans-I/O: catch-up, live, acks, silence.

    After `decide_hello` accepted a standby at `start_sequence`, the adapter asks
    `catch_up_range(written_sequence)` for the next range of journal frames to read from
    disk and send, until it answers None: the link is then live, and from that moment
    every batch the commit loop writes goes to the standby as it is written. The answer
    and the switch happen in one call, so no batch can fall between catch-up and live.

    `frames_sent` and `ack` keep the clock of what the standby owes: a standby that has
    acknowledged nothing it was sent for `ack_timeout_ns` is `overdue` and must be cut
    off (a silent partition must end in a detached standby, so that sync mode can be
    degraded by an operator).
    """

    __slots__ = ("next_sequence", "live", "sent_sequence", "durable_sequence", "applied_sequence",
                 "digest_sequence", "digest", "owed_since_ns", "ack_timeout_ns")

    def __init__(self, start_sequence: int, now_ns: int, ack_timeout_ns: int) -> None:
        if start_sequence < 1 or ack_timeout_ns <= 0:
            raise ValueError(f"bad link start {start_sequence} or ack timeout {ack_timeout_ns}")
        self.next_sequence = start_sequence
        self.live = False
        self.sent_sequence = start_sequence - 1
        self.durable_sequence = start_sequence - 1
        self.applied_sequence = 0
        self.digest_sequence = 0
        self.digest = 0
        self.owed_since_ns = now_ns
        self.ack_timeout_ns = ack_timeout_ns

    def catch_up_range(self, written_sequence: int) -> Optional[tuple[int, int]]:
        """(first, last) to send from disk next; None once caught up, and then live."""
        if self.live:
            return None
        if self.next_sequence > written_sequence:
            self.live = True
            return None
        return self.next_sequence, written_sequence

    def frames_sent(self, first_sequence: int, last_sequence: int, now_ns: int) -> None:
        if first_sequence != self.sent_sequence + 1 or last_sequence < first_sequence:
            raise LinkProtocolError(
                f"frames {first_sequence}..{last_sequence} do not follow the {self.sent_sequence} sent before"
            )
        if self.durable_sequence >= self.sent_sequence:
            # Nothing was owed until now: the standby's clock starts with this send.
            self.owed_since_ns = now_ns
        self.sent_sequence = last_sequence
        if not self.live:
            self.next_sequence = last_sequence + 1

    def ack(self, ack: Ack, now_ns: int) -> bool:
        """Take an Ack; True if the standby's durable sequence advanced."""
        self.applied_sequence = ack.applied_sequence
        if ack.digest_sequence:
            self.digest_sequence, self.digest = ack.digest_sequence, ack.digest
        if ack.durable_sequence > self.durable_sequence:
            if ack.durable_sequence > self.sent_sequence:
                raise LinkProtocolError(
                    f"standby acknowledged {ack.durable_sequence}, beyond the {self.sent_sequence} sent"
                )
            self.durable_sequence = ack.durable_sequence
            self.owed_since_ns = now_ns
            return True
        return False

    def overdue(self, now_ns: int) -> bool:
        return self.durable_sequence < self.sent_sequence and now_ns - self.owed_since_ns > self.ack_timeout_ns
