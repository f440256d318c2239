"""The primary's end of the replication link (asyncio adapter).

One standby at a time, and only one holding a node certificate of this cluster (mutual
TLS, replica/tls.py; with TLS off, anyone). On connect: read the standby's Hello, answer with `decide_hello` (run in a
worker thread: its journal scans must not stall matching) (Accepted / Diverged / Refused; a Hello from a higher epoch makes this primary step down
at once). Accepted: stream catch-up frames from the journal on disk (bounded batches,
`journal.read_frames`), then switch to live: from then on the commit loop hands every
batch's frames to `send_frames` before its own fdatasync. The switch happens with no
await between "caught up to the written sequence" and "live", so no batch can fall in
between. A record of the primary's own journal that fails its check twice on the way
(replica/link_journal.py) stops the node. Acks advance `standby_durable_sequence`, which releases outputs in sync mode;
beats go out every BEAT_PERIOD_SECONDS with the latest digest for comparison.

A standby that falls behind its socket buffer limit is cut off (it reconnects and
catches up from disk); so is one that acknowledges nothing it was sent for
STANDBY_ACK_TIMEOUT_SECONDS (a silent partition), which lets an operator `degrade`. The
primary never waits for a slow standby in async mode, and in sync mode it pauses
acknowledgements, which is the point of sync mode.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

import msgspec

import journal
from replica.data_directory import primary_starts
from replica.errors import LinkProtocolError
from replica.link_journal import catch_up_chunks, chain_values, count_frames, epoch_boundary
from replica.protocol import FrameTooLargeError, encode_frame
from replica.tls import LINK_ROLES
from replica.replication import (
    CATCH_UP_BATCH_BYTES_MAX,
    StandbyLinkCore,
    Accepted,
    Ack,
    Frames,
    Hello,
    LinkFrameReader,
    PrimaryBeat,
    decide_hello,
    link_decoder,
)

BEAT_PERIOD_SECONDS = 0.2
HELLO_TIMEOUT_SECONDS = 10.0
# A standby whose unsent bytes exceed this is cut off and must catch up from disk.
STANDBY_BUFFER_BYTES_MAX = 64 * 1024 * 1024
# A standby that acknowledges nothing of what it was sent for this long is cut off: a
# silent partition (no FIN, no RST: TCP would retry for many minutes) must end in a
# detached standby, so that `twinbook degrade` can release acknowledgements in sync mode.
STANDBY_ACK_TIMEOUT_SECONDS = 3.0


class StandbyLink:
    """The asyncio adapter of one standby's link; its decisions are in StandbyLinkCore."""

    def __init__(self, node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.core: Optional[StandbyLinkCore] = None
        self._closed = False
        self._backlog: list = []

    @property
    def live(self) -> bool:
        return not self._closed and self.core is not None and self.core.live

    @property
    def applied_sequence(self) -> int:
        return 0 if self.core is None else self.core.applied_sequence

    def send(self, message) -> None:
        if self._closed:
            return
        if self.writer.is_closing():
            # The standby went away and `run` has not seen it yet. Under uvloop a write
            # to a closed transport raises, and this is called from the commit loop,
            # which must never die of a standby leaving: drop the link here instead.
            self.close()
            return
        try:
            self.writer.write(encode_frame(message))
        except (ConnectionError, RuntimeError) as error:
            # The check above covers the case seen (uvloop's RuntimeError on a closed
            # handle); a transport that fails the write itself is dropped the same way,
            # for the same reason: the commit loop must go on without this standby.
            self.node.log(f"standby {self.peer}: write failed ({type(error).__name__}: {error}); dropping the link")
            self.close()
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > STANDBY_BUFFER_BYTES_MAX:
            self.node.log(f"standby {self.peer} is too far behind its socket; cutting it off")
            self.close()

    def send_frames(self, first_sequence: int, last_sequence: int, frames: bytes) -> None:
        self.core.frames_sent(first_sequence, last_sequence, time.monotonic_ns())
        self.send(Frames(first_sequence, last_sequence, frames, self.node.core.released_sequence))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()

    async def run(self) -> None:
        node = self.node
        frames = LinkFrameReader()
        try:
            hello = await asyncio.wait_for(self._next_message(frames), HELLO_TIMEOUT_SECONDS)
            if type(hello) is not Hello:
                self.node.log(f"replication peer {self.peer} did not start with a hello")
                return
            report = node.writer.recovery
            # In a worker thread: a diverged Hello makes decide_hello scan up to a whole
            # verified segment (epoch_boundary) and look up chain values, hundreds of ms
            # the matching loop must not stall for (the lookups only read journal files;
            # the numbers they compare against are taken here, on the loop).
            decision = await asyncio.to_thread(
                decide_hello,
                hello,
                cluster_id=node.config.cluster_id,
                epoch=node.writer.epoch,
                first_sequence=report.first_sequence or 1,
                last_sequence=node.writer.written_sequence,
                crc_lookup=lambda sequences: chain_values(node.directory.journal, sequences),
                boundary_lookup=lambda epoch, up_to: epoch_boundary(node.directory.journal, epoch, up_to),
                start_sequences=[sequence for _, sequence in primary_starts(node.directory)],
            )
            self.send(decision.reply)
            await self.writer.drain()
            if decision.primary_must_step_down:
                node.log(f"standby {self.peer} is at epoch {hello.epoch}, above ours: stepping down")
                node.step_down(f"a node of epoch {hello.epoch} exists")
                return
            if type(decision.reply) is not Accepted:
                node.log(f"standby {self.peer}: {decision.reply}")
                return
            if node.standby_link is not None:
                node.log(f"standby {self.peer} replaces the one at {node.standby_link.peer}")
                node.standby_link.close()
            self.core = StandbyLinkCore(
                decision.start_sequence, time.monotonic_ns(), int(STANDBY_ACK_TIMEOUT_SECONDS * 1_000_000_000)
            )
            node.standby_link = self
            node.release.standby_durable(decision.start_sequence - 1)
            node.log(f"standby {self.peer} attached at sequence {decision.start_sequence - 1}; catching up")
            acks = asyncio.get_running_loop().create_task(self._read_acks(frames))
            beats = asyncio.get_running_loop().create_task(self._beats())
            try:
                await self._catch_up()
                node.log(f"standby {self.peer} is live at sequence {node.writer.written_sequence}")
                await acks
            finally:
                beats.cancel()
                acks.cancel()
        except journal.JournalCorruptError as error:
            # A record of this node's own journal failed its check twice while being read
            # for the standby: corruption at rest, which stops the node (it must never
            # restart from, or serve, a journal it cannot verify).
            node.fail(error)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, FrameTooLargeError,
                msgspec.MsgspecError, OSError, LinkProtocolError) as error:
            node.log(f"replication link to {self.peer} lost: {str(error) or type(error).__name__}")
        finally:
            self.close()
            if node.standby_link is self:
                node.standby_link = None
                node.log(
                    "standby detached"
                    + ("; acknowledgements pause until it returns or `twinbook degrade`"
                       if node.release.mode == "sync" and node.release.standby_required else "")
                )

    async def _next_message(self, frames: LinkFrameReader):
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("standby closed the link")
            payloads = frames.feed(data)
            if payloads:
                self._backlog = [link_decoder.decode(payload) for payload in payloads[1:]]
                return link_decoder.decode(payloads[0])

    async def _catch_up(self) -> None:
        node = self.node
        core = self.core
        while True:
            # No await separates the question below from the switch to live that a None
            # answer makes: from then on the commit loop sends every batch.
            span = core.catch_up_range(node.writer.written_sequence)
            if span is None:
                if node.release.standby_live():
                    node.directory.set_standby_required(True)
                return
            next_sequence, written = span
            # One pass over the range in bounded chunks (a chunk that fails its check is
            # read twice at most: see link_journal); then the core is asked again.
            for first, chunk in catch_up_chunks(node.directory.journal, next_sequence, written,
                                                CATCH_UP_BATCH_BYTES_MAX):
                self.send_frames(first, first + count_frames(chunk) - 1, chunk)
                await self.writer.drain()
                if self._closed:
                    raise ConnectionError("link closed during catch-up")

    async def _read_acks(self, frames: LinkFrameReader) -> None:
        pending = self._backlog
        while True:
            for message in pending:
                if type(message) is Ack:
                    self._on_ack(message)
            data = await self.reader.read(65536)
            if not data:
                return
            pending = [link_decoder.decode(payload) for payload in frames.feed(data)]

    def _on_ack(self, ack: Ack) -> None:
        node = self.node
        if self.core.ack(ack, time.monotonic_ns()) and node.release.standby_durable(ack.durable_sequence):
            node.on_standby_progress()
        if ack.digest_sequence:
            same = node.core.digests.compare(ack.digest_sequence, ack.digest)
            if same is False and node.divergence is None:
                node.divergence = f"standby digest at {ack.digest_sequence} differs from ours"
                node.log(f"DIVERGENCE ALARM: {node.divergence}")

    async def _beats(self) -> None:
        node = self.node
        core = self.core
        while not self._closed:
            if core.overdue(time.monotonic_ns()):
                node.log(f"standby {self.peer} acknowledged nothing for {STANDBY_ACK_TIMEOUT_SECONDS:.0f} s "
                         f"(durable {core.durable_sequence}, sent {core.sent_sequence}); cutting it off")
                self.close()
                return
            digest_sequence, digest = node.core.digests.latest
            self.send(PrimaryBeat(
                node.writer.epoch, node.writer.last_sequence, node.writer.durable_sequence,
                node.core.released_sequence, digest_sequence, digest,
            ))
            await asyncio.sleep(BEAT_PERIOD_SECONDS)


async def serve_replication(node, host: str, port: int):
    """The replication port; with TLS on, only a node certificate of this cluster gets a
    StandbyLink (replica/tls.py): no message of another peer is read."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _identity) -> None:
        await StandbyLink(node, reader, writer).run()

    return await node.tls.serve(handle, host, port, roles=LINK_ROLES, where="replication connection from")
