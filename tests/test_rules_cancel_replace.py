"""RULES.md cancel, replace and mass_cancel."""

from __future__ import annotations

from scenario_helpers import Scenario, expect

SETUP = '''
    {"type":"add_instrument","symbol":"X"}
    {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
    {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":90}
'''


# ---------------------------------------------------------------- cancel


def test_cancel_by_order_id_cancels_the_open_quantity_with_reason_user():
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"A","order_id":1}')
    expect(events, '{"seq":5,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}')
    assert s.book_ids() == {"bids": [3], "asks": [2]}


def test_cancel_of_a_partially_filled_order_reports_its_open_quantity():
    s = Scenario(SETUP)
    s.run('{"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}')
    events = s.run('{"type":"cancel","member":"A","order_id":1}')
    expect(events, '{"seq":6,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":6}')


def test_cancel_by_client_order_id_of_the_same_member():
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"A","client_order_id":"a2"}')
    expect(events, '{"seq":5,"type":"cancelled","order_id":2,"reason":"user","remaining_qty":10}')
    assert s.book_ids() == {"bids": [3], "asks": [1]}


def test_cancel_with_both_order_id_and_client_order_id_uses_order_id():
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"A","order_id":2,"client_order_id":"a1"}')
    expect(events, '{"seq":5,"type":"cancelled","order_id":2,"reason":"user","remaining_qty":10}')
    assert s.book_ids()["asks"] == [1]


def test_cancel_with_unknown_order_id_and_valid_client_order_id_is_unknown_order():
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"A","order_id":99,"client_order_id":"a1"}')
    expect(events, '{"seq":5,"type":"rejected","member":"A","client_order_id":"a1","reason":"unknown_order"}')
    assert s.book_ids()["asks"] == [1, 2]


def test_cancel_of_unknown_order_is_rejected():
    s = Scenario(SETUP)
    events = s.run('''
        {"type":"cancel","member":"A","order_id":99}
        {"type":"cancel","member":"A","order_id":0}
        {"type":"cancel","member":"A","order_id":-1}
        {"type":"cancel","member":"A","client_order_id":"nope"}
    ''')
    expect(events, '''
        {"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":6,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":8,"type":"rejected","member":"A","client_order_id":"nope","reason":"unknown_order"}
    ''')
    assert s.book_ids() == {"bids": [3], "asks": [1, 2]}


def test_cancel_of_another_members_order_is_not_owner_and_leaves_the_book():
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"B","order_id":1}')
    expect(events, '{"seq":5,"type":"rejected","member":"B","client_order_id":null,"reason":"not_owner"}')
    assert s.book_ids() == {"bids": [3], "asks": [1, 2]}
    assert s.depth()["asks"] == [(100, 10, 1), (101, 10, 1)]


def test_cancel_by_client_order_id_only_looks_at_the_members_own_orders():
    # "by client_order_id (of the same member)": B has no order a1, so it is unknown.
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"B","client_order_id":"a1"}')
    expect(events, '{"seq":5,"type":"rejected","member":"B","client_order_id":"a1","reason":"unknown_order"}')
    assert s.book_ids()["asks"] == [1, 2]


def test_cancel_of_another_members_closed_order_is_unknown_order():
    s = Scenario(SETUP)
    s.run('{"type":"cancel","member":"A","order_id":1}')
    events = s.run('{"type":"cancel","member":"B","order_id":1}')
    expect(events, '{"seq":6,"type":"rejected","member":"B","client_order_id":null,"reason":"unknown_order"}')


def test_cancel_of_an_already_cancelled_order_is_unknown_order():
    s = Scenario(SETUP)
    events = s.run('''
        {"type":"cancel","member":"A","order_id":1}
        {"type":"cancel","member":"A","order_id":1}
        {"type":"cancel","member":"A","client_order_id":"a1"}
    ''')
    expect(events, '''
        {"seq":5,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}
        {"seq":6,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":7,"type":"rejected","member":"A","client_order_id":"a1","reason":"unknown_order"}
    ''')


def test_cancel_of_a_filled_order_is_unknown_order():
    s = Scenario(SETUP)
    s.run('{"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}')
    events = s.run('{"type":"cancel","member":"A","order_id":1}')
    expect(events, '{"seq":6,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}')
    # An order that never rested (ioc, market) is closed too.
    events = s.run('''
        {"type":"place","member":"C","client_order_id":"c2","symbol":"X","side":"buy","order_type":"market","qty":1}
        {"type":"cancel","member":"C","order_id":5}
    ''')
    expect(events[-1:], '{"seq":8,"type":"rejected","member":"C","client_order_id":null,"reason":"unknown_order"}')


def test_cancel_with_neither_order_id_nor_client_order_id_is_malformed():
    # RULES.md is silent; the implementation rejects it as malformed (a field is missing).
    s = Scenario(SETUP)
    events = s.run('{"type":"cancel","member":"A"}')
    expect(events, '{"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"malformed"}')
    assert s.book_ids() == {"bids": [3], "asks": [1, 2]}


# ---------------------------------------------------------------- replace


def test_replace_quantity_down_at_same_price_keeps_time_priority():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":6}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":6,"price":100,"priority_kept":true}')
    assert s.book_ids()["asks"] == [1, 2]
    assert s.depth()["asks"] == [(100, 16, 2)]
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":6,"price":100}')
    expect(events[1:], '{"seq":5,"type":"trade","trade_id":1,"qty":6,"maker_order_id":1}')


def test_replace_with_same_quantity_and_price_is_accepted_with_priority_kept():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":10,"price":100}
        {"type":"replace","member":"A","order_id":1,"qty":10}
    ''')
    expect(events, '''
        {"seq":4,"type":"replaced","order_id":1,"qty":10,"price":100,"priority_kept":true}
        {"seq":5,"type":"replaced","order_id":1,"qty":10,"price":100,"priority_kept":true}
    ''')
    assert s.book_ids()["asks"] == [1, 2]


def test_replace_price_change_loses_priority_and_goes_to_back_of_new_level():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":100}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":10,"price":100,"priority_kept":false}')
    assert s.book_ids()["asks"] == [2, 1]
    assert s.depth()["asks"] == [(100, 20, 2)]


def test_replace_price_change_with_lower_quantity_still_loses_priority():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":98}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":5,"price":98}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":5,"price":98,"priority_kept":false}')
    assert s.book_ids()["bids"] == [2, 1]


def test_replace_quantity_up_loses_priority():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":15}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":15,"price":100,"priority_kept":false}')
    assert s.book_ids()["asks"] == [2, 1]
    assert s.depth()["asks"] == [(100, 25, 2)]


def test_replace_quantity_is_the_new_open_quantity_of_a_partly_filled_order():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":6}')
    expect(events, '{"seq":5,"type":"replaced","order_id":1,"qty":6,"price":100,"priority_kept":true}')
    assert s.book_ids()["asks"] == [1, 2]
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":8}')
    expect(events, '{"seq":6,"type":"replaced","order_id":1,"qty":8,"price":100,"priority_kept":false}')
    assert s.book_ids()["asks"] == [2, 1]
    assert s.depth()["asks"] == [(100, 18, 2)]


def test_crossing_replace_emits_replaced_then_trades_as_taker_with_its_old_id():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":101}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":100}')
    expect(events, '''
        {"seq":5,"type":"replaced","order_id":1,"qty":10,"price":100,"priority_kept":false}
        {"seq":5,"type":"trade","trade_id":1,"symbol":"X","price":100,"qty":5,"maker_order_id":2,"taker_order_id":1,"maker_member":"B","taker_member":"A","maker_client_order_id":"b1","taker_client_order_id":"a1","aggressor":"buy"}
    ''')
    # The remainder rests at the new price, still as order 1.
    assert s.depth() == {"bids": [(100, 5, 1)], "asks": [(101, 5, 1)]}
    assert s.book_ids()["bids"] == [1]


def test_crossing_replace_that_fills_closes_the_order():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":101}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":5,"price":100}')
    expect(events, '''
        {"seq":4,"type":"replaced","order_id":1,"qty":5,"price":100,"priority_kept":false}
        {"seq":4,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":2,"taker_order_id":1,"aggressor":"sell"}
    ''')
    assert s.order_state(1)["status"] == "closed"
    expect(s.run('{"type":"cancel","member":"A","order_id":1}'), '{"seq":5,"type":"rejected","reason":"unknown_order"}')


def test_crossing_replace_triggers_stops_after_it_finishes():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":105}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":2,"stop_price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":100}')
    expect(events, '''
        {"seq":6,"type":"replaced","order_id":1,"qty":10,"price":100,"priority_kept":false}
        {"seq":6,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":2,"taker_order_id":1}
        {"seq":6,"type":"triggered","order_id":4}
        {"seq":6,"type":"trade","trade_id":2,"price":105,"qty":2,"maker_order_id":3,"taker_order_id":4}
    ''')


def test_replace_to_quantity_zero_is_invalid_replace():
    s = Scenario(SETUP)
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":0}')
    expect(events, '{"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_replace"}')
    assert s.depth()["asks"] == [(100, 10, 1), (101, 10, 1)]


def test_replace_carrying_display_qty_is_invalid_replace():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100}
    ''')
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":30,"display_qty":5}
        {"type":"replace","member":"A","order_id":2,"qty":30,"display_qty":5}
    ''')
    expect(events, '''
        {"seq":4,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_replace"}
        {"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_replace"}
    ''')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 10, 20), (2, 30, 0)]


def test_replace_of_unknown_or_closed_order_is_unknown_order():
    s = Scenario(SETUP)
    events = s.run('''
        {"type":"replace","member":"A","order_id":99,"qty":5}
        {"type":"cancel","member":"A","order_id":1}
        {"type":"replace","member":"A","order_id":1,"qty":5}
        {"type":"replace","member":"B","order_id":1,"qty":5}
    ''')
    expect(events, '''
        {"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":6,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":8,"type":"rejected","member":"B","client_order_id":null,"reason":"unknown_order"}
    ''')


def test_replace_of_another_members_order_is_not_owner():
    s = Scenario(SETUP)
    events = s.run('{"type":"replace","member":"B","order_id":1,"qty":5}')
    expect(events, '{"seq":5,"type":"rejected","member":"B","client_order_id":null,"reason":"not_owner"}')
    assert s.depth()["asks"] == [(100, 10, 1), (101, 10, 1)]


def test_replace_of_post_only_order_to_a_crossing_price_is_rejected():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99,"post_only":true}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":100}')
    expect(events, '{"seq":4,"type":"rejected","member":"A","client_order_id":null,"reason":"post_only_would_cross"}')
    assert s.depth() == {"bids": [(99, 10, 1)], "asks": [(100, 10, 1)]}
    # A non-crossing price change is fine.
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":98}')
    expect(events, '{"seq":5,"type":"replaced","order_id":1,"qty":10,"price":98,"priority_kept":false}')


def test_replace_quantity_must_be_a_valid_lot_quantity():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","lot_size":10,"tick_size":5}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100}
    ''')
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":15}
        {"type":"replace","member":"A","order_id":1,"qty":-10}
        {"type":"replace","member":"A","order_id":1,"qty":1000000000010}
        {"type":"replace","member":"A","order_id":1,"qty":50,"price":102}
        {"type":"replace","member":"A","order_id":1,"qty":50,"price":0}
        {"type":"replace","member":"A","order_id":1,"qty":50,"price":105}
    ''')
    expect(events, '''
        {"seq":3,"type":"rejected","reason":"invalid_quantity"}
        {"seq":4,"type":"rejected","reason":"invalid_quantity"}
        {"seq":5,"type":"rejected","reason":"invalid_quantity"}
        {"seq":6,"type":"rejected","reason":"invalid_price"}
        {"seq":7,"type":"rejected","reason":"invalid_price"}
        {"seq":8,"type":"replaced","order_id":1,"qty":50,"price":105,"priority_kept":false}
    ''')


def test_replace_without_order_id_is_malformed():
    s = Scenario(SETUP)
    events = s.run('{"type":"replace","member":"A","qty":5}')
    expect(events, '{"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"malformed"}')


# ---------------------------------------------------------------- mass_cancel


def test_mass_cancel_cancels_all_the_members_open_orders_in_ascending_order_id():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":105}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":106}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"Y","side":"buy","order_type":"limit","qty":7,"price":50}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"stop","qty":3,"stop_price":200}
        {"type":"place","member":"A","client_order_id":"a5","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":90,"display_qty":4}
    ''')
    events = s.run('{"type":"mass_cancel","member":"A"}')
    expect(events, '''
        {"seq":9,"type":"cancelled","order_id":1,"reason":"mass_cancel","remaining_qty":10}
        {"seq":9,"type":"cancelled","order_id":3,"reason":"mass_cancel","remaining_qty":7}
        {"seq":9,"type":"cancelled","order_id":4,"reason":"mass_cancel","remaining_qty":10}
        {"seq":9,"type":"cancelled","order_id":5,"reason":"mass_cancel","remaining_qty":3}
        {"seq":9,"type":"cancelled","order_id":6,"reason":"mass_cancel","remaining_qty":10}
    ''')
    assert s.book_ids("X") == {"bids": [], "asks": [2]}
    assert s.book_ids("Y") == {"bids": [], "asks": []}
    assert s.stops("X") == []


def test_mass_cancel_with_symbol_cancels_only_that_instrument():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"Y","side":"sell","order_type":"limit","qty":10,"price":105}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":105}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"stop_limit","qty":4,"stop_price":50,"price":50}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"mass_cancel","member":"A","symbol":"X"}')
    expect(events, '''
        {"seq":7,"type":"cancelled","order_id":2,"reason":"mass_cancel","remaining_qty":10}
        {"seq":7,"type":"cancelled","order_id":3,"reason":"mass_cancel","remaining_qty":4}
    ''')
    assert s.book_ids("Y")["asks"] == [1]
    assert s.book_ids("X")["bids"] == [4]


def test_mass_cancel_naming_an_unknown_symbol_is_rejected_unknown_symbol():
    s = Scenario(SETUP)
    events = s.run('{"type":"mass_cancel","member":"A","symbol":"NOPE"}')
    expect(events, '{"seq":5,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_symbol"}')
    assert s.book_ids()["asks"] == [1, 2]


def test_mass_cancel_emits_no_success_event_of_its_own():
    s = Scenario(SETUP)
    # A member with nothing open: no event at all.
    assert s.run('{"type":"mass_cancel","member":"Z"}') == []
    # Only the cancels of the orders, nothing for the mass cancel itself.
    events = s.run('{"type":"mass_cancel","member":"B","symbol":"X"}')
    expect(events, '{"seq":6,"type":"cancelled","order_id":3,"reason":"mass_cancel","remaining_qty":10}')
    assert s.run('{"type":"mass_cancel","member":"B"}') == []
