"""`twinbook verify` (issue 7): the journal chain, digest checkpoints, rules checkpoints and
snapshots, recomputed from a replay; one line per finding, exit 0 only if all holds.

The snapshot cases are the ones the store's own check cannot catch: a snapshot whose
state was replaced by another valid state stored with a matching blake2b digest (a state
of another sequence, or of another history at the right sequence).
"""

from __future__ import annotations

import re

from click.testing import CliRunner

import snapshots
from command_streams import generate_commands
from replica.audit import verify_node
from replica.recovery import recover_exchange
from replica.snapshotter import write_snapshot
from statemachine.version import RULES_VERSION
from statemachine import STATE_FORMAT_VERSION, Checkpoint, Exchange, digest_of, encode_state
from test_audit_support import audit_cli, build_node, flip_byte, frame_starts, run_cli, segment_files

DIGEST_EVERY_RECORDS = 100


def with_digest_checkpoints(commands: list, every: int = DIGEST_EVERY_RECORDS, wrong_at: set = frozenset()) -> list:
    """Commands with a Checkpoint(kind="digest") every `every` records announcing the
    state digest after the record before it; those whose sequence is in `wrong_at`
    announce a wrong one."""
    exchange = Exchange()
    out: list = []
    pending = list(commands)
    while pending:
        sequence = len(out) + 1
        if sequence % every == 0:
            digest = exchange.state_digest()
            if sequence in wrong_at:
                digest ^= 1
            command = Checkpoint(kind="digest", digest=digest)
        else:
            command = pending.pop(0)
        exchange.apply(sequence, sequence * 1000, command)
        out.append(command)
    return out


def invoke_verify(path) -> object:
    return CliRunner().invoke(audit_cli(), ["verify", str(path)])


def test_an_intact_node_verifies(tmp_path):
    commands = with_digest_checkpoints(generate_commands(1200, 2))
    directory = build_node(tmp_path / "node", commands)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=500).exchange)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=900).exchange)
    result = invoke_verify(directory.root)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ")
    assert f"{len(commands) // DIGEST_EVERY_RECORDS} digest checkpoints and 2 snapshots verified" in result.output
    completed = run_cli(["verify", directory.root])
    assert completed.returncode == 0 and completed.stdout.startswith(b"OK ")


def test_a_wrong_digest_checkpoint_is_pinpointed(tmp_path):
    commands = with_digest_checkpoints(generate_commands(800, 3), wrong_at={400})
    directory = build_node(tmp_path / "node", commands)
    report = verify_node(directory.journal, directory)
    assert [(finding.kind, finding.sequence) for finding in report.findings] == [("DIGEST_MISMATCH", 400)]
    assert report.digest_checkpoints_verified == len(commands) // DIGEST_EVERY_RECORDS - 1
    result = invoke_verify(directory.root)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("DIGEST_MISMATCH at sequence 400: ")


def test_a_flipped_byte_in_the_journal_names_file_and_offset(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(2000, 4))
    segment = segment_files(directory)[1]
    frames = frame_starts(segment)
    target_frame = frames[len(frames) // 2]
    flip_byte(segment, target_frame + 30)  # inside the record's body
    completed = run_cli(["verify", directory.root])
    assert completed.returncode == 1, completed.stderr
    first_line = completed.stdout.decode().splitlines()[0]
    assert first_line.startswith("JOURNAL_CORRUPT: ")
    assert f"{segment} at byte offset {target_frame}:" in first_line
    assert completed.stdout.decode().splitlines()[-1].startswith("FAILED")


def test_a_snapshot_after_the_corruption_is_reported_unverified(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(2000, 4))
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=300).exchange)
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=1900).exchange)
    segment = segment_files(directory)[1]
    flip_byte(segment, frame_starts(segment)[3] + 20)
    report = verify_node(directory.journal, directory)
    kinds = [(finding.kind, finding.sequence) for finding in report.findings]
    assert kinds == [("JOURNAL_CORRUPT", None), ("SNAPSHOT_UNVERIFIED", 1900)]
    assert report.snapshots_verified == [300]


def _replace_snapshot_state(directory, sequence: int, state_bytes: bytes) -> None:
    """Put other, self-consistent state bytes under `sequence`: the right chain value and
    a blake2b digest that matches the bytes, so the store's own check passes."""
    store = snapshots.SnapshotStore(directory.snapshots)
    try:
        info, _ = store.read(sequence)
        store.delete(sequence)
        store.put(sequence, digest_of(state_bytes), info.chain_value, STATE_FORMAT_VERSION, state_bytes)
        assert all(verdict.good for verdict in store.check())
    finally:
        store.close()


def test_a_snapshot_replaced_by_a_state_of_another_sequence_is_caught(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(1000, 5))
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=700).exchange)
    earlier = encode_state(recover_exchange(directory.root, to_sequence=650, use_snapshots=False).exchange)
    _replace_snapshot_state(directory, 700, earlier)
    result = invoke_verify(directory.root)
    assert result.exit_code == 1
    line = result.output.splitlines()[0]
    assert line.startswith("SNAPSHOT_STATE_MISMATCH at sequence 700: ")
    assert "the stored state is at sequence 650" in line


def test_a_snapshot_replaced_by_another_history_at_the_same_sequence_is_caught(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(1000, 5))
    write_snapshot(directory, recover_exchange(directory.root, to_sequence=700).exchange)
    other = Exchange()
    for sequence, command in enumerate(generate_commands(700, 55), 1):
        other.apply(sequence, sequence * 1000, command)
    _replace_snapshot_state(directory, 700, encode_state(other))
    completed = run_cli(["verify", directory.root])
    assert completed.returncode == 1
    line = completed.stdout.decode().splitlines()[0]
    assert re.match(r"SNAPSHOT_STATE_MISMATCH at sequence 700: stored digest [0-9a-f]{64}, the replayed state's canonical digest is [0-9a-f]{64} ", line)
    assert "right sequence but holds other content" in line


def test_a_torn_tail_is_a_finding(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(300, 6))
    with open(segment_files(directory)[-1], "ab") as out:
        out.write(b"\x50\x00\x00\x00cut")
    result = invoke_verify(directory.root)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("JOURNAL_TORN: ")
    assert "replayed sequences 1..300" in result.output


def test_an_unreplayable_rules_version_is_a_finding(tmp_path):
    commands = generate_commands(100, 7) + [Checkpoint(kind="rules", version=RULES_VERSION + 1)] + generate_commands(50, 8)[2:]
    directory = build_node(tmp_path / "node", commands)
    result = invoke_verify(directory.root)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "RULES_VERSION at sequence 101: journal written under rules version 4 (from sequence 101); this build replays 1, 2, 3"
    )


def test_a_corrupt_snapshot_is_a_finding(tmp_path):
    directory = build_node(tmp_path / "node", generate_commands(600, 9))
    exchange = recover_exchange(directory.root, to_sequence=400).exchange
    write_snapshot(directory, exchange)
    state_bytes = encode_state(exchange)
    data_file = tmp_path / "node" / "snapshots" / "data.mdb"
    data = bytearray(data_file.read_bytes())
    # The head of the state (version, sequences, digest sum) is distinctive; its tail is
    # a run of dense column entries that can repeat elsewhere in the file.
    position = data.find(state_bytes[:64])
    assert position >= 0, "snapshot state bytes not found in data.mdb"
    data[position + 40] ^= 0xFF
    data_file.write_bytes(bytes(data))
    result = invoke_verify(directory.root)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("SNAPSHOT_CORRUPT at sequence 400: ")


def test_verify_of_a_missing_directory_is_a_usage_error():
    assert run_cli(["verify", "/nonexistent/twinbook/node"]).returncode == 2
