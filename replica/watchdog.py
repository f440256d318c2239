"""The watchdog: watches both nodes' admin heartbeats and promotes the standby when the
primary has died.

`WatchdogCore` (sans-I/O) takes observations, `primary_seen(status, now_ms)`,
`primary_silent(now_ms)`, `standby_seen(status, now_ms)`, and answers `decide(now_ms)`
with an action and the reason, which the adapter logs (every decision is logged, so a
drill can be read afterwards). It promotes only when all of these hold:

* the primary has been silent for at least `timeout_ms` (no admin answer);
* the standby answered recently, is promotable (no divergence alarm, not refused) and is
  not already primary (a primary of a newer epoch at the standby's address means the
  promotion happened: "done"; one of the watched epoch or older is an old primary not yet
  fenced, never mistaken for a promotion);
* the standby's journal has reached the primary's epoch (a standby still in an older
  epoch holds another history, however long it is);
* the standby is caught up to everything the primary acknowledged, as far as the
  watchdog saw: its durable sequence is at least the primary's last *polled* released
  sequence. In sync mode that is exact (nothing is acknowledged before the standby has
  it). In async mode it is best effort: the primary may have acknowledged more after the
  last poll, and those records can be lost by a promotion. A sync primary that
  acknowledges alone (after `degrade`, or promoted or fresh with no standby live since)
  is like async mode, so only `--force` promotes then.

The adapter (`run_watchdog`) polls both admin endpoints every `timeout_ms / 5` over one
kept connection each (`AdminConnection`: reconnected after a failure, so a poll is not a
TLS handshake), and sends `promote` to the standby when the core says so, at most once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Callable, Optional

ADMIN_TIMEOUT_SECONDS = 0.25
_FIGURES = re.compile(r"\d+ ms")


@dataclass
class Decision:
    action: str  # "wait" | "promote" | "refuse" | "done"
    reason: str


class WatchdogCore:
    def __init__(self, timeout_ms: int, *, force: bool = False) -> None:
        if timeout_ms < 50:
            raise ValueError(f"timeout_ms {timeout_ms} is too small to tell a slow node from a dead one (min 50)")
        self.timeout_ms = timeout_ms
        self.force = force
        self.primary_last_seen_ms: Optional[int] = None
        self.primary_released_sequence = 0
        self.primary_epoch = 0
        self.primary_degraded = False
        self.primary_standalone = False
        self.primary_process = None  # the pid of the newest status
        self.primary_newness = (0, 0)  # its (epoch, sequenced sequence)
        self.standby: Optional[dict] = None
        self.standby_seen_ms: Optional[int] = None
        self.promoted = False

    def primary_seen(self, status: dict, now_ms: int) -> None:
        if status.get("role") != "primary":
            return
        # A status older than one already seen from the same process (a late answer)
        # must not undo what a newer one said: a degrade announced at sequenced s + 1
        # must not be taken back by an answer given at s (the simulator's seed 953
        # promoted a stale standby that way). A degrade always sequences a checkpoint,
        # so it always moves this. A restarted process (another pid) starts afresh: it
        # may have lost an unsynced tail and sequence below its predecessor.
        process = status.get("pid")
        newness = (status.get("epoch", 0), status.get("sequenced_sequence", 0))
        if process == self.primary_process and newness < self.primary_newness:
            return
        self.primary_process = process
        self.primary_newness = newness
        self.primary_last_seen_ms = now_ms
        self.primary_released_sequence = max(self.primary_released_sequence, status.get("released_sequence", 0))
        self.primary_epoch = max(self.primary_epoch, status.get("epoch", 0))
        self.primary_degraded = bool(status.get("degraded"))
        # A sync primary that does not wait for a standby (promoted, or fresh, and no
        # standby live since; or degraded) acknowledges what no standby may hold: like
        # async mode, a promotion can lose it (the simulator's seed 3255).
        self.primary_standalone = status.get("replication") == "sync" and not status.get("standby_required", True)

    def standby_seen(self, status: dict, now_ms: int) -> None:
        if status.get("role") == "primary":
            # Only against a primary already seen can "newer epoch" be judged: a
            # watchdog (re)started after a failover may hear the old, unfenced primary
            # at the standby's address before it has heard the new one (the simulator's
            # seed 2309 fenced the newest primary that way).
            if self.primary_last_seen_ms is not None and status.get("epoch", 0) > self.primary_epoch:
                self.promoted = True
                self.standby = status
                self.standby_seen_ms = now_ms
            else:
                # A primary of the watched primary's epoch or older at the standby's
                # address is not a promotion: it is an old primary still running (a
                # re-armed watchdog's "standby" before it is fenced). It is no sign of
                # a promotable standby either, so it is not recorded as one.
                self.standby = None
            return
        self.standby = status
        self.standby_seen_ms = now_ms

    def decide(self, now_ms: int) -> Decision:
        if self.promoted:
            return Decision("done", "the standby is primary now")
        if self.primary_last_seen_ms is None:
            return Decision("wait", "the primary has not been seen yet")
        silent_ms = now_ms - self.primary_last_seen_ms
        if silent_ms < self.timeout_ms:
            # Say whether a failure now would be taken over: an operator (and a drill)
            # reads from the log when the pair is armed for real.
            readiness = self._judge_standby(now_ms, silent_ms)
            why = readiness.reason.split("; ", 1)[-1]  # without the "primary silent" part
            ready = "standby ready" if readiness.action == "promote" else f"standby not ready ({why})"
            return Decision("wait", f"primary alive (seen {silent_ms} ms ago); {ready}")
        return self._judge_standby(now_ms, silent_ms)

    def _judge_standby(self, now_ms: int, silent_ms: int) -> Decision:
        """The decision for a primary silent `silent_ms`: promote or refuse, and why."""
        standby = self.standby
        if standby is None or self.standby_seen_ms is None or now_ms - self.standby_seen_ms > self.timeout_ms:
            return Decision("refuse", f"primary silent {silent_ms} ms but the standby is not answering either")
        if not standby.get("promotable", False):
            return Decision("refuse", f"primary silent {silent_ms} ms; standby not promotable: "
                                      f"{standby.get('divergence') or standby.get('fatal')}")
        durable = standby.get("durable_sequence", 0)
        if standby.get("epoch", 0) < self.primary_epoch:
            # Its journal has not reached the primary's epoch: whatever its length, it
            # is another history (the simulator's seed 17: an old primary, restarted
            # as standby while the new one was down, looked caught up by sequence).
            return Decision("refuse", f"primary silent {silent_ms} ms; standby epoch {standby.get('epoch', 0)} "
                                      f"is below the primary's {self.primary_epoch}: it holds another history")
        if durable < self.primary_released_sequence or self.primary_degraded or self.primary_standalone:
            if durable < self.primary_released_sequence:
                why = f"standby durable {durable} < primary acknowledged {self.primary_released_sequence}"
            elif self.primary_degraded:
                why = "the primary ran degraded (standalone)"
            else:
                why = "the primary acknowledged without a standby (none live since it started or was promoted)"
            if not self.force:
                return Decision("refuse", f"primary silent {silent_ms} ms; standby is stale ({why}); use --force")
            return Decision("promote", f"primary silent {silent_ms} ms; FORCED although {why}")
        return Decision("promote", f"primary silent {silent_ms} ms; standby durable {durable} covers "
                                   f"everything acknowledged ({self.primary_released_sequence})")


class AdminConnection:
    """One kept admin connection to a node (the watchdog polls over it): connected, with
    mutual TLS when `credentials` are given, on first use and again after any failure.
    A poll then costs a line each way, not a TLS handshake: at timeout_ms 400 a new
    connection per poll was some 25 handshakes a second on each node, and under load a
    slow handshake looked like a silent primary. A request that fails or times out
    closes the connection (a late answer must not be read as the next one's)."""

    def __init__(self, address: tuple[str, int], credentials=None) -> None:
        self.address = address
        self.credentials = credentials
        self.connects = 0
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None

    async def request(self, request: dict, timeout: float = ADMIN_TIMEOUT_SECONDS) -> dict:
        from replica.tls import LINK_ROLES, open_authenticated_connection

        try:
            if self._writer is None or self._writer.is_closing():
                credentials = self.credentials
                self._reader, self._writer, _identity = await open_authenticated_connection(
                    self.address, None if credentials is None else credentials.context,
                    cluster_id=None if credentials is None else credentials.cluster_id, roles=LINK_ROLES,
                    timeout=timeout,
                )
                self.connects += 1
            self._writer.write(json.dumps(request).encode() + b"\n")
            line = await asyncio.wait_for(self._reader.readline(),
                                          timeout if request.get("command") != "promote" else 30)
            if not line:
                raise ConnectionError(f"admin {self.address[0]}:{self.address[1]} closed the connection")
            return json.loads(line)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def admin_request(address: tuple[str, int], request: dict, timeout: float = ADMIN_TIMEOUT_SECONDS,
                        credentials=None) -> dict:
    """One admin request on a connection of its own; `credentials`
    (replica.tls.ClientCredentials: a watchdog, operator or node certificate) for a node
    with TLS on, which must then show a node certificate of the same cluster
    (PeerRefusedError otherwise). None: plain TCP."""
    connection = AdminConnection(address, credentials)
    try:
        return await connection.request(request, timeout)
    finally:
        connection.close()


async def run_watchdog(
    primary: tuple[str, int],
    standby: tuple[str, int],
    timeout_ms: int,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
    seconds: Optional[float] = None,
    once: bool = False,
    credentials=None,
) -> int:
    """Watch until `seconds` pass (exit 0), or with `once` until the standby is promoted.

    After a promotion the watchdog re-arms for the new pair: the promoted node is the
    primary it watches, the old primary's address the standby, which it is once the
    old primary has rejoined (until then a failure of the new primary is refused:
    "the standby is not answering"). Every decision is logged once, when it changes,
    not at every poll."""
    core = WatchdogCore(timeout_ms, force=force)
    period = max(0.01, timeout_ms / 5000)
    deadline = None if seconds is None else time.monotonic() + seconds
    last_logged = None

    def say_once(line: str) -> None:
        # The same decision at the next poll differs only in its figures (silent N ms):
        # logged once, with the figures of its first time.
        nonlocal last_logged
        key = _FIGURES.sub("#", line)
        if key != last_logged:
            log(line)
            last_logged = key

    connections = {address: AdminConnection(address, credentials) for address in (primary, standby)}
    try:
        while deadline is None or time.monotonic() < deadline:
            now_ms = time.monotonic_ns() // 1_000_000
            try:
                core.primary_seen(await connections[primary].request({"command": "status"}), now_ms)
            except (OSError, asyncio.TimeoutError, ValueError, ConnectionError):
                pass
            try:
                core.standby_seen(await connections[standby].request({"command": "status"}), now_ms)
            except (OSError, asyncio.TimeoutError, ValueError, ConnectionError):
                pass
            decision = core.decide(time.monotonic_ns() // 1_000_000)
            say_once(f"{decision.action}: {decision.reason}")
            promoted = decision.action == "done"
            if decision.action == "promote":
                started = time.monotonic()
                try:
                    # The same threshold goes to the standby's own guard (one promotion rule).
                    reply = await connections[standby].request({"command": "promote", "force": force,
                                                                "primary_timeout_ms": timeout_ms})
                except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as error:
                    # Keep watching: the standby may yet report itself primary (then "done").
                    say_once(f"promote failed: {type(error).__name__}: {error}")
                    reply = {}
                else:
                    shown = {key: value for key, value in reply.items() if key != "elapsed_ms"}
                    say_once(f"promote -> {shown} ({(time.monotonic() - started) * 1000:.0f} ms)")
                promoted = bool(reply.get("promoted") or reply.get("already_primary"))
            if promoted:
                if once:
                    return 0
                primary, standby = standby, primary
                core = WatchdogCore(timeout_ms, force=force)
                say_once(f"re-armed: watching primary {primary[0]}:{primary[1]} and standby {standby[0]}:{standby[1]} "
                         "(the old primary, once it has rejoined)")
            await asyncio.sleep(period)
        return 0
    finally:
        for connection in connections.values():
            connection.close()
