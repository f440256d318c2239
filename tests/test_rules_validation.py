"""RULES.md numbers and identities, reject precedence, and malformed input."""

from __future__ import annotations

import json

import pytest

from scenario_helpers import Scenario, expect

# ---------------------------------------------------------------- numbers


def test_price_must_be_a_multiple_of_tick_size():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":5}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":102}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":105}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"stop","qty":1,"stop_price":97}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"stop_limit","qty":1,"stop_price":95,"price":91}
        {"type":"place","member":"A","client_order_id":"a5","symbol":"X","side":"sell","order_type":"stop_limit","qty":1,"stop_price":95,"price":90}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_price"}
        {"seq":3,"type":"accepted","order_id":1,"price":105}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_price"}
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a4","reason":"invalid_price"}
        {"seq":6,"type":"accepted","order_id":2,"price":90}
    ''')


def test_quantity_must_be_a_multiple_of_lot_size():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","lot_size":10}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":15,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":20,"price":100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"market","qty":5}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"stop","qty":25,"stop_price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_quantity"}
        {"seq":3,"type":"accepted","order_id":1,"qty":20}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_quantity"}
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a4","reason":"invalid_quantity"}
    ''')


@pytest.mark.parametrize("qty", [0, -1, -10, 1000000000001, 100000000000000000000000000000])
def test_quantity_must_be_positive_and_at_most_10_to_the_12(qty):
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":%d,"price":100}
    ''' % qty)
    expect(s.events, '{"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_quantity"}')


@pytest.mark.parametrize("price", [0, -1, -100, 1000000000001, 100000000000000000000000000000])
def test_price_must_be_positive_and_at_most_10_to_the_12(price):
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":%d}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"stop","qty":1,"stop_price":%d}
    ''' % (price, price))
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_price"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_price"}
    ''')


def test_price_and_quantity_of_exactly_10_to_the_12_are_accepted():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1000000000000,"price":1000000000000}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"qty":1000000000000,"price":1000000000000}')


def test_limit_or_stop_limit_without_price_is_invalid_price_not_malformed():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"stop_limit","qty":1,"stop_price":100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":null}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_price"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_price"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_price"}
    ''')


def test_stop_or_stop_limit_without_stop_price_is_invalid_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"stop","qty":1}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"stop_limit","qty":1,"price":100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"stop","qty":1,"stop_price":null,"price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_price"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_price"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_price"}
    ''')


@pytest.mark.parametrize(
    "display_qty, why",
    [(0, "zero"), (-10, "negative"), (100, "equal to qty"), (110, "above qty"), (15, "not a lot multiple")],
)
def test_display_qty_must_be_positive_lot_multiple_and_below_qty(display_qty, why):
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","lot_size":10}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":%d}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"stop_limit","qty":100,"price":100,"stop_price":100,"display_qty":%d}
    ''' % (display_qty, display_qty))
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_quantity"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_quantity"}
    ''')


def test_valid_display_qty_is_accepted():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","lot_size":10}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":90}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"qty":100}')
    assert s.depth()["asks"] == [(100, 90, 1)]


def test_fields_that_mean_nothing_for_the_order_type_are_ignored():
    # A market order's price and display_qty, a limit order's stop_price: type-checked
    # only, then ignored (even values that would be invalid where they mean something).
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":5}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"stop_price":7}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"market","qty":4,"price":-3,"display_qty":0}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"stop","qty":1,"stop_price":200,"price":7}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1,"price":100}
        {"seq":3,"type":"accepted","order_id":2,"price":null}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":4}
        {"seq":4,"type":"accepted","order_id":3,"price":null}
    ''')


def test_fields_that_mean_nothing_for_the_order_type_are_still_type_checked():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"market","qty":4,"price":"abc"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"stop_price":"x"}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"display_qty":1.5}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"B","client_order_id":"b1","reason":"malformed"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"malformed"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a2","reason":"malformed"}
    ''')


# ---------------------------------------------------------------- identities


def test_order_ids_and_trade_ids_count_1_2_3_across_the_whole_exchange():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"NOPE","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"Y","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"Y","side":"buy","order_type":"limit","qty":3,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}
        {"type":"place","member":"B","client_order_id":"b3","symbol":"Y","side":"buy","order_type":"market","qty":2}
    ''')
    expect(s.events, '''
        {"seq":3,"type":"accepted","order_id":1,"symbol":"X"}
        {"seq":4,"type":"rejected","client_order_id":"a2","reason":"unknown_symbol"}
        {"seq":5,"type":"accepted","order_id":2,"symbol":"Y"}
        {"seq":6,"type":"accepted","order_id":3,"symbol":"Y"}
        {"seq":6,"type":"trade","trade_id":1,"symbol":"Y","maker_order_id":2,"taker_order_id":3}
        {"seq":7,"type":"accepted","order_id":4,"symbol":"X"}
        {"seq":7,"type":"trade","trade_id":2,"symbol":"X","maker_order_id":1,"taker_order_id":4}
        {"seq":8,"type":"accepted","order_id":5,"symbol":"Y"}
        {"seq":8,"type":"trade","trade_id":3,"symbol":"Y","maker_order_id":2,"taker_order_id":5}
    ''')


def test_rejected_commands_keep_their_sequence_number():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"cancel","member":"A","order_id":5}
        not json
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":0,"price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","reason":"unknown_order"}
        {"seq":3,"type":"rejected","reason":"malformed"}
        {"seq":4,"type":"rejected","reason":"invalid_quantity"}
        {"seq":5,"type":"accepted","order_id":1}
    ''')
    assert s.exchange.last_sequence == 5


def test_duplicate_client_order_id_is_rejected_naming_the_existing_order():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"place","member":"A","client_order_id":"a0","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
    ''')
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":50}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"Y","side":"buy","order_type":"market","qty":1}
    ''')
    expect(events, '''
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a1","reason":"duplicate_client_order_id","order_id":2}
        {"seq":6,"type":"rejected","member":"A","client_order_id":"a1","reason":"duplicate_client_order_id","order_id":2}
    ''')
    assert s.depth("X") == {"bids": [], "asks": [(100, 10, 1), (101, 10, 1)]}


def test_client_order_id_is_unique_for_all_time_even_after_the_order_closed():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"cancel","member":"A","order_id":1}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"market","qty":10}
        {"type":"end_of_day"}
    ''')
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    expect(events, '''
        {"seq":6,"type":"rejected","member":"A","client_order_id":"a1","reason":"duplicate_client_order_id","order_id":1}
        {"seq":7,"type":"rejected","member":"A","client_order_id":"a2","reason":"duplicate_client_order_id","order_id":2}
    ''')


def test_client_order_id_is_unique_per_member():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1,"member":"A","client_order_id":"c1"}
        {"seq":3,"type":"accepted","order_id":2,"member":"B","client_order_id":"c1"}
    ''')


def test_only_accepted_orders_use_up_their_client_order_id():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":100}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"NOPE","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":0,"price":100}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":0}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":500}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":"10","price":100}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","client_order_id":"c1","reason":"unknown_symbol"}
        {"seq":3,"type":"rejected","client_order_id":"c1","reason":"invalid_quantity"}
        {"seq":4,"type":"rejected","client_order_id":"c1","reason":"invalid_price"}
        {"seq":5,"type":"rejected","client_order_id":"c1","reason":"price_band"}
        {"seq":6,"type":"rejected","client_order_id":"c1","reason":"invalid_price"}
        {"seq":7,"type":"rejected","client_order_id":"c1","reason":"malformed"}
        {"seq":8,"type":"accepted","order_id":1,"client_order_id":"c1"}
    ''')


def test_an_order_rejected_for_post_only_or_halt_does_not_use_its_client_order_id():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"post_only":true}
        {"type":"halt","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
        {"type":"resume","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":3,"type":"rejected","client_order_id":"c1","reason":"post_only_would_cross"}
        {"seq":5,"type":"rejected","client_order_id":"c1","reason":"halted"}
        {"seq":7,"type":"accepted","order_id":2,"client_order_id":"c1"}
    ''')


# ---------------------------------------------------------------- reject precedence: place

PRECEDENCE_SETUP = '''
    {"type":"add_instrument","symbol":"X","tick_size":5,"lot_size":10,"band_bps":100,"reference_price":10000}
    {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":10000}
'''


def test_place_precedence_malformed_before_duplicate_client_order_id():
    s = Scenario(PRECEDENCE_SETUP)
    events = s.run('{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"hold","order_type":"limit","qty":10,"price":10000}')
    expect(events, '{"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"malformed"}')
    assert "order_id" not in events[0]


def test_place_precedence_duplicate_client_order_id_before_unknown_symbol():
    s = Scenario(PRECEDENCE_SETUP)
    events = s.run('{"type":"place","member":"A","client_order_id":"a1","symbol":"NOPE","side":"buy","order_type":"limit","qty":10,"price":10000}')
    expect(events, '{"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"duplicate_client_order_id","order_id":1}')


def test_place_precedence_unknown_symbol_before_invalid_quantity():
    s = Scenario(PRECEDENCE_SETUP)
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"NOPE","side":"buy","order_type":"limit","qty":0,"price":0}')
    expect(events, '{"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"unknown_symbol"}')


def test_place_precedence_invalid_quantity_before_invalid_price():
    s = Scenario(PRECEDENCE_SETUP)
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":15,"price":10001}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"limit","qty":100,"display_qty":100,"price":10001}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"stop","qty":-10,"stop_price":1}
    ''')
    expect(events, '''
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_quantity"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_quantity"}
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a4","reason":"invalid_quantity"}
    ''')


def test_place_precedence_invalid_price_before_halted():
    s = Scenario(PRECEDENCE_SETUP + '{"type":"halt","symbol":"X"}')
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":10001}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"price":10000,"stop_price":3}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"limit","qty":10}
    ''')
    expect(events, '''
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a2","reason":"invalid_price"}
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a3","reason":"invalid_price"}
        {"seq":6,"type":"rejected","member":"A","client_order_id":"a4","reason":"invalid_price"}
    ''')


def test_place_precedence_halted_before_price_band():
    s = Scenario(PRECEDENCE_SETUP + '{"type":"halt","symbol":"X"}')
    events = s.run('{"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":20000}')
    expect(events, '{"seq":4,"type":"rejected","member":"A","client_order_id":"a2","reason":"halted"}')


def test_place_precedence_price_band_before_post_only_would_cross():
    s = Scenario(PRECEDENCE_SETUP)
    # Buy post_only at 10200 crosses the ask at 10000 and is outside [9900, 10100].
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":10200,"post_only":true}')
    expect(events, '{"seq":3,"type":"rejected","member":"B","client_order_id":"b1","reason":"price_band"}')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":10100,"post_only":true}')
    expect(events, '{"seq":4,"type":"rejected","member":"B","client_order_id":"b1","reason":"post_only_would_cross"}')


# ---------------------------------------------------------------- reject precedence: replace

REPLACE_SETUP = '''
    {"type":"add_instrument","symbol":"X","tick_size":5,"lot_size":10,"band_bps":100,"reference_price":10000}
    {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":10050,"post_only":true}
    {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":10000}
    {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"stop","qty":10,"stop_price":9000}
    {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":9950}
    {"type":"cancel","member":"B","order_id":4}
'''


def test_replace_precedence_malformed_before_unknown_order():
    s = Scenario(REPLACE_SETUP)
    events = s.run('''
        {"type":"replace","member":"A","order_id":"99","qty":10}
        {"type":"replace","member":"A","order_id":99,"qty":10.0}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"A","reason":"malformed"}
        {"seq":8,"type":"rejected","member":"A","reason":"malformed"}
    ''')


def test_replace_precedence_unknown_order_before_not_owner():
    # A closed order of another member is unknown_order, not not_owner.
    s = Scenario(REPLACE_SETUP)
    events = s.run('{"type":"replace","member":"A","order_id":4,"qty":0,"display_qty":5}')
    expect(events, '{"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}')


def test_replace_precedence_not_owner_before_invalid_replace():
    s = Scenario(REPLACE_SETUP)
    events = s.run('''
        {"type":"replace","member":"B","order_id":1,"qty":0}
        {"type":"replace","member":"B","order_id":3,"qty":10}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"B","client_order_id":null,"reason":"not_owner"}
        {"seq":8,"type":"rejected","member":"B","client_order_id":null,"reason":"not_owner"}
    ''')


def test_replace_precedence_invalid_replace_before_invalid_quantity():
    s = Scenario(REPLACE_SETUP)
    events = s.run('''
        {"type":"replace","member":"A","order_id":3,"qty":15}
        {"type":"replace","member":"A","order_id":1,"qty":15,"display_qty":5}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_replace"}
        {"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_replace"}
    ''')


def test_replace_precedence_invalid_quantity_before_invalid_price():
    s = Scenario(REPLACE_SETUP)
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":15,"price":10001}')
    expect(events, '{"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_quantity"}')


def test_replace_precedence_invalid_price_before_halted():
    s = Scenario(REPLACE_SETUP + '{"type":"halt","symbol":"X"}')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":10001}')
    expect(events, '{"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"invalid_price"}')


def test_replace_precedence_halted_before_price_band():
    s = Scenario(REPLACE_SETUP + '{"type":"halt","symbol":"X"}')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":10,"price":20000}')
    expect(events, '{"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"halted"}')


def test_replace_precedence_price_band_before_post_only_would_cross():
    s = Scenario(REPLACE_SETUP)
    # Post-only sell moved to 9800: crosses the bid at 10000 and is below 9900.
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":10,"price":9800}
        {"type":"replace","member":"A","order_id":1,"qty":10,"price":10000}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"price_band"}
        {"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"post_only_would_cross"}
    ''')
    assert s.depth() == {"bids": [(10000, 10, 1)], "asks": [(10050, 10, 1)]}


# ---------------------------------------------------------------- reject precedence: cancel


def test_cancel_precedence_malformed_before_unknown_order():
    s = Scenario(REPLACE_SETUP)
    events = s.run('''
        {"type":"cancel","member":"A","order_id":"99"}
        {"type":"cancel","member":"A","order_id":1.0}
        {"type":"cancel","member":"A","client_order_id":7}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"A","reason":"malformed"}
        {"seq":8,"type":"rejected","member":"A","reason":"malformed"}
        {"seq":9,"type":"rejected","member":"A","client_order_id":null,"reason":"malformed"}
    ''')
    assert s.book_ids()["asks"] == [1]


def test_cancel_precedence_unknown_order_before_not_owner():
    s = Scenario(REPLACE_SETUP)
    events = s.run('''
        {"type":"cancel","member":"A","order_id":4}
        {"type":"cancel","member":"A","order_id":2}
    ''')
    expect(events, '''
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"unknown_order"}
        {"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"not_owner"}
    ''')


# ---------------------------------------------------------------- malformed input


def _one(line: str) -> dict:
    """The single event of one line applied after add_instrument X."""
    s = Scenario(['{"type":"add_instrument","symbol":"X"}', line])
    assert len(s.events) == 1, s.events
    return s.events[0]


def test_blank_line_is_malformed_and_consumes_its_sequence_number():
    s = Scenario([
        '{"type":"add_instrument","symbol":"X"}',
        '',
        '   ',
        '{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":100}',
    ])
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"malformed"}
        {"seq":3,"type":"rejected","member":null,"client_order_id":null,"reason":"malformed"}
        {"seq":4,"type":"accepted","order_id":1}
    ''')


@pytest.mark.parametrize("line", [
    'hello',
    '{"type":"halt","symbol":"X"',
    "{'type':'halt','symbol':'X'}",
    '{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":NaN,"price":100}',
    '{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":Infinity}',
    '{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":-Infinity}',
    '{"type":"add_instrument","symbol":"Y","reference_price":NaN}',
])
def test_non_json_including_nan_and_infinity_is_malformed(line):
    event = _one(line)
    expect([event], '{"seq":2,"type":"rejected","reason":"malformed"}')


@pytest.mark.parametrize("line", ['[]', '[{"type":"end_of_day"}]', '"end_of_day"', '42', 'null', 'true'])
def test_non_object_is_malformed(line):
    expect([_one(line)], '{"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"malformed"}')


@pytest.mark.parametrize("line", [
    '{"symbol":"X"}',
    '{"type":null,"symbol":"X"}',
    '{"type":5}',
    '{"type":"modify","member":"A","order_id":1}',
    '{"type":"PLACE","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":100}',
    '{"type":"","symbol":"X"}',
])
def test_missing_or_unknown_type_is_malformed(line):
    expect([_one(line)], '{"seq":2,"type":"rejected","reason":"malformed"}')


def test_internal_checkpoint_record_type_is_not_a_scenario_command():
    # The scenario format lists add_instrument, place, cancel, replace, mass_cancel,
    # halt, resume and end_of_day; any other type is unknown, hence malformed.
    expect([_one('{"type":"checkpoint","kind":"epoch"}')], '{"seq":2,"type":"rejected","reason":"malformed"}')


@pytest.mark.parametrize("field, value", [
    ("qty", "10.0"), ("qty", '"10"'), ("qty", "1e2"), ("qty", "true"), ("price", "100.5"),
    ("price", '"100"'), ("price", "[100]"), ("display_qty", '"1"'), ("stop_price", "1.0"),
    ("client_order_id", "7"), ("symbol", "5"),
])
def test_wrong_type_where_integer_or_string_is_due_is_malformed(field, value):
    fields = {"member": '"A"', "client_order_id": '"a1"', "symbol": '"X"', "side": '"sell"',
              "order_type": '"limit"', "qty": "10", "price": "100"}
    fields[field] = value
    line = '{"type":"place",' + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
    event = _one(line)
    expect([event], '{"seq":2,"type":"rejected","member":"A","reason":"malformed"}')


def test_wrong_types_in_admin_commands_are_malformed():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":"1"}
        {"type":"add_instrument","symbol":"X","band_bps":1.5}
        {"type":"add_instrument","symbol":5}
        {"type":"halt","symbol":null}
        {"type":"mass_cancel"}
        {"type":"mass_cancel","member":"A","symbol":7}
    ''')
    expect(s.events, '''
        {"seq":1,"type":"rejected","reason":"malformed"}
        {"seq":2,"type":"rejected","reason":"malformed"}
        {"seq":3,"type":"rejected","reason":"malformed"}
        {"seq":4,"type":"rejected","reason":"malformed"}
        {"seq":5,"type":"rejected","reason":"malformed"}
        {"seq":6,"type":"rejected","member":"A","reason":"malformed"}
    ''')
    assert s.exchange.books == {}


@pytest.mark.parametrize("value", ["1", "0", '"true"', '"yes"', "[]"])
def test_non_boolean_flag_is_malformed(value):
    line = ('{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell",'
            '"order_type":"limit","qty":10,"price":100,"post_only":%s}' % value)
    expect([_one(line)], '{"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"malformed"}')


@pytest.mark.parametrize("field, value", [
    ("side", "BUY"), ("side", "hold"), ("order_type", "iceberg"), ("order_type", "Limit"),
    ("tif", "gtd"), ("tif", "GTC"), ("stp", "cancel"), ("stp", "decrement_both"),
])
def test_enum_value_not_listed_is_malformed(field, value):
    fields = {"member": "A", "client_order_id": "a1", "symbol": "X", "side": "sell",
              "order_type": "limit", "qty": 10, "price": 100}
    fields[field] = value
    line = json.dumps({"type": "place", **fields})
    expect([_one(line)], '{"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"malformed"}')


@pytest.mark.parametrize("field", ["member", "client_order_id", "symbol", "side", "order_type", "qty"])
def test_null_for_a_required_field_is_malformed(field):
    fields = {"member": "A", "client_order_id": "a1", "symbol": "X", "side": "sell",
              "order_type": "limit", "qty": 10, "price": 100}
    fields[field] = None
    event = _one(json.dumps({"type": "place", **fields}))
    expect([event], '{"seq":2,"type":"rejected","reason":"malformed"}')


@pytest.mark.parametrize("field", ["member", "client_order_id", "symbol", "side", "order_type", "qty"])
def test_missing_required_field_is_malformed(field):
    fields = {"member": "A", "client_order_id": "a1", "symbol": "X", "side": "sell",
              "order_type": "limit", "qty": 10, "price": 100}
    del fields[field]
    event = _one(json.dumps({"type": "place", **fields}))
    expect([event], '{"seq":2,"type":"rejected","reason":"malformed"}')


def test_null_for_an_optional_field_means_absent():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"tif":null,"post_only":null,"display_qty":null,"stop_price":null,"stp":null}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100,"stp":null}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100,"post_only":null}
        {"type":"replace","member":"A","order_id":1,"qty":5,"price":null}
        {"type":"cancel","member":"A","order_id":null,"client_order_id":"a1"}
        {"type":"mass_cancel","member":"A","symbol":null}
    ''')
    # tif null = gtc (rests, survives end_of_day), display_qty null = all visible,
    # stp null = cancel_newest, post_only null = not post-only, order_id null = absent.
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"cancelled","order_id":2,"reason":"stp","remaining_qty":4}
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"qty":4,"maker_order_id":1,"taker_order_id":3}
        {"seq":5,"type":"replaced","order_id":1,"qty":5,"price":100,"priority_kept":true}
        {"seq":6,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":5}
    ''')


def test_null_tif_means_gtc_and_survives_end_of_day():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"tif":null,"display_qty":null}
        {"type":"end_of_day"}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1}')
    assert s.depth()["asks"] == [(100, 10, 1)]


def test_unknown_extra_fields_are_ignored():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","venue":"XNAS","extra":{"a":[1,2,{"b":null}]}}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"account":"acc-1","note":null,"weird":1.5}
        {"type":"cancel","member":"A","order_id":1,"reason":"because","qty":"x"}
        {"type":"end_of_day","symbol":"X"}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":3,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}
    ''')


def test_malformed_rejection_carries_member_and_client_order_id_when_they_are_strings():
    s = Scenario([
        '{"type":"add_instrument","symbol":"X"}',
        '{"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":"10","price":100}',
        '{"type":"place","member":5,"client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}',
        '{"type":"cancel","member":"A","order_id":"1"}',
        'garbage',
    ])
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"malformed"}
        {"seq":3,"type":"rejected","member":null,"client_order_id":"a1","reason":"malformed"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":null,"reason":"malformed"}
        {"seq":5,"type":"rejected","member":null,"client_order_id":null,"reason":"malformed"}
    ''')


def test_malformed_command_changes_nothing_and_the_next_command_gets_the_next_sequence():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10.0,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":3,"type":"rejected","member":"B","client_order_id":"b1","reason":"malformed"}
        {"seq":4,"type":"accepted","order_id":2,"client_order_id":"b1"}
        {"seq":4,"type":"trade","trade_id":1,"qty":4}
    ''')


def test_timestamp_field_must_be_an_integer():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","ts":1700000000000000000}
        {"type":"halt","symbol":"X","ts":"now"}
        {"type":"halt","symbol":"X","ts":1.5}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","reason":"malformed"}
        {"seq":3,"type":"rejected","reason":"malformed"}
    ''')
    assert s.exchange.last_timestamp_ns == 3


def test_type_field_need_not_come_first():
    # RULES.md writes `"type"` first in its command listing but does not make another
    # field order malformed; the implementation accepts the fields in any order.
    s = Scenario('''
        {"symbol":"X","type":"add_instrument"}
        {"member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"type":"place"}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1}')


def test_a_batch_with_an_undecodable_journal_body_decodes_it_as_malformed_in_place():
    from statemachine.codec import decode_command, decode_commands, encode_command
    from statemachine.commands import AddInstrument, CancelOrder, MalformedCommand

    good = [encode_command(AddInstrument("X")), encode_command(CancelOrder("M1", order_id=3))]
    assert decode_commands(good) == [AddInstrument("X"), CancelOrder("M1", order_id=3)]
    batch = [good[0], b"\xc1 not msgpack", good[1]]
    decoded = decode_commands(batch)
    assert decoded == [decode_command(body) for body in batch]
    assert type(decoded[1]) is MalformedCommand and "journal body does not decode" in decoded[1].detail
    assert decoded[2] == CancelOrder("M1", order_id=3)
