"""A simulated network of TCP-like connections between named endpoints.

A connection behaves as TCP does to the programs at its ends: each direction delivers
its payloads in order, exactly once, after a delay drawn from the seed; a connection
that breaks (a cut, a process crash) loses whatever was still in flight and both ends
learn of it after a delay. Faults:

* delay: every payload takes 50-500 us, with a 2% chance of a 5-40 ms stall, and
  payloads of different connections overtake each other (reordering across
  connections; within one, TCP never reorders);
* cut: the connection breaks, in-flight payloads are lost (TCP cannot drop a segment
  silently; what is lost is everything after the break);
* partition: between two endpoints, until a heal time: payloads sent meanwhile are
  held and arrive after the heal (TCP retransmits), unless a side gives up and cuts;
  new connections between them are refused;
* duplicates come from the application (a client that resubmits after a lost reply,
  or sends the same request twice), not from the transport.

Endpoints implement `accept(connection) -> bool`, `opened(connection)`,
`received(connection, payload)` and `closed(connection)`. Payloads are bytes encoded by
the real protocol encoders, so the receivers run the real decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DELAY_NS_MIN = 50_000
DELAY_NS_MAX = 500_000
STALL_PROBABILITY = 0.02
STALL_NS_MAX = 40_000_000


@dataclass
class Connection:
    connection_id: int
    source: str  # the endpoint that connected
    target: str  # the endpoint that accepted
    kind: str  # "client", "link" or "admin"
    open: bool = False
    broken: bool = False
    last_delivery_ns: dict = field(default_factory=dict)

    def peer_of(self, endpoint: str) -> str:
        return self.target if endpoint == self.source else self.source


class Network:
    def __init__(self, simulator) -> None:
        self.simulator = simulator
        self.rng = simulator.rng
        self.endpoints: dict[str, object] = {}
        self.connections: dict[int, Connection] = {}
        self.partitions: dict[frozenset, int] = {}
        self._next_connection_id = 1
        self.payloads_sent = 0

    def delay_ns(self) -> int:
        if self.rng.random() < STALL_PROBABILITY * self.simulator.fault_rate:
            return self.rng.randrange(5_000_000, STALL_NS_MAX)
        return self.rng.randrange(DELAY_NS_MIN, DELAY_NS_MAX)

    def partitioned_until(self, a: str, b: str) -> int:
        heal_ns = self.partitions.get(frozenset((a, b)), 0)
        return heal_ns if heal_ns > self.simulator.now_ns else 0

    def partition(self, a: str, b: str, duration_ns: int) -> None:
        self.partitions[frozenset((a, b))] = self.simulator.now_ns + duration_ns

    def heal_all(self) -> None:
        self.partitions.clear()

    # ------------------------------------------------------------ connections

    def connect(self, source: str, target: str, kind: str) -> Connection:
        connection = Connection(self._next_connection_id, source, target, kind)
        self._next_connection_id += 1
        self.connections[connection.connection_id] = connection
        self.simulator.after(self.delay_ns(), self._arrive_connect, connection)
        return connection

    def _arrive_connect(self, connection: Connection) -> None:
        if connection.broken:
            return
        target = self.endpoints.get(connection.target)
        refused = self.partitioned_until(connection.source, connection.target) or target is None
        if not refused and target.accept(connection):
            connection.open = True
            target.opened(connection)
            self.simulator.after(self.delay_ns(), self._arrive_open, connection)
        else:
            connection.broken = True
            self.connections.pop(connection.connection_id, None)
            self.simulator.after(self.delay_ns(), self._arrive_closed, connection, connection.source)

    def _arrive_open(self, connection: Connection) -> None:
        if connection.broken:
            return
        self.endpoints[connection.source].opened(connection)

    def send(self, connection: Connection, sender: str, payload: bytes) -> None:
        if connection.broken or not connection.open:
            return
        receiver = connection.peer_of(sender)
        now = self.simulator.now_ns
        at = now + self.delay_ns()
        heal_ns = self.partitioned_until(sender, receiver)
        if heal_ns:
            at = max(at, heal_ns + self.delay_ns())
        previous = connection.last_delivery_ns.get(receiver, 0)
        if at <= previous:
            at = previous + 1
        connection.last_delivery_ns[receiver] = at
        self.payloads_sent += 1
        self.simulator.at(at, self._arrive_payload, connection, receiver, payload)

    def _arrive_payload(self, connection: Connection, receiver: str, payload: bytes) -> None:
        if connection.broken:
            return
        self.endpoints[receiver].received(connection, payload)

    def cut(self, connection: Connection) -> None:
        """Break a connection: in-flight payloads are lost, both ends are told."""
        if connection.broken:
            return
        connection.broken = True
        self.connections.pop(connection.connection_id, None)
        for endpoint in (connection.source, connection.target):
            self.simulator.after(self.delay_ns(), self._arrive_closed, connection, endpoint)

    def _arrive_closed(self, connection: Connection, endpoint: str) -> None:
        handler = self.endpoints.get(endpoint)
        if handler is not None:
            handler.closed(connection)

    def cut_all_of(self, endpoint: str) -> None:
        for connection in list(self.connections.values()):
            if endpoint in (connection.source, connection.target):
                self.cut(connection)

    def connections_between(self, a: str, b: str) -> list[Connection]:
        return [c for c in self.connections.values() if {c.source, c.target} == {a, b}]

