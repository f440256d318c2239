"""The load generator behind `twinbook loadgen` and `twinbook bench e2e`: built so that
the sender, not the node, is never the ceiling.

`plan_load(params)` pre-encodes every request of the run before the clock starts, per
client: a mix of orders near each symbol's reference price (60 % passive limit orders a
few ticks away, 20 % marketable limit orders that cross it, 20 % cancels, by client
order id, of one of the client's earlier passive places), each already a complete
frame. `run_load(params, plan)` opens N sessions (members round robin, M1..M3 by
default) as raw asyncio protocols, logs them on, and sends: a burst is one `b"".join`
of planned frames and one socket write; each client keeps at most `in_flight_max`
requests unanswered. With a target `rate` (orders per second, all clients together)
one pacing loop ticks every millisecond and sends each client its share of what is due
(catching up in a burst when the event loop was late); with rate 0 it sends as fast as
the windows allow.

Answers are matched by request id and never built into event objects: each server
frame is decoded into `_AnswerHead` (message type, request id, and the event's type and
reason), msgspec skipping the rest. The first report naming a request answers it.

    frame = | length u32 BE | msgpack map {"type": "place", "request_id": n, ...} |

Ack latency of a place = from just before the write of its burst to the socket to the
decoding of the first answer naming it (accepted / rejected report, or a gateway
`request_rejected`), on the monotonic perf counter, in ns. Every sample is kept in an
array during the run and recorded into an `hdrhistogram` HdrHistogram afterwards, for
the percentiles; `format_report` prints them as an HDR-style percentile table.

`NodeUnderTest` runs a single primary as a child process (`bench ioc-memory`); `bench
e2e` (tools/bench_e2e.py) runs a primary and a sync standby.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

import msgspec
from hdrh.histogram import HdrHistogram

from replica.config import default_config
from replica.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    FrameReader,
    Heartbeat,
    Logon,
    Logout,
    PlaceRequest,
    encode_frame,
)

DEFAULT_MEMBERS = ("M1", "M2", "M3")
PASSIVE_SHARE = 0.6
MARKETABLE_SHARE = 0.2  # the rest (0.2) are cancels, when the client has an order to cancel
PRICE_TICKS_MAX = 20  # passive orders rest 1..20 ticks from the reference price
DRAIN_SECONDS_MAX = 15.0  # after the sending stops, how long to wait for the last answers
SCHEDULER_PERIOD_SECONDS = 0.001
BATCH_MAX = 256  # requests sent between two yields to the event loop
REPORT_PERCENTILES = (0.0, 50.0, 75.0, 87.5, 90.0, 93.75, 96.875, 99.0, 99.9, 99.99, 99.999, 100.0)

# Limits for a node started by the benchmark: far above what the load can reach.
BENCH_LIMITS = {"messages_per_second": 100_000_000, "burst_messages": 100_000_000}
NODE_START_SECONDS_MAX = 30.0
# Unpaced runs pre-encode this many orders per second of the run (all clients): above
# what the node can answer, bounded so that the plan's memory stays near 100 MB for 5 s.
PLANNED_ORDERS_PER_SECOND_MAX = 250_000
HEARTBEAT_SECONDS = 0.5  # below the gateway's idle cut (four 1 s heartbeat intervals)
LATENCY_HIGHEST_NS = 3_600_000_000_000  # the histogram's range: 1 ns .. 1 h, 3 significant digits
NODE_STOP_SECONDS_MAX = 30.0


@dataclass
class LoadParams:
    endpoint: tuple[str, int]
    clients: int = 4
    rate: float = 10_000.0  # orders (places + cancels) per second, all clients; 0 = unthrottled
    seconds: float = 5.0
    symbols: tuple[str, ...] = ("AAPL", "MSFT")
    members: tuple[str, ...] = DEFAULT_MEMBERS
    tokens: Optional[dict] = None  # member -> token; default demo-<member>
    in_flight_max: int = 1000  # per client
    seed: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    reference_prices: Optional[dict] = None  # symbol -> (reference price, tick, lot)
    ssl_context: Optional[object] = None  # TLS to the gateway (replica.tls.member_client_context)
    drain_seconds_max: float = DRAIN_SECONDS_MAX  # after the sending stops, wait this long for answers


@dataclass
class LoadResult:
    params: LoadParams
    elapsed_seconds: float = 0.0  # first send to last answer
    send_seconds: float = 0.0
    places_sent: int = 0
    cancels_sent: int = 0
    accepted: int = 0
    rejected: int = 0  # rejected by the engine (price band, unknown order, ...)
    gateway_rejected: int = 0  # throttled / busy / malformed, never journaled
    cancels_answered: int = 0
    unanswered: int = 0
    trades: int = 0
    latencies_ns: array.array = field(default_factory=lambda: array.array("q"))
    reject_reasons: dict = field(default_factory=dict)

    @property
    def places_answered(self) -> int:
        return self.accepted + self.rejected + self.gateway_rejected

    def percentiles(self) -> dict:
        return latency_percentiles(self.latencies_ns)

    def figures(self) -> dict:
        """The run as one flat JSON-able dict (rates per second, latencies in µs)."""
        elapsed = self.elapsed_seconds or 1e-9
        pct = self.percentiles()
        return {
            "run_id": self.params.run_id,
            "clients": self.params.clients,
            "target_rate": self.params.rate,
            "seconds": self.params.seconds,
            "symbols": ",".join(self.params.symbols),
            "places_sent": self.places_sent,
            "cancels_sent": self.cancels_sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "gateway_rejected": self.gateway_rejected,
            "unanswered": self.unanswered,
            "trades": self.trades,
            "elapsed_seconds": round(elapsed, 3),
            "orders_per_second": round((self.places_answered + self.cancels_answered) / elapsed, 1),
            "places_per_second": round(self.places_answered / elapsed, 1),
            "ack_p50_us": pct["p50"] / 1000,
            "ack_p90_us": pct["p90"] / 1000,
            "ack_p99_us": pct["p99"] / 1000,
            "ack_p99_9_us": pct["p99.9"] / 1000,
            "ack_max_us": pct["max"] / 1000,
            "ack_samples": len(self.latencies_ns),
            "reject_reasons": dict(self.reject_reasons),
        }


def latency_histogram(samples) -> HdrHistogram:
    """The samples (ns) in an HdrHistogram (3 significant digits: values below 2,048 ns
    exact, others within 0.1 %), recorded after the run, off the measured path."""
    histogram = HdrHistogram(1, LATENCY_HIGHEST_NS, 3)
    record = histogram.record_value
    for sample in samples:
        record(max(1, min(sample, LATENCY_HIGHEST_NS)))
    return histogram


def latency_percentiles(samples) -> dict:
    if not len(samples):
        return {"p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "max": 0, "count": 0}
    histogram = latency_histogram(samples)
    at = histogram.get_value_at_percentile
    return {
        "p50": at(50.0),
        "p90": at(90.0),
        "p99": at(99.0),
        "p99.9": at(99.9),
        "max": histogram.get_max_value(),
        "count": histogram.get_total_count(),
    }


def value_at(ordered, percentile: float) -> int:
    """The smallest sample with at least `percentile` % of the samples at or below it."""
    if percentile <= 0:
        return ordered[0]
    rank = -(-len(ordered) * percentile // 100)  # ceil
    return ordered[min(len(ordered), max(1, int(rank))) - 1]


def histogram_table(samples, unit_ns: int = 1000, unit: str = "us") -> str:
    """An HDR-style percentile distribution: value, percentile, total count, 1/(1-p)."""
    ordered = sorted(samples)
    lines = [f"{'Value(' + unit + ')':>14} {'Percentile':>12} {'TotalCount':>12} {'1/(1-Percentile)':>18}"]
    if not ordered:
        return lines[0] + "\n(no samples)\n"
    import bisect

    for percentile in REPORT_PERCENTILES:
        value = value_at(ordered, percentile)
        count = bisect.bisect_right(ordered, value)
        inverse = "inf" if percentile >= 100.0 else f"{1 / (1 - percentile / 100):.2f}"
        lines.append(f"{value / unit_ns:>14.1f} {percentile / 100:>12.6f} {count:>12,} {inverse:>18}")
    mean = sum(ordered) / len(ordered)
    lines.append(f"#[Mean = {mean / unit_ns:.1f} {unit}, Max = {ordered[-1] / unit_ns:.1f} {unit}, Total count = {len(ordered):,}]")
    return "\n".join(lines) + "\n"


def format_report(result: LoadResult) -> str:
    figures = result.figures()
    params = result.params
    target = "unthrottled" if not params.rate else f"target {params.rate:,.0f} orders/s"
    lines = [
        f"twinbook loadgen run {params.run_id}: {params.clients} clients, {target}, "
        f"{params.seconds:g} s, symbols {figures['symbols']}",
        f"  sent      {result.places_sent:,} places + {result.cancels_sent:,} cancels in {result.send_seconds:.2f} s",
        f"  answered  {result.accepted:,} accepted, {result.rejected:,} rejected, {result.gateway_rejected:,} gateway "
        f"rejects, {result.cancels_answered:,} cancel answers, {result.unanswered:,} unanswered; {result.trades:,} trades",
        f"  achieved  {figures['orders_per_second']:,.0f} orders/s (places + cancels), "
        f"{figures['places_per_second']:,.0f} places/s, over {figures['elapsed_seconds']:.2f} s",
        f"  ack latency p50 {figures['ack_p50_us']:,.1f} us, p90 {figures['ack_p90_us']:,.1f} us, "
        f"p99 {figures['ack_p99_us']:,.1f} us, p99.9 {figures['ack_p99_9_us']:,.1f} us, max {figures['ack_max_us']:,.1f} us",
    ]
    if result.reject_reasons:
        lines.append("  reject reasons " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.reject_reasons.items())))
    lines.append("")
    lines.append("Ack latency (send -> accepted/rejected), percentile distribution:")
    return "\n".join(lines) + "\n" + histogram_table(result.latencies_ns)


def reference_prices_from_config(config=None) -> dict:
    config = config or default_config()
    prices = {}
    for instrument in config.instruments:
        reference = instrument.reference_price
        if reference is None:
            reference = 10_000 * instrument.tick_size
        prices[instrument.symbol] = (reference, instrument.tick_size, instrument.lot_size)
    return prices


class _EventHead(msgspec.Struct):
    """The part of an ExecutionReport's event the load generator reads (the rest of the
    message is skipped by the decoder, never built into objects)."""

    type: str
    reason: Optional[str] = None


class _AnswerHead(msgspec.Struct):
    """Any server message, reduced to what the load generator reads."""

    type: str
    request_id: int = 0
    event: Optional[_EventHead] = None
    reason: Optional[str] = None


_answer_decoder = msgspec.msgpack.Decoder(_AnswerHead)
_HEARTBEAT_FRAME = encode_frame(Heartbeat())
_LOGOUT_FRAME = encode_frame(Logout())


@dataclass
class LoadPlan:
    """The pre-encoded requests of one run, per client: request ids (ascending), a flag
    per request (True: a place, False: a cancel) and the frames, built before the clock
    starts so that sending is one `b"".join` and one socket write per burst."""

    request_ids: list[list[int]]
    is_place: list[list[bool]]
    frames: list[list[bytes]]


def _client_requests(params: LoadParams, prices: dict, rng: random.Random, index: int, count: int):
    """`count` requests of client `index`: the 60/20/20 mix; a cancel names (by client
    order id) one of this client's earlier passive places, drawn at random."""
    request_ids, is_place, frames = [], [], []
    cancellable: list[str] = []
    symbols = params.symbols
    prefix = f"{params.run_id}-{index}-"
    for request_id in range(1, count + 1):
        roll = rng.random()
        bits = rng.getrandbits(32)
        if roll >= PASSIVE_SHARE + MARKETABLE_SHARE and cancellable:
            slot = bits % len(cancellable)
            coid = cancellable[slot]
            cancellable[slot] = cancellable[-1]
            cancellable.pop()
            message = CancelRequest(request_id, client_order_id=coid)
            is_place.append(False)
        else:
            symbol = symbols[bits % len(symbols)]
            bits //= len(symbols)
            reference, tick, lot = prices[symbol]
            side = "buy" if bits & 1 else "sell"
            bits >>= 1
            qty = lot * (1 + bits % 10)
            bits //= 10
            if roll < PASSIVE_SHARE:
                ticks = 1 + bits % PRICE_TICKS_MAX
                price = reference - ticks * tick if side == "buy" else reference + ticks * tick
            else:  # marketable: crosses the reference price by a few ticks
                ticks = 1 + bits % 5
                price = reference + ticks * tick if side == "buy" else reference - ticks * tick
            coid = f"{prefix}{request_id}"
            if roll < PASSIVE_SHARE:
                cancellable.append(coid)
            message = PlaceRequest(request_id, coid, symbol, side, "limit", qty, price=price)
            is_place.append(True)
        request_ids.append(request_id)
        frames.append(encode_frame(message))
    return request_ids, is_place, frames


def plan_load(params: LoadParams) -> LoadPlan:
    """Pre-encode what `run_load(params)` will send: with a rate, that rate for `seconds`
    (plus 5 %); unpaced, up to PLANNED_ORDERS_PER_SECOND_MAX for `seconds`."""
    if params.clients < 1:
        raise ValueError("at least one client")
    prices = params.reference_prices or reference_prices_from_config()
    unknown = [symbol for symbol in params.symbols if symbol not in prices]
    if unknown:
        raise ValueError(f"no reference price known for {', '.join(unknown)}")
    rate = params.rate or PLANNED_ORDERS_PER_SECOND_MAX
    per_client = max(1, int(rate * params.seconds * 1.05 / params.clients) + 1)
    rng = random.Random(params.seed)
    plan = LoadPlan([], [], [])
    for index in range(params.clients):
        request_ids, is_place, frames = _client_requests(params, prices, random.Random(rng.random()), index, per_client)
        plan.request_ids.append(request_ids)
        plan.is_place.append(is_place)
        plan.frames.append(frames)
    return plan


class _Session(asyncio.Protocol):
    """One member session: logs on, then sends pre-encoded bursts and matches answers
    to requests by request id (the first report naming a request answers it)."""

    def __init__(self, load: "_ClientLoad") -> None:
        self.load = load
        self.transport: Optional[asyncio.Transport] = None
        self.frames = FrameReader()
        self.logged_on: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        params = self.load.params
        token = (params.tokens or {}).get(self.load.member, f"demo-{self.load.member}")
        transport.write(encode_frame(Logon(PROTOCOL_VERSION, self.load.member, token)))

    def data_received(self, data: bytes) -> None:
        decode = _answer_decoder.decode
        answered = self.load.answered
        for payload in self.frames.feed(data):
            head = decode(payload)
            kind = head.type
            if kind == "report" or kind == "request_rejected":
                if head.request_id:
                    answered(head)
            elif kind == "test_request":
                self.transport.write(_HEARTBEAT_FRAME)
            elif kind == "logon_accepted":
                if not self.logged_on.done():
                    self.logged_on.set_result(True)
            elif kind == "logon_rejected" or kind == "disconnect":
                if not self.logged_on.done():
                    self.logged_on.set_exception(ConnectionError(f"{self.load.member}: {kind} {head.reason}"))
                self.transport.close()

    def connection_lost(self, _error) -> None:
        if not self.logged_on.done():
            self.logged_on.set_exception(ConnectionError(f"{self.load.member}: connection lost at logon"))
        if not self.closed.done():
            self.closed.set_result(True)
        self.load.connection_lost()


class _ClientLoad:
    """One client's planned requests, its send position and its answers."""

    def __init__(self, index: int, params: LoadParams, plan: LoadPlan, result: LoadResult,
                 window_open: asyncio.Event) -> None:
        self.index = index
        self.params = params
        self.member = params.members[index % len(params.members)]
        self.result = result
        self.request_ids = plan.request_ids[index]
        self.is_place = plan.is_place[index]
        self.frames = plan.frames[index]
        self.sent_ns: dict[int, int] = {}  # request id -> send time, places in flight
        self.cancels_in_flight: set[int] = set()
        self.window_open = window_open  # shared by all clients: "some window has room"
        self.sent = 0
        self.finished_sending = False
        self.lost = False
        self.all_answered = asyncio.Event()
        self.session: Optional[_Session] = None

    def answered(self, head: _AnswerHead) -> None:
        request_id = head.request_id
        sent = self.sent_ns.pop(request_id, None)
        result = self.result
        if sent is not None:
            result.latencies_ns.append(time.perf_counter_ns() - sent)
            if head.type == "request_rejected":
                result.gateway_rejected += 1
                reason = head.reason
            elif head.event is not None and head.event.type == "rejected":
                result.rejected += 1
                reason = head.event.reason
            else:
                result.accepted += 1
                reason = None
            if reason is not None:
                result.reject_reasons[reason] = result.reject_reasons.get(reason, 0) + 1
        elif request_id in self.cancels_in_flight:
            self.cancels_in_flight.discard(request_id)
            result.cancels_answered += 1
        else:
            if head.event is not None and head.event.type == "trade":
                result.trades += 1  # a later report of a request already answered: its fills
            return
        in_flight = len(self.sent_ns) + len(self.cancels_in_flight)
        if in_flight < self.params.in_flight_max:
            self.window_open.set()
        if self.finished_sending and in_flight == 0:
            self.all_answered.set()

    def connection_lost(self) -> None:
        self.lost = True
        self.window_open.set()
        self.all_answered.set()  # nothing more can come

    def in_flight(self) -> int:
        return len(self.sent_ns) + len(self.cancels_in_flight)

    def send_due(self, now: float, start: float, per_client_rate: float) -> int:
        """Write what the schedule says is due (all the window allows when unpaced) in one write."""
        if self.lost:
            return 0
        room = self.params.in_flight_max - self.in_flight()
        left = len(self.frames) - self.sent
        if per_client_rate:
            count = min(int((now - start) * per_client_rate) + 1 - self.sent, BATCH_MAX, room, left)
        else:
            count = min(BATCH_MAX, room, left)
        if count <= 0:
            return 0
        first, end = self.sent, self.sent + count
        sent_ns = time.perf_counter_ns()
        in_flight = self.sent_ns
        for request_id, place in zip(self.request_ids[first:end], self.is_place[first:end]):
            if place:
                in_flight[request_id] = sent_ns
            else:
                self.cancels_in_flight.add(request_id)
        self.session.transport.write(b"".join(self.frames[first:end]))
        self.sent = end
        return count

    def exhausted(self) -> bool:
        return self.lost or self.sent >= len(self.frames)

    def stop_sending(self) -> None:
        self.finished_sending = True
        places = sum(self.is_place[:self.sent])
        self.result.places_sent += places
        self.result.cancels_sent += self.sent - places
        if self.in_flight() == 0:
            self.all_answered.set()


async def _drive(loads: list[_ClientLoad], start: float, end: float, per_client_rate: float) -> None:
    """One pacing loop for every client: a tick per millisecond when paced (so the
    sender's own wake-ups do not grow with the number of clients), back to back when
    unpaced, waiting for an answer whenever every window is full; a Heartbeat on every
    session each HEARTBEAT_SECONDS so that none is cut as idle while its window is full."""
    loop = asyncio.get_running_loop()
    window_open = loads[0].window_open
    window = loads[0].params.in_flight_max
    heartbeat_due = start + HEARTBEAT_SECONDS
    while True:
        now = loop.time()
        if now >= end or all(load.exhausted() for load in loads):
            break
        if now >= heartbeat_due:
            for load in loads:
                if not load.lost:
                    load.session.transport.write(_HEARTBEAT_FRAME)
            heartbeat_due = now + HEARTBEAT_SECONDS
        sent = 0
        for load in loads:
            sent += load.send_due(now, start, per_client_rate)
        if not sent and all(load.in_flight() >= window or load.exhausted() for load in loads):
            window_open.clear()
            try:
                await asyncio.wait_for(window_open.wait(), max(0.001, min(end, heartbeat_due) - now))
            except asyncio.TimeoutError:
                pass
        elif per_client_rate:
            next_due = min(start + (load.sent + 1) / per_client_rate for load in loads)
            await asyncio.sleep(min(SCHEDULER_PERIOD_SECONDS, max(0.0, next_due - loop.time())))
        else:
            await asyncio.sleep(0)  # let the answers in
    for load in loads:
        load.stop_sending()


async def run_load(params: LoadParams, plan: Optional[LoadPlan] = None) -> LoadResult:
    """Log the clients on, send the plan (made by `plan_load(params)` unless given), wait
    for the last answers (at most `params.drain_seconds_max`), log off."""
    plan = plan or plan_load(params)
    result = LoadResult(params)
    loads: list[_ClientLoad] = []
    window_open = asyncio.Event()
    loop = asyncio.get_running_loop()
    host, port = params.endpoint
    tls = {"ssl": params.ssl_context, "server_hostname": ""} if params.ssl_context else {}
    try:
        for index in range(params.clients):
            load = _ClientLoad(index, params, plan, result, window_open)
            _, load.session = await asyncio.wait_for(loop.create_connection(lambda: _Session(load), host, port, **tls), 15)
            loads.append(load)
            await asyncio.wait_for(load.session.logged_on, 15)
        per_client_rate = params.rate / params.clients if params.rate else 0.0
        start = loop.time()
        end = start + params.seconds
        first_send_ns = time.perf_counter_ns()
        await _drive(loads, start, end, per_client_rate)
        result.send_seconds = loop.time() - start
        try:
            await asyncio.wait_for(asyncio.gather(*(load.all_answered.wait() for load in loads)),
                                   params.drain_seconds_max)
        except asyncio.TimeoutError:
            pass
        result.elapsed_seconds = (time.perf_counter_ns() - first_send_ns) / 1e9
        result.unanswered = sum(load.in_flight() for load in loads)
    finally:
        for load in loads:
            transport = load.session.transport
            if transport is not None and not transport.is_closing():
                transport.write(_LOGOUT_FRAME)
                transport.close()
        for load in loads:
            try:
                await asyncio.wait_for(asyncio.shield(load.session.closed), 5)
            except asyncio.TimeoutError:
                load.session.transport.abort()
    return result


def run_async(coroutine):
    """Run on uvloop when it is installed (as `twinbook primary` does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# -------------------------------------------------------------------- bench e2e


def process_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU time of a running process so far (Linux /proc; 10 ms ticks), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bench_config_text(durability: str, ports: dict, limits: dict, certs: Optional[str]) -> str:
    lines = ["[node]", 'host = "127.0.0.1"', f'durability = "{durability}"']
    lines += [f"{name} = {port}" for name, port in ports.items()]
    lines += ["[limits]"] + [f"{name} = {value}" for name, value in limits.items()]
    # With certificates: TLS everywhere, the members' gateway included (what is measured).
    lines += ["[tls]", "enabled = false"] if certs is None else ["[tls]", f"directory = {json.dumps(certs)}",
                                                                 'node = "a"', "members = true"]
    return "\n".join(lines) + "\n"


class NodeUnderTest:
    """A primary run as a child process for the benchmark (always stopped by `stop`)."""

    def __init__(self, workdir: str, durability: str, profile_path: Optional[str] = None,
                 limits: Optional[dict] = None, certs: Optional[str] = None) -> None:
        # `certs`: a `certs init` directory: TLS on every port, members' included; None: plain TCP.
        self.data = os.path.join(workdir, "node")
        self.config_path = os.path.join(workdir, "node.toml")
        self.log_path = os.path.join(workdir, "node.log")
        ports = {"client_port": 0, "feed_port": 0, "replication_port": 0, "admin_port": 0}
        with open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write(_bench_config_text(durability, ports, limits or BENCH_LIMITS, certs))
        arguments = ["primary", "--data", self.data, "--config", self.config_path]
        if profile_path:
            code = (
                "import cProfile, sys\n"
                "from tools.cli import main\n"
                f"sys.argv = ['twinbook'] + {arguments!r}\n"
                "profiler = cProfile.Profile()\n"
                "try:\n"
                "    profiler.runcall(main)\n"
                "finally:\n"
                f"    profiler.dump_stats({profile_path!r})\n"
            )
        else:
            code = "from tools.cli import main; main()"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        environment = dict(os.environ)
        environment["PYTHONPATH"] = root + os.pathsep + environment.get("PYTHONPATH", "")
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code] + ([] if profile_path else arguments),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=environment,
        )
        self.info = self._wait_for_node_file()

    def _wait_for_node_file(self) -> dict:
        path = os.path.join(self.data, "node.json")
        deadline = time.monotonic() + NODE_START_SECONDS_MAX
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the primary exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with open(path, encoding="utf-8") as handle:
                    info = json.load(handle)
                if info.get("pid") == self.process.pid:
                    return info
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the primary did not start within {NODE_START_SECONDS_MAX} s: {self.log_tail()}")

    @property
    def client_endpoint(self) -> tuple[str, int]:
        host, port = self.info["client"]
        return host, port

    def log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        """SIGTERM and wait (SIGKILL if it hangs); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=NODE_STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=NODE_STOP_SECONDS_MAX)
        self.log.close()
        return self.process.returncode
