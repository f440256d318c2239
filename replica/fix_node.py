"""The FIX acceptor's asyncio adapter: a TCP port of the primary speaking FIX 4.4.

    FIX TCP ─► FixConnection.data_received ─► FixGateway.data (replica/fix_session.py)
                                                   │ native requests into PrimaryCore
    commit loop: release ─► FixGateway.observe (ledger numbering) ─► FixGateway.outbox
    PrimaryNode.flush ─► FixAcceptor.flush: write each connection's bytes, close those
                         asked closed, cut a connection whose buffer passed the limit
    gateway tick ─► FixGateway.tick (Heartbeat / TestRequest at HeartBtInt)

At start the ledger is rebuilt from the node's journal (replica/fix_ledger.py), so a
restarted primary or a promoted standby continues every FIX session's numbers; then the
port opens. Connection ids come from the node's own counter, so a FIX connection is a
PrimaryCore session like a native one.
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
        settings = node.config.fix
        started = time.monotonic()
        ledger = rebuild_ledger(node.directory.journal, node.core.exchange.last_sequence, settings.price_decimals)
        self.rebuild_ms = (time.monotonic() - started) * 1000
        self.gateway = FixGateway(node.core, settings, ledger, time.time_ns)
        self.connections: dict[int, FixConnection] = {}
        self.server = None
        self.address: Optional[tuple] = None

    async def start(self, host: str, backlog: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: FixConnection(self), host, self.node.config.fix.port,
                                               backlog=backlog)
        self.address = self.server.sockets[0].getsockname()[:2]

    def opened(self, connection: FixConnection) -> int:
        connection_id = self.node._new_id()
        self.connections[connection_id] = connection
        refusal = self.gateway.opened(connection_id, self._peer_host(connection.transport), time.time_ns())
        if refusal is not None:
            connection.transport.close()
        self.flush()
        return connection_id

    def closed(self, connection_id: int) -> None:
        self.connections.pop(connection_id, None)
        self.gateway.closed(connection_id, time.time_ns())
        self.node.wake()

    def tick(self, now_ns: int) -> None:
        self.gateway.tick(now_ns)
        self.gateway.pump()
        if self.node.core.pending:
            self.node.wake()

    def flush(self) -> None:
        gateway = self.gateway
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
