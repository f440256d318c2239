"""The primary's logic, sans-I/O: sessions in, journal records and outbound messages out.

`PrimaryCore` does no I/O and reads no clock; the adapter (replica/primary_node.py)
passes `now_ns` in and carries out what the core asks for. That keeps the role logic
drivable by a deterministic simulator.

The pipeline (DESIGN.md's write-ahead invariant):

    client_payload()  decode, check the session, rate-limit, build the command with the
                      session's member, assign sequence + timestamp (never backwards) +
                      epoch  -> the record waits in `pending`
    take_records()    the adapter appends those records to the journal and commits
                      (group commit: everything pending goes in one write + one fsync)
    release(seq)      called with the sequence that is durable (locally, and in sync
                      replication mode on the standby too): only now are the records up
                      to it applied to the state machine, and only now do execution reports
                      and market data for them appear in the outboxes

So nothing anybody sees is derived from a record that could still be lost. Gateway
rejections (throttled, malformed frame, not logged on) are not journaled: they change
nothing and are answered at once.

Outboxes: `outbox[session_id]` is a list of messages for that session, in order; the
adapter takes and sends them after each step. `closing` lists sessions the core wants
closed (with the reason already queued as a Disconnect message).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

import msgspec

from replica.config import NodeConfig, token_matches
from replica.feed import FeedCore
from replica.replication import DIGEST_INTERVAL_RECORDS, DigestHistory
from replica.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    Disconnect,
    ExecutionReport,
    Heartbeat,
    Logon,
    LogonAccepted,
    LogonRejected,
    Logout,
    MassCancelRequest,
    OrderStatus,
    OrderStatusRequest,
    PlaceRequest,
    ReplaceRequest,
    RequestRejected,
    ServerHeartbeat,
    client_message_decoder,
)
from statemachine import (
    AddInstrument,
    CancelOrder,
    Checkpoint,
    Exchange,
    MassCancel,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    PlaceOrder,
    ReplaceOrder,
    StopTriggered,
    TradeExecuted,
)
from statemachine.codec import encode_command
from statemachine.version import RULES_VERSION

# Records that may wait for durability at once: a bound on memory and on how much a
# stalled disk or standby can pile up before the gateway pushes back (throttles).
UNRELEASED_RECORDS_MAX = 200_000


@dataclass
class Session:
    session_id: int
    member: Optional[str] = None
    outbound_sequence: int = 0
    tokens: float = 0.0  # rate limiter; a float may decide throttling, never a trade
    tokens_updated_ns: int = 0
    cancel_on_disconnect: bool = True
    heartbeat_interval_ms: int = 1000
    closing: bool = False  # a Disconnect / LogonRejected is queued: read nothing more from it


class PrimaryCore:
    def __init__(
        self,
        exchange: Exchange,
        config: NodeConfig,
        epoch: int,
        next_sequence: int,
        last_timestamp_ns: int = 0,
    ) -> None:
        if next_sequence != exchange.last_sequence + 1:
            raise ValueError(
                f"the journal continues at {next_sequence} but the exchange is at {exchange.last_sequence}"
            )
        self.exchange = exchange
        self.config = config
        self.epoch = epoch
        self.next_sequence = next_sequence
        self.last_timestamp_ns = last_timestamp_ns
        self.sessions: dict[int, Session] = {}
        self.member_sessions: dict[str, list[int]] = {}
        self.pending: list = []  # (sequence, timestamp_ns, command, session_id, request_id)
        self.unreleased: deque = deque()  # the same, handed to the journal, not yet durable
        self.outbox: dict[int, list] = {}
        self.closing: list[tuple[int, str]] = []
        self.feed = FeedCore(exchange)
        # The multicast publisher (replica/multicast.py), when the config enables it: it
        # is handed every released record, with or without market data.
        self.multicast = None
        self.released_sequence = exchange.last_sequence
        # Digests at multiples of DIGEST_INTERVAL_RECORDS, compared with the standby's.
        self.digests = DigestHistory()
        self._rate = config.limits.messages_per_second
        self._burst = config.limits.burst_messages

    # ------------------------------------------------------------ sessions

    def session_opened(self, session_id: int, now_ns: int) -> bool:
        if len(self.sessions) >= self.config.limits.sessions_max:
            return False
        self.sessions[session_id] = Session(session_id, tokens=float(self._burst), tokens_updated_ns=now_ns)
        return True

    def session_closed(self, session_id: int, now_ns: int) -> None:
        session = self.sessions.pop(session_id, None)
        self.outbox.pop(session_id, None)
        if session is None or session.member is None:
            return
        others = self.member_sessions.get(session.member, [])
        if session_id in others:
            others.remove(session_id)
        if not others and session.cancel_on_disconnect:
            # Cancel-on-disconnect is a journaled mass cancel, so it replays like
            # anything else and the standby does exactly the same.
            self._submit(MassCancel(session.member), 0, 0, now_ns)

    def _send(self, session: Session, message_class, *fields) -> None:
        session.outbound_sequence += 1
        self.outbox.setdefault(session.session_id, []).append(message_class(session.outbound_sequence, *fields))

    def _close(self, session: Session, reason: str) -> None:
        session.closing = True
        session.outbound_sequence += 1
        self.outbox.setdefault(session.session_id, []).append(Disconnect(reason, session.outbound_sequence))
        self.closing.append((session.session_id, reason))

    def frame_too_large(self, session_id: int, detail: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            self._close(session, f"frame_too_large: {detail}")

    def heartbeat(self, session_id: int) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.member is not None:
            self._send(session, ServerHeartbeat, self.released_sequence)

    # ------------------------------------------------------------ inbound

    def client_payload(self, session_id: int, payload: bytes, now_ns: int) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.closing:
            # Frames that arrived behind a logout (or a refused logon) in the same read
            # are not acted on: nothing may be journaled for a session being closed.
            return
        try:
            message = client_message_decoder.decode(payload)
        except msgspec.MsgspecError as error:
            if session.member is None:
                self._close(session, "not_logged_on")
            else:
                self._send(session, RequestRejected, 0, "malformed", str(error))
            return
        kind = type(message)
        if session.member is None:
            if kind is Logon:
                self._logon(session, message, now_ns)
            else:
                self._close(session, "not_logged_on")
            return
        if kind is Heartbeat:
            return
        if kind is Logout:
            self._close(session, "logout")
            return
        if kind is Logon:
            self._send(session, RequestRejected, 0, "already_logged_on")
            return
        # Token bucket: refill by elapsed time, one token per message.
        elapsed_ns = now_ns - session.tokens_updated_ns
        if elapsed_ns > 0:
            session.tokens = min(float(self._burst), session.tokens + elapsed_ns * self._rate / 1e9)
            session.tokens_updated_ns = now_ns
        if session.tokens < 1.0:
            self._send(session, RequestRejected, message.request_id, "throttled")
            return
        session.tokens -= 1.0
        if len(self.unreleased) + len(self.pending) >= UNRELEASED_RECORDS_MAX:
            self._send(session, RequestRejected, message.request_id, "busy", "too many records awaiting durability")
            return
        member = session.member
        if kind is PlaceRequest:
            command = PlaceOrder(
                member, message.client_order_id, message.symbol, message.side, message.order_type, message.qty,
                message.price, message.tif, message.post_only, message.display_qty, message.stop_price, message.stp,
            )
        elif kind is CancelRequest:
            command = CancelOrder(member, message.order_id, message.client_order_id)
        elif kind is ReplaceRequest:
            command = ReplaceOrder(member, message.order_id, message.qty, message.price, None, message.client_order_id)
        elif kind is MassCancelRequest:
            command = MassCancel(member, message.symbol)
        elif kind is OrderStatusRequest:
            self._order_status(session, message)
            return
        else:
            self._send(session, RequestRejected, 0, "unsupported", kind.__name__)
            return
        self._submit(command, session_id, message.request_id, now_ns)

    def _logon(self, session: Session, message: Logon, now_ns: int) -> None:
        if message.protocol_version != PROTOCOL_VERSION:
            self._reject_logon(session, "unsupported_protocol_version")
            return
        member = self.config.member(message.member)
        if member is None or not token_matches(message.token, member.token_hash):
            self._reject_logon(session, "bad_credentials")
            return
        session.member = member.name
        session.cancel_on_disconnect = member.cancel_on_disconnect
        session.heartbeat_interval_ms = max(100, min(60_000, message.heartbeat_interval_ms))
        self.member_sessions.setdefault(member.name, []).append(session.session_id)
        self.outbox.setdefault(session.session_id, []).append(
            LogonAccepted(session.session_id, member.name, PROTOCOL_VERSION, self.epoch, self.released_sequence)
        )

    def _reject_logon(self, session: Session, reason: str) -> None:
        session.closing = True
        self.outbox.setdefault(session.session_id, []).append(LogonRejected(reason))
        self.closing.append((session.session_id, reason))

    def _order_status(self, session: Session, message: OrderStatusRequest) -> None:
        state = self.exchange.order_state(message.order_id)
        if state is None or state["member"] != session.member:
            # Another member's order is reported as unknown: its existence is not ours to tell.
            self._send(session, OrderStatus, message.request_id, message.order_id, "unknown")
            return
        self._send(
            session, OrderStatus, message.request_id, message.order_id, state["status"], state["symbol"],
            state["side"], state["price"], state["visible_qty"], state["hidden_qty"],
        )

    # ------------------------------------------------------------ sequencer

    def _submit(self, command, session_id: int, request_id: int, now_ns: int) -> int:
        sequence = self.next_sequence
        self.next_sequence = sequence + 1
        timestamp_ns = now_ns if now_ns > self.last_timestamp_ns else self.last_timestamp_ns
        self.last_timestamp_ns = timestamp_ns
        self.pending.append((sequence, timestamp_ns, command, session_id, request_id))
        return sequence

    def submit_admin(self, command, now_ns: int) -> int:
        """Journal a command that comes from the operator (instrument admin, checkpoints)."""
        if not isinstance(command, (AddInstrument, Checkpoint)) and type(command).__name__ not in (
            "HaltInstrument", "ResumeInstrument", "EndOfDay", "MassCancel",
        ):
            raise ValueError(f"{type(command).__name__} is not an operator command")
        return self._submit(command, 0, 0, now_ns)

    def begin_epoch(self, now_ns: int) -> None:
        """A promoted node's first records: the epoch starts with its own checkpoint (so
        everything after it is visibly this node's), then the rules version it runs."""
        self._submit(Checkpoint(kind="epoch", epoch=self.epoch), 0, 0, now_ns)
        self._submit(Checkpoint(kind="rules", version=RULES_VERSION), 0, 0, now_ns)

    def take_records(self) -> list[tuple[int, int, int, bytes]]:
        """The pending records as (sequence, epoch, timestamp_ns, body), now handed over."""
        if not self.pending:
            return []
        epoch = self.epoch
        records = [(sequence, epoch, timestamp_ns, encode_command(command)) for sequence, timestamp_ns, command, _, _ in self.pending]
        self.unreleased.extend(self.pending)
        self.pending = []
        return records

    # ------------------------------------------------------------ release

    def release(self, durable_sequence: int) -> int:
        """Apply every handed-over record up to `durable_sequence`; route what it caused."""
        unreleased = self.unreleased
        apply = self.exchange.apply
        sessions = self.sessions
        member_sessions = self.member_sessions
        outbox = self.outbox
        publish = self.feed.publish
        multicast = self.multicast
        count = 0
        while unreleased and unreleased[0][0] <= durable_sequence:
            sequence, timestamp_ns, command, session_id, request_id = unreleased.popleft()
            events = apply(sequence, timestamp_ns, command)
            count += 1
            if not sequence % DIGEST_INTERVAL_RECORDS:
                self.digests.record(sequence, self.exchange.state_digest())
            market_data = None
            for event in events:
                kind = type(event)
                if kind is TradeExecuted:
                    members = (event.maker_member, event.taker_member)
                    if market_data is None:
                        market_data = []
                    market_data.append(event)
                elif kind is OrderAccepted or kind is OrderCancelled or kind is OrderReplaced or kind is StopTriggered:
                    members = (event.member,)
                elif kind is OrderRejected:
                    if event.member is None:
                        continue
                    members = (event.member,)
                else:
                    if market_data is None:
                        market_data = []
                    market_data.append(event)
                    continue
                for member in members:
                    for target in member_sessions.get(member, ()):
                        session = sessions[target]
                        session.outbound_sequence += 1
                        queue = outbox.get(target)
                        if queue is None:
                            queue = outbox[target] = []
                        queue.append(ExecutionReport(
                            session.outbound_sequence, request_id if target == session_id else 0, event
                        ))
                    if len(members) == 2 and members[0] == members[1]:
                        break
            if market_data is not None:
                publish(sequence, market_data)
            if multicast is not None:
                multicast.record_released(sequence, market_data)
        self.released_sequence = self.exchange.last_sequence
        return count

    def take_outbox(self) -> dict[int, list]:
        outbox = self.outbox
        self.outbox = {}
        return outbox

    def take_closing(self) -> list[tuple[int, str]]:
        closing = self.closing
        self.closing = []
        return closing
