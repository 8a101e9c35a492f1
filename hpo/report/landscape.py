"""Plotly figures of the search space: parallel coordinates, parameter importances, slices and
a contour, mostly Optuna's own in the page's style; each says why when the study cannot
support it."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
import plotly.colors
import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from hpo.report.figures import BASELINE_COLOUR, Figure, layout, percent_of
from hpo.report.log_ticks import plain_log_ticks
from hpo.report.study import StudyData


def landscape(data: StudyData) -> list[Figure]:
    importances, why = param_importances(data)
    top = list(importances)
    return [
        parallel(data),
        importance_figure(importances, why),
        slices(data, top[:4]),
        contour(data, top[:2]),
    ]


# Optuna's colour scale, plotly's "Blues", starts at white: on the white page the lowest trial
# (often the baseline) vanished. Every colour is blended a third of the way towards the darkest
# blue: the lightest becomes visible, and the order (darker: more) stays.
_DARK = (8.0, 48.0, 107.0)


def visible(color: str) -> str:
    """``color`` ("rgb(r, g, b)", as plotly's scales and Optuna's lines give it) a third of the
    way to the scale's darkest blue."""
    rgb = plotly.colors.unlabel_rgb(color)
    blended = (round(c + (d - c) / 3) for c, d in zip(rgb, _DARK, strict=True))
    return plotly.colors.label_rgb(tuple(blended))


BLUES = [visible(c) for c in plotly.colors.sequential.Blues]


def _restyle(fig: go.Figure, height: int) -> go.Figure:
    """Optuna's own figures in the page's style: the page has the title; Optuna's fixed width
    (300 px per slice subplot) gives way to the page's."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        title=None,
        width=None,
        autosize=True,
        margin={"t": 30},
    )
    return plain_log_ticks(fig)


def parallel(data: StudyData) -> Figure:
    title = "Parallel coordinates"
    if len(data.complete) < 2:
        return Figure("parallel", title, "Needs at least two complete trials.", None)
    fig = optuna.visualization.plot_parallel_coordinate(data.study, target_name=data.target_label)
    # Optuna 5 draws each trial as a line of its own, its colour sampled from the scale.
    for trace in fig.data:
        if trace.mode == "lines" and isinstance(trace.line.color, str):
            trace.line.color = visible(trace.line.color)
        elif trace.marker is not None and trace.marker.showscale:  # the colour bar
            trace.marker.colorscale = BLUES
    if form := percent_of(data, ".1%"):  # Optuna's values have 3 digits: 0.965 is 96.5%
        _objective_in_percent(fig, data.target_label, form)
    _uncrowd_ticks(fig)
    caption = (
        f"Each line is a complete trial, coloured by {data.target_label} (darker: better); "
        "hover over a line for its values."
    )
    unused = _unused_params(data.complete)
    if unused:  # Optuna's own label for them, which reads like a missing value
        caption += (
            f" A trial that does not use {' or '.join(unused)} (its schedule has no such "
            "parameter) crosses that axis at the tick marked None."
        )
    return Figure("parallel", title, caption, _restyle(fig, 460))


def _objective_in_percent(fig: go.Figure, label: str, form: str) -> None:
    """The objective's axis ticks and hover values in % as the rest of the page gives them
    (Optuna writes fractions: 0.965). Its ticks are the annotations at the axis's x."""
    names = list(fig.layout.xaxis.ticktext or ())
    if label not in names:  # another layout than Optuna 5's: left as Optuna drew it
        return
    at = names.index(label)

    def percent(text: str) -> str:
        try:
            return format(float(text), form)
        except ValueError:
            return text

    for note in fig.layout.annotations:
        if note.x == at:
            note.text = percent(note.text)
    for trace in fig.data:
        if trace.marker is not None and trace.marker.showscale:  # the colour bar
            trace.marker.colorbar.tickformat = form
        if trace.mode == "lines" and trace.customdata is not None:
            trace.customdata = [
                [name, percent(value) if name == label else value]
                for name, value in trace.customdata
            ]


# The least gap between two tick labels of one axis, as a share of its height: Optuna labels a
# log axis's ends and its powers of ten, so hidden1 in [90, 512] printed "90" and "100" on
# top of each other.
_TICK_GAP = 0.05


def _uncrowd_ticks(fig: go.Figure) -> None:
    """Drop an inner tick label of a parallel-coordinates axis too close to another (its ends,
    the range, always stay)."""
    kept: list[Any] = []
    for x in {note.x for note in fig.layout.annotations}:
        ticks = sorted((n for n in fig.layout.annotations if n.x == x), key=lambda n: n.y)
        ends = [ticks[0], ticks[-1]] if len(ticks) > 1 else ticks
        chosen = [ticks[0]]
        for tick in ticks[1:-1]:
            if min(abs(tick.y - chosen[-1].y), abs(ticks[-1].y - tick.y)) >= _TICK_GAP:
                chosen.append(tick)
        kept += chosen + ends[1:]
    order = {id(n): i for i, n in enumerate(fig.layout.annotations)}
    fig.layout.annotations = sorted(kept, key=lambda n: order[id(n)])


def _unused_params(trials: list[FrozenTrial]) -> list[str]:
    """The parameters some trials have and others lack (conditional ones such as gamma)."""
    names = {name for t in trials for name in t.params}
    return sorted(name for name in names if any(name not in t.params for t in trials))


def param_importances(data: StudyData) -> tuple[dict[str, float], str]:
    """Importances (PED-ANOVA, Optuna's default) and a caption; empty with the reason when the
    study cannot support them."""
    inside = [t for t in data.complete if in_space(t)]
    outside = sorted({t.number for t in data.complete} - {t.number for t in inside})
    if len(inside) < 3:
        return (
            {},
            f"Needs at least three complete trials in the space (the study has {len(inside)}).",
        )
    study = data.study
    if outside:
        # A trial with a value outside its range (the baseline where the tutorial's values lie
        # outside the space) stretches the range PED-ANOVA bins: measured, one such trial among
        # 30 moved a parameter's importance from 0.02 to 0.21.
        study = optuna.create_study(direction=data.study.direction)
        study.add_trials(inside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError) as exc:
            return {}, f"Optuna could not compute importances: {exc}"
    said = [str(w.message).replace("`", "") for w in caught]
    notes = " ".join(f"Optuna warns: {m}" for m in said if "importance" in m.lower())
    caption = (
        "How much each parameter matters for reaching the top of the study "
        "(Optuna's PED-ANOVA), normalised to sum to 1. It sets the best tenth of the "
        f"{len(inside)} complete trials used against all of them: with few trials it says where "
        "the best few lie more than what matters."
    )
    if "gamma" in values:
        caption += _gamma_note(inside)
    if outside:
        which = ", ".join(f"#{n}" for n in outside)
        caption += f" Left out: {which}, with values outside the search space."
    return dict(values), f"{caption} {notes}".strip()


def _gamma_note(trials: list[FrozenTrial]) -> str:
    """Where gamma means two things among ``trials``, what each means (one axis pools them)."""
    schedules = {t.params.get("schedule") for t in trials}
    if "exponential" in schedules and schedules & {"tutorial", "step"}:
        return (
            " gamma is one axis here, but a factor per epoch under the exponential schedule "
            "and per step_every epochs under tutorial and step."
        )
    return ""


def in_space(trial: FrozenTrial) -> bool:
    """Whether each of the trial's values lies in the distribution it was asked with (an enqueued
    trial's may not: Optuna only warns)."""
    for name, value in trial.params.items():
        dist = trial.distributions[name]
        if isinstance(dist, CategoricalDistribution):
            inside = value in dist.choices
        elif isinstance(dist, FloatDistribution | IntDistribution):
            inside = dist.low <= value <= dist.high
        else:  # a kind Optuna may add: taken as inside, as before this check
            inside = True
        if not inside:
            return False
    return True


def importance_figure(importances: dict[str, float], caption: str) -> Figure:
    title = "Parameter importances"
    if not importances:
        return Figure("importances", title, caption, None)
    names = list(importances)[::-1]  # plotly draws the first bar at the bottom
    fig = go.Figure(
        go.Bar(
            x=[importances[n] for n in names], y=names, orientation="h", marker={"color": "#1f77b4"}
        )
    )
    return Figure("importances", title, caption, layout(fig, "importance", "parameter"))


def slices(data: StudyData, params: list[str]) -> Figure:
    title = "Slice plots of the most important parameters"
    if not params:
        return Figure("slice", title, "Needs parameter importances (see above).", None)
    fig = optuna.visualization.plot_slice(data.study, params=params, target_name=data.target_label)
    fig.update_traces(marker_colorscale=BLUES, selector={"type": "scatter"})
    baseline = data.baseline
    number = baseline.number if baseline is not None else None
    _name_points(fig, number, data.target_label, percent_of(data))
    fig.update_yaxes(tickformat=percent_of(data, ".1%"))  # as the history and curves figures
    caption = (
        # in the panels' order: Optuna draws them sorted by name
        f"{data.target_label.capitalize()} against {', '.join(sorted(params))}; darker points "
        "are later trials; hover over a point for its trial."
    )
    if "gamma" in params:
        caption += _gamma_note(data.complete)
    if baseline is not None:
        caption += (
            f" The black ring is the baseline (trial {baseline.number}, the tutorial's recipe): "
            "it may differ from the others in parameters not shown here (its softmax head)."
        )
    return Figure("slice", title, caption, _restyle(fig, 400))


def _name_points(fig: go.Figure, baseline: int | None, target: str, form: str) -> None:
    """Each point's hover names its trial (Optuna colours a slice's points by trial number and
    says only x and y), and the baseline's point gets a ring of its own on every panel."""
    rings: list[go.Scatter] = []
    for trace in list(fig.data):
        numbers = trace.marker.color if trace.type == "scatter" else None
        if not isinstance(numbers, tuple | list) or not numbers:
            continue
        trace.text = [f"trial {n}" + (" (baseline)" if n == baseline else "") for n in numbers]
        param = fig.layout[f"xaxis{(trace.xaxis or 'x')[1:]}"].title.text or "x"
        y = f"%{{y:{form}}}" if form else "%{y}"
        trace.hovertemplate = f"%{{text}}<br>{param} %{{x}}<br>{target} {y}<extra></extra>"
        if baseline in numbers:
            at = list(numbers).index(baseline)
            rings.append(
                go.Scatter(
                    x=[trace.x[at]],
                    y=[trace.y[at]],
                    xaxis=trace.xaxis,
                    yaxis=trace.yaxis,
                    mode="markers",
                    marker={"symbol": "circle-open", "size": 16, "color": BASELINE_COLOUR},
                    marker_line_width=2,
                    name="baseline",
                    showlegend=not rings,
                    hoverinfo="skip",
                )
            )
    fig.add_traces(rings)
    # Above the panels, left: at the right, Optuna's colour bar (and its title) would cover it.
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"})


def contour(data: StudyData, params: list[str]) -> Figure:
    title = "Contour of the two most important parameters"
    if len(params) < 2 or len(data.complete) < 5:
        return Figure(
            "contour",
            title,
            "Needs two important parameters and at least five complete trials.",
            None,
        )
    both = [t for t in data.complete if all(p in t.params for p in params)]
    if any(len({t.params[p] for t in both}) < 2 for p in params):
        return Figure(
            "contour",
            title,
            f"{' and '.join(params)} do not both vary across the complete trials.",
            None,
        )
    fig = optuna.visualization.plot_contour(
        data.study, params=params, target_name=data.target_label
    )
    fig.update_traces(colorbar_tickformat=percent_of(data, ".1%"), selector={"type": "contour"})
    return Figure(
        "contour",
        title,
        f"{data.target_label.capitalize()} over {params[0]} and {params[1]}, "
        "interpolated between complete trials (dots).",
        _restyle(fig, 460),
    )
