"""``hpo baseline``: the tutorial's 20-epoch run as it wrote it, and its artefacts.

As the tutorial does, it trains on all 60,000 training images and evaluates on the **test set**
every epoch; that is labelled in every output. Tuning never does this (see hpo.search).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from hpo.config import TrainConfig
from hpo.device import describe
from hpo.mnist import Mnist
from hpo.provenance import library_versions
from hpo.train import EpochMetrics, FitResult, OnEpoch, fit
from hpo.tutorial_figures import save_digits, save_loss_curve


@dataclass(frozen=True)
class BaselineRun:
    result: FitResult
    out_dir: Path
    files: tuple[Path, ...]


# What a run writes into its folder besides tensorboard/.
OUTPUTS = ("metrics.csv", "metrics.json", "digits.png", "train_loss.png")


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
    config = config or TrainConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    events = out_dir / "tensorboard"
    # A rerun replaces the earlier run's files, first, so that an interrupted rerun does not
    # leave one run's metrics beside another's curves; and the event files too: TensorBoard
    # reads every one in the folder, and would draw two runs as one, two points a step.
    for old in [*events.glob("events.out.tfevents.*"), *(out_dir / name for name in OUTPUTS)]:
        old.unlink(missing_ok=True)
    with SummaryWriter(log_dir=str(events)) as writer:

        def record(m: EpochMetrics) -> None:
            # One point per epoch per metric (the tutorial logged ~938 points per epoch).
            for tag, value in (
                ("train/loss", m.train_loss),
                ("train/acc", m.train_acc),
                ("test/loss", m.eval_loss),
                ("test/acc", m.eval_acc),
                ("lr", m.lr),
            ):
                writer.add_scalar(tag, value, m.epoch)
            writer.flush()
            if on_epoch is not None:
                on_epoch(m)

        result = fit(config, mnist, device, record, full=True)
    csv_name, json_name, digits_name, loss_name = OUTPUTS
    files = (
        _write_csv(result, out_dir / csv_name),
        _write_json(result, device, out_dir / json_name),
        save_digits(mnist.arrays.test_images, mnist.arrays.test_labels, out_dir / digits_name),
        save_loss_curve([e.train_loss for e in result.epochs], out_dir / loss_name),
    )
    return BaselineRun(result, out_dir, files)


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
    path.write_text(json.dumps(record, indent=2))
    return path
