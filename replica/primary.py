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
from replica.gateway import AdmissionGate, LogonGuard, LogonGuardSettings, request_problem
from replica.market_data import public_trade
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
    MassCancelCompleted,
    MassCancelRequest,
    OrderStatus,
    OrderStatusRequest,
    PlaceRequest,
    ReplaceRequest,
    RequestRejected,
    ServerHeartbeat,
    ServerTestRequest,
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
# Idle sessions (FIX's rule): a logged-on session silent for TEST_REQUEST_AFTER_INTERVALS
# of its negotiated heartbeat interval gets a ServerTestRequest; silent for
# IDLE_CUT_AFTER_INTERVALS, it is cut (`idle_timeout`). Any inbound frame counts.
TEST_REQUEST_AFTER_INTERVALS = 2
IDLE_CUT_AFTER_INTERVALS = 4
HEARTBEAT_INTERVAL_MS_MIN = 100
HEARTBEAT_INTERVAL_MS_MAX = 60_000


@dataclass
class RateBucket:
    """One member's token bucket, shared by all of its sessions (five sessions do not
    get five budgets). A float may decide throttling, never a trade."""

    tokens: float
    updated_ns: int


@dataclass
class Session:
    session_id: int
    member: Optional[str] = None
    outbound_sequence: int = 0
    bucket: Optional[RateBucket] = None  # the member's, from logon
    cancel_on_disconnect: bool = True
    heartbeat_interval_ms: int = 1000
    closing: bool = False  # a Disconnect / LogonRejected is queued: read nothing more from it
    peer: str = ""
    last_inbound_ns: int = 0
    next_heartbeat_ns: int = 0
    test_request_sent: bool = False


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
        self.rejections: dict[str, int] = {}  # gateway refusals by reason, since start (metrics)
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
        self.buckets: dict[str, RateBucket] = {}
        self.logged_on = 0
        gateway = config.gateway
        self.gate = AdmissionGate(gateway.pending_logons_max, gateway.pending_logons_per_peer_max,
                                  gateway.logon_timeout_ms * 1_000_000)
        self.logon_guard = LogonGuard(LogonGuardSettings(
            delay_base_ns=gateway.logon_failure_delay_ms * 1_000_000,
            delay_max_ns=gateway.logon_failure_delay_max_ms * 1_000_000,
            failures_per_refusal=gateway.logon_failures_per_refusal,
            refusal_ns=gateway.logon_refusal_ms * 1_000_000,
            log_interval_ns=gateway.logon_failure_log_interval_ms * 1_000_000,
        ))
        # Logons held while their address is blocked after failures (in arrival order).
        self.held_logons: dict[int, Logon] = {}
        # Lines for the operator's log (failed logons), taken by the adapter.
        self.log_lines: list[str] = []
        # True while the adapter has stopped reading client sockets (the in-flight window
        # is full): a member's silence is then ours, so no session is idle-cut.
        self.reading_paused = False
        # Called with (sequence, timestamp_ns, command, events) for every released record
        # (the FIX acceptor's ledger, replica/fix_ledger.py), or None.
        self.release_observer = None

    # ------------------------------------------------------------ sessions

    def session_opened(self, session_id: int, now_ns: int, peer: str = "") -> Optional[str]:
        """Admit a new connection (not logged on yet) from address `peer`; the refusal
        reason when it is not admitted. Admitting may evict another pending connection
        (queued to close with `evicted`)."""
        refusal, evicted = self.gate.admit(session_id, peer, now_ns)
        if refusal is not None:
            return refusal
        if evicted is not None:
            victim = self.sessions.get(evicted)
            if victim is not None:
                self._close(victim, "evicted_before_logon")
        self.sessions[session_id] = Session(session_id, peer=peer, last_inbound_ns=now_ns)
        return None

    def inbound_paused(self, paused: bool, now_ns: int) -> None:
        """The adapter stopped (True) or resumed (False) reading every client socket.

        While paused nothing a member sends can arrive, so the idle clock and the logon
        timeout stop; on resume every session's silence and every pending logon's wait
        count from now (what it sent meanwhile is still in the kernel's buffer, and its
        heartbeat or logon is among it)."""
        self.reading_paused = paused
        if not paused:
            self.gate.restart_clock(now_ns)
            for session in self.sessions.values():
                if session.last_inbound_ns < now_ns:
                    session.last_inbound_ns = now_ns
                    session.test_request_sent = False

    def session_closed(self, session_id: int, now_ns: int) -> None:
        session = self.sessions.pop(session_id, None)
        self.outbox.pop(session_id, None)
        self.gate.leave(session_id)
        self.held_logons.pop(session_id, None)
        if session is None or session.member is None:
            return
        self.logged_on -= 1
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

    def _reject(self, session: Session, request_id: int, reason: str, detail: Optional[str] = None) -> None:
        """A gateway refusal (not journaled), counted by reason for the metrics endpoint."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        self._send(session, RequestRejected, request_id, reason, detail)

    def _close(self, session: Session, reason: str) -> None:
        session.closing = True
        session.outbound_sequence += 1
        self.outbox.setdefault(session.session_id, []).append(Disconnect(reason, session.outbound_sequence))
        self.closing.append((session.session_id, reason))

    def frame_too_large(self, session_id: int, detail: str) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            self._close(session, f"frame_too_large: {detail}")

    def tick(self, now_ns: int) -> None:
        """The gateway's timers, called often by the adapter: logon timeouts, held
        logons whose address is no longer blocked, heartbeats at each session's
        negotiated interval, test requests and idle cuts, failed-logon log lines."""
        for session_id in () if self.reading_paused else self.gate.expired(now_ns):
            # A logon held behind its address's block counts too: an address cannot
            # pile up held connections beyond its pending bound.
            self.held_logons.pop(session_id, None)
            session = self.sessions.get(session_id)
            if session is not None and not session.closing:
                self._close(session, "logon_timeout")
        for session_id, message in list(self.held_logons.items()):
            session = self.sessions.get(session_id)
            if session is None or session.closing:
                self.held_logons.pop(session_id, None)
            elif self.logon_guard.check(session.peer, now_ns)[0] != "wait":
                del self.held_logons[session_id]
                self._logon(session, message, now_ns)
        reading_paused = self.reading_paused
        for session in self.sessions.values():
            if session.member is None or session.closing:
                continue
            interval_ns = session.heartbeat_interval_ms * 1_000_000
            silent_ns = 0 if reading_paused else now_ns - session.last_inbound_ns
            if silent_ns >= IDLE_CUT_AFTER_INTERVALS * interval_ns:
                self._close(session, "idle_timeout")
                continue
            if silent_ns >= TEST_REQUEST_AFTER_INTERVALS * interval_ns and not session.test_request_sent:
                session.test_request_sent = True
                self._send(session, ServerTestRequest)
            if now_ns >= session.next_heartbeat_ns:
                session.next_heartbeat_ns = now_ns + interval_ns
                self._send(session, ServerHeartbeat, self.released_sequence)
        self.log_lines.extend(self.logon_guard.due_log_lines(now_ns))

    # ------------------------------------------------------------ inbound

    def client_payload(self, session_id: int, payload: bytes, now_ns: int) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.closing:
            # Frames that arrived behind a logout (or a refused logon) in the same read
            # are not acted on: nothing may be journaled for a session being closed.
            return
        session.last_inbound_ns = now_ns
        session.test_request_sent = False
        try:
            message = client_message_decoder.decode(payload)
        except msgspec.MsgspecError as error:
            if session.member is None:
                self._close(session, "not_logged_on")
            else:
                self._reject(session, 0, "malformed", str(error))
            return
        self._client_message(session, message, now_ns, None)

    def client_message(self, session_id: int, message, now_ns: int, prefix=None) -> None:
        """A decoded client message from another front end (the FIX acceptor,
        replica/fix_session.py): the same checks, limits and sequencer as a native frame.
        `prefix`, when given, is journaled right before the message's command (and only
        if a command is journaled for it)."""
        session = self.sessions.get(session_id)
        if session is None or session.closing:
            return
        session.last_inbound_ns = now_ns
        session.test_request_sent = False
        self._client_message(session, message, now_ns, prefix)

    def _client_message(self, session: Session, message, now_ns: int, prefix) -> None:
        session_id = session.session_id
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
            self._reject(session, 0, "already_logged_on")
            return
        # The member's token bucket: refill by elapsed time, one token per message.
        bucket = session.bucket
        elapsed_ns = now_ns - bucket.updated_ns
        if elapsed_ns > 0:
            bucket.tokens = min(float(self._burst), bucket.tokens + elapsed_ns * self._rate / 1e9)
            bucket.updated_ns = now_ns
        if bucket.tokens < 1.0:
            self._reject(session, message.request_id, "throttled")
            return
        bucket.tokens -= 1.0
        if len(self.unreleased) + len(self.pending) >= UNRELEASED_RECORDS_MAX:
            self._reject(session, message.request_id, "busy", "too many records awaiting durability")
            return
        # Bounded text fields, checked before a sequence is assigned: a 60 KB client
        # order id is refused here and never journaled.
        problem = request_problem(message)
        if problem is not None:
            self._reject(session, message.request_id, problem[0], problem[1])
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
            self._reject(session, 0, "unsupported", kind.__name__)
            return
        if prefix is not None:
            self._submit(prefix, 0, 0, now_ns)
        self._submit(command, session_id, message.request_id, now_ns)

    def _logon(self, session: Session, message: Logon, now_ns: int) -> None:
        if message.protocol_version != PROTOCOL_VERSION:
            self._reject_logon(session, "unsupported_protocol_version")
            return
        # An address blocked after failed logons: hold the attempt until the block ends
        # (evaluated by `tick`), or refuse it unseen during a refusal.
        verdict, _until_ns = self.logon_guard.check(session.peer, now_ns)
        if verdict == "wait":
            self.held_logons[session.session_id] = message
            return
        if verdict == "refuse":
            self._reject_logon(session, "logon_refused")
            return
        member = self.config.member(message.member)
        if member is None or not token_matches(message.token, member.token_hash):
            line = self.logon_guard.failed(session.peer, message.member, now_ns)
            if line is not None:
                self.log_lines.append(line)
            self._reject_logon(session, "bad_credentials")
            return
        if self.logged_on >= self.config.limits.sessions_max:
            self._reject_logon(session, "too_many_sessions")
            return
        if len(self.member_sessions.get(member.name, ())) >= self.config.gateway.sessions_per_member_max:
            self._reject_logon(session, "too_many_sessions_for_member")
            return
        self.logon_guard.succeeded(session.peer)
        self.gate.leave(session.session_id)
        self.logged_on += 1
        session.member = member.name
        session.cancel_on_disconnect = member.cancel_on_disconnect
        session.heartbeat_interval_ms = max(HEARTBEAT_INTERVAL_MS_MIN,
                                            min(HEARTBEAT_INTERVAL_MS_MAX, message.heartbeat_interval_ms))
        session.next_heartbeat_ns = now_ns + session.heartbeat_interval_ms * 1_000_000
        bucket = self.buckets.get(member.name)
        if bucket is None:
            bucket = self.buckets[member.name] = RateBucket(float(self._burst), now_ns)
        session.bucket = bucket
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
        observer = self.release_observer
        count = 0
        while unreleased and unreleased[0][0] <= durable_sequence:
            sequence, timestamp_ns, command, session_id, request_id = unreleased.popleft()
            events = apply(sequence, timestamp_ns, command)
            count += 1
            if observer is not None:
                observer(sequence, timestamp_ns, command, events)
            if not sequence % DIGEST_INTERVAL_RECORDS:
                self.digests.record(sequence, self.exchange.state_digest())
            market_data = None
            for event in events:
                kind = type(event)
                if kind is TradeExecuted:
                    members = (event.maker_member, event.taker_member)
                    if market_data is None:
                        market_data = []
                    # The feeds get the anonymous trade (replica/market_data.py).
                    market_data.append(public_trade(event))
                elif kind is OrderAccepted or kind is OrderCancelled or kind is OrderReplaced or kind is StopTriggered:
                    members = (event.member,)
                elif kind is OrderRejected:
                    if event.member is None:
                        continue
                    members = (event.member,)
                    if event.reason == "not_owner":
                        # Another member's order is answered like an order that does not
                        # exist, so order ids cannot be probed; the journal keeps the truth.
                        event = msgspec.structs.replace(event, reason="unknown_order")
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
            if session_id and type(command) is MassCancel:
                # Always answered, with the count cancelled (possibly 0: the engine then
                # emits nothing), after the cancels' own reports.
                session = sessions.get(session_id)
                if session is not None:
                    cancelled = sum(1 for event in events if type(event) is OrderCancelled)
                    self._send(session, MassCancelCompleted, request_id, cancelled)
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
