"""A private network namespace for multicast tests and benchmarks.

Multicast traffic must never reach the host's network, so everything that sends it runs
inside a namespace of its own: `unshare -rn` (a user namespace, so no root is needed,
and a network namespace holding only a loopback interface, down). Inside it,
`loopback_up()` sets `lo` up with the MULTICAST flag (SIOCSIFFLAGS on an ordinary
socket: no `ip` binary needed), so a sender with IP_MULTICAST_IF 127.0.0.1 and receivers
that joined on 127.0.0.1 meet on it. Processes started from there (nodes, subscribers)
inherit the namespace; it disappears with its last process.

`run_in_namespace(argv)` re-executes a Python command that way and marks the child with
TWINBOOK_NETNS=1, so the child knows it is inside (and refuses to send otherwise).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
from typing import Optional

NAMESPACE_ENVIRONMENT_VARIABLE = "TWINBOOK_NETNS"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_MULTICAST = 0x1000
_IFREQ = struct.Struct("16sH14x")
PROBE_TIMEOUT_SECONDS = 10.0


class NamespaceUnavailable(RuntimeError):
    """`unshare -rn` cannot create a private network namespace here."""


def namespace_problem() -> Optional[str]:
    """None when `unshare -rn` works here, else why not (for a skip or an error message)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "the unshare command (util-linux) is not installed"
    try:
        result = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=PROBE_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare -rn could not run: {error}"
    if result.returncode != 0:
        return f"unshare -rn failed (user namespaces disabled?): {result.stderr.decode(errors='replace').strip()}"
    return None


def inside_namespace() -> bool:
    return os.environ.get(NAMESPACE_ENVIRONMENT_VARIABLE) == "1"


def loopback_up() -> None:
    """Set `lo` up and multicast-capable (inside the private namespace only)."""
    if not inside_namespace():
        raise NamespaceUnavailable("refusing to touch network interfaces outside a private namespace")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP | _IFF_MULTICAST))


def namespace_command(argv: list[str]) -> list[str]:
    """`argv` (a Python module/script command line, without the interpreter) under unshare -rn."""
    return ["unshare", "-rn", sys.executable, *argv]


def run_in_namespace(argv: list[str], *, timeout: float, cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    problem = namespace_problem()
    if problem is not None:
        raise NamespaceUnavailable(problem)
    environment = {**os.environ, NAMESPACE_ENVIRONMENT_VARIABLE: "1"}
    return subprocess.run(namespace_command(argv), capture_output=True, timeout=timeout, cwd=cwd,
                          env=environment, stdin=subprocess.DEVNULL)
