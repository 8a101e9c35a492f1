"""Plotly figures of the study's course: history, per-epoch curves, learning-rate schedules.

landscape.py has the figures of the search space; each figure says why when it cannot be drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.config import TrainConfig
from hpo.records import curve, trial_config
from hpo.report.log_ticks import plain_log_ticks
from hpo.report.study import StudyData
from hpo.schedules import lr_curve

BASELINE_COLOUR, BEST_COLOUR, PRUNED_COLOUR = "#222222", "#d62728", "#aaaaaa"


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    caption: str
    figure: go.Figure | None  # None: ``caption`` says why it is missing


def layout(fig: go.Figure, x: str, y: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=420,
        xaxis_title=x,
        yaxis_title=y,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        **extra,
    )
    return plain_log_ticks(fig)


def percent_of(data: StudyData, form: str = ".2%") -> str:
    """The format ``data``'s objective values read in: accuracies in % (as the tables give
    them), a loss as it is ("")."""
    return form if data.objective == "val_acc" else ""


def history(data: StudyData) -> Figure:
    fig = go.Figure()
    done = sorted(data.complete, key=lambda t: t.number)
    fig.add_scatter(
        x=[t.number for t in done],
        y=[t.value for t in done],
        mode="markers",
        name="complete",
        marker={"color": "#1f77b4"},
    )
    maximize = data.study.direction == StudyDirection.MAXIMIZE
    best, running = [], -math.inf if maximize else math.inf
    for t in done:
        value = t.value if t.value is not None else running
        running = max(running, value) if maximize else min(running, value)
        best.append(running)
    fig.add_scatter(
        x=[t.number for t in done],
        y=best,
        mode="lines",
        name="best so far",
        line={"color": BEST_COLOUR, "shape": "hv"},
    )
    pruned = [t for t in data.in_state(TrialState.PRUNED) if curve(t, data.objective)]
    fig.add_scatter(
        x=[t.number for t in pruned],
        y=[curve(t, data.objective)[-1] for t in pruned],  # the objective's curve: same axis
        mode="markers",
        name="pruned (last epoch run)",
        marker={"color": PRUNED_COLOUR, "symbol": "x"},
    )
    caption = f"Final {data.target_label} of every complete trial, in the order they ran."
    if data.baseline is not None and data.baseline.value is not None:
        shown = format(data.baseline.value, percent_of(data) or ".4f")
        fig.add_hline(
            y=data.baseline.value,
            line={"color": BASELINE_COLOUR, "dash": "dash"},
            annotation_text=f"tutorial baseline {shown}",
            annotation_position="bottom right",
        )
        caption += (
            f" The dashed line is the tutorial's configuration (trial {data.baseline.number})."
        )
    return Figure(
        "history",
        "Optimisation history",
        caption,
        layout(
            fig,
            "trial",
            data.target_label,
            yaxis_tickformat=percent_of(data),
            # whole trial numbers: a few trials otherwise get ticks at 0.5, 1.5, ...
            xaxis_dtick=max(1, math.ceil(len(data.trials) / 10)),
        ),
    )


def curves(data: StudyData) -> Figure:
    fig = go.Figure()
    best = data.best.number if data.best else None
    base = data.baseline.number if data.baseline else None
    # Ordinary trials first, so the baseline and the best are drawn on top.
    order = sorted(data.trials, key=lambda t: (t.number in (best, base), t.number))
    for t in order:
        values = curve(t, "val_acc")
        if not values:
            continue
        pruned = t.state != TrialState.COMPLETE
        colour = (
            BEST_COLOUR
            if t.number == best
            else BASELINE_COLOUR
            if t.number == base
            else PRUNED_COLOUR
            if pruned
            else "#6baed6"
        )
        label = "best " if t.number == best else "baseline " if t.number == base else ""
        fig.add_scatter(
            x=list(range(1, len(values) + 1)),
            y=values,
            name=f"{label}#{t.number} {t.state.name}",
            mode="lines+markers" if pruned else "lines",
            line={"color": colour, "width": 3 if label else 1.2, "dash": "dot" if pruned else None},
            # A pruned curve ends in an x where the pruner stopped it.
            marker={
                "symbol": ["circle"] * (len(values) - 1) + ["x"],
                "size": [0] * (len(values) - 1) + [9],
            }
            if pruned
            else None,
            showlegend=bool(label) or len(data.trials) <= 12,
        )
    return Figure(
        "curves",
        "Validation accuracy per epoch, every trial",
        "Complete trials in blue; pruned, failed and running trials dotted grey, cut "
        "where they stopped (x). Bold: the best trial (red) and the tutorial (black).",
        layout(fig, "epoch", "validation accuracy", yaxis_tickformat=".1%", xaxis_dtick=1),
    )


def schedules(data: StudyData) -> Figure:
    base = data.baseline
    tutorial = TrainConfig.from_dict(trial_config(base)) if base else TrainConfig()
    fig = go.Figure()
    lines = [("tutorial", tutorial, BASELINE_COLOUR)]
    if data.best is not None and (base is None or data.best.number != base.number):
        lines.append(
            (
                f"best #{data.best.number}",
                TrainConfig.from_dict(trial_config(data.best)),
                BEST_COLOUR,
            )
        )
    for name, config, colour in lines:
        # Each epoch's rate as a step from half an epoch before its tick to half after, the
        # last one too: a step drawn from tick to tick would give the last epoch no width.
        epochs = list(range(1, config.epochs + 1))
        lrs = lr_curve(config)
        fig.add_scatter(
            x=[e - 0.5 for e in epochs] + [config.epochs + 0.5],
            y=[*lrs, lrs[-1]],
            customdata=[*epochs, config.epochs],
            hovertemplate="epoch %{customdata}: lr %{y:.3g}",
            name=f"{name} ({config.schedule})",
            line={"color": colour, "shape": "hv"},
        )
    return Figure(
        "schedule",
        "Learning rate per epoch: best vs the tutorial",
        "The learning rate each epoch trained with (log scale).",
        layout(fig, "epoch", "learning rate", yaxis_type="log", xaxis_dtick=1),
    )
