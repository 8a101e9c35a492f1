"""hpo.jsonable: what JSON cannot hold (NaN, infinities) becomes null."""

from __future__ import annotations

import math

import pytest

from hpo.jsonable import finite


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_becomes_none(value: float) -> None:
    assert finite(value) is None


@pytest.mark.parametrize("value", [0.0, -1.5, 0.9795, 1e308])
def test_a_finite_number_is_kept(value: float) -> None:
    assert finite(value) == value
