"""End to end: a primary whose journal fails stops at once instead of lingering.

A failed fdatasync means nothing more can be acknowledged (DESIGN.md: write-ahead); a
node that kept its ports open while its commit loop was dead would take orders and
never answer them. The child here is a real `twinbook primary` whose journal's sync
thread starts failing with EIO when the test says so.
"""

from __future__ import annotations

import asyncio
import sys
import time

from node_helpers import NodeProcess, connect, run

FAILING_PRIMARY = """
import errno, os, sys
import journal.writer as writer
from tools.cli import main

marker = sys.argv[1]
original = writer._fdatasync_and_close

def failing(fd):
    if os.path.exists(marker):
        os.close(fd)
        raise OSError(errno.EIO, "Input/output error")
    return original(fd)

writer._fdatasync_and_close = failing
sys.argv = ["twinbook"] + sys.argv[2:]
main()
"""


def test_a_failed_fdatasync_stops_the_node_with_a_clear_error(tmp_path):
    marker = tmp_path / "fail-now"
    node = NodeProcess(tmp_path / "node", launcher=[sys.executable, "-c", FAILING_PRIMARY, str(marker)])
    try:
        node.start()
        async def scenario():
            client = await connect(node, "M1")
            try:
                accepted = await client.place("ok-1", "AAPL", "buy", "limit", 1, price=18900)
                assert accepted.order_id == 1
                marker.write_text("")
                pending = client.send_place("doomed-1", "AAPL", "buy", "limit", 1, price=18901)
                deadline = time.monotonic() + 15
                while node.running and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                # Never acknowledged: the node is gone (the client would go on trying to reconnect).
                assert not node.running
                assert not pending.done() or pending.exception() is not None
            finally:
                client._closed = True
                await asyncio.wait_for(client.close(), 5)

        run(scenario())
        assert node.process.returncode == 3, node.log()
        log = node.log()
        assert "commit loop failed" in log and "fdatasync failed" in log and "EIO" in log, log
    finally:
        node.kill()
