"""`twinbook bench multicast`: the multicast feed's publisher rate, feed latency, and the
cost of adding subscribers (multicast against the TCP feed).

Runs only inside a private network namespace: `twinbook bench multicast` re-executes
itself under `unshare -rn` (tools/netns.py) and that child brings loopback up and does
the work; no packet is sent in the host's namespace.

1. Publisher: the seeded mixed workload (replica/workload.py) is applied to an Exchange
   with book updates beforehand; the timed loop is the publisher's whole path per record
   (encode the market data, window, pack, one send per packet to the group), with a
   commit batch of `batch_records` records between sends, as the primary's group commit
   produces. Messages/s and packets/s.
2. Latency: a real primary (durability none, so the journal's fsync does not dominate)
   with multicast on; clients send orders at `latency_rate` per second (tools/loadgen);
   a subscriber in this process stamps each message's arrival (time.time_ns); the
   latency of a message is arrival minus its record's timestamp, which the sequencer
   took from the same clock when it sequenced the command. p50/p99 in ns.
3. Subscribers: for 1, 4 and 16 subscriber processes, the publisher sends the same
   messages by multicast (one send per packet) and by the TCP feed's path (FeedCore: one
   encoded frame per update, written to every subscriber's socket); its CPU time per
   message (time.process_time, so the subscribers' own work does not count) for each,
   split into user and system time: on loopback the kernel delivers a multicast packet
   to every member socket inside the sender's system call (a NIC and switch do that on
   a real network), so the sender's system time grows with the subscribers even though
   its own work (user time: one encode, one pack, one send per packet) does not.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from replica.market_data import market_data_of
from replica.multicast import MulticastPublisherCore, session_id
from replica.workload import generate_commands
from statemachine import Exchange

GROUP = "239.255.77.1"
SUBSCRIBER_COUNTS = (1, 4, 16)
SUBSCRIBER_START_SECONDS = 10.0
SUBSCRIBER_DRAIN_SECONDS = 10.0

_MULTICAST_SUBSCRIBER = """
import socket, sys
group, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind((group, port))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
sock.settimeout(%(drain)s)
print("ready", flush=True)
packets = 0
try:
    while True:
        data = sock.recv(65536)
        if len(data) == 20 and data[18:20] == b"\\xff\\xff":
            break
        packets += 1
except socket.timeout:
    pass
print(packets, flush=True)
""" % {"drain": SUBSCRIBER_DRAIN_SECONDS}

_TCP_SUBSCRIBER = """
import socket, sys

from tools.latency import percentile
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.settimeout(%(drain)s)
print("ready", flush=True)
total = 0
try:
    while True:
        data = sock.recv(1 << 20)
        if not data:
            break
        total += len(data)
except socket.timeout:
    pass
print(total, flush=True)
""" % {"drain": SUBSCRIBER_DRAIN_SECONDS}


def _market_data(records: int, seed: int) -> list:
    exchange = Exchange(book_updates=True)
    return [market_data_of(exchange.apply(sequence, sequence * 1000, command))
            for sequence, command in enumerate(generate_commands(records, seed), 1)]


def _sender(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.connect((GROUP, port))
    return sock


def _cpu_ns() -> tuple[int, int]:
    """(user, system) CPU time of this process so far, in ns."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime * 1e9), round(usage.ru_stime * 1e9)


def _cpu_figures(before: tuple[int, int], messages: int) -> dict:
    user, system = _cpu_ns()
    return {"publisher_user_cpu_ns_per_message": round((user - before[0]) / messages),
            "publisher_system_cpu_ns_per_message": round((system - before[1]) / messages)}


def _publish(market_data: list, sock: socket.socket, batch_records: int, packet_bytes_max: int) -> tuple[int, int]:
    """The publisher's path for every record; returns (process CPU ns, packets)."""
    core = MulticastPublisherCore(session_id(1), 1, packet_bytes_max=packet_bytes_max,
                                  window_messages_max=100_000, window_bytes_max=64 << 20)
    send = sock.send
    record_released = core.record_released
    take_packets = core.take_packets
    started = time.process_time_ns()
    for sequence, events in enumerate(market_data, 1):
        record_released(sequence, events)
        if not sequence % batch_records:
            for packet in take_packets():
                _send_retrying(send, packet)
    for packet in take_packets():
        _send_retrying(send, packet)
    elapsed = time.process_time_ns() - started
    _send_retrying(send, core.end_of_session_packet())
    return elapsed, core.packets_published


def _send_retrying(send, packet: bytes) -> None:
    # A full socket buffer (ENOBUFS/EAGAIN) under a burst: wait for it instead of losing
    # the packet, so every variant sends every packet.
    for _ in range(1000):
        try:
            send(packet)
            return
        except (BlockingIOError, OSError):
            time.sleep(0.0001)
    raise RuntimeError("the multicast socket stayed full")


def publisher_rate(market_data: list, batch_records: int, packet_bytes_max: int) -> dict:
    port = 31000
    with _sender(port) as sock:
        started = time.perf_counter_ns()
        _, packets = _publish(market_data, sock, batch_records, packet_bytes_max)
        elapsed = time.perf_counter_ns() - started
    messages = len(market_data)
    return {
        "publisher_messages_per_second": round(messages / elapsed * 1e9),
        "publisher_packets_per_second": round(packets / elapsed * 1e9),
        "publisher_ns_per_message": round(elapsed / messages),
        "messages_per_packet": round(messages / packets, 1),
    }


def _start(code: str, *arguments: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code, *arguments], stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("a benchmark subscriber did not start")
    return process


def subscriber_scaling(market_data: list, batch_records: int, packet_bytes_max: int) -> dict:
    from replica.feed import FeedCore

    figures = {}
    messages = len(market_data)
    for count in SUBSCRIBER_COUNTS:
        port = 31100 + count
        subscribers = [_start(_MULTICAST_SUBSCRIBER, GROUP, str(port)) for _ in range(count)]
        with _sender(port) as sock:
            before = _cpu_ns()
            cpu_ns, packets = _publish(market_data, sock, batch_records, packet_bytes_max)
            split = _cpu_figures(before, messages)
        received = [int(process.communicate(timeout=SUBSCRIBER_DRAIN_SECONDS * 3)[0].strip() or 0)
                    for process in subscribers]
        figures[f"multicast_{count}"] = {
            "publisher_cpu_ns_per_message": round(cpu_ns / messages),
            "packets": packets,
            "received_share_min": round(min(received) / packets, 4),
            **split,
        }
        # The TCP feed's path: FeedCore encodes once per update, the frame goes to
        # every subscriber's socket.
        listener = socket.create_server(("127.0.0.1", 0))
        tcp_port = listener.getsockname()[1]
        subscribers = [_start(_TCP_SUBSCRIBER, str(tcp_port)) for _ in range(count)]
        connections = [listener.accept()[0] for _ in range(count)]
        exchange = Exchange(book_updates=True)
        feed = FeedCore(exchange)
        symbols = sorted({event.symbol for events in market_data for event in events})
        # Every subscriber follows every symbol (what a multicast subscriber receives).
        for subscriber_id in range(count):
            feed.subscriber_opened(subscriber_id)
            feed.subscriptions[subscriber_id] = set(symbols)
        for symbol in symbols:
            feed.by_symbol[symbol] = set(range(count))
        before = _cpu_ns()
        started = time.process_time_ns()
        for sequence, events in enumerate(market_data, 1):
            if events:
                feed.publish(sequence, events)
            if not sequence % batch_records:
                for subscriber_id, frames in feed.take_outbox().items():
                    connections[subscriber_id].sendall(b"".join(frames))
        for subscriber_id, frames in feed.take_outbox().items():
            connections[subscriber_id].sendall(b"".join(frames))
        cpu_ns = time.process_time_ns() - started
        split = _cpu_figures(before, messages)
        for connection in connections:
            connection.close()
        listener.close()
        received = [int(process.communicate(timeout=SUBSCRIBER_DRAIN_SECONDS * 3)[0].strip() or 0)
                    for process in subscribers]
        figures[f"tcp_{count}"] = {"publisher_cpu_ns_per_message": round(cpu_ns / messages),
                                   "bytes_per_subscriber": min(received), **split}
    return figures


def feed_latency(rate: float, seconds: float, workdir: str) -> dict:
    """Command sequenced -> message received by a subscriber, through a real primary."""
    import asyncio

    import journal
    from replica.multicast_client import MulticastSubscriber
    from tools.loadgen import LoadParams, run_load

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = os.path.join(workdir, "node")
    config_path = os.path.join(workdir, "node.toml")
    port = 31200
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write("[node]\nhost = \"127.0.0.1\"\ndurability = \"none\"\nclient_port = 0\nfeed_port = 0\n"
                     "replication_port = 0\nadmin_port = 0\n[limits]\nmessages_per_second = 100000000\n"
                     "burst_messages = 100000000\n"
                     f"[multicast]\ngroup = \"{GROUP}\"\nport = {port}\nretransmit_port = 0\n"
                     # The multicast feed is what is measured; the control plane (unused here) is plain.
                     "[tls]\nenabled = false\n")
    environment = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(os.path.join(workdir, "node.log"), "ab")
    node = subprocess.Popen([sys.executable, "-c", "from tools.cli import main; main()", "primary", "--data", data,
                             "--config", config_path], stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        info = None
        deadline = time.monotonic() + 30
        while info is None and time.monotonic() < deadline:
            try:
                with open(os.path.join(data, "node.json"), encoding="utf-8") as handle:
                    candidate = json.load(handle)
                info = candidate if candidate.get("pid") == node.pid else None
            except (OSError, ValueError):
                time.sleep(0.02)
        if info is None:
            raise RuntimeError("the primary did not start")
        arrivals: dict[int, int] = {}

        def on_message(sequence: int, updates: list) -> None:
            arrivals[sequence] = time.time_ns()

        async def run() -> None:
            subscriber = MulticastSubscriber(GROUP, port, retransmit=[tuple(info["retransmit"])],
                                             snapshot_endpoints=[tuple(info["feed"])], symbols=["AAPL", "MSFT"],
                                             on_message=on_message)
            task = asyncio.ensure_future(subscriber.run(seconds=seconds + 5))
            await asyncio.sleep(0.3)
            await run_load(LoadParams(endpoint=tuple(info["client"]), clients=2, rate=rate, seconds=seconds))
            await asyncio.sleep(0.5)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        asyncio.run(run())
    finally:
        node.terminate()
        node.wait(timeout=30)
        log.close()
    latencies = []
    for record in journal.read_records(os.path.join(data, "journal")):
        arrival = arrivals.get(record.sequence)
        if arrival is not None and record.sequence > 10:
            latencies.append(arrival - record.timestamp_ns)
    latencies.sort()
    return {"latency_rate_per_second": rate, "latency_messages": len(latencies),
            "feed_latency_p50_ns": percentile(latencies, 0.50, 0), "feed_latency_p99_ns": percentile(latencies, 0.99, 0)}


def run_multicast_benchmark(records: int, seed: int, batch_records: int, packet_bytes_max: int,
                            latency_rate: float, latency_seconds: float, workdir: str | None) -> dict:
    market_data = _market_data(records, seed)
    figures = {"records": records, "seed": seed, "batch_records": batch_records,
               "packet_bytes_max": packet_bytes_max}
    figures.update(publisher_rate(market_data, batch_records, packet_bytes_max))
    directory = tempfile.mkdtemp(prefix="twinbook-bench-multicast-", dir=workdir)
    try:
        figures.update(feed_latency(latency_rate, latency_seconds, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    figures["subscribers"] = subscriber_scaling(market_data[: min(records, 200_000)], batch_records, packet_bytes_max)
    return figures
