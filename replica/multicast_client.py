"""The multicast market-data subscriber: an asyncio adapter around SubscriberCore.

    UDP (joined group) ─► [PacketFaults, tests only] ─► SubscriberCore.packet_received
    SubscriberCore actions:
        RequestRetransmission(a, b) ─► TCP retransmission server (one connection, reopened
                                       when lost; unanswered requests are asked again by
                                       the core's timeout)
        FetchSnapshot(reason)       ─► the TCP feed: Subscribe each symbol, take its
                                       BookSnapshot, close; the books restart from them and
                                       the core from the lowest snapshot sequence
        SessionEnded                ─► noted (a restarted or promoted node continues it)
    delivered (sequence, body), strictly in order ─► decode ─► books ─► on_message

`MulticastSubscriber.run` joins the group, starts from sequence 1 when the session is
young enough to be replayed entirely by retransmission (full trade history) or else from
a snapshot, and runs for a bounded time or until a condition holds. Every decision
(gaps, reordering, duplicates, when to snapshot) is in SubscriberCore.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable, Optional

import msgspec

from replica.feed_client import BookView, FeedError
from replica.multicast import (
    FetchSnapshot,
    PacketFaults,
    RequestRetransmission,
    SessionEnded,
    SubscriberCore,
    decode_market_data,
)
from replica.protocol import (
    BookSnapshot,
    Disconnect,
    FeedRejected,
    FrameReader,
    Subscribe,
    encode_frame,
    feed_message_decoder,
)
from replica.retransmission import (
    RETRANSMISSION_FRAME_BYTES_MAX,
    RetransmissionRefused,
    Retransmitted,
    RetransmitRequest,
    reply_decoder,
)

TICK_SECONDS = 0.02
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
SNAPSHOT_TIMEOUT_SECONDS = 10.0
RETRY_PAUSE_SECONDS = 0.2


def multicast_receiver_socket(group: str, port: int, interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        # Several subscribers on one host share the group's port; each gets every packet.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass
        # Bound to the group address: only this group's datagrams, not every one to the port.
        sock.bind((group, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(interface))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, subscriber: "MulticastSubscriber") -> None:
        self.subscriber = subscriber

    def datagram_received(self, data: bytes, addr) -> None:
        self.subscriber.datagram(data)

    def error_received(self, exc) -> None:
        self.subscriber.receive_errors += 1


class MulticastSubscriber:
    def __init__(
        self,
        group: str,
        port: int,
        *,
        retransmit: list[tuple[str, int]],
        symbols: list[str],
        snapshot_endpoints: Optional[list[tuple[str, int]]] = None,
        interface: str = "127.0.0.1",
        on_message: Optional[Callable[[int, list], None]] = None,
        faults: Optional[PacketFaults] = None,
        core: Optional[SubscriberCore] = None,
    ) -> None:
        self.group = group
        self.port = port
        # Endpoints in failover order (the primary's, then the standby's): a failed
        # connection moves on to the next one.
        if not retransmit:
            raise ValueError("at least one retransmission endpoint is needed")
        self.retransmit = list(retransmit)
        self.snapshot_endpoints = list(snapshot_endpoints or [])
        self._retransmit_index = 0
        self._snapshot_index = 0
        self.interface = interface
        self.on_message = on_message
        self.faults = faults
        self.core = core or SubscriberCore()
        self.books = {symbol: BookView(symbol) for symbol in symbols}
        # Empty at sequence 0: right when the core replays the session from 1, and
        # replaced by the snapshot when it asks for one instead.
        for view in self.books.values():
            view.start_empty()
        self.transport: Optional[asyncio.DatagramTransport] = None
        self.receive_errors = 0
        self.session_ended = False
        self.messages_delivered = 0
        self._requests: list[RetransmitRequest] = []
        self._retransmit_writer: Optional[asyncio.StreamWriter] = None
        self._retransmit_task: Optional[asyncio.Task] = None
        self._snapshot_task: Optional[asyncio.Task] = None
        self._changed = asyncio.Event()
        self.failure: Optional[BaseException] = None

    @property
    def delivered_through(self) -> int:
        """The highest sequence delivered in order (0 before the first)."""
        expected = self.core.expected
        return 0 if not expected or self.core.awaiting_snapshot else expected - 1

    # ------------------------------------------------------------ running

    async def run(self, *, seconds: Optional[float] = None, until: Optional[Callable[[], bool]] = None) -> None:
        """Receive until `until()` holds or `seconds` pass (whichever first); at least one
        of them must be given so that the loop ends by itself unless asked to run forever
        (both None: until cancelled)."""
        loop = asyncio.get_running_loop()
        sock = multicast_receiver_socket(self.group, self.port, self.interface)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self), sock=sock)
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while True:
                if self.failure is not None:
                    raise self.failure
                if until is not None and until():
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), TICK_SECONDS)
                except asyncio.TimeoutError:
                    pass
                self.core.tick(time.monotonic_ns())
                self._after()
        finally:
            await self.close()

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for task in (self._retransmit_task, self._snapshot_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                    pass
        if self._retransmit_writer is not None:
            self._retransmit_writer.close()
            self._retransmit_writer = None

    def datagram(self, data: bytes) -> None:
        now_ns = time.monotonic_ns()
        packets = self.faults.filter(data) if self.faults is not None else (data,)
        receive = self.core.packet_received
        for packet in packets:
            receive(packet, now_ns)
        self._after()

    def _after(self) -> None:
        core = self.core
        delivered = core.take_delivered()
        if delivered:
            books = self.books
            on_message = self.on_message
            for sequence, body in delivered:
                updates = decode_market_data(body)
                for update in updates:
                    view = books.get(update.symbol)
                    if view is not None:
                        view.apply_events(sequence, update.events)
                if on_message is not None:
                    on_message(sequence, updates)
            self.messages_delivered += len(delivered)
            self._changed.set()
        if core.actions:
            for action in core.take_actions():
                kind = type(action)
                if kind is RequestRetransmission:
                    self._request(RetransmitRequest(core.session.decode("ascii"), action.first_sequence,
                                                    action.last_sequence))
                elif kind is FetchSnapshot:
                    self._fetch_snapshot()
                elif kind is SessionEnded:
                    self.session_ended = True
            self._changed.set()

    # ------------------------------------------------------------ retransmission

    def _request(self, request: RetransmitRequest) -> None:
        writer = self._retransmit_writer
        if writer is not None and not writer.is_closing():
            writer.write(encode_frame(request))
            return
        self._requests.append(request)
        if self._retransmit_task is None or self._retransmit_task.done():
            self._retransmit_task = asyncio.get_running_loop().create_task(self._retransmission_link())

    async def _retransmission_link(self) -> None:
        endpoint = self.retransmit[self._retransmit_index % len(self.retransmit)]
        try:
            reader, writer = await asyncio.open_connection(*endpoint)
        except OSError:
            # The core asks again after its timeout; the next request reconnects.
            self._retransmit_index += 1
            self._requests.clear()
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            return
        self._retransmit_writer = writer
        for request in self._requests:
            writer.write(encode_frame(request))
        self._requests.clear()
        frames = FrameReader(RETRANSMISSION_FRAME_BYTES_MAX)
        core = self.core
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    self._retransmit_index += 1
                    return
                for payload in frames.feed(data):
                    reply = reply_decoder.decode(payload)
                    now_ns = time.monotonic_ns()
                    if type(reply) is Retransmitted:
                        core.retransmission_received(reply.first_sequence, reply.messages, now_ns)
                    elif type(reply) is RetransmissionRefused:
                        core.retransmission_refused(reply.reason, now_ns)
                    self._after()
        except (ConnectionError, OSError, msgspec.MsgspecError, ValueError):
            self._retransmit_index += 1
            return
        finally:
            writer.close()
            if self._retransmit_writer is writer:
                self._retransmit_writer = None

    # ------------------------------------------------------------ snapshots

    def _fetch_snapshot(self) -> None:
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshot())

    async def _snapshot(self) -> None:
        if not self.snapshot_endpoints or not self.books:
            self.failure = FeedError("a snapshot is needed (the gap is too old to retransmit) but no snapshot "
                                     "endpoint (the TCP feed) or no symbol was given")
            self._changed.set()
            return
        while True:
            try:
                snapshots = await asyncio.wait_for(self._take_snapshots(), SNAPSHOT_TIMEOUT_SECONDS)
                break
            except (OSError, asyncio.TimeoutError, ConnectionError):
                self._snapshot_index += 1
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
            except FeedError as error:
                self.failure = error
                self._changed.set()
                return
        for snapshot in snapshots:
            self.books[snapshot.symbol].apply(snapshot)
        self.core.snapshot_loaded(min(snapshot.journal_sequence for snapshot in snapshots), time.monotonic_ns())
        self._after()

    async def _take_snapshots(self) -> list[BookSnapshot]:
        endpoint = self.snapshot_endpoints[self._snapshot_index % len(self.snapshot_endpoints)]
        reader, writer = await asyncio.open_connection(*endpoint)
        try:
            for symbol in self.books:
                writer.write(encode_frame(Subscribe(symbol)))
            frames = FrameReader()
            # symbol -> its snapshot's parts, in order; complete once the last part came.
            found: dict[str, list[BookSnapshot]] = {}
            complete: set[str] = set()
            while len(complete) < len(self.books):
                data = await reader.read(1 << 20)
                if not data:
                    raise ConnectionError("the feed closed the connection during a snapshot")
                for payload in frames.feed(data):
                    message = feed_message_decoder.decode(payload)
                    if type(message) is BookSnapshot and message.symbol in self.books:
                        if message.symbol not in complete:
                            found.setdefault(message.symbol, []).append(message)
                            if message.part == message.parts:
                                complete.add(message.symbol)
                    elif type(message) is FeedRejected:
                        raise FeedError(f"feed refused {message.symbol}: {message.reason}")
                    elif type(message) is Disconnect:
                        raise ConnectionError(f"feed disconnected: {message.reason}")
            return [part for parts in found.values() for part in parts]
        finally:
            writer.close()
