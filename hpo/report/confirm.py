"""``--confirm N``: retrain the top configurations and the baseline over N seeds on all 60,000
training images, score each on the test set, and keep the runs on the study (a user attr each,
``hpo.records.confirm_run_key``) so that every later report reuses them.

Which configuration is "best" stays the search's choice (validation accuracy): picking the winner
by these test scores would tune on the test set. The other top configurations are shown so a
reader sees whether the search's ranking survives new seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from optuna.trial import FrozenTrial

from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.records import (
    ConfirmRun,
    confirm_runs_of,
    last_val_acc,
    store_confirm_run,
    trial_config,
)
from hpo.report.stats import Sample, sample_of
from hpo.report.study import StudyData
from hpo.retrain import trained


def candidates(data: StudyData, top_k: int) -> list[FrozenTrial]:
    """The top ``top_k`` trials by the study's objective, then the baseline if not among them."""
    chosen = data.ranked()[:top_k]
    baseline = data.baseline
    if baseline is not None and all(t.number != baseline.number for t in chosen):
        chosen.append(baseline)
    return chosen


def seed_accuracies(runs: list[ConfirmRun], trial: int) -> list[float]:
    """One test accuracy per seed for ``trial``, in seed order."""
    mine = sorted((r for r in runs if r.get("trial") == trial), key=lambda r: r["seed"])
    return [float(acc) for r in mine if (acc := r.get("test_acc")) is not None]


def run_confirm(
    data: StudyData,
    mnist: Mnist,
    device: torch.device,
    *,
    n_seeds: int,
    top_k: int,
    cache_dir: Path,
    compile: bool | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[ConfirmRun]:
    """Train what is missing, store every run on the study, return them all.

    Seeds 0..N-1 for every configuration: a larger N adds seeds, it never redraws earlier ones.
    """
    if n_seeds < 1 or top_k < 1:
        raise ValueError(f"n_seeds and top_k must be >= 1 (got {n_seeds}, {top_k})")
    chosen = candidates(data, top_k)
    total = len(chosen) * n_seeds
    for i, trial in enumerate(chosen):
        base = TrainConfig.from_dict(trial_config(trial))
        for seed in range(n_seeds):
            # What is stored now, not only what was at the start: another `hpo report
            # --confirm` of this study (another machine, say) may have trained it meanwhile.
            stored = confirm_runs_of(data.study.user_attrs)
            if any((r["trial"], r["seed"]) == (trial.number, seed) for r in stored):
                continue
            log(f"confirm: trial {trial.number}, seed {seed} ({i * n_seeds + seed + 1}/{total})")
            done = trained(
                dataclasses.replace(base, seed=seed),
                mnist,
                device,
                cache_dir,
                compile=compile,
                log=log,
            )
            run: ConfirmRun = {
                "trial": trial.number,
                "seed": seed,
                "is_baseline": bool(trial.user_attrs.get("is_baseline")),
                **done.record(),
            }
            # Stored after every run, in an attr of its own: an interrupted confirm resumes
            # where it stopped, and another's runs stored meanwhile, even in the same instant,
            # are kept (nothing is read and written back).
            store_confirm_run(data.study, run)
    return confirm_runs_of(data.study.user_attrs)


def confirm_frame(data: StudyData, runs: list[ConfirmRun]) -> pd.DataFrame:
    """One row per confirmed trial: its search score and its test accuracy over seeds (a run
    stored without one, null in an edited or damaged record, is left out: ``seeds`` says how
    many count)."""
    by_number = {t.number: t for t in data.trials}
    rank = {t.number: i for i, t in enumerate(data.ranked())}
    rows: list[dict[str, Any]] = []
    for number in sorted({r["trial"] for r in runs}):
        accs = seed_accuracies(runs, number)
        spe = [float(s) for r in runs if r["trial"] == number and (s := r["seconds_per_epoch"])]
        trial = by_number.get(number)
        sample = sample_of(accs) if accs else Sample(math.nan, math.nan, 0)
        rows.append(
            {
                "trial": number,
                "baseline": bool(trial and trial.user_attrs.get("is_baseline")),
                "val_acc": last_val_acc(trial) if trial else None,
                "seeds": sample.n,
                "test_acc_mean": sample.mean,
                "test_acc_sd_pp": sample.std * 100,
                "test_acc_min": min(accs, default=math.nan),
                "test_acc_max": max(accs, default=math.nan),
                "s/epoch": sample_of(spe).mean if spe else math.nan,
            }
        )
    # In the search's order (its objective, in its direction), not by test score: the test set
    # picks nothing here.
    order = sorted(rows, key=lambda row: (rank.get(row["trial"], len(rank)), row["trial"]))
    return pd.DataFrame(order)
