"""One simulated twinbook node: the real cores and the real journal, on simulated time.

A `SimulatedNode` is what replica/primary_node.py and replica/standby_node.py are, with
the asyncio adapters replaced by events on the simulator's clock. Everything that
decides is the production code: `PrimaryCore` (gateway, sequencer, release),
`ReleasePolicy` and `StandbyLinkCore` (sync replication, catch-up, live switch, ack
timeout), `decide_hello`, `StandbyCore` (hello, divergent tails, ack before apply,
digest alarm), `recover_exchange` and the journal's writer, recovery and readers on
real files. What this module adds is only what the adapters do: moving bytes, waiting
for a (simulated) fdatasync, timers.

Roles: "down" (crashed or not started), "standby" (following `primary_name`) or
"primary". A crash bumps `incarnation`, so events scheduled by the previous life of the
process find they are stale and do nothing.

Durability: the journal is opened with policy "none" and the node keeps its own
`durable_sequence`, advanced only when a simulated fdatasync completes (after a delay
drawn from the seed, sometimes long: the slow-fsync fault). A crash loses what was not
durable (replica/simulation/disk.py). The primary releases, as the real one does, only
up to `ReleasePolicy.point(durable_sequence)`.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import msgspec

import journal
import snapshots
from replica.data_directory import DataDirectory, primary_starts, record_primary_start
from replica.errors import ReplicaError
from replica.link_journal import (
    catch_up_chunks,
    chain_values,
    count_frames,
    epoch_boundary,
    own_starts,
    verify_last_record,
)
from replica.primary import PrimaryCore
from replica.recovery import recover_exchange
from replica.replication import (
    Accepted,
    Ack,
    Frames,
    Hello,
    PrimaryBeat,
    ReleasePolicy,
    StandbyLinkCore,
    decide_hello,
    link_decoder,
)
from replica.replication_server import BEAT_PERIOD_SECONDS, STANDBY_ACK_TIMEOUT_SECONDS
from journal.segment import list_segments
from replica.simulation.disk import SimulatedDisk
from replica.snapshotter import drop_snapshots_after, write_snapshot
from replica.standby import CheckChain, CutTail, LinkRefused, StandbyCore
from statemachine import AddInstrument, Checkpoint, Exchange
from statemachine.version import RULES_VERSION

# The simulated journal rolls segments often, so that rolls, multi-segment recovery and
# catch-up across segments are exercised in every run.
SEGMENT_SIZE_BYTES = 16 * 1024
# Catch-up chunks are small beside the production batches (CATCH_UP_BATCH_BYTES_MAX), so
# that commits interleave with them, and span several of the simulated 16 KiB segments.
CATCH_UP_CHUNK_BYTES_MAX = 64 * 1024
# Snapshots every few hundred records, so that every run restarts from snapshots, skips
# ones a crash or a divergent cut left beyond the journal, and meets corrupt ones.
SNAPSHOT_EVERY_RECORDS = 400
SNAPSHOT_RETENTION = 3
BEAT_PERIOD_NS = int(BEAT_PERIOD_SECONDS * 1e9)
STANDBY_ACK_TIMEOUT_NS = int(STANDBY_ACK_TIMEOUT_SECONDS * 1e9)
RECONNECT_BACKOFF_NS = (50_000_000, 100_000_000, 200_000_000, 500_000_000)
_encode = msgspec.msgpack.Encoder().encode


class NodeCrashed(Exception):
    """Raised inside a node's handler to end its life at once (disk failure)."""


class SimulatedNode:
    def __init__(self, simulator, name: str, root: str) -> None:
        self.simulator = simulator
        self.name = name
        self.directory = DataDirectory.create(root)
        self.disk = SimulatedDisk(self.directory.journal, self.directory.snapshots)
        self.role = "down"
        self.incarnation = 0
        self.writer: Optional[journal.JournalWriter] = None
        self.exchange: Optional[Exchange] = None
        self.durable_sequence = 0
        self.primary_name: Optional[str] = None
        # Primary state.
        self.core: Optional[PrimaryCore] = None
        self.release: Optional[ReleasePolicy] = None
        self.sessions: dict[int, object] = {}  # session id -> Connection
        self.link_connection = None
        self.link: Optional[StandbyLinkCore] = None
        self.link_hello_pending: set[int] = set()
        self.commit_scheduled = False
        self.fsync_in_flight = False
        self.divergence: Optional[str] = None
        self.snapshot_sequence = 0
        # Standby state.
        self.standby: Optional[StandbyCore] = None
        self.upstream = None  # the Connection to the primary
        self.upstream_attached = False
        self.frames_queue: list = []
        self.frames_busy = False
        self.reconnect_attempt = 0
        self.known_connections: set[int] = set()

    # ------------------------------------------------------------ helpers

    def trace(self, text: str) -> None:
        self.simulator.trace(f"{self.name}: {text}")

    def later(self, delay_ns: int, callback, *arguments) -> None:
        """Schedule work for this life of the node only."""
        incarnation = self.incarnation

        def run() -> None:
            if self.incarnation == incarnation and self.role != "down":
                self._guarded(callback, *arguments)

        self.simulator.after(delay_ns, run)

    def _guarded(self, callback, *arguments) -> None:
        try:
            callback(*arguments)
        except NodeCrashed as crash:
            self.crash(str(crash))
        except journal.JournalIOError as error:
            # What the real node does when a write or fdatasync fails: the writer is
            # fenced and the process stops (exit 3); the operator restarts it.
            self.crash(f"journal I/O failed: {error}")
        except journal.JournalCorruptError as error:
            # Its own journal failed its check twice on a read (replica/link_journal.py):
            # corruption at rest stops the real node (exit 3) too.
            self.crash(f"own journal corrupt: {error}")

    @property
    def epoch(self) -> int:
        return self.writer.epoch if self.writer is not None else 0

    @property
    def last_sequence(self) -> int:
        return self.writer.last_sequence if self.writer is not None else 0

    def _maybe_read_fault(self):
        """The read fault, if one is due on this node's next journal read."""
        if self.simulator.faults.read_fault_due(self):
            return self.disk.read_fault(self.simulator.rng, self._read_fault_happened)
        return contextlib.nullcontext()

    def _read_fault_happened(self, where: str) -> None:
        self.trace(f"fault: {where}")
        self.simulator.checker.read_faults += 1

    # ------------------------------------------------------------ life cycle

    def _open(self) -> None:
        """Recover the exchange and open the journal, as both real adapters do at start."""
        config = self.simulator.config
        if self.directory.has_journal() and list_segments(self.directory.journal):
            with self._maybe_read_fault():
                result = recover_exchange(self.directory.root, book_updates=True, cluster_id=config.cluster_id)
            self.exchange = result.exchange
            self.simulator.checker.recovered(self, result)
        else:
            self.exchange = Exchange(book_updates=True)
        self.writer = journal.JournalWriter.open(
            self.directory.journal, config.cluster_id, durability="none", segment_size_bytes_max=SEGMENT_SIZE_BYTES
        )
        if self.writer.last_sequence != self.exchange.last_sequence:
            raise journal.JournalUsageError(self.directory.journal, None, "journal and recovery disagree")
        # The real writer fdatasyncs what recovery found before reporting it durable.
        self.disk.forget_missing()
        self.disk.sync()
        self.durable_sequence = self.writer.last_sequence
        self.snapshot_sequence = self.exchange.last_sequence
        self.simulator.checker.journal_opened(self)

    def start_primary(self) -> None:
        self.incarnation += 1
        self._open()
        self.role = "primary"
        self._become_primary(promoted=False)
        self.trace(f"started as primary at {self.last_sequence} epoch {self.epoch}")

    def start_standby(self, primary_name: str) -> None:
        self.incarnation += 1
        self._open()
        self.role = "standby"
        self.primary_name = primary_name
        self.standby = StandbyCore(self.exchange, self.simulator.config.cluster_id)
        self.reconnect_attempt = 0
        self.later(0, self._connect_upstream)
        self.trace(f"started as standby of {primary_name} at {self.last_sequence} epoch {self.epoch}")

    def crash(self, reason: str) -> None:
        if self.role == "down":
            return
        self.trace(f"CRASH ({reason})")
        self.role = "down"
        self.incarnation += 1
        self.simulator.network.cut_all_of(self.name)
        if self.writer is not None:
            # The process dies: buffered records vanish, descriptors close, nothing
            # syncs (policy "none" makes close() sync nothing).
            self.writer.close(commit_pending=False)
        self.writer = None
        self.exchange = None
        self.core = None
        self.release = None
        self.standby = None
        self.link = None
        self.link_connection = None
        self.upstream = None
        self.sessions.clear()
        self.known_connections.clear()
        self.frames_queue.clear()
        self.frames_busy = False
        self.commit_scheduled = False
        self.fsync_in_flight = False
        touched = self.disk.crash(self.simulator.rng)
        for line in touched:
            self.trace(f"disk lost unsynced bytes: {line}")
        self.simulator.operator.node_down(self.name)

    # ------------------------------------------------------------ primary

    def _become_primary(self, promoted: bool) -> None:
        simulator = self.simulator
        config = simulator.config
        now_ns = simulator.now_ns
        record_primary_start(self.directory, self.writer.epoch, self.writer.last_sequence)
        self.core = PrimaryCore(self.exchange, config, self.writer.epoch, self.writer.last_sequence + 1,
                                self.exchange.last_timestamp_ns)
        simulator.checker.released_sequences.pop(self.name, None)  # a new core releases from its start
        self.release = ReleasePolicy(config.replication,
                                     standby_required=not promoted and self.directory.standby_required())
        if promoted:
            self.core.begin_epoch(now_ns)
        if self.writer.last_sequence == 0:
            self.core.submit_admin(Checkpoint(kind="rules", version=RULES_VERSION), now_ns)
            for instrument in config.instruments:
                self.core.submit_admin(AddInstrument(instrument.symbol, instrument.tick_size, instrument.lot_size,
                                                     instrument.band_bps, instrument.reference_price), now_ns)
        if self.core.pending:
            # Like the real start: journaled, synced and applied before any port opens.
            for sequence, epoch, timestamp_ns, body in self.core.take_records():
                simulator.checker.record_written(self, sequence, epoch, body)
                self.writer.append(epoch, timestamp_ns, body)
            self.writer.commit()
            self.disk.commit_settled()
            self.disk.sync()
            self.durable_sequence = self.writer.written_sequence
            self._release(self.durable_sequence)
        self.later(BEAT_PERIOD_NS, self._beat)

    def _release(self, point: int) -> None:
        core = self.core
        before = core.released_sequence
        core.release(point)
        if core.released_sequence > before:
            self.simulator.checker.released(self, before + 1, core.released_sequence)
        self._flush()

    def _flush(self) -> None:
        core = self.core
        network = self.simulator.network
        if core.outbox:
            for session_id, messages in core.take_outbox().items():
                connection = self.sessions.get(session_id)
                if connection is not None:
                    for message in messages:
                        network.send(connection, self.name, _encode(message))
        if core.closing:
            for session_id, _reason in core.take_closing():
                connection = self.sessions.pop(session_id, None)
                if connection is not None:
                    network.cut(connection)
        core.feed.take_outbox()

    def _kick(self) -> None:
        if not self.commit_scheduled and not self.fsync_in_flight and self.core.pending:
            self.commit_scheduled = True
            self.later(0, self._commit)

    def _commit(self) -> None:
        """The real commit loop's body: journal, stream to a live standby, write, fsync."""
        self.commit_scheduled = False
        core = self.core
        writer = self.writer
        records = core.take_records()
        if not records:
            return
        for sequence, epoch, timestamp_ns, body in records:
            self.simulator.checker.record_written(self, sequence, epoch, body)
            appended = writer.append(epoch, timestamp_ns, body)
            if appended != sequence:
                raise journal.JournalUsageError(writer.segment_path, None, f"sequencer {sequence}, journal {appended}")
        link = self.link
        if link is not None and link.live and self.link_connection is not None:
            first = writer.written_sequence + 1
            frames = self.simulator.faults.corrupt_in_flight(self, writer.pending_frames())
            link.frames_sent(first, writer.last_sequence, self.simulator.now_ns)
            self._send_link(Frames(first, writer.last_sequence, frames, core.released_sequence))
        faults = self.simulator.faults
        free = faults.disk_full_bytes(self)
        if free is None:
            writer.commit()
        else:
            self.trace(f"disk full ({free} bytes free) at commit of {records[0][0]}..{records[-1][0]}")
            with self.disk.full(free):
                writer.commit()
        self.disk.commit_settled()
        self.fsync_in_flight = True
        self.later(faults.fsync_delay_ns(), self._fsync_done, writer.written_sequence)
        # The real maintenance task runs between commits, often while an fdatasync is
        # still under way: the snapshot may be of records a crash will cut.
        self._maybe_snapshot()

    def _fsync_done(self, covered: int) -> None:
        self.disk.sync()
        self.fsync_in_flight = False
        if covered > self.durable_sequence:
            self.durable_sequence = covered
        # Pipelined like the real commit loop: the next batch is written and its
        # fdatasync started before this one is released.
        if self.core.pending and not self.commit_scheduled:
            self._commit()
        self._release(self.release.point(self.durable_sequence))
        self._kick()

    def _maybe_snapshot(self) -> None:
        """What the real primary's maintenance task does: a snapshot every so many
        records, of a state whose last record is written (not necessarily durable: a
        crash may cut the journal below it, which recovery must notice). The real node
        writes it from a forked child; a crash during that write loses only the child's
        uncommitted transaction, so writing it in one step here is the same."""
        exchange = self.exchange
        if exchange.last_sequence - self.snapshot_sequence < SNAPSHOT_EVERY_RECORDS:
            return
        if self.writer.written_sequence < exchange.last_sequence:
            return
        try:
            info = write_snapshot(self.directory, exchange, retention=SNAPSHOT_RETENTION)
        except (snapshots.SnapshotError, ReplicaError) as error:
            # The real node logs a failed snapshot in one line and goes on; so does this.
            self.trace(f"snapshot at {exchange.last_sequence} failed: {error}")
            self.snapshot_sequence = exchange.last_sequence
            return
        self.snapshot_sequence = info.sequence
        self.simulator.checker.snapshots_written += 1

    def _send_link(self, message) -> None:
        if self.link_connection is not None:
            self.simulator.network.send(self.link_connection, self.name, _encode(message))

    def _beat(self) -> None:
        if self.role != "primary":
            return
        link = self.link
        if link is not None and self.link_connection is not None:
            if link.overdue(self.simulator.now_ns):
                self.trace(f"standby acknowledged nothing for {STANDBY_ACK_TIMEOUT_SECONDS} s; cutting it off")
                self._drop_link(self.link_connection)
            else:
                digest_sequence, digest = self.core.digests.latest
                self._send_link(PrimaryBeat(self.writer.epoch, self.writer.last_sequence, self.durable_sequence,
                                            self.core.released_sequence, digest_sequence, digest))
        # The gateway's own timers, as the real node's tick runs them: logon timeouts,
        # held logons, heartbeats at each session's interval, test requests, idle cuts.
        self.core.tick(self.simulator.now_ns)
        self._flush()
        self.later(BEAT_PERIOD_NS, self._beat)

    def _drop_link(self, connection) -> None:
        self.simulator.network.cut(connection)
        if connection is self.link_connection:
            self.link_connection = None
            self.link = None

    def _on_hello(self, connection, hello: Hello) -> None:
        report = self.writer.recovery
        directory = self.directory.journal
        with self._maybe_read_fault():
            decision = decide_hello(hello, cluster_id=self.simulator.config.cluster_id, epoch=self.writer.epoch,
                                    first_sequence=report.first_sequence or 1,
                                    last_sequence=self.writer.written_sequence,
                                    crc_lookup=lambda sequences: chain_values(directory, sequences),
                                    boundary_lookup=lambda epoch, up_to: epoch_boundary(directory, epoch, up_to),
                                    start_sequences=[sequence for _, sequence in primary_starts(self.directory)])
        self.simulator.network.send(connection, self.name, _encode(decision.reply))
        if decision.primary_must_step_down:
            self.trace(f"a node of epoch {hello.epoch} exists: stepping down")
            self.crash("stepped down (exit 4)")
            return
        if type(decision.reply) is not Accepted:
            self.trace(f"standby refused: {decision.reply}")
            return
        if self.link_connection is not None:
            self._drop_link(self.link_connection)
        self.link_connection = connection
        self.link = StandbyLinkCore(decision.start_sequence, self.simulator.now_ns, STANDBY_ACK_TIMEOUT_NS)
        self.release.standby_durable(decision.start_sequence - 1)
        self.trace(f"standby attached at {decision.start_sequence - 1}")
        self.later(0, self._catch_up_step, connection)

    def _catch_up_step(self, connection) -> None:
        if connection is not self.link_connection:
            return
        link = self.link
        span = link.catch_up_range(self.writer.written_sequence)
        if span is None:
            if self.release.standby_live():
                self.directory.set_standby_required(True)
            self.trace(f"standby live at {self.writer.written_sequence}")
            return
        first, written = span
        with self._maybe_read_fault():
            # One chunk per step, so that commits interleave with the catch-up.
            _, chunk = next(catch_up_chunks(self.directory.journal, first, written, CATCH_UP_CHUNK_BYTES_MAX))
        count = count_frames(chunk)
        chunk = self.simulator.faults.corrupt_in_flight(self, chunk)
        link.frames_sent(first, first + count - 1, self.simulator.now_ns)
        self._send_link(Frames(first, first + count - 1, chunk, self.core.released_sequence))
        # The real adapter awaits drain() here: other work (commits) can run meanwhile.
        self.later(self.simulator.network.delay_ns(), self._catch_up_step, connection)

    def _on_ack(self, connection, ack: Ack) -> None:
        if connection is not self.link_connection:
            return
        if self.link.ack(ack, self.simulator.now_ns) and self.release.standby_durable(ack.durable_sequence):
            self._release(self.release.point(self.durable_sequence))
        if ack.digest_sequence:
            if self.core.digests.compare(ack.digest_sequence, ack.digest) is False and self.divergence is None:
                self.divergence = f"standby digest at {ack.digest_sequence} differs"
                self.simulator.checker.violation(f"{self.name}: divergence alarm: {self.divergence}")

    def degrade(self) -> bool:
        refusal = self.release.can_degrade(self.link is not None and self.link.live)
        if refusal is not None:
            return False
        self.release.degrade()
        self.directory.set_standby_required(False)
        self.core.submit_admin(Checkpoint(kind="degraded", epoch=self.writer.epoch), self.simulator.now_ns)
        self.trace("DEGRADED by the operator")
        self._kick()
        return True

    # ------------------------------------------------------------ standby

    def _connect_upstream(self) -> None:
        if self.role != "standby":
            return
        self.upstream = self.simulator.network.connect(self.name, self.primary_name, "link")
        self.upstream_attached = False
        self.known_connections.add(self.upstream.connection_id)

    def _reconnect_later(self) -> None:
        delay = RECONNECT_BACKOFF_NS[min(self.reconnect_attempt, len(RECONNECT_BACKOFF_NS) - 1)]
        self.reconnect_attempt += 1
        self.later(delay, self._connect_upstream)

    def _upstream_lost(self) -> None:
        self.upstream = None
        self.upstream_attached = False
        self.standby.link_lost()
        self.frames_queue.clear()
        if not self.frames_busy:
            self._reconnect_later()

    def _on_upstream(self, message) -> None:
        kind = type(message)
        if not self.upstream_attached:
            action = self.standby.first_reply(message)
            if type(action) is CheckChain:
                with self._maybe_read_fault():
                    own_crcs = chain_values(self.directory.journal,
                                            sorted(sequence for sequence, _ in action.points if sequence))
                action = self.standby.confirm_cut(action, own_crcs)
            if type(action) is CutTail:
                self.trace(f"diverged after {action.common_sequence}: cutting {self.last_sequence - action.common_sequence}")
                self.writer.truncate_after(action.common_sequence, keep_path_suffix=".divergent")
                drop_snapshots_after(self.directory, action.common_sequence)
                # Reopened, as the real standby does: the epoch fence falls back to the
                # last record kept (the simulator's seed 90243 refused a newer primary's
                # older-epoch records after the cut for ever).
                self.writer.close()
                self.writer = journal.JournalWriter.open(self.directory.journal, self.simulator.config.cluster_id,
                                                         durability="none", segment_size_bytes_max=SEGMENT_SIZE_BYTES)
                self.disk.forget_missing()
                self.disk.sync()
                self.durable_sequence = self.writer.last_sequence
                result = recover_exchange(self.directory.root, book_updates=True,
                                          cluster_id=self.simulator.config.cluster_id, repair=False)
                self.exchange = result.exchange
                self.simulator.checker.recovered(self, result)
                self.standby.rebuilt(self.exchange)
                self.simulator.checker.journal_opened(self)
                self.simulator.network.cut(self.upstream)
                return
            if type(action) is LinkRefused:
                self.trace(f"refused by the primary: {action.reason}")
                self.simulator.network.cut(self.upstream)
                return
            self.upstream_attached = True
            self.reconnect_attempt = 0
            return
        if kind is Frames:
            self.frames_queue.append(message)
            self._next_frames()
        elif kind is PrimaryBeat:
            alarm = self.standby.beat(message, self.simulator.now_ns)
            if alarm is not None:
                self.simulator.checker.violation(f"{self.name}: divergence alarm: {alarm}")

    def _next_frames(self) -> None:
        if self.frames_busy or not self.frames_queue:
            return
        message = self.frames_queue.pop(0)
        chain_before = self.writer.last_crc
        try:
            self.writer.append_frames(message.frames, source=f"primary {self.primary_name}")
        except journal.JournalIOError:
            raise
        except journal.JournalError as error:
            # A corrupt or out-of-epoch frame: refused, never applied; start again.
            self.trace(f"refusing frames {message.first_sequence}..{message.last_sequence}: {type(error).__name__}")
            self.simulator.checker.corruption_refused += 1
            if self.upstream is not None:
                self.simulator.network.cut(self.upstream)
            return
        self.writer.commit()
        self.disk.commit_settled()
        self.frames_busy = True
        self.later(self.simulator.faults.fsync_delay_ns(), self._frames_durable, message, chain_before,
                   self.upstream)

    def _frames_durable(self, message: Frames, chain_before: int, connection) -> None:
        self.disk.sync()
        self.frames_busy = False
        self.durable_sequence = self.writer.written_sequence
        network = self.simulator.network
        send = connection is not None and connection is self.upstream and not connection.broken
        ack = self.standby.durable_ack(self.durable_sequence)
        if send:
            network.send(connection, self.name, _encode(ack))
        ack = self.standby.apply_frames(message, chain_before, self.durable_sequence)
        if send:
            network.send(connection, self.name, _encode(ack))
            self._next_frames()
        elif self.upstream is None:
            self._reconnect_later()

    def promote(self, primary_timeout_ms: int) -> bool:
        """What `twinbook promote` does to a standby process (StandbyNode.promote)."""
        if self.role != "standby" or not self.standby.promotable:
            return False
        if self.standby.primary_alive(self.simulator.now_ns, primary_timeout_ms):
            self.trace("promotion refused: the primary is alive")
            return False
        if self.upstream is not None:
            self.simulator.network.cut(self.upstream)
            self.upstream = None
        # Whatever was journaled but not yet applied is applied now; the promotion's
        # commit makes the journal durable, as the real one's fdatasync does.
        self.writer.commit()
        self.disk.commit_settled()
        self.disk.sync()
        self.durable_sequence = self.writer.written_sequence
        if self.writer.last_sequence > self.exchange.last_sequence:
            for batch in journal.read_tuple_batches(self.directory.journal, self.exchange.last_sequence + 1,
                                                    self.writer.last_sequence, live=True):
                self.standby.apply_records(batch)
        self.frames_queue.clear()
        self.frames_busy = False
        self.writer.set_epoch(self.writer.epoch + 1)
        self.incarnation += 1  # the standby's pending timers are void
        self.standby = None
        self.role = "primary"
        self.primary_name = None
        self._become_primary(promoted=True)
        self.trace(f"PROMOTED at {self.last_sequence}, epoch {self.epoch}")
        return True

    # ------------------------------------------------------------ status (the admin port)

    def status(self) -> Optional[dict]:
        if self.role == "primary":
            return {"role": "primary", "epoch": self.epoch, "released_sequence": self.core.released_sequence,
                    "degraded": self.release.degraded, "last_sequence": self.last_sequence,
                    "sequenced_sequence": self.core.next_sequence - 1, "pid": self.incarnation,
                    "replication": self.release.mode, "standby_required": self.release.standby_required}
        if self.role == "standby":
            return self.standby.status(self.epoch, self.last_sequence, self.durable_sequence)
        return None

    # ------------------------------------------------------------ network endpoint

    def accept(self, connection) -> bool:
        if connection.kind == "admin":
            if self.role == "down":
                return False
            self.known_connections.add(connection.connection_id)
            return True
        if self.role != "primary":
            return False
        if connection.kind == "client":
            # Each simulated connection is its own peer: the simulator has no addresses.
            if self.core.session_opened(connection.connection_id, self.simulator.now_ns,
                                        f"simulated-{connection.connection_id}") is not None:
                return False
            self.sessions[connection.connection_id] = connection
        elif connection.kind == "link":
            self.link_hello_pending.add(connection.connection_id)
        self.known_connections.add(connection.connection_id)
        return True

    def opened(self, connection) -> None:
        if connection.source == self.name and connection is self.upstream:
            self._guarded(self._send_hello)

    def _send_hello(self) -> None:
        with self._maybe_read_fault():
            verify_last_record(self.writer)
            starts = own_starts(self.directory.journal, primary_starts(self.directory), self.writer.last_sequence)
        hello = self.standby.hello(self.writer.epoch, self.writer.last_sequence, self.writer.last_crc, starts)
        self.simulator.network.send(self.upstream, self.name, _encode(hello))

    def received(self, connection, payload: bytes) -> None:
        if self.role == "down" or connection.connection_id not in self.known_connections:
            return
        self._guarded(self._received, connection, payload)

    def _received(self, connection, payload: bytes) -> None:
        kind = connection.kind
        if kind == "admin":
            # The admin port: `status` and `promote`, as replica/admin.py serves them.
            if payload.startswith(b"promote "):
                # "promote TIMEOUT_MS": the watchdog's threshold, for the standby's guard.
                reply = {"promoted": self.promote(int(payload.split()[1]))}
            else:
                reply = self.status() or {}
            self.simulator.network.send(connection, self.name, _encode(reply))
            return
        if kind == "client":
            if self.role == "primary" and connection.connection_id in self.sessions:
                self.core.client_payload(connection.connection_id, payload, self.simulator.now_ns)
                self._flush()
                self._kick()
            return
        if kind == "link":
            try:
                message = link_decoder.decode(payload)
            except msgspec.MsgspecError:
                self.simulator.network.cut(connection)
                return
            if self.role == "primary" and connection.target == self.name:
                if connection.connection_id in self.link_hello_pending:
                    self.link_hello_pending.discard(connection.connection_id)
                    if type(message) is Hello:
                        self._on_hello(connection, message)
                    else:
                        self.simulator.network.cut(connection)
                elif type(message) is Ack:
                    self._on_ack(connection, message)
            elif self.role == "standby" and connection is self.upstream:
                self._on_upstream(message)

    def closed(self, connection) -> None:
        if connection.connection_id not in self.known_connections:
            return
        self.known_connections.discard(connection.connection_id)
        if self.role == "down":
            return
        self._guarded(self._closed, connection)

    def _closed(self, connection) -> None:
        if connection.kind == "client" and self.role == "primary":
            if self.sessions.pop(connection.connection_id, None) is not None:
                self.core.session_closed(connection.connection_id, self.simulator.now_ns)
                self._flush()
                self._kick()
        elif connection.kind == "link":
            self.link_hello_pending.discard(connection.connection_id)
            if self.role == "primary" and connection is self.link_connection:
                self.link_connection = None
                self.link = None
            elif self.role == "standby" and connection is self.upstream:
                self._upstream_lost()

