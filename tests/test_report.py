"""hpo report on studies built here with Optuna alone: tables, CSV, verdict, confirm, CLI.

The study builder below writes the user attributes the study driver stores (see
hpo/report/study.py), so these tests need nothing of the driver itself.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import re
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

import hpo.report
import hpo.retrain
from hpo.cli import main
from hpo.config import TrainConfig
from hpo.data import raw_dir
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.provenance import library_versions
from hpo.records import (
    CONFIRM_ATTR,
    TARGET_ATTR,
    ConfirmRun,
    baseline_of,
    confirm_run_key,
    confirm_runs_of,
    curve,
    last_val_acc,
    saved_share,
    store_confirm_run,
    target_of,
)
from hpo.report import TRIAL_COLUMNS, ReportOptions, build_report, read_study, trials_frame
from hpo.report.confirm import candidates, confirm_frame, run_confirm
from hpo.report.figures import (
    BASELINE_COLOUR,
    BEST_COLOUR,
    PRUNED_COLOUR,
    curves,
    history,
    schedules,
)
from hpo.report.html import _verdict
from hpo.report.landscape import (
    BLUES,
    _uncrowd_ticks,
    contour,
    importance_figure,
    in_space,
    parallel,
    param_importances,
    slices,
    visible,
)
from hpo.report.pictures import Predictions, _loss_caption, _shown
from hpo.report.study import DEFAULT_STUDY
from hpo.report.tables import _ranges, summarise, summary_frame, top_frame, trial_row
from hpo.report.verdict import NOT_FINALIZED, ONE_SEED, decide
from hpo.retrain import cache_key, trained
from hpo.text import short

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "lr": FloatDistribution(1e-3, 0.3, log=True),
    "momentum": FloatDistribution(0.5, 0.99),
    "hidden1": IntDistribution(32, 1024, log=True),
    "hidden2": IntDistribution(16, 512, log=True),
    "schedule": CategoricalDistribution(["tutorial", "step", "exponential", "cosine", "none"]),
    "gamma": FloatDistribution(0.1, 1.0),
    "head": CategoricalDistribution(["softmax", "logits"]),
}
EPOCHS = 3
START = datetime(2026, 1, 1, 12, 0, 0)

# (number, state, value, config changes, epochs run); trial 0 is the tutorial's recipe.
TRIALS: list[tuple[int, TrialState, float | None, dict[str, Any], int]] = [
    (0, TrialState.COMPLETE, 0.9650, {}, 3),
    (
        1,
        TrialState.COMPLETE,
        0.9712,
        dict(lr=0.05, hidden1=128, hidden2=64, schedule="cosine", head="logits"),
        3,
    ),
    (2, TrialState.PRUNED, None, dict(lr=0.002, momentum=0.6, hidden1=40, hidden2=20), 1),
    (
        3,
        TrialState.COMPLETE,
        0.9835,
        dict(
            lr=0.03,
            momentum=0.95,
            hidden1=512,
            hidden2=128,
            schedule="step",
            gamma=0.5,
            step_every=2,
            head="logits",
        ),
        3,
    ),
    (4, TrialState.FAIL, None, dict(lr=0.29, momentum=0.98), 1),
    (5, TrialState.PRUNED, None, dict(lr=0.004, hidden1=64, hidden2=32, schedule="none"), 2),
    (
        6,
        TrialState.COMPLETE,
        0.9790,
        dict(lr=0.02, hidden1=256, hidden2=96, schedule="step", gamma=0.7, head="logits"),
        3,
    ),
    (
        7,
        TrialState.COMPLETE,
        0.9701,
        dict(lr=0.01, momentum=0.8, hidden1=200, hidden2=50, schedule="exponential", gamma=0.8),
        3,
    ),
    (
        8,
        TrialState.COMPLETE,
        0.9688,
        dict(lr=0.08, momentum=0.7, hidden1=90, hidden2=300, schedule="none", head="logits"),
        3,
    ),
]
BEST, BASELINE = 3, 0
FINAL_TEST = {BEST: 0.9841, BASELINE: 0.9702}


def trial_curves(value: float | None, run: int, number: int) -> dict[str, list[Any]]:
    end = value if value is not None else 0.90 + number / 100
    val: list[Any] = [end - 0.02 * (run - 1 - e) for e in range(run)]
    return {
        "train_loss": [1.0 / (e + 1) for e in range(run)],
        "train_acc": [v - 0.01 for v in val],
        "val_loss": [0.2] * run,
        "val_acc": val,
        "lr": [0.01] * run,
        "train_seconds": [1.5 + number / 10] * run,
        "eval_seconds": [0.1] * run,
    }


def add_trial(
    study: optuna.Study,
    number: int,
    state: TrialState,
    value: float | None,
    changes: dict[str, Any],
    run: int,
    *,
    is_baseline: bool | None = None,
) -> None:
    config = dataclasses.replace(TrainConfig(epochs=EPOCHS, seed=100 + number), **changes)
    params = {k: getattr(config, k) for k in SPACE if k != "gamma"}
    if config.schedule in ("step", "exponential", "tutorial"):
        params["gamma"] = config.gamma  # conditional, as the driver's search space has it
    curves = trial_curves(value, run, number)
    wall = 2.0 * run + 1
    if state == TrialState.FAIL:
        curves["train_loss"][-1] = None  # the driver stores a non-finite value as null
    attrs: dict[str, Any] = {
        "config": config.to_dict(),
        "seed": config.seed,
        "is_baseline": number == BASELINE if is_baseline is None else is_baseline,
        "curves": curves,
        "epochs_run": run,
        "device": "cpu",
        "device_name": "CPU x86_64 x2 threads",
        "versions": {"torch": "2.14.1", "optuna": "5.0.0"},
        "compiled": False,
        "cuda_graph": number == BEST,  # so the CSV test can tell the column follows the attr
        "param_count": parameter_count(config.hidden1, config.hidden2),
        "wall_seconds": wall,
    }
    if state == TrialState.PRUNED:
        attrs["reason"] = f"pruned by MedianPruner at epoch {run}"
    if state == TrialState.FAIL:
        attrs["reason"] = "diverged: train loss nan at epoch 1"
    trial = create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: SPACE[k] for k in params},
        user_attrs=attrs,
        intermediate_values={e: float(v) for e, v in enumerate(curves["val_acc"])},
    )
    trial.datetime_start = START + timedelta(minutes=number)
    if state != TrialState.RUNNING:
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=wall)
    study.add_trial(trial)


def final_record(number: int) -> dict[str, Any]:
    changes = next(c for n, _, _, c, _ in TRIALS if n == number)
    config = dataclasses.replace(TrainConfig(epochs=EPOCHS, seed=100 + number), **changes)
    value = next(v for n, _, v, _, _ in TRIALS if n == number)
    return {
        "trial": number,
        "config": config.to_dict(),
        "val_acc": value,
        "test_acc": FINAL_TEST[number],
        "test_loss": 0.1,
        "train_seconds": 3.3,
        "seconds_per_epoch": 1.1 + number / 100,
        "param_count": parameter_count(config.hidden1, config.hidden2),
        "device": "cpu",
    }


def confirm_run(trial: int, seed: int, test_acc: float, seconds_per_epoch: float) -> ConfirmRun:
    """A --confirm run as run_confirm stores it, with the numbers a test needs."""
    config = TrainConfig(seed=seed).to_dict()
    return {"trial": trial, "seed": seed, "is_baseline": trial == BASELINE, "config": config,
            "test_acc": test_acc, "test_loss": 0.1, "seconds_per_epoch": seconds_per_epoch,
            "device": "cpu", "status": "complete"}  # fmt: skip


def build_study(
    path: Path,
    name: str = "demo",
    *,
    finalized: bool = True,
    running: bool = False,
    trials: list[int] | None = None,
) -> str:
    """A sqlite study like the driver leaves one; returns its storage URL."""
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    for spec in TRIALS:
        if trials is None or spec[0] in trials:
            add_trial(study, *spec)
    if running:
        add_trial(study, len(study.trials), TrialState.RUNNING, None, dict(lr=0.07), 1)
    for key, value in {
        "spec": {"epochs": EPOCHS, "trials": 12},
        "spec_hash": "abc123",
        "seed": 7,
        "sampler": "TPESampler(seed=7, multivariate=True)",
        "pruner": "MedianPruner(n_warmup_steps=1)",
        "epochs": EPOCHS,
        "hpo_version": "0.1.0",
    }.items():
        study.set_user_attr(key, value)
    if finalized:
        study.set_user_attr(
            "final", {"best": final_record(BEST), "baseline": final_record(BASELINE)}
        )
        study.set_user_attr("finalized_at", "2026-01-01T13:00:00+00:00")
    return url


@pytest.fixture
def study_url(tmp_path: Path) -> str:
    return build_study(tmp_path / "hpo.db")


def options(tmp_path: Path, url: str, **changes: Any) -> ReportOptions:
    defaults: dict[str, Any] = dict(
        study="demo", storage=url, runs_dir=tmp_path / "runs", pictures=False, compile=False
    )
    return ReportOptions(**{**defaults, **changes})


# --- tables and CSV ---------------------------------------------------------------------------


def test_csv_opens_in_pandas_with_one_row_per_trial_and_the_documented_columns(
    tmp_path: Path, study_url: str
) -> None:
    report = build_report(options(tmp_path, study_url))
    frame = pd.read_csv(report.csv_path)
    assert list(frame.columns) == list(TRIAL_COLUMNS)
    assert frame["trial"].tolist() == [n for n, *_ in TRIALS]
    assert frame["state"].tolist() == [s.name for _, s, *_ in TRIALS]
    row = frame.set_index("trial").loc[BEST]
    assert row["value"] == row["val_acc"] == 0.9835
    assert (row["lr"], row["hidden1"], row["schedule"], row["head"]) == (
        0.03,
        512,
        "step",
        "logits",
    )
    assert row["param_count"] == parameter_count(512, 128)
    assert (row["gamma"], row["step_every"]) == (0.5, 2)
    # Trial 1's cosine schedule uses neither: its config's defaults would read as chosen values.
    assert frame.set_index("trial").loc[1, ["gamma", "step_every"]].isna().all()
    # ... and whole numbers stay whole in the file where some rows are blank ("2", not "2.0").
    with report.csv_path.open(newline="") as f:
        steps = {row["step_every"] for row in csv.DictReader(f)}
    assert "2" in steps and all(step == "" or step.isdigit() for step in steps), steps
    assert not row["compiled"] and row["cuda_graph"]  # as the fixture's trials record them
    assert row["seconds_per_epoch"] == pytest.approx(1.5 + BEST / 10)
    pruned = frame.set_index("trial").loc[5]
    assert not pruned["cuda_graph"]
    assert math.isnan(pruned["value"]) and pruned["epochs_run"] == 2 and pruned["epochs"] == 3
    assert pruned["val_acc"] == pytest.approx(0.95) and "MedianPruner" in pruned["reason"]
    assert frame["is_baseline"].tolist() == [n == BASELINE for n, *_ in TRIALS]


def test_csv_takes_the_peak_of_a_curve_that_falls_at_the_end_and_the_trials_own_times(
    tmp_path: Path,
) -> None:
    url = build_study(tmp_path / "hpo.db", trials=[BASELINE])
    study = optuna.load_study(study_name="demo", storage=url)
    config = TrainConfig(epochs=EPOCHS, seed=101, lr=0.05, schedule="cosine", head="logits")
    curves = {
        **trial_curves(0.95, EPOCHS, 1),
        "val_acc": [0.93, 0.97, 0.95],  # overfits: the last epoch is not the best
        "train_seconds": [1.25, 2.5, 4.0],
    }
    start = datetime(2026, 1, 2, 9, 30, 15, 750_000)  # a fraction of a second: dropped
    trial = create_trial(
        state=TrialState.COMPLETE,
        value=0.95,
        params={"lr": 0.05},
        distributions={"lr": SPACE["lr"]},
        user_attrs={
            "config": config.to_dict(),
            "curves": curves,
            "epochs_run": EPOCHS,
            "is_baseline": False,
            "wall_seconds": 9.5,
        },
        intermediate_values=dict(enumerate(curves["val_acc"])),
    )
    trial.datetime_start, trial.datetime_complete = start, start + timedelta(seconds=9.5)
    study.add_trial(trial)
    report = build_report(options(tmp_path, url))
    with report.csv_path.open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["trial"] == "1")
    assert (float(row["value"]), float(row["val_acc"]), float(row["best_val_acc"])) == (
        0.95, 0.95, 0.97,
    )  # fmt: skip
    assert float(row["train_seconds"]) == 7.75 and float(row["seconds_per_epoch"]) == 7.75 / 3
    assert float(row["wall_seconds"]) == 9.5
    assert (row["started"], row["finished"]) == ("2026-01-02T09:30:15", "2026-01-02T09:30:25")


def test_summary_counts_states_and_the_epochs_pruning_saved(study_url: str) -> None:
    data = read_study("demo", study_url)
    summary = summarise(data)
    rows = dict(summary_frame(data, summary).itertuples(index=False))
    assert rows["trials"] == "9: 6 complete, 2 pruned, 1 failed, 0 running (target: 12)"
    assert rows["epochs run (complete + pruned)"] == "21 of 24 without pruning (12% saved)"
    # Fewer trials than the spec's count is not "partial": `hpo run --trials` may ask for fewer.
    assert not data.partial
    assert (summary.complete, summary.pruned, summary.failed, summary.running) == (6, 2, 1, 0)
    # 6 complete x 3 epochs, pruned after 1 and 2, of 8 x 3 without pruning; the failed trial
    # is left out of both (it stopped by diverging, not by pruning).
    assert (summary.epochs_run, summary.epochs_planned) == (18 + 1 + 2, 24)
    assert summary.epochs_saved == pytest.approx(3 / 24)
    assert summary.trial_seconds == pytest.approx(6 * 7 + 3 + 5 + 3)  # 2 s per epoch + 1
    assert summary.wall_seconds == pytest.approx(8 * 60 + 7)  # trial 0 start to trial 8 end


def test_the_summary_names_each_sampler_and_pruner_with_the_trials_it_ran(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)  # its trials record none: the study's own, by name
    rows = dict(summary_frame(data, summarise(data)).itertuples(index=False))
    assert (rows["sampler"], rows["pruner"]) == (data.attrs["sampler"], data.attrs["pruner"])
    trials = copy.deepcopy(data.trials)
    for t in trials:  # a run resumed at trial 5 with another sampler, the same pruner
        late = t.number >= 5
        t.user_attrs["sampler"] = {"name": "random"} if late else {"name": "tpe", "seeds": 4}
        t.user_attrs["pruner"] = {"name": "median", "n_warmup_steps": 1}
    resumed = dataclasses.replace(data, trials=trials)
    rows = dict(summary_frame(resumed, summarise(resumed)).itertuples(index=False))
    assert rows["sampler"] == "tpe (seeds=4) for trials 0-4; random for trials 5-8"
    assert rows["pruner"] == "median (n_warmup_steps=1)"
    # A trial with no record (lost before it made one) is the study's by name, not a change;
    # a queued trial never ran and counts for neither.
    del trials[3].user_attrs["sampler"], trials[3].user_attrs["pruner"]
    queued = copy.deepcopy(trials[4])
    queued.state, queued.number, queued.user_attrs = TrialState.WAITING, 9, {}
    attrs = {**data.attrs, "sampler": "tpe", "pruner": "median"}
    tpe = dataclasses.replace(data, trials=(*trials, queued), attrs=attrs)
    rows = dict(summary_frame(tpe, summarise(tpe)).itertuples(index=False))
    assert rows["sampler"] == "tpe (seeds=4) for trials 0-4; random for trials 5-8"
    assert rows["pruner"] == "median (n_warmup_steps=1)"


def test_the_summary_names_the_precision_trained_and_the_specs_where_they_differ(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)  # its trials trained in fp32; no precision attr: fp32
    assert dict(summary_frame(data, summarise(data)).itertuples(index=False))["precision"] == "fp32"
    trials = copy.deepcopy(data.trials)
    for t in trials:
        t.user_attrs.get("config", {})["precision"] = "bf16"  # as "auto" resolves on a bf16 CPU
    auto = dataclasses.replace(data, attrs={**data.attrs, "precision": "auto"}, trials=trials)
    rows = dict(summary_frame(auto, summarise(auto)).itertuples(index=False))
    assert rows["precision"] == "bf16 (spec: auto)"
    empty = dataclasses.replace(auto, trials=())
    rows = dict(summary_frame(empty, summarise(empty)).itertuples(index=False))
    assert rows["precision"] == "no trial yet (spec: auto)"


def test_epochs_saved_is_zero_when_no_epoch_was_planned() -> None:
    """No finished trial yet: nothing planned, so nothing saved (not "100% saved")."""
    assert saved_share(0, 0) == 0.0
    assert saved_share(21, 24) == pytest.approx(3 / 24)
    assert saved_share(24, 24) == 0.0


def test_trial_ranges_join_runs_of_numbers_and_show_a_lone_number_alone() -> None:
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert _ranges([8, 5, 7]) == "5, 7-8"  # sorted first
    assert _ranges([3]) == "3"


def test_a_curves_stored_null_reads_back_as_nan_not_zero(study_url: str) -> None:
    """The driver stores a diverged epoch's NaN as null (JSON has none): read as 0.0 it would
    plot as a perfect loss, and a null last validation accuracy would be taken as the trial's."""
    data = read_study("demo", study_url)
    failed = next(t for t in data.trials if t.number == 4)  # its train loss stored as [None]
    (loss,) = curve(failed, "train_loss")
    assert math.isnan(loss)
    trial = copy.deepcopy(failed)
    trial.user_attrs["curves"] = {"val_acc": [0.91, 0.93, None]}
    assert curve(trial, "val_acc")[:2] == [0.91, 0.93] and math.isnan(curve(trial, "val_acc")[2])
    assert last_val_acc(trial) == 0.93  # the last finite epoch's
    assert curve(trial, "val_loss") == []


# --- verdict ----------------------------------------------------------------------------------


def test_verdict_without_confirm_quotes_finalize_as_one_seed(study_url: str) -> None:
    v = decide(read_study("demo", study_url), [])
    assert v.kind == "unconfirmed" and v.difference is None
    assert v.best is not None and v.baseline is not None
    assert (v.best.trial, v.baseline.trial) == (BEST, BASELINE)
    assert (v.best.val_acc, v.baseline.val_acc) == (0.9835, 0.9650)
    assert v.best.test is not None and v.best.test.mean == FINAL_TEST[BEST]
    assert v.best.test_source == ONE_SEED and "not a claim" in v.headline
    complete = len(read_study("demo", study_url).complete)
    assert f"the best of {complete} trials', which flatters it" in v.headline  # selection
    assert "test 98.41% vs 97.02% (+1.39 pp)" in v.headline
    assert v.best.seconds_per_epoch == pytest.approx(1.13)
    keys = [k for k, _, _ in v.differing]
    # gamma differs (0.9 vs 0.5) and both schedules use it; the seed is never a difference.
    assert keys == [
        "lr",
        "momentum",
        "hidden1",
        "hidden2",
        "schedule",
        "gamma",
        "step_every",
        "head",
    ]


def test_the_page_compares_what_each_side_trains_with_and_shows_no_none(tmp_path: Path) -> None:
    """The tutorial decays by gamma 0.9 every 5 epochs; a trial without decay stores the same
    gamma and step_every but never uses them: differences, which the verdict hid because the
    stored values were equal."""
    url = build_study(tmp_path / "d.db", finalized=False, trials=[])
    study = optuna.load_study(study_name="demo", storage=url)
    add_trial(study, 0, TrialState.COMPLETE, 0.965, {}, 3)
    # Better than the baseline without a gamma: the top trials' gamma column is all blank.
    for n in (1, 2):
        add_trial(study, n, TrialState.COMPLETE, 0.98 + n / 1000, dict(schedule="none"), 3)
    data = read_study("demo", url)
    v = decide(data, [])
    assert v.differing == (
        ("schedule", "tutorial", "none"),
        ("gamma", 0.9, None),
        ("step_every", 5, None),
    )
    # Both heads softmax here: no word of the fix the default spec makes.
    assert "double softmax" not in v.headline
    head = decide(read_study("demo", build_study(tmp_path / "h.db", finalized=False)), [])
    assert "keeps its double softmax (head softmax) and the best has the logits head" in (
        head.headline
    )
    report = build_report(options(tmp_path, url))
    page = report.html_path.read_text()
    verdict = page[page.index("id='verdict-table'") :].split("</table>")[0]
    assert "data-metric='config:step_every'><th>step_every</th><td>5</td><td>not used</td>" in (
        verdict
    )
    assert "x the tutorial&#x27;s (1 run each)" in verdict  # the search's timings: one run each
    # Only where both sides' times are --confirm means does the ratio stand on more than one run.
    v = decide(data, [])
    base_side, best_side = v.baseline, v.best
    assert base_side is not None and best_side is not None

    def speed_cell(base_source: str, best_source: str) -> str:
        table = _verdict(
            dataclasses.replace(
                v,
                baseline=dataclasses.replace(base_side, time_source=base_source),
                best=dataclasses.replace(best_side, time_source=best_source),
            )
        )
        return table[table.index("data-metric='seconds_per_epoch'") :].split("</tr>")[0]

    assert "(1 run each)" not in speed_cell("--confirm mean, cpu", "--confirm mean, cpu")
    assert "(1 run each)" in speed_cell("--confirm mean, cpu", "finalize, cpu")
    assert "(1 run each)" in speed_cell("the search, cpu", "--confirm mean, cpu")
    top = page[page.index('id="top-trials"') :].split("</table>")[0]
    assert ">None<" not in top and list(top_frame(data, 2)["gamma"]) == [None, None]
    # The lr schedules: the last epoch is as wide as any other.
    fig = schedules(data).figure
    assert fig is not None
    tutorial = fig.data[0]
    assert list(tutorial.x) == [e - 0.5 for e in range(1, EPOCHS + 2)]
    assert tutorial.y[-1] == tutorial.y[-2]


def test_verdict_says_not_finalized_and_uses_the_search_timings(tmp_path: Path) -> None:
    url = build_study(tmp_path / "s.db", finalized=False)
    v = decide(read_study("demo", url), [])
    assert v.best is not None and v.best.test is None
    # The hint to paste names this study and its storage: the default ones would be others.
    assert v.best.test_source == f"{NOT_FINALIZED} `hpo finalize --study demo --storage {url}`"
    assert "`hpo report --confirm 5 --study demo --storage" in v.headline
    assert "retrains the top 3 trials and the baseline over 5 seeds" in v.headline
    # Trials of 3 epochs: the tutorial's configuration at 3 is not the tutorial's own run.
    assert v.headline.endswith(f"trained {EPOCHS} epochs; the tutorial trains 20.")
    assert v.best.seconds_per_epoch == pytest.approx(1.5 + BEST / 10)


def test_verdict_from_confirm_runs_is_welchs_interval_on_test_accuracy(study_url: str) -> None:
    runs = [confirm_run(BEST, s, a, 1.0) for s, a in enumerate([0.980, 0.982, 0.984])]
    runs += [confirm_run(BASELINE, s, a, 2.0) for s, a in enumerate([0.975, 0.977, 0.976])]
    v = decide(read_study("demo", study_url), runs)
    assert v.difference is not None
    # Hand-computed in test_report_stats: 0.006 +- 3.21876 * sqrt(5e-6 / 3).
    assert (v.difference.low, v.difference.high) == pytest.approx((0.0018446, 0.0101554), abs=1e-7)
    assert v.kind == "beats" and "+0.60 pp" in v.headline
    assert v.best is not None and v.best.test is not None and v.best.test.n == 3


def test_an_interval_below_zero_says_the_tuned_configuration_is_worse(study_url: str) -> None:
    # The seeds of the interval test above, the sides swapped: the same half-width, below 0.
    runs = [confirm_run(BEST, s, a, 1.0) for s, a in enumerate([0.975, 0.977, 0.976])]
    runs += [confirm_run(BASELINE, s, a, 2.0) for s, a in enumerate([0.980, 0.982, 0.984])]
    v = decide(read_study("demo", study_url), runs)
    assert v.difference is not None
    assert (v.difference.low, v.difference.high) == pytest.approx(
        (-0.0101554, -0.0018446), abs=1e-7
    )
    assert v.kind == "worse"
    assert v.headline.startswith(
        "The tuned configuration is worse than the tutorial: test accuracy 97.60% vs 98.20%, "
        "-0.60 pp (95% CI -1.02 pp to -0.18 pp; 3 vs 3 seeds)."
    )


def test_an_interval_that_spans_zero_claims_no_difference(study_url: str) -> None:
    # Best 0.980 +- 0.002, baseline 0.976 +- 0.001: +0.4 pp, the same 0.41554 pp half-width
    # as above, so the interval reaches just below 0.
    runs = [confirm_run(BEST, s, a, 1.0) for s, a in enumerate([0.978, 0.980, 0.982])]
    runs += [confirm_run(BASELINE, s, a, 2.0) for s, a in enumerate([0.975, 0.977, 0.976])]
    v = decide(read_study("demo", study_url), runs)
    assert v.difference is not None
    assert (v.difference.low, v.difference.high) == pytest.approx((-0.0001554, 0.0081554), abs=1e-7)
    assert v.kind == "no-difference"
    assert v.headline.startswith(
        "No clear difference from the tutorial: test accuracy 98.00% vs 97.60%, +0.40 pp "
        "(95% CI -0.02 pp to +0.82 pp; 3 vs 3 seeds); the interval includes 0."
    )


def test_seeds_that_all_tie_give_no_interval_and_no_claim(study_url: str) -> None:
    runs = [
        confirm_run(n, s, a, 1.0) for n, a in ((BEST, 0.98), (BASELINE, 0.97)) for s in range(2)
    ]
    v = decide(read_study("demo", study_url), runs)
    assert v.kind == "unconfirmed" and v.difference is None  # a zero-width interval said "beats"
    assert "2 vs 2 seeds, each side's all scoring the same" in v.headline
    assert "--confirm 4" in v.headline


def test_seeds_on_one_side_only_give_no_interval_and_say_which_side_lacks_them(
    study_url: str,
) -> None:
    runs = [confirm_run(BEST, 0, 0.98, 1.0)]
    runs += [confirm_run(BASELINE, s, a, 1.0) for s, a in enumerate([0.975, 0.977, 0.976])]
    v = decide(read_study("demo", study_url), runs)
    assert v.kind == "unconfirmed" and v.difference is None
    assert "1 vs 3 seeds: an interval needs two or more on each side" in v.headline
    assert "--confirm 3" in v.headline and "One run each" not in v.headline


def test_verdict_on_a_study_with_only_pruned_and_failed_trials(tmp_path: Path) -> None:
    url = build_study(tmp_path / "p.db", finalized=False, trials=[2, 4, 5])
    report = build_report(options(tmp_path, url))
    assert report.verdict.kind == "none" and report.verdict.best is None
    assert "2 pruned, 1 failed" in report.verdict.headline
    page = report.html_path.read_text()
    assert "No trial has completed yet" in page and "Needs at least two complete trials" in page
    assert len(pd.read_csv(report.csv_path)) == 3
    # Not "run hpo finalize": it refuses a study with no complete trial.
    assert not [n for n in report.notes if "finalize" in n] and "hpo finalize" not in page
    # --confirm: nothing to retrain, said (it was silent), and no data loaded for nothing.
    said: list[str] = []
    report = build_report(
        options(tmp_path, url, confirm=2, data_dir=tmp_path / "none"), log=said.append
    )
    assert said == [
        "note: --confirm 2: the study has no complete trial yet, so nothing to retrain; "
        f"`hpo run --study demo --storage {url}` trains some first"
    ]


def test_an_empty_study_renders_and_says_nothing_has_completed(tmp_path: Path) -> None:
    url = build_study(tmp_path / "e.db", finalized=False, trials=[])
    report = build_report(options(tmp_path, url))
    assert (
        report.verdict.kind == "none" and "0 pruned, 0 failed, 0 running" in report.verdict.headline
    )
    assert len(pd.read_csv(report.csv_path)) == 0


def test_a_study_without_a_baseline_trial_says_there_is_nothing_to_compare(tmp_path: Path) -> None:
    url = build_study(tmp_path / "n.db", finalized=False, trials=[1, 3])
    report = build_report(options(tmp_path, url, pictures=True))
    assert report.verdict.kind == "no-baseline" and report.verdict.best is not None
    # Added to a fresh study, trials 1 and 3 are renumbered 0 and 1; the best is the second.
    assert (report.verdict.best.trial, report.verdict.best.config["hidden1"]) == (1, 512)
    assert "Pictures need a best trial and a baseline trial." in report.notes


def test_a_baseline_that_did_not_complete_is_no_baseline_for_the_report_or_the_cli(
    tmp_path: Path,
) -> None:
    # The tutorial's configuration pruned (Hyperband may), then the search's own trials.
    url = build_study(tmp_path / "p.db", finalized=False, trials=[1, 3])
    study = optuna.load_study(study_name="demo", storage=url)
    add_trial(study, BASELINE, TrialState.PRUNED, None, {}, 2)  # marked is_baseline: #2 here
    report = build_report(options(tmp_path, url))
    assert report.verdict.kind == "no-baseline"
    assert "The baseline did not complete (trial #2 pruned)" in report.verdict.headline
    # One definition: `hpo run`'s summary finds no baseline either.
    assert baseline_of(study.trials) is None and report.verdict.baseline is None
    add_trial(study, BASELINE, TrialState.COMPLETE, 0.97, {}, 3)  # its re-run completes
    again = build_report(options(tmp_path, url))
    assert again.verdict.baseline is not None and again.verdict.baseline.trial == 3
    assert (found := baseline_of(study.trials)) is not None and found.number == 3


def test_finalize_of_an_earlier_best_is_not_shown_as_the_new_bests_test_score(
    tmp_path: Path,
) -> None:
    url = build_study(tmp_path / "f.db")
    study = optuna.load_study(study_name="demo", storage=url)
    earlier = {**final_record(BEST), "trial": 6}  # as if finalized while trial 6 led
    study.set_user_attr("final", {"best": earlier, "baseline": final_record(BASELINE)})
    v = decide(read_study("demo", url), [])
    assert v.best is not None and v.best.trial == BEST and v.best.test is None
    assert f"run `hpo finalize --study demo --storage {url}` again" in v.best.test_source
    assert v.baseline is not None and v.baseline.test is not None  # still about trial 0


def test_the_report_names_finalizes_exported_models_only_where_they_are_and_are_current(
    tmp_path: Path,
) -> None:
    url = build_study(tmp_path / "m.db")
    study = optuna.load_study(study_name="demo", storage=url)
    best, base = tmp_path / "best.pt", tmp_path / "baseline.pt"
    best.write_bytes(b"model"), base.write_bytes(b"model")

    def finalized_with(**paths: tuple[int, Path]) -> dict[str, Any]:
        records = {
            role: {
                **final_record(BEST if role == "best" else BASELINE),
                "trial": n,
                "model": str(p),
            }
            for role, (n, p) in paths.items()
        }
        study.set_user_attr("final", records)
        rows = dict(summary_frame(d := read_study("demo", url), summarise(d)).itertuples(False))
        assert build_report(options(tmp_path, url)).models == d.exported_models()
        return {"row": rows["trained models"], "models": d.exported_models()}

    found = finalized_with(best=(BEST, best), baseline=(BASELINE, base))
    assert found == {
        "row": f"{best} (best), {base} (baseline): hpo.retrain.load_model(path)",
        "models": {"best": str(best), "baseline": str(base)},
    }
    # An export of an earlier best is not this best's; a file gone from this machine is none.
    base.unlink()
    none = finalized_with(best=(6, best), baseline=(BASELINE, base))
    assert none == {
        "row": f"none on this machine: `hpo finalize --study demo --storage {url}` trains and "
        "writes them",
        "models": {},
    }


def test_a_running_study_is_marked_partial(tmp_path: Path) -> None:
    url = build_study(tmp_path / "r.db", running=True)
    report = build_report(options(tmp_path, url))
    assert report.partial and report.summary.running == 1
    page = report.html_path.read_text()
    assert "<span class='badge partial'>partial</span>" in page
    assert "Partial: 8 trials finished, 1 running" in report.notes[0]
    assert pd.read_csv(report.csv_path)["state"].iloc[-1] == "RUNNING"


def test_the_target_is_the_last_runs_trials_else_the_specs_and_never_a_bool() -> None:
    # `hpo run --trials 8` on a spec of 12: the study is measured against the 8 asked for.
    assert target_of({TARGET_ATTR: 8, "spec": {"trials": 12}}) == 8
    assert target_of({"spec": {"trials": 12}}) == 12  # a study from before the attr
    # JSON's true is no count (Python's bool is an int): the spec's number stands.
    assert target_of({TARGET_ATTR: True, "spec": {"trials": 12}}) == 12
    assert target_of({"spec": "not a table"}) is None


def test_the_commands_the_report_suggests_name_the_study_only_where_it_is_not_the_default(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)
    assert data.command("report", "--confirm 5") == (
        f"hpo report --confirm 5 --study demo --storage {study_url}"
    )
    default = dataclasses.replace(data, name=DEFAULT_STUDY)
    assert default.command("finalize") == f"hpo finalize --storage {study_url}"


def test_a_finalize_record_without_its_time_takes_the_studys_older_attr(study_url: str) -> None:
    """Older finalizes stored when they ran as a study attr of its own, not in their record:
    such a study is finalized all the same, and the page says when."""
    data = read_study("demo", study_url)  # build_study stores the time the older way
    assert data.finalized_at == "2026-01-01T13:00:00+00:00"
    final = {**data.attrs["final"], "finalized_at": "2026-02-03T04:05:06+00:00"}
    newer = dataclasses.replace(data, attrs={**data.attrs, "final": final})
    assert newer.finalized_at == "2026-02-03T04:05:06+00:00"  # the record's own time wins
    never = dataclasses.replace(
        data, attrs={k: v for k, v in data.attrs.items() if k not in ("final", "finalized_at")}
    )
    assert never.finalized_at is None


def test_a_finished_study_is_badged_so_and_an_empty_one_asks_for_no_finalize(
    tmp_path: Path,
) -> None:
    report = build_report(options(tmp_path, build_study(tmp_path / "f.db", finalized=False)))
    page = report.html_path.read_text()
    assert "<span class='badge '>finished</span>" in page and "badge partial" not in page
    assert "<span class='badge '>not finalized</span>" in page
    assert report.notes[0].startswith("Not finalized: run `hpo finalize --study demo")
    # Nothing complete: finalize would have nothing to measure, so the page does not ask for it.
    empty = build_report(options(tmp_path, build_study(tmp_path / "e.db", finalized=False,
                                                       trials=[2, 4])))  # fmt: skip
    assert not any(n.startswith("Not finalized") for n in empty.notes)


def test_a_trial_put_back_untrained_at_the_end_is_not_counted_as_running(tmp_path: Path) -> None:
    # Two workers ask at once for the last place: the later trial goes back to the queue with
    # nothing in it (hpo.search.surplus). The study is finished; a requeued lost trial is not.
    url = build_study(tmp_path / "w.db")
    study = optuna.load_study(study_name="demo", storage=url)
    empty = study.ask()
    study._storage.set_trial_state_values(empty._trial_id, TrialState.WAITING)
    report = build_report(options(tmp_path, url))
    assert not report.partial and report.summary.running == 0
    study.enqueue_trial({"lr": 0.07})  # a lost trial's parameters, to run again
    report = build_report(options(tmp_path, url))
    assert report.partial and (report.summary.running, report.summary.queued) == (0, 1)
    assert "1 queued to run again" in report.notes[0]
    # trials.csv shows the parameters it is queued with, though it has not asked for them yet.
    row = pd.read_csv(report.csv_path).iloc[-1]
    assert (row["state"], row["lr"]) == ("WAITING", 0.07)
    # With the target reached (8 finished), hpo run runs nothing more, the queued trial neither.
    study.set_user_attr(TARGET_ATTR, 8)
    report = build_report(options(tmp_path, url))
    assert not report.partial and report.summary.queued == 1


def test_a_study_minimising_validation_loss_is_drawn_and_confirmed_in_its_direction(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'loss.db'}"
    study = optuna.create_study(storage=url, study_name="demo", direction="minimize")
    for number, state, loss in [
        (0, TrialState.COMPLETE, 0.30),
        (1, TrialState.COMPLETE, 0.25),
        (2, TrialState.COMPLETE, 0.40),
        (3, TrialState.PRUNED, None),
    ]:
        add_trial(study, number, state, loss, {}, EPOCHS if loss else 2)
    study.set_user_attr("objective", "val_loss")
    study.set_user_attr("spec_hash", "abc123")
    data = read_study("demo", url)
    fig = history(data).figure
    assert fig is not None
    done, best, pruned = fig.data[0], fig.data[1], fig.data[2]
    assert list(done.y) == [0.30, 0.25, 0.40]
    assert list(best.y) == [0.30, 0.25, 0.25]  # lowest so far, not highest
    assert fig.layout.xaxis.dtick == 1  # whole trial numbers, no tick at 0.5
    assert list(pruned.y) == [curve(data.trials[3], "val_loss")[-1]]  # on the loss axis
    top = top_frame(data)
    assert top["trial"].tolist() == [1, 0, 2] and top["val_loss"].tolist() == [0.25, 0.30, 0.40]
    assert list(top.columns[:3]) == ["trial", "val_loss", "val_acc"]  # what it is ranked by
    runs = [confirm_run(n, 0, 0.98, 1.0) for n in (0, 1, 2)]
    frame = confirm_frame(data, runs)
    assert frame["trial"].tolist() == [1, 0, 2]  # the search's order: lowest loss first
    assert frame["val_acc"].tolist() == [last_val_acc(data.trials[n]) for n in (1, 0, 2)]
    study.set_user_attr("confirm", {"runs": runs})
    report = build_report(options(tmp_path, url, study="demo", pictures=False))
    html = report.html_path.read_text()
    assert "The best stays the search's choice by validation loss;" in html


def test_a_confirm_run_stored_without_a_test_accuracy_is_left_out_not_a_crash(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)
    blank = confirm_run(BEST, 1, 0.5, 1.0)
    blank["test_acc"] = None  # null in an edited or damaged record
    frame = confirm_frame(data, [confirm_run(BEST, 0, 0.98, 1.0), blank])
    assert frame["seeds"].tolist() == [1] and frame["test_acc_mean"].tolist() == [0.98]
    alone = confirm_frame(data, [blank])
    assert alone["seeds"].tolist() == [0] and math.isnan(alone["test_acc_min"].iloc[0])


def test_confirm_frame_sums_up_each_trials_seeds_in_the_tables_units(study_url: str) -> None:
    data = read_study("demo", study_url)
    runs = [confirm_run(BEST, s, acc, spe) for s, acc, spe in ((2, 0.97, 3.0), (0, 0.99, 1.0))]
    runs.append(confirm_run(BEST, 1, 0.98, 2.0))
    (row,) = confirm_frame(data, runs).to_dict("records")
    assert (row["trial"], row["baseline"], row["seeds"]) == (BEST, False, 3)
    assert row["test_acc_mean"] == pytest.approx(0.98)
    # The spread in percentage points (the table prints it as such): sd 0.01 is 1.00 pp.
    assert row["test_acc_sd_pp"] == pytest.approx(1.0)
    assert (row["test_acc_min"], row["test_acc_max"]) == (0.97, 0.99)
    assert row["s/epoch"] == pytest.approx(2.0)


def test_the_baseline_among_the_top_trials_is_confirmed_once(study_url: str) -> None:
    data = read_study("demo", study_url)
    everyone = candidates(data, len(TRIALS))
    numbers = [t.number for t in everyone]
    # Trained once per seed, not twice: it is in the top already.
    assert BASELINE in numbers and len(numbers) == len(set(numbers))


def test_pictures_skipped_for_damaged_data_name_the_file_and_the_fix(
    tmp_path: Path, study_url: str
) -> None:
    raw = raw_dir(tmp_path / "data")
    raw.mkdir(parents=True)
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        kind = "idx3" if name.endswith("images") else "idx1"
        (raw / f"{name}-{kind}-ubyte").write_bytes(b"not mnist")
    report = build_report(options(tmp_path, study_url, pictures=True, data_dir=tmp_path / "data"))
    (note,) = [n for n in report.notes if n.startswith("Pictures skipped")]
    assert str(raw / "t10k-labels-idx1-ubyte") in note and "rerun `hpo data`" in note


def test_baseline_still_best_is_said_plainly(tmp_path: Path) -> None:
    url = build_study(tmp_path / "b.db", finalized=False, trials=[0, 2, 4])
    v = decide(read_study("demo", url), [])
    assert v.kind == "baseline-best" and "still the best" in v.headline


# --- confirm and the trained-model cache --------------------------------------------------------


def test_confirms_of_one_study_that_overlap_keep_each_others_runs_and_train_none_twice(
    tmp_path: Path, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = build_study(tmp_path / "c.db", finalized=False)
    fast = {"epochs": 1, "hidden1": 32, "hidden2": 16}
    monkeypatch.setattr(
        "hpo.report.confirm.trial_config", lambda t: {**t.user_attrs["config"], **fast}
    )
    # Both read the study before either stored a run (two machines, say).
    first, second = read_study("demo", url), read_study("demo", url)
    options: dict[str, Any] = {"cache_dir": tmp_path / "models", "compile": False}
    run_confirm(first, synthetic_mnist, _cpu(), n_seeds=1, top_k=2, **options)
    trained_by_second: list[int] = []
    real = trained

    def counting(config: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        trained_by_second.append(config.seed)
        return real(config, *args, **kwargs)

    monkeypatch.setattr("hpo.report.confirm.trained", counting)
    run_confirm(second, synthetic_mnist, _cpu(), n_seeds=2, top_k=1, **options)
    stored = sorted((r["trial"], r["seed"]) for r in confirm_runs_of(read_study("demo", url).attrs))
    # The first's #6 kept; the second trained only the seeds the first had not stored.
    assert stored == [(BASELINE, 0), (BASELINE, 1), (BEST, 0), (BEST, 1), (6, 0)]
    assert trained_by_second == [1, 1]


def test_confirm_runs_stored_at_once_by_two_writers_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = build_study(tmp_path / "c.db", finalized=False)
    first_storage = optuna.storages.RDBStorage(url)
    first = optuna.load_study(study_name="demo", storage=first_storage)
    second = optuna.load_study(study_name="demo", storage=url)
    real_write = first_storage.set_study_user_attr
    interleaved: list[bool] = []

    def second_stores_in_between(study_id: int, key: str, value: Any) -> None:
        # The race a read-merge-write loses: the first has made its write, the second stores
        # its runs before that write lands.
        if not interleaved:
            interleaved.append(True)
            store_confirm_run(second, confirm_run(BEST, 1, 0.971, 1.0))
            store_confirm_run(second, confirm_run(BASELINE, 0, 0.962, 1.1))
        real_write(study_id, key, value)

    monkeypatch.setattr(first_storage, "set_study_user_attr", second_stores_in_between)
    store_confirm_run(first, confirm_run(BEST, 0, 0.973, 1.2))
    store_confirm_run(first, confirm_run(BASELINE, 1, 0.964, 1.3))
    attrs = optuna.load_study(study_name="demo", storage=url).user_attrs
    stored = [(r["trial"], r["seed"], r["test_acc"]) for r in confirm_runs_of(attrs)]
    assert interleaved and stored == sorted(
        [(BEST, 0, 0.973), (BEST, 1, 0.971), (BASELINE, 0, 0.962), (BASELINE, 1, 0.964)]
    )
    assert attrs[confirm_run_key(BEST, 1)]["seconds_per_epoch"] == 1.0  # one attr a run


def test_confirm_runs_stored_by_older_versions_in_one_attr_are_still_read() -> None:
    old = [confirm_run(BEST, 0, 0.97, 1.0), confirm_run(BASELINE, 0, 0.96, 1.0)]
    attrs: dict[str, Any] = {
        CONFIRM_ATTR: {"runs": old, "updated_at": "2026-01-01T12:00:00+00:00"},
        confirm_run_key(BEST, 1): confirm_run(BEST, 1, 0.98, 1.0),
        confirm_run_key(BASELINE, 0): confirm_run(BASELINE, 0, 0.95, 1.0),  # stored again
    }
    stored = [(r["trial"], r["seed"], r["test_acc"]) for r in confirm_runs_of(attrs)]
    # The run's own attr wins over the old record's run of the same trial and seed.
    assert stored == sorted([(BEST, 0, 0.97), (BEST, 1, 0.98), (BASELINE, 0, 0.95)])
    assert confirm_runs_of({CONFIRM_ATTR: {"runs": old}}) == sorted(
        old, key=lambda r: (r["trial"], r["seed"])
    )


def test_confirm_trains_top_k_and_baseline_per_seed_stores_and_resumes(
    tmp_path: Path, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = build_study(tmp_path / "c.db", finalized=False)
    data = read_study("demo", url)
    assert [t.number for t in candidates(data, 2)] == [BEST, 6, BASELINE]
    fast = {"epochs": 1, "hidden1": 32, "hidden2": 16}
    monkeypatch.setattr(
        "hpo.report.confirm.trial_config", lambda t: {**t.user_attrs["config"], **fast}
    )
    runs = run_confirm(
        data,
        synthetic_mnist,
        _cpu(),
        n_seeds=2,
        top_k=1,
        cache_dir=tmp_path / "models",
        compile=False,
    )
    assert sorted((r["trial"], r["seed"]) for r in runs) == [(0, 0), (0, 1), (3, 0), (3, 1)]
    assert {r["config"]["seed"] for r in runs} == {0, 1}
    stored = confirm_runs_of(read_study("demo", url).attrs)
    assert [(r["trial"], r["seed"], r["test_acc"]) for r in stored] == [
        (r["trial"], r["seed"], r["test_acc"]) for r in runs
    ]
    # A second, larger confirm trains only the new seed: the fits that exist are not redone.
    calls: list[int] = []
    real = trained

    def counting(config: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        calls.append(config.seed)
        return real(config, *args, **kwargs)

    monkeypatch.setattr("hpo.report.confirm.trained", counting)
    more = run_confirm(
        read_study("demo", url),
        synthetic_mnist,
        _cpu(),
        n_seeds=3,
        top_k=1,
        cache_dir=tmp_path / "models",
        compile=False,
    )
    assert calls == [2, 2] and len(more) == 6


def test_trained_models_are_cached_and_reloaded_identically(
    tmp_path: Path, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(epochs=1, hidden1=32, hidden2=16, seed=3)
    first = trained(config, synthetic_mnist, _cpu(), tmp_path, compile=False)
    monkeypatch.setattr("hpo.retrain.fit", _no_fit)
    monkeypatch.setattr("hpo.retrain.library_versions", lambda: {"torch": "a later one"})
    again = trained(config, synthetic_mnist, _cpu(), tmp_path, compile=False)
    assert again.test_acc == first.test_acc and again.train_loss == first.train_loss
    # The libraries of the process that trained it, not of the one that read it back.
    assert first.versions == library_versions() and again.record()["versions"] == first.versions
    for a, b in zip(
        first.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert a.equal(b)


def test_a_model_trains_and_is_cached_per_device_cpu_thread_count_and_compile_mode(
    tmp_path: Path, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(epochs=1, hidden1=32, hidden2=16, seed=3)
    seen: list[tuple[int, bool | None]] = []
    real_fit = hpo.retrain.fit

    def counting_fit(
        config: TrainConfig,
        mnist: Mnist,
        device: torch.device,
        *,
        compile: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        seen.append((torch.get_num_threads(), compile))
        return real_fit(config, mnist, _cpu(), compile=False, **kwargs)  # eager, here: quick

    monkeypatch.setattr("hpo.retrain.fit", counting_fit)
    before = torch.get_num_threads()
    trained(config, synthetic_mnist, _cpu(), tmp_path, compile=False, threads=1)
    trained(config, synthetic_mnist, _cpu(), tmp_path, compile=False, threads=1)  # cached
    trained(config, synthetic_mnist, _cpu(), tmp_path, compile=False, threads=before + 1)
    # Compiled steps round otherwise than eager ones: an eager model does not stand in.
    trained(config, synthetic_mnist, _cpu(), tmp_path, compile=None, threads=1)
    assert seen == [(1, False), (before + 1, False), (1, None)]
    assert torch.get_num_threads() == before
    assert len(list(tmp_path.glob("*.pt"))) == 3  # one model per thread count and mode
    # Another kind of device rounds otherwise too: a CUDA model is not an MPS one.
    seen.clear()
    for kind in ("cuda", "mps", "cuda"):
        trained(config, synthetic_mnist, torch.device(kind), tmp_path, compile=False)
    assert len(seen) == 2  # the second CUDA request from the cache


def test_a_cached_models_key_holds_the_size_of_the_test_set_it_was_scored_on(
    synthetic_mnist: Mnist,
) -> None:
    # The cache keeps a test accuracy: one scored on a smaller test set (same training set)
    # must not stand in for the full one.
    fewer = dataclasses.replace(
        synthetic_mnist.arrays,
        test_images=synthetic_mnist.arrays.test_images[:100],
        test_labels=synthetic_mnist.arrays.test_labels[:100],
    )
    smaller = dataclasses.replace(synthetic_mnist, arrays=fewer, _tensors={})  # its own cache
    config, cpu = TrainConfig(epochs=1), _cpu()
    assert cache_key(config, smaller, cpu, 1) != cache_key(config, synthetic_mnist, cpu, 1)
    assert cache_key(config, smaller, cpu, 1) == cache_key(config, smaller, cpu, 1)


def test_the_pictures_retrain_with_the_thread_count_and_compile_mode_finalize_used(
    tmp_path: Path, study_url: str, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.load_study(study_name="demo", storage=study_url)
    final = study.user_attrs["final"]
    for role in ("best", "baseline"):
        final[role]["threads"] = 1
    final["best"]["compile"] = False  # as `hpo run --no-compile` finalizes
    study.set_user_attr("final", final)
    asked: list[tuple[int | None, bool | None]] = []
    real = hpo.report.trained

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append((kwargs.get("threads"), kwargs.get("compile")))
        return real(*args, **{**kwargs, "compile": False})  # eager all the same: quick

    monkeypatch.setattr(hpo.report, "trained", recording)
    opts = dataclasses.replace(options(tmp_path, study_url, pictures=True), compile=None)
    build_report(opts, mnist=synthetic_mnist)
    assert asked == [(1, False), (1, None)]  # the baseline's record has no mode: the report's


def test_the_pictures_mark_fixed_and_broken_digits_by_which_model_got_them_right() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    best = torch.tensor([0, 1, 9, 8, 9, 5, 6])  # right at 0, 1, 5, 6
    baseline = torch.tensor([0, 7, 2, 8, 7, 9, 6])  # right at 0, 2, 6
    p = Predictions(labels, best, baseline)
    assert p.fixed.tolist() == [1, 5]  # best right, tutorial wrong
    assert p.broken.tolist() == [2]  # best wrong, tutorial right; 3 and 4: both wrong


def test_the_pictures_captions_count_the_digits_shown_and_warn_of_the_softmax_floor() -> None:
    assert _shown(30) == "The first 12 of 30 in test-set order. "  # at most two rows of six
    assert _shown(5) == "The first 5 of 5 in test-set order. "
    assert _shown(0) == "None. "

    def model(head: Literal["softmax", "logits"]) -> Any:
        return type("Trained", (), {"config": TrainConfig(head=head)})()

    plain = "Mean training loss per epoch, each retrained on all 60,000 training images."
    assert _loss_caption(model("logits"), model("logits"), 60000) == plain
    assert _loss_caption(model("softmax"), model("softmax"), 60000) == plain
    floor = " The tutorial's double softmax cannot go below 1.46, so the two heads' losses"
    assert _loss_caption(model("logits"), model("softmax"), 60000).startswith(plain + floor)


def test_report_with_pictures_embeds_four_pngs_and_reuses_cached_models(
    tmp_path: Path, study_url: str, synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = options(tmp_path, study_url, pictures=True)
    report = build_report(opts, mnist=synthetic_mnist)
    page = report.html_path.read_text()
    assert len(_pngs(page)) == 4
    assert len(list(opts.models_dir.glob("*.pt"))) == 2
    # The study's finalize numbers are made up here, so the retrained models cannot match them:
    # the report must say so rather than show two test accuracies for one model silently.
    assert any("finalize stored 98.41%" in n for n in report.notes)
    monkeypatch.setattr("hpo.retrain.fit", _no_fit)
    again = build_report(opts, mnist=synthetic_mnist)  # trains nothing: would raise
    assert _pngs(again.html_path.read_text()) == _pngs(page)  # the same models, the same pictures


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_refuses_a_missing_study_listing_the_names_there(
    tmp_path: Path, study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    optuna.create_study(storage=study_url, study_name="other")
    code = main(
        [
            "report",
            "--study",
            "nope",
            "--storage",
            study_url,
            "--no-pictures",
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "no study named 'nope'" in err and "studies there: demo, other" in err
    assert not (tmp_path / "r.html").exists()


def test_cli_refuses_a_study_hpo_did_not_make_and_leaves_it_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    plain = optuna.create_study(storage=url, study_name="plain")
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    optuna.create_study(storage=url, study_name="multi", directions=["maximize", "minimize"])
    for verb, name in (("report", "plain"), ("report", "multi"), ("finalize", "plain")):
        code = main([verb, "--study", name, "--storage", url, "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1 and f"study {name!r} in {url} was not made by `hpo run`" in err, err
        assert "Traceback" not in err and "optuna-dashboard" in err
    assert optuna.load_study(study_name="plain", storage=url).trials == plain.trials
    assert not list(tmp_path.glob("**/*.html"))


def test_cli_refuses_a_missing_storage_file_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "absent.db"
    code = main(["report", "--storage", f"sqlite:///{db}", "--no-pictures"])
    assert code == 1 and "no study storage at" in capsys.readouterr().err and not db.exists()
    db.touch()  # an empty file: opening it would write Optuna's tables into it
    code = main(["report", "--storage", f"sqlite:///{db}", "--no-pictures"])
    assert code == 1 and "(an empty file)" in capsys.readouterr().err
    assert db.stat().st_size == 0


def test_a_sqlite_url_with_options_reads_the_same_file(
    tmp_path: Path, study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    with_query = f"{study_url}?timeout=30"  # SQLAlchemy's options, not part of the file's name
    code = main(["report", "--study", "demo", "--storage", with_query, "--no-pictures", "--out",
                 str(out)])  # fmt: skip
    assert code == 0 and out.is_file(), capsys.readouterr().err
    absent = tmp_path / "absent.db"
    assert main(["report", "--storage", f"sqlite:///{absent}?timeout=30"]) == 1
    assert f"no study storage at {absent}: run" in capsys.readouterr().err


def test_cli_writes_html_and_csv_and_prints_json(
    tmp_path: Path, study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "report.html"
    code = main(
        [
            "report",
            "--study",
            "demo",
            "--storage",
            study_url,
            "--out",
            str(out),
            "--no-pictures",
            "--format",
            "json",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["html"] == str(out) and result["csv"] == str(out.with_name("trials.csv"))
    assert result["html_bytes"] == out.stat().st_size
    assert (result["best_trial"], result["baseline_trial"]) == (BEST, BASELINE)
    assert result["verdict"] == "unconfirmed"


def test_an_out_naming_a_file_the_report_did_not_write_is_refused_and_kept(
    tmp_path: Path,
    study_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--out hpo.db` replaced the study's database with the HTML page: every study lost."""
    db = Path(study_url.removeprefix("sqlite:///"))
    before, trials = db.read_bytes(), optuna.load_study(study_name="demo", storage=study_url).trials
    args = ["report", "--study", "demo", "--storage", study_url, "--no-pictures", "--device", "cpu"]
    assert main([*args, "--out", str(db)]) == 2
    err = capsys.readouterr().err
    assert f"--out {db} is an SQLite database, which this command would replace and lose" in err
    assert "(--out such as demo.html)" in err
    assert db.read_bytes() == before
    assert optuna.load_study(study_name="demo", storage=study_url).trials == trials
    # The table beside the page, too; and an empty path, which would be the current folder.
    (tmp_path / "r-trials.csv").write_text('{"a": 1}')
    assert main([*args, "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"the trials' table {tmp_path / 'r-trials.csv'} is a JSON file" in err
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main([*args, "--out", ""])
    assert exit_.value.code == 2 and "--out: a path must not be empty" in capsys.readouterr().err
    # A folder cannot be replaced: a file in it is asked for.
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder; name a file to write" in capsys.readouterr().err
    # Its own files are replaced, as every rerun does; an empty file holds nothing to lose.
    (tmp_path / "r-trials.csv").write_text("")
    assert main([*args, "--out", str(tmp_path / "r.html")]) == 0
    assert main([*args, "--out", str(tmp_path / "r.html")]) == 0
    # Without --out, the default file is named as what it is.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "report.html").write_bytes(db.read_bytes())
    assert main(args) == 2
    said = "the report's file runs/demo/report.html is an SQLite database"
    assert said in capsys.readouterr().err


def test_a_report_that_trains_nothing_needs_no_device(
    tmp_path: Path,
    study_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HPO_DEVICE", "cuda:7")  # no machine here has eight GPUs
    args = ["report", "--study", "demo", "--storage", study_url, "--no-pictures"]
    assert main([*args, "--out", str(tmp_path / "r.html")]) == 0
    assert main([*args, "--confirm", "2", "--out", str(tmp_path / "r.html")]) == 1  # it trains
    assert "(the device came from $HPO_DEVICE=cuda:7: unset it)" in capsys.readouterr().err


def test_reports_written_into_one_folder_keep_their_own_tables(
    tmp_path: Path, study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("first", "second"):
        args = ["report", "--study", "demo", "--storage", study_url, "--no-pictures"]
        assert main([*args, "--out", str(tmp_path / f"{name}.html"), "--device", "cpu"]) == 0
    tables = sorted(path.name for path in tmp_path.glob("*.csv"))
    assert tables == ["first-trials.csv", "second-trials.csv"]
    assert ReportOptions(study="s").csv_path == Path("runs/s/trials.csv")


def test_cli_rejects_a_one_seed_confirm_and_a_top_without_confirm_as_usage_errors(
    study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["report", "--storage", study_url, "--study", "demo"]
    assert main([*flags, "--confirm", "1"]) == 2
    assert main([*flags, "--top", "5"]) == 2  # it would be ignored: nothing is retrained
    assert "--top 5 chooses how many configurations --confirm retrains" in capsys.readouterr().err


def test_trials_frame_matches_the_stored_values(study_url: str) -> None:
    frame = trials_frame(read_study("demo", study_url)).set_index("trial")
    for number, state, value, _, run in TRIALS:
        assert frame.loc[number, "epochs_run"] == run
        if state == TrialState.COMPLETE:
            assert frame.loc[number, "value"] == value


def test_a_trial_that_recorded_no_parameter_count_gets_one_from_its_hidden_sizes(
    study_url: str,
) -> None:
    # Trials from before hpo recorded param_count: the CSV's column is still filled, from the
    # sizes in the trial's config (trial 3: 512 and 128 units), not left empty.
    older = copy.deepcopy(read_study("demo", study_url).trials[BEST])
    del older.user_attrs["param_count"]
    assert trial_row(older)["param_count"] == parameter_count(512, 128) == 470_154
    # A trial with neither (failed before storing a config, with no sizes sampled): empty.
    older.user_attrs.pop("config")
    older.params.pop("hidden1")
    assert trial_row(older)["param_count"] is None


def _pngs(page: str) -> list[str]:
    return re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _no_fit(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("fit() was called: the cache was not used")


def test_every_complete_trial_shows_in_the_landscape_figures(study_url: str) -> None:
    data = read_study("demo", study_url)
    parallel_fig = parallel(data).figure
    assert parallel_fig is not None
    lines = [t for t in parallel_fig.data if t.mode == "lines"]
    assert len(lines) == len(data.complete)
    for trace in lines:  # none white on the white page: the worst trial was invisible
        assert min(plotly.colors.unlabel_rgb(trace.line.color)) <= 210, trace.line.color
    # only gamma is conditional in this study (see add_trial): the "None" tick is explained
    caption = parallel(data).caption
    assert "does not use gamma (its schedule" in caption, caption
    assert "step_every" not in caption and "lr" not in caption
    names = sorted(data.complete[0].params)[:2]
    slice_fig = slices(data, names[::-1]).figure
    assert slice_fig is not None
    markers = [t for t in slice_fig.data if t.type == "scatter" and t.marker.colorscale]
    assert markers and all(t.marker.colorscale[0][1] == BLUES[0] for t in markers)
    caption = slices(data, names[::-1]).caption
    assert f"against {', '.join(names)};" in caption  # the panels' order, not the call's


def test_the_blues_are_blended_a_third_of_the_way_to_the_darkest_so_the_lightest_shows(
    study_url: str,
) -> None:
    # Plotly's lightest blue, rgb(247, 251, 255), is white on the page; a third of the way to
    # rgb(8, 48, 107) it reads as a pale blue, and the darkest stays as it is (the order holds).
    assert visible("rgb(247,251,255)") == "rgb(167, 183, 206)"
    assert visible("rgb(8, 48, 107)") == "rgb(8, 48, 107)"
    assert [visible(c) for c in plotly.colors.sequential.Blues] == BLUES
    figure = parallel(read_study("demo", study_url)).figure
    assert figure is not None
    # The colour bar beside the lines has the same scale, else its light end is white too.
    bar = [t for t in figure.data if t.marker is not None and t.marker.showscale]
    assert [[c for _, c in t.marker.colorscale] for t in bar] == [BLUES]


def test_parallel_coordinates_need_two_complete_trials(tmp_path: Path) -> None:
    one = read_study("demo", build_study(tmp_path / "one.db", trials=[0, 2]))
    missing = parallel(one)
    assert (missing.figure, missing.caption) == (None, "Needs at least two complete trials.")
    two = parallel(read_study("demo", build_study(tmp_path / "two.db", trials=[0, 1])))
    assert two.figure is not None
    assert two.caption.startswith("Each line is a complete trial, coloured by validation")


def test_parallel_coordinates_give_accuracy_in_percent_and_keep_tick_labels_apart(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)
    figure = parallel(data).figure
    assert figure is not None
    on_axis = [n.text for n in figure.layout.annotations if n.x == 0]  # the objective's ticks
    best = max(t.value for t in data.complete if t.value is not None)
    assert on_axis and all(re.fullmatch(r"\d+\.\d%", text) for text in on_axis), on_axis
    assert format(float(f"{best:.3g}"), ".1%") in on_axis  # the axis's top: the best value
    lines = [t for t in figure.data if t.mode == "lines"]
    shown = sorted(row[1] for t in lines for row in t.customdata if row[0] == data.target_label)
    assert shown == sorted(format(float(f"{t.value:.3g}"), ".1%") for t in data.complete)
    bar = [t for t in figure.data if t.marker is not None and t.marker.showscale]
    assert [t.marker.colorbar.tickformat for t in bar] == [".1%"]
    # Labels closer than 5% of an axis's height: the inner one goes, the ends stay.
    crowded = go.Figure()
    for y in (0.0, 0.03, 0.5, 0.97, 1.0):
        crowded.add_annotation(x=3, y=y, text=str(y))
    crowded.add_annotation(x=4, y=0.5, text="alone")
    _uncrowd_ticks(crowded)
    assert [(n.x, n.y) for n in crowded.layout.annotations] == [
        (3, 0.0), (3, 0.5), (3, 1.0), (4, 0.5)
    ]  # fmt: skip


def test_a_slice_names_each_points_trial_and_rings_the_baseline(study_url: str) -> None:
    data = read_study("demo", study_url)
    assert data.baseline is not None
    base = data.baseline.number
    names = ["hidden1", "lr"]
    figure = slices(data, names).figure
    assert figure is not None
    points = [t for t in figure.data if t.text is not None]
    rings = [t for t in figure.data if t.name == "baseline"]
    assert len(points) == len(rings) == 2  # a panel each, Optuna's order: by name
    by_number = {t.number: t for t in data.complete}
    for name, trace, ring in zip(names, points, rings, strict=True):
        at = zip(trace.text, trace.x, trace.y, strict=True)
        shown = {int(text.split()[1]): (x, y) for text, x, y in at}
        assert shown == {n: (t.params[name], t.value) for n, t in by_number.items()}
        assert f"trial {base} (baseline)" in trace.text
        assert ring.xaxis == trace.xaxis and (ring.x[0], ring.y[0]) == shown[base]
        assert f"<br>{name} %{{x}}<br>validation accuracy %{{y:.2%}}" in trace.hovertemplate
    assert figure.layout.yaxis.tickformat == ".1%"  # accuracies in %, as the other figures
    assert figure.layout.legend.y > 1  # above the panels: at the right, the colour bar hid it
    lossy = dataclasses.replace(data, attrs={**data.attrs, "objective": "val_loss"})
    by_loss = slices(lossy, names).figure
    assert by_loss is not None and not by_loss.layout.yaxis.tickformat
    assert all("%{y}<extra>" in t.hovertemplate for t in by_loss.data if t.text is not None)
    shaded = contour(data, names).figure
    assert shaded is not None
    assert [t.colorbar.tickformat for t in shaded.data if t.type == "contour"] == [".1%"]
    assert [r.showlegend for r in rings] == [True, False]
    assert f"The black ring is the baseline (trial {base}" in slices(data, names).caption


def test_a_gamma_axis_pooling_two_schedules_says_what_gamma_means_under_each(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)
    assert {"step", "exponential"} <= {t.params.get("schedule") for t in data.complete}
    said = "a factor per epoch under the exponential schedule and per step_every epochs"
    assert said in slices(data, ["gamma", "lr"]).caption
    assert said not in slices(data, ["lr", "momentum"]).caption
    importances, caption = param_importances(data)
    assert "gamma" in importances and said in caption
    study = optuna.create_study(direction="maximize")  # the step schedule alone: one meaning
    study.add_trials(t for t in data.complete if t.params.get("schedule") != "exponential")
    alone = dataclasses.replace(data, trials=tuple(study.trials), study=study)
    assert said not in slices(alone, ["gamma", "lr"]).caption
    study = optuna.create_study(direction="maximize")  # exponential alone: one meaning too
    study.add_trials(t for t in data.complete if t.params["schedule"] not in ("step", "tutorial"))
    alone = dataclasses.replace(data, trials=tuple(study.trials), study=study)
    assert "exponential" in {t.params.get("schedule") for t in alone.complete}
    assert said not in slices(alone, ["gamma", "lr"]).caption


def test_importances_need_three_complete_trials_and_draw_the_most_important_on_top(
    tmp_path: Path,
) -> None:
    two = read_study("demo", build_study(tmp_path / "two.db", trials=[0, 1, 2]))
    assert param_importances(two) == (
        {},
        "Needs at least three complete trials in the space (the study has 2).",
    )
    three = read_study("demo", build_study(tmp_path / "three.db", trials=[0, 1, 3]))
    importances, caption = param_importances(three)
    assert set(importances) == set(SPACE) and sum(importances.values()) == pytest.approx(1)
    figure = importance_figure(importances, caption).figure
    assert figure is not None
    # Plotly draws the first bar at the bottom: the most important is the last, on top.
    (bars,) = figure.data
    assert list(bars.y) == sorted(importances, key=lambda p: importances[p])
    assert list(bars.x) == sorted(importances.values())


def test_importances_pass_on_optunas_warnings_about_them_and_no_others(
    study_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def warning(study: optuna.Study) -> dict[str, float]:
        warnings.warn("`lr` has no variance: its importance is 0", UserWarning, stacklevel=1)
        warnings.warn("an unrelated deprecation", FutureWarning, stacklevel=1)
        return {"lr": 1.0}

    monkeypatch.setattr(optuna.importance, "get_param_importances", warning)
    importances, caption = param_importances(read_study("demo", study_url))
    assert importances == {"lr": 1.0}
    assert caption.endswith("Optuna warns: lr has no variance: its importance is 0")
    assert "deprecation" not in caption


def test_a_contour_needs_five_complete_trials_and_two_parameters_that_vary(
    tmp_path: Path,
) -> None:
    four = read_study("demo", build_study(tmp_path / "four.db", trials=[0, 1, 3, 6]))
    needs = "Needs two important parameters and at least five complete trials."
    assert (contour(four, ["gamma", "lr"]).figure, contour(four, ["gamma", "lr"]).caption) == (
        None,
        needs,
    )
    five = read_study("demo", build_study(tmp_path / "five.db", trials=[0, 1, 3, 6, 7]))
    drawn = contour(five, ["gamma", "lr"])
    assert drawn.figure is not None
    # The first named is the x axis (Optuna's plot_contour): the caption names them so.
    assert drawn.caption == (
        "Validation accuracy over gamma and lr, interpolated between complete trials (dots)."
    )
    assert drawn.figure.layout.xaxis.title.text == "gamma"
    url = build_study(tmp_path / "same.db", finalized=False, trials=[])
    study = optuna.load_study(study_name="demo", storage=url)
    for n in range(5):  # five learning rates, one momentum (the tutorial's)
        add_trial(study, n, TrialState.COMPLETE, 0.96 + n / 1000, dict(lr=0.01 + n / 100), 3)
    flat = contour(read_study("demo", url), ["lr", "momentum"])
    assert (flat.figure, flat.caption) == (
        None,
        "lr and momentum do not both vary across the complete trials.",
    )


def test_importances_leave_out_a_trial_with_values_outside_the_space(study_url: str) -> None:
    """The baseline lies outside a space that excludes the tutorial's values; Optuna stores such
    an enqueued trial with only a warning, and PED-ANOVA would bin its value into the range."""
    within, caption = param_importances(read_study("demo", study_url))
    assert within and "Left out" not in caption
    complete = len(read_study("demo", study_url).complete)
    assert f"the best tenth of the {complete} complete trials used against all of them" in caption
    study = optuna.load_study(study_name="demo", storage=study_url)
    study.enqueue_trial({"lr": 30.0, "momentum": 0.0, "hidden1": 4, "hidden2": 2})
    with pytest.warns(UserWarning, match="out of range"):
        trial = study.ask({k: SPACE[k] for k in ("lr", "momentum", "hidden1", "hidden2")})
    study.tell(trial, 0.999)
    data = read_study("demo", study_url)
    assert not in_space(data.study.trials[-1])
    assert all(in_space(t) for t in data.study.trials[:-1])
    importances, caption = param_importances(data)
    assert importances == pytest.approx(within)
    assert f"Left out: #{trial.number}, with values outside the search space." in caption


def test_the_history_marks_where_pruned_trials_stopped_and_labels_the_baseline_in_percent(
    study_url: str,
) -> None:
    data = read_study("demo", study_url)
    fig = history(data).figure
    assert fig is not None
    pruned = fig.data[2]
    # Each pruned trial at its last epoch's accuracy (trial 5 ran 2 epochs: 0.93, then 0.95).
    assert list(pruned.x) == [2, 5] and list(pruned.y) == pytest.approx([0.92, 0.95])
    (line,) = fig.layout.shapes
    assert (line.y0, line.line.dash) == (0.9650, "dash")
    assert [a.text for a in fig.layout.annotations] == ["tutorial baseline 96.50%"]
    assert fig.layout.xaxis.dtick == 1


def test_the_history_ticks_every_tenth_of_the_trials_on_a_long_study(tmp_path: Path) -> None:
    url = build_study(tmp_path / "long.db", finalized=False, trials=[])
    study = optuna.load_study(study_name="demo", storage=url)
    for n in range(21):
        add_trial(study, n, TrialState.COMPLETE, 0.96 + n / 1000, {}, 1)
    fig = history(read_study("demo", url)).figure
    assert fig is not None and fig.layout.xaxis.dtick == 3  # 21 trials: ceil(2.1)


def test_the_curves_draw_the_best_red_and_the_tutorial_black_on_top_of_the_rest(
    study_url: str,
) -> None:
    fig = curves(read_study("demo", study_url)).figure
    assert fig is not None
    drawn = [(t.name, t.line.color, t.line.width, t.line.dash, t.showlegend) for t in fig.data]
    grey = PRUNED_COLOUR
    assert drawn == [
        ("#1 COMPLETE", "#6baed6", 1.2, None, True),
        ("#2 PRUNED", grey, 1.2, "dot", True),
        ("#4 FAIL", grey, 1.2, "dot", True),
        ("#5 PRUNED", grey, 1.2, "dot", True),
        ("#6 COMPLETE", "#6baed6", 1.2, None, True),
        ("#7 COMPLETE", "#6baed6", 1.2, None, True),
        ("#8 COMPLETE", "#6baed6", 1.2, None, True),
        # last, so drawn over the others
        (f"baseline #{BASELINE} COMPLETE", BASELINE_COLOUR, 3, None, True),
        (f"best #{BEST} COMPLETE", BEST_COLOUR, 3, None, True),
    ]
    cut = fig.data[3]  # trial 5, pruned after 2 epochs: an x where it stopped
    assert list(cut.marker.symbol) == ["circle", "x"] and list(cut.marker.size) == [0, 9]


def test_the_schedules_show_the_best_beside_the_tutorial_unless_the_tutorial_is_the_best(
    tmp_path: Path,
) -> None:
    fig = schedules(read_study("demo", build_study(tmp_path / "d.db"))).figure
    assert fig is not None
    assert [(t.name, t.line.color) for t in fig.data] == [
        ("tutorial (tutorial)", BASELINE_COLOUR),
        (f"best #{BEST} (step)", BEST_COLOUR),
    ]
    alone = schedules(read_study("demo", build_study(tmp_path / "b.db", trials=[0, 2, 4])))
    assert alone.figure is not None
    assert [t.name for t in alone.figure.data] == ["tutorial (tutorial)"]


def test_a_baseline_re_run_under_another_number_is_named_by_it(tmp_path: Path) -> None:
    """An interrupted trial 0 is queued again and runs as a later trial: the caption must name
    that one, not trial 0 (a FAIL row in the table)."""
    url = build_study(tmp_path / "hpo.db", trials=[1, 3])
    study = optuna.load_study(study_name="demo", storage=url)
    add_trial(study, 4, TrialState.COMPLETE, 0.9650, {}, 3, is_baseline=True)
    data = read_study("demo", url)
    assert data.baseline is not None and data.baseline.number == 2  # Optuna numbers in order
    assert "The dashed line is the tutorial's configuration (trial 2)." in history(data).caption


def test_a_table_shows_a_float_to_four_significant_digits_and_anything_else_as_it_is() -> None:
    # hpo.text.short, shared by the report, the CLI's summary and the benchmark table: an
    # accuracy needs its fourth digit (0.9795 against 0.9801), and 1e-05 stays readable.
    values = (0.0123456, 1e-05, 0.9795, 1234.5678, 0.1, 3, "cosine", True, None)
    assert [short(v) for v in values] == [
        "0.01235", "1e-05", "0.9795", "1235", "0.1", "3", "cosine", "True", "None",
    ]  # fmt: skip
