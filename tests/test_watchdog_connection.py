"""The watchdog keeps one admin connection per node (review finding 17).

A new connection per poll costs a TLS handshake on the node each time (some 25 a second at
timeout_ms 400), and a slow handshake under load looks like a silent primary. Here two fake
admin endpoints count the connections and requests of a watchdog polling them; one of them
drops its connection once, and the watchdog must connect again and go on polling.
"""

from __future__ import annotations

import asyncio
import json

from node_helpers import run
from replica.watchdog import run_watchdog

DROP_AFTER_REQUESTS = 10


class FakeAdmin:
    def __init__(self, status: dict, *, drop_after: int = 0) -> None:
        self.status = status
        self.drop_after = drop_after
        self.connections = 0
        self.requests = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                self.requests += 1
                assert json.loads(line) == {"command": "status"}
                writer.write(json.dumps(self.status).encode() + b"\n")
                await writer.drain()
                if self.requests == self.drop_after:
                    return  # the node closes this connection (a restart, say)
        finally:
            writer.close()


def test_the_watchdog_polls_over_one_kept_connection_per_node_and_reconnects_after_a_drop():
    async def scenario():
        primary = FakeAdmin({"role": "primary", "pid": 1, "epoch": 0, "sequenced_sequence": 5,
                             "released_sequence": 5, "replication": "sync", "standby_required": True})
        standby = FakeAdmin({"role": "standby", "epoch": 0, "durable_sequence": 5}, drop_after=DROP_AFTER_REQUESTS)
        servers = [await asyncio.start_server(fake.serve, "127.0.0.1", 0) for fake in (primary, standby)]
        addresses = [server.sockets[0].getsockname()[:2] for server in servers]
        lines = []
        try:
            # timeout_ms 100: a poll of each node every 20 ms for a second.
            await run_watchdog(addresses[0], addresses[1], 100, seconds=1.0, log=lines.append)
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()
        assert primary.requests >= 3 * DROP_AFTER_REQUESTS, primary.requests
        assert primary.connections == 1, (primary.connections, primary.requests)
        assert standby.requests > DROP_AFTER_REQUESTS + 5, standby.requests
        assert standby.connections == 2, (standby.connections, standby.requests)
        assert not any(line.startswith("promote") for line in lines), lines

    run(scenario(), timeout=30)
