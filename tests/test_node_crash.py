"""End to end on loopback: a real primary SIGKILLed and restarted on its data directory.

Nothing acknowledged is lost (every order a client saw `accepted` is in the recovered
state), and a client that resubmits after reconnecting never places an order twice (the
engine's dedupe answers `duplicate_client_order_id` naming the original order).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from node_helpers import close_all, connect, run, start_node  # noqa: F401
from replica.client import ClientError, was_accepted_before
from replica.protocol import ExecutionReport
from statemachine.events import OrderAccepted, OrderRejected

LOAD_MEMBERS = ("M1", "M2", "M3")


async def load_until_killed(node, seconds: float, in_flight_max: int = 64, seed: int = 5) -> dict:
    """Several clients send pipelined orders; the node is SIGKILLed after `seconds`.

    Returns {member: {order_id: accepted event}} of every order acknowledged to a client.
    """
    clients = [await connect(node, member) for member in LOAD_MEMBERS]
    acknowledged: dict[str, dict[int, OrderAccepted]] = {member: {} for member in LOAD_MEMBERS}
    stop = asyncio.Event()

    async def send(client, rng: random.Random) -> None:
        in_flight: set = set()
        for index in range(1_000_000):  # bounded; `stop` ends it long before
            if stop.is_set():
                return
            side = rng.choice(("buy", "sell"))
            symbol = rng.choice(("AAPL", "MSFT"))
            reference = 19000 if symbol == "AAPL" else 42000
            price = reference + rng.randint(-30, 30)
            future = client.send_place(f"{client.member}-s{seed}-k{index}", symbol, side, "limit", rng.randint(1, 9), price=price)

            def done(finished, member=client.member):
                if not finished.cancelled() and finished.exception() is None:
                    event = finished.result()
                    if type(event) is OrderAccepted:
                        acknowledged[member][event.order_id] = event

            future.add_done_callback(done)
            in_flight.add(future)
            future.add_done_callback(in_flight.discard)
            if len(in_flight) >= in_flight_max:
                await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED, timeout=1.0)

    rng = random.Random(seed)
    tasks = [asyncio.ensure_future(send(client, random.Random(rng.random()))) for client in clients]
    await asyncio.sleep(seconds)
    node.kill()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        client.forget_waiting()
    await close_all(*clients)
    return acknowledged


def check_all_acknowledged_recovered(node, acknowledged: dict) -> None:
    async def check():
        for member, orders in acknowledged.items():
            client = await connect(node, member)
            try:
                ids = sorted(orders)
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    statuses = await asyncio.gather(*(client.order_status(order_id) for order_id in chunk))
                    for order_id, status in zip(chunk, statuses):
                        assert status.status in ("resting", "closed"), (member, order_id, status)
                        event = orders[order_id]
                        assert (status.symbol, status.side) == (event.symbol, event.side), (event, status)
            finally:
                await close_all(client)

    run(check(), timeout=60)


def sigkill_under_load_loses_nothing_acknowledged(node, seconds: float, seed: int) -> int:
    acknowledged = run(load_until_killed(node, seconds, seed=seed), timeout=seconds + 30)
    total = sum(len(orders) for orders in acknowledged.values())
    assert all(acknowledged.values()), "every client had orders acknowledged before the kill"
    highest = max(event.seq for orders in acknowledged.values() for event in orders.values())
    node.start()
    status = node.status()
    assert status["applied_sequence"] >= highest, (status, highest)
    assert status["applied_sequence"] == status["durable_sequence"] == status["last_sequence"]
    check_all_acknowledged_recovered(node, acknowledged)
    return total


def test_sigkill_under_load_loses_no_acknowledged_order(start_node):
    node = start_node()
    total = sigkill_under_load_loses_nothing_acknowledged(node, 1.0, seed=5)
    assert total > 100
    # The recovered node goes on trading.
    async def more():
        client = await connect(node, "M1")
        try:
            answer = await client.place("after-kill", "AAPL", "buy", "limit", 1, price=18100)
            assert type(answer) is OrderAccepted
        finally:
            await close_all(client)

    run(more())


@pytest.mark.slow
def test_repeated_sigkills_under_load_lose_nothing(start_node):
    node = start_node(node={"snapshot_every_records": 2000})
    for round_number in range(5):
        sigkill_under_load_loses_nothing_acknowledged(node, 1.0 + 0.37 * round_number, seed=round_number)


def test_resubmission_after_restart_does_not_double_place(start_node):
    node = start_node()

    async def scenario():
        client = await connect(node, "M1")
        try:
            # 1. Killed right after the place left the client: whichever side of the
            #    journal it was on, the answer is the one order, never two.
            pending = client.send_place("rs-1", "AAPL", "buy", "limit", 7, price=18777)
            await client.drain()
            node.kill()
            node.start()
            answer = await asyncio.wait_for(pending, 20)
            if type(answer) is OrderAccepted:
                order_id = answer.order_id
            else:
                assert type(answer) is OrderRejected and was_accepted_before(answer), answer
                order_id = answer.order_id
                assert order_id is not None
            assert node.depth("AAPL")["bids"] == [[18777, 7, 1]]
            status = await client.order_status(order_id)
            assert (status.status, status.price, status.visible_qty) == ("resting", 18777, 7)

            # 2. The accepted report lost with the crash: the node journaled the order and
            #    sent the ack, but the client never saw it, so it resubmits after the restart.
            lost = []
            deliver = client._dispatch

            def lossy_dispatch(message):
                if (not lost and type(message) is ExecutionReport
                        and getattr(message.event, "client_order_id", None) == "rs-2"):
                    lost.append(message.event)
                    return
                deliver(message)

            client._dispatch = lossy_dispatch
            pending = client.send_place("rs-2", "AAPL", "sell", "limit", 4, price=19444)
            deadline = time.monotonic() + 5
            while not lost and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert lost and type(lost[0]) is OrderAccepted and not pending.done()
            reconnects = client.reconnects
            node.kill()
            node.start()
            answer = await asyncio.wait_for(pending, 20)
            assert client.reconnects > reconnects
            assert was_accepted_before(answer), answer
            assert answer.reason == "duplicate_client_order_id" and answer.order_id == lost[0].order_id
            assert node.depth("AAPL") == {"bids": [[18777, 7, 1]], "asks": [[19444, 4, 1]]}

            # The session goes on as usual after both restarts.
            fresh = await client.place("rs-3", "AAPL", "buy", "limit", 1, price=18000)
            assert type(fresh) is OrderAccepted and fresh.order_id > lost[0].order_id
        finally:
            await close_all(client)

    run(scenario(), timeout=90)


def test_client_gives_up_cleanly_when_no_endpoint_answers(start_node, monkeypatch):
    import replica.client as client_module

    node = start_node()
    monkeypatch.setattr(client_module, "CONNECT_ATTEMPTS_MAX", 3)

    async def scenario():
        client = await connect(node, "M2")
        node.kill()
        pending = client.send_place("gone-1", "AAPL", "buy", "limit", 1, price=18000)
        with pytest.raises(ClientError):
            await asyncio.wait_for(pending, 20)
        await close_all(client)

    run(scenario())


