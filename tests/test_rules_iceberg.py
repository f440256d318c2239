"""RULES.md iceberg orders: visible tranche, refills with new time priority, one trade per tranche."""

from __future__ import annotations

from scenario_helpers import Scenario, expect


def test_only_the_iceberg_display_tranche_shows_in_depth():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":30}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"member":"A","client_order_id":"ice","symbol":"X","side":"sell","qty":100,"price":100}')
    assert s.depth() == {"bids": [], "asks": [(100, 30, 1)]}
    assert s.exchange.best_bid_ask("X") == (None, None, 100, 30)
    row = s.orders()["asks"][0]
    assert (row["order_id"], row["visible_qty"], row["hidden_qty"]) == (1, 30, 70)


def test_only_the_visible_tranche_is_matched_per_fill():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":30}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":20,"price":100}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":20,"maker_order_id":1,"taker_order_id":2}
    ''')
    assert s.depth()["asks"] == [(100, 10, 1)]
    row = s.orders()["asks"][0]
    assert (row["visible_qty"], row["hidden_qty"]) == (10, 70)


def test_iceberg_refill_goes_to_back_of_level_with_new_priority():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    assert s.book_ids()["asks"] == [1, 2]
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"qty":10,"maker_order_id":1,"taker_order_id":3}
    ''')
    # The used-up tranche was replaced by a new one behind order 2.
    assert s.book_ids()["asks"] == [2, 1]
    assert s.depth()["asks"] == [(100, 20, 2)]
    events = s.run('{"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":15,"price":100}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":2,"qty":10,"maker_order_id":2,"taker_order_id":4,"maker_member":"C"}
        {"seq":5,"type":"trade","trade_id":3,"qty":5,"maker_order_id":1,"taker_order_id":4,"maker_member":"A"}
    ''')
    row = s.orders()["asks"][0]
    assert (row["order_id"], row["visible_qty"], row["hidden_qty"]) == (1, 5, 10)


def test_iceberg_refill_goes_behind_an_order_that_arrived_after_the_iceberg():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"buy","order_type":"limit","qty":20,"price":100,"display_qty":5}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"D","client_order_id":"d1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":100}
    ''')
    assert s.book_ids()["bids"] == [2, 3, 1]


def test_each_iceberg_tranche_hit_is_its_own_trade_and_the_same_order_reaches_the_refill():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":25,"price":100}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":10,"maker_order_id":1,"taker_order_id":2,"maker_client_order_id":"ice"}
        {"seq":3,"type":"trade","trade_id":2,"price":100,"qty":10,"maker_order_id":1,"taker_order_id":2,"maker_client_order_id":"ice"}
        {"seq":3,"type":"trade","trade_id":3,"price":100,"qty":5,"maker_order_id":1,"taker_order_id":2,"maker_client_order_id":"ice"}
    ''')
    assert s.depth()["asks"] == [(100, 5, 1)]


def test_incoming_order_reaches_iceberg_refill_after_the_orders_ahead_of_it():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
        {"type":"place","member":"D","client_order_id":"d1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":45,"price":101}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":100,"qty":10,"maker_order_id":1}
        {"seq":5,"type":"trade","trade_id":2,"price":100,"qty":10,"maker_order_id":2}
        {"seq":5,"type":"trade","trade_id":3,"price":100,"qty":10,"maker_order_id":1}
        {"seq":5,"type":"trade","trade_id":4,"price":100,"qty":10,"maker_order_id":1}
        {"seq":5,"type":"trade","trade_id":5,"price":101,"qty":5,"maker_order_id":3}
    ''')
    assert s.depth()["asks"] == [(101, 5, 1)]


def test_iceberg_last_refill_is_the_smaller_of_display_and_hidden():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":25,"price":100,"display_qty":10}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":20,"price":100}
    ''')
    assert s.depth()["asks"] == [(100, 5, 1)]
    row = s.orders()["asks"][0]
    assert (row["visible_qty"], row["hidden_qty"]) == (5, 0)


def test_incoming_iceberg_trades_its_full_quantity_on_arrival():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":50,"price":100}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"ice","symbol":"X","side":"buy","order_type":"limit","qty":40,"price":100,"display_qty":10}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2,"qty":40}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":40,"maker_order_id":1,"taker_order_id":2}
    ''')
    assert s.depth() == {"bids": [], "asks": [(100, 10, 1)]}


def test_incoming_iceberg_remainder_rests_with_its_display_visible():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":50,"price":100}
    ''')
    events = s.run('{"type":"place","member":"B","client_order_id":"ice","symbol":"X","side":"buy","order_type":"limit","qty":80,"price":100,"display_qty":10}')
    expect(events, '''
        {"seq":3,"type":"accepted","order_id":2,"qty":80}
        {"seq":3,"type":"trade","trade_id":1,"price":100,"qty":50,"maker_order_id":1,"taker_order_id":2}
    ''')
    assert s.depth() == {"bids": [(100, 10, 1)], "asks": []}
    row = s.orders()["bids"][0]
    assert (row["order_id"], row["visible_qty"], row["hidden_qty"]) == (2, 10, 20)


def test_replace_iceberg_quantity_down_takes_hidden_first_and_keeps_priority():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":30}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":80}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":80,"price":100,"priority_kept":true}')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 30, 50), (2, 10, 0)]
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":20,"price":100}')
    expect(events, '{"seq":5,"type":"replaced","order_id":1,"qty":20,"price":100,"priority_kept":true}')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 20, 0), (2, 10, 0)]
    assert s.depth()["asks"] == [(100, 30, 2)]


def test_replace_iceberg_quantity_up_loses_priority_and_shows_one_display_tranche():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":30,"price":100,"display_qty":10}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":40}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":40,"price":100,"priority_kept":false}')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(2, 10, 0), (1, 10, 30)]


def test_cancel_iceberg_reports_visible_plus_hidden_remaining():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":30}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":100}
    ''')
    events = s.run('{"type":"cancel","member":"A","client_order_id":"ice"}')
    expect(events, '{"seq":4,"type":"cancelled","order_id":1,"reason":"user","remaining_qty":90}')
    assert s.depth() == {"bids": [], "asks": []}
