"""The client's failover rules, sans-I/O (replica/client_core.py): which message answers
which request, what is resubmitted after a logon and in what order."""

from __future__ import annotations

import pytest

from replica.client_core import WAITING_REQUESTS_MAX, ClientCore, ClientCoreError, was_accepted_before
from replica.protocol import CancelRequest, ExecutionReport, OrderStatus, PlaceRequest, RequestRejected
from statemachine.events import OrderAccepted, OrderRejected


def place(core: ClientCore, client_order_id: str) -> PlaceRequest:
    return core.submit(PlaceRequest(core.next_request_id(), client_order_id, "AAPL", "buy", "limit", 10, price=19000))


def accepted(request_id: int, client_order_id: str, order_id: int) -> ExecutionReport:
    event = OrderAccepted(1, order_id, "M1", client_order_id, "AAPL", "buy", 10, 19000)
    return ExecutionReport(1, request_id, event)


def test_the_first_report_naming_a_request_answers_it_and_nothing_else_does():
    core = ClientCore()
    first, second = place(core, "o-1"), place(core, "o-2")
    assert core.unanswered == 2
    assert core.answer(accepted(0, "fill-of-a-resting-order", 5)) is None  # unsolicited
    request_id, event = core.answer(accepted(first.request_id, "o-1", 7))
    assert request_id == first.request_id and event.order_id == 7
    assert core.answer(accepted(first.request_id, "o-1", 7)) is None  # answered once only
    assert [request.request_id for request in core.resubmissions()] == [second.request_id]


def test_a_gateway_refusal_or_an_order_status_answers_its_request():
    core = ClientCore()
    request = place(core, "o-1")
    status = core.submit(CancelRequest(core.next_request_id(), order_id=3))
    assert core.answer(RequestRejected(4, request.request_id, "throttled")) == (
        request.request_id, RequestRejected(4, request.request_id, "throttled"))
    answer = OrderStatus(5, status.request_id, 3, "open", symbol="AAPL", side="buy", price=19000, visible_qty=10)
    assert core.answer(answer) == (status.request_id, answer)
    assert core.unanswered == 0


def test_everything_unanswered_is_resubmitted_after_a_logon_in_the_order_sent():
    core = ClientCore()
    requests = [place(core, f"o-{index}") for index in range(5)]
    core.answer(accepted(requests[2].request_id, "o-2", 9))
    again = core.resubmissions()
    assert again == [requests[0], requests[1], requests[3], requests[4]]  # the same requests, unchanged
    assert core.resubmissions() == again  # still waiting until answered


def test_a_resubmitted_place_that_was_journaled_before_is_recognised_as_accepted():
    duplicate = OrderRejected(1, "M1", "o-1", "duplicate_client_order_id", order_id=7)
    assert was_accepted_before(duplicate)
    assert not was_accepted_before(OrderRejected(1, "M1", "o-1", "invalid_price"))
    assert not was_accepted_before(OrderAccepted(1, 7, "M1", "o-1", "AAPL", "buy", 10, 19000))


def test_request_ids_are_unique_and_a_reused_one_is_refused():
    core = ClientCore()
    ids = [core.next_request_id() for _ in range(100)]
    assert len(set(ids)) == 100 and ids == sorted(ids)
    request = place(core, "o-1")
    with pytest.raises(ClientCoreError):
        core.submit(request)


def test_abandoning_forgets_every_waiting_request():
    core = ClientCore()
    requests = [place(core, f"o-{index}") for index in range(3)]
    assert core.abandon() == [request.request_id for request in requests]
    assert core.unanswered == 0 and core.resubmissions() == []
    assert WAITING_REQUESTS_MAX >= 1_000
