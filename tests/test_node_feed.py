"""End to end on loopback: the market-data feed of a real primary process.

A subscriber's L2 book (snapshot + sequenced updates) must equal the engine's own view
(the admin port's `depth`) after a random multi-client, multi-symbol workload; and a
subscriber that never reads is cut off while matching goes on.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

from node_helpers import NodeProcess, close_all, connect, run, start_node, view_depth  # noqa: F401
from replica.feed_client import BookView, follow_feed
from replica.protocol import BookSnapshot, FrameReader, RequestRejected, Subscribe, encode_frame, feed_message_decoder
from statemachine.events import OrderAccepted

# symbol -> (reference price, tick, lot, half-width of the price range used)
SYMBOLS = {
    "AAPL": (19000, 1, 1, 40),
    "MSFT": (42000, 1, 1, 60),
    "TSLA": (25000, 5, 1, 200),
    "BOND": (10000, 1, 100, 30),
}


async def random_workload(node, members, operations_per_client: int, seed: int, symbols=tuple(SYMBOLS)) -> int:
    """Places (passive and marketable, limit/market/IOC), cancels and replaces from
    several clients at once, pipelined in small batches; returns the count of answers."""
    clients = [await connect(node, member) for member in members]
    answered = 0

    async def trade(client, rng: random.Random) -> int:
        resting: list[tuple[int, str, int]] = []  # (order_id, symbol, price)
        count = 0
        for batch_start in range(0, operations_per_client, 16):
            futures = []
            for index in range(batch_start, min(batch_start + 16, operations_per_client)):
                roll = rng.random()
                if roll < 0.2 and resting:
                    order_id, _, _ = resting.pop(rng.randrange(len(resting)))
                    futures.append(client.cancel(order_id=order_id))
                    continue
                if roll < 0.28 and resting:
                    order_id, symbol, price = resting[rng.randrange(len(resting))]
                    _, tick, lot, _ = SYMBOLS[symbol]
                    new_price = price + tick * rng.choice((-1, 0, 1))
                    futures.append(client.replace(order_id, lot * rng.randint(1, 5), new_price))
                    continue
                symbol = rng.choice(symbols)
                reference, tick, lot, width = SYMBOLS[symbol]
                side = rng.choice(("buy", "sell"))
                qty = lot * rng.randint(1, 20)
                coid = f"{client.member}-{seed}-{index}"
                if roll < 0.33:
                    futures.append(client.send_place(coid, symbol, side, "market", qty))
                    continue
                offset = tick * rng.randint(0, width // tick)
                # Mostly passive (away from the other side), some marketable.
                marketable = rng.random() < 0.3
                direction = 1 if (side == "buy") == marketable else -1
                price = reference + direction * offset
                fields = {"price": price}
                if rng.random() < 0.1:
                    fields["tif"] = "ioc"
                futures.append(client.send_place(coid, symbol, side, "limit", qty, **fields))
            for answer in await asyncio.gather(*futures):
                count += 1
                if type(answer) is OrderAccepted and answer.price is not None:
                    resting.append((answer.order_id, answer.symbol, answer.price))
        return count

    try:
        rng = random.Random(seed)
        counts = await asyncio.gather(*(trade(c, random.Random(rng.random())) for c in clients))
        answered = sum(counts)
    finally:
        await close_all(*clients)
    return answered


async def wait_until_consistent(node, views: dict[str, BookView], timeout: float = 10.0) -> dict:
    """Poll until every view equals the engine's depth; return the last engine depths."""
    deadline = time.monotonic() + timeout
    while True:
        engine = {symbol: node.depth(symbol) for symbol in views}
        mismatched = [s for s, view in views.items() if not view.synchronised or view_depth(view) != engine[s]]
        if not mismatched:
            return engine
        if time.monotonic() > deadline:
            raise AssertionError(
                "feed views differ from the engine: "
                + "; ".join(f"{s}: view {view_depth(views[s])} engine {engine[s]}" for s in mismatched)
            )
        await asyncio.sleep(0.05)


def test_feed_subscribers_rebuild_the_engines_book(start_node):
    node = start_node()

    async def scenario():
        views = {symbol: BookView(symbol) for symbol in SYMBOLS}
        messages = {symbol: 0 for symbol in SYMBOLS}

        def counter(symbol):
            def count(_message):
                messages[symbol] += 1
            return count

        followers = {}
        # Two symbols subscribed before any trading, two in the middle of it.
        for symbol in ("AAPL", "TSLA"):
            followers[symbol] = asyncio.ensure_future(follow_feed(node.feed, views[symbol], counter(symbol), 60))
        try:
            first = await random_workload(node, ("M1", "M2", "M3"), 150, seed=1)
            for symbol in ("MSFT", "BOND"):
                followers[symbol] = asyncio.ensure_future(follow_feed(node.feed, views[symbol], counter(symbol), 60))
            second = await random_workload(node, ("M1", "M2", "M3", "M4"), 150, seed=2)
            assert first == 450 and second == 600
            engine = await wait_until_consistent(node, views)
        finally:
            for task in followers.values():
                task.cancel()
            await asyncio.gather(*followers.values(), return_exceptions=True)
        for symbol, view in views.items():
            assert view.gaps == 0, symbol
            assert view.snapshots == 1, symbol
            assert view.status == "trading"
        # The workload is meant to leave real books behind, with trades along the way.
        assert all(engine[s]["bids"] and engine[s]["asks"] for s in SYMBOLS), engine
        assert all(views[s].trades for s in SYMBOLS)
        assert messages["AAPL"] > 50

    run(scenario(), timeout=60)


def test_slow_subscriber_is_cut_off_while_matching_goes_on(start_node):
    node = start_node(limits={"feed_buffer_bytes_max": 32768})

    async def scenario():
        # The slow subscriber: a tiny receive window, subscribes, never reads.
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(5)
        slow.connect(node.feed)
        slow.sendall(b"".join(encode_frame(Subscribe(symbol)) for symbol in ("AAPL", "MSFT")))
        view = BookView("AAPL")
        follower = asyncio.ensure_future(follow_feed(node.feed, view, lambda message: None, 60))
        deadline = time.monotonic() + 5
        while node.status()["subscribers"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert node.status()["subscribers"] == 2

        buyer = await connect(node, "M1")
        seller = await connect(node, "M2")
        try:
            acknowledged = 0
            cut_off_after = None
            # Lots of book changes on AAPL: resting orders at many prices, some trades.
            for round_number in range(200):
                futures = []
                for index in range(50):
                    price = 18100 + (round_number * 50 + index) % 1700
                    futures.append(buyer.send_place(f"sl-b{round_number}-{index}", "AAPL", "buy", "limit", 1, price=price))
                    futures.append(seller.send_place(f"sl-s{round_number}-{index}", "AAPL", "sell", "limit", 1, price=price + 1))
                answers = await asyncio.gather(*futures)
                assert all(type(a) is OrderAccepted for a in answers), [a for a in answers if type(a) is RequestRejected][:3]
                acknowledged += len(answers)
                if cut_off_after is None and node.status()["subscribers"] == 1:
                    cut_off_after = acknowledged
                if cut_off_after is not None and acknowledged >= cut_off_after + 1000:
                    break
            assert cut_off_after is not None, "the slow subscriber was never cut off"
            # Matching went on after the cut: a further 1000 orders were acknowledged.
            assert acknowledged >= cut_off_after + 1000
            assert not follower.done()
            await wait_until_consistent(node, {"AAPL": view})
            assert view.gaps == 0
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await close_all(buyer, seller)
            slow.close()
        assert node.running

    run(scenario(), timeout=60)



def _subscribe_the_moment_the_port_opens(address, symbol: str, answers: list, deadline: float) -> None:
    """Try to connect every millisecond; subscribe at once; keep the first answer."""
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection(address, timeout=5)
        except OSError:
            time.sleep(0.001)
            continue
        with sock:
            sock.sendall(encode_frame(Subscribe(symbol)))
            frames = FrameReader()
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                payloads = frames.feed(data)
                if payloads:
                    answers.append(feed_message_decoder.decode(payloads[0]))
                    return
        return


def test_instruments_are_there_as_soon_as_the_ports_open(tmp_path):
    # The configured instruments are journaled and applied before the ports open: a
    # subscriber that connects at the first possible moment never meets `unknown_symbol`.
    for attempt in range(3):
        node = NodeProcess(tmp_path / f"node{attempt}")
        answers: list = []
        watcher = threading.Thread(
            target=_subscribe_the_moment_the_port_opens, args=(node.feed, "TSLA", answers, time.monotonic() + 20)
        )
        watcher.start()
        try:
            node.start()
            watcher.join(20)
            assert answers and type(answers[0]) is BookSnapshot, answers
            assert answers[0].status == "trading"
        finally:
            watcher.join(20)
            node.kill()
