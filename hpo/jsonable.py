"""Numbers for JSON, which has no NaN or infinity (and the dashboard's parser rejects them)."""

from __future__ import annotations

import math
from typing import Any


def finite(x: float) -> float | None:
    """``x``, or None (JSON's null) where it is NaN or infinite: a diverged run's loss, say."""
    return x if math.isfinite(x) else None


def finite_tree(value: Any) -> Any:
    """``value`` with every non-finite float in its dicts, lists and tuples made None: for a
    whole record written as JSON (Python's json writes NaN, which JSON parsers reject)."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: finite_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_tree(v) for v in value]
    return value
