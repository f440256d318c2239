"""Real primary processes on loopback for the end-to-end node tests.

`start_node` (a pytest fixture) runs `twinbook primary` as a child process with a TOML
config written here (fixed loopback ports chosen free at first start, so a restart on
the same data directory comes back on the same ports and the client library can
reconnect), waits for DIR/node.json to name the new pid, and kills every node it
started at teardown. TLS is on, as in production: every config gets a [tls] table naming
the session's certificates (`certificates`, created once per cluster id per session:
tests/conftest.py points it at a session temp dir), and the admin helpers present the
operator certificate. Everything is bounded in time: starting, stopping, admin requests,
and `run()` which drives a coroutine under a deadline. A node also dies with the test
process (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

# One port helper for drill, benchmarks and tests (below the ephemeral range: issue 16).
from tools.ports import free_ports  # noqa: F401 - the tests take it from here

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
ADMIN_TIMEOUT_SECONDS = 10.0
PORT_NAMES = ("client_port", "feed_port", "replication_port", "admin_port")
TOKENS = {name: f"demo-{name}" for name in ("M1", "M2", "M3", "M4")}
_PR_SET_PDEATHSIG = 1
# Node certificate names each cluster's CA signs (nodes take them in turn).
CERTIFICATE_NODES = ("a", "b", "c")
# Where `certificates` creates the session's cluster directories (set by conftest.py; a
# temp dir of this process otherwise, e.g. a scenario run in a network namespace).
CERTIFICATES_ROOT: Optional[Path] = None
_node_names = itertools.cycle(CERTIFICATE_NODES)


def certificates(cluster_id: int = 1) -> Path:
    """The `twinbook certs init` directory of `cluster_id` for this session (made once)."""
    global CERTIFICATES_ROOT
    from replica.certs import create_cluster_certificates

    if CERTIFICATES_ROOT is None:
        CERTIFICATES_ROOT = Path(tempfile.mkdtemp(prefix="twinbook-test-certs-"))
        atexit.register(shutil.rmtree, CERTIFICATES_ROOT, True)
    directory = CERTIFICATES_ROOT / f"cluster-{cluster_id}"
    if not (directory / "operator.pem").exists():
        create_cluster_certificates(str(directory), cluster_id, CERTIFICATE_NODES)
    return directory


def tls_table(cluster_id: int = 1, node: Optional[str] = None) -> dict:
    """A [tls] table for a node of `cluster_id` (the next node certificate by default)."""
    return {"directory": str(certificates(cluster_id)), "node": node or next(_node_names)}


def tls_config(cluster_id: int = 1, node: Optional[str] = None):
    """The same as a TlsConfig, for nodes run inside the test process."""
    from replica.config import TlsConfig

    return TlsConfig(**tls_table(cluster_id, node))


def credentials(holder: str = "operator", cluster_id: int = 1):
    """ClientCredentials of a holder of the session's certificates (admin clients)."""
    from replica.tls import ClientCredentials

    return ClientCredentials.load(str(certificates(cluster_id)), holder)


def node_server_ssl(cluster_id: int = 1, node: str = "c"):
    """A server context with a node certificate of the cluster: what a test's own fake
    primary presents (the link's protocol tests, which trust it by construction)."""
    from replica.tls import TlsFiles, mutual_server_context

    directory = certificates(cluster_id)
    return mutual_server_context(TlsFiles(str(directory / "ca.pem"), str(directory / f"node-{node}.pem"),
                                          str(directory / f"node-{node}.key")))


def run(coroutine, timeout: float = 30.0):
    """Run a coroutine to completion on a fresh event loop, failing after `timeout` s."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def config_text(ports: dict[str, int], *, node: Optional[dict] = None, limits: Optional[dict] = None,
                cluster_id: Optional[int] = None, multicast: Optional[dict] = None,
                gateway: Optional[dict] = None, tls: Optional[dict] = None, fix: Optional[dict] = None) -> str:
    """A node config: the demo instruments and members, these ports, these overrides
    (and [multicast] and [tls] tables when given)."""
    node_table = {"host": HOST, **ports, **(node or {})}
    lines = [] if cluster_id is None else [f"cluster_id = {cluster_id}"]
    lines += ["[node]"] + [f"{key} = {_toml_value(value)}" for key, value in node_table.items()]
    if limits:
        lines += ["[limits]"] + [f"{key} = {_toml_value(value)}" for key, value in limits.items()]
    if multicast:
        lines += ["[multicast]"] + [f"{key} = {_toml_value(value)}" for key, value in multicast.items()]
    if gateway:
        lines += ["[gateway]"] + [f"{key} = {_toml_value(value)}" for key, value in gateway.items()]
    if tls:
        lines += ["[tls]"] + [f"{key} = {_toml_value(value)}" for key, value in tls.items()]
    if fix:
        lines += ["[fix]"] + [f"{key} = {_toml_value(value)}" for key, value in fix.items()]
    # Test nodes never take the default metrics port (7707): the kernel picks one, node.json names it.
    lines += ["[metrics]", "port = 0"]
    return "\n".join(lines) + "\n"


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def twinbook_command(*arguments: str) -> list[str]:
    return [sys.executable, "-c", "from tools.cli import main; main()", *arguments]


class NodeProcess:
    """One primary's data directory, config and (while running) process."""

    role = "primary"

    def __init__(self, data_dir: Path, *, node: Optional[dict] = None, limits: Optional[dict] = None,
                 launcher: Optional[list[str]] = None, cluster_id: Optional[int] = None,
                 multicast: Optional[dict] = None, gateway: Optional[dict] = None,
                 tls: Optional[dict] = None, fix: Optional[dict] = None) -> None:
        # `tls`: the [tls] table (default: a node certificate of the session's certificates
        # of this cluster id; {"enabled": False} for plain TCP).
        # `launcher`: the command that runs the CLI (default `python -c "...main()"`);
        # the primary's arguments are appended to it.
        self.launcher = launcher or twinbook_command()
        # As a standby (`start_standby`): the primary's replication address it follows.
        self.following: Optional[tuple[str, int]] = None
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.data_dir.parent / f"{self.data_dir.name}.toml"
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        if multicast is not None and multicast.get("retransmit_port") is None:
            multicast = {**multicast, "retransmit_port": free_ports(1)[0]}
        self.multicast = multicast
        self.tls = tls_table(cluster_id or 1) if tls is None else tls
        self.cluster_id = cluster_id or 1
        if fix is not None and fix.get("port") is None:
            fix = {**fix, "port": free_ports(1)[0]}  # the FIX acceptor's port ([fix] table)
        self.fix = fix
        self.config_path.write_text(config_text(self.ports, node=node, limits=limits, cluster_id=cluster_id,
                                                multicast=multicast, gateway=gateway, tls=self.tls, fix=fix))
        self.process: Optional[subprocess.Popen] = None
        self.info: dict = {}
        self.starts = 0

    # ------------------------------------------------------------ addresses

    @property
    def client(self) -> tuple[str, int]:
        return (HOST, self.ports["client_port"])

    @property
    def feed(self) -> tuple[str, int]:
        return (HOST, self.ports["feed_port"])

    @property
    def admin_address(self) -> tuple[str, int]:
        return (HOST, self.ports["admin_port"])

    @property
    def replication(self) -> tuple[str, int]:
        return (HOST, self.ports["replication_port"])

    @property
    def fix_address(self) -> tuple[str, int]:
        assert self.fix is not None, "this node has no [fix] table"
        return (HOST, self.fix["port"])

    @property
    def retransmit(self) -> tuple[str, int]:
        assert self.multicast is not None, "this node has no [multicast] table"
        return (HOST, self.multicast["retransmit_port"])

    def _arguments(self) -> list[str]:
        if self.role == "standby":
            assert self.following is not None
            host, port = self.following
            return ["standby", "--data", str(self.data_dir), "--primary", f"{host}:{port}",
                    "--config", str(self.config_path)]
        return ["primary", "--data", str(self.data_dir), "--config", str(self.config_path)]

    def start_standby(self, primary_replication: tuple[str, int], timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        """Run `twinbook standby` on this data directory (and config: the ports it opens
        once promoted), following the primary whose replication port is given."""
        self.role = "standby"
        self.following = tuple(primary_replication)
        return self.start(timeout)

    def start_primary(self, timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        """Run `twinbook primary` on this data directory."""
        self.role = "primary"
        self.following = None
        return self.start(timeout)

    async def start_standby_async(self, primary_replication: tuple[str, int],
                                  timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        """`start_standby` from inside an event loop (see `start_async`)."""
        self.role = "standby"
        self.following = tuple(primary_replication)
        return await self.start_async(timeout)

    async def start_primary_async(self, timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        """`start_primary` from inside an event loop (see `start_async`)."""
        self.role = "primary"
        self.following = None
        return await self.start_async(timeout)

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._started():
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"{self.role} did not start within {timeout} s:\n{self.log()}")

    async def start_async(self, timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        """`start` from inside an event loop (and from its thread: a child started from an
        executor thread would die with that thread, PR_SET_PDEATHSIG)."""
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._started():
                return self
            await asyncio.sleep(0.02)
        self.kill()
        raise AssertionError(f"{self.role} did not start within {timeout} s:\n{self.log()}")

    def launch(self) -> None:
        """Start the process (without waiting for it to be up)."""
        assert not self.running, "node already running"
        (self.data_dir / "node.json").unlink(missing_ok=True)
        self.starts += 1
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.launcher + self._arguments(),
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def _started(self) -> bool:
        """True once DIR/node.json names this process; raises if it exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.role} exited with {self.process.returncode} at start:\n{self.log()}")
        try:
            info = json.loads((self.data_dir / "node.json").read_text())
        except (OSError, ValueError):
            return False
        if info.get("pid") != self.process.pid:
            return False
        self.info = info
        if self.role == "primary":
            assert tuple(info["client"]) == self.client, info
        else:
            assert tuple(info["admin"]) == self.admin_address, info
        return True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> Optional[int]:
        """SIGKILL (no goodbye) and reap; returns the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def terminate(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM (graceful shutdown); returns the exit code, kills if it hangs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"primary ignored SIGTERM for {timeout} s:\n{self.log()}") from None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ------------------------------------------------------------ admin port

    @property
    def tls_enabled(self) -> bool:
        return self.tls.get("enabled", True)

    def admin_credentials(self, holder: str = "operator"):
        """What an admin client of this node presents (None: its TLS is off)."""
        return credentials(holder, self.cluster_id) if self.tls_enabled else None

    def admin_arguments(self, holder: str = "operator") -> list[str]:
        """The certificate options of an admin CLI command (`twinbook promote ...`) for this node."""
        return ["--certs", str(certificates(self.cluster_id)), "--identity", holder] if self.tls_enabled else ["--no-tls"]

    def admin(self, request: dict, holder: str = "operator") -> dict:
        raw = socket.create_connection(self.admin_address, timeout=ADMIN_TIMEOUT_SECONDS)
        holder_credentials = self.admin_credentials(holder)
        with (raw if holder_credentials is None else holder_credentials.context.wrap_socket(raw)) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def status(self) -> dict:
        return self.admin({"command": "status"})

    def depth(self, symbol: str) -> dict:
        """The engine's L2 as [[price, qty, orders], ...] lists, best first."""
        reply = self.admin({"command": "depth", "symbol": symbol})
        assert "error" not in reply, reply
        return {"bids": [list(row) for row in reply["bids"]], "asks": [list(row) for row in reply["asks"]]}


@pytest.fixture
def start_node(tmp_path):
    """start_node(name="node", node={...}, limits={...}) -> a started NodeProcess.

    Every node started through the fixture is SIGKILLed at teardown if still running.
    """
    nodes: list[NodeProcess] = []

    def start(name: str = "node", *, node: Optional[dict] = None, limits: Optional[dict] = None,
              gateway: Optional[dict] = None) -> NodeProcess:
        process = NodeProcess(tmp_path / name, node=node, limits=limits, gateway=gateway)
        nodes.append(process)
        return process.start()

    yield start
    for process in nodes:
        try:
            process.kill()
        except subprocess.TimeoutExpired:
            pass


def view_depth(view) -> dict:
    depth = view.depth()
    return {"bids": [list(row) for row in depth["bids"]], "asks": [list(row) for row in depth["asks"]]}


async def connect(node: NodeProcess, member: str = "M1", **options):
    from replica.client import OrderClient

    client = OrderClient([node.client], member, TOKENS[member], **options)
    await asyncio.wait_for(client.connect(), 15)
    return client


async def next_report(client, predicate=lambda event: True, timeout: float = 5.0):
    """The next report in `client.reports` that satisfies `predicate` (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching report arrived in time")
        event = await asyncio.wait_for(client.reports.get(), remaining)
        if predicate(event):
            return event


async def close_all(*clients) -> None:
    for client in clients:
        await asyncio.wait_for(client.close(), 5)


# ---------------------------------------------------------------- replication clusters


def wait_until(predicate, timeout: float = 10.0, period: float = 0.02, what: str = "condition"):
    """Poll `predicate()` until it returns something truthy (returned), failing after
    `timeout` s. Exceptions from the predicate (a node not answering yet) count as false."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, ValueError, KeyError) as error:
            last_error = error
            value = None
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"{what} not reached within {timeout} s (last error: {last_error!r})")


class WatchdogProcess:
    """A `twinbook watchdog` process watching a primary's and a standby's admin ports."""

    def __init__(self, log_path: Path, primary_admin: tuple[str, int], standby_admin: tuple[str, int], *,
                 timeout_ms: int = 400, force: bool = False, seconds: Optional[float] = None,
                 once: bool = True, tls_enabled: bool = True, cluster_id: int = 1) -> None:
        self.log_path = Path(log_path)
        arguments = ["watchdog", "--primary", f"{primary_admin[0]}:{primary_admin[1]}",
                     "--standby", f"{standby_admin[0]}:{standby_admin[1]}", "--timeout-ms", str(timeout_ms)]
        if once:
            arguments.append("--once")
        if force:
            arguments.append("--force")
        # A watchdog certificate may promote but not force: a forcing watchdog is an
        # operator's act, so it presents the operator certificate.
        arguments += (["--certs", str(certificates(cluster_id)), "--identity", "operator" if force else "watchdog"]
                      if tls_enabled else ["--no-tls"])
        if seconds is not None:
            arguments += ["--seconds", str(seconds)]
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                twinbook_command(*arguments), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"watchdog still running after {timeout} s:\n{self.log()}") from None

    def kill(self) -> Optional[int]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Cluster:
    """Nodes and watchdogs of one test, all in tmp_path, all SIGKILLed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.nodes: list[NodeProcess] = []
        self.watchdogs: list[WatchdogProcess] = []

    def node(self, name: str, *, node: Optional[dict] = None, limits: Optional[dict] = None,
             cluster_id: Optional[int] = None, multicast: Optional[dict] = None,
             tls: Optional[dict] = None, fix: Optional[dict] = None) -> NodeProcess:
        """A node's data directory and config (free ports), not started."""
        process = NodeProcess(self.root / name, node=node, limits=limits, cluster_id=cluster_id, multicast=multicast,
                              tls=tls, fix=fix)
        self.nodes.append(process)
        return process

    def primary(self, name: str = "primary", **options) -> NodeProcess:
        return self.node(name, **options).start_primary()

    def standby(self, name: str, primary_replication: tuple[str, int], **options) -> NodeProcess:
        return self.node(name, **options).start_standby(primary_replication)

    def watchdog(self, primary: NodeProcess, standby: NodeProcess, **options) -> WatchdogProcess:
        options.setdefault("tls_enabled", primary.tls_enabled)
        options.setdefault("cluster_id", primary.cluster_id)
        watchdog = WatchdogProcess(self.root / f"watchdog{len(self.watchdogs)}.log",
                                   primary.admin_address, standby.admin_address, **options)
        self.watchdogs.append(watchdog)
        return watchdog

    def kill_all(self) -> None:
        for process in self.watchdogs + self.nodes:
            try:
                process.kill()
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def cluster(tmp_path):
    """A Cluster whose processes are all SIGKILLed at teardown."""
    registry = Cluster(tmp_path)
    try:
        yield registry
    finally:
        registry.kill_all()


def wait_caught_up(primary: NodeProcess, standby: NodeProcess, timeout: float = 30.0) -> tuple[dict, dict]:
    """Wait until the standby has applied everything the primary has, with equal state
    digests at that sequence (the primary must be idle); returns both statuses."""
    def same():
        mine = primary.status()
        theirs = standby.status()
        if (mine["last_sequence"] == mine["applied_sequence"] == theirs["applied_sequence"]
                == theirs["durable_sequence"]):
            again = primary.status()
            if again["last_sequence"] == mine["last_sequence"]:
                return mine, theirs
        return None

    return wait_until(same, timeout, what=f"standby {standby.data_dir.name} caught up with {primary.data_dir.name}")


def journal_segments(node: NodeProcess) -> dict[str, bytes]:
    """The node's journal segment files (name -> bytes), evidence files left out."""
    directory = node.data_dir / "journal"
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.journal"))}


def evidence_files(node: NodeProcess, suffix: str = ".divergent") -> list[Path]:
    """Evidence files (`.divergent`, `.torn`) kept in the node's journal directory."""
    return sorted((node.data_dir / "journal").glob(f"*{suffix}"))


class AckLedger:
    """What the clients of a load saw: every place acknowledged (`accepted`, or a resubmission
    answered `duplicate_client_order_id` naming the original order), by (member, cid)."""

    def __init__(self) -> None:
        self.acknowledged: dict[tuple[str, str], int] = {}
        self.acknowledged_at: dict[tuple[str, str], float] = {}
        self.resubmission_answers = 0
        self.other_answers: dict[str, int] = {}
        self.failures = 0
        self.conflicts: list = []  # one (member, cid) acknowledged under two order ids
        self.sent = 0
        self.futures: set = set()

    def record(self, member: str, client_order_id: str, future) -> None:
        from replica.client import was_accepted_before
        from statemachine.events import OrderAccepted

        if future.cancelled():
            return
        if future.exception() is not None:
            self.failures += 1
            return
        event = future.result()
        key = (member, client_order_id)
        if type(event) is OrderAccepted:
            order_id = event.order_id
        elif was_accepted_before(event):
            self.resubmission_answers += 1
            order_id = event.order_id
        else:
            reason = getattr(event, "reason", type(event).__name__)
            self.other_answers[reason] = self.other_answers.get(reason, 0) + 1
            return
        if self.acknowledged.get(key, order_id) != order_id:
            self.conflicts.append((key, self.acknowledged[key], event))
        self.acknowledged[key] = order_id
        self.acknowledged_at.setdefault(key, time.monotonic())

    @property
    def unanswered(self) -> int:
        return sum(1 for future in self.futures if not future.done())


async def send_orders(client, ledger: AckLedger, stop: asyncio.Event, *, prefix: str, seed: int,
                      in_flight_max: int = 64, count_max: int = 500_000) -> None:
    """Pipelined limit orders around the demo reference prices (some cross and trade)
    until `stop`; every answer goes to `ledger`."""
    import random

    rng = random.Random(seed)
    in_flight: set = set()
    for index in range(count_max):
        if stop.is_set():
            return
        symbol = rng.choice(("AAPL", "MSFT"))
        reference = 19000 if symbol == "AAPL" else 42000
        client_order_id = f"{prefix}-{client.member}-{index}"
        future = client.send_place(client_order_id, symbol, rng.choice(("buy", "sell")), "limit",
                                   rng.randint(1, 9), price=reference + rng.randint(-30, 30))
        ledger.sent += 1
        ledger.futures.add(future)
        future.add_done_callback(lambda done, key=client_order_id, member=client.member: ledger.record(member, key, done))
        in_flight.add(future)
        future.add_done_callback(in_flight.discard)
        if len(in_flight) >= in_flight_max:
            await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED, timeout=0.5)


async def start_load(nodes: list, ledger: AckLedger, *, prefix: str, members=("M1", "M2", "M3")):
    """One connected client per member (every node's endpoint, in failover order), each
    sending orders (`send_orders`) until the returned event is set; returns
    (clients, stop event, their tasks)."""
    clients = [endpoints_client(nodes, member) for member in members]
    for client in clients:
        await asyncio.wait_for(client.connect(), 15)
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(send_orders(client, ledger, stop, prefix=prefix, seed=seed))
             for seed, client in enumerate(clients)]
    return clients, stop, tasks


async def wait_answered(ledger: AckLedger, timeout: float) -> None:
    """Wait (bounded) until every place sent has its answer."""
    pending = [future for future in ledger.futures if not future.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def replay_accepted(data_dir: Path) -> tuple[dict[tuple[str, str], list[int]], int, int]:
    """Replay a node's journal from the start: every `accepted` event's order id by
    (member, client order id), the last sequence and the state digest there."""
    import journal
    from statemachine import Exchange
    from statemachine.codec import decode_command
    from statemachine.events import OrderAccepted

    exchange = Exchange(book_updates=True)
    accepted: dict[tuple[str, str], list[int]] = {}
    for sequence, _epoch, timestamp_ns, body in journal.read_tuples(Path(data_dir) / "journal", live=True):
        for event in exchange.apply(sequence, timestamp_ns, decode_command(body)):
            if type(event) is OrderAccepted:
                accepted.setdefault((event.member, event.client_order_id), []).append(event.order_id)
    return accepted, exchange.last_sequence, exchange.state_digest()


def check_exactly_once(ledger: AckLedger, accepted: dict[tuple[str, str], list[int]]) -> None:
    """Every acknowledged order is accepted exactly once, under the id the client saw,
    and no client order id was accepted twice at all."""
    missing = [key for key in ledger.acknowledged if key not in accepted]
    assert not missing, f"{len(missing)} acknowledged orders lost, e.g. {missing[:5]}"
    twice = {key: ids for key, ids in accepted.items() if len(ids) != 1}
    assert not twice, f"orders accepted more than once: {list(twice.items())[:5]}"
    wrong = [(key, order_id, accepted[key]) for key, order_id in ledger.acknowledged.items() if accepted[key] != [order_id]]
    assert not wrong, f"acknowledged under another order id: {wrong[:5]}"


async def async_admin(node: NodeProcess, request: dict, timeout: float = 2.0) -> dict:
    """An admin request from inside an event loop (the blocking `node.admin` would stall it)."""
    from replica.watchdog import admin_request

    return await admin_request(node.admin_address, request, timeout, credentials=node.admin_credentials())


class LinkProxy:
    """A TCP proxy on loopback between a standby and its primary's replication port, run
    by its own event loop in a thread of the test process. Faults it can inject:

    * `pause(direction)` stops forwarding ("both"; "down" = primary to standby, the
      frames; "up" = standby to primary, the acks): what was read is held, the rest
      waits in socket buffers, so the senders' buffers fill (a stall TCP would ride
      out); `resume()` forwards again, nothing lost.
    * `blackhole()` reads and discards every byte both ways while the connections stay
      open, and swallows a close from either side (the FIN lost with the packets): the
      senders' writes succeed, nothing arrives, and a node that closes the connection
      meanwhile leaves its peer holding a half-open one. After `restore()` bytes flow
      again on new connections; a half-open one is reset once its live side writes to
      it (a real peer would answer with RST), and a connection that lost bytes is
      reset before anything more crosses it (TCP never skips bytes of a stream).
    * `throttle(bytes_per_second)` limits each direction's forwarding rate (None lifts
      it), so that a catch-up takes long enough to be cut in the middle.
    * `drop_connections()` resets every connection (RST both ways), new ones welcome;
      `cut()` resets them and refuses new ones until `restore()`.
    * `close()` ends it all.
    """

    CHUNK_BYTES_MAX = 16384  # one read; small, so that a throttle paces finely

    def __init__(self, target: tuple[str, int]) -> None:
        import threading

        self.target = tuple(target)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxy", daemon=True)
        # Per direction ("up": standby to primary, "down": primary to standby).
        self._flowing: dict[str, asyncio.Event] = {}
        self._refusing = False
        self._blackholing = False
        self._bytes_per_second: Optional[int] = None
        self._transports: set = set()
        self._server = None
        self.connections = 0
        self.bytes_discarded = 0
        self.address: tuple[str, int] = ("", 0)

    def start(self) -> "LinkProxy":
        self._thread.start()
        self.address = self._call(self._start())
        return self

    def _call(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> tuple[str, int]:
        self._flowing = {"up": asyncio.Event(), "down": asyncio.Event()}
        for event in self._flowing.values():
            event.set()
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        return self._server.sockets[0].getsockname()[:2]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()
            return
        self.connections += 1
        pair = {writer.transport, upstream_writer.transport}
        self._transports |= pair
        # Shared by both directions: "damaged" once bytes were discarded or a close was
        # swallowed; such a connection is reset as soon as anything is to cross it.
        state = {"damaged": False}
        try:
            await asyncio.gather(self._pump(reader, upstream_writer, "up", state),
                                 self._pump(upstream_reader, writer, "down", state),
                                 return_exceptions=True)
        finally:
            for transport in pair:
                transport.abort()
            self._transports -= pair

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str,
                    state: dict) -> None:
        flowing = self._flowing[direction]
        swallowed_close = False
        try:
            while True:
                await flowing.wait()
                data = await reader.read(self.CHUNK_BYTES_MAX)
                if not data:
                    if self._blackholing:
                        # The FIN is lost: the other side keeps its connection open.
                        state["damaged"] = swallowed_close = True
                    break
                await flowing.wait()
                if self._blackholing:
                    self.bytes_discarded += len(data)
                    state["damaged"] = True
                    continue
                if state["damaged"]:
                    break  # reset both sides: the stream lost bytes or its peer is gone
                writer.write(data)
                await writer.drain()
                if self._bytes_per_second:
                    await asyncio.sleep(len(data) / self._bytes_per_second)
        finally:
            if not swallowed_close:
                writer.transport.abort()

    async def _set(self, *, flowing: Optional[bool] = None, direction: str = "both",
                   refusing: Optional[bool] = None, blackholing: Optional[bool] = None,
                   drop: bool = False) -> None:
        if flowing is not None:
            for name in (("up", "down") if direction == "both" else (direction,)):
                (self._flowing[name].set if flowing else self._flowing[name].clear)()
        if refusing is not None:
            self._refusing = refusing
        if blackholing is not None:
            self._blackholing = blackholing
        if drop:
            for transport in list(self._transports):
                transport.abort()

    def pause(self, direction: str = "both") -> None:
        if direction not in ("both", "up", "down"):
            raise ValueError(f"direction {direction!r} is not both, up or down")
        self._call(self._set(flowing=False, direction=direction))

    def resume(self) -> None:
        self._call(self._set(flowing=True))

    def blackhole(self) -> None:
        self._call(self._set(flowing=True, blackholing=True))

    def throttle(self, bytes_per_second: Optional[int]) -> None:
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second {bytes_per_second!r} is not positive")

        async def set_rate() -> None:
            self._bytes_per_second = bytes_per_second

        self._call(set_rate())

    def drop_connections(self) -> None:
        self._call(self._set(drop=True))

    def cut(self) -> None:
        self._call(self._set(refusing=True, drop=True))

    def restore(self) -> None:
        self._call(self._set(flowing=True, refusing=False, blackholing=False))

    @property
    def open_connections(self) -> int:
        return len(self._transports) // 2

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def shut() -> None:
            self._refusing = True
            if self._server is not None:
                self._server.close()
            for transport in list(self._transports):
                transport.abort()
            # Connection handlers still waiting (a pump of a half-open pair) end here,
            # not as pending tasks destroyed with the loop.
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


@pytest.fixture
def link_proxies():
    """link_proxies(target) -> a started LinkProxy; all closed at teardown."""
    proxies: list[LinkProxy] = []

    def make(target: tuple[str, int]) -> LinkProxy:
        proxy = LinkProxy(target)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.close()


async def place_orders(node: NodeProcess, count: int, *, prefix: str = "fill", members=("M1", "M2", "M3")) -> int:
    """`count` limit places spread over `members`, pipelined; returns how many were accepted."""
    from statemachine.events import OrderAccepted

    clients = [await connect(node, member) for member in members]
    try:
        futures = []
        for index in range(count):
            client = clients[index % len(clients)]
            futures.append(client.send_place(f"{prefix}-{index}", "AAPL", "buy" if index % 2 else "sell", "limit",
                                             1 + index % 7, price=19000 + (index * 7919) % 61 - 30))
        answers = await asyncio.wait_for(asyncio.gather(*futures), 60)
        return sum(1 for answer in answers if type(answer) is OrderAccepted)
    finally:
        await close_all(*clients)


def endpoints_client(nodes: list[NodeProcess], member: str):
    """An OrderClient (not connected) with every node's client port, in failover order."""
    from replica.client import OrderClient

    return OrderClient([node.client for node in nodes], member, TOKENS[member])


def wait_identical_journals(first: NodeProcess, second: NodeProcess, timeout: float = 15.0) -> dict[str, bytes]:
    """Wait until both nodes' journal segment files are byte-identical (and not empty);
    running nodes may still be adding a record (a digest checkpoint) when first compared."""
    def same():
        mine = journal_segments(first)
        return mine if mine and journal_segments(second) == mine else None

    return wait_until(same, timeout, period=0.1,
                      what=f"journals of {first.data_dir.name} and {second.data_dir.name} byte-identical")
