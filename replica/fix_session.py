"""The FIX 4.4 acceptor, sans-I/O: FIX bytes in, journal records and FIX bytes out.

`FixGateway` sits beside the native protocol on the primary and drives the *same*
PrimaryCore: a FIX connection is a PrimaryCore session (so the admission gate, the
failed-logon guard, the member's token check, the session limits, the member's token
bucket, the text-field bounds and cancel-on-disconnect are the native gateway's own,
replica/gateway.py and replica/primary.py), and each FIX application message becomes
the native request it means (`PrimaryCore.client_message`), which the sequencer turns
into the same journaled command. Nothing here reads a clock except through the `clock`
callable the adapter passes in, and nothing touches a socket: the adapter
(replica/fix_node.py) feeds bytes to `data` and writes `outbox`, closes `closing`.

    FIX in ─► FixStreamReader (BodyLength, CheckSum; garbled skipped)
          ─► session layer: CompIDs, MsgSeqNum (too low without PossDupFlag: Logout;
             too high: ResendRequest), Logon / Heartbeat / TestRequest / ResendRequest /
             Reject / SequenceReset / Logout, HeartBtInt timers (`tick`)
          ─► application: D F G q H ─► native request ─► PrimaryCore (journal)
    release ─► FixLedger.observe (replica/fix_ledger.py) numbers reports and session
             messages deterministically ─► `observe` sends what belongs to a live session

Session messages are journaled before they are sent (a `fix_out` record, see
replica/fix_ledger.py) so that the outbound numbering is a function of the journal and
a promoted standby continues it; they go out when their record is released.

Prices and quantities arrive as decimal strings and become integers exactly
(`decimal_units`): the price in units of 10**-price_decimals, the quantity in whole
units; anything finer is refused as `invalid_price` / `invalid_quantity`, never rounded.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Optional

from replica.config import FixConfig
from replica.fix_codec import FixMessage, FixStreamReader, encode_message, utc_timestamp
from replica.fix_ledger import CANCEL_REJECT_REASONS, FIX_IN_PREFIX, FIX_OUT_PREFIX, ORDER_REJECT_REASONS, FixLedger
from replica.gateway import CLIENT_ORDER_ID_BYTES_MAX, text_field_problem
from replica.primary import UNRELEASED_RECORDS_MAX, PrimaryCore
from replica.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    Disconnect,
    Heartbeat,
    Logon,
    LogonAccepted,
    LogonRejected,
    MassCancelRequest,
    OrderStatus,
    OrderStatusRequest,
    PlaceRequest,
    ReplaceRequest,
    RequestRejected,
)
from statemachine import Checkpoint

ORDER_TYPES = {"1": "market", "2": "limit", "3": "stop", "4": "stop_limit"}
TIME_IN_FORCE = {"0": "day", "1": "gtc", "3": "ioc", "4": "fok"}
SIDES = {"1": "buy", "2": "sell"}
# ExecInst (18) value meaning post-only: "6" = Participate don't initiate.
EXEC_INST_POST_ONLY = "6"
# A user-defined tag (5000-9999) carrying the engine's self-trade prevention mode by name.
STP_MODE_TAG = 7928
STP_MODES = ("none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement")
APPLICATION_TYPES = ("D", "F", "G", "q", "H")
# SessionRejectReason (373) values used.
REQUIRED_TAG_MISSING = 1
VALUE_INCORRECT = 5
COMP_ID_PROBLEM = 9
# FIX's HeartBtInt (108) in seconds: the native session's interval is at most 60 s
# (HEARTBEAT_INTERVAL_MS_MAX), and its idle cut must not fire on a peer that keeps its word.
HEARTBEAT_SECONDS_MAX = 60
# Tokens a member's bucket may owe: answers to messages the bucket did not pay for (a
# throttled order's reject) run it into debt down to minus this; one more and the session
# is logged out. What a member can make the journal hold stays bounded by its rate.
BUCKET_DEBT_MAX = 100
# A ResendRequest is answered with at most this many messages (one synchronous encode
# per message), and costs one token plus one per RESEND_MESSAGES_PER_TOKEN sent; the peer
# asks again for the rest when it sees the next message's number.
RESEND_MESSAGES_MAX = 2_000
RESEND_MESSAGES_PER_TOKEN = 100
# A decimal the gateway accepts: no exponent, no sign on quantities, bounded digits.
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")


class FieldProblem(Exception):
    """An application message field the gateway cannot take: (reason code, tag, text)."""

    def __init__(self, reason: str, tag: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.tag = tag
        self.text = text


def decimal_units(text: Optional[str], decimals: int, tag: int, reason: str, *, positive: bool = True) -> int:
    """`text` (a FIX decimal string) times 10**decimals, exactly; FieldProblem(reason) if
    it is not a plain decimal or has digits finer than 10**-decimals."""
    if text is None or not _DECIMAL.fullmatch(text):
        raise FieldProblem(reason, tag, f"tag {tag}: {text!r} is not a decimal number")
    scaled = Decimal(text).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        unit = f"{Decimal(1).scaleb(-decimals):f}"
        raise FieldProblem(reason, tag, f"tag {tag}: {text} is not a multiple of {unit}")
    units = int(scaled)
    if positive and units <= 0:
        raise FieldProblem(reason, tag, f"tag {tag}: {text} must be positive")
    return units


@dataclass
class FixConnectionState:
    connection_id: int
    reader: FixStreamReader = field(default_factory=FixStreamReader)
    member: Optional[str] = None
    sender_comp_id: str = ""
    heartbeat_ns: int = 30_000_000_000
    logon_seq: int = 0
    live_from: int = 0  # outbound seq of our Logon reply: live sending starts there
    expected: int = 1  # next inbound MsgSeqNum
    resend_requested: bool = False
    last_in_ns: int = 0
    last_out_ns: int = 0
    test_request_ns: int = 0
    closing: bool = False  # a Logout is on its way: nothing more is read
    closed: bool = False  # asked closed: nothing more is written


@dataclass
class _Waiting:
    connection_id: int
    msg_type: str
    body: list
    close_after: bool


class FixGateway:
    def __init__(self, core: PrimaryCore, settings: FixConfig, ledger: FixLedger,
                 clock: Callable[[], int]) -> None:
        self.core = core
        self.settings = settings
        self.ledger = ledger
        self.clock = clock
        self.connections: dict[int, FixConnectionState] = {}
        self.by_member: dict[str, int] = {}
        # Inbound numbers seen by this node beyond what the journal holds (heartbeats):
        # a reconnect to the same node need not ask for them again.
        self.seen_inbound: dict[str, int] = {}
        self.waiting: dict[str, deque] = {}
        self.outbox: dict[int, list[bytes]] = {}
        self.closing: list[int] = []
        self.messages_in = 0
        self.garbled = 0
        core.release_observer = self.observe

    # ------------------------------------------------------------ connections

    def opened(self, connection_id: int, peer: str, now_ns: int) -> Optional[str]:
        refusal = self.core.session_opened(connection_id, now_ns, peer)
        if refusal is not None:
            return refusal
        self.connections[connection_id] = FixConnectionState(connection_id, last_in_ns=now_ns)
        self.pump()
        return None

    def reading_resumed(self, now_ns: int) -> None:
        """The node reads again: every session's silence counts from now (what the peer
        sent meanwhile is in the kernel's buffer, its heartbeat among it)."""
        for state in self.connections.values():
            if state.last_in_ns < now_ns:
                state.last_in_ns = now_ns
                state.test_request_ns = 0

    def closed(self, connection_id: int, now_ns: int) -> None:
        state = self.connections.pop(connection_id, None)
        if state is not None and state.member is not None and self.by_member.get(state.member) == connection_id:
            del self.by_member[state.member]
            self.seen_inbound[state.member] = state.expected
        self.outbox.pop(connection_id, None)
        self.core.session_closed(connection_id, now_ns)

    def data(self, connection_id: int, data: bytes, now_ns: int) -> None:
        state = self.connections.get(connection_id)
        if state is None:
            return
        reader = state.reader
        garbled_before = reader.garbled
        for message in reader.feed(data):
            if state.closing:
                break
            self.messages_in += 1
            self._message(state, message, now_ns)
        self.garbled += reader.garbled - garbled_before
        self.pump()

    def pump(self) -> None:
        """Take the native core's answers for FIX connections (logon results, refusals,
        disconnects) and act on them; reports are dropped here (the ledger sends them)."""
        outbox = self.core.outbox
        for connection_id in [key for key in outbox if key in self.connections]:
            self._native(self.connections[connection_id], outbox.pop(connection_id), None)

    # ------------------------------------------------------------ inbound

    def _message(self, state: FixConnectionState, message: FixMessage, now_ns: int) -> None:
        msg_type = message.msg_type
        seq_text = message.get(34)
        if message.get(56) != self.settings.comp_id or not message.get(49):
            if state.member is None:
                self._close(state)
            else:
                self._session_reject(state, message, COMP_ID_PROBLEM, 56, "CompID problem", now_ns)
                self._logout(state, "CompID problem", now_ns)
            return
        if seq_text is None or not seq_text.isdigit():
            if state.member is None:
                self._close(state)
            else:
                self._logout(state, "MsgSeqNum (34) missing or not a number", now_ns)
            return
        seq = int(seq_text)
        state.last_in_ns = now_ns
        state.test_request_ns = 0
        if state.member is None:
            if msg_type != "A":
                self._close(state)  # the first message must be a Logon: cut without a word
                return
            if not state.logon_seq:  # a second Logon while the first is evaluated: ignored
                self._logon(state, message, seq, now_ns)
            return
        if state.live_from == 0:
            return  # our Logon reply is not out yet: nothing else is read meanwhile
        if message.get(49) != state.sender_comp_id:
            self._session_reject(state, message, COMP_ID_PROBLEM, 49, "SenderCompID changed", now_ns)
            self._logout(state, "CompID problem", now_ns)
            return
        self.core.client_message(state.connection_id, Heartbeat(), now_ns)  # keeps the native session alive
        if msg_type == "4" and message.get(123) != "Y":
            self._sequence_reset(state, message, now_ns)
            return
        if seq < state.expected:
            if message.get(43) != "Y":
                self._logout(state, f"MsgSeqNum too low, expecting {state.expected} but received {seq}", now_ns)
            return
        if seq > state.expected:
            if msg_type == "5":
                self._logout(state, "logout", now_ns)
                return
            if msg_type == "2":
                self._resend(state, message, now_ns)  # answered at once, the gap is asked for too
            if not state.resend_requested and self._charge(state, 1, now_ns):
                state.resend_requested = True
                self._session_message(state, "2", [(7, state.expected), (16, 0)], now_ns)
            return
        state.expected = seq + 1
        state.resend_requested = False
        if msg_type == "0":
            return
        if msg_type == "1":
            if self._charge(state, 1, now_ns):
                self._session_message(state, "0", [(112, message.get(112) or "")], now_ns)
        elif msg_type == "2":
            self._resend(state, message, now_ns)
        elif msg_type == "3":
            return
        elif msg_type == "4":  # gap fill
            new_seq = message.get(36)
            if new_seq is not None and new_seq.isdigit() and int(new_seq) > state.expected:
                state.expected = int(new_seq)
        elif msg_type == "5":
            self._logout(state, "logout", now_ns)
        elif msg_type == "A":
            self._logout(state, "already logged on", now_ns)
        elif msg_type in APPLICATION_TYPES:
            self._application(state, message, seq, now_ns)
        elif self._charge(state, 1, now_ns):
            self._session_message(state, "j", [(45, seq), (372, msg_type), (380, 3),
                                               (58, f"unsupported message type {msg_type}")], now_ns)

    def _logon(self, state: FixConnectionState, message: FixMessage, seq: int, now_ns: int) -> None:
        sender = message.get(49) or ""
        member = self.settings.member_for(sender)
        username = message.get(553)
        heartbeat = message.get(108)
        if (username is not None and username != member) or heartbeat is None or not heartbeat.isdigit() \
                or not 1 <= int(heartbeat) <= HEARTBEAT_SECONDS_MAX or message.get(141) == "Y":
            # ResetSeqNumFlag is refused: a reset would forget what the journal promises.
            self._refuse(state, "logon refused: Username must be the SenderCompID's member, HeartBtInt "
                                f"1 to {HEARTBEAT_SECONDS_MAX} seconds, no ResetSeqNumFlag")
            return
        state.sender_comp_id = sender
        state.heartbeat_ns = int(heartbeat) * 1_000_000_000
        state.logon_seq = seq
        self.core.client_message(
            state.connection_id,
            Logon(PROTOCOL_VERSION, member, message.get(554) or "", int(heartbeat) * 1000),
            now_ns,
        )

    def _native(self, state: FixConnectionState, messages: list, request: Optional[tuple]) -> None:
        now_ns = self.clock()
        for native in messages:
            kind = type(native)
            if kind is LogonAccepted:
                self._logged_on(state, native.member, now_ns)
            elif kind is LogonRejected:
                self._refuse(state, native.reason)
            elif kind is Disconnect:
                if state.member is None or state.live_from == 0:
                    self._close(state)
                else:
                    self._logout(state, native.reason, now_ns)
            elif kind is RequestRejected and request is not None:
                self._reject_request(state, request, native.reason, native.detail or native.reason, now_ns)
            elif kind is OrderStatus and request is not None:
                self._status_reply(state, request, native, now_ns)

    def _logged_on(self, state: FixConnectionState, member: str, now_ns: int) -> None:
        if member in self.by_member:
            self._refuse(state, "this member's FIX session is already logged on")
            return
        state.member = member
        self.by_member[member] = state.connection_id
        stream = self.ledger.streams.get(member)
        expected = max(stream.next_inbound if stream is not None else 1, self.seen_inbound.get(member, 1))
        if state.logon_seq < expected:
            self._refuse(state, f"MsgSeqNum too low, expecting {expected} but received {state.logon_seq}")
            return
        gap = state.logon_seq > expected
        state.expected = expected if gap else state.logon_seq + 1
        self._session_message(state, "A", [(98, 0), (108, state.heartbeat_ns // 1_000_000_000)], now_ns)
        if gap:
            state.resend_requested = True
            self._session_message(state, "2", [(7, expected), (16, 0)], now_ns)

    def _sequence_reset(self, state: FixConnectionState, message: FixMessage, now_ns: int) -> None:
        new_seq = message.get(36)
        if (new_seq is None or not new_seq.isdigit() or int(new_seq) < state.expected) \
                and not self._charge(state, 1, now_ns):
            return
        if new_seq is None or not new_seq.isdigit():
            self._session_reject(state, message, REQUIRED_TAG_MISSING, 36, "NewSeqNo missing", now_ns)
        elif int(new_seq) < state.expected:
            self._session_reject(state, message, VALUE_INCORRECT, 36,
                                 f"NewSeqNo {new_seq} is below the expected {state.expected}", now_ns)
        else:
            state.expected = int(new_seq)
            state.resend_requested = False

    # ------------------------------------------------------------ application

    def _application(self, state: FixConnectionState, message: FixMessage, seq: int, now_ns: int) -> None:
        msg_type = message.msg_type
        client_order_id = message.get(11) or ""
        request = (msg_type, seq, message)
        try:
            # ClOrdID and OrigClOrdID are bounded like the native client order id before
            # anything is built from them: the first goes into the journal (fix_in kind).
            for tag in (11, 41):
                problem = text_field_problem(message.get(tag), "client_order_id", CLIENT_ORDER_ID_BYTES_MAX)
                if problem is not None:
                    raise FieldProblem(problem[0], tag, f"tag {tag}: {problem[1]}")
            native = self._native_request(message, seq)
        except FieldProblem as problem:
            if not self._charge(state, 1, now_ns):
                return
            if problem.reason == "missing":
                self._session_reject(state, message, REQUIRED_TAG_MISSING, problem.tag, problem.text, now_ns,
                                     inbound_seq=seq)
            else:
                self._reject_request(state, request, problem.reason, problem.text, now_ns)
            return
        prefix = None
        if msg_type != "H":
            prefix = Checkpoint(kind=f"{FIX_IN_PREFIX}{state.member}:{client_order_id}", version=seq)
        self.core.client_message(state.connection_id, native, now_ns, prefix)
        answers = self.core.outbox.pop(state.connection_id, None)
        if answers:
            self._native(state, answers, request)

    def _native_request(self, message: FixMessage, seq: int):
        """The native request a D / F / G / q / H means (FieldProblem if it cannot)."""
        msg_type = message.msg_type
        get = message.get
        decimals = self.settings.price_decimals
        if msg_type == "D":
            client_order_id = _required(message, 11)
            symbol = _required(message, 55)
            side = SIDES.get(_required(message, 54))
            if side is None:
                raise FieldProblem("malformed", 54, f"Side {get(54)!r} is not 1 (buy) or 2 (sell)")
            order_type = ORDER_TYPES.get(_required(message, 40))
            if order_type is None:
                raise FieldProblem("malformed", 40, f"OrdType {get(40)!r} is not 1, 2, 3 or 4")
            qty = decimal_units(_required(message, 38), 0, 38, "invalid_quantity")
            price = stop_price = None
            if order_type in ("limit", "stop_limit"):
                price = decimal_units(_required(message, 44), decimals, 44, "invalid_price")
            if order_type in ("stop", "stop_limit"):
                stop_price = decimal_units(_required(message, 99), decimals, 99, "invalid_price")
            tif_code = get(59) or "0"  # FIX: absent means Day
            tif = TIME_IN_FORCE.get(tif_code)
            if tif is None:
                raise FieldProblem("malformed", 59, f"TimeInForce {tif_code!r} is not 0, 1, 3 or 4")
            post_only = True if EXEC_INST_POST_ONLY in (get(18) or "").split() else None
            display_qty = None
            if get(111) is not None:
                display_qty = decimal_units(get(111), 0, 111, "invalid_quantity")
            stp = get(STP_MODE_TAG)
            if stp is not None and stp not in STP_MODES:
                raise FieldProblem("malformed", STP_MODE_TAG, f"STP mode {stp!r} is not one of {', '.join(STP_MODES)}")
            return PlaceRequest(seq, client_order_id, symbol, side, order_type, qty, price, tif, post_only,
                                display_qty, stop_price, stp)
        if msg_type == "F":
            _required(message, 11)
            order_id = get(37)
            if order_id is not None and order_id.isdigit():
                return CancelRequest(seq, int(order_id), None)
            return CancelRequest(seq, None, _required(message, 41))
        if msg_type == "G":
            _required(message, 11)
            order_id_text = _required(message, 37)
            if not order_id_text.isdigit():
                raise FieldProblem("unknown_order", 37, f"OrderID {order_id_text!r} is not one of ours")
            order_id = int(order_id_text)
            total = decimal_units(_required(message, 38), 0, 38, "invalid_quantity")
            # FIX's OrderQty is the order's new total; the engine's replace takes the new
            # open quantity, so what is already filled comes off.
            progress = self.ledger.orders.get(order_id)
            filled = progress.cum_qty if progress is not None else 0
            if total <= filled:
                raise FieldProblem("invalid_quantity", 38, f"OrderQty {total} is not above the {filled} filled")
            price = None
            if get(44) is not None:
                price = decimal_units(get(44), decimals, 44, "invalid_price")
            return ReplaceRequest(seq, order_id, total - filled, price, None)
        if msg_type == "q":
            _required(message, 11)
            request_type = _required(message, 530)
            if request_type == "1":
                return MassCancelRequest(seq, _required(message, 55))
            if request_type == "7":
                return MassCancelRequest(seq, None)
            raise FieldProblem("malformed", 530, f"MassCancelRequestType {request_type!r}: only 1 and 7")
        order_id_text = _required(message, 37)  # H
        if not order_id_text.isdigit():
            raise FieldProblem("unknown_order", 37, f"OrderID {order_id_text!r} is not one of ours")
        return OrderStatusRequest(seq, int(order_id_text))

    def _reject_request(self, state: FixConnectionState, request: tuple, reason: str, text: str, now_ns: int) -> None:
        """A request refused before the journal (gateway checks, throttling): the
        application-level answer its type calls for, as a journaled session message
        behind a fix_in mark, so that a resend of the request after a failover is seen
        as taken (PossDup below next_inbound) and never gets a second outcome."""
        msg_type, seq, message = request
        if reason == "throttled" and not self._charge(state, 1, now_ns):
            return  # the bucket refused the message, so its answer is paid here (debt)
        get = message.get
        client_order_id, original_client_order_id = _echoed(get(11)), _echoed(get(41))
        if msg_type == "D":
            body = [(37, "NONE"), (17, f"R{state.member}-{seq}"), (11, client_order_id), (150, "8"), (39, "8"),
                    (55, get(55) or ""), (54, get(54) or "1"), (38, get(38) or "0"), (151, 0), (14, 0), (6, "0"),
                    (103, ORDER_REJECT_REASONS.get(reason, 99)), (58, f"{reason}: {text}"[:200])]
            self._session_message(state, "8", body, now_ns, inbound_seq=seq)
        elif msg_type in ("F", "G"):
            body = [(37, get(37) or "NONE"), (11, client_order_id), (41, original_client_order_id), (39, "8"),
                    (434, "1" if msg_type == "F" else "2"), (102, CANCEL_REJECT_REASONS.get(reason, 99)),
                    (58, f"{reason}: {text}"[:200])]
            self._session_message(state, "9", body, now_ns, inbound_seq=seq)
        else:
            self._session_message(state, "j", [(45, seq), (372, msg_type), (380, 0),
                                               (58, f"{reason}: {text}"[:200])], now_ns, inbound_seq=seq)

    def _status_reply(self, state: FixConnectionState, request: tuple, status: OrderStatus, now_ns: int) -> None:
        _msg_type, seq, message = request
        progress = self.ledger.orders.get(status.order_id)
        open_qty = status.visible_qty + status.hidden_qty
        if status.status == "unknown":
            body = [(37, status.order_id), (17, f"S{state.member}-{seq}"), (11, message.get(11) or ""),
                    (150, "I"), (39, "8"), (55, ""), (54, "1"), (151, 0), (14, 0), (6, "0"), (58, "unknown_order")]
        else:
            cum = progress.cum_qty if progress is not None else 0
            order_status = "0" if cum == 0 else "1"
            body = [(37, status.order_id), (17, f"S{state.member}-{seq}"),
                    (11, progress.client_order_id if progress is not None else ""), (150, "I"), (39, order_status),
                    (55, status.symbol or ""), (54, "1" if status.side == "buy" else "2"),
                    (151, open_qty), (14, cum), (6, self.ledger.average_price(progress))]
            if status.price is not None:
                body.append((44, f"{Decimal(status.price).scaleb(-self.settings.price_decimals):f}"))
        self._session_message(state, "8", body, now_ns)

    # ------------------------------------------------------------ outbound

    def _charge(self, state: FixConnectionState, tokens: int, now_ns: int) -> bool:
        """Take `tokens` from the member's bucket (PrimaryCore's, refilled the same way)
        for work an inbound message causes beyond the core's own charge: a journaled reply,
        a resend. False, and the session logged out, once the debt passes BUCKET_DEBT_MAX."""
        session = self.core.sessions.get(state.connection_id)
        if session is None or session.bucket is None:
            return False
        bucket = session.bucket
        limits = self.core.config.limits
        elapsed_ns = now_ns - bucket.updated_ns
        if elapsed_ns > 0:
            bucket.tokens = min(float(limits.burst_messages),
                                bucket.tokens + elapsed_ns * limits.messages_per_second / 1e9)
            bucket.updated_ns = now_ns
        bucket.tokens -= tokens
        if bucket.tokens < -BUCKET_DEBT_MAX:
            self._logout(state, "throttled: messages beyond the member's rate", now_ns)
            return False
        return True

    def _session_message(self, state: FixConnectionState, msg_type: str, body: list, now_ns: int,
                         close_after: bool = False, inbound_seq: Optional[int] = None) -> None:
        """Journal a `fix_out` record for the message; it is sent, numbered, on release.
        `inbound_seq`: the application message it answers, journaled first as a fix_in
        mark. With the journal's backlog at its bound nothing is journaled: the connection
        is cut (the firm reconnects and resends; cancel-on-disconnect applies)."""
        member = state.member
        core = self.core
        if len(core.unreleased) + len(core.pending) >= UNRELEASED_RECORDS_MAX - 1:
            self._close(state)
            return
        if inbound_seq is not None:
            core.submit_admin(Checkpoint(kind=f"{FIX_IN_PREFIX}{member}:", version=inbound_seq), now_ns)
        core.submit_admin(Checkpoint(kind=f"{FIX_OUT_PREFIX}{member}"), now_ns)
        self.waiting.setdefault(member, deque()).append(_Waiting(state.connection_id, msg_type, body, close_after))
        state.last_out_ns = now_ns

    def observe(self, sequence: int, timestamp_ns: int, command, events: list) -> None:
        """The release hook: number through the ledger, send what a live session gets."""
        messages = self.ledger.observe(sequence, timestamp_ns, command, events)
        if not messages:
            return
        now_ns = self.clock()
        for message in messages:
            if message.msg_type is None:
                queue = self.waiting.get(message.member)
                if not queue:
                    continue
                waiting = queue.popleft()
                state = self.connections.get(waiting.connection_id)
                if state is None or state.closed:
                    continue
                if waiting.msg_type == "A":
                    state.live_from = message.seq
                self._write(state, waiting.msg_type, message.seq, waiting.body, now_ns)
                if waiting.close_after:
                    self._close(state)
                continue
            connection_id = self.by_member.get(message.member)
            if connection_id is None:
                continue
            state = self.connections[connection_id]
            if state.live_from and message.seq > state.live_from and not state.closed:
                self._write(state, message.msg_type, message.seq, message.body, now_ns)

    def _resend(self, state: FixConnectionState, message: FixMessage, now_ns: int) -> None:
        begin_text, end_text = message.get(7), message.get(16)
        if begin_text is None or not begin_text.isdigit() or end_text is None or not end_text.isdigit():
            self._session_reject(state, message, REQUIRED_TAG_MISSING, 7, "BeginSeqNo / EndSeqNo", now_ns)
            return
        stream = self.ledger.streams[state.member]  # begun by our Logon reply's record
        top = stream.next_outbound - 1  # the highest number given so far
        begin, end = int(begin_text), int(end_text)
        end = top if end == 0 or end > top else end
        begin = max(begin, 1)
        end = min(end, begin + RESEND_MESSAGES_MAX - 1)
        if not self._charge(state, 1 + max(0, end - begin + 1) // RESEND_MESSAGES_PER_TOKEN, now_ns):
            return
        window = stream.window
        gap_start = None
        seq = begin
        while seq <= end:
            report = window.get(seq)
            if report is None:
                if gap_start is None:
                    gap_start = seq
                seq += 1
                continue
            if gap_start is not None:
                self._gap_fill(state, gap_start, seq, now_ns)
                gap_start = None
            self._write(state, report.msg_type, seq, report.body, now_ns,
                        possible_duplicate=utc_timestamp(report.transact_ns))
            seq += 1
        if gap_start is not None:
            self._gap_fill(state, gap_start, end + 1, now_ns)

    def _gap_fill(self, state: FixConnectionState, first: int, next_seq: int, now_ns: int) -> None:
        self._write(state, "4", first, [(123, "Y"), (36, next_seq)], now_ns, possible_duplicate="")

    def _write(self, state: FixConnectionState, msg_type: str, seq: int, body: list, now_ns: int,
               possible_duplicate: Optional[str] = None) -> None:
        header = [(49, self.settings.comp_id), (56, state.sender_comp_id), (34, seq)]
        if possible_duplicate is not None:
            header.append((43, "Y"))
        header.append((52, utc_timestamp(now_ns)))
        if possible_duplicate:
            header.append((122, possible_duplicate))
        self.outbox.setdefault(state.connection_id, []).append(encode_message(msg_type, header, body))

    def _session_reject(self, state: FixConnectionState, message: FixMessage, reason: int, tag: int, text: str,
                        now_ns: int, inbound_seq: Optional[int] = None) -> None:
        self._session_message(state, "3", [(45, message.get(34) or 0), (371, tag), (372, message.msg_type),
                                           (373, reason), (58, text[:200])], now_ns, inbound_seq=inbound_seq)

    def _logout(self, state: FixConnectionState, text: str, now_ns: int) -> None:
        if state.closing:
            return
        self._session_message(state, "5", [(58, text[:200])], now_ns, close_after=True)
        state.closing = True

    def _refuse(self, state: FixConnectionState, text: str) -> None:
        """A logon refused: an unnumbered-in-the-journal Logout (no session exists to
        number it in), then the connection is closed."""
        if state.member is not None and self.by_member.get(state.member) == state.connection_id:
            del self.by_member[state.member]
        state.member = None
        header_state = state.sender_comp_id or "UNKNOWN"
        self.outbox.setdefault(state.connection_id, []).append(encode_message(
            "5", [(49, self.settings.comp_id), (56, header_state), (34, 1), (52, utc_timestamp(self.clock()))],
            [(58, text[:200])]))
        self._close(state)

    def _close(self, state: FixConnectionState) -> None:
        if state.closed:
            return
        state.closing = state.closed = True
        self.closing.append(state.connection_id)

    # ------------------------------------------------------------ timers

    def tick(self, now_ns: int) -> None:
        """HeartBtInt: a Heartbeat after an interval without sending; a TestRequest after
        an interval and a fifth without hearing; a Logout after two more. While the node
        is not reading (the in-flight window is full) the silence is ours: no idle check."""
        if self.core.reading_paused:
            return
        for state in list(self.connections.values()):
            if state.member is None or state.live_from == 0 or state.closing:
                continue
            interval_ns = state.heartbeat_ns
            silent_ns = now_ns - state.last_in_ns
            if state.test_request_ns and silent_ns >= 2 * interval_ns + interval_ns // 5:
                self._logout(state, "no answer to TestRequest", now_ns)
                continue
            if not state.test_request_ns and silent_ns >= interval_ns + interval_ns // 5:
                state.test_request_ns = now_ns
                self._session_message(state, "1", [(112, f"TEST{now_ns}")], now_ns)
            elif now_ns - state.last_out_ns >= interval_ns:
                self._session_message(state, "0", [], now_ns)

    def status(self) -> dict:
        return {"connections": len(self.connections), "logged_on": len(self.by_member),
                "messages_in": self.messages_in, "garbled": self.garbled}


def _echoed(client_order_id: Optional[str]) -> str:
    """A ClOrdID as a reject may echo it: itself if within the bound, else empty."""
    if client_order_id is None or text_field_problem(client_order_id, "client_order_id", CLIENT_ORDER_ID_BYTES_MAX):
        return ""
    return client_order_id


def _required(message: FixMessage, tag: int) -> str:
    value = message.get(tag)
    if value is None or value == "":
        raise FieldProblem("missing", tag, f"required tag {tag} missing")
    return value
