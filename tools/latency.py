"""Percentiles for every bench and drill, from an HDR histogram (the `hdrhistogram` package).

One place, one method: values (nanoseconds, records, ...) go into an HdrHistogram with 3
significant digits (a reported percentile is within 0.1% of the true value), and the
percentile is the histogram's value at that percentile, clamped to the recorded range so
a p99 never reads above the maximum actually seen. An empty sample gives `empty`.
"""

from __future__ import annotations

from typing import Iterable, Optional

from hdrh.histogram import HdrHistogram

SIGNIFICANT_DIGITS = 3


def histogram(values: Iterable[int]) -> tuple[Optional[HdrHistogram], int, int]:
    """(histogram, smallest, largest) of non-negative integer values (None when empty)."""
    ordered = [max(0, int(value)) for value in values]
    if not ordered:
        return None, 0, 0
    smallest, largest = min(ordered), max(ordered)
    recorder = HdrHistogram(1, max(2, largest), SIGNIFICANT_DIGITS)
    for value in ordered:
        recorder.record_value(value)
    return recorder, smallest, largest


def percentiles(values: Iterable[int], fractions: Iterable[float], empty=None) -> list:
    """The values at these fractions (0.5: the median, 0.99, 1.0: the maximum)."""
    recorder, smallest, largest = histogram(values)
    if recorder is None:
        return [empty for _ in fractions]
    return [largest if fraction >= 1.0 else
            min(largest, max(smallest, recorder.get_value_at_percentile(fraction * 100)))
            for fraction in fractions]


def percentile(values: Iterable[int], fraction: float, empty=None):
    """The value at one fraction of the sample (see percentiles)."""
    return percentiles(values, (fraction,), empty)[0]
