"""The load generator behind `twinbook loadgen` and `twinbook bench e2e`.

`run_load(params)` connects N `OrderClient`s (members round robin, M1..M3 by default)
to a primary and sends, for `seconds`, a mix of orders near each symbol's reference
price: passive limit orders a few ticks away from it (60%), marketable limit orders
that cross it (20%), and cancels of the client's own earlier orders (20%). Sending is
pipelined: every request goes out at once (`send_place` / `send_cancel` futures) and
each client keeps at most `in_flight_max` requests unanswered; each client's burst goes
out in one write (`OrderClient.batched`). With a target `rate` (orders per second, all
clients together) one pacing loop ticks every millisecond and sends each client its
share of what is due (catching up in a burst when the event loop was late); with rate 0
it sends as fast as the windows allow.

Ack latency of a place = time from just before its frame is written to the socket to
the moment its `accepted` / `rejected` report (or a gateway `request_rejected`) is
dispatched by the client library, on the monotonic perf counter, in nanoseconds. Every
sample is kept, so percentiles are exact; `format_report` prints them as an HDR-style
percentile table (value at percentile, count of samples at or below it).

`run_e2e_benchmark(...)` starts a primary as a separate process in a temporary
directory (durability `always` unless told otherwise, per-session rate limits raised
so the gateway does not throttle the benchmark), runs a throughput phase (unthrottled)
and a latency phase (at a fixed rate, 10,000 orders/s by default), shuts the node down
with SIGTERM, and returns the figures. With `profile_path` the primary runs under
cProfile and writes its stats there on shutdown.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from replica.client import OrderClient
from replica.config import default_config
from replica.protocol import RequestRejected
from statemachine.events import OrderAccepted, OrderRejected, TradeExecuted

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


def latency_percentiles(samples) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "max": 0, "count": 0}
    return {
        "p50": value_at(ordered, 50.0),
        "p90": value_at(ordered, 90.0),
        "p99": value_at(ordered, 99.0),
        "p99.9": value_at(ordered, 99.9),
        "max": ordered[-1],
        "count": len(ordered),
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


class _DiscardQueue:
    """Stands in for OrderClient.reports: the load generator reads reports through
    on_report and must not pile up millions of events nobody reads."""

    def put_nowait(self, _item) -> None:
        pass

    def qsize(self) -> int:
        return 0


def reference_prices_from_config(config=None) -> dict:
    config = config or default_config()
    prices = {}
    for instrument in config.instruments:
        reference = instrument.reference_price
        if reference is None:
            reference = 10_000 * instrument.tick_size
        prices[instrument.symbol] = (reference, instrument.tick_size, instrument.lot_size)
    return prices


class _ClientLoad:
    """One client's sending loop and bookkeeping."""

    def __init__(self, index: int, client: OrderClient, params: LoadParams, result: LoadResult,
                 prices: dict, rng: random.Random, window_open: asyncio.Event) -> None:
        self.index = index
        self.client = client
        self.params = params
        self.result = result
        self.prices = prices
        self.rng = rng
        self.sent_ns: dict[str, int] = {}  # client order id -> send time of places in flight
        self.cancellable: list[int] = []
        self.cancels_in_flight = 0
        self.prefix = f"{params.run_id}-{index}-"
        self.counter = itertools.count(1)
        self.window_open = window_open  # shared by all clients: "some window has room"
        self.sent = 0
        self.finished_sending = False
        self.all_answered = asyncio.Event()

    # ---------------------------------------------------------------- answers

    def on_report(self, event) -> None:
        kind = type(event)
        if kind is OrderAccepted or kind is OrderRejected:
            coid = event.client_order_id
            sent = self.sent_ns.pop(coid, None) if coid is not None else None
            if sent is None:
                return  # a cancel's reject: counted by its future
            self.result.latencies_ns.append(time.perf_counter_ns() - sent)
            if kind is OrderAccepted:
                self.result.accepted += 1
                if event.price is not None:
                    self.cancellable.append(event.order_id)
            else:
                self.result.rejected += 1
                self.result.reject_reasons[event.reason] = self.result.reject_reasons.get(event.reason, 0) + 1
            self._answered()
        elif kind is TradeExecuted:
            if event.taker_member == self.client.member:
                self.result.trades += 1

    def _place_done(self, future: asyncio.Future, coid: str) -> None:
        # Engine answers are counted in on_report (earlier and exact); only gateway
        # rejections (never journaled, no report) are counted here.
        if future.cancelled() or future.exception() is not None:
            self.sent_ns.pop(coid, None)
            self._answered()
            return
        answer = future.result()
        if type(answer) is RequestRejected:
            sent = self.sent_ns.pop(coid, None)
            if sent is not None:
                self.result.latencies_ns.append(time.perf_counter_ns() - sent)
            self.result.gateway_rejected += 1
            self.result.reject_reasons[answer.reason] = self.result.reject_reasons.get(answer.reason, 0) + 1
            self._answered()

    def _cancel_done(self, _future: asyncio.Future) -> None:
        self.cancels_in_flight -= 1
        self.result.cancels_answered += 1
        self._answered()

    def _answered(self) -> None:
        in_flight = len(self.sent_ns) + self.cancels_in_flight
        if in_flight < self.params.in_flight_max:
            self.window_open.set()
        if self.finished_sending and in_flight == 0:
            self.all_answered.set()

    # ---------------------------------------------------------------- sending

    def send_one(self) -> None:
        # Two draws per order (the generator is part of the measured sender's cost).
        rng = self.rng
        roll = rng.random()
        bits = rng.getrandbits(32)
        client = self.client
        if roll >= PASSIVE_SHARE + MARKETABLE_SHARE and self.cancellable:
            cancellable = self.cancellable
            index = bits % len(cancellable)
            order_id = cancellable[index]
            cancellable[index] = cancellable[-1]
            cancellable.pop()
            self.cancels_in_flight += 1
            client.send_cancel(order_id).add_done_callback(self._cancel_done)
            self.result.cancels_sent += 1
            return
        symbols = self.params.symbols
        symbol = symbols[bits % len(symbols)]
        bits //= len(symbols)
        reference, tick, lot = self.prices[symbol]
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
        coid = f"{self.prefix}{next(self.counter)}"
        self.sent_ns[coid] = time.perf_counter_ns()
        future = client.send_place(coid, symbol, side, "limit", qty, price=price)
        future.add_done_callback(lambda f, coid=coid: self._place_done(f, coid))
        self.result.places_sent += 1

    def in_flight(self) -> int:
        return len(self.sent_ns) + self.cancels_in_flight

    def send_due(self, now: float, start: float, per_client_rate: float) -> int:
        """Send what the schedule says is due (all the window allows when unpaced)."""
        room = self.params.in_flight_max - self.in_flight()
        if per_client_rate:
            count = min(int((now - start) * per_client_rate) + 1 - self.sent, BATCH_MAX, room)
        else:
            count = min(BATCH_MAX, room)
        if count <= 0:
            return 0
        with self.client.batched():  # one write for the whole burst
            for _ in range(count):
                self.send_one()
        self.sent += count
        return count

    def stop_sending(self) -> None:
        self.finished_sending = True
        if self.in_flight() == 0:
            self.all_answered.set()


async def _drive(loads: list[_ClientLoad], start: float, end: float, per_client_rate: float) -> None:
    """One pacing loop for every client: a tick per millisecond when paced (so the
    sender's own wake-ups do not grow with the number of clients), back to back when
    unpaced, waiting for an answer whenever every window is full."""
    loop = asyncio.get_running_loop()
    window_open = loads[0].window_open
    while True:
        now = loop.time()
        if now >= end:
            break
        sent = 0
        for load in loads:
            sent += load.send_due(now, start, per_client_rate)
        window = loads[0].params.in_flight_max
        if not sent and all(load.in_flight() >= window for load in loads):
            window_open.clear()
            try:
                await asyncio.wait_for(window_open.wait(), max(0.001, end - now))
            except asyncio.TimeoutError:
                pass
        elif per_client_rate:
            next_due = min(start + (load.sent + 1) / per_client_rate for load in loads)
            await asyncio.sleep(min(SCHEDULER_PERIOD_SECONDS, max(0.0, next_due - loop.time())))
        else:
            await asyncio.sleep(0)  # let the answers in
    for load in loads:
        load.stop_sending()


async def run_load(params: LoadParams) -> LoadResult:
    if params.clients < 1:
        raise ValueError("at least one client")
    prices = params.reference_prices or reference_prices_from_config()
    unknown = [symbol for symbol in params.symbols if symbol not in prices]
    if unknown:
        raise ValueError(f"no reference price known for {', '.join(unknown)}")
    result = LoadResult(params)
    rng = random.Random(params.seed)
    loads: list[_ClientLoad] = []
    window_open = asyncio.Event()
    try:
        for index in range(params.clients):
            member = params.members[index % len(params.members)]
            token = (params.tokens or {}).get(member, f"demo-{member}")
            client = OrderClient([params.endpoint], member, token, ssl_context=params.ssl_context)
            load = _ClientLoad(index, client, params, result, prices, random.Random(rng.random()), window_open)
            client.on_report = load.on_report
            client.reports = _DiscardQueue()
            await asyncio.wait_for(client.connect(), 15)
            loads.append(load)
        loop = asyncio.get_running_loop()
        per_client_rate = params.rate / params.clients if params.rate else 0.0
        start = loop.time()
        end = start + params.seconds
        first_send_ns = time.perf_counter_ns()
        await _drive(loads, start, end, per_client_rate)
        result.send_seconds = loop.time() - start
        drain_deadline = DRAIN_SECONDS_MAX
        try:
            await asyncio.wait_for(asyncio.gather(*(load.all_answered.wait() for load in loads)), drain_deadline)
        except asyncio.TimeoutError:
            pass
        result.elapsed_seconds = (time.perf_counter_ns() - first_send_ns) / 1e9
        result.unanswered = sum(load.in_flight() for load in loads)
    finally:
        for load in loads:
            try:
                await asyncio.wait_for(load.client.close(), 5)
            except (asyncio.TimeoutError, OSError):
                pass
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


def run_e2e_benchmark(
    clients: int = 4,
    seconds: float = 5.0,
    latency_rate: float = 10_000.0,
    latency_clients: Optional[int] = None,
    throughput_rate: float = 0.0,
    symbols: tuple[str, ...] = ("AAPL", "MSFT"),
    durability: str = "always",
    workdir: Optional[str] = None,
    profile_path: Optional[str] = None,
    in_flight_max: int = 1000,
    seed: int = 1,
    tls: bool = True,
) -> dict:
    """Start a primary (durability `always`), measure throughput then latency, stop it.

    `tls`: the node's certificates are created in the temporary directory and the clients
    reach the gateway over TLS (members = true); False: plain TCP, to measure the cost.

    Figures: orders (places + cancels) per second sustained in the throughput phase
    (unthrottled, or at `throughput_rate`), and the ack latency percentiles of places
    in ns at `latency_rate` orders/s, with the parameters.
    """
    base = tempfile.mkdtemp(prefix="twinbook-e2e-", dir=workdir)
    node = None
    try:
        certs = ssl_context = None
        if tls:
            from replica.certs import create_cluster_certificates
            from replica.tls import member_client_context

            certs = os.path.join(base, "certs")
            create_cluster_certificates(certs, 1, ("a",))
            ssl_context = member_client_context(os.path.join(certs, "ca.pem"))
        node = NodeUnderTest(base, durability, profile_path, certs=certs)
        endpoint = node.client_endpoint
        cpu_before = process_cpu_seconds(node.process.pid)
        throughput = run_async(run_load(LoadParams(
            endpoint, clients=clients, rate=throughput_rate, seconds=seconds, symbols=symbols,
            in_flight_max=in_flight_max, seed=seed, run_id=f"tp{seed}", ssl_context=ssl_context,
        )))
        cpu_after = process_cpu_seconds(node.process.pid)
        latency = run_async(run_load(LoadParams(
            endpoint, clients=latency_clients or clients, rate=latency_rate, seconds=seconds, symbols=symbols,
            in_flight_max=in_flight_max, seed=seed + 1, run_id=f"lat{seed}", ssl_context=ssl_context,
        )))
        exit_code = node.stop()
        node_log = node.log_tail()
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    tp = throughput.figures()
    answered = throughput.places_answered + throughput.cancels_answered
    lat_pct = latency.percentiles()
    tp_pct = throughput.percentiles()
    return {
        "benchmark": "e2e",
        "durability": durability,
        "tls": tls,
        "clients": clients,
        "seconds": seconds,
        "symbols": ",".join(symbols),
        "in_flight_max_per_client": in_flight_max,
        "throughput_target_rate": throughput_rate,
        "orders_per_second": tp["orders_per_second"],
        "places_per_second": tp["places_per_second"],
        "throughput_places_answered": throughput.places_answered,
        "throughput_cancels_answered": throughput.cancels_answered,
        "throughput_unanswered": throughput.unanswered,
        # The node's CPU (user + system) over the throughput phase (logons included) per
        # order answered; None where /proc is missing.
        "node_cpu_us_per_order": (round((cpu_after - cpu_before) * 1e6 / answered, 1)
                                  if None not in (cpu_before, cpu_after) and answered else None),
        "throughput_ack_p50_ns": tp_pct["p50"],
        "throughput_ack_p99_ns": tp_pct["p99"],
        "latency_target_rate": latency_rate,
        "latency_clients": latency_clients or clients,
        "latency_orders_per_second": latency.figures()["orders_per_second"],
        "ack_p50_ns": lat_pct["p50"],
        "ack_p90_ns": lat_pct["p90"],
        "ack_p99_ns": lat_pct["p99"],
        "ack_p99_9_ns": lat_pct["p99.9"],
        "ack_max_ns": lat_pct["max"],
        "ack_samples": lat_pct["count"],
        "latency_unanswered": latency.unanswered,
        "node_exit_code": exit_code,
        "node_stop_log": node_log.strip().splitlines()[-1] if node_log.strip() else "",
        "profile": profile_path or "",
        "cpu_count": os.cpu_count(),
    }
