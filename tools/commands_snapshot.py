"""`twinbook snapshot list|take`: the LMDB snapshots of a node's data directory.

`take` works on a stopped node's data directory: it recovers the exchange (newest good
snapshot plus journal) and writes a snapshot at the journal's last sequence.
"""

from __future__ import annotations

import json
import os
import time

import click

import snapshots
from replica.data_directory import DataDirectory
from replica.recovery import recover_exchange
from replica.snapshotter import RETENTION_DEFAULT, write_snapshot
from tools.digests import digest_text
from tools.paths import data_directory


@click.group(name="snapshot")
def snapshot_group() -> None:
    """List and take snapshots."""


@snapshot_group.command(name="list")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--verify/--no-verify", default=True, show_default=True, help="Read every snapshot and check its digest.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_snapshots(directory: str, verify: bool, as_json: bool) -> None:
    """The snapshots of a data directory, newest first."""
    root = DataDirectory(data_directory(directory))
    if not root.has_snapshots():
        raise click.ClickException(f"{root.root}: no snapshots/ directory (no snapshot was ever taken)")
    store = snapshots.SnapshotStore(root.snapshots, readonly=True)
    rows = []
    try:
        for info in store.list():
            status = "unchecked"
            if verify:
                try:
                    store.read(info.sequence)
                    status = "ok"
                except snapshots.SnapshotError as error:
                    status = f"CORRUPT: {error}"
            rows.append({
                "sequence": info.sequence,
                "digest": "0x" + info.digest_hex,
                "chain_value": digest_text(info.chain_value, 32),
                "format_version": info.format_version,
                "state_size_bytes": info.state_size_bytes,
                "chunks": info.chunk_count,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created_unix_ns // 1_000_000_000)),
                "status": status,
            })
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"directory": root.snapshots, "snapshots": rows}))
        return
    if not rows:
        click.echo(f"{root.snapshots}: no snapshots")
    for row in rows:
        click.echo(
            f"seq {row['sequence']:>12}  {row['state_size_bytes']:>12} bytes  digest {row['digest']}  "
            f"chain {row['chain_value']}  {row['created']}  {row['status']}"
        )


@snapshot_group.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--retention", default=RETENTION_DEFAULT, show_default=True, type=click.IntRange(1, 1000), help="Keep this many newest snapshots.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot taken as one JSON object.")
def take(directory: str, retention: int, as_json: bool) -> None:
    """Snapshot a stopped node's state at the end of its journal."""
    root = data_directory(directory)
    started = time.perf_counter()
    result = recover_exchange(root)
    if result.last_sequence == 0:
        raise click.ClickException(f"{root}: the journal holds no records, nothing to snapshot")
    info = write_snapshot(DataDirectory(os.fspath(root)), result.exchange, retention)
    if as_json:
        click.echo(json.dumps({"sequence": info.sequence, "state_size_bytes": info.state_size_bytes,
                               "digest": "0x" + info.digest_hex, "from_snapshot": result.snapshot_sequence,
                               "replayed_records": result.replayed_records,
                               "seconds": round(time.perf_counter() - started, 3),
                               "skipped_snapshots": [[sequence, reason] for sequence, reason in result.skipped_snapshots]}))
        return
    click.echo(
        f"snapshot at sequence {info.sequence}: {info.state_size_bytes} bytes, digest 0x{info.digest_hex}, "
        f"from snapshot {result.snapshot_sequence} + {result.replayed_records} replayed records "
        f"in {time.perf_counter() - started:.2f}s"
    )
    for sequence, reason in result.skipped_snapshots:
        click.echo(f"  skipped snapshot {sequence}: {reason}")
