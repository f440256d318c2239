"""Where the CLI finds things: a path may name a node data directory or a journal."""

from __future__ import annotations

import os


def journal_directory(path: str) -> str:
    """The journal inside a node data directory, or `path` itself if it is a journal."""
    inner = os.path.join(path, "journal")
    return inner if os.path.isdir(inner) else path


def data_directory(path: str) -> str:
    """The node data directory `path` names (the parent if it names its journal)."""
    if os.path.basename(os.path.normpath(path)) == "journal" and not os.path.isdir(os.path.join(path, "journal")):
        return os.path.dirname(os.path.normpath(path))
    return path
