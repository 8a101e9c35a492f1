"""TensorBoard events per trial: one point per epoch per metric, and the hparams summary.

Layout: ``runs/<study>/tensorboard/trial-<number:04d>/``, so ``tensorboard --logdir
runs/<study>/tensorboard`` shows every trial as a run and the HPARAMS tab compares them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only; TensorBoard itself is imported where a trial writes
    from hpo.config import TrainConfig
    from hpo.train import EpochMetrics

# tag -> EpochMetrics field; the hparams summary points at the same tags as its metrics.
SCALARS = {
    "train/loss": "train_loss",
    "train/acc": "train_acc",
    "val/loss": "eval_loss",
    "val/acc": "eval_acc",
    "lr": "lr",
}


def tensorboard_dir(runs_dir: Path, study_name: str) -> Path:
    return runs_dir / study_name / "tensorboard"


def trial_dir(runs_dir: Path, study_name: str, number: int) -> Path:
    return tensorboard_dir(runs_dir, study_name) / f"trial-{number:04d}"


def set_aside(runs_dir: Path, study_name: str) -> Path | None:
    """Move the events of an earlier study of the same name (another storage's, or one deleted)
    out of the way of a new study's: TensorBoard reads every event file in a trial's folder and
    would draw two studies' trial 3 as one run, two points a step. Returns where they went
    (``tensorboard-<UTC time>`` beside it), or None when there were none. Nothing is deleted."""
    old = tensorboard_dir(runs_dir, study_name)
    if not any(old.glob("trial-*/events.out.tfevents.*")):
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    aside = old.with_name(f"tensorboard-{stamp}")
    old.rename(aside)
    return aside


class TrialWriter:
    """Writes one trial's events; flushed every epoch, so a killed trial keeps its curve."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def epoch(self, metrics: EpochMetrics) -> None:
        for tag, name in SCALARS.items():
            self._writer.add_scalar(tag, getattr(metrics, name), global_step=metrics.epoch)
        self._writer.flush()

    def close(self, config: TrainConfig, *, number: int, is_baseline: bool, state: str) -> None:
        """Writes the hparams summary into this trial's own run (not a sub-run, as
        ``SummaryWriter.add_hparams`` would), so the HPARAMS tab reads the val/* scalars."""
        from torch.utils.tensorboard.summary import hparams

        params: dict[str, Any] = {
            k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)
        }
        params.update(trial=number, is_baseline=is_baseline, state=state)
        experiment, start, end = hparams(params, {"val/acc": 0.0, "val/loss": 0.0})
        file_writer = self._writer.file_writer
        assert file_writer is not None  # made in SummaryWriter.__init__
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        self._writer.close()
