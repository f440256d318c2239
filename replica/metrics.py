"""The node's Prometheus endpoint: GET /metrics in the text exposition format.

Nothing on the order path pays for it. The collector reads, at scrape time, what the
node already keeps for its admin `status` (role, epoch, sequences, sessions, subscribers,
the in-flight window, logon failures, standby progress) plus the gateway's refusal
counts by reason (PrimaryCore.rejections, counted where a refusal is sent), and turns
them into metric families. The server is a few lines of asyncio on the node's own event
loop, so a scrape sees one consistent moment of the node's state, with no thread and no
lock.

    [metrics]
    enabled = true
    host = "127.0.0.1"   # loopback by default
    port = 7707          # 0: the kernel picks; DIR/node.json names the bound address

Each node has its own registry (not prometheus_client's global one), so several nodes in
one process (tests, the simulator) never mix their figures.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from replica.config import MetricsConfig

ROLES = ("primary", "standby")
REQUEST_BYTES_MAX = 8192
READ_TIMEOUT_SECONDS = 5.0


class StatusCollector:
    """Metric families built from a node's status() and refusal counts at each scrape."""

    def __init__(self, status: Callable[[], dict], rejections: Callable[[], dict]) -> None:
        self._status = status
        self._rejections = rejections

    def describe(self):
        return []  # families depend on the role; nothing to pre-register

    def collect(self):
        status = self._status()
        role = GaugeMetricFamily("twinbook_role", "1 for the role this node plays now", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if status.get("role") == name else 0.0)
        yield role
        yield GaugeMetricFamily("twinbook_epoch", "The node's epoch (grows at each promotion)",
                                value=status.get("epoch") or 0)
        sequence = GaugeMetricFamily("twinbook_sequence", "Journal positions", labels=["kind"])
        for kind in ("sequenced", "last", "durable", "applied", "released", "standby_durable"):
            value = status.get(f"{kind}_sequence")
            if value is not None:
                sequence.add_metric([kind], value)
        yield sequence
        if status.get("role") == "primary":
            durable = status.get("standby_durable_sequence")
            lag = max(0, status["durable_sequence"] - durable) if status.get("standby_attached") and durable is not None else 0
            yield GaugeMetricFamily("twinbook_replication_lag_records",
                                    "Records durable here and not yet durable on the standby", value=lag)
            yield from self._primary_families(status)
        else:
            released = status.get("primary_last_sequence") or 0
            yield GaugeMetricFamily("twinbook_replication_lag_records",
                                    "Records the primary has and this standby has not journaled",
                                    value=max(0, released - (status.get("durable_sequence") or 0)))
            beat = status.get("primary_beat_age_ms")
            if beat is not None:
                yield GaugeMetricFamily("twinbook_primary_beat_age_ms", "Milliseconds since the primary's last beat",
                                        value=beat)
            yield GaugeMetricFamily("twinbook_primary_connected", "1 while the replication link is up",
                                    value=1.0 if status.get("primary_connected") else 0.0)

    def _primary_families(self, status: dict):
        gauges = (
            ("twinbook_sessions", "Open trading connections", "sessions"),
            ("twinbook_sessions_logged_on", "Logged-on trading sessions", "sessions_logged_on"),
            ("twinbook_pending_logons", "Connections not yet logged on", "pending_logons"),
            ("twinbook_subscribers", "Feed subscribers", "subscribers"),
            ("twinbook_pending_subscribers", "Feed connections not yet subscribed", "pending_subscribers"),
            ("twinbook_records_waiting", "Sequenced records waiting for in-flight window room", "records_waiting"),
        )
        for name, documentation, key in gauges:
            yield GaugeMetricFamily(name, documentation, value=status.get(key) or 0)
        for name, documentation, key in (
            ("twinbook_clients_paused", "1 while client sockets are not read (window full)", "clients_paused"),
            ("twinbook_standby_attached", "1 while a standby streams from this primary", "standby_attached"),
            ("twinbook_degraded", "1 while acknowledging without a standby (operator's choice)", "degraded"),
        ):
            yield GaugeMetricFamily(name, documentation, value=1.0 if status.get(key) else 0.0)
        yield CounterMetricFamily("twinbook_logon_failures", "Failed logons since start",
                                  value=status.get("logon_failures") or 0)
        rejects = CounterMetricFamily("twinbook_gateway_rejects", "Requests refused by the gateway, by reason",
                                      labels=["reason"])
        rejections = self._rejections()
        for reason in sorted(rejections):
            rejects.add_metric([reason], rejections[reason])
        yield rejects
        yield CounterMetricFamily("twinbook_throttles", "Requests refused for the member's message rate",
                                  value=rejections.get("throttled", 0))


class MetricsServer:
    """GET /metrics on (host, port), served on the running event loop."""

    def __init__(self, config: MetricsConfig, status: Callable[[], dict], rejections: Callable[[], dict]) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(status, rejections))
        self._server: Optional[asyncio.AbstractServer] = None

    @property
    def address(self) -> Optional[tuple[str, int]]:
        return None if self._server is None else tuple(self._server.sockets[0].getsockname()[:2])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
            line = request.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                body = generate_latest(self.registry)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            else:
                body = b"only GET /metrics here\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a scraper that went away or never sent a request: nothing to answer
        finally:
            writer.close()


async def start_metrics(config: MetricsConfig, status: Callable[[], dict], rejections: Callable[[], dict],
                        log: Callable[[str], None]) -> Optional[MetricsServer]:
    """The node's metrics server, started; None when [metrics] is off or its port is taken.

    A taken port does not stop the node (trading matters more than its figures): it is
    logged as a warning naming the address and the key to change.
    """
    if not config.enabled:
        return None
    server = MetricsServer(config, status, rejections)
    try:
        await server.start()
    except OSError as error:
        log(f"WARNING metrics not served: cannot bind {config.host}:{config.port} ({error.strerror or error}); "
            "set [metrics] port (0: any free port) or enabled = false")
        return None
    return server
