"""A seeded generator of realistic command streams covering every command type.

Used by recovery, snapshot and determinism tests that need long, varied streams without
hypothesis shrinking them: two instruments (one with tick/lot sizes and a band), three
members, prices in a narrow range so orders cross often, all order types, tifs, STP
modes, icebergs, stops, cancels and replaces of live ids, mass cancels, halts,
end-of-day, and the occasional malformed or invalid command.
"""

from __future__ import annotations

import random

from statemachine import (
    AddInstrument,
    CancelOrder,
    EndOfDay,
    HaltInstrument,
    MalformedCommand,
    MassCancel,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
)

MEMBERS = ("M1", "M2", "M3")
TIFS = ("gtc", "gtc", "gtc", "day", "ioc", "fok")
STP_MODES = ("cancel_newest", "cancel_oldest", "cancel_both", "decrement", "none")


def generate_commands(count: int, seed: int) -> list:
    rng = random.Random(seed)
    commands = [
        AddInstrument("AAA"),
        AddInstrument("BBB", tick_size=5, lot_size=10, band_bps=500, reference_price=1000),
    ]
    client_counter = 0
    while len(commands) < count:
        roll = rng.random()
        member = rng.choice(MEMBERS)
        placed = client_counter
        if roll < 0.62:
            client_counter += 1
            symbol = rng.choice(("AAA", "BBB"))
            tick, lot, mid = (1, 1, 100) if symbol == "AAA" else (5, 10, 1000)
            side = rng.choice(("buy", "sell"))
            order_type = rng.choices(("limit", "market", "stop", "stop_limit"), (80, 8, 6, 6))[0]
            qty = rng.randint(1, 12) * lot
            price = mid + rng.randint(-6, 6) * tick
            fields = dict(tif=rng.choice(TIFS), stp=rng.choice(STP_MODES))
            if order_type in ("limit", "stop_limit"):
                fields["price"] = price
                if rng.random() < 0.15 and qty > lot:
                    fields["display_qty"] = lot * rng.randint(1, qty // lot - 1) if qty // lot > 1 else None
                if order_type == "limit" and rng.random() < 0.08:
                    fields["post_only"] = True
            if order_type in ("stop", "stop_limit"):
                fields["stop_price"] = mid + rng.randint(-4, 4) * tick
            commands.append(PlaceOrder(member, f"{member}-{client_counter}", symbol, side, order_type, qty, **fields))
        elif roll < 0.80:
            target = rng.randint(1, max(1, placed))
            if rng.random() < 0.5:
                commands.append(CancelOrder(member, order_id=target))
            else:
                commands.append(CancelOrder(member, client_order_id=f"{member}-{target}"))
        elif roll < 0.92:
            target = rng.randint(1, max(1, placed))
            qty = rng.randint(1, 14)
            price = None if rng.random() < 0.5 else rng.choice((100 + rng.randint(-6, 6), 1000 + 5 * rng.randint(-6, 6)))
            commands.append(ReplaceOrder(member, target, qty * (10 if rng.random() < 0.5 else 1), price))
        elif roll < 0.95:
            commands.append(MassCancel(member, rng.choice((None, "AAA", "BBB"))))
        elif roll < 0.97:
            symbol = rng.choice(("AAA", "BBB"))
            commands.append(HaltInstrument(symbol) if rng.random() < 0.5 else ResumeInstrument(symbol))
        elif roll < 0.985:
            commands.append(EndOfDay())
        else:
            commands.append(MalformedCommand(detail="generated malformed input", member=member))
    return commands
