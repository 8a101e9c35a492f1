"""``finalize``: the study's best trial and its baseline, each retrained on all 60,000 training
images and scored on the test set. Tuning never sees the test set: it is used only here and by
``hpo report`` (its pictures and ``--confirm``), on configurations the search has already
chosen. The retraining records test accuracy per epoch, as the tutorial plots it; the score
stored is its last epoch's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.errors import HpoError
from hpo.mnist import Mnist
from hpo.model import parameter_count
from hpo.records import last_val_acc
from hpo.retrain import trained
from hpo.search import baseline_trial, best_trial


def finalize(
    study: optuna.Study,
    mnist: Mnist,
    device: torch.device,
    *,
    force: bool = False,
    compile: bool | None = None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Retrain the best and the baseline trial on all 60,000 training images for their epochs
    and score each on the test set (the last epoch's score: nothing is chosen by it); store and
    return the study's ``final`` attr.

    A stored result for the same two trials is returned as is unless ``force``. With
    ``cache_dir`` (``hpo.retrain.models_dir``) the two models are cached there, so that
    ``hpo report`` draws its pictures without training them again; ``force`` trains anew
    rather than reading the cache."""
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
            done[t.number] = _retrain(t, role, mnist, device, compile, cache_dir, force, log)
        final[role] = done[t.number]
    final["finalized_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    study.set_user_attr("final", final)
    return final


def _retrain(
    t: FrozenTrial,
    role: str,
    mnist: Mnist,
    device: torch.device,
    compile: bool | None,
    cache_dir: Path | None,
    refresh: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    config = TrainConfig.from_dict(t.user_attrs["config"])
    # On a CPU the thread count changes the rounding: the report retrains with the same.
    threads = torch.get_num_threads() if device.type == "cpu" else None
    log(f"finalize: trial {t.number} ({role}) on the full training set")
    done = trained(
        config, mnist, device, cache_dir, compile=compile, threads=threads, refresh=refresh
    )
    if done.cached:  # trained the same way before (the same config, seed, threads, compile)
        log(f"finalize: trial {t.number}: its model and scores from the cache, {cache_dir}")
    epochs = len(done.train_loss)
    return {
        "trial": t.number,
        **done.record(),  # config, test_acc, test_loss, seconds_per_epoch, device, status
        "val_acc": last_val_acc(t),
        "train_seconds": done.seconds_per_epoch * epochs,
        "param_count": parameter_count(config.hidden1, config.hidden2),
        "device_name": describe(device),
        "threads": threads,
        "compile": compile,  # as requested (None: the device's default); the report asks alike
        "cached": done.cached,
        "epochs": epochs,
    }
