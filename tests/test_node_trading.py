"""End to end on loopback: a real `twinbook primary` process, real TCP clients.

Round trips (place, fill, cancel, status), two members trading, ownership, bad input at
the gateway (malformed payloads, oversized frames, bad credentials, requests before
logon), the per-session rate limit, and cancel-on-disconnect. Every test starts its own
node (killed at teardown) and runs its client code under a deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import time

import msgspec

from node_helpers import TOKENS, close_all, connect, next_report, run, start_node, twinbook_command  # noqa: F401
from replica.protocol import (
    PROTOCOL_VERSION,
    Disconnect,
    ExecutionReport,
    FrameReader,
    Logon,
    LogonAccepted,
    LogonRejected,
    PlaceRequest,
    RequestRejected,
    encode_frame,
    server_message_decoder,
)
from statemachine.events import OrderAccepted, OrderCancelled, OrderRejected, TradeExecuted

# ---------------------------------------------------------------- raw sockets


class RawSession:
    """A blocking TCP connection speaking frames by hand, every read under a deadline."""

    def __init__(self, address, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.frames = FrameReader()
        self.buffered: list = []
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_message(self):
        """The next server message, or None when the server closed the connection."""
        deadline = time.monotonic() + self.timeout
        while not self.buffered:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buffered.extend(server_message_decoder.decode(payload) for payload in self.frames.feed(data))
        return self.buffered.pop(0)

    def logon(self, member: str = "M1", token: str | None = None):
        self.send(encode_frame(Logon(PROTOCOL_VERSION, member, TOKENS.get(member, "x") if token is None else token)))
        return self.next_message()

    def closed_by_server(self) -> bool:
        """True once the server has closed (after any messages still buffered)."""
        for _ in range(100):
            if self.next_message() is None:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def place(request_id: int, client_order_id: str, symbol="AAPL", side="buy", qty=10, price=19000) -> PlaceRequest:
    return PlaceRequest(request_id, client_order_id, symbol, side, "limit", qty, price)


# ---------------------------------------------------------------- round trips


def test_place_status_cancel_round_trip(start_node):
    node = start_node()

    async def scenario():
        client = await connect(node, "M1")
        try:
            accepted = await client.place("rt-1", "AAPL", "buy", "limit", 10, price=18990)
            assert type(accepted) is OrderAccepted
            assert (accepted.member, accepted.client_order_id, accepted.symbol, accepted.side, accepted.qty,
                    accepted.price) == ("M1", "rt-1", "AAPL", "buy", 10, 18990)
            status = await client.order_status(accepted.order_id)
            assert (status.status, status.symbol, status.side, status.price, status.visible_qty) == (
                "resting", "AAPL", "buy", 18990, 10)
            assert node.depth("AAPL")["bids"] == [[18990, 10, 1]]

            cancelled = await client.cancel(order_id=accepted.order_id)
            assert type(cancelled) is OrderCancelled
            assert (cancelled.order_id, cancelled.reason, cancelled.remaining_qty) == (accepted.order_id, "user", 10)
            assert (await client.order_status(accepted.order_id)).status == "closed"
            assert node.depth("AAPL")["bids"] == []

            # A second cancel of the same order: a clear reject, nothing else changes.
            again = await client.cancel(order_id=accepted.order_id)
            assert type(again) is OrderRejected and again.reason == "unknown_order"
            # Out of the price band: rejected with a reason code.
            outside = await client.place("rt-2", "AAPL", "buy", "limit", 10, price=25000)
            assert type(outside) is OrderRejected and outside.reason == "price_band"
            # Cancel by client order id, and a replace that keeps priority.
            second = await client.place("rt-3", "MSFT", "sell", "limit", 7, price=42100)
            replaced = await client.replace(second.order_id, 5)
            assert replaced.order_id == second.order_id and replaced.qty == 5 and replaced.priority_kept
            by_client_id = await client.cancel(client_order_id="rt-3")
            assert type(by_client_id) is OrderCancelled and by_client_id.remaining_qty == 5
        finally:
            await close_all(client)

    run(scenario())


def test_two_members_trade_and_both_receive_the_trade(start_node):
    node = start_node()

    async def scenario():
        maker = await connect(node, "M1")
        taker = await connect(node, "M2")
        try:
            resting = await maker.place("mk-1", "AAPL", "sell", "limit", 30, price=19010)
            assert type(resting) is OrderAccepted
            aggressive = await taker.place("tk-1", "AAPL", "buy", "limit", 50, price=19020)
            assert type(aggressive) is OrderAccepted and aggressive.member == "M2"

            taker_trade = await next_report(taker, lambda e: type(e) is TradeExecuted)
            maker_trade = await next_report(maker, lambda e: type(e) is TradeExecuted)
            assert taker_trade == maker_trade
            trade = taker_trade
            assert (trade.symbol, trade.price, trade.qty, trade.aggressor) == ("AAPL", 19010, 30, "buy")
            assert (trade.maker_member, trade.maker_order_id, trade.maker_client_order_id) == ("M1", resting.order_id, "mk-1")
            assert (trade.taker_member, trade.taker_order_id, trade.taker_client_order_id) == ("M2", aggressive.order_id, "tk-1")
            assert trade.seq == aggressive.seq

            assert (await maker.order_status(resting.order_id)).status == "closed"
            remainder = await taker.order_status(aggressive.order_id)
            assert (remainder.status, remainder.price, remainder.visible_qty) == ("resting", 19020, 20)
            assert node.depth("AAPL") == {"bids": [[19020, 20, 1]], "asks": []}
        finally:
            await close_all(maker, taker)

    run(scenario())


def test_a_member_cannot_cancel_or_see_another_members_order(start_node):
    node = start_node()

    async def scenario():
        owner = await connect(node, "M1")
        other = await connect(node, "M2")
        try:
            order = await owner.place("own-1", "MSFT", "buy", "limit", 12, price=41900)
            # Answered exactly as an order that does not exist (only the sequence
            # differs), so a member cannot probe which order ids are live; the engine's
            # own reason (not_owner) stays in what a replay of the journal derives.
            refused = await other.cancel(order_id=order.order_id)
            unknown = await other.cancel(order_id=order.order_id + 1000)
            assert type(refused) is OrderRejected and refused.reason == "unknown_order" and refused.member == "M2"
            assert msgspec.structs.replace(refused, seq=0) == msgspec.structs.replace(unknown, seq=0)
            replace_refused = await other.replace(order.order_id, 1)
            replace_unknown = await other.replace(order.order_id + 1000, 1)
            assert type(replace_refused) is OrderRejected and replace_refused.reason == "unknown_order"
            assert msgspec.structs.replace(replace_refused, seq=0) == msgspec.structs.replace(replace_unknown, seq=0)
            # Nothing of it reached the owner, and the order is untouched.
            assert owner.reports.qsize() == 1  # its own accepted report only
            status = await owner.order_status(order.order_id)
            assert (status.status, status.visible_qty, status.price) == ("resting", 12, 41900)
            assert (await other.order_status(order.order_id)).status == "unknown"
            assert node.depth("MSFT")["bids"] == [[41900, 12, 1]]
        finally:
            await close_all(owner, other)

    run(scenario())


# ---------------------------------------------------------------- bad input


def test_bad_frames_get_clear_answers_and_the_node_keeps_running(start_node):
    node = start_node()

    # A malformed payload after logon: request_rejected "malformed"; the session goes on.
    session = RawSession(node.client)
    try:
        assert type(session.logon("M1")) is LogonAccepted
        session.send(encode_frame({"type": "place", "request_id": 1}))  # fields missing
        session.send(struct.pack("<I", 3) + b"\xc1\xc1\xc1")  # not msgpack at all
        session.send(encode_frame({"type": "no_such_message", "request_id": 2}))
        for _ in range(3):
            answer = session.next_message()
            assert type(answer) is RequestRejected and answer.reason == "malformed", answer
        session.send(encode_frame(place(7, "bf-1", price=18900)))
        report = session.next_message()
        assert type(report) is ExecutionReport and report.request_id == 7
        assert type(report.event) is OrderAccepted and report.event.client_order_id == "bf-1"
        assert report.session_sequence == 4  # the three rejects, then this report
    finally:
        session.close()

    # An oversized frame header: disconnect "frame_too_large", connection closed.
    session = RawSession(node.client)
    try:
        assert type(session.logon("M2")) is LogonAccepted
        session.send(struct.pack("<I", 50_000_000) + b"\0" * 64)
        answer = session.next_message()
        assert type(answer) is Disconnect and answer.reason.startswith("frame_too_large"), answer
        assert session.closed_by_server()
    finally:
        session.close()

    # Wrong token, unknown member, wrong protocol version: logon_rejected, closed.
    for member, token, version, reason in (
        ("M1", "not-the-token", PROTOCOL_VERSION, "bad_credentials"),
        ("M9", "demo-M9", PROTOCOL_VERSION, "bad_credentials"),
        ("M1", "demo-M1", PROTOCOL_VERSION + 1, "unsupported_protocol_version"),
    ):
        session = RawSession(node.client)
        try:
            session.send(encode_frame(Logon(version, member, token)))
            answer = session.next_message()
            assert type(answer) is LogonRejected and answer.reason == reason, (member, answer)
            assert session.closed_by_server()
        finally:
            session.close()

    # A request before logon: disconnect "not_logged_on", closed, nothing journaled.
    before = node.status()["last_sequence"]
    session = RawSession(node.client)
    try:
        session.send(encode_frame(place(1, "bf-early")))
        answer = session.next_message()
        assert type(answer) is Disconnect and answer.reason == "not_logged_on", answer
        assert session.closed_by_server()
    finally:
        session.close()
    # So is a frame that is not msgpack before logon.
    session = RawSession(node.client)
    try:
        session.send(struct.pack("<I", 2) + b"\xc1\xc1")
        answer = session.next_message()
        assert type(answer) is Disconnect and answer.reason == "not_logged_on", answer
        assert session.closed_by_server()
    finally:
        session.close()
    assert node.status()["last_sequence"] == before
    assert node.running

    # The node still trades for a fresh client.
    async def fresh():
        buyer = await connect(node, "M3")
        seller = await connect(node, "M2")
        try:
            bid = await buyer.place("bf-2", "AAPL", "buy", "limit", 3, price=18950)
            ask = await seller.place("bf-3", "AAPL", "sell", "limit", 3, price=18950)
            assert type(bid) is OrderAccepted and type(ask) is OrderAccepted
            trade = await next_report(buyer, lambda e: type(e) is TradeExecuted)
            assert (trade.maker_order_id, trade.taker_order_id, trade.qty) == (bid.order_id, ask.order_id, 3)
        finally:
            await close_all(buyer, seller)

    run(fresh())


def test_rate_limit_throttles_then_lets_requests_through(start_node):
    node = start_node(limits={"messages_per_second": 5, "burst_messages": 10})

    async def scenario():
        client = await connect(node, "M1")
        neighbour = await connect(node, "M2")
        try:
            futures = [client.send_place(f"rl-{i}", "AAPL", "buy", "limit", 1, price=18000 + i) for i in range(40)]
            answers = await asyncio.gather(*futures)
            throttled = [a for a in answers if type(a) is RequestRejected and a.reason == "throttled"]
            accepted = [a for a in answers if type(a) is OrderAccepted]
            assert len(accepted) + len(throttled) == 40, answers
            assert 10 <= len(accepted) <= 15 and len(throttled) >= 25, (len(accepted), len(throttled))
            # A throttled request never reached the journal.
            assert sum(row[2] for row in node.depth("AAPL")["bids"]) == len(accepted)
            # Another session has its own bucket.
            assert type(await neighbour.place("rl-n", "AAPL", "sell", "limit", 1, price=19900)) is OrderAccepted
            # The bucket refills at 5 per second.
            await asyncio.sleep(0.5)
            later = await client.place("rl-later", "AAPL", "buy", "limit", 1, price=18500)
            assert type(later) is OrderAccepted, later
        finally:
            await close_all(client, neighbour)

    run(scenario())


# ---------------------------------------------------------------- sessions


def test_cancel_on_disconnect_only_for_members_configured_so(start_node):
    node = start_node()

    async def scenario():
        keeper = await connect(node, "M1")
        quitter = await connect(node, "M4")
        try:
            kept = [await keeper.place(f"cod-k{i}", "TSLA", "buy", "limit", 2, price=24000 + 5 * i) for i in range(3)]
            gone = [await quitter.place(f"cod-q{i}", "TSLA", "sell", "limit", 4, price=26000 + 5 * i) for i in range(3)]
            assert all(type(r) is OrderAccepted for r in kept + gone)
            assert len(node.depth("TSLA")["asks"]) == 3
        finally:
            await close_all(quitter)
        # M4 is gone: its resting orders are cancelled by a journaled mass cancel.
        deadline = time.monotonic() + 5
        while node.depth("TSLA")["asks"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert node.depth("TSLA") == {"bids": [[24010, 2, 1], [24005, 2, 1], [24000, 2, 1]], "asks": []}
        returning = await connect(node, "M4")
        try:
            for report in gone:
                assert (await returning.order_status(report.order_id)).status == "closed"
        finally:
            await close_all(returning)
        # M1 disconnects too: its orders stay.
        await close_all(keeper)
        await asyncio.sleep(0.2)
        assert len(node.depth("TSLA")["bids"]) == 3

    run(scenario())
    assert node.terminate() == 0
    exported = subprocess.run(
        twinbook_command("journal", "export", str(node.data_dir)), capture_output=True, text=True, timeout=60
    )
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    mass_cancels = [r for r in records if r["type"] == "mass_cancel"]
    assert [r["member"] for r in mass_cancels] == ["M4", "M4"], mass_cancels  # both M4 disconnects, no M1


def test_sigterm_shuts_down_gracefully_with_a_clean_journal(start_node):
    node = start_node()

    async def scenario():
        client = await connect(node, "M1")
        try:
            futures = [client.send_place(f"st-{i}", "MSFT", "buy", "limit", 1, price=41000 + i) for i in range(200)]
            answers = await asyncio.gather(*futures)
            assert all(type(a) is OrderAccepted for a in answers)
        finally:
            await close_all(client)

    run(scenario())
    last = node.status()["last_sequence"]
    assert node.terminate() == 0
    assert "primary stopped at sequence" in node.log()
    verified = subprocess.run(
        twinbook_command("journal", "verify", str(node.data_dir)), capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout and "clean" in verified.stdout and f"..{last}," in verified.stdout, verified.stdout
    # It comes back with everything.
    node.start()
    assert node.status()["last_sequence"] == last
    assert len(node.depth("MSFT")["bids"]) == 200



def test_nothing_behind_a_logout_in_the_same_read_is_acted_on(start_node):
    node = start_node()
    before = node.status()["last_sequence"]
    session = RawSession(node.client)
    try:
        assert type(session.logon("M1")) is LogonAccepted
        session.send(encode_frame({"type": "logout"}) + encode_frame(place(1, "after-logout")))
        answer = session.next_message()
        assert type(answer) is Disconnect and answer.reason == "logout"
        assert session.closed_by_server()
    finally:
        session.close()
    # Several requests before logon in one read: one disconnect, nothing journaled.
    session = RawSession(node.client)
    try:
        session.send(encode_frame(place(1, "early-1")) + encode_frame(place(2, "early-2")))
        answer = session.next_message()
        assert type(answer) is Disconnect and answer.reason == "not_logged_on"
        assert session.next_message() is None
    finally:
        session.close()
    time.sleep(0.1)
    assert node.status()["last_sequence"] == before
    assert node.depth("AAPL") == {"bids": [], "asks": []}


def test_a_primary_continuing_a_version_1_journal_switches_to_its_own_rules(tmp_path):
    import journal
    from node_helpers import NodeProcess
    from replica.data_directory import DataDirectory
    from statemachine.codec import decode_command, encode_command
    from statemachine.commands import AddInstrument, Checkpoint
    from statemachine.version import RULES_VERSION

    # A journal an older build wrote (rules version 1), in the config's cluster (1).
    directory = DataDirectory.create(tmp_path / "node")
    writer = journal.JournalWriter.open(directory.journal, 1, durability="none")
    for sequence, command in enumerate([Checkpoint(kind="rules", version=1), AddInstrument("AAPL")], 1):
        writer.append(0, sequence, encode_command(command))
    writer.commit()
    writer.sync()
    writer.close()
    node = NodeProcess(tmp_path / "node").start()
    try:
        async def scenario():
            client = await connect(node, "M1")
            try:
                # Beyond the tranche bound of rules version 2 (a version-1 node accepted it).
                iceberg = await client.place("ice", "AAPL", "sell", "limit", 20001, price=19000, display_qty=2)
                assert type(iceberg) is OrderRejected and iceberg.reason == "invalid_quantity"
            finally:
                await close_all(client)

        run(scenario())
    finally:
        node.terminate()
    bodies = [body for batch in journal.read_tuple_batches(directory.journal, 1) for _, _, _, body in batch]
    assert decode_command(bodies[2]) == Checkpoint(kind="rules", version=RULES_VERSION)
