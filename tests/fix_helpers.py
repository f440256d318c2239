"""A real FIX engine as the counterparty: QuickFIX (Debian's libquickfix-dev), driven
through the small scripted initiator in tests/quickfix/initiator.cpp.

`initiator_binary()` compiles it once per source version (about 2 s) into
.venv/quickfix-initiator-<hash>; `QuickFixInitiator` runs it with a QuickFIX settings
file naming one or more acceptor addresses (QuickFIX's SocketConnectHost<n> /
SocketConnectPort<n> failover list), collects every line it prints in a reader thread,
and waits on conditions with deadlines. Without the library (make test installs it
when run as root) the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.node_helpers import ROOT, die_with_parent

SOURCE = ROOT / "tests" / "quickfix" / "initiator.cpp"
WAIT_SECONDS = 20.0


def initiator_binary() -> Path:
    if not Path("/usr/include/quickfix/SocketInitiator.h").exists() or shutil.which("g++") is None:
        pytest.skip("QuickFIX (libquickfix-dev) or g++ is not installed; `make test` installs it as root")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = ROOT / ".venv" / f"quickfix-initiator-{digest}"
    if not binary.exists():
        temporary = binary.with_suffix(f".tmp{os.getpid()}")
        # -std=c++11: QuickFIX 1.15's headers use dynamic exception specifications.
        subprocess.run(["g++", "-std=c++11", "-O1", "-Wno-deprecated", "-o", str(temporary), str(SOURCE),
                        "-lquickfix", "-lpthread"], check=True, timeout=300)
        os.replace(temporary, binary)
    return binary


def fields(line: str) -> dict[int, str]:
    """The fields of one printed message ('|'-separated), first value of each tag."""
    values: dict[int, str] = {}
    for part in line.split(" ", 1)[1].split("|"):
        tag, _, value = part.partition("=")
        if tag.isdigit():
            values.setdefault(int(tag), value)
    return values


class QuickFixInitiator:
    def __init__(self, directory: Path, addresses: list[tuple[str, int]], sender: str, password: str, *,
                 heartbeat_seconds: int = 2, username: Optional[str] = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = ["[DEFAULT]", "ConnectionType=initiator", "ReconnectInterval=1",
                 f"FileStorePath={self.directory / 'store'}", f"FileLogPath={self.directory / 'log'}",
                 "StartTime=00:00:00", "EndTime=00:00:00", "NonStopSession=Y", "UseDataDictionary=N",
                 f"HeartBtInt={heartbeat_seconds}", "LogonTimeout=10"]
        for index, (host, port) in enumerate(addresses):
            suffix = "" if index == 0 else str(index)
            lines += [f"SocketConnectHost{suffix}={host}", f"SocketConnectPort{suffix}={port}"]
        lines += ["[SESSION]", "BeginString=FIX.4.4", f"SenderCompID={sender}", "TargetCompID=TWINBOOK"]
        self.settings = self.directory / "initiator.cfg"
        self.settings.write_text("\n".join(lines) + "\n")
        self.sender = sender
        self.password = password
        self.username = username or sender
        self.lines: list[str] = []
        self.condition = threading.Condition()
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "QuickFixInitiator":
        self.process = subprocess.Popen(
            [str(initiator_binary()), str(self.settings), self.username, self.password],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            preexec_fn=die_with_parent,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.condition:
                self.lines.append(line.rstrip("\n"))
                self.condition.notify_all()

    def command(self, text: str) -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def send(self, msg_type: str, **tags) -> None:
        """Send an application message: tags as t11="c1", t55="AAPL", ..."""
        body = "|".join(f"{name[1:]}={value}" for name, value in tags.items())
        self.command(f"SEND 35={msg_type}|{body}")

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = WAIT_SECONDS,
                 start: int = 0) -> int:
        """The index of the first line from `start` on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                for index in range(start, len(self.lines)):
                    if predicate(self.lines[index]):
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self.lines[start:]):
                    raise AssertionError(f"{what} not seen within {timeout} s; initiator printed:\n"
                                         + "\n".join(self.lines[-40:]))
                self.condition.wait(min(remaining, 0.2))

    def app_messages(self, msg_type: Optional[str] = None) -> list[dict[int, str]]:
        with self.condition:
            found = [fields(line) for line in self.lines if line.startswith("APP ")]
        return [message for message in found if msg_type is None or message.get(35) == msg_type]

    def wait_report(self, predicate: Callable[[dict], bool], what: str, timeout: float = WAIT_SECONDS,
                    start: int = 0) -> dict[int, str]:
        index = self.wait_for(lambda line: line.startswith("APP ") and predicate(fields(line)), what, timeout, start)
        return fields(self.lines[index])

    def event_log(self) -> str:
        """QuickFIX's own session event log (logons, resends, rejects it decided)."""
        path = self.directory / "log" / f"FIX.4.4-{self.sender}-TWINBOOK.event.current.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.command("QUIT")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)
