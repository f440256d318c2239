"""RULES.md self-trade prevention: the five modes, decided by the incoming order."""

from __future__ import annotations

from scenario_helpers import Scenario, expect


def test_stp_none_lets_a_member_trade_with_itself():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100,"stp":"none"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":10,"maker_order_id":1,"taker_order_id":2,"maker_member":"A","taker_member":"A","maker_client_order_id":"a1","taker_client_order_id":"a2","aggressor":"buy"}
    ''')


def test_stp_defaults_to_cancel_newest_which_cancels_the_incoming_remainder():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":99}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":20,"price":100,"tif":"gtc"}')
    # The gtc remainder does not rest: it is cancelled with reason stp.
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":99,"qty":5,"maker_order_id":1,"taker_order_id":4}
        {"seq":5,"type":"cancelled","order_id":4,"reason":"stp","remaining_qty":15}
    ''')
    assert s.book_ids() == {"bids": [], "asks": [2, 3]}


def test_stp_cancel_newest_explicit_leaves_the_resting_order():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100,"stp":"cancel_newest"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":10}
    ''')
    assert s.depth()["asks"] == [(100, 10, 1)]


def test_incoming_ioc_remainder_cancelled_by_stp_gets_reason_stp_only():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100,"tif":"ioc"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":5}
    ''')


def test_incoming_market_remainder_cancelled_by_stp_gets_reason_stp_only():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"market","qty":5}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":5}
    ''')


def test_stp_cancel_oldest_cancels_the_resting_order_and_matching_continues():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"cancel_oldest"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":5}
        {"seq":4,"type":"trade","trade_id":1,"price":100,"qty":8,"maker_order_id":2,"taker_order_id":3,"maker_member":"B","taker_member":"A"}
    ''')
    assert s.depth() == {"bids": [], "asks": [(100, 2, 1)]}


def test_stp_cancel_oldest_remainder_rests_when_nothing_else_to_trade():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"cancel_oldest"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":5}
    ''')
    assert s.depth() == {"bids": [(100, 8, 1)], "asks": []}


def test_stp_cancel_oldest_cancels_a_resting_iceberg_whole():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100,"stp":"cancel_oldest"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":30}
    ''')


def test_stp_cancel_both_cancels_resting_first_then_the_incoming():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"cancel_both"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":5}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":8}
    ''')
    assert s.book_ids() == {"bids": [], "asks": [2]}


def test_stp_cancel_both_after_partial_fill_cancels_the_incoming_remainder():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":3,"price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"cancel_both"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"qty":3,"maker_order_id":1,"taker_order_id":3}
        {"seq":4,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":5}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":5}
    ''')
    assert s.depth() == {"bids": [], "asks": []}


def test_stp_decrement_resting_reduced_to_zero_is_cancelled_and_incoming_continues():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"decrement"}')
    # Both lose 5 with no trade; the resting order reaches 0, the incoming 3 go on.
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":0}
        {"seq":4,"type":"trade","trade_id":1,"price":100,"qty":3,"maker_order_id":2,"taker_order_id":3}
    ''')
    assert s.book_ids() == {"bids": [], "asks": [2]}
    assert s.depth()["asks"] == [(100, 7, 1)]


def test_stp_decrement_reduction_that_leaves_quantity_emits_no_event():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100,"stp":"decrement"}')
    # The resting order drops to 6 silently; the incoming order reaches 0 and is cancelled.
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":0}
    ''')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"]) for r in rows] == [(1, 6), (2, 10)]


def test_stp_decrement_equal_quantities_cancels_both_resting_first():
    # RULES.md: both reach zero, both are cancelled with reason stp and remaining 0; the
    # resting order's STP cancel comes "as it happens", the incoming order's own final
    # cancel after it (event order within a command).
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100,"stp":"decrement"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":0}
        {"seq":3,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":0}
    ''')
    assert s.depth() == {"bids": [], "asks": []}


def test_stp_decrement_surviving_incoming_rests_its_remainder():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"stp":"decrement"}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":0}
    ''')
    assert s.depth() == {"bids": [(100, 3, 1)], "asks": []}


def test_stp_decrement_with_resting_iceberg_takes_hidden_first_and_keeps_its_place():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":15,"price":100,"stp":"decrement"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":0}
    ''')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 10, 5), (2, 10, 0)]
    assert s.depth()["asks"] == [(100, 20, 2)]
    # Still first in the level.
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}')
    expect(events[1:], '{"seq":5,"type":"trade","trade_id":1,"qty":10,"maker_order_id":1}')


def test_stp_decrement_with_resting_iceberg_beyond_hidden_reduces_the_visible_tranche():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":25,"price":100,"stp":"decrement"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":0}
    ''')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 5, 0), (2, 10, 0)]


def test_stp_decrement_iceberg_reduced_to_zero_is_cancelled_with_remaining_zero():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":34,"price":100,"stp":"decrement"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":0}
        {"seq":4,"type":"trade","trade_id":1,"qty":4,"maker_order_id":2,"taker_order_id":3}
    ''')


def test_stp_applies_to_the_same_member_only_and_the_incoming_mode_decides():
    # The resting order says stp none; the incoming order's default cancel_newest decides.
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100,"stp":"none"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":100}
    ''')
    expect(s.since(3), '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"trade","trade_id":1,"qty":2,"maker_order_id":1,"taker_order_id":2,"maker_member":"A","taker_member":"B"}
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"stp","remaining_qty":2}
    ''')
