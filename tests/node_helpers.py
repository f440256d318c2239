"""Real primary processes on loopback for the end-to-end node tests.

`start_node` (a pytest fixture) runs `twinbook primary` as a child process with a TOML
config written here (fixed loopback ports chosen free at first start, so a restart on
the same data directory comes back on the same ports and the client library can
reconnect), waits for DIR/node.json to name the new pid, and kills every node it
started at teardown. Everything is bounded in time: starting, stopping, admin requests,
and `run()` which drives a coroutine under a deadline. A node also dies with the test
process (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
ADMIN_TIMEOUT_SECONDS = 10.0
PORT_NAMES = ("client_port", "feed_port", "replication_port", "admin_port")
TOKENS = {name: f"demo-{name}" for name in ("M1", "M2", "M3", "M4")}
_PR_SET_PDEATHSIG = 1


def run(coroutine, timeout: float = 30.0):
    """Run a coroutine to completion on a fresh event loop, failing after `timeout` s."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def config_text(ports: dict[str, int], *, node: Optional[dict] = None, limits: Optional[dict] = None) -> str:
    """A node config: the demo instruments and members, these ports, these overrides."""
    node_table = {"host": HOST, **ports, **(node or {})}
    lines = ["[node]"] + [f"{key} = {_toml_value(value)}" for key, value in node_table.items()]
    if limits:
        lines += ["[limits]"] + [f"{key} = {_toml_value(value)}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def twinbook_command(*arguments: str) -> list[str]:
    return [sys.executable, "-c", "from tools.cli import main; main()", *arguments]


class NodeProcess:
    """One primary's data directory, config and (while running) process."""

    def __init__(self, data_dir: Path, *, node: Optional[dict] = None, limits: Optional[dict] = None,
                 launcher: Optional[list[str]] = None) -> None:
        # `launcher`: the command that runs the CLI (default `python -c "...main()"`);
        # the primary's arguments are appended to it.
        self.launcher = launcher or twinbook_command()
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.data_dir.parent / f"{self.data_dir.name}.toml"
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.config_path.write_text(config_text(self.ports, node=node, limits=limits))
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

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> "NodeProcess":
        assert not self.running, "node already running"
        node_file = self.data_dir / "node.json"
        node_file.unlink(missing_ok=True)
        self.starts += 1
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.launcher + ["primary", "--data", str(self.data_dir), "--config", str(self.config_path)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"primary exited with {self.process.returncode} at start:\n{self.log()}")
            try:
                info = json.loads(node_file.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid:
                self.info = info
                assert tuple(info["client"]) == self.client, info
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"primary did not start within {timeout} s:\n{self.log()}")

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

    def admin(self, request: dict) -> dict:
        with socket.create_connection(self.admin_address, timeout=ADMIN_TIMEOUT_SECONDS) as sock:
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

    def start(name: str = "node", *, node: Optional[dict] = None, limits: Optional[dict] = None) -> NodeProcess:
        process = NodeProcess(tmp_path / name, node=node, limits=limits)
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
