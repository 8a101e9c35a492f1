"""What a result was computed with: library versions and hardware, stored beside every result."""

from __future__ import annotations

import platform
import sys
from functools import cache
from importlib import metadata


@cache
def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("hpo", "torch", "torchvision", "optuna", "numpy", "pandas", "plotly"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out
