"""Log lines (issue 21): ISO-8601 timestamps with date and offset, a level, key=value
fields, JSON on request, and repeated lines limited per window."""

from __future__ import annotations

import io
import json
import logging
import re

from tools.logs import RepeatFilter, configure, node_log


def test_text_lines_carry_an_iso_timestamp_a_level_and_fields():
    stream = io.StringIO()
    configure("text", stream)
    node_log("primary")("primary up: clients 127.0.0.1:7701")
    node_log("primary")("WARNING metrics not served")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 INFO role=primary pid=\d+ "
                        r"primary up: clients 127\.0\.0\.1:7701", first), first
    assert " WARNING role=primary " in second


def test_json_lines_are_one_object_each():
    stream = io.StringIO()
    configure("json", stream)
    node_log("standby")("standby up")
    record = json.loads(stream.getvalue())
    assert record["level"] == "INFO" and record["role"] == "standby" and record["message"] == "standby up"
    assert record["ts"].startswith("20") and "T" in record["ts"]
    configure("text")


def test_a_repeated_line_is_limited_per_window_and_the_count_reported_after():
    now = [0.0]
    repeat = RepeatFilter(window_seconds=10, repeats=3, clock=lambda: now[0])

    def passes(message: str) -> bool:
        return repeat.filter(logging.LogRecord("t", logging.INFO, "", 0, message, (), None))

    assert [passes("peer 10.0.0.1:5 failed logon") for _ in range(10)] == [True] * 3 + [False] * 7
    assert passes("another line")
    now[0] = 11.0
    record = logging.LogRecord("t", logging.INFO, "", 0, "peer 10.0.0.1:5 failed logon", (), None)
    assert repeat.filter(record) and record.getMessage().endswith("(and 7 more times in the last window)")


def test_a_progress_bar_is_drawn_on_a_terminal_only():
    import os
    import pty

    from tools.progress import progress_bar

    plain = io.StringIO()
    with progress_bar("verifying", 1_000_000, plain) as advance:
        advance(500_000)
    assert plain.getvalue() == ""  # a pipe or file gets nothing
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w") as stream:
        with progress_bar("verifying", 1_000_000, stream) as advance:
            advance(500_000)
            stream.flush()
    drawn = os.read(controller, 65536)
    os.close(controller)
    assert b"verifying" in drawn
