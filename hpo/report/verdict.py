"""The answer the report leads with: did the search beat the tutorial's recipe, and by how much.

Test accuracy comes from the strongest evidence stored: ``--confirm`` runs (several seeds, an
interval), else ``hpo finalize`` (one seed each, shown as such), else nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from optuna.trial import FrozenTrial

from hpo.config import TrainConfig
from hpo.records import ConfirmRun, FinalSide, Role, last_val_acc, trial_config
from hpo.report.confirm import seed_accuracies
from hpo.report.stats import Difference, Sample, sample_of, welch_interval
from hpo.report.study import StudyData
from hpo.report.tables import CONFIG_KEYS, trial_row
from hpo.spec import in_use

ONE_SEED = "1 seed (hpo finalize): not a claim"
NOT_FINALIZED = "not finalized: run"  # then the command, with the study's --study and --storage
TUTORIAL_EPOCHS = TrainConfig().epochs

Differing = tuple[tuple[str, Any, Any], ...]  # (key, baseline value, best value)


@dataclass(frozen=True)
class Side:
    role: Role
    trial: int
    config: dict[str, Any]
    val_acc: float | None  # the search's one run on the validation split
    test: Sample | None
    test_source: str
    seconds_per_epoch: float | None
    time_source: str
    param_count: int | None


VerdictKind = Literal[
    "none", "no-baseline", "baseline-best", "beats", "worse", "no-difference", "unconfirmed"
]


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind  # the page's CSS class and the JSON's "verdict"
    headline: str
    baseline: Side | None
    best: Side | None
    difference: Difference | None  # test accuracy, best minus baseline; only when confirmed
    differing: Differing


def decide(data: StudyData, confirm_runs: list[ConfirmRun]) -> Verdict:
    verdict = _decide(data, confirm_runs)
    base, best = verdict.baseline, verdict.best
    said = ""
    if base is not None and best is not None and base.trial != best.trial:
        heads = base.config.get("head", "softmax"), best.config.get("head", "softmax")
        if heads == ("softmax", "logits"):  # the tutorial's bug, fixed by a spec's setting
            said += (
                " The tutorial's configuration keeps its double softmax (head softmax) and the "
                "best has the logits head: part of the difference is that fix, not the other "
                "hyperparameters."
            )
    if base is not None and data.epochs not in (None, TUTORIAL_EPOCHS):
        # The tutorial's configuration at the study's budget is not the tutorial's own run.
        said += (
            f" Every trial, the tutorial's configuration too, trained {data.epochs} "
            f"epoch{'s' if data.epochs != 1 else ''}; the tutorial trains {TUTORIAL_EPOCHS}."
        )
    return dataclasses.replace(verdict, headline=verdict.headline + said) if said else verdict


def _decide(data: StudyData, confirm_runs: list[ConfirmRun]) -> Verdict:
    best_trial, base_trial = data.best, data.baseline
    if best_trial is None:
        return _nothing_completed(data)
    best = _side(data, best_trial, "best", confirm_runs)
    if base_trial is None:
        return _no_baseline(data, best)
    base = _side(data, base_trial, "baseline", confirm_runs)
    differing = _differing(base.config, best.config)
    if best_trial.number == base_trial.number:
        return _baseline_best(base, best, differing)
    diff = welch_interval(
        seed_accuracies(confirm_runs, best.trial), seed_accuracies(confirm_runs, base.trial)
    )
    if diff is None:
        return _unconfirmed(data, base, best, differing)
    return _confirmed(base, best, diff, differing)


def _nothing_completed(data: StudyData) -> Verdict:
    counts = {
        s: len([t for t in data.trials if t.state.name == s]) for s in ("PRUNED", "FAIL", "RUNNING")
    }
    return Verdict(
        "none",
        f"No trial has completed yet ({counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed, {counts['RUNNING']} running): "
        "there is no best configuration to compare.",
        None,
        None,
        None,
        (),
    )


def _no_baseline(data: StudyData, best: Side) -> Verdict:
    attempts = data.baseline_attempts
    missing = (
        "The study has no baseline trial (user attr is_baseline)"
        if not attempts
        else "The baseline did not complete ("
        + ", ".join(f"trial #{t.number} {t.state.name.lower()}" for t in attempts)
        + ")"
    )
    return Verdict(
        "no-baseline",
        f"{missing}, so nothing to compare; the best trial, #{best.trial}, reached "
        f"{percent(best.val_acc)} validation accuracy.",
        None,
        best,
        None,
        (),
    )


def _baseline_best(base: Side, best: Side, differing: Differing) -> Verdict:
    return Verdict(
        "baseline-best",
        f"The tutorial's own configuration (trial "
        f"#{base.trial}) is still the best trial: {percent(base.val_acc)} validation "
        "accuracy. The search has not beaten it.",
        base,
        best,
        None,
        differing,
    )


def _unconfirmed(data: StudyData, base: Side, best: Side, differing: Differing) -> Verdict:
    """No interval to claim by: the scores side by side, and how to get one."""
    gap = (best.val_acc or 0.0) - (base.val_acc or 0.0)
    test = ""
    if best.test is not None and base.test is not None:
        test = (
            f"; test {percent(best.test.mean)} vs {percent(base.test.mean)} "
            f"({_pp(best.test.mean - base.test.mean)})"
        )
    seeds = [side.test.n if side.test is not None else 0 for side in (best, base)]
    return Verdict(
        "unconfirmed",
        f"Best trial #{best.trial}: {percent(best.val_acc)} "
        f"validation accuracy vs the tutorial's {percent(base.val_acc)} "
        f"({_pp(gap)}){test}. {_why_no_interval(data, seeds)}",
        base,
        best,
        None,
        differing,
    )


def _why_no_interval(data: StudyData, seeds: list[int]) -> str:
    """``seeds``: test scores of the best, then the baseline."""
    if min(seeds) >= 2:  # every seed of each side scored the same
        return (
            f"{seeds[0]} vs {seeds[1]} seeds, each side's all scoring the same: their "
            f"spread, and any interval, is unknown; "
            f"`{data.command('report', f'--confirm {2 * max(seeds)}')}` adds seeds."
        )
    if max(seeds) >= 2:  # the top trial changed since a --confirm, say
        return (
            f"{seeds[0]} vs {seeds[1]} seeds: an interval needs two or more on each side; "
            f"`{data.command('report', f'--confirm {max(seeds)}')}` trains the missing ones "
            "(stored seeds are reused)."
        )
    return (
        f"One run each, not a claim (the best's validation score is the best of "
        f"{len(data.complete)} trials', which flatters it): "
        f"`{data.command('report', '--confirm 5')}` retrains the top 3 trials and the "
        "baseline over 5 seeds each for a verdict."
    )


def _confirmed(base: Side, best: Side, diff: Difference, differing: Differing) -> Verdict:
    """An interval over several seeds each: the claim is where it lies against 0."""
    assert best.test is not None and base.test is not None
    span = (
        f"{_pp(diff.diff)} ({diff.level:.0%} CI {_pp(diff.low)} to {_pp(diff.high)}; "
        f"{best.test.n} vs {base.test.n} seeds)"
    )
    scores = f"test accuracy {percent(best.test.mean)} vs {percent(base.test.mean)}"
    kind: VerdictKind
    if diff.low > 0:
        kind, text = "beats", f"Tuning beat the tutorial: {scores}, {span}."
    elif diff.high < 0:
        kind, text = (
            "worse",
            f"The tuned configuration is worse than the tutorial: {scores}, {span}.",
        )
    else:
        kind, text = (
            "no-difference",
            (f"No clear difference from the tutorial: {scores}, {span}; the interval includes 0."),
        )
    return Verdict(kind, text, base, best, diff, differing)


def _side(data: StudyData, trial: FrozenTrial, role: Role, runs: list[ConfirmRun]) -> Side:
    row, final = trial_row(trial), data.final_for(trial, role)
    test: Sample | None = None
    accs = seed_accuracies(runs, trial.number)
    if accs:
        test = sample_of(accs)
        source = f"{len(accs)} seed{'s' if len(accs) > 1 else ''}, full training set (--confirm)"
    elif final is not None and (acc := final["test_acc"]) is not None:
        test, source = Sample(float(acc), math.nan, 1), ONE_SEED
    elif data.final is not None:
        source = (
            f"finalize measured another trial: run `{data.command('finalize')}` again for "
            f"#{trial.number}"
        )
    else:
        source = f"{NOT_FINALIZED} `{data.command('finalize')}`"
    spe, time_source = _seconds_per_epoch(row, final, runs, trial.number)
    params = (final["param_count"] if final else None) or row["param_count"]
    val = last_val_acc(trial)
    if val is None and data.objective == "val_acc":
        val = trial.value
    return Side(
        role,
        trial.number,
        trial_config(trial),
        val,
        test,
        source,
        spe,
        time_source,
        int(params) if params is not None else None,
    )


def _seconds_per_epoch(
    row: dict[str, Any], final: FinalSide | None, runs: list[ConfirmRun], trial: int
) -> tuple[float | None, str]:
    if final is not None and (spe := final["seconds_per_epoch"]) is not None:
        return float(spe), f"finalize, {final['device'] or '?'}"
    mine = [r for r in runs if r["trial"] == trial and r["seconds_per_epoch"] is not None]
    if mine:
        mean = sample_of([float(r["seconds_per_epoch"] or 0) for r in mine]).mean
        return mean, f"--confirm mean, {mine[0]['device'] or '?'}"
    value = row["seconds_per_epoch"]
    if value is None or math.isnan(value):
        return None, "not measured"
    return float(value), f"the search, {row['device'] or '?'}"


def _differing(base: dict[str, Any], best: dict[str, Any]) -> Differing:
    """Keys whose values differ as the two sides train with them, None where a side's schedule
    does not use the key: the tutorial's step_every 5 against a cosine schedule's stored but
    unused 5 is a difference; a gamma that neither side uses is noise, not one."""

    def used(config: dict[str, Any], key: str) -> Any:
        return config.get(key) if in_use(key, config.get("schedule")) else None

    out = []
    for key in CONFIG_KEYS:
        if key != "seed" and (a := used(base, key)) != (b := used(best, key)):
            out.append((key, a, b))
    return tuple(out)


def percent(value: float | None) -> str:
    """A fraction as the verdict and the report show it: 0.9795 -> 97.95%; None or NaN -> n/a."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.2%}"


def _pp(value: float) -> str:
    return f"{value * 100:+.2f} pp"
