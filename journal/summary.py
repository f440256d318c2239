"""inspect(): a plain-dict summary of a journal for operators and the CLI.

It verifies the whole journal exactly as recovery would (every header, every record,
the chain across segments, the tail classification), but changes nothing, takes no
lock, and reports a corruption in the result instead of raising it. The result is
made of str, int, None, lists and dicts only, so it prints as JSON as it is.
"""

from __future__ import annotations

import dataclasses
import os

from journal.format import FORMAT_VERSION
from journal.recovery import STATE_CLEAN, STATE_CORRUPT, STATE_EMPTY, STATE_TORN, scan_journal
from journal.segment import list_segments

EVIDENCE_SUFFIXES = (".torn", ".divergent")


def inspect(directory: str | os.PathLike, *, cluster_id: int | None = None) -> dict:
    """Summarise a journal: per segment its sequences, epochs, size and tail state;
    overall its state ("clean" | "torn" | "empty" | "corrupt") and where it ends."""
    path = os.fspath(directory)
    segments = list_segments(path)
    scan = scan_journal(path, cluster_id=cluster_id, full_scan=True)
    if scan.error is not None:
        state = STATE_CORRUPT
    elif scan.torn is not None:
        state = STATE_TORN
    elif not segments:
        state = STATE_EMPTY
    else:
        state = STATE_CLEAN
    summaries = [dataclasses.asdict(summary) for summary in scan.segments]
    scanned_paths = {summary.path for summary in scan.segments}
    if scan.torn is not None and scan.torn.whole_segment:
        scanned_paths.add(scan.torn.segment_path)
    last_epoch = None
    if scan.last_state is not None:
        next_sequence, last_crc, last_epoch = scan.last_state
        last_sequence = next_sequence - 1
    else:
        last_sequence, last_crc = None, None
    try:
        evidence = sorted(name for name in os.listdir(path) if name.endswith(EVIDENCE_SUFFIXES))
    except OSError:
        evidence = []
    return {
        "directory": path,
        "format_version": FORMAT_VERSION,
        "state": state,
        "cluster_id": scan.cluster_id,
        "first_sequence": scan.first_sequence,
        "last_sequence": last_sequence,
        "last_crc": last_crc,
        "last_epoch": last_epoch,
        "record_count": sum(summary.record_count for summary in scan.segments),
        "size_bytes": sum(summary.size_bytes for summary in scan.segments),
        "segments": summaries,
        "unscanned_segments": [segment.path for segment in segments if segment.path not in scanned_paths],
        "torn": None if scan.torn is None else {**dataclasses.asdict(scan.torn), "bytes_cut": scan.torn.bytes_cut},
        "error": None
        if scan.error is None
        else {
            "type": type(scan.error).__name__,
            "path": scan.error.path,
            "offset": scan.error.offset,
            "reason": scan.error.reason,
            "message": str(scan.error),
        },
        "evidence_files": evidence,
    }
