"""Rejoin by the epoch boundary, with real processes and journals on loopback.

An old primary whose unacknowledged tail is far longer than any window of recent
records (20,000 records here) rejoins the promoted standby: its chain matches at the
new primary's epoch boundary, so everything after it goes to a `.divergent` file and
it converges to the new primary's digest. A node whose chain differs before the
boundary is refused for good, naming the sequence and `twinbook standby --rebuild`,
and nothing of its journal is cut.
"""

from __future__ import annotations

import journal
from node_helpers import (  # noqa: F401
    cluster,
    evidence_files,
    place_orders,
    run,
    wait_caught_up,
    wait_identical_journals,
    wait_until,
)
from replica.link_journal import count_frames
from test_replication_failover import promote

TAIL_RECORDS = 20_000


def journal_ahead(node, records: int) -> int:
    """Append `records` records the old primary journaled but nobody acknowledged: the
    bodies of its own last commands again (their replay is deterministic: duplicates
    are business rejections). Returns the journal's new last sequence."""
    directory = node.data_dir / "journal"
    summary = journal.inspect(directory)
    tail = list(journal.read_tuples(directory, max(1, summary["last_sequence"] - 199)))
    writer = journal.JournalWriter.open(directory, summary["cluster_id"], durability="none")
    try:
        timestamp_ns = tail[-1][2]
        for index in range(records):
            _sequence, epoch, _timestamp_ns, body = tail[index % len(tail)]
            timestamp_ns += 1_000
            writer.append(epoch, timestamp_ns, body)
        writer.commit()
        return writer.last_sequence
    finally:
        writer.close()


def test_an_old_primary_with_a_20000_record_unacknowledged_tail_rejoins_and_converges(cluster):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    assert run(place_orders(primary, 300), timeout=60) == 300
    common = wait_caught_up(primary, standby)[0]["last_sequence"]
    primary.kill()
    reply = promote(standby)
    assert reply["promoted"] and reply["epoch"] == 1, reply
    # The new primary's epoch goes on: orders the old primary never saw.
    assert run(place_orders(standby, 50, prefix="after"), timeout=60) == 50

    old_last = journal_ahead(primary, TAIL_RECORDS)
    assert old_last == common + TAIL_RECORDS
    primary.start_standby(standby.replication)
    new, old = wait_caught_up(standby, primary, timeout=120)
    assert old["role"] == "standby" and old["epoch"] == 1 and old["divergence"] is None
    assert old["state_digest"] == new["state_digest"]
    wait_identical_journals(primary, standby)
    (divergent,) = evidence_files(primary)
    assert count_frames(divergent.read_bytes()) == TAIL_RECORDS
    assert f"diverged from the primary after sequence {common}" in primary.log()


def test_a_chain_that_differs_before_the_boundary_is_refused_naming_the_sequence_and_the_rebuild(cluster):
    primary = cluster.primary("primary")
    assert run(place_orders(primary, 100), timeout=60) == 100
    # Another history from the first record on, in the same epoch: not a failover's tail.
    stranger = cluster.primary("stranger")
    assert run(place_orders(stranger, 40, prefix="other"), timeout=60) == 40
    stranger_last = stranger.status()["last_sequence"]
    assert stranger.terminate() == 0
    stranger.start_standby(primary.replication)
    status = wait_until(lambda: (lambda s: s["fatal"] and s)(stranger.status()), 15, what="the refusal")
    assert f"sequence {stranger_last}" in status["fatal"] and "twinbook standby --rebuild" in status["fatal"]
    assert not status["promotable"] and not evidence_files(stranger)
    assert stranger.status()["last_sequence"] == stranger_last
    # The documented way out: `twinbook standby --rebuild` keeps the old directory
    # aside, untouched, and follows the primary from nothing.
    assert stranger.terminate() == 0
    old_segments = sorted(path.name for path in (stranger.data_dir / "journal").glob("*.journal"))
    arguments = stranger._arguments
    stranger._arguments = lambda: arguments() + ["--rebuild"]
    stranger.start_standby(primary.replication)
    new, rebuilt = wait_caught_up(primary, stranger)
    assert rebuilt["state_digest"] == new["state_digest"] and not rebuilt["fatal"]
    (kept,) = stranger.data_dir.parent.glob(f"{stranger.data_dir.name}.diverged-*")
    assert sorted(path.name for path in (kept / "journal").glob("*.journal")) == old_segments
    assert journal.inspect(kept / "journal")["last_sequence"] == stranger_last
    assert "the old data directory is kept as" in stranger.log()
