"""Readable labels for the report's log axes (a learning rate, a hidden size on a log scale).

Plotly labels a log axis spanning about a decade with the leading digit alone ("9, 0.01, 2, 3":
a learning rate of 0.02 reads as 2) and wider ones with SI prefixes ("100μ" for 0.0001). Here each
log axis gets ticks at 1-9, 1-2-5, 1-3 or 1 per decade, the finest whose labels do not overlap
at the axis's length, written out in full: 0.02, 0.0001, 300.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go

# Mantissas per decade, finest first.
STEPS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))
# What the page gives a figure (its column is about 1,000 px wide; plotly's default height
# less the margins) and what a label takes along each axis ("0.0005" is about 40 px wide at
# plotly's 12 px font, 14 px high), with room between labels.
PAGE_WIDTH_PX, LABEL_WIDTH_PX = 1000, 46
PLOT_HEIGHT_PX, LABEL_HEIGHT_PX = 340, 18


def plain_log_ticks(fig: go.Figure) -> go.Figure:
    """Set every log axis of ``fig`` to ``log_ticks`` over the values it shows."""
    for letter, length, label in (
        ("x", PAGE_WIDTH_PX, LABEL_WIDTH_PX),
        ("y", _height(fig), LABEL_HEIGHT_PX),
    ):
        for name in fig.layout:
            if not name.startswith(f"{letter}axis") or fig.layout[name].type != "log":
                continue
            axis = fig.layout[name]
            span = _span(axis, _values(fig, letter, letter + name.removeprefix(f"{letter}axis")))
            if span is None:
                continue
            lo, hi = span
            share = (axis.domain[1] - axis.domain[0]) if axis.domain else 1.0
            decades = max(math.log10(hi / lo), 0.1)  # plotly pads a single value's axis
            ticks = log_ticks(lo, hi, length * share / decades, label)
            if ticks:
                axis.update(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
            else:  # too narrow a span for two such ticks, or too many decades: plotly's, in full
                axis.tickformat = "~g"
    return fig


def log_ticks(lo: float, hi: float, px_per_decade: float, label_px: float) -> list[float]:
    """Ticks m * 10^k within [lo, hi] for the finest mantissas of ``STEPS`` whose closest two
    ticks (9 and 10, 2 and 1 of the next decade...) lie ``label_px`` apart; [] when that gives
    fewer than two, or when even one per decade would overlap."""
    # An lr of 0.9 * 0.01 is 0.009000000000000001: the 0.009 tick still belongs to it.
    lo, hi = lo * (1 - 1e-9), hi * (1 + 1e-9)
    for mantissas in STEPS:
        if _closest(mantissas) * px_per_decade < label_px:
            continue
        ticks = [
            float(f"{m}e{k}")  # exact decimals: 2e-3, not 2 * 10**-3 = 0.0020000000000000005
            for k in range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= float(f"{m}e{k}") <= hi
        ]
        return ticks if len(ticks) >= 2 else []
    return []


def _closest(mantissas: tuple[int, ...]) -> float:
    """The smallest gap, in decades, between neighbouring ticks of these mantissas."""
    marks = [math.log10(m) for m in mantissas] + [1.0]
    return min(b - a for a, b in itertools.pairwise(marks))


def _height(fig: go.Figure) -> float:
    return PLOT_HEIGHT_PX if fig.layout.height is None else fig.layout.height - 80


def _span(axis: Any, shown: Iterable[float]) -> tuple[float, float] | None:
    if axis.range is not None:  # Optuna's contour sets it, in log10 units
        lo, hi = (10**end for end in axis.range)
        return lo, hi
    values = [v for v in shown if v > 0]
    return (min(values), max(values)) if values else None


def _values(fig: go.Figure, letter: str, ref: str) -> Iterable[float]:
    """The numbers the traces drawn on axis ``ref`` ("x2") put along it."""
    for trace in fig.data:
        if (getattr(trace, f"{letter}axis", None) or letter) == ref:
            for v in getattr(trace, letter, None) or ():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    yield float(v)
