"""CPU load for drills and benchmarks: `python -c "while True: pass"` processes.

`busy_loops(count)` is a context manager that starts `count` such processes (each one
keeps a core busy at the ordinary priority, like a neighbour's test run on a shared
machine) and ends them, by their own process ids, when the block exits. Each child
also dies with its parent (PR_SET_PDEATHSIG), so an interrupted run leaves none.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
from typing import Iterator

BUSY_LOOP_CODE = "while True: pass"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[int]]:
    """Run `count` busy loops for the duration of the block; yields their pids."""
    if count < 0:
        raise ValueError(f"busy loop count {count} is negative")
    processes = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP_CODE], stdin=subprocess.DEVNULL,
                                  preexec_fn=_die_with_parent) for _ in range(count)]
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
