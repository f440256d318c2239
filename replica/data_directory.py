"""The layout of a node's data directory.

    DIR/
      journal/      the journal segments (journal/), the audit trail, never deleted here
      snapshots/    the LMDB snapshot environment (snapshots/)

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
