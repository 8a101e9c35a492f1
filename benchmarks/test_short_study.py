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

    def command(study: str, trials: int, epochs: int) -> list[str]:
        return [
            sys.executable, "-m", "hpo.cli", "run",
            "--spec", str(ROOT / "studies" / "mnist_mlp.toml"),
            "--trials", str(trials), "--epochs", str(epochs), "--study", study,
            "--storage", f"sqlite:///{tmp_path / 'study.db'}",
            "--data-dir", str(mnist.data_dir), "--device", "cpu",
            "--no-finalize", "--format", "json",
        ]  # fmt: skip

    def run(command: list[str]) -> dict:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    if not smoke:  # the default spec's step package built outside the timing, if missing
        run(command("warm-up", 1, 1))
    summary = benchmark.pedantic(run, args=(command("short", trials, epochs),))
    assert summary["complete"] + summary["pruned"] == trials
    benchmark.extra_info["trials"] = trials
    benchmark.extra_info["epochs_per_trial"] = epochs
    benchmark.extra_info["pruned"] = summary["pruned"]
    benchmark.extra_info["epochs_run"] = summary["epochs_run"]
    benchmark.extra_info["epochs_pruned_share"] = 1 - summary["epochs_run"] / (trials * epochs)
