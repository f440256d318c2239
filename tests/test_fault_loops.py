"""Real-process fault loops (issue #10, beside the deterministic simulator): primary and
standby SIGKILLed over and over under load, a journal that runs out of room, and a
replication link that stalls, swallows its bytes or is cut while a standby catches up.

Every test drives real `twinbook` processes on loopback with clients submitting orders
throughout, and ends with the checks of tests/fault_helpers.py: every acknowledged order
exactly once on the final primary, journals byte-identical up to the shorter, equal
digests, no divergence alarm, `twinbook verify` clean on both data directories, and
progress after every fault that allowed it. The default run takes two rounds of each
loop; the `slow` variants run ten or more (docs/RELIABILITY.md has their results).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time

import pytest

from fault_helpers import (
    LOOP_NODE_SETTINGS,
    MEMBERS,
    Load,
    check_ledger,
    evidence_bytes,
    file_size_limited_command,
    journals_agree,
    poll,
    status_of,
    twinbook_verify,
    wait_exited,
    wait_promoted,
    wait_standby_detached,
    wait_standby_live,
)
from node_helpers import (  # noqa: F401
    async_admin,
    check_exactly_once,
    cluster,
    link_proxies,
    replay_accepted,
    run,
    twinbook_command,
    wait_caught_up,
    wait_identical_journals,
)
from replica.replication_server import STANDBY_ACK_TIMEOUT_SECONDS
from replica.standby_node import PRIMARY_SILENCE_TIMEOUT_SECONDS

# Acknowledgements wanted between two faults: proof that the cluster makes progress.
PROGRESS_ACKS = 300
PROGRESS_TIMEOUT_SECONDS = 20.0
# For answers already sent when a fault began to reach the clients.
ACK_SETTLE_SECONDS = 0.2


def settle_and_check(primary, standby, ledger, *, acknowledged_min: int) -> dict:
    """The end of every loop: both nodes idle and equal, stopped, replayed and verified."""
    check_ledger(ledger, acknowledged_min)
    mine, theirs = wait_caught_up(primary, standby, timeout=60)
    assert mine["role"] == "primary" and theirs["role"] == "standby", (mine, theirs)
    assert mine["state_digest"] == theirs["state_digest"], (mine, theirs)
    assert mine["epoch"] == theirs["epoch"], (mine, theirs)
    assert mine["divergence"] is None and theirs["divergence"] is None, (mine, theirs)
    wait_identical_journals(primary, standby)
    assert standby.terminate() == 0, standby.log()
    assert primary.terminate() == 0, primary.log()
    compared_bytes = journals_agree(primary, standby)
    accepted, last_sequence, digest = replay_accepted(primary.data_dir)
    check_exactly_once(ledger, accepted)
    standby_accepted, standby_last, standby_digest = replay_accepted(standby.data_dir)
    if standby_last == last_sequence:
        assert standby_digest == digest and standby_accepted == accepted
    for node in (primary, standby):
        log = node.log()
        assert "Traceback" not in log and "DIVERGENCE" not in log, log
        twinbook_verify(node)
    return {"last_sequence": last_sequence, "journal_bytes": compared_bytes, "epoch": mine["epoch"],
            "acknowledged": len(ledger.acknowledged), "resubmission_answers": ledger.resubmission_answers}


# ---------------------------------------------------------------- the primary, killed


def _logged(process, text: str):
    """A coroutine for `poll`: has the process logged `text`?"""
    async def check():
        return text in process.log()

    return check()


def _exited(process):
    """A coroutine for `poll`: has the process exited?"""
    async def check():
        return not process.running

    return check()


def primary_kill_loop(cluster, rounds: int, seed: int) -> dict:
    """SIGKILL the primary `rounds` times under load; the watchdog promotes the standby,
    the killed node comes back as the new primary's standby and rejoins."""
    rng = random.Random(seed)
    first = cluster.node("a", node=LOOP_NODE_SETTINGS).start_primary()
    second = cluster.node("b", node=LOOP_NODE_SETTINGS).start_standby(first.replication)
    wait_caught_up(first, second)
    outcome: dict = {"promotion_ms": [], "reconnects": 0}

    async def scenario():
        primary, standby = first, second
        load = await Load([first, second], prefix="pk", seed=seed).start()
        try:
            for round_number in range(1, rounds + 1):
                await wait_standby_live(primary)
                watchdog = cluster.watchdog(primary, standby, timeout_ms=300)
                await poll(lambda: _logged(watchdog, "primary alive"), 20, "the watchdog watching")
                # Acknowledged with the standby in sync, then killed at a random moment.
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"before kill {round_number}")
                await asyncio.sleep(rng.uniform(0.0, 0.8))
                killed_at = time.monotonic()
                primary.kill()
                status = await wait_promoted(standby, 15)
                outcome["promotion_ms"].append(round((time.monotonic() - killed_at) * 1000))
                assert status["epoch"] == round_number, status
                await poll(lambda: _exited(watchdog), 10, "the watchdog done")
                assert watchdog.process.returncode == 0 and "promote ->" in watchdog.log(), watchdog.log()
                # The new primary acknowledges on its own until a standby attaches ...
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"after promotion {round_number}")
                # ... and the killed node rejoins it as standby (cutting any tail the
                # standby never had into .divergent), at the new epoch.
                await primary.start_standby_async(standby.replication)
                primary, standby = standby, primary
                await wait_standby_live(primary)

                async def at_new_epoch():
                    return (await status_of(standby))["epoch"] == round_number

                await poll(at_new_epoch, 10, f"the rejoined standby at epoch {round_number}")
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after the last rejoin")
        finally:
            ledger = await load.stop()
        outcome["reconnects"] = sum(client.reconnects for client in load.clients)
        return primary, standby, ledger

    primary, standby, ledger = run(scenario(), timeout=60 + 30 * rounds)
    assert outcome["reconnects"] >= rounds * len(MEMBERS), outcome
    outcome.update(settle_and_check(primary, standby, ledger, acknowledged_min=rounds * 2 * PROGRESS_ACKS))
    assert outcome["epoch"] == rounds
    outcome["divergent_bytes"] = evidence_bytes(first, ".divergent") + evidence_bytes(second, ".divergent")
    print(f"primary kill loop: {rounds} rounds, {outcome}")
    return outcome


def test_primary_sigkilled_under_load_fails_over_and_rejoins_twice(cluster):
    primary_kill_loop(cluster, rounds=2, seed=1)


@pytest.mark.slow
def test_primary_sigkill_loop_ten_rounds(cluster):
    primary_kill_loop(cluster, rounds=10, seed=7)


def test_an_old_primary_cut_off_from_a_promoted_standby_releases_nothing(cluster, link_proxies):
    """Split brain attempted: the link is cut and an operator promotes the standby while
    the old primary is alive and its clients keep sending to it. The old epoch journals
    their orders but releases nothing (sync mode: its standby is gone); once it is
    fenced (SIGKILL), the clients fail over, resubmit, and the new epoch answers each
    order once; the old primary rejoins with its unreleased tail cut into .divergent."""
    primary, standby, proxy = proxied_pair(cluster, link_proxies)
    outcome: dict = {}

    async def scenario():
        load = await Load([primary, standby], prefix="sb", seed=12).start()
        try:
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "before the split")
            proxy.cut()
            # The operator promotes once the standby reports the link gone, as a
            # standby still attached to a beating primary refuses.
            await wait_standby_detached(standby)
            reply = await async_admin(standby, {"command": "promote"}, timeout=30.0)
            assert reply["promoted"] and reply["epoch"] == 1, reply
            old = await acknowledgements_paused(primary, load, hold_seconds=1.0)
            assert old["epoch"] == 0, old
            outcome["journaled_unreleased"] = old["last_sequence"] - old["released_sequence"]
            primary.kill()
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "on the new epoch")
            await primary.start_standby_async(standby.replication)
            await wait_standby_live(standby)
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "with the old primary back as standby")
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=90)
    outcome.update(settle_and_check(standby, primary, ledger, acknowledged_min=3 * PROGRESS_ACKS))
    outcome["divergent_bytes"] = evidence_bytes(primary, ".divergent")
    assert outcome["journaled_unreleased"] > 0 and outcome["divergent_bytes"] > 0, outcome
    print(f"old epoch cut off: {outcome}")


# ---------------------------------------------------------------- the standby, killed


async def acknowledgements_paused(primary, load: Load, hold_seconds: float) -> dict:
    """With the standby gone in sync mode: the primary notices, and over `hold_seconds`
    neither its released sequence nor the clients' acknowledgements move, while the
    orders sent meanwhile are journaled (they wait, they are not refused)."""
    async def detached():
        status = await status_of(primary)
        return not status["standby_attached"] and status

    seen = await poll(detached, 15, "the primary sees its standby gone")
    assert seen["standby_required"] and not seen["degraded"], seen
    # Acknowledgements released before the standby went (it had made those records
    # durable) may still be on their way to the clients.
    await asyncio.sleep(ACK_SETTLE_SECONDS)
    before, acknowledged = await status_of(primary), load.acknowledged
    await asyncio.sleep(hold_seconds)
    after = await status_of(primary)
    assert after["released_sequence"] == before["released_sequence"], (before, after)
    assert load.acknowledged == acknowledged, "acknowledged without the standby in sync mode"
    assert after["last_sequence"] > after["released_sequence"], after
    return after


def standby_kill_loop(cluster, rounds: int, seed: int) -> dict:
    """SIGKILL the standby `rounds` times under load. Sync mode: acknowledgements pause
    while it is gone; every other round the operator degrades instead (acknowledgements
    resume alone, journaled as such) and the standby catches up what it missed."""
    rng = random.Random(seed)
    primary = cluster.node("primary", node=LOOP_NODE_SETTINGS).start_primary()
    standby = cluster.node("standby", node=LOOP_NODE_SETTINGS).start_standby(primary.replication)
    wait_caught_up(primary, standby)
    outcome: dict = {"paused_rounds": 0, "degraded_rounds": 0, "compared_bytes": []}

    async def scenario():
        load = await Load([primary], prefix="sk", seed=seed).start()
        try:
            for round_number in range(1, rounds + 1):
                await wait_standby_live(primary)
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"before kill {round_number}")
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                standby.kill()
                await acknowledgements_paused(primary, load, hold_seconds=0.4)
                if round_number % 2 == 0:
                    await degrade(primary)
                    await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"degraded {round_number}")
                    outcome["degraded_rounds"] += 1
                else:
                    outcome["paused_rounds"] += 1
                await standby.start_standby_async(primary.replication)
                await wait_standby_live(primary)
                # Acknowledgements resume once the standby has what they wait for.
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"after rejoin {round_number}")
                outcome["compared_bytes"].append(journals_agree(primary, standby))
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=60 + 20 * rounds)
    outcome.update(settle_and_check(primary, standby, ledger, acknowledged_min=rounds * 2 * PROGRESS_ACKS))
    assert outcome["epoch"] == 0
    assert primary.log().count("DEGRADED") == outcome["degraded_rounds"]
    print(f"standby kill loop: {rounds} rounds, {outcome}")
    return outcome


async def degrade(node) -> dict:
    """The operator's `twinbook degrade` (its admin request): acknowledge alone."""
    reply = await async_admin(node, {"command": "degrade"}, timeout=5.0)
    assert reply.get("degraded") is True, reply
    return reply


def test_standby_sigkilled_under_load_pauses_acks_and_rejoins_byte_identical(cluster):
    standby_kill_loop(cluster, rounds=2, seed=2)


@pytest.mark.slow
def test_standby_sigkill_loop_ten_rounds(cluster):
    standby_kill_loop(cluster, rounds=10, seed=8)


# ---------------------------------------------------------------- the disk fills up

# Room for about four thousand orders: a second or so of load, then every write fails.
DISK_LIMIT_BYTES = 600_000


def check_failed_on_a_full_disk(node, limit_bytes: int) -> dict:
    """The node stopped with an operating fault naming its segment file (no traceback,
    no hang), and what it left on disk is a valid journal, at most torn at its tail."""
    import journal

    assert node.process.returncode == 3, node.log()
    log = node.log()
    segment = node.data_dir / "journal" / "00000000000000000001.journal"
    assert f"twinbook: JournalIOError: {segment} at byte offset" in log, log
    assert "[EFBIG] File too large" in log and "Traceback" not in log, log
    summary = journal.inspect(node.data_dir / "journal")
    assert summary["state"] in ("clean", "torn"), summary
    assert segment.stat().st_size <= limit_bytes
    return summary


def primary_disk_full(cluster, limit_bytes: int, seed: int) -> dict:
    """A primary under load whose journal cannot grow past `limit_bytes`: it must stop
    with an operating fault having acknowledged only what is on disk, and recover."""
    node = cluster.node("primary", node=LOOP_NODE_SETTINGS)
    node.launcher = file_size_limited_command(limit_bytes)
    node.start_primary()
    outcome: dict = {}

    async def scenario():
        load = await Load([node], prefix="df", seed=seed).start()
        try:
            await wait_exited(node, 30)
            acknowledged = dict(load.ledger.acknowledged)
            outcome["acknowledged_when_full"] = len(acknowledged)
            outcome["summary"] = check_failed_on_a_full_disk(node, limit_bytes)
            # Nothing was acknowledged that is not on disk: every answer the clients
            # got is in the journal the failed node left (read as it is, before any
            # recovery), under the same order id.
            on_disk, _, _ = replay_accepted(node.data_dir)
            check_exactly_once(load.ledger, on_disk)
            # Room again (the operator freed space): restarted, the node recovers
            # (a torn tail cut into .torn), the clients reconnect and resubmit, and
            # the exchange goes on.
            node.launcher = twinbook_command()
            await node.start_primary_async()
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after the restart with room")
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=120)
    check_ledger(ledger, acknowledged_min=outcome["acknowledged_when_full"] + PROGRESS_ACKS)
    assert outcome["acknowledged_when_full"] > limit_bytes // 1000, outcome
    assert node.terminate() == 0, node.log()
    accepted, last_sequence, _ = replay_accepted(node.data_dir)
    check_exactly_once(ledger, accepted)
    twinbook_verify(node)
    state = outcome["summary"]["state"]
    assert (evidence_bytes(node, ".torn") > 0) == (state == "torn"), (state, node.log())
    assert f"journal tail {state}" in node.log(), node.log()
    print(f"disk full (primary): {outcome['acknowledged_when_full']} acknowledged before EFBIG, tail {state}, "
          f"{len(ledger.acknowledged)} in all, last sequence {last_sequence}, "
          f"{ledger.resubmission_answers} resubmissions answered as duplicates")
    return outcome


def test_primary_whose_disk_fills_acknowledges_nothing_undurable_and_recovers(cluster):
    primary_disk_full(cluster, DISK_LIMIT_BYTES, seed=3)


def test_standby_whose_disk_fills_stops_and_the_primary_goes_on_degraded(cluster):
    """Found by this loop: a standby whose journal failed used to retry for ever, blaming
    the primary's frames and reattaching every second, so `degrade` was refused as often
    as not and acknowledgements stayed paused."""
    primary = cluster.node("primary", node=LOOP_NODE_SETTINGS).start_primary()
    standby = cluster.node("standby", node=LOOP_NODE_SETTINGS)
    standby.launcher = file_size_limited_command(DISK_LIMIT_BYTES)
    standby.start_standby(primary.replication)
    wait_caught_up(primary, standby)

    async def scenario():
        load = await Load([primary], prefix="sf", seed=4).start()
        try:
            await wait_exited(standby, 30)
            check_failed_on_a_full_disk(standby, DISK_LIMIT_BYTES)
            await acknowledgements_paused(primary, load, hold_seconds=0.4)
            await degrade(primary)
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "degraded")
            # Room again: the standby recovers its journal, rejoins, catches up.
            standby.launcher = twinbook_command()
            await standby.start_standby_async(primary.replication)
            await wait_standby_live(primary)
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "with the standby back")
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=120)
    assert "journal failed, stopping" in standby.log() and "refusing frames" not in standby.log()
    outcome = settle_and_check(primary, standby, ledger, acknowledged_min=3 * PROGRESS_ACKS)
    print(f"disk full (standby): {outcome}")


# ---------------------------------------------------------------- the replication link

# A stall this long is well inside both sides' timeouts (the primary's
# STANDBY_ACK_TIMEOUT_SECONDS, the standby's PRIMARY_SILENCE_TIMEOUT_SECONDS).
SHORT_STALL_SECONDS = 0.7


def proxied_pair(cluster, link_proxies):
    primary = cluster.node("primary", node=LOOP_NODE_SETTINGS).start_primary()
    proxy = link_proxies(primary.replication)
    standby = cluster.node("standby", node=LOOP_NODE_SETTINGS).start_standby(proxy.address)
    wait_caught_up(primary, standby)
    return primary, standby, proxy


async def stalled_acknowledgements(primary, load: Load, seconds: float) -> None:
    """Over `seconds` of a stalled link, nothing more is released or acknowledged."""
    await asyncio.sleep(ACK_SETTLE_SECONDS)  # bytes already past the proxy when it stalled
    before, acknowledged = await status_of(primary), load.acknowledged
    await asyncio.sleep(seconds - ACK_SETTLE_SECONDS)
    after = await status_of(primary)
    assert after["released_sequence"] == before["released_sequence"], (before, after)
    assert load.acknowledged == acknowledged, "acknowledged while the standby could not have it"
    assert after["last_sequence"] > after["released_sequence"], after


def test_short_link_stalls_pause_acknowledgements_and_lose_nothing(cluster, link_proxies):
    """Both ways, frames only, acks only: shorter than the timeouts, so the link rides
    it out (no reconnection) and acknowledgements resume where they stopped."""
    primary, standby, proxy = proxied_pair(cluster, link_proxies)

    async def scenario():
        load = await Load([primary], prefix="st", seed=5).start()
        try:
            for direction in ("both", "down", "up"):
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"before the {direction} stall")
                connections = proxy.connections
                proxy.pause(direction)
                try:
                    await stalled_acknowledgements(primary, load, SHORT_STALL_SECONDS)
                finally:
                    proxy.resume()
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"after the {direction} stall")
                assert proxy.connections == connections, f"the {direction} stall cost the link"
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=90)
    assert "acknowledged nothing" not in primary.log() and "nothing from the primary" not in standby.log()
    outcome = settle_and_check(primary, standby, ledger, acknowledged_min=6 * PROGRESS_ACKS)
    print(f"short stalls: {outcome}")


def test_a_blackholed_link_is_cut_off_and_the_standby_returns_after_the_heal(cluster, link_proxies):
    """Bytes vanish both ways and so do the closes (a partition): the primary cuts the
    silent standby off and keeps acknowledgements paused (sync, no degrade); once the
    network heals, the standby notices its half-open link is dead, dials again, catches
    up, and acknowledgements resume. Before the standby had a silence timeout it waited
    on the dead connection for ever and the cluster never made progress again."""
    primary, standby, proxy = proxied_pair(cluster, link_proxies)

    async def scenario():
        load = await Load([primary], prefix="bh", seed=6).start()
        try:
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "before the blackhole")
            connections = proxy.connections
            started = time.monotonic()
            proxy.blackhole()

            async def cut_off():
                return "acknowledged nothing for" in primary.log()

            await poll(cut_off, STANDBY_ACK_TIMEOUT_SECONDS + 5, "the primary cutting the silent standby off")
            await acknowledgements_paused(primary, load, hold_seconds=0.3)
            assert proxy.bytes_discarded > 0
            proxy.restore()
            await wait_standby_live(primary, timeout=PRIMARY_SILENCE_TIMEOUT_SECONDS + 15)
            outcome["back_after_seconds"] = round(time.monotonic() - started, 1)
            assert proxy.connections > connections
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after the heal")
        finally:
            ledger = await load.stop()
        return ledger

    outcome: dict = {}
    ledger = run(scenario(), timeout=90)
    assert "nothing from the primary for" in standby.log(), standby.log()
    outcome.update(settle_and_check(primary, standby, ledger, acknowledged_min=2 * PROGRESS_ACKS))
    print(f"blackhole: {outcome}")


# Catch-up through a narrow link: slow enough that cuts land in the middle of it (a
# catch-up batch, CATCH_UP_BATCH_BYTES_MAX of 256 KiB, then takes about a quarter of a
# second), fast enough to outrun the load's own journal growth.
CATCH_UP_BYTES_PER_SECOND = 1_000_000
CATCH_UP_BACKLOG_ORDERS = 12_000  # about 1.6 MB of journal
BLIND_CUT_AFTER_SECONDS = 0.15


def test_repeated_cuts_during_catch_up_end_byte_identical(cluster, link_proxies):
    """The standby is away while the primary runs degraded, then catches up through a
    narrow link that is reset three times mid-stream: in the middle of its first batch,
    just after a batch landed, and in the middle of the next. It resumes each time from
    what it made durable (never from the start), applies nothing corrupt (the resets cut
    frames in half), and ends byte-identical."""
    primary, standby, proxy = proxied_pair(cluster, link_proxies)
    cuts: list = []  # (standby durable, primary last) at each cut

    async def cut_now():
        mine, theirs = await status_of(primary), await status_of(standby)
        proxy.drop_connections()
        cuts.append((theirs["durable_sequence"], mine["last_sequence"]))

    async def attached_again(connections: int):
        async def attached():
            return proxy.connections > connections and (await status_of(standby))["primary_connected"]

        await poll(attached, 15, "the standby dialling again")

    async def scenario():
        load = await Load([primary], prefix="cc", seed=9).start()
        try:
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "before the cut")
            proxy.cut()
            await acknowledgements_paused(primary, load, hold_seconds=0.2)
            await degrade(primary)
            await load.wait_progress(CATCH_UP_BACKLOG_ORDERS, PROGRESS_TIMEOUT_SECONDS, "degraded")
            proxy.throttle(CATCH_UP_BYTES_PER_SECOND)
            start_durable = (await status_of(standby))["durable_sequence"]
            connections = proxy.connections
            proxy.restore()
            # 1. In the middle of the first batch.
            await attached_again(connections)
            await asyncio.sleep(BLIND_CUT_AFTER_SECONDS)
            connections = proxy.connections
            await cut_now()
            # 2. As soon as a batch has landed (catch-up resumed where it was cut).
            await attached_again(connections)
            durable_before = cuts[-1][0]

            async def batch_landed():
                return (await status_of(standby))["durable_sequence"] > durable_before

            await poll(batch_landed, 15, "a catch-up batch landing")
            connections = proxy.connections
            await cut_now()
            # 3. In the middle of the next.
            await attached_again(connections)
            await asyncio.sleep(BLIND_CUT_AFTER_SECONDS)
            await cut_now()
            proxy.throttle(None)
            await wait_standby_live(primary, timeout=30)
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after catching up")
            return start_durable
        finally:
            ledger = await load.stop()
            outcome["ledger"] = ledger

    outcome: dict = {}
    start_durable = run(scenario(), timeout=120)
    ledger = outcome.pop("ledger")
    assert all(durable < last for durable, last in cuts), f"a cut landed after the catch-up: {cuts}"
    assert start_durable < cuts[-1][0] and cuts[1][0] > cuts[0][0], (start_durable, cuts)
    outcome.update(settle_and_check(primary, standby, ledger,
                                    acknowledged_min=CATCH_UP_BACKLOG_ORDERS + 2 * PROGRESS_ACKS))
    outcome["cuts"] = cuts
    print(f"cuts during catch-up: {outcome}")


# A narrow link: a catch-up batch (256 KiB) must still cross it within the primary's
# 3 s ack timeout, or every catch-up session is cut off after 3 s (1 MiB batches were,
# below about 350 kB/s).
NARROW_LINK_BYTES_PER_SECOND = 120_000
NARROW_LINK_BACKLOG_BYTES = 480_000  # 4 s through the link: one 1 MiB batch would be cut off


def journal_bytes(node) -> int:
    return sum(path.stat().st_size for path in (node.data_dir / "journal").glob("*.journal"))


def test_a_standby_catches_up_through_a_narrow_link_without_being_cut_off(cluster, link_proxies):
    primary, standby, proxy = proxied_pair(cluster, link_proxies)

    async def scenario():
        load = await Load([primary], prefix="nl", seed=11).start()
        try:
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "before the cut")
            proxy.cut()
            await acknowledgements_paused(primary, load, hold_seconds=0.2)
            await degrade(primary)
            deadline = time.monotonic() + PROGRESS_TIMEOUT_SECONDS
            while journal_bytes(primary) - journal_bytes(standby) < NARROW_LINK_BACKLOG_BYTES:
                assert time.monotonic() < deadline, "the degraded primary did not build the backlog"
                await asyncio.sleep(0.05)
        finally:
            ledger = await load.stop()
        behind = journal_bytes(primary) - journal_bytes(standby)
        last = (await status_of(primary))["last_sequence"]
        proxy.throttle(NARROW_LINK_BYTES_PER_SECOND)
        connections = proxy.connections
        proxy.restore()
        started = time.monotonic()

        async def caught_up():
            return (await status_of(standby))["durable_sequence"] >= last

        # "Live" at the primary only means everything was handed to the socket; the
        # kernel buffers hold much of it, so wait for the standby's own durable sequence.
        await poll(caught_up, 30, "the standby catching up through the narrow link")
        seconds = time.monotonic() - started
        await wait_standby_live(primary, timeout=10)
        return ledger, behind, seconds, proxy.connections - connections

    ledger, behind, seconds, dialled = run(scenario(), timeout=90)
    log = primary.log()
    assert "acknowledged nothing" not in log, log
    assert dialled == 1, f"the standby dialled {dialled} times to catch up"
    # It really was slow: longer than the ack timeout, so one batch of it all would
    # have been cut off.
    assert seconds > STANDBY_ACK_TIMEOUT_SECONDS, (behind, seconds)
    outcome = settle_and_check(primary, standby, ledger, acknowledged_min=PROGRESS_ACKS)
    print(f"narrow link: {behind} bytes behind, caught up in {seconds:.1f} s: {outcome}")


# ---------------------------------------------------------------- link chaos (slow)

LINK_FAULTS = ("pause both", "pause down", "pause up", "blackhole", "reset")


def link_chaos_loop(cluster, link_proxies, rounds: int, seed: int) -> dict:
    """`rounds` link faults under load, each drawn at random with a random length: stalls
    one or both ways from a fraction of a second to past the primary's ack timeout,
    blackholes, resets. After each heal the standby must be live again and the clients
    acknowledged again (sync mode throughout: no degrade)."""
    rng = random.Random(seed)
    primary, standby, proxy = proxied_pair(cluster, link_proxies)
    faults: list = []

    async def scenario():
        load = await Load([primary], prefix="lc", seed=seed).start()
        try:
            for round_number in range(1, rounds + 1):
                await wait_standby_live(primary, timeout=PRIMARY_SILENCE_TIMEOUT_SECONDS + 20)
                await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, f"before fault {round_number}")
                fault = rng.choice(LINK_FAULTS)
                # Half ridden out, half past the primary's ack timeout.
                seconds = round(rng.choice([rng.uniform(0.2, 1.0), rng.uniform(STANDBY_ACK_TIMEOUT_SECONDS + 0.3,
                                                                                  STANDBY_ACK_TIMEOUT_SECONDS + 1.5)]), 2)
                if fault.startswith("pause"):
                    proxy.pause(fault.split()[1])
                elif fault == "blackhole":
                    proxy.blackhole()
                else:
                    proxy.drop_connections()
                    seconds = 0.0
                await asyncio.sleep(seconds)
                proxy.restore()
                faults.append((fault, seconds))
            await wait_standby_live(primary, timeout=PRIMARY_SILENCE_TIMEOUT_SECONDS + 20)
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after the last fault")
        finally:
            ledger = await load.stop()
        return ledger

    ledger = run(scenario(), timeout=60 + 30 * rounds)
    outcome = settle_and_check(primary, standby, ledger, acknowledged_min=rounds * PROGRESS_ACKS)
    outcome["cut_off_by_the_primary"] = primary.log().count("acknowledged nothing for")
    outcome["silence_timeouts"] = standby.log().count("nothing from the primary for")
    outcome["connections"] = proxy.connections
    outcome["faults"] = faults
    print(f"link chaos: {rounds} rounds, {outcome}")
    return outcome


@pytest.mark.slow
def test_link_chaos_loop_twenty_faults(cluster, link_proxies):
    link_chaos_loop(cluster, link_proxies, rounds=20, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("limit_bytes", [300_000, 2_345_678, 6_000_001])
def test_disk_full_primary_at_other_sizes(cluster, limit_bytes):
    """The disk fills at other points of the journal (a few thousand to some forty
    thousand orders in), so the failed write cuts a different frame each time."""
    primary_disk_full(cluster, limit_bytes, seed=limit_bytes)


def test_primary_on_a_full_tmpfs_stops_with_enospc_and_recovers_elsewhere(cluster):
    """The same as the file size limit, with a real full filesystem: the journal
    directory is a 600 kB tmpfs (in a user namespace: skipped where that is not allowed).
    After the failure the journal is copied to roomier storage, as an operator would,
    and the node recovers there."""
    import journal
    from fault_helpers import SmallFilesystem

    node = cluster.node("primary", node=LOOP_NODE_SETTINGS)
    journal_directory = node.data_dir / "journal"
    filesystem = SmallFilesystem(journal_directory, DISK_LIMIT_BYTES).start()
    outcome: dict = {}

    async def scenario():
        load = await Load([node], prefix="ns", seed=13).start()
        try:
            await wait_exited(node, 30)
            log = node.log()
            segment = journal_directory / "00000000000000000001.journal"
            assert node.process.returncode == 3, log
            assert f"twinbook: JournalIOError: {segment} at byte offset" in log, log
            assert "[ENOSPC] No space left on device" in log and "Traceback" not in log, log
            full = filesystem.outside(journal_directory)
            outcome["summary"] = journal.inspect(full)
            assert outcome["summary"]["state"] in ("clean", "torn"), outcome
            # Everything acknowledged is in the journal the failed node left.
            on_disk, _, _ = replay_accepted(os.path.dirname(full))
            check_exactly_once(load.ledger, on_disk)
            outcome["acknowledged_when_full"] = len(load.ledger.acknowledged)
            # The operator moves the journal to storage with room and restarts there.
            shutil.copytree(full, journal_directory, dirs_exist_ok=True)
            filesystem.close()
            node.launcher = twinbook_command()
            await node.start_primary_async()
            await load.wait_progress(PROGRESS_ACKS, PROGRESS_TIMEOUT_SECONDS, "after moving the journal")
        finally:
            ledger = await load.stop()
        return ledger

    try:
        node.launcher = filesystem.launcher()
        node.start_primary()
        ledger = run(scenario(), timeout=120)
    finally:
        filesystem.close()
    check_ledger(ledger, acknowledged_min=outcome["acknowledged_when_full"] + PROGRESS_ACKS)
    assert outcome["acknowledged_when_full"] > 500, outcome
    assert node.terminate() == 0, node.log()
    accepted, last_sequence, _ = replay_accepted(node.data_dir)
    check_exactly_once(ledger, accepted)
    twinbook_verify(node)
    print(f"tmpfs full (primary): {outcome['acknowledged_when_full']} acknowledged before ENOSPC, "
          f"tail {outcome['summary']['state']}, {len(ledger.acknowledged)} in all, last sequence {last_sequence}")


def test_a_promoted_standby_whose_disk_fills_stops_with_an_operating_fault(cluster):
    """Promotion turns the standby process into a primary; when that primary's journal
    fails it must exit 3 naming the file, like a primary started as one (it used to
    exit 0: the promoted node's failure was not passed on)."""
    primary = cluster.node("primary", node=LOOP_NODE_SETTINGS).start_primary()
    standby = cluster.node("standby", node=LOOP_NODE_SETTINGS)
    standby.launcher = file_size_limited_command(DISK_LIMIT_BYTES)
    standby.start_standby(primary.replication)
    wait_caught_up(primary, standby)
    primary.kill()

    async def scenario():
        await wait_standby_detached(standby)
        reply = await async_admin(standby, {"command": "promote"}, timeout=30.0)
        assert reply["promoted"], reply
        load = await Load([standby], prefix="pf", seed=14).start()
        try:
            await wait_exited(standby, 30)
            acknowledged = len(load.ledger.acknowledged)
            on_disk, _, _ = replay_accepted(standby.data_dir)
            check_exactly_once(load.ledger, on_disk)
        finally:
            load.ledger.futures.clear()  # nobody serves them any more: not waited for
            await load.stop(answer_timeout=0)
        return acknowledged

    acknowledged = run(scenario(), timeout=90)
    check_failed_on_a_full_disk(standby, DISK_LIMIT_BYTES)
    assert "commit loop failed" in standby.log() and acknowledged > 500, (acknowledged, standby.log())
