"""`twinbook bench fix`: FIX 4.4 order entry through the gateway, beside the native protocol.

A real primary process (its own temporary directory, loopback ports, a [fix] table; the
durability policy is an option, `none` by default so the figures are the gateways' and
not the disk's) takes, from this process:

* throughput: `orders` limit orders (resting, never crossing, so one acknowledgement
  each) in rounds of `window` pipelined orders: send the round, wait for all of its
  acknowledgements, next round. Orders/s, and the primary's CPU time per order
  (from /proc/<pid>/task/*/schedstat around the run, so this client's work does
  not count);
* latency: `latency_orders` orders one at a time; the time from writing one to reading
  its acknowledgement (ExecutionReport 150=0 / the native `accepted` report), p50 / p99
  in microseconds.

The same for the native msgpack protocol (replica/client.py's OrderClient, member M2)
and for FIX (a minimal initiator on replica/fix_codec.py, member M1), so the two columns
differ only by the protocol and its gateway. FIX's figures include its journal records:
one `fix_in` record per order beside the order's own (replica/fix_ledger.py).

Ledger rebuild: a journal of `rebuild_records` records of the core mixed workload is
written (not timed) and `rebuild_ledger` folds it, as a starting primary or a promoted
standby does before opening its FIX port: records/s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from replica.client import OrderClient
from replica.fix_codec import FixStreamReader, encode_message, utc_timestamp
from replica.fix_ledger import format_decimal, rebuild_ledger
from tools.bench_failover import HOST, _Node, _write_workload_journal
from tools.ports import free_ports

PRICE_BASE = 18_000  # AAPL's reference is 19000 (band 10%): buys here rest, never cross
PRICE_LEVELS = 500


def _process_cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, from /proc/<pid>/task/*/schedstat (nanoseconds
    on the CPU: far finer than /proc/<pid>/stat's 10 ms clock ticks)."""
    total_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as handle:
                total_ns += int(handle.read().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return total_ns / 1e9


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _FixClient:
    """Enough of an initiator for the benchmark: Logon, NewOrderSingle, acks by ClOrdID."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stream = FixStreamReader()
        self.next_seq = 1
        self.acknowledged: set[str] = set()

    @classmethod
    async def connect(cls, address: tuple[str, int], member: str, token: str) -> "_FixClient":
        deadline = time.monotonic() + 30  # the FIX port opens once the ledger is rebuilt
        while True:
            try:
                reader, writer = await asyncio.open_connection(*address)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        client = cls(reader, writer)
        client.send("A", [(98, 0), (108, 30), (553, member), (554, token)], member)
        while True:
            if any(message.msg_type == "A" for message in await client._read()):
                return client

    def send(self, msg_type: str, body: list, sender: str = "M1") -> None:
        header = [(49, sender), (56, "TWINBOOK"), (34, self.next_seq), (52, utc_timestamp(time.time_ns()))]
        self.next_seq += 1
        self.writer.write(encode_message(msg_type, header, body))

    def send_order(self, client_order_id: str, price: int) -> None:
        self.send("D", [(11, client_order_id), (55, "AAPL"), (54, "1"), (38, 1), (40, "2"),
                        (44, format_decimal(price, 2)), (59, "1")])

    async def _read(self) -> list:
        data = await self.reader.read(1 << 16)
        if not data:
            raise ConnectionError("the FIX acceptor closed the connection")
        messages = self.stream.feed(data)
        for message in messages:
            if message.msg_type == "8" and message.get(150) == "0":
                self.acknowledged.add(message.get(11))
            elif message.msg_type == "8":
                raise RuntimeError(f"order refused: {message.fields}")
        return messages

    async def wait_acknowledged(self, client_order_ids: list[str]) -> None:
        while not all(client_order_id in self.acknowledged for client_order_id in client_order_ids):
            await self._read()
        self.acknowledged.difference_update(client_order_ids)


async def _measure(pid: int, orders: int, window: int, latency_orders: int, send_round, send_one) -> dict:
    cpu_before = _process_cpu_seconds(pid)
    started = time.perf_counter()
    for first in range(0, orders, window):
        await send_round(first, min(window, orders - first))
    elapsed = time.perf_counter() - started
    cpu_seconds = _process_cpu_seconds(pid) - cpu_before
    latencies_us = []
    for index in range(latency_orders):
        begin = time.perf_counter_ns()
        await send_one(orders + index)
        latencies_us.append((time.perf_counter_ns() - begin) / 1000)
    return {
        "orders_per_second": round(orders / elapsed),
        "primary_cpu_us_per_order": round(cpu_seconds * 1e6 / orders, 1),
        "ack_latency_p50_us": round(_percentile(latencies_us, 0.50), 1),
        "ack_latency_p99_us": round(_percentile(latencies_us, 0.99), 1),
    }


async def _run(node: _Node, fix_address: tuple[str, int], orders: int, window: int, latency_orders: int) -> dict:
    pid = node.process.pid
    native = OrderClient([node.client], "M2", "demo-M2")
    await native.connect()

    async def native_round(first: int, count: int) -> None:
        futures = [native.send_place(f"n{first + index}", "AAPL", "buy", "limit", 1,
                                     price=PRICE_BASE + (first + index) % PRICE_LEVELS, tif="gtc")
                   for index in range(count)]
        await asyncio.gather(*futures)

    async def native_one(number: int) -> None:
        await native_round(number, 1)

    figures = {"native": await _measure(pid, orders, window, latency_orders, native_round, native_one)}
    await native.close()
    fix = await _FixClient.connect(fix_address, "M1", "demo-M1")

    async def fix_round(first: int, count: int) -> None:
        client_order_ids = [f"f{first + index}" for index in range(count)]
        for index, client_order_id in enumerate(client_order_ids):
            fix.send_order(client_order_id, PRICE_BASE + (first + index) % PRICE_LEVELS)
        await fix.wait_acknowledged(client_order_ids)

    async def fix_one(number: int) -> None:
        await fix_round(number, 1)

    figures["fix"] = await _measure(pid, orders, window, latency_orders, fix_round, fix_one)
    fix.writer.close()
    return figures


def _rebuild_rate(root: Path, records: int) -> dict:
    journal_directory = root / "rebuild" / "journal"
    last_sequence = _write_workload_journal(journal_directory, records, 1)
    started = time.perf_counter()
    rebuild_ledger(str(journal_directory), last_sequence, 2)
    elapsed = time.perf_counter() - started
    return {"records": last_sequence, "seconds": round(elapsed, 2), "records_per_second": round(last_sequence / elapsed)}


def run_fix_benchmark(orders: int, window: int, latency_orders: int, durability: str,
                      workdir: Optional[str] = None, rebuild_records: int = 200_000) -> dict:
    root = Path(tempfile.mkdtemp(prefix="twinbook-bench-fix-", dir=workdir))
    node = _Node(root, "primary", durability=durability)
    fix_port = free_ports(1)[0]
    with open(node.config_path, "a", encoding="utf-8") as handle:
        handle.write(f"[fix]\nport = {fix_port}\n")
    try:
        node.start("primary")
        figures = asyncio.run(asyncio.wait_for(
            _run(node, (HOST, fix_port), orders, window, latency_orders), 600))
        node.terminate()
        rebuild = _rebuild_rate(root, rebuild_records)
    finally:
        node.kill()
        shutil.rmtree(root, ignore_errors=True)
    ratio = figures["fix"]["orders_per_second"] / max(1, figures["native"]["orders_per_second"])
    return {"benchmark": "fix", "orders": orders, "window": window, "latency_orders": latency_orders,
            "durability": durability, **figures, "fix_over_native_throughput": round(ratio, 2),
            "ledger_rebuild": rebuild}
