"""The multicast cores without any network: packet format, publisher, subscriber gap
handling, the retransmission decision, and the journal rebuild."""

from __future__ import annotations

import pytest

from replica.multicast import (
    COUNT_END_OF_SESSION,
    COUNT_HEARTBEAT,
    HEADER,
    HEADER_SIZE_BYTES,
    FetchSnapshot,
    MulticastPublisherCore,
    PacketError,
    PacketFaults,
    RequestRetransmission,
    SessionEnded,
    SubscriberCore,
    decode_market_data,
    decode_packet,
    encode_market_data,
    pack_messages,
    session_id,
)
from replica.market_data import PublicTrade, market_data_of
from replica.retransmission import (
    JournalRebuilder,
    Rebuild,
    Refuse,
    RetransmitRequest,
    ServeFromWindow,
    decide,
    reply_frames,
)
from replica.workload import generate_commands, write_journal
from statemachine import Exchange
from statemachine.events import LevelChanged

SESSION = session_id(1)
NOW = 1_000_000_000


def publisher(next_sequence: int = 1, packet_bytes_max: int = 200, window: int = 1000) -> MulticastPublisherCore:
    return MulticastPublisherCore(SESSION, next_sequence, packet_bytes_max=packet_bytes_max,
                                  window_messages_max=window, window_bytes_max=1 << 20)


def level(seq: int, symbol: str = "AAA", price: int = 100, qty: int = 10) -> LevelChanged:
    return LevelChanged(seq, symbol, "buy", price, qty, 1)


def publish_records(core: MulticastPublisherCore, count: int) -> list[bytes]:
    """Records first..first+count-1: every third without market data."""
    packets = []
    for _ in range(count):
        sequence = core.next_sequence
        events = [] if sequence % 3 == 0 else [level(sequence, price=100 + sequence % 7, qty=sequence)]
        core.record_released(sequence, events)
        packets += core.take_packets()
    return packets


# ---------------------------------------------------------------- format


def test_session_id_is_ten_ascii_characters_and_the_same_for_the_same_cluster():
    assert session_id(7) == session_id(7)
    assert len(session_id(7)) == 10 and session_id(7).isascii()
    assert session_id(7) != session_id(8)


def test_packet_round_trip_keeps_sequence_count_and_bodies():
    bodies = [b"", encode_market_data([level(2)]), b"", encode_market_data([level(4, "BBB")])]
    (packet,) = pack_messages(SESSION, 1, bodies, 1472)
    decoded = decode_packet(packet)
    assert (decoded.session, decoded.sequence, decoded.count) == (SESSION, 1, 4)
    assert decoded.bodies == bodies
    assert decode_market_data(decoded.bodies[1])[0].events == [level(2)]


def test_messages_are_split_into_packets_within_the_size_bound():
    body = encode_market_data([level(1)])
    packets = pack_messages(SESSION, 10, [body] * 50, 200)
    assert len(packets) > 1
    assert all(len(packet) <= 200 for packet in packets)
    sequences = []
    for packet in packets:
        decoded = decode_packet(packet)
        sequences += range(decoded.sequence, decoded.sequence + decoded.count)
    assert sequences == list(range(10, 60))


def test_a_message_larger_than_a_packet_travels_as_a_too_large_marker():
    big = encode_market_data([level(1, price=100 + index) for index in range(40)])
    packets = pack_messages(SESSION, 5, [b"", big, b""], 200)
    bodies = [body for packet in packets for body in decode_packet(packet).bodies]
    assert bodies == [b"", None, b""]


def test_heartbeat_and_end_of_session_carry_the_next_sequence():
    core = publisher()
    publish_records(core, 3)
    heartbeat = decode_packet(core.heartbeat_packet())
    end = decode_packet(core.end_of_session_packet())
    assert (heartbeat.count, heartbeat.sequence) == (COUNT_HEARTBEAT, 4)
    assert (end.count, end.sequence) == (COUNT_END_OF_SESSION, 4)


@pytest.mark.parametrize("datagram, detail", [
    (b"short", "shorter"),
    (HEADER.pack(SESSION, 1, 2) + b"\x00\x05abc", "announced"),
    (HEADER.pack(SESSION, 1, 1) + b"\x00\x00extra", "after the last"),
    (HEADER.pack(SESSION, 1, COUNT_HEARTBEAT) + b"x", "trailing"),
    (HEADER.pack(SESSION, 0, 1) + b"\x00\x00", "start at 1"),
])
def test_malformed_packets_are_refused_with_a_reason(datagram, detail):
    with pytest.raises(PacketError, match=detail):
        decode_packet(datagram)


def test_market_data_of_several_symbols_is_grouped_in_order_of_first_appearance():
    events = [level(1, "BBB"), level(1, "AAA"), level(1, "BBB", price=101)]
    updates = decode_market_data(encode_market_data(events))
    assert [(update.symbol, len(update.events)) for update in updates] == [("BBB", 2), ("AAA", 1)]


# ---------------------------------------------------------------- publisher


def test_publisher_refuses_a_record_out_of_sequence():
    core = publisher(next_sequence=5)
    with pytest.raises(Exception, match="expected 5"):
        core.record_released(6, [])


def test_publisher_window_keeps_the_most_recent_messages_only():
    core = publisher(window=10)
    publish_records(core, 25)
    assert core.window_first_sequence == 16
    assert core.from_window(15, 16) is None
    assert core.from_window(16, 25) is not None and len(core.from_window(16, 25)) == 10
    assert core.from_window(20, 26) is None  # 26 is not published yet


# ---------------------------------------------------------------- subscriber


def feed(core: SubscriberCore, packets, now_ns: int = NOW) -> list:
    for packet in packets:
        core.packet_received(packet, now_ns)
    return core.take_actions()


def test_subscriber_delivers_a_lossless_stream_in_order_without_requests():
    core = SubscriberCore()
    actions = feed(core, publish_records(publisher(), 30))
    assert actions == []
    assert [sequence for sequence, _ in core.take_delivered()] == list(range(1, 31))


def test_a_lost_packet_is_requested_and_filled_by_retransmission():
    source = publisher(packet_bytes_max=120)
    packets = publish_records(source, 20)
    lost = decode_packet(packets[3])
    core = SubscriberCore()
    actions = feed(core, packets[:3] + packets[4:])
    gap = (lost.sequence, lost.sequence + lost.count - 1)
    assert actions == [RequestRetransmission(*gap)]
    delivered = [sequence for sequence, _ in core.take_delivered()]
    assert delivered == list(range(1, gap[0]))
    core.retransmission_received(gap[0], source.from_window(*gap), NOW)
    assert [sequence for sequence, _ in core.take_delivered()] == list(range(gap[0], 21))


def test_duplicated_and_reordered_packets_are_delivered_once_in_order():
    packets = publish_records(publisher(packet_bytes_max=120), 20)
    core = SubscriberCore()
    shuffled = [packets[1], packets[0], packets[0]] + packets[2:] + [packets[5]]
    feed(core, shuffled)
    assert [sequence for sequence, _ in core.take_delivered()] == list(range(1, 21))
    assert core.duplicates >= 2


def test_a_heartbeat_reveals_a_lost_tail():
    source = publisher()
    packets = publish_records(source, 10)
    core = SubscriberCore()
    feed(core, packets[:-1])
    last = decode_packet(packets[-1])
    actions = feed(core, [source.heartbeat_packet()])
    assert actions == [RequestRetransmission(last.sequence, 10)]


def test_an_unanswered_request_is_asked_again_after_the_timeout():
    packets = publish_records(publisher(packet_bytes_max=120), 10)
    core = SubscriberCore(request_timeout_ns=100)
    first = feed(core, packets[:1] + packets[2:])
    core.tick(NOW + 50)
    assert core.take_actions() == []
    core.tick(NOW + 100)
    assert core.take_actions() == first


def test_a_refusal_as_too_old_asks_for_a_snapshot_and_delivery_resumes_after_it():
    packets = publish_records(publisher(packet_bytes_max=120), 20)
    core = SubscriberCore()
    feed(core, packets[:1] + packets[5:])
    core.retransmission_refused("too_old", NOW)
    assert core.take_actions() == [FetchSnapshot("retransmission refused: too_old")]
    core.take_delivered()
    core.snapshot_loaded(12, NOW)
    assert [sequence for sequence, _ in core.take_delivered()] == list(range(13, 21))
    assert core.take_actions() == []


def test_a_late_joiner_of_an_old_session_starts_from_a_snapshot():
    source = publisher(next_sequence=1000)
    packets = publish_records(source, 5)
    core = SubscriberCore(catch_up_messages_max=100)
    actions = feed(core, packets)
    assert actions == [FetchSnapshot("joined at sequence 1000")]
    assert core.take_delivered() == []
    core.snapshot_loaded(1001, NOW)
    assert [sequence for sequence, _ in core.take_delivered()] == [1002, 1003, 1004]


def test_a_late_joiner_of_a_young_session_catches_up_from_the_first_message():
    source = publisher()
    packets = publish_records(source, 40)
    core = SubscriberCore(request_messages_max=16)
    actions = feed(core, packets[-1:])
    first = decode_packet(packets[-1]).sequence
    assert actions == [RequestRetransmission(1, 16), RequestRetransmission(17, 32),
                       RequestRetransmission(33, first - 1)][: len(actions)]
    for action in actions:
        core.retransmission_received(action.first_sequence,
                                     source.from_window(action.first_sequence, action.last_sequence), NOW)
    assert [sequence for sequence, _ in core.take_delivered()] == list(range(1, 41))


def test_end_of_session_is_reported():
    source = publisher()
    core = SubscriberCore()
    actions = feed(core, publish_records(source, 3) + [source.end_of_session_packet()])
    assert actions == [SessionEnded(4)]


def test_packets_of_another_session_are_ignored():
    core = SubscriberCore(session=SESSION)
    other = MulticastPublisherCore(session_id(2), 1, packet_bytes_max=200, window_messages_max=10,
                                   window_bytes_max=1 << 20)
    feed(core, publish_records(other, 5))
    assert core.take_delivered() == [] and core.foreign_packets == 5


@pytest.mark.parametrize("faults", [
    dict(drop_every=5),
    dict(drop_ratio=0.05),
    dict(drop_ratio=0.05, duplicate_ratio=0.05, reorder_ratio=0.1),
])
def test_a_lossy_path_delivers_exactly_the_lossless_messages(faults):
    source = publisher(packet_bytes_max=120, window=100_000)
    packets = publish_records(source, 3000)
    shim = PacketFaults(seed=7, **faults)
    core = SubscriberCore(request_messages_max=50)
    delivered = []
    for packet in packets + [source.heartbeat_packet()]:
        for arriving in shim.filter(packet):
            core.packet_received(arriving, NOW)
        # The retransmission server answers at once from the publisher's window.
        for action in core.take_actions():
            assert type(action) is RequestRetransmission, action
            core.retransmission_received(action.first_sequence,
                                         source.from_window(action.first_sequence, action.last_sequence), NOW)
            delivered += core.take_delivered()
        delivered += core.take_delivered()
    assert shim.dropped > 0
    assert delivered == [(sequence, body) for sequence, body in zip(range(1, 3001), source.window)]


def test_packet_faults_are_deterministic_for_a_seed():
    packets = [bytes([index]) for index in range(200)]

    def run():
        shim = PacketFaults(seed=3, drop_ratio=0.1, duplicate_ratio=0.1, reorder_ratio=0.1)
        return [out for packet in packets for out in shim.filter(packet)]

    assert run() == run()
    assert run() != packets


# ---------------------------------------------------------------- retransmission decision


def request(first: int, last: int, session: bytes = SESSION) -> RetransmitRequest:
    return RetransmitRequest(session.decode(), first, last)


@pytest.mark.parametrize("first, last, session, base, expected", [
    (50, 60, SESSION, None, ServeFromWindow(50, 60)),
    (10, 60, SESSION, 0, Rebuild(10, 60)),
    (10, 60, SESSION, None, "too_old"),
    (1, 200_000, SESSION, 0, "too_many"),
    (90, 120, SESSION, None, "not_published"),
    (0, 5, SESSION, 0, "bad_range"),
    (9, 5, SESSION, 0, "bad_range"),
    (50, 60, session_id(9), None, "wrong_session"),
])
def test_retransmission_requests_are_served_rebuilt_or_refused_with_a_reason(first, last, session, base, expected):
    decision = decide(request(first, last, session), session=SESSION.decode(), published_next=100,
                      window_first=40, rebuild_base=base, rebuild_replay_records_max=1000)
    if isinstance(expected, str):
        assert type(decision) is Refuse and decision.reason == expected, decision
    else:
        assert decision == expected


def test_a_rebuild_too_far_from_its_base_is_refused_as_too_old():
    decision = decide(request(5000, 5010), session=SESSION.decode(), published_next=10_000, window_first=9000,
                      rebuild_base=0, rebuild_replay_records_max=1000)
    assert type(decision) is Refuse and decision.reason == "too_old"


def test_reply_frames_cover_the_range_exactly():
    bodies = [bytes(100_000)] * 7 + [b""] * 3
    replies = reply_frames(SESSION.decode(), 20, bodies)
    assert len(replies) > 1
    covered = []
    for reply in replies:
        covered += [(reply.first_sequence + index, body) for index, body in enumerate(reply.messages)]
    assert covered == list(zip(range(20, 30), bodies))


# ---------------------------------------------------------------- rebuild


def test_rebuilt_messages_are_byte_identical_to_the_live_ones(tmp_path):
    commands = generate_commands(3000, seed=5)
    exchange = Exchange(book_updates=True)
    live = []
    for sequence, command in enumerate(commands, 1):
        live.append(encode_market_data(market_data_of(exchange.apply(sequence, sequence * 1000, command))))
    assert any(type(event) is PublicTrade for body in live for update in decode_market_data(body) for event in update.events)
    write_journal(str(tmp_path / "journal"), commands)
    rebuilder = JournalRebuilder(str(tmp_path))
    assert rebuilder.base_for(100, 200) == 0
    assert rebuilder.rebuild(100, 200) == live[99:200]
    # The cursor continues from where the last rebuild ended, without replaying again.
    replayed = rebuilder.records_replayed
    assert rebuilder.base_for(201, 400) == 200
    assert rebuilder.rebuild(201, 400) == live[200:400]
    assert rebuilder.records_replayed == replayed + 200
    # A range behind the cursor is served from the cache.
    assert rebuilder.rebuild(150, 250) == live[149:250]
    assert rebuilder.records_replayed == replayed + 200
    assert rebuilder.rebuild(2990, 3000) == live[2989:3000]


# ---------------------------------------------------------------- config


def test_the_multicast_section_is_opt_in_and_parsed_with_its_defaults():
    from replica.config import MulticastConfig, parse_config

    assert parse_config("").multicast is None
    config = parse_config('[multicast]\ngroup = "239.1.2.3"\nport = 9000\n')
    assert config.multicast == MulticastConfig(group="239.1.2.3", port=9000)


@pytest.mark.parametrize("table, message", [
    ('group = "10.0.0.1"', "not a multicast address"),
    ('group = "nonsense"', "must be an IPv4 address"),
    ('interface = "239.1.1.1"', "is a multicast address"),
    ("ttl = 300", "multicast.ttl: expected `int` <= 255"),
    ("packet_bytes_max = 70000", "multicast.packet_bytes_max: expected `int` <= 65507"),
    ("port = 0", "multicast.port: expected `int` >= 1"),
    ("heartbeat_ms = 5", "node.toml: multicast: unknown key heartbeat_ms"),
])
def test_a_bad_multicast_section_is_refused_naming_the_key(table, message):
    from replica.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config(f"[multicast]\n{table}\n", "node.toml")
