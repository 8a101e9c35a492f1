"""TensorBoard events per trial: one point per epoch per metric, and the hparams summary.

Layout: ``runs/<study>/tensorboard/trial-<number:04d>/``, so ``tensorboard --logdir
runs/<study>/tensorboard`` shows every trial as a run and the HPARAMS tab compares them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.spec import in_use

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


# In runs/<study>/tensorboard: the uid of the study whose events are there (hpo.study_setup.
# study_uid; TensorBoard reads only event files, and ignores it).
OWNER = ".hpo-study"


def claim(runs_dir: Path, study_name: str, uid: str, *, new: bool) -> Path | None:
    """Make ``runs/<study>/tensorboard`` the study ``uid``'s before its trials write there:
    events of another study of that name (another storage's, or one deleted and made again) are
    moved out of the way, as TensorBoard reads every event file in a trial's folder and would draw
    two studies' trial 3 as one run, two points a step. Another study's are those marked
    (``OWNER``) with another uid (a study resumed after one of its name ran elsewhere, a machine
    joining a shared study), or unmarked beside a ``new`` study. Returns where they went
    (``tensorboard-<UTC time>`` beside it), or None. Nothing is deleted."""
    folder = tensorboard_dir(runs_dir, study_name)
    mark = folder / OWNER
    owner = mark.read_text().strip() if mark.is_file() else None
    aside = None
    if owner != uid and (owner is not None or new):
        aside = _set_aside(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mark.write_text(uid + "\n")
    return aside


def _set_aside(folder: Path) -> Path | None:
    if not any(folder.glob("trial-*/events.out.tfevents.*")):
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    aside = folder.with_name(f"tensorboard-{stamp}")
    n = 1
    while aside.exists():  # two within a second
        n += 1
        aside = folder.with_name(f"tensorboard-{stamp}-{n}")
    folder.rename(aside)
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

        every: dict[str, Any] = {
            k: v for k, v in config.to_dict().items() if isinstance(v, int | float | str | bool)
        }
        every.update(trial=number, is_baseline=is_baseline, state=state)
        metrics = {"val/acc": 0.0, "val/loss": 0.0}
        # The columns: every field, in every trial's copy. TensorBoard takes one run's experiment
        # for the whole tab ("arbitrarily"), so one of a trial whose schedule ignores gamma would
        # hide gamma for all.
        experiment = hparams(every, metrics)[0]
        # The values: fields the schedule ignores (gamma without a step decay) are left blank,
        # as in the report's trials.csv: a value there would read as one the trial ran with.
        used = {k: v for k, v in every.items() if in_use(k, config.schedule)}
        _, start, end = hparams(used, metrics)
        _set_status(end, state)
        file_writer = self._writer.file_writer
        assert file_writer is not None  # made in SummaryWriter.__init__
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        self._writer.close()


def _set_status(end: Any, state: str) -> None:
    """PyTorch's session end always says success; a trial that failed (diverged, an error, or
    interrupted) says failure, so that TensorBoard's status filter can hide it. A pruned trial
    ended as planned: success, its ``state`` hparam says pruned."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    plugin = end.value[0].metadata.plugin_data
    content = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
    failed = state not in ("complete", "pruned")
    status = "STATUS_FAILURE" if failed else "STATUS_SUCCESS"
    content.session_end_info.status = api_pb2.Status.Value(status)
    plugin.content = content.SerializeToString()
