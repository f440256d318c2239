"""`twinbook journal inspect|verify|repair|import|export`: the journal for operators.

DIR may be a node data directory (its `journal/` is used) or a journal directory.
`verify` walks the whole chain and exits 0 only if the journal is intact; a torn tail
exits 1 (and `repair` is the explicit, separate step that cuts it, keeping the bytes in
a `.torn` file); corruption exits 3 with the journal's message naming file and offset.
`import` turns a JSON-lines scenario into journal records; `export` writes records back
as scenario lines (each with `seq`, `epoch` and `ts`), so an export can be imported again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import journal
from statemachine.codec import command_to_builtins, decode_command
from tools import exit_codes
from tools.digests import digest_text
from tools.paths import journal_directory

EXIT_CHECK_FAILED = exit_codes.CHECK_FAILED


@click.group(name="journal")
def journal_group() -> None:
    """Inspect, verify, repair, import and export journals."""


@journal_group.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def inspect(directory: str, as_json: bool) -> None:
    """Segments, sequence ranges, epochs, sizes and tail state of a journal."""
    summary = journal.inspect(journal_directory(directory))
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(
        f"journal {summary['directory']}: state {summary['state']}, cluster {summary['cluster_id']}, "
        f"sequences {summary['first_sequence']}..{summary['last_sequence']}, "
        f"{summary['record_count']} records, {summary['size_bytes']} bytes, last epoch {summary['last_epoch']}"
    )
    for segment in summary["segments"]:
        click.echo(
            f"  {Path(segment['path']).name}  seq {segment['first_sequence']}..{segment['last_sequence']}  "
            f"{segment['record_count']} records  {segment['size_bytes']} bytes  "
            f"epochs {segment['first_epoch']}..{segment['last_epoch']}  tail {segment['tail_state']}"
        )
    if summary.get("torn"):
        torn = summary["torn"]
        click.echo(f"  torn tail: {torn['segment_path']} at offset {torn['offset']}: {torn['reason']} "
                   f"({torn['bytes_cut']} bytes)")
    if summary.get("error"):
        error = summary["error"]
        click.echo(f"  CORRUPT {error['path']} at offset {error['offset']}: {error['reason']} "
                   f"(the counts above are of the intact segments before it)")
    for evidence in summary.get("evidence_files", []):
        click.echo(f"  evidence kept: {evidence}")


@journal_group.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
def verify(directory: str, as_json: bool) -> None:
    """Walk the whole chain; exit 0 only if the journal is intact (1 if torn or corrupt,
    the same verdict and code as `twinbook verify`)."""
    try:
        report = journal.recover(journal_directory(directory), repair=False, full_scan=True)
    except journal.JournalCorruptError as error:
        _verdict(as_json, {"verdict": "corrupt", "path": error.path, "offset": error.offset, "reason": error.reason},
                 f"CORRUPT {error.path} at offset {error.offset}: {error.reason}")
        sys.exit(EXIT_CHECK_FAILED)
    if report.state == "torn":
        torn = report.torn
        _verdict(as_json, {"verdict": "torn", "path": torn.segment_path, "offset": torn.offset,
                           "reason": torn.reason, "bytes_cut": torn.bytes_cut},
                 f"TORN {torn.segment_path} at offset {torn.offset}: {torn.reason} "
                 f"({torn.bytes_cut} bytes would be cut; run `twinbook journal repair`)")
        sys.exit(EXIT_CHECK_FAILED)
    _verdict(as_json, {"verdict": "ok", "directory": report.directory, "state": report.state,
                       "first_sequence": report.first_sequence, "last_sequence": report.last_sequence,
                       "chain_value": digest_text(report.last_crc, 32)},
             f"OK {report.directory}: {report.state}, sequences "
             f"{report.first_sequence}..{report.last_sequence}, chain value {digest_text(report.last_crc, 32)}")


def _verdict(as_json: bool, fields: dict, line: str) -> None:
    click.echo(json.dumps(fields) if as_json else line)


@journal_group.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what was done as one JSON object.")
def repair(directory: str, as_json: bool) -> None:
    """Cut a torn tail (keeping the cut bytes in a .torn file); refuses corruption."""
    report = journal.recover(journal_directory(directory), repair=True, full_scan=True)
    if report.torn is None:
        _verdict(as_json, {"repaired": False, "directory": report.directory, "state": report.state,
                           "last_sequence": report.last_sequence},
                 f"nothing to repair: {report.directory} is {report.state} up to sequence {report.last_sequence}")
        return
    _verdict(as_json, {"repaired": True, "path": report.torn.segment_path, "offset": report.torn.offset,
                       "reason": report.torn.reason, "bytes_cut": report.bytes_cut, "evidence": report.torn_path,
                       "last_sequence": report.last_sequence},
             f"cut {report.bytes_cut} bytes from {report.torn.segment_path} at offset {report.torn.offset} "
             f"({report.torn.reason}); evidence kept in {report.torn_path}; journal now ends at {report.last_sequence}")


@journal_group.command(name="import")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--cluster-id", default=1, show_default=True, type=click.IntRange(0, 2**64 - 1))
@click.option("--epoch", default=0, show_default=True, type=click.IntRange(0, 2**64 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the sequences imported as one JSON object.")
def import_scenario(scenario: str, directory: str, cluster_id: int, epoch: int, as_json: bool) -> None:
    """Append a JSON-lines SCENARIO to the journal in DIRECTORY as records.

    Each line becomes one record with the next sequence number; its `ts` (integer ns)
    is the record timestamp, a line without one takes the previous record's. Malformed
    lines are journaled as malformed commands, so they keep their sequence number. The
    internal record types an export contains (checkpoint, malformed) are accepted, so an
    export imports again unchanged.
    """
    from replica.workload import ScenarioTimestampError, write_scenario_journal

    data = sys.stdin.buffer.read() if scenario == "-" else Path(scenario).read_bytes()
    line_count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        last = write_scenario_journal(journal_directory(directory), data, cluster_id=cluster_id, epoch=epoch)
    except ScenarioTimestampError as error:
        raise click.ClickException(f"{scenario} {error}; record timestamps never go backwards") from None
    _verdict(as_json, {"records": line_count, "first_sequence": last - line_count + 1, "last_sequence": last,
                        "directory": directory},
             f"imported {line_count} records as sequences {last - line_count + 1}..{last} into {directory}")


@journal_group.command(name="export")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--from-seq", default=1, show_default=True, type=click.IntRange(1))
@click.option("--to-seq", default=None, type=click.IntRange(1))
def export_records(directory: str, from_seq: int, to_seq: int | None) -> None:
    """Write records as JSON lines: the command in scenario format plus seq, epoch, ts."""
    out = sys.stdout.buffer
    encoder = json.JSONEncoder(separators=(",", ":"))
    for batch in journal.read_tuple_batches(journal_directory(directory), from_seq, to_seq):
        lines = []
        for sequence, epoch, timestamp_ns, body in batch:
            line = command_to_builtins(decode_command(body))
            line["seq"] = sequence
            line["epoch"] = epoch
            line["ts"] = timestamp_ns
            lines.append(encoder.encode(line).encode() + b"\n")
        out.write(b"".join(lines))
    out.flush()
