"""A member's client session, sans-I/O: which requests wait for an answer, what to send
again after a failover, and which message answers which request.

    core = ClientCore()
    request = core.submit(PlaceRequest(core.next_request_id(), "o-1", "AAPL", "buy", "limit", 100, price=19000))
    ... send `request` ...
    answered = core.answer(message)        # (request id, answer) when it ends a wait, else None
    ... after a reconnection and a LogonAccepted:
    for request in core.resubmissions():   # every request still waiting, in the order sent
        ... send it again, unchanged ...

The rules are the failover contract of DESIGN.md's invariant 5: a request that got no
answer before the connection dropped is sent again after the next logon, on whichever
node accepts it, with the same client order id; the engine's dedupe answers a place that
had already reached the journal with `duplicate_client_order_id` naming the original
order (`was_accepted_before`), never with a second order. So a client never decides on
its own that a request failed because its connection did.

The asyncio client (replica/client.py) and the simulator's clients
(replica/simulation/cluster.py) both drive this core; only the I/O and the trading
program's own policy (what to send, when to give up on a silent node) are theirs.
"""

from __future__ import annotations

from typing import Optional

from replica.protocol import ExecutionReport, MassCancelCompleted, MassCancelRequest, OrderStatus, RequestRejected
from statemachine.events import OrderRejected

# A bound on requests waiting for an answer: a client that sends without reading
# answers would otherwise grow without limit (DESIGN.md invariant 8).
WAITING_REQUESTS_MAX = 1_000_000


class ClientCoreError(Exception):
    """A precondition of the client core was broken by its caller."""


def was_accepted_before(report) -> bool:
    """True if a resubmitted place found its original already accepted."""
    return isinstance(report, OrderRejected) and report.reason == "duplicate_client_order_id"


class ClientCore:
    def __init__(self) -> None:
        self._next_request_id = 1
        # request id -> request; dicts keep insertion order, which is the order sent.
        self.waiting: dict[int, object] = {}

    def next_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id

    def submit(self, request):
        """Record `request` as waiting for its answer (the caller sends it)."""
        request_id = request.request_id
        if request_id in self.waiting:
            raise ClientCoreError(f"request id {request_id} is already waiting for an answer")
        if len(self.waiting) >= WAITING_REQUESTS_MAX:
            raise ClientCoreError(f"{WAITING_REQUESTS_MAX} requests are already waiting for answers")
        self.waiting[request_id] = request
        return request

    def answer(self, message) -> Optional[tuple[int, object]]:
        """(request id, answer) when `message` answers a waiting request, else None.

        The answer to a place, cancel or replace is the first execution report naming
        its request id (the event); a mass cancel's is its MassCancelCompleted (its
        cancels' reports come before it); a gateway refusal (RequestRejected:
        throttled, malformed, busy) or an order status answers a request too. Anything
        else (fills of resting orders, heartbeats, answers to requests no longer
        waiting) answers nothing."""
        kind = type(message)
        if kind is ExecutionReport:
            request_id = message.request_id
            if request_id and type(self.waiting.get(request_id)) is not MassCancelRequest:
                if self.waiting.pop(request_id, None) is not None:
                    return request_id, message.event
            return None
        if kind is RequestRejected or kind is OrderStatus or kind is MassCancelCompleted:
            if self.waiting.pop(message.request_id, None) is not None:
                return message.request_id, message
        return None

    def resubmissions(self) -> list:
        """What to send again after a (re)logon: every waiting request, in the order sent."""
        return list(self.waiting.values())

    def abandon(self) -> list[int]:
        """Forget every waiting request (no endpoint can be reached); their ids."""
        request_ids = list(self.waiting)
        self.waiting.clear()
        return request_ids

    @property
    def unanswered(self) -> int:
        return len(self.waiting)
