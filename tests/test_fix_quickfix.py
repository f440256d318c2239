"""End-to-end: QuickFIX (a FIX engine nobody on this project wrote) against real twinbook
processes on loopback, through the FIX 4.4 acceptor.

Scenarios of issue 22: a wrong password is refused; place, partial fill, replace, cancel
(and exact decimal prices: an off-tick price is rejected with the engine's reason); a
sequence gap either way is recovered by ResendRequest; the primary is SIGKILLed and the
initiator, configured with both addresses, continues its session on the promoted standby
and gets every execution report exactly once.
"""

from __future__ import annotations

import pytest

from tests.fault_helpers import wait_promoted, wait_standby_live
from tests.fix_helpers import QuickFixInitiator
from tests.node_helpers import TOKENS, NodeProcess, cluster, run  # noqa: F401 - cluster is a fixture

FIX = {"price_decimals": 2}


@pytest.fixture
def node(tmp_path):
    """A started primary with a FIX acceptor, SIGKILLed at teardown."""
    process = NodeProcess(tmp_path / "node", fix=FIX).start()
    yield process
    process.kill()


def logged_on(initiator: QuickFixInitiator, start: int = 0) -> int:
    return initiator.wait_for(lambda line: line == "EVENT LOGON", "logon", start=start)


def place(initiator: QuickFixInitiator, client_order_id: str, side: str, qty: int, price: str, **extra) -> None:
    initiator.send("D", t11=client_order_id, t55=extra.pop("symbol", "AAPL"), t54=side, t38=qty, t40="2",
                   t44=price, t59=extra.pop("tif", "1"), t60="20260101-00:00:00", **extra)


def test_a_wrong_password_is_refused_and_the_right_one_logs_on(node, tmp_path):
    wrong = right = None
    try:
        wrong = QuickFixInitiator(tmp_path / "wrong", [node.fix_address], "M1", "not-the-token").start()
        index = wrong.wait_for(lambda line: line.startswith("ADMIN ") and "35=5" in line, "a Logout")
        assert "bad_credentials" in wrong.lines[index]
        assert "EVENT LOGON" not in wrong.lines
        wrong.stop()
        right = QuickFixInitiator(tmp_path / "right", [node.fix_address], "M2", TOKENS["M2"]).start()
        logged_on(right)
    finally:
        for initiator in (wrong, right):
            if initiator is not None:
                initiator.stop()


def test_place_partial_fill_replace_cancel_with_exact_prices(node, tmp_path):
    buyer = QuickFixInitiator(tmp_path / "buyer", [node.fix_address], "M1", TOKENS["M1"]).start()
    seller = QuickFixInitiator(tmp_path / "seller", [node.fix_address], "M2", TOKENS["M2"]).start()
    try:
        logged_on(buyer)
        logged_on(seller)
        place(buyer, "b1", "1", 10, "190.05")
        new = buyer.wait_report(lambda m: m.get(11) == "b1" and m.get(150) == "0", "b1 accepted")
        assert (new[39], new[151], new[14], new[44]) == ("0", "10", "0", "190.05")
        order_id = new[37]
        place(seller, "s1", "2", 4, "190.05")
        fill = buyer.wait_report(lambda m: m.get(11) == "b1" and m.get(150) == "F", "b1 partially filled")
        assert (fill[39], fill[32], fill[31], fill[14], fill[151], fill[6]) == ("1", "4", "190.05", "4", "6", "190.05")
        seller_fill = seller.wait_report(lambda m: m.get(11) == "s1" and m.get(150) == "F", "s1 filled")
        assert (seller_fill[39], seller_fill[151]) == ("2", "0")
        # Replace: OrderQty is the new total (12 = 4 filled + 8 open), a new price.
        buyer.send("G", t11="b1r", t41="b1", t37=order_id, t55="AAPL", t54="1", t38=12, t40="2", t44="190.04",
                   t60="20260101-00:00:00")
        replaced = buyer.wait_report(lambda m: m.get(150) == "5", "b1 replaced")
        assert (replaced[11], replaced[41], replaced[38], replaced[151], replaced[14], replaced[44]) == (
            "b1r", "b1", "12", "8", "4", "190.04")
        buyer.send("F", t11="b1c", t41="b1", t37=order_id, t55="AAPL", t54="1", t60="20260101-00:00:00")
        cancelled = buyer.wait_report(lambda m: m.get(150) == "4", "b1 cancelled")
        assert (cancelled[11], cancelled[41], cancelled[39], cancelled[151], cancelled[14]) == ("b1c", "b1", "4", "0", "4")
        # Cancelling it again: OrderCancelReject with the engine's reason code.
        buyer.send("F", t11="b1c2", t41="b1", t37=order_id, t55="AAPL", t54="1", t60="20260101-00:00:00")
        reject = buyer.wait_report(lambda m: m.get(35) == "9", "cancel rejected")
        assert reject[434] == "1" and reject[58] == "unknown_order" and reject[102] == "1"
        # Prices are exact decimals: a digit finer than 0.01 is refused, never rounded;
        # an off-tick price (TSLA's tick is 5 units = 0.05) is the engine's invalid_price.
        place(buyer, "b2", "1", 1, "190.051")
        finer = buyer.wait_report(lambda m: m.get(11) == "b2", "b2 rejected")
        assert finer[150] == "8" and finer[58].startswith("invalid_price")
        place(buyer, "b3", "1", 1, "250.01", symbol="TSLA")
        off_tick = buyer.wait_report(lambda m: m.get(11) == "b3", "b3 rejected")
        assert off_tick[150] == "8" and off_tick[58] == "invalid_price" and off_tick[103] == "99"
        # An unsupported message type: BusinessMessageReject.
        buyer.send("R", t131="quote1", t55="AAPL")
        business = buyer.wait_report(lambda m: m.get(35) == "j", "business reject")
        assert business[372] == "R" and business[380] == "3"
    finally:
        buyer.stop()
        seller.stop()


def test_sequence_gaps_either_way_are_recovered_by_resend_request(node, tmp_path):
    initiator = QuickFixInitiator(tmp_path / "initiator", [node.fix_address], "M3", TOKENS["M3"]).start()
    try:
        logged_on(initiator)
        place(initiator, "g1", "1", 5, "189.00")
        first = initiator.wait_report(lambda m: m.get(11) == "g1", "g1 accepted")
        # Our side of the gap: the initiator skips 3 numbers; the acceptor asks for them
        # (ResendRequest), QuickFIX gap-fills, and the order after the gap is taken.
        mark = len(initiator.lines)
        initiator.command("SKIP 3")
        place(initiator, "g2", "1", 5, "189.01")
        initiator.wait_for(lambda line: line.startswith("ADMIN ") and "|35=2|" in line, "our ResendRequest",
                           start=mark)
        initiator.wait_report(lambda m: m.get(11) == "g2" and m.get(150) == "0", "g2 accepted after the gap")
        # Its side: it forgets the last 2 numbers it received and asks us; the acceptor
        # resends the report (PossDupFlag=Y, the same ExecID) and gap-fills session messages.
        mark = len(initiator.lines)
        initiator.command("FORGET 2")
        place(initiator, "g3", "1", 5, "189.02")
        resent = initiator.wait_report(lambda m: m.get(43) == "Y" and m.get(11) == "g2", "g2's report resent",
                                       start=mark)
        original = [m for m in initiator.app_messages("8") if m.get(11) == "g2" and m.get(43) != "Y"][0]
        assert resent[17] == original[17] and resent[34] == original[34] and 122 in resent
        initiator.wait_report(lambda m: m.get(11) == "g3" and m.get(150) == "0", "g3 accepted", start=mark)
        assert first[150] == "0"
        assert node.status()["fix"]["logged_on"] == 1
    finally:
        initiator.stop()


def test_primary_killed_the_initiator_continues_on_the_promoted_standby_exactly_once(cluster, tmp_path):
    primary = cluster.node("a", fix=FIX).start_primary()
    standby = cluster.node("b", fix=FIX).start_standby(primary.replication)
    run(wait_standby_live(primary))
    initiator = QuickFixInitiator(tmp_path / "initiator", [primary.fix_address, standby.fix_address],
                                  "M1", TOKENS["M1"]).start()
    seller = QuickFixInitiator(tmp_path / "seller", [primary.fix_address, standby.fix_address],
                               "M2", TOKENS["M2"]).start()
    try:
        logged_on(initiator)
        logged_on(seller)
        for index in range(5):
            place(initiator, f"k{index}", "1", 10, f"18{index}.00")
            initiator.wait_report(lambda m, index=index: m.get(11) == f"k{index}", f"k{index} accepted")
        place(seller, "sx", "2", 3, "184.00")  # fills k4 partly: reports on both sessions
        initiator.wait_report(lambda m: m.get(11) == "k4" and m.get(150) == "F", "k4 partly filled")
        # An order in flight as the primary dies: journaled or not, it must be answered once.
        place(initiator, "k5", "1", 10, "185.00")
        primary.kill()
        mark = len(initiator.lines)
        standby.admin({"command": "promote", "force": True})
        run(wait_promoted(standby))
        # QuickFIX reports the dropped connection as a logout (at or after `mark`, as it
        # notices the kill); what counts is that nothing of the sort follows its logon
        # to the promoted standby.
        relogon = logged_on(initiator, start=mark)
        place(initiator, "k6", "1", 10, "186.00")
        initiator.wait_report(lambda m: m.get(11) == "k6" and m.get(150) == "0", "k6 accepted on the new primary")
        initiator.wait_report(lambda m: m.get(11) == "k5" and m.get(150) == "0", "k5 answered")
        place(seller, "sy", "2", 2, "186.00")
        initiator.wait_report(lambda m: m.get(11) == "k6" and m.get(150) == "F", "k6 filled on the new primary")
        # Delivered to the application: QuickFIX drops a number it already has, so a
        # resent report it had reaches it only if it had not (PossDup or not).
        delivered = initiator.app_messages("8")
        execution_ids = [m[17] for m in delivered]
        assert len(execution_ids) == len(set(execution_ids)), f"a report arrived twice: {execution_ids}"
        acks = sorted(m[11] for m in delivered if m[150] == "0")
        assert acks == [f"k{index}" for index in range(7)]
        fills = [(m[11], m[32]) for m in delivered if m[150] == "F"]
        assert fills == [("k4", "3"), ("k6", "2")]
        # QuickFIX took the new primary's numbers as the continuation of its session: no
        # logout since, nothing it rejected or found too low.
        assert "EVENT LOGOUT" not in initiator.lines[relogon:]
        events = initiator.event_log()
        assert "Rejected" not in events and "too low" not in events, events
    finally:
        initiator.stop()
        seller.stop()



def test_a_fill_numbered_while_the_firm_was_away_is_resent_by_the_promoted_standby(cluster, tmp_path):
    """The old primary numbered the fill report but never sent it (the firm was logged
    out); the standby, promoted after a SIGKILL, regenerates it from the journal and
    resends it (PossDupFlag=Y) when QuickFIX asks."""
    primary = cluster.node("a", fix=FIX).start_primary()
    standby = cluster.node("b", fix=FIX).start_standby(primary.replication)
    run(wait_standby_live(primary))
    addresses = [primary.fix_address, standby.fix_address]
    initiator = QuickFixInitiator(tmp_path / "initiator", addresses, "M1", TOKENS["M1"]).start()
    seller = QuickFixInitiator(tmp_path / "seller", addresses, "M2", TOKENS["M2"]).start()
    try:
        logged_on(initiator)
        logged_on(seller)
        place(initiator, "away1", "1", 10, "190.00")
        accepted = initiator.wait_report(lambda m: m.get(11) == "away1", "away1 accepted")
        initiator.stop()  # logs out; M1 keeps its orders on disconnect
        place(seller, "hit1", "2", 4, "190.00")
        seller.wait_report(lambda m: m.get(11) == "hit1" and m.get(150) == "F", "hit1 filled")
        primary.kill()
        standby.admin({"command": "promote", "force": True})
        run(wait_promoted(standby))
        initiator = QuickFixInitiator(tmp_path / "initiator", [standby.fix_address], "M1", TOKENS["M1"]).start()
        logged_on(initiator)
        fill = initiator.wait_report(lambda m: m.get(11) == "away1" and m.get(150) == "F", "away1's fill resent")
        assert (fill[43], fill[32], fill[14], fill[151], fill[37]) == ("Y", "4", "4", "6", accepted[37])
        assert int(fill[34]) > int(accepted[34])
        assert [m[17] for m in initiator.app_messages("8")].count(fill[17]) == 1
    finally:
        initiator.stop()
        seller.stop()
