"""Shared helpers of the audit tests (tests/test_audit_*.py); holds no tests itself.

* `build_node(root, commands)`: a node data directory whose journal holds `commands`
  (record timestamps 1000 * sequence, small segments so several files exist).
* `in_process_rows(commands)`: the (sequence, epoch, timestamp_ns, event) of applying the
  same commands to a fresh Exchange: what a replay must reproduce.
* `expected_jsonl(rows)`: those rows in the replay's JSON-lines format, built from
  msgspec.to_builtins independently of the replay's own encoder.
* `audit_cli()`: the `twinbook` click group with the audit commands on it (added here
  until tools/cli.py registers them), and `run_cli(args)`: the same as a subprocess
  through tools.cli.main, so exit codes and stdout/stderr are the real ones.
* `frame_starts(segment_path)`: byte offsets of the record frames of a segment file.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import msgspec

import journal
from replica.data_directory import DataDirectory
from statemachine import Exchange
from statemachine.codec import encode_command

ROOT = Path(__file__).resolve().parent.parent
SEGMENT_SIZE_BYTES_SMALL = 64 * 1024

# Runs tools.cli.main with the audit commands registered (a no-op once tools/cli.py does).
CLI_ENTRY = (
    "from tools.cli import cli, main\n"
    "from tools import commands_audit\n"
    "for command in (commands_audit.replay, commands_audit.verify, commands_audit.determinism_check):\n"
    "    if command.name not in cli.commands:\n"
    "        cli.add_command(command)\n"
    "main()\n"
)


def build_node(root: Path, commands: list, *, cluster_id: int = 7, epoch_of=None) -> DataDirectory:
    """A data directory whose journal holds `commands`; `epoch_of(sequence)` optional."""
    directory = DataDirectory.create(root)
    writer = journal.JournalWriter.open(
        directory.journal, cluster_id, durability="none", segment_size_bytes_max=SEGMENT_SIZE_BYTES_SMALL
    )
    try:
        for sequence, command in enumerate(commands, 1):
            epoch = 0 if epoch_of is None else epoch_of(sequence)
            writer.append(epoch, sequence * 1000, encode_command(command))
        writer.commit()
        writer.sync()
    finally:
        writer.close()
    return directory


def append_commands(directory: DataDirectory, commands: list, *, cluster_id: int = 7) -> None:
    writer = journal.JournalWriter.open(directory.journal, cluster_id, durability="none")
    try:
        for command in commands:
            writer.append(writer.epoch, (writer.last_sequence + 1) * 1000, encode_command(command))
        writer.commit()
        writer.sync()
    finally:
        writer.close()


def in_process_rows(commands: list, *, book_updates: bool = False, epoch_of=None) -> list:
    exchange = Exchange(book_updates=book_updates)
    rows = []
    for sequence, command in enumerate(commands, 1):
        epoch = 0 if epoch_of is None else epoch_of(sequence)
        for event in exchange.apply(sequence, sequence * 1000, command):
            rows.append((sequence, epoch, sequence * 1000, event))
    return rows


def row_dict(row) -> dict:
    """A row as the dict a JSON-lines consumer reads: the event's fields plus epoch and ts."""
    _, epoch, timestamp_ns, event = row
    fields = msgspec.to_builtins(event)
    fields["epoch"] = epoch
    fields["ts"] = timestamp_ns
    return fields


def expected_jsonl(rows: list) -> bytes:
    return b"".join(json.dumps(row_dict(row), separators=(",", ":")).encode() + b"\n" for row in rows)


def parse_jsonl(data: bytes | str) -> list:
    if isinstance(data, bytes):
        data = data.decode()
    return [json.loads(line) for line in data.splitlines()]


def audit_cli():
    from tools import commands_audit
    from tools.cli import cli

    for command in (commands_audit.replay, commands_audit.verify, commands_audit.determinism_check):
        if command.name not in cli.commands:
            cli.add_command(command)
    return cli


def run_cli(args: list, *, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI_ENTRY, *[str(arg) for arg in args]],
        capture_output=True, timeout=timeout, cwd=ROOT, env=env,
    )


def popen_cli(args: list, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI_ENTRY, *[str(arg) for arg in args]], cwd=ROOT, **kwargs)


def segment_files(directory: DataDirectory) -> list[Path]:
    return sorted(Path(directory.journal).glob("*.journal"))


def frame_starts(segment_path: Path) -> list[int]:
    """Byte offsets of the record frames in a segment (journal/format.py layout)."""
    data = segment_path.read_bytes()
    offsets = []
    offset = 64
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offsets.append(offset)
        offset += 8 + length
    return offsets


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def environment_without(*names: str) -> dict:
    return {key: value for key, value in os.environ.items() if key not in names}
