"""Progress bars for long work (replay, verify), drawn with rich on stderr, only for a person.

`progress_bar(description, total)` is a context manager yielding `advance(count)`. When
stderr is not a terminal, or the work is small (under MINIMUM_TOTAL), nothing is drawn
and `advance` does nothing, so pipes, logs and --json output stay machine-readable.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

MINIMUM_TOTAL = 100_000


def _nothing(_count: int) -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, total: Optional[int], stream=None) -> Iterator[Callable[[int], None]]:
    stream = stream or sys.stderr
    if total is None or total < MINIMUM_TOTAL or not stream.isatty():
        yield _nothing
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=stream), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda count: progress.advance(task, count)
