"""How values read in every table hpo prints or writes (the CLI's summary, the report, the
benchmark table)."""

from __future__ import annotations

from typing import Any


def short(value: Any) -> str:
    """A float to 4 significant digits (0.0123456 -> 0.01235, 1e-05), anything else as str."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
