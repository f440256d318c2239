"""The failover benchmark: real primary, standby and watchdog processes on loopback.

Failover (sync replication, durability `always`):
* a primary, a standby attached to it, and `twinbook watchdog` with the given heartbeat
  timeout start in a temporary directory (free loopback ports, a TOML config each);
* `clients` OrderClients (endpoints: the primary's client port, then the standby's) send
  pipelined limit orders for `load_seconds`, while both admin ports are sampled every
  `sample_period_ms` for the replication lag (the primary's last sequence against the
  standby's durable and applied sequences, in records);
* the primary is SIGKILLed; then measured from that instant:
    - `promotion_ms`: until the standby's admin port answers with role `primary`;
    - `standby_accepting_ms`: until a probe client (connecting every few ms to the
      standby's client port) has an order acknowledged by the promoted standby: the
      design target "standby accepting orders in <= 1 s";
    - `client_failover_ms`: until the load clients (OrderClient's own reconnection,
      backoff included) have their first order acknowledged by the new primary;
* the clients go on for `after_seconds`, every answer is awaited, the new primary is
  stopped and its journal replayed: `orders_lost` counts orders a client saw
  acknowledged that are not accepted there (must be 0), `orders_duplicated` client order
  ids accepted more than once or under another order id (must be 0).

Catch-up: a primary is started on a journal of `catch_up_records` records of the core
mixed workload (written directly, not timed); a standby is then started from nothing and
the time from its admin port first answering until its durable (then applied) sequence
reaches the primary's gives records/s; the journals are checked byte-identical.

Latencies are `_ns` (per-order acknowledgement latency) or `_ms` (failover times), lags
are in records, rates per second.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from replica.config import WindowConfig
from tools.ports import free_ports

from tools.latency import percentile

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MEMBERS = ("M1", "M2", "M3")
PROBE_MEMBER = "M4"
START_TIMEOUT_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------- processes


def _die_with_parent() -> None:  # in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class _Node:
    """One node's data directory, config, log and (while running) process."""

    def __init__(self, root: Path, name: str, *, durability: str = "always", replication: str = "sync",
                 certs: Optional[Path] = None, node_name: str = "a",
                 window_records_max: Optional[int] = None, members_tls: bool = False) -> None:
        # `certs`: the cluster's `certs init` directory (mutual TLS on the link and the admin
        # port; `members_tls`: on the members' gateway too); None: [tls] enabled = false.
        from replica.tls import ClientCredentials

        self.name = name
        self.certs = certs
        self.credentials = None if certs is None else ClientCredentials.load(str(certs), "operator")
        self.data_dir = root / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / f"{name}.log"
        self.config_path = root / f"{name}.toml"
        client, feed, replication_port, admin = free_ports(4)
        self.client = (HOST, client)
        self.replication = (HOST, replication_port)
        self.admin = (HOST, admin)
        self.config_path.write_text(
            "[node]\n"
            f'host = "{HOST}"\nclient_port = {client}\nfeed_port = {feed}\n'
            f"replication_port = {replication_port}\nadmin_port = {admin}\n"
            f'durability = "{durability}"\nreplication = "{replication}"\n'
            "[limits]\nmessages_per_second = 1000000\nburst_messages = 2000000\n"
            + ("[tls]\nenabled = false\n" if certs is None else f'[tls]\ndirectory = "{certs}"\nnode = "{node_name}"\n'
                                                               + ("members = true\n" if members_tls else ""))
            + ("" if window_records_max is None else f"[window]\nrecords_max = {window_records_max}\n")
        )
        self.process: Optional[subprocess.Popen] = None
        self._admin_socket = None

    def launch(self, *arguments: str) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from tools.cli import main; main()", *arguments,
                 "--data", str(self.data_dir), "--config", str(self.config_path)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )

    def start(self, *arguments: str, timeout: float = START_TIMEOUT_SECONDS) -> "_Node":
        node_file = self.data_dir / "node.json"
        node_file.unlink(missing_ok=True)
        self.launch(*arguments)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} at start:\n{self.log()}")
            try:
                if json.loads(node_file.read_text()).get("pid") == self.process.pid:
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not start within {timeout} s:\n{self.log()}")

    def admin_arguments(self, identity: str) -> list[str]:
        """The certificate options of an admin CLI command for this node."""
        return ["--no-tls"] if self.certs is None else ["--certs", str(self.certs), "--identity", identity]

    def status(self) -> dict:
        # One admin connection, kept: the catch-up polls every 5 ms, and a TLS handshake
        # per poll would be measured as the cost of TLS on the link.
        for attempt in range(2):
            try:
                if self._admin_socket is None:
                    raw = socket.create_connection(self.admin, timeout=10)
                    self._admin_socket = raw if self.credentials is None else self.credentials.context.wrap_socket(raw)
                self._admin_socket.sendall(b'{"command": "status"}\n')
                data = b""
                while not data.endswith(b"\n"):
                    chunk = self._admin_socket.recv(1 << 16)
                    if not chunk:
                        raise ConnectionError(f"{self.name}'s admin port closed the connection")
                    data += chunk
                return json.loads(data)
            except (OSError, ValueError):
                self.close_admin()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close_admin(self) -> None:
        if self._admin_socket is not None:
            self._admin_socket.close()
            self._admin_socket = None

    def cpu_seconds(self) -> Optional[float]:
        from tools.loadgen import process_cpu_seconds

        return process_cpu_seconds(self.process.pid)

    def kill(self) -> None:
        self.close_admin()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=15)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.name} ignored SIGTERM:\n{self.log()}") from None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"{what} not reached within {timeout} s")


def _caught_up(primary: _Node, standby: _Node) -> Optional[tuple[dict, dict]]:
    mine, theirs = primary.status(), standby.status()
    if mine["last_sequence"] == theirs["durable_sequence"] == theirs["applied_sequence"]:
        return mine, theirs
    return None


def _journal_bytes(node: _Node) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((node.data_dir / "journal").glob("*.journal"))}


# ---------------------------------------------------------------- failover


async def _admin(node: _Node, timeout: float = 1.0) -> dict:
    from replica.watchdog import admin_request

    return await admin_request(node.admin, {"command": "status"}, timeout, credentials=node.credentials)


class _Load:
    """Pipelined places from several clients; every answer recorded with its time."""

    def __init__(self) -> None:
        self.acknowledged: dict[tuple[str, str], int] = {}
        self.conflicts = 0
        self.answers: list[tuple[int, int]] = []  # (monotonic ns of the answer, journal sequence)
        self.latencies_ns: list[int] = []
        self.other_answers: dict[str, int] = {}
        self.failures = 0
        self.futures: list = []
        self.stop = asyncio.Event()

    def _answered(self, member: str, client_order_id: str, sent_ns: int, future) -> None:
        from replica.client import was_accepted_before
        from statemachine.events import OrderAccepted

        now_ns = time.monotonic_ns()
        if future.cancelled():
            return
        if future.exception() is not None:
            self.failures += 1
            return
        event = future.result()
        if type(event) is OrderAccepted or was_accepted_before(event):
            key = (member, client_order_id)
            if self.acknowledged.setdefault(key, event.order_id) != event.order_id:
                self.conflicts += 1
            self.answers.append((now_ns, event.seq))
            self.latencies_ns.append(now_ns - sent_ns)
        else:
            reason = getattr(event, "reason", type(event).__name__)
            self.other_answers[reason] = self.other_answers.get(reason, 0) + 1

    async def send(self, client, prefix: str, seed: int, in_flight_max: int) -> None:
        rng = random.Random(seed)
        in_flight: set = set()
        for index in range(10_000_000):
            if self.stop.is_set():
                return
            symbol = rng.choice(("AAPL", "MSFT"))
            reference = 19000 if symbol == "AAPL" else 42000
            client_order_id = f"{prefix}-{index}"
            sent_ns = time.monotonic_ns()
            future = client.send_place(client_order_id, symbol, rng.choice(("buy", "sell")), "limit",
                                       rng.randint(1, 9), price=reference + rng.randint(-30, 30))
            future.add_done_callback(
                lambda done, member=client.member, key=client_order_id, at=sent_ns: self._answered(member, key, at, done))
            self.futures.append(future)
            in_flight.add(future)
            future.add_done_callback(in_flight.discard)
            if len(in_flight) >= in_flight_max:
                await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED, timeout=0.5)


async def _sample_lag(primary: _Node, standby: _Node, period_seconds: float, samples: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            mine, theirs = await asyncio.gather(_admin(primary), _admin(standby))
            samples.append((mine["last_sequence"], mine["released_sequence"],
                            theirs["durable_sequence"], theirs["applied_sequence"]))
        except (OSError, asyncio.TimeoutError, ValueError, KeyError):
            pass
        try:
            await asyncio.wait_for(stop.wait(), period_seconds)
        except asyncio.TimeoutError:
            pass


async def _probe_until_accepted(standby: _Node, deadline_seconds: float) -> Optional[int]:
    """Connect to the standby's client port every few ms; once it is a primary, place
    one order; the monotonic ns of its acknowledgement (None if it never came)."""
    from replica.client import OrderClient
    from statemachine.events import OrderAccepted

    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*standby.client), 0.5)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.003)
            continue
        writer.close()
        client = OrderClient([standby.client], PROBE_MEMBER, f"demo-{PROBE_MEMBER}")
        try:
            await asyncio.wait_for(client.connect(), 10)
            answer = await asyncio.wait_for(client.place("probe-1", "AAPL", "buy", "limit", 1, price=18000), 10)
            if type(answer) is OrderAccepted:
                return time.monotonic_ns()
            return None
        finally:
            await client.close()
    return None


def _failover(root: Path, *, heartbeat_timeout_ms: int, load_seconds: float, after_seconds: float, clients: int,
              window_records_max: Optional[int],
              in_flight_per_client: int, sample_period_ms: int, seed: int, certs: Optional[Path]) -> dict:
    from replica.client import OrderClient

    primary = _Node(root, "primary", certs=certs, node_name="a", window_records_max=window_records_max)
    standby = _Node(root, "standby", certs=certs, node_name="b", window_records_max=window_records_max)
    watchdog_log = root / "watchdog.log"
    watchdog: Optional[subprocess.Popen] = None
    try:
        primary.start("primary")
        standby.start("standby", "--primary", f"{primary.replication[0]}:{primary.replication[1]}")
        _wait(lambda: _caught_up(primary, standby), 30, "the standby attached")
        with open(watchdog_log, "ab") as log:
            watchdog = subprocess.Popen(
                [sys.executable, "-c", "from tools.cli import main; main()", "watchdog",
                 "--primary", f"{HOST}:{primary.admin[1]}", "--standby", f"{HOST}:{standby.admin[1]}",
                 "--timeout-ms", str(heartbeat_timeout_ms), *primary.admin_arguments("watchdog")],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )
        _wait(lambda: "primary alive" in watchdog_log.read_text(errors="replace"), 30, "the watchdog watching")

        load = _Load()
        lag_samples: list = []
        marks: dict = {}

        async def drive() -> None:
            order_clients = [OrderClient([primary.client, standby.client], MEMBERS[index % len(MEMBERS)],
                                         f"demo-{MEMBERS[index % len(MEMBERS)]}") for index in range(clients)]
            for client in order_clients:
                await asyncio.wait_for(client.connect(), 15)
            sampler_stop = asyncio.Event()
            sampler = asyncio.ensure_future(_sample_lag(primary, standby, sample_period_ms / 1000, lag_samples, sampler_stop))
            senders = [asyncio.ensure_future(load.send(client, f"c{index}", seed + index, in_flight_per_client))
                       for index, client in enumerate(order_clients)]
            started_ns = time.monotonic_ns()
            await asyncio.sleep(load_seconds)
            sampler_stop.set()
            await sampler
            marks["load_ns"] = time.monotonic_ns() - started_ns
            marks["acknowledged_before_kill"] = len(load.answers)
            marks["kill_ns"] = time.monotonic_ns()
            os.kill(primary.process.pid, signal.SIGKILL)
            probe = asyncio.ensure_future(_probe_until_accepted(standby, 30))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if (await _admin(standby, 0.2)).get("role") == "primary":
                        marks["promoted_ns"] = time.monotonic_ns()
                        break
                except (OSError, asyncio.TimeoutError, ValueError):
                    pass
                await asyncio.sleep(0.002)
            marks["probe_ns"] = await probe
            await asyncio.sleep(after_seconds)
            load.stop.set()
            await asyncio.gather(*senders)
            pending = [future for future in load.futures if not future.done()]
            if pending:
                await asyncio.wait(pending, timeout=30)
            marks["unanswered"] = sum(1 for future in load.futures if not future.done())
            marks["reconnects"] = sum(client.reconnects for client in order_clients)
            for client in order_clients:
                await asyncio.wait_for(client.close(), 5)

        asyncio.run(asyncio.wait_for(drive(), load_seconds + after_seconds + 180))
        primary.kill()
        try:
            watchdog.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        watchdog_text = watchdog_log.read_text(errors="replace")
        final = standby.status()
        if final.get("role") != "primary":
            raise RuntimeError(f"the standby was not promoted:\n{watchdog_text}\n{standby.log()}")
        standby.terminate()
        accepted, epoch_start = _replay_accepted(standby.data_dir / "journal")
    finally:
        if watchdog is not None and watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait(timeout=15)
        primary.kill()
        standby.kill()

    lost = sum(1 for key in load.acknowledged if key not in accepted)
    duplicated = sum(1 for ids in accepted.values() if len(ids) > 1)
    duplicated += sum(1 for key, order_id in load.acknowledged.items() if key in accepted and accepted[key][0] != order_id)
    duplicated += load.conflicts
    kill_ns = marks["kill_ns"]
    new_primary_answers = [at for at, sequence in load.answers if sequence >= epoch_start and at >= kill_ns]
    before_kill = [latency for (at, _), latency in zip(load.answers, load.latencies_ns) if at < kill_ns]
    durable_lag = [max(0, last - durable) for last, _, durable, _ in lag_samples]
    applied_lag = [max(0, last - applied) for last, _, _, applied in lag_samples]
    unreleased = [max(0, last - released) for last, released, _, _ in lag_samples]
    silent = re.search(r"primary silent (\d+) ms", watchdog_text)
    elapsed = re.search(r"'elapsed_ms': ([0-9.]+)", watchdog_text)

    def ms(ns: Optional[int]) -> Optional[float]:
        return None if ns is None else round((ns - kill_ns) / 1e6, 1)

    return {
        "promotion_ms": ms(marks.get("promoted_ns")),
        "standby_accepting_ms": ms(marks.get("probe_ns")),
        "client_failover_ms": ms(min(new_primary_answers)) if new_primary_answers else None,
        "watchdog_detected_silence_ms": int(silent.group(1)) if silent else None,
        "promote_in_process_ms": float(elapsed.group(1)) if elapsed else None,
        "orders_acknowledged": len(load.acknowledged),
        "orders_acknowledged_before_kill": marks["acknowledged_before_kill"],
        "orders_lost": lost,
        "orders_duplicated": duplicated,
        "orders_unanswered": marks["unanswered"],
        "orders_failed": load.failures,
        "other_answers": dict(load.other_answers),
        "client_reconnects": marks["reconnects"],
        "load_orders_per_second": round(marks["acknowledged_before_kill"] / (marks["load_ns"] / 1e9), 1),
        "ack_latency_p50_ns": percentile(before_kill, 0.50, None),
        "ack_latency_p99_ns": percentile(before_kill, 0.99, None),
        "lag_samples": len(lag_samples),
        "replication_lag_durable_p50_records": percentile(durable_lag, 0.50, None),
        "replication_lag_durable_p99_records": percentile(durable_lag, 0.99, None),
        "replication_lag_durable_max_records": max(durable_lag) if durable_lag else None,
        "replication_lag_applied_p99_records": percentile(applied_lag, 0.99, None),
        "unreleased_p99_records": percentile(unreleased, 0.99, None),
        "new_primary_epoch": final["epoch"],
        "new_primary_last_sequence": final["last_sequence"],
    }


def _replay_accepted(journal_directory: Path) -> tuple[dict[tuple[str, str], list[int]], int]:
    """Accepted order ids by (member, client order id) on a journal; and the sequence of
    its first record of the newest epoch (the promoted node's epoch start)."""
    import journal
    from statemachine import Exchange
    from statemachine.codec import decode_command
    from statemachine.events import OrderAccepted

    exchange = Exchange()
    accepted: dict[tuple[str, str], list[int]] = {}
    epoch, epoch_start = -1, 0
    for batch in journal.read_tuple_batches(journal_directory):
        for sequence, record_epoch, timestamp_ns, body in batch:
            if record_epoch > epoch:
                epoch, epoch_start = record_epoch, sequence
            for event in exchange.apply(sequence, timestamp_ns, decode_command(body)):
                if type(event) is OrderAccepted:
                    accepted.setdefault((event.member, event.client_order_id), []).append(event.order_id)
    return accepted, epoch_start


# ---------------------------------------------------------------- catch-up


def _write_workload_journal(journal_directory: Path, records: int, seed: int) -> int:
    import journal
    from statemachine import Checkpoint
    from statemachine.codec import encode_command
    from statemachine.version import RULES_VERSION
    from tools.bench_core import generate_workload

    commands = [Checkpoint(kind="rules", version=RULES_VERSION)] + generate_workload(max(1, records - 2), seed)
    writer = journal.JournalWriter.open(journal_directory, 1, durability="none")
    try:
        for index, command in enumerate(commands):
            writer.append(0, 1_000_000 + index, encode_command(command))
            if writer.pending_count >= 10_000:
                writer.commit()
        writer.commit()
        writer.sync()
        return writer.last_sequence
    finally:
        writer.close()


def _catch_up(root: Path, *, records: int, seed: int, certs: Optional[Path]) -> dict:
    from replica.data_directory import DataDirectory

    primary = _Node(root, "catchup-primary", certs=certs, node_name="a")
    standby = _Node(root, "catchup-standby", certs=certs, node_name="b")
    try:
        written = _write_workload_journal(Path(DataDirectory.create(str(primary.data_dir)).journal), records, seed)
        primary.start("primary")
        target = primary.status()["last_sequence"]
        launched = time.monotonic_ns()
        standby.launch("standby", "--primary", f"{primary.replication[0]}:{primary.replication[1]}")
        admin_up = durable_at = applied_at = None
        cpu_at_admin_up = None
        deadline = time.monotonic() + max(120.0, records / 5_000)
        while time.monotonic() < deadline and applied_at is None:
            if standby.process.poll() is not None:
                raise RuntimeError(f"the catch-up standby exited:\n{standby.log()}")
            try:
                status = standby.status()
            except (OSError, ValueError):
                time.sleep(0.005)
                continue
            now = time.monotonic_ns()
            if admin_up is None:
                admin_up = now
                cpu_at_admin_up = (primary.cpu_seconds(), standby.cpu_seconds())
            if durable_at is None and status["durable_sequence"] >= target:
                durable_at = now
            if status["applied_sequence"] >= target:
                applied_at = now
                cpu_at_applied = (primary.cpu_seconds(), standby.cpu_seconds())
            time.sleep(0.005)
        if applied_at is None:
            raise RuntimeError(f"the standby did not catch up {target} records in time:\n{standby.log()}")
        # The primary may journal a digest checkpoint meanwhile: compare once both rest.
        def identical_now() -> bool:
            both = _caught_up(primary, standby)
            return bool(both and both[0]["state_digest"] == both[1]["state_digest"]
                        and _journal_bytes(primary) == _journal_bytes(standby))

        try:
            identical = _wait(identical_now, 10, "identical journals")
        except RuntimeError:
            identical = False
    finally:
        primary.kill()
        standby.kill()
    durable_seconds = (durable_at - admin_up) / 1e9
    applied_seconds = (applied_at - admin_up) / 1e9

    def cpu_us_per_record(index: int) -> Optional[float]:
        if None in (cpu_at_admin_up[index], cpu_at_applied[index]):
            return None
        return round((cpu_at_applied[index] - cpu_at_admin_up[index]) * 1e6 / target, 2)

    return {
        "catch_up_records": target,
        "catch_up_journal_written_records": written,
        "catch_up_durable_seconds": round(durable_seconds, 3),
        "catch_up_applied_seconds": round(applied_seconds, 3),
        "catch_up_durable_records_per_second": round(target / durable_seconds, 1) if durable_seconds > 0 else None,
        "catch_up_applied_records_per_second": round(target / applied_seconds, 1) if applied_seconds > 0 else None,
        "catch_up_from_launch_seconds": round((applied_at - launched) / 1e9, 3),
        "catch_up_identical": identical,
        # CPU (user + system) from the standby's admin port first answering until it had
        # applied everything, per record caught up (the clock-tick granularity, 10 ms,
        # makes these approximate below a second of catch-up).
        "catch_up_primary_cpu_us_per_record": cpu_us_per_record(0),
        "catch_up_standby_cpu_us_per_record": cpu_us_per_record(1),
    }


# ---------------------------------------------------------------- entry points


def run_failover_benchmark(
    *,
    heartbeat_timeout_ms: int = 400,
    load_seconds: float = 2.0,
    clients: int = 2,
    after_seconds: float = 1.0,
    in_flight_per_client: int = 32,
    sample_period_ms: int = 50,
    catch_up_records: int = 200_000,
    seed: int = 1,
    workdir: Optional[str] = None,
    keep: bool = False,
    tls: bool = True,
    window_records_max: Optional[int] = None,
) -> dict:
    """Run the failover and catch-up measurements; returns their figures and parameters.

    `tls` (the default, as in production): the cluster's certificates are created in the
    temporary directory and the link, the admin port and the watchdog use mutual TLS;
    False runs everything in plain TCP, to measure what TLS costs.
    `catch_up_records=0` skips the catch-up part. `keep` leaves the temporary directory
    (data, configs, logs) in place and names it in the result.
    """
    if not 50 <= heartbeat_timeout_ms <= 600_000:
        raise ValueError("heartbeat_timeout_ms must be within 50..600000")
    if clients < 1 or load_seconds <= 0 or after_seconds < 0 or in_flight_per_client < 1 or sample_period_ms < 1:
        raise ValueError("clients, in_flight_per_client and sample_period_ms must be >= 1, load_seconds > 0")
    root = Path(tempfile.mkdtemp(prefix="twinbook-bench-failover-", dir=workdir))
    try:
        certs = None
        if tls:
            from replica.certs import create_cluster_certificates

            certs = root / "certs"
            create_cluster_certificates(str(certs), 1)
        figures = _failover(root, heartbeat_timeout_ms=heartbeat_timeout_ms, load_seconds=load_seconds,
                            after_seconds=after_seconds, clients=clients, in_flight_per_client=in_flight_per_client,
                            sample_period_ms=sample_period_ms, seed=seed, certs=certs,
                            window_records_max=window_records_max)
        if catch_up_records > 0:
            figures.update(_catch_up(root, records=catch_up_records, seed=seed, certs=certs))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    figures.update({
        "heartbeat_timeout_ms": heartbeat_timeout_ms,
        "load_seconds": load_seconds,
        "after_seconds": after_seconds,
        "clients": clients,
        "in_flight_per_client": in_flight_per_client,
        "sample_period_ms": sample_period_ms,
        "replication": "sync",
        "durability": "always",
        "tls": tls,
        "window_records_max": window_records_max or WindowConfig().records_max,
        "seed": seed,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    })
    if keep:
        figures["workdir"] = str(root)
    return figures


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeat-timeout-ms", type=int, default=400)
    parser.add_argument("--load-seconds", type=float, default=2.0)
    parser.add_argument("--after-seconds", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=32, dest="in_flight_per_client")
    parser.add_argument("--sample-period-ms", type=int, default=50)
    parser.add_argument("--catch-up-records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary data, configs and logs.")
    parser.add_argument("--no-tls", action="store_false", dest="tls", help="Plain TCP (to measure what TLS costs).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    arguments = vars(parser.parse_args(argv))
    as_json = arguments.pop("json")
    figures = run_failover_benchmark(**arguments)
    if as_json:
        print(json.dumps(figures, sort_keys=True))
    else:
        width = max(len(key) for key in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0 if figures["orders_lost"] == 0 and figures["orders_duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
