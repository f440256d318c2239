"""Silent TLS handshakes on the members' ports under `[tls] members = true` (review 8).

With create_server(ssl=...) the port's admission gate saw a connection only once its
handshake was done, so a stranger could hold any number of silent sockets for the whole
handshake timeout. A real node process here: 200 TCP connections to the client port that
never send a ClientHello; all but HANDSHAKES_PER_PEER_MAX are closed by the node well
before the 5 s timeout, and a member from the same host still logs on over TLS and trades.
"""

from __future__ import annotations

import asyncio
import socket
import time

from node_helpers import certificates, cluster, run  # noqa: F401
from replica.tls import HANDSHAKE_TIMEOUT_SECONDS, HANDSHAKES_PER_PEER_MAX, member_client_context
from statemachine.events import OrderAccepted

SILENT_CONNECTIONS = 200


def test_silent_handshakes_on_the_client_port_are_capped_and_a_member_still_trades(cluster):
    from replica.client import OrderClient

    node = cluster.node("primary", tls={"directory": str(certificates(1)), "node": "a", "members": True})
    node.start_primary()
    silent = []
    try:
        for _ in range(SILENT_CONNECTIONS):
            silent.append(socket.create_connection(node.client, timeout=5))
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_SECONDS - 1.0
        closed: set[int] = set()
        while len(closed) < SILENT_CONNECTIONS - HANDSHAKES_PER_PEER_MAX:
            assert time.monotonic() < deadline, f"{len(closed)} closed before the handshake timeout"
            for index, sock in enumerate(silent):
                if index in closed:
                    continue
                sock.settimeout(0.001)
                try:
                    if sock.recv(1) == b"":
                        closed.add(index)
                except (socket.timeout, BlockingIOError):
                    pass
                except OSError:
                    closed.add(index)
        # The oldest went first: the last ones are still waiting.
        assert max(closed) < SILENT_CONNECTIONS - 1

        async def trade():
            client = OrderClient([node.client], "M1", "demo-M1",
                                 ssl_context=member_client_context(str(certificates(1) / "ca.pem")))
            await asyncio.wait_for(client.connect(), 15)
            try:
                return await asyncio.wait_for(client.place("silent-1", "AAPL", "buy", "limit", 3, price=19000), 10)
            finally:
                await client.close()

        assert type(run(trade(), timeout=60)) is OrderAccepted
    finally:
        for sock in silent:
            sock.close()
    assert node.running
