"""The multicast end-to-end scenario, run by tests/test_multicast_e2e.py INSIDE a private
network namespace (`unshare -rn`, tools/netns.py): never run it in the host's namespace.

A primary and a standby (both with the [multicast] table) in sync replication; four
subscribers on the group: lossless, lossy (a seeded shim drops every 7th packet and 5%
more, duplicates and reorders some), and two that join late (one replays the session
from its first message by retransmission, one starts from a snapshot). Two members trade
on two symbols; the primary is SIGKILLed and the standby promoted; trading continues on
it. Then every subscriber's books are compared with the engine's depth, its trades with
the trades of a replay of the new primary's journal, and the retransmission server is
sent bad requests. Prints one JSON object of findings on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import struct
import sys
import time
from pathlib import Path

import msgspec

from node_helpers import Cluster, connect, free_ports
from replica.market_data import PublicTrade
from replica.multicast import PacketFaults, SubscriberCore
from replica.multicast_client import MulticastSubscriber
from replica.protocol import FRAME_HEADER
from replica.recovery import recover_exchange
from replica.retransmission import RetransmitRequest, reply_decoder
from statemachine.events import TradeExecuted
from tools.netns import inside_namespace, loopback_up

GROUP = "239.255.42.1"
SYMBOLS = ["AAPL", "MSFT", "TSLA", "BOND"]
REFERENCE = {"AAPL": 19000, "MSFT": 42000}
CATCH_UP_TIMEOUT_SECONDS = 30.0


class Recorder:
    """What one subscriber delivered: a digest of the message stream and the trades."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.trades: list[tuple] = []
        self.sequences = 0
        self.first_sequence = None

    def __call__(self, sequence: int, updates: list) -> None:
        if self.first_sequence is None:
            self.first_sequence = sequence
        self.sequences += 1
        self.digest.update(sequence.to_bytes(8, "big") + msgspec.msgpack.encode(updates))
        for update in updates:
            for event in update.events:
                if type(event) is PublicTrade:
                    self.trades.append((event.seq, event.trade_id, event.symbol, event.price, event.qty))


async def trade(node, count: int, seed: int, prefix: str) -> int:
    rng = random.Random(seed)
    clients = [await connect(node, "M1"), await connect(node, "M2")]
    accepted = 0
    try:
        for batch_start in range(0, count, 50):
            futures = []
            for index in range(batch_start, min(count, batch_start + 50)):
                client = clients[index % 2]
                symbol = rng.choice(list(REFERENCE))
                if index % 6 == 5:
                    futures.append(client.send_cancel(client_order_id=f"{prefix}{index - rng.randrange(1, 5) * 2}"))
                    continue
                price = REFERENCE[symbol] + rng.randint(-8, 8)
                futures.append(client.send_place(f"{prefix}{index}", symbol, rng.choice(("buy", "sell")), "limit",
                                                 rng.randint(1, 30), price=price))
            for report in await asyncio.gather(*futures):
                accepted += type(report).__name__ == "OrderAccepted"
    finally:
        for client in clients:
            await asyncio.wait_for(client.close(), 5)
    return accepted


def probe_retransmission(address: tuple[str, int], session: str, published: int) -> dict:
    """Bad requests get refusals with the expected reasons; good ones keep being served."""
    findings = {}

    def frame(payload: bytes) -> bytes:
        return FRAME_HEADER.pack(len(payload)) + payload

    def replies(sock: socket.socket, wanted: int) -> list:
        out, buffer = [], b""
        while len(out) < wanted:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 4:
                (length,) = FRAME_HEADER.unpack_from(buffer)
                if len(buffer) < 4 + length:
                    break
                out.append(reply_decoder.decode(buffer[4:4 + length]))
                buffer = buffer[4 + length:]
        return out

    def request(first: int, last: int, name: str = session) -> bytes:
        return frame(msgspec.msgpack.encode(RetransmitRequest(name, first, last)))

    good = socket.create_connection(address, timeout=10)
    for name, data in (("oversized", struct.pack("<I", 1 << 20) + b"x" * 64), ("malformed", frame(b"\x93\x01\x02\x03"))):
        with socket.create_connection(address, timeout=10) as bad:
            bad.sendall(data)
            answer = replies(bad, 1)
            closed = bad.recv(1) == b""
            findings[name] = {"reason": answer[0].reason if answer else None, "closed": closed}
        # The other connection is served all the same.
        good.sendall(request(1, 5))
        served = replies(good, 1)
        findings[f"served_after_{name}"] = bool(served) and type(served[0]).__name__ == "Retransmitted"
    with socket.create_connection(address, timeout=10) as same:
        same.sendall(request(1, 100_000) + request(published + 10, published + 20) + request(1, 2, "WRONGSESSN")
                     + request(2, 1) + request(published - 3, published - 1))
        answers = replies(same, 5)
        findings["refusals_on_one_connection"] = [getattr(answer, "reason", "served") for answer in answers]
    good.close()
    return findings


async def scenario(workdir: Path, orders: int) -> dict:
    cluster = Cluster(workdir)
    port = free_ports(1)[0]
    multicast = {"group": GROUP, "port": port, "interface": "127.0.0.1", "heartbeat_interval_ms": 50}
    findings: dict = {}
    try:
        primary = cluster.node("primary", multicast=multicast)
        await primary.start_async()
        standby = cluster.node("standby", multicast=multicast)
        standby.role, standby.following = "standby", primary.replication
        await standby.start_async()
        retransmit = [primary.retransmit, standby.retransmit]
        feeds = [primary.feed, standby.feed]
        recorders = {name: Recorder() for name in ("lossless", "lossy", "late_replay", "late_snapshot")}

        def subscriber(name: str, **options) -> MulticastSubscriber:
            return MulticastSubscriber(GROUP, port, retransmit=retransmit, snapshot_endpoints=feeds, symbols=SYMBOLS,
                                       on_message=recorders[name], **options)

        subscribers = {
            "lossless": subscriber("lossless"),
            "lossy": subscriber("lossy", faults=PacketFaults(seed=11, drop_every=7, drop_ratio=0.05,
                                                             duplicate_ratio=0.03, reorder_ratio=0.05)),
        }
        done = asyncio.Event()
        tasks = {name: asyncio.ensure_future(sub.run(until=done.is_set)) for name, sub in subscribers.items()}
        await asyncio.sleep(0.2)
        accepted = await trade(primary, orders, seed=1, prefix="a")
        # Late joiners: one replays the session from 1 by retransmission, one takes a snapshot.
        subscribers["late_replay"] = subscriber("late_replay")
        subscribers["late_snapshot"] = subscriber("late_snapshot", core=SubscriberCore(catch_up_messages_max=0))
        for name in ("late_replay", "late_snapshot"):
            tasks[name] = asyncio.ensure_future(subscribers[name].run(until=done.is_set))
        accepted += await trade(primary, orders // 2, seed=2, prefix="b")
        before_failover = primary.status()["multicast"]["next_sequence"] - 1
        primary.kill()
        # A standby refuses promotion until it has seen its primary's link go (it may
        # be writing a batch to disk when the SIGKILL lands): wait for that first.
        detached_by = time.monotonic() + 15
        while standby.status().get("primary_connected", True) and time.monotonic() < detached_by:
            await asyncio.sleep(0.01)
        promoted = standby.admin({"command": "promote"})
        findings["promoted"] = bool(promoted.get("promoted"))
        accepted += await trade(standby, orders // 2, seed=3, prefix="c")
        status = standby.status()
        target = status["multicast"]["next_sequence"] - 1
        findings.update(accepted=accepted, before_failover=before_failover, target=target,
                        session=status["multicast"]["session"])
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and any(sub.delivered_through < target for sub in subscribers.values()):
            for name, task in tasks.items():
                if task.done():
                    task.result()  # a failed subscriber raises here, with its reason
            await asyncio.sleep(0.05)
        engine_depth = {symbol: standby.depth(symbol) for symbol in SYMBOLS}
        findings["retransmission"] = probe_retransmission(standby.retransmit, findings["session"], target)
        done.set()
        for task in tasks.values():
            await asyncio.wait_for(task, 10)
        standby.terminate()
        engine_trades: list[tuple] = []

        def collect(sequence, _epoch, _timestamp_ns, events):
            for event in events:
                if type(event) is TradeExecuted:
                    engine_trades.append((event.seq, event.trade_id, event.symbol, event.price, event.qty))

        recover_exchange(standby.data_dir, use_snapshots=False, on_events=collect)
        findings["engine_trades"] = len(engine_trades)
        findings["subscribers"] = {}
        for name, sub in subscribers.items():
            recorder = recorders[name]
            depth = {symbol: {"bids": [list(row) for row in sub.books[symbol].depth()["bids"]],
                              "asks": [list(row) for row in sub.books[symbol].depth()["asks"]]} for symbol in SYMBOLS}
            start = recorder.first_sequence or 0
            core = sub.core
            findings["subscribers"][name] = {
                "delivered_through": sub.delivered_through,
                "first_sequence": recorder.first_sequence,
                "messages": recorder.sequences,
                "digest": recorder.digest.hexdigest(),
                "depth_matches_engine": depth == engine_depth,
                "trades": len(recorder.trades),
                "trades_match_engine": recorder.trades == [trade for trade in engine_trades if trade[0] >= start],
                "session_ended": sub.session_ended,
                "duplicates": core.duplicates,
                "gaps_requested": core.gaps_requested,
                "retransmitted_messages": core.retransmitted_messages,
                "snapshots": core.snapshots_requested,
                "dropped": sub.faults.dropped if sub.faults else 0,
                "reordered": sub.faults.reordered if sub.faults else 0,
                "duplicated": sub.faults.duplicated if sub.faults else 0,
            }
    finally:
        cluster.kill_all()
    return findings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--orders", type=int, default=1200)
    arguments = parser.parse_args()
    if not inside_namespace():
        sys.exit("multicast_scenario.py sends multicast: run it only inside `unshare -rn` (tools/netns.py)")
    loopback_up()
    findings = asyncio.run(asyncio.wait_for(scenario(Path(arguments.workdir), arguments.orders), 120))
    print(json.dumps(findings))


if __name__ == "__main__":
    main()
