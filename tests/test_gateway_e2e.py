"""The gateway and the feed against hostile peers, with real node processes on loopback.

Strangers connect from other loopback addresses (127.0.0.0/8 all reaches `lo`), so the
per-address bounds see them as the distinct peers they would be on a network:

* 2,000 silent connections do not stop a member from logging on and trading;
* a slow-loris logon (one byte at a time) is cut at the logon timeout;
* a silent session gets heartbeats at its negotiated interval, a test request, then is
  cut, while a client that sends its heartbeats stays (and gets its mass cancel answered);
* wrong tokens hold the next attempt of their address (growing delays, then a refusal),
  are logged once with a counter, and do not slow a member at another address;
* a 60 KB client order id is refused with its reason and never journaled;
* the feed port bounds connections that have not subscribed, per address, and cuts
  them at the subscribe timeout, while a real subscriber gets its book;
* no message of the TCP feed names a member or a client order id after a workload;
* a 100,000-order book is served to a subscriber in frames within the bound and
  reconstructed exactly, and `twinbook feed` shows it without crashing.

Every loop is bounded in count and time; waits are on conditions.
"""

from __future__ import annotations

import asyncio
import random
import resource
import socket
import subprocess
import time

import msgspec

from feed_privacy import SECRET_FIELDS, keys_and_strings
from node_helpers import TOKENS, NodeProcess, close_all, connect, run, start_node, twinbook_command, wait_until  # noqa: F401
from replica.feed_client import BookView, follow_feed
from replica.market_data import PublicTrade
from replica.protocol import (
    PROTOCOL_VERSION,
    BookSnapshot,
    Disconnect,
    FrameReader,
    Logon,
    LogonAccepted,
    LogonRejected,
    RequestRejected,
    Subscribe,
    encode_frame,
    feed_message_decoder,
    server_message_decoder,
)
from replica.workload import write_journal
from statemachine import AddInstrument, PlaceOrder
from statemachine.events import TradeExecuted

STRANGER_CONNECTIONS = 2000
STRANGER_ADDRESSES = 40


def stranger_address(index: int) -> str:
    return f"127.0.0.{2 + index % STRANGER_ADDRESSES}"


def read_answer(sock: socket.socket, timeout: float):
    """The first server message on `sock`, or None if it closed first."""
    sock.settimeout(timeout)
    frames = FrameReader()
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        payloads = frames.feed(data)
        if payloads:
            return server_message_decoder.decode(payloads[0])


def raw_logon(address: tuple[str, int], source: str, member: str, token: str, timeout: float = 10.0):
    """Log on from `source` on a plain socket; (answer, seconds it took)."""
    with socket.create_connection(address, timeout=timeout, source_address=(source, 0)) as sock:
        started = time.monotonic()
        sock.sendall(encode_frame(Logon(PROTOCOL_VERSION, member, token)))
        answer = read_answer(sock, timeout)
        return answer, time.monotonic() - started


def test_two_thousand_silent_connections_do_not_stop_a_member_from_trading(start_node):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < STRANGER_CONNECTIONS + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, STRANGER_CONNECTIONS + 1000), hard))
    node = start_node(gateway={"logon_timeout_ms": 30_000})
    strangers = []
    try:
        for index in range(STRANGER_CONNECTIONS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((stranger_address(index), 0))
            sock.settimeout(10)
            sock.connect(node.client)
            strangers.append(sock)
        wait_until(lambda: node.status()["pending_logons"] == 64, what="the pending bound full of strangers")

        async def scenario():
            maker = await connect(node, "M1")
            taker = await connect(node, "M2")
            try:
                resting = await maker.place("silent-1", "AAPL", "sell", "limit", 5, price=19000)
                fill = await taker.place("silent-2", "AAPL", "buy", "limit", 5, price=19000)
                assert type(resting).__name__ == "OrderAccepted" and type(fill).__name__ == "OrderAccepted"
                trade = await asyncio.wait_for(taker.reports.get(), 5)
                while type(trade) is not TradeExecuted:
                    trade = await asyncio.wait_for(taker.reports.get(), 5)
                assert (trade.price, trade.qty) == (19000, 5)
            finally:
                await close_all(maker, taker)

        run(scenario())
        status = node.status()
        assert status["pending_logons"] <= 64 and node.running
    finally:
        for sock in strangers:
            sock.close()


def test_a_slow_loris_logon_is_cut_at_the_logon_timeout(start_node):
    node = start_node(gateway={"logon_timeout_ms": 1000})
    frame = encode_frame(Logon(PROTOCOL_VERSION, "M1", TOKENS["M1"]))
    with socket.create_connection(node.client, timeout=10, source_address=("127.0.0.7", 0)) as sock:
        started = time.monotonic()
        answer = None
        for index in range(len(frame) - 1):  # never the last byte
            try:
                sock.sendall(frame[index : index + 1])
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            answer = server_message_decoder.decode(FrameReader().feed(data)[0]) if data else None
            break
        elapsed = time.monotonic() - started
    assert type(answer) is Disconnect and answer.reason == "logon_timeout", answer
    assert 0.9 <= elapsed < 6.0, elapsed


def test_an_idle_session_is_heartbeated_tested_then_cut_while_a_live_client_stays(start_node):
    node = start_node()
    with socket.create_connection(node.client, timeout=10) as sock:
        sock.sendall(encode_frame(Logon(PROTOCOL_VERSION, "M1", TOKENS["M1"], heartbeat_interval_ms=200)))
        started = time.monotonic()
        frames = FrameReader()
        received = []
        sock.settimeout(10)
        while not received or type(received[-1]) is not Disconnect:
            data = sock.recv(65536)
            if not data:
                break
            received += [server_message_decoder.decode(payload) for payload in frames.feed(data)]
        elapsed = time.monotonic() - started
    kinds = [type(message).__name__ for message in received]
    assert kinds[0] == "LogonAccepted" and "ServerHeartbeat" in kinds and "ServerTestRequest" in kinds, kinds
    assert kinds.index("ServerTestRequest") < kinds.index("Disconnect") and received[-1].reason == "idle_timeout"
    assert 0.7 <= elapsed < 5.0, elapsed  # 4 intervals of 200 ms, at the gateway tick's precision

    async def live_client():
        # 1000 ms: cut after 4 s of silence, so a heartbeat delayed by a loaded CI loop
        # still arrives in time (at 200 ms, 800 ms of delay cut a live client).
        client = await connect(node, "M2", heartbeat_interval_ms=1000)
        try:
            await asyncio.sleep(5.0)  # silent but for its heartbeats, past 4 intervals: never cut
            assert client.reconnects == 0
            answer = await client.mass_cancel()  # nothing to cancel: answered all the same
            assert type(answer).__name__ == "MassCancelCompleted" and answer.cancelled_count == 0
        finally:
            await close_all(client)

    run(live_client())


def test_wrong_tokens_are_slowed_per_address_refused_then_and_logged_once(start_node):
    node = start_node(gateway={"logon_failure_delay_ms": 300, "logon_failures_per_refusal": 4,
                               "logon_refusal_ms": 30_000})
    attacker = "127.0.0.9"
    answers = []
    for attempt in range(5):
        answers.append(raw_logon(node.client, attacker, "M1", f"guess-{attempt}"))
        if attempt == 1:
            # Meanwhile a member at another address logs on at once.
            accepted, seconds = raw_logon(node.client, "127.0.0.1", "M2", TOKENS["M2"])
            assert type(accepted) is LogonAccepted and seconds < 0.25
    reasons = [answer.reason for answer, _seconds in answers]
    assert reasons == ["bad_credentials"] * 4 + ["logon_refused"], reasons
    # Attempts 2..4 waited for their address's block: 300, 600, 1200 ms.
    for (_answer, seconds), delay in zip(answers[1:4], (0.3, 0.6, 1.2)):
        assert seconds >= delay - 0.05, (seconds, delay)
    # During the refusal even the right token is refused, unseen.
    refused, _seconds = raw_logon(node.client, attacker, "M1", TOKENS["M1"])
    assert refused == LogonRejected("logon_refused")
    wait_until(lambda: "failed logons from 127.0.0.9" in node.log(), what="the failed-logon line")
    lines = [line for line in node.log().splitlines() if "failed logons from 127.0.0.9" in line]
    assert len(lines) < 4, lines  # a counter, not a line per attempt
    assert node.status()["logon_failures"] == 4


def test_a_sixty_kilobyte_client_order_id_is_refused_with_its_reason_and_never_journaled(start_node):
    node = start_node()

    async def scenario():
        client = await connect(node, "M1")
        try:
            before = node.status()["last_sequence"]
            answer = await client.place("x" * 61_440, "AAPL", "buy", "limit", 1, price=19000, tif="ioc")
            assert type(answer) is RequestRejected and answer.reason == "client_order_id_too_long", answer
            assert "64" in answer.detail
            good = await client.place("fine-1", "AAPL", "buy", "limit", 1, price=19000, tif="ioc")
            assert type(good).__name__ == "OrderAccepted"
            assert node.status()["last_sequence"] == before + 1  # only the good order
        finally:
            await close_all(client)

    run(scenario())
    journal_bytes = sum(path.stat().st_size for path in (node.data_dir / "journal").iterdir())
    assert journal_bytes < 60_000


def test_the_feed_port_bounds_and_times_out_connections_that_do_not_subscribe(start_node):
    node = start_node(gateway={"subscribe_timeout_ms": 500, "pending_subscribers_per_peer_max": 2})
    silent = [socket.create_connection(node.feed, timeout=10, source_address=("127.0.0.5", 0)) for _ in range(3)]
    try:
        started = time.monotonic()
        answers = {}
        for index in (2, 0, 1):
            answer = read_answer(silent[index], 10)
            answers[index] = (answer.reason if answer is not None else None, time.monotonic() - started)
        assert answers[2][0] == "too_many_pending_from_peer"
        assert answers[0][0] == answers[1][0] == "subscribe_timeout"
        assert 0.4 <= answers[0][1] < 5.0, answers
        view = BookView("AAPL")
        run(follow_feed(node.feed, view, lambda message: None, seconds=0.5))
        assert view.synchronised
    finally:
        for sock in silent:
            sock.close()


def test_no_tcp_feed_message_names_a_member_or_client_order_id(start_node):
    node = start_node()
    payloads: list[bytes] = []
    rng = random.Random(18)
    client_order_ids: set[str] = set()

    async def scenario():
        clients = [await connect(node, member) for member in ("M1", "M2", "M3")]
        reader, writer = await asyncio.open_connection(*node.feed)
        frames = FrameReader()
        writer.write(encode_frame(Subscribe("AAPL")))

        async def read_until_quiet() -> None:
            # Every frame the feed sends, kept raw; quiet for 0.5 s means all is in.
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except asyncio.TimeoutError:
                    return
                assert data, "the feed closed the connection"
                payloads.extend(frames.feed(data))

        try:
            await read_until_quiet()  # the snapshot
            futures = []
            for index in range(400):
                client_order_id = f"secret-{index}"
                client_order_ids.add(client_order_id)
                futures.append(clients[index % 3].send_place(
                    client_order_id, "AAPL", rng.choice(("buy", "sell")), "limit", rng.randrange(1, 20),
                    price=rng.randrange(18980, 19020)))
            await asyncio.wait_for(asyncio.gather(*futures), 20)
            await read_until_quiet()
        finally:
            writer.close()
            await close_all(*clients)

    run(scenario(), timeout=60)
    messages = [feed_message_decoder.decode(payload) for payload in payloads]
    trades = [event for message in messages for event in getattr(message, "events", []) if type(event) is PublicTrade]
    assert len(trades) > 10 and type(messages[0]) is BookSnapshot
    secrets = client_order_ids | set(TOKENS)  # the members' names
    for payload in payloads:
        # Untyped: a typed decoder would drop fields it does not know.
        keys, strings = keys_and_strings(msgspec.msgpack.decode(payload))
        assert not SECRET_FIELDS & keys, keys
        assert not strings & secrets, strings & secrets


def test_a_hundred_thousand_order_book_is_served_in_frames_and_reconstructed_exactly(tmp_path):
    rng = random.Random(100)
    commands = [AddInstrument("BIG", 1, 1, 0, None)]
    for index in range(100_000):
        side = "buy" if index % 2 else "sell"
        price = rng.randrange(1, 40_000) if side == "buy" else rng.randrange(40_000, 80_000)
        commands.append(PlaceOrder(("M1", "M2")[index % 2], f"big-{index}", "BIG", side, "limit",
                                   rng.randrange(1, 100), price))
    node = NodeProcess(tmp_path / "node")
    write_journal(str(node.data_dir / "journal"), commands)
    node.start(timeout=60)
    try:
        expected = node.depth("BIG")
        assert len(expected["bids"]) + len(expected["asks"]) > 20_000  # many frames' worth
        view = BookView("BIG")
        frames_seen: list[BookSnapshot] = []

        def on_message(message) -> None:
            if type(message) is BookSnapshot:
                if message.part == 1:
                    frames_seen.clear()  # a new snapshot (after a reconnection) starts over
                frames_seen.append(message)

        async def subscribe():
            deadline = time.monotonic() + 30
            while not view.synchronised and time.monotonic() < deadline:
                await follow_feed(node.feed, view, on_message, seconds=1.0)

        run(subscribe(), timeout=40)
        assert view.synchronised and frames_seen[0].parts == len(frames_seen) > 10
        depth = view.depth()
        assert [list(row) for row in depth["bids"]] == expected["bids"]
        assert [list(row) for row in depth["asks"]] == expected["asks"]
        # The shell's feed view shows the big book and ends cleanly.
        shown = subprocess.run(
            twinbook_command("feed", "--endpoint", f"{node.feed[0]}:{node.feed[1]}", "--symbol", "BIG",
                             "--seconds", "3"),
            capture_output=True, text=True, timeout=60,
        )
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert "BIG  trading" in shown.stdout
    finally:
        node.kill()


def test_the_ioc_memory_benchmark_reports_its_figures(tmp_path):
    # A smoke run of `twinbook bench ioc-memory` (no figure is asserted: it is a benchmark).
    shown = subprocess.run(
        twinbook_command("bench", "ioc-memory", "--orders", "2000", "--clients", "2", "--window", "100", "--workdir", str(tmp_path),
                         "--json"),
        capture_output=True, text=True, timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    figures = msgspec.json.decode(shown.stdout.strip().splitlines()[-1])
    assert figures["orders"] == 2000 and figures["rss_end_mib"] > 0 and figures["rss_after_restart_mib"] > 0
    assert len(figures["rss_samples_mib"]) == 10 and figures["node_cpu_us_per_order"] > 0
