"""The hot standby: follows a primary over the replication link, ready to take over.

    connect ─► Hello(cluster, epoch, last seq + crc)
      Accepted ─► for each Frames message:
                    JournalWriter.append_frames (verifies every CRC and the chain, refuses
                    an older epoch) ─► write + start the fdatasync, and read on
                  (acker task) fdatasync ends ─► Ack(durable) ─► apply the batches it
                    covers to the hot exchange ─► Ack(applied, digest)
                  so the primary's release waits only for our fdatasync, never for
                  our apply, and the next batch is read while this one syncs
      Diverged(boundary, crc) ─► our chain at the primary's epoch boundary matches:
                    our tail after it (any length) was never acknowledged by the new
                    primary: cut it into `<segment>.divergent` (kept for audit, never
                    deleted), drop snapshots beyond it, rebuild the exchange, reconnect.
                    Our chain differs there: a real divergence; stop, naming the
                    sequence and `twinbook standby --rebuild`
      Refused ─► fatal (other cluster, a real divergence): stop; else retry with backoff

A link that stays silent (no frames, no beats) for PRIMARY_SILENCE_TIMEOUT_SECONDS is
dropped and dialled again: a partition that swallowed the primary's close would
otherwise leave this side holding a half-open connection for good (it only writes in
answer to frames), and the healed network would never bring the standby back. A
failure of this node's own journal (disk full, I/O error: the writer fences itself)
is not the primary's fault and no retry can cure it: the standby stops with an
operating fault naming the file, as a primary whose commit loop failed does.

Beats from the primary carry its latest (sequence, digest); a different digest for a
sequence we applied is a divergence alarm: loud, and the node refuses promotion
(unless forced). The admin port answers `status` and `promote`; promotion bumps the
epoch, closes the link (applying any batch it had journaled but not yet applied) and
turns this very process into a PrimaryNode over the same hot exchange and open journal
(no replay), writing an epoch-start record first.
"""

from __future__ import annotations

import asyncio
from collections import deque
import dataclasses
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
from replica.data_directory import DataDirectory, primary_starts
from replica.primary_node import PrimaryNode, digests_reply, host_port
from replica.protocol import FrameTooLargeError, encode_frame
from replica.recovery import recover_exchange
from replica.snapshotter import drop_snapshots_after
from replica.errors import LinkProtocolError
from replica.link_journal import chain_values, own_starts, verify_last_record
from replica.replication import (
    Frames,
    LinkFrameReader,
    PrimaryBeat,
    link_decoder,
)
from replica.tls import NodeTls, handshake_failure
from replica.standby import PRIMARY_ALIVE_DEFAULT_MS, CheckChain, LinkRefused, StandbyCore
from replica.replication_server import BEAT_PERIOD_SECONDS, STANDBY_ACK_TIMEOUT_SECONDS
from statemachine import Exchange

RECONNECT_BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0)
# Linux's tcp_info.tcpi_state for an open connection (include/net/tcp_states.h).
TCP_ESTABLISHED = 1
# The primary beats every BEAT_PERIOD_SECONDS, frames or not: waiting this long for the
# next byte means the link is dead even if TCP has not noticed. Longer than the
# primary's own STANDBY_ACK_TIMEOUT_SECONDS, so that in a partition the primary (whose
# acknowledgements wait) decides first, and this side only clears its half-open
# connection afterwards. Only time spent waiting counts, never time spent journaling
# and applying what arrived.
PRIMARY_SILENCE_TIMEOUT_SECONDS = STANDBY_ACK_TIMEOUT_SECONDS + 2.0
SILENCE_CHECK_PERIOD_SECONDS = BEAT_PERIOD_SECONDS
# Dialling the primary gives up after this long (a SYN into a partition would otherwise
# wait for the kernel's retries, minutes) and tries again with backoff.
CONNECT_TIMEOUT_SECONDS = 2.0


class FatalRefusal(Exception):
    """The primary refused this standby for good (other cluster, no common history)."""


class OwnJournalCorrupt(Exception):
    """This standby's own journal failed its check twice while being read (corruption at
    rest): the node stops (exit 3) instead of blaming the primary and reconnecting."""

    def __init__(self, error: journal.JournalCorruptError) -> None:
        super().__init__(str(error))
        self.error = error


class StandbyNode:
    def __init__(
        self, config: NodeConfig, data_root: str, primary_address: tuple[str, int], *, log: Callable[[str], None] = print
    ) -> None:
        # A standby's certificate is node-b unless its config names one; the primary it
        # may become keeps that name (the promoted PrimaryNode gets this config).
        self.config = dataclasses.replace(config, tls=msgspec.structs.replace(config.tls, node=config.tls.node or "b"))
        self.tls = NodeTls(self.config.tls, config.cluster_id, log)
        self.directory = DataDirectory.create(data_root)
        self.primary_address = primary_address
        self.log = log
        # Every decision about the link lives in the sans-I/O core (replica/standby.py);
        # this adapter owns the socket, the journal writer and the clock.
        self.core: Optional[StandbyCore] = None
        self.writer: Optional[journal.JournalWriter] = None
        self.last_beat_monotonic_ns = 0
        self.primary: Optional[PrimaryNode] = None
        self.exit_code = 0
        self.stopped = asyncio.Event()
        self._admin_server = None
        self.metrics = None
        self._link_task: Optional[asyncio.Task] = None
        self._link_writer: Optional[asyncio.StreamWriter] = None
        # When the link's current read began (None while processing what arrived): the
        # silence watch measures only time spent waiting for the primary.
        self._link_waiting_since: Optional[float] = None
        self._promoting = False
        # Set when this node's own journal failed (the writer fenced itself): the node
        # stops, and run_standby raises it (an operating fault, exit code 3).
        self.failure: Optional[BaseException] = None

    @property
    def exchange(self) -> Optional[Exchange]:
        return None if self.core is None else self.core.exchange

    @property
    def divergence(self) -> Optional[str]:
        return None if self.core is None else self.core.divergence

    # ------------------------------------------------------------ start / stop

    def _recover(self) -> None:
        if self.directory.has_journal():
            result = recover_exchange(self.directory.root, book_updates=True, cluster_id=self.config.cluster_id,
                                      repair=self.writer is None)
            exchange = result.exchange
            for sequence, reason in result.skipped_snapshots:
                self.log(f"skipped snapshot {sequence}: {reason}")
        else:
            exchange = Exchange(book_updates=True)
        if self.core is None:
            self.core = StandbyCore(exchange, self.config.cluster_id)
        else:
            self.core.rebuilt(exchange)

    async def start(self) -> None:
        self._recover()
        self.writer = journal.JournalWriter.open(self.directory.journal, self.config.cluster_id, durability="always")
        if self.writer.last_sequence != self.exchange.last_sequence:
            raise journal.JournalUsageError(
                self.directory.journal, None,
                f"journal ends at {self.writer.last_sequence} but recovery reached {self.exchange.last_sequence}",
            )
        self._admin_server = await serve_admin(self.tls, self._admin_reply, self.config.host, self.config.admin_port)
        self.metrics = await start_metrics(self.config.metrics, self.status, self._rejections, self.log)
        self._write_node_file()
        self._link_task = asyncio.get_running_loop().create_task(self._replicate_forever())
        self._link_task.add_done_callback(self._link_task_ended)
        self.log(
            f"standby up at sequence {self.writer.last_sequence} epoch {self.writer.epoch}, following "
            f"{self.primary_address[0]}:{self.primary_address[1]}, admin {host_port(self._admin_address())}, "
            f"metrics {host_port(self.metrics.address) if self.metrics is not None else 'off'}"
        )

    def _admin_address(self) -> tuple:
        return self._admin_server.sockets[0].getsockname()[:2]

    def _rejections(self) -> dict:
        """The gateway's refusals by reason: none until promoted, then the primary's."""
        return self.primary.core.rejections if self.primary is not None and self.primary.core is not None else {}

    def _write_node_file(self) -> None:
        path = os.path.join(self.directory.root, "node.json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump({
                "role": "standby", "pid": os.getpid(), "cluster_id": self.config.cluster_id,
                "epoch": self.writer.epoch, "admin": list(self._admin_address()),
                "primary": list(self.primary_address),
                **({"metrics": list(self.metrics.address)} if self.metrics is not None else {}),
            }, handle)
        os.replace(path + ".tmp", path)

    async def stop(self) -> None:
        if self.primary is not None:
            await self.primary.stop()
            self.exit_code = self.primary.exit_code
            self.stopped.set()
            return
        if self._link_task is not None:
            self._link_task.cancel()
            try:
                await self._link_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._admin_server is not None:
            self._admin_server.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.writer is not None and not self.writer.closed:
            self.writer.close()
        self.log(f"standby stopped at sequence {self.exchange.last_sequence if self.exchange else 0}")
        self.stopped.set()

    # ------------------------------------------------------------ the link

    async def _replicate_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self._replicate_once()
            except FatalRefusal as refusal:
                self.log(f"primary refused this standby for good: {refusal}")
                return
            except OwnJournalCorrupt as corrupt:
                self._journal_failed(corrupt.error)
                return
            except (journal.JournalIOError, journal.JournalClosedError) as error:
                # Our own journal failed (a write or fdatasync: disk full, EIO), or was
                # fenced by such a failure earlier. Nothing more can be made durable
                # here, whatever the primary sends.
                self._journal_failed(error)
                return
            except journal.JournalError as error:
                # A corrupt or out-of-epoch frame: refused, never applied. Drop the link
                # and start again from what is durable here.
                self.log(f"refusing frames from the primary: {error}")
            except (ConnectionError, OSError, asyncio.IncompleteReadError, FrameTooLargeError, msgspec.MsgspecError,
                    LinkProtocolError) as error:
                if not self.core.connected and self._link_writer is not None and self.tls.client is not None:
                    # In TLS 1.3 a primary that refuses our certificate says so only after
                    # the handshake seemed to succeed here (a closed link or an alert at
                    # the first read): say so, rate-limited.
                    self.tls.refusals.refused(self.primary_address, "replication link: no answer from the primary at",
                                              f"{handshake_failure(error)} (does it trust this node's certificate?)")
                if self.core.connected:
                    self.log(f"replication link lost: {str(error) or type(error).__name__}")
            finally:
                if self.core.connected:
                    # It was attached: a fresh loss, dialled again at once, not after
                    # the backoff grown by the failures of an earlier outage.
                    attempt = 0
                self.core.link_lost()
                if self._link_writer is not None:
                    self._link_writer.close()
                    self._link_writer = None
            await asyncio.sleep(RECONNECT_BACKOFF_SECONDS[min(attempt, len(RECONNECT_BACKOFF_SECONDS) - 1)])
            attempt += 1

    def _link_task_ended(self, task: asyncio.Task) -> None:
        """The link task only ends by cancellation (stop, promotion) or on purpose (a
        fatal refusal, a failed journal). Anything else is a defect: say so and stop,
        rather than linger as a standby that follows nobody."""
        if task.cancelled() or task.exception() is None or self.failure is not None:
            return
        self.failure = task.exception()
        self.core.fatal_reason = f"the replication link failed: {self.failure!r}"
        self.log(f"replication link task failed, stopping: {type(self.failure).__name__}: {self.failure}")
        asyncio.ensure_future(self.stop())

    def _journal_failed(self, error: BaseException) -> None:
        self.failure = error
        self.core.fatal_reason = f"this node's journal failed: {error}"
        self.log(f"journal failed, stopping: {type(error).__name__}: {error}")
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))

    async def _watch_silence(self, writer: asyncio.StreamWriter) -> None:
        """Abort the link once the primary has been silent too long (see the module doc)."""
        while True:
            await asyncio.sleep(SILENCE_CHECK_PERIOD_SECONDS)
            since = self._link_waiting_since
            silent_seconds = 0.0 if since is None else time.monotonic() - since
            if silent_seconds > PRIMARY_SILENCE_TIMEOUT_SECONDS:
                self.log(f"nothing from the primary for {silent_seconds:.1f} s; dropping the link to dial again")
                writer.transport.abort()
                return

    async def _replicate_once(self) -> None:
        # Mutual TLS: a peer without a node certificate of this cluster is refused before
        # the Hello goes out, so nothing it sends is ever read (replica/tls.py).
        reader, writer = await self.tls.dial_node(self.primary_address, CONNECT_TIMEOUT_SECONDS)
        self._link_writer = writer
        self._link_waiting_since = None
        watch = asyncio.get_running_loop().create_task(self._watch_silence(writer))
        try:
            await self._follow(reader, writer)
        finally:
            watch.cancel()

    async def _follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._apply_journaled()
        try:
            verify_last_record(self.writer)
            starts = own_starts(self.directory.journal, primary_starts(self.directory), self.writer.last_sequence)
        except journal.JournalCorruptError as error:
            # Our own journal failed its check twice (corruption at rest): not the
            # primary's fault, and no reconnection can mend it.
            raise OwnJournalCorrupt(error) from error
        hello = self.core.hello(self.writer.epoch, self.writer.last_sequence, self.writer.last_crc, starts)
        writer.write(encode_frame(hello))
        journaled: deque = deque()  # (Frames, chain before) written, not yet applied
        batch_written = asyncio.Event()
        loop = asyncio.get_running_loop()
        acker = loop.create_task(self._acknowledge_and_apply(writer, journaled, batch_written))
        reading = loop.create_task(self._read_link(reader, writer, journaled, batch_written))
        try:
            done, _ = await asyncio.wait({acker, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (acker, reading):
                task.cancel()
            await asyncio.gather(acker, reading, return_exceptions=True)
        for task in done:
            task.result()  # the link's end: an error of either side, or the primary's close

    async def _read_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, journaled: deque,
                         batch_written: asyncio.Event) -> None:
        frames = LinkFrameReader()
        first_reply = True
        while True:
            self._link_waiting_since = time.monotonic()
            data = await reader.read(1 << 20)
            self._link_waiting_since = None
            if not data:
                raise ConnectionError("the primary closed the link")
            for payload in frames.feed(data):
                message = link_decoder.decode(payload)
                kind = type(message)
                if first_reply:
                    first_reply = False
                    action = self.core.first_reply(message)
                    if type(action) is LinkRefused:
                        if action.fatal:
                            raise FatalRefusal(action.reason)
                        raise ConnectionError(f"refused: {action.reason}")
                    if type(action) is CheckChain:
                        action = self.core.confirm_cut(action, self._own_chain_values(action.points))
                        if type(action) is LinkRefused:
                            raise FatalRefusal(action.reason)
                        self._cut_divergent_tail(action.common_sequence, action.reason)
                        raise ConnectionError("divergent tail cut; reconnecting to catch up")
                    self.log(f"attached to the primary at sequence {self.writer.last_sequence} (primary at "
                             f"{action.primary_last_sequence}, epoch {action.epoch})")
                    continue
                if kind is Frames:
                    # Journal and start the fdatasync now; acknowledging and applying
                    # happen in _acknowledge_and_apply, so the next batch is read (and
                    # written) while this one's fdatasync runs.
                    chain_before = self.writer.last_crc
                    self.writer.append_frames(message.frames,
                                              source=f"primary {self.primary_address[0]}:{self.primary_address[1]}")
                    self.writer.write_and_start_sync()
                    journaled.append((message, chain_before))
                    batch_written.set()
                elif kind is PrimaryBeat:
                    self._on_beat(message)

    async def _acknowledge_and_apply(self, link: asyncio.StreamWriter, journaled: deque,
                                     batch_written: asyncio.Event) -> None:
        """Ack each durable point as soon as its fdatasync ends (all the primary's sync
        mode waits for), THEN apply the batches it covers, in order, and ack that too.
        Applying is off the ack path; what is journaled but not applied when the link
        ends (promotion) is applied from the journal by _apply_journaled before the node
        can act as a primary."""
        while True:
            await batch_written.wait()
            batch_written.clear()
            while journaled:
                durable = await self.writer.commit_async()
                self._acknowledge(link, self.core.durable_ack(durable))
                applied = None
                while journaled and journaled[0][0].last_sequence <= durable:
                    message, chain_before = journaled.popleft()
                    applied = self.core.apply_frames(message, chain_before, durable)
                if applied is not None:
                    self._acknowledge(link, applied)

    def _acknowledge(self, link: asyncio.StreamWriter, ack) -> None:
        """Send an Ack, unless the link closed while the batch was being journaled: uvloop
        raises on a write to a closed transport (asyncio only logs), and that used to kill
        the link task, leaving a standby that followed nobody and never dialled again. The
        batch is applied all the same (it is in the journal); the next read ends the link."""
        if not link.is_closing():
            link.write(encode_frame(ack))

    def _apply_journaled(self) -> None:
        """Apply what the journal holds beyond the exchange: the link can be cancelled
        (promotion) between journaling a batch and applying it."""
        if self.writer.last_sequence <= self.exchange.last_sequence:
            return
        self.writer.commit()
        for batch in journal.read_tuple_batches(self.directory.journal, self.exchange.last_sequence + 1,
                                                self.writer.last_sequence):
            self.core.apply_records(batch)
        self.log(f"applied the journaled batch the link left unapplied (to {self.exchange.last_sequence})")

    def _on_beat(self, beat: PrimaryBeat) -> None:
        self.last_beat_monotonic_ns = time.monotonic_ns()
        alarm = self.core.beat(beat, self.last_beat_monotonic_ns)
        if alarm is not None:
            self.log(f"DIVERGENCE ALARM: {alarm}; this standby refuses promotion")

    def _own_chain_values(self, points) -> dict[int, int]:
        """This journal's chain values at the sequences of the primary's cut points."""
        try:
            return chain_values(self.directory.journal, sorted(sequence for sequence, _ in points if sequence))
        except journal.JournalCorruptError as error:
            raise OwnJournalCorrupt(error) from error

    def _cut_divergent_tail(self, common_sequence: int, reason: str) -> None:
        self.log(f"diverged from the primary after sequence {common_sequence} ({reason}); "
                 f"cutting {self.writer.last_sequence - common_sequence} records into .divergent")
        report = self.writer.truncate_after(common_sequence, keep_path_suffix=".divergent")
        self.log(f"divergent tail kept: {report}")
        drop_snapshots_after(self.directory, common_sequence)
        # Reopened, as a restart would: the writer's epoch fence falls back to the epoch
        # of the last record kept. The primary's records after the cut may be of an
        # older epoch than the cut ones (ours from a promotion it never saw), and come
        # from a primary of our epoch or newer (decide_hello checked it).
        self.writer.close()
        self.writer = journal.JournalWriter.open(self.directory.journal, self.config.cluster_id, durability="always")
        self._recover()

    # ------------------------------------------------------------ admin

    def status(self) -> dict:
        if self.primary is not None:
            return self.primary.status()
        beat_age_ms = None
        if self.last_beat_monotonic_ns:
            beat_age_ms = (time.monotonic_ns() - self.last_beat_monotonic_ns) // 1_000_000
        status = self.core.status(self.writer.epoch, self.writer.last_sequence, self.writer.durable_sequence)
        status["state_digest"] = self.exchange.state_digest()
        status["primary_beat_age_ms"] = beat_age_ms
        status["pid"] = os.getpid()
        return status

    async def promote(self, force: bool = False, primary_timeout_ms: int = PRIMARY_ALIVE_DEFAULT_MS) -> dict:
        if self.primary is not None:
            return {"promoted": False, "already_primary": True, "epoch": self.writer.epoch, "error": "already primary"}
        if self._promoting:
            return {"promoted": False, "error": "promotion under way"}
        if self.divergence is not None and not force:
            return {"promoted": False, "error": f"refusing: {self.divergence} (use --force to override)"}
        if self.core.primary_alive(time.monotonic_ns(), primary_timeout_ms,
                                   link_established=self._link_established()) and not force:
            return {"promoted": False, "error": "refusing: the primary is alive (its beat arrived within "
                                                f"{primary_timeout_ms} ms; use --force to override)"}
        self._promoting = True
        started = time.monotonic()
        if self._link_task is not None:
            self._link_task.cancel()
            try:
                await self._link_task
            except (asyncio.CancelledError, Exception):
                pass
        self._apply_journaled()
        new_epoch = self.writer.epoch + 1
        self.writer.set_epoch(new_epoch)
        self._admin_server.close()
        primary = PrimaryNode(self.config, self.directory.root, log=self.log)
        await primary.start(promoted=(self.exchange, self.writer))
        self.primary = primary
        elapsed_ms = (time.monotonic() - started) * 1000
        self.log(f"PROMOTED to primary at epoch {new_epoch}, sequence {self.writer.last_sequence} in {elapsed_ms:.0f} ms")
        asyncio.ensure_future(self._follow_primary_stop(primary))
        return {"promoted": True, "epoch": new_epoch, "last_sequence": self.writer.last_sequence,
                "elapsed_ms": round(elapsed_ms, 1)}

    def _link_established(self) -> bool:
        """Whether the link's TCP connection is still ESTABLISHED: once the primary has
        closed it (its process died: FIN or RST), the kernel says so at once, even while
        frames and beats it sent before wait unread behind that close."""
        link = self._link_writer
        if link is None or link.is_closing():
            return False
        sock = link.get_extra_info("socket")
        if sock is None or not hasattr(socket, "TCP_INFO"):
            return True
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except AttributeError:
            return True  # a transport that cannot say: the beats alone decide
        except OSError:
            return False
        return state == TCP_ESTABLISHED

    async def _follow_primary_stop(self, primary: PrimaryNode) -> None:
        await primary.stopped.wait()
        self.exit_code = primary.exit_code
        self.stopped.set()

    async def _admin_reply(self, request: dict) -> dict:
        command = request.get("command")
        if command == "status":
            return self.status()
        if command == "digests":
            return digests_reply(self.core.digests, self.exchange)
        if command != "promote":
            return {"error": "unknown admin command; a standby answers status, digests and promote"}
        try:
            return await self.promote(force=bool(request.get("force")),
                                      primary_timeout_ms=_timeout_ms(request.get("primary_timeout_ms")))
        except Exception as error:  # noqa: BLE001 - the process must not linger half-promoted
            # Neither following nor serving: say so and exit non-zero rather than linger
            # as a node that answers nothing useful.
            self.log(f"PROMOTION FAILED: {type(error).__name__}: {error}")
            self.exit_code = 5
            asyncio.get_running_loop().call_soon(self.stopped.set)
            return {"promoted": False, "error": f"promotion failed: {error}"}


# The alive guard's least threshold: one and a half beat periods. A watchdog certificate
# asking for less (primary_timeout_ms = 1) would switch the guard off, and skipping the
# guard is the operator's `force`, never a watchdog's.
PRIMARY_ALIVE_MIN_MS = int(1.5 * BEAT_PERIOD_SECONDS * 1000)


def _timeout_ms(value) -> int:
    """The promote request's failure-detector threshold (at least PRIMARY_ALIVE_MIN_MS),
    or the default for one by hand."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 600_000:
        return max(value, PRIMARY_ALIVE_MIN_MS)
    return PRIMARY_ALIVE_DEFAULT_MS


async def run_standby(
    config: NodeConfig, data_root: str, primary_address: tuple[str, int], *, log: Callable[[str], None] = print
) -> int:
    """Run a standby (and, once promoted, the primary it becomes) until SIGTERM."""
    import signal

    node = StandbyNode(config, data_root, primary_address, log=log)
    await node.start()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, lambda: asyncio.ensure_future(node.stop()))
    await node.stopped.wait()
    # A journal that failed here as a standby, or after promotion in the primary this
    # process became (its commit loop failed): an operating fault, not a clean exit.
    failure = node.failure if node.primary is None else node.primary.failure
    if failure is not None:
        raise failure
    return node.exit_code
