"""The report's log axes: ticks written in full, the finest per decade whose labels do not
overlap (the browser test reads them off the drawn page)."""

from __future__ import annotations

import math

import optuna
import plotly.graph_objects as go
import pytest

from hpo.report.log_ticks import log_ticks, plain_log_ticks


@pytest.mark.parametrize(
    ("lo", "hi", "px_per_decade", "expected"),
    [
        # 1-9 would put 0.08 and 0.09 11 px apart at 211 px a decade (a 190 px slice panel)
        (0.01, 0.08, 211, [0.01, 0.02, 0.05]),
        (0.01, 0.08, 1100, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]),
        (0.009000000000000001, 0.03, 1100, [0.009, 0.01, 0.02, 0.03]),  # 0.9 * 0.01 holds 0.009
        (1e-4, 0.3, 54, [0.0001, 0.001, 0.01, 0.1]),  # 1-3: 1 and 3 only 26 px apart
        (1e-4, 0.3, 100, [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]),
        (80, 500, 240, [100.0, 200.0, 500.0]),
        (0.011, 0.015, 5000, []),  # no two ticks in it: plotly's own, in full
        (0.011, 0.025, 5000, []),  # 0.02 alone: one label says nothing of the scale
        (0.001, 1.0, 46, [0.001, 0.01, 0.1, 1.0]),  # a label's width a decade: one just fits
        (1e-9, 1.0, 10, []),  # even one a decade would overlap
    ],
)
def test_ticks_are_the_finest_decimals_whose_labels_do_not_overlap(
    lo: float, hi: float, px_per_decade: float, expected: list[float]
) -> None:
    assert log_ticks(lo, hi, px_per_decade, label_px=46) == expected


def test_each_log_axis_gets_ticks_over_its_own_values_and_linear_axes_none() -> None:
    fig = go.Figure()
    fig.add_scatter(x=[1, 2, 3], y=[0.0009, 0.004, 0.03])
    fig.add_scatter(x=[64, 900], y=[0.9, 0.95], xaxis="x2", yaxis="y2")
    fig.update_layout(
        yaxis={"type": "log", "domain": [0.0, 1.0]},
        xaxis2={"type": "log", "domain": [0.8, 1.0]},  # 200 px over 1.15 decades
        yaxis2={"anchor": "x2"},
    )
    plain_log_ticks(fig)
    # 340 px over 1.5 decades: 1-9 would put 0.008 and 0.009 12 px apart, under a label's 18
    assert list(fig.layout.yaxis.tickvals) == [0.001, 0.002, 0.005, 0.01, 0.02]
    assert list(fig.layout.yaxis.ticktext) == ["0.001", "0.002", "0.005", "0.01", "0.02"]
    assert list(fig.layout.xaxis2.tickvals) == [100.0, 200.0, 500.0]
    assert list(fig.layout.xaxis2.ticktext) == ["100", "200", "500"]
    assert fig.layout.xaxis.tickvals is None and fig.layout.yaxis2.tickvals is None


def test_an_axis_with_a_set_range_is_ticked_over_that_range() -> None:
    # Optuna's contour sets its log axes' ranges (log10 units) rather than leaving them to plotly.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: t.suggest_float("lr", 1e-4, 0.3, log=True) + t.suggest_float("m", 0.5, 0.99),
        n_trials=12,
    )
    fig = plain_log_ticks(optuna.visualization.plot_contour(study))
    lo, hi = (10**end for end in fig.layout.xaxis.range)
    assert fig.layout.xaxis.title.text == "lr" and fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == log_ticks(lo, hi, 1000 / math.log10(hi / lo), 46)
    assert len(fig.layout.xaxis.tickvals) >= 2
    assert fig.layout.yaxis.type != "log" and fig.layout.yaxis.tickvals is None


def _ticked(
    letter: str, values: list[float], domain: list[float] | None = None, height: int | None = None
) -> tuple[float, ...]:
    """The ticks plain_log_ticks gives a lone log axis ``letter`` over ``values``."""
    fig = go.Figure()
    fig.add_scatter(**{letter: values, ("y" if letter == "x" else "x"): [1, 2]})
    axis = {"type": "log"} | ({"domain": domain} if domain else {})
    fig.update_layout({f"{letter}axis": axis, "height": height})
    return tuple(plain_log_ticks(fig).layout[f"{letter}axis"].tickvals)


def test_ticks_are_spaced_for_the_length_the_axis_really_has() -> None:
    # A span under a decade fills the 1,000 px: 2,500 px a decade fits 1-9 (0.04 and 0.05 115 px
    # apart), where counting it as a whole decade would have thinned it to 1-2-5.
    assert _ticked("x", [0.02, 0.05]) == (0.02, 0.03, 0.04, 0.05)
    # The same values on the full width get 1-2-5; on a fifth of it (a subplot), 1 a decade.
    wide = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
    assert _ticked("x", [0.001, 0.3]) == wide
    assert _ticked("x", [0.001, 0.3], domain=[0.0, 0.2]) == (0.001, 0.01, 0.1)
    # A y axis has the figure's height less its margins: 120 px over 2.5 decades fits 1-3 only.
    assert _ticked("y", [0.001, 0.3]) == wide
    assert _ticked("y", [0.001, 0.3], height=200) == (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
