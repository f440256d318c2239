# Native declarations for statemachine/exchange.py, read only when Cython compiles it
# (pure-Python mode: the .py stays plain Python, this file only adds C types). Nothing
# here changes what the code computes: every integer that becomes native is a price, a
# quantity, an order or trade id, an arrival stamp or a count, all far inside 64 bits,
# and the digest sum, which exchange.py keeps modulo 2**128 (an unsigned 128-bit
# accumulator here, whose wrap-around is exactly that).

cimport cython

cdef extern from *:
    ctypedef unsigned long long uint128 "unsigned __int128"

cdef long long VALUE_MAX, ICEBERG_TRANCHES_MAX
cdef long long BUY, SELL, CLOSED, RESTING, PENDING_STOP, STOP_FLAG
cdef long long STOPPED_FILLED, STOPPED_LIMIT, STOPPED_BAND, STOPPED_EMPTY, STOPPED_STP
cdef uint128 ARRIVAL_WEIGHT, HIDDEN_WEIGHT
cdef long long COLUMN_CHUNK, KEY_UNLIMITED, KEY_UNLIMITED_MAX


cdef class Level:
    cdef public long long head, tail, total, count


cdef class Book:
    cdef public object symbol
    cdef public long long tick_size, lot_size, band_bps
    cdef public object reference_price, last_trade_price
    cdef public bint _halted, plain
    cdef public tuple levels, keys
    cdef public dict bid_levels, ask_levels
    cdef public list bid_keys, ask_keys, buy_stops, sell_stops

    cpdef band(self)


cdef class Exchange:
    cdef public bint book_updates
    cdef public object rules_version, _iceberg_tranches_max
    cdef public bint _text_bounded
    cdef public object last_sequence, last_timestamp_ns
    cdef public long long next_order_id, next_trade_id, _arrival_stamp, _capacity
    cdef public uint128 _digest_sum
    cdef public dict books, _client_order_ids
    cdef public list _cmd, _owner, _order_book
    cdef public tuple _columns
    cdef public object _touched
    cdef object _last_symbol
    cdef Book _last_book
    cdef long long[::1] _side, _price, _open, _hidden, _arrival, _prev, _next

    cdef Book _book_of(self, symbol)
    cpdef _reserve(self, long long end)
    cpdef _adopt_columns(self)

    @cython.locals(
        oid=cython.longlong, side=cython.longlong, quantity=cython.longlong, limit=cython.longlong,
        tail=cython.longlong, stamp=cython.longlong, level=Level, book=Book, levels=dict,
        opposite_keys=list, remaining=cython.longlong, stopped=cython.longlong, ids=dict,
    )
    cdef _place(self, seq, cmd, list events)

    @cython.locals(oid=cython.longlong, side=cython.longlong)
    cdef _place_general(self, seq, cmd, Book book, dict ids, list events)

    cdef bint _would_cross(self, Book book, side_name, price)

    @cython.locals(
        key_band=cython.longlong, key_band_max=cython.longlong, key_limit=cython.longlong,
        remaining=cython.longlong, stopped=cython.longlong, display=object,
    )
    cdef _execute_limit(self, seq, Book book, long long oid, cmd, long long side, long long price,
                        long long qty, tif, band, list events)

    @cython.locals(key_band=cython.longlong, key_band_max=cython.longlong, remaining=cython.longlong,
                   stopped=cython.longlong)
    cdef _execute_market(self, seq, Book book, long long oid, cmd, long long side, long long qty, list events)

    cdef _close_unrested(self, long long oid)

    @cython.locals(
        opposite=cython.longlong, sign=cython.longlong, levels=dict, keys=list, stp_active=cython.bint,
        o_cmd=list, o_open="long long[::1]", o_hidden="long long[::1]", o_next="long long[::1]",
        o_arrival="long long[::1]", o_prev="long long[::1]",
        remaining=cython.longlong, stopped=cython.longlong, trade_id=cython.longlong, digest_sum=uint128,
        key=cython.longlong, price=cython.longlong, level=Level, level_first_trade_id=cython.longlong,
        total=cython.longlong, count=cython.longlong, maker=cython.longlong, visible=cython.longlong,
        fill=cython.longlong, hidden=cython.longlong, following=cython.longlong, tranche=cython.longlong,
        stamp=cython.longlong, tail=cython.longlong, stop_matching=cython.bint,
    )
    cdef (long long, long long) _match(self, seq, Book book, long long taker, cmd, long long side, long long qty,
                                       stp, long long key_limit, long long key_band, long long key_band_max,
                                       list events)

    @cython.locals(left=cython.longlong, visible=cython.longlong, hidden=cython.longlong,
                   reduction=cython.longlong, weight=uint128)
    cdef (long long, bint) _self_trade(self, seq, Book book, Level level, long long maker, maker_cmd, stp,
                                       long long remaining, list events)

    cdef bint _fok_fillable(self, Book book, long long side, member, stp, long long qty, long long key_limit,
                            long long key_band, long long key_band_max)

    @cython.locals(levels=dict, level=Level, tail=cython.longlong, stamp=cython.longlong)
    cdef _rest(self, Book book, long long oid, long long side, long long price, long long visible,
               long long hidden)

    @cython.locals(side=cython.longlong, price=cython.longlong, levels=dict, level=Level,
                   previous=cython.longlong, following=cython.longlong, visible=cython.longlong, keys=list)
    cdef _remove_resting(self, long long oid, Book book, bint drop_empty_level=*)

    @cython.locals(stamp=cython.longlong)
    cdef _add_stop(self, Book book, long long oid, long long side, long long stop_price, long long qty)

    @cython.locals(stop_price=cython.longlong, stops=list, index=cython.Py_ssize_t)
    cdef _remove_stop(self, long long oid, Book book)

    cdef _run_stops(self, seq, Book book, list events)

    @cython.locals(qty=cython.longlong, side=cython.longlong)
    cdef _trigger(self, seq, Book book, long long oid, list events)

    @cython.locals(
        o_open="long long[::1]", o_prev="long long[::1]", o_next="long long[::1]", oid=cython.longlong,
        levels=dict, side=cython.longlong, book=Book, price=cython.longlong, visible=cython.longlong,
        hidden=cython.longlong, previous=cython.longlong, following=cython.longlong, level=Level,
        count=cython.longlong, keys=list,
    )
    cdef _cancel(self, seq, cmd, list events)

    @cython.locals(book=Book, remaining=cython.longlong)
    cdef _cancel_open_order(self, seq, long long oid, reason, list events)

    @cython.locals(
        book=Book, old_price=cython.longlong, visible=cython.longlong, hidden=cython.longlong, reduction=cython.longlong, weight=uint128,
        level=Level, side=cython.longlong, key_limit=cython.longlong, remaining=cython.longlong,
        stopped=cython.longlong,
    )
    cdef _replace(self, seq, cmd, list events)

    cdef list _open_orders(self, books)
    cdef _mass_cancel(self, seq, cmd, list events)
    cdef _end_of_day(self, seq, cmd, list events)
    cdef _add_instrument(self, seq, cmd, list events)
    cdef _halt(self, seq, cmd, list events)
    cdef _resume(self, seq, cmd, list events)
    cdef _malformed(self, seq, cmd, list events)
    cdef _checkpoint(self, seq, cmd, list events)
    cdef _emit_level_changes(self, seq, list events)

    @cython.locals(digest_sum=object)
    cpdef state_digest(self)
