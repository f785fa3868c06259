"""rho: Spearman correlation with average ranks, against hand values and a brute-force rank definition."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alrp.metrics.correlation import average_ranks, mean_rho, spearman


def brute_ranks(x):
    x = np.asarray(x, dtype=float)
    return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])


def test_hand_values():
    assert spearman([0.1, 0.2, 0.3], [0.5, 0.6, 0.9]) == pytest.approx(1.0)
    assert spearman([0.1, 0.2, 0.3], [0.9, 0.6, 0.5]) == pytest.approx(-1.0)
    # ranks x: 1 2 3 4, y: 2 1 4 3 -> d^2 = 4 -> 1 - 6*4/(4*15) = 0.6
    assert spearman([1, 2, 3, 4], [20, 10, 40, 30]) == pytest.approx(0.6)
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1, 3.5, 2])


def test_undefined_cases():
    assert math.isnan(spearman([0.5], [0.7]))
    assert math.isnan(spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))
    assert math.isnan(mean_rho([None, float("nan")]))
    assert mean_rho([0.5, None, 0.1, float("nan")]) == pytest.approx(0.3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=2, max_size=30))
def test_against_pearson_of_brute_force_ranks(pairs):
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    rx, ry = brute_ranks(x), brute_ranks(y)
    np.testing.assert_allclose(average_ranks(x), rx)
    got = spearman(x, y)
    if rx.std() == 0 or ry.std() == 0:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(float(np.corrcoef(rx, ry)[0, 1]), abs=1e-9)
