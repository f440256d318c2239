"""The layout of a node's data directory.

    DIR/
      journal/      the journal segments (journal/), the audit trail, never deleted here
      snapshots/    the LMDB snapshot environment (snapshots/)
      standby-required
                    present while a sync-mode primary of this directory must not
                    acknowledge without its standby: created (and fsynced) when a
                    standby first goes live, removed by `degrade`. A primary restarted
                    on this directory starts waiting for a standby instead of running
                    standalone, so it cannot acknowledge records beside a promoted
                    standby (a split brain the simulator found, seed 15).
      primary-starts
                    one line per start of a primary on this directory (restart or
                    promotion), "EPOCH SEQUENCE\n": the journal's last sequence then.
                    A primary restarted after a crash may have lost records it had
                    already streamed to its standby, and writes other records at those
                    sequences in the same epoch; these points are where such a standby
                    may cut back to (replica/replication.py, rejoin). Appended and
                    fsynced before the primary sequences anything.

One place names these paths so that every tool and role agrees on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from replica.errors import DataDirectoryError


@dataclass(frozen=True)
class DataDirectory:
    root: str

    @property
    def journal(self) -> str:
        return os.path.join(self.root, "journal")

    @property
    def snapshots(self) -> str:
        return os.path.join(self.root, "snapshots")

    def has_journal(self) -> bool:
        return os.path.isdir(self.journal)

    def has_snapshots(self) -> bool:
        return os.path.isdir(self.snapshots)

    @classmethod
    def existing(cls, root: str | os.PathLike) -> "DataDirectory":
        """A data directory that must already hold a journal."""
        directory = cls(os.fspath(root))
        if not os.path.isdir(directory.root):
            raise DataDirectoryError(f"{directory.root}: no such data directory")
        if not directory.has_journal():
            raise DataDirectoryError(f"{directory.root}: not a twinbook data directory (no journal/ inside)")
        return directory

    @classmethod
    def create(cls, root: str | os.PathLike) -> "DataDirectory":
        directory = cls(os.fspath(root))
        os.makedirs(directory.root, exist_ok=True)
        return directory

    @property
    def standby_required_marker(self) -> str:
        return os.path.join(self.root, "standby-required")

    def standby_required(self) -> bool:
        return os.path.exists(self.standby_required_marker)

    def set_standby_required(self, required: bool) -> None:
        """Create or remove the marker durably (the file, then the directory entry)."""
        path = self.standby_required_marker
        if required == os.path.exists(path):
            return
        if required:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        else:
            os.unlink(path)
        descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ---------------------------------------------------------------- primary starts (rejoin)

PRIMARY_STARTS_KEPT_MAX = 64


def _primary_starts_path(directory: DataDirectory) -> str:
    return os.path.join(directory.root, "primary-starts")


def record_primary_start(directory: DataDirectory, epoch: int, sequence: int) -> None:
    """Append (durably) that a primary started here at `sequence` in `epoch`."""
    path = _primary_starts_path(directory)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        os.write(descriptor, f"{epoch} {sequence}\n".encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def primary_starts(directory: DataDirectory) -> list[tuple[int, int]]:
    """The newest PRIMARY_STARTS_KEPT_MAX (epoch, sequence) starts, oldest first. A line
    cut short by a crash while it was appended is left out (it was never fsynced)."""
    try:
        with open(_primary_starts_path(directory), encoding="ascii", errors="replace") as file:
            lines = file.read().split("\n")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise DataDirectoryError(f"{_primary_starts_path(directory)}: cannot read: {error.strerror}") from error
    starts = []
    for line in lines[:-1]:  # the part after the last newline is a torn append
        fields = line.split()
        if len(fields) == 2 and all(field.isdigit() for field in fields):
            starts.append((int(fields[0]), int(fields[1])))
    return starts[-PRIMARY_STARTS_KEPT_MAX:]


# ---------------------------------------------------------------- rebuild (issue 16)


def set_aside(root: str | os.PathLike, now_text: str) -> str:
    """Move a node's data directory aside for `twinbook standby --rebuild`: renamed to
    ROOT.diverged-NOW (a counter added if taken), never deleted; returns the new path.
    The rename is made durable (the parent directory is fsynced)."""
    source = os.path.abspath(os.fspath(root))
    target = f"{source}.diverged-{now_text}"
    counter = 1
    while os.path.exists(target):
        counter += 1
        target = f"{source}.diverged-{now_text}-{counter}"
    try:
        os.rename(source, target)
        descriptor = os.open(os.path.dirname(source), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise DataDirectoryError(f"{source}: cannot set the data directory aside as {target}: {error.strerror}") from error
    return target
