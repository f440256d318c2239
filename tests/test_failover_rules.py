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
    result = subprocess.run(twinbook_command("promote", *primary.admin_arguments(), f"{HOST}:{primary.admin_address[1]}"), cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    reply = json.loads(result.stdout)
    assert result.returncode == 1 and reply["already_primary"] and reply["error"] == "already primary", reply
    assert reply["epoch"] == 0


def test_status_shows_every_node_and_whether_their_digests_agree(cluster):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    assert run(place_orders(primary, 1_100), timeout=60) == 1_100  # past one digest interval
    wait_caught_up(primary, standby)
    result = subprocess.run(twinbook_command("status", "--json", *primary.admin_arguments(), f"{HOST}:{primary.admin_address[1]}",
                                             f"{HOST}:{standby.admin_address[1]}"),
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    view = json.loads(result.stdout)
    roles = [node["role"] for node in view["nodes"]]
    assert roles == ["primary", "standby"] and view["all_answered"] and view["digests_agree"] is True, view
    assert view["common_sequence"] >= 1024
    assert {node["replication_lag"] for node in view["nodes"]} == {0}, view
    assert len({node["digest_at_common_sequence"] for node in view["nodes"]}) == 1
    # The table form, and a node that does not answer: exit 1.
    standby.kill()
    result = subprocess.run(twinbook_command("status", *primary.admin_arguments(), f"{HOST}:{primary.admin_address[1]}",
                                             f"{HOST}:{standby.admin_address[1]}"),
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "primary" in result.stdout and "not answering" in result.stdout, result.stdout


def test_promote_force_beside_a_live_primary_fences_it_so_one_node_acknowledges(cluster):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    assert run(place_orders(primary, 100), timeout=60) == 100
    wait_caught_up(primary, standby)
    # Without --force the standby refuses: its primary beats.
    refused = subprocess.run(twinbook_command("promote", *standby.admin_arguments(), f"{HOST}:{standby.admin_address[1]}"), cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "the primary is alive" in refused.stdout, refused.stdout
    result = subprocess.run(twinbook_command("promote", *standby.admin_arguments(), "--force", "--fence", f"{HOST}:{primary.admin_address[1]}",
                                             f"{HOST}:{standby.admin_address[1]}"),
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    reply = json.loads(result.stdout)
    assert result.returncode == 0 and reply["promoted"] and reply["epoch"] == 1, reply
    assert reply["fence"]["fenced"] is True, reply
    # The old primary stops (exit 4); the new one acknowledges.
    assert primary.process.wait(timeout=15) == 4, primary.log()
    assert "fenced: a node of epoch 1 exists" in primary.log()
    assert run(place_orders(standby, 50, prefix="after"), timeout=60) == 50


def test_tests_and_benchmarks_take_their_ports_below_the_ephemeral_range_from_the_one_helper():
    import tools.bench_failover
    import tools.bench_fix
    import node_helpers
    from tools.ports import LOWEST_PORT, ephemeral_port_range, free_ports

    low, _high = ephemeral_port_range()
    assert node_helpers.free_ports is free_ports
    assert tools.bench_failover.free_ports is free_ports and tools.bench_fix.free_ports is free_ports
    for _ in range(20):
        ports = free_ports(4)
        assert len(set(ports)) == 4 and all(LOWEST_PORT <= port < low for port in ports), ports


def test_the_drill_takes_its_ports_below_the_ephemeral_range_and_refuses_taken_ones():
    import socket

    from tools.ports import LOWEST_PORT, ephemeral_port_range, free_port_base, ports_free

    low, _high = ephemeral_port_range()
    base = free_port_base(8)
    assert LOWEST_PORT <= base and base + 8 <= low and ports_free(base, 8)
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", base + 5))
        listener.listen()
        assert not ports_free(base, 8)
        result = subprocess.run(twinbook_command("demo", "--seconds", "8", "--port-base", str(base)), cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "not all free" in result.stderr, result.stderr
    finally:
        listener.close()


def test_a_watchdog_asking_for_a_one_ms_threshold_cannot_switch_the_alive_guard_off(cluster):
    primary = cluster.primary("primary")
    standby = cluster.standby("standby", primary.replication)
    assert run(place_orders(primary, 20), timeout=60) == 20
    wait_caught_up(primary, standby)
    # A beat is always less than 1.5 beat periods old on a live link; with the request's
    # 1 ms taken at its word, the guard would let this promotion through.
    for _attempt in range(5):
        reply = standby.admin({"command": "promote", "primary_timeout_ms": 1}, holder="watchdog")
        assert reply["promoted"] is False and "the primary is alive" in reply["error"], reply
    assert standby.status()["role"] == "standby"
    assert primary.running
