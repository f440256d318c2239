"""The failover drill behind `twinbook demo`: a whole cluster, killed and healed, checked.

1. A primary, a standby (sync replication) and a watchdog start as real processes on
   loopback, in a temporary data directory, on free ports, with mutual TLS on the link
   and the admin ports: the cluster's certificates are created first (DIR/certs, as
   `twinbook certs init` does), and the nodes, on embedded defaults, find them through
   $TWINBOOK_CERTS (node A presents node-a, node B node-b, the watchdog its own).
2. Three members trade for a while: limit, market, IOC, iceberg and stop orders, cancels
   and replaces on three instruments, paced, with a live progress line (throughput, ack
   latency, replication lag).
3. The primary is SIGKILLed. The watchdog sees it silent and promotes the standby; the
   clients' library reconnects to it and resubmits what was unanswered; trading goes on.
4. The old primary restarts as a standby of the new primary and rejoins.
5. Checks: every order a client saw acknowledged is in the new primary's journal exactly
   once; the two nodes' digests are equal at the same sequence; their journals verify.
   A summary table, and a non-zero exit if any check fails.

Bounded everywhere: each phase has a deadline, each wait a timeout, every process is
killed at the end whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import journal
from replica.client import OrderClient
from replica.certs import create_cluster_certificates
from replica.tls import ClientCredentials
from replica.watchdog import admin_request
from statemachine import Exchange, OrderAccepted
from statemachine.codec import decode_command
from tools.digests import digest_text
from statemachine.events import OrderRejected
from tools.ports import free_port_base, ports_free

from tools.latency import percentile

MEMBERS = (("M1", "demo-M1"), ("M2", "demo-M2"), ("M3", "demo-M3"))
SYMBOLS = (("AAPL", 19000, 1), ("MSFT", 42000, 1), ("TSLA", 25000, 5))
START_TIMEOUT_SECONDS = 20.0


PORTS_PER_NODE = 4


class DrillPortsTaken(RuntimeError):
    """The ports asked for with --port-base are not free."""


def _twinbook(*arguments: str) -> list[str]:
    return [sys.executable, "-c", "from tools.cli import main; main()", *arguments]


@dataclass
class DrillNode:
    name: str
    data: str
    port_base: int
    process: Optional[subprocess.Popen] = None
    log_path: str = ""
    certs: str = ""  # the cluster's certificates, handed to the process as $TWINBOOK_CERTS

    @property
    def client(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port_base)

    @property
    def replication(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port_base + 2)

    @property
    def admin(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port_base + 3)

    def start(self, *arguments: str) -> None:
        self.log_path = os.path.join(os.path.dirname(self.data), f"{self.name}.log")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(_twinbook(*arguments), stdout=log, stderr=log, start_new_session=True,
                                        env={**os.environ, "TWINBOOK_CERTS": self.certs})

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


async def _status(address: tuple[str, int], credentials) -> Optional[dict]:
    try:
        return await admin_request(address, {"command": "status"}, timeout=1.0, credentials=credentials)
    except (OSError, asyncio.TimeoutError, ValueError, ConnectionError):
        return None


async def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Load:
    acknowledged: dict = field(default_factory=dict)  # (member, client order id) -> order id
    latencies_ns: list = field(default_factory=list)
    sent: int = 0
    rejected: int = 0
    first_ack_after_kill_ns: Optional[int] = None
    kill_ns: Optional[int] = None


async def _trade(client: OrderClient, member: str, load: Load, stop_at: float, rate_per_second: float, seed: int) -> None:
    rng = random.Random(seed)
    counter = 0
    own_orders: list[int] = []
    period = 1.0 / rate_per_second
    next_send = time.monotonic()
    pending = set()

    def answered(future, started_ns, key):
        try:
            event = future.result()
        except Exception:
            return
        now = time.monotonic_ns()
        load.latencies_ns.append(now - started_ns)
        if isinstance(event, OrderAccepted):
            load.acknowledged[key] = event.order_id
            own_orders.append(event.order_id)
            if load.kill_ns is not None and load.first_ack_after_kill_ns is None and started_ns >= load.kill_ns:
                load.first_ack_after_kill_ns = now
        elif isinstance(event, OrderRejected) and event.reason == "duplicate_client_order_id" and event.order_id:
            # A resubmission after failover whose original had been accepted.
            load.acknowledged[key] = event.order_id
        elif isinstance(event, OrderRejected):
            load.rejected += 1

    while time.monotonic() < stop_at:
        now = time.monotonic()
        if now < next_send:
            await asyncio.sleep(next_send - now)
        next_send += period
        counter += 1
        symbol, reference, tick = SYMBOLS[rng.randrange(len(SYMBOLS))]
        roll = rng.random()
        if roll < 0.12 and own_orders:
            client.send_cancel(order_id=own_orders.pop(rng.randrange(len(own_orders))))
            continue
        if roll < 0.17 and own_orders:
            asyncio.ensure_future(client.replace(own_orders[rng.randrange(len(own_orders))], rng.randint(1, 20) * 10))
            continue
        side = "buy" if rng.random() < 0.5 else "sell"
        offset = rng.randint(-8, 8) * tick
        fields: dict = {"price": reference + offset}
        order_type = "limit"
        if roll < 0.25:
            order_type, fields = "market", {}
        elif roll < 0.30:
            fields["tif"] = "ioc"
        elif roll < 0.35:
            fields["display_qty"] = 10
        elif roll < 0.38:
            order_type = "stop_limit"
            fields["stop_price"] = reference + (4 if side == "buy" else -4) * tick
        client_order_id = f"{member}-{seed}-{counter}"
        key = (member, client_order_id)
        started_ns = time.monotonic_ns()
        future = client.send_place(client_order_id, symbol, side, order_type, rng.randint(2, 12) * 10, **fields)
        load.sent += 1
        future.add_done_callback(lambda f, s=started_ns, k=key: answered(f, s, k))
        pending.add(future)
        future.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)


def _accepted_in_journal(journal_directory: str) -> tuple[dict, int]:
    """(member, client order id) -> times accepted, by replaying the journal read-only."""
    exchange = Exchange()
    counts: dict = {}
    last = 0
    for batch in journal.read_tuple_batches(journal_directory, live=True):
        for sequence, _epoch, timestamp_ns, body in batch:
            for event in exchange.apply(sequence, timestamp_ns, decode_command(body)):
                if type(event) is OrderAccepted:
                    key = (event.member, event.client_order_id)
                    counts[key] = counts.get(key, 0) + 1
            last = sequence
    return counts, last


async def run_drill(seconds: float = 24.0, keep: Optional[str] = None, rate_per_second: float = 1500.0,
                    say: Callable[[str], None] = print, progress: Callable[[str], None] = print,
                    port_base: Optional[int] = None, timeout_ms: int = 400) -> tuple[bool, dict]:
    """The drill; node A takes ports `port_base`..+3 and node B the next four (a free
    run below the ephemeral range when not given); the watchdog's timeout is
    `timeout_ms`."""
    if port_base is None:
        port_base = free_port_base(2 * PORTS_PER_NODE)
    elif not ports_free(port_base, 2 * PORTS_PER_NODE):
        raise DrillPortsTaken(f"ports {port_base}..{port_base + 2 * PORTS_PER_NODE - 1} are not all free")
    root = keep or tempfile.mkdtemp(prefix="twinbook-demo-")
    os.makedirs(root, exist_ok=True)
    certs = os.path.join(root, "certs")
    if not os.path.exists(os.path.join(certs, "ca.pem")):  # a --keep directory run again keeps its CA
        create_cluster_certificates(certs, 1, ("a", "b"))
    credentials = ClientCredentials.load(certs, "operator")
    first = DrillNode("node-a", os.path.join(root, "node-a"), port_base, certs=certs)
    second = DrillNode("node-b", os.path.join(root, "node-b"), port_base + PORTS_PER_NODE, certs=certs)
    watchdog = DrillNode("watchdog", os.path.join(root, "watchdog"), 0, certs=certs)
    nodes = [first, second, watchdog]
    summary: dict = {"data": root, "watchdog_timeout_ms": timeout_ms}
    clients: list[OrderClient] = []
    try:
        say(f"data in {root}; node A ports {first.port_base}-{first.port_base + 3}, "
            f"node B ports {second.port_base}-{second.port_base + 3}")
        say(f"mutual TLS on the replication link and the admin ports: cluster certificates in {certs}")
        first.start("primary", "--data", first.data, "--port-base", str(first.port_base), "--replication", "sync")
        await _wait_for(lambda: _status(first.admin, credentials), START_TIMEOUT_SECONDS, "the primary")
        say("primary A up")
        second.start("standby", "--data", second.data, "--primary", f"127.0.0.1:{first.port_base + 2}",
                     "--port-base", str(second.port_base))

        async def standby_attached():
            status = await _status(first.admin, credentials)
            return status and status.get("standby_attached")

        await _wait_for(standby_attached, START_TIMEOUT_SECONDS, "the standby to attach")
        say("standby B attached (sync replication: every acknowledgement waits for both disks)")
        watchdog.start("watchdog", "--primary", f"127.0.0.1:{first.port_base + 3}",
                       "--standby", f"127.0.0.1:{second.port_base + 3}", "--timeout-ms", str(timeout_ms),
                       "--seconds", str(int(seconds * 3) + 30))
        say(f"watchdog up (timeout {timeout_ms} ms)")

        load = Load()
        for member, token in MEMBERS:
            client = OrderClient([first.client, second.client], member, token)
            await asyncio.wait_for(client.connect(), 10)
            clients.append(client)
        started = time.monotonic()
        stop_at = started + seconds
        traders = [asyncio.ensure_future(_trade(client, member, load, stop_at, rate_per_second / len(clients), index))
                   for index, (client, (member, _)) in enumerate(zip(clients, MEMBERS))]
        kill_at = started + seconds * 0.4
        rejoin_at = started + seconds * 0.65
        killed = rejoined = False
        last_line = 0.0
        primary_admin = first.admin
        while not all(trader.done() for trader in traders):
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if not killed and now >= kill_at:
                load.kill_ns = time.monotonic_ns()
                first.kill()
                killed = True
                primary_admin = second.admin
                say(f"\nSIGKILL primary A at {now - started:.1f} s, with {len(load.acknowledged)} orders acknowledged")
            if killed and not rejoined and now >= rejoin_at:
                first.start("standby", "--data", first.data, "--primary", f"127.0.0.1:{second.port_base + 2}",
                            "--port-base", str(first.port_base), "--node-name", "a")
                rejoined = True
                say(f"\nrestarted A as a standby of B at {now - started:.1f} s")
            if now - last_line >= 0.5:
                last_line = now
                status = await _status(primary_admin, credentials)
                lag = "-"
                role = "down"
                if status:
                    role = f"{'B' if primary_admin == second.admin else 'A'} {status.get('role')} epoch {status.get('epoch')}"
                    if status.get("standby_attached"):
                        lag = str(status["last_sequence"] - status["standby_durable_sequence"])
                    else:
                        lag = "no standby"
                recent = load.latencies_ns[-2000:]
                progress(
                    f"\r{now - started:5.1f} s  acked {len(load.acknowledged):6d}  "
                    f"{len(load.acknowledged) / max(0.1, now - started):7.0f} orders/s  "
                    f"ack p50 {percentile(recent, 0.5, 0) / 1e6:6.2f} ms p99 {percentile(recent, 0.99, 0) / 1e6:6.2f} ms  "
                    f"replication lag {lag:>10}  [{role}]   "
                )
        say("")
        elapsed = time.monotonic() - started
        for client in clients:
            await asyncio.wait_for(client.close(), 10)
        clients = []

        async def caught_up():
            a = await _status(first.admin, credentials)
            b = await _status(second.admin, credentials)
            if a and b and a.get("role") == "standby" and b.get("role") == "primary":
                if a["applied_sequence"] == b["last_sequence"] == b["applied_sequence"]:
                    return a, b
            return None

        try:
            a_status, b_status = await _wait_for(caught_up, 60, "the old primary to rejoin and catch up")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{_log_tails(nodes)}") from None
        snapshot = await admin_request(second.admin, {"command": "snapshot"}, timeout=5, credentials=credentials)
        await asyncio.sleep(0.5)
        counts, b_last = _accepted_in_journal(os.path.join(second.data, "journal"))
        missing = [key for key in load.acknowledged if counts.get(key, 0) == 0]
        duplicated = [key for key in load.acknowledged if counts.get(key, 0) > 1]
        failover_ms = None
        if load.first_ack_after_kill_ns is not None and load.kill_ns is not None:
            failover_ms = (load.first_ack_after_kill_ns - load.kill_ns) / 1e6
        journal_bytes = sum(os.path.getsize(os.path.join(second.data, "journal", name))
                            for name in os.listdir(os.path.join(second.data, "journal")) if name.endswith(".journal"))
        divergent = [name for name in os.listdir(os.path.join(first.data, "journal")) if name.endswith(".divergent")]
        summary.update({
            "orders_sent": load.sent,
            "orders_acknowledged": len(load.acknowledged),
            "orders_found_exactly_once": len(load.acknowledged) - len(missing) - len(duplicated),
            "orders_lost": len(missing),
            "orders_duplicated": len(duplicated),
            "rejected_by_rules": load.rejected,
            "failover_ms": failover_ms,
            "throughput_orders_per_second": round(len(load.acknowledged) / elapsed),
            "ack_latency_ms": {"p50": percentile(load.latencies_ns, 0.5, 0) / 1e6, "p99": percentile(load.latencies_ns, 0.99, 0) / 1e6,
                               "p99.9": percentile(load.latencies_ns, 0.999, 0) / 1e6, "max": percentile(load.latencies_ns, 1.0, 0) / 1e6},
            "final_primary": "B", "final_epoch": b_status["epoch"], "final_sequence": b_last,
            "digest_primary_b": b_status["state_digest"], "digest_standby_a": a_status["state_digest"],
            "digests_equal": a_status["state_digest"] == b_status["state_digest"]
            and a_status["applied_sequence"] == b_status["applied_sequence"],
            "journal_bytes": journal_bytes,
            "divergent_tail_files": divergent,
            "snapshot_started": bool(snapshot.get("snapshot_started")),
        })
        checks = {
            "every acknowledged order is on the final primary exactly once": not missing and not duplicated,
            "both nodes have the same state digest at the same sequence": summary["digests_equal"],
            "the standby was promoted and took orders after the kill": failover_ms is not None,
        }
        summary["checks"] = checks
        return all(checks.values()), summary
    finally:
        for client in clients:
            try:
                await asyncio.wait_for(client.close(), 5)
            except Exception:
                pass
        for node in (watchdog, first, second):
            node.terminate()
        if first.process is not None and os.path.isdir(first.data):
            summary["snapshots_on_b"] = _count_snapshots(second.data)
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _log_tails(nodes: list, lines: int = 15) -> str:
    """The last lines of each process's log, for a failure message that explains itself."""
    parts = []
    for node in nodes:
        if node.log_path and os.path.exists(node.log_path):
            with open(node.log_path, "rb") as handle:
                tail = handle.read().decode(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {node.name} (exit {node.process.poll() if node.process else None}):\n" + "\n".join(tail))
    return "\n".join(parts)


def _count_snapshots(data: str) -> int:
    import snapshots

    path = os.path.join(data, "snapshots")
    if not os.path.isdir(path):
        return 0
    store = snapshots.SnapshotStore(path, readonly=True)
    try:
        return len(store.list())
    finally:
        store.close()


def format_summary(ok: bool, summary: dict) -> str:
    latency = summary.get("ack_latency_ms", {})
    rows = [
        ("orders sent", summary.get("orders_sent")),
        ("orders acknowledged", summary.get("orders_acknowledged")),
        ("found exactly once on the final primary", summary.get("orders_found_exactly_once")),
        ("lost / duplicated", f"{summary.get('orders_lost')} / {summary.get('orders_duplicated')}"),
        ("rejected by the rules (e.g. price band)", summary.get("rejected_by_rules")),
        ("failover: SIGKILL -> first ack on B", f"{summary.get('failover_ms'):.0f} ms" if summary.get("failover_ms") else "none"),
        ("throughput", f"{summary.get('throughput_orders_per_second')} orders/s"),
        ("ack latency p50 / p99 / p99.9 / max",
         f"{latency.get('p50', 0):.2f} / {latency.get('p99', 0):.2f} / {latency.get('p99.9', 0):.2f} / {latency.get('max', 0):.1f} ms"),
        ("final primary, epoch, sequence", f"{summary.get('final_primary')}, {summary.get('final_epoch')}, {summary.get('final_sequence')}"),
        ("state digest B (primary) / A (standby)",
         f"{digest_text(summary.get('digest_primary_b', 0))} / {digest_text(summary.get('digest_standby_a', 0))}"),
        ("journal size on B", f"{summary.get('journal_bytes')} bytes"),
        ("snapshots on B", summary.get("snapshots_on_b")),
        ("divergent tail kept on A", ", ".join(summary.get("divergent_tail_files") or []) or "none (nothing unacknowledged)"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["", "failover drill summary", "-" * (width + 30)]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    lines.append("-" * (width + 30))
    for check, passed in summary.get("checks", {}).items():
        lines.append(f"{'PASS' if passed else 'FAIL'}  {check}")
    lines.append("drill " + ("PASSED" if ok else "FAILED") + f"; data: {summary.get('data')}")
    return "\n".join(lines)
