"""tools/latency.py: the one percentile method of every bench and drill (HDR histogram)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.latency import percentile, percentiles


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**10), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99, 0.999]))
def test_a_percentile_is_within_a_thousandth_of_the_exact_one_and_inside_the_sample(values, fraction):
    ordered = sorted(values)
    got = percentile(values, fraction)
    assert ordered[0] <= got <= ordered[-1]
    # HDR with 3 significant digits: some sample value within 0.1% (+1 for tiny values)
    # of the nearest-rank percentile's neighbourhood.
    exact_low = ordered[max(0, int(len(ordered) * fraction) - 1)]
    exact_high = ordered[min(len(ordered) - 1, int(len(ordered) * fraction) + 1)]
    assert exact_low * 0.999 - 1 <= got <= exact_high * 1.001 + 1


def test_the_maximum_and_an_empty_sample():
    assert percentiles([3, 1, 7], (1.0,)) == [7]
    assert percentile([], 0.99) is None and percentile([], 0.99, 0) == 0
