"""Configurations retrained on all 60,000 training images and scored on the test set, cached.

Finalize, ``hpo report --confirm`` and the report's pictures need such models; a state_dict and
its numbers are kept per configuration under ``runs/<study>/models/``, so the report after a
finalized run, a second report, or an interrupted confirm run trains nothing it already has.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hpo.config import TrainConfig
from hpo.errors import HpoError
from hpo.files import replacing
from hpo.jsonable import finite
from hpo.mnist import Mnist
from hpo.model import Net, build_model
from hpo.provenance import library_versions
from hpo.records import Retrained
from hpo.train import fit

_FORMAT = 1  # bump when what is cached changes meaning
_CACHED = ("test_acc", "test_loss", "seconds_per_epoch", "device", "status")


@dataclass(frozen=True)
class Trained:
    config: TrainConfig
    test_acc: float
    test_loss: float
    train_loss: tuple[float, ...]
    seconds_per_epoch: float
    device: str
    status: str
    model: Net = field(repr=False, compare=False)
    cached: bool = field(default=False, compare=False)  # read from the cache, not trained now
    threads: int | None = None  # a CPU's intra-op threads it trained with (None off the CPU)
    # hpo.provenance.library_versions of the process that trained it (a cached model's too);
    # empty for one cached by an hpo from before they were kept.
    versions: dict[str, str] = field(default_factory=dict, compare=False)

    def record(self) -> Retrained:
        """The JSON-able part, as stored on the study; a non-finite number (a diverged run's
        loss) becomes null, because JSON has no NaN and optuna-dashboard rejects it."""
        return {
            "config": self.config.to_dict(),
            "test_acc": finite(self.test_acc),
            "test_loss": finite(self.test_loss),
            "seconds_per_epoch": finite(self.seconds_per_epoch),
            "device": self.device,
            "status": self.status,
            "threads": self.threads,
            "versions": self.versions,
        }


def cache_key(
    config: TrainConfig,
    mnist: Mnist,
    device: torch.device,
    threads: int | None = None,
    compile: bool | None = None,
) -> str:
    # The data's size is in the key so models of a small test set never pass for real ones.
    ident = {
        "config": config.to_dict(),
        "n_train": len(mnist.arrays.train_labels),
        "n_test": len(mnist.arrays.test_labels),
        "format": _FORMAT,
        # A CPU's thread count splits the matmuls' sums differently, and so the rounding: the
        # same config and seed train to other weights with another count.
        "threads": threads,
        # Eager and compiled steps round differently too (--no-compile against the default),
        # and so do other kinds of device (a CUDA model is no MPS one).
        "compile": compile,
        "device": device.type,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def models_dir(runs_dir: Path, study: str) -> Path:
    """Where a study's retrained models are cached: finalize writes, the report reads."""
    return runs_dir / study / "models"


def trained(
    config: TrainConfig,
    mnist: Mnist,
    device: torch.device,
    cache_dir: Path | None,
    *,
    compile: bool | None = None,
    threads: int | None = None,
    refresh: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> Trained:
    """``config`` trained on the full training set, from the cache when it is there (None: no
    cache; ``refresh``: train again and replace the cached one). On a CPU, with ``threads``
    intra-op threads (None: this process's), so that the model of a configuration finalize
    trained with some thread count is the same model here."""
    if device.type != "cpu":
        threads = None
    elif threads is None:
        threads = torch.get_num_threads()
    key = cache_key(config, mnist, device, threads, compile)
    path = None if cache_dir is None else cache_dir / f"{key}.pt"
    if path is not None and path.is_file() and not refresh:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = _rebuilt(config, saved["state_dict"])
        fields = {k: saved[k] for k in _CACHED}
        train_loss = tuple(saved["train_loss"])
        return Trained(config, **fields, train_loss=train_loss, model=model, cached=True,
                       threads=threads, versions=saved.get("versions") or {})  # fmt: skip
    log(f"report: training {_describe(config)} on the full training set ({device})")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = fit(config, mnist, device, full=True, compile=compile)
    finally:
        torch.set_num_threads(before)
    epochs = len(result.epochs)
    out = Trained(
        config,
        result.final.eval_acc,
        result.final.eval_loss,
        tuple(e.train_loss for e in result.epochs),
        result.train_seconds / epochs if epochs else math.nan,
        result.device,
        result.status,
        result.model,
        threads=threads,
        versions=library_versions(),
    )
    if path is not None:  # plain floats (NaN included: a pickle keeps it) beside the weights
        payload = {k: getattr(out, k) for k in (*_CACHED, "versions")}
        state = {"train_loss": list(out.train_loss), "state_dict": out.model.state_dict()}
        _save(path, {**payload, **state})
    return out


def export_model(done: Trained, path: Path, **about: object) -> None:
    """``done``'s model as a file that stands alone: its state_dict, the config that builds it
    (``load_model``), its test scores, and ``about`` (the study, the trial). Written whole or not
    at all, so a reader never sees half of a replaced best."""
    record: dict[str, object] = {**about, **done.record()}  # config, test_acc, ...
    _save(path, {**record, "state_dict": done.model.state_dict()})


def load_model(path: Path | str) -> tuple[TrainConfig, Net]:
    """The config and the network (in eval mode) of a model ``export_model`` wrote, such as
    ``runs/<study>/best.pt``. It takes ``hpo.splits.normalise(images)``: (N, 784) float32."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # absent, damaged
        raise HpoError(f"cannot read a model from {path}: {' '.join(str(e).split())}") from None
    if not isinstance(saved, dict) or not {"config", "state_dict"} <= saved.keys():
        raise HpoError(
            f"{path} is not a model hpo exported (no config and state_dict in it); "
            "`hpo finalize --study NAME` writes runs/NAME/best.pt and baseline.pt"
        )
    config = TrainConfig.from_dict(saved["config"])
    return config, _rebuilt(config, saved["state_dict"])


def _rebuilt(config: TrainConfig, state_dict: dict[str, torch.Tensor]) -> Net:
    """The network of ``config`` holding the saved weights, in eval mode (BatchNorm's running
    statistics), as every reader of a saved model wants it."""
    model = build_model(config)
    model.load_state_dict(state_dict)
    return model.eval()


def _save(path: Path, payload: dict[str, object]) -> None:
    with replacing(path) as tmp:
        torch.save(payload, tmp)


def _describe(config: TrainConfig) -> str:
    return (
        f"lr={config.lr:.3g} momentum={config.momentum:.3g} "
        f"{config.hidden1}-{config.hidden2} {config.schedule} {config.head} seed={config.seed}"
    )
