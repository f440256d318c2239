"""RULES.md stop and stop_limit orders: triggers, cascades, priority at trigger, expiry, replace."""

from __future__ import annotations

from scenario_helpers import Scenario, expect


def test_stop_rests_off_book_until_triggered():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":100}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"sell","order_type":"stop_limit","qty":5,"stop_price":90,"price":89}
    ''')
    # A stop has no limit price (null); a stop_limit's accepted price is its limit.
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1,"member":"S","client_order_id":"s1","symbol":"X","side":"buy","qty":5,"price":null}
        {"seq":3,"type":"accepted","order_id":2,"member":"S","client_order_id":"s2","symbol":"X","side":"sell","qty":5,"price":89}
    ''')
    assert s.depth() == {"bids": [], "asks": []}
    assert [(r["order_id"], r["stop_price"]) for r in s.stops()] == [(1, 100), (2, 90)]
    assert s.order_state(1)["status"] == "pending_stop"


def test_nothing_triggers_before_the_instruments_first_trade():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","reference_price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":90}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":1}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":1000}
    ''')
    expect(s.since(4), '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":5,"type":"accepted","order_id":4}
    ''')
    assert [r["order_id"] for r in s.stops()] == [3, 4]
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":100}')
    expect(events, '''
        {"seq":6,"type":"accepted","order_id":5}
        {"seq":6,"type":"trade","trade_id":1,"price":100,"qty":2,"maker_order_id":1,"taker_order_id":5}
        {"seq":6,"type":"triggered","order_id":3}
        {"seq":6,"type":"trade","trade_id":2,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3,"taker_member":"S","taker_client_order_id":"s1","aggressor":"buy"}
        {"seq":6,"type":"triggered","order_id":4}
        {"seq":6,"type":"trade","trade_id":3,"price":90,"qty":5,"maker_order_id":2,"taker_order_id":4,"taker_member":"S","taker_client_order_id":"s2","aggressor":"sell"}
    ''')


def test_buy_stop_triggers_when_last_trade_reaches_stop_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":101}
    ''')
    # Last trade 100 < 101: no trigger.
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":100}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":2,"maker_order_id":1,"taker_order_id":4}
    ''')
    assert [r["order_id"] for r in s.stops()] == [3]
    # Last trade 101 >= 101: the stop triggers (a market buy) after the incoming order is done.
    events = s.run('{"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":9,"price":101}')
    expect(events, '''
        {"seq":6,"type":"accepted","order_id":5}
        {"seq":6,"type":"trade","trade_id":2,"price":100,"qty":8,"maker_order_id":1,"taker_order_id":5}
        {"seq":6,"type":"trade","trade_id":3,"price":101,"qty":1,"maker_order_id":2,"taker_order_id":5}
        {"seq":6,"type":"triggered","order_id":3}
        {"seq":6,"type":"trade","trade_id":4,"price":101,"qty":5,"maker_order_id":2,"taker_order_id":3,"aggressor":"buy"}
    ''')
    assert s.stops() == []
    assert s.depth()["asks"] == [(101, 4, 1)]


def test_buy_stop_triggers_when_last_trade_is_above_stop_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":105}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":101}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":105}
    ''')
    expect(s.since(4), '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"price":105,"qty":1}
        {"seq":4,"type":"triggered","order_id":2}
        {"seq":4,"type":"trade","trade_id":2,"price":105,"qty":5,"maker_order_id":1,"taker_order_id":2}
    ''')


def test_sell_stop_triggers_when_last_trade_falls_to_stop_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":99}
    ''')
    # Last trade 100 > 99: no trigger.
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":2,"price":100}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":2}
    ''')
    assert [r["order_id"] for r in s.stops()] == [3]
    events = s.run('{"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"sell","order_type":"limit","qty":9,"price":99}')
    expect(events, '''
        {"seq":6,"type":"accepted","order_id":5}
        {"seq":6,"type":"trade","trade_id":2,"price":100,"qty":8,"maker_order_id":1}
        {"seq":6,"type":"trade","trade_id":3,"price":99,"qty":1,"maker_order_id":2}
        {"seq":6,"type":"triggered","order_id":3}
        {"seq":6,"type":"trade","trade_id":4,"price":99,"qty":5,"maker_order_id":2,"taker_order_id":3,"aggressor":"sell"}
    ''')
    assert s.depth()["bids"] == [(99, 4, 1)]


def test_sell_stop_does_not_trigger_on_a_last_trade_above_its_stop_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"sell","order_type":"stop_limit","qty":5,"stop_price":99,"price":99}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"buy","order_type":"stop_limit","qty":5,"stop_price":101,"price":101}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":2,"price":100}
    ''')
    expect(s.since(5), '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":2}
    ''')
    assert [r["order_id"] for r in s.stops()] == [2, 3]


def test_stop_placed_when_its_condition_already_holds_triggers_at_once():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":20,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":90}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3,"member":"S","client_order_id":"s1","symbol":"X","side":"buy","qty":5}
        {"seq":4,"type":"triggered","order_id":3}
        {"seq":4,"type":"trade","trade_id":2,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3,"aggressor":"buy"}
    ''')
    assert s.stops() == []


def test_stop_cascade_triggers_in_ascending_order_id_each_matching_fully_before_the_next():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"L","client_order_id":"l1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"L","client_order_id":"l2","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"L","client_order_id":"l3","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":98}
        {"type":"place","member":"L","client_order_id":"l4","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":97}
        {"type":"place","member":"S","client_order_id":"s5","symbol":"X","side":"sell","order_type":"stop","qty":15,"stop_price":98}
        {"type":"place","member":"S","client_order_id":"s6","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":100}
        {"type":"place","member":"S","client_order_id":"s7","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":97}
    ''')
    events = s.run('{"type":"place","member":"T","client_order_id":"t1","symbol":"X","side":"sell","order_type":"limit","qty":25,"price":98}')
    # Last trade 98: stops 5 (98) and 6 (100) hold; 5 has the lower id and goes first,
    # sweeping completely (down to 97, which makes stop 7 hold too) before 6 starts.
    expect(events, '''
        {"seq":9,"type":"accepted","order_id":8}
        {"seq":9,"type":"trade","trade_id":1,"price":100,"qty":10,"maker_order_id":1,"taker_order_id":8}
        {"seq":9,"type":"trade","trade_id":2,"price":99,"qty":10,"maker_order_id":2,"taker_order_id":8}
        {"seq":9,"type":"trade","trade_id":3,"price":98,"qty":5,"maker_order_id":3,"taker_order_id":8}
        {"seq":9,"type":"triggered","order_id":5}
        {"seq":9,"type":"trade","trade_id":4,"price":98,"qty":5,"maker_order_id":3,"taker_order_id":5}
        {"seq":9,"type":"trade","trade_id":5,"price":97,"qty":10,"maker_order_id":4,"taker_order_id":5}
        {"seq":9,"type":"triggered","order_id":6}
        {"seq":9,"type":"cancelled","order_id":6,"reason":"no_liquidity","remaining_qty":5}
        {"seq":9,"type":"triggered","order_id":7}
        {"seq":9,"type":"cancelled","order_id":7,"reason":"no_liquidity","remaining_qty":5}
    ''')
    assert s.stops() == []


def test_stop_triggered_by_another_stop_fills_after_it():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"L","client_order_id":"l1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"L","client_order_id":"l2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":101}
        {"type":"place","member":"L","client_order_id":"l3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":102}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":101}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":100}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}')
    # Last 100 triggers only stop 5 (100); its fill at 101 then triggers stop 4 (101).
    expect(events, '''
        {"seq":7,"type":"accepted","order_id":6}
        {"seq":7,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":6}
        {"seq":7,"type":"triggered","order_id":5}
        {"seq":7,"type":"trade","trade_id":2,"price":101,"qty":5,"maker_order_id":2,"taker_order_id":5}
        {"seq":7,"type":"triggered","order_id":4}
        {"seq":7,"type":"trade","trade_id":3,"price":102,"qty":5,"maker_order_id":3,"taker_order_id":4}
    ''')


def test_triggered_stops_come_after_the_incoming_orders_own_final_cancel():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":3,"stop_price":100}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100,"tif":"ioc"}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"ioc","remaining_qty":3}
        {"seq":4,"type":"triggered","order_id":2}
        {"seq":4,"type":"cancelled","order_id":2,"reason":"no_liquidity","remaining_qty":3}
    ''')


def test_incoming_remainder_rests_before_stops_are_considered():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"sell","order_type":"stop","qty":4,"stop_price":100}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":8,"price":100}')
    # The buyer's remainder 3 rests at 100 first; the triggered sell stop then hits it.
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3,"aggressor":"buy"}
        {"seq":4,"type":"triggered","order_id":2}
        {"seq":4,"type":"trade","trade_id":2,"price":100,"qty":3,"maker_order_id":3,"taker_order_id":2,"aggressor":"sell"}
        {"seq":4,"type":"cancelled","order_id":2,"reason":"no_liquidity","remaining_qty":1}
    ''')


def test_stop_limit_rests_at_its_limit_after_trigger():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":102}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":20,"stop_price":100,"price":101}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":4}
        {"seq":5,"type":"triggered","order_id":3}
        {"seq":5,"type":"trade","trade_id":2,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3}
    ''')
    assert s.depth() == {"bids": [(101, 15, 1)], "asks": [(102, 10, 1)]}
    state = s.order_state(3)
    assert (state["status"], state["price"], state["visible_qty"]) == ("resting", 101, 15)


def test_triggered_stop_limit_applies_its_tif_when_its_limit_stops_it():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":102}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":20,"stop_price":100,"price":101,"tif":"ioc"}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":5}
        {"seq":5,"type":"triggered","order_id":3}
        {"seq":5,"type":"trade","trade_id":2,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":3}
        {"seq":5,"type":"cancelled","order_id":3,"reason":"ioc","remaining_qty":15}
    ''')
    assert s.depth() == {"bids": [], "asks": [(102, 10, 1)]}


def test_triggered_order_gets_time_priority_at_the_trigger_and_keeps_its_id():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":100,"price":99}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":99}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
    ''')
    expect(s.since(5), '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":4}
        {"seq":5,"type":"triggered","order_id":2}
    ''')
    # Placed before order 3, but it entered the level at its trigger: behind order 3.
    assert s.book_ids()["bids"] == [3, 2]
    events = s.run('{"type":"place","member":"D","client_order_id":"d1","symbol":"X","side":"sell","order_type":"limit","qty":12,"price":99}')
    expect(events, '''
        {"seq":6,"type":"accepted","order_id":5}
        {"seq":6,"type":"trade","trade_id":2,"price":99,"qty":10,"maker_order_id":3,"taker_order_id":5}
        {"seq":6,"type":"trade","trade_id":3,"price":99,"qty":2,"maker_order_id":2,"taker_order_id":5,"maker_member":"S","maker_client_order_id":"s1"}
    ''')


def test_untriggered_day_stop_expires_at_end_of_day():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":100,"tif":"day"}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"buy","order_type":"stop_limit","qty":6,"stop_price":100,"price":100,"tif":"gtc"}
        {"type":"place","member":"S","client_order_id":"s3","symbol":"X","side":"sell","order_type":"stop_limit","qty":7,"stop_price":90,"price":90,"tif":"day"}
    ''')
    events = s.run('{"type":"end_of_day"}')
    expect(events, '''
        {"seq":5,"type":"cancelled","order_id":1,"reason":"expired","remaining_qty":5}
        {"seq":5,"type":"cancelled","order_id":3,"reason":"expired","remaining_qty":7}
    ''')
    assert [r["order_id"] for r in s.stops()] == [2]


def test_triggered_day_stop_limit_resting_expires_at_end_of_day():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":100,"price":99,"tif":"day"}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
    ''')
    assert s.book_ids()["bids"] == [2]
    expect(s.run('{"type":"end_of_day"}'), '{"seq":5,"type":"cancelled","order_id":2,"reason":"expired","remaining_qty":10}')


def test_replace_of_an_untriggered_stop_is_invalid_replace():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":5,"stop_price":100}
        {"type":"place","member":"S","client_order_id":"s2","symbol":"X","side":"buy","order_type":"stop_limit","qty":5,"stop_price":100,"price":100}
    ''')
    events = s.run('''
        {"type":"replace","member":"S","order_id":1,"qty":4}
        {"type":"replace","member":"S","order_id":2,"qty":4,"price":99}
    ''')
    expect(events, '''
        {"seq":4,"type":"rejected","member":"S","client_order_id":null,"reason":"invalid_replace"}
        {"seq":5,"type":"rejected","member":"S","client_order_id":null,"reason":"invalid_replace"}
    ''')
    assert [(r["order_id"], r["qty"]) for r in s.stops()] == [(1, 5), (2, 5)]


def test_replace_of_a_triggered_resting_stop_limit_works():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":100,"price":99}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"S","order_id":2,"qty":4}')
    expect(events, '{"seq":5,"type":"replaced","order_id":2,"qty":4,"price":99,"priority_kept":true}')
    assert s.depth()["bids"] == [(99, 4, 1)]


def test_cancel_of_an_untriggered_stop_cancels_its_quantity():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"sell","order_type":"stop","qty":5,"stop_price":100}
    ''')
    events = s.run('{"type":"cancel","member":"S","client_order_id":"s1"}')
    expect(events, '{"seq":3,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":5}')
    assert s.stops() == []


def test_triggered_stop_uses_its_own_stp_mode():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"S","client_order_id":"own","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":101}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":8,"stop_price":100,"stp":"cancel_oldest"}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":102}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":2,"price":100}')
    expect(events, '''
        {"seq":6,"type":"accepted","order_id":5}
        {"seq":6,"type":"trade","trade_id":1,"price":100,"qty":2,"maker_order_id":2,"taker_order_id":5}
        {"seq":6,"type":"triggered","order_id":3}
        {"seq":6,"type":"trade","trade_id":2,"price":100,"qty":3,"maker_order_id":2,"taker_order_id":3}
        {"seq":6,"type":"cancelled","order_id":1,"reason":"stp","remaining_qty":5}
        {"seq":6,"type":"trade","trade_id":3,"price":102,"qty":5,"maker_order_id":4,"taker_order_id":3}
    ''')
