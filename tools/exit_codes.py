"""The exit codes of every `twinbook` command, in one place (docs/CLI.md lists them).

The same verdict exits the same way whichever command reached it: a journal with a
corrupt record exits CHECK_FAILED from `journal verify` and from `verify` alike, because
both are checks that found a problem. OPERATING_FAULT is for a command that could not do
its work at all (a missing data directory, an unreachable node, an unreadable snapshot
store); its one-line message names the file, offset or endpoint.
"""

from __future__ import annotations

import click

OK = 0
CHECK_FAILED = 1  # a check ran and found a problem: verify, journal verify, determinism-check, status
USAGE = 2  # bad arguments or a config file that cannot be used (click's own code for usage)
OPERATING_FAULT = 3  # the command could not do its work: a file, a journal, a node it could not use
STEPPED_DOWN = 4  # a primary stepped down: a node of a newer epoch exists
PROMOTION_FAILED = 5  # a promotion failed half-way: the node neither follows nor serves, so it exits
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

DESCRIPTIONS = {
    OK: "success",
    CHECK_FAILED: "a check ran and found a problem (verify, journal verify, determinism-check, status, "
                  "a refused promote)",
    USAGE: "bad usage: unknown option, bad value, or a config file that cannot be used",
    OPERATING_FAULT: "an operating fault: the command could not do its work (corrupt or missing file, "
                     "unreachable node, timeout); the message names the file, offset or endpoint",
    STEPPED_DOWN: "a primary stepped down: a node of a newer epoch exists",
    PROMOTION_FAILED: "a promotion failed half-way (the node neither follows nor serves, so it exits)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}


def one_line(error: BaseException) -> str:
    """An exception's message on one line, never empty (an OSError with no text, such as
    a TimeoutError, is named by its type)."""
    text = str(error.strerror if isinstance(error, OSError) and error.strerror else error)
    text = " ".join(text.split())
    if isinstance(error, OSError) and error.filename:
        text = f"{text} {error.filename}"
    return text or type(error).__name__


class OperatingFault(click.ClickException):
    """An operating fault raised inside a command: one line on stderr, exit 3."""

    exit_code = OPERATING_FAULT
