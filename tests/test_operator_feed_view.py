"""`twinbook feed` as a terminal view (issue 21), run in a pseudo-terminal: it shows the
book with the spread and quits on `q`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from statemachine.events import OrderAccepted
from tests.node_helpers import ROOT, close_all, connect, run, start_node, twinbook_command  # noqa: F401 - fixture


def read_until(descriptor: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], 0.2)
        if ready:
            try:
                seen += os.read(descriptor, 65536)
            except OSError:  # the child closed the terminal
                break
    return seen


def test_feed_renders_the_spread_in_a_pty_and_quits_on_q(start_node):
    node = start_node()

    async def quote():
        client = await connect(node, "M1")
        try:
            assert type(await client.place("b", "AAPL", "buy", "limit", 30, price=18000)) is OrderAccepted
            assert type(await client.place("a", "AAPL", "sell", "limit", 10, price=18010)) is OrderAccepted
        finally:
            await close_all(client)

    run(quote())
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        twinbook_command("feed", "--endpoint", f"{node.feed[0]}:{node.feed[1]}", "--symbol", "AAPL"),
        cwd=ROOT, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    os.close(terminal)
    try:
        screen = read_until(controller, b"spread 10", 30)
        assert b"spread 10" in screen, screen[-2000:]
        assert b"18000" in screen and b"18010" in screen and b"live" in screen
        os.write(controller, b"q")
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
