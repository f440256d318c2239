"""Replication decisions without processes: decide_hello, DigestHistory, the link's
frame splitter, the epoch fence of JournalWriter.append_frames, and WatchdogCore."""

from __future__ import annotations

import pytest

import journal
from replica.protocol import FrameTooLargeError, encode_frame
from replica.replication import (
    DIGEST_HISTORY_MAX,
    LINK_FRAME_PAYLOAD_BYTES_MAX,
    REPLICATION_PROTOCOL_VERSION,
    Accepted,
    Ack,
    DigestHistory,
    Diverged,
    Frames,
    Hello,
    LinkFrameReader,
    Refused,
    decide_hello,
    link_decoder,
)
from replica.watchdog import WatchdogCore

CLUSTER = 7


# ---------------------------------------------------------------- decide_hello


def primary_journal(last: int, epoch_starts: dict[int, int] | None = None) -> dict[int, tuple[int, int]]:
    """A primary's records 1..last as {sequence: (epoch, chain value)} (made up); epoch
    `e` starts at `epoch_starts[e]`."""
    starts = sorted((epoch_starts or {0: 1}).items())
    journal_records = {}
    for sequence in range(1, last + 1):
        epoch = max(epoch for epoch, first in starts if first <= sequence)
        journal_records[sequence] = (epoch, 1000 + sequence)
    return journal_records


def hello_at(last_sequence: int, *, same: bool = True, epoch: int = 0, cluster_id: int = CLUSTER,
             version: int = REPLICATION_PROTOCOL_VERSION) -> Hello:
    """A standby's hello: its last record is the primary's (`same`) or its own."""
    last_crc = (1000 if same else 5000) + last_sequence if last_sequence else 0
    return Hello(version, cluster_id, epoch, last_sequence, last_crc)


def decide(hello: Hello, *, primary_last: int, epoch: int = 0, first_sequence: int = 1,
           epoch_starts: dict[int, int] | None = None, start_sequences=()):
    records = primary_journal(primary_last, epoch_starts)

    def lookup(sequences):
        assert sequences == sorted(sequences)
        return {sequence: records[sequence][1] for sequence in sequences
                if sequence in records and sequence >= first_sequence}

    def boundary(at_most_epoch, up_to):
        found = (0, 0)
        for sequence in range(1, up_to + 1):
            if records[sequence][0] > at_most_epoch:
                break
            found = (sequence, records[sequence][1])
        return found

    return decide_hello(hello, cluster_id=CLUSTER, epoch=epoch, first_sequence=first_sequence,
                        last_sequence=primary_last, crc_lookup=lookup, boundary_lookup=boundary,
                        start_sequences=start_sequences)


def test_an_empty_standby_is_accepted_from_the_first_record():
    decision = decide(hello_at(0), primary_last=50)
    assert decision.reply == Accepted(0, 1, 50) and decision.start_sequence == 1
    assert not decision.primary_must_step_down


def test_an_empty_standby_of_a_journal_that_starts_later_is_refused_for_good():
    decision = decide(hello_at(0), primary_last=50, first_sequence=20)
    assert type(decision.reply) is Refused and decision.reply.fatal
    assert "snapshot" in decision.reply.reason


def test_a_standby_whose_tail_matches_is_accepted_after_its_last_record():
    decision = decide(hello_at(30, epoch=1), primary_last=50, epoch=1)
    assert decision.reply == Accepted(1, 31, 50) and decision.start_sequence == 31
    # A caught-up standby starts right after the primary's last record.
    decision = decide(hello_at(50), primary_last=50)
    assert decision.reply == Accepted(0, 51, 50)


def test_an_old_primary_of_a_lower_epoch_rejoins_like_any_standby():
    decision = decide(hello_at(30, epoch=0), primary_last=50, epoch=3, epoch_starts={0: 1, 3: 41})
    assert type(decision.reply) is Accepted and not decision.primary_must_step_down


@pytest.mark.parametrize("tail_records", [1, 511, 513, 20_000, 3_000_000])
def test_an_old_primary_cuts_back_to_the_new_primarys_epoch_start_whatever_its_tail_length(tail_records):
    # Epoch 1 was the old primary's; the new primary's epoch 2 starts (its epoch-start
    # record) at 3_563. The old primary's unacknowledged records after 3_562 differ, so
    # many of them that no window of recent pairs could describe the tail.
    decision = decide(hello_at(3_562 + tail_records, same=False, epoch=1), primary_last=4_000, epoch=2,
                      epoch_starts={1: 1, 2: 3_563})
    assert decision.reply == Diverged([(3_562, 1000 + 3_562)], decision.reply.reason)
    assert "3562" in decision.reply.reason and decision.start_sequence == 0


def test_a_standby_ahead_of_the_primary_cuts_back_to_the_primary_end():
    # The old primary wrote records 51..55 that the new primary never received.
    decision = decide(hello_at(55), primary_last=50)
    assert type(decision.reply) is Diverged and decision.reply.points == [(50, 1050)]


def test_a_standby_with_nothing_in_common_from_the_first_record_diverges_entirely():
    # Every record of the primary is of epoch 2; the standby's are all of epoch 1.
    decision = decide(hello_at(20, same=False, epoch=1), primary_last=50, epoch=2, epoch_starts={2: 1})
    assert type(decision.reply) is Diverged and decision.reply.points == [(0, 0)]


def test_a_standby_holding_records_its_restarted_primary_lost_may_cut_back_to_the_restart():
    # Seed 34: the primary streamed 1019..1031 before they were durable, crashed, lost
    # them, restarted at 1018 (same epoch) and wrote others there. The standby's chain
    # at the epoch boundary (its own last record) differs, but at the start it matches.
    decision = decide(hello_at(1031, same=False, epoch=1), primary_last=2195, epoch=1, epoch_starts={0: 1, 1: 791},
                      start_sequences=[3, 790, 1018, 1043, 1191])
    assert decision.reply == Diverged([(1018, 2018), (790, 1790), (3, 1003)], decision.reply.reason)


def test_a_primary_that_lost_records_its_standby_holds_offers_the_standbys_own_start_points():
    # Seed 90106: the standby was the primary that restarted (its `primary-starts` has
    # 1200), the node now primary holds the tail it lost. The standby's point is kept
    # where the chains agree, and dropped where they do not.
    hello = Hello(REPLICATION_PROTOCOL_VERSION, CLUSTER, 0, 1841, 7, [(900, 1900), (1200, 2200), (1300, 99)])
    decision = decide(hello, primary_last=1852, epoch=0)
    assert decision.reply == Diverged([(1200, 2200), (900, 1900)], decision.reply.reason)


def test_a_chain_that_differs_before_the_epoch_boundary_needs_an_operator_and_names_the_rebuild():
    # Same epoch, same sequence, another chain value: no failover writes that.
    decision = decide(hello_at(40, same=False, epoch=2), primary_last=50, epoch=2, epoch_starts={1: 1, 2: 30})
    assert type(decision.reply) is Refused and decision.reply.fatal
    assert "sequence 40" in decision.reply.reason and "twinbook standby --rebuild" in decision.reply.reason


def test_another_cluster_and_another_protocol_are_refused_for_good():
    decision = decide(hello_at(10, cluster_id=CLUSTER + 1), primary_last=50)
    assert type(decision.reply) is Refused and decision.reply.fatal and "cluster" in decision.reply.reason
    assert not decision.primary_must_step_down
    decision = decide(hello_at(10, version=REPLICATION_PROTOCOL_VERSION + 1), primary_last=50)
    assert type(decision.reply) is Refused and decision.reply.fatal and "protocol" in decision.reply.reason


def test_a_standby_of_a_higher_epoch_makes_the_primary_step_down():
    decision = decide(hello_at(10, epoch=2), primary_last=50, epoch=1)
    assert decision.primary_must_step_down
    assert type(decision.reply) is Refused and decision.reply.fatal and "epoch" in decision.reply.reason


def test_a_standby_checks_its_own_chain_at_the_boundary_before_cutting():
    from replica.standby import CheckChain, CutTail, LinkRefused, StandbyCore
    from statemachine import Exchange

    core = StandbyCore(Exchange(), CLUSTER)
    check = core.first_reply(Diverged([(3_562, 4_562), (1_000, 2_000)], "tail differs"))
    assert check == CheckChain(((3_562, 4_562), (1_000, 2_000)), "tail differs")
    assert core.confirm_cut(check, {3_562: 4_562, 1_000: 2_000}) == CutTail(3_562, "tail differs")
    assert core.confirm_cut(check, {3_562: 7, 1_000: 2_000}) == CutTail(1_000, "tail differs")
    assert core.promotable
    refusal = core.confirm_cut(check, {3_562: 7, 1_000: 8})
    assert type(refusal) is LinkRefused and refusal.fatal and not core.promotable
    assert "sequence 3562" in refusal.reason and "twinbook standby --rebuild" in refusal.reason
    assert type(StandbyCore(Exchange(), CLUSTER).confirm_cut(check, {})) is LinkRefused
    # Cutting everything (boundary 0) needs no chain value.
    whole = CheckChain(((0, 0),), "nothing in common")
    assert StandbyCore(Exchange(), CLUSTER).confirm_cut(whole, {}) == CutTail(0, "nothing in common")


# ---------------------------------------------------------------- digests and framing


def test_digest_history_compares_only_held_sequences_and_forgets_old_ones():
    history = DigestHistory()
    assert history.latest == (0, 0) and history.compare(0, 123) is None
    for index in range(1, DIGEST_HISTORY_MAX + 6):
        history.record(index * 1024, index)
    assert history.latest == ((DIGEST_HISTORY_MAX + 5) * 1024, DIGEST_HISTORY_MAX + 5)
    assert history.compare(1024, 1) is None  # forgotten
    assert history.compare(10 * 1024, 10) is True
    assert history.compare(10 * 1024, 11) is False
    assert history.compare(10 * 1024 + 1, 10) is None


def test_link_frames_carry_a_whole_journal_batch_and_split_anywhere():
    frames_bytes = bytes(range(256)) * (5 * 1024)  # 1.25 MiB: far above a client frame
    messages = [Frames(1, 5000, frames_bytes, 4000), Ack(10, 9, 0, 0), Accepted(2, 11, 5000)]
    stream = b"".join(encode_frame(message) for message in messages)
    reader = LinkFrameReader()
    decoded = []
    for start in range(0, len(stream), 70_001):
        decoded += [link_decoder.decode(payload) for payload in reader.feed(stream[start:start + 70_001])]
    assert decoded == messages
    with pytest.raises(FrameTooLargeError):
        LinkFrameReader().feed((LINK_FRAME_PAYLOAD_BYTES_MAX + 1).to_bytes(4, "little") + b"x")


# ---------------------------------------------------------------- the epoch fence


def test_a_standby_at_epoch_1_refuses_frames_of_epoch_0(tmp_path):
    """After a promotion, an old primary's next records (epoch 0, chained correctly on the
    common history) are refused by a node at epoch 1: nothing buffered, nothing written."""
    old = journal.JournalWriter.open(tmp_path / "old", CLUSTER, durability="none")
    for index in range(5):
        old.append(0, 1_000 + index, b"common %d" % index)
    old.commit()
    new = journal.JournalWriter.open(tmp_path / "new", CLUSTER, durability="none")
    for frames in journal.read_frames(tmp_path / "old", 1, 5):
        new.append_frames(frames)
    new.commit()
    new.set_epoch(1)  # promotion
    old.append(0, 2_000, b"old primary, old epoch")
    old.commit()
    (stale,) = list(journal.read_frames(tmp_path / "old", 6, 6))
    with pytest.raises(journal.JournalError, match="epoch"):
        new.append_frames(stale, source="old primary")
    assert new.last_sequence == 5 and new.epoch == 1
    # The same record at epoch 1 would have been taken: the refusal is the epoch's.
    new.append(1, 2_000, b"new primary, new epoch")
    new.commit()
    assert [record.epoch for record in journal.read_records(tmp_path / "new")] == [0] * 5 + [1]
    old.close()
    new.close()


def test_append_frames_refuses_a_flipped_byte(tmp_path):
    source = journal.JournalWriter.open(tmp_path / "source", CLUSTER, durability="none")
    for index in range(10):
        source.append(0, 1_000 + index, b"record %d" % index)
    source.close()
    (frames,) = list(journal.read_frames(tmp_path / "source", 1, 10))
    target = journal.JournalWriter.open(tmp_path / "target", CLUSTER, durability="none")
    for position in (len(frames) // 2, len(frames) - 1, 5):
        broken = bytearray(frames)
        broken[position] ^= 0x01
        with pytest.raises(journal.JournalCorruptError):
            target.append_frames(bytes(broken), source="peer")
        assert target.last_sequence == 0
    assert target.append_frames(frames) == 10
    target.close()


# ---------------------------------------------------------------- WatchdogCore


def primary_status(released: int = 100, degraded: bool = False) -> dict:
    return {"role": "primary", "released_sequence": released, "degraded": degraded}


def standby_status(durable: int = 100, *, divergence=None, fatal=None, role: str = "standby",
                   epoch: int = 0) -> dict:
    return {"role": role, "durable_sequence": durable, "divergence": divergence, "fatal": fatal,
            "promotable": divergence is None and fatal is None, "epoch": epoch}


def watched(timeout_ms: int = 400, *, force: bool = False, released: int = 100, standby: dict | None = None,
            degraded: bool = False) -> WatchdogCore:
    core = WatchdogCore(timeout_ms, force=force)
    core.primary_seen(primary_status(released, degraded), 1_000)
    core.standby_seen(standby if standby is not None else standby_status(), 1_000)
    return core


def test_watchdog_waits_for_a_first_sight_of_the_primary_and_while_it_answers():
    core = WatchdogCore(400)
    core.standby_seen(standby_status(), 0)
    assert core.decide(10_000).action == "wait"  # never seen: no grounds to promote
    core = watched()
    assert core.decide(1_399).action == "wait"
    core.primary_seen(primary_status(), 1_300)
    core.standby_seen(standby_status(), 1_600)
    assert core.decide(1_650).action == "wait"


def test_watchdog_promotes_a_fresh_caught_up_standby_once_the_primary_is_silent():
    core = watched()
    core.standby_seen(standby_status(100), 1_390)
    decision = core.decide(1_400)
    assert decision.action == "promote" and "400 ms" in decision.reason
    core.standby_seen(standby_status(role="primary", epoch=1), 1_500)
    assert core.decide(1_600).action == "done"


def test_watchdog_does_not_take_an_unfenced_old_primary_for_a_promoted_standby():
    # Re-armed after a failover, the watchdog's "standby" is the old primary, which may
    # still run (epoch 0) until it is fenced. That is no promotion, and no promotable
    # standby either.
    core = WatchdogCore(400)
    core.primary_seen({"role": "primary", "released_sequence": 100, "epoch": 1}, 1_000)
    core.standby_seen(standby_status(role="primary", epoch=0), 1_000)
    decision = core.decide(1_400)
    assert decision.action == "refuse" and "not answering" in decision.reason
    core.standby_seen(standby_status(role="primary", epoch=1), 1_450)
    assert core.decide(1_500).action == "refuse"
    core.standby_seen(standby_status(role="primary", epoch=2), 1_500)
    assert core.decide(1_600).action == "done"
    # Seed 2309: before the watched primary has answered at all, a primary at the
    # standby's address cannot be judged newer; it is not taken for a promotion.
    fresh = WatchdogCore(400)
    fresh.standby_seen(standby_status(role="primary", epoch=1), 1_000)
    assert not fresh.promoted and fresh.decide(1_100).action == "wait"


def test_watchdog_refuses_when_the_standby_is_silent_too():
    # Both last seen at 1000: at 1400 the standby's answer is just fresh enough, at 1401
    # it is as stale as the primary's.
    assert watched().decide(1_400).action == "promote"
    decision = watched().decide(1_401)
    assert decision.action == "refuse" and "not answering" in decision.reason
    core = WatchdogCore(400)
    core.primary_seen(primary_status(), 0)
    assert core.decide(500).action == "refuse"  # standby never seen


def test_watchdog_refuses_a_divergent_or_refused_standby_even_when_forced():
    for standby in (standby_status(divergence="digest at 2048 differs"), standby_status(fatal="cluster id 2")):
        for force in (False, True):
            decision = watched(force=force, standby=standby).decide(1_400)
            assert decision.action == "refuse" and "not promotable" in decision.reason


def test_watchdog_refuses_a_stale_standby_unless_forced():
    decision = watched(released=120, standby=standby_status(100)).decide(1_400)
    assert decision.action == "refuse" and "stale" in decision.reason and "--force" in decision.reason
    decision = watched(released=120, standby=standby_status(100), force=True).decide(1_400)
    assert decision.action == "promote" and "FORCED" in decision.reason


def test_watchdog_refuses_after_a_degraded_primary_unless_forced():
    decision = watched(degraded=True).decide(1_400)
    assert decision.action == "refuse" and "degraded" in decision.reason
    assert watched(degraded=True, force=True).decide(1_400).action == "promote"


def test_watchdog_remembers_the_highest_released_sequence_and_ignores_non_primaries():
    core = watched(released=100)
    core.primary_seen(primary_status(released=90), 1_100)  # never goes down
    core.primary_seen({"role": "standby", "released_sequence": 0}, 1_300)  # not a primary: not a sign of life
    core.standby_seen(standby_status(95), 1_450)
    decision = core.decide(1_500)
    assert decision.action == "refuse" and "100" in decision.reason


def test_watchdog_timeout_has_a_floor():
    with pytest.raises(ValueError):
        WatchdogCore(49)


def test_a_standby_whose_tail_the_primary_archived_is_refused_without_any_cut():
    # The primary's journal now starts at 1000 (older segments archived); the standby's
    # boundary (200) cannot be compared, so it must not be told to cut anything.
    decision = decide(hello_at(200, same=False), primary_last=2000, first_sequence=1000)
    assert isinstance(decision.reply, Refused) and decision.reply.fatal
    assert "seed the standby from a snapshot" in decision.reply.reason


# ---------------------------------------------------------------- reads of a node's own journal


def test_a_read_that_fails_its_check_once_is_read_again_and_twice_is_corruption():
    from replica.link_journal import READ_ATTEMPTS_MAX, read_verified

    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) == 1:
            raise journal.JournalChainError("/j/1.journal", 64, "record crc mismatch")
        return value

    assert read_verified(flaky, 7) == 7 and calls == [7, 7]

    def corrupt():
        calls.append("corrupt")
        raise journal.JournalChainError("/j/1.journal", 64, "record crc mismatch")

    calls.clear()
    with pytest.raises(journal.JournalChainError) as caught:
        read_verified(corrupt)
    assert len(calls) == READ_ATTEMPTS_MAX == 2 and "/j/1.journal at byte offset 64" in str(caught.value)

    def broken():
        raise journal.JournalIOError("/j/1.journal", 0, "read failed: [EIO]")

    with pytest.raises(journal.JournalIOError):
        read_verified(broken)  # only a failed check is read again, never an I/O error


def _journal_of(directory, records: int) -> None:
    writer = journal.JournalWriter.open(directory, 1, durability="none", segment_size_bytes_max=4096)
    for index in range(records):
        writer.append(0, 1_000 + index, bytes([index % 251]) * (20 + index % 13))
    writer.commit()
    writer.close()


def test_catch_up_chunks_read_past_a_read_error_and_stop_at_corruption(tmp_path, monkeypatch):
    import journal.cursor
    from replica.link_journal import catch_up_chunks, count_frames

    directory = tmp_path / "j"
    _journal_of(directory, 400)
    expected = list(catch_up_chunks(str(directory), 1, 400, 2048))
    assert expected[0][0] == 1 and sum(count_frames(chunk) for _, chunk in expected) == 400
    assert [first for first, _ in expected] == sorted({first for first, _ in expected})

    real_read_at = journal.cursor.read_at
    reads = {"count": 0}

    def read_at_flipping(fd, path, size, offset, *, every: bool):
        data = real_read_at(fd, path, size, offset)
        reads["count"] += 1
        if (every or reads["count"] == 5) and len(data) > 40:
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0x01
            return bytes(flipped)
        return data

    def stream_of(chunks) -> bytes:
        following = 1
        for first, chunk in chunks:
            assert first == following, "each chunk starts where the one before ended"
            following = first + count_frames(chunk)
        assert following == 401
        return b"".join(chunk for _, chunk in chunks)

    # One read error in the middle of the stream: the same frames as a clean read (the
    # fresh reader after the error may cut the chunks at other places).
    def counting(fd, path, size, offset):
        reads["count"] += 1
        return real_read_at(fd, path, size, offset)

    monkeypatch.setattr(journal.cursor, "read_at", counting)
    list(catch_up_chunks(str(directory), 1, 400, 2048))
    clean_reads, reads["count"] = reads["count"], 0
    monkeypatch.setattr(journal.cursor, "read_at", lambda *a: read_at_flipping(*a, every=False))
    assert stream_of(list(catch_up_chunks(str(directory), 1, 400, 2048))) == stream_of(expected)
    assert reads["count"] > clean_reads, "the read error made the reader start again"
    # Every read bad (corruption at rest): the second failure at the same place raises.
    monkeypatch.setattr(journal.cursor, "read_at", lambda *a: read_at_flipping(*a, every=True))
    with pytest.raises(journal.JournalCorruptError):
        list(catch_up_chunks(str(directory), 1, 400, 2048))


def test_watchdog_does_not_let_a_late_status_undo_a_degrade():
    # Seed 953: the operator degraded the primary (sequencing a checkpoint at 436); an
    # answer the primary had given just before (at 435, not degraded) arrived after it.
    # Applied, it would have let the watchdog promote the stale standby.
    core = WatchdogCore(400)
    degraded = {"role": "primary", "epoch": 0, "released_sequence": 403, "degraded": True,
                "sequenced_sequence": 436, "pid": 7}
    core.primary_seen(degraded, 1_000)
    core.primary_seen({**degraded, "degraded": False, "sequenced_sequence": 435}, 1_030)
    core.standby_seen(standby_status(403), 1_390)
    decision = core.decide(1_400)
    assert decision.action == "refuse" and "degraded" in decision.reason
    # A restarted primary (another process) may sequence below its predecessor: its
    # statuses count.
    core.primary_seen({**degraded, "degraded": False, "sequenced_sequence": 420, "pid": 8}, 1_500)
    assert core.primary_last_seen_ms == 1_500 and not core.primary_degraded


def test_watchdog_refuses_while_a_sync_primary_acknowledges_without_a_standby_unless_forced():
    # Seed 3255: a promoted primary acknowledged alone while its new standby was still
    # catching up, then died; the standby covered the last polled acknowledgement but
    # not the two that followed. Until a standby has been live, that is async mode.
    alone = {"role": "primary", "epoch": 2, "released_sequence": 100, "replication": "sync",
             "standby_required": False, "sequenced_sequence": 120, "pid": 3}
    for force, action in ((False, "refuse"), (True, "promote")):
        core = WatchdogCore(400, force=force)
        core.primary_seen(alone, 1_000)
        core.standby_seen({**standby_status(100), "epoch": 2}, 1_390)
        decision = core.decide(1_400)
        assert decision.action == action and "without a standby" in decision.reason, decision
    # Once a standby is live (standby_required), the sync check is exact again.
    core = WatchdogCore(400)
    core.primary_seen({**alone, "standby_required": True}, 1_000)
    core.standby_seen({**standby_status(100), "epoch": 2}, 1_390)
    assert core.decide(1_400).action == "promote"
    # Async mode never waits for a standby; the check stays best effort there.
    core = WatchdogCore(400)
    core.primary_seen({**alone, "replication": "async"}, 1_000)
    core.standby_seen({**standby_status(100), "epoch": 2}, 1_390)
    assert core.decide(1_400).action == "promote"


def test_a_catch_up_that_ends_before_a_written_sequence_is_a_corrupt_read(tmp_path):
    # Seed 4361: a read fault flipped a length field, so a whole, written frame looked
    # cut short and the live reader stopped quietly before it; the catch-up found no
    # frame where the writer said there was one. That is a bad read, retried once and
    # then raised, never "nothing to send".
    from pathlib import Path

    from journal.format import SEGMENT_HEADER_SIZE_BYTES
    from replica.link_journal import catch_up_chunks

    directory = tmp_path / "j"
    _journal_of(directory, 50)
    last_segment = sorted(Path(directory).glob("*.journal"))[-1]
    data = bytearray(last_segment.read_bytes())
    data[SEGMENT_HEADER_SIZE_BYTES + 1] ^= 0x40  # the first frame's length: 16 KiB past the end
    last_segment.write_bytes(bytes(data))
    first = int(last_segment.name.split(".")[0])
    with pytest.raises(journal.JournalFrameError) as caught:
        list(catch_up_chunks(str(directory), 1, 50, 2048))
    assert f"before sequence {first}" in str(caught.value)
    with pytest.raises(journal.JournalFrameError):
        next(catch_up_chunks(str(directory), first, 50, 2048))
