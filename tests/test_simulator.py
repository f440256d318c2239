"""The deterministic cluster simulator (replica/simulation/) and the fixes it led to.

CI runs a fixed sample of seeds; `pytest -m slow` runs a sweep of two thousand. A failing
seed's message carries the seed and the trace's last events; `twinbook simulate --seed N
--steps M` replays it exactly.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from replica.errors import LinkProtocolError
from replica.replication import Ack, Frames, PrimaryBeat, Refused, ReleasePolicy, StandbyLinkCore
from replica.simulation import Simulator, run_seed
from replica.standby import PRIMARY_ALIVE_DEFAULT_MS, LinkRefused, StandbyCore
from tools.cli import cli
from replica.watchdog import WatchdogCore
from statemachine import Exchange

CI_SEEDS = range(1, 17)
CI_STEPS = 12_000


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory):
    """The CI sample's results, each seed run once for the whole module."""
    results: dict = {}
    directory = str(tmp_path_factory.mktemp("ci-seeds"))

    def result_of(seed: int):
        if seed not in results:
            results[seed] = run_seed(seed, CI_STEPS, directory)
        return results[seed]

    return result_of


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_seed_keeps_every_property_under_faults(seed, ci_runs):
    result = ci_runs(seed)
    assert result.ok, result.describe()
    statistics = result.statistics
    # The run did real work: orders acknowledged, records replicated, and the final
    # checks ran over them (they are vacuous otherwise).
    assert statistics["orders_acknowledged"] > 100, statistics
    assert statistics["records_released"] > 100, statistics
    assert statistics["journal_checks"] >= 4, statistics


def test_the_sample_injects_every_kind_of_fault(ci_runs):
    kinds = set()
    promotions = 0
    for seed in CI_SEEDS:
        result = ci_runs(seed)
        assert result.ok, result.describe()
        kinds.update(kind for kind, count in result.statistics.items() if count)
        promotions += result.statistics["promotions"]
    for kind in ("crash", "cut_link", "cut_client", "partition_link", "partition_watchdog", "slow_fsync",
                 "disk_full", "corrupt_frames", "corrupt_frames_refused", "read_fault", "read_faults_happened",
                 "bit_flip", "rebuilt_after_corruption", "snapshot_flip", "snapshots_written",
                 "recoveries_from_snapshot", "snapshots_skipped_corrupt"):
        assert kind in kinds, (kind, sorted(kinds))
    assert promotions >= 8


def test_the_same_seed_replays_exactly(tmp_path):
    first = run_seed(5, 6000, str(tmp_path / "first"))
    second = run_seed(5, 6000, str(tmp_path / "second"))
    assert first.trace_digest == second.trace_digest
    assert first.statistics == second.statistics
    assert first.trace_tail == second.trace_tail


def test_different_seeds_take_different_paths(tmp_path):
    digests = {run_seed(seed, 3000, str(tmp_path)).trace_digest for seed in (1, 2, 3)}
    assert len(digests) == 3


def test_the_checker_catches_a_primary_that_releases_before_its_standby_is_durable(tmp_path, monkeypatch):
    # A planted bug: sync replication that does not wait for the standby. Some seed
    # must then lose a released record across a failover.
    monkeypatch.setattr(ReleasePolicy, "point", lambda self, local_sequence: local_sequence)
    for seed in range(1, 21):
        result = run_seed(seed, 8000, str(tmp_path))
        if not result.ok:
            assert any("released" in violation or "acknowledged" in violation for violation in result.violations)
            return
    pytest.fail("20 seeds did not expose a primary that ignores its standby")


def test_the_pipelined_primary_never_releases_past_what_its_standby_reported_durable(tmp_path, monkeypatch):
    # The commit loop releases batch N while batch N+1's fdatasync runs; the checker
    # looks at every release. A planted bug that ignores the standby is caught at the
    # release itself on the very first seed, not only when a failover loses a record.
    monkeypatch.setattr(ReleasePolicy, "point", lambda self, local_sequence: local_sequence)
    result = run_seed(1, 4000, str(tmp_path))
    assert any("with the standby durable only up to" in violation for violation in result.violations)


def test_the_pipelined_primary_never_releases_past_its_own_durable_sequence(tmp_path, monkeypatch):
    # A planted bug: release one record beyond the durable point (the batch whose
    # fdatasync is still in flight under pipelining).
    original = ReleasePolicy.point
    monkeypatch.setattr(ReleasePolicy, "point", lambda self, local_sequence: original(self, local_sequence) + 1)
    result = run_seed(1, 4000, str(tmp_path))
    assert any("durable" in violation and "released up to" in violation for violation in result.violations)


def test_the_checker_refuses_releases_out_of_sequence_order(tmp_path):
    simulator = Simulator(1, str(tmp_path))
    node = simulator.nodes["A"]
    node.durable_sequence = 10
    simulator.checker.check_release_rules(node, 1, 5)
    assert simulator.checker.violations == []  # in order: the next release starts at 6
    simulator.checker.check_release_rules(node, 7, 8)
    assert any("out of sequence order" in violation for violation in simulator.checker.violations)


def test_the_checker_refuses_a_journal_record_no_primary_wrote(tmp_path):
    simulator = Simulator(1, str(tmp_path))
    simulator.nodes["A"].start_primary()
    simulator.checker.origin.clear()  # as if the records had come from nowhere
    simulator.checker.journal_opened(simulator.nodes["A"])
    assert simulator.checker.violations and "no primary wrote" in simulator.checker.violations[0]


# ---------------------------------------------------------------- the fixes it found


def test_the_fault_budget_never_damages_the_only_copy_of_a_released_record(tmp_path):
    # Seeds 34 and 121: a bit was flipped in the journal of a promoted node that alone
    # held what it had released, because the operator did not know it was promoted.
    # The budget is now judged from the journals themselves.
    simulator = Simulator(1, str(tmp_path))
    primary, standby = simulator.nodes["A"], simulator.nodes["B"]
    primary.start_primary()
    assert simulator.checker.released_records, "the start-up records were released"
    assert simulator.checker.holds_everything_released(primary)
    assert not simulator.checker.holds_everything_released(standby)  # empty: holds nothing
    primary.crash("test")
    assert simulator.checker.holds_everything_released(primary)  # durable, so it survived
    # Seed 1224: damage anywhere in a journal, even past the released records, makes
    # recovery refuse all of it, so that node no longer counts as a holder.
    primary.disk.flip_bit(simulator.rng)
    assert not simulator.checker.holds_everything_released(primary)


@pytest.mark.parametrize("seed", (34, 38, 107, 121, 174, 953, 1224, 2309, 3255, 4361, 90106, 90197, 90243))
def test_the_seeds_of_the_long_sweeps_that_failed_now_pass(seed, tmp_path):
    # 34 and 121 lost a released record, 38 and 107 did not make progress after the
    # heal, 174 promoted a rebuilt, empty node, 953 let a late status undo a degrade,
    # 1224 damaged both journals, 2309 fenced the newest primary, 3255 promoted past
    # a primary that acknowledged alone, 4361 stopped on a flipped length field, 90197
    # never settled (the simulated operator's promote went out on a connection still
    # being set up, and was lost), 90106 and 90243 found two holes of the first
    # epoch-boundary rejoin (a restarted primary's start point known only to the
    # standby; an epoch fence kept high after a cut; see
    # docs/RELIABILITY.md). New fault kinds have changed the paths most of them take
    # since, so unit tests pin the fixes; these stay as samples.
    result = run_seed(seed, 20_000, str(tmp_path))
    assert result.ok, result.describe()


def test_watchdog_refuses_a_standby_still_in_an_older_epoch():
    # Seed 17: an old primary restarted as standby while the new one was down looked
    # caught up by sequence numbers alone.
    watchdog = WatchdogCore(400)
    watchdog.primary_seen({"role": "primary", "epoch": 1, "released_sequence": 438}, 0)
    watchdog.standby_seen({"role": "standby", "epoch": 0, "durable_sequence": 469, "promotable": True}, 900)
    decision = watchdog.decide(1000)
    assert decision.action == "refuse" and "epoch" in decision.reason
    watchdog.standby_seen({"role": "standby", "epoch": 1, "durable_sequence": 469, "promotable": True}, 950)
    assert watchdog.decide(1000).action == "promote"


def test_standby_refuses_promotion_while_its_primary_beats():
    # Seed 15: a promote held up by the network arrived after the old primary had
    # been restarted; a standby attached to a live primary must not take over.
    core = StandbyCore(Exchange(), cluster_id=1)
    core.connected = True
    core.beat(PrimaryBeat(0, 10, 10, 10, 0, 0), now_ns=5_000)
    alive_ns = PRIMARY_ALIVE_DEFAULT_MS * 1_000_000
    assert core.primary_alive(5_000 + alive_ns - 1)
    assert not core.primary_alive(5_000 + alive_ns)
    # One promotion rule: the watchdog's threshold, when it sends one, is the guard's.
    assert core.primary_alive(5_000 + 399_999_999, 400) and not core.primary_alive(5_000 + 400_000_000, 400)
    # A link whose peer has closed it (TCP state) is no live primary, beats or not.
    assert not core.primary_alive(5_001, 400, link_established=False)
    core.link_lost()
    assert not core.primary_alive(5_001)


def test_a_restarted_sync_primary_waits_for_the_standby_it_had():
    # Seed 15 as well: a primary restarted standalone could acknowledge beside a
    # promoted standby. The data directory's marker makes it wait instead.
    restarted = ReleasePolicy("sync", standby_required=True)
    assert restarted.point(100) == 0
    assert restarted.standby_durable(60) and restarted.point(100) == 60
    assert ReleasePolicy("async", standby_required=True).point(100) == 100
    fresh = ReleasePolicy("sync")
    assert fresh.point(100) == 100
    assert fresh.standby_live() is True and fresh.standby_live() is False
    assert fresh.can_degrade(standby_live=True) is not None
    assert fresh.can_degrade(standby_live=False) is None


def test_standby_link_core_switches_to_live_when_caught_up_and_notices_silence():
    link = StandbyLinkCore(11, now_ns=0, ack_timeout_ns=3_000)
    assert link.catch_up_range(20) == (11, 20)
    link.frames_sent(11, 20, now_ns=100)
    assert link.catch_up_range(25) == (21, 25)
    link.frames_sent(21, 25, now_ns=200)
    assert link.catch_up_range(25) is None and link.live
    assert not link.overdue(3_100)
    assert link.overdue(3_101)
    assert link.ack(Ack(25, 25, 0, 0), now_ns=3_200) and not link.overdue(10_000)


SWEEP_SEEDS = range(1_000, 3_000)  # about 40 minutes on one core


@pytest.mark.slow
def test_sweep_of_two_thousand_seeds(tmp_path):
    failures = []
    for seed in SWEEP_SEEDS:
        result = run_seed(seed, 20_000, str(tmp_path))
        if not result.ok:
            failures.append(result.describe())
    assert not failures, f"{len(failures)} of {len(SWEEP_SEEDS)} seeds failed:\n\n" + "\n\n".join(failures[:3])


# ---------------------------------------------------------------- failure paths of the cores


def test_an_ack_beyond_what_was_sent_is_a_protocol_error():
    link = StandbyLinkCore(1, now_ns=0, ack_timeout_ns=1_000)
    link.frames_sent(1, 5, now_ns=0)
    with pytest.raises(LinkProtocolError, match="beyond the 5 sent"):
        link.ack(Ack(6, 0, 0, 0), now_ns=1)


def test_frames_that_do_not_follow_the_last_sent_are_a_protocol_error():
    link = StandbyLinkCore(1, now_ns=0, ack_timeout_ns=1_000)
    link.frames_sent(1, 5, now_ns=0)
    with pytest.raises(LinkProtocolError, match="do not follow"):
        link.frames_sent(7, 9, now_ns=1)


def test_standby_refuses_a_first_reply_that_is_not_an_answer_to_its_hello():
    core = StandbyCore(Exchange(), cluster_id=1)
    with pytest.raises(LinkProtocolError, match="first reply was PrimaryBeat"):
        core.first_reply(PrimaryBeat(0, 1, 1, 1, 0, 0))


def test_standby_refuses_to_apply_frames_that_are_not_durable():
    core = StandbyCore(Exchange(), cluster_id=1)
    with pytest.raises(LinkProtocolError, match="before durable"):
        core.apply_frames(Frames(1, 3, b"", 0), chain_before=0, durable_sequence=2)


def test_a_fatal_refusal_makes_the_standby_unpromotable():
    core = StandbyCore(Exchange(), cluster_id=1)
    action = core.first_reply(Refused("cluster id 2 is not this cluster's (1)", fatal=True))
    assert action == LinkRefused("cluster id 2 is not this cluster's (1)", True)
    assert not core.promotable and core.status(0, 0, 0)["fatal"]


# ---------------------------------------------------------------- the command line


def test_simulate_command_passes_a_seed_and_prints_its_statistics(tmp_path):
    result = CliRunner().invoke(cli, ["simulate", "--seed", "3", "--steps", "2000"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("seed 3: ok") and '"orders_acknowledged"' in result.output


@pytest.mark.parametrize("arguments, message", [
    (["--seeds", "5..3"], "want 0 <= A <= B"),
    (["--seeds", "1-3"], "is not A..B"),
    ([], "exactly one of --seed N or --seeds A..B"),
    (["--seed", "1", "--seeds", "1..2"], "exactly one of"),
    (["--seeds", "1..2", "--keep", "x"], "--keep works with one --seed"),
])
def test_simulate_command_refuses_bad_input_with_usage_errors(arguments, message):
    result = CliRunner().invoke(cli, ["simulate", *arguments])
    assert result.exit_code == 2 and message in result.output, result.output


def test_simulate_command_exits_1_and_names_the_seed_when_a_property_breaks(monkeypatch):
    monkeypatch.setattr(ReleasePolicy, "point", lambda self, local_sequence: local_sequence)
    # Seeds 11..12: seed 12 catches the injected bug in 8000 steps (the seeds that do moved
    # when the simulator began running the gateway's tick, review finding 22).
    result = CliRunner().invoke(cli, ["simulate", "--seeds", "11..12", "--steps", "8000"])
    assert result.exit_code == 1, result.output
    failing = [line for line in result.output.splitlines() if line.startswith("failing seeds:")]
    assert failing and "12" in failing[0].split(";")[0].split(), result.output
    assert "seed 12: FAILED" in result.output and "--steps 8000`" in failing[0]
