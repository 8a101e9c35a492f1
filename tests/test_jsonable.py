"""hpo.jsonable: what JSON cannot hold (NaN, infinities) becomes null."""

from __future__ import annotations

import json
import math

import pytest

from hpo.jsonable import finite, finite_tree


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_becomes_none(value: float) -> None:
    assert finite(value) is None


@pytest.mark.parametrize("value", [0.0, -1.5, 0.9795, 1e308])
def test_a_finite_number_is_kept(value: float) -> None:
    assert finite(value) == value


def test_a_whole_record_becomes_strict_json() -> None:
    record = {"epochs": [{"loss": math.nan, "acc": 0.5}], "pair": (math.inf, 1), "n": 3, "s": "x"}
    text = json.dumps(finite_tree(record), allow_nan=False)  # raises where a NaN is left
    assert json.loads(text) == {"epochs": [{"loss": None, "acc": 0.5}], "pair": [None, 1], "n": 3,
                                "s": "x"}  # fmt: skip
