"""Study throughput with ``hpo run --jobs 1`` and ``--jobs 2`` on the CPU: the same 12-trial,
5-epoch study on real MNIST, timed end to end as a user runs it (process start, data, compiling,
training, storage; no finalize).

The network is the tutorial's (300/100, fixed), the rest of the default space is searched, so
that model-epochs compare with the tutorial's own loop, one epoch of which runs in every round
beside the studies (``test_study_jobs[tutorial-loop]``): the ratio table reports the training
images per second of each study against it, and jobs 1 time / jobs 2 time (the speed-up from a
second worker). The random sampler draws trial n's parameters from (seed, n) alone, so every
variant trains the same configurations whatever order the workers finish in; no pruning, so each
trains all its epochs. The five variants alternate round by round (benchmarks/alternate.py), each
round a fresh study. ``--device cpu`` even where a GPU is visible, so that the figures are what
their labels say; a GPU's study is timed by benchmarks/gpu_session.sh's ``study`` stage.

Each in fp32 and in bf16 matmuls (``precision``): the default spec's ``auto`` trains in bf16 on
CPUs with bfloat16 units (hpo.device.native_bf16) and in fp32 elsewhere, where bf16 is slower,
as this benchmark then shows; the ratio table adds fp32 time / bf16 time per ``--jobs``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.alternate import Variant, alternate
from benchmarks.time_split import time_split
from hpo.config import Precision, TrainConfig
from hpo.device import (
    WorkerPlan,
    mps_available,
    plan_workers,
    usable_cpus,
    visible_cuda_devices,
)
from hpo.mnist import Mnist
from hpo.train import fit

REPO = Path(__file__).resolve().parents[1]
TRIALS, EPOCHS, ROUNDS = 12, 5, 3
JOBS: tuple[int, ...] = (1, 2)
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
LOOP = "test_study_jobs[tutorial-loop]"  # one epoch of the tutorial's loop, in the same rounds
SPEC = """
trials = {trials}
epochs = {epochs}
seed = 0
precision = "{precision}"
[sampler]
name = "random"
[pruner]
name = "none"
[space]
lr = {{ low = 1e-3, high = 0.3, log = true }}
momentum = {{ low = 0.5, high = 0.99 }}
hidden1 = {hidden1}
hidden2 = {hidden2}
schedule = {{ choices = ["tutorial", "step", "exponential", "cosine", "none"] }}
gamma = {{ low = 0.5, high = 0.99 }}
step_every = {{ low = 1, high = 10 }}
head = "logits"
"""


def _storage(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'bench.db'}"


def study_command(
    tmp: Path,
    data_dir: Path,
    study: str,
    trials: int,
    jobs: int,
    *,
    epochs: int,
    smoke: bool,
    precision: Precision = "fp32",
) -> list[str]:
    """``hpo run`` of this module's spec, storage in ``tmp``; ``smoke``: small layers, eager."""
    spec = tmp / f"{study}.toml"
    h1, h2 = ("32", "16") if smoke else ("300", "100")
    text = SPEC.format(trials=trials, epochs=epochs, hidden1=h1, hidden2=h2, precision=precision)
    spec.write_text(text)
    cmd = [sys.executable, "-m", "hpo.cli", "run", "--spec", str(spec), "--study", study]
    cmd += ["--storage", _storage(tmp), "--trials", str(trials)]
    cmd += ["--jobs", str(jobs), "--device", "cpu", "--data-dir", str(data_dir)]
    return cmd + ["--no-finalize", "--format", "json"] + (["--no-compile"] if smoke else [])


def _command(
    tmp: Path, mnist: Mnist, study: str, trials: int, jobs: int, smoke: bool, precision: Precision
) -> list[str]:
    epochs = 1 if smoke else EPOCHS
    return study_command(
        tmp, mnist.data_dir, study, trials, jobs, epochs=epochs, smoke=smoke, precision=precision
    )


def run_command(cmd: list[str], cwd: Path, repo: Path = REPO) -> dict[str, object]:
    """Run ``cmd`` with the ``hpo`` package of ``repo``; its JSON summary."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("HPO_STORAGE", None)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


class _Study:
    """One variant: ``hpo run`` of a fresh study per round (``prepare`` names it and writes its
    spec), launched and timed by ``run``."""

    def __init__(
        self, tmp: Path, mnist: Mnist, trials: int, jobs: int, precision: Precision, smoke: bool
    ) -> None:
        self.tmp, self.mnist, self.trials, self.smoke = tmp, mnist, trials, smoke
        self.jobs, self.precision = jobs, precision
        # (study, launched), in local time as Optuna stamps the trials, one per round
        self.studies: list[tuple[str, dt.datetime]] = []
        self.study = ""
        self.cmd: list[str] = []

    def prepare(self) -> None:
        self.study = f"jobs-{self.jobs}-{self.precision}-{len(self.studies)}"
        self.cmd = _command(
            self.tmp, self.mnist, self.study, self.trials, self.jobs, self.smoke, self.precision
        )

    def run(self) -> dict[str, object]:
        self.studies.append((self.study, dt.datetime.now()))
        return run_command(self.cmd, self.tmp)


def test_study_jobs(benchmark, mnist: Mnist, smoke: bool, tmp_path: Path) -> None:
    """``--jobs`` 1 and 2, each in fp32 and bf16, and one epoch of the tutorial's loop in this
    process, alternated round by round."""
    trials = 2 if smoke else TRIALS
    load = os.getloadavg()[0]  # 1-minute average; includes the previous benchmark's own tail
    loop = TrainConfig(epochs=1, loader="torchvision")
    cpu = torch.device("cpu")
    variants = [Variant(LOOP, lambda: fit(loop, mnist, cpu, full=True))]
    studies: dict[str, _Study] = {}
    for precision, jobs in itertools.product(PRECISIONS, JOBS):
        if not smoke:  # the step's package built (or torch.compile's cache filled) outside the
            # timing, with this variant's thread count and precision: each is its own build.
            warm = f"warm-{jobs}-{precision}"
            run_command(_command(tmp_path, mnist, warm, jobs, jobs, smoke, precision), tmp_path)
        name = f"test_study_jobs[{jobs}-{precision}]"
        studies[name] = _Study(tmp_path, mnist, trials, jobs, precision, smoke)
        variants.append(Variant(name, studies[name].run, studies[name].prepare))
    alternate(benchmark, variants, rounds=1 if smoke else ROUNDS)

    assert variants[0].results[-1].status == "complete"
    variants[0].extra_info["train_images"] = len(mnist.arrays.train_labels)  # full=True
    benchmark.extra_info["load_at_start"] = round(load, 2)
    trained_per_epoch = len(mnist.arrays.train_labels) - mnist.val_size  # the split's 50,000
    for v in variants[1:]:
        study = studies[v.name]
        assert all(summary["complete"] == trials for summary in v.results)
        (epochs,) = {int(str(summary["epochs_run"])) for summary in v.results}  # no pruning:
        # the same configurations, so the same work in every round
        v.extra_info |= {
            "jobs": study.jobs,
            "precision": study.precision,
            "devices": ",".join(_plan(study.jobs).devices),
            "trials": trials,
            "model_epochs": epochs,
            "train_images": epochs * trained_per_epoch,
            "model_epochs_per_s": epochs / statistics.median(v.round_s),
        }
        # where the time went, in the round whose wall time is the median (or nearest above it)
        middle = sorted(range(len(v.round_s)), key=lambda k: v.round_s[k])[len(v.round_s) // 2]
        name, launched = study.studies[middle]
        v.extra_info |= time_split(
            _storage(tmp_path), name, study.jobs, v.round_s[middle], launched
        )


def _plan(jobs: int) -> WorkerPlan:
    cpus, gpus = usable_cpus(), visible_cuda_devices()
    return plan_workers("cpu", jobs, cuda_count=gpus, cpu_count=cpus, mps=mps_available())
