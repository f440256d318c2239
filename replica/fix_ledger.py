"""The FIX sessions' sequence numbers and execution reports, as a fold over the journal.

Why a fold: a FIX session outlives a connection and, here, a node. When a primary dies,
the firm's FIX engine reconnects to the promoted standby and expects the same session:
the standby's outbound MsgSeqNum must continue past every message the old primary sent,
it must be able to resend any of them on a ResendRequest, and it must know which inbound
orders were already taken so none is taken twice. All three follow from the journal
alone, which the standby holds: `FixLedger.observe(sequence, timestamp_ns, command,
events)` is called for every applied record, in order, on the live primary (from
PrimaryCore's release) and when a node rebuilds the ledger from its journal at start
(`rebuild_ledger`), and it numbers the same messages the same way on every node.

One FIX session per member (its SenderCompID maps to the member), from the member's
first journaled FIX record on (its first Logon reply's `fix_out`): members that never
used FIX cost the fold only the order tracking. Its streams:

    outbound  every execution report / cancel reject / mass cancel report the member's
              events cause (whichever port placed the order), numbered 1, 2, 3, ... in
              journal order, plus one number per *session message* (Logon reply,
              Heartbeat, TestRequest, ResendRequest, Reject, Logout, status replies,
              gateway rejections). Session messages are not derived from events, so the
              gateway journals a record for each before sending it:

                  Checkpoint(kind="fix_out:<member>")   consumes one outbound number

              and sends the message only when that record is released, with the
              number the fold gave it. On a resend, session messages become
              SequenceReset-GapFill (as the FIX spec says); reports are resent with
              PossDupFlag=Y, byte for byte the same body.
    inbound   the gateway journals, right before the command of an inbound
              application message n (NewOrderSingle, Cancel, Replace, MassCancel),

                  Checkpoint(kind="fix_in:<member>:<ClOrdID>", version=n)

              and the fold takes message n as received only when it sees the next
              record (the command): a journal torn between the two has taken neither.
              The next expected inbound number is the highest taken + 1; anything
              after it that the old primary saw but did not journal (heartbeats, a
              refused order) the firm's engine resends on our ResendRequest.
              The ClOrdID there is the request's own (a cancel's, a replace's), which
              the command does not carry but the report must.

The `Checkpoint` command is the state machine's no-op record for the runtime's own use,
so none of this needs a state-machine change; audit and replay ignore these kinds.

Resend window: the last RESEND_WINDOW_MESSAGES reports per member are kept; an older one
asked for again is gap-filled (documented in docs/FIX.md). Orders are tracked (cumulative
quantity, notional for AvgPx) while open, for every member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

import journal
from replica.fix_codec import utc_timestamp
from statemachine import (
    Exchange,
    CancelOrder,
    Checkpoint,
    MassCancel,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    ReplaceOrder,
    StopTriggered,
    TradeExecuted,
)
from statemachine.codec import decode_commands

RESEND_WINDOW_MESSAGES = 100_000
FIX_OUT_PREFIX = "fix_out:"
FIX_IN_PREFIX = "fix_in:"

# Engine reason codes (RULES.md) -> OrdRejReason (103) / CxlRejReason (102). The reason
# code itself always travels in Text (58), so nothing is lost in the mapping.
ORDER_REJECT_REASONS = {
    "unknown_symbol": 1,
    "halted": 2,
    "price_band": 3,
    "unknown_order": 5,
    "duplicate_client_order_id": 6,
    "post_only_would_cross": 11,
    "invalid_quantity": 13,
}
CANCEL_REJECT_REASONS = {"unknown_order": 1}
SIDE_CODES = {"buy": "1", "sell": "2"}


@dataclass
class OrderProgress:
    client_order_id: str
    symbol: str
    side: str
    order_qty: int
    price: Optional[int]
    cum_qty: int = 0
    notional: int = 0


@dataclass
class OutboundMessage:
    """One numbered outbound message. `msg_type` None: a session message (gap-filled
    on resend)."""

    member: str
    seq: int
    msg_type: Optional[str]
    body: list = field(default_factory=list)
    transact_ns: int = 0


@dataclass
class MemberStream:
    next_outbound: int = 1
    next_inbound: int = 1
    # seq -> OutboundMessage, reports only, oldest first (insertion order).
    window: dict = field(default_factory=dict)


def format_decimal(units: int, decimals: int) -> str:
    """An integer in minor units as a FIX decimal string (exact)."""
    return f"{Decimal(units).scaleb(-decimals):f}"


class FixLedger:
    def __init__(self, price_decimals: int) -> None:
        self.price_decimals = price_decimals
        self.streams: dict[str, MemberStream] = {}
        self.orders: dict[int, OrderProgress] = {}
        # The inbound request whose command is the next record: (member, ClOrdID, n).
        self._inbound: Optional[tuple[str, str, int]] = None

    def stream(self, member: str) -> MemberStream:
        """The member's stream, begun here if new (only the fold itself may begin one:
        when it begins is part of the numbering)."""
        stream = self.streams.get(member)
        if stream is None:
            stream = self.streams[member] = MemberStream()
        return stream

    def observe(self, sequence: int, timestamp_ns: int, command, events: list) -> list[OutboundMessage]:
        """The messages this record numbers (reports and session-message slots)."""
        inbound, self._inbound = self._inbound, None
        kind = type(command)
        if kind is Checkpoint:
            name = command.kind
            if name.startswith(FIX_OUT_PREFIX):
                member = name[len(FIX_OUT_PREFIX):]
                stream = self.stream(member)
                if inbound is not None and inbound[0] == member and inbound[2] >= stream.next_inbound:
                    # A request refused before the engine: its reject is what took it.
                    stream.next_inbound = inbound[2] + 1
                seq = stream.next_outbound
                stream.next_outbound = seq + 1
                return [OutboundMessage(member, seq, None, [], timestamp_ns)]
            if name.startswith(FIX_IN_PREFIX) and command.version is not None:
                member, _, client_order_id = name[len(FIX_IN_PREFIX):].partition(":")
                self._inbound = (member, client_order_id, command.version)
            return []
        request_client_order_id = None
        if inbound is not None:
            member, request_client_order_id, inbound_seq = inbound
            stream = self.stream(member)
            if inbound_seq >= stream.next_inbound:
                stream.next_inbound = inbound_seq + 1
        out: list[OutboundMessage] = []
        streams = self.streams  # only members with a FIX session get bodies built
        orders = self.orders
        report_index = 0
        for event in events:
            event_kind = type(event)
            if event_kind is TradeExecuted:
                for member, order_id in ((event.maker_member, event.maker_order_id),
                                         (event.taker_member, event.taker_order_id)):
                    progress = orders.get(order_id)
                    if progress is not None:
                        progress.cum_qty += event.qty
                        progress.notional += event.qty * event.price
                    report_index += 1
                    if member in streams:
                        self._emit(out, member, sequence, report_index, timestamp_ns,
                                   self._report(order_id, "F", event))
                    if progress is not None and progress.cum_qty >= progress.order_qty:
                        del orders[order_id]
            elif event_kind is OrderAccepted:
                orders[event.order_id] = OrderProgress(
                    event.client_order_id, event.symbol, event.side, event.qty, event.price)
                report_index += 1
                if event.member in streams:
                    self._emit(out, event.member, sequence, report_index, timestamp_ns,
                               self._report(event.order_id, "0", None))
            elif event_kind is OrderCancelled:
                report_index += 1
                if event.member in streams:
                    origin = request_client_order_id if kind is CancelOrder else None
                    self._emit(out, event.member, sequence, report_index, timestamp_ns,
                               self._report(event.order_id, "4", None, text=event.reason,
                                            request_client_order_id=origin, cancelled=True))
                orders.pop(event.order_id, None)
            elif event_kind is OrderReplaced:
                progress = orders.get(event.order_id)
                if progress is not None:
                    progress.order_qty = progress.cum_qty + event.qty
                    progress.price = event.price
                report_index += 1
                if event.member in streams:
                    self._emit(out, event.member, sequence, report_index, timestamp_ns,
                               self._report(event.order_id, "5", None,
                                            request_client_order_id=request_client_order_id))
            elif event_kind is StopTriggered:
                report_index += 1
                if event.member in streams:
                    self._emit(out, event.member, sequence, report_index, timestamp_ns,
                               self._report(event.order_id, "L", None))
            elif event_kind is OrderRejected and event.member is not None:
                report_index += 1
                if event.member not in streams:
                    continue
                reason = "unknown_order" if event.reason == "not_owner" else event.reason
                if kind is CancelOrder or kind is ReplaceOrder:
                    body = self._cancel_reject(command, event, reason, request_client_order_id)
                    self._emit(out, event.member, sequence, report_index, timestamp_ns, body, "9")
                else:
                    self._emit(out, event.member, sequence, report_index, timestamp_ns,
                               self._rejected_body(command, event, reason))
        if kind is MassCancel and inbound is not None:
            cancelled = sum(1 for event in events if type(event) is OrderCancelled)
            body = [(11, request_client_order_id), (37, f"M{sequence}"),
                    (530, "1" if command.symbol else "7"), (531, "1" if command.symbol else "7"),
                    (533, cancelled)]
            if command.symbol:
                body.insert(4, (55, command.symbol))
            self._emit(out, command.member, sequence, report_index + 1, timestamp_ns, body, "r")
        return out

    # ------------------------------------------------------------ report bodies

    def _emit(self, out: list, member: str, sequence: int, index: int, timestamp_ns: int, body: list,
              msg_type: str = "8") -> None:
        stream = self.streams[member]
        seq = stream.next_outbound
        stream.next_outbound = seq + 1
        if msg_type == "8":
            body.insert(1, (17, f"{sequence}-{index}"))  # ExecID: record and report within it
        body.append((60, utc_timestamp(timestamp_ns)))  # TransactTime: the record's, deterministic
        message = OutboundMessage(member, seq, msg_type, body, timestamp_ns)
        window = stream.window
        window[seq] = message
        if len(window) > RESEND_WINDOW_MESSAGES:
            del window[next(iter(window))]
        out.append(message)

    def _price(self, units: Optional[int]) -> str:
        return format_decimal(units or 0, self.price_decimals)

    def _report(self, order_id: int, exec_type: str, trade: Optional[TradeExecuted], *, text: Optional[str] = None,
                request_client_order_id: Optional[str] = None, cancelled: bool = False) -> list:
        progress = self.orders.get(order_id)
        if progress is None:
            # An order older than what this ledger saw (cannot happen after a full rebuild).
            progress = OrderProgress("", "", "buy", 0, None)
        leaves = 0 if cancelled else progress.order_qty - progress.cum_qty
        if cancelled:
            status = "4"
        elif progress.cum_qty == 0:
            status = "0"
        else:
            status = "2" if leaves == 0 else "1"
        client_order_id = request_client_order_id or progress.client_order_id
        body = [(37, order_id), (11, client_order_id)]
        if request_client_order_id and request_client_order_id != progress.client_order_id:
            body.append((41, progress.client_order_id))
        body += [(150, exec_type), (39, status), (55, progress.symbol), (54, SIDE_CODES[progress.side]),
                 (38, progress.order_qty)]
        if progress.price is not None:
            body.append((44, self._price(progress.price)))
        body += [(151, leaves), (14, progress.cum_qty), (6, self.average_price(progress))]
        if trade is not None:
            body += [(31, self._price(trade.price)), (32, trade.qty)]
        if text:
            body.append((58, text))
        return body

    def average_price(self, progress: Optional[OrderProgress]) -> str:
        """AvgPx (6): notional / cumulative quantity, exact to 8 decimal places."""
        if progress is None:
            return "0"
        if progress.cum_qty == 0:
            return "0"
        average = Decimal(progress.notional) / Decimal(progress.cum_qty)
        return f"{average.scaleb(-self.price_decimals).quantize(Decimal(1).scaleb(-8)).normalize():f}"

    def _rejected_body(self, command, event: OrderRejected, reason: str) -> list:
        symbol = getattr(command, "symbol", None) or ""
        side = getattr(command, "side", None)
        body = [(37, event.order_id or "NONE"), (11, event.client_order_id or ""), (150, "8"), (39, "8"),
                (55, symbol), (54, SIDE_CODES.get(side, "1")), (38, getattr(command, "qty", 0) or 0),
                (151, 0), (14, 0), (6, "0"), (103, ORDER_REJECT_REASONS.get(reason, 99)), (58, reason)]
        return body

    def _cancel_reject(self, command, event: OrderRejected, reason: str, request_client_order_id: Optional[str]) -> list:
        order_id = getattr(command, "order_id", None)
        progress = self.orders.get(order_id) if order_id is not None else None
        original = progress.client_order_id if progress is not None else (getattr(command, "client_order_id", None) or "")
        status = "8"
        if progress is not None:
            status = "0" if progress.cum_qty == 0 else "1"
        return [(37, order_id if order_id is not None else "NONE"), (11, request_client_order_id or original),
                (41, original), (39, status), (434, "1" if type(command) is CancelOrder else "2"),
                (102, CANCEL_REJECT_REASONS.get(reason, 99)), (58, reason)]


def rebuild_ledger(journal_directory: str, last_sequence: int, price_decimals: int) -> FixLedger:
    """The ledger as of `last_sequence`, folded from the whole journal (a fresh exchange
    replays it for the events; the node's own exchange may have started from a snapshot).
    The cost is a full replay at start, measured in docs/BENCHMARKS.md."""
    ledger = FixLedger(price_decimals)
    if last_sequence == 0:
        return ledger
    exchange = Exchange()
    try:
        for batch in journal.read_record_batches(journal_directory, 1, last_sequence):
            commands = decode_commands([record.body for record in batch])
            fold(ledger, exchange, [(record.sequence, record.timestamp_ns, command)
                                    for record, command in zip(batch, commands)])
    except journal.JournalSequenceRangeError as error:
        # A journal archived before sequence 1 (a node seeded from a snapshot): the FIX
        # numbering is in no snapshot, so it cannot be continued exactly. Refused.
        raise journal.JournalSequenceRangeError(
            journal_directory, None, f"the FIX ledger is folded from sequence 1, which this journal no longer "
                                     f"holds ({error}); keep the journal from sequence 1 or remove [fix]") from error
    if exchange.last_sequence != last_sequence:
        raise journal.JournalUsageError(journal_directory, None, f"the FIX ledger's replay reached sequence "
                                        f"{exchange.last_sequence}, not {last_sequence}")
    return ledger


def fold(ledger: FixLedger, exchange: Exchange, records) -> None:
    """Apply (sequence, timestamp_ns, command) records to `exchange` and `ledger`."""
    apply = exchange.apply
    observe = ledger.observe
    for sequence, timestamp_ns, command in records:
        observe(sequence, timestamp_ns, command, apply(sequence, timestamp_ns, command))
