"""The standby's logic, sans-I/O: link messages in, journal work and acknowledgements out.

`StandbyCore` holds the hot exchange a standby keeps ready for promotion and decides
everything about the link; it does no I/O and reads no clock. The adapter
(replica/standby_node.py, or the simulator in replica/simulation/) owns the journal
writer and the socket and calls, in this order, for one connection:

    hello(epoch, last seq, last crc, our starts)    -> Hello to send first
    first_reply(message)                            -> LinkAttached | CheckChain | LinkRefused
    for a CheckChain: confirm_cut(check, our chain values at its points)
                                                    -> CutTail to carry out, or a fatal
                                                       LinkRefused (a real divergence)
    for each Frames message:
        the adapter appends the frames to its journal (which verifies every CRC, the
        chain and the epoch fence) and makes them durable, then
        durable_ack(durable sequence)               -> Ack to send at once (sync mode waits
                                                       on exactly this)
        apply_frames(message, chain before, durable)-> Ack after applying the records
    beat(PrimaryBeat)                               -> compares digests (divergence alarm)

The order matters: a record is applied only after it is durable in this node's journal,
so a standby never holds state its own recovery could not rebuild; and durability is
acknowledged before applying, so the primary's sync-mode wait does not include our
apply time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from journal.frames import decode_tuples
from replica.errors import LinkProtocolError
from replica.replication import (
    DIGEST_INTERVAL_RECORDS,
    REBUILD_COMMAND,
    REPLICATION_PROTOCOL_VERSION,
    Accepted,
    Ack,
    DigestHistory,
    Diverged,
    Frames,
    Hello,
    PrimaryBeat,
    Refused,
)
from statemachine import Exchange
from statemachine.codec import decode_command


@dataclass(frozen=True)
class LinkAttached:
    """The primary accepted us; frames follow from our last sequence + 1."""

    epoch: int
    primary_last_sequence: int


@dataclass(frozen=True)
class CheckChain:
    """The primary's cut points, (sequence, its chain value) newest first: our journal's
    chain values there decide where to cut (`confirm_cut`)."""

    points: tuple
    reason: str


@dataclass(frozen=True)
class CutTail:
    """Our records after `common_sequence` are not the primary's: cut them (kept as
    `.divergent` evidence), rebuild the exchange, reconnect."""

    common_sequence: int
    reason: str


@dataclass(frozen=True)
class LinkRefused:
    """The primary refused us; `fatal` means retrying cannot help (another cluster, no
    common history): stop following and say why."""

    reason: str
    fatal: bool


FirstReplyAction = Union[LinkAttached, CheckChain, LinkRefused]
# One promotion rule: the watchdog's `--timeout-ms` is the failure detector, and its
# promote request carries it (`primary_timeout_ms`); a standby refuses only while its
# own link shows the primary alive by that same threshold: attached, and a beat within
# it. A promotion by hand without a threshold uses this default (beats come every
# 200 ms).
PRIMARY_ALIVE_DEFAULT_MS = 1000


class StandbyCore:
    def __init__(self, exchange: Exchange, cluster_id: int) -> None:
        self.exchange = exchange
        self.cluster_id = cluster_id
        self.digests = DigestHistory()
        self.connected = False
        self.primary_released_sequence = 0
        self.primary_last_sequence = 0
        self.divergence: Optional[str] = None
        self.fatal_reason: Optional[str] = None
        self.last_beat_ns = 0

    def rebuilt(self, exchange: Exchange) -> None:
        """The adapter rebuilt the exchange from its journal (after cutting a tail)."""
        self.exchange = exchange
        self.digests = DigestHistory()

    @property
    def promotable(self) -> bool:
        return self.divergence is None and self.fatal_reason is None

    # ------------------------------------------------------------ the link

    def hello(self, epoch: int, last_sequence: int, last_crc: int, starts: list[tuple[int, int]]) -> Hello:
        """`starts`: (sequence, our chain value) where a primary started on our journal."""
        if last_sequence != self.exchange.last_sequence:
            raise ValueError(f"journal ends at {last_sequence} but the exchange is at {self.exchange.last_sequence}")
        self.connected = False
        return Hello(REPLICATION_PROTOCOL_VERSION, self.cluster_id, epoch, last_sequence, last_crc, starts)

    def first_reply(self, message) -> FirstReplyAction:
        kind = type(message)
        if kind is Accepted:
            self.connected = True
            self.primary_last_sequence = max(self.primary_last_sequence, message.primary_last_sequence)
            return LinkAttached(message.epoch, message.primary_last_sequence)
        if kind is Diverged:
            if not message.points:
                raise LinkProtocolError("the primary's diverged reply names no cut point")
            return CheckChain(tuple((sequence, crc) for sequence, crc in message.points), message.reason)
        if kind is Refused:
            if message.fatal:
                self.fatal_reason = message.reason
            return LinkRefused(message.reason, message.fatal)
        raise LinkProtocolError(f"the primary's first reply was {kind.__name__}, not accepted/diverged/refused")

    def confirm_cut(self, check: CheckChain, own_crcs: dict[int, int]) -> Union[CutTail, LinkRefused]:
        """Where to cut, from our journal's chain values at the primary's points.

        `own_crcs` maps the points' sequences our journal holds to its chain values
        there (sequence 0 needs none). The newest point where they equal the primary's
        is the cut, whatever the length of the tail after it. None: our history parts
        from the primary's before its epoch boundary, which no failover explains;
        nothing is cut, and we stop."""
        for sequence, crc in check.points:
            if sequence == 0 or own_crcs.get(sequence) == crc:
                return CutTail(sequence, check.reason)
        boundary = check.points[0][0]
        self.fatal_reason = (f"this node's chain differs from the primary's at sequence {boundary}, at or before "
                             f"its epoch boundary: a real divergence; rebuild this node with `{REBUILD_COMMAND}`")
        return LinkRefused(self.fatal_reason, True)

    def link_lost(self) -> None:
        self.connected = False
        self.last_beat_ns = 0

    def durable_ack(self, durable_sequence: int) -> Ack:
        return Ack(durable_sequence, self.exchange.last_sequence, *self.digests.latest)

    def apply_frames(self, message: Frames, chain_before: int, durable_sequence: int) -> Ack:
        """Apply a Frames message the adapter has journaled and made durable.

        `chain_before` is the journal's chain value before these frames were appended;
        the frames are decoded (and their CRCs checked once more) from the message bytes.
        """
        if message.first_sequence != self.exchange.last_sequence + 1:
            raise LinkProtocolError(
                f"frames start at {message.first_sequence} but the exchange is at {self.exchange.last_sequence}"
            )
        if durable_sequence < message.last_sequence:
            raise LinkProtocolError(f"frames to {message.last_sequence} applied before durable (at {durable_sequence})")
        records: list = []
        decode_tuples(message.frames, 0, message.first_sequence, chain_before, 0,
                      message.last_sequence - message.first_sequence + 1, records)
        self.apply_records(records)
        if message.released_sequence > self.primary_released_sequence:
            self.primary_released_sequence = message.released_sequence
        if message.last_sequence > self.primary_last_sequence:
            self.primary_last_sequence = message.last_sequence
        return Ack(durable_sequence, self.exchange.last_sequence, *self.digests.latest)

    def apply_records(self, records: list) -> None:
        """Apply (sequence, epoch, timestamp_ns, body) records in order; record digests."""
        exchange = self.exchange
        apply = exchange.apply
        for sequence, _epoch, timestamp_ns, body in records:
            apply(sequence, timestamp_ns, decode_command(body))
            if not sequence % DIGEST_INTERVAL_RECORDS:
                self.digests.record(sequence, exchange.state_digest())

    def primary_alive(self, now_ns: int, timeout_ms: int = PRIMARY_ALIVE_DEFAULT_MS, *,
                      link_established: bool = True) -> bool:
        """Attached and beaten within `timeout_ms` (the watchdog's own failure-detector
        threshold): promoting now would make two primaries. A promote that arrives late
        (held by the network while the operator restarted the old primary) must be
        refused; the simulator's seed 15 found it.

        `link_established` is the adapter's look at its connection (TCP state): a peer
        that has closed it is not alive, whatever the beats still queued behind the
        frames say. A loaded standby behind on its link processes beats the primary sent
        before it died, and refused promotions for a second and more."""
        return (self.connected and link_established and self.last_beat_ns > 0
                and now_ns - self.last_beat_ns < timeout_ms * 1_000_000)

    def beat(self, beat: PrimaryBeat, now_ns: int) -> Optional[str]:
        """Take a primary's beat; returns the alarm text when it reveals a divergence."""
        self.last_beat_ns = now_ns
        if beat.released_sequence > self.primary_released_sequence:
            self.primary_released_sequence = beat.released_sequence
        if beat.last_sequence > self.primary_last_sequence:
            self.primary_last_sequence = beat.last_sequence
        same = self.digests.compare(beat.digest_sequence, beat.digest)
        if same is False and self.divergence is None:
            self.divergence = f"digest at sequence {beat.digest_sequence} differs from the primary's"
            return self.divergence
        return None

    def status(self, epoch: int, last_sequence: int, durable_sequence: int) -> dict:
        """The fields the watchdog decides on (replica/watchdog.py reads them)."""
        return {
            "role": "standby",
            "cluster_id": self.cluster_id,
            "epoch": epoch,
            "last_sequence": last_sequence,
            "durable_sequence": durable_sequence,
            "applied_sequence": self.exchange.last_sequence,
            "primary_connected": self.connected,
            "primary_released_sequence": self.primary_released_sequence,
            "primary_last_sequence": self.primary_last_sequence,
            "divergence": self.divergence,
            "fatal": self.fatal_reason,
            "promotable": self.promotable,
        }
