"""Free loopback ports for the nodes that drills, benchmarks and tests start.

Nodes take ports below the kernel's ephemeral range. An outgoing connection (a client, the
watchdog's polls, the replication link) is given a port from that range, and one given a
port a standby binds only at promotion made that promotion fail (EADDRINUSE): the issue-16
race. Binding port 0 to find a free port picks from that very range, so it is not used
here. Below the range only another listener can take a port, and the probe below sees it.

Probing binds and closes each port; a listener elsewhere may still take one in between,
which a random base over some 20,000 ports makes rare (the drill then asks again).
"""

from __future__ import annotations

import os
import random
import socket
import time

LOWEST_PORT = 10000
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
PROBE_ATTEMPTS = 200


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default when it cannot be read)."""
    try:
        with open(EPHEMERAL_RANGE_FILE, encoding="ascii") as file:
            low, high = (int(field) for field in file.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def ports_free(base: int, count: int) -> bool:
    """Whether `count` loopback ports from `base` can be bound now."""
    sockets = []
    try:
        for offset in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", base + offset))
            sockets.append(sock)
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_port_base(count: int) -> int:
    """A base port with `count` consecutive free loopback ports, all below the ephemeral
    range (and at or above LOWEST_PORT)."""
    low, _high = ephemeral_port_range()
    top = low - count
    if top <= LOWEST_PORT:
        raise RuntimeError(f"the ephemeral port range starts at {low}: no room below it for {count} ports")
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(PROBE_ATTEMPTS):
        base = rng.randrange(LOWEST_PORT, top)
        if ports_free(base, count):
            return base
    raise RuntimeError(f"no {count} consecutive free loopback ports found below {low}")


def free_ports(count: int) -> list[int]:
    """`count` free loopback ports below the ephemeral range (consecutive)."""
    base = free_port_base(count)
    return list(range(base, base + count))
