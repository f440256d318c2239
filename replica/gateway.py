"""The gateway's defences, sans-I/O: who may hold a connection before logging on, how
failed logons are slowed, and which request fields are refused before sequencing.

Nothing here reads a clock or touches a socket; callers pass `now_ns` and carry out
the decisions (replica/primary.py for the trading port, replica/primary_node.py for the
feed port).

AdmissionGate: connections that have not logged on (trading port) or subscribed (feed
port) yet. They are bounded per peer address and in total, apart from the logged-on
sessions, so strangers can never take a member's place (`sessions_max` counts logged-on
sessions only):

    new connection from P ─► P already holds per_peer_max pending?  refuse it
                             total pending at total_max?  evict the oldest pending
                             connection of the peer holding the most pending ones
                             (a peer with few pending connections is never the victim
                             while another holds more), then admit
    promoted(id)            logged on / subscribed: it leaves the gate
    expired(now_ns)         pending longer than timeout_ns: the caller cuts them

LogonGuard: failed logons per peer address. After the f-th failure of a peer (f counted
since its last successful logon), its next attempt is held until

    f % failures_per_refusal != 0:  t + min(delay_base * 2 ** (f % failures_per_refusal - 1), delay_max)
    f % failures_per_refusal == 0:  t + refusal   (attempts meanwhile are refused at once)

so one address pays `cycle_ns()` per `failures_per_refusal` wrong tokens (with the
defaults 83.75 s per 10, so 10,000 wrong tokens cost over 23 hours), attempts from one
address are serialised (opening more connections does not help: each held attempt is
evaluated only once the address's block has passed), and other addresses are not
slowed at all. Failures are logged once per peer per `log_interval_ns`, with counters,
never a line per attempt. The number of peers remembered is bounded (least recently
failed forgotten first).

Request fields: a client order id is at most CLIENT_ORDER_ID_BYTES_MAX printable ASCII
characters, a symbol at most SYMBOL_BYTES_MAX; anything else is refused with a stable
reason before a sequence is assigned, so it is never journaled. The state machine is to
gain the same rule in a later rules version (it does not check it yet).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

# Printable ASCII (0x20..0x7E), as FIX and most exchange protocols bound their ids.
CLIENT_ORDER_ID_BYTES_MAX = 64
SYMBOL_BYTES_MAX = 16


def text_field_problem(value: Optional[str], name: str, bytes_max: int) -> Optional[tuple[str, str]]:
    """(reason, detail) when `value` is not at most `bytes_max` printable ASCII
    characters, else None (None itself is not this check's business)."""
    if value is None:
        return None
    if len(value) > bytes_max:
        return f"{name}_too_long", f"{name} has {len(value)} characters; at most {bytes_max} printable ASCII"
    if not (value.isascii() and value.isprintable()):
        return f"{name}_not_printable", f"{name} must be printable ASCII (0x20..0x7E)"
    return None


def request_problem(message) -> Optional[tuple[str, str]]:
    """(reason, detail) for the first field of a client request the gateway refuses."""
    problem = text_field_problem(getattr(message, "client_order_id", None), "client_order_id", CLIENT_ORDER_ID_BYTES_MAX)
    if problem is None:
        problem = text_field_problem(getattr(message, "symbol", None), "symbol", SYMBOL_BYTES_MAX)
    return problem


class AdmissionGate:
    def __init__(self, total_max: int, per_peer_max: int, timeout_ns: int) -> None:
        if total_max < 1 or per_peer_max < 1 or timeout_ns < 1:
            raise ValueError("an admission gate needs positive bounds and timeout")
        self.total_max = total_max
        self.per_peer_max = per_peer_max
        self.timeout_ns = timeout_ns
        # connection id -> (peer, admitted at); insertion order is admission order.
        self.pending: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self.by_peer: dict[str, list[int]] = {}
        self.refused = 0
        self.evicted = 0

    def admit(self, connection_id: int, peer: str, now_ns: int) -> tuple[Optional[str], Optional[int]]:
        """(refusal reason or None, connection id evicted to make room or None)."""
        mine = self.by_peer.get(peer)
        if mine is not None and len(mine) >= self.per_peer_max:
            self.refused += 1
            return "too_many_pending_from_peer", None
        evicted = None
        if len(self.pending) >= self.total_max:
            victim_peer = max(self.by_peer, key=lambda name: len(self.by_peer[name]))
            evicted = self.by_peer[victim_peer][0]
            self.leave(evicted)
            self.evicted += 1
        self.pending[connection_id] = (peer, now_ns)
        self.by_peer.setdefault(peer, []).append(connection_id)
        return None, evicted

    def leave(self, connection_id: int) -> None:
        """The connection logged on, subscribed or closed: no longer pending."""
        entry = self.pending.pop(connection_id, None)
        if entry is None:
            return
        peer = entry[0]
        mine = self.by_peer[peer]
        mine.remove(connection_id)
        if not mine:
            del self.by_peer[peer]

    def restart_clock(self, now_ns: int) -> None:
        """Every pending connection's timeout counts from now (reads resumed after a pause
        of ours: the time it could not be heard is not its fault). Admission order stays
        time order, which `expired` relies on."""
        for connection_id, (peer, admitted_ns) in self.pending.items():
            if admitted_ns < now_ns:
                self.pending[connection_id] = (peer, now_ns)

    def expired(self, now_ns: int) -> list[int]:
        """Connections pending for longer than the timeout (they leave the gate)."""
        expired = []
        deadline_ns = now_ns - self.timeout_ns
        for connection_id, (_peer, admitted_ns) in self.pending.items():
            if admitted_ns > deadline_ns:
                break
            expired.append(connection_id)
        for connection_id in expired:
            self.leave(connection_id)
        return expired


@dataclass
class _PeerFailures:
    failures: int = 0
    blocked_until_ns: int = 0
    refusing: bool = False
    unlogged: int = 0
    last_logged_ns: Optional[int] = None
    last_member: str = ""


@dataclass(frozen=True)
class LogonGuardSettings:
    delay_base_ns: int = 250_000_000
    delay_max_ns: int = 4_000_000_000
    failures_per_refusal: int = 10
    refusal_ns: int = 60_000_000_000
    log_interval_ns: int = 10_000_000_000
    peers_max: int = 100_000


class LogonGuard:
    def __init__(self, settings: LogonGuardSettings = LogonGuardSettings()) -> None:
        if settings.failures_per_refusal < 1 or settings.peers_max < 1:
            raise ValueError("failures_per_refusal and peers_max must be positive")
        self.settings = settings
        # peer -> its failures; order is least recently failed first (the first forgotten).
        self.peers: OrderedDict[str, _PeerFailures] = OrderedDict()
        self.failures_total = 0
        # (due at ns, peer) of each peer whose failures wait for their log line, earliest
        # first: a tick looks only at the due ones, never at every remembered peer. An
        # entry whose peer has since been logged, forgotten or succeeded is skipped.
        self.held_lines: list[tuple[int, str]] = []

    def delay_after_ns(self, failures: int) -> int:
        """How long an address is blocked after its `failures`-th failure."""
        settings = self.settings
        step = failures % settings.failures_per_refusal
        if step == 0:
            return settings.refusal_ns
        return min(settings.delay_base_ns << (step - 1), settings.delay_max_ns)

    def cycle_ns(self) -> int:
        """What one address pays for `failures_per_refusal` consecutive failures."""
        return sum(self.delay_after_ns(failures) for failures in range(1, self.settings.failures_per_refusal + 1))

    def check(self, peer: str, now_ns: int) -> tuple[str, int]:
        """("go", 0) to evaluate an attempt now, ("wait", until_ns) to hold it, or
        ("refuse", until_ns) to refuse it without looking at its credentials."""
        state = self.peers.get(peer)
        if state is None or now_ns >= state.blocked_until_ns:
            return "go", 0
        if state.refusing:
            return "refuse", state.blocked_until_ns
        return "wait", state.blocked_until_ns

    def failed(self, peer: str, member: str, now_ns: int) -> Optional[str]:
        """Record a failed logon; a log line when this peer is due one."""
        state = self.peers.pop(peer, None)
        if state is None:
            state = _PeerFailures()
            if len(self.peers) >= self.settings.peers_max:
                self.peers.popitem(last=False)
        self.peers[peer] = state
        state.failures += 1
        state.unlogged += 1
        state.last_member = member[:32]  # a stranger's text: bounded, and logged with repr
        self.failures_total += 1
        delay_ns = self.delay_after_ns(state.failures)
        state.blocked_until_ns = now_ns + delay_ns
        state.refusing = state.failures % self.settings.failures_per_refusal == 0
        if state.last_logged_ns is not None and now_ns - state.last_logged_ns < self.settings.log_interval_ns:
            if state.unlogged == 1:
                if len(self.held_lines) >= 2 * self.settings.peers_max:
                    self._rebuild_held_lines()
                heapq.heappush(self.held_lines, (state.last_logged_ns + self.settings.log_interval_ns, peer))
            return None
        return self._log_line(peer, state, now_ns)

    def succeeded(self, peer: str) -> None:
        self.peers.pop(peer, None)

    def due_log_lines(self, now_ns: int) -> list[str]:
        """Lines for peers whose failures since their last line have waited an interval."""
        lines = []
        interval_ns = self.settings.log_interval_ns
        held = self.held_lines
        while held and held[0][0] <= now_ns:
            _due_ns, peer = heapq.heappop(held)
            state = self.peers.get(peer)
            if state is not None and state.unlogged and now_ns - state.last_logged_ns >= interval_ns:
                lines.append(self._log_line(peer, state, now_ns))
        return lines

    def _rebuild_held_lines(self) -> None:
        """Drop the skipped entries (forgotten peers' ones) so the heap stays bounded."""
        interval_ns = self.settings.log_interval_ns
        self.held_lines = [(state.last_logged_ns + interval_ns, peer) for peer, state in self.peers.items()
                           if state.unlogged and state.last_logged_ns is not None]
        heapq.heapify(self.held_lines)

    def _log_line(self, peer: str, state: _PeerFailures, now_ns: int) -> str:
        new = state.unlogged
        state.unlogged = 0
        state.last_logged_ns = now_ns
        block_ms = (state.blocked_until_ns - now_ns) // 1_000_000
        what = "refused" if state.refusing else "delayed"
        return (
            f"failed logons from {peer}: {new} new, {state.failures} since its last success "
            f"(last member {state.last_member!r}); further attempts {what} for {block_ms} ms"
        )
