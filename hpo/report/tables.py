"""Study -> pandas tables: one row per trial (the CSV), the study summary, the top trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hpo.config import TrainConfig
from hpo.model import parameter_count
from hpo.records import (
    curve,
    epochs_run,
    last_val_acc,
    models_text,
    pruning_epochs,
    saved_share,
    trial_config,
)
from hpo.report.study import StudyData
from hpo.spec import in_use

CONFIG_KEYS: tuple[str, ...] = tuple(TrainConfig.__dataclass_fields__)

_CONFIG_DOCS = {
    "epochs": "training config: epochs asked for (what the trial runs unless pruned)",
    "seed": "training config: seed (initial weights and batch order)",
    "precision": "training config: fp32, or bf16 (the hidden layers' matmuls in bfloat16); "
    "what the trial trained in, an `auto` spec resolved on its device",
    "gamma": "training config: gamma; empty where the schedule does not use it",
    "step_every": "training config: step_every; empty where the schedule does not use it",
}
# The CSV's columns, in order; the README documents them from this table.
TRIAL_COLUMNS: dict[str, str] = {
    "trial": "trial number; the tutorial's own configuration is trial 0, or a later one where "
    "trial 0 was interrupted and re-run (`is_baseline` marks it)",
    "state": "COMPLETE, PRUNED, FAIL, RUNNING, or WAITING (queued: a lost or interrupted "
    "trial's parameters to run again, or a trial `--jobs` put back untrained)",
    "is_baseline": "true for the tutorial's configuration",
    "value": "the trial's value, the study's objective (final validation accuracy by default); "
    "empty unless COMPLETE",
    "val_acc": "validation accuracy at the last epoch run (where a pruned trial stopped)",
    "best_val_acc": "highest validation accuracy over the epochs run",
    "epochs_run": "epochs trained",
    **{k: _CONFIG_DOCS.get(k, f"training config: {k}") for k in CONFIG_KEYS},
    "train_seconds": "training seconds, summed over the epochs run (no evaluation)",
    "seconds_per_epoch": "train_seconds / epochs_run",
    "wall_seconds": "the trial's wall time, including evaluation and compiling",
    "param_count": "trainable parameters of the network",
    "device": "the device the trial trained on, by name (CPU model and threads, or GPU)",
    "compiled": "whether its training step was compiled (on a CPU ahead of time, AOTInductor; "
    "elsewhere torch.compile); empty if not recorded",
    "cuda_graph": "whether its steps were replayed as CUDA graphs; empty if not recorded",
    "reason": "why the trial was pruned or failed",
    "started": "start time (ISO 8601)",
    "finished": "finish time (ISO 8601; empty while running)",
}


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    config = trial_config(trial)
    val = [v for v in curve(trial, "val_acc") if math.isfinite(v)]
    train = [v for v in curve(trial, "train_seconds") if math.isfinite(v)]
    run = epochs_run(trial)
    h1, h2 = config.get("hidden1"), config.get("hidden2")
    params = trial.user_attrs.get("param_count")
    if params is None and isinstance(h1, int) and isinstance(h2, int):
        params = parameter_count(h1, h2)
    row: dict[str, Any] = {
        "trial": trial.number,
        "state": trial.state.name,
        "is_baseline": bool(trial.user_attrs.get("is_baseline", False)),
        "value": trial.value if trial.state == TrialState.COMPLETE else math.nan,
        "val_acc": val[-1] if val else math.nan,
        "best_val_acc": max(val) if val else math.nan,
        "epochs_run": run,
        # A value the schedule ignores (the default gamma of a cosine trial) would read as chosen.
        **{k: config.get(k) if in_use(k, config.get("schedule")) else None for k in CONFIG_KEYS},
        "train_seconds": sum(train) if train else math.nan,
        "seconds_per_epoch": sum(train) / len(train) if train else math.nan,
        "wall_seconds": trial.user_attrs.get("wall_seconds", _duration(trial)),
        "param_count": params,
        "device": trial.user_attrs.get("device_name") or trial.user_attrs.get("device"),
        "compiled": trial.user_attrs.get("compiled"),
        "cuda_graph": trial.user_attrs.get("cuda_graph"),
        "reason": trial.user_attrs.get("reason"),
        "started": _iso(trial.datetime_start),
        "finished": _iso(trial.datetime_complete),
    }
    return {k: row[k] for k in TRIAL_COLUMNS}


def trials_frame(data: StudyData) -> pd.DataFrame:
    """One row per trial, columns as TRIAL_COLUMNS documents them."""
    rows = [trial_row(t) for t in data.trials]
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    for column in frame.columns:
        # Whole numbers stay whole where some rows leave them blank (a step_every that a
        # trial's schedule ignores): pandas would make the column float, and the CSV "5.0".
        values = [row[column] for row in rows if row[column] is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame


@dataclass(frozen=True)
class Summary:
    trials: int
    complete: int
    pruned: int
    failed: int
    running: int
    queued: int  # lost trials' parameters, to run again
    epochs_run: int  # over finished trials
    epochs_planned: int  # what the same trials would have run without pruning
    wall_seconds: float  # first start to last finish
    trial_seconds: float  # summed over trials: more than wall_seconds when workers overlap

    @property
    def epochs_saved(self) -> float:
        return saved_share(self.epochs_run, self.epochs_planned)


def summarise(data: StudyData) -> Summary:
    run, planned = pruning_epochs(data.trials)
    starts = [t.datetime_start for t in data.trials if t.datetime_start]
    ends = [t.datetime_complete for t in data.trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    return Summary(
        trials=len(data.trials),
        complete=len(data.in_state(TrialState.COMPLETE)),
        pruned=len(data.in_state(TrialState.PRUNED)),
        failed=len(data.in_state(TrialState.FAIL)),
        running=len(data.running),
        queued=len(data.queued),
        epochs_run=run,
        epochs_planned=planned,
        wall_seconds=span,
        trial_seconds=sum(
            float(t.user_attrs.get("wall_seconds", _duration(t)))
            for t in data.in_state(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        ),
    )


def summary_frame(data: StudyData, summary: Summary) -> pd.DataFrame:
    """The study at a glance, as (item, value) rows."""
    attrs, first = data.attrs, (data.baseline or (data.trials[0] if data.trials else None))
    devices = sorted(
        {
            str(t.user_attrs.get("device_name") or t.user_attrs.get("device"))
            for t in data.trials
            if t.user_attrs.get("device")
        }
    )
    # What the trials trained in (a study from before precisions existed: fp32), and what the
    # spec asked for where that differs ("auto").
    configs = [t.user_attrs["config"] for t in data.trials if "config" in t.user_attrs]
    trained = sorted({str(c.get("precision", "fp32")) for c in configs})
    asked = str(attrs.get("precision", "fp32"))
    precision = (", ".join(trained) or "no trial yet") + (
        "" if [asked] == trained else f" (spec: {asked})"
    )
    versions = (first.user_attrs.get("versions") if first else None) or {}
    rows: list[tuple[str, Any]] = [
        ("study", f"{data.name} ({'partial' if data.partial else 'all trials finished'})"),
        ("storage", data.storage),
        (
            "trials",
            f"{summary.trials}: {summary.complete} complete, {summary.pruned} pruned, "
            f"{summary.failed} failed, {summary.running} running"
            + (f", {summary.queued} queued" if summary.queued else "")
            + (f" (target: {data.target_trials})" if data.target_trials else ""),
        ),
        (
            "epochs run (complete + pruned)",
            f"{summary.epochs_run} of {summary.epochs_planned} "
            f"without pruning ({summary.epochs_saved:.0%} saved)",
        ),
        (
            "wall time",
            f"{summary.wall_seconds / 60:.1f} min (trials summed: "
            f"{summary.trial_seconds / 60:.1f} min)",
        ),
        ("device", ", ".join(devices) or "unknown"),
        ("sampler", algorithms(data, "sampler")),
        ("pruner", algorithms(data, "pruner")),
        ("seed", attrs.get("seed", "unknown")),
        ("epochs per trial", attrs.get("epochs", "unknown")),
        ("precision", precision),
        ("spec hash", str(attrs.get("spec_hash", "unknown"))[:12]),
        ("hpo version", attrs.get("hpo_version", "unknown")),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "unknown"),
    ]
    if data.final is not None:
        rows.append(("trained models", _models(data)))
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": str})


def _models(data: StudyData) -> str:
    """Where finalize's exports of the best and the baseline are, else what writes them."""
    if found := data.exported_models():
        return models_text(found)
    return f"none on this machine: `{data.command('finalize')}` trains and writes them"


def algorithms(data: StudyData, key: str) -> str:
    """The sampler (or pruner) each trial records, and the trials it ran where a resumed run
    changed it: "tpe (n_startup_trials=10) for trials 0-9; random for trials 10-19". A trial
    that records none (from before hpo recorded it, or lost before its first record) counts as
    the study's own, by name; trials that never started are left out."""
    made_with = str(data.attrs.get(key) or "unknown")
    runs: list[tuple[int, str, str | None]] = []  # (trial, name, options as text or None)
    for t in data.trials:
        if t.state == TrialState.WAITING:
            continue
        recorded = t.user_attrs.get(key)
        if isinstance(recorded, dict):
            text = ", ".join(f"{k}={v}" for k, v in recorded.items() if k != "name")
            runs.append((t.number, str(recorded.get("name")), text))
        else:
            runs.append((t.number, made_with, None))
    if not runs:
        return made_with
    # One name with one set of options: that label for all its trials, recorded or not.
    variants = {name: {o for _, n, o in runs if n == name and o is not None} for _, name, _ in runs}

    def label(name: str, options: str | None) -> str:
        if options is None:
            options = next(iter(variants[name])) if len(variants[name]) == 1 else ""
        return f"{name} ({options})" if options else name

    groups: dict[str, list[int]] = {}
    for number, name, given in runs:
        groups.setdefault(label(name, given), []).append(number)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{text} for trials {_ranges(numbers)}" for text, numbers in groups.items())


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def top_frame(data: StudyData, k: int = 10) -> pd.DataFrame:
    """The k best complete trials by the study's objective (its column first when that is not
    validation accuracy), with the parameters the search chose."""
    order = {k: i for i, k in enumerate(CONFIG_KEYS)}
    names = sorted(
        {p for t in data.complete for p in t.params}, key=lambda p: (order.get(p, len(order)), p)
    )
    ranked_by = [] if data.objective == "val_acc" else [data.objective]
    rows = []
    for t in data.ranked()[:k]:
        row = trial_row(t)
        rows.append(
            {
                "trial": t.number,
                **{key: t.value for key in ranked_by},
                "val_acc": last_val_acc(t),
                "baseline": row["is_baseline"],
                **{p: t.params.get(p) for p in names},
                "s/epoch": row["seconds_per_epoch"],
                "params": row["param_count"],
            }
        )
    columns = ["trial", *ranked_by, "val_acc", "baseline", *names, "s/epoch", "params"]
    return pd.DataFrame(rows, columns=columns)


def _duration(trial: FrozenTrial) -> float:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return math.nan


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
