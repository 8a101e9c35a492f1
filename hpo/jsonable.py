"""Numbers for JSON, which has no NaN or infinity (and the dashboard's parser rejects them)."""

from __future__ import annotations

import math


def finite(x: float) -> float | None:
    """``x``, or None (JSON's null) where it is NaN or infinite: a diverged run's loss, say."""
    return x if math.isfinite(x) else None
