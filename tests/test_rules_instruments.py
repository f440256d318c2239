"""RULES.md add_instrument, halt/resume, end_of_day, and independent instruments."""

from __future__ import annotations

from scenario_helpers import Scenario, expect

# ---------------------------------------------------------------- add_instrument


def test_add_instrument_emits_no_event_and_defaults_to_tick_1_lot_1_no_band():
    s = Scenario('{"type":"add_instrument","symbol":"X"}')
    assert s.events == []
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":1}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":3,"price":1000000000000}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":1}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":7,"price":999999999999}
    ''')
    # With no band, even after a trade at 1 a price of 10**12 - 1 is accepted.
    expect(events, '''
        {"seq":2,"type":"accepted","order_id":1,"qty":1,"price":1}
        {"seq":3,"type":"accepted","order_id":2,"qty":3,"price":1000000000000}
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"price":1,"qty":1}
        {"seq":5,"type":"accepted","order_id":4,"qty":7,"price":999999999999}
    ''')


def test_add_instrument_with_explicit_nulls_uses_the_defaults():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":null,"lot_size":null,"band_bps":null,"reference_price":null}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":3,"price":7}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"qty":3,"price":7}')


def test_re_adding_an_existing_symbol_is_duplicate_symbol_and_keeps_the_original():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":5}
        {"type":"add_instrument","symbol":"X","tick_size":1}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":7}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"duplicate_symbol"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"invalid_price"}
    ''')


def test_add_instrument_bad_tick_size_is_invalid_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","tick_size":0}
        {"type":"add_instrument","symbol":"Y","tick_size":-5}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":5}
    ''')
    expect(s.events, '''
        {"seq":1,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"unknown_symbol"}
    ''')


def test_add_instrument_bad_lot_size_is_invalid_quantity():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","lot_size":0}
        {"type":"add_instrument","symbol":"Y","lot_size":-1}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":5}
    ''')
    expect(s.events, '''
        {"seq":1,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_quantity"}
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_quantity"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a1","reason":"unknown_symbol"}
    ''')


def test_add_instrument_negative_band_bps_is_invalid_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":-1,"reference_price":100}
        {"type":"add_instrument","symbol":"X","band_bps":0,"reference_price":100}
    ''')
    expect(s.events, '{"seq":1,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}')


def test_add_instrument_bad_reference_price_is_invalid_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","reference_price":0}
        {"type":"add_instrument","symbol":"X","reference_price":-100}
        {"type":"add_instrument","symbol":"X","tick_size":5,"reference_price":102}
        {"type":"add_instrument","symbol":"X","reference_price":1000000000001}
        {"type":"add_instrument","symbol":"X","tick_size":5,"reference_price":100}
    ''')
    expect(s.events, '''
        {"seq":1,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
        {"seq":3,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
        {"seq":4,"type":"rejected","member":null,"client_order_id":null,"reason":"invalid_price"}
    ''')
    assert "X" in s.exchange.books


def test_orders_for_an_unknown_symbol_are_rejected_unknown_symbol():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"Y","side":"sell","order_type":"limit","qty":1,"price":5}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"x","side":"buy","order_type":"market","qty":1}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"Y","side":"buy","order_type":"stop","qty":1,"stop_price":5}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"a1","reason":"unknown_symbol"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"unknown_symbol"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"a3","reason":"unknown_symbol"}
    ''')


# ---------------------------------------------------------------- halt / resume

HALT_SETUP = '''
    {"type":"add_instrument","symbol":"X"}
    {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":90}
    {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"stop","qty":10,"stop_price":200}
    {"type":"halt","symbol":"X"}
'''


def test_halt_and_resume_emit_no_success_event():
    s = Scenario(HALT_SETUP)
    assert s.since(5) == []
    assert s.run('{"type":"resume","symbol":"X"}') == []


def test_halted_instrument_rejects_new_orders_and_keeps_resting_orders():
    s = Scenario(HALT_SETUP)
    events = s.run('''
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"market","qty":5}
        {"type":"place","member":"B","client_order_id":"b3","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":50}
        {"type":"place","member":"B","client_order_id":"b4","symbol":"X","side":"sell","order_type":"stop_limit","qty":5,"stop_price":50,"price":50}
        {"type":"place","member":"B","client_order_id":"b5","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":95,"post_only":true}
    ''')
    expect(events, '''
        {"seq":6,"type":"rejected","member":"B","client_order_id":"b1","reason":"halted"}
        {"seq":7,"type":"rejected","member":"B","client_order_id":"b2","reason":"halted"}
        {"seq":8,"type":"rejected","member":"B","client_order_id":"b3","reason":"halted"}
        {"seq":9,"type":"rejected","member":"B","client_order_id":"b4","reason":"halted"}
        {"seq":10,"type":"rejected","member":"B","client_order_id":"b5","reason":"halted"}
    ''')
    assert s.depth() == {"bids": [(90, 10, 1)], "asks": [(100, 10, 1)]}
    assert [r["order_id"] for r in s.stops()] == [3]


def test_halted_instrument_rejects_replaces():
    s = Scenario(HALT_SETUP)
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":5}
        {"type":"replace","member":"A","order_id":1,"qty":10,"price":90}
    ''')
    expect(events, '''
        {"seq":6,"type":"rejected","member":"A","client_order_id":null,"reason":"halted"}
        {"seq":7,"type":"rejected","member":"A","client_order_id":null,"reason":"halted"}
    ''')
    assert s.depth() == {"bids": [(90, 10, 1)], "asks": [(100, 10, 1)]}


def test_halted_instrument_still_accepts_cancels_and_mass_cancels():
    s = Scenario(HALT_SETUP)
    events = s.run('''
        {"type":"cancel","member":"A","order_id":1}
        {"type":"mass_cancel","member":"A","symbol":"X"}
    ''')
    expect(events, '''
        {"seq":6,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":10}
        {"seq":7,"type":"cancelled","order_id":2,"reason":"mass_cancel","remaining_qty":10}
        {"seq":7,"type":"cancelled","order_id":3,"reason":"mass_cancel","remaining_qty":10}
    ''')
    assert s.depth() == {"bids": [], "asks": []}


def test_halting_a_halted_symbol_is_a_no_op_and_resume_restores_trading():
    s = Scenario(HALT_SETUP)
    assert s.run('{"type":"halt","symbol":"X"}') == []
    events = s.run('''
        {"type":"resume","symbol":"X"}
        {"type":"resume","symbol":"X"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
    ''')
    expect(events, '''
        {"seq":9,"type":"accepted","order_id":4}
        {"seq":9,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":4}
    ''')


def test_halt_of_one_instrument_does_not_affect_another():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"halt","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"Y","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    expect(s.events, '{"seq":4,"type":"accepted","order_id":1,"symbol":"Y"}')


def test_halt_or_resume_of_unknown_symbol_is_unknown_symbol():
    # RULES.md is silent; the implementation rejects with unknown_symbol (member null).
    s = Scenario('''
        {"type":"halt","symbol":"NOPE"}
        {"type":"resume","symbol":"NOPE"}
    ''')
    expect(s.events, '''
        {"seq":1,"type":"rejected","member":null,"client_order_id":null,"reason":"unknown_symbol"}
        {"seq":2,"type":"rejected","member":null,"client_order_id":null,"reason":"unknown_symbol"}
    ''')


# ---------------------------------------------------------------- end_of_day


def test_end_of_day_expires_day_orders_in_ascending_order_id_and_leaves_gtc():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"Y","side":"buy","order_type":"limit","qty":3,"price":50,"tif":"day"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":105,"tif":"day"}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101,"tif":"gtc"}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99,"tif":"day"}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100,"tif":"day"}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":98}
    ''')
    events = s.run('{"type":"end_of_day"}')
    expect(events, '''
        {"seq":10,"type":"cancelled","order_id":1,"reason":"expired","remaining_qty":3}
        {"seq":10,"type":"cancelled","order_id":2,"reason":"expired","remaining_qty":10}
        {"seq":10,"type":"cancelled","order_id":4,"reason":"expired","remaining_qty":10}
        {"seq":10,"type":"cancelled","order_id":5,"reason":"expired","remaining_qty":6}
    ''')
    assert s.book_ids("X") == {"bids": [7], "asks": [3]}
    assert s.book_ids("Y") == {"bids": [], "asks": []}
    # A second end_of_day has nothing left to expire and emits nothing.
    assert s.run('{"type":"end_of_day"}') == []


def test_end_of_day_with_no_day_orders_emits_nothing():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":105}
        {"type":"end_of_day"}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1}')
    assert s.book_ids()["asks"] == [1]


# ---------------------------------------------------------------- many instruments


def test_many_instruments_in_one_exchange_are_independent_but_share_id_sequences():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"add_instrument","symbol":"Y","tick_size":10}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"Y","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"Y","side":"buy","order_type":"stop","qty":1,"stop_price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":4,"price":100}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"Y","side":"buy","order_type":"limit","qty":3,"price":100}
    ''')
    # The trade on X does not trigger the stop on Y; the trade on Y does.
    expect(s.since(6), '''
        {"seq":6,"type":"accepted","order_id":4,"symbol":"X"}
        {"seq":6,"type":"trade","trade_id":1,"symbol":"X","price":100,"qty":4,"maker_order_id":1,"taker_order_id":4}
        {"seq":7,"type":"accepted","order_id":5,"symbol":"Y"}
        {"seq":7,"type":"trade","trade_id":2,"symbol":"Y","price":100,"qty":3,"maker_order_id":2,"taker_order_id":5}
        {"seq":7,"type":"triggered","order_id":3}
        {"seq":7,"type":"trade","trade_id":3,"symbol":"Y","price":100,"qty":1,"maker_order_id":2,"taker_order_id":3}
    ''')
    assert s.depth("X") == {"bids": [], "asks": [(100, 6, 1)]}
    assert s.depth("Y") == {"bids": [], "asks": [(100, 6, 1)]}
    # Y's tick size applies to Y only.
    events = s.run('''
        {"type":"place","member":"B","client_order_id":"b3","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":95}
        {"type":"place","member":"B","client_order_id":"b4","symbol":"Y","side":"buy","order_type":"limit","qty":1,"price":95}
    ''')
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":6,"symbol":"X"}
        {"seq":9,"type":"rejected","client_order_id":"b4","reason":"invalid_price"}
    ''')
