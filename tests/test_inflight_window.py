"""The sync primary's in-flight window, with real processes on loopback.

A standby stopped (SIGSTOP) under load: the primary journals at most the window past
what the standby made durable, stops reading its clients' sockets meanwhile, and after
the primary is killed and the standby promoted nothing acknowledged is lost. The
window's arithmetic is checked without processes too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from node_helpers import (  # noqa: F401
    AckLedger,
    async_admin,
    check_exactly_once,
    close_all,
    cluster,
    replay_accepted,
    run,
    start_load,
    wait_answered,
    wait_caught_up,
)
from replica.replication import InFlightWindow
from test_replication_failover import MEMBERS, promote

WINDOW_RECORDS = 100


def test_the_window_counts_records_and_bytes_past_the_standbys_durable_sequence():
    window = InFlightWindow(100, 1_000)
    assert window.room(0, 0) == (100, 1_000)
    window.journaled(40, 600)
    window.journaled(90, 300)
    assert window.room(90, 0) == (10, 100)
    window.standby_durable(39)  # part of the first batch: it still counts in full
    assert window.room(90, 39) == (49, 100)
    window.standby_durable(40)
    assert window.room(90, 40) == (50, 700)
    window.journaled(200, 900)  # a batch past the bound (journaled before the check)
    assert window.room(200, 90) == (0, 0)
    with pytest.raises(ValueError):
        InFlightWindow(0, 10)


def test_a_stopped_standby_holds_the_primary_within_the_window_and_nothing_acknowledged_is_lost(cluster):
    primary = cluster.node("primary")
    with open(primary.config_path, "a", encoding="utf-8") as config:
        config.write(f"[window]\nrecords_max = {WINDOW_RECORDS}\n")
    primary.start_primary()
    standby = cluster.standby("standby", primary.replication)
    wait_caught_up(primary, standby)
    ledger = AckLedger()
    observed: dict = {"ahead_max": 0, "paused": False}

    async def scenario():
        clients, stop, tasks = await start_load([primary, standby], ledger, prefix="window", members=MEMBERS)
        try:
            while len(ledger.acknowledged) < 300:
                await asyncio.sleep(0.02)
            os.kill(standby.process.pid, signal.SIGSTOP)
            try:
                # Under load (3 clients, 64 orders in flight each: more than the window),
                # for a while: the window fills, then holds.
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    status = await async_admin(primary, {"command": "status"})
                    ahead = status["last_sequence"] - status["standby_durable_sequence"]
                    observed["ahead_max"] = max(observed["ahead_max"], ahead)
                    observed["paused"] = observed["paused"] or status["clients_paused"]
                    if "acknowledged_after_a_second" not in observed and deadline - time.monotonic() < 1.0:
                        observed["acknowledged_after_a_second"] = len(ledger.acknowledged)
                    await asyncio.sleep(0.02)
                observed["acknowledged_while_stopped"] = len(ledger.acknowledged)
                primary.kill()
            finally:
                os.kill(standby.process.pid, signal.SIGCONT)
            reply = await asyncio.get_running_loop().run_in_executor(None, promote, standby)
            assert reply["promoted"], reply
            await asyncio.sleep(0.5)  # orders flow on the new primary
            stop.set()
            await asyncio.gather(*tasks)
            await wait_answered(ledger, 30)
        finally:
            await close_all(*clients)

    run(scenario(), timeout=120)
    assert observed["paused"], observed
    assert 0 < observed["ahead_max"] <= WINDOW_RECORDS, observed
    # Sync mode: with the standby stopped, what it had made durable before reaches the
    # clients within a second (loopback); after that nothing more is acknowledged.
    assert observed["acknowledged_while_stopped"] == observed["acknowledged_after_a_second"], observed
    assert ledger.unanswered == 0 and ledger.failures == 0 and not ledger.conflicts
    assert standby.terminate() == 0
    accepted, _, _ = replay_accepted(standby.data_dir)
    check_exactly_once(ledger, accepted)
