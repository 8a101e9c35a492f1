"""``hpo baseline``: the tutorial's 20-epoch run as it wrote it, and its artefacts.

As the tutorial does, it trains on all 60,000 training images and evaluates on the **test set**
every epoch; that is labelled in every output. Tuning never does this (see hpo.search).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.errors import HpoError
from hpo.interrupts import signals_held
from hpo.jsonable import finite_tree
from hpo.mnist import Mnist
from hpo.provenance import library_versions
from hpo.tb import SCALARS
from hpo.train import EpochMetrics, FitResult, OnEpoch, fit
from hpo.tutorial_figures import save_digits, save_loss_curve


@dataclass(frozen=True)
class BaselineRun:
    result: FitResult
    out_dir: Path
    files: tuple[Path, ...]


# What a run writes into its folder besides tensorboard/.
OUTPUTS = ("metrics.csv", "metrics.json", "digits.png", "train_loss.png")
EVENTS = "events.out.tfevents.*"  # TensorBoard's event files, in tensorboard/

# The run in progress writes here, inside its folder, and only a complete run's files replace
# the previous run's: until then that run stays as it was, and an interrupted run removes this
# folder. ``MARK``, inside it, tells a leftover of ours (a run killed outright) from a folder of
# the user's that happens to have the name.
PARTIAL = "partial"
MARK = ".hpo-baseline-partial"


def tutorial_line(m: EpochMetrics) -> str:
    """The tutorial's per-epoch print, with its 'Test' numbers (evaluated on the test set)."""
    return (
        f"Epoch: {m.epoch}, Train Loss: {m.train_loss:.4f}, Train Acc: {m.train_acc:.4f}, "
        f"Test Loss: {m.eval_loss:.4f}, Test Acc: {m.eval_acc:.4f}"
    )


def run_baseline(
    mnist: Mnist,
    device: torch.device,
    out_dir: Path,
    config: TrainConfig | None = None,
    on_epoch: OnEpoch | None = None,
) -> BaselineRun:
    """The tutorial's run, written to ``out_dir`` (see ``OUTPUTS``, and ``tensorboard/``).

    It trains and writes in ``out_dir/partial/`` (``PARTIAL``); once it is complete its files
    replace the previous run's, if any. Until then the previous run's files are untouched, and if
    the run stops (Ctrl-C, an error) they stay as they were: the partial folder is removed, and
    so is ``out_dir`` if this run made it and left it empty."""
    config = config or TrainConfig()
    # The folders this run makes (--out a/b in an empty place: a/ and a/b/), deepest first.
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    with _sole_writer(out_dir):
        staging = _fresh_staging(out_dir)
        try:
            with SummaryWriter(log_dir=str(staging / "tensorboard")) as writer:

                def record(m: EpochMetrics) -> None:
                    # One point per epoch per metric (the tutorial logged ~938 points per
                    # epoch), a trial's tags with its evaluation named for what it is here: the
                    # test set.
                    for tag, name in SCALARS.items():
                        writer.add_scalar(tag.replace("val/", "test/"), getattr(m, name), m.epoch)
                    writer.flush()
                    if on_epoch is not None:
                        on_epoch(m)

                result = fit(config, mnist, device, record, full=True)
            csv_name, json_name, digits_name, loss_name = OUTPUTS
            _write_csv(result, staging / csv_name)
            _write_json(result, device, staging / json_name)
            save_digits(mnist.arrays.test_images, mnist.arrays.test_labels, staging / digits_name)
            save_loss_curve([e.train_loss for e in result.epochs], staging / loss_name)
        except BaseException:  # KeyboardInterrupt too: the cut-short run is not kept
            shutil.rmtree(staging, ignore_errors=True)
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
            raise
        return BaselineRun(result, out_dir, _install(staging, out_dir))


@contextlib.contextmanager
def _sole_writer(out_dir: Path) -> Iterator[None]:
    """One ``hpo baseline`` at a time per folder: a second would take the first's partial/ for a
    leftover and remove it. The lock is on the folder itself (no lock file to clean up), and the
    kernel drops it when the process ends, even when killed outright."""
    if sys.platform == "win32":  # no flock; one run at a time is then the user's to keep
        yield
        return
    import fcntl

    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HpoError(
                f"another hpo baseline is writing into {out_dir} now: wait for it to finish, "
                "or give this one another --out"
            ) from None
        except OSError:  # no locks on this file system (NFS without lockd: ENOLCK): run as is
            pass
        yield
    finally:
        os.close(fd)


def _fresh_staging(out_dir: Path) -> Path:
    """An empty ``out_dir/partial/``, marked as ours; a leftover one of ours is removed first."""
    staging = out_dir / PARTIAL
    if staging.is_dir() and not staging.is_symlink():
        if not (staging / MARK).is_file() and any(staging.iterdir()):
            raise HpoError(
                f"{staging} is in the way: hpo baseline writes its run in progress there, and "
                "this folder is not one it left. Move it, or choose another --out"
            )
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / MARK).touch()
    return staging


def _install(staging: Path, out_dir: Path) -> tuple[Path, ...]:
    """Move the complete run from ``staging`` into ``out_dir``: each output replaces the
    previous run's in one rename, and the previous run's event files go before the new ones
    come (TensorBoard reads every event file in the folder, and would draw two runs as one, two
    points a step). Ctrl-C and SIGTERM are ignored for these few renames: stopped halfway, the
    folder would hold one run's metrics beside another's curves."""
    events = out_dir / "tensorboard"
    events.mkdir(exist_ok=True)
    with signals_held():
        for old in events.glob(EVENTS):
            old.unlink()
        for new in sorted((staging / "tensorboard").glob(EVENTS)):
            os.replace(new, events / new.name)
        for name in OUTPUTS:
            os.replace(staging / name, out_dir / name)
        shutil.rmtree(staging, ignore_errors=True)  # its mark and an empty tensorboard/
    return tuple(out_dir / name for name in OUTPUTS)


def _write_csv(result: FitResult, path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "epoch",
                "lr",
                "train_loss",
                "train_acc",
                "test_loss",
                "test_acc",
                "train_seconds",
                "eval_seconds",
            ]
        )
        for e in result.epochs:
            writer.writerow(
                [
                    e.epoch,
                    e.lr,
                    e.train_loss,
                    e.train_acc,
                    e.eval_loss,
                    e.eval_acc,
                    e.train_seconds,
                    e.eval_seconds,
                ]
            )
    return path


def _write_json(result: FitResult, device: torch.device, path: Path) -> Path:
    record = result.to_dict() | {
        "what": "the tutorial's recipe as written: trained on 60k, evaluated on the TEST set "
        "every epoch (not a tuning protocol)",
        "device_name": describe(device),
        "versions": library_versions(),
        "train_seconds": result.train_seconds,
        "final_test_acc": result.final.eval_acc,
    }
    path.write_text(json.dumps(finite_tree(record), indent=2))  # a diverged run's NaN: null
    return path
