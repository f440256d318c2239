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


# ---------------------------------------------------------------------- the tranche bound (rules version 2)


def test_iceberg_with_too_many_tranches_is_rejected():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":1000000000000,"price":100,"display_qty":1}
        {"type":"place","member":"A","client_order_id":"ice2","symbol":"X","side":"sell","order_type":"limit","qty":10001,"price":100,"display_qty":1}
        {"type":"place","member":"A","client_order_id":"sl","symbol":"X","side":"buy","order_type":"stop_limit","qty":50001,"price":100,"stop_price":100,"display_qty":5}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"rejected","member":"A","client_order_id":"ice","reason":"invalid_quantity"}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"ice2","reason":"invalid_quantity"}
        {"seq":4,"type":"rejected","member":"A","client_order_id":"sl","reason":"invalid_quantity"}
    ''')
    assert s.depth() == {"bids": [], "asks": []}
    # A rejected order does not use up its client order id.
    events = s.run('{"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":1}')
    expect(events, '{"seq":5,"type":"accepted","order_id":1,"client_order_id":"ice"}')


def test_iceberg_of_exactly_the_maximum_tranches_is_accepted_and_trades_every_tranche():
    from statemachine.exchange import ICEBERG_TRANCHES_MAX

    s = Scenario(f'''
        {{"type":"add_instrument","symbol":"X"}}
        {{"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":{ICEBERG_TRANCHES_MAX * 3},"price":100,"display_qty":3}}
    ''')
    expect(s.events, f'{{"seq":2,"type":"accepted","order_id":1,"qty":{ICEBERG_TRANCHES_MAX * 3}}}')
    events = s.run(f'{{"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"market","qty":{10**12}}}')
    trades = [event for event in events if event["type"] == "trade"]
    assert len(trades) == ICEBERG_TRANCHES_MAX
    assert all(trade["qty"] == 3 and trade["maker_order_id"] == 1 for trade in trades)
    expect(events[-1:], f'{{"seq":3,"type":"cancelled","order_id":2,"reason":"no_liquidity","remaining_qty":{10**12 - ICEBERG_TRANCHES_MAX * 3}}}')


def test_replace_of_an_iceberg_beyond_the_tranche_bound_is_rejected():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":100,"price":100,"display_qty":2}
    ''')
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":20001,"client_order_id":"r1"}')
    expect(events, '{"seq":3,"type":"rejected","member":"A","client_order_id":"r1","reason":"invalid_quantity"}')
    rows = s.orders()["asks"]
    assert [(r["order_id"], r["visible_qty"], r["hidden_qty"]) for r in rows] == [(1, 2, 98)]
    # Up to exactly the bound is a replace like any other (quantity up loses priority).
    events = s.run('{"type":"replace","member":"A","order_id":1,"qty":20000}')
    expect(events, '{"seq":4,"type":"replaced","order_id":1,"qty":20000,"price":100,"priority_kept":false}')
    # A plain order has no display and no bound.
    s.run('{"type":"place","member":"A","client_order_id":"plain","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":101}')
    events = s.run('{"type":"replace","member":"A","order_id":2,"qty":1000000000000}')
    expect(events, '{"seq":6,"type":"replaced","order_id":2,"qty":1000000000000,"priority_kept":false}')


def test_rules_version_1_has_no_tranche_bound_and_a_rules_checkpoint_switches_to_version_2():
    # A journal without a rules checkpoint was written under version 1 and replays under it.
    s = Scenario('''
        {"type":"add_instrument","symbol":"X"}
        {"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":1000000000000,"price":100,"display_qty":1}
    ''', rules_version=1)
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"qty":1000000000000}')
    assert s.exchange.rules_version == 1
    version_1_digest = s.exchange.state_digest()
    from statemachine.commands import Checkpoint

    assert s.exchange.apply(3, 3, Checkpoint(kind="rules", version=2)) == []
    assert s.exchange.rules_version == 2
    # Part of the state: the digest says which rules the next record meets.
    assert s.exchange.state_digest() != version_1_digest
    events = s.run('{"type":"place","member":"A","client_order_id":"ice2","symbol":"X","side":"sell","order_type":"limit","qty":1000000000000,"price":100,"display_qty":1}')
    expect(events, '{"seq":4,"type":"rejected","client_order_id":"ice2","reason":"invalid_quantity"}')


def test_a_snapshot_keeps_the_rules_version_it_was_taken_under():
    from statemachine.snapshot import decode_state, encode_state

    for version in (1, 2):
        s = Scenario('{"type":"add_instrument","symbol":"X"}', rules_version=version)
        restored = decode_state(encode_state(s.exchange))
        assert restored.rules_version == version
        assert restored.state_digest() == s.exchange.state_digest()
        line = '{"type":"place","member":"A","client_order_id":"ice","symbol":"X","side":"sell","order_type":"limit","qty":20001,"price":100,"display_qty":2}'
        from statemachine.codec import parse_scenario_line

        command, _ = parse_scenario_line(line)
        expected = "accepted" if version == 1 else "rejected"
        assert [type(event).__struct_config__.tag for event in restored.apply(2, 2, command)] == [expected]
