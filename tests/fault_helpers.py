"""Helpers of the real-process fault loops (tests/test_fault_loops.py).

The loops run real `twinbook` processes on loopback (node_helpers: NodeProcess, Cluster,
WatchdogProcess, LinkProxy) while clients submit orders without pause, and inject the
faults a deterministic simulator models only in software: SIGKILL of either node, a
journal that cannot grow (a file size limit: every write beyond it fails with EFBIG,
the way a full disk fails; or, where user namespaces allow it, a small tmpfs that
really fails with ENOSPC), and a replication link that stalls, loses its bytes or is
cut. What is checked at the end is always the same list, the properties of
issue #10:

* every order a client saw acknowledged is in the final primary's journal exactly once,
  under the order id the client was told (`check_exactly_once`), and no client saw two
  different acknowledgements for one client order id (`AckLedger.conflicts`);
* the two nodes' journals are byte-identical up to the shorter one (`journals_agree`),
  their state digests are equal once idle, and neither raised a divergence alarm;
* `twinbook verify` passes on both data directories (chain, digest checkpoints,
  snapshots against a full replay: no corrupt record was ever applied);
* the cluster made progress after every fault that allowed it (`Load.wait_progress`).

Everything is bounded: each wait has a deadline, the load stops when told (or after
`send_orders`' count limit), every process dies with the test.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import subprocess
import sys
import time
from typing import Awaitable, Callable, Optional

from node_helpers import (
    TOKENS,
    AckLedger,
    NodeProcess,
    die_with_parent,
    async_admin,
    journal_segments,
    send_orders,
    twinbook_command,
    wait_answered,
)

MEMBERS = ("M1", "M2", "M3")
# Node settings of the loops: a snapshot every 20 000 records, so that the longer loops
# take some and their restarts recover from one (the 300 s timer never fires here).
LOOP_NODE_SETTINGS = {"snapshot_every_records": 20_000}


def file_size_limited_command(limit_bytes: int) -> list[str]:
    """A launcher (NodeProcess `launcher`) that runs the CLI under RLIMIT_FSIZE.

    No file of the process can grow beyond `limit_bytes`: the write that would cross the
    limit is cut short and the next one fails with EFBIG (Python ignores SIGXFSZ, so
    the signal does not kill it first). That is a disk filling up, as far as the journal
    writer can tell, without root, a mount or a real full disk. The limit applies to the
    node's log too (stdout is a file), which stays far below it.
    """
    if limit_bytes < 4096:
        raise ValueError(f"limit_bytes {limit_bytes} would not even hold a segment header and the log")
    program = ("import resource, sys; limit = int(sys.argv.pop(1)); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
               "from tools.cli import main; main()")
    return [sys.executable, "-c", program, str(limit_bytes)]


async def poll(predicate: Callable[[], Awaitable], timeout: float, what: str, period: float = 0.02):
    """Await `predicate()` until it returns something truthy (returned), failing after
    `timeout` s. A node not answering (yet) counts as false."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
        except (OSError, asyncio.TimeoutError, ValueError, KeyError) as error:
            last_error, value = error, None
        if value:
            return value
        await asyncio.sleep(period)
    raise AssertionError(f"{what} not reached within {timeout} s (last error: {last_error!r})")


async def status_of(node: NodeProcess) -> dict:
    return await async_admin(node, {"command": "status"}, timeout=2.0)


async def wait_standby_live(primary: NodeProcess, timeout: float = 30.0) -> dict:
    """Until the primary has a live standby that sync mode waits for again."""
    async def live():
        status = await status_of(primary)
        return status["role"] == "primary" and status["standby_attached"] and status["standby_required"] and status

    return await poll(live, timeout, f"a live standby attached to {primary.data_dir.name}")


async def wait_standby_detached(standby: NodeProcess, timeout: float = 15.0) -> dict:
    """Until the standby has seen its link to the primary go. Only then will it take a
    `promote`: a standby still attached to a primary that beat within the last second
    refuses (replica/standby.py, `StandbyCore.primary_alive`), and under load it may be
    journaling a batch when the link breaks, noticing only after the fsync."""
    async def detached():
        status = await status_of(standby)
        return status["role"] == "standby" and not status["primary_connected"] and status

    return await poll(detached, timeout, f"{standby.data_dir.name} detached from its primary")


async def wait_promoted(node: NodeProcess, timeout: float = 15.0) -> dict:
    async def promoted():
        status = await status_of(node)
        return status["role"] == "primary" and status

    return await poll(promoted, timeout, f"{node.data_dir.name} promoted", period=0.01)


async def wait_exited(node: NodeProcess, timeout: float) -> int:
    async def exited():
        return not node.running

    await poll(exited, timeout, f"{node.data_dir.name} exited", period=0.02)
    return node.process.returncode


class Load:
    """Clients submitting limit orders without pause until `stop()`, one per member,
    each with every node's client port in failover order (so they reconnect to whichever
    node serves and resubmit what was unanswered). Answers go to `ledger`."""

    def __init__(self, nodes: list[NodeProcess], *, members=MEMBERS, prefix: str = "load", seed: int = 0,
                 in_flight_max: int = 16) -> None:
        from replica.client import OrderClient

        self.ledger = AckLedger()
        self.clients = [OrderClient([node.client for node in nodes], member, TOKENS[member]) for member in members]
        self.prefix = prefix
        self.seed = seed
        self.in_flight_max = in_flight_max
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def acknowledged(self) -> int:
        return len(self.ledger.acknowledged)

    async def start(self) -> "Load":
        for client in self.clients:
            await asyncio.wait_for(client.connect(), 15)
        self._tasks = [
            asyncio.ensure_future(send_orders(client, self.ledger, self._stop, prefix=self.prefix,
                                              seed=self.seed * 100 + index, in_flight_max=self.in_flight_max))
            for index, client in enumerate(self.clients)
        ]
        return self

    async def wait_progress(self, count: int, timeout: float, what: str) -> int:
        """Until `count` more orders than now are acknowledged; returns the new total."""
        target = self.acknowledged + count
        deadline = time.monotonic() + timeout
        while self.acknowledged < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"no progress {what}: {self.acknowledged} acknowledged, "
                                     f"{target} wanted within {timeout} s (answers {self.ledger.other_answers}, "
                                     f"failures {self.ledger.failures})")
            await asyncio.sleep(0.01)
        return self.acknowledged

    async def stop(self, answer_timeout: float = 30.0) -> AckLedger:
        """Stop sending, wait (bounded) for every answer, log the clients off."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await wait_answered(self.ledger, answer_timeout)
        for client in self.clients:
            await asyncio.wait_for(client.close(), 5)
        return self.ledger


def check_ledger(ledger: AckLedger, acknowledged_min: int) -> None:
    """Every order sent got an answer, none failed, none was acknowledged twice under two
    ids, and enough were acknowledged for the run to mean something."""
    assert not ledger.conflicts, f"one client order id acknowledged under two order ids: {ledger.conflicts[:3]}"
    assert ledger.failures == 0, f"{ledger.failures} requests failed (no endpoint reachable)"
    assert ledger.unanswered == 0, f"{ledger.unanswered} requests never answered"
    assert len(ledger.acknowledged) >= acknowledged_min, (len(ledger.acknowledged), acknowledged_min, ledger.other_answers)


def journals_agree(first: NodeProcess, second: NodeProcess) -> int:
    """The two journals are byte-identical up to the shorter one (running nodes: one may
    have written a batch the other has not yet); returns the bytes compared.

    Segment files are compared name by name: the shorter journal's segments must be the
    first ones of the longer, all but its last of equal length.
    """
    mine, theirs = journal_segments(first), journal_segments(second)
    shorter, longer = (mine, theirs) if sum(map(len, mine.values())) <= sum(map(len, theirs.values())) else (theirs, mine)
    names = sorted(shorter)
    assert names == sorted(longer)[:len(names)], (sorted(mine), sorted(theirs))
    compared = 0
    for index, name in enumerate(names):
        a, b = shorter[name], longer[name]
        if index < len(names) - 1:
            assert len(a) == len(b), f"segment {name}: {len(a)} bytes against {len(b)}"
        common = min(len(a), len(b))
        if a[:common] != b[:common]:
            offset = next(position for position in range(common) if a[position] != b[position])
            raise AssertionError(f"journals of {first.data_dir.name} and {second.data_dir.name} differ in {name} "
                                 f"at byte offset {offset}")
        compared += common
    return compared


def twinbook_verify(node: NodeProcess) -> str:
    """`twinbook verify DIR` on a (stopped) node's data directory, run in this process
    (click's runner: the real command without an interpreter start); fails unless exit 0."""
    from click.testing import CliRunner

    from tools.cli import cli

    result = CliRunner().invoke(cli, ["verify", str(node.data_dir)])
    assert result.exit_code == 0 and result.output.startswith("OK "), \
        f"twinbook verify {node.data_dir}: exit {result.exit_code}\n{result.output}{result.exception!r}"
    return result.output.strip()


def evidence_bytes(node: NodeProcess, suffix: str) -> int:
    """Bytes kept in the node's evidence files (`.divergent`: tails cut when it rejoined
    a newer epoch; `.torn`: torn tails recovery cut away)."""
    return sum(path.stat().st_size for path in (node.data_dir / "journal").glob(f"*{suffix}"))


class SmallFilesystem:
    """A tmpfs of `size_bytes` mounted over `directory`, inside a user and mount namespace
    of its own (`unshare -rm`: no root needed where unprivileged user namespaces are
    allowed), held by a sleeping process for at most `seconds`. Nodes run inside it
    through `launcher()` (nsenter into the holder's namespaces, then the CLI); from
    outside, its files are under `outside(path)` (/proc/HOLDER/root). A full tmpfs fails
    a write with ENOSPC, a real full disk. `start()` skips the test where namespaces or
    the tools are not available.
    """

    READY_TIMEOUT_SECONDS = 10.0

    def __init__(self, directory, size_bytes: int, seconds: float = 300.0) -> None:
        self.directory = os.path.abspath(directory)
        self.size_bytes = size_bytes
        self.seconds = seconds
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "SmallFilesystem":
        import pytest

        if shutil.which("unshare") is None or shutil.which("nsenter") is None:
            pytest.skip("unshare or nsenter (util-linux) not installed")
        os.makedirs(self.directory, exist_ok=True)
        script = 'mount -t tmpfs -o size="$1" tmpfs "$0" && echo ready && exec sleep "$2"'
        self.process = subprocess.Popen(
            ["unshare", "-rm", "--propagation", "private", "sh", "-c", script, self.directory,
             str(self.size_bytes), str(self.seconds)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], self.READY_TIMEOUT_SECONDS)
        line = self.process.stdout.readline().decode(errors="replace") if ready else ""
        if line.strip() != "ready":
            self.close()
            pytest.skip(f"cannot mount a tmpfs in a user namespace here: {line.strip() or 'no answer'}")
        return self

    def launcher(self) -> list[str]:
        """A NodeProcess launcher running the CLI inside the namespaces (nsenter does not
        fork for these two, so the node keeps the pid NodeProcess started)."""
        return ["nsenter", "--preserve-credentials", "-U", "-m", "-t", str(self.process.pid)] + twinbook_command()

    def outside(self, path) -> str:
        """`path` (absolute, as the node sees it) as this process reaches it."""
        return os.path.join(f"/proc/{self.process.pid}/root", os.path.abspath(path).lstrip("/"))

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
