"""The gateway's defences, sans-I/O: AdmissionGate, LogonGuard and the request field
bounds (replica/gateway.py), and PrimaryCore applying them with a clock passed in:
pending logons apart from logged-on sessions, logon and idle timeouts, held and refused
logons, the per-member rate, bounded fields refused before sequencing, not_owner
answered as unknown_order, mass cancels always answered, an anonymous feed."""

from __future__ import annotations

from dataclasses import replace

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from replica.config import GatewayConfig, Limits, default_config, parse_config
from replica.gateway import (
    CLIENT_ORDER_ID_BYTES_MAX,
    AdmissionGate,
    LogonGuard,
    LogonGuardSettings,
    request_problem,
)
from replica.market_data import PublicTrade
from replica.multicast import MulticastPublisherCore, decode_market_data, decode_packet, session_id
from replica.primary import IDLE_CUT_AFTER_INTERVALS, PrimaryCore
from replica.protocol import (
    PROTOCOL_VERSION,
    BookSnapshot,
    CancelRequest,
    ExecutionReport,
    Heartbeat,
    Logon,
    LogonAccepted,
    LogonRejected,
    MassCancelCompleted,
    MassCancelRequest,
    PlaceRequest,
    FrameReader,
    RequestRejected,
    ServerHeartbeat,
    ServerTestRequest,
    encode_frame,
    feed_message_decoder,
)
from feed_privacy import SECRET_FIELDS, keys_and_strings
from replica.workload import generate_commands
from statemachine import AddInstrument, Exchange
from statemachine.events import OrderRejected

SECOND_NS = 1_000_000_000
MS_NS = 1_000_000


# ---------------------------------------------------------------- AdmissionGate


def test_a_peer_is_refused_beyond_its_own_pending_bound_and_others_are_not():
    gate = AdmissionGate(total_max=10, per_peer_max=2, timeout_ns=SECOND_NS)
    assert gate.admit(1, "a", 0) == (None, None)
    assert gate.admit(2, "a", 0) == (None, None)
    assert gate.admit(3, "a", 0) == ("too_many_pending_from_peer", None)
    assert gate.admit(4, "b", 0) == (None, None)


def test_a_full_gate_evicts_the_oldest_pending_of_the_peer_holding_most():
    gate = AdmissionGate(total_max=4, per_peer_max=3, timeout_ns=SECOND_NS)
    gate.admit(1, "member", 0)
    for connection_id in (2, 3, 4):
        gate.admit(connection_id, "stranger", connection_id)
    refusal, evicted = gate.admit(5, "another", 10)
    assert refusal is None and evicted == 2  # the stranger's oldest, never the member's
    assert set(gate.pending) == {1, 3, 4, 5}


def test_pending_connections_expire_after_the_timeout_in_admission_order():
    gate = AdmissionGate(total_max=10, per_peer_max=10, timeout_ns=5 * SECOND_NS)
    gate.admit(1, "a", 0)
    gate.admit(2, "a", 2 * SECOND_NS)
    gate.leave(2)
    gate.admit(3, "b", 3 * SECOND_NS)
    assert gate.expired(4 * SECOND_NS) == []
    assert gate.expired(5 * SECOND_NS) == [1]
    assert gate.expired(8 * SECOND_NS) == [3]
    assert not gate.pending and not gate.by_peer


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["admit", "leave", "expire"]), st.integers(0, 5), st.integers(0, 30)),
                max_size=200))
def test_the_gate_never_holds_more_than_its_bounds(steps):
    gate = AdmissionGate(total_max=6, per_peer_max=3, timeout_ns=10)
    now = 0
    next_id = 1
    for action, peer, advance in steps:
        now += advance
        if action == "admit":
            gate.admit(next_id, f"p{peer}", now)
            next_id += 1
        elif action == "leave" and gate.pending:
            gate.leave(next(iter(gate.pending)))
        else:
            for connection_id in gate.expired(now):
                assert connection_id not in gate.pending
        assert len(gate.pending) <= 6
        assert all(1 <= len(ids) <= 3 for ids in gate.by_peer.values())
        assert sum(len(ids) for ids in gate.by_peer.values()) == len(gate.pending)
        assert all(now - admitted <= 10 or action != "expire" for _peer, admitted in gate.pending.values())


# ---------------------------------------------------------------- LogonGuard


def attack_cost_ns(guard: LogonGuard, attempts: int, peer: str = "10.0.0.1") -> int:
    """The least time an attacker at one address needs for `attempts` wrong tokens:
    every attempt made the instant the guard would evaluate it."""
    now = 0
    for _ in range(attempts):
        verdict, until_ns = guard.check(peer, now)
        if verdict != "go":
            now = until_ns
            assert guard.check(peer, now)[0] == "go"
        guard.failed(peer, "M1", now)
    return now


def test_ten_thousand_wrong_tokens_cost_an_attacker_hours_by_the_policys_arithmetic():
    guard = LogonGuard()
    # Defaults: 250, 500, 1000, 2000, then 4000 ms delays, every 10th failure refused 60 s.
    assert guard.cycle_ns() == (250 + 500 + 1000 + 2000 + 4000 * 5 + 60_000) * MS_NS
    cost_ns = attack_cost_ns(guard, 10_000)
    assert cost_ns >= 999 * guard.cycle_ns()
    assert cost_ns / SECOND_NS / 60 > 1300  # minutes: 23 hours and more
    assert guard.failures_total == 10_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3 * SECOND_NS), st.booleans()), max_size=150))
def test_no_address_gets_two_evaluations_closer_than_its_delay_and_clean_addresses_always_go(steps):
    guard = LogonGuard()
    now = 0
    last_failure: dict[str, tuple[int, int]] = {}  # peer -> (time, failures then)
    for peer_index, advance, right_token in steps:
        now += advance
        peer = f"10.0.0.{peer_index}"
        assert guard.check("192.0.2.1", now) == ("go", 0)  # never failed: never slowed
        verdict, until_ns = guard.check(peer, now)
        if verdict != "go":
            assert until_ns > now
            continue
        if peer in last_failure:
            failed_at, failures = last_failure[peer]
            assert now - failed_at >= guard.delay_after_ns(failures)
        if right_token:
            guard.succeeded(peer)
            last_failure.pop(peer, None)
        else:
            guard.failed(peer, "M1", now)
            last_failure[peer] = (now, guard.peers[peer].failures)


def test_failed_logons_do_not_slow_another_address():
    guard = LogonGuard()
    attack_cost_ns(guard, 25, "10.0.0.1")
    assert guard.check("10.0.0.1", 0)[0] != "go"
    assert guard.check("10.0.0.2", 0) == ("go", 0)


def test_a_success_forgets_the_failures_and_a_refusal_refuses_unseen():
    guard = LogonGuard(LogonGuardSettings(failures_per_refusal=3))
    for now in (0, 10 * SECOND_NS, 20 * SECOND_NS):
        guard.failed("a", "M1", now)
    verdict, until_ns = guard.check("a", 21 * SECOND_NS)
    assert verdict == "refuse" and until_ns == 80 * SECOND_NS
    assert guard.check("a", 80 * SECOND_NS) == ("go", 0)
    guard.succeeded("a")
    guard.failed("a", "M1", 90 * SECOND_NS)
    assert guard.check("a", 90 * SECOND_NS) == ("wait", 90 * SECOND_NS + 250 * MS_NS)


def test_failures_are_logged_once_per_peer_per_interval_with_counters():
    guard = LogonGuard()
    lines = [guard.failed("a", "M1\nforged", step * MS_NS) for step in range(100)]
    logged = [line for line in lines if line is not None]
    assert len(logged) == 1 and "1 new" in logged[0] and "\n" not in logged[0]
    assert guard.due_log_lines(5 * SECOND_NS) == []
    (summary,) = guard.due_log_lines(10 * SECOND_NS)
    assert "99 new, 100 since its last success" in summary
    assert guard.due_log_lines(30 * SECOND_NS) == []


def test_a_tick_looks_only_at_the_peers_due_a_line_not_at_every_remembered_one():
    from collections import OrderedDict

    class CountingPeers(OrderedDict):
        scans = 0

        def items(self):
            CountingPeers.scans += 1
            return super().items()

        def values(self):
            CountingPeers.scans += 1
            return super().values()

    guard = LogonGuard()
    for index in range(100_000):
        assert guard.failed(f"10.{index >> 16}.{(index >> 8) & 255}.{index & 255}", "M1", 0) is not None
    held = ["10.0.0.7", "10.0.1.9", "10.1.2.3"]
    for peer in held:
        assert guard.failed(peer, "M1", SECOND_NS) is None
    guard.peers = CountingPeers(guard.peers)
    for tick in range(1, 100):  # every 100 ms up to 9.9 s: nothing due yet
        assert guard.due_log_lines(tick * 100 * MS_NS) == []
    lines = guard.due_log_lines(10 * SECOND_NS)
    assert sorted(line.split(":")[0] for line in lines) == [f"failed logons from {peer}" for peer in sorted(held)]
    assert guard.due_log_lines(11 * SECOND_NS) == []
    assert CountingPeers.scans == 0


def test_the_guard_remembers_a_bounded_number_of_peers():
    guard = LogonGuard(LogonGuardSettings(peers_max=100))
    for index in range(1000):
        guard.failed(f"10.0.{index // 256}.{index % 256}", "M1", index)
    assert len(guard.peers) == 100


# ---------------------------------------------------------------- request fields


def test_client_order_ids_and_symbols_are_bounded_printable_ascii():
    place = PlaceRequest(1, "x" * CLIENT_ORDER_ID_BYTES_MAX, "AAPL", "buy", "limit", 1, price=1)
    assert request_problem(place) is None
    assert request_problem(msgspec.structs.replace(place, client_order_id="x" * 61_440))[0] == "client_order_id_too_long"
    assert request_problem(msgspec.structs.replace(place, client_order_id="é"))[0] == "client_order_id_not_printable"
    assert request_problem(msgspec.structs.replace(place, client_order_id="a\nb"))[0] == "client_order_id_not_printable"
    assert request_problem(msgspec.structs.replace(place, symbol="S" * 17))[0] == "symbol_too_long"
    assert request_problem(CancelRequest(1, order_id=5)) is None


def test_the_gateway_table_is_parsed_and_checked():
    config = parse_config("[gateway]\nlogon_timeout_ms = 750\n")
    assert config.gateway == GatewayConfig(logon_timeout_ms=750)
    for text in ("[gateway]\nlogon_timeout_ms = 0\n", "[gateway]\nunknown_key = 1\n"):
        try:
            parse_config(text)
        except Exception as error:  # noqa: BLE001 - ConfigError expected
            assert "gateway" in str(error)
        else:
            raise AssertionError(f"accepted {text!r}")


# ---------------------------------------------------------------- PrimaryCore


def make_core(**gateway) -> PrimaryCore:
    config = replace(default_config(), gateway=GatewayConfig(**gateway),
                     limits=Limits(sessions_max=2, messages_per_second=10, burst_messages=10))
    core = PrimaryCore(Exchange(book_updates=True), config, 1, 1)
    for instrument in config.instruments:
        core.submit_admin(AddInstrument(instrument.symbol, instrument.tick_size, instrument.lot_size,
                                        instrument.band_bps, instrument.reference_price), 0)
    settle(core)
    return core


def settle(core: PrimaryCore) -> None:
    core.take_records()
    core.release(core.next_sequence - 1)


def send(core: PrimaryCore, session_id: int, message, now_ns: int) -> list:
    core.client_payload(session_id, msgspec.msgpack.encode(message), now_ns)
    settle(core)
    return core.take_outbox().get(session_id, [])


def log_on(core: PrimaryCore, session_id: int, member: str, now_ns: int = 0, peer: str = "10.0.0.1",
           token: str | None = None, heartbeat_interval_ms: int = 1000) -> list:
    assert core.session_opened(session_id, now_ns, peer) is None
    return send(core, session_id, Logon(PROTOCOL_VERSION, member, token or f"demo-{member}", heartbeat_interval_ms),
                now_ns)


def test_sessions_max_counts_logged_on_sessions_and_pending_ones_are_bounded_apart():
    core = make_core(pending_logons_max=4, pending_logons_per_peer_max=2)
    # Strangers fill the pending bound; members still get in (the oldest stranger goes).
    for session_id in range(100, 106):
        core.session_opened(session_id, 0, f"stranger-{session_id % 3}")
    assert len(core.gate.pending) == 4
    assert type(log_on(core, 1, "M1", peer="member-1")[0]) is LogonAccepted
    assert type(log_on(core, 2, "M2", peer="member-2")[0]) is LogonAccepted
    (refused,) = log_on(core, 3, "M3", peer="member-3")
    assert refused == LogonRejected("too_many_sessions")  # sessions_max = 2 logged on
    assert len(core.gate.pending) <= 4 and core.logged_on == 2


def test_one_member_cannot_take_every_session():
    core = make_core(sessions_per_member_max=1)
    assert type(log_on(core, 1, "M1", peer="a")[0]) is LogonAccepted
    assert log_on(core, 2, "M1", peer="a") == [LogonRejected("too_many_sessions_for_member")]
    assert type(log_on(core, 3, "M2", peer="b")[0]) is LogonAccepted


def test_a_connection_that_does_not_log_on_in_time_is_cut():
    core = make_core(logon_timeout_ms=5000)
    core.session_opened(7, 0, "slow")
    core.tick(4999 * MS_NS)
    assert not core.take_closing()
    core.tick(5000 * MS_NS)
    assert core.take_closing() == [(7, "logon_timeout")]
    assert core.take_outbox()[7][-1].reason == "logon_timeout"


def test_the_logon_timeout_stops_while_reads_are_paused_and_counts_from_the_resume():
    core = make_core(logon_timeout_ms=5000)
    core.session_opened(7, 0, "before")
    core.inbound_paused(True, 1000 * MS_NS)  # the in-flight window is full: we stop reading
    core.session_opened(8, 2000 * MS_NS, "during")
    core.tick(60_000 * MS_NS)  # a minute we could not hear them: no fault of theirs
    assert not core.take_closing()
    core.inbound_paused(False, 60_000 * MS_NS)
    core.tick(64_999 * MS_NS)
    assert not core.take_closing()
    core.tick(65_000 * MS_NS)  # a whole timeout after the resume
    assert sorted(core.take_closing()) == [(7, "logon_timeout"), (8, "logon_timeout")]


def test_an_idle_session_gets_a_test_request_then_is_cut_and_traffic_resets_it():
    core = make_core()
    log_on(core, 1, "M1", heartbeat_interval_ms=1000)
    core.tick(1000 * MS_NS)
    assert [type(message) for message in core.take_outbox()[1]] == [ServerHeartbeat]
    core.tick(2000 * MS_NS)
    assert ServerTestRequest in {type(message) for message in core.take_outbox()[1]}
    send(core, 1, Heartbeat(), 2500 * MS_NS)  # the answer: silence starts again
    core.tick((2500 + 3999) * MS_NS)
    assert not core.take_closing()
    core.tick((2500 + IDLE_CUT_AFTER_INTERVALS * 1000) * MS_NS)
    assert core.take_closing() == [(1, "idle_timeout")]


def test_no_session_is_idle_cut_while_the_gateway_itself_stops_reading():
    # The in-flight window full: the adapter stops reading every client socket, so a
    # member's heartbeats wait in the kernel. Its silence is ours, not the member's.
    core = make_core()
    log_on(core, 1, "M1", heartbeat_interval_ms=1000)
    core.inbound_paused(True, 500 * MS_NS)
    core.tick(20_000 * MS_NS)
    assert not core.take_closing()
    assert ServerTestRequest not in {type(message) for message in core.take_outbox().get(1, [])}
    # Resumed: silence counts from the resume, then the usual rule applies again.
    core.inbound_paused(False, 20_000 * MS_NS)
    core.tick((20_000 + IDLE_CUT_AFTER_INTERVALS * 1000 - 1) * MS_NS)
    assert not core.take_closing()
    core.tick((20_000 + IDLE_CUT_AFTER_INTERVALS * 1000) * MS_NS)
    assert core.take_closing() == [(1, "idle_timeout")]


def test_a_wrong_token_holds_the_next_logon_from_that_address_only():
    core = make_core()
    lines_before = len(core.log_lines)
    assert log_on(core, 1, "M1", peer="attacker", token="wrong") == [LogonRejected("bad_credentials")]
    assert len(core.log_lines) == lines_before + 1 and "attacker" in core.log_lines[-1]
    core.session_closed(1, 0)
    # The next attempt from the attacker's address waits 250 ms, even with the right token.
    assert log_on(core, 2, "M1", now_ns=1 * MS_NS, peer="attacker") == []
    # Another address is not slowed.
    assert type(log_on(core, 3, "M2", now_ns=1 * MS_NS, peer="member")[0]) is LogonAccepted
    core.tick(200 * MS_NS)
    assert 2 not in core.take_outbox()
    core.tick(250 * MS_NS)
    assert type(core.take_outbox()[2][0]) is LogonAccepted


def test_the_rate_limit_is_per_member_across_its_sessions():
    core = make_core()
    log_on(core, 1, "M1")
    log_on(core, 2, "M1")
    answers = []
    for index in range(20):
        session_id = 1 + index % 2
        answers += send(core, session_id, PlaceRequest(index + 1, f"c{index}", "AAPL", "buy", "limit", 1,
                                                       price=19000), 0)
    throttled = [message for message in answers if type(message) is RequestRejected and message.reason == "throttled"]
    assert len(throttled) == 10  # a burst of 10 for the member, not 10 per session


def test_a_sixty_kilobyte_client_order_id_is_refused_before_sequencing():
    core = make_core()
    log_on(core, 1, "M1")
    sequence_before = core.next_sequence
    place = PlaceRequest(1, "x" * 61_440, "AAPL", "buy", "limit", 1, price=19000, tif="ioc")
    core.client_payload(1, msgspec.msgpack.encode(place), 0)
    assert core.next_sequence == sequence_before and not core.pending
    (answer,) = core.take_outbox()[1]
    assert type(answer) is RequestRejected and answer.reason == "client_order_id_too_long"
    assert len(encode_frame(answer)) < 200  # the answer does not echo the id


def test_not_owner_is_answered_as_unknown_order_and_mass_cancel_always_answers():
    core = make_core()
    log_on(core, 1, "M1", peer="a")
    log_on(core, 2, "M2", peer="b")
    (accepted,) = send(core, 1, PlaceRequest(1, "own", "AAPL", "buy", "limit", 5, price=19000), 0)
    order_id = accepted.event.order_id
    (theirs,) = send(core, 2, CancelRequest(1, order_id=order_id), 0)
    (missing,) = send(core, 2, CancelRequest(2, order_id=order_id + 99), 0)
    assert type(theirs.event) is OrderRejected and theirs.event.reason == "unknown_order"
    assert msgspec.structs.replace(theirs.event, seq=0) == msgspec.structs.replace(missing.event, seq=0)
    (empty,) = send(core, 2, MassCancelRequest(3), 0)
    assert type(empty) is MassCancelCompleted and (empty.request_id, empty.cancelled_count) == (3, 0)
    answers = send(core, 1, MassCancelRequest(4, "AAPL"), 0)
    assert [type(message) for message in answers] == [ExecutionReport, MassCancelCompleted]
    assert answers[-1].cancelled_count == 1


def test_no_feed_or_multicast_message_names_a_member_or_client_order_id_after_a_random_workload():
    commands = generate_commands(3000, seed=18)
    exchange = Exchange(book_updates=True)
    core = PrimaryCore(exchange, replace(default_config(), instruments=()), 1, 1)
    core.multicast = MulticastPublisherCore(session_id(1), 1, packet_bytes_max=1472, window_messages_max=10_000,
                                            window_bytes_max=1 << 26)
    core.feed.subscriber_opened(1)
    members: set = set()
    client_order_ids: set = set()
    bodies: list[bytes] = []
    for command in commands:
        # Straight into the sequencer, as if from the members' sessions.
        core._submit(command, 0, 0, core.next_sequence)
        settle(core)
        members.add(getattr(command, "member", None))
        client_order_ids.add(getattr(command, "client_order_id", None))
        if len(exchange.books) == 2 and not core.feed.subscriptions[1]:
            for symbol in exchange.books:
                core.feed.subscribe(1, symbol)
        for packet in core.multicast.take_packets():
            decoded = decode_packet(packet)
            for index, body in enumerate(decoded.bodies):
                # A too-large message is fetched by retransmission: the same window.
                bodies.append(body if body is not None else
                              core.multicast.window[decoded.sequence + index - core.multicast.window_first_sequence])
    members.discard(None)
    client_order_ids.discard(None)
    payloads = FrameReader().feed(b"".join(core.feed.take_outbox()[1]))
    feed_messages = [feed_message_decoder.decode(payload) for payload in payloads]
    assert len(bodies) == len(commands)
    assert any(type(message) is BookSnapshot for message in feed_messages)
    feed_events = [event for message in feed_messages for event in getattr(message, "events", [])]
    multicast_events = [event for body in bodies for update in decode_market_data(body) for event in update.events]
    for events in (feed_events, multicast_events):
        assert any(type(event) is PublicTrade for event in events)
    # The raw bytes, decoded untyped: a typed decoder would drop fields it does not know.
    for raw in payloads + [body for body in bodies if body]:
        keys, strings = keys_and_strings(msgspec.msgpack.decode(raw))
        assert not SECRET_FIELDS & keys, keys
        assert not strings & (members | client_order_ids), strings & (members | client_order_ids)


def test_a_big_book_is_split_into_frames_within_the_bound_and_rebuilt_and_a_lost_part_is_noticed():
    from replica.feed import FeedCore
    from replica.feed_client import BookView
    from replica.protocol import FRAME_PAYLOAD_BYTES_MAX
    from statemachine import PlaceOrder

    exchange = Exchange(book_updates=True)
    exchange.apply(1, 1, AddInstrument("BIG", 1, 1, 0, None))
    for index in range(5000):
        # Prices and quantities over 2**32: 9 bytes of msgpack each, the largest frames.
        side, price = ("buy", 5 * 10**9 + index) if index % 2 else ("sell", 6 * 10**9 + index)
        exchange.apply(index + 2, index + 2, PlaceOrder("M1", f"o{index}", "BIG", side, "limit", 10**11, price))
    frames = FeedCore(exchange).snapshot_frames("BIG")
    assert len(frames) == 3 and all(len(frame) - 4 <= FRAME_PAYLOAD_BYTES_MAX for frame in frames)
    parts = [feed_message_decoder.decode(frame[4:]) for frame in frames]
    view = BookView("BIG")
    assert all(view.apply(part) for part in parts) and view.synchronised
    depth = exchange.depth("BIG")
    assert view.depth() == {"bids": depth["bids"], "asks": depth["asks"]}
    lost = BookView("BIG")
    assert lost.apply(parts[0]) and not lost.apply(parts[2]) and not lost.synchronised
