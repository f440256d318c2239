"""`twinbook bench e2e`: the target's configuration end to end, as real processes on loopback.

    load generator (this process) --orders--> primary --link--> sync standby
                     <--acks (released once durable on both nodes)--

The primary runs with durability `always` and sync replication; by default a standby
(`--standby sync`) attaches to it before anything is measured, so every ack waits for
the fsync of both nodes. `--standby none` measures the primary alone (it never waits
for a standby: with no standby ever attached, a fresh primary acknowledges alone).

Phases, in order, each `seconds` long, against the same two processes: one per offered
rate (10,000 and 50,000 orders/s by default; 0 = as fast as the clients' in-flight
windows allow, "max"). For each phase the figures are: orders answered per second, the
places' ack latency p50 / p99 / p99.9 / max (send to receipt, tools/loadgen.py), and the
CPU time (user + system, Linux /proc, 10 ms ticks) per answered order of EACH process:
the primary, the standby, and the load generator itself (time.process_time of this
process), so a reader can tell the node's cost from the sender's and from the machine's
noise. The processes are stopped with SIGTERM at the end and must exit 0.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from tools.bench_failover import HOST, _Node, _wait
from tools.loadgen import LoadParams, plan_load, run_async, run_load

DEFAULT_RATES = (10_000.0, 50_000.0, 0.0)
STANDBY_MODES = ("sync", "none")
ATTACH_SECONDS_MAX = 30.0


def _cpu_per_order_us(before: Optional[float], after: Optional[float], orders: int) -> Optional[float]:
    if before is None or after is None or not orders:
        return None
    return round((after - before) * 1e6 / orders, 2)


def _standby_attached(primary: _Node) -> Optional[dict]:
    status = primary.status()
    return status if status.get("standby_attached") else None


def _phase(primary: _Node, standby: Optional[_Node], params: LoadParams) -> dict:
    """One offered rate: run the load, return its figures and each process's CPU/order
    (the load generator's pre-encoding of the frames happens before, unmeasured)."""
    plan = plan_load(params)
    primary_before = primary.cpu_seconds()
    standby_before = standby.cpu_seconds() if standby is not None else None
    loadgen_before = time.process_time()
    result = run_async(run_load(params, plan))
    loadgen_after = time.process_time()
    primary_after = primary.cpu_seconds()
    standby_after = standby.cpu_seconds() if standby is not None else None
    answered = result.places_answered + result.cancels_answered
    figures = result.figures()
    return {
        "offered_rate": params.rate,
        "orders_per_second": figures["orders_per_second"],
        "orders_answered": answered,
        "unanswered": result.unanswered,
        "gateway_rejected": result.gateway_rejected,
        "ack_p50_us": figures["ack_p50_us"],
        "ack_p99_us": figures["ack_p99_us"],
        "ack_p99_9_us": figures["ack_p99_9_us"],
        "ack_max_us": figures["ack_max_us"],
        "ack_samples": figures["ack_samples"],
        "primary_cpu_us_per_order": _cpu_per_order_us(primary_before, primary_after, answered),
        "standby_cpu_us_per_order": _cpu_per_order_us(standby_before, standby_after, answered),
        "loadgen_cpu_us_per_order": _cpu_per_order_us(loadgen_before, loadgen_after, answered),
    }


def run_e2e_benchmark(
    clients: int = 4,
    seconds: float = 5.0,
    rates: tuple[float, ...] = DEFAULT_RATES,
    standby: str = "sync",
    symbols: tuple[str, ...] = ("AAPL", "MSFT"),
    durability: str = "always",
    workdir: Optional[str] = None,
    in_flight_max: int = 1000,
    seed: int = 1,
    tls: bool = True,
) -> dict:
    """Start the primary (and the standby unless `standby` is "none"), run one phase
    per offered rate, stop both; return the figures (see the module docstring).

    `tls`: mutual TLS on the link and admin ports and TLS on the members' gateway, the
    certificates made in the temporary directory; False: plain TCP everywhere.
    """
    if standby not in STANDBY_MODES:
        raise ValueError(f"standby must be one of {', '.join(STANDBY_MODES)}, not {standby!r}")
    if not rates:
        raise ValueError("give at least one offered rate")
    root = Path(tempfile.mkdtemp(prefix="twinbook-e2e-", dir=workdir))
    nodes: list[_Node] = []
    phases = []
    exit_codes = {}
    try:
        certs = ssl_context = None
        if tls:
            from replica.certs import create_cluster_certificates
            from replica.tls import member_client_context

            certs = root / "certs"
            create_cluster_certificates(str(certs), 1)
            ssl_context = member_client_context(str(certs / "ca.pem"))
        primary = _Node(root, "primary", durability=durability, certs=certs, node_name="a", members_tls=tls)
        nodes.append(primary)
        primary.start("primary")
        standby_node = None
        if standby == "sync":
            standby_node = _Node(root, "standby", durability=durability, certs=certs, node_name="b", members_tls=tls)
            nodes.append(standby_node)
            standby_node.start("standby", "--primary", f"{HOST}:{primary.replication[1]}")
            _wait(lambda: _standby_attached(primary), ATTACH_SECONDS_MAX, "the standby attached")
        for index, rate in enumerate(rates):
            phases.append(_phase(primary, standby_node, LoadParams(
                primary.client, clients=clients, rate=rate, seconds=seconds, symbols=symbols,
                in_flight_max=in_flight_max, seed=seed + index, run_id=f"e2e{seed}r{index}",
                ssl_context=ssl_context,
            )))
        final = primary.status()
        for node in reversed(nodes):  # the standby first: the primary must not see it as lost mid-phase
            node.close_admin()
            exit_codes[node.name] = node.terminate()
    finally:
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.kill()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "e2e",
        "standby": standby,
        "durability": durability,
        "replication": "sync",
        "standby_attached": bool(final.get("standby_attached")),
        "tls": tls,
        "clients": clients,
        "seconds_per_phase": seconds,
        "symbols": ",".join(symbols),
        "in_flight_max_per_client": in_flight_max,
        "phases": phases,
        "max_orders_per_second": max(phase["orders_per_second"] for phase in phases),
        "exit_codes": exit_codes,
        "cpu_count": os.cpu_count(),
        "core": "pure Python statemachine",
    }


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def render_e2e(figures: dict) -> str:
    """The figures as a table: one row per offered rate."""
    columns = (("offered/s", "offered_rate"), ("orders/s", "orders_per_second"), ("p50 us", "ack_p50_us"),
               ("p99 us", "ack_p99_us"), ("p99.9 us", "ack_p99_9_us"), ("max us", "ack_max_us"),
               ("primary us/order", "primary_cpu_us_per_order"), ("standby us/order", "standby_cpu_us_per_order"),
               ("loadgen us/order", "loadgen_cpu_us_per_order"), ("unanswered", "unanswered"))
    lines = [f"bench e2e: primary + standby {figures['standby']}, durability {figures['durability']}, "
             f"tls {figures['tls']}, {figures['clients']} clients, {figures['seconds_per_phase']:g} s per phase, "
             f"exit codes {figures['exit_codes']}"]
    rows = [[title for title, _ in columns]]
    for phase in figures["phases"]:
        row = [_cell(phase[key]) for _, key in columns]
        if not phase["offered_rate"]:
            row[0] = "max"
        rows.append(row)
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


# The sink of `run_sender_benchmark`: a separate process that logs every session on and
# reads and discards whatever follows, answering nothing (so only the sender is measured).
SINK_CODE = """
import asyncio, sys
from replica.protocol import PROTOCOL_VERSION, LogonAccepted, encode_frame

class Sink(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.logged_on = transport, False
    def data_received(self, data):
        if not self.logged_on:
            self.logged_on = True
            self.transport.write(encode_frame(LogonAccepted(1, "sink", PROTOCOL_VERSION, 0, 0)))

async def main():
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))

asyncio.run(main())
"""
SINK_LIFETIME_SECONDS = 600.0


def run_sender_benchmark(clients: int = 4, seconds: float = 2.0, seed: int = 1) -> dict:
    """The load generator alone, unpaced and with an unbounded window, against the sink
    process: orders offered per second and this process's CPU µs per order."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    sink = subprocess.Popen([sys.executable, "-c", SINK_CODE, str(SINK_LIFETIME_SECONDS)], cwd=root,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        port = int(sink.stdout.readline())
        params = LoadParams((HOST, port), clients=clients, rate=0.0, seconds=seconds, seed=seed,
                            run_id=f"sink{seed}", in_flight_max=1 << 30, drain_seconds_max=0.0)
        plan = plan_load(params)
        planned = sum(len(frames) for frames in plan.frames)
        cpu_before = time.process_time()
        result = run_async(run_load(params, plan))
        cpu_seconds = time.process_time() - cpu_before
    finally:
        sink.kill()
        sink.wait(timeout=30)
    sent = result.places_sent + result.cancels_sent
    return {
        "benchmark": "e2e-sender",
        "clients": clients,
        "seconds": seconds,
        "orders_planned": planned,
        "orders_sent": sent,
        "send_seconds": round(result.send_seconds, 3),
        "offered_orders_per_second": round(sent / result.send_seconds, 1) if result.send_seconds else None,
        "loadgen_cpu_us_per_order": round(cpu_seconds * 1e6 / sent, 2) if sent else None,
        "cpu_count": os.cpu_count(),
    }

