"""The primary answers a Hello off its event loop (review finding 10).

A diverged Hello makes `decide_hello` scan journal files (epoch_boundary over up to a whole
segment, chain values); on the loop that would pause matching. Here the journal lookups are
made slow on purpose and the loop must keep running meanwhile: a ticker on the loop counts
while the lookup sleeps, and the lookup must not run on the loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import replica.replication_server as replication_server
from node_helpers import run
from replica.protocol import FrameReader, encode_frame
from replica.replication import REPLICATION_PROTOCOL_VERSION, Diverged, Hello, link_decoder

LOOKUP_SECONDS = 0.5


def test_a_diverged_hello_is_decided_in_a_worker_thread_while_the_loop_runs(monkeypatch):
    lookups = []

    def slow_boundary(_journal, epoch, up_to):
        lookups.append(threading.get_ident())
        time.sleep(LOOKUP_SECONDS)  # stands for a verified scan of a 64 MB segment
        return (3, 0xBAD)

    monkeypatch.setattr(replication_server, "epoch_boundary", slow_boundary)
    monkeypatch.setattr(replication_server, "chain_values", lambda _journal, sequences: {s: 1 for s in sequences})
    monkeypatch.setattr(replication_server, "primary_starts", lambda _directory: [])
    logs = []
    node = SimpleNamespace(
        config=SimpleNamespace(cluster_id=1),
        writer=SimpleNamespace(recovery=SimpleNamespace(first_sequence=1), epoch=2, written_sequence=10),
        directory=SimpleNamespace(journal=None),
        standby_link=None,
        release=SimpleNamespace(mode="async", standby_required=False),
        log=logs.append,
    )

    async def scenario():
        loop_thread = threading.get_ident()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        server = await asyncio.start_server(
            lambda reader, writer: replication_server.StandbyLink(node, reader, writer).run(), "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]
        ticking = asyncio.ensure_future(ticker())
        try:
            reader, writer = await asyncio.open_connection(*address)
            # A standby of an older epoch whose chain value at its last record differs.
            writer.write(encode_frame(Hello(REPLICATION_PROTOCOL_VERSION, 1, 1, 8, 0xDEAD)))
            frames = FrameReader()
            payloads = []
            while not payloads:
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data, "the primary closed without an answer"
                payloads = frames.feed(data)
            reply = link_decoder.decode(payloads[0])
            writer.close()
        finally:
            ticking.cancel()
            server.close()
            await server.wait_closed()
        assert type(reply) is Diverged, reply
        assert lookups and all(thread != loop_thread for thread in lookups)
        # The loop ran through the lookup: at 10 ms a tick, a blocked loop counts ~0.
        assert ticks >= 10, ticks

    run(scenario(), timeout=30)
