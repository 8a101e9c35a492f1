"""``finalize``: the study's best trial and its baseline, each retrained on all 60,000 training
images and scored on the test set. Tuning never sees the test set: it is used only here and by
``hpo report`` (its pictures and ``--confirm``), on configurations the search has already
chosen. The retraining records test accuracy per epoch, as the tutorial plots it; the score
stored is its last epoch's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.errors import HpoError
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.records import (
    FINAL_ATTR,
    Final,
    FinalSide,
    Role,
    baseline_of,
    best_of,
    final_of,
    last_val_acc,
)
from hpo.retrain import Trained, export_model, trained


def finalize(
    study: optuna.Study,
    mnist: Mnist,
    device: torch.device,
    *,
    force: bool = False,
    compile: bool | None = None,
    cache_dir: Path | None = None,
    export_dir: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Final:
    """Retrain the best and the baseline trial on all 60,000 training images for their epochs
    and score each on the test set (the last epoch's score: nothing is chosen by it); store and
    return the study's ``final`` attr.

    A stored result for the same two trials is returned as is unless ``force``. With
    ``cache_dir`` (``hpo.retrain.models_dir``) the two models are cached there, so that
    ``hpo report`` draws its pictures without training them again; ``force`` trains anew
    rather than reading the cache. With ``export_dir`` (``runs/<study>``) each model is also
    written there as ``best.pt`` / ``baseline.pt`` for the user (``hpo.retrain.load_model``),
    and its record says where (``model``)."""
    trials = study.get_trials(deepcopy=False)
    best, base = best_of(trials, study.direction), baseline_of(trials)
    if best is None:
        raise HpoError(
            f"study {study.study_name!r} has no complete trial to finalize yet; run `hpo run` first"
        )
    if not isinstance(best.user_attrs.get("config"), dict):  # checked before any training
        raise HpoError(
            f"study {study.study_name!r}: its best trial, #{best.number}, stored no config (hpo "
            "records one in every trial it runs; this one was added through Optuna's API or "
            "another tool), so finalize cannot retrain it. Fix: keep hpo's trials in a study of "
            "their own (`--study NEW`), or tune that configuration with `hpo run`."
        )
    stored = final_of(study.user_attrs)
    if (
        not force
        and stored
        and _trial_of(stored.get("best")) == best.number
        and _trial_of(stored.get("baseline")) == (base.number if base else None)
    ):
        return stored
    done: dict[int, tuple[Trained, FinalSide]] = {}
    sides: tuple[tuple[Role, FrozenTrial | None], ...] = (("best", best), ("baseline", base))
    records: dict[Role, FinalSide] = {}
    for role, t in sides:
        if t is None:
            continue
        if t.number not in done:
            done[t.number] = _retrain(t, role, mnist, device, compile, cache_dir, force, log)
        model, records[role] = done[t.number]
        if export_dir is not None:
            path = export_dir / f"{role}.pt"
            export_model(model, path, study=study.study_name, trial=t.number, role=role)
            records[role] = {**records[role], "model": str(path)}
    final: Final = {
        "best": records["best"],
        "baseline": records.get("baseline"),
        "finalized_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    study.set_user_attr(FINAL_ATTR, final)
    return final


def _trial_of(side: FinalSide | None) -> int | None:
    return side.get("trial") if side else None


def _retrain(
    t: FrozenTrial,
    role: Role,
    mnist: Mnist,
    device: torch.device,
    compile: bool | None,
    cache_dir: Path | None,
    refresh: bool,
    log: Callable[[str], None],
) -> tuple[Trained, FinalSide]:
    config = TrainConfig.from_dict(t.user_attrs["config"])
    log(f"finalize: trial {t.number} ({role}) on the full training set")
    done = trained(config, mnist, device, cache_dir, compile=compile, refresh=refresh)
    if done.cached:  # trained the same way before (the same config, seed, threads, compile)
        log(f"finalize: trial {t.number}: its model and scores from the cache, {cache_dir}")
    epochs = len(done.train_loss)
    return done, {
        "trial": t.number,
        # config, test_acc, test_loss, seconds_per_epoch, device, status, threads (the CPU's
        # count changes the rounding: the report asks alike), versions
        **done.record(),
        "val_acc": last_val_acc(t),
        "train_seconds": done.seconds_per_epoch * epochs,
        "param_count": parameter_count(config.hidden1, config.hidden2),
        "device_name": describe(device),
        "compile": compile,  # as requested (None: the device's default); the report asks alike
        "cached": done.cached,
        "epochs": epochs,
    }
