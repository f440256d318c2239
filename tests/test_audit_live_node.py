"""Audit replay reproduces exactly what a live node told its members.

A real primary runs; two members trade (fills, partial fills, cancels, a rejection);
every execution report each client received is kept. After the node stops,
`twinbook replay DIR --member X` must give, for each member, exactly the events that
member received, in the same order, byte for byte once the replay's added `epoch` and
`ts` fields are set aside.
"""

from __future__ import annotations

import json
import subprocess

import msgspec

from node_helpers import close_all, connect, run, start_node, twinbook_command  # noqa: F401


def test_replay_of_a_live_journal_equals_the_reports_clients_received(start_node):
    node = start_node()

    async def trade():
        seller = await connect(node, "M1")
        buyer = await connect(node, "M2")
        answers = []
        for index in range(20):
            answers.append(await seller.place(f"s{index}", "AAPL", "sell", "limit", 10 + index, price=19000 + index % 5))
        for index in range(10):
            answers.append(await buyer.place(f"b{index}", "AAPL", "buy", "limit", 25, price=19000 + index % 7))
        answers.append(await seller.cancel(client_order_id="s19"))
        answers.append(await buyer.place("bad", "AAPL", "buy", "limit", 0, price=19000))
        answers.append(await buyer.place("mkt", "MSFT", "buy", "market", 5))
        # Everything answered; give unsolicited reports (fills of resting orders) time to land.
        status = await seller.order_status(1)
        await close_all(seller, buyer)
        received = {"M1": [], "M2": []}
        for member, client in (("M1", seller), ("M2", buyer)):
            while not client.reports.empty():
                received[member].append(msgspec.to_builtins(client.reports.get_nowait()))
        return received, status

    received, status = run(trade(), timeout=60)
    assert status.status != "unknown"
    assert node.terminate() == 0
    for member in ("M1", "M2"):
        output = subprocess.run(
            twinbook_command("replay", str(node.data_dir), "--member", member),
            capture_output=True, timeout=60, check=True,
        ).stdout
        replayed = []
        for line in output.splitlines():
            row = json.loads(line)
            del row["epoch"], row["ts"]
            replayed.append(row)
        assert received[member], f"{member} received no reports"
        assert replayed == received[member]
