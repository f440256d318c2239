"""Failover with real processes on loopback: the primary SIGKILLed under load, the real
`twinbook watchdog` promotes the standby, clients fail over to it; the old primary rejoins
as a standby (its never-acknowledged tail cut into `.divergent`); an old-epoch primary
steps down when a node of the newer epoch reaches it.

Invariant 5: every order a client saw acknowledged is on the new primary exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from node_helpers import (  # noqa: F401
    HOST,
    ROOT,
    AckLedger,
    async_admin,
    check_exactly_once,
    close_all,
    cluster,
    endpoints_client,
    evidence_files,
    link_proxies,
    place_orders,
    replay_accepted,
    run,
    start_load,
    twinbook_command,
    wait_answered,
    wait_caught_up,
    wait_identical_journals,
    wait_until,
)
from replica.link_journal import count_frames
from statemachine.events import OrderAccepted

MEMBERS = ("M1", "M2", "M3")


def promote(node) -> dict:
    """`twinbook promote` on a standby whose primary was just killed. It is run once the
    standby has seen its link go: until then a standby whose primary beat within the
    last second refuses (StandbyCore.primary_alive), and noticing a SIGKILLed peer takes
    it a few milliseconds, longer when it is writing a batch to disk."""
    import json

    wait_until(lambda: not node.status().get("primary_connected", True), timeout=15,
               what=f"{node.data_dir.name} seeing its primary's link go")
    result = subprocess.run(twinbook_command("promote", f"{HOST}:{node.admin_address[1]}", *node.admin_arguments()), cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


async def wait_promoted(node, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = await async_admin(node, {"command": "status"}, timeout=0.5)
        except (OSError, asyncio.TimeoutError, ValueError):
            status = {}
        if status.get("role") == "primary":
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"{node.data_dir.name} not promoted within {timeout} s:\n{node.log()}")


def failover_under_load(cluster, *, load_seconds: float, after_seconds: float, timeout_ms: int = 400) -> dict:
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    wait_caught_up(primary, standby)
    watchdog = cluster.watchdog(primary, standby, timeout_ms=timeout_ms)
    wait_until(lambda: "primary alive" in watchdog.log(), 15, what="the watchdog watching")
    ledger = AckLedger()
    times: dict = {}

    async def load():
        clients, stop, tasks = await start_load([primary, standby], ledger, prefix="fo", members=MEMBERS)
        await asyncio.sleep(load_seconds)
        times["acknowledged_before_kill"] = len(ledger.acknowledged)
        times["killed"] = time.monotonic()
        primary.kill()
        status = await wait_promoted(standby, 15)
        times["promoted"] = time.monotonic()
        times["promoted_status"] = status
        await asyncio.sleep(after_seconds)  # orders flow on the new primary
        stop.set()
        await asyncio.gather(*tasks)
        await wait_answered(ledger, 30)
        times["reconnects"] = [client.reconnects for client in clients]
        # Every acknowledged order is known to the new primary, through the clients too.
        for client in clients:
            ids = sorted(order_id for (member, _), order_id in ledger.acknowledged.items() if member == client.member)
            for start in range(0, len(ids), 500):
                statuses = await asyncio.wait_for(
                    asyncio.gather(*(client.order_status(order_id) for order_id in ids[start:start + 500])), 30)
                unknown = [status for status in statuses if status.status not in ("resting", "closed")]
                assert not unknown, unknown[:3]
        await close_all(*clients)

    run(load(), timeout=load_seconds + after_seconds + 120)
    assert watchdog.wait(10) == 0
    assert "promote" in watchdog.log()
    assert ledger.unanswered == 0 and ledger.failures == 0 and not ledger.conflicts
    after_kill = [key for key, at in ledger.acknowledged_at.items() if at > times["killed"]]
    assert times["acknowledged_before_kill"] > 100 and len(after_kill) > 50, (times, ledger.other_answers)
    assert all(count >= 1 for count in times["reconnects"]), times["reconnects"]
    status = standby.status()
    assert status["role"] == "primary" and status["epoch"] == 1, status
    assert standby.terminate() == 0
    accepted, last_sequence, digest = replay_accepted(standby.data_dir)
    # (A digest checkpoint may have been journaled between the status and the stop.)
    assert last_sequence >= status["last_sequence"]
    if last_sequence == status["last_sequence"]:
        assert digest == status["state_digest"]
    check_exactly_once(ledger, accepted)
    return {"ledger": ledger, "promotion_seconds": times["promoted"] - times["killed"], "primary": primary,
            "standby": standby}


def test_sigkill_under_load_watchdog_promotes_and_nothing_acknowledged_is_lost(cluster):
    outcome = failover_under_load(cluster, load_seconds=1.0, after_seconds=1.0)
    ledger = outcome["ledger"]
    print(f"failover: promoted {outcome['promotion_seconds'] * 1000:.0f} ms after SIGKILL; "
          f"{len(ledger.acknowledged)} acknowledged ({ledger.resubmission_answers} as resubmissions), "
          f"other answers {ledger.other_answers}")
    assert outcome["promotion_seconds"] < 10


@pytest.mark.slow
@pytest.mark.parametrize("load_seconds", [0.3, 1.7, 3.1])
def test_failover_under_load_repeatedly(cluster, load_seconds):
    failover_under_load(cluster, load_seconds=load_seconds, after_seconds=1.5, timeout_ms=300)


def test_the_old_primary_rejoins_cutting_its_never_acknowledged_tail(cluster, link_proxies):
    primary = cluster.primary("primary")
    proxy = link_proxies(primary.replication)
    standby = cluster.standby("standby", proxy.address)
    assert run(place_orders(primary, 2_000), timeout=60) == 2_000
    common = wait_caught_up(primary, standby)[0]["last_sequence"]
    tail = 60

    async def scenario():
        client = endpoints_client([primary, standby], "M2")
        await asyncio.wait_for(client.connect(), 15)
        try:
            # The link stalls: the primary journals (and fsyncs) these, the standby never
            # gets them, so in sync mode none is acknowledged.
            proxy.pause()
            futures = [client.send_place(f"tail-{index}", "MSFT", "sell", "limit", 1 + index % 3, price=42010 + index % 9)
                       for index in range(tail)]

            async def journaled():
                status = await async_admin(primary, {"command": "status"})
                return status["durable_sequence"] >= common + tail and status

            deadline = time.monotonic() + 10
            while not (status := await journaled()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert status, "the primary did not journal the tail"
            assert status["released_sequence"] == common and not any(future.done() for future in futures), status
            primary.kill()
            proxy.close()  # what it held is lost with the link
            standby_status = await async_admin(standby, {"command": "status"})
            assert standby_status["last_sequence"] == common, standby_status
            reply = await asyncio.get_running_loop().run_in_executor(None, promote, standby)
            assert reply["promoted"] and reply["epoch"] == 1, reply
            # The client fails over and resubmits: new orders on the new primary.
            answers = await asyncio.wait_for(asyncio.gather(*futures), 30)
            assert all(type(answer) is OrderAccepted for answer in answers), answers[:3]
            assert client.reconnects >= 1
            return status["last_sequence"]
        finally:
            await close_all(client)

    old_last = run(scenario(), timeout=90)
    assert not evidence_files(primary)

    # The old primary comes back as a standby of the new one.
    primary.start_standby(standby.replication)
    new, old = wait_caught_up(standby, primary)
    assert old["role"] == "standby" and old["epoch"] == 1 and new["epoch"] == 1
    assert old["state_digest"] == new["state_digest"] and old["divergence"] is None
    wait_identical_journals(primary, standby)
    (divergent,) = evidence_files(primary)
    cut = divergent.read_bytes()
    assert cut and count_frames(cut) == old_last - common, (len(cut), old_last, common)
    assert "cutting" in primary.log() and "divergent tail kept" in primary.log()
    # Each tail order is on the new primary once: the resubmission, not the cut original.
    accepted, _, _ = replay_accepted(standby.data_dir)
    for index in range(tail):
        assert len(accepted[("M2", f"tail-{index}")]) == 1
    assert all(len(ids) == 1 for ids in accepted.values())


def test_an_old_epoch_primary_steps_down_when_the_new_epoch_reaches_it(cluster):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    assert run(place_orders(primary, 300), timeout=60) == 300
    wait_caught_up(primary, standby)
    primary.kill()
    reply = promote(standby)
    assert reply["promoted"] and reply["epoch"] == 1, reply
    assert standby.terminate() == 0

    # A node of the new epoch: a copy of the promoted standby's data.
    copy = cluster.node("copy")
    shutil.copytree(standby.data_dir, copy.data_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node.json"))
    # The old primary, restarted on its old data, is still at epoch 0 ...
    primary.start_primary()
    assert primary.status()["epoch"] == 0
    # ... until the newer epoch reaches its replication port: then it stops at once.
    copy.start_standby(primary.replication)
    assert primary.process.wait(timeout=15) == 4, primary.log()
    assert "stepping down" in primary.log()
    status = wait_until(lambda: (lambda s: s["fatal"] and s)(copy.status()), 10, what="the copy's refusal")
    assert status["epoch"] == 1 and "epoch" in status["fatal"] and not status["promotable"], status

    # Its ports are closed: no client can get anything accepted there.
    async def refused():
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(*primary.client), 2)

    run(refused())
