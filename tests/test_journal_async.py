"""commit_async: the fdatasync runs on a thread, overlapping commits keep their order
and share syncs, and the durable sequence only ever covers what a finished sync
covered."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import time

import pytest

import journal
import journal.writer
from journal import JournalClosedError, JournalIOError, JournalWriter
from journal.format import SEGMENT_HEADER_SIZE_BYTES

CLUSTER = 42
BODY = b"b" * 10
FRAME_SIZE_BYTES = 32 + len(BODY)


def test_overlapping_commits_advance_durable_only_after_the_covering_sync(tmp_path, monkeypatch):
    finished_sizes = [SEGMENT_HEADER_SIZE_BYTES]
    syncs_started = []

    def slow_fdatasync_and_close(fd):
        try:
            size = os.fstat(fd).st_size  # what this sync covers
            syncs_started.append(size)
            time.sleep(0.005)
            os.fdatasync(fd)
            finished_sizes.append(size)
        finally:
            os.close(fd)

    monkeypatch.setattr(journal.writer, "_fdatasync_and_close", slow_fdatasync_and_close)

    def covered():
        return (max(finished_sizes) - SEGMENT_HEADER_SIZE_BYTES) // FRAME_SIZE_BYTES

    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability="always")
        generator = random.Random(11)
        commits = []
        durable_seen = 0
        for _ in range(40):
            for _ in range(generator.randint(1, 5)):
                writer.append(0, 0, BODY)
            commits.append((writer.last_sequence, asyncio.ensure_future(writer.commit_async())))
            await asyncio.sleep(generator.choice([0, 0, 0.001, 0.003]))
            assert writer.durable_sequence <= covered()
            assert writer.durable_sequence >= durable_seen
            durable_seen = writer.durable_sequence
        for target, commit in commits:
            durable = await commit
            assert durable >= target
            assert writer.durable_sequence <= covered()
        assert writer.durable_sequence == writer.last_sequence
        writer.close()
        return len(commits)

    commit_count = asyncio.run(scenario())
    assert len(syncs_started) < commit_count  # overlapping commits shared syncs
    assert [r.sequence for r in journal.read_records(tmp_path)] == list(range(1, covered() + 1))


def test_commit_async_across_segment_rolls(tmp_path):
    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability="always", segment_size_bytes_max=400)
        pending = []
        for round_number in range(30):
            for _ in range(round_number % 7 + 1):
                writer.append(0, round_number, BODY)
            pending.append(asyncio.ensure_future(writer.commit_async()))
            if round_number % 3 == 0:
                await asyncio.sleep(0)
        results = await asyncio.gather(*pending)
        assert results == sorted(results) and results[-1] == writer.last_sequence
        writer.close()
        return writer.last_sequence

    last = asyncio.run(scenario())
    assert [r.sequence for r in journal.read_records(tmp_path)] == list(range(1, last + 1))
    assert len(list(tmp_path.glob("*.journal"))) > 5


@pytest.mark.parametrize("durability", ["none", "interval"])
def test_commit_async_other_policies(tmp_path, durability):
    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability=durability, interval_ms=60_000)
        writer.append(0, 0, BODY)
        assert await writer.commit_async() == 1  # "none": written is all; "interval": first sync due
        writer.append(0, 0, BODY)
        durable = await writer.commit_async()
        assert durable == (2 if durability == "none" else 1)
        assert writer.sync() == 2
        writer.close()

    asyncio.run(scenario())


def failing_fdatasync_and_close(fd):
    os.close(fd)
    raise OSError(errno.EIO, "Input/output error")


def test_a_failed_fdatasync_fences_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(journal.writer, "_fdatasync_and_close", failing_fdatasync_and_close)

    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability="always")
        writer.append(0, 0, BODY)
        with pytest.raises(JournalIOError, match="fdatasync"):
            await writer.commit_async()
        assert writer.durable_sequence == 0
        with pytest.raises(JournalClosedError, match="failed earlier"):
            writer.append(0, 0, BODY)
        with pytest.raises(JournalClosedError):
            await writer.commit_async()
        writer.close()

    asyncio.run(scenario())
    # Reopening recovers what is really on disk.
    writer = JournalWriter.open(tmp_path, CLUSTER)
    assert writer.last_sequence == 1
    writer.close()


def test_a_failed_sync_commit_fences_the_writer(tmp_path, monkeypatch):
    writer = JournalWriter.open(tmp_path, CLUSTER, durability="always")

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    writer.append(0, 0, BODY)
    with pytest.raises(JournalIOError) as caught:
        writer.commit()
    assert caught.value.path == writer.segment_path
    with pytest.raises(JournalClosedError):
        writer.commit()
    writer.close()


def test_write_and_start_sync_writes_now_and_only_commit_async_makes_durable(tmp_path, monkeypatch):
    # The pipelined commit loop's first half: batch 2 is written and its sync started
    # while nothing is awaited; durable moves only when a sync that covers it ends.
    release_sync = []
    real = journal.writer._fdatasync_and_close

    def gated_fdatasync_and_close(fd):
        while not release_sync:
            time.sleep(0.001)
        real(fd)

    monkeypatch.setattr(journal.writer, "_fdatasync_and_close", gated_fdatasync_and_close)

    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability="always")
        for _ in range(3):
            writer.append(0, 0, BODY)
        assert writer.write_and_start_sync() == 3
        assert writer.written_sequence == 3 and writer.durable_sequence == 0
        assert os.path.getsize(writer.segment_path) == SEGMENT_HEADER_SIZE_BYTES + 3 * FRAME_SIZE_BYTES
        writer.append(0, 0, BODY)
        assert writer.write_and_start_sync() == 4  # a sync is running: written, no second sync yet
        await asyncio.sleep(0)
        assert writer.durable_sequence == 0  # the sync is held: nothing is durable
        release_sync.append(True)
        assert await writer.commit_async() == 4  # waits for the first sync, then one covering 4
        assert writer.durable_sequence == 4
        writer.close()

    asyncio.run(scenario())


def test_a_failed_sync_started_by_write_and_start_sync_fences_the_next_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(journal.writer, "_fdatasync_and_close", failing_fdatasync_and_close)

    async def scenario():
        writer = JournalWriter.open(tmp_path, CLUSTER, durability="always")
        writer.append(0, 0, BODY)
        writer.write_and_start_sync()
        for _ in range(5000):  # the sync fails meanwhile, awaited by nobody
            if writer._sync_task is None:
                break
            await asyncio.sleep(0.001)
        with pytest.raises((JournalIOError, JournalClosedError)):
            await writer.commit_async()
        assert writer.durable_sequence == 0
        writer.close()

    asyncio.run(scenario())
