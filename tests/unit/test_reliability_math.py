from __future__ import annotations

import pytest

from tests.reliability import slope


def test_slope_of_a_line_and_of_noise_around_it() -> None:
    assert slope([(x, 3 * x + 2) for x in range(10)]) == pytest.approx(3)
    noisy = [(x, 5 + (1 if x % 2 else -1)) for x in range(100)]
    assert abs(slope(noisy)) < 0.01


def test_slope_of_too_few_points_is_zero() -> None:
    assert slope([]) == 0 and slope([(1, 5)]) == 0 and slope([(1, 5), (1, 7)]) == 0
