"""A short real study end to end, as a user runs it: wall time and the share of epochs pruned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hpo.mnist import Mnist

ROOT = Path(__file__).resolve().parents[1]


def test_short_study(benchmark, mnist: Mnist, tmp_path: Path, smoke: bool) -> None:
    trials, epochs = (3, 1) if smoke else (10, 5)
    command = [
        sys.executable, "-m", "hpo.cli", "run",
        "--spec", str(ROOT / "studies" / "mnist_mlp.toml"),
        "--trials", str(trials), "--epochs", str(epochs), "--study", "short",
        "--storage", f"sqlite:///{tmp_path / 'study.db'}",
        "--data-dir", str(mnist.data_dir), "--device", "cpu",
        "--no-finalize", "--format", "json",
    ]  # fmt: skip

    def run() -> dict:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    assert summary["complete"] + summary["pruned"] == trials
    benchmark.extra_info["trials"] = trials
    benchmark.extra_info["epochs_per_trial"] = epochs
    benchmark.extra_info["pruned"] = summary["pruned"]
    benchmark.extra_info["epochs_run"] = summary["epochs_run"]
    benchmark.extra_info["epochs_pruned_share"] = 1 - summary["epochs_run"] / (trials * epochs)
