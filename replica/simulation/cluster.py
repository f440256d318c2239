"""The deterministic cluster simulator: two nodes, a watchdog, clients, faults, one seed.

    Simulator(seed).run(steps) -> SimulationResult

Everything happens as events on one simulated clock (a heap ordered by time, ties by
insertion), and every random choice comes from one `random.Random(seed)`, so a seed
replays exactly: the trace digest of a run is a function of (seed, steps, fault rate)
and nothing else. The nodes (replica/simulation/node.py) run the production cores on
the real journal; the network (network.py) and the disks (disk.py) inject faults.

Actors:
* two nodes, A (first primary) and B (its standby), sync replication;
* clients, one per member, placing, cancelling and sometimes sending a request twice;
  on a lost connection or a request unanswered for 2 s they reconnect to the other
  node and resubmit every unanswered request with the same client order id, as
  replica/client.py does;
* the operator, who runs the real WatchdogCore on the admin ports (the watchdog
  promotes the standby when the primary is silent), fences a replaced primary
  (STONITH, after a random delay in which both may believe they are primary), and
  restarts crashed nodes by a runbook: the node whose journal holds the newest epoch
  is the primary (ties: the last primary); any other node follows it, and if it runs
  as a standby it is promoted by hand first; the primary restarts as primary only when
  no standby can be promoted, with the watchdog re-armed in the same instant. A node
  whose journal is refused is restarted if `journal inspect` finds it clean (a read
  error), else rebuilt from nothing. Sometimes the operator degrades a primary whose
  standby is away;
* faults, drawn every 50-600 ms of simulated time while the run lasts.

Then a healing phase: faults stop, partitions heal, down nodes come back, clients
finish what they had in flight and one last order must be acknowledged (liveness).
The checker (checker.py) watches the properties all along and at the end.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
import shutil
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Optional

import msgspec

import journal
from replica.client_core import ClientCore, was_accepted_before
from replica.config import DEMO_INSTRUMENTS, Limits, default_config
from replica.errors import ReplicaError
from replica.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    ExecutionReport,
    Logon,
    LogonAccepted,
    PlaceRequest,
    RequestRejected,
    server_message_decoder,
)
from replica.simulation.checker import Checker
from replica.simulation.network import Network
from replica.simulation.node import SimulatedNode
from replica.watchdog import WatchdogCore
from statemachine.events import OrderAccepted

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: timestamps look like real ones
MS = 1_000_000
SECOND = 1_000_000_000
WATCHDOG_TIMEOUT_MS = 1000
HEAL_SIMULATED_NS_MAX = 60 * SECOND
REQUEST_TIMEOUT_NS = 2 * SECOND
OUTSTANDING_REQUESTS_MAX = 8
_encode = msgspec.msgpack.Encoder().encode
_status_decoder = msgspec.msgpack.Decoder(dict)


@dataclass
class SimulationResult:
    seed: int
    steps: int
    fault_rate: float
    simulated_ms: int
    violations: list[str]
    statistics: dict
    trace_digest: str
    trace_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {'ok' if self.ok else 'FAILED'} after {self.steps} steps, "
                 f"{self.simulated_ms} ms simulated, trace {self.trace_digest[:16]}"]
        lines += [f"  violation: {violation}" for violation in self.violations[:5]]
        if not self.ok:
            lines.append("  last events:")
            lines += [f"    {line}" for line in self.trace_tail[-40:]]
        return "\n".join(lines)


class SimulationError(ReplicaError):
    """The simulator itself could not go on (not a property violation: a bug or a
    scratch directory problem), named with the seed."""


class Simulator:
    def __init__(self, seed: int, work_directory: str, *, fault_rate: float = 1.0) -> None:
        if not 0.0 <= fault_rate <= 10.0:
            raise ValueError(f"fault rate {fault_rate} is not within 0..10")
        self.seed = seed
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.now_ns = START_NS
        self._queue: list = []
        self._order = 0
        self.steps = 0
        self.work_directory = work_directory
        self._scratch_prefix = os.path.join(os.path.abspath(work_directory), "")
        self.config = replace(
            default_config(), replication="sync", instruments=DEMO_INSTRUMENTS[:2],
            limits=Limits(messages_per_second=1_000_000, burst_messages=1_000_000),
        )
        self._trace_hash = hashlib.blake2b(digest_size=16)
        self._trace_tail: deque = deque(maxlen=200)
        self.network = Network(self)
        self.checker = Checker(self)
        self.nodes = {name: SimulatedNode(self, name, os.path.join(work_directory, name)) for name in ("A", "B")}
        for name, node in self.nodes.items():
            self.network.endpoints[name] = node
        self.faults = Faults(self)
        self.operator = Operator(self)
        self.network.endpoints["operator"] = self.operator
        self.clients = [SimulatedClient(self, member.name, f"demo-{member.name}") for member in self.config.members]
        for client in self.clients:
            self.network.endpoints[client.name] = client
        self.healing = False

    # ------------------------------------------------------------ the clock

    def at(self, time_ns: int, callback, *arguments) -> None:
        self._order += 1
        heapq.heappush(self._queue, (time_ns, self._order, callback, arguments))

    def after(self, delay_ns: int, callback, *arguments) -> None:
        self.at(self.now_ns + max(0, delay_ns), callback, *arguments)

    def trace(self, text: str) -> None:
        # Paths are traced relative to the scratch directory, so that the digest of a
        # run does not depend on where it ran.
        text = text.replace(self._scratch_prefix, "")
        line = f"{(self.now_ns - START_NS) / MS:10.3f} ms  {text}"
        self._trace_hash.update(line.encode())
        self._trace_tail.append(line)

    def _step(self) -> bool:
        if not self._queue:
            return False
        time_ns, _order, callback, arguments = heapq.heappop(self._queue)
        self.now_ns = time_ns
        self.steps += 1
        callback(*arguments)
        return True

    # ------------------------------------------------------------ a run

    def run(self, steps: int) -> SimulationResult:
        if steps < 1:
            raise ValueError("steps must be at least 1")
        self.nodes["A"].start_primary()
        self.nodes["B"].start_standby("A")
        self.operator.start("A", "B")
        for client in self.clients:
            client.start()
        self.faults.start()
        while self.steps < steps and not self.checker.violations:
            if not self._step():
                raise SimulationError(f"seed {self.seed}: nothing left to simulate at step {self.steps}")
        if not self.checker.violations:
            self._heal()
        if not self.checker.violations:
            self.checker.final(self)
        return SimulationResult(
            seed=self.seed, steps=self.steps, fault_rate=self.fault_rate,
            simulated_ms=(self.now_ns - START_NS) // MS, violations=list(self.checker.violations),
            statistics=self.statistics(), trace_digest=self._trace_hash.hexdigest(),
            trace_tail=list(self._trace_tail),
        )

    def _heal(self) -> None:
        self.healing = True
        self.trace("HEAL: faults stop, partitions heal, clients finish their requests")
        self.network.heal_all()
        self.faults.stop()
        deadline = self.now_ns + HEAL_SIMULATED_NS_MAX
        probe_sent = False
        while self.now_ns < deadline and not self.checker.violations:
            if self._settled():
                if not probe_sent:
                    probe_sent = True
                    self.clients[0].send_probe()
                elif self.clients[0].probe_acknowledged:
                    return
            for _ in range(1000):
                if not self._step():
                    break
        self.checker.violation(
            "no progress: the healed cluster did not settle within "
            f"{HEAL_SIMULATED_NS_MAX // SECOND} s ({self._settle_report()})"
        )

    def primary(self) -> Optional[SimulatedNode]:
        primaries = [node for node in self.nodes.values() if node.role == "primary"]
        return primaries[0] if len(primaries) == 1 else None

    def _settled(self) -> bool:
        primary = self.primary()
        if primary is None or any(node.role == "down" for node in self.nodes.values()):
            return False
        standby = [node for node in self.nodes.values() if node is not primary][0]
        if standby.role != "standby" or standby.exchange.last_sequence != primary.last_sequence:
            return False
        if primary.core.pending or primary.core.unreleased:
            return False
        return all(not client.core.unanswered and client.state == "ready" for client in self.clients)

    def _settle_report(self) -> str:
        parts = [f"{node.name} {node.role} at {node.last_sequence}" for node in self.nodes.values()]
        parts += [f"{client.member} {client.state} {client.core.unanswered} waiting" for client in self.clients]
        return ", ".join(parts)

    def statistics(self) -> dict:
        statistics = dict(self.faults.counts)
        statistics.update(self.checker.statistics())
        statistics["payloads_sent"] = self.network.payloads_sent
        statistics["promotions"] = self.operator.promotions
        statistics["final_sequence"] = max((node.last_sequence for node in self.nodes.values()), default=0)
        return statistics


class Faults:
    """Draws faults while the run lasts; each has a weight and a precondition."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.rng = simulator.rng
        self.active = False
        self.slow_fsync_until_ns = 0
        self.disk_full_next: dict[str, int] = {}
        self.corrupt_next_frames = False
        self.read_fault_next: set[str] = set()
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        self.active = self.simulator.fault_rate > 0
        if self.active:
            self._schedule()

    def stop(self) -> None:
        self.active = False
        self.slow_fsync_until_ns = 0
        self.disk_full_next.clear()
        self.corrupt_next_frames = False
        self.read_fault_next.clear()

    def _schedule(self) -> None:
        mean_ns = 300 * MS / self.simulator.fault_rate
        self.simulator.after(int(self.rng.uniform(0.2, 2.0) * mean_ns), self._inject)

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _inject(self) -> None:
        if not self.active:
            return
        simulator = self.simulator
        nodes = simulator.nodes
        up = [node for node in nodes.values() if node.role != "down"]
        kind = self.rng.choices(
            ("crash", "cut_link", "cut_client", "partition_link", "partition_watchdog", "partition_client",
             "slow_fsync", "disk_full", "corrupt_frames", "bit_flip", "read_fault", "degrade", "snapshot_flip"),
            weights=(3, 3, 3, 2, 1, 1, 2, 1, 2, 2, 2, 1, 2),
        )[0]
        if kind == "crash" and up:
            node = self.rng.choice(up)
            node.crash("killed (kill -9)")
        elif kind == "cut_link":
            for connection in list(simulator.network.connections.values()):
                if connection.kind == "link":
                    simulator.trace(f"fault: link connection {connection.connection_id} cut")
                    simulator.network.cut(connection)
        elif kind == "cut_client":
            clients = [c for c in simulator.network.connections.values() if c.kind == "client"]
            if clients:
                connection = self.rng.choice(clients)
                simulator.trace(f"fault: {connection.source}'s connection cut")
                simulator.network.cut(connection)
        elif kind == "partition_link":
            duration = self.rng.randrange(100 * MS, 5 * SECOND)
            simulator.trace(f"fault: A and B partitioned for {duration // MS} ms")
            simulator.network.partition("A", "B", duration)
        elif kind == "partition_watchdog":
            name = self.rng.choice(("A", "B"))
            duration = self.rng.randrange(500 * MS, 3 * SECOND)
            simulator.trace(f"fault: operator and {name} partitioned for {duration // MS} ms")
            simulator.network.partition("operator", name, duration)
        elif kind == "partition_client":
            client = self.rng.choice(simulator.clients)
            name = self.rng.choice(("A", "B"))
            duration = self.rng.randrange(100 * MS, 3 * SECOND)
            simulator.trace(f"fault: {client.name} and {name} partitioned for {duration // MS} ms")
            simulator.network.partition(client.name, name, duration)
        elif kind == "slow_fsync":
            self.slow_fsync_until_ns = simulator.now_ns + self.rng.randrange(200 * MS, 2 * SECOND)
            simulator.trace("fault: fsyncs slow for a while")
        elif kind == "disk_full" and up:
            node = self.rng.choice(up)
            self.disk_full_next[node.name] = self.rng.randrange(0, 200)
        elif kind == "corrupt_frames":
            self.corrupt_next_frames = True
        elif kind == "bit_flip":
            # At rest, on a down node whose peer's journal verifies and durably holds
            # every released record: the fault budget of two nodes is one damaged copy,
            # never of the only one (Checker.holds_everything_released).
            candidates = [node for node in nodes.values()
                          if node.role == "down" and simulator.checker.holds_everything_released(
                              nodes["B" if node.name == "A" else "A"])]
            if candidates:
                node = self.rng.choice(candidates)
                where = node.disk.flip_bit(self.rng)
                simulator.trace(f"fault: bit flipped in {node.name}'s journal: {where}")
            else:
                kind = "bit_flip_skipped"
        elif kind == "snapshot_flip":
            # At rest, on any down node: a snapshot is never the only copy of anything
            # (the journal is), so the budget does not limit it.
            down = [node for node in nodes.values() if node.role == "down"]
            where = self.rng.choice(down).disk.flip_snapshot_bit(self.rng) if down else None
            if where is None:
                kind = "snapshot_flip_skipped"
            else:
                simulator.trace(f"fault: bit flipped in a snapshot: {where}")
        elif kind == "read_fault":
            # The next read of one node's journal (a catch-up chunk, a hello's chain
            # lookup, a standby's last record read back, a restart's recovery) returns one bit flipped.
            self.read_fault_next.add(self.rng.choice(("A", "B")))
        elif kind == "degrade":
            if not simulator.operator.maybe_degrade():
                kind = "degrade_skipped"
        self._count(kind)
        self._schedule()

    def fsync_delay_ns(self) -> int:
        if self.simulator.now_ns < self.slow_fsync_until_ns:
            return self.rng.randrange(20 * MS, 400 * MS)
        return self.rng.randrange(100_000, 3 * MS)

    def read_fault_due(self, node) -> bool:
        if node.name in self.read_fault_next:
            self.read_fault_next.discard(node.name)
            return True
        return False

    def disk_full_bytes(self, node) -> Optional[int]:
        return self.disk_full_next.pop(node.name, None)

    def corrupt_in_flight(self, node, frames: bytes) -> bytes:
        """Flip one bit of journal frames on their way to the standby (once per fault)."""
        if not self.corrupt_next_frames or not frames:
            return frames
        self.corrupt_next_frames = False
        corrupted = bytearray(frames)
        position = self.rng.randrange(len(corrupted))
        corrupted[position] ^= 1 << self.rng.randrange(8)
        self.simulator.trace(f"fault: bit flipped in frames from {node.name} in flight (byte {position})")
        self.simulator.checker.corruption_injected += 1
        return bytes(corrupted)


class Operator:
    """The watchdog (the real WatchdogCore on the admin ports) and the operator's hands."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.rng = simulator.rng
        self.watchdog: Optional[WatchdogCore] = None
        self.primary_name = ""
        self.standby_name = ""
        self.latest_primary = ""
        self.connections: dict[str, object] = {}
        self.promote_sent = False
        self.promotions = 0
        self.restart_pending: set[str] = set()
        self.rebuilds = 0

    def start(self, primary_name: str, standby_name: str) -> None:
        self._arm(primary_name, standby_name)
        self.simulator.after(WATCHDOG_TIMEOUT_MS * MS // 5, self._poll)

    def _arm(self, primary_name: str, standby_name: str, *, primary_runs: bool = True) -> None:
        """Watch `primary_name` and `standby_name`. `primary_runs` False: the watched
        primary is only the node being replaced (a promotion by hand), and the last
        primary stays what it was."""
        self.watchdog = WatchdogCore(WATCHDOG_TIMEOUT_MS)
        self.primary_name = primary_name
        self.standby_name = standby_name
        if primary_runs:
            self.latest_primary = primary_name
        self.promote_sent = False
        self.simulator.trace(f"operator: watchdog armed, primary {primary_name}, standby {standby_name}")

    # ------------------------------------------------------------ polling

    def _poll(self) -> None:
        simulator = self.simulator
        network = simulator.network
        for name in (self.primary_name, self.standby_name):
            connection = self.connections.get(name)
            if connection is None or connection.broken:
                self.connections[name] = network.connect("operator", name, "admin")
            elif connection.open:
                network.send(connection, "operator", b"status")
        decision = self.watchdog.decide(simulator.now_ns // MS)
        if decision.action == "promote" and not self.promote_sent:
            connection = self.connections.get(self.standby_name)
            if connection is not None and connection.open and not connection.broken:
                self.promote_sent = True
                simulator.trace(f"watchdog: {decision.reason}")
                network.send(connection, "operator", f"promote {WATCHDOG_TIMEOUT_MS}".encode())
        simulator.after(WATCHDOG_TIMEOUT_MS * MS // 5, self._poll)

    def accept(self, connection) -> bool:
        return False

    def opened(self, connection) -> None:
        if not connection.broken:
            self.simulator.network.send(connection, "operator", b"status")

    def closed(self, connection) -> None:
        for name, known in list(self.connections.items()):
            if known is connection:
                del self.connections[name]
                if name == self.standby_name:
                    # An unanswered promote went with the connection; the standby's
                    # next status says whether it arrived.
                    self.promote_sent = False

    def received(self, connection, payload: bytes) -> None:
        reply = _status_decoder.decode(payload)
        now_ms = self.simulator.now_ns // MS
        name = connection.target
        if "promoted" in reply:
            if reply["promoted"] and name == self.standby_name:
                self._promoted()
            else:
                self.promote_sent = False
            return
        if name == self.primary_name:
            self.watchdog.primary_seen(reply, now_ms)
        elif name == self.standby_name and reply:
            self.watchdog.standby_seen(reply, now_ms)
            if self.watchdog.promoted:
                # Promoted, though the promote's answer was lost with its connection.
                # (An old primary not yet fenced answers "primary" too, but with an
                # epoch no newer than the watched primary's: the watchdog tells them
                # apart; the simulator's seed 34 once fenced the new primary here.)
                self._promoted()

    # ------------------------------------------------------------ the operator's hands

    def _promoted(self) -> None:
        simulator = self.simulator
        self.promotions += 1
        old_primary, new_primary = self.primary_name, self.standby_name
        simulator.trace(f"operator: {new_primary} promoted; fencing {old_primary}")
        self._arm(new_primary, old_primary)
        node = simulator.nodes[old_primary]
        if node.role != "down":
            # STONITH, after a while in which the old primary may still be running.
            simulator.after(self.rng.randrange(0, 1500 * MS), self._fence, old_primary, node.incarnation)

    def _fence(self, name: str, incarnation: int) -> None:
        node = self.simulator.nodes[name]
        if node.incarnation == incarnation and node.role != "down":
            node.crash("fenced by the operator (STONITH) after a promotion")

    def node_down(self, name: str) -> None:
        if name not in self.restart_pending:
            self.restart_pending.add(name)
            self.simulator.after(self.rng.randrange(200 * MS, 2 * SECOND), self._restart, name)

    def _journal_epoch(self, node) -> int:
        """The newest epoch in a node's journal: its status when it runs, what
        `twinbook journal info` says of its disk when it is down (-1: unreadable)."""
        if node.role != "down":
            return node.epoch
        try:
            return journal.inspect(node.directory.journal).get("last_epoch") or 0
        except (journal.JournalError, OSError):
            return -1

    def _leader(self) -> str:
        """Which node should be primary, by the runbook: the one whose journal holds the
        newest epoch, and among equals the one that was primary last. The operator's
        own memory of the last primary is not enough: a promotion whose answer was lost
        with the promoted node's crash left no other trace (the simulator's seed 121)."""
        simulator = self.simulator
        latest = simulator.nodes[self.latest_primary]
        other = simulator.nodes["B" if latest.name == "A" else "A"]
        if self._journal_epoch(other) > self._journal_epoch(latest):
            return other.name
        return latest.name

    def _restart(self, name: str) -> None:
        simulator = self.simulator
        node = simulator.nodes[name]
        if node.role != "down":
            self.restart_pending.discard(name)
            return
        other = simulator.nodes["B" if name == "A" else "A"]
        leader = self._leader()
        upstream = other.name
        if other.role == "primary" and self._journal_epoch(node) > other.epoch:
            # A primary of an older epoch than this node's journal is one that should
            # not be running (it would step down the moment this node said hello):
            # fence it, then start the newest history as primary.
            simulator.trace(f"operator: {other.name} runs epoch {other.epoch} below {name}'s "
                            f"{self._journal_epoch(node)}; fencing it")
            other.crash("fenced by the operator: a newer epoch exists")
            role = "primary"
        elif other.role == "primary":
            role = "standby"
        elif name == leader:
            # Restart the old primary as primary only when its standby cannot be
            # promoted (the watchdog refuses: stale, not answering, or down); the
            # watchdog is re-armed in the same instant, so the two cannot race.
            decision = self.watchdog.decide(simulator.now_ns // MS)
            promotion_coming = decision.action == "promote" or (
                decision.action == "wait" and self.watchdog.primary_last_seen_ms is not None
            )
            # Never while a promote is on its way: the standby could become primary
            # beside the restarted node (the simulator's seed 15).
            if other.role == "standby" and (promotion_coming or self.promote_sent):
                simulator.after(500 * MS, self._restart, name)
                return
            role = "primary"
        elif other.role == "standby":
            # The newest history runs as a standby (of this node, which went down, or
            # of nobody): promote it by hand, as the runbook says, then come back as
            # its standby (the simulator's seed 38 restarted the older node as primary
            # again and again, and it stepped down each time).
            if not self.promote_sent:
                # Armed so that the promoted answer is taken as a promotion; the last
                # primary is not this node, whose journal is older (the simulator's
                # seed 174 once made a rebuilt, empty node the last primary here and
                # then promoted it).
                self._arm(name, other.name, primary_runs=False)
                connection = self.connections.get(other.name)
                if connection is None or connection.broken:
                    connection = self.connections[other.name] = simulator.network.connect("operator", other.name,
                                                                                          "admin")
                if connection.open:
                    # Only on an open connection: a send on one still being set up is
                    # dropped, and a promote marked sent that never left waited for an
                    # answer for ever (the simulator's seed 90197: the healed cluster
                    # never settled). Until it opens, the retry below comes back here.
                    simulator.trace(f"operator: promoting {other.name}, whose journal holds the newest epoch")
                    self.promote_sent = True
                    simulator.network.send(connection, "operator", f"promote {WATCHDOG_TIMEOUT_MS}".encode())
            simulator.after(500 * MS, self._restart, name)
            return
        else:
            # The newest history is on the other node, which is down too: follow it;
            # the standby dials until it answers as primary.
            role = "standby"
        self.restart_pending.discard(name)
        try:
            if role == "primary":
                node.start_primary()
                self._arm(name, other.name)
            else:
                node.start_standby(upstream)
        except journal.JournalError as error:
            node.role = "down"
            if journal.inspect(node.directory.journal)["state"] != "corrupt":
                # The runbook: a node that refused its journal is inspected first. A
                # journal that checks clean now failed on a read error of the moment
                # (a read fault): start it again as it is.
                simulator.trace(f"operator: {name}'s journal refused ({type(error).__name__}) but inspects "
                                "clean: a read error; restarting it")
                self.node_down(name)
                return
            if not simulator.checker.holds_everything_released(other):
                simulator.checker.violation(f"{name}: a journal holding released records that no other node "
                                            f"holds cannot be recovered: {error}")
                return
            # A corrupt journal whose records the other node all holds: keep it for the
            # post-mortem, rebuild the node from nothing (it catches up in full). If it
            # was the last primary, the other node's history is the one to follow now.
            if name == self.latest_primary:
                self.latest_primary = other.name
            self.rebuilds += 1
            kept = f"{node.directory.root}.corrupt-{self.rebuilds}"
            simulator.trace(f"operator: {name}'s journal refused ({type(error).__name__}); rebuilding, kept {kept}")
            shutil.move(node.directory.root, kept)
            simulator.nodes[name] = rebuilt = SimulatedNode(simulator, name, node.directory.root)
            rebuilt.incarnation = node.incarnation + 1
            simulator.network.endpoints[name] = rebuilt
            simulator.checker.rebuilt_after_corruption += 1
            self.node_down(name)

    def maybe_degrade(self) -> bool:
        """Degrade a sync primary whose standby has been away: the operator's choice."""
        simulator = self.simulator
        primary = simulator.nodes.get(self.primary_name)
        if primary is None or primary.role != "primary" or simulator.nodes[self.standby_name].role != "down":
            return False
        if not primary.degrade():
            return False
        # The operator who degrades also tells the watchdog (a degraded primary's
        # standby is stale and must never be promoted automatically).
        self.watchdog.primary_seen(primary.status(), simulator.now_ns // MS)
        return True


class SimulatedClient:
    """A member's trading program on simulated connections. What waits for an answer,
    what is resubmitted after a logon and which message answers which request are the
    real client's rules: this drives replica/client_core.py's `ClientCore`, as
    replica/client.py does. The trading program's own policy is this class's: what to
    send, resending a request the gateway refused as throttled or busy, and giving up on
    a node that answers nothing for 2 s (it may be an old primary that can no longer
    acknowledge) by reconnecting elsewhere."""

    def __init__(self, simulator: Simulator, member: str, token: str) -> None:
        self.simulator = simulator
        self.rng = simulator.rng
        self.member = member
        self.token = token
        self.name = f"client-{member}"
        self.state = "idle"
        self.connection = None
        self.target_index = 0
        self.next_order_number = 1
        self.core = ClientCore()
        self.sent_at_ns: dict[int, int] = {}  # request id -> when it was last sent
        self.live_orders: list[int] = []
        self.probe_request_id = 0
        self.probe_acknowledged = False

    def start(self) -> None:
        self.simulator.after(self.rng.randrange(0, 50 * MS), self._connect)
        self.simulator.after(self.rng.randrange(10 * MS, 60 * MS), self._tick)

    def _connect(self) -> None:
        if self.state != "idle":
            return
        target = ("A", "B")[self.target_index % 2]
        self.state = "connecting"
        self.connection = self.simulator.network.connect(self.name, target, "client")

    def accept(self, connection) -> bool:
        return False

    def opened(self, connection) -> None:
        if connection is self.connection and not connection.broken:
            self.state = "logon"
            self.simulator.network.send(connection, self.name, _encode(Logon(PROTOCOL_VERSION, self.member, self.token)))

    def closed(self, connection) -> None:
        if connection is not self.connection:
            return
        self.connection = None
        self.state = "idle"
        self.target_index += 1
        self.simulator.after(self.rng.randrange(20 * MS, 200 * MS), self._connect)

    def received(self, connection, payload: bytes) -> None:
        if connection is not self.connection:
            return
        message = server_message_decoder.decode(payload)
        kind = type(message)
        if kind is LogonAccepted:
            self.state = "ready"
            now = self.simulator.now_ns
            for request in self.core.resubmissions():
                self.sent_at_ns[request.request_id] = now
                self._send(request)
        elif kind is ExecutionReport:
            self._report(message)
        elif kind is RequestRejected:
            request = self.core.waiting.get(message.request_id)
            if self.core.answer(message) is not None:
                # Throttled or busy: the program keeps waiting for this request and
                # sends it again a little later (and after any logon meanwhile).
                self.core.submit(request)
                self.simulator.after(50 * MS, self._resend, message.request_id)

    def _report(self, report: ExecutionReport) -> None:
        event = report.event
        answered = self.core.answer(report)
        if answered is not None:
            self.sent_at_ns.pop(answered[0], None)
        kind = type(event)
        if kind is OrderAccepted and event.member == self.member:
            self.simulator.checker.acknowledged(self.member, event.client_order_id, event.order_id)
            self.live_orders.append(event.order_id)
            if report.request_id and report.request_id == self.probe_request_id:
                self.probe_acknowledged = True
        elif answered is not None and was_accepted_before(event):
            # The resubmitted order had reached the journal before the failure.
            self.simulator.checker.acknowledged(self.member, event.client_order_id, event.order_id)
            if report.request_id == self.probe_request_id:
                self.probe_acknowledged = True

    def _resend(self, request_id: int) -> None:
        request = self.core.waiting.get(request_id)
        if request is not None and self.state == "ready":
            self._send(request)

    def _send(self, request) -> None:
        self.simulator.network.send(self.connection, self.name, _encode(request))

    def _new_request(self) -> None:
        rng = self.rng
        request_id = self.core.next_request_id()
        if self.live_orders and rng.random() < 0.25:
            order_id = self.live_orders.pop(rng.randrange(len(self.live_orders)))
            request = CancelRequest(request_id, order_id=order_id)
        else:
            client_order_id = f"{self.member}-{self.next_order_number}"
            self.next_order_number += 1
            symbol = rng.choice(("AAPL", "MSFT"))
            reference = 19000 if symbol == "AAPL" else 42000
            side = rng.choice(("buy", "sell"))
            if rng.random() < 0.1:
                request = PlaceRequest(request_id, client_order_id, symbol, side, "market", rng.randrange(1, 30))
            else:
                offset = rng.randrange(-20, 21)
                request = PlaceRequest(request_id, client_order_id, symbol, side, "limit", rng.randrange(1, 60),
                                       price=reference + offset, tif=rng.choice(("gtc", "gtc", "gtc", "ioc")))
        self.core.submit(request)
        self.sent_at_ns[request_id] = self.simulator.now_ns
        self._send(request)
        if rng.random() < 0.03:
            # The same request twice on one session: the engine's dedupe must hold.
            self._send(request)

    def send_probe(self) -> None:
        request_id = self.core.next_request_id()
        self.probe_request_id = request_id
        request = PlaceRequest(request_id, f"{self.member}-probe", "AAPL", "buy", "limit", 1, price=18990)
        self.core.submit(request)
        self.sent_at_ns[request_id] = self.simulator.now_ns
        if self.state == "ready":
            self._send(request)

    def _tick(self) -> None:
        simulator = self.simulator
        now = simulator.now_ns
        if self.state == "ready":
            oldest = min(self.sent_at_ns.values(), default=now)
            if now - oldest > REQUEST_TIMEOUT_NS:
                # No answer for too long: this node may be an old primary that can no
                # longer acknowledge anything. Try the other one.
                simulator.trace(f"{self.name}: requests unanswered for 2 s; reconnecting elsewhere")
                simulator.network.cut(self.connection)
            elif not simulator.healing and self.core.unanswered < OUTSTANDING_REQUESTS_MAX:
                self._new_request()
        simulator.after(self.rng.randrange(2 * MS, 20 * MS), self._tick)


def run_seed(seed: int, steps: int, work_directory: str, *, fault_rate: float = 1.0,
             keep: bool = False) -> SimulationResult:
    """Run one seed in a fresh scratch directory under `work_directory`."""
    root = os.path.join(work_directory, f"seed-{seed}")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    try:
        return Simulator(seed, root, fault_rate=fault_rate).run(steps)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
