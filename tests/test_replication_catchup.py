"""A real primary and a real standby on loopback: catch-up from disk, then live.

The standby's journal comes out byte for byte the primary's (the link carries journal
frames unchanged) and its state digest equals the primary's at the same applied sequence.
"""

from __future__ import annotations

import asyncio

from node_helpers import (  # noqa: F401
    AckLedger,
    close_all,
    cluster,
    connect,
    place_orders,
    run,
    send_orders,
    wait_answered,
    wait_caught_up,
    wait_identical_journals,
    wait_until,
)

MEMBERS = ("M1", "M2", "M3")


def assert_replicas_equal(primary, standby) -> tuple[dict, dict]:
    mine, theirs = wait_caught_up(primary, standby)
    assert theirs["applied_sequence"] == mine["applied_sequence"]
    assert theirs["state_digest"] == mine["state_digest"], (mine, theirs)
    assert mine["divergence"] is None and theirs["divergence"] is None, (mine, theirs)
    assert mine["standby_attached"] and theirs["primary_connected"], (mine, theirs)
    wait_identical_journals(primary, standby)
    return mine, theirs


def test_a_late_standby_catches_up_to_the_same_digest_and_bytes(cluster):
    primary = cluster.primary("primary")
    # About 1.5 MB of journal: several catch-up batches, and digests compared over the link
    # at every 1024th record.
    accepted = run(place_orders(primary, 12_000), timeout=90)
    assert accepted == 12_000
    before = primary.status()
    assert before["last_sequence"] > 12_000 and not before["standby_attached"]

    standby = cluster.standby("standby", primary.replication)
    mine, theirs = assert_replicas_equal(primary, standby)
    assert mine["last_sequence"] >= before["last_sequence"]  # (+ a digest checkpoint, maybe)
    assert theirs["role"] == "standby" and theirs["epoch"] == 0 and theirs["promotable"]
    # Sync mode: from now on the primary waits for this standby (whose acks say it has all).
    wait_until(lambda: (lambda s: s["standby_required"] and s["standby_durable_sequence"] == s["last_sequence"])(
        primary.status()), 10, what="the primary counting the standby's acks")

    # The standby dies: sync mode pauses acknowledgements; restarted, it resumes after its
    # own last record (not from the start) and the paused orders are acknowledged.
    standby.kill()
    wait_until(lambda: not primary.status()["standby_attached"], 10, what="primary notices the standby gone")

    async def paused_then_released():
        client = await connect(primary, "M4")
        try:
            futures = [client.send_place(f"late-{index}", "MSFT", "buy", "limit", 1, price=41990 - index % 20)
                       for index in range(300)]
            done, _ = await asyncio.wait(futures, timeout=0.6)
            assert not done, "acknowledged without the standby in sync mode"
            standby.following = primary.replication
            await standby.start_async()
            answers = await asyncio.wait_for(asyncio.gather(*futures), 20)
            assert all(type(answer).__name__ == "OrderAccepted" for answer in answers)
        finally:
            await close_all(client)

    run(paused_then_released(), timeout=60)
    assert f"attached at sequence {mine['last_sequence']};" in primary.log()
    assert_replicas_equal(primary, standby)


def test_live_replication_under_load_keeps_the_digests_equal(cluster):
    primary = cluster.primary("primary")
    ledger = AckLedger()
    standby = None

    async def load():
        nonlocal standby
        clients = [await connect(primary, member) for member in MEMBERS]
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(send_orders(client, ledger, stop, prefix="live", seed=seed))
                 for seed, client in enumerate(clients)]
        await asyncio.sleep(0.4)
        # Attach mid-load: catch-up from disk hands over to the live stream while orders flow.
        standby = cluster.node("standby")
        standby.role, standby.following = "standby", primary.replication
        await standby.start_async()
        await asyncio.sleep(1.2)
        stop.set()
        await asyncio.gather(*tasks)
        await wait_answered(ledger, 20)
        await close_all(*clients)

    run(load(), timeout=60)
    assert ledger.unanswered == 0 and ledger.failures == 0
    assert len(ledger.acknowledged) > 500, ledger.other_answers
    mine, theirs = assert_replicas_equal(primary, standby)
    assert mine["released_sequence"] == mine["last_sequence"]
