"""The primary's multicast publisher and retransmission server: thin asyncio adapters.

    PrimaryCore.release ─► MulticastPublisherCore.record_released (encode once, window)
    PrimaryNode.flush   ─► MulticastPublisher.flush ─► take_packets ─► UDP sendto(group)
    idle                ─► a heartbeat packet every `heartbeat_interval_ms`
    stop                ─► the end-of-session packet (not on a step-down: a newer primary
                           publishes the session)
    retransmission TCP  ─► decide(): window ─► reply | rebuild in a worker thread
                           (JournalRebuilder, one at a time) ─► reply | refusal

The UDP socket is connected to the group, so each send is one system call with no
address to resolve; multicast loopback stays on so subscribers on the same host (and in
the same network namespace) receive the packets. Every decision is in the cores
(replica/multicast.py, replica/retransmission.py); this module only moves bytes.
Write-ahead holds: records reach the publisher only through release, after durability.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable, Optional

import msgspec

from replica.config import MulticastConfig
from replica.multicast import MulticastPublisherCore
from replica.protocol import FrameReader, FrameTooLargeError, encode_frame
from replica.retransmission import (
    CONNECTIONS_MAX,
    RETRANSMISSION_FRAME_BYTES_MAX,
    JournalRebuilder,
    Rebuild,
    RebuildRefused,
    Refuse,
    RetransmissionRefused,
    RetransmitRequest,
    ServeFromWindow,
    decide,
    reply_frames,
    request_decoder,
)

# A request is a few dozen bytes; anything near this is not a request.
REQUEST_FRAME_BYTES_MAX = 4096
# A retransmission connection with no request for this long is closed (bounds idle ones).
IDLE_SECONDS = 300.0
# Kernel send buffer asked for the UDP socket: a burst of packets must not be dropped
# by the sender's own queue.
SEND_BUFFER_BYTES = 4 * 1024 * 1024


def multicast_sender_socket(settings: MulticastConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, settings.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(settings.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:
            pass
        sock.connect((settings.group, settings.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MulticastPublisher:
    def __init__(self, settings: MulticastConfig, core: MulticastPublisherCore, host: str, data_root: str,
                 *, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.core = core
        self.host = host
        self.data_root = data_root
        self.log = log
        self.transport: Optional[asyncio.DatagramTransport] = None
        self.server: Optional[asyncio.AbstractServer] = None
        self.retransmit_address: tuple[str, int] = ("", 0)
        self.session = core.session.decode("ascii")
        self.rebuilder: Optional[JournalRebuilder] = None
        self._rebuild_lock = asyncio.Lock()
        self._connections: set[asyncio.StreamWriter] = set()
        self._last_sent_ns = 0
        self._heartbeat_task: Optional[asyncio.Task] = None
        self.send_errors = 0
        self.requests_served = 0
        self.requests_refused = 0
        self.messages_retransmitted = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = multicast_sender_socket(self.settings)
        self.transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        self.server = await asyncio.start_server(self._serve, self.host, self.settings.retransmit_port)
        self.retransmit_address = self.server.sockets[0].getsockname()[:2]
        self._heartbeat_task = loop.create_task(self._heartbeats())
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        packets = self.core.take_packets()
        if not packets:
            return
        sendto = transport.sendto
        for packet in packets:
            sendto(packet)
        self._last_sent_ns = time.monotonic_ns()

    async def _heartbeats(self) -> None:
        interval_ns = self.settings.heartbeat_interval_ms * 1_000_000
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_ms / 2000)
            if time.monotonic_ns() - self._last_sent_ns >= interval_ns and self.transport is not None:
                self.transport.sendto(self.core.heartbeat_packet())
                self._last_sent_ns = time.monotonic_ns()

    async def stop(self, *, end_session: bool = True) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        if self.server is not None:
            self.server.close()
        for writer in list(self._connections):
            writer.close()
        if self.transport is not None:
            self.flush()
            if end_session:
                self.transport.sendto(self.core.end_of_session_packet())
            self.transport.close()
            self.transport = None

    def status(self) -> dict:
        core = self.core
        return {
            "session": self.session,
            "group": [self.settings.group, self.settings.port],
            "next_sequence": core.next_sequence,
            "window_first_sequence": core.window_first_sequence,
            "messages_published": core.messages_published,
            "packets_published": core.packets_published,
            "retransmission_requests_served": self.requests_served,
            "retransmission_requests_refused": self.requests_refused,
            "messages_retransmitted": self.messages_retransmitted,
        }

    # ------------------------------------------------------------ retransmission

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= CONNECTIONS_MAX:
            writer.write(encode_frame(RetransmissionRefused(0, 0, "busy", f"{CONNECTIONS_MAX} connections open")))
            writer.close()
            return
        self._connections.add(writer)
        frames = FrameReader(REQUEST_FRAME_BYTES_MAX)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), IDLE_SECONDS)
                except asyncio.TimeoutError:
                    return
                if not data:
                    return
                try:
                    payloads = frames.feed(data)
                except FrameTooLargeError as error:
                    self._refuse(writer, 0, 0, "frame_too_large", str(error))
                    return
                for payload in payloads:
                    try:
                        request = request_decoder.decode(payload)
                    except msgspec.MsgspecError as error:
                        self._refuse(writer, 0, 0, "malformed", str(error))
                        return
                    await self._answer(request, writer)
                    await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter, first: int, last: int, reason: str, detail: str) -> None:
        self.requests_refused += 1
        writer.write(encode_frame(RetransmissionRefused(first, last, reason, detail)))

    async def _answer(self, request: RetransmitRequest, writer: asyncio.StreamWriter) -> None:
        core = self.core
        first = request.first_sequence
        last = request.last_sequence
        decision = decide(request, session=self.session, published_next=core.next_sequence,
                          window_first=core.window_first_sequence, rebuild_base=None)
        bodies = None
        if type(decision) is ServeFromWindow:
            bodies = core.from_window(first, last)
        elif type(decision) is Refuse and decision.reason != "too_old":
            self._refuse(writer, first, last, decision.reason, decision.detail)
            return
        if bodies is None:
            async with self._rebuild_lock:
                published_next = core.next_sequence
                window_first = core.window_first_sequence
                outcome = await asyncio.to_thread(self._rebuild_blocking, request, published_next, window_first)
            if type(outcome) is Refuse:
                self._refuse(writer, first, last, outcome.reason, outcome.detail)
                return
            bodies = outcome
        frames = [encode_frame(reply) for reply in reply_frames(self.session, first, bodies)]
        if any(len(frame) > RETRANSMISSION_FRAME_BYTES_MAX for frame in frames):
            self._refuse(writer, first, last, "message_too_large",
                         f"a message in [{first}, {last}] exceeds a {RETRANSMISSION_FRAME_BYTES_MAX}-byte frame")
            return
        self.requests_served += 1
        self.messages_retransmitted += len(bodies)
        for frame in frames:
            writer.write(frame)

    def _rebuild_blocking(self, request: RetransmitRequest, published_next: int, window_first: int):
        """Runs in a worker thread: decide with the rebuild base, then rebuild."""
        if self.rebuilder is None:
            self.rebuilder = JournalRebuilder(self.data_root)
        rebuilder = self.rebuilder
        base = rebuilder.base_for(request.first_sequence, request.last_sequence)
        # The window can no longer serve this request (it was evicted, or never held it).
        decision = decide(request, session=self.session, published_next=published_next,
                          window_first=max(window_first, request.first_sequence + 1), rebuild_base=base)
        if type(decision) is Refuse:
            return decision
        if type(decision) is not Rebuild:
            return Refuse("rebuild_failed", f"unexpected decision {decision!r}")
        try:
            return rebuilder.rebuild(request.first_sequence, request.last_sequence)
        except RebuildRefused as refused:
            return Refuse(refused.reason, refused.detail)
