"""The primary node: thin asyncio adapters around PrimaryCore and FeedCore.

    client TCP ─► ClientConnection.data_received ─► PrimaryCore.client_payload (records pend)
                                                          │
    commit loop: take_records ─► JournalWriter.append ─► write_and_start_sync (write +
                 fdatasync in a thread, so sockets keep being read: group commit forms
                 by itself) ... commit_async (batch N durable)
                 pipelined: batch N+1 is written and its fdatasync started, THEN
                 release(release_point) ─► apply N ─► outboxes ─► transport.write
    feed TCP  ◄─ FeedCore outbox (one encoded frame per update, shared by subscribers)
    multicast ◄─ MulticastPublisherCore packets (opt-in; replica/multicast_node.py), with
                 its TCP retransmission server
    admin TCP ◄─ one JSON object per line: status, snapshot (mutual TLS: replica/tls.py)
    FIX TCP   ◄► opt-in ([fix]): FIX 4.4 order entry into the same PrimaryCore
                 (replica/fix_node.py, replica/fix_session.py)
    gateway tick (every GATEWAY_TICK_SECONDS): PrimaryCore.tick (logon timeouts, held
                 logons, heartbeats, test requests, idle cuts) and the feed port's
                 subscribe timeouts (replica/gateway.py's AdmissionGate)

Everything here is I/O and timing; every decision is in the cores. Durability: with
policy `always` a record is released only once fdatasync covered it; with `interval` or
`none` once it is written (the policy's stated window of loss), and `interval` syncs at
least every `interval_ms`.

Slow consumers: a feed subscriber or client session whose transport buffer exceeds its
limit is disconnected with a reason; the commit loop never waits for a socket.
Shutdown: SIGTERM (or `stop()`) stops accepting, finishes the batch in flight, syncs the
journal, and closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Callable, Optional

import msgspec

import journal
from replica.admin import serve_admin
from replica.config import NodeConfig
from replica.metrics import start_metrics
from replica.data_directory import DataDirectory, record_primary_start
from replica.fix_node import FixAcceptor
from replica.gateway import AdmissionGate
from replica.multicast import MulticastPublisherCore
from replica.multicast import session_id as multicast_session_id
from replica.multicast_node import MulticastPublisher
from replica.primary import PrimaryCore
from replica.protocol import (
    Disconnect,
    FrameReader,
    FrameTooLargeError,
    Subscribe,
    Unsubscribe,
    encode_frame,
    encode_frames,
    feed_request_decoder,
)
from replica.recovery import recover_exchange
from replica.replication import InFlightWindow, ReleasePolicy
from replica.replication_server import serve_replication
from replica.snapshotter import Snapshotter
from replica.tls import NodeTls
from statemachine import AddInstrument, Checkpoint, Exchange
from statemachine.version import RULES_VERSION

# How often the gateway's timers run: logon / subscribe timeouts and failed-logon delays
# are this precise; heartbeats go out at each session's negotiated interval.
GATEWAY_TICK_SECONDS = 0.1
# The listen backlog of the client and feed ports: a burst of connections waits in the
# kernel for the accept loop instead of being dropped (a SYN retry costs a member 1 s).
LISTEN_BACKLOG = 1024
MAINTENANCE_PERIOD_SECONDS = 0.5
# A digest checkpoint (`twinbook verify` checks them) after at least this many records.
DIGEST_CHECKPOINT_EVERY_RECORDS = 10_000
# Bytes a record's frame adds to its body in a journal batch, rounded up (the journal's
# frame and payload headers are well under this).
BATCH_RECORD_OVERHEAD_BYTES = 64


def digests_reply(digests, exchange: Exchange) -> dict:
    """The admin `digests` answer: the recorded (sequence, digest) pairs and the digest
    at the applied sequence now (`twinbook status` looks for a sequence both hold)."""
    return {"digests": digests.pairs + [(exchange.last_sequence, exchange.state_digest())]}


class ClientConnection(asyncio.Protocol):
    def __init__(self, node: "PrimaryNode") -> None:
        self.node = node
        self.reader = FrameReader()
        self.transport: Optional[asyncio.Transport] = None
        self.session_id = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.session_id = self.node.open_session(self, peer_host(transport))

    def data_received(self, data: bytes) -> None:
        node = self.node
        core = node.core
        now_ns = time.time_ns()
        try:
            payloads = self.reader.feed(data)
        except FrameTooLargeError as error:
            core.frame_too_large(self.session_id, str(error))
            node.flush()
            return
        client_payload = core.client_payload
        session_id = self.session_id
        for payload in payloads:
            client_payload(session_id, payload, now_ns)
        node.wake()

    def connection_lost(self, exc) -> None:
        self.node.close_session(self.session_id)


class FeedConnection(asyncio.Protocol):
    def __init__(self, node: "PrimaryNode") -> None:
        self.node = node
        self.reader = FrameReader()
        self.transport: Optional[asyncio.Transport] = None
        self.subscriber_id = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        # The kernel's send buffer would otherwise grow (autotuning, up to tcp_wmem's
        # maximum, megabytes) behind the configured bound before the adapter sees any
        # backlog: cap it at the same bound (Linux doubles the value asked for), so a
        # subscriber that stops reading is cut off after about twice
        # feed_buffer_bytes_max in all, not after megabytes more.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, max(4096, self.node.config.limits.feed_buffer_bytes_max // 2)
                )
            except OSError:
                pass
        self.subscriber_id = self.node.open_subscriber(self, peer_host(transport))

    def data_received(self, data: bytes) -> None:
        feed = self.node.core.feed
        try:
            payloads = self.reader.feed(data)
        except FrameTooLargeError:
            self.node.drop_subscriber(self.subscriber_id, "frame_too_large")
            return
        for payload in payloads:
            try:
                request = feed_request_decoder.decode(payload)
            except msgspec.MsgspecError:
                self.node.drop_subscriber(self.subscriber_id, "malformed")
                return
            if type(request) is Subscribe:
                if not self.node.subscriber_subscribed(self.subscriber_id):
                    return
                feed.subscribe(self.subscriber_id, request.symbol)
            elif type(request) is Unsubscribe:
                feed.unsubscribe(self.subscriber_id, request.symbol)
        self.node.flush()

    def connection_lost(self, exc) -> None:
        self.node.close_subscriber(self.subscriber_id)


def host_port(address) -> str:
    """("127.0.0.1", 7701) as 127.0.0.1:7701 for log lines."""
    return f"{address[0]}:{address[1]}"


def peer_host(transport) -> str:
    """The peer's address (the unit the gateway bounds and slows), "" if unknown."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else ""


class PrimaryNode:
    def __init__(self, config: NodeConfig, data_root: str, *, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.directory = DataDirectory.create(data_root)
        self.log = log
        # Loaded now: a missing certificate stops the node before it recovers anything.
        self.tls = NodeTls(config.tls, config.cluster_id, log, default_node="a")
        self.core: Optional[PrimaryCore] = None
        self.writer: Optional[journal.JournalWriter] = None
        self.connections: dict[int, ClientConnection] = {}
        self.subscribers: dict[int, FeedConnection] = {}
        # Feed connections that have not subscribed yet are bounded apart from the
        # subscribed ones (feed_subscribers_max), like logons on the trading port.
        gateway = config.gateway
        self.feed_gate = AdmissionGate(gateway.pending_subscribers_max, gateway.pending_subscribers_per_peer_max,
                                       gateway.subscribe_timeout_ms * 1_000_000)
        self.subscribed: set[int] = set()
        self._next_connection_id = 1
        self._work = asyncio.Event()
        self._stopping = False
        # The in-flight window (sync mode): records sequenced but waiting for room, and
        # whether client sockets are paused meanwhile.
        self.window = InFlightWindow(config.window.records_max, config.window.bytes_max)
        self._waiting_records: list = []
        self.clients_paused = False
        self._servers: list = []
        self._tasks: list = []
        self._commit_task: Optional[asyncio.Task] = None
        self._release_written = config.durability != "always"
        self.snapshotter = Snapshotter(self.directory, config.snapshot_retention)
        self._last_snapshot_sequence = 0
        self._last_snapshot_ns = time.monotonic_ns()
        self._last_digest_checkpoint = 0
        # Replication (replica/replication_server.py): the attached standby's link, how far
        # it is durable, and whether sync mode must wait for it.
        self.standby_link = None
        self.metrics = None
        self.release = ReleasePolicy(config.replication)
        self.divergence: Optional[str] = None
        self.exit_code = 0
        self.stopped = asyncio.Event()
        self.addresses: dict[str, tuple[str, int]] = {}
        self.multicast: Optional[MulticastPublisher] = None
        self.fix: Optional[FixAcceptor] = None
        # Set when the commit loop died (a journal write or fdatasync failed): the node
        # then stops at once (nothing more can be acknowledged) and run_primary raises it.
        self.failure: Optional[BaseException] = None

    # ------------------------------------------------------------ start / stop

    async def start(self, promoted: Optional[tuple] = None) -> None:
        """Recover from disk and start serving; or, with `promoted=(exchange, writer)`
        from a standby being promoted, take over its hot state and open journal."""
        config = self.config
        if promoted is not None:
            exchange, self.writer = promoted
        elif self.directory.has_journal():
            result = recover_exchange(self.directory.root, book_updates=True, cluster_id=config.cluster_id)
            exchange = result.exchange
            self.log(
                f"recovered sequence {exchange.last_sequence} (snapshot {result.snapshot_sequence} "
                f"+ {result.replayed_records} replayed; journal tail {result.journal_report.state})"
            )
            for sequence, reason in result.skipped_snapshots:
                self.log(f"skipped snapshot {sequence}: {reason}")
            self._last_snapshot_sequence = result.snapshot_sequence
        else:
            exchange = Exchange(book_updates=True)
        if promoted is None:
            self.writer = journal.JournalWriter.open(
                self.directory.journal, config.cluster_id, durability=config.durability, interval_ms=config.interval_ms
            )
        if self.writer.last_sequence != exchange.last_sequence:
            raise journal.JournalUsageError(
                self.directory.journal, None,
                f"journal ends at {self.writer.last_sequence} but recovery reached {exchange.last_sequence}",
            )
        # Before anything is sequenced: a standby holding records this journal lost may
        # cut back to here when it rejoins (replica/replication.py).
        record_primary_start(self.directory, self.writer.epoch, self.writer.last_sequence)
        self.core = PrimaryCore(
            exchange, config, self.writer.epoch, self.writer.last_sequence + 1, exchange.last_timestamp_ns
        )
        if config.fix is not None:
            # Before any record is released here: the ledger continues the journal's.
            self.fix = FixAcceptor(self)
        # Restarted (not promoted) where a standby had been required: wait for one again.
        self.release = ReleasePolicy(config.replication,
                                     standby_required=promoted is None and self.directory.standby_required())
        if config.multicast is not None:
            # Attached before anything is released here, so every record this node
            # releases (a promoted standby's epoch record first) is published; the
            # session and the numbering come from the cluster and the journal, so they
            # continue whatever node published before.
            settings = config.multicast
            self.core.multicast = MulticastPublisherCore(
                multicast_session_id(config.cluster_id), exchange.last_sequence + 1,
                packet_bytes_max=settings.packet_bytes_max, window_messages_max=settings.window_messages,
                window_bytes_max=settings.window_bytes_max,
            )
        if promoted is not None:
            # A new epoch starts with its own record: everything after it is this node's.
            now_ns = time.time_ns()
            self.core.begin_epoch(now_ns)
            for _sequence, epoch, timestamp_ns, body in self.core.take_records():
                self.writer.append(epoch, timestamp_ns, body)
            self.writer.commit()
            self.core.release(self.writer.written_sequence if self._release_written else self.writer.durable_sequence)
        if self.writer.last_sequence == 0:
            now_ns = time.time_ns()
            # The rules version the following records are written under (audit replay
            # refuses a journal whose rules it does not implement).
            self.core.submit_admin(Checkpoint(kind="rules", version=RULES_VERSION), now_ns)
            for instrument in config.instruments:
                self.core.submit_admin(
                    AddInstrument(instrument.symbol, instrument.tick_size, instrument.lot_size,
                                  instrument.band_bps, instrument.reference_price),
                    now_ns,
                )
            # Journal and apply them before the ports open (and before node.json says
            # they are open): a client or subscriber that comes at once must find the
            # instruments, not `unknown_symbol`.
            for _sequence, epoch, timestamp_ns, body in self.core.take_records():
                self.writer.append(epoch, timestamp_ns, body)
            self.writer.commit()
            self.core.release(self.writer.written_sequence if self._release_written else self.writer.durable_sequence)
        elif exchange.rules_version != RULES_VERSION:
            # A newer build continuing a journal written under older rules: the records
            # from here on are written, and replayed, under this build's rules.
            self.core.submit_admin(Checkpoint(kind="rules", version=RULES_VERSION), time.time_ns())
            for _sequence, epoch, timestamp_ns, body in self.core.take_records():
                self.writer.append(epoch, timestamp_ns, body)
            self.writer.commit()
            self.core.release(self.writer.written_sequence if self._release_written else self.writer.durable_sequence)
            self.log(f"journal continued under rules version {RULES_VERSION} from sequence {exchange.last_sequence}")
        loop = asyncio.get_running_loop()
        client_server = await self.tls.serve_members(lambda: ClientConnection(self), config.host, config.client_port,
                                                     backlog=LISTEN_BACKLOG, where="client connection from")
        feed_server = await self.tls.serve_members(lambda: FeedConnection(self), config.host, config.feed_port,
                                                   backlog=LISTEN_BACKLOG, where="feed connection from")
        admin_server = await serve_admin(self.tls, self._admin_reply, config.host, config.admin_port)
        replication_server = await serve_replication(self, config.host, config.replication_port)
        self._servers = [client_server, feed_server, admin_server, replication_server]
        self.addresses = {
            "client": client_server.sockets[0].getsockname()[:2],
            "feed": feed_server.sockets[0].getsockname()[:2],
            "admin": admin_server.sockets[0].getsockname()[:2],
            "replication": replication_server.sockets[0].getsockname()[:2],
        }
        if config.multicast is not None:
            self.multicast = MulticastPublisher(config.multicast, self.core.multicast, config.host,
                                                self.directory.root, log=self.log)
            await self.multicast.start()
            self.addresses["retransmit"] = self.multicast.retransmit_address
        if promoted is None:  # a promoted standby keeps serving its own metrics endpoint
            self.metrics = await start_metrics(config.metrics, self.status, lambda: self.core.rejections, self.log)
            if self.metrics is not None:
                self.addresses["metrics"] = self.metrics.address
        self._write_node_file()
        self._commit_task = loop.create_task(self._commit_loop())
        self._commit_task.add_done_callback(self._commit_loop_ended)
        self._tasks = [loop.create_task(self._gateway_ticks()), loop.create_task(self._maintenance())]
        if config.durability == "interval":
            self._tasks.append(loop.create_task(self._interval_syncs()))
        if self.fix is not None:
            self._tasks.append(loop.create_task(self._start_fix()))
        self.wake()
        self.log(
            f"primary up: epoch {self.writer.epoch}, sequence {self.writer.last_sequence}, "
            f"clients {host_port(self.addresses['client'])}, feed {host_port(self.addresses['feed'])}, "
            f"admin {host_port(self.addresses['admin'])}, "
            f"metrics {host_port(self.addresses['metrics']) if 'metrics' in self.addresses else 'off'}, "
            f"durability {config.durability}"
        )

    async def _start_fix(self) -> None:
        try:
            await self.fix.start(self.config.host, LISTEN_BACKLOG)
        except Exception as error:  # noqa: BLE001 - an operating fault: the node stops on it
            self.fix.start_failed()
            self.fail(error, "FIX acceptor could not start")
            return
        self._servers.append(self.fix.server)
        self.addresses["fix"] = self.fix.address
        self._write_node_file()
        self.log(f"FIX acceptor on {self.fix.address} (ledger rebuilt in {self.fix.rebuild_ms:.0f} ms)")

    async def stop(self) -> None:
        """Stop accepting, finish the batch in flight, sync the journal, close."""
        if self._stopping:
            return
        self._stopping = True
        for server in self._servers:
            server.close()
        if self.metrics is not None:
            self.metrics.close()
        for task in self._tasks:
            task.cancel()
        self.wake()
        if self._commit_task is not None:
            try:
                await self._commit_task
            except Exception:  # noqa: BLE001 - recorded in self.failure by _commit_loop_ended
                pass
        if self.multicast is not None:
            # A node that stepped down leaves the session to the newer primary.
            await self.multicast.stop(end_session=self.exit_code != 4)
        for connection in list(self.connections.values()) + list(self.subscribers.values()):
            if connection.transport is not None:
                connection.transport.close()
        self.snapshotter.wait()
        if self.writer is not None:
            if self.failure is None:
                self.writer.sync()
            self.writer.close()
        self.log(f"primary stopped at sequence {self.core.exchange.last_sequence if self.core else 0}")
        self.stopped.set()

    # ------------------------------------------------------------ the commit loop

    def _commit_loop_ended(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.fail(task.exception(), "commit loop failed")

    def fail(self, error: BaseException, what: str = "journal failed") -> None:
        """An operating fault this node cannot go on from (its journal failed or is
        corrupt): stop; `run_primary` raises the error, which the CLI turns into exit 3."""
        if self.failure is not None:
            return
        self.failure = error
        self.log(f"{what}, stopping: {type(error).__name__}: {error}")
        asyncio.ensure_future(self.stop())

    def wake(self) -> None:
        self._work.set()
        self.flush()

    async def _commit_loop(self) -> None:
        """Journal, replicate and release, pipelined: as soon as batch N is durable,
        batch N+1 (what was sequenced meanwhile) is written, streamed to the standby
        and its fdatasync started, and only then is batch N released (reports routed
        and flushed) while that fdatasync runs. Release stays strictly in sequence
        order and never passes `release_point` (durable here and, in sync mode, at the
        standby); a record waits for at most one fdatasync begun before it arrived."""
        core = self.core
        writer = self.writer
        while True:
            await self._work.wait()
            self._work.clear()
            journaled = self._journal_sequenced()
            while journaled:
                await writer.commit_async()
                journaled = self._journal_sequenced()
                core.release(self.release_point())
                self.flush()
            if self._stopping and not core.pending:
                # Records still waiting for the window were never journaled, so never
                # acknowledged: their clients resubmit to whichever node serves next.
                return

    def _journal_sequenced(self) -> bool:
        """Append the sequenced records the window lets through, stream them to a live
        standby, write them and start their fdatasync (awaiting nothing); whether any
        were."""
        records = self._records_within_window()
        if not records:
            return False
        writer = self.writer
        append = writer.append
        batch_bytes = 0
        for sequence, epoch, timestamp_ns, body in records:
            # A long fsync stall can pile up more than one journal batch holds.
            batch_bytes += len(body) + BATCH_RECORD_OVERHEAD_BYTES
            if batch_bytes > journal.BATCH_SIZE_BYTES_MAX:
                self._write_and_replicate()
                batch_bytes = len(body) + BATCH_RECORD_OVERHEAD_BYTES
            appended = append(epoch, timestamp_ns, body)
            if appended != sequence:
                raise journal.JournalUsageError(
                    writer.segment_path, None, f"sequencer assigned {sequence}, journal {appended}"
                )
        self._write_and_replicate()
        return True

    def _records_within_window(self) -> list:
        """The sequenced records to journal now: all of them, unless a standby is
        required (sync mode), when only what the in-flight window has room for; the rest
        wait, and client sockets are not read until the standby's acks make room."""
        records = self._waiting_records + self.core.take_records() if self._waiting_records else self.core.take_records()
        self._waiting_records = []
        release = self.release
        if records and release.mode == "sync" and release.standby_required:
            room_records, room_bytes = self.window.room(self.writer.written_sequence,
                                                       release.standby_durable_sequence)
            count = 0
            size_bytes = 0
            for _sequence, _epoch, _timestamp_ns, body in records:
                size_bytes += len(body) + BATCH_RECORD_OVERHEAD_BYTES
                if count == room_records or size_bytes > room_bytes:
                    break
                count += 1
            if count == 0 and self.writer.written_sequence <= release.standby_durable_sequence:
                # Nothing in flight: one record goes, however large against bytes_max,
                # or a window smaller than a record would never open.
                count = 1
            if count < len(records):
                self._waiting_records = records[count:]
                records = records[:count]
        self._pause_clients(bool(self._waiting_records))
        return records

    def _pause_clients(self, paused: bool) -> None:
        """Backpressure: stop (or resume) reading every client socket."""
        if paused == self.clients_paused:
            return
        self.clients_paused = paused
        # The idle clock must not run while we are the ones not reading (PrimaryCore).
        self.core.inbound_paused(paused, time.time_ns())
        for connection in self.connections.values():
            if connection.transport is not None and not connection.transport.is_closing():
                if paused:
                    connection.transport.pause_reading()
                else:
                    connection.transport.resume_reading()
        if self.fix is not None:
            self.fix.pause_reading(paused)

    def _write_and_replicate(self) -> None:
        """Stream the appended records to a live standby, write them, start their fsync.

        The frames go to the standby before the local fdatasync starts, so both disks work
        at once; nothing is released until `release_point` says both are durable.
        """
        writer = self.writer
        link = self.standby_link
        if writer.last_sequence > writer.written_sequence:
            live = link is not None and link.live
            counted = self.release.mode == "sync" and self.release.standby_required
            if live or counted:
                frames = writer.pending_frames()
                if counted:
                    self.window.journaled(writer.last_sequence, len(frames))
                if live:
                    link.send_frames(writer.written_sequence + 1, writer.last_sequence, frames)
        writer.write_and_start_sync()

    def release_point(self) -> int:
        """The highest sequence whose outputs may leave this node.

        Local durability under the policy; in sync replication, also the standby's
        durable sequence once a standby has attached (until an operator degrades).
        """
        writer = self.writer
        return self.release.point(writer.written_sequence if self._release_written else writer.durable_sequence)

    def on_standby_progress(self) -> None:
        if self.core is not None:
            self.window.standby_durable(self.release.standby_durable_sequence)
            self.core.release(self.release_point())
            self.flush()
            if self._waiting_records:
                self.wake()

    # ------------------------------------------------------------ outboxes

    def flush(self) -> None:
        core = self.core
        if core is None:
            return
        if self.fix is not None:
            # First: it takes PrimaryCore's answers for FIX connections (an eviction, a
            # held logon) before the native loop below would drop them.
            self.fix.flush()
        if core.outbox:
            limit = self.config.limits.session_buffer_bytes_max
            for session_id, messages in core.take_outbox().items():
                connection = self.connections.get(session_id)
                if connection is None or connection.transport is None:
                    continue
                transport = connection.transport
                transport.write(encode_frames(messages))
                if transport.get_write_buffer_size() > limit:
                    transport.write(encode_frame(Disconnect("slow_consumer")))
                    transport.abort()
        if core.log_lines:
            for line in core.log_lines:
                self.log(line)
            core.log_lines.clear()
        if core.closing:
            for session_id, _reason in core.take_closing():
                connection = self.connections.get(session_id)
                if connection is not None and connection.transport is not None:
                    connection.transport.close()
        feed = core.feed
        if feed.outbox:
            limit = self.config.limits.feed_buffer_bytes_max
            for subscriber_id, frames in feed.take_outbox().items():
                connection = self.subscribers.get(subscriber_id)
                if connection is None or connection.transport is None:
                    continue
                transport = connection.transport
                if transport.get_write_buffer_size() > limit:
                    self.drop_subscriber(subscriber_id, "slow_consumer")
                    continue
                transport.write(b"".join(frames))
        if self.multicast is not None:
            self.multicast.flush()

    # ------------------------------------------------------------ connections

    def _new_id(self) -> int:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        return connection_id

    def open_session(self, connection: ClientConnection, peer: str) -> int:
        session_id = self._new_id()
        self.connections[session_id] = connection
        if self.clients_paused:
            connection.transport.pause_reading()
        refusal = self.core.session_opened(session_id, time.time_ns(), peer)
        if refusal is not None:
            connection.transport.write(encode_frame(Disconnect(refusal)))
            connection.transport.close()
        else:
            self.flush()  # a pending connection it evicted
        return session_id

    def close_session(self, session_id: int) -> None:
        self.connections.pop(session_id, None)
        if self.core is not None:
            self.core.session_closed(session_id, time.time_ns())
            self.wake()

    def open_subscriber(self, connection: FeedConnection, peer: str) -> int:
        subscriber_id = self._new_id()
        refusal, evicted = self.feed_gate.admit(subscriber_id, peer, time.time_ns())
        if refusal is not None:
            connection.transport.write(encode_frame(Disconnect(refusal)))
            connection.transport.close()
            return subscriber_id
        if evicted is not None:
            self.drop_subscriber(evicted, "evicted_before_subscribe")
        self.subscribers[subscriber_id] = connection
        self.core.feed.subscriber_opened(subscriber_id)
        return subscriber_id

    def subscriber_subscribed(self, subscriber_id: int) -> bool:
        """A Subscribe arrived: the connection leaves the pending bound and counts
        against feed_subscribers_max (False: over it, and it was dropped)."""
        if subscriber_id in self.subscribed:
            return True
        if subscriber_id not in self.subscribers:
            return False
        if len(self.subscribed) >= self.config.limits.feed_subscribers_max:
            self.drop_subscriber(subscriber_id, "too_many_subscribers")
            return False
        self.feed_gate.leave(subscriber_id)
        self.subscribed.add(subscriber_id)
        return True

    def close_subscriber(self, subscriber_id: int) -> None:
        self.subscribers.pop(subscriber_id, None)
        self.subscribed.discard(subscriber_id)
        self.feed_gate.leave(subscriber_id)
        if self.core is not None:
            self.core.feed.subscriber_closed(subscriber_id)

    def drop_subscriber(self, subscriber_id: int, reason: str) -> None:
        connection = self.subscribers.get(subscriber_id)
        self.close_subscriber(subscriber_id)
        if connection is not None and connection.transport is not None:
            connection.transport.write(encode_frame(Disconnect(reason)))
            connection.transport.abort()

    # ------------------------------------------------------------ periodic work

    async def _gateway_ticks(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_TICK_SECONDS)
            now_ns = time.time_ns()
            self.core.tick(now_ns)
            if self.fix is not None:
                self.fix.tick(now_ns)
            for subscriber_id in self.feed_gate.expired(now_ns):
                self.drop_subscriber(subscriber_id, "subscribe_timeout")
            self.flush()

    async def _interval_syncs(self) -> None:
        # Policy "interval": whatever was written is synced within interval_ms even when
        # no new commit comes along to do it.
        period_seconds = self.config.interval_ms / 1000
        while True:
            await asyncio.sleep(period_seconds)
            self.writer.sync_if_due()

    async def _maintenance(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_PERIOD_SECONDS)
            outcome = self.snapshotter.poll()
            if outcome is not None:
                self.log(
                    f"snapshot at {outcome.sequence} {'written' if outcome.succeeded else 'FAILED'} "
                    f"(apply paused {outcome.stall_ns / 1e6:.1f} ms, child {outcome.write_ns / 1e6:.0f} ms)"
                )
            self._maybe_snapshot()
            self._maybe_digest_checkpoint()

    def _maybe_digest_checkpoint(self) -> None:
        """Journal the state digest, when everything submitted has been applied.

        A digest checkpoint at sequence s announces the digest after s - 1 records, so it
        can only be written when nothing is pending or awaiting durability.
        """
        core = self.core
        if core.pending or core.unreleased:
            return
        applied = core.exchange.last_sequence
        if applied - self._last_digest_checkpoint < DIGEST_CHECKPOINT_EVERY_RECORDS:
            return
        core.submit_admin(Checkpoint(kind="digest", digest=core.exchange.state_digest()), time.time_ns())
        self._last_digest_checkpoint = applied + 1
        self.wake()

    def _maybe_snapshot(self, force: bool = False) -> Optional[int]:
        exchange = self.core.exchange
        if self.snapshotter.busy or exchange.last_sequence <= self._last_snapshot_sequence:
            return None
        due_records = exchange.last_sequence - self._last_snapshot_sequence >= self.config.snapshot_every_records
        due_time = time.monotonic_ns() - self._last_snapshot_ns >= self.config.snapshot_every_seconds * 1_000_000_000
        if not (force or due_records or due_time):
            return None
        # The snapshot child reads the journal at its sequence, so that record must be on disk.
        if self.writer.written_sequence < exchange.last_sequence:
            return None
        sequence = self.snapshotter.start(exchange)
        self._last_snapshot_sequence = sequence
        self._last_snapshot_ns = time.monotonic_ns()
        return sequence

    # ------------------------------------------------------------ admin

    def _write_node_file(self) -> None:
        """DIR/node.json: the role, pid and bound addresses, for tools and tests.

        Written atomically (temp file + rename) so a reader never sees half of it; ports
        bound as 0 appear here with the numbers the kernel chose.
        """
        path = os.path.join(self.directory.root, "node.json")
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({
                "role": "primary",
                "pid": os.getpid(),
                "cluster_id": self.config.cluster_id,
                "epoch": self.core.epoch,
                "client": list(self.addresses["client"]),
                "feed": list(self.addresses["feed"]),
                "admin": list(self.addresses["admin"]),
                "replication": list(self.addresses["replication"]),
                **({"metrics": list(self.addresses["metrics"])} if "metrics" in self.addresses else {}),
                **({"retransmit": list(self.addresses["retransmit"]),
                    "multicast": [self.config.multicast.group, self.config.multicast.port],
                    "session": self.multicast.session} if self.multicast is not None else {}),
                **({"fix": list(self.addresses["fix"])} if "fix" in self.addresses else {}),
            }, handle)
        os.replace(temporary, path)

    def degrade(self) -> dict:
        """Run standalone while the standby is away (operator's explicit, journaled choice)."""
        refusal = self.release.can_degrade(self.standby_link is not None and self.standby_link.live)
        if refusal is not None:
            if self.release.standby_required:
                return {"degraded": False, "error": refusal}
            return {"degraded": self.release.degraded, "note": refusal}
        self.release.degrade()
        self.directory.set_standby_required(False)
        self.core.submit_admin(Checkpoint(kind="degraded", epoch=self.writer.epoch), time.time_ns())
        self.log("DEGRADED: acknowledging without a standby until one attaches again")
        self.wake()
        return {"degraded": True}

    def step_down(self, reason: str) -> None:
        """A newer epoch exists: stop acting as primary at once (exit code 4)."""
        self.log(f"stepping down: {reason}")
        self.exit_code = 4
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
        if self.fix is not None:
            self.fix.abort_all()
        asyncio.ensure_future(self.stop())

    def status(self) -> dict:
        core = self.core
        return {
            "role": "primary",
            "cluster_id": self.config.cluster_id,
            "epoch": core.epoch,
            "last_sequence": self.writer.last_sequence,
            # The highest sequence assigned, journaled or not: it only grows, so the
            # watchdog can tell a late status from a newer one.
            "sequenced_sequence": core.next_sequence - 1,
            "durable_sequence": self.writer.durable_sequence,
            "applied_sequence": core.exchange.last_sequence,
            "state_digest": core.exchange.state_digest(),
            "released_sequence": core.released_sequence,
            "replication": self.config.replication,
            # The in-flight window: its bounds, and whether it is full (client sockets
            # not read; this many sequenced records wait for room).
            "window_records_max": self.window.records_max,
            "window_bytes_max": self.window.bytes_max,
            "clients_paused": self.clients_paused,
            "records_waiting": len(self._waiting_records),
            "standby_attached": self.standby_link is not None and self.standby_link.live,
            "standby_durable_sequence": self.release.standby_durable_sequence,
            "standby_required": self.release.standby_required,
            "degraded": self.release.degraded,
            "divergence": self.divergence,
            "sessions": len(core.sessions),
            "sessions_logged_on": core.logged_on,
            "pending_logons": len(core.gate.pending),
            "logon_failures": core.logon_guard.failures_total,
            "subscribers": len(self.subscribers),
            "pending_subscribers": len(self.feed_gate.pending),
            "multicast": self.multicast.status() if self.multicast is not None else None,
            "fix": self.fix.gateway.status() if self.fix is not None and self.fix.gateway is not None else None,
            "pid": os.getpid(),
        }

    async def _admin_reply(self, request: dict) -> dict:
        command = request.get("command")
        if command == "status":
            return self.status()
        if command == "snapshot":
            sequence = self._maybe_snapshot(force=True)
            reply = {"snapshot_started": sequence is not None, "sequence": sequence}
            if sequence is None:
                reply["reason"] = "a snapshot is being written or nothing new to snapshot"
            return reply
        if command == "degrade":
            return self.degrade()
        if command == "depth" and isinstance(request.get("symbol"), str):
            symbol = request["symbol"]
            if symbol not in self.core.exchange.books:
                return {"error": f"unknown symbol {symbol}"}
            return {"sequence": self.core.exchange.last_sequence, **self.core.exchange.depth(symbol)}
        if command == "promote":
            return {"promoted": False, "already_primary": True, "epoch": self.core.epoch, "error": "already primary"}
        if command == "digests":
            return digests_reply(self.core.digests, self.core.exchange)
        if command == "fence" and isinstance(request.get("epoch"), int):
            # `twinbook promote --force --fence ADMIN`: a node of a newer epoch exists.
            if request["epoch"] <= self.core.epoch:
                return {"fenced": False, "error": f"epoch {request['epoch']} is not newer than this primary's "
                                                  f"{self.core.epoch}"}
            asyncio.get_running_loop().call_soon(self.step_down, f"fenced: a node of epoch {request['epoch']} exists")
            return {"fenced": True, "epoch": self.core.epoch}
        return {"error": "unknown admin command; use status, digests, snapshot, degrade, depth or fence"}


async def run_primary(config: NodeConfig, data_root: str, *, log: Callable[[str], None] = print) -> int:
    """Run a primary until SIGTERM/SIGINT, then shut down gracefully; return the exit code
    (4 when it stepped down because a newer epoch exists)."""
    import signal

    node = PrimaryNode(config, data_root, log=log)
    await node.start()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, lambda: asyncio.ensure_future(node.stop()))
    await node.stopped.wait()
    if node.failure is not None:
        raise node.failure
    return node.exit_code
