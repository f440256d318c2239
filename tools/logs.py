"""The CLI's log lines: `logging` with ISO-8601 timestamps, a level and key=value fields.

Text (the default), one line per record on stderr:

    2026-12-08T00:27:31.412+00:00 INFO role=primary pid=4121 primary up: epoch 0, ...

JSON (`twinbook --log-format json ...`), one object per line:

    {"ts": "2026-12-08T00:27:31.412+00:00", "level": "INFO", "role": "primary",
     "pid": 4121, "message": "primary up: epoch 0, ..."}

The node libraries log through a plain callable (`log(line)`); `node_log(role)` makes one
that routes to the `twinbook.<role>` logger, taking the level from the line (a line that
starts with WARNING is a warning). Identical lines repeated within a window are limited
(RepeatFilter): the first REPEATS_PER_WINDOW pass, the rest are counted and reported in one
"... repeated N more times" line when the window ends, so a flood of one message cannot
fill a disk or drown the line that explains it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from typing import Callable

REPEAT_WINDOW_SECONDS = 10.0
REPEATS_PER_WINDOW = 5
FORMATS = ("text", "json")


def _timestamp(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.timezone.utc).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in getattr(record, "fields", {}).items())
        return f"{_timestamp(record.created)} {record.levelname} {fields + ' ' if fields else ''}{record.getMessage()}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": _timestamp(record.created), "level": record.levelname,
                           **getattr(record, "fields", {}), "message": record.getMessage()})


class RepeatFilter(logging.Filter):
    """Lets the first REPEATS_PER_WINDOW copies of one message through per window."""

    def __init__(self, window_seconds: float = REPEAT_WINDOW_SECONDS, repeats: int = REPEATS_PER_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self.repeats = repeats
        self.clock = clock
        self._seen: dict[str, list] = {}  # message -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        now = self.clock()
        entry = self._seen.get(message)
        if entry is None or now - entry[0] >= self.window_seconds:
            suppressed = entry[2] if entry is not None else 0
            self._seen[message] = [now, 1, 0]
            if len(self._seen) > 4096:  # bounded: forget the oldest windows
                for key in sorted(self._seen, key=lambda key: self._seen[key][0])[:2048]:
                    del self._seen[key]
            if suppressed:
                record.msg, record.args = f"{message} (and {suppressed} more times in the last window)", ()
            return True
        entry[1] += 1
        if entry[1] <= self.repeats:
            return True
        entry[2] += 1
        return False


def configure(log_format: str = "text", stream=None) -> None:
    """Route the `twinbook` loggers to stderr in this format (idempotent)."""
    logger = logging.getLogger("twinbook")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def node_log(role: str) -> Callable[[str], None]:
    """A `log(line)` callable for a node library, logging as twinbook.<role>."""
    logger = logging.getLogger(f"twinbook.{role}")
    if not logging.getLogger("twinbook").handlers:
        configure()
    fields = {"role": role, "pid": os.getpid()}

    def log(line: str) -> None:
        level = logging.WARNING if line.startswith(("WARNING", "DEGRADED")) else logging.INFO
        logger.log(level, line, extra={"fields": fields})

    return log
