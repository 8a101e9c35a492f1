"""``finalize``: the study's best trial and its baseline, each retrained on all 60,000 training
images and scored on the test set. Tuning never sees the test set: it is used only here and by
``hpo report`` (its pictures and ``--confirm``), on configurations the search has already
chosen. The retraining records test accuracy per epoch, as the tutorial plots it; the score
stored is its last epoch's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.errors import HpoError
from hpo.jsonable import finite
from hpo.mnist import Mnist
from hpo.search import baseline_trial, best_trial
from hpo.storage import last_val_acc
from hpo.train import fit


def finalize(
    study: optuna.Study,
    mnist: Mnist,
    device: torch.device,
    *,
    force: bool = False,
    compile: bool | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Retrain the best and the baseline trial on all 60,000 training images for their epochs
    and score each on the test set (the last epoch's score: nothing is chosen by it); store and
    return the study's ``final`` attr.

    A stored result for the same two trials is returned as is unless ``force``."""
    best, base = best_trial(study), baseline_trial(study)
    if best is None:
        raise HpoError(
            f"study {study.study_name!r} has no complete trial to finalize yet; run `hpo run` first"
        )
    stored = study.user_attrs.get("final")
    if (
        not force
        and stored
        and stored.get("best", {}).get("trial") == best.number
        and (stored.get("baseline") or {}).get("trial") == (base.number if base else None)
    ):
        return dict(stored)
    done: dict[int, dict[str, Any]] = {}
    final: dict[str, Any] = {"best": None, "baseline": None}
    for role, t in (("best", best), ("baseline", base)):
        if t is None:
            continue
        if t.number not in done:
            log(f"finalize: retraining trial {t.number} ({role}) on the full training set")
            done[t.number] = _retrain(t, mnist, device, compile)
        final[role] = done[t.number]
    final["finalized_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    study.set_user_attr("final", final)
    return final


def _retrain(
    t: FrozenTrial, mnist: Mnist, device: torch.device, compile: bool | None
) -> dict[str, Any]:
    config = TrainConfig.from_dict(t.user_attrs["config"])
    result = fit(config, mnist, device, full=True, compile=compile)
    return {
        "trial": t.number,
        "config": config.to_dict(),
        "val_acc": last_val_acc(t),
        "test_acc": finite(result.final.eval_acc),
        "test_loss": finite(result.final.eval_loss),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / len(result.epochs),
        "param_count": result.param_count,
        "device": result.device,
        "device_name": describe(device),
        # On a CPU the thread count changes the rounding: the report retrains with the same.
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "epochs": len(result.epochs),
        "status": result.status,
    }
