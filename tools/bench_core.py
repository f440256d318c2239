"""The state machine benchmark: a seeded mixed workload through `Exchange.apply`.

The workload (issue 2): one instrument; 55% passive limit adds within 50 ticks of the
mid, 25% cancels of live orders, 15% marketable limit orders, 5% market orders; qty
1..100; 50 members, so self-trade prevention (on by default) fires now and then. The
command stream is generated once, by running it through an exchange and tracking which
orders are live, so every cancel names an order that is really open; the timed runs then
apply the same prebuilt command objects to fresh exchanges, so decoding is not timed
(journal decoding has its own benchmark).

The figures name the core that ran (`core`: "compiled" or "pure", statemachine.CORE_MODE).
Throughput is the median of `runs` full passes. Latency is measured in a separate pass
that wraps each apply in `perf_counter_ns`, whose own cost (measured and reported as
`timer_overhead_ns`) is subtracted.
"""

from __future__ import annotations

import gc
import platform
import random
import statistics
import time

import statemachine
from statemachine import AddInstrument, CancelOrder, Exchange, OrderAccepted, OrderCancelled, PlaceOrder, TradeExecuted

from tools.latency import percentiles

SYMBOL = "BENCH"
MID_PRICE = 100_000
MEMBERS = tuple(f"M{index:02d}" for index in range(50))


def generate_workload(commands: int, seed: int) -> list:
    """The seeded command list (the add_instrument first), valid against a live book."""
    rng = random.Random(seed)
    stream = [AddInstrument(SYMBOL)]
    exchange = Exchange()
    exchange.apply(1, 0, stream[0])
    live: list[int] = []
    position: dict[int, int] = {}
    client_counter = 0

    def drop(oid: int) -> None:
        index = position.pop(oid, None)
        if index is None:
            return
        last = live.pop()
        if last != oid:
            live[index] = last
            position[last] = index

    for _ in range(commands):
        roll = rng.random()
        member = MEMBERS[rng.randrange(len(MEMBERS))]
        if roll < 0.25 and live:
            oid = live[rng.randrange(len(live))]
            state = exchange.order_state(oid)
            command = CancelOrder(member=state["member"], order_id=oid)
        else:
            client_counter += 1
            side = "buy" if rng.random() < 0.5 else "sell"
            qty = rng.randint(1, 100)
            client_order_id = f"c{client_counter}"
            if roll < 0.80:
                offset = rng.randint(1, 50)
                price = MID_PRICE - offset if side == "buy" else MID_PRICE + offset
                command = PlaceOrder(member, client_order_id, SYMBOL, side, "limit", qty, price)
            elif roll < 0.95:
                offset = rng.randint(1, 50)
                price = MID_PRICE + offset if side == "buy" else MID_PRICE - offset
                command = PlaceOrder(member, client_order_id, SYMBOL, side, "limit", qty, price)
            else:
                command = PlaceOrder(member, client_order_id, SYMBOL, side, "market", qty)
        stream.append(command)
        for event in exchange.apply(len(stream), 0, command):
            kind = type(event)
            if kind is OrderAccepted:
                position[event.order_id] = len(live)
                live.append(event.order_id)
            elif kind is OrderCancelled:
                drop(event.order_id)
            elif kind is TradeExecuted:
                state = exchange.order_state(event.maker_order_id)
                if state["status"] == "closed":
                    drop(event.maker_order_id)
        for oid in list(live[-3:]):
            if exchange.order_state(oid)["status"] == "closed":
                drop(oid)
    return stream


def _apply_all(stream: list, book_updates: bool) -> tuple[float, int, Exchange]:
    exchange = Exchange(book_updates=book_updates)
    apply = exchange.apply
    event_count = 0
    started = time.perf_counter()
    for sequence, command in enumerate(stream, 1):
        event_count += len(apply(sequence, 0, command))
    elapsed = time.perf_counter() - started
    return elapsed, event_count, exchange


def run_core_benchmark(
    commands: int = 1_000_000, seed: int = 1, runs: int = 5, book_updates: bool = False
) -> dict:
    stream = generate_workload(commands, seed)
    rates = []
    events = 0
    gc_before = sum(stat["collections"] for stat in gc.get_stats())
    for _ in range(runs):
        elapsed, events, exchange = _apply_all(stream, book_updates)
        rates.append(len(stream) / elapsed)
        del exchange
    gc_collections = sum(stat["collections"] for stat in gc.get_stats()) - gc_before

    clock = time.perf_counter_ns
    overhead_samples = []
    for _ in range(10000):
        start = clock()
        overhead_samples.append(clock() - start)
    timer_overhead_ns = int(statistics.median(overhead_samples))

    exchange = Exchange(book_updates=book_updates)
    apply = exchange.apply
    latencies = []
    record = latencies.append
    for sequence, command in enumerate(stream, 1):
        start = clock()
        apply(sequence, 0, command)
        record(clock() - start)
    latencies = sorted(max(0, value - timer_overhead_ns) for value in latencies)
    return {
        "benchmark": "core",
        "commands": len(stream),
        "seed": seed,
        "runs": runs,
        "book_updates": book_updates,
        "commands_per_second_median": round(statistics.median(rates)),
        "commands_per_second_runs": [round(rate) for rate in rates],
        "events_per_run": events,
        "resting_orders_at_end": exchange.open_order_count(),
        "apply_latency_ns": {
            **dict(zip(("p50", "p99", "p99_9"), percentiles(latencies, (0.50, 0.99, 0.999), 0))),
            "max": latencies[-1],
        },
        "timer_overhead_ns": timer_overhead_ns,
        "gc_collections_during_runs": gc_collections,
        "core": statemachine.CORE_MODE,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _instruction_harness(argv: list) -> None:
    """`python -m tools.bench_core COMMANDS MODE [BOOK_UPDATES]`: the callgrind harness.

    Builds the workload of `COMMANDS` commands (seed 1), round-trips it through the
    journal's msgpack codec (as the node and replay see commands), then in MODE `apply`
    applies it to a fresh exchange; MODE `load` stops before applying. Run both under
    `valgrind --tool=callgrind` and divide the difference of the instruction counts by
    COMMANDS for the instructions per command of `Exchange.apply`. The workload is cached
    in the system's temporary directory, keyed by its size, so the generation (itself
    an exchange run) is not inside the two measured processes' difference by chance.
    """
    import os
    import tempfile

    from statemachine.codec import decode_commands, encode_command

    commands, mode = int(argv[0]), argv[1]
    book_updates = len(argv) > 2 and argv[2] == "book_updates"
    cache = os.path.join(tempfile.gettempdir(), f"twinbook-core-workload-{commands}.msgpack")
    if not os.path.exists(cache):
        import msgspec

        bodies = [encode_command(command) for command in generate_workload(commands, 1)]
        with open(cache + ".partial", "wb") as file:
            file.write(msgspec.msgpack.encode(bodies))
        os.replace(cache + ".partial", cache)
        return
    import msgspec

    with open(cache, "rb") as file:
        stream = decode_commands(msgspec.msgpack.decode(file.read()))
    if mode == "apply":
        exchange = Exchange(book_updates=book_updates)
        apply = exchange.apply
        for sequence, command in enumerate(stream, 1):
            apply(sequence, 0, command)


if __name__ == "__main__":
    import sys

    _instruction_harness(sys.argv[1:])
