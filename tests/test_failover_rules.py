"""The failover rules with real processes on loopback: the watchdog keeps watching
after a promotion (it re-arms for the new pair once the old primary has rejoined and
promotes it back when the new primary dies), logs every decision once, and `promote`
reaching a primary answers "already primary".
"""

from __future__ import annotations

import json
import re
import subprocess

from node_helpers import (  # noqa: F401
    HOST,
    ROOT,
    cluster,
    place_orders,
    run,
    twinbook_command,
    wait_caught_up,
    wait_until,
)


def test_the_watchdog_rearms_for_the_new_pair_and_logs_each_decision_once(cluster):
    first = cluster.primary("first")
    second = cluster.standby("second", first.replication)
    assert run(place_orders(first, 100), timeout=60) == 100
    wait_caught_up(first, second)
    watchdog = cluster.watchdog(first, second, timeout_ms=400, once=False)
    wait_until(lambda: "standby ready" in watchdog.log(), 15, what="the watchdog armed")

    first.kill()
    wait_until(lambda: second.status().get("role") == "primary", 15, what="the first promotion")
    wait_until(lambda: "re-armed" in watchdog.log(), 10, what="the watchdog re-arming")
    # The old primary rejoins as the new pair's standby; the watchdog watches it.
    first.start_standby(second.replication)
    wait_caught_up(second, first)
    wait_until(lambda: "standby ready" in watchdog.log().split("re-armed")[-1], 15, what="the watchdog re-armed")
    second.kill()
    status = wait_until(lambda: (lambda s: s.get("role") == "primary" and s)(first.status()), 15,
                        what="the promotion back")
    assert status["epoch"] == 2, status
    assert watchdog.running
    lines = [line.split(" ", 1)[-1] for line in watchdog.log().splitlines() if line.strip()]
    # Once per decision, not once per poll (a poll every 80 ms for several seconds).
    shapes = [re.sub(r"\d+", "#", line) for line in lines]
    assert all(earlier != later for earlier, later in zip(shapes, shapes[1:])), lines
    assert len(lines) < 40 and sum("promote ->" in line for line in lines) == 2, lines


def test_promote_reaching_a_primary_answers_already_primary(cluster):
    primary = cluster.primary("primary")
    result = subprocess.run(twinbook_command("promote", f"{HOST}:{primary.admin_address[1]}"), cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    reply = json.loads(result.stdout)
    assert result.returncode == 1 and reply["already_primary"] and reply["error"] == "already primary", reply
    assert reply["epoch"] == 0
