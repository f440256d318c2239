"""The multicast feed end to end, in a network namespace the test creates (`unshare -rn`).

One run of tests/multicast_scenario.py (primary + standby with multicast, SIGKILL and
promotion mid-trading, lossless, lossy, late-replaying and late-snapshotting subscribers,
bad retransmission requests) inside a private namespace; the tests below check what it
reports. Nothing is sent in the host's namespace; where namespaces are unavailable the
tests skip and say why.
"""

from __future__ import annotations

import json

import pytest

from node_helpers import ROOT
from tools.netns import namespace_problem, run_in_namespace

SCENARIO_TIMEOUT_SECONDS = 150


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(f"multicast tests need a private network namespace: {problem}")
    workdir = tmp_path_factory.mktemp("multicast")
    result = run_in_namespace(["multicast_scenario.py", "--workdir", str(workdir), "--orders", "1200"],
                              timeout=SCENARIO_TIMEOUT_SECONDS, cwd=str(ROOT / "tests"))
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-4000:]
    return json.loads(result.stdout)


def test_every_subscriber_delivers_up_to_the_last_published_message_after_a_failover(findings):
    assert findings["promoted"]
    assert findings["target"] > findings["before_failover"] > 0
    for name, subscriber in findings["subscribers"].items():
        assert subscriber["delivered_through"] == findings["target"], name


def test_a_lossy_subscriber_reconstructs_the_same_books_and_trades_as_a_lossless_one_and_the_engine(findings):
    lossless = findings["subscribers"]["lossless"]
    lossy = findings["subscribers"]["lossy"]
    assert lossy["dropped"] > 0 and lossy["gaps_requested"] > 0 and lossy["retransmitted_messages"] > 0
    assert lossy["duplicated"] > 0 and lossy["reordered"] > 0 and lossy["duplicates"] > 0
    assert lossy["snapshots"] == 0
    assert lossy["digest"] == lossless["digest"]
    assert findings["engine_trades"] > 0
    for subscriber in (lossless, lossy):
        assert subscriber["depth_matches_engine"]
        assert subscriber["trades"] == findings["engine_trades"]
        assert subscriber["trades_match_engine"]


def test_a_late_joiner_of_a_young_session_replays_it_whole_from_the_retransmission_server(findings):
    late = findings["subscribers"]["late_replay"]
    assert late["first_sequence"] == 1 and late["snapshots"] == 0
    assert late["digest"] == findings["subscribers"]["lossless"]["digest"]
    assert late["depth_matches_engine"] and late["trades_match_engine"]


def test_a_late_joiner_that_takes_a_snapshot_ends_with_the_engines_books(findings):
    late = findings["subscribers"]["late_snapshot"]
    assert late["snapshots"] == 1 and late["first_sequence"] > 1
    assert late["depth_matches_engine"] and late["trades_match_engine"]


def test_the_retransmission_server_refuses_bad_requests_and_keeps_serving_others(findings):
    probe = findings["retransmission"]
    assert probe["oversized"] == {"reason": "frame_too_large", "closed": True}
    assert probe["malformed"] == {"reason": "malformed", "closed": True}
    assert probe["served_after_oversized"] and probe["served_after_malformed"]
    assert probe["refusals_on_one_connection"] == ["too_many", "not_published", "wrong_session", "bad_range", "served"]
