"""Golden journals (issue 7): small journals whose replay is pinned byte for byte.

tests/golden/ holds hand-written scenarios (`*.jsonl`: stops, icebergs, STP, bands and
halts with end of day, malformed lines), the journal `twinbook journal import` made from
each (`<name>/journal/`), the JSON-lines events its replay wrote (`<name>/events.jsonl`,
for people and for pinpointing a difference) and `expected.json`: for each journal,
blake2b-256 of those event bytes and of the replay with book updates, the final state
digest and canonical digest, and the rules version they were generated under.

A change in matching behaviour changes these and fails here, loudly and on purpose. If
the change is deliberate: regenerate with

    .venv/bin/python tests/test_audit_golden.py --write-golden

bump RULES_VERSION in statemachine/version.py, and say what changed in
docs/CHANGELOG.md. (tests/golden/README.md says the same.)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

GOLDEN_DIRECTORY = Path(__file__).resolve().parent / "golden"
EXPECTED_FILE = GOLDEN_DIRECTORY / "expected.json"
REGENERATE_COMMAND = ".venv/bin/python tests/test_audit_golden.py --write-golden"
SCENARIO_NAMES = sorted(path.stem for path in GOLDEN_DIRECTORY.glob("*.jsonl"))


def how_to_regenerate() -> str:
    return (
        "If this change of matching behaviour is deliberate: regenerate the golden files with "
        f"`{REGENERATE_COMMAND}`, bump RULES_VERSION in statemachine/version.py and note the change "
        "in docs/CHANGELOG.md. Otherwise the change is a regression."
    )


def replay_figures(journal_directory: Path) -> tuple[dict, bytes]:
    """What expected.json records for one journal, computed by replaying it now, and the
    replay's JSON-lines event bytes (what `<name>/events.jsonl` holds)."""
    from replica.audit import AuditReplay, JsonLinesEventWriter
    from statemachine import canonical_digest

    figures: dict = {}
    for book_updates, key in ((False, "events_blake2b"), (True, "events_with_book_updates_blake2b")):
        out = io.BytesIO()
        replay = AuditReplay(str(journal_directory), book_updates=book_updates)
        replay.run(JsonLinesEventWriter(out))
        figures[key] = hashlib.blake2b(out.getvalue(), digest_size=32).hexdigest()
        if not book_updates:
            figures["event_count"] = out.getvalue().count(b"\n")
            figures["records"] = replay.last_sequence
            figures["state_digest"] = f"{replay.exchange.state_digest():#018x}"
            figures["canonical_digest"] = canonical_digest(replay.exchange).hex()
            # The rules the journal's end is replayed under (its last rules checkpoint's,
            # else version 1): pins that each part replays under its own rules.
            figures["final_rules_version"] = replay.exchange.rules_version
            events_bytes = out.getvalue()
    return figures, events_bytes


def import_scenario(scenario: Path, journal_directory: Path) -> None:
    """`twinbook journal import SCENARIO JOURNAL`, as the golden journals were made."""
    from click.testing import CliRunner

    from tools.cli import cli

    result = CliRunner().invoke(cli, ["journal", "import", str(scenario), str(journal_directory)])
    if result.exit_code != 0:
        raise RuntimeError(f"journal import of {scenario} failed: {result.output}")


def load_expected() -> dict:
    return json.loads(EXPECTED_FILE.read_text())


# ---------------------------------------------------------------------- tests


def test_every_golden_scenario_has_a_journal_and_expected_figures():
    expected = load_expected()
    assert sorted(expected["journals"]) == SCENARIO_NAMES, how_to_regenerate()
    for name in SCENARIO_NAMES:
        assert list((GOLDEN_DIRECTORY / name / "journal").glob("*.journal")), f"no golden journal for {name}"


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_golden_journal_replays_to_its_recorded_digests(name):
    from statemachine.version import REPLAYABLE_RULES_VERSIONS

    recorded = load_expected()["journals"][name]
    if recorded["rules_version"] not in REPLAYABLE_RULES_VERSIONS:
        pytest.fail(
            f"golden journal {name} was generated under rules version {recorded['rules_version']}, which this "
            f"build no longer replays. {how_to_regenerate()}"
        )
    figures, events_bytes = replay_figures(GOLDEN_DIRECTORY / name / "journal")
    differing = [key for key in ("records", "event_count", "events_blake2b", "events_with_book_updates_blake2b",
                                 "state_digest", "canonical_digest", "final_rules_version") if figures[key] != recorded.get(key)]
    if differing:
        now_lines = events_bytes.decode().splitlines()
        recorded_lines = (GOLDEN_DIRECTORY / name / "events.jsonl").read_text().splitlines()
        first = next(
            (index for index, (now, then) in enumerate(zip(now_lines, recorded_lines)) if now != then),
            min(len(now_lines), len(recorded_lines)),
        )
        if len(now_lines) == len(recorded_lines) == first:
            pytest.fail(
                f"golden journal {name}: the replay matches tests/golden/{name}/events.jsonl but not the figures "
                f"in expected.json ({', '.join(differing)}): the golden files are out of step. {how_to_regenerate()}"
            )
        now = now_lines[first] if first < len(now_lines) else "<no event>"
        then = recorded_lines[first] if first < len(recorded_lines) else "<no event>"
        pytest.fail(
            f"MATCHING BEHAVIOUR CHANGED: golden journal {name} replays differently ({', '.join(differing)}).\n"
            f"  first differing event line {first + 1} of tests/golden/{name}/events.jsonl:\n"
            f"    recorded: {then}\n    now:      {now}\n"
            f"{how_to_regenerate()}"
        )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_golden_scenario_still_imports_to_the_same_journal_bytes(name, tmp_path):
    import_scenario(GOLDEN_DIRECTORY / f"{name}.jsonl", tmp_path / "journal")
    stored = sorted((GOLDEN_DIRECTORY / name / "journal").glob("*.journal"))
    fresh = sorted((tmp_path / "journal").glob("*.journal"))
    assert [path.name for path in fresh] == [path.name for path in stored]
    for new, old in zip(fresh, stored):
        assert new.read_bytes() == old.read_bytes(), (
            f"importing tests/golden/{name}.jsonl no longer gives the golden journal's bytes: the scenario "
            "parser, the command encoding or the journal format changed. Journals already written must still "
            f"replay (see the replay test); if the change is deliberate, {how_to_regenerate()}"
        )


def test_the_golden_set_covers_the_rules_it_is_meant_to_pin():
    events = [
        json.loads(line)
        for name in SCENARIO_NAMES
        for line in (GOLDEN_DIRECTORY / name / "events.jsonl").read_text().splitlines()
    ]
    types = {event["type"] for event in events}
    reasons = {event.get("reason") for event in events}
    assert {"accepted", "rejected", "trade", "cancelled", "replaced", "triggered"} <= types
    assert {"stp", "ioc", "fok", "no_liquidity", "price_band", "halted", "expired", "malformed", "invalid_replace",
            "duplicate_client_order_id", "post_only_would_cross"} & reasons == {
        "stp", "ioc", "fok", "no_liquidity", "price_band", "halted", "expired", "malformed", "invalid_replace",
        "duplicate_client_order_id"}


# ---------------------------------------------------------------------- regeneration


def write_golden() -> None:
    """Re-import every scenario into its golden journal and record its figures."""
    from statemachine.version import RULES_VERSION

    journals = {}
    for name in SCENARIO_NAMES:
        target = GOLDEN_DIRECTORY / name
        shutil.rmtree(target, ignore_errors=True)
        import_scenario(GOLDEN_DIRECTORY / f"{name}.jsonl", target / "journal")
        figures, events_bytes = replay_figures(target / "journal")
        (target / "events.jsonl").write_bytes(events_bytes)
        journals[name] = {"scenario": f"{name}.jsonl", "rules_version": RULES_VERSION, **figures}
        print(f"{name}: {figures['records']} records, {figures['event_count']} events, "
              f"events blake2b {figures['events_blake2b'][:16]}, state digest {figures['state_digest']}")
    document = {
        "generated_by": REGENERATE_COMMAND,
        "rules_version": RULES_VERSION,
        "journals": journals,
    }
    EXPECTED_FILE.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED_FILE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerate the golden journals and their expected figures.")
    parser.add_argument("--write-golden", action="store_true", help="Re-import the scenarios and rewrite expected.json.")
    if not parser.parse_args().write_golden:
        parser.print_help()
        sys.exit(2)
    write_golden()
