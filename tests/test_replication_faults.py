"""Replication under faults, with real node processes on loopback: a network cut on the
link (sync mode pauses acknowledgements, `twinbook degrade` or the link's return releases
them), a corrupted frame (refused, never applied), a standby of another cluster (refused
for good)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest

import journal
from node_helpers import (  # noqa: F401
    HOST,
    async_admin,
    close_all,
    cluster,
    connect,
    journal_segments,
    link_proxies,
    node_server_ssl,
    place_orders,
    run,
    tls_config,
    twinbook_command,
    wait_caught_up,
    wait_identical_journals,
    wait_until,
)
from replica.protocol import encode_frame
from replica.replication import Accepted, Ack, Frames, Hello, LinkFrameReader, link_decoder
from replica.replication_server import STANDBY_ACK_TIMEOUT_SECONDS
from statemachine import AddInstrument, Exchange, PlaceOrder
from statemachine.codec import decode_command, encode_command
from statemachine.events import OrderAccepted

PAUSED_SECONDS = 0.8


async def poll(predicate, timeout: float, what: str):
    """Await `predicate()` (a coroutine function) returning something truthy, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            value = await predicate()
        except (OSError, asyncio.TimeoutError, ValueError):
            value = None
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def twinbook(*arguments: str, timeout: float = 20.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *twinbook_command(*arguments), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, output.decode(errors="replace")


def test_a_network_cut_pauses_acknowledgements_instead_of_losing_them(cluster, link_proxies):
    primary = cluster.primary("primary")
    proxy = link_proxies(primary.replication)
    standby = cluster.standby("standby", proxy.address)
    wait_caught_up(primary, standby)

    async def scenario():
        client = await connect(primary, "M1")
        try:
            assert type(await asyncio.wait_for(client.place("cut-0", "AAPL", "buy", "limit", 1, price=18990), 5)) is OrderAccepted

            # 1. The link stalls (nothing reaches the standby): journaled here, not acknowledged.
            proxy.pause()
            stalled = client.send_place("cut-1", "AAPL", "buy", "limit", 2, price=18991)
            done, _ = await asyncio.wait([stalled], timeout=PAUSED_SECONDS)
            assert not done, f"acknowledged while the standby could not have it: {stalled.result()}"
            async def journaled_not_released():
                status = await async_admin(primary, {"command": "status"})
                return status["durable_sequence"] == status["last_sequence"] > status["released_sequence"] and status

            status = await poll(journaled_not_released, 10, "cut-1 journaled and fsync'd by the primary")
            assert status["standby_durable_sequence"] == status["released_sequence"], status
            assert not stalled.done()
            # ... and `degrade` refuses while the link is up: the standby may still get it.
            code, output = await twinbook("degrade", f"{HOST}:{primary.admin_address[1]}", *primary.admin_arguments())
            assert code == 1 and "refusing" in output, output
            # 2. The link comes back: the held frames arrive, the ack follows.
            proxy.resume()
            assert type(await asyncio.wait_for(stalled, 5)) is OrderAccepted

            # 3. The link breaks (and stays broken): paused again, until the operator degrades.
            proxy.cut()

            async def detached():
                status = await async_admin(primary, {"command": "status"})
                return not status["standby_attached"] and status

            status = await poll(detached, 10, "the primary sees the standby gone")
            assert status["standby_required"] and not status["degraded"], status
            cut = client.send_place("cut-2", "AAPL", "buy", "limit", 3, price=18992)
            done, _ = await asyncio.wait([cut], timeout=PAUSED_SECONDS)
            assert not done, f"acknowledged without the standby in sync mode: {cut.result()}"
            code, output = await twinbook("degrade", f"{HOST}:{primary.admin_address[1]}", *primary.admin_arguments())
            assert code == 0 and '"degraded": true' in output, output
            assert type(await asyncio.wait_for(cut, 5)) is OrderAccepted
            status = await async_admin(primary, {"command": "status"})
            assert status["degraded"] and not status["standby_required"], status
            assert status["released_sequence"] == status["last_sequence"], status
            # Degraded, orders flow without the standby.
            assert type(await asyncio.wait_for(client.place("cut-3", "AAPL", "buy", "limit", 4, price=18993), 5)) is OrderAccepted

            # 4. The link returns: the standby catches up (the degraded stretch included) and
            #    sync mode holds again.
            proxy.restore()

            async def resynced():
                status = await async_admin(primary, {"command": "status"})
                return status["standby_attached"] and status["standby_required"] and not status["degraded"]

            await poll(resynced, 10, "the standby back and required")
            assert type(await asyncio.wait_for(client.place("cut-4", "AAPL", "buy", "limit", 5, price=18994), 5)) is OrderAccepted

            # 5. A silent partition that lasts (no FIN, no RST): the primary cuts off a
            #    standby that acknowledges nothing for STANDBY_ACK_TIMEOUT_SECONDS, so the
            #    operator can degrade; the link's return resynchronises as before.
            proxy.pause()
            silent = client.send_place("cut-5", "AAPL", "buy", "limit", 6, price=18995)
            status = await poll(detached, STANDBY_ACK_TIMEOUT_SECONDS + 5, "the silent standby cut off")
            assert not silent.done() and status["standby_required"], status
            code, output = await twinbook("degrade", f"{HOST}:{primary.admin_address[1]}", *primary.admin_arguments())
            assert code == 0 and '"degraded": true' in output, output
            assert type(await asyncio.wait_for(silent, 5)) is OrderAccepted
            proxy.resume()
            await poll(resynced, 15, "the standby back and required after the silent partition")
            assert type(await asyncio.wait_for(client.place("cut-6", "AAPL", "buy", "limit", 7, price=18996), 5)) is OrderAccepted
        finally:
            await close_all(client)

    run(scenario(), timeout=60)
    mine, theirs = wait_caught_up(primary, standby)
    assert theirs["state_digest"] == mine["state_digest"]
    wait_identical_journals(primary, standby)
    assert primary.depth("AAPL")["bids"][:7] == [[18990 + index, index + 1, 1] for index in range(6, -1, -1)]
    assert primary.log().count("DEGRADED") == 2 and "acknowledged nothing for" in primary.log()


# ---------------------------------------------------------------- a corrupted frame


def source_journal(path, records: int) -> list[journal.Record]:
    """A journal a fake primary serves: one instrument, then crossing limit orders."""
    with journal.JournalWriter.open(path, 1, durability="none") as writer:
        writer.append(0, 1_000, encode_command(AddInstrument("AAPL", 1, 1, 1000, 19000)))
        for index in range(records - 1):
            place = PlaceOrder("M1" if index % 2 else "M2", f"f{index}", "AAPL", "buy" if index % 3 else "sell",
                               "limit", 1 + index % 5, price=19000 + index % 11 - 5)
            writer.append(0, 2_000 + index, encode_command(place))
    return list(journal.read_records(path))


def digest_after(records: list[journal.Record]) -> int:
    exchange = Exchange(book_updates=True)
    for record in records:
        exchange.apply(record.sequence, record.timestamp_ns, decode_command(record.body))
    return exchange.state_digest()


async def next_link_message(reader: asyncio.StreamReader, frames: LinkFrameReader, backlog: list, timeout: float = 5.0):
    while not backlog:
        data = await asyncio.wait_for(reader.read(65536), timeout)
        if not data:
            return None
        backlog += [link_decoder.decode(payload) for payload in frames.feed(data)]
    return backlog.pop(0)


async def wait_ack(reader, frames, backlog, durable: int):
    while True:
        message = await next_link_message(reader, frames, backlog)
        assert message is not None, "the standby closed the link before acknowledging"
        if type(message) is Ack and message.durable_sequence >= durable and message.applied_sequence >= durable:
            return message


@pytest.mark.parametrize("where", ["body", "crc"])
def test_a_standby_refuses_a_corrupted_frame_and_never_applies_it(cluster, tmp_path, where):
    records = source_journal(tmp_path / "source", 400)
    good = 250
    first_frames = b"".join(journal.read_frames(tmp_path / "source", 1, good))
    rest_frames = b"".join(journal.read_frames(tmp_path / "source", good + 1, len(records)))
    corrupted = bytearray(rest_frames)
    # "body": a byte deep inside some record; "crc": the first frame's crc field.
    corrupted[len(corrupted) // 2 if where == "body" else 4] ^= 0x20
    corrupted = bytes(corrupted)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(8)
    fake_primary = listener.getsockname()[:2]
    standby = cluster.standby("standby", fake_primary)

    async def scenario():
        connections: asyncio.Queue = asyncio.Queue()

        async def handle(reader, writer):
            finished = asyncio.Event()
            await connections.put((reader, writer, finished))
            await finished.wait()

        server = await asyncio.start_server(handle, sock=listener, ssl=node_server_ssl())
        try:
            # First connection: good frames, then a corrupted batch.
            reader, writer, finished = await asyncio.wait_for(connections.get(), 10)
            frames, backlog = LinkFrameReader(), []
            hello = await next_link_message(reader, frames, backlog)
            assert type(hello) is Hello and hello.last_sequence == 0 and hello.cluster_id == 1
            writer.write(encode_frame(Accepted(0, 1, len(records))))
            writer.write(encode_frame(Frames(1, good, first_frames, good)))
            await wait_ack(reader, frames, backlog, good)
            writer.write(encode_frame(Frames(good + 1, len(records), corrupted, len(records))))
            while (message := await next_link_message(reader, frames, backlog)) is not None:
                assert type(message) is Ack and message.durable_sequence == good, message
            # The standby dropped the link without taking anything of the corrupted batch.
            status = await async_admin(standby, {"command": "status"})
            assert status["applied_sequence"] == status["durable_sequence"] == status["last_sequence"] == good, status
            assert status["state_digest"] == digest_after(records[:good])
            writer.close()
            finished.set()

            # It comes back from what is durable there; the good frames are taken.
            reader, writer, finished = await asyncio.wait_for(connections.get(), 10)
            frames, backlog = LinkFrameReader(), []
            hello = await next_link_message(reader, frames, backlog)
            assert type(hello) is Hello and (hello.last_sequence, hello.last_crc) == (good, records[good - 1].crc)
            writer.write(encode_frame(Accepted(0, good + 1, len(records))))
            writer.write(encode_frame(Frames(good + 1, len(records), rest_frames, len(records))))
            await wait_ack(reader, frames, backlog, len(records))
            status = await async_admin(standby, {"command": "status"})
            assert status["applied_sequence"] == len(records) and status["state_digest"] == digest_after(records)
            assert status["fatal"] is None and status["promotable"], status
            writer.close()
            finished.set()
        finally:
            server.close()

    run(scenario(), timeout=60)
    log = standby.log()
    assert "refusing frames from the primary" in log, log
    assert f"primary {fake_primary[0]}:{fake_primary[1]}" in log.split("refusing frames from the primary")[1], log
    standby.kill()
    assert journal_segments(standby) == {path.name: path.read_bytes() for path in (tmp_path / "source").glob("*.journal")}


# ---------------------------------------------------------------- another cluster


def test_a_standby_of_another_cluster_is_refused_for_good(cluster):
    # The Hello's own cluster check, behind TLS (with TLS on, another cluster's standby
    # never gets this far: tests/test_control_plane_tls.py), so both run without TLS.
    plain = {"enabled": False}
    primary = cluster.primary("primary", tls=plain)
    stranger = cluster.standby("stranger", primary.replication, cluster_id=2, tls=plain)
    status = wait_until(lambda: (lambda s: s["fatal"] and s)(stranger.status()), 10, what="the refusal")
    assert "cluster id 2" in status["fatal"] and not status["promotable"], status
    assert status["role"] == "standby" and status["applied_sequence"] == 0 and not status["primary_connected"]
    assert stranger.running  # it says why and waits for an operator; it does not retry
    mine = primary.status()
    assert not mine["standby_attached"] and not mine["standby_required"], mine
    assert "is not this cluster's" in primary.log()
    # The primary goes on acknowledging on its own (no standby of its cluster ever attached).
    async def place():
        client = await connect(primary, "M2")
        try:
            return await asyncio.wait_for(client.place("alone-1", "AAPL", "sell", "limit", 1, price=19010), 5)
        finally:
            await close_all(client)

    assert type(run(place())) is OrderAccepted
    assert stranger.status()["fatal"] == status["fatal"] and "refused this standby for good" in stranger.log()


# ---------------------------------------------------------------- promotion mid-batch


async def accept_and_send_everything(reader, writer, records, all_frames):
    """A fake primary's side of attaching a fresh standby: read its Hello, accept it, send
    every record in one Frames message; returns the link reader state."""
    frames, backlog = LinkFrameReader(), []
    hello = await next_link_message(reader, frames, backlog)
    assert type(hello) is Hello
    writer.write(encode_frame(Accepted(0, 1, len(records))))
    writer.write(encode_frame(Frames(1, len(records), all_frames, len(records))))
    await writer.drain()
    return frames, backlog


def test_promotion_applies_a_batch_the_link_journaled_but_had_not_applied(tmp_path, monkeypatch):
    """Promotion cancels the link task; if that lands while a batch is durable in the
    journal but not yet applied, the new primary must apply it first (found under load:
    `journal ends at N but recovery reached N - 1` and the promotion failed)."""
    from replica.config import default_config
    from replica.standby_node import StandbyNode

    records = source_journal(tmp_path / "source", 300)
    all_frames = b"".join(journal.read_frames(tmp_path / "source"))
    logs: list[str] = []

    async def scenario():
        gate, journaled = asyncio.Event(), asyncio.Event()

        async def commit_then_hold(self):
            durable = self.commit()  # written and fsync'd, like commit_async, then the await
            journaled.set()
            await gate.wait()
            return durable

        async def fake_primary(reader, writer):
            frames, backlog = await accept_and_send_everything(reader, writer, records, all_frames)
            while await next_link_message(reader, frames, backlog, timeout=30) is not None:
                pass

        server = await asyncio.start_server(fake_primary, HOST, 0, ssl=node_server_ssl())
        monkeypatch.setattr(journal.JournalWriter, "commit_async", commit_then_hold)
        node = StandbyNode(dataclasses.replace(default_config().with_ports(0), tls=tls_config()), str(tmp_path / "standby"),
                           server.sockets[0].getsockname()[:2], log=logs.append)
        await node.start()
        try:
            await asyncio.wait_for(journaled.wait(), 10)
            assert node.writer.last_sequence == len(records) and node.exchange.last_sequence == 0
            reply = await asyncio.wait_for(node.promote(), 10)
            assert reply["promoted"], (reply, logs)
            gate.set()
            status = node.status()
            assert status["role"] == "primary" and status["epoch"] == 1
            assert status["applied_sequence"] == status["last_sequence"] > len(records), status
        finally:
            gate.set()
            server.close()
            await asyncio.wait_for(node.stop(), 10)

    run(scenario(), timeout=60)
    assert any("left unapplied" in line for line in logs), logs


def test_the_standby_acks_a_batch_durable_before_applying_it_then_acks_it_applied(tmp_path):
    """The primary's release waits only for the standby's fdatasync: the first Ack of a
    batch says durable with nothing applied yet; the apply follows, acked apart. (That a
    standby promoted between the two applies everything first: the test above.)"""
    from replica.config import default_config
    from replica.standby_node import StandbyNode

    records = source_journal(tmp_path / "source", 300)
    all_frames = b"".join(journal.read_frames(tmp_path / "source"))
    acks: list = []

    async def scenario():
        applied_seen = asyncio.Event()

        async def fake_primary(reader, writer):
            frames, backlog = await accept_and_send_everything(reader, writer, records, all_frames)
            while True:
                message = await next_link_message(reader, frames, backlog, timeout=30)
                if message is None:
                    return
                if type(message) is Ack:
                    acks.append(message)
                    if message.applied_sequence == len(records):
                        applied_seen.set()

        server = await asyncio.start_server(fake_primary, HOST, 0, ssl=node_server_ssl())
        node = StandbyNode(dataclasses.replace(default_config().with_ports(0), tls=tls_config()), str(tmp_path / "standby"),
                           server.sockets[0].getsockname()[:2], log=lambda _line: None)
        await node.start()
        try:
            await asyncio.wait_for(applied_seen.wait(), 20)
        finally:
            server.close()
            await asyncio.wait_for(node.stop(), 10)

    run(scenario(), timeout=60)
    first = next(ack for ack in acks if ack.durable_sequence == len(records))
    assert first.applied_sequence == 0  # durable acknowledged before any record was applied
    assert acks.index(first) < next(index for index, ack in enumerate(acks) if ack.applied_sequence == len(records))


# ---------------------------------------------------------------- the link gone mid-batch


def test_a_link_lost_while_a_batch_is_journaled_is_dialled_again_under_uvloop(tmp_path, monkeypatch):
    """The primary vanishes while the standby fsyncs a batch. uvloop (what `twinbook`
    runs on) raises on a write to a closed transport where asyncio only logs; the Ack
    after the fsync used to raise there and kill the link task, leaving a standby that
    followed nobody and never dialled again (found by the SIGKILL loops of
    tests/test_fault_loops.py). It must apply the batch and dial again."""
    import uvloop

    from replica.config import default_config
    from replica.standby_node import StandbyNode

    records = source_journal(tmp_path / "source", 300)
    all_frames = b"".join(journal.read_frames(tmp_path / "source"))
    logs: list[str] = []
    original_commit = journal.JournalWriter.commit_async

    async def scenario():
        hellos: asyncio.Queue = asyncio.Queue()
        node = None

        async def commit_while_the_link_dies(self):
            durable = await original_commit(self)
            if node is not None and node._link_writer is not None and not node._link_writer.is_closing():
                node._link_writer.transport.abort()
                await asyncio.sleep(0.05)  # the close completes during the "fsync"
            return durable

        async def fake_primary(reader, writer):
            frames, backlog = LinkFrameReader(), []
            hello = await next_link_message(reader, frames, backlog)
            await hellos.put(hello)
            if hello.last_sequence == 0:
                writer.write(encode_frame(Accepted(0, 1, len(records))))
                writer.write(encode_frame(Frames(1, len(records), all_frames, len(records))))
                await writer.drain()
            while await next_link_message(reader, frames, backlog, timeout=30) is not None:
                pass

        server = await asyncio.start_server(fake_primary, HOST, 0, ssl=node_server_ssl())
        monkeypatch.setattr(journal.JournalWriter, "commit_async", commit_while_the_link_dies)
        node = StandbyNode(dataclasses.replace(default_config().with_ports(0), tls=tls_config()), str(tmp_path / "standby"),
                           server.sockets[0].getsockname()[:2], log=logs.append)
        await node.start()
        try:
            first = await asyncio.wait_for(hellos.get(), 10)
            again = await asyncio.wait_for(hellos.get(), 10)
            assert (first.last_sequence, again.last_sequence) == (0, len(records)), (first, again, logs)
            assert again.last_crc == records[-1].crc
            assert node.exchange.last_sequence == len(records) and node.failure is None, logs
            assert node.exchange.state_digest() == digest_after(records)
        finally:
            server.close()
            await asyncio.wait_for(node.stop(), 10)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 60))
    finally:
        loop.close()


# ---------------------------------------------------------------- the primary's own journal


def test_a_primary_whose_journal_rots_under_it_stops_naming_the_file_when_a_standby_catches_up(cluster):
    # A bit flips at rest in the running primary's first segment. Nothing reads it
    # until a standby from nothing catches up: the read fails its check twice (not a
    # read error of the moment), and the primary stops with exit 3 naming the file and
    # offset, rather than treat the bad record as the end of its journal or serve it.
    from journal.format import SEGMENT_HEADER_SIZE_BYTES

    primary = cluster.primary("primary")
    segment = sorted((primary.data_dir / "journal").glob("*.journal"))[0]
    data = bytearray(segment.read_bytes())
    assert len(data) > SEGMENT_HEADER_SIZE_BYTES + 16, "the primary journaled its start-up records"
    data[SEGMENT_HEADER_SIZE_BYTES + 12] ^= 0x04  # inside the first record's payload
    with open(segment, "r+b") as handle:
        handle.write(bytes(data))
    cluster.standby("standby", primary.replication)
    assert primary.process.wait(timeout=20) == 3, primary.log()
    log = primary.log()
    assert segment.name in log and f"byte offset {SEGMENT_HEADER_SIZE_BYTES}" in log, log
    assert "Traceback" not in log, log


def test_the_primary_drops_a_standby_link_whose_peer_is_gone_instead_of_raising():
    """Under uvloop a write to a transport its peer reset raises. The commit loop sends
    each batch's frames to the standby before `StandbyLink.run` has noticed the reset;
    that write must drop the link, never raise into (and so stop) the commit loop."""
    import socket as socket_module
    import struct
    import time
    import types

    import uvloop

    from replica.replication import StandbyLinkCore
    from replica.replication_server import StandbyLink

    logs: list[str] = []

    async def scenario():
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()
        finished = asyncio.Event()

        async def handle(reader, writer):
            accepted.set_result((reader, writer))
            await finished.wait()

        server = await asyncio.start_server(handle, HOST, 0)
        try:
            _, standby_writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            reader, writer = await asyncio.wait_for(accepted, 5)
            node = types.SimpleNamespace(log=logs.append, core=types.SimpleNamespace(released_sequence=0))
            link = StandbyLink(node, reader, writer)
            # Attached at sequence 1 and caught up: live, as `run` leaves it.
            link.core = StandbyLinkCore(1, time.monotonic_ns(), 3_000_000_000)
            assert link.core.catch_up_range(0) is None
            assert link.live
            # The standby dies: a reset, which closes the primary's transport.
            standby_writer.get_extra_info("socket").setsockopt(
                socket_module.SOL_SOCKET, socket_module.SO_LINGER, struct.pack("ii", 1, 0))
            standby_writer.transport.abort()
            await asyncio.sleep(0.1)
            assert writer.is_closing()
            link.send_frames(1, 1, b"")  # what the commit loop does next
            assert not link.live
        finally:
            finished.set()
            server.close()
            await asyncio.sleep(0)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        loop.close()


def test_a_standby_link_whose_write_fails_is_dropped_not_raised_into_the_commit_loop():
    """A transport that is not yet closing but fails the write itself (a connection
    error, or uvloop's RuntimeError on a handle closed underneath) drops the link too."""
    import time
    import types

    from replica.replication import StandbyLinkCore
    from replica.replication_server import StandbyLink

    for failure in (ConnectionResetError(104, "Connection reset by peer"), RuntimeError("the handler is closed")):
        closed: list[bool] = []

        def write(data: bytes, failure=failure) -> None:
            raise failure

        writer = types.SimpleNamespace(
            get_extra_info=lambda name: ("127.0.0.1", 1), is_closing=lambda: False, write=write,
            close=lambda: closed.append(True),
        )
        logs: list[str] = []
        node = types.SimpleNamespace(log=logs.append, core=types.SimpleNamespace(released_sequence=0))
        link = StandbyLink(node, None, writer)
        link.core = StandbyLinkCore(1, time.monotonic_ns(), 3_000_000_000)
        assert link.core.catch_up_range(0) is None
        link.send_frames(1, 1, b"")  # what the commit loop does next
        assert not link.live
        assert closed == [True]
        assert any("write failed" in line and type(failure).__name__ in line for line in logs)


def test_a_standby_whose_journal_rots_under_it_stops_naming_the_file_instead_of_blaming_the_primary(
        cluster, link_proxies):
    # A bit flips at rest in the running standby's newest record. Its next hello reads
    # its last record back: it fails its check twice, which is corruption of its
    # own journal, so the standby stops with exit 3 naming the file. (It used to log
    # "refusing frames from the primary" and dial again for ever.)
    primary = cluster.primary("primary")
    proxy = link_proxies(primary.replication)
    standby = cluster.standby("standby", proxy.address)
    assert run(place_orders(primary, 50), timeout=60) == 50
    wait_caught_up(primary, standby)
    segment = sorted((standby.data_dir / "journal").glob("*.journal"))[-1]
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0x04  # inside the last record's payload
    with open(segment, "r+b") as handle:
        handle.write(bytes(data))
    proxy.drop_connections()
    assert standby.process.wait(timeout=20) == 3, standby.log()
    log = standby.log()
    assert segment.name in log and "journal failed, stopping" in log, log
    assert "refusing frames from the primary" not in log and "Traceback" not in log, log
