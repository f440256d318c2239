"""RULES.md price bands: limit checks at entry, market and triggered orders stop at the bound."""

from __future__ import annotations

from scenario_helpers import Scenario, expect


def test_limit_outside_band_is_rejected_and_bounds_are_inclusive():
    # R = 10000, band_bps 100: [10000 - 100, 10000 + 100] = [9900, 10100].
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10100}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10101}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":9900}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":9899}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1,"price":10100}
        {"seq":3,"type":"rejected","member":"A","client_order_id":"a2","reason":"price_band"}
        {"seq":4,"type":"accepted","order_id":2,"price":9900}
        {"seq":5,"type":"rejected","member":"A","client_order_id":"a4","reason":"price_band"}
    ''')


def test_band_width_rounds_down():
    # R = 1050, band_bps 500: width 1050*500//10000 = 52 -> [998, 1102].
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1050}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":1102}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":1103}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":998}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":997}
    ''')
    assert [e["type"] for e in s.events] == ["accepted", "rejected", "accepted", "rejected"]


def test_band_reference_is_the_last_trade_price_once_there_is_a_trade():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":10100}
    ''')
    # Last trade 10100: band [10100 - 101, 10100 + 101] = [9999, 10201].
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10201}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10202}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":9999}
        {"type":"place","member":"A","client_order_id":"a5","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":9998}
    ''')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":5,"type":"rejected","client_order_id":"a3","reason":"price_band"}
        {"seq":6,"type":"accepted","order_id":4}
        {"seq":7,"type":"rejected","client_order_id":"a5","reason":"price_band"}
    ''')


def test_no_band_without_a_reference_price_until_the_first_trade():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10000}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":1000000}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":1}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"market","qty":1}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":3,"type":"accepted","order_id":2}
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":10000,"qty":1}
    ''')
    # Now R = 10000: [9900, 10100].
    events = s.run('''
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10101}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":10100}
    ''')
    expect(events, '''
        {"seq":6,"type":"rejected","client_order_id":"a3","reason":"price_band"}
        {"seq":7,"type":"accepted","order_id":5}
    ''')


def test_band_bps_zero_means_no_band_even_with_a_reference_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":0,"reference_price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":100000}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1}')


def test_market_order_stops_at_the_band_bound_and_remainder_is_cancelled_price_band():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
    ''')
    # Last trade 1000: band [950, 1050]. Asks: 5 @ 1050 (in band), 5 @ 1100 (outside).
    assert s.depth()["asks"] == [(1050, 5, 1), (1100, 5, 1)]
    events = s.run('{"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"buy","order_type":"market","qty":8}')
    # The band is fixed when the order starts: its own trade at 1050 (which would move
    # the band to [998, 1102]) does not let it reach 1100.
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":7}
        {"seq":8,"type":"trade","trade_id":3,"price":1050,"qty":5,"maker_order_id":4,"taker_order_id":7}
        {"seq":8,"type":"cancelled","order_id":7,"reason":"price_band","remaining_qty":3}
    ''')
    assert s.depth()["asks"] == [(1100, 5, 1)]


def test_market_order_band_bounds_are_inclusive():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":9900}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":10000}
    ''')
    events = s.run('{"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"market","qty":20}')
    expect(events, '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"trade","trade_id":1,"price":10000,"qty":5,"maker_order_id":2,"taker_order_id":3,"aggressor":"sell"}
        {"seq":4,"type":"trade","trade_id":2,"price":9900,"qty":5,"maker_order_id":1,"taker_order_id":3,"aggressor":"sell"}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"no_liquidity","remaining_qty":10}
    ''')


def test_market_order_whose_first_price_is_outside_the_band_is_accepted_and_cancelled_whole():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":10100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":9900}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":9900}
    ''')
    # Last trade 9900: band [9801, 9999]; the only ask, 10100, is outside.
    events = s.run('{"type":"place","member":"D","client_order_id":"d1","symbol":"X","side":"buy","order_type":"market","qty":5}')
    expect(events, '''
        {"seq":5,"type":"accepted","order_id":4,"member":"D","client_order_id":"d1","symbol":"X","side":"buy","qty":5,"price":null}
        {"seq":5,"type":"cancelled","order_id":4,"reason":"price_band","remaining_qty":5}
    ''')
    assert s.depth()["asks"] == [(10100, 5, 1)]


def test_limit_orders_are_band_checked_at_entry_only():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":10100}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":9900}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":9900}
    ''')
    # Order 1 (10100) is now outside [9801, 9999]: it is not cancelled, it stays.
    assert s.book_ids()["asks"] == [1]
    events = s.run('{"type":"place","member":"D","client_order_id":"d1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":9999}')
    expect(events, '{"seq":5,"type":"accepted","order_id":4}')
    assert s.depth() == {"bids": [(9999, 5, 1), (9900, 4, 1)], "asks": [(10100, 5, 1)]}


def test_triggered_stop_band_is_fixed_at_trigger():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
    ''')
    # Last trade 1000, band [950, 1050]; the stop's condition holds, so it triggers at
    # once with that band and cannot reach 1100 even after its own trade at 1050.
    events = s.run('{"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop","qty":10,"stop_price":1000}')
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":7}
        {"seq":8,"type":"triggered","order_id":7}
        {"seq":8,"type":"trade","trade_id":3,"price":1050,"qty":5,"maker_order_id":4,"taker_order_id":7}
        {"seq":8,"type":"cancelled","order_id":7,"reason":"price_band","remaining_qty":5}
    ''')


def test_stop_limit_limit_price_is_not_band_checked_but_matches_within_the_band():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
    ''')
    # Limit 5000 is far outside the band [950, 1050]: accepted all the same. Once
    # triggered it matches within both its limit and the band; the band stops it.
    events = s.run('{"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":1000,"price":5000}')
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":7,"price":5000}
        {"seq":8,"type":"triggered","order_id":7}
        {"seq":8,"type":"trade","trade_id":3,"price":1050,"qty":5,"maker_order_id":4,"taker_order_id":7}
        {"seq":8,"type":"cancelled","order_id":7,"reason":"price_band","remaining_qty":5}
    ''')


def test_untriggered_stop_limit_far_outside_the_band_is_accepted():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"sell","order_type":"stop_limit","qty":1,"stop_price":5000,"price":10}
    ''')
    expect(s.events, '{"seq":2,"type":"accepted","order_id":1,"price":10}')


def test_replace_is_band_checked_only_when_it_changes_the_price():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":1000,"reference_price":100}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":10,"price":110}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":90}
        {"type":"place","member":"C","client_order_id":"c1","symbol":"X","side":"sell","order_type":"limit","qty":1,"price":90}
    ''')
    # Last trade 90: band [81, 99]; order 1 at 110 is outside it.
    events = s.run('''
        {"type":"replace","member":"A","order_id":1,"qty":5}
        {"type":"replace","member":"A","order_id":1,"qty":5,"price":110}
        {"type":"replace","member":"A","order_id":1,"qty":8}
        {"type":"replace","member":"A","order_id":1,"qty":5,"price":105}
        {"type":"replace","member":"A","order_id":1,"qty":5,"price":99}
    ''')
    expect(events, '''
        {"seq":5,"type":"replaced","order_id":1,"qty":5,"price":110,"priority_kept":true}
        {"seq":6,"type":"replaced","order_id":1,"qty":5,"price":110,"priority_kept":true}
        {"seq":7,"type":"replaced","order_id":1,"qty":8,"price":110,"priority_kept":false}
        {"seq":8,"type":"rejected","member":"A","client_order_id":null,"reason":"price_band"}
        {"seq":9,"type":"replaced","order_id":1,"qty":5,"price":99,"priority_kept":false}
    ''')


def test_triggered_stop_limit_stopped_by_the_band_is_cancelled_price_band_not_by_its_tif():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
    ''')
    # Band [950, 1050] at the trigger; the limit 1200 would reach 1100 but the band does not.
    events = s.run('{"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":1000,"price":1200,"tif":"gtc"}')
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":7,"price":1200}
        {"seq":8,"type":"triggered","order_id":7}
        {"seq":8,"type":"trade","trade_id":3,"price":1050,"qty":5,"maker_order_id":4,"taker_order_id":7}
        {"seq":8,"type":"cancelled","order_id":7,"reason":"price_band","remaining_qty":5}
    ''')
    assert s.depth() == {"bids": [], "asks": [(1100, 5, 1)]}


def test_triggered_stop_limit_stopped_by_its_limit_within_the_band_rests_under_gtc():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1040}
        {"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":1000,"price":1020}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":1,"price":1000}
    ''')
    expect(s.since(5), '''
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"trade","trade_id":1,"price":1000,"qty":1,"maker_order_id":1,"taker_order_id":4}
        {"seq":5,"type":"triggered","order_id":3}
        {"seq":5,"type":"trade","trade_id":2,"price":1000,"qty":4,"maker_order_id":1,"taker_order_id":3}
    ''')
    assert s.depth() == {"bids": [(1020, 6, 1)], "asks": [(1040, 5, 1)]}


def test_market_order_with_a_band_into_an_empty_side_is_cancelled_no_liquidity():
    # Nothing within the band to trade and nothing beyond it either: the book, not the
    # band, stopped it.
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":100,"reference_price":10000}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"market","qty":5}
    ''')
    expect(s.events, '''
        {"seq":2,"type":"accepted","order_id":1}
        {"seq":2,"type":"cancelled","order_id":1,"reason":"no_liquidity","remaining_qty":5}
    ''')


def test_triggered_fok_stop_limit_counts_only_quantity_within_the_band():
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":500,"reference_price":1000}
        {"type":"place","member":"A","client_order_id":"a1","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"A","client_order_id":"a2","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1100}
        {"type":"place","member":"A","client_order_id":"a3","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1050}
        {"type":"place","member":"B","client_order_id":"b2","symbol":"X","side":"buy","order_type":"limit","qty":5,"price":1000}
        {"type":"place","member":"A","client_order_id":"a4","symbol":"X","side":"sell","order_type":"limit","qty":5,"price":1000}
    ''')
    # Within limit 1200 there are 10 lots, but only 5 within the band [950, 1050]:
    # the FOK is cancelled whole with no trade.
    events = s.run('{"type":"place","member":"S","client_order_id":"s1","symbol":"X","side":"buy","order_type":"stop_limit","qty":10,"stop_price":1000,"price":1200,"tif":"fok"}')
    expect(events, '''
        {"seq":8,"type":"accepted","order_id":7}
        {"seq":8,"type":"triggered","order_id":7}
        {"seq":8,"type":"cancelled","order_id":7,"reason":"fok","remaining_qty":10}
    ''')
    assert s.depth()["asks"] == [(1050, 5, 1), (1100, 5, 1)]


def test_market_order_does_not_trade_with_a_resting_order_left_outside_the_band_on_the_near_side():
    # The sell at 90 entered while the band was [90, 110] (R = 100). A trade at 105 moves
    # R to 105 and the band to [95, 115]: 90 is now outside it, below the lower bound.
    # A triggered stop (a market order) may trade only inside the band, on either side,
    # so it is cancelled whole with reason price_band rather than buying at 90.
    s = Scenario('''
        {"type":"add_instrument","symbol":"X","band_bps":1000,"reference_price":100}
        {"type":"place","member":"A","client_order_id":"b1","symbol":"X","side":"buy","order_type":"limit","qty":10,"price":105}
        {"type":"place","member":"B","client_order_id":"s1","symbol":"X","side":"sell","order_type":"limit","qty":80,"price":90}
        {"type":"place","member":"A","client_order_id":"st","symbol":"X","side":"buy","order_type":"stop","qty":10,"stop_price":100}
        {"type":"place","member":"C","client_order_id":"m1","symbol":"X","side":"buy","order_type":"market","qty":5}
    ''')
    expect(s.since(4), '''
        {"seq":4,"type":"accepted","order_id":3}
        {"seq":4,"type":"triggered","order_id":3}
        {"seq":4,"type":"cancelled","order_id":3,"reason":"price_band","remaining_qty":10}
        {"seq":5,"type":"accepted","order_id":4}
        {"seq":5,"type":"cancelled","order_id":4,"reason":"price_band","remaining_qty":5}
    ''')
