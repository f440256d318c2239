"""A hostile peer holding silent TLS handshakes on a control-plane port (review finding 8).

The stranger opens many TCP connections to an authenticated port and never sends a
ClientHello. The server must keep at most HANDSHAKES_PER_PEER_MAX of them (HANDSHAKES_MAX in
all) in progress, closing the oldest rather than holding each for the whole handshake
timeout, and a real holder of a certificate must still get in from the same host.
"""

from __future__ import annotations

import asyncio
import socket

from node_helpers import credentials, node_server_ssl, run
from replica.tls import (
    ADMIN_ROLES,
    HANDSHAKE_TIMEOUT_SECONDS,
    HANDSHAKES_PER_PEER_MAX,
    RefusalLog,
    open_authenticated_connection,
    start_authenticated_server,
)

SILENT_CONNECTIONS = 200


def test_silent_handshakes_are_capped_and_a_real_operator_still_gets_in():
    async def scenario():
        served = []

        async def handle(reader, writer, identity):
            served.append(identity)
            writer.write(b"ok\n")
            await writer.drain()
            writer.close()

        lines = []
        server = await start_authenticated_server(
            handle, "127.0.0.1", 0, node_server_ssl(), cluster_id=1, roles=ADMIN_ROLES, where="admin connection from",
            refusals=RefusalLog(lines.append),
        )
        address = server.sockets[0].getsockname()[:2]
        silent = []
        try:
            for _ in range(SILENT_CONNECTIONS):
                silent.append(await asyncio.open_connection(*address))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HANDSHAKE_TIMEOUT_SECONDS - 1.0
            while server.handshakes_evicted < SILENT_CONNECTIONS - HANDSHAKES_PER_PEER_MAX:
                # Well before the handshake timeout would have closed any of them.
                assert loop.time() < deadline, server.handshakes_evicted
                await asyncio.sleep(0.02)
            assert server.handshakes_in_progress <= HANDSHAKES_PER_PEER_MAX
            # The evicted sockets were closed by the server: their reads end.
            closed = 0
            for reader, _writer in silent[: SILENT_CONNECTIONS - HANDSHAKES_PER_PEER_MAX]:
                closed += (await asyncio.wait_for(reader.read(1), 2.0)) == b""
            assert closed == SILENT_CONNECTIONS - HANDSHAKES_PER_PEER_MAX
            # The operator, from the same host, while the last silent ones still hold on.
            operator = credentials("operator")
            reader, writer, identity = await open_authenticated_connection(
                address, operator.context, cluster_id=1, roles=frozenset({"node"}), timeout=5.0,
            )
            assert await asyncio.wait_for(reader.readline(), 5.0) == b"ok\n"
            writer.close()
            assert [peer.role for peer in served] == ["operator"]
            assert any("too many TLS handshakes in progress" in line for line in lines)
        finally:
            for _reader, writer in silent:
                writer.transport.abort()
            server.close()
            await server.wait_closed()

    run(scenario(), timeout=30)
