"""Study throughput with ``hpo run --jobs 1`` and ``--jobs 2``: the same 12-trial, 5-epoch study
on real MNIST, timed end to end as a user runs it (process start, data, compiling, training,
storage; no finalize).

The network is the tutorial's (300/100, fixed), the rest of the default space is searched, so
that model-epochs compare with the tutorial's own loop: the ratio table reports the training
images per second of each study against ``test_one_epoch[cpu-torchvision]``, and jobs 1 time /
jobs 2 time (the speed-up from a second worker). The random sampler draws trial n's parameters
from (seed, n) alone, so both variants train the same configurations whatever order the workers
finish in; no pruning, so each trains all its epochs. ``--device auto``: the CPU here; on a
machine with GPUs the workers take one GPU each.

Each in fp32 and in bf16 matmuls (``precision``): the default spec's ``auto`` trains in bf16 on
CPUs with bfloat16 units (hpo.device.native_bf16) and in fp32 elsewhere, where bf16 is slower,
as this benchmark then shows; the ratio table adds fp32 time / bf16 time per ``--jobs``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.time_split import time_split
from hpo.config import Precision
from hpo.device import mps_available, plan_workers, usable_cpus, visible_cuda_devices
from hpo.mnist import Mnist

REPO = Path(__file__).resolve().parents[1]
TRIALS, EPOCHS = 12, 5
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
    cmd += ["--jobs", str(jobs), "--device", "auto", "--data-dir", str(data_dir)]
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("jobs", [1, 2])
def test_study_jobs(
    benchmark, mnist: Mnist, jobs: int, precision: Precision, smoke: bool, tmp_path: Path
) -> None:
    trials = 2 if smoke else TRIALS
    load = os.getloadavg()[0]  # 1-minute average; includes the previous benchmark's own tail
    if not smoke:  # the step's package built (or torch.compile's cache filled) outside the
        # timing, with this variant's thread count and precision: each is its own build.
        run_command(_command(tmp_path, mnist, "warm-up", jobs, jobs, smoke, precision), tmp_path)
    study = f"jobs-{jobs}-{precision}"
    cmd = _command(tmp_path, mnist, study, trials, jobs, smoke, precision)
    launched: list[dt.datetime] = []  # local time, as Optuna stamps the trials

    def run() -> dict[str, object]:
        launched.append(dt.datetime.now())
        return run_command(cmd, tmp_path)

    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    assert summary["complete"] == trials
    epochs = int(str(summary["epochs_run"]))
    benchmark.extra_info["jobs"] = jobs
    benchmark.extra_info["precision"] = precision
    gpus, cpus = visible_cuda_devices(), usable_cpus()
    plan = plan_workers("auto", jobs, cuda_count=gpus, cpu_count=cpus, mps=mps_available())
    benchmark.extra_info["devices"] = ",".join(plan.devices)
    benchmark.extra_info["trials"] = trials
    benchmark.extra_info["model_epochs"] = epochs
    trained_per_epoch = len(mnist.arrays.train_labels) - mnist.val_size  # the split's 50,000
    benchmark.extra_info["train_images"] = epochs * trained_per_epoch
    benchmark.extra_info["load_at_start"] = round(load, 2)
    if benchmark.stats is not None:
        wall = benchmark.stats.stats.median
        benchmark.extra_info["model_epochs_per_s"] = epochs / wall
        split = time_split(_storage(tmp_path), study, jobs, wall, launched[-1])
        benchmark.extra_info.update(split)
