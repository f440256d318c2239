"""The memory benchmark: a node's resident memory after N IOC orders that never rest.

    twinbook bench ioc-memory --orders 1000000 --json

A real `twinbook primary` (durability none: memory, not the disk, is measured; rate
limits out of the way) is started in a temporary directory. `clients` members send
`orders` immediate-or-cancel buy orders into an empty book, pipelined `window` at a
time per client: every one is accepted and cancelled at once, none ever rests, so an
engine whose memory is proportional to its open book would stay flat. The node's RSS
(VmRSS of /proc/PID/status) is sampled before, at every tenth of the orders and after;
then the node is stopped and restarted on the same journal (recovery replays it), and
its RSS measured again. Figures: RSS in MiB, bytes per order (growth / orders), the
sending rate, and the node's CPU time per order (utime + stime of /proc/PID/stat).

The figure reflects the engine as it is: it keeps every order's command and client
order id (issue 18's engine-side fix is for a later rules version), so the growth per
order is expected to be well above zero; the benchmark is how that fix will be judged.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time

from replica.client import OrderClient
from replica.config import default_config
from tools.loadgen import BENCH_LIMITS, NodeUnderTest, run_async

MEMBERS = ("M1", "M2", "M3", "M4")
SAMPLES = 10


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _send_iocs(endpoint, orders: int, clients: int, window: int, client_order_id_bytes: int,
                     on_progress) -> None:
    symbol = default_config().instruments[0]
    connections = [OrderClient([endpoint], member, f"demo-{member}") for member in MEMBERS[:clients]]
    for connection in connections:
        await asyncio.wait_for(connection.connect(), 15)
    sent = 0
    padding = "x" * max(0, client_order_id_bytes - 12)

    async def one_client(index: int, count: int) -> None:
        nonlocal sent
        connection = connections[index]
        done = 0
        while done < count:
            batch = min(window, count - done)
            with connection.batched():
                futures = [connection.send_place(f"{padding}{index}-{done + offset}", symbol.symbol, "buy", "limit", 1,
                                                 price=symbol.reference_price, tif="ioc")
                           for offset in range(batch)]
            await asyncio.wait_for(asyncio.gather(*futures), 60)
            done += batch
            sent += batch
            on_progress(sent)

    try:
        share = [orders // clients + (1 if index < orders % clients else 0) for index in range(clients)]
        await asyncio.gather(*(one_client(index, count) for index, count in enumerate(share)))
    finally:
        for connection in connections:
            await connection.close()


def run_ioc_memory_benchmark(orders: int, clients: int = 4, window: int = 2000, client_order_id_bytes: int = 16,
                             workdir: str | None = None, restart: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="twinbook-ioc-memory-", dir=workdir) as root:
        node = NodeUnderTest(root, "none", limits=BENCH_LIMITS)
        try:
            pid = node.info["pid"]
            rss_start = rss_bytes(pid)
            cpu_start = cpu_seconds(pid)
            step = max(1, orders // SAMPLES)
            samples: list[list[int]] = []
            next_sample = [step]

            def on_progress(sent: int) -> None:
                if sent >= next_sample[0]:
                    samples.append([sent, rss_bytes(pid)])
                    next_sample[0] += step

            started = time.perf_counter()
            run_async(_send_iocs(node.client_endpoint, orders, clients, window, client_order_id_bytes, on_progress))
            elapsed = time.perf_counter() - started
            rss_end = rss_bytes(pid)
            cpu_used = cpu_seconds(pid) - cpu_start
        finally:
            node.stop()
        rss_restarted = None
        recovery_seconds = None
        if restart:
            started = time.perf_counter()
            again = NodeUnderTest(root, "none", limits=BENCH_LIMITS)
            try:
                recovery_seconds = time.perf_counter() - started
                rss_restarted = rss_bytes(again.info["pid"])
            finally:
                again.stop()
    mebibyte = 1024 * 1024
    return {
        "benchmark": "ioc-memory",
        "orders": orders,
        "clients": clients,
        "window": window,
        "client_order_id_bytes": client_order_id_bytes,
        "rss_start_mib": round(rss_start / mebibyte, 1),
        "rss_end_mib": round(rss_end / mebibyte, 1),
        "rss_growth_bytes_per_order": round((rss_end - rss_start) / orders, 1),
        "rss_samples_mib": [[sent, round(rss / mebibyte, 1)] for sent, rss in samples],
        "rss_after_restart_mib": None if rss_restarted is None else round(rss_restarted / mebibyte, 1),
        "restart_seconds": None if recovery_seconds is None else round(recovery_seconds, 2),
        "orders_per_second": round(orders / elapsed),
        "node_cpu_us_per_order": round(cpu_used * 1e6 / orders, 1),
        "python": platform.python_version(),
    }
