"""The engine against real NASDAQ order flow: the LOBSTER AAPL samples of 2012-06-21.

The data is not in the repository (its redistribution terms are not stated): it is read
from ../shared/lobster next to the repository, and these tests skip when it is absent.
The floors asserted are the reference figures measured on this data (PROVENANCE.md in
that folder; docs/LOBSTER.md explains them and the residue):

* the 999-row, 10-level slice: 98.60% of rows exact (985 of 999; the other 14 differ
  only outside the previous window, where the file cannot show what happened) and 100%
  of known-id executions FIFO-consistent;
* the full 30-level file (slow): 98.85% of rows exact, 99.18% of known-id executions
  and 99.40% of verifiable executions FIFO-consistent.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tools.lobster import percent, validate_files

LOBSTER_DIRECTORY = Path(__file__).resolve().parents[2] / "shared" / "lobster"
SLICE_MESSAGES = LOBSTER_DIRECTORY / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
SLICE_ORDERBOOK = LOBSTER_DIRECTORY / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"
FULL_ZIP = LOBSTER_DIRECTORY / "LOBSTER_SampleFile_AAPL_2012-06-21_30.zip"
FULL_MESSAGES = "AAPL_2012-06-21_34200000_37800000_message_30.csv"
FULL_ORDERBOOK = "AAPL_2012-06-21_34200000_37800000_orderbook_30.csv"


def _require(*paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            pytest.skip(f"LOBSTER sample data not found at {path} (kept outside the repository)")


def _pct(part: int, whole: int) -> float:
    # The reference figures are quoted to two decimals; compare at that precision.
    value = percent(part, whole)
    assert value is not None
    return value


def test_the_999_row_slice_matches_nasdaq():
    _require(SLICE_MESSAGES, SLICE_ORDERBOOK)
    report = validate_files(SLICE_MESSAGES, SLICE_ORDERBOOK)
    assert report.symbol == "AAPL" and report.levels == 10
    assert report.rows == 999
    assert _pct(report.rows_exact, report.rows) >= 98.60, report.format_text()
    assert report.rows_interior == 0, report.format_text()
    known = report.executions_known
    assert known.total > 0 and known.consistent == known.total, report.format_text()
    assert report.executions_verifiable.consistent == report.executions_verifiable.total
    # Every row that differs, differs only where the file cannot show what happened.
    assert report.rows_exact + report.rows_outside_window == report.rows


def test_the_slice_without_lookahead_reaches_the_same_figures():
    _require(SLICE_MESSAGES, SLICE_ORDERBOOK)
    report = validate_files(SLICE_MESSAGES, SLICE_ORDERBOOK, lookahead=False)
    assert _pct(report.rows_exact, report.rows) >= 98.60
    assert report.executions_known.consistent == report.executions_known.total


@pytest.mark.slow
def test_the_full_30_level_hour_matches_nasdaq(tmp_path):
    _require(FULL_ZIP)
    with zipfile.ZipFile(FULL_ZIP) as archive:
        archive.extract(FULL_MESSAGES, tmp_path)
        archive.extract(FULL_ORDERBOOK, tmp_path)
    report = validate_files(tmp_path / FULL_MESSAGES, tmp_path / FULL_ORDERBOOK)
    print(report.format_text())
    assert report.levels == 30 and report.rows == 86616
    assert _pct(report.rows_exact, report.rows) >= 98.85, report.format_text()
    known = report.executions_known
    assert _pct(known.consistent, known.total) >= 99.18, report.format_text()
    verifiable = report.executions_verifiable
    assert _pct(verifiable.consistent, verifiable.total) >= 99.40, report.format_text()
