"""`twinbook replay`, `twinbook verify`, `twinbook determinism-check`: the audit tools.

DIR may be a node data directory (its `journal/` and `snapshots/` are used) or a journal
directory (tools/paths.py).

* `replay DIR` re-executes the journal through the state machine and writes the events
  to stdout, JSON lines (the scenario event format plus each record's `epoch` and `ts`)
  or CSV with a header row. Filters (--from-seq/--to-seq, --member, --symbol, --types)
  select output rows only: the replay itself always starts from the beginning or from a
  verified snapshot at or before --from-seq, so every row is exact. --follow keeps
  going as records are appended (until interrupted or --to-seq). stdout carries data
  only; notes go to stderr, and a progress bar is drawn there when stderr is a
  terminal. A torn tail ends the replay at the last complete record with a note; a
  corrupt journal is an operating fault (exit 3) naming file and offset, after the rows
  of the records before it.
* `verify DIR` checks the journal chain, the digest and rules checkpoints in it and the
  node's snapshots against a full replay (replica/audit.py says exactly what), printing
  one line per finding (a rich progress bar on stderr when it is a terminal); exit 0 only
  if everything holds, 1 otherwise (a corrupt journal
  is a finding here, naming file and offset).
* `determinism-check` replays a journal (given, imported from a scenario, or generated
  from a seed) in fresh interpreters under different PYTHONHASHSEED values, and once
  from a snapshot, and compares event bytes and digests (replica/determinism.py); on a
  mismatch it prints the first differing sequence and the two events. Exit 0/1, for CI.

Exit codes (tools/exit_codes.py): 0 success; 1 a check found a problem; 2 bad usage; 3 an
operating fault. The commands map their operating faults to exit 3 themselves, so they
behave the same when run through `twinbook`, alone, or under click's CliRunner.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import click

import journal
import snapshots
from replica.audit import (
    EVENT_TYPES_BY_NAME,
    AuditReplay,
    AuditSelectionError,
    CsvEventWriter,
    EventSelection,
    JsonLinesEventWriter,
    verify_node,
)
from replica.data_directory import DataDirectory
from replica.determinism import check_determinism
from replica.errors import ReplicaError
from replica.workload import ScenarioTimestampError, generate_commands, write_journal, write_scenario_journal
from statemachine.errors import StateMachineError
from tools.digests import digest_text
from tools import exit_codes
from tools.paths import data_directory, journal_directory
from tools.progress import progress_bar

EXIT_CHECK_FAILED = exit_codes.CHECK_FAILED
EXIT_OPERATING_FAULT = exit_codes.OPERATING_FAULT


OperatingFault = exit_codes.OperatingFault  # corrupt journal, unreadable store, ...: exit 3


def _operating_faults_exit_3(command):
    """Turn the packages' operating errors into OperatingFault (message names file and offset)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (journal.JournalError, snapshots.SnapshotError, ReplicaError, StateMachineError) as error:
            raise OperatingFault(f"{type(error).__name__}: {error}") from None
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            raise OperatingFault(f"{error.strerror or error}{where}") from None

    return wrapper


def _node_directory(path: str) -> Optional[DataDirectory]:
    """The node data directory holding the journal `path` names, if it is one."""
    directory = DataDirectory(data_directory(path))
    if os.path.realpath(directory.journal) != os.path.realpath(journal_directory(path)):
        return None
    return directory


def _note(message: str) -> None:
    click.echo(f"twinbook replay: {message}", err=True)


# ---------------------------------------------------------------------- replay


def _parse_types(value: Optional[str]) -> Optional[frozenset]:
    if value is None:
        return None
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(names - set(EVENT_TYPES_BY_NAME))
    if unknown or not names:
        raise click.BadParameter(
            f"unknown event type(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(EVENT_TYPES_BY_NAME)}",
            param_hint="--types",
        )
    return names


class _StopFlag:
    """Set by SIGTERM so that --follow ends between polls, with everything flushed."""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self, *_signal_arguments) -> None:
        self.stopped = True


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--from-seq", default=1, show_default=True, type=click.IntRange(1), help="First record whose events are written.")
@click.option("--to-seq", default=None, type=click.IntRange(1), help="Last record replayed (default: the end).")
@click.option("--member", default=None, help="Only events concerning this member (trades: maker or taker).")
@click.option("--symbol", default=None, help="Only events of this symbol (rejects carry none).")
@click.option("--types", "types_text", default=None, metavar="T1,T2", help=f"Only these event types: {', '.join(EVENT_TYPES_BY_NAME)}.")
@click.option("--format", "output_format", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--follow", is_flag=True, help="Keep replaying records as they are appended.")
@click.option("--book-updates", is_flag=True, help="Also produce level_changed / instrument_status events.")
@click.option("--snapshots/--no-snapshots", "use_snapshots", default=True, show_default=True,
              help="Start from a verified snapshot at or before --from-seq when there is one.")
@click.option("--poll-interval-ms", default=50, show_default=True, type=click.IntRange(1, 60_000), help="--follow: wait between polls.")
@_operating_faults_exit_3
def replay(
    directory: str,
    from_seq: int,
    to_seq: Optional[int],
    member: Optional[str],
    symbol: Optional[str],
    types_text: Optional[str],
    output_format: str,
    follow: bool,
    book_updates: bool,
    use_snapshots: bool,
    poll_interval_ms: int,
) -> None:
    """Re-execute the journal in DIRECTORY and write its events (with epoch and ts)."""
    if to_seq is not None and to_seq < from_seq:
        raise click.BadParameter(f"--to-seq {to_seq} is before --from-seq {from_seq}", param_hint="--to-seq")
    try:
        selection = EventSelection(from_seq, to_seq, member, symbol, _parse_types(types_text))
        engine = AuditReplay(
            journal_directory(directory), selection,
            data_directory=_node_directory(directory), use_snapshots=use_snapshots, book_updates=book_updates,
        )
    except AuditSelectionError as error:
        raise click.UsageError(str(error)) from None
    out = sys.stdout.buffer
    if output_format == "csv":
        writer = CsvEventWriter(out, engine.event_names(), flush_every_write=follow)
    else:
        writer = JsonLinesEventWriter(out, flush_every_write=follow)
    start = engine.start()
    for sequence, reason in start.skipped_snapshots:
        _note(f"snapshot {sequence} not used: {reason}")
    if start.snapshot_sequence:
        _note(f"starting from verified snapshot {start.snapshot_sequence}")
    try:
        with _progress_bar(engine, to_seq) as progress:
            if follow:
                stop = _StopFlag()
                previous_handler = signal.signal(signal.SIGTERM, stop)
                try:
                    engine.follow(writer, poll_interval_seconds=poll_interval_ms / 1000, should_stop=lambda: stop.stopped, progress=progress)
                except KeyboardInterrupt:
                    pass
                finally:
                    signal.signal(signal.SIGTERM, previous_handler)
            else:
                engine.run(writer, progress=progress)
        writer.finish()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly; point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return
    if engine.torn_tail is not None:
        torn = engine.torn_tail
        _note(
            f"torn tail in {torn.segment_path} at byte offset {torn.offset} ({torn.reason}) not replayed; "
            f"the replay ends at sequence {engine.last_sequence}"
        )


def _progress_bar(engine: AuditReplay, to_seq: Optional[int]):
    """A progress bar only for a person watching: stderr is a terminal and there is
    enough to replay for it to matter."""
    if not sys.stderr.isatty():
        return progress_bar("replaying", None)
    end = journal.recover(engine.journal_directory, repair=False, full_scan=False).last_sequence
    if to_seq is not None:
        end = min(end, to_seq)
    return progress_bar("replaying", end - engine.last_sequence)


# ---------------------------------------------------------------------- verify


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the verdict and findings as one JSON object.")
@_operating_faults_exit_3
def verify(directory: str, as_json: bool) -> None:
    """Check journal chain, digest checkpoints and snapshots against a replay."""
    journal_dir = journal_directory(directory)
    total = None
    if sys.stderr.isatty():
        try:
            total = journal.recover(journal_dir, repair=False, full_scan=False).last_sequence
        except journal.JournalError:
            total = None  # verify_node reports the fault as a finding
    with progress_bar("verifying", total) as advance:
        report = verify_node(journal_dir, _node_directory(directory), progress=advance)
    if as_json:
        click.echo(json.dumps({
            "ok": report.ok, "journal_directory": report.journal_directory, "last_sequence": report.last_sequence,
            "digest_checkpoints_verified": report.digest_checkpoints_verified,
            "snapshots_verified": len(report.snapshots_verified), "state_digest": digest_text(report.state_digest),
            "canonical_digest": digest_text(report.canonical_digest),
            "findings": [finding.line() for finding in report.findings]}))
        if not report.ok:
            sys.exit(EXIT_CHECK_FAILED)
        return
    for finding in report.findings:
        click.echo(finding.line())
    summary = (
        f"{report.journal_directory}: replayed sequences 1..{report.last_sequence}, "
        f"{report.digest_checkpoints_verified} digest checkpoints and "
        f"{len(report.snapshots_verified)} snapshots verified"
    )
    if report.state_digest is not None:
        summary += f", state digest {digest_text(report.state_digest)}, canonical {digest_text(report.canonical_digest)}"
    if report.ok:
        click.echo(f"OK {summary}")
        return
    click.echo(f"FAILED ({len(report.findings)} findings) {summary}")
    sys.exit(EXIT_CHECK_FAILED)


# ---------------------------------------------------------------------- determinism-check


@click.command(name="determinism-check")
@click.option("--journal", "journal_path", type=click.Path(exists=True, file_okay=False), help="Check this journal (or node data directory).")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False), help="Check a JSON-lines scenario, imported into a scratch journal.")
@click.option("--seed", type=int, help="Check a generated command stream (with --commands).")
@click.option("--commands", "command_count", type=click.IntRange(3, 50_000_000), help="Length of the generated stream.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where the runs write (default: a temporary directory, removed after).")
@click.option("--keep-workdir", is_flag=True, help="Keep the runs' files (event streams, digests) for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object instead of lines.")
@_operating_faults_exit_3
def determinism_check(
    journal_path: Optional[str],
    scenario: Optional[str],
    seed: Optional[int],
    command_count: Optional[int],
    workdir: Optional[str],
    keep_workdir: bool,
    as_json: bool,
) -> None:
    """Replay in fresh interpreters under different hash seeds (and from a snapshot) and compare."""
    sources = [journal_path is not None, scenario is not None, seed is not None or command_count is not None]
    if sum(sources) != 1:
        raise click.UsageError("give exactly one of --journal DIR, --scenario FILE, or --seed N --commands M")
    if (seed is None) != (command_count is None):
        raise click.UsageError("--seed and --commands go together")
    scratch = tempfile.mkdtemp(prefix="twinbook-determinism-", dir=workdir)
    try:
        journal_dir, data_root, snapshot_at = _prepare_source(scratch, journal_path, scenario, seed, command_count)
        report = check_determinism(
            journal_dir, os.path.join(scratch, "runs"), data_root=data_root, snapshot_at=snapshot_at
        )
        if journal_path is not None:
            source = f"journal {journal_dir}"
        elif scenario is not None:
            source = f"scenario {scenario}"
        else:
            source = f"generated stream (seed {seed}, {command_count} commands)"
        if as_json:
            click.echo(json.dumps({
                "ok": report.ok, "source": source, "last_sequence": report.last_sequence,
                "runs": [run.describe() for run in report.runs], "notes": list(report.notes),
                "mismatches": [line for mismatch in report.mismatches for line in mismatch.lines()],
                "workdir": scratch if keep_workdir else None}))
            if not report.ok:
                sys.exit(EXIT_CHECK_FAILED)
            return
        click.echo(f"determinism-check of {source}: sequences 1..{report.last_sequence}")
        for run in report.runs:
            click.echo(f"  {run.describe()}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        for mismatch in report.mismatches:
            for line in mismatch.lines():
                click.echo(line)
        if keep_workdir:
            click.echo(f"  files kept in {scratch}")
    finally:
        if not keep_workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    if not report.ok:
        click.echo(f"FAILED: {len(report.mismatches)} of {len(report.runs) - 1} comparisons differ")
        sys.exit(EXIT_CHECK_FAILED)
    click.echo(f"OK: {len(report.runs)} runs agree byte for byte (events, state digests, canonical digest)")


def _prepare_source(
    scratch: str, journal_path: Optional[str], scenario: Optional[str], seed: Optional[int], command_count: Optional[int]
) -> tuple[str, str, Optional[int]]:
    """(journal directory, data root for snapshots, sequence at which run A takes a
    snapshot or None to use the node's own)."""
    if journal_path is not None:
        node = _node_directory(journal_path)
        journal_dir = journal_directory(journal_path)
        if node is not None and node.has_snapshots():
            return journal_dir, node.root, None
        # No snapshot of its own: run A takes one at the midpoint into a scratch data
        # directory whose journal/ is a link to the real one (nothing is written there).
        root = DataDirectory.create(os.path.join(scratch, "node"))
        os.symlink(os.path.realpath(journal_dir), root.journal)
        last = journal.recover(journal_dir, repair=False).last_sequence
        return journal_dir, root.root, (last // 2 or None)
    root = DataDirectory.create(os.path.join(scratch, "node"))
    if scenario is not None:
        try:
            last = write_scenario_journal(root.journal, Path(scenario).read_bytes())
        except ScenarioTimestampError as error:
            raise click.ClickException(f"{scenario} {error}") from None
    else:
        last = write_journal(root.journal, generate_commands(command_count, seed))
    return root.journal, root.root, (last // 2 or None)
