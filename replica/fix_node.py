"""The FIX acceptor's asyncio adapter: a TCP port of the primary speaking FIX 4.4.

    FIX TCP ─► FixConnection.data_received ─► FixGateway.data (replica/fix_session.py)
                                                   │ native requests into PrimaryCore
    commit loop: release ─► FixGateway.observe (ledger numbering) ─► FixGateway.outbox
    PrimaryNode.flush ─► FixAcceptor.flush: write each connection's bytes, close those
                         asked closed, cut a connection whose buffer passed the limit
    gateway tick ─► FixGateway.tick (Heartbeat / TestRequest at HeartBtInt)

At start the ledger is rebuilt from the node's journal (replica/fix_ledger.py) in a
thread, so a restarted primary or a promoted standby continues every FIX session's
numbers while its native port already trades: records released meanwhile are held and
folded in after the rebuild, then the FIX port opens (and DIR/node.json names it), with
TLS when [tls] members = true. A rebuild that fails (a journal that no longer starts at
sequence 1) stops the node as an operating fault: the FIX port never opens in silence.
Connection ids come from the node's own counter, so a FIX connection is a PrimaryCore
session like a native one. The in-flight window pauses FIX sockets with the native ones
(`pause_reading`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from replica.fix_ledger import rebuild_ledger
from replica.fix_session import FixGateway


class FixConnection(asyncio.Protocol):
    def __init__(self, acceptor: "FixAcceptor") -> None:
        self.acceptor = acceptor
        self.transport: Optional[asyncio.Transport] = None
        self.connection_id = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connection_id = self.acceptor.opened(self)

    def data_received(self, data: bytes) -> None:
        self.acceptor.gateway.data(self.connection_id, data, time.time_ns())
        self.acceptor.node.wake()
        self.acceptor.flush()

    def connection_lost(self, exc) -> None:
        self.acceptor.closed(self.connection_id)


class FixAcceptor:
    def __init__(self, node) -> None:
        from replica.primary_node import peer_host  # the node module imports this one

        self.node = node
        self._peer_host = peer_host
        # Records released while the ledger is being rebuilt, folded in once it is.
        self.rebuild_to = node.core.exchange.last_sequence
        self._released_meanwhile: list = []
        node.core.release_observer = self._hold
        self.rebuild_ms = 0.0
        self.gateway: Optional[FixGateway] = None
        self.connections: dict[int, FixConnection] = {}
        self.server = None
        self.address: Optional[tuple] = None

    def _hold(self, sequence: int, timestamp_ns: int, command, events: list) -> None:
        self._released_meanwhile.append((sequence, timestamp_ns, command, events))

    def start_failed(self) -> None:
        """The start raised (the node stops on it): nothing more is held for a ledger
        that will never be built."""
        if self.node.core.release_observer == self._hold:
            self.node.core.release_observer = None
        self._released_meanwhile = []

    async def start(self, host: str, backlog: int) -> None:
        """Rebuild the ledger in a thread (the native port trades meanwhile), catch up
        with what was released since, then open the FIX port."""
        settings = self.node.config.fix
        started = time.monotonic()
        ledger = await asyncio.to_thread(rebuild_ledger, self.node.directory.journal, self.rebuild_to,
                                         settings.price_decimals)
        for record in self._released_meanwhile:
            ledger.observe(*record)
        self._released_meanwhile = []
        self.gateway = FixGateway(self.node.core, settings, ledger, time.time_ns)
        self.rebuild_ms = (time.monotonic() - started) * 1000
        # TLS when [tls] members = true: the Logon's Password (554) is a member token,
        # never sent in clear when TLS is configured (the native gateway's rule). The same
        # member-port server as the client gateway's: handshakes in progress bounded.
        self.server = await self.node.tls.serve_members(lambda: FixConnection(self), host, settings.port,
                                                        backlog=backlog, where="FIX connection from")
        self.address = self.server.sockets[0].getsockname()[:2]

    def pause_reading(self, paused: bool) -> None:
        """The in-flight window's backpressure (PrimaryNode._pause_clients): FIX sockets
        stop being read like native ones; on resume their silence counts from now."""
        for connection in self.connections.values():
            transport = connection.transport
            if transport is not None and not transport.is_closing():
                if paused:
                    transport.pause_reading()
                else:
                    transport.resume_reading()
        if not paused and self.gateway is not None:
            self.gateway.reading_resumed(time.time_ns())

    def opened(self, connection: FixConnection) -> int:
        connection_id = self.node._new_id()
        self.connections[connection_id] = connection
        if self.node.clients_paused:
            connection.transport.pause_reading()  # arrived while the window is full
        refusal = self.gateway.opened(connection_id, self._peer_host(connection.transport), time.time_ns())
        if refusal is not None:
            connection.transport.close()
        self.node.flush()  # a pending connection it evicted, FIX or native, is closed now
        return connection_id

    def closed(self, connection_id: int) -> None:
        self.connections.pop(connection_id, None)
        self.gateway.closed(connection_id, time.time_ns())
        self.node.wake()

    def tick(self, now_ns: int) -> None:
        if self.gateway is None:
            return
        self.gateway.tick(now_ns)
        self.gateway.pump()
        if self.node.core.pending:
            self.node.wake()

    def flush(self) -> None:
        gateway = self.gateway
        if gateway is None:
            return
        gateway.pump()
        if gateway.outbox:
            limit = self.node.config.limits.session_buffer_bytes_max
            outbox, gateway.outbox = gateway.outbox, {}
            for connection_id, chunks in outbox.items():
                connection = self.connections.get(connection_id)
                if connection is None or connection.transport is None:
                    continue
                transport = connection.transport
                transport.write(b"".join(chunks))
                if transport.get_write_buffer_size() > limit:
                    transport.abort()  # a slow consumer: it resends-requests what it missed
        if gateway.closing:
            closing, gateway.closing = gateway.closing, []
            for connection_id in closing:
                connection = self.connections.get(connection_id)
                if connection is not None and connection.transport is not None:
                    connection.transport.close()

    def abort_all(self) -> None:
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
