"""The FIX acceptor against a hostile or careless peer (review findings on issue 22).

Each test acts as the peer the finding describes and checks the bound: session messages
paid from the member's token bucket (20,000 TestRequests journal a bounded number of
records, then a Logout), bounded ClOrdIDs, HeartBtInt within the native interval, a
refused request's fix_in mark (a resend after failover is not taken twice), bounded
resends, FIX sockets paused with the in-flight window, a loud refusal to rebuild the
ledger from a journal that no longer starts at 1, and TLS on the FIX port when the
member ports have it.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import journal
from node_helpers import TOKENS, NodeProcess, certificates, run, tls_table
from replica.fix_codec import FixStreamReader, encode_message
from replica.fix_ledger import FixLedger, OutboundMessage, fold, rebuild_ledger
from replica.fix_node import FixAcceptor, FixConnection
from replica.config import FixConfig
from replica.fix_session import BUCKET_DEBT_MAX, RESEND_MESSAGES_MAX, FixGateway
from replica.primary import UNRELEASED_RECORDS_MAX
from replica.primary_node import PrimaryNode
from replica.tls import member_client_context
from statemachine import Checkpoint, Exchange
from statemachine.codec import decode_command, encode_command
from test_fix_session import Harness, place

HEADER_TIME = "20260101-00:00:00.000"


def logged_on(harness: Harness, sender: str = "M1"):
    initiator = harness.connect(sender, f"demo-{sender}")
    initiator.logon()
    assert initiator.take()[0][35] == "A"
    return initiator


def frames(initiator, msg_type: str, bodies) -> bytes:
    """Raw FIX messages numbered from the initiator's next MsgSeqNum."""
    out = []
    for body in bodies:
        header = [(49, initiator.sender), (56, "TWINBOOK"), (34, initiator.next_seq), (52, HEADER_TIME)]
        initiator.next_seq += 1
        out.append(encode_message(msg_type, header, body))
    return b"".join(out)


def feed_in_reads(initiator, data: bytes, read_bytes: int = 65_536) -> None:
    """As the socket would deliver it: one data() per read."""
    for start in range(0, len(data), read_bytes):
        initiator.raw(data[start:start + read_bytes])


# ---------------------------------------------------------------- finding 1: session messages cost tokens


def test_twenty_thousand_test_requests_on_an_empty_bucket_journal_a_bounded_number_then_a_logout():
    harness = Harness()
    initiator = logged_on(harness)
    harness.core.buckets["M1"].tokens = 0.0
    before = len(harness.journal)
    feed_in_reads(initiator, frames(initiator, "1", ([(112, f"t{index}")] for index in range(20_000))))
    journaled = len(harness.journal) - before
    assert journaled <= BUCKET_DEBT_MAX + 2, journaled  # the debt's Heartbeats and the Logout
    replies = initiator.take()
    assert replies[-1][35] == "5" and "throttled" in replies[-1][58]
    assert sum(reply[35] == "0" for reply in replies) <= BUCKET_DEBT_MAX
    assert initiator.closed


def test_a_full_bucket_pays_for_test_requests_like_orders():
    harness = Harness()
    initiator = logged_on(harness)
    harness.core.buckets["M1"].tokens = 50.0
    initiator.raw(frames(initiator, "1", ([(112, f"t{index}")] for index in range(10))))
    assert 39.0 <= harness.core.buckets["M1"].tokens <= 41.0  # ten tokens (plus a refill of nanoseconds)
    assert [reply[35] for reply in initiator.take()] == ["0"] * 10


def test_unsupported_types_and_bad_sequence_resets_are_paid_from_the_bucket_too():
    harness = Harness()
    initiator = logged_on(harness)
    harness.core.buckets["M1"].tokens = 0.0
    before = len(harness.journal)
    feed_in_reads(initiator, frames(initiator, "B", ([(148, "news")] for _ in range(5_000))))
    assert len(harness.journal) - before <= BUCKET_DEBT_MAX + 2
    assert initiator.take()[-1][35] == "5" and initiator.closed


def test_at_the_journal_backlog_bound_a_reply_cuts_the_connection_and_journals_nothing():
    harness = Harness()
    initiator = logged_on(harness)
    # Records handed to the journal and not yet durable (a stalled disk): at the bound.
    harness.core.unreleased.extend([(10**15, 0, None, 0, 0)] * UNRELEASED_RECORDS_MAX)
    before = len(harness.journal)
    initiator.send("1", [(112, "t")])
    assert len(harness.journal) == before and not harness.core.pending
    assert initiator.closed


# ---------------------------------------------------------------- finding 6: bounded ClOrdID


@pytest.mark.parametrize("msg_type,tag", [("D", 11), ("F", 11), ("F", 41), ("G", 11), ("q", 11)])
def test_a_15_kb_client_order_id_is_rejected_and_not_journaled(msg_type, tag):
    harness = Harness()
    initiator = logged_on(harness)
    huge = "X" * 15_000
    bodies = {
        "D": [(11, "c1"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "2"), (44, "190.00")],
        "F": [(11, "c1"), (41, "c0"), (55, "AAPL"), (54, "1")],
        "G": [(11, "c1"), (41, "c0"), (37, "7"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "2")],
        "q": [(11, "c1"), (530, "7")],
    }
    body = [(key, huge if key == tag else value) for key, value in bodies[msg_type]]
    before = len(harness.journal)
    initiator.send(msg_type, body)
    [reply] = initiator.take()
    assert reply[35] in ("8", "9", "j") and reply[58].startswith("client_order_id_too_long")
    assert huge not in reply.values()  # not echoed either
    new = harness.journal[before:]
    assert all(len(record_body) < 200 for _sequence, _timestamp, record_body in new)
    commands = [decode_command(record_body) for _sequence, _timestamp, record_body in new]
    assert [type(command) for command in commands] == [Checkpoint, Checkpoint]  # fix_in mark, the reject


def test_a_non_printable_client_order_id_is_rejected():
    harness = Harness()
    initiator = logged_on(harness)
    initiator.send("F", [(11, "c\x7f1"), (41, "c0"), (55, "AAPL"), (54, "1")])
    [reply] = initiator.take()
    assert reply[35] == "9" and reply[58].startswith("client_order_id_not_printable")


# ---------------------------------------------------------------- finding 11: HeartBtInt bound


def test_a_heartbtint_above_sixty_seconds_is_refused_at_logon():
    harness = Harness()
    initiator = harness.connect("M1", "demo-M1", heartbeat=61)
    initiator.logon()
    [logout] = initiator.take()
    assert logout[35] == "5" and "HeartBtInt" in logout[58]
    assert initiator.closed and "M1" not in harness.gateway.by_member


def test_a_sixty_second_session_is_not_cut_by_the_native_idle_clock_while_it_heartbeats():
    harness = Harness()
    initiator = harness.connect("M1", "demo-M1", heartbeat=60)
    initiator.logon()
    initiator.take()
    for _ in range(6):  # six minutes, a Heartbeat a minute
        harness.advance(60)
        initiator.send("0", [])
    assert not initiator.closed
    assert not any(reply[35] == "5" for reply in initiator.take())


# ---------------------------------------------------------------- finding 12: refused requests are marked taken


def test_a_throttled_order_is_marked_taken_so_its_resend_after_failover_is_not_accepted():
    harness = Harness()
    initiator = logged_on(harness)
    harness.core.buckets["M1"].tokens = 0.0
    place(initiator, "c1")  # MsgSeqNum 2
    [reject] = initiator.take()
    assert reject[150] == "8" and reject[58].startswith("throttled")
    # The promoted standby's ledger, folded from the journal: MsgSeqNum 2 is taken.
    ledger, exchange = FixLedger(2), Exchange(book_updates=True)
    fold(ledger, exchange, [(sequence, timestamp, decode_command(body)) for sequence, timestamp, body in harness.journal])
    assert ledger.streams["M1"].next_inbound == 3
    # Failover: the session's node is gone; a gateway over that ledger takes the firm.
    harness.gateway.closed(initiator.connection_id, harness.now_ns)
    harness.gateway = FixGateway(harness.core, FixConfig(), ledger, lambda: harness.now_ns)
    promoted = harness
    before = len(harness.journal)
    again = promoted.connect("M1", "demo-M1")
    again.next_seq = 3
    again.logon()
    assert again.take()[0][35] == "A"
    again.send("D", [(11, "c1"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "2"), (44, "190.00")], seq=2,
               possible_duplicate=True)
    assert again.take() == []  # ignored: it had its answer
    assert not any(type(decode_command(body)).__name__ == "PlaceOrder" for _s, _t, body in promoted.journal[before:])


def test_a_malformed_order_is_marked_taken_with_its_reject():
    harness = Harness()
    initiator = logged_on(harness)
    place(initiator, "c1", side="7")
    [reject] = initiator.take()
    assert reject[150] == "8"
    kinds = [decode_command(body).kind for _sequence, _timestamp, body in harness.journal[-2:]]
    assert kinds == ["fix_in:M1:", "fix_out:M1"]
    assert harness.gateway.ledger.streams["M1"].next_inbound == 3


# ---------------------------------------------------------------- finding 13: bounded resends


def test_a_resend_request_for_everything_sends_a_bounded_chunk_and_repeats_are_paid_for():
    harness = Harness()
    initiator = logged_on(harness)
    stream = harness.gateway.ledger.streams["M1"]
    first = stream.next_outbound
    for seq in range(first, first + 20_000):  # reports the window holds (as after a long day)
        stream.window[seq] = OutboundMessage("M1", seq, "8", [(37, seq), (150, "0"), (39, "0")], harness.now_ns)
    stream.next_outbound = first + 20_000
    harness.core.buckets["M1"].tokens = 1_000.0
    initiator.send("2", [(7, 1), (16, 0)])
    chunk = initiator.take()
    assert len(chunk) <= RESEND_MESSAGES_MAX
    assert chunk[-1][34] == str(RESEND_MESSAGES_MAX)
    tokens = harness.core.buckets["M1"].tokens
    assert tokens <= 1_000.0 - RESEND_MESSAGES_MAX / 100 + 1
    # The same request over and over: the bucket runs out, then a Logout.
    feed_in_reads(initiator, frames(initiator, "2", ([(7, 1), (16, 0)] for _ in range(200))))
    replies = initiator.take()
    assert len(replies) <= (tokens + BUCKET_DEBT_MAX) / (RESEND_MESSAGES_MAX / 100) * RESEND_MESSAGES_MAX + 1
    assert replies[-1][35] == "5" and initiator.closed


# ---------------------------------------------------------------- finding 2: the window pauses FIX sockets


class StubNode:
    """What FixAcceptor and PrimaryNode._pause_clients use of a node."""

    def __init__(self, harness: Harness) -> None:
        self.core = harness.core
        self.config = harness.config
        self.clients_paused = False
        self.connections: dict = {}
        self.fix = None
        self._next_id = 1_000

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def flush(self) -> None:
        if self.fix is not None:
            self.fix.flush()

    def wake(self) -> None:
        self.flush()


def test_a_full_window_stops_reading_fix_sockets_and_the_fix_idle_clock():
    harness = Harness()
    node = StubNode(harness)
    acceptor = FixAcceptor(node)
    acceptor.gateway = harness.gateway
    harness.core.release_observer = harness.gateway.observe
    node.fix = acceptor

    async def wait_for(condition, what: str, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.01)

    async def scenario():
        server = await asyncio.get_running_loop().create_server(lambda: FixConnection(acceptor), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_for(lambda: len(acceptor.connections) == 1, "the FIX connection")
        [connection] = acceptor.connections.values()
        PrimaryNode._pause_clients(node, True)
        assert not connection.transport.is_reading()
        assert harness.core.reading_paused
        # A late arrival while the window is full is not read either.
        _late_reader, late_writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_for(lambda: len(acceptor.connections) == 2, "the second FIX connection")
        late = [c for c in acceptor.connections.values() if c is not connection][0]
        assert not late.transport.is_reading()
        writer.write(encode_message("A", [(49, "M1"), (56, "TWINBOOK"), (34, 1), (52, HEADER_TIME)],
                                    [(98, 0), (108, 1), (553, "M1"), (554, "demo-M1")]))
        await writer.drain()
        PrimaryNode._pause_clients(node, False)
        assert connection.transport.is_reading() and late.transport.is_reading()
        await wait_for(lambda: harness.gateway.messages_in == 1, "the Logon read after the resume")
        for endpoint in (writer, late_writer):
            endpoint.close()
        server.close()

    run(scenario(), timeout=30)


def test_the_fix_heartbeat_clock_does_not_log_out_while_reading_is_paused():
    harness = Harness()
    initiator = harness.connect("M1", "demo-M1", heartbeat=1)
    initiator.logon()
    initiator.take()
    harness.core.inbound_paused(True, harness.now_ns)
    harness.advance(10)  # ten intervals: silence that is ours, not the peer's
    assert not initiator.closed and not any(reply[35] == "5" for reply in initiator.take())
    harness.core.inbound_paused(False, harness.now_ns)
    harness.gateway.reading_resumed(harness.now_ns)
    harness.advance(0.5)
    assert not initiator.closed


# ---------------------------------------------------------------- finding 4: a rebuild failure is loud


def test_the_ledger_is_not_rebuilt_from_a_journal_that_starts_after_sequence_one(tmp_path):
    directory = tmp_path / "journal"
    with journal.JournalWriter.open(directory, 1, durability="none", first_sequence=5) as writer:
        for _ in range(3):
            writer.append(0, 1, encode_command(Checkpoint(kind="x")))
        writer.sync()
    with pytest.raises(journal.JournalSequenceRangeError, match=r"FIX ledger is folded from sequence 1"):
        rebuild_ledger(str(directory), 7, 2)


def test_a_fix_start_that_fails_stops_the_node_and_holds_nothing(tmp_path):
    harness = Harness()

    class FailingNode(StubNode):
        failure = None

        def fail(self, error, what):
            self.failure = (error, what)

    node = FailingNode(harness)
    acceptor = FixAcceptor(node)
    node.fix = acceptor

    async def broken_start(host, backlog):
        raise journal.JournalSequenceRangeError(str(tmp_path), None, "the FIX ledger is folded from sequence 1")

    acceptor.start = broken_start
    run(PrimaryNode._start_fix(node), timeout=10)
    assert node.failure is not None and node.failure[1] == "FIX acceptor could not start"
    assert harness.core.release_observer is None  # nothing kept for a ledger never built


# ---------------------------------------------------------------- finding 5: TLS on the FIX port


def test_with_tls_for_members_the_fix_port_speaks_tls_only(tmp_path):
    node = NodeProcess(tmp_path / "node", fix={"price_decimals": 2},
                       tls={**tls_table(1, "a"), "members": True}).start()
    try:
        context = member_client_context(str(certificates(1) / "ca.pem"))
        logon = encode_message("A", [(49, "M1"), (56, "TWINBOOK"), (34, 1), (52, HEADER_TIME)],
                               [(98, 0), (108, 30), (553, "M1"), (554, TOKENS["M1"])])
        with socket.create_connection(node.fix_address, timeout=20) as raw:
            with context.wrap_socket(raw, server_hostname=node.fix_address[0]) as tls:
                tls.sendall(logon)
                reader = FixStreamReader()
                messages = []
                while not messages:
                    data = tls.recv(65_536)
                    assert data, "the FIX port closed before answering the Logon"
                    messages += reader.feed(data)
                assert messages[0].msg_type == "A"
        # The same Logon in clear is never read as FIX (the password never travels so).
        with socket.create_connection(node.fix_address, timeout=20) as plain:
            plain.sendall(logon)
            answer = b""
            try:
                while True:
                    data = plain.recv(65_536)
                    if not data:
                        break
                    answer += data
            except (ConnectionResetError, socket.timeout):
                pass
            assert b"35=A" not in answer
    finally:
        node.kill()

