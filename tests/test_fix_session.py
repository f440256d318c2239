"""The FIX acceptor's sans-I/O cores, driven in-process: codec, decimals, session layer
(MsgSeqNum rules, garbled messages, HeartBtInt timers) and the journal-derived ledger.

A `Harness` runs a real PrimaryCore and FixGateway with a fake clock; its `step()` is
the node's commit loop (take the records into an in-memory journal, release them). The
counterparty here is `TestInitiator`, a few lines of FIX written for these tests (the
real FIX engine is in tests/test_fix_quickfix.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replica.config import FixConfig, default_config
from replica.fix_codec import FixStreamReader, checksum, encode_message
from replica.fix_ledger import FixLedger, fold, format_decimal
from replica.fix_session import FieldProblem, FixGateway, decimal_units
from replica.primary import PrimaryCore
from statemachine import AddInstrument, Exchange
from statemachine.codec import decode_command

SECOND_NS = 1_000_000_000


class Harness:
    def __init__(self) -> None:
        self.now_ns = 1_700_000_000 * SECOND_NS
        self.config = default_config()
        self.core = PrimaryCore(Exchange(book_updates=True), self.config, 0, 1)
        self.gateway = FixGateway(self.core, FixConfig(), FixLedger(2), lambda: self.now_ns)
        self.journal: list[tuple[int, int, bytes]] = []
        for instrument in self.config.instruments:
            self.core.submit_admin(AddInstrument(instrument.symbol, instrument.tick_size, instrument.lot_size,
                                                 instrument.band_bps, instrument.reference_price), self.now_ns)
        self.step()
        self.next_connection = 1

    def step(self) -> None:
        """The commit loop: journal what is pending, release it, pump answers."""
        for _ in range(10):
            records = self.core.take_records()
            if not records:
                break
            self.journal.extend((sequence, timestamp_ns, body) for sequence, _epoch, timestamp_ns, body in records)
            self.core.release(records[-1][0])
            self.gateway.pump()

    def connect(self, sender: str = "M1", password: str = "demo-M1", heartbeat: int = 30) -> "TestInitiator":
        connection_id = self.next_connection
        self.next_connection += 1
        assert self.gateway.opened(connection_id, "127.0.0.1", self.now_ns) is None
        return TestInitiator(self, connection_id, sender, password, heartbeat)

    def buyer_and_seller(self) -> tuple["TestInitiator", "TestInitiator"]:
        """M1 and M2 logged on."""
        buyer = self.connect("M1", "demo-M1")
        seller = self.connect("M2", "demo-M2")
        buyer.logon()
        seller.logon()
        return buyer, seller

    def advance(self, seconds: float) -> None:
        """The node's gateway tick: PrimaryCore's timers, then the FIX ones."""
        self.now_ns += int(seconds * SECOND_NS)
        self.core.tick(self.now_ns)
        self.gateway.tick(self.now_ns)
        self.gateway.pump()
        self.step()


class TestInitiator:
    """Just enough of a FIX initiator to drive the acceptor message by message."""

    __test__ = False

    def __init__(self, harness: Harness, connection_id: int, sender: str, password: str, heartbeat: int) -> None:
        self.harness = harness
        self.connection_id = connection_id
        self.sender = sender
        self.password = password
        self.heartbeat = heartbeat
        self.next_seq = 1
        self.reader = FixStreamReader()
        self.received: list[dict[int, str]] = []

    def raw(self, data: bytes) -> None:
        self.harness.gateway.data(self.connection_id, data, self.harness.now_ns)
        self.harness.step()

    def send(self, msg_type: str, body: list, seq: int | None = None, possible_duplicate: bool = False) -> None:
        if seq is None:
            seq = self.next_seq
            self.next_seq += 1
        header = [(49, self.sender), (56, "TWINBOOK"), (34, seq), (52, "20260101-00:00:00.000")]
        if possible_duplicate:
            header += [(43, "Y"), (122, "20260101-00:00:00.000")]
        self.raw(encode_message(msg_type, header, body))

    def logon(self) -> None:
        self.send("A", [(98, 0), (108, self.heartbeat), (553, self.sender), (554, self.password)])

    def take(self) -> list[dict[int, str]]:
        """Messages the acceptor wrote to this connection since the last take."""
        chunks = self.harness.gateway.outbox.pop(self.connection_id, [])
        new = [message.values for message in self.reader.feed(b"".join(chunks))]
        self.received += new
        return new

    @property
    def closed(self) -> bool:
        return self.connection_id in self.harness.gateway.closing


def place(initiator: TestInitiator, client_order_id: str, qty: str = "10", price: str = "190.00", *,
          symbol: str = "AAPL", side: str = "1", order_type: str = "2", fields: tuple = ()) -> None:
    body = [(11, client_order_id), (55, symbol), (54, side), (38, qty), (40, order_type), (44, price)]
    initiator.send("D", body + list(fields))


# ---------------------------------------------------------------- codec


def test_a_message_round_trips_with_body_length_and_checksum_verified():
    data = encode_message("D", [(49, "M1"), (56, "TWINBOOK"), (34, 7)], [(11, "c1"), (44, "190.05")])
    body_length = int(data.split(b"\x01")[1][2:])
    assert data.index(b"10=") - (data.index(b"35=")) == body_length
    assert int(data[-4:-1]) == checksum(data[:-7])
    [message] = FixStreamReader().feed(data)
    assert message.values[11] == "c1" and message.values[34] == "7"


def test_garbled_messages_are_skipped_and_the_next_one_is_read():
    good = encode_message("0", [(49, "M1"), (56, "TWINBOOK"), (34, 2)], [])
    bad_checksum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    bad_length = good.replace(b"9=", b"9=9", 1)
    reader = FixStreamReader()
    messages = reader.feed(b"noise" + bad_checksum + bad_length + good)
    assert [message.values[34] for message in messages] == ["2"]
    assert reader.garbled == 3


@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=8))
def test_any_split_of_the_stream_yields_the_same_messages(cuts):
    data = b"".join(encode_message("D", [(34, seq)], [(11, f"c{seq}")]) for seq in range(1, 4))
    reader = FixStreamReader()
    messages = []
    position = 0
    for cut in cuts + [len(data)]:
        messages += reader.feed(data[position:position + cut])
        position += cut
    messages += reader.feed(data[position:])
    assert [message.values[11] for message in messages] == ["c1", "c2", "c3"]
    assert reader.garbled == 0


# ---------------------------------------------------------------- decimals


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=0, max_value=6))
def test_decimal_prices_convert_to_units_exactly_and_back(units, decimals):
    assert decimal_units(format_decimal(units, decimals), decimals, 44, "invalid_price") == units


def test_a_price_finer_than_the_unit_is_refused_not_rounded():
    assert decimal_units("190.10", 2, 44, "invalid_price") == 19010
    for text in ("190.001", "1e3", "nan", "", "190.", "-1"):
        try:
            decimal_units(text, 2, 44, "invalid_price")
        except FieldProblem as problem:
            assert problem.reason == "invalid_price"
        else:
            raise AssertionError(f"{text!r} was accepted")


# ---------------------------------------------------------------- session layer


def test_logon_then_an_order_is_journaled_after_its_inbound_record_and_acknowledged():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    [logon] = initiator.take()
    assert (logon[35], logon[34], logon[108]) == ("A", "1", "30")
    place(initiator, "c1", price="190.05")
    [report] = initiator.take()
    assert (report[35], report[150], report[34], report[44], report[151]) == ("8", "0", "2", "190.05", "10")
    commands = [decode_command(body) for _sequence, _timestamp, body in harness.journal]
    kinds = [getattr(command, "kind", type(command).__name__) for command in commands[-3:]]
    assert kinds == ["fix_out:M1", "fix_in:M1:c1", "PlaceOrder"]


def test_a_wrong_password_gets_a_logout_and_no_session():
    harness = Harness()
    initiator = harness.connect(password="wrong")
    initiator.logon()
    [logout] = initiator.take()
    assert logout[35] == "5" and "bad_credentials" in logout[58]
    assert initiator.closed and harness.gateway.by_member == {}


def test_msg_seq_num_too_low_logs_out_but_a_possible_duplicate_is_ignored():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    place(initiator, "c1")
    initiator.take()
    place_duplicate = [(11, "c1"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "2"), (44, "190.00")]
    initiator.send("D", place_duplicate, seq=2, possible_duplicate=True)
    assert initiator.take() == [] and not initiator.closed
    initiator.send("0", [], seq=2)
    [logout] = initiator.take()
    assert logout[35] == "5" and "MsgSeqNum too low, expecting 3 but received 2" in logout[58]
    assert initiator.closed


def test_msg_seq_num_too_high_asks_for_a_resend_once_and_a_gap_fill_recovers():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    initiator.take()
    initiator.send("0", [], seq=5)
    initiator.send("0", [], seq=6)
    [resend_request] = initiator.take()
    assert (resend_request[35], resend_request[7], resend_request[16]) == ("2", "2", "0")
    initiator.send("4", [(123, "Y"), (36, 7)], seq=2, possible_duplicate=True)
    initiator.next_seq = 7
    place(initiator, "after-gap")
    [report] = initiator.take()
    assert report[11] == "after-gap" and report[150] == "0"


def test_a_garbled_message_does_not_consume_a_sequence_number():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    initiator.take()
    good = encode_message("0", [(49, "M1"), (56, "TWINBOOK"), (34, 2), (52, "20260101-00:00:00.000")], [])
    initiator.raw(good.replace(b"10=", b"10=9", 1)[:-1] + b"\x01")  # a broken trailer
    initiator.raw(good)
    assert initiator.take() == [] and not initiator.closed
    assert harness.gateway.connections[initiator.connection_id].expected == 3
    assert harness.gateway.garbled == 1


def test_heartbeats_test_request_and_logout_follow_heartbtint():
    harness = Harness()
    initiator = harness.connect(heartbeat=10)
    initiator.logon()
    initiator.take()
    harness.advance(10)
    [heartbeat] = initiator.take()
    assert heartbeat[35] == "0"
    harness.advance(2.5)  # 12.5 s silent: past one interval and a fifth
    [test_request] = initiator.take()
    assert test_request[35] == "1"
    initiator.send("0", [(112, test_request[112])])
    harness.advance(5)
    assert not initiator.closed
    harness.advance(25)  # silent again: another TestRequest, and this one is not answered
    assert [message[35] for message in initiator.take()] == ["1"]
    harness.advance(10)
    [logout] = initiator.take()
    assert logout[35] == "5" and logout[58] == "no answer to TestRequest" and initiator.closed


def test_an_unsupported_type_gets_a_business_reject_and_a_missing_tag_a_session_reject():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    initiator.take()
    initiator.send("R", [(131, "q1")])
    [business] = initiator.take()
    assert (business[35], business[372], business[380]) == ("j", "R", "3")
    initiator.send("D", [(11, "c1"), (55, "AAPL"), (54, "1"), (40, "2"), (44, "1.00")])  # no OrderQty
    [reject] = initiator.take()
    assert (reject[35], reject[371], reject[373]) == ("3", "38", "1")


# ---------------------------------------------------------------- the ledger


def test_the_ledger_rebuilt_from_the_journal_numbers_exactly_what_the_live_one_did():
    harness = Harness()
    buyer, seller = harness.buyer_and_seller()
    place(buyer, "b1", qty="10", price="190.00")
    place(seller, "s1", qty="4", price="190.00", side="2")
    buyer.send("F", [(11, "b1c"), (41, "b1")])
    buyer.send("q", [(11, "mass1"), (530, "7")])
    harness.advance(31)
    live = harness.gateway.ledger
    rebuilt = FixLedger(2)
    fold(rebuilt, Exchange(), [(sequence, timestamp_ns, decode_command(body))
                               for sequence, timestamp_ns, body in harness.journal])
    for member in ("M1", "M2"):
        mine, theirs = live.streams[member], rebuilt.streams[member]
        assert (mine.next_outbound, mine.next_inbound) == (theirs.next_outbound, theirs.next_inbound)
        assert [(m.seq, m.msg_type, m.body) for m in mine.window.values()] == \
            [(m.seq, m.msg_type, m.body) for m in theirs.window.values()]
    sent = [message for message in buyer.take() if message[35] in ("8", "9", "r")]
    numbered = [str(message.seq) for message in live.streams["M1"].window.values()]
    assert [message[34] for message in sent] == numbered
    assert [message[150] for message in sent if message[35] == "8"] == ["0", "F", "4"]
    assert [message[35] for message in sent][-1] == "r"


def test_a_journal_torn_after_an_inbound_record_has_not_taken_that_message():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    place(initiator, "c1")
    place(initiator, "c2")
    records = [(sequence, timestamp_ns, decode_command(body)) for sequence, timestamp_ns, body in harness.journal]
    whole = FixLedger(2)
    fold(whole, Exchange(), records)
    torn = FixLedger(2)
    fold(torn, Exchange(), records[:-1])  # the last record, c2's PlaceOrder, lost
    assert whole.streams["M1"].next_inbound == 4
    assert torn.streams["M1"].next_inbound == 3


# ---------------------------------------------------------------- configuration


def test_the_fix_table_is_opt_in_checked_and_follows_the_port_base():
    import pytest

    from replica.config import ConfigError, parse_config

    assert parse_config("").fix is None
    config = parse_config('[fix]\ncomp_id = "EXCH"\nprice_decimals = 4\n[fix.comp_ids]\nFIRM1 = "M1"\n')
    assert (config.fix.comp_id, config.fix.price_decimals, config.fix.member_for("FIRM1"),
            config.fix.member_for("M2")) == ("EXCH", 4, "M1", "M2")
    assert config.with_ports(7701).fix.port == 7709 and config.with_ports(0).fix.port == 0
    with pytest.raises(ConfigError, match="fix: unknown key password"):
        parse_config('[fix]\npassword = "x"\n')
    with pytest.raises(ConfigError, match="price_decimals"):
        parse_config("[fix]\nprice_decimals = 12\n")


# ---------------------------------------------------------------- the native gateway's defences, reused


def test_anything_but_a_logon_first_is_cut_without_a_word():
    harness = Harness()
    initiator = harness.connect()
    place(initiator, "c1")
    assert initiator.take() == [] and initiator.closed
    assert len(harness.journal) == len(harness.config.instruments)  # nothing journaled


def test_a_failed_logon_holds_the_next_attempt_from_that_address_like_a_native_one():
    harness = Harness()
    first = harness.connect(password="wrong")
    first.logon()
    assert "bad_credentials" in first.take()[0][58]
    second = harness.connect()  # the right token, same address, at once
    second.logon()
    assert second.take() == []  # held by the LogonGuard (250 ms after the first failure)
    harness.advance(0.3)
    [logon] = second.take()
    assert logon[35] == "A"


def test_the_members_token_bucket_throttles_fix_orders_as_a_rejected_execution_report():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    initiator.take()
    harness.core.buckets["M1"].tokens = 0.0
    place(initiator, "c1")
    [report] = initiator.take()
    assert (report[35], report[150], report[11]) == ("8", "8", "c1") and report[58].startswith("throttled")
    commands = [decode_command(body) for _sequence, _timestamp, body in harness.journal]
    assert not any(type(command).__name__ == "PlaceOrder" for command in commands)  # refused before the engine
    # The reject stands behind a fix_in mark: the request is taken (next_inbound passed it).
    assert [(command.kind, command.version) for command in commands[-2:]] == [("fix_in:M1:", 2), ("fix_out:M1", None)]
    assert harness.gateway.ledger.streams["M1"].next_inbound == 3


def test_a_hostile_body_length_is_garbled_and_never_buffered_beyond_the_bound():
    from replica.fix_codec import MESSAGE_BYTES_MAX

    reader = FixStreamReader()
    assert reader.feed(b"8=FIX.4.4\x019=999999999\x0135=D\x01" + b"x" * 1000) == []
    assert reader.garbled >= 1 and len(reader.buffer) < 16
    for _ in range(10):
        reader.feed(b"8=FIX.4.4\x019=16000\x0135=D\x01" + b"y" * 4000)
    assert len(reader.buffer) <= 2 * MESSAGE_BYTES_MAX


# ---------------------------------------------------------------- order types and the other requests


def test_order_types_time_in_force_post_only_iceberg_and_stp_map_onto_the_engine():
    harness = Harness()
    buyer, seller = harness.buyer_and_seller()
    buyer.take()
    seller.take()
    place(buyer, "ice", qty="100", price="190.00", fields=((111, "10"), (59, "1")))
    [accepted] = buyer.take()
    order_id = int(accepted[37])
    state = harness.core.exchange.order_state(order_id)
    assert (state["visible_qty"], state["hidden_qty"]) == (10, 90)
    place(seller, "po", qty="5", price="190.00", side="2", fields=((18, "6"),))
    [post_only] = seller.take()
    assert (post_only[150], post_only[58], post_only[103]) == ("8", "post_only_would_cross", "11")
    place(seller, "stop", qty="5", price="185.00", side="2", order_type="4", fields=((99, "188.00"), (7928, "decrement")))
    [stop_accepted] = seller.take()
    assert stop_accepted[150] == "0"
    place(seller, "ioc", qty="3", price="190.00", side="2", fields=((59, "3"),))
    kinds = [(message[11], message[150]) for message in seller.take()]
    assert kinds == [("ioc", "0"), ("ioc", "F")]
    place(seller, "fok", qty="1000", price="190.00", side="2", fields=((59, "4"),))
    assert [message[150] for message in seller.take()] == ["0", "4"]
    place(seller, "bad-stp", qty="1", price="190.00", side="2", fields=((7928, "sometimes"),))
    [reject] = seller.take()
    assert (reject[35], reject[150], reject[11]) == ("8", "8", "bad-stp") and reject[58].startswith("malformed: STP")


def test_order_status_and_mass_cancel_are_answered():
    harness = Harness()
    initiator = harness.connect()
    initiator.logon()
    initiator.take()
    place(initiator, "s1", qty="7", price="189.50")
    place(initiator, "s2", qty="3", price="189.40", symbol="MSFT")
    accepted = initiator.take()
    initiator.send("H", [(37, accepted[0][37]), (11, "s1")])
    [status] = initiator.take()
    assert (status[150], status[39], status[151], status[44]) == ("I", "0", "7", "189.50")
    initiator.send("q", [(11, "mass"), (530, "1"), (55, "AAPL")])
    answers = initiator.take()
    assert [(message[35], message.get(150)) for message in answers] == [("8", "4"), ("r", None)]
    assert (answers[1][11], answers[1][533], answers[1][55]) == ("mass", "1", "AAPL")


def test_a_pending_fix_connection_evicted_by_the_admission_gate_is_closed():
    harness = Harness()
    pending_max = harness.config.gateway.pending_logons_max
    for index in range(pending_max):
        assert harness.gateway.opened(100 + index, f"10.0.0.{index}", harness.now_ns) is None
    assert harness.gateway.opened(999, "10.0.1.1", harness.now_ns) is None
    assert harness.gateway.closing == [100]  # the oldest pending one, of a busiest address
